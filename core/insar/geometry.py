"""Line-of-sight geometry: LOS -> vertical and ascending + descending decomposition (no QGIS imports).

Conventions (those of LiCSAR's ``*.geo.E.tif``/``.N.tif``/``.U.tif``):

* the LOS unit vector points **from the ground to the satellite**, components east ``E``, north ``N``
  and up ``U`` with ``U = cos(theta)``, theta the incidence angle;
* a LOS displacement (positive toward the satellite) is ``d_LOS = E dE + N dN + U dU``;
* for a right-looking SAR flying along the heading ``alpha`` (degrees clockwise from north; about -10
  ascending, 190 descending for Sentinel-1) the ground-to-satellite vector is
  ``E = -sin(theta) cos(alpha)``, ``N = sin(theta) sin(alpha)``, ``U = cos(theta)``.

LOS -> vertical assumes no horizontal motion: ``d_v = d_LOS / cos(theta)``. The decomposition solves,
per pixel and date, the weighted least squares ``d_k = U_k dU + E_k dE`` over the k = 1..K inputs valid
there (north neglected, i.e. constrained to zero, as is standard with near-polar orbits whose LOS is
almost blind to north motion). Normal equations of two unknowns are closed-form, so every pixel and
date is solved at once with its own valid inputs (a zero weight for a missing one); the propagated
standard deviations are the square roots of the diagonal of the inverse normal matrix scaled by the
given input sigmas, the condition number that of the weighted design matrix.

Geometry rasters: U rasters must hold values in (0, 1]; an exact 0 is NoData (LiCSAR and LiCSBAS
write 0 where there is no data); incidence-angle rasters hold degrees in [0, 90).
"""

import numpy as np

from ..io.dates import format_date
from ..io.errors import Cancelled, TimeSeriesError
from ..io.rasters import RasterGrid, RasterWriter, exact_read_dtype, open_raster, read_dates
from ..io.warp import GridReader, target_grid
from ..io.windows import DEFAULT_MEMORY_MB, plan_windows, window_cache

KIND_INCIDENCE = "incidence"
KIND_UP = "up"
KINDS = (KIND_INCIDENCE, KIND_UP)
VERTICAL_NOTE = "vertical, horizontal motion neglected"
MAX_CONDITION = 1e6
U_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- unit vectors
def unit_vector(heading_deg, incidence_deg):
    """East, north, up components of the ground-to-satellite unit vector (right-looking SAR)."""
    a = np.deg2rad(np.asarray(heading_deg, dtype=np.float64))
    t = np.deg2rad(np.asarray(incidence_deg, dtype=np.float64))
    return -np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)


def los_from_enu(east, north, up, e, n, u):
    """LOS displacement (toward the satellite) of a motion ``(east, north, up)`` seen along ``(e, n, u)``."""
    return e * east + n * north + u * up


def check_up(u, source):
    """``u`` with exact zeros as NaN; raises naming ``source`` when a value lies outside (0, 1]."""
    u = np.where(u == 0.0, np.nan, u)
    bad = np.isfinite(u) & ((u < 0.0) | (u > 1.0 + U_TOLERANCE))
    if bad.any():
        v = u[bad]
        raise TimeSeriesError(
            "%s: up component U of the LOS unit vector must lie in (0, 1] (U = cos(incidence)); found values "
            "from %.6g to %.6g. Is it an E or N raster, or an angle? Choose the geometry type accordingly."
            % (source, float(v.min()), float(v.max()))
        )
    return np.minimum(u, 1.0)


def cos_from_incidence(theta_deg, source):
    """cos(theta) of incidence angles in degrees; raises naming ``source`` for angles outside [0, 90)."""
    bad = np.isfinite(theta_deg) & ((theta_deg < 0.0) | (theta_deg >= 90.0))
    if bad.any():
        v = theta_deg[bad]
        raise TimeSeriesError(
            "%s: incidence angles must lie in [0, 90) degrees; found %.6g to %.6g (radians? a U component? "
            "choose the geometry type accordingly)" % (source, float(v.min()), float(v.max()))
        )
    return np.cos(np.deg2rad(theta_deg))


