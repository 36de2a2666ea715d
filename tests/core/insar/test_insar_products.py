"""core/insar/products.py: LiCSAR and HyP3 products as shipped, read through one layer."""

import datetime as dt
import math
import os
import zipfile

import numpy as np
import pytest
from osgeo import gdal
from product_layouts import (
    FRAME,
    _write,
    hyp3_name,
    stem,
    write_hyp3_folder,
    write_licsar_frame,
    write_own_convention,
)

from subsidence_toolkit.core.insar import products
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.rasters import open_raster, read_window


def _read_all(r):
    return r.read(0, r.stack_shape[0], 0, r.stack_shape[1])


def _own(path):
    ds = open_raster(path)
    return read_window(ds, 0, 0, ds.RasterXSize, ds.RasterYSize, bands=[1], dtype=np.float32)[0]


# ------------------------------------------------------------------ names
def test_product_names_of_the_three_hyp3_job_types_and_licsar():
    a, b = dt.date(2020, 6, 4), dt.date(2020, 6, 16)
    gamma = hyp3_name(a, b, 1)
    burst = hyp3_name(a, b, 2, "burst")
    multi = hyp3_name(a, b, 3, "multiburst")
    assert products.hyp3_product_name(gamma + ".zip") == (gamma, "INSAR_GAMMA")
    assert products.hyp3_product_name(burst) == (burst, "INSAR_ISCE_BURST")
    assert products.hyp3_product_name(multi + "_unw_phase.tif") == (multi, "INSAR_ISCE_MULTI_BURST")
    # the first multi-burst releases: a hyphen after the relative orbit
    old = "S1_064-000000s1n00-136229s2n05-136229s3n04_IW_20200604_20200616_VV_INT20_AB12"
    assert products.hyp3_product_name(old) == (old, "INSAR_ISCE_MULTI_BURST")
    assert products.hyp3_layer(gamma + "_unw_phase.tif") == (gamma, "unw_phase")
    assert products.hyp3_layer(multi + "_corr_clip.tif") == (multi, "corr")  # MintPy's clipped copies
    assert products.hyp3_layer(gamma + "_inc_map_ell.tif") == (gamma, "inc_map_ell")
    assert products.product_of_name("20200604_20200616.geo.unw.tif") == products.PRODUCT_LICSAR
    assert products.product_of_name("%s.geo.U.tif" % FRAME) == products.PRODUCT_LICSAR
    assert products.product_of_name(burst + "_unw_phase.tif") == products.PRODUCT_HYP3
    assert products.product_of_name("ifg_20200604_20200616.tif") == products.PRODUCT_GENERIC
    assert (
        products.detect_product(["a/20200604_20200616.geo.unw.tif", "b/20200604_20200628.geo.unw.tif"])
        == products.PRODUCT_LICSAR
    )
    assert (
        products.detect_product(["20200604_20200616.geo.unw.tif", gamma + "_unw_phase.tif"]) == products.PRODUCT_GENERIC
    )
    assert products.detect_product(["x_20200604_20200616.tif"], products.PRODUCT_LICSAR) == products.PRODUCT_LICSAR
    with pytest.raises(TimeSeriesError, match="unknown product"):
        products.detect_product(["x"], "isce")


# ------------------------------------------------------------------ values
def test_licsar_8bit_coherence_is_dn_over_255_and_zero_is_no_data_without_a_nodata_tag(tmp_path):
    gt = (110.0, 0.001, 0.0, 36.0, 0.0, -0.001)
    cc = np.array([[0, 1, 128], [255, 77, 0]], np.uint8)
    unw = np.array([[0.0, -1.5, 2.25], [0.0, 3.0, 1e-7]], np.float32)
    pc = _write(tmp_path / "GEOC/20200103_20200115/20200103_20200115.geo.cc.tif", cc, gt, 4326, gdal.GDT_Byte)
    pu = _write(tmp_path / "GEOC/20200103_20200115/20200103_20200115.geo.unw.tif", unw, gt, 4326)
    c = products.ProductRaster(pc, products.KIND_COH, products.PRODUCT_LICSAR)
    u = products.ProductRaster(pu, products.KIND_UNW, products.PRODUCT_LICSAR)
    assert gdal.Open(pc).GetRasterBand(1).GetNoDataValue() is None
    got = _read_all(c)
    want = cc.astype(np.float32) / np.float32(255)
    want[cc == 0] = np.nan
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and np.nanmax(got) == 1.0
    got = _read_all(u)
    want = unw.copy()
    want[unw == 0] = np.nan
    np.testing.assert_array_equal(got, want)
    assert "8-bit coherence / 255" in c.conventions() and "0 = no data" in u.conventions()
    # the same files read as generic products: 0 is a value (no NoData tag), 8-bit coherence still scaled
    g = products.ProductRaster(pu, products.KIND_UNW, products.PRODUCT_GENERIC)
    np.testing.assert_array_equal(_read_all(g), unw)
    gc = products.ProductRaster(pc, products.KIND_COH, products.PRODUCT_GENERIC)
    np.testing.assert_array_equal(_read_all(gc), cc.astype(np.float32) / np.float32(255))


