"""Lagged correlation of a driver series X (e.g. GWSA) and a response series Y (e.g. deformation).

Method (Liu et al. 2024, *Land* 13:184, sec. 3.3; Huang et al. 2025, *JGSE* 13:74, sec. 3.3.1):
temporal (month-to-month) and cumulative correlation between class-averaged surface
deformation and groundwater storage anomalies, and the lag at which deformation follows
groundwater.

Conventions
-----------
* Monthly series are keyed by calendar month (:func:`core.io.dates.month_index`); several
  values in the same calendar month are averaged (a warning says so).
* **Lag k >= 0 means X leads Y by k months**::

      R_k = Pearson(Y[t + k], X[t])   over the months t where both exist

  with the means taken over the overlapping pairs only (= ``scipy.stats.pearsonr`` on the
  paired values). Negative lags (Y leads X) are optional.
* Series modes (what is correlated):

  - ``levels``: the values as given;
  - ``cumulative``: cumulative change from a base month b, ``C_t = sum_{s=b+1..t} dX_s = X_t - X_b``
    (the telescoping sum is evaluated as the difference of two observed levels, so a gap does
    not break it and nothing is zero-filled). Subtracting a constant leaves Pearson's r,
    its t-test p, the lag-1 autocorrelations and hence N_eff unchanged: **cumulative gives
    exactly the r of levels at every lag**; it is offered because it is what Liu et al. (2024) and Huang et al. (2025)
    plot (both curves start at 0 in the base month);
  - ``temporal``: month-to-month change ``dX_t = X_t - X_{t-1}``; missing when month t or t-1
    is missing (a change across a gap is never bridged, never zero);
  - ``both``: ``cumulative`` and ``temporal`` (the pair used by Liu et al. 2024).
* Detrending (applied to the series as analysed, each series on its own valid months):
  ``none`` (default, as in both papers), ``linear`` (least-squares a + b t),
  ``harmonic`` (linear + annual + semi-annual sine/cosine, the design matrix of
  gravity-toolkit ``regress(ORDER=1, CYCLES=[0.5, 1.0])``), ``climatology`` (subtract the mean
  of each calendar month).
* Significance: two-sided t-test ``t = r sqrt((N-2)/(1-r^2))``, df = N - 2 (the p of
  ``scipy.stats.pearsonr``). Because monthly levels are strongly autocorrelated this p is far
  too optimistic, so the effective sample size of Bretherton, Widmann, Dymnikov, Wallace &
  Blade (1999, J. Climate 12:1990-2009, eq. 31) for two AR(1) series is also given::

      N_eff = N (1 - r1 r2) / (1 + r1 r2),   capped at N

  where r1, r2 are the lag-1 autocorrelations of the two *paired* series (the X and the
  shifted Y values entering R_k), and ``p_eff`` is the same t-test with df = N_eff - 2.
* The best lag of a group and series mode is the lag with the largest |r| (or largest /
  smallest r, see ``best_by``).

Everything here is plain numpy/pandas/scipy (no QGIS). The functions on arrays are pure and
work on rows x months arrays (one row per group, or per pixel with a shared X), vectorised over
rows; least-squares detrending is solved once per validity pattern. The
table front end :func:`lagged_correlation_table` does the grouping and input checks and
returns a :class:`LagCorrResult` (output table + the analysed series for plotting + warnings).
"""

import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..io.dates import month_index, month_label, parse_date
from ..io.lazy import lazy_module

pd = lazy_module("pandas")
special = lazy_module("scipy.special")

SERIES_MODES = ("levels", "cumulative", "temporal")
SERIES_CHOICES = ("levels", "cumulative", "temporal", "both")
DETREND_CHOICES = ("none", "linear", "harmonic", "climatology")
BEST_BY_CHOICES = ("abs", "max", "min")
MIN_PAIRS = 4
MIN_ADJACENT_PAIRS = 3

OUTPUT_COLUMNS = (
    "group",
    "x",
    "y",
    "series",
    "detrend",
    "lag",
    "n",
    "r",
    "p",
    "r1_x",
    "r1_y",
    "n_eff",
    "p_eff",
    "best_lag",
    "note",
)

_YEAR_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})\s*$")


