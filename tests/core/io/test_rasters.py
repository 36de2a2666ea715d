import datetime as dt
import os
import time

import numpy as np
import pytest
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.insar import units
from subsidence_toolkit.core.io.dates import decode_cf_time, month_from_index, month_index, parse_date
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.rasters import (
    RasterWriter,
    grid_from_origin,
    open_raster,
    read_block,
    read_dates,
    write_raster,
)
from subsidence_toolkit.core.io.windows import row_blocks


def test_parse_date_forms():
    assert parse_date("2020-01-15") == dt.date(2020, 1, 15)
    assert parse_date("20200115") == dt.date(2020, 1, 15)
    assert parse_date("D20200115") == dt.date(2020, 1, 15)
    assert parse_date("D_20200115") == dt.date(2020, 1, 15)
    assert parse_date("2020-02-30") is None
    assert parse_date("Band 1") is None
    assert parse_date("") is None


def test_decode_cf_time():
    assert decode_cf_time(107.5, "days since 2002-01-01").date() == dt.date(2002, 4, 18)
    assert decode_cf_time(0, "days since 2002-01-01T00:00:00Z").date() == dt.date(2002, 1, 1)
    assert decode_cf_time(24, "hours since 2000-02-28 00:00:00").date() == dt.date(2000, 2, 29)
    assert decode_cf_time(13, "months since 2019-12-15").date() == dt.date(2021, 1, 15)
    with pytest.raises(TimeSeriesError):
        decode_cf_time(1, "furlongs")


def test_month_index_roundtrip():
    for d in (dt.date(2019, 12, 31), dt.date(2020, 1, 1), dt.date(2020, 2, 29)):
        k = month_index(d)
        assert month_from_index(k, day=d.day) == d
    assert month_index(dt.date(2020, 1, 5)) - month_index(dt.date(2019, 12, 5)) == 1


def test_read_dates_from_descriptions_metadata_and_netcdf(tmp_path):
    a = np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5)
    p1 = write_stack(tmp_path / "desc.tif", a, descriptions=["2020-01-03", "20200115", "D20200127"])
    assert read_dates(p1) == [dt.date(2020, 1, 3), dt.date(2020, 1, 15), dt.date(2020, 1, 27)]
    p2 = write_stack(
        tmp_path / "md.tif",
        a,
        metadata=[{"DATE": "2020-01-03"}, {"ACQUISITION_DATE": "2020-01-15"}, {"DATE": "20200127"}],
    )
    assert read_dates(p2)[1] == dt.date(2020, 1, 15)
    p3 = write_stack(tmp_path / "nc.tif", a, metadata=[{"NETCDF_DIM_time": str(v)} for v in (107.5, 129.5, 227.5)])
    ds = gdal.Open(p3, gdal.GA_Update)
    ds.SetMetadataItem("time#units", "days since 2002-01-01 00:00:00")
    ds = None
    assert [d.month for d in read_dates(p3)] == [4, 5, 8]


def test_read_dates_errors_name_file_and_band(tmp_path):
    a = np.ones((3, 2, 2))
    p = write_stack(tmp_path / "bad.tif", a, descriptions=["2020-01-03", "nope", "2020-01-27"])
    with pytest.raises(TimeSeriesError, match=r"bad\.tif: band 2 has no date"):
        read_dates(p)
    p = write_stack(tmp_path / "dup.tif", a, descriptions=["2020-01-03", "2020-01-15", "2020-01-15"])
    with pytest.raises(TimeSeriesError, match=r"dup\.tif: duplicate date 2020-01-15 in band 3"):
        read_dates(p)
    p = write_stack(tmp_path / "uns.tif", a, descriptions=["2020-01-03", "2020-01-27", "2020-01-15"])
    with pytest.raises(TimeSeriesError, match=r"not in increasing order: band 3"):
        read_dates(p)
    p = write_stack(tmp_path / "one.tif", a[:1], descriptions=["2020-01-03"])
    with pytest.raises(TimeSeriesError, match="at least two dates"):
        read_dates(p)
    with pytest.raises(TimeSeriesError, match="2 dates given for 3 bands"):
        read_dates(write_stack(tmp_path / "x.tif", a), ["2020-01-01", "2020-02-01"])


def test_row_blocks_cover_rows_under_cap():
    blocks = row_blocks(1000, bytes_per_row=1024 * 1024, memory_mb=64)
    assert blocks[0] == (0, 64) and sum(n for _, n in blocks) == 1000
    assert all(r0 == sum(n for _, n in blocks[:i]) for i, (r0, _) in enumerate(blocks))
    assert row_blocks(10, bytes_per_row=10**12, memory_mb=1) == [(i, 1) for i in range(10)]


