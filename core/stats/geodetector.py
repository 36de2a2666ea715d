"""Geodetector: factor, interaction, risk and ecological detectors (Wang & Xu 2017).

All detectors work on integer stratum codes (0..L-1, -1 = missing) computed
once per factor (:func:`encode_factor`); per-stratum sums come from
``np.bincount``, interaction cells use the integer key ``c1 * L2 + c2`` (never
string concatenation, which merges cells such as (1, 12) and (11, 2)).

Conventions (default = R package ``geodetector`` 1.0-5 of Wang & Xu, cited by
Huang et al. 2025, sec. 2.2.4):

* **q** (Wang & Xu 2017; Huang et al. 2025 eq. 11): q = 1 - SSW/SST with
  SSW = sum_h N_h sigma_h^2 and SST = N sigma^2 (population variances, i.e.
  sums of squares). Strata with a single sample are kept (they add 0 to SSW
  and count in N and L); ``singletons="drop"`` removes them first (GD, gdverse,
  PyPI ``geodetector``).
* **Wang p** (Wang, Zhang & Fu 2016, Ecol. Indic. 67, eqs. 5-6):
  F = (N-L)/(L-1) * q/(1-q) ~ noncentral F(L-1, N-L; lambda),
  lambda = [sum_h Ybar_h^2 - (sum_h sqrt(N_h) Ybar_h)^2 / N] / sigma^2 with
  sigma^2 the sample variance of Y (``lambda_ddof=1``, R geodetector;
  ``lambda_ddof=0`` reproduces GD/gdverse/PyPI geodetector). lambda does not
  grow with N, so this p is not a test of "no stratification"; the one-way
  ANOVA p (central F, same statistic) is reported next to it, together with
  q_adj = 1 - (1-q)(N-1)/(N-L) and the q expected by chance (L-1)/(N-1).
* **Confidence interval of q** (:func:`q_confidence_interval`): the
  noncentral F of the same statistic inverted in its textbook noncentrality
  lambda = sum_h N_h (mu_h - mu)^2 / sigma^2, mapped to the population q by
  q = lambda/(lambda + N) (Steiger 2004; gdverse ``confintv``, QGIS
  Geographical detector plugin). Exact coverage for normal Y with equal
  within-stratum variance and fixed stratum sizes.
* **Interaction types** (Wang & Xu 2017 table 1). ``convention="r"``: the
  exact boundaries of R geodetector 1.0-5: q12 <= min(q1,q2) (and < max)
  "Weaken, nonlinear"; min < q12 < max "Weaken, uni-"; max <= q12 <= q1+q2
  "Enhance, bi-"; q12 > q1+q2 "Enhance, nonlinear". R assigns "Independent"
  only to be overwritten by "Enhance, bi-", so it never occurs.
  ``convention="tolerance"``: q12 < min - tol "Weaken, nonlinear";
  |q12 - (q1+q2)| <= tol "Independent"; q12 <= max + tol "Weaken, uni-";
  q12 < q1+q2 "Enhance, bi-"; otherwise "Enhance, nonlinear".
  Note: with singletons kept, q(A∩B) is computed on the same rows as q(A)
  and q(B) and the cells refine both partitions, so q12 >= max(q1, q2)
  always; the two "Weaken" types can only appear with ``singletons="drop"``
  (rows differ between the three q's). Cells outnumbering N/2 are warned
  about: q12 is then inflated by chance (its null mean is (cells-1)/(N-1),
  reported as ``q_ab_null``).
  Optional permutation p for the enhancement q12 - max(q1, q2): Y is shuffled
  within the strata of the stronger factor (its q is unchanged) and q12 is
  recomputed; p = (1 + #{gain_perm >= gain}) / (1 + permutations).
  ``p_wang_ab``: the Wang p of the factor detector applied to the A∩B
  cells taken as one stratification (integer keys, same ``lambda_ddof``
  and singleton rule; as gdverse >= 1.6); like the factor p it does not test
  the enhancement over q(A), q(B) -- that is ``p_enhance``.
* **Risk detector**: stratum means; pairwise Welch t-test
  t = (Ybar_i - Ybar_j) / sqrt(s_i^2/n_i + s_j^2/n_j), Welch-Satterthwaite df
  (not rounded; as R ``t.test``, GD, gdverse), two-sided p; pairs with a
  stratum of n < 2 or zero standard error get p = NaN.
* **Ecological detector** (Wang et al. 2010, IJGIS 24(1), eq. 4): on the rows
  where both factors and Y are valid (same N), F = SSW_A / SSW_B with
  df (N-1, N-1); two-sided p = 2 min(P(F' <= F), P(F' >= F)); significant if
  p < alpha. (R geodetector/GD compare q_B/q_A with qf(0.9); gdverse uses a
  one-sided upper tail; we report F and the two-sided p.)
* **Missing values**: NaN in Y or a factor drop the row for that factor (and
  for a pair, the rows where either factor is missing); never a stratum.
"""

import math
import warnings
from itertools import combinations

import numpy as np

from ..io.lazy import lazy_module
from . import breaks as _breaks

pd = lazy_module("pandas")
stats = lazy_module("scipy.stats")

INTERACTION_TYPES = (
    "Weaken, nonlinear",
    "Weaken, uni-",
    "Enhance, bi-",
    "Independent",
    "Enhance, nonlinear",
)
DISCRETIZE_METHODS = ("natural", "quantile", "equal", "geometric", "sd", "manual", "categorical", "optimal")


def _warn(messages, text):
    if messages is None:
        warnings.warn(text, stacklevel=3)
    else:
        messages.append(text)


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------


def as_target(y, name="Y"):
    """Y as float64; non-numeric values raise ValueError naming the field."""
    arr = np.asarray(y)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64).ravel()
    try:
        return pd.to_numeric(pd.Series(arr.ravel()), errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"target {name!r} must be numeric: {exc}") from None


class FactorCoding:
    """A factor encoded to stratum codes (0..L-1, -1 missing)."""

    def __init__(self, name, codes, labels, method, k=None, breaks=None, used=None, levels=None):
        self.name = name
        self.used = None if used is None else np.asarray(used)  # classes present (numeric)
        self.levels = levels  # category values (categorical)
        self.codes = np.asarray(codes, dtype=np.int32)
        self.labels = list(labels)
        self.n_levels = len(self.labels)
        self.method = method
        self.k = k
        self.breaks = None if breaks is None else np.asarray(breaks, dtype=np.float64)
        self.has_missing = bool((self.codes < 0).any())

    def breaks_text(self):
        if self.breaks is None:
            return ""
        return ";".join(f"{b:.10g}" for b in self.breaks)


