"""The HTML report of a lagged-correlation run: plots when matplotlib is there, tables always."""

import base64
import re

import numpy as np
import pandas as pd

from subsidence_toolkit.core.reports import lagcorr_report as rep
from subsidence_toolkit.core.stats import lagcorr as lc


def _result():
    rng = np.random.default_rng(0)
    n = 24
    g = np.cumsum(rng.normal(size=n + 1))
    dates = pd.date_range("2020-01-01", periods=n, freq="MS").strftime("%Y-%m-%d")
    df = pd.DataFrame(
        {
            "date": list(dates) * 2,
            "area": ["a"] * n + ["b"] * n,
            "gwsa": np.r_[g[1:], g[1:]],
            "defo": np.r_[g[:-1], rng.normal(size=n)],
        }
    )
    df.loc[df.index[-3:], "defo"] = np.nan
    few = pd.DataFrame(
        {"date": ["2020-01-01", "2020-02-01"], "area": ["c", "c"], "gwsa": [1.0, 2.0], "defo": [3.0, 1.0]}
    )
    return lc.lagged_correlation_table(
        pd.concat([df, few]), "date", "gwsa", "defo", group_fields=["area"], max_lag=2, series="both"
    )


def test_report_with_plots_has_one_image_per_group_and_all_rows():
    res = _result()
    text = rep.html_report(res, parameters={"MAX_LAG": 2})
    imgs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(imgs) == 3
    assert base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gwsa leads defo by k months" in text
    best = text.count("<tr class='best'>") + text.count("<tr class='best sig'>")
    assert best == int(res.table["best_lag"].sum()) == 4  # a, b x 2 modes; c none
    # rows significant by p_eff are highlighted (per-lag tables), and only those
    n_sig = int((res.table["p_eff"] < 0.05).sum())
    assert text.count("<tr class='best sig'>") + text.count("<tr class='sig'>") >= n_sig > 0
    assert "area=c: " in text and "fewer than 4" in text  # warning listed
    # every r of the table appears, rounded, in the page
    for r in res.table["r"].dropna():
        assert ("%.3f" % r) in text


def test_report_without_matplotlib_is_tables_only(tmp_path, monkeypatch):
    monkeypatch.setattr(rep, "_matplotlib", lambda: None)
    res = _result()
    path = rep.write_html_report(str(tmp_path / "r.html"), res)
    text = open(path, encoding="utf-8").read()
    assert "data:image/png" not in text
    assert "matplotlib is not available" in text
    assert text.count("<table>") == 1 + 3 * 2  # summary + (3 groups x 2 modes)
    assert not list(tmp_path.glob("*.partial"))


def test_report_caps_details_for_many_groups():
    res = _result()
    text = rep.html_report(res, plots=False, max_tables=1)
    assert text.count("<table>") == 1 + 2
    assert "first 1 of 3 groups" in text
    assert text.count("<td class='t'>area=") == 6  # the summary still lists every group and series


def test_axis_labels_with_units():
    assert rep.axis_label("gwsa") == "GWSA (mm)"
    assert rep.axis_label("deformation") == "Deformation (mm)"
    assert rep.axis_label("rainfall") == "Rainfall"
    assert rep.axis_label("rainfall", "mm/month") == "Rainfall (mm/month)"
