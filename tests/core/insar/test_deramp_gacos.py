"""Ramp removal (core/insar/deramp.py) and GACOS reading / resampling / correction (core/insar/gacos.py)."""

import datetime as dt

import numpy as np
import pytest
from osgeo import gdal, osr

from subsidence_toolkit.core.insar import deramp, gacos
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.rasters import grid_from_origin


def test_planted_ramps_removed_to_noise_and_streaming_equals_whole():
    rng = np.random.default_rng(0)
    M, h, w = 5, 40, 50
    noise = rng.normal(0, 0.1, (M, h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    ramps = np.stack(
        [
            0.03 * xx - 0.05 * yy + 1.0,
            -0.02 * xx + 0.01 * yy,
            1e-3 * xx**2 - 2e-3 * xx * yy + 0.02 * yy - 3,
            np.zeros((h, w)),
            5e-4 * (yy - 20) ** 2,
        ]
    )
    defo = np.zeros((h, w))
    defo[10:20, 10:20] = -6.0  # deforming area, excluded from the fit by the mask
    stack = ramps + noise + defo
    reliable = np.ones((M, h, w), bool)
    reliable[:, 10:20, 10:20] = False
    stack[1, 0, 0] = np.nan
    out, coef = deramp.fit_and_remove(stack, reliable, deramp.DERAMP_QUADRATIC)
    resid = out - defo - noise
    resid -= np.nanmean(resid, axis=(1, 2), keepdims=True)
    assert np.nanmax(np.abs(resid)) < 0.05  # ramps gone to a fraction of the noise (0.1)
    # streamed in windows of 7 x 13: identical normal equations
    nrm = deramp.empty_normals(M, deramp.DERAMP_QUADRATIC)
    rel = reliable & np.isfinite(stack)
    for r0 in range(0, h, 7):
        for c0 in range(0, w, 13):
            sl = np.s_[:, r0 : r0 + 7, c0 : c0 + 13]
            deramp.accumulate(nrm, stack[sl], rel[sl], r0, c0, h, w, deramp.DERAMP_QUADRATIC)
    c2, bad = deramp.solve(nrm)
    assert bad.size == 0 and np.allclose(c2, coef, rtol=1e-9, atol=1e-9)
    win = deramp.evaluate(c2, 5, 7, 9, 11, h, w, deramp.DERAMP_QUADRATIC, np.float64)
    full = deramp.evaluate(c2, 0, h, 0, w, h, w, deramp.DERAMP_QUADRATIC, np.float64)
    assert np.allclose(win, full[:, 5:12, 9:20])
    # linear ramp removes a planar ramp exactly (no noise)
    lin, _ = deramp.fit_and_remove(ramps[:2] - ramps[:2].mean(), None, deramp.DERAMP_LINEAR)
    assert np.nanmax(np.abs(lin - np.nanmean(lin, axis=(1, 2), keepdims=True))) < 1e-9


def test_too_few_pixels_named():
    st = np.full((2, 5, 5), np.nan)
    st[0] = 1.0
    with pytest.raises(TimeSeriesError, match="too few reliable pixels"):
        deramp.fit_and_remove(st, None, deramp.DERAMP_LINEAR)


# ---------------------------------------------------------------------------- GACOS
def ifg_grid():
    # 0.001 deg pixels, 60 x 80 px, top-left corner (110.0, 35.0)
    return grid_from_origin(110.0, 35.0, 0.001, 0.001, 80, 60, epsg=4326)


def ztd_field(lon, lat, date_index):
    return 2.3 + 0.02 * np.sin(40 * lon + date_index) + 0.03 * (lat - 34.95) * (date_index + 1)


def plant_ztd(tmp_path, d, k, tif=False, margin=0.01, step=0.0025):
    x_first, y_first = 110.0 - margin, 35.0 + margin
    nx, ny = int((0.08 + 2 * margin) / step) + 1, int((0.06 + 2 * margin) / step) + 1
    lon = x_first + step * np.arange(nx)
    lat = y_first - step * np.arange(ny)
    z = ztd_field(lon[None, :], lat[:, None], k).astype(np.float32)
    name = tmp_path / ("%s.ztd" % d.strftime("%Y%m%d"))
    if tif:
        ds = gdal.GetDriverByName("GTiff").Create(str(name) + ".tif", nx, ny, 1, gdal.GDT_Float32)
        ds.SetGeoTransform((x_first - step / 2, step, 0, y_first + step / 2, 0, -step))
        s = osr.SpatialReference()
        s.ImportFromEPSG(4326)
        ds.SetProjection(s.ExportToWkt())
        ds.GetRasterBand(1).WriteArray(z)
        ds = None
        return str(name) + ".tif"
    return gacos.write_ztd(name, z, x_first, y_first, step, -step)


@pytest.mark.parametrize("tif", [False, True])
def test_ztd_read_with_pixel_centre_convention_and_resampled(tmp_path, tif):
    g = ifg_grid()
    d = dt.date(2021, 3, 4)
    p = plant_ztd(tmp_path, d, 2, tif=tif)
    src = gacos.GriddedSource(p, zero_is_nodata=True)
    assert src.covers(g)
    v = src.sample(g, 5, 10, 7, 12)
    lon = 110.0 + (np.arange(7, 19) + 0.5) * 0.001
    lat = 35.0 - (np.arange(5, 15) + 0.5) * 0.001
    truth = ztd_field(lon[None, :], lat[:, None], 2)
    # bilinear of a smooth field sampled at 2.5 px: error ~ curvature * step^2 / 8
    assert np.max(np.abs(v - truth)) < 2e-4


def test_gacos_corrections_sign_units_and_errors(tmp_path):
    g = ifg_grid()
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=12 * k) for k in range(3)]
    paths = [plant_ztd(tmp_path, d, k) for k, d in enumerate(dates)]
    gs = gacos.GacosSet(paths, g)
    assert gs.missing(dates) == []
    inc = gacos.Incidence(angle=30.0)
    s = gs.slant_delays(dates, inc, 0, 60, 0, 80)
    wl = 0.05546576
    to_mm = -wl / (4 * np.pi) * 1000  # radians input
    corr = gacos.pair_corrections(s, np.array([0, 1]), np.array([1, 2]), gacos.metres_to_units(to_mm), np.float64)
    # radians: +4 pi / lambda * (s2 - s1)
    assert np.allclose(corr[0], 4 * np.pi / wl * (s[1] - s[0]))
    # as LOS mm (positive toward the satellite): -(s2 - s1) * 1000
    corr_mm = gacos.pair_corrections(s, np.array([0]), np.array([2]), gacos.metres_to_units(1.0), np.float64)
    assert np.allclose(corr_mm[0], -(s[2] - s[0]) * 1000)
    assert np.allclose(s[0] * np.cos(np.deg2rad(30)), gs.by_date[dates[0]].sample(g, 0, 60, 0, 80))
    # missing date, not covering, bad header
    assert gs.missing(dates + [dt.date(2022, 1, 1)]) == [dt.date(2022, 1, 1)]
    small = tmp_path / "small"
    small.mkdir()
    p = plant_ztd(small, dates[0], 0, margin=-0.02)
    with pytest.raises(TimeSeriesError, match="does not cover"):
        gacos.GacosSet([p], g)
    with open(p + ".rsc", "w") as f:
        f.write("WIDTH 10\n")
    with pytest.raises(TimeSeriesError, match=r"lacks FILE_LENGTH.*\.rsc|\.rsc lacks"):
        gacos.GacosSet([p], g)


