"""Benchmark: what the plugin adds to every QGIS start.

QGIS, and every ``qgis_process`` run whatever algorithm it runs, imports each enabled plugin when it starts.
This times ``qgis_process.bin run native:buffer`` on one point (a trivial run) in throw-away profiles: without
the plugin, and with the plugin of each checkout given (e.g. this one and a ``git worktree`` of an older
commit), the runs alternating so a slow spell of the machine hits every profile.

    /usr/bin/python3 benchmarks/bench_startup.py [--checkout DIR ...] [--repeat 7]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def profile(workdir, checkout, exe):
    """Environment of a throw-away profile; ``checkout``: the plugin folder to enable (None: no plugin)."""
    home, plugins = workdir / "home", workdir / "plugins"
    home.mkdir(parents=True)
    plugins.mkdir()
    runtime = workdir / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), QGIS_PLUGINPATH=str(plugins), QT_QPA_PLATFORM="offscreen")
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    if checkout is not None:
        (plugins / "subsidence_toolkit").symlink_to(Path(checkout).resolve(), target_is_directory=True)
        r = subprocess.run([exe, "plugins", "enable", "subsidence_toolkit"], env=env, capture_output=True, text=True)
        if r.returncode != 0 and "already enabled" not in r.stdout + r.stderr:
            raise RuntimeError(r.stdout + r.stderr)
    return env


def trivial_run(exe, env, folder):
    pt = folder / "one_point.geojson"
    pt.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        '"geometry": {"type": "Point", "coordinates": [108.1, 38.4]}}]}'
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(
        [exe, "run", "native:buffer", "--", "INPUT=%s" % pt, "DISTANCE=0.01", "OUTPUT=%s" % (folder / "b.gpkg")],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", action="append", default=None, help="plugin folder(s) to compare (default: this)")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    from toolkit_package import register

    register()
    from subsidence_toolkit.demo.headless import find_qgis_process

    exe = find_qgis_process()
    checkouts = a.checkout or [str(ROOT)]
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as d:
        d = Path(d)
        names = ["no plugin"] + ["plugin of %s" % c for c in checkouts]
        envs = [profile(d / ("p%d" % i), c, exe) for i, c in enumerate([None] + checkouts)]
        times = {n: [] for n in names}
        for _ in range(a.repeat):
            for n, env in zip(names, envs):
                times[n].append(trivial_run(exe, env, d))
        base = statistics.median(w for w, _ in times["no plugin"])
        for n in names:
            walls, cpus = [w for w, _ in times[n]], [c for _, c in times[n]]
            print(
                "%-60s wall median %.2f s (best %.2f), CPU median %.2f s; plugin adds %.2f s"
                % (n, statistics.median(walls), min(walls), statistics.median(cpus), statistics.median(walls) - base)
            )
