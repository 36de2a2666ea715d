"""Unwrapping-error correction by phase closure (LOOP_CLOSURE 3) against planted truth.

The acceptance stack of issue #14 (130 interferograms of 24-48 day pairs, 0.3 rad noise, see
test_loop_acceptance.py) with integer cycles planted over patches: the per-pixel correction must find
exactly the planted integers (core), restore the clean stack's result (driver: the velocity of the corrected
stack equals that of the same stack without errors, to float32 rounding), keep the interferograms, leave an
ambiguous pixel uncorrected and counted, and change nothing on a clean stack."""

import datetime as dt
import math
import os

import numpy as np
import pytest
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.insar import loop_closure as lc
from subsidence_toolkit.core.insar import sbas_stack
from subsidence_toolkit.core.insar import unwrap_correction as uc
from subsidence_toolkit.core.insar.stack import prepare_stack

LAMBDA = 0.05546576
NY = NX = 70
PATCH = (slice(40, 60), slice(10, 30))
BAD = (20, 65, 110)  # in loops, far apart (as the acceptance test)


def dates_pairs():
    dates = [dt.date(2020, 1, 5) + dt.timedelta(days=12 * k) for k in range(47)]
    pairs = [
        (i, j) for i in range(len(dates)) for j in range(i + 1, len(dates)) if 24 <= (dates[j] - dates[i]).days <= 48
    ]
    return dates, pairs[:130]


def clean_phase(seed=3):
    """(130, NY, NX) float32 phase of the acceptance stack without errors, the velocity (mm/yr) and the dates."""
    rng = np.random.default_rng(seed)
    dates, pairs = dates_pairs()
    t = np.array([(d - dates[0]).days for d in dates]) / 365.25
    yy, xx = np.mgrid[0:NY, 0:NX]
    vel = -30.0 * np.exp(-((yy - 45) ** 2 + (xx - 25) ** 2) / 300.0)
    disp = vel[None] * t[:, None, None] + 3.0 * np.sin(2 * np.pi * t)[:, None, None]
    phase = np.empty((len(pairs), NY, NX), np.float32)
    for k, (i, j) in enumerate(pairs):
        phase[k] = -(disp[j] - disp[i]) / 1000.0 * 4 * math.pi / LAMBDA + rng.normal(0, 0.3, (NY, NX))
    return phase, vel, dates, pairs


def planted(errors):
    """Integer cycles (130, NY, NX) of ``errors``: [(interferogram, (row slice, col slice), cycles)]."""
    cyc = np.zeros((130, NY, NX), np.int64)
    for k, where, n in errors:
        cyc[(k,) + where] += n
    return cyc


def write(folder, phase, dates, pairs):
    paths = []
    for k, (i, j) in enumerate(pairs):
        name = "%s_%s.geo.unw.tif" % (dates[i].strftime("%Y%m%d"), dates[j].strftime("%Y%m%d"))
        paths.append(write_stack(folder / name, phase[k]))
    return paths


def loop_network():
    _, pairs = dates_pairs()
    return lc.LoopNetwork([a for a, _ in pairs], [b for _, b in pairs])


@pytest.fixture(scope="module")
def clean():
    return clean_phase()


