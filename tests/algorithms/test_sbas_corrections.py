"""subsidence:sbasinversion on real-stack problems: planted +2 pi unwrapping errors (two whole interferograms, a
patch in a third), per-date orbital ramps and a GACOS-format troposphere. Defaults reject the bad
interferograms; ramps and troposphere are removed to the noise level; n_loop_errors flags the patch and
nothing else; bad GACOS / incidence input is refused naming the file, with no output written."""

import datetime as dt
import math
import os

import numpy as np
import pytest
from osgeo import gdal, ogr
from synthetic import write_stack

from subsidence_toolkit.core.insar import gacos
from subsidence_toolkit.core.io.rasters import RasterGrid, open_raster

LAMBDA = 0.05546576
NY, NX = 24, 30
X0, Y0, PX = 110.0, 35.0, 0.001
BAD = (3, 15)  # whole-interferogram errors (2/3 of the image)
PATCH_IFG = 9  # +2 pi over a 3 x 3 patch
PATCH = (slice(18, 21), slice(24, 27))


def build(folder, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dates = [dt.date(2021, 1, 4) + dt.timedelta(days=12 * k) for k in range(11)]
    t = np.array([(d - dates[0]).days for d in dates]) / 365.25
    yy, xx = np.mgrid[0:NY, 0:NX]
    bowl = ((yy - 8) ** 2 + (xx - 10) ** 2) < 20
    vel_truth = np.where(bowl, -40.0, 0.0)  # mm/yr, 0 outside (reference anywhere outside)
    disp = vel_truth[None] * t[:, None, None]
    # GACOS ZTD on a coarser grid with a margin; the interferograms carry the delays as GACOS resampled gives them
    gdir = folder / "gacos"
    gdir.mkdir()
    step = 0.0025
    xf, yf = X0 - 0.005, Y0 + 0.005
    gx = xf + step * np.arange(int((NX * PX + 0.01) / step) + 2)
    gy = yf - step * np.arange(int((NY * PX + 0.01) / step) + 2)
    gpaths = []
    for n, d in enumerate(dates):
        z = 2.4 + 0.015 * np.sin(300 * (gx[None, :] - X0) + n) + (0.4 + 0.1 * n) * (gy[:, None] - Y0)
        gpaths.append(
            gacos.write_ztd(gdir / ("%s.ztd" % d.strftime("%Y%m%d")), z.astype(np.float32), xf, yf, step, -step)
        )
    ramps = [0.01 * (n - 5) * xx - 0.02 * ((n % 3) - 1) * yy for n in range(len(dates))]  # rad, per date
    ifgs, pairs = [], []
    grid = None
    slant = None
    for i, a in enumerate(dates):
        for j in range(i + 1, len(dates)):
            b = dates[j]
            if (b - a).days > 36:
                continue
            k = len(ifgs)
            phase = -(disp[j] - disp[i]) / 1000.0 * 4 * math.pi / LAMBDA + ramps[j] - ramps[i]
            phase = phase + rng.normal(0, 0.03, phase.shape)
            if k in BAD:
                phase = phase + 2 * math.pi * (yy < 16)
            if k == PATCH_IFG:
                phase[PATCH] += 2 * math.pi
            fn = folder / ("%s_%s.geo.unw.tif" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d")))
            write_stack(fn, phase, epsg=4326, origin=(X0, Y0), pixel=PX)
            if grid is None:
                grid = RasterGrid.of(open_raster(str(fn)))
                gs = gacos.GacosSet(gpaths, grid)
                slant = gs.slant_delays(dates, gacos.Incidence(angle=39.0), 0, NY, 0, NX)
            tropo = 4 * math.pi / LAMBDA * (slant[j] - slant[i])
            ds = gdal.Open(str(fn), gdal.GA_Update)
            ds.GetRasterBand(1).WriteArray((phase + tropo).astype(np.float32))
            ds = None
            ifgs.append(str(fn))
            pairs.append((a, b))
    mask = write_stack(folder / "bowl.tif", bowl.astype(np.float32), epsg=4326, origin=(X0, Y0), pixel=PX)
    return dict(ifgs=ifgs, pairs=pairs, gacos=gpaths, vel=vel_truth, mask=mask, bowl=bowl, dates=dates)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return build(tmp_path_factory.mktemp("corr") / "in")


def outputs(tmp_path, tag):
    return {
        "OUTPUT_TIMESERIES": str(tmp_path / ("%s_ts.tif" % tag)),
        "OUTPUT_VELOCITY": str(tmp_path / ("%s_vel.tif" % tag)),
        "OUTPUT_QUALITY": str(tmp_path / ("%s_q.tif" % tag)),
        "OUTPUT_NETWORK": str(tmp_path / ("%s_net.csv" % tag)),
    }


def velocity_rmse(res, truth):
    """RMSE outside the 2 pi patch (whose interferogram is kept: flagged, not corrected), after removing the
    median error: the reference pixel's own noise shifts the whole image alike (~0.3 mm/yr here)."""
    vel = gdal.Open(res["OUTPUT_VELOCITY"]).ReadAsArray()
    ok = np.ones(vel.shape, bool)
    ok[PATCH] = False
    err = (vel - truth)[ok]
    return float(np.sqrt(np.nanmean((err - np.nanmedian(err)) ** 2)))


def test_defaults_reject_bad_ifgs_and_corrections_reach_noise(run_alg, stack, tmp_path):
    import pandas as pd
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        lines = []

        def pushInfo(self, info):
            self.lines.append(info)

    fb = Log()
    res = run_alg(
        "sbasinversion",
        dict(
            INTERFEROGRAMS=stack["ifgs"],
            DERAMP=1,
            DERAMP_MASK=stack["mask"],
            GACOS=stack["gacos"],
            INCIDENCE_ANGLE=39.0,
            **outputs(tmp_path, "c"),
        ),
        feedback=fb,
    )
    net = pd.read_csv(res["OUTPUT_NETWORK"])
    names = [os.path.basename(p) for p in stack["ifgs"]]
    rejected = net.loc[net["status"] == "loop closure", "file"].map(os.path.basename).tolist()
    assert sorted(rejected) == sorted(names[k] for k in BAD)
    assert not net.loc[net["status"] == "loop closure", "used"].any()
    assert (net.loc[net["status"] == "loop closure", "loop_rms_rad"] >= 1.5).all()
    assert (net.loc[net["used"], "loop_rms_rad"] < 1.5).all()
    assert net["gacos_applied"].all() and (net["gacos_std_after"] < net["gacos_std_before"]).all()
    log = "\n".join(fb.lines)
    assert all(names[k] in log for k in BAD) and "rejected" in log
    # ramps and troposphere removed: velocity to the noise level (0.03 rad ~ 0.13 mm per interferogram over
    # 120 days: ~0.3 mm/yr)
    assert velocity_rmse(res, stack["vel"]) < 0.5
    # n_loop_errors: the patch, nothing else
    qds = gdal.Open(res["OUTPUT_QUALITY"])
    bands = [qds.GetRasterBand(i + 1).GetDescription() for i in range(qds.RasterCount)]
    assert bands[:5] == ["temporal_coherence", "n_ifg_used", "residual_rms_mm", "velocity_std_mm_yr", "n_gaps"]
    assert bands[5:] == ["n_loop_errors", "kept_first_date", "n_unwrap_corrected"]
    nle = qds.GetRasterBand(6).ReadAsArray()
    patch = np.zeros((NY, NX), bool)
    patch[PATCH] = True
    assert np.all(nle[patch] > 0) and np.all(nle[~patch] == 0)
    assert "n_loops" in net and int(net["n_loops"].iloc[PATCH_IFG]) == int(nle[patch].min())
    assert np.all(qds.GetRasterBand(7).ReadAsArray() == 0)


def test_without_corrections_velocity_is_biased(run_alg, stack, tmp_path):
    res = run_alg("sbasinversion", dict(INTERFEROGRAMS=stack["ifgs"], LOOP_CLOSURE=0, **outputs(tmp_path, "n")))
    assert velocity_rmse(res, stack["vel"]) > 10.0
    qds = gdal.Open(res["OUTPUT_QUALITY"])
    nle = qds.GetRasterBand(6).ReadAsArray()
    assert np.all(np.isnan(nle))


def test_report_only_keeps_them(run_alg, stack, tmp_path):
    import pandas as pd

    res = run_alg("sbasinversion", dict(INTERFEROGRAMS=stack["ifgs"], LOOP_CLOSURE=1, **outputs(tmp_path, "r")))
    net = pd.read_csv(res["OUTPUT_NETWORK"])
    assert net["used"].all()
    assert sorted(np.flatnonzero(net["loop_check"] == "bad (kept: report only)").tolist()) == list(BAD)


def test_correction_keeps_and_corrects_them(run_alg, stack, tmp_path):
    """LOOP_CLOSURE 3: the whole-interferogram errors (2/3 of the image) and the patch are corrected per pixel
    and every interferogram is kept: the result equals the report-only run's with 2 pi x the corrections
    removed, i.e. no loop is left unclosed (the core tests check the restored values)."""
    import pandas as pd

    common = dict(INTERFEROGRAMS=stack["ifgs"], GACOS=stack["gacos"], INCIDENCE_ANGLE=39.0)
    res = run_alg("sbasinversion", dict(common, LOOP_CLOSURE=3, **outputs(tmp_path, "u")))
    rep = run_alg("sbasinversion", dict(common, LOOP_CLOSURE=1, **outputs(tmp_path, "u1")))
    net = pd.read_csv(res["OUTPUT_NETWORK"])
    assert net["used"].all()
    fixed = net["n_pixels_unwrap_corrected"].to_numpy()
    assert sorted(np.flatnonzero(fixed).tolist()) == sorted(BAD + (PATCH_IFG,))
    assert all(net["loop_check"].iloc[k].startswith("bad (kept") for k in BAD)
    assert (net["n_pixels_unwrap_ambiguous"] == 0).all()
    q3, q1 = gdal.Open(res["OUTPUT_QUALITY"]), gdal.Open(rep["OUTPUT_QUALITY"])
    assert np.all(q3.GetRasterBand(6).ReadAsArray() == 0)  # no loop left unclosed
    assert np.all(q1.GetRasterBand(6).ReadAsArray()[PATCH] > 0)
    assert np.all(np.isnan(q1.GetRasterBand(8).ReadAsArray()))
    fixed_px = q3.GetRasterBand(8).ReadAsArray()
    assert np.all(fixed_px[PATCH] >= 1) and int(fixed_px.sum()) == int(fixed.sum())
    # the whole-interferogram errors: corrected on the side of the error without the reference pixel
    assert int(fixed[BAD[0]]) in (16 * NX, (NY - 16) * NX)


def test_correction_with_ramps_reaches_noise(run_alg, stack, tmp_path):
    """LOOP_CLOSURE 3 with ramps and GACOS: the ramps of the corrected interferograms are fitted again without
    their errors, so the velocity reaches the noise level everywhere, the patch included (the default
    rejection leaves the patch's interferogram biased there)."""

    class Log:
        lines = []

    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):
            Log.lines.append(info)

    params = dict(
        INTERFEROGRAMS=stack["ifgs"],
        DERAMP=1,
        DERAMP_MASK=stack["mask"],
        GACOS=stack["gacos"],
        INCIDENCE_ANGLE=39.0,
        LOOP_CLOSURE=3,
    )
    res = run_alg("sbasinversion", dict(params, **outputs(tmp_path, "ur")), feedback=Feedback())
    rej = run_alg("sbasinversion", dict(params, LOOP_CLOSURE=2, **outputs(tmp_path, "ur2")))

    def rmse_all(r):
        err = gdal.Open(r["OUTPUT_VELOCITY"]).ReadAsArray() - stack["vel"]
        return float(np.sqrt(np.mean((err - np.median(err)) ** 2)))

    # measured: 0.40 mm/yr over every pixel (the noise floor of this stack: the default run's 0.41 outside the
    # patch); the default run: 1.01 over every pixel (its patch is not corrected)
    assert rmse_all(res) < 0.5 and rmse_all(res) <= velocity_rmse(rej, stack["vel"]) + 0.05
    assert rmse_all(rej) > 2 * rmse_all(res)
    assert np.all(gdal.Open(res["OUTPUT_QUALITY"]).GetRasterBand(6).ReadAsArray() == 0)
    assert any("ramps fitted again" in m for m in Log.lines)


def test_correction_option_has_help(qgis_app):
    from subsidence_toolkit.algorithms.sbas_inversion import SbasInversion

    alg = SbasInversion()
    alg.initAlgorithm()
    p = alg.parameterDefinition("LOOP_CLOSURE")
    assert p.options()[3] == "Correct unwrapping errors per pixel (phase closure)" and p.defaultValue() == 2
    text = p.help() if hasattr(p, "help") else alg.shortHelpString()
    for words in ("Yunjun et al. 2019", "not unique", "n_unwrap_corrected", "rejected as with 'Reject'"):
        assert words in text
    assert "n_unwrap_corrected" in alg.parameterDefinition("OUTPUT_QUALITY").help()


def _fails(run_alg, params, tmp_path, tag, match):
    from qgis.core import QgsProcessingException

    out = outputs(tmp_path, tag)
    with pytest.raises(QgsProcessingException, match=match):
        run_alg("sbasinversion", dict(params, **out))
    assert not any(os.path.exists(p) for p in out.values())


def test_bad_gacos_and_incidence_input_named(run_alg, stack, tmp_path):
    ifgs, g = stack["ifgs"], stack["gacos"]
    # a date without a GACOS file: error naming the date; or its interferograms left out
    _fails(run_alg, dict(INTERFEROGRAMS=ifgs, GACOS=g[1:], INCIDENCE_ANGLE=39.0), tmp_path, "m", str(stack["dates"][0]))
    # GACOS not covering
    small = tmp_path / "small"
    small.mkdir()
    z = np.full((3, 3), 2.4, np.float32)
    p0 = gacos.write_ztd(small / os.path.basename(g[0]), z, X0 + 0.01, Y0 - 0.01, 0.001, -0.001)
    _fails(
        run_alg, dict(INTERFEROGRAMS=ifgs, GACOS=[p0] + g[1:], INCIDENCE_ANGLE=39.0), tmp_path, "c", "does not cover"
    )
    # unreadable .rsc
    bad = tmp_path / "badrsc"
    bad.mkdir()
    p1 = str(bad / os.path.basename(g[0]))
    with open(g[0], "rb") as f, open(p1, "wb") as o:
        o.write(f.read())
    with open(p1 + ".rsc", "w") as f:
        f.write("WIDTH 7\n")
    _fails(run_alg, dict(INTERFEROGRAMS=ifgs, GACOS=[p1] + g[1:], INCIDENCE_ANGLE=39.0), tmp_path, "r", r"\.rsc")
    # GACOS without any incidence: refused (no silent default angle)
    _fails(run_alg, dict(INTERFEROGRAMS=ifgs, GACOS=g), tmp_path, "n", "INCIDENCE")
    # incidence raster with NoData under the data (any grid: this one is coarser)
    a = np.full((6, 8), 39.0, np.float32)
    a[2, 3] = np.nan
    inc = write_stack(tmp_path / "inc.tif", a, epsg=4326, origin=(X0 - 0.001, Y0 + 0.001), pixel=0.005)
    _fails(run_alg, dict(INTERFEROGRAMS=ifgs, GACOS=g, INCIDENCE=inc), tmp_path, "i", "inc.tif")


def test_gacos_skip_missing_date_and_deramp_polygons(run_alg, stack, tmp_path):
    import pandas as pd

    shp = str(tmp_path / "bowl.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(shp)
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    lyr = ds.CreateLayer("bowl", srs, ogr.wkbPolygon)
    f = ogr.Feature(lyr.GetLayerDefn())
    f.SetGeometry(
        ogr.CreateGeometryFromWkt(
            "POLYGON((%r %r,%r %r,%r %r,%r %r,%r %r))"
            % (
                X0 + 5 * PX,
                Y0 - 3 * PX,
                X0 + 16 * PX,
                Y0 - 3 * PX,
                X0 + 16 * PX,
                Y0 - 14 * PX,
                X0 + 5 * PX,
                Y0 - 14 * PX,
                X0 + 5 * PX,
                Y0 - 3 * PX,
            )
        )
    )
    lyr.CreateFeature(f)
    ds = None
    res = run_alg(
        "sbasinversion",
        dict(
            INTERFEROGRAMS=stack["ifgs"],
            GACOS=stack["gacos"][:-1],
            GACOS_SKIP_MISSING=True,
            INCIDENCE_ANGLE=39.0,
            DERAMP=1,
            DERAMP_MASK=shp,
            **outputs(tmp_path, "s"),
        ),
    )
    net = pd.read_csv(res["OUTPUT_NETWORK"])
    last = stack["dates"][-1].strftime("%Y-%m-%d")
    skipped = net["status"].str.startswith("no GACOS file")
    assert skipped.sum() == ((net["secondary_date"] == last) | (net["reference_date"] == last)).sum() > 0
    assert gdal.Open(res["OUTPUT_TIMESERIES"]).RasterCount == len(stack["dates"]) - 1
    assert velocity_rmse(res, stack["vel"]) < 0.6


def test_date_left_without_interferograms_by_the_rejection_is_named(run_alg, tmp_path):
    """Both pairs of the first date are in one loop only, which a +2 pi error makes bad: the rule rejects both,
    the date has no interferogram left and is left out of the time series - and the log says so."""
    from qgis.core import QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def pushInfo(self, info):
            self.lines.append(info)

    dates = [dt.date(2021, 1, 4) + dt.timedelta(days=12 * k) for k in range(7)]
    rng = np.random.default_rng(1)
    ifgs = []
    for i in range(7):
        for j in range(i + 1, min(i + 3, 7)):
            phase = rng.normal(0, 0.03, (10, 10)) - 0.5 * (j - i)
            if (i, j) == (0, 1):
                phase = phase + 2 * math.pi * (np.arange(10)[:, None] < 6)
            fn = tmp_path / ("%s_%s.geo.unw.tif" % (dates[i].strftime("%Y%m%d"), dates[j].strftime("%Y%m%d")))
            ifgs.append(write_stack(fn, phase, epsg=4326, origin=(X0, Y0), pixel=PX))
    fb = Log()
    res = run_alg("sbasinversion", dict(INTERFEROGRAMS=ifgs, **outputs(tmp_path, "d")), feedback=fb)
    ts = gdal.Open(res["OUTPUT_TIMESERIES"])
    bands = [ts.GetRasterBand(k + 1).GetDescription() for k in range(ts.RasterCount)]
    assert bands == [d.isoformat() for d in dates[1:]]
    log = "\n".join(fb.lines)
    assert "leaves 1 date(s) without any interferogram, left out of the time series: 2021-01-04" in log, log


def test_output_on_the_header_of_a_gacos_file_is_refused(run_alg, stack, tmp_path):
    """A GACOS ``.ztd`` is read with its ``.ztd.rsc`` header: an output pointed at the header is an output
    on an input (it used to fail only after the run, as 'OUTPUT_NETWORK was not written')."""
    from qgis.core import QgsProcessingException

    rsc = stack["gacos"][0] + ".rsc"
    with open(rsc, "rb") as f:
        before = f.read()
    out = dict(outputs(tmp_path, "h"), OUTPUT_NETWORK=rsc)
    with pytest.raises(
        QgsProcessingException, match="OUTPUT_NETWORK: the output .*ztd.rsc would overwrite the input GACOS"
    ):
        run_alg("sbasinversion", dict(INTERFEROGRAMS=stack["ifgs"], GACOS=stack["gacos"], INCIDENCE_ANGLE=39.0, **out))
    with open(rsc, "rb") as f:
        assert f.read() == before
    assert not any(os.path.exists(p) for k, p in out.items() if k != "OUTPUT_NETWORK")
