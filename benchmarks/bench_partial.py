"""Benchmark: the SBAS solve of partial pixels (pixels that miss some interferograms), this checkout against an
earlier one on the same block (issue 20).

Each partial pixel needs the least squares of its own valid rows: by imputing its missing rows (an order-s
factorisation per pattern, s = the number missing), by the banded normal equations of its own network, or, where
that network is split, by a minimum-norm solution (``core/insar/sbas.py``). The block is one sub-block of the frame
benchmark's inversion pass: ``bench_frame.frame_network()`` (150 dates, 605 pairs), 24 x 768 px of random phase,
float32, 10 % of the pixels missing ``--missing`` of the interferograms (each its own pattern, or ``--shared``: 20
patterns among them; ``--partial``: another fraction of partial pixels, ``--spread``: each missing from 1 to
``--missing`` x 605, as coherence masks leave real stacks). Each side runs in a process of its own on one BLAS
thread: ``sbas_invert_block`` once to warm up, then ``--repeat`` times (best and median printed); the two sides'
time series are compared (largest difference relative to the largest value).

    /usr/bin/python3 benchmarks/bench_partial.py --baseline /work/wt_before --missing 0.05 0.1 0.16 0.25 0.45
    /usr/bin/python3 benchmarks/bench_partial.py --baseline /work/wt_before --partial 1 --spread --missing 0.6
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


def make_block(missing, shared, seed=3, rows=24, cols=768, partial=0.1, spread=False):
    """(network, float32 block (M, rows, cols)) of the frame network with partial pixels as described above
    (``partial``: their fraction; ``spread``: each misses a number of interferograms drawn uniformly from 1 to
    ``missing`` x M, as coherence masks leave them on real stacks)."""
    sys.path.insert(0, str(HERE.parent))
    import bench_frame

    _, net = bench_frame.frame_network()
    M, P = net.n_ifg, rows * cols
    rng = np.random.default_rng(seed)
    obs = rng.normal(0, 1, (M, P)).astype(np.float32)
    part = rng.choice(P, int(round(partial * P)), replace=False)
    n_miss = max(1, int(round(missing * M)))
    if spread:
        order = np.argsort(rng.random((part.size, M)), axis=1)
        counts = rng.integers(1, n_miss + 1, part.size)
        miss_mask = np.arange(M)[None, :] < counts[:, None]
        cols_ = np.broadcast_to(part[:, None], order.shape)[miss_mask]
        obs[order[miss_mask], cols_] = np.nan
        return net, obs.reshape(M, rows, cols), n_miss
    if shared:
        patterns = np.argsort(rng.random((20, M)), axis=1)[:, :n_miss]
        miss = patterns[rng.integers(0, 20, part.size)]
    else:
        miss = np.argsort(rng.random((part.size, M)), axis=1)[:, :n_miss]
    obs[miss.T, part[None, :]] = np.nan
    return net, obs.reshape(M, rows, cols), n_miss


def child(root, missing, shared, repeat, out, partial=0.1, spread=False):
    """Time ``sbas_invert_block`` with the checkout at ``root``; save its time series to ``out``; print JSON."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "subsidence_toolkit", str(Path(root) / "__init__.py"), submodule_search_locations=[str(root)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["subsidence_toolkit"] = mod
    spec.loader.exec_module(mod)
    from subsidence_toolkit.core.insar import sbas
    from subsidence_toolkit.core.io import blas

    net, obs, n_miss = make_block(missing, shared, partial=partial, spread=spread)
    work = {}
    times = []
    with blas.one_thread():
        sbas.sbas_invert_block(obs, net, dtype=np.float32, workspace=work)
        for _ in range(repeat):
            t0 = time.perf_counter()
            ts, _ = sbas.sbas_invert_block(obs, net, dtype=np.float32, workspace=work)
            times.append(time.perf_counter() - t0)
    np.save(out, ts)
    print(json.dumps({"best": min(times), "median": float(np.median(times)), "missing": n_miss}))


def run_child(root, missing, shared, repeat, out, partial, spread):
    cmd = [sys.executable, str(HERE), "--child", str(root), str(missing), str(int(shared)), str(repeat), out]
    cmd += [str(partial), str(int(spread))]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="an earlier checkout (git worktree) to compare with")
    ap.add_argument("--missing", type=float, nargs="*", default=[0.1, 0.05], help="fractions of interferograms missed")
    ap.add_argument("--shared", action="store_true", help="20 patterns shared by the partial pixels")
    ap.add_argument("--partial", type=float, default=0.1, help="fraction of the pixels that miss some")
    ap.add_argument("--spread", action="store_true", help="each partial pixel misses 1 .. MISSING x 605")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two checkouts")
    ap.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        root, missing, shared, repeat, out, partial, spread = a.child
        child(root, float(missing), bool(int(shared)), int(repeat), out, float(partial), bool(int(spread)))
        return
    sides = [("this checkout", ROOT)] + ([("baseline", Path(a.baseline).resolve())] if a.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        for missing in a.missing:
            best = {name: [] for name, _ in sides}
            for _ in range(a.rounds):
                series = []
                for name, root in sides:
                    out = str(Path(tmp) / ("ts_%d.npy" % len(series)))
                    r = run_child(root, missing, a.shared, a.repeat, out, a.partial, a.spread)
                    best[name].append(r["best"])
                    series.append(np.load(out))
                    kind = "1 .. %d" % r["missing"] if a.spread else "%d" % r["missing"]
                    print(
                        "%.0f %% of the pixels missing %s of 605 (%s): %s %.3f s best, %.3f s median"
                        % (100 * a.partial, kind, "shared" if a.shared else "unique", name, r["best"], r["median"])
                    )
                if len(series) == 2:
                    x, y = series
                    same_nan = bool(np.array_equal(np.isnan(x), np.isnan(y)))
                    rel = float(np.nanmax(np.abs(x - y)) / np.nanmax(np.abs(y)))
                    print("  time series: same NaN %s, largest difference %.2e of the largest value" % (same_nan, rel))
            if len(sides) == 2:
                print(
                    "  ratio baseline / this checkout (best of the rounds): %.2fx"
                    % (min(best["baseline"]) / min(best["this checkout"]))
                )


if __name__ == "__main__":
    main()
