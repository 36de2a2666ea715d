"""Benchmark (issue 20): the scan pass's scratch copy of a stack, kept row-major (one slot per raster, as before
session 10) or in tiles of the inputs' blocks (now), written and read back in the windows of a frame's plan.

    /usr/bin/python3 benchmarks/bench_scratch.py --folder /work/frame_bench   # 60 rasters of 2 000 x 2 500
    /usr/bin/python3 benchmarks/bench_scratch.py --folder /work/frame_bench --write-window 256 1280 \
        --baseline /work/wt_before          # against another checkout's tiled copy (session 18)

Each layout writes every raster's windows (``ScratchStack.write``) into a new anonymous file in ``--folder`` and
reads them back (``read_into``), alternating the layouts ``--repeat`` times; prints wall and CPU seconds and the
bytes. The first writes of a new file include the kernel's page allocations, as in a run.

With ``--page-cache GLOB`` (session 11): what the copy costs when the files just read fill the page cache, as in
the scan pass of a frame. Each round reads every file matching GLOB whole, either leaving its pages in the cache
or dropping them once read (``posix_fadvise(POSIX_FADV_DONTNEED)``, the advice the scan now gives when the files
and the copy do not fit in memory together), then writes the copy of ``--rasters`` rasters in tiles and prints
the wall, user and system seconds of the writes. As root the page cache is emptied before each round
(``/proc/sys/vm/drop_caches``)::

    /usr/bin/python3 benchmarks/bench_scratch.py --folder /work/frame_bench --rasters 605 \
        --page-cache '/work/frame_bench/stack/*.tif' --repeat 1"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sbas  # noqa: E402, F401  (registers the checkout as subsidence_toolkit)

from subsidence_toolkit.core.insar.stack import ScratchStack  # noqa: E402


def load_baseline(root):
    """The ScratchStack class of another checkout (e.g. a worktree of main before a change), loaded as a second
    package beside this one."""
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "baseline_toolkit", os.path.join(root, "__init__.py"), submodule_search_locations=[root]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["baseline_toolkit"] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module("baseline_toolkit.core.insar.stack").ScratchStack


def run(folder, ysize, xsize, n, win, tile, cls=ScratchStack, write_win=None):
    """Write every raster in ``write_win`` windows (default ``win``; the scan pass's), read it back in ``win``
    windows (the inversion pass's): (write wall, write CPU, read wall, read CPU) seconds."""
    keys = list(range(n))
    ww = tuple(write_win or win)
    image = np.random.default_rng(0).normal(size=(ysize, xsize)).astype(np.float32)
    s = cls(folder, ysize, xsize, keys, tile=tile)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for r in range(0, ysize, ww[0]):
            for c in range(0, xsize, ww[1]):
                for k in keys:
                    s.write(k, r, c, image[r : r + ww[0], c : c + ww[1]])
        t1, c1 = time.perf_counter(), time.process_time()
        for r in range(0, ysize, win[0]):
            for c in range(0, xsize, win[1]):
                h, w = min(win[0], ysize - r), min(win[1], xsize - c)
                out = np.empty((h, w), np.float32)
                for k in keys:
                    s.read_into(k, r, c, out)
                    if k == 0 and not np.array_equal(out, image[r : r + h, c : c + w]):
                        raise SystemExit("read back differs")
        t2, c2 = time.perf_counter(), time.process_time()
    finally:
        s.close()
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def page_cache_round(folder, ysize, xsize, n, win, tile, files, forget):
    """Read ``files`` whole (dropping each one's pages once read when ``forget``), then write the copy: (read
    seconds, write wall, user, system seconds)."""
    import resource

    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        print("  (cannot empty the page cache: not root; the round starts with whatever is cached)")
    t0 = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
            if forget:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    read = time.perf_counter() - t0
    values = np.random.default_rng(0).normal(size=win).astype(np.float32)
    s = ScratchStack(folder, ysize, xsize, list(range(n)), tile=tile)
    try:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for r in range(0, ysize, win[0]):
            for c in range(0, xsize, win[1]):
                h, w = min(win[0], ysize - r), min(win[1], xsize - c)
                for k in range(n):
                    s.write(k, r, c, values[:h, :w])
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    finally:
        s.close()
    return read, t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default=tempfile.gettempdir())
    ap.add_argument("--size", type=int, nargs=2, default=(2000, 2500), metavar=("ROWS", "COLS"))
    ap.add_argument("--rasters", type=int, default=60)
    ap.add_argument("--window", type=int, nargs=2, default=(256, 768), metavar=("ROWS", "COLS"))
    ap.add_argument("--tile", type=int, nargs=2, default=(256, 256), metavar=("ROWS", "COLS"))
    ap.add_argument(
        "--write-window", type=int, nargs=2, metavar=("ROWS", "COLS"), help="windows of the writes (default --window)"
    )
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="compare the tiled copy of this checkout with that of another (e.g. a worktree of main before a change) "
        "instead of the row-major layout",
    )
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--page-cache", metavar="GLOB", help="files read before the copy is written (see above)")
    a = ap.parse_args()
    ysize, xsize = a.size
    mb = ScratchStack.nbytes(ysize, xsize, a.rasters) / 1e6
    if a.page_cache:
        import glob

        files = sorted(glob.glob(a.page_cache))
        size = sum(os.path.getsize(f) for f in files) / 1e6
        print(
            "%d files (%.0f MB) read, then a copy of %d rasters (%.0f MB) written" % (len(files), size, a.rasters, mb)
        )
        for _ in range(a.repeat):
            for name, forget in (("files left in the cache", False), ("files dropped as read", True)):
                rd, w, u, sy = page_cache_round(
                    a.folder, ysize, xsize, a.rasters, tuple(a.window), tuple(a.tile), files, forget
                )
                print("%-24s read %.1f s; copy written in %.1f s (user %.1f s, system %.1f s)" % (name, rd, w, u, sy))
        return
    print(
        "%d rasters of %d x %d (%.0f MB) in %d x %d windows, in %s" % (a.rasters, ysize, xsize, mb, *a.window, a.folder)
    )
    tiles = "tiles %d x %d" % tuple(a.tile)
    if a.baseline:
        variants = (("%s, %s" % (tiles, a.baseline), tuple(a.tile), load_baseline(a.baseline)),)
    else:
        variants = (("row-major (before)", None, ScratchStack),)
    variants += (("%s (this checkout)" % tiles, tuple(a.tile), ScratchStack),)
    for _ in range(a.repeat):
        for name, tile, cls in variants:
            w, wc, r, rc = run(a.folder, ysize, xsize, a.rasters, tuple(a.window), tile, cls, a.write_window)
            print("%-22s write %.2f s (CPU %.2f s), read %.2f s (CPU %.2f s)" % (name, w, wc, r, rc))


if __name__ == "__main__":
    main()
