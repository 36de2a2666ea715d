"""DEM-error (topographic residual) correction of displacement time series (Fattahi & Amelung 2013).

Fattahi, H. & Amelung, F. (2013), *DEM error correction in InSAR time series*, IEEE TGRS 51(7):4249-4259:
an error dz (m) in the DEM used to flatten the interferograms leaves in the displacement of date t_i the term

    d_topo(t_i) = B_perp(t_i) / (r sin(theta)) * dz                  (Fattahi & Amelung 2013, the DEM-error term)

with B_perp(t_i) the perpendicular baseline of acquisition i **relative to the reference acquisition of the
time series** (the date whose displacement is 0), r the slant range and theta the incidence angle. Per pixel
the time series is modelled as that term plus a smooth deformation model and solved by least squares over
the dates:

    d(t_i) = B_perp(t_i) / (r sin theta) * dz + sum_k c_k t_i^k / k!
             [+ a_T cos(2 pi t_i / T) + b_T sin(2 pi t_i / T) per period T] [+ s_j H(t_i - t_j) per step date t_j]

(t_i in years since the reference date, H the Heaviside step, strictly after the step date). The corrected
series is ``d - B_perp(t) / (r sin theta) * dz`` on every date (also the dates left out of the estimation);
dz is the DEM error.

Choices, as MintPy's ``dem_error.py`` (``mintpy.topographicResidual``) makes them:

* deformation model: polynomial of degree 2 in time by default (``polyOrder = 2``), optional periodic terms
  (annual 1 yr, semi-annual 0.5 yr) and step dates; time in decimal years ``year + (day of year - 1) / 365.25``
  as MintPy counts it; ordinary least squares on the displacement (not MintPy's optional phase-velocity
  variant); dates can be left out of the estimation (MintPy's ``excludeDate``) and are still corrected;
* the time series is referenced to its first date (as SBAS and MintPy's inversion write it) and B_perp of
  each date is taken relative to that reference date, so the corrected series stays 0 there. Nothing else
  is removed: no mean is subtracted (the polynomial's constant absorbs offsets);
* r and theta: per-pixel rasters or scene constants (MintPy uses the scene-centre range and incidence when the
  file is geocoded and no geometry file is given).

Units: the time series in mm (the toolkit convention), B_perp and r in m, dz in m:
``d_topo[mm] = 1000 B_perp / (r sin theta) dz``.

Vectorisation. The least-squares fit of the topographic term does not depend on how its column is scaled:
fitting the column ``u_i = B_perp(t_i) / s`` (s = the largest |B_perp|, for conditioning) gives the same fitted
term ``a u_i`` as fitting ``B_perp(t_i) / (r sin theta)``, and then ``dz = a r sin(theta) / (1000 s)``. So one
design matrix ``[u, deformation model]`` serves every pixel whatever its geometry, the corrected series does
not depend on r and theta at all (they only scale the dz map), and pixels sharing a pattern of valid dates
share one pseudo-inverse: the patterns of a window are solved in one batched call, the coefficient of every
pixel is a sum over dates added in date order (independent of the window split, bit for bit).

Pixels with no more valid estimation dates than model parameters, or whose valid dates cannot separate the
topographic term from the deformation model (rank below the number of parameters, MintPy's cutoff 1e-8 on
the singular values), are left uncorrected and their dz is NoData (counted in the summary).

Baselines: per date (``date, bperp``; LiCSAR ``baselines`` files) or per interferogram (``date1, date2,
bperp`` = B(date2) - B(date1): pairs CSVs, HyP3 ``Baseline``, the SBAS network table), inverted to per-date
values by least squares with the first date of each connected set of dates at 0 (:func:`epoch_baselines`).
"""

import csv
import math
import os
from dataclasses import dataclass

import numpy as np

from ..io.dates import format_date, parse_date
from ..io.errors import Cancelled, TimeSeriesError
from ..io.rasters import (
    RasterGrid,
    RasterWriter,
    block_layout,
    check_band_numeric,
    exact_read_dtype,
    open_raster,
    read_dates,
    read_window,
)
from ..io.tasks import run_tasks_here_or
from ..io.warp import GridReader
from ..io.windows import DEFAULT_MEMORY_MB, plan_windows, window_cache
from .geometry import IncidenceSource
from .kernels import unique_patterns
from .network import first_index_components

#: default slant range (m) when no range raster is given: the scene-centre range of a Sentinel-1 IW frame (LiCSAR
#: frame metadata ``centre_range_m`` ~880 km at a mean incidence of ~39 deg; MintPy takes the scene-centre range
#: of geocoded products from their metadata, 850-900 km for IW).
SENTINEL1_SLANT_RANGE_M = 880000.0
#: default incidence (degrees) when neither an incidence raster nor an angle is given: mid-swath Sentinel-1 IW.
SENTINEL1_INCIDENCE_DEG = 39.0
DEFAULT_POLY_DEGREE = 2
#: relative cutoff of the singular values (MintPy's ``lstsq(cond=1e-8)``)
RANK_CUTOFF = 1e-8
#: pair baselines whose per-date fit leaves a misfit above this (m) are reported as inconsistent
PAIR_MISFIT_TOLERANCE_M = 1.0
#: validity patterns solved per batched pseudo-inverse call
PATTERN_CHUNK = 256
#: pixels whose coefficients and corrected values are computed in float64 at a time (a window stays in the type it
#: was read in; the arithmetic of a pixel does not depend on the chunk)
PIXEL_CHUNK = 4096

