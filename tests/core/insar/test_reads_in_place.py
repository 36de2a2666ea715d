"""Window reads decoded straight into the caller's float32 buffer (core/insar/products.py ProductRaster.read_into,
core/insar/stack.py StackFiles.read_into / read_files_into), the copy-free range check and the reference pass's
coherence sums (core/insar/sbas_stack.py _coherence_score): the same values, bit for bit, as the read that
allocated a new array per window and converted it with numpy (written out here as the reference), on small
LiCSAR-like and generic files (NaN, 0 = no data, 8-bit coherence, NoData values, scale/offset, edge windows)."""

from types import SimpleNamespace

import numpy as np
import pytest
from osgeo import gdal, osr

from subsidence_toolkit.core.insar import products, sbas_stack
from subsidence_toolkit.core.insar.products import KIND_COH, KIND_UNW, PRODUCT_GENERIC, PRODUCT_LICSAR, ProductRaster
from subsidence_toolkit.core.insar.stack import StackFiles, check_value_range, read_files_into
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.rasters import RasterGrid

NY, NX = 37, 45  # not a multiple of the 16 x 16 tiles: edge windows cut partial tiles
X0, Y0, PX = 110.0, 35.0, 0.001


def _write(path, arr, gdal_type, nodata=None, scale=None, offset=None, options=()):
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path),
        NX,
        NY,
        1,
        gdal_type,
        ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "COMPRESS=DEFLATE"] + list(options),
    )
    ds.SetGeoTransform((X0, PX, 0, Y0, 0, -PX))
    s = osr.SpatialReference()
    s.ImportFromEPSG(4326)
    ds.SetProjection(s.ExportToWkt())
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    if scale is not None:
        band.SetScale(scale)
    if offset is not None:
        band.SetOffset(offset)
    band.WriteArray(arr)
    ds = None
    return str(path)


def _old_read(raster, row0, nrows, col0, ncols):
    """The read before buffers were filled in place: a new array per window from ``ReadAsArray``, ``astype``,
    ``np.where`` for NoData, ``a * s + o``, then / 255 and LiCSAR zeros as copies (NaN outside the file)."""
    out = np.full((nrows, ncols), np.nan, dtype=np.float32)
    fr0, fc0 = row0 + raster.row_off, col0 + raster.col_off
    r0, r1 = max(fr0, 0), min(fr0 + nrows, raster.grid.ysize)
    c0, c1 = max(fc0, 0), min(fc0 + ncols, raster.grid.xsize)
    if r1 <= r0 or c1 <= c0:
        return out
    ds = gdal.Open(raster.path)
    band = ds.GetRasterBand(1)
    a = band.ReadAsArray(c0, r0, c1 - c0, r1 - r0).astype(np.float32, copy=False)
    nd = band.GetNoDataValue()
    if nd is not None and not np.isnan(nd):
        a = np.where(a == nd, np.float32(np.nan), a)
    s, o = band.GetScale(), band.GetOffset()
    if s not in (None, 1.0) or o not in (None, 0.0):
        a = a * (1.0 if s is None else s) + (0.0 if o is None else o)
    if raster.byte_scaled:
        a /= products.COHERENCE_BYTE_SCALE
    if raster.zero_is_nodata:
        a[a == 0] = np.nan
    out[r0 - fr0 : r1 - fr0, c0 - fc0 : c1 - fc0] = a
    return out


