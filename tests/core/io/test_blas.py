"""core/io/blas.py: matrix products on SciPy's BLAS where numpy's CBLAS is a slow reference one (QGIS on Debian)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from subsidence_toolkit.core.insar.kernels import fixed_chunk_matmul
from subsidence_toolkit.core.io import blas

GSL = "/lib/x86_64-linux-gnu/libgslcblas.so.0"


def _close(x, y, k):
    """Equal to the rounding of sums of ``k`` products (BLAS kernels may sum in another order)."""
    eps = np.finfo(x.dtype).eps
    scale = np.maximum(np.abs(x), np.abs(y)).max() + 1e-30
    np.testing.assert_allclose(x, y, rtol=0, atol=4 * k * eps * scale)


@pytest.fixture
def rerouted(monkeypatch):
    monkeypatch.setattr(blas, "SLOW_CBLAS", True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rerouted_products_equal_numpy(rerouted, dtype):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(37, 53)).astype(dtype)
    b = rng.normal(size=(53, 300)).astype(dtype)
    _close(blas.matmul(a, b), a @ b, 53)
    assert blas.matmul(a, b).flags.c_contiguous and blas.matmul(a, b).dtype == dtype
    # a column slice (not contiguous) into a slice of an output, as fixed_chunk_matmul calls it
    out = np.full((37, 300), np.nan, dtype=dtype)
    blas.matmul(a, b[:, 100:228], out=out[:, 100:228])
    _close(out[:, 100:228], a @ b[:, 100:228], 53)
    assert np.isnan(out[:, :100]).all() and np.isnan(out[:, 228:]).all()
    # stacks: 2-D x 3-D, 3-D x 2-D (the separable interpolation), 3-D x 3-D
    e = rng.normal(size=(5, 53, 11)).astype(dtype)
    wx = rng.normal(size=(7, 11)).astype(dtype)
    _close(blas.matmul(a, e), np.matmul(a, e), 53)
    _close(blas.matmul(blas.matmul(a, e), wx.T), np.matmul(np.matmul(a, e), wx.T), 53 * 11)
    _close(blas.matmul(e.transpose(0, 2, 1), e), np.matmul(e.transpose(0, 2, 1), e), 53)
    # what it does not reroute is numpy's own result
    ints = np.arange(12).reshape(3, 4)
    assert np.array_equal(blas.matmul(ints, ints.T), ints @ ints.T)


def test_fixed_chunk_matmul_rerouted(monkeypatch):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(59, 202)).astype(np.float32)
    X = rng.normal(size=(202, 2500)).astype(np.float32)
    ref = fixed_chunk_matmul(A, X)
    monkeypatch.setattr(blas, "SLOW_CBLAS", True)
    _close(fixed_chunk_matmul(A, X), ref, 202)


def _probe(env, what="print(blas.cblas_provider()); print(blas.SLOW_CBLAS)"):
    """Lines printed by ``what`` in a new Python process with ``env`` (the checkout imported as the package)."""
    code = (
        "import importlib.util, sys; from pathlib import Path; root = Path(%r); "
        "spec = importlib.util.spec_from_file_location('subsidence_toolkit', root / '__init__.py', "
        "submodule_search_locations=[str(root)]); m = importlib.util.module_from_spec(spec); "
        "sys.modules['subsidence_toolkit'] = m; spec.loader.exec_module(m); "
        "from subsidence_toolkit.core.io import blas; "
    ) % os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))) + what
    env = dict(os.environ, **env)
    env.pop("SUBSIDENCE_BLAS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split("\n")


@pytest.mark.skipif(not os.path.exists(GSL), reason="GSL's CBLAS is not installed")
def test_detects_gsl_cblas_in_the_global_scope():
    """With GSL's CBLAS loaded ahead of numpy's BLAS (as qgis_process does on Debian), numpy's cblas_sgemm is
    GSL's and the products are rerouted; in a plain Python process they are not."""
    provider, slow = _probe({"LD_PRELOAD": GSL})[-2:]
    assert provider.endswith("libgslcblas.so.0") and slow == "True"
    provider, slow = _probe({"LD_PRELOAD": ""})[-2:]
    assert slow == "False"
    assert blas.note() is None or "SciPy's BLAS" in blas.note()


