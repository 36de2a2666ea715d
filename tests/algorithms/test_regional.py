"""LOS to vertical, ascending + descending decomposition and frame mosaics through processing.run."""

import datetime as dt

import numpy as np
import pytest
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.core.insar import geometry

DATES = [dt.date(2020, m, 15) for m in range(1, 5)]
X0, Y0, PX = 500000.0, 4000000.0, 30.0


def _read(path):
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


def test_project_los_with_u_raster_and_constant_angle(run_alg, tmp_path):
    rng = np.random.default_rng(0)
    los = rng.uniform(-60, 5, (4, 5, 6))
    u = np.cos(np.deg2rad(rng.uniform(30, 45, (5, 6))))
    src = write_stack(tmp_path / "los.tif", los, DATES)
    up = write_stack(tmp_path / "f.geo.U.tif", u)
    out = str(tmp_path / "v.tif")
    res = run_alg("projectlos", {"INPUT": src, "GEOMETRY": up, "GEOMETRY_TYPE": 1, "OUTPUT": out})
    assert res["OUTPUT"] == out
    assert np.array_equal(_read(out), (_read(src) / _read(up)).astype(np.float32))
    ds = gdal.Open(out)
    assert ds.GetMetadata()["COMPONENT"] == "vertical, horizontal motion neglected"
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(4)] == [d.isoformat() for d in DATES]
    out2 = str(tmp_path / "v2.tif")
    run_alg("projectlos", {"INPUT": src, "INCIDENCE_ANGLE": 40.0, "OUTPUT": out2})
    assert np.allclose(_read(out2), _read(src) / np.cos(np.deg2rad(40.0)), rtol=3e-7)