def test_old_licsar_float_coherence_is_kept_and_its_zeros_are_no_data(tmp_path):
    gt = (110.0, 0.001, 0.0, 36.0, 0.0, -0.001)
    cc = np.array([[0.0, 0.25, 1.0]], np.float32)
    p = _write(tmp_path / "20200103_20200115.geo.cc.tif", cc, gt, 4326)
    r = products.ProductRaster(p, products.KIND_COH, products.PRODUCT_LICSAR)
    np.testing.assert_array_equal(_read_all(r), np.array([[np.nan, 0.25, 1.0]], np.float32))
    assert not r.byte_scaled


def test_hyp3_nodata_as_declared_only(tmp_path):
    gt = (400000.0, 80.0, 0.0, 4100000.0, 0.0, -80.0)
    name = hyp3_name(dt.date(2020, 1, 3), dt.date(2020, 1, 15), 0)
    a = np.array([[0.0, -9999.0, 1.5]], np.float32)
    p1 = _write(tmp_path / (name + "_unw_phase.tif"), a, gt, 32650, nodata=0.0)
    p2 = _write(tmp_path / ("b" + name + "_unw_phase.tif"), a, gt, 32650, nodata=-9999.0)
    r1 = products.ProductRaster(p1, products.KIND_UNW, products.PRODUCT_HYP3)
    r2 = products.ProductRaster(p2, products.KIND_UNW, products.PRODUCT_HYP3)
    np.testing.assert_array_equal(_read_all(r1), np.array([[np.nan, -9999.0, 1.5]], np.float32))
    np.testing.assert_array_equal(_read_all(r2), np.array([[0.0, np.nan, 1.5]], np.float32))


# ------------------------------------------------------------------ baselines and metadata
def test_licsar_baselines_current_and_old_format(tmp_path):
    new = tmp_path / "baselines"
    new.write_text("20200103 20200115 -31.40 12.0\n20200103 20200127 12.75 24.0\n")
    b = products.read_licsar_baselines(str(new))
    assert b == {dt.date(2020, 1, 3): 0.0, dt.date(2020, 1, 15): -31.4, dt.date(2020, 1, 27): 12.75}
    old = tmp_path / "baselines_old"
    old.write_text(
        "num mdate sdate bp dt dt_m_sm dt_s_sm bp_m_sm bp_s_sm\n"
        "  1 20170218 20170326 96.6 36.0 -12.0 24.0 34.2 130.9\n"
        "  2 20170302 20170314 32.4 12.0 0.0 12.0 0.0 32.4\n"
    )
    b = products.read_licsar_baselines(str(old))
    assert b[dt.date(2017, 3, 26)] - b[dt.date(2017, 2, 18)] == pytest.approx(96.7)
    assert b[dt.date(2017, 3, 2)] == 0.0 and b[dt.date(2017, 3, 14)] == 32.4
    bad = tmp_path / "notbaselines"
    bad.write_text("hello\n")
    with pytest.raises(TimeSeriesError, match="not a LiCSAR baselines file"):
        products.read_licsar_baselines(str(bad))


