"""Benchmark (issue 20): what the SBAS driver's window reads cost beyond GDAL's decoding, before and after the
reads into the caller's buffer (``StackFiles.read_into``, ``ProductRaster.read_into``, the copy-free range check,
the reference pass's reused coherence buffers).

Run on the frame-sized stack of ``bench_frame.py`` (605 + 605 LiCSAR-like GeoTIFFs, 2,000 x 2,500 px, DEFLATE,
256 x 256 tiles; read only), comparing this checkout with a baseline checkout (e.g. ``main`` before the change)
loaded in the same process as a second package::

    /usr/bin/python3 benchmarks/bench_reads.py --stack /work/frame_bench/stack --baseline /work/main
    /usr/bin/python3 benchmarks/bench_reads.py --stack /work/frame_bench/stack --baseline /work/main \\
        --window 768 256 768 1024 --repeat 2 --no-reference

Measured, one line per (variant, repeat), in this process, one thread:

* ``window``: one window (default 256 rows x 1,024 columns at row 768, column 768: 1 x 4 tiles) of every
  interferogram and every coherence file read with ``read_files_into`` into one (2, n_files, rows, cols)
  float32 buffer, as the inversion pass does (coherence with its [0, 1] range check); the buffer is allocated
  and touched before (not timed);
* ``window buffer touch``: what a new buffer of that size costs on its first touch (``np.empty`` + ``fill``: the
  kernel's page faults and zeroing), paid by every window whose buffer is allocated anew;
* ``floor``: the same windows decoded by GDAL alone into a reused float32 buffer (open, ``ReadAsArray(buf_obj=)``,
  close; no conventions, no checks);
* ``reference``: the reference pass's coherence score (``sbas_stack._coherence_score``, coherence only) over the
  whole frame, the way the automatic reference reads it (one window, one file at a time); its floor: every
  coherence file decoded whole by GDAL into one reused float32 buffer.

Each line gives wall and CPU (user + system) seconds, system seconds and minor page faults
(``resource.getrusage``). The variants alternate (baseline, new, floor, baseline, new, ...) so that the page
cache is as warm for one as for the other; the first repeat warms it. The results of the baseline and of this
checkout are compared bit for bit (``same`` lines).
"""

