"""GAP_HANDLING nsbas / mask against an independent implementation of LiCSBAS's NSBAS system.

LiCSBAS ``invert_nsbas`` (LiCSBAS_inv_lib.py, Morishita et al. 2020): unknowns are the incremental
displacements between consecutive dates (design G: 1 on the intervals a pair spans), the velocity and
the intercept; below G, one row per acquisition date INCLUDING the first,
``gamma * (sum_{j<i} inc_j - vel * t_i - c) = 0`` with gamma = 1e-4 and t in years = days / 365.25; every
pixel solved by ``np.linalg.lstsq`` on its valid rows (rcond=None). Written here from that description,
in its own parametrisation (increments, not our interval velocities), per pixel, in float64.
"""

import datetime as dt

import numpy as np
import pytest

from subsidence_toolkit.core.insar import sbas
from subsidence_toolkit.core.insar.network import SbasNetwork


def dates_list(n, start=dt.date(2020, 1, 6)):
    return [start + dt.timedelta(days=12 * k + (5 if k % 4 == 3 else 0)) for k in range(n)]


def licsbas_nsbas(dates, d1, d2, obs, gamma=1e-4):
    """Per-pixel LiCSBAS NSBAS: obs (M, P) mm (NaN = missing) -> cumulative displacement (N, P) mm."""
    N = len(dates)
    pos = {d: i for i, d in enumerate(dates)}
    M, P = obs.shape
    G = np.zeros((M, N - 1))
    for k in range(M):
        G[k, pos[d1[k]] : pos[d2[k]]] = 1.0
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    Gb = np.hstack([np.tril(np.ones((N, N - 1)), k=-1), -t[:, None], -np.ones((N, 1))]) * gamma
    Gall = np.vstack([np.hstack([G, np.zeros((M, 2))]), Gb])
    out = np.full((N, P), np.nan)
    for p in range(P):
        v = np.isfinite(obs[:, p])
        if not v.any():
            continue
        rows = np.concatenate([v, np.ones(N, bool)])
        b = np.concatenate([obs[v, p], np.zeros(N)])
        x = np.linalg.lstsq(Gall[rows], b, rcond=None)[0]
        out[:, p] = np.concatenate([[0.0], np.cumsum(x[: N - 1])])
    return out


def network(n=16, max_days=40, split_at=None):
    dates = dates_list(n)
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]
    if split_at is not None:
        pairs = [(a, b) for a, b in pairs if not (a <= dates[split_at] < b)]
    return dates, [a for a, _ in pairs], [b for _, b in pairs]


def stack(dates, d1, d2, P, seed):
    rng = np.random.default_rng(seed)
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    vel = rng.uniform(-50, 10, P)
    ts = vel[None] * t[:, None] + 6 * np.sin(2 * np.pi * t)[:, None] + rng.normal(0, 1.5, (len(dates), P))
    pos = {d: i for i, d in enumerate(dates)}
    i1 = np.array([pos[d] for d in d1])
    i2 = np.array([pos[d] for d in d2])
    return ts[i2] - ts[i1] + rng.normal(0, 1.0, (len(d1), P))


def isolate(obs, d1, d2, date):
    o = obs.copy()
    hit = np.array([a == date or b == date for a, b in zip(d1, d2)])
    o[hit] = np.nan
    return o


@pytest.mark.parametrize("split_at", [None, 7])
def test_nsbas_matches_licsbas_on_split_networks(split_at):
    dates, d1, d2 = network(split_at=split_at)
    net = SbasNetwork(d1, d2)
    P = 10
    obs = stack(dates, d1, d2, P, seed=3 + (split_at or 0))
    # per pixel: intact; first date isolated; a middle date isolated; last date isolated (twice each)
    cols = [obs[:, 0:2]]
    for k, date in enumerate((dates[0], dates[8], dates[-1])):
        cols.append(isolate(obs[:, 2 + 2 * k : 4 + 2 * k], d1, d2, date))
    cols.append(obs[:, 8:10].copy())
    cols[-1][[0, 5, 9], 0] = np.nan  # a few missing observations too
    o = np.concatenate(cols, axis=1)
    ts, q = sbas.sbas_invert_block(o[:, None, :], net, gap_handling="nsbas")
    ref = licsbas_nsbas(dates, d1, d2, o)
    got = ts[:, 0, :]
    assert np.max(np.abs(got - ref)) < 1e-3, np.max(np.abs(got - ref), axis=0)
    # gaps counted (connected parts - 1): the isolated date adds a part
    g = q["n_gaps"][0]
    base = 0 if split_at is None else 1
    assert np.all(g[[0, 1, 8]] == base) and np.all(g[2:8] == base + 1)
    # the first-date-isolated pixels are bridged, not min-norm: the old design (no first-date row) differs
    assert np.all(np.isfinite(got[:, 2:4]))


def test_mask_keeps_largest_part_when_first_date_isolated():
    dates, d1, d2 = network()
    net = SbasNetwork(d1, d2)
    t = net.tyears
    truth = -30.0 * t
    pos = {d: i for i, d in enumerate(dates)}
    obs = np.array([truth[pos[b]] - truth[pos[a]] for a, b in zip(d1, d2)])[:, None].repeat(3, axis=1)
    o = obs.copy()
    o[:, 0] = isolate(obs[:, :1], d1, d2, dates[0])[:, 0]  # first date isolated
    o[:, 1] = isolate(obs[:, 1:2], d1, d2, dates[-1])[:, 0]  # last date isolated
    ts, q = sbas.sbas_invert_block(o[:, None, :], net, gap_handling="mask")
    ts = ts[:, 0]
    # first date isolated: dates 1.. kept (15 of 16), referenced to date 1
    assert np.isnan(ts[0, 0]) and np.allclose(ts[1:, 0], truth[1:] - truth[1], atol=1e-8)
    assert q["kept_first_date"][0, 0] == 1
    # last date isolated: dates 0..N-2 kept
    assert np.isnan(ts[-1, 1]) and np.allclose(ts[:-1, 1], truth[:-1], atol=1e-8)
    assert q["kept_first_date"][0, 1] == 0
    # connected pixel untouched
    assert np.allclose(ts[:, 2], truth, atol=1e-8) and q["kept_first_date"][0, 2] == 0
