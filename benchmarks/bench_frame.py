"""Benchmark (issue 20, part 2): a whole Sentinel-1 frame through ``qgis_process.bin run subsidence:sbasinversion``.

One command runs everything (not in CI; the stack is written once to a scratch folder and reused)::

    /usr/bin/python3 benchmarks/bench_frame.py                      # /work/frame_bench, everything
    /usr/bin/python3 benchmarks/bench_frame.py --folder /scratch/f --no-mintpy --runs 0:2

Stack: 2,000 x 2,500 px, 150 Sentinel-1 dates on a 12-day grid with missing acquisitions
(``bench_sbas.make_dates``), the pairs of up to 48 days plus those of 49-60 days from every third date
(~600 pairs). The physics are those of ``bench_sbas.make_stack`` on the frame's normalised coordinates:
subsidence bowl (up to -60 mm/yr) + annual term (0-6 mm) + smooth non-linear term; coherence decaying with
the temporal baseline and varying in space; phase noise with the Cramer-Rao standard deviation for 20 looks;
per-interferogram offsets; 2 % water (no data in every pair) and 10 % of the pixels missing each pair with
probability 0.1. Each pair is generated and written on its own (the 12 GB stack is never in memory): float32
unwrapped phase in radians (``YYYYMMDD_YYYYMMDD.geo.unw.tif``, NaN no data) and coherence as LiCSAR ships it,
8-bit DN = round(255 coherence), 0 = no data (``.geo.cc.tif``); GeoTIFF, DEFLATE, 256 x 256 tiles. A marker
file (``stack/COMPLETE.json``) makes later runs reuse it; the planted truth (the three fields, water mask,
offsets, dates) is kept in ``truth.npz``.

Measured (one line each; wall and CPU (user + system) seconds and the 1-minute load average, the machine may be
shared):

* end to end: ``qgis_process.bin run subsidence:sbasinversion`` on the 600 + 600 files under ``/usr/bin/time -v``
  with MEMORY_LIMIT_MB=2048 for THREADS 0 (all cores) and 1, LOOP_CLOSURE 2 (the default, reject) and 0, no
  weighting, no ramp: wall, CPU, peak RSS, files added next to the inputs, velocity RMSE vs the planted velocity
  (after removing one constant: the automatic reference is a free choice);
* floors: one whole GDAL read of every input file (one file at a time, nothing kept), the start-up of a trivial
  ``qgis_process.bin run native:buffer`` on one point, and the in-memory solve: the frame does not fit in
  memory, so the stack is read in strips of 256 rows (not timed) and ``sbas.sbas_invert_block`` is timed on
  blocks of 16 rows x 2,500 columns already in memory (phase minus the planted offsets, times the LOS factor;
  unweighted, float32), summed over the frame, on one thread and on all cores (``map_threads`` over the
  blocks of a strip); ratio = end-to-end wall / (read + start-up + solve);
* MintPy 1.6.4 (``/work/venvs/mintpy``, ``bench_sbas.run_mintpy``) vs ours in memory
  (``bench_sbas.run_ours``) on a 500 x 500 crop around the bowl (same pairs and dates), unweighted.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sbas  # noqa: E402  (registers the checkout as subsidence_toolkit)

from subsidence_toolkit.core.insar import sbas  # noqa: E402
from subsidence_toolkit.core.insar.network import SbasNetwork  # noqa: E402
from subsidence_toolkit.core.insar.units import los_factor_mm, radians_per_mm  # noqa: E402

ROWS, COLS, N_DATES = 2000, 2500, 150
WAVELENGTH = bench_sbas.WAVELENGTH
LOOKS = bench_sbas.LOOKS
SEED = 20
MM2RAD = -4 * np.pi / (WAVELENGTH * 1000.0)
CROP = (850, 875, 500)  # row0, col0, size of the MintPy crop (centred on the bowl)
STACK_VERSION = 1


def frame_network(n_dates=N_DATES):
    dates = bench_sbas.make_dates(n_dates)
    pairs = []
    for i, a in enumerate(dates):
        for b in dates[i + 1 :]:
            days = (b - a).days
            if days <= 48 or (days <= 60 and i % 3 == 0):
                pairs.append((a, b))
    return dates, SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])


def fields(rows, cols, r0=0, r1=None):
    """Planted fields of ``bench_sbas.make_stack`` on rows r0:r1 of the frame (normalised coordinates):
    bowl (mm/yr), annual amplitude (mm), non-linear amplitude (mm), spatial coherence pattern."""
    r1 = rows if r1 is None else r1
    yy = (np.arange(r0, r1, dtype=np.float64)[:, None] / rows) * np.ones((1, cols))
    xx = np.ones((r1 - r0, 1)) * (np.arange(cols, dtype=np.float64)[None, :] / cols)
    bowl = -60.0 * np.exp(-((xx - 0.45) ** 2 + (yy - 0.55) ** 2) / (2 * 0.15**2))
    amp = 6.0 * (0.5 + 0.5 * np.sin(3 * xx) * np.cos(2 * yy))
    nl = 4.0 * np.cos(5 * xx + 3 * yy)
    base_coh = 0.25 + 0.6 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.3) ** 2) / 0.2)
    return bowl, amp, nl, base_coh


def truth_at(tyears, bowl, amp, nl):
    """Planted displacement (mm) at the dates ``tyears`` (first date 0), shape (len(tyears), rows, cols)."""
    t = np.asarray(tyears, np.float64)[:, None, None]
    tl = float(tyears[-1])

    def at(tt):
        return bowl * tt + amp * np.sin(2 * np.pi * tt) + nl * (tt / tl) ** 2 * 3

    return at(t) - at(np.zeros_like(t[:1]))


def planted_velocity(tyears, bowl, amp, nl):
    """Least-squares velocity (with intercept) of the planted series: linear in the three fields."""
    t = np.asarray(tyears, np.float64)
    tl = float(t[-1])
    s_sin = np.polyfit(t, np.sin(2 * np.pi * t), 1)[0]
    s_nl = np.polyfit(t, 3 * (t / tl) ** 2, 1)[0]
    return bowl + amp * s_sin + nl * s_nl


def masks(rows, cols, seed=SEED):
    rng = np.random.default_rng([seed, 999])
    water = rng.random((rows, cols)) < 0.02
    partial = (rng.random((rows, cols)) < 0.10) & ~water
    return water, partial


def pair_names(net):
    return [
        "%s_%s" % (net.dates[net.i1[k]].strftime("%Y%m%d"), net.dates[net.i2[k]].strftime("%Y%m%d"))
        for k in range(net.n_ifg)
    ]


_GEN = {}


def _gen_init(folder, rows, cols, n_dates, seed):
    dates, net = frame_network(n_dates)
    bowl, amp, nl, base_coh = fields(rows, cols)
    water, partial = masks(rows, cols, seed)
    offsets = np.random.default_rng([seed, 1000]).normal(0, 2.0, net.n_ifg)
    _GEN.update(
        folder=folder, net=net, bowl=bowl, amp=amp, nl=nl, base_coh=base_coh, water=water, partial=partial,
        offsets=offsets, rows=rows, cols=cols, seed=seed, names=pair_names(net),
    )


def _gen_pair(k):
    """Write interferogram ``k`` and its coherence (skipped when both exist: the writer is atomic)."""
    from osgeo import gdal

    from subsidence_toolkit.core.io.rasters import RasterWriter, grid_from_origin

    g = _GEN
    net, rows, cols = g["net"], g["rows"], g["cols"]
    unw = os.path.join(g["folder"], g["names"][k] + ".geo.unw.tif")
    cc = os.path.join(g["folder"], g["names"][k] + ".geo.cc.tif")
    if os.path.exists(unw) and os.path.exists(cc):
        return k
    rng = np.random.default_rng([g["seed"], k])
    tb = float(net.temporal_baselines[k])
    coh = np.clip(g["base_coh"] * np.exp(-tb / 120.0) + rng.normal(0, 0.05, (rows, cols)), 0.1, 0.98)
    sig = np.sqrt((1 - coh**2) / (2 * LOOKS * coh**2))
    t = net.tyears[[net.i1[k], net.i2[k]]]
    d = truth_at(t, g["bowl"], g["amp"], g["nl"])
    phase = ((d[1] - d[0]) * MM2RAD + rng.normal(0, 1, (rows, cols)) * sig + g["offsets"][k]).astype(np.float32)
    missing = g["water"] | (g["partial"] & (rng.random((rows, cols)) < 0.1))
    phase[missing] = np.nan
    dn = np.rint(coh * 255.0).astype(np.uint8)
    dn[missing] = 0
    grid = grid_from_origin(108.0, 38.5, 0.001, 0.001, cols, rows)
    with RasterWriter(unw, grid, 1, units="radians") as w:
        w.write_block(0, phase)
    with RasterWriter(cc, grid, 1, units="", dtype=gdal.GDT_Byte, nodata=0) as w:
        w.write_block(0, dn)
    return k


def folder_mb(folder, suffixes):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(suffixes)) / 2**20


def make_frame(root, rows=ROWS, cols=COLS, n_dates=N_DATES, seed=SEED, workers=2):
    """Write the frame stack once into ``root/stack`` (reused when its marker matches); return
    (network, interferogram paths, coherence paths, truth dict)."""
    import multiprocessing

    stack = os.path.join(root, "stack")
    marker = os.path.join(stack, "COMPLETE.json")
    spec = {"rows": rows, "cols": cols, "n_dates": n_dates, "seed": seed, "version": STACK_VERSION}
    dates, net = frame_network(n_dates)
    names = pair_names(net)
    ifgs = [os.path.join(stack, n + ".geo.unw.tif") for n in names]
    cohs = [os.path.join(stack, n + ".geo.cc.tif") for n in names]
    truth_file = os.path.join(root, "truth.npz")
    done = os.path.exists(marker) and json.load(open(marker)).get("spec") == spec
    if not done:
        if os.path.exists(marker):
            os.remove(marker)
        os.makedirs(stack, exist_ok=True)
        t0 = time.perf_counter()
        print(
            "writing the frame stack (%d x %d px, %d dates, %d pairs) to %s with %d processes ..."
            % (rows, cols, net.n_dates, net.n_ifg, stack, workers),
            flush=True,
        )
        with multiprocessing.get_context("fork").Pool(
            workers, initializer=_gen_init, initargs=(stack, rows, cols, n_dates, seed)
        ) as pool:
            for i, _ in enumerate(pool.imap_unordered(_gen_pair, range(net.n_ifg))):
                if (i + 1) % 50 == 0:
                    print("  %d / %d pairs (%.0f s)" % (i + 1, net.n_ifg, time.perf_counter() - t0), flush=True)
        bowl, amp, nl, _ = fields(rows, cols)
        water, partial = masks(rows, cols, seed)
        offsets = np.random.default_rng([seed, 1000]).normal(0, 2.0, net.n_ifg)
        vel = planted_velocity(net.tyears, bowl, amp, nl).astype(np.float32)
        np.savez(
            truth_file, velocity=vel, water=water, offsets=offsets, tyears=net.tyears,
            dates=np.array([d.isoformat() for d in net.dates]),
        )
        sizes = {"unw_mb": folder_mb(stack, ".geo.unw.tif"), "cc_mb": folder_mb(stack, ".geo.cc.tif")}
        with open(marker, "w") as f:
            json.dump({"spec": spec, "sizes": sizes, "seconds": time.perf_counter() - t0}, f)
        print("frame stack written in %.0f s" % (time.perf_counter() - t0), flush=True)
    for name in os.listdir(stack):  # a freshly downloaded stack: no side-cars from earlier runs
        if name.endswith(".aux.xml"):
            os.remove(os.path.join(stack, name))
    info = json.load(open(marker))
    print(
        "frame stack %s: %d x %d px, %d dates, %d pairs (max dt %d d); %d + %d GeoTIFFs, interferograms %.0f MB, "
        "8-bit coherence %.0f MB (float32 uncompressed would be %.0f MB each); written in %.0f s"
        % (
            stack, rows, cols, net.n_dates, net.n_ifg, net.temporal_baselines.max(), len(ifgs), len(cohs),
            info["sizes"]["unw_mb"], info["sizes"]["cc_mb"], net.n_ifg * rows * cols * 4 / 2**20, info["seconds"],
        ),
        flush=True,
    )
    t = np.load(truth_file)
    return net, ifgs, cohs, {k: t[k] for k in t.files}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default="/work/frame_bench")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--workers", type=int, default=2, help="processes that write the stack (once)")
    a = ap.parse_args()
    net, ifgs, cohs, truth = make_frame(a.folder, workers=a.workers)
    if a.generate_only:
        return


if __name__ == "__main__":
    main()
