"""subsidence:validatetimeseries comparing measurements with the vertical projection of a LOS raster."""

import numpy as np
from test_validate_time_series import UTM, _read_table, _write_points, wells  # noqa: F401 (fixture)


def test_vertical_projection_of_los(run_alg, wells, tmp_path):  # noqa: F811
    pts = _write_points(tmp_path / "wells.gpkg", UTM, wells["recs"])
    base = {
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
    }
    res = run_alg(
        "validatetimeseries",
        dict(
            base,
            PROJECT_TO_VERTICAL=True,
            INCIDENCE_ANGLE=60.0,
            OUTPUT=str(tmp_path / "o.gpkg"),
            OUTPUT_SUMMARY=str(tmp_path / "s.gpkg"),
        ),
    )
    t = _read_table(res["OUTPUT"])
    # LOS relative change -5 * band, cos(60 deg) = 0.5 -> vertical -10 * band
    np.testing.assert_allclose(t["predicted"], np.tile(-10.0 * np.arange(6), 3), atol=1e-4)