_DATE_COLS = ("date", "epoch", "acquisition", "acquisition_date", "epoch_date", "dates")
_REF_COLS = ("reference", "reference_date", "ref", "ref_date", "date1", "primary", "master", "date_ref")
_SEC_COLS = ("secondary", "secondary_date", "sec", "sec_date", "date2", "slave", "date_sec")
_BPERP_COLS = (
    "bperp",
    "bperp_m",
    "b_perp",
    "b_perp_m",
    "perp_baseline",
    "perp_baseline_m",
    "perpendicular_baseline",
    "perpendicular_baseline_m",
    "baseline",
    "perp",
)


# --------------------------------------------------------------------------- time model
def mintpy_years(d):
    """Decimal year as MintPy counts it (``ptime.yyyymmdd2years``): ``year + (day of year - 1) / 365.25``."""
    return d.year + (d.timetuple().tm_yday - 1) / 365.25


def deformation_design(dates, poly_degree=DEFAULT_POLY_DEGREE, periods=(), step_dates=(), reference_index=0):
    """Columns of the deformation model (N, q): ``t^k / k!`` for k = 0..poly_degree, ``cos, sin(2 pi t / T)`` per
    period T (years), ``H(t - t_step)`` (1 strictly after the step date) per step date; t in years since the
    reference date. Raises when a step date is not strictly inside the dates or a period is not positive."""
    if int(poly_degree) != poly_degree or poly_degree < 0:
        raise TimeSeriesError("polynomial degree %r: give a whole number >= 0" % (poly_degree,))
    years = np.array([mintpy_years(d) for d in dates], dtype=np.float64)
    t = years - years[reference_index]
    cols = [t**k / math.factorial(k) for k in range(int(poly_degree) + 1)]
    for period in periods:
        if not period > 0:
            raise TimeSeriesError("period %r years: periods must be positive (1 = annual, 0.5 = semi-annual)" % period)
        cols += [np.cos(2 * np.pi * t / period), np.sin(2 * np.pi * t / period)]
    for s in step_dates:
        ys = mintpy_years(s)
        if not years[0] < ys < years[-1]:
            raise TimeSeriesError(
                "step date %s is not between the first and the last date of the time series (%s .. %s)"
                % (format_date(s), format_date(dates[0]), format_date(dates[-1]))
            )
        cols.append((years > ys).astype(np.float64))
    return np.stack(cols, axis=1)


# --------------------------------------------------------------------------- baselines
class Baselines:
    """Perpendicular baselines as given: per date (``dates``, ``values``) or per pair (``pairs`` = list of
    ``(date1, date2, B(date2) - B(date1))``); ``source`` names where they came from (file, table)."""

    def __init__(self, source, dates=None, values=None, pairs=None):
        self.source = str(source)
        self.dates = list(dates) if dates is not None else None
        self.values = None if values is None else np.asarray(values, dtype=np.float64)
        self.pairs = list(pairs) if pairs is not None else None

    @property
    def kind(self):
        return "per date" if self.pairs is None else "per pair"

    def describe(self):
        n = len(self.dates) if self.pairs is None else len(self.pairs)
        return "%s (%d %s)" % (self.source, n, "dates" if self.pairs is None else "pairs")


def _number(text, source, line, what="perpendicular baseline"):
    try:
        v = float(str(text).strip())
    except ValueError:
        raise TimeSeriesError("%s line %d: %s %r is not a number" % (source, line, what, text)) from None
    if not math.isfinite(v):
        return None
    return v


def _is_blank(v):
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def _as_date(v):
    if hasattr(v, "year") and hasattr(v, "month"):
        return v if not hasattr(v, "date") else v.date()
    return parse_date(str(v).strip()) if not _is_blank(v) else None


