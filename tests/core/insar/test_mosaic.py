"""Mosaics of frames cut from one planted truth with planted per-date offsets."""

import datetime as dt

import numpy as np
import pytest
from osgeo import gdal, osr
from synthetic import write_stack

from subsidence_toolkit.core.insar import mosaic
from subsidence_toolkit.core.io.errors import Cancelled, TimeSeriesError

DATES = [dt.date(2020, m, 15) for m in range(1, 6)]
X0, Y0, PX = 500000.0, 4000000.0, 30.0


def _read(path):
    ds = gdal.Open(str(path))
    return np.stack([ds.GetRasterBand(i + 1).ReadAsArray().astype(np.float64) for i in range(ds.RasterCount)])


def _truth(ny=30, nx=60, nd=len(DATES), seed=5):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(-3, 4, (nd, ny, nx)), axis=0)


def _cut(tmp_path, truth, boxes, offsets, dates=DATES, holes=True):
    """Frames ``boxes`` = (row0, row1, col0, col1) of ``truth`` plus offsets (nd,) each."""
    paths = []
    for k, ((r0, r1, c0, c1), off) in enumerate(zip(boxes, offsets)):
        a = truth[:, r0:r1, c0:c1] + np.asarray(off)[:, None, None]
        if holes:
            a = a.copy()
            a[:, 2 + k, 3:6] = np.nan  # incoherent patch (all dates)
            a[1, -3, 1 + k] = np.nan  # one date missing at one pixel
        paths.append(
            write_stack(
                tmp_path / ("frame%d.tif" % k),
                a,
                dates,
                origin=(X0 + c0 * PX, Y0 - r0 * PX),
                pixel=PX,
                dtype=gdal.GDT_Float64,
            )
        )
    return paths


def _expected(truth, boxes, holes=True):
    """Truth where at least one frame has data."""
    have = np.zeros(truth.shape, bool)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        m = np.ones((truth.shape[0], r1 - r0, c1 - c0), bool)
        if holes:
            m[:, 2 + k, 3:6] = False
            m[1, -3, 1 + k] = False
        have[:, r0:r1, c0:c1] |= m
    return np.where(have, truth, np.nan)


CHAIN = [(0, 30, 0, 26), (0, 30, 18, 44), (0, 30, 36, 60)]  # first and third do not overlap


def test_chain_of_three_frames_recovers_truth(tmp_path):
    truth = _truth()
    planted = np.array([[0, 0, 0, 0, 0], [5.5, -3.0, 12.25, 0.5, -7.0], [-20.0, 4.0, 9.0, -1.5, 30.0]])
    planted[0] = [1.0, 2.0, -1.0, 0.0, 3.0]  # the reference frame has its own per-date offsets too
    paths = _cut(tmp_path, truth, CHAIN, planted)
    out = str(tmp_path / "mosaic.tif")
    rows, summ = mosaic.mosaic_frames(paths, out, reference_frame=0, memory_mb=1)
    got = _read(out)
    expect = _expected(truth, CHAIN) + planted[0][:, None, None]
    assert np.array_equal(np.isnan(got), np.isnan(expect))
    assert np.nanmax(np.abs(got - expect)) < 1e-4
    assert summ["pairs"] == [(0, 1), (1, 2)]
    by = {(r["frame"], r["date"]): r for r in rows}
    for f in range(3):
        for t, d in enumerate(DATES):
            r = by[(f, d.isoformat())]
            assert r["offset_mm"] == pytest.approx(planted[0, t] - planted[f, t], abs=1e-9)
            assert r["rms_after_mm"] < 1e-9 and r["connected_to_reference"]
    assert by[(2, "2020-01-15")]["rms_before_mm"] == pytest.approx(abs(planted[1, 0] - planted[2, 0]), abs=1e-9)
    assert by[(0, "2020-01-15")]["overlap_pixels"] == 30 * 8 - 3
    ds = gdal.Open(out)
    assert ds.GetRasterBand(1).GetDescription() == "2020-01-15" and ds.RasterXSize == 60


def test_zero_mean_offsets_and_window_independence(tmp_path):
    truth = _truth(ny=40, nx=50)
    boxes = [(0, 24, 0, 30), (0, 22, 22, 50), (16, 40, 0, 28), (18, 40, 20, 50)]
    planted = np.random.default_rng(2).normal(0, 10, (4, len(DATES)))
    paths = _cut(tmp_path, truth, boxes, planted)
    a, b = str(tmp_path / "a.tif"), str(tmp_path / "b.tif")
    rows, _ = mosaic.mosaic_frames(paths, a, reference_frame=-1, memory_mb=64)
    mosaic.mosaic_frames(paths, b, reference_frame=-1, memory_mb=0.02, blend_width=4)
    mosaic.mosaic_frames(paths, str(tmp_path / "c.tif"), reference_frame=-1, memory_mb=0.003, blend_width=4)
    expect = _expected(truth, boxes) + planted.mean(axis=0)[:, None, None]
    for p in (a, b):
        assert np.nanmax(np.abs(_read(p) - expect)) < 1e-4
    assert np.array_equal(_read(b), _read(tmp_path / "c.tif"), equal_nan=True)
    offs = np.array([[r["offset_mm"] for r in rows if r["frame"] == f] for f in range(4)])
    assert np.abs(offs.sum(axis=0)).max() < 1e-9