@pytest.mark.skipif(not os.path.exists(GSL), reason="GSL's CBLAS is not installed")
def test_with_gsl_loaded_first_the_products_call_the_optimised_blas_c_interface_not_gsl():
    """As inside qgis_process: the rerouted products find ``cblas_sgemm`` / ``cblas_dgemm`` in the BLAS SciPy runs on
    (OpenBLAS here), never GSL's, and give SciPy's wrapper's result bit for bit (the same kernels)."""
    what = (
        "import numpy as np; from scipy.linalg import blas as sb; fns = blas._cblas(); "
        "print(blas._symbol_library(fns[0]) if fns else None); "
        "a = np.random.default_rng(0).normal(size=(60, 202)).astype(np.float32); "
        "b = np.random.default_rng(1).normal(size=(202, 900)).astype(np.float32); "
        "print(np.array_equal(blas.matmul(a, b), sb.sgemm(1.0, b.T, a.T).T))"
    )
    where, same = _probe({"LD_PRELOAD": GSL}, what)[-2:]
    if where == "None":
        pytest.skip("no loaded BLAS exports cblas_sgemm here")
    assert "gsl" not in where and blas.BLAS_LIBRARY.search(os.path.basename(where)), where
    assert same == "True"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_interface_products_equal_numpy_for_every_layout(dtype):
    """Rows contiguous, transposed, column slices (leading dimension > width), into a strided output or one that
    overlaps an operand (a copy then): numpy's products to the rounding of their sums."""
    fns = blas._cblas()
    if fns is None:
        pytest.skip("no loaded BLAS exports cblas_sgemm here")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(41, 67)).astype(dtype)
    b = rng.normal(size=(67, 150)).astype(dtype)
    for x, y in ((a, b), (np.asfortranarray(a), b), (a, b[:, 20:90]), (a[::2], b), (a.T.copy().T, b.T.copy().T)):
        _close(blas._cblas_product(fns, x, y), x @ y, 67)
    out = np.full((50, 200), np.nan, dtype=dtype)
    blas._cblas_product(fns, a, b, out[3:44, 10:160])
    _close(out[3:44, 10:160], a @ b, 67)
    assert np.isnan(out[:3]).all() and np.isnan(out[:, :10]).all()
    sq = rng.normal(size=(30, 30)).astype(dtype)
    want = sq @ sq
    _close(blas._cblas_product(fns, sq, sq, sq), want, 30)  # out is an operand: computed aside, then copied
    with pytest.raises(ValueError):
        blas._cblas_product(fns, a, a)