def baselines_from_records(header, rows, source, first_line=2):
    """:class:`Baselines` from a table: ``header`` (column names) and ``rows`` (sequences of values).

    Per date when there is a date column (``date``/``epoch``) and a baseline column (``bperp``,
    ``perp_baseline_m``, ...); per pair when there are reference and secondary date columns (``date1``/
    ``reference_date``, ``date2``/``secondary_date``) and a baseline column. Rows with an empty baseline are
    skipped (a pair without a known baseline); a baseline that is not a number or a date that is not a date stops
    with the line named."""
    head = [str(h).strip().lower() for h in header]

    def find(names):
        for i, h in enumerate(head):
            if h in names:
                return i
        return None

    bi = find(_BPERP_COLS)
    di, ri, si = find(_DATE_COLS), find(_REF_COLS), find(_SEC_COLS)
    if bi is None or (di is None and (ri is None or si is None)):
        raise TimeSeriesError(
            "%s: no perpendicular-baseline columns found (columns %s); expected 'date, bperp' per acquisition or "
            "'date1, date2, bperp' (also reference_date, secondary_date, perp_baseline_m) per interferogram"
            % (source, ", ".join(head) or "none")
        )
    per_pair = ri is not None and si is not None
    out = []
    for n, r in enumerate(rows, start=first_line):
        need = max(bi, ri, si) if per_pair else max(bi, di)
        if len(r) <= need or _is_blank(r[bi]):
            continue
        b = r[bi] if isinstance(r[bi], (int, float)) else _number(r[bi], source, n)
        if b is None or (isinstance(b, float) and not math.isfinite(b)):
            continue
        if per_pair:
            d1, d2 = _as_date(r[ri]), _as_date(r[si])
            if d1 is None or d2 is None:
                raise TimeSeriesError(
                    "%s line %d: %r / %r are not dates (YYYY-MM-DD or YYYYMMDD)" % (source, n, r[ri], r[si])
                )
            out.append((d1, d2, float(b)))
        else:
            d = _as_date(r[di])
            if d is None:
                raise TimeSeriesError("%s line %d: %r is not a date (YYYY-MM-DD or YYYYMMDD)" % (source, n, r[di]))
            out.append((d, float(b)))
    if not out:
        raise TimeSeriesError("%s: no row with a perpendicular baseline" % source)
    if per_pair:
        return Baselines(source, pairs=out)
    per = {}
    for n, (d, b) in enumerate(out):
        if d in per and abs(per[d] - b) > 1e-6:
            raise TimeSeriesError(
                "%s: date %s has two different perpendicular baselines (%g and %g m)"
                % (source, format_date(d), per[d], b)
            )
        per[d] = b
    dates = sorted(per)
    return Baselines(source, dates=dates, values=[per[d] for d in dates])


def _positional(rows, source):
    """A table without a recognised header: ``date, bperp`` per date, ``date1, date2, bperp`` per pair or
    ``file, date1, date2, bperp`` (the pairs CSV without header)."""
    first = rows[0]
    start = 0 if parse_date(first[0].strip()) or (len(first) > 1 and parse_date(first[1].strip())) else 1
    body = rows[start:]
    if not body:
        raise TimeSeriesError("%s: no row with a perpendicular baseline" % source)
    r = body[0]
    d0 = parse_date(r[0].strip())
    d1 = parse_date(r[1].strip()) if len(r) > 1 else None
    if d0 is not None and d1 is not None and len(r) >= 3:
        header = ["date1", "date2", "bperp"]
    elif d0 is not None and len(r) >= 2:
        header = ["date", "bperp"]
    elif d0 is None and d1 is not None and len(r) >= 4:
        header = ["file", "date1", "date2", "bperp"]
    else:
        raise TimeSeriesError(
            "%s: not a baselines table (expected a LiCSAR baselines file, 'date, bperp' or 'date1, date2, bperp' "
            "columns); first line: %s" % (source, ", ".join(r))
        )
    return baselines_from_records(header, body, source, first_line=start + 1)


def read_baselines(path):
    """:class:`Baselines` from a file: a LiCSAR ``baselines`` file (``primary secondary bperp btemp`` per
    epoch, whitespace separated), or a CSV / tab-separated table per date or per pair (see
    :func:`baselines_from_records`; the SBAS network table and the pairs CSV work as they are).
    Raises :class:`TimeSeriesError` naming the file when it cannot be read or holds no baselines."""
    path = str(path)
    if not os.path.isfile(path):
        raise TimeSeriesError("baselines file %s does not exist" % path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TimeSeriesError("baselines file %s cannot be read as text: %s" % (path, e)) from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise TimeSeriesError("baselines file %s is empty" % path)
    if not any(sep in lines[0] for sep in (",", ";", "\t")):  # whitespace separated
        rows = [ln.split() for ln in lines]
        head = [c.strip().lower() for c in rows[0]]
        if any(h in _BPERP_COLS for h in head):
            return baselines_from_records(head, rows[1:], path)
        primaries = {r[0] for r in rows if len(r) >= 3 and parse_date(r[0]) and parse_date(r[1])}
        if len(rows[0]) >= 9 or len(primaries) == 1:  # LiCSAR: 'primary secondary bperp btemp', one primary
            from .products import read_licsar_baselines

            per = read_licsar_baselines(path)
            dates = sorted(per)
            return Baselines(path, dates=dates, values=[per[d] for d in dates])
        return _positional(rows, path)  # 'date bperp' or 'date1 date2 bperp' (several reference dates)
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(lines, dialect) if any(c.strip() for c in r)]
    head = [c.strip().lower() for c in rows[0]]
    if any(h in _BPERP_COLS for h in head):
        return baselines_from_records(head, rows[1:], path)
    return _positional(rows, path)


