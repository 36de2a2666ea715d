"""Matrix products on a fast BLAS, also where numpy's is replaced by a slow one (no QGIS imports).

numpy calls the C interface of BLAS (``cblas_sgemm``, ``cblas_dgemm``, ...) and the dynamic linker binds those
symbols to the first library of the process's global scope that exports them. ``qgis_process`` (and QGIS
itself) on Debian and Ubuntu links GSL, whose ``libgslcblas`` exports a reference CBLAS: plain loops, no
blocking, no threads. Inside QGIS numpy's matrix products then run on GSL's CBLAS instead of OpenBLAS -
measured 3x slower for the SBAS solve of the frame benchmark (51 vs 17 s per Mpx; ``fixed_chunk_matmul`` alone
8.4 vs 0.4 s), while the same code from ``python3`` is fast.

SciPy's BLAS wrappers call the Fortran interface (``sgemm_``, ``dgemm_``), which GSL does not export, so they reach
the system BLAS (OpenBLAS) in every process. :func:`matmul` routes the products of the solver and the
interpolations to that BLAS when numpy's CBLAS is GSL's (:data:`SLOW_CBLAS`), and is ``np.matmul`` otherwise: to its
C interface (``cblas_sgemm`` looked up in that library itself, not in the global scope) through ctypes, which
releases the GIL during the product, or where it has none through SciPy's wrappers, which hold the GIL.
``SUBSIDENCE_BLAS=scipy`` / ``numpy`` forces one route (tests, benchmarks).

:func:`one_thread`: the BLAS libraries of the process on one thread for the duration of a run. The toolkit runs
its own windows and sub-blocks on ``THREADS`` threads; a multi-threaded BLAS under each of them only adds threads
that spin between the small products of the solver (measured on the SBAS end-to-end benchmark inside
``qgis_process`` on 2 cores, BLAS left at its default of one thread per core: +26-53 % CPU for the inversion pass,
its solve up to 1.8x slower, on one thread as on two).
"""

import contextlib
import ctypes
import os
import re
import sys
import threading

import numpy as np

from .tasks import shielded

#: libraries known to export a slow reference CBLAS that can shadow numpy's
SLOW_CBLAS_NAMES = ("gslcblas",)


def _symbol_library(fn):
    """Path of the shared library that defines the ctypes function ``fn`` (glibc ``dladdr``), or None."""

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
    return _symbol_library(fn)


def _slow_cblas():
    forced = os.environ.get("SUBSIDENCE_BLAS", "").strip().lower()
    if forced in ("scipy", "numpy"):
        return forced == "scipy"
    name = os.path.basename(cblas_provider() or "")
    return any(s in name for s in SLOW_CBLAS_NAMES)


#: numpy's matrix products run on a slow reference CBLAS in this process (e.g. GSL's inside QGIS on Debian)
SLOW_CBLAS = _slow_cblas()


def note():
    """One line for a run's log when the products are rerouted (:data:`SLOW_CBLAS`) or numpy runs on the
    reference BLAS (:func:`reference_blas`); None otherwise."""
    lines = []
    if SLOW_CBLAS:
        where = cblas_provider()
        lines.append(
            "numpy's matrix products would run on %s in this process (a reference BLAS, several times slower): "
            "they go through SciPy's BLAS instead" % (os.path.basename(where) if where else "a slow CBLAS")
        )
    ref = reference_blas()
    if ref:
        lines.append(
            "numpy and SciPy run on the reference BLAS (%s), about 3x slower for the SBAS solve than an optimised "
            "one: install OpenBLAS (Debian / Ubuntu: libopenblas0-pthread)" % ref
        )
    return "; ".join(lines) or None


#: ``cblas_sgemm`` / ``cblas_dgemm`` row-major arguments (CBLAS enums)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
#: the optimised BLAS's (cblas_sgemm, cblas_dgemm) through ctypes, found on first use; False: none usable
_CBLAS = None
_CBLAS_LOCK = threading.Lock()


