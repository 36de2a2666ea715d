"""A .model3 that chains two of the plugin's algorithms runs like any Processing model."""

import numpy as np
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack

from subsidence_toolkit.core.io.dates import days_since
from subsidence_toolkit.core.timeseries import resample


def _build_model(path):
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("chain", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("stack", "stack"), QgsProcessingModelParameter("stack"))

    first = QgsProcessingModelChildAlgorithm("subsidence:resampletimeseries")
    first.setChildId("every6")
    first.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("stack")])
    first.addParameterSources("METHOD", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    first.addParameterSources("STEP", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    first.addParameterSources("STEP_DAYS", [QgsProcessingModelChildParameterSource.fromStaticValue(6)])
    model.addChildAlgorithm(first)

    second = QgsProcessingModelChildAlgorithm("subsidence:resampletimeseries")
    second.setChildId("monthly")
    second.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("every6", "OUTPUT")])
    second.addParameterSources("METHOD", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    out = QgsProcessingModelOutput("final", "final")
    out.setChildOutputName("OUTPUT")
    out.setChildId("monthly")
    second.setModelOutputs({"final": out})
    model.addChildAlgorithm(second)
    assert model.toFile(str(path))
    return str(path)


def test_model3_chain(qgis_app, tmp_path):
    import processing
    from qgis.core import QgsProcessingModelAlgorithm

    dates = sentinel1_dates(n=24)
    values = smooth_stack(dates, ny=4, nx=5, nan_fraction=0.0)
    src = write_stack(tmp_path / "ts.tif", values, dates=dates)
    model_path = _build_model(tmp_path / "chain.model3")
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(model_path)
    # A model saved by QGIS >= 3.40 (internal_version Version2) names its output after the output
    # ("final"), older ones "childId:name" ("monthly:final"): use whatever this QGIS made.
    (output_name,) = [p.name() for p in model.destinationParameterDefinitions()]
    assert output_name in ("monthly:final", "final")
    final = str(tmp_path / "final.tif")
    res = processing.run(model, {"stack": src, output_name: final})
    assert res[output_name] == final
    ds = gdal.Open(final)
    # linear then linear: the 6-day grid contains every 12-day epoch only where they align, so
    # the expected result is linear interpolation of the linearly interpolated 6-day series
    t = days_since(dates)
    six = resample.regular_dates(dates[0], dates[-1], 6)
    mid = resample.temporal_resample_block(values.astype(np.float32), t, days_since(six, dates[0]), "linear")
    monthly = resample.target_dates(six)
    expected = resample.temporal_resample_block(
        mid.astype(np.float32), days_since(six, dates[0]), days_since(monthly, dates[0]), "linear"
    )
    assert ds.RasterCount == len(monthly)
    np.testing.assert_allclose(ds.ReadAsArray(), expected, atol=1e-4)
