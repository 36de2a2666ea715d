"""Tests of core/insar/sbas.py against analytic truth and per-pixel numpy lstsq references."""

import datetime as dt
import math

import numpy as np
import pytest

from subsidence_toolkit.core.insar import sbas
from subsidence_toolkit.core.insar.network import DEFAULT_NSBAS_GAMMA, SbasNetwork, select_pairs
from subsidence_toolkit.core.insar.pairs import match_pairs_csv, pair_from_name, pairs_from_names, read_pairs_csv
from subsidence_toolkit.core.insar.reference import auto_reference, reference_values
from subsidence_toolkit.core.insar.units import los_factor_mm
from subsidence_toolkit.core.insar.velocity import velocity_fit
from subsidence_toolkit.core.insar.weights import coherence_weights, phase_variance_lut
from subsidence_toolkit.core.io.errors import TimeSeriesError


def make_dates(n, start=dt.date(2020, 1, 3), skip=(5, 11)):
    out, d, k = [], start, 0
    while len(out) < n:
        if k not in skip:
            out.append(d)
        d += dt.timedelta(days=12)
        k += 1
    return out


def short_baseline_pairs(dates, max_days=48):
    return [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]


def truth_ts(tyears, rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    vel = rng.uniform(-40, 10, (rows, cols))
    amp = rng.uniform(0, 8, (rows, cols))
    t = tyears[:, None, None]
    ts = vel * t + amp * np.sin(2 * np.pi * t) + 2.0 * (t**2)
    return ts - ts[0]


def ifgs_from_ts(net, ts):
    return (ts[net.i2] - ts[net.i1]) * net.sign[:, None, None]


def lstsq_reference(net, y, valid, w=None, nsbas_gamma=None):
    """Per-pixel np.linalg.lstsq on the valid rows of B (min-norm), independent of the grouped solver."""
    M, P = y.shape
    out = np.full((net.n_dates, P), np.nan)
    for p in range(P):
        v = valid[:, p]
        if not v.any():
            continue
        G = net.B[v]
        b = y[v, p] * net.sign[v]
        if w is not None:
            sw = np.sqrt(w[v, p])
            G, b = G * sw[:, None], b * sw
        x = np.linalg.lstsq(G, b, rcond=1e-5)[0]
        out[0, p] = 0.0
        out[1:, p] = net.T @ x
    return out


def test_pair_parsing():
    assert pair_from_name("/x/20200103_20200115.geo.unw.tif") == (dt.date(2020, 1, 3), dt.date(2020, 1, 15))
    h = "S1AA_20200103T054123_20200115T054122_VVP012_INT80_G_ueF_1A2B_unw_phase.tif"
    assert pair_from_name(h) == (dt.date(2020, 1, 3), dt.date(2020, 1, 15))
    assert pair_from_name("ifg_2020.tif") is None
    with pytest.raises(TimeSeriesError, match="ifg_a.tif, b.tif"):
        pairs_from_names(["20200103_20200115.tif", "ifg_a.tif", "b.tif"])


def test_pairs_csv(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text("file,reference,secondary,bperp\na.tif,2020-01-03,20200115,12.5\nb.tif,2020-01-15,2020-01-27,\n")
    rows = read_pairs_csv(p)
    assert rows[0] == {"file": "a.tif", "date1": dt.date(2020, 1, 3), "date2": dt.date(2020, 1, 15), "bperp": 12.5}
    assert rows[1]["bperp"] is None
    m = match_pairs_csv(["/d/b.tif", "/d/a.tif"], rows)
    assert m[0]["file"] == "b.tif"
    with pytest.raises(TimeSeriesError, match="c.tif"):
        match_pairs_csv(["/d/c.tif"], rows)


def test_network_errors():
    d = make_dates(4)
    with pytest.raises(TimeSeriesError, match="duplicate"):
        SbasNetwork([d[0], d[1], d[1]], [d[1], d[2], d[0]], ["a", "b", "c"])
    with pytest.raises(TimeSeriesError, match="equals"):
        SbasNetwork([d[0], d[1]], [d[1], d[1]], ["a", "b"])
    with pytest.raises(TimeSeriesError, match="at least 3"):
        SbasNetwork([d[0]], [d[1]], ["a"])


def test_select_pairs():
    d = make_dates(6)
    pairs = short_baseline_pairs(d, 48)
    names = ["%s_%s.unw.tif" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d")) for a, b in pairs]
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs], names, bperp=np.arange(len(pairs)) * 40.0)
    used, why = select_pairs(net, max_temporal_baseline=24, max_perp_baseline=200, exclude=[names[0]])
    tb = net.temporal_baselines
    for k in range(len(pairs)):
        expect = k != 0 and tb[k] <= 24 and k * 40 <= 200
        assert used[k] == expect, (k, why[k])
    assert why[0] == "excluded"


def test_noise_free_full_network_recovers_truth():
    dates = make_dates(20)
    pairs = short_baseline_pairs(dates, 48)
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    truth = truth_ts(net.tyears, 6, 7)
    ts, q = sbas.sbas_invert_block(ifgs_from_ts(net, truth), net)
    assert np.max(np.abs(ts - truth)) < 1e-4
    assert np.all(q["n_gaps"] == 0) and np.all(q["n_ifg_used"] == len(pairs))
    assert np.allclose(q["temporal_coherence"], 1.0) and np.all(q["residual_rms"] < 1e-6)
    # weighted solve of noise-free data is also exact
    coh = np.random.default_rng(1).uniform(0.2, 0.9, (len(pairs), 6, 7))
    for wmode in ("coherence", "variance"):
        tsw, _ = sbas.sbas_invert_block(ifgs_from_ts(net, truth), net, coherence_block=coh, weighting=wmode)
        assert np.max(np.abs(tsw - truth)) < 1e-4


def test_reversed_pairs_sign():
    dates = make_dates(8)
    pairs = short_baseline_pairs(dates, 36)
    d1 = [b if k % 3 == 0 else a for k, (a, b) in enumerate(pairs)]
    d2 = [a if k % 3 == 0 else b for k, (a, b) in enumerate(pairs)]
    net = SbasNetwork(d1, d2)
    truth = truth_ts(net.tyears, 3, 3)
    pos = {d: i for i, d in enumerate(net.dates)}
    obs = np.stack([truth[pos[b]] - truth[pos[a]] for a, b in zip(d1, d2)])
    ts, _ = sbas.sbas_invert_block(obs, net)
    assert np.max(np.abs(ts - truth)) < 1e-6


def test_star_network_equals_direct_differences():
    dates = make_dates(7)
    net = SbasNetwork([dates[0]] * 6, dates[1:])
    rng = np.random.default_rng(3)
    obs = rng.normal(0, 10, (6, 4, 5))
    ts, q = sbas.sbas_invert_block(obs, net)
    assert np.allclose(ts[1:], obs, atol=1e-10) and np.all(ts[0] == 0)
    # a reference that is not the first date: ts(d) = ifg(ref,d) - ifg(ref,first)
    net2 = SbasNetwork([dates[3]] * 6, dates[:3] + dates[4:])
    ts2, _ = sbas.sbas_invert_block(obs, net2)
    direct = np.concatenate([obs[:3], np.zeros((1, 4, 5)), obs[3:]])
    assert np.allclose(ts2, direct - direct[0], atol=1e-10)


def split_network():
    dates = make_dates(12)
    pairs = [(a, b) for a, b in short_baseline_pairs(dates, 36) if not (a <= dates[5] and b >= dates[6])]
    return SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])


