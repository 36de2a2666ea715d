"""Weighted downscaling of GRACE TWSA to a fine hydrological-model grid (no QGIS).

Liu et al. (2024), Land 13:184, sec. 2.3.2, eqs. (6)-(9); Huang et al. (2025) sec. 2.2.2 eqs. (6)-(8):

* eq. (6)  ``TG_m = mean_y TG_{y,m}``     calendar-month climatology of the coarse GRACE TWSA;
* eq. (7)  ``TF_m = mean_y TF_{y,m}``     the same for the fine model TWS;
* eq. (8)  ``E_{y,m} = TG_{y,m} - TG_m``  coarse deviation from the climatology;
* eq. (9)  ``TD_{y,m} = TF_m + f(E_{y,m})`` downscaled TWS, ``f`` = spatial interpolation of the
  coarse deviation to the fine grid (bilinear, bicubic spline, inverse distance or nearest).

The fine grid streams in row blocks: :func:`downscale_block` is pure (arrays in, arrays out).
Regional means are area weighted with cos(latitude) (:func:`weighted_sums_block`).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..io import windows
from ..io.blas import matmul
from ..io.dates import decimal_year, month_from_index, month_label
from ..io.errors import TimeSeriesError
from ..io.lazy import lazy_module
from ..io.windows import BlockLayout, cache_bytes, run_windows, window_cache
from .products import check_zero_months, describe_months, merge_counts, month_range_label, stack_counts

pd = lazy_module("pandas")
_si = lazy_module("scipy.interpolate")
_nd = lazy_module("scipy.ndimage")
_spatial = lazy_module("scipy.spatial")

METHODS = ("bilinear", "bicubic", "idw", "nearest")


# --------------------------------------------------------------------------- climatology
def month_of_year(months):
    """0..11 calendar month of month indices."""
    return np.asarray(months, dtype=np.int64) % 12


def months_in_period(months, start=None, end=None):
    """Boolean mask of months whose middle lies in [start, end] (decimal years, e.g. 2004.0-2009.999)."""
    months = np.asarray(months, dtype=np.int64)
    mid = months // 12 + (months % 12 + 0.5) / 12.0
    ok = np.ones(len(months), bool)
    if start is not None:
        ok &= mid >= start
    if end is not None:
        ok &= mid <= end
    return ok


def monthly_climatology(stack, months, use):
    """Eqs. (6)/(7): per calendar month, the mean over the years of ``stack`` (nt, ...) at the months
    where ``use`` is True (NaN ignored). Returns (12, ...); calendar months without data are NaN."""
    moy = month_of_year(months)
    out = np.full((12,) + stack.shape[1:], np.nan)
    for m in range(12):
        sel = use & (moy == m)
        if sel.any():
            x = stack[sel]
            cnt = np.sum(np.isfinite(x), axis=0)
            s = np.nansum(x, axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[m] = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
    return out


def climatology_deviation(stack, months, clim):
    """Eq. (8): ``E = TG - TG_m`` for every month of ``stack``."""
    return stack - clim[month_of_year(months)]


# --------------------------------------------------------------------------- interpolation
def _linear_matrix(src, dst):
    """Dense (len(dst), len(src)) linear-interpolation weights; rows outside src are NaN."""
    src = np.asarray(src, float)
    dst = np.asarray(dst, float)
    order = np.argsort(src)
    s = src[order]
    n = len(s)
    w = np.zeros((len(dst), n))
    if n == 1:
        inside = np.abs(dst - s[0]) < 1e-9
        w[inside, 0] = 1.0
        w[~inside] = np.nan
    else:
        tol = 1e-9 * (s[-1] - s[0])
        j = np.clip(np.searchsorted(s, dst, side="right") - 1, 0, n - 2)
        t = (dst - s[j]) / (s[j + 1] - s[j])
        inside = (dst >= s[0] - tol) & (dst <= s[-1] + tol)
        t = np.clip(t, 0.0, 1.0)
        rows = np.arange(len(dst))
        w[rows, j] = 1.0 - t
        w[rows, j + 1] += t
        w[~inside] = np.nan
    out = np.empty_like(w)
    out[:, order] = w
    return out


def _spline_matrix(src, dst):
    """Dense cubic (not-a-knot) interpolating-spline weights; rows outside src are NaN."""
    src = np.asarray(src, float)
    order = np.argsort(src)
    s = src[order]
    if len(s) < 4:
        raise TimeSeriesError("bicubic spline needs at least 4 coarse cells per direction (found %d)" % len(s))
    spl = _si.make_interp_spline(s, np.eye(len(s)), k=3)
    w = spl(np.asarray(dst, float))
    tol = 1e-9 * (s[-1] - s[0])
    w[(dst < s[0] - tol) | (dst > s[-1] + tol)] = np.nan
    out = np.empty_like(w)
    out[:, order] = w
    return out


class Interpolator:
    """``f`` of eq. (9): coarse grid (``src_lons``, ``src_lats``) -> fine cell centres.

    Built once for the whole fine grid; :meth:`rows` gives the pure weights of a fine row block,
    consumed by :func:`interpolate_block`.

    * ``bilinear`` (default): separable linear weights (exact for fields bilinear in lon/lat). A
      fine cell is NaN when a coarse cell with non-zero weight is NaN, or outside the coarse centres.
    * ``bicubic``: tensor-product cubic interpolating spline (not-a-knot, = scipy
      ``RectBivariateSpline(..., s=0)``); coarse NaN cells are filled from the nearest valid cell
      before fitting and fine cells whose bilinear neighbours include NaN are NaN.
    * ``idw``: inverse distance (power 2) of the 4 nearest coarse centres (distances in degrees with
      longitude x cos(latitude)), NaN neighbours skipped.
    * ``nearest``: the nearest coarse centre.
    """

    def __init__(self, src_lons, src_lats, dst_lons, dst_lats, method="bilinear", k=4, power=2.0):
        if method not in METHODS:
            raise TimeSeriesError("unknown interpolation %r (use one of %s)" % (method, ", ".join(METHODS)))
        self.method = method
        self.src_lons = np.asarray(src_lons, float)
        self.src_lats = np.asarray(src_lats, float)
        self.dst_lons = np.asarray(dst_lons, float)
        self.dst_lats = np.asarray(dst_lats, float)
        self.k = k
        self.power = power
        self.wx = _linear_matrix(self.src_lons, self.dst_lons)
        self.wy = _linear_matrix(self.src_lats, self.dst_lats)
        if method == "bicubic":
            self.sx = _spline_matrix(self.src_lons, self.dst_lons)
            self.sy = _spline_matrix(self.src_lats, self.dst_lats)
        if method in ("idw", "nearest"):
            lat0 = np.deg2rad(np.mean(self.src_lats))
            self._c = np.cos(lat0)
            gx, gy = np.meshgrid(self.src_lons * self._c, self.src_lats)
            self.tree = _spatial.cKDTree(np.column_stack([gx.ravel(), gy.ravel()]))

    def rows(self, row0, nrows, col0=0, ncols=None):
        """Weights for the fine window rows ``row0..row0+nrows`` x columns ``col0..col0+ncols`` (default all)
        as a dict of arrays, the pure input of :func:`interpolate_block`."""
        ncols = len(self.dst_lons) - col0 if ncols is None else ncols
        sl, cl = slice(row0, row0 + nrows), slice(col0, col0 + ncols)
        w = {"method": self.method, "wy": self.wy[sl], "wx": self.wx[cl]}
        if self.method == "bicubic":
            w.update(sy=self.sy[sl], sx=self.sx[cl])
        elif self.method in ("idw", "nearest"):
            k = 1 if self.method == "nearest" else min(self.k, self.tree.n)
            gx, gy = np.meshgrid(self.dst_lons[cl] * self._c, self.dst_lats[sl])
            d, idx = self.tree.query(np.column_stack([gx.ravel(), gy.ravel()]), k=k)
            if k == 1:
                d, idx = d[:, None], idx[:, None]
            w.update(dist=d, idx=idx, shape=(nrows, ncols), power=self.power)
        return w

    def __call__(self, coarse):
        """Whole fine grid at once (convenience for small grids)."""
        return interpolate_block(coarse, self.rows(0, len(self.dst_lats)))


def _separable(e, wy, wx):
    """(nt, ny, nx) coarse -> (nt, ry, rx) with NaN-aware separable weights.

    A fine cell is NaN when a NaN coarse cell has a non-zero weight for it (all-NaN months -> NaN)."""
    nt = e.shape[0]
    bad = ~np.isfinite(e)
    e0 = np.where(bad, 0.0, e) if bad.any() else e
    wy0, wx0 = np.nan_to_num(wy), np.nan_to_num(wx)
    out = matmul(matmul(wy0, e0), wx0.T)
    flat = bad.reshape(nt, -1)
    anybad = flat.any(axis=1)
    if anybad.any():
        allbad = flat.all(axis=1)
        out[allbad] = np.nan
        part = anybad & ~allbad
        if part.any():
            bw = (np.abs(wy0) > 0).astype(float)
            bx = (np.abs(wx0) > 0).astype(float)
            touched = matmul(matmul(bw, bad[part].astype(float)), bx.T) > 0
            sub = out[part]
            sub[touched] = np.nan
            out[part] = sub
    outside = np.isnan(wy).any(axis=1)[:, None] | np.isnan(wx).any(axis=1)[None, :]
    out[:, outside] = np.nan
    return out


def _fill_nearest(e):
    """Fill NaN cells of each 2-D field from the nearest valid cell (all-NaN fields stay NaN)."""
    out = e.copy()
    for t in range(e.shape[0]):  # per month, not per pixel
        bad = ~np.isfinite(e[t])
        if bad.any() and not bad.all():
            idx = _nd.distance_transform_edt(bad, return_distances=False, return_indices=True)
            out[t] = e[t][tuple(idx)]
    return out


def interpolate_block(coarse, w):
    """Pure: interpolate coarse fields (nt, ny_c, nx_c) to one fine row block with weights ``w``
    from :meth:`Interpolator.rows`. Returns (nt, nrows, nx_fine)."""
    coarse = np.asarray(coarse, float)
    m = w["method"]
    if m == "bilinear":
        return _separable(coarse, w["wy"], w["wx"])
    if m == "bicubic":
        lin = _separable(coarse, w["wy"], w["wx"])
        filled = _fill_nearest(coarse)
        ok = np.isfinite(filled)
        out = matmul(matmul(np.nan_to_num(w["sy"]), np.where(ok, filled, 0.0)), np.nan_to_num(w["sx"]).T)
        out[np.isnan(lin)] = np.nan
        return out
    nt = coarse.shape[0]
    flat = coarse.reshape(nt, -1)
    vals = flat[:, w["idx"]]  # (nt, npts, k)
    d = w["dist"]
    if m == "nearest":
        out = vals[:, :, 0]
    else:
        with np.errstate(divide="ignore"):
            wt = np.where(d > 1e-12, 1.0 / np.maximum(d, 1e-300) ** w["power"], 0.0)
        exact = d[:, 0] <= 1e-12
        valid = np.isfinite(vals)
        ww = np.where(valid, wt[None], 0.0)
        s = np.sum(ww * np.where(valid, vals, 0.0), axis=2)
        sw = np.sum(ww, axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(sw > 0, s / sw, np.nan)
        out[:, exact] = vals[:, exact, 0]
    return out.reshape((nt,) + tuple(w["shape"]))


class WindowInterpolation:
    """``f`` of eq. (9) on one fine window, month by month: :meth:`month` gives ``interpolate_block(coarse,
    w)[t]`` (to the rounding of the products) without holding the window's months at once.

    Bilinear keeps only the coarse cells with a non-zero weight in the window (a few per direction: a window
    of 256 x 256 cells of 0.01 deg sees 12 x 12 cells of 0.25 deg) and interpolates one month at a time with two
    small products; dropping cells of weight 0 changes no value and no NaN footprint (a NaN coarse cell marks
    the fine cells it has a non-zero weight for; an all-NaN month stays all NaN). The other methods
    interpolate the whole block once."""

    def __init__(self, coarse, w):
        coarse = np.asarray(coarse, float)
        self.block = None
        if w["method"] != "bilinear":
            self.block = interpolate_block(coarse, w)
            return
        wy, wx = w["wy"], w["wx"]
        wy0, wx0 = np.nan_to_num(wy), np.nan_to_num(wx)
        ys, xs = _used(wy0), _used(wx0)
        self.wy0, self.wx0 = wy0[:, ys], wx0[:, xs]
        sub = coarse[:, ys, xs]
        nt = sub.shape[0]
        self.bad = ~np.isfinite(sub)
        flat = self.bad.reshape(nt, -1)
        self.anybad, self.allbad = flat.any(axis=1), flat.all(axis=1)
        self.e0 = np.where(self.bad, 0.0, sub) if self.anybad.any() else np.ascontiguousarray(sub)
        self.row_in, self.col_in = ~np.isnan(wy).any(axis=1), ~np.isnan(wx).any(axis=1)
        self.outside = ~self.row_in[:, None] | ~self.col_in[None, :]
        self.any_outside = bool(self.outside.any())
        self._bw = self._bx = None

    def month(self, t):
        """Month ``t`` on the window (nrows, ncols), float64, a new array the caller may modify."""
        if self.block is not None:
            return self.block[t].copy()
        out = matmul(matmul(self.wy0, self.e0[t]), self.wx0.T)
        if self.allbad[t]:
            out[...] = np.nan
        elif self.anybad[t]:
            if self._bw is None:
                self._bw = (np.abs(self.wy0) > 0).astype(float)
                self._bx = (np.abs(self.wx0) > 0).astype(float)
            out[matmul(matmul(self._bw, self.bad[t].astype(float)), self._bx.T) > 0] = np.nan
        if self.any_outside:
            out[self.outside] = np.nan
        return out

    def row_sums(self):
        """Per month and window row, the sum and the number of the valid interpolated cells: (nt, nrows) each.
        Bilinear months without NaN coarse cells take them from the coarse cells (a fine row's sum is its row
        weights times the coarse field times the summed column weights of the columns inside the coarse
        centres): the same sums to rounding, without interpolating the month."""
        if self.block is not None:
            valid = np.isfinite(self.block)
            return np.where(valid, self.block, 0.0).sum(axis=2), valid.sum(axis=2, dtype=np.int32)
        nt, nr = self.e0.shape[0], self.wy0.shape[0]
        row_in, col_in = self.row_in, self.col_in
        per_coarse_row = matmul(self.e0, self.wx0[col_in].sum(axis=0)[:, None])[:, :, 0]  # (nt, coarse rows)
        sums = matmul(per_coarse_row, self.wy0.T) * row_in
        counts = np.zeros((nt, nr), np.int32)
        counts[:, row_in] = col_in.sum()
        for t in np.flatnonzero(self.anybad):
            if self.allbad[t]:
                sums[t], counts[t] = 0.0, 0
            else:
                _sum_valid(self.month(t), sums[t], counts[t])
        return sums, counts


def _used(w):
    """The slice of coarse cells with a non-zero weight in any row of ``w`` (the first cell when none has)."""
    nz = np.flatnonzero(np.abs(w).sum(axis=0) > 0)
    return slice(int(nz[0]), int(nz[-1]) + 1) if len(nz) else slice(0, 1)


def _sum_valid(a, row_sums, row_counts):
    """One month (nrows, ncols) of a window: ``row_sums`` / ``row_counts`` (nrows,) receive each row's sum and
    number of finite cells (what :func:`weighted_sums_block` weights), and ``a``'s other cells are set to 0 in
    place. Returns the finite cells. The same sums as ``np.where(valid, a, 0).sum(axis=1)``, in fewer passes."""
    valid = np.isfinite(a)
    np.add.reduce(valid, axis=1, dtype=np.int32, out=row_counts)
    if not valid.all():
        np.copyto(a, 0.0, where=~valid)
    np.add.reduce(a, axis=1, out=row_sums)
    return valid


# --------------------------------------------------------------------------- block function
def downscale_block(tf_clim, e, moy, w):
    """Eq. (9) for one fine row block (pure).

    ``tf_clim`` (12, nrows, nx) fine climatology TF_m; ``e`` (nt, ny_c, nx_c) coarse deviation E;
    ``moy`` (nt,) calendar month 0..11 of each output month; ``w`` interpolation weights.
    Returns TD (nt, nrows, nx).
    """
    return tf_clim[np.asarray(moy)] + interpolate_block(e, w)


def area_weights(lats):
    """cos(latitude) weights of grid rows (equal-angle cells have area proportional to cos phi)."""
    return np.cos(np.deg2rad(np.asarray(lats, float)))


def weighted_sums_block(block, lats, mask=None):
    """Pure: per band, sum of cos(phi)-weighted values and of weights over valid cells of a row block.
    ``mask`` (nrows, nx) bool selects cells. Returns (sum_wx (nt,), sum_w (nt,))."""
    w = area_weights(lats)
    valid = np.isfinite(block)
    if mask is not None:
        valid &= np.asarray(mask, bool)[None]
    x = block if valid.all() else np.where(valid, block, 0.0)
    return x.sum(axis=2) @ w, valid.sum(axis=2) @ w


# --------------------------------------------------------------------------- driver
def fine_bbox(lons, lats):
    """(lon_min, lat_min, lon_max, lat_max) of cell centres."""
    return (float(np.min(lons)), float(np.min(lats)), float(np.max(lons)), float(np.max(lats)))


class RegriddedReader:
    """A product seen on a target grid: direct reads when the grids match, otherwise a window of the
    product (cells bracketing the target centres + ``margin``) interpolated bilinearly to the target
    cell centres (e.g. GLDAS 0.25 deg canopy water on a 0.1 deg FLDAS grid)."""

    def __init__(self, reader, target_grid, lons, lats, margin=1, target="the target grid"):
        self.reader = reader
        self.label = reader.label
        self.record_months = reader.record_months
        self.same = reader.grid().same_as(target_grid) and reader.geotransform[5] < 0
        if not self.same:
            self.window = reader.window(fine_bbox(lons, lats), margin=margin)
            self.pos = {int(k): i for i, k in enumerate(self.window.months)}
            self.interp = Interpolator(self.window.lons, self.window.lats, lons, lats, "bilinear")
            if np.isnan(self.interp.wx).any() or np.isnan(self.interp.wy).any():
                raise TimeSeriesError(
                    "%s does not cover %s (%g..%g E, %g..%g N)"
                    % (reader.label, target, np.min(lons), np.max(lons), np.min(lats), np.max(lats))
                )
            self.nx = len(lons)
        # per-month valid / non-zero counts of the window read here (direct reads count in read_rows)
        self.window_counts = {} if self.same else stack_counts({}, reader, self.window)

    def report(self):
        lines = self.reader.report()
        if not self.same:
            lines.append(
                "interpolated bilinearly from its %g deg grid to %s"
                % (abs(self.reader.geotransform[1]), "the target grid")
            )
        return lines

    def read_rows(self, row0, nrows, months, cols=None, counts=None):
        """``counts``: see :meth:`grace.ProductReader.read_rows` (interpolated windows are counted once, in
        ``window_counts``)."""
        if self.same:
            return self.reader.read_rows(row0, nrows, months, cols=cols, counts=counts)
        c0, nc = cols if cols is not None else (0, self.nx)
        months = np.asarray(months, dtype=np.int64)
        idx = np.array([self.pos.get(int(k), -1) for k in months], dtype=np.int64)
        out = np.full((len(months), nrows, nc), np.nan)
        have = idx >= 0
        if have.any():
            out[have] = interpolate_block(self.window.data[idx[have]], self.interp.rows(row0, nrows, c0, nc))
        return out

    def read_month(self, row0, nrows, month, cols=None, counts=None):
        """One month of :meth:`read_rows` as (nrows, ncols)."""
        if self.same:
            return self.reader.read_month(row0, nrows, month, cols=cols, counts=counts)
        return self.read_rows(row0, nrows, [month], cols=cols, counts=counts)[0]


class ModelSum:
    """Fine model TWS = sum of component readers (``grace.ProductReader``) on the grid of the first one;
    inputs on other grids (e.g. GLDAS 0.25 deg canopy with FLDAS 0.1 deg soil moisture) are interpolated
    bilinearly to it (:class:`RegriddedReader`)."""

    def __init__(self, readers):
        if not readers:
            raise TimeSeriesError("no model raster given")
        r0 = readers[0]
        self.xsize, self.ysize = r0.xsize, r0.ysize
        self.lons = r0.lons
        self.lats = r0.north_up_lats()
        self.first = r0
        g0 = self.grid()
        self.readers = [r0] + [
            RegriddedReader(r, g0, self.lons, self.lats, target="the model grid of %s" % r0.label) for r in readers[1:]
        ]
        self.regridded = [r.label for r in self.readers[1:] if not r.same]
        months = set(self.readers[0].record_months.tolist())
        for r in self.readers[1:]:
            months &= set(r.record_months.tolist())
        if not months:
            raise TimeSeriesError(
                "the model rasters share no month: %s"
                % "; ".join("%s %s" % (r.label, month_range_label(r.record_months)) for r in self.readers)
            )
        self.record_months = np.array(sorted(months), dtype=np.int64)
        self.label = " + ".join(r.label for r in self.readers)

    def grid(self):
        g = self.first.grid()
        gt = g.geotransform
        if gt[5] > 0:
            gt = (gt[0], gt[1], 0.0, gt[3] + gt[5] * g.ysize, 0.0, -gt[5])
        from ..io.rasters import RasterGrid

        return RasterGrid(g.xsize, g.ysize, gt, g.projection)

    def _sum(self, read):
        out = None
        for r in self.readers:
            a = read(r)
            out = a if out is None else out + a
        return out

    def read_rows(self, row0, nrows, months, cols=None, counts=None):
        """Sum of the components; ``counts`` (optional dict) receives each component file's per-month counts."""
        return self._sum(lambda r: r.read_rows(row0, nrows, months, cols=cols, counts=counts))

    def read_month(self, row0, nrows, month, cols=None, counts=None):
        """One month of :meth:`read_rows` as (nrows, ncols)."""
        return self._sum(lambda r: r.read_month(row0, nrows, month, cols=cols, counts=counts))


