"""THREADS: downscaling, GWSA and resampling on 3 threads (windows arriving in any order, each under the
cap / 3) equal one thread on the same windows, bit for bit (rasters and regional-mean tables; the tables'
sums depend on the window split, not on the threads)."""

import numpy as np
import pandas as pd
import pytest
from grace_inputs import MONTHS, build_inputs
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("gr_threads"))


def _same_raster(a, b):
    x, y = gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray()
    assert np.isfinite(x).any()
    assert np.array_equal(x, y, equal_nan=True)


def test_downscaling_and_gwsa_threads_equal_one(run_alg, inputs, tmp_path):
    common = {
        "GRACE": inputs["grace"],
        "GRACE_SCALE": 10,
        "MODEL_FILES": inputs["sm"] + ";" + inputs["swe"],
        "INTERPOLATION": 1,
    }
    res = {}
    for threads, mem in ((1, 0.03), (3, 0.09)):  # the same windows (cap / threads): tables bit for bit
        res[threads] = run_alg(
            "gracedownscaling",
            dict(
                common,
                THREADS=threads,
                MEMORY_LIMIT_MB=mem,
                OUTPUT=str(tmp_path / ("d%d.tif" % threads)),
                OUTPUT_TABLE=str(tmp_path / ("d%d.csv" % threads)),
            ),
        )
    _same_raster(res[1]["OUTPUT"], res[3]["OUTPUT"])
    assert gdal.Open(res[1]["OUTPUT"]).RasterCount == len(MONTHS)
    with open(res[1]["OUTPUT_TABLE"]) as f1, open(res[3]["OUTPUT_TABLE"]) as f2:
        assert f1.read() == f2.read()
    gw = {}
    for threads, mem in ((1, 0.02), (3, 0.06)):
        gw[threads] = run_alg(
            "groundwateranomaly",
            {
                "TWSA": res[1]["OUTPUT"],
                "COMPONENT_FILES": ";".join([inputs["sm"], inputs["can"]]),
                "MODE": 0,
                "BASELINE_START": 2004.0,
                "BASELINE_END": 2004.999,
                "MEMORY_LIMIT_MB": mem,
                "THREADS": threads,
                "OUTPUT": str(tmp_path / ("g%d.tif" % threads)),
                "OUTPUT_TABLE": str(tmp_path / ("g%d.csv" % threads)),
            },
        )
    _same_raster(gw[1]["OUTPUT"], gw[3]["OUTPUT"])
    pd.testing.assert_frame_equal(
        pd.read_csv(gw[1]["OUTPUT_TABLE"]), pd.read_csv(gw[3]["OUTPUT_TABLE"]), check_exact=True
    )


def test_resampling_threads_equal_one(run_alg, tmp_path):
    dates = sentinel1_dates(n=25)
    path = write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=23, nx=9), dates=dates)
    out = {}
    for threads, mem in ((1, 1000), (3, 0.003)):  # resampling is per pixel: any split
        out[threads] = run_alg(
            "resampletimeseries",
            {
                "INPUT": path,
                "METHOD": 2,
                "THREADS": threads,
                "MEMORY_LIMIT_MB": mem,
                "OUTPUT": str(tmp_path / ("r%d.tif" % threads)),
            },
        )["OUTPUT"]
    _same_raster(out[1], out[3])


@pytest.mark.parametrize("threads, expected", [(1, 1), (2, 2), (0, None)])
def test_outputs_compress_on_the_runs_threads(run_alg, tmp_path, monkeypatch, threads, expected):
    """THREADS also sets the threads that compress the GeoTIFF outputs (0: every core)."""
    from subsidence_toolkit.core.io import rasters
    from subsidence_toolkit.core.io.tasks import default_threads

    seen = []
    real = rasters.RasterWriter.open
    monkeypatch.setattr(
        rasters.RasterWriter, "open", lambda self: seen.append(rasters._COMPRESSION_THREADS.get()) or real(self)
    )
    dates = sentinel1_dates(n=6)
    path = write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=5, nx=4), dates=dates)
    run_alg("resampletimeseries", {"INPUT": path, "THREADS": threads, "OUTPUT": str(tmp_path / "r.tif")})
    assert seen == [expected or default_threads()]
    assert rasters._COMPRESSION_THREADS.get() == 1
