"""Streaming SBAS inversion of a stack of interferogram GeoTIFFs (no QGIS imports).

Drives :mod:`.sbas` over windows of M single-band rasters under a memory cap (:mod:`.memory_plan`) for a
:class:`~.stack.PreparedStack`: with loop closure, GACOS or ramps a scan pass (:mod:`.corrections`: their
statistics and the automatic reference in one read of the stack; the LiCSBAS loop-closure rule may then
reject interferograms; the values it reads are kept in an anonymous scratch file beside the outputs, from which
the inversion pass reads them instead of decoding the files again), otherwise an automatic-reference pass when
no reference is given; then one pass
writing the time series (mm, one band per date), the velocity (mm/yr) and the quality layers, and the rows
of a network table. Outputs go through :class:`~subsidence_toolkit.core.io.rasters.RasterWriter`, so an
error or a cancellation leaves no output behind.

The window tasks (:func:`reference_block_task`, :func:`invert_block_task`) are pure and picklable: they
get a :class:`WindowTask` and the pass's :class:`TaskState` and may run on Dask workers.
"""

import contextlib
import copy
import math
import os
import shutil
import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple

import numpy as np

from ..io.blas import one_thread as one_blas_thread
from ..io.dates import format_date
from ..io.errors import Cancelled, TimeSeriesError
from ..io.rasters import RasterWriter, memory_available_bytes, open_raster, read_window
from ..io.tasks import map_threads, result_of, run_tasks_here_or, shielded, thread_pool
from . import corrections as corr
from . import deramp as dr
from . import gacos as gc
from . import loop_closure as lc
from . import unwrap_correction as uc
from .kernels import work_array
from .memory_plan import ALLOCATOR_SLACK, MIB, READ_BYTES_PX, plan_blocks, plan_stack
from .network import SbasNetwork, subnetwork
from .reference import auto_reference, better_candidate, pixel_centre, reference_values
from .sbas import (
    GAP_MIN_NORM,
    QUALITY_BANDS,
    SolverOptions,
    sbas_invert_block,
    solve_bytes_fixed,
    solve_bytes_per_pixel,
)
from .stack import (
    PreparedStack,
    ScratchFiles,
    ScratchStack,
    ScratchWriter,
    StackFiles,
    map_files_in_order,
    read_files_into,
    scratch_supported,
)
from .units import SENTINEL1_WAVELENGTH_M, UNITS_RADIANS, los_factor_mm, radians_per_mm
from .velocity import velocity_fit
from .weights import DEFAULT_LOOKS, WEIGHT_NONE


@dataclass(frozen=True)
class SbasOptions:
    """Options of :func:`invert_stack`.

    ``input_units`` of the interferograms (radians, m, mm) with the radar ``wavelength`` (m) and
    ``flip_sign`` give LOS mm; ``weighting``, ``looks``, ``min_coherence``, ``gap_handling``: see
    :class:`~.sbas.SolverOptions`; ``reference``: (row, col) pixel, or None for automatic (data in every
    interferogram and the highest mean coherence, or the lowest residual RMS when no coherence is
    given), with the median over a ``2 reference_half_window + 1`` square window; ``seasonal``: annual
    and semi-annual terms in the velocity fit; ``memory_mb``: cap of everything the run allocates (all
    threads together); ``threads``: threads of this process, per pass either windows computed at the same time
    (each planned under ``memory_mb / threads``) or, when a window of whole input tiles per thread does not fit
    that, threads reading and solving one window at a time under ``memory_mb`` (results do not depend on it).

    Corrections and network QC (:mod:`.corrections`): ``loop_closure`` 0 off, 1 report, 2 reject the bad
    interferograms (LiCSBAS step-12 rule, ``loop_threshold`` rad on the loop-phase RMS), 3 correct unwrapping
    errors per pixel by phase closure (:mod:`.unwrap_correction`, at most ``unwrap_max_patterns`` integer
    programs per sub-block) and reject only the bad interferograms that this cannot fix; ``deramp`` none /
    linear / quadratic surface per interferogram fitted outside ``deramp_mask`` (a raster on the grid, non-zero
    = excluded); ``gacos`` per-date ZTD files with the incidence from ``incidence`` (a raster read as
    ``incidence_type``: angle in degrees or U = cos) or the constant ``incidence_angle``; a correction that
    raises an interferogram's standard deviation by more than ``gacos_tolerance`` (share) is not applied;
    a date without a GACOS file is an error unless ``gacos_skip_missing`` (its interferograms are left out)."""

    input_units: str = UNITS_RADIANS
    wavelength: float = SENTINEL1_WAVELENGTH_M
    flip_sign: bool = False
    weighting: str = WEIGHT_NONE
    looks: Optional[float] = DEFAULT_LOOKS
    min_coherence: float = 0.0
    gap_handling: str = GAP_MIN_NORM
    reference: Optional[Tuple[int, int]] = None
    reference_half_window: int = 0
    seasonal: bool = False
    memory_mb: float = 512
    threads: int = 1
    loop_closure: int = lc.LOOP_OFF
    loop_threshold: float = lc.DEFAULT_LOOP_THRESHOLD
    unwrap_max_patterns: int = uc.DEFAULT_MAX_PATTERNS
    deramp: str = dr.DERAMP_NONE
    deramp_mask: Optional[str] = None
    gacos: Tuple[str, ...] = ()
    incidence: Optional[str] = None
    incidence_type: str = gc.INCIDENCE_ANGLE
    incidence_angle: float = gc.DEFAULT_INCIDENCE_ANGLE
    gacos_tolerance: float = gc.DEFAULT_TOLERANCE
    gacos_skip_missing: bool = False

    @property
    def weighted(self):
        return self.weighting != WEIGHT_NONE

    def solver(self):
        """The :class:`SolverOptions` of the inversion pass (in mm; float32 unless weighted)."""
        return SolverOptions(
            weighting=self.weighting,
            looks=self.looks,
            min_coherence=self.min_coherence,
            gap_handling=self.gap_handling,
            rad_per_unit=radians_per_mm(self.wavelength),
            dtype=np.float64 if self.weighted else np.float32,
        )


@dataclass(frozen=True)
class WindowTask:
    """One window of a pass: rows ``row0 .. row0 + nrows``, columns ``col0 .. col0 + ncols``, solved in
    sub-blocks of ``sub_rows`` rows."""

    row0: int
    nrows: int
    col0: int
    ncols: int
    sub_rows: int


class WindowBuffers:
    """Per-thread float32 window buffers reused by the windows of one pass: a new (M, rows, cols) buffer per window
    is page-faulted in by the kernel on every window (0.4-0.7 s of system time per 800 MB window of the frame
    benchmark). Each thread keeps one buffer per ``key``, as large as its largest window so far (the plan counts the
    largest window). The solver workspaces and the output windows of the inversion pass go from window to window
    through it as well (:meth:`take_workspace`, :meth:`take_outputs`). Freed with the object (the pass's state);
    pickles empty, so a Dask worker allocates its own."""

    def __init__(self):
        self._local = threading.local()
        self._workspaces = []  # solver workspaces handed back by the windows solved so far
        self._outputs = None  # the output windows of a written window (take_outputs)
        self._issued = []  # weak references to the sets take_outputs handed out: the only ones given back
        self._lock = threading.Lock()

    def get(self, key, shape):
        return work_array(self._local.__dict__, key, shape, np.float32)

    def take_workspace(self):
        """A solver workspace (the dict of :func:`~.kernels.work_array` buffers a sub-block solve reuses) for one
        thread of one window: one an earlier window handed back (:meth:`give_back`) with its caches emptied (what
        is not a work array, e.g. the unwrapping patterns, lives one window as before), else a new one.

        Why: a new workspace per window faults its buffers (about 10 float32 values per interferogram and pixel
        of a sub-block) in again on every window. The frame benchmark's inversion on two threads (40 windows)
        allocated 10.6 GB of new 2 MB pages against 4.7 GB on one thread (16 windows), on a VM where new memory
        costs about 2 s of CPU per GB. At most one workspace per thread solving at a time is kept: what the
        memory plan counts for every window (buffers and solve together)."""
        with self._lock:
            ws = self._workspaces.pop() if self._workspaces else {}
        for key in [k for k in ws if not isinstance(k, tuple)]:  # work arrays are keyed (name, dtype)
            del ws[key]
        return ws

    def give_back(self, workspaces):
        """Keep ``workspaces`` (from :meth:`take_workspace`) for the next windows."""
        with self._lock:
            self._workspaces.extend(workspaces)

    def take_outputs(self, shapes):
        """float32 arrays of ``shapes`` (the output windows of one window, every value to be written): views of the
        set a written window handed back (:meth:`give_back_outputs`) when each array fits in it, else new arrays.
        A window's outputs are new memory to the kernel every time otherwise: 3.3 GB per frame benchmark run."""
        sizes = [math.prod(s) for s in shapes]
        with self._lock:
            bufs, self._outputs = self._outputs, None
        if bufs is None or len(bufs) != len(sizes) or any(b.size < n for b, n in zip(bufs, sizes)):
            bufs = None  # (a smaller set is freed first)
            bufs = [np.empty(n, np.float32) for n in sizes]
            with self._lock:  # (the sets no longer alive dropped)
                self._issued = [refs for refs in self._issued if refs[0]() is not None]
                self._issued.append([weakref.ref(b) for b in bufs])
        return [b[:n].reshape(s) for b, n, s in zip(bufs, sizes, shapes)]

    def give_back_outputs(self, arrays):
        """Keep the output windows ``arrays`` (from :meth:`take_outputs`, written and no longer used) for the next
        window. One set at most: it stands for the set that window would allocate, so the outputs alive stay those
        the memory plan counts (the windows computing, and the one being written); a second one is freed. Arrays
        that are not views of a set this object handed out (e.g. views of a thread's :meth:`get` buffer, still in
        use) are never kept: the next window would write its outputs into them."""
        bases = [getattr(a, "base", None) for a in arrays]
        with self._lock:
            ours = any(len(refs) == len(bases) and all(r() is b for r, b in zip(refs, bases)) for refs in self._issued)
            if ours and self._outputs is None:
                self._outputs = bases

    def __getstate__(self):
        return {}

    def __setstate__(self, _):
        self.__init__()


@dataclass(frozen=True, eq=False)
class TaskState:
    """What every window task of one pass shares (sent to each Dask worker once).

    ``network`` of the used pairs; ``solver`` options of the pass; ``to_mm`` multiplier from input units
    to LOS mm; ``ifg_files``/``coh_files`` (:class:`StackFiles`, coherence None when not given);
    ``ref_vals`` per-interferogram reference values (inversion pass; None in the reference pass);
    ``seasonal`` velocity fit; ``sum_coherence``: add up the coherence per interferogram (when the
    reference pass did not); ``gdal_cache``: bytes of GDAL's block cache (optional); ``loop_net``: the loops
    of ``network`` whose unclosed 2 pi ambiguities are counted per pixel (None: no count, NaN band);
    ``loop_fix_ref``: per interferogram, the GACOS correction at the reference of those whose correction was
    not applied (subtracted for the loop count only, referenced); ``coherence_only``: the reference pass
    reads the coherence only and returns ranked candidates (:func:`reference_block_task`); ``unwrap``: the
    per-pixel unwrapping-error correction on the loops of ``loop_net`` (LOOP_CLOSURE 3), or None;
    ``inner_threads``: threads reading the files and solving the sub-blocks of one window of the inversion pass;
    ``buffers``: the :class:`WindowBuffers` the inversion pass's windows are read into (None: a new buffer each)."""

    network: SbasNetwork
    solver: SolverOptions
    to_mm: float
    ifg_files: Optional[StackFiles] = None
    coh_files: Optional[StackFiles] = None
    ref_vals: Optional[np.ndarray] = None
    seasonal: bool = False
    sum_coherence: bool = True
    gdal_cache: Optional[int] = None
    loop_net: Optional[lc.LoopNetwork] = None
    loop_fix_ref: Optional[np.ndarray] = None
    coherence_only: bool = False
    unwrap: Optional[uc.ClosureCorrector] = None
    inner_threads: int = 1
    buffers: Optional[WindowBuffers] = None

    @property
    def need_coherence(self):
        """The solve reads coherence (weights or a coherence threshold)."""
        return self.coh_files is not None and (self.solver.weighted or (self.solver.min_coherence or 0) > 0)


