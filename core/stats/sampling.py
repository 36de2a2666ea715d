"""Point sampling by deformation class and per-class time series (no QGIS imports).

Liu et al. (2024, *Land* 13:184), sec. 2.3.5: the surface deformation rate is
divided into micro (0-20 mm/yr), mild (20-50), moderate (50-100) and severe
(>100 mm/yr) deformation; in each study area N random points (N = 100) are
picked per class, and the deformation and groundwater-storage time series of
the points of one class are averaged "at the same spatial and temporal scale".
*Temporal change* is the change of the current month from the previous month,
*cumulative change* the change from the base month to the target month.

Conventions of this module
--------------------------
* **Classes.** ``breaks = b0 < b1 < ... < bk-1`` define ``k`` classes
  ``[b0, b1), [b1, b2), ..., [bk-1, +inf)``: the lower break is **inclusive**,
  the upper one exclusive, the last class is open-ended. With the default
  breaks ``0, 20, 50, 100`` a rate of exactly 20 mm/yr is *mild*, exactly 100
  is *severe*. Values below ``b0`` and NaN are unclassified (-1).
  *Absolute mode* (default) classifies ``|v|``. *Signed mode* keeps uplift and
  subsidence apart: ``2k`` classes, first ``subsidence <name>`` for ``v < 0``
  then ``uplift <name>`` for ``v >= 0``, each by ``|v|`` with the same breaks
  (so ``v = 0`` is ``uplift micro``; subsidence micro is ``-20 < v < 0``,
  subsidence mild ``-50 < v <= -20``).
* **Random selection.** Every pixel gets a pseudo-random 64-bit key from a
  counter-based hash (splitmix64) of its flat index in the full raster, salted
  with a number drawn from ``np.random.default_rng(seed)``. The points of a
  class are its valid pixels with the smallest keys: a uniform random sample
  without replacement that is identical for the same seed whatever the row-block
  size or area window, and different for a different seed. Only the candidates
  are kept in memory (streaming over row blocks).
* **Minimum spacing** (map units of the velocity raster) is enforced greedily
  within one class of one area, in key order, on a candidate subset of
  ``spacing_oversample * N`` pixels; when the candidates are exhausted before N
  points are accepted, fewer points are returned with a warning.
* A class with fewer valid pixels than requested yields all of them and a
  warning; a class without pixels is reported as empty and yields no point.
* **Window means.** The window is a square of side ``window`` centred on the
  point; the mean is over the valid pixels whose centres lie inside the square
  (edges inclusive). ``window = 0``, or a square that holds no pixel centre,
  means the pixel under the point. For a raster in geographic coordinates the
  side is taken in metres and converted to degrees at the point's latitude
  (WGS84 radii of curvature). Only the window of each point is read.
* **Per-class series.** The class mean at a date is the mean of the window
  means of the class's points that are valid at that date (``n`` counts them);
  ``std`` is their sample standard deviation (ddof = 1, NaN for n < 2).
  Temporal change = mean(month m) - mean(month m-1), NaN when month m-1 is not
  in the series (gap) or NaN. For series with several dates in one month the
  previous *band* is used instead. Cumulative change = mean(t) - mean(base),
  base = the first date at which the class mean is valid (or a given base date).
"""

import math
import warnings as _warnings

import numpy as np
from osgeo import gdal, ogr, osr

from ..io.dates import format_date, month_index
from ..io.errors import TimeSeriesError
from ..io.lazy import lazy_module
from ..io.rasters import open_raster, read_window
from ..io.windows import DEFAULT_MEMORY_MB, row_blocks

pd = lazy_module("pandas")

DEFAULT_BREAKS = (0.0, 20.0, 50.0, 100.0)
DEFAULT_NAMES = ("micro", "mild", "moderate", "severe")
SIGN_PREFIXES = ("subsidence", "uplift")
DEFAULT_OVERSAMPLE = 20
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


class SamplingWarning(UserWarning):
    """A class yielded fewer points than requested, or none."""