def pair_baselines_to_dates(pairs, source, log=None):
    """Per-date baselines from pair baselines ``B(d2) - B(d1)``: least squares with the first date of every
    connected set of dates at 0. Returns ``(dates, values, component)`` (component: the first date's index of
    each date's connected set). A misfit above :data:`PAIR_MISFIT_TOLERANCE_M` is logged naming the worst pair."""
    dates = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    idx = {d: i for i, d in enumerate(dates)}
    comp = first_index_components(len(dates), [(idx[a], idx[b]) for a, b, _ in pairs])
    roots = sorted(set(comp.tolist()))
    a = np.zeros((len(pairs) + len(roots), len(dates)))
    rhs = np.zeros(len(pairs) + len(roots))
    for k, (d1, d2, b) in enumerate(pairs):
        a[k, idx[d2]] += 1.0
        a[k, idx[d1]] -= 1.0
        rhs[k] = b
    for j, r in enumerate(roots):
        a[len(pairs) + j, r] = 1.0  # the first date of each connected set at 0
    values = np.linalg.lstsq(a, rhs, rcond=None)[0]
    misfit = a[: len(pairs)] @ values - rhs[: len(pairs)]
    if len(pairs) and log is not None:
        worst = int(np.argmax(np.abs(misfit)))
        if abs(misfit[worst]) > PAIR_MISFIT_TOLERANCE_M:
            d1, d2, b = pairs[worst]
            log(
                "warning: %s: the pair baselines are inconsistent (no per-date baselines reproduce them within %g m): "
                "worst %s_%s, %g m given, %g m from the fit (RMS misfit %.3g m over %d pairs)"
                % (
                    source,
                    PAIR_MISFIT_TOLERANCE_M,
                    format_date(d1).replace("-", ""),
                    format_date(d2).replace("-", ""),
                    b,
                    b + misfit[worst],
                    float(np.sqrt(np.mean(misfit**2))),
                    len(pairs),
                )
            )
    return dates, values, comp


def epoch_baselines(baselines, dates, reference_index=0, log=None):
    """B_perp of each of ``dates`` (m) relative to ``dates[reference_index]``, from :class:`Baselines`.

    Raises naming the source and the first missing dates when a date has no baseline, or (pairs) when a date
    is not connected through pairs to the reference date (its baseline relative to it is then unknown)."""
    src = baselines.source
    if baselines.pairs is None:
        per = dict(zip(baselines.dates, baselines.values.tolist()))
        comp = {d: 0 for d in per}
    else:
        pd_, pv, pc = pair_baselines_to_dates(baselines.pairs, src, log)
        per = dict(zip(pd_, pv.tolist()))
        comp = dict(zip(pd_, pc.tolist()))
    missing = [d for d in dates if d not in per]
    if missing:
        raise TimeSeriesError(
            "%s has no perpendicular baseline for date %s%s of the time series; give a baselines file that covers "
            "every date"
            % (src, format_date(missing[0]), (" (and %d more)" % (len(missing) - 1)) if len(missing) > 1 else "")
        )
    ref = dates[reference_index]
    apart = [d for d in dates if comp[d] != comp[ref]]
    if apart:
        raise TimeSeriesError(
            "%s: date %s%s is not linked to the reference date %s by any chain of pairs with a baseline, so its "
            "baseline relative to it is unresolved; give per-date baselines (e.g. LiCSAR's baselines file) or the "
            "missing pairs"
            % (
                src,
                format_date(apart[0]),
                (" (and %d more)" % (len(apart) - 1)) if len(apart) > 1 else "",
                format_date(ref),
            )
        )
    b = np.array([per[d] for d in dates], dtype=np.float64)
    return b - b[reference_index]


