"""The corrections and loop-closure passes (core/insar/corrections.py) on a planted GeoTIFF stack: GACOS
troposphere and ramps removed to the noise level, a worsening GACOS correction not applied, whole-image
unwrapping errors found by the streamed loop statistics."""

import datetime as dt
import math

import numpy as np
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.insar import corrections, deramp, gacos, loop_closure
from subsidence_toolkit.core.insar.network import SbasNetwork
from subsidence_toolkit.core.insar.stack import StackFiles
from subsidence_toolkit.core.insar.units import UNITS_RADIANS, los_factor_mm
from subsidence_toolkit.core.io.rasters import RasterGrid, open_raster

WL = 0.05546576
NY, NX = 30, 40
X0, Y0, PX = 110.0, 35.0, 0.001


def ztd(date_index, lon, lat):
    return 2.4 + 0.03 * np.sin(25 * (lon - X0) + date_index) + 0.5 * (lat - Y0) * (1 + 0.3 * date_index)


def date_ramp(n, xx, yy):
    return (0.002 * (n + 1) * xx - 0.003 * yy + 0.5 * n) if n % 2 == 0 else 1e-3 * (xx - 20) * (yy - 15) * n


def build(tmp_path, bad_ifgs=(), gacos_missing_in=None, seed=0):
    rng = np.random.default_rng(seed)
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=12 * k) for k in range(8)]
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= 36]
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    yy, xx = np.mgrid[0:NY, 0:NX]
    bowl = ((yy - 15) ** 2 + (xx - 20) ** 2) < 36
    t = net.tyears
    defo = np.where(bowl[None], -3.0 * t[:, None, None], 0.0)  # rad, only inside the bowl
    lon = X0 + (xx + 0.5) * PX
    lat = Y0 - (yy + 0.5) * PX
    step = 0.0025
    xf, yf = X0 - 0.004, Y0 + 0.004
    glon = xf + step * np.arange(int((NX * PX + 0.008) / step) + 2)
    glat = yf - step * np.arange(int((NY * PX + 0.008) / step) + 2)
    cos_inc = math.cos(math.radians(39.0))
    slant = []
    gdir = tmp_path / "gacos"
    gdir.mkdir()
    gpaths = []
    for n, d in enumerate(dates):
        z = ztd(n, glon[None, :], glat[:, None]).astype(np.float32)
        gpaths.append(gacos.write_ztd(gdir / ("%s.ztd" % d.strftime("%Y%m%d")), z, xf, yf, step, -step))
        slant.append(ztd(n, lon, lat) / cos_inc)
    slant = np.array(slant)
    paths, truth, ramps = [], [], []
    for k, (a, b) in enumerate(pairs):
        i, j = dates.index(a), dates.index(b)
        clean = defo[j] - defo[i]
        ramp = date_ramp(j, xx, yy) - date_ramp(i, xx, yy)  # orbital ramps are per date
        tropo = 4 * math.pi / WL * (slant[j] - slant[i])
        if gacos_missing_in is not None and k == gacos_missing_in:
            tropo = 0 * tropo  # this pair carries no troposphere: GACOS would worsen it
        phase = clean + tropo + ramp + rng.normal(0, 0.05, (NY, NX))
        if k in bad_ifgs:
            phase = phase + 2 * math.pi * (yy < 20)
        p = write_stack(
            tmp_path / ("%s_%s.geo.unw.tif" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))),
            phase,
            epsg=4326,
            origin=(X0, Y0),
            pixel=PX,
        )
        paths.append(p)
        truth.append(clean)
        ramps.append(ramp)
    grid = RasterGrid.of(open_raster(paths[0]))
    mask = write_stack(tmp_path / "bowl.tif", bowl.astype(np.float32), epsg=4326, origin=(X0, Y0), pixel=PX)
    return dict(
        dates=dates,
        pairs=pairs,
        net=net,
        paths=paths,
        truth=np.array(truth),
        grid=grid,
        gpaths=gpaths,
        mask=mask,
        bowl=bowl,
    )


def reader(s, gset=True):
    net = s["net"]
    ref = np.where(net.sign > 0, net.i1, net.i2)
    sec = np.where(net.sign > 0, net.i2, net.i1)
    gs = gacos.GacosSet(s["gpaths"], s["grid"]) if gset else None
    to_mm = los_factor_mm(UNITS_RADIANS, WL)
    return corrections.CorrectedFiles(
        StackFiles(s["paths"]),
        net.dates,
        ref,
        sec,
        s["grid"],
        gs,
        gacos.Incidence(angle=39.0),
        gacos.metres_to_units(to_mm),
    )


def run_pass(cf, mode, mask=None, windows=((0, 17, 0, 25), (0, 17, 25, 15), (17, 13, 0, 40))):
    shared = dict(files=cf, coh=None, min_coherence=0, ramp_mode=mode, mask=mask)
    parts = {i: corrections.corrections_block_task(dict(window=wd), shared) for i, wd in enumerate(windows)}
    return corrections.combine(parts)


