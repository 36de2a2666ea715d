"""Memory plan of the streamed SBAS inversion: windows read from every file and sub-blocks solved, under a
cap that counts GDAL's block cache, the window buffers, reading and the solve (see :func:`plan_blocks`)."""

from .sbas import QUALITY_BANDS, solve_bytes_fixed, solve_bytes_per_pixel
from .weights import WEIGHT_NONE

MIB = 2**20
OUT_TILE = 256  # tile side of the GeoTIFFs RasterWriter writes
MIN_GDAL_CACHE = 4 * MIB  # GDAL's block cache never gets less
OPEN_FILE_BYTES = MIB  # one open GeoTIFF while it is read: libtiff's compressed-block buffer, zlib state,
#                           PAM, measured 0.35-0.6 MB per dataset; files are opened one at a time for that reason
READ_BYTES_PX = 12  # temporaries of reading one file's window (GDAL array, NoData mask/where copy)
MIN_SUB_PIXELS = 2048  # smallest sub-block worth solving when a whole window of tiles is buffered
GOOD_SUB_PIXELS = 16384  # sub-blocks at least this large solve at full speed: on the frame benchmark (605 pairs)
#                          5 120-pixel sub-blocks took 23.5 s per Mpx, 16 384 16.4 s, 40 960 15.0 s; a window is
#                          narrowed (whole tile rows kept) rather than solved in smaller sub-blocks
MAX_SUB_PIXELS = 32768  # larger sub-blocks are not faster (temporaries of M x pixels leave the CPU caches)
ALLOCATOR_SLACK = 0.15  # share of the cap left for what the plan does not count: memory the allocator keeps
#                           after numpy frees temporaries, GDAL/libtiff internals, Python objects (measured:
#                           peak RSS - traced peak ~ 10-15 % of the cap)


