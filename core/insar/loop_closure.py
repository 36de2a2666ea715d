"""Loop-closure quality control of an interferogram network (no QGIS imports).

The method of LiCSBAS step 12 (Morishita et al. 2020, *Remote Sens.* 12:424), vectorised over pixels:

* a *loop* is every triplet of dates i < j < k whose three pairs ij, jk and ik are in the network; its
  phase ``phi_ij + phi_jk - phi_ik`` closes to 0 (plus noise and phase bias) unless one of the three
  interferograms carries an unwrapping error, which leaves an integer number of 2 pi cycles;
* the loop phase of a block is ``A_loop @ Y`` (``A_loop``: the sparse loops x interferograms matrix, +1 / +1
  / -1; NaN propagates only from the three interferograms of a loop); the statistics and the per-pixel count
  compute it from the three rows directly, chunk by chunk, with the same floating-point operations as the
  sparse product (the same values bit for bit, see :func:`window_stats`);
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

from ..io.tasks import result_of, thread_pool

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

    def terms(self):
        """The loop phase as the sparse product :meth:`loop_phase` computes it, per loop: ``cols`` (L, 3) the
        three interferograms in the matrix's stored order, ``first`` (L,) the coefficient (+-1) of the first,
        ``same`` (L, 2) bool: the second / third coefficient has the first's sign (True: added, False: subtracted).

        The product sums ``0 + a1 y1 + a2 y2 + a3 y3`` left to right (scipy's ``csr_matvecs``); the coefficients
        being +-1 and rounding to nearest symmetric, that is exactly ``a1 ((y1 + a1 a2 y2) + a1 a3 y3)``, which
        :func:`window_stats` and :func:`count_loop_errors` compute from the three rows."""
        cached = self.__dict__.get("_terms")
        if cached is None:
            A = self.matrix.tocsr()
            if self.n_loops and not np.all(np.diff(A.indptr) == 3):
                raise ValueError("loop matrix: three interferograms per loop expected")
            cols = A.indices.reshape(-1, 3).astype(np.intp)
            coef = np.sign(A.data).reshape(-1, 3)
            first = coef[:, 0]
            same = coef[:, 1:] * first[:, None] > 0
            cached = self._terms = (cols, first, same)
        return cached

    def blocks(self, loops, size):
        """``loops`` (indices) cut into blocks of at most ``size`` consecutive loops (in the order given) that have
        the same ``same`` pattern (see :meth:`terms`): [(start, stop, same2, same3)], positions in ``loops``. A
        fixed decomposition that depends only on ``loops`` and ``size``, so results never depend on how blocks
        go to threads. (Networks of files all ordered earlier -> later have one pattern: blocks of ``size``.)"""
        loops = np.asarray(loops, dtype=np.intp)
        _, _, same = self.terms()
        key = 2 * same[loops, 0].astype(np.int8) + same[loops, 1]
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [loops.size]])
        out = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            for c in range(a, b, size):
                out.append((int(c), int(min(b, c + size)), bool(key[a] & 2), bool(key[a] & 1)))
        return out

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
    """Add a block's loop phase (L, ...) (rad, NaN = not closed there) to ``stats`` (in cache-sized chunks; the
    same statistics as :func:`window_stats`)."""
    L = loop_ph.shape[0]
    x = np.asarray(loop_ph).reshape(L, -1)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    S, B = _chunk_shape(x.shape[1])
    blocks = [_Block(a, min(L, a + B)) for a in range(0, L, B)]

    def fill(t, block, p0, p1):
        np.copyto(t, x[block.rows, p0:p1])

    return _chunked_stats(stats, blocks, x.shape[1], x.dtype, fill, threads=1)


#: loop-pixels per chunk of :func:`window_stats` / :func:`count_loop_errors` (~10 MB of work arrays): small enough
#: for the caches, large enough that each numpy call runs long without the GIL. Threads pay for every handoff of
#: the GIL (a cross-core wake-up, several us on a virtual machine) and a chunk makes ~25 calls: measured on a frame
#: window (256 x 1280 px, 963 loops; 2-core VM, one core partly busy), 2^16 loop-pixels took 1.06 s on one thread
#: and 1.21 s on two, 2^18 1.05 s and 0.76 s, 2^20 1.47 s and 1.02 s
CHUNK_ELEMENTS = 1 << 18
#: pixels per chunk at most: every loop is computed on those pixels before the next ones, while the window of
#: the interferograms there (M x 32 kB) is in the shared cache
CHUNK_PIXELS = 8192
#: bytes of work arrays per thread (float32 windows: loop phase, the three rows, masks, float64 values and bins, 37 B
#: per loop-pixel)
CHUNK_BYTES = 40 * CHUNK_ELEMENTS
_HALF = MAX_CYCLES * BINS_PER_CYCLE
_BINS_PER_RAD = BINS_PER_CYCLE / TWO_PI
_MAGIC = 1.5 * 2.0**52  # x + _MAGIC (|x| < 2^51) is x rounded to an integer, held in the low bits
_MAGIC_BITS = int(np.array(_MAGIC).view(np.int64))


def _chunk_shape(P):
    """(pixels, loops) per chunk for blocks of ``P`` pixels."""
    S = max(1, min(CHUNK_PIXELS, P))
    return S, max(1, CHUNK_ELEMENTS // S)


class _Block:
    """Loops ``start:stop`` (positions in the loops computed) of one ``same`` pattern: their interferograms
    ``cols`` (3, B), the operations adding the second and third, ``factor`` (B, 1) and ``shift`` (B, 1) or None."""

    def __init__(self, start, stop, same2=True, same3=True, cols=None, factor=None, shift=None):
        self.rows = slice(start, stop)
        self.n = stop - start
        self.op2 = np.add if same2 else np.subtract
        self.op3 = np.add if same3 else np.subtract
        self.cols = None if cols is None else np.ascontiguousarray(cols.T)
        self.factor = None if factor is None else factor[:, None]
        self.shift = None if shift is None else shift[:, None]


def _loop_blocks(loop_net, loops, size, factor, shift=None):
    """:class:`_Block` s of ``loops`` (see :meth:`LoopNetwork.blocks`)."""
    cols, _, _ = loop_net.terms()
    out = []
    for a, b, same2, same3 in loop_net.blocks(loops, size):
        idx = loops[a:b]
        out.append(_Block(a, b, same2, same3, cols[idx], factor[idx], None if shift is None else shift[idx]))
    return out


def _phase(t, y, block, p0, p1):
    """Write into ``t`` (B, S) the loop phase of ``block`` on pixels ``p0:p1`` of ``y`` (M, P), times its factor
    (first coefficient x radians per unit): ``((y1 +- y2) +- y3) x factor``, the sparse product's values
    (:meth:`LoopNetwork.terms`)."""
    g = y[block.cols, p0:p1]  # (3, B, S)
    block.op2(g[0], g[1], out=t)
    block.op3(t, g[2], out=t)
    np.multiply(t, block.factor, out=t)


class _Work:
    """One thread's work arrays for chunks of up to ``elements`` loop-pixels of dtype ``dtype``."""

    def __init__(self, elements, dtype):
        self.dtype = np.dtype(dtype)
        self.itype = np.dtype("i%d" % self.dtype.itemsize)
        self.t = np.empty(elements, self.dtype)
        self.ok = np.empty(elements, bool)
        self.mask = np.empty(elements, self.itype)
        self.v = np.empty(elements, np.float64) if self.dtype != np.float64 else None
        self.bins = np.empty(elements, np.int64)
        self._views = {}

    def views(self, B, S):
        """(loop phase, finite, mask, float64 values, bins) of a (B, S) chunk, and the row numbers (B, 1)."""
        key = (B, S)
        got = self._views.get(key)
        if got is None:
            E = B * S
            t = self.t[:E].reshape(B, S)
            got = self._views[key] = (
                t,
                self.ok[:E].reshape(B, S),
                self.mask[:E].reshape(B, S),
                t if self.v is None else self.v[:E].reshape(B, S),
                self.bins[:E].reshape(B, S),
                np.arange(B, dtype=np.float64)[:, None],
            )
        return got

    def add_stats(self, views, block, hist, valid, total, total_sq):
        """Add the loop phase of ``views`` (B, S) (radians; overwritten) of loops ``block.rows``: to ``hist``
        (their rows), and the chunk's finite count, sum and sum of squares into ``valid``, ``total``,
        ``total_sq`` (B,) (written, not added).

        What the whole-block passes of the first implementation did (``np.where`` to float64, count, sums,
        ``clip(rint(x 32 / 2 pi))`` to int64, row offsets, boolean indexing, ``bincount``), with the same results
        in a few passes over a chunk in cache: non-finite values are zeroed through their bits (and left out of
        the count), one float64 copy gives the sums and then the bins in place - ``x 32 / 2 pi`` as before, the
        clip (at the same integers, so the same bins: rint is monotonic) only when a value is beyond +-16 cycles,
        rint and the row offsets in one addition (below) -, the histogram is counted over the bins the chunk uses
        (not all 1025); the zeros that stood for missing values are taken out of the centre bin by the caller.
        Bins taken from the float32 values instead would save a little more but move values within a rounding of
        a bin edge to the next bin, so they were not."""
        t, ok, mask, v, bins, row = views
        np.isfinite(t, out=ok)
        np.copyto(mask, ok)
        mask.sum(axis=1, out=valid)
        np.negative(mask, out=mask)  # every bit set where finite, none elsewhere
        bits = t.view(self.itype)
        np.bitwise_and(bits, mask, out=bits)  # NaN, inf -> +0.0
        # the extreme bins from the values before the float64 copy (x 32 / 2 pi is monotonic: the same numbers)
        hi, lo = float(t.max()) * _BINS_PER_RAD, float(t.min()) * _BINS_PER_RAD
        if v is not t:
            np.copyto(v, t)
        v.sum(axis=1, out=total)
        np.einsum("ij,ij->i", v, v, out=total_sq)
        np.multiply(v, _BINS_PER_RAD, out=v)
        if hi > _HALF:
            np.minimum(v, _HALF, out=v)
            hi, lo = _HALF, min(lo, _HALF)
        if lo < -_HALF:
            np.maximum(v, -_HALF, out=v)
            lo, hi = -_HALF, max(hi, -_HALF)
        lo, hi = int(round(lo)), int(round(hi))  # round: ties to even, as rint
        # rint and the row offsets in one addition: v + (1.5 2^52 + an even offset) is rounded to an integer as
        # rint rounds (to nearest, ties to even: an even offset keeps the parity), and the integer is the low
        # bits of the sum (bins lo .. hi of row r at columns r stride + base + lo ..)
        base = -lo + (lo & 1)
        stride = hi + base + 1 + ((hi + base + 1) & 1)
        np.add(v, row * float(stride) + (_MAGIC + base), out=v)
        np.subtract(v.view(np.int64), _MAGIC_BITS, out=bins)
        h = np.bincount(bins.ravel(), minlength=block.n * stride).reshape(block.n, stride)
        hist[block.rows, lo + _HALF : hi + _HALF + 1] += h[:, base + lo : base + hi + 1]

    def count_open(self, t, block, out):
        """Add to ``out`` (S,) int32 the loops of ``t`` (B, S) (radians, overwritten) that do not close within pi
        once ``block.shift`` (2 pi x the loops' integer cycles, or None) is subtracted."""
        if block.shift is not None:
            np.subtract(t, block.shift, out=t)
        np.abs(t, out=t)
        ok = self.views(*t.shape)[1]
        with np.errstate(invalid="ignore"):
            np.greater(t, math.pi, out=ok)
        out += ok.sum(axis=0, dtype=np.int32)


