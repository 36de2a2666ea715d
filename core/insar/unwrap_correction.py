"""Correction of phase-unwrapping errors by phase closure, per pixel (no QGIS imports).

The phase-closure method of Yunjun et al. 2019 (*Computers & Geosciences* 133:104331; MintPy's
``unwrap_error_phase_closure``), solved exactly for every pixel instead of for a sample of pixels per
connected region:

* the loop phase of every closed triplet ``C phi`` (:class:`.loop_closure.LoopNetwork`: loops x
  interferograms, entries +-1) of the referenced phase has the integer ambiguity ``c = round(C phi / 2 pi)``;
  0 for every loop of a pixel without unwrapping errors (the loop noise stays within +-pi). As in MintPy and
  in our ``n_loop_errors``, the reference pixel's side of an error is right by definition (the driver gives no
  ``cycles``; a loop's median integer cycles over the image, :func:`.loop_closure.median_cycles`, may be
  removed first with ``cycles``, which makes the majority of the image right instead);
* the unwrapping errors ``u`` (integer cycles per interferogram) satisfy ``C u = c``; the correction is the
  solution of smallest L1 norm (fewest cycles), found by an exact integer program (HiGHS through
  :func:`scipy.optimize.milp`, ``u = p - n`` with ``p, n >= 0`` integer), and the corrected phase is
  ``phi - 2 pi u``;
* vectorised: only pixels with a non-zero ``c`` are looked at; pixels with the same pattern of ``c`` (and of
  loops without data) share the solution, so one integer program is solved per distinct pattern
  (``np.unique`` over the pixels' rows), at most ``max_patterns`` new ones per call (the most frequent
  first; the pixels of the others are left uncorrected and counted), and solutions are remembered across
  the sub-blocks of a window.

What is left uncorrected (and counted), rather than guessed:

* **ambiguous** entries: the minimum is not unique where several interferograms enter the same loops
  alone, e.g. an interferogram in a single loop whose two partners are in that loop only (an isolated
  triangle): the error may sit on any of the three. After the solve, every interferogram ``k`` of the
  solution is re-solved with ``u_k`` forbidden (``u_k <= u*_k - 1``, then ``u_k >= u*_k + 1``); when
  either reaches the same minimum, ``k`` (and every entry where that other minimum differs) is ambiguous.
  Any other minimum differs from ``u*`` at some entry of ``u*``, so the entries kept agree in every
  minimum: they are applied, the ambiguous ones are not;
* **inconsistent** patterns: ``C u = c`` has no integer solution. The loop phases of the four triangles
  of dates i<j<k<l obey ``T_jkl - T_ikl + T_ijl - T_ijk = 0`` exactly; rounded loop phases of noise
  (decorrelation) usually break it, which is checked for every pixel in one sparse product before any
  solve; the integer program reports the rest;
* **isolated** pixels: an unwrapping error is a region of an interferogram (the unwrapper jumped a cycle
  across a boundary), so its pixels share one pattern of loop integers; phase noise beyond pi in one
  interferogram, which the loops cannot tell from an error of that interferogram at a single pixel, gives
  patterns scattered pixel by pixel. A pixel is corrected only when one of its four neighbours has the same
  pattern (the spatial support MintPy gets from its connected regions); isolated ones are counted (measured
  on pure noise of 1.5 rad per interferogram: 10 % of the pixels would get a cycle otherwise, mostly for the
  worse);
* **implausible** solutions: more cycles than the loops miss (``|u|_1 > |c|_1``): every cycle of an
  unwrapping error shows in each loop of its interferogram, so such a solution explains noise, not errors.

Limits: the minimum-L1 answer is the fewest errors consistent with the loops. Two errors whose loops add up
to those of a third interferogram are attributed to that one (wrongly), and errors in interferograms that
are in no loop (or whose loops have no data at the pixel) cannot be seen at all.
"""

import math

import numpy as np

from ..io.errors import TimeSeriesError