def _assert_same_bits(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    uint = {4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(uint), np.ascontiguousarray(b).view(uint))


def _field(rng, lo, hi, dtype):
    return rng.uniform(lo, hi, (NY, NX)).astype(dtype)


def _cases(folder):
    """(name, path, kind, product): each of the read conventions, with holes of each sort."""
    rng = np.random.default_rng(11)
    unw = _field(rng, -30, 30, np.float32)
    unw[3:9, 5:12] = np.nan
    unw[20:24, 30:40] = 0  # LiCSAR: 0 = no data
    unw[0, 0] = -0.0
    coh8 = rng.integers(0, 256, (NY, NX)).astype(np.uint8)
    coh8[10:15, 0:6] = 0
    coh_f = _field(rng, 0, 1, np.float32)
    coh_f[2:4, :] = -9999.0
    scaled = rng.integers(-3000, 3000, (NY, NX)).astype(np.int16)
    scaled[5:7, 5:7] = -32768
    scaled[8, :] = 0  # 0 * negative scale = -0, and + 0.0 makes it +0
    gen = _field(rng, -5, 5, np.float32)
    gen[30:, 40:] = -9999.0
    gen[1, 1] = np.nan
    u16 = rng.integers(0, 65535, (NY, NX)).astype(np.uint16)
    f64 = rng.uniform(-1, 1, (NY, NX))
    f64[4:6, :] = -1.0e30
    s8 = rng.integers(-128, 128, (NY, NX)).astype(np.int8).view(np.uint8)
    offset0 = rng.integers(0, 12, (NY, NX)).astype(np.int16)  # 0 = NoData; 5 - 5 = 0: LiCSAR no data after the offset
    return [
        ("licsar_unw", _write(folder / "a.geo.unw.tif", unw, gdal.GDT_Float32), KIND_UNW, PRODUCT_LICSAR),
        ("licsar_coh8", _write(folder / "a.geo.cc.tif", coh8, gdal.GDT_Byte, nodata=0), KIND_COH, PRODUCT_LICSAR),
        (
            "coh_float_nodata",
            _write(folder / "c.tif", coh_f, gdal.GDT_Float32, nodata=-9999),
            KIND_COH,
            PRODUCT_GENERIC,
        ),
        (
            "int16_scale",
            _write(folder / "s.tif", scaled, gdal.GDT_Int16, nodata=-32768, scale=-0.001),
            KIND_UNW,
            PRODUCT_GENERIC,
        ),
        (
            "float_scale_offset",
            _write(folder / "g.tif", gen, gdal.GDT_Float32, nodata=-9999, scale=0.37, offset=1.25),
            KIND_UNW,
            PRODUCT_GENERIC,
        ),
        (
            "licsar_nodata0_offset",
            _write(folder / "b.geo.unw.tif", offset0, gdal.GDT_Int16, nodata=0, offset=-5),
            KIND_UNW,
            PRODUCT_LICSAR,
        ),
        ("uint16", _write(folder / "u.tif", u16, gdal.GDT_UInt16), KIND_UNW, PRODUCT_GENERIC),
        (
            "float64_copy_path",
            _write(folder / "d.tif", f64, gdal.GDT_Float64, nodata=-1.0e30),
            KIND_UNW,
            PRODUCT_GENERIC,
        ),
        (
            "signed_byte_copy_path",
            _write(folder / "sb.tif", s8, gdal.GDT_Byte, nodata=-5, options=["PIXELTYPE=SIGNEDBYTE"]),
            KIND_UNW,
            PRODUCT_GENERIC,
        ),
    ]


WINDOWS = [(0, NY, 0, NX), (5, 11, 7, 20), (NY - 6, 6, NX - 13, 13), (16, 16, 16, 16)]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("reads"))


def test_in_place_and_copy_paths_are_both_exercised(cases):
    in_place = {name: ProductRaster(path, kind, product)._reads_in_place() for name, path, kind, product in cases}
    assert in_place.pop("float64_copy_path") is False
    assert in_place.pop("signed_byte_copy_path") is False
    assert all(in_place.values()), in_place


@pytest.mark.parametrize("window", WINDOWS)
def test_product_raster_reads_equal_the_old_read_bit_for_bit(cases, window):
    row0, nrows, col0, ncols = window
    for name, path, kind, product in cases:
        raster = ProductRaster(path, kind, product)
        want = _old_read(raster, row0, nrows, col0, ncols)
        _assert_same_bits(raster.read(row0, nrows, col0, ncols), want)
        buf = np.full((3, nrows + 2, ncols + 4), 7.0, dtype=np.float32)
        into = raster.read_into(row0, nrows, col0, ncols, buf[1, 1 : nrows + 1, 2 : ncols + 2])  # strided view
        _assert_same_bits(into, want)
        assert (buf[0] == 7).all() and (buf[2] == 7).all() and (buf[1, 0] == 7).all() and (buf[1, :, :2] == 7).all()
        as_float64 = raster.read_into(row0, nrows, col0, ncols, np.empty((nrows, ncols)))  # through the copy
        np.testing.assert_array_equal(as_float64, want.astype(np.float64))
        if name == "licsar_coh8":
            finite = want[np.isfinite(want)]
            assert finite.size and finite.min() > 0 and finite.max() <= 1  # / 255, zeros -> NaN
        if name == "licsar_nodata0_offset":
            raw = gdal.Open(path).ReadAsArray(col0, row0, ncols, nrows)
            assert (raw == 5).any() and np.isnan(want[raw == 5]).all() and not (want == 0).any()
        if name == "int16_scale":
            assert not np.signbit(want[np.isfinite(want) & (want == 0)]).any()


