"""Loop-closure quality control of an interferogram network (no QGIS imports).

The method of LiCSBAS step 12 (Morishita et al. 2020, *Remote Sens.* 12:424), vectorised over pixels:

* a *loop* is every triplet of dates i < j < k whose three pairs ij, jk and ik are in the network; its
  phase ``phi_ij + phi_jk - phi_ik`` closes to 0 (plus noise and phase bias) unless one of the three
  interferograms carries an unwrapping error, which leaves an integer number of 2 pi cycles;
* the loop phase of every pixel of a block is ONE sparse matrix product ``A_loop @ Y`` (``A_loop``:
  loops x interferograms, +1 / +1 / -1; NaN propagates only from the three interferograms of a loop);
* per loop over the whole image: the integer number of cycles of the loop phase's median is removed
  (``2 pi round(median / 2 pi)``), then its RMS is taken (LiCSBAS ``loop_ph_rms``); the statistics are
  additive over windows (count, sum, sum of squares and a histogram of the loop phase in bins of
  2 pi / 32 over +-16 cycles, from which the median is known to half a bin), so the image is streamed;
  they can be taken before the reference is known: referencing shifts a loop's phase by a constant
  (the reference pixel's loop phase), applied afterwards to the sums exactly and to the median;
* bad-interferogram rule (LiCSBAS ``identify_bad_ifg``): a loop with RMS >= the threshold (default
  1.5 rad) is bad; every interferogram of a bad loop is a candidate, and a candidate that is also in at
  least one good loop is kept. Equivalently an interferogram in loops is rejected when the *smallest*
  RMS of its loops reaches the threshold, which is the per-interferogram ``loop RMS`` we report;
  interferograms that are in no loop cannot be checked and are reported as such;
* per pixel ``n_loop_errors``: the number of loops (of the interferograms kept) whose phase, after the
  loop's integer cycles, exceeds pi in magnitude, i.e. does not close within an ambiguity (LiCSBAS
  ``n_loop_err``);
* ``LOOP_CORRECT`` (3): the unwrapping errors are corrected per pixel instead (:mod:`.unwrap_correction`);
  a bad interferogram is then kept when the rule applied to :func:`wrapped_loop_rms` (each pixel's loop
  phase wrapped into [-pi, pi], i.e. without its integer cycles) finds it good - its misclosure is integer
  cycles, which the correction removes - and rejected otherwise (noise or phase bias).
"""

import math

import numpy as np

#: LiCSBAS default threshold on the loop-phase RMS (rad)
DEFAULT_LOOP_THRESHOLD = 1.5
LOOP_OFF = 0
LOOP_REPORT = 1
LOOP_REJECT = 2
#: correct unwrapping errors per pixel by phase closure (:mod:`.unwrap_correction`), reject only what that cannot fix
LOOP_CORRECT = 3
LOOP_MODES = (LOOP_OFF, LOOP_REPORT, LOOP_REJECT, LOOP_CORRECT)
#: loop-phase histogram: bins of 2 pi / BINS_PER_CYCLE over -MAX_CYCLES .. MAX_CYCLES cycles (larger values
#: are clipped, which cannot move a median that lies inside the range)
MAX_CYCLES = 16
BINS_PER_CYCLE = 32
N_BINS = 2 * MAX_CYCLES * BINS_PER_CYCLE + 1
TWO_PI = 2.0 * math.pi


