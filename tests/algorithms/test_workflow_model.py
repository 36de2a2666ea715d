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
    assert sorted(c.algorithmId() for c in model.childAlgorithms().values()) == sorted([
        "subsidence:sbasinversion", "subsidence:resampletimeseries", "subsidence:gracedownscaling",
        "subsidence:groundwateranomaly", "subsidence:sampledeformationclasses", "subsidence:laggedcorrelation",
        "subsidence:geodetector"])
    assert len(model.shortHelpString()) > 100
    for p in model.parameterDefinitions():
        if not p.isDestination():
            assert p.help() or model.helpContent().get(p.name()), p.name()


def test_workflow_runs_through_processing_run(run_alg, tmp_path):
    w = world.generate(tmp_path / "world", tiny=True)
    out = tmp_path / "out"
    out.mkdir()
    files = "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS)
    res = run_alg("subsidence:workflow", {
        "interferograms": w["interferograms"], "coherence": w["coherence"], "grace": w["grace"],
        "model_files": files, "component_files": files, "baseline_start": 2020.0, "baseline_end": 2021.999,
        "areas": w["areas"], "area_field": "area", "points_per_class": 20, "max_lag": 2,
        "factors": list(w["factors"].values()), "classes": 5,
        "sbas:LOS velocity": str(out / "v.tif"), "sbas:LOS displacement time series": str(out / "ts.tif"),
        "sbas:SBAS quality": str(out / "q.tif"), "sbas:Interferogram network": str(out / "net.csv"),
        "monthly:Monthly displacement": str(out / "m.tif"), "downscaling:Downscaled TWSA": str(out / "td.tif"),
        "gwsa:GWSA": str(out / "gwsa.tif"), "classes:Class sample points": str(out / "p.gpkg"),
        "classes:Class time series": str(out / "classes.csv"), "lag:Lagged correlation": str(out / "lag.csv"),
        "lag:Lagged correlation report": str(out / "lag.html"), "geodetector:Geodetector factors": str(out / "gd.csv"),
        "geodetector:Geodetector interactions": str(out / "gdi.csv"),
        "geodetector:Geodetector report": str(out / "gd.html"),
    })
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
