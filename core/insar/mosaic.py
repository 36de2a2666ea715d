"""Mosaics of overlapping frames with per-date offsets (no QGIS imports).

Every InSAR frame (or track) is referenced to its own reference point, so two frames differ in their
overlap by an offset per date (and noise). The mosaic

1. brings every frame to one target grid (:mod:`..io.warp`: read directly when already on it, else
   a warped VRT with an exact transformer);
2. estimates, per date and per pair of overlapping frames, the **median** of the differences in the
   overlap (on a regular lattice of overlap pixels when the overlaps hold more values than a quarter
   of the memory cap; the lattice is global, so the result does not depend on the windows);
3. adjusts all pairs of a date in **one weighted least-squares** problem (weights = overlap pixels):
   ``o_i - o_j = -median(x_i - x_j)``, with the reference frame's offset 0 or the offsets of zero mean,
   per connected group of frames, so chains of frames without a common overlap stay consistent;
   frames (or groups) not connected to the reference are reported (``connected_to_reference``);
   optionally each frame's offsets are then replaced by a straight line in time (velocity-like
   offsets: a reference drifting linearly);
4. blends overlapping frames with weights that fall off linearly over ``blend_width`` pixels towards
   each frame's edge of valid data (Euclidean distance to the nearest pixel without data in any date;
   the target grid's border is not an edge), times an optional quality raster per frame (e.g. temporal
   coherence), and writes the result window by window under the memory cap (atomic GeoTIFF).

``threads`` > 1: the blend windows are computed that many at a time (:func:`~..io.tasks.map_threads`, each
window planned under ``memory_mb / threads``, each thread with its own GDAL handles) while this thread writes;
pass 1 runs in this thread (its sums depend on its row blocks, which are planned without ``threads``). Every
pixel of the blend depends only on the global pass-1 statistics, so the mosaic and the offsets table are the
same bit for bit for any number of threads (and any window split of pass 2).

Returns the long offsets table (one row per frame and date): ``frame`` (0-based), ``input`` (file
name), ``date`` (``YYYY-MM-DD``, empty for a single-band velocity), ``offset_mm`` (added to the frame),
``overlap_pixels``, ``rms_before_mm``, ``rms_after_mm`` (RMS of the differences with the overlapping
frames before and after the offsets), ``connected_to_reference``.
"""

import math
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..io.dates import format_date
from ..io.errors import Cancelled, TimeSeriesError
from ..io.lazy import lazy_module
from ..io.rasters import RasterWriter, open_raster
from ..io.tasks import map_threads
from ..io.warp import GridReader, gdal_cache, target_grid
from ..io.windows import DEFAULT_MEMORY_MB, row_blocks, window_blocks
from .geometry import raster_dates
from .network import first_index_components

_nd = lazy_module("scipy.ndimage")

MISSING_DROP = "drop"
MISSING_AVAILABLE = "available"
DEFAULT_BLEND_WIDTH = 32


def _check(is_canceled):
    if is_canceled is not None and is_canceled():
        raise Cancelled()