def weighted_means(sums):
    """``{name: sum / weight}`` of ``{name: [sum, weight]}`` per month, NaN where no weight."""
    means = {}
    for k, (s, sw) in sums.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            means[k] = np.where(sw > 0, s / np.where(sw > 0, sw, 1), np.nan)
    return means


@dataclass(frozen=True, eq=False)
class GridWindow:
    """One window task of a GRACE / GWSA pass: ``window`` (row0, nrows, col0, ncols) of the grid, the
    latitudes ``lats`` of its rows and, for GWSA, its part of the study-area ``mask`` (None: all cells)."""

    window: tuple
    lats: np.ndarray
    mask: Optional[np.ndarray] = None


@dataclass(frozen=True, eq=False)
class DownscaleState:
    """What every window task of :func:`weighted_downscaling` shares (sent to each Dask worker once; the
    readers re-open their files there): ``model`` (:class:`ModelSum`), ``interp`` (:class:`Interpolator`
    of the coarse window), ``deviation`` E (nt, ny_c, nx_c) and ``grace`` TG (same shape) on the coarse
    window, ``month_of_year`` of each output month, ``model_months`` / ``clim_in_model`` the model months
    read and those in the climatology, ``out_dtype`` optional dtype of the TD windows."""

    model: "ModelSum"
    interp: Interpolator
    deviation: np.ndarray
    grace: np.ndarray
    month_of_year: np.ndarray
    model_months: np.ndarray
    clim_in_model: np.ndarray
    out_dtype: Optional[str] = None