def _coherence_stats(k, coh, stats, disposable=False):
    """Add file ``k``'s coherence window to the sums. ``disposable``: ``coh`` is not needed afterwards and its
    non-finite values are zeroed in place (the same array, and so the same sum, as ``np.where(finite, coh, 0)``)."""
    cf = np.isfinite(coh)
    if disposable:
        stats["coh_n"][k] += int(np.count_nonzero(cf))
        np.copyto(coh, 0, where=np.logical_not(cf, out=cf))
        stats["coh_sum"][k] += float(coh.sum(dtype=np.float64))
        return
    stats["coh_sum"][k] += float(np.where(cf, coh, 0).sum(dtype=np.float64))
    stats["coh_n"][k] += int(cf.sum())


def _worker_cache(state):
    """Give GDAL's block cache the size chosen under the memory cap (a no-op in the driving process,
    which set it already; on a Dask worker the cap then holds there too)."""
    if state.gdal_cache:
        from osgeo import gdal

        if gdal.GetCacheMax() != state.gdal_cache:
            gdal.SetCacheMax(int(state.gdal_cache))


# Progress/cancel hook of the local run: set by invert_stack for the thread that runs the tasks here, so
# a window of many sub-blocks still reports and cancels per sub-block; in the window threads of the run
# (_pass_runner) a cancel check only; a Dask worker has none.
_LOCAL = threading.local()
REFERENCE_TICK_FILES = 32  # the streamed reference search reports (and checks cancel) every this many files


def _sub_tick():
    fn = getattr(_LOCAL, "tick", None)
    if fn is not None:
        fn()


def _checking_cancel(task_fn, is_canceled):
    """``task_fn`` run in a window thread of this process with :func:`_sub_tick` checking ``is_canceled`` (raising
    :class:`Cancelled`): a cancel, or a SIGTERM (which cancels while the runner waits), stops the windows in flight
    after their current sub-block or 32 files instead of at their end (seconds each on a frame). ``is_canceled``
    None: ``task_fn`` itself."""
    if is_canceled is None:
        return task_fn

    def check():
        if is_canceled():
            raise Cancelled()

    def run(task, *shared):
        _LOCAL.tick = check
        try:
            return task_fn(task, *shared)
        finally:
            _LOCAL.tick = None

    run.__wrapped__ = task_fn
    return run


# --------------------------------------------------------------------------- window tasks
def _coherence_score(task, state):
    """Reference score of a window with coherence: mean coherence of the valid observations, streamed one
    file at a time. Returns (valid count, score, coherence sums per interferogram). With
    ``state.coherence_only`` the interferograms are not read: an observation counts as valid when its
    coherence is (finite, at least the minimum coherence); a pixel valid in every interferogram then has the
    same score as with the phase read, and is a true candidate when its phase has data too (checked for the
    best candidates only, :func:`_first_with_phase`)."""
    r0, h, c0, w = task.row0, task.nrows, task.col0, task.ncols
    M = state.network.n_ifg
    min_coherence = state.solver.min_coherence
    # running sums over the interferograms, in their order: the same float32 sums as
    # np.where(valid, coh, 0).sum(axis=0) over the stacked window; counts in uint16 (the fastest to add to)
    nvalid = np.zeros((h, w), dtype=np.uint16 if M < 2**16 else np.intp)
    csum = np.zeros((h, w), dtype=np.float32)
    stats = {"coh_sum": np.zeros(M), "coh_n": np.zeros(M, dtype=np.int64)}
    files = state.coh_files if state.coherence_only else state.ifg_files
    t = max(1, int(state.inner_threads))  # files decoded ahead by other threads, summed here in file order
    read = lambda k: files.read_one(k, r0, h, c0, w)  # noqa: E731
    if hasattr(files, "read_into"):  # the file being summed + t decoded ahead: a ring of t + 1 reused buffers
        ring = [np.empty((h, w), dtype=np.float32) for _ in range(t + 1)]
        read = lambda k: files.read_into(k, r0, h, c0, w, ring[k % (t + 1)])  # noqa: E731
    for k, phase in map_files_in_order(read, M, t):
        if state.coherence_only:
            # coh (a read buffer or read_one's own array) is zeroed where not finite, summed for the statistics,
            # then zeroed where below the minimum: it is then np.where(valid, coh, 0), added without a mask
            coh, phase = phase, None
            invalid = np.isfinite(coh)
            stats["coh_n"][k] += int(np.count_nonzero(invalid))
            np.logical_not(invalid, out=invalid)
            np.copyto(coh, 0, where=invalid)
            stats["coh_sum"][k] += float(coh.sum(dtype=np.float64))  # = np.where(finite, coh, 0).sum(...)
            if min_coherence and min_coherence > 0:
                invalid = coh < min_coherence  # = ~(finite & coh >= min): the zeros (no data) are below
                np.copyto(coh, 0, where=invalid)
            nvalid += np.logical_not(invalid, out=invalid)
            csum += coh
            del coh, invalid
        else:
            coh = state.coh_files.read_one(k, r0, h, c0, w)
            valid = np.isfinite(phase)
            if min_coherence and min_coherence > 0:
                valid &= coh >= min_coherence
            nvalid += valid
            np.add(csum, coh, out=csum, where=valid)  # = csum += np.where(valid, coh, 0) (csum is never -0)
            _coherence_stats(k, coh, stats, disposable=True)  # coh: read_one's own array
            del phase, coh, valid
        if (k + 1) % REFERENCE_TICK_FILES == 0 or k + 1 == M:
            _sub_tick()
    nvalid = nvalid.astype(np.intp)  # the score's division as with intp counts (float64)
    with np.errstate(all="ignore"):
        score = csum / np.maximum(nvalid, 1)
    return nvalid, score, stats


def _residual_score(task, state):
    """Reference score of a window without coherence: residual RMS (mm) of an unweighted inversion in
    sub-blocks. Returns (valid count, score)."""
    r0, h, c0, w = task.row0, task.nrows, task.col0, task.ncols
    phase = state.ifg_files.read(r0, h, c0, w)
    nvalid = np.zeros((h, w), dtype=np.intp)
    for k in range(state.network.n_ifg):
        nvalid += np.isfinite(phase[k])
    score = np.empty((h, w))
    s = task.sub_rows
    for a in range(0, h, s):
        b = min(h, a + s)
        sub = phase[:, a:b]
        np.copyto(sub, np.nan, where=~np.isfinite(sub))
        _, q = sbas_invert_block(sub * state.to_mm, state.network, rad_per_unit=state.solver.rad_per_unit)
        score[a:b] = q["residual_rms"]
        del q
        _sub_tick()
    return nvalid, score


def reference_block_task(task, state):
    """Pure window task of the automatic reference search (picklable, e.g. for Dask).

    ``task``: :class:`WindowTask`; ``state``: :class:`TaskState` of the reference pass.
    Returns ``{"any_data": bool, "best": (score, row, col) or None}`` (the window's best candidate: highest
    mean coherence, or the lowest residual RMS without coherence, among pixels with data in every
    interferogram; first in row order on ties) and, with coherence, the per-interferogram coherence sums
    of the window (``coh_sum``, ``coh_n``). With coherence the files are streamed one at a time (a few
    bytes per pixel); without, the window is inverted in sub-blocks of ``sub_rows`` rows."""
    _worker_cache(state)
    if state.coh_files is not None:
        nvalid, score, stats = _coherence_score(task, state)
        higher_is_better = True
    else:
        nvalid, score = _residual_score(task, state)
        stats = {}
        higher_is_better = False
    rc = auto_reference(nvalid, state.network.n_ifg, score, higher_is_better=higher_is_better)
    out = {
        "any_data": bool(nvalid.max() > 0),
        "best": None if rc is None else (score[rc], task.row0 + rc[0], task.col0 + rc[1]),
    }
    if state.coherence_only:
        out["candidates"] = _ranked_candidates(nvalid, score, state.network.n_ifg, task)
    out.update(stats)
    return out


#: candidates of the coherence-only reference pass checked against the phase before the full pass is run
REFERENCE_CANDIDATES = 64


def _ranked_candidates(nvalid, score, n_ifg, task, n=REFERENCE_CANDIDATES):
    """The window's ``n`` best candidates [(score, row, col)], highest score first, then row order."""
    cand = (nvalid == n_ifg) & np.isfinite(score)
    rows, cols = np.nonzero(cand)
    if rows.size == 0:
        return []
    sc = score[rows, cols]
    order = np.lexsort((cols, rows, -sc.astype(np.float64)))[:n]
    return [(sc[j], task.row0 + int(rows[j]), task.col0 + int(cols[j])) for j in order]


def _first_with_phase(ifg_files, candidates, threads=1):
    """Index of the first candidate (row, col) whose phase has data in every interferogram, or None. The
    candidates are checked in rank order in batches of 1, 7, 56, ... (usually the first is the one); per
    batch each file is opened once and read at the batch's pixels only (a few tiles), ``threads`` files at
    a time."""
    start, size = 0, 1
    while start < len(candidates):
        batch = candidates[start : start + size]
        ok = np.ones(len(batch), dtype=bool)
        points = [(r, c) for _, r, c in batch]
        checks = map_files_in_order(lambda k: ifg_files.valid_at(k, points), len(ifg_files.paths), threads)
        for k, valid in checks:
            ok &= valid
            if not ok.any():
                checks.close()
                break
            if (k + 1) % REFERENCE_TICK_FILES == 0:
                _sub_tick()
        if ok.any():
            return start + int(np.argmax(ok))
        start += size
        size = 7 * start
    return None


