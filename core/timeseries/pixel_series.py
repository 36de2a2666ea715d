"""Pixel and polygon time series from time-series rasters (no QGIS imports).

The data side of the time-series viewer dock (``ui/timeseries_dock.py``):

* :func:`inspect_raster` recognises a time-series raster (two or more bands,
  every band dated by :func:`read_dates`) and reads its units and
  *kind*;
* :func:`read_pixel_series` reads only the ``1 x 1 x N`` pixel column under a
  point (coordinates in the raster's own CRS), never the whole stack;
* :func:`polygon_mean_series` averages the pixels of a polygon: the polygon is
  rasterised with GDAL on the raster's own grid, restricted to the pixel window
  of its envelope; a pixel belongs to the polygon when its **centre** is inside
  (GDAL's default rasterisation rule); when no pixel centre is inside (polygon
  smaller than a pixel) every pixel the polygon touches is used instead. The
  mean at a date is over the member pixels valid at that date (NaN/NoData
  skipped); the count of member pixels is returned;
* :func:`series_table` / :func:`write_series_csv` lay the plotted series out as
  one table (one row per date, one column per series).

Twin-axis rule (:func:`series_kind`, :func:`axis_for`)
-----------------------------------------------------
Every series belongs to one of two families:

* ``storage`` -- water storage anomalies (GWSA, TWSA, groundwater, soil
  moisture, GRACE/GLDAS/FLDAS products), plotted on the **right** y axis;
* ``deformation`` -- everything else (InSAR displacement, resampled series),
  plotted on the **left** y axis.

The family comes from the dataset metadata item ``KIND`` (also ``kind`` or
``QUANTITY``) when present: a value naming ``gwsa``, ``twsa``, ``groundwater``,
``storage``, ``soil moisture`` ... is ``storage``, any other value
(``deformation``, ``displacement``, ``velocity``, ``los`` ...) is
``deformation``. Without ``KIND`` the layer name and the file name are searched
for ``gwsa|twsa|gws|tws|groundwater|storage|grace|gldas|fldas``. Twin axes are
only drawn when both families are on the plot; a plot holding only storage
series uses the left axis. The units (``UNITS`` metadata or the band unit type)
label each axis.
"""

import csv
import datetime as _dt
import os
import re

import numpy as np
from osgeo import gdal, ogr, osr

from ..io.dates import format_date
from ..io.errors import TimeSeriesError
from ..io.rasters import open_raster, read_dates, read_window
from ..io.windows import row_blocks

gdal.UseExceptions()

STORAGE = "storage"
DEFORMATION = "deformation"
_STORAGE_WORDS = re.compile(
    r"gwsa|twsa|gws|tws|groundwater|ground[\s_-]*water|storage|grace|gldas|fldas|soil[\s_-]*moisture",
    re.IGNORECASE,
)
_KIND_KEYS = ("KIND", "kind", "QUANTITY", "quantity")


class SeriesSource:
    """A recognised time-series raster: path, display name, dates, units and kind."""

    def __init__(self, path, name, dates, units, kind):
        self.path = str(path)
        self.name = name
        self.dates = list(dates)
        self.units = units or ""
        self.kind = kind

    @property
    def axis(self):
        return axis_for(self.kind)

    def __repr__(self):
        return "SeriesSource(%r, %d dates, %r, %s)" % (self.name, len(self.dates), self.units, self.kind)


class Series:
    """One plotted series: values at dates, with where it came from.

    ``label`` is the legend text, ``location`` a short text (``"x, y"`` or ``"12 px"``) and
    ``point`` the clicked map coordinates (or ``None`` for a polygon).
    """

    def __init__(self, label, source, dates, values, location="", point=None, npixels=1):
        self.label = label
        self.source = source
        self.dates = list(dates)
        self.values = np.asarray(values, dtype=np.float64)
        self.location = location
        self.point = point
        self.npixels = int(npixels)

    @property
    def units(self):
        return self.source.units

    @property
    def kind(self):
        return self.source.kind

    @property
    def axis(self):
        return self.source.axis

    def column_name(self):
        """CSV column: ``label (location) [units]`` (location/units omitted when empty)."""
        name = self.label
        if self.location and self.location not in name:
            name = "%s (%s)" % (name, self.location)
        return "%s [%s]" % (name, self.units) if self.units else name


# --------------------------------------------------------------------------- kinds
def series_kind(name="", metadata=None, path=""):
    """``'storage'`` or ``'deformation'`` by the rule of the module docstring."""
    metadata = metadata or {}
    for key in _KIND_KEYS:
        value = metadata.get(key)
        if value:
            return STORAGE if _STORAGE_WORDS.search(str(value)) else DEFORMATION
    text = " ".join([name or "", os.path.basename(str(path or ""))])
    return STORAGE if _STORAGE_WORDS.search(text) else DEFORMATION


def axis_for(kind):
    """``'right'`` for storage series, ``'left'`` for deformation series."""
    return "right" if kind == STORAGE else "left"


def raster_units(ds):
    """Units of a raster: dataset ``UNITS`` metadata, else the first band's unit type."""
    md = ds.GetMetadata() or {}
    return md.get("UNITS") or md.get("units") or ds.GetRasterBand(1).GetUnitType() or ""