#: distinct patterns solved per call (per sub-block of the inversion); the rest is left uncorrected, counted
DEFAULT_MAX_PATTERNS = 128
#: seconds per integer program (HiGHS); a pattern that is not solved within it is left uncorrected
MILP_TIME_LIMIT = 10.0
#: code of a loop without data in a pattern (loop integers are clipped to +-MAX_CYCLES_CODE)
NO_DATA_CODE = 127
MAX_CYCLES_CODE = 126
#: loop values per chunk of flagged pixels (float32 + int8 codes + int64 hashes: ~4 MB at the peak)
CHUNK_ELEMENTS = 1 << 18
#: bytes a correction allocates at most besides its patterns (for the memory plan)
WORK_BYTES = 24 * CHUNK_ELEMENTS
#: patterns remembered per cache (a window's sub-blocks)
CACHE_SIZE = 4096
TWO_PI = 2.0 * math.pi

OK, INCONSISTENT, IMPLAUSIBLE, UNSOLVED = "ok", "inconsistent", "implausible", "unsolved"
#: per-call pixel counts (in this order in :attr:`Correction.counts`)
COUNT_NAMES = ("flagged", "corrected", "ambiguous", "inconsistent", "implausible", "unsolved", "isolated")


def _milp():
    try:
        from scipy.optimize import LinearConstraint, milp
    except ImportError as e:  # scipy < 1.9
        raise TimeSeriesError(
            "the unwrapping-error correction (LOOP_CLOSURE = 3) needs scipy >= 1.9 (scipy.optimize.milp): "
            "update scipy in QGIS's Python or use LOOP_CLOSURE = 2"
        ) from e
    return milp, LinearConstraint


def tetrahedra(loop_net):
    """The linear relations between loops: for every four dates i<j<k<l whose four triangles are loops,
    ``T_jkl - T_ikl + T_ijl - T_ijk = 0`` (exact for the loop phases of any data). Returns a sparse
    (relations, loops) matrix of +-1 (0 rows when there is no such quadruple)."""
    from scipy.sparse import csr_matrix

    index = {tuple(d): i for i, d in enumerate(loop_net.dates.tolist())}
    by_ij = {}
    for (i, j, k), _ in index.items():
        by_ij.setdefault((i, j), []).append(k)
    rows, cols, vals = [], [], []
    r = 0
    for (i, j, k), l_ijk in index.items():
        for m in by_ij[(i, j)]:
            if m <= k:
                continue
            a, b, c = index.get((i, j, m)), index.get((i, k, m)), index.get((j, k, m))
            if b is None or c is None:
                continue
            rows += [r] * 4
            cols += [c, b, a, l_ijk]
            vals += [1.0, -1.0, 1.0, -1.0]
            r += 1
    return csr_matrix((vals, (rows, cols)), shape=(r, loop_net.n_loops))


def identifiable(loop_net):
    """Per interferogram: True where its column of the loop matrix is non-zero and differs (also up to sign)
    from every other column, i.e. an error of this interferogram alone is told apart from an error of any
    other one alone. False for interferograms in no loop and for those sharing all their loops with another
    one (an isolated triangle)."""
    A = loop_net.dense()
    M = A.shape[1]
    out = np.any(A != 0, axis=0)
    if M == 0:
        return out
    # canonical sign: first non-zero entry positive
    first = np.argmax(A != 0, axis=0)
    s = np.where(A[first, np.arange(M)] < 0, -1.0, 1.0)
    canon = (A * s[None, :]).T
    _, inverse, counts = np.unique(canon, axis=0, return_inverse=True, return_counts=True)
    return out & (counts[inverse.ravel()] == 1)


