"""Temporal resampling of time-series rasters (irregular SAR epochs to monthly values).

Liu et al. (2024, sec. 2.3.1) bring the Sentinel-1 time series to
"a temporal resolution of 1 month" by cubic-spline interpolation in time. For
every pixel the interpolant is built **only from that pixel's valid dates** and
evaluated at the target dates inside the pixel's valid range; targets before
its first or after its last valid date are NaN (no extrapolation).

Methods (``t`` = days since the first input date, ``y`` = pixel values):

* ``linear`` -- piecewise linear, identical to ``numpy.interp(t_new, t, y)``;
* ``cubic`` -- cubic spline with not-a-knot end conditions, identical to
  ``scipy.interpolate.CubicSpline(t, y)`` (two valid dates: the straight line);
* ``pchip`` -- monotone piecewise cubic Hermite (Fritsch & Carlson 1980),
  identical to ``scipy.interpolate.PchipInterpolator(t, y)``;
* ``nearest`` -- the value of the nearest valid date (ties go to the earlier date).

Vectorisation: pixels are grouped by their validity pattern (which dates are
finite). Linear, cubic and nearest interpolation are linear maps of ``y``, so
each group is solved as one matrix product ``W @ Y`` with ``W`` built once per
pattern; PCHIP (non-linear in ``y``) is evaluated once per group on all its
pixels at the same time.
"""

import datetime as _dt

import numpy as np

from ..io.dates import days_in_month, format_date
from ..io.errors import TimeSeriesError
from ..io.lazy import lazy_module

_si = lazy_module("scipy.interpolate")

METHODS = ("linear", "cubic", "pchip", "nearest")


# --------------------------------------------------------------------------- target dates
def add_months(d, n, day):
    """The date ``n`` calendar months after ``d``'s month, on ``day`` (clipped to the month's length)."""
    k = d.year * 12 + d.month - 1 + n
    y, m = divmod(k, 12)
    return _dt.date(y, m + 1, min(day, days_in_month(y, m + 1)))


def monthly_dates(start, end, day=15):
    """Dates on ``day`` of every month with ``start <= date <= end`` (day clipped to month length)."""
    if end < start:
        return []
    d = add_months(start, 0, day)
    if d < start:
        d = add_months(start, 1, day)
    out = []
    n = 0
    base = d
    while d <= end:
        out.append(d)
        n += 1
        d = add_months(base, n, day)
    return out


def regular_dates(start, end, every_days):
    """Dates every ``every_days`` days from ``start`` to ``end`` inclusive."""
    if every_days < 1:
        raise TimeSeriesError("the step must be at least one day, got %r" % every_days)
    out = []
    d = start
    while d <= end:
        out.append(d)
        d += _dt.timedelta(days=int(every_days))
    return out


def target_dates(dates, step="monthly", day=15, every_days=None, start=None, end=None):
    """Target dates for resampling a series observed on ``dates``.

    ``step`` is ``"monthly"`` (on ``day`` of each month) or ``"days"`` (every
    ``every_days`` days from ``start``). ``start``/``end`` default to the first
    and last input dates. Raises :class:`TimeSeriesError` when ``start`` is
    after ``end`` or no target date falls in the range.
    """
    start = start or dates[0]
    end = end or dates[-1]
    if start > end:
        raise TimeSeriesError("start date %s is after end date %s" % (format_date(start), format_date(end)))
    if step == "monthly":
        if not 1 <= int(day) <= 31:
            raise TimeSeriesError("day of month must be 1..31, got %r" % day)
        out = monthly_dates(start, end, int(day))
    elif step == "days":
        out = regular_dates(start, end, int(every_days or 0))
    else:
        raise TimeSeriesError("unknown step %r (monthly or days)" % step)
    if not out:
        raise TimeSeriesError(
            "no target date between %s and %s with this step" % (format_date(start), format_date(end))
        )
    return out


