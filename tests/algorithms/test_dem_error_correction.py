"""subsidence:demerror through processing.run, chained after subsidence:sbasinversion as in a model: interferograms
carrying a planted DEM error (their phase holds 1000 (B2 - B1) dz / (r sin theta) mm), the SBAS network table as
the baselines table, the DEM error recovered and the corrected series equal to the planted deformation."""

import math

import numpy as np
import pytest
from osgeo import gdal, ogr
from synthetic import sentinel1_dates, write_stack

WAVELENGTH = 0.05546576
R, INC = 880000.0, 37.0


def _planted(ny=8, nx=10):
    dates = sentinel1_dates(n=14, gaps=())
    bp = np.round(np.random.default_rng(3).normal(0, 70, len(dates)), 2)
    t = np.array([(d - dates[0]).days for d in dates]) / 365.25
    yy, xx = np.mgrid[0:ny, 0:nx]
    dz = 30.0 * np.exp(-((yy - 4) ** 2 + (xx - 6) ** 2) / 5.0) - 8.0 * (yy < 2)
    defo = (-40.0 * np.exp(-((yy - 5) ** 2 + (xx - 3) ** 2) / 6.0))[None] * t[:, None, None] + 3.0 * t[
        :, None, None
    ] ** 2
    topo = 1000.0 * bp[:, None, None] * dz[None] / (R * math.sin(math.radians(INC)))
    return dates, bp, dz, defo, topo


def _stack(tmp_path, dates, bp, disp):
    folder = tmp_path / "ifg"
    folder.mkdir()
    files, rows = [], ["file,date1,date2,bperp"]
    for i, a in enumerate(dates):
        for j in range(i + 1, min(i + 4, len(dates))):
            b = dates[j]
            phase = -(disp[j] - disp[i]) / 1000.0 * 4 * math.pi / WAVELENGTH
            name = "%s_%s.geo.unw.tif" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
            files.append(str(write_stack(folder / name, phase, dtype=gdal.GDT_Float64)))
            rows.append("%s,%s,%s,%.2f" % (name, a, b, bp[j] - bp[i]))
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    return files


def test_chained_after_sbas_with_its_network_table(run_alg, tmp_path):
    dates, bp, dz, defo, topo = _planted()
    files = _stack(tmp_path, dates, bp, defo + topo)
    sbas = run_alg(
        "sbasinversion",
        dict(
            INTERFEROGRAMS=files,
            PAIRS=str(tmp_path / "pairs.csv"),
            LOOP_CLOSURE=0,
            OUTPUT_TIMESERIES=str(tmp_path / "ts.tif"),
            OUTPUT_VELOCITY=str(tmp_path / "vel.tif"),
            OUTPUT_QUALITY=str(tmp_path / "q.tif"),
            OUTPUT_NETWORK=str(tmp_path / "network.gpkg"),
        ),
    )
    md = gdal.Open(sbas["OUTPUT_TIMESERIES"]).GetMetadata()
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    res = run_alg(
        "demerror",
        dict(
            INPUT=sbas["OUTPUT_TIMESERIES"],
            BASELINE_TABLE=sbas["OUTPUT_NETWORK"],
            INCIDENCE_ANGLE=INC,
            OUTPUT_TIMESERIES=str(tmp_path / "corrected.tif"),
            OUTPUT_DEM_ERROR=str(tmp_path / "dz.tif"),
            OUTPUT_TABLE=str(tmp_path / "table.csv"),
        ),
    )
    got_dz = gdal.Open(res["OUTPUT_DEM_ERROR"]).ReadAsArray()
    np.testing.assert_allclose(got_dz, dz - dz[r, c], atol=2e-3)  # relative to the reference pixel
    corr = gdal.Open(res["OUTPUT_TIMESERIES"]).ReadAsArray().astype(float)
    truth = defo - defo[:, r : r + 1, c : c + 1]
    np.testing.assert_allclose(corr, truth, atol=2e-3)  # float32 SBAS + float32 output
    before = gdal.Open(sbas["OUTPUT_TIMESERIES"]).ReadAsArray().astype(float)
    assert np.abs(before - truth).max() > 2.0  # the planted DEM error was there
    ds = ogr.Open(res["OUTPUT_TABLE"])
    rows = [
        (f.GetField("date"), float(f.GetField("bperp_m")), float(f.GetField("topographic_rms_mm")))
        for f in ds.GetLayer(0)
    ]
    assert [x[0] for x in rows] == [d.isoformat() for d in dates]
    np.testing.assert_allclose([x[1] for x in rows], bp - bp[0], atol=1e-6)
    assert rows[0][2] == pytest.approx(0.0, abs=1e-9) and max(x[2] for x in rows) > 1.0
    # the same through the baselines file (the pairs CSV) instead of the table
    res2 = run_alg(
        "demerror",
        dict(
            INPUT=sbas["OUTPUT_TIMESERIES"],
            BASELINES=str(tmp_path / "pairs.csv"),
            INCIDENCE_ANGLE=INC,
            THREADS=2,
            MEMORY_LIMIT_MB=0.01,
            OUTPUT_TIMESERIES=str(tmp_path / "corrected2.tif"),
            OUTPUT_DEM_ERROR=str(tmp_path / "dz2.tif"),
        ),
    )
    np.testing.assert_array_equal(gdal.Open(res2["OUTPUT_TIMESERIES"]).ReadAsArray(), corr.astype(np.float32))
    np.testing.assert_allclose(gdal.Open(res2["OUTPUT_DEM_ERROR"]).ReadAsArray(), got_dz, atol=1e-5)


