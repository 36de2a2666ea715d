import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic import write_stack

from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.stats import validation as V

GT = (500000.0, 30.0, 0.0, 4000000.0, 0.0, -30.0)
DATES = [dt.date(2020, 1, 1), dt.date(2020, 2, 1), dt.date(2020, 3, 1), dt.date(2020, 4, 1)]


def cx(c):
    return GT[0] + (c + 0.5) * 30


def cy(r):
    return GT[3] - (r + 0.5) * 30


@pytest.fixture
def raster(tmp_path):
    """value = 100 * band + 10 * row + col (mm), 4 monthly bands."""
    r, c = np.mgrid[0:12, 0:15]
    data = np.stack([100.0 * b + 10.0 * r + c for b in range(4)])
    return write_stack(tmp_path / "ts.tif", data, dates=DATES), data


def test_match_dates_nearest_and_tolerance():
    obs = [dt.date(2020, 1, 1), dt.date(2020, 1, 16), dt.date(2020, 1, 17), dt.date(2020, 4, 11), dt.date(2019, 12, 27)]
    i0, i1, w = V.match_dates(obs, DATES, tolerance_days=16)
    # Jan 16 is 15 days from Jan 1 and 16 days from Feb 1 -> Jan 1; Jan 17 is 16/15 -> Feb 1
    assert i0.tolist() == [0, 0, 1, 3, 0] and (i0 == i1).all() and (w == 0).all()
    with pytest.raises(TimeSeriesError, match=r"1 measurement\(s\) fall outside .* W7 on 2020-04-18"):
        V.match_dates(obs[:4] + [dt.date(2020, 4, 18)], DATES, 16, ids=["a", "b", "c", "d", "W7"])


def test_match_dates_linear_weights():
    obs = [dt.date(2020, 1, 1), dt.date(2020, 1, 11), dt.date(2020, 2, 1), dt.date(2020, 4, 5), dt.date(2019, 12, 30)]
    i0, i1, w = V.match_dates(obs, DATES, tolerance_days=5, method="linear")
    assert i0.tolist() == [0, 0, 1, 3, 0] and i1.tolist() == [0, 1, 1, 3, 0]
    np.testing.assert_allclose(w, [0, 10 / 31, 0, 0, 0])
    with pytest.raises(TimeSeriesError, match="x on 2020-05-01"):
        V.match_dates([dt.date(2020, 5, 1)], DATES, 5, "linear", ids=["x"])
    with pytest.raises(ValueError, match="method"):
        V.match_dates(obs, DATES, 5, "cubic")
    with pytest.raises(ValueError, match="tolerance"):
        V.match_dates(obs, DATES, -1)


def test_predicted_values_exact_with_window_and_linear_time(raster):
    path, data = raster
    obs = pd.DataFrame(
        {
            "id": ["P1", "P1", "P2"],
            "date": ["2020-01-01", "2020-01-16", dt.date(2020, 3, 1)],
            "value": [0.0, 1.0, 2.0],
            "x": [cx(3), cx(3), cx(10) + 5],
            "y": [cy(2), cy(2), cy(7) - 7],
        }
    )
    table, _ = V.validate_time_series(path, obs, window=90.0, method="linear", tolerance_days=0)
    # 3x3 mean of a linear field = centre; Jan 16 = 15/31 of the way to Feb 1 (+100)
    np.testing.assert_allclose(table["predicted"], [23.0, 23.0 + 100 * 15 / 31, 200 + 70 + 10])
    assert table["n_pixels"].tolist() == [9, 9, 9]
    assert table["band_date"].tolist() == ["2020-01-01", "2020-01-01/2020-02-01", "2020-03-01"]
    np.testing.assert_allclose(table["error"], table["predicted"] - table["measured"])


