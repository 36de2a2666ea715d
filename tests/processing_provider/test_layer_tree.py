"""One run -> one layer-tree group holding all its outputs, through processing.runAndLoadResults.

QGIS desktop inserts each loaded layer at the layer tree view's insertion point, which follows
the current node: after the first output was moved into a new group, the next output lands
*inside* that group. ``follow_current_node`` reproduces that behaviour of the desktop
(QgisApp::layerTreeInsertionPoint) on the library's registry bridge, so these tests see what a
user sees.
"""

import datetime as dt
import math
import re

import numpy as np
import pytest
from synthetic import sentinel1_dates, smooth_stack, write_stack

LAMBDA = 0.05546576


@pytest.fixture
def project(qgis_app):
    from qgis.core import QgsProject

    p = QgsProject.instance()
    p.clear()
    yield p
    p.clear()


@pytest.fixture
def follow_current_node(project):
    """Make the bridge insert new layers where the last added layer went (as the desktop's view does)."""
    from qgis.core import QgsLayerTree, QgsLayerTreeRegistryBridge

    root = project.layerTreeRoot()
    bridge = project.layerTreeRegistryBridge()

    def added(parent, i0, i1):
        node = parent.children()[i0]
        if QgsLayerTree.isLayer(node):
            bridge.setLayerInsertionPoint(QgsLayerTreeRegistryBridge.InsertionPoint(parent, i0))

    root.addedChildren.connect(added)
    yield added
    root.addedChildren.disconnect(added)
    bridge.setLayerInsertionPoint(QgsLayerTreeRegistryBridge.InsertionPoint(root, 0))


def _stack(folder, n_dates=6):
    folder.mkdir(parents=True, exist_ok=True)
    dates = sentinel1_dates(start=dt.date(2020, 1, 3), n=n_dates, gaps=())
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    yy, xx = np.mgrid[0:8, 0:9]
    truth = -30.0 * t[:, None, None] * np.exp(-((yy - 4) ** 2 + (xx - 4) ** 2) / 10.0)[None]
    ifgs = []
    for i in range(n_dates):
        for j in range(i + 1, min(i + 3, n_dates)):
            a, b = dates[i], dates[j]
            phase = -(truth[j] - truth[i]) / 1000.0 * 4 * math.pi / LAMBDA
            ifgs.append(
                write_stack(folder / ("%s_%s.geo.unw.tif" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))), phase)
            )
    return ifgs


def _run(alg, params, project):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    ctx = QgsProcessingContext()
    ctx.setProject(project)
    return processing.runAndLoadResults(alg, params, feedback=QgsProcessingFeedback(), context=ctx)


def _groups(project):
    return project.layerTreeRoot().findGroups(True)


def test_sbas_outputs_in_one_group_whatever_the_selection(project, follow_current_node, tmp_path):
    from qgis.core import QgsLayerTreeRegistryBridge, QgsRasterLayer

    from subsidence_toolkit.processing_provider.styling import RUN_PROPERTY

    root = project.layerTreeRoot()
    mine = root.addGroup("My data")
    keep = QgsRasterLayer(write_stack(tmp_path / "dem.tif", np.ones((4, 4))), "dem")
    project.addMapLayer(keep, False)
    mine.addLayer(keep)
    # the user has selected a group of their own: new layers go there
    project.layerTreeRegistryBridge().setLayerInsertionPoint(QgsLayerTreeRegistryBridge.InsertionPoint(mine, 0))
    ifgs = _stack(tmp_path / "ifg")
    for k in range(2):
        _run(
            "subsidence:sbasinversion",
            {
                "INTERFEROGRAMS": ifgs,
                "OUTPUT_TIMESERIES": str(tmp_path / ("ts%d.tif" % k)),
                "OUTPUT_VELOCITY": str(tmp_path / ("v%d.tif" % k)),
                "OUTPUT_QUALITY": str(tmp_path / ("q%d.tif" % k)),
                "OUTPUT_NETWORK": str(tmp_path / ("net%d.gpkg" % k)),
            },
            project,
        )
    runs = [g for g in _groups(project) if g.customProperty(RUN_PROPERTY)]
    assert len(runs) == 2
    names = [g.name() for g in runs]
    assert len(set(names)) == 2  # two runs can be told apart
    for g in runs:
        name_pattern = r"SBAS inversion \u2013 \d{8}_\d{8}\.geo\.unw\.tif \+\d+ \u2013 \d\d:\d\d:\d\d"
        assert re.match(name_pattern, g.name()), g.name()
        assert g.findGroups() == []  # no nesting
        assert g.parent() is not None and not g.parent().customProperty(RUN_PROPERTY)
        layers = g.findLayers()
        assert len(layers) == 4  # time series, velocity, quality and the network table
        assert sorted(lyr.layer().type() for lyr in layers) == [0, 1, 1, 1]  # one vector table, three rasters
    # every loaded layer is in a run group; the user's own layer did not move
    for node in root.findLayers():
        if node.layer() is keep:
            assert node.parent() is mine
        else:
            assert node.parent().customProperty(RUN_PROPERTY)
    assert len(project.mapLayers()) == 9


def test_second_algorithm_does_not_drop_into_previous_group(project, follow_current_node, tmp_path):
    from subsidence_toolkit.processing_provider.styling import RUN_PROPERTY

    dates = sentinel1_dates(n=8)
    ts = write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=6, nx=5, nan_fraction=0.0), dates=dates)
    _run("subsidence:resampletimeseries", {"INPUT": ts, "METHOD": 0, "OUTPUT": str(tmp_path / "m.tif")}, project)
    rng = np.random.default_rng(1)
    table = tmp_path / "pts.csv"
    with open(table, "w") as f:
        f.write("y,a,b\n")
        for _ in range(60):
            a, b = rng.integers(0, 3), rng.integers(0, 2)
            f.write("%g,%d,%d\n" % (a * 2 + b + rng.normal(0, 0.3), a, b))
    uri = "file://%s?delimiter=,&type=csv" % table
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(uri, "pts", "delimitedtext")
    assert layer.isValid()
    project.addMapLayer(layer, False)
    project.layerTreeRoot().addLayer(layer)
    _run(
        "subsidence:geodetector",
        {
            "INPUT": layer,
            "TARGET_FIELD": "y",
            "FACTOR_FIELDS": ["a", "b"],
            "OUTPUT_FACTOR": str(tmp_path / "f.csv"),
            "OUTPUT_INTERACTION": str(tmp_path / "i.csv"),
        },
        project,
    )
    runs = [g for g in _groups(project) if g.customProperty(RUN_PROPERTY)]
    assert len(runs) == 2
    by_name = {g.name().split(" \u2013 ")[0]: g for g in runs}
    assert set(by_name) == {"Resample time series in time", "Geodetector"}
    assert by_name["Geodetector"].name().split(" \u2013 ")[1] == "pts"
    assert len(by_name["Geodetector"].findLayers()) == 2
    assert len(by_name["Resample time series in time"].findLayers()) == 1
    for g in runs:
        assert g.parent() is project.layerTreeRoot()