def window_bytes_per_cell(nt, method="bilinear", out_dtype=None, k=4, coarse_share=0.0):
    """Working memory of :func:`downscale_window_task` per fine cell of its window, for ``nt`` output months: the
    TD window (``out_dtype``), the climatology sums (float64) and counts (int32) of 12 calendar months, one
    month's temporaries (read, interpolated, masks; a few float64 per cell) and the coarse cells under the
    window (``coarse_share`` = fine cell area / coarse cell area; x 4 for the bracketing cells around small
    windows; nt float64 + a mask each). Methods other than bilinear interpolate whole windows (f(E), then
    f(TG) while it is computed: 3 x nt float64); inverse distance also holds the ``k`` neighbours' values and
    weights."""
    per_cell = np.dtype(out_dtype or np.float64).itemsize * nt + 12 * (8 + 4) + 8 * 8
    per_cell += int(np.ceil(9 * nt * min(1.0, 4 * coarse_share)))
    if method != "bilinear":
        per_cell += 8 * 3 * nt
    if method == "idw":
        per_cell += 8 * nt * 3 * k
    return per_cell


def window_fixed_bytes(coarse_shape, method="bilinear"):
    """Working memory of :func:`downscale_window_task` that does not scale with its window's cells: bicubic
    fills and copies the whole coarse window (of ``coarse_shape`` = months, rows, columns) once per window (up
    to 4 float64 copies) and holds its coarse-row stage (months x window rows x coarse columns, windows of up to
    256 rows); the other methods only the coarse cells under the window (counted per cell,
    :func:`window_bytes_per_cell`)."""
    if method != "bicubic":
        return 0
    nt, ny, nx = coarse_shape
    return 8 * nt * nx * (4 * ny + 256)


