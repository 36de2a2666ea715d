"""GRACE downscaling and GWSA on a 2-worker LocalCluster (loopback, no dashboard) equal the local run bit for bit."""

import os

import numpy as np
import pandas as pd
import pytest
from grace_inputs import MONTHS, build_inputs
from osgeo import gdal

from subsidence_toolkit.core.grace import downscaling, gwsa, products
from subsidence_toolkit.core.io import tasks as runner

pytestmark = pytest.mark.skipif(not runner.dask_available(), reason="dask.distributed not installed")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("gr_dask"))


def _on(client):
    """A run_tasks runner on the cluster of ``client`` (shared part scattered once)."""
    return lambda fn, tasks, shared: runner.map_blocks(fn, tasks, client=client, shared=shared)


def _collect(shape):
    out = np.full(shape, np.nan)

    def write(r0, b, c0=0):
        out[:, r0 : r0 + b.shape[1], c0 : c0 + b.shape[2]] = b

    return out, write


@pytest.mark.parametrize("method", ["bilinear", "idw"])
def test_core_downscaling_on_cluster_equals_local(inputs, dask_cluster, method):
    """Core level: TD windows and the regional-mean table (float64, no CSV rounding) identical; the
    canopy input on the 0.25 deg GLDAS grid is regridded inside the tasks."""
    from distributed import Client

    def run(run_tasks):
        g = products.ProductReader(inputs["grace"], units="10")
        m = downscaling.ModelSum([products.ProductReader(inputs["sm"]), products.ProductReader(inputs["can"])])
        out, write = _collect((len(g.months), 20, 20))
        n = {"windows": 0}

        def counting(r0, b, c0=0):
            n["windows"] += 1
            write(r0, b, c0)

        _, table = downscaling.weighted_downscaling(
            g, m, method=method, write=counting, memory_mb=0.03, run_tasks=run_tasks
        )
        return out, table, n["windows"]

    local, t_local, n_local = run(None)
    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        remote, t_remote, n_remote = run(_on(client))
    assert n_local == n_remote > 4  # several windows, so arrival order can differ from window order
    assert np.isfinite(local).any()
    assert np.array_equal(local, remote, equal_nan=True)
    pd.testing.assert_frame_equal(t_local, t_remote, check_exact=True)


def test_downscaling_and_gwsa_algorithms_on_cluster_equal_local(run_alg, inputs, dask_cluster, tmp_path):
    common = {
        "GRACE": inputs["grace"],
        "GRACE_SCALE": 10,
        "MODEL_FILES": inputs["sm"] + ";" + inputs["swe"],
        "INTERPOLATION": 1,
        "MEMORY_LIMIT_MB": 0.05,
        "THREADS": 1,
    }  # the windows of a Dask run (full cap)
    res = {}
    for how, sched in (("local", ""), ("dask", dask_cluster.scheduler_address)):
        res[how] = run_alg(
            "gracedownscaling",
            dict(
                common,
                DASK_SCHEDULER=sched,
                OUTPUT=str(tmp_path / (how + ".tif")),
                OUTPUT_TABLE=str(tmp_path / (how + ".csv")),
            ),
        )
    a = gdal.Open(res["local"]["OUTPUT"]).ReadAsArray()
    b = gdal.Open(res["dask"]["OUTPUT"]).ReadAsArray()
    assert a.shape == (len(MONTHS), 20, 20) and np.isfinite(a[0]).all()
    assert np.array_equal(a, b, equal_nan=True)
    with open(res["local"]["OUTPUT_TABLE"]) as f1, open(res["dask"]["OUTPUT_TABLE"]) as f2:
        assert f1.read() == f2.read()
    # GWSA of that output, anomaly mode with the GLDAS canopy regridded to the 0.1 deg grid
    gw = {}
    for how, sched in (("local", ""), ("dask", dask_cluster.scheduler_address)):
        gw[how] = run_alg(
            "groundwateranomaly",
            {
                "TWSA": res["local"]["OUTPUT"],
                "COMPONENT_FILES": ";".join([inputs["sm"], inputs["can"]]),
                "MODE": 0,
                "BASELINE_START": 2004.0,
                "BASELINE_END": 2004.999,
                "MEMORY_LIMIT_MB": 0.02,
                "THREADS": 1,
                "DASK_SCHEDULER": sched,
                "OUTPUT": str(tmp_path / ("gw_" + how + ".tif")),
                "OUTPUT_TABLE": str(tmp_path / ("gw_" + how + ".csv")),
            },
        )
    a = gdal.Open(gw["local"]["OUTPUT"]).ReadAsArray()
    b = gdal.Open(gw["dask"]["OUTPUT"]).ReadAsArray()
    assert np.isfinite(a).sum() > 0.9 * a.size
    assert np.array_equal(a, b, equal_nan=True)
    t1, t2 = pd.read_csv(gw["local"]["OUTPUT_TABLE"]), pd.read_csv(gw["dask"]["OUTPUT_TABLE"])
    pd.testing.assert_frame_equal(t1, t2, check_exact=True)


def test_core_gwsa_change_mode_with_mask_on_cluster(inputs, dask_cluster):
    from distributed import Client

    def run(run_tasks):
        t = products.ProductReader(inputs["sm"])
        comps = [products.ProductReader(inputs["swe"]), products.ProductReader(inputs["can"])]
        mask = np.zeros((20, 20), bool)
        mask[2:17, 3:15] = True
        out, write = _collect((len(t.months), 20, 20))
        _, table = gwsa.groundwater_anomaly(
            t, comps, mode="change", mask=mask, write=write, memory_mb=0.01, run_tasks=run_tasks
        )
        return out, table

    local, t_local = run(None)
    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        remote, t_remote = run(_on(client))
    assert np.isfinite(local).sum() == (len(MONTHS) - 1) * 15 * 12
    assert np.array_equal(local, remote, equal_nan=True)
    pd.testing.assert_frame_equal(t_local, t_remote, check_exact=True)


def test_killing_a_worker_mid_downscaling_does_not_corrupt_output(
    run_alg, inputs, dask_cluster, worker_killing_feedback, tmp_path
):
    """A worker is SIGKILLed when the first window has arrived: the run completes identically through
    Dask's retry, or fails with an error and leaves no output (nor temporary file)."""
    from qgis.core import QgsProcessingException

    params = {
        "GRACE": inputs["grace"],
        "GRACE_SCALE": 10,
        "MODEL_FILES": inputs["sm"] + ";" + inputs["swe"],
        "MEMORY_LIMIT_MB": 0.01,
        "THREADS": 1,
    }  # the local run on the windows of the Dask run
    local = run_alg(
        "gracedownscaling", dict(params, OUTPUT=str(tmp_path / "local.tif"), OUTPUT_TABLE=str(tmp_path / "local.csv"))
    )
    fb = worker_killing_feedback
    remote, table = str(tmp_path / "dask.tif"), str(tmp_path / "dask.csv")
    try:
        run_alg(
            "gracedownscaling",
            dict(params, OUTPUT=remote, OUTPUT_TABLE=table, DASK_SCHEDULER=dask_cluster.scheduler_address),
            feedback=fb,
        )
        completed = True
    except QgsProcessingException:
        completed = False
    assert fb.killed
    print("worker-kill downscaling run completed: %s" % completed)
    if completed:
        assert np.array_equal(gdal.Open(local["OUTPUT"]).ReadAsArray(), gdal.Open(remote).ReadAsArray(), equal_nan=True)
        with open(local["OUTPUT_TABLE"]) as f1, open(table) as f2:
            assert f1.read() == f2.read()
    else:
        assert not os.path.exists(remote)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".") or "partial" in f]
