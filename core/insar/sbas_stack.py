"""Streaming SBAS inversion of a stack of interferogram GeoTIFFs (no QGIS imports).

Drives :mod:`.sbas` over row blocks of M single-band rasters under a memory
cap: pair dates from file names or a pairs CSV, network selection,
coherence matching, grid checks, reference pixel / window (median) or an
automatic reference, then one pass writing the time series (mm, one band per
date), the velocity (mm/yr) and the quality layers, and a network table.
Outputs go through :class:`~subsidence_toolkit.core.io.rasters.RasterWriter`, so an error or a
cancellation leaves no output behind.
"""
import contextlib
import os
import threading

import numpy as np

from ..io.dates import format_date
from ..io.errors import TimeSeriesError
from ..io.rasters import RasterGrid, RasterWriter, check_band_numeric, open_raster, read_window
from ..io.tasks import run_tasks_here_or
from . import sbas
from .sbas import SENTINEL1_WAVELENGTH_M


class Canceled(Exception):
    """Raised between blocks when ``is_canceled()`` returns True."""


def _key(d1, d2):
    return (min(d1, d2), max(d1, d2))


def prepare_stack(ifg_paths, pairs_csv=None, coherence_paths=None, max_temporal_baseline=None,
                  max_perp_baseline=None, exclude=()):
    """Parse pairs, build and select the network, open and check every raster.

    Returns a dict: ``network_all`` (every pair), ``used`` (bool), ``reasons``,
    ``network`` (used pairs), ``ifg`` (paths of used pairs), ``coh`` (paths
    or None), ``grid``, ``paths_all``.
    """
    paths = [str(p) for p in ifg_paths]
    if not paths:
        raise TimeSeriesError("no interferograms given")
    if pairs_csv:
        rows = sbas.match_pairs_csv(paths, sbas.read_pairs_csv(pairs_csv), "pairs CSV %s" % pairs_csv)
        d1 = [r["date1"] for r in rows]
        d2 = [r["date2"] for r in rows]
        bp = [np.nan if r["bperp"] is None else r["bperp"] for r in rows]
        bperp = np.array(bp, dtype=float) if any(np.isfinite(bp)) else None
    else:
        pr = sbas.pairs_from_names(paths)
        d1 = [p[0] for p in pr]
        d2 = [p[1] for p in pr]
        bperp = None
    if max_perp_baseline and bperp is None:
        raise TimeSeriesError("a maximum perpendicular baseline needs baselines: give a pairs CSV with a bperp column")
    names = [os.path.basename(p) for p in paths]
    net_all = sbas.SbasNetwork(d1, d2, names, bperp)
    used, reasons = sbas.select_pairs(net_all, max_temporal_baseline, max_perp_baseline, exclude)
    if used.sum() == 0:
        raise TimeSeriesError("no interferogram left after the pair selection (%s)"
                              % "; ".join(sorted(set(reasons))))
    net = sbas.subnetwork(net_all, used)
    ifg = [paths[k] for k in np.flatnonzero(used)]

    # grids
    grid = None
    for p in paths:
        ds = open_raster(p)
        check_band_numeric(ds, p)
        g = RasterGrid.of(ds)
        if grid is None:
            grid, first = g, p
        elif not g.same_as(grid):
            raise TimeSeriesError("%s is on a different grid (%s) than %s (%s); resample the interferograms "
                                  "to one grid" % (p, g.describe(), os.path.basename(first), grid.describe()))
        ds = None

    coh = None
    if coherence_paths:
        cpaths = [str(p) for p in coherence_paths]
        cpairs = []
        bad = []
        for p in cpaths:
            pp = sbas.pair_from_name(p)
            if pp is None:
                bad.append(os.path.basename(p))
            cpairs.append(pp)
        if bad:
            raise TimeSeriesError("coherence files without a date pair in the name: %s" % ", ".join(bad))
        index = {}
        for p, (a, b) in zip(cpaths, cpairs):
            k = _key(a, b)
            if k in index:
                raise TimeSeriesError("two coherence files for the pair %s_%s: %s and %s" % (
                    k[0].strftime("%Y%m%d"), k[1].strftime("%Y%m%d"), os.path.basename(index[k]),
                    os.path.basename(p)))
            index[k] = p
        coh, missing = [], []
        for k in range(net.n_ifg):
            key = (net.dates[net.i1[k]], net.dates[net.i2[k]])
            if key not in index:
                missing.append(net.names[k])
            coh.append(index.get(key))
        if missing:
            raise TimeSeriesError("the coherence list does not match the interferograms: no coherence file for %s"
                                  % ", ".join(missing))
        for p in coh:
            ds = open_raster(p)
            g = RasterGrid.of(ds)
            if not g.same_as(grid):
                raise TimeSeriesError("coherence %s is on a different grid (%s) than the interferograms (%s)"
                                      % (p, g.describe(), grid.describe()))
            ds = None
    return {"network_all": net_all, "used": used, "reasons": reasons, "network": net, "ifg": ifg,
            "coh": coh, "grid": grid, "paths_all": paths}