def _solve_sub_block(obs, coh, state, stats, workspace=None, loop_fix=None):
    """Invert one sub-block (views into the window buffers; ``obs`` is overwritten): returns the float32
    time series, velocity and quality blocks and adds the residual statistics to ``stats``. ``workspace``:
    the solver's work arrays, reused by the next sub-block (and, through the pass's :class:`WindowBuffers`, by the
    next window). Its memory is modelled by :data:`.sbas.SOLVE_BYTES`. ``loop_fix``: (indices, corrections in
    input units) of the interferograms whose GACOS correction was not applied, subtracted for the loop count only
    (a per-date delay closes in loops).
    With ``state.unwrap`` the unwrapping errors found by phase closure are subtracted from ``obs`` first (and
    counted in ``stats``); n_loop_errors then counts what is left."""
    net = state.network
    obs -= state.ref_vals[:, None, None].astype(np.float32)
    obs *= np.float32(state.to_mm)
    n_loop_err = None
    if state.loop_net is not None:
        # referenced loop phase (LiCSBAS n_loop_err), dropped observations excluded
        lp_obs = obs
        if coh is not None and (state.solver.min_coherence or 0) > 0:
            with np.errstate(invalid="ignore"):
                lp_obs = np.where(coh >= state.solver.min_coherence, obs, np.float32(np.nan))
        if loop_fix is not None:
            lp_obs = lp_obs.copy() if lp_obs is obs else lp_obs
            lp_obs[loop_fix[0]] -= loop_fix[1] * np.float32(state.to_mm)
        if state.unwrap is not None:
            n_fixed = _correct_unwrapping(obs, lp_obs, state, stats, workspace)
        n_loop_err = lc.count_loop_errors(state.loop_net, lp_obs, rad_per_unit=state.solver.rad_per_unit)
        del lp_obs
    ts, q = sbas_invert_block(obs, net, coherence_block=coh, options=state.solver, workspace=workspace, ifg_stats=True)
    vel, vstd = velocity_fit(ts, net.tyears, state.seasonal)
    has = q["n_ifg_used"] > 0
    # per-interferogram residual statistics for the network table
    stats["sum_e2"] += q["ifg_sum_e2"]
    stats["n"] += q["ifg_n"]
    stats["n_data"] += int(has.sum())
    stats["n_gap"] += int((q["n_gaps"] > 0).sum())
    gaps = q["n_gaps"].astype(np.float32)
    gaps[~has] = np.nan
    nused = q["n_ifg_used"].astype(np.float32)
    nused[~has] = np.nan
    if n_loop_err is None:
        loop_err = np.full(has.shape, np.nan, dtype=np.float32)
    else:
        loop_err = n_loop_err.astype(np.float32)
        loop_err[~has] = np.nan
    kept = q["kept_first_date"].astype(np.float32)
    kept[~has] = np.nan
    if state.unwrap is None:
        unwrap_fixed = np.full(has.shape, np.nan, dtype=np.float32)
    else:
        unwrap_fixed = n_fixed.astype(np.float32)
        unwrap_fixed[~has] = np.nan
    quality = (q["temporal_coherence"], nused, q["residual_rms"], vstd, gaps, loop_err, kept, unwrap_fixed)
    return ts, vel, quality


def _correct_unwrapping(obs, lp_obs, state, stats, workspace):
    """Subtract the unwrapping errors that phase closure finds in the loop phase of ``lp_obs`` (mm) from
    ``obs`` and ``lp_obs`` (in place); add the counts to ``stats``. Returns the interferograms corrected per
    pixel (rows, cols)."""
    M = obs.shape[0]
    rpu = state.solver.rad_per_unit
    cache = workspace.setdefault("unwrap_patterns", {}) if workspace is not None else None
    fix = state.unwrap.correct(lp_obs.reshape(M, -1), rpu, cache, shape=obs.shape[1:])
    mm_per_cycle = uc.TWO_PI / rpu
    fix.subtract(obs, mm_per_cycle)
    if lp_obs is not obs:
        fix.subtract(lp_obs, mm_per_cycle)
    stats["unwrap_ifg_corrected"] += fix.ifg_corrected
    stats["unwrap_ifg_ambiguous"] += fix.ifg_ambiguous
    stats["unwrap_counts"] += fix.counts
    return fix.n_corrected.reshape(obs.shape[1:])


def _read_window(task, state, stats):
    """The window of every interferogram and, when the solve needs it, of every coherence file (adding
    the coherence sums to ``stats`` when asked), ``state.inner_threads`` files at a time. Returns (phase,
    coherence or None)."""
    r0, h, c0, w = task.row0, task.nrows, task.col0, task.ncols
    cohs = state.coh_files
    t = max(1, int(state.inner_threads))
    cf = state.ifg_files
    shape = (len(cf.paths), h, w)
    out = None if state.buffers is None else state.buffers.get("phase", shape)
    if t > 1 and isinstance(cf, corr.CorrectedFiles):
        phase = cf.read(r0, h, c0, w, out=out, threads=t)
    else:
        phase = cf.read(r0, h, c0, w, out=out)
    coh = None
    if state.need_coherence:
        out = np.empty_like(phase) if state.buffers is None else state.buffers.get("coherence", shape)
        coh = read_files_into(cohs, out, r0, h, c0, w, t)
        if "coh_sum" in stats:
            for k in range(state.network.n_ifg):
                _coherence_stats(k, coh[k], stats)
    elif "coh_sum" in stats:
        for k, c in cohs.iter_window(r0, h, c0, w):
            _coherence_stats(k, c, stats, disposable=True)  # c: read_one's own array
            del c
    _release_read(task, state)
    return phase, coh


def _release_read(task, state):
    """The inversion pass reads each window of the scan's copy once: its disk blocks are freed as soon as it is
    read (:meth:`~.stack.ScratchStack.release`, in the background), not all at the end of the run."""
    for files in (state.ifg_files, state.coh_files):
        scratch = getattr(getattr(files, "files", files), "scratch", None)
        if scratch is not None:
            scratch.release(task.row0, task.nrows, task.col0, task.ncols)  # every raster's slot
            return


def _solve_window(phase, coh, fix, task, state, stats):
    """Solve the window's sub-blocks of ``task.sub_rows`` rows (``state.inner_threads`` at a time, each thread
    with its own workspace; their statistics added in sub-block order, as one thread adds them). Returns the
    float32 output windows (ts, vel, quality)."""
    h, w = task.nrows, task.ncols
    kept = state.buffers
    shapes = [(state.network.n_dates, h, w), (1, h, w), (len(QUALITY_BANDS), h, w)]
    if kept is None:
        out_ts, out_vel, out_q = (np.empty(s, dtype=np.float32) for s in shapes)
    else:
        out_ts, out_vel, out_q = kept.take_outputs(shapes)
    blocks = [(a, min(h, a + task.sub_rows)) for a in range(0, h, task.sub_rows)]
    workspaces = {}  # thread -> its workspace in this window (one an earlier window used, through ``kept``)

    def workspace():
        ws = workspaces.get(threading.get_ident())
        if ws is None:
            ws = workspaces[threading.get_ident()] = {} if kept is None else kept.take_workspace()
        return ws

    def solve(ab, sub_stats):
        a, b = ab
        ts, vel, quality = _solve_sub_block(
            phase[:, a:b],
            None if coh is None else coh[:, a:b],
            state,
            sub_stats,
            workspace(),
            None if fix is None else (fix[0], fix[1][:, a:b]),
        )
        out_ts[:, a:b] = ts
        out_vel[0, a:b] = vel
        for i, qb in enumerate(quality):
            out_q[i, a:b] = qb
        return sub_stats

    try:
        _solve_blocks(solve, blocks, stats, max(1, int(state.inner_threads)))
    finally:  # (the threads of the window have stopped)
        if kept is not None:
            kept.give_back(workspaces.values())
    return out_ts, out_vel, out_q


def _solve_blocks(solve, blocks, stats, t):
    """``solve(block, stats)`` of every sub-block, ``t`` at a time; their statistics added to ``stats`` in
    sub-block order."""
    if t == 1 or len(blocks) == 1:
        for ab in blocks:
            solve(ab, stats)
            _sub_tick()
        return
    # per sub-block sums of what _solve_sub_block adds (residuals, pixel counts, unwrapping corrections)
    zero = {
        k: np.zeros_like(v) if isinstance(v, np.ndarray) else 0 for k, v in stats.items() if not k.startswith("coh_")
    }
    with thread_pool(t, "subsidence-solve") as pool:
        futures = [
            pool.submit(solve, ab, {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in zero.items()})
            for ab in blocks
        ]
        try:
            for fut in futures:  # in sub-block order: the sums as one thread makes them
                for k, v in result_of(fut).items():
                    stats[k] += v
                _sub_tick()
        except BaseException:
            with shielded():
                for fut in futures:
                    fut.cancel()
            raise


def invert_block_task(task, state):
    """Pure window task of the SBAS inversion (picklable, e.g. for Dask): read the window of every
    interferogram (and coherence when the solve needs it) one file at a time, then reference, invert and
    fit the velocity in sub-blocks of ``task.sub_rows`` rows.

    ``task``: :class:`WindowTask`; ``state``: :class:`TaskState` of the inversion pass. Returns the float32
    output windows ``ts`` (N, rows, cols), ``vel`` (1, ...), ``quality`` (5, ...) and the window's partial
    network statistics (``sum_e2``, ``n``, ``coh_sum``, ``coh_n`` per interferogram, ``n_data``, ``n_gap``
    pixels)."""
    _worker_cache(state)
    h, w = task.nrows, task.ncols
    M = state.network.n_ifg
    stats = {"sum_e2": np.zeros(M), "n": np.zeros(M, dtype=np.int64), "n_data": 0, "n_gap": 0}
    if state.unwrap is not None:
        stats.update(_unwrap_totals(M))
    if state.coh_files is not None and state.sum_coherence:
        stats["coh_sum"] = np.zeros(M)
        stats["coh_n"] = np.zeros(M, dtype=np.int64)
    t0 = time.perf_counter()
    phase, coh = _read_window(task, state, stats)
    t_read = time.perf_counter() - t0
    fix = None
    cf = state.ifg_files
    if state.loop_net is not None and getattr(cf, "gacos", None) is not None and not cf.gacos_apply.all():
        skipped = np.flatnonzero(~cf.gacos_apply)
        fix = (
            skipped,
            np.stack(
                [
                    cf.gacos_correction(k, task.row0, h, task.col0, w) - np.float32(state.loop_fix_ref[k])
                    for k in skipped
                ]
            ),
        )
    t0 = time.perf_counter()
    out_ts, out_vel, out_q = _solve_window(phase, coh, fix, task, state, stats)
    del phase, coh
    stats.update(ts=out_ts, vel=out_vel, quality=out_q, seconds_read=t_read, seconds_solve=time.perf_counter() - t0)
    return stats


def _unwrap_totals(M):
    """Zero sums of the unwrapping-error correction: pixels corrected / left ambiguous per interferogram and
    the pixel counts of :data:`.unwrap_correction.COUNT_NAMES`."""
    return {
        "unwrap_ifg_corrected": np.zeros(M, dtype=np.int64),
        "unwrap_ifg_ambiguous": np.zeros(M, dtype=np.int64),
        "unwrap_counts": np.zeros(len(uc.COUNT_NAMES), dtype=np.int64),
    }


