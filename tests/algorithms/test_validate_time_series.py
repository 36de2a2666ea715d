import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from osgeo import ogr, osr
from scipy import stats
from synthetic import write_stack

UTM = 32649
ORIGIN = (500000.0, 4000000.0)
DATES = [dt.date(2020, m, 15) for m in range(1, 7)]


def _srs(epsg):
    s = osr.SpatialReference()
    s.ImportFromEPSG(epsg)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def _ct(a, b):
    return osr.CoordinateTransformation(_srs(a), _srs(b))


def _read_table(path):
    ds = ogr.Open(path)
    lyr = ds.GetLayer(0)
    names = [lyr.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(lyr.GetLayerDefn().GetFieldCount())]
    return pd.DataFrame([[f.GetField(n) for n in names] for f in lyr], columns=names)


def _write_points(path, epsg, recs):
    """Point GeoPackage (id, date as a Date field, value) in ``epsg``."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer("obs", _srs(epsg), ogr.wkbPoint)
    lyr.CreateField(ogr.FieldDefn("well", ogr.OFTString))
    lyr.CreateField(ogr.FieldDefn("day", ogr.OFTDate))
    lyr.CreateField(ogr.FieldDefn("level", ogr.OFTReal))
    for oid, d, v, x, y in recs:
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("well", oid)
        f.SetField("day", d.year, d.month, d.day, 0, 0, 0, 0)
        f.SetField("level", v)
        g = ogr.Geometry(ogr.wkbPoint)
        g.AddPoint_2D(x, y)
        f.SetGeometry(g)
        lyr.CreateFeature(f)
    ds = None
    return str(path)


@pytest.fixture
def wells(tmp_path):
    """GWSA on a geographic 0.01 deg grid (linear in row/col and time), wells given in UTM 49N."""
    lon0, lat0, d = 110.5, 36.5, 0.01
    r, c = np.mgrid[0:30, 0:40]
    gwsa = np.stack([-5.0 * b + 0.5 * r - 0.2 * c for b in range(len(DATES))])
    raster = write_stack(tmp_path / "gwsa.tif", gwsa, dates=DATES, epsg=4326, origin=(lon0, lat0), pixel=d)
    sites = [(5.5, 7.5), (12.5, 20.5), (25.5, 33.5)]  # (row, col) pixel centres
    ct = _ct(4326, UTM)
    rng = np.random.default_rng(0)
    recs, truth = [], []
    sy = 0.03
    for k, (rr, cc) in enumerate(sites):
        lon, lat = lon0 + cc * d, lat0 - rr * d
        x, y = ct.TransformPoint(lon, lat)[:2]
        for b, day in enumerate(DATES):
            obs_day = day + dt.timedelta(days=int(rng.integers(-5, 6)))
            dgws = -5.0 * b + rng.normal(0, 2.0)  # storage change (mm) vs first month
            depth = 10.0 - dgws / (sy * 1000)  # depth to water (m)
            recs.append(("W%d" % k, obs_day, depth, x, y))
            truth.append((k, b, dgws))
    return dict(raster=raster, recs=recs, truth=truth, gwsa=gwsa, sites=sites, sy=sy)


def test_wells_in_utm_against_geographic_gwsa(run_alg, wells, tmp_path):
    pts = _write_points(tmp_path / "wells.gpkg", UTM, wells["recs"])
    out, summ = str(tmp_path / "obs.gpkg"), str(tmp_path / "sum.gpkg")
    res = run_alg(
        "validatetimeseries",
        {
            "MEASUREMENTS": pts,
            "ID_FIELD": "well",
            "DATE_FIELD": "day",
            "VALUE_FIELD": "level",
            "VALUE_SCALE": wells["sy"] * 1000,
            "SIGN": 1,
            "TIME_SERIES": wells["raster"],
            "WINDOW": 0,
            "DATE_TOLERANCE": 6,
            "RELATIVE": True,
            "OUTPUT": out,
            "OUTPUT_SUMMARY": summ,
        },
    )
    t = _read_table(res["OUTPUT"])
    assert len(t) == 18
    # the pixel under each well: relative GWSA = -5 * band exactly
    np.testing.assert_allclose(t["predicted"], np.tile(-5.0 * np.arange(6), 3), atol=1e-5)
    exp_meas = np.array([g for _, _, g in wells["truth"]])
    exp_meas = exp_meas - np.repeat(exp_meas[::6], 6)
    np.testing.assert_allclose(t["measured"], exp_meas, atol=1e-9)
    assert t["reference"].tolist() == ([True] + [False] * 5) * 3
    assert (t["n_pixels"] == 1).all()
    s = _read_table(res["OUTPUT_SUMMARY"])
    allrow = s[s["id"] == "(all)"].iloc[0]
    use = ~t["reference"].to_numpy(bool)
    e = (t["predicted"] - t["measured"]).to_numpy()[use]
    r, p = stats.pearsonr(t["measured"].to_numpy()[use], t["predicted"].to_numpy()[use])
    assert allrow["n"] == 15
    np.testing.assert_allclose(
        [allrow["rmse"], allrow["bias"], allrow["pearson_r"], allrow["p_value"]],
        [math.sqrt((e**2).mean()), e.mean(), r, p],
        rtol=1e-6,
    )
    assert set(s["id"]) == {"(all)", "W0", "W1", "W2"}


def test_window_in_metres_on_geographic_raster(run_alg, wells, tmp_path):
    pts = _write_points(tmp_path / "wells.gpkg", UTM, wells["recs"][:6])
    res = run_alg(
        "validatetimeseries",
        {
            "MEASUREMENTS": pts,
            "ID_FIELD": "well",
            "DATE_FIELD": "day",
            "VALUE_FIELD": "level",
            "TIME_SERIES": wells["raster"],
            "WINDOW": 2500,
            "DATE_TOLERANCE": 6,
            "OUTPUT": str(tmp_path / "o.gpkg"),
            "OUTPUT_SUMMARY": str(tmp_path / "s.gpkg"),
        },
    )
    t = _read_table(res["OUTPUT"])
    # 2.5 km at ~36.4N: +-0.0113 deg lat (3 rows) and +-0.0140 deg lon (3 cols) around the centre pixel
    assert (t["n_pixels"] == 9).all()
    rr, cc = wells["sites"][0]
    np.testing.assert_allclose(t["predicted"], wells["gwsa"][:, int(rr), int(cc)], atol=1e-5)


def test_table_with_xy_fields_linear_dates(run_alg, tmp_path):
    # leveling: projected raster, table (CSV, no geometry) with lon/lat columns in EPSG:4326
    r, c = np.mgrid[0:20, 0:20]
    dates = [dt.date(2020, 3, 27), dt.date(2020, 4, 8), dt.date(2020, 4, 20)]
    data = np.stack([0.0 * r, -12.0 - 0.1 * c + 0 * r, -24.0 - 0.2 * c + 0 * r])
    raster = write_stack(tmp_path / "sbas.tif", data, dates=dates)
    x, y = ORIGIN[0] + 10.5 * 30, ORIGIN[1] - 4.5 * 30  # pixel (4, 10)
    lon, lat = _ct(UTM, 4326).TransformPoint(x, y)[:2]
    csv = tmp_path / "level.csv"
    csv.write_text(
        "pt,when,dz,lon,lat\nA1,2020-03-27,0.5,%.9f,%.9f\nA1,2020-04-14,-17,%.9f,%.9f\n" % (lon, lat, lon, lat)
    )
    res = run_alg(
        "validatetimeseries",
        {
            "MEASUREMENTS": str(csv),
            "ID_FIELD": "pt",
            "DATE_FIELD": "when",
            "VALUE_FIELD": "dz",
            "X_FIELD": "lon",
            "Y_FIELD": "lat",
            "MEASUREMENTS_CRS": "EPSG:4326",
            "TIME_SERIES": raster,
            "DATE_MATCHING": 1,
            "DATE_TOLERANCE": 0,
            "WINDOW": 200,
            "OUTPUT": str(tmp_path / "o.gpkg"),
            "OUTPUT_SUMMARY": str(tmp_path / "s.gpkg"),
        },
    )
    t = _read_table(res["OUTPUT"])
    # 200 m square = 7x7 pixels of 30 m (centres within +-100 m); mean over cols 7..13 = col 10
    assert t["n_pixels"].tolist() == [49, 49]
    np.testing.assert_allclose(t["predicted"], [0.0, -18.0 - 0.15 * 10], atol=1e-4)
    assert t["band_date"].tolist() == ["2020-03-27", "2020-04-08/2020-04-20"]
    np.testing.assert_allclose(t["error"], t["predicted"] - np.array([0.5, -17.0]), atol=1e-4)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"VALUE_FIELD": "missing"}, "field 'missing' \\(value\\) not found"),
        ({"DATE_TOLERANCE": 1}, "fall outside the dates of .*W0 on"),
        ({"X_FIELD": "level"}, "give both an X and a Y field"),
    ],
)
def test_errors(run_alg, wells, tmp_path, params, message):
    from qgis.core import QgsProcessingException

    pts = _write_points(tmp_path / "wells.gpkg", UTM, wells["recs"])
    base = {
        "MEASUREMENTS": pts,
        "ID_FIELD": "well",
        "DATE_FIELD": "day",
        "VALUE_FIELD": "level",
        "TIME_SERIES": wells["raster"],
        "DATE_TOLERANCE": 6,
        "OUTPUT": str(tmp_path / "o.gpkg"),
        "OUTPUT_SUMMARY": str(tmp_path / "s.gpkg"),
    }
    with pytest.raises(QgsProcessingException, match=message):
        run_alg("validatetimeseries", dict(base, **params))
    assert not (tmp_path / "o.gpkg").exists() and not (tmp_path / "s.gpkg").exists()
