"""subsidence:gracedownscaling through processing.run."""
import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
from osgeo import gdal

from subsidence_toolkit.core import downscaling, grace, tsraster

from grace_inputs import MISSING, MONTHS, build_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("gr_alg"))


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


