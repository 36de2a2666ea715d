"""GACOS tropospheric correction of interferograms (no QGIS imports).

GACOS (Yu et al. 2018, *JGR Solid Earth* 123:9202) distributes one zenith total delay (ZTD) map per
acquisition date: ``YYYYMMDD.ztd`` (raw little-endian float32, metres, 0 = no data) with
``YYYYMMDD.ztd.rsc`` (``WIDTH``, ``FILE_LENGTH``, ``X_FIRST``, ``Y_FIRST``, ``X_STEP``, ``Y_STEP``;
``X_FIRST``/``Y_FIRST`` are the centre of the first pixel, as LiCSBAS step 03 reads them; WGS84
longitude / latitude), or ``YYYYMMDD.ztd.tif``. As in LiCSBAS step 03:

* each date's ZTD is resampled to the interferogram grid (here bilinear, window by window, through a
  coordinate transformation when the CRSs differ);
* slant delay ``s = ZTD / cos(theta)`` with theta the incidence angle (from an incidence-angle raster,
  LiCSAR's up component ``U = cos(theta)`` of the unit vector to the satellite, or a constant angle);
* an interferogram of dates (d1, d2) is corrected by subtracting the delay difference ``s(d2) - s(d1)``
  expressed in the interferograms' own units and sign: a delay lengthens the range, which LiCSAR /
  LiCSBAS phase (positive = range increase) carries as ``+4 pi / lambda * (s2 - s1)``, and LOS
  displacement (positive toward the satellite) as ``-(s2 - s1)``;
* per interferogram the standard deviation before and after is reported. Unlike LiCSBAS step 03, which
  applies every correction and only reports the reduction rate (``GACOS_info.txt``), a correction that
  increases it by more than a tolerance (default 100 %) is not applied (and the table says so): a safety net
  against a failed GACOS map; a very large tolerance reproduces LiCSBAS.
"""

import os
import re

import numpy as np

from ..io.dates import format_date, parse_date
from ..io.errors import TimeSeriesError

INCIDENCE_ANGLE = "angle"
INCIDENCE_UP = "up"
INCIDENCE_TYPES = (INCIDENCE_ANGLE, INCIDENCE_UP)
DEFAULT_INCIDENCE_ANGLE = 39.0  # Sentinel-1 IW mid-swath
#: a correction is not applied when it raises an interferogram's standard deviation by more than this share.
#: Meant to catch a failed GACOS map (wrong epoch, holes), not to tune: an interferogram left uncorrected
#: among corrected ones keeps its dates' delays while its neighbours in the network lose them, so every
#: skipped correction costs consistency (on the demo world, where GACOS is exact, skipping the ~5 % whose
#: standard deviation grew by 10-70 % - deformation offsetting the delay - raised the velocity RMSE from
#: 1.2 to 1.6 mm/yr).
DEFAULT_TOLERANCE = 1.0
RSC_KEYS = ("WIDTH", "FILE_LENGTH", "X_FIRST", "Y_FIRST", "X_STEP", "Y_STEP")
_DATE_RE = re.compile(r"(?<!\d)(\d{8})(?!\d)")