def frame_dates(paths, missing=MISSING_DROP, log=None):
    """Dates of the mosaic and, per frame, the 1-based band of each mosaic date (0 = the frame lacks it).

    Returns ``(dates or None for velocities, band_map (n_frames, n_dates) int)``.
    """
    per = [raster_dates(open_raster(p)) for p in paths]
    if all(d is None for d in per):
        return None, np.ones((len(paths), 1), dtype=int)
    if any(d is None for d in per):
        one = [str(p) for p, d in zip(paths, per) if d is None]
        raise TimeSeriesError(
            "inputs mix single-band rasters (velocities: %s) with time series; give all "
            "velocities or all time series" % ", ".join(one)
        )
    common = set.intersection(*(set(d) for d in per))
    union = set.union(*(set(d) for d in per))
    if missing == MISSING_DROP:
        if not common:
            raise TimeSeriesError(
                "the inputs have no common date: %s (resample them to the same monthly dates "
                "with Resample time series in time, or mosaic the dates that exist)"
                % "; ".join(
                    "%s %s..%s" % (os.path.basename(str(p)), format_date(d[0]), format_date(d[-1]))
                    for p, d in zip(paths, per)
                )
            )
        dates = sorted(common)
    else:
        dates = sorted(union)
    if log is not None:
        for p, d in zip(paths, per):
            lacking = sorted(union - set(d))
            if lacking:
                log(
                    "%s lacks %d of the dates of the other inputs (%s)%s"
                    % (
                        p,
                        len(lacking),
                        ", ".join(format_date(x) for x in lacking[:6]) + (" ..." if len(lacking) > 6 else ""),
                        "" if missing == MISSING_DROP else ": those dates are mosaicked from the frames that have them",
                    )
                )
        if missing == MISSING_DROP and len(union) > len(common):
            log(
                "%d dates are not in every input and are left out; %d common dates are mosaicked"
                % (len(union) - len(common), len(common))
            )
    band_map = np.array([[(d.index(t) + 1) if t in d else 0 for t in dates] for d in per], dtype=int)
    return dates, band_map


def _intersect(a, b):
    r0, r1 = max(a[0], b[0]), min(a[1], b[1])
    c0, c1 = max(a[2], b[2]), min(a[3], b[3])
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _expand(box, w, grid):
    return (max(0, box[0] - w), min(grid.ysize, box[1] + w), max(0, box[2] - w), min(grid.xsize, box[3] + w))


def _components(n, edges):
    """Groups of node indices joined by ``edges``, in the order of their smallest index."""
    groups = {}
    for i, label in enumerate(first_index_components(n, edges)):
        groups.setdefault(int(label), []).append(i)
    return list(groups.values())


def adjust_offsets(n_frames, pairs, medians, counts, present, reference=0):
    """Offsets of one date from the pairwise medians (see the module help).

    ``pairs``: list of ``(i, j)``; ``medians[p]`` = median of ``x_i - x_j``; ``counts[p]`` = overlap pixels
    (0 = no data in common that date); ``present``: frames that have the date; ``reference``: frame index
    or -1 (zero mean). Returns ``(offsets (n_frames,) with NaN for absent frames, connected bool array)``.
    """
    offsets = np.full(n_frames, np.nan)
    connected = np.zeros(n_frames, dtype=bool)
    live = [(p, i, j) for p, (i, j) in enumerate(pairs) if counts[p] > 0 and present[i] and present[j]]
    frames = [f for f in range(n_frames) if present[f]]
    groups = [g for g in _components(n_frames, [(i, j) for _, i, j in live]) if present[g[0]]]
    ref = reference if reference is not None and reference >= 0 and present[reference] else -1
    if ref >= 0:
        main = next(g for g in groups if ref in g)
    else:
        main = max(groups, key=lambda g: (len(g), -g[0])) if groups else []
    for g in groups:
        if len(g) == 1:
            offsets[g[0]] = 0.0
            continue
        col = {f: k for k, f in enumerate(g)}
        rows = [(p, i, j) for p, i, j in live if i in col]
        a = np.zeros((len(rows), len(g)))
        b = np.zeros(len(rows))
        for r, (p, i, j) in enumerate(rows):
            w = math.sqrt(counts[p])
            a[r, col[i]], a[r, col[j]] = w, -w
            b[r] = -w * medians[p]
        # minimum-norm solution of a connected difference network = offsets of zero mean
        sol = np.linalg.lstsq(a, b, rcond=None)[0]
        sol -= sol.mean()
        if g is main and ref >= 0:
            sol -= sol[col[ref]]
        offsets[g] = sol
    connected[main] = True
    if len(frames) == 1:
        connected[frames] = True
    return offsets, connected


def _fit_lines(offsets, connected, t):
    """Replace each frame's offsets (connected dates) by their least-squares straight line in time ``t``."""
    out = offsets.copy()
    for f in range(offsets.shape[0]):
        ok = connected[f] & np.isfinite(offsets[f])
        if ok.sum() >= 2:
            coef = np.polyfit(t[ok], offsets[f, ok], 1)
            out[f, ok] = np.polyval(coef, t[ok])
    return out


