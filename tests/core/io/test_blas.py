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


def _probe(env):
    code = (
        "import importlib.util, sys; from pathlib import Path; root = Path(%r); "
        "spec = importlib.util.spec_from_file_location('subsidence_toolkit', root / '__init__.py', "
        "submodule_search_locations=[str(root)]); m = importlib.util.module_from_spec(spec); "
        "sys.modules['subsidence_toolkit'] = m; spec.loader.exec_module(m); "
        "from subsidence_toolkit.core.io import blas; print(blas.cblas_provider()); print(blas.SLOW_CBLAS)"
    ) % os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, **env)
    env.pop("SUBSIDENCE_BLAS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(not os.path.exists(GSL), reason="GSL's CBLAS is not installed")
def test_detects_gsl_cblas_in_the_global_scope():
    """With GSL's CBLAS loaded ahead of numpy's BLAS (as qgis_process does on Debian), numpy's cblas_sgemm is
    GSL's and the products are rerouted; in a plain Python process they are not."""
    provider, slow = _probe({"LD_PRELOAD": GSL})
    assert provider.endswith("libgslcblas.so.0") and slow == "True"
    provider, slow = _probe({"LD_PRELOAD": ""})
    assert slow == "False"
    assert blas.note() is None or "SciPy's BLAS" in blas.note()
