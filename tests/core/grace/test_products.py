"""Reading GRACE / GLDAS / FLDAS layouts: months, special months, gaps, units, windows, longitudes."""

import datetime as dt

import numpy as np
import pytest
from osgeo import gdal

from subsidence_toolkit.core.grace import products
from subsidence_toolkit.core.io.dates import month_index
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.demo import grace_data as gd

LAT = 30.125 + 0.25 * np.arange(8)  # ascending, as in CSR files
LON = 0.125 + 0.25 * np.arange(1440)  # 0..360


def mk(y, m):
    return month_index(dt.date(y, m, 1))


def csr_records():
    """2011-08 .. 2018-07 monthly with the CSR special month (Nov 2011 centred in Oct 2011),
    the GRACE/GRACE-FO gap 2017-07..2018-05 and an isolated missing month 2012-06."""
    bounds, labels = [], []
    y, m = 2011, 8
    while (y, m) <= (2018, 7):
        gap = (2017, 7) <= (y, m) <= (2018, 5) or (y, m) == (2012, 6)
        if (y, m) == (2011, 10):
            bounds.append((dt.datetime(2011, 10, 1), dt.datetime(2011, 10, 20)))
        elif (y, m) == (2011, 11):
            bounds.append((dt.datetime(2011, 10, 20), dt.datetime(2011, 11, 9)))  # centre 2011-10-30
        elif not gap:
            bounds.append(gd.grace_month_bounds(y, m))
        if not gap:
            labels.append(mk(y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return bounds, labels


def csr_values(nt):
    t = np.arange(nt)[:, None, None]
    return (t * 1.5 + (LAT[None, :, None] - 30) * 2.0 + np.cos(np.deg2rad(LON))[None, None, :] * 3.0).astype(np.float32)


@pytest.fixture(scope="module")
def csr(tmp_path_factory):
    d = tmp_path_factory.mktemp("csr")
    bounds, labels = csr_records()
    data = csr_values(len(bounds))
    path = gd.write_mascon(d / "CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc", LAT, LON, bounds, data)
    return path, labels, data


def test_csr_months_special_month_and_gaps(csr):
    path, labels, data = csr
    r = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)
    assert r.crs_assumed and r.factor == 10.0
    assert r.record_months.tolist() == labels  # Nov 2011 moved back from Oct, nothing doubled or dropped
    assert len(r.moves) == 1
    rec, frm, to = r.moves[0]
    assert (frm, to) == (mk(2011, 10), mk(2011, 11)) and rec.band == 4
    assert r.months[0] == mk(2011, 8) and r.months[-1] == mk(2018, 7)
    expected_missing = [mk(2012, 6)] + list(range(mk(2017, 7), mk(2018, 5) + 1))
    assert r.missing == expected_missing and len(r.missing) == 12
    text = "\n".join(r.report())
    assert "2011-11 instead of 2011-10" in text and "2017-07" in text and "2018-05" in text


def test_csr_values_north_up_in_mm(csr):
    path, labels, data = csr
    r = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)
    w = r.window((100.3, 30.6, 100.8, 31.1), margin=1)
    # north-up latitudes, longitudes ascending
    assert np.all(np.diff(w.lats) < 0) and np.all(np.diff(w.lons) > 0)
    # margin: at least one cell beyond the cells bracketing the box
    assert w.lons[0] <= 100.3 - 0.25 and w.lons[-1] >= 100.8 + 0.25
    assert w.lats[-1] <= 30.6 - 0.25 and w.lats[0] >= min(31.1 + 0.25, LAT[-1])
    ci = np.rint((w.lons - 0.125) / 0.25).astype(int)
    ri = np.rint((w.lats - 30.125) / 0.25).astype(int)
    for k, month in enumerate(labels):
        i = int(np.where(w.months == month)[0][0])
        np.testing.assert_allclose(w.data[i], data[k][np.ix_(ri, ci)].astype(np.float64) * 10.0, rtol=0, atol=1e-9)
    for month in r.missing:
        assert np.isnan(w.data[int(np.where(w.months == month)[0][0])]).all()
    # the special record (band 4) is November's data
    i = int(np.where(w.months == mk(2011, 11))[0][0])
    np.testing.assert_allclose(w.data[i], data[3][np.ix_(ri, ci)] * 10.0, atol=1e-9)