def _taper(mask, width, inner):
    """min(distance to the nearest False, width) over ``inner`` (slices) of a padded mask."""
    if mask.all():
        return np.full(mask[inner].shape, float(width))
    return np.minimum(_nd.distance_transform_edt(mask)[inner], float(width))


def mosaic_frames(inputs, out_path, memory_mb=DEFAULT_MEMORY_MB, **kwargs):
    """Mosaic ``inputs`` into ``out_path``: see :func:`_mosaic_frames` (run with GDAL's block cache at a quarter
    of ``memory_mb``, between 8 and 256 MB, and the arrays under the rest)."""
    memory_mb = float(memory_mb or DEFAULT_MEMORY_MB)
    cache = min(256.0, max(8.0, memory_mb / 4))
    with gdal_cache(cache):
        return _mosaic_frames(inputs, out_path, memory_mb=max(memory_mb - cache, memory_mb / 2), **kwargs)


@dataclass(eq=False)
class _Frames:
    """The inputs seen on the target ``grid``: ``paths``, ``readers`` (:class:`GridReader`), ``quality`` readers
    (or None), ``slot`` (n_frames, n_dates) the reader band of each mosaic date (-1: the frame lacks it) and the
    mosaic ``dates`` (None for single-band velocities)."""

    paths: list
    readers: list
    quality: Optional[list]
    slot: np.ndarray
    dates: Optional[list]
    grid: object
    resampling: str = "bilinear"
    quality_paths: Optional[list] = None
    _shared: Optional[dict] = None

    def here(self):
        """This frame set with GDAL handles of the calling thread (a GDAL dataset must not be used by two
        threads at once): the thread that opened them gets ``self``, any other its own copy, opened once."""
        shared = self._shared
        if shared is None or threading.get_ident() == shared["owner"]:
            return self
        view = getattr(shared["local"], "view", None)
        if view is None:
            readers = [
                GridReader(p, self.grid, bands=r.bands, resampling=self.resampling)
                for p, r in zip(self.paths, self.readers)
            ]
            quality = [GridReader(q, self.grid, bands=[1]) for q in self.quality_paths] if self.quality else None
            view = _Frames(self.paths, readers, quality, self.slot, self.dates, self.grid, self.resampling)
            shared["local"].view = view
            shared["views"].append(view)
        return view

    def share(self):
        """Let other threads call :meth:`here` (each opens its own handles, closed by :meth:`close_shared`)."""
        if self._shared is None:
            self._shared = {"owner": threading.get_ident(), "local": threading.local(), "views": []}

    def close_shared(self):
        """Close the handles other threads opened."""
        if self._shared is not None:
            for view in self._shared["views"]:
                for r in view.readers + (view.quality or []):
                    r.close()
            self._shared = None


@dataclass(eq=False)
class _Overlaps:
    """The overlapping pairs (i, j) of frames, their overlap ``boxes`` (row0, row1, col0, col1), the boxes grown
    by the blend width (``expanded``) and, from pass 1, the packed validity ``masks`` of both frames there,
    ``sums`` (pairs, dates, 3: n, sum e, sum e^2 with e = d - shift), ``shift`` (the first window's mean
    difference) and the lattice ``samples`` of the differences (every ``stride``-th row and column)."""

    pairs: list
    boxes: list
    expanded: list
    masks: list = None
    sums: np.ndarray = None
    shift: np.ndarray = None
    samples: list = None
    stride: int = 1


