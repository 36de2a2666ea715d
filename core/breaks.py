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
  Ckmeans.1d.dp; Gronlund et al. 2017), O(k n log n) for n unique values,
  vectorised over all sub-problems of one recursion depth (no Python loop
  over values).
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

import numpy as np

METHODS = ("natural", "quantile", "equal", "geometric", "sd", "manual")

#: integer / text factors with at most this many distinct values are used as
#: categories by :func:`is_categorical` (override with ``max_levels``).
DEFAULT_MAX_LEVELS = 50


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


class _Buffers:
    """Work arrays reused across depths and layers (fresh multi-MB arrays per
    numpy call cost more in page faults than the arithmetic itself)."""

    def __init__(self, cap):
        self.ar = np.arange(cap, dtype=np.int64)
        self.seg = np.empty(cap, dtype=np.int64)
        self.a = np.empty(cap, dtype=np.int64)
        self.f1 = np.empty(cap)
        self.f2 = np.empty(cap)
        self.f3 = np.empty(cap)
        self.bm = np.empty(cap, dtype=bool)


def _layer(dprev, pw, p1, p2, j, b_lo, b_hi, d_out, opt_out, buf, opt_prev=None):
    """One DP layer: for every b in [b_lo, b_hi], the best start a of class j.

    D_j(b) = min_{j-1 <= a <= b-1} dprev[a] + SSW(a, b), where SSW(a, b) of the
    values a..b-1 is (p2[b]-p2[a]) - (p1[b]-p1[a])^2 / (pw[b]-pw[a]).
    Divide and conquer over b: the optimal a of the middle row bounds the
    candidates of the rows on either side. All sub-problems of one depth are
    evaluated together (concatenated candidate ranges, segmented minimum by
    ``np.minimum.reduceat``), so the Python loop runs over depths only.
    ``opt_prev`` (the optimal starts of layer j-1) is a second lower bound:
    a*_j(b) >= a*_{j-1}(b) (adding a class never moves the last class's start
    left; the bound Ckmeans.1d.dp uses), which shrinks the candidate ranges.
    """
    a_base = dprev - p2  # dprev[a] - p2[a]; p2[b] is constant within a row
    rl = np.array([b_lo], dtype=np.int64)
    rh = np.array([b_hi], dtype=np.int64)
    ol = np.array([j - 1], dtype=np.int64)
    oh = np.array([b_hi - 1], dtype=np.int64)
    while rl.size:
        mid = (rl + rh) >> 1
        hi = np.minimum(oh, mid - 1)
        lo = ol if opt_prev is None else np.minimum(np.maximum(ol, opt_prev[mid]), hi)
        lens = hi - lo + 1
        ends = np.cumsum(lens)
        starts = ends - lens
        total = int(ends[-1])
        seg = buf.seg[:total]
        seg.fill(0)
        seg[starts[1:]] = 1
        np.cumsum(seg, out=seg)
        a = buf.a[:total]
        np.take(lo - starts, seg, out=a, mode="clip")
        a += buf.ar[:total]
        f1, f2, f3 = buf.f1[:total], buf.f2[:total], buf.f3[:total]
        np.take(pw[mid], seg, out=f1, mode="clip")
        np.take(pw, a, out=f2, mode="clip")
        f1 -= f2  # weight of the class a..mid-1
        np.take(p1[mid], seg, out=f2, mode="clip")
        np.take(p1, a, out=f3, mode="clip")
        f2 -= f3
        np.square(f2, out=f2)
        f2 /= f1
        np.take(a_base, a, out=f1, mode="clip")
        f1 -= f2  # cost minus the per-row constant p2[mid]
        mins = np.minimum.reduceat(f1, starts)
        np.take(mins, seg, out=f2, mode="clip")
        bm = buf.bm[:total]
        np.equal(f1, f2, out=bm)
        pos = np.flatnonzero(bm)
        best = a[pos[np.searchsorted(pos, starts)]]
        d_out[mid] = mins + p2[mid]
        opt_out[mid] = best
        # children in row order (left child, then right child of each row): the candidate ranges
        # of one depth then run through the prefix arrays front to back, and the gathers below
        # read memory sequentially instead of jumping between the two halves
        keep = np.stack((rl < mid, mid < rh), 1).ravel()
        rl, rh, ol, oh = (
            np.stack((rl, mid + 1), 1).ravel()[keep],
            np.stack((mid - 1, rh), 1).ravel()[keep],
            np.stack((ol, best), 1).ravel()[keep],
            np.stack((best, oh), 1).ravel()[keep],
        )


def _fisher_dp(values, weights, kmax, all_k):
    """Run the DP layers 2..kmax; returns (layers of opt, list of D_j(n))."""
    n = values.size
    pw, p1, p2 = _prefix(values, weights)
    d = p2 - np.divide(p1 * p1, pw, out=np.zeros_like(p1), where=pw > 0)  # D_1(b)
    totals = [float(d[n])]
    opts = []
    buf = _Buffers(2 * n + 4)
    opt_prev = None
    for j in range(2, kmax + 1):
        d_new = np.full(n + 1, np.inf)
        opt = np.zeros(n + 1, dtype=np.int64)
        if all_k:
            b_lo, b_hi = j, n
        elif j < kmax:
            b_lo, b_hi = j, n - (kmax - j)
        else:
            b_lo = b_hi = n
        _layer(d, pw, p1, p2, j, b_lo, b_hi, d_new, opt, buf, opt_prev)
        opt_prev = opt
        opts.append(opt.astype(np.int32))
        d = d_new
        totals.append(float(d[n]))
    return opts, totals


def _backtrack(opts, n, k):
    bounds = np.zeros(k - 1, dtype=np.int64)
    b = n
    for j in range(k, 1, -1):
        a = int(opts[j - 2][b])
        bounds[j - 2] = a
        b = a
    return bounds


def natural_breaks_weighted(values, weights, k):
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
    opts, totals = _fisher_dp(values, weights, k, all_k=False)
    return _backtrack(opts, n, k), max(totals[-1], 0.0)


def natural_breaks_multi(x, ks):
    """Exact natural breaks for several class counts from one DP run.

    Returns ``{k: breaks}``; same convention as :func:`natural_breaks`.
    """
    x = _finite(x)
    vals, counts = np.unique(x, return_counts=True)
    n = vals.size
    ks = sorted({int(k) for k in ks})
    kmax = min(max(ks), n)
    out = {}
    opts, _ = _fisher_dp(vals.astype(np.float64), counts.astype(np.float64), kmax, all_k=True) if kmax >= 2 else ([], [])
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


def natural_breaks(x, k):
    """Exact natural breaks (Jenks / Fisher, optimal 1-D k-means) of ``x``.

    NaN/inf are ignored. Works on the sorted unique values weighted by their
    counts, so the cost depends on the number of distinct values. Returns the
    k-1 inner breaks as the upper bound (largest value) of classes 1..k-1, the
    convention of jenkspy/mapclassify (their bins without the maximum).
    """
    k = _check_k(k)
    x = _finite(x)
    vals, counts = np.unique(x, return_counts=True)
    bounds, _ = natural_breaks_weighted(vals, counts, k)
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