def test_c_interface_products_let_other_threads_run():
    """SciPy's BLAS wrappers hold the GIL during a product; the C interface through ctypes does not: a thread
    counting in Python keeps most of its speed while another multiplies (inside qgis_process both window threads
    multiply). Held through each ~0.1 s product, the counter would only run between products (a few %)."""
    import threading
    import time

    fns = blas._cblas()
    if fns is None:
        pytest.skip("no loaded BLAS exports cblas_sgemm here")

    def count(until):
        n = 0
        while not until():
            n += 1
        return n

    a = np.ones((1000, 1000), np.float64)
    started, done = threading.Event(), threading.Event()

    def multiply():
        started.set()
        for _ in range(5):
            blas._cblas_product(fns, a, a)
        done.set()

    with blas.one_thread():
        stop = threading.Event()
        threading.Timer(0.1, stop.set).start()
        t0 = time.perf_counter()
        alone = count(stop.is_set) / (time.perf_counter() - t0)
        t = threading.Thread(target=multiply)
        t.start()
        started.wait()
        t0 = time.perf_counter()
        n = count(done.is_set)
        seconds = time.perf_counter() - t0
        t.join()
    assert n > 0.3 * alone * seconds, (n, alone, seconds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cholesky_each_solves_flags_and_does_not_depend_on_the_batch(dtype):
    """LAPACK's potrf / potrs one matrix and one right-hand side at a time (posv for a matrix with one right-hand
    side): solutions of numpy's solve to rounding, the factor in the lower triangle (also of a matrix without a
    right-hand side), a matrix that is not positive definite reported by its info (its right-hand sides left as
    they were), and each result the same bit for bit alone or in another batch, with one right-hand side of its
    matrix or several."""
    rng = np.random.default_rng(7)
    u, s = 7, 40
    g = rng.normal(size=(u, s, 2 * s))
    mats = (g @ g.transpose(0, 2, 1) / (2 * s) + 0.1 * np.eye(s)).astype(dtype)
    mats[4] = -np.eye(s, dtype=dtype)  # not positive definite
    which = np.array([0, 1, 1, 2, 3, 4, 5, 5])
    rhs = rng.normal(size=(which.size, s)).astype(dtype)
    m, x = mats.copy(), rhs.copy()
    info = blas.cholesky_each(m, x, which)
    if info is None:
        pytest.skip("SciPy exports no LAPACK here")
    assert info[4] > 0 and (np.delete(info, 4) == 0).all()
    assert np.array_equal(x[5], rhs[5])
    ok = which != 4
    want = np.linalg.solve(mats.astype(np.float64)[which[ok]], rhs.astype(np.float64)[ok][:, :, None])[:, :, 0]
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(x[ok], want, rtol=0, atol=1e4 * s * eps * np.abs(want).max())
    low = np.tril(m[[0, 1, 2, 3, 5]])
    np.testing.assert_allclose(low @ low.transpose(0, 2, 1), mats[[0, 1, 2, 3, 5]], rtol=0, atol=50 * s * eps)
    low6 = np.tril(m[6])  # no right-hand side: factored all the same
    assert info[6] == 0 and np.allclose(low6 @ low6.T, mats[6], rtol=0, atol=50 * s * eps)
    for part in ([1], [5, 2], [3, 0, 1]):
        sel = np.flatnonzero(np.isin(which, part))
        m2, x2 = np.ascontiguousarray(mats[part]), rhs[sel].copy()
        blas.cholesky_each(m2, x2, np.array([part.index(k) for k in which[sel]]))
        assert np.array_equal(m2, m[part]) and np.array_equal(x2, x[sel])
    for j in (1, 2, 6, 7):  # a matrix used twice in the batch above, alone here (posv) with one of them
        m2, x2 = mats[which[j] : which[j] + 1].copy(), rhs[j : j + 1].copy()
        blas.cholesky_each(m2, x2, np.array([0]))
        assert np.array_equal(m2[0], m[which[j]]) and np.array_equal(x2[0], x[j])
    # not C-ordered or mixed dtypes: not handled (the caller takes another route)
    assert blas.cholesky_each(mats.transpose(0, 2, 1), rhs, which) is None
    assert blas.cholesky_each(mats, rhs.astype(np.float16), which) is None


class _FakeBlas:
    """A BLAS thread count as OpenBLAS keeps it (process-wide)."""

    def __init__(self, n):
        self.n = n
        self.calls = []

    def get(self):
        return self.n

    def set(self, n):
        self.calls.append(n)
        self.n = n


def test_one_thread_sets_every_blas_to_one_and_restores_it_when_the_last_block_leaves(monkeypatch):
    libs = [_FakeBlas(8), _FakeBlas(1), _FakeBlas(4)]
    monkeypatch.delenv("SUBSIDENCE_BLAS_THREADS", raising=False)
    monkeypatch.setattr(
        blas, "thread_controls", lambda paths=None: [("lib%d" % i, b.get, b.set) for i, b in enumerate(libs)]
    )
    with blas.one_thread():
        assert [b.n for b in libs] == [1, 1, 1]
        with blas.one_thread():  # nested (an algorithm calling the core's threaded runner)
            assert [b.n for b in libs] == [1, 1, 1]
        assert [b.n for b in libs] == [1, 1, 1]  # the outer block still runs
    assert [b.n for b in libs] == [8, 1, 4]
    assert libs[1].calls == []  # already one thread: left alone


def test_one_thread_restores_after_an_error_and_across_threads(monkeypatch):
    import threading

    lib = _FakeBlas(6)
    monkeypatch.delenv("SUBSIDENCE_BLAS_THREADS", raising=False)
    monkeypatch.setattr(blas, "thread_controls", lambda paths=None: [("lib", lib.get, lib.set)])
    with pytest.raises(RuntimeError):
        with blas.one_thread():
            raise RuntimeError("a failing run")
    assert lib.n == 6
    # two runs at once (e.g. two QGIS background tasks): the count comes back when both have finished
    inside, leave = threading.Event(), threading.Event()

    def other_run():
        with blas.one_thread():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other_run)
    t.start()
    assert inside.wait(10)
    with blas.one_thread():
        assert lib.n == 1
    assert lib.n == 1  # the other run is still inside
    leave.set()
    t.join(10)
    assert lib.n == 6 and lib.calls == [1, 6, 1, 6]  # set once per outermost block: the failed run, then these two