ERRORS = {
    "+2pi": [(k, PATCH, 1) for k in BAD],
    "-2pi": [(k, PATCH, -1) for k in BAD],
    "+-4pi": [(20, PATCH, 2), (65, PATCH, -2)],
    # two overlapping patches in interferograms that share no loop: both corrected in the overlap
    "overlap": [(20, (slice(10, 40), slice(10, 40)), 1), (65, (slice(25, 55), slice(25, 55)), -1)],
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_core_finds_the_planted_integers_exactly(clean, case):
    phase, _, _, _ = clean
    ln = loop_network()
    truth = planted(ERRORS[case])
    y = (phase + (2 * math.pi * truth).astype(np.float32)).reshape(130, -1)
    # referenced (as the driver does) to the median of a clean area: a single reference pixel would add its own
    # noise to every loop (0.73 rad instead of 0.52 per loop), and 1 in 1e5 loop values then exceeds pi
    y = y - np.median(y[:, :600], axis=1, keepdims=True)
    fix = uc.ClosureCorrector(ln).correct(y)
    found = np.zeros((130, NY * NX), np.int64)
    found[:, fix.pixels] = fix.cycles
    assert np.array_equal(found, truth.reshape(130, -1))
    assert fix.counts[2:].sum() == 0  # nothing ambiguous, inconsistent, implausible or left over
    y2 = fix.subtract(y.copy(), 2 * math.pi)
    y0 = phase.reshape(130, -1)
    assert (
        np.abs(
            y2 - (y0 - np.median(y0[:, :600] + 2 * math.pi * truth.reshape(130, -1)[:, :600], axis=1, keepdims=True))
        ).max()
        < 1e-4
    )


def test_ambiguous_pixel_left_uncorrected_and_counted(clean):
    """Interferogram 0 (dates 0-2) shares its only loop with 0-4, in no other loop: a +2 pi there has the same
    loops as -2 pi on 0-4, the minimum is not unique and the pixel is left alone; a second error on a
    well-determined interferogram at the same pixels is still corrected."""
    phase, _, _, _ = clean
    ln = loop_network()
    assert ln.n_loops_per_ifg[0] == 1 and ln.n_loops_per_ifg[2] == 1
    assert not uc.identifiable(ln)[[0, 2]].any() and uc.identifiable(ln)[BAD[0]]
    small = (slice(5, 8), slice(60, 63))
    truth = planted([(0, small, 1), (BAD[0], small, 1), (BAD[1], PATCH, 1)])
    y = (phase + (2 * math.pi * truth).astype(np.float32)).reshape(130, -1)
    fix = uc.ClosureCorrector(ln).correct(y - np.median(y[:, :600], axis=1, keepdims=True))
    found = np.zeros((130, NY * NX), np.int64)
    found[:, fix.pixels] = fix.cycles
    expected = truth.reshape(130, -1).copy()
    expected[0] = 0  # ambiguous: not applied
    assert np.array_equal(found, expected)
    assert fix.counts[2] == 9 and fix.ifg_ambiguous[0] == 9 and fix.ifg_ambiguous[2] == 9
    assert fix.ifg_ambiguous.sum() == 18 and fix.ifg_corrected[BAD[0]] == 9


def test_decorrelated_noise_is_not_corrected():
    """Phase noise of 1.5 rad per interferogram (coherence ~0.1) leaves most pixels with an unclosed loop;
    their patterns break the tetrahedron relations or are not shared by a neighbour: nothing is corrected,
    while a planted 5 x 5 patch in the same noise still is."""
    rng = np.random.default_rng(5)
    pairs = [(i, j) for i in range(8) for j in range(8) if 0 < j - i <= 3]
    ln = lc.LoopNetwork([a for a, _ in pairs], [b for _, b in pairs])
    assert uc.tetrahedra(ln).shape[0] > 0
    y = rng.normal(0, 1.5, (len(pairs), 40, 50))
    fix = uc.ClosureCorrector(ln).correct(y.reshape(len(pairs), -1), shape=(40, 50))
    assert fix.counts[0] > 1500  # most pixels have an unclosed loop
    assert fix.pixels.size == 0 and fix.counts[1] == 0
    assert fix.counts[3] + fix.counts[6] == fix.counts[0]  # inconsistent or isolated
    y = rng.normal(0, 0.3, (len(pairs), 40, 50))
    y[4, 10:15, 20:25] += 2 * math.pi
    fix = uc.ClosureCorrector(ln).correct(y.reshape(len(pairs), -1), shape=(40, 50))
    assert fix.counts[1] == 25 and np.array_equal(fix.ifg_corrected, np.eye(len(pairs), dtype=int)[4] * 25)


def test_pattern_cap_leaves_the_rest_counted(clean):
    """Two distinct patterns (two patches in different interferograms), one integer program allowed: the
    larger patch is corrected, the other is left and counted as unsolved."""
    phase, _, _, _ = clean
    truth = planted([(BAD[0], PATCH, 1), (BAD[1], (slice(2, 6), slice(2, 6)), 1)])
    y = (phase + (2 * math.pi * truth).astype(np.float32)).reshape(130, -1)
    y = y - np.median(y[:, :600], axis=1, keepdims=True)
    fix = uc.ClosureCorrector(loop_network(), max_patterns=1).correct(y, shape=(NY, NX))
    assert fix.counts[1] == 400 and fix.counts[5] == 16
    assert fix.ifg_corrected[BAD[0]] == 400 and fix.ifg_corrected.sum() == 400


def test_tetrahedron_relations_hold_for_any_phase():
    rng = np.random.default_rng(1)
    pairs = [(i, j) for i in range(7) for j in range(7) if 0 < j - i <= 3]
    sign = rng.choice([-1.0, 1.0], len(pairs))
    ln = lc.LoopNetwork([a for a, _ in pairs], [b for _, b in pairs], sign)
    R = uc.tetrahedra(ln)
    assert R.shape[0] == 4  # i<j<k<l with l - i <= 3: (0..3), (1..4), (2..5), (3..6)
    assert np.allclose(R @ ln.loop_phase(rng.normal(0, 5, (len(pairs), 10))), 0, atol=1e-9)


def run(folder, paths, mode, tag):
    out = [str(folder / ("%s_%s.tif" % (tag, n))) for n in ("ts", "vel", "q")]
    logs = []
    summary = sbas_stack.invert_stack(
        prepare_stack(paths),
        *out,
        sbas_stack.SbasOptions(loop_closure=mode, reference=(2, 2), reference_half_window=2),
        log=logs.append,
    )
    q = gdal.Open(out[2])
    bands = {
        q.GetRasterBand(i + 1).GetDescription(): q.GetRasterBand(i + 1).ReadAsArray() for i in range(q.RasterCount)
    }
    return gdal.Open(out[1]).ReadAsArray(), bands, summary, logs


def patch_bias(v, vel):
    err = v - vel
    inside = np.zeros(v.shape, bool)
    inside[PATCH] = True
    return float(np.mean(err[inside]) - np.mean(err[~inside]))


def test_driver_restores_the_clean_stack(clean, tmp_path):
    phase, vel, dates, pairs = clean
    (tmp_path / "clean").mkdir()
    (tmp_path / "bad").mkdir()
    truth = planted(ERRORS["+2pi"])
    v_clean, _, _, _ = run(tmp_path, write(tmp_path / "clean", phase, dates, pairs), lc.LOOP_OFF, "clean")
    bad_paths = write(tmp_path / "bad", phase + (2 * math.pi * truth).astype(np.float32), dates, pairs)
    v3, q3, s3, logs = run(tmp_path, bad_paths, lc.LOOP_CORRECT, "fix")
    v2, _, s2, _ = run(tmp_path, bad_paths, lc.LOOP_REJECT, "rej")
    assert s3["rejected"] == [] and len(s2["rejected"]) == 3
    # every planted cycle removed: the clean stack's velocity, to float32 rounding of the phase (~1e-6 rad)
    assert np.abs(v3 - v_clean).max() < 1e-3
    assert abs(patch_bias(v3, vel)) <= max(0.12, abs(patch_bias(v2, vel)))
    names = list(q3)
    assert names[:7] == [
        "temporal_coherence",
        "n_ifg_used",
        "residual_rms_mm",
        "velocity_std_mm_yr",
        "n_gaps",
        "n_loop_errors",
        "kept_first_date",
    ]
    assert names[7] == "n_unwrap_corrected"
    inside = np.zeros((NY, NX), bool)
    inside[PATCH] = True
    assert np.all(q3["n_unwrap_corrected"][inside] == 3) and np.all(q3["n_unwrap_corrected"][~inside] == 0)
    assert np.all(q3["n_loop_errors"] == 0)  # what is left after the correction
    rows = {r["file"]: r for r in s3["network_rows"]}
    for k in range(130):
        r = rows[bad_paths[k]]
        assert r["n_pixels_unwrap_corrected"] == (400 if k in BAD else 0)
        assert r["used"]
    assert rows[bad_paths[BAD[0]]]["loop_check"].startswith("bad (kept")
    assert rows[bad_paths[BAD[0]]]["loop_rms_wrapped_rad"] < 1.0 <= 1.5 <= rows[bad_paths[BAD[0]]]["loop_rms_rad"]
    assert any("400 corrected" in m or "1200 interferogram values" in m for m in logs)


def test_driver_clean_noisy_stack_untouched(clean, tmp_path):
    phase, _, dates, pairs = clean
    paths = write(tmp_path, phase, dates, pairs)
    v3, q3, s3, _ = run(tmp_path, paths, lc.LOOP_CORRECT, "c3")
    v2, q2, _, _ = run(tmp_path, paths, lc.LOOP_REJECT, "c2")
    assert np.all(q3["n_unwrap_corrected"] == 0) and np.all(np.isnan(q2["n_unwrap_corrected"]))
    assert np.array_equal(v3, v2)
    assert all(r["n_pixels_unwrap_corrected"] == 0 for r in s3["network_rows"])


def test_driver_ambiguous_pixels_counted(clean, tmp_path):
    phase, _, dates, pairs = clean
    small = (slice(5, 8), slice(60, 63))
    paths = write(tmp_path, phase + (2 * math.pi * planted([(0, small, 1)])).astype(np.float32), dates, pairs)
    _, q3, s3, logs = run(tmp_path, paths, lc.LOOP_CORRECT, "amb")
    assert np.all(q3["n_unwrap_corrected"] == 0)
    err = np.zeros((NY, NX), bool)
    err[small] = True
    assert np.all(q3["n_loop_errors"][err] == 1) and np.all(q3["n_loop_errors"][~err] == 0)
    rows = {r["file"]: r for r in s3["network_rows"]}
    assert rows[paths[0]]["n_pixels_unwrap_ambiguous"] == 9 and rows[paths[2]]["n_pixels_unwrap_ambiguous"] == 9
    assert any("9 with an ambiguous answer" in m for m in logs)


def test_wrapped_loop_rms_removes_only_integer_cycles():
    """The histogram-based wrapped RMS: integer cycles at some pixels do not count, noise does; never above the
    RMS after the median's cycles (up to the bin width)."""
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.5, (3, 5000))
    jumps = np.zeros((3, 5000))
    jumps[0, :1000] = 2 * math.pi
    jumps[1, :300] = -4 * math.pi
    loop_ph = noise + jumps
    loop_ph[2] = rng.uniform(-math.pi, math.pi, 5000)  # decorrelated: no integer structure
    stats = lc.accumulate(lc.empty_stats(3), loop_ph)
    rms, wrms = lc.loop_rms(stats), lc.wrapped_loop_rms(stats)
    assert rms[0] > 2.5 and rms[1] > 2.5
    assert np.allclose(wrms[:2], 0.5, atol=0.03)
    assert abs(wrms[2] - math.pi / math.sqrt(3)) < 0.05  # uniform over a cycle: still above the 1.5 threshold
    assert np.all(wrms <= rms + math.pi / 32)
    shift = np.array([0.3, -0.2, 0.0])  # a reference's loop phase: wrapped RMS of loop_ph - shift
    expected = np.sqrt(np.mean(np.angle(np.exp(1j * (loop_ph[:2] - shift[:2, None]))) ** 2, axis=1))
    assert np.allclose(lc.wrapped_loop_rms(stats, shift)[:2], expected, atol=0.03)


