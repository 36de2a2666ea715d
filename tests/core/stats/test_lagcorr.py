"""Tests of core.stats.lagcorr against scipy, closed forms and synthetic series with planted lags."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from subsidence_toolkit.core.io.dates import month_index
from subsidence_toolkit.core.stats import lagcorr as lc


def month_dates(n, start=(2020, 1), day=15):
    """n consecutive monthly dates as YYYY-MM-DD text."""
    y, m = start
    out = []
    for i in range(n):
        yy, mm = divmod((m - 1) + i, 12)
        out.append(dt.date(y + yy, mm + 1, day).isoformat())
    return out


def ar1(rng, phi, n, size=None, burn=50):
    """AR(1) series x_t = phi x_{t-1} + e_t (unit innovations), shape (size, n) or (n,)."""
    shape = (n + burn,) if size is None else (size, n + burn)
    e = rng.normal(size=shape)
    x = np.zeros(shape)
    for t in range(1, n + burn):
        x[..., t] = phi * x[..., t - 1] + e[..., t]
    return x[..., burn:]


def reference_pairs(dates_x, x, dates_y, y, lag):
    """Independent pairing: Y at month t+lag with X at month t, both present (dict lookup)."""
    mx = {month_index(dt.date.fromisoformat(d)): v for d, v in zip(dates_x, x) if np.isfinite(v)}
    my = {month_index(dt.date.fromisoformat(d)): v for d, v in zip(dates_y, y) if np.isfinite(v)}
    ts = sorted(t for t in mx if t + lag in my)
    return np.array([mx[t] for t in ts]), np.array([my[t + lag] for t in ts]), ts


def reference_acf1(ts, values):
    """Lag-1 ACF of values at months ts: mean product over adjacent months / variance."""
    v = np.asarray(values, float)
    d = v - v.mean()
    pos = {t: i for i, t in enumerate(ts)}
    prods = [d[pos[t]] * d[pos[t + 1]] for t in ts if t + 1 in pos]
    return np.mean(prods) / np.mean(d * d)


@pytest.fixture
def gappy_pair():
    rng = np.random.default_rng(42)
    n = 36
    dates = month_dates(n)
    x = np.cumsum(rng.normal(size=n))
    y = np.r_[np.zeros(1), x[:-1]] * 0.7 + rng.normal(scale=0.8, size=n)
    x[[5, 17]] = np.nan
    y[[9, 10, 30]] = np.nan
    return dates, x, y


# --------------------------------------------------------------------------- r and p
def test_r_p_equal_scipy_pearsonr_on_every_lag(gappy_pair):
    dates, x, y = gappy_pair
    df = pd.DataFrame({"date": dates, "gwsa": x, "defo": y})
    res = lc.lagged_correlation_table(df, "date", "gwsa", "defo", max_lag=4, negative_lags=True)
    t = res.table
    assert list(t["lag"]) == list(range(-4, 5))
    for _, row in t.iterrows():
        xs, ys, _ = reference_pairs(dates, x, dates, y, int(row["lag"]))
        ref = stats.pearsonr(xs, ys)
        assert row["n"] == len(xs)
        assert row["r"] == pytest.approx(ref[0], rel=1e-12, abs=1e-14)
        assert row["p"] == pytest.approx(ref[1], rel=1e-9, abs=1e-300)


def test_p_eff_is_t_test_with_effective_n(gappy_pair):
    dates, x, y = gappy_pair
    df = pd.DataFrame({"date": dates, "gwsa": x, "defo": y})
    t = lc.lagged_correlation_table(df, "date", "gwsa", "defo", max_lag=3).table
    for _, row in t.iterrows():
        xs, ys, ts = reference_pairs(dates, x, dates, y, int(row["lag"]))
        r1 = reference_acf1(ts, xs)
        r2 = reference_acf1(ts, ys)
        assert row["r1_x"] == pytest.approx(r1, rel=1e-12)
        assert row["r1_y"] == pytest.approx(r2, rel=1e-12)
        ne = min(len(xs), len(xs) * (1 - r1 * r2) / (1 + r1 * r2))
        assert row["n_eff"] == pytest.approx(ne, rel=1e-12)
        tt = row["r"] * np.sqrt((ne - 2) / (1 - row["r"] ** 2))
        assert row["p_eff"] == pytest.approx(2 * stats.t.sf(abs(tt), ne - 2), rel=1e-8)
        assert row["p_eff"] >= row["p"]  # positively autocorrelated levels: less significant


def test_pearson_p_matches_scipy_for_fractional_df():
    for r, n in ((0.3, 10.0), (-0.8, 5.5), (0.05, 200.0), (0.999, 12.0)):
        tt = r * np.sqrt((n - 2) / (1 - r * r))
        assert lc.pearson_p(r, n) == pytest.approx(2 * stats.t.sf(abs(tt), n - 2), rel=1e-9)
    assert np.isnan(lc.pearson_p(0.5, 2.0))


# --------------------------------------------------------------------------- lags
def test_known_two_month_lag_is_best():
    rng = np.random.default_rng(7)
    n = 48
    g = np.cumsum(rng.normal(size=n + 2))
    defo = g[:-2] + 0.3 * rng.normal(size=n)  # defo[t] = g[t-2]: GWSA leads by 2 months
    gw = g[2:]
    df = pd.DataFrame({"date": month_dates(n), "gwsa": gw, "defo": defo})
    res = lc.lagged_correlation_table(
        df, "date", "gwsa", "defo", max_lag=4, negative_lags=True, series=["levels", "temporal"]
    )
    for mode in ("levels", "temporal"):
        part = res.table[res.table["series"] == mode]
        assert part["best_lag"].sum() == 1
        assert int(part.loc[part["best_lag"], "lag"].iloc[0]) == 2
    temporal = res.table[res.table["series"] == "temporal"].set_index("lag")
    assert temporal.loc[2, "r"] > 0.9
    assert abs(temporal.loc[0, "r"]) < 0.4


def test_negative_lag_when_y_leads():
    rng = np.random.default_rng(3)
    n = 40
    base = rng.normal(size=n + 1)
    x = base[:-1]  # x[t] = base[t]
    y = base[1:]  # y[t] = base[t+1] = x[t+1]: Y leads X by one month
    df = pd.DataFrame({"date": month_dates(n), "x": x, "y": y})
    t = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=2, negative_lags=True).table
    assert int(t.loc[t["best_lag"], "lag"].iloc[0]) == -1
    assert float(t.loc[t["lag"] == -1, "r"].iloc[0]) == pytest.approx(1.0)


def test_best_by_sign():
    r = np.array([0.2, -0.9, 0.5, np.nan])
    assert lc.best_lag_index(r, "abs") == 1
    assert lc.best_lag_index(r, "max") == 2
    assert lc.best_lag_index(r, "min") == 1
    assert lc.best_lag_index(np.full(3, np.nan)) is None


# --------------------------------------------------------------------------- N_eff
def test_effective_n_formula_and_cap():
    assert lc.effective_n(100, 0.9, 0.9) == pytest.approx(100 * 0.19 / 1.81)
    assert lc.effective_n(50, 0.5, 0.2) == pytest.approx(50 * 0.9 / 1.1)
    assert lc.effective_n(50, 0.0, 0.7) == pytest.approx(50.0)
    assert lc.effective_n(50, -0.5, 0.5) == pytest.approx(50.0)  # would be 83.3: capped at N
    assert np.isnan(lc.effective_n(50, np.nan, 0.5))
    got = lc.effective_n(np.array([10, 20]), np.array([0.5, 0.3]), np.array([0.5, 0.6]))
    np.testing.assert_allclose(got, [10 * 0.75 / 1.25, 20 * 0.82 / 1.18])


def test_lag1_autocorrelation_recovers_ar1_coefficient():
    rng = np.random.default_rng(11)
    for phi in (0.8, 0.3, -0.5):
        x = ar1(rng, phi, 20000)
        assert lc.lag1_autocorrelation(x) == pytest.approx(phi, abs=0.02)
    x = ar1(rng, 0.8, 20000)
    x[::7] = np.nan  # gaps: still consistent
    assert lc.lag1_autocorrelation(x) == pytest.approx(0.8, abs=0.03)


def test_effective_n_matches_monte_carlo_variance_of_r():
    """Two independent AR(1) series: var(r) ~ 1/N_eff (Bretherton et al. 1999)."""
    rng = np.random.default_rng(2024)
    n, reps = 120, 1500
    phi1, phi2 = 0.8, 0.6
    a = ar1(rng, phi1, n, size=reps)
    b = ar1(rng, phi2, n, size=reps)
    am = a - a.mean(axis=1, keepdims=True)
    bm = b - b.mean(axis=1, keepdims=True)
    r = (am * bm).sum(1) / np.sqrt((am * am).sum(1) * (bm * bm).sum(1))
    ne_true = lc.effective_n(n, phi1, phi2)
    assert 1 / r.var() == pytest.approx(ne_true, rel=0.15)
    # The white-noise t-test rejects far too often; the N_eff test is close to nominal.
    p_naive = lc.pearson_p(r, n)
    p_eff = lc.pearson_p(r, ne_true)
    assert (p_naive < 0.05).mean() > 0.15
    assert (p_eff < 0.05).mean() == pytest.approx(0.05, abs=0.025)
    # the estimator used by the tables (sample lag-1 ACF of each series) on a few realisations
    est = [lc.effective_n(n, lc.lag1_autocorrelation(a[i]), lc.lag1_autocorrelation(b[i])) for i in range(300)]
    assert np.median(est) == pytest.approx(ne_true, rel=0.3)


# --------------------------------------------------------------------------- series modes
def test_cumulative_equals_levels(gappy_pair):
    """C_t = sum_{s=b+1..t} dX_s = X_t - X_b: a constant shift, so r, p and N_eff are those of levels."""
    dates, x, y = gappy_pair
    df = pd.DataFrame({"date": dates, "gwsa": x, "defo": y})
    for detrend in ("none", "linear", "harmonic", "climatology"):
        t = lc.lagged_correlation_table(
            df, "date", "gwsa", "defo", max_lag=3, negative_lags=True, series=["levels", "cumulative"], detrend=detrend
        ).table
        lev = t[t["series"] == "levels"].reset_index(drop=True)
        cum = t[t["series"] == "cumulative"].reset_index(drop=True)
        for col in ("n", "r", "p", "n_eff", "p_eff"):
            np.testing.assert_allclose(cum[col], lev[col], rtol=1e-9, atol=1e-12, err_msg=detrend + " " + col)


def test_cumulative_is_running_sum_of_changes_from_base():
    a = np.array([np.nan, 3.0, 5.0, 4.0, 8.0, 9.5])
    c = lc.transform_series(a, "cumulative")
    np.testing.assert_allclose(c[1:], [0.0, 2.0, 1.0, 5.0, 6.5])
    np.testing.assert_allclose(c[2:], np.cumsum(np.diff(a[1:])))
    assert np.isnan(c[0])
    assert np.isnan(lc.transform_series(a, "cumulative", base=0)).all()  # missing base month


def test_temporal_change_across_missing_month_is_missing():
    a = np.array([1.0, 2.0, np.nan, 5.0, 7.0, 6.0])
    d = lc.transform_series(a, "temporal")
    assert np.isnan(d[0]) and np.isnan(d[2]) and np.isnan(d[3])  # 3 -> not bridged to 5 - 2
    np.testing.assert_allclose(d[[1, 4, 5]], [1.0, 2.0, -1.0])
    # through the table: a month missing from the input (no row at all) is a gap too
    dates = month_dates(12)
    xv = np.arange(12.0) ** 1.5
    yv = np.sin(np.arange(12.0))
    keep = [i for i in range(12) if i != 6]
    df = pd.DataFrame({"date": [dates[i] for i in keep], "x": xv[keep], "y": yv[keep]})
    res = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=0, series="temporal")
    months, xa, ya = res.curves[0]["months"], res.curves[0]["x"], res.curves[0]["y"]
    assert len(months) == 12
    assert np.isnan(xa[6]) and np.isnan(xa[7]) and np.isnan(ya[7])
    assert res.table["n"].iloc[0] == 12 - 1 - 2
    dx = np.diff(xv)[[i for i in range(11) if i not in (5, 6)]]
    dy = np.diff(yv)[[i for i in range(11) if i not in (5, 6)]]
    assert res.table["r"].iloc[0] == pytest.approx(stats.pearsonr(dx, dy)[0], rel=1e-12)


def test_both_means_cumulative_and_temporal():
    assert lc.expand_series("both") == ["cumulative", "temporal"]
    assert lc.expand_series(["levels", "both", "temporal"]) == ["levels", "cumulative", "temporal"]
    with pytest.raises(ValueError, match="series mode"):
        lc.expand_series("monthly")


# --------------------------------------------------------------------------- detrending
def test_linear_and_harmonic_detrending_remove_their_models():
    rng = np.random.default_rng(5)
    months = np.arange(month_index(dt.date(2019, 3, 1)), month_index(dt.date(2019, 3, 1)) + 60)
    t = np.arange(60.0)
    noise = rng.normal(size=60)
    lin = 4.0 + 0.7 * t + noise
    d, note = lc.detrend_series(lin, "linear", months)
    assert note == ""
    g = np.column_stack([np.ones(60), t])
    ref = noise - g @ np.linalg.lstsq(g, noise, rcond=None)[0]
    np.testing.assert_allclose(d, ref, atol=1e-9)
    seas = lin + 10 * np.sin(2 * np.pi * months / 12 + 0.4) + 3 * np.cos(2 * np.pi * months / 6)
    dh, _ = lc.detrend_series(seas, "harmonic", months)
    gh = np.column_stack(
        [
            np.ones(60),
            t,
            np.sin(2 * np.pi * t / 12),
            np.cos(2 * np.pi * t / 12),
            np.sin(2 * np.pi * t / 6),
            np.cos(2 * np.pi * t / 6),
        ]
    )
    refh = noise - gh @ np.linalg.lstsq(gh, noise, rcond=None)[0]
    np.testing.assert_allclose(dh, refh, atol=1e-8)
    few, note = lc.detrend_series(np.r_[1.0, 2.0, np.full(10, np.nan)], "harmonic", months[:12])
    assert np.isnan(few).all() and "at least 7" in note


def test_climatology_removes_calendar_month_means():
    months = np.arange(month_index(dt.date(2020, 1, 1)), month_index(dt.date(2020, 1, 1)) + 36)
    cycle = np.array([5, 3, 1, -2, -4, -6, -5, -1, 0, 2, 4, 6], float)
    rng = np.random.default_rng(9)
    a = np.tile(cycle, 3) + rng.normal(size=36)
    a[4] = np.nan
    d, _ = lc.detrend_series(a, "climatology", months)
    for c in range(12):
        sel = (months % 12 == c) & np.isfinite(a)
        assert d[sel].mean() == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(d[sel], a[sel] - a[sel].mean())
    assert np.isnan(d[4])


def test_detrending_recovers_correlation_of_anomalies():
    """A shared trend inflates levels r; linear detrending gives back the r of the anomalies."""
    rng = np.random.default_rng(21)
    n = 48
    ax, ay = rng.normal(size=n), rng.normal(size=n)
    t = np.arange(n)
    df = pd.DataFrame({"date": month_dates(n), "x": ax - 0.5 * t, "y": ay - 0.4 * t})
    raw = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=0).table
    det = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=0, detrend="linear").table
    g = np.column_stack([np.ones(n), t])
    rx = ax - g @ np.linalg.lstsq(g, ax, rcond=None)[0]
    ry = ay - g @ np.linalg.lstsq(g, ay, rcond=None)[0]
    assert raw["r"].iloc[0] > 0.95
    assert det["r"].iloc[0] == pytest.approx(stats.pearsonr(rx, ry)[0], rel=1e-9)


# --------------------------------------------------------------------------- tables
def _planted_long_table():
    """Long table: three landscapes with GWSA leading deformation by 0, 1, 2 months."""
    rng = np.random.default_rng(1)
    n = 30
    dates = month_dates(n)
    rows = []
    for area, lag in (("desert", 0), ("irrigation", 1), ("mining", 2)):
        g = np.cumsum(rng.normal(size=n + lag))
        gw = g[lag:]
        defo = g[:n] * 0.5 + 0.2 * rng.normal(size=n)
        for i in range(n):
            rows.append({"area": area, "class": 1, "layer": "gwsa", "date": dates[i], "mean": gw[i]})
            rows.append({"area": area, "class": 1, "layer": "deformation", "date": dates[i], "mean": defo[i]})
    return pd.DataFrame(rows)


def test_long_table_groups_and_equals_wide():
    long = _planted_long_table()
    res = lc.lagged_correlation_table(
        long,
        "date",
        group_fields=["area", "class"],
        variable_field="layer",
        value_field="mean",
        x_name="gwsa",
        y_name="deformation",
        max_lag=3,
        series="both",
    )
    t = res.table
    assert list(t.columns[:2]) == ["area", "class"]
    for area, lag in (("desert", 0), ("irrigation", 1), ("mining", 2)):
        for mode in ("cumulative", "temporal"):
            part = t[(t["area"] == area) & (t["series"] == mode)]
            assert len(part) == 4
            assert int(part.loc[part["best_lag"], "lag"].iloc[0]) == lag, (area, mode)
    wide = long.pivot_table(index=["area", "class", "date"], columns="layer", values="mean").reset_index()
    res_w = lc.lagged_correlation_table(
        wide, "date", "gwsa", "deformation", group_fields=["area", "class"], max_lag=3, series="both"
    )
    np.testing.assert_allclose(res_w.table["r"], t["r"], rtol=1e-12)
    np.testing.assert_allclose(res_w.table["n_eff"], t["n_eff"], rtol=1e-12)
    w = lc.wide_result(t, ["area", "class"])
    assert len(w) == 6
    assert set(w.loc[w["series"] == "temporal", "best_lag"]) == {0, 1, 2}
    assert len(res.curves) == 6


def test_too_few_overlapping_months_gives_nan_row_and_warning():
    long = _planted_long_table()
    few = pd.DataFrame(
        [
            {"area": "tiny", "class": 1, "layer": "gwsa", "date": d, "mean": v}
            for d, v in zip(month_dates(3), (1.0, 2.0, 4.0))
        ]
        + [
            {"area": "tiny", "class": 1, "layer": "deformation", "date": d, "mean": v}
            for d, v in zip(month_dates(3), (0.5, 1.0, 3.0))
        ]
    )
    res = lc.lagged_correlation_table(
        pd.concat([long, few]),
        "date",
        group_fields=["area"],
        variable_field="layer",
        value_field="mean",
        x_name="gwsa",
        y_name="deformation",
        max_lag=1,
    )
    tiny = res.table[res.table["area"] == "tiny"]
    assert len(tiny) == 2
    assert tiny["r"].isna().all() and tiny["p"].isna().all() and tiny["p_eff"].isna().all()
    assert not tiny["best_lag"].any()
    assert (tiny["note"].str.contains("fewer than 4")).all()
    assert any(w.startswith("area=tiny") and "fewer than 4" in w for w in res.warnings)
    assert res.table.loc[res.table["area"] != "tiny", "r"].notna().all()


def test_several_values_in_a_month_are_averaged_with_warning():
    df = pd.DataFrame(
        {
            "date": ["2020-01-03", "2020-01-27", "2020-02-10", "2020-03-05", "2020-04-01", "2020-05-09"],
            "x": [1.0, 3.0, 4.0, 9.0, 10.0, 8.0],
            "y": [2.0, 2.0, 5.0, 7.0, 11.0, 6.0],
        }
    )
    res = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=0)
    assert res.table["n"].iloc[0] == 5
    assert res.table["r"].iloc[0] == pytest.approx(stats.pearsonr([2, 4, 9, 10, 8], [2, 5, 7, 11, 6])[0])
    assert "averaged" in res.warnings[0]


def test_dates_in_several_forms_and_missing_values():
    dates = pd.Series(
        ["2020-01-15", "20200215", dt.date(2020, 3, 1), pd.Timestamp("2020-04-30"), "2020-05", "2020-06-01"],
        dtype=object,
    )
    df = pd.DataFrame({"date": dates, "x": [1, 2, "", None, "5.5", 7], "y": [1.0, 3.0, 2.0, 5.0, 4.0, 8.0]})
    res = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=0)
    assert res.table["n"].iloc[0] == 4
    assert res.table["r"].iloc[0] == pytest.approx(stats.pearsonr([1, 2, 5.5, 7], [1, 3, 4, 8])[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "not a date"], "x": [1, 2], "y": [1, 2]}), x_field="x", y_field="y"
            ),
            r"date field 'd': row 2 has 'not a date'",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [1, 2], "y": [1, 2]}), x_field="x", y_field="x"
            ),
            r"X and Y are the same field 'x'",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [1, 2], "y": ["1", "abc"]}),
                x_field="x",
                y_field="y",
            ),
            r"Y field 'y' is not numeric: row 2 has 'abc'",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [1, 2], "y": [1, 2]}),
                x_field="x",
                y_field="gwsa",
            ),
            r"Y field 'gwsa' not found",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [1, 2], "y": [1, 2]}),
                x_field="x",
                y_field="y",
                group_fields=["area"],
            ),
            r"group field 'area' not found",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01"], "v": ["a"], "val": [1.0]}),
                variable_field="v",
                value_field="val",
                x_name="a",
                y_name="a",
            ),
            r"same variable 'a'",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01"], "v": ["a"], "val": [1.0]}),
                variable_field="v",
                value_field="val",
                x_name="a",
                y_name="b",
            ),
            r"Y variable 'b' does not occur in field 'v'",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [1, 2], "y": [1, 2]}),
                x_field="x",
                y_field="y",
                max_lag=-1,
            ),
            r"maximum lag",
        ),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [1, 2], "y": [1, 2]}),
                x_field="x",
                y_field="y",
                detrend="quadratic",
            ),
            r"unknown detrending",
        ),
        (dict(df=pd.DataFrame({"d": [], "x": [], "y": []}), x_field="x", y_field="y"), r"no rows"),
        (
            dict(
                df=pd.DataFrame({"d": ["2020-01-01", "2020-02-01"], "x": [True, False], "y": [1, 2]}),
                x_field="x",
                y_field="y",
            ),
            r"X field 'x' is boolean",
        ),
    ],
)
def test_bad_input_errors(kwargs, match):
    df = kwargs.pop("df")
    with pytest.raises(ValueError, match=match):
        lc.lagged_correlation_table(df, "d", **kwargs)


def test_constant_series_gives_nan_not_error():
    df = pd.DataFrame({"date": month_dates(8), "x": np.ones(8), "y": np.arange(8.0)})
    res = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=1)
    assert res.table["r"].isna().all()
    assert res.table["note"].str.contains("constant").all()
    assert any("r undefined (a constant series) at lag 0, 1" in w for w in res.warnings)


@pytest.mark.parametrize("detrend", ["none", "linear", "harmonic", "climatology"])
def test_groups_processed_together_equal_groups_alone(detrend):
    """Vectorised over groups (shared month axis, one lstsq per validity pattern) = one group at a time."""
    rng = np.random.default_rng(17)
    rows = []
    for gi in range(7):
        n = 20 + 3 * gi
        start = (2019 + gi % 2, 1 + gi)
        dates = month_dates(n, start=start)
        x = np.cumsum(rng.normal(size=n))
        y = np.roll(x, gi % 3) + rng.normal(scale=0.5, size=n)
        x[rng.choice(n, size=gi % 4, replace=False)] = np.nan
        y[rng.choice(n, size=(gi + 1) % 3, replace=False)] = np.nan
        rows += [{"g": "g%d" % gi, "date": d, "x": a, "y": b} for d, a, b in zip(dates, x, y)]
    df = pd.DataFrame(rows)
    kw = dict(max_lag=2, negative_lags=True, series=["levels", "cumulative", "temporal"], detrend=detrend)
    together = lc.lagged_correlation_table(df, "date", "x", "y", group_fields=["g"], chunk_rows=3, **kw).table
    for g, part in df.groupby("g"):
        alone = lc.lagged_correlation_table(part, "date", "x", "y", **kw).table
        mine = together[together["g"] == g].reset_index(drop=True)
        for col in ("n", "r", "p", "r1_x", "r1_y", "n_eff", "p_eff"):
            np.testing.assert_allclose(mine[col], alone[col], rtol=1e-9, atol=1e-12, err_msg="%s %s" % (g, col))
        assert list(mine["best_lag"]) == list(alone["best_lag"])


def test_missing_group_key_is_its_own_group():
    df = pd.DataFrame(
        {
            "area": ["a"] * 6 + [None] * 6,
            "date": month_dates(6) * 2,
            "x": np.r_[np.arange(6.0), np.arange(6.0) ** 2],
            "y": np.r_[np.arange(6.0) ** 1.5, -np.arange(6.0)],
        }
    )
    t = lc.lagged_correlation_table(df, "date", "x", "y", group_fields=["area"], max_lag=0).table
    assert sorted(t["group"]) == ["area=", "area=a"]
    assert t.loc[t["group"] == "area=", "r"].iloc[0] == pytest.approx(
        -stats.pearsonr(np.arange(6.0) ** 2, np.arange(6.0))[0]
    )


def test_lag_statistics_rows_equal_single_series():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(5, 30)).cumsum(axis=1)
    y = np.roll(x, 1, axis=1) + rng.normal(size=(5, 30))
    x[1, 4] = np.nan
    y[3, 10:12] = np.nan
    many = lc.lag_statistics(x, y, [-1, 0, 1, 2])
    for i in range(5):
        one = lc.lag_statistics(x[i], y[i], [-1, 0, 1, 2])
        for k in one:
            np.testing.assert_allclose(many[k][i], one[k], rtol=1e-12)
    shared = lc.lag_statistics(x[0], y, [0, 1])  # one X (e.g. regional GWSA) against many Y rows
    np.testing.assert_allclose(shared["r"][2], lc.lag_statistics(x[0], y[2], [0, 1])["r"], rtol=1e-12)


def test_cumulative_from_explicit_base_month():
    rng = np.random.default_rng(12)
    n = 15
    df = pd.DataFrame({"date": month_dates(n), "x": rng.normal(size=n).cumsum(), "y": rng.normal(size=n).cumsum()})
    res = lc.lagged_correlation_table(
        df, "date", "x", "y", max_lag=2, series=["levels", "cumulative"], base_date="2020-03"
    )
    cur = [c for c in res.curves if c["series"] == "cumulative"][0]
    i = list(cur["months"]).index(month_index(dt.date(2020, 3, 1)))
    assert cur["x"][i] == 0.0 and cur["y"][i] == 0.0
    np.testing.assert_allclose(cur["x"], df["x"] - df["x"][2])
    t = res.table
    np.testing.assert_allclose(t.loc[t["series"] == "cumulative", "r"], t.loc[t["series"] == "levels", "r"], rtol=1e-12)
    # a base month missing from Y: NaN rows and a warning, not an exception
    df.loc[2, "y"] = np.nan
    res = lc.lagged_correlation_table(df, "date", "x", "y", max_lag=1, series="cumulative", base_date="2020-03-20")
    assert res.table["r"].isna().all()
    assert any("base month 2020-03 missing in Y" in w for w in res.warnings)
    with pytest.raises(ValueError, match="base date 'March' is not a date"):
        lc.lagged_correlation_table(df, "date", "x", "y", series="cumulative", base_date="March")
