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

from .tasks import give_back_free_memory, run_tasks_here_or

DEFAULT_MEMORY_MB = 512


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