# --------------------------------------------------------------------------- the estimator
def topographic_coefficients(values, topo, deformation, use_dates=None, cutoff=RANK_CUTOFF):
    """Least-squares coefficient of the topographic column for every pixel (pure, vectorised).

    ``values`` (N, P) displacement (NaN = missing); ``topo`` (N,) the topographic column (B_perp per date, any
    scale); ``deformation`` (N, q) the deformation model; ``use_dates`` (N,) bool: dates used in the fit (default
    all). Per pixel, the system ``[topo, deformation] x = d`` over its valid used dates (F&A 2013) is solved by
    the pseudo-inverse of its pattern of valid dates (patterns batched); the coefficient is ``sum_i h_i d_i``
    added in date order. Returns ``(coef (P,), status (P,) int8)``: status 1 estimated, 0 no data, -1 too few
    dates (no more than parameters), -2 the valid dates cannot separate the topographic term (rank)."""
    values = _float_values(values)
    n, npx = values.shape
    design = np.column_stack([np.asarray(topo, dtype=np.float64), np.asarray(deformation, dtype=np.float64)])
    p = design.shape[1]
    use = np.ones(n, bool) if use_dates is None else np.asarray(use_dates, bool)
    valid = np.isfinite(values) & use[:, None]
    coef = np.full(npx, np.nan)
    status = np.zeros(npx, np.int8)
    has = np.flatnonzero(np.isfinite(values).any(axis=0))
    if has.size == 0:
        return coef, status
    patterns, inv = unique_patterns(valid[:, has])
    counts = patterns.sum(axis=0)
    enough = counts > p
    status[has] = np.where(enough[inv], 1, -1)
    good = np.flatnonzero(enough)
    if good.size == 0:
        return coef, status
    # column u of ``hz``: the topographic row of pattern u's pseudo-inverse (date by date); the last column zero
    hz = np.zeros((n, patterns.shape[1] + 1))
    solved = np.zeros(patterns.shape[1], bool)
    rank_bad = np.zeros(patterns.shape[1], bool)
    for c0 in range(0, good.size, PATTERN_CHUNK):  # bounded memory: PATTERN_CHUNK x N x p per call
        chunk = good[c0 : c0 + PATTERN_CHUNK]
        stacked = design[None, :, :] * patterns[:, chunk].T[:, :, None]  # zero rows: dates not valid there
        sv = np.linalg.svd(stacked, compute_uv=False)
        full_rank = sv[:, -1] > cutoff * sv[:, 0]
        if full_rank.any():
            hz[:, chunk[full_rank]] = np.linalg.pinv(stacked[full_rank], rcond=cutoff)[:, 0, :].T
        solved[chunk[full_rank]] = True
        rank_bad[chunk[~full_rank]] = True
    status[has] = np.where(rank_bad[inv], -2, status[has])
    if solved.any():
        # a pixel not solved gets the zero column of ``hz``
        row = np.full(npx, patterns.shape[1])
        row[has] = np.where(solved[inv], inv, patterns.shape[1])
        acc = np.zeros(npx)
        for p0 in range(0, npx, PIXEL_CHUNK):
            sl = slice(p0, p0 + PIXEL_CHUNK)
            weights = np.take(hz, row[sl], axis=1)  # (N, chunk): row i = the pixel's h of date i
            d0 = np.where(valid[:, sl], values[:, sl], 0.0).astype(np.float64, copy=False)
            a = acc[sl]
            for i in range(n):  # summed in date order: the same for a pixel whatever else is in the window
                a += weights[i] * d0[i]
            del weights, d0
        coef = np.where(status == 1, acc, np.nan)
    return coef, status


def _float_values(values):
    """``values`` as a float32 or float64 array (other types widened to float64): float32 windows are widened a
    chunk of pixels at a time, never whole."""
    values = np.asarray(values)
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


def dem_error_block(
    values, topo, deformation, use_dates=None, r_sin_theta=None, scale=1.0, out_dtype=np.float64, with_removed=False
):
    """Correct one block (pure): ``values`` (N, rows, cols) mm -> ``(corrected (N, rows, cols), dz (rows, cols) m,
    status (rows, cols))``, and ``removed`` with ``with_removed``.

    ``topo`` (N,) = B_perp / ``scale`` (B_perp in m relative to the reference date); ``r_sin_theta`` (rows, cols)
    or scalar: slant range (m) x sin(incidence) (None: dz not computed, NaN). The corrected series is
    ``d - topo * a`` where a pixel was estimated (F&A 2013), unchanged elsewhere; ``dz = a r sin(theta) /
    (1000 scale)``. The arithmetic is float64 a chunk of pixels at a time whatever the type of ``values``;
    ``corrected`` is ``out_dtype`` (float32: the float64 result rounded once). ``removed``: per date, the sum of
    squares of ``d - corrected`` (float64) over the estimated pixels and their count, ``(sq (N,), n (N,))``."""
    values = _float_values(values)
    shape = values.shape[1:]
    n = values.shape[0]
    flat = values.reshape(n, -1)
    coef, status = topographic_coefficients(flat, topo, deformation, use_dates)
    ok = status == 1
    coef_ok = np.where(ok, coef, 0.0)
    topo64 = np.asarray(topo, dtype=np.float64)[:, None]
    corrected = np.empty(flat.shape, dtype=out_dtype)
    sq, cnt = np.zeros(n), np.zeros(n)
    for p0 in range(0, flat.shape[1], PIXEL_CHUNK):
        sl = slice(p0, p0 + PIXEL_CHUNK)
        d = flat[:, sl].astype(np.float64, copy=False)
        # x - 0 = x exactly: pixels not estimated are left as they are
        c = d - topo64 * coef_ok[None, sl]
        corrected[:, sl] = c
        k = ok[sl]
        if k.any():
            removed = (d - c)[:, k]
            sq += np.nansum(removed**2, axis=1)
            cnt += np.isfinite(removed).sum(axis=1)
        del d, c
    if r_sin_theta is None:
        dz = np.full(flat.shape[1], np.nan)
    else:
        rs = np.broadcast_to(np.asarray(r_sin_theta, dtype=np.float64), shape).reshape(-1)
        dz = coef * rs / (1000.0 * scale)
    out = corrected.reshape(values.shape), dz.reshape(shape), status.reshape(shape)
    return out + ((sq, cnt),) if with_removed else out


# --------------------------------------------------------------------------- streaming driver
@dataclass(frozen=True)
class DemErrorState:
    """What every window task needs (picklable)."""

    ts_path: str
    grid: RasterGrid
    topo: np.ndarray
    deformation: np.ndarray
    use_dates: np.ndarray
    scale: float
    slant_range: object  # float (m) or a raster path
    incidence: dict  # IncidenceSource(**incidence, grid=grid)
    out_dtype: str = "float32"
    read_dtype: str = "float64"  # float32 where that changes no value (rasters.exact_read_dtype)


