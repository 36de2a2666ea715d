"""The reference pixel of an SBAS inversion: window medians, the automatic choice, map <-> pixel."""

import warnings

import numpy as np


def reference_values(window_values):
    """Per-interferogram reference value: the NaN-ignoring median of the window ``(M, k)``.

    Returns (values (M,), missing bool (M,)) where missing marks interferograms
    with no valid pixel in the window.
    """
    v = np.asarray(window_values, dtype=np.float64).reshape(window_values.shape[0], -1)
    missing = ~np.isfinite(v).any(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(v, axis=1)
    return med, missing


def auto_reference(n_valid, n_ifg, score, higher_is_better=True):
    """Auto reference pixel: data in every interferogram and the best score.

    ``n_valid`` and ``score`` are (rows, cols). Returns (row, col) or None
    when no pixel has data in every interferogram.
    """
    cand = (np.asarray(n_valid) == n_ifg) & np.isfinite(score)
    if not cand.any():
        return None
    s = np.where(cand, score, -np.inf if higher_is_better else np.inf)
    k = int(np.argmax(s) if higher_is_better else np.argmin(s))
    return divmod(k, s.shape[1])


def better_candidate(candidate, best, higher_is_better):
    """``candidate`` (score, row, col) beats ``best``: better score, or the same score earlier in row order."""
    if best is None:
        return True
    if candidate[0] != best[0]:
        return candidate[0] > best[0] if higher_is_better else candidate[0] < best[0]
    return (candidate[1], candidate[2]) < (best[1], best[2])


def pixel_of(grid, x, y):
    """(row, col) of map coordinates in a north-up grid, or None when outside."""
    gt = grid.geotransform
    det = gt[1] * gt[5] - gt[2] * gt[4]
    dx, dy = x - gt[0], y - gt[3]
    col = (gt[5] * dx - gt[2] * dy) / det
    row = (-gt[4] * dx + gt[1] * dy) / det
    if not (0 <= col < grid.xsize and 0 <= row < grid.ysize):
        return None
    return int(np.floor(row)), int(np.floor(col))


def pixel_centre(grid, row, col):
    """Map coordinates (x, y) of the centre of pixel (row, col)."""
    gt = grid.geotransform
    return (gt[0] + (col + 0.5) * gt[1] + (row + 0.5) * gt[2], gt[3] + (col + 0.5) * gt[4] + (row + 0.5) * gt[5])
