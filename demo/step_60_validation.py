"""Demo step: validate the deformation series with leveling and GWSA with wells
(Liu et al. 2024 sec. 3.1.1, 2.3.4, 3.2.1).

Inputs: the deformation and GWSA rasters step 50 used (``demo.outputs['sampling_deformation']``,
``['sampling_gwsa']``, landscapes ``['sampling_areas']``), or freshly generated ones.

* Leveling: 20 benchmarks A1..A20 on a line towards the centre of the mining bowl, surveyed on
  27 Mar 2020, 25 Jul 2020, 25 Jan 2021 and 21 May 2021 (the dates of Liu et al. 2024). Heights (mm, with an
  arbitrary per-benchmark datum) = the deformation in a 200 m square around the benchmark at that
  date + planted survey noise of 5 mm; validated relative to the first survey, 200 m window,
  linear interpolation in time.
* Wells: two per landscape, monthly depth to water (m) = datum - dGWS / (Sy x 1000) with the
  specific yields of Liu et al. 2024 (mining 0.024, irrigation 0.03, desert 0.015), dGWS = the GWSA in a
  10 km square + planted noise of 8 mm; validated per landscape with VALUE_SCALE = Sy x 1000,
  depth-to-water sign, 10 km window, relative to the first common month.

Tables are CSV with lon/lat columns (EPSG:4326), as agencies usually deliver them.
"""

import csv
import datetime as dt

import numpy as np
from osgeo import osr

from subsidence_toolkit.core.io.dates import days_since
from subsidence_toolkit.core.io.rasters import open_raster, read_dates
from subsidence_toolkit.core.stats import sampling
from subsidence_toolkit.demo import sampling_data as sd

LEVELING_DATES = (dt.date(2020, 3, 27), dt.date(2020, 7, 25), dt.date(2021, 1, 25), dt.date(2021, 5, 21))
LEVELING_NOISE_MM = 5.0
WELL_NOISE_MM = 8.0


def _to_lonlat(path, x, y):
    src = osr.SpatialReference()
    src.ImportFromWkt(open_raster(path).GetProjection())
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, sd.wgs84_srs())
    out = np.array([ct.TransformPoint(float(a), float(b))[:2] for a, b in zip(x, y)])
    return out[:, 0], out[:, 1]


def _series_at(path, x, y, window, when):
    """Window mean of the raster at (x, y) (raster CRS), linearly interpolated to the dates ``when``."""
    ds = open_raster(path)
    dates = read_dates(ds)
    m, _ = sampling.window_means(ds, x, y, window)
    t = days_since(dates)
    q = np.array([(d - dates[0]).days for d in when], float)
    return np.array([np.interp(q, t, row) for row in m])


def _summary_line(res_summary_csv):
    import pandas as pd

    s = pd.read_csv(res_summary_csv)
    a = s[s["id"] == "(all)"].iloc[0]
    return a, (
        "n = %d, max |error| %.1f mm, min %.1f, median %.1f, mean %.1f, RMSE %.1f, bias %.1f, "
        "R = %.2f (p = %.2g)"
        % (
            a["n"],
            a["max_abs_error"],
            a["min_abs_error"],
            a["median_abs_error"],
            a["mean_abs_error"],
            a["rmse"],
            a["bias"],
            a["pearson_r"],
            a["p_value"],
        )
    )


def run(demo):
    if demo.outputs.get("world") and demo.outputs.get("sampling_deformation"):
        return run_world(demo)
    return run_own(demo)


