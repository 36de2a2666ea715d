"""SBAS network figure and page (no QGIS; matplotlib optional): which interferograms were used, which not and why.

Input: the network table of ``subsidence:sbasinversion`` (one row per interferogram:
``reference_date``, ``secondary_date``, ``perp_baseline_m``, ``used`` and the reason a pair was not
used in ``reason`` or ``status``). With perpendicular baselines the figure is the classic network
(acquisition date vs perpendicular baseline, each date's baseline solved from the pair baselines with
the first date at 0); without them it is date vs date (reference date on x, secondary date on y).
Used pairs are blue lines/dots, rejected ones red dashed lines/crosses, labelled by reason.
"""

import datetime as _dt
import html

import numpy as np

from ..io.lazy import lazy_module
from . import html_tools as ht

pd = lazy_module("pandas")

USED_COLOR, REJECTED_COLOR = "#1f77b4", "#d62728"


def _dates(col):
    return [(_dt.date.fromisoformat(str(v)[:10]) if not isinstance(v, _dt.date) else v) for v in col]


def _used(df):
    if "used" in df:
        return df["used"].astype(str).str.lower().isin(["1", "true", "yes"]).to_numpy()
    if "status" in df:
        return (df["status"].astype(str) == "used").to_numpy()
    return np.ones(len(df), bool)


def rejection_reasons(df):
    """The reason each pair was not used ('' for used pairs): ``reason`` column, else ``status``."""
    used = _used(df)
    for col in ("reason", "status"):
        if col in df:
            r = df[col].fillna("").astype(str).to_numpy()
            return np.where(used, "", np.where((r == "") | (r == "used"), "rejected", r))
    return np.where(used, "", "rejected")


def date_baselines(ref, sec, bperp):
    """Perpendicular baseline of every acquisition date from pair baselines ``B(sec) - B(ref)``, first date 0
    (least squares over the connected pairs; dates without a pair with a baseline get NaN)."""
    dates = sorted(set(ref) | set(sec))
    idx = {d: i for i, d in enumerate(dates)}
    ok = np.isfinite(bperp)
    if not ok.any():
        return dates, np.full(len(dates), np.nan)
    a = np.zeros((int(ok.sum()) + 1, len(dates)))
    b = np.zeros(int(ok.sum()) + 1)
    for row, k in enumerate(np.flatnonzero(ok)):
        a[row, idx[sec[k]]] = 1.0
        a[row, idx[ref[k]]] = -1.0
        b[row] = bperp[k]
    a[-1, 0] = 1.0  # first date at 0
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    seen = np.zeros(len(dates), bool)
    seen[0] = True
    for k in np.flatnonzero(ok):
        seen[idx[ref[k]]] = seen[idx[sec[k]]] = True
    sol[~seen] = np.nan
    return dates, sol