def _find_cblas_gemm():
    """(cblas_sgemm, cblas_dgemm) of the optimised BLAS that SciPy runs on (the loaded BLAS libraries, GSL's
    reference CBLAS excluded), each checked on a small product against numpy; None where there is none (not
    Linux, a BLAS without the C interface, 64-bit integer builds)."""
    if not sys.platform.startswith("linux"):
        return None
    from scipy.linalg import blas  # noqa: F401 (loads the BLAS SciPy runs on)

    for path in loaded_libraries():
        name = os.path.basename(path)
        if not BLAS_LIBRARY.search(name) or ".cpython-" in name or any(s in name for s in SLOW_CBLAS_NAMES):
            continue
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
            fns = (lib.cblas_sgemm, lib.cblas_dgemm)
        except (OSError, AttributeError):
            continue
        where = [os.path.basename(_symbol_library(f) or "") for f in fns]
        if any(not w or any(s in w for s in SLOW_CBLAS_NAMES) for w in where):
            continue
        for fn, real in zip(fns, (ctypes.c_float, ctypes.c_double)):
            i, p = ctypes.c_int, ctypes.c_void_p
            fn.restype = None
            fn.argtypes = [i, i, i, i, i, i, real, p, i, p, i, real, p, i]
        if _gemm_checks(fns):
            return fns
    return None


def _gemm_checks(fns):
    """The functions give numpy's products on small matrices (plain, transposed, strided, both dtypes)."""
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        a, b = rng.normal(size=(5, 7)).astype(dt), rng.normal(size=(9, 5)).astype(dt)
        for x, y in ((a.T[:, 1:4], b.T[1:4, :6]), (np.ascontiguousarray(a.T), b.T)):
            try:
                got = _cblas_product(fns, x, y)
            except (OSError, ValueError, ctypes.ArgumentError):
                return False
            want = np.asarray(x, np.float64) @ np.asarray(y, np.float64)
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                return False
    return True


def _operand(x):
    """(array, transpose flag, leading dimension) of a 2-D operand for a row-major CBLAS call: rows contiguous
    (e.g. a slice of columns: the row stride as leading dimension), or its transpose's, or a C-ordered copy."""
    item = x.itemsize
    r, c = x.shape
    s0, s1 = x.strides
    if s1 == item and s0 % item == 0 and s0 // item >= max(1, c):
        return x, _NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= max(1, r):
        return x, _TRANS, s1 // item
    x = np.ascontiguousarray(x)
    return x, _NO_TRANS, max(1, c)