def _cell_area(lons, lats):
    """The (degree) area of a grid's cell from its centres (1 along an axis with one centre)."""
    dx = abs(lons[1] - lons[0]) if len(lons) > 1 else 1.0
    dy = abs(lats[1] - lats[0]) if len(lats) > 1 else 1.0
    return dx * dy


def downscale_window_task(task, state):
    """Pure window task of :func:`weighted_downscaling` (eq. 9 + partial regional sums), picklable.

    ``task``: :class:`GridWindow` of the fine grid; ``state``: :class:`DownscaleState`.
    Returns ``{"td": TD (nt, nrows, ncols), "sums": {"grace"|"down"|"model": (sum_wx, sum_w), "counts": {...}}}``,
    the cos(phi)-weighted sums (:func:`weighted_sums_block`) of f(TG), TD and the model TWS (the latter on
    ``model_months``) and the per-file, per-month counts of valid and non-zero model values read
    (:func:`grace.check_zero_months`).

    The window streams month by month: each model month is read, summed and added to its calendar month's
    climatology sum (eq. 7) while it is in the CPU cache, then each output month is interpolated (eq. 9),
    summed and stored. The same numbers, to rounding, as :func:`downscale_block` and :func:`weighted_sums_block`
    on the whole window (the climatology adds the years in the same order; the sums are per row, then over
    rows), in a fraction of the memory traffic and memory (:func:`window_bytes_per_cell`).
    """
    r0, nr, c0, nc = task.window
    w = state.interp.rows(r0, nr, c0, nc)
    lat_w = area_weights(task.lats)
    counts = {}
    nm, nt = len(state.model_months), len(state.month_of_year)
    model_moy = month_of_year(state.model_months)
    m_rows, m_valid = np.zeros((nm, nr)), np.zeros((nm, nr), np.int32)
    clim_sum, clim_n = np.zeros((12, nr, nc)), np.zeros((12, nr, nc), np.int32)
    for j, k in enumerate(state.model_months):
        x = state.model.read_month(r0, nr, k, cols=(c0, nc), counts=counts)
        valid = _sum_valid(x, m_rows[j], m_valid[j])  # x: invalid cells now 0
        if state.clim_in_model[j]:
            clim_sum[model_moy[j]] += x
            clim_n[model_moy[j]] += valid
    empty = clim_n == 0  # eq. (7), in place: the mean where a calendar month has data, else NaN
    clim_n[empty] = 1
    tf_clim = np.divide(clim_sum, clim_n, out=clim_sum)
    tf_clim[empty] = np.nan
    del clim_n, empty
    fe = WindowInterpolation(state.deviation, w)
    td = np.empty((nt, nr, nc), dtype=np.float64 if state.out_dtype is None else state.out_dtype)
    d_rows, d_valid = np.zeros((nt, nr)), np.zeros((nt, nr), np.int32)
    for t, m in enumerate(state.month_of_year):
        v = fe.month(t)
        v += tf_clim[m]  # eq. (9): TD = TF_m + f(E)
        td[t] = v
        _sum_valid(v, d_rows[t], d_valid[t])
    del fe, tf_clim
    g_rows, g_valid = WindowInterpolation(state.grace, w).row_sums()
    sums = {
        "grace": (g_rows @ lat_w, g_valid @ lat_w),
        "down": (d_rows @ lat_w, d_valid @ lat_w),
        "model": (m_rows @ lat_w, m_valid @ lat_w),
        "counts": counts,
    }
    return {"td": td, "sums": sums}