# --------------------------------------------------------------------------- weights
def _interp_weights(t, t_new, method):
    """Matrix ``W`` (len(t_new) x len(t)) with ``W @ y`` = interpolant of ``y`` at ``t_new``.

    Rows of targets outside ``[t[0], t[-1]]`` are NaN (no extrapolation).
    """
    n, k = len(t), len(t_new)
    W = np.zeros((k, n))
    inside = (t_new >= t[0]) & (t_new <= t[-1])
    if method == "cubic":
        W[inside] = _si.CubicSpline(t, np.eye(n), axis=0)(t_new[inside])
    elif method == "linear":
        j = np.clip(np.searchsorted(t, t_new, side="right") - 1, 0, n - 2)
        t0, t1 = t[j], t[j + 1]
        w1 = (t_new - t0) / (t1 - t0)
        rows = np.arange(k)
        W[rows, j] = 1.0 - w1
        W[rows, j + 1] += w1
    elif method == "nearest":
        j = np.clip(np.searchsorted(t, t_new, side="left"), 0, n - 1)
        jm = np.clip(j - 1, 0, n - 1)
        use_prev = np.abs(t_new - t[jm]) <= np.abs(t[j] - t_new)
        W[np.arange(k), np.where(use_prev, jm, j)] = 1.0
    else:
        raise ValueError("method %r has no weight matrix" % method)
    W[~inside] = np.nan
    return W


def _apply_weights(W, Y):
    """``W @ Y`` summed in a fixed order, so every pixel's result is bit-identical
    whatever the other pixels of its block are (BLAS picks kernels by matrix size)."""
    out = np.zeros((W.shape[0], Y.shape[1]))
    nan_rows = np.isnan(W).any(axis=1)
    Wf = np.where(nan_rows[:, None], 0.0, W)
    for j in np.flatnonzero(np.any(Wf != 0.0, axis=0)):
        out += Wf[:, j : j + 1] * Y[j]
    out[nan_rows] = np.nan
    return out