def read_rsc(path):
    """The keys of a ROI_PAC-style ``.rsc`` side-car as a dict of floats (the six grid keys required)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise TimeSeriesError(
            "cannot read the GACOS header %s (%s); it must sit next to its .ztd file" % (path, e.strerror or e)
        ) from None
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0].upper()] = float(parts[1])
            except ValueError:
                continue
    missing = [k for k in RSC_KEYS if k not in out]
    if missing:
        raise TimeSeriesError("GACOS header %s lacks %s (needs %s)" % (path, ", ".join(missing), ", ".join(RSC_KEYS)))
    if out["WIDTH"] < 1 or out["FILE_LENGTH"] < 1 or out["X_STEP"] == 0 or out["Y_STEP"] == 0:
        raise TimeSeriesError("GACOS header %s: WIDTH/FILE_LENGTH must be positive and X_STEP/Y_STEP non-zero" % path)
    return out


def date_of(path):
    """The acquisition date of a GACOS file name (first valid YYYYMMDD group), or None."""
    for m in _DATE_RE.finditer(os.path.basename(str(path))):
        d = parse_date(m.group(1))
        if d is not None:
            return d
    return None


def _wgs84_wkt():
    from osgeo import osr

    s = osr.SpatialReference()
    s.ImportFromEPSG(4326)
    return s.ExportToWkt()


class GriddedSource:
    """A single-band raster on its own north-up grid, resampled (bilinear) onto windows of a target grid.

    ``path``: a GDAL raster, or a GACOS ``.ztd`` whose ``.ztd.rsc`` sits next to it. ``zero_is_nodata``:
    GACOS writes 0 where it has no delay. Holds only its path and header values, so it pickles."""

    def __init__(self, path, zero_is_nodata=False, label="raster"):
        self.path = str(path)
        self.label = label
        self.zero_is_nodata = zero_is_nodata
        self.raw = self.path.lower().endswith(".ztd")
        if self.raw:
            rsc = read_rsc(self.path + ".rsc")
            self.xsize, self.ysize = int(rsc["WIDTH"]), int(rsc["FILE_LENGTH"])
            dx, dy = rsc["X_STEP"], rsc["Y_STEP"]
            self.geotransform = (rsc["X_FIRST"] - dx / 2, dx, 0.0, rsc["Y_FIRST"] - dy / 2, 0.0, dy)
            self.projection = _wgs84_wkt()
            try:
                size = os.path.getsize(self.path)
            except OSError as e:
                raise TimeSeriesError("cannot read the GACOS file %s (%s)" % (self.path, e.strerror or e)) from None
            if size != 4 * self.xsize * self.ysize:
                raise TimeSeriesError(
                    "GACOS file %s has %d bytes, its header %s says %d x %d float32 = %d"
                    % (
                        self.path,
                        size,
                        os.path.basename(self.path + ".rsc"),
                        self.xsize,
                        self.ysize,
                        4 * self.xsize * self.ysize,
                    )
                )
        else:
            from ..io.rasters import open_raster

            ds = open_raster(self.path)
            self.xsize, self.ysize = ds.RasterXSize, ds.RasterYSize
            self.geotransform = tuple(ds.GetGeoTransform())
            self.projection = ds.GetProjection() or ""
            ds = None
        gt = self.geotransform
        if gt[2] != 0 or gt[4] != 0:
            raise TimeSeriesError(
                "%s %s is rotated (geotransform %s); warp it to a north-up grid" % (self.label, self.path, gt)
            )
        self._transforms = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_transforms"] = {}  # OSR transformations do not pickle (Dask workers rebuild them)
        return state

    # ---- coordinates
    def _transform(self, grid_projection):
        """A function mapping target (x, y) arrays to this source's CRS (identity when the same)."""
        if not grid_projection or not self.projection:
            return None
        if grid_projection in self._transforms:
            return self._transforms[grid_projection]
        from osgeo import osr

        a, b = osr.SpatialReference(), osr.SpatialReference()
        a.ImportFromWkt(grid_projection)
        b.ImportFromWkt(self.projection)
        tr = None
        if not a.IsSame(b):
            for s in (a, b):
                s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            tr = osr.CoordinateTransformation(a, b)
        self._transforms[grid_projection] = tr
        return tr

    def _source_pixels(self, grid, row0, nrows, col0, ncols):
        """Fractional (row, col) in this source of the target window's pixel centres."""
        gt = grid.geotransform
        r = np.arange(row0, row0 + nrows) + 0.5
        c = np.arange(col0, col0 + ncols) + 0.5
        x = gt[0] + c[None, :] * gt[1] + r[:, None] * gt[2]
        y = gt[3] + c[None, :] * gt[4] + r[:, None] * gt[5]
        x, y = np.broadcast_arrays(x, y)
        tr = self._transform(grid.projection)
        if tr is not None:
            pts = np.asarray(tr.TransformPoints(np.column_stack([x.ravel(), y.ravel()]).tolist()))
            x = pts[:, 0].reshape(nrows, ncols)
            y = pts[:, 1].reshape(nrows, ncols)
        sg = self.geotransform
        return (y - sg[3]) / sg[5] - 0.5, (x - sg[0]) / sg[1] - 0.5

    def covers(self, grid):
        """True when every pixel centre of ``grid`` lies inside this source's extent (checked on the
        border of the grid and a coarse interior lattice, enough for a smooth coordinate transform)."""
        rows = np.unique(np.r_[np.linspace(0, grid.ysize - 1, 9).round(), [0, grid.ysize - 1]]).astype(int)
        cols = np.unique(np.r_[np.linspace(0, grid.xsize - 1, 9).round(), [0, grid.xsize - 1]]).astype(int)
        for r in rows:
            fr, fc = self._source_pixels(grid, int(r), 1, 0, grid.xsize)
            if not self._inside(fr, fc).all():
                return False
        for c in cols:
            fr, fc = self._source_pixels(grid, 0, grid.ysize, int(c), 1)
            if not self._inside(fr, fc).all():
                return False
        return True

    def _inside(self, fr, fc):
        eps = 1e-6
        return (fr >= -0.5 - eps) & (fr <= self.ysize - 0.5 + eps) & (fc >= -0.5 - eps) & (fc <= self.xsize - 0.5 + eps)

    # ---- reading
    def _read(self, r0, r1, c0, c1):
        """Source rows r0..r1-1, cols c0..c1-1 as float64 (NoData -> NaN)."""
        if self.raw:
            mm = np.memmap(self.path, dtype="<f4", mode="r", shape=(self.ysize, self.xsize))
            a = np.array(mm[r0:r1, c0:c1], dtype=np.float64)
            del mm
        else:
            from ..io.rasters import open_raster, read_window

            ds = open_raster(self.path)
            a = read_window(ds, c0, r0, c1 - c0, r1 - r0, bands=[1], dtype=np.float64)[0]
            ds = None
        if self.zero_is_nodata:
            a[a == 0] = np.nan
        return a

    def sample(self, grid, row0, nrows, col0, ncols):
        """Bilinear values on the target window (nrows, ncols), float64; NaN outside the source or next to
        its NoData."""
        fr, fc = self._source_pixels(grid, row0, nrows, col0, ncols)
        inside = self._inside(fr, fc)
        out = np.full(fr.shape, np.nan)
        if not inside.any():
            return out
        fr = np.clip(fr, 0, self.ysize - 1)
        fc = np.clip(fc, 0, self.xsize - 1)
        r_lo = np.floor(fr).astype(np.int64)
        c_lo = np.floor(fc).astype(np.int64)
        r_lo = np.minimum(r_lo, max(self.ysize - 2, 0))
        c_lo = np.minimum(c_lo, max(self.xsize - 2, 0))
        ir = inside
        R0, R1 = int(r_lo[ir].min()), int(min(self.ysize, r_lo[ir].max() + 2))
        C0, C1 = int(c_lo[ir].min()), int(min(self.xsize, c_lo[ir].max() + 2))
        a = self._read(R0, R1, C0, C1)
        h, w = a.shape
        rl = np.clip(r_lo - R0, 0, h - 1)
        cl = np.clip(c_lo - C0, 0, w - 1)
        rh = np.minimum(rl + 1, h - 1)
        ch = np.minimum(cl + 1, w - 1)
        tr = fr - (rl + R0)
        tc = fc - (cl + C0)
        tr = np.where(rh == rl, 0.0, tr)
        tc = np.where(ch == cl, 0.0, tc)
        v = (
            a[rl, cl] * (1 - tr) * (1 - tc)
            + a[rl, ch] * (1 - tr) * tc
            + a[rh, cl] * tr * (1 - tc)
            + a[rh, ch] * tr * tc
        )
        out[inside] = v[inside]
        return out