def encode_factor(
    values,
    name="X",
    method="natural",
    k=5,
    breaks=None,
    max_levels=_breaks.DEFAULT_MAX_LEVELS,
    y=None,
    optimal_methods=None,
    optimal_ks=None,
    min_gain=0.05,
    curves=None,
):
    """Encode one factor to integer strata.

    Text/bool factors and integer-valued ones with at most ``max_levels``
    distinct values are categories as they are (``method="categorical"``
    forces this). Numeric factors are discretized by ``method`` with ``k``
    classes (see :mod:`.breaks`); ``method="optimal"`` searches
    ``optimal_methods`` x ``optimal_ks`` against ``y`` (:func:`optimal_discretization`)
    and appends the q-versus-k curve to the list ``curves``.
    """
    arr = np.asarray(values)
    method = str(method).lower()
    if method == "categorical" or (method != "manual" and _breaks.is_categorical(arr, max_levels)):
        codes, labels = _breaks.encode_categories(arr)
        return FactorCoding(name, codes, [str(v) for v in labels], "categorical", levels=np.asarray(labels))
    try:
        x = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"factor {name!r}: values are neither numeric nor few categories") from None
    if not np.isfinite(x).any():
        raise ValueError(f"factor {name!r}: no valid values")
    if method == "optimal":
        if y is None:
            raise ValueError("optimal discretization needs Y")
        best_m, best_k, curve = optimal_discretization(y, x, optimal_methods, optimal_ks, min_gain)
        curve.insert(0, "factor", name)
        if curves is not None:
            curves.append(curve)
        method, k = best_m, best_k
    b = _breaks.compute_breaks(x, method, k, breaks)
    codes, used = _breaks.classify(x, b)
    labels = _breaks.class_ranges(x, b, used)
    return FactorCoding(name, codes, labels, method, k, b, used=used)


def apply_coding(coding, values):
    """Codes of new ``values`` under an existing coding (same breaks / categories).

    Values falling in a class or category absent when the coding was made get -1.
    """
    arr = np.asarray(values)
    if coding.method == "categorical":
        lv = coding.levels
        if lv.dtype.kind in "OUS":
            key = pd.Series(arr.ravel()).astype(str).to_numpy()
            lv = lv.astype(str)
        else:
            key = arr.ravel().astype(lv.dtype) if arr.dtype.kind in "biuf" else arr.ravel()
        pos = np.clip(np.searchsorted(lv, key), 0, lv.size - 1)
        hit = lv[pos] == key
        if arr.dtype.kind == "f":
            hit &= np.isfinite(arr.ravel())
        return np.where(hit, pos, -1).astype(np.int32).reshape(arr.shape)
    x = arr.astype(np.float64)
    raw = np.searchsorted(coding.breaks, x, side="left")
    remap = np.full(coding.breaks.size + 1, -1, dtype=np.int32)
    remap[coding.used] = np.arange(coding.used.size, dtype=np.int32)
    return np.where(np.isfinite(x), remap[raw], -1).astype(np.int32)


# ----------------------------------------------------------------------------
# q statistic
# ----------------------------------------------------------------------------


def _strata(y, codes, size):
    """Per-stratum count, mean and within sum of squares (two-pass)."""
    n = np.bincount(codes, minlength=size).astype(np.float64)
    s = np.bincount(codes, weights=y, minlength=size)
    mean = np.divide(s, n, out=np.zeros(size), where=n > 0)
    r = y - mean[codes]
    ss = np.bincount(codes, weights=r * r, minlength=size)
    return n, mean, ss


def _qstats(y, codes, size, lambda_ddof=1, singletons="keep"):
    """q and its tests for codes in [0, size) on finite y (no missing rows)."""
    n_h, m_h, ss_h = _strata(y, codes, size)
    n_single = int(np.count_nonzero(n_h == 1))
    if singletons == "drop" and n_single:
        keep = n_h[codes] > 1
        y, codes = y[keep], codes[keep]
        n_h, m_h, ss_h = _strata(y, codes, size)
    N = y.size
    present = n_h > 0
    L = int(present.sum())
    out = {"n": N, "strata": L, "singletons": n_single}
    if N < 2:
        out.update(
            q=np.nan, p_wang=np.nan, p_anova=np.nan, q_adj=np.nan, q_null=np.nan, lam=np.nan, ssw=np.nan, sst=np.nan
        )
        return out
    ybar = y.mean()
    sst = float(np.sum((y - ybar) ** 2))
    ssw = float(ss_h.sum())
    q = 1.0 - ssw / sst if sst > 0 else np.nan
    out.update(q=q, ssw=ssw, sst=sst, q_null=(L - 1) / (N - 1))
    if L < 2 or N <= L or not np.isfinite(q):
        out.update(p_wang=np.nan, p_anova=np.nan, q_adj=np.nan, lam=np.nan)
        return out
    out["q_adj"] = 1.0 - (1.0 - q) * (N - 1) / (N - L)
    out["lam"], out["p_wang"], out["p_anova"] = _wang_test(
        q, N, L, n_h[present], m_h[present], sst, lambda_ddof=lambda_ddof
    )
    return out


def _wang_test(q, N, L, n_h, m_h, sst, lambda_ddof=1):
    """(lambda, Wang p, ANOVA p) of a stratification (Wang, Zhang & Fu 2016, eqs. 5-6).

    ``n_h``, ``m_h``: sizes and means of Y (not centred: the plug-in lambda
    is not shift invariant) of the L non-empty strata; ``sst`` = sum (y - ybar)^2.
    """
    if L < 2 or N <= L or not np.isfinite(q):
        return np.nan, np.nan, np.nan
    var = sst / (N - lambda_ddof)
    lam = (np.sum(m_h * m_h) - np.sum(np.sqrt(n_h) * m_h) ** 2 / N) / var
    lam = max(float(lam), 0.0)
    d1, d2 = L - 1, N - L
    if q >= 1.0:
        return lam, 0.0, 0.0
    F = d2 / d1 * q / (1.0 - q)
    with np.errstate(all="ignore"):
        p_anova = float(stats.f.sf(F, d1, d2))
        p_wang = _ncf_sf(F, d1, d2, lam) if lam > 0 else p_anova
    return lam, p_wang, p_anova


# Above this noncentrality scipy's ncf (Boost) gets slow and, from ~4e9 on,
# aborts the whole process (boost::math::rounding_error is not caught).
_NCF_EXACT_MAX = 1e7


