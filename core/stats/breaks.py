"""Discretization of numeric factors into classes (strata) for the Geodetector.

Methods (``METHODS``):

* ``natural`` -- exact natural breaks (Jenks 1967 / Fisher 1958), i.e. optimal
  one-dimensional k-means: the class boundaries minimise the within-class sum
  of squares SSW = sum_c sum_{i in c} w_i (x_i - mean_c)^2 over all partitions
  of the sorted values into ``k`` contiguous classes. Solved exactly by the
  layered dynamic programme of Fisher (1958),
  D_j(b) = min_a [D_{j-1}(a) + SSW(a..b-1)], on the sorted *unique* values with
  their counts as weights; each layer's row minima are found by the
  divide-and-conquer optimisation (the optimal split a*(b) is non-decreasing
  in b because SSW satisfies the quadrangle inequality; Wang & Song 2011,
  Ckmeans.1d.dp; Gronlund et al. 2017), O(k n log n) for n unique values.
  The recursion runs level by level (rows at odd multiples of a stride, bounded
  by the rows solved one level up), each level's candidates evaluated on
  contiguous slices of the prefix sums in cache-sized chunks, shared out to
  threads (numpy releases the GIL): no Python loop over values or rows.
* ``quantile`` -- breaks at the i/k sample quantiles (ties merge classes).
* ``equal`` -- equal-width intervals between min and max.
* ``geometric`` -- geometric interval: bounds min*(max/min)^(i/k), i.e. equal
  widths in log space; for data with values <= 0 the series is built on
  x - min + (max - min)/k_shift (documented in :func:`geometric_breaks`).
* ``sd`` -- standard deviation: classes one standard deviation wide centred
  on the mean (breaks mean + (i - k/2) s); the outer classes are open.
* ``manual`` -- user-given break values.

Breaks are returned as the ``k - 1`` inner class boundaries ``b``; a value x
goes to class c (0-based) when b[c-1] < x <= b[c] (classes closed on the right,
as mapclassify / R ``cut(right=TRUE)``), computed with ``np.searchsorted``.
Empty classes are dropped when values are coded (:func:`classify`).
"""

import os
from typing import NamedTuple

import numpy as np

from ..io.tasks import result_of, thread_pool

METHODS = ("natural", "quantile", "equal", "geometric", "sd", "manual")

#: integer / text factors with at most this many distinct values are used as
#: categories by :func:`is_categorical` (override with ``max_levels``).
DEFAULT_MAX_LEVELS = 50

#: levels of the natural-breaks DP with fewer candidates than this run in one thread
_THREAD_MIN = 100_000
#: candidates per chunk of a DP level (work arrays of a few MB: cache-resident)
_CHUNK = 1 << 17


# ----------------------------------------------------------------------------
# exact natural breaks
# ----------------------------------------------------------------------------


def _prefix(values, weights):
    """Prefix sums (length n+1) of w, w*x, w*x^2 on centred values."""
    w = weights.astype(np.float64)
    mean = np.dot(w, values) / w.sum()
    xc = values - mean
    pw = np.concatenate(([0.0], np.cumsum(w)))
    p1 = np.concatenate(([0.0], np.cumsum(w * xc)))
    p2 = np.concatenate(([0.0], np.cumsum(w * xc * xc)))
    return pw, p1, p2


class _Costs(NamedTuple):
    """What the cost C(b, a) = a_base[a] - (p1[b]-p1[a])^2 / (pw[b]-pw[a]) of a DP layer reads: the prefix
    sums ``pw``, ``p1`` (:func:`_prefix`) and ``a_base`` = D_{j-1}[a] - p2[a]."""

    pw: np.ndarray
    p1: np.ndarray
    a_base: np.ndarray


class _Workers(NamedTuple):
    """One :class:`_Buffers` per thread and the thread pool (None: this thread only)."""

    bufs: list
    pool: object = None


