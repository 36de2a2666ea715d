"""Demo step: the whole seed workflow as one model, ``subsidence:workflow``, headless on the demo world.

SBAS -> monthly resampling -> GRACE downscaling -> GWSA -> class sampling -> lagged correlation, and
Geodetector on the SBAS velocity, in one ``qgis_process.bin run``. Writes ``workflow/report.html``
(velocity and GWSA maps, class time series, the lag table, Geodetector q and interaction tables) and
logs how close the results are to the planted truth: velocity RMSE, the recovered lag per landscape
against the planted one, and the top-ranked factor.
"""

import html
import os

import numpy as np
import pandas as pd
from osgeo import gdal

from subsidence_toolkit.demo import world as world_mod

FLDAS_VARS = ("SoilMoi00_10cm_tavg", "SoilMoi10_40cm_tavg", "SoilMoi40_100cm_tavg", "SoilMoi100_200cm_tavg", "SWE_inst")


def _pattern(files, var):
    folder = os.path.dirname(files[0])
    name = os.path.basename(files[0])
    prefix, rest = name.split(".A", 1)
    suffix = rest[6:]  # after YYYYMM
    return 'NETCDF:"%s/%s.A*%s":%s' % (folder, prefix, suffix, var)


def _best_lags(lag_csv, planted):
    t = pd.read_csv(lag_csv)
    t = t[t["best_lag"].astype(str).str.lower().isin(["1", "true"])]
    rows = []
    for area, want in planted.items():
        sel = t[(t["area"] == area) & (t["series"] == "temporal")]
        if sel.empty:
            continue
        top = sel.sort_values("r", ascending=False).iloc[0]
        rows.append(
            {
                "area": area,
                "planted_lag": "none" if want is None else int(want),
                "recovered_lag": int(top["lag"]),
                "class": top["class"],
                "r": float(top["r"]),
                "p_eff": float(top["p_eff"]),
                "n": int(top["n"]),
            }
        )
    return pd.DataFrame(rows)


def _table(df, n=None):
    df = df.head(n) if n else df
    return df.to_html(index=False, float_format=lambda v: "%.4g" % v, border=0)


def _outlines(areas_path):
    """[(name, WKT, CRS WKT)] of the study-area polygons (for the report's map outlines)."""
    from osgeo import ogr

    ds = ogr.Open(str(areas_path))
    lyr = ds.GetLayer(0)
    srs = lyr.GetSpatialRef()
    crs = srs.ExportToWkt() if srs is not None else ""
    return [(f.GetField("area"), f.GetGeometryRef().ExportToWkt(), crs) for f in lyr]


