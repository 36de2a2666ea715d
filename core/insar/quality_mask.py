"""Mask SBAS results by their quality layers (no QGIS imports).

The thresholds of LiCSBAS step 15 (``LiCSBAS15_mask_ts.py``, Morishita et al. 2020) applied to the bands
of the SBAS quality raster this toolkit writes (found by band description): a pixel is kept when it has
data and passes every threshold that is set (a NaN in a thresholded band is not evaluated there); the
velocity and time series are copied with the other pixels set to NoData, and a 0/1 mask (NaN where the
quality raster has no data) is written. Streams in row blocks under a memory cap; outputs are written
atomically.
"""

import contextlib
import dataclasses

import numpy as np

from ..io.errors import Cancelled, TimeSeriesError
from ..io.rasters import RasterGrid, RasterWriter, block_layout, open_raster, read_window
from ..io.windows import plan_windows, window_cache

#: (key, quality band, comparison, default, description). Defaults: LiCSBAS step 15 for C band where it has
#: the same quantity (n_loop_err 5, resid_rms 2 mm, vstd 100 mm/yr, n_gap 10); temporal coherence: MintPy's
#: minTempCoh 0.7 (LiCSBAS has none); number of interferograms: off (LiCSBAS's is a ratio to the dates).
THRESHOLDS = (
    ("MIN_TEMPORAL_COHERENCE", "temporal_coherence", ">=", 0.7, "temporal coherence below"),
    ("MAX_RESIDUAL_RMS", "residual_rms_mm", "<=", 2.0, "residual RMS (mm) above"),
    ("MAX_LOOP_ERRORS", "n_loop_errors", "<=", 5, "loops with an unclosed 2 pi above"),
    ("MIN_INTERFEROGRAMS", "n_ifg_used", ">=", None, "interferograms used below"),
    ("MAX_VELOCITY_STD", "velocity_std_mm_yr", "<=", 100.0, "velocity standard deviation (mm/yr) above"),
    ("MAX_GAPS", "n_gaps", "<=", 10, "network gaps above"),
)
DEFAULTS = {k: d for k, _, _, d, _ in THRESHOLDS}


def _bands_by_name(ds):
    return {(ds.GetRasterBand(i).GetDescription() or "").strip().lower(): i for i in range(1, ds.RasterCount + 1)}


def _active_thresholds(thresholds, names, quality_path, log):
    """The thresholds set and present in the quality raster: (key, band, op, value, desc, band index)."""
    active = []
    for key, band, op, _, desc in THRESHOLDS:
        val = thresholds.get(key)
        if val is None:
            continue
        if band not in names:
            log(
                "%s: the quality raster %s has no band '%s' (written by an older version?): threshold not applied"
                % (key, quality_path, band)
            )
            continue
        active.append((key, band, op, float(val), desc, names[band]))
    return active


def _checked_inputs(grid, quality_path, velocity_path, timeseries_path, out_velocity, out_timeseries):
    """(path, output, band count, kind) of the rasters to mask; each must be on the quality raster's grid."""
    inputs = []
    for path, out, kind in (
        (velocity_path, out_velocity, "velocity"),
        (timeseries_path, out_timeseries, "time series"),
    ):
        if path:
            ds = open_raster(path)
            g = RasterGrid.of(ds)
            if not g.same_as(grid):
                raise TimeSeriesError(
                    "the %s raster %s is on another grid (%s) than the quality raster %s (%s)"
                    % (kind, path, g.describe(), quality_path, grid.describe())
                )
            if not out:
                raise TimeSeriesError("no output given for the %s" % kind)
            inputs.append((path, out, ds.RasterCount, kind))
            ds = None
    return inputs


def _open_writers(es, inputs, grid, out_mask, rule_text):
    """The writers of the masked copies [(input path, writer, bands)] and of the mask (or None), in ``es``."""
    writers = []
    for path, out, n, kind in inputs:
        ds = open_raster(path)
        b1 = ds.GetRasterBand(1)
        descr = [ds.GetRasterBand(i).GetDescription() for i in range(1, n + 1)]
        md = dict(ds.GetMetadata() or {})
        md["MASKED_BY_QUALITY"] = rule_text
        units = b1.GetUnitType() or md.get("UNITS", "")
        ds = None
        w = RasterWriter(out, grid, n, band_names=descr, units=units, metadata=md)
        writers.append((path, es.enter_context(w), n))
    wm = (
        es.enter_context(
            RasterWriter(
                out_mask,
                grid,
                1,
                band_names=["quality_mask"],
                units="",
                metadata={"KIND": "mask", "THRESHOLDS": rule_text},
            )
        )
        if out_mask
        else None
    )
    return writers, wm