class LoopNetwork:
    """The closed triplets of a network given by date indices ``i1 < i2`` per pair and the pair's ``sign``
    (-1 where the file holds later minus earlier date reversed).

    ``loops`` (L, 3) interferogram indices (ij, jk, ik); ``dates`` (L, 3) date indices (i, j, k);
    ``matrix`` the sparse (L, M) loop matrix (signs folded in, so it applies to the files' values);
    ``n_loops_per_ifg`` (M,).
    """

    def __init__(self, i1, i2, sign=None):
        i1 = np.asarray(i1, dtype=np.int64)
        i2 = np.asarray(i2, dtype=np.int64)
        m = i1.size
        sign = np.ones(m) if sign is None else np.asarray(sign, dtype=np.float64)
        n_dates = int(max(i2.max(), i1.max())) + 1 if m else 0
        index = -np.ones((n_dates, n_dates), dtype=np.int64)
        index[i1, i2] = np.arange(m)
        # every pair (i, j) and (j, k) with j shared, then look up (i, k)
        loops = []
        for a in range(m):
            i, j = i1[a], i2[a]
            bs = np.flatnonzero(index[j] >= 0)  # pairs j -> k
            if bs.size == 0:
                continue
            ik = index[i, bs]
            ok = ik >= 0
            for k, c in zip(bs[ok], ik[ok]):
                loops.append((a, index[j, k], c, i, j, k))
        arr = np.array(loops, dtype=np.int64).reshape(-1, 6)
        order = np.lexsort((arr[:, 5], arr[:, 4], arr[:, 3])) if len(arr) else np.zeros(0, dtype=np.int64)
        arr = arr[order]
        self.loops = arr[:, :3]
        self.dates = arr[:, 3:]
        self.n_loops = len(arr)
        self.n_ifg = m
        self.sign = sign
        rows = np.repeat(np.arange(self.n_loops), 3)
        cols = self.loops.ravel()
        vals = (np.array([1.0, 1.0, -1.0])[None, :] * sign[self.loops]).ravel()
        from scipy.sparse import csr_matrix

        self.matrix = csr_matrix((vals, (rows, cols)), shape=(self.n_loops, m))
        self.n_loops_per_ifg = np.bincount(cols, minlength=m)

    def dense(self):
        """The loop matrix as a dense (L, M) array."""
        return self.matrix.toarray()

    def subset(self, keep):
        """Loops whose three interferograms are all in ``keep`` (bool (M,)): their indices (L',)."""
        keep = np.asarray(keep, dtype=bool)
        return np.flatnonzero(keep[self.loops].all(axis=1))

    def loop_phase(self, phase, loops=None):
        """Loop phase of a block: ``phase`` (M, ...) in the files' units -> (L, ...) (NaN where one of the
        three interferograms is NaN). ``loops``: optional subset of loop indices."""
        phase = np.asarray(phase)
        shape = phase.shape[1:]
        y = phase.reshape(self.n_ifg, -1)
        A = self.matrix if loops is None else self.matrix[loops]
        A = A.astype(y.dtype) if y.dtype in (np.float32, np.float64) else A
        out = A @ y
        return np.asarray(out).reshape((A.shape[0],) + shape)


def empty_stats(n_loops):
    """Additive per-loop statistics of the loop phase over pixels (see :func:`accumulate`)."""
    return {
        "count": np.zeros(n_loops, dtype=np.int64),
        "sum": np.zeros(n_loops),
        "sumsq": np.zeros(n_loops),
        "hist": np.zeros((n_loops, N_BINS), dtype=np.int64),
    }


def accumulate(stats, loop_ph):
    """Add a block's loop phase (L, ...) (rad, NaN = not closed there) to ``stats``."""
    L = loop_ph.shape[0]
    x = loop_ph.reshape(L, -1)
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0).astype(np.float64)
    stats["count"] += ok.sum(axis=1)
    stats["sum"] += x0.sum(axis=1)
    stats["sumsq"] += np.einsum("lp,lp->l", x0, x0)
    half = MAX_CYCLES * BINS_PER_CYCLE
    b = np.clip(np.rint(x0 * (BINS_PER_CYCLE / TWO_PI)), -half, half).astype(np.int64) + half
    b += N_BINS * np.arange(L)[:, None]
    stats["hist"] += np.bincount(b[ok], minlength=L * N_BINS).reshape(L, N_BINS)
    return stats


def merge_stats(a, b):
    """Sum of two statistics dicts (windows combined in a fixed order give identical results)."""
    return {k: a[k] + b[k] for k in a}


