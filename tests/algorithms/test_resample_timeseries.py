import os

import numpy as np
import pytest
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack

from subsidence_toolkit.core.io.dates import days_since
from subsidence_toolkit.core.timeseries import resample


@pytest.fixture
def stack(tmp_path):
    dates = sentinel1_dates(n=30)
    values = smooth_stack(dates, ny=9, nx=8, nan_fraction=0.1)
    return write_stack(tmp_path / "ts.tif", values, dates=dates), dates, values


def _outputs_left(folder):
    return sorted(f for f in os.listdir(folder) if f.startswith("out") or "partial" in f)


def test_monthly_cubic_matches_core_and_is_labelled(run_alg, stack, tmp_path):
    path, dates, values = stack
    out = str(tmp_path / "out.tif")
    res = run_alg("resampletimeseries", {"INPUT": path, "METHOD": 1, "OUTPUT": out})
    assert res["OUTPUT"] == out
    ds = gdal.Open(out)
    targets = resample.target_dates(dates)
    assert ds.RasterCount == len(targets)
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == [t.isoformat() for t in targets]
    expected = resample.temporal_resample_block(
        values.astype(np.float32), days_since(dates), days_since(targets, dates[0]), "cubic"
    )
    np.testing.assert_allclose(ds.ReadAsArray(), expected, atol=1e-4, equal_nan=True)


def test_tiny_memory_cap_is_bit_identical(run_alg, stack, tmp_path):
    path, _, _ = stack
    a, b = str(tmp_path / "a.tif"), str(tmp_path / "b.tif")
    run_alg("resampletimeseries", {"INPUT": path, "METHOD": 2, "OUTPUT": a, "MEMORY_LIMIT_MB": 1000})
    # one row per block
    run_alg("resampletimeseries", {"INPUT": path, "METHOD": 2, "OUTPUT": b, "MEMORY_LIMIT_MB": 0.001})
    assert np.array_equal(gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray(), equal_nan=True)


def test_every_n_days_with_start_end(run_alg, stack, tmp_path):
    path, dates, _ = stack
    out = str(tmp_path / "out.tif")
    run_alg(
        "resampletimeseries",
        {
            "INPUT": path,
            "METHOD": 0,
            "STEP": 1,
            "STEP_DAYS": 30,
            "START": "2020-01-01",
            "END": "2020-06-30",
            "OUTPUT": out,
        },
    )
    ds = gdal.Open(out)
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == [
        "2020-01-01",
        "2020-01-31",
        "2020-03-01",
        "2020-03-31",
        "2020-04-30",
        "2020-05-30",
        "2020-06-29",
    ]


@pytest.mark.parametrize(
    "case,descs,params,message",
    [
        ("nodates", ["a", "b", "c"], {}, "band 1 has no date"),
        ("dup", ["2020-01-01", "2020-02-01", "2020-02-01"], {}, "duplicate date 2020-02-01 in band 3"),
        ("unsorted", ["2020-03-01", "2020-02-01", "2020-04-01"], {}, "not in increasing order: band 2"),
        ("single", ["2020-01-01"], {}, "at least two dates"),
        (
            "startend",
            ["2020-01-01", "2020-02-01", "2020-04-01"],
            {"START": "2020-03-01", "END": "2020-02-01"},
            "start date 2020-03-01 is after end date 2020-02-01",
        ),
        (
            "baddate",
            ["2020-01-01", "2020-02-01", "2020-04-01"],
            {"START": "March"},
            "Start date: 'March' is not a date",
        ),
    ],
)
def test_bad_input_raises_and_leaves_nothing(run_alg, tmp_path, case, descs, params, message):
    from qgis.core import QgsProcessingException

    values = np.random.default_rng(0).normal(size=(len(descs), 3, 4))
    path = write_stack(tmp_path / ("in_%s.tif" % case), values, descriptions=descs)
    out = str(tmp_path / "out.tif")
    with pytest.raises(QgsProcessingException, match=message):
        run_alg("resampletimeseries", dict({"INPUT": path, "OUTPUT": out}, **params))
    assert _outputs_left(tmp_path) == []


def test_non_numeric_band(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    path = str(tmp_path / "complex.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 4, 3, 2, gdal.GDT_CFloat32)
    ds.SetGeoTransform((0, 1, 0, 0, 0, -1))
    ds.GetRasterBand(1).SetDescription("2020-01-01")
    ds.GetRasterBand(2).SetDescription("2020-02-01")
    ds = None
    with pytest.raises(QgsProcessingException, match="band 1 has the non-numeric data type CFloat32"):
        run_alg("resampletimeseries", {"INPUT": path, "OUTPUT": str(tmp_path / "out.tif")})
    assert _outputs_left(tmp_path) == []


def test_cancel_leaves_no_output(qgis_app, stack, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    path, _, _ = stack
    fb = QgsProcessingFeedback()
    fb.cancel()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run(
            "subsidence:resampletimeseries",
            {"INPUT": path, "OUTPUT": str(tmp_path / "out.tif"), "MEMORY_LIMIT_MB": 0.001},
            feedback=fb,
            context=QgsProcessingContext(),
        )
    assert _outputs_left(tmp_path) == []


def test_help_on_every_parameter(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("subsidence:resampletimeseries")
    assert alg is not None and alg.shortHelpString()
    for p in alg.parameterDefinitions():
        assert p.help(), p.name()