class Incidence:
    """cos(incidence) on windows of the interferogram grid: from a raster (incidence angle in degrees, or
    the up component U = cos theta of LiCSAR's ``*.geo.U.tif``) on any grid, or a constant angle."""

    def __init__(self, path=None, kind=INCIDENCE_ANGLE, angle=DEFAULT_INCIDENCE_ANGLE):
        if kind not in INCIDENCE_TYPES:
            raise ValueError("unknown incidence type %r (use one of %s)" % (kind, ", ".join(INCIDENCE_TYPES)))
        self.path = str(path) if path else None
        self.kind = kind
        self.angle = float(angle)
        if self.path is None and not (0 <= self.angle < 90):
            raise TimeSeriesError("the incidence angle must be in [0, 90) degrees, not %g" % self.angle)
        self.source = GriddedSource(self.path, zero_is_nodata=True, label="incidence raster") if self.path else None

    def describe(self):
        if self.source is None:
            return "constant incidence %.2f deg" % self.angle
        return "incidence from %s (%s)" % (self.path, "angle in degrees" if self.kind == INCIDENCE_ANGLE else "U = cos")

    def cos(self, grid, row0, nrows, col0, ncols, data_mask=None):
        """cos(theta) (nrows, ncols). Where ``data_mask`` (interferogram data) is True and the raster gives
        NaN, 0 or an impossible value, raises naming the raster."""
        if self.source is None:
            return np.full((nrows, ncols), np.cos(np.deg2rad(self.angle)))
        v = self.source.sample(grid, row0, nrows, col0, ncols)
        c = np.cos(np.deg2rad(v)) if self.kind == INCIDENCE_ANGLE else v
        bad = ~np.isfinite(v) | (v == 0) | ~(c > 0.05) | (c > 1.0 + 1e-6)
        if self.kind == INCIDENCE_ANGLE:
            bad |= v < 0
        if data_mask is not None:
            bad &= data_mask
        if bad.any():
            r, cc = np.argwhere(bad)[0]
            raise TimeSeriesError(
                "incidence raster %s has NoData, 0 or an impossible %s at %d pixel(s) where the interferograms "
                "have data (first at row %d, col %d); fill it or give a constant incidence angle"
                % (
                    self.path,
                    "angle" if self.kind == INCIDENCE_ANGLE else "U component",
                    int(bad.sum()),
                    row0 + r,
                    col0 + cc,
                )
            )
        return c


