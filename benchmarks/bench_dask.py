#!/usr/bin/env python3
"""Benchmark: GRACE weighted downscaling locally vs on a 2-worker Dask LocalCluster (issue 10).

Inputs are those of ``bench_downscale.py`` (CSR-layout 0.25 deg mascon NetCDF + a 0.01 deg model
TWS NetCDF of ``--fine`` x ``--fine`` cells and ``--months`` months), made once in a temporary
folder. Both sides run :func:`core.grace.downscaling.weighted_downscaling` with the same memory cap
(so the same windows); the Dask side sends the window tasks (:func:`downscale_window_task`) to a
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
dashboard_address=None)`` whose workers read the model file themselves. Timed: reading + computing
TD for every month into memory (float32) + the regional-mean table, best of ``--repeat``; the Dask
time includes connecting a client and preparing the workers, not starting the cluster. The script
checks that the TD arrays and the tables are identical (bit for bit).

``--sbas``: the SBAS benchmark stack of ``bench_sbas.py`` (``--size`` pixels squared, ``--dates``
dates, pairs <= 48 days, coherence, NaN pixels; one BLAS thread) written as LiCSAR-named GeoTIFFs,
then :func:`core.insar.sbas_stack.invert_stack` (automatic reference, coherence given) locally vs on the
same LocalCluster; time series, velocity and quality rasters and the network table must be identical.

No peer venv is needed: Dask comes from Debian (``apt-get install python3-distributed``).

Run:
    /usr/bin/python3 benchmarks/bench_dask.py                      # 500 x 500 x 120 months, 128 MB windows
    /usr/bin/python3 benchmarks/bench_dask.py --sbas               # SBAS 300 x 300 px, 60 dates, 128 MB blocks
"""

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_bench_downscale():
    spec = importlib.util.spec_from_file_location("bench_downscale", HERE / "bench_downscale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(gpath, mpath, memory_mb, run_tasks=None):
    from subsidence_toolkit.core.grace import downscaling, products

    t0 = time.perf_counter()
    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % gpath)
    m = downscaling.ModelSum([products.ProductReader('NETCDF:"%s":tws' % mpath)])
    out = np.empty((len(g.months), m.ysize, m.xsize), np.float32)
    n = [0]

    def write(r0, b, c0=0):
        n[0] += 1
        out[:, r0 : r0 + b.shape[1], c0 : c0 + b.shape[2]] = b

    _, table = downscaling.weighted_downscaling(
        g, m, "bilinear", write=write, memory_mb=memory_mb, out_dtype=np.float32, run_tasks=run_tasks
    )
    return time.perf_counter() - t0, out, table, n[0]


def dask_runner(cluster):
    """A ``run_tasks`` that sends the windows to ``cluster`` through a client of its own (closed after the run)."""
    from distributed import Client

    from subsidence_toolkit.core.io import tasks as runner

    def on_dask(fn, tasks, shared):
        client = Client(cluster.scheduler_address, set_as_default=False)
        try:
            yield from runner.map_blocks(fn, tasks, client=client, shared=shared)
        finally:
            client.close()

    return on_dask


def load_bench_sbas():
    spec = importlib.util.spec_from_file_location("bench_sbas", HERE / "bench_sbas.py")
    mod = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    spec.loader.exec_module(mod)  # sets OMP/OPENBLAS/MKL_NUM_THREADS=1 before the cluster starts
    sys.path[:] = path  # it prepends the checkout's parent folder (a worktree named "dask" would shadow dask)
    return mod


