"""InSAR products as LiCSAR and HyP3 ship them: one reader layer (no QGIS imports).

Everything that reads interferograms, coherence or geometry goes through this module, so the conventions
of the processors are handled in one place:

* **Format** (``product``): ``auto`` detects it from the file names (LiCSAR ``YYYYMMDD_YYYYMMDD.geo.unw.tif``,
  HyP3 GAMMA ``S1AB_20171111T150004_20171117T145926_VVP006_INT80_G_ueF_4D09_unw_phase.tif``, HyP3 ISCE2 burst
  ``S1_136231_IW2_20200604_20200616_VV_INT80_12E3_...`` and multi-burst
  ``S1_064_000000s1n00-136231s2n02-000000s3n00_IW_20200604_20200616_VV_INT80_77F1_...``); ``licsar``,
  ``hyp3`` or ``generic`` override it.
* **8-bit coherence**: a coherence raster of data type Byte (current LiCSAR ``*.geo.cc.tif``, since 2019) is
  DN / 255 in float32; float coherence (old LiCSAR, HyP3 ``_corr.tif``) is read as it is.
* **Zero is no data in LiCSAR products**: an exact 0 in ``unw``, ``cc`` and the ``E``/``N``/``U``/``hgt``
  geometry becomes NaN whether or not the file declares a NoData value (as LiCSBAS does in every step).
  HyP3 and generic files: the NoData value the band declares (HyP3 declares 0), nothing else.
* **Per-product extents**: every raster is placed on one *stack grid*, the common intersection of the
  products (default) or their union (NaN outside a product). Products on one pixel lattice (same CRS and pixel
  size, origins a whole number of pixels apart) are read by offset, never resampled. Different CRS (HyP3
  products in two UTM zones) or lattices stop with an error naming them, unless ``crs_mode='warp'``: then
  every other product is warped (nearest neighbour) onto the first product's grid, and the log says so.
* **Baselines**: perpendicular baselines of each pair from LiCSAR's ``baselines`` file (per epoch, relative to
  the frame's primary epoch: pair = B(secondary) - B(reference)) or from the ``Baseline`` line of each HyP3
  product's ``.txt``; HyP3's unwrapping reference point from the same ``.txt``.
* **Geometry**: LiCSAR ``<frame>.geo.E/N/U.tif`` (unit vector ground -> satellite; incidence = acos U) or
  HyP3 ``_lv_theta.tif`` / ``_lv_phi.tif`` (look-vector elevation above the horizon and orientation from
  east, **radians**; incidence = pi/2 - theta), offered on the stack grid by :meth:`ProductStack.geometry`.
* **Sign**: LiCSAR and HyP3 unwrapped phase are both positive for motion away from the satellite (range
  increase), the convention our phase -> LOS conversion (-lambda/(4 pi) phase) expects: no flip. HyP3's
  README warns that its *displacement maps* (``_los_disp``, ``_vert_disp``) have the opposite sign to its
  unwrapped phase; they are not read as interferograms here.

Folder input (:func:`discover`): a LiCSAR frame download (``GEOC/YYYYMMDD_YYYYMMDD/`` or
``interferograms/YYYYMMDD_YYYYMMDD/``, with ``metadata/`` or the geometry files and ``baselines`` next to the
pair folders) or a HyP3 download folder (one folder or zip per product; zips are read in place through GDAL's
``/vsizip/``).
"""

import math
import os
import re

import numpy as np
from osgeo import gdal, osr

from ..io.errors import TimeSeriesError
from ..io.rasters import (
    RasterGrid,
    check_band_numeric,
    forget_read_blocks,
    open_raster,
    prefetch_blocks,
    read_window,
    tiff_block_table,
)

gdal.UseExceptions()

PRODUCT_AUTO = "auto"
PRODUCT_LICSAR = "licsar"
PRODUCT_HYP3 = "hyp3"
PRODUCT_GENERIC = "generic"
PRODUCTS = (PRODUCT_AUTO, PRODUCT_LICSAR, PRODUCT_HYP3, PRODUCT_GENERIC)
PRODUCT_LABELS = {PRODUCT_LICSAR: "LiCSAR", PRODUCT_HYP3: "HyP3", PRODUCT_GENERIC: "generic"}

EXTENT_INTERSECTION = "intersection"
EXTENT_UNION = "union"
EXTENTS = (EXTENT_INTERSECTION, EXTENT_UNION)

CRS_ERROR = "error"
CRS_WARP = "warp"
CRS_MODES = (CRS_ERROR, CRS_WARP)

KIND_UNW = "unw"
KIND_COH = "coh"
GEOMETRY_KINDS = ("E", "N", "U", "hgt", "lv_theta", "lv_phi", "dem", "water_mask")
LICSAR_ZERO_NODATA = (KIND_UNW, KIND_COH, "E", "N", "U", "hgt")

COHERENCE_BYTE_SCALE = np.float32(255.0)
#: band types that float32 holds exactly: GDAL decodes them straight into a float32 buffer with the values numpy's
#: ``astype(np.float32)`` gives (ProductRaster.read_into); other types go through a copy
IN_PLACE_TYPES = ("Byte", "Int16", "UInt16", "Float32")
LATTICE_TOL = 1e-3  # a product is on the stack's lattice when its origin is within this many pixels of it
WARP_MEMORY_BYTES = 4 * 2**20  # GDAL warper working memory of a warped read (its default, 64 MB, would exceed
#                                   small memory caps; the warp runs in chunks of this size)

# --------------------------------------------------------------------------- names
_D8 = r"\d{8}"
LICSAR_PAIR_RE = re.compile(r"^(\d{8})_(\d{8})\.geo\.(unw|cc)\.tif$", re.IGNORECASE)
LICSAR_GEOMETRY_RE = re.compile(r"^(?:(.+)\.)?geo\.(E|N|U|hgt)\.tif$")
_HYP3_NAMES = (
    # GAMMA scene product: S1AB_20171111T150004_20171117T145926_VVP006_INT80_G_ueF_4D09
    ("INSAR_GAMMA", r"S1[A-D_][A-D_]_\d{8}T\d{6}_\d{8}T\d{6}_[HV]{2}[PRO]\d{3}_INT\d+_G_[uw][ec][F123]_[0-9A-Fa-f]{4}"),
    # ISCE2 burst product: S1_136231_IW2_20200604_20200616_VV_INT80_12E3
    ("INSAR_ISCE_BURST", r"S1_\d{6}_IW[123]_\d{8}_\d{8}_[HV]{2}_INT\d+_[0-9A-Fa-f]{4}"),
    # ISCE2 multi-burst product: S1_064_000000s1n00-136231s2n02-000000s3n00_IW_20200604_20200616_VV_INT80_77F1
    # (the first releases had a hyphen after the relative orbit)
    (
        "INSAR_ISCE_MULTI_BURST",
        r"S1_\d{3}[-_]\d{6}s1n\d{2}-\d{6}s2n\d{2}-\d{6}s3n\d{2}_IW_\d{8}_\d{8}_[HV]{2}_INT\d+"
        r"_[0-9A-Fa-f]{4}",
    ),
)
HYP3_NAME_RE = re.compile(r"^(?P<name>%s)" % "|".join("(?:%s)" % p for _, p in _HYP3_NAMES))
HYP3_LAYERS = (
    "unw_phase",
    "corr",
    "lv_theta",
    "lv_phi",
    "dem",
    "water_mask",
    "inc_map",
    "inc_map_ell",
    "los_disp",
    "vert_disp",
    "amp",
    "wrapped_phase",
    "conncomp",
)
# <name>_<layer>.tif, or MintPy's clipped <name>_<layer>_clip.tif
HYP3_FILE_RE = re.compile(
    r"^(?P<name>.+?)_(?P<layer>%s)(?:_clip)?\.tif$" % "|".join(sorted(HYP3_LAYERS, key=len, reverse=True))
)


