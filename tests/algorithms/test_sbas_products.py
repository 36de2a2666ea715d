"""subsidence:sbasinversion on LiCSAR and HyP3 products as shipped: the same results as the same data in our
own convention (float coherence = uint8/255, NaN instead of 0, pre-clipped to the common area)."""

import numpy as np
import pandas as pd
import pytest
from osgeo import gdal
from product_layouts import FRAME, write_hyp3_folder, write_licsar_frame, write_own_convention

OUTS = ("OUTPUT_TIMESERIES", "OUTPUT_VELOCITY", "OUTPUT_QUALITY")


def outputs(tmp_path, tag):
    return {
        "OUTPUT_TIMESERIES": str(tmp_path / ("%s_ts.tif" % tag)),
        "OUTPUT_VELOCITY": str(tmp_path / ("%s_vel.tif" % tag)),
        "OUTPUT_QUALITY": str(tmp_path / ("%s_q.tif" % tag)),
        "OUTPUT_NETWORK": str(tmp_path / ("%s_net.csv" % tag)),
    }


def _same_outputs(a, b, n_ifg):
    for k in OUTS:
        da, db = gdal.Open(a[k]), gdal.Open(b[k])
        assert da.GetGeoTransform() == db.GetGeoTransform()
        x, y = da.ReadAsArray(), db.ReadAsArray()
        assert np.isfinite(x).any()
        assert np.array_equal(x, y, equal_nan=True), k
        assert da.GetMetadata()["REFERENCE_ROW"] == db.GetMetadata()["REFERENCE_ROW"]
    ta, tb = pd.read_csv(a["OUTPUT_NETWORK"]), pd.read_csv(b["OUTPUT_NETWORK"])
    assert len(ta) == len(tb) == n_ifg
    for c in ("reference_date", "secondary_date", "status", "mean_coherence", "residual_rms_mm", "n_pixels_used"):
        pd.testing.assert_series_equal(ta[c], tb[c], check_exact=True)
    return ta, tb


@pytest.mark.parametrize("params", [dict(), dict(WEIGHTING=2, MIN_COHERENCE=0.3, GAP_HANDLING=1)])
def test_licsar_frame_folder_equals_own_convention(run_alg, tmp_path, params):
    lay = write_licsar_frame(tmp_path / FRAME)
    own_i, own_c, _ = write_own_convention(tmp_path / "own", lay)
    a = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], **params, **outputs(tmp_path, "lic")))
    b = run_alg("sbasinversion", dict(INTERFEROGRAMS=own_i, COHERENCE=own_c, **params, **outputs(tmp_path, "own")))
    ta, _ = _same_outputs(a, b, len(lay["pairs"]))
    # baselines from the frame's baselines file in the network table
    bp = lay["bperp_epochs"]
    want = [bp[y] - bp[x] for x, y in lay["pairs"]]
    np.testing.assert_allclose(ta["perp_baseline_m"], want, atol=1e-9)
    # the LiCSAR files themselves given as lists: the same
    c = run_alg(
        "sbasinversion", dict(INTERFEROGRAMS=lay["unw"], COHERENCE=lay["cc"], **params, **outputs(tmp_path, "list"))
    )
    _same_outputs(a, c, len(lay["pairs"]))


def test_hyp3_zips_with_own_extents_equal_own_convention_clipped(run_alg, tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=True)
    own_i, own_c, _ = write_own_convention(tmp_path / "own", lay)
    a = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], WEIGHTING=1, **outputs(tmp_path, "h")))
    b = run_alg("sbasinversion", dict(INTERFEROGRAMS=own_i, COHERENCE=own_c, WEIGHTING=1, **outputs(tmp_path, "o")))
    assert gdal.Open(a["OUTPUT_VELOCITY"]).GetGeoTransform() == lay["common_gt"]
    ta, _ = _same_outputs(a, b, len(lay["pairs"]))
    np.testing.assert_allclose(ta["perp_baseline_m"], [p["bperp"] for p in lay["products"]], atol=1e-4)


def test_max_perp_baseline_from_product_baselines_without_a_pairs_csv(run_alg, tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME, with_geometry=False)
    own_i, own_c, csv = write_own_convention(tmp_path / "own", lay)
    bp = lay["bperp_epochs"]
    limit = float(np.median([abs(bp[y] - bp[x]) for x, y in lay["pairs"]]))
    a = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], MAX_PERP_BASELINE=limit, **outputs(tmp_path, "a")))
    b = run_alg(
        "sbasinversion",
        dict(INTERFEROGRAMS=own_i, COHERENCE=own_c, PAIRS=csv, MAX_PERP_BASELINE=limit, **outputs(tmp_path, "b")),
    )
    ta, _ = _same_outputs(a, b, len(lay["pairs"]))
    dropped = ta[~ta["used"].astype(bool)]
    assert len(dropped) > 0 and all(s.startswith("perpendicular baseline") for s in dropped["status"])
    assert (dropped["perp_baseline_m"].abs() > limit).all()


