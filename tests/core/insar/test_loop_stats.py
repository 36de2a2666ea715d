"""Loop statistics and per-pixel loop count computed from the three rows in chunks (core/insar/loop_closure.py
``window_stats``, ``accumulate``, ``count_loop_errors``) against independent references: the loop phase of the
sparse loop matrix binned loop by loop in float64 (the same statistics exactly, the sums to float64 rounding),
LiCSBAS-style median / RMS of the exact float64 loop phase (to the histogram's half bin), and the same results
for any number of threads and any chunk size."""

import datetime as dt
import math

import numpy as np
import pytest

from subsidence_toolkit.core.insar import loop_closure as lc
from subsidence_toolkit.core.insar.network import SbasNetwork

TWO_PI = 2 * math.pi
HALF = lc.MAX_CYCLES * lc.BINS_PER_CYCLE


def make_net(n=16, max_days=48, reverse=(1, 6, 11)):
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=12 * k) for k in range(n)]
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]
    pairs = [(b, a) if k in reverse else (a, b) for k, (a, b) in enumerate(pairs)]
    return SbasNetwork([a for a, _ in pairs], [b for _, b in pairs])


def phase_stack(net, pixels=3000, seed=0, dtype=np.float32):
    """Files' values (sign folded in) with noise, NaN, an inf, whole-cycle errors and values beyond 16 cycles."""
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.normal(0, 1.0, (net.n_dates, pixels)), axis=0)
    obs = (ts[net.i2] - ts[net.i1]) * net.sign[:, None] + rng.normal(0, 0.7, (net.n_ifg, pixels))
    obs[rng.random(obs.shape) < 0.04] = np.nan
    obs[3, : pixels // 3] += TWO_PI  # an unwrapping error over a third of the image
    obs[8] += 2 * TWO_PI  # two cycles everywhere
    obs[12, ::37] += 20 * TWO_PI  # beyond the histogram's +-16 cycles: clipped
    obs[5, 17] = np.inf
    return obs.astype(dtype)


def reference_stats(ln, y, rad_per_unit):
    """The sparse product's loop phase, statistics loop by loop (float64 values of the finite ones, bins
    clip(rint(x 32 / 2 pi)) counted with bincount)."""
    lp = ln.loop_phase(y) * y.dtype.type(rad_per_unit)
    out = lc.empty_stats(ln.n_loops)
    for k, x in enumerate(lp):
        x = x[np.isfinite(x)].astype(np.float64)
        out["count"][k] = x.size
        out["sum"][k] = x.sum()
        out["sumsq"][k] = (x * x).sum()
        b = np.clip(np.rint(x * (lc.BINS_PER_CYCLE / TWO_PI)), -HALF, HALF).astype(np.int64) + HALF
        out["hist"][k] = np.bincount(b, minlength=lc.N_BINS)
    return out, lp


def assert_same_stats(got, ref):
    assert np.array_equal(got["count"], ref["count"])
    assert np.array_equal(got["hist"], ref["hist"])
    # float64 sums of the same float32 values in another order
    assert np.allclose(got["sum"], ref["sum"], rtol=1e-12, atol=1e-9)
    assert np.allclose(got["sumsq"], ref["sumsq"], rtol=1e-12, atol=1e-9)


@pytest.fixture(params=["default", "small", "small-even"])
def chunks(request, monkeypatch):
    """The default chunks, and tiny ones (many blocks of one or two loops, pixel tails; an odd number of pixels
    per chunk has its values counted one by one, an even number of a narrow chunk in pairs) for the same
    results."""
    if request.param == "small":
        monkeypatch.setattr(lc, "CHUNK_ELEMENTS", 96)
        monkeypatch.setattr(lc, "CHUNK_PIXELS", 61)
    elif request.param == "small-even":
        monkeypatch.setattr(lc, "CHUNK_ELEMENTS", 128)
        monkeypatch.setattr(lc, "CHUNK_PIXELS", 64)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_stats_equal_the_sparse_product_binned_loop_by_loop(chunks, dtype):
    net = make_net()
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    y = phase_stack(net, dtype=dtype)
    ref, lp = reference_stats(ln, y, 0.8)
    got = lc.window_stats(ln, y, 0.8)
    assert_same_stats(got, ref)
    assert got["count"].sum() < ln.n_loops * y.shape[1]  # NaN and inf left out
    assert ref["hist"][:, [0, -1]].sum() > 0  # values clipped at both ends
    # accumulate of the loop phase (the API the tests and the unwrapping correction use): the same
    assert_same_stats(lc.accumulate(lc.empty_stats(ln.n_loops), lp), ref)
    # streamed over windows: the same statistics
    parts = lc.empty_stats(ln.n_loops)
    for a in range(0, y.shape[1], 700):
        lc.window_stats(ln, y[:, a : a + 700], 0.8, stats=parts)
    assert_same_stats(parts, ref)


def test_thread_count_does_not_change_the_statistics(chunks):
    net = make_net(n=20)
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    y = phase_stack(net, pixels=2500, seed=3).reshape(net.n_ifg, 50, 50)
    one = lc.window_stats(ln, y, 1.3, threads=1)
    for threads in (2, 3, 7):
        other = lc.window_stats(ln, y, 1.3, threads=threads)
        for key in one:
            assert np.array_equal(one[key], other[key]), (threads, key)


def test_ties_round_half_to_even_as_rint():
    """Values whose bin position x 32 / 2 pi is exactly k + 1/2 (odd and even k, both signs, several loops per
    chunk): the rounding by addition gives rint's bins."""
    k = np.arange(-40, 41)
    x = (k + 0.5) / (lc.BINS_PER_CYCLE / TWO_PI)
    exact = x * (lc.BINS_PER_CYCLE / TWO_PI) == k + 0.5
    x = x[exact]
    assert x.size > 40
    rows = np.stack([x, -x, x[::-1], np.roll(x, 5)])
    got = lc.accumulate(lc.empty_stats(4), rows)
    for r in range(4):
        b = np.rint(rows[r] * (lc.BINS_PER_CYCLE / TWO_PI)).astype(np.int64) + HALF
        assert np.array_equal(got["hist"][r], np.bincount(b, minlength=lc.N_BINS))


def test_median_and_rms_match_licsbas_on_the_exact_loop_phase():
    """Independent of the implementation: LiCSBAS step 12 on the float64 loop phase (signed files summed
    directly): the histogram's median is the lower middle value to half a bin (pi / 32), the integer cycles
    are nanmedian's and the loop RMS and verdicts agree."""
    net = make_net()
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    y = phase_stack(net, seed=5)
    y[12] = np.where(np.abs(y[12]) > 50, np.nan, y[12])  # no clipped values here: exact medians
    y[5, 17] = 0.0
    stats = lc.window_stats(ln, y, 1.0, threads=2)
    signed = y.astype(np.float64) * net.sign[:, None]
    exact = np.stack([signed[a] + signed[b] - signed[c] for a, b, c in ln.loops])
    med = lc.median_phase(stats)
    for k, x in enumerate(exact):
        x = np.sort(x[np.isfinite(x)])
        assert abs(med[k] - x[(x.size - 1) // 2]) <= math.pi / lc.BINS_PER_CYCLE + 1e-5
    cycles = np.round(np.nanmedian(exact, axis=1) / TWO_PI)
    assert np.array_equal(lc.median_cycles(stats), cycles.astype(np.int64))
    resid = exact - TWO_PI * cycles[:, None]
    licsbas_rms = np.sqrt(np.nanmean(resid**2, axis=1))
    assert np.allclose(lc.loop_rms(stats), licsbas_rms, rtol=1e-5)
    wrapped = np.angle(np.exp(1j * exact))
    assert np.allclose(lc.wrapped_loop_rms(stats), np.sqrt(np.nanmean(wrapped**2, axis=1)), atol=0.03)
    v = lc.classify(ln, lc.loop_rms(stats))
    v_ref = lc.classify(ln, licsbas_rms)
    assert np.array_equal(v["bad"], v_ref["bad"]) and v["bad"].any() and not v["bad"].all()


@pytest.mark.parametrize("rad_per_unit", [1.0, 0.37])
def test_count_loop_errors_equal_the_sparse_product(chunks, rad_per_unit):
    net = make_net()
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    y = phase_stack(net, pixels=1800, seed=7).reshape(net.n_ifg, 30, 60) / np.float32(rad_per_unit)
    stats = lc.window_stats(ln, y, rad_per_unit)
    cycles = lc.median_cycles(stats)
    keep = np.ones(net.n_ifg, bool)
    keep[3] = False
    loops = ln.subset(keep)
    got = lc.count_loop_errors(ln, y, loops, cycles, rad_per_unit=rad_per_unit)
    # reference: the product's loop phase in the files' float32, the same operations per loop
    lp = ln.loop_phase(y.reshape(net.n_ifg, -1), loops)
    if rad_per_unit != 1.0:
        lp = lp * np.float32(rad_per_unit)
    lp = lp - (TWO_PI * cycles[loops]).astype(np.float32)[:, None]
    with np.errstate(invalid="ignore"):
        ref = (np.abs(lp) > math.pi).sum(axis=0).reshape(30, 60)
    assert np.array_equal(got, ref)
    assert 0 < got.sum() < len(loops) * 1800
    # without loops given, every loop; without cycles, none removed
    lp_all = ln.loop_phase(y.reshape(net.n_ifg, -1)) * np.float32(rad_per_unit)
    with np.errstate(invalid="ignore"):
        ref_all = (np.abs(lp_all) > math.pi).sum(axis=0).reshape(30, 60)
    assert np.array_equal(lc.count_loop_errors(ln, y, rad_per_unit=rad_per_unit), ref_all)
    assert lc.count_loop_errors(ln, y, np.zeros(0, dtype=np.intp)).sum() == 0


def test_terms_reproduce_the_loop_matrix():
    net = make_net()
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    cols, first, same = ln.terms()
    dense = ln.dense()
    for k in range(ln.n_loops):
        coef = np.array([first[k], first[k] * (1 if same[k, 0] else -1), first[k] * (1 if same[k, 1] else -1)])
        row = np.zeros(net.n_ifg)
        row[cols[k]] = coef
        assert np.array_equal(row, dense[k])
    # blocks: consecutive loops of one pattern, every loop once, in order
    loops = np.arange(ln.n_loops)[::-2]
    blocks = ln.blocks(loops, 5)
    assert np.array_equal(np.concatenate([np.arange(a, b) for a, b, _, _ in blocks]), np.arange(loops.size))
    for a, b, s2, s3 in blocks:
        assert 0 < b - a <= 5 and np.all(same[loops[a:b], 0] == s2) and np.all(same[loops[a:b], 1] == s3)


def test_scan_pass_gives_a_window_the_threads_its_plan_leaves_idle():
    from types import SimpleNamespace

    from subsidence_toolkit.core.insar.sbas_stack import _loop_threads

    local, dask = SimpleNamespace(run_tasks=None), SimpleNamespace(run_tasks=lambda *a: None)
    four = SimpleNamespace(threads=4)
    assert _loop_threads(four, {"threads": 4}, local) == 1  # four windows at a time
    assert _loop_threads(four, {"threads": 2}, local) == 2
    assert _loop_threads(four, {"threads": 1, "threads_in_window": 4}, local) == 4
    assert _loop_threads(SimpleNamespace(threads=1), {"threads": 1}, local) == 1
    assert _loop_threads(four, {"threads": 1}, dask) == 1


def test_rows_entirely_beyond_the_histogram_are_clipped_to_its_ends():
    x = np.array([np.full(50, 40 * TWO_PI), np.full(50, -40 * TWO_PI), np.linspace(-200, 200, 50)])
    got = lc.accumulate(lc.empty_stats(3), x)
    assert got["hist"][0, -1] == 50 and got["hist"][1, 0] == 50 and got["hist"].sum() == 150
    assert np.array_equal(got["hist"][2], reference_stats_of(x[2]))
    assert np.allclose(got["sum"], x.sum(axis=1), rtol=1e-12, atol=1e-9)


def reference_stats_of(x):
    b = np.clip(np.rint(x * (lc.BINS_PER_CYCLE / TWO_PI)), -HALF, HALF).astype(np.int64) + HALF
    return np.bincount(b, minlength=lc.N_BINS)
