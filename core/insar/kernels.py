"""Linear-algebra kernels of the SBAS solver, vectorised across pixels (or validity patterns).

Shapes put the pixel (pattern) axis LAST so that each step is one numpy operation over all pixels.
"""

import math

import numpy as np

from ..io.blas import matmul

MATMUL_CHUNK = 1024


def fixed_chunk_matmul(A, X, chunk=MATMUL_CHUNK, out=None):
    """``A @ X`` computed on column chunks of exactly ``chunk`` columns (zero-padded).

    BLAS picks different kernels (with different summation order) for
    different matrix sizes, so a plain ``A @ X`` gives a pixel (column) a
    result that depends on how many other pixels share the call. Fixed-size
    chunks remove that dependence: in float64 a column's result is then bit-for-bit
    independent of the block split (whatever the memory limit or thread count). In
    float32, OpenBLAS's single-precision Haswell / AVX-512 kernels still treat the
    columns at some positions inside a chunk differently, so a column's result may
    differ by float32 rounding (a few ulps of its sum over the interferograms) between
    splits on those CPUs; promoting to float64 would make it exact at the cost of
    about 60 % of the unweighted solve time (measured: 0.39 s -> 0.61 s on the
    500x500x202 benchmark stack), so the float32 solve keeps float32 products.
    ``out``: optional (rows of A, columns of X) array to write into. The products run on
    :func:`~..io.blas.matmul` (SciPy's BLAS where numpy's is a slow reference CBLAS, e.g. inside QGIS).
    """
    A = np.asarray(A)
    X = np.asarray(X)
    n = X.shape[1]
    dt = np.result_type(A, X)
    if out is None:
        out = np.empty((A.shape[0], n), dtype=dt)
    if n == 0:
        return out
    full = n - n % chunk
    for c0 in range(0, full, chunk):
        matmul(A, X[:, c0 : c0 + chunk], out=out[:, c0 : c0 + chunk])
    if full < n:
        buf = np.zeros((X.shape[0], chunk), dtype=dt)
        buf[:, : n - full] = X[:, full:]
        out[:, full:] = matmul(A, buf)[:, : n - full]
    return out


def work_array(workspace, name, shape, dtype):
    """An uninitialised work array: a fresh ``np.empty``, or a view of a buffer kept in the
    ``workspace`` dict and reused by the next call (a fresh multi-MB array per block costs a
    page fault per 4 kB page, which is more than the arithmetic done on it)."""
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    size = math.prod(shape)  # not np.prod (a few us of Python per call, holding the GIL)
    key = (name, np.dtype(dtype).str)
    buf = workspace.get(key)
    if buf is None or buf.size < size:
        workspace[key] = buf = None  # the smaller one is freed before the larger one is allocated
        buf = workspace[key] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def unique_patterns(valid_cols):
    """Unique validity patterns of (M, P) bool columns -> (patterns (M, U) bool, inverse (P,))."""
    packed = np.packbits(valid_cols.T, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.hstack([packed, np.zeros((packed.shape[0], pad), np.uint8)])
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1])))[:, 0]
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return valid_cols[:, first], inv.reshape(-1)


def band_cholesky_solve(Lb, rhs, overwrite=False):
    """Solve SPD banded systems stored pixel-last, vectorized across pixels.

    ``Lb[i, k, p]`` = matrix entry (i, i-k) of pixel p for k = 0..bw (lower
    band); ``rhs`` (n, P). Banded Cholesky ``L = C C^T`` (C in the same band
    storage), forward and back substitution. Returns (x (n, P), ok (P,)),
    ok False where a pivot was not positive (its solution is not meaningful). ``overwrite``: the factor C is
    written over ``Lb``.

    Right-looking (column by column): once column j is scaled by its pivot, it updates the trailing band. In the
    band storage flattened to rows of P, column j below the diagonal (entries (j+a, a), a = 1..bw) and each
    trailing diagonal it updates are strided slices, so column j costs about 2 bw + 4 numpy calls over all pixels
    rather than bw^2 (a left-looking dot product per entry): measured on 149 dates of bandwidth 5, 1.36-1.41x
    faster for 50 pixels, 1.06x for 1 024, 1.24-1.36x for 8 192; two threads running it at once lose less to each
    other (the Python between calls holds the GIL that the other window threads need). The factor's off-diagonal
    entries and the forward substitution subtract the same products in the same order as a left-looking form
    would; the pivots and the back substitution in the other order (float rounding).
    """
    n, b1, P = Lb.shape
    bw = b1 - 1
    C = Lb if overwrite else Lb.copy()
    F = C.reshape(n * b1, P)  # entry (i, k) is row i * b1 + k; (j + a, a) for a = 0.. is a stride of b1 + 1
    step = b1 + 1
    ok = np.ones(P, dtype=bool)
    tmp = np.empty((max(bw, 1), P), dtype=C.dtype)
    for j in range(n):
        d = C[j, 0]
        if not (d > 1e-300).all():
            bad = ~(d > 1e-300)
            ok &= ~bad
            d[bad] = 1.0
        np.sqrt(d, out=d)
        m = min(bw, n - 1 - j)
        if not m:
            continue
        base = j * b1
        col = F[base + step : base + step * m + 1 : step]  # C[j + a, j] for a = 1..m
        np.divide(col, d, out=col)
        for a in range(1, m + 1):
            # entries (j + b, j + a) for b = a..m: minus C[j + b, j] C[j + a, j]
            t = F[base - a + a * step : base - a + m * step + 1 : step]
            w = tmp[: m - a + 1]
            np.multiply(col[a - 1 :], col[a - 1], out=w)
            np.subtract(t, w, out=t)
    x = np.array(rhs, copy=True)
    for j in range(n):  # forward: C z = rhs, column by column
        x[j] /= C[j, 0]
        m = min(bw, n - 1 - j)
        if m:
            base = j * b1
            w = tmp[:m]
            np.multiply(F[base + step : base + step * m + 1 : step], x[j], out=w)
            np.subtract(x[j + 1 : j + 1 + m], w, out=x[j + 1 : j + 1 + m])
    for i in range(n - 1, -1, -1):  # back: C^T x = z, row i of C updating the rows above
        x[i] /= C[i, 0]
        m = min(bw, i)
        if m:
            w = tmp[:m]
            np.multiply(C[i, 1 : m + 1], x[i], out=w)
            above = x[i - 1 : (i - m - 1 if i > m else None) : -1]  # rows i-1, ..., i-m
            np.subtract(above, w, out=above)
    return x, ok


