"""Demo step: lagged correlation of class-averaged deformation and GWSA (Liu et al. 2024 sec. 3.3).

Always: writes a small long-format CSV with three landscapes whose deformation follows GWSA by a
planted 0, 1 and 2 months (one GRACE month missing, as in real gaps), runs the algorithm and logs
the recovered against the planted lags.

Then, when the sampling step produced ``demo.outputs['class_table']`` (the long table: area,
class, layer, date, mean, ...), runs it on that table with the GWSA layer as X and the
deformation layer as Y (lags -3..3) and logs the best lag per landscape and class. Those demo
rasters have no planted lag (the GWSA annual cycle is a quarter-year off the irrigation
district's seasonal deformation), so nothing is compared there.
"""

import csv
import datetime as dt
from pathlib import Path

import numpy as np

PLANTED = (("Kubuqi Desert", 0), ("Hetao Irrigation District", 1), ("Jinbei Mining Area", 2))
CLASSES = ("micro", "mild")
START = dt.date(2020, 1, 15)


def _months(n):
    out = []
    for i in range(n):
        y, m = divmod(START.month - 1 + i, 12)
        out.append(dt.date(START.year + y, m + 1, 15))
    return out


def make_planted_table(path, n_months=24, seed=70, gap_month=18):
    """Long CSV (area, class, layer, date, mean): deformation[t] = a * GWSA[t - lag] + noise (mm).

    GWSA: trend + annual cycle + AR(1) noise; month ``gap_month`` of GWSA is left empty (a
    missing GRACE month: the temporal change across it must be missing, not zero).
    """
    rng = np.random.default_rng(seed)
    dates = _months(n_months)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["area", "class", "layer", "date", "mean"])
        for area, lag in PLANTED:
            for ci, cls in enumerate(CLASSES):
                t = np.arange(-lag, n_months)
                e = np.zeros(t.size)
                for i in range(1, t.size):
                    e[i] = 0.5 * e[i - 1] + rng.normal(0, 6.0)
                g = -1.5 * t + 15.0 * np.sin(2 * np.pi * (t + 2) / 12) + e
                gwsa = g[lag:]
                defo = (0.4 + 0.3 * ci) * g[:n_months] + rng.normal(0, 1.0, n_months)
                for i, d in enumerate(dates):
                    gv = "" if i == gap_month else "%.3f" % gwsa[i]
                    w.writerow([area, cls, "gwsa", d.isoformat(), gv])
                    w.writerow([area, cls, "deformation", d.isoformat(), "%.3f" % defo[i]])
    return path


def _table_info(table_path):
    """(layer names, column names) of the class table (CSV or any OGR table)."""
    import pandas as pd

    path = str(table_path)
    if path.lower().endswith(".csv"):
        df = pd.read_csv(path)
    else:
        from osgeo import ogr

        ds = ogr.Open(path)
        lyr = ds.GetLayer(0)
        df = pd.DataFrame([f.items() for f in lyr])
    names = sorted(set(df["layer"].astype(str))) if "layer" in df.columns else []
    return names, list(df.columns)


def _pick(names, demo):
    """(X, Y) layer names of the class table: the GWSA layer is X, the deformation layer is Y."""
    gw_hint = Path(str(demo.outputs.get("gwsa", "gwsa"))).stem.lower()
    x = [n for n in names if "gwsa" in n.lower() or n.lower() == gw_hint]
    y = [n for n in names if n not in x]
    if len(x) == 1 and len(y) >= 1:
        pref = [n for n in y if any(k in n.lower() for k in ("def", "disp", "sbas", "los"))]
        return x[0], (pref or y)[0]
    return None, None


def _read(path):
    import pandas as pd

    t = pd.read_csv(path)
    t["best_lag"] = t["best_lag"].astype(str).str.lower().isin(["1", "true"])
    return t


def _correlate(demo, table, x_name, y_name, groups, name, planted=None, negative=False, best_by=0):
    """Run the algorithm on a long table; log the best lag per group (and the planted one); metrics."""
    out = str(demo.out_dir / ("%s.csv" % name))
    html = str(demo.out_dir / ("%s.html" % name))
    res = demo.run(
        "subsidence:laggedcorrelation",
        {
            "INPUT": table,
            "DATE_FIELD": "date",
            "VARIABLE_FIELD": "layer",
            "VALUE_FIELD": "mean",
            "X_NAME": x_name,
            "Y_NAME": y_name,
            "GROUP_FIELDS": groups,
            "MAX_LAG": 3,
            "NEGATIVE_LAGS": negative,
            "SERIES": 3,
            "DETREND": 0,
            "BEST_BY": best_by,
            "OUTPUT": out,
            "OUTPUT_HTML": html,
        },
    )
    out, html = res.get("OUTPUT", out), res.get("OUTPUT_HTML", html)
    t = _read(out)
    metrics = {"groups": int(t["group"].nunique())}
    hits = total = 0
    for _, row in t[t["best_lag"]].iterrows():
        msg = "%-45s %-10s best lag %+d, r = %.2f, p = %.1e, n_eff = %.1f, p_eff = %.1e" % (
            row["group"],
            row["series"],
            row["lag"],
            row["r"],
            row["p"],
            row["n_eff"],
            row["p_eff"],
        )
        if planted is not None and planted.get(row["area"]) is not None:
            want = planted[row["area"]]
            hits += int(row["lag"] == want)
            total += 1
            msg += "  (planted %d)" % want
        demo.log(msg)
    if planted is not None:
        demo.log("recovered the planted lag in %d of %d group/series cases" % (hits, total))
        metrics.update({"lag_recovered": hits, "lag_cases": total})
    demo.log("table %s, report %s" % (out, html))
    return out, html, metrics


def run(demo):
    # 1. planted lags: the accuracy check (always, it is tiny)
    n = 18 if demo.small else 24
    planted_csv = str(make_planted_table(demo.data_dir / "class_series_planted_lags.csv", n_months=n, gap_month=n - 6))
    demo.log(
        "made %s: %d landscapes x %d classes, %d months (GWSA month %d missing), planted lags %s"
        % (planted_csv, len(PLANTED), len(CLASSES), n, n - 5, ", ".join("%s %d" % p for p in PLANTED))
    )
    out, html, metrics = _correlate(
        demo, planted_csv, "gwsa", "deformation", ["area", "class"], "lagged_correlation_planted", planted=dict(PLANTED)
    )
    demo.outputs["lagcorr_table"], demo.outputs["lagcorr_report"] = out, html

    # 2. the workflow chain: the class-averaged series of the sampling step, when it ran
    table = demo.outputs.get("class_table")
    if not table:
        return metrics
    names, columns = _table_info(table)
    x_name, y_name = _pick(names, demo)
    if x_name is None:
        demo.log("class table %s has layers %s: cannot tell GWSA from deformation; skipped" % (table, names))
        return metrics
    groups = [g for g in ("area", "class") if g in columns]
    world = demo.outputs.get("world") or {}
    planted = world.get("truth", {}).get("planted_lag_months")
    demo.log(
        "class table %s: X = %s, Y = %s, groups %s (lags 0..3, best = largest positive r: elastic "
        "deformation follows groundwater with the same sign)" % (table, x_name, y_name, groups)
    )
    out, html, m2 = _correlate(
        demo, table, x_name, y_name, groups, "lagged_correlation_classes", planted=planted, best_by=1
    )
    demo.outputs["lagcorr_table"], demo.outputs["lagcorr_report"] = out, html
    metrics["class_table_groups"] = m2["groups"]
    return metrics