def los_to_vertical(d_los, cos_theta):
    """``d_LOS / cos(theta)`` (horizontal motion neglected); NaN where either is NaN."""
    return d_los / cos_theta


class IncidenceSource:
    """cos(theta) on a target grid, from an incidence-angle raster (degrees), a U raster or a constant angle.

    ``path``: raster (``None`` for the constant ``angle`` in degrees); ``kind``: ``"incidence"`` or
    ``"up"``. Rasters on another grid are resampled (bilinear) to ``grid``. :meth:`cos_theta` returns a
    window of cos(theta) (NaN where the raster has no data); bad values raise naming the file.
    Shared by LOS -> vertical, the decomposition and the slant delays of tropospheric corrections.
    """

    def __init__(self, path=None, kind=KIND_INCIDENCE, angle=None, grid=None):
        if kind not in KINDS:
            raise ValueError("geometry kind %r: one of %s" % (kind, ", ".join(KINDS)))
        self.path, self.kind, self.grid = (str(path) if path else None), kind, grid
        if self.path is None:
            if angle is None:
                raise TimeSeriesError(
                    "no incidence geometry: give an incidence-angle or U raster, or a constant "
                    "incidence angle (degrees)"
                )
            self.angle = float(angle)
            if not 0.0 <= self.angle < 90.0:
                raise TimeSeriesError("incidence angle %g degrees: must lie in [0, 90)" % self.angle)
            self.reader = None
        else:
            self.angle = None
            self.reader = GridReader(self.path, grid, bands=[1])
            if self.reader.empty():
                raise TimeSeriesError(
                    "%s: the geometry raster does not cover the data (%s)" % (self.path, grid.describe())
                )

    def describe(self):
        if self.path is None:
            return "constant incidence %g deg" % self.angle
        return "%s (%s)" % (self.path, "incidence angle, degrees" if self.kind == KIND_INCIDENCE else "U = cos theta")

    def check_covers(self, reader, what):
        """Raise when the geometry raster cannot cover the pixels ``reader`` (a :class:`GridReader`) covers."""
        if self.reader is not None:
            check_covers(self.reader, self.path, reader, what)

    def cos_theta(self, row0, nrows, col0, ncols):
        if self.reader is None:
            return np.full((nrows, ncols), np.cos(np.deg2rad(self.angle)))
        v = self.reader.read(row0, nrows, col0, ncols)[0]
        if self.kind == KIND_UP:
            return check_up(v, self.path)
        if np.isfinite(v).any():
            self.max_angle = max(getattr(self, "max_angle", -np.inf), float(np.nanmax(v)))
        return cos_from_incidence(v, self.path)


def check_covers(geometry_reader, geometry_path, data_reader, what):
    """Raise naming ``geometry_path`` when its footprint on the target grid does not contain the data's."""
    g, d = geometry_reader.bbox, data_reader.bbox
    if d[1] <= d[0] or d[3] <= d[2]:
        return
    tol = 0 if geometry_reader.aligned and data_reader.aligned else 1
    if g[0] > d[0] + tol or g[1] < d[1] - tol or g[2] > d[2] + tol or g[3] < d[3] - tol:
        raise TimeSeriesError(
            "%s: the geometry raster does not cover the data of %s (it reaches target rows %d-%d, columns "
            "%d-%d; the data rows %d-%d, columns %d-%d)"
            % (geometry_path, what, g[0], g[1], g[2], g[3], d[0], d[1], d[2], d[3])
        )


# --------------------------------------------------------------------------- LOS -> vertical
def _check(is_canceled):
    if is_canceled is not None and is_canceled():
        raise Cancelled()


def raster_dates(ds):
    """Band dates of a raster, or ``None`` for a single band (a velocity); raises for dateless multiband."""
    if ds.RasterCount == 1:
        return None
    return read_dates(ds)


