"""SBAS network figure/page (core, no QGIS)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from subsidence_toolkit.core.reports import network_report as nr


def _table(with_bperp=True, reason_column=False):
    d = [dt.date(2020, 1, 3) + dt.timedelta(days=12 * k) for k in range(5)]
    b = {d[0]: 0.0, d[1]: 40.0, d[2]: -25.0, d[3]: 10.0, d[4]: 70.0}  # planted per-date baselines
    rows = []
    for i in range(5):
        for j in range(i + 1, min(i + 3, 5)):
            rows.append(
                {
                    "file": "%d_%d.tif" % (i, j),
                    "reference_date": d[i].isoformat(),
                    "secondary_date": d[j].isoformat(),
                    "perp_baseline_m": b[d[j]] - b[d[i]] if with_bperp else np.nan,
                    "used": not (i == 1 and j == 3),
                    "status": "used",
                }
            )
    df = pd.DataFrame(rows)
    df.loc[~df["used"], "status"] = "perpendicular baseline 95.0 m > 60 m"
    if reason_column:  # as the quality-control steps write it
        df["reason"] = np.where(df["used"], "", "loop closure 2.1 rad")
    return df, d, b


def test_date_baselines_recovers_the_planted_positions():
    df, d, b = _table()
    ref = [dt.date.fromisoformat(v) for v in df.reference_date]
    sec = [dt.date.fromisoformat(v) for v in df.secondary_date]
    dates, sol = nr.date_baselines(ref, sec, df.perp_baseline_m.to_numpy(float))
    assert dates == d
    np.testing.assert_allclose(sol, [b[x] for x in d], atol=1e-9)


@pytest.mark.parametrize("with_bperp", [True, False])
def test_figure_shows_used_and_rejected_with_reasons(with_bperp):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    df, d, b = _table(with_bperp)
    fig = nr.network_figure(df, Figure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "used (6)"
    assert "not used: perpendicular baseline 95.0 m > 60 m (1)" in labels
    if with_bperp:
        assert ax.get_ylabel() == "Perpendicular baseline (m)"
        dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"][0]
        np.testing.assert_allclose(dots.get_ydata(), [b[x] for x in d], atol=1e-9)
    else:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("Reference date", "Secondary date")


def test_reason_column_wins_and_page_lists_rejected(tmp_path):
    df, *_ = _table(reason_column=True)
    assert list(nr.rejection_reasons(df)[~df["used"].to_numpy()]) == ["loop closure 2.1 rad"]
    path = nr.write_html_report(str(tmp_path / "n.html"), df)
    text = open(path, encoding="utf-8").read()
    assert "7 interferograms, 6 used, 1 not used; 5 acquisition dates" in text
    assert "Interferograms not used" in text and "loop closure 2.1 rad" in text and "1_3.tif" in text