def _grace_window(grace, model, margin, gain, log, accept_zero_months=False):
    """The GRACE window around the model grid (gain applied), checked to hold data and to have no record
    month that is all 0 or all fill among months that are not (:func:`grace.check_zero_months`).
    Returns (window, bbox, months with data)."""
    bbox = fine_bbox(model.lons, model.lats)
    tg = grace.window(bbox, margin=margin)
    check_zero_months(stack_counts({}, grace, tg), accept_zero_months, log)
    if gain is not None:
        tg.data = tg.data * gain(tg)[None]
    for line in grace.report():
        log(line)
    g_valid = np.array([np.isfinite(tg.data[i]).any() for i in range(len(tg.months))])
    if not g_valid.any():
        raise TimeSeriesError(
            "%s: all GRACE cells around the study area (%g..%g E, %g..%g N) are NaN"
            % (grace.label, bbox[0], bbox[2], bbox[1], bbox[3])
        )
    return tg, bbox, set(tg.months[g_valid].tolist())


def _climatology_months(months, g_months, m_months, period, labels):
    """Months of the climatology (eqs. 6-7): GRACE and model both present, inside ``period``, every calendar
    month represented. ``labels``: (GRACE label, model label) for the messages. Returns a bool per month."""
    common = sorted(g_months & m_months)
    if not common:
        raise TimeSeriesError(
            "GRACE and model months do not overlap: GRACE %s (%s), model %s (%s)"
            % (month_range_label(g_months), labels[0], month_range_label(m_months), labels[1])
        )
    use_g = np.isin(months, common)
    if period is not None:
        use_g &= months_in_period(months, *period)
        if not use_g.any():
            raise TimeSeriesError(
                "climatology period %.3f-%.3f holds no month with both GRACE and model data "
                "(common months %s)" % (period[0], period[1], month_range_label(common))
            )
    clim_months = months[use_g]
    need = sorted(set(month_of_year(months).tolist()))
    have = set(month_of_year(clim_months).tolist())
    lacking = [m for m in need if m not in have]
    if lacking:
        raise TimeSeriesError(
            "the climatology period (%s) has no GRACE+model data for calendar month(s) %s"
            % (month_range_label(clim_months), ", ".join("%02d" % (m + 1) for m in lacking))
        )
    return use_g


