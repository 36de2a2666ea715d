"""Rasters on a common target grid, read window by window (no QGIS imports).

* :func:`target_grid` builds the grid several rasters are brought to: the union (mosaics) or the
  intersection (decomposition) of their footprints in a target CRS, at the finest input resolution
  or a given one, optionally on a given extent.
* :class:`GridReader` reads any window of a raster *on the target grid*. A raster whose pixels
  already are target pixels (same CRS and pixel size, origin an integer number of pixels away) is
  read directly from its own file; any other is resampled through a GDAL warped VRT built with
  the exact transformer (error threshold 0) and the warp options ``XSCALE=1``/``YSCALE=1``, so the
  resampling kernel never depends on the size of the chunk GDAL warps: a window read gives the same
  values as the same pixels of a whole read, on every GDAL version. NoData (and NaN) become NaN.
"""

import contextlib
import dataclasses
import math
import re
import uuid

import numpy as np
from osgeo import gdal, osr

from .errors import TimeSeriesError
from .rasters import RasterGrid, open_raster, read_window

gdal.UseExceptions()

RESAMPLING = ("bilinear", "near", "cubic", "average")
# block size of the warped VRTs: the tile of the windows (io.windows.window_blocks), so each block is warped once
WARP_BLOCK = 256


@contextlib.contextmanager
def gdal_cache(megabytes, shrink_only=False):
    """GDAL's block cache limited to ``megabytes`` (its default, 5 % of RAM, is not under a memory cap);
    ``shrink_only``: left as it is when it is smaller already (e.g. ``GDAL_CACHEMAX``)."""
    old = gdal.GetCacheMax()
    new = int(max(1, megabytes) * 1024 * 1024)
    gdal.SetCacheMax(min(old, new) if shrink_only else new)
    try:
        yield
    finally:
        gdal.SetCacheMax(old)


def _srs(wkt):
    s = osr.SpatialReference()
    s.ImportFromWkt(wkt)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def same_crs(a_wkt, b_wkt):
    """True when two WKT CRS are the same (an empty CRS matches anything)."""
    if not a_wkt or not b_wkt or a_wkt == b_wkt:
        return True
    return bool(_srs(a_wkt).IsSame(_srs(b_wkt)))


def footprint(ds, dst_wkt=None, samples=21):
    """Bounding box ``(minx, miny, maxx, maxy)`` of a raster's extent in ``dst_wkt`` (default: its own CRS),
    from points along its four edges (so reprojected footprints are not cut at the corners)."""
    gt = ds.GetGeoTransform()
    xs, ys = ds.RasterXSize, ds.RasterYSize
    t = np.linspace(0.0, 1.0, samples)
    px = np.concatenate([t * xs, t * xs, np.zeros(samples), np.full(samples, xs)])
    py = np.concatenate([np.zeros(samples), np.full(samples, ys), t * ys, t * ys])
    x = gt[0] + px * gt[1] + py * gt[2]
    y = gt[3] + px * gt[4] + py * gt[5]
    src_wkt = ds.GetProjection()
    if dst_wkt and src_wkt and not same_crs(src_wkt, dst_wkt):
        ct = osr.CoordinateTransformation(_srs(src_wkt), _srs(dst_wkt))
        pts = np.array(ct.TransformPoints(np.column_stack([x, y]).tolist()))
        x, y = pts[:, 0], pts[:, 1]
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if x.size == 0:
            raise TimeSeriesError("%s: its extent cannot be transformed to the target CRS" % ds.GetDescription())
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def pixel_size_in(ds, dst_wkt=None):
    """Pixel size ``(dx, dy)`` (both positive) of a raster in ``dst_wkt``: its own for the same CRS, else the
    size GDAL suggests for warping it there."""
    gt = ds.GetGeoTransform()
    src_wkt = ds.GetProjection()
    if not dst_wkt or not src_wkt or same_crs(src_wkt, dst_wkt):
        return abs(gt[1]), abs(gt[5])
    vrt = gdal.AutoCreateWarpedVRT(ds, src_wkt, dst_wkt)
    if vrt is None:
        raise TimeSeriesError("%s: cannot be reprojected to the target CRS" % ds.GetDescription())
    vgt = vrt.GetGeoTransform()
    return abs(vgt[1]), abs(vgt[5])


