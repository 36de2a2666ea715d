"""Demo step: regional vertical picture -- mosaic two frames, decompose ascending + descending, LOS -> vertical.

Uses the demo world's ``regional/`` inputs (:meth:`demo.world.World.write_regional`): two overlapping
frames of an ascending track as monthly LOS series (frame B on its own reference: a planted offset per
date), a descending track and both tracks' E/N/U unit-vector rasters. Runs

1. ``subsidence:mosaicframes`` on the two ascending frames (frame A = reference) and compares the
   recovered per-date offsets and the mosaic with the planted truth;
2. ``subsidence:decomposelos`` on the ascending mosaic + the descending track, then fits a velocity to
   the vertical and east series and logs their RMSE against the planted velocities;
3. ``subsidence:projectlos`` on the ascending mosaic with its U raster (horizontal motion neglected),
   to show the error the east motion leaves in a LOS-only vertical.
"""

import numpy as np
import pandas as pd

from subsidence_toolkit.core.io.rasters import open_raster, read_block, read_dates
from subsidence_toolkit.demo import world as world_mod


def _stack(path):
    ds = open_raster(path)
    return read_block(ds, 0, ds.RasterYSize), read_dates(ds) if ds.RasterCount > 1 else None


def _velocity(series, dates):
    years = np.array([(d - dates[0]).days / 365.25 for d in dates])
    X = np.stack([np.ones_like(years), years], 1)
    flat = series.reshape(len(years), -1)
    ok = np.isfinite(flat).all(axis=0)
    v = np.full(flat.shape[1], np.nan)
    v[ok] = np.linalg.lstsq(X, flat[:, ok], rcond=None)[0][1]
    return v.reshape(series.shape[1:])


def _rmse(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def run(demo):
    w = world_mod.for_demo(demo)
    r = w["regional"]
    out = demo.out_dir / "regional"
    out.mkdir(parents=True, exist_ok=True)
    mosaic, offsets = str(out / "asc_mosaic.tif"), str(out / "asc_offsets.csv")
    demo.run(
        "subsidence:mosaicframes",
        {"INPUTS": [r["frame_a"], r["frame_b"]], "REFERENCE_FRAME": 0, "OUTPUT": mosaic, "OUTPUT_OFFSETS": offsets},
    )
    table = pd.read_csv(offsets)
    got = -table[table["frame"] == 1]["offset_mm"].to_numpy()
    off_err = float(np.abs(got - np.array(r["frame_b_offsets_mm"])).max())
    los, dates = _stack(mosaic)
    truth_los, _ = _stack(r["truth_asc_los_monthly"])
    mosaic_rmse = _rmse(los, truth_los)
    demo.log(
        "mosaic of 2 ascending frames: max offset error %.3f mm (1 mm noise per pixel), mosaic RMSE vs truth "
        "%.3f mm" % (off_err, mosaic_rmse)
    )
    vert, east, qual = (str(out / n) for n in ("vertical_monthly.tif", "east_monthly.tif", "decomposition_q.tif"))
    demo.run(
        "subsidence:decomposelos",
        {
            "INPUTS": [mosaic, r["dsc"]],
            "E_RASTERS": [r["asc_E"], r["dsc_E"]],
            "N_RASTERS": [r["asc_N"], r["dsc_N"]],
            "U_RASTERS": [r["asc_U"], r["dsc_U"]],
            "OUTPUT_VERTICAL": vert,
            "OUTPUT_EAST": east,
            "OUTPUT_QUALITY": qual,
        },
    )
    v_series, vdates = _stack(vert)
    e_series, _ = _stack(east)
    tv, _ = _stack(r["truth_vertical_velocity"])
    te, _ = _stack(r["truth_east_velocity"])
    v_rmse = _rmse(_velocity(v_series, vdates), tv[0])
    e_rmse = _rmse(_velocity(e_series, vdates), te[0])
    demo.log(
        "decomposition (ascending mosaic + descending): vertical velocity RMSE %.3f mm/yr, east velocity RMSE "
        "%.3f mm/yr (planted east up to %.0f mm/yr)" % (v_rmse, e_rmse, float(np.nanmax(np.abs(te))))
    )
    proj = str(out / "asc_vertical_los_only.tif")
    demo.run("subsidence:projectlos", {"INPUT": mosaic, "GEOMETRY": r["asc_U"], "GEOMETRY_TYPE": 1, "OUTPUT": proj})
    p_series, _ = _stack(proj)
    p_rmse = _rmse(_velocity(p_series, dates), tv[0])
    demo.log(
        "LOS -> vertical of the ascending mosaic alone (east motion neglected): vertical velocity RMSE "
        "%.3f mm/yr" % p_rmse
    )
    demo.outputs.update(regional_mosaic=mosaic, regional_vertical=vert, regional_east=east)
    return {
        "offset_max_error_mm": off_err,
        "mosaic_rmse_mm": mosaic_rmse,
        "vertical_velocity_rmse_mm_yr": v_rmse,
        "east_velocity_rmse_mm_yr": e_rmse,
        "los_only_vertical_velocity_rmse_mm_yr": p_rmse,
    }
