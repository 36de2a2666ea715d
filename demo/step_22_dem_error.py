"""Demo step: DEM-error correction (Fattahi & Amelung 2013) after SBAS, on the demo world's LiCSAR frame.

The world's interferograms carry no DEM error, so this step plants one: a copy of the LiCSAR frame (``GEOC/``
and ``metadata/``) whose every interferogram also holds the phase of a DEM error field dz (m), a 40 m bump on the
ridge and a -25 m void-fill patch, ``phi = -4 pi / lambda x (B2 - B1) dz / (r sin theta)`` with the epochs'
baselines from the frame's ``metadata/baselines``, the incidence of its ``*.geo.U.tif`` and r = 880 km. SBAS on
that copy (``subsidence:sbasinversion``, the frame folder as input) gives a time series with the DEM error in it;
``subsidence:demerror`` (the frame's ``baselines`` file and U raster) removes it, with MintPy's default deformation
model (polynomial of degree 2) and with annual + semi-annual terms (the world's ground moves with the seasons; its
irregular pumping pulses are in neither model, and what a model misses leaks into dz where it happens to correlate
with the baseline history: in the reduced world the seasonal terms help, in the full one they do not).
Logged, relative to the reference pixel SBAS picked: the topographic error left in the series (against the series
SBAS gives without the planted DEM error: the inversion is linear), the RMSE against the planted displacement
before and after, and the RMSE of the recovered dz against the planted one.
"""

import math
import shutil
from pathlib import Path

import numpy as np
from osgeo import gdal

from subsidence_toolkit.core.insar.dem_error import SENTINEL1_SLANT_RANGE_M
from subsidence_toolkit.core.insar.products import read_licsar_baselines
from subsidence_toolkit.core.io.dates import parse_date

WAVELENGTH = 0.05546576


def planted_dem_error(lon, lat):
    """dz (m): a 40 m bump on a ridge and a -25 m patch (a filled DEM void), 0 elsewhere."""
    bump = 40.0 * np.exp(-(((lon - 108.55) / 0.08) ** 2 + ((lat - 39.2) / 0.05) ** 2))
    void = np.where((abs(lon - 108.3) < 0.06) & (abs(lat - 38.75) < 0.04), -25.0, 0.0)
    return bump + void


def _read(path):
    ds = gdal.Open(str(path))
    return ds.ReadAsArray().astype(np.float64), ds


def plant(frame, out_frame):
    """Copy the LiCSAR frame with the DEM-error phase added to every interferogram; returns dz (m)."""
    out_frame = Path(out_frame)
    if out_frame.exists():
        shutil.rmtree(out_frame)
    shutil.copytree(Path(frame) / "metadata", out_frame / "metadata")
    meta = out_frame / "metadata"
    u_path = next(meta.glob("*.geo.U.tif"))
    u, ds = _read(u_path)
    gt = ds.GetGeoTransform()
    ny, nx = u.shape
    lon = gt[0] + (np.arange(nx) + 0.5) * gt[1]
    lat = gt[3] + (np.arange(ny) + 0.5) * gt[5]
    lon, lat = np.meshgrid(lon, lat)
    dz = planted_dem_error(lon, lat)
    sin_t = np.sqrt(1.0 - np.where(u > 0, u, np.nan) ** 2)
    per_m = 1000.0 * dz / (SENTINEL1_SLANT_RANGE_M * sin_t)  # mm of LOS per metre of baseline
    bperp = read_licsar_baselines(meta / "baselines")
    to_rad = -4 * math.pi / (WAVELENGTH * 1000.0)
    for unw in sorted((Path(frame) / "GEOC").glob("*/*.geo.unw.tif")):
        stem = unw.name.split(".")[0]
        d1, d2 = (parse_date(s) for s in stem.split("_"))
        dest = out_frame / "GEOC" / stem
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(unw.with_name(stem + ".geo.cc.tif"), dest)
        phase, src = _read(unw)
        nodata = phase == 0  # LiCSAR: 0 is no data
        phase = phase + to_rad * (bperp[d2] - bperp[d1]) * np.nan_to_num(per_m)
        phase[nodata] = 0.0
        drv = gdal.GetDriverByName("GTiff")
        out = drv.Create(str(dest / unw.name), nx, ny, 1, gdal.GDT_Float32, ["COMPRESS=DEFLATE"])
        out.SetGeoTransform(src.GetGeoTransform())
        out.SetProjection(src.GetProjection())
        out.GetRasterBand(1).WriteArray(phase.astype(np.float32))
        out = None
    return dz, u_path