def target_grid(paths, crs_wkt=None, extent=None, resolution=0.0, mode="union"):
    """The grid rasters ``paths`` are brought to.

    ``crs_wkt``: target CRS (default: the first raster's). ``extent``: ``(minx, miny, maxx, maxy)`` in the
    target CRS (default: the union or, with ``mode="intersection"``, the intersection of the footprints).
    ``resolution``: pixel size in target units (0 = the finest input's). Without an extent the grid is
    snapped to the pixel lattice of the finest input when that input is in the target CRS, so inputs on
    one lattice are read without resampling. Raises when the intersection is empty.
    """
    dss = [open_raster(p) for p in paths]
    crs_wkt = crs_wkt or dss[0].GetProjection()
    boxes = [footprint(ds, crs_wkt) for ds in dss]
    sizes = [pixel_size_in(ds, crs_wkt) for ds in dss]
    finest = int(np.argmin([dx * dy for dx, dy in sizes]))
    if resolution and resolution > 0:
        dx = dy = float(resolution)
    else:
        dx, dy = sizes[finest]
    if extent is not None:
        minx, miny, maxx, maxy = (float(v) for v in extent)
        if not (maxx > minx and maxy > miny):
            raise TimeSeriesError("target extent %s is empty" % (extent,))
        x0, y0 = minx, maxy
    else:
        b = np.array(boxes)
        if mode == "intersection":
            minx, miny = b[:, 0].max(), b[:, 1].max()
            maxx, maxy = b[:, 2].min(), b[:, 3].min()
            if not (maxx > minx and maxy > miny):
                raise TimeSeriesError("the rasters do not overlap: %s" % ", ".join(str(p) for p in paths))
        else:
            minx, miny = b[:, 0].min(), b[:, 1].min()
            maxx, maxy = b[:, 2].max(), b[:, 3].max()
        x0, y0 = minx, maxy
        fds = dss[finest]
        fgt = fds.GetGeoTransform()
        if (
            same_crs(fds.GetProjection(), crs_wkt)
            and fgt[2] == 0
            and fgt[4] == 0
            and abs(abs(fgt[1]) - dx) <= 1e-9 * dx
            and abs(abs(fgt[5]) - dy) <= 1e-9 * dy
        ):
            # snap to the finest input's lattice (outwards for a union, inwards for an intersection)
            kx = (minx - fgt[0]) / dx
            ky = (fgt[3] - maxy) / dy
            rx, ry = round(kx), round(ky)
            kx = rx if abs(kx - rx) < 1e-6 else (math.floor(kx) if mode != "intersection" else math.ceil(kx))
            ky = ry if abs(ky - ry) < 1e-6 else (math.floor(ky) if mode != "intersection" else math.ceil(ky))
            x0, y0 = fgt[0] + kx * dx, fgt[3] - ky * dy
    nx = (maxx - x0) / dx
    ny = (y0 - miny) / dy
    nx = (
        int(round(nx))
        if abs(nx - round(nx)) < 1e-6
        else int(math.ceil(nx) if mode != "intersection" else math.floor(nx))
    )
    ny = (
        int(round(ny))
        if abs(ny - round(ny)) < 1e-6
        else int(math.ceil(ny) if mode != "intersection" else math.floor(ny))
    )
    if nx < 1 or ny < 1:
        raise TimeSeriesError(
            "the target grid is empty (extent %s, pixel size %g x %g)" % ((minx, miny, maxx, maxy), dx, dy)
        )
    return RasterGrid(nx, ny, (x0, dx, 0.0, y0, 0.0, -dy), crs_wkt)


