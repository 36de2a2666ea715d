"""Small real-layout GRACE / FLDAS / GLDAS inputs shared by the algorithm tests (tests/ is on sys.path)."""

import numpy as np

from subsidence_toolkit.demo import grace_data as gd

CLAT = 34.125 + 0.25 * np.arange(24)
CLON = 0.125 + 0.25 * np.arange(1440)  # global 0..360 ring, CSR layout
MONTHS = [(y, m) for y in (2004, 2005) for m in range(1, 13)]
MISSING = (2004, 9)


def build_inputs(d):
    rng = np.random.default_rng(5)
    keep = [ym for ym in MONTHS if ym != MISSING]
    t = np.arange(len(keep))
    lat, lon = np.meshgrid(CLAT, CLON, indexing="ij")
    cm = (
        4 * np.sin(2 * np.pi * t / 12)[:, None, None]
        + 0.1 * (lat - 35)[None]
        + np.sin(np.deg2rad(lon))[None]
        + rng.normal(0, 0.3, (len(keep), 24, 1440))
    ).astype(np.float32)
    g = gd.write_mascon(
        d / "CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc",
        CLAT,
        CLON,
        [gd.grace_month_bounds(*ym) for ym in keep],
        cm,
    )
    flat = 35.05 + 0.1 * np.arange(20)
    flon = 110.05 + 0.1 * np.arange(20)
    for i, (y, m) in enumerate(MONTHS):
        th = 0.2 + 0.04 * np.sin(2 * np.pi * i / 12) + rng.normal(0, 0.004, (20, 20))
        gd.write_fldas_month(
            d / ("FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (y, m)),
            y,
            m,
            flat,
            flon,
            {"SoilMoi10_40cm_tavg": th, "SWE_inst": np.full((20, 20), 3.0 + i % 3)},
        )
        gd.write_gldas_month(
            d / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (y, m)),
            y,
            m,
            34.125 + 0.25 * np.arange(14),
            108.125 + 0.25 * np.arange(20),
            {"CanopInt_inst": np.full((14, 20), 0.4 + 0.1 * (m % 4))},
        )
    return dict(
        dir=d,
        grace='NETCDF:"%s":lwe_thickness' % g,
        sm='NETCDF:"%s":SoilMoi10_40cm_tavg' % (d / "FLDAS_NOAH01_C_GL_M.A*.nc"),
        swe='NETCDF:"%s":SWE_inst' % (d / "FLDAS_NOAH01_C_GL_M.A*.nc"),
        can='NETCDF:"%s":CanopInt_inst' % (d / "GLDAS_NOAH025_M.A*.nc4"),
    )


def zero_fldas_month(d, y, m):
    """Rewrite the FLDAS file of month (y, m) of :func:`build_inputs` with soil moisture 0 everywhere, as a damaged
    file reads (SWE unchanged)."""
    i = MONTHS.index((y, m))
    gd.write_fldas_month(
        d / ("FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (y, m)),
        y,
        m,
        35.05 + 0.1 * np.arange(20),
        110.05 + 0.1 * np.arange(20),
        {"SoilMoi10_40cm_tavg": np.zeros((20, 20)), "SWE_inst": np.full((20, 20), 3.0 + i % 3)},
    )
    return "FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (y, m)