def test_bad_baselines_are_one_line_errors(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    dates, bp, dz, defo, topo = _planted(ny=4, nx=5)
    ts = write_stack(tmp_path / "ts.tif", defo + topo - (defo + topo)[0], dates=dates)
    short = tmp_path / "short.csv"
    short.write_text("date,bperp\n" + "".join("%s,%.2f\n" % (d, b) for d, b in zip(dates[:-1], bp[:-1])))
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\x01\x02\xff" * 50)
    for params, expect in (
        (dict(BASELINES=str(short)), "short.csv has no perpendicular baseline for date %s" % dates[-1]),
        (dict(BASELINES=str(garbage)), "garbage.csv"),
        (dict(), "no perpendicular baselines"),
        (dict(BASELINES=str(tmp_path / "missing.csv")), "missing.csv"),
    ):
        out = tmp_path / "out.tif"
        with pytest.raises(QgsProcessingException) as e:
            run_alg("demerror", dict(INPUT=str(ts), OUTPUT_TIMESERIES=str(out), **params))
        msg = str(e.value)
        assert expect in msg and "\n" not in msg.strip(), msg
        assert not out.exists()


def test_licsar_baselines_file_and_u_raster(run_alg, tmp_path):
    """The frame's metadata/baselines (no file extension; 'primary secondary bperp btemp') and a U raster."""
    dates, bp, dz, defo, topo = _planted(ny=5, nx=6)
    series = defo + topo
    ts = write_stack(tmp_path / "ts.tif", series - series[0], dates=dates, dtype=gdal.GDT_Float64)
    u = write_stack(tmp_path / "frame.geo.U.tif", np.full((5, 6), math.cos(math.radians(INC))), dtype=gdal.GDT_Float64)
    lines = [
        "%s %s %.2f %d" % (dates[0].strftime("%Y%m%d"), d.strftime("%Y%m%d"), b - bp[0], (d - dates[0]).days)
        for d, b in zip(dates[1:], bp[1:])
    ]
    (tmp_path / "baselines").write_text("\n".join(lines) + "\n")
    res = run_alg(
        "demerror",
        dict(
            INPUT=str(ts),
            BASELINES=str(tmp_path / "baselines"),
            INCIDENCE=str(u),
            INCIDENCE_TYPE=1,
            OUTPUT_TIMESERIES=str(tmp_path / "c.tif"),
            OUTPUT_DEM_ERROR=str(tmp_path / "dz.tif"),
        ),
    )
    np.testing.assert_allclose(gdal.Open(res["OUTPUT_DEM_ERROR"]).ReadAsArray(), dz, atol=2e-3)
    np.testing.assert_allclose(gdal.Open(res["OUTPUT_TIMESERIES"]).ReadAsArray(), defo - defo[0], atol=1e-3)


def test_in_a_model_after_sbas(qgis_app, tmp_path):
    """A model: SBAS inversion -> Correct DEM error, its time series and network table (the baselines) linked."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
    )

    dates, bp, dz, defo, topo = _planted(ny=6, nx=7)
    files = _stack(tmp_path, dates, bp, defo + topo)
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    model = QgsProcessingModelAlgorithm("sbas_dem", "tests")
    sbas = QgsProcessingModelChildAlgorithm("subsidence:sbasinversion")
    sbas.setChildId("sbas")
    sbas.addParameterSources("INTERFEROGRAMS", [static(files)])
    sbas.addParameterSources("PAIRS", [static(str(tmp_path / "pairs.csv"))])
    sbas.addParameterSources("LOOP_CLOSURE", [static(0)])
    model.addChildAlgorithm(sbas)
    dem = QgsProcessingModelChildAlgorithm("subsidence:demerror")
    dem.setChildId("dem")
    child = QgsProcessingModelChildParameterSource.fromChildOutput
    dem.addParameterSources("INPUT", [child("sbas", "OUTPUT_TIMESERIES")])
    dem.addParameterSources("BASELINE_TABLE", [child("sbas", "OUTPUT_NETWORK")])
    dem.addParameterSources("INCIDENCE_ANGLE", [static(INC)])
    outputs = {}
    for name in ("OUTPUT_TIMESERIES", "OUTPUT_DEM_ERROR"):
        o = QgsProcessingModelOutput(name.lower(), name.lower())
        o.setChildOutputName(name)
        o.setChildId("dem")
        outputs[name.lower()] = o
    dem.setModelOutputs(outputs)
    model.addChildAlgorithm(dem)
    path = tmp_path / "sbas_dem.model3"
    assert model.toFile(str(path))
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path))
    names = {p.name().split(":")[-1]: p.name() for p in model.destinationParameterDefinitions()}
    params = {names["output_timeseries"]: str(tmp_path / "c.tif"), names["output_dem_error"]: str(tmp_path / "dz.tif")}
    res = processing.run(model, params)
    got = gdal.Open(res[names["output_dem_error"]]).ReadAsArray()
    md = gdal.Open(res[names["output_timeseries"]]).GetMetadata()  # the SBAS metadata, carried over
    r, c = int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])
    np.testing.assert_allclose(got, dz - dz[r, c], atol=2e-3)
