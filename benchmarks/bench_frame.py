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
import machine  # noqa: E402

from subsidence_toolkit.core.insar import sbas  # noqa: E402
from subsidence_toolkit.core.insar.network import SbasNetwork  # noqa: E402
from subsidence_toolkit.core.insar.units import los_factor_mm, radians_per_mm  # noqa: E402

ROWS, COLS, N_DATES = 2000, 2500, 150
WAVELENGTH = bench_sbas.WAVELENGTH
LOOKS = bench_sbas.LOOKS
SEED = 20
MM2RAD = -4 * np.pi / (WAVELENGTH * 1000.0)
CROP = (850, 875, 500)  # row0, col0, size of the MintPy crop (centred on the bowl)
STACK_VERSION = 2


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


def truth_at(tyears, bowl, amp, nl, t_last):
    """Planted displacement (mm) at the times ``tyears`` (years since the first date; ``t_last``: the last
    date's), shape (len(tyears), rows, cols)."""
    t = np.asarray(tyears, np.float64)[:, None, None]
    tl = float(t_last)

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
        folder=folder,
        net=net,
        bowl=bowl,
        amp=amp,
        nl=nl,
        base_coh=base_coh,
        water=water,
        partial=partial,
        offsets=offsets,
        rows=rows,
        cols=cols,
        seed=seed,
        names=pair_names(net),
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
    d = truth_at(t, g["bowl"], g["amp"], g["nl"], net.tyears[-1])
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
            truth_file,
            velocity=vel,
            water=water,
            offsets=offsets,
            tyears=net.tyears,
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
            stack,
            rows,
            cols,
            net.n_dates,
            net.n_ifg,
            net.temporal_baselines.max(),
            len(ifgs),
            len(cohs),
            info["sizes"]["unw_mb"],
            info["sizes"]["cc_mb"],
            net.n_ifg * rows * cols * 4 / 2**20,
            info["seconds"],
        ),
        flush=True,
    )
    t = np.load(truth_file)
    return net, ifgs, cohs, {k: t[k] for k in t.files}


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def time_v(stderr):
    """(peak RSS MB, user + system CPU s) from ``/usr/bin/time -v``."""
    rss = [line for line in stderr.splitlines() if "Maximum resident set size" in line]
    cpu = sum(
        float(line.split(":")[1])
        for line in stderr.splitlines()
        if line.strip().startswith(("User time", "System time"))
    )
    return (int(rss[0].split(":")[1]) / 1024.0 if rss else float("nan")), cpu


def velocity_rmse(vel, truth):
    """RMSE (mm/yr) of ``vel`` vs the planted velocity over the pixels with data, after removing the median
    difference (the automatic reference point is a free choice) and that constant."""
    d = vel.astype(np.float64) - truth["velocity"]
    ok = np.isfinite(d) & ~truth["water"]
    c = float(np.median(d[ok]))
    return float(np.sqrt(np.mean((d[ok] - c) ** 2))), c, int(ok.sum())


def pages_text(pages):
    """What :class:`machine.PageCounts` saw during a run, as text."""
    if pages.allocated_gb is None:
        return "page counts not readable"
    return (
        "the machine allocated %.1f GB of pages during the run, %.1f GB of it anonymous memory faulted in as 2 MB "
        "pages, %.2f M page faults" % (pages.allocated_gb, pages.huge_faults_gb, pages.faults / 1e6)
    )


