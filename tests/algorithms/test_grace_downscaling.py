"""subsidence:gracedownscaling and subsidence:groundwateranomaly through processing.run."""
import datetime as dt
import json
import os

import numpy as np
import pandas as pd
import pytest
from osgeo import gdal

from subsidence_toolkit.core import downscaling, grace, gwsa, tsraster
from subsidence_toolkit.demo import grace_data as gd

CLAT = 34.125 + 0.25 * np.arange(24)
CLON = 0.125 + 0.25 * np.arange(1440)  # global 0..360 ring, CSR layout
MONTHS = [(y, m) for y in (2004, 2005) for m in range(1, 13)]
MISSING = (2004, 9)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("gr_alg")
    rng = np.random.default_rng(5)
    keep = [ym for ym in MONTHS if ym != MISSING]
    t = np.arange(len(keep))
    lat, lon = np.meshgrid(CLAT, CLON, indexing="ij")
    cm = (4 * np.sin(2 * np.pi * t / 12)[:, None, None] + 0.1 * (lat - 35)[None] + np.sin(np.deg2rad(lon))[None]
          + rng.normal(0, 0.3, (len(keep), 24, 1440))).astype(np.float32)
    g = gd.write_mascon(d / "CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc", CLAT, CLON,
                        [gd.grace_month_bounds(*ym) for ym in keep], cm)
    flat = 35.05 + 0.1 * np.arange(20)
    flon = 110.05 + 0.1 * np.arange(20)
    for i, (y, m) in enumerate(MONTHS):
        th = 0.2 + 0.04 * np.sin(2 * np.pi * i / 12) + rng.normal(0, 0.004, (20, 20))
        gd.write_fldas_month(d / ("FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (y, m)), y, m, flat, flon,
                             {"SoilMoi10_40cm_tavg": th, "SWE_inst": np.full((20, 20), 3.0 + i % 3)})
        gd.write_gldas_month(d / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (y, m)), y, m, 34.125 + 0.25 * np.arange(14),
                             108.125 + 0.25 * np.arange(20), {"CanopInt_inst": np.full((14, 20), 0.4 + 0.1 * (m % 4))})
    return dict(dir=d, grace='NETCDF:"%s":lwe_thickness' % g,
                sm='NETCDF:"%s":SoilMoi10_40cm_tavg' % (d / "FLDAS_NOAH01_C_GL_M.A*.nc"),
                swe='NETCDF:"%s":SWE_inst' % (d / "FLDAS_NOAH01_C_GL_M.A*.nc"),
                can='NETCDF:"%s":CanopInt_inst' % (d / "GLDAS_NOAH025_M.A*.nc4"))


def _core_downscale(inputs, method="bilinear"):
    g = grace.ProductReader(inputs["grace"], units="10")
    m = downscaling.ModelSum([grace.ProductReader(inputs["sm"]), grace.ProductReader(inputs["swe"])])
    out = np.full((len(g.months), 20, 20), np.nan)
    months, table = downscaling.weighted_downscaling(
        g, m, method=method, write=lambda r0, b: out.__setitem__((slice(None), slice(r0, r0 + b.shape[1])), b))
    return months, table, out


def test_downscaling_algorithm(run_alg, inputs, tmp_path):
    out = str(tmp_path / "td.tif")
    table = str(tmp_path / "td.csv")
    res = run_alg("gracedownscaling", {
        "GRACE": inputs["grace"], "GRACE_SCALE": 10, "MODEL_FILES": inputs["sm"] + ";" + inputs["swe"],
        "INTERPOLATION": 0, "OUTPUT": out, "OUTPUT_TABLE": table})
    assert res["OUTPUT"] == out
    ds = gdal.Open(out)
    assert ds.RasterCount == 24
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(24)] == [
        "%04d-%02d-15" % ym for ym in MONTHS]
    months, tab, exp = _core_downscale(inputs)
    got = ds.ReadAsArray()
    np.testing.assert_allclose(got, exp, atol=1e-4 * np.nanmax(np.abs(exp)), equal_nan=True)
    assert np.isnan(got[MONTHS.index(MISSING)]).all() and np.isfinite(got[0]).all()
    t = pd.read_csv(res["OUTPUT_TABLE"])
    assert len(t) == 24 and list(t["grace_missing"]).count(True) == 1
    np.testing.assert_allclose(t["downscaled_tws_mm"], tab["downscaled_tws_mm"], rtol=1e-6)


