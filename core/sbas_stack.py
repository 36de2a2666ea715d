"""Streaming SBAS inversion of a stack of interferogram GeoTIFFs (no QGIS imports).

Drives :mod:`.sbas` over row blocks of M single-band rasters under a memory
cap: pair dates from file names or a pairs CSV, network selection,
coherence matching, grid checks, reference pixel / window (median) or an
automatic reference, then one pass writing the time series (mm, one band per
date), the velocity (mm/yr) and the quality layers, and a network table.
Outputs go through :class:`~.tsraster.RasterWriter`, so an error or a
cancellation leaves no output behind.
"""
import contextlib
import os
import threading

import numpy as np

from . import sbas
from .parallel import run_tasks_here_or
from .tsraster import (SENTINEL1_WAVELENGTH_M, RasterGrid, RasterWriter, TimeSeriesError, check_band_numeric, format_date, open_raster,
                       read_block, read_window, row_blocks)


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


def _open_all(paths):
    return [open_raster(p) for p in paths]


def _read_stack(dss, row0, nrows, dtype=np.float32):
    out = np.empty((len(dss), nrows, dss[0].RasterXSize), dtype=dtype)
    for k, ds in enumerate(dss):
        out[k] = read_block(ds, row0, nrows, bands=[1], dtype=dtype)[0]
    return out


class StackFiles:
    """Single-band rasters read as a stack of row blocks; GDAL handles are opened lazily per thread and
    dropped when pickled (a Dask worker re-opens the files from their paths)."""

    def __init__(self, paths):
        self.paths = [str(p) for p in paths]
        self._ds = {}

    def __getstate__(self):
        return {"paths": self.paths, "_ds": {}}

    def datasets(self):
        key = threading.get_ident()
        if key not in self._ds:
            self._ds[key] = _open_all(self.paths)
        return self._ds[key]

    def read(self, row0, nrows, dtype=np.float32):
        return _read_stack(self.datasets(), row0, nrows, dtype=dtype)


def _worker_cache(shared):
    """Give GDAL's block cache the size chosen under the memory cap (a no-op in the driving process,
    which set it already; on a Dask worker the cap then holds there too)."""
    cache = shared.get("gdal_cache")
    if cache:
        from osgeo import gdal
        if gdal.GetCacheMax() != cache:
            gdal.SetCacheMax(int(cache))


def reference_block_task(spec, shared):
    """Pure row-block task of the automatic reference search (picklable, e.g. for Dask).

    ``spec``: ``block`` (row0, nrows); ``shared``: ``ifg``/``coh`` (:class:`StackFiles`, coh may be
    None), ``min_coherence``, ``to_mm``, ``net``, ``rad_per_mm``, ``M``. Returns ``{"any_data": bool,
    "best": (score, row, col) or None}``: the block's best candidate (highest mean coherence, or the
    lowest residual RMS without coherence) among pixels with data in every interferogram."""
    _worker_cache(shared)
    row0, nrows = spec["block"]
    min_coherence = shared["min_coherence"]
    phase = shared["ifg"].read(row0, nrows)
    coh = shared["coh"].read(row0, nrows) if shared["coh"] is not None else None
    valid = np.isfinite(phase)
    if coh is not None and min_coherence and min_coherence > 0:
        valid &= coh >= min_coherence
    nvalid = valid.sum(axis=0)
    any_data = bool(nvalid.max() > 0)
    if coh is not None:
        with np.errstate(all="ignore"):
            score = np.where(valid, coh, 0).sum(axis=0) / np.maximum(nvalid, 1)
        hib = True
    else:
        _, q = sbas.sbas_invert_block(np.where(valid, phase, np.nan) * shared["to_mm"], shared["net"],
                                      rad_per_unit=shared["rad_per_mm"])
        score = q["residual_rms"]
        hib = False
    rc = sbas.auto_reference(nvalid, shared["M"], score, higher_is_better=hib)
    return {"any_data": any_data, "best": None if rc is None else (score[rc], row0 + rc[0], rc[1])}