def median_phase(stats):
    """Each loop's median loop phase (rad) from the histogram (to half a bin, pi / 32), NaN without data; for
    an even count the lower middle value."""
    h = stats["hist"]
    n = h.sum(axis=1)
    cum = np.cumsum(h, axis=1)
    lo = np.argmax(cum >= np.maximum((n + 1) // 2, 1)[:, None], axis=1)
    med = (lo - MAX_CYCLES * BINS_PER_CYCLE) * (TWO_PI / BINS_PER_CYCLE)
    return np.where(n > 0, med, np.nan)


def median_cycles(stats, shift=None):
    """Integer cycles of each loop's median, round((median - shift) / 2 pi), 0 for a loop without data.
    ``shift`` (L,): the reference's loop phase, subtracted from every pixel's loop phase."""
    med = median_phase(stats)
    if shift is not None:
        med = med - shift
    return np.where(np.isfinite(med), np.rint(med / TWO_PI), 0).astype(np.int64)


def loop_rms(stats, shift=None):
    """RMS (rad) of each loop's phase (minus ``shift``, the reference's loop phase) after removing its
    median's integer cycles; inf without data (LiCSBAS gives a loop without data RMS inf)."""
    n = stats["count"].astype(np.float64)
    c = TWO_PI * median_cycles(stats, shift)
    if shift is not None:
        c = c + np.asarray(shift, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ms = (stats["sumsq"] - 2.0 * c * stats["sum"] + c * c * n) / n
    return np.where(n > 0, np.sqrt(np.maximum(ms, 0.0)), np.inf)


def wrapped_loop_rms(stats, shift=None):
    """RMS (rad) of each loop's phase (minus ``shift``) wrapped per pixel into [-pi, pi]: the misclosure left
    when every pixel's integer cycles are removed, i.e. what a per-pixel unwrapping-error correction cannot
    remove (noise, phase bias). From the histogram, to its bin width (2 pi / 32, a quantisation error of
    about 0.06 rad RMS); values clipped at +-16 cycles are wrapped as the end bins. Never above
    :func:`loop_rms` (up to the quantisation); inf for a loop without data."""
    h = stats["hist"]
    n = h.sum(axis=1).astype(np.float64)
    centres = (np.arange(N_BINS) - MAX_CYCLES * BINS_PER_CYCLE) * (TWO_PI / BINS_PER_CYCLE)
    v = centres[None, :] - (0.0 if shift is None else np.asarray(shift, dtype=np.float64)[:, None])
    w = v - TWO_PI * np.rint(v / TWO_PI)
    with np.errstate(invalid="ignore", divide="ignore"):
        ms = (h * (w * w)).sum(axis=1) / n
    return np.where(n > 0, np.sqrt(ms), np.inf)


def classify(loop_net, rms, threshold=DEFAULT_LOOP_THRESHOLD):
    """Per-interferogram verdict of the LiCSBAS rule.

    Returns a dict of (M,) arrays: ``bad`` (in a bad loop and in no good loop), ``no_loop`` (in no loop),
    ``n_loops``, ``n_bad_loops``, ``loop_rms`` (smallest RMS of the loops containing it, NaN in no loop;
    ``bad`` == ``loop_rms >= threshold``) and the per-loop ``bad_loop`` (L,).
    """
    M = loop_net.n_ifg
    bad_loop = np.asarray(rms) >= threshold
    idx = loop_net.loops
    n_bad = np.bincount(idx[bad_loop].ravel(), minlength=M)
    n_good = np.bincount(idx[~bad_loop].ravel(), minlength=M)
    best = np.full(M, np.inf)
    np.minimum.at(best, idx.ravel(), np.repeat(np.asarray(rms, dtype=np.float64), 3))
    n_loops = loop_net.n_loops_per_ifg
    no_loop = n_loops == 0
    best[no_loop] = np.nan
    return {
        "bad": (n_bad > 0) & (n_good == 0),
        "no_loop": no_loop,
        "n_loops": n_loops,
        "n_bad_loops": n_bad,
        "loop_rms": best,
        "bad_loop": bad_loop,
    }


def count_loop_errors(loop_net, phase, loops=None, cycles=None, rad_per_unit=1.0):
    """Per pixel, the number of loops whose phase does not close within pi (an unclosed 2 pi ambiguity).

    ``phase`` (M, rows, cols) in the files' units (referenced; NaN = no data), ``loops``: the loop indices
    to count (e.g. those of the interferograms kept), ``cycles``: each loop's median integer cycles
    (:func:`median_cycles`, removed first), ``rad_per_unit``: radians per unit of ``phase``.
    Returns (rows, cols) int32.
    """
    shape = phase.shape[1:]
    if loops is None:
        loops = np.arange(loop_net.n_loops)
    out = np.zeros(int(np.prod(shape)), dtype=np.int32)
    if len(loops) == 0:
        return out.reshape(shape)
    y = phase.reshape(loop_net.n_ifg, -1)
    step = max(1, (1 << 18) // max(1, y.shape[1]))  # loops per chunk: ~1 MB of float32 loop phase
    for a in range(0, len(loops), step):
        sel = loops[a : a + step]
        lp = loop_net.loop_phase(y, sel)
        if rad_per_unit != 1.0:
            lp = lp * np.asarray(rad_per_unit, dtype=lp.dtype)
        if cycles is not None:
            lp = lp - (TWO_PI * cycles[sel]).astype(lp.dtype)[:, None]
        with np.errstate(invalid="ignore"):
            out += (np.abs(lp) > math.pi).sum(axis=0, dtype=np.int32)
    return out.reshape(shape)
