#!/usr/bin/env python3
"""Run the demo: deterministic sample data, every algorithm headless through qgis_process.bin.

Each ``demo/step_NN_<name>.py`` has ``run(demo)``; steps run in file-name order and share
``demo.outputs``. A step makes the inputs it needs in ``demo.data_dir`` (deterministic) unless an
earlier step produced them, runs its algorithm(s) with ``demo.run`` and logs how close the results
are to the planted truth. ``--small`` is the reduced version CI runs.

Usage: /usr/bin/python3 demo/run_demo.py --out demo_output [--small] [--only NAME ...]
"""

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "subsidence_toolkit"


def _register_package():
    if PKG not in sys.modules:
        spec = importlib.util.spec_from_file_location(PKG, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PKG] = module
        spec.loader.exec_module(module)


class Demo:
    def __init__(self, out, small=False):
        from subsidence_toolkit.demo.headless import QgisProcess

        self.root = Path(out).resolve()
        self.data_dir = self.root / "data"
        self.out_dir = self.root / "outputs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.small = small
        self.outputs = {}
        self.metrics = {}
        self.commands = []
        self.qp = QgisProcess(self.root / "qgis")

    def log(self, msg):
        print("  " + str(msg), flush=True)

    def run(self, alg, params):
        args = self.qp.arguments(params)
        self.commands.append("%s --json run %s -- %s" % (os.path.basename(self.qp.exe), alg, " ".join(args)))
        t0 = time.time()
        res = self.qp.run(alg, params)
        self.log("%s finished in %.1f s" % (alg, time.time() - t0))
        return res.get("results", {})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo_output")
    ap.add_argument("--small", action="store_true", help="reduced data set (CI)")
    ap.add_argument("--only", nargs="*", help="run only steps whose file name contains one of these")
    args = ap.parse_args(argv)
    _register_package()
    demo = Demo(args.out, args.small)
    steps = sorted((ROOT / "demo").glob("step_*.py"))
    if args.only:
        steps = [s for s in steps if any(o in s.name for o in args.only)]
    failed = []
    for path in steps:
        name = path.stem
        print("== %s" % name, flush=True)
        mod = importlib.import_module("%s.demo.%s" % (PKG, name))
        t0 = time.time()
        try:
            metrics = mod.run(demo)
            if metrics:
                demo.metrics[name] = metrics
        except Exception:  # report every step, then fail at the end
            traceback.print_exc()
            failed.append(name)
        print("   (%.1f s)" % (time.time() - t0), flush=True)
    files = {k: str(v) for k, v in demo.outputs.items() if isinstance(v, (str, Path))}
    summary = {"outputs": files, "metrics": demo.metrics, "commands": demo.commands, "failed": failed}
    (demo.root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("\nDemo outputs in %s" % demo.out_dir)
    for k, v in files.items():
        print("  %-24s %s" % (k, v))
    if failed:
        print("FAILED steps: %s" % ", ".join(failed))
        return 1
    print("All %d demo steps finished." % len(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
