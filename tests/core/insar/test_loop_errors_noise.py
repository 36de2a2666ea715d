"""n_loop_errors counts every loop whose referenced phase exceeds pi (LiCSBAS n_loop_err): a planted +2 pi patch,
and also the loops that phase noise alone opens in low-coherence pixels. Checked through the streaming driver
against an independent numpy count of the same referenced loops (the demo makes the same check on its world)."""

import datetime as dt
import math

import numpy as np
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.insar import loop_closure as lc
from subsidence_toolkit.core.insar import sbas_stack
from subsidence_toolkit.core.insar.sbas import QUALITY_BANDS
from subsidence_toolkit.core.insar.stack import prepare_stack

NY, NX = 24, 30
PATCH = (slice(4, 8), slice(20, 24))  # +2 pi in one interferogram, in the quiet part
NOISY = (slice(14, 24), slice(0, 12))  # low coherence: 0.8 rad of phase noise per interferogram


def build(folder, seed=5):
    rng = np.random.default_rng(seed)
    dates = [dt.date(2021, 1, 2) + dt.timedelta(days=12 * k) for k in range(12)]
    pairs = [(i, j) for i in range(len(dates)) for j in range(i + 1, len(dates)) if (dates[j] - dates[i]).days <= 36]
    sigma = np.full((NY, NX), 0.1)
    sigma[NOISY] = 0.8
    ts = np.cumsum(rng.normal(0, 0.5, (len(dates), NY, NX)), axis=0)  # rad
    phases, paths = [], []
    for k, (i, j) in enumerate(pairs):
        phase = ts[j] - ts[i] + rng.normal(0, 1.0, (NY, NX)) * sigma + rng.normal(0, 2.0)  # own offset per file
        if k == 7:
            phase[PATCH] += 2 * math.pi
        name = "%s_%s.geo.unw.tif" % (dates[i].strftime("%Y%m%d"), dates[j].strftime("%Y%m%d"))
        paths.append(write_stack(folder / name, phase))
        phases.append(phase.astype(np.float32).astype(np.float64))  # as stored
    return paths, pairs, np.array(phases)


def independent_count(pairs, phases, ref, margin):
    """Loops i<j<k with |phi_ij + phi_jk - phi_ik| (each referenced at pixel ``ref``) > pi + margin."""
    index = {p: k for k, p in enumerate(pairs)}
    referenced = phases - phases[:, ref[0], ref[1]][:, None, None]
    count = np.zeros((NY, NX), dtype=int)
    for (i, j), a in index.items():
        for (j2, k), b in index.items():
            if j2 == j and (i, k) in index:
                loop = referenced[a] + referenced[b] - referenced[index[(i, k)]]
                count += np.abs(loop) > math.pi + margin
    return count


def test_n_loop_errors_counts_the_patch_and_the_noise_opened_loops_like_an_independent_count(tmp_path):
    paths, pairs, phases = build(tmp_path)
    stack = prepare_stack(paths)
    out = [str(tmp_path / n) for n in ("ts.tif", "vel.tif", "q.tif")]
    # reference in the quiet part (given: the count shifts every pixel's loops by the reference's own loop phase)
    options = sbas_stack.SbasOptions(loop_closure=lc.LOOP_REPORT, reference=(2, 2))
    summary = sbas_stack.invert_stack(stack, *out, options)
    ds = gdal.Open(out[2])
    n_err = ds.GetRasterBand(QUALITY_BANDS.index("n_loop_errors") + 1).ReadAsArray()
    ds = None
    # a loop within 1e-3 rad of pi may go either way in float32: bounds from the independent count
    low = independent_count(pairs, phases, summary["reference"], 1e-3)
    high = independent_count(pairs, phases, summary["reference"], -1e-3)
    assert np.all((n_err >= low) & (n_err <= high))
    patch = np.zeros((NY, NX), bool)
    patch[PATCH] = True
    noisy = np.zeros((NY, NX), bool)
    noisy[NOISY] = True
    assert np.all(n_err[patch] >= 3)  # every loop of the patched interferogram (3 or more) is open there
    assert np.sum(n_err[noisy] > 0) >= 20  # phase noise alone opens loops in the low-coherence block ...
    assert np.all(n_err[~patch & ~noisy] == 0)  # ... and nowhere else
