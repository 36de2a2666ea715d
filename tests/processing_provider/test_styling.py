"""Styles applied when outputs load (processing_provider/styling.py)."""

import numpy as np
import pytest
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack


@pytest.fixture
def project(qgis_app):
    from qgis.core import QgsProject

    p = QgsProject.instance()
    p.clear()
    yield p
    p.clear()


def _expected_symmetric(array):
    from subsidence_toolkit.processing_provider.styling import nice_limits

    v = np.asarray(array, float)
    v = v[np.isfinite(v)]
    lo, hi = np.percentile(v, [2, 98])
    lim = max(abs(lo), abs(hi))
    return nice_limits(-lim, lim, symmetric=True)


def test_nice_limits(qgis_app):
    from subsidence_toolkit.processing_provider.styling import nice_limits

    assert nice_limits(-54.840598, 54.840598, symmetric=True) == (-55.0, 55.0)
    assert nice_limits(-3.0, 54.840598, symmetric=True) == (-55.0, 55.0)
    assert nice_limits(0.2134, 0.8871) == (0.21, 0.89)
    assert nice_limits(-3.2, 137.2) == (-10.0, 140.0)
    assert nice_limits(12.0, 12.0) == (12.0, 12.0)  # degenerate: unchanged
    assert nice_limits(-0.012345, 0.0101, symmetric=True) == (-0.013, 0.013)


def _run_group(project, layer):
    from subsidence_toolkit.processing_provider.styling import RUN_PROPERTY

    node = project.layerTreeRoot().findLayer(layer.id())
    group = node.parent()
    return group, group.customProperty(RUN_PROPERTY)


def test_run_and_load_results_styles_resample_output(project, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from subsidence_toolkit.processing_provider.compat import ShaderInterpolation

    dates = sentinel1_dates(n=12)
    write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=12, nx=10, nan_fraction=0.05), dates=dates)
    contexts = []
    for k in range(2):
        ctx = QgsProcessingContext()
        ctx.setProject(project)
        contexts.append(ctx)
        processing.runAndLoadResults(
            "subsidence:resampletimeseries",
            {"INPUT": str(tmp_path / "ts.tif"), "METHOD": 0, "OUTPUT": str(tmp_path / ("out%d.tif" % k))},
            feedback=QgsProcessingFeedback(),
            context=ctx,
        )
    layers = sorted(project.mapLayers().values(), key=lambda lyr: lyr.source())
    assert len(layers) == 2
    groups = set()
    for layer in layers:
        out = gdal.Open(layer.source())
        nb = out.RasterCount
        r = layer.renderer()
        assert r.type() == "singlebandpseudocolor"
        assert (r.inputBand() if hasattr(r, "inputBand") else r.band()) == nb  # the last date is shown
        lo, hi = _expected_symmetric(out.GetRasterBand(nb).ReadAsArray())
        assert r.classificationMin() == pytest.approx(lo) and r.classificationMax() == pytest.approx(hi)
        assert r.classificationMin() == -r.classificationMax() < 0
        fn = r.shader().rasterShaderFunction()
        assert fn.colorRampType() == ShaderInterpolation.Linear
        items = fn.colorRampItemList()
        assert items[0].value == pytest.approx(lo) and items[-1].value == pytest.approx(hi)
        c0, c1 = items[0].color, items[-1].color
        assert c0.red() > c0.blue() and c1.blue() > c1.red()  # red = subsidence, blue = uplift
        group, run = _run_group(project, layer)
        assert group.name().startswith("Resample time series in time \u2013 ts.tif \u2013") and run
        groups.add(run)
    assert len(groups) == 2  # one group per run, even with the same name


def test_post_processor_styles_velocity_and_quality_in_one_group(project, tmp_path):
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    from subsidence_toolkit.processing_provider import styling

    rng = np.random.default_rng(3)
    vel = rng.normal(-20, 15, (40, 30))
    vel[0, :5] = [-900, 800, np.nan, np.nan, -500]  # outliers do not set the limits
    coh = rng.uniform(0.2, 0.9, (40, 30))
    vpath = write_stack(tmp_path / "velocity.tif", vel, nodata=None)
    qpath = write_stack(tmp_path / "coherence.tif", coh)
    alg = QgsApplication.processingRegistry().algorithmById("subsidence:resampletimeseries")
    ctx = QgsProcessingContext()
    ctx.setProject(project)
    # not a destination of this run and load=False: nothing is scheduled
    assert styling.style_output(alg, ctx, vpath, "velocity") is None
    assert not ctx.willLoadLayerOnCompletion(vpath)
    pv = styling.style_output(alg, ctx, vpath, "velocity", group_name="SBAS run", load=True)
    pq = styling.style_output(alg, ctx, qpath, "quality", group_name="SBAS run", load=True)
    assert ctx.willLoadLayerOnCompletion(vpath) and ctx.layerToLoadOnCompletionDetails(vpath).postProcessor() is pv
    assert pv.run_id == pq.run_id
    with pytest.raises(ValueError):
        styling.style_output(alg, ctx, vpath, "nonsense", load=True)
    assert handleAlgorithmResults(alg, ctx, QgsProcessingFeedback())

    lv = project.mapLayersByName("velocity")[0]
    lq = project.mapLayersByName("coherence")[0]
    rv, rq = lv.renderer(), lq.renderer()
    assert rv.type() == rq.type() == "singlebandpseudocolor"
    lo, hi = _expected_symmetric(vel)
    assert (rv.classificationMin(), rv.classificationMax()) == (pytest.approx(lo), pytest.approx(hi))
    assert hi < 100  # robust: the +-800 outliers are ignored
    qlo, qhi = styling.nice_limits(*np.percentile(coh, [2, 98]))
    assert (rq.classificationMin(), rq.classificationMax()) == (pytest.approx(qlo), pytest.approx(qhi))
    q0 = rq.shader().rasterShaderFunction().colorRampItemList()[0].color
    assert q0.blue() > q0.green() > 0 and q0.red() < 100  # viridis starts dark purple
    gv, runv = _run_group(project, lv)
    gq, runq = _run_group(project, lq)
    assert gv is not None and gv.name() == "SBAS run" and runv == runq == pv.run_id
    assert sorted(n.layerId() for n in gv.findLayers()) == sorted([lv.id(), lq.id()])