def pixel_of(grid, x, y):
    """(row, col) of map coordinates in a north-up grid, or None when outside."""
    gt = grid.geotransform
    det = gt[1] * gt[5] - gt[2] * gt[4]
    dx, dy = x - gt[0], y - gt[3]
    col = (gt[5] * dx - gt[2] * dy) / det
    row = (-gt[4] * dx + gt[1] * dy) / det
    if not (0 <= col < grid.xsize and 0 <= row < grid.ysize):
        return None
    return int(np.floor(row)), int(np.floor(col))


# --------------------------------------------------------------------------- memory plan
MIB = 2 ** 20
OUT_TILE = 256            # tile side of the GeoTIFFs RasterWriter writes
MIN_GDAL_CACHE = 4 * MIB  # GDAL's block cache never gets less
OPEN_FILE_BYTES = MIB     # one open GeoTIFF while it is read: libtiff's compressed-block buffer, zlib state,
#                           PAM, measured 0.35-0.6 MB per dataset; files are opened one at a time for that reason
READ_BYTES_PX = 12        # temporaries of reading one file's window (GDAL array, NoData mask/where copy)
MIN_SUB_PIXELS = 2048     # smallest sub-block worth solving when a whole window of tiles is buffered
MAX_SUB_PIXELS = 32768    # larger sub-blocks are not faster (temporaries of M x pixels leave the CPU caches)
ALLOCATOR_SLACK = 0.15    # share of the cap left for what the plan does not count: memory the allocator keeps
#                           after numpy frees temporaries, GDAL/libtiff internals, Python objects (measured:
#                           peak RSS - traced peak ~ 10-15 % of the cap)
# Working memory of one pixel in a sub-block solve (sbas_invert_block with its workspace kept for the
# window's next sub-block, the velocity fit, outputs included; inputs not: they sit in the window buffer),
# measured with tracemalloc on the benchmark stack (M = 202 interferograms, N = 60 dates: 5.1 kB float32,
# 6.9 kB float64 without workspace, 19.4 kB weighted); tests/core/insar/test_sbas_stack.py checks the peak stays
# below: bytes per interferogram, per date and per pixel.
SOLVE_BYTES = {
    "float32": (18, 24, 512),     # unweighted, float32 solve
    "float64": (32, 16, 512),     # unweighted, float64 solve (automatic reference without coherence)
    "weighted": (88, 32, 512),    # float64 normal equations in band storage
}


def solve_bytes_per_pixel(n_ifg, n_dates, kind, bandwidth=0):
    """Working memory (bytes) of one pixel in :func:`invert_block_task`'s sub-block solve (see SOLVE_BYTES);
    a weighted solve of a network whose bandwidth exceeds 16 uses dense (N-1)^2 normal matrices."""
    a, b, c = SOLVE_BYTES[kind]
    dense = 16 * (n_dates - 1) ** 2 if kind == "weighted" and bandwidth > 16 else 0
    return a * n_ifg + b * n_dates + c + dense


def solve_bytes_fixed(n_ifg, n_dates):
    """Working memory of a sub-block solve that does not grow with its pixels: one chunk of the per-pixel
    SVD fallback (pixels whose own network lost rank), bounded by ``sbas.FALLBACK_CHUNK_BYTES``."""
    return min(sbas.FALLBACK_CHUNK_BYTES, 512 * sbas.FALLBACK_BYTES_PER_ENTRY * n_ifg * (n_dates + 1)) + MIB


