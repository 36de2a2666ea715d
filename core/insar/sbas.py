"""SBAS inversion of an interferogram stack into a displacement time series.

Small BAseline Subset method of Berardino et al. (2002, IEEE TGRS 40(11)), as
used by Liu et al. (2024, sec. 2.3.1) and Huang et al. (2025, sec. 2.2.1):

* unknowns are the mean velocities ``v_j`` between consecutive acquisition
  dates ``t_j, t_j+1`` (Berardino 2002, eq. 6-7); an interferogram between
  dates ``i < k`` observes ``sum_{j=i}^{k-1} v_j (t_j+1 - t_j)``, i.e. one row
  of the design matrix ``B`` (eq. 9, ``B v = dphi``);
* the minimum-norm least-squares solution ``v = B^+ dphi`` (SVD, eq. 10-11)
  bridges a disconnected network with the smallest velocities (zero velocity
  across an unobserved interval, as MintPy's default ``minNormVelocity``);
* the displacement time series is the cumulative sum
  ``phi(t_n) = sum_{j<n} v_j (t_j+1 - t_j)`` with ``phi(t_0) = 0``.

Alternatives for pixels whose network has gaps (``GAP_*``): the NSBAS weak
linear-trend constraint of Lopez-Quiroz et al. (2009) / Doin et al. (2011) as
in LiCSBAS (rows ``gamma (C v - vel t - c) = 0``), or NaN for the dates that
are not connected to the first date. The number of gaps (connected date
components - 1) is always reported per pixel.

Weights (optional) from coherence: ``w = gamma`` or ``w = 1 / sigma_phi^2``
where ``sigma_phi^2`` is the variance of the multilooked interferometric phase
PDF of Tough et al. (1995, Proc. R. Soc. A 449, eq. 3-4; Lee et al. 1994) for
coherence ``gamma`` and ``L`` looks, falling back to the Cramer-Rao bound
``(1 - gamma^2) / (2 L gamma^2)`` (Rodriguez & Martin 1992, eq. 68) where the
PDF integral is not finite.

Temporal coherence (Pepe & Lanari 2006, eq. 17):
``|sum_k exp(j e_k)| / M_used`` of the unweighted residuals ``e`` (radians).

Speed (no per-pixel Python loop):

* unweighted: one SVD of the design; every pixel is solved by ONE matrix
  product ``ts = K y`` with ``K = T B^+``. Missing observations of a pixel are
  first replaced by the values the least-squares fit of its valid
  observations predicts for them (the fixed point of the EM / Woodbury
  identity ``(I - H_SS) c = (H y_0)_S``, ``H = B B^+``), computed once per
  distinct validity pattern (``np.unique`` on packed bits) in batched small
  solves (LAPACK one pattern at a time from order 32), which gives exactly the
  least-squares solution of the valid rows; pixels missing many observations
  (:func:`laplacian_min_missing`) are solved instead by the normal equations of
  their own network in the phase-per-date form below, whose cost does not grow
  with the number missing;
* weighted: per-pixel normal equations in the equivalent phase-per-date form
  (a weighted graph Laplacian), assembled for all pixels at once and solved by
  a vectorized banded Cholesky across pixels (dense batched LU when the
  network bandwidth is large);
* pixels whose own network is split (more disconnected than the whole network,
  and every weighted pixel with a gap): the same banded normal equations with
  the first date of each part held at 0, then the parts' constants that give
  the minimum-norm velocities (:func:`_component_laplacian_solve`); the batched
  SVD pseudo-inverse remains for NSBAS and for networks of large bandwidth.
"""

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..io.blas import cholesky_each
from .kernels import (
    LAPACK_MIN_ORDER,
    MATMUL_CHUNK,
    PIVOT_TOL,
    band_cholesky_solve,
    cholesky_pattern_last,
    cholesky_solve_pixel_last,
    fixed_chunk_matmul,
    unique_patterns,
    work_array,
)
from .network import DEFAULT_NSBAS_GAMMA, largest_part
from .weights import DEFAULT_LOOKS, WEIGHT_NONE, WEIGHTINGS, coherence_weights

GAP_MIN_NORM = "min_norm"
GAP_NSBAS = "nsbas"
GAP_MASK = "mask"
GAP_MODES = (GAP_MIN_NORM, GAP_NSBAS, GAP_MASK)
DEFAULT_RCOND = 1e-5

#: bands of the quality raster of the streaming driver, in this order (new bands are appended): the last two
#: are the number of loops with an unclosed 2 pi ambiguity (NaN without loop closure) and the index of the
#: first date of the part of the network that was kept (0 unless GAP_HANDLING mask dropped a part)
QUALITY_BANDS = (
    "temporal_coherence",
    "n_ifg_used",
    "residual_rms_mm",
    "velocity_std_mm_yr",
    "n_gaps",
    "n_loop_errors",
    "kept_first_date",
    "n_unwrap_corrected",
)


def _laplacian_system(network, obs, valid, w, matmul_chunk):
    """The normal equations of a chunk of pixels with every date an unknown -> (Lb (N, bw+1, p), rhs (N, p)).

    ``Lb``: the weighted graph Laplacian ``A^T W A`` of each pixel's network (A: the -1/+1 incidence of the pairs,
    ``W``: ``w`` (M, p) where ``valid``, 0 elsewhere; ``w`` None: unit weights) in the lower band storage of
    :func:`band_cholesky_solve`; ``rhs`` = ``A^T W y``. Singular (the constants are free): the connected solve
    removes date 0 (``Lb[1:]``, ``rhs[1:]``: the entries of pairs with date 0 then lie outside the band, which the
    band Cholesky never reads), the split one holds the first date of every part. ``matmul_chunk``: the fixed
    column chunk of the products (:func:`fixed_chunk_matmul`)."""
    N = network.n_dates
    i1, i2 = network.i1, network.i2
    W = valid.astype(np.float64) if w is None else np.where(valid, w, 0.0)
    Wy = np.zeros(valid.shape)
    np.copyto(Wy, obs, where=valid)
    Wy *= W
    rhs = fixed_chunk_matmul(network.A.T, Wy, chunk=matmul_chunk)
    del Wy
    Lb = np.zeros((N, network.bandwidth + 1, valid.shape[1]))
    Lb[:, 0] = fixed_chunk_matmul(np.abs(network.A).T, W, chunk=matmul_chunk)
    Lb[i2, i2 - i1] = -W
    return Lb, rhs