def test_west_hemisphere_and_antimeridian_windows(csr):
    path, labels, data = csr
    r = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)
    w = r.window((-120.3, 30.5, -119.6, 30.9), margin=1)
    assert w.lons.min() < -120.3 and w.lons.max() > -119.6 and w.lons.max() < 0
    ci = np.rint((np.mod(w.lons, 360) - 0.125) / 0.25).astype(int)
    ri = np.rint((w.lats - 30.125) / 0.25).astype(int)
    np.testing.assert_allclose(w.data[0], data[0][np.ix_(ri, ci)] * 10.0, atol=1e-9)
    # a box across the 0/360 seam of the file (-0.4..0.3) and across the antimeridian (179.6..180.4)
    for box in ((-0.4, 30.5, 0.3, 30.9), (179.6, 30.5, 180.4, 30.9)):
        w = r.window(box, margin=1)
        assert np.allclose(np.diff(w.lons), 0.25)
        assert w.lons[0] < box[0] and w.lons[-1] > box[2]
        ci = np.rint((np.mod(w.lons, 360) - 0.125) / 0.25).astype(int)
        ri = np.rint((w.lats - 30.125) / 0.25).astype(int)
        np.testing.assert_allclose(w.data[5], data[5][np.ix_(ri, ci)] * 10.0, atol=1e-9)
        assert np.isfinite(w.data[5]).all()


def test_jpl_fill_and_gain_factors(tmp_path):
    lat = -10.25 + 0.5 * np.arange(6)
    lon = 0.25 + 0.5 * np.arange(720)
    bounds = [gd.grace_month_bounds(2004, m) for m in (1, 2, 3)]
    data = np.full((3, 6, 720), 5.0)
    data[1] = 7.25
    data[:, 2, 10] = np.nan  # ocean / fill cell
    gain = np.full((6, 720), 1.2)
    gain[0, :] = np.nan
    path = gd.write_mascon(
        tmp_path / "GRCTellus.JPL.200204_202501.GLO.RL06.3M.MSCNv04CRI.nc",
        lat,
        lon,
        bounds,
        data,
        layout="JPL",
        scale_factor=gain,
        land_mask=np.ones((6, 720)),
    )
    ds = gdal.Open('NETCDF:"%s":scale_factor' % path)
    assert ds.GetRasterBand(1).GetScale() in (None, 1.0)
    r = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)
    assert r.record_months.tolist() == [mk(2004, 1), mk(2004, 2), mk(2004, 3)] and not r.missing
    w = r.window((4.6, -9.6, 5.6, -8.4), margin=1)
    assert np.isnan(w.data[:, w.lats.tolist().index(-9.25), w.lons.tolist().index(5.25)]).all()
    ok = np.isfinite(w.data[0])
    assert np.allclose(w.data[0][ok], 50.0) and np.allclose(w.data[1][ok], 72.5)
    g = products.read_gain('NETCDF:"%s":scale_factor' % path, w)
    assert g.shape == w.data.shape[1:]
    assert np.isnan(g[w.lats == -10.25]).all() and np.allclose(g[w.lats > -10.25], 1.2)


def test_gldas_monthly_file_list(tmp_path):
    lat = 34.125 + 0.25 * np.arange(5)
    lon = -120.875 + 0.25 * np.arange(6)  # -180..180 convention
    expect = {}
    for m in (1, 2, 4):  # 2020-03 missing
        sm = np.full((5, 6), 100.0 + m)
        sm[0, 0] = np.nan
        expect[m] = sm
        gd.write_gldas_month(
            tmp_path / ("GLDAS_NOAH025_M.A2020%02d.021.nc4" % m),
            2020,
            m,
            lat,
            lon,
            {"SoilMoi0_10cm_inst": sm, "SWE_inst": sm * 0 + 3.0},
        )
    r = products.ProductReader('NETCDF:"%s":SoilMoi0_10cm_inst' % (tmp_path / "GLDAS_NOAH025_M.A*.nc4"))
    assert r.factor == 1.0 and r.file_units == "kg m-2"
    assert r.record_months.tolist() == [mk(2020, 1), mk(2020, 2), mk(2020, 4)]
    assert r.missing == [mk(2020, 3)]
    rows = r.read_rows(0, r.ysize)
    assert rows.shape == (4, 5, 6)
    # GDAL returns rows north-up: the southernmost file row (with the fill) is the last row
    for i, m in enumerate((1, 2)):
        np.testing.assert_array_equal(rows[i], expect[m][::-1])
    assert np.isnan(rows[2]).all()
    w = r.window((-120.5, 34.4, -120.0, 34.8), margin=1)
    assert w.lons[0] < -120.5 and w.lons[-1] > -120.0


