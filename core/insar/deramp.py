"""Orbital / long-wavelength ramps of interferograms (no QGIS imports).

A linear (``a + b x + c y``) or quadratic (``+ d x^2 + e x y + f y^2``) surface is fitted to each
interferogram by least squares over its reliable pixels and subtracted (MintPy ``remove_ramp``,
LiCSBAS ``--deramp``). The normal equations ``X^T W X`` and ``X^T W y`` are additive over pixels, so the
image is streamed in windows: per window, all interferograms at once, ``X^T W X`` = ``W (M, P) @
outer(X) (P, p^2)`` and ``X^T W y`` = ``(W y) (M, P) @ X (P, p)`` (two matrix products). Coordinates are
the pixel centres scaled to [-1, 1] over the whole raster (well-conditioned normal equations whatever
the raster size).
"""

import numpy as np

from ..io.errors import TimeSeriesError

DERAMP_NONE = "none"
DERAMP_LINEAR = "linear"
DERAMP_QUADRATIC = "quadratic"
DERAMP_MODES = (DERAMP_NONE, DERAMP_LINEAR, DERAMP_QUADRATIC)
N_TERMS = {DERAMP_LINEAR: 3, DERAMP_QUADRATIC: 6}
#: fewest reliable pixels per coefficient for a ramp to be fitted
MIN_PIXELS_PER_TERM = 10


def design(row0, nrows, col0, ncols, ysize, xsize, mode):
    """Design matrix (nrows * ncols, p) of the window's pixel centres (row-major)."""
    if mode not in N_TERMS:
        raise ValueError("unknown ramp %r (use one of %s)" % (mode, ", ".join(DERAMP_MODES)))
    y = (np.arange(row0, row0 + nrows) + 0.5) / ysize * 2.0 - 1.0
    x = (np.arange(col0, col0 + ncols) + 0.5) / xsize * 2.0 - 1.0
    xx = np.broadcast_to(x[None, :], (nrows, ncols)).ravel()
    yy = np.broadcast_to(y[:, None], (nrows, ncols)).ravel()
    cols = [np.ones_like(xx), xx, yy]
    if mode == DERAMP_QUADRATIC:
        cols += [xx * xx, xx * yy, yy * yy]
    return np.stack(cols, axis=1)


def empty_normals(n_ifg, mode, n_rhs=1):
    p = N_TERMS[mode]
    return {"xtx": np.zeros((n_ifg, p, p)), "xty": np.zeros((n_rhs, n_ifg, p)), "n": np.zeros(n_ifg, dtype=np.int64)}


def accumulate(normals, values, reliable, row0, col0, ysize, xsize, mode):
    """Add a window to the normal equations.

    ``values``: (M, h, w) or a list of such arrays (several right-hand sides sharing the same reliable
    pixels, e.g. with and without a tropospheric correction); ``reliable``: (M, h, w) bool (pixels to fit:
    finite, coherent, outside the deforming area)."""
    vals = values if isinstance(values, (list, tuple)) else [values]
    M, h, w = reliable.shape
    X = design(row0, h, col0, w, ysize, xsize, mode)
    p = X.shape[1]
    Wt = reliable.reshape(M, -1).astype(np.float64)
    outer = (X[:, :, None] * X[:, None, :]).reshape(-1, p * p)
    normals["xtx"] += (Wt @ outer).reshape(M, p, p)
    normals["n"] += reliable.reshape(M, -1).sum(axis=1)
    for r, v in enumerate(vals):
        y = np.where(reliable, v, 0.0).reshape(M, -1).astype(np.float64)
        normals["xty"][r] += y @ X
    return normals