def test_driver_rejects_what_it_cannot_correct(clean, tmp_path):
    """Mode 3 rejects, as mode 2, a bad interferogram whose misclosure is noise (wrapped loop RMS >= 1.5) and
    bad interferograms whose errors cannot be told apart (0-2 and 0-4 share their only loop)."""
    phase, _, dates, pairs = clean
    noisy = phase.copy()
    noisy[BAD[1]] += np.random.default_rng(9).normal(0, 2.5, (NY, NX)).astype(np.float32)
    noisy += (2 * math.pi * planted([(0, PATCH, 1), (BAD[0], PATCH, 1)])).astype(np.float32)
    paths = write(tmp_path, noisy, dates, pairs)
    _, q3, s3, logs = run(tmp_path, paths, lc.LOOP_CORRECT, "rej3")
    names = paths
    assert sorted(s3["rejected"]) == sorted(os.path.basename(names[k]) for k in (0, 2, BAD[1]))
    rows = {r["file"]: r for r in s3["network_rows"]}
    assert rows[names[BAD[1]]]["loop_rms_wrapped_rad"] >= 1.5 and rows[names[0]]["loop_rms_wrapped_rad"] < 1.0
    assert rows[names[BAD[0]]]["used"] and rows[names[BAD[0]]]["n_pixels_unwrap_corrected"] == 400
    log = "\n".join(logs)
    assert "not identifiable" in log and "wrapped loop RMS" in log


