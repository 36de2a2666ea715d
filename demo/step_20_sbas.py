"""Demo step: SBAS inversion of LiCSAR-named interferograms (Liu et al. 2024 sec. 2.3.1, Berardino 2002).

Generates a deterministic stack on an irregular Sentinel-1 epoch list (12-day revisit, ~half of the
acquisitions missing, spanning ~1.5-2 years): a subsidence bowl (-60 mm/yr at the centre) + an annual term that is
stronger in an "irrigated" band, interferograms for every pair with a temporal baseline <= 72 d
(unwrapped phase in radians, LiCSAR names ``YYYYMMDD_YYYYMMDD.geo.unw.tif``), coherence
``.geo.cc.tif`` decaying with the temporal baseline, coherence-driven phase noise (Cramer-Rao,
20 looks), a water body that is NoData in every interferogram and 10 % of pixels missing 10 % of
the interferograms. Runs ``subsidence:sbasinversion`` (coherence weighting, automatic reference,
velocity with annual + semi-annual terms) and logs the RMSE of the velocity and of the time series
against the planted truth (both relative to the reference pixel the algorithm picked).
"""

import datetime as dt
import math
import os

import numpy as np
from osgeo import gdal

from subsidence_toolkit.core.io.rasters import grid_from_origin, write_raster

WAVELENGTH = 0.05546576
ORIGIN = dt.date(2020, 1, 3)


def epochs(n, seed=20, drop=0.5):
    rng = np.random.default_rng(seed)
    out, d = [], ORIGIN
    while len(out) < n:
        if not out or rng.random() > drop:
            out.append(d)
        d += dt.timedelta(days=12)
    return out


