"""Discretization: exact natural breaks against brute force, other methods by definition."""

from itertools import combinations

import numpy as np
import pytest

from subsidence_toolkit.core.stats import breaks as B


def brute_force_ssw(x, k):
    """Minimal within-class SS over all contiguous partitions of sorted unique values."""
    xs = np.sort(x)
    vals = np.unique(xs)
    best = np.inf
    best_cut = None
    for cuts in combinations(range(1, vals.size), k - 1):
        edges = (0,) + cuts + (vals.size,)
        ssw = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            part = xs[(xs >= vals[a]) & (xs <= vals[b - 1])]
            ssw += np.sum((part - part.mean()) ** 2)
        if ssw < best - 1e-12:
            best, best_cut = ssw, cuts
    return best, best_cut


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_natural_breaks_equal_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    x = np.round(rng.lognormal(size=14), 1)  # ties -> weighted unique values
    opt, _ = brute_force_ssw(x, k)
    b = B.natural_breaks(x, k)
    assert b.size == k - 1
    assert B.ssw_of_breaks(x, b) == pytest.approx(opt, rel=1e-12, abs=1e-12)


def test_natural_breaks_weighted_ssw_and_bounds():
    rng = np.random.default_rng(7)
    vals = np.sort(rng.normal(size=11))
    w = rng.integers(1, 5, size=11)
    x = np.repeat(vals, w)
    bounds, ssw = B.natural_breaks_weighted(vals, w, 3)
    opt, cuts = brute_force_ssw(x, 3)
    assert ssw == pytest.approx(opt, rel=1e-10)
    assert tuple(bounds) == cuts


def test_natural_breaks_separated_clusters_and_multi():
    x = np.concatenate([np.full(5, 1.0), np.full(7, 10.0), np.full(3, 100.0), [101.0]])
    assert list(B.natural_breaks(x, 3)) == [1.0, 10.0]
    multi = B.natural_breaks_multi(x, [2, 3, 4])
    for k in (2, 3, 4):
        np.testing.assert_array_equal(multi[k], B.natural_breaks(x, k))
    # more classes than distinct values: every value its own class
    assert list(B.natural_breaks([1, 2, 2, 3], 10)) == [1, 2]


def test_natural_breaks_medium_vs_dense_dp():
    """D&C result equals a plain O(k n^2) Fisher DP written here."""
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, size=300)
    k = 6
    ref = _dense_dp_all_k(np.sort(x), np.ones(x.size), k)
    assert B.ssw_of_breaks(x, B.natural_breaks(x, k)) == pytest.approx(ref[k - 1], rel=1e-9)


