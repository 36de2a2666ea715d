"""Validation of a time-series raster against point measurements (no QGIS imports).

* Leveling (Liu et al. 2024, sec. 3.1.1): the InSAR deformation is averaged in
  a square of side 200 m centred on each benchmark and compared with the
  leveling, relative to a starting date (27 March 2020); reported: maximum,
  minimum, median and mean error of single points.
* Wells (sec. 2.3.4, eq. 13 and sec. 3.2.1): the measured water-level change
  becomes a storage change ``dGWS = dH * Sy`` with the aquifer's specific yield
  ``Sy``; GWSA is averaged in a square of side 10 km around each well and
  compared (Pearson R and p).

Conventions
-----------
* ``measured (mm) = sign * value * value_scale``. For leveling in mm use
  ``value_scale = 1``; for well heads in metres ``value_scale = Sy * 1000``
  (e.g. Sy = 0.03 -> 30); ``sign = -1`` for depth to water (a deeper water
  table is a storage loss), ``+1`` for hydraulic head / water-table elevation.
* **Date matching** (``method``): ``"nearest"`` takes the band whose date is
  nearest the observation (ties to the earlier band) and accepts it when
  ``|difference| <= tolerance_days``; ``"linear"`` interpolates linearly in
  time between the two bands around the observation date (at the series ends,
  an observation up to ``tolerance_days`` outside the series takes the end
  band). An observation farther than the tolerance from the series (nearest)
  or outside the series by more than the tolerance (linear) is an error naming
  its id and date. With ``linear`` a NaN in either neighbour band gives NaN.
* **Window**: as :func:`sampling.window_means` (square side in map units,
  metres for geographic rasters, 0 = the pixel under the point).
* **Relative** option: per id, the first date at which both measured and
  predicted are valid is the reference; both series are taken relative to
  their value at that date. Reference rows (error 0 by construction) are kept
  in the per-observation table with ``reference = True`` and left out of the
  summary.
* ``error = predicted - measured``; summary: n, max / min / median / mean of
  |error|, RMSE, bias = mean(error), Pearson R and two-sided p
  (``scipy.stats.pearsonr``; NaN for n < 3 or a constant series), for all
  observations and per id.
"""

import math

import numpy as np

from ..io.dates import days_since, format_date, parse_date
from ..io.errors import TimeSeriesError
from ..io.lazy import lazy_module
from ..io.rasters import open_raster, read_dates
from .sampling import window_means

pd = lazy_module("pandas")

REQUIRED = ("id", "date", "value", "x", "y")
METHODS = ("nearest", "linear")


def measured_mm(values, value_scale=1.0, sign=1.0):
    """Measurement in mm: ``sign * value * value_scale`` (eq. 13: dGWS = dH * Sy)."""
    return float(sign) * np.asarray(values, dtype=np.float64) * float(value_scale)