def test_linear_offsets_in_time_and_missing_dates(tmp_path):
    truth = _truth()
    t = np.array([(d - DATES[0]).days / 365.25 for d in DATES])
    planted = np.array([0 * t, 2.0 + 10.0 * t, -4.0 - 30.0 * t])
    paths = _cut(tmp_path, truth, CHAIN, planted)
    out = str(tmp_path / "m.tif")
    mosaic.mosaic_frames(paths, out, reference_frame=0, time_trend=True)
    assert np.nanmax(np.abs(_read(out) - _expected(truth, CHAIN))) < 1e-4
    # the third frame lacks one date: dropped by default, mosaicked from the others with "available"
    short = [d for i, d in enumerate(DATES) if i != 2]
    p3 = write_stack(
        tmp_path / "short.tif",
        (truth[:, :, 36:60] + planted[2][:, None, None])[[0, 1, 3, 4]],
        short,
        origin=(X0 + 36 * PX, Y0),
        pixel=PX,
        dtype=gdal.GDT_Float64,
    )
    logs = []
    mosaic.mosaic_frames([paths[0], paths[1], p3], out, log=logs.append)
    assert gdal.Open(out).RasterCount == 4 and any("lacks 1" in s for s in logs)
    rows, _ = mosaic.mosaic_frames([paths[0], paths[1], p3], out, missing=mosaic.MISSING_AVAILABLE)
    got = _read(out)
    assert got.shape[0] == 5 and np.isnan(got[2, :, 44:]).all()
    assert np.nanmax(np.abs(got[2, :, :44] - _expected(truth, CHAIN)[2, :, :44])) < 1e-4
    assert len(rows) == 14


def test_velocity_frames_on_another_grid_and_crs(tmp_path):
    # spatially constant truth per frame: resampling and reprojection are exact away from NoData
    a = write_stack(tmp_path / "a.tif", np.full((20, 20), -40.0), descriptions=["velocity"], origin=(X0, Y0))
    b = write_stack(
        tmp_path / "b.tif",
        np.full((30, 30), -40.0 + 7.5),
        descriptions=["velocity"],
        origin=(X0 + 400.0 + 7.0, Y0 - 100.0),
        pixel=20.0,
    )
    # third frame in geographic coordinates over the east part of b
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32649)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geo = osr.SpatialReference()
    geo.ImportFromEPSG(4326)
    geo.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat, _ = osr.CoordinateTransformation(srs, geo).TransformPoint(X0 + 800.0, Y0 - 150.0)
    c = write_stack(
        tmp_path / "c.tif",
        np.full((40, 40), -40.0 - 3.0),
        descriptions=["velocity"],
        epsg=4326,
        origin=(lon, lat),
        pixel=0.0002,
    )
    out = str(tmp_path / "m.tif")
    rows, summ = mosaic.mosaic_frames([a, b, c], out, reference_frame=0, resolution=30.0)
    got = _read(out)[0]
    assert np.isfinite(got).sum() > 500 and np.nanmax(np.abs(got + 40.0)) < 1e-9
    offs = {r["frame"]: r["offset_mm"] for r in rows}
    assert offs[1] == pytest.approx(-7.5, abs=1e-9) and offs[2] == pytest.approx(3.0, abs=1e-9)
    assert rows[0]["date"] == "" and gdal.Open(out).GetRasterBand(1).GetDescription() == "velocity"


