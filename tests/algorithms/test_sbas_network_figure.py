"""subsidence:sbasinversion writes the network figure (HTML) with the pairs it did not use and why."""

import datetime as dt
import math

import numpy as np
from synthetic import sentinel1_dates, write_stack

LAMBDA = 0.05546576


def test_network_figure_output(run_alg, tmp_path):
    dates = sentinel1_dates(start=dt.date(2020, 1, 3), n=6, gaps=())
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    truth = -20.0 * t[:, None, None] * np.ones((1, 6, 7))
    ifgs = []
    for i in range(6):
        for j in range(i + 1, min(i + 3, 6)):
            phase = -(truth[j] - truth[i]) / 1000.0 * 4 * math.pi / LAMBDA
            ifgs.append(
                write_stack(
                    tmp_path / ("%s_%s.geo.unw.tif" % (dates[i].strftime("%Y%m%d"), dates[j].strftime("%Y%m%d"))), phase
                )
            )
    excluded = ifgs[3].split("/")[-1]
    res = run_alg(
        "sbasinversion",
        {
            "INTERFEROGRAMS": ifgs,
            "EXCLUDE": excluded,
            "OUTPUT_TIMESERIES": str(tmp_path / "ts.tif"),
            "OUTPUT_VELOCITY": str(tmp_path / "v.tif"),
            "OUTPUT_QUALITY": str(tmp_path / "q.tif"),
            "OUTPUT_NETWORK_HTML": str(tmp_path / "network.html"),
        },
    )
    text = open(res["OUTPUT_NETWORK_HTML"], encoding="utf-8").read()
    assert "%d interferograms, %d used, 1 not used; 6 acquisition dates" % (len(ifgs), len(ifgs) - 1) in text
    assert excluded in text and "excluded" in text
    assert "<img" in text  # the figure (matplotlib is installed on the test systems)
