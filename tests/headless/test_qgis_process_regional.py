"""subsidence:mosaicframes and projectlos through the real ``qgis_process.bin``."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from osgeo import gdal
from synthetic import write_stack

from subsidence_toolkit.demo.headless import QgisProcess, find_qgis_process

pytestmark = pytest.mark.skipif(find_qgis_process() is None, reason="qgis_process.bin not installed")

DATES = [dt.date(2020, m, 15) for m in range(1, 4)]


@pytest.fixture(scope="module")
def qp(tmp_path_factory):
    return QgisProcess(tmp_path_factory.mktemp("qp_regional"))


def test_help_and_mosaic_then_vertical(qp, tmp_path):
    out = qp.call(["help", "subsidence:mosaicframes"])
    assert out.returncode == 0
    for text in (
        "INPUTS",
        "REFERENCE_FRAME",
        "TARGET_CRS",
        "TARGET_EXTENT",
        "TARGET_RESOLUTION",
        "MEMORY_LIMIT_MB",
        "OUTPUT_OFFSETS",
        "median",
    ):
        assert text in out.stdout, text
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.normal(-2, 3, (3, 10, 30)), axis=0)
    frames = []
    for k, (c0, c1, off) in enumerate(((0, 18, 0.0), (12, 30, 6.5))):
        frames.append(
            write_stack(
                tmp_path / ("f%d.tif" % k),
                truth[:, :, c0:c1] + off,
                DATES,
                origin=(500000.0 + 30.0 * c0, 4000000.0),
                dtype=gdal.GDT_Float64,
            )
        )
    mosaic, offsets = str(tmp_path / "mosaic.tif"), str(tmp_path / "offsets.csv")
    res = qp.run(
        "subsidence:mosaicframes", {"INPUTS": frames, "REFERENCE_FRAME": 0, "OUTPUT": mosaic, "OUTPUT_OFFSETS": offsets}
    )
    assert res["results"]["OUTPUT"] == mosaic
    assert np.abs(gdal.Open(mosaic).ReadAsArray() - truth).max() < 1e-4
    df = pd.read_csv(offsets)
    assert np.allclose(df[df["frame"] == 1]["offset_mm"], -6.5, atol=1e-9)
    vertical = str(tmp_path / "vertical.tif")
    qp.run("subsidence:projectlos", {"INPUT": mosaic, "INCIDENCE_ANGLE": 60, "OUTPUT": vertical})
    assert np.allclose(gdal.Open(vertical).ReadAsArray(), 2 * gdal.Open(mosaic).ReadAsArray(), rtol=1e-6)
    far = write_stack(tmp_path / "far.tif", truth, DATES, origin=(600000.0, 4000000.0))
    bad = qp.run(
        "subsidence:mosaicframes", {"INPUTS": [frames[0], far], "OUTPUT": str(tmp_path / "x.tif")}, check=False
    )
    assert "do not overlap at all" in str(bad) and not (tmp_path / "x.tif").exists()