def accumulate_one(normals, k, values, reliable, X, outer, outer_sum=None):
    """Add one interferogram ``k``'s window (``values``: list of (h, w) right-hand sides, ``reliable`` (h, w))
    with the window's design ``X`` (P, p) and ``outer`` (P, p^2) computed once for all interferograms
    (``outer_sum``: its column sums, also computed once)."""
    p = X.shape[1]
    wt = reliable.reshape(-1)
    n = int(np.count_nonzero(wt))
    if n == 0:
        return normals
    if n > wt.size // 2:
        # mostly reliable: the window's total minus the few unreliable pixels
        bad = np.flatnonzero(~wt)
        total = outer.sum(axis=0) if outer_sum is None else outer_sum
        normals["xtx"][k] += (total - outer[bad].sum(axis=0)).reshape(p, p)
    else:
        normals["xtx"][k] += outer[np.flatnonzero(wt)].sum(axis=0).reshape(p, p)
    done = {}
    for r, v in enumerate(values):
        if id(v) in done:  # the same values (e.g. no GACOS): the same products
            normals["xty"][r, k] += done[id(v)]
            continue
        vv = v.reshape(-1)
        if n < wt.size:
            vv = np.where(wt, vv, 0)
        prod = vv.astype(np.float64) @ X
        done[id(v)] = prod
        normals["xty"][r, k] += prod
    normals["n"][k] += n
    return normals


def window_design(row0, nrows, col0, ncols, ysize, xsize, mode):
    """(X, outer, column sums of outer) of a window for :func:`accumulate_one`."""
    X = design(row0, nrows, col0, ncols, ysize, xsize, mode)
    p = X.shape[1]
    outer = (X[:, :, None] * X[:, None, :]).reshape(-1, p * p)
    return X, outer, outer.sum(axis=0)


def residual_variance(normals, sumsq, rhs=0):
    """Variance (M,) of each interferogram's values about its least-squares surface, from the normal
    equations and the sums of squares of the same pixels (``sumsq`` (M,))."""
    coef, bad = solve(normals, rhs=rhs)
    n = np.maximum(normals["n"], 1)
    rss = sumsq - np.einsum("mp,mp->m", np.where(np.isfinite(coef), coef, 0.0), normals["xty"][rhs])
    out = np.maximum(rss, 0.0) / n
    out[bad] = np.nan
    return out


def solve(normals, names=None, rhs=0):
    """Ramp coefficients (M, p) of right-hand side ``rhs``; an interferogram with too few reliable pixels
    gets NaN coefficients and is listed in the second value (indices)."""
    xtx, xty, n = normals["xtx"], normals["xty"][rhs], normals["n"]
    M, p, _ = xtx.shape
    coef = np.full((M, p), np.nan)
    ok = n >= MIN_PIXELS_PER_TERM * p
    if ok.any():
        try:
            coef[ok] = np.linalg.solve(xtx[ok], xty[ok][:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            for k in np.flatnonzero(ok):
                coef[k] = np.linalg.lstsq(xtx[k], xty[k], rcond=None)[0]
    return coef, np.flatnonzero(~ok)


def evaluate(coef, row0, nrows, col0, ncols, ysize, xsize, mode, dtype=np.float32):
    """Ramp values (M, nrows, ncols) of coefficients (M, p) on a window."""
    X = design(row0, nrows, col0, ncols, ysize, xsize, mode)
    c = np.where(np.isfinite(coef), coef, 0.0)
    return (c @ X.T).astype(dtype).reshape(coef.shape[0], nrows, ncols)


def fit_and_remove(stack, reliable=None, mode=DERAMP_LINEAR):
    """Whole-array convenience: remove the ramp of every interferogram of ``stack`` (M, rows, cols).
    Returns (deramped stack, coefficients)."""
    stack = np.asarray(stack)
    M, h, w = stack.shape
    rel = np.isfinite(stack) if reliable is None else (np.asarray(reliable, dtype=bool) & np.isfinite(stack))
    normals = accumulate(empty_normals(M, mode), stack, rel, 0, 0, h, w, mode)
    coef, bad = solve(normals)
    if bad.size:
        raise TimeSeriesError(
            "too few reliable pixels to fit a %s ramp to interferogram(s) %s" % (mode, ", ".join(str(k) for k in bad))
        )
    return stack - evaluate(coef, 0, h, 0, w, h, w, mode, stack.dtype), coef