def sbas_bench(size, n_dates, memory_mb, repeat):
    bs = load_bench_sbas()
    from distributed import LocalCluster
    from osgeo import gdal

    from subsidence_toolkit.core.insar import sbas_stack
    from subsidence_toolkit.core.insar.stack import prepare_stack
    from subsidence_toolkit.core.io.rasters import grid_from_origin, write_raster

    net, dates, phase, coh, offsets, truth, water = bs.make_stack(size, n_dates)
    M, H, W = phase.shape
    with tempfile.TemporaryDirectory(prefix="bench_dask_sbas_") as d:
        grid = grid_from_origin(108.0, 38.5, 0.001, 0.001, W, H)
        ifgs, cohs = [], []
        for k in range(M):
            tag = "%s_%s" % (net.dates[net.i1[k]].strftime("%Y%m%d"), net.dates[net.i2[k]].strftime("%Y%m%d"))
            ifgs.append(str(Path(d) / (tag + ".geo.unw.tif")))
            cohs.append(str(Path(d) / (tag + ".geo.cc.tif")))
            write_raster(ifgs[-1], grid, phase[k], units="radians")
            write_raster(cohs[-1], grid, coh[k], units="")
        del phase, coh
        print(
            "inputs: SBAS stack %d x %d px, %d dates, %d interferograms + coherence (GeoTIFF), memory cap %g MB"
            % (W, H, len(net.dates), M, memory_mb)
        )

        def run(tag, run_tasks=None):
            t0 = time.perf_counter()
            st = prepare_stack(ifgs, None, cohs)
            outs = [str(Path(d) / ("%s_%s.tif" % (tag, k))) for k in ("ts", "vel", "q")]
            summary = sbas_stack.invert_stack(
                st, *outs, sbas_stack.SbasOptions(memory_mb=memory_mb), run_tasks=run_tasks
            )
            return time.perf_counter() - t0, outs, summary

        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            local, dask = [], []
            for _ in range(repeat):
                s, out_l, sum_l = run("local")
                local.append(s)

                on_dask = dask_runner(cluster)
                s, out_d, sum_d = run("dask", on_dask)
                dask.append(s)
                same = sum_l["network_rows"] == sum_d["network_rows"] and sum_l["reference"] == sum_d["reference"]
                for a, b in zip(out_l, out_d):
                    same = same and np.array_equal(
                        gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray(), equal_nan=True
                    )
                if not same:
                    print("MISMATCH between local and Dask results")
                    sys.exit(1)
        print("local (in process)       : best %.2f s  (runs %s)" % (min(local), ", ".join("%.2f" % x for x in local)))
        print("Dask LocalCluster 2 x 1  : best %.2f s  (runs %s)" % (min(dask), ", ".join("%.2f" % x for x in dask)))
        print(
            "ratio dask/local: %.2fx ; rasters, reference pixel and network table identical: %s"
            % (min(dask) / min(local), same)
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sbas", action="store_true", help="the SBAS stack instead of the downscaling inputs")
    ap.add_argument("--size", type=int, default=300, help="SBAS: pixels per side")
    ap.add_argument("--dates", type=int, default=60, help="SBAS: dates")
    ap.add_argument("--fine", type=int, default=500)
    ap.add_argument("--months", type=int, default=120)
    ap.add_argument("--memory-mb", type=float, default=128)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    if a.sbas:
        sbas_bench(a.size, a.dates, a.memory_mb, a.repeat)
        return
    bd = load_bench_downscale()
    bd.register()
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory(prefix="bench_dask_") as d:
        gpath, mpath = bd.make_inputs(Path(d), a.fine, a.months)
        print(
            "inputs: fine %dx%d cells x %d months, coarse CSR layout 0.25 deg, memory cap %g MB"
            % (a.fine, a.fine, a.months, a.memory_mb)
        )
        t0 = time.perf_counter()
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            print(
                "LocalCluster (2 workers x 1 thread) started in %.1f s (not timed below)" % (time.perf_counter() - t0)
            )
            local, dask = [], []
            for _ in range(a.repeat):
                s, arr_l, tab_l, nwin = run(gpath, mpath, a.memory_mb)
                local.append(s)

                on_dask = dask_runner(cluster)
                s, arr_d, tab_d, _ = run(gpath, mpath, a.memory_mb, on_dask)
                dask.append(s)
                same = np.array_equal(arr_l, arr_d, equal_nan=True) and tab_l.equals(tab_d)
                if not same:
                    print("MISMATCH between local and Dask results")
                    sys.exit(1)
        print("windows: %d" % nwin)
        print("local (in process)       : best %.2f s  (runs %s)" % (min(local), ", ".join("%.2f" % x for x in local)))
        print("Dask LocalCluster 2 x 1  : best %.2f s  (runs %s)" % (min(dask), ", ".join("%.2f" % x for x in dask)))
        print("ratio dask/local: %.2fx ; TD arrays and tables identical: %s" % (min(dask) / min(local), same))


if __name__ == "__main__":
    main()
