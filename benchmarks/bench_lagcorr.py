"""Benchmark: lagged correlation table (core.stats.lagcorr) vs the usual pandas + scipy loop.

The issue names no peer tool. The comparison is the code users write by hand (e.g.
sdule1/GRACE-Downscaling-Eastern-India validates with ``scipy.stats.pearsonr``): for every
group and lag, shift the response with pandas, keep the months where both exist and call
``scipy.stats.pearsonr``. Both run on the identical long table in the same process; the script
prints both times, the ratio, and the largest differences of r and p (they must agree to
rounding; ours also computes lag-1 autocorrelations, N_eff and p_eff, the peer does not).

No extra venv is needed: the peer is pandas 1.5 + scipy 1.10 of the system python.

Usage: /usr/bin/python3 benchmarks/bench_lagcorr.py [--groups 2000] [--months 120] [--max-lag 6]
"""

import argparse
import time

import numpy as np
import pandas as pd
import toolkit_package  # noqa: F401  (registers the checkout as subsidence_toolkit)
from scipy import stats

from subsidence_toolkit.core.stats import lagcorr


def make_table(groups, months, seed=0, gap=0.05):
    """Wide table (point, date, gwsa, defo): random walks, defo lags gwsa by 0..3 months, 5 % gaps."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2010-01-15", periods=months, freq="MS").strftime("%Y-%m-%d")
    g = rng.normal(size=(groups, months + 3)).cumsum(axis=1)
    lag = rng.integers(0, 4, size=groups)
    defo = np.stack([g[i, 3 - lag[i] : 3 - lag[i] + months] for i in range(groups)]) + rng.normal(size=(groups, months))
    gw = g[:, 3:].copy()
    gw[rng.random(gw.shape) < gap] = np.nan
    defo[rng.random(defo.shape) < gap] = np.nan
    return pd.DataFrame(
        {
            "point": np.repeat(np.arange(groups), months),
            "date": np.tile(dates, groups),
            "gwsa": gw.ravel(),
            "defo": defo.ravel(),
        }
    )


def peer(df, max_lag):
    """pandas shift + scipy.stats.pearsonr per group and lag (months complete and in order per group)."""
    rows = []
    for key, part in df.groupby("point", sort=True):
        x = part["gwsa"].to_numpy()
        y = pd.Series(part["defo"].to_numpy())
        for k in range(max_lag + 1):
            ys = y.shift(-k).to_numpy()
            ok = np.isfinite(x) & np.isfinite(ys)
            r, p = stats.pearsonr(x[ok], ys[ok])
            rows.append((key, k, int(ok.sum()), r, p))
    return pd.DataFrame(rows, columns=["point", "lag", "n", "r", "p"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--months", type=int, default=120)
    ap.add_argument("--max-lag", type=int, default=6)
    a = ap.parse_args(argv)
    df = make_table(a.groups, a.months)
    t0 = time.perf_counter()
    ours = lagcorr.lagged_correlation_table(
        df, "date", "gwsa", "defo", group_fields=["point"], max_lag=a.max_lag, series="levels"
    ).table
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = peer(df, a.max_lag)
    t_peer = time.perf_counter() - t0
    assert (ours["n"].to_numpy() == ref["n"].to_numpy()).all()
    dr = np.nanmax(np.abs(ours["r"].to_numpy() - ref["r"].to_numpy()))
    rel_p = np.nanmax(np.abs(ours["p"].to_numpy() - ref["p"].to_numpy()) / np.maximum(ref["p"].to_numpy(), 1e-300))
    print("input: %d groups x %d months, lags 0..%d, %d rows" % (a.groups, a.months, a.max_lag, len(df)))
    print("ours (core.stats.lagcorr, + r1, N_eff, p_eff): %.3f s" % t_ours)
    print("peer (pandas shift + scipy.stats.pearsonr loop): %.3f s" % t_peer)
    print("ratio peer/ours: %.1f" % (t_peer / t_ours))
    print("max |r_ours - r_peer| = %.2e, max relative |p_ours - p_peer| = %.2e" % (dr, rel_p))


if __name__ == "__main__":
    main()