def parse_observations(table):
    """Check and normalise an observation table (columns id, date, value, x, y).

    Dates become :class:`datetime.date`, values and coordinates float. Raises
    :class:`ValueError` naming a missing column or the row/id with a bad value.
    """
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError("measurements: missing field(s) %s (need %s)" % (", ".join(missing), ", ".join(REQUIRED)))
    df = table[list(REQUIRED)].copy().reset_index(drop=True)
    dates = []
    for i, (oid, d) in enumerate(zip(df["id"], df["date"])):
        pd_ = parse_date(d)
        if pd_ is None:
            raise ValueError("measurements: row %d (id %s) has no valid date: %r" % (i + 1, oid, d))
        dates.append(pd_)
    df["date"] = dates
    for c in ("value", "x", "y"):
        try:
            df[c] = pd.to_numeric(df[c], errors="raise").astype(float)
        except (TypeError, ValueError):
            raise ValueError("measurements: field %r holds a non-numeric value" % c) from None
    bad = ~np.isfinite(df[["x", "y"]].to_numpy()).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError("measurements: row %d (id %s) has no coordinates" % (i + 1, df["id"].iloc[i]))
    df["id"] = df["id"].astype(str)
    dup = df.duplicated(["id", "date"], keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        raise ValueError(
            "measurements: id %s has %d observations on %s (rows %s): each (id, date) may appear "
            "once; remove or average the duplicates"
            % (
                df["id"].iloc[rows[0]],
                int(((df["id"] == df["id"].iloc[rows[0]]) & (df["date"] == df["date"].iloc[rows[0]])).sum()),
                df["date"].iloc[rows[0]].isoformat(),
                ", ".join(str(r + 1) for r in rows[:5]) + (" ..." if len(rows) > 5 else ""),
            )
        )
    return df


def match_dates(obs_dates, series_dates, tolerance_days=16, method="nearest", ids=None, source="time series"):
    """Band indices and weights for each observation date.

    Returns ``(i0, i1, w)``: predicted = ``(1 - w) * band[i0] + w * band[i1]``
    (``i0 == i1``, ``w = 0`` for nearest). Raises :class:`TimeSeriesError`
    naming the observations (id and date) that cannot be matched.
    """
    if method not in METHODS:
        raise ValueError("date matching method must be one of %s, got %r" % (", ".join(METHODS), method))
    tol = float(tolerance_days)
    if tol < 0:
        raise ValueError("date tolerance must be >= 0 days, got %g" % tol)
    origin = series_dates[0]
    t = days_since(series_dates, origin)
    q = np.array([(d - origin).days for d in obs_dates], dtype=np.float64)
    n = t.size
    if method == "nearest":
        j = np.clip(np.searchsorted(t, q, side="left"), 0, n - 1)
        jm = np.clip(j - 1, 0, n - 1)
        pick = np.where(np.abs(q - t[jm]) <= np.abs(q - t[j]), jm, j)
        ok = np.abs(q - t[pick]) <= tol
        i0 = i1 = pick
        w = np.zeros(q.size)
    else:
        qc = np.clip(q, t[0], t[-1])
        ok = np.abs(q - qc) <= tol
        i1 = np.clip(np.searchsorted(t, qc, side="left"), 0, n - 1)
        i0 = np.clip(i1 - 1, 0, n - 1)
        exact = t[i1] == qc
        i0 = np.where(exact, i1, i0)
        span = t[i1] - t[i0]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(span > 0, (qc - t[i0]) / np.where(span > 0, span, 1), 0.0)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        ids = list(ids) if ids is not None else [str(i + 1) for i in range(q.size)]
        shown = ", ".join("%s on %s" % (ids[i], format_date(obs_dates[i])) for i in bad[:5])
        raise TimeSeriesError(
            "%d measurement(s) fall outside the dates of %s (%s .. %s; no band within the tolerance of %g days, "
            "%s matching): %s%s"
            % (
                bad.size,
                source,
                format_date(series_dates[0]),
                format_date(series_dates[-1]),
                tol,
                method,
                shown,
                " ..." if bad.size > 5 else "",
            )
        )
    return i0.astype(np.int64), i1.astype(np.int64), w


def predict(raster, obs, window=0.0, tolerance_days=16, method="nearest", dates=None, canceled=None):
    """Window-mean raster value at each observation's place and date (mm).

    ``obs``: DataFrame from :func:`parse_observations` with x, y in the
    raster's CRS. Returns ``(predicted, n_pixels, band_dates)``: the matched
    value, the number of valid pixels used, and the text of the matched band
    date(s).
    """
    ds = open_raster(raster) if isinstance(raster, (str, bytes)) or hasattr(raster, "__fspath__") else raster
    sdates = read_dates(ds, dates)
    i0, i1, w = match_dates(
        list(obs["date"]), sdates, tolerance_days, method, ids=list(obs["id"]), source=ds.GetDescription()
    )
    xy = obs[["x", "y"]].to_numpy(dtype=np.float64)
    uniq, inv = np.unique(xy, axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    means, counts = window_means(ds, uniq[:, 0], uniq[:, 1], window, canceled=canceled)
    m, c = means[inv], counts[inv]
    rows = np.arange(len(obs))
    v0, v1 = m[rows, i0], m[rows, i1]
    pred = np.where(w == 0, v0, (1 - w) * v0 + w * v1)
    npx = np.where(w == 0, c[rows, i0], np.minimum(c[rows, i0], c[rows, i1]))
    outside = np.all(c == 0, axis=1)
    if outside.all():
        raise TimeSeriesError(
            "no measurement lies on a valid pixel of %s (check the CRS of the measurements)" % ds.GetDescription()
        )
    text = [
        format_date(sdates[a]) if a == b or ww == 0 else "%s/%s" % (format_date(sdates[a]), format_date(sdates[b]))
        for a, b, ww in zip(i0, i1, w)
    ]
    return pred, npx, text


def relative_to_first_common(ids, dates, measured, predicted):
    """Both series relative to their value at the id's first date where both are valid.

    Returns ``(measured_rel, predicted_rel, reference)`` with ``reference`` True
    on the reference rows; ids without a common valid date get NaN.
    """
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    mr, pr = np.full(measured.shape, np.nan), np.full(predicted.shape, np.nan)
    ref = np.zeros(measured.shape, dtype=bool)
    df = pd.DataFrame({"id": list(ids), "date": list(dates), "i": np.arange(measured.size)})
    for _, g in df.groupby("id", sort=False):
        idx = g.sort_values("date", kind="stable")["i"].to_numpy()
        both = np.isfinite(measured[idx]) & np.isfinite(predicted[idx])
        if not both.any():
            continue
        r = idx[np.argmax(both)]
        mr[idx] = measured[idx] - measured[r]
        pr[idx] = predicted[idx] - predicted[r]
        ref[r] = True
    return mr, pr, ref


def error_summary(measured, predicted):
    """n, max/min/median/mean absolute error, RMSE, bias, Pearson R and p of ``predicted - measured``."""
    from scipy import stats

    m = np.asarray(measured, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    ok = np.isfinite(m) & np.isfinite(p)
    m, p = m[ok], p[ok]
    e = p - m
    n = int(e.size)
    out = {
        "n": n,
        "max_abs_error": np.nan,
        "min_abs_error": np.nan,
        "median_abs_error": np.nan,
        "mean_abs_error": np.nan,
        "rmse": np.nan,
        "bias": np.nan,
        "pearson_r": np.nan,
        "p_value": np.nan,
    }
    if n == 0:
        return out
    a = np.abs(e)
    out.update(
        max_abs_error=float(a.max()),
        min_abs_error=float(a.min()),
        median_abs_error=float(np.median(a)),
        mean_abs_error=float(a.mean()),
        rmse=float(math.sqrt(np.mean(e**2))),
        bias=float(e.mean()),
    )
    if n >= 3 and np.ptp(m) > 0 and np.ptp(p) > 0:
        r, pv = stats.pearsonr(m, p)
        out.update(pearson_r=float(r), p_value=float(pv))
    return out


def validate_time_series(
    raster,
    observations,
    window=0.0,
    tolerance_days=16,
    method="nearest",
    value_scale=1.0,
    sign=1.0,
    relative=False,
    dates=None,
    canceled=None,
):
    """Compare measurements with a time-series raster (Liu et al. 2024, sec. 3.1.1, 2.3.4 eq. 13, 3.2.1).

    ``observations``: DataFrame with id, date, value, x, y (x/y in the
    raster's CRS). Returns ``(per_observation, summary)`` DataFrames:
    per observation id, date, band_date, measured, predicted, error, n_pixels,
    reference; summary one row for all observations (id ``(all)``) and one per id.
    """
    obs = parse_observations(observations)
    pred, npx, band_text = predict(
        raster, obs, window=window, tolerance_days=tolerance_days, method=method, dates=dates, canceled=canceled
    )
    meas = measured_mm(obs["value"].to_numpy(), value_scale, sign)
    ref = np.zeros(len(obs), dtype=bool)
    if relative:
        meas, pred, ref = relative_to_first_common(obs["id"], obs["date"], meas, pred)
    table = pd.DataFrame(
        {
            "id": obs["id"],
            "date": [format_date(d) for d in obs["date"]],
            "band_date": band_text,
            "measured": meas,
            "predicted": pred,
            "error": pred - meas,
            "n_pixels": npx.astype(np.int64),
            "reference": ref,
        }
    )
    use = ~ref
    rows = [dict(id="(all)", **error_summary(meas[use], pred[use]))]
    for oid in pd.unique(obs["id"]):
        sel = use & (obs["id"].to_numpy() == oid)
        rows.append(dict(id=oid, **error_summary(meas[sel], pred[sel])))
    summary = pd.DataFrame(rows)
    summary["n"] = summary["n"].astype(np.int64)
    return table, summary
