"""subsidence:sbasinversion through processing.run on a tiny LiCSAR-named stack with planted truth."""

import datetime as dt
import math
import os

import numpy as np
import pytest
from osgeo import gdal, ogr
from synthetic import sentinel1_dates, write_stack

LAMBDA = 0.05546576
NY, NX = 20, 20


def planted(dates):
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    yy, xx = np.mgrid[0:NY, 0:NX]
    rate = -50.0 * np.exp(-((yy - 10) ** 2 + (xx - 12) ** 2) / 40.0)
    ts = rate[None] * t[:, None, None] + 5.0 * np.sin(2 * np.pi * t)[:, None, None] * (xx / NX)[None]
    return ts - ts[0]


def make_stack(folder, n_dates=8, max_days=36, nan_pixels=True, names="licsar", ref_free=(3, 4)):
    """Interferograms (radians) + coherence; truth is 0 at the best-coherence pixel ``ref_free``."""
    folder.mkdir(parents=True, exist_ok=True)
    dates = sentinel1_dates(start=dt.date(2020, 1, 3), n=n_dates, gaps=(3,))
    truth = planted(dates)
    truth = truth - truth[:, ref_free[0] : ref_free[0] + 1, ref_free[1] : ref_free[1] + 1]
    rng = np.random.default_rng(0)
    ifgs, cohs, pairs = [], [], []
    for i, a in enumerate(dates):
        for j in range(i + 1, len(dates)):
            b = dates[j]
            if (b - a).days > max_days:
                continue
            phase = -(truth[j] - truth[i]) / 1000.0 * 4 * math.pi / LAMBDA
            coh = rng.uniform(0.3, 0.8, (NY, NX))
            coh[ref_free] = 0.99
            if nan_pixels:
                phase[0, 0] = -9999.0  # band NoData
                if rng.random() < 0.3:
                    phase[15, 15] = np.nan
            tag = "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
            if names == "licsar":
                fn = folder / ("%s.geo.unw.tif" % tag)
            elif names == "hyp3":
                fn = folder / (
                    "S1AA_%sT054123_%sT054122_VVP012_INT80_G_ueF_1A2B_unw_phase.tif"
                    % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
                )
            else:
                fn = folder / ("ifg_%03d.tif" % len(ifgs))
            write_stack(fn, phase, nodata=-9999.0)
            cf = folder / ("%s.geo.cc.tif" % tag)
            write_stack(cf, coh)
            ifgs.append(str(fn))
            cohs.append(str(cf))
            pairs.append((a, b))
    return dates, truth, ifgs, cohs, pairs


def outputs(tmp_path, tag="o"):
    return {
        "OUTPUT_TIMESERIES": str(tmp_path / ("%s_ts.tif" % tag)),
        "OUTPUT_VELOCITY": str(tmp_path / ("%s_vel.tif" % tag)),
        "OUTPUT_QUALITY": str(tmp_path / ("%s_q.tif" % tag)),
        "OUTPUT_NETWORK": str(tmp_path / ("%s_net.gpkg" % tag)),
    }


def read(path):
    ds = gdal.Open(path)
    return ds.ReadAsArray().astype(float).reshape(ds.RasterCount, ds.RasterYSize, ds.RasterXSize), ds


def read_table(path):
    ds = ogr.Open(path)
    lyr = ds.GetLayer(0)
    d = lyr.GetLayerDefn()
    names = [d.GetFieldDefn(i).GetName() for i in range(d.GetFieldCount())]
    return [dict(zip(names, [f.GetField(n) for n in names])) for f in lyr]