import argparse
import glob
import importlib.util
import os
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_package(root, name):
    """Import the checkout at ``root`` as package ``name`` (its imports are relative)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(root) / "__init__.py", submodule_search_locations=[str(root)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return name


def modules(pkg):
    import importlib

    return SimpleNamespace(
        products=importlib.import_module(pkg + ".core.insar.products"),
        stack=importlib.import_module(pkg + ".core.insar.stack"),
        sbas_stack=importlib.import_module(pkg + ".core.insar.sbas_stack"),
    )


def stack_files(m, ifgs, cohs):
    p = m.products
    rasters = {f: p.ProductRaster(f, p.KIND_UNW, p.PRODUCT_LICSAR) for f in ifgs}
    rasters.update({f: p.ProductRaster(f, p.KIND_COH, p.PRODUCT_LICSAR) for f in cohs})
    return (
        m.stack.StackFiles(ifgs, rasters),
        m.stack.StackFiles(cohs, rasters, valid_range=(0.0, 1.0), quantity="coherence"),
    )


def measure(fn):
    r0, w0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
    result = fn()
    w1, c1, r1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    return result, {
        "wall": w1 - w0,
        "cpu": c1 - c0,
        "sys": r1.ru_stime - r0.ru_stime,
        "minflt": r1.ru_minflt - r0.ru_minflt,
    }


def read_window(m, files, window, out):
    row0, nrows, col0, ncols = window
    ifg, coh = files
    m.stack.read_files_into(ifg, out[0], row0, nrows, col0, ncols, 1)
    m.stack.read_files_into(coh, out[1], row0, nrows, col0, ncols, 1)
    return out


def floor_window(paths, window, buf):
    from osgeo import gdal

    row0, nrows, col0, ncols = window
    for p in paths:
        ds = gdal.Open(p)
        ds.GetRasterBand(1).ReadAsArray(col0, row0, ncols, nrows, buf_obj=buf)
        ds = None


def reference_score(m, files, shape):
    ifg, coh = files
    n = len(ifg.paths)
    state = SimpleNamespace(
        network=SimpleNamespace(n_ifg=n),
        solver=SimpleNamespace(min_coherence=0.0),
        coherence_only=True,
        ifg_files=ifg,
        coh_files=coh,
        inner_threads=1,
    )
    task = SimpleNamespace(row0=0, nrows=shape[0], col0=0, ncols=shape[1])
    return m.sbas_stack._coherence_score(task, state)


def same(a, b):
    if a is None or b is None:
        return ""
    if isinstance(a, tuple):
        return "yes" if all(same(x, y) == "yes" for x, y in zip(a, b)) else "NO"
    if isinstance(a, dict):
        return "yes" if all(same(a[k], b[k]) == "yes" for k in a) else "NO"
    a, b = np.asarray(a), np.asarray(b)
    uint = {1: np.uint8, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    ok = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(uint), b.view(uint))
    return "yes" if ok else "NO"


def line(label, repeat, s):
    print(
        "%-22s %2d  wall %7.2f s  cpu %7.2f s  sys %6.2f s  minor faults %9d"
        % (label, repeat, s["wall"], s["cpu"], s["sys"], s["minflt"]),
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", default="/work/frame_bench/stack", help="folder of *.geo.unw.tif + *.geo.cc.tif")
    ap.add_argument("--baseline", help="a checkout to compare with (e.g. /work/main before the change)")
    ap.add_argument(
        "--window", type=int, nargs=4, default=(768, 256, 768, 1024), metavar=("ROW0", "ROWS", "COL0", "COLS")
    )
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--files", type=int, default=0, help="only the first N pairs (0: all)")
    ap.add_argument("--no-window", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()

    ifgs = sorted(glob.glob(os.path.join(args.stack, "*.geo.unw.tif")))
    cohs = sorted(glob.glob(os.path.join(args.stack, "*.geo.cc.tif")))
    if args.files:
        ifgs, cohs = ifgs[: args.files], cohs[: args.files]
    assert ifgs and len(ifgs) == len(cohs), "need as many .geo.unw.tif as .geo.cc.tif files in --stack"

    variants = []
    if args.baseline:
        variants.append(("baseline", modules(load_package(args.baseline, "subsidence_toolkit_baseline"))))
    variants.append(("new", modules(load_package(ROOT, "subsidence_toolkit"))))
    files = {name: stack_files(m, ifgs, cohs) for name, m in variants}
    shape = files["new"][0].rasters[0].stack_shape
    print(
        "%d interferograms + %d coherence files, %d x %d px; baseline %s; new %s"
        % (len(ifgs), len(cohs), shape[0], shape[1], args.baseline or "-", ROOT),
        flush=True,
    )

    if not args.no_window:
        row0, nrows, col0, ncols = args.window
        print("window: rows %d-%d, cols %d-%d" % (row0, row0 + nrows, col0, col0 + ncols), flush=True)
        buf_shape = (2, len(ifgs), nrows, ncols)
        bufs = {name: np.full(buf_shape, 7.0, dtype=np.float32) for name, _ in variants}  # touched: not timed
        floor_buf = np.empty((nrows, ncols), dtype=np.float32)
        for r in range(args.repeat):
            for name, m in variants:
                _, s = measure(lambda: read_window(m, files[name], args.window, bufs[name]))
                line("window " + name, r, s)
            _, s = measure(lambda: np.empty(buf_shape, dtype=np.float32).fill(0))
            line("window buffer touch", r, s)
            _, s = measure(lambda: floor_window(ifgs + cohs, args.window, floor_buf))
            line("window GDAL floor", r, s)
            if "baseline" in bufs:
                print("window baseline vs new: same %s" % same(bufs["baseline"], bufs["new"]), flush=True)
        del bufs

    if not args.no_reference:
        results = {}
        for name, m in variants:
            res, s = measure(lambda: reference_score(m, files[name], shape))
            results[name] = res
            line("reference " + name, 0, s)
        whole = (0, shape[0], 0, shape[1])
        _, s = measure(lambda: floor_window(cohs, whole, np.full(shape, 7.0, dtype=np.float32)))
        line("reference GDAL floor", 0, s)
        if "baseline" in results:
            print("reference baseline vs new: same %s" % same(results["baseline"], results["new"]), flush=True)


if __name__ == "__main__":
    main()
