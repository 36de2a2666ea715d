"""Reading GRACE / GLDAS / FLDAS monthly products into calendar-month stacks (no QGIS).

Inputs users really have (Liu et al. 2024, sec. 2.2; formats in the project reference
note ``grace-gldas-formats-and-lag-correlation.md``):

* CSR RL06 mascons: ``lwe_thickness`` (cm), latitude ascending, longitude 0.125..359.875,
  ``time`` in days since 2002-01-01 with ``time_bounds``;
* JPL RL06 mascons: 0.5 deg, ``_FillValue`` -99999, gain factors in a *variable* ``scale_factor``;
* GLDAS Noah monthly (one file per month, ``GLDAS_NOAH025_M.A202001.021.nc4``): storages in
  kg m-2 (= mm), fill -9999, longitudes -180..180;
* FLDAS Noah monthly (``FLDAS_NOAH01_C_GL_M.A202001.001.nc``): X/Y dimensions, soil moisture
  volumetric (m3 m-3) per layer (0.1/0.3/0.6/1.0 m);
* time-series GeoTIFFs of the toolkit convention (one band per date).

Everything is read through GDAL (``NETCDF:"file":variable`` subdatasets). Files without a CRS
are taken as EPSG:4326; 0..360 longitudes are wrapped so study areas on either side of the
antimeridian work; coarse products are read as a window with extra cells around the study area;
``scale_factor``/``add_offset`` and fill values are applied; values are converted to mm.

GRACE records are assigned to calendar months by the midpoint of ``time_bounds``; "special
months" centred in a neighbouring month (CSR Nov 2011 in Oct 2011, May 2015 in Apr 2015, JPL Dec
2011 in Jan 2012) are moved to the adjacent empty month and reported. Missing months stay NaN on
the complete monthly axis and are listed; nothing is interpolated in time.
"""

import datetime as _dt
import glob
import math
import os
import re
import threading

import numpy as np
from osgeo import gdal, osr

from ..io.dates import decode_cf_time, format_date, month_from_index, month_index, month_label
from ..io.errors import TimeSeriesError
from ..io.rasters import RasterGrid, decoded_block_bytes, open_raster, read_dates

gdal.UseExceptions()

WGS84_WKT = None  # filled lazily
_NC_SOURCE = re.compile(r'^\s*NETCDF:"?(?P<file>.+?)"?:(?P<var>[A-Za-z_][\w\-\.]*)\s*$')
_FILE_MONTH = re.compile(r"\.A(\d{4})(\d{2})(?:\d{2})?\.")
_LAYER_CM = re.compile(r"(\d+)_(\d+)cm", re.IGNORECASE)
FILL_ABS_LIMIT = 1e30  # NetCDF default fill (9.97e36) when a variable has no _FillValue


def wgs84_wkt():
    global WGS84_WKT
    if WGS84_WKT is None:
        s = osr.SpatialReference()
        s.ImportFromEPSG(4326)
        WGS84_WKT = s.ExportToWkt()
    return WGS84_WKT


def month_range_label(months):
    months = sorted(months)
    if not months:
        return "(none)"
    return "%s..%s" % (month_label(months[0]), month_label(months[-1]))


# --------------------------------------------------------------------------- units
def _norm_units(units):
    return re.sub(r"[\s\*\^]", "", (units or "").strip().lower())


_MM = {
    "mm",
    "kgm-2",
    "kg/m2",
    "kg/m^2",
    "kgm2",
    "kgperm2",
    "kg/m**2",
    "mmwe",
    "mmh2o",
    "mmwaterequivalent",
    "kgm-2(mm)",
    "millimeters",
    "millimetres",
    "millimeter",
    "millimetre",
}
_CM = {
    "cm",
    "cmwe",
    "cmh2o",
    "centimeters",
    "centimetres",
    "centimeter",
    "centimetre",
    "cmwaterequivalent",
    "cmlwe",
    "cmequivalentwaterthickness",
    "cmofwater",
}
_M = {"m", "mwe", "meters", "metres", "meter", "metre"}
_VOL = {"m3m-3", "m3/m3", "m^3m^-3", "m3.m-3", "volumefraction", "fraction", "m3m3", "cm3cm-3", "cm3/cm3"}


def layer_thickness_from_name(variable):
    """Soil layer thickness in m from a Noah variable name (``SoilMoi10_40cm_inst`` -> 0.3), or None."""
    m = _LAYER_CM.search(variable or "")
    if not m:
        return None
    top, bottom = int(m.group(1)), int(m.group(2))
    if bottom <= top:
        return None
    return (bottom - top) / 100.0