# --------------------------------------------------------------------------- statistics
def pearson_p(r, n):
    """Two-sided p of Pearson's r under the white-noise null, df = ``n - 2`` (``n`` may be fractional).

    ``p = 2 * P(T_{n-2} > |t|)`` with ``t = r sqrt((n-2)/(1-r^2))``; written as the regularised
    incomplete beta function ``2 I_{(1-|r|)/2}((n-2)/2, (n-2)/2)``, the form
    ``scipy.stats.pearsonr`` uses (the sampling distribution of r is a beta distribution on
    [-1, 1]). NaN where ``n <= 2`` or r is NaN.
    """
    r = np.asarray(r, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    r, n = np.broadcast_arrays(r, n)
    out = np.full(r.shape, np.nan)
    ok = np.isfinite(r) & np.isfinite(n) & (n > 2)
    if ok.any():
        ab = (n[ok] - 2.0) / 2.0
        x = 0.5 * (1.0 - np.minimum(np.abs(r[ok]), 1.0))
        out[ok] = np.clip(2.0 * special.betainc(ab, ab, x), 0.0, 1.0)
    return out if out.ndim else float(out)


def lag1_autocorrelation(a, min_pairs=MIN_ADJACENT_PAIRS):
    """Sample lag-1 autocorrelation of a series on a complete monthly axis (NaN = missing).

    ``r1 = [sum_{t, t+1 valid} (a_t - m)(a_{t+1} - m) / P] / [sum_{t valid} (a_t - m)^2 / N]``
    with m the mean of the N valid values and P the number of adjacent valid pairs: the
    lag-1 autocovariance averaged over the pairs that exist, divided by the variance. Averaging
    (rather than summing over N) keeps the estimate unbiased by gaps: a series with every 7th
    month missing has only 5/7 of its pairs, and the plain ACF estimator would shrink r1 by
    that factor. NaN when fewer than ``min_pairs`` adjacent valid pairs or no variance.
    """
    a = np.asarray(a, dtype=np.float64)
    valid = np.isfinite(a)
    if valid.sum() < 2:
        return float("nan")
    d = np.where(valid, a - a[valid].mean(), np.nan)
    adj = valid[:-1] & valid[1:]
    if adj.sum() < min_pairs:
        return float("nan")
    den = float(np.nansum(d * d)) / float(valid.sum())
    if den <= 0:
        return float("nan")
    r1 = float(np.sum(d[:-1][adj] * d[1:][adj])) / float(adj.sum()) / den
    return max(-1.0, min(1.0, r1))


def effective_n(n, r1, r2):
    """Effective sample size for the correlation of two AR(1) series.

    Bretherton et al. (1999), J. Climate 12:1990-2009, eq. 31:
    ``N_eff = N (1 - r1 r2) / (1 + r1 r2)``, capped at N (a negative product would otherwise
    *raise* the sample size). NaN when r1 or r2 is NaN.
    """
    n = np.asarray(n, dtype=np.float64)
    rr = np.asarray(r1, dtype=np.float64) * np.asarray(r2, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ne = n * (1.0 - rr) / (1.0 + rr)
        ne = np.where(np.isfinite(ne), np.minimum(ne, n), np.nan)
    return ne if ne.ndim else float(ne)


# --------------------------------------------------------------------------- series
def to_month(value):
    """A date-like value -> calendar month index (:func:`month_index`), or None if not a date.

    Accepts what :func:`core.io.dates.parse_date` accepts (``YYYY-MM-DD``, ``YYYYMMDD``,
    ``DYYYYMMDD``, date/datetime objects), pandas Timestamps, and ``YYYY-MM``.
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        if pd.isna(value):
            return None
        value = value.to_pydatetime()
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        value = pd.Timestamp(value).to_pydatetime()
    d = parse_date(value)
    if d is None and isinstance(value, str):
        m = _YEAR_MONTH.match(value)
        if m:
            d = parse_date("%s-%02d-01" % (m.group(1), int(m.group(2))))
    return None if d is None else month_index(d)


def _rows(a):
    """``a`` as a float 2-D array (rows x months) and whether it was 1-D."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        return a[None, :], True
    if a.ndim != 2:
        raise ValueError("series must be 1-D (months) or 2-D (rows x months)")
    return a, False


def transform_series(a, mode, base=None):
    """Levels / cumulative / temporal series on a complete monthly axis (last axis; NaN = missing).

    ``a``: 1-D (months) or 2-D (rows x months). ``cumulative``: ``a - a[base]`` where ``base`` is
    a position on the axis (an int, or one per row; default: each row's first valid value); a
    row whose base month is missing (or base < 0) is all NaN. ``temporal``: ``a[t] - a[t-1]``,
    NaN at the first month and wherever either month is missing.
    """
    a2, one = _rows(a)
    rows, m = a2.shape
    if mode == "levels":
        out = a2.copy()
    elif mode == "cumulative":
        valid = np.isfinite(a2)
        if base is None:
            b = np.where(valid.any(axis=1), valid.argmax(axis=1), -1)
        else:
            b = np.broadcast_to(np.asarray(base, dtype=np.int64), (rows,))
        ok = (b >= 0) & (b < m)
        bv = np.full(rows, np.nan)
        bv[ok] = a2[np.flatnonzero(ok), b[ok]]
        out = a2 - bv[:, None]
    elif mode == "temporal":
        out = np.full_like(a2, np.nan)
        out[:, 1:] = a2[:, 1:] - a2[:, :-1]  # NaN propagates: a change across a missing month is missing
    else:
        raise ValueError("unknown series mode %r (expected one of %s)" % (mode, ", ".join(SERIES_MODES)))
    return out[0] if one else out


def design_matrix(t, method):
    """Columns of the detrending model at times ``t`` (months): linear or linear + annual + semi-annual."""
    t = np.asarray(t, dtype=np.float64)
    cols = [np.ones_like(t), t]
    if method == "harmonic":
        for period in (12.0, 6.0):
            w = 2.0 * np.pi * t / period
            cols += [np.sin(w), np.cos(w)]
    return np.column_stack(cols)


def detrend_rows(a, method, months=None):
    """Vectorised :func:`detrend_series` for rows x months. Returns (detrended, notes per row).

    Least-squares models are solved once per validity pattern (rows with the same missing
    months share one factorisation, all their right-hand sides together).
    """
    a2, _ = _rows(a)
    rows, m = a2.shape
    notes = [""] * rows
    if method == "none":
        return a2.copy(), notes
    months = np.arange(m) if months is None else np.asarray(months, dtype=np.int64)
    valid = np.isfinite(a2)
    out = np.full_like(a2, np.nan)
    if method in ("linear", "harmonic"):
        g = design_matrix((months - months[0]).astype(np.float64), method)
        need = g.shape[1] + 1
        counts = valid.sum(axis=1)
        for i in np.flatnonzero((counts < need) & (counts > 0)):
            notes[i] = "%s detrending needs at least %d values, found %d" % (method, need, int(counts[i]))
        ok = np.flatnonzero(counts >= need)
        if ok.size:
            patterns, inverse = np.unique(valid[ok], axis=0, return_inverse=True)
            for p in range(patterns.shape[0]):
                idx = ok[inverse.ravel() == p]
                cols = patterns[p]
                coef, *_ = np.linalg.lstsq(g[cols], a2[np.ix_(idx, np.flatnonzero(cols))].T, rcond=None)
                out[idx] = a2[idx] - (g @ coef).T
        return out, notes
    if method == "climatology":
        cal = months % 12
        for c in np.unique(cal):
            sel = cal == c
            sub = a2[:, sel]
            n = np.isfinite(sub).sum(axis=1)
            mean = np.where(n > 0, np.nansum(sub, axis=1) / np.maximum(n, 1), np.nan)
            out[:, sel] = sub - mean[:, None]
        return out, notes
    raise ValueError("unknown detrending %r (expected one of %s)" % (method, ", ".join(DETREND_CHOICES)))


def detrend_series(a, method, months=None):
    """Remove a trend / seasonal model from a series on a complete monthly axis.

    ``none``; ``linear`` (a + b t); ``harmonic`` (a + b t + annual and semi-annual sine/cosine,
    the design of gravity-toolkit ``regress(ORDER=1, CYCLES=[0.5, 1.0])``), fitted by least
    squares to the valid months; ``climatology`` (subtract the mean of each calendar month).
    ``months``: the month index of each element (harmonic phases, calendar months; default
    ``0..n-1``). 1-D input: returns (detrended, note) where note is '' or says why the result
    is all NaN (too few values for the model); 2-D input: see :func:`detrend_rows`.
    """
    out, notes = detrend_rows(a, method, months)
    if np.asarray(a).ndim == 1:
        return out[0], notes[0]
    return out, notes


def _pair_arrays(x, y, k):
    """X[t] and Y[t+k] on the axis of t (rows x months), NaN outside the overlap."""
    rows, m = x.shape
    xs = np.full((rows, m), np.nan)
    ys = np.full((rows, m), np.nan)
    if k >= 0:
        if k < m:
            xs[:, : m - k] = x[:, : m - k]
            ys[:, : m - k] = y[:, k:]
    else:
        j = -k
        if j < m:
            xs[:, j:] = x[:, j:]
            ys[:, j:] = y[:, : m - j]
    return xs, ys


def lag1_autocorrelation_rows(d, valid, min_pairs=MIN_ADJACENT_PAIRS):
    """Lag-1 autocorrelation per row of demeaned values ``d`` (0 where not ``valid``).

    Same estimator as :func:`lag1_autocorrelation`: mean product over adjacent valid months
    divided by the mean square over valid months.
    """
    adj = valid[:, :-1] & valid[:, 1:]
    npair = adj.sum(axis=1)
    nval = valid.sum(axis=1)
    num = np.where(adj, d[:, :-1] * d[:, 1:], 0.0).sum(axis=1)
    den = (d * d).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r1 = (num / np.maximum(npair, 1)) / (den / np.maximum(nval, 1))
    r1 = np.where((npair >= min_pairs) & (den > 0), np.clip(r1, -1.0, 1.0), np.nan)
    return r1


def lag_statistics(x, y, lags, min_pairs=MIN_PAIRS):
    """Lagged Pearson statistics of series on the same complete monthly axis.

    ``x``, ``y``: 1-D (months) or 2-D (rows x months, e.g. one row per group or per pixel;
    ``x`` may be 1-D with 2-D ``y`` and is then shared by every row). For each lag k the
    pairs are ``(Y[t+k], X[t])`` where both are finite. Returns a dict of arrays ``n, r, p,
    r1_x, r1_y, n_eff, p_eff`` of shape (lags,) or (rows, lags). r is NaN when a row has fewer
    than ``min_pairs`` pairs or a constant series. Everything is vectorised over rows.
    """
    x2, one_x = _rows(x)
    y2, one_y = _rows(y)
    if x2.shape[1] != y2.shape[1]:
        raise ValueError("x and y must be on the same monthly axis (%d vs %d months)" % (x2.shape[1], y2.shape[1]))
    rows = max(x2.shape[0], y2.shape[0])
    x2 = np.broadcast_to(x2, (rows, x2.shape[1]))
    y2 = np.broadcast_to(y2, (rows, y2.shape[1]))
    lags = [int(k) for k in lags]
    keys = ("n", "r", "p", "r1_x", "r1_y", "n_eff", "p_eff")
    out = {k: np.full((rows, len(lags)), np.nan) for k in keys}
    for i, k in enumerate(lags):
        xs, ys = _pair_arrays(x2, y2, k)
        both = np.isfinite(xs) & np.isfinite(ys)
        n = both.sum(axis=1)
        out["n"][:, i] = n
        nn = np.maximum(n, 1)
        xz = np.where(both, xs, 0.0)
        yz = np.where(both, ys, 0.0)
        dx = np.where(both, xs - (xz.sum(axis=1) / nn)[:, None], 0.0)
        dy = np.where(both, ys - (yz.sum(axis=1) / nn)[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        syy = (dy * dy).sum(axis=1)
        # constant (up to rounding) series have no correlation
        scale_x = np.maximum(1.0, np.abs(xz).max(axis=1)) * np.sqrt(nn)
        scale_y = np.maximum(1.0, np.abs(yz).max(axis=1)) * np.sqrt(nn)
        good = (n >= min_pairs) & (np.sqrt(sxx) > 1e-12 * scale_x) & (np.sqrt(syy) > 1e-12 * scale_y)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = ((dx / np.sqrt(sxx)[:, None]) * (dy / np.sqrt(syy)[:, None])).sum(axis=1)
        r = np.where(good, np.clip(r, -1.0, 1.0), np.nan)
        out["r"][:, i] = r
        out["p"][:, i] = pearson_p(r, n)
        r1x = np.where(good, lag1_autocorrelation_rows(dx, both), np.nan)
        r1y = np.where(good, lag1_autocorrelation_rows(dy, both), np.nan)
        out["r1_x"][:, i] = r1x
        out["r1_y"][:, i] = r1y
        ne = effective_n(n, r1x, r1y)
        out["n_eff"][:, i] = ne
        out["p_eff"][:, i] = pearson_p(r, ne)
    if one_x and one_y:
        return {k: v[0] for k, v in out.items()}
    return out


def best_lag_index(r, best_by="abs"):
    """Index of the best lag among finite r: largest |r| (``abs``), largest r (``max``) or smallest (``min``).

    1-D ``r``: an int or None (no finite r). 2-D (rows x lags): an int array, -1 where none.
    """
    r = np.asarray(r, dtype=np.float64)
    if best_by == "abs":
        score = np.abs(r)
    elif best_by == "max":
        score = r.copy()
    elif best_by == "min":
        score = -r
    else:
        raise ValueError("unknown best_by %r (expected one of %s)" % (best_by, ", ".join(BEST_BY_CHOICES)))
    fin = np.isfinite(score)
    score = np.where(fin, score, -np.inf)
    idx = np.where(fin.any(axis=-1), np.argmax(score, axis=-1), -1)
    if r.ndim == 1:
        return None if idx < 0 else int(idx)
    return idx


def expand_series(series):
    """``'both'`` -> ``['cumulative', 'temporal']``; a string or list of modes -> list; validated."""
    if isinstance(series, str):
        series = [series]
    out = []
    for s in series:
        s = str(s).strip().lower()
        if s == "both":
            out += ["cumulative", "temporal"]
        elif s in SERIES_MODES:
            out.append(s)
        else:
            raise ValueError("unknown series mode %r (expected one of %s)" % (s, ", ".join(SERIES_CHOICES)))
    seen = []
    for s in out:
        if s not in seen:
            seen.append(s)
    return seen


def lag_list(max_lag, negative_lags=False):
    """Lags ``0..max_lag`` (or ``-max_lag..max_lag``)."""
    max_lag = int(max_lag)
    if max_lag < 0:
        raise ValueError("the maximum lag must be >= 0 months, got %d" % max_lag)
    return list(range(-max_lag if negative_lags else 0, max_lag + 1))


@dataclass(frozen=True)
class LagOptions:
    """How :func:`correlate_rows` correlates: ``lags`` (months), ``series`` modes (levels, cumulative,
    temporal), ``detrend``, ``base_month`` (month index of the cumulative base; default: per row the first
    month where both series have a value), ``min_pairs`` and ``best_by`` (abs, max, min)."""

    lags: tuple
    series: tuple = ("levels",)
    detrend: str = "none"
    base_month: Optional[int] = None
    min_pairs: int = MIN_PAIRS
    best_by: str = "abs"


def correlate_rows(x, y, months, options):
    """Lagged correlation of many series pairs on one complete monthly axis (vectorised over rows).

    ``x``, ``y``: rows x months (one row per group), ``months``: the month index of each column,
    ``options``: :class:`LagOptions`.
    Returns a dict mode -> ``{"x", "y"`` (analysed series), ``"stats"`` (:func:`lag_statistics`),
    ``"best"`` (best-lag index per row, -1 if none), ``"notes"`` (list of lists of messages per row)``}``.
    """
    lags, detrend, base_month = list(options.lags), options.detrend, options.base_month
    min_pairs, best_by = options.min_pairs, options.best_by
    x2, _ = _rows(x)
    y2, _ = _rows(y)
    months = np.asarray(months, dtype=np.int64)
    rows = x2.shape[0]
    if detrend not in DETREND_CHOICES:
        raise ValueError("unknown detrending %r (expected one of %s)" % (detrend, ", ".join(DETREND_CHOICES)))
    out = {}
    for mode in expand_series(options.series):
        notes = [[] for _ in range(rows)]
        base = None
        if mode == "cumulative":
            if base_month is not None:
                base = int(base_month) - int(months[0]) if months.size else -1
                inside = 0 <= base < months.size
                for name, a in (("X", x2), ("Y", y2)):
                    miss = np.ones(rows, bool) if not inside else ~np.isfinite(a[:, base])
                    for i in np.flatnonzero(miss):
                        notes[i].append("cumulative: base month %s missing in %s" % (month_label(base_month), name))
            else:
                common = np.isfinite(x2) & np.isfinite(y2)
                base = np.where(common.any(axis=1), common.argmax(axis=1), -1)
                for i in np.flatnonzero(base < 0):
                    notes[i].append("cumulative: no month where both series exist")
        xa = transform_series(x2, mode, base)
        ya = transform_series(y2, mode, base)
        xa, nx = detrend_rows(xa, detrend, months)
        ya, ny = detrend_rows(ya, detrend, months)
        for i in range(rows):
            if nx[i]:
                notes[i].append("%s: X: %s" % (mode, nx[i]))
            if ny[i]:
                notes[i].append("%s: Y: %s" % (mode, ny[i]))
        st = lag_statistics(xa, ya, lags, min_pairs=min_pairs)
        few = st["n"] < min_pairs
        for i in np.flatnonzero(few.any(axis=1)):
            notes[i].append(
                "%s: fewer than %d overlapping months at lag %s"
                % (mode, min_pairs, ", ".join(str(lags[j]) for j in np.flatnonzero(few[i])))
            )
        const = ~few & ~np.isfinite(st["r"])
        for i in np.flatnonzero(const.any(axis=1)):
            notes[i].append(
                "%s: r undefined (a constant series) at lag %s"
                % (mode, ", ".join(str(lags[j]) for j in np.flatnonzero(const[i])))
            )
        out[mode] = {"x": xa, "y": ya, "stats": st, "best": best_lag_index(st["r"], best_by), "notes": notes}
    return out


def _row_notes(st, min_pairs):
    """The per-row note text of the output table (rows x lags array of str)."""
    note = np.full(st["n"].shape, "", dtype=object)
    few = st["n"] < min_pairs
    const = ~few & ~np.isfinite(st["r"])
    noacf = ~few & ~const & ~np.isfinite(st["n_eff"])
    small = ~few & ~const & ~noacf & (st["n_eff"] <= 2)
    note[few] = "fewer than %d overlapping months" % min_pairs
    note[const] = "constant series, r undefined"
    note[noacf] = "lag-1 autocorrelation not estimable (fewer than %d adjacent months)" % MIN_ADJACENT_PAIRS
    note[small] = "effective sample size <= 2"
    return note


# --------------------------------------------------------------------------- tables
@dataclass
class LagCorrResult:
    """Output of :func:`lagged_correlation_table`.

    ``table``: one row per group, series mode and lag (columns: the group fields, then
    :data:`OUTPUT_COLUMNS`). ``curves``: list of dicts ``{group, label, series, months, x, y}``
    with the analysed series (for plots). ``warnings``: human-readable messages.
    """

    table: "pd.DataFrame"
    curves: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    x_label: str = "X"
    y_label: str = "Y"
    lags: list = field(default_factory=list)


def _numeric(df, col, what):
    """Column ``col`` as float; empty/None are missing; anything else non-numeric is an error."""
    raw = df[col]
    if pd.api.types.is_bool_dtype(raw):
        raise ValueError("%s field '%s' is boolean, not numeric" % (what, col))
    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype(np.float64)
    as_text = raw.astype(object).where(raw.notna(), None)
    blank = as_text.map(lambda v: v is None or (isinstance(v, str) and v.strip() == ""))
    conv = pd.to_numeric(as_text.where(~blank, None), errors="coerce")
    bad = conv.isna() & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError("%s field '%s' is not numeric: row %d has %r" % (what, col, i + 1, raw.iloc[i]))
    return conv.astype(np.float64)


def _months(df, col):
    """Month index of every row of the date field (each distinct value parsed once)."""
    vals = df[col].tolist()
    cache = {}
    out = np.empty(len(vals), dtype=np.int64)
    for i, v in enumerate(vals):
        try:
            m = cache[v]
        except KeyError:
            m = cache[v] = to_month(v)
        except TypeError:  # unhashable value
            m = to_month(v)
        if m is None:
            raise ValueError(
                "date field '%s': row %d has %r, which is not a date "
                "(expected YYYY-MM-DD, YYYYMMDD, YYYY-MM or a date value)" % (col, i + 1, v)
            )
        out[i] = m
    return out


def _check_columns(df, cols, what):
    for c in cols:
        if c not in df.columns:
            raise ValueError("%s field '%s' not found; the table has: %s" % (what, c, ", ".join(map(str, df.columns))))


def group_label(group_fields, key):
    """``'area=A, class=1'`` (or ``'all'`` without grouping)."""
    if not group_fields:
        return "all"
    return ", ".join("%s=%s" % (f, v) for f, v in zip(group_fields, key))


def _check_options(detrend, best_by):
    if detrend not in DETREND_CHOICES:
        raise ValueError("unknown detrending %r (expected one of %s)" % (detrend, ", ".join(DETREND_CHOICES)))
    if best_by not in BEST_BY_CHOICES:
        raise ValueError("unknown best_by %r (expected one of %s)" % (best_by, ", ".join(BEST_BY_CHOICES)))


@dataclass
class _Observations:
    """Every X and Y value of the table in one frame (``_m`` month index, ``_v`` value, ``_isx`` X or Y,
    the group fields) with the labels of X and Y."""

    work: "pd.DataFrame"
    x_label: str
    y_label: str


def _long_observations(df, date_field, group_fields, variable_field, value_field, names):
    """Observations of a long table: ``variable_field`` names the variable of each row, ``names`` = (X, Y)."""
    x_name, y_name = names
    if not value_field:
        raise ValueError("a long table needs a value field besides the variable field '%s'" % variable_field)
    _check_columns(df, [variable_field], "variable")
    _check_columns(df, [value_field], "value")
    if x_name is None or y_name is None or str(x_name) == "" or str(y_name) == "":
        raise ValueError("a long table needs the names of the X and Y variables in field '%s'" % variable_field)
    if str(x_name) == str(y_name):
        raise ValueError("X and Y are the same variable '%s' of field '%s'" % (x_name, variable_field))
    if value_field in (date_field, variable_field) or value_field in group_fields:
        raise ValueError("value field '%s' is also used as date/variable/group field" % value_field)
    var_names = df[variable_field].astype(str)
    present = set(var_names)
    for nm, what in ((x_name, "X"), (y_name, "Y")):
        if str(nm) not in present:
            raise ValueError(
                "%s variable '%s' does not occur in field '%s' (values: %s)"
                % (what, nm, variable_field, ", ".join(sorted(present)[:20]))
            )
    sub = df[var_names.isin([str(x_name), str(y_name)])].reset_index(drop=True)
    months = _months(sub, date_field)
    vals = _numeric(sub, value_field, "value")
    is_x = (sub[variable_field].astype(str) == str(x_name)).to_numpy()
    work = pd.DataFrame({"_m": months, "_v": vals.to_numpy(), "_isx": is_x})
    for g in group_fields:
        work[g] = sub[g].to_numpy()
    return _Observations(work, str(x_name), str(y_name))


def _wide_observations(df, date_field, group_fields, x_field, y_field):
    """Observations of a wide table: X in ``x_field``, Y in ``y_field``."""
    if not x_field or not y_field:
        raise ValueError("give the X and Y fields (or a variable field for a long table)")
    _check_columns(df, [x_field], "X")
    _check_columns(df, [y_field], "Y")
    if x_field == y_field:
        raise ValueError("X and Y are the same field '%s'" % x_field)
    for f, what in ((x_field, "X"), (y_field, "Y")):
        if f == date_field or f in group_fields:
            raise ValueError("%s field '%s' is also the date or a group field" % (what, f))
    months = _months(df, date_field)
    xv = _numeric(df, x_field, "X").to_numpy()
    yv = _numeric(df, y_field, "Y").to_numpy()
    n = len(df)
    work = pd.DataFrame(
        {
            "_m": np.concatenate([months, months]),
            "_v": np.concatenate([xv, yv]),
            "_isx": np.r_[np.ones(n, bool), np.zeros(n, bool)],
        }
    )
    for g in group_fields:
        work[g] = np.concatenate([df[g].to_numpy(), df[g].to_numpy()])
    return _Observations(work, str(x_field), str(y_field))


def _group_codes(work, group_fields):
    """Group code of every observation, the key tuple of every group and the first row of each group
    (sorted keys; order of appearance when the keys cannot be sorted)."""
    if not group_fields:
        return np.zeros(len(work), dtype=np.int64), [()], None
    keyed = work.copy()
    for g in group_fields:  # None / NaN keys form their own group ('')
        if keyed[g].isna().any():
            keyed[g] = keyed[g].astype(object).where(keyed[g].notna(), "")
    by = group_fields if len(group_fields) > 1 else group_fields[0]
    try:
        codes = keyed.groupby(by, sort=True).ngroup().to_numpy()
    except TypeError:  # keys of mixed types cannot be sorted: keep order of appearance
        codes = keyed.groupby(by, sort=False).ngroup().to_numpy()
    firsts = keyed.assign(_c=codes).drop_duplicates("_c").sort_values("_c")
    keys = [tuple(r) for r in firsts[group_fields].itertuples(index=False, name=None)]
    return codes, keys, firsts


@dataclass
class _MonthlyGrid:
    """One row per group, one column per calendar month: ``x``, ``y`` (several values in a month are
    averaged: ``merged`` counts such months), ``months`` (month index per column), ``first``/``last``
    column with a value per group."""

    months: np.ndarray
    x: np.ndarray
    y: np.ndarray
    first: np.ndarray
    last: np.ndarray
    merged: int


def _monthly_grid(work, ngroups):
    fin = work[np.isfinite(work["_v"].to_numpy())]
    agg = fin.groupby(["_c", "_isx", "_m"], sort=False)["_v"].agg(["mean", "size"]).reset_index()
    merged_total = int((agg["size"] > 1).sum())
    if len(agg):
        m0, m1 = int(agg["_m"].min()), int(agg["_m"].max())
    else:
        m0, m1 = 0, -1
    months = np.arange(m0, m1 + 1, dtype=np.int64)
    xall = np.full((ngroups, months.size), np.nan)
    yall = np.full((ngroups, months.size), np.nan)
    isx = agg["_isx"].to_numpy(bool)
    c = agg["_c"].to_numpy(np.int64)
    col = agg["_m"].to_numpy(np.int64) - m0
    xall[c[isx], col[isx]] = agg["mean"].to_numpy()[isx]
    yall[c[~isx], col[~isx]] = agg["mean"].to_numpy()[~isx]
    present = np.isfinite(xall) | np.isfinite(yall)
    first = np.where(present.any(axis=1), present.argmax(axis=1) if months.size else 0, 0)
    last = np.where(present.any(axis=1), months.size - 1 - present[:, ::-1].argmax(axis=1) if months.size else -1, -1)
    return _MonthlyGrid(months, xall, yall, first, last, merged_total)


_STATS_KEYS = ("n", "r", "p", "r1_x", "r1_y", "n_eff", "p_eff")


@dataclass
class _Correlations:
    """Statistics cube (groups x series x lags) of every key of :func:`lag_statistics`, the best-lag flags,
    the note per row, the curves and the notes per group."""

    cube: dict
    best: np.ndarray
    note: np.ndarray
    curves: list
    group_notes: list


def _correlate_groups(grid, options, groups, chunk_rows, progress):
    """Correlate every group's row of ``grid`` (``groups`` = (labels, keys)), ``chunk_rows`` groups at a time."""
    labels, keys = groups
    ngroups = len(labels)
    modes, nl = options.series, len(options.lags)
    shape = (ngroups, len(modes), nl)
    acc = _Correlations(
        cube={k: np.full(shape, np.nan) for k in _STATS_KEYS},
        best=np.zeros(shape, dtype=bool),
        note=np.full(shape, "", dtype=object),
        curves=[],
        group_notes=[[] for _ in range(ngroups)],
    )
    if grid.months.size:
        no_x, no_y = ~np.isfinite(grid.x).any(axis=1), ~np.isfinite(grid.y).any(axis=1)
    else:
        no_x = no_y = np.ones(ngroups, bool)
    for i in np.flatnonzero(no_x):
        acc.group_notes[i].append("X has no values")
    for i in np.flatnonzero(no_y):
        acc.group_notes[i].append("Y has no values")
    chunk = max(1, int(chunk_rows))
    for g0 in range(0, ngroups, chunk):
        g1 = min(ngroups, g0 + chunk)
        res = correlate_rows(grid.x[g0:g1], grid.y[g0:g1], grid.months, options)
        for j, mode in enumerate(modes):
            r = res[mode]
            for k in _STATS_KEYS:
                acc.cube[k][g0:g1, j, :] = r["stats"][k]
            b = r["best"]
            has = b >= 0
            acc.best[np.arange(g0, g1)[has], j, b[has]] = True
            acc.note[g0:g1, j, :] = _row_notes(r["stats"], options.min_pairs)
            for i in range(g1 - g0):
                acc.group_notes[g0 + i] += r["notes"][i]
        for i in range(g0, g1):
            sl = slice(grid.first[i], grid.last[i] + 1)
            for mode in modes:
                acc.curves.append(
                    {
                        "group": labels[i],
                        "key": keys[i],
                        "series": mode,
                        "months": grid.months[sl],
                        "x": res[mode]["x"][i - g0, sl],
                        "y": res[mode]["y"][i - g0, sl],
                    }
                )
        if progress is not None:
            progress(g1, ngroups)
    return acc


def _result_table(corr, options, labels, obs, group_fields, firsts):
    """The long output table: one row per group, series and lag (columns: the group fields, OUTPUT_COLUMNS)."""
    modes, lags = options.series, options.lags
    ngroups, nm, nl = len(labels), len(modes), len(lags)
    total = ngroups * nm * nl
    gi = np.repeat(np.arange(ngroups), nm * nl)
    data = {}
    if group_fields:
        key_cols = firsts[group_fields].iloc[gi].reset_index(drop=True)
        for g in group_fields:
            data[g] = key_cols[g].to_numpy()
    data["group"] = np.array(labels, dtype=object)[gi] if total else np.array([], dtype=object)
    data["x"] = np.full(total, obs.x_label, dtype=object)
    data["y"] = np.full(total, obs.y_label, dtype=object)
    data["series"] = np.tile(np.repeat(np.array(modes, dtype=object), nl), ngroups)
    data["detrend"] = np.full(total, options.detrend, dtype=object)
    data["lag"] = np.tile(np.array(lags, dtype=np.int64), ngroups * nm)
    data["n"] = corr.cube["n"].reshape(-1).astype(np.int64)
    for k in ("r", "p", "r1_x", "r1_y", "n_eff", "p_eff"):
        data[k] = corr.cube[k].reshape(-1)
    data["best_lag"] = corr.best.reshape(-1)
    data["note"] = corr.note.reshape(-1)
    return pd.DataFrame({k: data[k] for k in list(group_fields) + list(OUTPUT_COLUMNS)})


def lagged_correlation_table(
    df,
    date_field,
    x_field=None,
    y_field=None,
    *,
    group_fields=(),
    variable_field=None,
    value_field=None,
    x_name=None,
    y_name=None,
    max_lag=3,
    negative_lags=False,
    series="levels",
    detrend="none",
    base_date=None,
    min_pairs=MIN_PAIRS,
    best_by="abs",
    progress=None,
    chunk_rows=4096,
):
    """Lagged correlation per group of a wide or long table.

    Wide table: one row per date (and group) with the driver in ``x_field`` and the response
    in ``y_field``. Long table: ``variable_field`` names the variable of each row (rows whose
    value is ``x_name`` are X, ``y_name`` are Y) and ``value_field`` holds the value — e.g. the
    class-sampling table (area, class, layer, date, mean) with ``variable_field='layer'``.

    Missing values (None, '' or NaN) are missing months; text that is not a number, a date
    that cannot be parsed, X and Y naming the same field/variable or unknown fields raise
    ValueError naming the field. A group with fewer than ``min_pairs`` overlapping months
    gives NaN rows and a warning. Groups are processed together, vectorised, ``chunk_rows``
    groups at a time; ``progress(done, total)`` is called after each chunk (it may raise to
    cancel).

    Steps: observations of the wide or long table, group codes, one monthly grid row per group,
    the correlations (:func:`correlate_rows`), the output table.
    """
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    group_fields = [g for g in (group_fields or []) if g]
    lags = lag_list(max_lag, negative_lags)
    modes = expand_series(series)
    _check_options(detrend, best_by)
    _check_columns(df, [date_field], "date")
    if len(df) == 0:
        raise ValueError("the input table has no rows")
    _check_columns(df, group_fields, "group")
    clash = [g for g in group_fields if g in OUTPUT_COLUMNS]
    if clash:
        raise ValueError("group field '%s' has the name of an output column; rename it" % clash[0])
    if variable_field:
        obs = _long_observations(df, date_field, group_fields, variable_field, value_field, (x_name, y_name))
    else:
        obs = _wide_observations(df, date_field, group_fields, x_field, y_field)

    base_month = None
    if base_date is not None and base_date != "":
        base_month = to_month(base_date)
        if base_month is None:
            raise ValueError("base date %r is not a date" % (base_date,))
    options = LagOptions(
        lags=tuple(lags),
        series=tuple(modes),
        detrend=detrend,
        base_month=base_month,
        min_pairs=min_pairs,
        best_by=best_by,
    )

    codes, keys, firsts = _group_codes(obs.work, group_fields)
    obs.work["_c"] = codes
    labels = [group_label(group_fields, k) for k in keys]
    grid = _monthly_grid(obs.work, len(keys))
    corr = _correlate_groups(grid, options, (labels, keys), chunk_rows, progress)
    warnings = []
    if grid.merged:
        warnings.append(
            "%d group/variable months had several values and were averaged "
            "(monthly series are keyed by calendar month)" % grid.merged
        )
    for i, notes in enumerate(corr.group_notes):
        warnings += ["%s: %s" % (labels[i], msg) for msg in notes]
    table = _result_table(corr, options, labels, obs, group_fields, firsts)
    return LagCorrResult(
        table=table, curves=corr.curves, warnings=warnings, x_label=obs.x_label, y_label=obs.y_label, lags=lags
    )


def wide_result(table, group_fields=()):
    """Pivot the long result to one row per group and series: ``r_lag<k>``, ``p_lag<k>``, best lag and r."""
    keys = list(group_fields) + ["group", "series"]
    out = []
    for key, part in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        for _, rr in part.iterrows():
            tag = ("m%d" % -rr["lag"]) if rr["lag"] < 0 else str(int(rr["lag"]))
            row["r_lag" + tag] = rr["r"]
            row["p_eff_lag" + tag] = rr["p_eff"]
        best = part[part["best_lag"]]
        row["best_lag"] = int(best["lag"].iloc[0]) if len(best) else None
        row["best_r"] = float(best["r"].iloc[0]) if len(best) else float("nan")
        out.append(row)
    return pd.DataFrame(out)
