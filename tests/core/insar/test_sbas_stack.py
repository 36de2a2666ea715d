"""core/insar/memory_plan.py, sbas_stack.py: memory plan of the streamed SBAS inversion, window-split invariance."""

import datetime as dt
import math
import os
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from osgeo import gdal, osr
from synthetic import assert_equal_to_float32_rounding

from subsidence_toolkit.core.insar import memory_plan, sbas, sbas_stack
from subsidence_toolkit.core.insar.kernels import work_array
from subsidence_toolkit.core.insar.network import SbasNetwork
from subsidence_toolkit.core.insar.stack import prepare_stack
from subsidence_toolkit.core.io.errors import Cancelled

MIB = 2**20


@pytest.mark.parametrize(
    "ysize,xsize,block,buf,solve,cap",
    [
        (500, 500, (256, 256), 4 * (202 + 66), 3766, 256),
        (500, 500, (256, 256), 4 * (404 + 66), 16420, 128),
        (500, 500, (256, 256), 4 * (404 + 66), 16420, 2048),
        (3000, 2500, (512, 512), 4 * (300 + 100), 8000, 512),
        (1200, 900, (900, 4), 4 * (202 + 66), 3766, 96),  # stripped input, 4 rows per strip
        (1200, 900, (900, 1), 4 * (202 + 66), 3766, 40),
        (77, 53, (16, 16), 4 * (40 + 20), 900, 6),
    ],
)
def test_plan_stays_within_its_budget_and_covers_the_grid(ysize, xsize, block, buf, solve, cap):
    plan = memory_plan.plan_blocks(ysize, xsize, block, buf, solve, cap, out_bands=66, solve_fixed=2 * MIB)
    assert plan["budget"] <= cap * MIB * (1 - memory_plan.ALLOCATOR_SLACK) + 1
    if plan["fits"]:
        assert plan["total"] <= plan["budget"]
        assert sum(plan["parts"].values()) == plan["total"]
    cover = np.zeros((ysize, xsize), np.int32)
    for r0, h, c0, w in plan["windows"]:
        assert plan["sub_rows"] >= 1 and h >= 1 and w >= 1
        cover[r0 : r0 + h, c0 : c0 + w] += 1
        # the largest window's buffer and one sub-block are what the plan counted
        assert buf * h * w <= plan["parts"]["buffers"]
        assert solve * min(h, plan["sub_rows"]) * w + 2 * MIB <= plan["parts"]["solve"]
    assert np.all(cover == 1)
    h0, w0 = plan["windows"][0][1], plan["windows"][0][3]
    bw, bh = min(block[0], xsize), min(block[1], ysize)
    if h0 >= bh:  # whole input blocks per window: each block decompressed once per pass
        assert all(r0 % bh == 0 for r0, _, _, _ in plan["windows"])
        assert all(c0 % bw == 0 for _, _, c0, _ in plan["windows"]) or w0 == xsize
    assert plan["gdal_cache"] >= memory_plan.MIN_GDAL_CACHE


def test_plan_uses_whole_tiles_when_they_fit():
    # benchmark stack, unweighted, 256 MB: one tile row (256 x 500) of all 202 interferograms buffered
    p = memory_plan.plan_blocks(500, 500, (256, 256), 4 * (202 + 66), 3766, 256, out_bands=66, solve_fixed=17 * MIB)
    assert p["fits"] and p["windows"][0] == (0, 256, 0, 500)
    # weighted at 128 MB: part of a tile row of one tile column (tiles decompressed 256 / rows times); the
    # output tiles of that column wait in GDAL's cache until the window below completes them
    p = memory_plan.plan_blocks(500, 500, (256, 256), 4 * (404 + 66), 16420, 128, out_bands=66, solve_fixed=17 * MIB)
    assert p["fits"] and p["windows"][0][1] in (64, 128) and p["windows"][0][3] == 256
    assert p["gdal_cache"] >= 66 * 256 * 256 * 4
    assert [w[:3] for w in p["windows"][:3]] == [(0, 64, 0), (64, 64, 0), (128, 64, 0)][:3] or p["windows"][0][1] == 128
    # a cap below the smallest plan: one row of one block width, flagged
    p = memory_plan.plan_blocks(500, 500, (256, 256), 4 * (404 + 66), 16420, 1, out_bands=66, solve_fixed=17 * MIB)
    assert not p["fits"] and p["windows"][0] == (0, 1, 0, 256) and p["sub_rows"] == 1