def test_noise_free_stack_recovers_truth(run_alg, tmp_path):
    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in")
    out = outputs(tmp_path)
    # LiCSAR names, our own convention (an exact 0 is a valid phase here): read as generic products
    res = run_alg("sbasinversion", dict(INTERFEROGRAMS=ifgs, COHERENCE=cohs, PRODUCT=3, **out))
    ts, ds = read(res["OUTPUT_TIMESERIES"])
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(len(dates))] == [str(d) for d in dates]
    md = ds.GetMetadata()
    assert (int(md["REFERENCE_ROW"]), int(md["REFERENCE_COL"])) == (3, 4)  # best mean coherence
    ok = np.ones((NY, NX), bool)
    ok[0, 0] = False
    assert np.all(np.isnan(ts[:, 0, 0]))  # NoData in every ifg
    assert np.max(np.abs(ts[:, ok] - truth[:, ok])) < 1e-4  # mm (float32 output)
    vel, _ = read(res["OUTPUT_VELOCITY"])
    t = np.array([(d - dates[0]).days for d in dates]) / 365.25
    X = np.stack([np.ones_like(t), t], 1)
    vt = np.linalg.lstsq(X, truth.reshape(len(dates), -1), rcond=None)[0][1].reshape(NY, NX)
    assert np.nanmax(np.abs(vel[0][ok] - vt[ok])) < 1e-3
    q, qds = read(res["OUTPUT_QUALITY"])
    assert [qds.GetRasterBand(i + 1).GetDescription() for i in range(5)] == [
        "temporal_coherence",
        "n_ifg_used",
        "residual_rms_mm",
        "velocity_std_mm_yr",
        "n_gaps",
    ]
    assert np.allclose(q[0][ok], 1.0, atol=1e-5) and np.all(q[2][ok] < 1e-3)
    assert q[1][5, 5] == len(ifgs) and q[1][15, 15] <= len(ifgs) and np.isnan(q[1][0, 0])
    assert np.all(q[4][ok] == 0)
    rows = read_table(res["OUTPUT_NETWORK"])
    assert len(rows) == len(ifgs) and all(r["used"] is True or r["used"] == 1 for r in rows)
    r0 = rows[0]
    assert r0["reference_date"] == str(pairs[0][0]) and r0["secondary_date"] == str(pairs[0][1])
    assert r0["temporal_baseline_days"] == (pairs[0][1] - pairs[0][0]).days
    assert 0.3 < r0["mean_coherence"] < 0.8 and r0["residual_rms_mm"] < 1e-3


def test_weighted_mm_input_reference_point_and_memory_cap(run_alg, tmp_path):
    """Weighted solve of LOS-mm input (sign flipped), reference point given in EPSG:4326, tiny memory cap."""
    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in", nan_pixels=False)
    mm_files = []
    for f, (a, b) in zip(ifgs, pairs):
        arr = gdal.Open(f).ReadAsArray()
        g = tmp_path / "mm" / os.path.basename(f)
        g.parent.mkdir(exist_ok=True)
        # opposite sign convention: positive = away from the satellite
        write_stack(g, -(-arr * LAMBDA / (4 * math.pi) * 1000.0))
        mm_files.append(str(g))
    # reference pixel (row 12, col 6) -> map coords -> lon/lat
    from osgeo import osr

    x, y = 500000.0 + 6.5 * 30.0, 4000000.0 - 12.5 * 30.0
    s = osr.SpatialReference()
    s.ImportFromEPSG(32649)
    d = osr.SpatialReference()
    d.ImportFromEPSG(4326)
    for r in (s, d):
        r.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat, _ = osr.CoordinateTransformation(s, d).TransformPoint(x, y)
    common = dict(
        INTERFEROGRAMS=mm_files,
        COHERENCE=cohs,
        INPUT_UNITS=2,
        FLIP_SIGN=True,
        WEIGHTING=2,
        PRODUCT=3,
        REFERENCE_POINT="%.10f,%.10f [EPSG:4326]" % (lon, lat),
    )
    a = run_alg("sbasinversion", dict(common, **outputs(tmp_path, "a")))
    b = run_alg("sbasinversion", dict(common, MEMORY_LIMIT_MB=0.05, **outputs(tmp_path, "b")))
    ta, ds = read(a["OUTPUT_TIMESERIES"])
    tb, _ = read(b["OUTPUT_TIMESERIES"])
    assert (int(ds.GetMetadata()["REFERENCE_ROW"]), int(ds.GetMetadata()["REFERENCE_COL"])) == (12, 6)
    expect = truth - truth[:, 12:13, 6:7]
    assert np.max(np.abs(ta - expect)) < 1e-4
    assert np.array_equal(ta, tb)
    for k in ("OUTPUT_VELOCITY", "OUTPUT_QUALITY"):
        assert np.array_equal(read(a[k])[0], read(b[k])[0], equal_nan=True)