def _chunked_stats(stats, blocks, P, dtype, fill, threads):
    """Add to ``stats`` the loop phase that ``fill(t, block, p0, p1)`` writes chunk by chunk: every block over
    pixel chunks of :func:`_chunk_shape`, blocks shared among ``threads`` threads. The float sums of each chunk
    are kept per pixel chunk and summed in chunk order at the end, the integer counts added as they come: the
    result depends neither on the threads nor on their timing."""
    S, _ = _chunk_shape(P)
    starts = range(0, P, S)
    n_chunks = len(starts)
    L = stats["count"].shape[0]
    itype = np.dtype("i%d" % np.dtype(dtype).itemsize)
    valid = np.zeros((n_chunks, L), itype)
    total = np.zeros((n_chunks, L))
    total_sq = np.zeros((n_chunks, L))
    hist = stats["hist"]
    elements = max((b.n for b in blocks), default=1) * S

    def run(mine):
        work = _Work(elements, dtype)
        for j, p0 in enumerate(starts):
            p1 = min(P, p0 + S)
            for block in mine:
                views = work.views(block.n, p1 - p0)
                fill(views[0], block, p0, p1)
                r = block.rows
                work.add_stats(views, block, hist, valid[j, r], total[j, r], total_sq[j, r])

    _on_threads(run, blocks, threads)
    n = valid.sum(axis=0, dtype=np.int64)
    stats["count"] += n
    stats["hist"][:, _HALF] -= P - n  # the zeros that stood for missing values
    stats["sum"] += total.sum(axis=0)
    stats["sumsq"] += total_sq.sum(axis=0)
    return stats


