"""subsidence:maskbyquality on a planted quality raster: each threshold removes exactly the pixels planted to
fail it."""

import numpy as np
import pytest
from osgeo import gdal, ogr
from synthetic import write_stack

BANDS = ["temporal_coherence", "n_ifg_used", "residual_rms_mm", "velocity_std_mm_yr", "n_gaps", "n_loop_errors"]


def planted_quality(path):
    q = np.empty((6, 10, 12), np.float32)
    q[0], q[1], q[2], q[3], q[4], q[5] = 0.95, 40, 0.8, 3.0, 0, 0
    q[0, 1, 1] = 0.5  # low temporal coherence
    q[2, 2, 2] = 3.5  # residual RMS
    q[5, 3, 3:6] = 9  # loop errors (a patch)
    q[3, 4, 4] = 150  # velocity std
    q[4, 5, 5] = 12  # gaps
    q[0, 6, 6] = 0.2  # two failures at once
    q[5, 6, 6] = 7
    q[5, 7, 7] = np.nan  # not evaluated: passes
    q[:, 9, 11] = np.nan  # no data
    write_stack(path, q, descriptions=BANDS)
    return q


@pytest.mark.parametrize("memory_mb", [256, 0.002])  # one window; windows of 10 rows x 1 column
def test_thresholds_remove_the_planted_pixels(run_alg, tmp_path, memory_mb):
    planted_quality(tmp_path / "q.tif")
    vel = np.arange(120, dtype=np.float32).reshape(1, 10, 12)
    ts = np.stack([vel[0] * 0, vel[0], 2 * vel[0]])
    write_stack(tmp_path / "v.tif", vel, descriptions=["velocity_mm_per_year"])
    write_stack(tmp_path / "ts.tif", ts, descriptions=["2020-01-01", "2020-01-13", "2020-01-25"])
    res = run_alg(
        "maskbyquality",
        dict(
            QUALITY=str(tmp_path / "q.tif"),
            VELOCITY=str(tmp_path / "v.tif"),
            TIMESERIES=str(tmp_path / "ts.tif"),
            OUTPUT_VELOCITY=str(tmp_path / "mv.tif"),
            OUTPUT_TIMESERIES=str(tmp_path / "mts.tif"),
            OUTPUT_MASK=str(tmp_path / "m.tif"),
            OUTPUT_TABLE=str(tmp_path / "t.gpkg"),
            MEMORY_LIMIT_MB=memory_mb,
        ),
    )
    m = gdal.Open(res["OUTPUT_MASK"]).ReadAsArray()
    expect = np.ones((10, 12))
    for rc in [(1, 1), (2, 2), (3, 3), (3, 4), (3, 5), (4, 4), (5, 5), (6, 6)]:
        expect[rc] = 0
    expect[9, 11] = np.nan
    assert np.array_equal(m, expect, equal_nan=True)
    mv = gdal.Open(res["OUTPUT_VELOCITY"]).ReadAsArray()
    assert np.array_equal(np.isnan(mv), expect != 1) and np.all(mv[expect == 1] == vel[0][expect == 1])
    mts_ds = gdal.Open(res["OUTPUT_TIMESERIES"])
    assert mts_ds.GetRasterBand(2).GetDescription() == "2020-01-13"
    mts = mts_ds.ReadAsArray()
    assert np.all(np.isnan(mts[:, expect != 1])) and np.all(mts[2][expect == 1] == ts[2][expect == 1])
    tds = ogr.Open(res["OUTPUT_TABLE"])
    lyr = tds.GetLayer(0)
    rows = {f.GetField("threshold"): (f.GetField("pixels"), f.GetField("pixels_removed_only_by_it")) for f in lyr}
    assert rows["MIN_TEMPORAL_COHERENCE"] == (2, 1)
    assert rows["MAX_RESIDUAL_RMS"] == (1, 1)
    assert rows["MAX_LOOP_ERRORS"] == (4, 3)
    assert rows["MAX_VELOCITY_STD"] == (1, 1)
    assert rows["MAX_GAPS"] == (1, 1)
    assert "MIN_INTERFEROGRAMS" not in rows  # off by default
    assert rows["kept"][0] == 120 - 8 - 1 and rows["no data"][0] == 1