def _component_laplacian_solve(network, obs, valid, w, labels, chunk=1024, matmul_chunk=None):
    """Minimum-norm least squares (as ``_fallback_solve`` without NSBAS) for pixels whose own network is split into
    several parts, without a pseudo-inverse per pixel -> ts[1:] (N-1, n), ok (n,).

    ``labels`` (N, n): each date's part, as the smallest date index in it (:meth:`.network.SbasNetwork.components`);
    ``w`` (M, n) weights or None (unit). Within a part the least squares fixes the time series up to a constant:
    the banded Laplacian of the pixel's network with the first date of every part held at 0 (its row and column
    replaced by the identity) gives one solution ``u`` (:func:`band_cholesky_solve`). Every least-squares solution
    is then ``u + c`` with one constant per part (0 for the part of the first date, whose value is 0), and the
    minimum-norm one minimises the velocities' norm ``sum_j ((ts_j+1 - ts_j) / dt_j)^2`` (the unknowns of the
    design ``B``): a least squares in the constants of the parts met along the chain of dates, a small SPD system
    per pixel (the parts' chain is connected). The pseudo-inverse took a ``(N-1)^2`` eigen-decomposition per pixel
    (2-4 ms for 150 dates); this a banded factorisation and a system of the parts' size."""
    mc = MATMUL_CHUNK if matmul_chunk is None else matmul_chunk
    N = network.n_dates
    n = obs.shape[1]
    bw = network.bandwidth
    out = np.empty((N - 1, n))
    okall = np.ones(n, dtype=bool)
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        p = c1 - c0
        Lb, rhs = _laplacian_system(network, obs[:, c0:c1], valid[:, c0:c1], None if w is None else w[:, c0:c1], mc)
        lab = labels[:, c0:c1]
        roots = lab == np.arange(N)[:, None]  # the first date of each part: held at 0
        Lb[:, 0][roots] = 1.0
        for k in range(1, bw + 1):
            Lb[:, k][roots] = 0.0  # row of a root
            Lb[k:, k][roots[:-k]] = 0.0  # its column
        rhs[roots] = 0.0
        u, ok = band_cholesky_solve(Lb, rhs, overwrite=True)
        del Lb, rhs
        # the parts' constants: c minimising sum_j (g_j + (c_b(j) - c_a(j)) / dt_j)^2, c = 0 for date 0's part
        cid = np.take_along_axis(np.cumsum(roots, axis=0) - 1, lab.astype(np.intp), axis=0)  # (N, p) part index
        K = int(cid.max(initial=0)) + 1
        ts = u
        if K > 1:
            a, b = cid[:-1], cid[1:]
            cross = a != b
            inv_dt = (1.0 / network.dt)[:, None]
            g = np.diff(u, axis=0) * inv_dt  # velocities of u
            px = np.broadcast_to(np.arange(p)[None, :], a.shape)[cross]
            aa, bb = a[cross], b[cross]
            wt = np.broadcast_to(inv_dt * inv_dt, a.shape)[cross]
            gd = (g * inv_dt)[cross]
            G = (
                np.bincount(px * K * K + aa * K + aa, wt, p * K * K)
                + np.bincount(px * K * K + bb * K + bb, wt, p * K * K)
                - np.bincount(px * K * K + aa * K + bb, wt, p * K * K)
                - np.bincount(px * K * K + bb * K + aa, wt, p * K * K)
            ).reshape(p, K, K)
            h = (np.bincount(px * K + aa, gd, p * K) - np.bincount(px * K + bb, gd, p * K)).reshape(p, K)
            G1, h1 = G[:, 1:, 1:], h[:, 1:]
            unused = np.arange(1, K)[None, :] >= roots.sum(axis=0)[:, None]  # parts a pixel does not have
            G1[unused[:, :, None] & np.eye(K - 1, dtype=bool)[None]] = 1.0
            const = np.zeros((p, K))
            const[:, 1:] = np.linalg.solve(G1, h1[:, :, None])[:, :, 0]
            ts = u + np.take_along_axis(const.T, cid, axis=0)
        out[:, c0:c1] = ts[1:]
        okall[c0:c1] = ok
    return out, okall


#: interferograms per chunk of the residual / temporal-coherence pass
RESID_CHUNK = 16


@dataclass(frozen=True)
class SolverOptions:
    """How :func:`sbas_invert_block` solves a block.

    ``weighting``: ``none`` (classic SBAS), ``coherence`` or ``variance``; ``looks``: number of looks of the
    ``variance`` weights (None/invalid -> default); ``min_coherence``: observations with a lower coherence
    (or NaN coherence when weighting) are dropped; ``gap_handling``: ``min_norm``, ``nsbas`` or ``mask``;
    ``rad_per_unit``: radians per unit of the observations (for temporal coherence); ``dtype``: float
    type of the unweighted solve (float32 is ~2x faster; weighted normal equations are always float64).
    """

    weighting: str = WEIGHT_NONE
    looks: Optional[float] = DEFAULT_LOOKS
    min_coherence: float = 0.0
    gap_handling: str = GAP_MIN_NORM
    rad_per_unit: float = 1.0
    nsbas_gamma: float = DEFAULT_NSBAS_GAMMA
    rcond: float = DEFAULT_RCOND
    dtype: type = np.float64

    def __post_init__(self):
        if self.gap_handling not in GAP_MODES:
            raise ValueError("unknown gap handling %r (use one of %s)" % (self.gap_handling, ", ".join(GAP_MODES)))
        if self.weighting not in WEIGHTINGS:
            raise ValueError("unknown weighting %r (use one of %s)" % (self.weighting, ", ".join(WEIGHTINGS)))

    @property
    def weighted(self):
        return self.weighting != WEIGHT_NONE

    @property
    def work_dtype(self):
        """The float type of the solve: float64 when weighted, else ``dtype``."""
        return np.float64 if self.weighted else np.dtype(self.dtype).type


@dataclass(frozen=True, eq=False)
class SvdOperators:
    """SVD-based operators of a network's design for the unweighted fast path (see :func:`svd_operators`).

    ``solve`` (N-1, M): ``ts[1:] = solve @ y``; ``hat`` (M, M): hat matrix of the data rows; ``basis``
    (M, rank): its orthonormal basis (``hat = basis basis^T``); ``nsbas``: the NSBAS design was used."""

    solve: np.ndarray
    hat: np.ndarray
    basis: np.ndarray
    rank: int
    nsbas: bool