def test_temporal_ranges_guarded(project, tmp_path):
    from qgis.core import QgsRasterLayer

    from subsidence_toolkit.processing_provider import styling

    dates = sentinel1_dates(n=4)
    p = write_stack(tmp_path / "ts.tif", smooth_stack(dates, nan_fraction=0), dates=dates)
    layer = QgsRasterLayer(p, "ts")
    props = layer.temporalProperties()
    assert styling.set_band_temporal_ranges(layer, dates) == hasattr(props, "setFixedRangePerBand")
    band, vmin, vmax = styling.apply_style(layer, "timeseries")  # no error on 3.22
    assert band == 4 and vmin == -vmax
    if hasattr(props, "fixedRangePerBand"):  # QGIS >= 3.38
        ranges = props.fixedRangePerBand()
        assert ranges[1].begin().date().toPyDate() == dates[0]
        assert ranges[1].end().date().toPyDate() == dates[1]


def test_per_band_ranges_code_path_with_a_338_like_api(qgis_app, monkeypatch):
    """Exercise the QGIS >= 3.38 branch on 3.22 with stand-ins for the new API."""
    import datetime as dt
    import types

    from qgis.core import Qgis

    from subsidence_toolkit.processing_provider import styling

    monkeypatch.setattr(Qgis, "RasterTemporalMode", types.SimpleNamespace(FixedRangePerBand="per-band"), raising=False)

    class Props:
        def setMode(self, m):
            self.mode = m

        def setFixedRangePerBand(self, r):
            self.ranges = r

        def setIsActive(self, a):
            self.active = a

    props = Props()
    layer = types.SimpleNamespace(temporalProperties=lambda: props)
    dates = [dt.date(2020, 1, 1), dt.date(2020, 1, 13), dt.date(2020, 1, 25)]
    assert styling.set_band_temporal_ranges(layer, dates) is True
    assert props.mode == "per-band" and props.active is True
    assert sorted(props.ranges) == [1, 2, 3]
    r1, r3 = props.ranges[1], props.ranges[3]
    assert r1.begin().date().toPyDate() == dates[0] and r1.end().date().toPyDate() == dates[1]
    assert r1.includeBeginning() and not r1.includeEnd()
    assert r3.end().date().toPyDate() == dt.date(2020, 2, 6)


def test_apply_toolkit_style_by_metadata(project, tmp_path):
    """A toolkit raster added by hand (not through Processing) gets its style from its metadata."""
    from qgis.core import QgsRasterLayer

    from subsidence_toolkit.processing_provider import styling
    from subsidence_toolkit.processing_provider.compat import renderer_band

    dates = sentinel1_dates(n=5)
    rng = np.random.default_rng(2)
    cases = {
        "storage.tif": (write_stack(tmp_path / "storage.tif", 40 * rng.normal(size=(5, 6, 7)), dates=dates), "gwsa", 5),
        "ts.tif": (write_stack(tmp_path / "ts.tif", smooth_stack(dates, nan_fraction=0), dates=dates), "timeseries", 5),
        "vel.tif": (write_stack(tmp_path / "vel.tif", rng.normal(-10, 20, (6, 7))), "velocity", 1),
        "quality.tif": (
            write_stack(
                tmp_path / "quality.tif",
                rng.uniform(0, 1, (3, 6, 7)),
                descriptions=["temporal coherence", "interferograms used", "residual RMS"],
            ),
            "quality",
            1,
        ),
        "coherence.tif": (write_stack(tmp_path / "coherence.tif", rng.uniform(-0.1, 1, (6, 7))), "quality", 1),
    }
    ds = gdal.Open(cases["storage.tif"][0], gdal.GA_Update)
    ds.SetMetadata({"KIND": "gwsa", "UNITS": "mm"})  # as subsidence:groundwateranomaly writes it
    ds = None
    for name, (path, kind, band) in cases.items():
        layer = QgsRasterLayer(path, name)
        assert layer.renderer().type() != "singlebandpseudocolor" or layer.bandCount() == 1
        assert styling.apply_toolkit_style(layer) == kind, name
        r = layer.renderer()
        assert r.type() == "singlebandpseudocolor" and renderer_band(r) == band
        for v in (r.classificationMin(), r.classificationMax()):  # rounded legend limits
            assert float("%.2g" % v) == pytest.approx(v, abs=1e-12) or abs(v) >= 100, (name, v)
        assert layer.customProperty(styling.KIND_PROPERTY) == kind
