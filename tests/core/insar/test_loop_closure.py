"""Loop closure (core/insar/loop_closure.py) against a direct LiCSBAS-step-12-style computation and planted
unwrapping errors."""

import datetime as dt
import math

import numpy as np

from subsidence_toolkit.core.insar import loop_closure as lc
from subsidence_toolkit.core.insar.network import SbasNetwork

TWO_PI = 2 * math.pi


def make_net(n=14, max_days=36, reverse=()):
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=12 * k) for k in range(n)]
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]
    pairs = [(b, a) if k in reverse else (a, b) for k, (a, b) in enumerate(pairs)]
    return SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])


def phase_stack(net, rows=20, cols=24, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.normal(0, 1.0, (net.n_dates, rows, cols)), axis=0)
    ts -= ts[0]
    obs = (ts[net.i2] - ts[net.i1]) * net.sign[:, None, None]
    return obs + rng.normal(0, noise, obs.shape)


def brute_loops(net):
    """Every triplet i<j<k with the three pairs (direct enumeration over dates)."""
    have = {}
    for k in range(net.n_ifg):
        have[(net.i1[k], net.i2[k])] = k
    out = []
    for i in range(net.n_dates):
        for j in range(i + 1, net.n_dates):
            for k in range(j + 1, net.n_dates):
                if (i, j) in have and (j, k) in have and (i, k) in have:
                    out.append((have[(i, j)], have[(j, k)], have[(i, k)]))
    return out


def test_triplets_and_loop_phase_match_direct_computation():
    net = make_net(reverse=(2, 7))
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    assert sorted(map(tuple, ln.loops.tolist())) == sorted(brute_loops(net))
    obs = phase_stack(net)
    obs[3, 2, 5] = np.nan
    lp = ln.loop_phase(obs)
    signed = obs * net.sign[:, None, None]
    direct = np.stack([signed[a] + signed[b] - signed[c] for a, b, c in ln.loops])
    assert np.array_equal(np.isnan(lp), np.isnan(direct))
    assert np.nanmax(np.abs(lp - direct)) < 1e-9
    # clean, consistent interferograms close to the noise level
    assert np.nanmax(np.abs(lp)) < 3.0
    # the dense loop matrix gives the same loop phase where the loop is closed
    dense = (ln.dense() @ np.where(np.isnan(obs), 0, obs).reshape(net.n_ifg, -1)).reshape(lp.shape)
    ok = np.isfinite(lp)
    assert np.allclose(dense[ok], lp[ok], atol=1e-9)
    assert ln.n_loops_per_ifg.sum() == 3 * ln.n_loops


def licsbas_loop_rms(loop_ph):
    """LiCSBAS step 12: remove 2 pi round(nanmedian / 2 pi), RMS over the loop's valid pixels."""
    out = []
    for x in loop_ph.reshape(loop_ph.shape[0], -1):
        if np.all(np.isnan(x)):
            out.append(np.inf)
            continue
        x = x - np.round(np.nanmedian(x) / TWO_PI) * TWO_PI
        out.append(np.sqrt(np.nanmean(x**2)))
    return np.array(out)


def test_streamed_loop_rms_equals_whole_image_licsbas_rms():
    net = make_net()
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    obs = phase_stack(net, rows=21, seed=1)
    obs[5] += 2 * TWO_PI  # two cycles everywhere: removed by the median cycles
    obs[9, :12] += TWO_PI  # half the image: raises the RMS
    obs[:, 0, :3] = np.nan
    stats = lc.empty_stats(ln.n_loops)
    for r0 in range(0, 21, 4):  # windows of 4 rows
        lc.accumulate(stats, ln.loop_phase(obs[:, r0 : r0 + 4]))
    rms = lc.loop_rms(stats)
    ref = licsbas_loop_rms(ln.loop_phase(obs))
    assert np.allclose(rms, ref, rtol=1e-9, atol=1e-9)


def test_bad_interferograms_rejected_and_patch_flagged():
    net = make_net(n=16)
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    obs = phase_stack(net, rows=30, cols=30, seed=2, noise=0.2)
    # whole-interferogram errors in 2 ifgs (+2 pi over 60 % of the image) and a 6x6 patch in a third
    bad = [4, 17]
    for k in bad:
        obs[k, :18] += TWO_PI
    obs[25, 10:16, 20:26] += TWO_PI
    stats = lc.accumulate(lc.empty_stats(ln.n_loops), ln.loop_phase(obs))
    verdict = lc.classify(ln, lc.loop_rms(stats), lc.DEFAULT_LOOP_THRESHOLD)
    assert sorted(np.flatnonzero(verdict["bad"]).tolist()) == bad
    # the patch is too small for the RMS rule; only the per-pixel count sees it
    assert not verdict["bad"][25]
    keep = ~verdict["bad"]
    loops = ln.subset(keep)
    n_err = lc.count_loop_errors(ln, obs, loops, lc.median_cycles(stats))
    patch = np.zeros((30, 30), bool)
    patch[10:16, 20:26] = True
    assert np.all(n_err[patch] == ln.n_loops_per_ifg[25])  # every loop of ifg 25 (all kept) is open there
    assert np.all(n_err[~patch] == 0)
    # loop RMS of an ifg = smallest RMS of its loops, rejection <=> >= threshold
    lr = verdict["loop_rms"]
    inloop = ~verdict["no_loop"]
    assert np.array_equal(verdict["bad"][inloop], lr[inloop] >= lc.DEFAULT_LOOP_THRESHOLD)


def test_interferogram_in_no_loop_reported():
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=12 * k) for k in range(5)]
    d1 = [dates[0], dates[1], dates[0], dates[2], dates[3]]
    d2 = [dates[1], dates[2], dates[2], dates[3], dates[4]]
    net = SbasNetwork(d1, d2)
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    assert ln.n_loops == 1
    v = lc.classify(ln, np.array([5.0]), 1.5)
    assert v["no_loop"].tolist() == [False, False, False, True, True]
    assert v["bad"].tolist() == [True, True, True, False, False]
    assert np.all(np.isnan(v["loop_rms"][3:]))


def test_median_cycles_even_and_odd_counts():
    stats = lc.empty_stats(3)
    x = np.array(
        [
            [0.1, 0.2, 6.4, 6.5, 6.2],  # median 6.2 -> 1 cycle
            [-6.3, -6.2, 0.0, np.nan, np.nan],  # median -6.2 -> -1
            [np.nan] * 5,
        ]
    )
    lc.accumulate(stats, x)
    assert lc.median_cycles(stats).tolist() == [1, -1, 0]
    assert np.isinf(lc.loop_rms(stats)[2])