def planted(dates, ny, nx):
    """Truth: (rate mm/yr, annual amplitude mm, time series mm (N, ny, nx), t in years)."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - 0.55 * ny) ** 2 + (xx - 0.45 * nx) ** 2) / (0.22 * max(nx, ny)) ** 2
    rate = -60.0 * np.exp(-r2)
    amp = np.where((xx > 0.6 * nx), 8.0, 2.0)
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    ts = rate[None] * t[:, None, None] + amp[None] * np.sin(2 * np.pi * t)[:, None, None]
    return rate, amp, ts - ts[0], t


def make_data(folder, ny, nx, n_dates, max_days=72, looks=20, seed=21):
    rng = np.random.default_rng(seed)
    dates = epochs(n_dates)
    rate, amp, truth, t = planted(dates, ny, nx)
    grid = grid_from_origin(108.0, 38.5, 0.0008, 0.0008, nx, ny)
    yy, xx = np.mgrid[0:ny, 0:nx]
    base = 0.35 + 0.55 * np.exp(-((yy - 0.15 * ny) ** 2 + (xx - 0.15 * nx) ** 2) / (0.3 * nx) ** 2)
    water = ((yy - 0.8 * ny) ** 2 + (xx - 0.2 * nx) ** 2) < (0.08 * nx) ** 2
    partial = rng.random((ny, nx)) < 0.10
    ifgs, cohs = [], []
    pairs = [
        (i, j) for i in range(len(dates)) for j in range(i + 1, len(dates)) if (dates[j] - dates[i]).days <= max_days
    ]
    for i, j in pairs:
        tb = (dates[j] - dates[i]).days
        g = np.clip(base * math.exp(-tb / 150.0) + rng.normal(0, 0.03, (ny, nx)), 0.1, 0.97)
        sig = np.sqrt((1 - g**2) / (2 * looks * g**2))
        phase = -(truth[j] - truth[i]) / 1000.0 * 4 * math.pi / WAVELENGTH + rng.normal(0, 1, (ny, nx)) * sig
        phase += rng.normal(0, 1.0)  # per-interferogram offset
        phase[water] = np.nan
        phase[partial & (rng.random((ny, nx)) < 0.10)] = np.nan
        tag = "%s_%s" % (dates[i].strftime("%Y%m%d"), dates[j].strftime("%Y%m%d"))
        f = folder / ("%s.geo.unw.tif" % tag)
        c = folder / ("%s.geo.cc.tif" % tag)
        write_raster(str(f), grid, phase.astype(np.float32), units="radians")
        write_raster(str(c), grid, g.astype(np.float32), units="")
        ifgs.append(str(f))
        cohs.append(str(c))
    return dates, ifgs, cohs, water


def run(demo):
    metrics = run_check(demo)
    metrics["world"] = run_world(demo)
    metrics["world_hyp3"] = run_hyp3(demo)
    metrics["world_raw"] = run_world_corrections(demo, clean_rmse=metrics["world"]["velocity_rmse_mm_yr"])
    return metrics


def _velocity_rmse(vel_path, ts_path, truth_path, exclude=None, median=False):
    vel = gdal.Open(vel_path).ReadAsArray().astype(float)
    md = gdal.Open(ts_path).GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    truth = gdal.Open(truth_path).ReadAsArray().astype(float)
    truth = truth - truth[r, c]
    ok = np.isfinite(truth) & np.isfinite(vel)
    if exclude is not None:
        ok &= ~exclude
    err = vel[ok] - truth[ok]
    if median:  # the reference pixel's own error shifts every pixel alike
        err = err - np.median(err)
    return float(np.sqrt(np.mean(err**2))), int(ok.sum())


#: the runs of :func:`run_world_corrections`, each adding one correction to the previous one:
#: (tag of the output files, label, parameters besides the inputs)
CORRECTION_RUNS = (
    ("raw_plain", "none", dict(LOOP_CLOSURE=0)),
    ("raw_gacos", "+ GACOS troposphere", dict(LOOP_CLOSURE=0, GACOS=True)),
    ("raw_corrected", "+ loop closure (default: reject bad ifgs)", dict(GACOS=True)),
    ("raw_deramped", "+ linear ramps fitted outside deforming_areas", dict(GACOS=True, DERAMP=1, DERAMP_MASK=True)),
)
#: a parallel row: the last run with the loop closure correcting the unwrapping errors per pixel (LOOP_CLOSURE 3)
#: instead of rejecting the interferograms that carry them
UNWRAP_CORRECTION_RUN = (
    "raw_unwrap_corrected",
    "  ... loop closure corrects per pixel instead",
    dict(GACOS=True, DERAMP=1, DERAMP_MASK=True, LOOP_CLOSURE=3),
)
#: tolerances of the checks of the per-pixel correction against the planted truth: pixels outside the planted
#: patches corrected (phase noise beyond pi that a neighbour shares, as a fraction of the pixels with data), and
#: how much worse (mm/yr) than the rejection its velocity RMSE, offset-free RMSE and |large-patch bias| may be
UNWRAP_NOISE_FRACTION = 0.001
UNWRAP_MARGIN_MM_YR = 0.1


def independent_loop_errors(w, reference, half=0):
    """Per pixel, the number of loops whose phase exceeds pi, counted with numpy from the planted data alone
    (not through the algorithm): the world's clean interferograms (the LiCSAR frame: deformation, atmosphere
    and phase noise) + the planted per-date ramps + the planted small +2 pi patch, without the three
    interferograms planted with the large patch (the loop closure has to reject exactly those), referenced
    like the algorithm (NaN-ignoring median of the (2 half + 1)^2 window at ``reference`` (row, col); the
    default reference window is the pixel alone); the
    GACOS delays are left out (a per-date delay closes in every loop). Returns (count (rows, cols), in the small
    patch (bool))."""
    from subsidence_toolkit.demo import world

    truth = w["truth"]
    bad = set(truth["planted_unwrapping_errors"])
    files = [f for f in w["interferograms"] if os.path.basename(f) not in bad]
    ds = gdal.Open(files[0])
    gt, ny, nx = ds.GetGeoTransform(), ds.RasterYSize, ds.RasterXSize
    ds = None
    lon, lat = np.meshgrid(gt[0] + (np.arange(nx) + 0.5) * gt[1], gt[3] + (np.arange(ny) + 0.5) * gt[5])
    patch = world.in_box(lon, lat, truth["planted_small_patch_box"])
    ramps = {d: np.asarray(c) for d, c in truth["planted_ramps_rad"].items()}
    iso = lambda s: "%s-%s-%s" % (s[:4], s[4:6], s[6:8])  # noqa: E731
    pairs, phase = [], np.empty((len(files), ny, nx))
    for k, f in enumerate(files):
        d1, d2 = (iso(x) for x in os.path.basename(f).split(".")[0].split("_"))
        ds = gdal.Open(f)
        a = ds.ReadAsArray().astype(np.float64)
        ds = None
        a[a == 0] = np.nan  # LiCSAR: 0 is no data
        a += world.planted_ramp(ramps[d2], lon, lat) - world.planted_ramp(ramps[d1], lon, lat)
        if os.path.basename(f) == truth["planted_small_patch"]:
            a[patch] += 2 * math.pi
        phase[k] = a
        pairs.append((d1, d2))
    r, c = reference
    win = phase[:, max(0, r - half) : r + half + 1, max(0, c - half) : c + half + 1].reshape(len(files), -1)
    phase -= np.nanmedian(win, axis=1)[:, None, None]
    index = {p: k for k, p in enumerate(pairs)}
    after = {}
    for d1, d2 in pairs:
        after.setdefault(d1, []).append(d2)
    count = np.zeros((ny, nx), dtype=np.int32)
    for (d1, d2), k12 in index.items():
        for d3 in after.get(d2, []):
            if (d1, d3) in index:
                loop = phase[k12] + phase[index[(d2, d3)]] - phase[index[(d1, d3)]]
                with np.errstate(invalid="ignore"):
                    count += np.abs(loop) > math.pi
    return count, patch


def run_world_corrections(demo, clean_rmse=None):
    """The world's interferograms as real products deliver them (GACOS-format troposphere, orbital ramps,
    +2 pi unwrapping errors in 4 interferograms): SBAS with no correction, then adding one correction at a time
    (GACOS, the default loop closure, a linear ramp fitted outside the user's polygons of the deforming
    areas); the velocity RMSE of each against the planted truth, checked to improve at every step, and the
    pixels flagged by n_loop_errors checked against an independent count from the planted data."""
    import pandas as pd

    from subsidence_toolkit.demo import world

    w = world.for_demo(demo)
    if not w.get("raw_interferograms"):
        return {}
    truth = w["truth"]
    ds = gdal.Open(w["raw_interferograms"][0])
    gt, ny, nx = ds.GetGeoTransform(), ds.RasterYSize, ds.RasterXSize
    ds = None
    lon, lat = np.meshgrid(gt[0] + (np.arange(nx) + 0.5) * gt[1], gt[3] + (np.arange(ny) + 0.5) * gt[5])
    big_patch = world.in_box(lon, lat, world.BIG_PATCH)
    metrics, rows, nets, corrected = {}, [], {}, None
    for tag, label, extra in CORRECTION_RUNS + (UNWRAP_CORRECTION_RUN,):
        params = dict(extra)
        if params.pop("GACOS", False):
            params.update(GACOS=w["gacos"], INCIDENCE_ANGLE=39.0)
        if params.pop("DERAMP_MASK", False):
            params["DERAMP_MASK"] = w["deforming_areas"]
        out = {
            k: str(demo.out_dir / ("world_%s_%s" % (tag, f)))
            for k, f in (
                ("OUTPUT_TIMESERIES", "timeseries.tif"),
                ("OUTPUT_VELOCITY", "velocity.tif"),
                ("OUTPUT_QUALITY", "quality.tif"),
                ("OUTPUT_NETWORK", "network.csv"),
            )
        }
        res = demo.run(
            "subsidence:sbasinversion",
            dict(INTERFEROGRAMS=w["raw_interferograms"], COHERENCE=w["coherence"], **params, **out),
        )
        vel = res.get("OUTPUT_VELOCITY", out["OUTPUT_VELOCITY"])
        ts = res.get("OUTPUT_TIMESERIES", out["OUTPUT_TIMESERIES"])
        rmse, n = _velocity_rmse(vel, ts, truth["velocity_truth"])
        ref_free = _velocity_rmse(vel, ts, truth["velocity_truth"], median=True)[0]
        bias = _patch_bias(vel, truth["velocity_truth"], big_patch)
        net = pd.read_csv(res.get("OUTPUT_NETWORK", out["OUTPUT_NETWORK"]))
        rejected = sorted(os.path.basename(f) for f in net.loc[net["status"] == "loop closure", "file"])
        q = gdal.Open(res.get("OUTPUT_QUALITY", out["OUTPUT_QUALITY"]))
        nle = q.GetRasterBand(6).ReadAsArray()
        if tag == UNWRAP_CORRECTION_RUN[0]:
            corrected = (q.GetRasterBand(8).ReadAsArray(), nle)  # n_unwrap_corrected, loops left unclosed
        q = None
        nets[tag] = net
        md = gdal.Open(ts).GetMetadata()
        metrics[tag] = {
            "corrections": label,
            "velocity_rmse_mm_yr": rmse,
            "velocity_rmse_minus_reference_offset_mm_yr": ref_free,
            "big_patch_velocity_bias_mm_yr": bias,
            "rejected": rejected,
            "pixels_with_loop_errors": int(np.nansum(nle > 0)) if np.isfinite(nle).any() else None,
            "reference": [int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])],
        }
        rows.append((tag, label, rmse, ref_free, bias, len(rejected), metrics[tag]["pixels_with_loop_errors"], nle))
    demo.log(
        "world as delivered (GACOS-format troposphere, per-date ramps, +2 pi over a large patch in 3 interferograms "
        "and a small one in a fourth), velocity vs planted over %d px, one correction added per row:" % n
    )
    demo.log(
        "  %-48s %11s %12s %11s %9s %12s"
        % ("corrections (cumulative)", "RMSE", "offset-free*", "patch bias", "rejected", "loop-err px")
    )
    for tag, label, rmse, ref_free, bias, n_rej, n_le, _ in rows:
        demo.log(
            "  %-48s %11.2f %12.2f %+11.2f %9d %12s"
            % (label, rmse, ref_free, bias, n_rej, "-" if n_le is None else n_le)
        )
    demo.log(
        "  (mm/yr. RMSE: against the planted velocity relative to the reference pixel the algorithm picked%s; "
        "offset-free: the median error removed - the reference pixel's own error shifts the whole map alike; "
        "patch bias: mean error in the large +2 pi patch minus the median error elsewhere; loop-err px: pixels "
        "with n_loop_errors > 0. * checked: each correction must lower it, or the step fails.)"
        % ("" if clean_rmse is None else "; the clean LiCSAR frame of the same world: %.2f" % clean_rmse)
    )
    # truth checks: every correction improves the velocity, the loop closure rejects exactly the planted ones
    problems = []
    cumulative = rows[: len(CORRECTION_RUNS)]
    for prev, cur in zip(cumulative, cumulative[1:]):
        if not cur[3] < prev[3]:  # the reference pixel's own error is one offset for the whole map: left out
            problems.append(
                "'%s' did not improve the velocity RMSE without the reference offset (%.2f -> %.2f mm/yr)"
                % (cur[1], prev[3], cur[3])
            )
    planted = sorted(truth["planted_unwrapping_errors"])
    got = metrics["raw_corrected"]["rejected"]
    demo.log(
        "planted unwrapping errors in %s; loop closure rejected %s (%s)"
        % (", ".join(planted), ", ".join(got) or "none", "exactly those" if got == planted else "DIFFERENT")
    )
    if got != planted:
        problems.append("loop closure rejected %s, planted %s" % (got, planted))
    # n_loop_errors: the planted small patch and the pixels where the planted noise alone leaves a loop unclosed
    nle = rows[2][7]
    flagged = np.nan_to_num(nle) > 0
    expected, patch = independent_loop_errors(w, metrics["raw_corrected"]["reference"])
    noise_px = int(np.sum((expected > 0) & ~patch))
    differ = int(np.sum(flagged != (expected > 0)))
    demo.log(
        "n_loop_errors (GACOS + loop closure): %d px flagged = %d of the %d px of the planted small patch (its "
        "median count %d loops) + %d px elsewhere (%d of them in a single loop: there the planted phase noise of "
        "the loop's three interferograms, referenced, exceeds pi - real unclosed loops, not planted errors). "
        "Independent count from the planted data (clean interferograms + planted ramps + planted patch, "
        "referenced like the algorithm, numpy): %d px in the patch + %d px of noise; pixels flagged "
        "differently: %d"
        % (
            int(flagged.sum()),
            int(np.sum(flagged & patch)),
            int(patch.sum()),
            int(np.median(np.nan_to_num(nle)[patch])),
            int(np.sum(flagged & ~patch)),
            int(np.sum((np.nan_to_num(nle) == 1) & ~patch)),
            int(np.sum((expected > 0) & patch)),
            noise_px,
            differ,
        )
    )
    metrics["loop_errors"] = {
        "flagged": int(flagged.sum()),
        "planted_patch_pixels": int(patch.sum()),
        "flagged_in_patch": int(np.sum(flagged & patch)),
        "independent_noise_pixels": noise_px,
        "flagged_differently_from_independent_count": differ,
    }
    if not np.all(flagged[patch]):
        problems.append("n_loop_errors missed %d px of the planted patch" % int(np.sum(~flagged[patch])))
    if differ > max(2, 0.02 * flagged.sum()):
        problems.append("n_loop_errors flags %d px differently from the independent count" % differ)
    problems += check_unwrap_correction(demo, w, nets, corrected, metrics, lon, lat, big_patch)
    # mask by quality (LiCSBAS step-15 thresholds) on the corrected run
    tag = "raw_corrected"
    mask_out = {
        k: str(demo.out_dir / ("world_%s_%s" % (tag, f)))
        for k, f in (
            ("OUTPUT_VELOCITY", "velocity_masked.tif"),
            ("OUTPUT_MASK", "quality_mask.tif"),
            ("OUTPUT_TABLE", "mask_table.csv"),
        )
    }
    res = demo.run(
        "subsidence:maskbyquality",
        dict(
            QUALITY=str(demo.out_dir / ("world_%s_quality.tif" % tag)),
            VELOCITY=str(demo.out_dir / ("world_%s_velocity.tif" % tag)),
            **mask_out,
        ),
    )
    table = pd.read_csv(res.get("OUTPUT_TABLE", mask_out["OUTPUT_TABLE"]))
    removed = "; ".join(
        "%s %d" % (r.threshold, r.pixels) for r in table.itertuples() if r.threshold not in ("kept", "no data")
    )
    kept = int(table.loc[table["threshold"] == "kept", "pixels"].iloc[0])
    demo.log("mask by quality (defaults): kept %d pixels; pixels failing each threshold: %s" % (kept, removed))
    metrics["mask_kept_pixels"] = kept
    if problems:
        raise AssertionError("demo truth check of the corrections failed: " + "; ".join(problems))
    return metrics


def check_unwrap_correction(demo, w, nets, corrected, metrics, lon, lat, big_patch):
    """LOOP_CLOSURE 3 against the planted truth: the pixels of the planted patches are corrected (3 interferograms
    in the large patch, 1 in the small one), the three interferograms planted with the large patch are kept and
    their corrected pixels counted in the network table, hardly any pixel outside the patches is corrected, and
    the velocity is no worse than with the rejection (same GACOS and ramps). Logs the numbers, returns the
    problems found."""
    from subsidence_toolkit.demo import world

    truth = w["truth"]
    tag, ref = UNWRAP_CORRECTION_RUN[0], "raw_deramped"
    net = nets[tag]
    small_patch = world.in_box(lon, lat, truth["planted_small_patch_box"])
    n_fixed = np.nan_to_num(corrected[0]).astype(int)
    data = np.isfinite(corrected[1])  # pixels with data (n_loop_errors is NaN only there)
    unclosed_in_patches = int(np.sum((np.nan_to_num(corrected[1]) > 0) & (big_patch | small_patch)))
    names = net["file"].map(os.path.basename)
    per_ifg = dict(zip(names, net["n_pixels_unwrap_corrected"].fillna(0).astype(int)))
    planted = sorted(truth["planted_unwrapping_errors"])
    rows = net[names.isin(planted)]
    kept = [os.path.basename(f) for f in rows.loc[rows["used"].astype(bool), "file"]]
    status = sorted(set(rows["loop_check"].astype(str)))
    outside = data & ~big_patch & ~small_patch
    noise_px = int(np.sum(outside & (n_fixed > 0)))
    big_ok = int(np.sum(big_patch & data & (n_fixed == 3)))
    small_ok = int(np.sum(small_patch & data & (n_fixed == 1)))
    m, r = metrics[tag], metrics[ref]
    m.update(
        unwrap_corrected_pixels=int(np.sum(n_fixed > 0)),
        large_patch_pixels_corrected_3=big_ok,
        large_patch_pixels=int(np.sum(big_patch & data)),
        small_patch_pixels_corrected_1=small_ok,
        small_patch_pixels=int(np.sum(small_patch & data)),
        pixels_corrected_outside_patches=noise_px,
        patch_pixels_with_loops_left_unclosed=unclosed_in_patches,
        pixels_outside_patches=int(outside.sum()),
        planted_kept=kept,
        pixels_corrected_per_planted_ifg=[per_ifg[n] for n in planted],
        pixels_corrected_small_patch_ifg=per_ifg[truth["planted_small_patch"]],
    )
    demo.log(
        "loop closure 3 (correct per pixel; GACOS + ramps as in the reject run): %d px corrected; large patch: "
        "%d of its %d px corrected in 3 interferograms; small patch: %d of %d px in 1; outside the patches %d of "
        "%d px (phase noise; tolerance %.1f %%); patch pixels with a loop left unclosed: %d; the 3 planted "
        "interferograms %s (loop_check %s), pixels corrected in each (network table): %s, in the small patch's one: "
        "%d, in all: %d (quality band: %d); velocity vs the rejection: RMSE %.2f vs %.2f, offset-free %.2f vs "
        "%.2f, large-patch bias %+.2f vs %+.2f mm/yr (margin %.2f)"
        % (
            m["unwrap_corrected_pixels"],
            big_ok,
            m["large_patch_pixels"],
            small_ok,
            m["small_patch_pixels"],
            noise_px,
            outside.sum(),
            100 * UNWRAP_NOISE_FRACTION,
            unclosed_in_patches,
            "kept" if kept == planted else "NOT all kept (%s)" % ", ".join(kept),
            " / ".join(status),
            ", ".join(str(per_ifg[n]) for n in planted),
            per_ifg[truth["planted_small_patch"]],
            sum(per_ifg.values()),
            int(n_fixed.sum()),
            m["velocity_rmse_mm_yr"],
            r["velocity_rmse_mm_yr"],
            m["velocity_rmse_minus_reference_offset_mm_yr"],
            r["velocity_rmse_minus_reference_offset_mm_yr"],
            m["big_patch_velocity_bias_mm_yr"],
            r["big_patch_velocity_bias_mm_yr"],
            UNWRAP_MARGIN_MM_YR,
        )
    )
    problems = []
    if kept != planted or status != ["bad (kept: unwrapping errors corrected per pixel)"]:
        problems.append("loop closure 3 kept %s (loop_check %s) of the planted %s" % (kept, status, planted))
    if big_ok < m["large_patch_pixels"] or small_ok < m["small_patch_pixels"]:
        problems.append(
            "loop closure 3 corrected %d of %d px of the large patch (3 interferograms), %d of %d of the small one"
            % (big_ok, m["large_patch_pixels"], small_ok, m["small_patch_pixels"])
        )
    if unclosed_in_patches:
        problems.append("loop closure 3 left loops unclosed at %d px of the planted patches" % unclosed_in_patches)
    if any(per_ifg[n] < big_ok for n in planted) or per_ifg[truth["planted_small_patch"]] < small_ok:
        problems.append(
            "network table: pixels corrected in the planted interferograms %s" % m["pixels_corrected_per_planted_ifg"]
        )
    if sum(per_ifg.values()) != n_fixed.sum():
        problems.append(
            "network table: %d corrected values, quality band n_unwrap_corrected: %d"
            % (sum(per_ifg.values()), n_fixed.sum())
        )
    if noise_px > UNWRAP_NOISE_FRACTION * outside.sum():
        problems.append("loop closure 3 corrected %d px outside the planted patches" % noise_px)
    for key in ("velocity_rmse_mm_yr", "velocity_rmse_minus_reference_offset_mm_yr"):
        if m[key] > r[key] + UNWRAP_MARGIN_MM_YR:
            problems.append("loop closure 3: %s %.2f, rejection %.2f" % (key, m[key], r[key]))
    bias = "big_patch_velocity_bias_mm_yr"
    if abs(m[bias]) > abs(r[bias]) + UNWRAP_MARGIN_MM_YR:
        problems.append("loop closure 3: large-patch bias %+.2f, rejection %+.2f" % (m[bias], r[bias]))
    return problems


def _patch_bias(vel_path, truth_path, patch):
    """Mean velocity error (mm/yr) in ``patch`` minus the median error elsewhere (the reference offset)."""
    ds = gdal.Open(vel_path)
    vel = ds.ReadAsArray().astype(float)
    ds = gdal.Open(truth_path)
    err = vel - ds.ReadAsArray().astype(float)
    ds = None
    ok = np.isfinite(err)
    return float(np.mean(err[ok & patch]) - np.median(err[ok & ~patch]))


def run_world(demo):
    """SBAS on the shared demo world's LiCSAR frame (the folder only: GEOC/ pairs with 8-bit coherence and 0 as
    no data, metadata/ with the baselines); its outputs feed the later steps."""
    from subsidence_toolkit.demo import world

    w = world.for_demo(demo)
    out = {
        k: str(demo.out_dir / f)
        for k, f in (
            ("OUTPUT_TIMESERIES", "world_sbas_timeseries.tif"),
            ("OUTPUT_VELOCITY", "world_sbas_velocity.tif"),
            ("OUTPUT_QUALITY", "world_sbas_quality.tif"),
            ("OUTPUT_NETWORK", "world_sbas_network.csv"),
        )
    }
    out["OUTPUT_INCIDENCE"] = str(demo.out_dir / "world_incidence.tif")
    res = demo.run("subsidence:sbasinversion", dict(INPUT_FOLDER=w["licsar_frame"], **out))
    demo.outputs["incidence"] = res.get("OUTPUT_INCIDENCE", out["OUTPUT_INCIDENCE"])
    inc = gdal.Open(demo.outputs["incidence"]).ReadAsArray()
    demo.log(
        "world: incidence angle from the frame's metadata/<frame>.geo.U.tif: %.2f..%.2f deg (planted 30.5..45.5 "
        "across the swath), no data at the reservoir: %d px"
        % (np.nanmin(inc), np.nanmax(inc), int(np.isnan(inc).sum()))
    )
    demo.outputs["sbas_timeseries"] = res.get("OUTPUT_TIMESERIES", out["OUTPUT_TIMESERIES"])
    demo.outputs["sbas_velocity"] = res.get("OUTPUT_VELOCITY", out["OUTPUT_VELOCITY"])
    demo.outputs["sbas_quality"] = res.get("OUTPUT_QUALITY", out["OUTPUT_QUALITY"])
    vel = gdal.Open(demo.outputs["sbas_velocity"]).ReadAsArray().astype(float)
    md = gdal.Open(demo.outputs["sbas_timeseries"]).GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    truth = gdal.Open(w["truth"]["velocity_truth"]).ReadAsArray().astype(float)
    truth = truth - truth[r, c]
    ok = np.isfinite(truth) & np.isfinite(vel)
    rmse = float(np.sqrt(np.mean((vel[ok] - truth[ok]) ** 2)))
    demo.log(
        "world: velocity RMSE vs planted (LSQ slope of the planted displacement) %.2f mm/yr over %d px "
        "(rates %.0f..%.0f mm/yr)" % (rmse, ok.sum(), np.nanmin(truth), np.nanmax(truth))
    )
    return {"velocity_rmse_mm_yr": rmse}


def run_hyp3(demo):
    """SBAS on the world's HyP3 stack: a folder of zipped GAMMA products, each on its own extent in UTM 49N,
    read in place; baselines from each product's .txt drive the perpendicular-baseline limit."""
    import pandas as pd

    from subsidence_toolkit.demo import world

    w = world.for_demo(demo)
    out = {
        k: str(demo.out_dir / f)
        for k, f in (
            ("OUTPUT_TIMESERIES", "hyp3_sbas_timeseries.tif"),
            ("OUTPUT_VELOCITY", "hyp3_sbas_velocity.tif"),
            ("OUTPUT_QUALITY", "hyp3_sbas_quality.tif"),
            ("OUTPUT_NETWORK", "hyp3_sbas_network.csv"),
        )
    }
    res = demo.run("subsidence:sbasinversion", dict(INPUT_FOLDER=w["hyp3_dir"], MAX_PERP_BASELINE=150, **out))
    vel_ds = gdal.Open(res.get("OUTPUT_VELOCITY", out["OUTPUT_VELOCITY"]))
    vel = vel_ds.ReadAsArray().astype(float)
    md = gdal.Open(res.get("OUTPUT_TIMESERIES", out["OUTPUT_TIMESERIES"])).GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    tds = gdal.Open(w["hyp3_velocity_truth"])
    truth = tds.ReadAsArray().astype(float)
    assert vel_ds.GetGeoTransform() == tds.GetGeoTransform(), "the HyP3 stack grid is not the products' common area"
    truth = truth - truth[r, c]
    ok = np.isfinite(truth) & np.isfinite(vel)
    rmse = float(np.sqrt(np.mean((vel[ok] - truth[ok]) ** 2)))
    net = pd.read_csv(res.get("OUTPUT_NETWORK", out["OUTPUT_NETWORK"]))
    n_used = int(net["used"].astype(bool).sum())
    demo.log(
        "world HyP3 stack (%d zipped products, %d used after the 150 m perpendicular-baseline limit from their "
        ".txt): velocity RMSE vs planted %.2f mm/yr over %d px (rates %.0f..%.0f mm/yr)"
        % (len(net), n_used, rmse, ok.sum(), np.nanmin(truth), np.nanmax(truth))
    )
    return {"velocity_rmse_mm_yr": rmse, "products": len(net), "used": n_used}