def inspect_raster(path, name=None):
    """A :class:`SeriesSource` for a time-series raster, ``None`` for any other raster.

    A time-series raster has at least two bands, all dated (see
    :func:`read_dates`), in increasing order.
    """
    try:
        ds = open_raster(path)
    except TimeSeriesError:
        return None
    if ds.RasterCount < 2:
        return None
    try:
        dates = read_dates(ds, require=False)
    except TimeSeriesError:
        return None
    if not dates:
        return None
    name = name or os.path.splitext(os.path.basename(str(path)))[0]
    return SeriesSource(path, name, dates, raster_units(ds), series_kind(name, ds.GetMetadata() or {}, path))


# --------------------------------------------------------------------------- pixels
def pixel_index(geotransform, x, y):
    """``(col, row)`` of the pixel holding map point ``(x, y)`` (may lie outside the raster)."""
    inv = gdal.InvGeoTransform(tuple(geotransform))
    if inv is None:
        raise TimeSeriesError("geotransform %s cannot be inverted" % (tuple(geotransform),))
    px, py = gdal.ApplyGeoTransform(inv, float(x), float(y))
    return int(np.floor(px)), int(np.floor(py))


def read_pixel_series(ds_or_path, x, y):
    """Values of every band at map point ``(x, y)`` (in the raster's CRS).

    Reads only the ``1 x 1 x N`` column (NoData -> NaN, scale/offset applied).
    Returns ``None`` when the point is outside the raster.
    """
    ds = _open(ds_or_path)
    col, row = pixel_index(ds.GetGeoTransform(), x, y)
    if not (0 <= col < ds.RasterXSize and 0 <= row < ds.RasterYSize):
        return None
    return read_window(ds, col, row, 1, 1)[:, 0, 0]


def transform_point(x, y, src_wkt, dst_wkt):
    """Transform a point between two CRSs given as WKT (x = easting/longitude order)."""
    if not src_wkt or not dst_wkt:
        return x, y
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromWkt(src_wkt)
    dst.ImportFromWkt(dst_wkt)
    if src.IsSame(dst):
        return x, y
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tx, ty, _ = osr.CoordinateTransformation(src, dst).TransformPoint(float(x), float(y))
    return tx, ty


# --------------------------------------------------------------------------- polygons
def polygon_window(ds, polygon_wkt):
    """Pixel window and membership mask of a polygon on the raster's grid.

    ``polygon_wkt`` is in the raster's CRS. Returns ``(xoff, yoff, mask)`` with
    ``mask`` a boolean ``(rows, cols)`` array over the window, or ``None`` when
    the polygon does not overlap the raster or holds no pixel.
    """
    geom = ogr.CreateGeometryFromWkt(polygon_wkt)
    if geom is None or geom.IsEmpty():
        raise TimeSeriesError("polygon %r is empty or not valid WKT" % polygon_wkt[:60])
    gt = ds.GetGeoTransform()
    minx, maxx, miny, maxy = geom.GetEnvelope()
    inv = gdal.InvGeoTransform(gt)
    corners = [gdal.ApplyGeoTransform(inv, cx, cy) for cx in (minx, maxx) for cy in (miny, maxy)]
    cols = [c[0] for c in corners]
    rows = [c[1] for c in corners]
    x0 = max(0, int(np.floor(min(cols))))
    x1 = min(ds.RasterXSize, int(np.ceil(max(cols))))
    y0 = max(0, int(np.floor(min(rows))))
    y1 = min(ds.RasterYSize, int(np.ceil(max(rows))))
    if x1 <= x0 or y1 <= y0:
        return None
    nx, ny = x1 - x0, y1 - y0
    wgt = (gt[0] + x0 * gt[1] + y0 * gt[2], gt[1], gt[2], gt[3] + x0 * gt[4] + y0 * gt[5], gt[4], gt[5])
    mask = _rasterize(geom, ds.GetProjection(), wgt, nx, ny, all_touched=False)
    if not mask.any():
        mask = _rasterize(geom, ds.GetProjection(), wgt, nx, ny, all_touched=True)
    if not mask.any():
        return None
    return x0, y0, mask


