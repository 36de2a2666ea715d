#!/usr/bin/env python3
"""Benchmark: GRACE weighted downscaling (core/grace/downscaling.py) vs a straightforward xarray implementation.

Both run on identical input files made here: a CSR-layout mascon NetCDF (0.25 deg, cm, lat
ascending, time_bounds) and a fine model TWS NetCDF (0.01 deg, ``FINE`` x ``FINE`` cells, ``NT``
months). The peer is the obvious xarray code (``groupby('time.month')`` climatologies, groupby
subtraction, ``.interp(method='linear')``), run in its own venv in a subprocess of this script.
Timed per side: reading the inputs + computing TD for every month (in memory), best of
``--repeat`` runs; the max difference between both results is printed.

Peer venv (outside the repo):
    python3 -m venv /work/venvs/xarray && /work/venvs/xarray/bin/pip install xarray numpy scipy pandas

Run:
    /usr/bin/python3 benchmarks/bench_downscale.py                 # 500 x 500 x 120 months
    /usr/bin/python3 benchmarks/bench_downscale.py --rss 4000 24   # peak RSS of a streamed run to GeoTIFF
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmarks/bench_downscale.py --scaling --memory-mb 128 --repeat 3
        # ours on 1 and 2 threads (same cap)
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmarks/bench_downscale.py --scaling --geotiff --fine 1000 \
        --memory-mb 256
        # the same, each run writing its output GeoTIFF as the algorithm does (tiles compressed on its threads)
"""

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import machine
import numpy as np
from toolkit_package import register

PEER_PY = os.environ.get("XARRAY_PY", "/work/venvs/xarray/bin/python")