def run_frame(root, ifgs, cohs, truth, memory_mb, threads, loop_closure, timeout, keep=False):
    """``qgis_process.bin run subsidence:sbasinversion`` on the frame under ``/usr/bin/time -v``: a dict of wall,
    CPU, peak RSS, files added next to the inputs and the velocity RMSE."""
    from osgeo import gdal

    from subsidence_toolkit.demo.headless import QgisProcess

    qp = QgisProcess(os.path.join(root, "qgis_e2e_home"))
    out = os.path.join(root, "run_out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    params = {
        "INTERFEROGRAMS": ifgs,
        "COHERENCE": cohs,
        "MEMORY_LIMIT_MB": memory_mb,
        "THREADS": threads,
        "LOOP_CLOSURE": loop_closure,
        "OUTPUT_TIMESERIES": os.path.join(out, "ts.tif"),
        "OUTPUT_VELOCITY": os.path.join(out, "vel.tif"),
        "OUTPUT_QUALITY": os.path.join(out, "q.tif"),
        "OUTPUT_NETWORK": os.path.join(out, "net.csv"),
    }
    stack = os.path.dirname(ifgs[0])
    before = set(os.listdir(stack))
    cmd = ["/usr/bin/time", "-v", qp.exe, "--json", "run", "subsidence:sbasinversion", "--"] + qp.arguments(params)
    t0 = time.perf_counter()
    try:
        with machine.Steal() as stolen, machine.PageCounts() as pages:
            r = subprocess.run(cmd, env=qp.env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %.0f s" % timeout}
    wall = time.perf_counter() - t0
    logs = os.path.join(root, "run_logs")
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, "threads%d_loop%d.log" % (threads, loop_closure)), "w") as f:
        f.write(r.stdout + "\n" + r.stderr)  # the algorithm's log (threads used, windows) and /usr/bin/time -v
    if r.returncode != 0:
        return {"error": "exit %d: %s" % (r.returncode, (r.stdout[-600:] + r.stderr[-900:]).replace("\n", " | "))}
    rss, cpu = time_v(r.stderr)
    added = sorted(set(os.listdir(stack)) - before)
    ds = gdal.Open(params["OUTPUT_VELOCITY"])
    vel = ds.ReadAsArray()
    ds = None
    v_rmse, v_offset, n_px = velocity_rmse(vel, truth)
    ts_mb = os.path.getsize(params["OUTPUT_TIMESERIES"]) / 2**20
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    # the algorithm's own account of where the time went (pass times; reading / solving / writing)
    passes = [
        ln.strip().strip('",') for ln in r.stdout.splitlines() if " pass took " in ln or "invert pass: reading" in ln
    ]
    return {
        "passes": passes,
        "steal": stolen.fraction,
        "pages": pages,
        "wall": wall,
        "cpu": cpu,
        "rss": rss,
        "added": added,
        "vel_rmse": v_rmse,
        "vel_offset": v_offset,
        "n_px": n_px,
        "ts_mb": ts_mb,
    }


def read_strip(paths, r0, nr, cols, dtype=np.float32):
    """Rows r0:r0+nr of every file, stacked (M, nr, cols)."""
    from osgeo import gdal

    out = np.empty((len(paths), nr, cols), dtype)
    for k, p in enumerate(paths):
        ds = gdal.Open(p)
        out[k] = ds.GetRasterBand(1).ReadAsArray(0, r0, cols, nr)
        ds = None
    return out


def solve_floor(net, ifgs, offsets, threads_list, strip=256, block=16, limit_rows=None):
    """Seconds of the in-memory solve of the whole frame per thread count: strips of ``strip`` rows are read
    (not timed), then ``sbas_invert_block`` runs on blocks of ``block`` rows of the strip in memory (phase minus
    the planted offsets, times the LOS factor; unweighted, float32): one thread = the sum over the blocks, n
    threads = the wall of ``map_threads`` over the blocks of each strip, summed. ``limit_rows``: only that many
    rows (a quick check; the sum is then scaled to the frame). Returns ({threads: seconds}, {threads: CPU s})."""
    from subsidence_toolkit.core.io.tasks import map_threads

    rows = ROWS if limit_rows is None else min(ROWS, limit_rows)
    f = np.float32(los_factor_mm("radians", WAVELENGTH))
    rad_per_mm = radians_per_mm(WAVELENGTH)
    off = offsets.astype(np.float32)[:, None, None]
    wall = {t: 0.0 for t in threads_list}
    cpu = {t: 0.0 for t in threads_list}

    def task(b0, phase):
        obs = np.subtract(phase[:, b0 : b0 + block], off)
        obs *= f
        return sbas.sbas_invert_block(obs, net, rad_per_unit=rad_per_mm, dtype=np.float32)[0]

    for r0 in range(0, rows, strip):
        nr = min(strip, rows - r0)
        phase = read_strip(ifgs, r0, nr, COLS)
        for t in threads_list:
            c0, t0 = time.process_time(), time.perf_counter()
            if t == 1:
                for b0 in range(0, nr, block):
                    task(b0, phase)
            else:
                for _ in map_threads(task, list(range(0, nr, block)), t, shared=phase):
                    pass
            wall[t] += time.perf_counter() - t0
            cpu[t] += time.process_time() - c0
        del phase
    scale = ROWS / float(rows)
    return {t: w * scale for t, w in wall.items()}, {t: c * scale for t, c in cpu.items()}