def test_gacos_and_ramps_removed_to_noise(tmp_path):
    s = build(tmp_path, gacos_missing_in=3)
    cf = reader(s)
    total = run_pass(cf, deramp.DERAMP_QUADRATIC, s["mask"])
    d = corrections.decide(total, s["net"].names, gacos.DEFAULT_TOLERANCE, deramp.DERAMP_QUADRATIC)
    # the pair without troposphere is made worse by GACOS: not applied; all others applied
    assert np.flatnonzero(~d["gacos_apply"]).tolist() == [3]
    assert np.all(d["gacos_std_after"][d["gacos_apply"]] < d["gacos_std_before"][d["gacos_apply"]])
    cf.gacos_apply = d["gacos_apply"]
    cf.ramp_coef = d["ramp_coef"]
    cf.ramp_mode = deramp.DERAMP_QUADRATIC
    got = cf.read(0, NY, 0, NX)
    resid = got - s["truth"]
    # noise 0.05 rad; the uncorrected troposphere + ramps are several radians
    assert np.sqrt(np.mean(resid**2)) < 0.08
    raw = StackFiles(s["paths"]).read(0, NY, 0, NX)
    assert np.sqrt(np.mean((raw - s["truth"]) ** 2)) > 1.0
    # windows read through the reader equal the whole read
    part = cf.read(5, 9, 11, 13)
    assert np.allclose(part, got[:, 5:14, 11:24], atol=1e-5)


def test_scan_loops_name_bad_interferograms_and_reference_shift(tmp_path, monkeypatch):
    s = build(tmp_path, bad_ifgs=(2, 9))
    cf = reader(s, gset=True)
    net = s["net"]
    ln = loop_closure.LoopNetwork(net.i1, net.i2, net.sign)
    shared = dict(
        files=cf,
        coh=None,
        min_coherence=0,
        ramp_mode=deramp.DERAMP_QUADRATIC,
        mask=s["mask"],
        loop_net=ln,
        rad_per_unit=1.0,
        reference=None,
    )
    wins = [(0, 10, 0, 40), (10, 20, 0, 40)]
    total = corrections.combine({i: corrections.scan_block_task(dict(window=w), shared) for i, w in enumerate(wins)})
    # the loop statistics of a window on several threads (chunks of one loop x 50 px): the same
    monkeypatch.setattr(loop_closure, "CHUNK_ELEMENTS", 50)
    monkeypatch.setattr(loop_closure, "CHUNK_PIXELS", 50)
    threaded = corrections.scan_block_task(dict(window=wins[1]), dict(shared, loop_threads=3))["loops"]
    single = corrections.scan_block_task(dict(window=wins[1]), shared)["loops"]
    for key in single:
        assert np.array_equal(threaded[key], single[key])
    # loops of the GACOS-corrected, not deramped data referenced afterwards to pixel (3, 4)
    ref = cf.for_loops().read(3, 1, 4, 1)[:, 0, 0]
    rms = loop_closure.loop_rms(total["loops"], ln.matrix @ ref)
    verdict = loop_closure.classify(ln, rms)
    assert np.flatnonzero(verdict["bad"]).tolist() == [2, 9]
    # equal to the statistics of the referenced data taken directly
    y = cf.for_loops().read(0, NY, 0, NX) - ref[:, None, None]
    direct = loop_closure.accumulate(loop_closure.empty_stats(ln.n_loops), ln.loop_phase(y))
    assert np.allclose(rms, loop_closure.loop_rms(direct), rtol=1e-6, atol=1e-6)
    # the ramp normals of the same scan give the corrections pass's ramps
    d = corrections.decide(total, net.names, 0.1, deramp.DERAMP_QUADRATIC)
    d2 = corrections.decide(
        run_pass(reader(s), deramp.DERAMP_QUADRATIC, s["mask"]), net.names, 0.1, deramp.DERAMP_QUADRATIC
    )
    assert np.allclose(d["ramp_coef"], d2["ramp_coef"], rtol=1e-9, atol=1e-9)
    # a quadratic ramp fitted to each interferogram absorbs much of a 2 pi step over two thirds of the image,
    # which is why the loops are summed without the ramp
    cf.ramp_mode, cf.ramp_coef = deramp.DERAMP_QUADRATIC, d["ramp_coef"]
    yr = cf.read(0, NY, 0, NX)
    yr -= yr[:, 3:4, 4:5]
    deramped = loop_closure.classify(
        ln, loop_closure.loop_rms(loop_closure.accumulate(loop_closure.empty_stats(ln.n_loops), ln.loop_phase(yr)))
    )
    assert deramped["bad"].sum() < 2