def month_list(nt, y0=2010):
    return [(y0 + i // 12, i % 12 + 1) for i in range(nt)]


def make_inputs(d, fine, nt, write_model=True):
    """CSR-layout GRACE file around the fine region + fine model NetCDF (time, lat, lon), float32."""
    from scipy.io import netcdf_file

    register()
    from subsidence_toolkit.demo import grace_data as gd

    res = 0.01
    lon0, lat_top = 105.0, 40.0
    span = fine * res
    clat = np.arange(np.floor((lat_top - span) * 4) / 4 - 1 + 0.125, lat_top + 1, 0.25)
    clon = np.arange(np.floor(lon0 * 4) / 4 - 1 + 0.125, lon0 + span + 1, 0.25)
    months = month_list(nt)
    rng = np.random.default_rng(0)
    t = np.arange(nt)
    la, lo = np.meshgrid(clat, clon, indexing="ij")
    cm = (
        6 * np.sin(2 * np.pi * t / 12)[:, None, None] * (1 + 0.02 * (lo - lon0))[None]
        - 0.1 * t[:, None, None]
        + np.cos(np.deg2rad(la * 9))[None]
        + rng.normal(0, 0.5, (nt,) + la.shape)
    ).astype(np.float32)
    gpath = gd.write_mascon(d / "products.nc", clat, clon, [gd.grace_month_bounds(*m) for m in months], cm)
    mpath = d / "model.nc"
    if write_model:
        flat = lat_top - res / 2 - res * np.arange(fine)
        flon = lon0 + res / 2 + res * np.arange(fine)
        f = netcdf_file(str(mpath), "w", version=2)
        f.createDimension("time", nt)
        f.createDimension("lat", fine)
        f.createDimension("lon", fine)
        for name, vals, u in (("lat", flat[::-1], "degrees_north"), ("lon", flon, "degrees_east")):
            v = f.createVariable(name, "d", (name,))
            v[:] = vals
            v.units = u
        tv = f.createVariable("time", "d", ("time",))
        tv[:] = [(dt.datetime(y, m, 15) - dt.datetime(2000, 1, 1)).days for y, m in months]
        tv.units = "days since 2000-01-01"
        v = f.createVariable("tws", "f", ("time", "lat", "lon"))
        v.units = "kg m-2"
        base = (300 + 20 * np.sin(np.deg2rad(flon * 50)))[None, :].astype(np.float32)
        for i in range(nt):
            v[i] = (base + 30 * np.sin(2 * np.pi * (i - 2) / 12) + rng.normal(0, 2, (fine, fine))).astype(np.float32)
        f.close()
    return str(gpath), str(mpath)


def _at_once(downscaling, threads):
    """``windows_at_once=threads`` as the algorithm passes it (GDAL's cache for that many windows), where the
    code measured has it (an older checkout compared against does not)."""
    import inspect

    return (
        {"windows_at_once": threads}
        if "windows_at_once" in inspect.signature(downscaling.weighted_downscaling).parameters
        else {}
    )


def run_ours(gpath, mpath, memory_mb=512, threads=1, geotiff=None, compress_threads=None):
    """Seconds and TD of our streamed downscaling in memory; ``threads`` > 1: the windows on that many
    threads (core ``map_threads``, each window under ``memory_mb / threads``, as the algorithm plans them).
    ``geotiff``: write TD to this GeoTIFF as the algorithm does (``RasterWriter``, its tiles compressed on
    ``threads`` threads, or ``compress_threads``) and return it read back."""
    register()
    from subsidence_toolkit.core.grace import downscaling, products
    from subsidence_toolkit.core.io import dates, rasters
    from subsidence_toolkit.core.io.tasks import map_threads

    run_tasks = None
    if threads > 1:

        def run_tasks(fn, tasks, shared):
            return map_threads(fn, tasks, threads, shared=shared)

    t0 = time.perf_counter()
    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % gpath)
    m = downscaling.ModelSum([products.ProductReader('NETCDF:"%s":tws' % mpath)])
    if geotiff:
        labels = [dates.month_from_index(k) for k in g.months]
        with (
            rasters.compression_threads(compress_threads or threads),
            rasters.RasterWriter(geotiff, m.grid(), len(g.months), dates=labels) as w,
        ):
            downscaling.weighted_downscaling(
                g,
                m,
                "bilinear",
                write=lambda r0, b, c0=0: w.write_block(r0, b, c0),
                memory_mb=memory_mb / threads,
                run_tasks=run_tasks,
                out_dtype="float32",  # as the algorithm: each window cast by its task, not by the writing thread
                **_at_once(downscaling, threads),
            )
        sec = time.perf_counter() - t0
        return sec, gdal_read(geotiff)
    out = np.empty((len(g.months), m.ysize, m.xsize), np.float32)

    def write(r0, b, c0=0):
        out[:, r0 : r0 + b.shape[1], c0 : c0 + b.shape[2]] = b

    downscaling.weighted_downscaling(
        g,
        m,
        "bilinear",
        write=write,
        memory_mb=memory_mb / threads,
        run_tasks=run_tasks,
        out_dtype="float32",
        **_at_once(downscaling, threads),
    )
    return time.perf_counter() - t0, out


def gdal_read(path):
    from osgeo import gdal

    return gdal.Open(path).ReadAsArray()


def scaling(fine, nt, repeat, memory_mb, geotiff=False, compress_threads=None):
    """Our downscaling on 1 and 2 threads (same inputs, same cap): best of ``repeat``, and equality.
    ``geotiff``: each run writes its GeoTIFF output as the algorithm does (else TD stays in memory);
    ``compress_threads``: compress its tiles on that many threads whatever the run's threads (1: as before
    session 9)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        gpath, mpath = make_inputs(Path(d), fine, nt)
        print(
            "%d x %d x %d months, %d MB, %s"
            % (
                fine,
                fine,
                nt,
                memory_mb,
                "written to a GeoTIFF (DEFLATE, tiles compressed on %s thread(s))" % (compress_threads or "the run's")
                if geotiff
                else "TD kept in memory",
            )
        )
        times, outs, steal, ceil = {1: [], 2: []}, {}, {1: [], 2: []}, []
        for _ in range(repeat):  # alternating, so a slow spell of the (shared) machine hits both
            ceil.append(machine.ceiling())
            for threads in (1, 2):
                tif = os.path.join(d, "td%d.tif" % threads) if geotiff else None
                with machine.Steal() as st:
                    sec, outs[threads] = run_ours(
                        gpath, mpath, memory_mb, threads, geotiff=tif, compress_threads=compress_threads
                    )
                times[threads].append(sec)
                steal[threads].append(st.fraction)
        for threads in (1, 2):
            print(
                "ours %d thread(s): best %.2f s, median %.2f s of %d (CPU stolen by the host: median %.0f %%)"
                % (threads, min(times[threads]), np.median(times[threads]), repeat, 100 * np.median(steal[threads]))
            )
        print(
            "machine ceiling (2 threads of pure BLAS vs 1, measured before each pair): median %.2fx, range %.2f-%.2fx"
            % (np.median(ceil), min(ceil), max(ceil))
        )
        a, b = outs[1].astype(np.float64), outs[2].astype(np.float64)
        print(
            "2 threads: %.2fx (best), %.2fx (median); results equal: %s, max |difference| %.1e mm"
            % (
                min(times[1]) / min(times[2]),
                np.median(times[1]) / np.median(times[2]),
                np.array_equal(a, b, equal_nan=True),
                float(np.nanmax(np.abs(a - b))),
            )
        )


PEER = r"""
import sys, time, json
import numpy as np, xarray as xr
gpath, mpath, out = sys.argv[1:4]
t0 = time.perf_counter()
g = xr.open_dataset(gpath, engine="scipy")["lwe_thickness"].astype("float64") * 10.0
m = xr.open_dataset(mpath, engine="scipy")["tws"].astype("float64")
m = m.sortby("lat", ascending=False)
g = g.sel(lat=slice(float(m.lat.min()) - 0.5, float(m.lat.max()) + 0.5),
          lon=slice(float(m.lon.min()) - 0.5, float(m.lon.max()) + 0.5))
tg_m = g.groupby("time.month").mean("time")
e = g.groupby("time.month") - tg_m
tf_m = m.groupby("time.month").mean("time")
fe = e.interp(lat=m.lat, lon=m.lon, method="linear")
td = tf_m.sel(month=fe["time.month"]) + fe
arr = td.transpose("time", "lat", "lon").values.astype("float32")
dt = time.perf_counter() - t0
np.save(out, arr)
print(json.dumps({"seconds": dt, "xarray": xr.__version__, "numpy": np.__version__}))
"""


def run_peer(gpath, mpath, d):
    script = Path(d) / "peer.py"
    script.write_text(PEER)
    out = Path(d) / "peer.npy"
    p = subprocess.run([PEER_PY, str(script), gpath, mpath, str(out)], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    info = json.loads(p.stdout.strip().splitlines()[-1])
    return info, np.load(out)


def bench(fine, nt, repeat):
    with tempfile.TemporaryDirectory(prefix="bench_down_") as d:
        d = Path(d)
        gpath, mpath = make_inputs(d, fine, nt)
        ours, peer = [], []
        for _ in range(repeat):
            s, a = run_ours(gpath, mpath)
            ours.append(s)
            info, b = run_peer(gpath, mpath, d)
            peer.append(info["seconds"])
        diff = float(np.nanmax(np.abs(a.astype(np.float64) - b)))
        nan_same = bool(np.array_equal(np.isnan(a), np.isnan(b)))
        print("inputs: fine %dx%d cells x %d months, coarse CSR layout 0.25 deg" % (fine, fine, nt))
        print(
            "ours (core/grace/downscaling.py, GDAL read, windows) : best %.2f s  (runs %s)"
            % (min(ours), ", ".join("%.2f" % x for x in ours))
        )
        print(
            "peer (xarray %s groupby + interp):               best %.2f s  (runs %s)"
            % (info["xarray"], min(peer), ", ".join("%.2f" % x for x in peer))
        )
        print(
            "ratio peer/ours: %.2fx ; max |ours - peer| = %.2e mm ; NaN patterns equal: %s"
            % (min(peer) / min(ours), diff, nan_same)
        )


def _rss_mark():
    """Return the resident set now (kB, after glibc has given freed memory back) and whether the peak (VmHWM)
    could be reset to it, so that the next VmHWM is the peak from here on (Linux: 5 written to clear_refs)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    return machine.status_kb("VmRSS"), reset


def rss_run(fine, nt, memory_mb, interleave="band"):
    """Streamed run to a GeoTIFF with a fine model written as a tiled GeoTIFF (``interleave``: its bands one
    after the other, or pixel by pixel as GDAL writes multiband GeoTIFFs by default); prints peak RSS."""
    register()
    from osgeo import gdal

    from subsidence_toolkit.core.grace import downscaling, products
    from subsidence_toolkit.core.io import dates, rasters

    with tempfile.TemporaryDirectory(prefix="bench_rss_", dir=os.environ.get("BENCH_TMP")) as d:
        d = Path(d)
        gpath, _ = make_inputs(d, fine, nt, write_model=False)
        grid = rasters.grid_from_origin(105.0, 40.0, 0.01, 0.01, fine, fine)
        months = month_list(nt)
        mpath = str(d / "model.tif")
        t0 = time.perf_counter()
        drv = gdal.GetDriverByName("GTiff")
        ds = drv.Create(
            mpath,
            fine,
            fine,
            nt,
            gdal.GDT_Float32,
            ["TILED=YES", "BIGTIFF=YES", "INTERLEAVE=%s" % interleave.upper(), "BLOCKXSIZE=256", "BLOCKYSIZE=256"],
        )
        ds.SetGeoTransform(grid.geotransform)
        ds.SetProjection(grid.projection)
        x = 300 + 20 * np.sin(np.arange(fine) / 50.0)[None, :].astype(np.float32)
        for i, (y, m) in enumerate(months):
            b = ds.GetRasterBand(i + 1)
            b.SetDescription("%04d-%02d-15" % (y, m))
            b.SetUnitType("mm")
            month = np.broadcast_to(x + 30 * np.sin(2 * np.pi * i / 12), (fine, fine))
            b.WriteArray(np.ascontiguousarray(month, dtype=np.float32))
        ds = None
        print(
            "model GeoTIFF %dx%dx%d (%s interleaved) written in %.1f s"
            % (fine, fine, nt, interleave, time.perf_counter() - t0)
        )
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # what the run itself adds: the resident set once the writes above are freed, and the peak from here
        # (Linux resets the peak, VmHWM, when 5 is written to clear_refs); ru_maxrss also holds the writes' peak
        # the libraries the run loads on first use (pandas, SciPy's interpolation: ~75 MB of code, loaded once
        # per QGIS session) are loaded before the mark: the limit is about the run's data
        import pandas  # noqa: F401
        import scipy.interpolate  # noqa: F401
        import scipy.ndimage  # noqa: F401
        import scipy.spatial  # noqa: F401

        start, reset = _rss_mark()
        t0 = time.perf_counter()
        g = products.ProductReader('NETCDF:"%s":lwe_thickness' % gpath)
        model = downscaling.ModelSum([products.ProductReader(mpath)])
        out = str(d / "td.tif")
        with rasters.RasterWriter(
            out, model.grid(), len(g.months), dates=[dates.month_from_index(k) for k in g.months]
        ) as w:
            downscaling.weighted_downscaling(
                g, model, memory_mb=memory_mb, write=lambda r0, b, c0=0: w.write_block(r0, b, c0), out_dtype="float32"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            "streamed downscaling %dx%dx%d -> GeoTIFF: %.1f s, peak RSS %.0f MB (before the run %.0f MB), "
            "memory cap %d MB" % (fine, fine, nt, time.perf_counter() - t0, peak / 1024, base / 1024, memory_mb)
        )
        if reset:
            hwm = machine.status_kb("VmHWM")
            print(
                "the run itself: resident %.0f MB at its start, peak %.0f MB: +%.0f MB for a %d MB limit"
                % (start / 1024, hwm / 1024, (hwm - start) / 1024, memory_mb)
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fine", type=int, default=500)
    ap.add_argument("--months", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rss", nargs=2, type=int, metavar=("FINE", "MONTHS"))
    ap.add_argument("--memory-mb", type=int, default=512)
    ap.add_argument("--interleave", choices=("band", "pixel"), default="band", help="--rss: the model GeoTIFF's layout")
    ap.add_argument("--scaling", action="store_true", help="ours on 1 and 2 threads (THREADS), no peer")
    ap.add_argument("--geotiff", action="store_true", help="--scaling: write the output GeoTIFF as the algorithm does")
    ap.add_argument("--compress-threads", type=int, help="--geotiff: compress on this many threads (1: as before)")
    a = ap.parse_args()
    if a.scaling:
        scaling(a.fine, a.months, a.repeat, a.memory_mb, geotiff=a.geotiff, compress_threads=a.compress_threads)
    elif a.rss:
        rss_run(a.rss[0], a.rss[1], a.memory_mb, a.interleave)
    else:
        bench(a.fine, a.months, a.repeat)


if __name__ == "__main__":
    main()
