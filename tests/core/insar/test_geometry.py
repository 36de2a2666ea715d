"""LOS geometry: unit vectors, LOS -> vertical and the ascending + descending decomposition (analytic truth)."""

import datetime as dt

import numpy as np
import pytest
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.insar import geometry
from subsidence_toolkit.core.io.errors import TimeSeriesError

DATES = [dt.date(2020, 1, 15), dt.date(2020, 2, 15), dt.date(2020, 3, 15)]


def _read(path):
    ds = gdal.Open(str(path))
    return np.stack([ds.GetRasterBand(i + 1).ReadAsArray().astype(np.float64) for i in range(ds.RasterCount)])


def _truth(ny=9, nx=11, nd=3, seed=3):
    rng = np.random.default_rng(seed)
    up = rng.uniform(-120, 20, (nd, ny, nx))
    east = rng.uniform(-30, 30, (nd, ny, nx))
    inc_a = np.linspace(31, 45, nx)[None].repeat(ny, 0)
    inc_d = np.linspace(44, 30, nx)[None].repeat(ny, 0)
    ea, na, ua = geometry.unit_vector(-10.0, inc_a)
    ed, nd_, ud = geometry.unit_vector(190.0, inc_d)
    return up, east, (ea, na, ua), (ed, nd_, ud)


def test_unit_vector_conventions():
    e, n, u = geometry.unit_vector(-10.0, 39.0)  # Sentinel-1 ascending: satellite to the west, a little south
    assert e < -0.6 and -0.12 < n < -0.1 and u == pytest.approx(np.cos(np.deg2rad(39.0)), abs=1e-15)
    assert e * e + n * n + u * u == pytest.approx(1.0, abs=1e-15)
    e, n, u = geometry.unit_vector(190.0, 39.0)  # descending: satellite to the east
    assert e > 0.6 and n < 0


def test_decompose_noise_free_float64():
    up, east, (ea, na, ua), (ed, nd_, ud) = _truth()
    d = np.stack([geometry.los_from_enu(east, 0.0, up, ea, na, ua), geometry.los_from_enu(east, 0.0, up, ed, nd_, ud)])
    v, e, sv, se, cond, n = geometry.decompose_block(d, np.stack([ea, ed])[:, None], np.stack([ua, ud])[:, None])
    assert np.abs(v - up).max() < 1e-6 and np.abs(e - east).max() < 1e-6
    assert (n == 2).all() and np.isfinite(cond).all() and (cond >= 1).all()
    # two observations, two unknowns: sigma from the inverse of G (unit input sigma)
    g = np.array([[ua[0, 0], ea[0, 0]], [ud[0, 0], ed[0, 0]]])
    cov = np.linalg.inv(g.T @ g)
    assert sv[0, 0, 0] == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-12)
    assert se[0, 0, 0] == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-12)
    assert cond[0, 0, 0] == pytest.approx(np.linalg.cond(g), rel=1e-9)


def test_decompose_three_tracks_weighted_and_missing():
    rng = np.random.default_rng(0)
    up, east = rng.uniform(-50, 5, 20), rng.uniform(-10, 10, 20)
    geo = [geometry.unit_vector(h, i) for h, i in ((-10, 33), (190, 41), (-12, 44))]
    e = np.array([g[0] for g in geo])[:, None]
    u = np.array([g[2] for g in geo])[:, None]
    d = e * east + u * up
    d[1, :5] = np.nan  # descending missing: ascending pair only (two ascending tracks with different incidence)
    d[2, 5:10] = np.nan
    d[0, 10:12] = d[2, 10:12] = np.nan  # one track left: no solution
    sig = np.array([1.0, 2.0, 4.0])
    v, ee, sv, se, cond, n = geometry.decompose_block(d, e, u, sig)
    ok = n >= 2
    assert np.abs(v[ok] - up[ok]).max() < 1e-6 and np.abs(ee[ok] - east[ok]).max() < 1e-6
    assert np.isnan(v[10:12]).all() and (n[10:12] == 1).all()
    # propagated sigma equals (G^T W G)^-1 for the full set
    g = np.column_stack([u[:, 0], e[:, 0]])
    cov = np.linalg.inv(g.T @ np.diag(1 / sig**2) @ g)
    assert sv[15] == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-12)
    assert se[15] == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-12)


