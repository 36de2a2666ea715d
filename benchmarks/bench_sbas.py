"""Benchmark: SBAS inversion (core/insar/sbas.py) vs MintPy 1.6.4 on the identical in-memory stack.

Peer venv (outside the repo; MintPy pulls numpy/scipy/h5py from PyPI)::

    python3 -m venv /work/venvs/mintpy
    /work/venvs/mintpy/bin/pip install mintpy==1.6.4

Run (one BLAS thread for both tools; the script sets OMP/OPENBLAS/MKL_NUM_THREADS=1)::

    /usr/bin/python3 benchmarks/bench_sbas.py                 # 500x500 px, 60 dates, ~198 pairs
    /usr/bin/python3 benchmarks/bench_sbas.py --size 100      # quick check
    /usr/bin/python3 benchmarks/bench_sbas.py --skip-weighted-mintpy   # MintPy WLS takes ~2 min
    /usr/bin/python3 benchmarks/bench_sbas.py --e2e /tmp/sbas_e2e/stack --no-mintpy --no-core --memory 256 \
        --threads 1 2 --scaling
        # also writes the stack as LiCSAR-named GeoTIFFs (+ coherence; deflate, 256 x 256 tiles; once,
        # reused) and runs qgis_process.bin ... subsidence:sbasinversion under /usr/bin/time -v (wall,
        # peak RSS, files added next to the inputs) with THREADS 1 and 2; the ratio divides the wall time by
        # the floor: one whole GDAL read of the inputs + the in-memory solve + a trivial qgis_process run
    /usr/bin/python3 benchmarks/bench_sbas.py --e2e /tmp/sbas_e2e/stack --no-mintpy --no-core --memory 256 \
        --threads 2 --default-qc --correct    # + LOOP_CLOSURE 2 and 3 in the end-to-end table
    /usr/bin/python3 benchmarks/bench_sbas.py --e2e /tmp/sbas_e2e/stack --no-mintpy --memory 256 --threads 2 \
        --fix 3    # 3 alternating runs LOOP_CLOSURE 2 / 3: what the unwrapping-error correction adds
    /usr/bin/python3 benchmarks/bench_sbas.py --e2e /tmp/sbas_e2e/stack --no-mintpy --no-core --memory 256 \
        --threads 1 2 --user-blas --e2e-repeat 2   # qgis_process with the BLAS variables users have (none): the
        # plugin's one-thread BLAS for the run vs BLAS left on every core (SUBSIDENCE_BLAS_THREADS=keep)

Stack: 60 Sentinel-1 dates on a 12-day grid with missing acquisitions, pairs
with temporal baseline <= 48 d; truth = subsidence bowl (up to -60 mm/yr) +
annual term (0-6 mm) + spatially smooth non-linear term; coherence decays
with temporal baseline and varies in space; phase noise drawn with the
Cramer-Rao standard deviation for L = 20 looks; per-interferogram offsets
that both tools remove with the same reference values; 2 % of pixels are
water (NaN in every interferogram) and 10 % of pixels miss 10 % of the
interferograms (NaN). Ours runs in this process (/usr/bin/python3), MintPy
in its venv via ``mintpy.ifgram_inversion.run_ifgram_inversion_patch`` on an
ifgramStack.h5 written from the same arrays (writing is not timed, reading
the HDF5 is part of MintPy's patch call). RMSE over every pixel with data
and every date, in mm; velocity = LSQ linear fit of the time series vs the
same fit of the truth.
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import tempfile
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # BLAS_VARS
    os.environ[_v] = "1"

import machine  # noqa: E402
import numpy as np  # noqa: E402
import toolkit_package  # noqa: E402, F401  (registers the checkout as subsidence_toolkit)

from subsidence_toolkit.core.insar import sbas  # noqa: E402
from subsidence_toolkit.core.insar.network import SbasNetwork  # noqa: E402
from subsidence_toolkit.core.insar.units import los_factor_mm, radians_per_mm  # noqa: E402
from subsidence_toolkit.core.insar.velocity import velocity_fit  # noqa: E402

WAVELENGTH = 0.05546576
MINTPY_PY = "/work/venvs/mintpy/bin/python"
LOOKS = 20

MINTPY_RUNNER = r"""
import os, sys, time, json
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
import numpy as np, h5py
from mintpy import ifgram_inversion as ii
d = np.load(sys.argv[1])
weight = sys.argv[2]
out = sys.argv[3]
phase, coh = d["phase"], d["coherence"]
M, H, W = phase.shape
fn = os.path.join(os.path.dirname(out), "inputs", "ifgramStack.h5")
os.makedirs(os.path.dirname(fn), exist_ok=True)
if not os.path.exists(fn):
    with h5py.File(fn, "w") as f:
        f.create_dataset("unwrapPhase", data=phase, chunks=(M, 100, 100) if H >= 100 else None)
        f.create_dataset("coherence", data=coh, chunks=(M, 100, 100) if H >= 100 else None)
        f.create_dataset("date", data=np.array([[a, b] for a, b in zip(d["date1"], d["date2"])], dtype="S8"))
        f.create_dataset("bperp", data=np.zeros(M, np.float32))
        f.create_dataset("dropIfgram", data=np.ones(M, np.bool_))
        f.attrs.update({"FILE_TYPE": "ifgramStack", "LENGTH": str(H), "WIDTH": str(W),
                        "WAVELENGTH": str(float(d["wavelength"])), "REF_Y": "0", "REF_X": "0",
                        "NCORRLOOKS": str(int(d["looks"])), "ALOOKS": "1", "RLOOKS": "1", "UNIT": "radian"})