def run(demo):
    w = world_mod.for_demo(demo)
    truth = w["truth"]
    folder = demo.out_dir / "workflow"
    folder.mkdir(parents=True, exist_ok=True)
    f = {
        k: str(folder / v)
        for k, v in (
            ("velocity", "velocity.tif"),
            ("timeseries", "timeseries.tif"),
            ("quality", "quality.tif"),
            ("network", "network.csv"),
            ("monthly", "displacement_monthly.tif"),
            ("twsa", "twsa_downscaled.tif"),
            ("gwsa", "gwsa.tif"),
            ("points", "class_points.gpkg"),
            ("classes", "class_timeseries.csv"),
            ("lag", "lagged_correlation.csv"),
            ("lag_html", "lagged_correlation.html"),
            ("gd_factor", "geodetector_factor.csv"),
            ("gd_inter", "geodetector_interaction.csv"),
            ("gd_html", "geodetector.html"),
            ("report", "report.html"),
        )
    }
    months = truth["months"]
    y0, y1 = int(months[0][:4]), int(months[-1][:4])
    params = {
        "interferograms": w["interferograms"],
        "coherence": w["coherence"],
        "grace": w["grace"],
        "model_files": "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS),
        "component_files": "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS),
        "baseline_start": float(y0),
        "baseline_end": y1 + 0.999,
        "areas": w["areas"],
        "area_field": "area",
        "points_per_class": 50 if demo.small else 100,
        "max_lag": 3,
        "factors": list(w["factors"].values()),
        "classes": 20,
        "sbas:LOS velocity": f["velocity"],
        "sbas:LOS displacement time series": f["timeseries"],
        "sbas:SBAS quality": f["quality"],
        "sbas:Interferogram network": f["network"],
        "monthly:Monthly displacement": f["monthly"],
        "downscaling:Downscaled TWSA": f["twsa"],
        "gwsa:GWSA": f["gwsa"],
        "classes:Class sample points": f["points"],
        "classes:Class time series": f["classes"],
        "lag:Lagged correlation": f["lag"],
        "lag:Lagged correlation report": f["lag_html"],
        "geodetector:Geodetector factors": f["gd_factor"],
        "geodetector:Geodetector interactions": f["gd_inter"],
        "geodetector:Geodetector report": f["gd_html"],
        "report:Workflow report": f["report"],
    }
    demo.run("subsidence:workflow", params)

    # ---- closeness to the planted truth
    vel = gdal.Open(f["velocity"]).ReadAsArray().astype(float)
    md = gdal.Open(f["timeseries"]).GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    vt = gdal.Open(truth["velocity_truth"]).ReadAsArray().astype(float)
    vt = vt - vt[r, c]
    ok = np.isfinite(vel) & np.isfinite(vt)
    rmse = float(np.sqrt(np.mean((vel[ok] - vt[ok]) ** 2)))
    lags = _best_lags(f["lag"], truth["planted_lag_months"])
    fac = pd.read_csv(f["gd_factor"]).sort_values("q", ascending=False)
    top = str(fac["factor"].iloc[0])
    demo.log(
        "velocity RMSE vs planted (LSQ slope of the planted displacement): %.2f mm/yr "
        "(%d px, rates %.0f..%.0f mm/yr)" % (rmse, ok.sum(), np.nanmin(vt), np.nanmax(vt))
    )
    hits = 0
    for row in lags.itertuples():
        ok_lag = row.planted_lag != "none" and row.recovered_lag == row.planted_lag
        hits += int(ok_lag)
        demo.log(
            "lag %-11s planted %-4s recovered %d (class %s, temporal change, r = %.2f, p_eff = %.2g)%s"
            % (
                row.area,
                row.planted_lag,
                row.recovered_lag,
                row._4,
                row.r,
                row.p_eff,
                "" if row.planted_lag != "none" else "  <- no coupling planted: r should be weak",
            )
        )
    demo.log(
        "top-ranked Geodetector factor: %s (q = %.3f); planted strongest: %s -> %s"
        % (
            top,
            fac["q"].iloc[0],
            truth["strongest_factor"],
            "MATCH" if top == truth["strongest_factor"] else "NO MATCH",
        )
    )

    # ---- report: the page the model wrote (core/reports/workflow_report.py), plus the planted truth
    from subsidence_toolkit.core.reports import workflow_report

    truth_html = [
        "<h2>Against the planted truth</h2><ul><li>Velocity RMSE: <b>%.2f mm/yr</b> over %d pixels</li>"
        "<li>Top-ranked factor: <b>%s</b> (planted: %s)</li></ul>" % (rmse, ok.sum(), top, truth["strongest_factor"]),
        _table(lags),
    ]
    report = folder / "report.html"
    outlines = _outlines(w["areas"])
    workflow_report.write_html_report(
        str(report),
        f["velocity"],
        f["gwsa"],
        class_table=f["classes"],
        lag_table=f["lag"],
        factor_table=f["gd_factor"],
        interaction_table=f["gd_inter"],
        outlines=outlines,
        links={"lagged correlation": f["lag_html"], "Geodetector": f["gd_html"]},
        title="Subsidence\u2013groundwater workflow on the demo world",
        intro="One run of <code>subsidence:workflow</code> (%d interferograms, %d months of GRACE/FLDAS). "
        "Inputs and planted truth: <code>%s</code>."
        % (len(w["interferograms"]), len(months), html.escape(w["truth_dir"])),
        sections_before=truth_html,
    )
    demo.outputs["workflow_report"] = str(report)
    demo.log("report: %s" % report)
    return {
        "velocity_rmse_mm_yr": rmse,
        "lags": lags.to_dict("records"),
        "top_factor": top,
        "top_factor_matches": top == truth["strongest_factor"],
        "lag_hits": hits,
    }