class GridReader:
    """Read windows of a raster on a target :class:`RasterGrid` (see the module help).

    ``bands``: the 1-based bands read by default. ``resampling``: GDAL resampling for rasters that must
    be warped (``bilinear`` default; ``near`` for categories). ``bbox`` = ``(row0, row1, col0, col1)``,
    the target pixels the raster can cover (half-open, clipped to the grid; empty when it misses it).
    """

    def __init__(self, path, grid, bands=None, resampling="bilinear"):
        self.path = str(path)
        self.grid = grid
        self.ds = open_raster(self.path)
        self.bands = list(bands) if bands is not None else list(range(1, self.ds.RasterCount + 1))
        gt = self.ds.GetGeoTransform()
        tgt = grid.geotransform
        dx, dy = tgt[1], tgt[5]
        self.aligned = False
        self._vsimem = []
        if (
            same_crs(self.ds.GetProjection(), grid.projection)
            and gt[2] == 0
            and gt[4] == 0
            and tgt[2] == 0
            and tgt[4] == 0
            and abs(gt[1] - dx) <= 1e-9 * abs(dx)
            and abs(gt[5] - dy) <= 1e-9 * abs(dy)
        ):
            col = (gt[0] - tgt[0]) / dx
            row = (gt[3] - tgt[3]) / dy
            if abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6:
                self.aligned = True
                self.col_off, self.row_off = int(round(col)), int(round(row))
        if self.aligned:
            r0, c0 = self.row_off, self.col_off
            r1, c1 = r0 + self.ds.RasterYSize, c0 + self.ds.RasterXSize
            self.source = self.ds
        else:
            minx, miny, maxx, maxy = footprint(self.ds, grid.projection)
            c0 = int(math.floor((minx - tgt[0]) / dx)) - 1
            c1 = int(math.ceil((maxx - tgt[0]) / dx)) + 1
            r0 = int(math.floor((maxy - tgt[3]) / dy)) - 1
            r1 = int(math.ceil((miny - tgt[3]) / dy)) + 1
            self.source = self._warped_vrt(resampling)
        self.bbox = (max(0, r0), min(grid.ysize, r1), max(0, c0), min(grid.xsize, c1))
        self.scales = []
        for b in self.bands:
            band = self.ds.GetRasterBand(b)
            s, o = band.GetScale(), band.GetOffset()
            self.scales.append((1.0 if s is None else s, 0.0 if o is None else o))

    def _warped_vrt(self, resampling):
        g = self.grid
        gt = g.geotransform
        if gt[2] != 0 or gt[4] != 0:
            raise TimeSeriesError("rotated target grids are not supported")
        bounds = (gt[0], gt[3] + gt[5] * g.ysize, gt[0] + gt[1] * g.xsize, gt[3])
        nd = self.ds.GetRasterBand(1).GetNoDataValue()
        src = self.path
        if self.bands != list(range(1, self.ds.RasterCount + 1)):
            # band selection through a plain VRT (gdalwarp's -srcband needs GDAL >= 3.7)
            src = "/vsimem/subsidence_bands_%s.vrt" % uuid.uuid4().hex
            gdal.Translate(src, self.ds, options=gdal.TranslateOptions(format="VRT", bandList=self.bands))
            self._vsimem.append(src)
        opts = gdal.WarpOptions(
            format="VRT",
            outputBounds=bounds,
            width=g.xsize,
            height=g.ysize,
            dstSRS=g.projection or None,
            srcSRS=None if self.ds.GetProjection() else g.projection or None,
            resampleAlg=resampling,
            errorThreshold=0,
            warpOptions=["XSCALE=1", "YSCALE=1"],
            srcNodata=float("nan") if nd is None else nd,
            dstNodata=float("nan"),
            outputType=self._warp_type(),
        )
        try:
            vrt = gdal.Warp("", src, options=opts)
            # blocks of whole window tiles (GDAL < 3.7 takes no block size option for warped VRTs): every block
            # is then warped once, for all bands, instead of once per window of a full-width block row
            xml = vrt.GetMetadata("xml:VRT")[0]
            xml = re.sub(r"<BlockXSize>\d+</BlockXSize>", "<BlockXSize>%d</BlockXSize>" % WARP_BLOCK, xml)
            xml = re.sub(r"<BlockYSize>\d+</BlockYSize>", "<BlockYSize>%d</BlockYSize>" % WARP_BLOCK, xml)
            vrt = gdal.Open(xml)
        except RuntimeError as e:
            raise TimeSeriesError("%s: cannot be resampled to the target grid: %s" % (self.path, e)) from None
        if vrt is None:
            raise TimeSeriesError("%s: cannot be resampled to the target grid" % self.path)
        return vrt

    def _warp_type(self):
        """Float32 when every band's values fit in it exactly (float32 or small integers, no scale), else Float64."""
        small = {gdal.GDT_Byte, gdal.GDT_Int16, gdal.GDT_UInt16, gdal.GDT_Float32}
        for b in self.bands:
            band = self.ds.GetRasterBand(b)
            if band.DataType not in small or band.GetScale() not in (None, 1.0) or band.GetOffset() not in (None, 0.0):
                return gdal.GDT_Float64
        return gdal.GDT_Float32

    def layout(self):
        """:class:`~.windows.BlockLayout` of this reader's windows (all its bands at once) on the target grid, for
        :func:`~.windows.plan_windows`: the file's own blocks when it is read directly (at its offset), else the
        warped VRT's blocks of every band read (tiles of the windows: none is cut by a window of whole tiles)
        with a decoded tile of the source as the fixed buffer. The source blocks under neighbouring warped blocks
        are not held: they may be decoded once per window."""
        from .rasters import block_layout
        from .windows import BlockLayout

        if self.aligned:
            lay = block_layout(self.ds, whole_stack_reads=True, nbands=len(self.bands))
            return dataclasses.replace(lay, row_off=self.row_off, col_off=self.col_off)
        size = max(1, gdal.GetDataTypeSize(self.source.GetRasterBand(1).DataType) // 8)
        src = block_layout(self.ds)
        buffer = src.buffer or src.cell * src.bx * src.by
        return BlockLayout(
            size * len(self.bands), WARP_BLOCK, WARP_BLOCK, buffer, self.grid.ysize, self.grid.xsize, False
        )

    def empty(self):
        r0, r1, c0, c1 = self.bbox
        return r1 <= r0 or c1 <= c0

    def touches(self, row0, nrows, col0, ncols):
        """True when the window may hold pixels of this raster."""
        r0, r1, c0, c1 = self.bbox
        return r0 < row0 + nrows and row0 < r1 and c0 < col0 + ncols and col0 < c1

    def read(self, row0, nrows, col0, ncols, which=None, dtype=np.float64):
        """``(nbands, nrows, ncols)`` on the target grid (NaN where the raster has no data or does not reach).

        ``which``: indices into ``bands`` (default all)."""
        which = list(range(len(self.bands))) if which is None else list(which)
        r0, r1, c0, c1 = self.bbox
        a0, a1 = max(row0, r0), min(row0 + nrows, r1)
        b0, b1 = max(col0, c0), min(col0 + ncols, c1)
        if self.aligned and (a0, a1, b0, b1) == (row0, row0 + nrows, col0, col0 + ncols):
            # the raster covers the window: its read is the result (no second window-sized array)
            return read_window(
                self.ds, b0 - self.col_off, a0 - self.row_off, ncols, nrows, [self.bands[k] for k in which], dtype
            )
        out = np.full((len(which), nrows, ncols), np.nan, dtype=dtype)
        if a1 <= a0 or b1 <= b0:
            return out
        if self.aligned:
            blk = read_window(
                self.ds,
                b0 - self.col_off,
                a0 - self.row_off,
                b1 - b0,
                a1 - a0,
                [self.bands[k] for k in which],
                dtype=dtype,
            )
        else:
            # all bands in one request: the warped VRT warps each chunk once for every band
            blk = self.source.ReadAsArray(b0, a0, b1 - b0, a1 - a0, band_list=[k + 1 for k in which])
            if blk is None:
                raise TimeSeriesError(
                    "%s: cannot read window x %d-%d, y %d-%d on the target grid" % (self.path, b0, b1, a0, a1)
                )
            blk = np.asarray(blk, dtype=dtype).reshape(len(which), a1 - a0, b1 - b0)
            for i, k in enumerate(which):
                s, o = self.scales[k]
                if s != 1.0 or o != 0.0:
                    blk[i] = blk[i] * s + o
        out[:, a0 - row0 : a1 - row0, b0 - col0 : b1 - col0] = blk
        return out

    def close(self):
        self.source = self.ds = None
        for p in self._vsimem:
            gdal.Unlink(p)
        self._vsimem = []

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass
