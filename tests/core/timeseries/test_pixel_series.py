import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from osgeo import gdal, osr
from synthetic import sentinel1_dates, write_stack

from subsidence_toolkit.core.timeseries import pixel_series as ps

ORIGIN = (500000.0, 4000000.0)
PIX = 30.0


def centre(col, row):
    return ORIGIN[0] + (col + 0.5) * PIX, ORIGIN[1] - (row + 0.5) * PIX


@pytest.fixture
def stack(tmp_path):
    dates = sentinel1_dates(n=6)
    nb, ny, nx = len(dates), 5, 7
    # value = 1000*band + 10*row + col: every pixel/band is distinguishable
    b, r, c = np.meshgrid(np.arange(nb), np.arange(ny), np.arange(nx), indexing="ij")
    values = (1000.0 * b + 10.0 * r + c).astype(np.float32)
    values[2, 1, 3] = -9999.0  # NoData in one band of one pixel
    path = write_stack(tmp_path / "defo_ts.tif", values, dates=dates, nodata=-9999.0)
    return path, dates, values


def test_inspect_recognises_dated_stacks_only(stack, tmp_path):
    path, dates, _ = stack
    src = ps.inspect_raster(path)
    assert src.dates == dates and src.name == "defo_ts" and src.kind == ps.DEFORMATION and src.axis == "left"
    single = write_stack(tmp_path / "velocity.tif", np.arange(12.0).reshape(3, 4))
    assert ps.inspect_raster(single) is None
    undated = write_stack(
        tmp_path / "undated.tif", np.zeros((3, 2, 2)) + np.arange(3)[:, None, None], descriptions=["a", "b", "c"]
    )
    assert ps.inspect_raster(undated) is None
    assert ps.inspect_raster(tmp_path / "missing.tif") is None


def test_kind_rule_metadata_first_then_names(tmp_path):
    assert ps.series_kind("GWSA monthly") == ps.STORAGE
    assert ps.series_kind("x", path="/d/grace_twsa.tif") == ps.STORAGE
    assert ps.series_kind("sbas_timeseries") == ps.DEFORMATION
    assert ps.series_kind("gwsa", {"KIND": "deformation"}) == ps.DEFORMATION
    assert ps.series_kind("defo", {"KIND": "GWSA"}) == ps.STORAGE
    assert ps.axis_for(ps.STORAGE) == "right" and ps.axis_for(ps.DEFORMATION) == "left"
    dates = sentinel1_dates(n=3)
    p = write_stack(tmp_path / "a.tif", np.ones((3, 2, 2)) * np.arange(3)[:, None, None], dates=dates)
    ds = gdal.Open(p, gdal.GA_Update)
    ds.SetMetadata({"KIND": "gwsa", "UNITS": "cm"})
    ds = None
    src = ps.inspect_raster(p)
    assert src.kind == ps.STORAGE and src.units == "cm"


def test_pixel_lookup_reads_the_known_column(stack):
    path, dates, values = stack
    for col, row in [(0, 0), (3, 1), (6, 4), (2, 3)]:
        x, y = centre(col, row)
        got = ps.read_pixel_series(path, x, y)
        exp = values[:, row, col].astype(float)
        exp[exp == -9999.0] = np.nan
        np.testing.assert_array_equal(got, exp)
    # the NoData band of pixel (3, 1) is NaN
    assert np.isnan(ps.read_pixel_series(path, *centre(3, 1))[2])
    # pixel edges: the top-left corner belongs to pixel (0, 0); just inside the right edge to col 6
    assert ps.pixel_index(gdal.Open(path).GetGeoTransform(), ORIGIN[0], ORIGIN[1]) == (0, 0)
    np.testing.assert_array_equal(ps.read_pixel_series(path, ORIGIN[0] + 7 * PIX - 0.01, ORIGIN[1] - 1)[:1], [6.0])
    assert ps.read_pixel_series(path, ORIGIN[0] - 1, ORIGIN[1] - 1) is None
    assert ps.read_pixel_series(path, ORIGIN[0] + 1, ORIGIN[1] - 5 * PIX - 0.1) is None


def test_transform_point_then_lookup(stack):
    path, _, values = stack
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32649)
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    x, y = centre(4, 2)
    lon, lat, _ = osr.CoordinateTransformation(utm, wgs).TransformPoint(x, y)
    assert 110 < lon < 112 and 35 < lat < 37
    tx, ty = ps.transform_point(lon, lat, wgs.ExportToWkt(), gdal.Open(path).GetProjection())
    assert abs(tx - x) < 1e-3 and abs(ty - y) < 1e-3
    np.testing.assert_array_equal(ps.read_pixel_series(path, tx, ty), values[:, 2, 4])


def _centres_inside(poly_xy, ny=5, nx=7):
    path = MplPath(poly_xy)
    rows, cols = np.mgrid[0:ny, 0:nx]
    xs = ORIGIN[0] + (cols + 0.5) * PIX
    ys = ORIGIN[1] - (rows + 0.5) * PIX
    return path.contains_points(np.c_[xs.ravel(), ys.ravel()]).reshape(ny, nx)


def _wkt(poly_xy):
    return "POLYGON((%s))" % ",".join("%r %r" % p for p in list(poly_xy) + [poly_xy[0]])