def invert_block_task(spec, shared):
    """Pure row-block task of the SBAS inversion (picklable, e.g. for Dask): read, reference, invert,
    fit the velocity. ``spec``: ``block`` (row0, nrows); ``shared``: ``ifg``/``coh`` (:class:`StackFiles`),
    ``ref_vals``, ``to_mm``, ``net``, ``weighting``, ``looks``, ``min_coherence``, ``gap_handling``,
    ``rad_per_mm``, ``work`` dtype, ``seasonal``, ``gdal_cache`` (bytes of GDAL's block cache, optional).
    Returns the float32 output blocks ``ts`` (N, rows, cols), ``vel`` (1, ...), ``quality`` (5, ...) and
    the block's partial network statistics (``sum_e2``, ``n``, ``coh_sum``, ``coh_n`` per interferogram,
    ``n_data``, ``n_gap`` pixels)."""
    _worker_cache(shared)
    row0, nrows = spec["block"]
    net = shared["net"]
    M = net.n_ifg
    min_coherence = shared["min_coherence"]
    weighting = shared["weighting"]
    weighted = weighting != sbas.WEIGHT_NONE
    phase = shared["ifg"].read(row0, nrows, dtype=np.float32)
    coh = shared["coh"].read(row0, nrows, dtype=np.float32) if shared["coh"] is not None else None
    obs = phase
    obs -= shared["ref_vals"][:, None, None].astype(np.float32)
    obs *= np.float32(shared["to_mm"])
    ts, q = sbas.sbas_invert_block(obs, net, coherence_block=coh, weighting=weighting, looks=shared["looks"],
                                   min_coherence=min_coherence, gap_handling=shared["gap_handling"],
                                   rad_per_unit=shared["rad_per_mm"], dtype=shared["work"])
    vel, vstd = sbas.velocity_fit(ts, net.tyears, shared["seasonal"])
    has = q["n_ifg_used"] > 0
    # per-interferogram residual statistics for the network table
    valid = np.isfinite(obs)
    if coh is not None and min_coherence and min_coherence > 0:
        valid &= coh >= min_coherence
    if weighted:
        valid &= np.isfinite(coh)
    tsz = np.nan_to_num(ts)
    e = tsz[net.i2]
    e -= tsz[net.i1]
    np.subtract(obs * net.sign[:, None, None].astype(obs.dtype), e, out=e)
    e[~valid] = 0
    out = {"sum_e2": np.einsum("mp,mp->m", e.reshape(M, -1), e.reshape(M, -1), dtype=np.float64)}
    del e
    out["n"] = valid.reshape(M, -1).sum(axis=1)
    if coh is not None:
        cf = np.isfinite(coh)
        out["coh_sum"] = np.where(cf, coh, 0).reshape(M, -1).sum(axis=1)
        out["coh_n"] = cf.reshape(M, -1).sum(axis=1)
    out["n_data"] = int(has.sum())
    out["n_gap"] = int((q["n_gaps"] > 0).sum())
    gaps = q["n_gaps"].astype(np.float32)
    gaps[~has] = np.nan
    nused = q["n_ifg_used"].astype(np.float32)
    nused[~has] = np.nan
    out["ts"] = ts.astype(np.float32)
    out["vel"] = vel.astype(np.float32)[None]
    out["quality"] = np.stack([q["temporal_coherence"], nused, q["residual_rms"], vstd, gaps]).astype(np.float32)
    return out


def reference_window_values(ifg_dss, row, col, half, grid, names):
    """Median of each interferogram over the (2 half + 1)^2 window at (row, col), clipped to the raster."""
    r0, r1 = max(0, row - half), min(grid.ysize, row + half + 1)
    c0, c1 = max(0, col - half), min(grid.xsize, col + half + 1)
    vals = np.stack([read_window(ds, c0, r0, c1 - c0, r1 - r0, bands=[1])[0].ravel() for ds in ifg_dss])
    ref, missing = sbas.reference_values(vals)
    if missing.any():
        bad = [names[k] for k in np.flatnonzero(missing)]
        raise TimeSeriesError("the reference pixel (row %d, col %d, window %dx%d) is NoData in %s"
                              % (row, col, r1 - r0, c1 - c0, ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else "")))
    return ref


