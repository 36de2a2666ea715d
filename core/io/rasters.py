"""Time-series raster convention and raster I/O (no QGIS imports).

The convention every algorithm of the toolkit reads and writes:

* a time-series raster is a multiband GeoTIFF, **one band per date**;
* each band's description is the date as ``YYYY-MM-DD`` and the same date is
  stored in the band metadata item ``DATE`` (and ``ACQUISITION_DATE`` for
  InSAR viewers);
* values are millimetres (dataset metadata ``UNITS=mm``), NoData is NaN;
* displacement is positive **toward the satellite** (uplift).

Dates are recognised, in this order, from an explicit list, the band
description, band metadata (``DATE``, ``ACQUISITION_DATE``, ``date``) and the
NetCDF time axis (band metadata ``NETCDF_DIM_time`` with units from the dataset
item ``time#units``, e.g. ``days since 2002-01-01``); see :mod:`.dates`.

Reading happens in windows (:mod:`.windows`) so stacks larger than memory stream through.
Writing goes through :class:`RasterWriter`, which writes to a temporary file
next to the destination and renames it only when everything succeeded, so a
failed or cancelled run never leaves a half-written output behind.
"""

import contextlib
import contextvars
import os
import time
import uuid

import numpy as np
from osgeo import gdal, osr

from .dates import decode_cf_time, format_date, parse_date, validate_dates
from .errors import TimeSeriesError
from .integrity import file_damage

gdal.UseExceptions()

UNITS_MM = "mm"
NODATA = float("nan")
MAX_GTIFF_BANDS = 65535


#: folders whose listing :func:`sibling_files` keeps (the most recently used), each with its modification time
SIBLING_FOLDERS = 64
_SIBLINGS = {}


def _folder_index(folder):
    """{lower-case prefix ending before a dot: names} of the folder's entries, listed again when the folder's
    modification time changed; None when it cannot be listed."""
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return None
    got = _SIBLINGS.get(folder)
    if got is not None and got[0] == mtime:
        return got[1]
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    index = {}
    for n in names:
        low = n.lower()
        for i, ch in enumerate(low):
            if ch == ".":
                index.setdefault(low[:i], []).append(n)
        index.setdefault(low, []).append(n)
    # kept only when the folder changed more than 2 s ago: a file created within the file system's timestamp
    # granularity of the listing would not change the modification time the cache is checked against
    if time.time_ns() - mtime > 2 * 10**9:
        if len(_SIBLINGS) >= SIBLING_FOLDERS:
            _SIBLINGS.pop(next(iter(_SIBLINGS)))
        _SIBLINGS[folder] = (mtime, index)
    return index


def sibling_files(path):
    """The entries of ``path``'s folder that GDAL may look for beside it - side-car files whose names start with
    the file's stem and a dot (``x.tif.aux.xml``, ``x.tfw``, ``x.tif.ovr``, ``x.tif.msk``, ...) and its RPC text
    (``x_rpc.txt``), the file itself included -
    or None (not a plain file). Why: unless told, GDAL lists the whole folder when a dataset's georeferencing or
    metadata is first asked for; for the hundreds of files of a frame in one folder that is quadratic (0.99 ms
    per file in a folder of 1 211, 0.23 ms with the list given). The folder is listed once and listed again only
    when it changed (its modification time; a folder changed in the last 2 s is listed at every call)."""
    path = str(path)
    if not os.path.isfile(path):
        return None
    folder, name = os.path.split(os.path.abspath(path))
    index = _folder_index(folder)
    if index is None:
        return None
    low = name.lower()
    stem = low.rsplit(".", 1)[0] if "." in low else low
    # names "stem.*" and "name.*", and GDAL's RPC text file "stem_rpc.txt"
    return list(dict.fromkeys(index.get(stem, []) + index.get(low, []) + index.get(stem + "_rpc", []) + [name]))


def _gdal_open(path, update=False):
    """``gdal.Open`` given the file's side-car names (:func:`sibling_files`) where it is a plain file."""
    siblings = sibling_files(path)
    if siblings is None:
        return gdal.Open(str(path), gdal.GA_Update if update else gdal.GA_ReadOnly)
    flags = gdal.OF_RASTER | gdal.OF_VERBOSE_ERROR | (gdal.OF_UPDATE if update else gdal.OF_READONLY)
    return gdal.OpenEx(str(path), flags, sibling_files=siblings)


def open_raster(path, update=False):
    """Open a raster with GDAL (given the file's side-car names: :func:`sibling_files`); the error names the
    file."""
    try:
        ds = _gdal_open(path, update)
    except RuntimeError as e:
        raise TimeSeriesError("cannot open raster %s: %s" % (path, e)) from None
    if ds is None:
        raise TimeSeriesError("cannot open raster %s" % path)
    if ds.RasterCount == 0:
        subs = [s[0] for s in (ds.GetSubDatasets() or [])]
        hint = (" ; it holds subdatasets, choose a variable: %s" % ", ".join(subs[:12])) if subs else ""
        raise TimeSeriesError("raster %s has no bands%s" % (path, hint))
    return ds


