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
