"""subsidence:sbasinversion through the real qgis_process.bin with only INPUT_FOLDER (and the outputs): a LiCSAR
frame download and a folder of HyP3 zips, read as shipped; bad products named in the error."""

import numpy as np
import pytest
from osgeo import gdal
from product_layouts import FRAME, write_hyp3_folder, write_licsar_frame

from subsidence_toolkit.demo.headless import QgisProcess, find_qgis_process

pytestmark = pytest.mark.skipif(find_qgis_process() is None, reason="qgis_process.bin not installed")


@pytest.fixture(scope="module")
def qp(tmp_path_factory):
    return QgisProcess(tmp_path_factory.mktemp("qp"))


def outputs(tmp_path, tag):
    return {
        "OUTPUT_TIMESERIES": str(tmp_path / ("%s_ts.tif" % tag)),
        "OUTPUT_VELOCITY": str(tmp_path / ("%s_vel.tif" % tag)),
        "OUTPUT_QUALITY": str(tmp_path / ("%s_q.tif" % tag)),
        "OUTPUT_NETWORK": str(tmp_path / ("%s_net.csv" % tag)),
    }


def _velocity_matches_the_planted_bowl(path, shape):
    v = gdal.Open(path).ReadAsArray()
    assert v.shape == shape
    ny, nx = shape
    # planted: -40 mm/yr at the centre of the bowl, ~0 at the corners (relative to the reference pixel)
    centre = np.nanmean(v[ny // 2 - 1 : ny // 2 + 2, nx // 2 - 1 : nx // 2 + 2])
    corners = np.nanmean([v[1, 1], v[1, -2], v[-2, 1], v[-2, -2]])
    assert centre - corners == pytest.approx(
        -40.0 * (1 - np.exp(-((ny / 2) ** 2 + (nx / 2) ** 2) / (2 * (min(ny, nx) / 4) ** 2))), abs=4.0
    )


def test_licsar_frame_folder_only(qp, tmp_path):
    lay = write_licsar_frame(tmp_path / FRAME)
    res = qp.run("subsidence:sbasinversion", dict(INPUT_FOLDER=lay["root"], **outputs(tmp_path, "lic")))
    _velocity_matches_the_planted_bowl(res["results"]["OUTPUT_VELOCITY"], lay["shape"])
    ts = gdal.Open(res["results"]["OUTPUT_TIMESERIES"])
    assert ts.RasterCount == len(lay["dates"])


def test_folder_of_hyp3_zips_only(qp, tmp_path):
    lay = write_hyp3_folder(tmp_path / "hyp3", zipped=True)
    res = qp.run("subsidence:sbasinversion", dict(INPUT_FOLDER=lay["root"], **outputs(tmp_path, "h")))
    vel = res["results"]["OUTPUT_VELOCITY"]
    assert gdal.Open(vel).GetGeoTransform() == lay["common_gt"]
    _velocity_matches_the_planted_bowl(vel, lay["shape"])


def test_two_utm_zones_are_named(qp, tmp_path):
    lay = write_hyp3_folder(tmp_path / "zones", zipped=True, other_zone=(3,), with_geometry=False)
    res = qp.run("subsidence:sbasinversion", dict(INPUT_FOLDER=lay["root"], **outputs(tmp_path, "z")), check=False)
    text = str(res)
    assert "2 different CRS" in text and "EPSG:32651" in text and lay["products"][3]["name"] in text
    assert not list(tmp_path.glob("z_*"))
