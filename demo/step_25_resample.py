"""Demo step: resample the SBAS displacement series (irregular Sentinel-1 epochs) to monthly values.

Uses ``demo.outputs['sbas_timeseries']`` when the SBAS step produced it; otherwise makes a
small displacement stack with a planted truth (linear subsidence + annual term) on an irregular
12-day epoch list with gaps, and reports the RMSE of the monthly values against that truth.
"""

import datetime as dt

import numpy as np

from subsidence_toolkit.core.io.dates import decimal_year
from subsidence_toolkit.core.io.rasters import grid_from_origin, open_raster, read_block, read_dates, write_raster

ORIGIN = dt.date(2020, 1, 3)


def sentinel1_epochs(start=ORIGIN, end=dt.date(2021, 12, 29), revisit=12, seed=42, drop=0.12):
    """Irregular acquisition list: every 12 days, with ~12 % of acquisitions missing (seeded)."""
    rng = np.random.default_rng(seed)
    out, d = [], start
    while d <= end:
        if not out or rng.random() > drop:
            out.append(d)
        d += dt.timedelta(days=revisit)
    return out


def truth(dates, ny, nx):
    """Planted displacement (mm): a subsidence bowl with -60 mm/yr at the centre + 8 mm annual term."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - ny / 2) ** 2 + (xx - nx / 2) ** 2) / (0.3 * max(nx, ny)) ** 2
    rate = -60.0 * np.exp(-r2)
    t = np.array([decimal_year(d) - decimal_year(ORIGIN) for d in dates])
    return rate[None] * t[:, None, None] + 8.0 * np.sin(2 * np.pi * t)[:, None, None]


def run(demo):
    src = demo.outputs.get("sbas_timeseries")
    planted = None
    if src is None:
        ny = nx = 30 if demo.small else 80
        dates = sentinel1_epochs()
        data = truth(dates, ny, nx)
        data += np.random.default_rng(1).normal(0, 1.0, data.shape)
        grid = grid_from_origin(108.0, 38.5, 0.001, 0.001, nx, ny)
        src = str(demo.data_dir / "displacement_s1_epochs.tif")
        write_raster(src, grid, data, dates=dates)
        planted = (dates, ny, nx)
        demo.log("made %s: %d epochs %s..%s, %dx%d px" % (src, len(dates), dates[0], dates[-1], nx, ny))
    out = str(demo.out_dir / "displacement_monthly.tif")
    demo.run("subsidence:resampletimeseries", {"INPUT": src, "METHOD": 1, "STEP": 0, "DAY_OF_MONTH": 15, "OUTPUT": out})
    demo.outputs["sbas_monthly"] = out
    ds = open_raster(out)
    months = read_dates(ds)
    demo.log("monthly series: %d months %s..%s" % (len(months), months[0], months[-1]))
    if planted is None:
        return {"months": len(months)}
    _, ny, nx = planted
    got = read_block(ds, 0, ny)
    rmse = float(np.sqrt(np.nanmean((got - truth(months, ny, nx)) ** 2)))
    demo.log("RMSE of monthly values vs planted truth: %.2f mm (noise 1.0 mm)" % rmse)
    return {"months": len(months), "rmse_mm": rmse}