def svd_operators(network, options):
    """The :class:`SvdOperators` of ``network`` for ``options`` (gap handling, NSBAS gamma, rcond), cached
    on the network."""
    use_nsbas = options.gap_handling == GAP_NSBAS and int(network.n_gaps()[0]) > 0
    key = ("svd_operators", use_nsbas, options.nsbas_gamma, options.rcond)
    if key in network._cache:
        return network._cache[key]
    m, nu = network.n_ifg, network.n_dates - 1
    if use_nsbas:
        D = network.nsbas_design(options.nsbas_gamma)
        cumulative = np.hstack([network.T, np.zeros((nu, 2))])
    else:
        D = network.B
        cumulative = network.T
    U, s, Vt = np.linalg.svd(D, full_matrices=False)
    r = int(np.sum(s > options.rcond * s[0]))
    Ur, sr, Vr = U[:, :r], s[:r], Vt[:r].T
    pinv = (Vr / sr) @ Ur.T  # (nu', R)
    ops = SvdOperators(
        solve=(cumulative @ pinv)[:, :m],  # ts[1:] = K y  (extra rows have obs 0)
        hat=Ur[:m] @ Ur[:m].T,  # hat matrix of the data rows
        basis=np.ascontiguousarray(Ur[:m]),
        rank=r,
        nsbas=use_nsbas,
    )
    network._cache[key] = ops
    return ops


FALLBACK_CHUNK_BYTES = 16 * 2**20  # working memory of one chunk of _fallback_solve
FALLBACK_BYTES_PER_ENTRY = 32  # float64 design copy, products and factors per design entry