def crop_vs_mintpy(root, net, ifgs, cohs, truth, repeat):
    """Ours in memory (``bench_sbas.run_ours``) and MintPy 1.6.4 on the 500 x 500 crop; prints one line each."""
    from osgeo import gdal

    r0, c0, n = CROP
    phase = np.empty((net.n_ifg, n, n), np.float32)
    coh = np.empty((net.n_ifg, n, n), np.float32)
    for k in range(net.n_ifg):
        ds = gdal.Open(ifgs[k])
        phase[k] = ds.GetRasterBand(1).ReadAsArray(c0, r0, n, n)
        ds = gdal.Open(cohs[k])
        coh[k] = ds.GetRasterBand(1).ReadAsArray(c0, r0, n, n) / np.float32(255.0)
        ds = None
    bowl, amp, nl, _ = fields(ROWS, COLS, r0, r0 + n)
    sl = slice(c0, c0 + n)
    tr = truth_at(net.tyears, bowl[:, sl], amp[:, sl], nl[:, sl], net.tyears[-1]).reshape(net.n_dates, -1)
    has = ~truth["water"][r0 : r0 + n, sl].ravel()
    offsets = truth["offsets"]
    sec, best, ts = bench_sbas.run_ours(net, phase, coh, offsets, "none", np.float32, repeat)
    tsf = ts.reshape(net.n_dates, -1).astype(np.float64)
    print(
        "crop %dx%d px (rows %d-%d, cols %d-%d), %d pairs, %d dates: ours in memory (unweighted) %.2f s "
        "(median of %d, best %.2f), RMSE ts %.3f mm, vel %.3f mm/yr (%s)"
        % (
            n,
            n,
            r0,
            r0 + n,
            c0,
            c0 + n,
            net.n_ifg,
            net.n_dates,
            sec,
            repeat,
            best,
            bench_sbas.rmse(tsf, tr, has),
            bench_sbas.vel_rmse(tsf, tr, net.tyears, has),
            load(),
        ),
        flush=True,
    )
    if not os.path.exists(bench_sbas.MINTPY_PY):
        print("MintPy venv %s not found: peer not measured" % bench_sbas.MINTPY_PY)
        return
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        npz = os.path.join(tmp, "stack.npz")
        np.savez(
            npz,
            phase=phase,
            coherence=coh,
            ref_phase=offsets.astype(np.float32),
            date1=np.array([net.dates[i].strftime("%Y%m%d") for i in net.i1]),
            date2=np.array([net.dates[i].strftime("%Y%m%d") for i in net.i2]),
            wavelength=WAVELENGTH,
            looks=LOOKS,
        )
        del phase, coh
        info, ts_m = bench_sbas.run_mintpy(npz, "no", tmp)
    tsm = ts_m.reshape(net.n_dates, -1).astype(np.float64) * 1000.0
    print(
        "crop MintPy 1.6.4 (weight no): %.2f s, RMSE ts %.3f mm, vel %.3f mm/yr, all-zero px with data %d (ours %d); "
        "MintPy / ours %.1fx (%s)"
        % (
            info["seconds"],
            bench_sbas.rmse(tsm, tr, has),
            bench_sbas.vel_rmse(tsm, tr, net.tyears, has),
            int(np.sum(has & np.all(tsm == 0, axis=0))),
            int(np.sum(has & np.all(tsf == 0, axis=0))),
            info["seconds"] / sec,
            load(),
        ),
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default="/work/frame_bench")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--workers", type=int, default=2, help="processes that write the stack (once)")
    ap.add_argument("--memory", type=float, default=2048, help="MEMORY_LIMIT_MB of the end-to-end runs")
    ap.add_argument(
        "--runs",
        nargs="*",
        default=["0:2", "0:0", "1:2", "1:0"],
        metavar="THREADS:LOOP_CLOSURE",
        help="end-to-end runs (default: all cores and one thread, with the default loop closure and without)",
    )
    ap.add_argument(
        "--cycles",
        type=int,
        default=1,
        help="the --runs list this many times in turn (alternating: a noisy host's spells fall on both sides); a "
        "summary per LOOP_CLOSURE then compares the best of each thread count",
    )
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds before an end-to-end run is stopped")
    ap.add_argument("--no-floors", action="store_true")
    ap.add_argument("--floor-rows", type=int, help="in-memory solve on the first N rows only, scaled to the frame")
    ap.add_argument("--no-mintpy", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours in memory on the crop (median)")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the last run's outputs in FOLDER/run_out")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # 200 x 250 px: checks the script
    a = ap.parse_args()
    global ROWS, COLS, CROP
    if a.smoke:
        ROWS, COLS, CROP = 200, 250, (50, 60, 100)
    from subsidence_toolkit.core.io.tasks import default_threads

    print(
        "bench_frame: %d cores, %s, %s"
        % (default_threads(), dt.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), load()),
        flush=True,
    )
    net, ifgs, cohs, truth = make_frame(a.folder, ROWS, COLS, workers=a.workers)
    if a.generate_only:
        return
    cores = default_threads()
    threads_of = {int(r.split(":")[0]) or cores for r in a.runs}
    floor = None
    if not a.no_floors:
        l0 = load()
        read_s = bench_sbas.read_floor(ifgs + cohs)
        read_cpu = bench_sbas.read_floor.cpu
        print(
            "floor: one whole GDAL read of %d + %d files (one at a time, nothing kept): %.1f s, CPU %.1f s (%s)"
            % (len(ifgs), len(cohs), read_s, read_cpu, l0),
            flush=True,
        )
        start_s = min(bench_sbas.startup_floor(os.path.join(a.folder, "stack")) for _ in range(2))
        print(
            "floor: qgis_process.bin run native:buffer on one point: %.2f s (best of 2), CPU %.2f s, peak RSS %.0f MB"
            " (%s)" % (start_s, bench_sbas.startup_floor.cpu, bench_sbas.startup_floor.rss, load()),
            flush=True,
        )
        tl = sorted({1} | threads_of)
        l0 = load()
        solve_s, solve_cpu = solve_floor(net, ifgs, truth["offsets"], tl, limit_rows=a.floor_rows)
        for t in tl:
            print(
                "floor: in-memory solve of the frame (sbas_invert_block on 16-row blocks already in memory, unweighted "
                "float32, summed over the frame%s), %d thread%s: %.1f s, CPU %.1f s (%s)"
                % (
                    "" if a.floor_rows is None else ", first %d rows scaled" % a.floor_rows,
                    t,
                    "s" if t > 1 else "",
                    solve_s[t],
                    solve_cpu[t],
                    l0,
                ),
                flush=True,
            )
        floor = {t: read_s + start_s + solve_s[t] for t in tl}
    if not a.no_mintpy:
        crop_vs_mintpy(a.folder, net, ifgs, cohs, truth, a.repeat)
    done = {}  # (threads, loop) -> [(wall, cpu, ceiling, streaming ceiling)]
    for spec in a.runs * max(1, a.cycles):
        threads, loop = (int(x) for x in spec.split(":"))
        ceiling = machine.ceiling()  # BLAS on one thread, best of 3: what two threads can give right now
        streaming = machine.streaming_ceiling()  # the same for work bound by memory bandwidth
        touch = machine.first_touch()  # new memory against memory touched before (GB/s)
        l0 = load()
        res = run_frame(a.folder, ifgs, cohs, truth, a.memory, threads, loop, a.timeout, keep=a.keep_outputs)
        label = "e2e qgis_process sbasinversion THREADS=%d LOOP_CLOSURE=%d MEMORY_LIMIT_MB=%g" % (
            threads,
            loop,
            a.memory,
        )
        if "error" in res:
            print("%s: FAILED %s (%s)" % (label, res["error"], l0), flush=True)
            continue
        t = threads or cores
        ratio = (
            (
                " ratio %.2f (floor %.1f s = read + start-up + solve on %d thread%s)"
                % (res["wall"] / floor[t], floor[t], t, "s" if t > 1 else "")
            )
            if floor
            else ""
        )
        print(
            "%s: wall %.1f s, CPU %.1f s, peak RSS %.0f MB,%s files added next to the inputs: %d%s, velocity RMSE "
            "%.3f mm/yr over %d px (constant %.2f removed), time series %.0f MB (%s before, %s after; CPU stolen by "
            "the host during the run %.0f %%; two-thread ceiling just before %.2fx, %.2fx for memory-bound work; "
            "new memory written at %.2f GB/s, touched memory at %.1f GB/s; %s)"
            % (
                label,
                res["wall"],
                res["cpu"],
                res["rss"],
                ratio,
                len(res["added"]),
                (" " + ", ".join(res["added"][:3])) if res["added"] else "",
                res["vel_rmse"],
                res["n_px"],
                res["vel_offset"],
                res["ts_mb"],
                l0,
                load(),
                100 * res["steal"],
                ceiling,
                streaming,
                touch[0],
                touch[1],
                pages_text(res["pages"]),
            ),
            flush=True,
        )
        for line in res["passes"]:
            print("    " + line, flush=True)
        done.setdefault((threads or cores, loop), []).append((res["wall"], res["cpu"], ceiling, streaming))
    scaling_summary(done)