def project_raster(in_path, out_path, geometry, memory_mb=DEFAULT_MEMORY_MB, progress=None, is_canceled=None, log=None):
    """Write ``in_path`` (LOS, any number of bands) divided by cos(theta) to ``out_path`` on the same grid.

    ``geometry``: an :class:`IncidenceSource` description ``dict(path=, kind=, angle=)``. Band
    descriptions, dates, units and NoData are kept; metadata ``COMPONENT`` says "vertical, horizontal
    motion neglected". Returns a summary dict (pixels, pixels without geometry, mean 1/cos).
    """
    ds = open_raster(in_path)
    grid = RasterGrid.of(ds)
    src = IncidenceSource(grid=grid, **geometry)
    data = GridReader(in_path, grid)
    src.check_covers(data, in_path)
    nb = ds.RasterCount
    dates = raster_dates(ds) if nb > 1 else None
    names = [ds.GetRasterBand(i + 1).GetDescription() for i in range(nb)]
    md = dict(ds.GetMetadata() or {})
    units = ds.GetRasterBand(1).GetUnitType() or md.get("UNITS", "mm")
    md.pop("UNITS", None)
    md.pop("DATES", None)
    md.update(COMPONENT=VERTICAL_NOTE, GEOMETRY=src.describe(), SOURCE=str(in_path))
    # windows of whole tiles, with GDAL's cache of the input blocks they share under the cap
    readers = [data] + ([src.reader] if src.reader is not None else [])
    blocks, cache = plan_windows(
        [r.layout() for r in readers],
        grid.ysize,
        grid.xsize,
        8 * (3 * nb + 4),
        memory_mb,
        out_tile=4 * nb * 256 * 256,
        log=log,
    )
    n_data = n_missing = 0
    inv_sum = 0.0
    with (
        window_cache(cache),
        RasterWriter(
            out_path, grid, nb, dates=dates, band_names=None if dates else names, units=units, metadata=md
        ) as w,
    ):
        for i, (r0, nr, c0, nc) in enumerate(blocks):
            _check(is_canceled)
            d = data.read(r0, nr, c0, nc)
            c = src.cos_theta(r0, nr, c0, nc)
            has = np.isfinite(d).any(axis=0)
            n_data += int(has.sum())
            n_missing += int((has & ~np.isfinite(c)).sum())
            inv_sum += float(np.nansum(np.where(has, 1.0 / c, np.nan)))
            w.write_block(r0, los_to_vertical(d, c[None]).astype(np.float32), c0)
            del d, c, has  # not alive while the next window is read
            if progress is not None:
                progress((i + 1) / len(blocks))
    if n_missing and log is not None:
        log(
            "warning: %d of %d data pixels of %s have no geometry in %s: NoData in the output"
            % (n_missing, n_data, in_path, src.describe())
        )
    if getattr(src, "max_angle", 90.0) < 2.0 and log is not None:
        log(
            "warning: the incidence angles of %s are all below 2 degrees (largest %.4g): if they are radians, "
            "convert them to degrees; SAR incidence is 20-50 degrees" % (src.path, src.max_angle)
        )
    return {
        "pixels": n_data,
        "pixels_without_geometry": n_missing,
        "mean_inverse_cos": inv_sum / max(1, n_data - n_missing),
        "geometry": src.describe(),
    }


# --------------------------------------------------------------------------- decomposition
def decompose_block(d_los, east, up, sigma=None):
    """Vertical and east motion from K LOS observations per pixel (north constrained to zero).

    ``d_los``: ``(K, ...)`` LOS values (NaN = missing); ``east``, ``up``: the unit-vector components,
    broadcastable to ``d_los``; ``sigma``: per-input standard deviations ``(K,)`` (default 1).
    Returns ``(vertical, east, sigma_vertical, sigma_east, condition, n)`` with the shape of one
    observation; NaN where fewer than two inputs are valid or the geometry is degenerate (condition
    number above 1e6).
    """
    d_los = np.asarray(d_los, dtype=np.float64)
    k = d_los.shape[0]
    sigma = np.ones(k) if sigma is None else np.asarray(sigma, dtype=np.float64)
    wshape = (k,) + (1,) * (d_los.ndim - 1)
    e = np.broadcast_to(east, d_los.shape)
    u = np.broadcast_to(up, d_los.shape)
    ok = np.isfinite(d_los) & np.isfinite(e) & np.isfinite(u)
    w = np.where(ok, 1.0 / (sigma.reshape(wshape) ** 2), 0.0)
    d0, e0, u0 = np.where(ok, d_los, 0.0), np.where(ok, e, 0.0), np.where(ok, u, 0.0)
    a = (w * u0 * u0).sum(axis=0)
    b = (w * u0 * e0).sum(axis=0)
    c = (w * e0 * e0).sum(axis=0)
    r1 = (w * u0 * d0).sum(axis=0)
    r2 = (w * e0 * d0).sum(axis=0)
    n = ok.sum(axis=0)
    det = a * c - b * b
    half_tr = 0.5 * (a + c)
    root = np.sqrt(np.maximum(0.25 * (a - c) ** 2 + b * b, 0.0))
    lmax, lmin = half_tr + root, half_tr - root
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.sqrt(lmax / lmin)
        good = (n >= 2) & (det > 0) & np.isfinite(cond) & (cond <= MAX_CONDITION)
        vert = np.where(good, (c * r1 - b * r2) / det, np.nan)
        east_m = np.where(good, (a * r2 - b * r1) / det, np.nan)
        sv = np.where(good, np.sqrt(c / det), np.nan)
        se = np.where(good, np.sqrt(a / det), np.nan)
    cond = np.where(n >= 2, cond, np.nan)
    return vert, east_m, sv, se, cond, n


