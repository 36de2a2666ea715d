"""A monthly model / GRACE file month read as all 0 (or all fill) between normal months is reported
(issue: a damaged FLDAS file was silently used as 0 mm); genuinely zero variables are not."""

import datetime as dt

import numpy as np
import pytest

from subsidence_toolkit.core.grace import downscaling as ds
from subsidence_toolkit.core.grace import gwsa, products
from subsidence_toolkit.core.io import rasters
from subsidence_toolkit.core.io.dates import month_index
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.demo import grace_data as gd

CLAT = 34.125 + 0.25 * np.arange(12)
CLON = 109.125 + 0.25 * np.arange(12)
GLAT = 35.125 + 0.25 * np.arange(5)  # GLDAS 0.25 deg cells over 110-111.5E, 35-36.25N
GLON = 110.125 + 0.25 * np.arange(6)
MONTHS = [(2004, m) for m in range(1, 13)]
ZERO = (2004, 6)  # the damaged month


def _build(d, zero=ZERO, fill=None):
    t = np.arange(len(MONTHS))
    cm = (
        3 * np.sin(2 * np.pi * t / 12)[:, None, None] + 0.1 * np.arange(12)[None, :, None] + np.zeros((1, 1, 12))
    ).astype(np.float32)
    grace = gd.write_mascon(d / "CSR.nc", CLAT, CLON, [gd.grace_month_bounds(*ym) for ym in MONTHS], cm)
    for i, (y, m) in enumerate(MONTHS):
        sm = np.full((5, 6), 200.0 + 30 * np.sin(2 * np.pi * i / 12)) + np.arange(6)[None]
        sm[0, 0] = np.nan  # a water cell
        if (y, m) == zero:
            sm = np.where(np.isfinite(sm), 0.0, np.nan)  # what a damaged file reads as
        if (y, m) == fill:
            sm[:] = np.nan
        gd.write_gldas_month(
            d / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (y, m)),
            y,
            m,
            GLAT,
            GLON,
            {"SoilMoi0_10cm_inst": sm, "SWE_inst": np.zeros((5, 6))},
        )  # snow in a desert: 0
    pattern = d / "GLDAS_NOAH025_M.A*.nc4"
    return 'NETCDF:"%s":lwe_thickness' % grace, [
        'NETCDF:"%s":%s' % (pattern, v) for v in ("SoilMoi0_10cm_inst", "SWE_inst")
    ]


def _downscale(grace_src, model_src, **kw):
    g = products.ProductReader(grace_src, units="10")
    m = ds.ModelSum([products.ProductReader(s) for s in model_src])
    written = []
    months, table = ds.weighted_downscaling(g, m, write=lambda r0, b, c0=0: written.append(b), **kw)
    return table, written


def test_planted_zero_month_is_named(tmp_path):
    grace, model = _build(tmp_path)
    with pytest.raises(TimeSeriesError) as err:
        _downscale(grace, model)
    msg = str(err.value)
    assert "\n" not in msg
    assert "GLDAS_NOAH025_M.A200406.021.nc4" in msg and ":SoilMoi0_10cm_inst" in msg
    assert "month 2004-06 is 0 in all 29 valid cells while 2004-05 and 2004-07 are not" in msg
    assert "download it again" in msg and "ACCEPT_ZERO_MONTHS" in msg
    assert "SWE_inst" not in msg  # zero in every month: real, not flagged
    # small windows (several tasks) give the same verdict: the counts are summed over the windows
    with pytest.raises(TimeSeriesError, match="A200406.021.nc4.*month 2004-06"):
        _downscale(grace, model, memory_mb=0.001)
    # accepted: the run goes on, the month is used as read and reported as a warning
    logs = []
    table, _ = _downscale(grace, model, accept_zero_months=True, log=logs.append)
    assert [s for s in logs if s.startswith("warning:") and "month 2004-06" in s]
    i = MONTHS.index(ZERO)
    assert table["model_tws_mm"][i] == 0.0 and table["model_tws_mm"][i - 1] > 150


