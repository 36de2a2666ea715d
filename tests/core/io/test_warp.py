"""Target grids and window reads on a target grid (direct and through exact warped VRTs)."""

import numpy as np
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.io.rasters import grid_from_origin
from subsidence_toolkit.core.io.warp import GridReader, target_grid


def test_union_grid_snaps_to_the_finest_lattice_and_reads_directly(tmp_path):
    a = write_stack(tmp_path / "a.tif", np.arange(20.0).reshape(4, 5), origin=(500000.0, 4000000.0))
    b = write_stack(tmp_path / "b.tif", np.ones((3, 3)), origin=(500090.0, 3999940.0))
    g = target_grid([a, b])
    assert (g.xsize, g.ysize) == (6, 5) and g.geotransform[0] == 500000.0 and g.geotransform[3] == 4000000.0
    rb = GridReader(b, g)
    assert rb.aligned and rb.bbox == (2, 5, 3, 6)
    w = rb.read(1, 3, 2, 4)[0]
    assert np.isnan(w[0]).all() and np.array_equal(w[1:, 1:], np.ones((2, 3)))
    gi = target_grid([a, b], mode="intersection")
    assert (gi.xsize, gi.ysize) == (2, 2)


def test_warped_window_reads_equal_the_whole_read(tmp_path):
    rng = np.random.default_rng(0)
    src = write_stack(
        tmp_path / "s.tif",
        rng.normal(0, 10, (3, 37, 41)),
        pixel=20.0,
        origin=(500013.0, 4000007.0),
        dtype=gdal.GDT_Float64,
    )
    grid = grid_from_origin(500000.0, 4000000.0, 30.0, 30.0, 30, 27, epsg=32649)
    r = GridReader(src, grid, bands=[1, 3])
    assert not r.aligned
    whole = r.read(0, grid.ysize, 0, grid.xsize)
    assert np.isfinite(whole).sum() > 500
    parts = np.full_like(whole, np.nan)
    for r0 in range(0, grid.ysize, 4):
        for c0 in range(0, grid.xsize, 7):
            nr, nc = min(4, grid.ysize - r0), min(7, grid.xsize - c0)
            parts[:, r0 : r0 + nr, c0 : c0 + nc] = r.read(r0, nr, c0, nc)
    assert np.array_equal(whole, parts, equal_nan=True)


def test_reader_layouts_place_the_file_blocks_on_the_target_grid(tmp_path):
    """A directly read raster's blocks sit at its offset on the target grid (a window holds the blocks its edges
    cut, counted in the raster's own block lattice, only where it overlaps the raster); a warped raster is read
    through the VRT's 256 x 256 blocks of the bands read, with a decoded source tile as fixed buffer."""
    a = np.zeros((4, 40, 48), np.float32)
    tiled = str(tmp_path / "t.tif")
    gdal.Translate(
        tiled,
        write_stack(tmp_path / "a.tif", a, origin=(500000.0 + 30 * 5, 4000000.0 - 30 * 3)),
        creationOptions=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "INTERLEAVE=BAND"],
    )
    grid = grid_from_origin(500000.0, 4000000.0, 30.0, 30.0, 60, 50, epsg=32649)
    r = GridReader(tiled, grid, bands=[2, 3])
    assert r.aligned and (r.row_off, r.col_off) == (3, 5)
    lay = r.layout()
    assert (lay.row_off, lay.col_off, lay.cell, lay.whole_window) == (3, 5, 8, False)  # band-interleaved: 2 bands
    # target rows 3..19 = raster rows 0..16 (one block row); target columns 5..21 = raster columns 0..16
    assert lay.held((3, 16, 5, 16)) == 0
    # target rows 0..10 -> raster rows 0..7 (block rows 0..16: 9 more); columns 5..21 -> 0..16 (no more)
    assert lay.held((0, 10, 5, 16)) == 8 * (16 * 16 - 7 * 16)
    assert lay.held((45, 5, 0, 60)) == 0  # below the raster
    pixel = str(tmp_path / "p.tif")
    gdal.Translate(pixel, tiled, creationOptions=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "INTERLEAVE=PIXEL"])
    assert GridReader(pixel, grid, bands=[2, 3]).layout().cell == 16  # a tile decodes all 4 bands
    warped = GridReader(write_stack(tmp_path / "w.tif", a, pixel=20.0, origin=(500013.0, 4000007.0)), grid)
    wl = warped.layout()
    assert not warped.aligned and (wl.bx, wl.by, wl.cell, wl.ysize, wl.xsize) == (256, 256, 16, 50, 60)
    assert wl.buffer > 0 and wl.held((0, 50, 0, 60)) == 0
