#!/usr/bin/env python3
"""Benchmark: temporal resampling (core/timeseries/resample.py) vs the per-pixel SciPy loop of a notebook.

Input (written once to ``--folder``, reused): a ``N`` x ``N`` time-series GeoTIFF of ``T`` Sentinel-1 dates
(6/12/24-day gaps), float32, DEFLATE, 256 x 256 tiles, band- or pixel-interleaved: a subsidence bowl
(up to -30 mm/yr) plus noise (2 mm), and on every date 5 % of 50 x 50 px patches missing (NaN), so the pixels
fall into a few hundred validity patterns as decorrelated areas do. Target: monthly dates (day 15).

Measured, each run in its own process (one process's GDAL cache or memory does not carry into the next):

* ours: ``resample_raster`` from the GeoTIFF to a GeoTIFF (as the algorithm runs it: threads through
  ``map_blocks``, the memory cap divided among them, tiles compressed on as many threads) at ``--memory-mb``,
  on 1 and 2 threads, alternating (``--repeat``): wall time and the run's peak resident memory above where it
  started (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``; libraries imported before the mark);
* the peer, on a ``--crop`` x ``--crop`` corner of the same file: what a notebook does, one
  ``scipy.interpolate.CubicSpline`` per pixel on its valid dates, evaluated at the targets inside its valid range
  (NaN outside); ours on the same crop in memory (``temporal_resample_block``); the pixel rates, their ratio and
  the largest difference of the values.

Run:
    /usr/bin/python3 benchmarks/bench_resample.py                       # 1000 x 1000 x 120, 256 MB, cubic
    /usr/bin/python3 benchmarks/bench_resample.py --interleave pixel --repeat 3
    /usr/bin/python3 benchmarks/bench_resample.py --size 2000 --dates 150 --memory-mb 512
    /usr/bin/python3 benchmarks/bench_resample.py --scatter 0.1 --repeat 1   # every pixel its own gaps
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import machine
import numpy as np
from toolkit_package import register

HERE = Path(__file__).resolve()


def make_stack(path, n, nt, interleave, scatter=0.0):
    """Write the input stack (see the module doc; ``scatter``: the share of values missing at random besides the
    patches, e.g. unwrapping errors masked date by date); returns its dates."""
    from osgeo import gdal, osr

    rng = np.random.default_rng(0)
    days = np.cumsum(np.r_[0, rng.choice([6, 12, 12, 12, 24], nt - 1)])
    dates = [dt.date(2017, 1, 3) + dt.timedelta(days=int(d)) for d in days]
    if path.exists():
        return dates
    tmp = path.with_suffix(".part.tif")
    ds = gdal.GetDriverByName("GTiff").Create(
        str(tmp),
        n,
        n,
        nt,
        gdal.GDT_Float32,
        ["TILED=YES", "BIGTIFF=YES", "COMPRESS=DEFLATE", "INTERLEAVE=%s" % interleave.upper()]
        + ["BLOCKXSIZE=256", "BLOCKYSIZE=256"],
    )
    ds.SetGeoTransform((500000, 30, 0, 4000000, 0, -30))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32650)
    ds.SetProjection(srs.ExportToWkt())
    yy, xx = np.mgrid[0:n, 0:n]
    rate = (-30 * np.exp(-((yy - n / 2) ** 2 + (xx - n / 2) ** 2) / (n / 4) ** 2)).astype(np.float32)
    patches = -(-n // 50)
    for i, d in enumerate(dates):
        band = ds.GetRasterBand(i + 1)
        band.SetDescription(d.isoformat())
        band.SetNoDataValue(float("nan"))
        band.SetUnitType("mm")
        a = rate * np.float32(days[i] / 365.25) + rng.normal(0, 2, (n, n)).astype(np.float32)
        gone = np.kron(rng.random((patches, patches)) < 0.05, np.ones((50, 50), bool))[:n, :n]
        a[gone] = np.nan
        if scatter:
            a[rng.random((n, n)) < scatter] = np.nan
        band.WriteArray(a)
    ds = None
    os.replace(tmp, path)
    return dates


def child(path, out, method, memory_mb, threads):
    """One run of ours as the algorithm runs it; prints a JSON line."""
    import ctypes

    import scipy.interpolate  # noqa: F401  (loaded once per QGIS session: not the run's data)
    from osgeo import gdal

    from subsidence_toolkit.core.io import tasks
    from subsidence_toolkit.core.io.blas import one_thread
    from subsidence_toolkit.core.io.rasters import compression_threads
    from subsidence_toolkit.core.timeseries import resample

    gdal.UseExceptions()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = machine.status_kb("VmRSS")
    t0 = time.perf_counter()
    with machine.Steal() as steal, one_thread(), compression_threads(threads):
        resample.resample_raster(
            str(path),
            str(out),
            method=method,
            memory_mb=memory_mb / threads,
            run_tasks=lambda fn, ts, shared: tasks.map_blocks(fn, ts, threads=threads),
            windows_at_once=threads,
        )
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "rss_mb": (machine.status_kb("VmHWM") - start) / 1024, "steal": steal.fraction}))


def run_child(path, out, method, memory_mb, threads):
    cmd = [sys.executable, str(HERE), "--child", str(path), str(out), method, str(memory_mb), str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def peer_block(values, t, t_new):
    """The notebook: one CubicSpline per pixel on its valid dates, NaN outside its valid range."""
    from scipy.interpolate import CubicSpline

    T, ny, nx = values.shape
    out = np.full((len(t_new), ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            y = values[:, i, j]
            ok = np.isfinite(y)
            if ok.sum() < 2:
                continue
            tv = t[ok]
            inside = (t_new >= tv[0]) & (t_new <= tv[-1])
            out[inside, i, j] = CubicSpline(tv, y[ok])(t_new[inside])
    return out


def crop_comparison(path, dates, crop, method="cubic"):
    from osgeo import gdal

    from subsidence_toolkit.core.io.dates import days_since
    from subsidence_toolkit.core.io.rasters import read_window
    from subsidence_toolkit.core.timeseries import resample

    values = read_window(gdal.Open(str(path)), 0, 0, crop, crop)
    t = days_since(dates)
    t_new = days_since(resample.target_dates(dates), dates[0])
    t0 = time.perf_counter()
    ours = resample.temporal_resample_block(values, t, t_new, method)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer = peer_block(values, t, t_new)
    t_peer = time.perf_counter() - t0
    same_nan = bool(np.array_equal(np.isnan(ours), np.isnan(peer)))
    diff = float(np.nanmax(np.abs(ours - peer)))
    px = crop * crop
    print(
        "crop %d x %d x %d -> %d months, cubic, in memory: ours %.3f s (%.0f px/s), per-pixel CubicSpline %.2f s "
        "(%.0f px/s): %.0fx; max |ours - peer| = %.1e mm; NaN patterns equal: %s"
        % (
            crop,
            crop,
            len(dates),
            len(t_new),
            t_ours,
            px / t_ours,
            t_peer,
            px / t_peer,
            t_peer / t_ours,
            diff,
            same_nan,
        )
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", default=os.environ.get("BENCH_TMP", "/tmp") + "/bench_resample")
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--dates", type=int, default=120)
    ap.add_argument("--interleave", choices=("band", "pixel"), default="band")
    ap.add_argument("--method", default="cubic")
    ap.add_argument("--memory-mb", type=float, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--crop", type=int, default=200)
    ap.add_argument(
        "--scatter", type=float, default=0.0, help="share of values missing at random (every pixel its own gaps)"
    )
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    register()
    if a.child:
        p, out, method, mem, threads = a.child
        child(p, out, method, float(mem), int(threads))
        return
    folder = Path(a.folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = "_scatter%g" % a.scatter if a.scatter else ""
    path = folder / ("stack_%d_%d_%s%s.tif" % (a.size, a.dates, a.interleave, tag))
    t0 = time.perf_counter()
    dates = make_stack(path, a.size, a.dates, a.interleave, a.scatter)
    print("input %s (%.0f MB, %.1f s to make or find)" % (path, path.stat().st_size / 2**20, time.perf_counter() - t0))
    if a.method == "cubic":
        crop_comparison(path, dates, min(a.crop, a.size))
    out = folder / "out.tif"
    runs = {1: [], 2: []}
    for _ in range(a.repeat):
        for threads in (1, 2):
            r = run_child(path, out, a.method, a.memory_mb, threads)
            runs[threads].append(r)
            print(
                "ours %d thread(s), %s, %g MB: %.2f s, peak +%.0f MB above the run's start (steal %.0f %%)"
                % (threads, a.method, a.memory_mb, r["wall"], r["rss_mb"], 100 * r["steal"])
            )
    best = {k: min(r["wall"] for r in v) for k, v in runs.items()}
    print(
        "%d x %d x %d (%s-interleaved) -> monthly, %s at %g MB: best %.2f s on 1 thread, %.2f s on 2: %.2fx "
        "(two-thread ceiling of this machine now: %.2fx); peak above start at most +%.0f MB"
        % (
            a.size,
            a.size,
            a.dates,
            a.interleave,
            a.method,
            a.memory_mb,
            best[1],
            best[2],
            best[1] / best[2],
            machine.ceiling(),
            max(r["rss_mb"] for v in runs.values() for r in v),
        )
    )
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
