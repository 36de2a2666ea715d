"""Geodetector HTML report and its per-factor settings language (core, no QGIS)."""

import numpy as np
import pandas as pd
import pytest

from subsidence_toolkit.core.reports import geodetector_report as rep
from subsidence_toolkit.core.reports import html_tools as ht
from subsidence_toolkit.core.stats import geodetector as gd
from subsidence_toolkit.core.stats.factor_settings import parse_overrides


def test_parse_overrides():
    spec = parse_overrides("dem=quantile:10; ndvi=manual:0.2,0.4\nlanduse=categorical; gwsa=20")
    assert spec == {
        "dem": {"method": "quantile", "k": 10},
        "ndvi": {"method": "manual", "breaks": [0.2, 0.4]},
        "landuse": {"method": "categorical"},
        "gwsa": {"k": 20},
    }
    assert parse_overrides("") == {}
    for bad in ("dem", "dem=wavelet", "ndvi=manual:", "ndvi=manual:a,b"):
        with pytest.raises(ValueError, match="per-factor setting"):
            parse_overrides(bad)


def test_formatting_helpers():
    assert ht.fmt_p(0.0) == "&lt; 1e-300"
    assert ht.fmt_p(3.4e-7) == "3.4e-07"
    assert ht.fmt_p(0.0123) == "0.0123"
    assert ht.fmt_p(float("nan")) == ht.DASH and ht.fmt_p(None) == ht.DASH
    assert ht.fmt_number(54.840598) == "54.84" and ht.fmt_number(12345.6) == "12346"
    assert ht.fmt_number(np.int64(7)) == "7" and ht.fmt_number(float("nan")) == ht.DASH
    b = ht.fmt_breaks(";".join("%.10g" % v for v in np.linspace(-80.123456, 12.5, 19)))
    assert b.startswith("<details><summary>-80.12\u2009\u2026\u200912.5 (19 breaks)</summary>")
    assert ht.fmt_breaks("1;2") == "1, 2"


def test_report_is_compact_and_explains_missing_values(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    a = rng.uniform(0, 10, n)
    b = rng.integers(0, 3, n)
    y = 3.0 * a + rng.normal(0, 1, n)  # p_wang of 'a' underflows to 0
    res = gd.run_geodetector(y, {"a": a, "b": b.astype(float)}, {}, "natural", 20, permutations=0, messages=[])
    assert float(res["factor"].set_index("factor").loc["a", "p_wang"]) == 0.0
    path = rep.write_html_report(str(tmp_path / "g.html"), res, ["source: test"])
    text = open(path, encoding="utf-8").read()
    assert "&lt; 1e-300" in text  # not a bare 0
    assert "(19 breaks)</summary>" in text  # 20 classes -> compact breaks
    assert "nan" not in text.lower().replace("nanc", "")  # NaN shown as a dash
    assert ht.DASH in text and "no permutations were run" in text
    assert "max-width:100%" in text and "Confidence interval of q" in text
    # the factor table lists 'a' (largest q) first and marks it significant
    fac_html = text.split("<h2>Factor detector</h2>")[1].split("</table>")[0]
    assert fac_html.index(">a<") < fac_html.index(">b<")
    assert "<tr class='sig'>" in fac_html


def test_report_without_matplotlib_plots(tmp_path):
    res = {
        "factor": pd.DataFrame({"factor": ["x"], "q": [0.5], "p_wang": [float("nan")]}),
        "interaction": pd.DataFrame(),
    }
    text = rep.html_report(res, ["n"], plots=False)
    assert "<img" not in text and ht.DASH in text