def _ncf_cdf(f, d1, d2, lam):
    """P(F' <= f) for F' ~ noncentral F(d1, d2; lam), safe for any lam >= 0.

    Exact (scipy ``ncf``) up to lam = 1e7; above, the normal approximation of
    X = chi2'(d1, lam) - (f d1/d2) chi2(d2), mean d1 + lam - f d1,
    variance 2(d1 + 2 lam) + 2 (f d1/d2)^2 d2 (skewness < 1e-3 there).
    """
    if not np.isfinite(f):
        return 1.0 if f > 0 else 0.0
    if f <= 0:
        return 0.0
    if lam <= _NCF_EXACT_MAX:
        return float(stats.ncf.cdf(f, d1, d2, lam)) if lam > 0 else float(stats.f.cdf(f, d1, d2))
    c = f * d1 / d2
    mean = d1 + lam - c * d2
    sd = np.sqrt(2.0 * (d1 + 2.0 * lam) + 2.0 * c * c * d2)
    return float(stats.norm.cdf(-mean / sd))


def _ncf_sf(f, d1, d2, lam):
    """P(F' > f) (see :func:`_ncf_cdf`)."""
    if lam <= _NCF_EXACT_MAX and np.isfinite(f):
        return float(stats.ncf.sf(f, d1, d2, lam)) if lam > 0 else float(stats.f.sf(f, d1, d2))
    return 1.0 - _ncf_cdf(f, d1, d2, lam)