class Correction:
    """Result of :meth:`ClosureCorrector.correct` for a block of P pixels.

    ``pixels`` (n,): indices of the pixels corrected; ``cycles`` (M, n) int16: the integer cycles to subtract
    per interferogram there (0 where not corrected); ``n_corrected`` (P,) int16: interferograms corrected per
    pixel; ``ifg_corrected`` / ``ifg_ambiguous`` (M,): pixels where each interferogram was corrected / left
    uncorrected because the answer is not unique; ``counts`` (7,) int64 pixels: flagged (some loop with
    non-zero integer ambiguity), corrected, ambiguous (some entry left), inconsistent, implausible, unsolved
    (over the cap of patterns), isolated (no neighbour with the same pattern)."""

    def __init__(self, M, P):
        self.pixels = np.zeros(0, dtype=np.intp)
        self.cycles = np.zeros((M, 0), dtype=np.int16)
        self.n_corrected = np.zeros(P, dtype=np.int16)
        self.ifg_corrected = np.zeros(M, dtype=np.int64)
        self.ifg_ambiguous = np.zeros(M, dtype=np.int64)
        self.counts = np.zeros(len(COUNT_NAMES), dtype=np.int64)

    def subtract(self, y, units_per_cycle):
        """``y`` (M, ...) -= cycles x ``units_per_cycle`` at the corrected pixels (in place, also on a view;
        the pixels index the flattened trailing dimensions)."""
        if self.pixels.size:
            where = np.unravel_index(self.pixels, y.shape[1:])
            y[(slice(None),) + where] -= self.cycles.astype(y.dtype) * y.dtype.type(units_per_cycle)
        return y