@dataclass(frozen=True)
class DemErrorWindow:
    window: tuple  # (row0, nrows, col0, ncols)


def _slant_range_window(spec, grid, window):
    r0, nr, c0, nc = window
    if not isinstance(spec, str):
        return np.full((nr, nc), float(spec))
    r = GridReader(spec, grid, bands=[1]).read(r0, nr, c0, nc)[0]
    r = np.where(r > 0, r, np.nan)
    return r


def window_bytes_per_cell(n_dates, itemsize=8):
    """Working memory per cell of a window task: the series as read (``itemsize`` N) and its float32 correction
    (4 N), the valid masks (2 N), one pseudo-inverse row per validity pattern (8 N: as many patterns as pixels
    where gaps fall on dates of their own), and the per-pixel geometry, coefficients and indices (~120 bytes). The
    float64 work goes :data:`PIXEL_CHUNK` pixels at a time: :func:`fixed_bytes`."""
    return (itemsize + 14) * n_dates + 120


def fixed_bytes(n_dates, n_params):
    """Working memory of a window task whatever its size: a chunk of :data:`PIXEL_CHUNK` pixels in float64 (the
    weights, the values, the corrected values and the removed term with its squares: ~48 N per pixel) and a batch of
    :data:`PATTERN_CHUNK` pseudo-inverses (their stacked systems, singular values and results)."""
    return PIXEL_CHUNK * 48 * n_dates + PATTERN_CHUNK * 8 * n_dates * (4 * n_params + 2)


def dem_error_window_task(task, shared):
    """Window task (pure: reads its window, returns arrays): corrected series, dz and the window's partial sums
    (per date: sum of squares of the removed term and pixel count; status counts; pixels without geometry)."""
    r0, nr, c0, nc = task.window
    ds = open_raster(shared.ts_path)
    values = read_window(ds, c0, r0, nc, nr, dtype=np.dtype(shared.read_dtype))
    ds = None
    src = IncidenceSource(grid=shared.grid, **shared.incidence)
    cos_t = src.cos_theta(r0, nr, c0, nc)
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, 1.0))
    rng = _slant_range_window(shared.slant_range, shared.grid, task.window)
    rs = rng * sin_t
    rs = np.where(rs > 0, rs, np.nan)
    dt = np.dtype(shared.out_dtype)
    corrected, dz, status, (sq, cnt) = dem_error_block(
        values, shared.topo, shared.deformation, shared.use_dates, rs, shared.scale, out_dtype=dt, with_removed=True
    )
    del values
    ok = status == 1
    sums = {
        "sq": sq,
        "n": cnt,
        "estimated": int(ok.sum()),
        "too_few": int((status == -1).sum()),
        "rank": int((status == -2).sum()),
        "no_geometry": int((ok & ~np.isfinite(dz)).sum()),
        "dz_sum": float(np.nansum(dz)),
        "dz_sq": float(np.nansum(dz**2)),
        "dz_n": int(np.isfinite(dz).sum()),
        "dz_max_abs": float(np.nanmax(np.abs(dz))) if np.isfinite(dz).any() else 0.0,
    }
    return {"corrected": corrected, "dz": dz.astype(dt), "sums": sums}


def _check_design(topo, deformation, use_dates, dates, names):
    n_used = int(use_dates.sum())
    p = 1 + deformation.shape[1]
    if n_used <= p:
        raise TimeSeriesError(
            "%d dates used for the estimation but the model has %d parameters (DEM error + %s): lower the "
            "polynomial degree, drop periodic terms or step dates, or exclude fewer dates" % (n_used, p, names)
        )
    a = np.column_stack([topo, deformation])[use_dates]
    sv = np.linalg.svd(a, compute_uv=False)
    if not sv[-1] > RANK_CUTOFF * sv[0]:
        raise TimeSeriesError(
            "the perpendicular baselines of the %d dates %s .. %s can be written as the deformation model (%s): "
            "DEM error and deformation cannot be separated; lower the polynomial degree or drop terms"
            % (n_used, format_date(dates[0]), format_date(dates[-1]), names)
        )


def model_names(poly_degree, periods, step_dates):
    """A short description of the deformation model (for logs and metadata)."""
    parts = ["polynomial of degree %d" % poly_degree]
    if periods:
        parts.append("periodic %s yr" % ", ".join("%g" % p for p in periods))
    if step_dates:
        parts.append("steps after %s" % ", ".join(format_date(s) for s in step_dates))
    return " + ".join(parts)