def invert_stack(stack, out_ts, out_vel, out_quality, input_units=sbas.UNITS_RADIANS,
                 wavelength=SENTINEL1_WAVELENGTH_M,
                 flip_sign=False, weighting=sbas.WEIGHT_NONE, looks=sbas.DEFAULT_LOOKS, min_coherence=0.0,
                 gap_handling=sbas.GAP_MIN_NORM, reference=None, reference_half_window=0, seasonal=False,
                 memory_mb=512, progress=None, is_canceled=None, log=None, run_tasks=None):
    """Invert the prepared stack and write the outputs. Returns a summary dict with the network table rows.

    ``run_tasks(task_fn, tasks, shared)``: optional runner of the row-block tasks
    (:func:`reference_block_task`, :func:`invert_block_task`) yielding ``(index, result)`` in any
    order, e.g. on Dask (:func:`.parallel.map_blocks`); blocks are written as they arrive and the
    statistics and the automatic reference are combined in block order, so results do not depend on it.

    ``reference``: (row, col) pixel or None for automatic (data in every
    interferogram and the highest mean coherence, or the lowest residual RMS
    when no coherence is given).
    """
    # The memory cap covers GDAL's block cache and our row blocks. When one row of tiles/strips of
    # every input fits in half of the cap, the cache holds it (each tile is decompressed once);
    # otherwise the cache gets a quarter of the cap.
    from osgeo import gdal
    tile_row = 0
    for p in list(stack["ifg"]) + list(stack["coh"] or []):
        ds = open_raster(p)
        b = ds.GetRasterBand(1)
        bh = b.GetBlockSize()[1]
        tile_row += bh * ds.RasterXSize * gdal.GetDataTypeSize(b.DataType) // 8
        ds = None
    cap = memory_mb * 2 ** 20
    cache = int(1.15 * tile_row) + 8 * 2 ** 20 if tile_row * 1.15 + 8 * 2 ** 20 <= 0.5 * cap else int(0.25 * cap)
    cache = max(cache, 16 * 2 ** 20)
    old_cache = gdal.GetCacheMax()
    gdal.SetCacheMax(cache)
    try:
        return _invert_stack(stack, out_ts, out_vel, out_quality, input_units, wavelength, flip_sign, weighting,
                             looks, min_coherence, gap_handling, reference, reference_half_window, seasonal,
                             ((cap - cache) if cap - cache > 0.25 * cap else 0.75 * cap) / 2 ** 20, progress, is_canceled, log,
                             run_tasks, cache)
    finally:
        gdal.SetCacheMax(old_cache)


