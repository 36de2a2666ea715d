"""Demo step: GRACE weighted downscaling and groundwater storage anomaly from real-layout product files.

Inputs come from the demo world (``demo.outputs['world']``, generated here when no earlier step did):
a CSR-layout mascon NetCDF (cm, lat ascending, lon 0-360 style x.125 centres, ``time_bounds``, one
missing month and one record centred in the previous month), FLDAS-layout monthly files (X/Y,
volumetric soil moisture in four layers + SWE) and GLDAS-layout monthly files (0.25 deg canopy water).

1. ``subsidence:gracedownscaling``: GRACE -> the FLDAS grid, model TWS = FLDAS soil moisture + SWE +
   GLDAS canopy (interpolated to the FLDAS grid);
2. ``subsidence:groundwateranomaly``: GWSA = anomaly(TD) - anomaly(soil moisture + SWE + canopy) against
   the 2020.0-2021.999 baseline, regional means inside the landscape polygons.

The regional GWSA is compared with the planted groundwater (area-weighted over the landscapes) after
removing its calendar-month climatology, which the method cannot recover (reference note sec. 5).
"""

import json

import numpy as np
import pandas as pd

from subsidence_toolkit.core.io.rasters import open_raster, read_block

BASELINE = (2020.0, 2021.999)


def _world(demo):
    from subsidence_toolkit.demo import world

    return world.for_demo(demo)


def _glob(files):
    """``NETCDF:"<folder>/<prefix>*<suffix>":var`` for a list of monthly files."""
    import os

    folder = os.path.dirname(files[0])
    name = os.path.basename(files[0])
    prefix = name.split(".A")[0] + ".A"
    suffix = "." + name.split(".", 2)[2]
    return lambda var: 'NETCDF:"%s/%s*%s":%s' % (folder, prefix, suffix, var)


def run(demo):
    from subsidence_toolkit.demo import world as world_mod

    w = _world(demo)
    fl = _glob(w["fldas"])
    gl = _glob(w["gldas"])
    soil = [
        fl(v) for v in ("SoilMoi00_10cm_tavg", "SoilMoi10_40cm_tavg", "SoilMoi40_100cm_tavg", "SoilMoi100_200cm_tavg")
    ]
    storages = soil + [fl("SWE_inst"), gl("CanopInt_inst")]
    truth = w["truth"]
    demo.log(
        "GRACE %s (missing %s, record of %s centred in the previous month); %d FLDAS + %d GLDAS files"
        % (w["grace"], truth["grace_missing_month"], truth["grace_shifted_month"], len(w["fldas"]), len(w["gldas"]))
    )
    td = str(demo.out_dir / "grace_downscaled_tws.tif")
    td_table = str(demo.out_dir / "grace_downscaled_means.csv")
    demo.run(
        "subsidence:gracedownscaling",
        {
            "GRACE": w["grace"],
            "GRACE_VARIABLE": "lwe_thickness",
            "GRACE_SCALE": 10,
            "MODEL_FILES": ";".join(storages),
            "MODEL_UNITS": "auto",
            "INTERPOLATION": 0,
            "OUTPUT": td,
            "OUTPUT_TABLE": td_table,
        },
    )
    gw = str(demo.out_dir / "gwsa.tif")
    gw_table = str(demo.out_dir / "gwsa_means.csv")
    demo.run(
        "subsidence:groundwateranomaly",
        {
            "TWSA": td,
            "COMPONENT_FILES": ";".join(storages),
            "COMPONENT_UNITS": "auto",
            "MODE": 0,
            "BASELINE_START": BASELINE[0],
            "BASELINE_END": BASELINE[1],
            "MASK": w["areas"],
            "OUTPUT": gw,
            "OUTPUT_TABLE": gw_table,
        },
    )
    demo.outputs["grace_downscaled"] = td
    demo.outputs["gwsa"] = gw
    demo.outputs["gwsa_table"] = gw_table

    # planted truth: landscape groundwater weighted by area, minus its calendar-month climatology, as anomaly
    months = [tuple(int(x) for x in m.split("-")) for m in truth["months"]]
    frac = {}
    for name, ((x0, x1, y0, y1), _, _) in world_mod.LANDSCAPES.items():
        frac[name] = (x1 - x0) * (y1 - y0)
    total = sum(frac.values())
    g = sum(np.array(truth["groundwater_mm"][n]) * frac[n] / total for n in frac)
    missing = tuple(int(x) for x in truth["grace_missing_month"].split("-"))
    ok = np.array([m != missing for m in months])
    moy = np.array([m for _, m in months])
    clim = np.array([g[ok & (moy == k)].mean() if (ok & (moy == k)).any() else np.nan for k in range(1, 13)])
    dev = g - clim[moy - 1]
    base = np.array([BASELINE[0] <= y + (m - 0.5) / 12 <= BASELINE[1] for y, m in months]) & ok
    expected = dev - dev[base].mean()
    table = pd.read_csv(gw_table)
    got = table["gwsa_mm"].to_numpy()
    sel = ok & np.isfinite(got)
    rmse = float(np.sqrt(np.mean((got[sel] - expected[sel]) ** 2)))
    r = float(np.corrcoef(got[sel], expected[sel])[0, 1])
    ds = open_raster(gw)
    k = months.index(missing)
    nan_missing = bool(np.isnan(read_block(ds, 0, ds.RasterYSize, bands=[k + 1])).all())
    demo.log(
        "GWSA: %d monthly bands; missing GRACE month %s is NoData: %s"
        % (ds.RasterCount, truth["grace_missing_month"], nan_missing)
    )
    demo.log(
        "regional GWSA vs planted groundwater (climatology removed): RMSE %.2f mm, r = %.3f "
        "(planted range %.1f mm; 0.25 deg GRACE cells smooth the 0.4 deg landscapes)"
        % (rmse, r, float(np.ptp(expected[ok])))
    )
    metrics = {"gwsa_rmse_mm": rmse, "gwsa_r": r, "months": len(months), "missing_month_nodata": nan_missing}
    (demo.out_dir / "grace_step_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