def test_project_los_errors(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    src = write_stack(tmp_path / "los.tif", np.ones((2, 4, 4)), DATES[:2])
    with pytest.raises(QgsProcessingException, match="no incidence geometry"):
        run_alg("projectlos", {"INPUT": src, "OUTPUT": str(tmp_path / "o.tif")})
    bad = write_stack(tmp_path / "angles.tif", np.full((4, 4), 39.0))
    with pytest.raises(QgsProcessingException, match=r"angles\.tif.*\(0, 1\]"):
        run_alg("projectlos", {"INPUT": src, "GEOMETRY": bad, "GEOMETRY_TYPE": 1, "OUTPUT": str(tmp_path / "o.tif")})
    assert not (tmp_path / "o.tif").exists() and not _leftovers(tmp_path)


def test_decompose_asc_desc(run_alg, tmp_path):
    rng = np.random.default_rng(1)
    up, east = rng.uniform(-100, 10, (6, 7)), rng.uniform(-20, 20, (6, 7))
    layers = {}
    for name, heading, inc in (("asc", -10.0, np.linspace(31, 44, 7)), ("dsc", 190.0, np.linspace(43, 30, 7))):
        e, n, u = geometry.unit_vector(heading, np.broadcast_to(inc, (6, 7)))
        layers[name] = write_stack(tmp_path / (name + ".tif"), e * east + u * up, descriptions=["velocity"])
        for comp, arr in zip("ENU", (e, n, u)):
            layers[name + comp] = write_stack(tmp_path / ("%s.geo.%s.tif" % (name, comp)), arr)
    out = {k: str(tmp_path / (k + ".tif")) for k in ("v", "e", "q")}
    run_alg(
        "decomposelos",
        {
            "INPUTS": [layers["asc"], layers["dsc"]],
            "E_RASTERS": [layers["ascE"], layers["dscE"]],
            "N_RASTERS": [layers["ascN"], layers["dscN"]],
            "U_RASTERS": [layers["ascU"], layers["dscU"]],
            "OUTPUT_VERTICAL": out["v"],
            "OUTPUT_EAST": out["e"],
            "OUTPUT_QUALITY": out["q"],
        },
    )
    tol = 4 * np.finfo(np.float32).eps * 200
    assert np.abs(_read(out["v"]) - up).max() < tol and np.abs(_read(out["e"]) - east).max() < tol
    q = _read(out["q"])
    assert (q[3] == 2).all() and (q[2] >= 1).all() and (q[0] > 0).all()
    # heading + incidence alternative (constant geometry)
    ga, gd = geometry.unit_vector(-10, 35.0), geometry.unit_vector(190, 40.0)
    a = write_stack(tmp_path / "a.tif", ga[0] * east + ga[2] * up)
    b = write_stack(tmp_path / "b.tif", gd[0] * east + gd[2] * up)
    run_alg(
        "decomposelos",
        {
            "INPUTS": [a, b],
            "HEADINGS": "-10, 190",
            "INCIDENCE_ANGLES": "35,40",
            "UNCERTAINTIES": "2,3",
            "OUTPUT_VERTICAL": out["v"],
            "OUTPUT_EAST": out["e"],
            "OUTPUT_QUALITY": out["q"],
        },
    )
    assert np.abs(_read(out["v"]) - up).max() < tol


def test_decompose_errors(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    a = write_stack(tmp_path / "a.tif", np.ones((5, 5)))
    b = write_stack(tmp_path / "b.tif", np.ones((5, 5)))
    small = write_stack(tmp_path / "small.U.tif", np.full((3, 3), 0.8))
    outs = {
        "OUTPUT_VERTICAL": str(tmp_path / "v.tif"),
        "OUTPUT_EAST": str(tmp_path / "e.tif"),
        "OUTPUT_QUALITY": str(tmp_path / "q.tif"),
    }
    with pytest.raises(QgsProcessingException, match=r"small\.U\.tif.*does not cover"):
        run_alg("decomposelos", dict(outs, INPUTS=[a, b], E_RASTERS=[small, small], U_RASTERS=[small, small]))
    with pytest.raises(QgsProcessingException, match="no geometry"):
        run_alg("decomposelos", dict(outs, INPUTS=[a, b]))
    assert not any((tmp_path / n).exists() for n in ("v.tif", "e.tif", "q.tif")) and not _leftovers(tmp_path)


def _frames(tmp_path, truth, boxes, planted):
    paths = []
    for k, ((c0, c1), off) in enumerate(zip(boxes, planted)):
        paths.append(
            write_stack(
                tmp_path / ("frame%d.tif" % k),
                truth[:, :, c0:c1] + np.asarray(off)[:, None, None],
                DATES,
                origin=(X0 + c0 * PX, Y0),
                pixel=PX,
                dtype=gdal.GDT_Float64,
            )
        )
    return paths


def test_mosaic_frames_with_offsets_table(run_alg, tmp_path):
    rng = np.random.default_rng(4)
    truth = np.cumsum(rng.normal(-2, 3, (4, 12, 40)), axis=0)
    planted = np.array([[0, 0, 0, 0], [3, -4, 8, 1.5], [-9, 2, 5, 12]], dtype=float)
    paths = _frames(tmp_path, truth, [(0, 16), (10, 30), (24, 40)], planted)
    out, table = str(tmp_path / "m.tif"), str(tmp_path / "offsets.csv")
    res = run_alg(
        "mosaicframes",
        {"INPUTS": paths, "REFERENCE_FRAME": 0, "MEMORY_LIMIT_MB": 0.05, "OUTPUT": out, "OUTPUT_OFFSETS": table},
    )
    assert res["OUTPUT"] == out
    assert np.abs(_read(out) - truth).max() < 1e-4
    import pandas as pd

    df = pd.read_csv(table)
    assert list(df.columns) == [
        "frame",
        "input",
        "date",
        "offset_mm",
        "overlap_pixels",
        "rms_before_mm",
        "rms_after_mm",
        "connected_to_reference",
    ]
    assert len(df) == 12 and set(df["input"]) == {"frame0.tif", "frame1.tif", "frame2.tif"}
    for f in range(3):
        got = df[df["frame"] == f]["offset_mm"].to_numpy()
        assert np.allclose(got, -planted[f], atol=1e-9)
    assert (df["rms_after_mm"] < 1e-9).all()
    # zero-mean offsets and a target resolution / extent
    out2 = str(tmp_path / "m2.tif")
    run_alg(
        "mosaicframes",
        {
            "INPUTS": paths,
            "REFERENCE_FRAME": -1,
            "TARGET_RESOLUTION": 60.0,
            "TARGET_EXTENT": "%f,%f,%f,%f [EPSG:32649]" % (X0, X0 + 1200, Y0 - 360, Y0),
            "OUTPUT": out2,
        },
    )
    ds = gdal.Open(out2)
    assert (ds.RasterXSize, ds.RasterYSize) == (20, 6) and ds.GetGeoTransform()[1] == 60.0


def test_mosaic_frames_threads_identical(run_alg, tmp_path):
    rng = np.random.default_rng(7)
    truth = np.cumsum(rng.normal(-2, 3, (4, 12, 40)), axis=0)
    planted = np.array([[0, 0, 0, 0], [3, -4, 8, 1.5], [-9, 2, 5, 12]], dtype=float)
    paths = _frames(tmp_path, truth, [(0, 16), (10, 30), (24, 40)], planted)
    got = {}
    for threads in (1, 3):
        out, table = str(tmp_path / ("m%d.tif" % threads)), str(tmp_path / ("o%d.csv" % threads))
        params = {"INPUTS": paths, "MEMORY_LIMIT_MB": 0.03, "THREADS": threads, "OUTPUT": out, "OUTPUT_OFFSETS": table}
        run_alg("mosaicframes", params)
        got[threads] = (_read(out), open(table).read())
    assert np.array_equal(got[1][0], got[3][0]) and got[1][1] == got[3][1]
    assert np.abs(got[3][0] - truth).max() < 1e-4


def test_mosaic_frames_errors(run_alg, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    truth = np.zeros((4, 6, 40))
    apart = _frames(tmp_path, truth, [(0, 15), (20, 40)], np.zeros((2, 4)))
    with pytest.raises(QgsProcessingException, match="do not overlap"):
        run_alg("mosaicframes", {"INPUTS": apart, "OUTPUT": str(tmp_path / "m.tif")})
    other = write_stack(
        tmp_path / "other.tif", np.zeros((2, 6, 20)), [dt.date(2021, 1, 1), dt.date(2021, 2, 1)], origin=(X0, Y0)
    )
    with pytest.raises(QgsProcessingException, match="no common date"):
        run_alg("mosaicframes", {"INPUTS": [apart[0], other], "OUTPUT": str(tmp_path / "m.tif")})

    class Cancel(QgsProcessingFeedback):
        def setProgress(self, p):
            super().setProgress(p)
            if p > 0:
                self.cancel()

    both = _frames(tmp_path, truth, [(0, 25), (15, 40)], np.zeros((2, 4)))
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run_alg(
            "mosaicframes",
            {"INPUTS": both, "MEMORY_LIMIT_MB": 0.01, "OUTPUT": str(tmp_path / "m.tif")},
            feedback=Cancel(),
        )
    assert not (tmp_path / "m.tif").exists() and not _leftovers(tmp_path)
