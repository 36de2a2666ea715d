"""Demo step: GRACE weighted downscaling and groundwater storage anomaly from real-layout product files.

Generates a CSR-layout mascon NetCDF (global 0-360 ring, cm, time_bounds, one missing month and one
special month centred in its neighbour), FLDAS-layout monthly files (0.1 deg, volumetric soil moisture
in four layers + SWE) and GLDAS-layout monthly files (0.25 deg canopy water) over a 4x4 deg region, with
a planted groundwater depletion bowl. Runs ``subsidence:gracedownscaling`` then
``subsidence:groundwateranomaly`` and compares the regional GWSA with the planted groundwater series
(after removing its calendar-month climatology, which the method cannot recover: reference note sec. 5).
"""
import numpy as np
import pandas as pd

from subsidence_toolkit.core import tsraster
from subsidence_toolkit.demo import grace_data as gd


def run(demo):
    src = gd.make_demo_inputs(demo.data_dir / "grace", small=demo.small)
    months = src["months"]
    demo.log("made CSR-layout GRACE file + %d FLDAS and %d GLDAS monthly files, %d-%02d..%d-%02d "
             "(GRACE missing %d-%02d, special month %d-%02d)" % ((len(months), len(months)) + months[0] + months[-1]
                                                                 + src["missing"] + src["special"]))
    td = str(demo.out_dir / "grace_downscaled_tws.tif")
    td_table = str(demo.out_dir / "grace_downscaled_means.csv")
    demo.run("subsidence:gracedownscaling", {
        "GRACE": src["grace"], "GRACE_VARIABLE": "lwe_thickness", "GRACE_SCALE": 10,
        "MODEL_FILES": ";".join(src["fldas_soil"] + [src["fldas_swe"]]), "MODEL_UNITS": "auto",
        "INTERPOLATION": 0, "OUTPUT": td, "OUTPUT_TABLE": td_table})
    gw = str(demo.out_dir / "gwsa.tif")
    gw_table = str(demo.out_dir / "gwsa_means.csv")
    demo.run("subsidence:groundwateranomaly", {
        "TWSA": td, "COMPONENT_FILES": ";".join(src["fldas_soil"] + [src["fldas_swe"], src["gldas_canopy"]]),
        "COMPONENT_UNITS": "auto", "MODE": 0, "BASELINE_START": 2004.0, "BASELINE_END": 2009.999,
        "OUTPUT": gw, "OUTPUT_TABLE": gw_table})
    demo.outputs["grace_downscaled"] = td
    demo.outputs["gwsa"] = gw
    demo.outputs["gwsa_table"] = gw_table

    # planted truth: regional mean groundwater, minus its calendar-month climatology, as anomaly
    lat, lon = np.meshgrid(src["fine_lat"], src["fine_lon"], indexing="ij")
    w = np.cos(np.deg2rad(lat))
    g = np.array([np.sum(gd.planted_gws(gd.t_of(y, m), lat, lon) * w) / w.sum() for y, m in months])
    ok = np.array([(y, m) != src["missing"] for y, m in months])
    moy = np.array([m for _, m in months])
    clim = np.array([g[ok & (moy == k)].mean() for k in range(1, 13)])
    dev = g - clim[moy - 1]
    expected = dev - dev[ok].mean()
    table = pd.read_csv(gw_table)
    got = table["gwsa_mm"].to_numpy()
    sel = ok & np.isfinite(got)
    rmse = float(np.sqrt(np.mean((got[sel] - expected[sel]) ** 2)))
    r = float(np.corrcoef(got[sel], expected[sel])[0, 1])
    ds = tsraster.open_raster(gw)
    demo.log("GWSA: %d bands; missing GRACE month is NoData: %s" % (
        ds.RasterCount, bool(np.isnan(tsraster.read_block(ds, 0, ds.RasterYSize, bands=[months.index(src["missing"]) + 1])).all())))
    demo.log("regional GWSA vs planted groundwater (climatology removed): RMSE %.2f mm, r = %.4f, planted range %.1f mm"
             % (rmse, r, float(np.ptp(expected))))
    return {"gwsa_rmse_mm": rmse, "gwsa_r": r, "months": len(months)}
