"""DASK_SCHEDULER: the same algorithm on a 2-worker LocalCluster (loopback, no dashboard) equals the local run."""

import os

import numpy as np
import pytest
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack

from subsidence_toolkit.core.io import tasks as runner

pytestmark = pytest.mark.skipif(not runner.dask_available(), reason="dask.distributed not installed")


def test_resample_on_cluster_equals_local(run_alg, dask_cluster, tmp_path):
    dates = sentinel1_dates(n=20)
    src = write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=16, nx=6, nan_fraction=0.2), dates=dates)
    a, b = str(tmp_path / "local.tif"), str(tmp_path / "dask.tif")
    run_alg("resampletimeseries", {"INPUT": src, "OUTPUT": a, "MEMORY_LIMIT_MB": 0.01})
    run_alg(
        "resampletimeseries",
        {"INPUT": src, "OUTPUT": b, "MEMORY_LIMIT_MB": 0.01, "DASK_SCHEDULER": dask_cluster.scheduler_address},
    )
    assert np.array_equal(gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray(), equal_nan=True)


def test_unreachable_scheduler_is_a_clear_error(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    dates = sentinel1_dates(n=5)
    src = write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=3, nx=3), dates=dates)
    with pytest.raises(QgsProcessingException, match="cannot reach the Dask scheduler tcp://127.0.0.1:9"):
        run_alg(
            "resampletimeseries",
            {"INPUT": src, "OUTPUT": str(tmp_path / "o.tif"), "DASK_SCHEDULER": "tcp://127.0.0.1:9"},
        )
    assert not (tmp_path / "o.tif").exists()


def test_killing_a_worker_mid_run_does_not_corrupt_output(run_alg, dask_cluster, worker_killing_feedback, tmp_path):
    from qgis.core import QgsProcessingException

    dates = sentinel1_dates(n=30)
    src = write_stack(tmp_path / "ts.tif", smooth_stack(dates, ny=300, nx=40, nan_fraction=0.1), dates=dates)
    local, remote = str(tmp_path / "local.tif"), str(tmp_path / "dask.tif")
    run_alg("resampletimeseries", {"INPUT": src, "OUTPUT": local, "MEMORY_LIMIT_MB": 0.05})
    try:
        run_alg(
            "resampletimeseries",
            {"INPUT": src, "OUTPUT": remote, "MEMORY_LIMIT_MB": 0.05, "DASK_SCHEDULER": dask_cluster.scheduler_address},
            feedback=worker_killing_feedback,
        )
        completed = True
    except QgsProcessingException:
        completed = False
    assert worker_killing_feedback.killed
    print("worker-kill run completed: %s" % completed)
    if completed:  # Dask retried the lost blocks on the surviving / restarted worker
        assert np.array_equal(gdal.Open(local).ReadAsArray(), gdal.Open(remote).ReadAsArray(), equal_nan=True)
    else:  # a clear failure leaves nothing behind
        assert not os.path.exists(remote)
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]