def correct_dem_error(
    ts_path,
    out_timeseries,
    out_dem_error,
    baselines,
    poly_degree=DEFAULT_POLY_DEGREE,
    periods=(),
    step_dates=(),
    exclude_dates=(),
    reference_date=None,
    slant_range=SENTINEL1_SLANT_RANGE_M,
    incidence=None,
    memory_mb=DEFAULT_MEMORY_MB,
    run_tasks=None,
    progress=None,
    is_canceled=None,
    log=None,
    windows_at_once=1,
):
    """Correct the time-series raster ``ts_path`` for DEM error (the whole driver of ``subsidence:demerror``).

    ``baselines``: :class:`Baselines` (or a path for :func:`read_baselines`). ``slant_range``: metres (scene
    constant) or the path of a slant-range raster (m). ``incidence``: ``dict(path=, kind=, angle=)`` for
    :class:`~.geometry.IncidenceSource` (default: the constant :data:`SENTINEL1_INCIDENCE_DEG`). ``reference_date``:
    the date at which the series is 0 (default: its first date). Dates in ``exclude_dates`` are left out of the
    estimation and corrected too. Windows are planned under ``memory_mb`` and run here or through ``run_tasks(
    task_fn, tasks, shared)`` (threads, Dask); outputs are written atomically (corrected series with the input's
    dates, units and metadata; dz in m, one band). ``windows_at_once``: windows in flight at a time (the runner's
    threads), each under ``memory_mb``; GDAL's block cache is capped to what they need
    (:func:`~..io.windows.window_cache`). Returns a summary dict with the per-date table rows."""
    log = log or (lambda s: None)
    if not isinstance(baselines, Baselines):
        baselines = read_baselines(baselines)
    ds = open_raster(ts_path)
    check_band_numeric(ds, ts_path)
    dates = read_dates(ds)
    if len(dates) < 3:
        raise TimeSeriesError("%s has %d dates: the DEM-error estimation needs a time series" % (ts_path, len(dates)))
    grid = RasterGrid.of(ds)
    ref = dates[0] if reference_date is None else reference_date
    if ref not in dates:
        raise TimeSeriesError("reference date %s is not a date of %s" % (format_date(ref), ts_path))
    ref_index = dates.index(ref)
    unknown = [d for d in exclude_dates if d not in dates]
    if unknown:
        raise TimeSeriesError("excluded date %s is not a date of %s" % (format_date(unknown[0]), ts_path))
    use_dates = np.array([d not in set(exclude_dates) for d in dates])
    bperp = epoch_baselines(baselines, dates, ref_index, log)
    scale = float(np.max(np.abs(bperp)))
    if not scale > 0:
        raise TimeSeriesError(
            "%s: every date has the same perpendicular baseline: there is no DEM error signal" % baselines.source
        )
    topo = bperp / scale
    deformation = deformation_design(dates, poly_degree, periods, step_dates, ref_index)
    names = model_names(poly_degree, periods, step_dates)
    _check_design(topo, deformation, use_dates, dates, names)
    incidence = dict(incidence or {"angle": SENTINEL1_INCIDENCE_DEG})
    src = IncidenceSource(grid=grid, **incidence)  # checks the angle / opens the raster (errors name the file)
    if isinstance(slant_range, str):
        if GridReader(slant_range, grid, bands=[1]).empty():
            raise TimeSeriesError(
                "%s: the slant-range raster does not cover the time series (%s)" % (slant_range, grid.describe())
            )
    elif not (slant_range and slant_range > 0):
        raise TimeSeriesError("slant range %r m: must be positive (Sentinel-1 IW: about 800-950 km)" % (slant_range,))
    log(
        "%s: %d dates %s .. %s, reference date %s; baselines %s %s: %.1f .. %.1f m relative to the reference date; "
        "deformation model: %s%s"
        % (
            ts_path,
            len(dates),
            format_date(dates[0]),
            format_date(dates[-1]),
            format_date(ref),
            baselines.kind,
            baselines.describe(),
            float(bperp.min()),
            float(bperp.max()),
            names,
            "; %d dates left out of the estimation" % int((~use_dates).sum()) if (~use_dates).any() else "",
        )
    )
    nd, q = len(dates), deformation.shape[1]
    # windows of whole tiles, with GDAL's cache of the input blocks they share under the cap
    layouts = [block_layout(ds, whole_stack_reads=True)]
    layouts += [src.reader.layout()] if src.reader is not None else []
    layouts += [GridReader(slant_range, grid, bands=[1]).layout()] if isinstance(slant_range, str) else []
    read_dtype = np.dtype(exact_read_dtype(ds))
    blocks, cache = plan_windows(
        layouts,
        grid.ysize,
        grid.xsize,
        window_bytes_per_cell(nd, read_dtype.itemsize),
        memory_mb,
        fixed=fixed_bytes(nd, q + 1),
        out_tile=4 * (nd + 1) * 256 * 256,
        log=log,
    )
    shared = DemErrorState(
        ts_path=str(ts_path),
        grid=grid,
        topo=topo,
        deformation=deformation,
        use_dates=use_dates,
        scale=scale,
        slant_range=slant_range,
        incidence=incidence,
        read_dtype=read_dtype.name,
    )
    tasks = [DemErrorWindow(b) for b in blocks]
    md = {k: v for k, v in (ds.GetMetadata() or {}).items() if k not in ("UNITS", "DATES")}
    units = ds.GetRasterBand(1).GetUnitType() or (ds.GetMetadata() or {}).get("UNITS", "mm")
    method = "DEM error, Fattahi & Amelung 2013: %s" % names
    md_ts = dict(md, DEM_ERROR_CORRECTION=method, SOURCE=str(ts_path), DEM_ERROR_REFERENCE_DATE=format_date(ref))
    md_dz = {
        "KIND": "dem_error",
        "SOURCE": str(ts_path),
        "METHOD": method,
        "SLANT_RANGE": slant_range if isinstance(slant_range, str) else "%g m" % slant_range,
        "INCIDENCE": src.describe(),
    }
    ds = None
    partial = {}
    w_ts = RasterWriter(out_timeseries, grid, nd, dates=dates, units=units, metadata=md_ts)
    w_dz = (
        RasterWriter(out_dem_error, grid, 1, band_names=["dem_error"], units="m", metadata=md_dz)
        if out_dem_error
        else None
    )
    writers = [w for w in (w_ts, w_dz) if w is not None]
    with window_cache(cache, windows_at_once):
        try:
            for w in writers:
                w.open()
            done = 0
            # not enumerate(): it keeps its last item, and so the previous window's arrays, until the next is done
            for bi, res in run_tasks_here_or(dem_error_window_task, tasks, run_tasks, shared):
                done += 1
                if is_canceled is not None and is_canceled():
                    raise Cancelled()
                r0, nr, c0, nc = blocks[bi]
                w_ts.write_block(r0, res["corrected"], c0)
                if w_dz is not None:
                    w_dz.write_block(r0, res["dz"][None], c0)
                partial[bi] = res["sums"]
                del res
                if progress is not None:
                    progress(done / len(blocks))
            totals = _totals(partial, nd)
            if totals["estimated"] == 0:
                raise TimeSeriesError(
                    "%s: no pixel could be corrected (each needs more valid dates than the %d model parameters, with "
                    "baselines that differ from the deformation model); nothing was written" % (ts_path, q + 1)
                )
            for w in writers:
                w.commit()
        except BaseException:
            for w in writers:
                w.abort()
            raise
    _log_totals(totals, src, log)
    rows = [
        {
            "date": format_date(d),
            "bperp_m": float(b),
            "used_in_estimation": bool(u),
            "topographic_rms_mm": float(np.sqrt(s / c)) if c > 0 else float("nan"),
            "pixels": int(c),
        }
        for d, b, u, s, c in zip(dates, bperp, use_dates, totals["sq"], totals["n"])
    ]
    return dict(totals, dates=dates, bperp=bperp, rows=rows, reference_date=ref, model=names, grid=grid)


