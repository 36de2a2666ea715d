"""Benchmark: the per-pixel unwrapping-error correction (LOOP_CLOSURE 3, core/insar/unwrap_correction.py) on the
in-memory 500 x 500 px, 202-interferogram stack of bench_sbas.py (Cramer-Rao phase noise, coherence down to 0.1),
referenced at its automatic reference pixel, in sub-blocks of 20 rows with one pattern cache per 100-row window
as the driver runs it: CPU of the correction vs the n_loop_errors count alone, on the clean stack and with
+-2 pi planted over 120 x 120 px patches in 5 interferograms (identifiable, in >= 2 loops); planted values
found exactly, missed and spurious.

    cd benchmarks && /usr/bin/python3 bench_unwrap_correction.py
"""

import math
import time

import numpy as np
import toolkit_package  # noqa: F401  (registers the checkout as subsidence_toolkit)
from bench_sbas import make_stack

from subsidence_toolkit.core.insar import loop_closure as lc
from subsidence_toolkit.core.insar import unwrap_correction as uc


def main():
    net, dates, phase, coh, offsets, truth, water = make_stack(500, 60)
    M = net.n_ifg
    ln = lc.LoopNetwork(net.i1, net.i2, net.sign)
    ph = phase - phase[:, 151:152, 142:143]  # referenced at the bench's automatic reference pixel
    ident = np.flatnonzero(uc.identifiable(ln) & (ln.n_loops_per_ifg >= 2))
    rng = np.random.default_rng(0)
    ks = rng.choice(ident, 5, replace=False)
    plant = np.zeros((M, 500, 500), np.int8)
    for n, k in enumerate(ks):
        r0, c0 = 40 + 80 * n, 60 + 70 * n
        plant[k, r0 : r0 + 120, c0 : c0 + 120] = 1 if n % 2 else -1
    bad = ph + (2 * math.pi * plant).astype(np.float32)
    cor = uc.ClosureCorrector(ln)
    for label, y in (("clean", ph), ("planted", bad)):
        t = time.process_time()
        tc = 0.0
        found = np.zeros_like(plant)
        counts = np.zeros(7, int)
        for w0 in range(0, 500, 100):  # windows of 100 rows, sub-blocks of 20
            cache = {}
            for a in range(w0, w0 + 100, 20):
                blk = np.ascontiguousarray(y[:, a : a + 20]).reshape(M, -1)
                t1 = time.process_time()
                lc.count_loop_errors(ln, blk.reshape(M, 20, 500))
                tc += time.process_time() - t1
                r = cor.correct(blk, 1.0, cache, shape=(20, 500))
                counts += r.counts
                f = np.zeros((M, 20 * 500), np.int8)
                f[:, r.pixels] = r.cycles
                found[:, a : a + 20] = f.reshape(M, 20, 500)
        tot = time.process_time() - t
        print(
            label,
            "CPU total %.2f s (count_loop_errors alone %.2f s, correction %.2f s)" % (tot, tc, tot - tc),
            dict(zip(uc.COUNT_NAMES, counts.tolist())),
        )
        print(
            "   planted values found exactly: %d of %d; spurious %d; missed %d"
            % (
                ((found == plant) & (plant != 0)).sum(),
                (plant != 0).sum(),
                ((found != 0) & (plant == 0)).sum(),
                ((found == 0) & (plant != 0)).sum(),
            )
        )


if __name__ == "__main__":
    main()
