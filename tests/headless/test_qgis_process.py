"""The plugin through the real ``qgis_process`` (temporary HOME, QGIS_PLUGINPATH, plugins enable)."""

import os
import subprocess

import numpy as np
import pytest
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack

from subsidence_toolkit.core.timeseries import resample
from subsidence_toolkit.demo.headless import QgisProcess, find_qgis_process

pytestmark = pytest.mark.skipif(find_qgis_process() is None, reason="no working qgis_process (install QGIS)")


@pytest.fixture(scope="module")
def qp(tmp_path_factory):
    return QgisProcess(tmp_path_factory.mktemp("qp"))


def test_list_and_help(qp):
    out = qp.call(["list"])
    assert "Subsidence Toolkit" in out.stdout
    assert "subsidence:resampletimeseries" in out.stdout
    out = qp.call(["help", "subsidence:resampletimeseries"])
    assert out.returncode == 0
    for text in (
        "INPUT",
        "METHOD",
        "STEP",
        "START",
        "END",
        "OUTPUT",
        "cubic spline",
        "Each pixel uses only its valid dates",
        "Day of each month",
    ):
        assert text in out.stdout, text


def test_run_json(qp, tmp_path):
    dates = sentinel1_dates(n=20)
    values = smooth_stack(dates, ny=5, nx=6)
    src = write_stack(tmp_path / "ts.tif", values, dates=dates)
    out = str(tmp_path / "monthly.tif")
    res = qp.run("subsidence:resampletimeseries", {"INPUT": src, "METHOD": 2, "OUTPUT": out})
    assert res["results"]["OUTPUT"] == out
    ds = gdal.Open(out)
    targets = resample.target_dates(dates)  # 2019-11-15 .. 2020-07-15
    assert ds.RasterCount == len(targets) == 9
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(9)] == [t.isoformat() for t in targets]
    assert np.isfinite(ds.ReadAsArray()).any()
    # qgis_process on Debian links GSL, whose reference CBLAS would take numpy's matrix products: the run says
    # that they go through SciPy's BLAS instead (core/io/blas.py)
    # the libraries the loader maps for the executable (what ldd prints; ldd itself may not be installed)
    env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1")
    exe = qp.exe + ".bin" if os.path.exists(qp.exe + ".bin") else qp.exe  # qgis_process may be a shell wrapper
    ldd = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "libqgis_core" in ldd, ldd[:500]
    said = any("SciPy's BLAS" in line for line in res.get("log", {}).get("info", []))
    assert said == ("libgslcblas" in ldd), res.get("log")


def test_error_is_reported(qp, tmp_path):
    src = write_stack(tmp_path / "nodate.tif", np.ones((3, 2, 2)), descriptions=["x", "y", "z"])
    res = qp.run("subsidence:resampletimeseries", {"INPUT": src, "OUTPUT": str(tmp_path / "o.tif")}, check=False)
    assert res.get("returncode", 0) != 0 and "stderr" in res, res  # failed: no JSON result, message in stderr
    assert "band 1 has no date" in res["stderr"]
    assert not (tmp_path / "o.tif").exists()


def test_geodetector_with_only_the_factor_table(qp, tmp_path):
    """Only OUTPUT_FACTOR is mandatory: risk, Welch, ecological and interaction tables are optional."""
    from osgeo import ogr

    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, 90)
    y = 2.0 * a + rng.normal(0, 0.5, 90)

    table = str(tmp_path / "pts.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(table)
    lyr = ds.CreateLayer("pts", geom_type=ogr.wkbNone)
    lyr.CreateField(ogr.FieldDefn("y", ogr.OFTReal))
    lyr.CreateField(ogr.FieldDefn("a", ogr.OFTInteger))
    for v, k in zip(y, a):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("y", float(v))
        f.SetField("a", int(k))
        lyr.CreateFeature(f)
    ds = None
    out = str(tmp_path / "factor.csv")
    res = qp.run(
        "subsidence:geodetector", {"INPUT": table, "TARGET_FIELD": "y", "FACTOR_FIELDS": "a", "OUTPUT_FACTOR": out}
    )
    assert res["results"]["OUTPUT_FACTOR"] == out
    import csv

    rows = list(csv.DictReader(open(out)))
    assert rows[0]["factor"] == "a" and float(rows[0]["q"]) > 0.8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["factor.csv", "factor.csvt", "pts.gpkg"]