def _check_coverage(interp, tg, bbox, grace_label, log):
    """Error when the fine grid lies outside the GRACE cell centres, a warning when part of it does."""
    out_cols = int(np.isnan(interp.wx).any(axis=1).sum())
    out_rows = int(np.isnan(interp.wy).any(axis=1).sum())
    if out_cols == len(interp.dst_lons) or out_rows == len(interp.dst_lats):
        raise TimeSeriesError(
            "%s: the model grid (%g..%g E, %g..%g N) lies outside the GRACE cell centres"
            % (grace_label, bbox[0], bbox[2], bbox[1], bbox[3])
        )
    if out_cols or out_rows:
        log(
            "warning: %d model columns and %d rows lie outside the GRACE cell centres (%g..%g E, %g..%g N) "
            "and are NoData" % (out_cols, out_rows, tg.lons.min(), tg.lons.max(), tg.lats.min(), tg.lats.max())
        )


def _regional_sums(partial, nt, model_pos):
    """The windows' weighted sums added in window order (not arrival order: local and Dask tables are
    identical); the model's are on its months ``model_pos`` of the output axis."""
    sums = {k: [np.zeros(nt), np.zeros(nt)] for k in ("grace", "model", "down")}
    for bi in sorted(partial):
        p = partial[bi]
        for key in ("grace", "down"):
            sums[key][0] += p[key][0]
            sums[key][1] += p[key][1]
        sums["model"][0][model_pos] += p["model"][0]
        sums["model"][1][model_pos] += p["model"][1]
    return sums


