"""Benchmark: the windowed raster algorithms under a memory limit (issue 20) - time and peak memory of DEM-error
correction, LOS -> vertical projection and the decomposition of two tracks, this checkout against an earlier one on
the same stack.

The stack is ``bench_resample.py``'s (1 000 x 1 000 x 120 float32, DEFLATE, 256 x 256 tiles, patches of gaps;
written once into ``--folder`` and reused). Each run is a process of its own, as the core driver runs it
(``correct_dem_error`` with 120 synthetic perpendicular baselines and the default model, ``project_raster`` with
a constant incidence, ``decompose_rasters`` of the stack and a hard link to it as ascending and descending
tracks, headings -10 / 190 degrees, incidences 35 / 40 degrees); peak = ``VmHWM`` above the run's start. With
``--baseline DIR`` (a ``git worktree`` of an earlier commit) the two checkouts alternate and their outputs are
compared value for value.

    /usr/bin/python3 benchmarks/bench_windowed.py --folder /work/prof/br --baseline /work/wt_before --repeat 2
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import machine
import numpy as np

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


def child(root, which, path, out, memory_mb):
    """One run of ``which`` (dem / project) with the checkout at ``root``; prints a JSON line."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "subsidence_toolkit", str(Path(root) / "__init__.py"), submodule_search_locations=[str(root)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["subsidence_toolkit"] = mod
    spec.loader.exec_module(mod)
    import pandas  # noqa: F401  (loaded once per QGIS session: not the run's data)
    import scipy.interpolate  # noqa: F401
    from osgeo import gdal

    from subsidence_toolkit.core.insar import dem_error, geometry
    from subsidence_toolkit.core.io.rasters import read_dates

    gdal.UseExceptions()
    dates = read_dates(path)
    baselines = dem_error.Baselines("synthetic", dates=dates, values=np.random.default_rng(1).normal(0, 80, len(dates)))
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = machine.status_kb("VmRSS")
    t0 = time.perf_counter()
    with machine.Steal() as steal:
        if which == "dem":
            dem_error.correct_dem_error(path, out, out.replace(".tif", "_dz.tif"), baselines, memory_mb=memory_mb)
        elif which == "decompose":
            geometry.decompose_rasters(
                [path, _second_track(path)],
                headings=[-10, 190],
                incidences=[35, 40],
                out_vertical=out,
                out_east=out.replace(".tif", "_east.tif"),
                memory_mb=memory_mb,
            )
        else:
            geometry.project_raster(path, out, {"angle": 39.0}, memory_mb=memory_mb)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "rss_mb": (machine.status_kb("VmHWM") - start) / 1024, "steal": steal.fraction}))


def _second_track(path):
    """A second input for the decomposition: the same file under another name (a hard link, or a copy)."""
    other = str(path).replace(".tif", "_track2.tif")
    if not os.path.exists(other):
        try:
            os.link(path, other)
        except OSError:
            import shutil

            shutil.copyfile(path, other)
    return other


def run_child(root, which, path, out, memory_mb):
    cmd = [sys.executable, str(HERE), "--child", str(root), which, str(path), str(out), str(memory_mb)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def same_values(a, b):
    from osgeo import gdal

    x, y = gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray()
    return bool(np.array_equal(x, y, equal_nan=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", default=os.environ.get("BENCH_TMP", "/tmp") + "/bench_resample")
    ap.add_argument("--interleave", choices=("band", "pixel"), default="band")
    ap.add_argument("--memory-mb", type=float, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--baseline", help="an earlier checkout (git worktree) to alternate with")
    ap.add_argument("--which", nargs="*", default=["dem", "project", "decompose"])
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        root, which, path, out, mem = a.child
        child(root, which, path, out, float(mem))
        return
    sys.path.insert(0, str(HERE.parent))
    from bench_resample import make_stack

    folder = Path(a.folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("stack_1000_120_%s.tif" % a.interleave)
    make_stack(path, 1000, 120, a.interleave)
    sides = [("this checkout", ROOT)] + ([("baseline", Path(a.baseline).resolve())] if a.baseline else [])
    for which in a.which:
        for _ in range(a.repeat):
            outs = []
            for name, root in sides:
                out = str(folder / ("windowed_%s_%d.tif" % (which, len(outs))))
                r = run_child(root, which, path, out, a.memory_mb)
                outs.append(out)
                print(
                    "%s, %s (%s): %.1f s, peak +%.0f MB above the run's start (steal %.0f %%)"
                    % (which, name, root, r["wall"], r["rss_mb"], 100 * r["steal"])
                )
            if len(outs) == 2:
                print("  outputs equal value for value: %s" % same_values(outs[0], outs[1]))


if __name__ == "__main__":
    main()