def run_check(demo):
    """A stack with gaps, partial pixels and per-interferogram offsets, checked against its planted truth."""
    ny = nx = 30 if demo.small else 40
    n_dates = 18 if demo.small else 25
    folder = demo.data_dir / "sbas_ifgs"
    folder.mkdir(parents=True, exist_ok=True)
    dates, ifgs, cohs, water = make_data(folder, ny, nx, n_dates)
    demo.log(
        "made %d LiCSAR-named interferograms + coherence on %d epochs %s..%s (%dx%d px) in %s"
        % (len(ifgs), len(dates), dates[0], dates[-1], nx, ny, folder)
    )
    out = {
        k: str(demo.out_dir / f)
        for k, f in (
            ("OUTPUT_TIMESERIES", "sbas_timeseries.tif"),
            ("OUTPUT_VELOCITY", "sbas_velocity.tif"),
            ("OUTPUT_QUALITY", "sbas_quality.tif"),
            ("OUTPUT_NETWORK", "sbas_network.csv"),
        )
    }
    params = dict(
        INTERFEROGRAMS=ifgs,
        COHERENCE=cohs,
        WEIGHTING=1,
        MAX_TEMPORAL_BASELINE=72,
        GAP_HANDLING=0,
        SEASONAL=True,
        REFERENCE_WINDOW=3,
        **out,
    )
    res = demo.run("subsidence:sbasinversion", params)
    ts_path = res.get("OUTPUT_TIMESERIES", out["OUTPUT_TIMESERIES"])
    vel_path = res.get("OUTPUT_VELOCITY", out["OUTPUT_VELOCITY"])
    demo.outputs["sbas_check_velocity"] = vel_path
    ds = gdal.Open(ts_path)
    md = ds.GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    ts = ds.ReadAsArray().astype(float)
    vel = gdal.Open(vel_path).ReadAsArray().astype(float)
    rate, amp, truth, t = planted(dates, ny, nx)
    truth = truth - truth[:, r : r + 1, c : c + 1]
    vtrue = rate - rate[r, c]
    ok = ~water
    v_rmse = float(np.sqrt(np.nanmean((vel[ok] - vtrue[ok]) ** 2)))
    # the same estimator (trend + annual + semi-annual LSQ) applied to the noise-free truth series
    X = np.stack([np.ones_like(t), t] + [f(2 * np.pi * k * t) for k in (1, 2) for f in (np.cos, np.sin)], 1)
    vfit = np.linalg.lstsq(X, truth.reshape(len(t), -1), rcond=None)[0][1].reshape(ny, nx)
    v_rmse_fit = float(np.sqrt(np.nanmean((vel[ok] - vfit[ok]) ** 2)))
    ts_rmse = float(np.sqrt(np.nanmean((ts[:, ok] - truth[:, ok]) ** 2)))
    ok[r, c] = False  # the reference pixel is 0 by definition
    zero = int(np.sum(ok & np.all(ts == 0, axis=0)))
    demo.log(
        "reference pixel row %d col %d; velocity RMSE vs planted rate %.2f mm/yr (rates %.0f..%.0f mm/yr; "
        "vs the same fit of the noise-free truth %.2f mm/yr), time-series RMSE %.2f mm, "
        "all-zero pixels with data: %d" % (r, c, v_rmse, vtrue.min(), vtrue.max(), v_rmse_fit, ts_rmse, zero)
    )
    return {
        "velocity_rmse_mm_yr": v_rmse,
        "velocity_rmse_vs_truth_fit_mm_yr": v_rmse_fit,
        "timeseries_rmse_mm": ts_rmse,
        "reference": [r, c],
    }