t0 = time.perf_counter()
ts, _, tcoh, ninv, _ = ii.run_ifgram_inversion_patch(fn, box=None, ref_phase=d["ref_phase"],
                                                     weight_func=weight, min_norm_velocity=True)
t = time.perf_counter() - t0
np.save(out, ts.astype(np.float32))
print(json.dumps({"seconds": t, "zero_pixels": int(np.sum(np.all(ts == 0, axis=0) & (ninv == 0)))}))
"""


def make_dates(n=60, seed=2):
    rng = np.random.default_rng(seed)
    slots = np.arange(n + 8)
    skip = set(rng.choice(slots[2:-2], 8, replace=False).tolist())
    start = dt.date(2019, 1, 6)
    return [start + dt.timedelta(days=12 * int(s)) for s in slots if s not in skip][:n]


def make_stack(size=500, n_dates=60, max_days=48, seed=1):
    rng = np.random.default_rng(seed)
    dates = make_dates(n_dates)
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    M = net.n_ifg
    H = W = size
    yy, xx = np.mgrid[0:H, 0:W] / float(size)
    bowl = -60.0 * np.exp(-((xx - 0.45) ** 2 + (yy - 0.55) ** 2) / (2 * 0.15**2))  # mm/yr
    amp = 6.0 * (0.5 + 0.5 * np.sin(3 * xx) * np.cos(2 * yy))  # mm
    nl = 4.0 * np.cos(5 * xx + 3 * yy)  # mm, non-linear
    t = net.tyears[:, None, None]
    truth = bowl * t + amp * np.sin(2 * np.pi * t) + nl * (t / t[-1]) ** 2 * 3
    truth = (truth - truth[0]).astype(np.float64)  # mm
    mm2rad = -4 * np.pi / (WAVELENGTH * 1000.0)
    tb = net.temporal_baselines
    base_coh = 0.25 + 0.6 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.3) ** 2) / 0.2)  # spatial pattern
    phase = np.empty((M, H, W), np.float32)
    coh = np.empty((M, H, W), np.float32)
    offsets = rng.normal(0, 2.0, M)
    for k in range(M):
        g = np.clip(base_coh * np.exp(-tb[k] / 120.0) + rng.normal(0, 0.05, (H, W)), 0.1, 0.98)
        sig = np.sqrt((1 - g**2) / (2 * LOOKS * g**2))
        d = (truth[net.i2[k]] - truth[net.i1[k]]) * mm2rad
        phase[k] = d + rng.normal(0, 1, (H, W)) * sig + offsets[k]
        coh[k] = g
    P = H * W
    flat = phase.reshape(M, P)
    water = rng.random(P) < 0.02
    flat[:, water] = np.nan
    cand = np.flatnonzero(~water)
    part = rng.choice(cand, int(0.10 * P), replace=False)
    nmiss = max(1, int(round(0.1 * M)))
    miss = np.argsort(rng.random((part.size, M)), axis=1)[:, :nmiss]
    flat[miss.T, part[None, :]] = np.nan
    return net, dates, phase, coh, offsets, truth, water


def rmse(ts_mm, truth, has):
    d = ts_mm[:, has] - truth[:, has]
    return float(np.sqrt(np.nanmean(d**2)))


def vel_rmse(ts_mm, truth, tyears, has):
    v, _ = velocity_fit(ts_mm[:, has][:, None, :], tyears)
    vt, _ = velocity_fit(truth[:, has][:, None, :], tyears)
    return float(np.sqrt(np.nanmean((v - vt) ** 2)))


def run_ours(net, phase, coh, offsets, weighting, dtype, repeat):
    """Whole-scene inversion in row blocks (as the algorithm streams them): (median, best) of
    ``repeat`` runs and the time series."""
    M, H, W = phase.shape
    f = los_factor_mm("radians", WAVELENGTH)
    rad_per_mm = radians_per_mm(WAVELENGTH)
    best, out, times = None, None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ts = np.empty((net.n_dates, H, W), np.float32)
        step = 20
        work = {}  # work arrays reused from block to block, as the algorithm's driver does
        buf = np.empty((M, step, W), np.float32)
        for r0 in range(0, H, step):
            obs = buf[:, : min(step, H - r0)]
            np.subtract(phase[:, r0 : r0 + step], offsets[:, None, None].astype(np.float32), out=obs)
            obs *= np.float32(f)
            kw = {}
            if weighting != "none":
                kw = dict(coherence_block=coh[:, r0 : r0 + step], weighting=weighting, looks=LOOKS)
            t, q = sbas.sbas_invert_block(obs, net, rad_per_unit=rad_per_mm, dtype=dtype, workspace=work, **kw)
            ts[:, r0 : r0 + step] = t
        el = time.perf_counter() - t0
        times.append(el)
        if best is None or el < best:
            best, out = el, ts
    return float(np.median(times)), best, out


def run_mintpy(npz, weight, workdir):
    out = os.path.join(workdir, "ts_%s.npy" % weight)
    r = subprocess.run([MINTPY_PY, "-c", MINTPY_RUNNER, npz, weight, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    info = json.loads(r.stdout.strip().splitlines()[-1])
    return info, np.load(out)


def write_e2e_stack(folder, net, phase, coh):
    """The stack as LiCSAR-named GeoTIFFs (deflate, 256 x 256 tiles), written once and reused."""
    from subsidence_toolkit.core.io.rasters import grid_from_origin, write_raster

    os.makedirs(folder, exist_ok=True)
    M, H, W = phase.shape
    grid = grid_from_origin(108.0, 38.5, 0.001, 0.001, W, H)
    ifgs, cohs = [], []
    for k in range(M):
        tag = "%s_%s" % (net.dates[net.i1[k]].strftime("%Y%m%d"), net.dates[net.i2[k]].strftime("%Y%m%d"))
        f = os.path.join(folder, tag + ".geo.unw.tif")
        c = os.path.join(folder, tag + ".geo.cc.tif")
        if not os.path.exists(f):
            write_raster(f, grid, phase[k], units="radians")
            write_raster(c, grid, coh[k], units="")
        ifgs.append(f)
        cohs.append(c)
    for name in os.listdir(folder):  # a freshly downloaded stack: no side-cars from earlier runs
        if name.endswith(".aux.xml"):
            os.remove(os.path.join(folder, name))
    return ifgs, cohs


def read_floor(paths):
    """Seconds of one whole read of every file with GDAL (the I/O floor of any tool)."""
    from osgeo import gdal

    t0, c0 = time.perf_counter(), time.process_time()
    for p in paths:
        ds = gdal.Open(p)
        ds.GetRasterBand(1).ReadAsArray()
        ds = None
    read_floor.cpu = time.process_time() - c0
    return time.perf_counter() - t0


def startup_floor(folder):
    """Wall seconds of a trivial ``qgis_process.bin run`` (native:buffer of one point); ``startup_floor.rss``:
    its peak RSS (MB)."""
    from subsidence_toolkit.demo.headless import QgisProcess

    qp = QgisProcess(os.path.join(os.path.dirname(folder.rstrip("/")), "qgis_e2e_home"))
    pt = os.path.join(os.path.dirname(folder.rstrip("/")), "one_point.geojson")
    with open(pt, "w") as f:
        f.write(
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
            '"geometry": {"type": "Point", "coordinates": [108.1, 38.4]}}]}'
        )
    out = os.path.join(os.path.dirname(folder.rstrip("/")), "one_point_buffer.gpkg")
    t0 = time.perf_counter()
    r = subprocess.run(
        ["/usr/bin/time", "-v", qp.exe, "run", "native:buffer", "--", "INPUT=" + pt, "DISTANCE=0.01", "OUTPUT=" + out],
        env=qp.env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    rss = [line for line in r.stderr.splitlines() if "Maximum resident set size" in line]
    startup_floor.rss = int(rss[0].split(":")[1]) / 1024.0 if rss else float("nan")
    startup_floor.cpu = sum(
        float(line.split(":")[1])
        for line in r.stderr.splitlines()
        if line.strip().startswith(("User time", "System time"))
    )
    return wall


#: BLAS variables this script sets to one thread for the in-memory runs and the peers
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_e2e(folder, ifgs, cohs, memory_mb, weighting=0, threads=1, extra=None, tag="e2e_out", blas=None):
    """Time ``qgis_process.bin run subsidence:sbasinversion`` on the GeoTIFF stack: (wall s, peak RSS MB,
    time series, files the run added to the input folder); ``run_e2e.cpu``: user + system CPU seconds.
    ``blas``: None = the BLAS variables of this script (one thread); ``"user"`` = none of them, as a user's
    ``qgis_process`` or QGIS runs (BLAS on every core until the plugin sets it to one thread for the run);
    ``"user-keep"`` = the same with ``SUBSIDENCE_BLAS_THREADS=keep`` (the plugin leaves BLAS alone: as before)."""
    from osgeo import gdal

    from subsidence_toolkit.demo.headless import QgisProcess

    qp = QgisProcess(os.path.join(os.path.dirname(folder.rstrip("/")), "qgis_e2e_home"))
    out = os.path.join(os.path.dirname(folder.rstrip("/")), tag)
    os.makedirs(out, exist_ok=True)
    params = {
        "INTERFEROGRAMS": ifgs,
        "COHERENCE": cohs,
        "WEIGHTING": weighting,
        "MEMORY_LIMIT_MB": memory_mb,
        "THREADS": threads,
        "OUTPUT_TIMESERIES": os.path.join(out, "ts.tif"),
        "OUTPUT_VELOCITY": os.path.join(out, "vel.tif"),
        "OUTPUT_QUALITY": os.path.join(out, "q.tif"),
        "OUTPUT_NETWORK": os.path.join(out, "net.csv"),
    }
    # before issue 14 there was no loop closure and no ramp: keep that the baseline unless asked
    params.update({"LOOP_CLOSURE": 0, "DERAMP": 0})
    params.update(extra or {})
    before = set(os.listdir(folder))
    cmd = ["/usr/bin/time", "-v", qp.exe, "--json", "run", "subsidence:sbasinversion", "--"] + qp.arguments(params)
    env = dict(qp.env)
    if blas in ("user", "user-keep"):
        for v in BLAS_VARS:
            env.pop(v, None)
        if blas == "user-keep":
            env["SUBSIDENCE_BLAS_THREADS"] = "keep"
    t0 = time.perf_counter()
    with machine.Steal() as stolen:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    run_e2e.steal = stolen.fraction
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-3000:])
    rss = [line for line in r.stderr.splitlines() if "Maximum resident set size" in line]
    rss_mb = int(rss[0].split(":")[1]) / 1024.0 if rss else float("nan")
    run_e2e.cpu = sum(
        float(line.split(":")[1])
        for line in r.stderr.splitlines()
        if line.strip().startswith(("User time", "System time"))
    )
    # the algorithm's own account of where the time went (pass times; reading / solving / writing)
    run_e2e.passes = [
        ln.strip().strip('",') for ln in r.stdout.splitlines() if " pass took " in ln or "invert pass: reading" in ln
    ]
    ts = gdal.Open(params["OUTPUT_TIMESERIES"]).ReadAsArray()
    return wall, rss_mb, ts, sorted(set(os.listdir(folder)) - before)


def solve_threaded(net, phase, offsets, threads, step=20):
    """The in-memory solve of :func:`run_ours` (unweighted) with row blocks on ``threads`` threads
    (core ``map_threads``): seconds and the time series."""
    from subsidence_toolkit.core.io.tasks import map_threads

    M, H, W = phase.shape
    f = los_factor_mm("radians", WAVELENGTH)
    rad_per_mm = radians_per_mm(WAVELENGTH)
    ts = np.empty((net.n_dates, H, W), np.float32)

    def task(r0, _):
        obs = np.subtract(phase[:, r0 : r0 + step], offsets[:, None, None].astype(np.float32))
        obs *= np.float32(f)
        t, _ = sbas.sbas_invert_block(obs, net, rad_per_unit=rad_per_mm, dtype=np.float32)
        return t

    t0 = time.perf_counter()
    for i, t in map_threads(task, list(range(0, H, step)), threads, shared=0):
        r0 = i * step
        ts[:, r0 : r0 + step] = t
    return time.perf_counter() - t0, ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--dates", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-weighted-mintpy", action="store_true")
    ap.add_argument("--no-mintpy", action="store_true")
    ap.add_argument("--no-core", action="store_true", help="skip the in-memory comparison")
    ap.add_argument("--e2e", help="folder for the end-to-end qgis_process run from GeoTIFFs")
    ap.add_argument("--memory", type=float, default=256, help="MEMORY_LIMIT_MB of the end-to-end run")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="THREADS of the end-to-end runs")
    ap.add_argument("--scaling", action="store_true", help="also the in-memory solve on 1 and 2 threads")
    ap.add_argument("--e2e-repeat", type=int, default=1, help="end-to-end runs per configuration (best wall)")
    ap.add_argument("--default-qc", action="store_true", help="also end to end with the default loop closure")
    ap.add_argument(
        "--user-blas",
        action="store_true",
        help="end-to-end runs without this script's one-thread BLAS variables (as users run qgis_process), each "
        "twice: with the plugin's one-thread BLAS for the run and with SUBSIDENCE_BLAS_THREADS=keep (BLAS left "
        "on every core, as before)",
    )
    ap.add_argument(
        "--correct",
        action="store_true",
        help="also end to end with LOOP_CLOSURE 3 (per-pixel unwrapping-error correction by phase closure)",
    )
    ap.add_argument(
        "--qc",
        type=int,
        default=0,
        metavar="N",
        help="end to end (needs --e2e): N alternating runs without / with loop closure (reject) + linear "
        "deramp, unweighted, to measure what the network QC adds",
    )
    ap.add_argument(
        "--fix",
        type=int,
        default=0,
        metavar="N",
        help="end to end (needs --e2e): N alternating runs with LOOP_CLOSURE 2 (reject) / 3 (correct unwrapping "
        "errors per pixel), unweighted, to measure what the correction adds",
    )
    a = ap.parse_args()
    net, dates, phase, coh, offsets, truth, water = make_stack(a.size, a.dates)
    M, H, W = phase.shape
    P = H * W
    has = ~water
    print(
        "stack %dx%d px, %d dates, %d pairs (max dt %d d), %d partial px, %d water px"
        % (
            H,
            W,
            net.n_dates,
            M,
            net.temporal_baselines.max(),
            int(np.sum(np.isnan(phase.reshape(M, -1)).any(0) & has)),
            int(water.sum()),
        )
    )
    tr = truth.reshape(net.n_dates, -1)
    results = {}
    if a.e2e and (a.qc or a.fix):
        ifgs, cohs = write_e2e_stack(a.e2e, net, phase, coh)
        if a.fix:
            labels = (("reject", {"LOOP_CLOSURE": 2}), ("correct", {"LOOP_CLOSURE": 3}))
        else:
            labels = (("baseline", {}), ("loop+deramp", {"LOOP_CLOSURE": 2, "DERAMP": 1}))
        (base, other), n_runs = [lab for lab, _ in labels], a.fix or a.qc
        walls = {base: [], other: []}
        cpus = {base: [], other: []}
        for rep in range(n_runs):
            for label, extra in labels:
                load = os.getloadavg()[0]
                wall, rss, ts, _ = run_e2e(a.e2e, ifgs, cohs, a.memory, 0, a.threads[0], extra, tag="qc_" + label)
                walls[label].append(wall)
                cpus[label].append(run_e2e.cpu)
                print(
                    "e2e qgis_process %-11s run %d: wall %.1f s, CPU (user + sys) %.1f s, peak RSS %.0f MB, "
                    "load avg before %.2f" % (label, rep + 1, wall, run_e2e.cpu, rss, load)
                )
        for what, d in (("wall", walls), ("CPU", cpus)):
            b, q = np.median(d[base]), np.median(d[other])
            print(
                "%s adds %.1f s to %.1f s of %s (%s; median of %d): %+.0f %%"
                % (other, q - b, b, what, base, n_runs, 100 * (q - b) / b)
            )
        return
    if a.e2e:
        ifgs, cohs = write_e2e_stack(a.e2e, net, phase, coh)
        load = os.getloadavg()
        read_s, read_cpu = min((read_floor(ifgs + cohs), read_floor.cpu) for _ in range(2))
        read_ifg_s = min(read_floor(ifgs) for _ in range(2))
        start_s, start_cpu = min((startup_floor(a.e2e), startup_floor.cpu) for _ in range(2))
        solve, solve_cpu = {}, {}
        for weighting in ("none", "coherence"):
            c0 = time.process_time()
            solve[weighting] = run_ours(net, phase, coh, offsets, weighting, np.float32, 1)[0]
            solve_cpu[weighting] = time.process_time() - c0
        print(
            "floors in CPU seconds: read %.2f, qgis_process.bin start-up %.2f, solve %.2f (weighted %.2f)"
            % (read_cpu, start_cpu, solve_cpu["none"], solve_cpu["coherence"])
        )
        print(
            "floors (load %.1f %.1f %.1f): one whole GDAL read of %d+%d files %.2f s (interferograms only %.2f s), "
            "qgis_process.bin run native:buffer %.2f s (peak RSS %.0f MB), in-memory solve %.2f s (weighted %.2f s)"
            % (load + (M, M, read_s, read_ifg_s, start_s, startup_floor.rss, solve["none"], solve["coherence"]))
        )
        configs = [(0, "none", {}), (1, "coherence", {})]
        if a.default_qc:
            configs.append((0, "none+QC", {"LOOP_CLOSURE": 2}))
        if a.correct:
            configs.append((0, "none+fix", {"LOOP_CLOSURE": 3}))
        blas_modes = ("user", "user-keep") if a.user_blas else (None,)
        for threads in a.threads:
            for (wmode, label, extra), blas in [(c, b) for c in configs for b in blas_modes]:
                runs = []
                for _ in range(a.e2e_repeat):
                    wall, rss, ts, added = run_e2e(a.e2e, ifgs, cohs, a.memory, wmode, threads, extra, blas=blas)
                    runs.append((wall, run_e2e.cpu, rss, added, run_e2e.passes, run_e2e.steal))
                wall = min(r[0] for r in runs)
                cpu = min(r[1] for r in runs)
                rss = max(r[2] for r in runs)
                added = sorted(set(f for r in runs for f in r[3]))
                floor = read_s + solve[label.split("+")[0]] + start_s
                floor_cpu = read_cpu + solve_cpu[label.split("+")[0]] + start_cpu
                if blas is not None:
                    print(
                        "  BLAS as users have it (no *_NUM_THREADS), %s:"
                        % (
                            "the plugin's one-thread BLAS for the run"
                            if blas == "user"
                            else "SUBSIDENCE_BLAS_THREADS=keep"
                        )
                    )
                print(
                    "e2e qgis_process w=%-9s threads=%d: wall %.2f s (best of %d), CPU %.2f s, ratio %.2f (floor "
                    "%.2f s), CPU ratio %.2f (floor %.2f s), peak RSS %.0f MB (MEMORY_LIMIT_MB=%g), files added "
                    "next to the inputs: %d%s (load %.1f; CPU stolen by the host in the best run %.0f %%)"
                    % (
                        label,
                        threads,
                        wall,
                        len(runs),
                        cpu,
                        wall / floor,
                        floor,
                        cpu / floor_cpu,
                        floor_cpu,
                        rss,
                        a.memory,
                        len(added),
                        (" " + ", ".join(added[:3])) if added else "",
                        os.getloadavg()[0],
                        100 * min(runs, key=lambda r: r[0])[5],
                    )
                )
                for line in min(runs, key=lambda r: r[0])[4]:  # the best run's own account
                    print("    " + line)
        if a.scaling:
            for threads in (1, 2):
                sec = min(solve_threaded(net, phase, offsets, threads)[0] for _ in range(a.repeat))
                print("in-memory solve (unweighted) threads=%d: %.3f s" % (threads, sec))
    if a.no_core:
        return
    for weighting in ("none", "coherence"):
        for dtype in (np.float32,):
            sec, best, ts = run_ours(net, phase, coh, offsets, weighting, dtype, a.repeat)
            tsf = ts.reshape(net.n_dates, -1).astype(np.float64)
            zero = int(np.sum(has & np.all(tsf == 0, axis=0)))
            results[("ours", weighting)] = sec
            print(
                "ours   w=%-9s %7.3f s  %9.0f px/s  RMSE ts %.3f mm  vel %.3f mm/yr  all-zero px with data: %d"
                "  (median of %d runs; best %.3f s)"
                % (
                    weighting,
                    sec,
                    P / sec,
                    rmse(tsf, tr, has),
                    vel_rmse(tsf, tr, net.tyears, has),
                    zero,
                    a.repeat,
                    best,
                )
            )
    if a.no_mintpy:
        return
    if not os.path.exists(MINTPY_PY):
        print("MintPy venv %s not found: peer not measured" % MINTPY_PY)
        return
    with tempfile.TemporaryDirectory() as tmp:
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
        for weighting, mw in (("none", "no"), ("coherence", "coh")):
            if weighting != "none" and a.skip_weighted_mintpy:
                continue
            info, ts_m = run_mintpy(npz, mw, tmp)
            tsm = ts_m.reshape(net.n_dates, -1).astype(np.float64) * 1000.0
            sec = info["seconds"]
            print(
                "MintPy w=%-9s %7.3f s  %9.0f px/s  RMSE ts %.3f mm  vel %.3f mm/yr  all-zero px with data: %d"
                % (
                    mw,
                    sec,
                    P / sec,
                    rmse(tsm, tr, has),
                    vel_rmse(tsm, tr, net.tyears, has),
                    int(np.sum(has & np.all(tsm == 0, axis=0))),
                )
            )
            print("  ratio ours/MintPy px/s (w=%s): %.1fx" % (weighting, sec / results[("ours", weighting)]))


if __name__ == "__main__":
    main()
