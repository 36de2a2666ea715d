"""Benchmark (issue 20): how long a frame-sized ``qgis_process`` SBAS run takes to stop after SIGTERM.

Sends SIGTERM to ``qgis_process.bin run subsidence:sbasinversion`` on the frame of ``bench_frame.py`` (written there
once; ``--folder`` as there) when its progress reaches ``--mark`` (default ``20...``: the scan pass), then reports
the seconds from the signal to the process's exit, its exit status, the "Interrupted by SIGTERM" line and what is
left in the output folder (nothing is the promise). ``--checkout`` runs another checkout of the plugin (e.g. a
``git worktree`` of an older commit) for a before / after::

    /usr/bin/python3 benchmarks/bench_sigterm.py --checkout /work/wt_before
    /usr/bin/python3 benchmarks/bench_sigterm.py
"""

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default="/work/frame_bench", help="bench_frame.py's folder (the stack in stack/)")
    ap.add_argument("--checkout", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--mark", default="20...", help="progress text after which SIGTERM is sent")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", type=float, default=2048)
    args = ap.parse_args()
    pkg = tempfile.mkdtemp(prefix="sigterm_pkg_")
    os.symlink(os.path.abspath(args.checkout), os.path.join(pkg, "subsidence_toolkit"))
    sys.path.insert(0, pkg)
    from subsidence_toolkit.demo.headless import QgisProcess

    stack = os.path.join(args.folder, "stack")
    ifgs = sorted(glob.glob(os.path.join(stack, "*.geo.unw.tif")))
    cohs = sorted(glob.glob(os.path.join(stack, "*.geo.cc.tif")))
    if not ifgs:
        sys.exit("no frame stack in %s: write it first with benchmarks/bench_frame.py --generate-only" % stack)
    out = tempfile.mkdtemp(prefix="sigterm_out_", dir=args.folder)
    qp = QgisProcess(tempfile.mkdtemp(prefix="sigterm_home_"))
    params = dict(
        INTERFEROGRAMS=ifgs,
        COHERENCE=cohs,
        MEMORY_LIMIT_MB=args.memory,
        THREADS=args.threads,
        OUTPUT_TIMESERIES=os.path.join(out, "ts.tif"),
        OUTPUT_VELOCITY=os.path.join(out, "vel.tif"),
        OUTPUT_QUALITY=os.path.join(out, "q.tif"),
    )
    proc = subprocess.Popen(
        [qp.exe, "run", "subsidence:sbasinversion", "--"] + qp.arguments(params),
        env=qp.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen, t0 = b"", time.perf_counter()
    while args.mark.encode() not in seen:
        c = proc.stdout.read(1)
        if not c:
            break
        seen += c
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=900)
    gone = time.perf_counter() - sent
    said = [s for s in (seen + rest).decode(errors="replace").splitlines() if "Interrupted" in s]
    left = os.listdir(out)
    print(
        "%s: %d + %d files, THREADS=%d, SIGTERM at %r (%.1f s in): exit %d %.2f s after the signal; %s; left in the "
        "output folder: %s"
        % (
            args.checkout,
            len(ifgs),
            len(cohs),
            args.threads,
            args.mark,
            sent - t0,
            proc.returncode,
            gone,
            said[0].strip() if said else "no 'Interrupted' line",
            left or "nothing",
        )
    )
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