def _out_tiles_open(h, w, ysize, xsize, out_bands):
    """Bytes of output tiles a window of h x w leaves partly written (they wait in GDAL's cache for the
    next windows), zero when windows cover whole output tiles."""
    rows_ok = h % OUT_TILE == 0 or h >= ysize
    cols_ok = w % OUT_TILE == 0 or w >= xsize
    if rows_ok and cols_ok:
        return 0
    return out_bands * (-(-w // OUT_TILE) + (0 if cols_ok else 1)) * OUT_TILE * OUT_TILE * 4


def plan_blocks(ysize, xsize, block_size, buf_bytes_px, solve_bytes_px, memory_mb, out_bands=0,
                in_sample_bytes=4, solve_fixed=0):
    """Windows and sub-blocks of a streamed pass whose memory stays under ``memory_mb``.

    A *window* (``row0, nrows, col0, ncols``) is read from every input file in turn (one file open at a
    time) into a buffer of ``buf_bytes_px`` bytes per pixel (all inputs of the window and its outputs),
    then solved in *sub-blocks* of ``sub_rows`` whole window rows of ``solve_bytes_px`` bytes per pixel
    (plus ``solve_fixed`` bytes per sub-block). The plan fills ``1 - ALLOCATOR_SLACK`` of the cap.
    Windows cover whole input blocks (GeoTIFF tiles or strips: ``block_size`` = (x, y)) so that every
    input block is decompressed once per pass; only when a window of one block row does not fit they
    get fewer rows (the blocks are then decompressed once per window). GDAL's block cache is part of
    the budget: it needs two input blocks plus the output tiles a window leaves partly written.

    Returns a dict: ``windows``, ``sub_rows``, ``gdal_cache`` (bytes), ``parts`` (bytes of ``cache``,
    ``buffers``, ``read``, ``solve``), ``total`` (their sum) and ``fits`` (False when even the smallest
    plan, one row of one block width, exceeds the budget; it is used anyway).
    """
    budget = float(memory_mb) * MIB * (1.0 - ALLOCATOR_SLACK)
    bw = min(max(1, int(block_size[0])), xsize)
    bh = min(max(1, int(block_size[1])), ysize)
    col_unit = xsize if bw >= xsize else bw
    row_unit = bh if bh >= OUT_TILE else max(bh, OUT_TILE // bh * bh)
    row_unit = min(row_unit, ysize)
    in_block = bw * bh * in_sample_bytes

    def cost(h, w):
        cache = max(MIN_GDAL_CACHE, 2 * in_block + _out_tiles_open(h, w, ysize, xsize, out_bands))
        fixed = {"cache": cache, "buffers": buf_bytes_px * h * w, "read": OPEN_FILE_BYTES + READ_BYTES_PX * h * w,
                 "solve_fixed": solve_fixed}
        return fixed, sum(fixed.values())

    cands = [(row_unit * k, xsize) for k in range(-(-ysize // row_unit), 0, -1)]
    cands += [(row_unit, col_unit * j) for j in range(-(-xsize // col_unit) - 1, 0, -1)]
    h = row_unit // 2
    while h >= 1:
        cands.append((h, col_unit))
        h //= 2
    choice = None
    for h, w in cands:
        h, w = min(h, ysize), min(w, xsize)
        fixed, tot = cost(h, w)
        if tot + solve_bytes_px * min(h * w, max(MIN_SUB_PIXELS, w)) <= budget:
            choice = (h, w, fixed, tot, True)
            break
    if choice is None:
        h, w = 1, col_unit
        fixed, tot = cost(h, w)
        choice = (h, w, fixed, tot, False)
    h, w, fixed, tot, fits = choice
    if solve_bytes_px > 0:
        sub = int((budget - tot) // (solve_bytes_px * w)) if budget > tot else 1
        sub = max(1, min(h, sub, max(1, MAX_SUB_PIXELS // w)))
    else:
        sub = h
    parts = {k: v for k, v in fixed.items() if k != "solve_fixed"}
    parts["solve"] = solve_bytes_px * sub * w + solve_fixed
    # windows in output tile rows, column by column inside one (a partly written output tile is
    # completed by the next windows before the cache has to keep others)
    wins = [(r, min(h, ysize - r), c, min(w, xsize - c)) for r in range(0, ysize, h) for c in range(0, xsize, w)]
    wins.sort(key=lambda t: (t[0] // OUT_TILE, t[2], t[0]))
    return {"windows": wins, "sub_rows": sub, "gdal_cache": int(fixed["cache"]), "parts": parts, "memory_mb": memory_mb,
            "budget": int(budget),
            "total": int(sum(parts.values())), "fits": fits and sum(parts.values()) <= budget}


# --------------------------------------------------------------------------- reading
class StackFiles:
    """Single-band rasters read as a stack of windows. Each file is opened, read and closed in turn: an
    open GeoTIFF keeps ~0.5 MB of decoder buffers once read, which for hundreds of inputs would be more
    than the memory cap. Holds only paths, so it pickles to a Dask worker."""

    def __init__(self, paths):
        self.paths = [str(p) for p in paths]

    def block_size(self):
        """(x, y) block size and the sample size in bytes of the first file's band 1."""
        from osgeo import gdal
        ds = open_raster(self.paths[0])
        b = ds.GetRasterBand(1)
        bs = b.GetBlockSize()
        return (int(bs[0]), int(bs[1])), max(1, gdal.GetDataTypeSize(b.DataType) // 8)

    def read_one(self, k, row0, nrows, col0=0, ncols=None):
        ds = open_raster(self.paths[k])
        try:
            return read_window(ds, col0, row0, ds.RasterXSize - col0 if ncols is None else ncols, nrows,
                               bands=[1], dtype=np.float32)[0]
        finally:
            ds = None

    def iter_window(self, row0, nrows, col0=0, ncols=None):
        """Yield ``(k, array)`` of every file's window, float32, NoData -> NaN."""
        for k in range(len(self.paths)):
            yield k, self.read_one(k, row0, nrows, col0, ncols)

    def read(self, row0, nrows, col0=0, ncols=None, out=None):
        """The window of every file as one ``(n_files, nrows, ncols)`` float32 array."""
        for k, a in self.iter_window(row0, nrows, col0, ncols):
            if out is None:
                out = np.empty((len(self.paths),) + a.shape, dtype=np.float32)
            out[k] = a
        return out


def _coherence_stats(k, coh, stats):
    cf = np.isfinite(coh)
    stats["coh_sum"][k] += float(np.where(cf, coh, 0).sum(dtype=np.float64))
    stats["coh_n"][k] += int(cf.sum())


def _worker_cache(shared):
    """Give GDAL's block cache the size chosen under the memory cap (a no-op in the driving process,
    which set it already; on a Dask worker the cap then holds there too)."""
    cache = shared.get("gdal_cache")
    if cache:
        from osgeo import gdal
        if gdal.GetCacheMax() != cache:
            gdal.SetCacheMax(int(cache))


# Progress/cancel hook of the local run: set by invert_stack for the thread that runs the tasks here, so
# a window of many sub-blocks still reports and cancels per sub-block; a Dask worker has none.
_LOCAL = threading.local()
REFERENCE_TICK_FILES = 32   # the streamed reference search reports (and checks cancel) every this many files


def _sub_tick():
    fn = getattr(_LOCAL, "tick", None)
    if fn is not None:
        fn()


def _windows(spec):
    w = spec["window"]
    return w[0], w[1], w[2], w[3]


def reference_block_task(spec, shared):
    """Pure window task of the automatic reference search (picklable, e.g. for Dask).

    ``spec``: ``window`` (row0, nrows, col0, ncols), ``sub_rows``; ``shared``: ``ifg``/``coh``
    (:class:`StackFiles`, coh may be None), ``min_coherence``, ``to_mm``, ``net``, ``rad_per_mm``, ``M``.
    Returns ``{"any_data": bool, "best": (score, row, col) or None}`` (the window's best candidate: highest
    mean coherence, or the lowest residual RMS without coherence, among pixels with data in every
    interferogram; first in row order on ties) and, with coherence, the per-interferogram coherence sums
    of the window (``coh_sum``, ``coh_n``). With coherence the files are streamed one at a time (a few
    bytes per pixel); without, the window is inverted in sub-blocks of ``sub_rows`` rows."""
    _worker_cache(shared)
    r0, h, c0, w = _windows(spec)
    M = shared["M"]
    min_coherence = shared["min_coherence"]
    if shared["coh"] is not None:
        # running sums over the interferograms, in their order: the same float32 sums as
        # np.where(valid, coh, 0).sum(axis=0) over the stacked window
        nvalid = np.zeros((h, w), dtype=np.intp)
        csum = np.zeros((h, w), dtype=np.float32)
        stats = {"coh_sum": np.zeros(M), "coh_n": np.zeros(M, dtype=np.int64)}
        cohs = shared["coh"]
        for k, phase in shared["ifg"].iter_window(r0, h, c0, w):
            coh = cohs.read_one(k, r0, h, c0, w)
            valid = np.isfinite(phase)
            if min_coherence and min_coherence > 0:
                valid &= coh >= min_coherence
            nvalid += valid
            csum += np.where(valid, coh, 0)
            _coherence_stats(k, coh, stats)
            del phase, coh, valid
            if (k + 1) % REFERENCE_TICK_FILES == 0 or k + 1 == M:
                _sub_tick()
        with np.errstate(all="ignore"):
            score = csum / np.maximum(nvalid, 1)
        hib = True
    else:
        phase = shared["ifg"].read(r0, h, c0, w)
        nvalid = np.zeros((h, w), dtype=np.intp)
        for k in range(M):
            nvalid += np.isfinite(phase[k])
        score = np.empty((h, w))
        s = spec["sub_rows"]
        for a in range(0, h, s):
            b = min(h, a + s)
            sub = phase[:, a:b]
            np.copyto(sub, np.nan, where=~np.isfinite(sub))
            _, q = sbas.sbas_invert_block(sub * shared["to_mm"], shared["net"], rad_per_unit=shared["rad_per_mm"])
            score[a:b] = q["residual_rms"]
            del q
            _sub_tick()
        del phase
        stats = {}
        hib = False
    rc = sbas.auto_reference(nvalid, M, score, higher_is_better=hib)
    out = {"any_data": bool(nvalid.max() > 0), "best": None if rc is None else (score[rc], r0 + rc[0], c0 + rc[1])}
    out.update(stats)
    return out


def _solve_sub_block(obs, coh, shared, stats, workspace=None):
    """Invert one sub-block (views into the window buffers; ``obs`` is overwritten): returns the float32
    time series, velocity and quality blocks and adds the residual statistics to ``stats``. ``workspace``:
    the solver's work arrays, reused by the next sub-block of the window."""
    net = shared["net"]
    obs -= shared["ref_vals"][:, None, None].astype(np.float32)
    obs *= np.float32(shared["to_mm"])
    ts, q = sbas.sbas_invert_block(obs, net, coherence_block=coh, weighting=shared["weighting"],
                                   looks=shared["looks"], min_coherence=shared["min_coherence"],
                                   gap_handling=shared["gap_handling"], rad_per_unit=shared["rad_per_mm"],
                                   dtype=shared["work"], workspace=workspace, ifg_stats=True)
    vel, vstd = sbas.velocity_fit(ts, net.tyears, shared["seasonal"])
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
    quality = (q["temporal_coherence"], nused, q["residual_rms"], vstd, gaps)
    return ts, vel, quality


def invert_block_task(spec, shared):
    """Pure window task of the SBAS inversion (picklable, e.g. for Dask): read the window of every
    interferogram (and coherence when the solve needs it) one file at a time, then reference, invert and
    fit the velocity in sub-blocks of ``spec["sub_rows"]`` rows.

    ``spec``: ``window`` (row0, nrows, col0, ncols), ``sub_rows``; ``shared``: ``ifg``/``coh``
    (:class:`StackFiles`), ``ref_vals``, ``to_mm``, ``net``, ``weighting``, ``looks``, ``min_coherence``,
    ``gap_handling``, ``rad_per_mm``, ``work`` dtype, ``seasonal``, ``coh_stats`` (sum the coherence per
    interferogram here), ``gdal_cache`` (bytes of GDAL's block cache, optional). Returns the float32
    output windows ``ts`` (N, rows, cols), ``vel`` (1, ...), ``quality`` (5, ...) and the window's partial
    network statistics (``sum_e2``, ``n``, ``coh_sum``, ``coh_n`` per interferogram, ``n_data``, ``n_gap``
    pixels)."""
    _worker_cache(shared)
    r0, h, c0, w = _windows(spec)
    net = shared["net"]
    M, N = net.n_ifg, net.n_dates
    weighted = shared["weighting"] != sbas.WEIGHT_NONE
    cohs = shared["coh"]
    need_coh = cohs is not None and (weighted or (shared["min_coherence"] or 0) > 0)
    stats = {"sum_e2": np.zeros(M), "n": np.zeros(M, dtype=np.int64), "n_data": 0, "n_gap": 0}
    if cohs is not None and shared.get("coh_stats", True):
        stats["coh_sum"] = np.zeros(M)
        stats["coh_n"] = np.zeros(M, dtype=np.int64)
    phase = shared["ifg"].read(r0, h, c0, w)
    coh = None
    if need_coh:
        coh = np.empty_like(phase)
        for k in range(M):
            coh[k] = cohs.read_one(k, r0, h, c0, w)
            if "coh_sum" in stats:
                _coherence_stats(k, coh[k], stats)
    elif "coh_sum" in stats:
        for k, c in cohs.iter_window(r0, h, c0, w):
            _coherence_stats(k, c, stats)
            del c
    out_ts = np.empty((N, h, w), dtype=np.float32)
    out_vel = np.empty((1, h, w), dtype=np.float32)
    out_q = np.empty((len(sbas.QUALITY_BANDS), h, w), dtype=np.float32)
    s = spec["sub_rows"]
    workspace = {}
    for a in range(0, h, s):
        b = min(h, a + s)
        ts, vel, quality = _solve_sub_block(phase[:, a:b], None if coh is None else coh[:, a:b], shared, stats,
                                            workspace)
        out_ts[:, a:b] = ts
        out_vel[0, a:b] = vel
        for i, qb in enumerate(quality):
            out_q[i, a:b] = qb
        del ts, vel, quality
        _sub_tick()
    del phase, coh, workspace
    stats.update(ts=out_ts, vel=out_vel, quality=out_q)
    return stats


def reference_window_values(ifg_files, row, col, half, grid, names):
    """Median of each interferogram over the (2 half + 1)^2 window at (row, col), clipped to the raster."""
    r0, r1 = max(0, row - half), min(grid.ysize, row + half + 1)
    c0, c1 = max(0, col - half), min(grid.xsize, col + half + 1)
    vals = np.stack([a.astype(np.float64).ravel() for _, a in ifg_files.iter_window(r0, r1 - r0, c0, c1 - c0)])
    ref, missing = sbas.reference_values(vals)
    if missing.any():
        bad = [names[k] for k in np.flatnonzero(missing)]
        raise TimeSeriesError("the reference pixel (row %d, col %d, window %dx%d) is NoData in %s"
                              % (row, col, r1 - r0, c1 - c0, ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else "")))
    return ref


def plan_stack(stack, weighting=sbas.WEIGHT_NONE, min_coherence=0.0, memory_mb=512, reference_pass=False):
    """Memory plans of the passes of :func:`invert_stack` (see :func:`plan_blocks`): ``invert`` and, for the
    automatic reference, ``reference``. Every byte our code allocates per window counts: GDAL's block
    cache, the window buffers (interferograms, coherence when the solve needs it, float32 outputs), one
    open file with its read temporaries and the sub-block solve."""
    net, grid = stack["network"], stack["grid"]
    M, N = net.n_ifg, net.n_dates
    files = StackFiles(stack["ifg"])
    bsize, sample = files.block_size()
    weighted = weighting != sbas.WEIGHT_NONE
    has_coh = bool(stack["coh"])
    need_coh = has_coh and (weighted or (min_coherence or 0) > 0)
    out_bands = N + 1 + len(sbas.QUALITY_BANDS)
    kind = "weighted" if weighted else "float32"
    fixed = solve_bytes_fixed(M, N)
    plans = {"invert": plan_blocks(grid.ysize, grid.xsize, bsize, 4 * (M * (2 if need_coh else 1) + out_bands),
                                   solve_bytes_per_pixel(M, N, kind, net.bandwidth), memory_mb, out_bands, sample,
                                   fixed)}
    if reference_pass:
        if has_coh:
            # per-pixel running count (intp) and coherence sum (float32), the score (float64); the
            # files are streamed (READ_BYTES_PX covers one file's window, x2 for phase + coherence)
            plans["reference"] = plan_blocks(grid.ysize, grid.xsize, bsize, 8 + 4 + 8 + READ_BYTES_PX + 2,
                                             0, memory_mb, 0, sample)
        else:
            plans["reference"] = plan_blocks(grid.ysize, grid.xsize, bsize, 4 * M + 16,
                                             solve_bytes_per_pixel(M, N, "float64"), memory_mb, 0, sample, fixed)
    return plans


def invert_stack(stack, out_ts, out_vel, out_quality, input_units=sbas.UNITS_RADIANS,
                 wavelength=SENTINEL1_WAVELENGTH_M,
                 flip_sign=False, weighting=sbas.WEIGHT_NONE, looks=sbas.DEFAULT_LOOKS, min_coherence=0.0,
                 gap_handling=sbas.GAP_MIN_NORM, reference=None, reference_half_window=0, seasonal=False,
                 memory_mb=512, progress=None, is_canceled=None, log=None, run_tasks=None):
    """Invert the prepared stack and write the outputs. Returns a summary dict with the network table rows.

    ``memory_mb`` bounds everything this function allocates, GDAL's block cache included (set for the
    run and restored afterwards); see :func:`plan_stack`.

    ``run_tasks(task_fn, tasks, shared)``: optional runner of the window tasks
    (:func:`reference_block_task`, :func:`invert_block_task`) yielding ``(index, result)`` in any
    order, e.g. on Dask (:func:`.parallel.map_blocks`); windows are written as they arrive and the
    statistics and the automatic reference are combined in window order, so results do not depend on it.

    ``reference``: (row, col) pixel or None for automatic (data in every
    interferogram and the highest mean coherence, or the lowest residual RMS
    when no coherence is given).
    """
    from osgeo import gdal
    weighted = weighting != sbas.WEIGHT_NONE
    if weighted and not stack["coh"]:
        raise TimeSeriesError("weighting '%s' needs the coherence rasters" % weighting)
    if min_coherence and min_coherence > 0 and not stack["coh"]:
        raise TimeSeriesError("a minimum coherence needs the coherence rasters")
    plans = plan_stack(stack, weighting, min_coherence, memory_mb, reference_pass=reference is None)
    cache = max(p["gdal_cache"] for p in plans.values())
    old_cache = gdal.GetCacheMax()
    gdal.SetCacheMax(cache)
    try:
        return _invert_stack(stack, out_ts, out_vel, out_quality, input_units, wavelength, flip_sign, weighting,
                             looks, min_coherence, gap_handling, reference, reference_half_window, seasonal,
                             plans, progress, is_canceled, log, run_tasks, cache)
    finally:
        gdal.SetCacheMax(old_cache)
        _LOCAL.tick = None


def _better(c, best, higher_is_better):
    """Candidate ``c`` (score, row, col) beats ``best``: better score, or the same score earlier in row order."""
    if best is None:
        return True
    if c[0] != best[0]:
        return c[0] > best[0] if higher_is_better else c[0] < best[0]
    return (c[1], c[2]) < (best[1], best[2])


def _invert_stack(stack, out_ts, out_vel, out_quality, input_units, wavelength, flip_sign, weighting, looks,
                  min_coherence, gap_handling, reference, reference_half_window, seasonal, plans, progress,
                  is_canceled, log, run_tasks=None, gdal_cache=None):
    log = log or (lambda s: None)
    progress = progress or (lambda f: None)
    net, grid = stack["network"], stack["grid"]
    M, N = net.n_ifg, net.n_dates
    to_mm = sbas.los_factor_mm(input_units, wavelength, flip_sign)
    rad_per_mm = sbas.radians_per_mm(wavelength)
    weighted = weighting != sbas.WEIGHT_NONE
    ifg_files = StackFiles(stack["ifg"])
    coh_files = StackFiles(stack["coh"]) if stack["coh"] else None
    names = net.names
    work = np.float64 if weighted else np.float32

    def n_sub(plan):
        if plan is plans.get("reference") and coh_files is not None:
            return [-(-M // REFERENCE_TICK_FILES)] * len(plan["windows"])
        return [-(-w[1] // plan["sub_rows"]) for w in plan["windows"]]

    steps = {k: n_sub(p) for k, p in plans.items()}
    n_steps = sum(sum(v) for v in steps.values())
    done = [0, 0]   # sub-blocks reported here, steps of the finished windows (Dask reports no sub-blocks)

    def report():
        progress(min(max(done), n_steps) / max(1, n_steps))
        if is_canceled is not None and is_canceled():
            raise Canceled()

    def tick():
        done[0] += 1
        report()

    def window_done(key, i):
        done[1] += steps[key][i]
        report()

    for key in ("reference", "invert"):
        if key in plans:
            p = plans[key]
            log("%s pass: %d windows of up to %d x %d px, sub-blocks of %d rows; planned %.0f MB of the %g MB cap "
                "(GDAL cache %.0f, buffers %.0f, reading %.0f, solve %.0f; %.0f %% left for allocator slack)%s"
                % (key, len(p["windows"]), max(w[1] for w in p["windows"]), max(w[3] for w in p["windows"]),
                   p["sub_rows"], p["total"] / MIB, p["memory_mb"], p["parts"]["cache"] / MIB,
                   p["parts"]["buffers"] / MIB, p["parts"]["read"] / MIB, p["parts"]["solve"] / MIB,
                   100 * ALLOCATOR_SLACK, "" if p["fits"] else " (the cap is below the smallest plan)"))
    _LOCAL.tick = tick   # reset by invert_stack

    # ------------------------------------------------------------ reference
    coh_stats = None
    if reference is None:
        best = None   # (score, row, col)
        any_data = False
        plan = plans["reference"]
        shared = dict(ifg=ifg_files, coh=coh_files, min_coherence=min_coherence, to_mm=to_mm, net=net,
                      rad_per_mm=rad_per_mm, M=M, gdal_cache=gdal_cache)
        found = {}
        tasks = [dict(window=wd, sub_rows=plan["sub_rows"]) for wd in plan["windows"]]
        for i, res in run_tasks_here_or(reference_block_task, tasks, run_tasks, shared):
            found[i] = res
            window_done("reference", i)
        for i in sorted(found):  # window order; ties go to the first pixel in row order
            res = found[i]
            any_data = any_data or res["any_data"]
            c = res["best"]
            if c is not None and _better(c, best, coh_files is not None):
                best = c
        if coh_files is not None:
            coh_stats = {"coh_sum": np.zeros(M), "coh_n": np.zeros(M, dtype=np.int64)}
            for i in sorted(found):
                coh_stats["coh_sum"] += found[i]["coh_sum"]
                coh_stats["coh_n"] += found[i]["coh_n"]
        del found
        if not any_data:
            raise TimeSeriesError("every pixel is NoData in every interferogram (%s ...)" % names[0])
        if best is None:
            raise TimeSeriesError("no pixel has data in every interferogram: give a reference point")
        reference = (best[1], best[2])
        how = "highest mean coherence %.3f" % best[0] if coh_files is not None else "lowest residual RMS %.3f mm" % best[0]
        log("automatic reference pixel: row %d, col %d (data in all %d interferograms, %s)"
            % (reference[0], reference[1], M, how))
    else:
        log("reference pixel: row %d, col %d" % reference)
    ref_vals = reference_window_values(ifg_files, reference[0], reference[1], reference_half_window, grid, names)
    gt = grid.geotransform
    ref_xy = (gt[0] + (reference[1] + 0.5) * gt[1] + (reference[0] + 0.5) * gt[2],
              gt[3] + (reference[1] + 0.5) * gt[4] + (reference[0] + 0.5) * gt[5])

    # ------------------------------------------------------------ inversion
    ifg_sum_e2 = np.zeros(M)
    ifg_n = np.zeros(M, dtype=np.int64)
    coh_sum = np.zeros(M)
    coh_n = np.zeros(M, dtype=np.int64)
    if coh_stats is not None:
        coh_sum, coh_n = coh_stats["coh_sum"], coh_stats["coh_n"]
    n_pix_data = 0
    n_pix_gap = 0
    meta = {"KIND": "deformation", "REFERENCE_ROW": reference[0], "REFERENCE_COL": reference[1], "REFERENCE_X": "%.10g" % ref_xy[0],
            "REFERENCE_Y": "%.10g" % ref_xy[1], "REFERENCE_DATE": format_date(net.dates[0]),
            "SIGN": "positive toward the satellite", "WAVELENGTH_M": wavelength, "GAP_HANDLING": gap_handling,
            "WEIGHTING": weighting, "METHOD": "SBAS (Berardino et al. 2002), minimum-norm interval velocities",
            "N_INTERFEROGRAMS": M}
    plan = plans["invert"]
    with contextlib.ExitStack() as es:
        w_ts = es.enter_context(RasterWriter(out_ts, grid, N, dates=net.dates, metadata=meta))
        w_vel = es.enter_context(RasterWriter(out_vel, grid, 1, band_names=["velocity_mm_per_year"],
                                              units="mm/yr", metadata=dict(meta, SEASONAL=int(bool(seasonal)))))
        w_q = es.enter_context(RasterWriter(out_quality, grid, len(sbas.QUALITY_BANDS),
                                            band_names=list(sbas.QUALITY_BANDS), units="", metadata=meta))
        shared = dict(ifg=ifg_files, coh=coh_files, ref_vals=ref_vals, to_mm=to_mm, net=net, weighting=weighting,
                      looks=looks, min_coherence=min_coherence, gap_handling=gap_handling, rad_per_mm=rad_per_mm,
                      work=work, seasonal=seasonal, gdal_cache=gdal_cache, coh_stats=coh_stats is None)
        stats = {}
        tasks = [dict(window=wd, sub_rows=plan["sub_rows"]) for wd in plan["windows"]]
        for i, res in run_tasks_here_or(invert_block_task, tasks, run_tasks, shared):
            row0, _, col0, _ = plan["windows"][i]
            w_ts.write_block(row0, res.pop("ts"), col0)
            w_vel.write_block(row0, res.pop("vel"), col0)
            w_q.write_block(row0, res.pop("quality"), col0)
            stats[i] = res
            window_done("invert", i)
        for i in sorted(stats):  # window order, not arrival order: identical sums locally and on Dask
            res = stats[i]
            ifg_sum_e2 += res["sum_e2"]
            ifg_n += res["n"]
            if "coh_sum" in res:
                coh_sum += res["coh_sum"]
                coh_n += res["coh_n"]
            n_pix_data += res["n_data"]
            n_pix_gap += res["n_gap"]
        if n_pix_data == 0:
            raise TimeSeriesError("every pixel is NoData in every interferogram (%s ...)" % names[0])
    log("%d pixels inverted, %d with gaps in their own network (%s)" % (n_pix_data, n_pix_gap, gap_handling))

    # network table (every input pair)
    na = stack["network_all"]
    used = stack["used"]
    uidx = {k: j for j, k in enumerate(np.flatnonzero(used))}
    rows = []
    for k in range(na.n_ifg):
        j = uidx.get(k)
        d1 = na.dates[na.i1[k]] if na.sign[k] > 0 else na.dates[na.i2[k]]
        d2 = na.dates[na.i2[k]] if na.sign[k] > 0 else na.dates[na.i1[k]]
        rows.append({
            "file": stack["paths_all"][k],
            "reference_date": format_date(d1),
            "secondary_date": format_date(d2),
            "temporal_baseline_days": float(abs((d2 - d1).days)),
            "perp_baseline_m": float(na.bperp[k]) if na.bperp is not None and np.isfinite(na.bperp[k]) else np.nan,
            "used": bool(used[k]),
            "status": "used" if used[k] else stack["reasons"][k],
            "mean_coherence": float(coh_sum[j] / coh_n[j]) if j is not None and coh_n[j] > 0 else np.nan,
            "residual_rms_mm": float(np.sqrt(ifg_sum_e2[j] / ifg_n[j])) if j is not None and ifg_n[j] > 0 else np.nan,
            "n_pixels_used": int(ifg_n[j]) if j is not None else 0,
        })
    return {"reference": reference, "reference_xy": ref_xy, "network_rows": rows, "n_pixels": n_pix_data,
            "n_pixels_with_gaps": n_pix_gap, "network_gaps": int(net.n_gaps()[0]), "n_dates": N, "n_ifg": M}