class GacosSet:
    """Per-date GACOS ZTD files matched to the acquisition dates of a network."""

    def __init__(self, paths, grid):
        self.by_date = {}
        for p in paths:
            p = str(p)
            if p.lower().endswith(".rsc"):
                continue
            d = date_of(p)
            if d is None:
                raise TimeSeriesError("GACOS file %s has no date (YYYYMMDD) in its name" % p)
            if d in self.by_date:
                raise TimeSeriesError("two GACOS files for %s: %s and %s" % (format_date(d), self.by_date[d].path, p))
            src = GriddedSource(p, zero_is_nodata=True, label="GACOS file")
            if not src.covers(grid):
                raise TimeSeriesError(
                    "GACOS file %s (%d x %d px, geotransform %s) does not cover the interferograms "
                    "(%s); download GACOS for the whole frame"
                    % (p, src.xsize, src.ysize, ", ".join("%.6g" % v for v in src.geotransform), grid.describe())
                )
            self.by_date[d] = src
        self.grid = grid

    def missing(self, dates):
        return [d for d in dates if d not in self.by_date]

    def slant_delays(self, dates, incidence, row0, nrows, col0, ncols, data_mask=None):
        """(N, nrows, ncols) slant delays (m) of ``dates`` on the window (NaN where GACOS has no data;
        a date without a file gives NaN)."""
        cos = incidence.cos(self.grid, row0, nrows, col0, ncols, data_mask)
        out = np.full((len(dates), nrows, ncols), np.nan)
        for n, d in enumerate(dates):
            src = self.by_date.get(d)
            if src is not None:
                out[n] = src.sample(self.grid, row0, nrows, col0, ncols) / cos
        return out


def pair_corrections(slant, i1, i2, metres_to_units, dtype=np.float32):
    """Per-interferogram corrections (M, rows, cols) in the interferograms' units from date slant delays
    (N, rows, cols) in metres: ``(s[i2] - s[i1]) * metres_to_units`` with ``i1``/``i2`` the file's first
    and second date (reference, secondary)."""
    return ((slant[i2] - slant[i1]) * metres_to_units).astype(dtype)


def metres_to_units(to_mm):
    """Factor from a range delay in metres to the interferograms' units, given their factor ``to_mm`` to LOS
    mm (positive toward the satellite): a delay of +1 m is a LOS change of -1000 mm."""
    return -1000.0 / to_mm


def std_change(sum_b, sumsq_b, sum_a, sumsq_a, n):
    """Standard deviations before / after from sums over the same pixels."""
    n = np.maximum(np.asarray(n, dtype=np.float64), 1)
    with np.errstate(invalid="ignore"):
        sb = np.sqrt(np.maximum(sumsq_b / n - (sum_b / n) ** 2, 0))
        sa = np.sqrt(np.maximum(sumsq_a / n - (sum_a / n) ** 2, 0))
    return sb, sa


def write_ztd(path, array, x_first, y_first, x_step, y_step):
    """Write a GACOS-format ``.ztd`` + ``.ztd.rsc`` pair (for tests and the demo world)."""
    a = np.asarray(array, dtype="<f4")
    a.tofile(str(path))
    with open(str(path) + ".rsc", "w") as f:
        for k, v in (
            ("WIDTH", a.shape[1]),
            ("FILE_LENGTH", a.shape[0]),
            ("XMIN", 0),
            ("XMAX", a.shape[1] - 1),
            ("YMIN", 0),
            ("YMAX", a.shape[0] - 1),
            ("X_FIRST", x_first),
            ("Y_FIRST", y_first),
            ("X_STEP", x_step),
            ("Y_STEP", y_step),
            ("X_UNIT", "degrees"),
            ("Y_UNIT", "degrees"),
            ("Z_OFFSET", 0),
            ("Z_SCALE", 1),
            ("PROJECTION", "LATLON"),
        ):
            f.write("%-14s %s\n" % (k, repr(v) if isinstance(v, float) else v))
    return str(path)