def test_fldas_xy_volumetric_and_month_from_name(tmp_path):
    lat = 35.05 + 0.1 * np.arange(4)
    lon = 110.05 + 0.1 * np.arange(5)
    fields = {name: np.full((4, 5), 0.25) for name, _ in gd.FLDAS_LAYERS}
    p = gd.write_fldas_month(tmp_path / "FLDAS_NOAH01_C_GL_M.A202003.001.nc", 2020, 3, lat, lon, fields)
    p2 = gd.write_fldas_month(
        tmp_path / "FLDAS_NOAH01_C_GL_M.A202004.001.nc", 2020, 4, lat, lon, {k: v * 2 for k, v in fields.items()}
    )
    for name, thick in gd.FLDAS_LAYERS:
        r = products.ProductReader(['NETCDF:"%s":%s' % (p, name), 'NETCDF:"%s":%s' % (p2, name)])
        assert r.factor == pytest.approx(thick * 1000.0)
        assert r.record_months.tolist() == [mk(2020, 3), mk(2020, 4)]
        rows = r.read_rows(0, 4)
        np.testing.assert_allclose(rows[0], 0.25 * thick * 1000.0, rtol=1e-6)
        np.testing.assert_allclose(rows[1], 0.5 * thick * 1000.0, rtol=1e-6)
    # explicit thickness overrides the name
    r = products.ProductReader('NETCDF:"%s":SoilMoi00_10cm_tavg' % p, units="m3 m-3:0.2")
    assert r.factor == pytest.approx(200.0)
    # a monthly file without a time variable: the month comes from the .AYYYYMM. in the name
    from scipy.io import netcdf_file

    q = tmp_path / "FLDAS_NOAH01_C_GL_M.A201907.001.nc"
    f = netcdf_file(str(q), "w")
    f.createDimension("Y", 4)
    f.createDimension("X", 5)
    for nm, vals, u in (("Y", lat, "degrees_north"), ("X", lon, "degrees_east")):
        v = f.createVariable(nm, "d", (nm,))
        v[:] = vals
        v.units = u
    v = f.createVariable("SWE_inst", "f", ("Y", "X"))
    v[:] = np.ones((4, 5), np.float32)
    v.units = "kg m-2"
    f.close()
    q2 = tmp_path / "FLDAS_NOAH01_C_GL_M.A201908.001.nc"
    import shutil

    shutil.copy(q, q2)
    r = products.ProductReader('NETCDF:"%s":SWE_inst' % (tmp_path / "FLDAS_NOAH01_C_GL_M.A2019*.nc"))
    assert r.record_months.tolist() == [mk(2019, 7), mk(2019, 8)]
    _classic_vs_multidim(r, [(0, 4), (1, 2, None, (1, 3))], used=False)  # 2-D monthly files stay classic


def test_scale_offset_attributes_applied(tmp_path):
    from scipy.io import netcdf_file

    p = tmp_path / "packed.nc"
    f = netcdf_file(str(p), "w")
    f.createDimension("time", 2)
    f.createDimension("lat", 2)
    f.createDimension("lon", 3)
    for nm, vals, u in (("lat", [10.5, 11.5], "degrees_north"), ("lon", [1.5, 2.5, 3.5], "degrees_east")):
        v = f.createVariable(nm, "d", (nm,))
        v[:] = vals
        v.units = u
    t = f.createVariable("time", "d", ("time",))
    t[:] = [14.5, 45.0]
    t.units = "days since 2010-01-01"
    v = f.createVariable("SWE_inst", "h", ("time", "lat", "lon"))
    v[:] = np.array([[[1, 2, 3], [4, 5, -9999]]] * 2, dtype=np.int16)
    v._FillValue = np.int16(-9999)
    v.scale_factor = np.float32(0.5)
    v.add_offset = np.float32(3.0)
    v.units = "kg m-2"
    f.close()
    r = products.ProductReader('NETCDF:"%s":SWE_inst' % p)
    rows = r.read_rows(0, 2)
    assert r.record_months.tolist() == [mk(2010, 1), mk(2010, 2)]
    np.testing.assert_array_equal(rows[0][0][:2], [4 * 0.5 + 3, 5 * 0.5 + 3])
    assert np.isnan(rows[0][0][2])
    np.testing.assert_array_equal(rows[0][1], [1 * 0.5 + 3, 2 * 0.5 + 3, 3 * 0.5 + 3])
    assert all(r._md.values())  # packed int16 read through the multidimensional API, as raw values