def test_one_thread_can_be_turned_off(monkeypatch):
    lib = _FakeBlas(3)
    monkeypatch.setattr(blas, "thread_controls", lambda paths=None: [("lib", lib.get, lib.set)])
    monkeypatch.setenv("SUBSIDENCE_BLAS_THREADS", "keep")
    with blas.one_thread():
        assert lib.n == 3
    assert lib.calls == []


def test_thread_controls_find_the_loaded_openblas_and_one_thread_drives_it():
    """On the real library of this process (OpenBLAS on Debian and in numpy wheels); skipped where numpy runs on a
    BLAS without a thread count (the reference BLAS)."""
    controls = blas.thread_controls()
    if not controls:
        pytest.skip("no BLAS with a thread count is loaded (numpy on the reference BLAS)")
    assert len({id(s) for _, _, s in controls}) == len(controls)
    for path, get_fn, set_fn in controls:
        assert os.path.exists(path) and ".cpython-" not in path
    _, get_fn, set_fn = controls[0]
    before = get_fn()
    set_fn(2)
    try:
        with blas.one_thread():
            assert get_fn() == 1
            rng = np.random.default_rng(0)
            a = rng.normal(size=(200, 200))
            np.testing.assert_allclose(a @ np.eye(200), a)  # BLAS still works on one thread
        assert get_fn() == 2
    finally:
        set_fn(before)
    # extension modules reach OpenBLAS through their dependencies: they are not listed as libraries of their own
    assert blas.thread_controls(["/nonexistent/libopenblas.so.0", sys.executable]) == []


REFERENCE_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/blas"


@pytest.mark.skipif(not os.path.exists(REFERENCE_BLAS_DIR + "/libblas.so.3"), reason="Debian's reference BLAS absent")
def test_a_run_on_the_reference_blas_says_so_and_one_on_openblas_does_not():
    ref, said = _probe(
        {"LD_LIBRARY_PATH": REFERENCE_BLAS_DIR + ":/usr/lib/x86_64-linux-gnu/lapack", "LD_PRELOAD": ""},
        "import numpy, scipy.linalg; print(blas.reference_blas()); print(blas.note())",
    )
    assert ref.startswith(REFERENCE_BLAS_DIR + "/libblas.so") and "libopenblas0-pthread" in said
    if blas.thread_controls():  # this process runs on an optimised BLAS: nothing to say about it
        assert blas.reference_blas() is None
        assert blas.note() is None or "reference BLAS (" not in blas.note()