def test_driver_same_result_in_windows_threads_and_pickled(clean, tmp_path):
    """The correction does not depend on the windows, the threads or a trip through pickle (Dask workers)."""
    import pickle

    phase, _, dates, pairs = clean
    truth = planted(ERRORS["overlap"] + [(0, (slice(5, 8), slice(60, 63)), 1)])
    paths = write(tmp_path, phase + (2 * math.pi * truth).astype(np.float32), dates, pairs)
    outs = []
    for tag, memory, threads in (("one", 512, 1), ("many", 4, 2)):
        out = [str(tmp_path / ("%s_%s.tif" % (tag, n))) for n in ("ts", "vel", "q")]
        opts = sbas_stack.SbasOptions(
            loop_closure=lc.LOOP_CORRECT, reference=(2, 2), reference_half_window=2, memory_mb=memory, threads=threads
        )
        s = sbas_stack.invert_stack(prepare_stack(paths), *out, opts)
        outs.append(([gdal.Open(p).ReadAsArray() for p in out], s["network_rows"]))
    (ts1, v1, q1), (ts2, v2, q2) = outs[0][0], outs[1][0]
    assert np.array_equal(q1[5:], q2[5:], equal_nan=True)  # loop errors, kept part, corrections: identical
    # the float32 solve of other sub-block sizes differs by rounding (see the README); a 2 pi left somewhere
    # would differ by ~27 mm
    assert np.abs(ts1 - ts2).max() < 1e-3 and np.abs(v1 - v2).max() < 1e-3
    assert [r["n_pixels_unwrap_corrected"] for r in outs[0][1]] == [r["n_pixels_unwrap_corrected"] for r in outs[1][1]]
    cor = uc.ClosureCorrector(loop_network())
    y = (phase + (2 * math.pi * truth).astype(np.float32)).reshape(130, -1)
    a, b = cor.correct(y, shape=(NY, NX)), pickle.loads(pickle.dumps(cor)).correct(y, shape=(NY, NX))
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.cycles, b.cycles)