def run(demo):
    from subsidence_toolkit.demo import world

    w = world.for_demo(demo)
    frame = Path(w["licsar_frame"])
    planted_frame = demo.data_dir / "world_dem_error" / frame.name
    dz, u_path = plant(frame, planted_frame)
    demo.log(
        "planted a DEM error (%.0f..%.0f m) in a copy of the LiCSAR frame: %s" % (dz.min(), dz.max(), planted_frame)
    )
    sbas_out = {
        k: str(demo.out_dir / ("world_dem_error_%s" % f))
        for k, f in (
            ("OUTPUT_TIMESERIES", "sbas_timeseries.tif"),
            ("OUTPUT_VELOCITY", "sbas_velocity.tif"),
            ("OUTPUT_QUALITY", "sbas_quality.tif"),
            ("OUTPUT_NETWORK", "sbas_network.csv"),
        )
    }
    sbas = demo.run("subsidence:sbasinversion", dict(INPUT_FOLDER=str(planted_frame), **sbas_out))
    ts_path = sbas.get("OUTPUT_TIMESERIES", sbas_out["OUTPUT_TIMESERIES"])
    before, ds = _read(ts_path)
    md = ds.GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    truth, _ = _read(w["truth"]["displacement_truth"])
    truth = truth - truth[:, r : r + 1, c : c + 1]
    rel_dz = dz - dz[r, c]  # SBAS series are relative to the reference pixel
    bperp = read_licsar_baselines(planted_frame / "metadata" / "baselines")
    dates = [parse_date(ds.GetRasterBand(i + 1).GetDescription()) for i in range(ds.RasterCount)]
    b = np.array([bperp[d] - bperp[dates[0]] for d in dates])
    u, _ = _read(u_path)
    term = (
        1000.0
        * b[:, None, None]
        * rel_dz[None]
        / (SENTINEL1_SLANT_RANGE_M * np.sqrt(1 - np.where(u > 0, u, np.nan) ** 2))
    )
    clean = before - term  # what SBAS gives without the planted DEM error (the inversion is linear)
    where = np.broadcast_to(np.abs(rel_dz) > 5.0, before.shape)  # pixels with a DEM error of more than 5 m

    def rmse(a, b, mask=None):
        ok = np.isfinite(a) & np.isfinite(b)
        if mask is not None:
            ok &= mask
        return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))

    metrics = {
        "pixels_with_dz": int(where[0].sum()),
        "topographic_error_before_mm": rmse(before, clean),
        "topographic_error_before_where_dz_mm": rmse(before, clean, where),
        "rmse_vs_planted_before_where_dz_mm": rmse(before, truth, where),
        "rmse_vs_planted_without_dem_error_where_dz_mm": rmse(clean, truth, where),
    }
    demo.log(
        "SBAS with the planted DEM error: topographic error in the series %.2f mm RMS (%.2f mm over the %d px with "
        "|dz| > 5 m); RMSE vs the planted displacement there %.2f mm (%.2f mm without the DEM error: the planted "
        "atmospheric delays and phase noise)"
        % (
            metrics["topographic_error_before_mm"],
            metrics["topographic_error_before_where_dz_mm"],
            metrics["pixels_with_dz"],
            metrics["rmse_vs_planted_before_where_dz_mm"],
            metrics["rmse_vs_planted_without_dem_error_where_dz_mm"],
        )
    )
    # MintPy's default model (polynomial of degree 2), then with annual + semi-annual terms: the world's ground
    # moves with the seasons (thermal term, pumping), and what a model misses leaks into the DEM error
    for tag, label, extra in (
        ("default", "polynomial of degree 2", {}),
        ("seasonal", "+ annual and semi-annual", {"SEASONAL": True}),
    ):
        out = {
            "OUTPUT_TIMESERIES": str(demo.out_dir / ("world_dem_error_corrected_%s.tif" % tag)),
            "OUTPUT_DEM_ERROR": str(demo.out_dir / ("world_dem_error_%s.tif" % tag)),
            "OUTPUT_TABLE": str(demo.out_dir / ("world_dem_error_%s_table.csv" % tag)),
        }
        res = demo.run(
            "subsidence:demerror",
            dict(
                INPUT=ts_path,
                BASELINES=str(planted_frame / "metadata" / "baselines"),
                INCIDENCE=str(u_path),
                INCIDENCE_TYPE=1,
                **extra,
                **out,
            ),
        )
        after, _ = _read(res.get("OUTPUT_TIMESERIES", out["OUTPUT_TIMESERIES"]))
        got_dz, _ = _read(res.get("OUTPUT_DEM_ERROR", out["OUTPUT_DEM_ERROR"]))
        m = {
            "topographic_error_after_mm": rmse(after, clean),
            "topographic_error_after_where_dz_mm": rmse(after, clean, where),
            "rmse_vs_planted_after_where_dz_mm": rmse(after, truth, where),
            "dem_error_rmse_m": rmse(got_dz, rel_dz),
            "dem_error_rmse_where_dz_m": rmse(got_dz, rel_dz, where[0]),
        }
        metrics[tag] = m
        demo.log(
            "DEM-error correction (%s): topographic error %.2f -> %.2f mm RMS (%.2f -> %.2f mm where |dz| > 5 m); "
            "RMSE vs the planted displacement there %.2f -> %.2f mm; recovered dz RMSE %.2f m (%.2f m where "
            "|dz| > 5 m; planted %.0f..%.0f m)"
            % (
                label,
                metrics["topographic_error_before_mm"],
                m["topographic_error_after_mm"],
                metrics["topographic_error_before_where_dz_mm"],
                m["topographic_error_after_where_dz_mm"],
                metrics["rmse_vs_planted_before_where_dz_mm"],
                m["rmse_vs_planted_after_where_dz_mm"],
                m["dem_error_rmse_m"],
                m["dem_error_rmse_where_dz_m"],
                dz.min(),
                dz.max(),
            )
        )
    return metrics
