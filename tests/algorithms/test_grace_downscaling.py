"""subsidence:gracedownscaling through processing.run."""

import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
from grace_inputs import MISSING, MONTHS, build_inputs, zero_fldas_month
from osgeo import gdal

from subsidence_toolkit.core.grace import downscaling, products
from subsidence_toolkit.core.io.rasters import grid_from_origin, write_raster


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("gr_alg"))


def _core_downscale(inputs, method="bilinear"):
    g = products.ProductReader(inputs["grace"], units="10")
    m = downscaling.ModelSum([products.ProductReader(inputs["sm"]), products.ProductReader(inputs["swe"])])
    out = np.full((len(g.months), 20, 20), np.nan)
    months, table = downscaling.weighted_downscaling(
        g, m, method=method, write=lambda r0, b: out.__setitem__((slice(None), slice(r0, r0 + b.shape[1])), b)
    )
    return months, table, out


def test_downscaling_algorithm(run_alg, inputs, tmp_path):
    out = str(tmp_path / "td.tif")
    table = str(tmp_path / "td.csv")
    res = run_alg(
        "gracedownscaling",
        {
            "GRACE": inputs["grace"],
            "GRACE_SCALE": 10,
            "MODEL_FILES": inputs["sm"] + ";" + inputs["swe"],
            "INTERPOLATION": 0,
            "OUTPUT": out,
            "OUTPUT_TABLE": table,
        },
    )
    assert res["OUTPUT"] == out
    ds = gdal.Open(out)
    assert ds.RasterCount == 24
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(24)] == ["%04d-%02d-15" % ym for ym in MONTHS]
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
    write_raster(
        other,
        grid_from_origin(110, 37, 0.1, 0.1, 20, 20),
        np.ones((3, 20, 20)),
        dates=[dt.date(2015, m, 15) for m in (1, 2, 3)],
    )
    out = str(tmp_path / "bad.tif")
    with pytest.raises(
        QgsProcessingException, match=r"do not overlap: GRACE 2004-01\.\.2005-12 .*model 2015-01\.\.2015-03"
    ):
        run_alg("gracedownscaling", {"GRACE": inputs["grace"], "MODEL": [other], "OUTPUT": out})
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("bad", ".bad"))]
    with pytest.raises(QgsProcessingException, match="unknown units 'furlong'"):
        run_alg(
            "gracedownscaling",
            {"GRACE": inputs["grace"], "MODEL_FILES": inputs["sm"], "MODEL_UNITS": "furlong", "OUTPUT": out},
        )


def test_damaged_zero_month_fails_naming_file_and_month(run_alg, tmp_path):
    """A monthly FLDAS file whose soil moisture reads as 0 between normal months (a damaged download) stops the
    run with a one-line message naming file, variable and month, and leaves no output; ACCEPT_ZERO_MONTHS runs."""
    from qgis.core import QgsProcessingException

    d = tmp_path / "in"
    d.mkdir()
    inputs = build_inputs(d)
    name = zero_fldas_month(d, 2005, 6)
    out = tmp_path / "td.tif"
    params = {
        "GRACE": inputs["grace"],
        "GRACE_SCALE": 10,
        "MODEL_FILES": inputs["sm"] + ";" + inputs["swe"],
        "OUTPUT": str(out),
    }
    with pytest.raises(QgsProcessingException) as err:
        run_alg("gracedownscaling", params)
    msg = str(err.value)
    assert "\n" not in msg and name in msg and "SoilMoi10_40cm_tavg" in msg and "SWE_inst" not in msg
    assert "month 2005-06 is 0 in all 400 valid cells while 2005-05 and 2005-07 are not" in msg
    assert "download it again" in msg and "ACCEPT_ZERO_MONTHS" in msg
    assert sorted(os.listdir(tmp_path)) == ["in"]
    res = run_alg("gracedownscaling", dict(params, ACCEPT_ZERO_MONTHS=True))
    assert res["OUTPUT"] == str(out) and gdal.Open(str(out)).RasterCount == 24


def test_jpl_layout_with_gain_factors(run_alg, inputs, tmp_path):
    """JPL layout (0.5 deg, fill -99999, scale_factor variable) read through the file + variable parameters."""
    from subsidence_toolkit.demo import grace_data as gd

    lat = 33.25 + 0.5 * np.arange(10)
    lon = 0.25 + 0.5 * np.arange(720)
    keep = [ym for ym in MONTHS if ym != MISSING]
    t = np.arange(len(keep))
    data = (
        3 * np.sin(2 * np.pi * t / 12)[:, None, None] + 0.2 * (lat[None, :, None] - 35) + 0.01 * lon[None, None, :]
    ) * np.ones((1, 10, 720))
    gain = 1.0 + 0.1 * (lat[:, None] - 35) * np.ones((1, 720))
    path = gd.write_mascon(
        tmp_path / "GRCTellus.JPL.200204_202501.GLO.RL06.3M.MSCNv04CRI.nc",
        lat,
        lon,
        [gd.grace_month_bounds(*ym) for ym in keep],
        data,
        layout="JPL",
        scale_factor=gain,
    )
    out = str(tmp_path / "jpl.tif")
    run_alg(
        "gracedownscaling",
        {
            "GRACE": path,
            "GRACE_VARIABLE": "lwe_thickness",
            "SCALE_FACTOR": path,
            "MODEL_FILES": inputs["sm"],
            "OUTPUT": out,
        },
    )
    got = gdal.Open(out).ReadAsArray()
    g = products.ProductReader('NETCDF:"%s":lwe_thickness' % path)
    m = downscaling.ModelSum([products.ProductReader(inputs["sm"])])
    exp = np.full_like(got, np.nan, dtype=float)
    downscaling.weighted_downscaling(
        g,
        m,
        gain=lambda st: gain[
            np.ix_(np.rint((st.lats - 33.25) / 0.5).astype(int), np.rint((st.lons - 0.25) / 0.5).astype(int))
        ],
        write=lambda r0, b, c0=0: exp.__setitem__((slice(None), slice(r0, r0 + b.shape[1])), b),
    )
    np.testing.assert_allclose(got, exp, atol=1e-3, equal_nan=True)
    no_gain = str(tmp_path / "jpl_nogain.tif")
    run_alg("gracedownscaling", {"GRACE": path, "MODEL_FILES": inputs["sm"], "OUTPUT": no_gain})
    assert np.nanmax(np.abs(gdal.Open(no_gain).ReadAsArray() - got)) > 0.5


def test_cancel_leaves_no_output(run_alg, inputs, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    fb = QgsProcessingFeedback()
    fb.cancel()
    out = str(tmp_path / "cancelled.tif")
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run_alg(
            "gracedownscaling",
            {"GRACE": inputs["grace"], "MODEL_FILES": inputs["sm"], "OUTPUT": out, "MEMORY_LIMIT_MB": 0.05},
            feedback=fb,
        )
    assert not [f for f in os.listdir(tmp_path) if "cancelled" in f]
