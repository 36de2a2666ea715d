"""Per-interferogram corrections and loop-closure passes of the streaming SBAS driver (no QGIS imports).

Order, as LiCSBAS (GACOS in step 03, before the loop closure of step 12 and the inversion of step 13):

1. *scan pass* (:func:`scan_block_task`): every window of every interferogram is read once; per
   interferogram it sums the statistics of the GACOS correction (standard deviation before / after) and
   the normal equations of the ramp fit, with and without the GACOS correction (the choice is made per
   interferogram once the whole image is seen); per loop, the loop-closure statistics (see 3.); and it
   scores the automatic reference pixel, so that all of this costs one read of the stack;
2. :class:`CorrectedFiles` then reads any window of an interferogram already corrected: minus the GACOS
   delay difference (where applied) minus the fitted ramp. The reference, loop-closure and inversion
   passes read through it, so they all see the same corrected values;
3. *loop closure*: the loop phase of every interferogram (GACOS-corrected - all of them, as a per-date delay
   closes in every loop -, not deramped: ramps of orbital or atmospheric origin are per date and close in
   every loop, while a ramp fitted to one interferogram absorbs part of an unwrapping error over a large
   area and would hide it), summed in the scan before the reference is known and referenced afterwards;
   the loop phase of every loop is computed from its three rows in cache-sized chunks and summed per loop
   (:func:`.loop_closure.window_stats`, on the threads the pass leaves to a window); the
   LiCSBAS rule then names the bad interferograms. The per-pixel count of unclosed loops is made in the inversion pass.

Window tasks are pure functions of (spec, shared) and return partial sums, so they run here or on Dask
and their sums are combined in window order.
"""

import numpy as np

from ..io.errors import TimeSeriesError
from . import deramp as dr
from . import loop_closure as lc
from .stack import StackFiles, read_files_into

#: bytes per pixel of the GACOS window cache (N date delays, float32) + sampling temporaries
GACOS_BYTES_PER_DATE = 4
GACOS_SAMPLE_BYTES = 96
#: loop phases computed at a time per thread (loops x pixels, :func:`.loop_closure.window_stats`) and the bytes of
#: their work arrays counted per window (one thread; each further loop thread of a window, given only when the pass
#: runs fewer windows at a time than threads, adds as much)
LOOP_CHUNK_ELEMENTS = lc.CHUNK_ELEMENTS
LOOP_CHUNK_BYTES = lc.CHUNK_BYTES