def test_plan_narrows_the_window_rather_than_solving_tiny_sub_blocks():
    """Frame-sized stack (2 000 x 2 500 px, 605 pairs, 150 dates, 256 x 256 tiles), 1 024 MB per window: the widest
    window of a whole tile row (256 x 1 024) would leave room for 5-row sub-blocks (5 120 px, ~1.5x slower per pixel
    than 16 384); the plan narrows the window to whole tiles whose sub-blocks reach GOOD_SUB_PIXELS instead, and when
    no window reaches it (512 MB) takes the one with the largest sub-blocks."""
    M, N = 605, 150
    ob = N + 1 + len(sbas.QUALITY_BANDS)
    args = (2000, 2500, (256, 256), 4 * (M + ob), sbas.solve_bytes_per_pixel(M, N, "float32"))
    kw = dict(out_bands=ob, solve_fixed=sbas.solve_bytes_fixed(M, N))
    for cap in (1024, 2048):
        p = memory_plan.plan_blocks(*args, cap, **kw)
        _, h, _, w = p["windows"][0]
        assert p["fits"] and h == 256 and w % 256 == 0
        assert p["sub_rows"] * w >= memory_plan.GOOD_SUB_PIXELS
        wider = memory_plan.plan_blocks(*args, cap * 10, **kw)["windows"][0][3]
        assert wider >= w  # narrowed only when the memory says so
    p = memory_plan.plan_blocks(*args, 512, **kw)
    assert p["fits"] and p["windows"][0] == (0, 256, 0, 256)
    assert p["sub_rows"] * 256 > 4 * 512  # the 256 x 512 window would leave 4-row sub-blocks of 512 px
    assert all(r0 % 256 == 0 and c0 % 256 == 0 for r0, _, c0, _ in p["windows"])


def _net(n_dates=14, max_days=48, skip=(5, 11)):
    dates, d, k = [], dt.date(2020, 1, 3), 0
    while len(dates) < n_dates:
        if k not in skip:
            dates.append(d)
        d += dt.timedelta(days=12)
        k += 1
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]
    return SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])


