"""DEM-error correction (Fattahi & Amelung 2013) against planted truth and an independent per-pixel solve.

The synthetic series: smooth deformation (in the span of the model unless said otherwise) plus the topographic
term ``1000 B_perp(t) dz / (r sin theta)`` (mm) of a planted DEM-error field dz (m), with B_perp of each date
relative to the first date.
"""

import datetime as dt
import math

import numpy as np
import pytest
from osgeo import gdal
from synthetic import sentinel1_dates, write_stack

from subsidence_toolkit.core.insar import dem_error
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.tasks import map_threads

R = 880000.0


def _bperp(n, seed=5):
    b = np.round(np.random.default_rng(seed).normal(0.0, 60.0, n), 2)
    return b - b[0]


def _years(dates):
    # independent of the module: MintPy's decimal year (year + (day of year - 1) / 365.25)
    y = np.array([d.year + (d - dt.date(d.year, 1, 1)).days / 365.25 for d in dates])
    return y - y[0]


def _world(ny=7, nx=9, n=30, seed=1, noise=0.0, seasonal=False):
    """(dates, bperp, incidence deg (ny, nx), dz m, deformation mm (n, ny, nx), series mm)."""
    rng = np.random.default_rng(seed)
    dates = sentinel1_dates(n=n)
    bp = _bperp(len(dates))
    t = _years(dates)
    inc = np.linspace(31.0, 45.0, nx)[None].repeat(ny, 0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    dz = 40.0 * np.exp(-((yy - ny / 2) ** 2 + (xx - nx / 3) ** 2) / 6.0) - 10.0 * (xx > 6)
    v = -30.0 * np.exp(-((yy - 2) ** 2 + (xx - 5) ** 2) / 8.0)
    acc = 4.0 * np.cos(xx / 3.0)
    defo = v[None] * t[:, None, None] + 0.5 * acc[None] * t[:, None, None] ** 2
    if seasonal:
        defo = defo + 6.0 * np.sin(2 * np.pi * t)[:, None, None] + 2.0 * np.cos(4 * np.pi * t)[:, None, None]
    topo = 1000.0 * bp[:, None, None] * dz[None] / (R * np.sin(np.radians(inc))[None])
    series = defo + topo + rng.normal(0.0, noise, defo.shape) if noise else defo + topo
    series = series - series[0]
    return dates, bp, inc, dz, defo - defo[0], series


def _read(path):
    ds = gdal.Open(str(path))
    return np.stack([ds.GetRasterBand(i + 1).ReadAsArray().astype(np.float64) for i in range(ds.RasterCount)])


def _write_inputs(tmp_path, dates, bp, inc, series, per_pair=False):
    ts = tmp_path / "ts.tif"
    write_stack(ts, series, dates=dates, dtype=gdal.GDT_Float64)
    incp = tmp_path / "inc.tif"
    write_stack(incp, inc, descriptions=["incidence"], dtype=gdal.GDT_Float64)
    csv = tmp_path / "baselines.csv"
    if per_pair:
        lines = ["file,reference_date,secondary_date,perp_baseline_m"]
        for i in range(len(dates)):
            for j in range(i + 1, min(i + 3, len(dates))):
                lines.append("ifg_%d_%d,%s,%s,%.6f" % (i, j, dates[i], dates[j], bp[j] - bp[i]))
    else:
        lines = ["date,bperp"] + ["%s,%.6f" % (d, b) for d, b in zip(dates, bp)]
    csv.write_text("\n".join(lines) + "\n")
    return ts, incp, csv


def _run(tmp_path, ts, baselines, incp=None, tag="", **kw):
    out_ts, out_dz = tmp_path / ("corr%s.tif" % tag), tmp_path / ("dz%s.tif" % tag)
    inc = dict(path=str(incp), kind="incidence") if incp else None
    summary = dem_error.correct_dem_error(str(ts), str(out_ts), str(out_dz), baselines, incidence=inc, **kw)
    return _read(out_ts), _read(out_dz)[0], summary


def test_deformation_design_is_mintpys_time_functions():
    dates = [dt.date(2020, 1, 1), dt.date(2020, 7, 1), dt.date(2021, 1, 1), dt.date(2021, 12, 27)]
    g = dem_error.deformation_design(dates, 2, periods=(1.0,), step_dates=[dt.date(2021, 1, 1)])
    t = np.array([0.0, 182 / 365.25, 1.0, 1.0 + 360 / 365.25])  # MintPy: year + (day of year - 1) / 365.25
    np.testing.assert_allclose(g[:, 0], 1.0)
    np.testing.assert_allclose(g[:, 1], t, atol=1e-12)
    np.testing.assert_allclose(g[:, 2], t**2 / 2, atol=1e-12)
    np.testing.assert_allclose(g[:, 3], np.cos(2 * np.pi * t), atol=1e-12)
    np.testing.assert_allclose(g[:, 4], np.sin(2 * np.pi * t), atol=1e-12)
    np.testing.assert_array_equal(g[:, 5], [0, 0, 0, 1])  # the step acts strictly after its date
    with pytest.raises(TimeSeriesError, match="step date 2022-01-01 is not between"):
        dem_error.deformation_design(dates, 1, step_dates=[dt.date(2022, 1, 1)])


def test_planted_dem_error_recovered_and_series_equals_deformation(tmp_path):
    dates, bp, inc, dz, defo, series = _world()
    ts, incp, csv = _write_inputs(tmp_path, dates, bp, inc, series)
    corr, got_dz, summary = _run(tmp_path, ts, str(csv), incp)
    np.testing.assert_allclose(got_dz, dz, atol=2e-5 * 40)  # float32 output of values up to 40 m
    np.testing.assert_allclose(corr, defo, atol=1e-4)  # float32 output of values up to ~60 mm
    assert np.abs(series - defo).max() > 3.0  # the planted term is visible (mm)
    assert summary["estimated"] == dz.size and summary["too_few"] == summary["rank"] == 0
    rows = summary["rows"]
    assert [r["date"] for r in rows] == [d.isoformat() for d in dates]
    np.testing.assert_allclose([r["bperp_m"] for r in rows], bp, atol=1e-9)
    removed = series - defo
    np.testing.assert_allclose(
        [r["topographic_rms_mm"] for r in rows],
        np.sqrt(np.mean(removed.reshape(len(dates), -1) ** 2, 1)),
        rtol=1e-4,
        atol=1e-6,
    )
    ds = gdal.Open(str(tmp_path / "corr.tif"))
    assert ds.GetRasterBand(3).GetDescription() == dates[2].isoformat()
    assert "Fattahi & Amelung 2013" in ds.GetMetadataItem("DEM_ERROR_CORRECTION")
    assert gdal.Open(str(tmp_path / "dz.tif")).GetRasterBand(1).GetUnitType() == "m"


def test_dem_error_recovered_to_the_noise_level():
    """1 mm white noise: the dz error of each pixel has the least-squares standard deviation
    sigma * sqrt((A^T A)^-1)_00 (the planted field is recovered to that level, not better, not worse)."""
    dates, bp, inc, dz, defo, series = _world(ny=20, nx=30, n=40, noise=1.0, seed=3)
    rs = R * np.sin(np.radians(inc))
    g = dem_error.deformation_design(dates)
    corr, got, status = dem_error.dem_error_block(series, bp / 100.0, g, r_sin_theta=rs, scale=100.0)
    assert (status == 1).all()
    a = np.column_stack([bp, g])
    sigma_coef = math.sqrt(np.linalg.inv(a.T @ a)[0, 0])  # mm per m of baseline
    sigma_dz = sigma_coef * rs / 1000.0  # m
    z = (got - dz) / sigma_dz
    assert 0.85 < float(np.sqrt(np.mean(z**2))) < 1.15  # 600 pixels: the RMS of z is 1 within ~6 %
    assert abs(float(np.mean(z))) < 0.15
    planted = 1000.0 * bp[:, None, None] * dz[None] / rs[None]
    noise = series - defo - planted
    rms = lambda a: float(np.sqrt(np.mean(a**2)))  # noqa: E731
    assert rms(corr - defo) < 1.02 * rms(noise)  # the noise itself stays; the topographic term is gone
    assert rms(corr - defo - noise) < 0.25 * rms(planted)  # what is left of the planted term


def test_zero_dem_error_leaves_series_unchanged():
    dates, bp, inc, dz, defo, series = _world(seasonal=True)
    g = dem_error.deformation_design(dates, 2, periods=(1.0, 0.5))
    corr, got, status = dem_error.dem_error_block(defo, bp, g, r_sin_theta=R * 0.6)
    assert (status == 1).all()
    np.testing.assert_allclose(corr, defo, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got, 0.0, atol=1e-9)


def test_per_pair_baselines_equal_per_date(tmp_path):
    dates, bp, inc, dz, defo, series = _world()
    ts, incp, csv_dates = _write_inputs(tmp_path, dates, bp, inc, series)
    pairs_dir = tmp_path / "pairs"
    pairs_dir.mkdir()
    _, _, csv_pairs = _write_inputs(pairs_dir, dates, bp, inc, series, per_pair=True)
    c1, z1, s1 = _run(tmp_path, ts, str(csv_dates), incp, tag="_dates")
    logs = []
    c2, z2, s2 = _run(tmp_path, ts, str(csv_pairs), incp, tag="_pairs", log=logs.append)
    np.testing.assert_allclose(s2["bperp"], s1["bperp"], atol=1e-9)
    np.testing.assert_allclose(c2, c1, atol=1e-5)
    np.testing.assert_allclose(z2, z1, atol=1e-5)
    assert "per pair" in logs[0] and not any("inconsistent" in m for m in logs)


def test_pair_baselines_inconsistent_and_unresolved():
    d = [dt.date(2020, 1, 1) + dt.timedelta(days=12 * k) for k in range(5)]
    logs = []
    pairs = [(d[0], d[1], 10.0), (d[1], d[2], -5.0), (d[0], d[2], 9.0), (d[2], d[3], 3.0)]  # 10 - 5 != 9
    dates, values, comp = dem_error.pair_baselines_to_dates(pairs, "pairs.csv", logs.append)
    assert values[0] == pytest.approx(0.0, abs=1e-12) and len(logs) == 1
    assert "inconsistent" in logs[0] and "pairs.csv" in logs[0]
    b = dem_error.Baselines("pairs.csv", pairs=pairs + [(d[4], d[4] + dt.timedelta(days=12), 1.0)])
    with pytest.raises(TimeSeriesError) as e:
        dem_error.epoch_baselines(b, d, 0)
    msg = str(e.value)
    assert "\n" not in msg and "pairs.csv" in msg and "2020-02-18" in msg and "not linked" in msg
    with pytest.raises(TimeSeriesError, match="has no perpendicular baseline for date 2020-02-18"):
        dem_error.epoch_baselines(dem_error.Baselines("b.csv", dates=d[:4], values=[0, 1, 2, 3]), d, 0)


def test_nan_patterns(tmp_path):
    dates, bp, inc, dz, defo, series = _world(ny=6, nx=8, n=20)
    series = series.copy()
    rng = np.random.default_rng(4)
    holes = rng.random(series.shape) < 0.15
    holes[0] = False
    series[holes] = np.nan
    series[:, 0, 0] = np.nan  # no data at all
    series[4:, 0, 1] = np.nan  # 4 dates only: fewer than the 4 parameters + 1
    g = dem_error.deformation_design(dates)
    corr, got, status = dem_error.dem_error_block(series, bp, g, r_sin_theta=R * np.sin(np.radians(inc)))
    assert status[0, 0] == 0 and np.isnan(got[0, 0]) and np.isnan(corr[:, 0, 0]).all()
    assert status[0, 1] == -1 and np.isnan(got[0, 1])
    np.testing.assert_array_equal(corr[:4, 0, 1], series[:4, 0, 1])  # left as it was
    ok = status == 1
    assert ok.sum() == ok.size - 2
    np.testing.assert_allclose(got[ok], dz[ok], atol=1e-8)
    np.testing.assert_array_equal(np.isnan(corr), np.isnan(series))
    expected = np.where(np.isnan(series), np.nan, defo)
    np.testing.assert_allclose(corr[:, ok], expected[:, ok], atol=1e-9)
    # an excluded date is not used in the fit but is corrected
    use = np.ones(len(dates), bool)
    use[5] = False
    poisoned = series.copy()
    poisoned[5] += 50.0
    c2, z2, s2 = dem_error.dem_error_block(poisoned, bp, g, use, r_sin_theta=R * np.sin(np.radians(inc)))
    good = (s2 == 1) & np.isfinite(series[5])
    np.testing.assert_allclose(z2[good], dz[good], atol=1e-8)
    np.testing.assert_allclose(c2[5][good], defo[5][good] + 50.0, atol=1e-8)


def test_windows_and_threads_do_not_change_results(tmp_path):
    dates, bp, inc, dz, defo, series = _world(ny=23, nx=17, n=25, noise=0.5)
    series[3, 2:9, 4] = np.nan
    series[7:, 10, 10:] = np.nan
    ts, incp, csv = _write_inputs(tmp_path, dates, bp, inc, series)
    c1, z1, s1 = _run(tmp_path, ts, str(csv), incp, tag="_one")
    seen = []

    def run_tasks(fn, tasks, shared):
        seen.extend(tasks)
        return map_threads(fn, tasks, 3, shared=shared)

    c2, z2, s2 = _run(tmp_path, ts, str(csv), incp, tag="_many", memory_mb=0.02, run_tasks=run_tasks)
    assert len(seen) > 4
    np.testing.assert_array_equal(c2, c1)
    np.testing.assert_array_equal(z2, z1)
    np.testing.assert_allclose(
        [r["topographic_rms_mm"] for r in s2["rows"]], [r["topographic_rms_mm"] for r in s1["rows"]]
    )


def test_independent_per_pixel_lstsq_of_mintpys_system():
    """MintPy's system per pixel: G = [B_perp / (r sin theta), t^k / k!, cos, sin, step] (B_perp relative to the
    first date, t in MintPy's decimal years), x = lstsq(G, d); corrected = d - G[:, 0] x_0. Written here
    straightforwardly, pixel by pixel, with the geometry in the column (ours scales it out)."""
    dates, bp, inc, dz, defo, series = _world(ny=5, nx=6, n=28, noise=2.0, seasonal=True, seed=9)
    rng_r = np.linspace(830e3, 930e3, 6)[None].repeat(5, 0)
    series = (
        series
        + 1000.0
        * bp[:, None, None]
        * dz[None]
        * (1 / (rng_r * np.sin(np.radians(inc))) - 1 / (R * np.sin(np.radians(inc))))[None]
    )
    step = dates[len(dates) // 2]
    t = _years(dates)
    mine = dem_error.deformation_design(dates, 2, (1.0,), [step])
    ours_c, ours_z, status = dem_error.dem_error_block(
        series, bp / 50.0, mine, r_sin_theta=rng_r * np.sin(np.radians(inc)), scale=50.0
    )
    years = np.array([d.year + (d.timetuple().tm_yday - 1) / 365.25 for d in dates])
    for y in range(5):
        for x in range(6):
            geo = bp / (rng_r[y, x] * math.sin(math.radians(inc[y, x]))) * 1000.0  # mm per m of DEM error
            cols = [geo, np.ones_like(t), t, t**2 / 2, np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)]
            cols.append((years > step.year + (step.timetuple().tm_yday - 1) / 365.25).astype(float))
            gm = np.column_stack(cols)
            xsol = np.linalg.lstsq(gm, series[:, y, x], rcond=1e-8)[0]
            assert ours_z[y, x] == pytest.approx(xsol[0], rel=1e-9, abs=1e-9)
            np.testing.assert_allclose(ours_c[:, y, x], series[:, y, x] - geo * xsol[0], rtol=0, atol=1e-9)
    assert np.sqrt(np.mean((ours_z - dz) ** 2)) < 8.0  # and near the planted field (2 mm noise: sigma ~5 m)


def test_baselines_files(tmp_path):
    d = [dt.date(2020, 1, 3), dt.date(2020, 1, 15), dt.date(2020, 2, 8)]
    licsar = tmp_path / "baselines"
    licsar.write_text("20200103 20200115 -41.20 12.0\n20200103 20200208 17.50 36.0\n")
    b = dem_error.read_baselines(licsar)
    assert b.kind == "per date" and b.dates == d
    np.testing.assert_allclose(dem_error.epoch_baselines(b, d, 1), [41.2, 0.0, 58.7])
    spaced = tmp_path / "pairs.txt"  # whitespace, per pair (several reference dates: not LiCSAR's format)
    spaced.write_text("20200103 20200115 -41.2\n20200115 20200208 58.7\n")
    b = dem_error.read_baselines(spaced)
    assert b.kind == "per pair"
    np.testing.assert_allclose(dem_error.epoch_baselines(b, d), [0.0, -41.2, 17.5], atol=1e-9)
    network = tmp_path / "network.csv"  # the SBAS network table
    network.write_text(
        "file,reference_date,secondary_date,temporal_baseline_days,perp_baseline_m,used\n"
        "a.tif,2020-01-03,2020-01-15,12,-41.2,True\nb.tif,2020-01-15,2020-02-08,24,58.7,False\n"
        "c.tif,2020-01-03,2020-02-08,36,,True\n"
    )
    b = dem_error.read_baselines(network)
    assert b.kind == "per pair" and len(b.pairs) == 2
    np.testing.assert_allclose(dem_error.epoch_baselines(b, d), [0.0, -41.2, 17.5], atol=1e-9)
    plain = tmp_path / "plain.csv"  # no header, per date
    plain.write_text("2020-01-03,0\n2020-01-15,-41.2\n2020-02-08,17.5\n")
    np.testing.assert_allclose(dem_error.epoch_baselines(dem_error.read_baselines(plain), d), [0.0, -41.2, 17.5])
    for bad, pattern in (
        (tmp_path / "missing.csv", "does not exist"),
        (tmp_path / "binary.csv", "cannot be read as text|not a baselines table|not a LiCSAR baselines file"),
        (tmp_path / "words.csv", "not a number"),
    ):
        if bad.name == "binary.csv":
            bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
        elif bad.name == "words.csv":
            bad.write_text("date,bperp\n2020-01-03,abc\n")
        with pytest.raises(TimeSeriesError, match=pattern) as e:
            dem_error.read_baselines(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_bad_inputs_one_line(tmp_path):
    dates, bp, inc, dz, defo, series = _world(n=12)
    ts, incp, csv = _write_inputs(tmp_path, dates, bp, inc, series)
    short = tmp_path / "short.csv"
    short.write_text("date,bperp\n" + "".join("%s,%.2f\n" % (d, b) for d, b in list(zip(dates, bp))[:-1]))
    cases = [
        (dict(baselines=str(short)), "short.csv has no perpendicular baseline for date %s" % dates[-1]),
        (dict(baselines=str(csv), poly_degree=9), "lower the polynomial degree"),
        (dict(baselines=str(csv), exclude_dates=[dt.date(1999, 1, 1)]), "excluded date 1999-01-01"),
        (dict(baselines=str(csv), slant_range=-1.0), "slant range"),
        (dict(baselines=str(csv), reference_date=dt.date(1999, 1, 1)), "reference date 1999-01-01"),
    ]
    for kw, pattern in cases:
        with pytest.raises(TimeSeriesError) as e:
            dem_error.correct_dem_error(str(ts), str(tmp_path / "o.tif"), str(tmp_path / "z.tif"), **kw)
        assert pattern in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / "o.tif").exists() and not (tmp_path / "z.tif").exists()
    # baselines that are a polynomial of time cannot be separated from the deformation
    lin = tmp_path / "linear.csv"
    t = _years(dates)
    lin.write_text("date,bperp\n" + "".join("%s,%.9f\n" % (d, 50 * x) for d, x in zip(dates, t)))
    with pytest.raises(TimeSeriesError, match="cannot be separated"):
        dem_error.correct_dem_error(str(ts), str(tmp_path / "o.tif"), None, str(lin))


def test_reference_date_keeps_series_zero_there(tmp_path):
    dates, bp, inc, dz, defo, series = _world(n=15)
    ref = 4
    shifted = series - series[ref]
    ts, incp, csv = _write_inputs(tmp_path, dates, bp, inc, shifted)
    corr, got, summary = _run(tmp_path, ts, str(csv), incp, reference_date=dates[ref])
    np.testing.assert_allclose(corr[ref], 0.0, atol=1e-6)
    np.testing.assert_allclose(corr, defo - defo[ref], atol=1e-4)
    np.testing.assert_allclose(got, dz, atol=1e-3)
    assert summary["bperp"][ref] == 0.0


def test_geometry_only_scales_the_dem_error(tmp_path):
    """The corrected series does not depend on the slant range or the incidence (bit for bit); dz scales with
    r sin(theta): a slant-range raster of 1.1 x 880 km gives 1.1 x dz. A U raster (cos theta) gives what the
    incidence raster gives."""
    dates, bp, inc, dz, defo, series = _world(n=16)
    ts, incp, csv = _write_inputs(tmp_path, dates, bp, inc, series)
    c1, z1, _ = _run(tmp_path, ts, str(csv), incp, tag="_inc")
    rng = write_stack(tmp_path / "range.tif", np.full(inc.shape, 1.1 * R), dtype=gdal.GDT_Float64)
    u = write_stack(tmp_path / "u.tif", np.cos(np.radians(inc)), dtype=gdal.GDT_Float64)
    out = (tmp_path / "c2.tif", tmp_path / "z2.tif")
    dem_error.correct_dem_error(
        str(ts), str(out[0]), str(out[1]), str(csv), slant_range=str(rng), incidence=dict(path=str(u), kind="up")
    )
    np.testing.assert_array_equal(_read(out[0]), c1)
    np.testing.assert_allclose(_read(out[1])[0], 1.1 * z1, rtol=1e-6)
    c3, z3, _ = _run(tmp_path, ts, str(csv), None, tag="_const", slant_range=R)  # constant 39 degrees
    np.testing.assert_array_equal(c3, c1)
    np.testing.assert_allclose(z3, z1 * np.sin(np.radians(39.0)) / np.sin(np.radians(inc)), rtol=1e-6)


def test_cancel_leaves_no_output(tmp_path):
    from subsidence_toolkit.core.io.errors import Cancelled

    dates, bp, inc, dz, defo, series = _world(n=12)
    ts, incp, csv = _write_inputs(tmp_path, dates, bp, inc, series)
    with pytest.raises(Cancelled):
        dem_error.correct_dem_error(
            str(ts),
            str(tmp_path / "o.tif"),
            str(tmp_path / "z.tif"),
            str(csv),
            memory_mb=0.005,
            is_canceled=lambda: True,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baselines.csv", "inc.tif", "ts.tif"]


def test_float32_windows_and_pixel_chunks_give_the_same_correction_bit_for_bit(monkeypatch):
    """A window held as float32 (as read from a float32 file) gives the float32 correction of the float64 window
    bit for bit, and pixels corrected a chunk at a time the values of the whole block: the type and the chunks
    change the memory, not the numbers (each pixel's coefficient is summed in date order from its pattern's
    pseudo-inverse)."""
    dates, bp, inc, dz, defo, series = _world(ny=13, nx=11, n=24, noise=0.3)
    series[3, 2:9, 4] = np.nan
    series[7:, 10, 5:] = np.nan
    series[:, 0, 0] = np.nan
    values = series.astype(np.float32)
    g = dem_error.deformation_design(dates, 2, (), (), 0)
    rs = R * np.sin(np.radians(inc))
    c64, z64, s64 = dem_error.dem_error_block(values.astype(np.float64), bp / 50.0, g, r_sin_theta=rs, scale=50.0)
    c32, z32, s32, (sq, n) = dem_error.dem_error_block(
        values, bp / 50.0, g, r_sin_theta=rs, scale=50.0, out_dtype=np.float32, with_removed=True
    )
    assert c32.dtype == np.float32
    assert np.array_equal(c32, c64.astype(np.float32), equal_nan=True)
    assert np.array_equal(z32, z64, equal_nan=True) and np.array_equal(s32, s64)
    ok = s64 == 1
    removed = (values.astype(np.float64) - c64)[:, ok]
    np.testing.assert_allclose(sq, np.nansum(removed**2, axis=1), rtol=1e-13)
    np.testing.assert_array_equal(n, np.isfinite(removed).sum(axis=1))
    monkeypatch.setattr(dem_error, "PIXEL_CHUNK", 7)
    c7, z7, s7 = dem_error.dem_error_block(values, bp / 50.0, g, r_sin_theta=rs, scale=50.0, out_dtype=np.float32)
    assert np.array_equal(c7, c32, equal_nan=True) and np.array_equal(z7, z32, equal_nan=True)


@pytest.mark.parametrize("gaps", ["shared", "scattered"])
def test_block_memory_within_its_plan(gaps):
    """What a block's correction allocates (numpy reports to tracemalloc) beyond its input stays within what the
    window plan counts: ``window_bytes_per_cell`` x its cells without the input + ``fixed_bytes`` (+ 64 kB), with
    a few shared gaps and with gaps on dates of their own (one pseudo-inverse row per pixel)."""
    import tracemalloc

    rng = np.random.default_rng(2)
    dates, bp, inc, dz, defo, series = _world(ny=60, nx=150, n=40, noise=0.3)
    if gaps == "shared":
        series[5:9, :30] = np.nan
    else:
        series[rng.random(series.shape) < 0.1] = np.nan
    values = series.astype(np.float32)
    g = dem_error.deformation_design(dates, 2, (), (), 0)
    rs = R * np.sin(np.radians(inc))
    dem_error.dem_error_block(values[:, :3, :3], bp / 50.0, g, r_sin_theta=rs[:3, :3], scale=50.0)  # warm
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = dem_error.dem_error_block(
            values, bp / 50.0, g, r_sin_theta=rs, scale=50.0, out_dtype=np.float32, with_removed=True
        )
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    N, cells = values.shape[0], values.shape[1] * values.shape[2]
    plan = (dem_error.window_bytes_per_cell(N, 4) - 4 * N) * cells + dem_error.fixed_bytes(N, g.shape[1] + 1)
    assert out[0].nbytes <= peak <= plan + 64 * 1024, (peak, plan)
