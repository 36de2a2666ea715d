import datetime as dt
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from synthetic import write_stack

from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.stats import sampling as S

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GT = (500000.0, 30.0, 0.0, 4000000.0, 0.0, -30.0)  # write_stack defaults (EPSG:32649)


# ------------------------------------------------------------------ classes
def test_class_boundaries_lower_inclusive_upper_exclusive():
    v = np.array([0.0, 19.999, 20.0, 49.999, 50.0, 99.999, 100.0, 1e6, -20.0, -100.0, np.nan, -0.0])
    got = S.classify(v, S.DEFAULT_BREAKS)
    assert got.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 1, 3, -1, 0]
    # below the first break is unclassified
    assert S.classify(np.array([4.999, 5.0, -5.0]), [5, 10]).tolist() == [-1, 0, 0]


def test_signed_mode_splits_subsidence_and_uplift():
    names = S.class_names(S.DEFAULT_BREAKS, signed=True)
    assert names[:2] == ["subsidence micro", "subsidence mild"] and names[4] == "uplift micro"
    v = np.array([-19.9, -20.0, -50.0, -150.0, 0.0, 20.0, 150.0, np.nan])
    got = S.classify(v, S.DEFAULT_BREAKS, signed=True)
    assert [names[i] if i >= 0 else None for i in got] == [
        "subsidence micro",
        "subsidence mild",
        "subsidence moderate",
        "subsidence severe",
        "uplift micro",
        "uplift mild",
        "uplift severe",
        None,
    ]
    iv = S.class_intervals(S.DEFAULT_BREAKS, signed=True)
    assert iv[0] == "-20 < v < 0 mm/yr" and iv[1] == "-50 < v <= -20 mm/yr" and iv[3] == "v <= -100 mm/yr"
    assert iv[4] == "0 <= v < 20 mm/yr" and iv[7] == "v >= 100 mm/yr"
    assert S.class_intervals(S.DEFAULT_BREAKS)[1] == "20 <= |v| < 50 mm/yr"