def _monthly_table(months, tg, use_g, means):
    """One row per output month: date, GRACE note/missing, climatology flag and the three regional means."""
    dates = [month_from_index(k) for k in months]
    notes = {int(k): "missing (no GRACE record)" for k in tg.missing}
    for rec, frm, to in tg.moves:
        notes[int(to)] = "special month: record centred %s (in %s) assigned here" % (
            rec.mid.strftime("%Y-%m-%d"),
            month_label(frm),
        )
    return pd.DataFrame(
        {
            "date": [d.strftime("%Y-%m-%d") for d in dates],
            "decimal_year": [decimal_year(d) for d in dates],
            "grace_note": [notes.get(int(k), "") for k in months],
            "grace_missing": [int(k) in set(tg.missing) for k in months],
            "in_climatology": use_g,
            "grace_twsa_mm": means["grace"],
            "model_tws_mm": means["model"],
            "downscaled_tws_mm": means["down"],
        }
    )


def _direct(readers):
    """The readers a window reads itself (a regridded reader's window was read before the windows)."""
    for r in readers:
        if isinstance(r, RegriddedReader):
            if not r.same:
                continue
            r = r.reader
        yield r


def _layouts(readers):
    """:class:`~..io.windows.BlockLayout` of the readers a window reads itself, read month by month (the whole
    window's blocks stay in GDAL's cache: every band of a pixel-interleaved GeoTIFF, one band otherwise)."""
    return [BlockLayout(*r.block_cache_bytes(), r.ysize, r.xsize) for r in _direct(readers)]


def block_cache_bytes(readers, window=None):
    """Bytes of GDAL's block cache while ``window`` = (row0, nrows, col0, ncols) is read month by month from
    ``readers`` (:class:`grace.ProductReader` or :class:`RegriddedReader`): for each reader read directly, what a
    block decodes per cell (:meth:`grace.ProductReader.block_cache_bytes`: every band of a pixel-interleaved
    GeoTIFF, one band otherwise) times the cells of the blocks the window touches (they may reach beyond it); a
    regridded reader is read once, before the windows. Without a window: the bytes per cell."""
    return cache_bytes(_layouts(readers), window)


def plan_windows(readers, ny, nx, per_cell, memory_mb, fixed=0, log=None):
    """:func:`~..io.windows.plan_windows` for windows read month by month from ``readers``: the windows and the
    bytes of GDAL's block cache one of them needs (``log`` told when the smallest windows exceed the limit)."""
    return windows.plan_windows(_layouts(readers), ny, nx, per_cell, memory_mb, fixed, log=log, what="the model")