@pytest.mark.parametrize(
    "poly",
    [
        # rectangle around the centres of cols 1..3, rows 0..2 (contains pixel (3,1) with one NoData band)
        [
            (ORIGIN[0] + 40, ORIGIN[1] - 5),
            (ORIGIN[0] + 115, ORIGIN[1] - 5),
            (ORIGIN[0] + 115, ORIGIN[1] - 80),
            (ORIGIN[0] + 40, ORIGIN[1] - 80),
        ],
        # triangle
        [(ORIGIN[0] + 10, ORIGIN[1] - 10), (ORIGIN[0] + 200, ORIGIN[1] - 20), (ORIGIN[0] + 60, ORIGIN[1] - 140)],
    ],
)
def test_polygon_mean_over_pixel_centres(stack, poly):
    path, _, values = stack
    inside = _centres_inside(poly)
    assert inside.sum() >= 3
    vals = values.astype(float)
    vals[vals == -9999.0] = np.nan
    expected = np.nanmean(vals[:, inside], axis=1)
    got, n = ps.polygon_mean_series(path, _wkt(poly))
    assert n == inside.sum()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # same result when the window is read one row at a time
    got_small, _ = ps.polygon_mean_series(path, _wkt(poly), memory_mb=1e-6)
    np.testing.assert_allclose(got_small, expected, rtol=1e-12)


def test_polygon_smaller_than_a_pixel_and_outside(stack):
    path, _, values = stack
    x, y = centre(5, 3)
    tiny = [(x + 2, y + 2), (x + 6, y + 2), (x + 6, y + 6)]  # no pixel centre inside
    got, n = ps.polygon_mean_series(path, _wkt(tiny))
    assert n == 1
    np.testing.assert_array_equal(got, values[:, 3, 5])
    far = [(0, 0), (10, 0), (10, 10)]
    assert ps.polygon_mean_series(path, _wkt(far)) is None


def test_csv_has_union_of_dates_and_empty_cells(tmp_path):
    d = [dt.date(2020, 1, 1), dt.date(2020, 2, 1), dt.date(2020, 3, 1)]
    a = ps.Series(
        "defo @ P1", ps.SeriesSource("a.tif", "defo", d, "mm", ps.DEFORMATION), d, [1.5, np.nan, -3.25], location="1, 2"
    )
    b = ps.Series(
        "gwsa @ 1, 2",
        ps.SeriesSource("b.tif", "gwsa", d[1:], "mm", ps.STORAGE),
        [d[1], dt.date(2020, 4, 1)],
        [10.0, 1e-7],
    )
    out = ps.write_series_csv(tmp_path / "s.csv", [a, b])
    rows = list(csv.reader(Path(out).read_text().splitlines()))
    assert rows == [
        ["date", "defo @ P1 (1, 2) [mm]", "gwsa @ 1, 2 [mm]"],
        ["2020-01-01", "1.5", ""],
        ["2020-02-01", "", "10"],
        ["2020-03-01", "-3.25", ""],
        ["2020-04-01", "", "1e-07"],
    ]


def test_unique_label():
    assert ps.unique_label("a", set()) == "a"
    assert ps.unique_label("a", {"a"}) == "a (2)"
    assert ps.unique_label("a", {"a", "a (2)"}) == "a (3)"


def test_robust_limits():
    v = np.arange(0, 101, dtype=float)  # p2 = 2, p98 = 98
    assert ps.robust_limits(v) == (2.0, 98.0)
    assert ps.robust_limits(v - 30, symmetric=True) == (-68.0, 68.0)
    w = np.concatenate([np.linspace(-5, 20, 1000), [1e6, -1e6, np.nan, np.inf]])
    lo, hi = ps.robust_limits(w, symmetric=True)
    assert lo == -hi and 19 < hi < 20  # outliers and non-finite values ignored
    assert ps.robust_limits([np.nan]) is None
    assert ps.robust_limits([0.0, 0.0], symmetric=True) == (-1.0, 1.0)
    lo, hi = ps.robust_limits([5.0, 5.0])
    assert lo < 5 < hi


def test_sample_band_decimates_and_masks(tmp_path):
    a = np.arange(400 * 300, dtype=np.float32).reshape(300, 400)
    a[:40, :40] = -1  # a NoData corner larger than the decimation step
    p = write_stack(tmp_path / "big.tif", a, nodata=-1)
    s = ps.sample_band(gdal.Open(p), 1, max_pixels=1200)
    assert s.size <= 1200 and s.size >= 1000
    assert np.isnan(s[0, 0])
    full = ps.sample_band(gdal.Open(p), 1)
    assert full.shape == (300, 400)


def test_band_time_ranges():
    d = [dt.date(2020, 1, 1), dt.date(2020, 1, 13), dt.date(2020, 2, 6)]
    r = ps.band_time_ranges(d)
    assert r[0] == (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 13))
    assert r[1] == (dt.datetime(2020, 1, 13), dt.datetime(2020, 2, 6))
    assert r[2] == (dt.datetime(2020, 2, 6), dt.datetime(2020, 3, 1))
    assert ps.band_time_ranges(d[:1]) == [(dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 2))]
