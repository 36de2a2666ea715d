"""HTML report of a lagged-correlation run (no QGIS; matplotlib optional).

Per group: the analysed X and Y series overlaid (two y axes) and r versus lag for every series
mode, as PNG images embedded in the page when matplotlib is importable; tables always. The
page is self-contained (no external files), so the Processing results viewer and a browser
show it as is.
"""

import base64
import html
import io
import math
import os

import numpy as np

from ..io.dates import month_from_index, month_label
from .html_tools import number_or_text

MAX_PLOTS = 40
MAX_TABLES = 200
MAX_WARNINGS = 100


def _fmt(v, digits=3):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    f, text = number_or_text(v)
    if text is not None:
        return text
    if math.isnan(f):
        return "&ndash;"
    if f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e5):
        return "%.2e" % f
    return ("%%.%df" % digits) % f


_STORAGE = ("gwsa", "twsa", "gws", "grace", "storage", "groundwater", "water")
_DEFORMATION = ("deformation", "displacement", "subsidence", "los", "uplift", "leveling", "levelling")
SERIES_TITLES = {"levels": "level", "cumulative": "cumulative change", "temporal": "month-to-month change"}


def axis_label(name, units=None):
    """A readable axis title for a variable name: ``gwsa`` -> ``GWSA (mm)``, ``deformation`` -> ``Deformation (mm)``.

    ``units``: given units; otherwise mm for storage and deformation names (the toolkit's units), none else.
    """
    text = str(name)
    low = text.lower()
    if units is None and any(w in low for w in _STORAGE + _DEFORMATION):
        units = "mm"
    pretty = text.upper() if low in ("gwsa", "twsa", "gws", "los") else text[:1].upper() + text[1:]
    return "%s (%s)" % (pretty, units) if units else pretty


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except Exception:  # noqa: BLE001 - any import problem means: no plots
        return None
    return Figure, FigureCanvasAgg