def _totals(partial, nd):
    """Window partial sums added in window order."""
    t = {"sq": np.zeros(nd), "n": np.zeros(nd), "estimated": 0, "too_few": 0, "rank": 0, "no_geometry": 0}
    dz_sum = dz_sq = 0.0
    dz_n = 0
    dz_max = 0.0
    for bi in sorted(partial):
        s = partial[bi]
        t["sq"] += s["sq"]
        t["n"] += s["n"]
        for k in ("estimated", "too_few", "rank", "no_geometry"):
            t[k] += s[k]
        dz_sum += s["dz_sum"]
        dz_sq += s["dz_sq"]
        dz_n += s["dz_n"]
        dz_max = max(dz_max, s["dz_max_abs"])
    t["dem_error_mean_m"] = dz_sum / dz_n if dz_n else float("nan")
    t["dem_error_rms_m"] = math.sqrt(dz_sq / dz_n) if dz_n else float("nan")
    t["dem_error_max_abs_m"] = dz_max if dz_n else float("nan")
    return t


def _log_totals(t, src, log):
    log(
        "corrected %d pixels; DEM error mean %.2f m, RMS %.2f m, largest |dz| %.1f m"
        % (t["estimated"], t["dem_error_mean_m"], t["dem_error_rms_m"], t["dem_error_max_abs_m"])
    )
    if t["too_few"]:
        log(
            "warning: %d pixels have no more valid dates than model parameters: left uncorrected, DEM error NoData"
            % t["too_few"]
        )
    if t["rank"]:
        log(
            "warning: %d pixels' valid dates cannot separate the topographic term from the deformation model: left "
            "uncorrected, DEM error NoData" % t["rank"]
        )
    if t["no_geometry"]:
        log(
            "warning: %d corrected pixels have no incidence or slant range (%s): their series are corrected (the "
            "correction does not depend on the geometry) but their DEM error is NoData"
            % (t["no_geometry"], src.describe())
        )


__all__ = [
    "Baselines",
    "DEFAULT_POLY_DEGREE",
    "SENTINEL1_INCIDENCE_DEG",
    "SENTINEL1_SLANT_RANGE_M",
    "baselines_from_records",
    "correct_dem_error",
    "deformation_design",
    "dem_error_block",
    "epoch_baselines",
    "mintpy_years",
    "pair_baselines_to_dates",
    "read_baselines",
    "topographic_coefficients",
]