def window_stats(loop_net, y, rad_per_unit=1.0, threads=1, stats=None):
    """The loop statistics (:func:`empty_stats`) of a window ``y`` (M, ...) in the files' units (NaN = no data):
    its loop phase times ``rad_per_unit`` added to ``stats`` (new when None), computed from the three rows of each
    loop in chunks of a few loops x :data:`CHUNK_PIXELS` pixels on ``threads`` threads.

    Same results as :func:`accumulate` of ``rad_per_unit x`` :meth:`LoopNetwork.loop_phase`: the loop phase is
    the product's bit for bit (:meth:`LoopNetwork.terms`), the counts and the histogram are therefore the same
    exactly (their bins are the same float64 operations) and the sums differ only in the order of float64
    additions (1e-16 relative). The result does not depend on ``threads``: threads take whole blocks of loops (a
    fixed decomposition, :meth:`LoopNetwork.blocks`) and write their rows only, and the sums of the pixel chunks
    are added in chunk order. What limits threads: about a third of one thread's time holds the GIL (sampled
    with py-spy on a frame window), most of it in ``np.bincount`` (numpy 1.24 finds the extremes and allocates
    before releasing it; counting pairs of values, or a radix sort, to shorten it cost more than it saved), and
    each GIL handoff between threads costs (see :data:`CHUNK_ELEMENTS`)."""
    M, L = loop_net.n_ifg, loop_net.n_loops
    y = np.asarray(y).reshape(M, -1)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    stats = empty_stats(L) if stats is None else stats
    P = y.shape[1]
    if L == 0 or P == 0:
        return stats
    _, first, _ = loop_net.terms()
    factor = first.astype(y.dtype) * y.dtype.type(rad_per_unit)
    blocks = _loop_blocks(loop_net, np.arange(L), _chunk_shape(P)[1], factor)
    return _chunked_stats(stats, blocks, P, y.dtype, lambda t, block, p0, p1: _phase(t, y, block, p0, p1), threads)