def test_hyp3_metadata_baseline_and_reference_point():
    meta = products.parse_hyp3_metadata(
        "Reference Granule: S1A_IW_SLC__1SDV_X\nBaseline: 58.3898\n"
        "Phase at reference point: -4.21967\n"
        "Y coordinate of the reference point in the map projection: 4112453.3223\n"
        "X coordinate of the reference point in the map projection: 589307.6248\n"
        "Latitude of the reference point (WGS84): 37.15\n"
        "Longitude of the reference point (WGS84): 117.3\n"
    )
    assert products.hyp3_baseline(meta) == 58.3898
    ref = products.hyp3_reference_point(meta)
    assert ref == {"x": 589307.6248, "y": 4112453.3223, "lat": 37.15, "lon": 117.3, "phase": -4.21967}
    assert products.hyp3_reference_point({"Baseline": "1"}) is None


# ------------------------------------------------------------------ LiCSAR frame folder
def test_licsar_frame_folder_equals_our_own_convention(tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME)
    st = products.open_stack(folder=lay["root"])
    assert st.product == products.PRODUCT_LICSAR and len(st.ifg) == len(lay["pairs"]) and len(st.coh) == len(st.ifg)
    assert st.grid.geotransform == lay["gt"] and (st.grid.ysize, st.grid.xsize) == lay["shape"]
    own_i, own_c, _ = write_own_convention(tmp_path / "own", lay)
    for k, (a, b) in enumerate(lay["pairs"]):
        assert st.names[k] == stem(a, b)
        np.testing.assert_array_equal(_read_all(st.ifg[k]), _own(own_i[k]))
        np.testing.assert_array_equal(_read_all(st.coh[k]), _own(own_c[k]))
        bp = lay["bperp_epochs"]
        assert st.bperp[k] == pytest.approx(bp[b] - bp[a])
    # geometry: incidence = acos(U), zeros = no data
    inc = st.geometry("incidence")
    got = inc.read(0, st.grid.ysize, 0, st.grid.xsize)
    u = lay["geometry"]["U"].astype(np.float64)
    want = np.degrees(np.arccos(u)).astype(np.float32)
    want[u == 0] = np.nan
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, equal_nan=True)
    assert np.isnan(got[0, :3]).all() and 30.9 < np.nanmin(got) < 31.1 and 45.9 < np.nanmax(got) < 46.1
    e = st.geometry("E").read(0, 2, 0, 5)
    assert np.isnan(e[0, :3]).all() and np.isfinite(e[1]).all()
    assert st.geometry("hgt").read(2, 1, 0, 3).tolist() == [[400.0, 410.0, 420.0]]
    # written on the stack grid for the steps that take a raster (LOS -> vertical, GACOS)
    out = inc.write(tmp_path / "incidence.tif", rows_per_block=5)
    ds = gdal.Open(out)
    assert ds.GetGeoTransform() == lay["gt"] and ds.GetRasterBand(1).GetUnitType() == "degrees"
    np.testing.assert_array_equal(ds.ReadAsArray(), got)


def test_licsar_metadata_in_geoc_and_files_given_as_a_list(tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME, flat_metadata=True)
    st = products.open_stack(folder=lay["root"])
    assert set(st.geometry_files) == {"E", "N", "U", "hgt"} and st.bperp is not None
    # the same files as a list (no folder): format, baselines and geometry found next to them
    st2 = products.open_stack(lay["unw"][::-1], lay["cc"])
    assert st2.product == products.PRODUCT_LICSAR and st2.bperp is not None
    assert st2.bperp[0] == pytest.approx(st.bperp[-1])
    assert st2.geometry("incidence").describe().startswith("U from")


def test_licsar_product_without_coherence_is_named(tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME, with_geometry=False)
    os.remove(lay["cc"][2])
    s = stem(*lay["pairs"][2])
    with pytest.raises(TimeSeriesError, match=r"LiCSAR product\(s\) without coherence.*%s.*list it in EXCLUDE" % s):
        products.open_stack(folder=lay["root"])
    # named in EXCLUDE: left out before it is checked
    logs = []
    st = products.open_stack(folder=lay["root"], exclude=[s], log=logs.append)
    assert len(st.ifg) == len(lay["pairs"]) - 1 and s not in st.names
    assert "left out (EXCLUDE): %s" % s in logs