def common_dates(paths):
    """Band dates of each input and their intersection (``None`` for single-band velocities).

    Raises when single-band and multiband inputs are mixed or no date is common to all.
    """
    per = [raster_dates(open_raster(p)) for p in paths]
    if all(d is None for d in per):
        return per, None
    if any(d is None for d in per):
        one = [str(p) for p, d in zip(paths, per) if d is None]
        raise TimeSeriesError(
            "inputs mix single-band rasters (velocities: %s) with time series; give all "
            "velocities or all time series" % ", ".join(one)
        )
    common = sorted(set.intersection(*(set(d) for d in per)))
    if not common:
        raise TimeSeriesError(
            "the inputs have no common date: %s"
            % "; ".join("%s %s..%s" % (p, format_date(d[0]), format_date(d[-1])) for p, d in zip(paths, per))
        )
    return per, common


def _check_decompose_arguments(inputs, geometry, sigmas):
    """The argument checks of :func:`decompose_rasters` (``geometry`` = (up_paths, east_paths, north_paths,
    headings, incidences)). Returns (use unit-vector rasters, sigmas array)."""
    up_paths, east_paths, north_paths, headings, incidences = geometry
    k = len(inputs)
    if k < 2:
        raise TimeSeriesError(
            "the decomposition needs at least two LOS rasters (e.g. one ascending and one descending track), got %d" % k
        )
    for name, lst in (
        ("U rasters", up_paths),
        ("E rasters", east_paths),
        ("N rasters", north_paths),
        ("headings", headings),
        ("incidence angles", incidences),
        ("uncertainties", sigmas),
    ):
        if lst and len(lst) != k:
            raise TimeSeriesError(
                "%d %s given for %d LOS inputs (one per input, in the same order)" % (len(lst), name, k)
            )
    use_rasters = bool(up_paths) or bool(east_paths)
    if use_rasters and not (up_paths and east_paths):
        raise TimeSeriesError("give both the E and the U rasters of every input (or headings and incidence angles)")
    if not use_rasters and not (headings and incidences):
        raise TimeSeriesError(
            "no geometry: give E and U rasters (LiCSAR *.geo.E.tif / *.geo.U.tif) or a "
            "heading and an incidence angle per input"
        )
    sig = np.ones(k) if not sigmas else np.asarray(sigmas, dtype=np.float64)
    if not (np.isfinite(sig).all() and (sig > 0).all()):
        raise TimeSeriesError("uncertainties must be positive numbers, got %s" % list(sigmas))
    return use_rasters, sig


def _log_dropped_dates(inputs, per, dates, log):
    for p, d in zip(inputs, per):
        dropped = sorted(set(d) - set(dates))
        if dropped:
            log(
                "%s: %d dates not in every input are left out (%s)"
                % (
                    p,
                    len(dropped),
                    ", ".join(format_date(x) for x in dropped[:6]) + (" ..." if len(dropped) > 6 else ""),
                )
            )


