"""Lagged correlation of a driver series X (e.g. GWSA) and a response series Y (e.g. deformation).

Method (Liu et al. 2024, *Land* 13:184, sec. 3.3; Huang et al. 2025, *JGSE* 13:74, sec. 3.3.1):
temporal (month-to-month) and cumulative correlation between class-averaged surface
deformation and groundwater storage anomalies, and the lag at which deformation follows
groundwater.

Conventions
-----------
* Monthly series are keyed by calendar month (:func:`core.tsraster.month_index`); several
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
    exactly the r of levels at every lag**; it is offered because it is what the seed papers
    plot (both curves start at 0 in the base month);
  - ``temporal``: month-to-month change ``dX_t = X_t - X_{t-1}``; missing when month t or t-1
    is missing (a change across a gap is never bridged, never zero);
  - ``both``: ``cumulative`` and ``temporal`` (the pair used in the seed paper).
* Detrending (applied to the series as analysed, each series on its own valid months):
  ``none`` (default, as in the seeds), ``linear`` (least-squares a + b t),
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

Everything here is plain numpy/pandas/scipy (no QGIS). The functions on arrays are pure; the
table front end :func:`lagged_correlation_table` does the grouping and input checks and
returns a :class:`LagCorrResult` (output table + the analysed series for plotting + warnings).
"""

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from .tsraster import month_from_index, month_index, parse_date

SERIES_MODES = ("levels", "cumulative", "temporal")
SERIES_CHOICES = ("levels", "cumulative", "temporal", "both")
DETREND_CHOICES = ("none", "linear", "harmonic", "climatology")
BEST_BY_CHOICES = ("abs", "max", "min")
MIN_PAIRS = 4
MIN_ADJACENT_PAIRS = 3