def test_licsar_geometry_missing_or_not_covering(tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME, with_geometry=False)
    st = products.open_stack(folder=lay["root"])
    with pytest.raises(TimeSeriesError, match="ship no geometry for incidence"):
        st.geometry("incidence")
    # a U file of another (smaller) frame
    small = np.full((10, 10), 0.8, np.float32)
    _write(os.path.join(lay["root"], "metadata", FRAME + ".geo.U.tif"), small, lay["gt"], 4326)
    st = products.open_stack(folder=lay["root"])
    with pytest.raises(TimeSeriesError, match=r"the U geometry does not cover the stack: %s.geo.U.tif covers" % FRAME):
        st.geometry("incidence")


# ------------------------------------------------------------------ HyP3 folder of zips
@pytest.mark.parametrize("kind,zipped", [("gamma", True), ("burst", False), ("multiburst", True)])
def test_hyp3_products_with_own_extents_equal_our_own_convention_on_the_common_area(tmp_path, kind, zipped):
    lay = write_hyp3_folder(tmp_path / "hyp3", kind=kind, zipped=zipped)
    logs = []
    st = products.open_stack(folder=lay["root"], log=logs.append)
    assert st.product == products.PRODUCT_HYP3
    assert st.grid.geotransform == lay["common_gt"] and (st.grid.ysize, st.grid.xsize) == lay["shape"]
    assert len({p["shape"] for p in lay["products"]}) > 1  # the products really differ in extent
    assert all(not r.warp for r in st.ifg)  # on one lattice: read by offset
    assert any("common intersection" in s for s in logs)
    if zipped:
        assert all(r.path.startswith("/vsizip/") for r in st.ifg + st.coh)
    own_i, own_c, _ = write_own_convention(tmp_path / "own", lay)
    for k, (a, b) in enumerate(lay["pairs"]):
        np.testing.assert_array_equal(_read_all(st.ifg[k]), _own(own_i[k]))
        np.testing.assert_array_equal(_read_all(st.coh[k]), _own(own_c[k]))
        assert st.bperp[k] == pytest.approx(lay["products"][k]["bperp"], abs=1e-4)
        assert st.reference_points[k]["x"] == pytest.approx(lay["products"][k]["ref_xy"][0])
    # incidence = 90 deg - lv_theta (radians); E/N/U from theta and phi
    inc = st.geometry("incidence").read(0, st.grid.ysize, 0, st.grid.xsize)
    assert 29.9 < inc.min() and inc.max() < 45.1 and np.all(np.diff(inc[0]) > 0)
    e, n, u = (st.geometry(c).read(0, 1, 0, 1)[0, 0] for c in "ENU")
    assert e * e + n * n + u * u == pytest.approx(1.0, abs=1e-6)
    assert u == pytest.approx(math.cos(math.radians(inc[0, 0])), abs=1e-6)


def test_hyp3_union_extent_has_nan_outside_a_product(tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=True)
    st = products.open_stack(folder=lay["root"], extent=products.EXTENT_UNION)
    gts = [p["gt"] for p in lay["products"]]
    x0 = min(g[0] for g in gts)
    y0 = max(g[3] for g in gts)
    assert st.grid.geotransform[0] == x0 and st.grid.geotransform[3] == y0
    assert st.grid.xsize > lay["shape"][1] or st.grid.ysize > lay["shape"][0]
    for k, p in enumerate(lay["products"]):
        a = _read_all(st.ifg[k])
        c0 = int(round((p["gt"][0] - x0) / 80.0))
        r0 = int(round((y0 - p["gt"][3]) / 80.0))
        H, W = p["shape"]
        inside = np.zeros(a.shape, bool)
        inside[r0 : r0 + H, c0 : c0 + W] = True
        assert np.isnan(a[~inside]).all()
        assert np.isfinite(a[inside]).mean() > 0.9
    # the common area read from the union grid equals the intersection stack
    st_i = products.open_stack(folder=lay["root"])
    ci = int(round((st_i.grid.geotransform[0] - x0) / 80.0))
    ri = int(round((y0 - st_i.grid.geotransform[3]) / 80.0))
    ny, nx = lay["shape"]
    for k in range(len(st.ifg)):
        np.testing.assert_array_equal(st.ifg[k].read(ri, ny, ci, nx), _read_all(st_i.ifg[k]))