def test_pairs_csv_selection_split_network_and_gap_modes(run_alg, tmp_path):
    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in", names="plain", nan_pixels=False)
    csv = tmp_path / "pairs.csv"
    lines = ["file,reference,secondary,bperp"]
    for k, (f, (a, b)) in enumerate(zip(ifgs, pairs)):
        lines.append("%s,%s,%s,%.1f" % (os.path.basename(f), a, b, 500.0 if k == 1 else 20.0))
    csv.write_text("\n".join(lines) + "\n")
    # drop every pair bridging dates[3] -> dates[4]: the network splits in two
    bridge = [os.path.basename(f) for f, (a, b) in zip(ifgs, pairs) if a <= dates[3] and b >= dates[4]]
    base = dict(
        INTERFEROGRAMS=ifgs,
        PAIRS=str(csv),
        MAX_PERP_BASELINE=300,
        EXCLUDE=";".join(bridge),
        REFERENCE_POINT="%f,%f [EPSG:32649]" % (500000 + 4.5 * 30, 4000000 - 3.5 * 30),
    )
    got = {}
    for mode in (0, 1, 2):
        res = run_alg("sbasinversion", dict(base, GAP_HANDLING=mode, **outputs(tmp_path, "g%d" % mode)))
        got[mode] = read(res["OUTPUT_TIMESERIES"])[0]
        q = read(res["OUTPUT_QUALITY"])[0]
        assert np.all(q[4] == 1)  # one gap everywhere, reported
        rows = read_table(res["OUTPUT_NETWORK"])
        status = {r["file"].split("/")[-1]: r["status"] for r in rows}
        assert status[os.path.basename(ifgs[1])].startswith("perpendicular baseline 500.0 m")
        assert all(status[b] == "excluded" for b in bridge)
    assert np.max(np.abs(got[0][:4] - truth[:4])) < 1e-4  # first part exact
    assert np.allclose(got[0][4], got[0][3], atol=1e-4)  # min-norm: no motion across the gap
    assert np.all(np.isnan(got[2][4:])) and np.max(np.abs(got[2][:4] - truth[:4])) < 1e-4
    assert np.max(np.abs(got[1][:4] - truth[:4])) < 1e-3
    assert not np.allclose(got[1][4:], got[0][4:])  # NSBAS bridges with the trend


def test_hyp3_names(run_alg, tmp_path):
    dates, truth, ifgs, _, _ = make_stack(tmp_path / "in", names="hyp3", nan_pixels=False, n_dates=5)
    res = run_alg(
        "sbasinversion",
        dict(
            INTERFEROGRAMS=ifgs,
            REFERENCE_POINT="%f,%f [EPSG:32649]" % (500000 + 4.5 * 30, 4000000 - 3.5 * 30),
            **outputs(tmp_path),
        ),
    )
    ts = read(res["OUTPUT_TIMESERIES"])[0]
    assert ts.shape[0] == 5 and np.max(np.abs(ts - truth)) < 1e-4


def _left(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.is_file() and p.name.startswith("o_"))


def _case(tmp_path, case):
    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in", n_dates=5)
    p = dict(INTERFEROGRAMS=ifgs)
    if case == "grid":
        arr = gdal.Open(ifgs[2]).ReadAsArray()
        write_stack(ifgs[2], arr, origin=(500015.0, 4000000.0))  # half a pixel off the others' lattice
        return p, "not on the pixel lattice of .*" + os.path.basename(ifgs[2]) + r" \(origin 0.5"
    if case == "duplicate":
        d = tmp_path / "in" / "x"
        d.mkdir()
        dup = d / os.path.basename(ifgs[0])
        write_stack(dup, gdal.Open(ifgs[0]).ReadAsArray())
        p["INTERFEROGRAMS"] = ifgs + [str(dup)]
        return p, "duplicate pair"
    if case == "same_date":
        f = tmp_path / "in" / "20200103_20200103.geo.unw.tif"
        write_stack(f, np.zeros((NY, NX)))
        p["INTERFEROGRAMS"] = ifgs + [str(f)]
        return p, "reference date equals secondary date"
    if case == "two_dates":
        p["INTERFEROGRAMS"] = ifgs[:1]
        return p, "at least 3 acquisition dates"
    if case == "no_dates":
        f = tmp_path / "in" / "unwrapped.tif"
        write_stack(f, np.zeros((NY, NX)))
        p["INTERFEROGRAMS"] = ifgs + [str(f)]
        return p, "unwrapped.tif"
    if case == "coherence":
        p["COHERENCE"] = cohs[:-1]
        p["WEIGHTING"] = 1
        return p, "coherence list does not match.*" + os.path.basename(ifgs[-1])
    if case == "ref_outside":
        p["REFERENCE_POINT"] = "400000,4000000 [EPSG:32649]"
        return p, "outside the interferograms"
    if case == "ref_nodata":
        p["REFERENCE_POINT"] = "%f,%f [EPSG:32649]" % (500000 + 15, 4000000 - 15)
        return p, "reference pixel \\(row 0, col 0.*NoData"
    if case == "all_nan":
        for f in ifgs:
            write_stack(f, np.full((NY, NX), np.nan))
        return p, "every pixel is NoData"
    if case == "all_nan_refpoint":
        for f in ifgs:
            write_stack(f, np.full((NY, NX), np.nan))
        p["REFERENCE_POINT"] = "%f,%f [EPSG:32649]" % (500000 + 45, 4000000 - 45)
        return p, "NoData"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "grid",
        "duplicate",
        "same_date",
        "two_dates",
        "no_dates",
        "coherence",
        "ref_outside",
        "ref_nodata",
        "all_nan",
        "all_nan_refpoint",
    ],
)
def test_bad_input_raises_and_leaves_nothing(run_alg, tmp_path, case):
    from qgis.core import QgsProcessingException

    params, message = _case(tmp_path, case)
    with pytest.raises(QgsProcessingException, match=message):
        run_alg("sbasinversion", dict(params, **outputs(tmp_path)))
    assert _left(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and "partial" in p.name]