class CorrectedFiles:
    """Windows of interferogram files with their corrections applied (picklable: paths and small arrays).

    ``files``: a stack reader with ``paths``, ``read_one(k, row0, nrows, col0, ncols)`` and ``block_size()``;
    ``ref_idx``/``sec_idx`` (M,): date indices (into ``dates``) of each file's first (reference) and second
    (secondary) date; ``gacos``: a :class:`.gacos.GacosSet` or None, with ``incidence``, ``m2u`` (metres of
    delay to the files' units) and ``gacos_apply`` (M,) bool; ``ramp_mode`` / ``ramp_coef`` (M, p) in the
    files' units and the raster size for the ramp's coordinates.
    """

    def __init__(
        self,
        files,
        dates,
        ref_idx,
        sec_idx,
        grid,
        gacos=None,
        incidence=None,
        m2u=None,
        gacos_apply=None,
        ramp_mode=dr.DERAMP_NONE,
        ramp_coef=None,
    ):
        self.files = files
        self.paths = files.paths
        self.dates = list(dates)
        self.ref_idx = np.asarray(ref_idx)
        self.sec_idx = np.asarray(sec_idx)
        self.grid = grid
        self.gacos = gacos
        self.incidence = incidence
        self.m2u = m2u
        M = len(self.paths)
        self.gacos_apply = np.ones(M, bool) if gacos_apply is None else np.asarray(gacos_apply, bool)
        self.ramp_mode = ramp_mode
        self.ramp_coef = ramp_coef
        self._caches = {}  # per thread (windows run on several threads): {"delays": .., "design": ..}

    @property
    def active(self):
        return (self.gacos is not None and bool(self.gacos_apply.any())) or (
            self.ramp_mode != dr.DERAMP_NONE and self.ramp_coef is not None
        )

    def block_size(self):
        return self.files.block_size()

    def without_ramp(self):
        """The same reader without the ramp (GACOS kept): for the loop closure, in which per-date ramps
        close anyway while a fitted ramp would absorb part of a large-area unwrapping error."""
        return CorrectedFiles(
            self.files,
            self.dates,
            self.ref_idx,
            self.sec_idx,
            self.grid,
            self.gacos,
            self.incidence,
            self.m2u,
            self.gacos_apply,
            dr.DERAMP_NONE,
            None,
        )

    def for_loops(self):
        """The reader of the loop closure: GACOS applied to every interferogram (a per-date delay closes in
        every loop whether or not it improved an interferogram), no ramp."""
        return CorrectedFiles(
            self.files,
            self.dates,
            self.ref_idx,
            self.sec_idx,
            self.grid,
            self.gacos,
            self.incidence,
            self.m2u,
            None,
            dr.DERAMP_NONE,
            None,
        )

    def ramp_window(self, k, row0, nrows, col0, ncols):
        """The ramp (nrows, ncols) float32 subtracted from interferogram ``k`` (None without a ramp)."""
        if self.ramp_mode == dr.DERAMP_NONE or self.ramp_coef is None:
            return None
        key = ("design", row0, nrows, col0, ncols)
        mine = self._thread_cache()
        design = mine.get("design")
        if design is None or design[0] != key:
            design = mine["design"] = (
                key,
                dr.design(row0, nrows, col0, ncols, self.grid.ysize, self.grid.xsize, self.ramp_mode).T.astype(
                    np.float32
                ),
            )
        c = np.where(np.isfinite(self.ramp_coef[k]), self.ramp_coef[k], 0.0).astype(np.float32)
        return (c @ design[1]).reshape(nrows, ncols)

    def _thread_cache(self):
        """This thread's cache of the current window (windows may run on several threads at once)."""
        import threading

        return self._caches.setdefault(threading.get_ident(), {})

    def subset(self, keep):
        """The corrected reader of the files ``keep`` (bool or indices)."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        if hasattr(self.files, "subset"):
            sub = self.files.subset(idx)
        else:
            rasters = dict(zip(self.files.paths, getattr(self.files, "rasters", [None] * len(self.files.paths))))
            sub = type(self.files)([self.paths[k] for k in idx], rasters)
        return CorrectedFiles(
            sub,
            self.dates,
            self.ref_idx[idx],
            self.sec_idx[idx],
            self.grid,
            self.gacos,
            self.incidence,
            self.m2u,
            self.gacos_apply[idx],
            self.ramp_mode,
            None if self.ramp_coef is None else self.ramp_coef[idx],
        )

    def delays(self, row0, nrows, col0, ncols, data_mask=None):
        """Slant delays (N, nrows, ncols) float32 of every date on the window (kept for the window's files)."""
        key = (row0, nrows, col0, ncols)
        mine = self._thread_cache()
        cached = mine.get("delays")
        if cached is not None and cached[0] == key:
            return cached[1]
        mine.pop("delays", None)
        s = self.gacos.slant_delays(self.dates, self.incidence, row0, nrows, col0, ncols, data_mask).astype(np.float32)
        mine["delays"] = (key, s)
        return s

    def gacos_correction(self, k, row0, nrows, col0, ncols, data_mask=None):
        s = self.delays(row0, nrows, col0, ncols, data_mask)
        return (s[self.sec_idx[k]] - s[self.ref_idx[k]]) * np.float32(self.m2u)

    def valid_at(self, k, points):
        """Bool per (row, col): the uncorrected interferogram ``k`` has data there (the corrections are not
        applied: used by the reference search of runs without corrections)."""
        return self.files.valid_at(k, points)

    def read_one(self, k, row0, nrows, col0=0, ncols=None):
        ncols = self.grid.xsize - col0 if ncols is None else ncols
        a = self.files.read_one(k, row0, nrows, col0, ncols)
        if self.gacos is not None and self.gacos_apply[k]:
            a = a - self.gacos_correction(k, row0, nrows, col0, ncols, np.isfinite(a))
        r = self.ramp_window(k, row0, nrows, col0, ncols)
        if r is not None:
            a -= r
        return a

    # the windows of every file as the plain files give them, through this class's (corrected) read_one
    iter_window = StackFiles.iter_window

    def read(self, row0, nrows, col0=0, ncols=None, out=None, threads=1):
        """The corrected window of every file, ``(n_files, nrows, ncols)`` float32: the values as read go straight
        into the buffer (``threads`` files read at once, :func:`~.stack.read_files_into`) and are corrected there,
        file after file in this thread, with the same float32 operations as :meth:`read_one` (the same values bit
        for bit)."""
        ncols = self.grid.xsize - col0 if ncols is None else ncols
        if out is None:
            out = np.empty((len(self.paths), nrows, ncols), dtype=np.float32)
        read_files_into(self.files, out, row0, nrows, col0, ncols, threads)
        for k in range(len(self.paths)):
            a = out[k]
            if self.gacos is not None and self.gacos_apply[k]:
                a -= self.gacos_correction(k, row0, nrows, col0, ncols, np.isfinite(a))
            r = self.ramp_window(k, row0, nrows, col0, ncols)
            if r is not None:
                a -= r
        return out


def _window(task):
    """(row0, nrows, col0, ncols) of a window task (a WindowTask or a dict with ``window``)."""
    if isinstance(task, dict):
        return tuple(task["window"])
    return task.row0, task.nrows, task.col0, task.ncols


# --------------------------------------------------------------------------- scan pass
def scan_block_task(spec, shared):
    """One window of the scan pass (pure; picklable arguments): every interferogram of the window is read
    once and feeds, as asked by ``shared``,

    * the GACOS statistics (sum / sum of squares before and after, per interferogram) when ``files`` has a
      GACOS set;
    * the ramp normal equations (``ramp_mode``; right-hand sides 0 = after GACOS, 1 = without; reliable
      pixels: valid, coherence >= ``min_coherence`` when ``coh`` is given, outside the ``mask`` raster);
    * the loop statistics (``loop_net``; the loop phase of the GACOS-corrected, not deramped, unreferenced
      values times ``rad_per_unit``; observations below the coherence threshold left out);
    * the coherence sums per interferogram (``coh``);
    * a copy of the values as read (``scratch``: a :class:`~.stack.ScratchStack`, slots ``("ifg", path)`` and,
      with ``scratch_coherence``, ``("coh", path)``), from which the inversion pass reads instead of decoding
      the files again;
    * the window's values are read into ``buffers`` (optional, a :class:`~.sbas_stack.WindowBuffers`: the
      thread's buffers, reused by its next window) instead of new arrays;
    * the automatic reference candidate (``reference``: ``"coherence"`` - highest mean coherence of the valid
      observations - or ``"residual"`` - lowest residual RMS of an unweighted inversion of ``network`` in mm
      (``to_mm``, ``rad_per_mm``) in sub-blocks of ``sub_rows`` - among pixels with data in every
      interferogram).

    Returns the window's partial sums: ``gacos``, ``normals``, ``loops``, ``coh_sum``/``coh_n``,
    ``any_data`` and ``best`` (score, row, col) as present."""
    from .sbas_stack import REFERENCE_TICK_FILES, _sub_tick

    scan = _WindowScan(spec, shared)
    for k in range(scan.M):
        scan.add_file(k)
        if (k + 1) % REFERENCE_TICK_FILES == 0 or k + 1 == scan.M:
            _sub_tick()
    if scan.loop_net is not None:
        scan.out["loops"] = scan.loop_stats()
    if scan.ref_kind is not None:
        scan.out["best"] = scan.best_reference()
    scan.out["any_data"] = bool(scan.nvalid.max() > 0)
    _sub_tick()
    return scan.out


class _WindowScan:
    """The partial sums of one window of the scan pass (see :func:`scan_block_task`), file after file."""

    def __init__(self, spec, shared):
        self.spec, self.shared = spec, shared
        r0, h, c0, w = self.window = _window(spec)
        cf = self.cf = shared["files"]
        M = self.M = len(cf.paths)
        self.mode = shared.get("ramp_mode") or dr.DERAMP_NONE
        self.loop_net = shared.get("loop_net")
        self.ref_kind = shared.get("reference")
        self.coh_files = shared.get("coh")
        self.min_coherence = shared.get("min_coherence") or 0
        need_buf = self.loop_net is not None or self.ref_kind == "residual"
        # the window of every file (values as kept for the loops), in the thread's buffer reused window after
        # window when ``shared`` has ``buffers`` (a WindowBuffers: a new one is page-faulted in every window)
        self.buffers = shared.get("buffers")
        self.buf = self._work("scan", (M, h, w)) if need_buf else None
        self.out = out = {}
        if cf.gacos is not None:
            g = {k: np.zeros(M) for k in ("sum_b", "sumsq_b", "sum_a", "sumsq_a")}
            g["n"] = np.zeros(M, dtype=np.int64)
            out["gacos"] = g
            # standard deviations about a plane (before / after), as well as the plain ones
            out["gacos_normals"] = dr.empty_normals(M, dr.DERAMP_LINEAR, n_rhs=2)
            self.plane_design = dr.window_design(r0, h, c0, w, cf.grid.ysize, cf.grid.xsize, dr.DERAMP_LINEAR)
        if self.mode != dr.DERAMP_NONE:
            out["normals"] = dr.empty_normals(M, self.mode, n_rhs=2)
            self.excluded = None
            if shared.get("mask"):
                from ..io.rasters import open_raster, read_window

                ds = open_raster(shared["mask"])
                m = read_window(ds, c0, r0, w, h, bands=[1], dtype=np.float32)[0]
                ds = None
                self.excluded = np.isfinite(m) & (m != 0)
            self.ramp_design = dr.window_design(r0, h, c0, w, cf.grid.ysize, cf.grid.xsize, self.mode)
        if self.coh_files is not None:
            out["coh_sum"] = np.zeros(M)
            out["coh_n"] = np.zeros(M, dtype=np.int64)
        self.nvalid = np.zeros((h, w), dtype=np.int32)  # counts of at most M files
        self.csum = np.zeros((h, w), dtype=np.float32) if self.ref_kind == "coherence" else None
        # values as read (file units, before any correction) kept for the inversion pass (a ScratchStack)
        self.scratch = shared.get("scratch")
        self.scratch_coh = bool(shared.get("scratch_coherence"))

    def _work(self, key, shape):
        return np.empty(shape, np.float32) if self.buffers is None else self.buffers.get(key, shape)

    @staticmethod
    def _read(files, k, window, out):
        """File ``k``'s window, decoded into ``out`` where the reader can (else a new array)."""
        r0, h, c0, w = window
        if out is not None and hasattr(files, "read_into"):
            return files.read_into(k, r0, h, c0, w, out)
        return files.read_one(k, r0, h, c0, w)

    def add_file(self, k):
        """Read interferogram ``k`` of the window once and add it to every sum asked for."""
        r0, h, c0, w = self.window
        kept = None if self.buf is None else self.buf[k]
        a = self._read(self.cf.files, k, self.window, kept)  # the values as read, in ``kept`` where possible
        if self.scratch is not None:
            self.scratch.write(("ifg", self.cf.paths[k]), r0, c0, a)
        fin = np.isfinite(a)
        valid = fin
        coh = None
        if self.coh_files is not None:
            coh = self._read(self.coh_files, k, self.window, self._work("scan_coherence", (h, w)))
            if self.scratch_coh:
                self.scratch.write(("coh", self.coh_files.paths[k]), r0, c0, coh)
            cfin = np.isfinite(coh)
            self.out["coh_sum"][k] += float(np.where(cfin, coh, 0).sum(dtype=np.float64))
            self.out["coh_n"][k] += int(np.count_nonzero(cfin))
            if self.min_coherence > 0:
                valid = fin & (coh >= self.min_coherence)
        corr = self._add_gacos(k, a, fin) if self.cf.gacos is not None else None
        after = a - corr if corr is not None else a
        if self.mode != dr.DERAMP_NONE:
            rel = valid if corr is None else (valid & np.isfinite(corr))
            if self.excluded is not None:
                rel = rel & ~self.excluded
            dr.accumulate_one(self.out["normals"], k, [after, a], rel, *self.ramp_design)
        if self.ref_kind == "coherence":
            self.nvalid += valid
            np.add(self.csum, coh, out=self.csum, where=valid)  # = csum + where(valid, coh, 0), no temporary
        else:
            self.nvalid += fin
        if kept is not None:  # after (the corrected values) where valid, NaN elsewhere
            if after is not kept:
                np.copyto(kept, after)
            if valid is not fin:
                np.copyto(kept, np.float32(np.nan), where=~valid)

    def _add_gacos(self, k, a, fin):
        """The GACOS correction of interferogram ``k`` on the window; its before/after statistics added."""
        r0, h, c0, w = self.window
        cf = self.cf
        corr = cf.gacos_correction(k, r0, h, c0, w, fin)
        ok = fin & np.isfinite(corr)
        missing = fin & ~np.isfinite(corr)
        if missing.any():
            rr, cc = np.argwhere(missing)[0]
            raise TimeSeriesError(
                "GACOS has no delay (0 / NoData) at row %d, col %d where %s has data "
                "(dates %s / %s); fill the GACOS files or leave GACOS out"
                % (r0 + rr, c0 + cc, cf.paths[k], cf.dates[cf.ref_idx[k]], cf.dates[cf.sec_idx[k]])
            )
        g = self.out["gacos"]
        av = np.where(ok, a, 0).astype(np.float64)
        bv = np.where(ok, a - corr, 0).astype(np.float64)
        g["sum_b"][k] += av.sum()
        g["sumsq_b"][k] += (av * av).sum()
        g["sum_a"][k] += bv.sum()
        g["sumsq_a"][k] += (bv * bv).sum()
        g["n"][k] += int(ok.sum())
        dr.accumulate_one(self.out["gacos_normals"], k, [a, a - corr], ok, *self.plane_design)
        return corr

    def loop_stats(self):
        """Loop statistics of the window (loop phase in radians, from the three rows of each loop in cache-sized
        chunks, :func:`.loop_closure.window_stats`) on ``shared["loop_threads"]`` threads (the same statistics
        for any number)."""
        return lc.window_stats(
            self.loop_net,
            self.buf.reshape(self.M, -1),
            np.float32(self.shared["rad_per_unit"]),
            threads=self.shared.get("loop_threads", 1),
        )

    def best_reference(self):
        """(score, row, col) of the window's best reference candidate, or None."""
        from .reference import auto_reference

        r0, h, c0, w = self.window
        if self.ref_kind == "coherence":
            with np.errstate(all="ignore"):
                score = self.csum / np.maximum(self.nvalid, 1)
            higher_is_better = True
        else:
            from .sbas import sbas_invert_block

            score = np.empty((h, w))
            spec, shared = self.spec, self.shared
            s = spec.sub_rows if not isinstance(spec, dict) else spec.get("sub_rows", h)
            for a0 in range(0, h, s):
                b0 = min(h, a0 + s)
                _, q = sbas_invert_block(
                    self.buf[:, a0:b0] * np.float32(shared["to_mm"]),
                    shared["network"],
                    rad_per_unit=shared["rad_per_mm"],
                )
                score[a0:b0] = q["residual_rms"]
                del q
            higher_is_better = False
        rc = auto_reference(self.nvalid, self.M, score, higher_is_better=higher_is_better)
        return None if rc is None else (score[rc], r0 + rc[0], c0 + rc[1])


def corrections_block_task(spec, shared):
    """The corrections part of :func:`scan_block_task` alone (GACOS statistics, ramp normals)."""
    return scan_block_task(spec, dict(shared, loop_net=None, reference=None))


def combine(partials):
    """Sum the per-window results of :func:`scan_block_task` (in window order; dict entries summed per key,
    arrays summed; ``best``/``any_data`` left to the caller)."""
    total = {}
    for i in sorted(partials):
        for k, v in partials[i].items():
            if k in ("best", "any_data"):
                continue
            if isinstance(v, dict):
                if k not in total:
                    total[k] = {kk: vv.copy() for kk, vv in v.items()}
                else:
                    for kk, vv in v.items():
                        total[k][kk] += vv
            else:
                total[k] = v.copy() if k not in total else total[k] + v
    return total


def decide(total, names, tolerance, ramp_mode):
    """From the summed statistics: per interferogram whether GACOS is applied (std after <= std before x
    (1 + tolerance)), the table columns and the ramp coefficients of the data as corrected.

    The decision uses the plain standard deviations (those LiCSBAS reports in GACOS_info); the ones about a
    least-squares plane (``gacos_std_detrended_*``, a ramp removed) are reported too.

    Returns a dict: ``gacos_apply`` (M,) bool or None, ``gacos_std_before``/``after`` and
    ``gacos_std_detrended_before``/``after`` (M,) in file units, ``ramp_coef`` (M, p) or None, ``no_ramp``
    (indices of interferograms with too few reliable pixels)."""
    from .gacos import std_change

    out = {
        "gacos_apply": None,
        "gacos_std_before": None,
        "gacos_std_after": None,
        "ramp_coef": None,
        "no_ramp": np.zeros(0, dtype=np.intp),
    }
    if "gacos" in total:
        g = total["gacos"]
        sb, sa = std_change(g["sum_b"], g["sumsq_b"], g["sum_a"], g["sumsq_a"], g["n"])
        out["gacos_std_before"], out["gacos_std_after"] = sb, sa
        if "gacos_normals" in total:
            gn = total["gacos_normals"]
            db = np.sqrt(dr.residual_variance(gn, g["sumsq_b"], 0))
            da = np.sqrt(dr.residual_variance(gn, g["sumsq_a"], 1))
        else:
            db, da = sb, sa
        out["gacos_std_detrended_before"], out["gacos_std_detrended_after"] = db, da
        out["gacos_apply"] = ~(sa > sb * (1.0 + tolerance))
    if "normals" in total:
        nrm = total["normals"]
        M = nrm["xtx"].shape[0]
        coef_after, bad = dr.solve(nrm, rhs=0)
        coef_raw, _ = dr.solve(nrm, rhs=1)
        apply = out["gacos_apply"] if out["gacos_apply"] is not None else np.ones(M, bool)
        coef = np.where(apply[:, None], coef_after, coef_raw)
        coef[bad] = 0.0
        out["ramp_coef"] = coef
        out["no_ramp"] = bad
    return out


def mask_on_grid(source, grid, out_path):
    """Rasterise polygons (any OGR source) or warp a raster (nearest) onto ``grid`` as a 0/1 Byte GeoTIFF
    (1 = inside the polygons / non-zero raster value = excluded from the ramp fit). Returns ``out_path``."""
    from osgeo import gdal, ogr

    gt = grid.geotransform
    bounds = (gt[0], gt[3] + gt[5] * grid.ysize, gt[0] + gt[1] * grid.xsize, gt[3])
    vec = None
    try:
        vec = ogr.Open(str(source))
    except RuntimeError:
        vec = None
    if vec is not None and vec.GetLayerCount() > 0:
        vec = None
        ds = gdal.Rasterize(
            str(out_path),
            str(source),
            format="GTiff",
            outputType=gdal.GDT_Byte,
            outputBounds=bounds,
            width=grid.xsize,
            height=grid.ysize,
            burnValues=[1],
            initValues=[0],
            outputSRS=grid.projection or None,
            allTouched=False,
        )
    else:
        src = gdal.Open(str(source))
        if src is None:
            raise TimeSeriesError("DERAMP_MASK %s is neither a vector layer nor a raster GDAL can open" % source)
        src = None
        # Warp (lazily, a VRT) with NaN, not 0, as the destination NoData and write 0/1 ourselves: with
        # dstNodata=0, GDAL 3.13 (not 3.6 or 3.10) turns every valid 0 into 1.4e-45 "to avoid being treated as
        # NoData", which is non-zero, i.e. the whole grid would be excluded from the ramp fit.
        warped = gdal.Warp(
            "",
            str(source),
            format="VRT",
            outputBounds=bounds,
            width=grid.xsize,
            height=grid.ysize,
            dstSRS=grid.projection or None,
            resampleAlg="near",
            outputType=gdal.GDT_Float32,
            dstNodata=float("nan"),
        )
        if warped is None:
            raise TimeSeriesError("cannot bring DERAMP_MASK %s onto the interferogram grid" % source)
        ds = gdal.GetDriverByName("GTiff").Create(str(out_path), grid.xsize, grid.ysize, 1, gdal.GDT_Byte)
        if ds is not None:
            ds.SetGeoTransform(tuple(gt))
            if grid.projection:
                ds.SetProjection(grid.projection)
            rows = max(1, (1 << 22) // max(grid.xsize, 1))  # ~16 MB of float32 per block
            for r0 in range(0, grid.ysize, rows):
                h = min(rows, grid.ysize - r0)
                values = warped.GetRasterBand(1).ReadAsArray(0, r0, grid.xsize, h)
                ds.GetRasterBand(1).WriteArray((np.isfinite(values) & (values != 0)).astype(np.uint8), 0, r0)
        warped = None
    if ds is None:
        raise TimeSeriesError("cannot bring DERAMP_MASK %s onto the interferogram grid" % source)
    ds = None
    return str(out_path)
