"""Demo step: random points per deformation class and class-averaged time series (Liu et al. 2024 sec. 2.3.5).

Uses ``demo.outputs['sbas_velocity']`` with ``demo.outputs['sbas_monthly']`` (the SBAS series
resampled to months) and ``demo.outputs['gwsa']`` when earlier steps produced them. Otherwise it
makes small deterministic rasters with three landscapes (mining bowl / irrigation district /
desert; velocity and deformation in UTM 49N, GWSA in EPSG:4326) and checks the class means
against the planted deformation. The three landscapes are always written as a GeoPackage of
polygons (thirds of the velocity raster's extent). The long table goes to
``demo.outputs['class_table']`` (CSV).
"""

import numpy as np
import pandas as pd
from osgeo import ogr

from subsidence_toolkit.demo import sampling_data as sd


def _points(path):
    ds = ogr.Open(str(path))
    lyr = ds.GetLayer(0)
    return pd.DataFrame(
        [(f["id"], f["area"], f["class"], f["velocity"], f["row"], f["col"]) for f in lyr],
        columns=["id", "area", "class", "velocity", "row", "col"],
    )


def run(demo):
    vel = demo.outputs.get("sbas_velocity")
    monthly = demo.outputs.get("sbas_monthly")
    gwsa = demo.outputs.get("gwsa")
    planted = None
    if vel is None or monthly is None:
        planted = sd.make_rasters(demo.data_dir, demo.small)
        vel, monthly = planted["velocity"], planted["deformation"]
        demo.log(
            "made %s, %s (UTM 49N, %dx%d px of 100 m, %d months)"
            % (vel, monthly, planted["grid"].xsize, planted["grid"].ysize, len(planted["dates"]))
        )
        if gwsa is None:
            gwsa = planted["gwsa"]
            demo.log("made %s (EPSG:4326, 0.01 deg)" % gwsa)
    elif gwsa is None:
        from subsidence_toolkit.core.io.rasters import read_dates

        dates = read_dates(monthly)
        gwsa = sd.make_gwsa(demo.data_dir / "gwsa_monthly.tif", vel, dates)
        demo.log("made %s (EPSG:4326, 0.01 deg) over the velocity extent" % gwsa)
    world = demo.outputs.get("world")
    if planted is None and world:
        areas, area_field = world["areas"], "area"
    else:
        areas, area_field = sd.make_areas(demo.data_dir / "landscapes.gpkg", vel), "landscape"
    points_out = str(demo.out_dir / "class_points.gpkg")
    table_out = str(demo.out_dir / "class_timeseries.csv")
    report_out = str(demo.out_dir / "class_report.csv")
    n = 30 if demo.small else 100
    res = demo.run(
        "subsidence:sampledeformationclasses",
        {
            "VELOCITY": vel,
            "CLASS_BREAKS": "0,20,50,100",
            "CLASS_NAMES": "micro,mild,moderate,severe",
            "POINTS_PER_CLASS": n,
            "AREA": areas,
            "AREA_FIELD": area_field,
            "SEED": 2024,
            "TIME_SERIES": [monthly, gwsa],
            "WINDOW": 0,
            "OUTPUT_POINTS": points_out,
            "OUTPUT_TABLE": table_out,
            "OUTPUT_REPORT": report_out,
        },
    )
    demo.outputs["class_table"] = res.get("OUTPUT_TABLE", table_out)
    demo.outputs["class_points"] = res.get("OUTPUT_POINTS", points_out)
    demo.outputs["sampling_velocity"] = vel
    demo.outputs["sampling_deformation"] = monthly
    demo.outputs["sampling_gwsa"] = gwsa
    demo.outputs["sampling_areas"] = areas

    rep = pd.read_csv(report_out)
    for area, g in rep.groupby("area", sort=False):
        demo.log(
            "%-20s %s"
            % (
                area,
                ", ".join(
                    "%s %d/%d%s"
                    % (r["class"], r["selected"], r["available"], "" if r["status"] == "ok" else " (%s)" % r["status"])
                    for _, r in g.iterrows()
                ),
            )
        )
    tab = pd.read_csv(demo.outputs["class_table"])
    last = tab[tab["date"] == tab["date"].max()]
    for (area, cls), g in last.groupby(["area", "class"], sort=False):
        demo.log(
            "%-20s %-9s cumulative change at %s: %s"
            % (
                area,
                cls,
                g["date"].iloc[0],
                ", ".join("%s %.1f mm" % (r["layer"], r["cumulative_change"]) for _, r in g.iterrows()),
            )
        )
    metrics = {
        "points": int(rep["selected"].sum()),
        "empty_classes": int((rep["status"] == "empty").sum()),
        "table_rows": int(len(tab)),
    }
    if planted is None:
        return metrics
    # planted truth: the class mean of the deformation layer is the mean of the model at the points' pixels
    pts = _points(demo.outputs["class_points"])
    defo = planted["defo"]
    dates = [d.isoformat() for d in planted["dates"]]
    layer = tab[tab["layer"] == "deformation_monthly"]
    worst = 0.0
    for (area, cls), g in layer.groupby(["area", "class"]):
        sel = pts[(pts["area"] == area) & (pts["class"] == cls)]
        exp = defo[:, sel["row"].to_numpy(), sel["col"].to_numpy()].astype(np.float32).mean(axis=1)
        got = g.set_index("date").reindex(dates)["mean"].to_numpy(float)
        worst = max(worst, float(np.nanmax(np.abs(got - exp))))
    vel_err = float(np.max(np.abs(pts["velocity"].to_numpy() - planted["v"][pts["row"], pts["col"]])))
    demo.log(
        "class means vs planted deformation at the sampled pixels: max |diff| = %.2e mm; "
        "point velocities vs planted: max |diff| = %.2e mm/yr" % (worst, vel_err)
    )
    metrics.update(max_abs_diff_class_mean_mm=worst, max_abs_diff_velocity=vel_err)
    return metrics