def _cblas_product(fns, a, b, out=None):
    """``a @ b`` (2-D, the same float dtype) by the BLAS's ``cblas_?gemm`` through ctypes, which releases the GIL
    during the call, into ``out`` (C-ordered rows, not overlapping ``a`` or ``b``) or a new C-ordered array."""
    m, k = a.shape
    n = b.shape[1]
    dt = a.dtype
    if b.shape[0] != k or b.dtype != dt or dt not in (np.float32, np.float64):
        raise ValueError("gemm: %s %s @ %s %s" % (a.shape, a.dtype, b.shape, b.dtype))
    target = out
    if (
        out is None
        or out.dtype != dt
        or out.strides[1] != dt.itemsize
        or out.strides[0] % dt.itemsize
        or out.strides[0] // dt.itemsize < max(1, n)
        or np.may_share_memory(out, a)
        or np.may_share_memory(out, b)
    ):
        target = np.empty((m, n), dtype=dt)
    if m == 0 or n == 0:
        pass
    elif k == 0:
        target[...] = 0
    else:
        a, ta, lda = _operand(a)
        b, tb, ldb = _operand(b)
        fn = fns[0] if dt == np.float32 else fns[1]
        fn(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0, target.ctypes.data,
           target.strides[0] // dt.itemsize)  # fmt: skip
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


def _cblas():
    """:func:`_find_cblas_gemm`, once per process."""
    global _CBLAS
    if _CBLAS is None:
        with _CBLAS_LOCK:
            if _CBLAS is None:
                _CBLAS = _find_cblas_gemm() or False
    return _CBLAS or None


def _gemm(a, b, out=None):
    """``a @ b`` (2-D, same float dtype) on the optimised BLAS that SciPy runs on: its C interface through ctypes
    (:func:`_cblas_product`: the GIL is released during the product, so that threads multiply at once) or, where
    that is not found, SciPy's wrapper of the Fortran one, which holds the GIL during the product (measured: a
    thread counting in Python ran at 1/7 of its speed while another called ``scipy.linalg.blas.sgemm``; inside
    ``qgis_process`` 9.8 s of the frame's 73 s inversion pass held it there). SciPy's route: (a b)^T = b^T a^T, where
    the transposes of C-ordered arrays are Fortran-ordered (no copy); the result's transpose is C-ordered."""
    fns = _cblas()
    if fns is not None:
        return _cblas_product(fns, a, b, out)
    from scipy.linalg import blas

    gemm = blas.sgemm if a.dtype == np.float32 else blas.dgemm
    res = gemm(1.0, b.T, a.T).T
    if out is None:
        return res
    out[...] = res
    return out


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
        if out is None:
            return np.ascontiguousarray(_gemm(a, b))
        return _gemm(a, b, out)
    n = a.shape[0] if a.ndim == 3 else b.shape[0]
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((n, a.shape[-2], b.shape[-1]), dtype=dt)
    for i in range(n):
        _gemm(a[i] if a.ndim == 3 else a, b[i] if b.ndim == 3 else b, out[i])
    return out


#: LAPACK's Cholesky factorisation and solve, per dtype, through ctypes (found on first use; False: not available)
_CHOLESKY = {}


def _capsule_function(module, name, nargs):
    """The C function ``name`` of a SciPy Cython module (``scipy.linalg.cython_lapack``: the LAPACK SciPy runs on,
    whatever platform or build) as a ctypes function of ``nargs`` pointer arguments returning nothing; ctypes
    releases the GIL while it runs."""
    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    if not address:
        raise AttributeError(name)
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nargs))(address)


def _find_cholesky(dtype):
    """(potrf, potrs, posv) of SciPy's LAPACK for ``dtype`` (float32: ``spotrf``/``spotrs``/``sposv``, float64:
    ``d...``), checked on small systems against numpy (a matrix with one right-hand side and one with two); None
    where SciPy does not export them."""
    try:
        from scipy.linalg import cython_lapack

        prefix = "s" if dtype == np.float32 else "d"
        fns = (
            _capsule_function(cython_lapack, prefix + "potrf", 5),
            _capsule_function(cython_lapack, prefix + "potrs", 8),
            _capsule_function(cython_lapack, prefix + "posv", 8),
        )
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        return None
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2, 6, 6))
    mats = (g @ g.transpose(0, 2, 1) + 6 * np.eye(6)).astype(dtype)
    rhs = rng.normal(size=(3, 6)).astype(dtype)
    want = np.linalg.solve(mats.astype(np.float64)[[0, 1, 1]], rhs.astype(np.float64)[:, :, None])[:, :, 0]
    got = rhs.copy()
    info = _cholesky_each(fns, mats.copy(), got, np.array([0, 1, 1]))
    if info.any() or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
        return None
    return fns