def _input_geometry(i, inputs, data, grid, geometry):
    """(E, U) of input ``i``: readers of its unit-vector rasters (checked to cover the input) or constants
    from its heading and incidence. ``geometry`` = (up_paths, east_paths, north_paths, headings, incidences)."""
    up_paths, east_paths, north_paths, headings, incidences = geometry
    if up_paths:
        er, ur = GridReader(east_paths[i], grid, bands=[1]), GridReader(up_paths[i], grid, bands=[1])
        for path, r in ((east_paths[i], er), (up_paths[i], ur)) + (
            ((north_paths[i], GridReader(north_paths[i], grid, bands=[1])),) if north_paths else ()
        ):
            check_covers(r, path, data[i], inputs[i])
        return er, ur
    e, n, u = unit_vector(headings[i], incidences[i])
    if not 0.0 < u <= 1.0:
        raise TimeSeriesError("input %s: incidence angle %g gives U outside (0, 1]" % (inputs[i], incidences[i]))
    return float(e), float(u)


def _open_writers(outputs, grid, dates, inputs, sig):
    """Writers of the vertical, east and quality outputs (None where not asked), opened; units and metadata
    from the first input."""
    out_vertical, out_east, out_quality = outputs
    nd = 1 if dates is None else len(dates)
    ds0 = open_raster(inputs[0])
    units = ds0.GetRasterBand(1).GetUnitType() or (ds0.GetMetadata() or {}).get("UNITS", "mm")
    md = {"SOURCES": ";".join(str(p) for p in inputs), "NORTH": "constrained to zero"}
    specs = [
        (
            out_vertical,
            dict(
                dates=dates,
                band_names=None if dates else ["vertical"],
                units=units,
                metadata=dict(md, COMPONENT="vertical"),
            ),
        ),
        (
            out_east,
            dict(dates=dates, band_names=None if dates else ["east"], units=units, metadata=dict(md, COMPONENT="east")),
        ),
        (
            out_quality,
            dict(
                band_names=["sigma_vertical", "sigma_east", "condition_number", "n_inputs"],
                units="",
                metadata=dict(md, SIGMAS=",".join("%g" % s for s in sig)),
            ),
        ),
    ]
    writers = []
    try:
        for path, kw in specs:
            if path:
                nb = 4 if kw.get("units") == "" else nd
                writers.append(RasterWriter(path, grid, nb, **kw).open())
            else:
                writers.append(None)
    except BaseException:
        for w in writers:
            if w:
                w.abort()
        raise
    return writers


def _decompose_window(window, data, geo, up_paths, sig, counts, dtypes=None):
    """Vertical, east (float32) and quality of one window; adds the window's pixel counts to ``counts``. Each
    input's window is held as read (``dtypes``: float32 where that changes no value) and solved date by date in
    float64 (the solution is per pixel and date: the same numbers as all dates at once)."""
    r0, nr, c0, nc = window
    k = len(data)
    dtypes = dtypes or [np.float64] * k
    d = [rd.read(r0, nr, c0, nc, dtype=dt) for rd, dt in zip(data, dtypes)]  # k x (nd, nr, nc)
    if up_paths:
        e = np.stack([g[0].read(r0, nr, c0, nc)[0] for g in geo])
        u = np.stack([check_up(g[1].read(r0, nr, c0, nc)[0], up_paths[i]) for i, g in enumerate(geo)])
    else:
        e = np.array([g[0] for g in geo]).reshape(k, 1, 1) * np.ones((1, nr, nc))
        u = np.array([g[1] for g in geo]).reshape(k, 1, 1) * np.ones((1, nr, nc))
    has = np.stack([np.isfinite(x).any(axis=0) for x in d])  # (k, nr, nc)
    counts["pixels"] += int(has.sum())
    counts["missing_geometry"] += int((has & ~(np.isfinite(e) & np.isfinite(u))).sum())
    nd = d[0].shape[0]
    vert, east = np.empty((nd, nr, nc), np.float32), np.empty((nd, nr, nc), np.float32)
    for j in range(nd):
        vert[j], east[j], _, _, _, _ = decompose_block(np.stack([x[j] for x in d]), e, u, sig)
    del d
    _, _, sv, se, cond, n = decompose_block(np.where(has, 0.0, np.nan), e, u, sig)
    counts["solved"] += int(np.isfinite(sv).sum())
    counts["degenerate"] += int(((n >= 2) & ~np.isfinite(sv)).sum())
    return vert, east, np.stack([sv, se, cond, np.where(n > 0, n, np.nan)])