def test_mosaic_errors_and_cancel(tmp_path):
    truth = _truth()
    far = _cut(tmp_path, truth, [(0, 30, 0, 20), (0, 30, 30, 60)], np.zeros((2, len(DATES))))
    out = tmp_path / "m.tif"
    with pytest.raises(TimeSeriesError, match="do not overlap"):
        mosaic.mosaic_frames(far, str(out))
    other = write_stack(
        tmp_path / "o.tif", truth[:2, :, 10:40], [dt.date(2021, 1, 1), dt.date(2021, 2, 1)], origin=(X0 + 10 * PX, Y0)
    )
    with pytest.raises(TimeSeriesError, match="no common date.*o.tif"):
        mosaic.mosaic_frames([far[0], other], str(out))
    paths = _cut(tmp_path, truth, CHAIN, np.zeros((3, len(DATES))))
    with pytest.raises(Cancelled):
        mosaic.mosaic_frames(paths, str(out), is_canceled=lambda: True)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_isolated_frame_is_reported_and_quality_weights(tmp_path):
    truth = _truth(ny=20, nx=60)
    boxes = [(0, 20, 0, 25), (0, 20, 15, 40), (0, 20, 45, 60)]  # the third touches nobody
    planted = np.array([np.zeros(5), np.full(5, 3.0), np.full(5, -8.0)])
    paths = _cut(tmp_path, truth, boxes, planted, holes=False)
    logs = []
    rows, _ = mosaic.mosaic_frames(paths, str(tmp_path / "m.tif"), log=logs.append)
    lonely = [r for r in rows if r["frame"] == 2]
    assert all(not r["connected_to_reference"] and r["overlap_pixels"] == 0 for r in lonely)
    assert all(r["connected_to_reference"] for r in rows if r["frame"] < 2)
    assert any("not connected" in s and "frame2.tif" in s for s in logs)
    # quality: frame 1 has noise and a near-zero quality in the overlap -> the overlap comes from frame 0
    noisy = truth[:, :, 15:40] + 3.0 + np.random.default_rng(0).normal(0, 1, (5, 20, 25))
    p1 = write_stack(tmp_path / "noisy.tif", noisy, DATES, origin=(X0 + 15 * PX, Y0), pixel=PX, dtype=gdal.GDT_Float64)
    q0 = write_stack(tmp_path / "q0.tif", np.ones((20, 25)), origin=(X0, Y0), pixel=PX)
    q1 = write_stack(tmp_path / "q1.tif", np.full((20, 25), 1e-6), origin=(X0 + 15 * PX, Y0), pixel=PX)
    out = str(tmp_path / "q.tif")
    mosaic.mosaic_frames([paths[0], p1], out, quality_paths=[q0, q1])
    got = _read(out)
    assert np.abs(got[:, :, 16:24] - truth[:, :, 16:24]).max() < 1e-3


def test_threads_give_identical_mosaic_and_table(tmp_path):
    # four frames (time series, holes, quality weights) and, on another grid, warped velocity frames: 1 and 3
    # threads (the blend windows planned under memory / threads, so the split differs too) agree bit for bit
    truth = _truth(ny=40, nx=50)
    boxes = [(0, 24, 0, 30), (0, 22, 22, 50), (16, 40, 0, 28), (18, 40, 20, 50)]
    planted = np.random.default_rng(3).normal(0, 10, (4, len(DATES)))
    paths = _cut(tmp_path, truth, boxes, planted)
    quality = [
        write_stack(
            tmp_path / ("q%d.tif" % k),
            np.linspace(0.2, 1.0, (r1 - r0) * (c1 - c0)).reshape(r1 - r0, c1 - c0),
            origin=(X0 + c0 * PX, Y0 - r0 * PX),
            pixel=PX,
        )
        for k, (r0, r1, c0, c1) in enumerate(boxes)
    ]
    runs = {}
    for threads in (1, 3):
        out = str(tmp_path / ("m%d.tif" % threads))
        rows, summ = mosaic.mosaic_frames(
            paths, out, reference_frame=-1, memory_mb=0.05, blend_width=4, quality_paths=quality, threads=threads
        )
        runs[threads] = (_read(out), rows, summ["n_windows"])
    assert runs[3][2] > runs[1][2] > 1  # several windows, more of them with more threads
    assert np.array_equal(runs[1][0], runs[3][0], equal_nan=True)
    assert runs[1][1] == runs[3][1]  # offsets table, every float identical
    expect = _expected(truth, boxes) + planted.mean(axis=0)[:, None, None]
    assert np.nanmax(np.abs(runs[3][0] - expect)) < 1e-4
    # frames resampled onto a coarser grid (warped reads in every thread)
    warped = {}
    for threads in (1, 3):
        out = str(tmp_path / ("w%d.tif" % threads))
        rows, _ = mosaic.mosaic_frames(paths, out, reference_frame=0, memory_mb=0.02, resolution=45.0, threads=threads)
        warped[threads] = (_read(out), rows)
    assert np.isfinite(warped[1][0]).sum() > 1000
    assert np.array_equal(warped[1][0], warped[3][0], equal_nan=True) and warped[1][1] == warped[3][1]


def test_threads_cancel_leaves_nothing(tmp_path):
    truth = _truth()
    paths = _cut(tmp_path, truth, CHAIN, np.zeros((3, len(DATES))))
    done = []
    out = tmp_path / "m.tif"
    with pytest.raises(Cancelled):  # cancelled while the blend windows run on threads (pass 2: progress > 0.3)
        mosaic.mosaic_frames(
            paths, str(out), memory_mb=0.02, threads=3, progress=done.append, is_canceled=lambda: max(done + [0]) > 0.4
        )
    assert 0.4 < max(done) < 1.0
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
