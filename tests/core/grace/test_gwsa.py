"""GWSA by water balance (Liu et al. 2024 eqs. 10-12) from real-layout component files."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import RegularGridInterpolator

from subsidence_toolkit.core.grace import gwsa, products
from subsidence_toolkit.core.io.dates import month_index
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.rasters import grid_from_origin, write_raster
from subsidence_toolkit.demo import grace_data as gd

MONTHS = [(y, m) for y in range(2004, 2008) for m in range(1, 13)]
TWSA_NAN = (2005, 7)  # a missing GRACE month inside the TWSA stack (NaN band)
GLDAS_MISSING = (2006, 2)  # no GLDAS file for this month
FLON = 110.05 + 0.1 * np.arange(20)
FLAT = 36.95 - 0.1 * np.arange(20)
GLAT = 34.625 + 0.25 * np.arange(12)  # GLDAS 0.25 deg, ascending
GLON = 109.375 + 0.25 * np.arange(14)


def mk(y, m):
    return month_index(dt.date(y, m, 1))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("gwsa")
    rng = np.random.default_rng(11)
    nt = len(MONTHS)
    t = np.arange(nt)
    twsa = 30 * np.sin(2 * np.pi * t / 12)[:, None, None] - 0.8 * t[:, None, None] + rng.normal(0, 4, (nt, 20, 20))
    twsa[MONTHS.index(TWSA_NAN)] = np.nan
    grid = grid_from_origin(110.0, 37.0, 0.1, 0.1, 20, 20)
    tpath = write_raster(str(d / "twsa_downscaled.tif"), grid, twsa, dates=[dt.date(y, m, 15) for y, m in MONTHS])
    swe, can = {}, {}
    for i, (y, m) in enumerate(MONTHS):
        a = 15 * max(0, np.cos(2 * np.pi * i / 12)) + rng.normal(0, 1, (12, 14)) + 2 * (GLAT[:, None] - 35)
        c = 0.5 + 0.3 * np.sin(2 * np.pi * i / 12) + 0.01 * (GLON[None, :] - 110) * np.ones((12, 1))
        swe[(y, m)], can[(y, m)] = a, c
        if (y, m) != GLDAS_MISSING:
            gd.write_gldas_month(
                d / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (y, m)),
                y,
                m,
                GLAT,
                GLON,
                {"SWE_inst": a, "CanopInt_inst": c},
            )
    flat_asc = FLAT[::-1]
    sm = {}
    for i, (y, m) in enumerate(MONTHS):
        th = 0.25 + 0.05 * np.sin(2 * np.pi * (i - 1) / 12) + rng.normal(0, 0.005, (20, 20))
        sm[(y, m)] = th
        gd.write_fldas_month(
            d / ("FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (y, m)), y, m, flat_asc, FLON, {"SoilMoi10_40cm_tavg": th}
        )
    comps = [
        'NETCDF:"%s":SWE_inst' % (d / "GLDAS_NOAH025_M.A*.nc4"),
        'NETCDF:"%s":CanopInt_inst' % (d / "GLDAS_NOAH025_M.A*.nc4"),
        'NETCDF:"%s":SoilMoi10_40cm_tavg' % (d / "FLDAS_NOAH01_C_GL_M.A*.nc"),
    ]
    # independent component fields on the TWSA grid (north-up), mm
    plat, plon = np.meshgrid(FLAT, FLON, indexing="ij")
    pts = np.column_stack([plat.ravel(), plon.ravel()])
    ref = {"twsa": twsa.astype(np.float32).astype(np.float64)}
    for key, src in (("swe", swe), ("can", can)):
        arr = np.full((nt, 20, 20), np.nan)
        for i, ym in enumerate(MONTHS):
            if ym != GLDAS_MISSING:
                f = RegularGridInterpolator((GLAT, GLON), src[ym].astype(np.float32).astype(np.float64))
                arr[i] = f(pts).reshape(20, 20)
        ref[key] = arr
    ref["sm"] = np.stack([sm[ym].astype(np.float32).astype(np.float64)[::-1] * 300.0 for ym in MONTHS])
    return dict(dir=d, twsa=tpath, comps=comps, ref=ref)


def run(case, mode="anomaly", baseline=gwsa.DEFAULT_BASELINE, mask=None, comps=None, memory_mb=512, twsa=None):
    tw = products.ProductReader(twsa or case["twsa"])
    readers = [products.ProductReader(c) for c in (comps or case["comps"])]
    out = np.full((len(tw.months), tw.ysize, tw.xsize), np.nan)

    def write(r0, block, c0=0):
        out[:, r0 : r0 + block.shape[1], c0 : c0 + block.shape[2]] = block

    months, table = gwsa.groundwater_anomaly(
        tw,
        readers,
        mode=mode,
        baseline=baseline,
        mask=mask,
        write=write,
        memory_mb=memory_mb,
        names=["swe", "canopy", "soil"],
    )
    return months, table, out


def test_anomaly_against_independent(case):
    months, table, out = run(case)
    assert months.tolist() == [mk(y, m) for y, m in MONTHS]
    r = case["ref"]
    # independent: pandas per-cell baseline mean (2004.0-2009.999 = all our months) over the months
    # where every term has data (TWSA gap and GLDAS gap excluded from all means)
    joint = np.isfinite(r["twsa"]) & np.isfinite(r["swe"]) & np.isfinite(r["can"]) & np.isfinite(r["sm"])

    def anom(x):
        n = x.shape[1] * x.shape[2]
        df = pd.DataFrame(np.where(joint, x, np.nan).reshape(len(MONTHS), n))
        return x - df.mean(axis=0, skipna=True).to_numpy().reshape(x.shape[1:])[None]

    exp = anom(r["twsa"]) - anom(r["swe"]) - anom(r["can"]) - anom(r["sm"])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(exp))
    np.testing.assert_allclose(out, exp, atol=1e-4, equal_nan=True)
    assert np.isnan(out[MONTHS.index(TWSA_NAN)]).all() and np.isnan(out[MONTHS.index(GLDAS_MISSING)]).all()
    # regional mean table: GWSA = TWSA - sum components holds for the means (same valid cells)
    i = MONTHS.index((2004, 5))
    assert table["gwsa_mm"][i] == pytest.approx(
        table["twsa_mm"][i] - table["swe_mm"][i] - table["canopy_mm"][i] - table["soil_mm"][i], abs=1e-9
    )
    w = np.cos(np.deg2rad(FLAT))[:, None] * np.ones((1, 20))
    assert table["gwsa_mm"][i] == pytest.approx(np.sum(exp[i] * w) / w.sum(), abs=1e-6)


def test_baseline_period_and_block_invariance(case):
    _, t1, a = run(case, baseline=(2005.0, 2006.999))
    _, t2, b = run(case, baseline=(2005.0, 2006.999), memory_mb=0.01)
    np.testing.assert_allclose(a, b, atol=1e-9, equal_nan=True)
    r = case["ref"]
    use = np.array([2005 <= y <= 2006 for y, _ in MONTHS])[:, None, None]
    use = use & np.isfinite(r["twsa"]) & np.isfinite(r["swe"]) & np.isfinite(r["can"]) & np.isfinite(r["sm"])
    exp = sum(
        s * (x - np.nanmean(np.where(use, x, np.nan), axis=0))
        for s, x in ((1, r["twsa"]), (-1, r["swe"]), (-1, r["can"]), (-1, r["sm"]))
    )
    np.testing.assert_allclose(a, exp, atol=1e-4, equal_nan=True)


def test_change_mode_eq12(case):
    _, table, out = run(case, mode="change")
    r = case["ref"]
    d = lambda x: np.concatenate([np.full((1,) + x.shape[1:], np.nan), np.diff(x, axis=0)])  # noqa: E731
    exp = d(r["twsa"]) - d(r["swe"]) - d(r["can"]) - d(r["sm"])
    np.testing.assert_allclose(out, exp, atol=1e-4, equal_nan=True)
    for ym in (MONTHS[0], TWSA_NAN, (2005, 8), GLDAS_MISSING, (2006, 3)):  # gaps are never bridged
        assert np.isnan(out[MONTHS.index(ym)]).all()
    assert np.isfinite(out[MONTHS.index((2006, 4))]).all()
    assert "gwsa_change_mm" in table.columns


def test_mask(case):
    mask = np.zeros((20, 20), bool)
    mask[5:10, 3:12] = True
    _, table, out = run(case, mask=mask)
    _, _, full = run(case)
    assert np.isnan(out[:, ~mask]).all()
    np.testing.assert_allclose(out[:, mask], full[:, mask], atol=1e-12, equal_nan=True)
    w = (np.cos(np.deg2rad(FLAT))[:, None] * np.ones((1, 20)))[mask]
    i = MONTHS.index((2007, 1))
    assert table["gwsa_mm"][i] == pytest.approx(np.sum(full[i][mask] * w) / w.sum(), abs=1e-6)


def test_errors(case, tmp_path):
    with pytest.raises(
        TimeSeriesError, match=r"baseline 1990.000-1995.999 is outside the TWSA data .*2004-01\.\.2007-12"
    ):
        run(case, baseline=(1990.0, 1995.999))
    late = tmp_path / "GLDAS_NOAH025_M.A201501.021.nc4"
    gd.write_gldas_month(late, 2015, 1, GLAT, GLON, {"SWE_inst": np.ones((12, 14))})
    gd.write_gldas_month(
        tmp_path / "GLDAS_NOAH025_M.A201502.021.nc4", 2015, 2, GLAT, GLON, {"SWE_inst": np.ones((12, 14))}
    )
    with pytest.raises(
        TimeSeriesError, match=r"months 2015-01\.\.2015-02 do not overlap the TWSA months 2004-01\.\.2007-12"
    ):
        run(case, comps=['NETCDF:"%s":SWE_inst' % (tmp_path / "GLDAS_NOAH025_M.A2015*.nc4")])
    with pytest.raises(TimeSeriesError, match="mask polygon covers no TWSA cell"):
        run(case, mask=np.zeros((20, 20), bool))
    # a component that does not cover the TWSA grid
    gd.write_gldas_month(
        tmp_path / "GLDAS_NOAH025_M.A200401.021.nc4", 2004, 1, GLAT + 10, GLON, {"SWE_inst": np.ones((12, 14))}
    )
    gd.write_gldas_month(
        tmp_path / "GLDAS_NOAH025_M.A200402.021.nc4", 2004, 2, GLAT + 10, GLON, {"SWE_inst": np.ones((12, 14))}
    )
    with pytest.raises(TimeSeriesError, match="latitudes .* are outside the product|does not cover the TWSA grid"):
        run(case, comps=['NETCDF:"%s":SWE_inst' % (tmp_path / "GLDAS_NOAH025_M.A2004*.nc4")])
    # an all-NaN TWSA
    grid = grid_from_origin(110.0, 37.0, 0.1, 0.1, 20, 20)
    nan = write_raster(
        str(tmp_path / "nan.tif"), grid, np.full((48, 20, 20), np.nan), dates=[dt.date(y, m, 15) for y, m in MONTHS]
    )
    with pytest.raises(TimeSeriesError, match="NaN over the whole study area"):
        run(case, twsa=nan)
    with pytest.raises(TimeSeriesError, match="unknown mode"):
        run(case, mode="trend")


def test_gap_in_one_term_does_not_shift_gwsa():
    """TWSA = soil + GWS exactly; a TWSA gap at the seasonal soil peak must not bias GWSA."""
    t = np.arange(36)
    soil = (100 * np.sin(2 * np.pi * t / 12))[:, None, None] * np.ones((1, 2, 3))
    gws = (-2.0 * t)[:, None, None] * np.ones((1, 2, 3))
    twsa = soil + gws
    twsa[3] = np.nan  # the soil-moisture peak month is missing in GRACE
    use = np.ones(36, bool)
    g, _, _ = gwsa.gwsa_anomaly_block(twsa, [soil], use)
    ok = np.arange(36) != 3
    np.testing.assert_allclose(g[ok], (gws - gws[ok].mean(axis=0))[ok], atol=1e-12)
    assert np.isnan(g[3]).all()


def test_auto_baseline_uses_grace_convention_only_when_covered():
    from subsidence_toolkit.core.grace import gwsa as G

    grace_era = range(2002 * 12 + 3, 2023 * 12)  # April 2002 .. Dec 2022
    assert G.auto_baseline(grace_era) == G.DEFAULT_BASELINE
    s1_era = range(2015 * 12, 2021 * 12 + 6)  # Jan 2015 .. Jun 2021
    start, end = G.auto_baseline(s1_era)
    assert start == 2015.0 and end == pytest.approx(2021.5 - 0.001)
    # the period the components have in common
    start, end = G.auto_baseline(grace_era, [range(2016 * 12, 2019 * 12)])
    assert (start, end) == (2016.0, pytest.approx(2018.999))
    # the chosen months are exactly the record (month middles inside)
    from subsidence_toolkit.core.grace.downscaling import months_in_period

    months = np.arange(2014 * 12, 2023 * 12)
    use = months_in_period(months, *G.auto_baseline(s1_era))
    assert list(months[use]) == list(s1_era)