def test_units():
    assert products.units_to_mm("cm") == 10.0
    assert products.units_to_mm("kg m-2") == products.units_to_mm("kg/m^2") == products.units_to_mm("mm") == 1.0
    assert products.units_to_mm("m") == 1000.0
    assert products.units_to_mm("m^3 m-3", 0.3) == pytest.approx(300.0)
    assert products.parse_unit_spec("auto", "SoilMoi40_100cm_tavg", "m3 m-3") == pytest.approx(600.0)
    assert products.parse_unit_spec("2.5") == 2.5
    with pytest.raises(TimeSeriesError, match="unknown units 'furlongs'"):
        products.units_to_mm("furlongs", source="x.nc")
    with pytest.raises(TimeSeriesError, match="rate"):
        products.units_to_mm("kg m-2 s-1", source="Qs_tavg")
    with pytest.raises(TimeSeriesError, match="layer thickness"):
        products.units_to_mm("m3 m-3")
    with pytest.raises(TimeSeriesError, match="no units"):
        products.parse_unit_spec("auto", "x", "", source="f.nc")


def _rec(mid, start=None, end=None):
    return products.Record("f.nc", "lwe_thickness", 1, mid, start, end)


def test_assign_months_jpl_style_and_duplicates():
    # JPL: Dec 2011 centred in Jan 2012 -> moves back to the empty December
    recs = [
        _rec(dt.datetime(2011, 11, 15)),
        _rec(dt.datetime(2012, 1, 2), dt.datetime(2011, 12, 17), dt.datetime(2012, 1, 18)),
        _rec(dt.datetime(2012, 1, 25), dt.datetime(2012, 1, 18), dt.datetime(2012, 1, 31)),
        _rec(dt.datetime(2012, 2, 15)),
    ]
    moves = products.assign_months(recs)
    assert [r.month for r in recs] == [mk(2011, 11), mk(2011, 12), mk(2012, 1), mk(2012, 2)]
    assert moves[0][1:] == (mk(2012, 1), mk(2011, 12))
    # both neighbours taken -> error naming the month and both records
    recs = [
        _rec(dt.datetime(2011, 9, 15)),
        _rec(dt.datetime(2011, 10, 5)),
        _rec(dt.datetime(2011, 10, 28)),
        _rec(dt.datetime(2011, 11, 15)),
    ]
    with pytest.raises(TimeSeriesError, match="duplicate month 2011-10.*2011-10-05.*2011-10-28"):
        products.assign_months(recs, "f.nc")
    recs = [_rec(dt.datetime(2011, 10, d)) for d in (3, 13, 23)]
    with pytest.raises(TimeSeriesError, match="3 records fall in month 2011-10"):
        products.assign_months(recs, "f.nc")


def test_no_georeferencing_and_variable_choice(tmp_path):
    p = tmp_path / "plain.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(p), 3, 2, 2, gdal.GDT_Float32)
    ds.GetRasterBand(1).SetDescription("2020-01-15")
    ds.GetRasterBand(2).SetDescription("2020-02-15")
    ds = None
    with pytest.raises(TimeSeriesError, match="plain.tif: the grid has no usable georeferencing"):
        products.ProductReader(str(p))
    lat = 30.125 + 0.25 * np.arange(3)
    f = gd.write_gldas_month(
        tmp_path / "GLDAS_NOAH025_M.A202001.021.nc4",
        2020,
        1,
        lat,
        lat + 80,
        {"SWE_inst": np.ones((3, 3)), "CanopInt_inst": np.ones((3, 3))},
    )
    with pytest.raises(TimeSeriesError, match="choose a variable.*SWE_inst"):
        products.ProductReader(f)


def test_read_month_is_read_rows_one_month_at_a_time(csr):
    """The window tasks stream months: ``read_month`` gives the same values and counts as ``read_rows`` (south-up
    CSR file flipped, special month, gaps as NaN), also from two threads sharing the file's netCDF handle."""
    from concurrent.futures import ThreadPoolExecutor

    path, labels, data = csr
    r = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)
    cols = (1430, 7)
    c_rows, c_month = {}, {}
    rows = r.read_rows(2, 5, cols=cols, counts=c_rows)
    for i, k in enumerate(r.months):
        np.testing.assert_array_equal(r.read_month(2, 5, k, cols=cols, counts=c_month), rows[i])
    assert c_month == c_rows and len(c_rows) == len(labels)
    assert np.isnan(r.read_month(2, 5, mk(2012, 6), cols=cols)).all()  # a gap month
    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(lambda k: r.read_month(2, 5, k, cols=cols), list(r.months) * 3))
    np.testing.assert_array_equal(np.array(got), np.concatenate([rows] * 3))


