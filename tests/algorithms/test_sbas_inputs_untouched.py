"""subsidence:sbasinversion leaves the input folder as it was: no layer is loaded for a path, so QGIS computes
no band statistics and GDAL writes no ``.aux.xml`` next to the inputs (processing.run and qgis_process.bin)."""

import os

import numpy as np
import pytest
from osgeo import gdal
from test_sbas_inversion import make_stack, outputs

from subsidence_toolkit.demo.headless import QgisProcess, find_qgis_process


def _listing(folder):
    return sorted(
        (p, os.path.getsize(os.path.join(folder, p)), os.path.getmtime(os.path.join(folder, p)))
        for p in os.listdir(folder)
    )


def test_processing_run_writes_nothing_next_to_the_inputs(run_alg, qgis_app, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    stack = tmp_path / "stack"
    _, _, ifgs, cohs, _ = make_stack(stack)
    before = _listing(stack)
    out = tmp_path / "out"
    out.mkdir()
    res = run_alg("sbasinversion", dict(INTERFEROGRAMS=ifgs, COHERENCE=cohs, WEIGHTING=1, **outputs(out)))
    assert _listing(stack) == before
    ts_paths = gdal.Open(res["OUTPUT_TIMESERIES"]).ReadAsArray()
    assert np.isfinite(ts_paths).any()
    # the same run with the inputs as layers of the project (their paths resolved from the layers; the
    # project loaded them, so the run adds nothing either) and as one ';'-separated string: same output
    layers = [QgsRasterLayer(p, os.path.basename(p), "gdal") for p in ifgs[:3]]
    QgsProject.instance().addMapLayers(layers)
    try:
        after_load = _listing(stack)
        res2 = run_alg(
            "sbasinversion",
            dict(INTERFEROGRAMS=layers + ifgs[3:], COHERENCE=";".join(cohs), WEIGHTING=1, **outputs(out, "o2")),
        )
        assert _listing(stack) == after_load
    finally:
        QgsProject.instance().removeMapLayers([lyr.id() for lyr in layers])
    np.testing.assert_array_equal(gdal.Open(res2["OUTPUT_TIMESERIES"]).ReadAsArray(), ts_paths)


@pytest.mark.skipif(find_qgis_process() is None, reason="qgis_process.bin not installed")
def test_qgis_process_writes_nothing_next_to_the_inputs(tmp_path):
    stack = tmp_path / "stack"
    _, _, ifgs, cohs, _ = make_stack(stack)
    before = _listing(stack)
    qp = QgisProcess(tmp_path / "qp")
    out = tmp_path / "out"
    out.mkdir()
    res = qp.run("subsidence:sbasinversion", dict(INTERFEROGRAMS=ifgs, COHERENCE=cohs, **outputs(out)))
    assert _listing(stack) == before
    assert np.isfinite(gdal.Open(res["results"]["OUTPUT_TIMESERIES"]).ReadAsArray()).any()