@pytest.mark.parametrize("shift", [(-4, -9), (5, 3), (NY - 2, NX - 3), (NY + 5, 0)])
def test_windows_partly_or_wholly_outside_the_file(cases, shift):
    """A raster placed on a stack grid offset from it: the part outside the file is NaN."""
    drow, dcol = shift
    grid = RasterGrid(NX, NY, (X0 + dcol * PX, PX, 0, Y0 - drow * PX, 0, -PX), "")
    for name, path, kind, product in cases:
        raster = ProductRaster(path, kind, product).place(grid)
        assert (raster.row_off, raster.col_off) == (drow, dcol)
        for row0, nrows, col0, ncols in WINDOWS:
            want = _old_read(raster, row0, nrows, col0, ncols)
            _assert_same_bits(raster.read(row0, nrows, col0, ncols), want)
            buf = np.full((nrows, ncols), 7.0, dtype=np.float32)
            _assert_same_bits(raster.read_into(row0, nrows, col0, ncols, buf), want)


@pytest.mark.parametrize("threads", [1, 2])
def test_stack_files_read_paths_agree(cases, threads):
    """read_one, read_into, read and read_files_into of a StackFiles give the old values; plain files (no
    ProductRaster) keep their read through a copy."""
    paths = [c[1] for c in cases]
    rasters = {path: ProductRaster(path, kind, product) for _, path, kind, product in cases}
    files = StackFiles(paths, rasters)
    plain = StackFiles(paths[:1])
    for row0, nrows, col0, ncols in WINDOWS:
        want = np.stack([_old_read(rasters[p], row0, nrows, col0, ncols) for p in paths])
        for k in range(len(paths)):
            _assert_same_bits(files.read_one(k, row0, nrows, col0, ncols), want[k])
        _assert_same_bits(files.read(row0, nrows, col0, ncols), want)
        _assert_same_bits(files.read(row0, nrows, col0, ncols, out=np.empty_like(want)), want)
        got = read_files_into(files, np.full_like(want, 7.0), row0, nrows, col0, ncols, threads)
        _assert_same_bits(got, want)
        got = plain.read_into(0, row0, nrows, col0, ncols, np.empty((nrows, ncols), np.float32))
        _assert_same_bits(got, plain.read_one(0, row0, nrows, col0, ncols))
    assert files.read_one(0, 2, 3).shape == (3, NX)  # ncols None: to the right edge of the stack grid