def run_world(demo):
    """Validate the world's SBAS series against its leveling and its GWSA against its wells (independent truth)."""
    import pandas as pd

    w = demo.outputs["world"]
    defo, gwsa = demo.outputs["sampling_deformation"], demo.outputs["sampling_gwsa"]
    metrics = {}
    out, summ = str(demo.out_dir / "leveling_validation.csv"), str(demo.out_dir / "leveling_summary.csv")
    demo.run(
        "subsidence:validatetimeseries",
        {
            "MEASUREMENTS": w["leveling"],
            "ID_FIELD": "id",
            "DATE_FIELD": "date",
            "VALUE_FIELD": "displacement_mm",
            "X_FIELD": "lon",
            "Y_FIELD": "lat",
            "MEASUREMENTS_CRS": "EPSG:4326",
            "VALUE_SCALE": 1.0,
            "SIGN": 0,
            "TIME_SERIES": defo,
            "WINDOW": 200,
            "DATE_TOLERANCE": 16,
            "DATE_MATCHING": 1,
            "RELATIVE": True,
            "OUTPUT": out,
            "OUTPUT_SUMMARY": summ,
        },
    )
    a, line = _summary_line(summ)
    demo.log("leveling vs monthly InSAR (200 m window, relative to the first survey): %s" % line)
    metrics["leveling"] = {"n": int(a["n"]), "rmse": float(a["rmse"]), "pearson_r": float(a["pearson_r"])}
    demo.outputs["leveling_validation"] = out
    wells = pd.read_csv(w["wells"])
    metrics["wells"] = {}
    for sy, g in wells.groupby("sy"):
        path = demo.data_dir / ("wells_sy%.3f.csv" % sy)
        g.to_csv(path, index=False)
        out = str(demo.out_dir / ("wells_sy%.3f_validation.csv" % sy))
        summ = str(demo.out_dir / ("wells_sy%.3f_summary.csv" % sy))
        demo.run(
            "subsidence:validatetimeseries",
            {
                "MEASUREMENTS": str(path),
                "ID_FIELD": "id",
                "DATE_FIELD": "date",
                "VALUE_FIELD": "head_m",
                "X_FIELD": "lon",
                "Y_FIELD": "lat",
                "MEASUREMENTS_CRS": "EPSG:4326",
                "VALUE_SCALE": sy * 1000.0,
                "SIGN": 0,
                "TIME_SERIES": gwsa,
                "WINDOW": 10000,
                "DATE_TOLERANCE": 16,
                "DATE_MATCHING": 0,
                "RELATIVE": True,
                "OUTPUT": out,
                "OUTPUT_SUMMARY": summ,
            },
        )
        a, line = _summary_line(summ)
        demo.log("wells (Sy %.3f) dGWS = dH x Sy vs GWSA (10 km window): %s" % (sy, line))
        metrics["wells"]["%.3f" % sy] = {"n": int(a["n"]), "rmse": float(a["rmse"]), "pearson_r": float(a["pearson_r"])}
    demo.log(
        "(GWSA is groundwater with the GRACE-era monthly climatology removed -- the method's property -- so "
        "wells, which keep it, agree only in the non-seasonal part)"
    )
    return metrics