def test_decompose_rasters_float32_time_series(tmp_path):
    up, east, (ea, na, ua), (ed, nd_, ud) = _truth()
    paths = {}
    for name, (e, n, u) in (("asc", (ea, na, ua)), ("dsc", (ed, nd_, ud))):
        paths[name] = write_stack(tmp_path / (name + ".tif"), geometry.los_from_enu(east, 0.0, up, e, n, u), DATES)
        for comp, arr in zip("ENU", (e, n, u)):
            paths[name + comp] = write_stack(tmp_path / ("%s.geo.%s.tif" % (name, comp)), arr)
    out = {k: str(tmp_path / (k + ".tif")) for k in ("vert", "east", "qual")}
    summ = geometry.decompose_rasters(
        [paths["asc"], paths["dsc"]],
        up_paths=[paths["ascU"], paths["dscU"]],
        east_paths=[paths["ascE"], paths["dscE"]],
        north_paths=[paths["ascN"], paths["dscN"]],
        out_vertical=out["vert"],
        out_east=out["east"],
        out_quality=out["qual"],
        memory_mb=0.005,
    )
    assert summ["dates"] == DATES
    v, e, q = _read(out["vert"]), _read(out["east"]), _read(out["qual"])
    # reference: the float64 solution of the float32 values that were stored
    d32 = np.stack([_read(paths["asc"]), _read(paths["dsc"])])
    e32 = np.stack([_read(paths["ascE"])[0], _read(paths["dscE"])[0]])[:, None]
    u32 = np.stack([_read(paths["ascU"])[0], _read(paths["dscU"])[0]])[:, None]
    rv, re_, *_ = geometry.decompose_block(d32, e32, u32)
    assert np.array_equal(v, rv.astype(np.float32).astype(np.float64))
    assert np.array_equal(e, re_.astype(np.float32).astype(np.float64))
    # and the truth to float32 rounding (inputs and outputs rounded, amplified by the condition number)
    tol = 4 * np.finfo(np.float32).eps * 150 * np.nanmax(q[2])
    assert np.abs(v - up).max() < tol and np.abs(e - east).max() < tol
    assert (q[3] == 2).all()
    ds = gdal.Open(out["vert"])
    assert ds.GetRasterBand(2).GetDescription() == "2020-02-15"
    assert ds.GetMetadata()["COMPONENT"] == "vertical"


def test_decompose_rasters_float32_and_float64_inputs_and_windows_give_the_same_values(tmp_path):
    """Inputs held as read (float32 where no value changes) and solved date by date give, bit for bit, what
    float64 copies of the same values give, in tiny windows and in one window; missing dates and pixels
    included."""
    up, east, *_ = _truth(ny=21, nx=37, nd=3)
    ga, gd = geometry.unit_vector(-10, 35), geometry.unit_vector(190, 40)
    a_vals = geometry.los_from_enu(east, 0, up, *ga)
    a_vals[1, 3:6, 4:9] = np.nan
    d_vals = geometry.los_from_enu(east, 0, up, *gd)
    d_vals[:, 10, :] = np.nan
    outs = []
    for dtype, mem in ((gdal.GDT_Float32, 0.005), (gdal.GDT_Float32, 512), (gdal.GDT_Float64, 512)):
        tag = "%d_%g" % (dtype, mem)
        a = write_stack(tmp_path / ("a%s.tif" % tag), a_vals.astype(np.float32), DATES, dtype=dtype)
        b = write_stack(tmp_path / ("b%s.tif" % tag), d_vals.astype(np.float32), DATES, dtype=dtype)
        out = {k: str(tmp_path / ("%s%s.tif" % (k, tag))) for k in ("v", "e", "q")}
        geometry.decompose_rasters(
            [a, b],
            headings=[-10, 190],
            incidences=[35, 40],
            out_vertical=out["v"],
            out_east=out["e"],
            out_quality=out["q"],
            memory_mb=mem,
        )
        outs.append([_read(out[k]) for k in ("v", "e", "q")])
    for other in outs[1:]:
        for x, y in zip(outs[0], other):
            assert np.array_equal(x, y, equal_nan=True)
    assert np.isnan(outs[0][0][1, 3:6, 4:9]).all() and np.isfinite(outs[0][0][0, 3:6, 4:9]).all()


def test_decompose_headings_and_date_intersection(tmp_path):
    up, east, *_ = _truth(nd=3)
    ga, gd = geometry.unit_vector(-10, 35), geometry.unit_vector(190, 40)
    a = write_stack(tmp_path / "a.tif", geometry.los_from_enu(east, 0, up, *ga), DATES)
    extra = DATES[1:] + [dt.date(2020, 4, 15)]
    dsc_vals = np.concatenate([geometry.los_from_enu(east, 0, up, *gd)[1:], np.zeros((1,) + up.shape[1:])])
    b = write_stack(tmp_path / "b.tif", dsc_vals, extra)
    logs = []
    geometry.decompose_rasters(
        [a, b], headings=[-10, 190], incidences=[35, 40], out_vertical=str(tmp_path / "v.tif"), log=logs.append
    )
    v = _read(tmp_path / "v.tif")
    assert v.shape[0] == 2 and np.abs(v - up[1:]).max() < 1e-4
    assert any("left out" in s for s in logs)