def _out_tiles_open(h, w, ysize, xsize, out_bands):
    """Bytes of output tiles a window of h x w leaves partly written (they wait in GDAL's cache for the
    next windows), zero when windows cover whole output tiles."""
    rows_ok = h % OUT_TILE == 0 or h >= ysize
    cols_ok = w % OUT_TILE == 0 or w >= xsize
    if rows_ok and cols_ok:
        return 0
    return out_bands * (-(-w // OUT_TILE) + (0 if cols_ok else 1)) * OUT_TILE * OUT_TILE * 4


def _window_candidates(ysize, xsize, row_unit, col_unit):
    """Window shapes (rows, cols), largest first: whole block rows of the full width, then fewer block columns
    of one block row, then fewer rows of one block column."""
    cands = [(row_unit * k, xsize) for k in range(-(-ysize // row_unit), 0, -1)]
    cands += [(row_unit, col_unit * j) for j in range(-(-xsize // col_unit) - 1, 0, -1)]
    h = row_unit // 2
    while h >= 1:
        cands.append((h, col_unit))
        h //= 2
    return cands


def _sub_rows(left, solve_bytes_px, h, w, threads):
    """Rows of a sub-block: as many as ``left`` bytes hold for ``threads`` sub-blocks at once (at most
    :data:`MAX_SUB_PIXELS`, and with several threads at most ``ceil(h / threads)`` so that each gets one)."""
    if solve_bytes_px <= 0:
        return h
    sub = int(left // (threads * solve_bytes_px * w)) if left > 0 else 1
    sub = max(1, min(h, sub, max(1, MAX_SUB_PIXELS // w)))
    if threads > 1:
        sub = min(sub, -(-h // threads))
    return sub


def _ordered_windows(ysize, xsize, h, w):
    """Windows of h x w in output tile rows, column by column inside one (a partly written output tile is
    completed by the next windows before the cache has to keep others)."""
    wins = [(r, min(h, ysize - r), c, min(w, xsize - c)) for r in range(0, ysize, h) for c in range(0, xsize, w)]
    wins.sort(key=lambda win: (win[0] // OUT_TILE, win[2], win[0]))
    return wins


def plan_blocks(
    ysize,
    xsize,
    block_size,
    buf_bytes_px,
    solve_bytes_px,
    memory_mb,
    *,
    out_bands=0,
    in_sample_bytes=4,
    solve_fixed=0,
    threads_in_window=1,
):
    """Windows and sub-blocks of a streamed pass whose memory stays under ``memory_mb``.

    A *window* (``row0, nrows, col0, ncols``) is read from every input file in turn (one file open at a
    time) into a buffer of ``buf_bytes_px`` bytes per pixel (all inputs of the window and its outputs),
    then solved in *sub-blocks* of ``sub_rows`` whole window rows of ``solve_bytes_px`` bytes per pixel
    (plus ``solve_fixed`` bytes per sub-block). The plan fills ``1 - ALLOCATOR_SLACK`` of the cap.
    Windows cover whole input blocks (GeoTIFF tiles or strips: ``block_size`` = (x, y)) so that every
    input block is decompressed once per pass; only when a window of one block row does not fit they
    get fewer rows (the blocks are then decompressed once per window). Among windows of whole block rows the
    largest whose sub-blocks reach :data:`GOOD_SUB_PIXELS` is taken (a narrower window rather than slow small
    sub-blocks); only when none does, the largest with smaller sub-blocks. GDAL's block cache is part of
    the budget: it needs two input blocks plus the output tiles a window leaves partly written.

    ``threads_in_window`` t > 1: one window at a time, its files read by t threads at once (t open files, their
    read temporaries and 2 t input blocks in GDAL's cache) and its sub-blocks solved by t threads (t sub-blocks
    in memory, each with its ``solve_fixed``); the smallest sub-block worth it is then ``MIN_SUB_PIXELS / t``.

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
    t = max(1, int(threads_in_window))
    min_sub = max(1, MIN_SUB_PIXELS // t)

    def cost(h, w):
        cache = max(MIN_GDAL_CACHE, 2 * t * in_block + _out_tiles_open(h, w, ysize, xsize, out_bands))
        fixed = {
            "cache": cache,
            "buffers": buf_bytes_px * h * w,
            "read": t * (OPEN_FILE_BYTES + READ_BYTES_PX * h * w),
            "solve_fixed": t * solve_fixed,
        }
        return fixed, sum(fixed.values())

    choice = None
    cands = [(min(h, ysize), min(w, xsize)) for h, w in _window_candidates(ysize, xsize, row_unit, col_unit)]
    # windows of whole block rows (fewer rows decode blocks twice): the largest whose sub-blocks solve at full
    # speed (GOOD_SUB_PIXELS), else the one with the largest sub-blocks; then any window with the smallest
    # sub-block worth solving
    best = 0
    for h, w in cands:
        if h < row_unit:
            break
        fixed, tot = cost(h, w)
        if tot + t * solve_bytes_px * min(h * w, max(min_sub, w)) > budget:
            continue
        px = min(h * w, GOOD_SUB_PIXELS, _sub_rows(budget - tot, solve_bytes_px, h, w, t) * w)
        if px > best:
            best, choice = px, (h, w, fixed, tot, True)
        if px >= min(h * w, GOOD_SUB_PIXELS):
            break
    for h, w in cands if choice is None else ():
        fixed, tot = cost(h, w)
        if tot + t * solve_bytes_px * min(h * w, max(min_sub, w)) <= budget:
            choice = (h, w, fixed, tot, True)
            break
    if choice is None:
        h, w = 1, col_unit
        fixed, tot = cost(h, w)
        choice = (h, w, fixed, tot, False)
    h, w, fixed, tot, fits = choice
    sub = _sub_rows(budget - tot, solve_bytes_px, h, w, t)
    parts = {k: v for k, v in fixed.items() if k != "solve_fixed"}
    parts["solve"] = t * (solve_bytes_px * sub * w + solve_fixed)
    return {
        "windows": _ordered_windows(ysize, xsize, h, w),
        "sub_rows": sub,
        "gdal_cache": int(fixed["cache"]),
        "parts": parts,
        "memory_mb": memory_mb,
        "budget": int(budget),
        "total": int(sum(parts.values())),
        "fits": fits and sum(parts.values()) <= budget,
        "threads_in_window": t,
    }


def plan_stack(
    stack,
    weighting=WEIGHT_NONE,
    min_coherence=0.0,
    memory_mb=512,
    reference_pass=False,
    *,
    extra_bytes_px=0,
    extra_fixed=0,
    threads_in_window=1,
    outputs_ahead=0.0,
):
    """Memory plans of the passes of :func:`.sbas_stack.invert_stack` (see :func:`plan_blocks`): ``invert`` and, for the
    automatic reference, ``reference``. Every byte our code allocates per window counts: GDAL's block
    cache, the window buffers (interferograms, coherence when the solve needs it, float32 outputs), one
    open file with its read temporaries and the sub-block solve. ``extra_bytes_px`` / ``extra_fixed``: what the
    corrections add to the inversion pass (per pixel of a window, e.g. GACOS delays of every date; per
    sub-block, e.g. a chunk of loop phases). ``threads_in_window``: the inversion pass reads and solves each window
    with that many threads (see :func:`plan_blocks`), the outputs of one window written while the next computes; the
    reference pass with coherence reads that many files at once. ``outputs_ahead``: the share of one more window's
    outputs each inversion window counts (t windows computed at a time while the caller writes one more: 1 / t;
    :func:`~..io.tasks.map_threads` ``ahead``)."""
    net, grid = stack.network, stack.grid
    M, N = net.n_ifg, net.n_dates
    bsize, sample = stack.ifg_files().block_size()
    weighted = weighting != WEIGHT_NONE
    has_coh = bool(stack.coherence_paths)
    need_coh = has_coh and (weighted or (min_coherence or 0) > 0)
    out_bands = N + 1 + len(QUALITY_BANDS)
    kind = "weighted" if weighted else "float32"
    fixed = solve_bytes_fixed(M, N)
    plans = {
        "invert": plan_blocks(
            grid.ysize,
            grid.xsize,
            bsize,
            # the outputs of the previous window are written while this one computes: with threads inside the window
            # one more window of them, with t windows at a time 1 / t of one per window
            4 * (M * (2 if need_coh else 1) + out_bands * (1 + (1 if threads_in_window > 1 else outputs_ahead)))
            + extra_bytes_px,
            solve_bytes_per_pixel(M, N, kind, net.bandwidth),
            memory_mb,
            out_bands=out_bands,
            in_sample_bytes=sample,
            solve_fixed=fixed + extra_fixed,
            threads_in_window=threads_in_window,
        )
    }
    if reference_pass:
        if has_coh:
            # per-pixel running count (intp) and coherence sum (float32), the score (float64); the
            # files are streamed (READ_BYTES_PX covers one file's window, x2 for phase + coherence)
            # (threads inside the window: that many files read at once, each with its read temporaries)
            plans["reference"] = plan_blocks(
                grid.ysize,
                grid.xsize,
                bsize,
                8 + 4 + 8 + READ_BYTES_PX + 2,
                0,
                memory_mb,
                in_sample_bytes=sample,
                threads_in_window=threads_in_window,
            )
        else:
            plans["reference"] = plan_blocks(
                grid.ysize,
                grid.xsize,
                bsize,
                4 * M + 16,
                solve_bytes_per_pixel(M, N, "float64"),
                memory_mb,
                in_sample_bytes=sample,
                solve_fixed=fixed,
            )
    return plans