def test_all_fill_month_and_gwsa(tmp_path):
    grace, model = _build(tmp_path, zero=None, fill=(2004, 3))
    with pytest.raises(
        TimeSeriesError,
        match=r"A200403\.021\.nc4\":SoilMoi0_10cm_inst: month 2004-03 has no "
        r"valid value \(all fill/NoData\) while 2004-02 and 2004-04 are not",
    ):
        _downscale(grace, model)
    # the same check in the GWSA pass (components read by the window tasks)
    twsa = rasters.write_raster(
        str(tmp_path / "twsa.tif"),
        rasters.grid_from_origin(110.0, 36.25, 0.25, 0.25, 6, 5),
        np.ones((12, 5, 6)),
        dates=[dt.date(y, m, 15) for y, m in MONTHS],
    )
    comps = [products.ProductReader(s) for s in model]
    with pytest.raises(TimeSeriesError, match="A200403.021.nc4.*month 2004-03"):
        gwsa.groundwater_anomaly(products.ProductReader(twsa), comps, baseline=(2004.0, 2004.999))
    _, table = gwsa.groundwater_anomaly(
        products.ProductReader(twsa), comps, baseline=(2004.0, 2004.999), accept_zero_months=True
    )
    assert np.isnan(table["gwsa_mm"][2]) and np.isfinite(table["gwsa_mm"][3])


def test_clean_series_and_genuine_zero_runs_are_not_flagged(tmp_path):
    grace, model = _build(tmp_path, zero=None)
    table, written = _downscale(grace, model)
    assert np.isfinite(table["downscaled_tws_mm"]).all() and written

    def counts(series, var="v"):
        return {("p", month_index(dt.date(2004, m, 1))): [10, nz, "f.nc", var, m] for m, nz in enumerate(series, 1)}

    # snow zero from May to October (a dry/warm season), every month zero, a zero first month before snow
    assert products.zero_month_problems(counts([5, 3, 1, 0, 0, 0, 0, 0, 0, 2, 4, 6])) == []
    assert products.zero_month_problems(counts([0] * 12)) == []
    assert products.zero_month_problems(counts([0, 3, 2, 4])) != []  # at the end: one neighbour decides
    one = products.zero_month_problems(counts([5, 3, 1, 0, 2, 4]))
    assert len(one) == 1 and 'f.nc":v band 4: month 2004-04 is 0 in all 10 valid cells' in one[0]
    # an all-NaN band of a GeoTIFF is a missing month by the toolkit convention, not a damaged file
    nan_band = {("p", month_index(dt.date(2004, m, 1))): [0 if m == 2 else 10, 5, "t.tif", None, m] for m in (1, 2, 3)}
    assert products.zero_month_problems(nan_band) == []
    nan_band = {k: v[:3] + ["v", v[4]] for k, v in nan_band.items()}
    assert "has no valid value" in products.zero_month_problems(nan_band)[0]


def test_grace_month_all_zero_is_named(tmp_path):
    _, model = _build(tmp_path, zero=None)
    t = np.arange(len(MONTHS))
    cm = (
        3 * np.sin(2 * np.pi * t / 12)[:, None, None] + 0.1 * np.arange(12)[None, :, None] + np.zeros((1, 1, 12))
    ).astype(np.float32)
    cm[7] = 0.0
    g = gd.write_mascon(tmp_path / "CSR_zero.nc", CLAT, CLON, [gd.grace_month_bounds(*ym) for ym in MONTHS], cm)
    with pytest.raises(
        TimeSeriesError,
        match=r"CSR_zero\.nc\":lwe_thickness band 8: month 2004-08 is 0 in all "
        r"\d+ valid cells while 2004-07 and 2004-09 are not",
    ):
        _downscale('NETCDF:"%s":lwe_thickness' % g, model)