def units_to_mm(units, thickness_m=None, source="input"):
    """Factor turning values in ``units`` into mm of water.

    cm -> x10 (GRACE mascons); kg m-2 = mm (GLDAS/FLDAS storages); m -> x1000; volumetric
    m3 m-3 -> x layer thickness (m) x 1000 (FLDAS soil moisture). Rates (``kg m-2 s-1``) and
    unknown units raise :class:`TimeSeriesError` naming ``source``.
    """
    u = _norm_units(units)
    if not u:
        raise TimeSeriesError(
            "%s: no units given (state them: cm, mm, kg m-2, m, or m3 m-3 with a layer thickness)" % source
        )
    if u.endswith("s-1") or "/s" in u or u.endswith("s^-1"):
        raise TimeSeriesError(
            "%s: units %r are a rate (flux), not a water storage; runoff/evaporation rates "
            "cannot be used as storage components" % (source, units)
        )
    if u in _MM:
        return 1.0
    if u in _CM:
        return 10.0
    if u in _M:
        return 1000.0
    if u in _VOL:
        if thickness_m is None or not (thickness_m > 0):
            raise TimeSeriesError(
                "%s: volumetric units %r need the layer thickness in m (e.g. 'm3 m-3:0.3')" % (source, units)
            )
        return float(thickness_m) * 1000.0
    raise TimeSeriesError("%s: unknown units %r (known: cm, mm, kg m-2, m, m3 m-3)" % (source, units))


def parse_unit_spec(spec, variable=None, file_units=None, source="input"):
    """Resolve a user unit statement to a factor to mm.

    ``spec``: ``auto``/empty (use the file's units; volumetric layers take their thickness from the
    variable name such as ``SoilMoi10_40cm``), ``cm``, ``mm``, ``kg m-2``, ``m``,
    ``m3 m-3:<thickness m>``, or a bare number (the factor itself).
    """
    s = (spec or "").strip()
    if s.lower() in ("", "auto"):
        return units_to_mm(file_units, layer_thickness_from_name(variable), source)
    try:
        return float(s)
    except ValueError:
        pass
    thickness = None
    if ":" in s:
        s, t = s.rsplit(":", 1)
        try:
            thickness = float(t)
        except ValueError:
            raise TimeSeriesError(
                "%s: layer thickness %r in unit statement %r is not a number" % (source, t, spec)
            ) from None
    elif _norm_units(s) in _VOL:
        thickness = layer_thickness_from_name(variable)
    return units_to_mm(s, thickness, source)


# --------------------------------------------------------------------------- sources
def split_source(source):
    """``NETCDF:"f":var`` -> (file, var); a plain path -> (path, None)."""
    s = str(source)
    m = _NC_SOURCE.match(s)
    if m:
        return m.group("file"), m.group("var")
    return s, None


def gdal_name(path, variable=None):
    if variable:
        return 'NETCDF:"%s":%s' % (path, variable)
    return str(path)


def expand_source(source):
    """A source spec -> list of (file, variable). Globs (``*``/``?``) give monthly file lists."""
    path, var = split_source(source)
    if any(c in path for c in "*?["):
        files = sorted(glob.glob(path))
        if not files:
            raise TimeSeriesError("no file matches %s" % path)
        return [(f, var) for f in files]
    return [(path, var)]


def _open(path, variable):
    return open_raster(gdal_name(path, variable))


def _georef(ds, name):
    """Geotransform and CRS WKT; files without a CRS are EPSG:4326 when their grid looks geographic."""
    gt = ds.GetGeoTransform(can_return_null=True)
    if gt is None or tuple(gt) == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        raise TimeSeriesError("%s: the grid has no usable georeferencing (no geotransform / coordinates)" % name)
    if abs(gt[2]) > 0 or abs(gt[4]) > 0:
        raise TimeSeriesError("%s: rotated grids are not supported" % name)
    wkt = ds.GetProjection()
    assumed = False
    if not wkt:
        x0, dx, _, y0, _, dy = gt
        x1, y1 = x0 + dx * ds.RasterXSize, y0 + dy * ds.RasterYSize
        if min(x0, x1) < -180.001 or max(x0, x1) > 360.001 or min(y0, y1) < -90.001 or max(y0, y1) > 90.001:
            raise TimeSeriesError(
                "%s: no CRS and the extent (%g..%g, %g..%g) is not longitude/latitude" % (name, x0, x1, y1, y0)
            )
        wkt = wgs84_wkt()
        assumed = True
    return tuple(gt), wkt, assumed


def _band_units(ds):
    u = ds.GetRasterBand(1).GetUnitType()
    if not u:
        u = (ds.GetMetadata() or {}).get("UNITS", "")
    return u


def _nc_time_units(ds):
    md = ds.GetMetadata() or {}
    return md.get("time#units")


def _read_time_bounds(path, ds, nrec):
    """time_bounds as datetimes (nrec, 2), or None when the file has none."""
    md = ds.GetMetadata() or {}
    units = md.get("time#units")
    available = _variables(path)
    candidates = [md.get("time#bounds")] + ["time_bounds", "time_bnds"]
    for var in candidates:
        if not var or var not in available:
            continue
        try:
            b = gdal.Open(gdal_name(path, var))
        except RuntimeError:
            continue
        if b is None or b.RasterCount != 1:
            continue
        arr = b.GetRasterBand(1).ReadAsArray().astype(np.float64)
        if arr.shape == (2, nrec) and nrec != 2:
            arr = arr.T
        if arr.shape != (nrec, 2):
            raise TimeSeriesError("%s: %s has shape %s, expected (%d, 2)" % (path, var, arr.shape, nrec))
        bunits = (b.GetMetadata() or {}).get("%s#units" % var) or units
        if not bunits:
            return None
        if nrec > 1 and arr[0, 0] > arr[-1, 0]:  # rows came out reversed
            arr = arr[::-1]
        return [(decode_cf_time(a, bunits), decode_cf_time(c, bunits)) for a, c in arr]
    return None