def run_own(demo):
    defo = demo.outputs.get("sampling_deformation")
    gwsa = demo.outputs.get("sampling_gwsa")
    if defo is None or gwsa is None:
        made = sd.make_rasters(demo.data_dir, demo.small)
        defo, gwsa = made["deformation"], made["gwsa"]
        demo.log("made %s and %s" % (defo, gwsa))
    rng = np.random.default_rng(60)
    metrics = {}

    # ---------------------------------------------------------------- leveling
    x0, y0, x1, y1, _ = sd.raster_extent(defo)
    w = (x1 - x0) / 3.0
    # from the west rim of the mining landscape to its centre (A20 closest to the bowl centre)
    bx = np.linspace(x0 + 0.08 * w, x0 + 0.5 * w, 20)
    by = np.full(20, (y0 + y1) / 2.0)
    truth = _series_at(defo, bx, by, 200.0, LEVELING_DATES)
    ok = np.isfinite(truth).all(axis=1)
    lon, lat = _to_lonlat(defo, bx, by)
    lev_csv = demo.data_dir / "leveling.csv"
    with open(lev_csv, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["benchmark", "survey_date", "height_mm", "lon", "lat"])
        for k in np.flatnonzero(ok):
            datum = 1000.0 * rng.uniform(1100, 1300)  # benchmark elevation, mm
            for j, d in enumerate(LEVELING_DATES):
                wr.writerow(
                    [
                        "A%d" % (k + 1),
                        d.isoformat(),
                        "%.2f" % (datum + truth[k, j] + rng.normal(0, LEVELING_NOISE_MM)),
                        "%.8f" % lon[k],
                        "%.8f" % lat[k],
                    ]
                )
    demo.log("leveling: %d benchmarks x %d surveys -> %s" % (ok.sum(), len(LEVELING_DATES), lev_csv))
    out, summ = str(demo.out_dir / "leveling_validation.csv"), str(demo.out_dir / "leveling_summary.csv")
    demo.run(
        "subsidence:validatetimeseries",
        {
            "MEASUREMENTS": str(lev_csv),
            "ID_FIELD": "benchmark",
            "DATE_FIELD": "survey_date",
            "VALUE_FIELD": "height_mm",
            "X_FIELD": "lon",
            "Y_FIELD": "lat",
            "MEASUREMENTS_CRS": "EPSG:4326",
            "VALUE_SCALE": 1.0,
            "SIGN": 0,
            "TIME_SERIES": defo,
            "WINDOW": 200,
            "DATE_TOLERANCE": 16,
            "DATE_MATCHING": 1,
            "RELATIVE": True,
            "OUTPUT": out,
            "OUTPUT_SUMMARY": summ,
        },
    )
    a, line = _summary_line(summ)
    # relative errors combine two surveys' noise: expected RMSE = sqrt(2) x 5 mm
    demo.log("leveling vs InSAR: %s (planted: RMSE ~ %.1f mm)" % (line, np.sqrt(2) * LEVELING_NOISE_MM))
    metrics["leveling"] = {
        k: float(a[k])
        for k in ("n", "max_abs_error", "min_abs_error", "median_abs_error", "mean_abs_error", "rmse", "pearson_r")
    }
    demo.outputs["leveling_validation"] = out

    # ---------------------------------------------------------------- wells
    ds = open_raster(gwsa)
    months = read_dates(ds)
    src = osr.SpatialReference()
    src.ImportFromWkt(ds.GetProjection())
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    metrics["wells"] = {}
    for i, area in enumerate(sd.AREAS):
        # two wells per landscape, at 1/3 and 2/3 of its width, 40 % / 60 % of the height
        wx = np.array([x0 + (i + 1 / 3) * w, x0 + (i + 2 / 3) * w])
        wy = np.array([y0 + 0.4 * (y1 - y0), y0 + 0.6 * (y1 - y0)])
        lon, lat = _to_lonlat(defo, wx, wy)
        if src.IsGeographic():
            gx, gy = lon, lat
        else:
            ct = osr.CoordinateTransformation(sd.wgs84_srs(), src)
            g = np.array([ct.TransformPoint(float(a), float(b))[:2] for a, b in zip(lon, lat)])
            gx, gy = g[:, 0], g[:, 1]
        obs_dates = [d.replace(day=int(rng.integers(8, 23))) for d in months]
        truth = _series_at(gwsa, gx, gy, 10000.0, obs_dates)
        sy = sd.SY[area]
        path = demo.data_dir / ("wells_%s.csv" % area.split()[0])
        with open(path, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["well", "date", "depth_m", "lon", "lat"])
            for k in range(2):
                datum = rng.uniform(5, 40)
                for j, d in enumerate(obs_dates):
                    dgws = truth[k, j] + rng.normal(0, WELL_NOISE_MM)
                    wr.writerow(
                        [
                            "%s-%d" % (area.split()[0], k + 1),
                            d.isoformat(),
                            "%.5f" % (datum - dgws / (sy * 1000.0)),
                            "%.8f" % lon[k],
                            "%.8f" % lat[k],
                        ]
                    )
        out = str(demo.out_dir / ("wells_%s_validation.csv" % area.split()[0]))
        summ = str(demo.out_dir / ("wells_%s_summary.csv" % area.split()[0]))
        demo.run(
            "subsidence:validatetimeseries",
            {
                "MEASUREMENTS": str(path),
                "ID_FIELD": "well",
                "DATE_FIELD": "date",
                "VALUE_FIELD": "depth_m",
                "X_FIELD": "lon",
                "Y_FIELD": "lat",
                "MEASUREMENTS_CRS": "EPSG:4326",
                "VALUE_SCALE": sy * 1000.0,
                "SIGN": 1,
                "TIME_SERIES": gwsa,
                "WINDOW": 10000,
                "DATE_TOLERANCE": 16,
                "DATE_MATCHING": 0,
                "RELATIVE": True,
                "OUTPUT": out,
                "OUTPUT_SUMMARY": summ,
            },
        )
        a, line = _summary_line(summ)
        demo.log(
            "wells %-20s (Sy %.3f): %s (planted noise %.0f mm; nearest month vs observation day adds "
            "up to half a month of change)" % (area, sy, line, WELL_NOISE_MM)
        )
        metrics["wells"][area] = {
            "n": int(a["n"]),
            "rmse": float(a["rmse"]),
            "pearson_r": float(a["pearson_r"]),
            "p_value": float(a["p_value"]),
        }
    return metrics