def _invert_stack(stack, out_ts, out_vel, out_quality, input_units, wavelength, flip_sign, weighting, looks,
                  min_coherence, gap_handling, reference, reference_half_window, seasonal, memory_mb, progress,
                  is_canceled, log, run_tasks=None, gdal_cache=None):
    log = log or (lambda s: None)
    progress = progress or (lambda f: None)
    net, grid = stack["network"], stack["grid"]
    M, N = net.n_ifg, net.n_dates
    to_mm = sbas.los_factor_mm(input_units, wavelength, flip_sign)
    rad_per_mm = sbas.radians_per_mm(wavelength)
    weighted = weighting != sbas.WEIGHT_NONE
    if weighted and not stack["coh"]:
        raise TimeSeriesError("weighting '%s' needs the coherence rasters" % weighting)
    if min_coherence and min_coherence > 0 and not stack["coh"]:
        raise TimeSeriesError("a minimum coherence needs the coherence rasters")
    ifg_files = StackFiles(stack["ifg"])
    coh_files = StackFiles(stack["coh"]) if stack["coh"] else None
    ifg_ds = ifg_files.datasets()
    coh_ds = coh_files.datasets() if coh_files is not None else None
    names = net.names
    # working memory per pixel measured with tracemalloc: ~21 B per interferogram unweighted (float32),
    # ~80 B weighted (float64 normal equations), plus the float32 inputs and the outputs
    per_ifg = 8 + (4 if coh_ds else 0) + (92 if weighted else 40)
    bytes_per_row = grid.xsize * (M * per_ifg + N * 48 + 256)
    work = np.float64 if weighted else np.float32
    blocks = row_blocks(grid.ysize, bytes_per_row, memory_mb)
    n_steps = len(blocks) * (2 if reference is None else 1)
    step = [0]

    def tick():
        step[0] += 1
        progress(step[0] / max(1, n_steps))
        if is_canceled is not None and is_canceled():
            raise Canceled()

    # ------------------------------------------------------------ reference
    any_data = None
    if reference is None:
        best = None   # (score, row, col)
        any_data = False
        shared = dict(ifg=ifg_files, coh=coh_files, min_coherence=min_coherence, to_mm=to_mm, net=net,
                      rad_per_mm=rad_per_mm, M=M, gdal_cache=gdal_cache)
        found = {}
        for i, res in run_tasks_here_or(reference_block_task, [dict(block=b) for b in blocks], run_tasks, shared):
            found[i] = res
            tick()
        for i in sorted(found):  # block order: ties go to the first block, as in a sequential run
            res = found[i]
            any_data = any_data or res["any_data"]
            c = res["best"]
            if c is not None and (best is None or (c[0] > best[0] if coh_ds else c[0] < best[0])):
                best = c
        if not any_data:
            raise TimeSeriesError("every pixel is NoData in every interferogram (%s ...)" % names[0])
        if best is None:
            raise TimeSeriesError("no pixel has data in every interferogram: give a reference point")
        reference = (best[1], best[2])
        how = "highest mean coherence %.3f" % best[0] if coh_ds else "lowest residual RMS %.3f mm" % best[0]
        log("automatic reference pixel: row %d, col %d (data in all %d interferograms, %s)"
            % (reference[0], reference[1], M, how))
    else:
        log("reference pixel: row %d, col %d" % reference)
    ref_vals = reference_window_values(ifg_ds, reference[0], reference[1], reference_half_window, grid, names)
    gt = grid.geotransform
    ref_xy = (gt[0] + (reference[1] + 0.5) * gt[1] + (reference[0] + 0.5) * gt[2],
              gt[3] + (reference[1] + 0.5) * gt[4] + (reference[0] + 0.5) * gt[5])

    # ------------------------------------------------------------ inversion
    ifg_sum_e2 = np.zeros(M)
    ifg_n = np.zeros(M, dtype=np.int64)
    coh_sum = np.zeros(M)
    coh_n = np.zeros(M, dtype=np.int64)
    n_pix_data = 0
    n_pix_gap = 0
    meta = {"KIND": "deformation", "REFERENCE_ROW": reference[0], "REFERENCE_COL": reference[1], "REFERENCE_X": "%.10g" % ref_xy[0],
            "REFERENCE_Y": "%.10g" % ref_xy[1], "REFERENCE_DATE": format_date(net.dates[0]),
            "SIGN": "positive toward the satellite", "WAVELENGTH_M": wavelength, "GAP_HANDLING": gap_handling,
            "WEIGHTING": weighting, "METHOD": "SBAS (Berardino et al. 2002), minimum-norm interval velocities",
            "N_INTERFEROGRAMS": M}
    with contextlib.ExitStack() as es:
        w_ts = es.enter_context(RasterWriter(out_ts, grid, N, dates=net.dates, metadata=meta))
        w_vel = es.enter_context(RasterWriter(out_vel, grid, 1, band_names=["velocity_mm_per_year"],
                                              units="mm/yr", metadata=dict(meta, SEASONAL=int(bool(seasonal)))))
        w_q = es.enter_context(RasterWriter(out_quality, grid, len(sbas.QUALITY_BANDS),
                                            band_names=list(sbas.QUALITY_BANDS), units="", metadata=meta))
        shared = dict(ifg=ifg_files, coh=coh_files, ref_vals=ref_vals, to_mm=to_mm, net=net, weighting=weighting,
                      looks=looks, min_coherence=min_coherence, gap_handling=gap_handling, rad_per_mm=rad_per_mm,
                      work=work, seasonal=seasonal, gdal_cache=gdal_cache)
        stats = {}
        for i, res in run_tasks_here_or(invert_block_task, [dict(block=b) for b in blocks], run_tasks, shared):
            row0 = blocks[i][0]
            w_ts.write_block(row0, res.pop("ts"))
            w_vel.write_block(row0, res.pop("vel"))
            w_q.write_block(row0, res.pop("quality"))
            stats[i] = res
            tick()
        for i in sorted(stats):  # block order, not arrival order: identical sums locally and on Dask
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