def _window_failures(quality_path, active, window):
    """(pixels with any quality data, bool (thresholds, nr, nc) failing each threshold) in the window
    ``(row0, nrows, col0, ncols)``."""
    r0, nr, c0, nc = window
    q_any = None
    fail_stack = np.zeros((len(active), nr, nc), dtype=bool)
    qds = open_raster(quality_path)
    for i in range(1, qds.RasterCount + 1):
        a = read_window(qds, c0, r0, nc, nr, bands=[i])[0]
        f = np.isfinite(a)
        q_any = f if q_any is None else (q_any | f)
    for j, (key, band, op, val, desc, bidx) in enumerate(active):
        a = read_window(qds, c0, r0, nc, nr, bands=[bidx])[0]
        with np.errstate(invalid="ignore"):
            ok = a >= val if op == ">=" else a <= val
        # NaN in a band = not evaluated there (e.g. n_loop_errors with loop closure off): passes
        fail_stack[j] = ~ok & np.isfinite(a)
    qds = None
    return q_any, fail_stack


def _table_rows(active, fails, only, kept, nodata):
    rows = []
    for j, (key, band, op, val, desc, _) in enumerate(active):
        rows.append(
            {
                "threshold": key,
                "value": val,
                "band": band,
                "rule": "%s %s %g" % (band, op, val),
                "pixels_failing": int(fails[j]),
                "pixels_removed_only_by_it": int(only[j]),
            }
        )
    rows.append(
        {
            "threshold": "kept",
            "value": np.nan,
            "band": "",
            "rule": "passes every threshold",
            "pixels_failing": 0,
            "pixels_removed_only_by_it": 0,
            "pixels": kept,
        }
    )
    rows.append(
        {
            "threshold": "no data",
            "value": np.nan,
            "band": "",
            "rule": "no quality data",
            "pixels_failing": 0,
            "pixels_removed_only_by_it": 0,
            "pixels": nodata,
        }
    )
    for r in rows[:-2]:
        r["pixels"] = r["pixels_failing"]
    return rows


def mask_by_quality(
    quality_path,
    thresholds,
    velocity_path=None,
    timeseries_path=None,
    out_velocity=None,
    out_timeseries=None,
    out_mask=None,
    memory_mb=256,
    progress=None,
    is_canceled=None,
    log=None,
):
    """Apply ``thresholds`` ({key: value or None}) to the quality raster and write the masked copies.

    Returns a list of table rows: per threshold set, ``threshold``, ``value``, ``band``, ``pixels_failing``
    (pixels with data failing it), ``pixels_removed_only_by_it``; then a row ``kept`` with the pixels kept
    and a row ``no data`` with the pixels without quality data.
    """
    log = log or (lambda s: None)
    qds = open_raster(quality_path)
    grid = RasterGrid.of(qds)
    active = _active_thresholds(thresholds, _bands_by_name(qds), quality_path, log)
    # the quality bands are read one at a time, the thresholds' twice: all of them held for the whole window
    layouts = [dataclasses.replace(block_layout(qds), cell=block_layout(qds, whole_stack_reads=True).cell)]
    qds = None
    inputs = _checked_inputs(grid, quality_path, velocity_path, timeseries_path, out_velocity, out_timeseries)
    nb = sum(i[2] for i in inputs)
    layouts += [block_layout(open_raster(i[0]), whole_stack_reads=True) for i in inputs]
    # windows of whole tiles, with GDAL's cache of the input blocks they hold or share under the cap
    blocks, cache = plan_windows(
        layouts,
        grid.ysize,
        grid.xsize,
        8 * (nb + len(active) + 4),
        memory_mb,
        out_tile=4 * (nb + 1) * 256 * 256,
        log=log,
    )
    fails = np.zeros(len(active), dtype=np.int64)
    only = np.zeros(len(active), dtype=np.int64)
    kept = nodata = 0
    rule_text = "; ".join("%s %g" % (a[0], a[3]) for a in active) or "none"
    with contextlib.ExitStack() as es:
        es.enter_context(window_cache(cache))
        writers, wm = _open_writers(es, inputs, grid, out_mask, rule_text)
        for bi, (r0, nr, c0, nc) in enumerate(blocks):
            if is_canceled is not None and is_canceled():
                raise Cancelled()
            q_any, fail_stack = _window_failures(quality_path, active, (r0, nr, c0, nc))
            nfail = fail_stack.sum(axis=0)
            keep = q_any & (nfail == 0)
            fails += (fail_stack & q_any).sum(axis=(1, 2))
            only += (fail_stack & (nfail == 1) & q_any).sum(axis=(1, 2))
            kept += int(keep.sum())
            nodata += int((~q_any).sum())
            for path, w, n in writers:
                ds = open_raster(path)
                blk = read_window(ds, c0, r0, nc, nr, dtype=np.float32)
                ds = None
                blk[:, ~keep] = np.nan
                w.write_block(r0, blk, c0)
                del blk  # not alive while the next input's window is read
            if wm is not None:
                m = np.where(q_any, keep.astype(np.float32), np.nan).astype(np.float32)
                wm.write_block(r0, m[None], c0)
            if progress is not None:
                progress((bi + 1) / len(blocks))
    return _table_rows(active, fails, only, kept, nodata)
