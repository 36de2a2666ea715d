"""The shipped model subsidence:workflow: valid against the current algorithms, and it runs end to end."""

import numpy as np
import pandas as pd
from osgeo import gdal

from subsidence_toolkit.demo import world
from subsidence_toolkit.demo.step_90_workflow import FLDAS_VARS, _pattern


def test_shipped_model_is_valid(qgis_app):
    from qgis.core import QgsApplication

    model = QgsApplication.processingRegistry().algorithmById("subsidence:workflow")
    assert model is not None, "the provider does not offer subsidence:workflow"
    assert model.displayName() == "Subsidence\u2013groundwater workflow"
    ok, errors = model.validate()
    assert ok, errors
    assert sorted(c.algorithmId() for c in model.childAlgorithms().values()) == sorted(
        [
            "subsidence:sbasinversion",
            "subsidence:maskbyquality",
            "subsidence:resampletimeseries",
            "subsidence:gracedownscaling",
            "subsidence:groundwateranomaly",
            "subsidence:sampledeformationclasses",
            "subsidence:laggedcorrelation",
            "subsidence:geodetector",
            "subsidence:workflowreport",
        ]
    )
    assert len(model.shortHelpString()) > 100
    for p in model.parameterDefinitions():
        if not p.isDestination():
            assert p.help() or model.helpContent().get(p.name()), p.name()


def test_model_reads_well_in_dialog_and_modeler(qgis_app):
    """Inputs in the order the workflow runs; steps with readable names; no box hides another."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QRectF

    model = QgsApplication.processingRegistry().algorithmById("subsidence:workflow")
    names = [p.name() for p in model.parameterDefinitions() if not p.isDestination()]
    order = [
        "interferograms",
        "coherence",
        "grace",
        "model_files",
        "component_files",
        "baseline_start",
        "baseline_end",
        "areas",
        "area_field",
        "points_per_class",
        "max_lag",
        "factors",
        "classes",
    ]
    assert [n for n in names if n in order] == order
    boxes = []
    for comp in model.parameterComponents().values():
        boxes.append(("input " + comp.parameterName(), comp.position(), comp.size()))
    for cid, c in model.childAlgorithms().items():
        assert c.description() != cid and " " in c.description(), c.description()
        boxes.append((c.description(), c.position(), c.size()))
        for name, o in c.modelOutputs().items():
            boxes.append(("output " + name, o.position(), o.size()))
    rects = [(n, QRectF(p.x() - s.width() / 2, p.y() - s.height() / 2, s.width(), s.height())) for n, p, s in boxes]
    clashes = [(a, b) for i, (a, ra) in enumerate(rects) for b, rb in rects[i + 1 :] if ra.intersects(rb)]
    assert not clashes


def test_workflow_runs_through_processing_run(qgis_app, tmp_path):
    """End to end, loaded as in the desktop (processing.runAndLoadResults): one layer-tree group for the run."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    from subsidence_toolkit.processing_provider.styling import RUN_PROPERTY

    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    w = world.generate(tmp_path / "world", tiny=True)
    out = tmp_path / "out"
    out.mkdir()
    files = "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS)
    res = processing.runAndLoadResults(
        "subsidence:workflow",
        {
            "interferograms": w["interferograms"],
            "coherence": w["coherence"],
            "grace": w["grace"],
            "model_files": files,
            "component_files": files,  # baseline: automatic (the data's period, 2020-2021)
            "areas": w["areas"],
            "area_field": "area",
            "points_per_class": 20,
            "max_lag": 2,
            "factors": list(w["factors"].values()),
            "classes": 5,
            "sbas:LOS velocity": str(out / "v.tif"),
            "sbas:LOS displacement time series": str(out / "ts.tif"),
            "sbas:SBAS quality": str(out / "q.tif"),
            "sbas:Interferogram network": str(out / "net.csv"),
            "monthly:Monthly displacement": str(out / "m.tif"),
            "downscaling:Downscaled TWSA": str(out / "td.tif"),
            "gwsa:GWSA": str(out / "gwsa.tif"),
            "classes:Class sample points": str(out / "p.gpkg"),
            "classes:Class time series": str(out / "classes.csv"),
            "lag:Lagged correlation": str(out / "lag.csv"),
            "lag:Lagged correlation report": str(out / "lag.html"),
            "geodetector:Geodetector factors": str(out / "gd.csv"),
            "geodetector:Geodetector interactions": str(out / "gdi.csv"),
            "geodetector:Geodetector report": str(out / "gd.html"),
            "report:Workflow report": str(out / "report.html"),
        },
        feedback=QgsProcessingFeedback(),
        context=context,
    )
    groups = [g for g in project.layerTreeRoot().findGroups(True) if g.customProperty(RUN_PROPERTY)]
    assert len(groups) == 1 and groups[0].name().startswith("Subsidence\u2013groundwater workflow \u2013 ")
    assert len(groups[0].findLayers()) == len(project.mapLayers()) >= 10  # every loaded output, one group
    vel = gdal.Open(res["sbas:LOS velocity"]).ReadAsArray()
    truth = gdal.Open(w["truth"]["velocity_truth"]).ReadAsArray()
    md = gdal.Open(res["sbas:LOS displacement time series"]).GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    ok = np.isfinite(vel) & np.isfinite(truth)
    assert np.sqrt(np.mean((vel[ok] - (truth[ok] - truth[r, c])) ** 2)) < 5.0
    assert gdal.Open(res["gwsa:GWSA"]).RasterCount == 24
    lag = pd.read_csv(res["lag:Lagged correlation"])
    assert {"area=irrigation", "area=mining"} <= {g.split(",")[0] for g in lag["group"]}
    gd = pd.read_csv(res["geodetector:Geodetector factors"]).sort_values("q", ascending=False)
    assert gd["factor"].iloc[0] == w["truth"]["strongest_factor"]
    # the summary report the demo writes, now an output of the model itself
    text = open(res["report:Workflow report"], encoding="utf-8").read()
    for part in (
        "<h2>Maps</h2>",
        "<h2>Class series</h2>",
        "best lag per group",
        "Geodetector: factor detector",
        "href='lag.html'",
        "href='gd.html'",
        w["truth"]["strongest_factor"],
    ):
        assert part in text, part
    assert text.count("<img") == 2
    project.clear()