def _gappy_obs(net, rows, cols, seed=3):
    rng = np.random.default_rng(seed)
    M = net.n_ifg
    obs = rng.normal(0, 3, (M, rows, cols)).astype(np.float32)
    o = obs.reshape(M, -1)
    P = o.shape[1]
    for p in rng.choice(P, P // 3, replace=False):  # partial pixels
        o[rng.choice(M, max(1, M // 8), replace=False), p] = np.nan
    for p in rng.choice(P, P // 10, replace=False):  # split own networks -> SVD fallback
        o[(net.i1 <= 4) & (net.i2 > 4), p] = np.nan
    o[:, :7] = np.nan
    coh = rng.uniform(0.2, 0.95, (M, rows, cols)).astype(np.float32)
    return obs, coh


def _traced_solve(obs, coh, weighting, dtype, net):
    """Peak traced memory of solving ``obs`` in two sub-blocks of half its rows (workspace kept between them,
    as a window task does), after one warm-up solve; returns (peak, window statistics)."""
    M, rows = net.n_ifg, obs.shape[1]
    solver = sbas.SolverOptions(
        weighting=weighting, looks=20, min_coherence=0.0, gap_handling="min_norm", rad_per_unit=1.0, dtype=dtype
    )
    state = sbas_stack.TaskState(network=net, solver=solver, to_mm=1.0, ref_vals=np.zeros(M), seasonal=False)
    stats = {"sum_e2": np.zeros(M), "n": np.zeros(M, dtype=np.int64), "n_data": 0, "n_gap": 0}
    sbas_stack._solve_sub_block(obs.copy()[:, :4], coh[:, :4], state, stats)  # warm network operators
    a = obs.copy()
    tracemalloc.start()
    try:
        workspace = {}  # kept from sub-block to sub-block
        for r in range(0, rows, rows // 2):
            out = sbas_stack._solve_sub_block(
                a[:, r : r + rows // 2], coh[:, r : r + rows // 2], state, stats, workspace
            )
            del out
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, stats


def test_plan_with_threads_inside_the_window():
    """Benchmark stack, weighted, 256 MB, 2 threads: a window of whole tiles per thread does not fit 128 MB, one
    window of whole tiles with 2 sub-blocks solved at once (each with its fixed part) and 2 files read at once does
    fit 256 MB; every part counted, the sum under the budget."""
    buf, solve, fixed = 4 * (404 + 2 * 66), 20208, 17 * MIB
    across = memory_plan.plan_blocks(500, 500, (256, 256), buf, solve, 128, out_bands=66, solve_fixed=fixed)
    assert across["windows"][0][1] < 256
    p = memory_plan.plan_blocks(
        500, 500, (256, 256), buf, solve, 256, out_bands=66, solve_fixed=fixed, threads_in_window=2
    )
    assert p["fits"] and p["threads_in_window"] == 2
    assert p["windows"][0] == (0, 256, 0, 256)
    h, w = 256, 256
    assert p["parts"]["solve"] == 2 * (solve * p["sub_rows"] * w + fixed)
    assert p["parts"]["read"] == 2 * (memory_plan.OPEN_FILE_BYTES + memory_plan.READ_BYTES_PX * h * w)
    assert p["parts"]["buffers"] == buf * h * w
    assert p["total"] == sum(p["parts"].values()) <= p["budget"]
    assert 2 * p["sub_rows"] * w >= memory_plan.MIN_SUB_PIXELS // 2


@pytest.mark.parametrize("kind,weighting", [("float32", "none"), ("weighted", "coherence")])
def test_solve_working_memory_within_the_per_pixel_estimate(kind, weighting):
    """tracemalloc peak of a sub-block solve <= the planner's per-pixel bytes x pixels + its fixed term."""
    net = _net()
    M, N = net.n_ifg, net.n_dates
    rows, cols = 40, 60
    obs, coh = _gappy_obs(net, rows, cols)
    peak, stats = _traced_solve(obs, coh, weighting, np.float64 if weighting != "none" else np.float32, net)
    assert stats["n_gap"] > 0  # the fallback path ran
    budget = sbas.solve_bytes_per_pixel(M, N, kind, net.bandwidth) * rows // 2 * cols + sbas.solve_bytes_fixed(M, N)
    assert peak <= budget, (peak, budget)


@pytest.mark.parametrize("kind,weighting", [("float32", "none"), ("float64", "none"), ("weighted", "coherence")])
def test_memory_model_tracks_the_solver(kind, weighting):
    """sbas.SOLVE_BYTES is a model of the solver's temporaries: on pixels that all take the vectorised path
    (partial pixels, no SVD fallback) the traced peak of a sub-block solve is between 40 % and 100 % of
    the per-pixel model. A solver change that adds an (M, pixels) temporary or drops several fails here
    until SOLVE_BYTES is measured again."""
    net = _net(n_dates=14, max_days=48)
    M, N = net.n_ifg, net.n_dates
    rows, cols = 40, 60
    rng = np.random.default_rng(5)
    obs = rng.normal(0, 3, (M, rows, cols)).astype(np.float32)
    flat = obs.reshape(M, -1)
    for p in rng.choice(rows * cols, rows * cols // 3, replace=False):
        flat[rng.choice(M, 2, replace=False), p] = np.nan
    coh = rng.uniform(0.2, 0.95, (M, rows, cols)).astype(np.float32)
    peak, stats = _traced_solve(obs, coh, weighting, np.float32 if kind == "float32" else np.float64, net)
    assert stats["n_gap"] == 0  # no fallback: only the per-pixel terms
    model = sbas.solve_bytes_per_pixel(M, N, kind, net.bandwidth) * rows // 2 * cols
    assert 0.4 * model <= peak <= model, (peak, model)


def test_fallback_chunking_is_bit_for_bit():
    net = _net(max_days=36)
    obs, _ = _gappy_obs(net, 10, 30, seed=9)
    y = obs.reshape(net.n_ifg, -1).astype(np.float64)
    valid = np.isfinite(y)
    keep = valid.any(axis=0)
    y, valid = np.where(valid, y, 0.0)[:, keep], valid[:, keep]
    args = (net, y, valid, None, sbas.SolverOptions(gap_handling="min_norm"))
    a = sbas._fallback_solve(*args, chunk=512)
    assert np.isfinite(a).all() and a.shape[1] > 200
    for chunk in (None, 7, 1):
        assert np.array_equal(a, sbas._fallback_solve(*args, chunk=chunk))


# --------------------------------------------------------------------------- window-split invariance
NY, NX = 40, 56
LAMBDA = 0.05546576


def _write_tiled(path, arr, nodata=None):
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), NX, NY, 1, gdal.GDT_Float32, ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "COMPRESS=DEFLATE"]
    )
    ds.SetGeoTransform((500000.0, 30.0, 0, 4000000.0, 0, -30.0))
    s = osr.SpatialReference()
    s.ImportFromEPSG(32649)
    ds.SetProjection(s.ExportToWkt())
    b = ds.GetRasterBand(1)
    if nodata is not None:
        b.SetNoDataValue(nodata)
    b.WriteArray(arr)
    ds = None
    return str(path)


@pytest.fixture(scope="module")
def tiled_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiled")
    net = _net(n_dates=10, max_days=36)
    rng = np.random.default_rng(4)
    t = net.tyears
    yy, xx = np.mgrid[0:NY, 0:NX]
    truth = (-30.0 * np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 90.0))[None] * t[:, None, None]
    ifgs, cohs = [], []
    for k in range(net.n_ifg):
        a, b = net.dates[net.i1[k]], net.dates[net.i2[k]]
        ph = -(truth[net.i2[k]] - truth[net.i1[k]]) / 1000.0 * 4 * math.pi / LAMBDA + rng.normal(0, 0.3, (NY, NX))
        ph[rng.random((NY, NX)) < 0.05] = np.nan
        ph[0:3, 0:3] = -9999.0
        if k % 3 == 0:
            ph[(yy > 30) & (xx < 5)] = np.nan  # a gappy corner
        coh = rng.uniform(0.3, 0.8, (NY, NX))
        coh[5, 40] = coh[10, 3] = 0.99  # a tie: (5, 40) comes first in row order
        ph[5, 40] = ph[10, 3] = 0.5
        tag = "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
        ifgs.append(_write_tiled(folder / ("%s.geo.unw.tif" % tag), ph, nodata=-9999.0))
        cohs.append(_write_tiled(folder / ("%s.geo.cc.tif" % tag), coh.astype(np.float32)))
    return ifgs, cohs


def _run(stack, out, memory_mb, **kw):
    paths = [str(out / n) for n in ("ts.tif", "vel.tif", "q.tif")]
    caches = []
    summary = sbas_stack.invert_stack(
        stack,
        *paths,
        sbas_stack.SbasOptions(memory_mb=memory_mb, **kw),
        progress=lambda f: caches.append(gdal.GetCacheMax()),
    )
    arrays = [gdal.Open(p).ReadAsArray() for p in paths]
    return summary, arrays, caches


def _assert_same_results(s1, a1, s2, a2, weighting, n_ifg, quality=True):
    """Two runs' rasters and network tables agree. The unweighted solve runs in float32: its GEMM may sum in a
    split-dependent order on some CPUs/BLAS builds (up to 5 float32 roundings seen on AMD EPYC with OpenBLAS
    0.3.21), so the outputs agree to float32 rounding of sums over the interferograms (per quality band: own
    units); the float64 weighted solve in fixed-shape GEMM chunks bit for bit. Per-interferogram sums over pixels:
    float64 sums in another order (of float32 residuals when unweighted). ``quality``: compare the quality
    bands too (unweighted)."""
    if weighting == "none":
        for name, x, y in zip(("time series", "velocity"), a1[:2], a2[:2]):
            assert_equal_to_float32_rounding(x, y, n_ifg, err_msg=name)
        if quality:
            for band, (x, y) in enumerate(zip(a1[2], a2[2])):
                assert_equal_to_float32_rounding(x, y, n_ifg, err_msg="quality band %d" % (band + 1))
    else:
        for x, y in zip(a1, a2):
            assert np.array_equal(x, y, equal_nan=True)
    rel = n_ifg * float(np.finfo(np.float32).eps) if weighting == "none" else 1e-9
    for r1, r2 in zip(s1["network_rows"], s2["network_rows"]):
        for k in ("mean_coherence", "residual_rms_mm"):
            assert r1[k] == pytest.approx(r2[k], rel=rel, nan_ok=True)
        assert r1["n_pixels_used"] == r2["n_pixels_used"]


@pytest.mark.parametrize("weighting,with_coh", [("none", True), ("coherence", True), ("none", False)])
def test_windows_and_sub_blocks_do_not_change_results(tiled_stack, tmp_path, weighting, with_coh):
    """One window for the whole grid vs 1-row windows of one 16-px tile column: the same reference and
    rasters (bit for bit for the float64 weighted solve, to float32 rounding for the float32 unweighted one);
    GDAL's cache is the planned one during the run and restored afterwards."""
    ifgs, cohs = tiled_stack
    stack = prepare_stack(ifgs, None, cohs if with_coh else None)
    old = 77 * MIB
    gdal.SetCacheMax(old)
    try:
        res = []
        for mem in (512, 0.5):
            out = tmp_path / ("m%g" % mem)
            out.mkdir()
            res.append(_run(stack, out, mem, weighting=weighting))
            assert gdal.GetCacheMax() == old
            plans = memory_plan.plan_stack(stack, weighting, 0.0, mem, reference_pass=True)
            assert set(res[-1][2]) == {max(p["gdal_cache"] for p in plans.values())}
        assert len(plans["invert"]["windows"]) == NY * math.ceil(NX / 16)  # the small cap: 1 x 16 windows
    finally:
        gdal.SetCacheMax(old)
    (s1, a1, _), (s2, a2, _) = res
    assert s1["reference"] == s2["reference"]
    if with_coh:
        assert s1["reference"] == (5, 40)  # tie -> first in row order
    _assert_same_results(s1, a1, s2, a2, weighting, len(ifgs))


@pytest.mark.parametrize(
    "weighting,with_coh,qc",
    [("none", True, False), ("coherence", True, False), ("none", False, False), ("none", True, True)],
)
def test_threads_do_not_change_results(tiled_stack, tmp_path, monkeypatch, weighting, with_coh, qc):
    """3 threads on small windows (arriving in any order) vs one thread on one window: identical rasters
    (to float32 rounding for the float32 unweighted solve, bit for bit for the float64 one), reference and
    network statistics; each window planned under cap / threads, GDAL's cache threads x
    the window's share. The inversion's next windows start while the caller writes one (``ahead``), each
    inversion window planned with its third of that window's outputs; the other passes do not."""
    ifgs, cohs = tiled_stack
    stack = prepare_stack(ifgs, None, cohs if with_coh else None)
    real_map, aheads = sbas_stack.map_threads, []

    def recording(task_fn, tasks, threads, **kw):
        aheads.append((getattr(task_fn, "__wrapped__", task_fn), kw.get("ahead", False)))
        return real_map(task_fn, tasks, threads, **kw)

    monkeypatch.setattr(sbas_stack, "map_threads", recording)
    res = []
    for mem, threads in ((512, 1), (1.5, 3)):
        out = tmp_path / ("t%d" % threads)
        out.mkdir()
        # qc: the scan pass (loop closure, reject; linear ramps) runs on the threads too
        kw = dict(loop_closure=2, deramp="linear") if qc else {}
        res.append(_run(stack, out, mem, weighting=weighting, threads=threads, **kw))
    assert aheads and all(ahead == (fn is sbas_stack.invert_block_task) for fn, ahead in aheads)
    assert any(ahead for _, ahead in aheads)
    if not qc:
        plans = memory_plan.plan_stack(stack, weighting, 0.0, 1.5 / 3, reference_pass=True, outputs_ahead=1 / 3)
        assert len(plans["invert"]["windows"]) > 3
        assert set(res[1][2]) == {3 * max(p["gdal_cache"] for p in plans.values())}
    (s1, a1, _), (s2, a2, _) = res
    assert s1["reference"] == s2["reference"]
    _assert_same_results(s1, a1, s2, a2, weighting, len(ifgs))


def test_plan_counts_the_outputs_written_while_windows_compute(tiled_stack, monkeypatch):
    """With t windows computed while the caller writes one more (``ahead``), each inversion window's buffers count
    1 / t of that window's outputs (t windows then hold one more window of outputs together): the per-pixel bytes
    are the interferograms plus (1 + 1 / t) x the output bands; the reference pass is not changed. In the driver
    only the inversion pass runs ahead, and only with as many threads as its plan counted."""
    ifgs, cohs = tiled_stack
    stack = prepare_stack(ifgs, None, cohs)
    M, N = stack.network.n_ifg, stack.network.n_dates
    out_bands = N + 1 + len(sbas_stack.QUALITY_BANDS)
    mem = 64
    base = memory_plan.plan_stack(stack, "none", 0.0, mem, reference_pass=True)
    for t in (2, 3):
        p = memory_plan.plan_stack(stack, "none", 0.0, mem, reference_pass=True, outputs_ahead=1.0 / t)
        h, w = base["invert"]["windows"][0][1], base["invert"]["windows"][0][3]
        assert p["invert"]["windows"] == base["invert"]["windows"]  # (64 MB: the whole grid either way)
        assert p["invert"]["parts"]["buffers"] == pytest.approx(4 * (M + out_bands * (1 + 1.0 / t)) * h * w)
        assert base["invert"]["parts"]["buffers"] == 4 * (M + out_bands) * h * w
        assert p["reference"] == base["reference"]
        assert p["invert"]["total"] <= p["invert"]["budget"]
    hooks = sbas_stack.RunHooks()
    opts = sbas_stack.SbasOptions(memory_mb=mem, threads=2)
    plans = sbas_stack._thread_plans(stack, opts, None, hooks)
    assert plans["invert"]["ahead"] and plans["invert"]["planned_windows"] == 2
    assert not any(plans[k].get("ahead") for k in plans if k != "invert")
    runs = []

    def fake_map(task_fn, tasks, threads, **kw):
        runs.append((threads, kw["ahead"]))
        return iter(())

    monkeypatch.setattr(sbas_stack, "map_threads", fake_map)
    for threads, planned in ((2, 2), (3, 2), (2, 3)):
        runner = sbas_stack._pass_runner(hooks, dict(plans["invert"], threads=threads, planned_windows=planned))
        list(runner(None, [], None))
    assert runs == [(2, True), (3, True), (2, False)]  # 2 windows each counting 1 / 3: not enough


def _expected_reference(ifgs, cohs):
    """The automatic reference computed directly: phase and coherence valid in every interferogram, highest
    mean coherence (float32 running sum, as the driver adds them), first in row order on ties."""
    ph = np.stack([gdal.Open(p).ReadAsArray().astype(np.float32) for p in ifgs])
    ph[ph == -9999.0] = np.nan
    co = np.stack([gdal.Open(p).ReadAsArray().astype(np.float32) for p in cohs])
    csum = np.zeros(ph.shape[1:], np.float32)
    for k in range(len(co)):
        csum += co[k]
    cand = np.isfinite(ph).all(0) & np.isfinite(co).all(0)
    score = np.where(cand, csum / len(co), -np.inf)
    return tuple(int(v) for v in np.unravel_index(np.argmax(score), score.shape))


@pytest.mark.parametrize("n_candidates,threads", [(64, 1), (1, 1), (64, 3)])
def test_coherence_only_reference_equals_the_full_search(tmp_path, monkeypatch, n_candidates, threads):
    """The best pixel by coherence lacks phase in one interferogram: the phase check at the candidates skips
    it (64), or the full phase + coherence pass runs (1 candidate); both give the directly computed pixel. With 3
    threads and one window, the coherence files are decoded 3 at a time (summed in file order) and the phase
    checked 3 files at a time: the same pixel."""
    net = _net(n_dates=8, max_days=36)
    rng = np.random.default_rng(9)
    ifgs, cohs = [], []
    for k in range(net.n_ifg):
        a, b = net.dates[net.i1[k]], net.dates[net.i2[k]]
        ph = rng.normal(0, 1, (NY, NX))
        coh = rng.uniform(0.3, 0.8, (NY, NX)).astype(np.float32)
        coh[7, 9] = 0.97  # best by coherence, but no phase in interferogram 2
        coh[30, 50] = 0.95  # the true reference
        if k == 2:
            ph[7, 9] = np.nan
        tag = "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
        ifgs.append(_write_tiled(tmp_path / ("%s.geo.unw.tif" % tag), ph, nodata=-9999.0))
        cohs.append(_write_tiled(tmp_path / ("%s.geo.cc.tif" % tag), coh))
    monkeypatch.setattr(sbas_stack, "REFERENCE_CANDIDATES", n_candidates)
    stack = prepare_stack(ifgs, None, cohs)
    logs = []
    paths = [str(tmp_path / n) for n in ("ts.tif", "vel.tif", "q.tif")]
    summary = sbas_stack.invert_stack(
        stack,
        *paths,
        sbas_stack.SbasOptions(memory_mb=1 if threads == 1 else 60, loop_closure=0, threads=threads),
        log=logs.append,
    )
    assert summary["reference"] == _expected_reference(ifgs, cohs) == (30, 50)
    text = "\n".join(logs)
    if threads > 1:
        assert "reference pass: 3 threads inside each window (files decoded in parallel)" in text
    if n_candidates == 1:
        assert "reading the phase too" in text
    else:
        assert "phase checked at 2 candidates" in text


def test_fewer_threads_when_whole_tiles_per_thread_do_not_fit(tiled_stack, tmp_path):
    """30 MB: one window of whole 16-px tiles fits for one thread, not in 30 / 3 MB per thread (the solver's
    fixed 17 MB per sub-block): the run uses 1 thread and says so; results as asked with 1 thread."""
    ifgs, cohs = tiled_stack
    stack = prepare_stack(ifgs, None, cohs)
    logs, res = [], []
    for threads in (3, 1):
        out = tmp_path / ("t%d" % threads)
        out.mkdir()
        paths = [str(out / n) for n in ("ts.tif", "vel.tif", "q.tif")]
        sbas_stack.invert_stack(
            stack, *paths, sbas_stack.SbasOptions(memory_mb=30, threads=threads, weighting="coherence"), log=logs.append
        )
        res.append([gdal.Open(p).ReadAsArray() for p in paths])
    assert any("1 threads instead of 3" in m for m in logs)
    for x, y in zip(*res):
        assert np.array_equal(x, y, equal_nan=True)


@pytest.mark.parametrize("weighting,qc", [("coherence", False), ("coherence", True), ("none", False)])
def test_threads_inside_a_window_equal_one_thread(tiled_stack, tmp_path, monkeypatch, weighting, qc):
    """40 MB (30, 55), 3 threads: a window of whole tiles per thread does not fit 40 / 3 MB, one window of whole tiles
    with 3 threads reading its files and solving its sub-blocks does; the run says so, and its rasters equal one
    thread's (bit for bit for the float64 weighted solve, to float32 rounding for the float32 one; with loop
    closure and ramps the inversion reads the scan's scratch copy on 3 threads). The plan's one window is cut in
    three of whole tile rows, so that outputs are written behind the next window's solve. A cancel while the
    sub-blocks are solved on the threads leaves no output."""
    ifgs, cohs = tiled_stack
    real = sbas_stack._thread_plans

    def three_windows(*a, **k):
        plans = real(*a, **k)
        if plans["invert"]["threads_in_window"] > 1:
            plans["invert"] = dict(plans["invert"], windows=[(0, 16, 0, NX), (16, 16, 0, NX), (32, 8, 0, NX)])
        return plans

    monkeypatch.setattr(sbas_stack, "_thread_plans", three_windows)
    stack = prepare_stack(ifgs, None, cohs)
    kw = dict(loop_closure=2, deramp="linear") if qc else dict(loop_closure=0)
    mem = 30 if weighting == "none" else (55 if qc else 40)
    res, logs = [], []
    for threads in (1, 3):
        out = tmp_path / ("t%d" % threads)
        out.mkdir()
        paths = [str(out / n) for n in ("ts.tif", "vel.tif", "q.tif")]
        opts = sbas_stack.SbasOptions(memory_mb=mem, threads=threads, weighting=weighting, **kw)
        s = sbas_stack.invert_stack(stack, *paths, opts, log=logs.append)
        res.append((s, [gdal.Open(p).ReadAsArray() for p in paths]))
    assert any(m.startswith("invert pass: 3 threads inside each window") for m in logs)
    (s1, a1), (s2, a2) = res
    assert s1["reference"] == s2["reference"]
    _assert_same_results(s1, a1, s2, a2, weighting, len(ifgs), quality=False)
    out = tmp_path / "cancel"
    out.mkdir()
    ticks = []
    with pytest.raises(Cancelled):
        sbas_stack.invert_stack(
            stack,
            *[str(out / n) for n in ("ts.tif", "vel.tif", "q.tif")],
            sbas_stack.SbasOptions(memory_mb=mem, threads=3, weighting=weighting, **kw),
            progress=ticks.append,
            is_canceled=lambda: len(ticks) > 0 and ticks[-1] > 0.7,
        )
    assert os.listdir(out) == []


def test_window_buffers_are_reused_per_thread_and_pickle_empty():
    import pickle
    import threading

    b = sbas_stack.WindowBuffers()
    a = b.get("phase", (3, 4, 5))
    a[:] = 1
    same = b.get("phase", (3, 2, 5))  # a smaller (edge) window: a view of the same memory
    assert np.shares_memory(a, same) and same.shape == (3, 2, 5)
    assert not np.shares_memory(a, b.get("coherence", (3, 4, 5)))
    bigger = b.get("phase", (3, 8, 5))
    assert bigger.shape == (3, 8, 5) and not np.shares_memory(a, bigger)
    other = []
    t = threading.Thread(target=lambda: other.append(b.get("phase", (3, 8, 5))))
    t.start()
    t.join()
    assert not np.shares_memory(other[0], bigger)  # each thread its own
    c = pickle.loads(pickle.dumps(b))
    assert c._local.__dict__ == {}


def test_solver_workspaces_are_handed_from_window_to_window_with_their_caches_emptied():
    import pickle

    b = sbas_stack.WindowBuffers()
    ws = b.take_workspace()
    assert ws == {}
    y = work_array(ws, "Y", (4, 10), np.float32)
    ws["unwrap_patterns"] = {b"k": 1}  # a cache of one window
    other = b.take_workspace()  # a second thread of the same window: its own
    assert other is not ws and other == {}
    b.give_back([ws, other])
    again = b.take_workspace()
    assert again is other  # (the last handed back first)
    again = b.take_workspace()
    assert again is ws and "unwrap_patterns" not in ws
    assert np.shares_memory(work_array(again, "Y", (4, 8), np.float32), y)  # the arrays kept
    assert b.take_workspace() == {}  # none left: a new one
    b.give_back([ws])
    assert pickle.loads(pickle.dumps(b)).take_workspace() == {}  # pickles without them (a Dask worker's own)


def test_output_windows_are_handed_from_a_written_window_to_the_next():
    import pickle

    b = sbas_stack.WindowBuffers()

    def rows(n):
        return [(5, n, 3), (1, n, 3), (8, n, 3)]

    def shared(x, y):
        return [np.shares_memory(a, c) for a, c in zip(x, y)]

    first = b.take_outputs(rows(4))
    assert [a.shape for a in first] == rows(4) and all(a.dtype == np.float32 for a in first)
    b.give_back_outputs(first)
    edge = b.take_outputs(rows(2))  # a smaller (edge) window: views of the same memory
    assert shared(first, edge) == [True] * 3
    other = b.take_outputs(rows(4))  # none kept: new ones
    assert shared(first, other) == [False] * 3
    b.give_back_outputs(edge)
    b.give_back_outputs(other)  # one set is kept: this one is freed
    assert shared(first, b.take_outputs(rows(4))) == [True] * 3
    b.give_back_outputs(first)
    bigger = b.take_outputs(rows(9))  # larger than the set kept: new ones, the smaller set let go
    assert shared(first, bigger) == [False] * 3 and b._outputs is None
    b.give_back_outputs([np.zeros((5, 4, 3), np.float32)] * 3)  # arrays not from take_outputs: not kept
    assert b._outputs is None
    in_use = b.get("phase", (96,))  # views of another 1-D float32 buffer (a thread's read buffer): not kept either
    b.give_back_outputs([in_use[: math.prod(s)].reshape(s) for s in rows(4)])
    assert b._outputs is None
    b.give_back_outputs(first)
    assert pickle.loads(pickle.dumps(b))._outputs is None


def test_one_thread_solves_every_window_of_a_pass_in_one_workspace(tiled_stack, tmp_path, monkeypatch):
    """The inversion pass's windows take their solver workspace from the pass (:class:`WindowBuffers`): on one
    thread, one workspace for every window (a new one per window faulted its buffers in again each time); on
    three threads at most three. Their output windows are reused too, once written."""
    ifgs, cohs = tiled_stack
    stack = prepare_stack(ifgs, None, cohs)
    for threads in (1, 3):
        taken, outputs = [], []

        class Counting(sbas_stack.WindowBuffers):
            def take_workspace(self):
                taken.append(super().take_workspace())
                return taken[-1]

            def take_outputs(self, shapes):
                out = super().take_outputs(shapes)
                outputs.append(out[0].base)  # (kept alive here: ids stay unique)
                return out

        monkeypatch.setattr(sbas_stack, "WindowBuffers", Counting)
        out = tmp_path / str(threads)
        out.mkdir()
        _run(stack, out, 0.5, threads=threads)
        distinct = {id(ws) for ws in taken}
        assert len(taken) > 3 and 1 <= len(distinct) <= threads, (len(taken), len(distinct))
        # the output windows: one set reused from window to window on one thread (a new one only for a larger window)
        sets = len({id(b) for b in outputs})
        assert len(outputs) > 3 and sets < len(outputs) and (threads > 1 or sets <= 2), (len(outputs), sets)


@pytest.mark.parametrize(
    "weighting, qc",
    [("none", {}), ("coherence", {}), ("none", dict(loop_closure=2, min_coherence=0.3, deramp="linear"))],
)
def test_dirty_reused_window_buffers_change_nothing(tiled_stack, tmp_path, monkeypatch, weighting, qc):
    """Windows of different sizes (a small cap: 1 x 16 windows and narrower edge windows) read into reused buffers
    and solved in reused workspaces into reused output windows, all filled with garbage before every use, give the
    rasters of fresh ones, bit for bit (the same windows and sub-blocks, so the same arithmetic): every value of a
    window is read and written, none is left over from the last. With loop closure the scan pass's windows (read in
    place, NaN below the minimum coherence) and its loop statistics too (the same bad interferograms, the same
    network table)."""
    ifgs, cohs = tiled_stack
    stack = prepare_stack(ifgs, None, cohs)

    class Fresh(sbas_stack.WindowBuffers):
        def get(self, key, shape):
            return np.empty(shape, dtype=np.float32)

        def take_workspace(self):
            return {}

        def take_outputs(self, shapes):
            return [np.empty(s, dtype=np.float32) for s in shapes]

    class Dirty(sbas_stack.WindowBuffers):
        def get(self, key, shape):
            buf = super().get(key, shape)
            buf[...] = np.float32(1e30)
            buf.reshape(-1)[::7] = np.nan
            return buf

        def take_workspace(self):  # the solver's work arrays of the last window, garbage in them
            ws = super().take_workspace()
            for a in ws.values():
                a[...] = True if a.dtype == bool else (12345 if a.dtype.kind in "iu" else np.nan)
            return ws

        def take_outputs(self, shapes):  # the last written window's outputs, garbage in them
            out = super().take_outputs(shapes)
            for a in out:
                a[...] = np.float32(-7e30)
            return out

    res = []
    for cls in (Fresh, Dirty):
        monkeypatch.setattr(sbas_stack, "WindowBuffers", cls)
        out = tmp_path / cls.__name__
        out.mkdir()
        res.append(_run(stack, out, 0.5, weighting=weighting, **dict(dict(loop_closure=0), **qc)))
    (s1, a1, _), (s2, a2, _) = res
    assert s1["reference"] == s2["reference"]
    # with loop closure: the scan's loop statistics and verdicts (columns of the network table)
    assert s1["rejected"] == s2["rejected"]
    assert pd.DataFrame(s1["network_rows"]).equals(pd.DataFrame(s2["network_rows"]))
    for x, y in zip(a1, a2):
        assert np.array_equal(x, y, equal_nan=True)


def test_a_cancel_stops_the_windows_in_flight_at_their_next_sub_block():
    """On window threads, the sub-block ticks check the cancel: the windows in flight stop at their next sub-block
    (a window of the frame takes seconds; a SIGTERM cancels while the runner waits for it), the ones not started
    never start, and the runner raises Cancelled. Here each window has 500 sub-blocks and the cancel comes at the
    10th sub-block of the first window: at most a few more are done, not the 1 000 of the two windows in flight."""
    import threading

    done = []
    canceled = threading.Event()

    def window(task, shared):
        for k in range(500):
            done.append((task, k))
            if task == 0 and k == 10:
                canceled.set()
            sbas_stack._sub_tick()
        return task

    hooks = sbas_stack.RunHooks(is_canceled=canceled.is_set)
    runner = sbas_stack._pass_runner(hooks, {"threads": 2})
    with pytest.raises(Cancelled):
        for _ in runner(window, list(range(6)), {}):
            pass
    assert len(done) < 100, len(done)
    assert {t for t, _ in done} <= {0, 1}  # the windows not started never started
    assert getattr(sbas_stack._LOCAL, "tick", None) is None  # this thread's hook untouched
