"""Matrix products on a fast BLAS, also where numpy's is replaced by a slow one (no QGIS imports).

numpy calls the C interface of BLAS (``cblas_sgemm``, ``cblas_dgemm``, ...) and the dynamic linker binds those
symbols to the first library of the process's global scope that exports them. ``qgis_process`` (and QGIS
itself) on Debian and Ubuntu links GSL, whose ``libgslcblas`` exports a reference CBLAS: plain loops, no
blocking, no threads. Inside QGIS numpy's matrix products then run on GSL's CBLAS instead of OpenBLAS -
measured 3x slower for the SBAS solve of the frame benchmark (51 vs 17 s per Mpx; ``fixed_chunk_matmul`` alone
8.4 vs 0.4 s), while the same code from ``python3`` is fast.

SciPy's BLAS wrappers call the Fortran interface (``sgemm_``, ``dgemm_``), which GSL does not export, so they reach
the system BLAS (OpenBLAS) in every process. :func:`matmul` routes the products of the solver and the
interpolations through them when numpy's CBLAS is GSL's (:data:`SLOW_CBLAS`), and is ``np.matmul`` otherwise.
``SUBSIDENCE_BLAS=scipy`` / ``numpy`` forces one route (tests, benchmarks).
"""

import ctypes
import os
import sys

import numpy as np

#: libraries known to export a slow reference CBLAS that can shadow numpy's
SLOW_CBLAS_NAMES = ("gslcblas",)


def cblas_provider():
    """Path of the library that provides ``cblas_sgemm`` in the process's global symbol scope (where numpy's
    calls bind first), or None when none does (numpy then uses the BLAS it was linked with) or it cannot be
    told (not Linux / glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).cblas_sgemm
    except (OSError, AttributeError):
        return None

    class DlInfo(ctypes.Structure):
        _fields_ = [
            ("dli_fname", ctypes.c_char_p),
            ("dli_fbase", ctypes.c_void_p),
            ("dli_sname", ctypes.c_char_p),
            ("dli_saddr", ctypes.c_void_p),
        ]

    try:
        libc = ctypes.CDLL("libc.so.6")
        dladdr = getattr(libc, "dladdr", None) or ctypes.CDLL("libdl.so.2").dladdr
        info = DlInfo()
        if not dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
            return None
        return info.dli_fname.decode(errors="replace")
    except (OSError, AttributeError):
        return None


def _slow_cblas():
    forced = os.environ.get("SUBSIDENCE_BLAS", "").strip().lower()
    if forced in ("scipy", "numpy"):
        return forced == "scipy"
    name = os.path.basename(cblas_provider() or "")
    return any(s in name for s in SLOW_CBLAS_NAMES)


#: numpy's matrix products run on a slow reference CBLAS in this process (e.g. GSL's inside QGIS on Debian)
SLOW_CBLAS = _slow_cblas()


def note():
    """One line for a run's log when the products are rerouted (None otherwise)."""
    if not SLOW_CBLAS:
        return None
    where = cblas_provider()
    return (
        "numpy's matrix products would run on %s in this process (a reference BLAS, several times slower): "
        "they go through SciPy's BLAS instead" % (os.path.basename(where) if where else "a slow CBLAS")
    )


def _gemm(a, b):
    """``a @ b`` (2-D, same float dtype) by SciPy's Fortran BLAS: (a b)^T = b^T a^T, where the transposes of
    C-ordered arrays are Fortran-ordered (no copy); the Fortran-ordered result's transpose is C-ordered."""
    from scipy.linalg import blas

    gemm = blas.sgemm if a.dtype == np.float32 else blas.dgemm
    return gemm(1.0, b.T, a.T).T


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)``; on SciPy's BLAS when numpy's CBLAS is slow (:data:`SLOW_CBLAS`). Stacks of
    matrices (``a`` 2-D with ``b`` 3-D, or both 3-D) are multiplied matrix by matrix there. Results equal
    ``np.matmul`` to the rounding of the sums (the same BLAS kernels, possibly another summation order)."""
    if not SLOW_CBLAS:
        return np.matmul(a, b, out=out)
    a = np.asarray(a)
    b = np.asarray(b)
    dt = np.result_type(a, b)
    if dt not in (np.float32, np.float64) or a.ndim < 2 or b.ndim < 2 or max(a.ndim, b.ndim) > 3:
        return np.matmul(a, b, out=out)
    a = a.astype(dt, copy=False)
    b = b.astype(dt, copy=False)
    if a.ndim == 2 and b.ndim == 2:
        res = _gemm(a, b)
        if out is None:
            return np.ascontiguousarray(res)
        out[...] = res
        return out
    n = a.shape[0] if a.ndim == 3 else b.shape[0]
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((n, a.shape[-2], b.shape[-1]), dtype=dt)
    for i in range(n):
        out[i] = _gemm(a[i] if a.ndim == 3 else a, b[i] if b.ndim == 3 else b)
    return out