def weighted_downscaling(
    grace,
    model,
    method="bilinear",
    period=None,
    gain=None,
    write=None,
    *,
    progress=None,
    memory_mb=512,
    margin=1,
    log=None,
    run_tasks=None,
    out_dtype=None,
    accept_zero_months=False,
    windows_at_once=1,
):
    """Run eqs. (6)-(9) on a GRACE product and a fine model, streaming the fine grid in row blocks.

    ``grace``: :class:`grace.ProductReader` (values already in mm); ``model``: :class:`ModelSum`;
    ``period``: (start, end) decimal years of the climatology (default: all months where both exist);
    ``gain``: optional callable(stack) -> per-cell gain array on the coarse window (JPL);
    ``write(row0, block[, col0])``: receives TD windows (nmonths, nrows, ncols) for the output months
    (``col0`` is passed only for windows narrower than the grid: deep stacks are cut into tile-row
    windows, :func:`~subsidence_toolkit.core.io.windows.window_blocks`);
    ``progress(fraction)`` may raise to cancel;
    ``run_tasks(task_fn, tasks, shared)``: optional runner yielding ``(index, result)`` of the window tasks
    (:func:`downscale_window_task`) in any order, e.g. on Dask (:func:`~..io.tasks.map_blocks`); windows
    are written as they arrive and the regional sums are added in window order, so the results do
    not depend on the runner; ``out_dtype``: dtype of the TD windows handed to ``write`` (cast in the task).
    ``memory_mb`` bounds one window, GDAL's block cache of the model's blocks under it included: the run sets
    that cache to what ``windows_at_once`` windows (the runner's threads) need (:func:`block_cache_bytes`;
    GDAL's default, 5 % of the RAM, counts under no limit), or leaves it where it is when that is smaller.
    A GRACE or model file month whose values read are all 0 (or all fill) while its neighbouring months are
    not (a damaged file read as 0 mm) raises :class:`TimeSeriesError` naming file, variable and month, unless
    ``accept_zero_months`` (then it is logged as a warning): :func:`grace.check_zero_months`.
    Returns ``(months, table)``: the output month indices (complete GRACE axis, missing months NaN)
    and a DataFrame with per-month cos(phi)-weighted regional means of the coarse GRACE field
    interpolated to the fine grid, the model TWS and the downscaled TWS.

    Steps: the GRACE window, the climatology months, the climatology deviation E (eqs. 6-7), the
    interpolator and its coverage, the window tasks (eqs. 8-9), the regional means.
    """
    log = log or (lambda s: None)
    lons, lats = model.lons, model.lats
    tg, bbox, g_months = _grace_window(grace, model, margin, gain, log, accept_zero_months)
    months = tg.months
    m_months = set(model.record_months.tolist())
    use_g = _climatology_months(months, g_months, m_months, period, (grace.label, model.label))
    clim_months = months[use_g]
    log("climatology (eqs. 6-7) from %d months %s" % (len(clim_months), month_range_label(clim_months)))
    tg_clim = monthly_climatology(tg.data, months, use_g)
    e = climatology_deviation(tg.data, months, tg_clim)
    interp = Interpolator(tg.lons, tg.lats, lons, lats, method)
    _check_coverage(interp, tg, bbox, grace.label, log)
    moy = month_of_year(months)
    model_months = np.array(sorted(m_months & set(months.tolist())), dtype=np.int64)
    model_pos = np.searchsorted(months, model_months)
    clim_in_model = np.isin(model_months, clim_months)
    nt, nx, ny = len(months), len(lons), len(lats)
    per_cell = window_bytes_per_cell(
        nt, method, out_dtype, interp.k, _cell_area(lons, lats) / _cell_area(tg.lons, tg.lats)
    )
    blocks, cache = plan_windows(
        model.readers, ny, nx, per_cell, memory_mb, window_fixed_bytes(e.shape, method), log=log
    )
    # one picklable task per window + what all windows share (coarse arrays, interpolator, model readers:
    # sent once to each Dask worker, where the readers re-open the files; ProductReader pickles without handles)
    shared = DownscaleState(
        model=model,
        interp=interp,
        deviation=e,
        grace=tg.data,
        month_of_year=moy,
        model_months=model_months,
        clim_in_model=clim_in_model,
        out_dtype=out_dtype,
    )
    tasks = [GridWindow((r0, nr, c0, nc), lats[r0 : r0 + nr]) for (r0, nr, c0, nc) in blocks]
    with window_cache(cache, windows_at_once):
        partial = run_windows(
            downscale_window_task,
            tasks,
            blocks,
            nx,
            "td",
            write=write,
            progress=progress,
            run_tasks=run_tasks,
            shared=shared,
        )
    counts = merge_counts(
        [partial[bi]["counts"] for bi in sorted(partial)]
        + [r.window_counts for r in model.readers if hasattr(r, "window_counts")]
    )
    check_zero_months(counts, accept_zero_months, log)
    means = weighted_means(_regional_sums(partial, nt, model_pos))
    if not np.isfinite(means["down"]).any():
        raise TimeSeriesError(
            "the downscaled study area is NaN in every month (model %s, GRACE %s)" % (model.label, grace.label)
        )
    table = _monthly_table(months, tg, use_g, means)
    if tg.missing:
        log("GRACE months missing (NaN bands in the output): %s" % describe_months(tg.missing))
    return months, table


__all__ = [
    "METHODS",
    "DownscaleState",
    "GridWindow",
    "Interpolator",
    "ModelSum",
    "WindowInterpolation",
    "area_weights",
    "block_cache_bytes",
    "climatology_deviation",
    "downscale_block",
    "downscale_window_task",
    "interpolate_block",
    "month_of_year",
    "plan_windows",
    "window_cache",
    "monthly_climatology",
    "months_in_period",
    "weighted_downscaling",
    "weighted_sums_block",
    "window_bytes_per_cell",
    "window_fixed_bytes",
    "month_label",
]