def test_record_counts_valid_and_nonzero():
    rec = products.Record("f.nc", "v", 1, dt.datetime(2020, 1, 15))
    counts = {}
    products.add_record_counts(counts, "lab", rec, np.array([[0.0, np.nan, 2.0], [-0.0, 5.0, np.nan]]))
    products.add_record_counts(counts, "lab", rec, np.array([[1.0]]))
    assert counts[("lab", rec.month)][:2] == [5, 3]  # valid: 4 + 1; non-zero valid: 2 + 1 (-0.0 is zero)


def _classic_vs_multidim(r, windows, used=True):
    """Reads of ``r`` through GDAL's multidimensional API (where it maps: ``used``) equal the classic band reads."""
    fast = [r.read_rows(*w) for w in windows]
    assert r._md and all(bool(v) == used for v in r._md.values()), r._md
    for key in list(r._md):
        r._md[key] = False  # classic band reads from here on
    for w, a in zip(windows, fast):
        np.testing.assert_array_equal(a, r.read_rows(*w))


def test_netcdf_multidim_reads_equal_classic_reads(csr, tmp_path):
    path, _, _ = csr
    r = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)  # lat ascending: rows flipped
    _classic_vs_multidim(r, [(0, 8), (2, 3, None, (1437, 3)), (7, 1, r.months[3:9], (0, 5))])
    lat = 34.125 + 0.25 * np.arange(5)
    lon = -120.875 + 0.25 * np.arange(6)
    for m in (1, 2):  # one file per month (time of length 1)
        sm = np.arange(30, dtype=np.float32).reshape(5, 6) * m
        gd.write_gldas_month(tmp_path / ("GLDAS_NOAH025_M.A2020%02d.021.nc4" % m), 2020, m, lat, lon, {"SWE_inst": sm})
    r = products.ProductReader('NETCDF:"%s":SWE_inst' % (tmp_path / "GLDAS_NOAH025_M.A*.nc4"))
    _classic_vs_multidim(r, [(0, 5), (1, 3, None, (2, 3))], used=False)  # monthly files stay classic


def test_chunked_netcdf4_keeps_classic_reads(tmp_path):
    """A chunked NetCDF-4 variable is read through the classic bands, whose block cache keeps each decompressed
    chunk for the next windows (the multidimensional reads would decompress a whole-grid chunk per window)."""
    p = str(tmp_path / "chunked.nc")
    ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(p, [], ["FORMAT=NC4"])
    rg = ds.GetRootGroup()
    f8, text = gdal.ExtendedDataType.Create(gdal.GDT_Float64), gdal.ExtendedDataType.CreateString()
    dims = {}
    for name, vals, units in (
        ("time", np.array([14.5, 45.0, 73.5]), "days since 2010-01-01"),
        ("lat", 30.125 + 0.25 * np.arange(6), "degrees_north"),
        ("lon", 100.125 + 0.25 * np.arange(7), "degrees_east"),
    ):
        dims[name] = rg.CreateDimension(name, None, None, len(vals))
        v = rg.CreateMDArray(name, [dims[name]], f8)
        v.Write(vals)
        v.CreateAttribute("units", [], text).WriteString(units)
    data = np.arange(3 * 6 * 7, dtype=np.float32).reshape(3, 6, 7)
    v = rg.CreateMDArray(
        "tws",
        [dims["time"], dims["lat"], dims["lon"]],
        gdal.ExtendedDataType.Create(gdal.GDT_Float32),
        ["BLOCKSIZE=1,6,7", "COMPRESS=DEFLATE"],
    )
    v.Write(data)
    del v, rg, ds
    r = products.ProductReader('NETCDF:"%s":tws' % p, units="mm")
    rows = r.read_rows(1, 3, cols=(2, 4))
    assert list(r._md.values()) == [False]
    np.testing.assert_array_equal(rows, data[:, ::-1][:, 1:4, 2:6])  # north-up rows
