import datetime as dt

import numpy as np
import pytest
from scipy.interpolate import CubicSpline, PchipInterpolator
from synthetic import sentinel1_dates, smooth_stack

from subsidence_toolkit.core.io.dates import days_since
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.timeseries import resample


def _reference(values, t, t_new, method):
    """Per-pixel scipy/numpy reference using only the pixel's valid dates, NaN outside its range."""
    T, ny, nx = values.shape
    out = np.full((len(t_new), ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            y = values[:, i, j]
            m = np.isfinite(y)
            if m.sum() < 2:
                continue
            tv, yv = t[m], y[m]
            inside = (t_new >= tv[0]) & (t_new <= tv[-1])
            if method == "linear":
                r = np.interp(t_new, tv, yv)
            elif method == "cubic":
                r = CubicSpline(tv, yv)(t_new)
            elif method == "pchip":
                r = PchipInterpolator(tv, yv)(t_new)
            else:
                k = np.array([np.argmin(np.abs(tv - x)) for x in t_new])  # argmin -> first (earlier) on ties
                r = yv[k]
            out[inside, i, j] = r[inside]
    return out


@pytest.mark.parametrize("method", ["linear", "cubic", "pchip", "nearest"])
def test_matches_scipy_per_pixel_with_nan_gaps(method):
    dates = sentinel1_dates(n=30)
    values = smooth_stack(dates, ny=7, nx=9, nan_fraction=0.15)
    values[0, 0, 0] = values[-1, 0, 0] = np.nan  # a pixel with a shorter valid range
    values[:, 1, 1] = np.nan  # all NaN
    values[:-1, 2, 2] = np.nan  # single valid date
    targets = resample.target_dates(dates)
    t = days_since(dates)
    t_new = days_since(targets, dates[0])
    got = resample.temporal_resample_block(values, t, t_new, method)
    ref = _reference(values, t, t_new, method)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, equal_nan=True)
    assert np.isnan(got[:, 1, 1]).all() and np.isnan(got[:, 2, 2]).all()


def test_no_extrapolation_outside_pixel_range():
    dates = [dt.date(2020, 1, 1), dt.date(2020, 2, 1), dt.date(2020, 3, 1), dt.date(2020, 4, 1)]
    v = np.array([np.nan, 1.0, 2.0, np.nan]).reshape(4, 1, 1)
    targets = resample.target_dates(dates)  # Jan 15 .. Mar 15
    out = resample.temporal_resample_block(v, days_since(dates), days_since(targets, dates[0]), "linear")[:, 0, 0]
    assert [d.isoformat() for d in targets] == ["2020-01-15", "2020-02-15", "2020-03-15"]
    assert np.isnan(out[0]) and np.isnan(out[2])
    assert out[1] == pytest.approx(1.0 + 14 / 29)


def test_linear_is_exact_on_linear_series():
    dates = sentinel1_dates(n=20)
    t = days_since(dates)
    v = (3.0 * t - 7.0)[:, None, None] * np.ones((1, 2, 3))
    targets = resample.target_dates(dates)
    t_new = days_since(targets, dates[0])
    for method in ("linear", "cubic", "pchip"):
        out = resample.temporal_resample_block(v, t, t_new, method)
        np.testing.assert_allclose(out[:, 1, 2], 3.0 * t_new - 7.0, atol=1e-9)


def test_monthly_steps_across_year_end_and_leap_year():
    d = resample.monthly_dates(dt.date(2019, 11, 20), dt.date(2020, 4, 1), day=15)
    assert d == [dt.date(2019, 12, 15), dt.date(2020, 1, 15), dt.date(2020, 2, 15), dt.date(2020, 3, 15)]
    d = resample.monthly_dates(dt.date(2019, 12, 31), dt.date(2021, 3, 31), day=31)
    assert d[:4] == [dt.date(2019, 12, 31), dt.date(2020, 1, 31), dt.date(2020, 2, 29), dt.date(2020, 3, 31)]
    assert dt.date(2021, 2, 28) in d and len(d) == 16
    assert resample.monthly_dates(dt.date(2020, 1, 1), dt.date(2020, 1, 31), 29) == [dt.date(2020, 1, 29)]
    d = resample.regular_dates(dt.date(2020, 2, 20), dt.date(2020, 3, 10), 12)
    assert d == [dt.date(2020, 2, 20), dt.date(2020, 3, 3)]


def test_target_date_errors():
    dates = [dt.date(2020, 1, 1), dt.date(2020, 6, 1)]
    with pytest.raises(TimeSeriesError, match="start date 2020-05-01 is after end date 2020-02-01"):
        resample.target_dates(dates, start=dt.date(2020, 5, 1), end=dt.date(2020, 2, 1))
    with pytest.raises(TimeSeriesError, match="no target date"):
        resample.target_dates([dt.date(2020, 1, 16), dt.date(2020, 2, 10)], day=15)


def test_block_split_gives_the_same_values():
    dates = sentinel1_dates(n=25)
    values = smooth_stack(dates, ny=20, nx=11, nan_fraction=0.2, seed=5)
    t = days_since(dates)
    t_new = days_since(resample.target_dates(dates), dates[0])
    for method in resample.METHODS:
        whole = resample.temporal_resample_block(values, t, t_new, method)
        parts = np.concatenate(
            [resample.temporal_resample_block(values[:, r : r + 3], t, t_new, method) for r in range(0, 20, 3)], axis=1
        )
        # a pattern shared by many pixels goes through one weight matrix, a rare one pixel by pixel: a block split
        # may move a pattern from one way to the other (float64 rounding); the NaN pattern is the same
        assert np.array_equal(np.isnan(whole), np.isnan(parts)), method
        np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12, err_msg=method)


