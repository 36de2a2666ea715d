"""Benchmark: our Geodetector vs PyPI ``geodetector`` 0.2.0 on identical data.

Peer venv (outside the repo; a plain venv, because the peer pulls numpy 2 and
matplotlib wheels that clash with the system packages)::

    /usr/bin/python3 -m venv /work/venvs/geodetector
    /work/venvs/geodetector/bin/pip install geodetector==0.2.0

Run (our code in the system python, the peer in its venv as a subprocess on
the same .npz data, both timed in this run)::

    cd <repo> && /usr/bin/python3 benchmarks/bench_geodetector.py --n 1000000
    /usr/bin/python3 benchmarks/bench_geodetector.py --n 100000
    /usr/bin/python3 benchmarks/bench_geodetector.py --breaks-only   # natural breaks timing

Workload: N rows, 9 factors x 20 classes (integer codes 0..19, which both
tools take as categories), all four detectors and the 36 interactions.
Compared: q, q(A∩B), interaction types, ecological F, risk p of one factor,
Wang p (ours run once more with the peer's conventions, untimed:
lambda with the population variance). Natural breaks: exact k = 20 on 1e6
lognormal values (ours), and SSW vs mapclassify ``FisherJenks`` (the peer's
natural-breaks backend) on 1000 values.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from toolkit_package import register

PEER_PY = "/work/venvs/geodetector/bin/python"


def _import_ours():
    register()
    from subsidence_toolkit.core.stats import breaks, geodetector

    return breaks, geodetector


PEER_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
from geodetector import GeoDetector
d = np.load(sys.argv[1])
names = [f"x{i}" for i in range(d["X"].shape[1])]
df = pd.DataFrame({n: d["X"][:, i] for i, n in enumerate(names)})
df["y"] = d["y"]
t = time.perf_counter()
gd = GeoDetector(factors=names, target="y")
gd.fit(df)
el = time.perf_counter() - t
iq = gd.interaction_q_
it = gd.interaction_type_
labels = {0: "Weaken, nonlinear", 1: "Weaken, uni-", 2: "Enhance, bi-", 3: "Independent", 4: "Enhance, nonlinear"}
pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
risk0 = gd.risk_result_[names[0]]
out = {
    "time": el,
    "q": dict(zip(gd.q_values_["variable"], gd.q_values_["q_value"].astype(float))),
    "p": dict(zip(gd.q_values_["variable"], gd.q_values_["p_value"].astype(float))),
    "q12": {f"{a}|{b}": float(iq.loc[a, b]) for a, b in pairs},
    "type": {f"{a}|{b}": labels[int(it.loc[a, b])] for a, b in pairs},
    "eco": {f"{r.factor_1}|{r.factor_2}": float(r.f_stat) for r in gd.ecological_result_.itertuples()},
    "risk0": {f"{int(r.stratum_1)}|{int(r.stratum_2)}": float(r.p_value) for r in risk0.itertuples()},
}
json.dump(out, open(sys.argv[2], "w"))
"""

PEER_BREAKS = r"""
import json, sys, time
import numpy as np
import mapclassify
x = np.load(sys.argv[1])["x"]
t = time.perf_counter()
fj = mapclassify.FisherJenks(x, k=int(sys.argv[3]))
el = time.perf_counter() - t
json.dump({"time": el, "bins": [float(b) for b in fj.bins]}, open(sys.argv[2], "w"))
"""


def make_data(n, n_factors=9, classes=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, classes, size=(n, n_factors)).astype(np.int64)
    eff = rng.normal(size=(n_factors, classes)) * np.linspace(1.5, 0.1, n_factors)[:, None]
    y = eff[np.arange(n_factors), X].sum(axis=1)
    y += 0.8 * ((X[:, 0] % 2) ^ (X[:, 1] % 2))  # a planted interaction
    y += rng.normal(scale=1.5, size=n)
    return y, X