# --------------------------------------------------------------------------- classes
def parse_breaks(value):
    """Class breaks from ``"0,20,50,100"`` or a sequence; strictly increasing finite numbers.

    Raises :class:`ValueError` naming the offending break.
    """
    if value is None:
        return [float(b) for b in DEFAULT_BREAKS]
    if isinstance(value, str):
        items = [s.strip() for s in value.replace(";", ",").split(",") if s.strip()]
    else:
        items = list(value)
    if not items:
        raise ValueError("class breaks: no break given (expected e.g. 0,20,50,100)")
    out = []
    for i, s in enumerate(items):
        try:
            b = float(s)
        except (TypeError, ValueError):
            raise ValueError("class breaks: item %d (%r) is not a number" % (i + 1, s)) from None
        if not math.isfinite(b):
            raise ValueError("class breaks: item %d (%r) is not finite" % (i + 1, s))
        if out and b <= out[-1]:
            raise ValueError("class breaks must be strictly increasing: %g (item %d) follows %g" % (b, i + 1, out[-1]))
        out.append(b)
    return out


def parse_names(value, nbreaks):
    """Class names (comma-separated text or sequence), one per break; defaults micro/mild/moderate/severe."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if nbreaks == len(DEFAULT_NAMES):
            return list(DEFAULT_NAMES)
        return ["class %d" % (i + 1) for i in range(nbreaks)]
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s).strip() for s in value]
    if len(names) != nbreaks:
        raise ValueError(
            "class names: %d names given for %d breaks (one name per class, the last class is "
            "open-ended)" % (len(names), nbreaks)
        )
    if any(not n for n in names):
        raise ValueError("class names: empty name in %r" % (value,))
    if len(set(names)) != len(names):
        raise ValueError("class names must be unique: %r" % (value,))
    return names


def class_names(breaks, names=None, signed=False):
    """Full class labels in class-index order (signed: subsidence classes, then uplift classes)."""
    base = parse_names(names, len(breaks))
    if not signed:
        return base
    return ["%s %s" % (p, n) for p in SIGN_PREFIXES for n in base]


def _fmt(v):
    return "%g" % v


def class_intervals(breaks, signed=False, units="mm/yr"):
    """Human-readable interval of every class, e.g. ``20 <= |v| < 50 mm/yr``."""
    k = len(breaks)
    out = []
    if not signed:
        for i in range(k):
            if i + 1 < k:
                out.append("%s <= |v| < %s %s" % (_fmt(breaks[i]), _fmt(breaks[i + 1]), units))
            else:
                out.append("|v| >= %s %s" % (_fmt(breaks[i]), units))
        return out
    for i in range(k):  # subsidence: v < 0 and lo <= -v < hi  <=>  -hi < v <= -lo (and v < 0)
        lo, hi = breaks[i], (breaks[i + 1] if i + 1 < k else None)
        left = "%s < v" % _fmt(-hi) if hi is not None else "v"
        right = "< 0" if lo <= 0 else "<= %s" % _fmt(-lo)
        out.append("%s %s %s" % (left, right, units))
    for i in range(k):
        lo, hi = max(breaks[i], 0.0), (breaks[i + 1] if i + 1 < k else None)
        out.append(
            ("%s <= v < %s %s" % (_fmt(lo), _fmt(hi), units)) if hi is not None else "v >= %s %s" % (_fmt(lo), units)
        )
    return out


def classify(velocity, breaks, signed=False):
    """Class index of every value (int16; -1 = NaN or below the first break).

    Interval ``[b_i, b_i+1)`` (lower inclusive) on ``|v|``; the last class is
    ``[b_k-1, inf)``. Signed mode adds ``k`` to the index where ``v >= 0``.
    """
    v = np.asarray(velocity, dtype=np.float64)
    b = np.asarray(breaks, dtype=np.float64)
    a = np.abs(v)
    idx = np.searchsorted(b, a, side="right") - 1  # b[idx] <= a < b[idx+1]
    ok = np.isfinite(v) & (idx >= 0)
    out = np.where(ok, idx, -1).astype(np.int16)
    if signed:
        out = np.where(ok & (v >= 0), out + len(b), out).astype(np.int16)
    return out


# --------------------------------------------------------------------------- random keys
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x):
    """splitmix64 finaliser (vectorised over a uint64 array; wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def seed_salt(seed):
    """The 64-bit salt of a seed, drawn from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(None if seed is None else int(seed))
    return np.uint64(rng.integers(0, np.iinfo(np.uint64).max, dtype=np.uint64, endpoint=True))


def pixel_keys(flat_index, salt):
    """Pseudo-random uint64 key of each pixel (flat index in the full raster)."""
    x = np.asarray(flat_index, dtype=np.int64).astype(np.uint64)
    return _mix64(_mix64(x ^ np.uint64(salt)))


# --------------------------------------------------------------------------- sampler
class ClassSampler:
    """Streams classified row blocks and keeps, per class, the candidates with the smallest keys.

    ``add_block`` takes the velocity of a block (rows ``row0..``, columns
    ``col0..`` of a raster ``raster_xsize`` wide) and an optional boolean mask
    (True = inside the area); ``result`` picks the points.
    """

    def __init__(
        self,
        breaks,
        n_per_class,
        seed=0,
        signed=False,
        names=None,
        min_spacing=0.0,
        spacing_oversample=DEFAULT_OVERSAMPLE,
        raster_xsize=None,
    ):
        self.breaks = parse_breaks(breaks)
        self.names = class_names(self.breaks, names, signed)
        self.signed = bool(signed)
        self.n = int(n_per_class)
        if self.n < 1:
            raise ValueError("points per class must be at least 1, got %d" % self.n)
        self.min_spacing = float(min_spacing or 0.0)
        if self.min_spacing < 0 or not math.isfinite(self.min_spacing):
            raise ValueError("minimum spacing must be >= 0, got %r" % min_spacing)
        self.keep = self.n if self.min_spacing == 0 else max(self.n * int(spacing_oversample), self.n)
        self.salt = seed_salt(seed)
        self.xsize = raster_xsize
        nc = len(self.names)
        self.count = np.zeros(nc, dtype=np.int64)
        self.keys = [np.empty(0, np.uint64) for _ in range(nc)]
        self.flat = [np.empty(0, np.int64) for _ in range(nc)]
        self.vel = [np.empty(0, np.float64) for _ in range(nc)]

    def add_block(self, velocity, row0=0, col0=0, mask=None, raster_xsize=None):
        v = np.asarray(velocity, dtype=np.float64)
        if v.ndim == 1:
            v = v[None]
        xsize = raster_xsize or self.xsize or v.shape[1]
        cls = classify(v, self.breaks, self.signed)
        if mask is not None:
            cls = np.where(np.asarray(mask, bool), cls, -1)
        rows, cols = np.nonzero(cls >= 0)
        if rows.size == 0:
            return
        c = cls[rows, cols]
        flat = (rows.astype(np.int64) + int(row0)) * int(xsize) + cols.astype(np.int64) + int(col0)
        keys = pixel_keys(flat, self.salt)
        vals = v[rows, cols]
        for k in range(len(self.names)):
            sel = c == k
            m = int(np.count_nonzero(sel))
            if m == 0:
                continue
            self.count[k] += m
            kk = np.concatenate([self.keys[k], keys[sel]])
            ff = np.concatenate([self.flat[k], flat[sel]])
            vv = np.concatenate([self.vel[k], vals[sel]])
            if kk.size > self.keep:
                part = np.argpartition(kk, self.keep - 1)[: self.keep]
                kk, ff, vv = kk[part], ff[part], vv[part]
            self.keys[k], self.flat[k], self.vel[k] = kk, ff, vv

    def result(self, geotransform, raster_xsize=None, area=None):
        """Selected points and a per-class report.

        Returns ``(points, report, messages)``: ``points`` a DataFrame (area,
        class, class_index, velocity, row, col, x, y) in class then key order;
        ``report`` one row per class (area, class, interval, available,
        requested, selected, status in ok / fewer / spacing / empty);
        ``messages`` the warnings (also issued as :class:`SamplingWarning`).
        """
        xsize = int(raster_xsize or self.xsize)
        gt = geotransform
        intervals = class_intervals(self.breaks, self.signed)
        label = "" if area is None else "area %r, " % (area,)
        pts, rep, msgs = [], [], []
        for k, name in enumerate(self.names):
            order = np.argsort(self.keys[k], kind="stable")
            flat, vel = self.flat[k][order], self.vel[k][order]
            rows, cols = flat // xsize, flat % xsize
            x = gt[0] + (cols + 0.5) * gt[1] + (rows + 0.5) * gt[2]
            y = gt[3] + (cols + 0.5) * gt[4] + (rows + 0.5) * gt[5]
            if self.min_spacing > 0 and flat.size:
                take = _greedy_spacing(x, y, self.min_spacing, self.n)
            else:
                take = np.arange(min(self.n, flat.size))
            avail = int(self.count[k])
            status = "ok"
            if avail == 0:
                status = "empty"
                msgs.append(
                    "%sclass %r (%s) is empty: no valid pixel in this class; no point is sampled"
                    % (label, name, intervals[k])
                )
            elif avail < self.n:
                status = "fewer"
                msgs.append(
                    "%sclass %r (%s): only %d valid pixels, fewer than the %d requested; all of them "
                    "are used" % (label, name, intervals[k], avail, self.n)
                    if take.size == avail
                    else "%sclass %r (%s): only %d valid pixels, %d of them respect the minimum spacing %g"
                    % (label, name, intervals[k], avail, take.size, self.min_spacing)
                )
            elif take.size < self.n:
                status = "spacing"
                msgs.append(
                    "%sclass %r (%s): only %d of %d requested points respect the minimum spacing %g "
                    "among the %d candidates drawn"
                    % (label, name, intervals[k], take.size, self.n, self.min_spacing, flat.size)
                )
            rep.append((area, name, intervals[k], avail, self.n, int(take.size), status))
            if take.size:
                pts.append(
                    pd.DataFrame(
                        {
                            "area": [area] * take.size,
                            "class": name,
                            "class_index": k,
                            "velocity": vel[take],
                            "row": rows[take],
                            "col": cols[take],
                            "x": x[take],
                            "y": y[take],
                        }
                    )
                )
        for m in msgs:
            _warnings.warn(m, SamplingWarning, stacklevel=2)
        cols = ["area", "class", "class_index", "velocity", "row", "col", "x", "y"]
        points = pd.concat(pts, ignore_index=True) if pts else pd.DataFrame(columns=cols)
        report = pd.DataFrame(
            rep, columns=["area", "class", "interval", "available", "requested", "selected", "status"]
        )
        return points, report, msgs


def _greedy_spacing(x, y, spacing, n):
    """Indices (in the given order) of at most ``n`` points pairwise at least ``spacing`` apart."""
    acc = np.empty(min(n, x.size), dtype=np.int64)
    ax, ay = np.empty(acc.size), np.empty(acc.size)
    m = 0
    s2 = spacing * spacing
    for i in range(x.size):
        if m and np.min((ax[:m] - x[i]) ** 2 + (ay[:m] - y[i]) ** 2) < s2:
            continue
        acc[m], ax[m], ay[m] = i, x[i], y[i]
        m += 1
        if m == acc.size:
            break
    return acc[:m]


def sample_deformation_classes(
    velocity,
    n_per_class=100,
    breaks=DEFAULT_BREAKS,
    names=None,
    signed=False,
    seed=0,
    min_spacing=0.0,
    window=None,
    mask=None,
    area=None,
    memory_mb=DEFAULT_MEMORY_MB,
    band=1,
    canceled=None,
):
    """Random points per deformation class of a velocity raster (Liu et al. 2024, sec. 2.3.5).

    ``velocity``: path or GDAL dataset (mm/yr). ``window``: optional pixel
    window ``(xoff, yoff, xsize, ysize)`` (e.g. an area's bounding box) and
    ``mask``: optional boolean array of that window (True = inside the area).
    Returns ``(points, report, messages)`` as :meth:`ClassSampler.result`.
    ``canceled``: optional callable checked once per row block.
    """
    ds = open_raster(velocity) if not isinstance(velocity, gdal.Dataset) else velocity
    X, Y = ds.RasterXSize, ds.RasterYSize
    xoff, yoff, xs, ys = window if window is not None else (0, 0, X, Y)
    if xs <= 0 or ys <= 0 or xoff < 0 or yoff < 0 or xoff + xs > X or yoff + ys > Y:
        raise ValueError("%s: pixel window %r is not inside the %dx%d raster" % (ds.GetDescription(), window, X, Y))
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (ys, xs):
            raise ValueError("area mask shape %s does not match the window %dx%d" % (mask.shape, xs, ys))
    sampler = ClassSampler(
        breaks, n_per_class, seed=seed, signed=signed, names=names, min_spacing=min_spacing, raster_xsize=X
    )
    for r0, nr in row_blocks(ys, xs * 8 * 12, memory_mb):
        if canceled is not None:
            canceled()
        block = read_window(ds, xoff, yoff + r0, xs, nr, bands=[band])[0]
        sampler.add_block(block, yoff + r0, xoff, None if mask is None else mask[r0 : r0 + nr])
    return sampler.result(ds.GetGeoTransform(), X, area=area)


# --------------------------------------------------------------------------- areas
def polygon_window_mask(ds, wkt, label="area"):
    """Pixel window and mask of a polygon (WKT in the raster's CRS) on a raster grid.

    A pixel is inside when its centre is inside the polygon (GDAL rasterisation
    rule). Returns ``((xoff, yoff, xsize, ysize), mask)``; raises
    :class:`ValueError` naming ``label`` when the polygon does not overlap the
    raster or covers no pixel centre.
    """
    gt = ds.GetGeoTransform()
    if gt[2] != 0 or gt[4] != 0:
        raise ValueError("%s: rotated rasters are not supported" % ds.GetDescription())
    geom = ogr.CreateGeometryFromWkt(wkt)
    if geom is None or geom.IsEmpty():
        raise ValueError("%s: empty or invalid geometry" % label)
    minx, maxx, miny, maxy = geom.GetEnvelope()
    c0, c1 = sorted(((minx - gt[0]) / gt[1], (maxx - gt[0]) / gt[1]))
    r0, r1 = sorted(((miny - gt[3]) / gt[5], (maxy - gt[3]) / gt[5]))
    c0, r0 = max(int(math.floor(c0)), 0), max(int(math.floor(r0)), 0)
    c1, r1 = min(int(math.ceil(c1)), ds.RasterXSize), min(int(math.ceil(r1)), ds.RasterYSize)
    if c1 <= c0 or r1 <= r0:
        raise ValueError(
            "%s does not overlap the raster %s (area extent %g, %g - %g, %g)"
            % (label, ds.GetDescription(), minx, miny, maxx, maxy)
        )
    xs, ys = c1 - c0, r1 - r0
    mem = gdal.GetDriverByName("MEM").Create("", xs, ys, 1, gdal.GDT_Byte)
    mem.SetGeoTransform((gt[0] + c0 * gt[1], gt[1], 0.0, gt[3] + r0 * gt[5], 0.0, gt[5]))
    srs_wkt = ds.GetProjection()
    if srs_wkt:
        mem.SetProjection(srs_wkt)
    vds = ogr.GetDriverByName("Memory").CreateDataSource("")
    srs = osr.SpatialReference()
    if srs_wkt:
        srs.ImportFromWkt(srs_wkt)
    lyr = vds.CreateLayer("a", srs if srs_wkt else None, ogr.wkbUnknown)
    f = ogr.Feature(lyr.GetLayerDefn())
    f.SetGeometry(geom)
    lyr.CreateFeature(f)
    gdal.RasterizeLayer(mem, [1], lyr, burn_values=[1])
    mask = mem.ReadAsArray().astype(bool)
    if not mask.any():
        raise ValueError("%s covers no pixel centre of the raster %s" % (label, ds.GetDescription()))
    return (c0, r0, xs, ys), mask


# --------------------------------------------------------------------------- window means
def is_geographic(ds):
    wkt = ds.GetProjection()
    if not wkt:
        return False
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    return bool(srs.IsGeographic())


def metres_to_degrees(half_m, lat_deg):
    """Half-sides in degrees (lon, lat) of ``half_m`` metres at latitude ``lat_deg`` (WGS84)."""
    phi = np.radians(np.asarray(lat_deg, dtype=np.float64))
    s2 = np.sin(phi) ** 2
    n = WGS84_A / np.sqrt(1 - WGS84_E2 * s2)  # prime vertical radius
    m = WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * s2) ** 1.5  # meridional radius
    dlon = np.degrees(half_m / (n * np.maximum(np.cos(phi), 1e-12)))
    dlat = np.degrees(half_m / m)
    return dlon, dlat


def _axis_range(lo, hi, origin, step):
    """Inclusive index range of pixel centres ``origin + (i + 0.5) * step`` inside [lo, hi]."""
    a = (lo - origin) / step - 0.5
    b = (hi - origin) / step - 0.5
    a, b = np.minimum(a, b), np.maximum(a, b)
    return np.ceil(a - 1e-9).astype(np.int64), np.floor(b + 1e-9).astype(np.int64)


def window_pixels(geotransform, xsize, ysize, x, y, window=0.0, geographic=False):
    """Pixel windows ``(c0, r0, c1, r1)`` (end exclusive, clipped to the raster) of points.

    Empty windows (``c1 <= c0`` or ``r1 <= r0``) mark points outside the raster.
    """
    gt = geotransform
    if gt[2] != 0 or gt[4] != 0:
        raise ValueError("rotated geotransforms are not supported")
    window = float(window)
    if window < 0 or not math.isfinite(window):
        raise ValueError("window side must be >= 0, got %r" % window)
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    pc = np.floor((x - gt[0]) / gt[1]).astype(np.int64)
    pr = np.floor((y - gt[3]) / gt[5]).astype(np.int64)
    c0, c1, r0, r1 = pc.copy(), pc.copy(), pr.copy(), pr.copy()
    if window > 0:
        if geographic:
            hx, hy = metres_to_degrees(window / 2.0, y)
        else:
            hx = hy = np.full(x.shape, window / 2.0)
        a0, a1 = _axis_range(x - hx, x + hx, gt[0], gt[1])
        b0, b1 = _axis_range(y - hy, y + hy, gt[3], gt[5])
        has = (a1 >= a0) & (b1 >= b0)  # the square holds at least one pixel centre
        c0, c1 = np.where(has, a0, pc), np.where(has, a1, pc)
        r0, r1 = np.where(has, b0, pr), np.where(has, b1, pr)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    c0, r0 = np.clip(c0, 0, xsize), np.clip(r0, 0, ysize)
    c1, r1 = np.clip(c1 + 1, 0, xsize), np.clip(r1 + 1, 0, ysize)
    c1 = np.where(bad, c0, c1)
    return c0, r0, c1, r1


def window_means(raster, x, y, window=0.0, bands=None, canceled=None):
    """Mean, count and std of the valid pixels in a square window around each point, per band.

    ``raster``: path or GDAL dataset; ``x, y`` in the raster's CRS; ``window``
    the square's side (map units; metres for a geographic raster). Only each
    point's window is read. Returns ``(mean, n)`` arrays of shape
    ``(npoints, nbands)``; points outside the raster get NaN and 0.
    """
    ds = open_raster(raster) if not isinstance(raster, gdal.Dataset) else raster
    bands = list(bands) if bands is not None else list(range(1, ds.RasterCount + 1))
    c0, r0, c1, r1 = window_pixels(
        ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize, x, y, window=window, geographic=is_geographic(ds)
    )
    npts = c0.size
    mean = np.full((npts, len(bands)), np.nan)
    count = np.zeros((npts, len(bands)), dtype=np.int64)
    cache = {}
    for i in range(npts):
        if c1[i] <= c0[i] or r1[i] <= r0[i]:
            continue
        if canceled is not None and i % 256 == 0:
            canceled()
        key = (int(c0[i]), int(r0[i]), int(c1[i]), int(r1[i]))
        if key not in cache:
            a = read_window(ds, key[0], key[1], key[2] - key[0], key[3] - key[1], bands)
            a = a.reshape(len(bands), -1)
            n = np.isfinite(a).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                m = np.where(n > 0, np.nansum(a, axis=1) / np.maximum(n, 1), np.nan)
            cache[key] = (m, n)
        mean[i], count[i] = cache[key]
    return mean, count


# --------------------------------------------------------------------------- per-class series
def temporal_changes(values, dates, base_date=None):
    """Temporal and cumulative change of series ``values`` (..., ndates) on ``dates``.

    Temporal: value - value of the previous calendar month (NaN when that month
    is missing or NaN); when some month holds several dates, value - previous
    band. Cumulative: value - value at the base date (given, or the first date
    with a finite value of each series).
    """
    v = np.asarray(values, dtype=np.float64)
    dates = list(dates)
    months = np.array([month_index(d) for d in dates])
    temporal = np.full(v.shape, np.nan)
    if len(set(months.tolist())) == len(months):
        pos = {m: i for i, m in enumerate(months.tolist())}
        for i, m in enumerate(months.tolist()):
            j = pos.get(m - 1)
            if j is not None:
                temporal[..., i] = v[..., i] - v[..., j]
    else:
        temporal[..., 1:] = v[..., 1:] - v[..., :-1]
    if base_date is not None:
        if base_date not in dates:
            raise TimeSeriesError(
                "base date %s is not a date of the series (%s .. %s)"
                % (format_date(base_date), format_date(dates[0]), format_date(dates[-1]))
            )
        base = v[..., [dates.index(base_date)]]
    else:
        finite = np.isfinite(v)
        first = np.where(finite.any(axis=-1), finite.argmax(axis=-1), 0)
        base = np.take_along_axis(v, first[..., None], axis=-1)
    cumulative = v - base
    return temporal, cumulative


def class_series(points, values, dates, layer, base_date=None):
    """Per (area, class) mean, std, n, temporal and cumulative change of point series -> long DataFrame.

    ``points``: DataFrame with ``area`` and ``class`` (and ``class_index`` for
    ordering); ``values``: (npoints, ndates) window means. Columns of the
    result: area, class, layer, date, mean, std, n, temporal_change,
    cumulative_change.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(points), len(dates)):
        raise ValueError(
            "values shape %s does not match %d points x %d dates" % (values.shape, len(points), len(dates))
        )
    cols = ["area", "class", "layer", "date", "mean", "std", "n", "temporal_change", "cumulative_change"]
    if len(points) == 0:
        return pd.DataFrame(columns=cols)
    areas = points["area"].tolist()
    classes = points["class"].tolist()
    cidx = points["class_index"].tolist() if "class_index" in points else [0] * len(points)
    members, area_rank = {}, {}
    for i, (a, c) in enumerate(zip(areas, classes)):
        area_rank.setdefault(a, len(area_rank))
        members.setdefault((a, c), []).append(i)
    # areas in order of first appearance, classes by class index
    ordered = sorted(members.items(), key=lambda kv: (area_rank[kv[0][0]], int(cidx[kv[1][0]])))
    frames = []
    date_text = [format_date(d) for d in dates]
    for (a, c), idx in ordered:
        g = values[idx]
        n = np.isfinite(g).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(g, axis=0) / np.maximum(n, 1), np.nan)
            dev = np.where(np.isfinite(g), g - mean, 0.0)
            std = np.where(n > 1, np.sqrt((dev**2).sum(axis=0) / np.maximum(n - 1, 1)), np.nan)
        temporal, cumulative = temporal_changes(mean, dates, base_date)
        frames.append(
            pd.DataFrame(
                {
                    "area": [a] * len(dates),
                    "class": c,
                    "layer": layer,
                    "date": date_text,
                    "mean": mean,
                    "std": std,
                    "n": n.astype(np.int64),
                    "temporal_change": temporal,
                    "cumulative_change": cumulative,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[cols]


CLASS_SERIES_COLUMNS = ("area", "class", "layer", "date", "mean", "std", "n", "temporal_change", "cumulative_change")


def empty_class_series():
    """The class time-series table with its columns and types but no row (no time-series raster given)."""
    floats = ("mean", "std", "temporal_change", "cumulative_change")
    return pd.DataFrame(
        {c: pd.Series(dtype=float if c in floats else (np.int64 if c == "n" else object)) for c in CLASS_SERIES_COLUMNS}
    )