OUTPUT_COLUMNS = (
    "group", "x", "y", "series", "detrend", "lag", "n", "r", "p",
    "r1_x", "r1_y", "n_eff", "p_eff", "best_lag", "note",
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


def pearson_r(x, y):
    """Pearson's r of two equal-length 1-D arrays without NaN (means over these values).

    NaN when fewer than 2 values or a series is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    xm = x - x.mean()
    ym = y - y.mean()
    nx = math.sqrt(float(np.dot(xm, xm)))
    ny = math.sqrt(float(np.dot(ym, ym)))
    # a series constant up to rounding has no defined correlation
    if nx <= 1e-12 * max(1.0, float(np.abs(x).max())) * math.sqrt(x.size) or \
            ny <= 1e-12 * max(1.0, float(np.abs(y).max())) * math.sqrt(y.size):
        return float("nan")
    r = float(np.dot(xm / nx, ym / ny))
    return max(-1.0, min(1.0, r))


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

    Accepts what :func:`core.tsraster.parse_date` accepts (``YYYY-MM-DD``, ``YYYYMMDD``,
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


def monthly_series(months, values):
    """Average values sharing a calendar month. Returns (pd.Series indexed by month, n_merged).

    ``months`` are month indices; NaN values are ignored (a month with only NaN is missing).
    """
    s = pd.Series(np.asarray(values, dtype=np.float64), index=np.asarray(months, dtype=np.int64))
    counts = s.groupby(level=0).count()
    merged = int((counts > 1).sum())
    s = s.groupby(level=0).mean().dropna().sort_index()
    return s, merged


def on_month_axis(series, m0, m1):
    """Values of a month-indexed series on the complete axis ``m0..m1`` (NaN where missing)."""
    axis = np.arange(m0, m1 + 1, dtype=np.int64)
    return series.reindex(axis).to_numpy(dtype=np.float64)


def transform_series(a, mode, base=None):
    """Levels / cumulative / temporal series of ``a`` on a complete monthly axis (NaN = missing).

    ``cumulative``: ``a - a[base]`` (base = position on the axis; default the first valid
    value); all NaN if the base month is missing. ``temporal``: ``a[t] - a[t-1]`` with NaN at
    the first month and wherever either month is missing.
    """
    a = np.asarray(a, dtype=np.float64)
    if mode == "levels":
        return a.copy()
    if mode == "cumulative":
        if base is None:
            valid = np.flatnonzero(np.isfinite(a))
            if valid.size == 0:
                return np.full_like(a, np.nan)
            base = int(valid[0])
        if base < 0 or base >= a.size or not np.isfinite(a[base]):
            return np.full_like(a, np.nan)
        return a - a[base]
    if mode == "temporal":
        out = np.full_like(a, np.nan)
        out[1:] = a[1:] - a[:-1]  # NaN propagates: a change across a missing month is missing
        return out
    raise ValueError("unknown series mode %r (expected one of %s)" % (mode, ", ".join(SERIES_MODES)))


def design_matrix(t, method):
    """Columns of the detrending model at times ``t`` (months): linear or linear + annual + semi-annual."""
    t = np.asarray(t, dtype=np.float64)
    cols = [np.ones_like(t), t]
    if method == "harmonic":
        for period in (12.0, 6.0):
            w = 2.0 * np.pi * t / period
            cols += [np.sin(w), np.cos(w)]
    return np.column_stack(cols)


def detrend_series(a, method, months=None):
    """Remove a trend / seasonal model from a series on a complete monthly axis.

    ``months``: the month index of each element (needed for ``harmonic`` phases and the
    calendar month of ``climatology``; default ``0..n-1``). Returns (detrended, note) where
    note is '' or explains why the result is all NaN (too few values for the model).
    """
    a = np.asarray(a, dtype=np.float64)
    if method == "none":
        return a.copy(), ""
    months = np.arange(a.size) if months is None else np.asarray(months, dtype=np.int64)
    valid = np.isfinite(a)
    if method in ("linear", "harmonic"):
        t = (months - months[0]).astype(np.float64)
        g = design_matrix(t, method)
        need = g.shape[1] + 1
        if valid.sum() < need:
            return np.full_like(a, np.nan), "%s detrending needs at least %d values, found %d" % (
                method, need, int(valid.sum()))
        coef, *_ = np.linalg.lstsq(g[valid], a[valid], rcond=None)
        return a - g @ coef, ""
    if method == "climatology":
        cal = months % 12
        out = np.full_like(a, np.nan)
        for c in np.unique(cal[valid]):
            sel = valid & (cal == c)
            out[sel] = a[sel] - a[sel].mean()
        return out, ""
    raise ValueError("unknown detrending %r (expected one of %s)" % (method, ", ".join(DETREND_CHOICES)))


def lag_statistics(x, y, lags, min_pairs=MIN_PAIRS):
    """Lagged Pearson statistics of two series on the same complete monthly axis.

    For each lag k: pairs ``(Y[t+k], X[t])`` where both are finite; returns a dict of arrays
    ``n, r, p, r1_x, r1_y, n_eff, p_eff`` (one element per lag). r is NaN when fewer than
    ``min_pairs`` pairs or a constant series.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D series on the same monthly axis")
    lags = [int(k) for k in lags]
    m = x.size
    out = {k: np.full(len(lags), np.nan) for k in ("n", "r", "p", "r1_x", "r1_y", "n_eff", "p_eff")}
    for i, k in enumerate(lags):
        xs = np.full(m, np.nan)
        ys = np.full(m, np.nan)
        # X[t] paired with Y[t+k] on the axis of t
        if k >= 0:
            if k < m:
                xs[: m - k] = x[: m - k]
                ys[: m - k] = y[k:]
        else:
            j = -k
            if j < m:
                xs[j:] = x[j:]
                ys[j:] = y[: m - j]
        both = np.isfinite(xs) & np.isfinite(ys)
        n = int(both.sum())
        out["n"][i] = n
        if n < min_pairs:
            continue
        r = pearson_r(xs[both], ys[both])
        out["r"][i] = r
        out["p"][i] = pearson_p(r, n)
        xs[~both] = np.nan
        ys[~both] = np.nan
        r1x = lag1_autocorrelation(xs)
        r1y = lag1_autocorrelation(ys)
        out["r1_x"][i] = r1x
        out["r1_y"][i] = r1y
        ne = effective_n(n, r1x, r1y)
        out["n_eff"][i] = ne
        out["p_eff"][i] = pearson_p(r, ne)
    return out


def best_lag_index(r, best_by="abs"):
    """Index of the best lag among finite r: largest |r| (``abs``), largest r (``max``) or smallest (``min``)."""
    r = np.asarray(r, dtype=np.float64)
    if not np.isfinite(r).any():
        return None
    if best_by == "abs":
        score = np.where(np.isfinite(r), np.abs(r), -np.inf)
    elif best_by == "max":
        score = np.where(np.isfinite(r), r, -np.inf)
    elif best_by == "min":
        score = np.where(np.isfinite(r), -r, -np.inf)
    else:
        raise ValueError("unknown best_by %r (expected one of %s)" % (best_by, ", ".join(BEST_BY_CHOICES)))
    return int(np.argmax(score))


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


def correlate_pair(x, y, lags, series=("levels",), detrend="none", base_month=None,
                   min_pairs=MIN_PAIRS, best_by="abs"):
    """Lagged correlation of two month-indexed series (pd.Series, index = month index).

    Returns ``(rows, curves, notes)``: ``rows`` a list of dicts (series, lag, n, r, p, r1_x,
    r1_y, n_eff, p_eff, best_lag, note), ``curves`` a dict mode -> (months, x, y) of the
    analysed series, ``notes`` warnings. ``base_month``: month index of the cumulative base
    (default: the first month where both series have a value).
    """
    modes = expand_series(series)
    if detrend not in DETREND_CHOICES:
        raise ValueError("unknown detrending %r (expected one of %s)" % (detrend, ", ".join(DETREND_CHOICES)))
    rows, curves, notes = [], {}, []
    if len(x) == 0 or len(y) == 0:
        m0 = m1 = None
    else:
        m0 = int(min(x.index.min(), y.index.min()))
        m1 = int(max(x.index.max(), y.index.max()))
    for mode in modes:
        mode_notes = []
        if m0 is None:
            xa = ya = np.full(0, np.nan)
            months = np.arange(0)
            mode_notes.append("a series has no values")
        else:
            months = np.arange(m0, m1 + 1)
            xa = on_month_axis(x, m0, m1)
            ya = on_month_axis(y, m0, m1)
            base = None
            if mode == "cumulative":
                if base_month is not None:
                    base = int(base_month) - m0
                    for name, a in (("X", xa), ("Y", ya)):
                        if base < 0 or base >= a.size or not np.isfinite(a[base]):
                            mode_notes.append("cumulative: base month %s missing in %s"
                                              % (month_from_index(base_month).strftime("%Y-%m"), name))
                else:
                    common = np.flatnonzero(np.isfinite(xa) & np.isfinite(ya))
                    base = int(common[0]) if common.size else -1
                    if base < 0:
                        mode_notes.append("cumulative: no month where both series exist")
            xa = transform_series(xa, mode, base)
            ya = transform_series(ya, mode, base)
            xa, nx = detrend_series(xa, detrend, months)
            ya, ny = detrend_series(ya, detrend, months)
            mode_notes += [("X: " + s) for s in (nx,) if s] + [("Y: " + s) for s in (ny,) if s]
        curves[mode] = (months, xa, ya)
        if months.size:
            st = lag_statistics(xa, ya, lags, min_pairs=min_pairs)
        else:
            st = {k: np.full(len(lags), np.nan) for k in ("r", "p", "r1_x", "r1_y", "n_eff", "p_eff")}
            st["n"] = np.zeros(len(lags))
        ib = best_lag_index(st["r"], best_by)
        few = [lags[i] for i in range(len(lags)) if st["n"][i] < min_pairs]
        if few:
            mode_notes.append("%s: fewer than %d overlapping months at lag %s" % (
                mode, min_pairs, ", ".join(str(k) for k in few)))
        for i, k in enumerate(lags):
            note = []
            if st["n"][i] < min_pairs:
                note.append("fewer than %d overlapping months" % min_pairs)
            elif not np.isfinite(st["r"][i]):
                note.append("constant series, r undefined")
            elif not np.isfinite(st["n_eff"][i]):
                note.append("lag-1 autocorrelation not estimable (fewer than %d adjacent months)"
                            % MIN_ADJACENT_PAIRS)
            elif st["n_eff"][i] <= 2:
                note.append("effective sample size <= 2")
            rows.append({
                "series": mode, "lag": int(k), "n": int(st["n"][i]), "r": st["r"][i], "p": st["p"][i],
                "r1_x": st["r1_x"][i], "r1_y": st["r1_y"][i], "n_eff": st["n_eff"][i], "p_eff": st["p_eff"][i],
                "best_lag": ib is not None and i == ib, "note": "; ".join(note),
            })
        notes += mode_notes
    return rows, curves, notes


# --------------------------------------------------------------------------- tables
@dataclass
class LagCorrResult:
    """Output of :func:`lagged_correlation_table`.

    ``table``: one row per group, series mode and lag (columns: the group fields, then
    :data:`OUTPUT_COLUMNS`). ``curves``: list of dicts ``{group, label, series, months, x, y}``
    with the analysed series (for plots). ``warnings``: human-readable messages.
    """
    table: pd.DataFrame
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
    vals = df[col].tolist()
    out = np.empty(len(vals), dtype=np.int64)
    for i, v in enumerate(vals):
        m = to_month(v)
        if m is None:
            raise ValueError("date field '%s': row %d has %r, which is not a date "
                             "(expected YYYY-MM-DD, YYYYMMDD, YYYY-MM or a date value)" % (col, i + 1, v))
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


def lagged_correlation_table(df, date_field, x_field=None, y_field=None, group_fields=(),
                             variable_field=None, value_field=None, x_name=None, y_name=None,
                             max_lag=3, negative_lags=False, series="levels", detrend="none",
                             base_date=None, min_pairs=MIN_PAIRS, best_by="abs", progress=None):
    """Lagged correlation per group of a wide or long table.

    Wide table: one row per date (and group) with the driver in ``x_field`` and the response
    in ``y_field``. Long table: ``variable_field`` names the variable of each row (rows whose
    value is ``x_name`` are X, ``y_name`` are Y) and ``value_field`` holds the value — e.g. the
    class-sampling table (area, class, layer, date, mean) with ``variable_field='layer'``.

    Missing values (None, '' or NaN) are missing months; text that is not a number, a date
    that cannot be parsed, X and Y naming the same field/variable or unknown fields raise
    ValueError naming the field. A group with fewer than ``min_pairs`` overlapping months
    gives NaN rows and a warning. ``progress(done, total)`` is called after each group (it may
    raise to cancel).
    """
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    group_fields = [g for g in (group_fields or []) if g]
    lags = lag_list(max_lag, negative_lags)
    modes = expand_series(series)
    if detrend not in DETREND_CHOICES:
        raise ValueError("unknown detrending %r (expected one of %s)" % (detrend, ", ".join(DETREND_CHOICES)))
    if best_by not in BEST_BY_CHOICES:
        raise ValueError("unknown best_by %r (expected one of %s)" % (best_by, ", ".join(BEST_BY_CHOICES)))
    long = bool(variable_field)
    _check_columns(df, [date_field], "date")
    _check_columns(df, group_fields, "group")
    clash = [g for g in group_fields if g in OUTPUT_COLUMNS]
    if clash:
        raise ValueError("group field '%s' has the name of an output column; rename it" % clash[0])
    if long:
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
        names = df[variable_field].astype(str)
        present = set(names)
        for nm, what in ((x_name, "X"), (y_name, "Y")):
            if str(nm) not in present:
                raise ValueError("%s variable '%s' does not occur in field '%s' (values: %s)" % (
                    what, nm, variable_field, ", ".join(sorted(present)[:20])))
        sub = df[names.isin([str(x_name), str(y_name)])].reset_index(drop=True)
        months = _months(sub, date_field)
        vals = _numeric(sub, value_field, "value")
        is_x = (sub[variable_field].astype(str) == str(x_name)).to_numpy()
        work = pd.DataFrame({"_m": months, "_v": vals.to_numpy(), "_isx": is_x})
        for g in group_fields:
            work[g] = sub[g].to_numpy()
        x_label, y_label = str(x_name), str(y_name)
    else:
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
        work = pd.DataFrame({"_m": np.concatenate([months, months]), "_v": np.concatenate([xv, yv]),
                             "_isx": np.r_[np.ones(n, bool), np.zeros(n, bool)]})
        for g in group_fields:
            work[g] = np.concatenate([df[g].to_numpy(), df[g].to_numpy()])
        x_label, y_label = str(x_field), str(y_field)

    base_month = None
    if base_date is not None and base_date != "":
        base_month = to_month(base_date)
        if base_month is None:
            raise ValueError("base date %r is not a date" % (base_date,))

    if group_fields:
        keyed = work.copy()
        for g in group_fields:  # group on text so that None / NaN keys form their own group
            keyed[g] = keyed[g].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        by = group_fields if len(group_fields) > 1 else group_fields[0]
        grouped = list(keyed.groupby(by, sort=True))
    else:
        grouped = [((), work)]
    rows, curves, warnings = [], [], []
    merged_total = 0
    for ig, (key, part) in enumerate(grouped):
        key = key if isinstance(key, tuple) else (key,)
        label = group_label(group_fields, key)
        xs, mx = monthly_series(part["_m"][part["_isx"]], part["_v"][part["_isx"]])
        ys, my = monthly_series(part["_m"][~part["_isx"]], part["_v"][~part["_isx"]])
        merged_total += mx + my
        prs, crv, notes = correlate_pair(xs, ys, lags, modes, detrend, base_month, min_pairs, best_by)
        for msg in notes:
            warnings.append("%s: %s" % (label, msg))
        for row in prs:
            full = dict(zip(group_fields, key))
            full.update({"group": label, "x": x_label, "y": y_label, "detrend": detrend})
            full.update(row)
            rows.append(full)
        for mode, (mo, xa, ya) in crv.items():
            curves.append({"group": label, "key": key, "series": mode, "months": mo, "x": xa, "y": ya})
        if progress is not None:
            progress(ig + 1, len(grouped))
    if merged_total:
        warnings.insert(0, "%d group/variable months had several values and were averaged "
                           "(monthly series are keyed by calendar month)" % merged_total)
    cols = list(group_fields) + list(OUTPUT_COLUMNS)
    table = pd.DataFrame(rows, columns=cols)
    return LagCorrResult(table=table, curves=curves, warnings=warnings, x_label=x_label,
                         y_label=y_label, lags=lags)


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


def month_label(k):
    """``'2020-03'`` for a month index."""
    d = month_from_index(k)
    return "%04d-%02d" % (d.year, d.month)

