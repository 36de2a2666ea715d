#!/usr/bin/env python3
"""Benchmark: mosaicking frames (core/insar/mosaic.py) vs GDAL doing only the resampling of the same inputs.

Inputs made here: ``--frames`` (4) time-series frames of ``--size`` x ``--size`` px (2000) x ``--dates``
(36 monthly) float32 bands, tiled 256 x 256 uncompressed GeoTIFFs (band interleaved), in a 2 x 2 layout
overlapping by ``--overlap`` px (200), each with its own per-date offset and noise (a planted truth).
Measured, each in its own process (wall time and peak RSS from ``/usr/bin/time -v``), one run each:

* ours: ``mosaic_frames`` at ``MEMORY_LIMIT_MB`` = ``--memory-mb`` (512): overlap statistics, offsets,
  edge-distance blending, atomic DEFLATE GeoTIFF output;
* ``gdalwarp -r bilinear -wm <cap>``: the four frames resampled into one raster (no offsets, no blending:
  later frames overwrite earlier ones), same creation options;
* ``gdal_merge.py``: the same by plain copying (nearest), same creation options.

The script also checks that ours recovers the planted truth (max error outside the noisy overlaps).

``--resolution R`` (metres; the frames have 30 m pixels) makes every side resample to another pixel size, so ours
reads every frame through an exact warped VRT (bilinear) and gdalwarp/gdal_merge get ``-tr R R``.

``--threads 1 2`` runs ours once per thread count (``THREADS``: blend windows computed concurrently, each under
cap / threads; the outputs are compared bit for bit); ``--no-peers`` skips gdalwarp and gdal_merge.py. CPU seconds
(user + system) are printed next to every wall time (the machine may be shared).

Run:  /usr/bin/python3 benchmarks/bench_mosaic.py [--size 2000 --dates 36 --frames 4 --memory-mb 512 --resolution 0]
      /usr/bin/python3 benchmarks/bench_mosaic.py --threads 1 2 --no-peers
"""

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from toolkit_package import register

CREATE = [
    "TILED=YES",
    "COMPRESS=DEFLATE",
    "PREDICTOR=3",
    "BIGTIFF=IF_SAFER",
    "BLOCKXSIZE=256",
    "BLOCKYSIZE=256",
    "INTERLEAVE=BAND",
]