def test_project_raster_with_u_raster_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    los = rng.uniform(-80, 10, (3, 6, 7))
    los[1, 2, 3] = np.nan
    u = np.cos(np.deg2rad(rng.uniform(30, 45, (6, 7))))
    src = write_stack(tmp_path / "los.tif", los, DATES)
    up = write_stack(tmp_path / "frame.geo.U.tif", u)
    out = str(tmp_path / "vert.tif")
    s = geometry.project_raster(src, out, dict(path=up, kind="up"), memory_mb=0.001)
    got = _read(out)
    expect = (_read(src) / _read(up)[0]).astype(np.float32)
    assert np.array_equal(got, expect, equal_nan=True)
    ds = gdal.Open(out)
    assert ds.GetMetadata()["COMPONENT"] == geometry.VERTICAL_NOTE
    assert ds.GetRasterBand(3).GetDescription() == "2020-03-15" and np.isnan(ds.GetRasterBand(1).GetNoDataValue())
    assert s["pixels_without_geometry"] == 0
    # constant angle and an incidence raster give d / cos(theta)
    out2 = str(tmp_path / "vert2.tif")
    geometry.project_raster(src, out2, dict(angle=39.0))
    assert np.allclose(_read(out2), _read(src) / np.cos(np.deg2rad(39.0)), rtol=2e-7, equal_nan=True)


def test_project_raster_windows_held_as_read_give_the_float64_quotient(tmp_path):
    """Int16 (with NoData), float32 and float64 inputs, in tiny windows and in one: every value is the float64
    quotient of the value read and cos(theta), rounded once to float32 (the window is held as read, the division
    is not)."""
    rng = np.random.default_rng(5)
    los = rng.uniform(-800, 100, (3, 23, 29))
    # a float64 U raster: cos(theta) not a float32 number (a float32 division would round differently)
    up = write_stack(tmp_path / "U.tif", np.cos(np.deg2rad(rng.uniform(30, 45, (23, 29)))), dtype=gdal.GDT_Float64)
    cos_theta = _read(up)[0]
    for dtype, nodata, as_read in (
        (gdal.GDT_Int16, -32768, lambda a: np.rint(a)),
        (gdal.GDT_Float32, None, lambda a: a.astype(np.float32).astype(np.float64)),
        (gdal.GDT_Float64, None, lambda a: a),
    ):
        vals = as_read(los)
        vals[1, 4, 5] = np.nan
        src = write_stack(
            tmp_path / ("los%d.tif" % dtype),
            np.nan_to_num(vals, nan=nodata or np.nan),
            DATES,
            dtype=dtype,
            nodata=nodata,
        )
        expect = (vals / cos_theta).astype(np.float32)
        assert np.isnan(expect[1, 4, 5]) and np.isfinite(np.delete(expect.ravel(), 29 * 23 + 4 * 29 + 5)).all()
        for mem in (0.002, 512):
            out = str(tmp_path / ("v%d_%g.tif" % (dtype, mem)))
            geometry.project_raster(src, out, dict(path=up, kind="up"), memory_mb=mem)
            assert np.array_equal(_read(out), expect, equal_nan=True), (dtype, mem)


def test_project_raster_geometry_on_another_grid(tmp_path):
    los = np.full((1, 8, 8), -50.0)
    src = write_stack(tmp_path / "vel.tif", los, pixel=30.0, descriptions=["velocity"])
    inc = write_stack(tmp_path / "inc.tif", np.full((3, 3), 60.0), pixel=90.0)  # coarser, same area
    out = str(tmp_path / "v.tif")
    geometry.project_raster(src, out, dict(path=inc, kind="incidence"))
    assert np.allclose(_read(out), -100.0, atol=1e-4)
    assert gdal.Open(out).GetRasterBand(1).GetDescription() == "velocity"