def _old_check(values, valid_range, path, quantity, byte_raw=False):
    """check_value_range before it stopped copying the finite values: None or the message."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if byte_raw and lo >= 0 and hi <= 255:
        return None
    low, high = valid_range
    tol = 1e-6 * max(1.0, abs(high - low))
    if lo < low - tol or hi > high + tol:
        return "%s: %s values from %.4g to %.4g lie outside [%g, %g]; give %s rasters (0 = none, 1 = perfect) or " % (
            path,
            quantity,
            lo,
            hi,
            low,
            high,
            quantity,
        )
    return None


@pytest.mark.parametrize(
    "values, byte_raw",
    [
        (np.array([[0.2, np.nan], [0.9, 1.0]], np.float32), False),
        (np.array([[0.2, np.nan], [1.5, 1.0]], np.float32), False),
        (np.array([[-0.3, np.nan], [0.5, 1.0]], np.float32), False),
        (np.array([[np.nan, np.nan]], np.float32), False),
        (np.zeros((0, 3), np.float32), False),
        (np.array([[np.inf, 0.5], [-np.inf, 0.7]], np.float32), False),  # infinities are not checked
        (np.array([[np.inf, 1.7], [-np.inf, np.nan]], np.float32), False),
        (np.array([[np.inf, -np.inf]], np.float32), False),
        (np.array([[0.0, 255.0], [17.0, np.nan]], np.float32), True),
        (np.array([[0.0, 256.0]], np.float32), True),
        (np.array([[1.0 + 5e-7, 0.0]], np.float64), False),  # within the tolerance
    ],
)
def test_check_value_range_gives_the_old_verdict_and_message(values, byte_raw):
    want = _old_check(values, (0.0, 1.0), "/data/x.cc.tif", "coherence", byte_raw)
    if want is None:
        check_value_range(values, (0.0, 1.0), "/data/x.cc.tif", "coherence", byte_raw)
    else:
        with pytest.raises(TimeSeriesError) as e:
            check_value_range(values, (0.0, 1.0), "/data/x.cc.tif", "coherence", byte_raw)
        assert str(e.value).startswith(want)


def test_stack_read_into_range_check_names_the_file(tmp_path):
    bad = np.full((NY, NX), 0.5, np.float32)
    bad[30, 40] = 1.5
    path = _write(tmp_path / "bad.cc.tif", bad, gdal.GDT_Float32)
    files = StackFiles([path], {path: ProductRaster(path, KIND_COH)}, valid_range=(0.0, 1.0), quantity="coherence")
    files.read_into(0, 0, 10, 0, NX, np.empty((10, NX), np.float32))  # the bad pixel is not in this window
    for read in (
        lambda: files.read_into(0, 25, 12, 0, NX, np.empty((12, NX), np.float32)),
        lambda: files.read_one(0, 25, 12),
        lambda: read_files_into(files, np.empty((1, 12, NX), np.float32), 25, 12, 0, NX, 2),
    ):
        with pytest.raises(TimeSeriesError, match=r"bad\.cc\.tif: coherence values from 0\.5 to 1\.5 lie outside"):
            read()


def _old_coherence_score(state, r0, h, c0, w):
    """_coherence_score before the reused buffers: a new array per file, np.where temporaries."""
    M = state.network.n_ifg
    nvalid = np.zeros((h, w), dtype=np.intp)
    csum = np.zeros((h, w), dtype=np.float32)
    coh_sum, coh_n = np.zeros(M), np.zeros(M, dtype=np.int64)
    for k in range(M):
        if state.coherence_only:
            coh = state.coh_files.read_one(k, r0, h, c0, w)
            valid = np.isfinite(coh)
        else:
            coh = state.coh_files.read_one(k, r0, h, c0, w)
            valid = np.isfinite(state.ifg_files.read_one(k, r0, h, c0, w))
        if state.solver.min_coherence and state.solver.min_coherence > 0:
            valid &= coh >= state.solver.min_coherence
        nvalid += valid
        csum += np.where(valid, coh, 0)
        cf = np.isfinite(coh)
        coh_sum[k] += float(np.where(cf, coh, 0).sum(dtype=np.float64))
        coh_n[k] += int(cf.sum())
    with np.errstate(all="ignore"):
        score = csum / np.maximum(nvalid, 1)
    return nvalid, score, coh_sum, coh_n


@pytest.fixture(scope="module")
def licsar_stack(tmp_path_factory):
    """7 LiCSAR-like pairs: float32 phase with NaN and zeros, 8-bit coherence with 0 = no data."""
    folder = tmp_path_factory.mktemp("licsar")
    rng = np.random.default_rng(5)
    ifgs, cohs = [], []
    for k in range(7):
        unw = _field(rng, -20, 20, np.float32)
        unw[rng.random((NY, NX)) < 0.05] = np.nan
        unw[rng.random((NY, NX)) < 0.05] = 0
        coh = rng.integers(0, 256, (NY, NX)).astype(np.uint8)
        coh[rng.random((NY, NX)) < 0.05] = 0
        name = "2021%02d01_2021%02d01" % (k + 1, k + 2)
        ifgs.append(_write(folder / (name + ".geo.unw.tif"), unw, gdal.GDT_Float32))
        cohs.append(_write(folder / (name + ".geo.cc.tif"), coh, gdal.GDT_Byte, nodata=0))
    rasters = {p: ProductRaster(p, KIND_UNW, PRODUCT_LICSAR) for p in ifgs}
    rasters.update({p: ProductRaster(p, KIND_COH, PRODUCT_LICSAR) for p in cohs})
    return (
        StackFiles(ifgs, rasters),
        StackFiles(cohs, rasters, valid_range=(0.0, 1.0), quantity="coherence"),
    )


@pytest.mark.parametrize("coherence_only", [True, False])
@pytest.mark.parametrize("min_coherence", [0.0, 0.3])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_coherence_score_equals_the_old_sums(licsar_stack, coherence_only, min_coherence, threads):
    ifg_files, coh_files = licsar_stack
    state = SimpleNamespace(
        network=SimpleNamespace(n_ifg=len(ifg_files.paths)),
        solver=SimpleNamespace(min_coherence=min_coherence),
        coherence_only=coherence_only,
        ifg_files=ifg_files,
        coh_files=coh_files,
        inner_threads=threads,
    )
    for r0, h, c0, w in WINDOWS:
        task = SimpleNamespace(row0=r0, nrows=h, col0=c0, ncols=w)
        nvalid, score, stats = sbas_stack._coherence_score(task, state)
        want_n, want_score, want_sum, want_count = _old_coherence_score(state, r0, h, c0, w)
        np.testing.assert_array_equal(nvalid, want_n)
        _assert_same_bits(score, want_score)
        np.testing.assert_array_equal(stats["coh_sum"], want_sum)  # float64 sums: exact
        np.testing.assert_array_equal(stats["coh_n"], want_count)
        assert want_n.max() > 0 and np.isfinite(want_score).mean() > 0.5
