"""Benchmark (issue 20, loop closure at frame size): the loop statistics of one scan window and the per-pixel
loop count of the inversion's sub-blocks, previous implementation vs the current one.

One command (not in CI; ~1.6 GB of memory, a few minutes)::

    /usr/bin/python3 benchmarks/bench_loop_stats.py                  # 256 x 1280 px, the frame's 963 loops
    /usr/bin/python3 benchmarks/bench_loop_stats.py --rows 64 --repeat 3

The window is the frame benchmark's (``bench_frame.py``): the 150-date, 605-pair network (963 loops), 256 x
1280 px as its scan pass plans them at MEMORY_LIMIT_MB=2048, made in memory (nothing is read): a random walk
per date, the pairs' differences plus 0.8 rad of noise, 5 % of the observations and a 2 % water mask NaN, one
unwrapping error over a third of the window.

Measured (wall and CPU seconds of this process, best of ``--repeat``; the 1-minute load average is printed,
the machine may be shared, and the speed-up two threads get on a GIL-free numpy loop is printed before and
after: scaling can only be read when it is close to 2):

* previous: ``_WindowScan.loop_stats`` before issue 20's rework, copied below - one sparse product
  (``LoopNetwork.loop_phase``) and ten whole-chunk passes of ``accumulate`` per chunk of 2^18 loop-pixels,
  one thread: its first call (its ~2.6 MB temporaries on fresh memory: page faults, the system time, as in a
  scan window whose allocations the C library has returned) and its best; also two windows at once on two
  threads (the frame scan's situation: 2 windows in flight);
* current: ``loop_closure.window_stats`` with 1 and 2 threads, and two windows at once on two threads with 1
  thread each; the statistics are checked against the previous ones (counts and histograms equal, sums to
  1e-12) and between thread counts (equal bit for bit);
* ``count_loop_errors`` on the inversion pass's sub-blocks (5 rows x 1024 px, as planned on the frame), the
  previous sparse-product version (copied below) vs the current one, results equal.
"""

import argparse
import math
import os
import sys
import threading
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_frame  # noqa: E402  (registers the checkout as subsidence_toolkit)

from subsidence_toolkit.core.insar import loop_closure as lc  # noqa: E402

TWO_PI = 2 * math.pi


# --------------------------------------------------------------------------- previous implementation (copy)
def previous_accumulate(stats, loop_ph):
    L = loop_ph.shape[0]
    x = loop_ph.reshape(L, -1)
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0).astype(np.float64)
    stats["count"] += ok.sum(axis=1)
    stats["sum"] += x0.sum(axis=1)
    stats["sumsq"] += np.einsum("lp,lp->l", x0, x0)
    half = lc.MAX_CYCLES * lc.BINS_PER_CYCLE
    b = np.clip(np.rint(x0 * (lc.BINS_PER_CYCLE / TWO_PI)), -half, half).astype(np.int64) + half
    b += lc.N_BINS * np.arange(L)[:, None]
    stats["hist"] += np.bincount(b[ok], minlength=L * lc.N_BINS).reshape(L, lc.N_BINS)
    return stats


