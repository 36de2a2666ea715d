"""Benchmark (issue 20): the scan pass's scratch copy of a stack, kept row-major (one slot per raster, as before
session 10) or in tiles of the inputs' blocks (now), written and read back in the windows of a frame's plan.

    /usr/bin/python3 benchmarks/bench_scratch.py --folder /work/frame_bench   # 60 rasters of 2 000 x 2 500

Each layout writes every raster's windows (``ScratchStack.write``) into a new anonymous file in ``--folder`` and
reads them back (``read_into``), alternating the layouts ``--repeat`` times; prints wall and CPU seconds and the
bytes. The first writes of a new file include the kernel's page allocations, as in a run."""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sbas  # noqa: E402, F401  (registers the checkout as subsidence_toolkit)

from subsidence_toolkit.core.insar.stack import ScratchStack  # noqa: E402


def run(folder, ysize, xsize, n, win, tile):
    keys = list(range(n))
    values = np.random.default_rng(0).normal(size=win).astype(np.float32)
    windows = [(r, c) for r in range(0, ysize, win[0]) for c in range(0, xsize, win[1])]
    s = ScratchStack(folder, ysize, xsize, keys, tile=tile)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for r, c in windows:
            h, w = min(win[0], ysize - r), min(win[1], xsize - c)
            for k in keys:
                s.write(k, r, c, values[:h, :w])
        t1, c1 = time.perf_counter(), time.process_time()
        for r, c in windows:
            h, w = min(win[0], ysize - r), min(win[1], xsize - c)
            out = np.empty((h, w), np.float32)
            for k in keys:
                s.read_into(k, r, c, out)
                if k == 0 and not np.array_equal(out, values[:h, :w]):
                    raise SystemExit("read back differs")
        t2, c2 = time.perf_counter(), time.process_time()
    finally:
        s.close()
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default=tempfile.gettempdir())
    ap.add_argument("--size", type=int, nargs=2, default=(2000, 2500), metavar=("ROWS", "COLS"))
    ap.add_argument("--rasters", type=int, default=60)
    ap.add_argument("--window", type=int, nargs=2, default=(256, 768), metavar=("ROWS", "COLS"))
    ap.add_argument("--tile", type=int, nargs=2, default=(256, 256), metavar=("ROWS", "COLS"))
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    ysize, xsize = a.size
    mb = ScratchStack.nbytes(ysize, xsize, a.rasters) / 1e6
    print(
        "%d rasters of %d x %d (%.0f MB) in %d x %d windows, in %s" % (a.rasters, ysize, xsize, mb, *a.window, a.folder)
    )
    for _ in range(a.repeat):
        for name, tile in (("row-major (before)", None), ("tiles %d x %d (now)" % tuple(a.tile), tuple(a.tile))):
            w, wc, r, rc = run(a.folder, ysize, xsize, a.rasters, tuple(a.window), tile)
            print("%-22s write %.2f s (CPU %.2f s), read %.2f s (CPU %.2f s)" % (name, w, wc, r, rc))


if __name__ == "__main__":
    main()