def _on_threads(run, blocks, threads):
    """``run(list of blocks)`` on ``threads`` threads, each with every ``threads``-th block."""
    threads = max(1, min(int(threads or 1), len(blocks)))
    if threads == 1:
        run(blocks)
        return
    with thread_pool(threads, "subsidence-loops") as pool:
        futures = [pool.submit(run, blocks[i::threads]) for i in range(threads)]
        for f in futures:
            result_of(f)


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
    Returns (rows, cols) int32. The loop phase is computed from the three rows in cache-sized chunks, with the
    values (and float32 operations) of the sparse product (:meth:`LoopNetwork.terms`).
    """
    shape = phase.shape[1:]
    loops = np.arange(loop_net.n_loops) if loops is None else np.asarray(loops, dtype=np.intp)
    P = int(np.prod(shape))
    out = np.zeros(P, dtype=np.int32)
    if len(loops) == 0 or P == 0:
        return out.reshape(shape)
    y = np.asarray(phase).reshape(loop_net.n_ifg, -1)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    S, B = _chunk_shape(P)
    _, first, _ = loop_net.terms()
    factor = first.astype(y.dtype)
    if rad_per_unit != 1.0:
        factor = factor * np.asarray(rad_per_unit, dtype=y.dtype)
    shift = None if cycles is None else (TWO_PI * np.asarray(cycles)).astype(y.dtype)
    blocks = _loop_blocks(loop_net, loops, B, factor, shift)
    work = _Work(B * S, y.dtype)
    for p0 in range(0, P, S):
        p1 = min(P, p0 + S)
        for block in blocks:
            t = work.views(block.n, p1 - p0)[0]
            _phase(t, y, block, p0, p1)
            work.count_open(t, block, out[p0:p1])
    return out.reshape(shape)
