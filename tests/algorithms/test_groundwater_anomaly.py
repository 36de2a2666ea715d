"""subsidence:groundwateranomaly through processing.run."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from grace_inputs import MISSING, MONTHS, build_inputs, zero_fldas_month
from osgeo import gdal

from subsidence_toolkit.core.grace import gwsa, products
from subsidence_toolkit.core.io.rasters import RasterGrid, grid_from_origin, write_raster


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("gr_alg"))


def test_groundwater_anomaly_algorithm(run_alg, inputs, tmp_path):
    td = str(tmp_path / "td.tif")
    run_alg(
        "gracedownscaling", {"GRACE": inputs["grace"], "MODEL_FILES": inputs["sm"] + "\n" + inputs["swe"], "OUTPUT": td}
    )
    poly = tmp_path / "area.geojson"
    poly.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[110.3, 35.3], [111.5, 35.3], [111.5, 36.6], [110.3, 36.6], [110.3, 35.3]]
                            ],
                        },
                    }
                ],
            }
        )
    )
    out = str(tmp_path / "gwsa.tif")
    table = str(tmp_path / "gwsa.csv")
    res = run_alg(
        "groundwateranomaly",
        {
            "TWSA": td,
            "COMPONENT_FILES": ";".join([inputs["sm"], inputs["swe"], inputs["can"]]),
            "MODE": 0,
            "BASELINE_START": 2004.0,
            "BASELINE_END": 2009.999,
            "MASK": str(poly),
            "OUTPUT": out,
            "OUTPUT_TABLE": table,
        },
    )
    got = gdal.Open(out).ReadAsArray()
    # core on the same inputs
    tw = products.ProductReader(td)
    comps = [products.ProductReader(inputs[k]) for k in ("sm", "swe", "can")]
    grid = RasterGrid.of(gdal.Open(td))
    mask = gwsa.mask_from_wkt(["POLYGON((110.3 35.3,111.5 35.3,111.5 36.6,110.3 36.6,110.3 35.3))"], grid)
    exp = np.full_like(got, np.nan, dtype=float)
    _, tab = gwsa.groundwater_anomaly(
        tw, comps, mask=mask, write=lambda r0, b: exp.__setitem__((slice(None), slice(r0, r0 + b.shape[1])), b)
    )
    np.testing.assert_allclose(got, exp, atol=1e-3, equal_nan=True)
    assert np.isnan(got[:, ~mask]).all() and np.isfinite(got[0][mask]).all()
    assert mask.sum() == 12 * 13  # cell centres 110.35..111.45 x 35.35..36.55
    t = pd.read_csv(res["OUTPUT_TABLE"])
    assert {"twsa_mm", "SoilMoi10_40cm_tavg_mm", "SWE_inst_mm", "CanopInt_inst_mm", "gwsa_mm"} <= set(t.columns)
    np.testing.assert_allclose(t["gwsa_mm"], tab["gwsa_mm"], atol=1e-6)
    # change mode and a baseline outside the data
    res = run_alg(
        "groundwateranomaly",
        {"TWSA": td, "COMPONENT_FILES": inputs["sm"], "MODE": 1, "OUTPUT": str(tmp_path / "dgws.tif")},
    )
    d = gdal.Open(res["OUTPUT"]).ReadAsArray()
    assert (
        np.isnan(d[0]).all()
        and np.isnan(d[MONTHS.index(MISSING)]).all()
        and np.isnan(d[MONTHS.index(MISSING) + 1]).all()
    )
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="baseline 1990.000-1991.000 is outside the TWSA data"):
        run_alg(
            "groundwateranomaly",
            {
                "TWSA": td,
                "COMPONENT_FILES": inputs["sm"],
                "BASELINE_START": 1990,
                "BASELINE_END": 1991,
                "OUTPUT": str(tmp_path / "x.tif"),
            },
        )


def test_damaged_zero_month_fails_naming_file_and_month(run_alg, tmp_path):
    """A component month read as 0 between normal months (damaged FLDAS file) fails naming file and month, leaves
    no output; ACCEPT_ZERO_MONTHS accepts it."""
    import datetime as dt

    from qgis.core import QgsProcessingException

    d = tmp_path / "in"
    d.mkdir()
    inputs = build_inputs(d)
    name = zero_fldas_month(d, 2004, 3)
    twsa = write_raster(
        str(d / "twsa.tif"),
        grid_from_origin(110.0, 37.0, 0.1, 0.1, 20, 20),
        np.ones((len(MONTHS), 20, 20)),
        dates=[dt.date(y, m, 15) for y, m in MONTHS],
    )
    out = tmp_path / "gwsa.tif"
    params = {"TWSA": twsa, "COMPONENT_FILES": inputs["sm"] + ";" + inputs["swe"], "OUTPUT": str(out)}
    with pytest.raises(
        QgsProcessingException,
        match=r"%s\":SoilMoi10_40cm_tavg: month 2004-03 is 0 in all 400 "
        r"valid cells while 2004-02 and 2004-04 are not.*download it "
        r"again.*ACCEPT_ZERO_MONTHS" % name.replace(".", r"\."),
    ):
        run_alg("groundwateranomaly", params)
    assert sorted(os.listdir(tmp_path)) == ["in"]
    run_alg("groundwateranomaly", dict(params, ACCEPT_ZERO_MONTHS=True))
    assert gdal.Open(str(out)).RasterCount == len(MONTHS)
