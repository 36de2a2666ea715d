"""subsidence:sbasinversion with OUTPUT_COMPONENT = vertical: the LOS results divided by cos(incidence)."""

import numpy as np
import pytest
from synthetic import write_stack
from test_sbas_inversion import NX, NY, make_stack, outputs, read


def test_vertical_component_is_los_over_u(run_alg, tmp_path):
    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in")
    los = run_alg("sbasinversion", dict(INTERFEROGRAMS=ifgs, COHERENCE=cohs, **outputs(tmp_path, "los")))
    u = np.cos(np.deg2rad(np.linspace(31, 45, NX)))[None].repeat(NY, 0)
    up = write_stack(tmp_path / "frame.geo.U.tif", u)
    vert = run_alg(
        "sbasinversion",
        dict(
            INTERFEROGRAMS=ifgs,
            COHERENCE=cohs,
            OUTPUT_COMPONENT=1,
            INCIDENCE=up,
            INCIDENCE_TYPE=1,
            **outputs(tmp_path, "vert"),
        ),
    )
    u32 = u.astype(np.float32).astype(np.float64)
    for key in ("OUTPUT_TIMESERIES", "OUTPUT_VELOCITY"):
        a, _ = read(los[key])
        b, ds = read(vert[key])
        assert np.array_equal(b, (a / u32).astype(np.float32), equal_nan=True)
        assert ds.GetMetadata()["COMPONENT"] == "vertical, horizontal motion neglected"
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".")]


def test_vertical_component_needs_geometry(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in", n_dates=4)
    out = outputs(tmp_path)
    with pytest.raises(QgsProcessingException, match="no incidence geometry"):
        run_alg("sbasinversion", dict(INTERFEROGRAMS=ifgs, OUTPUT_COMPONENT=1, **out))
    assert not any(tmp_path.glob("o_*.tif"))