def _fallback_solve(network, obs, valid, sqrtw, options, chunk=None):
    """Per-pixel minimum-norm (or NSBAS) least-squares solution, batched over pixels.

    obs (M, n), valid (M, n), sqrtw (M, n) or None -> ts[1:] (N-1, n).
    Rows of invalid observations are zeroed (a zero row does not change the
    min-norm least-squares solution). Minimum norm / mask: the pseudo-inverse of each
    pixel's design D (rank-deficient where the pixel's network is split) is taken through
    the eigen-decomposition of its normal matrix, D^+ y = V diag(1/lambda) V^T D^T y over
    the eigenvalues lambda > rcond^2 lambda_max (the singular values of D are
    sqrt(lambda): the same cut as ``pinv(D, rcond)``), plus one step of iterative
    refinement on the residual; a 59 x 59 ``eigh`` per pixel costs a fraction of the
    202 x 59 SVD. NSBAS keeps the SVD ``pinv``: its constraint rows are scaled by gamma
    and the normal matrix (condition number squared) would lose ~1e-8 relative.
    Pixels go in chunks of at most 512 whose per-pixel matrices take at most
    FALLBACK_CHUNK_BYTES (``chunk`` overrides). ``options``: gap handling, NSBAS gamma and rcond.
    """
    m, nu = network.n_ifg, network.n_dates - 1
    gap_handling, rcond = options.gap_handling, options.rcond
    D = network.nsbas_design(options.nsbas_gamma) if gap_handling == GAP_NSBAS else network.B
    R, q = D.shape
    if chunk is None:
        chunk = int(max(1, min(512, FALLBACK_CHUNK_BYTES // (FALLBACK_BYTES_PER_ENTRY * R * q))))
    n = obs.shape[1]
    out = np.empty((nu, n))
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        w = valid[:, c0:c1].astype(np.float64)
        if sqrtw is not None:
            w = w * np.where(valid[:, c0:c1], sqrtw[:, c0:c1], 0.0)
        Dm = np.broadcast_to(D, (c1 - c0, R, q)).copy()
        Dm[:, :m, :] *= w.T[:, :, None]
        y = np.zeros((c1 - c0, R))
        y[:, :m] = (np.where(valid[:, c0:c1], obs[:, c0:c1], 0.0) * w).T
        if gap_handling == GAP_NSBAS:  # gamma-scaled rows: too ill-conditioned for normal equations
            x = np.einsum("nqr,nr->nq", np.linalg.pinv(Dm, rcond=rcond), y)
        else:
            lam, V = np.linalg.eigh(np.matmul(Dm.transpose(0, 2, 1), Dm))  # (n, q), (n, q, q)
            keep = lam > (rcond * rcond) * lam[:, -1:]
            inv = np.divide(1.0, lam, out=np.zeros_like(lam), where=keep)
            x = np.zeros((c1 - c0, q))
            r = y
            for _ in range(2):  # the solve and one step of iterative refinement on the residual
                g = np.einsum("nrq,nr->nq", Dm, r)  # D^T r
                x += np.einsum("nqk,nk->nq", V, inv * np.einsum("nqk,nq->nk", V, g))
                r = y - np.einsum("nrq,nq->nr", Dm, x)
        out[:, c0:c1] = np.cumsum(x[:, :nu].T * network.dt[:, None], axis=0)  # T v (O = [T | 0])
    return out


def _weighted_laplacian_solve(network, obs, valid, w, chunk=8192, matmul_chunk=None):
    """Weighted LSQ in phase-per-date form for connected pixels -> ts[1:] (N-1, n), ok (n,).

    The normal matrix ``A^T W A`` (A: -1/+1 incidence of the pairs) is the
    weighted graph Laplacian of the network; with date 0 removed it is SPD for
    a connected pixel network. It is banded (half bandwidth = the largest
    index distance of a pair), assembled in band storage for a chunk of
    pixels at once and solved by :func:`band_cholesky_solve` (dense batched
    LU when the bandwidth exceeds 16).

    ``w`` None: unit weights (the unweighted least squares of the valid rows). ``matmul_chunk``: the fixed
    column chunk of the products (:func:`fixed_chunk_matmul`; a constant, so that a pixel's result does not
    depend on the others).
    """
    mc = MATMUL_CHUNK if matmul_chunk is None else matmul_chunk
    N = network.n_dates
    n = obs.shape[1]
    i1, i2 = network.i1, network.i2
    out = np.empty((N - 1, n))
    okall = np.ones(n, dtype=bool)
    inner = i1 > 0  # pairs whose both dates are unknowns
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        p = c1 - c0
        Lb, rhs = _laplacian_system(network, obs[:, c0:c1], valid[:, c0:c1], None if w is None else w[:, c0:c1], mc)
        if network.bandwidth <= 16:
            x, ok = band_cholesky_solve(Lb[1:], rhs[1:], overwrite=True)  # date 0 removed
        else:
            Lap = np.zeros((p, N - 1, N - 1))
            Lap[:, np.arange(N - 1), np.arange(N - 1)] = Lb[1:, 0].T
            off = Lb[i2[inner], (i2 - i1)[inner]].T  # -W of the pairs between unknowns
            Lap[:, i1[inner] - 1, i2[inner] - 1] = off
            Lap[:, i2[inner] - 1, i1[inner] - 1] = off
            try:
                x = np.linalg.solve(Lap, rhs[1:].T[:, :, None])[:, :, 0].T
                ok = np.ones(p, dtype=bool)
            except np.linalg.LinAlgError:
                x = np.zeros_like(rhs[1:])
                ok = np.zeros(p, dtype=bool)
        del Lb, rhs
        out[:, c0:c1] = x
        okall[c0:c1] = ok
    return out, okall


#: interferograms per chunk of the residual / temporal-coherence pass


def _impute_missing(operators, obs, workspace=None, skip=None):
    """Fill the missing observations of partial pixels with their own LSQ prediction (in place).

    For a validity pattern with missing rows S, ``(I - H_SS) c = (H y_0)_S``
    (EM fixed point / Woodbury identity; ``H`` = hat matrix of the design,
    ``y_0`` = observations with missing ones set to 0) makes ``K [y_valid; c]``
    the exact least-squares solution of the valid rows. ``I - H_SS`` is
    factorised once per distinct pattern (Cholesky vectorized across the
    patterns with the same number of missing rows; from order
    :data:`.kernels.LAPACK_MIN_ORDER` on, LAPACK one pattern at a time,
    :func:`_impute_each`), then solved per pixel.
    Returns a bool per pattern: True where solved, False where the pattern
    lost rank (a gap beyond the network's) or misses more than half the rows.
    ``operators``: :class:`SvdOperators`; ``obs``: :class:`Observations` (``obs.signed`` is filled).
    ``skip``: bool per pattern, patterns left alone (False in the result; solved otherwise by the caller).
    """
    Y, part, pat, inv = obs.signed, obs.partial, obs.patterns, obs.pattern_index
    M = Y.shape[0]
    # float32 stacks: float32 factorisations (imputed values to ~1e-6 relative), looser rank tolerance
    fdt = np.float64 if Y.dtype == np.float64 else np.float32
    tol = PIVOT_TOL if fdt == np.float64 else 1e-5
    Hf = np.asarray(operators.hat, dtype=fdt)
    miss = ~pat
    s_count = miss.sum(axis=0)
    if skip is not None:
        s_count = np.where(skip, 0, s_count)  # order 0: not solved here
    # H y0 of the pixels solved here only (columns ``col`` of ``pred`` per position in ``part``)
    here = ((s_count > 0) & (s_count <= M // 2))[inv]
    col = None if here.all() else np.cumsum(here) - 1
    Yp = np.take(Y, part if col is None else part[here], axis=1)
    Uf = operators.basis.astype(Y.dtype)  # H y0 = U (U^T y0), U: (M, rank)
    pred = fixed_chunk_matmul(Uf, fixed_chunk_matmul(np.ascontiguousarray(Uf.T), Yp, chunk=256), chunk=256)
    pat_ok = np.zeros(pat.shape[1], dtype=bool)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(pat.shape[1] + 1))
    for s, us in _pattern_batches(s_count, M):
        mt = miss.T if us.size == s_count.size else miss[:, us].T
        S = np.nonzero(np.ascontiguousarray(mt))[1].reshape(len(us), s)  # (u, s) missing rows
        if s >= LAPACK_MIN_ORDER:
            good = _impute_each(Hf, S, us, starts, order, pred, col, Y, part, tol, workspace)
            if good is not None:
                pat_ok[us[good]] = True
                continue
        ST = np.ascontiguousarray(S.T)
        u = len(us)
        idx = np.add((ST * M)[:, None, :], ST[None, :, :], out=work_array(workspace, "hss_idx", (s, s, u), np.intp))
        Mat = Hf.ravel().take(idx, out=work_array(workspace, "hss", (s, s, u), fdt))  # (s, s, u) = H_SS
        np.negative(Mat, out=Mat)
        Mat[np.arange(s), np.arange(s)] += 1  # I - H_SS
        C, good = cholesky_pattern_last(Mat, tol, overwrite=True, workspace=workspace)
        if not good.any():
            continue
        ug = us[good]
        pat_ok[ug] = True
        if good.all():
            Cg, Sg = C, S
        else:
            Cg, Sg = C[:, :, good], S[good]
        unique_px = bool(np.all(starts[ug + 1] - starts[ug] == 1))
        sel, loc = _pattern_pixels(ug, starts, order)
        step = max(256, int(2e7 // (s * s)))
        for c0 in range(0, sel.size, step):
            sl, lc = sel[c0 : c0 + step], loc[c0 : c0 + step]
            SpT = Sg[lc].T  # (s, n)
            rhs = pred[SpT, (sl if col is None else col[sl])[None, :]].astype(fdt)
            Cp = Cg[:, :, c0 : c0 + step] if unique_px else Cg[:, :, lc]
            c = cholesky_solve_pixel_last(Cp, rhs)
            Y[SpT, part[sl][None, :]] = c
    return pat_ok


def _pattern_pixels(us, starts, order):
    """The partial pixels of the patterns ``us``, pattern by pattern: their positions in ``part`` and the index of
    each one's pattern in ``us`` (``order``: the positions sorted by pattern, ``starts``: each pattern's first)."""
    counts = starts[us + 1] - starts[us]
    first = np.repeat(starts[us], counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return order[first + within], np.repeat(np.arange(len(us)), counts)


#: working memory of one batch of patterns in :func:`_impute_missing` (their ``I - H_SS`` and its gather index)
PATTERN_BATCH_BYTES = 16 * 2**20


def _pattern_batches(s_count, M, batch_bytes=None):
    """``(s, patterns)`` batches of the patterns to impute (orders 1 .. M // 2), of one order each and at most
    ``PATTERN_BATCH_BYTES`` of ``(s, s)`` matrices and gather indices (12 s^2 bytes per pattern): every pixel
    partial (real stacks, masked by coherence) with 60 missing rows would otherwise take 12 x 3 600 bytes per
    pixel of the sub-block at once. A pattern's factor and solution do not depend on its batch."""
    batch_bytes = PATTERN_BATCH_BYTES if batch_bytes is None else batch_bytes
    for s in np.unique(s_count):
        if s > M // 2 or s == 0:
            continue
        us = np.flatnonzero(s_count == s)
        step = max(1, int(batch_bytes // (12 * s * s)))
        for b0 in range(0, us.size, step):
            yield int(s), us[b0 : b0 + step]


def _impute_each(Hf, S, us, starts, order, pred, col, Y, part, tol, workspace=None):
    """:func:`_impute_missing` for the patterns ``us`` with missing rows ``S`` (u, s) on LAPACK, one call per
    pattern and one per pixel (:func:`~..io.blas.cholesky_each`, GIL released; ``pred``: ``H y_0``, its columns
    ``col`` per position in ``part``, or the positions themselves when None): ``I - H_SS`` of each pattern is
    gathered C-ordered, factored by ``potrf`` and each pixel's ``(I - H_SS) c = (H y_0)_S`` solved by ``potrs``,
    written into ``Y``. The same pivot test as :func:`.kernels.cholesky_pattern_last` (``C[j, j]**2 > tol``,
    a matrix LAPACK cannot factor flagged). Returns the patterns solved (bool (u,)), or None when LAPACK is not
    reachable (the caller then takes the vectorised route). A pixel's values depend on its own pattern and data
    only, not on the other pixels of the window.

    Measured on the frame network (605 interferograms, pixels missing s = 60 of them, float32, one thread): the
    gather, ``potrf`` and ``potrs`` take about 32 + 25 + 10 us per pixel, against about 40 + 75 + 25 us for the
    pattern-last gather, ``np.linalg.cholesky`` (whose per-matrix copies in numpy cost more than LAPACK's
    factorisation at this order) and the substitutions vectorised across pixels; a 24 x 768 px sub-block with
    10 % such pixels solves in 0.39 s instead of 0.68 s (``benchmarks/bench_partial.py``). Below
    :data:`.kernels.LAPACK_MIN_ORDER` the vectorised route is as fast or faster (per-call overhead)."""
    u, s = S.shape
    M = Hf.shape[0]
    idx = np.add((S * M)[:, :, None], S[:, None, :], out=work_array(workspace, "hss_idx", (u, s, s), np.intp))
    Mat = Hf.ravel().take(idx, out=work_array(workspace, "hss", (u, s, s), Hf.dtype))  # (u, s, s) = H_SS
    np.negative(Mat, out=Mat)
    diag = (slice(None), np.arange(s), np.arange(s))
    Mat[diag] += 1  # I - H_SS
    sel, loc = _pattern_pixels(us, starts, order)
    rows = S[loc]  # (n, s) each pixel's missing rows
    rhs = np.ascontiguousarray(pred[rows, (sel if col is None else col[sel])[:, None]], dtype=Hf.dtype)
    infos = cholesky_each(Mat, rhs, loc)
    if infos is None:
        return None
    piv = Mat[diag]
    with np.errstate(invalid="ignore"):
        good = (infos == 0) & np.all(piv * piv > tol, axis=1) & np.isfinite(piv).all(axis=1)
    keep = good[loc]
    if keep.all():
        Y[rows.T, part[sel][None, :]] = rhs.T
    elif keep.any():
        Y[rows[keep].T, part[sel[keep]][None, :]] = rhs[keep].T
    return good


# --------------------------------------------------------------------------- block solver
@dataclass(eq=False)
class Observations:
    """A block's observations prepared for the solves (pixels flattened: ``P = rows * cols``).

    ``raw`` (M, P) as given (NaN = no data); ``signed`` (M, P) in the solve's dtype with the pair signs
    applied and 0 where not valid (partial pixels get their missing rows imputed in place); ``valid``
    (M, P); ``coherence`` (M, P) or None; ``full``/``has`` (P,) every/any observation valid; ``partial``
    indices of the pixels with some but not all; ``n_used`` (P,); ``patterns`` (M, U) the distinct
    validity patterns of the partial pixels and ``pattern_index`` each partial pixel's pattern (None
    without partial pixels)."""

    raw: np.ndarray
    signed: np.ndarray
    valid: np.ndarray
    coherence: Optional[np.ndarray]
    full: np.ndarray
    has: np.ndarray
    partial: np.ndarray
    n_used: np.ndarray
    patterns: Optional[np.ndarray] = None
    pattern_index: Optional[np.ndarray] = None


@dataclass(eq=False)
class Gaps:
    """Gaps (connected date components - 1) of the network and of every pixel's own network.

    ``per_pixel`` (P,) int32, -1 without data; ``network_labels`` (N,) component label of each date
    (smallest date index of its component) in the whole network; ``network`` its gap count;
    ``per_pattern`` (U,) of the validity patterns of :class:`Observations` (None without partial pixels)."""

    per_pixel: np.ndarray
    network_labels: np.ndarray
    network: int
    per_pattern: Optional[np.ndarray] = None


def _prepare_observations(obs_block, network, coherence_block, options, workspace):
    """Observation preparation: validity (NaN, coherence threshold), signed zero-filled copy, pixel classes."""
    M, rows, cols = obs_block.shape
    if M != network.n_ifg:
        raise ValueError("block has %d interferograms, network has %d" % (M, network.n_ifg))
    P = rows * cols
    wdt = options.work_dtype
    y = obs_block.reshape(M, P)
    valid = np.isfinite(y, out=work_array(workspace, "valid", (M, P), bool))
    coh = None
    if coherence_block is not None:
        coh = np.asarray(coherence_block).reshape(M, P)
        if options.min_coherence and options.min_coherence > 0:
            valid &= coh >= options.min_coherence
        if options.weighted:
            valid &= np.isfinite(coh)
    elif options.weighted:
        raise ValueError("weighting %r needs coherence" % options.weighting)
    Y = work_array(workspace, "Y", (M, P), wdt)
    np.copyto(Y, y)
    miss = np.flatnonzero(np.logical_not(valid, out=work_array(workspace, "invalid", (M, P), bool)))
    Y.reshape(-1)[miss] = 0  # (usually few: a sparse scatter beats a masked pass)
    if np.any(network.sign < 0):
        Y *= network.sign.astype(wdt)[:, None]
    full = valid.all(axis=0)
    has = valid.any(axis=0)
    part = np.flatnonzero(has & ~full)
    n_used = np.where(full, M, 0)
    obs = Observations(raw=y, signed=Y, valid=valid, coherence=coh, full=full, has=has, partial=part, n_used=n_used)
    if part.size:
        n_used[part] = valid[:, part].sum(axis=0)
        obs.patterns, obs.pattern_index = unique_patterns(valid[:, part])
    return obs


def _network_gaps(network, obs):
    """Gaps of the whole network; pixels with every observation have them, pixels without data -1."""
    n_gaps = np.full(obs.full.size, -1, dtype=np.int32)
    labels = network.components()[:, 0]
    count = int((labels == np.arange(network.n_dates)).sum() - 1)
    n_gaps[obs.full] = count
    return Gaps(per_pixel=n_gaps, network_labels=labels, network=count)


def _pattern_gaps(network, patterns):
    """Gap counts (U,) and component labels (N, U) of validity patterns (M, U)."""
    labels = network.components(patterns)
    return (labels == np.arange(network.n_dates)[:, None]).sum(axis=0) - 1, labels


def _solve_unweighted(obs, network, options, ts, gaps, workspace):
    """Unweighted solve: impute partial pixels, ONE matrix product for every pixel, SVD fallback for the
    pixels whose own network lost rank. Fills ``ts`` and the partial pixels' gaps; returns the fallback
    pixels (their missing rows are not imputed: residual statistics zero them)."""
    wdt = options.work_dtype
    ops = svd_operators(network, options)
    fallback = np.zeros(0, dtype=np.intp)
    laplacian = np.zeros(0, dtype=np.intp)
    part = obs.partial
    if part.size:
        U = obs.patterns.shape[1]
        # patterns missing many rows: the normal equations of their own network (Laplacian, banded) instead of
        # an order-s factorisation each, where the network is connected and the design is not NSBAS's
        lap_pat = np.zeros(U, dtype=bool)
        if not ops.nsbas and gaps.network == 0:
            lap_pat = (~obs.patterns).sum(axis=0) >= laplacian_min_missing(network)
        pat_ok = _impute_missing(ops, obs, workspace=workspace, skip=lap_pat)
        # patterns keeping the network's rank have the network's gaps; components only for the rest
        gaps.per_pattern = np.full(U, gaps.network, dtype=np.int32)
        # (the NSBAS design keeps full rank whatever the pattern: its patterns are all counted)
        bad_pat = np.arange(U) if ops.nsbas else np.flatnonzero(~pat_ok)
        labels = None
        if bad_pat.size:
            gaps.per_pattern[bad_pat], lab = _pattern_gaps(network, obs.patterns[:, bad_pat])
            labels = np.zeros((network.n_dates, U), dtype=np.int32)
            labels[:, bad_pat] = lab
        # the Laplacian patterns whose own network is connected (those with gaps go to the fallback)
        pat_ok |= lap_pat & (gaps.per_pattern == 0)
        gaps.per_pixel[part] = gaps.per_pattern[obs.pattern_index]
        laplacian = part[(lap_pat & pat_ok)[obs.pattern_index]]
        fallback = part[~pat_ok[obs.pattern_index]]
    # the single matrix product for every pixel (full and imputed partial ones)
    fixed_chunk_matmul(ops.solve.astype(wdt), obs.signed, out=ts[1:])
    ts[:, ~obs.has] = np.nan
    if laplacian.size:
        chunk = laplacian_chunk(network)
        failed = [fallback]
        for c0 in range(0, laplacian.size, chunk):
            c = laplacian[c0 : c0 + chunk]
            x, ok = _weighted_laplacian_solve(network, obs.signed[:, c], obs.valid[:, c], None, chunk, chunk)
            ts[1:, c] = x
            failed.append(c[~ok])  # a factorisation failed (rounding at the edge of rank): the pseudo-inverse
        fallback = np.concatenate(failed)
        laplacian = np.setdiff1d(laplacian, fallback)
    if fallback.size and options.gap_handling != GAP_NSBAS and network.bandwidth <= 16:
        # split networks: a banded solve and the parts' constants (the same minimum-norm solution)
        cols = np.searchsorted(part, fallback)
        chunk = laplacian_chunk(network)
        left = []
        for c0 in range(0, fallback.size, chunk):
            c, pc = fallback[c0 : c0 + chunk], cols[c0 : c0 + chunk]
            x, ok = _component_laplacian_solve(
                network, obs.signed[:, c], obs.valid[:, c], None, labels[:, obs.pattern_index[pc]], chunk, chunk
            )
            ts[1:, c] = x
            left.append(c[~ok])
        solved = np.setdiff1d(fallback, np.concatenate(left))
        laplacian = np.concatenate([laplacian, solved])
        fallback = np.concatenate(left)
    if fallback.size:
        ts[1:, fallback] = _fallback_solve(
            network, obs.raw[:, fallback] * network.sign[:, None], obs.valid[:, fallback], None, options
        )
    # neither route imputes the missing rows: the residual statistics zero them
    return np.sort(np.concatenate([fallback, laplacian]))


#: :func:`laplacian_min_missing` = this x sqrt(interferograms x (dates - 1)) (calibrated below)
LAPLACIAN_FACTOR = 0.23


def laplacian_chunk(network):
    """Pixels per chunk of the Laplacian solve of partial pixels: a power of two from 16 to 1 024 whose working
    memory stays within ``FALLBACK_CHUNK_BYTES`` (the budget of the fallback's chunks, which run after it).
    Per pixel: the float32 gather and its valid flags, one float64 (M,) array at a time (data, then weights),
    and (N - 1) x the band (factored in place) and six vectors; a dense (N - 1)^2 matrix twice when the
    bandwidth exceeds 16."""
    M, n = network.n_ifg, network.n_dates - 1
    bw = network.bandwidth
    per_px = 13 * M + 8 * n * ((bw + 1) + 6) + (16 * n * n if bw > 16 else 0)
    chunk = max(16, min(1024, FALLBACK_CHUNK_BYTES // per_px))
    return 1 << (chunk.bit_length() - 1)


def laplacian_min_missing(network):
    """Partial pixels missing at least this many interferograms are solved by the banded normal equations of
    their own network (:func:`_weighted_laplacian_solve` with unit weights: the same least squares, in float64)
    rather than by imputing their missing rows (:func:`_impute_missing`: a factorisation of order s, the number
    missing, per pattern; above half the rows the per-pixel pseudo-inverse of ``_fallback_solve``).

    The imputation costs about s^2 (gathering ``H_SS``) to s^3 (factoring it) per pixel, the Laplacian a fixed
    amount that grows with the network. Measured on 10 % partial pixels, float32, one thread (block time,
    imputation / Laplacian): the frame network (605 pairs, 150 dates) s = 60: 0.33 / 0.41 s, s = 79: 0.56 /
    0.48 s, s = 151: 1.48 / 0.60 s, s = 272: 5.4 / 2.9 s (many of them disconnected: pseudo-inverse either
    way); the 202-pair, 60-date network: s = 20: 0.09 / 0.11 s, s = 30: 0.13 / 0.11 s, s = 70: 0.44 / 0.30 s.
    The crossovers (about 67 and 27) follow ``LAPLACIAN_FACTOR x sqrt(M (N - 1))``; never above half the rows
    + 1, where the pseudo-inverse would take over."""
    M, n = network.n_ifg, network.n_dates - 1
    return max(1, min(int(round(LAPLACIAN_FACTOR * math.sqrt(M * n))), M // 2 + 1))


def _solve_weighted(obs, network, options, ts, gaps):
    """Weighted solve: banded weighted-Laplacian normal equations for the pixels whose own network is
    connected, the weighted SVD fallback for the rest (and where a factorisation failed). Fills ``ts``
    and the partial pixels' gaps."""
    w = coherence_weights(obs.coherence, options.weighting, options.looks)
    pattern_labels = None
    if obs.partial.size:
        gaps.per_pattern, pattern_labels = _pattern_gaps(network, obs.patterns)
        gaps.per_pattern = gaps.per_pattern.astype(np.int32)
        gaps.per_pixel[obs.partial] = gaps.per_pattern[obs.pattern_index]
    conn = obs.has & (gaps.per_pixel == 0)
    ci = np.flatnonzero(conn)
    rest = np.flatnonzero(obs.has & ~conn)
    Y, valid = obs.signed, obs.valid
    if rest.size and options.gap_handling != GAP_NSBAS and network.bandwidth <= 16:
        # split networks: a banded solve and the parts' constants (the same minimum-norm solution)
        labels = np.empty((network.n_dates, rest.size), dtype=np.int32)
        is_full = obs.full[rest]
        labels[:, is_full] = network.components()
        if pattern_labels is not None and not is_full.all():
            where = np.searchsorted(obs.partial, rest[~is_full])
            labels[:, ~is_full] = pattern_labels[:, obs.pattern_index[where]]
        x, ok = _component_laplacian_solve(network, Y[:, rest], valid[:, rest], w[:, rest], labels)
        ts[1:, rest] = x
        rest = rest[~ok]
    if ci.size:
        x, ok = _weighted_laplacian_solve(network, Y[:, ci], valid[:, ci], w[:, ci])
        ts[1:, ci] = x
        rest = np.concatenate([rest, ci[~ok]])
    if rest.size:
        ts[1:, rest] = _fallback_solve(network, Y[:, rest], valid[:, rest], np.sqrt(w[:, rest]), options)


def _residual_statistics(ts, obs, network, options, zero_rows, *, ifg_stats=False, workspace=None):
    """Residual statistics of the used observations (unweighted): ``e = y - A ts``, their RMS per pixel,
    the temporal coherence ``|sum exp(i e)| / n`` (Pepe & Lanari 2006) and, with ``ifg_stats``, the sum
    of squared residuals per interferogram. ``zero_rows``: pixels whose missing rows are not imputed
    (their residual is set to 0 there). Computed for RESID_CHUNK interferograms at a time so that e,
    cos e and sin e stay in the CPU cache instead of streaming (M, P) arrays.
    Returns (rms (P,), temporal coherence (P,), sum_e2 (M,) or None)."""
    wdt = options.work_dtype
    Y, valid, n_used = obs.signed, obs.valid, obs.n_used
    M, P = Y.shape
    ts_filled = work_array(workspace, "ts_filled", ts.shape, wdt)  # ts with 0 for NaN (ts is finite or NaN)
    np.copyto(ts_filled, ts)
    np.copyto(ts_filled, wdt(0), where=np.isnan(ts, out=work_array(workspace, "ts_nan", ts.shape, bool)))
    e2 = np.zeros(P)
    cos_sum = np.zeros(P)
    sin_sum = np.zeros(P)
    sum_e2 = np.empty(M) if ifg_stats else None
    ch = min(M, RESID_CHUNK)
    e = work_array(workspace, "e", (ch, P), wdt)
    tmp = work_array(workspace, "trig", (ch, P), wdt)
    rad_per_unit = wdt(options.rad_per_unit)
    for k0 in range(0, M, ch):
        k1 = min(M, k0 + ch)
        ek, tk = e[: k1 - k0], tmp[: k1 - k0]
        np.take(ts_filled, network.i2[k0:k1], axis=0, out=ek)
        np.take(ts_filled, network.i1[k0:k1], axis=0, out=tk)
        np.subtract(ek, tk, out=ek)
        np.subtract(Y[k0:k1], ek, out=ek)
        if zero_rows.size:
            ep = ek[:, zero_rows]
            ep[~valid[k0:k1, zero_rows]] = 0
            ek[:, zero_rows] = ep
        e2 += np.einsum("mp,mp->p", ek, ek)
        if ifg_stats:
            sum_e2[k0:k1] = np.einsum("mp,mp->m", ek, ek, dtype=np.float64)
        ek *= rad_per_unit
        cos_sum += np.cos(ek, out=tk).sum(axis=0)
        sin_sum += np.sin(ek, out=tk).sum(axis=0)
    n_div = np.maximum(n_used, 1)
    rms = np.sqrt(e2 / n_div)
    cos_sum -= M - n_used  # e = 0 on missing rows -> cos 1
    tcoh = np.hypot(cos_sum, sin_sum) / n_div
    tcoh[~obs.has] = np.nan
    rms[~obs.has] = np.nan
    return rms, tcoh, sum_e2


def _mask_disconnected(ts, obs, network, gaps):
    """Gap masking (``mask``): only the largest connected part of a pixel's dates is determined; its first
    date becomes 0 and the other dates NaN (ties: the earliest part). Returns the index of the kept part's
    first date per pixel (0 for connected pixels, -1 without data)."""
    kept_first = np.where(obs.has, 0, -1).astype(np.int32)
    if not np.any(gaps.per_pixel > 0):
        return kept_first
    if gaps.network > 0:
        keep, first = largest_part(gaps.network_labels[:, None])
        full = obs.full
        ts[:, full] = np.where(keep, ts[:, full] - ts[first[0]][full], np.nan)
        kept_first[full] = first[0]
    if obs.partial.size:
        pg = np.flatnonzero(gaps.per_pattern > 0)
        if pg.size:
            keep, first = largest_part(network.components(obs.patterns[:, pg]))
            sel = np.flatnonzero(np.isin(obs.pattern_index, pg))
            col = np.searchsorted(pg, obs.pattern_index[sel])
            px = obs.partial[sel]
            fpx = first[col]
            ts[:, px] = np.where(keep[:, col], ts[:, px] - ts[fpx, px][None, :], np.nan)
            kept_first[px] = fpx
    return kept_first


def sbas_invert_block(
    obs_block, network, coherence_block=None, options=None, workspace=None, ifg_stats=False, **option_values
):
    """Invert a block of interferograms into a displacement time series.

    Parameters
    ----------
    obs_block : (M, rows, cols) array, one interferogram per pair of
        ``network`` (same order), NaN = no data (an exact 0.0 is data). Units
        are kept (radians, mm...).
    network : :class:`~.network.SbasNetwork`.
    coherence_block : optional (M, rows, cols) coherence; observations with
        coherence < ``min_coherence`` (or NaN coherence when weighting) are dropped.
    options : :class:`SolverOptions`; ``option_values`` (its field names: ``weighting``, ``looks``,
        ``min_coherence``, ``gap_handling``, ``rad_per_unit``, ``nsbas_gamma``, ``rcond``, ``dtype``)
        set or override fields.
    workspace : optional dict in which the (M, pixels) work arrays are kept and reused by the
        next call with it (consecutive blocks of one stack); results do not depend on it. The ``ts``
        returned is then one of them: valid until the next call with the same workspace.
    ifg_stats : also return, per interferogram, the sum of squared residuals of the used
        observations (``ifg_sum_e2``, (M,), units of obs squared) and their number
        (``ifg_n``, (M,)) in ``quality`` (for the network table).

    Steps: observation preparation, the unweighted or the weighted solve, residual statistics, gap
    masking (``mask``).

    Returns
    -------
    ts : (N, rows, cols) in ``dtype`` (float64 when weighted), first date 0,
        NaN where no solution.
    quality : dict of (rows, cols) arrays: ``temporal_coherence`` (Pepe &
        Lanari 2006), ``n_ifg_used``, ``residual_rms`` (units of obs, RMS of the
        residuals of the used interferograms), ``n_gaps`` (connected date
        components - 1; -1 for a pixel without data).
    """
    if options is None:
        options = SolverOptions(**option_values)
    elif option_values:
        options = replace(options, **option_values)
    obs_block = np.asarray(obs_block)
    _, rows, cols = obs_block.shape
    obs = _prepare_observations(obs_block, network, coherence_block, options, workspace)
    N = network.n_dates
    ts = work_array(workspace, "ts", (N, rows * cols), options.work_dtype)
    ts.fill(np.nan)
    gaps = _network_gaps(network, obs)
    if options.weighted:
        _solve_weighted(obs, network, options, ts, gaps)
    else:
        fallback = _solve_unweighted(obs, network, options, ts, gaps, workspace)
    ts[0, obs.has] = 0
    # imputed observations have zero residual by construction; only pixels solved otherwise
    # (weighted / fallback) need their missing rows zeroed (and all partial ones for ifg_stats)
    zero_rows = obs.partial if (options.weighted or ifg_stats) else fallback
    rms, tcoh, sum_e2 = _residual_statistics(
        ts, obs, network, options, zero_rows, ifg_stats=ifg_stats, workspace=workspace
    )
    kept_first = np.where(obs.has, 0, -1).astype(np.int32)
    if options.gap_handling == GAP_MASK:
        kept_first = _mask_disconnected(ts, obs, network, gaps)
    quality = {
        "temporal_coherence": tcoh.reshape(rows, cols),
        "n_ifg_used": obs.n_used.reshape(rows, cols),
        "residual_rms": rms.reshape(rows, cols),
        "n_gaps": gaps.per_pixel.reshape(rows, cols),
        "kept_first_date": kept_first.reshape(rows, cols),
    }
    if ifg_stats:
        quality["ifg_sum_e2"] = sum_e2
        quality["ifg_n"] = obs.valid.sum(axis=1)
    return ts.reshape(N, rows, cols), quality


# --------------------------------------------------------------------------- memory model
MIB = 2**20
# Working memory of one pixel in a sub-block solve: sbas_invert_block with its workspace kept for the
# window's next sub-block, then the velocity fit, outputs included (the streamed driver's
# ``solve_sub_block``); inputs are not counted: they sit in the window buffer. Measured with tracemalloc on
# the benchmark stack (M = 202 interferograms, N = 60 dates: 5.1 kB float32, 6.9 kB float64 without
# workspace, 19.4 kB weighted); tests/core/insar/test_sbas.py and test_sbas_stack.py check that the peak
# stays below the model and does not fall far below it (the model drifts when the solver changes):
# bytes per interferogram, per date and per pixel.
SOLVE_BYTES = {
    "float32": (18, 24, 512),  # unweighted, float32 solve
    "float64": (32, 16, 512),  # unweighted, float64 solve (automatic reference without coherence)
    "weighted": (88, 32, 512),  # float64 normal equations in band storage
}


def solve_bytes_per_pixel(n_ifg, n_dates, kind, bandwidth=0):
    """Working memory (bytes) of one pixel in a sub-block solve (see SOLVE_BYTES); a weighted solve of a
    network whose bandwidth exceeds 16 uses dense (N-1)^2 normal matrices."""
    a, b, c = SOLVE_BYTES[kind]
    dense = 16 * (n_dates - 1) ** 2 if kind == "weighted" and bandwidth > 16 else 0
    return a * n_ifg + b * n_dates + c + dense


def solve_bytes_fixed(n_ifg, n_dates):
    """Working memory of a sub-block solve that does not grow with its pixels: one chunk of the per-pixel
    SVD fallback (pixels whose own network lost rank), bounded by ``FALLBACK_CHUNK_BYTES``."""
    return min(FALLBACK_CHUNK_BYTES, 512 * FALLBACK_BYTES_PER_ENTRY * n_ifg * (n_dates + 1)) + MIB