def _check_arguments(inputs, reference_frame, quality_paths):
    nf = len(inputs)
    if nf < 2:
        raise TimeSeriesError("a mosaic needs at least two rasters, got %d" % nf)
    if reference_frame is None:
        reference_frame = -1
    if not -1 <= int(reference_frame) < nf:
        raise TimeSeriesError(
            "reference frame %d: must be -1 (zero-mean offsets) or 0..%d (an index into the "
            "inputs)" % (reference_frame, nf - 1)
        )
    if quality_paths and len(quality_paths) != nf:
        raise TimeSeriesError(
            "%d quality rasters for %d inputs (one per input, in the same order)" % (len(quality_paths), nf)
        )
    return reference_frame


def _warn_mixed_units(inputs, log):
    units = {}
    for p in inputs:
        ds = open_raster(p)
        unit = ds.GetRasterBand(1).GetUnitType() or (ds.GetMetadata() or {}).get("UNITS", "")
        units.setdefault(unit, []).append(p)
    if len(units) > 1:
        log(
            "warning: the inputs have different units (%s): the mosaic keeps the first input's"
            % "; ".join("%s: %s" % (u or "none", ", ".join(os.path.basename(x) for x in ps)) for u, ps in units.items())
        )


def _open_frames(inputs, quality_paths, grid, band_map, resampling):
    """Readers of every input (its bands of the mosaic dates) and quality raster on ``grid``."""
    nf, nd = band_map.shape
    readers = []
    for f, p in enumerate(inputs):
        bands = [int(b) for b in band_map[f] if b > 0]
        readers.append(GridReader(p, grid, bands=bands, resampling=resampling))
    # reader band index of each mosaic date (-1 = lacking)
    slot = np.full((nf, nd), -1, dtype=int)
    for f in range(nf):
        slot[f, band_map[f] > 0] = np.arange(int((band_map[f] > 0).sum()))
    for f, r in enumerate(readers):
        if r.empty():
            raise TimeSeriesError("%s does not reach the target extent" % inputs[f])
    qreaders = [GridReader(q, grid, bands=[1]) for q in quality_paths] if quality_paths else None
    return readers, qreaders, slot


def _overlapping_pairs(frames, blend_width):
    readers, nf = frames.readers, len(frames.paths)
    pairs, pboxes = [], []
    for i in range(nf):
        for j in range(i + 1, nf):
            box = _intersect(readers[i].bbox, readers[j].bbox)
            if box is not None:
                pairs.append((i, j))
                pboxes.append(box)
    if not pairs:
        raise TimeSeriesError(
            "the inputs do not overlap at all (%s): offsets between frames cannot be estimated"
            % ", ".join(os.path.basename(p) for p in frames.paths)
        )
    return _Overlaps(pairs, pboxes, [_expand(b, blend_width, frames.grid) for b in pboxes])


def _read_pair_windows(frames, ov, rows):
    """Each frame read once over the bounding box of its (expanded) pair boxes in ``rows``: {frame: (box, array)}."""
    need = {}
    for p, (i, j) in enumerate(ov.pairs):
        b = _intersect(ov.expanded[p], (rows[0], rows[1], 0, frames.grid.xsize))
        if b is None:
            continue
        for f in (i, j):
            o = need.get(f)
            need[f] = b if o is None else (min(o[0], b[0]), max(o[1], b[1]), min(o[2], b[2]), max(o[3], b[3]))
    return {f: (b, frames.readers[f].read(b[0], b[1] - b[0], b[2], b[3] - b[2])) for f, b in need.items()}