def _dense_dp_all_k(vals, w, kmax):
    """Plain O(k n^2) weighted Fisher DP: D_j(n) for j = 1..kmax (no monotonicity used)."""
    n = vals.size
    cw = np.concatenate(([0.0], np.cumsum(w)))
    c1 = np.concatenate(([0.0], np.cumsum(w * vals)))
    c2 = np.concatenate(([0.0], np.cumsum(w * vals * vals)))

    def cost(a, b):
        s, ww = c1[b] - c1[a], cw[b] - cw[a]
        return c2[b] - c2[a] - s * s / ww

    D = np.array([cost(0, b) if b else 0.0 for b in range(n + 1)])
    out = [D[n]]
    for j in range(2, kmax + 1):
        Dn = np.full(n + 1, np.inf)
        for b in range(j, n + 1):
            a = np.arange(j - 1, b)
            Dn[b] = np.min(D[a] + cost(a, b))
        D = Dn
        out.append(D[n])
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threads", [1, 3])
def test_natural_breaks_chunked_threaded_equal_dense_dp(seed, threads, monkeypatch):
    """Tiny chunks and a low thread threshold force every code path of the level evaluation
    (many chunks per level, rows that own no candidate, shared end points, gaps, threads);
    the optimal SSW of every k equals the dense DP and the breaks do not depend on threads."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.lognormal(size=120), rng.normal(30, 1, size=40), [500.0, 900.0]])
    x = np.round(x, 1)  # ties -> unequal weights
    vals, w = np.unique(x, return_counts=True)
    ref = _dense_dp_all_k(vals, w.astype(float), 9)
    monkeypatch.setattr(B, "_CHUNK", 5)
    monkeypatch.setattr(B, "_THREAD_MIN", 8)
    opts, totals = B._fisher_dp(vals, w.astype(float), 9, all_k=True, threads=threads)
    np.testing.assert_allclose(totals, ref, rtol=1e-9, atol=1e-9)
    opts1, _ = B._fisher_dp(vals, w.astype(float), 9, all_k=True, threads=1)
    for k in range(2, 10):
        bounds = B._backtrack(opts, vals.size, k)
        assert B.ssw_of_breaks(x, vals[bounds - 1]) == pytest.approx(ref[k - 1], rel=1e-9, abs=1e-9)
        np.testing.assert_array_equal(bounds, B._backtrack(opts1, vals.size, k))
    # the single-k run (only the rows the last layer needs) agrees too
    b9, ssw9 = B.natural_breaks_weighted(vals, w, 9)
    assert ssw9 == pytest.approx(ref[8], rel=1e-9, abs=1e-9)


def test_quantile_equal_geometric_sd_manual():
    x = np.arange(1, 101, dtype=float)
    np.testing.assert_allclose(B.quantile_breaks(x, 4), np.quantile(x, [0.25, 0.5, 0.75]))
    np.testing.assert_allclose(B.equal_breaks(x, 4), [25.75, 50.5, 75.25])
    g = B.geometric_breaks(x, 2)
    np.testing.assert_allclose(g, [10.0])  # sqrt(1*100)
    assert np.all(np.diff(np.log(np.concatenate(([1.0], B.geometric_breaks(x, 4), [100.0])))) > 0)
    sd = B.sd_breaks(x, 4)
    np.testing.assert_allclose(sd, x.mean() + np.array([-1.0, 0.0, 1.0]) * x.std(ddof=1))
    np.testing.assert_array_equal(B.manual_breaks(x, [50, 10, 50]), [10.0, 50.0])
    # data with negatives: geometric breaks still increasing and inside the range
    gn = B.geometric_breaks(np.linspace(-5, 5, 50), 5)
    assert np.all(np.diff(gn) > 0) and gn.min() > -5 and gn.max() < 5


def test_classify_right_closed_compacts_and_nan():
    x = np.array([0.0, 1.0, 1.5, 3.0, np.nan, 10.0])
    codes, used = B.classify(x, [1.0, 2.0, 5.0])
    # classes: (-inf,1] (1,2] (2,5] (5,inf) -> all used
    np.testing.assert_array_equal(codes, [0, 0, 1, 2, -1, 3])
    codes, used = B.classify(np.array([0.0, 10.0]), [1.0, 2.0, 5.0])
    np.testing.assert_array_equal(codes, [0, 1])
    np.testing.assert_array_equal(used, [0, 3])


def test_categorical_detection_and_codes():
    assert B.is_categorical(np.array(["a", "b"]))
    assert B.is_categorical(np.array([1, 2, 3, 1]))
    assert B.is_categorical(np.array([1.0, 2.0, np.nan]))
    assert not B.is_categorical(np.array([0.5, 1.2]))
    assert not B.is_categorical(np.arange(1000))
    codes, labels = B.encode_categories(np.array(["b", "a", "", None, "b"], dtype=object))
    np.testing.assert_array_equal(codes, [1, 0, -1, -1, 1])
    assert list(labels) == ["a", "b"]


def test_bad_inputs():
    with pytest.raises(ValueError):
        B.natural_breaks([np.nan, np.nan], 3)
    with pytest.raises(ValueError):
        B.compute_breaks([1.0, 2.0], "bogus", 3)
    with pytest.raises(ValueError):
        B.compute_breaks([1.0, 2.0], "manual", 3)
    with pytest.raises(ValueError):
        B.natural_breaks([1.0, 2.0], 0)