class ClosureCorrector:
    """Per-pixel unwrapping-error correction on the loops of ``loop_net`` (picklable: arrays and sparse
    matrices). ``cycles`` (L,): each loop's median integer cycles (removed first; None = 0);
    ``max_patterns``: new integer programs per :meth:`correct` call."""

    def __init__(self, loop_net, cycles=None, max_patterns=DEFAULT_MAX_PATTERNS):
        _milp()
        self.loop_net = loop_net
        L = loop_net.n_loops
        self.cycles = np.zeros(L, dtype=np.int64) if cycles is None else np.asarray(cycles, dtype=np.int64)
        if self.cycles.shape != (L,):
            raise ValueError("cycles: one per loop (%d), not %s" % (L, self.cycles.shape))
        self.max_patterns = int(max_patterns)
        self.relations = tetrahedra(loop_net)
        self.matrix = loop_net.matrix.tocsr().astype(np.float64)

    # ------------------------------------------------------------------ per pixel
    def integer_ambiguity(self, y, rad_per_unit=1.0, loops=None):
        """``round(loop phase / 2 pi - median cycles)`` of ``y`` (M, P) -> (L, P) float32 (NaN: loop without
        data). ``loops``: optional subset."""
        ln = self.loop_net
        sel = np.arange(ln.n_loops) if loops is None else loops
        lp = ln.loop_phase(y, sel).astype(np.float32, copy=False)
        lp *= np.float32(rad_per_unit / TWO_PI)
        lp -= self.cycles[sel].astype(np.float32)[:, None]
        return np.rint(lp)

    def flagged(self, y, rad_per_unit=1.0):
        """Bool (P,): pixels with a loop whose integer ambiguity is not 0 (loops in chunks of ~1 MB)."""
        ln = self.loop_net
        P = y.shape[1]
        out = np.zeros(P, dtype=bool)
        step = max(1, (1 << 18) // max(1, P))
        with np.errstate(invalid="ignore"):
            for a in range(0, ln.n_loops, step):
                c = self.integer_ambiguity(y, rad_per_unit, np.arange(a, min(ln.n_loops, a + step)))
                out |= (np.abs(c) > 0.5).any(axis=0)
        return out

    def correct(self, y, rad_per_unit=1.0, cache=None, shape=None):
        """The correction of a block ``y`` (M, P) (referenced, in units of which ``rad_per_unit`` radians
        make one; NaN = no data), as a :class:`Correction` (``y`` is not changed). ``cache``: a dict kept
        between calls (e.g. the sub-blocks of a window) for patterns already solved. ``shape``: (rows, cols)
        of the P pixels; then a pixel is corrected only when one of its 4 neighbours has the same pattern of
        loop integers (spatial support, see the module notes); None: every pixel on its own. The flagged
        pixels are taken in chunks of :data:`CHUNK_ELEMENTS` loop values (bounded memory); at most
        ``max_patterns`` new integer programs per call, the most frequent patterns of each chunk first."""
        M, P = y.shape
        res = Correction(M, P)
        L = self.loop_net.n_loops
        if L == 0 or P == 0:
            return res
        idx_all = np.flatnonzero(self.flagged(y, rad_per_unit))
        res.counts[0] = idx_all.size
        step = max(1, CHUNK_ELEMENTS // L)
        if shape is not None and idx_all.size:
            idx_all = self._supported(y, idx_all, rad_per_unit, shape, step, res)
        cache = {} if cache is None else cache
        budget = [self.max_patterns]
        pixels, cycles = [], []
        for a in range(0, idx_all.size, step):
            idx = idx_all[a : a + step]
            got = self._correct_pixels(np.ascontiguousarray(y[:, idx]), idx, rad_per_unit, cache, budget, res)
            if got is not None:
                pixels.append(got[0])
                cycles.append(got[1])
        if pixels:
            res.pixels = np.concatenate(pixels)
            res.cycles = np.concatenate(cycles, axis=1)
        return res

    def _supported(self, y, idx, rad_per_unit, shape, step, res):
        """The flagged pixels ``idx`` with a 4-neighbour of the same loop-integer pattern (a 64-bit hash of
        the pattern per pixel; others counted as isolated)."""
        L = self.loop_net.n_loops
        weights = np.random.default_rng(20190101).integers(1, 2**62, L, dtype=np.int64)
        key = np.zeros(int(np.prod(shape)), dtype=np.int64)
        for a in range(0, idx.size, step):
            sel = idx[a : a + step]
            c = self.integer_ambiguity(np.ascontiguousarray(y[:, sel]), rad_per_unit)
            codes = np.where(np.isfinite(c), np.clip(c, -MAX_CYCLES_CODE, MAX_CYCLES_CODE), NO_DATA_CODE)
            with np.errstate(over="ignore"):
                h = (codes.astype(np.int64) * weights[:, None]).sum(axis=0)  # wraps modulo 2**64
            key[sel] = np.where(h == 0, 1, h)  # 0 = not flagged
        k2 = key.reshape(shape)
        same = np.zeros(shape, dtype=bool)
        eq = (k2[1:] == k2[:-1]) & (k2[1:] != 0)
        same[1:] |= eq
        same[:-1] |= eq
        eq = (k2[:, 1:] == k2[:, :-1]) & (k2[:, 1:] != 0)
        same[:, 1:] |= eq
        same[:, :-1] |= eq
        keep = same.ravel()[idx]
        res.counts[6] += int((~keep).sum())
        return idx[keep]

    def _correct_pixels(self, y, idx, rad_per_unit, cache, budget, res):
        """One chunk of flagged pixels ``idx`` (their data ``y`` (M, n)): counts added to ``res``; returns
        (pixels corrected, cycles (M, k)) or None."""
        M = y.shape[0]
        c = self.integer_ambiguity(y, rad_per_unit)  # (L, n)
        if self.relations.shape[0]:
            rel = self.relations @ c  # NaN only where a relation has a loop without data
            with np.errstate(invalid="ignore"):
                broken = (np.abs(rel) > 0.5).any(axis=0)
            res.counts[3] += int(broken.sum())
            idx, c = idx[~broken], c[:, ~broken]
        if idx.size == 0:
            return None
        codes = np.where(np.isfinite(c), np.clip(c, -MAX_CYCLES_CODE, MAX_CYCLES_CODE), NO_DATA_CODE)
        keys, inverse, counts = np.unique(codes.astype(np.int8).T, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        solutions = [None] * len(keys)
        for g in np.argsort(-counts, kind="stable"):  # most frequent patterns first
            key = keys[g].tobytes()
            sol = cache.get(key)
            if sol is None:
                if budget[0] <= 0:
                    continue
                sol = self.solve(keys[g])
                budget[0] -= 1
                if len(cache) >= CACHE_SIZE:
                    cache.pop(next(iter(cache)))
                cache[key] = sol
            solutions[g] = sol
        status = np.array([UNSOLVED if s is None else s[0] for s in solutions])
        for i, name in ((3, INCONSISTENT), (4, IMPLAUSIBLE), (5, UNSOLVED)):
            res.counts[i] += int(counts[status == name].sum())
        ok = np.flatnonzero(status == OK)
        if ok.size == 0:
            return None
        U = np.zeros((len(keys), M), dtype=np.int16)
        AMB = np.zeros((len(keys), M), dtype=bool)
        for g in ok:
            U[g], AMB[g] = solutions[g][1], solutions[g][2]
        px_u = U[inverse]  # (n, M)
        px_amb = AMB[inverse]
        res.counts[2] += int(px_amb.any(axis=1).sum())
        res.ifg_ambiguous += px_amb.sum(axis=0)
        fixed = px_u != 0
        has = fixed.any(axis=1)
        res.counts[1] += int(has.sum())
        res.ifg_corrected += fixed.sum(axis=0)
        pix = idx[has]
        res.n_corrected[pix] = fixed[has].sum(axis=1)
        return pix, np.ascontiguousarray(px_u[has].T)

    # ------------------------------------------------------------------ per pattern
    def solve(self, code):
        """The exact minimum-L1 integer solution of ``C u = c`` for one pattern ``code`` (L,) int8 (loop
        integers, :data:`NO_DATA_CODE` for loops without data). Returns ``(status, u (M,) int16 to apply,
        ambiguous (M,) bool)``; ``u`` is zero where ambiguous and unless ``status`` is ``ok``."""
        from scipy.sparse import csr_matrix, hstack

        milp, LinearConstraint = _milp()
        M = self.loop_net.n_ifg
        zero_u, no_amb = np.zeros(M, dtype=np.int16), np.zeros(M, dtype=bool)
        code = np.asarray(code)
        valid = code != NO_DATA_CODE
        rhs = code[valid].astype(np.float64)
        n_unclosed = int(np.abs(rhs).sum())
        if n_unclosed == 0:
            return OK, zero_u, no_amb
        C = self.matrix[np.flatnonzero(valid)]
        cols = np.flatnonzero(np.diff(C.tocsc().indptr) > 0)  # interferograms in a loop with data
        C = C[:, cols]
        m = cols.size
        A = hstack([C, -C]).tocsr()
        cost = np.ones(2 * m)
        integrality = np.ones(2 * m)
        options = {"time_limit": MILP_TIME_LIMIT}
        equal = LinearConstraint(A, rhs, rhs)
        r = milp(cost, constraints=[equal], integrality=integrality, options=options)
        if r.status == 2:  # infeasible
            return INCONSISTENT, zero_u, no_amb
        if r.x is None or r.status != 0:
            return UNSOLVED, zero_u, no_amb
        u = np.rint(r.x[:m] - r.x[m:]).astype(np.int64)
        best = int(np.abs(u).sum())
        if best > n_unclosed:
            return IMPLAUSIBLE, zero_u, no_amb
        ambiguous = np.zeros(m, dtype=bool)
        # at most the same number of cycles: any feasible point is then another minimum
        at_best = LinearConstraint(cost[None, :], -np.inf, best + 0.5)
        for j in np.flatnonzero(u):
            if ambiguous[j]:
                continue
            row = csr_matrix(([1.0, -1.0], ([0, 0], [j, m + j])), shape=(1, 2 * m))
            for lo, hi in ((-np.inf, u[j] - 1), (u[j] + 1, np.inf)):
                r2 = milp(
                    cost,
                    constraints=[equal, at_best, LinearConstraint(row, lo, hi)],
                    integrality=integrality,
                    options=options,
                )
                if r2.status == 0 and r2.x is not None:
                    other = np.rint(r2.x[:m] - r2.x[m:]).astype(np.int64)
                    ambiguous |= other != u
                    ambiguous[j] = True
                    break
                if r2.status not in (0, 2):  # not proven unique within the time limit: do not apply
                    ambiguous[j] = True
                    break
        out_u, out_amb = zero_u.copy(), no_amb.copy()
        out_u[cols] = np.where(ambiguous, 0, u)
        out_amb[cols] = ambiguous
        return OK, out_u, out_amb