def test_deramp_mask_from_polygons(tmp_path):
    from osgeo import ogr, osr

    s = build(tmp_path)
    shp = str(tmp_path / "area.gpkg")
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(shp)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    lyr = ds.CreateLayer("area", srs, ogr.wkbPolygon)
    f = ogr.Feature(lyr.GetLayerDefn())
    # rows 5..14, cols 10..19
    x0, x1 = X0 + 10 * PX, X0 + 20 * PX
    y0, y1 = Y0 - 5 * PX, Y0 - 15 * PX
    f.SetGeometry(
        ogr.CreateGeometryFromWkt("POLYGON((%r %r,%r %r,%r %r,%r %r,%r %r))" % (x0, y0, x1, y0, x1, y1, x0, y1, x0, y0))
    )
    lyr.CreateFeature(f)
    ds = None
    out = corrections.mask_on_grid(shp, s["grid"], str(tmp_path / "m.tif"))
    m = gdal.Open(out).ReadAsArray()
    expect = np.zeros((NY, NX))
    expect[5:15, 10:20] = 1
    assert np.array_equal(m, expect)


def test_deramp_mask_from_raster_keeps_zeros_as_zero(tmp_path):
    """A raster mask: non-zero = excluded, 0 / NoData / outside its extent = fitted. The warp must not turn the
    valid zeros into something non-zero (GDAL 3.13, not 3.10, makes them 1.4e-45 when 0 is the destination NoData,
    which excluded the whole grid from the ramp fit)."""
    s = build(tmp_path)
    src = np.zeros((20, NX), np.float32)  # covers rows 0..19 only
    src[5:15, 10:20] = 1.0
    src[8, 30] = 3.5  # any non-zero value excludes
    src[0:3, 0:5] = -9999.0  # the source's NoData: not excluded
    path = write_stack(tmp_path / "mask_raster.tif", src, epsg=4326, origin=(X0, Y0), pixel=PX, nodata=-9999.0)
    out = corrections.mask_on_grid(path, s["grid"], str(tmp_path / "m.tif"))
    ds = gdal.Open(out)
    assert ds.GetRasterBand(1).DataType == gdal.GDT_Byte
    assert RasterGrid.of(ds).same_as(s["grid"])
    m = ds.GetRasterBand(1).ReadAsArray()
    expect = np.zeros((NY, NX), np.uint8)
    expect[5:15, 10:20] = 1
    expect[8, 30] = 1
    assert np.array_equal(m, expect)


def test_scan_loops_leave_out_observations_below_the_minimum_coherence(tmp_path):
    """The scan's loop statistics with a minimum coherence are those of the values with every observation below it
    set to NaN (counts and histogram exactly, sums to float64 rounding); the same when the windows (of two sizes)
    are read into reused, dirty per-thread buffers."""
    from subsidence_toolkit.core.insar.sbas_stack import WindowBuffers

    s = build(tmp_path, bad_ifgs=(4,))
    net = s["net"]
    ln = loop_closure.LoopNetwork(net.i1, net.i2, net.sign)
    rng = np.random.default_rng(5)
    coh = rng.uniform(0.0, 1.0, size=(net.n_ifg, NY, NX)).astype(np.float32)
    cdir = tmp_path / "coh"
    cdir.mkdir()
    cpaths = [
        write_stack(cdir / ("c%02d.tif" % k), coh[k], epsg=4326, origin=(X0, Y0), pixel=PX) for k in range(net.n_ifg)
    ]
    raw = StackFiles(s["paths"]).read(0, NY, 0, NX)
    y = np.where(coh >= 0.5, raw, np.float32(np.nan))
    want = loop_closure.accumulate(loop_closure.empty_stats(ln.n_loops), ln.loop_phase(y))
    assert 0 < want["count"].min() and want["count"].max() < NY * NX  # some observations left out in every loop

    class Dirty(WindowBuffers):
        def get(self, key, shape):
            buf = super().get(key, shape)
            buf[...] = np.float32(7.0)
            return buf

    shared = dict(
        files=reader(s, gset=False),
        coh=StackFiles(cpaths),
        min_coherence=0.5,
        ramp_mode=None,
        mask=None,
        loop_net=ln,
        rad_per_unit=1.0,
        reference=None,
    )
    wins = [(0, 20, 0, 40), (20, 10, 0, 25), (20, 10, 25, 15)]
    for buffers in (None, Dirty()):
        parts = {
            i: corrections.scan_block_task(dict(window=w), dict(shared, buffers=buffers)) for i, w in enumerate(wins)
        }
        got = corrections.combine(parts)["loops"]
        assert np.array_equal(got["count"], want["count"])
        assert np.array_equal(got["hist"], want["hist"])
        assert np.allclose(got["sum"], want["sum"], rtol=1e-12, atol=1e-9)
        assert np.allclose(got["sumsq"], want["sumsq"], rtol=1e-12, atol=1e-9)