def _cholesky_each(fns, mats, rhs, which):
    """Factor each matrix of ``mats`` (u, s, s) C-ordered, symmetric positive definite; overwritten: its lower
    triangle becomes L with A = L L^T) with ``potrf``, and solve ``A x = b`` for each row of ``rhs`` (n, s)
    (C-ordered; overwritten by x) with the matrix ``which[j]``, one right-hand side per call. Returns LAPACK's
    ``info`` per matrix (k > 0: its leading minor k is not positive definite; its rows of ``rhs`` are left).
    A matrix with exactly one right-hand side is factored and solved by one ``posv`` (LAPACK's ``potrf`` then
    ``potrs``: the same numbers); measured on 60 x 60 float32 systems of unique patterns (the frame benchmark's
    partial pixels), the block's solve 1.05x and 1.26x faster (two runs) than with a ``potrf`` and a ``potrs``
    call each."""
    potrf, potrs, posv = fns
    u, s = mats.shape[0], mats.shape[1]
    # a symmetric C-ordered matrix is its own Fortran-ordered transpose: Fortran's upper factor U (A = U^T U) is
    # then stored as the C lower triangle of U^T = L
    uplo, n, one, info = ctypes.c_char(b"U"), ctypes.c_int(s), ctypes.c_int(1), ctypes.c_int(0)
    pu, pn, p1, pi = ctypes.byref(uplo), ctypes.byref(n), ctypes.byref(one), ctypes.byref(info)
    base, step = mats.ctypes.data, mats.strides[0]
    b, bstep = rhs.ctypes.data, rhs.strides[0]
    which = which.tolist()
    # a matrix with one right-hand side (a pattern of one pixel: most of them on real stacks) is factored and
    # solved by one call (posv: potrf then potrs, the same arithmetic), the others factored first
    uses = [0] * u
    for i in which:
        uses[i] += 1
    infos = [0] * u
    for i in range(u):
        if uses[i] != 1:
            potrf(pu, pn, base + i * step, pn, pi)
            infos[i] = info.value
    for j, i in enumerate(which):
        if uses[i] == 1:
            posv(pu, pn, p1, base + i * step, pn, b + j * bstep, pn, pi)  # (rhs left where the factor fails)
            infos[i] = info.value
        elif not infos[i]:
            potrs(pu, pn, p1, base + i * step, pn, b + j * bstep, pn, pi)
    return np.array(infos, dtype=np.int64)


def cholesky_each(mats, rhs, which):
    """:func:`_cholesky_each` on SciPy's LAPACK (the GIL released during each factorisation and solve); None
    (nothing done) where it is not available or the arrays are not C-ordered float32 / float64 of one dtype.
    Each matrix's factor and each right-hand side's solution depend on that matrix and right-hand side only (one
    LAPACK call each), not on what else is in the batch."""
    dt = mats.dtype
    if (
        dt not in (np.float32, np.float64)
        or rhs.dtype != dt
        or not (mats.flags.c_contiguous and rhs.flags.c_contiguous)
    ):
        return None
    key = dt.str
    if key not in _CHOLESKY:
        with _CBLAS_LOCK:
            if key not in _CHOLESKY:
                _CHOLESKY[key] = _find_cholesky(dt) or False
    fns = _CHOLESKY[key]
    if not fns:
        return None
    return _cholesky_each(fns, mats, rhs, np.asarray(which))


#: shared libraries whose thread count :func:`one_thread` sets (file names; Python extension modules excluded)
BLAS_LIBRARY = re.compile(r"(openblas|libblas|libcblas|mkl_rt|libmkl|blis|flexiblas)", re.IGNORECASE)

#: (getter, setter) symbol names of the BLAS thread count, per implementation (OpenBLAS, including the builds
#: in numpy/SciPy wheels with 64-bit integers and a ``scipy_`` prefix; MKL; BLIS; FlexiBLAS)
THREAD_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
    ("bli_thread_get_num_threads", "bli_thread_set_num_threads"),
    ("flexiblas_get_num_threads", "flexiblas_set_num_threads"),
)


def loaded_libraries():
    """Paths of the shared libraries mapped into this process (Linux ``/proc/self/maps``; empty elsewhere)."""
    paths = {}  # insertion-ordered, without repeats
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    paths[parts[5].rstrip("\n")] = None
    except OSError:
        return []
    return list(paths)