def _add_pair_differences(frames, ov, p, data, rows):
    """Pass 1 for pair ``p`` in ``rows``: its frames' validity masks, the sums of the differences and samples."""
    i, j = ov.pairs[p]
    nd = frames.slot.shape[1]
    be = _intersect(ov.expanded[p], (rows[0], rows[1], 0, frames.grid.xsize))
    if be is None:
        return
    for k, f in enumerate((i, j)):
        fb, x = data[f]
        m = np.isfinite(x[:, be[0] - fb[0] : be[1] - fb[0], be[2] - fb[2] : be[3] - fb[2]]).any(axis=0)
        ov.masks[p][k][be[0] - ov.expanded[p][0] : be[1] - ov.expanded[p][0]] = np.packbits(m, axis=1)
    b = _intersect(ov.boxes[p], (rows[0], rows[1], 0, frames.grid.xsize))
    if b is None:
        return
    (bi_, xi), (bj_, xj) = data[i], data[j]
    vi = xi[:, b[0] - bi_[0] : b[1] - bi_[0], b[2] - bi_[2] : b[3] - bi_[2]]
    vj = xj[:, b[0] - bj_[0] : b[1] - bj_[0], b[2] - bj_[2] : b[3] - bj_[2]]
    si, sj = frames.slot[i], frames.slot[j]
    both = (si >= 0) & (sj >= 0)
    d = np.full((nd,) + vi.shape[1:], np.nan)
    d[both] = vi[si[both]] - vj[sj[both]]
    ok = np.isfinite(d)
    # sums of d - shift (shift = the first window's mean difference): no cancellation in the RMS
    nok = ok.sum(axis=(1, 2))
    first = ~np.isfinite(ov.shift[p]) & (nok > 0)
    if first.any():
        ov.shift[p, first] = np.where(ok, d, 0.0).sum(axis=(1, 2))[first] / nok[first]
    d0 = np.where(ok, d - np.nan_to_num(ov.shift[p])[:, None, None], 0.0)
    ov.sums[p, :, 0] += ok.sum(axis=(1, 2))
    ov.sums[p, :, 1] += d0.sum(axis=(1, 2))
    ov.sums[p, :, 2] += (d0 * d0).sum(axis=(1, 2))
    rsel = np.arange(b[0], b[1]) % ov.stride == 0
    csel = np.arange(b[2], b[3]) % ov.stride == 0
    if rsel.any() and csel.any():
        sub = d[:, rsel][:, :, csel].reshape(nd, -1)
        keep = np.isfinite(sub).any(axis=0)
        if keep.any():
            ov.samples[p].append(sub[:, keep])