def test_read_block_nodata_and_scale(tmp_path):
    a = np.array([[[1, -9999], [3, 4]]], dtype=np.float32)
    p = write_stack(tmp_path / "nd.tif", a, nodata=-9999)
    ds = gdal.Open(p, gdal.GA_Update)
    ds.GetRasterBand(1).SetScale(10.0)
    ds.GetRasterBand(1).SetOffset(1.0)
    ds = None
    blk = read_block(open_raster(p), 0, 2)
    assert np.isnan(blk[0, 0, 1])
    np.testing.assert_array_equal(blk[0][np.isfinite(blk[0])], [11.0, 31.0, 41.0])


def test_writer_is_atomic_and_labels_bands(tmp_path):
    grid = grid_from_origin(100.0, 40.0, 0.1, 0.1, 5, 4)
    dates = [dt.date(2020, 1, 15), dt.date(2020, 2, 15)]
    out = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with RasterWriter(out, grid, 2, dates=dates) as w:
            w.write_block(0, np.zeros((2, 2, 5)))
            raise RuntimeError("boom")
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "partial" in f]
    data = np.random.default_rng(0).normal(size=(2, 4, 5))
    data[0, 0, 0] = np.nan
    write_raster(out, grid, data, dates=dates)
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(2).GetDescription() == "2020-02-15"
    assert ds.GetRasterBand(2).GetMetadataItem("DATE") == "2020-02-15"
    assert ds.GetMetadataItem("UNITS") == "mm"
    assert np.isnan(ds.GetRasterBand(1).GetNoDataValue())
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
    np.testing.assert_allclose(ds.ReadAsArray(), data.astype(np.float32), equal_nan=True)
    assert read_dates(str(out)) == dates


def test_phase_to_los_sign():
    # positive phase = range increase = away from the satellite -> negative displacement
    assert units.los_factor_mm("radians", units.SENTINEL1_WAVELENGTH_M) * 1.0 == pytest.approx(
        -0.05546576 / (4 * np.pi) * 1000
    )


def test_window_blocks_cover_grid_once():
    import numpy as np

    from subsidence_toolkit.core.io.windows import window_blocks

    for ny, nx, bpc, mb in (
        (1000, 900, 8 * 100, 512),
        (1000, 4000, 8 * 1216, 64),
        (300, 70, 8, 0.001),
        (5, 7, 80, 1e-5),
    ):
        cover = np.zeros((ny, nx), int)
        blocks = window_blocks(ny, nx, bpc, mb)
        for r0, nr, c0, nc in blocks:
            assert nr >= 1 and nc >= 1
            assert nr * nc * bpc <= max(mb * 1024 * 1024, bpc) + 1e-9
            cover[r0 : r0 + nr, c0 : c0 + nc] += 1
        assert (cover == 1).all()
    # deep stacks: whole tile rows, tile-aligned columns
    blocks = window_blocks(4000, 4000, 8 * 1216, 512)
    assert blocks[0][1] == 256 and blocks[0][3] == 512 * 1024 * 1024 // (8 * 1216) // 256
    blocks = window_blocks(4000, 4000, 8 * 1216, 2048)
    assert blocks[0][1] == 256 and blocks[0][3] % 256 == 0


