import datetime as dt

import numpy as np
import pandas as pd
import pytest
from osgeo import ogr, osr
from synthetic import write_stack

from subsidence_toolkit.core.stats import sampling

UTM = 32649
ORIGIN = (500000.0, 4000000.0)
PIX = 30.0
NY, NX = 40, 50
DATES = [dt.date(2020, m, 15) for m in (1, 2, 3, 5)]  # April missing: a gap


def _srs(epsg):
    s = osr.SpatialReference()
    s.ImportFromEPSG(epsg)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def _to_lonlat(x, y):
    ct = osr.CoordinateTransformation(_srs(UTM), _srs(4326))
    out = np.array([ct.TransformPoint(float(a), float(b))[:2] for a, b in zip(x, y)])
    return out[:, 0], out[:, 1]


def _write_areas(path, polys_utm, names):
    """GeoPackage of polygons in EPSG:4326 (areas are in a different CRS than the rasters)."""
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(str(path))
    lyr = ds.CreateLayer("areas", _srs(4326), ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    ct = osr.CoordinateTransformation(_srs(UTM), _srs(4326))
    for (x0, y0, x1, y1), name in zip(polys_utm, names):
        ring = ogr.Geometry(ogr.wkbLinearRing)
        # densified edges so the reprojected polygon keeps the UTM rectangle's shape to < 1 m
        for xx, yy in (
            [(x, y0) for x in np.linspace(x0, x1, 20)]
            + [(x1, y) for y in np.linspace(y0, y1, 20)]
            + [(x, y1) for x in np.linspace(x1, x0, 20)]
            + [(x0, y) for y in np.linspace(y1, y0, 20)]
        ):
            lon, lat = ct.TransformPoint(float(xx), float(yy))[:2]
            ring.AddPoint_2D(lon, lat)
        ring.CloseRings()
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("name", name)
        f.SetGeometry(poly)
        lyr.CreateFeature(f)
    ds = None
    return str(path) + "|layername=areas"


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(5)
    vel = rng.uniform(-130, 60, (NY, NX))
    vel[rng.random(vel.shape) < 0.2] = np.nan
    vel_path = write_stack(tmp_path / "vel.tif", vel)
    # projected series on the velocity grid: band b = 10 * month_number + velocity
    months = np.array([d.month for d in DATES], float)
    ts = months[:, None, None] * 10.0 + np.nan_to_num(vel)[None]
    ts_path = write_stack(tmp_path / "ts_utm.tif", ts, dates=DATES)
    # geographic series: 0.0005 deg pixels covering the area; value = 1e4 * lon_index + lat_index + 100 * band
    lon0, lat1 = _to_lonlat([ORIGIN[0] - 200], [ORIGIN[1] + 200])
    lon1, lat0 = _to_lonlat([ORIGIN[0] + NX * PIX + 200], [ORIGIN[1] - NY * PIX - 200])
    dlon = 0.0005
    gx = int(np.ceil((lon1[0] - lon0[0]) / dlon))
    gy = int(np.ceil((lat1[0] - lat0[0]) / dlon))
    r, c = np.mgrid[0:gy, 0:gx]
    geo = np.stack([1e4 * c + r + 100.0 * b for b in range(len(DATES))])
    geo_path = write_stack(tmp_path / "ts_geo.tif", geo, dates=DATES, epsg=4326, origin=(lon0[0], lat1[0]), pixel=dlon)
    half = ORIGIN[0] + NX * PIX / 2
    areas = _write_areas(
        tmp_path / "areas.gpkg",
        [
            (ORIGIN[0], ORIGIN[1] - NY * PIX, half, ORIGIN[1]),
            (half, ORIGIN[1] - NY * PIX, ORIGIN[0] + NX * PIX, ORIGIN[1]),
        ],
        ["west", "east"],
    )
    return dict(
        vel=vel,
        vel_path=vel_path,
        ts_path=ts_path,
        geo_path=geo_path,
        geo=geo,
        geo_origin=(lon0[0], lat1[0]),
        dlon=dlon,
        areas=areas,
        months=months,
    )


def _read_points(path):
    ds = ogr.Open(path)
    lyr = ds.GetLayer(0)
    rows = []
    for f in lyr:
        g = f.GetGeometryRef()
        rows.append((f["id"], f["area"], f["class"], f["velocity"], f["row"], f["col"], g.GetX(), g.GetY()))
    srs = lyr.GetSpatialRef()
    return rows, srs


def _read_table(path):
    import pandas as pd

    ds = ogr.Open(path)
    lyr = ds.GetLayer(0)
    names = [lyr.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(lyr.GetLayerDefn().GetFieldCount())]
    return pd.DataFrame([[f.GetField(n) for n in names] for f in lyr], columns=names)


def test_sample_with_areas_and_two_crs(run_alg, inputs, tmp_path):
    pts_out, tab_out, rep_out = (str(tmp_path / n) for n in ("pts.gpkg", "tab.gpkg", "rep.gpkg"))
    res = run_alg(
        "sampledeformationclasses",
        {
            "VELOCITY": inputs["vel_path"],
            "POINTS_PER_CLASS": 15,
            "AREA": inputs["areas"],
            "AREA_FIELD": "name",
            "SEED": 4,
            "TIME_SERIES": [inputs["ts_path"], inputs["geo_path"]],
            "WINDOW": 0,
            "OUTPUT_POINTS": pts_out,
            "OUTPUT_TABLE": tab_out,
            "OUTPUT_REPORT": rep_out,
        },
    )
    rows, srs = _read_points(res["OUTPUT_POINTS"])
    assert srs.GetAuthorityCode(None) == str(UTM)
    vel = inputs["vel"]
    half_col = NX // 2
    ids, areas, classes, v, rr, cc, x, y = map(np.array, zip(*rows))
    assert sorted(ids.tolist()) == list(range(1, len(rows) + 1))
    assert np.isfinite(vel[rr, cc]).all()
    np.testing.assert_allclose(v, vel[rr, cc], rtol=1e-6)
    # areas: west polygon = columns < 25, east = columns >= 25 (pixel centres)
    assert ((areas == "west") == (cc < half_col)).all()
    names = sampling.DEFAULT_NAMES
    assert (np.array([names[k] for k in sampling.classify(vel[rr, cc], sampling.DEFAULT_BREAKS)]) == classes).all()
    rep = _read_table(res["OUTPUT_REPORT"])
    for area, cols in (("west", slice(0, half_col)), ("east", slice(half_col, NX))):
        cls = sampling.classify(vel[:, cols], sampling.DEFAULT_BREAKS)
        for k, name in enumerate(names):
            avail = int((cls == k).sum())
            r = rep[(rep["area"] == area) & (rep["class"] == name)].iloc[0]
            assert r["available"] == avail and r["selected"] == min(15, avail)
            assert ((areas == area) & (classes == name)).sum() == min(15, avail)

    tab = _read_table(res["OUTPUT_TABLE"])
    assert set(tab["layer"]) == {"ts_utm", "ts_geo"}
    # projected layer: mean = 10 * month + mean velocity of the class's points
    for (area, name), g in tab[tab["layer"] == "ts_utm"].groupby(["area", "class"]):
        sel = (areas == area) & (classes == name)
        exp = inputs["months"] * 10 + vel[rr[sel], cc[sel]].astype(np.float32).mean()
        np.testing.assert_allclose(g["mean"].to_numpy(float), exp, rtol=1e-5)
        assert g["n"].tolist() == [sel.sum()] * 4
        # temporal change 10 per month, none across the April gap; cumulative from January
        np.testing.assert_allclose(g["temporal_change"].to_numpy(float), [np.nan, 10, 10, np.nan], atol=1e-4)
        np.testing.assert_allclose(g["cumulative_change"].to_numpy(float), [0, 10, 20, 40], atol=1e-4)
    # geographic layer: points transformed with GDAL/osr here, independently of QGIS
    lon, lat = _to_lonlat(x, y)
    gc = np.floor((lon - inputs["geo_origin"][0]) / inputs["dlon"]).astype(int)
    gr = np.floor((inputs["geo_origin"][1] - lat) / inputs["dlon"]).astype(int)
    for (area, name), g in tab[tab["layer"] == "ts_geo"].groupby(["area", "class"]):
        sel = (areas == area) & (classes == name)
        exp = [inputs["geo"][b, gr[sel], gc[sel]].mean() for b in range(4)]
        np.testing.assert_allclose(g["mean"].to_numpy(float), exp, rtol=1e-6)


def test_same_seed_same_points(run_alg, inputs, tmp_path):
    def run(seed, name):
        res = run_alg(
            "sampledeformationclasses",
            {
                "VELOCITY": inputs["vel_path"],
                "POINTS_PER_CLASS": 10,
                "SEED": seed,
                "MIN_SPACING": 60,
                "OUTPUT_POINTS": str(tmp_path / name),
                "OUTPUT_TABLE": str(tmp_path / ("t" + name)),
            },
        )
        rows, _ = _read_points(res["OUTPUT_POINTS"])
        return sorted((r[1], r[2], r[4], r[5]) for r in rows)

    a, b, c = run(1, "a.gpkg"), run(1, "b.gpkg"), run(2, "c.gpkg")
    assert a == b and a != c
    assert {r[0] for r in a} == {"all"}


@pytest.mark.parametrize(
    "params,message",
    [
        ({"CLASS_BREAKS": "0,50,20"}, "strictly increasing"),
        ({"CLASS_NAMES": "a,b"}, "2 names given for 4 breaks"),
        ({"AREA_FIELD": "nope"}, "Area name field 'nope' not found"),
        ({"BASE_DATE": "2021-01-15"}, "base date 2021-01-15 is not a date of the series"),
        ({"WINDOW": -1}, "WINDOW"),
    ],
)
def test_errors(run_alg, inputs, tmp_path, params, message):
    from qgis.core import QgsProcessingException

    base = {
        "VELOCITY": inputs["vel_path"],
        "AREA": inputs["areas"],
        "TIME_SERIES": [inputs["ts_path"]],
        "OUTPUT_POINTS": str(tmp_path / "p.gpkg"),
        "OUTPUT_TABLE": str(tmp_path / "t.gpkg"),
    }
    with pytest.raises(QgsProcessingException, match=message):
        run_alg("sampledeformationclasses", dict(base, **params))
    assert not (tmp_path / "t.gpkg").exists()


def test_area_without_overlap(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException

    far = _write_areas(tmp_path / "far.gpkg", [(600000, 4100000, 601000, 4101000)], ["far away"])
    with pytest.raises(QgsProcessingException, match="area 'far away' does not overlap the raster"):
        run_alg(
            "sampledeformationclasses",
            {
                "VELOCITY": inputs["vel_path"],
                "AREA": far,
                "AREA_FIELD": "name",
                "OUTPUT_POINTS": str(tmp_path / "p.gpkg"),
            },
        )


def test_time_series_without_overlap(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException

    other = write_stack(
        tmp_path / "other.tif", np.ones((2, 5, 5)) * np.arange(5), dates=DATES[:2], origin=(700000.0, 4000000.0)
    )
    with pytest.raises(QgsProcessingException, match="other.tif: none of the .* sampled points has a valid pixel"):
        run_alg(
            "sampledeformationclasses",
            {"VELOCITY": inputs["vel_path"], "TIME_SERIES": [other], "OUTPUT_POINTS": str(tmp_path / "p.gpkg")},
        )


def test_help_on_every_parameter(qgis_app):
    from qgis.core import QgsApplication

    for name in ("sampledeformationclasses", "validatetimeseries"):
        alg = QgsApplication.processingRegistry().algorithmById("subsidence:" + name)
        assert alg is not None and alg.shortHelpString()
        for p in alg.parameterDefinitions():
            assert p.help(), (name, p.name())


def test_cancel_leaves_no_output(qgis_app, inputs, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    fb = QgsProcessingFeedback()
    fb.cancel()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run(
            "subsidence:sampledeformationclasses",
            {
                "VELOCITY": inputs["vel_path"],
                "TIME_SERIES": [inputs["ts_path"]],
                "OUTPUT_POINTS": str(tmp_path / "p.gpkg"),
                "OUTPUT_TABLE": str(tmp_path / "t.csv"),
            },
            feedback=fb,
            context=QgsProcessingContext(),
        )
    assert not (tmp_path / "p.gpkg").exists() and not (tmp_path / "t.csv").exists()


def test_signed_mode_and_csv_table(run_alg, inputs, tmp_path):
    import pandas as pd

    res = run_alg(
        "sampledeformationclasses",
        {
            "VELOCITY": inputs["vel_path"],
            "SIGNED": True,
            "POINTS_PER_CLASS": 5,
            "TIME_SERIES": [inputs["ts_path"]],
            "WINDOW": 90,
            "OUTPUT_POINTS": str(tmp_path / "p.gpkg"),
            "OUTPUT_TABLE": str(tmp_path / "t.csv"),
        },
    )
    rows, _ = _read_points(res["OUTPUT_POINTS"])
    vel = inputs["vel"]
    for _, _, cls, v, r, c, _, _ in rows:
        assert cls.startswith("subsidence ") == (v < 0)
    tab = pd.read_csv(res["OUTPUT_TABLE"])
    # velocities span -130..60: no 'uplift moderate' (50..100 exists) but no 'uplift severe'
    assert "uplift severe" not in set(tab["class"]) and "subsidence severe" in set(tab["class"])
    # 90 m window on the 30 m grid: 3x3 means of the projected series
    from subsidence_toolkit.core.stats import sampling as S

    g = tab[(tab["class"] == "subsidence severe")]
    sel = [(r, c) for _, _, cls, _, r, c, _, _ in rows if cls == "subsidence severe"]
    ts = inputs["months"][:, None, None] * 10.0 + np.nan_to_num(vel)[None]
    exp = np.mean(
        [
            [ts[b, max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].astype(np.float32).mean() for b in range(4)]
            for r, c in sel
        ],
        axis=0,
    )
    np.testing.assert_allclose(g["mean"].to_numpy(float), exp, rtol=1e-5)
    assert S.class_names(S.DEFAULT_BREAKS, signed=True)[3] == "subsidence severe"


def test_layer_names_parameter(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException

    tab_out = str(tmp_path / "tab.csv")
    res = run_alg(
        "sampledeformationclasses",
        {
            "VELOCITY": inputs["vel_path"],
            "POINTS_PER_CLASS": 5,
            "SEED": 1,
            "TIME_SERIES": [inputs["ts_path"], inputs["geo_path"]],
            "LAYER_NAMES": "deformation, gwsa",
            "OUTPUT_POINTS": str(tmp_path / "p.gpkg"),
            "OUTPUT_TABLE": tab_out,
        },
    )
    assert set(pd.read_csv(res["OUTPUT_TABLE"])["layer"]) == {"deformation", "gwsa"}
    with pytest.raises(QgsProcessingException, match="1 names for 2 rasters"):
        run_alg(
            "sampledeformationclasses",
            {
                "VELOCITY": inputs["vel_path"],
                "TIME_SERIES": [inputs["ts_path"], inputs["geo_path"]],
                "LAYER_NAMES": "deformation",
                "OUTPUT_POINTS": str(tmp_path / "q.gpkg"),
                "OUTPUT_TABLE": str(tmp_path / "t2.csv"),
            },
        )
