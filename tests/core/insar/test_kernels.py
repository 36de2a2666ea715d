"""core/insar/kernels.py: the properties the SBAS solver relies on."""

import numpy as np
import pytest

from subsidence_toolkit.core.insar.kernels import (
    band_cholesky_solve,
    cholesky_pattern_last,
    cholesky_solve_pixel_last,
    fixed_chunk_matmul,
    unique_patterns,
    work_array,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 26), (26, 9), (59, 202)])
def test_fixed_chunk_matmul_column_does_not_depend_on_its_position(dtype, shape):
    """A pixel's result is the same whichever pixels share the call and wherever it sits in it (the
    window split of a stack moves pixels inside the chunks): bit for bit in float64; in float32 to the
    rounding of its dot product (OpenBLAS's single-precision Haswell/AVX-512 kernels sum columns at some
    positions of a chunk in another order), bounded by K * eps * (|A| @ |X|). And it is the product to rounding."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=shape).astype(dtype)
    X = rng.normal(size=(shape[1], 2500)).astype(dtype)
    full = fixed_chunk_matmul(A, X)
    assert full.dtype == dtype
    if dtype == np.float64:
        same = np.array_equal
    else:
        bound = shape[1] * float(np.finfo(np.float32).eps) * (np.abs(A).astype(np.float64) @ np.abs(X))

        def same(x, y, cols=slice(None)):
            return bool(np.all(np.abs(x.astype(np.float64) - y) <= bound[:, cols]))

    for offset in (1, 17, 333, 1024, 2000):
        part = fixed_chunk_matmul(A, X[:, offset:])
        assert same(part, full[:, offset:]) if dtype == np.float64 else same(part, full[:, offset:], np.s_[offset:])
    one = fixed_chunk_matmul(A, X[:, 5:6])
    assert same(one, full[:, 5:6]) if dtype == np.float64 else same(one, full[:, 5:6], np.s_[5:6])
    exact = A.astype(np.float64) @ X.astype(np.float64)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert np.allclose(full, exact, rtol=tol, atol=tol * np.abs(exact).max())


def test_work_array_reuses_the_workspace_buffer():
    ws = {}
    a = work_array(ws, "e", (4, 100), np.float32)
    b = work_array(ws, "e", (3, 50), np.float32)
    assert np.shares_memory(a, b) and b.shape == (3, 50)
    c = work_array(ws, "e", (8, 100), np.float32)  # larger: a new buffer, kept for the next call
    assert c.shape == (8, 100) and np.shares_memory(c, work_array(ws, "e", (2, 2), np.float32))
    assert work_array(None, "e", (2, 3), np.float64).shape == (2, 3)


def test_unique_patterns_inverse_rebuilds_the_columns():
    rng = np.random.default_rng(2)
    valid = rng.random((70, 500)) < 0.9  # 70 rows: packed bits span 9 bytes
    valid[:, 250:] = valid[:, :250]
    pat, inv = unique_patterns(valid)
    assert np.array_equal(pat[:, inv], valid)
    assert pat.shape[1] == len({tuple(c) for c in valid.T})


def test_pattern_last_cholesky_solves_and_flags_singular_matrices():
    rng = np.random.default_rng(3)
    s, u = 5, 40
    G = rng.normal(size=(u, s, s))
    mats = G @ G.transpose(0, 2, 1) + s * np.eye(s)  # SPD
    mats[7] = np.outer(np.ones(s), np.ones(s))  # rank 1: must be flagged
    C, good = cholesky_pattern_last(np.ascontiguousarray(mats.transpose(1, 2, 0)))
    assert not good[7] and good[np.arange(u) != 7].all()
    b = rng.normal(size=(s, u))
    ok = np.flatnonzero(good)
    x = cholesky_solve_pixel_last(np.ascontiguousarray(C[:, :, ok]), b[:, ok])
    ref = np.linalg.solve(mats[ok], b[:, ok].T[:, :, None])[:, :, 0].T
    assert np.allclose(x, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pattern_last_cholesky_lapack_and_vectorised_ways_agree(monkeypatch, dtype):
    """LAPACK one matrix at a time and the outer-product form across patterns: the same factors to rounding and
    the same patterns flagged - a rank-deficient matrix (LAPACK fails on it) and one whose last pivot is positive
    but below the tolerance (LAPACK succeeds: flagged from the factor's diagonal); each pattern's factor does not
    depend on the rest of its batch (the same bit for bit however pixels are split into windows)."""
    from subsidence_toolkit.core.insar import kernels

    rng = np.random.default_rng(11)
    s, u = 40, 12
    G = rng.normal(size=(u, s, 2 * s))
    mats = (G @ G.transpose(0, 2, 1) / (2 * s) + 0.05 * np.eye(s)).astype(dtype)
    tol = 1e-9 if dtype == np.float64 else 1e-5
    near = np.eye(s, dtype=dtype)
    near[-1, -1] = tol / 10  # last pivot tol / 10 > 0
    mats[3] = near
    pl = np.ascontiguousarray(mats.transpose(1, 2, 0))
    C_lapack, good_lapack = kernels.cholesky_pattern_last(pl, tol)
    monkeypatch.setattr(kernels, "LAPACK_MIN_ORDER", 10**9)
    C_vec, good_vec = kernels.cholesky_pattern_last(pl, tol)
    assert np.array_equal(good_lapack, good_vec) and not good_vec[3] and good_vec.sum() == u - 1
    low = np.tril(np.ones((s, s), dtype=bool))[:, :, None] & good_vec[None, None, :]
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(np.where(low, C_lapack, 0), np.where(low, C_vec, 0), rtol=0, atol=200 * s * eps)
    # both factors reproduce the matrices they factor
    for C in (C_lapack, C_vec):
        Lk = np.where(np.tril(np.ones((s, s), dtype=bool))[:, :, None], C, 0).transpose(2, 0, 1)[good_vec]
        np.testing.assert_allclose(Lk @ Lk.transpose(0, 2, 1), mats[good_vec], rtol=0, atol=200 * s * eps)
    # a singular matrix in the batch: flagged, and the other patterns' factors are those of the batch without it
    monkeypatch.undo()
    sing = pl.copy()
    sing[:, :, 5] = 1.0  # rank 1
    C, good = kernels.cholesky_pattern_last(sing, tol)
    assert not good[5] and not good[3] and good.sum() == u - 2
    assert np.array_equal(C[:, :, good], C_lapack[:, :, good])
    # ... and alone or in a smaller batch (another window split), bit for bit
    for part in ([0, 1, 2], [7], [11, 4]):
        Cp, gp = kernels.cholesky_pattern_last(np.ascontiguousarray(pl[:, :, part]), tol)
        assert np.array_equal(gp, good_lapack[part]) and np.array_equal(Cp, C_lapack[:, :, part])


def _band_spd(n, bw, P, rng):
    """Random SPD band matrices (diagonally dominant, some band entries zero) in band storage (n, bw + 1, P)."""
    Lb = np.zeros((n, bw + 1, P))
    dom = np.zeros((n, P))
    for k in range(1, min(bw, n - 1) + 1):
        Lb[k:, k] = -rng.uniform(0, 1, (n - k, P)) * (rng.uniform(size=(n - k, P)) < 0.7)
        dom[k:] -= Lb[k:, k]
        dom[:-k] -= Lb[k:, k]
    Lb[:, 0] = dom + rng.uniform(0.01, 0.5, (n, P))
    return Lb


def _dense(Lb, p):
    n, b1, _ = Lb.shape
    A = np.zeros((n, n))
    for k in range(min(b1, n)):
        i = np.arange(k, n)
        A[i, i - k] = A[i - k, i] = Lb[k:, k, p]
    return A


@pytest.mark.parametrize("n,bw,P", [(149, 5, 300), (59, 8, 40), (10, 3, 7), (3, 5, 4), (1, 2, 3)])
def test_band_cholesky_solve_equals_the_dense_solve_per_pixel(n, bw, P):
    """Every pixel's banded system solved as numpy's dense solve of the same matrix does (to float64 rounding of
    the system's size), the factor equal to the dense Cholesky factor's band; the bandwidth may exceed the order.
    ``overwrite``: the factor is written over the input, and the solution is the same."""
    rng = np.random.default_rng(n + bw)
    Lb = _band_spd(n, bw, P, rng)
    rhs = rng.normal(size=(n, P))
    keep = Lb.copy()
    x, ok = band_cholesky_solve(Lb, rhs)
    assert ok.all() and np.array_equal(Lb, keep)  # not overwritten
    for p in range(P):
        A = _dense(Lb, p)
        want = np.linalg.solve(A, rhs[:, p])
        np.testing.assert_allclose(x[:, p], want, rtol=1e-12 * n, atol=1e-12 * n * np.abs(want).max())
    x2, ok2 = band_cholesky_solve(Lb, rhs, overwrite=True)
    assert np.array_equal(x2, x) and ok2.all()
    L = np.linalg.cholesky(_dense(keep, 0))
    for k in range(min(bw, n - 1) + 1):
        np.testing.assert_allclose(Lb[k:, k, 0], np.diagonal(L, -k), rtol=1e-12, atol=1e-14)


def test_band_cholesky_solve_flags_the_pixels_whose_pivot_is_not_positive():
    """A pixel whose matrix is not positive definite (a non-positive pivot, first or later) is flagged; the others
    are solved as without it (a pixel's solution depends on its own system only: bit for bit)."""
    rng = np.random.default_rng(3)
    Lb = _band_spd(20, 3, 10, rng)
    rhs = rng.normal(size=(20, 10))
    x_all, _ = band_cholesky_solve(Lb, rhs)
    Lb[0, 0, 7] = 0.0
    Lb[5, 0, 3] = -1.0
    with np.errstate(invalid="raise", divide="raise"):
        x, ok = band_cholesky_solve(Lb, rhs)
    assert ok.tolist() == [i not in (3, 7) for i in range(10)]
    assert np.array_equal(x[:, ok], x_all[:, ok])
    one, _ = band_cholesky_solve(Lb[:, :, 2:3].copy(), rhs[:, 2:3].copy())
    assert np.array_equal(one[:, 0], x[:, 2])
