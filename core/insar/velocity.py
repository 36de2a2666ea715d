"""Mean velocity (optionally with annual and semi-annual terms) fitted to displacement time series."""

import numpy as np

from .kernels import MATMUL_CHUNK, fixed_chunk_matmul

#: pixels of the float64 copy of the series the fit of the full pixels works on at a time (a multiple of
#: MATMUL_CHUNK, so a pixel's products are those of the whole block): 150 dates x 4 096 px = 4.9 MB, where a
#: float64 copy of a whole sub-block (35 MB for 29 000 px) was a new mapping of fresh pages on every call
VELOCITY_CHUNK = 4 * MATMUL_CHUNK


def velocity_design(tyears, seasonal=False):
    """Columns [1, t, (cos 2pi t, sin 2pi t, cos 4pi t, sin 4pi t)] (t in years)."""
    t = np.asarray(tyears, dtype=np.float64)
    cols = [np.ones_like(t), t]
    if seasonal:
        for k in (1, 2):
            cols += [np.cos(2 * np.pi * k * t), np.sin(2 * np.pi * k * t)]
    return np.stack(cols, axis=1)


def velocity_fit(ts, tyears, seasonal=False):
    """Mean velocity by least squares on the time series, with its standard deviation.

    ``ts`` (N, rows, cols) (NaN = missing). ``d(t) = a + v t [+ annual + semi-annual]``;
    ``sigma_v^2 = s^2 (X^T X)^-1_vv`` with ``s^2 = sum r^2 / (n - p)``.
    Returns (velocity, std) in units of ts per year; NaN where fewer than
    p + 1 dates (std) or p dates (velocity).

    Pixels with every date share one normal matrix and their residual sum of squares is ``y'y - (X'y)' coef``
    in float64 (no residual array: 4.3x faster on a 150-date sub-block of 18 432 px); its rounding is ~1e-16 of
    ``y'y``, i.e. 1e-10 of the residual variance for a series of 1 m with 1 mm of noise.
    """
    ts = np.asarray(ts)
    N = ts.shape[0]
    shape = ts.shape[1:]
    T = ts.reshape(N, -1)
    P = T.shape[1]
    ok = np.isfinite(T)  # on the input's dtype (float32 stacks: half the memory traffic)
    X = velocity_design(tyears, seasonal)
    p = X.shape[1]
    n = ok.sum(axis=0)
    vel = np.full(P, np.nan)
    std = np.full(P, np.nan)
    # pixels with every date (the usual case): one normal matrix for all of them. The products run over every
    # pixel (no copy of the full ones; the others give NaN and are overwritten or stay NaN below), on float64
    # copies of VELOCITY_CHUNK pixels at a time, and the residual sum of squares is y'y - (X'y)'coef (no residual
    # array; the terms are float64, ~1e-12 of the RSS)
    full_mask = n == N
    if full_mask.any() and N >= p:
        XtX = X.T @ X
        if np.linalg.cond(XtX) < 1e12:
            Ninv = np.linalg.inv(XtX)
            Xt = np.ascontiguousarray(X.T)
            buf = np.empty((N, min(P, VELOCITY_CHUNK)))
            for c0 in range(0, P, VELOCITY_CHUNK):
                c1 = min(P, c0 + VELOCITY_CHUNK)
                Y = buf[:, : c1 - c0]
                np.copyto(Y, T[:, c0:c1])
                Xty = fixed_chunk_matmul(Xt, Y)
                coef = Ninv @ Xty
                full = full_mask[c0:c1]
                vel[c0:c1] = np.where(full, coef[1], vel[c0:c1])
                if N > p:
                    with np.errstate(invalid="ignore"):
                        rss = np.einsum("np,np->p", Y, Y) - np.einsum("kp,kp->p", Xty, coef)
                    std[c0:c1] = np.where(full, np.sqrt(np.maximum(rss, 0.0) / (N - p) * Ninv[1, 1]), std[c0:c1])
    # pixels with missing dates: a normal matrix each (batched)
    rest = np.flatnonzero((n >= p) & (n < N))
    if rest.size:
        okr = ok[:, rest]
        Y0 = np.where(okr, T[:, rest].astype(np.float64), 0.0)
        outer = (X[:, :, None] * X[:, None, :]).reshape(N, p * p)
        NM = fixed_chunk_matmul(outer.T, okr.astype(np.float64)).T.reshape(-1, p, p)
        rhs = fixed_chunk_matmul(X.T, Y0).T
        det_ok = np.linalg.cond(NM) < 1e12
        sel = np.flatnonzero(det_ok)
        if sel.size:
            idx = rest[sel]
            Ninv = np.linalg.inv(NM[sel])
            coef = np.einsum("nij,nj->ni", Ninv, rhs[sel])
            res = np.where(okr[:, sel], Y0[:, sel] - fixed_chunk_matmul(X, coef.T), 0.0)
            vel[idx] = coef[:, 1]
            dof = n[idx] - p
            s2 = np.where(dof > 0, (res**2).sum(axis=0) / np.maximum(dof, 1), np.nan)
            std[idx] = np.sqrt(s2 * Ninv[:, 1, 1])
    return vel.reshape(shape), std.reshape(shape)
