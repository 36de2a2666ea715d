"""Window planning under a memory cap, and the window-task contract every raster method follows.

The contract (documented once here, used by SBAS, downscaling, GWSA, resampling, mosaics):

* the grid is cut into ``(row0, nrows)`` row blocks (:func:`row_blocks`) or
  ``(row0, nrows, col0, ncols)`` windows (:func:`window_blocks`) sized so that one window's whole
  working set (inputs, outputs, temporaries: ``bytes_per_row`` / ``bytes_per_cell``) stays under
  ``memory_mb``;
* a *task function* ``task_fn(task, shared)`` is pure: it reads its own window from paths, computes,
  and returns arrays (never writes files), so it runs here or as a Dask task (:mod:`.tasks`);
  ``task`` describes one window and ``shared`` what every window needs (sent to each Dask worker
  once), both frozen dataclasses defined at module level so that they pickle by module path
  (e.g. :class:`~..insar.sbas_stack.WindowTask` / :class:`~..insar.sbas_stack.TaskState`,
  :class:`~..grace.downscaling.GridWindow` / :class:`~..grace.downscaling.DownscaleState`);
* the caller writes each result into the output (:class:`.rasters.RasterWriter`) as it arrives and
  sums partial statistics in window order, so results do not depend on the window split.
"""

import contextlib
from dataclasses import dataclass

from .tasks import give_back_free_memory, run_tasks_here_or

DEFAULT_MEMORY_MB = 512
MIN_CACHE_MB = 8  # GDAL's block cache beyond the inputs' blocks: the output's tiles as they are compressed