def temporal_resample_block(values, t, t_new, method="cubic", min_valid=2):
    """Resample a block of time series to new times.

    Parameters
    ----------
    values : array (T, rows, cols) or (T, P) -- observations, NaN = missing.
    t : array (T,) -- observation times (days), strictly increasing.
    t_new : array (K,) -- target times (days, same origin).
    method : ``linear`` | ``cubic`` | ``pchip`` | ``nearest``.
    min_valid : pixels with fewer valid dates give NaN everywhere (at least 2).

    Returns an array (K, rows, cols) (or (K, P)) of float64; each pixel uses
    only its valid dates and is NaN outside its first..last valid date.
    """
    if method not in METHODS:
        raise ValueError("unknown method %r (one of %s)" % (method, ", ".join(METHODS)))
    values = np.asarray(values, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    t_new = np.asarray(t_new, dtype=np.float64)
    shape = values.shape
    T = shape[0]
    Y = values.reshape(T, -1)
    P = Y.shape[1]
    out = np.full((len(t_new), P), np.nan)
    valid = np.isfinite(Y)
    nvalid = valid.sum(axis=0)
    usable = nvalid >= max(2, int(min_valid))
    if not usable.any():
        return out.reshape((len(t_new),) + shape[1:])
    full = usable & (nvalid == T)
    groups = []
    if full.any():
        groups.append((np.ones(T, bool), np.flatnonzero(full)))
    partial = np.flatnonzero(usable & ~full)
    if partial.size:
        packed = np.packbits(valid[:, partial], axis=0)  # (ceil(T/8), p): one column per pixel
        patterns, inverse = np.unique(packed, axis=1, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(patterns.shape[1] + 1))
        for g in range(patterns.shape[1]):
            members = partial[order[bounds[g] : bounds[g + 1]]]
            groups.append((valid[:, members[0]], members))
    for mask, members in groups:
        tv = t[mask]
        Yg = Y[mask][:, members]
        if method == "pchip":
            inside = (t_new >= tv[0]) & (t_new <= tv[-1])
            res = np.full((len(t_new), members.size), np.nan)
            if inside.any():
                res[inside] = _si.PchipInterpolator(tv, Yg, axis=0, extrapolate=False)(t_new[inside])
            out[:, members] = res
        else:
            out[:, members] = _apply_weights(_interp_weights(tv, t_new, method), Yg)
    return out.reshape((len(t_new),) + shape[1:])


def resample_block_task(task):
    """Row-block task for :func:`~..io.tasks.map_blocks`: read, resample, return the block.

    ``task`` is a dict with ``path``, ``row0``, ``nrows``, ``t``, ``t_new``, ``method`` and
    ``min_valid``; it reads its rows from ``path`` itself (so it can run on a Dask worker that sees
    the same file system) and returns ``(row0, array (K, nrows, cols) float32)``.
    """
    from ..io.rasters import open_raster, read_block

    ds = open_raster(task["path"])
    block = read_block(ds, task["row0"], task["nrows"])
    out = temporal_resample_block(block, task["t"], task["t_new"], task["method"], task.get("min_valid", 2))
    return task["row0"], out.astype(np.float32)


def check_targets(dates, targets, min_valid):
    """Refuse settings that can only give an all-NoData output (nothing is extrapolated)."""
    if min_valid > len(dates):
        raise TimeSeriesError(
            "Minimum valid dates per pixel (MIN_VALID) is %d but the input has only %d dates: "
            "every output pixel would be NoData; lower it" % (min_valid, len(dates))
        )
    if targets[-1] < dates[0] or targets[0] > dates[-1]:
        raise TimeSeriesError(
            "the target dates %s .. %s lie outside the input dates %s .. %s (nothing is extrapolated): every "
            "output pixel would be NoData; change START/END"
            % (format_date(targets[0]), format_date(targets[-1]), format_date(dates[0]), format_date(dates[-1]))
        )


def resample_raster(
    path,
    out_path,
    method="cubic",
    step="monthly",
    day=15,
    every_days=None,
    start=None,
    end=None,
    explicit_dates=None,
    min_valid=2,
    memory_mb=512,
    run_tasks=None,
    log=None,
):
    """Resample the time-series raster ``path`` to ``out_path`` (the whole driver of the algorithm).

    Reads the dates, plans the target dates and row blocks under ``memory_mb``, runs
    :func:`resample_block_task` per block (here, or through ``run_tasks(task_fn, tasks, None)`` yielding
    ``(index, result)``, e.g. on Dask) and writes each block atomically (:class:`~..io.rasters.RasterWriter`).
    Fails (writing nothing) when every output pixel would be NoData. Returns a summary dict."""
    from ..io.dates import days_since
    from ..io.rasters import RasterGrid, RasterWriter, check_band_numeric, open_raster, read_dates
    from ..io.windows import row_blocks

    ds = open_raster(path)
    check_band_numeric(ds, path)
    dates = read_dates(ds, explicit_dates)
    targets = target_dates(dates, step, day=day, every_days=every_days, start=start, end=end)
    check_targets(dates, targets, min_valid)
    if log is not None:
        log(
            "%s: %d dates %s .. %s -> %d target dates %s .. %s (%s)"
            % (
                path,
                len(dates),
                format_date(dates[0]),
                format_date(dates[-1]),
                len(targets),
                format_date(targets[0]),
                format_date(targets[-1]),
                method,
            )
        )
    t, t_new = days_since(dates), days_since(targets, dates[0])
    grid = RasterGrid.of(ds)
    # float64 block + float64 output + temporaries
    blocks = row_blocks(grid.ysize, grid.xsize * 8 * (2 * len(dates) + 3 * len(targets)), memory_mb)
    units = ds.GetRasterBand(1).GetUnitType() or (ds.GetMetadata() or {}).get("UNITS", "")
    metadata = dict(
        {"SOURCE": path, "RESAMPLING": method}, **{k: v for k, v in (ds.GetMetadata() or {}).items() if k == "KIND"}
    )
    tasks = [
        dict(path=path, row0=r0, nrows=nr, t=t, t_new=t_new, method=method, min_valid=min_valid) for r0, nr in blocks
    ]
    results = (
        run_tasks(resample_block_task, tasks, None)
        if run_tasks is not None
        else ((i, resample_block_task(task)) for i, task in enumerate(tasks))
    )
    valid = 0
    with RasterWriter(out_path, grid, len(targets), dates=targets, units=units, metadata=metadata) as writer:
        for _, (row0, block) in results:
            writer.write_block(row0, block)
            valid += int(np.isfinite(block).sum())
        if valid == 0:
            raise TimeSeriesError(
                "every output pixel is NoData: no pixel of %s has %d valid dates around the target dates (all "
                "NoData input, or MIN_VALID too high); nothing was written" % (path, min_valid)
            )
    return {"dates": dates, "targets": targets, "valid_values": valid, "grid": grid}