def _variables(path):
    """Names of the NetCDF variables GDAL exposes as subdatasets (empty for a single-variable file)."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(str(path))
    except RuntimeError:
        return set()
    finally:
        gdal.PopErrorHandler()
    if ds is None:
        return set()
    names = set()
    for name, _ in ds.GetSubDatasets() or []:
        _, var = split_source(name)
        if var:
            names.add(var)
    return names


class Record:
    """One time step of a product: where it is (file, band) and when (mid, start, end)."""

    __slots__ = ("path", "variable", "band", "mid", "start", "end", "month", "moved_from")

    def __init__(self, path, variable, band, mid, start=None, end=None):
        self.path, self.variable, self.band = path, variable, band
        self.mid, self.start, self.end = mid, start, end
        self.month = month_index(mid)
        self.moved_from = None

    def label(self):
        name = gdal_name(self.path, self.variable)
        s = "%s band %d (centre %s" % (name, self.band, self.mid.strftime("%Y-%m-%d"))
        if self.start is not None:
            s += ", bounds %s..%s" % (self.start.strftime("%Y-%m-%d"), self.end.strftime("%Y-%m-%d"))
        return s + ")"


def _month_bounds(k):
    d0 = month_from_index(k, 1)
    d1 = month_from_index(k + 1, 1)
    return _dt.datetime(d0.year, d0.month, 1), _dt.datetime(d1.year, d1.month, 1)


def _overlap_days(rec, k):
    a, b = _month_bounds(k)
    if rec.start is None:
        c = a + (b - a) / 2
        return -abs((rec.mid - c).total_seconds()) / 86400.0
    lo, hi = max(a, rec.start), min(b, rec.end)
    return max(0.0, (hi - lo).total_seconds() / 86400.0)


def assign_months(records, source="input"):
    """Give each record a distinct calendar month (in place) and return the list of moves.

    A record goes to the month holding the midpoint of its time bounds (or its time). When two
    records share a month and an adjacent month is empty, the record on that side moves there
    (the later one forward, the earlier one back; when both are possible, the one whose bounds
    overlap its new month more). Three records in a month, or two with no empty neighbour, raise
    :class:`TimeSeriesError` naming both records.
    Returns ``[(record, from_month, to_month), ...]``.
    """
    records.sort(key=lambda r: r.mid)
    moves = []
    for _ in range(len(records) + 1):
        by_month = {}
        for r in records:
            by_month.setdefault(r.month, []).append(r)
        dups = sorted(k for k, v in by_month.items() if len(v) > 1)
        if not dups:
            return moves
        k = dups[0]
        group = by_month[k]
        if len(group) > 2:
            raise TimeSeriesError(
                "%s: %d records fall in month %s: %s"
                % (source, len(group), month_label(k), "; ".join(r.label() for r in group))
            )
        a, b = group
        cands = []
        if k + 1 not in by_month:
            cands.append((_overlap_days(b, k + 1), 1, b, k + 1))
        if k - 1 not in by_month:
            cands.append((_overlap_days(a, k - 1), 0, a, k - 1))
        if not cands:
            raise TimeSeriesError(
                "%s: duplicate month %s after resolving special months (both neighbours %s and %s are taken): %s"
                % (source, month_label(k), month_label(k - 1), month_label(k + 1), "; ".join(r.label() for r in group))
            )
        cands.sort(key=lambda c: (c[0], c[1]), reverse=True)
        _, _, rec, target = cands[0]
        rec.moved_from = k
        rec.month = target
        moves.append((rec, k, target))
    raise TimeSeriesError("%s: could not resolve duplicate months" % source)


def _records_of_dataset(path, variable, ds, name_month=None):
    """Records (one per band) of an open dataset."""
    n = ds.RasterCount
    units = _nc_time_units(ds)
    mids = []
    for i in range(1, n + 1):
        md = ds.GetRasterBand(i).GetMetadata() or {}
        if "NETCDF_DIM_time" in md and units:
            mids.append(decode_cf_time(md["NETCDF_DIM_time"], units))
        else:
            mids = None
            break
    bounds = _read_time_bounds(path, ds, n) if mids is not None else None
    if mids is None:
        if n == 1 and name_month is not None:
            d = month_from_index(name_month, 15)
            return [Record(path, variable, 1, _dt.datetime(d.year, d.month, d.day))]
        dates = read_dates(ds) if n >= 2 else None
        if dates is None:
            raise TimeSeriesError(
                "%s: no date found (no NetCDF time, band date, or .AYYYYMM. in the file name)"
                % gdal_name(path, variable)
            )
        return [Record(path, variable, i + 1, _dt.datetime(d.year, d.month, d.day)) for i, d in enumerate(dates)]
    recs = []
    for i, mid in enumerate(mids):
        if bounds is not None:
            s, e = bounds[i]
            recs.append(Record(path, variable, i + 1, s + (e - s) / 2, s, e))
        else:
            recs.append(Record(path, variable, i + 1, mid))
    return recs


def _clean(a, nodata, scale, offset, factor):
    """A band read as float64 mm: fill values (NaN, inf, beyond :data:`FILL_ABS_LIMIT`, the band's nodata) NaN,
    scale/offset and the unit factor applied. ``a`` (a fresh read) may be modified."""
    a = a.astype(np.float64, copy=False)
    bad = ~(np.abs(a) <= FILL_ABS_LIMIT)  # NaN and inf too
    if nodata is not None and not np.isnan(nodata):
        bad |= a == nodata
    if scale not in (None, 1.0) or offset not in (None, 0.0):
        a *= 1.0 if scale is None else scale
        a += 0.0 if offset is None else offset
    if factor != 1.0:
        a *= factor
    np.copyto(a, np.nan, where=bad)
    return a


def _md_array(path, variable, ds):
    """How to read ``variable`` of netCDF ``path`` (opened classically as ``ds``) through GDAL's multidimensional
    API: ``(dataset, array, rows flipped)`` for a contiguous (unchunked: netCDF-3, or
    NetCDF-4 without chunks) stack of months whose variable maps simply onto the bands, else False: no variable
    name, one band (a monthly file), chunked, more than one extra dimension, sizes that differ, no y coordinate,
    or a sample read that differs from the classic read (then the classic reads are used). Call under
    :data:`_SERIAL_READS`."""
    if not variable or ds.GetDriver().ShortName != "netCDF" or ds.RasterCount < 2:
        # one month per file (GLDAS, FLDAS): classic reads, so hundreds of monthly files do not hold a second
        # handle each per thread
        return False
    try:
        md = gdal.OpenEx(str(path), gdal.OF_MULTIDIM_RASTER | gdal.OF_READONLY, allowed_drivers=["netCDF"])
        arr = md.GetRootGroup().OpenMDArray(variable) if md is not None else None
        if arr is None:
            return False
        if any(arr.GetBlockSize()):
            # chunked (NetCDF-4): GDAL's block cache keeps each decompressed chunk for the next windows, the
            # library's small chunk cache would not (whole-grid chunks: 3.3 s classic vs 14.6 s, 1000 x 1000 x 120)
            return False
        dims = arr.GetDimensions()
        sizes = [int(d.GetSize()) for d in dims]
        if len(dims) != 3 or sizes[0] != ds.RasterCount or sizes[-1] != ds.RasterXSize or sizes[-2] != ds.RasterYSize:
            return False
        yvar = dims[-2].GetIndexingVariable()
        if yvar is None:
            return False
        y = np.asarray(yvar.ReadAsArray(), dtype=float)
        ascending = len(y) > 1 and y[-1] > y[0]
        gt = ds.GetGeoTransform()
        plan = (md, arr, ascending == (gt[5] < 0))
        # the mapping is checked on the first and last rows of the first and last bands
        for b in {1, ds.RasterCount}:
            for row in {0, ds.RasterYSize - 1}:
                classic = ds.GetRasterBand(b).ReadAsArray(0, row, ds.RasterXSize, 1)
                if not np.array_equal(classic, _md_read(plan, b, 0, row, ds.RasterXSize, 1), equal_nan=True):
                    return False
        return plan
    except (RuntimeError, AttributeError, TypeError, ValueError):
        return False


def _md_read(plan, band, xoff, yoff, xs, ys):
    """A window of one band through the multidimensional plan of :func:`_md_array` (raw values, as
    ``ReadAsArray``)."""
    _, arr, flipped = plan
    ny = int(arr.GetDimensions()[-2].GetSize())
    y0 = ny - yoff - ys if flipped else yoff
    a = arr.ReadAsArray(array_start_idx=[band - 1, y0, xoff], count=[1, ys, xs]).reshape(ys, xs)
    return a[::-1] if flipped else a


# GDAL's netCDF and HDF drivers serialise every read behind one global mutex (the libraries are not thread
# safe). Threads that contend for it spend 2-3x the CPU of one thread for the same reads (measured: a 1 000 x
# 1 000 x 120 model read as 256 x 256 windows, 0.9 s CPU on one thread, 3.3-3.6 s on two); taking turns on a
# lock of ours first costs what one thread does, and the other thread computes meanwhile.
_SERIAL_DRIVERS = ("netCDF", "HDF5", "HDF5Image", "HDF4", "HDF4Image")
_SERIAL_READS = threading.Lock()


class MonthlyStack:
    """A product on a complete calendar-month axis, in mm.

    ``data`` (nmonths, ny, nx) float64, NaN = no data (missing months are whole NaN bands);
    ``months`` consecutive month indices; ``lons``/``lats`` cell centres (lats descending,
    lons ascending, in the longitude convention asked for); ``missing`` month indices without a
    record; ``moves`` special months resolved (record, from, to).
    """

    def __init__(self, data, months, lons, lats, missing=(), moves=(), source="", wkt=None):
        self.data = data
        self.months = np.asarray(months, dtype=np.int64)
        self.lons = np.asarray(lons, dtype=np.float64)
        self.lats = np.asarray(lats, dtype=np.float64)
        self.missing = list(missing)
        self.moves = list(moves)
        self.source = source
        self.wkt = wkt or wgs84_wkt()

    @property
    def dates(self):
        return [month_from_index(k) for k in self.months]

    def grid(self):
        dx = self.lons[1] - self.lons[0] if len(self.lons) > 1 else 1.0
        dy = self.lats[0] - self.lats[1] if len(self.lats) > 1 else 1.0
        return RasterGrid(
            len(self.lons), len(self.lats), (self.lons[0] - dx / 2, dx, 0.0, self.lats[0] + dy / 2, 0.0, -dy), self.wkt
        )

    def report(self):
        lines = [
            "%s: %d months %s (%d missing)"
            % (self.source, len(self.months), month_range_label(self.months), len(self.missing))
        ]
        for rec, a, b in self.moves:
            lines.append(
                "special month: %s assigned to %s instead of %s" % (rec.label(), month_label(b), month_label(a))
            )
        if self.missing:
            lines.append("missing months (NaN, not interpolated): " + ", ".join(month_label(k) for k in self.missing))
        return lines


class ProductReader:
    """A monthly product: one multi-band raster (NetCDF variable or GeoTIFF), or one file per month.

    ``source``: ``NETCDF:"file":var``, a path, a glob (``/d/GLDAS_NOAH025_M.A*.nc4``), or a list
    of such items (monthly files). ``variable`` applies to paths given without one.
    ``units``: unit statement for :func:`parse_unit_spec` (``auto`` = from the file). Values are
    multiplied by ``gain`` too (e.g. a per-cell gain-factor array on the same grid, or a number).
    """

    def __init__(self, source, variable=None, units="auto", label=None):
        items = source if isinstance(source, (list, tuple)) else [source]
        files = []
        for it in items:
            for f, v in expand_source(it):
                files.append((f, v or variable))
        if not files:
            raise TimeSeriesError("no input given")
        self.label = label or (
            gdal_name(*files[0])
            if len(files) == 1
            else "%s (+%d monthly files)" % (gdal_name(*files[0]), len(files) - 1)
        )
        self._ds = {}
        self._md = {}  # (thread, path, variable) -> multidimensional read plan, or False (classic reads)
        records = []
        first = None
        for f, v in files:
            ds = self._open(f, v)
            gt, wkt, assumed = _georef(ds, gdal_name(f, v))
            grid = (ds.RasterXSize, ds.RasterYSize, gt)
            if first is None:
                first = grid
                self.geotransform, self.wkt, self.crs_assumed = gt, wkt, assumed
                self.xsize, self.ysize = ds.RasterXSize, ds.RasterYSize
                self.file_units = _band_units(ds)
                b1 = ds.GetRasterBand(1)
                self.nodata, self.scale, self.offset = b1.GetNoDataValue(), b1.GetScale(), b1.GetOffset()
            elif not RasterGrid(*grid, wkt).same_as(RasterGrid(*first, self.wkt)):
                raise TimeSeriesError("%s: its grid differs from %s" % (gdal_name(f, v), gdal_name(*files[0])))
            m = _FILE_MONTH.search(os.path.basename(f))
            name_month = month_index(_dt.date(int(m.group(1)), int(m.group(2)), 1)) if m else None
            recs = _records_of_dataset(f, v, ds, name_month)
            if len(files) > 1 and len(recs) == 1 and name_month is not None and recs[0].start is None:
                # one file per month: the month in the file name is authoritative for monthly means
                if recs[0].month != name_month:
                    d = month_from_index(name_month, 15)
                    recs[0] = Record(f, v, 1, _dt.datetime(d.year, d.month, d.day))
            records.extend(recs)
        self.variable = files[0][1]
        self.factor = parse_unit_spec(units, self.variable, self.file_units, self.label)
        self.moves = assign_months(records, self.label)
        self.records = sorted(records, key=lambda r: r.month)
        self.record_months = np.array([r.month for r in self.records], dtype=np.int64)
        self._by_month = {}
        for rec in self.records:
            self._by_month.setdefault(int(rec.month), []).append(rec)
        k0, k1 = int(self.record_months[0]), int(self.record_months[-1])
        self.months = np.arange(k0, k1 + 1, dtype=np.int64)
        present = set(self.record_months.tolist())
        self.missing = [int(k) for k in self.months if k not in present]
        x0, dx, _, y0, _, dy = self.geotransform
        self.lons = x0 + (np.arange(self.xsize) + 0.5) * dx
        self.lats = y0 + (np.arange(self.ysize) + 0.5) * dy

    def __getstate__(self):
        """Picklable (e.g. sent to Dask workers): open GDAL datasets are dropped and reopened on demand
        from the file paths, which the receiving process must be able to reach."""
        state = self.__dict__.copy()
        state["_ds"] = {}
        state["_md"] = {}
        return state

    def _open(self, f, v):
        key = (threading.get_ident(), f, v)  # GDAL handles are not shared between threads (Dask workers)
        if key not in self._ds:
            self._ds[key] = _open(f, v)
        return self._ds[key]

    def grid(self):
        return RasterGrid(self.xsize, self.ysize, self.geotransform, self.wkt)

    def is_global_lon(self):
        return abs(abs(self.geotransform[1]) * self.xsize - 360.0) < 1e-6 * 360

    def block_cache_bytes(self):
        """``(bytes per cell, block width, block height, buffer)`` of what GDAL's block cache holds while a window
        is read month by month from this product (:func:`~..io.rasters.decoded_block_bytes` of its first file:
        every band of a pixel-interleaved GeoTIFF, one band otherwise)."""
        rec = self.records[0]
        return decoded_block_bytes(self._open(rec.path, rec.variable))

    def _read(self, rec, xoff, yoff, xs, ys):
        shared = self._ds.get(("shared", rec.path, rec.variable))
        if shared is None:
            ds = self._open(rec.path, rec.variable)
            if ds.GetDriver().ShortName in _SERIAL_DRIVERS:
                shared = self._ds.setdefault(("shared", rec.path, rec.variable), ds)
        if shared is not None:
            # one classic handle for all threads (the reads take turns anyway, and its block cache serves
            # the chunks another window read); a contiguous netCDF variable is read through GDAL's
            # multidimensional API instead (one library call per window and month instead of one per row:
            # 3x faster), one handle per thread (two threads' windows interleaved on one handle read ~2x slower)
            with _SERIAL_READS:
                band = shared.GetRasterBand(rec.band)
                key = (threading.get_ident(), rec.path, rec.variable)
                md = self._md.get(key)
                if md is None:
                    md = self._md[key] = _md_array(rec.path, rec.variable, shared)
                if md:
                    a = _md_read(md, rec.band, int(xoff), int(yoff), int(xs), int(ys))
                else:
                    a = band.ReadAsArray(int(xoff), int(yoff), int(xs), int(ys))
                nodata, scale, offset = band.GetNoDataValue(), band.GetScale(), band.GetOffset()
        else:
            band = ds.GetRasterBand(rec.band)
            a = band.ReadAsArray(int(xoff), int(yoff), int(xs), int(ys))
            nodata, scale, offset = band.GetNoDataValue(), band.GetScale(), band.GetOffset()
        if a is None:
            raise TimeSeriesError("cannot read %s" % rec.label())
        return _clean(a, nodata, scale, offset, self.factor)

    def _axis_index(self, months):
        months = np.asarray(self.months if months is None else months, dtype=np.int64)
        pos = {int(k): i for i, k in enumerate(months)}
        return months, [(pos[int(r.month)], r) for r in self.records if int(r.month) in pos]

    def read_rows(self, row0, nrows, months=None, cols=None, counts=None):
        """Rows ``row0..row0+nrows`` (whole width, or ``cols`` = (xoff, xsize)) for ``months``
        (default: the complete axis) as (len(months), nrows, ncols) mm; months without a record are NaN.
        ``counts``: optional dict to which the valid and non-zero values of each record read are added
        (:func:`add_record_counts`, for :func:`check_zero_months`)."""
        months, pairs = self._axis_index(months)
        xoff, xs = cols if cols is not None else (0, self.xsize)
        out = np.full((len(months), nrows, xs), np.nan)
        flip = self.geotransform[5] > 0
        for i, rec in pairs:
            if flip:
                a = self._read(rec, xoff, self.ysize - row0 - nrows, xs, nrows)[::-1]
            else:
                a = self._read(rec, xoff, row0, xs, nrows)
            out[i] = a
            if counts is not None:
                add_record_counts(counts, self.label, rec, a)
        return out

    def read_month(self, row0, nrows, month, cols=None, counts=None):
        """One month of :meth:`read_rows` as (nrows, ncols) mm (NaN when the month has no record): what the
        window tasks stream month by month, so a window's months never have to be held at once."""
        xoff, xs = cols if cols is not None else (0, self.xsize)
        out = None
        for rec in self._by_month.get(int(month), ()):
            if self.geotransform[5] > 0:
                out = self._read(rec, xoff, self.ysize - row0 - nrows, xs, nrows)[::-1]
            else:
                out = self._read(rec, xoff, row0, xs, nrows)
            if counts is not None:
                add_record_counts(counts, self.label, rec, out)
        return np.full((nrows, xs), np.nan) if out is None else out

    def north_up_lats(self):
        return self.lats[::-1] if self.geotransform[5] > 0 else self.lats

    def window(self, bbox=None, margin=1, months=None):
        """Read a window around ``bbox`` = (lon_min, lat_min, lon_max, lat_max) with ``margin`` extra
        cells beyond the cells whose centres bracket the box, as a :class:`MonthlyStack`.

        Longitudes of a global (360 deg) grid wrap: the window may cross the file's seam (0/360 or
        -180/180) and its longitudes are returned in the convention of ``bbox``.
        """
        months, pairs = self._axis_index(months)
        x0, dx, _, y0, _, dy = self.geotransform
        if bbox is None:
            cols = np.arange(self.xsize)
            lon_shift = 0.0
        else:
            lon_min, lat_min, lon_max, lat_max = bbox
            if lon_max < lon_min:
                lon_max += 360.0
            lon_shift = 0.0
            if self.is_global_lon():
                k = math.floor((lon_min - x0) / 360.0)
                lon_shift = 360.0 * k
            c0 = math.floor((lon_min - lon_shift - x0) / dx - 0.5) - margin
            c1 = math.ceil((lon_max - lon_shift - x0) / dx - 0.5) + margin
            if self.is_global_lon():
                c1 = min(c1, c0 + self.xsize - 1)
            else:
                c0, c1 = max(c0, 0), min(c1, self.xsize - 1)
            if c1 < c0:
                raise TimeSeriesError(
                    "%s: longitudes %g..%g are outside the product (%g..%g)"
                    % (self.label, lon_min, lon_max, x0, x0 + dx * self.xsize)
                )
            cols = np.arange(c0, c1 + 1)
        lons_unwrapped = x0 + (cols + 0.5) * dx + lon_shift
        # rows in north-up order
        lats_nu = self.north_up_lats()
        if bbox is None:
            r0, r1 = 0, self.ysize - 1
        else:
            top = lats_nu[0] + abs(dy) / 2
            u = lambda lat: (top - lat) / abs(dy) - 0.5  # noqa: E731
            r0 = max(0, math.floor(u(lat_max)) - margin)
            r1 = min(self.ysize - 1, math.ceil(u(lat_min)) + margin)
            if r1 < r0:
                raise TimeSeriesError("%s: latitudes %g..%g are outside the product" % (self.label, lat_min, lat_max))
        nrows = r1 - r0 + 1
        # contiguous column runs in file space
        fcols = np.mod(cols, self.xsize)
        runs = []
        start = 0
        for i in range(1, len(fcols) + 1):
            if i == len(fcols) or fcols[i] != fcols[i - 1] + 1:
                runs.append((start, i))
                start = i
        data = np.full((len(months), nrows, len(cols)), np.nan)
        for a, b in runs:
            part = self.read_rows(r0, nrows, months, cols=(int(fcols[a]), b - a))
            data[:, :, a:b] = part
        present = {int(r.month) for _, r in pairs}
        missing = [int(k) for k in months if int(k) not in present]
        return MonthlyStack(
            data,
            months,
            lons_unwrapped,
            lats_nu[r0 : r1 + 1],
            missing=missing,
            moves=self.moves,
            source=self.label,
            wkt=self.wkt,
        )

    def report(self):
        lines = [
            "%s: %d records, months %s, units %r x%g -> mm%s"
            % (
                self.label,
                len(self.records),
                month_range_label(self.record_months),
                self.file_units,
                self.factor,
                ", CRS assumed EPSG:4326" if self.crs_assumed else "",
            )
        ]
        for rec, a, b in self.moves:
            lines.append(
                "special month: %s assigned to %s instead of %s" % (rec.label(), month_label(b), month_label(a))
            )
        if self.missing:
            lines.append(
                "missing months (kept NaN, not interpolated): " + ", ".join(month_label(k) for k in self.missing)
            )
        return lines


def add_record_counts(counts, label, rec, values):
    """Add to ``counts[(label, month)]`` = [valid, non-zero valid, file, variable, band] the values of one
    record's read (a window of it): the cheap statistic of :func:`check_zero_months`."""
    nvalid = values.size - int(np.count_nonzero(np.isnan(values)))  # read values: no data is NaN, never inf
    c = counts.setdefault((label, int(rec.month)), [0, 0, rec.path, rec.variable, rec.band])
    c[0] += nvalid
    c[1] += nvalid - int(np.count_nonzero(values == 0))  # (count_nonzero of floats is ~10x slower)


def stack_counts(counts, reader, stack):
    """:func:`add_record_counts` for every record month of a :class:`MonthlyStack` read from ``reader``."""
    pos = {int(k): i for i, k in enumerate(stack.months)}
    for rec in reader.records:
        if int(rec.month) in pos:
            add_record_counts(counts, reader.label, rec, stack.data[pos[int(rec.month)]])
    return counts


def merge_counts(parts):
    """One counts dict from the counts dicts of several windows (summed)."""
    out = {}
    for part in parts:
        for key, (nv, nz, path, var, band) in part.items():
            c = out.setdefault(key, [0, 0, path, var, band])
            c[0] += nv
            c[1] += nz
    return out


def zero_month_problems(counts):
    """Months whose values read are all 0 (or all fill/NoData) while their neighbouring record months are not.

    ``counts``: ``{(product label, month): [valid, non-zero, file, variable, band]}`` summed over the data read.
    A month is suspect when it is a record whose valid values are all exactly 0 while the nearest record
    month before and after (one of them at the ends of the series) have non-zero values, or when a NetCDF
    record has no valid value at all while they have valid values (an all-NaN band of a time-series GeoTIFF
    is the toolkit's way of writing a missing month and is not suspect). A variable that is zero in every month (snow
    in a desert) or zero in a run of months (a dry season) is not suspect. Returns a list of one-line descriptions.
    """
    by_product = {}
    for (label, k), c in counts.items():
        by_product.setdefault(label, {})[k] = c
    problems = []
    for label in sorted(by_product):
        per = by_product[label]
        ks = sorted(per)
        for j, k in enumerate(ks):
            nv, nz, path, var, band = per[k]
            near = [ks[i] for i in (j - 1, j + 1) if 0 <= i < len(ks)]
            if not near:
                continue
            if nv == 0 and var and all(per[n][0] > 0 for n in near):  # NaN bands of GeoTIFFs are missing months
                what = "has no valid value (all fill/NoData)"
            elif nv > 0 and nz == 0 and all(per[n][1] > 0 for n in near):
                what = "is 0 in all %d valid cells" % nv
            else:
                continue
            where = gdal_name(path, var) + (" band %d" % band if band != 1 else "")
            problems.append(
                "%s: month %s %s while %s %s not"
                % (
                    where,
                    month_label(k),
                    what,
                    " and ".join(month_label(n) for n in near),
                    "are" if len(near) > 1 else "is",
                )
            )
    return problems


def check_zero_months(counts, accept=False, log=None):
    """Raise :class:`TimeSeriesError` naming the first month found by :func:`zero_month_problems` (a damaged
    or badly converted file is otherwise used as 0 mm), or, with ``accept``, log each one as a warning."""
    problems = zero_month_problems(counts)
    if not problems:
        return
    if accept:
        for p in problems:
            (log or (lambda s: None))("warning: %s (accepted as real data)" % p)
        return
    more = " (and %d more month(s): %s)" % (len(problems) - 1, "; ".join(problems[1:])) if len(problems) > 1 else ""
    raise TimeSeriesError(
        "%s%s: the file is probably damaged or incompletely converted; download it again, or, "
        "if the month is real, accept all-zero months (ACCEPT_ZERO_MONTHS)" % (problems[0], more)
    )


def read_gain(source, like):
    """A time-invariant gain-factor grid (JPL ``scale_factor`` variable) on the cells of ``like``
    (a :class:`MonthlyStack`); the grids must share cell size and centres (longitudes may wrap)."""
    path, var = split_source(source)
    name = gdal_name(path, var)
    ds = _open(path, var)
    gt, _, _ = _georef(ds, name)
    b = ds.GetRasterBand(1)
    full = _clean(b.ReadAsArray(), b.GetNoDataValue(), b.GetScale(), b.GetOffset(), 1.0)
    dx, dy = gt[1], abs(gt[5])
    if gt[5] > 0:
        full = full[::-1]
        top = gt[3] + gt[5] * ds.RasterYSize
    else:
        top = gt[3]
    lon0 = gt[0] + 0.5 * dx
    lat0 = top - 0.5 * dy
    cell = abs(like.lons[1] - like.lons[0]) if len(like.lons) > 1 else dx
    if abs(cell - dx) > 1e-6 * max(1.0, dx):
        raise TimeSeriesError("%s: gain-factor cell size %g differs from the GRACE cell size %g" % (name, dx, cell))
    off = like.lons - lon0
    if abs(dx * ds.RasterXSize - 360.0) < 1e-6 * 360:
        off = np.mod(off + 1e-9, 360.0) - 1e-9
    cf, rf = off / dx, (lat0 - like.lats) / dy
    ci, ri = np.rint(cf).astype(int), np.rint(rf).astype(int)
    if (
        np.abs(cf - ci).max() > 1e-4
        or np.abs(rf - ri).max() > 1e-4
        or ci.min() < 0
        or ri.min() < 0
        or ci.max() >= ds.RasterXSize
        or ri.max() >= ds.RasterYSize
    ):
        raise TimeSeriesError("%s: the gain-factor grid does not cover or align with the GRACE cells" % name)
    return full[np.ix_(ri, ci)]


def describe_months(months):
    return ", ".join(month_label(k) for k in months)


def month_dates(months, day=15):
    return [month_from_index(k, day) for k in months]


__all__ = [
    "MonthlyStack",
    "ProductReader",
    "Record",
    "assign_months",
    "units_to_mm",
    "parse_unit_spec",
    "layer_thickness_from_name",
    "split_source",
    "expand_source",
    "read_gain",
    "month_label",
    "month_range_label",
    "format_date",
    "check_zero_months",
    "zero_month_problems",
    "add_record_counts",
    "stack_counts",
    "merge_counts",
]
