"""SBAS inversion on a 2-worker LocalCluster (loopback, no dashboard) equals the local run bit for bit."""

import os

import numpy as np
import pytest
from osgeo import gdal
from test_sbas_inversion import make_stack, outputs, read_table

from subsidence_toolkit.core.io import tasks as runner

pytestmark = pytest.mark.skipif(not runner.dask_available(), reason="dask.distributed not installed")


def _same_outputs(a, b):
    for key in ("OUTPUT_TIMESERIES", "OUTPUT_VELOCITY", "OUTPUT_QUALITY"):
        x, y = gdal.Open(a[key]), gdal.Open(b[key])
        assert x.RasterCount == y.RasterCount
        assert np.array_equal(x.ReadAsArray(), y.ReadAsArray(), equal_nan=True), key
        assert x.GetMetadata() == y.GetMetadata()
    assert read_table(a["OUTPUT_NETWORK"]) == read_table(b["OUTPUT_NETWORK"])


@pytest.mark.parametrize("weighting", [0, 1])
def test_sbas_on_cluster_equals_local(run_alg, dask_cluster, tmp_path, weighting):
    """Automatic reference (both passes as tasks), coherence, NoData pixels, 20 row blocks."""
    dates, truth, ifgs, cohs, _ = make_stack(tmp_path / "stack", n_dates=10)
    # LiCSAR names, our own convention (the exact 0 phase at the reference is valid): read as generic products
    params = {"INTERFEROGRAMS": ifgs, "COHERENCE": cohs, "WEIGHTING": weighting, "MEMORY_LIMIT_MB": 0.02, "PRODUCT": 3}
    local = run_alg("sbasinversion", dict(params, **outputs(tmp_path, "local")))
    remote = run_alg(
        "sbasinversion", dict(params, DASK_SCHEDULER=dask_cluster.scheduler_address, **outputs(tmp_path, "dask"))
    )
    _same_outputs(local, remote)
    ts = gdal.Open(local["OUTPUT_TIMESERIES"]).ReadAsArray()
    assert ts.shape == truth.shape and np.isfinite(ts[:, 5:15, 5:15]).all()
    assert np.nanmax(np.abs(ts[:, 5:15, 5:15] - truth[:, 5:15, 5:15])) < 1e-3  # noise-free stack


def test_killing_a_worker_mid_sbas_does_not_corrupt_output(run_alg, dask_cluster, worker_killing_feedback, tmp_path):
    from qgis.core import QgsProcessingException

    dates, truth, ifgs, cohs, _ = make_stack(tmp_path / "stack", n_dates=10)
    params = {"INTERFEROGRAMS": ifgs, "COHERENCE": cohs, "MEMORY_LIMIT_MB": 0.02}
    local = run_alg("sbasinversion", dict(params, **outputs(tmp_path, "local")))
    fb = worker_killing_feedback
    out = outputs(tmp_path, "dask")
    try:
        remote = run_alg(
            "sbasinversion", dict(params, DASK_SCHEDULER=dask_cluster.scheduler_address, **out), feedback=fb
        )
        completed = True
    except QgsProcessingException:
        completed = False
    assert fb.killed
    print("worker-kill SBAS run completed: %s" % completed)
    if completed:
        _same_outputs(local, remote)
    else:
        assert not any(os.path.exists(p) for p in out.values())
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]
