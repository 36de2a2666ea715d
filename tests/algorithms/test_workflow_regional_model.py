"""The shipped model subsidence:workflowregional: frames -> mosaic -> vertical -> the rest of the workflow."""

import numpy as np
import pandas as pd
from osgeo import gdal

from subsidence_toolkit.demo import world
from subsidence_toolkit.demo.step_90_workflow import FLDAS_VARS, _pattern


def test_regional_model_is_valid(qgis_app):
    from qgis.core import QgsApplication

    model = QgsApplication.processingRegistry().algorithmById("subsidence:workflowregional")
    assert model is not None, "the provider does not offer subsidence:workflowregional"
    ok, errors = model.validate()
    assert ok, errors
    assert sorted(c.algorithmId() for c in model.childAlgorithms().values()) == sorted(
        [
            "subsidence:mosaicframes",
            "subsidence:mosaicframes",
            "subsidence:projectlos",
            "subsidence:projectlos",
            "subsidence:gracedownscaling",
            "subsidence:groundwateranomaly",
            "subsidence:sampledeformationclasses",
            "subsidence:laggedcorrelation",
            "subsidence:geodetector",
            "subsidence:workflowreport",
        ]
    )
    for p in model.parameterDefinitions():
        if not p.isDestination():
            assert p.help() or model.helpContent().get(p.name()), p.name()


def test_regional_workflow_runs(run_alg, tmp_path):
    w = world.generate(tmp_path / "world", tiny=True)
    r = w["regional"]
    # frame velocities: least-squares slopes of the frames' monthly series
    vel = []
    for name in ("frame_a", "frame_b"):
        ds = gdal.Open(r[name])
        a = ds.ReadAsArray().astype(float)
        t = np.arange(a.shape[0]) / 12.0
        slope = np.polyfit(t, a.reshape(a.shape[0], -1), 1)[0].reshape(a.shape[1:])
        drv = gdal.GetDriverByName("GTiff")
        v = drv.Create(str(tmp_path / (name + "_v.tif")), a.shape[2], a.shape[1], 1, gdal.GDT_Float32)
        v.SetGeoTransform(ds.GetGeoTransform())
        v.SetProjection(ds.GetProjection())
        v.GetRasterBand(1).WriteArray(slope)
        v = None
        vel.append(str(tmp_path / (name + "_v.tif")))
    files = "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS)
    out = tmp_path / "out"
    out.mkdir()
    res = run_alg(
        "subsidence:workflowregional",
        {
            "frames": [r["frame_a"], r["frame_b"]],
            "frame_velocities": vel,
            "up_component": r["asc_U"],
            "grace": w["grace"],
            "model_files": files,
            "component_files": files,
            "baseline_start": 2020.0,
            "baseline_end": 2021.999,
            "areas": w["areas"],
            "area_field": "area",
            "points_per_class": 20,
            "max_lag": 2,
            "factors": list(w["factors"].values()),
            "classes": 5,
            "mosaic:LOS mosaic time series": str(out / "m.tif"),
            "mosaic:Frame offsets": str(out / "off.csv"),
            "mosaicvelocity:LOS mosaic velocity": str(out / "mv.tif"),
            "mosaicvelocity:Frame velocity offsets": str(out / "offv.csv"),
            "vertical:Monthly vertical displacement": str(out / "v.tif"),
            "verticalvelocity:Vertical velocity": str(out / "vv.tif"),
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
    )
    assert "Lagged correlation: best lag per group" in open(res["report:Workflow report"], encoding="utf-8").read()
    offs = pd.read_csv(res["mosaic:Frame offsets"])
    got = -offs[offs["frame"] == 1]["offset_mm"].to_numpy()
    assert np.abs(got - np.array(r["frame_b_offsets_mm"])).max() < 1.0  # 1 mm noise, median of a small overlap
    vv = gdal.Open(res["verticalvelocity:Vertical velocity"]).ReadAsArray()
    assert gdal.Open(res["verticalvelocity:Vertical velocity"]).GetMetadata()["COMPONENT"].startswith("vertical")
    assert np.isfinite(vv).all()
    gd = pd.read_csv(res["geodetector:Geodetector factors"])
    assert len(gd) == len(w["factors"])