def previous_loop_stats(ln, yy, rad_per_unit):
    """``_WindowScan.loop_stats`` before the rework (chunks of 2^18 loop-pixels, sparse product)."""
    stats = lc.empty_stats(ln.n_loops)
    step = max(1, (1 << 18) // max(1, yy.shape[1]))
    rpu = np.float32(rad_per_unit)
    for a0 in range(0, ln.n_loops, step):
        sel = np.arange(a0, min(ln.n_loops, a0 + step))
        part = lc.empty_stats(len(sel))
        lp = ln.loop_phase(yy, sel)
        lp *= rpu
        previous_accumulate(part, lp)
        del lp
        for key in stats:
            stats[key][sel] += part[key]
    return stats


def previous_count_loop_errors(ln, phase, rad_per_unit=1.0):
    shape = phase.shape[1:]
    loops = np.arange(ln.n_loops)
    out = np.zeros(int(np.prod(shape)), dtype=np.int32)
    y = phase.reshape(ln.n_ifg, -1)
    step = max(1, (1 << 18) // max(1, y.shape[1]))
    for a in range(0, len(loops), step):
        lp = ln.loop_phase(y, loops[a : a + step])
        if rad_per_unit != 1.0:
            lp = lp * np.asarray(rad_per_unit, dtype=lp.dtype)
        with np.errstate(invalid="ignore"):
            out += (np.abs(lp) > math.pi).sum(axis=0, dtype=np.int32)
    return out.reshape(shape)


# --------------------------------------------------------------------------- window
def make_window(net, rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    P = rows * cols
    ts = np.cumsum(rng.normal(0, 1.0, (net.n_dates, P)).astype(np.float32), axis=0)
    water = np.zeros(P, bool)
    water[: P // 50] = True
    y = np.empty((net.n_ifg, P), np.float32)
    for k in range(net.n_ifg):
        a = (ts[net.i2[k]] - ts[net.i1[k]]) * np.float32(net.sign[k])
        a += rng.normal(0, 0.8, P).astype(np.float32)
        a[water | (rng.random(P) < 0.05)] = np.nan
        y[k] = a
    y[7, : P // 3] += np.float32(TWO_PI)
    return y


def timed(fn, repeat):
    """(result, best wall s, CPU s (user + system) and system s of that run, the first run's (wall, CPU, system))."""
    best = first = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), os.times()
        res = fn()
        w, c1 = time.perf_counter() - w0, os.times()
        c, sy = (c1.user - c0.user) + (c1.system - c0.system), c1.system - c0.system
        first = first or (w, c, sy)
        if best is None or w < best[1]:
            best = (res, w, c, sy)
    return best + (first,)


def two_at_once(fn):
    """fn() on two threads at the same time (two windows in flight)."""
    out = [None, None]

    def run(i):
        out[i] = fn()

    th = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return out[0]


def cores_free():
    """Speed-up of two threads over one on a numpy loop that releases the GIL (np.sin on 64 k doubles): what
    this machine gives two threads right now (1.0 when another process holds the other core)."""
    a = np.random.default_rng(0).normal(0, 1, 1 << 16)

    def work():
        out = np.empty_like(a)
        for _ in range(2000):
            np.sin(a, out=out)

    t0 = time.perf_counter()
    work()
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    th = [threading.Thread(target=work) for _ in range(2)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return 2 * one / (time.perf_counter() - t0)


def load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=1280)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sub-blocks", type=int, default=64, help="inversion sub-blocks (5 x 1024 px) timed")
    args = ap.parse_args()
    _, net = bench_frame.frame_network()
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    y = make_window(net, args.rows, args.cols)
    P = y.shape[1]
    rpu = 0.9
    print(
        "window %d x %d px, %d interferograms, %d loops (%.0f M loop-pixels); load %.2f; two threads of np.sin run "
        "%.2fx faster than one now"
        % (args.rows, args.cols, net.n_ifg, ln.n_loops, ln.n_loops * P / 1e6, load(), cores_free())
    )
    rows = []
    prev, w, c, sy, first = timed(lambda: previous_loop_stats(ln, y, rpu), args.repeat)
    rows.append(("previous, 1 thread, first call", *first))
    rows.append(("previous, 1 thread, best of %d" % args.repeat, w, c, sy))
    _, w2, c2, sy2, _ = timed(lambda: two_at_once(lambda: previous_loop_stats(ln, y, rpu)), 1)
    rows.append(("previous, 2 windows at once on 2 threads (per window)", w2 / 2, c2 / 2, sy2 / 2))
    new = {}
    for t in (1, 2):
        new[t], w, c, sy, first = timed(lambda t=t: lc.window_stats(ln, y, rpu, threads=t), args.repeat)
        rows.append(("current, %d thread%s, best of %d" % (t, "s" if t > 1 else "", args.repeat), w, c, sy))
    _, w2, c2, sy2, _ = timed(lambda: two_at_once(lambda: lc.window_stats(ln, y, rpu, threads=1)), 1)
    rows.append(("current, 2 windows at once on 2 threads (per window)", w2 / 2, c2 / 2, sy2 / 2))
    base_w, base_c = rows[1][1], rows[1][2]
    print("\nloop statistics of one window | wall s | CPU s (system) | wall vs previous best | CPU vs previous best")
    for name, w, c, sy in rows:
        print("%-55s | %6.2f | %6.2f (%4.2f) | %5.2fx | %5.2fx" % (name, w, c, sy, base_w / w, base_c / c))
    same_threads = all(np.array_equal(new[1][k], new[2][k]) for k in new[1])
    exact = np.array_equal(prev["count"], new[1]["count"]) and np.array_equal(prev["hist"], new[1]["hist"])
    close = all(np.allclose(prev[k], new[1][k], rtol=1e-12, atol=0) for k in ("sum", "sumsq"))
    print(
        "counts and histograms equal to the previous: %s; sums within 1e-12: %s; 1 and 2 threads bit for bit: %s"
        % (exact, close, same_threads)
    )

    # per-pixel loop count on the inversion's sub-blocks
    sub = 5 * 1024
    n_sub = max(1, min(args.sub_blocks, P // sub))
    blocks = [y[:, i * sub : (i + 1) * sub].reshape(net.n_ifg, 5, 1024) for i in range(n_sub)]
    old_counts, w_old, c_old, _, _ = timed(
        lambda: [previous_count_loop_errors(ln, b, rpu) for b in blocks], args.repeat
    )
    new_counts, w_new, c_new, _, _ = timed(
        lambda: [lc.count_loop_errors(ln, b, rad_per_unit=rpu) for b in blocks], args.repeat
    )
    same = all(np.array_equal(a, b) for a, b in zip(old_counts, new_counts))
    print(
        "\ncount_loop_errors, %d sub-blocks of 5 x 1024 px: previous %.2f s (CPU %.2f), current %.2f s (CPU %.2f): "
        "%.2fx CPU; equal: %s" % (n_sub, w_old, c_old, w_new, c_new, c_old / c_new, same)
    )
    print("load %.2f; two threads of np.sin %.2fx one" % (load(), cores_free()))


if __name__ == "__main__":
    main()