def reference_window_values(ifg_files, row, col, half, grid, names):
    """Median of each interferogram over the (2 half + 1)^2 window at (row, col), clipped to the raster."""
    r0, r1 = max(0, row - half), min(grid.ysize, row + half + 1)
    c0, c1 = max(0, col - half), min(grid.xsize, col + half + 1)
    vals = np.stack([a.astype(np.float64).ravel() for _, a in ifg_files.iter_window(r0, r1 - r0, c0, c1 - c0)])
    ref, missing = reference_values(vals)
    if missing.any():
        bad = [names[k] for k in np.flatnonzero(missing)]
        raise TimeSeriesError(
            "the reference pixel (row %d, col %d, window %dx%d) is NoData in %s"
            % (row, col, r1 - r0, c1 - c0, ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
        )
    return ref


def corrected_reference_values(cf, row, col, half, grid, names):
    """:func:`reference_window_values` of the corrected interferograms (``cf``: a
    :class:`~.corrections.CorrectedFiles`) and of the loop closure's version of them (GACOS on every
    interferogram, no ramp), from one read of the window."""
    r0, r1 = max(0, row - half), min(grid.ysize, row + half + 1)
    c0, c1 = max(0, col - half), min(grid.xsize, col + half + 1)
    inv, loop = [], []
    for k, a in cf.files.iter_window(r0, r1 - r0, c0, c1 - c0):
        a = a.astype(np.float64)
        if cf.gacos is not None:
            g = cf.gacos_correction(k, r0, r1 - r0, c0, c1 - c0)
            loop.append((a - g).ravel())
            if cf.gacos_apply[k]:
                a = a - g
        else:
            loop.append(a.ravel())
        ramp = cf.ramp_window(k, r0, r1 - r0, c0, c1 - c0)
        inv.append((a - ramp if ramp is not None else a).ravel())
    out = []
    for vals in (np.stack(inv), np.stack(loop)):
        ref, missing = reference_values(vals)
        if missing.any():
            bad = [names[k] for k in np.flatnonzero(missing)]
            raise TimeSeriesError(
                "the reference pixel (row %d, col %d, window %dx%d) is NoData in %s"
                % (row, col, r1 - r0, c1 - c0, ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
            )
        out.append(ref)
    return out[0], out[1]


# --------------------------------------------------------------------------- driver
@dataclass(frozen=True)
class RunHooks:
    """Callbacks of a run: ``progress(fraction)``, ``is_canceled()`` (True -> :class:`Cancelled`),
    ``log(message)`` and ``run_tasks(task_fn, tasks, state)``, an optional runner of the window tasks
    yielding ``(index, result)`` in any order (e.g. Dask through :func:`~..io.tasks.map_blocks`)."""

    progress: Optional[Callable] = None
    is_canceled: Optional[Callable] = None
    log: Optional[Callable] = None
    run_tasks: Optional[Callable] = None

    def say(self, message):
        if self.log is not None:
            self.log(message)


class _Progress:
    """Progress over the sub-blocks of every pass: reported per sub-block where the tasks run here, per
    finished window otherwise (Dask reports no sub-blocks); checks cancel at each report."""

    def __init__(self, plans, n_ifg, streamed_reference, hooks):
        def n_sub(key, plan):
            if key == "scan":
                return [-(-n_ifg // REFERENCE_TICK_FILES) + 1] * len(plan["windows"])
            if key == "reference" and streamed_reference:
                return [-(-n_ifg // REFERENCE_TICK_FILES)] * len(plan["windows"])
            return [-(-w[1] // plan["sub_rows"]) for w in plan["windows"]]

        self.steps = {k: n_sub(k, p) for k, p in plans.items()}
        self.n_steps = sum(sum(v) for v in self.steps.values())
        self.sub_blocks = 0
        self.windows = 0
        self.hooks = hooks

    def report(self):
        if self.hooks.progress is not None:
            self.hooks.progress(min(max(self.sub_blocks, self.windows), self.n_steps) / max(1, self.n_steps))
        if self.hooks.is_canceled is not None and self.hooks.is_canceled():
            raise Cancelled()

    def tick(self):
        self.sub_blocks += 1
        self.report()

    def window_done(self, key, i):
        self.windows += self.steps[key][i]
        self.report()

    @contextlib.contextmanager
    def timed(self, key):
        """Log the wall and CPU (process, every thread) time of pass ``key`` when it ends without an error."""
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        self.hooks.say("%s pass took %.1f s (CPU %.1f s)" % (key, time.perf_counter() - t0, time.process_time() - c0))


def _log_plans(plans, hooks):
    for key in ("scan", "reference", "invert"):
        if key in plans:
            p = plans[key]
            hooks.say(
                "%s pass: %d windows of up to %d x %d px, sub-blocks of %d rows; planned %.0f MB of the %g MB "
                "cap (GDAL cache %.0f, buffers %.0f, reading %.0f, solve %.0f; %.0f %% left for allocator "
                "slack)%s"
                % (
                    key,
                    len(p["windows"]),
                    max(w[1] for w in p["windows"]),
                    max(w[3] for w in p["windows"]),
                    p["sub_rows"],
                    p["total"] / MIB,
                    p["memory_mb"],
                    p["parts"]["cache"] / MIB,
                    p["parts"]["buffers"] / MIB,
                    p["parts"]["read"] / MIB,
                    p["parts"]["solve"] / MIB,
                    100 * ALLOCATOR_SLACK,
                    "" if p["fits"] else " (the cap is below the smallest plan)",
                )
            )


def _tasks(plan):
    return [WindowTask(wd[0], wd[1], wd[2], wd[3], plan["sub_rows"]) for wd in plan["windows"]]


def _find_reference(state, plan, progress):
    """The automatic reference pass. Returns ((row, col), coherence sums per interferogram or None).

    With coherence, a first pass reads the coherence only (half the data) and ranks the pixels whose
    coherence is valid in every interferogram; the phase is then read at the best
    :data:`REFERENCE_CANDIDATES` only, and the first with data in every interferogram is the pixel the full
    pass would choose (same score, same order). When none of them has, the full pass (phase + coherence)
    runs."""
    found = {}
    hooks = progress.hooks
    state = replace(state, inner_threads=plan.get("threads_in_window", 1))
    if state.coh_files is not None:
        fast = replace(state, coherence_only=True)
        for i, res in run_tasks_here_or(reference_block_task, _tasks(plan), _pass_runner(hooks, plan), fast):
            found[i] = res
            progress.window_done("reference", i)
        ranked = sorted(
            (c for i in sorted(found) for c in found[i]["candidates"]), key=lambda c: (-float(c[0]), c[1], c[2])
        )[:REFERENCE_CANDIDATES]
        j = _first_with_phase(state.ifg_files, ranked, state.inner_threads) if ranked else None
        if j is not None:
            best = ranked[j]
            hooks.say(
                "automatic reference pixel: row %d, col %d (data in all %d interferograms, highest mean "
                "coherence %.3f; found from the coherence, phase checked at %d candidates)"
                % (best[1], best[2], state.network.n_ifg, best[0], j + 1)
            )
            M = state.network.n_ifg
            coh_stats = {"coh_sum": np.zeros(M), "coh_n": np.zeros(M, dtype=np.int64)}
            for i in sorted(found):
                coh_stats["coh_sum"] += found[i]["coh_sum"]
                coh_stats["coh_n"] += found[i]["coh_n"]
            return (best[1], best[2]), coh_stats
        hooks.say(
            "none of the %d best pixels by coherence has phase in every interferogram: reading the phase "
            "too" % len(ranked)
        )
        found = {}
    for i, res in run_tasks_here_or(reference_block_task, _tasks(plan), _pass_runner(hooks, plan), state):
        found[i] = res
        progress.window_done("reference", i)
    best = None  # (score, row, col)
    any_data = False
    with_coh = state.coh_files is not None
    for i in sorted(found):  # window order; ties go to the first pixel in row order
        any_data = any_data or found[i]["any_data"]
        c = found[i]["best"]
        if c is not None and better_candidate(c, best, with_coh):
            best = c
    coh_stats = None
    if with_coh:
        M = state.network.n_ifg
        coh_stats = {"coh_sum": np.zeros(M), "coh_n": np.zeros(M, dtype=np.int64)}
        for i in sorted(found):
            coh_stats["coh_sum"] += found[i]["coh_sum"]
            coh_stats["coh_n"] += found[i]["coh_n"]
    names = state.network.names
    if not any_data:
        raise TimeSeriesError("every pixel is NoData in every interferogram (%s ...)" % names[0])
    if best is None and coh_stats is not None and (coh_stats["coh_n"] == 0).any():
        empty = [state.coh_files.paths[k] for k in np.flatnonzero(coh_stats["coh_n"] == 0)]
        raise TimeSeriesError(
            "coherence %s has no valid pixel (all NoData)%s: fix or leave out that coherence "
            "file" % (empty[0], " (and %d more)" % (len(empty) - 1) if len(empty) > 1 else "")
        )
    if best is None:
        raise TimeSeriesError("no pixel has data in every interferogram: give a reference point")
    how = "highest mean coherence %.3f" % best[0] if with_coh else "lowest residual RMS %.3f mm" % best[0]
    hooks.say(
        "automatic reference pixel: row %d, col %d (data in all %d interferograms, %s)"
        % (best[1], best[2], state.network.n_ifg, how)
    )
    return (best[1], best[2]), coh_stats


# --------------------------------------------------------------------------- corrections and loop closure
def restrict_stack(stack, keep, reasons):
    """The stack without the used interferograms where ``keep`` (M,) is False; ``reasons``: one string or
    one per used interferogram (recorded for the left-out ones)."""
    keep = np.asarray(keep, dtype=bool)
    idx_used = np.flatnonzero(stack.used)
    used = stack.used.copy()
    why = list(stack.reasons)
    for j, k in enumerate(idx_used):
        if not keep[j]:
            used[k] = False
            why[k] = reasons if isinstance(reasons, str) else reasons[j]
    if not used.any():
        raise TimeSeriesError("no interferogram left (%s)" % "; ".join(sorted(set(r for r in why if r))))
    net = subnetwork(stack.network_all, used)
    coh = [c for c, kp in zip(stack.coherence_paths, keep) if kp] if stack.coherence_paths else None
    return replace(
        stack,
        used=used,
        reasons=why,
        network=net,
        ifg_paths=[stack.all_paths[k] for k in np.flatnonzero(used)],
        coherence_paths=coh,
    )


def _gacos_setup(stack, options, hooks):
    """GACOS files matched to the dates (a missing date: error, or its interferograms left out) and the
    incidence. Returns (stack, (GacosSet, Incidence) or None)."""
    if not options.gacos:
        return stack, None
    gset = gc.GacosSet(options.gacos, stack.grid)
    net = stack.network
    missing = gset.missing(net.dates)
    if missing:
        labels = ", ".join(format_date(d) for d in missing)
        if not options.gacos_skip_missing:
            raise TimeSeriesError(
                "no GACOS file for %s (give a YYYYMMDD.ztd or .ztd.tif for every acquisition "
                "date, or leave out the interferograms of those dates)" % labels
            )
        miss = set(missing)
        dates = net.dates
        keep = np.array([dates[a] not in miss and dates[b] not in miss for a, b in zip(net.i1, net.i2)])
        why = [
            "no GACOS file for %s" % ", ".join(format_date(d) for d in (dates[a], dates[b]) if d in miss)
            for a, b in zip(net.i1, net.i2)
        ]
        hooks.say("no GACOS file for %s: %d interferogram(s) left out" % (labels, int((~keep).sum())))
        stack = restrict_stack(stack, keep, why)
    incidence = gc.Incidence(options.incidence, options.incidence_type, options.incidence_angle)
    hooks.say("GACOS: %d ZTD files, %s" % (len(gset.by_date), incidence.describe()))
    return stack, (gset, incidence)


def _corrected_files(stack, gacos_parts, to_mm, options):
    net = stack.network
    gset, inc = gacos_parts if gacos_parts else (None, None)
    return corr.CorrectedFiles(
        stack.ifg_files(),
        net.dates,
        np.where(net.sign > 0, net.i1, net.i2),
        np.where(net.sign > 0, net.i2, net.i1),
        stack.grid,
        gset,
        inc,
        gc.metres_to_units(to_mm) if gset is not None else None,
        ramp_mode=options.deramp,
    )


def _gacos_bytes(stack, gacos_parts):
    """Per-pixel bytes of GACOS delays in a window (every date, float32) and their resampling."""
    return (corr.GACOS_BYTES_PER_DATE * stack.network.n_dates + corr.GACOS_SAMPLE_BYTES) if gacos_parts else 0


def _scan_needed(options):
    return options.loop_closure != lc.LOOP_OFF or bool(options.gacos) or options.deramp != dr.DERAMP_NONE


def plan_scan(stack, options, gacos_parts, memory_mb=None):
    """Plan of the scan pass (:func:`.corrections.scan_block_task`): one read of every interferogram (and
    coherence) per window; the window of every interferogram is kept when the loops or the residual-based
    reference need it."""
    grid, net = stack.grid, stack.network
    M, N = net.n_ifg, net.n_dates
    bsize, sample = stack.ifg_files().block_size()
    residual_ref = options.reference is None and not stack.coherence_paths
    loops = options.loop_closure != lc.LOOP_OFF
    p = dr.N_TERMS.get(options.deramp, 0)
    per_px = (
        (4 * M if (loops or residual_ref) else 0)
        + 4 * SCRATCH_QUEUE_FILES / _threads(options)  # this window's share of the scratch writer's queue
        + _gacos_bytes(stack, gacos_parts)
        + 2 * READ_BYTES_PX
        + 4
        + 4
        + 16
        + 2
        + 4
        + 8 * p
        + 8 * p * p
        + 8
        + 4
        + 8
    )
    solve_px, fixed = 0, 0
    if residual_ref:
        solve_px, fixed = solve_bytes_per_pixel(M, N, "float64"), solve_bytes_fixed(M, N)
    if loops:
        fixed += corr.LOOP_CHUNK_BYTES
    return plan_blocks(
        grid.ysize,
        grid.xsize,
        bsize,
        per_px,
        solve_px,
        options.memory_mb / _threads(options) if memory_mb is None else memory_mb,
        in_sample_bytes=sample,
        solve_fixed=fixed,
    )


def _scan_pass(cf, stack, options, plan, progress, to_mm, loop_net, reference_kind, scratch=None):
    """The scan pass; returns the summed statistics, ``best`` reference candidate and ``any_data``. With a
    ``scratch`` (:class:`~.stack.ScratchStack`) the values read are kept there for the inversion pass, written by
    a :class:`~.stack.ScratchWriter` thread (at most :data:`SCRATCH_QUEUE_FILES` windows of one file queued)."""
    coh = stack.coherence_files()
    if scratch is not None and _scan_forgets_inputs(stack, options, scratch, progress.hooks):
        cf = copy.copy(cf)
        cf.files = cf.files.forgetting()
        coh = coh.forgetting() if coh is not None else None
    shared = dict(
        files=cf,
        coh=coh,
        min_coherence=options.min_coherence,
        ramp_mode=options.deramp,
        mask=options.deramp_mask,
        loop_net=loop_net,
        rad_per_unit=to_mm * radians_per_mm(options.wavelength),
        reference=reference_kind,
        network=stack.network,
        to_mm=to_mm,
        rad_per_mm=radians_per_mm(options.wavelength),
        scratch=scratch,
        scratch_coherence=scratch is not None and _scratch_coherence(stack, options),
        loop_threads=_loop_threads(options, plan, progress.hooks),
        buffers=WindowBuffers(),
    )
    parts = {}
    writer = None
    if scratch is not None:
        largest = max(h * w for _, h, _, w in plan["windows"])
        writer = shared["scratch"] = ScratchWriter(scratch, SCRATCH_QUEUE_FILES * 4 * largest)
    done = False
    try:
        for i, res in run_tasks_here_or(corr.scan_block_task, _tasks(plan), _pass_runner(progress.hooks, plan), shared):
            parts[i] = res
            progress.window_done("scan", i)
        done = True
    finally:
        if writer is not None:
            if done:
                writer.close()  # the copy complete before anything reads it; raises a write's error
            else:
                writer.abort()
    total = corr.combine(parts)
    best = None
    any_data = False
    for i in sorted(parts):  # window order; ties go to the first pixel in row order
        any_data = any_data or parts[i]["any_data"]
        c = parts[i].get("best")
        if c is not None and better_candidate(c, best, reference_kind == "coherence"):
            best = c
    total["best"], total["any_data"] = best, any_data
    return total


def _scan_forgets_inputs(stack, options, scratch, hooks):
    """Whether the scan pass, which keeps a copy of what it reads in ``scratch`` (so that no later pass reads the
    files again), tells the kernel to drop the files' pages from its cache as it reads them: when the files,
    the copy, the outputs and the run's memory limit together exceed the memory the system has available
    (``MemAvailable``). Left in the cache, the files are evicted page by page by the copy's writes, and that
    reclaim runs in the writing threads: 11.5 GB written after 11.9 GB of files were read took 32.5 s of
    system CPU, 6.7 s with the files' pages dropped as read (``posix_fadvise``, 23 GB machine)."""
    available = memory_available_bytes()
    if available is None:
        return False
    paths = list(stack.ifg_paths) + list(stack.coherence_paths or [])
    try:
        inputs = sum(os.path.getsize(p) for p in paths)
    except OSError:
        return False
    grid = stack.grid
    outputs = _output_bytes(stack)
    copy_bytes = ScratchStack.nbytes(grid.ysize, grid.xsize, len(scratch.slots))
    need = inputs + copy_bytes + outputs + float(options.memory_mb or 0) * MIB
    if need <= available:
        return False
    hooks.say(
        "the scan pass drops the files' blocks from the page cache as it reads them (not read again in this run): "
        "%.1f GB of files, %.1f GB of copy, %.1f GB of outputs and the memory limit exceed the %.1f GB the system "
        "has available" % (inputs / 2**30, copy_bytes / 2**30, outputs / 2**30, available / 2**30)
    )
    return True


def _loop_threads(options, plan, hooks):
    """Threads computing the loop statistics of one window of the scan pass: those the pass has inside a window
    (``threads_in_window``), or the threads left idle by fewer windows at a time than ``options.threads``; 1 with
    a given task runner (e.g. Dask). The statistics do not depend on it."""
    if hooks.run_tasks is not None:
        return 1
    return max(1, int(plan.get("threads_in_window", 1)), _threads(options) // max(1, int(plan.get("threads", 1))))


def _apply_corrections(cf, total, names, options, hooks):
    """Decide the GACOS corrections and the ramps from the scan's sums (set on ``cf``); log them. Returns the
    network-table columns per used interferogram."""
    cols = {}
    if "gacos" not in total and "normals" not in total:
        return cols
    d = corr.decide(total, names, options.gacos_tolerance, options.deramp)
    if d["gacos_apply"] is not None:
        cf.gacos_apply = d["gacos_apply"]
        worse = np.flatnonzero(~d["gacos_apply"])
        db, da = d["gacos_std_detrended_before"], d["gacos_std_detrended_after"]
        hooks.say(
            "GACOS: standard deviation reduced in %d of %d interferograms (median %.3g -> %.3g; about a "
            "plane %.3g -> %.3g)"
            % (
                int((da < db).sum()),
                len(names),
                float(np.median(d["gacos_std_before"])),
                float(np.median(d["gacos_std_after"])),
                float(np.nanmedian(db)),
                float(np.nanmedian(da)),
            )
        )
        if worse.size:
            hooks.say(
                "GACOS not applied (standard deviation up by more than %.0f %%): %s"
                % (
                    100 * options.gacos_tolerance,
                    ", ".join(
                        "%s (%.3g -> %.3g)" % (names[k], d["gacos_std_before"][k], d["gacos_std_after"][k])
                        for k in worse
                    ),
                )
            )
        cols.update(
            gacos_std_before=d["gacos_std_before"],
            gacos_std_after=d["gacos_std_after"],
            gacos_std_detrended_before=db,
            gacos_std_detrended_after=da,
            gacos_applied=d["gacos_apply"],
        )
    if d["ramp_coef"] is not None:
        cf.ramp_coef = d["ramp_coef"]
        if d["no_ramp"].size:
            hooks.say(
                "too few reliable pixels to fit a %s ramp, not deramped: %s"
                % (options.deramp, ", ".join(names[k] for k in d["no_ramp"]))
            )
        ramp_ok = np.ones(len(names), bool)
        ramp_ok[d["no_ramp"]] = False
        cols["deramped"] = ramp_ok
    return cols


def _report_loops(verdict, rms, names, options, hooks):
    n_bad_loops = int(verdict["bad_loop"].sum())
    hooks.say(
        "loop closure: %d loops, %d with a loop-phase RMS >= %g rad; median loop RMS %.3f rad"
        % (len(rms), n_bad_loops, options.loop_threshold, float(np.median(rms)) if len(rms) else np.nan)
    )
    bad = np.flatnonzero(verdict["bad"])
    if bad.size:
        what = {lc.LOOP_REJECT: "rejected", lc.LOOP_CORRECT: "bad by the loop RMS"}.get(
            options.loop_closure, "bad (report only, kept)"
        )
        hooks.say(
            "loop closure %s: %s"
            % (what, ", ".join("%s (loop RMS %.2f rad)" % (names[k], verdict["loop_rms"][k]) for k in bad))
        )
    noloop = np.flatnonzero(verdict["no_loop"])
    if noloop.size:
        hooks.say("in no loop (not checked by loop closure): %s" % ", ".join(names[k] for k in noloop))


def _report_unwrap(run, totals, options, hooks):
    """Log the unwrapping-error correction and add its network-table columns."""
    n = dict(zip(uc.COUNT_NAMES, totals["unwrap_counts"].tolist()))
    fixed, amb = totals["unwrap_ifg_corrected"], totals["unwrap_ifg_ambiguous"]
    hooks.say(
        "unwrapping-error correction (phase closure): %d pixels with an unclosed loop; %d corrected (%d "
        "interferogram values); left uncorrected: %d with an ambiguous answer (interferograms left there), %d "
        "inconsistent loops (no integer solution: noise), %d isolated (no neighbour with the same loops: noise), "
        "%d implausible (more cycles than the loops miss), %d over the limit of %d patterns per sub-block"
        % (
            n["flagged"],
            n["corrected"],
            int(fixed.sum()),
            n["ambiguous"],
            n["inconsistent"],
            n["isolated"],
            n["implausible"],
            n["unsolved"],
            options.unwrap_max_patterns,
        )
    )
    names = run.net.names
    top = np.argsort(-fixed, kind="stable")[: min(10, int((fixed > 0).sum()))]
    if top.size:
        hooks.say("pixels corrected per interferogram: %s" % ", ".join("%s %d" % (names[k], fixed[k]) for k in top))
    run.extra["n_pixels_unwrap_corrected"] = run.per_input(fixed, 0, int)
    run.extra["n_pixels_unwrap_ambiguous"] = run.per_input(amb, 0, int)


def _output_metadata(net, options, reference, ref_xy):
    return {
        "KIND": "deformation",
        "REFERENCE_ROW": reference[0],
        "REFERENCE_COL": reference[1],
        "REFERENCE_X": "%.10g" % ref_xy[0],
        "REFERENCE_Y": "%.10g" % ref_xy[1],
        "REFERENCE_DATE": format_date(net.dates[0]),
        "SIGN": "positive toward the satellite",
        "WAVELENGTH_M": options.wavelength,
        "GAP_HANDLING": options.gap_handling,
        "WEIGHTING": options.weighting,
        "METHOD": "SBAS (Berardino et al. 2002), minimum-norm interval velocities",
        "N_INTERFEROGRAMS": net.n_ifg,
        "LOOP_CLOSURE": ("off", "report", "reject", "correct")[options.loop_closure],
        "LOOP_THRESHOLD_RAD": options.loop_threshold,
        "DERAMP": options.deramp,
        "GACOS": "%d files" % len(options.gacos) if options.gacos else "none",
        "KEPT_PART": "quality band kept_first_date: index of the first date of the part of the network kept",
    }


def _window_writer(es, writers, behind, written=None):
    """``write(row0, col0, blocks)``: the output windows into ``writers``; ``behind``: by a writer thread while the
    next window is computed (with threads inside the windows; the plan counts one more window of outputs), at
    most one window waiting; ``write(None, None, None)`` waits for the last one. The thread is joined before the
    writers of ``es`` (an ExitStack) close, also on an error or a cancel. ``written(blocks)``, when given, is
    called once a window's blocks are written (the writers keep no reference to them)."""

    def now(row0, col0, blocks):
        if row0 is not None:
            t0 = time.perf_counter()
            for w, b in zip(writers, blocks):
                w.write_block(row0, b, col0)
            seconds[0] += time.perf_counter() - t0
            if written is not None:
                written(blocks)

    seconds = [0.0]  # time spent writing, for the log
    if not behind:
        now.seconds = seconds
        return now
    pool = thread_pool(1, "subsidence-write")
    es.callback(pool.shutdown, wait=True)  # runs before the writers are closed or removed
    pending = []

    def later(row0, col0, blocks):
        if pending:
            result_of(pending.pop())  # raises the writer's error here
        if row0 is not None:
            pending.append(pool.submit(now, row0, col0, blocks))

    later.seconds = seconds
    return later


def _invert_pass(state, plan, grid, outputs, metadata, progress):
    """The inversion pass: window tasks written as they arrive, statistics summed in window order (so
    that they are identical locally and on Dask). ``outputs``: paths of the time series, velocity and
    quality rasters. Returns the statistics of the run: ``sum_e2``, ``n``, ``coh_sum``, ``coh_n`` (zero
    unless ``state.sum_coherence``) per interferogram, ``n_data``, ``n_gap`` pixels."""
    net = state.network
    M = net.n_ifg
    totals = {
        "sum_e2": np.zeros(M),
        "n": np.zeros(M, dtype=np.int64),
        "coh_sum": np.zeros(M),
        "coh_n": np.zeros(M, dtype=np.int64),
        "n_data": 0,
        "n_gap": 0,
        "seconds_read": 0.0,
        "seconds_solve": 0.0,
    }
    if state.unwrap is not None:
        totals.update(_unwrap_totals(M))
    out_ts, out_vel, out_quality = outputs
    with contextlib.ExitStack() as es:
        w_ts = es.enter_context(RasterWriter(out_ts, grid, net.n_dates, dates=net.dates, metadata=metadata))
        w_vel = es.enter_context(
            RasterWriter(
                out_vel,
                grid,
                1,
                band_names=["velocity_mm_per_year"],
                units="mm/yr",
                metadata=dict(metadata, SEASONAL=int(bool(state.seasonal))),
            )
        )
        w_q = es.enter_context(
            RasterWriter(
                out_quality, grid, len(QUALITY_BANDS), band_names=list(QUALITY_BANDS), units="", metadata=metadata
            )
        )
        stats = {}
        state = replace(state, inner_threads=plan.get("threads_in_window", 1), buffers=WindowBuffers())
        runner = _pass_runner(progress.hooks, plan)
        # windows computed here hand their written outputs to the next window (results from elsewhere, e.g. Dask's
        # workers, are not kept)
        written = state.buffers.give_back_outputs if progress.hooks.run_tasks is None else None
        write = _window_writer(es, (w_ts, w_vel, w_q), state.inner_threads > 1, written)
        for i, res in run_tasks_here_or(invert_block_task, _tasks(plan), runner, state):
            row0, _, col0, _ = plan["windows"][i]
            write(row0, col0, (res.pop("ts"), res.pop("vel"), res.pop("quality")))
            stats[i] = res
            progress.window_done("invert", i)
        write(None, None, None)  # the last window written
        for i in sorted(stats):  # window order, not arrival order: identical sums locally and on Dask
            for k, v in stats[i].items():
                totals[k] += v
        if totals["n_data"] == 0:
            raise TimeSeriesError("every pixel is NoData in every interferogram (%s ...)" % net.names[0])
        progress.hooks.say(
            "invert pass: reading %.1f s, solving %.1f s (summed over the windows), writing %.1f s"
            % (totals.pop("seconds_read"), totals.pop("seconds_solve"), write.seconds[0])
        )
    return totals


def network_table(stack, totals, extra=None):
    """One row per input interferogram (used or not): dates, baselines, status, mean coherence, residual
    RMS (mm) and pixels used, from the run's per-interferogram ``totals``; ``extra``: more columns,
    {name: (values per input interferogram)}."""
    na, used = stack.network_all, stack.used
    uidx = {k: j for j, k in enumerate(np.flatnonzero(used))}
    coh_sum, coh_n, sum_e2, n = totals["coh_sum"], totals["coh_n"], totals["sum_e2"], totals["n"]
    rows = []
    for k in range(na.n_ifg):
        j = uidx.get(k)
        d1 = na.dates[na.i1[k]] if na.sign[k] > 0 else na.dates[na.i2[k]]
        d2 = na.dates[na.i2[k]] if na.sign[k] > 0 else na.dates[na.i1[k]]
        rows.append(
            {
                "file": stack.all_paths[k],
                "reference_date": format_date(d1),
                "secondary_date": format_date(d2),
                "temporal_baseline_days": float(abs((d2 - d1).days)),
                "perp_baseline_m": float(na.bperp[k]) if na.bperp is not None and np.isfinite(na.bperp[k]) else np.nan,
                "used": bool(used[k]),
                "status": "used" if used[k] else stack.reasons[k],
                "mean_coherence": float(coh_sum[j] / coh_n[j]) if j is not None and coh_n[j] > 0 else np.nan,
                "residual_rms_mm": float(np.sqrt(sum_e2[j] / n[j])) if j is not None and n[j] > 0 else np.nan,
                "n_pixels_used": int(n[j]) if j is not None else 0,
            }
        )
        for name, values in (extra or {}).items():
            v = values[k]
            rows[-1][name] = v.item() if isinstance(v, np.generic) else v
    return rows


def invert_stack(
    stack: PreparedStack,
    out_ts,
    out_vel,
    out_quality,
    options=None,
    *,
    progress=None,
    is_canceled=None,
    log=None,
    run_tasks=None,
):
    """Invert the prepared stack and write the outputs. Returns a summary dict with the network table rows.

    ``options``: :class:`SbasOptions` (defaults when None). ``options.memory_mb`` bounds everything this
    function allocates, GDAL's block cache included (set for the run and restored afterwards); see
    :func:`~.memory_plan.plan_stack`. ``progress``, ``is_canceled``, ``log``, ``run_tasks``: see
    :class:`RunHooks`; windows are written as they arrive and the statistics and the automatic reference
    are combined in window order, so results do not depend on the runner. With ``options.threads`` > 1
    and no ``run_tasks``, each pass runs its windows on that many threads (:func:`~..io.tasks.map_threads`) or
    uses them inside each window (:func:`_thread_plans`); a ``run_tasks`` given must then run at most
    ``options.threads`` windows at a time (each window is planned under ``memory_mb / threads``). Only without
    a ``run_tasks`` (the windows run in this process) does the scan pass keep what it reads for the inversion
    pass (:func:`_open_scratch`).

    Passes: corrections (GACOS and / or ramps, when asked), automatic reference, loop closure (when asked),
    inversion; see :mod:`.corrections`.
    """
    from osgeo import gdal

    options = options or SbasOptions()
    hooks = RunHooks(progress, is_canceled, log, run_tasks)
    if options.weighted and not stack.coherence_paths:
        raise TimeSeriesError("weighting '%s' needs the coherence rasters" % options.weighting)
    if options.min_coherence and options.min_coherence > 0 and not stack.coherence_paths:
        raise TimeSeriesError("a minimum coherence needs the coherence rasters")
    if options.deramp not in dr.DERAMP_MODES:
        raise TimeSeriesError("unknown ramp %r (use one of %s)" % (options.deramp, ", ".join(dr.DERAMP_MODES)))
    if options.loop_closure not in lc.LOOP_MODES:
        raise TimeSeriesError(
            "LOOP_CLOSURE must be 0 (off), 1 (report), 2 (reject) or 3 (correct), not %r" % options.loop_closure
        )
    stack, gacos_parts = _gacos_setup(stack, options, hooks)
    plans = _thread_plans(stack, options, gacos_parts, hooks, local=run_tasks is None)
    # GDAL's block cache is shared by the threads: each window's plan counted its own share
    cache = max(p["threads"] * p["gdal_cache"] for p in plans.values())
    old_cache = gdal.GetCacheMax()
    gdal.SetCacheMax(cache)
    scratch = None
    try:
        if "scan" in plans:
            scratch = _open_scratch(stack, options, out_ts, hooks, local=run_tasks is None)
        outputs = (out_ts, out_vel, out_quality)
        with one_blas_thread():  # the passes' own threads replace BLAS's (core.io.blas)
            return _invert_stack(stack, outputs, options, plans, hooks, cache, gacos_parts, scratch, run_tasks is None)
    finally:
        gdal.SetCacheMax(old_cache)
        _LOCAL.tick = None
        if scratch is not None:
            scratch.close()


#: free space left beside the outputs after the scratch copy of the stack and the outputs (bytes)
SCRATCH_MARGIN = 256 * MIB

#: windows of one file the scan pass's :class:`~.stack.ScratchWriter` may hold while the disk catches up (the
#: frame's 256 x 768 windows: 25 MB, about 0.2 s of what two threads decode); counted in the scan's plan
SCRATCH_QUEUE_FILES = 32


def _output_bytes(stack):
    """Bytes of the run's float32 outputs, uncompressed: time series (one band per date), velocity, quality."""
    return 4 * stack.grid.ysize * stack.grid.xsize * (stack.network.n_dates + 1 + len(QUALITY_BANDS))


def _scratch_coherence(stack, options):
    """The inversion pass reads the coherence (weights or a minimum coherence): the scratch keeps it too."""
    return bool(stack.coherence_paths) and (options.weighted or (options.min_coherence or 0) > 0)


def _open_scratch(stack, options, first_output, hooks, local):
    """A :class:`~.stack.ScratchStack` beside the first output in which the scan pass keeps the windows it
    reads (interferograms, and the coherence when the inversion needs it), so that the inversion pass does
    not decode the files again; None (and the log says why) when the tasks run elsewhere (``local`` False:
    a given runner, e.g. Dask workers in other processes), the system has no positioned file I/O, or the
    folder lacks the free space for it, the outputs and :data:`SCRATCH_MARGIN`."""
    grid, net = stack.grid, stack.network
    keys = [("ifg", p) for p in stack.ifg_paths]
    if _scratch_coherence(stack, options):
        keys += [("coh", p) for p in stack.coherence_paths]
    need = ScratchStack.nbytes(grid.ysize, grid.xsize, len(keys))
    folder = os.path.dirname(os.path.abspath(first_output))
    what = "the inversion pass decodes the files the scan pass read again"
    if not local:
        hooks.say("%s: the windows run through the given task runner (e.g. Dask workers, other processes)" % what)
        return None
    if not scratch_supported():
        hooks.say("%s: this system has no positioned file reads and writes (os.pwrite / os.pread)" % what)
        return None
    outputs = _output_bytes(stack)
    try:
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < need + outputs + SCRATCH_MARGIN:
            hooks.say(
                "%s: %.0f MB free in %s, a copy of the stack as read needs %.0f MB (+ %.0f MB of outputs and a "
                "margin of %.0f MB)" % (what, free / MIB, folder, need / MIB, outputs / MIB, SCRATCH_MARGIN / MIB)
            )
            return None
        # slots in tiles of the inputs' blocks (the windows' unit); strips: row-major, so that a window of whole
        # strips is one run of the file
        (bx, by), _ = stack.ifg_files().block_size()
        scratch = ScratchStack(folder, grid.ysize, grid.xsize, keys, tile=None if bx >= grid.xsize else (by, bx))
    except OSError as e:
        hooks.say("%s: cannot create a temporary file in %s (%s)" % (what, folder, e))
        return None
    hooks.say(
        "the scan pass keeps the %d interferograms%s as read (%.0f MB) in an anonymous temporary file in %s (gone "
        "at the end of the run); the inversion pass reads them from there instead of decoding the files again"
        % (net.n_ifg, " and coherence files" if len(keys) > net.n_ifg else "", need / MIB, folder)
    )
    return scratch


def _threads(options):
    return max(1, int(options.threads or 1))


def _whole(plan, block_rows):
    """The plan's windows cover whole input blocks (each block decompressed once per pass)."""
    return plan["windows"][0][1] >= block_rows or len(plan["windows"]) == 1


def _thread_plans(stack, options, gacos_parts, hooks, local=True):
    """The plans of the passes with their threads: ``threads`` windows at a time (each planned under
    ``memory_mb / threads``) or ``threads_in_window`` threads reading (and solving) one window at a time.

    Per pass, in this order: ``options.threads`` windows at a time when each can still hold whole input blocks
    (smaller windows decompress every tile several times, which costs more than a thread gains: measured, 2
    threads weighted at 256 MB took +50 % CPU) and there are windows for every thread; else, for the inversion
    pass and the reference pass with coherence, every thread inside one window of whole blocks planned under
    the whole cap (its files decoded, and its sub-blocks solved, in parallel); else fewer windows at a time. The
    choice is logged. Without a local thread pool (``local`` False: a given task runner, e.g. Dask) or with one
    thread, the plans as asked."""
    asked = _threads(options)
    plans = _plans(stack, options, gacos_parts, options.memory_mb / asked, windows=asked if local else 1)
    if asked == 1 or not local:
        return {k: dict(p, threads=asked) for k, p in plans.items()}
    bh = min(stack.ifg_files().block_size()[0][1], stack.grid.ysize)
    out, notes = {}, []
    for key, p in plans.items():
        out[key], note = _pass_threads(key, p, asked, bh, stack, options, gacos_parts)
        notes += [note] if note else []
    if not notes:
        hooks.say("%d threads, each window planned under %g MB / %d" % (asked, options.memory_mb, asked))
    else:
        for key in out:
            if out[key]["threads"] == asked and not any(n.startswith(key + " pass") for n in notes):
                notes.insert(
                    0, "%s pass: %d windows at a time, each under %g MB / %d" % (key, asked, options.memory_mb, asked)
                )
        for note in notes:
            hooks.say(note)
    return out


def _pass_threads(key, plan, asked, block_rows, stack, options, gacos_parts):
    """(plan with ``threads``, log note or None) of one pass (see :func:`_thread_plans`)."""
    few_windows = key == "reference" and stack.coherence_paths and len(plan["windows"]) < asked
    if _whole(plan, block_rows) and not few_windows:
        return dict(plan, threads=asked), None
    if key in ("invert", "reference") and (key == "invert" or stack.coherence_paths):
        inner = _plans(stack, options, gacos_parts, options.memory_mb, threads_in_window=asked)[key]
        if _whole(inner, block_rows) and inner["fits"]:
            what = "files decoded and sub-blocks solved" if key == "invert" else "files decoded"
            why = (
                "fewer windows than threads"
                if few_windows
                else "a window of whole tiles per thread needs more than %g MB / %d" % (options.memory_mb, asked)
            )
            return dict(inner, threads=1), (
                "%s pass: %d threads inside each window (%s in parallel), one window of whole input tiles at a time "
                "under %g MB: %s" % (key, asked, what, options.memory_mb, why)
            )
    if _whole(plan, block_rows):
        return dict(plan, threads=asked), None
    for t in range(asked - 1, 0, -1):
        q = _plans(stack, options, gacos_parts, options.memory_mb / t, windows=t)[key]
        if _whole(q, block_rows):
            return dict(q, threads=t), (
                "%s pass: %d threads instead of %d: a window of whole input tiles per thread needs more than "
                "%g MB / %d" % (key, t, asked, options.memory_mb, asked)
            )
    return dict(plan, threads=asked), None


def _pass_runner(hooks, plan):
    """The runner of a pass's window tasks: the given one (e.g. Dask), ``plan["threads"]`` threads of this
    process (:func:`~..io.tasks.map_threads`; with ``plan["ahead"]`` the next window starts while the caller writes
    one), or None (here, in order)."""
    threads = plan.get("threads", 1)
    if hooks.run_tasks is not None or threads <= 1:
        return hooks.run_tasks
    # (each window counts 1 / planned_windows of the extra outputs: enough when as many or more run at a time)
    ahead = bool(plan.get("ahead")) and threads >= plan.get("planned_windows", threads + 1)
    return lambda task_fn, tasks, shared: map_threads(
        _checking_cancel(task_fn, hooks.is_canceled),
        tasks,
        threads,
        shared=shared,
        is_canceled=hooks.is_canceled,
        ahead=ahead,
    )


def _plans(stack, options, gacos_parts, memory_mb, threads_in_window=1, windows=1):
    """Memory plans of the passes, each window under ``memory_mb``; ``threads_in_window``: see
    :func:`~.memory_plan.plan_blocks` (inversion pass). ``windows`` > 1: that many windows computed at a time, the
    inversion's planned with its share of one more window of outputs (written while they compute: ``ahead``)."""
    loops = options.loop_closure != lc.LOOP_OFF
    scan = _scan_needed(options)
    plans = plan_stack(
        stack,
        options.weighting,
        options.min_coherence,
        memory_mb,
        reference_pass=options.reference is None and not scan,
        extra_bytes_px=_gacos_bytes(stack, gacos_parts),
        extra_fixed=((4 << 20) if loops else 0) + (uc.WORK_BYTES if options.loop_closure == lc.LOOP_CORRECT else 0),
        threads_in_window=threads_in_window,
        outputs_ahead=1.0 / windows if windows > 1 else 0.0,
    )
    if windows > 1:
        plans["invert"].update(ahead=True, planned_windows=windows)
    if scan:
        plans["scan"] = plan_scan(stack, options, gacos_parts, memory_mb)
    return plans


@dataclass(eq=False)
class _Run:
    """What the passes of one :func:`_invert_stack` run share and update (the loop-closure rejection
    narrows the stack, its files, the network and the plans)."""

    stack: PreparedStack
    cf: object
    coh_files: object
    plans: dict
    extra: dict
    coh_stats: Optional[dict] = None
    ref_vals: Optional[np.ndarray] = None
    loop_net: object = None
    loop_fix_ref: Optional[np.ndarray] = None
    unwrap: object = None
    scratch: Optional[ScratchStack] = None
    local: bool = True

    @property
    def net(self):
        return self.stack.network

    def per_input(self, values_used, fill, dtype=object, used=None):
        """Values of the used interferograms spread over every input (``fill`` elsewhere)."""
        out = np.full(self.stack.network_all.n_ifg, fill, dtype=dtype)
        out[np.flatnonzero(self.stack.used if used is None else used)] = values_used
        return out


def _reference_step(run, options, progress, hooks, to_mm, ln, gdal_cache):
    """Scan pass (corrections statistics, loop sums, automatic reference) or reference pass; returns the
    reference pixel ``(row, col)`` and the scan totals (``None`` without a scan pass)."""
    net, M = run.net, run.net.n_ifg
    reference = options.reference
    scan = None
    if "scan" in run.plans:
        kind = None if reference is not None else ("coherence" if run.coh_files is not None else "residual")
        with progress.timed("scan"):
            scan = _scan_pass(run.cf, run.stack, options, run.plans["scan"], progress, to_mm, ln, kind, run.scratch)
        if run.scratch is not None:  # later passes read the scan's copy of the values as read
            run.cf.files = ScratchFiles(run.scratch, "ifg", run.cf.files)
            if _scratch_coherence(run.stack, options):
                run.coh_files = ScratchFiles(run.scratch, "coh", run.coh_files)
        for name, vals in _apply_corrections(run.cf, scan, net.names, options, hooks).items():
            run.extra[name] = run.per_input(vals, np.nan if vals.dtype.kind == "f" else None)
        if run.coh_files is not None:
            run.coh_stats = {"coh_sum": scan["coh_sum"], "coh_n": scan["coh_n"]}
        if not scan["any_data"]:
            raise TimeSeriesError("every pixel is NoData in every interferogram (%s ...)" % net.names[0])
        if reference is None:
            best = scan["best"]
            if best is None:
                raise TimeSeriesError("no pixel has data in every interferogram: give a reference point")
            reference = (best[1], best[2])
            how = (
                "highest mean coherence %.3f" % best[0]
                if kind == "coherence"
                else "lowest residual RMS %.3f mm" % best[0]
            )
            hooks.say(
                "automatic reference pixel: row %d, col %d (data in all %d interferograms, %s)"
                % (reference[0], reference[1], M, how)
            )
        else:
            hooks.say("reference pixel: row %d, col %d" % reference)
    elif reference is None:
        state = TaskState(
            network=net,
            solver=SolverOptions(min_coherence=options.min_coherence, rad_per_unit=radians_per_mm(options.wavelength)),
            to_mm=to_mm,
            ifg_files=run.cf,
            coh_files=run.coh_files,
            gdal_cache=gdal_cache,
        )
        with progress.timed("reference"):
            reference, run.coh_stats = _find_reference(state, run.plans["reference"], progress)
    else:
        hooks.say("reference pixel: row %d, col %d" % reference)
    return reference, scan


def _reject_bad_ifgs(run, bad, options, progress, hooks, gacos_parts):
    """Take the interferograms rejected by loop closure out of the run; log lost dates and new gaps."""
    keep = ~bad
    net = run.net
    n_parts_before = int(net.n_gaps()[0]) + 1
    dates_before = list(net.dates)
    run.stack = restrict_stack(run.stack, keep, "loop closure")
    if run.coh_stats is not None:
        run.coh_stats = {k: v[keep] for k, v in run.coh_stats.items()}
    run.ref_vals = run.ref_vals[keep]
    run.cf = run.cf.subset(keep)
    net = run.net
    run.coh_files = None if run.coh_files is None else run.coh_files.subset(np.flatnonzero(keep))
    n_parts = int(net.n_gaps()[0]) + 1
    lost = [d for d in dates_before if d not in set(net.dates)]
    if lost:
        hooks.say(
            "the rejection leaves %d date(s) without any interferogram, left out of the time series: %s"
            % (len(lost), ", ".join(format_date(d) for d in lost))
        )
    if n_parts > n_parts_before:
        hooks.say(
            "the rejection splits the network into %d parts: GAP_HANDLING (%s) bridges or masks them"
            % (n_parts, options.gap_handling)
        )
    new_plan = _thread_plans(run.stack, options, gacos_parts, RunHooks(), run.local)["invert"]
    progress.n_steps += sum(-(-w[1] // new_plan["sub_rows"]) for w in new_plan["windows"]) - sum(
        progress.steps["invert"]
    )
    progress.steps["invert"] = [-(-w[1] // new_plan["sub_rows"]) for w in new_plan["windows"]]
    run.plans = dict(run.plans, invert=new_plan)


def _gacos_loop_fix(cf, reference, half, grid, n_ifg):
    """Reference-window median of the GACOS corrections that were not applied (for the loop counts)."""
    if cf.gacos is None or cf.gacos_apply.all():
        return None
    r0, r1 = max(0, reference[0] - half), min(grid.ysize, reference[0] + half + 1)
    c0, c1 = max(0, reference[1] - half), min(grid.xsize, reference[1] + half + 1)
    fix = np.zeros(n_ifg)
    for k in np.flatnonzero(~cf.gacos_apply):
        fix[k] = float(np.nanmedian(cf.gacos_correction(k, r0, r1 - r0, c0, c1 - c0)))
    return fix


def _loop_closure_step(run, scan, ref_loop, ln, options, progress, hooks, to_mm, gacos_parts, reference):
    """Classify the loops (sums shifted by the reference's loop phase), reject or report the bad
    interferograms, and record the per-interferogram loop columns of the network table."""
    # the loops were summed unreferenced: shift each by the reference's loop phase
    shift = ln.matrix @ (ref_loop * to_mm * radians_per_mm(options.wavelength))
    rms = lc.loop_rms(scan["loops"], shift)
    verdict = lc.classify(ln, rms, options.loop_threshold)
    _report_loops(verdict, rms, run.net.names, options, hooks)
    status = np.where(verdict["no_loop"], "in no loop", np.where(verdict["bad"], "bad", "ok")).astype(object)
    bad = verdict["bad"]
    used_before = run.stack.used.copy()
    fixable = None
    if options.loop_closure == lc.LOOP_CORRECT:
        fixable = _correction_step(
            run, scan, ln, shift, verdict, status, options, progress, hooks, gacos_parts, used_before
        )
    elif options.loop_closure == lc.LOOP_REJECT and bad.any():
        status[bad] = "rejected"
        _reject_bad_ifgs(run, bad, options, progress, hooks, gacos_parts)
    elif options.loop_closure == lc.LOOP_REPORT and bad.any():
        status[bad] = "bad (kept: report only)"
    run.extra["loop_check"] = run.per_input(status, None, used=used_before)
    run.extra["loop_rms_rad"] = run.per_input(verdict["loop_rms"], np.nan, float, used=used_before)
    run.extra["n_loops"] = run.per_input(verdict["n_loops"], 0, int, used=used_before)
    run.extra["n_bad_loops"] = run.per_input(verdict["n_bad_loops"], 0, int, used=used_before)
    net = run.net
    run.loop_net = lc.LoopNetwork(net.i1, net.i2, net.sign)
    run.loop_fix_ref = _gacos_loop_fix(run.cf, reference, options.reference_half_window, run.stack.grid, net.n_ifg)
    if options.loop_closure == lc.LOOP_CORRECT:
        # on the referenced loop phase, as n_loop_errors (and MintPy): the reference pixel's side of an error is
        # right by definition, so the output stays 0 there (removing the loops' median cycles instead would
        # correct the reference side of an error covering most of the image, shifting the whole image)
        run.unwrap = uc.ClosureCorrector(run.loop_net, None, options.unwrap_max_patterns)
        if fixable[0].any() and run.cf.ramp_coef is not None and "normals" in scan:
            _refit_ramps(run, scan, ref_loop, fixable, options, progress, hooks, to_mm)
            # the reference values of the inversion with the new ramps
            run.ref_vals = corrected_reference_values(
                run.cf, reference[0], reference[1], options.reference_half_window, run.stack.grid, net.names
            )[0]


def _refit_ramps(run, scan, ref_loop, fixable, options, progress, hooks, to_mm):
    """The ramps fitted again without the unwrapping errors corrected per pixel, when some bad interferogram is
    kept for the correction (``fixable``: the (fixable, kept) masks of :func:`_correction_step`): a ramp
    fitted to an interferogram with a 2 pi step over a large area absorbs part of the step. Every
    interferogram with a correction somewhere gets its ramp fitted again. The normal equations are linear
    in the data, so one more read of the stack (as the loop closure reads it: GACOS on every interferogram, no
    ramp, referenced with ``ref_loop``; the windows of the scan pass, in this process) finds the corrections
    ``u`` of those interferograms and subtracts ``X^T 2 pi u`` over their reliable pixels from the scan's
    right-hand sides; the pixels and ``X^T X`` are the scan's. Decided on the data without ramps (per-date
    ramps close in loops), so a pixel's correction in the inversion pass (deramped data) can differ where a
    loop closes within pi of the boundary."""
    mode = options.deramp
    _, keep = fixable
    old_idx = np.flatnonzero(keep)  # kept interferograms in the indices before the rejection
    M = run.net.n_ifg
    grid = run.stack.grid
    files = run.cf.for_loops()
    coh_files = run.coh_files if (options.min_coherence or 0) > 0 else None  # the scan's scratch copy when kept
    rpu = radians_per_mm(options.wavelength)
    units_per_cycle = uc.TWO_PI / (rpu * to_mm)
    ref = np.asarray(ref_loop, dtype=np.float64)[old_idx].astype(np.float32)
    p = dr.N_TERMS[mode]
    delta = np.zeros((M, p))
    mask_ds = None
    if options.deramp_mask:
        mask_ds = open_raster(options.deramp_mask)
    for r0, h, c0, w in run.plans["scan"]["windows"]:
        y = files.read(r0, h, c0, w)
        y -= ref[:, None, None]
        y *= np.float32(to_mm)
        if coh_files is not None:
            for k in range(M):
                with np.errstate(invalid="ignore"):
                    y[k][~(coh_files.read_one(k, r0, h, c0, w) >= options.min_coherence)] = np.nan
        fix = run.unwrap.correct(y.reshape(M, -1), rpu, {}, shape=(h, w))
        del y
        if fix.pixels.size:
            reliable = np.ones(fix.pixels.size, dtype=bool)
            if mask_ds is not None:
                m = read_window(mask_ds, c0, r0, w, h, bands=[1], dtype=np.float32)[0].ravel()[fix.pixels]
                reliable = ~(np.isfinite(m) & (m != 0))
            X = dr.design(r0, h, c0, w, grid.ysize, grid.xsize, mode)[fix.pixels]
            delta += np.where(reliable[None, :], fix.cycles, 0).astype(np.float64) @ X
        progress.report()
    mask_ds = None
    normals = scan["normals"]
    shifted = dict(normals, xty=normals["xty"].copy())
    fix_new = np.flatnonzero(np.any(delta != 0, axis=1))  # every interferogram corrected somewhere
    for k in fix_new:
        shifted["xty"][:, old_idx[k]] -= units_per_cycle * delta[k]
    coef_after, bad = dr.solve(shifted, rhs=0)
    coef_raw, _ = dr.solve(shifted, rhs=1)
    apply = run.cf.gacos_apply if run.cf.gacos is not None else np.ones(M, bool)
    for k in fix_new:
        if old_idx[k] not in bad:
            run.cf.ramp_coef[k] = coef_after[old_idx[k]] if apply[k] else coef_raw[old_idx[k]]
    if fix_new.size:
        hooks.say(
            "ramps fitted again without the unwrapping errors corrected per pixel (one more read of the stack): %s"
            % ", ".join(run.net.names[k] for k in fix_new)
        )


def _correction_step(run, scan, ln, shift, verdict, status, options, progress, hooks, gacos_parts, used_before):
    """LOOP_CLOSURE 3: the bad interferograms (LiCSBAS rule on the loop RMS) are kept and corrected per pixel
    when the rule applied to the wrapped loop RMS (integer cycles removed per pixel) finds them good and an
    error of theirs is told apart from any other interferogram's (:func:`.unwrap_correction.identifiable`);
    the others are rejected as with LOOP_CLOSURE 2. Returns (fixable, kept) masks of the interferograms of
    ``ln``."""
    bad = verdict["bad"]
    wrms = lc.wrapped_loop_rms(scan["loops"], shift)
    wverdict = lc.classify(ln, wrms, options.loop_threshold)
    ident = uc.identifiable(ln)
    fixable = bad & ~wverdict["bad"] & ident
    reject = bad & ~fixable
    names = run.net.names
    wr = wverdict["loop_rms"]
    if fixable.any():
        hooks.say(
            "loop closure: kept and corrected per pixel (loop RMS without the integer cycles below %g rad): %s"
            % (options.loop_threshold, ", ".join("%s (%.2f rad)" % (names[k], wr[k]) for k in np.flatnonzero(fixable)))
        )
    if reject.any():
        hooks.say(
            "loop closure rejected (not correctable per pixel): %s"
            % ", ".join(
                "%s (%s)"
                % (names[k], "wrapped loop RMS %.2f rad" % wr[k] if wverdict["bad"][k] else "not identifiable")
                for k in np.flatnonzero(reject)
            )
        )
    status[fixable] = "bad (kept: unwrapping errors corrected per pixel)"
    status[reject] = "rejected"
    run.extra["loop_rms_wrapped_rad"] = run.per_input(wverdict["loop_rms"], np.nan, float, used=used_before)
    if reject.any():
        _reject_bad_ifgs(run, reject, options, progress, hooks, gacos_parts)
    return fixable, ~reject


def _invert_stack(stack, outputs, options, plans, hooks, gdal_cache, gacos_parts=None, scratch=None, local=True):
    """The passes of :func:`invert_stack` under its GDAL cache: corrections, reference (automatic or given),
    loop closure, inversion. ``scratch``: where the scan pass keeps the values it reads (or None); ``local``:
    the windows run in this process (no given task runner)."""
    net, grid = stack.network, stack.grid
    to_mm = los_factor_mm(options.input_units, options.wavelength, options.flip_sign)
    run = _Run(
        stack=stack,
        cf=_corrected_files(stack, gacos_parts, to_mm, options),
        coh_files=stack.coherence_files(),
        plans=plans,
        extra={},
        scratch=scratch,
        local=local,
    )
    progress = _Progress(plans, net.n_ifg, run.coh_files is not None, hooks)
    _log_plans(plans, hooks)
    _LOCAL.tick = progress.tick  # reset by invert_stack
    names_all = stack.network_all.names
    loops_on = options.loop_closure != lc.LOOP_OFF
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign) if loops_on else None
    reference, scan = _reference_step(run, options, progress, hooks, to_mm, ln, gdal_cache)
    half = options.reference_half_window
    if loops_on:
        run.ref_vals, ref_loop = corrected_reference_values(run.cf, reference[0], reference[1], half, grid, net.names)
        _loop_closure_step(run, scan, ref_loop, ln, options, progress, hooks, to_mm, gacos_parts, reference)
    else:
        run.ref_vals = reference_window_values(run.cf, reference[0], reference[1], half, grid, net.names)
    ref_xy = pixel_centre(grid, reference[0], reference[1])
    net, stack = run.net, run.stack
    state = TaskState(
        network=net,
        solver=options.solver(),
        to_mm=to_mm,
        ifg_files=run.cf,
        coh_files=run.coh_files,
        ref_vals=run.ref_vals,
        seasonal=options.seasonal,
        sum_coherence=run.coh_stats is None,
        gdal_cache=gdal_cache,
        loop_net=run.loop_net,
        loop_fix_ref=run.loop_fix_ref,
        unwrap=run.unwrap,
    )
    metadata = _output_metadata(net, options, reference, ref_xy)
    rejected = [names_all[k] for k in range(len(names_all)) if stack.reasons[k] == "loop closure"]
    if rejected:
        metadata["REJECTED_BY_LOOP_CLOSURE"] = ",".join(rejected)
    with progress.timed("invert"):
        totals = _invert_pass(state, run.plans["invert"], grid, outputs, metadata, progress)
    if run.coh_stats is not None:  # summed by the reference pass
        totals.update(run.coh_stats)
    if run.unwrap is not None:
        _report_unwrap(run, totals, options, hooks)
    hooks.say(
        "%d pixels inverted, %d with gaps in their own network (%s)"
        % (totals["n_data"], totals["n_gap"], options.gap_handling)
    )
    return {
        "reference": reference,
        "reference_xy": ref_xy,
        "network_rows": network_table(stack, totals, run.extra),
        "n_pixels": totals["n_data"],
        "n_pixels_with_gaps": totals["n_gap"],
        "network_gaps": int(net.n_gaps()[0]),
        "n_dates": net.n_dates,
        "n_ifg": net.n_ifg,
        "rejected": rejected,
    }