def layout(size, overlap, frames):
    step = size - overlap
    return [((k // 2) * step, (k % 2) * step) for k in range(frames)]  # (row0, col0) of each frame


def make_inputs(d, size, nd, frames, overlap, seed=0):
    from osgeo import gdal, osr

    pos = layout(size, overlap, frames)
    ny = max(r for r, _ in pos) + size
    nx = max(c for _, c in pos) + size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    rate = np.zeros((ny, nx), np.float32)
    for _ in range(6):
        cy, cx, s, a = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(100, 600), rng.uniform(-120, 20)
        rate += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    del yy, xx
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32649)
    dates = [dt.date(2019 + m // 12, m % 12 + 1, 15) for m in range(nd)]
    offsets = rng.normal(0, 10, (frames, nd))
    offsets[0] = 0.0
    paths, dss = [], []
    for k, (r0, c0) in enumerate(pos):
        p = os.path.join(d, "frame%d.tif" % k)
        ds = gdal.GetDriverByName("GTiff").Create(
            p,
            size,
            size,
            nd,
            gdal.GDT_Float32,
            ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "INTERLEAVE=BAND", "BIGTIFF=YES"],
        )
        ds.SetGeoTransform((500000.0 + 30.0 * c0, 30.0, 0, 4000000.0 - 30.0 * r0, 0, -30.0))
        ds.SetProjection(srs.ExportToWkt())
        paths.append(p)
        dss.append(ds)
    for t in range(nd):
        truth = rate * (t / 12.0)
        for k, (r0, c0) in enumerate(pos):
            band = dss[k].GetRasterBand(t + 1)
            band.SetDescription(dates[t].isoformat())
            band.SetNoDataValue(float("nan"))
            a = truth[r0 : r0 + size, c0 : c0 + size] + np.float32(offsets[k, t])
            a = a + rng.normal(0, 1.0, a.shape).astype(np.float32)
            band.WriteArray(a)
    dss = None
    return paths, rate, offsets, dates, pos, (ny, nx)


def timed(cmd):
    """Wall time and peak RSS (MB) of a command, from /usr/bin/time -v (``timed.cpu``: user + system s)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit("failed: %s\n%s\n%s" % (" ".join(cmd), proc.stdout[-2000:], proc.stderr[-3000:]))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024.0
    timed.cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr))
    return wall, rss, proc.stdout


def ours(paths, out, memory_mb, resolution=0.0, threads=1):
    register()
    from subsidence_toolkit.core.insar import mosaic

    t0 = time.perf_counter()
    rows, summary = mosaic.mosaic_frames(
        paths, out, reference_frame=0, memory_mb=memory_mb, resolution=resolution, threads=threads
    )
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "windows": summary["n_windows"],
                "stride": summary["sample_stride"],
                "offsets": [[r["frame"], r["date"], r["offset_mm"]] for r in rows],
            }
        )
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--dates", type=int, default=36)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--overlap", type=int, default=200)
    ap.add_argument("--memory-mb", type=float, default=512)
    ap.add_argument("--resolution", type=float, default=0.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="THREADS of ours, one run each")
    ap.add_argument("--no-peers", action="store_true", help="only ours (no gdalwarp / gdal_merge.py)")
    ap.add_argument("--ours", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ours:
        ours(a.ours[:-1], a.ours[-1], a.memory_mb, a.resolution, a.threads[0])
        return
    from osgeo import gdal

    with tempfile.TemporaryDirectory(prefix="bench_mosaic_", dir=os.environ.get("BENCH_TMP")) as d:
        t0 = time.perf_counter()
        paths, rate, offsets, dates, pos, (ny, nx) = make_inputs(d, a.size, a.dates, a.frames, a.overlap)
        print(
            "inputs: %d frames %d x %d x %d float32 (%.1f GB) made in %.0f s; mosaic %d x %d"
            % (
                a.frames,
                a.size,
                a.size,
                a.dates,
                a.frames * a.size**2 * a.dates * 4 / 1e9,
                time.perf_counter() - t0,
                ny,
                nx,
            )
        )
        print("load average before: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
        first = None
        for threads in a.threads:
            out = os.path.join(d, "ours_%d.tif" % threads)
            load = os.getloadavg()[0]
            w_ours, r_ours, text = timed(
                [sys.executable, __file__, "--memory-mb", str(a.memory_mb), "--resolution", str(a.resolution)]
                + ["--threads", str(threads), "--ours"]
                + paths
                + [out]
            )
            info = json.loads(text.strip().splitlines()[-1])
            same = ""
            if first is None:
                first = (out, info, w_ours)
            else:
                d0, d1 = gdal.Open(first[0]), gdal.Open(out)
                equal = first[1]["offsets"] == info["offsets"] and all(
                    np.array_equal(d0.GetRasterBand(b).ReadAsArray(), d1.GetRasterBand(b).ReadAsArray(), equal_nan=True)
                    for b in range(1, d0.RasterCount + 1)
                )
                d0 = d1 = None
                same = ", output and offsets %s the first run's; speed-up %.2fx" % (
                    "bit-identical to" if equal else "DIFFERENT from",
                    first[2] / w_ours,
                )
            print(
                "ours (mosaic_frames, %d MB cap, THREADS=%d, %d windows, median lattice stride %d): %.1f s, "
                "CPU %.1f s, peak RSS %.0f MB (load %.2f before)%s"
                % (a.memory_mb, threads, info["windows"], info["stride"], w_ours, timed.cpu, r_ours, load, same),
                flush=True,
            )
        out, info, w_ours = first[0], first[1], first[2]
        if not a.no_peers:
            co = sum([["-co", c] for c in CREATE], [])
            if a.resolution:
                co += ["-tr", str(a.resolution), str(a.resolution)]
            w_warp, r_warp, _ = timed(
                ["gdalwarp", "-q", "-r", "bilinear", "-wm", str(int(a.memory_mb))]
                + co
                + paths
                + [os.path.join(d, "warp.tif")]
            )
            print("gdalwarp -r bilinear -wm %d: %.1f s, peak RSS %.0f MB" % (a.memory_mb, w_warp, r_warp))
            co_merge = [c if c != "-tr" else "-ps" for c in co]
            w_merge, r_merge, _ = timed(
                [sys.executable, "/usr/bin/gdal_merge.py", "-q"]
                + co_merge
                + ["-o", os.path.join(d, "merge.tif")]
                + paths
            )
            print("gdal_merge.py: %.1f s, peak RSS %.0f MB" % (w_merge, r_merge))
        print("load average after: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
        # accuracy: offsets vs planted (frame 0 is the reference), and the mosaic vs truth + noise level
        got = np.array([o[2] for o in info["offsets"]]).reshape(a.frames, a.dates)
        print(
            "offset error vs planted: max %.3f mm (noise 1 mm per pixel and frame)"
            % np.abs(got - (offsets[0] - offsets)).max()
        )
        ds = gdal.Open(out)
        t = a.dates - 1
        band = ds.GetRasterBand(t + 1).ReadAsArray().astype(np.float64)
        if a.resolution:  # the truth at the mosaic's pixel centres (nearest truth pixel)
            gt = ds.GetGeoTransform()
            rows = ((4000000.0 - (gt[3] + (np.arange(ds.RasterYSize) + 0.5) * gt[5])) / 30.0).astype(int)
            cols = (((gt[0] + (np.arange(ds.RasterXSize) + 0.5) * gt[1]) - 500000.0) / 30.0).astype(int)
            rate = rate[np.clip(rows, 0, ny - 1)][:, np.clip(cols, 0, nx - 1)]
        err = band - rate * (t / 12.0)
        print(
            "last date: mosaic - truth RMS %.3f mm (noise 1 mm), max |error| %.2f mm"
            % (np.sqrt(np.nanmean(err**2)), np.nanmax(np.abs(err)))
        )
        if not a.no_peers:
            print(
                "ratio ours / gdalwarp: %.2f, ours / gdal_merge: %.2f; peak RSS - cap: %.0f MB"
                % (w_ours / w_warp, w_ours / w_merge, r_ours - a.memory_mb)
            )


if __name__ == "__main__":
    main()