def network_figure(df, Figure, title="SBAS interferogram network"):
    """A matplotlib Figure of the network (see the module docstring)."""
    import matplotlib.dates as mdates
    from matplotlib.lines import Line2D

    ref = _dates(df["reference_date"])
    sec = _dates(df["secondary_date"])
    used = _used(df)
    reasons = rejection_reasons(df)
    bperp = pd.to_numeric(df.get("perp_baseline_m", pd.Series([np.nan] * len(df))), errors="coerce").to_numpy(float)
    fig = Figure(figsize=(9.0, 4.6), constrained_layout=True)
    ax = fig.subplots()
    handles = [Line2D([], [], color=USED_COLOR, lw=1.2, label="used (%d)" % int(used.sum()))]
    if np.isfinite(bperp).sum() >= 1:
        dates, b = date_baselines(ref, sec, bperp)
        pos = dict(zip(dates, b))
        for k in np.argsort(used):  # rejected drawn first, used on top
            y1, y2 = pos.get(ref[k], np.nan), pos.get(sec[k], np.nan)
            ax.plot(
                [ref[k], sec[k]],
                [y1, y2],
                "-" if used[k] else "--",
                lw=0.9 if used[k] else 1.1,
                color=USED_COLOR if used[k] else REJECTED_COLOR,
                alpha=0.75,
            )
        ax.plot(dates, b, "o", color="black", ms=4, zorder=5)
        ax.set_ylabel("Perpendicular baseline (m)")
        ax.set_xlabel("Acquisition date")
        handles.append(Line2D([], [], color="black", marker="o", lw=0, label="acquisition (%d)" % len(dates)))
    else:
        ax.plot([r for r, u in zip(ref, used) if u], [s for s, u in zip(sec, used) if u], "o", ms=4, color=USED_COLOR)
        ax.set_xlabel("Reference date")
        ax.set_ylabel("Secondary date")
        lo, hi = min(ref + sec), max(ref + sec)
        ax.plot([lo, hi], [lo, hi], "-", color="0.7", lw=0.8)
        ax.yaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.yaxis.get_major_locator()))
        handles = [Line2D([], [], color=USED_COLOR, marker="o", lw=0, label="used (%d)" % int(used.sum()))]
    markers = ["x", "+", "^", "v", "D", "s"]
    for i, reason in enumerate(sorted(set(reasons[~used]))):
        sel = np.flatnonzero((~used) & (reasons == reason))
        short = reason if len(reason) <= 48 else reason[:47] + "\u2026"
        if np.isfinite(bperp).sum() >= 1:
            mid_x = [ref[k] + (sec[k] - ref[k]) / 2 for k in sel]
            mid_y = [(pos.get(ref[k], np.nan) + pos.get(sec[k], np.nan)) / 2 for k in sel]
        else:
            mid_x, mid_y = [ref[k] for k in sel], [sec[k] for k in sel]
        ax.plot(mid_x, mid_y, markers[i % len(markers)], color=REJECTED_COLOR, ms=6, mew=1.5)
        handles.append(
            Line2D(
                [],
                [],
                color=REJECTED_COLOR,
                marker=markers[i % len(markers)],
                ls="--",
                lw=1,
                label="not used: %s (%d)" % (short, len(sel)),
            )
        )
    loc = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=11)
    return fig


def html_report(df, title="SBAS interferogram network", plots=True):
    """The page (str): the figure (when matplotlib imports), counts, and the table of pairs not used."""
    used = _used(df)
    reasons = rejection_reasons(df)
    parts = [
        "<h1>%s</h1>" % html.escape(title),
        "<p>%d interferograms, %d used, %d not used; %d acquisition dates.</p>"
        % (
            len(df),
            int(used.sum()),
            int((~used).sum()),
            len(set(df["reference_date"].astype(str)) | set(df["secondary_date"].astype(str))),
        ),
    ]
    Figure = ht.matplotlib_figure() if plots else None
    if Figure is not None and len(df):
        try:
            parts.append(ht.figure_png(network_figure(df, Figure, title)))
        except Exception as ex:  # noqa: BLE001 - the table matters more than the figure
            parts.append("<p class='warn'>figure failed: %s</p>" % html.escape(str(ex)))
    elif plots:
        parts.append("<p>(matplotlib is not available: tables only)</p>")
    if (~used).any():
        rej = df.loc[~used].copy()
        rej["reason"] = reasons[~used]
        cols = [
            c
            for c in ("file", "reference_date", "secondary_date", "temporal_baseline_days", "perp_baseline_m", "reason")
            if c in rej
        ]
        parts.append("<h2>Interferograms not used</h2>")
        parts.append(
            ht.table(
                rej[cols],
                text_columns=("file", "reference_date", "secondary_date", "reason"),
                missing_note="no perpendicular baseline given",
            )
        )
    return ht.page(title, parts)


def write_html_report(path, df, **kwargs):
    return ht.write_text_atomic(path, html_report(df, **kwargs))