def hyp3_product_name(name):
    """(product name, job type) of a HyP3 file, folder or zip name, or None."""
    base = os.path.basename(str(name).rstrip("/"))
    m = HYP3_NAME_RE.match(base)
    if not m:
        return None
    n = m.group("name")
    for job, pat in _HYP3_NAMES:
        if re.fullmatch(pat, n):
            return n, job
    return None


def hyp3_layer(name):
    """(product name, layer) of a HyP3 GeoTIFF name (``..._unw_phase.tif`` -> layer ``unw_phase``), or None."""
    m = HYP3_FILE_RE.match(os.path.basename(str(name)))
    if not m:
        return None
    return m.group("name"), m.group("layer")


def product_of_name(name):
    """The format a single file name belongs to: ``licsar``, ``hyp3`` or ``generic``."""
    base = os.path.basename(str(name))
    if LICSAR_PAIR_RE.match(base) or LICSAR_GEOMETRY_RE.match(base):
        return PRODUCT_LICSAR
    if hyp3_layer(base) is not None:
        return PRODUCT_HYP3
    return PRODUCT_GENERIC


def detect_product(paths, product=PRODUCT_AUTO):
    """The format of a list of interferogram files: ``product`` unless it is ``auto``; then the format every
    name matches (LiCSAR or HyP3), otherwise ``generic``."""
    if product not in PRODUCTS:
        raise TimeSeriesError("unknown product %r (one of %s)" % (product, ", ".join(PRODUCTS)))
    if product != PRODUCT_AUTO:
        return product
    kinds = {product_of_name(p) for p in paths}
    return kinds.pop() if len(kinds) == 1 else PRODUCT_GENERIC


def _short(path):
    p = str(path)
    if p.startswith("/vsizip/"):
        inner = p[len("/vsizip/") :]
        i = inner.lower().find(".zip")
        if i >= 0:
            return "%s (in %s)" % (os.path.basename(inner), os.path.basename(inner[: i + 4]))
    return os.path.basename(p)


# --------------------------------------------------------------------------- rasters
def _srs(wkt):
    s = osr.SpatialReference()
    if wkt:
        s.ImportFromWkt(wkt)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def crs_label(wkt):
    """A short name of a CRS: ``EPSG:32650 (WGS 84 / UTM zone 50N)`` or its name."""
    if not wkt:
        return "no CRS"
    s = _srs(wkt)
    name = s.GetName() or "unnamed CRS"
    code = s.GetAuthorityCode(None)
    auth = s.GetAuthorityName(None)
    if not code:
        try:
            s2 = s.Clone()
            s2.AutoIdentifyEPSG()
            code, auth = s2.GetAuthorityCode(None), s2.GetAuthorityName(None)
        except RuntimeError:
            code = None
    return "%s:%s (%s)" % (auth, code, name) if code else name


def same_crs(a, b):
    if not a or not b or a == b:
        return True
    return bool(_srs(a).IsSame(_srs(b)))