def test_bad_product_inputs_are_named(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    lay = write_hyp3_folder(tmp_path / "zones", zipped=True, other_zone=(1,), with_geometry=False)
    with pytest.raises(
        QgsProcessingException, match=r"2 different CRS \(EPSG:32650 .*EPSG:32651.*%s" % lay["products"][1]["name"]
    ):
        run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], **outputs(tmp_path, "z")))
    # with the warp option it runs, on the first product's UTM zone
    res = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], DIFFERENT_CRS=1, **outputs(tmp_path, "w")))
    assert "32650" in gdal.Open(res["OUTPUT_VELOCITY"]).GetProjection()
    with pytest.raises(QgsProcessingException, match="give INTERFEROGRAMS or an INPUT_FOLDER"):
        run_alg("sbasinversion", outputs(tmp_path, "n"))
    assert not list(tmp_path.glob("z_*")) and not list(tmp_path.glob("n_*"))


def test_hyp3_union_extent_inverts_every_pixel_some_product_covers(run_alg, tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=True, with_geometry=False)
    # (the margins hold independent random phase: their loops do not close, so the loop closure is off here)
    a = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], EXTENT=1, LOOP_CLOSURE=0, **outputs(tmp_path, "u")))
    ds = gdal.Open(a["OUTPUT_VELOCITY"])
    gts = [p["gt"] for p in lay["products"]]
    x0, y0 = min(g[0] for g in gts), max(g[3] for g in gts)
    x1 = max(g[0] + p["shape"][1] * 80.0 for g, p in zip(gts, lay["products"]))
    y1 = min(g[3] - p["shape"][0] * 80.0 for g, p in zip(gts, lay["products"]))
    assert ds.GetGeoTransform()[0] == x0 and ds.GetGeoTransform()[3] == y0
    assert (ds.RasterXSize, ds.RasterYSize) == (round((x1 - x0) / 80.0), round((y0 - y1) / 80.0))
    q = gdal.Open(a["OUTPUT_QUALITY"]).ReadAsArray()
    n_used = q[1]
    c0, r0 = round((lay["common_gt"][0] - x0) / 80.0), round((y0 - lay["common_gt"][3]) / 80.0)
    ny, nx = lay["shape"]
    inner = n_used[r0 : r0 + ny, c0 : c0 + nx]
    outer = np.ones(n_used.shape, bool)
    outer[r0 : r0 + ny, c0 : c0 + nx] = False
    # margins are covered by fewer products than the common area
    assert np.nanmax(n_used[outer]) < np.nanmax(inner) == len(lay["pairs"])


def test_incidence_from_the_products_on_the_output_grid(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    lay = write_licsar_frame(tmp_path / FRAME)
    inc = str(tmp_path / "inc.tif")
    res = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], OUTPUT_INCIDENCE=inc, **outputs(tmp_path, "l")))
    assert res["OUTPUT_INCIDENCE"] == inc
    ds = gdal.Open(inc)
    assert ds.GetGeoTransform() == gdal.Open(res["OUTPUT_VELOCITY"]).GetGeoTransform()
    u = lay["geometry"]["U"].astype(np.float64)
    want = np.degrees(np.arccos(u))
    want[u == 0] = np.nan  # LiCSAR: 0 = no data
    np.testing.assert_allclose(ds.ReadAsArray(), want, atol=1e-4)
    # HyP3: 90 deg - lv_theta (radians), on the products' common area
    hy = write_hyp3_folder(tmp_path / "hyp3", zipped=True)
    res = run_alg(
        "sbasinversion",
        dict(INPUT_FOLDER=hy["root"], OUTPUT_INCIDENCE=str(tmp_path / "hinc.tif"), **outputs(tmp_path, "h")),
    )
    a = gdal.Open(res["OUTPUT_INCIDENCE"]).ReadAsArray()
    assert gdal.Open(res["OUTPUT_INCIDENCE"]).GetGeoTransform() == hy["common_gt"]
    assert 29.9 < a.min() and a.max() < 45.1
    # products without geometry: named before anything is written
    bare = write_licsar_frame(tmp_path / "bare", with_geometry=False)
    with pytest.raises(QgsProcessingException, match="ship no geometry for incidence"):
        run_alg(
            "sbasinversion",
            dict(INPUT_FOLDER=bare["root"], OUTPUT_INCIDENCE=str(tmp_path / "x.tif"), **outputs(tmp_path, "b")),
        )
    assert not list(tmp_path.glob("b_*")) and not (tmp_path / "x.tif").exists()


def test_vertical_output_uses_the_products_geometry_when_none_is_given(run_alg, tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME)
    los = run_alg("sbasinversion", dict(INPUT_FOLDER=lay["root"], **outputs(tmp_path, "los")))
    inc = str(tmp_path / "inc.tif")
    up = run_alg(
        "sbasinversion",
        dict(INPUT_FOLDER=lay["root"], OUTPUT_COMPONENT=1, OUTPUT_INCIDENCE=inc, **outputs(tmp_path, "up")),
    )
    v_los = gdal.Open(los["OUTPUT_VELOCITY"]).ReadAsArray().astype(float)
    v_up = gdal.Open(up["OUTPUT_VELOCITY"]).ReadAsArray().astype(float)
    cos = np.cos(np.radians(gdal.Open(inc).ReadAsArray().astype(float)))
    ok = np.isfinite(v_los) & np.isfinite(cos)
    np.testing.assert_allclose(v_up[ok], v_los[ok] / cos[ok], rtol=1e-5, atol=1e-5)
    assert np.isnan(v_up[0, :3]).all()  # LiCSAR U = 0 there: no geometry, no vertical
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary geometry left