class _Buffers:
    """Float work arrays reused across depths and layers (fresh multi-MB arrays per numpy call
    cost more in page faults than the arithmetic itself); one set per thread."""

    def __init__(self, cap):
        self.f1 = np.empty(cap)
        self.f2 = np.empty(cap)
        self.bm = np.empty(cap, dtype=bool)


def _row_minima(b, lo, hi, costs, buf):
    """Row minima of C(b, a) = a_base[a] - (p1[b]-p1[a])^2 / (pw[b]-pw[a]) over a in [lo, hi].

    Rows ``b`` ascend and their candidate ranges come from the divide-and-conquer bounds:
    ``lo`` is non-decreasing and ``hi[t] <= lo[t+1]``. The ranges therefore tile the one span
    [lo[0], hi[-1]] except for single shared end points (hi[t] == lo[t+1]) and gaps
    (hi[t] < a < lo[t+1]: candidates of no row). Row t *owns* [lo[t], lo[t+1]) (the last row
    [lo, hi]): each candidate of the span is evaluated once, for its owner, on contiguous slices
    of the prefix arrays; gap candidates are set to +inf; a shared end point is evaluated once
    more for the row on its left. Ties go to the smallest a. Returns (minima, argmin a).
    """
    pw, p1, a_base = costs
    start, stop = int(lo[0]), int(hi[-1]) + 1
    total = stop - start
    nrow = b.size
    rel = lo - start  # first candidate owned by each row, relative to the span
    own_end = np.empty(nrow, dtype=np.int64)
    own_end[:-1] = rel[1:]
    own_end[-1] = total
    # seg[i]: the row owning candidate start + i (rows whose owned range is empty own nothing)
    if nrow > 1:
        seg = np.cumsum(np.bincount(rel[1:], minlength=total))
    else:
        seg = np.zeros(total, dtype=np.int64)
    f1, f2 = buf.f1[:total], buf.f2[:total]
    wb, pb = pw[b], p1[b]
    with np.errstate(divide="ignore", invalid="ignore"):
        np.take(wb, seg, out=f1, mode="clip")
        f1 -= pw[start:stop]  # weight of the class a..b-1 (<= 0 only in gaps)
        np.take(pb, seg, out=f2, mode="clip")
        f2 -= p1[start:stop]
        np.square(f2, out=f2)
        f2 /= f1
        np.subtract(a_base[start:stop], f2, out=f1)
    hrel = hi - start
    gap = own_end - hrel - 1  # owned candidates past the row's upper bound
    g = np.flatnonzero(gap > 0)
    if g.size:
        glen = gap[g]
        gend = np.cumsum(glen)
        f1[np.arange(int(gend[-1])) + np.repeat(hrel[g] + 1 - (gend - glen), glen)] = np.inf
    if nrow > 1 and (own_end[:-1] == rel[:-1]).any():  # rows owning nothing: only a shared end point
        owners = np.flatnonzero(own_end > rel)
        mins = np.full(nrow, np.inf)
        ostart = rel[owners]
    else:
        owners, ostart = None, rel
    omin = np.minimum.reduceat(f1, ostart)
    if owners is None:
        mins = omin
    else:
        mins[owners] = omin
    np.take(mins, seg, out=f2, mode="clip")
    bm = buf.bm[:total]
    np.equal(f1, f2, out=bm)
    pos = np.flatnonzero(bm)
    if pos.size != ostart.size:  # ties: the first position of each row's minimum
        pos = pos[np.searchsorted(pos, ostart)]
    if owners is None:
        best = pos + start
    else:
        best = np.zeros(nrow, dtype=np.int64)
        best[owners] = pos + start
    if nrow > 1:
        # shared end points: candidate lo[t+1] of row t when hi[t] == lo[t+1]
        a = lo[1:]
        rel_a = rel[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            dp1 = pb[:-1] - p1[a]
            cost = a_base[a] - dp1 * dp1 / (wb[:-1] - pw[a])
        better = (hrel[:-1] == rel_a) & (cost < mins[:-1])
        mins[:-1] = np.where(better, cost, mins[:-1])
        best[:-1] = np.where(better, a, best[:-1])
    return mins, best


def _level_minima(b, lo, hi, costs, workers):
    """:func:`_row_minima` of one level in cache-sized chunks of rows (about ``_CHUNK``
    candidates each: the work arrays stay in the CPU cache instead of streaming the whole
    level through memory several times), the chunks shared out to the threads of ``pool``.
    Rows with more than ``_CHUNK`` candidates (the first levels) are cut into pieces of
    consecutive candidates, solved as rows of their own, and each row keeps its best piece
    (the first one on ties: the smallest start)."""
    lens = hi - lo + 1
    npieces = -(-lens // _CHUNK)
    if npieces.max() <= 1:
        return _chunked_minima(b, lo, hi, costs, workers)
    row = np.repeat(np.arange(b.size), npieces)
    first = np.cumsum(npieces) - npieces
    k = np.arange(row.size) - first[row]  # piece number within its row
    plo = lo[row] + k * _CHUNK
    phi = np.minimum(plo + (_CHUNK - 1), hi[row])
    pmins, pbest = _chunked_minima(b[row], plo, phi, costs, workers)
    mins = np.minimum.reduceat(pmins, first)
    hit = np.flatnonzero(pmins == mins[row])
    return mins, pbest[hit[np.searchsorted(hit, first)]]


def _chunked_minima(b, lo, hi, costs, workers):
    """:func:`_level_minima` for rows of at most about ``_CHUNK`` candidates."""
    bufs, pool = workers
    span = int(hi[-1]) - int(lo[0]) + 1
    nchunk = min(b.size, -(-span // _CHUNK))
    if nchunk <= 1:
        return _row_minima(b, lo, hi, costs, bufs[0])
    marks = np.linspace(int(lo[0]), int(hi[-1]), nchunk + 1)[1:-1]
    cuts = np.unique(np.clip(np.searchsorted(lo, marks), 1, b.size - 1)).tolist()
    edges = list(zip([0] + cuts, cuts + [b.size]))
    nthreads = len(bufs) if pool is not None else 1

    def run(part, buf):
        return [_row_minima(b[u:v], lo[u:v], hi[u:v], costs, buf) for u, v in part]

    if nthreads > 1 and len(edges) >= nthreads:
        k = np.linspace(0, len(edges), nthreads + 1).astype(int)
        futures = [pool.submit(run, edges[k[i] : k[i + 1]], bufs[i]) for i in range(nthreads)]
        parts = [r for f in futures for r in result_of(f)]
    else:
        parts = run(edges, bufs[0])
    return np.concatenate([m for m, _ in parts]), np.concatenate([a for _, a in parts])


def _layer(dprev, prefix, j, b_range, out, workers):
    """One DP layer: for every b in [b_lo, b_hi], the best start a of class j.

    D_j(b) = min_{j-1 <= a <= b-1} dprev[a] + SSW(a, b), where SSW(a, b) of the
    values a..b-1 is (p2[b]-p2[a]) - (p1[b]-p1[a])^2 / (pw[b]-pw[a]).
    Monotone divide and conquer over b, level by level: the rows at odd multiples of a
    stride s are solved together, their candidates bounded by the optimal starts of the rows
    s before and s after (solved at the previous, coarser level), because the optimal start
    a*(b) is non-decreasing in b. The Python loop runs over the log2(n) levels only; each
    level evaluates about n candidates (:func:`_row_minima`), shared out to one thread per
    buffer set when ``workers`` has a pool (numpy releases the GIL in these calls).
    ``prefix`` = (pw, p1, p2) of :func:`_prefix`, ``b_range`` = (b_lo, b_hi), ``out`` = (D_j, opt) arrays.
    """
    pw, p1, p2 = prefix
    b_lo, b_hi = b_range
    d_out, opt_out = out
    a_base = dprev - p2  # dprev[a] - p2[a]; p2[b] is constant within a row
    costs = _Costs(pw, p1, a_base)
    nr = b_hi - b_lo + 1
    o = np.empty(nr + 2, dtype=np.int64)  # o[q]: optimal start of row b_lo + q - 1
    o[0] = j - 1  # bounds for the first and the last row
    o[nr + 1] = b_hi - 1
    s = 1 << (nr.bit_length() - 1)  # largest power of two <= nr
    while s >= 1:
        # rows at positions q = s, 3s, 5s, ... <= nr (strided views of o, d_out, opt_out)
        m = (nr - s) // (2 * s) + 1
        rows = slice(b_lo - 1 + s, b_lo - 1 + s + 2 * s * (m - 1) + 1, 2 * s)
        b = np.arange(rows.start, rows.stop, rows.step)
        lo = o[0 : 2 * s * (m - 1) + 1 : 2 * s]  # o[q - s]
        hi = np.empty(m, dtype=np.int64)  # min(o[q + s], b - 1), o[nr + 1] past the end
        up = o[2 * s :: 2 * s][:m]
        hi[: up.size] = up
        hi[up.size :] = o[nr + 1]
        np.minimum(hi, b - 1, out=hi)
        mins, best = _level_minima(b, lo.copy(), hi, costs, workers)
        d_out[rows] = mins + p2[rows]
        opt_out[rows] = best
        o[s : s + 2 * s * (m - 1) + 1 : 2 * s] = best
        s >>= 1


def _fisher_dp(values, weights, kmax, all_k, threads=None):
    """Run the DP layers 2..kmax; returns (layers of opt, list of D_j(n)).

    ``threads``: worker threads for the candidate evaluation of large levels (default: the
    number of CPUs, at most 4; 1 = no threads). Results do not depend on it.
    """
    n = values.size
    pw, p1, p2 = _prefix(values, weights)
    d = p2 - np.divide(p1 * p1, pw, out=np.zeros_like(p1), where=pw > 0)  # D_1(b)
    totals = [float(d[n])]
    opts = []
    if threads is None:
        threads = min(os.cpu_count() or 1, 4)
    threads = max(1, int(threads)) if n > _THREAD_MIN else 1
    bufs = [_Buffers(n + 2) for _ in range(threads)]
    pool = thread_pool(threads, "subsidence-breaks") if threads > 1 else None
    try:
        for j in range(2, kmax + 1):
            d_new = np.full(n + 1, np.inf)
            opt = np.zeros(n + 1, dtype=np.int64)
            if all_k:
                b_lo, b_hi = j, n
            elif j < kmax:
                b_lo, b_hi = j, n - (kmax - j)
            else:
                b_lo = b_hi = n
            _layer(d, (pw, p1, p2), j, (b_lo, b_hi), (d_new, opt), _Workers(bufs, pool))
            opts.append(opt.astype(np.int32))
            d = d_new
            totals.append(float(d[n]))
    finally:
        if pool is not None:
            pool.shutdown()
    return opts, totals


def _backtrack(opts, n, k):
    bounds = np.zeros(k - 1, dtype=np.int64)
    b = n
    for j in range(k, 1, -1):
        a = int(opts[j - 2][b])
        bounds[j - 2] = a
        b = a
    return bounds


def natural_breaks_weighted(values, weights, k, threads=None):
    """Exact optimal partition of sorted unique ``values`` (with ``weights``).

    Returns ``(bounds, ssw)``: ``bounds`` are the indices (into ``values``) of
    the first value of classes 2..k (length k-1) and ``ssw`` the minimal
    within-class sum of squares (Fisher 1958 DP, see module docstring).
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n = values.size
    if k >= n:
        return np.arange(1, n, dtype=np.int64), 0.0
    opts, totals = _fisher_dp(values, weights, k, all_k=False, threads=threads)
    return _backtrack(opts, n, k), max(totals[-1], 0.0)


def natural_breaks_multi(x, ks, threads=None):
    """Exact natural breaks for several class counts from one DP run.

    Returns ``{k: breaks}``; same convention as :func:`natural_breaks`.
    """
    x = _finite(x)
    vals, counts = np.unique(x, return_counts=True)
    n = vals.size
    ks = sorted({int(k) for k in ks})
    kmax = min(max(ks), n)
    out = {}
    opts, _ = (
        _fisher_dp(vals.astype(np.float64), counts.astype(np.float64), kmax, all_k=True, threads=threads)
        if kmax >= 2
        else ([], [])
    )
    for k in ks:
        if k >= n:
            out[k] = vals[:-1].copy()
        elif k <= 1:
            out[k] = np.zeros(0)
        else:
            out[k] = vals[_backtrack(opts, n, k) - 1]
    return out


def _finite(x, name="values"):
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError(f"{name}: no finite values to classify")
    return x


def natural_breaks(x, k, threads=None):
    """Exact natural breaks (Jenks / Fisher, optimal 1-D k-means) of ``x``.

    NaN/inf are ignored. Works on the sorted unique values weighted by their
    counts, so the cost depends on the number of distinct values. Returns the
    k-1 inner breaks as the upper bound (largest value) of classes 1..k-1, the
    convention of jenkspy/mapclassify (their bins without the maximum).
    ``threads``: threads for large inputs (default: CPUs, at most 4); the result does not
    depend on it.
    """
    k = _check_k(k)
    x = _finite(x)
    vals, counts = np.unique(x, return_counts=True)
    bounds, _ = natural_breaks_weighted(vals, counts, k, threads=threads)
    return vals[bounds - 1]


def ssw_of_breaks(x, breaks):
    """Within-class sum of squares of ``x`` classified by ``breaks``."""
    x = _finite(x)
    codes = np.searchsorted(np.asarray(breaks, dtype=np.float64), x, side="left")
    n = np.bincount(codes)
    s = np.bincount(codes, weights=x)
    keep = n > 0
    means = np.zeros(n.size)
    means[keep] = s[keep] / n[keep]
    return float(np.sum((x - means[codes]) ** 2))


# ----------------------------------------------------------------------------
# other methods
# ----------------------------------------------------------------------------


def _check_k(k):
    k = int(k)
    if k < 1:
        raise ValueError(f"number of classes must be >= 1, got {k}")
    return k


def quantile_breaks(x, k):
    """Breaks at the i/k quantiles (i = 1..k-1, linear interpolation); ties merge."""
    k = _check_k(k)
    x = _finite(x)
    b = np.quantile(x, np.arange(1, k) / k)
    return np.unique(b[b < x.max()])


def equal_breaks(x, k):
    """Equal-interval breaks min + (max - min) i / k, i = 1..k-1."""
    k = _check_k(k)
    x = _finite(x)
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros(0)
    return lo + (hi - lo) * np.arange(1, k) / k


def geometric_breaks(x, k):
    """Geometric-interval breaks: equal widths of log(x).

    For positive data the bounds are min * (max/min)^(i/k). When the data
    include values <= 0 the series is built on the shifted values
    x - min + d with d = (max - min) / 100 (so the smallest class is the
    narrowest) and shifted back.
    """
    k = _check_k(k)
    x = _finite(x)
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros(0)
    shift = 0.0
    if lo <= 0:
        shift = -lo + (hi - lo) / 100.0
    a, b = lo + shift, hi + shift
    return a * (b / a) ** (np.arange(1, k) / k) - shift


def sd_breaks(x, k):
    """Standard-deviation breaks: mean + (i - k/2) * s, i = 1..k-1 (s: sample sd).

    Classes are one standard deviation wide and centred on the mean (for odd
    k the middle class straddles the mean); the first and last classes are
    open. Breaks outside the data range are dropped.
    """
    k = _check_k(k)
    x = _finite(x)
    s = x.std(ddof=1) if x.size > 1 else 0.0
    if s == 0:
        return np.zeros(0)
    b = x.mean() + (np.arange(1, k) - k / 2.0) * s
    return b[(b >= x.min()) & (b < x.max())]


def manual_breaks(x, breaks):
    """User breaks, sorted and de-duplicated (values are class upper bounds)."""
    b = np.unique(np.asarray(breaks, dtype=np.float64))
    if b.size and not np.all(np.isfinite(b)):
        raise ValueError("manual breaks must be finite numbers")
    return b


def compute_breaks(x, method="natural", k=5, breaks=None):
    """Inner class breaks of ``x`` by ``method`` (see module docstring)."""
    method = str(method).lower()
    if method == "manual":
        if breaks is None:
            raise ValueError("method 'manual' needs a list of break values")
        return manual_breaks(x, breaks)
    func = {
        "natural": natural_breaks,
        "jenks": natural_breaks,
        "quantile": quantile_breaks,
        "equal": equal_breaks,
        "geometric": geometric_breaks,
        "sd": sd_breaks,
    }.get(method)
    if func is None:
        raise ValueError(f"unknown discretization method {method!r}; use one of {METHODS}")
    return func(x, k)


# ----------------------------------------------------------------------------
# coding
# ----------------------------------------------------------------------------


def classify(x, breaks):
    """Integer class codes of ``x`` for the inner ``breaks`` (right-closed).

    Returns ``(codes, used)``: codes are 0..L-1 with empty classes removed
    (compacted), -1 for NaN/inf; ``used`` are the indices of the original
    classes 0..len(breaks) that are present.
    """
    x = np.asarray(x, dtype=np.float64)
    b = np.asarray(breaks, dtype=np.float64)
    raw = np.searchsorted(b, x, side="left")
    ok = np.isfinite(x)
    present = np.bincount(raw[ok], minlength=b.size + 1) > 0
    remap = np.cumsum(present) - 1
    codes = np.where(ok, remap[raw], -1).astype(np.int32)
    return codes, np.flatnonzero(present)


def class_ranges(x, breaks, used):
    """Text ranges ``(lo, hi]`` of the used classes (min/max of data at the ends)."""
    xf = _finite(x)
    edges = np.concatenate(([xf.min()], np.asarray(breaks, dtype=np.float64), [xf.max()]))
    out = []
    for c in used:
        lo, hi = edges[c], edges[c + 1]
        left = "[" if c == 0 else "("
        out.append(f"{left}{lo:.6g}, {hi:.6g}]")
    return out


def is_categorical(values, max_levels=DEFAULT_MAX_LEVELS):
    """True for text/bool factors and integer-valued ones with few levels.

    Integer-valued means integer dtype or floats that are all whole numbers;
    "few" means at most ``max_levels`` distinct finite values.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "OUSb":
        return True
    if arr.dtype.kind in "iu":
        return _int_levels(arr)[0].size <= max_levels
    if arr.dtype.kind == "f":
        f = arr[np.isfinite(arr)]
        if f.size and np.all(f == np.round(f)):
            return np.unique(f).size <= max_levels
    return False


def _int_levels(arr):
    """(levels, codes) of an integer array; O(N) bincount for small ranges."""
    arr = np.asarray(arr)
    if arr.size and arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo <= max(4 * arr.size, 1 << 16):
            off = (arr - lo).astype(np.int64)
            present = np.bincount(off, minlength=hi - lo + 1) > 0
            remap = np.cumsum(present) - 1
            return np.flatnonzero(present) + lo, remap[off]
    levels, inv = np.unique(arr, return_inverse=True)
    return levels, inv


def encode_categories(values):
    """Integer codes 0..L-1 for a categorical factor; -1 for missing.

    Missing: None, NaN, empty text. Returns ``(codes, labels)``.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr)
        labels, inv = np.unique(arr[ok], return_inverse=True)
    elif arr.dtype.kind in "iub":
        ok = np.ones(arr.shape, dtype=bool)
        labels, inv = _int_levels(arr.ravel()) if arr.dtype.kind != "b" else np.unique(arr, return_inverse=True)
    else:
        import pandas as pd

        ser = pd.Series(arr.ravel().astype(object))
        ok = (ser.notna() & (ser.astype(str) != "")).to_numpy().reshape(arr.shape)
        labels, inv = np.unique(arr[ok].astype(str), return_inverse=True)
    codes = np.full(arr.shape, -1, dtype=np.int32)
    codes[ok] = inv
    return codes, labels