def _lambda_for_cdf(F, d1, d2, target):
    """The noncentrality lam >= 0 with P(F' <= F; lam) = target (0 if even lam = 0 is below).

    The cdf decreases in lam; the root is bracketed by doubling and found by
    Brent's method to a relative precision of 1e-10.
    """
    from scipy.optimize import brentq

    g = lambda lam: _ncf_cdf(F, d1, d2, lam) - target  # noqa: E731
    if g(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, max(10.0, 2.0 * d1 * F)
    while g(hi) > 0:
        lo, hi = hi, hi * 4.0
        if hi > 1e300:
            return np.inf
    return float(brentq(g, lo, hi, xtol=1e-12, rtol=1e-10, maxiter=500))


def q_confidence_interval(q, n, strata, level=0.95):
    """Confidence interval of the population q by inverting the noncentral F in lambda.

    Model (one-way fixed effects, the model behind the Wang, Zhang & Fu 2016
    test): Y = mu_h + e, e ~ N(0, sigma^2), stratum sizes N_h fixed. Then
    F = (N-L)/(L-1) * q/(1-q) ~ noncentral F(L-1, N-L; lambda) with the
    textbook noncentrality lambda = sum_h N_h (mu_h - mu)^2 / sigma^2, and
    the population q (between-strata variance over total variance,
    sigma_b^2 / (sigma_b^2 + sigma^2)) is q = lambda / (lambda + N).
    The interval [lambda_lo, lambda_hi] holds the lambdas whose central
    ``level`` range of F contains the observed F:
    P(F' <= F_obs; lambda_lo) = (1+level)/2, P(F' <= F_obs; lambda_hi) = (1-level)/2
    (lambda = 0 when even lambda = 0 leaves F_obs below that quantile), mapped
    back with q = lambda/(lambda + N). This is the effect-size interval of
    Steiger (2004, Psychol. Methods 9(2) 164-182, eta^2 by noncentrality
    interval estimation) and of gdverse/the QGIS Geographical detector plugin.
    Exact coverage under the model; it is an interval for the population q,
    so for weak factors it can lie below the sample q, which is biased
    upwards by about (L-1)/(N-1). (The plug-in lambda of the Wang p does
    not grow with N and is not used here.) q = 1 gives [1, 1].
    Returns ``(low, high)``; NaN when L < 2 or N <= L.
    """
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, got {level}")
    n, strata = int(n), int(strata)
    if not np.isfinite(q) or strata < 2 or n <= strata:
        return np.nan, np.nan
    if q >= 1.0:
        return 1.0, 1.0
    d1, d2 = strata - 1, n - strata
    F = d2 / d1 * max(q, 0.0) / (1.0 - q)
    a = 1.0 - level
    lam_lo = _lambda_for_cdf(F, d1, d2, 1.0 - a / 2.0)
    lam_hi = _lambda_for_cdf(F, d1, d2, a / 2.0)
    to_q = lambda lam: 1.0 if np.isinf(lam) else lam / (lam + n)  # noqa: E731
    return to_q(lam_lo), to_q(lam_hi)


def q_statistic(y, codes):
    """q = 1 - SSW/SST of finite ``y`` stratified by ``codes`` (>= 0)."""
    y = np.asarray(y, dtype=np.float64)
    codes = np.asarray(codes)
    ok = np.isfinite(y) & (codes >= 0)
    c = codes[ok].astype(np.int64)
    return _qstats(y[ok], c, int(c.max()) + 1 if c.size else 1)["q"]


def _check_target(y, messages=None):
    ok = np.isfinite(y)
    if ok.sum() < 2:
        raise ValueError("target Y has fewer than 2 valid values")
    yv = y[ok]
    if np.all(yv == yv[0]):
        raise ValueError("target Y is constant: q is undefined (SST = 0)")
    return ok


def _valid(y_ok, *codings):
    ok = y_ok
    for c in codings:
        if c.has_missing:
            ok = ok & (c.codes >= 0)
    return ok


# ----------------------------------------------------------------------------
# detectors
# ----------------------------------------------------------------------------


def factor_detector(y, codings, lambda_ddof=1, singletons="keep", max_strata_ratio=0.5, messages=None, ci_level=0.95):
    """Factor detector table: q, its ``ci_level`` confidence interval
    (:func:`q_confidence_interval`), Wang p, ANOVA p, q_adj, q_null per factor."""
    y = as_target(y)
    y_ok = _check_target(y)
    rows = []
    for c in codings:
        ok = _valid(y_ok, c)
        yy = y[ok] if not ok.all() else y
        cc = c.codes[ok] if not ok.all() else c.codes
        res = _qstats(yy, cc, max(c.n_levels, 1), lambda_ddof, singletons)
        if res["strata"] < 2:
            _warn(messages, f"factor {c.name!r} has a single stratum on the valid rows: q = 0, no test")
        if res["strata"] > max_strata_ratio * res["n"]:
            raise ValueError(
                f"factor {c.name!r}: {res['strata']} strata for {res['n']} samples (more than N/2); "
                "use fewer classes or treat it as numeric"
            )
        if res["singletons"]:
            _warn(messages, f"factor {c.name!r}: {res['singletons']} strata hold a single sample")
        if np.isfinite(res["sst"]) and res["sst"] == 0:
            _warn(messages, f"factor {c.name!r}: Y is constant on its valid rows")
        ci = q_confidence_interval(res["q"], res["n"], res["strata"], ci_level)
        rows.append(
            {
                "factor": c.name,
                "method": c.method,
                "classes": c.k if c.k is not None else c.n_levels,
                "breaks": c.breaks_text(),
                "n": res["n"],
                "strata": res["strata"],
                "q": res["q"],
                "q_ci_low": ci[0],
                "q_ci_high": ci[1],
                "ci_level": float(ci_level),
                "p_wang": res["p_wang"],
                "p_anova": res["p_anova"],
                "q_adj": res["q_adj"],
                "q_null": res["q_null"],
                "lambda": res["lam"],
                "singletons": res["singletons"],
            }
        )
    return pd.DataFrame(rows)


def interaction_type(q1, q2, q12, convention="r", tol=1e-10):
    """Interaction type label (see module docstring for the two conventions)."""
    lo, hi, s = min(q1, q2), max(q1, q2), q1 + q2
    if convention == "r":
        label = None
        if q12 <= q1 and q12 <= q2:
            label = INTERACTION_TYPES[0]
        if lo < q12 < hi:
            label = INTERACTION_TYPES[1]
        if q12 > s:
            return INTERACTION_TYPES[4]
        if q12 >= hi:
            label = INTERACTION_TYPES[2]
        return label
    if convention != "tolerance":
        raise ValueError(f"unknown interaction convention {convention!r} (use 'r' or 'tolerance')")
    if q12 < lo - tol:
        return INTERACTION_TYPES[0]
    if abs(q12 - s) <= tol:
        return INTERACTION_TYPES[3]
    if q12 <= hi + tol:
        return INTERACTION_TYPES[1]
    if q12 < s:
        return INTERACTION_TYPES[2]
    return INTERACTION_TYPES[4]


def _cell_codes(a, b, La, Lb):
    """Integer cell key a*Lb + b, compacted to 0..L12-1 when sparse."""
    key = a.astype(np.int64) * Lb + b
    size = La * Lb
    if size > 4 * key.size + 1024:
        uniq, key = np.unique(key, return_inverse=True)
        size = uniq.size
    return key, size


def _q_only(y, codes, size, sst):
    n_h, _, ss_h = _strata(y, codes, size)
    return 1.0 - ss_h.sum() / sst, int(np.count_nonzero(n_h))


def _within_shuffle(codes, rng, base_order):
    """Permutation that shuffles positions within each stratum of ``codes``."""
    order = np.lexsort((rng.random(codes.size), codes))
    perm = np.empty(codes.size, dtype=np.int64)
    perm[base_order] = order
    return perm


def _enhancement_p(yy, strong, cells, q, permutations, rng):
    """Within-strata permutation p of the enhancement q(A∩B) - max(q(A), q(B)) (module docstring): Y is
    shuffled within the strata of the stronger factor's codes ``strong``; ``cells`` = (cell codes, number
    of cells), ``q`` = (q(A), q(B), q(A∩B))."""
    key, size = cells
    qa, qb, qab = q
    gain = qab - max(qa, qb)
    yc = yy - yy.mean()
    sst = float(np.dot(yc, yc))
    base = np.argsort(strong, kind="stable")
    exceed = 0
    for _ in range(permutations):
        yp = yc[_within_shuffle(strong, rng, base)]
        qp, _ = _q_only(yp, key, size, sst)
        if qp - max(qa, qb) >= gain - 1e-12:
            exceed += 1
    return (1 + exceed) / (1 + permutations)


def interaction_detector(
    y,
    codings,
    convention="r",
    tol=1e-10,
    permutations=0,
    seed=0,
    singletons="keep",
    max_cell_ratio=0.5,
    messages=None,
    lambda_ddof=1,
):
    """Interaction detector table for every pair of factors.

    q(A), q(B) and q(A∩B) are computed on the rows where Y, A and B are all
    valid; ``cells`` is the number of non-empty A×B cells; ``lambda_ab`` and
    ``p_wang_ab`` are the Wang lambda and p of the cells as one
    stratification (same as :func:`factor_detector` on the combined factor). With
    ``permutations`` > 0, ``p_enhance`` is the within-strata permutation p
    of q(A∩B) - max(q(A), q(B)) (module docstring).
    """
    if len(codings) < 2:
        raise ValueError("the interaction detector needs at least 2 factors")
    y = as_target(y)
    y_ok = _check_target(y)
    rng = np.random.default_rng(seed)
    rows = []
    q_cache = {}
    yc_full = sst_full = None
    for ca, cb in combinations(codings, 2):
        ok = _valid(y_ok, ca, cb)
        full = bool(ok.all())
        yy = y if full else y[ok]
        a = ca.codes if full else ca.codes[ok]
        b = cb.codes if full else cb.codes[ok]
        La, Lb = max(ca.n_levels, 1), max(cb.n_levels, 1)
        key, size = _cell_codes(a, b, La, Lb)
        if singletons == "drop":
            ra = _qstats(yy, a, La, 1, "drop")
            rb = _qstats(yy, b, Lb, 1, "drop")
            rab = _qstats(yy, key, size, lambda_ddof, "drop")
            qa, qb, qab, cells = ra["q"], rb["q"], rab["q"], rab["strata"]
            lam_ab, p_ab = rab["lam"], rab["p_wang"]
        else:
            if full:
                if yc_full is None:
                    yc_full = y - y.mean()
                    sst_full = float(np.dot(yc_full, yc_full))
                yc, sst = yc_full, sst_full
            else:
                yc = yy - yy.mean()
                sst = float(np.dot(yc, yc))
            if sst == 0:
                _warn(messages, f"pair {ca.name!r} x {cb.name!r}: Y constant on the valid rows")
                continue
            if full:  # same rows as the single factors: compute each q once
                for c, cc, Lc in ((ca, a, La), (cb, b, Lb)):
                    if c.name not in q_cache:
                        q_cache[c.name] = _q_only(yc, cc, Lc, sst)[0]
                qa, qb = q_cache[ca.name], q_cache[cb.name]
            else:
                qa, _ = _q_only(yc, a, La, sst)
                qb, _ = _q_only(yc, b, Lb, sst)
            # cells as one stratification; raw Y for the means in Wang's lambda
            n_h, m_h, ss_h = _strata(yy, key, size)
            qab = 1.0 - ss_h.sum() / sst
            present = n_h > 0
            cells = int(np.count_nonzero(present))
            lam_ab, p_ab, _ = _wang_test(qab, yy.size, cells, n_h[present], m_h[present], sst, lambda_ddof=lambda_ddof)
        if cells > max_cell_ratio * yy.size:
            _warn(
                messages,
                f"pair {ca.name!r} x {cb.name!r}: {cells} cells for {yy.size} samples (more than N/2); "
                "q(A∩B) is inflated by chance",
            )
        p_enh = np.nan
        if permutations and permutations > 0:
            p_enh = _enhancement_p(yy, a if qa >= qb else b, (key, size), (qa, qb, qab), int(permutations), rng)
        rows.append(
            {
                "factor_a": ca.name,
                "factor_b": cb.name,
                "q_a": qa,
                "q_b": qb,
                "q_ab": qab,
                "type": interaction_type(qa, qb, qab, convention, tol),
                "cells": cells,
                "n": int(yy.size),
                "q_ab_null": (cells - 1) / (yy.size - 1) if yy.size > 1 else np.nan,
                "lambda_ab": lam_ab,
                "p_wang_ab": p_ab,
                "p_enhance": p_enh,
            }
        )
    return pd.DataFrame(rows)


def risk_detector(y, codings, alpha=0.05):
    """Risk detector: (strata table, pairwise Welch t-test table)."""
    y = as_target(y)
    y_ok = _check_target(y)
    strata_rows, test_frames = [], []
    for c in codings:
        ok = _valid(y_ok, c)
        yy, cc = y[ok], c.codes[ok]
        L = max(c.n_levels, 1)
        n, mean, ss = _strata(yy, cc, L)
        var = np.divide(ss, n - 1, out=np.full(L, np.nan), where=n > 1)
        for h in range(L):
            if n[h] == 0:
                continue
            strata_rows.append(
                {
                    "factor": c.name,
                    "stratum": h,
                    "range": c.labels[h],
                    "n": int(n[h]),
                    "mean": mean[h],
                    "sd": float(np.sqrt(var[h])) if n[h] > 1 else np.nan,
                }
            )
        present = np.flatnonzero(n > 0)
        if present.size < 2:
            continue
        i, j = np.triu_indices(present.size, 1)
        i, j = present[i], present[j]
        vi, vj = var[i] / n[i], var[j] / n[j]
        se2 = vi + vj
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (mean[i] - mean[j]) / np.sqrt(se2)
            df = se2**2 / (vi**2 / (n[i] - 1) + vj**2 / (n[j] - 1))
            p = 2.0 * stats.t.sf(np.abs(t), df)
        bad = (n[i] < 2) | (n[j] < 2) | ~(se2 > 0)
        t[bad] = np.nan
        df[bad] = np.nan
        p[bad] = np.nan
        test_frames.append(
            pd.DataFrame(
                {
                    "factor": c.name,
                    "stratum_a": i,
                    "stratum_b": j,
                    "range_a": [c.labels[k] for k in i],
                    "range_b": [c.labels[k] for k in j],
                    "mean_a": mean[i],
                    "mean_b": mean[j],
                    "t": t,
                    "df": df,
                    "p": p,
                    "significant": np.where(np.isfinite(p), p < alpha, False),
                }
            )
        )
    tests = (
        pd.concat(test_frames, ignore_index=True)
        if test_frames
        else pd.DataFrame(
            columns=[
                "factor",
                "stratum_a",
                "stratum_b",
                "range_a",
                "range_b",
                "mean_a",
                "mean_b",
                "t",
                "df",
                "p",
                "significant",
            ]
        )
    )
    return pd.DataFrame(strata_rows), tests


def ecological_detector(y, codings, alpha=0.05):
    """Ecological detector: F = SSW_A/SSW_B, df (N-1, N-1), two-sided p."""
    if len(codings) < 2:
        raise ValueError("the ecological detector needs at least 2 factors")
    y = as_target(y)
    y_ok = _check_target(y)
    rows = []
    cache = {}
    for ca, cb in combinations(codings, 2):
        ok = _valid(y_ok, ca, cb)
        full = bool(ok.all())
        yy, a, b = (y, ca.codes, cb.codes) if full else (y[ok], ca.codes[ok], cb.codes[ok])
        N = yy.size
        ssw = []
        for c, cc in ((ca, a), (cb, b)):
            if full and c.name in cache:
                ssw.append(cache[c.name])
                continue
            v = float(_strata(yy, cc, max(c.n_levels, 1))[2].sum())
            if full:
                cache[c.name] = v
            ssw.append(v)
        ssw_a, ssw_b = ssw
        if ssw_b > 0:
            F = ssw_a / ssw_b
            p = float(min(1.0, 2.0 * min(stats.f.cdf(F, N - 1, N - 1), stats.f.sf(F, N - 1, N - 1))))
        else:
            F, p = (np.inf, 0.0) if ssw_a > 0 else (np.nan, np.nan)
        rows.append(
            {
                "factor_a": ca.name,
                "factor_b": cb.name,
                "n": N,
                "ssw_a": ssw_a,
                "ssw_b": ssw_b,
                "F": F,
                "df1": N - 1,
                "df2": N - 1,
                "p": p,
                "significant": bool(np.isfinite(p) and p < alpha),
                "stronger": "" if not np.isfinite(p) or p >= alpha else (ca.name if ssw_a < ssw_b else cb.name),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------
# optimal discretization, sampling
# ----------------------------------------------------------------------------


def optimal_discretization(y, x, methods=None, ks=None, min_gain=0.05):
    """Search methods x class counts; pick k by the q gain per extra class.

    For every method and k the q of ``y`` stratified by ``x`` is computed
    (rows where both are finite). With q*(k) the best q over methods at k,
    the chosen k is the smallest one from which no larger k' gains more
    than ``min_gain`` * q*(k) per extra class, i.e.
    max_{k'>k} (q*(k') - q*(k)) / (k' - k) < min_gain * q*(k) (elbow; q grows
    with k, so the largest q is not a criterion), and the method is the best
    one at that k. ``gain`` in the curve is that relative gain per class. Returns ``(method, k, curve)`` with
    curve columns method, k, strata, q, gain, chosen.
    """
    methods = list(methods or ("natural", "quantile", "equal", "geometric", "sd"))
    ks = sorted({int(k) for k in (ks or range(3, 11))})
    y = as_target(y)
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(x)
    yy, xx = y[ok], x[ok]
    if yy.size < 3 or np.all(yy == yy[0]):
        raise ValueError("optimal discretization needs a non-constant Y with at least 3 valid rows")
    yc = yy - yy.mean()
    sst = float(np.dot(yc, yc))
    rows = []
    for m in methods:
        nat = _breaks.natural_breaks_multi(xx, ks) if m == "natural" else None
        for k in ks:
            b = nat[k] if nat is not None else _breaks.compute_breaks(xx, m, k)
            codes, used = _breaks.classify(xx, b)
            q, L = _q_only(yc, codes, max(used.size, 1), sst)
            rows.append({"method": m, "k": k, "strata": L, "q": q})
    curve = pd.DataFrame(rows)
    best = curve.loc[curve.groupby("k")["q"].idxmax()].sort_values("k")
    qk = best["q"].to_numpy()
    kk = best["k"].to_numpy()
    # gain per extra class from k to the best later k, relative to q*(k)
    gains = np.full(qk.size, np.nan)
    for i in range(qk.size - 1):
        per_class = (qk[i + 1 :] - qk[i]) / (kk[i + 1 :] - kk[i])
        gains[i] = per_class.max() / qk[i] if qk[i] > 0 else np.inf
    pick = qk.size - 1
    for i in range(qk.size - 1):
        if gains[i] < min_gain:
            pick = i
            break
    k_best = int(best["k"].iloc[pick])
    m_best = str(best["method"].iloc[pick])
    gain_map = dict(zip(best["k"], gains))
    curve["gain"] = curve["k"].map(gain_map)
    curve["chosen"] = (curve["k"] == k_best) & (curve["method"] == m_best)
    return m_best, k_best, curve


def parse_ratio(text):
    """'1:2' -> 2.0 (non-subsidence samples per subsidence sample); '0.5' -> 0.5."""
    s = str(text).strip()
    bad = f"SAMPLE_RATIO: {text!r} is not a ratio such as 1:2, 1:1 or 1:0.5"
    try:
        if ":" in s:
            a, b = (float(v) for v in s.split(":", 1))
            v = b / a if a > 0 else -1.0
        else:
            v = float(s)
    except ValueError:
        raise ValueError(bad) from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(bad)
    return v


def sample_by_threshold(y, threshold, ratio, seed=0, messages=None):
    """Sampling of Huang et al. 2025 (sec. 3.3.2).

    Rows with Y <= ``threshold`` (e.g. -15 mm/yr; negative = subsidence) are
    subsidence samples and all are kept; ``ratio`` (subsidence :
    non-subsidence, e.g. '1:2', '1:0.5' or the number of non-subsidence
    samples per subsidence sample) non-subsidence rows are drawn without
    replacement with ``np.random.default_rng(seed)``. Returns sorted row
    indices.
    """
    y = as_target(y)
    r = parse_ratio(ratio)
    ok = np.isfinite(y)
    sub = np.flatnonzero(ok & (y <= threshold))
    non = np.flatnonzero(ok & (y > threshold))
    if sub.size == 0:
        raise ValueError(f"no sample has Y <= {threshold} (subsidence threshold)")
    want = int(round(r * sub.size))
    if want > non.size:
        _warn(messages, f"sample ratio asks for {want} non-subsidence samples, only {non.size} exist: all used")
        want = non.size
    rng = np.random.default_rng(seed)
    pick = rng.choice(non, size=want, replace=False) if want else np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate((sub, pick)))


def stratum_means(y, coding, values=None):
    """Mean of Y for each row's stratum (NaN where the factor is missing).

    The means come from ``y`` with ``coding.codes``; with ``values`` (e.g.
    every pixel of the factor raster when Y was sampled) the strata of those
    values (:func:`apply_coding`) are mapped to the means instead.
    """
    lut = stratum_mean_lut(y, coding)
    codes = coding.codes if values is None else apply_coding(coding, values)
    return map_strata(lut, codes)


def stratum_mean_lut(y, coding):
    """Mean of Y per stratum code of ``coding`` (NaN for empty strata)."""
    y = as_target(y)
    ok = np.isfinite(y) & (coding.codes >= 0)
    n, mean, _ = _strata(y[ok], coding.codes[ok], max(coding.n_levels, 1))
    return np.where(n > 0, mean, np.nan)


def map_strata(lut, codes):
    """``lut[codes]`` with NaN where ``codes`` < 0 (pure block function)."""
    codes = np.asarray(codes)
    out = np.full(codes.shape, np.nan)
    has = codes >= 0
    out[has] = lut[codes[has]]
    return out


def run_geodetector(
    y,
    factors,
    specs=None,
    default_method="natural",
    default_k=5,
    convention="r",
    lambda_ddof=1,
    singletons="keep",
    permutations=0,
    seed=0,
    alpha=0.05,
    optimal_ks=None,
    optimal_methods=None,
    min_gain=0.05,
    messages=None,
    ci_level=0.95,
):
    """Encode ``factors`` ({name: values}) once and run all four detectors.

    ``specs`` maps a factor name to ``{"method": ..., "k": ..., "breaks": ...}``
    overriding the defaults. Returns a dict of DataFrames: factor,
    interaction, risk (strata), risk_tests, ecological, curves, and the list
    of codings under "codings".
    """
    y = as_target(y)
    _check_target(y)
    specs = specs or {}
    curves = []
    codings = []
    for name, values in factors.items():
        sp = specs.get(name, {})
        codings.append(
            encode_factor(
                values,
                name,
                sp.get("method", default_method),
                sp.get("k", default_k),
                sp.get("breaks"),
                y=y,
                optimal_methods=optimal_methods,
                optimal_ks=optimal_ks,
                min_gain=min_gain,
                curves=curves,
            )
        )
    out = {"codings": codings}
    out["factor"] = factor_detector(y, codings, lambda_ddof, singletons, messages=messages, ci_level=ci_level)
    if len(codings) >= 2:
        out["interaction"] = interaction_detector(
            y,
            codings,
            convention,
            permutations=permutations,
            seed=seed,
            singletons=singletons,
            messages=messages,
            lambda_ddof=lambda_ddof,
        )
        out["ecological"] = ecological_detector(y, codings, alpha)
    else:
        _warn(messages, "fewer than 2 factors: interaction and ecological detectors skipped")
        out["interaction"] = pd.DataFrame()
        out["ecological"] = pd.DataFrame()
    out["risk"], out["risk_tests"] = risk_detector(y, codings, alpha)
    out["curves"] = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return out


def select_rows(y, factors, threshold=None, ratio="1:1", seed=0, messages=None):
    """The rows the detectors use: every row with a valid Y, or (``threshold`` given) the sample of
    :func:`sample_by_threshold`. Returns ``(y, factors, description)``; no copies when every row is used."""
    rows = np.flatnonzero(np.isfinite(y))
    if threshold is not None:
        rows = sample_by_threshold(y, threshold, ratio, seed, messages=messages)
        n_sub = int(np.sum(y[rows] <= threshold))
        text = "sampling: Y <= %g is subsidence (%d samples), ratio %s, seed %d -> %d non-subsidence" % (
            threshold,
            n_sub,
            ratio,
            seed,
            rows.size - n_sub,
        )
    else:
        text = "all %d rows with a valid Y" % rows.size
    if rows.size == y.size:  # every row (raster mode keeps only valid pixels)
        return y, factors, text
    return y[rows], {k: v[rows] for k, v in factors.items()}, text


def factor_lines(factor_table):
    """One line per factor of the factor detector's table, the strongest q first."""
    return [
        "q(%s) = %.4f  [%.4f, %.4f]  (N %d, L %d, q by chance %.4f, p_wang %.3g, p_anova %.3g)"
        % (r.factor, r.q, r.q_ci_low, r.q_ci_high, r.n, r.strata, r.q_null, r.p_wang, r.p_anova)
        for r in factor_table.sort_values("q", ascending=False).itertuples()
    ]


# ----------------------------------------------------------------------------
# raster mode
# ----------------------------------------------------------------------------


def align_to_grid(path, target_path, categorical=False):
    """Band 1 of ``path`` on the grid of ``target_path`` as one float64 array (NaN nodata).

    Whole-band convenience for small rasters; the same warp as the block-wise
    :func:`read_raster_samples` (:func:`warp_to_target`). Raises ValueError
    when no pixel overlaps the target.
    """
    from ..io.rasters import open_raster

    tgt = open_raster(target_path)
    vrt, _ = warp_to_target(path, tgt, categorical, target_path)
    arr = vrt.GetRasterBand(1).ReadAsArray().astype(np.float64)
    vrt = tgt = None
    if not np.isfinite(arr).any():
        raise ValueError(_no_factor_values(path, target_path))
    return arr


def _no_factor_values(path, target_path):
    """Why a factor gave no value on the target grid: it has none at all (all NoData), or it lies elsewhere."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    any_value = False
    for r0 in range(0, ds.RasterYSize, 256):
        a = band.ReadAsArray(0, r0, ds.RasterXSize, min(256, ds.RasterYSize - r0)).astype(np.float64)
        if nodata is not None:
            a[a == nodata] = np.nan
        if np.isfinite(a).any():
            any_value = True
            break
    if not any_value:
        return f"factor raster {path} has no valid pixel (all NoData): fix it or leave it out"
    return f"factor raster {path} does not overlap the target raster {target_path}"


# Band types whose values float32 holds exactly (after NoData -> NaN).
def _float32_exact(band):
    from osgeo import gdal

    small = {gdal.GDT_Byte, gdal.GDT_Int16, gdal.GDT_UInt16, gdal.GDT_Float32}
    if hasattr(gdal, "GDT_Int8"):
        small.add(gdal.GDT_Int8)
    s, o = band.GetScale(), band.GetOffset()
    return band.DataType in small and s in (None, 1.0) and o in (None, 0.0)


def warp_scale(src, dst_wkt, bounds, width, height):
    """Destination pixels per source pixel ``(x, y)`` for the whole target grid, at most 1.

    When downsampling, GDAL widens the bilinear kernel by this ratio. Left to itself it computes the
    ratio per warped chunk (from the chunk's destination and source windows), so with some GDAL
    versions (3.10) a VRT read in row blocks differs from the same VRT read whole. Passed as the
    ``XSCALE``/``YSCALE`` warp options, one ratio for the whole grid makes every read identical.
    ``bounds`` = (xmin, ymin, xmax, ymax) of the target in ``dst_wkt``; the ratio is taken over the
    target's footprint in source pixels (edges densified when the CRS differ).
    """
    from osgeo import osr

    sgt = src.GetGeoTransform()
    xmin, ymin, xmax, ymax = bounds
    src_wkt = src.GetProjection()
    if src_wkt and dst_wkt:
        s_srs, d_srs = osr.SpatialReference(), osr.SpatialReference()
        s_srs.ImportFromWkt(src_wkt)
        d_srs.ImportFromWkt(dst_wkt)
        if not s_srs.IsSame(d_srs):
            for r in (s_srs, d_srs):
                r.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            t = np.linspace(0.0, 1.0, 21)
            ex, ey = xmin + (xmax - xmin) * t, ymin + (ymax - ymin) * t
            pts = np.concatenate(
                [
                    np.c_[ex, np.full_like(ex, ymin)],
                    np.c_[ex, np.full_like(ex, ymax)],
                    np.c_[np.full_like(ey, xmin), ey],
                    np.c_[np.full_like(ey, xmax), ey],
                ]
            )
            out = np.array(osr.CoordinateTransformation(d_srs, s_srs).TransformPoints(pts.tolist()))[:, :2]
            out = out[np.isfinite(out).all(axis=1)]
            if len(out):
                (xmin, ymin), (xmax, ymax) = out.min(axis=0), out.max(axis=0)
    src_cols = (xmax - xmin) / math.hypot(sgt[1], sgt[4])
    src_rows = (ymax - ymin) / math.hypot(sgt[2], sgt[5])
    xscale = min(1.0, width / src_cols) if src_cols > 0 else 1.0
    yscale = min(1.0, height / src_rows) if src_rows > 0 else 1.0
    return xscale, yscale


def warp_to_target(path, target_ds, categorical=False, target_path=None):
    """A warped VRT of band 1 of ``path`` on the grid of ``target_ds`` (nothing is read yet).

    Nearest neighbour for categorical factors, bilinear otherwise; source
    NoData is honoured and becomes NaN. Output type float32 when the source
    band type fits in it exactly (byte, int16, uint16, float32), else float64.
    The exact transformer (error threshold 0) makes every pixel independent
    of how the VRT is read, so row blocks of any height give the same values.
    Returns ``(vrt_dataset, numpy dtype)``.
    """
    from osgeo import gdal

    gt = target_ds.GetGeoTransform()
    xs, ys = target_ds.RasterXSize, target_ds.RasterYSize
    if gt[2] != 0 or gt[4] != 0:
        raise ValueError(f"target raster {target_path or target_ds.GetDescription()}: rotated grids are not supported")
    bounds = (gt[0], gt[3] + gt[5] * ys, gt[0] + gt[1] * xs, gt[3])
    try:
        src = gdal.Open(str(path))
    except RuntimeError as e:
        raise ValueError(f"cannot open factor raster {path}: {e}") from None
    if src is None:
        raise ValueError(f"cannot open factor raster {path}")
    f32 = _float32_exact(src.GetRasterBand(1))
    srs = target_ds.GetProjection() or src.GetProjection()
    xscale, yscale = warp_scale(src, srs, bounds, xs, ys)
    opts = gdal.WarpOptions(
        format="VRT",
        outputBounds=bounds,
        width=xs,
        height=ys,
        dstSRS=srs or None,
        resampleAlg="near" if categorical else "bilinear",
        errorThreshold=0,
        outputType=gdal.GDT_Float32 if f32 else gdal.GDT_Float64,
        dstNodata=float("nan"),
        warpOptions=["XSCALE=%.17g" % xscale, "YSCALE=%.17g" % yscale],
    )
    vrt = gdal.Warp("", src, options=opts)
    if vrt is None:
        raise ValueError(f"factor raster {path}: cannot warp it to the target grid")
    return vrt, (np.float32 if f32 else np.float64)


def compact_block(y, factors, y_dtype=np.float64, dtypes=None):
    """Keep the pixels of one block where Y is finite (pure block function).

    ``y``: 2-D block of Y (NaN = NoData); ``factors``: list of 2-D blocks on the
    same grid. Returns ``(y_valid, [factor values at those pixels])`` as 1-D
    arrays in row-major order, cast to ``y_dtype`` / ``dtypes`` (lossless
    casts chosen by the caller); factor NoData stays NaN (masked per factor).
    """
    ok = np.isfinite(y)
    dtypes = dtypes or [np.float64] * len(factors)
    return y[ok].astype(y_dtype, copy=False), [f[ok].astype(d, copy=False) for f, d in zip(factors, dtypes)]


def read_raster_samples(target_path, factor_paths, memory_mb=None, check=None, progress=None):
    """Y and every factor at the pixels where Y is valid, streamed in row blocks.

    ``factor_paths``: ``{name: (path, categorical)}``; each factor is warped to
    the target grid through a VRT (:func:`warp_to_target`) and read in the same
    row blocks as Y under ``memory_mb``; only compact 1-D arrays of the valid
    target pixels are kept (float32 where lossless). ``check()`` is called once
    per block (raise there to cancel); ``progress(fraction)`` after each block.
    Returns ``(y, {name: values}, info)`` with ``info = {"grid", "pixels",
    "dtypes"}``. Raises ValueError when a factor does not overlap the target.
    Identical to reading whole bands: the values and their order do not
    depend on the block height.
    """
    from ..io.rasters import RasterGrid, open_raster, read_block
    from ..io.windows import DEFAULT_MEMORY_MB, row_blocks

    memory_mb = DEFAULT_MEMORY_MB if memory_mb is None else memory_mb
    tds = open_raster(target_path)
    y_dtype = np.float32 if _float32_exact(tds.GetRasterBand(1)) else np.float64
    names = list(factor_paths)
    vrts, dtypes = [], []
    for name in names:
        path, categorical = factor_paths[name]
        v, d = warp_to_target(path, tds, categorical, target_path)
        vrts.append(v)
        dtypes.append(d)
    xs, ys = tds.RasterXSize, tds.RasterYSize
    # per row: Y as read + float64 + mask + index, each factor read + cast + compact copy
    per_row = xs * (8 + 8 + 1 + 8 + len(names) * (8 + 8 + 8))
    blocks = row_blocks(ys, per_row, memory_mb)
    y_parts, f_parts = [], [[] for _ in names]
    seen = np.zeros(len(names), dtype=bool)
    for i, (r0, nr) in enumerate(blocks):
        if check is not None:
            check()
        yb = read_block(tds, r0, nr, bands=[1])[0]
        fb = [read_block(v, r0, nr, bands=[1], dtype=d, apply_scale=False)[0] for v, d in zip(vrts, dtypes)]
        for j, f in enumerate(fb):
            if not seen[j]:
                seen[j] = bool(np.isfinite(f).any())
        yv, fv = compact_block(yb, fb, y_dtype, dtypes)
        y_parts.append(yv)
        for j, f in enumerate(fv):
            f_parts[j].append(f)
        if progress is not None:
            progress((i + 1) / len(blocks))
    for j, name in enumerate(names):
        if not seen[j]:
            raise ValueError(_no_factor_values(factor_paths[name][0], target_path))
    grid = RasterGrid.of(tds)
    vrts = tds = None
    y = np.concatenate(y_parts) if y_parts else np.zeros(0, y_dtype)
    factors = {n: (np.concatenate(f_parts[j]) if f_parts[j] else np.zeros(0, dtypes[j])) for j, n in enumerate(names)}
    return y, factors, {"grid": grid, "pixels": xs * ys, "dtypes": dict(zip(names, dtypes))}


def write_stratum_mean_raster(
    out_path,
    target_path,
    factor_path,
    categorical,
    coding,
    lut,
    memory_mb=None,
    check=None,
    band_name="stratum mean",
    metadata=None,
):
    """Every pixel of the target grid gets ``lut`` of its stratum of ``coding``.

    The factor is warped exactly as in :func:`read_raster_samples`, read in
    row blocks under ``memory_mb``, classified with :func:`apply_coding` and
    written block by block with the atomic :class:`~subsidence_toolkit.core.io.rasters.RasterWriter`
    (no output on error or cancel).
    """
    from ..io.rasters import RasterGrid, RasterWriter, open_raster, read_block
    from ..io.windows import DEFAULT_MEMORY_MB, row_blocks

    memory_mb = DEFAULT_MEMORY_MB if memory_mb is None else memory_mb
    tds = open_raster(target_path)
    vrt, dtype = warp_to_target(factor_path, tds, categorical, target_path)
    grid = RasterGrid.of(tds)
    xs, ys = tds.RasterXSize, tds.RasterYSize
    with RasterWriter(out_path, grid, 1, band_names=[band_name], units="", metadata=metadata) as w:
        for r0, nr in row_blocks(ys, xs * (8 + 8 + 4 + 8 + 8), memory_mb):
            if check is not None:
                check()
            vals = read_block(vrt, r0, nr, bands=[1], dtype=dtype, apply_scale=False)[0]
            w.write_block(r0, map_strata(lut, apply_coding(coding, vals)).astype(np.float32))
    vrt = tds = None
    return out_path
