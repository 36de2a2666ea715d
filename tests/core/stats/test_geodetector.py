"""Geodetector detectors against analytic cases, independent code and scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic import write_band

from subsidence_toolkit.core.stats import geodetector as G
from subsidence_toolkit.core.stats.geodetector import FactorCoding


def cat(name, codes):
    codes = np.asarray(codes)
    return FactorCoding(name, codes, [str(i) for i in range(int(codes.max()) + 1)], "categorical")


def q_reference(y, x):
    """Eq. 11 of Huang et al. 2025 written with pandas: 1 - sum N_h sigma_h^2 / (N sigma^2)."""
    df = pd.DataFrame({"y": y, "x": x})
    g = df.groupby("x")["y"]
    return 1 - (g.count() * g.var(ddof=0)).sum() / (len(y) * np.var(y))


def test_q_is_one_for_determining_factor():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 500)
    y = np.array([3.0, -1.0, 7.5, 0.2, 11.0, 4.4])[x]
    res = G.factor_detector(y, [cat("x", x)])
    assert res.q[0] == pytest.approx(1.0, abs=1e-12)
    assert res.p_wang[0] == 0.0 and res.p_anova[0] == 0.0


def test_q_of_unrelated_factor_matches_chance_expectation():
    rng = np.random.default_rng(1)
    N, L = 120, 6
    qs = []
    for _ in range(300):
        x = rng.integers(0, L, N)
        y = rng.normal(size=N)
        qs.append(G.q_statistic(y, x))
    res = G.factor_detector(y, [cat("x", x)])
    assert res.q_null[0] == pytest.approx((res.strata[0] - 1) / (N - 1))
    assert np.mean(qs) == pytest.approx((L - 1) / (N - 1), rel=0.1)


def test_q_and_p_values_against_independent_formulas():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 5, 300)
    y = x * 0.4 + rng.normal(size=300)
    res = G.factor_detector(y, [cat("x", x)]).iloc[0]
    assert res.q == pytest.approx(q_reference(y, x), rel=1e-12)
    N, L = 300, 5
    F = (N - L) / (L - 1) * res.q / (1 - res.q)
    groups = [y[x == h] for h in range(L)]
    assert res.p_anova == pytest.approx(stats.f_oneway(*groups).pvalue, rel=1e-9)
    means = np.array([g.mean() for g in groups])
    nh = np.array([g.size for g in groups])
    lam = (np.sum(means**2) - np.sum(np.sqrt(nh) * means) ** 2 / N) / np.var(y, ddof=1)
    assert res["lambda"] == pytest.approx(lam, rel=1e-10)
    assert res.p_wang == pytest.approx(stats.ncf.sf(F, L - 1, N - L, lam), rel=1e-9)
    assert res.q_adj == pytest.approx(1 - (1 - res.q) * (N - 1) / (N - L))
    # GD / PyPI convention: lambda with the population variance
    res0 = G.factor_detector(y, [cat("x", x)], lambda_ddof=0).iloc[0]
    assert res0["lambda"] == pytest.approx(lam * N / (N - 1), rel=1e-10)


def test_nan_rows_dropped_per_factor_not_a_stratum():
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=200)
    x2 = rng.integers(0, 3, 200).astype(float)
    x2[:30] = np.nan
    y = x1 + np.nan_to_num(x2) + rng.normal(size=200)
    y[5] = np.nan
    r = G.run_geodetector(y, {"x1": x1, "x2": x2}, default_k=4, messages=[])
    f = r["factor"].set_index("factor")
    assert f.loc["x1", "n"] == 199 and f.loc["x2", "n"] == 170
    assert f.loc["x2", "strata"] == 3
    ok = ~np.isnan(x2) & ~np.isnan(y)
    assert f.loc["x2", "q"] == pytest.approx(q_reference(y[ok], x2[ok]), rel=1e-12)
    assert r["interaction"].n[0] == 170


def test_interaction_types_from_constructed_cases():
    # 2 x 2 balanced design, 5 rows per cell
    a = np.repeat([0, 0, 1, 1], 5)
    b = np.repeat([0, 1, 0, 1], 5)
    A, Bf = cat("a", a), cat("b", b)
    # y = a + b exactly: q_a = q_b = 0.5, q_ab = 1 = q_a + q_b
    r = G.interaction_detector((a + b).astype(float), [A, Bf], convention="tolerance").iloc[0]
    assert (r.q_a, r.q_b, r.q_ab) == pytest.approx((0.5, 0.5, 1.0))
    assert r.type == "Independent"
    # R geodetector 1.0-5 labels the same case "Enhance, bi-" (Independent unreachable)
    assert G.interaction_detector((a + b).astype(float), [A, Bf]).type[0] == "Enhance, bi-"
    # XOR: no main effects, q_ab = 1
    r = G.interaction_detector((a ^ b).astype(float), [A, Bf]).iloc[0]
    assert r.q_a == pytest.approx(0) and r.q_b == pytest.approx(0) and r.q_ab == pytest.approx(1)
    assert r.type == "Enhance, nonlinear"
    # bi-variable enhance (found case; checked against the q's computed here)
    a = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    b = np.array([1, 2, 1, 1, 2, 2, 1, 1, 1, 2])
    y = np.array([1.0, 4, 3, 0, 1, 4, 2, 0, 3, 3])
    r = G.interaction_detector(y, [cat("a", a), cat("b", b)]).iloc[0]
    qa, qb, qab = q_reference(y, a), q_reference(y, b), q_reference(y, a * 10 + b)
    assert (r.q_a, r.q_b, r.q_ab) == pytest.approx((qa, qb, qab))
    assert max(qa, qb) < qab < qa + qb and r.type == "Enhance, bi-"
    # weakening needs rows to differ between q_ab and q_a/q_b: singletons dropped (GD convention)
    a = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 0])
    b = np.array([2, 2, 1, 1, 1, 1, 0, 2, 0, 1])
    y = np.array([1.0, 3, 3, 3, 4, 4, 0, 0, 0, 3])
    r = G.interaction_detector(y, [cat("a", a), cat("b", b)], singletons="drop", messages=[]).iloc[0]
    assert min(r.q_a, r.q_b) < r.q_ab < max(r.q_a, r.q_b) and r.type == "Weaken, uni-"
    a = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0, 0])
    b = np.array([1, 0, 0, 0, 0, 2, 1, 1, 0, 1])
    y = np.array([3.0, 1, 2, 4, 4, 4, 1, 3, 4, 3])
    r = G.interaction_detector(y, [cat("a", a), cat("b", b)], singletons="drop", messages=[]).iloc[0]
    assert r.q_ab < min(r.q_a, r.q_b) and r.type == "Weaken, nonlinear"


def test_interaction_type_rule_boundaries():
    T = G.INTERACTION_TYPES
    assert G.interaction_type(0.3, 0.5, 0.2) == T[0]
    assert G.interaction_type(0.3, 0.5, 0.3) == T[0]  # R: q12 <= both
    assert G.interaction_type(0.3, 0.5, 0.4) == T[1]
    assert G.interaction_type(0.3, 0.5, 0.5) == T[2]  # R: q12 >= max -> bi-
    assert G.interaction_type(0.3, 0.5, 0.8) == T[2]
    assert G.interaction_type(0.3, 0.5, 0.9) == T[4]
    assert G.interaction_type(0.3, 0.5, 0.8, convention="tolerance") == T[3]
    assert G.interaction_type(0.3, 0.5, 0.3, convention="tolerance") == T[1]
    with pytest.raises(ValueError):
        G.interaction_type(0.3, 0.5, 0.3, convention="bogus")


def test_integer_cell_keys_do_not_collide():
    # string keys "1"+"12" == "11"+"2" merge these cells; integer keys keep them apart
    x1 = np.array([1, 1, 1, 11, 11, 11, 0, 0, 19, 19] * 3)
    x2 = np.array([12, 12, 12, 2, 2, 2, 0, 0, 19, 19] * 3)
    y = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 5.2, 1, 1.1, 2, 2.1] * 3)
    f1, f2 = G.encode_factor(x1, "x1"), G.encode_factor(x2, "x2")
    r = G.interaction_detector(y, [f1, f2]).iloc[0]
    assert r.cells == 4
    assert r.q_ab == pytest.approx(q_reference(y, list(zip(x1, x2))), rel=1e-12)
    merged = np.array([str(a) + str(b) for a, b in zip(x1, x2)])
    assert r.q_ab > q_reference(y, merged) + 0.1


def test_permutation_p_separates_real_and_noise_partners():
    rng = np.random.default_rng(4)
    n = 400
    a = rng.integers(0, 2, n)
    b = rng.integers(0, 2, n)
    noise = rng.integers(0, 4, n)
    y = (a ^ b) + 0.3 * a + rng.normal(scale=0.3, size=n)
    r = G.interaction_detector(y, [cat("a", a), cat("b", b), cat("z", noise)], permutations=49, seed=1)
    p = r.set_index(["factor_a", "factor_b"]).p_enhance
    assert p[("a", "b")] <= 0.02
    assert p[("a", "z")] > 0.05


def test_risk_detector_matches_scipy_welch():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, 120)
    y = x * 0.5 + rng.normal(size=120) * (1 + x)
    strata, tests = G.risk_detector(y, [cat("x", x)])
    assert strata["mean"].to_numpy() == pytest.approx([y[x == h].mean() for h in range(4)])
    for _, row in tests.iterrows():
        ref = stats.ttest_ind(y[x == row.stratum_a], y[x == row.stratum_b], equal_var=False)
        assert row.t == pytest.approx(ref.statistic, rel=1e-10)
        assert row.p == pytest.approx(ref.pvalue, rel=1e-8)
        assert row.significant == (ref.pvalue < 0.05)
    # a stratum with one sample gets no test
    x2 = x.copy()
    x2[0] = 4
    _, t2 = G.risk_detector(y, [cat("x", x2)])
    assert t2[(t2.stratum_a == 4) | (t2.stratum_b == 4)].p.isna().all()


def test_ecological_detector_matches_scipy_f():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 3, 150)
    b = rng.integers(0, 5, 150)
    y = a + rng.normal(size=150)
    e = G.ecological_detector(y, [cat("a", a), cat("b", b)]).iloc[0]

    def ssw(x):
        return sum(((y[x == h] - y[x == h].mean()) ** 2).sum() for h in np.unique(x))

    F = ssw(a) / ssw(b)
    assert e.F == pytest.approx(F, rel=1e-12)
    p = 2 * min(stats.f.cdf(F, 149, 149), stats.f.sf(F, 149, 149))
    assert e.p == pytest.approx(p, rel=1e-9)
    assert e.significant == (p < 0.05) and e.stronger == ("a" if e.significant else "")


def test_optimal_discretization_picks_the_elbow():
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 4, 800)
    y = np.floor(x) * 3 + rng.normal(scale=0.05, size=800)  # 4 true levels
    m, k, curve = G.optimal_discretization(y, x, ["natural", "equal", "quantile"], range(2, 9))
    assert k == 4
    assert set(curve.method) == {"natural", "equal", "quantile"} and curve.chosen.sum() == 1
    assert curve[curve.k == 4].q.max() > 0.99


def test_sampling_by_threshold_and_ratio():
    y = np.concatenate([np.full(10, -30.0), np.linspace(-10, 5, 100), [np.nan]])
    idx = G.sample_by_threshold(y, -15, "1:2", seed=3)
    assert (y[idx] <= -15).sum() == 10 and (y[idx] > -15).sum() == 20
    np.testing.assert_array_equal(idx, G.sample_by_threshold(y, -15, "1:2", seed=3))
    assert (y[G.sample_by_threshold(y, -15, "1:0.5")] > -15).sum() == 5
    msgs = []
    assert G.sample_by_threshold(y, -15, 50, messages=msgs).size == 110 and msgs
    assert G.parse_ratio("1:1") == 1.0
    with pytest.raises(ValueError):
        G.sample_by_threshold(y, -100, "1:1")


def test_stratum_means_map():
    x = np.array([[0, 1], [1, np.nan]])
    y = np.array([[2.0, 4.0], [6.0, 1.0]])
    c = G.encode_factor(x.ravel(), "x")
    out = G.stratum_means(y.ravel(), c).reshape(2, 2)
    np.testing.assert_allclose(out, [[2.0, 5.0], [5.0, np.nan]])
    # sampled Y, map to every pixel through the same coding
    full = G.stratum_means(y.ravel(), c, values=np.array([1.0, 0.0, 7.0, np.nan]))
    np.testing.assert_allclose(full, [5.0, 2.0, np.nan, np.nan])
    xs = np.array([0.1, 0.5, 2.0, 9.0])
    cn = G.encode_factor(xs, "x", "manual", breaks=[1.0, 2.5, 5.0])  # class (2.5, 5] empty
    np.testing.assert_array_equal(cn.codes, [0, 0, 1, 2])
    np.testing.assert_array_equal(G.apply_coding(cn, [0.0, 2.2, 4.0, 10.0, np.nan]), [0, 1, -1, 2, -1])
    ct = G.encode_factor(np.array(["a", "b", "a"], dtype=object), "t")
    np.testing.assert_array_equal(G.apply_coding(ct, np.array(["b", "c", "a"], dtype=object)), [1, -1, 0])


def test_bad_inputs():
    x = np.repeat([0, 1, 2], 10)
    with pytest.raises(ValueError, match="constant"):
        G.factor_detector(np.ones(30), [cat("x", x)])
    with pytest.raises(ValueError, match="numeric"):
        G.factor_detector(np.array(["a", "b"] * 15, dtype=object), [cat("x", x)])
    msgs = []
    G.factor_detector(np.arange(30.0), [cat("one", np.zeros(30, int))], messages=msgs)
    assert any("single stratum" in m for m in msgs)
    with pytest.raises(ValueError, match="N/2"):
        G.factor_detector(np.arange(30.0), [cat("many", np.arange(30) // 1)])
    with pytest.raises(ValueError, match="at least 2"):
        G.interaction_detector(np.arange(30.0), [cat("x", x)])
    with pytest.raises(ValueError, match="at least 2"):
        G.ecological_detector(np.arange(30.0), [cat("x", x)])


def test_raster_alignment_and_no_overlap(tmp_path):
    from osgeo import gdal, osr

    def write(path, x0, y0, dx, arr, nodata=None):
        ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[1], arr.shape[0], 1, gdal.GDT_Float32)
        ds.SetGeoTransform((x0, dx, 0, y0, 0, -dx))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(4326)
        ds.SetProjection(srs.ExportToWkt())
        if nodata is not None:
            ds.GetRasterBand(1).SetNoDataValue(nodata)
        ds.GetRasterBand(1).WriteArray(arr)
        ds = None

    write(tmp_path / "t.tif", 0, 4, 1.0, np.arange(16, dtype=float).reshape(4, 4))
    fine = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 2, 0), 2, 1).astype(float)
    fine[0, 0] = -9999
    write(tmp_path / "f.tif", 0, 4, 0.5, fine, nodata=-9999)
    out = G.align_to_grid(tmp_path / "f.tif", tmp_path / "t.tif", categorical=True)
    assert out.shape == (4, 4)
    assert np.isnan(out[0, 0]) or out[0, 0] == 0
    np.testing.assert_array_equal(out[1:], np.arange(4, 16).reshape(3, 4))
    write(tmp_path / "far.tif", 100, 50, 1.0, np.ones((4, 4)))
    with pytest.raises(ValueError, match="does not overlap"):
        G.align_to_grid(tmp_path / "far.tif", tmp_path / "t.tif")


# ---------------------------------------------------------------- q confidence interval
def _planted(rng, q_true, nh, sigma=2.0):
    """Strata of fixed sizes ``nh`` whose population q (sigma_b^2/(sigma_b^2+sigma^2)) is ``q_true``."""
    N = nh.sum()
    codes = np.repeat(np.arange(nh.size), nh)
    mu0 = np.linspace(-1.0, 1.0, nh.size) ** 3 + np.arange(nh.size) % 2
    w = nh / N
    sb2 = np.sum(w * (mu0 - np.sum(w * mu0)) ** 2)
    mu = mu0 * np.sqrt(q_true / (1 - q_true) * sigma**2 / sb2)
    return codes, mu, sigma


@pytest.mark.parametrize("q_true", [0.1, 0.45])
def test_q_confidence_interval_coverage_on_planted_population_q(q_true):
    rng = np.random.default_rng(11)
    nh = np.array([15, 30, 45, 60, 25, 25])
    codes, mu, sigma = _planted(rng, q_true, nh)
    # the planted q is the population q: check it from the planted means
    w = nh / nh.sum()
    sb2 = np.sum(w * (mu - np.sum(w * mu)) ** 2)
    assert sb2 / (sb2 + sigma**2) == pytest.approx(q_true)
    sims, below, above = 200, 0, 0
    for _ in range(sims):
        y = mu[codes] + rng.normal(0, sigma, codes.size)
        r = G.factor_detector(y, [cat("x", codes)], ci_level=0.95).iloc[0]
        assert r.q_ci_low <= r.q_ci_high
        below += q_true < r.q_ci_low
        above += q_true > r.q_ci_high
    cover = 1 - (below + above) / sims
    # binomial tolerance for 200 draws at p = 0.95: central 99.9 % range
    lo, hi = stats.binom.ppf([0.0005, 0.9995], sims, 0.95) / sims
    assert lo <= cover <= hi
    # both tails are missed at about alpha/2 each (equal-tailed interval)
    assert below <= stats.binom.ppf(0.9995, sims, 0.025) and above <= stats.binom.ppf(0.9995, sims, 0.025)


def test_q_confidence_interval_inverts_the_noncentral_f():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 7, 400)
    y = 0.5 * np.sin(x) + rng.normal(size=400)
    r = G.factor_detector(y, [cat("x", x)], ci_level=0.9).iloc[0]
    N, L = 400, 7
    F = (N - L) / (L - 1) * r.q / (1 - r.q)
    lam_lo = r.q_ci_low * N / (1 - r.q_ci_low)
    lam_hi = r.q_ci_high * N / (1 - r.q_ci_high)
    # independent check with scipy: the observed F sits at the 95 % / 5 % quantiles
    assert stats.ncf.cdf(F, L - 1, N - L, lam_lo) == pytest.approx(0.95, abs=1e-8)
    assert stats.ncf.cdf(F, L - 1, N - L, lam_hi) == pytest.approx(0.05, abs=1e-8)
    assert r.q_ci_low < r.q < r.q_ci_high and r.ci_level == 0.9


def test_q_confidence_interval_edge_cases_and_monotone_level():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, 300)
    det = G.factor_detector(np.array([3.0, -1.0, 7.5, 0.2, 11.0])[x], [cat("x", x)]).iloc[0]
    assert det.q_ci_low == 1.0 and det.q_ci_high == 1.0  # q = 1
    # unrelated factor, observed F far below its null median: interval collapses to [0, 0]
    y = np.tile([0.0, 1.0, 2.0, 3.0], 48)
    z = np.repeat(np.arange(4), 48)  # each stratum holds 12 of each value: q = 0
    un = G.factor_detector(y, [cat("z", z)]).iloc[0]
    assert un.q == pytest.approx(0.0, abs=1e-12)
    assert un.q_ci_low == 0.0 and un.q_ci_high == 0.0
    # unrelated noise: the interval starts at 0 most of the time and contains q = 0
    noise = G.factor_detector(rng.normal(size=300), [cat("x", x)]).iloc[0]
    assert noise.q_ci_low == 0.0 and noise.q_ci_high > 0.0
    # nested intervals as the level grows
    y = 0.3 * x + rng.normal(size=300)
    prev = (np.inf, -np.inf)
    for level in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        lo, hi = G.q_confidence_interval(G.q_statistic(y, x), 300, 5, level)
        assert lo < prev[0] and hi > prev[1]
        prev = (lo, hi)
    assert np.isnan(G.q_confidence_interval(0.5, 10, 1)[0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        G.q_confidence_interval(0.5, 100, 4, 1.5)
    # huge N and q close to 1: no crash (scipy's ncf aborts the process at lambda ~ 4e9)
    lo, hi = G.q_confidence_interval(1 - 1e-9, 10_000_000, 20)
    assert lo < 1 - 1e-9 < hi < 1


# ---------------------------------------------------------------- Wang p of q(A∩B)
@pytest.mark.parametrize("ddof,singletons", [(1, "keep"), (0, "keep"), (1, "drop")])
def test_interaction_wang_p_matches_independent_formula_and_combined_factor(ddof, singletons):
    rng = np.random.default_rng(21)
    N = 400
    a = rng.integers(0, 4, N)
    b = rng.integers(0, 12, N)
    y = 0.4 * a + 0.3 * (b % 3) + 0.5 * (a == b % 4) + rng.normal(size=N) + 1.0  # offset: lambda is not shift invariant
    y[rng.random(N) < 0.05] = np.nan
    b_missing = b.copy()
    b_missing[:7] = -1  # missing B on a few rows: the pair uses the rows valid for Y, A and B
    ca = cat("a", a)
    cb = FactorCoding("b", b_missing, [str(i) for i in range(12)], "categorical")
    inter = G.interaction_detector(y, [ca, cb], lambda_ddof=ddof, singletons=singletons, messages=[]).iloc[0]
    # the factor detector on the pre-combined factor (a*12 + b; (1,12)/(11,2)-safe keys)
    combo = np.where(b_missing >= 0, a * 12 + b_missing, -1)
    uniq = np.unique(combo[combo >= 0])
    codes = np.where(combo >= 0, np.searchsorted(uniq, combo), -1)
    comb = FactorCoding("ab", codes, [str(u) for u in uniq], "categorical")
    fac = G.factor_detector(y, [comb], lambda_ddof=ddof, singletons=singletons, messages=[]).iloc[0]
    assert inter.q_ab == pytest.approx(fac.q, rel=1e-12)
    assert inter.cells == fac.strata
    assert inter.p_wang_ab == pytest.approx(fac.p_wang, rel=1e-9, abs=1e-15)
    assert inter.lambda_ab == pytest.approx(fac["lambda"], rel=1e-9)
    # independent: pandas groupby + scipy ncf (eqs. 5-6 of Wang, Zhang & Fu 2016)
    ok = np.isfinite(y) & (b_missing >= 0)
    df = pd.DataFrame({"y": y[ok], "k": combo[ok]})
    if singletons == "drop":
        df = df[df.groupby("k")["y"].transform("size") > 1]
    g = df.groupby("k")["y"]
    n_h, m_h = g.size().to_numpy(float), g.mean().to_numpy()
    n, L = len(df), len(n_h)
    q = 1 - (g.var(ddof=0) * g.size()).sum() / (n * df.y.var(ddof=0))
    lam = (np.sum(m_h**2) - np.sum(np.sqrt(n_h) * m_h) ** 2 / n) / df.y.var(ddof=ddof)
    F = (n - L) / (L - 1) * q / (1 - q)
    assert inter.q_ab == pytest.approx(q, rel=1e-10)
    assert inter.lambda_ab == pytest.approx(lam, rel=1e-8)
    assert inter.p_wang_ab == pytest.approx(stats.ncf.sf(F, L - 1, n - L, lam), rel=1e-7)
    assert 0 < inter.p_wang_ab < 1


# ---------------------------------------------------------------- block-wise raster mode
def _write_raster(path, gt, arr, epsg, nodata=None, dtype=None):
    from osgeo import gdal

    return write_band(path, gt, arr, epsg, nodata=nodata, dtype=dtype or gdal.GDT_Float32)


def raster_case(tmp_path, seed=0):
    """Target in UTM 50N; a categorical int16 factor on a finer UTM grid, a float factor in
    EPSG:4326 with NoData, a float64 factor on a coarser shifted UTM grid."""
    from osgeo import gdal

    rng = np.random.default_rng(seed)
    ny, nx = 23, 31
    x0, y0, dx = 500000.0, 4000000.0, 100.0
    zone = (np.arange(nx)[None, :] * 4 // nx).repeat(ny, 0)
    yv = np.array([-20.0, -8.0, 0.0, 3.0])[zone] + rng.normal(0, 2, (ny, nx))
    yv[0, :4] = -9999
    yv[5, 7] = -9999
    t = _write_raster(tmp_path / "y.tif", (x0, dx, 0, y0, 0, -dx), yv, 32650, nodata=-9999)
    fine = np.repeat(np.repeat(zone, 2, 0), 2, 1).astype(np.int16)
    fine[10:14, 20:26] = -1
    f1 = _write_raster(
        tmp_path / "zone.tif", (x0, dx / 2, 0, y0, 0, -dx / 2), fine, 32650, nodata=-1, dtype=gdal.GDT_Int16
    )
    # geographic grid covering the UTM target (lon ~117 E, lat ~36.1 N)
    lon0, lat0 = 116.99, 36.15
    geo = rng.normal(size=(40, 60)).cumsum(1)
    geo[:8, :8] = -9999
    f2 = _write_raster(tmp_path / "geo.tif", (lon0, 0.0006, 0, lat0, 0, -0.0006), geo, 4326, nodata=-9999)
    coarse = rng.uniform(0, 10, (10, 14))
    f3 = _write_raster(
        tmp_path / "coarse.tif", (x0 - 130.0, 250.0, 0, y0 + 70.0, 0, -250.0), coarse, 32650, dtype=gdal.GDT_Float64
    )
    return t, {"zone": (f1, True), "geo": (f2, False), "coarse": (f3, False)}, yv


def test_raster_samples_do_not_depend_on_the_block_height(tmp_path):
    from osgeo import gdal

    t, paths, yv = raster_case(tmp_path)
    tiny = G.read_raster_samples(t, paths, memory_mb=0.001)
    big = G.read_raster_samples(t, paths, memory_mb=512)
    blocks = []
    G.read_raster_samples(t, paths, memory_mb=0.001, progress=blocks.append)
    assert len(blocks) == yv.shape[0]  # one row per block at the tiny cap
    valid = yv != -9999
    assert tiny[0].dtype == np.float32 and tiny[0].size == valid.sum()
    np.testing.assert_array_equal(tiny[0], yv[valid].astype(np.float32))
    assert tiny[1]["zone"].dtype == np.float32 and tiny[1]["coarse"].dtype == np.float64
    for name in paths:
        np.testing.assert_array_equal(tiny[1][name], big[1][name])
        # whole-band reference: the same warp read at once
        whole = G.align_to_grid(paths[name][0], t, categorical=paths[name][1])
        np.testing.assert_array_equal(tiny[1][name], whole[valid].astype(tiny[1][name].dtype))
        assert np.isnan(tiny[1][name]).any() == (name != "coarse")  # NoData kept as NaN per factor
    # the categorical factor is nearest neighbour: exactly the zones, NaN under its NoData patch
    z = tiny[1]["zone"]
    ok = np.isfinite(z)
    zone = (np.arange(yv.shape[1])[None, :] * 4 // yv.shape[1]).repeat(yv.shape[0], 0)[valid]
    np.testing.assert_array_equal(z[ok], zone[ok])
    assert (~ok).sum() == 6  # the 4x6 half-pixel patch covers 2x3 target pixels
    # tables bit for bit
    r1 = G.run_geodetector(tiny[0], tiny[1], default_k=4, messages=[])
    r2 = G.run_geodetector(big[0], big[1], default_k=4, messages=[])
    for key in ("factor", "interaction", "risk", "risk_tests", "ecological"):
        pd.testing.assert_frame_equal(r1[key], r2[key], check_exact=True)
    # stratum-mean raster written in blocks equals the whole-array map
    c = {c.name: c for c in r1["codings"]}["geo"]
    lut = G.stratum_mean_lut(tiny[0], c)
    out = [str(tmp_path / ("sm%d.tif" % i)) for i in range(2)]
    for o, mem in zip(out, (0.001, 512)):
        G.write_stratum_mean_raster(o, t, paths["geo"][0], False, c, lut, mem)
    a, b = (gdal.Open(o).ReadAsArray() for o in out)
    np.testing.assert_array_equal(a, b)
    ref = G.map_strata(lut, G.apply_coding(c, G.align_to_grid(paths["geo"][0], t).astype(np.float32)))
    np.testing.assert_array_equal(a, ref.astype(np.float32))
    assert np.isfinite(a[0, :4]).all()  # painted where Y is NoData too


def test_warped_factor_reads_the_same_in_blocks_as_whole(tmp_path):
    """The warped VRT gives the same pixels whatever the read window (GDAL 3.10 did not, for bilinear
    downsampling, until the resampling scale was fixed for the whole grid)."""
    from osgeo import gdal

    t, paths, yv = raster_case(tmp_path)
    target = gdal.Open(t)
    for name, (path, categorical) in paths.items():
        vrt, _ = G.warp_to_target(path, target, categorical)
        band = vrt.GetRasterBand(1)
        whole = band.ReadAsArray()
        ny, nx = whole.shape
        for height in (1, 2, 7):
            blocks = np.vstack([band.ReadAsArray(0, r, nx, min(height, ny - r)) for r in range(0, ny, height)])
            np.testing.assert_array_equal(blocks, whole, err_msg="%s, %d-row blocks" % (name, height))
        vrt = band = None


def test_warp_scale_is_the_pixel_size_ratio(tmp_path):
    """Destination pixels per source pixel over the whole target, capped at 1 (no kernel widening when
    upsampling): analytic for the three factors of the raster case."""
    from osgeo import gdal

    t, paths, _ = raster_case(tmp_path)
    target = gdal.Open(t)
    gt, nx, ny = target.GetGeoTransform(), target.RasterXSize, target.RasterYSize
    bounds = (gt[0], gt[3] + gt[5] * ny, gt[0] + gt[1] * nx, gt[3])
    wkt = target.GetProjection()
    assert G.warp_scale(gdal.Open(paths["zone"][0]), wkt, bounds, nx, ny) == (0.5, 0.5)  # 50 m -> 100 m
    assert G.warp_scale(gdal.Open(paths["coarse"][0]), wkt, bounds, nx, ny) == (1.0, 1.0)  # 250 m -> 100 m
    # 0.0006 degree pixels at 36.1 N: one degree of longitude is ~cos(lat) * 111.3 km, of latitude ~111.0 km
    xs, ys = G.warp_scale(gdal.Open(paths["geo"][0]), wkt, bounds, nx, ny)
    lat = np.radians(36.1)
    assert xs == pytest.approx(0.0006 * 111320.0 * np.cos(lat) / 100.0, rel=0.01)
    assert ys == pytest.approx(0.0006 * 110950.0 / 100.0, rel=0.01)


def test_raster_samples_cancel_and_no_overlap(tmp_path):
    t, paths, _ = raster_case(tmp_path)

    class Stop(Exception):
        pass

    def check():
        raise Stop()

    with pytest.raises(Stop):
        G.read_raster_samples(t, paths, memory_mb=0.001, check=check)
    far = _write_raster(tmp_path / "far.tif", (0.0, 1.0, 0, 10.0, 0, -1.0), np.ones((5, 5)), 4326)
    with pytest.raises(ValueError, match="does not overlap"):
        G.read_raster_samples(t, {"far": (far, False)}, memory_mb=1)
    out = tmp_path / "sm.tif"
    c = G.encode_factor(np.arange(10.0), "x", "equal", 2)
    with pytest.raises(Stop):
        G.write_stratum_mean_raster(str(out), t, paths["coarse"][0], False, c, np.array([1.0, 2.0]), 0.001, check=check)
    assert not out.exists() and not list(tmp_path.glob(".sm.tif*"))  # atomic: nothing left behind
