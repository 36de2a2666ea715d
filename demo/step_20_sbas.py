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
    metrics["world_raw"] = run_world_corrections(demo)
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


def run_world_corrections(demo):
    """The world's interferograms as real products deliver them (GACOS-format troposphere, orbital ramps,
    +2 pi unwrapping errors): SBAS without and with the corrections (GACOS, loop closure rejecting bad
    interferograms by default; in the full demo also linear ramps fitted outside the deforming areas)."""
    import pandas as pd

    from subsidence_toolkit.demo import world

    w = world.for_demo(demo)
    if not w.get("raw_interferograms"):
        return {}
    truth = w["truth"]
    metrics = {}
    runs = [
        ("without corrections", "raw_plain", dict(LOOP_CLOSURE=0)),
        ("with GACOS + loop closure (default: reject)", "raw_corrected", dict(GACOS=w["gacos"], INCIDENCE_ANGLE=39.0)),
    ]
    if not demo.small:
        # a linear ramp fitted outside the deforming areas: the planted orbital ramps are per date and close in
        # the network, and the fit also takes the deformation gradient at the edges of those areas (shown, not
        # recommended here)
        runs.append(
            (
                "with GACOS + loop closure + linear ramps",
                "raw_deramped",
                dict(GACOS=w["gacos"], INCIDENCE_ANGLE=39.0, DERAMP=1, DERAMP_MASK=w["deforming_areas"]),
            )
        )
    for label, tag, extra in runs:
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
            dict(INTERFEROGRAMS=w["raw_interferograms"], COHERENCE=w["coherence"], **extra, **out),
        )
        vel = res.get("OUTPUT_VELOCITY", out["OUTPUT_VELOCITY"])
        ts = res.get("OUTPUT_TIMESERIES", out["OUTPUT_TIMESERIES"])
        rmse, n = _velocity_rmse(vel, ts, truth["velocity_truth"])
        ref_free = _velocity_rmse(vel, ts, truth["velocity_truth"], median=True)[0]
        net = pd.read_csv(res.get("OUTPUT_NETWORK", out["OUTPUT_NETWORK"]))
        rejected = sorted(os.path.basename(f) for f in net.loc[net["status"] == "loop closure", "file"])
        q = gdal.Open(res.get("OUTPUT_QUALITY", out["OUTPUT_QUALITY"]))
        nle = q.GetRasterBand(6).ReadAsArray()
        flagged = int(np.nansum(nle > 0))
        metrics[tag] = {
            "velocity_rmse_mm_yr": rmse,
            "velocity_rmse_minus_reference_offset_mm_yr": ref_free,
            "rejected": rejected,
            "pixels_with_loop_errors": flagged,
        }
        demo.log(
            "world as delivered (troposphere, ramps, 4 interferograms with +2 pi patches), %s: velocity RMSE "
            "%.2f mm/yr over %d px (%.2f without the reference pixel's offset); rejected by loop closure: %s%s"
            % (
                label,
                rmse,
                n,
                ref_free,
                ", ".join(rejected) or "none",
                "; pixels with unclosed loops: %d (planted small patch: %d px)" % (flagged, truth["small_patch_pixels"])
                if np.isfinite(nle).any()
                else "",
            )
        )
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
    planted = sorted(truth["planted_unwrapping_errors"])
    got = metrics["raw_corrected"]["rejected"]
    demo.log(
        "planted unwrapping errors in %s; loop closure rejected %s (%s)"
        % (", ".join(planted), ", ".join(got) or "none", "exactly those" if got == planted else "DIFFERENT")
    )
    return metrics


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