def test_block_layout_holds_whole_windows_or_only_the_blocks_their_edges_cut(tmp_path):
    """A raster read one band at a time holds every block a window touches (all bands of a pixel-interleaved
    file); read all bands at once it holds only the blocks a window's edges cut, which the next window reads
    again. plan_windows counts the held blocks under the cap."""
    from subsidence_toolkit.core.io.rasters import block_layout
    from subsidence_toolkit.core.io.windows import cache_bytes, plan_windows, window_need_bytes

    a = np.zeros((5, 40, 50), np.float32)
    path = str(tmp_path / "p.tif")
    gdal.Translate(
        path,
        write_stack(tmp_path / "s.tif", a),
        creationOptions=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "INTERLEAVE=PIXEL"],
    )
    ds = gdal.Open(path)
    per_band, stack = block_layout(ds), block_layout(ds, whole_stack_reads=True)
    assert (per_band.cell, per_band.buffer, per_band.whole_window) == (20, 20 * 256, True)
    assert (stack.cell, stack.whole_window) == (20, False)
    # rows 5..25 -> blocks of rows 0..32, columns 20..30 -> 16..32: 512 cells touched, 200 in the window
    assert per_band.held((5, 20, 20, 10)) == 20 * 512
    assert stack.held((5, 20, 20, 10)) == 20 * (512 - 200)
    assert stack.held((0, 16, 0, 50)) == 0 and stack.held() == 0 and per_band.held() == 20
    assert cache_bytes([per_band, stack], (0, 16, 16, 16)) == 20 * 256
    # windows under the cap with the held blocks: 1 000 bytes per cell of arrays, 0.05 MB
    for lay in (per_band, stack):
        blocks, cache = plan_windows([lay], 40, 50, 1000, 0.05, tile=16)
        assert cache == max(lay.held(b) for b in blocks)
        assert all(nr * nc * (1000 + lay.held()) + lay.buffer <= 0.05 * 2**20 for _, nr, _, nc in blocks)
        # what the largest window needs, counted the same way: within the cap here, above it when the fixed
        # part alone exceeds the cap (the windows then stop shrinking at a quarter of it)
        assert window_need_bytes([lay], blocks, 40, 50, 1000, tile=16) <= 0.05 * 2**20
        small, _ = plan_windows([lay], 40, 50, 1000, 0.05, fixed=60_000, tile=16)
        need = window_need_bytes([lay], small, 40, 50, 1000, fixed=60_000, tile=16)
        cells = max(nr * nc for _, nr, _, nc in small)
        assert need >= 60_000 + lay.buffer + cells * (1000 + lay.held()) > 0.05 * 2**20