def test_downscaling_errors_leave_no_output(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException
    other = str(tmp_path / "late.tif")
    tsraster.write_raster(other, tsraster.grid_from_origin(110, 37, 0.1, 0.1, 20, 20), np.ones((3, 20, 20)),
                          dates=[dt.date(2015, m, 15) for m in (1, 2, 3)])
    out = str(tmp_path / "bad.tif")
    with pytest.raises(QgsProcessingException, match=r"do not overlap: GRACE 2004-01\.\.2005-12 .*model 2015-01\.\.2015-03"):
        run_alg("gracedownscaling", {"GRACE": inputs["grace"], "MODEL": [other], "OUTPUT": out})
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("bad", ".bad"))]
    with pytest.raises(QgsProcessingException, match="unknown units 'furlong'"):
        run_alg("gracedownscaling", {"GRACE": inputs["grace"], "MODEL_FILES": inputs["sm"], "MODEL_UNITS": "furlong",
                                     "OUTPUT": out})


def test_groundwater_anomaly_algorithm(run_alg, inputs, tmp_path):
    td = str(tmp_path / "td.tif")
    run_alg("gracedownscaling", {"GRACE": inputs["grace"], "MODEL_FILES": inputs["sm"] + "\n" + inputs["swe"],
                                 "OUTPUT": td})
    poly = tmp_path / "area.geojson"
    poly.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
            [110.3, 35.3], [111.5, 35.3], [111.5, 36.6], [110.3, 36.6], [110.3, 35.3]]]}}]}))
    out = str(tmp_path / "gwsa.tif")
    table = str(tmp_path / "gwsa.csv")
    res = run_alg("groundwateranomaly", {
        "TWSA": td, "COMPONENT_FILES": ";".join([inputs["sm"], inputs["swe"], inputs["can"]]),
        "MODE": 0, "BASELINE_START": 2004.0, "BASELINE_END": 2009.999, "MASK": str(poly),
        "OUTPUT": out, "OUTPUT_TABLE": table})
    got = gdal.Open(out).ReadAsArray()
    # core on the same inputs
    tw = grace.ProductReader(td)
    comps = [grace.ProductReader(inputs[k]) for k in ("sm", "swe", "can")]
    grid = tsraster.RasterGrid.of(gdal.Open(td))
    mask = gwsa.mask_from_wkt(["POLYGON((110.3 35.3,111.5 35.3,111.5 36.6,110.3 36.6,110.3 35.3))"], grid)
    exp = np.full_like(got, np.nan, dtype=float)
    _, tab = gwsa.groundwater_anomaly(tw, comps, mask=mask,
                                      write=lambda r0, b: exp.__setitem__((slice(None), slice(r0, r0 + b.shape[1])), b))
    np.testing.assert_allclose(got, exp, atol=1e-3, equal_nan=True)
    assert np.isnan(got[:, ~mask]).all() and np.isfinite(got[0][mask]).all()
    assert mask.sum() == 12 * 13  # cell centres 110.35..111.45 x 35.35..36.55
    t = pd.read_csv(res["OUTPUT_TABLE"])
    assert {"twsa_mm", "SoilMoi10_40cm_tavg_mm", "SWE_inst_mm", "CanopInt_inst_mm", "gwsa_mm"} <= set(t.columns)
    np.testing.assert_allclose(t["gwsa_mm"], tab["gwsa_mm"], atol=1e-6)
    # change mode and a baseline outside the data
    res = run_alg("groundwateranomaly", {"TWSA": td, "COMPONENT_FILES": inputs["sm"], "MODE": 1,
                                         "OUTPUT": str(tmp_path / "dgws.tif")})
    d = gdal.Open(res["OUTPUT"]).ReadAsArray()
    assert np.isnan(d[0]).all() and np.isnan(d[MONTHS.index(MISSING)]).all() and np.isnan(d[MONTHS.index(MISSING) + 1]).all()
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="baseline 1990.000-1991.000 is outside the TWSA data"):
        run_alg("groundwateranomaly", {"TWSA": td, "COMPONENT_FILES": inputs["sm"], "BASELINE_START": 1990,
                                       "BASELINE_END": 1991, "OUTPUT": str(tmp_path / "x.tif")})