def scaling_summary(done):
    """Per LOOP_CLOSURE with runs on one thread and on more: the speed-up of the best runs, split into what the
    run does with the cores (cores busy = CPU / wall of the multi-thread run, against 1 for one thread) and what
    the machine does to each CPU second with both cores busy (CPU of the multi-thread run / CPU of one thread:
    shared caches, memory bandwidth, the host), with the ceilings measured before the runs."""
    for loop in sorted({lp for _, lp in done}):
        one = done.get((1, loop))
        for t in sorted(t for t, lp in done if lp == loop and t > 1):
            if not one:
                continue
            many = done[(t, loop)]
            w1, c1 = min(one)[:2]
            wn, cn = min(many)[:2]
            ceilings = [c[2] for c in one + many]
            streaming = [c[3] for c in one + many]
            print(
                "scaling, LOOP_CLOSURE=%d: %d threads %.2fx (best %.1f s of %d vs best %.1f s of %d on one thread; "
                "all pairs in turn: %s); cores busy %.2f of %d (one thread %.2f), CPU %.1f s vs %.1f s (x%.2f with "
                "both cores busy); two-thread ceiling %.2f-%.2fx, %.2f-%.2fx for memory-bound work"
                % (
                    loop,
                    t,
                    w1 / wn,
                    wn,
                    len(many),
                    w1,
                    len(one),
                    ", ".join("%.2fx" % (a[0] / b[0]) for a, b in zip(one, many)),
                    cn / wn,
                    t,
                    c1 / w1,
                    cn,
                    c1,
                    cn / c1,
                    min(ceilings),
                    max(ceilings),
                    min(streaming),
                    max(streaming),
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