def test_cancel_mid_run_leaves_no_output(qgis_app, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    class CancelLater(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def isCanceled(self):
            self.calls += 1
            return self.calls > 3

    dates, truth, ifgs, cohs, pairs = make_stack(tmp_path / "in", n_dates=5)
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run(
            "subsidence:sbasinversion",
            dict(INTERFEROGRAMS=ifgs, MEMORY_LIMIT_MB=0.02, **outputs(tmp_path)),
            feedback=CancelLater(),
            context=QgsProcessingContext(),
        )
    assert _left(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_help_on_every_parameter(qgis_app):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("subsidence:sbasinversion")
    assert alg is not None and alg.shortHelpString()
    names = {p.name() for p in alg.parameterDefinitions()}
    for n in (
        "INTERFEROGRAMS",
        "PAIRS",
        "COHERENCE",
        "MIN_COHERENCE",
        "WEIGHTING",
        "INPUT_UNITS",
        "WAVELENGTH",
        "REFERENCE_POINT",
        "MAX_TEMPORAL_BASELINE",
        "MAX_PERP_BASELINE",
        "GAP_HANDLING",
        "MEMORY_LIMIT_MB",
        "OUTPUT_TIMESERIES",
        "OUTPUT_VELOCITY",
        "OUTPUT_QUALITY",
        "OUTPUT_NETWORK",
    ):
        assert n in names
    for p in alg.parameterDefinitions():
        assert p.help(), p.name()


def test_loaded_outputs_are_styled_and_grouped(qgis_app, tmp_path):
    """runAndLoadResults: velocity and time series diverging around 0, quality sequential, one group."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    project = QgsProject.instance()
    project.clear()
    _, _, ifgs, cohs, _ = make_stack(tmp_path / "in")
    ctx = QgsProcessingContext()
    ctx.setProject(project)
    processing.runAndLoadResults(
        "subsidence:sbasinversion",
        dict(INTERFEROGRAMS=ifgs, COHERENCE=cohs, **outputs(tmp_path)),
        feedback=QgsProcessingFeedback(),
        context=ctx,
    )
    layers = {os.path.basename(lyr.source().split("|")[0]): lyr for lyr in project.mapLayers().values()}
    for name in ("o_ts.tif", "o_vel.tif", "o_q.tif"):
        assert name in layers, layers.keys()
    vel, ts, q = layers["o_vel.tif"].renderer(), layers["o_ts.tif"].renderer(), layers["o_q.tif"].renderer()
    for r in (vel, ts, q):
        assert r.type() == "singlebandpseudocolor"
    assert vel.classificationMin() == pytest.approx(-vel.classificationMax())
    shown = ts.inputBand() if hasattr(ts, "inputBand") else ts.band()  # band() is deprecated on QGIS >= 3.38
    assert shown == gdal.Open(str(tmp_path / "o_ts.tif")).RasterCount  # the last date is shown
    assert ts.classificationMin() == pytest.approx(-ts.classificationMax())
    assert q.classificationMin() != pytest.approx(-q.classificationMax())
    groups = {
        project.layerTreeRoot().findLayer(layers[n].id()).parent().name() for n in ("o_ts.tif", "o_vel.tif", "o_q.tif")
    }
    assert len(groups) == 1 and groups.pop().startswith("SBAS inversion \u2013 ")  # one group, named after the run
    project.clear()