def test_split_network_detected_and_handled():
    net = split_network()
    assert net.n_gaps()[0] == 1
    t = net.tyears
    truth = np.broadcast_to((-30.0 * t)[:, None, None], (net.n_dates, 2, 3)).copy()
    obs = ifgs_from_ts(net, truth)
    # min-norm: interval 5->6 gets zero velocity, all else exact
    ts, q = sbas.sbas_invert_block(obs, net, gap_handling="min_norm")
    assert np.all(q["n_gaps"] == 1)
    assert np.allclose(ts[:6], truth[:6], atol=1e-8)
    assert np.allclose(ts[6], ts[5], atol=1e-8)
    assert np.allclose(ts[7:] - ts[6], truth[7:] - truth[6], atol=1e-8)
    # NSBAS: the linear trend bridges the gap -> a linear truth is recovered everywhere
    tsn, qn = sbas.sbas_invert_block(obs, net, gap_handling="nsbas")
    assert np.all(qn["n_gaps"] == 1)
    assert np.max(np.abs(tsn - truth)) < 1e-4
    # mask: dates outside the largest connected part are NaN, the rest exact relative to its first date
    tsm, qm = sbas.sbas_invert_block(obs, net, gap_handling="mask")
    big = 6 if net.n_dates - 6 <= 6 else None
    if big == 6:
        assert np.all(np.isnan(tsm[6:])) and np.allclose(tsm[:6], truth[:6], atol=1e-8)
        assert np.all(qm["kept_first_date"] == 0)
    else:
        assert np.all(np.isnan(tsm[:6])) and np.allclose(tsm[6:], truth[6:] - truth[6], atol=1e-8)
        assert np.all(qm["kept_first_date"] == 6)
    assert np.all(qm["n_gaps"] == 1)