def test_geometry_errors_name_the_file(tmp_path):
    src = write_stack(tmp_path / "los.tif", np.ones((3, 5, 5)), DATES)
    bad_u = write_stack(tmp_path / "bad.U.tif", np.full((5, 5), 1.5))
    with pytest.raises(TimeSeriesError, match=r"bad\.U\.tif.*\(0, 1\]"):
        geometry.project_raster(src, str(tmp_path / "o.tif"), dict(path=bad_u, kind="up"))
    small = write_stack(tmp_path / "small.U.tif", np.full((2, 2), 0.8))
    with pytest.raises(TimeSeriesError, match=r"small\.U\.tif.*does not cover"):
        geometry.project_raster(src, str(tmp_path / "o.tif"), dict(path=small, kind="up"))
    with pytest.raises(TimeSeriesError, match=r"\[0, 90\)"):
        geometry.project_raster(src, str(tmp_path / "o.tif"), dict(angle=95.0))
    assert not (tmp_path / "o.tif").exists()
    other = write_stack(tmp_path / "other.tif", np.ones((2, 5, 5)), [dt.date(2021, 1, 1), dt.date(2021, 2, 1)])
    with pytest.raises(TimeSeriesError, match="no common date"):
        geometry.decompose_rasters(
            [src, other], headings=[-10, 190], incidences=[35, 40], out_vertical=str(tmp_path / "v.tif")
        )
    with pytest.raises(TimeSeriesError, match="does not cover"):
        geometry.decompose_rasters(
            [src, src], up_paths=[small, small], east_paths=[small, small], out_vertical=str(tmp_path / "v.tif")
        )
    assert not (tmp_path / "v.tif").exists()


def test_cancel_leaves_nothing(tmp_path):
    from subsidence_toolkit.core.io.errors import Cancelled

    src = write_stack(tmp_path / "los.tif", np.ones((3, 5, 5)), DATES)
    with pytest.raises(Cancelled):
        geometry.project_raster(src, str(tmp_path / "v.tif"), dict(angle=39.0), is_canceled=lambda: True)
    with pytest.raises(Cancelled):
        geometry.decompose_rasters(
            [src, src],
            headings=[-10, 190],
            incidences=[35, 40],
            out_vertical=str(tmp_path / "v.tif"),
            out_east=str(tmp_path / "e.tif"),
            out_quality=str(tmp_path / "q.tif"),
            is_canceled=lambda: True,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["los.tif"]


def test_warnings_for_alike_geometries_and_radians(tmp_path):
    src = write_stack(tmp_path / "los.tif", np.ones((4, 4)))
    logs = []
    s = geometry.decompose_rasters(
        [src, src], headings=[-10, -10], incidences=[35, 35], out_vertical=str(tmp_path / "v.tif"), log=logs.append
    )
    assert s["solved"] == 0 and s["degenerate"] == 16 and any("too alike" in m for m in logs)
    rad = write_stack(tmp_path / "inc_rad.tif", np.full((4, 4), 0.68))
    logs = []
    geometry.project_raster(src, str(tmp_path / "p.tif"), dict(path=rad, kind="incidence"), log=logs.append)
    assert any("radians" in m for m in logs)


def test_decompose_tracks_on_different_grids(tmp_path):
    # linear fields: bilinear resampling is exact, so the decomposition on the common grid is too
    ga, gd = geometry.unit_vector(-10, 34.0), geometry.unit_vector(190, 41.0)

    def fields(x0, y0, px, ny, nx):
        x = x0 + (np.arange(nx) + 0.5) * px
        y = y0 - (np.arange(ny) + 0.5) * px
        xx, yy = np.meshgrid(x - 500000.0, y - 4000000.0)
        return -40.0 + 0.01 * xx - 0.02 * yy, 5.0 + 0.005 * yy

    ua, ea = fields(500000.0, 4000000.0, 30.0, 40, 40)
    a = write_stack(tmp_path / "asc.tif", ga[0] * ea + ga[2] * ua, pixel=30.0)
    ud, ed = fields(500200.0, 3999800.0, 20.0, 50, 50)
    d = write_stack(tmp_path / "dsc.tif", gd[0] * ed + gd[2] * ud, pixel=20.0, origin=(500200.0, 3999800.0))
    s = geometry.decompose_rasters(
        [a, d],
        headings=[-10, 190],
        incidences=[34, 41],
        out_vertical=str(tmp_path / "v.tif"),
        out_east=str(tmp_path / "e.tif"),
    )
    g = s["grid"]
    assert g.geotransform[1] == 20.0 and g.geotransform[0] == 500200.0
    uv, ev = fields(g.geotransform[0], g.geotransform[3], 20.0, g.ysize, g.xsize)
    v, e = _read(tmp_path / "v.tif")[0], _read(tmp_path / "e.tif")[0]
    inner = (slice(1, -1), slice(1, -1))  # bilinear at the footprint's edge uses fewer neighbours
    assert np.isfinite(v[inner]).all()
    assert np.abs(v[inner] - uv[inner]).max() < 1e-4 and np.abs(e[inner] - ev[inner]).max() < 1e-4