def _tiled_stack(path, values, dates, block, interleave=None):
    """A dated GeoTIFF time series in ``block`` x ``block`` tiles (``interleave`` BAND or PIXEL, GDAL's default
    PIXEL when None); its path."""
    from osgeo import gdal
    from synthetic import write_stack

    plain = path.with_name(path.stem + "_plain.tif")
    opts = ["TILED=YES", "BLOCKXSIZE=%d" % block, "BLOCKYSIZE=%d" % block]
    opts += ["INTERLEAVE=%s" % interleave] if interleave else []
    gdal.Translate(str(path), write_stack(plain, values, dates=dates), creationOptions=opts)
    return str(path)


def test_windows_hold_gdal_cache_to_what_they_share_and_do_not_change_the_values(tmp_path):
    """resample_raster streams windows of whole output tiles (here narrower than the raster) with GDAL's block
    cache capped, during the tasks, to what the windows in flight share (restored after); the file it writes
    equals the in-memory resampling of the whole stack to one float32 rounding, for every method."""
    from osgeo import gdal

    from subsidence_toolkit.core.io import windows
    from subsidence_toolkit.core.io.rasters import block_layout

    dates = sentinel1_dates(n=20)
    values = smooth_stack(dates, ny=300, nx=520, nan_fraction=0.02, seed=3).astype(np.float32)
    src = _tiled_stack(tmp_path / "s.tif", values, dates, 384)
    t, t_new = days_since(dates), days_since(resample.target_dates(dates), dates[0])
    before = gdal.GetCacheMax()
    for method in resample.METHODS:
        seen, tasks = set(), []

        def run_tasks(fn, ts, shared):
            for i, task in enumerate(ts):
                seen.add(gdal.GetCacheMax())
                tasks.append(task)
                yield i, fn(task)

        out = str(tmp_path / ("%s.tif" % method))
        resample.resample_raster(src, out, method=method, memory_mb=50, run_tasks=run_tasks, windows_at_once=2)
        assert gdal.GetCacheMax() == before
        assert len(tasks) > 2 and any(task["ncols"] < 520 for task in tasks)
        # whole output tiles (256 x 256) except at the raster's edges
        assert all(task["row0"] % 256 == 0 and task["col0"] % 256 == 0 for task in tasks)
        lay = block_layout(gdal.Open(src), whole_stack_reads=True)
        need = max(lay.held((k["row0"], k["nrows"], k["col0"], k["ncols"])) for k in tasks)
        assert need > 0  # 256 x 256 windows cut the 384 x 384 input tiles
        assert seen == {int(2 * need + windows.MIN_CACHE_MB * 2**20)}
        whole = resample.temporal_resample_block(values.astype(np.float64), t, t_new, method).astype(np.float32)
        got = gdal.Open(out).ReadAsArray()
        assert np.array_equal(np.isnan(got), np.isnan(whole)), method
        np.testing.assert_allclose(got, whole, rtol=2.5e-7, atol=0, err_msg=method)  # one float32 rounding


