"""subsidence:laggedcorrelation through processing.run on small CSV files and memory layers."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from subsidence_toolkit.core.stats import lagcorr


def month_dates(n, start=(2020, 1), day=15):
    out = []
    for i in range(n):
        yy, mm = divmod(start[1] - 1 + i, 12)
        out.append(dt.date(start[0] + yy, mm + 1, day))
    return out


def planted_long(n=30, seed=1):
    """Long table (area, class, layer, date, mean): GWSA leads deformation by 0, 1, 2 months."""
    rng = np.random.default_rng(seed)
    dates = month_dates(n)
    rows = []
    for area, lag in (("desert", 0), ("irrigation", 1), ("mining", 2)):
        g = np.cumsum(rng.normal(size=n + lag))
        defo = g[:n] * 0.5 + 0.2 * rng.normal(size=n)
        for i in range(n):
            rows.append((area, 1, "gwsa", dates[i], float(g[lag + i])))
            rows.append((area, 1, "deformation", dates[i], float(defo[i])))
    return rows


def memory_table(rows, fields):
    """A geometry-less memory layer; fields: list of (name, 'string'|'integer'|'double'|'date')."""
    from qgis.core import QgsFeature, QgsVectorLayer
    from qgis.PyQt.QtCore import QDate

    uri = "None?" + "&".join("field=%s:%s" % f for f in fields)
    layer = QgsVectorLayer(uri, "table", "memory")
    assert layer.isValid()
    feats = []
    for row in rows:
        f = QgsFeature(layer.fields())
        f.setAttributes([QDate(v.year, v.month, v.day) if isinstance(v, dt.date) else v for v in row])
        feats.append(f)
    ok, _ = layer.dataProvider().addFeatures(feats)
    assert ok and layer.featureCount() == len(rows)
    return layer


def read_csv(path):
    """The output table; the CSV writer stores the boolean best_lag as 0/1."""
    t = pd.read_csv(path)
    t["best_lag"] = t["best_lag"].astype(str).str.lower().isin(["1", "true"])
    return t


def test_wide_csv_matches_scipy_and_writes_report(run_alg, tmp_path):
    rng = np.random.default_rng(4)
    n = 24
    g = np.cumsum(rng.normal(size=n + 2))
    df = pd.DataFrame(
        {"date": [d.isoformat() for d in month_dates(n)], "gwsa": g[2:], "defo": g[:n] + 0.3 * rng.normal(size=n)}
    )
    df.loc[7, "defo"] = np.nan
    src = tmp_path / "wide.csv"
    df.to_csv(src, index=False, na_rep="")
    out, html = tmp_path / "lag.csv", tmp_path / "lag.html"
    res = run_alg(
        "laggedcorrelation",
        {
            "INPUT": str(src),
            "DATE_FIELD": "date",
            "X_FIELD": "gwsa",
            "Y_FIELD": "defo",
            "MAX_LAG": 3,
            "SERIES": 0,
            "OUTPUT": str(out),
            "OUTPUT_HTML": str(html),
        },
    )
    assert res["OUTPUT_HTML"] == str(html)
    t = read_csv(res["OUTPUT"])
    assert list(t["lag"]) == [0, 1, 2, 3]
    assert list(t["series"]) == ["levels"] * 4
    x, y = df["gwsa"].to_numpy(), df["defo"].to_numpy()
    for _, row in t.iterrows():
        k = int(row["lag"])
        xs, ys = x[: n - k], y[k:]
        ok = np.isfinite(xs) & np.isfinite(ys)
        r, p = stats.pearsonr(xs[ok], ys[ok])
        assert row["n"] == ok.sum()
        assert row["r"] == pytest.approx(r, rel=1e-9)
        assert row["p"] == pytest.approx(p, rel=1e-6, abs=1e-300)
    assert int(t.loc[t["best_lag"], "lag"].iloc[0]) == 2
    text = html.read_text(encoding="utf-8")
    assert "gwsa leads defo by k months" in text
    assert "data:image/png;base64," in text


def test_long_memory_layer_with_groups_recovers_planted_lags(run_alg, tmp_path):
    layer = memory_table(
        planted_long(),
        [("area", "string"), ("class", "integer"), ("layer", "string"), ("date", "date"), ("mean", "double")],
    )
    out = tmp_path / "lag.csv"
    res = run_alg(
        "laggedcorrelation",
        {
            "INPUT": layer,
            "DATE_FIELD": "date",
            "VARIABLE_FIELD": "layer",
            "VALUE_FIELD": "mean",
            "X_NAME": "gwsa",
            "Y_NAME": "deformation",
            "GROUP_FIELDS": ["area", "class"],
            "MAX_LAG": 3,
            "NEGATIVE_LAGS": True,
            "SERIES": 3,
            "OUTPUT": str(out),
        },
    )
    t = read_csv(res["OUTPUT"])
    assert set(t["series"]) == {"cumulative", "temporal"}
    assert len(t) == 3 * 2 * 7
    best = t[t["best_lag"]]
    got = {(a, s): int(k) for a, s, k in zip(best["area"], best["series"], best["lag"])}
    for area, lag in (("desert", 0), ("irrigation", 1), ("mining", 2)):
        assert got[(area, "temporal")] == lag
        assert got[(area, "cumulative")] == lag
    # same numbers as the core on the same table
    df = pd.DataFrame(planted_long(), columns=["area", "class", "layer", "date", "mean"])
    core = lagcorr.lagged_correlation_table(
        df,
        "date",
        group_fields=["area", "class"],
        variable_field="layer",
        value_field="mean",
        x_name="gwsa",
        y_name="deformation",
        max_lag=3,
        negative_lags=True,
        series="both",
    ).table
    np.testing.assert_allclose(t["r"], core["r"], rtol=1e-9)
    np.testing.assert_allclose(t["n_eff"], core["n_eff"], rtol=1e-9)


def test_short_group_gives_nan_rows_not_an_error(run_alg, tmp_path):
    rows = planted_long(n=12)
    rows += [("tiny", 1, "gwsa", d, v) for d, v in zip(month_dates(3), (1.0, 2.0, 4.0))]
    rows += [("tiny", 1, "deformation", d, v) for d, v in zip(month_dates(3), (0.5, 1.0, 3.0))]
    layer = memory_table(
        rows, [("area", "string"), ("class", "integer"), ("layer", "string"), ("date", "date"), ("mean", "double")]
    )
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.messages = []

        def pushWarning(self, text):
            self.messages.append(text)

        def reportError(self, text, fatal=False):
            self.messages.append(text)

    fb = Feedback()
    res = run_alg(
        "laggedcorrelation",
        {
            "INPUT": layer,
            "DATE_FIELD": "date",
            "VARIABLE_FIELD": "layer",
            "VALUE_FIELD": "mean",
            "X_NAME": "gwsa",
            "Y_NAME": "deformation",
            "GROUP_FIELDS": ["area"],
            "MAX_LAG": 1,
            "SERIES": 0,
            "OUTPUT": str(tmp_path / "o.csv"),
        },
        feedback=fb,
    )
    t = read_csv(res["OUTPUT"])
    tiny = t[t["area"] == "tiny"]
    assert len(tiny) == 2 and tiny["r"].isna().all() and tiny["p_eff"].isna().all()
    assert t.loc[t["area"] != "tiny", "r"].notna().all()
    assert any("area=tiny" in m and "fewer than 4" in m for m in fb.messages)


@pytest.mark.parametrize(
    "csv, params, message",
    [
        (
            "date,a,b\n2020-01-15,1,2\nlater,2,3\n",
            {"X_FIELD": "a", "Y_FIELD": "b"},
            r"date field 'date': row 2 has 'later'",
        ),
        (
            "date,a,b\n2020-01-15,1,2\n2020-02-15,2,3\n",
            {"X_FIELD": "a", "Y_FIELD": "a"},
            r"X_FIELD and Y_FIELD are the same field 'a'",
        ),
        (
            "date,a,b\n2020-01-15,1,2\n2020-02-15,2,n/a?\n",
            {"X_FIELD": "a", "Y_FIELD": "b"},
            r"Y field 'b' is not numeric: row 2 has 'n/a\?'",
        ),
        ("date,a,b\n2020-01-15,1,2\n2020-02-15,2,3\n", {"X_FIELD": "a"}, r"X_FIELD/Y_FIELD"),
        (
            "date,v,val\n2020-01-15,gwsa,2\n2020-02-15,gwsa,3\n",
            {"VARIABLE_FIELD": "v", "VALUE_FIELD": "val", "X_NAME": "gwsa", "Y_NAME": "gwsa"},
            r"same variable 'gwsa'",
        ),
        (
            "date,v,val\n2020-01-15,gwsa,2\n2020-02-15,gwsa,3\n",
            {"VARIABLE_FIELD": "v", "VALUE_FIELD": "val", "X_NAME": "gwsa", "Y_NAME": "defo"},
            r"Y variable 'defo' does not occur in field 'v'",
        ),
        (
            "date,v,val\n2020-01-15,gwsa,2\n2020-02-15,gwsa,3\n",
            {"VARIABLE_FIELD": "v", "VALUE_FIELD": "val"},
            r"X_NAME/Y_NAME",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(run_alg, tmp_path, csv, params, message):
    from qgis.core import QgsProcessingException

    src = tmp_path / "in.csv"
    src.write_text(csv)
    out, html = tmp_path / "o.csv", tmp_path / "o.html"
    with pytest.raises(QgsProcessingException, match=message):
        run_alg(
            "laggedcorrelation",
            dict({"INPUT": str(src), "DATE_FIELD": "date", "OUTPUT": str(out), "OUTPUT_HTML": str(html)}, **params),
        )
    assert not out.exists() and not html.exists()


def test_report_is_an_html_output(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("subsidence:laggedcorrelation")
    assert alg is not None
    assert alg.outputDefinition("OUTPUT_HTML").type() == "outputHtml"
    assert "X leads Y by k months" in alg.shortHelpString()


def test_enum_parameters_map_to_core_options(run_alg, tmp_path):
    layer = memory_table(
        planted_long(n=26, seed=5),
        [("area", "string"), ("class", "integer"), ("layer", "string"), ("date", "date"), ("mean", "double")],
    )
    out = tmp_path / "o.csv"
    res = run_alg(
        "laggedcorrelation",
        {
            "INPUT": layer,
            "DATE_FIELD": "date",
            "VARIABLE_FIELD": "layer",
            "VALUE_FIELD": "mean",
            "X_NAME": "gwsa",
            "Y_NAME": "deformation",
            "GROUP_FIELDS": ["area"],
            "MAX_LAG": 2,
            "NEGATIVE_LAGS": True,
            "SERIES": 2,
            "DETREND": 2,
            "BEST_BY": 2,
            "BASE_DATE": "",
            "MIN_PAIRS": 5,
            "OUTPUT": str(out),
        },
    )
    t = read_csv(res["OUTPUT"])
    df = pd.DataFrame(planted_long(n=26, seed=5), columns=["area", "class", "layer", "date", "mean"])
    core = lagcorr.lagged_correlation_table(
        df,
        "date",
        group_fields=["area"],
        variable_field="layer",
        value_field="mean",
        x_name="gwsa",
        y_name="deformation",
        max_lag=2,
        negative_lags=True,
        series="temporal",
        detrend="harmonic",
        best_by="min",
        min_pairs=5,
    ).table
    assert set(t["series"]) == {"temporal"} and set(t["detrend"]) == {"harmonic"}
    assert list(t["lag"]) == list(core["lag"])
    np.testing.assert_allclose(t["r"], core["r"], rtol=1e-9)
    assert list(t["best_lag"]) == list(core["best_lag"])


def test_cancel_writes_nothing(run_alg, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    layer = memory_table(
        planted_long(n=12),
        [("area", "string"), ("class", "integer"), ("layer", "string"), ("date", "date"), ("mean", "double")],
    )
    fb = QgsProcessingFeedback()
    fb.cancel()
    out, html = tmp_path / "o.csv", tmp_path / "o.html"
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run_alg(
            "laggedcorrelation",
            {
                "INPUT": layer,
                "DATE_FIELD": "date",
                "VARIABLE_FIELD": "layer",
                "VALUE_FIELD": "mean",
                "X_NAME": "gwsa",
                "Y_NAME": "deformation",
                "GROUP_FIELDS": ["area"],
                "OUTPUT": str(out),
                "OUTPUT_HTML": str(html),
            },
            feedback=fb,
        )
    assert not out.exists() and not html.exists()