def memory_available_bytes():
    """What the kernel estimates can still be used without swapping (``MemAvailable`` of ``/proc/meminfo``: free
    memory plus the page cache it can reclaim), in bytes; None where it is not reported (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class BlockTable:
    """Where the blocks of a single-band GeoTIFF lie in its file: ``offsets`` and ``sizes`` (blocks_y, blocks_x)
    int64 bytes (0 for a block the file does not hold), ``block`` (x, y) and ``raster`` (x, y) sizes in pixels.
    From the TIFF's ``BLOCK_OFFSET_x_y`` / ``BLOCK_SIZE_x_y`` (:func:`tiff_block_table`); small, read once per file."""

    def __init__(self, offsets, sizes, block, raster):
        self.offsets, self.sizes = offsets, sizes
        self.block, self.raster = block, raster

    def ranges(self, xoff, yoff, xsize, ysize, whole=False):
        """Merged ``[(start, stop), ...]`` file bytes of the blocks the window touches (``whole``: only the blocks
        lying wholly inside it), in file order."""
        (bx, by), (nx, ny) = self.block, self.raster
        keep = []
        for ty in range(yoff // by, (yoff + ysize - 1) // by + 1):
            if whole and (ty * by < yoff or min((ty + 1) * by, ny) > yoff + ysize):
                continue
            for tx in range(xoff // bx, (xoff + xsize - 1) // bx + 1):
                if whole and (tx * bx < xoff or min((tx + 1) * bx, nx) > xoff + xsize):
                    continue
                if ty < self.sizes.shape[0] and tx < self.sizes.shape[1] and self.sizes[ty, tx] > 0:
                    keep.append((int(self.offsets[ty, tx]), int(self.offsets[ty, tx] + self.sizes[ty, tx])))
        keep.sort()
        merged = []
        for a, b in keep:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        return [tuple(m) for m in merged]


def tiff_block_table(ds, xoff=0, yoff=0, xsize=None, ysize=None):
    """The :class:`BlockTable` of a single-band GeoTIFF ``ds`` (the blocks the window touches only, others 0;
    the whole raster by default), or None: another format, several bands, no ``posix_fadvise`` to use it with."""
    if not hasattr(os, "posix_fadvise") or ds.RasterCount != 1 or ds.GetDriver().ShortName != "GTiff":
        return None
    band = ds.GetRasterBand(1)
    bx, by = (int(v) for v in band.GetBlockSize())
    nx, ny = ds.RasterXSize, ds.RasterYSize
    xsize = nx - xoff if xsize is None else xsize
    ysize = ny - yoff if ysize is None else ysize
    shape = (-(-ny // by), -(-nx // bx))
    offsets, sizes = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    for ty in range(yoff // by, min(shape[0], (yoff + ysize - 1) // by + 1)):
        for tx in range(xoff // bx, min(shape[1], (xoff + xsize - 1) // bx + 1)):
            off = band.GetMetadataItem("BLOCK_OFFSET_%d_%d" % (tx, ty), "TIFF")
            size = band.GetMetadataItem("BLOCK_SIZE_%d_%d" % (tx, ty), "TIFF")
            if off and size:
                offsets[ty, tx], sizes[ty, tx] = int(off), int(size)
    return BlockTable(offsets, sizes, (bx, by), (nx, ny))


def advise_file_ranges(path, ranges, advice):
    """``posix_fadvise(advice)`` on each ``(start, stop)`` byte range of the file ``path`` (only advice: the file and
    what is read from it are unchanged). Returns the bytes advised (0 when the file cannot be opened)."""
    if not ranges:
        return 0
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return 0
    try:
        for a, b in ranges:
            os.posix_fadvise(fd, a, b - a, advice)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return sum(b - a for a, b in ranges)


def forget_read_blocks(ds, path, xoff, yoff, xsize, ysize, table=None):
    """Tell the kernel that the blocks of a single-band GeoTIFF ``ds`` (opened from ``path``) lying wholly inside
    the window just read will not be read again, so that their pages leave the page cache now
    (``posix_fadvise(POSIX_FADV_DONTNEED)`` on each block's bytes, from ``table`` or the TIFF's block offsets and
    sizes); blocks the window only cuts stay (the next window reads their other part). Only advice: the file and
    what is read from it are unchanged, a later read comes from the disk. Returns the bytes advised (0 where
    there is nothing to do: another format, several bands, no ``posix_fadvise``)."""
    table = table or tiff_block_table(ds, xoff, yoff, xsize, ysize)
    if table is None:
        return 0
    return advise_file_ranges(path, table.ranges(xoff, yoff, xsize, ysize, whole=True), os.POSIX_FADV_DONTNEED)


def prefetch_blocks(path, table, xoff, yoff, xsize, ysize):
    """Ask the kernel to start reading, in the background, the blocks of a GeoTIFF (``table``: its
    :class:`BlockTable`) that a window touches (``posix_fadvise(POSIX_FADV_WILLNEED)``), so that a read of the
    window soon after finds them in the page cache instead of waiting for the disk. Returns the bytes asked for
    (0 without a table)."""
    if table is None:
        return 0
    return advise_file_ranges(path, table.ranges(xoff, yoff, xsize, ysize), os.POSIX_FADV_WILLNEED)


def decoded_block_bytes(ds):
    """What GDAL's block cache takes when one block of band 1 of ``ds`` is read: ``(bytes per cell, block
    width, block height, buffer)``, ``buffer`` the bytes of the tile GDAL decodes all bands into before it fills
    their blocks (0 unless pixel-interleaved). A pixel-interleaved GeoTIFF (GDAL's default for multiband
    GeoTIFFs) stores every band's values of a tile together, and one decode fills the blocks of all its bands: a
    window read band by band then takes each band's block from the cache, so the cache must hold every band of
    the window's tiles or each band decodes the tiles again (measured: 1000 x 1000 x 120 model, 2.4x slower with
    a 16 MB cache). Other layouts (band-interleaved GeoTIFFs, netCDF variables) decode one band per block."""
    if ds is None or ds.RasterCount == 0:
        return 0, 1, 1, 0
    band = ds.GetRasterBand(1)
    size = max(1, gdal.GetDataTypeSize(band.DataType) // 8)
    interleave = (ds.GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") or "").upper()
    bands = ds.RasterCount if interleave == "PIXEL" else 1
    bx, by = (max(1, n) for n in band.GetBlockSize())
    return bands * size, bx, by, (bands * size * bx * by if bands > 1 else 0)


def block_layout(ds, whole_stack_reads=False, nbands=None):
    """:class:`~.windows.BlockLayout` of ``ds`` for window planning under a memory cap
    (:func:`~.windows.plan_windows`): :func:`decoded_block_bytes`, held for the whole window when windows are
    read one band at a time (each band of a pixel-interleaved file would decode its tiles again), only at the
    window's edges when ``whole_stack_reads`` (:func:`read_window` of all bands, or of ``nbands`` of them: one
    dataset call for a pixel-interleaved file, whose tiles decode every band, band by band otherwise, each block
    used once within the window)."""
    from .windows import BlockLayout

    cell, bx, by, buf = decoded_block_bytes(ds)
    copy = 0
    if whole_stack_reads and ds is not None:
        size = max(1, gdal.GetDataTypeSize(ds.GetRasterBand(1).DataType) // 8)
        cell = size * (ds.RasterCount if buf else (nbands or ds.RasterCount))
        # GDAL reads a pixel-interleaved window of several bands through a copy in the file's type (measured: a
        # 512 x 256 x 120 float32 window read as float64 took 65 MB more, band-interleaved 9 MB)
        copy = size * (nbands or ds.RasterCount) if buf else 0
    return BlockLayout(
        cell,
        bx,
        by,
        buf,
        ds.RasterYSize if ds else 0,
        ds.RasterXSize if ds else 0,
        whole_window=not whole_stack_reads,
        read_copy=copy,
    )


def band_date(ds, index, nc_units=None):
    """The date of band ``index`` (1-based) of an open dataset, or ``None``."""
    band = ds.GetRasterBand(index)
    d = parse_date(band.GetDescription())
    if d:
        return d
    md = band.GetMetadata() or {}
    for key in ("DATE", "ACQUISITION_DATE", "date", "acquisition_date"):
        d = parse_date(md.get(key))
        if d:
            return d
    if "NETCDF_DIM_time" in md:
        units = nc_units or (ds.GetMetadata() or {}).get("time#units")
        if units:
            return decode_cf_time(md["NETCDF_DIM_time"], units).date()
    return None


def read_dates(ds_or_path, dates=None, require=True):
    """The dates of every band of a time-series raster.

    ``dates`` (a list of dates or date strings) overrides what the file says;
    its length must equal the band count. Raises :class:`TimeSeriesError` for a
    band without a date, duplicate or unsorted dates, or fewer than two bands.
    """
    ds = open_raster(ds_or_path) if isinstance(ds_or_path, (str, os.PathLike)) else ds_or_path
    name = ds.GetDescription()
    n = ds.RasterCount
    if dates:
        parsed = []
        for i, t in enumerate(dates):
            d = parse_date(t)
            if d is None:
                raise TimeSeriesError("%s: explicit date %d (%r) is not a date (YYYY-MM-DD)" % (name, i + 1, t))
            parsed.append(d)
        if len(parsed) != n:
            raise TimeSeriesError("%s: %d dates given for %d bands" % (name, len(parsed), n))
    else:
        parsed = []
        for i in range(1, n + 1):
            d = band_date(ds, i)
            if d is None:
                if not require:
                    return None
                desc = ds.GetRasterBand(i).GetDescription()
                raise TimeSeriesError(
                    "%s: band %d has no date (description %r; expected YYYY-MM-DD, YYYYMMDD, DYYYYMMDD, "
                    "band metadata DATE or NetCDF time)" % (name, i, desc)
                )
            parsed.append(d)
    return validate_dates(parsed, name)


class RasterGrid:
    """Size, geotransform and CRS (WKT) of a raster; compares with a tolerance."""

    def __init__(self, xsize, ysize, geotransform, projection):
        self.xsize = int(xsize)
        self.ysize = int(ysize)
        self.geotransform = tuple(float(v) for v in geotransform)
        self.projection = projection or ""

    @classmethod
    def of(cls, ds):
        return cls(ds.RasterXSize, ds.RasterYSize, ds.GetGeoTransform(), ds.GetProjection())

    def same_as(self, other, rel_tol=1e-6):
        if (self.xsize, self.ysize) != (other.xsize, other.ysize):
            return False
        px = max(abs(self.geotransform[1]), abs(self.geotransform[5]), 1e-12)
        if any(abs(a - b) > rel_tol * px for a, b in zip(self.geotransform, other.geotransform)):
            return False
        if self.projection and other.projection and self.projection != other.projection:
            a, b = osr.SpatialReference(), osr.SpatialReference()
            a.ImportFromWkt(self.projection)
            b.ImportFromWkt(other.projection)
            return bool(a.IsSame(b))
        return True

    def describe(self):
        return "%dx%d px, geotransform %s" % (self.xsize, self.ysize, ", ".join("%.6g" % v for v in self.geotransform))


def check_band_numeric(ds, source=None):
    """Raise if a band is not of a numeric (integer/float) type; complex and bytes-of-text are refused."""
    source = source or ds.GetDescription()
    for i in range(1, ds.RasterCount + 1):
        t = ds.GetRasterBand(i).DataType
        if t == gdal.GDT_Unknown or gdal.DataTypeIsComplex(t):
            raise TimeSeriesError("%s: band %d has the non-numeric data type %s" % (source, i, gdal.GetDataTypeName(t)))


# --------------------------------------------------------------------------- reading
def read_block(ds, row0, nrows, bands=None, dtype=np.float64, apply_scale=True):
    """Read rows ``row0 .. row0+nrows`` of the given bands (1-based; default all).

    Returns an array ``(nbands, nrows, xsize)`` in ``dtype`` with the band's
    NoData value turned into NaN and ``scale``/``offset`` applied (GDAL reports
    but does not apply NetCDF ``scale_factor``/``add_offset``).
    """
    return read_window(ds, 0, row0, ds.RasterXSize, nrows, bands=bands, dtype=dtype, apply_scale=apply_scale)


def _read_pixel_interleaved(ds, xoff, yoff, xsize, ysize, bands, out):
    """Read the window of a pixel-interleaved raster's ``bands`` into ``out`` in one dataset call; False (nothing
    read) for other layouts or when the call fails (the band-by-band read then names the damaged band). Read band
    by band, each band decodes the window's tiles again once they do not all fit in GDAL's block cache: four
    windows of 256 x 1 000 x 120 took 278-292 s with a 16-64 MB cache, 4.0 s with the default one, and 3.0-3.2 s
    in one call whatever the cache (BENCHMARKS.md, session 13)."""
    if (ds.GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") or "").upper() != "PIXEL":
        return False
    try:
        got = ds.ReadAsArray(int(xoff), int(yoff), int(xsize), int(ysize), buf_obj=out, band_list=bands)
    except RuntimeError:
        return False
    return got is not None


def _clean_band_in_place(a, band, apply_scale):
    """NoData -> NaN and scale / offset of one band's window ``a`` (float), in place: the same values as
    :func:`read_window`'s band-by-band read."""
    nd = band.GetNoDataValue()
    if nd is not None and not np.isnan(nd):
        a[a == nd] = np.nan
    if apply_scale:
        s, o = band.GetScale(), band.GetOffset()
        if s not in (None, 1.0) or o not in (None, 0.0):
            a *= 1.0 if s is None else s
            a += 0.0 if o is None else o


#: GDAL types whose every value float32 holds exactly
_FLOAT32_EXACT = {gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_Float32} | (
    {gdal.GDT_Int8} if hasattr(gdal, "GDT_Int8") else set()
)


def exact_read_dtype(ds):
    """``np.float32`` when :func:`read_window` can read every band of ``ds`` as float32 without changing a value
    (8/16-bit integers or float32, no scale or offset), else ``np.float64``: a window held as float32 takes half
    the memory and gives the same numbers once widened."""
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        if band.DataType not in _FLOAT32_EXACT:
            return np.float64
        s, o = band.GetScale(), band.GetOffset()
        if s not in (None, 1.0) or o not in (None, 0.0):
            return np.float64
    return np.float32


def read_window(ds, xoff, yoff, xsize, ysize, bands=None, dtype=np.float64, apply_scale=True):
    """Read the pixel window ``(xoff, yoff, xsize, ysize)`` of the given bands (1-based; default all).

    Same conventions as :func:`read_block` (NoData -> NaN, scale/offset applied);
    returns ``(nbands, ysize, xsize)``. The window must lie inside the raster.
    """
    bands = list(bands) if bands is not None else list(range(1, ds.RasterCount + 1))
    out = np.empty((len(bands), int(ysize), int(xsize)), dtype=dtype)
    if len(bands) > 1 and out.dtype.kind == "f" and _read_pixel_interleaved(ds, xoff, yoff, xsize, ysize, bands, out):
        for k, b in enumerate(bands):
            _clean_band_in_place(out[k], ds.GetRasterBand(b), apply_scale)
        return out
    for k, b in enumerate(bands):
        band = ds.GetRasterBand(b)
        try:
            a = band.ReadAsArray(int(xoff), int(yoff), int(xsize), int(ysize))
        except RuntimeError as e:
            raise TimeSeriesError(
                "%s: band %d cannot be read (%s): the file is damaged or truncated; re-create "
                "or re-download it" % (ds.GetDescription(), b, _last_line(e))
            ) from None
        if a is None:
            raise TimeSeriesError(
                "%s: cannot read band %d window x %d-%d, y %d-%d"
                % (ds.GetDescription(), b, xoff, xoff + xsize, yoff, yoff + ysize)
            )
        a = a.astype(dtype, copy=False)
        nd = band.GetNoDataValue()
        if nd is not None and not np.isnan(nd):
            a = np.where(a == nd, np.nan, a)
        if apply_scale:
            s, o = band.GetScale(), band.GetOffset()
            if s not in (None, 1.0) or o not in (None, 0.0):
                a = a * (1.0 if s is None else s) + (0.0 if o is None else o)
        out[k] = a
    return out


# --------------------------------------------------------------------------- writing
#: DEFLATE (readable everywhere) at level 1: on float32 outputs it writes 1.7-2x faster than the default level 6
#: for 1 % (noisy InSAR time series) to 5 % (smooth fields) larger files (BENCHMARKS.md, "Writing the outputs")
GTIFF_OPTIONS = [
    "TILED=YES",
    "COMPRESS=DEFLATE",
    "ZLEVEL=1",
    "PREDICTOR=3",
    "BIGTIFF=IF_SAFER",
    "BLOCKXSIZE=256",
    "BLOCKYSIZE=256",
]
#: the tiles of :data:`GTIFF_OPTIONS` (rows, columns)
GTIFF_TILE = (256, 256)

#: threads compressing the tiles of the GeoTIFFs a run writes (GTiff ``NUM_THREADS``), set for a run by
#: :func:`compression_threads`; 1 outside one. DEFLATE on one core was the slowest part of writing large
#: outputs (a 1 000 x 1 000 x 120 float32 stack: 9.0 s on one thread, 5.0 s on two; BENCHMARKS.md)
_COMPRESSION_THREADS = contextvars.ContextVar("subsidence_compression_threads", default=1)


@contextlib.contextmanager
def compression_threads(n):
    """GeoTIFFs opened by :class:`RasterWriter` in this thread (context) meanwhile compress their tiles on
    ``n`` threads (GDAL's own pool; the bytes of each tile and the values are the same as on one thread)."""
    token = _COMPRESSION_THREADS.set(max(1, int(n or 1)))
    try:
        yield
    finally:
        _COMPRESSION_THREADS.reset(token)


class RasterWriter:
    """Write a float32 GeoTIFF (one band per date or per named layer) atomically.

    Use as a context manager: the data go to a hidden temporary file beside
    ``path`` and are renamed onto ``path`` when the block exits without an
    exception; on an exception (including cancellation) the temporary file is
    removed and ``path`` is untouched.

    ``dates`` (list of dates) labels bands ``YYYY-MM-DD`` with metadata
    ``DATE``/``ACQUISITION_DATE``; otherwise ``band_names`` labels them.
    ``metadata`` goes into the dataset metadata (``UNITS`` is always set).
    ``require_data=True``: a raster in which every value is NoData fails at commit (nothing is written)
    instead of silently producing an empty result.
    """

    def __init__(
        self,
        path,
        grid,
        nbands,
        dates=None,
        band_names=None,
        units=UNITS_MM,
        metadata=None,
        dtype=gdal.GDT_Float32,
        nodata=NODATA,
        require_data=False,
    ):
        self.path = str(path)
        self.grid = grid
        self.nbands = int(nbands)
        self.dates = list(dates) if dates is not None else None
        self.band_names = list(band_names) if band_names is not None else None
        self.units = units
        self.metadata = dict(metadata or {})
        self.dtype = dtype
        self.nodata = nodata
        self.ds = None
        self.require_data = require_data  # True: a raster that is NoData everywhere is refused at commit
        self.has_data = False
        self.whole_tiles = True  # every block written to GDAL so far covered whole tiles (see write_block)
        self.pending = {}  # (tile row, tile column) -> [values (nbands, h, w), received (h, w) bool]
        d, f = os.path.split(os.path.abspath(self.path))
        self.tmp = os.path.join(d, ".%s.%s.partial.tif" % (f, uuid.uuid4().hex[:8]))

    def __enter__(self):
        return self.open()

    def open(self):
        if self.nbands > MAX_GTIFF_BANDS:
            raise TimeSeriesError(
                "%s would need %d bands but a GeoTIFF holds at most %d: choose fewer dates (a shorter period or "
                "a longer step)" % (self.path, self.nbands, MAX_GTIFF_BANDS)
            )
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        drv = gdal.GetDriverByName("GTiff")
        opts = list(GTIFF_OPTIONS)
        if self.dtype not in (gdal.GDT_Float32, gdal.GDT_Float64):
            opts = [o for o in opts if not o.startswith("PREDICTOR")]
        if self.nbands > 1:
            opts.append("INTERLEAVE=BAND")
        if _COMPRESSION_THREADS.get() > 1:
            opts.append("NUM_THREADS=%d" % _COMPRESSION_THREADS.get())
        try:
            self.ds = drv.Create(self.tmp, self.grid.xsize, self.grid.ysize, self.nbands, self.dtype, opts)
        except RuntimeError as e:
            self.abort()
            raise OSError(
                _errno_of(str(e), os.path.dirname(os.path.abspath(self.path))),
                "cannot create %s: %s" % (self.path, _last_line(e)),
                self.path,
            ) from None
        if self.ds is None:
            raise TimeSeriesError("cannot create %s" % self.path)
        self.ds.SetGeoTransform(self.grid.geotransform)
        if self.grid.projection:
            self.ds.SetProjection(self.grid.projection)
        md = {"UNITS": self.units or ""}
        if self.dates is not None:
            md["DATES"] = ",".join(format_date(d) for d in self.dates)
        md.update({str(k): str(v) for k, v in self.metadata.items()})
        self.ds.SetMetadata(md)
        for i in range(self.nbands):
            band = self.ds.GetRasterBand(i + 1)
            if self.nodata is not None:
                band.SetNoDataValue(float(self.nodata))
            if self.units:
                band.SetUnitType(self.units)
            if self.dates is not None:
                s = format_date(self.dates[i])
                band.SetDescription(s)
                band.SetMetadata({"DATE": s, "ACQUISITION_DATE": s})
            elif self.band_names is not None:
                band.SetDescription(str(self.band_names[i]))
        return self

    def write_block(self, row0, block, col0=0):
        """Write ``block`` of shape ``(nbands, nrows, ncols)`` (or 2-D for one band) at ``row0``
        (and ``col0``; by default a full-width block).

        The parts of the block that cover whole output tiles go to the file at once; the parts of tiles it covers
        only partly wait here (:attr:`pending`, every band of those tiles) until the tile is complete, so GDAL
        only ever receives whole tiles: nothing waits in GDAL's block cache, whose size then need not hold an
        unfinished row of tiles (a capped cache otherwise evicts unfinished tiles, compressing them again and
        again: resampling on two threads in 256 x 170 windows took 76-141 s, 13 s with this), and no tile is
        compressed twice. Tiles still incomplete at :meth:`commit` are written then (only their received
        pixels)."""
        block = np.asarray(block)
        if block.ndim == 2:
            block = block[None]
        full = col0 == 0 and block.shape[2] == self.grid.xsize
        if block.shape[0] != self.nbands or (not full and col0 + block.shape[2] > self.grid.xsize):
            raise ValueError(
                "block shape %s at column %d does not match %d bands x %d columns"
                % (block.shape, col0, self.nbands, self.grid.xsize)
            )
        row0, col0 = int(row0), int(col0)
        nrows, ncols = block.shape[1], block.shape[2]
        self._note_data(block)
        if not self.pending and self._covers_whole_tiles(row0, col0, nrows, ncols):
            self._write(row0, col0, block)
            return
        (th, tw), (ys, xs) = GTIFF_TILE, (self.grid.ysize, self.grid.xsize)
        for tr in range(row0 // th, -(-(row0 + nrows) // th)):
            for tc in range(col0 // tw, -(-(col0 + ncols) // tw)):
                t0, t1 = tr * th, min(ys, (tr + 1) * th)
                c0, c1 = tc * tw, min(xs, (tc + 1) * tw)
                a0, a1 = max(t0, row0), min(t1, row0 + nrows)
                b0, b1 = max(c0, col0), min(c1, col0 + ncols)
                part = block[:, a0 - row0 : a1 - row0, b0 - col0 : b1 - col0]
                if (a0, a1, b0, b1) == (t0, t1, c0, c1) and (tr, tc) not in self.pending:
                    self._write(t0, c0, part)
                    continue
                entry = self.pending.get((tr, tc))
                if entry is None:
                    entry = self.pending[(tr, tc)] = [
                        np.empty((self.nbands, t1 - t0, c1 - c0), part.dtype),
                        np.zeros((t1 - t0, c1 - c0), bool),
                    ]
                elif np.result_type(entry[0].dtype, part.dtype) != entry[0].dtype:
                    entry[0] = entry[0].astype(np.result_type(entry[0].dtype, part.dtype))
                entry[0][:, a0 - t0 : a1 - t0, b0 - c0 : b1 - c0] = part
                entry[1][a0 - t0 : a1 - t0, b0 - c0 : b1 - c0] = True
                if entry[1].all():
                    del self.pending[(tr, tc)]
                    self._write(t0, c0, entry[0])

    def _write(self, row0, col0, block):
        """Hand whole tiles (or anything, while :attr:`whole_tiles` is off) to GDAL; flush while all were whole."""
        for i in range(self.nbands):
            self.ds.GetRasterBand(i + 1).WriteArray(block[i], int(col0), int(row0))
        self.whole_tiles = self.whole_tiles and self._covers_whole_tiles(row0, col0, block.shape[1], block.shape[2])
        if self.whole_tiles:
            self._flush()

    def _write_pending(self):
        """The tiles still incomplete (e.g. a caller that writes only part of the raster): their received pixels,
        over what the file holds there."""
        (th, tw) = GTIFF_TILE
        for (tr, tc), (values, got) in sorted(self.pending.items()):
            r0, c0 = tr * th, tc * tw
            h, w = got.shape
            for i in range(self.nbands):
                band = self.ds.GetRasterBand(i + 1)
                have = band.ReadAsArray(c0, r0, w, h)
                band.WriteArray(np.where(got, values[i], have), c0, r0)
            self.whole_tiles = False
        self.pending = {}

    def _covers_whole_tiles(self, row0, col0, nrows, ncols):
        (th, tw), (ys, xs) = GTIFF_TILE, (self.grid.ysize, self.grid.xsize)
        return (
            row0 % th == 0
            and col0 % tw == 0
            and (nrows % th == 0 or row0 + nrows == ys)
            and (ncols % tw == 0 or col0 + ncols == xs)
        )

    def _flush(self):
        """Compress and write the tiles waiting in GDAL's block cache. ``write_block`` does it after every block
        while all blocks so far covered whole tiles (windows of whole tiles, as the window planners make them):
        only finished tiles are then waiting, and the output does not pile up in the cache (5 % of the RAM by
        default, outside the run's memory limit: a 1 000 x 1 000 x 120 downscaling at 256 MB peaked at 691 MB
        with the whole output waiting there, 343 MB flushed) nor get compressed all at once at the end. A
        partial tile is never flushed (it would be compressed twice and the file would keep both copies).
        A failure (e.g. a full disk) raises :class:`OSError` naming the output."""
        gdal.ErrorReset()
        try:
            self.ds.FlushCache()
            failed = gdal.GetLastErrorType() >= gdal.CE_Failure
            message = gdal.GetLastErrorMsg()
        except RuntimeError as e:
            failed, message = True, str(e)
        if failed:
            text = _last_line(message)
            raise OSError(
                _errno_of(text, os.path.dirname(os.path.abspath(self.path))),
                "%s could not be written: %s" % (self.path, text),
                self.path,
            )

    def write_band(self, index, array):
        """Write a whole band (1-based ``index``)."""
        array = np.asarray(array)
        self.ds.GetRasterBand(index).WriteArray(array)
        self._note_data(array)

    def _note_data(self, values):
        if self.has_data:
            return
        if values.dtype.kind == "f":
            valid = np.isfinite(values)
            if self.nodata is not None and not np.isnan(self.nodata):
                valid &= values != self.nodata
            self.has_data = bool(valid.any())
        else:
            self.has_data = self.nodata is None or bool((values != self.nodata).any())

    def commit(self):
        """Close, check and move the finished file onto the destination. Any failure (e.g. a full disk while
        the last blocks are flushed) removes the temporary file and raises :class:`OSError` naming the output."""
        if self.ds is None:
            return
        if self.require_data and not self.has_data:
            self.abort()
            raise TimeSeriesError(
                "%s: every value is NoData (nothing valid was computed; check that the inputs "
                "overlap and hold data); nothing was written" % self.path
            )
        try:
            self._write_pending()
            self._flush()
        except BaseException:
            self.abort()
            raise
        try:
            self.ds = None  # closes the file (GDAL < 3.7 cannot report errors at close: checked below)
            check_written_raster(self.tmp, self.grid, self.nbands)
            os.replace(self.tmp, self.path)
        except (RuntimeError, OSError, TimeSeriesError) as e:
            text = _last_line(e)
            code = _errno_of(text, os.path.dirname(os.path.abspath(self.path)))
            self.abort()
            raise OSError(code, "%s could not be written: %s" % (self.path, text), self.path) from None
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Close and delete the temporary file; the destination is not touched. Never raises."""
        self.pending = {}
        # closing a file on a full disk fails (GDAL would raise from the dataset's destructor, where it can
        # only be printed): close quietly, the file is deleted anyway
        try:
            with gdal_quiet():
                self.ds = None
        except Exception:  # noqa: BLE001
            pass
        for p in (self.tmp, self.tmp + ".aux.xml"):
            try:
                if os.path.exists(p):
                    os.remove(p)
            except OSError:
                pass

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()  # removes the temporary file itself when it fails
        else:
            self.abort()
        return False


@contextlib.contextmanager
def gdal_quiet():
    """GDAL errors neither printed nor raised inside (e.g. while closing datasets whose file can no longer be
    written: a full disk, a removed folder); the error handler and the exception mode come back after."""
    exceptions = gdal.GetUseExceptions()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        if exceptions:
            gdal.DontUseExceptions()
        yield
    finally:
        if exceptions:
            gdal.UseExceptions()
        gdal.PopErrorHandler()


def _last_line(e):
    text = str(e.strerror if isinstance(e, OSError) and e.strerror else e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def _errno_of(text, folder=None):
    """The errno a GDAL message describes (disk full, read-only, permission), else EIO; another write error
    in a ``folder`` whose file system has (almost) no free space left is a full disk."""
    import errno

    t = text.lower()
    if "no space left" in t or "disk full" in t or "enospc" in t:
        return errno.ENOSPC
    if "read-only file system" in t:
        return errno.EROFS
    if "permission denied" in t:
        return errno.EACCES
    if folder is not None:
        try:
            st = os.statvfs(folder)
            if st.f_bavail * st.f_frsize < max(64 * 1024, 4 * st.f_frsize):
                return errno.ENOSPC
        except OSError:
            pass
    return errno.EIO


def check_written_raster(path, grid=None, nbands=None):
    """Re-open a just-written raster and read its last row in every band (a file cut short by a full disk
    fails here). Raises :class:`TimeSeriesError` naming the file."""
    try:
        ds = gdal.Open(str(path))
        if ds is None:
            raise RuntimeError("not a raster")
        if grid is not None and (ds.RasterXSize, ds.RasterYSize) != (grid.xsize, grid.ysize):
            raise RuntimeError("size %dx%d instead of %dx%d" % (ds.RasterXSize, ds.RasterYSize, grid.xsize, grid.ysize))
        if nbands is not None and ds.RasterCount != nbands:
            raise RuntimeError("%d bands instead of %d" % (ds.RasterCount, nbands))
        damage = truncated_tiff_blocks(ds, path)
        if damage:
            raise RuntimeError(damage)
    except RuntimeError as e:
        raise TimeSeriesError("%s is incomplete: %s" % (path, _last_line(e))) from None


def truncated_tiff_blocks(ds, path=None, max_queries=200000):
    """For a GeoTIFF: a description of the first block that lies beyond the end of the file (a truncated
    copy or download), else ``None``. Other formats: reads the last row of every band instead."""
    path = str(path or ds.GetDescription())
    if ds.GetDriver().ShortName != "GTiff":
        for b in range(1, ds.RasterCount + 1):
            try:
                if ds.GetRasterBand(b).ReadRaster(0, ds.RasterYSize - 1, ds.RasterXSize, 1) is None:
                    return "band %d cannot be read" % b
            except RuntimeError as e:
                return "band %d cannot be read (%s)" % (b, _last_line(e))
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    queries = 0
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        bx, by = band.GetBlockSize()
        nbx, nby = -(-ds.RasterXSize // bx), -(-ds.RasterYSize // by)
        for j in range(nby):
            for i in range(nbx):
                queries += 1
                if queries > max_queries:
                    return None
                off = band.GetMetadataItem("BLOCK_OFFSET_%d_%d" % (i, j), "TIFF")
                n = band.GetMetadataItem("BLOCK_SIZE_%d_%d" % (i, j), "TIFF")
                if off and n and int(off) + int(n) > size:
                    return "band %d block (%d, %d) ends at byte %d but the file has %d bytes (truncated)" % (
                        b,
                        i,
                        j,
                        int(off) + int(n),
                        size,
                    )
    return None


def diagnose_raster(path):
    """One line saying why ``path`` cannot be used as a raster (missing, empty, not a raster, truncated),
    or ``None`` when it looks sound. Cheap: file size, header and the GeoTIFF block table."""
    path = str(path)
    plain = path
    if not os.path.exists(plain):
        return "%s does not exist" % path
    damage = file_damage(plain) if os.path.isfile(plain) else None
    if damage:
        return damage
    try:
        ds = _gdal_open(path)
    except RuntimeError as e:
        return "%s is not a readable raster (%s)" % (path, _last_line(e))
    if ds is None:
        return "%s is not a readable raster" % path
    if ds.RasterCount == 0:
        return None  # a container of subdatasets (NetCDF/HDF): checked when a variable is read
    damage = truncated_tiff_blocks(ds, path)
    if damage:
        return "%s is damaged: %s; re-create or re-download it" % (path, damage)
    return None


def write_raster(path, grid, array, dates=None, band_names=None, units=UNITS_MM, metadata=None):
    """Write a whole ``(nbands, rows, cols)`` (or 2-D) array with :class:`RasterWriter`."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    with RasterWriter(
        path, grid, array.shape[0], dates=dates, band_names=band_names, units=units, metadata=metadata
    ) as w:
        w.write_block(0, array)
    return path


def north_up(grid):
    """The same grid with a negative y pixel size (rows from north to south), as GeoTIFF outputs are written."""
    gt = grid.geotransform
    if gt[5] <= 0:
        return grid
    return RasterGrid(
        grid.xsize, grid.ysize, (gt[0], gt[1], 0.0, gt[3] + gt[5] * grid.ysize, 0.0, -gt[5]), grid.projection
    )


def grid_from_origin(x0, y0, dx, dy, xsize, ysize, epsg=4326):
    """A north-up :class:`RasterGrid` with top-left corner ``(x0, y0)`` and pixel size ``dx`` x ``dy``."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(int(epsg))
    return RasterGrid(xsize, ysize, (x0, dx, 0.0, y0, 0.0, -abs(dy)), srs.ExportToWkt())