def _log_counts(counts, log):
    if counts["missing_geometry"]:
        log(
            "warning: %d of %d input pixels have no unit vector (the geometry rasters' NoData)"
            % (counts["missing_geometry"], counts["pixels"])
        )
    if counts["degenerate"]:
        log(
            "warning: %d pixels with two or more inputs have geometries too alike to separate vertical from east "
            "(condition number > %g): NoData. Combine ascending with descending tracks."
            % (counts["degenerate"], MAX_CONDITION)
        )


def decompose_rasters(
    inputs,
    up_paths=None,
    east_paths=None,
    north_paths=None,
    headings=None,
    incidences=None,
    sigmas=None,
    out_vertical=None,
    out_east=None,
    out_quality=None,
    memory_mb=DEFAULT_MEMORY_MB,
    progress=None,
    is_canceled=None,
    log=None,
):
    """Decompose two or more LOS rasters (velocities or time series) into vertical and east.

    Geometry per input: ``east_paths``/``up_paths`` unit-vector rasters (``north_paths`` are checked for
    coverage only: north is constrained to zero), or constant ``headings``/``incidences`` in degrees.
    The common grid is the intersection of the inputs' footprints in the first input's CRS at the finest
    input resolution; dates are the intersection of the inputs' dates. Outputs (atomic GeoTIFFs):
    vertical and east (mm or mm/yr, bands per date), quality (sigma_vertical, sigma_east for the given
    input sigmas -- 1 mm each by default --, condition number, number of inputs used; for time series
    those of the inputs valid on at least one date). Returns a summary dict.
    """
    use_rasters, sig = _check_decompose_arguments(
        inputs, (up_paths, east_paths, north_paths, headings, incidences), sigmas
    )
    k = len(inputs)
    per, dates = common_dates(inputs)
    if dates is not None and log is not None:
        _log_dropped_dates(inputs, per, dates, log)
    grid = target_grid(inputs, mode="intersection")
    data = []
    for p, d in zip(inputs, per):
        bands = [1] if d is None else [d.index(x) + 1 for x in dates]
        data.append(GridReader(p, grid, bands=bands))
    geometry = (up_paths if use_rasters else None, east_paths, north_paths, headings, incidences)
    geo = [_input_geometry(i, inputs, data, grid, geometry) for i in range(k)]
    nd = 1 if dates is None else len(dates)
    readers = data + ([r for g in geo for r in g] if use_rasters else [])
    dtypes = [np.dtype(exact_read_dtype(open_raster(p))) for p in inputs]
    # per cell: the inputs as read, vertical and east (float32), one date's solution (~60 bytes per input and 150
    # more), the geometry, the quality layers and the second solve for them
    blocks, cache = plan_windows(
        [r.layout() for r in readers],
        grid.ysize,
        grid.xsize,
        nd * (sum(dt.itemsize for dt in dtypes) + 8) + 100 * k + 400,
        memory_mb,
        out_tile=4 * (2 * nd + 4) * 256 * 256,
        log=log,
    )
    counts = {"pixels": 0, "missing_geometry": 0, "solved": 0, "degenerate": 0}
    writers = _open_writers((out_vertical, out_east, out_quality), grid, dates, inputs, sig)
    try:
        with window_cache(cache):
            for bi, window in enumerate(blocks):
                _check(is_canceled)
                outs = _decompose_window(window, data, geo, up_paths if use_rasters else None, sig, counts, dtypes)
                for w, arr in zip(writers, outs):
                    if w:
                        w.write_block(window[0], arr.astype(np.float32, copy=False), window[2])
                del outs, arr  # not alive while the next window is computed
                if progress is not None:
                    progress((bi + 1) / len(blocks))
            for w in writers:
                if w:
                    w.commit()
    except BaseException:
        for w in writers:
            if w:
                w.abort()
        raise
    if log is not None:
        _log_counts(counts, log)
    return {"grid": grid, "dates": dates, "n_inputs": k, "sigmas": list(sig), **counts}