def row_blocks(ysize, bytes_per_row, memory_mb=DEFAULT_MEMORY_MB, align=1):
    """Split ``ysize`` rows into ``(row0, nrows)`` blocks of at most ``memory_mb``.

    ``bytes_per_row`` is the working memory one row needs (all inputs, outputs
    and temporaries). At least one row per block; blocks are rounded down to a
    multiple of ``align`` (e.g. the GeoTIFF block height) when that still fits.
    """
    cap = max(1, int(memory_mb * 1024 * 1024 // max(1, int(bytes_per_row))))
    if align > 1 and cap > align:
        cap -= cap % align
    cap = min(cap, ysize) if ysize > 0 else 1
    return [(r, min(cap, ysize - r)) for r in range(0, ysize, cap)]


def window_blocks(ysize, xsize, bytes_per_cell, memory_mb=DEFAULT_MEMORY_MB, tile=256):
    """Split a grid into ``(row0, nrows, col0, ncols)`` windows of at most ``memory_mb``.

    ``bytes_per_cell`` is the working memory one cell needs (all bands, inputs, outputs and
    temporaries). Full-width row blocks aligned to ``tile`` rows are used when at least ``tile``
    rows fit; otherwise windows of ``tile`` rows (or fewer) and as many columns as fit, aligned
    to ``tile`` columns, so tiled GeoTIFF outputs are written one whole tile row at a time
    instead of re-compressing partial tiles (deep stacks: many bands x few rows per block).
    """
    cap = max(1, int(memory_mb * 1024 * 1024 // max(1, int(bytes_per_cell))))
    if ysize <= 0 or xsize <= 0:
        return []
    rows_full = cap // xsize
    if rows_full >= min(tile, ysize):
        nr = min(ysize, rows_full - rows_full % tile if rows_full >= tile else rows_full)
        return [(r, min(nr, ysize - r), 0, xsize) for r in range(0, ysize, nr)]
    nr = min(tile, ysize)
    nc = cap // nr
    if nc < 1:
        nr = max(1, cap)
        nc = 1
    elif nc >= tile:
        nc -= nc % tile
    return [(r, min(nr, ysize - r), c, min(nc, xsize - c)) for r in range(0, ysize, nr) for c in range(0, xsize, nc)]


def run_windows(task_fn, tasks, blocks, nx, key, *, write=None, progress=None, run_tasks=None, shared=None):
    """Run window tasks (here or through ``run_tasks``), write each result's ``key`` array as it arrives
    (``write(row0, block[, col0])``, ``col0`` only for windows narrower than the grid) and return the
    per-window partial sums ``{window index: result["sums"]}`` for summing in window order."""
    partial = {}
    done = 0
    # not enumerate(): it keeps its last item, and so the previous window's arrays, until the next window is done
    for bi, res in run_tasks_here_or(task_fn, tasks, run_tasks, shared):
        done += 1
        r0, nr, c0, nc = blocks[bi]
        partial[bi] = res["sums"]
        if write is not None:
            if nc == nx:
                write(r0, res[key])
            else:
                write(r0, res[key], c0)
        del res
        give_back_free_memory()
        if progress is not None:
            progress(done / len(blocks))
    return partial


# --------------------------------------------------------------------------- GDAL's block cache under the cap
@dataclass(frozen=True)
class BlockLayout:
    """What GDAL's block cache holds while windows of one input raster are read
    (:func:`~.rasters.block_layout` makes it from a dataset).

    ``cell``: bytes per cell of the blocks decoded for a window (every band of a pixel-interleaved GeoTIFF, whose
    tiles decode all bands at once); ``bx`` x ``by``: the block size; ``buffer``: bytes of the tile GDAL decodes a
    pixel-interleaved tile into; ``ysize`` x ``xsize``: the raster. ``whole_window``: the window's blocks must all
    stay in the cache while it is read (band by band from a pixel-interleaved file: each band would decode the
    tiles again); otherwise only the blocks a window's edges cut must stay, for the next window (windows read all
    bands at once, or one band per block)."""

    cell: int
    bx: int
    by: int
    buffer: int
    ysize: int
    xsize: int
    whole_window: bool = True
    row_off: int = 0
    col_off: int = 0
    read_copy: int = 0  # bytes per cell of the copy GDAL makes of a window it reads (pixel-interleaved, all bands)

    def touched(self, window):
        """Cells of the blocks the window ``(row0, nrows, col0, ncols)`` of the target grid touches (they may
        reach beyond it); the raster's pixel (0, 0) is the target's (``row_off``, ``col_off``)."""
        r0, nr, c0, nc = window
        return self._span(r0 - self.row_off, nr, self.by, self.ysize) * self._span(
            c0 - self.col_off, nc, self.bx, self.xsize
        )

    @staticmethod
    def _span(start, n, block, size):
        a, b = max(0, start), min(size, start + n)
        if b <= a:
            return 0
        return min(size, -(-b // block) * block) - (a // block) * block

    def held(self, window=None):
        """Bytes held in the cache while ``window`` is read; without a window, the bytes per cell of the window."""
        if window is None:
            return self.cell if self.whole_window else 0
        area = self.touched(window)
        if self.whole_window:
            return self.cell * area
        r0, nr, c0, nc = window
        inside = self._span(r0 - self.row_off, nr, 1, self.ysize) * self._span(c0 - self.col_off, nc, 1, self.xsize)
        return self.cell * (area - inside)


def cache_bytes(layouts, window=None):
    """Bytes of GDAL's block cache while ``window`` = (row0, nrows, col0, ncols) is read from rasters of these
    :class:`BlockLayout` (without a window: the bytes per cell that scale with the window)."""
    return sum(lay.held(window) for lay in layouts)


def plan_windows(layouts, ny, nx, per_cell, memory_mb, fixed=0, tile=256, out_tile=0, log=None, what="the inputs"):
    """Windows (:func:`window_blocks`) of a ``ny`` x ``nx`` grid under ``memory_mb`` each, and the bytes of GDAL's
    block cache one of them needs (:func:`cache_bytes` of the inputs' ``layouts``): the blocks held per cell are
    counted with the window's arrays (``per_cell``; ``fixed``: bytes that do not scale with the window, to which
    the buffers of decoded pixel-interleaved tiles are added), and the blocks reaching beyond a window (input
    blocks that its edges cut) are taken off the budget once more. ``out_tile``: bytes of one output tile of
    every band of every output; when the windows cut output tiles, two such tiles waiting to be completed in the
    writers (:meth:`~.rasters.RasterWriter.write_block`) are taken off the budget too. Where even the smallest
    windows need more than ``memory_mb`` (:func:`window_need_bytes`), they are used anyway and ``log`` (when given)
    is told how much each takes, naming ``what``."""
    layouts = list(layouts)
    given_cell, given_fixed = per_cell, fixed
    per_cell, fixed = _with_layouts(layouts, per_cell, fixed)
    budget = memory_mb - fixed / 2.0**20
    for _ in range(3):
        blocks = window_blocks(ny, nx, per_cell, max(budget, memory_mb / 4), tile=tile)
        cache = max((cache_bytes(layouts, b) for b in blocks), default=0)
        beyond = cache - cache_bytes(layouts) * max((nr * nc for _, nr, _, nc in blocks), default=0)
        waiting = 2 * out_tile if any(_cuts_tiles(b, ny, nx, tile) for b in blocks) else 0
        if beyond <= 0 and waiting == 0:
            break
        new_budget = memory_mb - (fixed + max(0, beyond) + waiting) / 2.0**20
        if new_budget >= budget:
            break
        budget = new_budget
    if log is not None:
        need = window_need_bytes(layouts, blocks, ny, nx, given_cell, given_fixed, tile, out_tile) / 2.0**20
        if need > 1.05 * memory_mb:
            log(
                "the memory limit leaves %.0f MB per window, but the smallest windows of %s need about %.0f MB each "
                "(decoding their tiles and the fixed working arrays): the run will use that much per window at a "
                "time; raise MEMORY_LIMIT_MB (or use fewer THREADS) to stay within the limit" % (memory_mb, what, need)
            )
    return blocks, cache


def window_need_bytes(layouts, blocks, ny, nx, per_cell, fixed=0, tile=256, out_tile=0):
    """The largest memory one of ``blocks`` (from :func:`plan_windows` with the same arguments) needs, counted as
    :func:`plan_windows` counts it: its arrays and the input blocks held per cell, the fixed bytes and decoded-tile
    buffers, the cached blocks its edges cut beyond it and the output tiles waiting in the writers. Above the limit
    when even the smallest window does not fit it (e.g. the fixed part: a pixel-interleaved 256 x 256 tile of 120
    float32 bands takes 31 MB to decode and 31 MB held in GDAL's cache while windows share it); callers say so."""
    layouts = list(layouts)
    per_cell, fixed = _with_layouts(layouts, per_cell, fixed)
    waiting = 2 * out_tile if any(_cuts_tiles(b, ny, nx, tile) for b in blocks) else 0
    need = 0
    for b in blocks:
        cells = b[1] * b[3]
        beyond = max(0, cache_bytes(layouts, b) - cache_bytes(layouts) * cells)
        need = max(need, cells * per_cell + fixed + beyond + waiting)
    return need


def _with_layouts(layouts, per_cell, fixed):
    """``per_cell`` and ``fixed`` with what the inputs' ``layouts`` add: the blocks held per cell and GDAL's read
    copy, and the buffers of decoded pixel-interleaved tiles."""
    per_cell += cache_bytes(layouts) + sum(lay.read_copy for lay in layouts)
    return per_cell, fixed + sum(lay.buffer for lay in layouts)


def _cuts_tiles(window, ny, nx, tile):
    r0, nr, c0, nc = window
    return (nr % tile and r0 + nr != ny) or (nc % tile and c0 + nc != nx)


@contextlib.contextmanager
def window_cache(cache, windows_at_once=1):
    """GDAL's block cache for ``windows_at_once`` windows that need ``cache`` bytes each (:func:`plan_windows`),
    plus :data:`MIN_CACHE_MB` for the output's tiles; left as it is when smaller already. GDAL's default, 5 % of
    the RAM, counts under no memory limit and fills with blocks read once: a 1 000 x 1 000 x 120 downscaling at
    256 MB peaked 804 MB above where it started with it, 188-190 MB with this; resampling the same size at 256 MB
    on one thread, 602-679 MB with it and row blocks, 131 MB with this and whole-tile windows (BENCHMARKS.md)."""
    from .warp import gdal_cache

    with gdal_cache(max(1, int(windows_at_once)) * cache / 2.0**20 + MIN_CACHE_MB, shrink_only=True):
        yield