def test_value_scale_sign_relative_and_summary(raster):
    path, data = raster
    sy = 0.03
    rows, cols = [1, 4, 8, 10], [2, 6, 9, 13]
    recs = []
    rng = np.random.default_rng(3)
    for k, (r, c) in enumerate(zip(rows, cols)):
        for b, d in enumerate(DATES):
            # depth to water (m): storage change = -d(depth) * Sy * 1000 mm = raster change + noise
            truth = data[b, r, c] - data[0, r, c]
            depth = 5.0 - (truth + rng.normal(0, 3)) / (sy * 1000)
            recs.append(("W%d" % k, d, depth, cx(c), cy(r)))
    obs = pd.DataFrame(recs, columns=["id", "date", "value", "x", "y"])
    table, summary = V.validate_time_series(path, obs, window=0, value_scale=sy * 1000, sign=-1, relative=True)
    # reference = first date of each well; both series relative to it
    assert table["reference"].tolist() == [True, False, False, False] * 4
    ref = table[table["reference"]]
    assert (ref["measured"] == 0).all() and (ref["predicted"] == 0).all()
    np.testing.assert_allclose(table["predicted"], np.tile([0.0, 100, 200, 300], 4))
    meas = -obs["value"].to_numpy() * 30.0
    meas = meas - np.repeat(meas[::4], 4)
    np.testing.assert_allclose(table["measured"], meas)
    # summary against an independent computation on the non-reference rows
    use = ~table["reference"].to_numpy()
    e = (table["predicted"] - table["measured"]).to_numpy()[use]
    m, p = table["measured"].to_numpy()[use], table["predicted"].to_numpy()[use]
    r = np.corrcoef(m, p)[0, 1]
    tstat = r * math.sqrt((e.size - 2) / (1 - r * r))
    pval = 2 * stats.t.sf(abs(tstat), e.size - 2)
    s = summary.set_index("id").loc["(all)"]
    assert s["n"] == 12
    np.testing.assert_allclose(
        [
            s["max_abs_error"],
            s["min_abs_error"],
            s["median_abs_error"],
            s["mean_abs_error"],
            s["rmse"],
            s["bias"],
            s["pearson_r"],
            s["p_value"],
        ],
        [
            np.abs(e).max(),
            np.abs(e).min(),
            np.median(np.abs(e)),
            np.abs(e).mean(),
            math.sqrt((e**2).mean()),
            e.mean(),
            r,
            pval,
        ],
        rtol=1e-9,
    )
    assert list(summary["id"]) == ["(all)", "W0", "W1", "W2", "W3"]
    assert (summary["n"].iloc[1:] == 3).all()
    # head instead of depth: the sign flips the measured change
    t2, _ = V.validate_time_series(path, obs, window=0, value_scale=30, sign=1, relative=True)
    np.testing.assert_allclose(t2["measured"], -table["measured"])


def test_summary_small_n_and_constant():
    s = V.error_summary([1.0, 2.0], [1.5, 1.0])
    assert s["n"] == 2 and s["max_abs_error"] == 1.0 and s["min_abs_error"] == 0.5 and math.isnan(s["pearson_r"])
    s = V.error_summary([np.nan, 1.0, 2.0, 3.0], [0.0, 5.0, 5.0, 5.0])
    assert s["n"] == 3 and math.isnan(s["pearson_r"]) and s["bias"] == pytest.approx(3.0)
    assert V.error_summary([], [])["n"] == 0


def test_errors(raster):
    path, _ = raster
    good = pd.DataFrame({"id": ["a"], "date": ["2020-02-01"], "value": [1.0], "x": [cx(1)], "y": [cy(1)]})
    with pytest.raises(ValueError, match="missing field.*date"):
        V.validate_time_series(path, good.drop(columns=["date"]))
    bad = good.assign(date=["not a date"])
    with pytest.raises(ValueError, match="row 1 \\(id a\\) has no valid date"):
        V.validate_time_series(path, bad)
    with pytest.raises(ValueError, match="field 'value' holds a non-numeric"):
        V.validate_time_series(path, good.assign(value=["abc"]))
    with pytest.raises(TimeSeriesError, match="a on 2021-06-01"):
        V.validate_time_series(path, good.assign(date=["2021-06-01"]))
    with pytest.raises(TimeSeriesError, match="no measurement lies on a valid pixel"):
        V.validate_time_series(path, good.assign(x=[0.0], y=[0.0]))
    with pytest.raises(ValueError, match="window side must be >= 0"):
        V.validate_time_series(path, good, window=-5)
