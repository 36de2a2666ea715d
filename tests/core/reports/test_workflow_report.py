"""Workflow summary report (core, no QGIS): map coordinates, outlines, page-wide images, lag verdicts."""

import base64
import re
import struct

import numpy as np
import pandas as pd
import pytest
from synthetic import write_stack

from subsidence_toolkit.core.reports import workflow_report as wr

pytest.importorskip("matplotlib")


def _png_sizes(text):
    out = []
    for b64 in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text):
        head = base64.b64decode(b64[:64])
        out.append(struct.unpack(">II", head[16:24]))
    return out


@pytest.fixture
def outputs(tmp_path):
    vel = write_stack(tmp_path / "v.tif", np.linspace(-50, 20, 12 * 10).reshape(12, 10))  # UTM 49N, 30 m
    g = np.arange(3 * 8 * 9, dtype=float).reshape(3, 8, 9) - 100
    import datetime as dt

    gwsa = write_stack(
        tmp_path / "g.tif",
        g,
        dates=[dt.date(2020, m, 15) for m in (1, 2, 3)],
        epsg=4326,
        origin=(110.99, 36.14),
        pixel=0.01,
    )
    rows = []
    for area in ("mining", "irrigation", "desert"):
        for layer in ("deformation", "gwsa"):
            for k, d in enumerate(pd.date_range("2020-01-15", periods=6, freq="MS")):
                rows.append(
                    {
                        "area": area,
                        "class": "severe",
                        "layer": layer,
                        "date": d.strftime("%Y-%m-%d"),
                        "n": 10,
                        "cumulative_change": -k * (2 if layer == "gwsa" else 5),
                    }
                )
    lag = pd.DataFrame(
        {
            "group": ["area=mining", "area=desert"],
            "series": ["temporal", "temporal"],
            "lag": [1, 3],
            "n": [40, 40],
            "r": [0.8, 0.2],
            "p": [1e-9, 0.2],
            "n_eff": [30.0, 12.0],
            "p_eff": [1e-6, 0.4],
            "best_lag": [True, True],
        }
    )
    fac = pd.DataFrame({"factor": ["gwsa_trend", "dem"], "q": [0.6, 0.1], "p_wang": [0.0, 0.3]})
    return vel, gwsa, pd.DataFrame(rows), lag, fac


def test_maps_in_map_coordinates_with_outlines(outputs):
    from matplotlib.figure import Figure

    vel, gwsa, *_ = outputs
    # a polygon in WGS 84 around the UTM raster's centre: drawn in each map's own CRS
    outline = (
        "mining",
        "POLYGON((111.0 36.13,111.003 36.13,111.003 36.133,111.0 36.133,111.0 36.13))",
        'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],'
        'UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]',
    )
    fig = wr.maps_figure(vel, gwsa, [outline], Figure)
    ax_v, ax_g = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert ax_v.get_xlabel() == "Easting (m)" and ax_v.get_ylabel() == "Northing (m)"
    assert ax_g.get_xlabel() == "Longitude (\u00b0)" and ax_g.get_ylabel() == "Latitude (\u00b0)"
    assert ax_v.get_xlim() == (500000.0, 500300.0) and ax_v.get_ylim() == (3999640.0, 4000000.0)
    line_v = ax_v.get_lines()[0].get_xydata()
    line_g = ax_g.get_lines()[0].get_xydata()
    assert 499000 < line_v[:, 0].min() < 501000 and 3990000 < line_v[:, 1].min() < 4010000  # UTM metres
    np.testing.assert_allclose(line_g[0], [111.0, 36.13])  # unchanged in its own CRS
    assert [t.get_text() for t in ax_v.texts] == ["mining"]


def test_report_images_fit_the_page_and_flags_weak_lags(outputs, tmp_path):
    vel, gwsa, classes, lag, fac = outputs
    path = wr.write_html_report(
        tmp_path / "r.html",
        vel,
        gwsa,
        class_table=classes,
        lag_table=lag,
        factor_table=fac,
        links={"Geodetector": str(tmp_path / "sub" / "gd.html")},
    )
    text = open(path, encoding="utf-8").read()
    sizes = _png_sizes(text)
    assert len(sizes) == 2 and all(w <= 1000 for w, h in sizes)  # the page is 1100 px wide
    assert "img{max-width:100%" in text
    assert "1 of 2 best lags are not significant" in text
    desert = [row for row in text.split("<tr") if "area=desert" in row][0]
    mining = [row for row in text.split("<tr") if "area=mining" in row][0]
    assert "class='warnrow'" in desert and "not a result" in desert
    assert "class='sig'" in mining and "recovered lag" in mining
    assert "&lt; 1e-300" in text  # p_wang = 0
    assert "href='sub/gd.html'" in text


def test_text_tables_from_ogr_are_numbers():
    df = pd.DataFrame({"a": ["1.5", "", "2"], "b": ["x", "y", ""], "c": ["", "", ""]})
    out = wr.numeric_columns(df)
    assert out["a"].tolist()[0] == 1.5 and np.isnan(out["a"][1]) and out["b"].dtype == object
    assert out["c"].isna().all()