def test_incidence_raster_angle_and_up(tmp_path):
    g = ifg_grid()
    # incidence angle raster on a coarser grid (resampled), U raster
    for kind, val in ((gacos.INCIDENCE_ANGLE, 35.0), (gacos.INCIDENCE_UP, np.cos(np.deg2rad(35.0)))):
        path = tmp_path / ("inc_%s.tif" % kind)
        ds = gdal.GetDriverByName("GTiff").Create(str(path), 20, 15, 1, gdal.GDT_Float32)
        ds.SetGeoTransform((109.99, 0.005, 0, 35.01, 0, -0.005))
        s = osr.SpatialReference()
        s.ImportFromEPSG(4326)
        ds.SetProjection(s.ExportToWkt())
        a = np.full((15, 20), val, np.float32)
        a[7, 9] = 0.0
        ds.GetRasterBand(1).WriteArray(a)
        ds = None
        inc = gacos.Incidence(str(path), kind)
        c = inc.cos(g, 0, 10, 0, 10)
        assert np.allclose(c, np.cos(np.deg2rad(35.0)), atol=1e-6)
        with pytest.raises(TimeSeriesError, match=str(path)):
            inc.cos(g, 20, 40, 30, 50, data_mask=np.ones((40, 50), bool))


def test_std_change():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 2, 1000)
    c = y * 0.5
    sb, sa = gacos.std_change(y.sum(), (y**2).sum(), (y - c).sum(), ((y - c) ** 2).sum(), y.size)
    assert np.isclose(sb, y.std()) and np.isclose(sa, (y - c).std())
