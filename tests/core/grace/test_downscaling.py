"""Weighted downscaling (Liu et al. 2024 eqs. 6-9) against an independent pandas + scipy implementation."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import RectBivariateSpline, RegularGridInterpolator
from scipy.io import netcdf_file

from subsidence_toolkit.core.grace import downscaling as ds
from subsidence_toolkit.core.grace import products
from subsidence_toolkit.core.io import rasters
from subsidence_toolkit.core.io.dates import month_index
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.windows import MIN_CACHE_MB
from subsidence_toolkit.demo import grace_data as gd

CLAT = 33.125 + 0.25 * np.arange(36)  # ascending, CSR-aligned centres
CLON = 108.125 + 0.25 * np.arange(40)
FLON = 110.05 + 0.1 * np.arange(50)  # fine 0.1 deg over 110-115E, 35-40N
FLAT = 39.95 - 0.1 * np.arange(50)
MONTHS = [(y, m) for y in (2004, 2005, 2006) for m in range(1, 13)]
MISSING = (2005, 6)
OCEAN = (16, 16)  # a coarse cell (lat index, lon index) that is NaN in every month (112.125E, 37.125N)


def _grace_cm(ocean=True):
    rng = np.random.default_rng(3)
    nt = len(MONTHS)
    t = np.arange(nt)
    lat, lon = np.meshgrid(CLAT, CLON, indexing="ij")
    base = 3 * np.sin(np.deg2rad(lon * 7)) + 2 * np.cos(np.deg2rad(lat * 11))
    seas = (5 + 0.2 * (lon - 110))[None] * np.sin(2 * np.pi * t / 12)[:, None, None]
    trend = -0.15 * t[:, None, None] * (1 + 0.05 * (lat - 35))[None]
    data = base[None] + seas + trend + rng.normal(0, 0.5, (nt,) + lat.shape)
    if ocean:
        data[:, OCEAN[0], OCEAN[1]] = np.nan
    return data.astype(np.float32)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("down")
    keep = [i for i, ym in enumerate(MONTHS) if ym != MISSING]
    cm = _grace_cm()
    bounds = [gd.grace_month_bounds(*MONTHS[i]) for i in keep]
    path = gd.write_mascon(
        d / "CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc", CLAT, CLON, bounds, cm[keep], layout="JPL"
    )  # JPL layout: NaN -> -99999 fill
    full = gd.write_mascon(d / "full.nc", CLAT, CLON, bounds, _grace_cm(False)[keep], layout="CSR")
    rng = np.random.default_rng(7)
    nt = len(MONTHS)
    t = np.arange(nt)
    lat, lon = np.meshgrid(FLAT, FLON, indexing="ij")
    sm = (
        300
        + 40 * np.sin(2 * np.pi * (t[:, None, None] - 2) / 12) * (1 + 0.01 * (lon - 110))[None]
        + rng.normal(0, 3, (nt, 50, 50))
    )
    swe = np.maximum(0, 20 * np.cos(2 * np.pi * t / 12))[:, None, None] + rng.normal(0, 1, (nt, 50, 50))
    dates = [dt.date(y, m, 15) for y, m in MONTHS]
    grid = rasters.grid_from_origin(110.0, 40.0, 0.1, 0.1, 50, 50)
    p1 = rasters.write_raster(str(d / "sm.tif"), grid, sm, dates=dates)
    p2 = rasters.write_raster(str(d / "swe.tif"), grid, swe, dates=dates)
    # reference inputs read independently (scipy netcdf, not GDAL)
    with netcdf_file(path, "r", mmap=False) as f:
        v = f.variables["lwe_thickness"][:].astype(np.float64)
    v[v == -99999.0] = np.nan
    tg = np.full((nt, 36, 40), np.nan)
    tg[keep] = v * 10.0
    tg_full = np.full((nt, 36, 40), np.nan)
    with netcdf_file(full, "r", mmap=False) as f:
        tg_full[keep] = f.variables["lwe_thickness"][:].astype(np.float64) * 10.0
    tf = sm.astype(np.float32).astype(np.float64) + swe.astype(np.float32).astype(np.float64)
    return dict(dir=d, grace=path, model=[p1, p2], tg=tg, tf=tf, grace_full=full, tg_full=tg_full)


def reference(tg, tf, method):
    """Independent eqs. 6-9: pandas groupby per calendar month + scipy interpolation."""
    nt = len(MONTHS)
    moy = np.array([m for _, m in MONTHS])
    ok = np.array([ym != MISSING for ym in MONTHS])
    # window the coarse grid like the plugin (cells bracketing the fine centres + 1)
    ci = np.where((CLON > 109.5) & (CLON < 115.5))[0]
    ri = np.where((CLAT > 34.5) & (CLAT < 40.5))[0]
    tgw = tg[:, ri][:, :, ci]
    lat_c, lon_c = CLAT[ri], CLON[ci]

    def clim(stack, valid):
        n = stack.shape[1] * stack.shape[2]
        df = pd.DataFrame(
            {"moy": np.repeat(moy[valid], n), "cell": np.tile(np.arange(n), valid.sum()), "v": stack[valid].reshape(-1)}
        )
        g = df.groupby(["moy", "cell"])["v"].mean().unstack("cell")
        return g.reindex(columns=range(n)).to_numpy().reshape(12, stack.shape[1], stack.shape[2])

    tg_m = clim(tgw, ok)  # eq. 6 (missing month excluded)
    tf_m = clim(tf, ok)  # eq. 7, same months
    e = tgw - tg_m[moy - 1]  # eq. 8
    td = np.full((nt, 50, 50), np.nan)
    plat, plon = np.meshgrid(FLAT, FLON, indexing="ij")
    pts = np.column_stack([plat.ravel(), plon.ravel()])
    for i in range(nt):
        if method in ("bilinear", "nearest"):
            f = RegularGridInterpolator((lat_c, lon_c), e[i], method="linear" if method == "bilinear" else "nearest")
            fe = f(pts).reshape(50, 50)
        elif method == "bicubic":
            if ok[i]:
                fe = RectBivariateSpline(lat_c, lon_c, e[i], kx=3, ky=3, s=0)(FLAT[::-1], FLON)[::-1]
            else:
                fe = np.full((50, 50), np.nan)
        else:  # idw, 4 nearest, power 2, lon scaled by cos(mean lat)
            c = np.cos(np.deg2rad(lat_c.mean()))
            glat, glon = np.meshgrid(lat_c, lon_c, indexing="ij")
            dd = np.hypot((plon.ravel()[:, None] - glon.ravel()[None]) * c, plat.ravel()[:, None] - glat.ravel()[None])
            nn = np.argsort(dd, axis=1)[:, :4]
            dn = np.take_along_axis(dd, nn, 1)
            vals = e[i].ravel()[nn]
            wts = np.where(np.isfinite(vals), 1 / dn**2, 0)
            with np.errstate(invalid="ignore"):
                fe = (np.nansum(wts * np.nan_to_num(vals), 1) / wts.sum(1)).reshape(50, 50)
            if not ok[i]:
                fe[:] = np.nan
        td[i] = tf_m[moy[i] - 1] + fe  # eq. 9
    return td, tg_m, tf_m


def run(case, method="bilinear", memory_mb=512, period=None, model=None, full=False):
    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % case["grace_full" if full else "grace"])
    m = ds.ModelSum([products.ProductReader(p) for p in (model or case["model"])])
    out = np.full((len(g.months), m.ysize, m.xsize), np.nan)

    def write(r0, block, c0=0):
        out[:, r0 : r0 + block.shape[1], c0 : c0 + block.shape[2]] = block

    months, table = ds.weighted_downscaling(g, m, method=method, period=period, write=write, memory_mb=memory_mb)
    return months, table, out


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "nearest", "idw"])
def test_against_independent_implementation(case, method):
    # the bicubic spline is global: compare it on the GRACE field without the ocean cell
    full = method == "bicubic"
    months, table, out = run(case, method, full=full)
    assert months.tolist() == [month_index(dt.date(y, m, 1)) for y, m in MONTHS]
    ref, _, _ = reference(case["tg_full" if full else "tg"], case["tf"], method)
    if method == "nearest":
        # fine centres exactly half-way between two coarse centres are ties: any choice is right
        tie_x = np.isclose(np.mod(FLON - 0.125, 0.25), 0.125)
        tie_y = np.isclose(np.mod(FLAT - 0.125, 0.25), 0.125)
        tie = tie_y[:, None] | tie_x[None, :]
        assert 0 < tie.sum() < 2500
        ref = np.where(tie[None], out, ref)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0, equal_nan=True)
    # the missing GRACE month stays NaN (never interpolated) and is flagged in the table
    k = MONTHS.index(MISSING)
    assert np.isnan(out[k]).all() and bool(table["grace_missing"][k])
    assert table["grace_missing"].sum() == 1
    # edges of the fine grid are covered thanks to the extra coarse cells
    assert np.isfinite(out[0][[0, -1]]).all() and np.isfinite(out[0][:, [0, -1]]).all()


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_nan_footprint_of_ocean_cell(case, method):
    _, _, out = run(case, method)
    near = (np.abs(FLAT[:, None] - 37.125) < 0.25) & (np.abs(FLON[None, :] - 112.125) < 0.25)
    assert np.isnan(out[0][near]).all() and np.isfinite(out[0][~near]).all()


@pytest.mark.parametrize("method,memory_mb", [("bilinear", 0.02), ("bilinear", 0.5), ("idw", 0.3), ("bicubic", 0.2)])
def test_block_split_invariance(case, method, memory_mb):
    # small caps cut the 50x50 grid into narrow windows (rows x columns)
    _, t1, a = run(case, method, memory_mb=512)
    _, t2, b = run(case, method, memory_mb=memory_mb)
    np.testing.assert_allclose(a, b, atol=1e-9, equal_nan=True)
    pd.testing.assert_frame_equal(t1, t2, atol=1e-9)


def test_regional_means_cos_weighted(case):
    _, table, out = run(case, "bilinear")
    ref, _, _ = reference(case["tg"], case["tf"], "bilinear")
    w = np.cos(np.deg2rad(FLAT))[:, None] * np.ones((1, 50))
    for i in range(len(MONTHS)):
        ok = np.isfinite(ref[i])
        exp = np.sum(ref[i][ok] * w[ok]) / np.sum(w[ok]) if ok.any() else np.nan
        got = table["downscaled_tws_mm"][i]
        assert (np.isnan(exp) and np.isnan(got)) or abs(got - exp) < 1e-6
        exp_m = np.sum(case["tf"][i] * w) / w.sum()
        assert abs(table["model_tws_mm"][i] - exp_m) < 1e-6
    # exact property: with the same months in both climatologies, sum over years of (TD - TF_m) is the
    # deviation of GRACE, which averages to ~0 per calendar month
    assert list(table.columns[:5]) == ["date", "decimal_year", "grace_note", "grace_missing", "in_climatology"]
    assert table["grace_note"][MONTHS.index(MISSING)].startswith("missing")


def test_climatology_period(case):
    _, t, out = run(case, "bilinear", period=(2004.0, 2005.999))
    assert t["in_climatology"].sum() == 23  # 2004-2005 minus the missing 2005-06
    _, t_all, out_all = run(case, "bilinear")
    assert not np.allclose(out, out_all, equal_nan=True)


def test_errors(case, tmp_path):
    # model months that do not overlap GRACE: both ranges listed
    dates = [dt.date(2010, m, 15) for m in range(1, 13)]
    grid = rasters.grid_from_origin(110.0, 40.0, 0.1, 0.1, 50, 50)
    late = rasters.write_raster(str(tmp_path / "late.tif"), grid, np.ones((12, 50, 50)), dates=dates)
    with pytest.raises(TimeSeriesError, match=r"do not overlap: GRACE 2004-01\.\.2006-12.*model 2010-01\.\.2010-12"):
        run(case, model=[late])
    # climatology period without some calendar months
    with pytest.raises(TimeSeriesError, match="calendar month"):
        run(case, period=(2004.0, 2004.4))
    # model rasters on different grids
    other = rasters.write_raster(
        str(tmp_path / "other.tif"),
        rasters.grid_from_origin(110.0, 40.0, 0.2, 0.2, 25, 25),
        np.ones((36, 25, 25)),
        dates=[dt.date(y, m, 15) for y, m in MONTHS],
    )
    with pytest.raises(TimeSeriesError, match="other.tif does not cover the model grid"):
        run(case, model=[case["model"][0], other])
    # an all-NaN study area (fill everywhere)
    nan_path = gd.write_mascon(
        tmp_path / "nan.nc",
        CLAT,
        CLON,
        [gd.grace_month_bounds(2004, m) for m in (1, 2)],
        np.full((2, 36, 40), np.nan),
        layout="JPL",
    )
    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % nan_path)
    with pytest.raises(TimeSeriesError, match="all GRACE cells around the study area .* are NaN"):
        ds.weighted_downscaling(g, ds.ModelSum([products.ProductReader(case["model"][0])]))
    with pytest.raises(TimeSeriesError, match="unknown interpolation"):
        ds.Interpolator(CLON, CLAT, FLON, FLAT, "kriging")


def test_bilinear_exact_for_bilinear_fields():
    lon_c = 100.125 + 0.25 * np.arange(6)
    lat_c = 30.875 - 0.25 * np.arange(5)
    f = lambda la, lo: 2 + 0.5 * lo - 3 * la + 0.7 * (lo - 100) * (la - 30)  # noqa: E731
    coarse = f(lat_c[:, None], lon_c[None, :])[None]
    lon_f = np.linspace(100.2, 101.3, 17)
    lat_f = np.linspace(30.8, 29.9, 13)
    got = ds.Interpolator(lon_c, lat_c, lon_f, lat_f, "bilinear")(coarse)[0]
    np.testing.assert_allclose(got, f(lat_f[:, None], lon_f[None, :]), atol=1e-10)
    # outside the coarse centres -> NaN (no extrapolation)
    got = ds.Interpolator(lon_c, lat_c, np.array([99.9, 100.5]), lat_f, "bilinear")(coarse)[0]
    assert np.isnan(got[:, 0]).all() and np.isfinite(got[:, 1]).all()


def test_model_inputs_on_other_grids_are_interpolated(case, tmp_path):
    """FLDAS-like fine soil moisture + GLDAS-like 0.25 deg canopy (lon -180..180 layout, own months)."""
    glat = 34.625 + 0.25 * np.arange(24)  # ascending, covers 35-40N with margin
    glon = 109.625 + 0.25 * np.arange(24)
    can = {}
    for i, (y, m) in enumerate(MONTHS):
        c = 0.5 + 0.3 * np.sin(2 * np.pi * i / 12) + 0.02 * (glon[None, :] - 110) + 0.01 * (glat[:, None] - 35)
        can[(y, m)] = c.astype(np.float32).astype(np.float64)
        gd.write_gldas_month(
            tmp_path / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (y, m)), y, m, glat, glon, {"CanopInt_inst": c}
        )
    src = 'NETCDF:"%s":CanopInt_inst' % (tmp_path / "GLDAS_NOAH025_M.A*.nc4")
    _, _, out = run(case, "bilinear", model=case["model"] + [src])
    plat, plon = np.meshgrid(FLAT, FLON, indexing="ij")
    pts = np.column_stack([plat.ravel(), plon.ravel()])
    can_f = np.stack([RegularGridInterpolator((glat, glon), can[ym])(pts).reshape(50, 50) for ym in MONTHS])
    ref, _, _ = reference(case["tg"], case["tf"] + can_f, "bilinear")
    np.testing.assert_allclose(out, ref, atol=1e-4, equal_nan=True)
    # the canopy climatology enters TD: it differs from the run without it
    _, _, out0 = run(case, "bilinear")
    assert np.nanmax(np.abs(out - out0)) > 0.2


def test_study_area_across_the_0_360_seam(tmp_path):
    """A fine grid at -0.4..0.4 E with a CSR 0..360 file: the coarse window wraps around the seam."""
    lat = 50.125 + 0.25 * np.arange(8)
    lon = 0.125 + 0.25 * np.arange(1440)
    months = [(2010, m) for m in range(1, 13)] + [(2011, m) for m in range(1, 13)]
    rng = np.random.default_rng(9)
    cm = (
        np.sin(2 * np.pi * np.arange(24) / 12)[:, None, None] * np.cos(np.deg2rad(lon))[None, None, :]
        + rng.normal(0, 0.2, (24, 8, 1440))
    ).astype(np.float32)
    path = gd.write_mascon(tmp_path / "csr.nc", lat, lon, [gd.grace_month_bounds(*m) for m in months], cm)
    flon = -0.38 + 0.04 * np.arange(20)
    flat = 51.38 - 0.04 * np.arange(20)
    grid = rasters.grid_from_origin(-0.4, 51.4, 0.04, 0.04, 20, 20)
    model = rasters.write_raster(
        str(tmp_path / "m.tif"), grid, np.full((24, 20, 20), 100.0), dates=[dt.date(y, m, 15) for y, m in months]
    )
    out = np.full((24, 20, 20), np.nan)
    ds.weighted_downscaling(
        products.ProductReader('NETCDF:"%s":lwe_thickness' % path),
        ds.ModelSum([products.ProductReader(model)]),
        write=lambda r0, b: out.__setitem__((slice(None), slice(r0, r0 + b.shape[1])), b),
    )
    # independent: roll the global grid so that it runs -180..180, climatology with pandas, scipy interpolation
    rolled = np.roll(cm.astype(np.float64) * 10.0, 720, axis=2)
    rlon = np.concatenate([lon[720:] - 360.0, lon[:720]])
    moy = np.array([m for _, m in months])
    clim = pd.DataFrame(rolled.reshape(24, -1)).groupby(moy).mean().to_numpy().reshape(12, 8, 1440)
    e = rolled - clim[moy - 1]
    plat, plon = np.meshgrid(flat, flon, indexing="ij")
    pts = np.column_stack([plat.ravel(), plon.ravel()])
    exp = np.stack([100.0 + RegularGridInterpolator((lat, rlon), e[i])(pts).reshape(20, 20) for i in range(24)])
    np.testing.assert_allclose(out, exp, atol=1e-4)


@pytest.mark.parametrize("method", ds.METHODS)
def test_window_interpolation_month_by_month(method):
    """The window task interpolates one month at a time (``WindowInterpolation.month``) and takes the regional
    row sums of f(TG) from the coarse-row stage (``row_sums``): the same as ``interpolate_block`` on the whole
    window, with a partly NaN month, an all-NaN month and fine rows / columns outside the coarse centres."""
    rng = np.random.default_rng(5)
    coarse = rng.normal(0, 10, (5, 8, 9))
    coarse[1, 3, 4] = np.nan  # partly NaN
    coarse[2] = np.nan  # all NaN (a missing GRACE month)
    src_lon, src_lat = 100.125 + 0.25 * np.arange(9), 30.125 + 0.25 * np.arange(8)[::-1]
    dst_lon = 100.0 + 0.05 * np.arange(48)  # the first columns lie west of the first coarse centre
    dst_lat = 32.2 - 0.05 * np.arange(44)  # the first rows lie north of the last coarse centre
    interp = ds.Interpolator(src_lon, src_lat, dst_lon, dst_lat, method)
    for r0, nr, c0, nc in [(0, 44, 0, 48), (0, 7, 0, 11), (10, 9, 20, 28)]:
        w = interp.rows(r0, nr, c0, nc)
        block = ds.interpolate_block(coarse, w)
        wi = ds.WindowInterpolation(coarse, w)
        for t in range(coarse.shape[0]):  # products over the coarse cells under the window: the same to rounding
            np.testing.assert_allclose(wi.month(t), block[t], rtol=1e-13, atol=1e-12, equal_nan=True)
        sums, counts = wi.row_sums()
        valid = np.isfinite(block)
        np.testing.assert_array_equal(counts, valid.sum(axis=2))
        np.testing.assert_allclose(sums, np.where(valid, block, 0.0).sum(axis=2), rtol=1e-12, atol=1e-9)
        if method == "bilinear" and nr == 44:  # the cases are there: NaN footprint, missing month, outside rows
            assert np.isnan(block[2]).all() and np.isnan(block[1]).any() and np.isfinite(block[1]).any()
            assert np.isnan(block[0][0]).all() and np.isfinite(block[0][20]).any()


def _window_tasks(case, method, **kw):
    """Run the downscaling of ``case`` and return (months, its window tasks, their shared state, the model)."""
    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % case["grace"])
    m = ds.ModelSum([products.ProductReader(p) for p in case["model"]])
    captured = {}

    def run_tasks(fn, tasks, shared):
        captured["tasks"], captured["shared"] = tasks, shared
        return ((i, fn(t, shared)) for i, t in enumerate(tasks))

    months, _ = ds.weighted_downscaling(g, m, method, run_tasks=run_tasks, **kw)
    return months, captured["tasks"], captured["shared"], m


def test_window_task_equals_whole_window_arithmetic(case):
    """The streamed window task (months read, summed and interpolated one at a time) gives what eqs. (7)-(9) and
    the regional sums give on the whole window at once (the earlier, memory-bound form of the task)."""
    _, tasks, state, m = _window_tasks(case, "bilinear", memory_mb=0.3)
    assert len(tasks) > 2
    for task in tasks:
        r0, nr, c0, nc = task.window
        got = ds.downscale_window_task(task, state)
        w = state.interp.rows(r0, nr, c0, nc)
        tf = m.read_rows(r0, nr, state.model_months, cols=(c0, nc))
        clim = ds.monthly_climatology(tf, state.model_months, state.clim_in_model)
        td = ds.downscale_block(clim, state.deviation, state.month_of_year, w)
        np.testing.assert_allclose(got["td"], td, rtol=1e-14, atol=0)  # products over fewer zero weights
        for key, block in (("down", td), ("model", tf), ("grace", ds.interpolate_block(state.grace, w))):
            exp = ds.weighted_sums_block(block, task.lats)
            np.testing.assert_allclose(got["sums"][key][0], exp[0], rtol=1e-12)
            np.testing.assert_array_equal(got["sums"][key][1], exp[1])


@pytest.mark.parametrize("method,out_dtype", [("bilinear", "float32"), ("bilinear", None), ("bicubic", "float32")])
def test_window_task_memory_within_its_plan(case, method, out_dtype):
    """What a window task allocates (numpy reports to tracemalloc) stays within what the memory plan counts for
    it, ``window_bytes_per_cell`` x its cells + ``window_fixed_bytes`` (+ 64 kB of small arrays): the cap holds
    with windows 10x larger than when the task held every month of the window at once."""
    import tracemalloc

    months, tasks, state, _ = _window_tasks(case, method, out_dtype=out_dtype, memory_mb=0.5)
    share = (0.1 * 0.1) / (0.25 * 0.25)  # fine / coarse cell area
    per_cell = ds.window_bytes_per_cell(len(months), method, out_dtype, state.interp.k, share)
    task = max(tasks, key=lambda t: t.window[1] * t.window[3])
    ds.downscale_window_task(task, state)  # warm: GDAL handles opened
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = ds.downscale_window_task(task, state)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    cells = task.window[1] * task.window[3]
    plan = per_cell * cells + ds.window_fixed_bytes(state.deviation.shape, method)
    assert res["td"].nbytes <= peak <= plan + 64 * 1024, (peak, plan)


def _model_copy(src, dst, interleave, block=16):
    from osgeo import gdal

    opts = ["TILED=YES", "BLOCKXSIZE=%d" % block, "BLOCKYSIZE=%d" % block, "INTERLEAVE=%s" % interleave]
    gdal.Translate(dst, src, creationOptions=opts)
    return dst


def test_model_blocks_are_counted_under_the_memory_limit_and_held_in_gdal_cache(case, tmp_path):
    """GDAL's block cache is part of the memory limit: a pixel-interleaved model (one decode fills the blocks of
    every band) counts every band per cell and gets smaller windows, a band-interleaved one one band; the run sets
    the cache to what its windows need (inside the tasks; restored after) instead of GDAL's 5 % of the RAM, and
    the downscaled values do not depend on the model's layout."""
    from osgeo import gdal

    from subsidence_toolkit.core.io.rasters import decoded_block_bytes

    sm = case["model"][0]
    pix = _model_copy(sm, str(tmp_path / "pixel.tif"), "PIXEL")
    band = _model_copy(sm, str(tmp_path / "band.tif"), "BAND")
    nt = gdal.Open(sm).RasterCount
    assert decoded_block_bytes(gdal.Open(pix)) == (nt * 4, 16, 16, nt * 4 * 16 * 16)
    assert decoded_block_bytes(gdal.Open(band)) == (4, 16, 16, 0)
    readers = [products.ProductReader(pix)]
    assert ds.block_cache_bytes(readers) == nt * 4
    # a window cutting blocks holds the whole blocks it touches: rows 5..25 -> 0..32, columns 20..30 -> 16..32
    assert ds.block_cache_bytes(readers, (5, 20, 20, 10)) == nt * 4 * 32 * 16
    assert ds.block_cache_bytes(readers, (0, 16, 0, 50)) == nt * 4 * 16 * 50

    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % case["grace"])
    before = gdal.GetCacheMax()
    results = {}
    for name, model in (("pixel", pix), ("band", band)):
        m = ds.ModelSum([products.ProductReader(model), products.ProductReader(case["model"][1])])
        seen, windows = set(), []
        out = np.full((len(g.months), 50, 50), np.nan)

        def run_tasks(fn, tasks, shared):
            for i, t in enumerate(tasks):
                seen.add(gdal.GetCacheMax())
                windows.append(t.window)
                yield i, fn(t, shared)

        def write(r0, b, c0=0):
            out[:, r0 : r0 + b.shape[1], c0 : c0 + b.shape[2]] = b

        ds.weighted_downscaling(g, m, write=write, memory_mb=2, run_tasks=run_tasks, windows_at_once=3)
        assert gdal.GetCacheMax() == before
        need = max(ds.block_cache_bytes(m.readers, w) for w in windows)
        assert seen == {int(3 * need + MIN_CACHE_MB * 2**20)}
        results[name] = (out, len(windows), need)
    # the same values to rounding: the windows differ, and the interpolation's products with them
    np.testing.assert_allclose(results["pixel"][0], results["band"][0], rtol=1e-14, atol=0)
    assert results["pixel"][1] > results["band"][1]  # the pixel-interleaved model's bands count
    assert results["band"][2] < results["pixel"][2] < 2 * 2**20
