"""Groundwater storage anomaly by water balance (no QGIS).

Liu et al. (2024), Land 13:184, sec. 2.3.3, eqs. (10)-(12); Huang et al. (2025) sec. 2.2.3:

* eq. (10) ``TWS = SMS + SWS + SWE + CWS + GWS``;
* anomaly mode: ``GWSA = TWSA - (SMSA + SWSA + SWEA + CWSA)``, every term an anomaly against the
  mean of the same baseline period (default 2004.0-2009.999, the GRACE convention, when the data cover
  it, otherwise the period of the data: :func:`auto_baseline`);
* change mode, eqs. (11)-(12): ``dGWS_t = dTWS_t - (dSMS_t + dSWS_t + dSWE_t + dCWS_t)`` with
  ``dX_t = X_t - X_{t-1}`` on the complete monthly axis (NaN when either month is missing: a gap
  is never bridged).

Components on other grids are interpolated (bilinear) to the TWSA grid. The fine grid streams in
row blocks; :func:`gwsa_anomaly_block` and :func:`gwsa_change_block` are pure.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..io.dates import decimal_year, month_from_index
from ..io.errors import TimeSeriesError
from ..io.lazy import lazy_module
from ..io.windows import run_windows
from .downscaling import (
    GridWindow,
    RegriddedReader,
    months_in_period,
    plan_windows,
    weighted_means,
    weighted_sums_block,
    window_cache,
)
from .products import check_zero_months, describe_months, merge_counts, month_range_label

pd = lazy_module("pandas")

MODES = ("anomaly", "change")
DEFAULT_BASELINE = (2004.0, 2009.999)


def anomaly(stack, use):
    """``X - mean(X over baseline months)`` per cell (NaN ignored in the mean; no baseline value -> NaN).

    ``use`` is (nt,) or, per cell, (nt, rows, cols) bool."""
    use = np.asarray(use, bool)
    if use.ndim == 1:
        use = use[:, None, None]
    base = np.where(use, stack, np.nan)
    cnt = np.sum(np.isfinite(base), axis=0)
    s = np.nansum(base, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
    return stack - mean[None]


def change(stack):
    """Month-to-month change on a complete monthly axis; the first month is NaN."""
    out = np.full_like(stack, np.nan)
    out[1:] = stack[1:] - stack[:-1]
    return out


def gwsa_anomaly_block(twsa, components, use):
    """Pure: GWSA = anom(TWSA) - sum anom(C_i) for one row block.

    ``twsa`` (nt, r, c); ``components`` list of (nt, r, c) on the same grid and months; ``use`` (nt,)
    bool baseline months. Every term's baseline mean is taken over the same months, per cell: the
    baseline months where TWSA and all components have data (otherwise a month missing in one term
    only, e.g. a GRACE gap at the seasonal peak, would shift GWSA by a constant).
    Returns (gwsa, twsa_anomaly, [component anomalies])."""
    joint = np.isfinite(twsa)
    for c in components:
        joint &= np.isfinite(c)
    both = np.asarray(use, bool)[:, None, None] & joint
    ta = anomaly(twsa, both)
    ca = [anomaly(c, both) for c in components]
    g = ta.copy()
    for c in ca:
        g = g - c
    return g, ta, ca


def gwsa_change_block(twsa, components):
    """Pure: eq. (12) dGWS = dTWS - sum dC_i for one row block. Returns (dgws, dtws, [dC_i])."""
    dt = change(twsa)
    dc = [change(c) for c in components]
    g = dt.copy()
    for c in dc:
        g = g - c
    return g, dt, dc


@dataclass(frozen=True, eq=False)
class GwsaState:
    """What every window task of :func:`groundwater_anomaly` shares (sent to each Dask worker once; the
    readers re-open their files there): the ``twsa`` reader and the ``components``
    (:class:`~.downscaling.RegriddedReader` on the TWSA grid), the output ``months``, the ``mode``, the
    baseline months ``use`` (anomaly mode), ``out_dtype`` optional dtype of the GWSA windows."""

    twsa: object
    components: list
    months: np.ndarray
    mode: str
    use: Optional[np.ndarray] = None
    out_dtype: Optional[str] = None


def gwsa_window_task(task, state):
    """Pure window task of :func:`groundwater_anomaly`, picklable (e.g. a Dask task).

    ``task``: :class:`~.downscaling.GridWindow` of the TWSA grid (with its mask); ``state``: :class:`GwsaState`.
    Returns ``{"gwsa": (nt, nrows, ncols), "sums": [(sum_wx, sum_w) of TWSA, each component, GWSA, counts]}``
    (cos(phi)-weighted partial sums over the valid, unmasked cells; last, the per-file, per-month counts of
    valid and non-zero values read, :func:`grace.check_zero_months`).
    """
    r0, nr, c0, nc = task.window
    months = state.months
    counts = {}
    t = state.twsa.read_rows(r0, nr, months, cols=(c0, nc), counts=counts)
    cs = [c.read_rows(r0, nr, months, cols=(c0, nc), counts=counts) for c in state.components]
    if state.mode == "anomaly":
        g, ta, ca = gwsa_anomaly_block(t, cs, state.use)
    else:
        g, ta, ca = gwsa_change_block(t, cs)
    bm = task.mask
    if bm is not None:
        g = np.where(bm[None], g, np.nan)
    sums = [weighted_sums_block(arr, task.lats, bm) for arr in [ta] + ca + [g]] + [counts]
    if state.out_dtype is not None:
        g = g.astype(state.out_dtype)
    return {"gwsa": g, "sums": sums}


def auto_baseline(record_months, components_months=()):
    """The baseline when none is given: the GRACE convention 2004.0-2009.999 when the data (TWSA and every
    component) cover all of it, otherwise the period the data have in common (decimal years, month
    middles inside). So Sentinel-1-era studies (2015+) get their own period, not an error."""
    common = set(int(m) for m in record_months)
    for cm in components_months:
        common &= set(int(m) for m in cm)
    if not common:
        common = set(int(m) for m in record_months)
    first, last = min(common), max(common)
    wanted = np.arange(2004 * 12, 2010 * 12)
    if first <= wanted[0] and last >= wanted[-1]:
        return DEFAULT_BASELINE
    return (first // 12 + (first % 12) / 12.0, last // 12 + (last % 12 + 1) / 12.0 - 0.001)


def _regridded_components(twsa, components, names, target, log):
    """Every component as a reader on the TWSA grid (``target`` = (grid, lons, lats)); an error when a
    component shares no month with the TWSA, a log line for the TWSA months it lacks."""
    tw_grid, lons, lats = target
    t_months = set(twsa.record_months.tolist())
    comps = []
    for name, c in zip(names, components):
        cm = set(c.record_months.tolist())
        if not (cm & t_months):
            raise TimeSeriesError(
                "component %s months %s do not overlap the TWSA months %s (%s)"
                % (c.label, month_range_label(cm), month_range_label(t_months), twsa.label)
            )
        lack = sorted(t_months - cm)
        if lack:
            log("%s: no data for TWSA month(s) %s -> GWSA NaN there" % (name, describe_months(lack)))
        comps.append(RegriddedReader(c, tw_grid, lons, lats, target="the TWSA grid"))
    return comps


def _checked_mask(mask, nx, ny):
    if mask is None:
        return None
    mask = np.asarray(mask, bool)
    if mask.shape != (ny, nx):
        raise TimeSeriesError("mask shape %s differs from the TWSA grid %dx%d" % (mask.shape, nx, ny))
    if not mask.any():
        raise TimeSeriesError("the mask polygon covers no TWSA cell")
    return mask


def _regional_means(partial, keys, nt):
    """Regional means of TWSA, each component and GWSA from the windows' partial sums, added in window
    order (not arrival order: local and Dask tables are identical)."""
    sums = {k: [np.zeros(nt), np.zeros(nt)] for k in keys}
    for bi in sorted(partial):
        for k, (s, sw) in zip(keys, partial[bi][: len(keys)]):  # the last item is the counts
            sums[k][0] += s
            sums[k][1] += sw
    return weighted_means(sums)


def groundwater_anomaly(
    twsa,
    components,
    mode="anomaly",
    baseline=DEFAULT_BASELINE,
    mask=None,
    write=None,
    progress=None,
    memory_mb=512,
    log=None,
    names=None,
    run_tasks=None,
    out_dtype=None,
    accept_zero_months=False,
    windows_at_once=1,
):
    """GWSA (anomaly or month-to-month change) from a TWSA reader and component readers.

    ``twsa`` / ``components``: :class:`grace.ProductReader` objects (values in mm); the output is on
    the TWSA grid and its complete monthly axis. ``mask`` (ny, nx) bool on the TWSA grid: cells outside are
    NaN in the output and left out of the regional means. ``write(row0, block)``
    receives GWSA windows (``col0`` only for windows narrower than the grid). Returns ``(months, table)``
    with cos(phi)-weighted regional means per month of TWSA, each component and GWSA (anomalies or
    changes, per ``mode``).
    ``run_tasks(task_fn, tasks, shared)``: optional runner of the window tasks (:func:`gwsa_window_task`), e.g.
    on Dask (:func:`~..io.tasks.map_blocks`); windows are written as they arrive and the regional sums
    are added in window order, so results do not depend on the runner. ``out_dtype``: dtype of the
    GWSA windows handed to ``write`` (cast in the task).
    A TWSA or component file month whose values read are all 0 (or all fill) while its neighbouring months
    are not (a damaged file read as 0 mm) raises :class:`TimeSeriesError` naming file, variable and month,
    unless ``accept_zero_months`` (then a warning is logged): :func:`grace.check_zero_months`.
    ``memory_mb`` bounds one window, GDAL's block cache of the inputs' blocks under it included; the run sets
    that cache to what ``windows_at_once`` windows (the runner's threads) need
    (:func:`~.downscaling.window_cache`).
    """
    log = log or (lambda s: None)
    if mode not in MODES:
        raise TimeSeriesError("unknown mode %r (anomaly or change)" % mode)
    if not components:
        raise TimeSeriesError("no storage component given (soil moisture, snow, canopy, surface water)")
    names = list(names or ["component_%d" % (i + 1) for i in range(len(components))])
    months = twsa.months
    lons, lats = twsa.lons, twsa.north_up_lats()
    t_months = set(twsa.record_months.tolist())
    tw_grid = twsa.grid()
    comps = _regridded_components(twsa, components, names, (tw_grid, lons, lats), log)
    use = None
    if mode == "anomaly" and baseline is None:
        baseline = auto_baseline(t_months, [c.record_months for c in components])
        log(
            "baseline (automatic: %s): %.3f-%.3f"
            % ("GRACE convention" if baseline == DEFAULT_BASELINE else "period of the data", baseline[0], baseline[1])
        )
    if mode == "anomaly":
        use = months_in_period(months, *baseline)
        use_t = use & np.isin(months, list(t_months))
        if not use_t.any():
            raise TimeSeriesError(
                "baseline %.3f-%.3f is outside the TWSA data (%s, months %s)"
                % (baseline[0], baseline[1], twsa.label, month_range_label(t_months))
            )
        for name, c in zip(names, components):
            if not (use & np.isin(months, c.record_months)).any():
                raise TimeSeriesError(
                    "baseline %.3f-%.3f is outside the data of component %s (months %s)"
                    % (baseline[0], baseline[1], c.label, month_range_label(c.record_months))
                )
        log(
            "baseline %.3f-%.3f: %d TWSA months %s"
            % (baseline[0], baseline[1], int(use_t.sum()), month_range_label(months[use_t]))
        )
    nt, nx, ny = len(months), len(lons), len(lats)
    mask = _checked_mask(mask, nx, ny)
    per_cell = 8 * nt * (4 * (len(comps) + 1) + 2)
    blocks, cache = plan_windows([twsa] + comps, ny, nx, per_cell, memory_mb, log=log)
    keys = ["twsa"] + names + ["gwsa"]
    shared = GwsaState(twsa=twsa, components=comps, months=months, mode=mode, use=use, out_dtype=out_dtype)
    tasks = [
        GridWindow((r0, nr, c0, nc), lats[r0 : r0 + nr], mask[r0 : r0 + nr, c0 : c0 + nc] if mask is not None else None)
        for (r0, nr, c0, nc) in blocks
    ]
    with window_cache(cache, windows_at_once):
        partial = run_windows(
            gwsa_window_task,
            tasks,
            blocks,
            nx,
            "gwsa",
            write=write,
            progress=progress,
            run_tasks=run_tasks,
            shared=shared,
        )
    counts = merge_counts([partial[bi][-1] for bi in sorted(partial)] + [c.window_counts for c in comps])
    check_zero_months(counts, accept_zero_months, log)
    means = _regional_means(partial, keys, nt)
    if not np.isfinite(means["gwsa"]).any():
        raise TimeSeriesError(
            "GWSA is NaN over the whole study area in every month (TWSA %s%s)"
            % (twsa.label, ", inside the mask" if mask is not None else "")
        )
    dates = [month_from_index(k) for k in months]
    table = pd.DataFrame(
        {"date": [d.strftime("%Y-%m-%d") for d in dates], "decimal_year": [decimal_year(d) for d in dates]}
    )
    suffix = "_mm" if mode == "anomaly" else "_change_mm"
    for k in keys:
        table[k + suffix] = means[k]
    return months, table


__all__ = [
    "MODES",
    "DEFAULT_BASELINE",
    "auto_baseline",
    "anomaly",
    "change",
    "gwsa_anomaly_block",
    "gwsa_change_block",
    "groundwater_anomaly",
    "gwsa_window_task",
    "GwsaState",
]


def mask_from_wkt(wkts, grid):
    """Boolean (ny, nx) mask of the cells of ``grid`` (:class:`~subsidence_toolkit.core.io.rasters.RasterGrid`,
    north-up) whose centres fall inside any of the polygons ``wkts`` (WKT in the grid's CRS), rasterized with GDAL."""
    from osgeo import gdal, ogr, osr

    drv = gdal.GetDriverByName("MEM")
    ds = drv.Create("", grid.xsize, grid.ysize, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(grid.geotransform)
    srs = osr.SpatialReference()
    if grid.projection:
        srs.ImportFromWkt(grid.projection)
        ds.SetProjection(grid.projection)
    vds = ogr.GetDriverByName("Memory").CreateDataSource("mask")
    lyr = vds.CreateLayer("mask", srs if grid.projection else None, ogr.wkbUnknown)
    for w in wkts:
        geom = ogr.CreateGeometryFromWkt(w)
        if geom is None:
            raise TimeSeriesError("mask polygon: invalid geometry %s" % w[:60])
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(geom)
        lyr.CreateFeature(f)
    gdal.RasterizeLayer(ds, [1], lyr, burn_values=[1])
    return ds.GetRasterBand(1).ReadAsArray().astype(bool)