def run_peer(script, args, timeout=3600):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        res = subprocess.run([PEER_PY, path] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
    finally:
        os.unlink(path)


def bench_detectors(n, skip_peer=False):
    breaks, G = _import_ours()
    y, X = make_data(n)
    names = [f"x{i}" for i in range(X.shape[1])]
    factors = {nm: X[:, i] for i, nm in enumerate(names)}
    t = time.perf_counter()
    res = G.run_geodetector(y, factors, messages=[])
    ours = time.perf_counter() - t
    inter = res["interaction"]
    print(f"N={n:,}  9 factors x 20 classes, 36 pairs, all four detectors")
    print(f"  ours  (system python, numpy {np.__version__}): {ours:8.2f} s")
    if skip_peer:
        return
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "d.npz", Path(tmp) / "o.json"
        np.savez(data, y=y, X=X)
        run_peer(PEER_SCRIPT, [data, out])
        peer = json.load(open(out))
    print(f"  peer  (PyPI geodetector 0.2.0):          {peer['time']:8.2f} s")
    print(f"  ratio peer/ours: {peer['time'] / ours:6.1f}x")
    f = res["factor"].set_index("factor")
    dq = max(abs(f.loc[k, "q"] - v) for k, v in peer["q"].items())
    key = inter.factor_a + "|" + inter.factor_b
    q12 = dict(zip(key, inter.q_ab))
    types = dict(zip(key, inter["type"]))
    dq12 = max(abs(q12[k] - v) for k, v in peer["q12"].items())
    mism = sum(types[k] != v for k, v in peer["type"].items())
    eco = res["ecological"]
    F = dict(zip(eco.factor_a + "|" + eco.factor_b, eco.F))
    dF = max(abs(F[k] - v) / v for k, v in peer["eco"].items())
    f0 = G.factor_detector(y, res["codings"], lambda_ddof=0).set_index("factor")
    dp = max(abs(f0.loc[k, "p_wang"] - v) for k, v in peer["p"].items())
    rt = res["risk_tests"]
    rt = rt[rt.factor == "x0"]
    rp = dict(zip(rt.stratum_a.astype(str) + "|" + rt.stratum_b.astype(str), rt.p))
    drp = max(abs(rp[k] - v) for k, v in peer["risk0"].items())
    print(
        f"  max |dq| {dq:.1e}  max |dq12| {dq12:.1e}  type mismatches {mism}/36  "
        f"max rel |dF_eco| {dF:.1e}  max |dp_wang| (lambda ddof 0) {dp:.1e}  max |dp_risk(x0)| {drp:.1e}"
    )


def bench_breaks(n=1_000_000, k=20, small=1000, skip_peer=False):
    breaks, _ = _import_ours()
    rng = np.random.default_rng(42)
    x = rng.lognormal(size=n)
    t = time.perf_counter()
    b = breaks.natural_breaks(x, k)
    el = time.perf_counter() - t
    t = time.perf_counter()
    b1 = breaks.natural_breaks(x, k, threads=1)
    el1 = time.perf_counter() - t
    print(
        f"exact natural breaks k={k} on {n:,} lognormal values ({np.unique(x).size:,} distinct): "
        f"{el:.2f} s ({os.cpu_count()} CPUs), {el1:.2f} s in one thread, "
        f"SSW {breaks.ssw_of_breaks(x, b):.6f} / {breaks.ssw_of_breaks(x, b1):.6f}"
    )
    xs = x[:small]
    t = time.perf_counter()
    bs = breaks.natural_breaks(xs, k)
    el = time.perf_counter() - t
    line = f"  n={small}: ours {el:.3f} s SSW {breaks.ssw_of_breaks(xs, bs):.8f}"
    if not skip_peer:
        with tempfile.TemporaryDirectory() as tmp:
            data, out = Path(tmp) / "x.npz", Path(tmp) / "o.json"
            np.savez(data, x=xs)
            run_peer(PEER_BREAKS, [data, out, k])
            peer = json.load(open(out))
        line += f" | mapclassify FisherJenks {peer['time']:.3f} s SSW {breaks.ssw_of_breaks(xs, peer['bins'][:-1]):.8f}"
    print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--breaks-only", action="store_true")
    ap.add_argument("--no-breaks", action="store_true")
    a = ap.parse_args()
    if not a.breaks_only:
        bench_detectors(a.n, a.skip_peer)
    if not a.no_breaks:
        bench_breaks(skip_peer=a.skip_peer)


if __name__ == "__main__":
    main()