def _overlap_pass(frames, ov, memory_mb, progress, is_canceled):
    """Pass 1: per pair and date the sums and a lattice sample of the differences in the overlap, and both
    frames' validity around it (for the blend), read in row blocks under ``memory_mb`` (in this thread: its sums
    depend on the row blocks, which must not depend on the thread count)."""
    nd = frames.slot.shape[1]
    total_vals = sum((b[1] - b[0]) * (b[3] - b[2]) for b in ov.boxes) * nd
    budget_vals = max(1, int(memory_mb * 1024 * 1024 / 4 / 8))
    ov.stride = max(1, int(math.ceil(math.sqrt(total_vals / budget_vals))))
    ov.sums = np.zeros((len(ov.pairs), nd, 3))
    ov.shift = np.full((len(ov.pairs), nd), np.nan)
    ov.samples = [[] for _ in ov.pairs]
    ov.masks = [
        [np.zeros((b[1] - b[0], (b[3] - b[2] + 7) // 8), dtype=np.uint8) for _ in range(2)] for b in ov.expanded
    ]
    width_read = sum(b[3] - b[2] for b in ov.expanded) * 2
    r_lo, r_hi = min(b[0] for b in ov.expanded), max(b[1] for b in ov.expanded)
    p1_blocks = [
        (r0 + r_lo, nr) for r0, nr in row_blocks(r_hi - r_lo, max(1, width_read) * (nd * 8 * 3 + 4), memory_mb * 0.5)
    ]
    for bi, (r0, nr) in enumerate(p1_blocks):
        _check(is_canceled)
        rows = (r0, r0 + nr)
        data = _read_pair_windows(frames, ov, rows)
        for p in range(len(ov.pairs)):
            _add_pair_differences(frames, ov, p, data, rows)
        del data
        progress(0.3 * (bi + 1) / len(p1_blocks))


def _pair_medians(ov):
    """Median difference per pair and date from the lattice samples; a pair with data but no lattice sample
    that date falls back to its mean difference."""
    counts = ov.sums[:, :, 0]
    medians = np.full(counts.shape, np.nan)
    for p in range(len(ov.pairs)):
        if ov.samples[p]:
            s = np.concatenate(ov.samples[p], axis=1)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                medians[p] = np.nanmedian(s, axis=1)
        ov.samples[p] = None
    fallback = (counts > 0) & ~np.isfinite(medians)
    medians[fallback] = ov.shift[fallback] + ov.sums[:, :, 1][fallback] / counts[fallback]
    return medians


def _frame_offsets(frames, ov, medians, reference_frame, time_trend):
    """Offsets (n_frames, n_dates) by the least-squares adjustment of every date (optionally a straight line
    in time per frame), and whether each frame is connected to the reference that date."""
    nf, nd = frames.slot.shape
    counts = ov.sums[:, :, 0]
    offsets = np.full((nf, nd), np.nan)
    connected = np.zeros((nf, nd), dtype=bool)
    for t in range(nd):
        present = frames.slot[:, t] >= 0
        offsets[:, t], connected[:, t] = adjust_offsets(
            nf, ov.pairs, medians[:, t], counts[:, t], present, int(reference_frame)
        )
    dates = frames.dates
    if time_trend and dates is not None:
        tyears = np.array([(d - dates[0]).days / 365.25 for d in dates])
        offsets = _fit_lines(offsets, connected, tyears)
    if reference_frame >= 0 and time_trend and dates is not None:
        offsets[reference_frame, frames.slot[reference_frame] >= 0] = 0.0
    return offsets, connected


def _offset_rows(frames, ov, offsets, connected):
    """The offsets table: per frame and date its offset, overlap pixels and the RMS of the differences in its
    overlaps before and after the adjustment."""
    nf, nd = frames.slot.shape
    counts = ov.sums[:, :, 0]
    rows = []
    for f in range(nf):
        for t in range(nd):
            if frames.slot[f, t] < 0:
                continue
            n = s1 = a1 = 0.0
            for p, (i, j) in enumerate(ov.pairs):
                if f not in (i, j) or counts[p, t] == 0:
                    continue
                cn, cs, cq = ov.sums[p, t]
                c = ov.shift[p, t]
                delta = c + offsets[i, t] - offsets[j, t]
                n += cn
                s1 += cq + 2.0 * c * cs + cn * c * c
                a1 += cq + 2.0 * delta * cs + cn * delta * delta
            rows.append(
                {
                    "frame": f,
                    "input": os.path.basename(frames.paths[f]),
                    "date": format_date(frames.dates[t]) if frames.dates is not None else "",
                    "offset_mm": float(offsets[f, t]),
                    "overlap_pixels": int(n),
                    "rms_before_mm": math.sqrt(s1 / n) if n else float("nan"),
                    "rms_after_mm": math.sqrt(max(a1, 0.0) / n) if n else float("nan"),
                    "connected_to_reference": bool(connected[f, t]),
                }
            )
    return rows


def _blend_weight(frames, ov, f, window, wb):
    """Blend weight of frame ``f`` in ``window`` (r0, nr, c0, nc): the distance to the other frame's edge inside
    each overlap (capped at ``wb``, ``wb`` elsewhere), times the frame's quality when given."""
    r0, nr, c0, nc = window
    win = (r0, r0 + nr, c0, c0 + nc)
    weight = np.full((nr, nc), float(wb))
    for p, (i, j) in enumerate(ov.pairs):
        if f not in (i, j):
            continue
        b = _intersect(ov.boxes[p], win)
        if b is None:
            continue
        k = 0 if f == i else 1
        e = ov.expanded[p]
        # the mask around b (width wb), edge-replicated beyond the grid's border
        lo_r, hi_r = b[0] - wb, b[1] + wb
        lo_c, hi_c = b[2] - wb, b[3] + wb
        cr0, cr1 = max(lo_r, e[0]), min(hi_r, e[1])
        cc0, cc1 = max(lo_c, e[2]), min(hi_c, e[3])
        packed = ov.masks[p][k][cr0 - e[0] : cr1 - e[0]]
        m = np.unpackbits(packed, axis=1, count=e[3] - e[2])[:, cc0 - e[2] : cc1 - e[2]].astype(bool)
        m = np.pad(m, ((cr0 - lo_r, hi_r - cr1), (cc0 - lo_c, hi_c - cc1)), mode="edge")
        inner = (slice(wb, wb + b[1] - b[0]), slice(wb, wb + b[3] - b[2]))
        weight[b[0] - r0 : b[1] - r0, b[2] - c0 : b[3] - c0] = _taper(m, wb, inner)
    if frames.quality is not None:
        q = frames.quality[f].read(r0, nr, c0, nc)[0]
        weight = weight * np.where(np.isfinite(q), np.clip(q, 1e-6, None), 1e-6)
    return weight


def _blend_window(frames, ov, offsets, window, wb):
    """The mosaic of ``window``: the offset-corrected frames averaged with their blend weights (float32)."""
    frames = frames.here()
    r0, nr, c0, nc = window
    nf, nd = frames.slot.shape
    num = np.zeros((nd, nr, nc))
    den = np.zeros((nd, nr, nc))
    for f in range(nf):
        if not frames.readers[f].touches(r0, nr, c0, nc):
            continue
        x = frames.readers[f].read(r0, nr, c0, nc)
        weight = _blend_weight(frames, ov, f, window, wb)
        for t in range(nd):
            s = frames.slot[f, t]
            if s < 0 or not np.isfinite(offsets[f, t]):
                continue
            v = x[s]
            ok = np.isfinite(v)
            wv = np.where(ok, weight, 0.0)
            num[t] += wv * np.where(ok, v + offsets[f, t], 0.0)
            den[t] += wv
        del x
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan).astype(np.float32)


def _output_metadata(inputs, reference_frame, linear_offsets):
    """Units, metadata and (velocities) band name of the mosaic, from the first input."""
    ds0 = open_raster(inputs[0])
    md0 = ds0.GetMetadata() or {}
    units = ds0.GetRasterBand(1).GetUnitType() or md0.get("UNITS", "mm")
    md = {
        "MOSAIC_INPUTS": ";".join(inputs),
        "REFERENCE_FRAME": str(reference_frame),
        "OFFSET_MODEL": "linear in time" if linear_offsets else "per date",
    }
    if "KIND" in md0:
        md["KIND"] = md0["KIND"]
    if "COMPONENT" in md0:
        md["COMPONENT"] = md0["COMPONENT"]
    return units, md, ds0.GetRasterBand(1).GetDescription() or "velocity"


def _blend_pass(frames, ov, offsets, out_path, options):
    """Pass 2: blend and write the mosaic window by window. ``options`` = (reference frame, time trend, blend
    width, memory_mb, progress, is_canceled, threads): ``threads`` windows at a time, each planned under
    ``memory_mb / threads``, written here as they come. Returns the number of windows."""
    reference_frame, time_trend, wb, memory_mb, progress, is_canceled, threads = options
    nf, nd = frames.slot.shape
    dates, grid = frames.dates, frames.grid
    units, md, band_name = _output_metadata(frames.paths, reference_frame, time_trend and dates is not None)
    per_cell = nf * (nd * 8 * 2 + 40) + nd * (8 * 3 + 4)
    blocks = window_blocks(grid.ysize, grid.xsize, per_cell, memory_mb / threads)
    name = [band_name] if dates is None else None

    def blend(window):
        return _blend_window(frames, ov, offsets, window, wb)

    if threads > 1:
        results = map_threads(blend, blocks, threads, is_canceled=is_canceled)
    else:
        results = ((i, blend(window)) for i, window in enumerate(blocks))
    with RasterWriter(out_path, grid, nd, dates=dates, band_names=name, units=units, metadata=md) as w:
        for bi, (i, out) in enumerate(results):
            _check(is_canceled)
            w.write_block(blocks[i][0], out, blocks[i][2])
            progress(0.3 + 0.7 * (bi + 1) / len(blocks))
    return len(blocks)


def _mosaic_frames(
    inputs,
    out_path,
    reference_frame=0,
    crs_wkt=None,
    extent=None,
    resolution=0.0,
    missing=MISSING_DROP,
    time_trend=False,
    quality_paths=None,
    blend_width=DEFAULT_BLEND_WIDTH,
    resampling="bilinear",
    memory_mb=DEFAULT_MEMORY_MB,
    progress=None,
    is_canceled=None,
    log=None,
    threads=1,
):
    """Mosaic ``inputs`` (time series or velocities of overlapping frames) into ``out_path``.

    See the module help. ``reference_frame``: 0-based index whose offsets are 0, or -1 for offsets of
    zero mean. ``crs_wkt``/``extent``/``resolution``: the target grid (default: first input's CRS,
    union extent, finest resolution). ``missing``: ``"drop"`` dates not in every input, or
    ``"available"`` (mosaic each date from the frames that have it). ``threads``: windows computed at the same
    time in this process under the one ``memory_mb`` (results do not depend on it). Returns ``(rows, summary)``:
    the offsets table as a list of dicts and a summary dict.

    Steps: frames on the target grid, overlapping pairs, pass 1 (differences in the overlaps), pair
    medians, offsets by least squares, the offsets table, pass 2 (blend and write).
    """
    inputs = [str(p) for p in inputs]
    reference_frame = _check_arguments(inputs, reference_frame, quality_paths)
    progress = progress or (lambda f: None)
    dates, band_map = frame_dates(inputs, missing, log)
    if log is not None:
        if time_trend and dates is None:
            log("offsets linear in time: ignored for single-band inputs (velocities)")
        _warn_mixed_units(inputs, log)
    grid = target_grid(inputs, crs_wkt, extent, resolution, "union")
    if log is not None:
        log("target grid %s" % grid.describe())
    readers, qreaders, slot = _open_frames(inputs, quality_paths, grid, band_map, resampling)
    frames = _Frames(inputs, readers, qreaders, slot, dates, grid, resampling, quality_paths)
    threads = max(1, int(threads or 1))
    if threads > 1:
        frames.share()
    try:
        options = (reference_frame, time_trend, int(max(1, blend_width)), memory_mb, progress, is_canceled, threads)
        return _offsets_and_blend(frames, out_path, options, log)
    finally:
        frames.close_shared()


def _offsets_and_blend(frames, out_path, options, log):
    """Pass 1, the offsets and their table, pass 2 (see :func:`_mosaic_frames`; ``options`` as
    :func:`_blend_pass` takes them)."""
    reference_frame, time_trend, wb, memory_mb, progress, is_canceled, threads = options
    inputs, grid, dates = frames.paths, frames.grid, frames.dates
    ov = _overlapping_pairs(frames, wb)
    _overlap_pass(frames, ov, memory_mb, progress, is_canceled)
    counts = ov.sums[:, :, 0]
    if counts.sum() == 0:
        raise TimeSeriesError(
            "the inputs have no valid pixel in common on any date (%s): offsets between frames "
            "cannot be estimated" % ", ".join(os.path.basename(p) for p in inputs)
        )
    medians = _pair_medians(ov)
    offsets, connected = _frame_offsets(frames, ov, medians, reference_frame, time_trend)
    rows = _offset_rows(frames, ov, offsets, connected)
    if log is not None:
        lonely = sorted({r["input"] for r in rows if not r["connected_to_reference"]})
        if lonely:
            log(
                "warning: not connected to the reference frame on some dates (their offsets could not be "
                "estimated; see connected_to_reference in the offsets table): %s" % ", ".join(lonely)
            )
    n_windows = _blend_pass(frames, ov, offsets, out_path, options)
    summary = {
        "grid": grid,
        "dates": dates,
        "pairs": ov.pairs,
        "pair_pixels": counts.max(axis=1).astype(int).tolist(),
        "sample_stride": ov.stride,
        "n_windows": n_windows,
    }
    return rows, summary