def _tiles(path):
    """The compressed bytes of every tile of every band, in band and tile order."""
    ds = gdal.Open(path)
    out = []
    with open(path, "rb") as f:
        for b in range(1, ds.RasterCount + 1):
            band = ds.GetRasterBand(b)
            bx, by = band.GetBlockSize()
            for ty in range(-(-ds.RasterYSize // by)):
                for tx in range(-(-ds.RasterXSize // bx)):
                    off = int(band.GetMetadataItem("BLOCK_OFFSET_%d_%d" % (tx, ty), "TIFF"))
                    size = int(band.GetMetadataItem("BLOCK_SIZE_%d_%d" % (tx, ty), "TIFF"))
                    f.seek(off)
                    out.append(f.read(size))
    return out


def test_compression_threads_write_the_same_tiles(tmp_path, monkeypatch):
    """Tiles compressed on GDAL's threads (GTiff NUM_THREADS, passed only inside compression_threads) are the
    bytes one thread writes: only where they sit in the file may differ."""
    from subsidence_toolkit.core.io import rasters

    created = []
    real = gdal.Driver.Create
    monkeypatch.setattr(gdal.Driver, "Create", lambda self, *a: created.append(a[-1]) or real(self, *a))
    rng = np.random.default_rng(3)
    data = (np.cumsum(rng.normal(size=(7, 300, 520)), axis=2)).astype(np.float32)
    data[:, :10, :10] = np.nan
    grid = grid_from_origin(100.0, 40.0, 0.01, 0.01, 520, 300)
    paths = {}
    for threads in (1, 3):
        paths[threads] = str(tmp_path / ("t%d.tif" % threads))
        with rasters.compression_threads(threads), RasterWriter(paths[threads], grid, 7) as w:
            for r0 in range(0, 300, 256):
                w.write_block(r0, data[:, r0 : r0 + 256])
    assert [o for o in created[0] if o.startswith("NUM_THREADS")] == []
    assert "NUM_THREADS=3" in created[1]
    assert np.array_equal(gdal.Open(paths[3]).ReadAsArray(), data, equal_nan=True)
    assert _tiles(paths[1]) == _tiles(paths[3])
    assert rasters._COMPRESSION_THREADS.get() == 1  # restored after the block


def test_windows_leave_no_output_waiting_in_gdals_cache_and_tiles_are_written_whole(tmp_path):
    """Blocks are compressed and written as they come: nothing of the output waits in GDAL's block cache
    (outside the run's memory limit) after a block. The parts of tiles a block covers only partly wait in the
    writer (every band of the tile) until the tile is complete and go to GDAL whole: windows that cut tiles give
    the same tiles, byte for byte, as windows of whole tiles, and a tile is never compressed twice."""
    from subsidence_toolkit.core.io.warp import gdal_cache

    rng = np.random.default_rng(4)
    data = (np.cumsum(rng.normal(size=(6, 300, 700)), axis=2)).astype(np.float32)
    grid = grid_from_origin(100.0, 40.0, 0.01, 0.01, 700, 300)
    tiles_block = [(0, 256, 0, 512), (0, 256, 512, 188), (256, 44, 0, 700)]
    cut_block = [(0, 256, 0, 300), (0, 256, 300, 400), (256, 44, 0, 700)]
    paths, waiting, pending = {}, {}, {}
    with gdal_cache(256):
        for name, windows in (("tiles", tiles_block), ("cut", cut_block)):
            paths[name] = str(tmp_path / (name + ".tif"))
            waiting[name], pending[name] = [], []
            with RasterWriter(paths[name], grid, 6) as w:
                for r0, h, c0, cw in windows:
                    before = gdal.GetCacheUsed()
                    w.write_block(r0, data[:, r0 : r0 + h, c0 : c0 + cw], c0)
                    waiting[name].append(gdal.GetCacheUsed() - before)
                    pending[name].append(sorted(w.pending))
                assert w.whole_tiles
    block_bytes = [6 * h * cw * 4 for _, h, _, cw in tiles_block]
    assert max(waiting["tiles"] + waiting["cut"]) < 0.05 * min(block_bytes)
    assert pending["tiles"] == [[], [], []]
    # columns 0..300: tile (0, 0) written, (0, 1) waits for columns 300..512, which the next block brings
    assert pending["cut"] == [[(0, 1)], [], []]
    for p in paths.values():
        assert np.array_equal(gdal.Open(p).ReadAsArray(), data)
    assert _tiles(paths["tiles"]) == _tiles(paths["cut"])


def test_tiles_never_completed_are_written_at_commit_with_what_they_received(tmp_path):
    grid = grid_from_origin(100.0, 40.0, 0.01, 0.01, 300, 20)
    path = str(tmp_path / "part.tif")
    with RasterWriter(path, grid, 2) as w:
        w.write_block(0, np.ones((2, 20, 100), np.float32))
        w.write_block(5, np.full((2, 10, 40), 2.0, np.float32), 260)
        assert sorted(w.pending) == [(0, 0), (0, 1)]
    got = gdal.Open(path).ReadAsArray()
    expect = np.full((2, 20, 300), np.nan, np.float32)
    expect[:, :, :100] = 1.0
    expect[:, 5:15, 260:300] = 2.0
    assert np.array_equal(got, expect, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pixel_interleaved_windows_read_in_one_call_equal_band_by_band_reads(tmp_path, dtype):
    """A pixel-interleaved raster's window is read in one dataset call (each band read alone decodes the tiles
    again once they do not fit in GDAL's cache): NoData, scale and offset give the same values as the band-by-band
    read of the same data stored band-interleaved, for any subset of bands, whatever the cache."""
    from subsidence_toolkit.core.io.rasters import read_window
    from subsidence_toolkit.core.io.warp import gdal_cache

    rng = np.random.default_rng(3)
    data = rng.integers(-50, 50, size=(5, 40, 30)).astype(np.int16)
    data[1, 3:7, 4:9] = -9999
    paths = {}
    for layout in ("PIXEL", "BAND"):
        p = str(tmp_path / ("%s.tif" % layout))
        opts = ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "INTERLEAVE=" + layout]
        ds = gdal.GetDriverByName("GTiff").Create(p, 30, 40, 5, gdal.GDT_Int16, opts)
        for b in range(5):
            band = ds.GetRasterBand(b + 1)
            band.WriteArray(data[b])
            band.SetNoDataValue(-9999)
            band.SetScale(0.5)
            band.SetOffset(1.0 + b)
        ds = None
        paths[layout] = p
    pix, band = gdal.Open(paths["PIXEL"]), gdal.Open(paths["BAND"])
    assert pix.GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") == "PIXEL"
    from subsidence_toolkit.core.io.rasters import _read_pixel_interleaved

    buf = np.empty((5, 40, 30))
    assert _read_pixel_interleaved(pix, 0, 0, 30, 40, [1, 2, 3, 4, 5], buf)  # the one-call path is taken
    np.testing.assert_array_equal(buf, data)
    assert not _read_pixel_interleaved(band, 0, 0, 30, 40, [1, 2, 3, 4, 5], buf)
    with gdal_cache(1):
        for bands, window in ((None, (0, 0, 30, 40)), ([4, 2], (5, 2, 17, 21))):
            got = read_window(pix, *window, bands=bands, dtype=dtype)
            exp = read_window(band, *window, bands=bands, dtype=dtype)
            assert got.dtype == exp.dtype == dtype
            np.testing.assert_array_equal(got, exp)
    assert np.isnan(read_window(pix, 0, 0, 30, 40)[1, 3:7, 4:9]).all()
    np.testing.assert_array_equal(read_window(pix, 0, 0, 30, 40)[0], data[0] * 0.5 + 1.0)


@pytest.mark.parametrize(
    "gdal_type,scale,expected",
    [
        (gdal.GDT_Float32, None, np.float32),
        (gdal.GDT_Int16, None, np.float32),
        (gdal.GDT_Byte, None, np.float32),
        (gdal.GDT_Int16, 0.001, np.float64),  # scaled: float32 arithmetic would round differently
        (gdal.GDT_Float64, None, np.float64),
        (gdal.GDT_Int32, None, np.float64),  # beyond float32's 24-bit mantissa
    ],
)
def test_exact_read_dtype_is_float32_only_where_no_value_changes(tmp_path, gdal_type, scale, expected):
    """Windows are held as float32 only where every value of the file reads the same as in float64; the values
    read both ways are then equal."""
    from subsidence_toolkit.core.io.rasters import exact_read_dtype, read_window

    path = str(tmp_path / "r.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 6, 5, 2, gdal_type)
    rng = np.random.default_rng(0)
    for b in (1, 2):
        band = ds.GetRasterBand(b)
        band.WriteArray((rng.random((5, 6)) * 200 - (0 if gdal_type == gdal.GDT_Byte else 100)).round(3))
        band.SetNoDataValue(7)
        if scale:
            band.SetScale(scale)
    ds = None
    ds = gdal.Open(path)
    assert exact_read_dtype(ds) is expected
    a32 = read_window(ds, 1, 1, 4, 3, dtype=exact_read_dtype(ds))
    a64 = read_window(ds, 1, 1, 4, 3)
    assert np.array_equal(a32.astype(np.float64), a64, equal_nan=True)


def test_open_raster_gives_gdal_the_side_cars_without_listing_the_folder_each_time(tmp_path, monkeypatch):
    """open_raster hands GDAL the names beside the file that start with its stem (one listing of the folder, kept
    while the folder is unchanged): a world file still georeferences a plain TIFF, a side-car made later is seen,
    other files of the folder are left out, and a non-file source (a NetCDF variable) opens as before."""
    from subsidence_toolkit.core.io import rasters

    drv = gdal.GetDriverByName("GTiff")
    for name in ("a.tif", "ab.tif", "b.tif"):
        ds = drv.Create(str(tmp_path / name), 4, 3, 1, gdal.GDT_Float32)
        ds = None
    (tmp_path / "a.tfw").write_text("10\n0\n0\n-10\n500005\n4999995\n")
    (tmp_path / "c.tif").write_bytes(b"")  # named only
    (tmp_path / "c_rpc.txt").write_text("")
    old = time.time() - 10
    os.utime(tmp_path, (old, old))  # a folder last changed 10 s ago: its listing is kept
    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: listed.append(p) or real_listdir(p))
    sib = rasters.sibling_files(tmp_path / "a.tif")
    assert sorted(sib) == ["a.tfw", "a.tif"]  # not ab.tif, b.tif, c_rpc.txt
    assert sorted(rasters.sibling_files(tmp_path / "c.tif")) == ["c.tif", "c_rpc.txt"]
    ds = rasters.open_raster(tmp_path / "a.tif")
    assert ds.GetGeoTransform() == (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)  # from the world file
    ds = None
    for _ in range(5):
        rasters.open_raster(tmp_path / "b.tif")
    assert listed == [str(tmp_path)]  # listed once for all these opens
    assert rasters.open_raster(tmp_path / "b.tif").GetGeoTransform() == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    time.sleep(0.01)
    (tmp_path / "b.tfw").write_text("2\n0\n0\n-2\n101\n199\n")  # the folder changed: listed again
    assert rasters.open_raster(tmp_path / "b.tif").GetGeoTransform() == (100.0, 2.0, 0.0, 200.0, 0.0, -2.0)
    assert len(listed) == 2
    rasters.open_raster(tmp_path / "b.tif")
    assert len(listed) == 3  # changed less than 2 s ago: listed at every open (a side-car made in the same tick)
    assert rasters.sibling_files("NETCDF:%s:x" % (tmp_path / "a.nc")) is None
    assert rasters.diagnose_raster(str(tmp_path / "a.tif")) is None