class ProductRaster:
    """One single-band raster of a product, read on the stack grid.

    Holds only plain values (it pickles to a Dask worker). ``read`` returns a float32 window of the *stack
    grid* with the product's conventions applied: declared NoData -> NaN, Byte coherence / 255, LiCSAR
    zeros -> NaN, NaN outside the raster. Placement: by whole-pixel offset (``row_off``, ``col_off``: stack
    pixel (r, c) is the file's pixel (r + row_off, c + col_off)) or, with ``warp`` set, through a
    nearest-neighbour GDAL warp onto the stack grid.
    """

    def __init__(self, path, kind, product=PRODUCT_GENERIC, name=None):
        self.path = str(path)
        self.kind = kind
        self.product = product
        self.name = name or os.path.basename(self.path)
        ds = open_raster(self.path)
        check_band_numeric(ds, self.path)
        band = ds.GetRasterBand(1)
        self.grid = RasterGrid.of(ds)
        self.data_type = gdal.GetDataTypeName(band.DataType)
        self.nodata = band.GetNoDataValue()
        self.scale_offset = (band.GetScale(), band.GetOffset())  # read once: not per window (see _read_file)
        bs = band.GetBlockSize()
        self.block_size = (int(bs[0]), int(bs[1]))
        self.sample_bytes = max(1, gdal.GetDataTypeSize(band.DataType) // 8)
        self.signed_byte = band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE"
        ds = None
        self.zero_is_nodata = product == PRODUCT_LICSAR and kind in LICSAR_ZERO_NODATA
        self.byte_scaled = kind == KIND_COH and self.data_type == "Byte"
        self.row_off = 0
        self.col_off = 0
        self.warp = None  # (geotransform, projection wkt, xsize, ysize) of the stack grid
        self.blocks = None  # where the file's blocks lie (rasters.BlockTable; False: not a single-band GeoTIFF)
        self.stack_shape = (self.grid.ysize, self.grid.xsize)

    def __repr__(self):
        return "ProductRaster(%s, %s, %s)" % (_short(self.path), self.kind, self.product)

    def label(self):
        return _short(self.path)

    def conventions(self):
        """What :meth:`read` does to the values, in words (for the log)."""
        out = []
        if self.byte_scaled:
            out.append("8-bit coherence / 255")
        if self.zero_is_nodata:
            out.append("0 = no data")
        if self.nodata is not None and not (self.zero_is_nodata and self.nodata == 0):
            out.append("NoData %g" % self.nodata)
        return ", ".join(out) or "as stored"

    def place(self, grid, warp=False):
        """Put the raster on the stack ``grid``: by whole-pixel offset (it must be on the grid's lattice) or,
        with ``warp``, by a nearest-neighbour warp."""
        self.stack_shape = (grid.ysize, grid.xsize)
        if warp:
            self.warp = (tuple(grid.geotransform), grid.projection, grid.xsize, grid.ysize)
            self.row_off = self.col_off = 0
            return self
        self.warp = None
        gt, sg = self.grid.geotransform, grid.geotransform
        self.col_off = int(round((sg[0] - gt[0]) / gt[1]))
        self.row_off = int(round((sg[3] - gt[3]) / gt[5]))
        return self

    def _convert(self, a):
        if self.byte_scaled:
            a /= COHERENCE_BYTE_SCALE
        if self.zero_is_nodata:
            a[a == 0] = np.nan
        return a

    def _open_warped(self):
        gt, wkt, xs, ys = self.warp
        src_nodata = self.nodata
        if src_nodata is None and self.zero_is_nodata:
            src_nodata = 0
        opts = gdal.WarpOptions(
            format="VRT",
            outputBounds=(gt[0], gt[3] + ys * gt[5], gt[0] + xs * gt[1], gt[3]),
            width=xs,
            height=ys,
            dstSRS=wkt,
            resampleAlg="near",
            outputType=gdal.GDT_Float32,
            srcNodata=src_nodata,
            dstNodata=float("nan"),
            multithread=False,
            warpMemoryLimit=WARP_MEMORY_BYTES,
        )
        return gdal.Warp("", self.path, options=opts)

    def read(self, row0, nrows, col0=0, ncols=None):
        """The float32 window (``nrows`` x ``ncols``) at (``row0``, ``col0``) of the stack grid."""
        ysize, xsize = self.stack_shape
        if ncols is None:
            ncols = xsize - col0
        if self.warp is not None:
            ds = self._open_warped()
            try:
                a = read_window(ds, col0, row0, ncols, nrows, bands=[1], dtype=np.float32)[0]
            finally:
                ds = None
            return self._convert(a)  # the warp turned the source NoData into NaN already
        if self._reads_in_place():
            return self.read_into(row0, nrows, col0, ncols, np.empty((nrows, ncols), dtype=np.float32))
        fr0, fc0 = row0 + self.row_off, col0 + self.col_off
        r0, r1 = max(fr0, 0), min(fr0 + nrows, self.grid.ysize)
        c0, c1 = max(fc0, 0), min(fc0 + ncols, self.grid.xsize)
        if r0 == fr0 and c0 == fc0 and r1 - r0 == nrows and c1 - c0 == ncols:
            out = self._read_file(c0, r0, ncols, nrows)
        else:
            out = np.full((nrows, ncols), np.nan, dtype=np.float32)
            if r1 > r0 and c1 > c0:
                out[r0 - fr0 : r1 - fr0, c0 - fc0 : c1 - fc0] = self._read_file(c0, r0, c1 - c0, r1 - r0)
        return out

    def _reads_in_place(self):
        """True when a window can be decoded straight into a float32 buffer and converted there with the same
        values as :meth:`_read_file`: not warped, a type that float32 holds exactly (GDAL's conversion then
        equals numpy's ``astype``; not a signed-byte band, which GDAL would read as 0-255), and a scale/offset
        whose arithmetic stays in float32."""
        if self.warp is not None or self.signed_byte:
            return False
        if self.data_type not in IN_PLACE_TYPES:
            return False
        s, o = self.scale_offset
        if s not in (None, 1.0) or o not in (None, 0.0):
            scalars = (1.0 if s is None else s, 0.0 if o is None else o)
            return np.result_type(np.float32, *scalars) == np.float32
        return True

    def read_into(self, row0, nrows, col0, ncols, out, forget=False):
        """:meth:`read` into ``out`` (float32 (``nrows``, ``ncols``), e.g. one file's plane of a window buffer):
        GDAL decodes into ``out`` and the product's conventions are applied there, with the same float32
        operations as :meth:`read` (the same values bit for bit). ``forget``: the blocks read will not be read
        again (:func:`~..io.rasters.forget_read_blocks`). Returns ``out``."""
        if out.dtype != np.float32 or not self._reads_in_place():
            out[...] = self.read(row0, nrows, col0, ncols)
            return out
        fr0, fc0 = row0 + self.row_off, col0 + self.col_off
        r0, r1 = max(fr0, 0), min(fr0 + nrows, self.grid.ysize)
        c0, c1 = max(fc0, 0), min(fc0 + ncols, self.grid.xsize)
        if r0 == fr0 and c0 == fc0 and r1 - r0 == nrows and c1 - c0 == ncols:
            return self._read_file_into(c0, r0, out, forget)
        out.fill(np.nan)
        if r1 > r0 and c1 > c0:
            self._read_file_into(c0, r0, out[r0 - fr0 : r1 - fr0, c0 - fc0 : c1 - fc0], forget)
        return out

    def _block_table(self, ds=None):
        """The file's :class:`~..io.rasters.BlockTable` (read once, from ``ds`` or the file) or None."""
        if self.blocks is None:
            if ds is None:
                ds = open_raster(self.path)
            self.blocks = tiff_block_table(ds) or False
        return self.blocks or None

    def prefetch(self, row0, nrows, col0, ncols):
        """Start reading the file's blocks under a window of the stack grid into the page cache, in the background
        (:func:`~..io.rasters.prefetch_blocks`): the read of that window, soon after, does not wait for the disk.
        Nothing for a warped raster or a file that is not a single-band GeoTIFF. Returns the bytes asked for."""
        if self.warp is not None:
            return 0
        fr0, fc0 = row0 + self.row_off, col0 + self.col_off
        r0, r1 = max(fr0, 0), min(fr0 + nrows, self.grid.ysize)
        c0, c1 = max(fc0, 0), min(fc0 + ncols, self.grid.xsize)
        if r1 <= r0 or c1 <= c0:
            return 0
        try:
            return prefetch_blocks(self.path, self._block_table(), c0, r0, c1 - c0, r1 - r0)
        except (OSError, RuntimeError, TimeSeriesError):  # only advice: the read itself reports a file it cannot open
            self.blocks = False
            return 0

    def _read_file_into(self, xoff, yoff, out, forget=False):
        """The file's window at (``xoff``, ``yoff``) of ``out``'s shape, decoded into ``out`` (float32, any
        strides) with NoData -> NaN, scale/offset and the product's conventions applied in place."""
        ysize, xsize = out.shape
        ds = open_raster(self.path)
        try:
            a = ds.GetRasterBand(1).ReadAsArray(int(xoff), int(yoff), int(xsize), int(ysize), buf_obj=out)
            if forget and a is not None:
                forget_read_blocks(ds, self.path, int(xoff), int(yoff), int(xsize), int(ysize), self._block_table(ds))
        finally:
            ds = None
        if a is None:
            raise TimeSeriesError(
                "%s: cannot read band 1 window x %d-%d, y %d-%d" % (self.path, xoff, xoff + xsize, yoff, yoff + ysize)
            )
        nd = self.nodata
        zeros_left = True  # whether the values may still hold zeros (LiCSAR: no data)
        if nd is not None and not np.isnan(nd):
            np.copyto(out, np.float32(np.nan), where=out == nd)  # = np.where(a == nd, nan, a)
            zeros_left = nd != 0
        s, o = self.scale_offset
        if s not in (None, 1.0) or o not in (None, 0.0):
            np.multiply(out, 1.0 if s is None else s, out=out)  # = a * s + o, in float32 (_reads_in_place)
            np.add(out, 0.0 if o is None else o, out=out)
            zeros_left = True
        if self.byte_scaled:
            out /= COHERENCE_BYTE_SCALE  # 1-255 / 255 is not 0
        if self.zero_is_nodata and zeros_left:
            np.copyto(out, np.float32(np.nan), where=out == 0)
        return out

    def valid_at(self, points):
        """Bool per stack pixel (row, col) of ``points``: the raster has data there after the product's
        conventions (NoData, LiCSAR zeros, outside the raster). The file is opened once; only the blocks
        holding the points are decoded."""
        ysize, xsize = self.stack_shape
        ds = self._open_warped() if self.warp is not None else open_raster(self.path)
        try:
            band = ds.GetRasterBand(1)
            nodata = None if self.warp is not None else self.nodata
            out = np.zeros(len(points), dtype=bool)
            for j, (r, c) in enumerate(points):
                fr, fc = (r, c) if self.warp is not None else (r + self.row_off, c + self.col_off)
                if not (0 <= fr < ds.RasterYSize and 0 <= fc < ds.RasterXSize and 0 <= r < ysize and 0 <= c < xsize):
                    continue
                v = float(band.ReadAsArray(int(fc), int(fr), 1, 1)[0, 0])
                out[j] = (
                    np.isfinite(v) and not (nodata is not None and v == nodata) and not (self.zero_is_nodata and v == 0)
                )
            return out
        finally:
            ds = None

    def _read_file(self, xoff, yoff, xsize, ysize):
        """The file's window with NoData -> NaN and scale/offset applied (as :func:`read_window`), with the
        band's metadata read once at open: asking GDAL for it on every read costs a metadata (PAM) lookup
        per file and window, 0.3 s per 1,000 reads."""
        ds = open_raster(self.path)
        try:
            a = ds.GetRasterBand(1).ReadAsArray(int(xoff), int(yoff), int(xsize), int(ysize))
        finally:
            ds = None
        if a is None:
            raise TimeSeriesError(
                "%s: cannot read band 1 window x %d-%d, y %d-%d" % (self.path, xoff, xoff + xsize, yoff, yoff + ysize)
            )
        a = a.astype(np.float32, copy=False)
        nd = self.nodata
        if nd is not None and not np.isnan(nd):
            a = np.where(a == nd, np.float32(np.nan), a)
        s, o = self.scale_offset
        if s not in (None, 1.0) or o not in (None, 0.0):
            a = a * (1.0 if s is None else s) + (0.0 if o is None else o)
        return self._convert(a)

    def bounds(self):
        """(xmin, ymin, xmax, ymax) of the raster in its CRS (north-up grids)."""
        return grid_bounds(self.grid)


def grid_bounds(grid):
    gt = grid.geotransform
    xs = (gt[0], gt[0] + grid.xsize * gt[1])
    ys = (gt[3], gt[3] + grid.ysize * gt[5])
    return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------- alignment
def _north_up(r):
    gt = r.grid.geotransform
    if gt[2] != 0 or gt[4] != 0 or gt[1] <= 0 or gt[5] >= 0:
        raise TimeSeriesError(
            "%s is not a north-up grid (geotransform %s); warp it to a north-up grid first"
            % (r.label(), ", ".join("%.6g" % v for v in gt))
        )


def _on_lattice(r, ref):
    """Whether raster ``r`` shares the pixel lattice of raster ``ref`` (same CRS, pixel size, whole-pixel
    origin offset); returns (bool, reason)."""
    a, b = r.grid.geotransform, ref.grid.geotransform
    if not same_crs(r.grid.projection, ref.grid.projection):
        return False, "CRS %s, not %s" % (crs_label(r.grid.projection), crs_label(ref.grid.projection))
    for i, what in ((1, "pixel width"), (5, "pixel height")):
        if abs(a[i] - b[i]) > 1e-6 * abs(b[i]):
            return False, "%s %.10g, not %.10g" % (what, abs(a[i]), abs(b[i]))
    dx = (a[0] - b[0]) / b[1]
    dy = (a[3] - b[3]) / b[5]
    if abs(dx - round(dx)) > LATTICE_TOL or abs(dy - round(dy)) > LATTICE_TOL:
        return False, "origin %.4g, %.4g pixels from the lattice" % (dx - round(dx), dy - round(dy))
    return True, ""


def _off_lattice(rasters, crs_mode):
    """The rasters not on the first one's pixel lattice and why ({label: reason}); with ``crs_mode='error'`` a
    TimeSeriesError naming the CRS (HyP3 products in two UTM zones) or the rasters off the lattice."""
    ref = rasters[0]
    off, reasons = [], {}
    for r in rasters:
        ok, why = _on_lattice(r, ref)
        if not ok:
            off.append(r)
            reasons[r.label()] = why
    if off and crs_mode == CRS_ERROR:
        crs = {}
        for r in rasters:
            crs.setdefault(crs_label(r.grid.projection), []).append(r.label())
        if len(crs) > 1:
            parts = [
                "%s: %d (%s%s)" % (k, len(v), ", ".join(v[:2]), ", ..." if len(v) > 2 else "") for k, v in crs.items()
            ]
            raise TimeSeriesError(
                "the products are in %d different CRS (%s); set the CRS handling to warp onto "
                "the first product's grid, or give products of one UTM zone" % (len(crs), "; ".join(parts))
            )
        names = ", ".join("%s (%s)" % (k, v) for k, v in list(reasons.items())[:3])
        raise TimeSeriesError(
            "%d product raster(s) are not on the pixel lattice of %s: %s%s; set the CRS handling "
            "to warp onto the first product's grid, or resample them to one lattice"
            % (len(off), ref.label(), names, " ..." if len(off) > 3 else "")
        )
    return off, reasons


def _footprint(r, ref, extent, warped):
    """(col0, row0, col1, row1) of raster ``r`` in pixels of ``ref``'s lattice: exact for a raster on the
    lattice; for a warped one the whole lattice pixels inside its footprint (intersection) or touched by it
    (union)."""
    gt0 = ref.grid.geotransform
    dx, dy = gt0[1], gt0[5]
    if not warped:
        g = r.grid.geotransform
        c0 = int(round((g[0] - gt0[0]) / dx))
        r0 = int(round((g[3] - gt0[3]) / dy))
        return c0, r0, c0 + r.grid.xsize, r0 + r.grid.ysize
    xmin, ymin, xmax, ymax = r.bounds()
    if not same_crs(r.grid.projection, ref.grid.projection):
        ct = osr.CoordinateTransformation(_srs(r.grid.projection), _srs(ref.grid.projection))
        xmin, ymin, xmax, ymax = ct.TransformBounds(xmin, ymin, xmax, ymax, 21)
    c0, c1 = (xmin - gt0[0]) / dx, (xmax - gt0[0]) / dx
    r0, r1 = (ymax - gt0[3]) / dy, (ymin - gt0[3]) / dy
    if extent == EXTENT_INTERSECTION:
        return (
            math.ceil(c0 - LATTICE_TOL),
            math.ceil(r0 - LATTICE_TOL),
            math.floor(c1 + LATTICE_TOL),
            math.floor(r1 + LATTICE_TOL),
        )
    return (
        math.floor(c0 + LATTICE_TOL),
        math.floor(r0 + LATTICE_TOL),
        math.ceil(c1 - LATTICE_TOL),
        math.ceil(r1 - LATTICE_TOL),
    )


def _no_common_area(rasters, boxes):
    """The error for products without a common area, naming the first two that do not overlap."""
    detail = ""
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            bi, bj = boxes[i], boxes[j]
            if min(bi[2], bj[2]) <= max(bi[0], bj[0]) or min(bi[3], bj[3]) <= max(bi[1], bj[1]):
                detail = ": %s and %s do not overlap" % (rasters[i].label(), rasters[j].label())
                break
        if detail:
            break
    return TimeSeriesError(
        "the products have no common area%s; use the union extent or leave the non-overlapping products out" % detail
    )


def align(rasters, extent=EXTENT_INTERSECTION, crs_mode=CRS_ERROR, log=None):
    """Compute the stack grid of ``rasters`` (:class:`ProductRaster`, the first one defines CRS, pixel size and
    lattice) and place every raster on it. Returns the stack :class:`RasterGrid`.

    ``extent``: ``intersection`` (the area every raster covers) or ``union`` (NaN where a raster does not
    reach). ``crs_mode``: ``error`` stops when rasters are in different CRS or off the first one's pixel
    lattice, naming them; ``warp`` warps those onto the first raster's grid (nearest neighbour).
    """
    log = log or (lambda s: None)
    if extent not in EXTENTS:
        raise TimeSeriesError("unknown extent mode %r (one of %s)" % (extent, ", ".join(EXTENTS)))
    if crs_mode not in CRS_MODES:
        raise TimeSeriesError("unknown CRS handling %r (one of %s)" % (crs_mode, ", ".join(CRS_MODES)))
    if not rasters:
        raise TimeSeriesError("no rasters to align")
    for r in rasters:
        _north_up(r)
    ref = rasters[0]
    if all(r.grid.same_as(ref.grid) for r in rasters[1:]):  # every raster on the first one's grid
        for r in rasters:
            r.place(ref.grid)
        return ref.grid
    off, reasons = _off_lattice(rasters, crs_mode)
    boxes = [_footprint(r, ref, extent, r in off) for r in rasters]
    b = np.array(boxes)
    if extent == EXTENT_INTERSECTION:
        c0, r0, c1, r1 = b[:, 0].max(), b[:, 1].max(), b[:, 2].min(), b[:, 3].min()
        if c1 <= c0 or r1 <= r0:
            raise _no_common_area(rasters, boxes)
    else:
        c0, r0, c1, r1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    c0, r0, c1, r1 = int(c0), int(r0), int(c1), int(r1)
    gt0 = ref.grid.geotransform
    grid = RasterGrid(
        c1 - c0, r1 - r0, (gt0[0] + c0 * gt0[1], gt0[1], 0.0, gt0[3] + r0 * gt0[5], 0.0, gt0[5]), ref.grid.projection
    )
    for r in rasters:
        r.place(grid, warp=r in off)
    if off:
        log(
            "%d product raster(s) warped (nearest neighbour) onto the grid of %s (%s): %s%s"
            % (
                len(off),
                ref.label(),
                crs_label(ref.grid.projection),
                ", ".join("%s (%s)" % (k, v) for k, v in list(reasons.items())[:3]),
                " ..." if len(off) > 3 else "",
            )
        )
    log(
        "products differ in extent: stack grid = their %s, %d x %d px (%s)"
        % (
            "common intersection" if extent == EXTENT_INTERSECTION else "union (NaN outside a product)",
            grid.xsize,
            grid.ysize,
            grid.describe(),
        )
    )
    return grid


# --------------------------------------------------------------------------- metadata
def read_text(path):
    """Text of a file, also inside a zip (``/vsizip/...``)."""
    p = str(path)
    if p.startswith("/vsi"):
        f = gdal.VSIFOpenL(p, "rb")
        if f is None:
            raise TimeSeriesError("cannot open %s" % p)
        try:
            gdal.VSIFSeekL(f, 0, 2)
            n = gdal.VSIFTellL(f)
            gdal.VSIFSeekL(f, 0, 0)
            data = gdal.VSIFReadL(1, n, f)
        finally:
            gdal.VSIFCloseL(f)
        return data.decode("utf-8", "replace")
    with open(p, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _exists(path):
    p = str(path)
    if p.startswith("/vsi"):
        return gdal.VSIStatL(p) is not None
    return os.path.exists(p)


def parse_hyp3_metadata(text):
    """The ``Key: value`` lines of a HyP3 product ``.txt`` as a dict (keys as written)."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _float(v):
    try:
        return float(str(v).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def hyp3_baseline(meta):
    """Perpendicular baseline (m) of a HyP3 product from its parsed ``.txt``, or None."""
    return _float(meta.get("Baseline"))


def hyp3_reference_point(meta):
    """The unwrapping reference point of a HyP3 product (``.txt`` of hyp3-gamma >= 5.1 / ISCE2): dict with
    ``x``, ``y`` (map projection), ``lat``, ``lon``, ``phase`` (rad, removed from the raster), or None."""
    keys = {
        "x": "X coordinate of the reference point in the map projection",
        "y": "Y coordinate of the reference point in the map projection",
        "lat": "Latitude of the reference point (WGS84)",
        "lon": "Longitude of the reference point (WGS84)",
        "phase": "Phase at reference point",
    }
    low = {k.lower(): v for k, v in meta.items()}
    out = {k: _float(low.get(v.lower())) for k, v in keys.items()}
    return out if out["x"] is not None and out["y"] is not None else None


def read_licsar_baselines(path):
    """Perpendicular baseline (m) of every epoch from a LiCSAR ``baselines`` file: dict date -> B.

    Current format, one line per secondary epoch: ``primary secondary bperp btemp`` (the primary epoch has
    B = 0). Old format: ``num date1 date2 bp dt dt1 dt2 bp1 bp2`` per pair with the epochs' baselines in the
    last two columns. Lines that are neither (headers, comments) are skipped.
    """
    from ..io.dates import parse_date

    text = read_text(path)
    out = {}
    for line in text.splitlines():
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        try:
            if len(tok) >= 9 and parse_date(tok[1]) and parse_date(tok[2]):
                out[parse_date(tok[1])] = float(tok[7])
                out[parse_date(tok[2])] = float(tok[8])
            elif len(tok) >= 3 and len(tok[0]) == 8 and len(tok[1]) == 8 and parse_date(tok[0]) and parse_date(tok[1]):
                out.setdefault(parse_date(tok[0]), 0.0)
                out[parse_date(tok[1])] = float(tok[2])
        except ValueError:
            continue
    if not out:
        raise TimeSeriesError(
            "%s is not a LiCSAR baselines file (expected lines 'primary secondary bperp btemp')" % path
        )
    return out


# --------------------------------------------------------------------------- discovery
class Pair:
    """One interferogram product: its unwrapped phase, coherence, baseline and per-product metadata."""

    def __init__(self, name, unw, coh=None, bperp=None, metadata=None, geometry=None, source=None):
        self.name = name
        self.unw = unw
        self.coh = coh
        self.bperp = bperp
        self.metadata = metadata or {}
        self.geometry = geometry or {}
        self.source = source or unw

    def __repr__(self):
        return "Pair(%s)" % self.name


def _listdir(path):
    """Entries of a folder (also ``/vsizip/`` folders)."""
    p = str(path)
    if p.startswith("/vsi"):
        return [e.rstrip("/") for e in (gdal.ReadDir(p) or []) if e not in (".", "..")]
    try:
        return sorted(os.listdir(p))
    except OSError:
        return []


def _isdir(path):
    p = str(path)
    if p.startswith("/vsi"):
        st = gdal.VSIStatL(p)
        return st is not None and st.IsDirectory()
    return os.path.isdir(p)


def _find_pair_folders(folder):
    """(LiCSAR pair folder, unw path or None, cc path or None) under ``folder``: its ``GEOC/`` or
    ``interferograms/`` subfolder or the folder itself."""
    roots = [os.path.join(folder, "GEOC"), os.path.join(folder, "interferograms"), folder]
    pair_re = re.compile(r"^(\d{8})_(\d{8})$")
    for root in roots:
        if not os.path.isdir(root):
            continue
        out = []
        for e in sorted(os.listdir(root)):
            d = os.path.join(root, e)
            if pair_re.match(e) and os.path.isdir(d):
                unw = os.path.join(d, e + ".geo.unw.tif")
                cc = os.path.join(d, e + ".geo.cc.tif")
                out.append((d, unw if os.path.exists(unw) else None, cc if os.path.exists(cc) else None))
        # flat layout: the pair files directly in the folder
        if not out:
            for e in sorted(os.listdir(root)):
                m = LICSAR_PAIR_RE.match(e)
                if m and m.group(3).lower() == "unw":
                    stem = "%s_%s" % (m.group(1), m.group(2))
                    cc = os.path.join(root, stem + ".geo.cc.tif")
                    out.append((root + "/" + stem, os.path.join(root, e), cc if os.path.exists(cc) else None))
        if out:
            return root, out
    return None, []


def _licsar_metadata_dirs(folder, geoc_root):
    cands = [
        os.path.join(folder, "metadata"),
        geoc_root,
        os.path.join(geoc_root, "metadata"),
        folder,
        os.path.dirname(os.path.abspath(geoc_root)),
    ]
    out = []
    for c in cands:
        c = os.path.abspath(c)
        if os.path.isdir(c) and c not in out:
            out.append(c)
    return out


def _excluded(entry, exclude):
    """Whether a product (folder, zip or file name ``entry``) is named in ``exclude`` (names with or without
    folder / extension, HyP3 product names or pair labels ``YYYYMMDD_YYYYMMDD``)."""
    if not exclude:
        return False
    from .pairs import pair_from_name

    base = os.path.basename(str(entry).rstrip("/"))
    keys = {base, base.split(".")[0], base[:-4] if base.lower().endswith(".zip") else base}
    pr = pair_from_name(base)
    if pr is not None:
        keys.add("%s_%s" % (pr[0].strftime("%Y%m%d"), pr[1].strftime("%Y%m%d")))
    for e in exclude:
        e = os.path.basename(str(e).strip())
        if e and (e in keys or e.split(".")[0] in keys):
            return True
    return False


_FIX = "download it again, move it out of the folder or list it in EXCLUDE"


def discover_licsar(folder, log=None, exclude=()):
    """Products of a LiCSAR frame folder: (list of :class:`Pair`, frame geometry dict, baselines path or None).
    Pairs named in ``exclude`` are left out before they are checked."""
    log = log or (lambda s: None)
    folder = str(folder)
    root, found = _find_pair_folders(folder)
    if not found:
        raise TimeSeriesError(
            "no LiCSAR interferograms in %s (expected GEOC/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif)" % folder
        )
    pairs, no_unw, no_cc, left_out = [], [], [], []
    for d, unw, cc in found:
        stem = os.path.basename(d)
        if _excluded(stem, exclude):
            left_out.append(stem)
            continue
        if unw is None:
            no_unw.append(stem)
            continue
        if cc is None:
            no_cc.append(stem)
        pairs.append(Pair(stem, unw, cc, source=d))
    if no_unw:
        raise TimeSeriesError(
            "LiCSAR pair folder(s) without an unwrapped interferogram (*.geo.unw.tif): %s%s in %s; "
            "%s" % (", ".join(no_unw[:5]), " ..." if len(no_unw) > 5 else "", root, _FIX)
        )
    if no_cc:
        raise TimeSeriesError(
            "LiCSAR product(s) without coherence (YYYYMMDD_YYYYMMDD.geo.cc.tif): %s%s in %s; "
            "%s" % (", ".join(no_cc[:5]), " ..." if len(no_cc) > 5 else "", root, _FIX)
        )
    if left_out:
        log("left out (EXCLUDE): %s" % ", ".join(left_out))
    geometry, baselines = {}, None
    for mdir in _licsar_metadata_dirs(folder, root):
        for e in _listdir(mdir):
            m = LICSAR_GEOMETRY_RE.match(e)
            if m and m.group(2) not in geometry:
                geometry[m.group(2)] = os.path.join(mdir, e)
        if baselines is None and os.path.isfile(os.path.join(mdir, "baselines")):
            baselines = os.path.join(mdir, "baselines")
    if baselines:
        epochs = read_licsar_baselines(baselines)
        from ..io.dates import parse_date

        missing = set()
        for p in pairs:
            d1, d2 = (parse_date(s) for s in p.name.split("_"))
            if d1 in epochs and d2 in epochs:
                p.bperp = epochs[d2] - epochs[d1]
            else:
                missing.update(s for s, d in ((p.name[:8], d1), (p.name[9:], d2)) if d not in epochs)
        if missing:
            log(
                "LiCSAR baselines file %s has no baseline for epoch(s) %s: their pairs have none"
                % (baselines, ", ".join(sorted(missing)[:8]))
            )
    return pairs, geometry, baselines


def _hyp3_members(container):
    """GeoTIFF and .txt files of a HyP3 product folder or zip (``/vsizip/`` paths), recursively one level."""
    files = []
    for e in _listdir(container):
        p = container.rstrip("/") + "/" + e
        if _isdir(p):
            files.extend(p + "/" + f for f in _listdir(p))
        else:
            files.append(p)
    return files


def _hyp3_pair(container, files, label):
    layers, txt = {}, None
    names = set()
    for f in files:
        base = os.path.basename(f)
        hl = hyp3_layer(base)
        if hl is not None and base.lower().endswith(".tif"):
            layers.setdefault(hl[1], f)
            names.add(hl[0])
        elif base.endswith(".txt") and not base.endswith(".README.md.txt"):
            if hyp3_product_name(base[:-4]) is not None or txt is None:
                txt = f
    if "unw_phase" not in layers:
        raise TimeSeriesError("HyP3 product %s holds no unwrapped phase (*_unw_phase.tif); %s" % (label, _FIX))
    name = hyp3_layer(layers["unw_phase"])[0]
    if "corr" not in layers:
        raise TimeSeriesError("HyP3 product %s has no coherence (%s_corr.tif); %s" % (label, name, _FIX))
    meta, bperp = {}, None
    if txt is not None:
        meta = parse_hyp3_metadata(read_text(txt))
        bperp = hyp3_baseline(meta)
    geometry = {k: layers[k] for k in ("lv_theta", "lv_phi", "dem", "water_mask") if k in layers}
    return Pair(name, layers["unw_phase"], layers["corr"], bperp, meta, geometry, source=container)


def discover_hyp3(folder, log=None, exclude=()):
    """Products of a HyP3 download folder: one sub-folder or zip per product (or the files of one product
    directly in the folder). Returns a list of :class:`Pair`; products named in ``exclude`` are left out
    before they are checked."""
    log = log or (lambda s: None)
    folder = str(folder)
    pairs = []
    loose = []
    left_out = []
    for e in _listdir(folder):
        p = os.path.join(folder, e)
        if (e.lower().endswith(".zip") or os.path.isdir(p)) and _excluded(e, exclude):
            left_out.append(e)
            continue
        if e.lower().endswith(".zip") and os.path.isfile(p):
            vz = "/vsizip/" + os.path.abspath(p)
            try:
                files = _hyp3_members(vz)
            except RuntimeError as err:
                raise TimeSeriesError("cannot read the zip %s: %s" % (p, err)) from None
            pairs.append(_hyp3_pair(vz, files, e))
        elif os.path.isdir(p):
            files = [os.path.join(p, f) for f in _listdir(p)]
            if any(hyp3_layer(f) for f in files) or hyp3_product_name(e):
                pairs.append(_hyp3_pair(p, files, e))
        elif hyp3_layer(e) is not None:
            loose.append(p)
    if loose:
        by_name = {}
        for f in loose:
            by_name.setdefault(hyp3_layer(f)[0], []).append(f)
        for name, files in sorted(by_name.items()):
            txt = os.path.join(folder, name + ".txt")
            pairs.append(_hyp3_pair(folder, files + ([txt] if os.path.exists(txt) else []), name))
    if left_out:
        log("left out (EXCLUDE): %s" % ", ".join(left_out))
    if not pairs:
        raise TimeSeriesError(
            "no HyP3 products in %s (expected one folder or zip per product, named like "
            "S1AA_20200103T..._20200115T..._VVP012_INT80_G_ueF_1A2B)" % folder
        )
    return pairs


def _generic_pairs(folder):
    from .pairs import pair_from_name

    unw, coh = {}, {}
    for dirpath, _, files in os.walk(folder):
        for f in sorted(files):
            if not f.lower().endswith((".tif", ".tiff")) or pair_from_name(f) is None:
                continue
            low = f.lower()
            target = coh if re.search(r"(^|[._-])(cc|coh|coherence|corr|cor)([._-]|$)", low) else unw
            target.setdefault(pair_from_name(f), os.path.join(dirpath, f))
    if not unw:
        raise TimeSeriesError("no interferograms (GeoTIFFs with two YYYYMMDD dates in the name) in %s" % folder)
    return [Pair(os.path.basename(p), p, coh.get(k)) for k, p in sorted(unw.items())]


def detect_folder(folder):
    """The format of a download folder from what it holds: LiCSAR, HyP3, or generic."""
    folder = str(folder)
    _, lic = _find_pair_folders(folder)
    hyp = False
    for e in _listdir(folder):
        if hyp3_product_name(e.rsplit(".zip", 1)[0]) is not None or hyp3_layer(e) is not None:
            hyp = True
            break
        p = os.path.join(folder, e)
        if os.path.isdir(p) and any(hyp3_layer(f) for f in _listdir(p)):
            hyp = True
            break
    if lic and hyp:
        raise TimeSeriesError("%s holds both LiCSAR and HyP3 products; set the product type or separate them" % folder)
    return PRODUCT_LICSAR if lic else PRODUCT_HYP3 if hyp else PRODUCT_GENERIC


def discover(folder, product=PRODUCT_AUTO, log=None, exclude=()):
    """Interferograms, coherence, baselines and geometry of a download folder.

    Returns ``(product, pairs, frame_geometry, baselines_file)``: the format found (or given), a list of
    :class:`Pair` sorted by date pair, LiCSAR's frame geometry files ``{E, N, U, hgt}`` and its ``baselines``
    path (HyP3: per product, in each :class:`Pair`).
    """
    folder = str(folder)
    if not os.path.isdir(folder):
        raise TimeSeriesError("input folder %s does not exist" % folder)
    if product not in PRODUCTS:
        raise TimeSeriesError("unknown product %r (one of %s)" % (product, ", ".join(PRODUCTS)))
    if product == PRODUCT_AUTO:
        product = detect_folder(folder)
    geometry, baselines = {}, None
    if product == PRODUCT_LICSAR:
        pairs, geometry, baselines = discover_licsar(folder, log, exclude)
    elif product == PRODUCT_HYP3:
        pairs = discover_hyp3(folder, log, exclude)
    else:
        pairs = _generic_pairs(folder)
    from .pairs import pair_from_name

    seen = {}
    for p in pairs:
        key = pair_from_name(os.path.basename(p.unw))
        if key is None:
            raise TimeSeriesError("no date pair in the product name %s" % p.name)
        if key in seen:
            raise TimeSeriesError(
                "two products for the pair %s_%s: %s and %s; keep one"
                % (key[0].strftime("%Y%m%d"), key[1].strftime("%Y%m%d"), seen[key].name, p.name)
            )
        seen[key] = p
    pairs = [seen[k] for k in sorted(seen)]
    return product, pairs, geometry, baselines


def _baselines_near(unw_path):
    """LiCSAR ``baselines`` file next to a frame's pair folders, if any (for interferograms given as files)."""
    d = os.path.dirname(os.path.abspath(unw_path))
    for c in (
        os.path.dirname(d),
        d,
        os.path.join(os.path.dirname(os.path.dirname(d)), "metadata"),
        os.path.join(os.path.dirname(d), "metadata"),
    ):
        f = os.path.join(c, "baselines")
        if os.path.isfile(f):
            return f
    return None


def _hyp3_txt_near(unw_path):
    hl = hyp3_layer(unw_path)
    if hl is None:
        return None
    d = os.path.dirname(str(unw_path))
    f = d + "/" + hl[0] + ".txt" if d else hl[0] + ".txt"
    return f if _exists(f) else None


# --------------------------------------------------------------------------- the stack
class ProductStack:
    """Interferograms and coherence of one stack, placed on one grid, with baselines and geometry.

    ``ifg``: :class:`ProductRaster` per interferogram (in input order); ``coh``: per coherence file (the
    order given; matched to the interferograms by date pair by the caller) or None; ``grid``: the stack grid;
    ``bperp``: perpendicular baseline per interferogram (m, NaN where unknown) or None; ``names``: product
    names; ``reference_points``: HyP3 unwrapping reference points per interferogram (or None);
    ``notes``: what was detected and done (for the log).
    """

    def __init__(
        self,
        product,
        ifg,
        coh,
        grid,
        bperp=None,
        names=None,
        geometry_files=None,
        reference_points=None,
        notes=None,
        extent=EXTENT_INTERSECTION,
        crs_mode=CRS_ERROR,
    ):
        self.product = product
        self.ifg = ifg
        self.coh = coh
        self.grid = grid
        self.bperp = bperp
        self.names = names or [r.name for r in ifg]
        self.geometry_files = geometry_files or {}
        self.reference_points = reference_points
        self.notes = notes or []
        self.extent = extent
        self.crs_mode = crs_mode

    @property
    def paths(self):
        return [r.path for r in self.ifg]

    def geometry(self, kind="incidence"):
        """A reader of a geometry layer on the stack grid: ``incidence`` (degrees from the vertical), ``E``, ``N``,
        ``U`` (unit LOS vector ground -> satellite) or a file kind (``hgt``, ``dem``, ``lv_theta``, ...).
        Raises when the product ships no such geometry or it does not cover the stack."""
        return GeometryLayer(self, kind)


class GeometryLayer:
    """One geometry quantity on a stack grid, derived from the product's geometry files (see
    :meth:`ProductStack.geometry`). ``read(row0, nrows, col0, ncols)`` -> float32."""

    def __init__(self, stack, kind):
        self.kind = kind
        files = stack.geometry_files
        self.sources = {}
        if kind in ("incidence", "E", "N", "U"):
            if "U" in files and ("E" in files and "N" in files or kind in ("incidence", "U")):
                need = ("U",) if kind == "incidence" else (kind,)
                self.method = "enu"
            elif "lv_theta" in files and (kind in ("incidence", "U") or "lv_phi" in files):
                need = ("lv_theta",) if kind in ("incidence", "U") else ("lv_theta", "lv_phi")
                self.method = "lv"
            else:
                raise TimeSeriesError(
                    "the %s products ship no geometry for %s (LiCSAR metadata/<frame>.geo.E/N/U.tif "
                    "or HyP3 _lv_theta.tif/_lv_phi.tif, which are optional in HyP3 orders)"
                    % (PRODUCT_LABELS.get(stack.product, stack.product), kind)
                )
        elif kind in files:
            need = (kind,)
            self.method = "file"
        else:
            raise TimeSeriesError(
                "the %s products ship no %s geometry file" % (PRODUCT_LABELS.get(stack.product, stack.product), kind)
            )
        for k in need:
            self.sources[k] = _covering(files[k], k, stack)
        self.grid = stack.grid

    def describe(self):
        return ", ".join("%s from %s" % (k, r.label()) for k, r in self.sources.items())

    UNITS = {
        "incidence": "degrees",
        "E": "",
        "N": "",
        "U": "",
        "hgt": "m",
        "dem": "m",
        "lv_theta": "radians",
        "lv_phi": "radians",
        "water_mask": "",
    }

    def write(self, path, rows_per_block=256):
        """Write the layer on the stack grid as a float32 GeoTIFF (NaN = no data), in row blocks."""
        from ..io.rasters import RasterWriter

        g = self.grid
        with RasterWriter(
            path,
            g,
            1,
            band_names=[self.kind],
            units=self.UNITS.get(self.kind, ""),
            metadata={"KIND": "geometry", "SOURCE": self.describe()},
        ) as w:
            for r0 in range(0, g.ysize, rows_per_block):
                n = min(rows_per_block, g.ysize - r0)
                w.write_block(r0, self.read(r0, n, 0, g.xsize)[None])
        return str(path)

    def read(self, row0, nrows, col0=0, ncols=None):
        s = self.sources
        if self.method == "file":
            return s[self.kind].read(row0, nrows, col0, ncols)
        if self.method == "enu":
            a = s["U" if self.kind == "incidence" else self.kind].read(row0, nrows, col0, ncols)
            if self.kind == "incidence":
                return np.degrees(np.arccos(np.clip(a, -1, 1))).astype(np.float32)
            return a
        theta = s["lv_theta"].read(row0, nrows, col0, ncols).astype(np.float64)
        if self.kind == "incidence":
            return np.degrees(np.pi / 2 - theta).astype(np.float32)
        if self.kind == "U":
            return np.sin(theta).astype(np.float32)
        phi = s["lv_phi"].read(row0, nrows, col0, ncols).astype(np.float64)
        comp = np.cos(theta) * (np.cos(phi) if self.kind == "E" else np.sin(phi))
        return comp.astype(np.float32)


def _covering(candidates, kind, stack):
    """The first geometry raster (of a list of paths, or one path) that covers the whole stack grid, placed
    on it; the error names the geometry and the stack extent."""
    if isinstance(candidates, str):
        candidates = [candidates]
    sx0, sy0, sx1, sy1 = grid_bounds(stack.grid)
    last = None
    for path in candidates:
        r = ProductRaster(path, kind, stack.product)
        _north_up(r)
        if not same_crs(r.grid.projection, stack.grid.projection):
            if stack.crs_mode != CRS_WARP:
                last = "%s is in %s, the stack in %s" % (
                    r.label(),
                    crs_label(r.grid.projection),
                    crs_label(stack.grid.projection),
                )
                continue
            ct = osr.CoordinateTransformation(_srs(r.grid.projection), _srs(stack.grid.projection))
            gx0, gy0, gx1, gy1 = ct.TransformBounds(*r.bounds(), 21)
            warp = True
        else:
            gx0, gy0, gx1, gy1 = r.bounds()
            warp = not _on_lattice(r, _GridProbe(stack.grid))[0]
            if warp and stack.crs_mode != CRS_WARP:
                last = "%s is not on the stack's pixel lattice" % r.label()
                continue
        px = abs(stack.grid.geotransform[1]) * LATTICE_TOL
        if gx0 <= sx0 + px and gy0 <= sy0 + px and gx1 >= sx1 - px and gy1 >= sy1 - px:
            return r.place(stack.grid, warp=warp)
        last = "%s covers x %.10g..%.10g, y %.10g..%.10g but the stack spans x %.10g..%.10g, y %.10g..%.10g" % (
            r.label(),
            gx0,
            gx1,
            gy0,
            gy1,
            sx0,
            sx1,
            sy0,
            sy1,
        )
    raise TimeSeriesError("the %s geometry does not cover the stack: %s" % (kind, last))


class _GridProbe:
    """A stand-in with the attributes :func:`_on_lattice` reads from a raster."""

    def __init__(self, grid):
        self.grid = grid


class _Inputs:
    """What a folder or a file list holds: format, files, names, baselines, geometry, reference points."""

    def __init__(
        self,
        product,
        ifg_paths,
        coherence_paths=None,
        names=None,
        bperp=None,
        geometry_files=None,
        reference_points=None,
    ):
        self.product = product
        self.ifg_paths = ifg_paths
        self.coherence_paths = coherence_paths or None
        self.names = names
        self.bperp = bperp
        self.geometry_files = geometry_files or {}
        self.reference_points = reference_points


def _inputs_from_folder(folder, product, note, exclude):
    kind, pairs, frame_geom, baselines = discover(folder, product, note, exclude)
    ifg_paths = [p.unw for p in pairs]
    coherence_paths = [p.coh for p in pairs if p.coh]
    if coherence_paths and len(coherence_paths) != len(ifg_paths):
        note(
            "coherence found for only %d of the %d interferograms in %s: coherence not used"
            % (len(coherence_paths), len(ifg_paths), folder)
        )
        coherence_paths = None
    bperp = np.array([np.nan if p.bperp is None else p.bperp for p in pairs], dtype=float)
    geometry_files, ref_points = dict(frame_geom), None
    if kind == PRODUCT_HYP3:
        for k in ("lv_theta", "lv_phi", "dem", "water_mask"):
            cands = [p.geometry[k] for p in pairs if k in p.geometry]
            if cands:
                geometry_files[k] = cands
        ref_points = [hyp3_reference_point(p.metadata) for p in pairs]
    note(
        "%s products in %s: %d interferograms%s%s%s"
        % (
            PRODUCT_LABELS[kind],
            folder,
            len(pairs),
            ", with coherence" if coherence_paths else "",
            ", baselines from %s" % (os.path.basename(baselines) if baselines else "each product's .txt")
            if np.isfinite(bperp).any()
            else ", no baselines",
            ", geometry %s" % "/".join(sorted(geometry_files)) if geometry_files else "",
        )
    )
    return _Inputs(
        kind,
        ifg_paths,
        coherence_paths,
        names=[p.name for p in pairs],
        bperp=bperp,
        geometry_files=geometry_files,
        reference_points=ref_points,
    )


def _hyp3_files_metadata(ifg_paths, note):
    """Baselines, reference points and geometry files next to HyP3 interferograms given as files."""
    vals, metas, geometry_files = [], [], {}
    for p in ifg_paths:
        txt = _hyp3_txt_near(p)
        meta = parse_hyp3_metadata(read_text(txt)) if txt else {}
        metas.append(meta)
        b = hyp3_baseline(meta)
        vals.append(np.nan if b is None else b)
    bperp = None
    if np.isfinite(vals).any():
        bperp = np.array(vals, dtype=float)
        note("perpendicular baselines from the HyP3 .txt of %d products" % int(np.isfinite(bperp).sum()))
    for k in ("lv_theta", "lv_phi", "dem", "water_mask"):
        cands = []
        for p in ifg_paths:
            hl = hyp3_layer(p)
            f = os.path.join(os.path.dirname(p), "%s_%s.tif" % (hl[0], k)) if hl else None
            if f and _exists(f):
                cands.append(f)
        if cands:
            geometry_files[k] = cands
    return bperp, [hyp3_reference_point(m) for m in metas], geometry_files


def _licsar_files_metadata(ifg_paths, note):
    """Baselines and frame geometry near LiCSAR interferograms given as files."""
    from .pairs import pair_from_name

    bperp, geometry_files = None, {}
    bl = _baselines_near(ifg_paths[0])
    if bl:
        epochs = read_licsar_baselines(bl)
        vals = []
        for p in ifg_paths:
            pr = pair_from_name(p)
            vals.append(epochs[pr[1]] - epochs[pr[0]] if pr and pr[0] in epochs and pr[1] in epochs else np.nan)
        bperp = np.array(vals, dtype=float)
        note("perpendicular baselines from the LiCSAR baselines file %s" % bl)
    d = os.path.dirname(os.path.abspath(ifg_paths[0]))
    for mdir in _licsar_metadata_dirs(os.path.dirname(os.path.dirname(d)), os.path.dirname(d)):
        for e in _listdir(mdir):
            m = LICSAR_GEOMETRY_RE.match(e)
            if m and m.group(2) not in geometry_files:
                geometry_files[m.group(2)] = os.path.join(mdir, e)
    return bperp, geometry_files


def _inputs_from_files(ifg_paths, coherence_paths, product, note):
    ifg_paths = [str(p) for p in (ifg_paths or [])]
    if not ifg_paths:
        raise TimeSeriesError("no interferograms given (a file list or an input folder)")
    product = detect_product(ifg_paths, product)
    inputs = _Inputs(product, ifg_paths, [str(p) for p in (coherence_paths or [])])
    if product == PRODUCT_HYP3:
        inputs.bperp, inputs.reference_points, inputs.geometry_files = _hyp3_files_metadata(ifg_paths, note)
    elif product == PRODUCT_LICSAR:
        inputs.bperp, inputs.geometry_files = _licsar_files_metadata(ifg_paths, note)
    return inputs


def open_stack(
    ifg_paths=None,
    coherence_paths=None,
    folder=None,
    product=PRODUCT_AUTO,
    extent=EXTENT_INTERSECTION,
    crs_mode=CRS_ERROR,
    log=None,
    exclude=(),
):
    """Open the interferograms (and coherence) of a stack through the product conventions and place them on
    one grid. Either ``folder`` (a LiCSAR frame or HyP3 download folder, see :func:`discover`; products named
    in ``exclude`` are left out) or ``ifg_paths`` (and optionally ``coherence_paths``). Returns a
    :class:`ProductStack`.
    """
    log = log or (lambda s: None)
    notes = []

    def note(s):
        notes.append(s)
        log(s)

    if folder:
        if ifg_paths or coherence_paths:
            raise TimeSeriesError("give either an input folder or interferogram / coherence files, not both")
        inputs = _inputs_from_folder(folder, product, note, exclude)
    else:
        inputs = _inputs_from_files(ifg_paths, coherence_paths, product, note)
    product = inputs.product
    names = inputs.names or [None] * len(inputs.ifg_paths)
    ifg = [ProductRaster(p, KIND_UNW, product, name=n) for p, n in zip(inputs.ifg_paths, names)]
    coh = [ProductRaster(p, KIND_COH, product) for p in inputs.coherence_paths] if inputs.coherence_paths else None
    rasters = ifg + (coh or [])
    grid = align(rasters, extent, crs_mode, note)
    conv = sorted(
        {"%s: %s" % ("interferograms" if r.kind == KIND_UNW else "coherence", r.conventions()) for r in rasters}
    )
    note("reading %s products (%s)" % (PRODUCT_LABELS.get(product, product), "; ".join(conv)))
    bperp = inputs.bperp
    if bperp is not None and not np.isfinite(bperp).any():
        bperp = None
    return ProductStack(
        product,
        ifg,
        coh,
        grid,
        bperp=bperp,
        names=[r.name for r in ifg],
        geometry_files=inputs.geometry_files,
        reference_points=inputs.reference_points,
        notes=notes,
        extent=extent,
        crs_mode=crs_mode,
    )