@pytest.mark.parametrize(
    "breaks,message",
    [
        ("0,20,20,100", "strictly increasing: 20 (item 3) follows 20"),
        ("0,50,20", "strictly increasing: 20 (item 3) follows 50"),
        ("0,a,50", "item 2 ('a') is not a number"),
        ("", "no break given"),
        ([0, float("inf")], "not finite"),
    ],
)
def test_bad_breaks(breaks, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        S.parse_breaks(breaks)


def test_names_must_match_breaks():
    assert S.parse_names(None, 4) == ["micro", "mild", "moderate", "severe"]
    assert S.parse_names("low, high", 2) == ["low", "high"]
    with pytest.raises(ValueError, match="3 names given for 4 breaks"):
        S.class_names([0, 20, 50, 100], "a,b,c")
    with pytest.raises(ValueError, match="unique"):
        S.parse_names("a,a", 2)


# ------------------------------------------------------------------ selection
@pytest.fixture
def velocity(tmp_path):
    """40 x 50 velocity raster with NaN holes; 5 severe pixels only."""
    rng = np.random.default_rng(7)
    v = rng.uniform(-99, 99, (40, 50))
    v[rng.random(v.shape) < 0.3] = np.nan
    sev = [(1, 1), (5, 7), (20, 30), (33, 3), (39, 49)]
    for r, c in sev:
        v[r, c] = -150.0 - r
    return write_stack(tmp_path / "vel.tif", v), v, sev


def test_same_seed_same_points_other_seed_other_points(velocity):
    path, v, _ = velocity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", S.SamplingWarning)
        a, _, _ = S.sample_deformation_classes(path, 20, seed=3)
        b, _, _ = S.sample_deformation_classes(path, 20, seed=3, memory_mb=1e-4)  # one row per block
        c, _, _ = S.sample_deformation_classes(path, 20, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["row", "col"]].equals(c[["row", "col"]])
    # same class membership and the same count, different pixels
    assert (a["class"].value_counts() == c["class"].value_counts()).all()


def test_points_valid_in_their_class_at_pixel_centres(velocity):
    path, v, _ = velocity
    with pytest.warns(S.SamplingWarning):
        pts, rep, msgs = S.sample_deformation_classes(path, 30, seed=11)
    vals = v[pts["row"], pts["col"]]
    assert np.isfinite(vals).all()  # never on NoData
    np.testing.assert_allclose(pts["velocity"], vals)
    assert (S.classify(vals, S.DEFAULT_BREAKS) == pts["class_index"]).all()
    np.testing.assert_allclose(pts["x"], GT[0] + (pts["col"] + 0.5) * GT[1])
    np.testing.assert_allclose(pts["y"], GT[3] + (pts["row"] + 0.5) * GT[5])
    assert not pts.duplicated(["row", "col"]).any()
    # counts per class = min(requested, available), available counted independently
    cls = S.classify(v, S.DEFAULT_BREAKS)
    for k, name in enumerate(S.DEFAULT_NAMES):
        avail = int((cls == k).sum())
        r = rep[rep["class"] == name].iloc[0]
        assert r["available"] == avail and r["selected"] == min(30, avail)
        assert (pts["class"] == name).sum() == min(30, avail)


def test_fewer_valid_pixels_than_requested_yields_all_and_warns(velocity):
    path, v, sev = velocity
    with pytest.warns(S.SamplingWarning, match="'severe'.*only 5 valid pixels, fewer than the 30"):
        pts, rep, msgs = S.sample_deformation_classes(path, 30, seed=1)
    got = sorted(map(tuple, pts.loc[pts["class"] == "severe", ["row", "col"]].to_numpy().tolist()))
    assert got == sorted(sev)
    assert rep.set_index("class").loc["severe", "status"] == "fewer"
    assert any("severe" in m for m in msgs)


def test_empty_class_reported_not_fabricated(tmp_path):
    v = np.linspace(0, 45, 100).reshape(10, 10)  # only micro and mild
    path = write_stack(tmp_path / "v.tif", v)
    with pytest.warns(S.SamplingWarning, match="'moderate'.*is empty"):
        pts, rep, msgs = S.sample_deformation_classes(path, 5, seed=0)
    st = rep.set_index("class")["status"].to_dict()
    assert st == {"micro": "ok", "mild": "ok", "moderate": "empty", "severe": "empty"}
    assert set(pts["class"]) == {"micro", "mild"} and len(pts) == 10
    assert rep.set_index("class").loc["severe", "selected"] == 0


def test_selection_is_uniform_over_the_class():
    # 60 pixels of one class, 6 drawn per seed, 400 seeds: each pixel expected 40 times
    v = np.full((6, 10), 10.0)
    hits = np.zeros(60)
    for seed in range(400):
        s = S.ClassSampler(S.DEFAULT_BREAKS, 6, seed=seed, raster_xsize=10)
        s.add_block(v[:3], 0)
        s.add_block(v[3:], 3)
        pts, _, _ = s.result(GT)
        assert len(pts) == 6
        np.add.at(hits, pts["row"] * 10 + pts["col"], 1)
    from scipy import stats

    chi2 = ((hits - 40.0) ** 2 / 40.0).sum()
    assert stats.chi2.sf(chi2, 59) > 1e-3


def test_min_spacing_respected_and_reported(tmp_path):
    v = np.full((30, 30), 5.0)
    path = write_stack(tmp_path / "v.tif", v)
    pts, rep, _ = S.sample_deformation_classes(path, 10, seed=2, min_spacing=200.0)
    xy = pts[["x", "y"]].to_numpy()
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    assert len(pts) == 10 and d[np.triu_indices(10, 1)].min() >= 200.0
    # a 900 m square cannot hold 50 points 400 m apart: fewer points + warning, never closer ones
    with pytest.warns(S.SamplingWarning, match="minimum spacing 400"):
        pts, rep, _ = S.sample_deformation_classes(path, 50, seed=2, min_spacing=400.0)
    assert rep.iloc[0]["status"] == "spacing" and 0 < len(pts) < 50
    xy = pts[["x", "y"]].to_numpy()
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    assert d[np.triu_indices(len(pts), 1)].min() >= 400.0
    with pytest.raises(ValueError, match="minimum spacing"):
        S.sample_deformation_classes(path, 5, min_spacing=-1)


def test_area_mask_restricts_points_and_no_overlap_errors(velocity):
    path, v, _ = velocity
    from osgeo import gdal

    ds = gdal.Open(path)
    # polygon over columns 10..19, rows 5..14 (pixel edges)
    x0, x1 = GT[0] + 10 * 30, GT[0] + 20 * 30
    y0, y1 = GT[3] - 15 * 30, GT[3] - 5 * 30
    wkt = "POLYGON((%f %f,%f %f,%f %f,%f %f,%f %f))" % (x0, y0, x1, y0, x1, y1, x0, y1, x0, y0)
    win, mask = S.polygon_window_mask(ds, wkt, "area 'A'")
    assert win == (10, 5, 10, 10) and mask.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", S.SamplingWarning)
        pts, rep, _ = S.sample_deformation_classes(ds, 1000, seed=0, window=win, mask=mask, area="A")
    assert pts["col"].between(10, 19).all() and pts["row"].between(5, 14).all()
    assert (pts["area"] == "A").all()
    assert len(pts) == np.isfinite(v[5:15, 10:20]).sum()
    far = "POLYGON((0 0,1 0,1 1,0 1,0 0))"
    with pytest.raises(ValueError, match="area 'far' does not overlap the raster"):
        S.polygon_window_mask(ds, far, "area 'far'")


# ------------------------------------------------------------------ window means
def _analytic(tmp_path, epsg=32649, origin=(500000.0, 4000000.0), pixel=30.0, ny=20, nx=25, nb=3):
    r, c = np.mgrid[0:ny, 0:nx]
    data = np.stack([100.0 * b + 10.0 * r + c for b in range(nb)]).astype(np.float64)
    dates = [dt.date(2020, 1 + b, 15) for b in range(nb)]
    return write_stack(tmp_path / ("a%d.tif" % epsg), data, dates=dates, epsg=epsg, origin=origin, pixel=pixel), data


def test_window_means_analytic(tmp_path):
    path, data = _analytic(tmp_path)
    cx = lambda c: GT[0] + (c + 0.5) * 30  # noqa: E731
    cy = lambda r: GT[3] - (r + 0.5) * 30  # noqa: E731
    # window 0: pixel under the point (a point off-centre inside pixel (4, 7))
    m, n = S.window_means(path, [cx(7) + 11], [cy(4) - 13], 0)
    np.testing.assert_allclose(m[0], [47, 147, 247])
    assert n[0].tolist() == [1, 1, 1]
    # 90 m square centred on a pixel centre: 3x3 (edges inclusive); linear field -> centre value
    m, n = S.window_means(path, [cx(7)], [cy(4)], 90.0)
    np.testing.assert_allclose(m[0], [47, 147, 247])
    assert n[0, 0] == 9
    # 60 m square centred on a pixel corner: 2x2 pixels (rows 4-5, cols 7-8)
    m, n = S.window_means(path, [GT[0] + 8 * 30], [GT[3] - 5 * 30], 60.0)
    np.testing.assert_allclose(m[0, 0], np.mean([47, 48, 57, 58]))
    assert n[0, 0] == 4
    # window smaller than a pixel with no centre inside -> the pixel under the point
    m, n = S.window_means(path, [cx(7) + 12], [cy(4)], 10.0)
    np.testing.assert_allclose(m[0, 0], 47)
    # clipped at the raster edge: 5x5 around (0, 0) -> rows 0-2, cols 0-2
    m, n = S.window_means(path, [cx(0)], [cy(0)], 150.0)
    np.testing.assert_allclose(m[0, 0], data[0, :3, :3].mean())
    assert n[0, 0] == 9
    # outside the raster
    m, n = S.window_means(path, [GT[0] - 1000], [cy(0)], 90.0)
    assert np.isnan(m).all() and (n == 0).all()
    with pytest.raises(ValueError, match="window side must be >= 0"):
        S.window_means(path, [cx(0)], [cy(0)], -1)


def test_window_means_skip_nodata(tmp_path):
    data = np.arange(25, dtype=float).reshape(1, 5, 5)
    data[0, 2, 2] = -9999
    data[0, 1, 1] = -9999
    path = write_stack(tmp_path / "nd.tif", data, nodata=-9999)
    m, n = S.window_means(path, [GT[0] + 2.5 * 30], [GT[3] - 2.5 * 30], 90.0)
    block = data[0, 1:4, 1:4].ravel()
    block = block[block != -9999]
    np.testing.assert_allclose(m[0, 0], block.mean())
    assert n[0, 0] == 7
    m, n = S.window_means(path, [GT[0] + 2.5 * 30], [GT[3] - 2.5 * 30], 0)
    assert np.isnan(m[0, 0]) and n[0, 0] == 0


def test_window_in_metres_on_geographic_raster(tmp_path):
    path, data = _analytic(tmp_path, epsg=4326, origin=(100.0, 61.0), pixel=0.01, ny=200, nx=25, nb=1)
    # at the centre of pixel (r, c): lon = 100 + (c + .5) * .01, lat = 61 - (r + .5) * .01
    r, c = 100, 12
    lon, lat = 100 + (c + 0.5) * 0.01, 61 - (r + 0.5) * 0.01  # lat ~ 60
    hx, hy = S.metres_to_degrees(1500.0, lat)
    assert hy == pytest.approx(1500 / 111_400, rel=0.01)  # ~0.0135 deg
    assert hx == pytest.approx(1500 / (111_400 * math.cos(math.radians(lat))), rel=0.01)  # ~0.027 deg
    m, n = S.window_means(path, [lon], [lat], 3000.0)
    # +-0.0135 deg in latitude -> 3 rows; +-0.027 deg in longitude -> 5 columns
    assert n[0, 0] == 15
    np.testing.assert_allclose(m[0, 0], data[0, r - 1 : r + 2, c - 2 : c + 3].mean())


# ------------------------------------------------------------------ per-class series
def test_temporal_and_cumulative_changes_with_gap():
    dates = [dt.date(2020, 1, 15), dt.date(2020, 2, 15), dt.date(2020, 4, 15), dt.date(2020, 5, 15)]
    v = np.array([[np.nan, 2.0, 7.0, 4.0], [1.0, 3.0, 6.0, 10.0]])
    t, c = S.temporal_changes(v, dates)
    np.testing.assert_array_equal(t, [[np.nan, np.nan, np.nan, -3.0], [np.nan, 2.0, np.nan, 4.0]])
    np.testing.assert_array_equal(c, [[np.nan, 0.0, 5.0, 2.0], [0.0, 2.0, 5.0, 9.0]])
    t, c = S.temporal_changes(v, dates, base_date=dates[2])
    np.testing.assert_array_equal(c[1], [-5.0, -3.0, 0.0, 4.0])
    with pytest.raises(TimeSeriesError, match="base date 2020-03-15 is not a date"):
        S.temporal_changes(v, dates, base_date=dt.date(2020, 3, 15))
    # several dates in one month: previous band
    d2 = [dt.date(2020, 1, 1), dt.date(2020, 1, 13), dt.date(2020, 3, 1)]
    t, _ = S.temporal_changes(np.array([1.0, 4.0, 9.0]), d2)
    np.testing.assert_array_equal(t, [np.nan, 3.0, 5.0])


def test_class_series_exact():
    pts = pd.DataFrame(
        {"area": ["A", "A", "A", "B"], "class": ["mild", "micro", "mild", "micro"], "class_index": [1, 0, 1, 0]}
    )
    dates = [dt.date(2020, m, 1) for m in (1, 2, 3)]
    vals = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 1.0], [3.0, np.nan, 8.0], [5.0, 5.0, 5.0]])
    t = S.class_series(pts, vals, dates, "sbas")
    assert list(t.columns) == [
        "area",
        "class",
        "layer",
        "date",
        "mean",
        "std",
        "n",
        "temporal_change",
        "cumulative_change",
    ]
    # ordered by area (first seen), then class index
    assert t[["area", "class"]].drop_duplicates().values.tolist() == [["A", "micro"], ["A", "mild"], ["B", "micro"]]
    mild = t[(t["area"] == "A") & (t["class"] == "mild")]
    np.testing.assert_allclose(mild["mean"], [2.0, 2.0, 6.0])
    np.testing.assert_allclose(mild["std"], [math.sqrt(2), np.nan, math.sqrt(8)], equal_nan=True)
    assert mild["n"].tolist() == [2, 1, 2]
    np.testing.assert_allclose(mild["temporal_change"], [np.nan, 0.0, 4.0], equal_nan=True)
    np.testing.assert_allclose(mild["cumulative_change"], [0.0, 0.0, 4.0])
    assert (t["layer"] == "sbas").all() and t["date"].iloc[0] == "2020-01-01"
    with pytest.raises(ValueError, match="does not match 4 points x 2 dates"):
        S.class_series(pts, vals, dates[:2], "x")