def thread_controls(paths=None):
    """``[(library path, get, set)]``: the thread-count functions of the BLAS libraries loaded in this process
    (``paths``: the candidates, default :func:`loaded_libraries`), one entry per distinct function (a
    library reached through several names, e.g. ``libblas.so.3`` and ``libopenblas...so``, is listed once).
    ``get()`` returns the count, ``set(n)`` sets it (process-wide)."""
    found, seen = [], set()
    for path in loaded_libraries() if paths is None else paths:
        name = os.path.basename(path)
        if not BLAS_LIBRARY.search(name) or ".cpython-" in name or name.endswith(".pyd"):
            continue
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        for get_name, set_name in THREAD_SYMBOLS:
            get_fn, set_fn = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get_fn is None or set_fn is None:
                continue
            key = ctypes.cast(set_fn, ctypes.c_void_p).value
            if key in seen:
                continue
            seen.add(key)
            get_fn.restype, get_fn.argtypes = ctypes.c_int, []
            set_fn.restype, set_fn.argtypes = None, [ctypes.c_int]
            found.append((path, get_fn, set_fn))
    return found


def reference_blas(paths=None):
    """Path of the reference (netlib) BLAS when it is the BLAS this process runs on, else None: Debian and
    Ubuntu install it as ``.../blas/libblas.so.3`` when no optimised BLAS is installed (apt without
    recommends), and it has no thread count (:func:`thread_controls` finds none). Measured: the SBAS solve
    3.1x slower than on OpenBLAS (19.3 vs 6.1 s per Mpx, 202 pairs, one thread)."""
    libs = loaded_libraries() if paths is None else list(paths)
    ref = [p for p in libs if re.search(r"/blas/libc?blas\.so", p)]
    if not ref or thread_controls(libs):
        return None
    return ref[0]


_LIMIT_LOCK = threading.Lock()
#: the outermost block's state: depth of the blocks inside, the counts it changed, threadpoolctl's limiter
_LIMIT = {"depth": 0, "saved": [], "other": None}


def _threadpoolctl_limit():
    """threadpoolctl's BLAS limit where there is no ``/proc/self/maps`` (Windows, macOS) and it is installed;
    None otherwise."""
    if sys.platform.startswith("linux"):
        return None
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 (optional: without it BLAS keeps its threads, results are the same)
        return None


@contextlib.contextmanager
def one_thread():
    """The process's BLAS libraries on one thread inside the block, restored after it (see the module doc).

    Re-entrant and shared by threads: the first block to enter sets the count, the last to leave restores what
    it was (the count is process-wide in OpenBLAS, MKL and BLIS). ``SUBSIDENCE_BLAS_THREADS=keep`` leaves it
    alone. Results do not depend on it beyond the rounding of the products' summation order."""
    if os.environ.get("SUBSIDENCE_BLAS_THREADS", "").strip().lower() == "keep":
        yield
        return
    with shielded(), _LIMIT_LOCK:  # a signal handler's exception must not leave the count set and not restored
        if _LIMIT["depth"] == 0:
            saved = []
            try:
                for path, get_fn, set_fn in thread_controls():
                    n = int(get_fn())
                    if n != 1:
                        set_fn(1)
                        saved.append((set_fn, n))
            except (OSError, ValueError, AttributeError):
                pass
            other = _threadpoolctl_limit()
            _LIMIT["saved"], _LIMIT["other"] = saved, other
        _LIMIT["depth"] += 1
    try:
        yield
    finally:
        with shielded(), _LIMIT_LOCK:
            _LIMIT["depth"] -= 1
            if _LIMIT["depth"] == 0:
                for set_fn, n in _LIMIT["saved"]:
                    set_fn(n)
                if _LIMIT["other"] is not None:
                    _LIMIT["other"].restore_original_limits()
                _LIMIT["saved"], _LIMIT["other"] = [], None