def _png(fig, canvas_cls):
    canvas_cls(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def group_figure(curves, table, x_label, y_label, mpl, title=None, x_units=None, y_units=None):
    """One figure for a group: per series mode an overlay panel and an r-vs-lag panel. Base64 PNG.

    The overlay shows X (left axis), Y (right axis) and, when the best lag k is not 0, X
    shifted by k months (X[t-k] drawn at t, dashed), which is what R_k correlates with Y[t].
    """
    Figure, Canvas = mpl
    modes = [c["series"] for c in curves]
    x_name, y_name = x_label, y_label
    x_label, y_label = axis_label(x_name, x_units), axis_label(y_name, y_units)
    fig = Figure(figsize=(11, 3.3 * len(modes) + (0.5 if title else 0)))
    for i, c in enumerate(curves):
        rows = table[table["series"] == c["series"]]
        ax = fig.add_subplot(len(modes), 2, 2 * i + 1)
        dates = [month_from_index(k) for k in c["months"]]
        lines = ax.plot(dates, c["x"], "o-", color="tab:blue", ms=3, label=x_name)
        best = rows["best_lag"].to_numpy(dtype=bool)
        k = int(rows["lag"].to_numpy()[best][0]) if best.any() else 0
        if k != 0 and len(dates) > abs(k):
            shifted = [month_from_index(m + k) for m in c["months"]]
            lines += ax.plot(
                shifted, c["x"], "--", color="tab:blue", alpha=0.5, label="%s shifted %+d months" % (x_name, k)
            )
        what = SERIES_TITLES.get(c["series"], c["series"])
        ax.set_ylabel("%s\n%s" % (x_label, what), color="tab:blue", fontsize=10)
        ax2 = ax.twinx()
        lines += ax2.plot(dates, c["y"], "s-", color="tab:red", ms=3, label=y_name)
        ax2.set_ylabel("%s\n%s" % (y_label, what), color="tab:red", fontsize=10)
        ax2.tick_params(labelsize=9)
        ax.set_xlim(dates[0], dates[-1]) if dates else None
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=9, loc="best")
        ax.set_title("%s series" % c["series"], fontsize=11)
        ax.tick_params(axis="x", labelsize=9, rotation=30)
        ax.tick_params(axis="y", labelsize=9)
        bx = fig.add_subplot(len(modes), 2, 2 * i + 2)
        lags = rows["lag"].to_numpy()
        r = rows["r"].to_numpy(dtype=float)
        sig = rows["p_eff"].to_numpy(dtype=float) < 0.05
        bx.axhline(0, color="0.6", lw=0.8)
        bx.plot(lags, r, "-", color="0.3")
        bx.plot(lags[sig], r[sig], "o", color="black", label="p_eff < 0.05")
        bx.plot(lags[~sig], r[~sig], "o", mfc="white", color="black", label="p_eff >= 0.05")
        if best.any():
            bx.plot(lags[best], r[best], "*", color="tab:orange", ms=14, label="best lag")
        bx.set_xticks(lags)
        bx.set_ylim(-1.05, 1.05)
        bx.set_xlabel("Lag k (months; %s leads %s)" % (x_name, y_name), fontsize=10)
        bx.set_ylabel("Pearson r", fontsize=10)
        bx.tick_params(labelsize=9)
        bx.legend(fontsize=9, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return _png(fig, Canvas)


_STYLE = (
    "<style>body{font-family:sans-serif;font-size:14px;margin:1em auto;max-width:1100px}img{max-width:100%;height:auto}"
    "table{border-collapse:collapse;"
    "margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}"
    "td.t{text-align:left}tr.sig td{background:#e8f5e9}tr.best{font-weight:bold}"
    "tr.best td:first-child{background:#fff3c4}"
    "td.sig{color:#060;font-weight:bold}.warn{color:#a40}</style></head><body>"
)


def _head(title, xl, yl):
    """Title, style and the convention / statistics paragraphs."""
    e = html.escape
    return [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title>" % e(title),
        _STYLE,
        "<h2>%s</h2>" % e(title),
        "<p><b>Convention:</b> lag k &ge; 0 means <b>%s leads %s by k months</b>: "
        "R<sub>k</sub> = Pearson(%s[t+k], %s[t]) over the months where both exist (means over the pairs). "
        "Negative k: %s leads %s.</p>" % (e(xl), e(yl), e(yl), e(xl), e(yl), e(xl)),
        "<p>p: two-sided t-test with N&minus;2 degrees of freedom (white-noise null, as scipy.stats.pearsonr). "
        "N<sub>eff</sub> = N(1&minus;r<sub>1</sub>r<sub>2</sub>)/(1+r<sub>1</sub>r<sub>2</sub>) (Bretherton et al. "
        "1999, capped at N) from the lag-1 autocorrelations r<sub>1</sub>, r<sub>2</sub> of the paired series; "
        "p<sub>eff</sub> is the t-test with N<sub>eff</sub>&minus;2 degrees of freedom. Monthly levels are strongly "
        "autocorrelated, so judge significance by p<sub>eff</sub>. Cumulative change from a base month is "
        "X<sub>t</sub>&minus;X<sub>base</sub>, so it has exactly the r of the levels; temporal change is the "
        "month-to-month difference and is missing across a missing month.</p>",
        "<p>Rows with p<sub>eff</sub> &lt; 0.05 are green; the best lag of each series is bold.</p>",
    ]


def _parameters_and_warnings(parameters, warnings):
    e = html.escape
    out = []
    if parameters:
        out.append("<table>")
        for k, v in parameters.items():
            out.append("<tr><th>%s</th><td class='t'>%s</td></tr>" % (e(str(k)), e(str(v))))
        out.append("</table>")
    if warnings:
        out.append("<h3 class='warn'>Warnings</h3><ul class='warn'>")
        out += ["<li>%s</li>" % e(w) for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            out.append("<li>... and %d more</li>" % (len(warnings) - MAX_WARNINGS))
        out.append("</ul>")
    return out


def _summary(t):
    """The best lag per group and series (green where its p_eff < 0.05)."""
    e = html.escape
    out = [
        "<h3>Best lag per group</h3><table><tr><th>group</th><th>series</th><th>best lag</th><th>r</th>"
        "<th>n</th><th>p</th><th>N<sub>eff</sub></th><th>p<sub>eff</sub></th></tr>"
    ]
    for (grp, ser), part in t.groupby(["group", "series"], sort=False):
        best = part[part["best_lag"].astype(bool)]
        if len(best):
            b = best.iloc[0]
            cells = [
                _fmt(int(b["lag"])),
                _fmt(b["r"]),
                _fmt(int(b["n"])),
                _fmt(b["p"]),
                _fmt(b["n_eff"], 1),
                _fmt(b["p_eff"]),
            ]
        else:
            cells = ["&ndash;"] * 6
        sig = len(best) and np.isfinite(best.iloc[0]["p_eff"]) and best.iloc[0]["p_eff"] < 0.05
        out.append(
            "<tr%s><td class='t'>%s</td><td class='t'>%s</td>%s</tr>"
            % (" class='sig'" if sig else "", e(str(grp)), e(str(ser)), "".join("<td>%s</td>" % c for c in cells))
        )
    out.append("</table>")
    return out


_LAG_COLUMNS = ["lag", "n", "r", "p", "r1_x", "r1_y", "n_eff", "p_eff", "note"]


def _lag_table(ser, part, curves, heads):
    """The per-lag table of one series of one group (best lag bold, p_eff < 0.05 green)."""
    e = html.escape
    months = [c["months"] for c in curves if c["series"] == ser]
    span = ""
    if months and len(months[0]):
        span = " (%s .. %s)" % (month_label(months[0][0]), month_label(months[0][-1]))
    out = ["<p><b>%s</b>%s</p><table><tr>%s</tr>" % (e(str(ser)), e(span), "".join("<th>%s</th>" % h for h in heads))]
    for _, row in part.iterrows():
        classes = (["best"] if bool(row["best_lag"]) else []) + (
            ["sig"] if np.isfinite(row["p_eff"]) and row["p_eff"] < 0.05 else []
        )
        cls = " class='%s'" % " ".join(classes) if classes else ""
        cells = []
        for c in _LAG_COLUMNS:
            v = row[c]
            if c in ("lag", "n"):
                cells.append("<td>%d</td>" % int(v))
            elif c == "note":
                cells.append("<td class='t'>%s</td>" % e(str(v or "")))
            elif c == "p_eff" and np.isfinite(v) and v < 0.05:
                cells.append("<td class='sig'>%s</td>" % _fmt(v))
            else:
                cells.append("<td>%s</td>" % _fmt(v, 1 if c == "n_eff" else 3))
        out.append("<tr%s>%s</tr>" % (cls, "".join(cells)))
    out.append("</table>")
    return out


def _group_sections(result, mpl, max_plots, max_tables):
    """Per group: its figure (for the first ``max_plots``) and its per-lag tables (first ``max_tables``)."""
    e = html.escape
    t = result.table
    xl, yl = result.x_label, result.y_label
    heads = [
        "lag",
        "n",
        "r",
        "p",
        "r<sub>1</sub> %s" % e(xl),
        "r<sub>1</sub> %s" % e(yl),
        "N<sub>eff</sub>",
        "p<sub>eff</sub>",
        "note",
    ]
    out = []
    groups = list(dict.fromkeys(t["group"]))
    if len(groups) > max_tables:
        out.append(
            "<p>Per-lag details for the first %d of %d groups; the output table has all.</p>"
            % (max_tables, len(groups))
        )
    by_group = dict(tuple(t.groupby("group", sort=False)))
    curves_by_group = {}
    for c in result.curves:
        curves_by_group.setdefault(c["group"], []).append(c)
    for gi, grp in enumerate(groups[:max_tables]):
        gt = by_group[grp]
        out.append("<h3>%s</h3>" % e(str(grp)))
        curves = curves_by_group.get(grp, [])
        if mpl is not None and curves and gi < max_plots:
            try:
                png = group_figure(curves, gt, xl, yl, mpl, title=str(grp))
                out.append("<img alt='%s' src='data:image/png;base64,%s'/>" % (e(str(grp)), png))
            except Exception as ex:  # noqa: BLE001 - a plot failure must not lose the tables
                out.append("<p class='warn'>plot failed: %s</p>" % e(str(ex)))
        elif mpl is not None and gi == max_plots:
            out.append("<p>(plots shown for the first %d groups only)</p>" % max_plots)
        for ser, part in gt.groupby("series", sort=False):
            out += _lag_table(ser, part, curves, heads)
    return out


def html_report(
    result, title="Lagged correlation", parameters=None, plots=True, max_plots=MAX_PLOTS, max_tables=MAX_TABLES
):
    """The HTML page (str) for a :class:`~..stats.lagcorr.LagCorrResult`.

    The summary (best lag per group and series) lists every group; plots are drawn for the
    first ``max_plots`` groups and per-lag tables for the first ``max_tables`` (the output
    table holds everything).
    """
    mpl = _matplotlib() if plots else None
    out = _head(title, result.x_label, result.y_label)
    out += _parameters_and_warnings(parameters, result.warnings)
    out += _summary(result.table)
    if plots and mpl is None:
        out.append("<p>matplotlib is not available: tables only.</p>")
    out += _group_sections(result, mpl, max_plots, max_tables)
    out.append("</body></html>")
    return "\n".join(out)


def write_html_report(path, result, **kwargs):
    """Write :func:`html_report` to ``path`` (UTF-8) atomically (temporary file, then rename)."""
    text = html_report(result, **kwargs)
    tmp = "%s.partial" % path
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