def _rasterize(geom, wkt, gt, nx, ny, all_touched):
    mem = gdal.GetDriverByName("MEM").Create("", nx, ny, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(gt)
    if wkt:
        mem.SetProjection(wkt)
    vds = ogr.GetDriverByName("Memory").CreateDataSource("")
    srs = None
    if wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(wkt)
    lyr = vds.CreateLayer("poly", srs=srs, geom_type=ogr.wkbUnknown)
    feat = ogr.Feature(lyr.GetLayerDefn())
    feat.SetGeometry(geom)
    lyr.CreateFeature(feat)
    opts = ["ALL_TOUCHED=TRUE"] if all_touched else []
    gdal.RasterizeLayer(mem, [1], lyr, burn_values=[1], options=opts)
    return mem.GetRasterBand(1).ReadAsArray().astype(bool)


def polygon_mean_series(ds_or_path, polygon_wkt, memory_mb=64):
    """Mean of every band over the pixels of a polygon (``polygon_wkt`` in the raster's CRS).

    Returns ``(values, npixels)``: ``values[k]`` is the mean over the member
    pixels valid in band ``k`` (NaN when none is), ``npixels`` the number of
    member pixels; ``None`` when the polygon holds no pixel of the raster. The
    envelope window is read in row blocks under ``memory_mb``.
    """
    ds = _open(ds_or_path)
    win = polygon_window(ds, polygon_wkt)
    if win is None:
        return None
    x0, y0, mask = win
    ny, nx = mask.shape
    nb = ds.RasterCount
    total = np.zeros(nb)
    count = np.zeros(nb)
    for r0, nr in row_blocks(ny, nx * nb * 8 * 3, memory_mb):
        m = mask[r0 : r0 + nr]
        if not m.any():
            continue
        block = read_window(ds, x0, y0 + r0, nx, nr)[:, m]  # (bands, member pixels)
        valid = np.isfinite(block)
        total += np.where(valid, block, 0.0).sum(axis=1)
        count += valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return values, int(mask.sum())


# --------------------------------------------------------------------------- tables
def series_table(series):
    """``(dates, columns, matrix)``: the union of all dates (sorted), one column per series.

    ``matrix[i, j]`` is series ``j`` at ``dates[i]`` (NaN where that series has
    no such date). Column names are :meth:`Series.column_name`.
    """
    dates = sorted({d for s in series for d in s.dates})
    row = {d: i for i, d in enumerate(dates)}
    matrix = np.full((len(dates), len(series)), np.nan)
    for j, s in enumerate(series):
        for d, v in zip(s.dates, s.values):
            matrix[row[d], j] = v
    return dates, [s.column_name() for s in series], matrix


def write_series_csv(path, series):
    """Write the series as CSV: a ``date`` column (YYYY-MM-DD) and one column per series.

    Empty cells for missing values (NaN or date absent from a series); values
    with up to 10 significant digits; the column names carry label and units.
    """
    dates, columns, matrix = series_table(series)
    with open(str(path), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["date"] + columns)
        for d, values in zip(dates, matrix):
            w.writerow([format_date(d)] + ["" if not np.isfinite(v) else "%.10g" % v for v in values])
    return str(path)


def unique_label(label, existing):
    """``label``, or ``label (2)``, ``label (3)`` ... when already taken."""
    if label not in existing:
        return label
    k = 2
    while "%s (%d)" % (label, k) in existing:
        k += 1
    return "%s (%d)" % (label, k)


def _open(ds_or_path):
    if isinstance(ds_or_path, (str, os.PathLike)):
        return open_raster(ds_or_path)
    return ds_or_path


# --------------------------------------------------------------------------- display helpers
def sample_band(ds, band=1, max_pixels=1_000_000):
    """A decimated read of one band (NoData -> NaN) holding at most ~``max_pixels`` values.

    Used for display statistics; GDAL uses overviews when present.
    """
    b = ds.GetRasterBand(int(band))
    nx, ny = ds.RasterXSize, ds.RasterYSize
    f = max(1.0, np.sqrt(nx * ny / float(max_pixels)))
    bx, by = max(1, int(nx / f)), max(1, int(ny / f))
    a = b.ReadAsArray(0, 0, nx, ny, buf_xsize=bx, buf_ysize=by).astype(np.float64)
    nd = b.GetNoDataValue()
    if nd is not None and not np.isnan(nd):
        a[a == nd] = np.nan
    s, o = b.GetScale(), b.GetOffset()
    if s not in (None, 1.0) or o not in (None, 0.0):
        a = a * (1.0 if s is None else s) + (0.0 if o is None else o)
    return a


def robust_limits(values, low=2.0, high=98.0, symmetric=False):
    """``(vmin, vmax)`` from the ``low``/``high`` percentiles of the finite values.

    ``symmetric``: ``(-L, L)`` with ``L = max(|p_low|, |p_high|)`` (a diverging
    ramp centred on 0). A degenerate range is widened to a non-empty one;
    ``None`` when there is no finite value.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = np.percentile(v, [low, high])
    if symmetric:
        lim = max(abs(lo), abs(hi))
        if lim == 0:
            lim = 1.0
        return -lim, lim
    if hi <= lo:
        pad = abs(lo) * 0.01 or 1.0
        return lo - pad, hi + pad
    return float(lo), float(hi)


def band_time_ranges(dates):
    """Per-band temporal ranges ``[(start, end), ...]`` as datetimes, end exclusive.

    Band ``k`` covers ``[date_k, date_{k+1})``; the last band lasts as long as
    the interval before it (one day for a single date), so that a temporal
    controller stepping through time shows each band from its date until the next.
    """
    dates = list(dates)
    starts = [_dt.datetime(d.year, d.month, d.day) for d in dates]
    out = []
    for k, s in enumerate(starts):
        if k + 1 < len(starts):
            e = starts[k + 1]
        elif k > 0:
            e = s + (s - starts[k - 1])
        else:
            e = s + _dt.timedelta(days=1)
        out.append((s, e))
    return out