def nan_stack(seed=5, rows=9, cols=11, split=False):
    rng = np.random.default_rng(seed)
    if split:
        net = split_network()
    else:
        dates = make_dates(14)
        pairs = short_baseline_pairs(dates, 48)
        net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    truth = truth_ts(net.tyears, rows, cols, seed)
    obs = ifgs_from_ts(net, truth) + rng.normal(0, 2.0, (net.n_ifg, rows, cols)) + rng.normal(0, 3.0, (net.n_ifg, 1, 1))
    M, P = net.n_ifg, rows * cols
    o = obs.reshape(M, P)
    clean52 = o[:, 52].copy()
    # 40 % of pixels lose 10 % of ifgs; a few share a pattern; some lose many; 3 all-NaN; 2 isolated first date
    for p in rng.choice(P, int(0.4 * P), replace=False):
        o[rng.choice(M, max(1, M // 10), replace=False), p] = np.nan
    o[:, 20:24] = o[:, 19:20] * 0 + o[:, 20:24]
    o[np.isnan(o[:, 19]), 20:24] = np.nan
    o[rng.choice(M, int(0.7 * M), replace=False), 30] = np.nan
    o[:, 40:43] = np.nan
    o[net.i1 == 0, 50] = np.nan
    o[(net.i1 == 3) | (net.i2 == 3), 51] = np.nan
    o[:, 52] = clean52
    o[0, 52] = 0.0  # exact zero is valid data
    coh = rng.uniform(0.15, 0.95, (M, rows, cols))
    return net, obs, coh, truth


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("gap", ["min_norm", "mask"])
def test_grouped_solver_equals_per_pixel_lstsq(split, gap):
    net, obs, _, _ = nan_stack(split=split)
    M = net.n_ifg
    ts, q = sbas.sbas_invert_block(obs, net, gap_handling=gap)
    y = obs.reshape(M, -1)
    valid = np.isfinite(y)
    ref = lstsq_reference(net, y, valid)
    got = ts.reshape(net.n_dates, -1)
    if gap == "mask":
        # the largest connected part, re-referenced to its first date
        keep, first = sbas.largest_part(net.components(valid))
        ref = np.where(keep, ref - ref[first, np.arange(ref.shape[1])], np.nan)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 1e-7
    n_used = q["n_ifg_used"].reshape(-1)
    assert np.array_equal(n_used, valid.sum(0))
    assert n_used[52] == M  # the exact 0.0 counted as data
    gaps = q["n_gaps"].reshape(-1)
    assert np.all(gaps[40:43] == -1) and np.all(np.isnan(got[:, 40:43]))
    assert gaps[50] >= 1 and gaps[51] >= 2 - (0 if split else 1)
    # never an all-zero pixel that had data
    had = valid.any(0)
    assert not np.any(had & np.all(got == 0, axis=0))
    # residual rms and temporal coherence from the reference residual
    e = np.where(valid, y * net.sign[:, None] - (ref[net.i2] - ref[net.i1]) if gap != "mask" else 0, 0)
    if gap != "mask":
        rms = np.sqrt((e**2).sum(0) / np.maximum(valid.sum(0), 1))
        assert np.allclose(q["residual_rms"].reshape(-1)[had], rms[had], atol=1e-7)
        tc = np.abs(np.where(valid, np.exp(1j * e), 0).sum(0)) / np.maximum(valid.sum(0), 1)
        assert np.allclose(q["temporal_coherence"].reshape(-1)[had], tc[had], atol=1e-7)


@pytest.mark.parametrize("wmode", ["coherence", "variance"])
@pytest.mark.parametrize("split", [False, True])
def test_weighted_equals_per_pixel_weighted_lstsq(wmode, split):
    net, obs, coh, _ = nan_stack(seed=8, split=split)
    M = net.n_ifg
    ts, q = sbas.sbas_invert_block(obs, net, coherence_block=coh, weighting=wmode)
    y = obs.reshape(M, -1)
    valid = np.isfinite(y)
    w = coherence_weights(coh.reshape(M, -1), wmode)
    ref = lstsq_reference(net, y, valid, w)
    got = ts.reshape(net.n_dates, -1)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 1e-6


def test_min_coherence_masks_observations():
    net, obs, coh, _ = nan_stack(seed=9)
    M = net.n_ifg
    ts, q = sbas.sbas_invert_block(obs, net, coherence_block=coh, min_coherence=0.3)
    y = obs.reshape(M, -1)
    valid = np.isfinite(y) & (coh.reshape(M, -1) >= 0.3)
    ref = lstsq_reference(net, np.where(valid, y, np.nan), valid)
    assert np.nanmax(np.abs(ts.reshape(net.n_dates, -1) - ref)) < 1e-7
    assert np.array_equal(q["n_ifg_used"].reshape(-1), valid.sum(0))


def test_nsbas_nan_stack_matches_augmented_lstsq():
    net, obs, _, _ = nan_stack(seed=11, split=True)
    M, g = net.n_ifg, 1e-4
    ts, q = sbas.sbas_invert_block(obs, net, gap_handling="nsbas", nsbas_gamma=g)
    y = obs.reshape(M, -1)
    valid = np.isfinite(y)
    D = net.nsbas_design(g)
    O = np.hstack([net.T, np.zeros((net.n_dates - 1, 2))])
    got = ts.reshape(net.n_dates, -1)
    for p in range(y.shape[1]):
        v = valid[:, p]
        if not v.any():
            assert np.all(np.isnan(got[:, p]))
            continue
        rows = np.concatenate([v, np.ones(net.n_dates, bool)])
        b = np.concatenate([y[v, p] * net.sign[v], np.zeros(net.n_dates)])
        x = np.linalg.lstsq(D[rows], b, rcond=1e-5)[0]
        assert np.allclose(got[1:, p], O @ x, atol=1e-5), p


@pytest.mark.parametrize("weighting", ["none", "coherence"])
def test_block_split_bit_for_bit(weighting):
    net, obs, coh, _ = nan_stack(seed=12, rows=12, cols=10)
    kw = dict(coherence_block=coh, weighting=weighting) if weighting != "none" else {}
    ts, q = sbas.sbas_invert_block(obs, net, **kw)
    for split in ([0, 5, 12], [0, 1, 2, 7, 12]):
        parts = []
        for r0, r1 in zip(split[:-1], split[1:]):
            kwb = dict(kw)
            if kw:
                kwb["coherence_block"] = coh[:, r0:r1]
            parts.append(sbas.sbas_invert_block(obs[:, r0:r1], net, **kwb))
        ts2 = np.concatenate([p[0] for p in parts], axis=1)
        assert np.array_equal(ts, ts2, equal_nan=True)
        for k in q:
            assert np.array_equal(q[k], np.concatenate([p[1][k] for p in parts], axis=0), equal_nan=True)


def test_velocity_fit():
    t = np.linspace(0, 3, 40)
    rng = np.random.default_rng(0)
    ts = (5 - 20 * t)[:, None, None] + np.zeros((40, 2, 2))
    ts[:, 1, 1] += 3 * np.sin(2 * np.pi * t) + 1 * np.cos(4 * np.pi * t)
    ts[:, 0, 1] += rng.normal(0, 1, 40)
    ts[5:9, 1, 0] = np.nan
    ts[:, 0, 0] = np.nan
    ts[0, 0, 0] = 1.0
    v, s = velocity_fit(ts, t)
    assert np.isnan(v[0, 0]) and abs(v[1, 0] + 20) < 1e-9 and s[1, 0] < 1e-9
    X = np.stack([np.ones(40), t], 1)
    c, res = np.linalg.lstsq(X, ts[:, 0, 1], rcond=None)[:2]
    cov = res[0] / 38 * np.linalg.inv(X.T @ X)
    assert abs(v[0, 1] - c[1]) < 1e-9 and abs(s[0, 1] - math.sqrt(cov[1, 1])) < 1e-9
    v2, _ = velocity_fit(ts, t, seasonal=True)
    assert abs(v2[1, 1] + 20) < 1e-8


@pytest.mark.parametrize("seasonal", [False, True])
def test_velocity_fit_of_a_block_larger_than_its_chunks(seasonal):
    """A float32 block of 2.3 x VELOCITY_CHUNK pixels (the fit works on float64 copies of a chunk at a time):
    every pixel's velocity and standard deviation are those of its own least-squares fit (float64 lstsq of the
    same float32 values), full pixels and pixels with missing dates alike, and do not depend on the block."""
    from subsidence_toolkit.core.insar.velocity import VELOCITY_CHUNK, velocity_design

    N, P = 30, int(2.3 * VELOCITY_CHUNK)
    t = np.sort(np.random.default_rng(1).uniform(0, 3, N))
    rng = np.random.default_rng(2)
    ts = (rng.uniform(-50, 10, P) * t[:, None] + rng.normal(0, 2, (N, P))).astype(np.float32)
    ts[rng.integers(0, N, 300), rng.integers(0, P, 300)] = np.nan  # some pixels miss dates
    ts[:, 5] = np.nan  # one without data
    v, s = velocity_fit(ts, t, seasonal=seasonal)
    X = velocity_design(t, seasonal)
    for px in list(rng.integers(0, P, 40)) + [VELOCITY_CHUNK - 1, VELOCITY_CHUNK, P - 1]:
        ok = np.isfinite(ts[:, px])
        c, res = np.linalg.lstsq(X[ok], ts[ok, px].astype(np.float64), rcond=None)[:2]
        dof = ok.sum() - X.shape[1]
        sd = math.sqrt(res[0] / dof * np.linalg.inv(X[ok].T @ X[ok])[1, 1])
        assert abs(v[px] - c[1]) < 1e-9 * max(1, abs(c[1])) and abs(s[px] - sd) < 1e-7 * max(1.0, sd), px
    assert np.isnan(v[5]) and np.isnan(s[5])
    parts = [velocity_fit(ts[:, a:b], t, seasonal=seasonal) for a, b in ((0, 1000), (1000, 7000), (7000, P))]
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), s, rtol=1e-9, atol=1e-12)


def test_weights_and_units():
    g, var = phase_variance_lut(20)
    assert np.all(np.diff(var[5:]) < 0)  # variance falls with coherence
    assert abs(var[0] - np.pi**2 / 3) < 0.05  # uniform phase at zero coherence
    crlb = (1 - 0.8**2) / (2 * 20 * 0.8**2)
    assert abs(np.interp(0.8, g, var) / crlb - 1) < 0.1  # near the CRLB for many looks
    w = coherence_weights(np.array([0.0, 0.5, np.nan]), "variance", looks=None)
    assert w[0] > 0 and w[1] > w[0] and np.isnan(w[2])
    f = los_factor_mm("radians", 0.05546576)
    assert abs(f - (-0.05546576 / (4 * math.pi) * 1000)) < 1e-12
    assert los_factor_mm("m", 0.05, flip_sign=True) == -1000.0


def test_reference_helpers():
    v, miss = reference_values(np.array([[1.0, 2.0, 9.0], [np.nan, np.nan, np.nan]]))
    assert v[0] == 2.0 and miss.tolist() == [False, True]
    n = np.array([[5, 5], [4, 5]])
    score = np.array([[0.5, 0.7], [0.9, 0.6]])
    assert auto_reference(n, 5, score) == (0, 1)
    assert auto_reference(n, 5, score, higher_is_better=False) == (0, 0)
    assert auto_reference(n, 6, score) is None


def test_float32_path_matches_float64():
    net, obs, _, _ = nan_stack(seed=21)
    ts64, q64 = sbas.sbas_invert_block(obs, net)
    ts32, q32 = sbas.sbas_invert_block(obs.astype(np.float32), net, dtype=np.float32)
    assert ts32.dtype == np.float32
    assert np.array_equal(np.isnan(ts32), np.isnan(ts64))
    assert np.nanmax(np.abs(ts32 - ts64)) < 1e-3 * np.nanmax(np.abs(ts64))
    assert np.array_equal(q32["n_gaps"], q64["n_gaps"])


def _components_by_propagation(net, valid):
    """Component labels by iterated min-label propagation along the pairs (an independent reference)."""
    lab = np.repeat(np.arange(net.n_dates, dtype=np.int32)[:, None], valid.shape[1], axis=1)
    for _ in range(net.n_dates + 1):
        before = lab.copy()
        for k in range(net.n_ifg):
            la, lb = lab[net.i1[k]], lab[net.i2[k]]
            mn = np.minimum(la, lb)
            np.copyto(la, mn, where=valid[k])
            np.copyto(lb, mn, where=valid[k])
        if np.array_equal(before, lab):
            break
    return lab


def test_components_equal_label_propagation_in_any_batches(monkeypatch):
    """SciPy's connected components of the (pattern, date) graph give the labels of iterated min-label propagation
    (an independent implementation), whatever the batches of patterns per graph."""
    net, obs, _, _ = nan_stack(seed=31)
    rng = np.random.default_rng(4)
    valid = rng.random((net.n_ifg, 70)) > 0.5
    valid[:, 0] = True
    valid[:, 1] = False
    ref = _components_by_propagation(net, valid)
    assert np.array_equal(net.components(valid), ref)
    monkeypatch.setattr(type(net), "GRAPH_PATTERNS", 3)
    assert np.array_equal(net.components(valid), ref)
    assert (ref == np.arange(net.n_dates)[:, None]).sum(0).max() > 1
    assert (ref[:, 0] == 0).all() and np.array_equal(ref[:, 1], np.arange(net.n_dates))


@pytest.mark.parametrize("gap", ["min_norm", "nsbas"])
def test_fallback_min_norm_equals_pinv(gap):
    """The eigen-decomposition route of the per-pixel fallback equals numpy's SVD pinv, also on
    pixels whose own network is split (rank-deficient) and with weights."""
    dates = make_dates(12)
    pairs = short_baseline_pairs(dates, 36)
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    M = net.n_ifg
    rng = np.random.default_rng(5)
    n = 40
    obs = rng.normal(0, 5, (M, n))
    valid = rng.random((M, n)) > 0.3
    valid[net.i1 == 5] = False  # every pixel loses the pairs from date 5: split networks
    valid[net.i2 == 5] = False
    sqrtw = rng.uniform(0.2, 1.0, (M, n))
    got = sbas._fallback_solve(net, obs, valid, sqrtw, sbas.SolverOptions(gap_handling=gap))
    D = net.nsbas_design(DEFAULT_NSBAS_GAMMA) if gap == "nsbas" else net.B
    O = np.hstack([net.T, np.zeros((net.n_dates - 1, D.shape[1] - net.T.shape[1]))])
    for p in range(n):
        w = np.where(valid[:, p], sqrtw[:, p], 0.0)
        Dp = D.copy()
        Dp[:M] *= w[:, None]
        yp = np.zeros(D.shape[0])
        yp[:M] = np.where(valid[:, p], obs[:, p], 0.0) * w
        ref = O @ (np.linalg.pinv(Dp, rcond=sbas.DEFAULT_RCOND) @ yp)
        np.testing.assert_allclose(got[:, p], ref, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("weighting", ["none", "coherence"])
def test_ifg_stats_equal_residuals_of_used_observations(weighting):
    """Per-interferogram residual sums returned by the block solver equal y - A ts summed over
    the used observations (what the network table reports)."""
    net, obs, coh, _ = nan_stack(seed=3, split=True)
    M = net.n_ifg
    kw = {} if weighting == "none" else dict(coherence_block=coh, weighting=weighting)
    ts, q = sbas.sbas_invert_block(obs, net, ifg_stats=True, **kw)
    ts0, q0 = sbas.sbas_invert_block(obs, net, **kw)
    np.testing.assert_array_equal(ts, ts0)
    y = obs.reshape(M, -1) * net.sign[:, None]
    valid = np.isfinite(y)
    t = np.nan_to_num(ts.reshape(net.n_dates, -1))
    e = np.where(valid, y - (t[net.i2] - t[net.i1]), 0.0)
    np.testing.assert_array_equal(q["ifg_n"], valid.sum(axis=1))
    np.testing.assert_allclose(q["ifg_sum_e2"], (e**2).sum(axis=1), rtol=1e-9, atol=1e-9)


def _many_missing_stack(seed=41, rows=6, cols=10, dtype=np.float64):
    """A 40-date network (~180 pairs) whose partial pixels each miss 35-45 interferograms (orders of ``I - H_SS``
    that LAPACK factors one at a time): unique patterns, one pattern shared by a column of pixels (split by row
    blocks), and one that loses rank (every pair of one date missing: a gap in the pixel's own network)."""
    rng = np.random.default_rng(seed)
    dates = make_dates(40)
    pairs = short_baseline_pairs(dates, 60)
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    M, P = net.n_ifg, rows * cols
    truth = truth_ts(net.tyears, rows, cols, seed)
    obs = ifgs_from_ts(net, truth) + rng.normal(0, 2.0, (M, rows, cols))
    o = obs.reshape(M, P)
    for p in range(0, P, 2):
        o[rng.choice(M, rng.integers(35, 46), replace=False), p] = np.nan
    shared = rng.choice(M, 38, replace=False)
    o[np.ix_(shared, np.arange(3, P, cols))] = np.nan  # column 3 of every row: one pattern
    lost = (net.i1 == 20) | (net.i2 == 20)
    extra = rng.choice(np.flatnonzero(~lost), 36 - int(lost.sum()), replace=False)
    o[lost, 5] = np.nan
    o[extra, 5] = np.nan
    return net, obs.astype(dtype), truth


def test_partial_pixels_missing_many_interferograms_equal_per_pixel_lstsq(monkeypatch):
    """Partial pixels whose ``I - H_SS`` is factored by LAPACK one pattern at a time (orders 35-45): the time series
    equal per-pixel least squares on the valid rows (the pixel with a gap: min-norm, as lstsq); the vectorised
    factorisation across patterns gives the same values to rounding; float64 results do not depend on the row
    blocks (a shared pattern split across them)."""
    net, obs, _ = _many_missing_stack()
    M = net.n_ifg
    y = obs.reshape(M, -1)
    valid = np.isfinite(y)
    assert 35 <= (~valid[:, 0]).sum() <= M // 2 and (~valid[:, 5]).sum() == 36
    calls = []
    real = sbas.cholesky_each
    monkeypatch.setattr(sbas, "cholesky_each", lambda *a: calls.append(a[0].shape) or real(*a))
    monkeypatch.setattr(sbas, "laplacian_min_missing", lambda network: 10**9)  # every pattern imputed
    ts, q = sbas.sbas_invert_block(obs, net)
    assert calls and min(c[1] for c in calls) >= 35  # the LAPACK route ran
    ref = lstsq_reference(net, y, valid)
    got = ts.reshape(net.n_dates, -1)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) < 1e-7
    assert q["n_gaps"].reshape(-1)[5] >= 1 and (q["n_gaps"].reshape(-1)[[0, 2, 3]] == 0).all()
    for split in ([0, 2, 6], [0, 1, 3, 4, 6]):
        parts = [sbas.sbas_invert_block(obs[:, r0:r1], net) for r0, r1 in zip(split[:-1], split[1:])]
        assert np.array_equal(ts, np.concatenate([p[0] for p in parts], axis=1), equal_nan=True)
    # the vectorised route (no LAPACK reachable), in float64 and float32
    ts32, _ = sbas.sbas_invert_block(obs.astype(np.float32), net, dtype=np.float32)
    monkeypatch.setattr(sbas, "cholesky_each", lambda *a: None)
    ts_vec, _ = sbas.sbas_invert_block(obs, net)
    assert np.nanmax(np.abs(ts_vec - ts)) < 1e-9
    ts32_vec, _ = sbas.sbas_invert_block(obs.astype(np.float32), net, dtype=np.float32)
    scale = np.nanmax(np.abs(ts))
    assert np.array_equal(np.isnan(ts32), np.isnan(ts))
    assert np.nanmax(np.abs(ts32 - ts)) < 1e-4 * scale and np.nanmax(np.abs(ts32 - ts32_vec)) < 1e-4 * scale


@pytest.mark.parametrize("stack", ["nan_stack", "many_missing"])
def test_partial_pixels_by_their_own_laplacian_equal_the_imputation_and_lstsq(monkeypatch, stack):
    """Partial pixels solved by the banded normal equations of their own network (unit weights) instead of the
    imputation: the same time series as per-pixel least squares and as the imputation (to rounding), the same
    gaps, residual RMS and temporal coherence; pixels whose own network is split go to the pseudo-inverse as
    before; float64 results do not depend on the row blocks."""
    net, obs, *_ = nan_stack(seed=13) if stack == "nan_stack" else _many_missing_stack()
    M = net.n_ifg
    y = obs.reshape(M, -1)
    valid = np.isfinite(y)
    ts_imp, q_imp = sbas.sbas_invert_block(obs, net)
    used = []
    real = sbas._weighted_laplacian_solve

    def counted(network, obs, valid, w, *a, **k):
        used.append(obs.shape[1])
        return real(network, obs, valid, w, *a, **k)

    monkeypatch.setattr(sbas, "_weighted_laplacian_solve", counted)
    monkeypatch.setattr(sbas, "laplacian_min_missing", lambda network: 1)
    ts, q = sbas.sbas_invert_block(obs, net)
    partial = valid.any(0) & ~valid.all(0)
    connected = partial & (q["n_gaps"].reshape(-1) == 0)
    assert sum(used) == connected.sum() > 0
    ref = lstsq_reference(net, y, valid)
    got = ts.reshape(net.n_dates, -1)
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.nanmax(np.abs(got - ref)) < 1e-7
    assert np.nanmax(np.abs(ts - ts_imp)) < 1e-8
    for k in ("n_gaps", "n_ifg_used", "kept_first_date"):
        assert np.array_equal(q[k], q_imp[k])
    for k in ("residual_rms", "temporal_coherence"):
        assert np.array_equal(np.isnan(q[k]), np.isnan(q_imp[k])) and np.nanmax(np.abs(q[k] - q_imp[k])) < 1e-8
    rows = obs.shape[1]
    parts = [sbas.sbas_invert_block(obs[:, r0:r1], net) for r0, r1 in ((0, 1), (1, rows // 2), (rows // 2, rows))]
    assert np.array_equal(ts, np.concatenate([p[0] for p in parts], axis=1), equal_nan=True)
    # float32 stacks: float64 normal equations, float32 time series
    ts32, _ = sbas.sbas_invert_block(obs.astype(np.float32), net, dtype=np.float32)
    assert ts32.dtype == np.float32 and np.nanmax(np.abs(ts32 - ts)) < 1e-4 * np.nanmax(np.abs(ts))


def test_laplacian_threshold_grows_with_the_network_and_stays_below_half_the_rows():
    small = SbasNetwork(*zip(*short_baseline_pairs(make_dates(14), 48)))
    dates = make_dates(150)
    frame = SbasNetwork(*zip(*short_baseline_pairs(dates, 48)))
    assert sbas.laplacian_min_missing(small) <= small.n_ifg // 2 + 1
    assert sbas.laplacian_min_missing(small) < sbas.laplacian_min_missing(frame) < frame.n_ifg // 2


@pytest.mark.parametrize("stack", ["nan_stack", "many_missing"])
def test_imputation_in_batches_of_patterns_is_the_same_bit_for_bit(monkeypatch, stack):
    """The patterns are imputed in batches of bounded memory (one pattern per batch here): the same values as
    all of an order at once, through the vectorised factorisation (nan_stack) and LAPACK (many_missing)."""
    net, obs, *_ = nan_stack(seed=17) if stack == "nan_stack" else _many_missing_stack(seed=43)
    monkeypatch.setattr(sbas, "laplacian_min_missing", lambda network: 10**9)
    ts, q = sbas.sbas_invert_block(obs, net)
    batches = []
    real = sbas._pattern_batches

    def one_each(s_count, M, batch_bytes=None):
        for s, us in real(s_count, M, batch_bytes=1):
            batches.append(us.size)
            yield s, us

    monkeypatch.setattr(sbas, "_pattern_batches", one_each)
    ts1, q1 = sbas.sbas_invert_block(obs, net)
    assert len(batches) > 5 and max(batches) == 1
    assert np.array_equal(ts, ts1, equal_nan=True)
    for k in q:
        assert np.array_equal(q[k], q1[k], equal_nan=True)


@pytest.mark.parametrize("weighted", [False, True])
def test_split_pixel_networks_by_parts_equal_the_pseudo_inverse(weighted):
    """Pixels whose own network falls apart (2 to many parts, isolated dates, the first date alone): the banded
    solve with each part's first date held and the parts' constants fitted give the minimum-norm least squares
    of the pseudo-inverse (``_fallback_solve``), weighted or not."""
    rng = np.random.default_rng(29)
    dates = make_dates(30)
    pairs = short_baseline_pairs(dates, 48)
    net = SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])
    M, n = net.n_ifg, 300
    y = rng.normal(0, 5, (M, n))
    valid = rng.random((M, n)) > rng.uniform(0.3, 0.85, n)[None, :]
    valid[net.i1 == 0, :50] = False  # the first date alone
    valid[:, 299] = True  # one connected pixel among them
    w = rng.uniform(0.2, 1.0, (M, n)) if weighted else None
    gaps, labels = sbas._pattern_gaps(net, valid)
    assert (gaps > 3).any() and (gaps[:50] >= 1).all() and gaps[299] == 0
    got, ok = sbas._component_laplacian_solve(net, y, valid, w, labels, chunk=64)
    opts = sbas.SolverOptions()
    want = sbas._fallback_solve(net, y, valid, None if w is None else np.sqrt(w), opts)
    assert ok.all()
    assert np.max(np.abs(got - want)) < 1e-8 * max(1.0, np.max(np.abs(want)))