def test_hyp3_products_in_two_utm_zones_error_names_them_or_warp(tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=True, other_zone=(2, 4))
    name = lay["products"][2]["name"]
    with pytest.raises(TimeSeriesError, match=r"2 different CRS \(EPSG:32650 .*EPSG:32651 .*%s" % name):
        products.open_stack(folder=lay["root"])
    logs = []
    st = products.open_stack(folder=lay["root"], crs_mode=products.CRS_WARP, log=logs.append)
    assert any("warped (nearest neighbour) onto the grid of" in s for s in logs)
    assert st.ifg[2].warp and st.ifg[4].warp and not st.ifg[0].warp
    # the stack grid stays on the first product's lattice in its zone; warped products have data on it
    gt0 = lay["products"][0]["gt"]
    assert st.grid.projection == gdal.Open(st.ifg[0].path).GetProjection()
    assert ((st.grid.geotransform[0] - gt0[0]) / 80.0) % 1 == 0 and st.grid.geotransform[1] == 80.0
    assert np.isfinite(_read_all(st.ifg[2])).mean() > 0.5


def test_hyp3_zip_without_unwrapped_phase_and_product_without_coherence(tmp_path):
    lay = write_hyp3_folder(tmp_path / "a", zipped=True, drop={1: "unw_phase"}, with_geometry=False)
    name = lay["products"][1]["name"]
    with pytest.raises(TimeSeriesError, match=r"HyP3 product %s.zip holds no unwrapped phase" % name):
        products.open_stack(folder=lay["root"])
    st = products.open_stack(folder=lay["root"], exclude=[lay["products"][1]["name"] + ".zip"])
    assert len(st.ifg) == len(lay["pairs"]) - 1
    lay = write_hyp3_folder(tmp_path / "b", zipped=False, drop={3: "corr"}, with_geometry=False)
    with pytest.raises(TimeSeriesError, match=r"HyP3 product %s has no coherence" % lay["products"][3]["name"]):
        products.open_stack(folder=lay["root"])
    a, b = lay["pairs"][3]
    st = products.open_stack(folder=lay["root"], exclude=["%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))])
    assert len(st.ifg) == len(lay["pairs"]) - 1


def test_hyp3_geometry_not_covering_the_union_stack(tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=True)
    st = products.open_stack(folder=lay["root"], extent=products.EXTENT_UNION)
    with pytest.raises(TimeSeriesError, match="the lv_theta geometry does not cover the stack"):
        st.geometry("incidence")
    st = products.open_stack(folder=lay["root"])
    assert "lv_theta from" in st.geometry("incidence").describe()


def test_warp_onto_the_first_grid_matches_offset_reading_when_the_lattice_is_shared(tmp_path):
    # a product on the same lattice read by warp (forced) gives the same values as read by offset
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=False, with_geometry=False)
    st = products.open_stack(folder=lay["root"])
    for r in st.ifg[:3]:
        by_offset = _read_all(r)
        r.place(st.grid, warp=True)
        np.testing.assert_array_equal(_read_all(r), by_offset)


def test_off_lattice_products_are_refused_unless_warped(tmp_path):
    gt = (400000.0, 80.0, 0.0, 4100000.0, 0.0, -80.0)
    a = np.ones((6, 8), np.float32)
    p1 = _write(tmp_path / "x_20200103_20200115.tif", a, gt, 32650)
    p2 = _write(tmp_path / "x_20200115_20200127.tif", a * 2, (gt[0] + 40.0,) + gt[1:], 32650)
    with pytest.raises(
        TimeSeriesError,
        match=r"not on the pixel lattice of x_20200103_20200115.tif: "
        r"x_20200115_20200127.tif \(origin 0.5",
    ):
        products.open_stack([p1, p2])
    st = products.open_stack([p1, p2], crs_mode=products.CRS_WARP)
    assert st.ifg[1].warp and (st.grid.xsize, st.grid.ysize) == (7, 6)
    assert np.all(_read_all(st.ifg[1]) == 2)


def test_products_without_common_area(tmp_path):
    gt = (400000.0, 80.0, 0.0, 4100000.0, 0.0, -80.0)
    a = np.ones((4, 4), np.float32)
    p1 = _write(tmp_path / "x_20200103_20200115.tif", a, gt, 32650)
    p2 = _write(tmp_path / "x_20200115_20200127.tif", a, (gt[0] + 800.0,) + gt[1:], 32650)
    with pytest.raises(
        TimeSeriesError, match="no common area: x_20200103_20200115.tif and x_20200115_20200127.tif do not overlap"
    ):
        products.open_stack([p1, p2])
    st = products.open_stack([p1, p2], extent=products.EXTENT_UNION)
    assert (st.grid.xsize, st.grid.ysize) == (14, 4)


def test_folder_detection(tmp_path):
    write_licsar_frame(tmp_path / "lic", with_geometry=False)
    write_hyp3_folder(tmp_path / "hyp", with_geometry=False)
    assert products.detect_folder(tmp_path / "lic") == products.PRODUCT_LICSAR
    assert products.detect_folder(tmp_path / "hyp") == products.PRODUCT_HYP3
    with pytest.raises(TimeSeriesError, match="does not exist"):
        products.discover(tmp_path / "nothing")
    with pytest.raises(TimeSeriesError, match="either an input folder or interferogram / coherence files"):
        products.open_stack(coherence_paths=["x_20200103_20200115.tif"], folder=str(tmp_path / "lic"))
    # a HyP3 folder read as LiCSAR finds nothing and says what it expected
    with pytest.raises(TimeSeriesError, match="no LiCSAR interferograms"):
        products.open_stack(folder=str(tmp_path / "hyp"), product=products.PRODUCT_LICSAR)
    # zip listing in place
    z = [f for f in os.listdir(tmp_path / "hyp") if f.endswith(".zip")][0]
    with zipfile.ZipFile(tmp_path / "hyp" / z) as zf:
        assert any(n.endswith("_unw_phase.tif") for n in zf.namelist())


def test_generic_folder_pairs_interferograms_and_coherence_by_name(tmp_path):
    gt = (400000.0, 80.0, 0.0, 4100000.0, 0.0, -80.0)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for s in ("20200103_20200115", "20200115_20200127", "20200103_20200127"):
        _write(tmp_path / "g" / ("ifg_%s.tif" % s), a, gt, 32650)
        _write(tmp_path / "g" / ("coh_%s.tif" % s), np.full((3, 4), 200, np.uint8), gt, 32650, gdal.GDT_Byte)
    st = products.open_stack(folder=str(tmp_path / "g"))
    assert st.product == products.PRODUCT_GENERIC and len(st.ifg) == 3 and len(st.coh) == 3
    assert [r.name for r in st.ifg] == [
        "ifg_20200103_20200115.tif",
        "ifg_20200103_20200127.tif",
        "ifg_20200115_20200127.tif",
    ]
    np.testing.assert_array_equal(_read_all(st.ifg[0]), a)  # generic: the 0 is a value
    assert _read_all(st.coh[0])[0, 0] == np.float32(200) / np.float32(255)
    os.remove(tmp_path / "g" / "coh_20200115_20200127.tif")
    logs = []
    st = products.open_stack(folder=str(tmp_path / "g"), log=logs.append)
    assert st.coh is None and any("coherence found for only 2 of the 3" in s for s in logs)


def test_licsar_portal_layout_interferograms_folder(tmp_path):
    # the LiCSAR portal: <frame>/interferograms/YYYYMMDD_YYYYMMDD/ and <frame>/metadata/
    lay = write_licsar_frame(tmp_path / FRAME)
    os.rename(os.path.join(lay["root"], "GEOC"), os.path.join(lay["root"], "interferograms"))
    st = products.open_stack(folder=lay["root"])
    assert st.product == products.PRODUCT_LICSAR and len(st.ifg) == len(lay["pairs"])
    assert all("/interferograms/" in r.path for r in st.ifg) and st.bperp is not None
    assert set(st.geometry_files) == {"E", "N", "U", "hgt"}


def test_hyp3_files_given_as_a_list_find_their_txt_and_geometry(tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=False)
    unw = [p["files"]["unw_phase"] for p in lay["products"]]
    cor = [p["files"]["corr"] for p in lay["products"]]
    st = products.open_stack(unw, cor)
    assert st.product == products.PRODUCT_HYP3
    np.testing.assert_allclose(st.bperp, [p["bperp"] for p in lay["products"]], atol=1e-4)
    assert st.reference_points[0]["y"] == pytest.approx(lay["products"][0]["ref_xy"][1])
    assert len(st.geometry_files["lv_theta"]) == len(unw)
    assert st.grid.geotransform == lay["common_gt"]