@pytest.mark.parametrize("method", ["linear", "cubic", "pchip", "nearest"])
def test_scattered_gaps_pixel_by_pixel_match_scipy_and_the_pattern_way(method):
    """Gaps on scattered dates give every pixel its own validity pattern: those pixels are interpolated pixel by
    pixel (batched over pixels), the same values as SciPy per pixel and as the weight-matrix way the pixels of a
    shared pattern take (forced here by a group size limit of 1), including flat runs and sign changes (PCHIP's
    derivative rules) and pixels with 2 and 3 valid dates."""
    rng = np.random.default_rng(11)
    dates = sentinel1_dates(n=40)
    values = np.cumsum(rng.normal(size=(40, 12, 15)), axis=0) * 3
    values[rng.random(values.shape) < 0.15] = np.nan
    values[:, 0, :3] = np.nan
    values[[3, 20], 0, 0] = [1.0, 2.0]  # two valid dates
    values[[3, 20, 30], 0, 1] = [1.0, 5.0, 2.0]  # three
    values[:, 1, 0] = np.nan
    values[[5, 10, 15, 20, 25], 1, 0] = [1.0, 2.0, 2.0, 2.0, 3.0]  # a flat run
    t = days_since(dates)
    t_new = days_since(resample.target_dates(dates), dates[0])
    got = resample.temporal_resample_block(values, t, t_new, method)
    ref = _reference(values, t, t_new, method)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9, equal_nan=True)
    old = resample.SMALL_GROUP
    try:
        resample.SMALL_GROUP = 1
        by_pattern = resample.temporal_resample_block(values, t, t_new, method)
    finally:
        resample.SMALL_GROUP = old
    np.testing.assert_allclose(got, by_pattern, rtol=0, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("method", ["linear", "cubic", "pchip", "nearest"])
def test_float32_windows_and_group_chunks_give_the_same_values_bit_for_bit(method):
    """A window held as float32 (as read from a float32 file) gives the float32 result of the float64 window bit
    for bit, and a shared pattern's pixels interpolated a chunk at a time (any multiple of the product width) give
    the same values as all at once: the window's type and the chunking change the memory, not the numbers."""
    rng = np.random.default_rng(5)
    dates = sentinel1_dates(n=36)
    values = smooth_stack(dates, ny=40, nx=50, nan_fraction=0.0, seed=2).astype(np.float32)
    values[4:9, :20, :] = np.nan  # a shared gap (1 000 px, one pattern)
    values[:, 30:, 40:][rng.random((36, 10, 10)) < 0.2] = np.nan  # scattered gaps: pixel by pixel
    values[:, 0, 0] = np.nan
    t = days_since(dates)
    t_new = days_since(resample.target_dates(dates), dates[0])
    ref = resample.temporal_resample_block(values.astype(np.float64), t, t_new, method).astype(np.float32)
    got = resample.temporal_resample_block(values, t, t_new, method, out_dtype=np.float32)
    assert got.dtype == np.float32
    assert np.array_equal(got, ref, equal_nan=True)
    old = resample.GROUP_CHUNK
    try:
        resample.GROUP_CHUNK = resample.WEIGHT_CHUNK
        chunked = resample.temporal_resample_block(values, t, t_new, method, out_dtype=np.float32)
    finally:
        resample.GROUP_CHUNK = old
    assert np.array_equal(chunked, ref, equal_nan=True)


@pytest.mark.parametrize("gaps,method", [("shared", "cubic"), ("shared", "pchip"), ("scattered", "cubic")])
def test_window_memory_within_its_plan(gaps, method):
    """What a window's resampling allocates (numpy reports to tracemalloc) beyond its input stays within what the
    plan counts: ``window_bytes_per_cell`` x its cells without the input (T itemsize) + ``fixed_bytes`` (+ 64 kB
    of small arrays), with shared gaps (chunks of patterns; PCHIP's SciPy interpolant in smaller chunks) and with
    gaps on scattered dates (pixel by pixel)."""
    import tracemalloc

    rng = np.random.default_rng(1)
    dates = sentinel1_dates(n=60)
    T = len(dates)
    values = smooth_stack(dates, ny=150, nx=200, nan_fraction=0.0, seed=4).astype(np.float32)
    if gaps == "shared":
        values[10:14, :75] = np.nan
    else:
        values[rng.random(values.shape) < 0.1] = np.nan
    t = days_since(dates)
    t_new = days_since(resample.target_dates(dates), dates[0])
    K = len(t_new)
    for warm in (np.ones((T, 10, 10), np.float32), values[:, :2, :2]):  # SciPy imported, both ways run once
        resample.temporal_resample_block(warm, t, t_new, method, out_dtype=np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = resample.temporal_resample_block(values, t, t_new, method, out_dtype=np.float32)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    cells = values.shape[1] * values.shape[2]
    plan = (resample.window_bytes_per_cell(T, K, 4) - 4 * T) * cells + resample.fixed_bytes(T, K, method)
    assert out.nbytes <= peak <= plan + 64 * 1024, (peak, plan)


def test_a_limit_below_what_one_window_needs_is_said_in_the_log(tmp_path):
    """Where the fixed part of a window (a pixel-interleaved tile's decoding, the working chunks) exceeds the
    memory limit, the run still completes (with the smallest windows) and its log says how much a window takes and
    what to change; at a limit that fits, nothing is said."""
    from osgeo import gdal

    dates = sentinel1_dates(n=40)
    values = smooth_stack(dates, ny=60, nx=70, nan_fraction=0.0, seed=1).astype(np.float32)
    src = _tiled_stack(tmp_path / "p.tif", values, dates, 64, "PIXEL")
    said = []
    resample.resample_raster(src, str(tmp_path / "a.tif"), memory_mb=4, log=said.append)
    warn = [m for m in said if "memory limit leaves 4 MB per window" in m]
    assert len(warn) == 1 and "MEMORY_LIMIT_MB" in warn[0] and src in warn[0], said
    need = float(warn[0].split("need about ")[1].split(" MB")[0])
    assert need > 4
    said = []
    resample.resample_raster(src, str(tmp_path / "b.tif"), memory_mb=512, log=said.append)
    assert not [m for m in said if "memory limit" in m]
    small, large = (gdal.Open(str(tmp_path / name)).ReadAsArray() for name in ("a.tif", "b.tif"))
    assert np.array_equal(small, large, equal_nan=True)
