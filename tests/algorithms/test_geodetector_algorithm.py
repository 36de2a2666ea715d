"""subsidence:geodetector through processing.run (vector and raster mode)."""

import numpy as np
import pytest
from osgeo import gdal
from synthetic import write_band

from subsidence_toolkit.core.stats import geodetector as G


def _table(path_or_layer):
    from qgis.core import QgsVectorLayer

    lyr = path_or_layer if not isinstance(path_or_layer, str) else QgsVectorLayer(path_or_layer, "t", "ogr")
    if isinstance(path_or_layer, str) and not lyr.isValid():
        from qgis.core import QgsProcessingUtils  # noqa: F401
    names = [f.name() for f in lyr.fields()]
    return [dict(zip(names, f.attributes())) for f in lyr.getFeatures()]


def _csv_points(tmp_path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    strong = rng.uniform(0, 10, n)
    weak = rng.uniform(0, 10, n)
    land = rng.choice(["crop", "urban", "bare"], n)
    y = -3 * strong + 0.3 * weak + np.where(land == "urban", -5, 0) + rng.normal(0, 1, n)
    lines = ["x,y,rate,strong,weak,land"]
    for i in range(n):
        w = "" if i % 25 == 0 else "%.6f" % weak[i]
        lines.append("%.4f,%.4f,%.6f,%.6f,%s,%s" % (i % 20, i // 20, y[i], strong[i], w, land[i]))
    p = tmp_path / "pts.csv"
    p.write_text("\n".join(lines) + "\n")
    uri = (
        "file://%s?delimiter=,&xField=x&yField=y&crs=EPSG:4326&field=rate:double&field=strong:double"
        "&field=weak:double&field=land:text" % p
    )
    from qgis.core import QgsVectorLayer

    lyr = QgsVectorLayer(uri, "pts", "delimitedtext")
    assert lyr.isValid()
    return lyr, y, strong, weak, land


def test_vector_mode_matches_core(run_alg, tmp_path):
    lyr, y, strong, weak, land = _csv_points(tmp_path)
    html = str(tmp_path / "r.html")
    res = run_alg(
        "geodetector",
        {
            "INPUT": lyr,
            "TARGET_FIELD": "rate",
            "FACTOR_FIELDS": ["strong", "weak", "land"],
            "METHOD": 0,
            "CLASSES": 6,
            "FACTOR_SETTINGS": "weak=quantile:4",
            "OUTPUT_FACTOR": "memory:",
            "OUTPUT_INTERACTION": "memory:",
            "OUTPUT_RISK": "memory:",
            "OUTPUT_RISK_TESTS": "memory:",
            "OUTPUT_ECOLOGICAL": "memory:",
            "OUTPUT_HTML": html,
            "CONFIDENCE_LEVEL": 0.9,
        },
    )
    from qgis.core import QgsProcessingContext  # noqa: F401

    fac = {r["factor"]: r for r in _table(res["OUTPUT_FACTOR"])}
    assert set(fac) == {"strong", "weak", "land"}
    weak_f = np.where([i % 25 == 0 for i in range(len(y))], np.nan, np.round(weak, 6))
    ref = G.run_geodetector(
        np.round(y, 6),
        {"strong": np.round(strong, 6), "weak": weak_f, "land": land},
        {"weak": {"method": "quantile", "k": 4}},
        "natural",
        6,
        messages=[],
        ci_level=0.9,
    )
    for r in ref["factor"].itertuples():
        assert fac[r.factor]["q"] == pytest.approx(r.q, rel=1e-9)
        assert fac[r.factor]["q_ci_low"] == pytest.approx(r.q_ci_low, rel=1e-6)
        assert fac[r.factor]["q_ci_high"] == pytest.approx(r.q_ci_high, rel=1e-6)
        assert fac[r.factor]["ci_level"] == 0.9
        assert r.q_ci_low < r.q_ci_high
        assert fac[r.factor]["n"] == r.n
    assert fac["weak"]["n"] == len(y) - 12  # NULL rows dropped for that factor only
    assert fac["land"]["method"] == "categorical" and fac["land"]["strata"] == 3
    assert max(fac, key=lambda k: fac[k]["q"]) == "strong"
    inter = _table(res["OUTPUT_INTERACTION"])
    assert len(inter) == 3 and all(r["type"] in G.INTERACTION_TYPES for r in inter)
    ref_i = {(r.factor_a, r.factor_b): r for r in ref["interaction"].itertuples()}
    for r in inter:
        assert r["p_wang_ab"] == pytest.approx(ref_i[(r["factor_a"], r["factor_b"])].p_wang_ab, rel=1e-6, abs=1e-12)
    assert len(_table(res["OUTPUT_ECOLOGICAL"])) == 3
    assert {r["factor"] for r in _table(res["OUTPUT_RISK"])} == {"strong", "weak", "land"}
    with open(html, encoding="utf-8") as fh:
        text = fh.read()
    assert "Factor detector" in text and "strong" in text and "Confidence interval of q" in text


def test_vector_mode_sampling_and_errors(run_alg, tmp_path):
    from qgis.core import QgsProcessingException

    lyr, y, *_ = _csv_points(tmp_path)
    res = run_alg(
        "geodetector",
        {
            "INPUT": lyr,
            "TARGET_FIELD": "rate",
            "FACTOR_FIELDS": ["strong", "land"],
            "SUBSIDENCE_THRESHOLD": -15,
            "SAMPLE_RATIO": "1:0.5",
            "SEED": 4,
            "OUTPUT_FACTOR": "memory:",
            "OUTPUT_INTERACTION": "memory:",
            "OUTPUT_RISK": "memory:",
            "OUTPUT_ECOLOGICAL": "memory:",
        },
    )
    n_sub = int(np.sum(np.round(y, 6) <= -15))
    fac = _table(res["OUTPUT_FACTOR"])
    assert fac[0]["n"] == n_sub + round(0.5 * n_sub)
    assert fac[0]["ci_level"] == 0.95  # optional parameter left out: its default
    with pytest.raises(QgsProcessingException, match="unknown factors"):
        run_alg(
            "geodetector",
            {
                "INPUT": lyr,
                "TARGET_FIELD": "rate",
                "FACTOR_FIELDS": ["strong"],
                "FACTOR_SETTINGS": "nope=5",
                "OUTPUT_FACTOR": "memory:",
                "OUTPUT_INTERACTION": "memory:",
                "OUTPUT_RISK": "memory:",
                "OUTPUT_ECOLOGICAL": "memory:",
            },
        )
    with pytest.raises(QgsProcessingException, match="vector mode|raster mode"):
        run_alg(
            "geodetector",
            {
                "OUTPUT_FACTOR": "memory:",
                "OUTPUT_INTERACTION": "memory:",
                "OUTPUT_RISK": "memory:",
                "OUTPUT_ECOLOGICAL": "memory:",
            },
        )


def _write(path, x0, y0, dx, arr, nodata=None, dtype=gdal.GDT_Float32):
    return write_band(path, (x0, dx, 0, y0, 0, -dx), arr, 4326, nodata=nodata, dtype=dtype)


def test_raster_mode_alignment_and_stratum_mean(run_alg, tmp_path):
    from qgis.core import QgsRasterLayer

    rng = np.random.default_rng(1)
    ny, nx = 30, 40
    zone = (np.arange(nx)[None, :] // 10).repeat(ny, 0)  # 4 zones, the true driver
    y = np.array([-30.0, -10.0, 0.0, 5.0])[zone] + rng.normal(0, 1, (ny, nx))
    y[0, :5] = np.nan
    t = _write(tmp_path / "y.tif", 100.0, 30.0, 0.1, y)
    # driver on a 2x finer grid (integer -> nearest), noise factor on a coarser, larger grid with NoData
    fine = np.repeat(np.repeat(zone, 2, 0), 2, 1).astype(np.int16)
    f1 = _write(tmp_path / "zone.tif", 100.0, 30.0, 0.05, fine, dtype=gdal.GDT_Int16)
    noise = rng.normal(size=(20, 25))
    noise[:6, :6] = -9999
    f2 = _write(tmp_path / "noise.tif", 99.5, 30.5, 0.2, noise, nodata=-9999)
    out = str(tmp_path / "sm.tif")
    res = run_alg(
        "geodetector",
        {
            "TARGET_RASTER": QgsRasterLayer(t, "y"),
            "FACTOR_RASTERS": [QgsRasterLayer(f1, "zone"), QgsRasterLayer(f2, "noise")],
            "CLASSES": 5,
            "OUTPUT_FACTOR": "memory:",
            "OUTPUT_INTERACTION": "memory:",
            "OUTPUT_RISK": "memory:",
            "OUTPUT_ECOLOGICAL": "memory:",
            "OUTPUT_STRATUM_MEAN": out,
        },
    )
    fac = {r["factor"]: r for r in _table(res["OUTPUT_FACTOR"])}
    assert fac["zone"]["method"] == "categorical" and fac["zone"]["strata"] == 4
    assert fac["zone"]["q"] > 0.95 > 0.2 > fac["noise"]["q"]
    assert fac["zone"]["n"] == ny * nx - 5
    assert fac["noise"]["n"] < fac["zone"]["n"]  # NoData masked for that factor only
    sm = gdal.Open(out).ReadAsArray()
    means = [np.nanmean(y[zone == z]) for z in range(4)]
    np.testing.assert_allclose(sm, np.array(means)[zone], rtol=1e-5)


def test_raster_mode_no_overlap(run_alg, tmp_path):
    from qgis.core import QgsProcessingException, QgsRasterLayer

    t = _write(tmp_path / "y.tif", 0.0, 10.0, 1.0, np.random.default_rng(0).normal(size=(5, 5)))
    f = _write(tmp_path / "far.tif", 50.0, 60.0, 1.0, np.ones((5, 5)))
    with pytest.raises(QgsProcessingException, match="does not overlap"):
        run_alg(
            "geodetector",
            {
                "TARGET_RASTER": QgsRasterLayer(t, "y"),
                "FACTOR_RASTERS": [QgsRasterLayer(f, "far")],
                "OUTPUT_FACTOR": "memory:",
                "OUTPUT_INTERACTION": "memory:",
                "OUTPUT_RISK": "memory:",
                "OUTPUT_ECOLOGICAL": "memory:",
            },
        )


def _write_crs(path, gt, arr, epsg, nodata=None, dtype=gdal.GDT_Float32):
    return write_band(path, gt, arr, epsg, nodata=nodata, dtype=dtype)


def _same(rows_a, rows_b):
    assert len(rows_a) == len(rows_b) > 0
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and isinstance(vb, float) and np.isnan(va) and np.isnan(vb):
                continue
            assert va == vb, (k, va, vb)


def test_raster_mode_blockwise_identical_for_any_memory_limit(run_alg, tmp_path):
    from qgis.core import QgsRasterLayer

    rng = np.random.default_rng(7)
    ny, nx = 21, 27
    x0, y0, dx = 500000.0, 4000000.0, 100.0
    zone = (np.arange(nx)[None, :] * 3 // nx).repeat(ny, 0)
    y = np.array([-25.0, -5.0, 2.0])[zone] + rng.normal(0, 3, (ny, nx))
    y[2, :6] = np.nan
    t = _write_crs(tmp_path / "y.tif", (x0, dx, 0, y0, 0, -dx), y, 32650)
    fine = np.repeat(np.repeat(zone, 2, 0), 2, 1).astype(np.int16)
    fine[:4, :4] = 99
    f1 = _write_crs(
        tmp_path / "zone.tif", (x0, dx / 2, 0, y0, 0, -dx / 2), fine, 32650, nodata=99, dtype=gdal.GDT_Int16
    )
    geo = rng.normal(size=(40, 60)).cumsum(1)
    geo[15:25, 10:30] = -9999
    f2 = _write_crs(tmp_path / "geo.tif", (116.995, 0.0006, 0, 36.15, 0, -0.0006), geo, 4326, nodata=-9999)
    results = []
    for mem in (0.001, 1024):
        sm = str(tmp_path / ("sm_%g.tif" % mem))
        res = run_alg(
            "geodetector",
            {
                "TARGET_RASTER": QgsRasterLayer(t, "y"),
                "FACTOR_RASTERS": [QgsRasterLayer(f1, "zone"), QgsRasterLayer(f2, "geo")],
                "CLASSES": 4,
                "MEMORY_LIMIT_MB": mem,
                "STRATUM_FACTOR": "geo",
                "OUTPUT_FACTOR": "memory:",
                "OUTPUT_INTERACTION": "memory:",
                "OUTPUT_RISK": "memory:",
                "OUTPUT_RISK_TESTS": "memory:",
                "OUTPUT_ECOLOGICAL": "memory:",
                "OUTPUT_STRATUM_MEAN": sm,
            },
        )
        results.append(
            {
                k: _table(res[k])
                for k in (
                    "OUTPUT_FACTOR",
                    "OUTPUT_INTERACTION",
                    "OUTPUT_RISK",
                    "OUTPUT_RISK_TESTS",
                    "OUTPUT_ECOLOGICAL",
                )
            }
        )
        results[-1]["sm"] = gdal.Open(sm).ReadAsArray()
    for k in results[0]:
        if k == "sm":
            np.testing.assert_array_equal(results[0][k], results[1][k])
        else:
            _same(results[0][k], results[1][k])
    fac = {r["factor"]: r for r in results[0]["OUTPUT_FACTOR"]}
    assert fac["zone"]["n"] == np.isfinite(y).sum() - 4  # 2x2 target pixels under the zone NoData patch
    assert fac["geo"]["n"] < fac["zone"]["n"]  # NoData and no coverage masked for that factor only
    assert fac["zone"]["q"] > 0.9
    # same tables as the core on the whole-band arrays (same warp, read at once)
    valid = np.isfinite(y)
    fs = {
        "zone": G.align_to_grid(f1, t, categorical=True)[valid].astype(np.float32),
        "geo": G.align_to_grid(f2, t)[valid].astype(np.float32),
    }
    ref = G.run_geodetector(y[valid].astype(np.float32), fs, default_k=4, messages=[])
    for r in ref["factor"].itertuples():
        assert fac[r.factor]["q"] == r.q and fac[r.factor]["n"] == r.n
    inter = results[0]["OUTPUT_INTERACTION"][0]
    assert inter["q_ab"] == ref["interaction"].q_ab[0] and inter["p_wang_ab"] == ref["interaction"].p_wang_ab[0]


def test_split_algorithms_show_one_mode_each(qgis_app):
    from qgis.core import QgsApplication

    reg = QgsApplication.processingRegistry()
    table = reg.algorithmById("subsidence:geodetectortable")
    raster = reg.algorithmById("subsidence:geodetectorraster")
    both = reg.algorithmById("subsidence:geodetector")  # kept for saved models and command lines
    from subsidence_toolkit.processing_provider.compat import AlgorithmFlag, ParameterFlag

    assert both.flags() & AlgorithmFlag.HideFromToolbox
    assert not table.flags() & AlgorithmFlag.HideFromToolbox
    optional = ParameterFlag.Optional

    def required(alg):
        return {p.name() for p in alg.parameterDefinitions() if not p.flags() & optional}

    assert {"INPUT", "TARGET_FIELD", "FACTOR_FIELDS", "OUTPUT_FACTOR"} <= required(table)
    assert (
        table.parameterDefinition("TARGET_RASTER") is None and table.parameterDefinition("OUTPUT_STRATUM_MEAN") is None
    )
    assert {"TARGET_RASTER", "FACTOR_RASTERS", "OUTPUT_FACTOR"} <= required(raster)
    assert raster.parameterDefinition("INPUT") is None
    for alg in (table, raster, both):
        outs = required(alg) & {p.name() for p in alg.destinationParameterDefinitions()}
        assert outs == {"OUTPUT_FACTOR"}  # risk, Welch, ecological, interaction: optional
        assert not any("(optional)" in p.description() for p in alg.parameterDefinitions())


def test_table_algorithm_with_only_the_factor_output(run_alg, tmp_path):
    lyr, y, *_ = _csv_points(tmp_path)
    res = run_alg(
        "geodetectortable",
        {
            "INPUT": lyr,
            "TARGET_FIELD": "rate",
            "FACTOR_FIELDS": ["strong", "land"],
            "OUTPUT_FACTOR": str(tmp_path / "f.csv"),
        },
    )
    fac = {r["factor"]: r for r in _table(res["OUTPUT_FACTOR"])}
    assert set(fac) == {"strong", "land"} and fac["strong"]["q"] > fac["land"]["q"]
    assert set(res) == {"OUTPUT_FACTOR"}
    # the CSV reads back typed (a .csvt side-car): numbers as numbers, not text as GDAL's CSV alone gives
    assert (tmp_path / "f.csvt").exists()
    from qgis.core import QgsVectorLayer

    lyr = QgsVectorLayer(res["OUTPUT_FACTOR"], "f", "ogr")
    types = {f.name(): f.typeName().lower() for f in lyr.fields()}
    assert types["factor"] == "string" and types["q"] == "real", types
    assert any(t.startswith("integer") for t in types.values()), types
    assert isinstance(fac["strong"]["q"], float)