#: smallest pivot of a Cholesky factorisation (below: the matrix lost rank)
PIVOT_TOL = 1e-9


#: matrices of this order and larger are factored by LAPACK one at a time: by ``sbas._impute_each`` through
#: :func:`~..io.blas.cholesky_each` (ctypes, the solve too), or where that is not reachable by
#: :func:`cholesky_pattern_last` through ``np.linalg.cholesky``
LAPACK_MIN_ORDER = 32


def cholesky_pattern_last(Mat, tol=None, overwrite=False, workspace=None):
    """Cholesky factors of SPD matrices stored pattern-last, vectorized across patterns.

    Mat (s, s, U) -> (C (s, s, U), good (U,)): the factor is C's lower triangle (the
    strict upper triangle is not meaningful); good is False where a pivot fell below
    ``PIVOT_TOL`` (the matrix is singular: the pattern lost rank). ``overwrite``: factor in place (C is Mat).

    By order, the same factors to rounding and the same test on the pivots: from :data:`LAPACK_MIN_ORDER` on,
    LAPACK's ``potrf`` one matrix at a time (``np.linalg.cholesky``; measured, float32, one thread: 3.3x faster
    at s = 60 for 50 matrices, 1.6x for 400, 8.8x at s = 120); below it the right-looking (outer-product) form
    vectorized across the patterns, one rank-1 update of the trailing block per column (as fast or faster for
    many small matrices: 1.2x at s = 30 for 1 000). Either way each pattern's factor depends on its own matrix
    only, not on the others in the batch, so it is the same bit for bit however the pixels are split into
    windows. With LAPACK, the pivot of column j is ``C[j, j]**2``, tested against ``tol`` as the vectorized form
    tests it; a matrix LAPACK cannot factor (a non-positive pivot) is flagged.
    """
    s, _, U = Mat.shape
    tol = PIVOT_TOL if tol is None else tol
    if s >= LAPACK_MIN_ORDER and U:
        Mt = Mat.transpose(2, 0, 1)
        failed = None
        try:
            L = np.linalg.cholesky(Mt)
        except np.linalg.LinAlgError:  # some matrix is not positive definite: one at a time (same factors)
            L = np.zeros((U, s, s), dtype=Mat.dtype)
            failed = np.zeros(U, dtype=bool)
            for i in range(U):
                try:
                    L[i] = np.linalg.cholesky(Mt[i])
                except np.linalg.LinAlgError:
                    failed[i] = True
        C = Mat if overwrite else np.empty_like(Mat)
        C[...] = L.transpose(1, 2, 0)
        piv = np.diagonal(C, axis1=0, axis2=1)  # (U, s)
        with np.errstate(invalid="ignore"):
            good = np.all(piv * piv > tol, axis=1) & np.isfinite(L).all(axis=(1, 2))
        if failed is not None:
            good &= ~failed
        return C, good
    C = Mat if overwrite else Mat.copy()
    good = np.ones(U, dtype=bool)
    n1 = max(s - 1, 1)
    tmp = work_array(workspace, "chol_tmp", (n1, n1, U), Mat.dtype)
    for j in range(s):
        d = C[j, j]
        ok = d > tol
        good &= ok
        cjj = np.sqrt(np.where(ok, d, 1.0))
        col = C[j:, j]
        np.divide(col, cjj, out=col)
        n = s - j - 1
        if n:
            c = col[1:]
            t = tmp[:n, :n]
            np.multiply(c[:, None, :], c[None, :, :], out=t)
            C[j + 1 :, j + 1 :] -= t
    return C, good


def cholesky_solve_pixel_last(C, b):
    """Solve ``C C^T x = b`` for C (s, s, n), b (s, n) (column-oriented substitutions)."""
    s = C.shape[0]
    z = b.copy()
    for j in range(s):
        z[j] /= C[j, j]
        if j + 1 < s:
            z[j + 1 :] -= C[j + 1 :, j] * z[j]
    for i in range(s - 1, -1, -1):
        z[i] /= C[i, i]
        if i:
            z[:i] -= C[i, :i] * z[i]
    return z
