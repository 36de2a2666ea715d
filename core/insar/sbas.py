"""SBAS inversion of an interferogram stack into a displacement time series.

Small BAseline Subset method of Berardino et al. (2002, IEEE TGRS 40(11)), as
used in seed 000 sec. 2.3.1 and seed 002 sec. 2.2.1:

* unknowns are the mean velocities ``v_j`` between consecutive acquisition
  dates ``t_j, t_j+1`` (Berardino 2002, eq. 6-7); an interferogram between
  dates ``i < k`` observes ``sum_{j=i}^{k-1} v_j (t_j+1 - t_j)``, i.e. one row
  of the design matrix ``B`` (eq. 9, ``B v = dphi``);
* the minimum-norm least-squares solution ``v = B^+ dphi`` (SVD, eq. 10-11)
  bridges a disconnected network with the smallest velocities (zero velocity
  across an unobserved interval, as MintPy's default ``minNormVelocity``);
* the displacement time series is the cumulative sum
  ``phi(t_n) = sum_{j<n} v_j (t_j+1 - t_j)`` with ``phi(t_0) = 0``.

Alternatives for pixels whose network has gaps (``GAP_*``): the NSBAS weak
linear-trend constraint of Lopez-Quiroz et al. (2009) / Doin et al. (2011) as
in LiCSBAS (rows ``gamma (C v - vel t - c) = 0``), or NaN for the dates that
are not connected to the first date. The number of gaps (connected date
components - 1) is always reported per pixel.

Weights (optional) from coherence: ``w = gamma`` or ``w = 1 / sigma_phi^2``
where ``sigma_phi^2`` is the variance of the multilooked interferometric phase
PDF of Tough et al. (1995, Proc. R. Soc. A 449, eq. 3-4; Lee et al. 1994) for
coherence ``gamma`` and ``L`` looks, falling back to the Cramer-Rao bound
``(1 - gamma^2) / (2 L gamma^2)`` (Rodriguez & Martin 1992, eq. 68) where the
PDF integral is not finite.

Temporal coherence (Pepe & Lanari 2006, eq. 17):
``|sum_k exp(j e_k)| / M_used`` of the unweighted residuals ``e`` (radians).

Speed (no per-pixel Python loop):

* unweighted: one SVD of the design; every pixel is solved by ONE matrix
  product ``ts = K y`` with ``K = T B^+``. Missing observations of a pixel are
  first replaced by the values the least-squares fit of its valid
  observations predicts for them (the fixed point of the EM / Woodbury
  identity ``(I - H_SS) c = (H y_0)_S``, ``H = B B^+``), computed once per
  distinct validity pattern (``np.unique`` on packed bits) in batched small
  solves, which gives exactly the least-squares solution of the valid rows;
* weighted: per-pixel normal equations in the equivalent phase-per-date form
  (a weighted graph Laplacian), assembled for all pixels at once and solved by
  a vectorized banded Cholesky across pixels (dense batched LU when the
  network bandwidth is large);
* pixels whose own network is more disconnected than the whole network (and
  every weighted pixel with a gap) go through a batched SVD pseudo-inverse.
"""

import csv
import math
import os
import re

import numpy as np

from ..io.dates import format_date, parse_date
from ..io.errors import TimeSeriesError

#: Sentinel-1 C-band radar wavelength (m)
SENTINEL1_WAVELENGTH_M = 0.05546576

GAP_MIN_NORM = "min_norm"
GAP_NSBAS = "nsbas"
GAP_MASK = "mask"
GAP_MODES = (GAP_MIN_NORM, GAP_NSBAS, GAP_MASK)

WEIGHT_NONE = "none"
WEIGHT_COHERENCE = "coherence"
WEIGHT_VARIANCE = "variance"
WEIGHTINGS = (WEIGHT_NONE, WEIGHT_COHERENCE, WEIGHT_VARIANCE)

#: Default number of independent looks for the phase-variance weights when the
#: product's metadata do not say (LiCSAR / HyP3 multilook 20x4 = 80 looks; the
#: effective number of independent looks is ~1/2 to 1/4 of that).
DEFAULT_LOOKS = 20
DEFAULT_NSBAS_GAMMA = 1e-4
DEFAULT_RCOND = 1e-5
MIN_WEIGHT_COHERENCE = 0.05

UNITS_RADIANS = "radians"
UNITS_METRES = "m"
UNITS_MM = "mm"
INPUT_UNITS = (UNITS_RADIANS, UNITS_METRES, UNITS_MM)

QUALITY_BANDS = ("temporal_coherence", "n_ifg_used", "residual_rms_mm", "velocity_std_mm_yr", "n_gaps")


# --------------------------------------------------------------------------- pairs
_PAIR_RE = re.compile(r"(?<!\d)(\d{8})(?:T(\d{6}))?(?!\d)")


def pair_from_name(name):
    """The (reference, secondary) dates of an interferogram file name, or None.

    The first two 8-digit ``YYYYMMDD`` groups (optionally followed by
    ``Thhmmss``) that are valid dates: LiCSAR ``20200103_20200115.geo.unw.tif``,
    HyP3 ``S1AA_20200103T054123_20200115T054122_VVP012_INT80_G_ueF_1A2B_unw_phase.tif``.
    """
    base = os.path.basename(str(name))
    found = []
    for m in _PAIR_RE.finditer(base):
        d = parse_date(m.group(1))
        if d is not None:
            found.append(d)
        if len(found) == 2:
            return found[0], found[1]
    return None


def pairs_from_names(names):
    """Date pairs of every file name; the error lists every name without two dates."""
    out, bad = [], []
    for n in names:
        p = pair_from_name(n)
        if p is None:
            bad.append(os.path.basename(str(n)))
        out.append(p)
    if bad:
        raise TimeSeriesError(
            "no reference and secondary date (two YYYYMMDD groups) in the file name of: %s; "
            "rename the files or give a pairs CSV" % ", ".join(bad))
    return out


_FILE_COLS = ("file", "filename", "file_name", "path", "name", "interferogram", "ifg")
_REF_COLS = ("reference", "reference_date", "ref", "ref_date", "date1", "primary", "master", "date_ref")
_SEC_COLS = ("secondary", "secondary_date", "sec", "sec_date", "date2", "slave", "date_sec")
_BPERP_COLS = ("bperp", "perp_baseline", "perpendicular_baseline", "b_perp", "baseline", "perp")


def read_pairs_csv(path):
    """Read a pairs CSV: file name or path, reference date, secondary date, optional Bperp (m).

    Columns are found by header name (``file``, ``reference``/``date1``,
    ``secondary``/``date2``, ``bperp``) or, without a recognised header, by
    position. Returns a list of dicts ``{file, date1, date2, bperp}``.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(f, dialect) if any(c.strip() for c in r)]
    if not rows:
        raise TimeSeriesError("pairs CSV %s is empty" % path)
    head = [c.strip().lower() for c in rows[0]]

    def find(names):
        for i, h in enumerate(head):
            if h in names:
                return i
        return None

    fi, ri, si, bi = find(_FILE_COLS), find(_REF_COLS), find(_SEC_COLS), find(_BPERP_COLS)
    if fi is not None and ri is not None and si is not None:
        body = rows[1:]
    else:
        fi, ri, si = 0, 1, 2
        bi = 3 if len(rows[0]) > 3 else None
        body = rows[1:] if parse_date(rows[0][1].strip() if len(rows[0]) > 1 else "") is None else rows
    out = []
    for n, r in enumerate(body, start=2 if body is not rows else 1):
        if len(r) <= max(fi, ri, si):
            raise TimeSeriesError("pairs CSV %s line %d: expected file, reference date, secondary date" % (path, n))
        d1, d2 = parse_date(r[ri].strip()), parse_date(r[si].strip())
        if d1 is None or d2 is None:
            raise TimeSeriesError("pairs CSV %s line %d: %r / %r are not dates (YYYY-MM-DD or YYYYMMDD)"
                                  % (path, n, r[ri], r[si]))
        bp = None
        if bi is not None and bi < len(r) and r[bi].strip():
            try:
                bp = float(r[bi])
            except ValueError:
                raise TimeSeriesError("pairs CSV %s line %d: perpendicular baseline %r is not a number"
                                      % (path, n, r[bi])) from None
        out.append({"file": r[fi].strip(), "date1": d1, "date2": d2, "bperp": bp})
    return out


def match_pairs_csv(files, table, source="PAIRS"):
    """Look up each interferogram file in a pairs table (by path, base name or stem)."""
    def keys(p):
        b = os.path.basename(str(p))
        return {str(p), b, b.split(".")[0], os.path.splitext(b)[0]}
    index = {}
    for row in table:
        for k in keys(row["file"]):
            index.setdefault(k, row)
    out, missing = [], []
    for f in files:
        row = next((index[k] for k in (str(f), os.path.basename(str(f)), os.path.splitext(os.path.basename(str(f)))[0],
                                        os.path.basename(str(f)).split(".")[0]) if k in index), None)
        if row is None:
            missing.append(os.path.basename(str(f)))
        out.append(row)
    if missing:
        raise TimeSeriesError("%s has no row for: %s" % (source, ", ".join(missing)))
    return out


# --------------------------------------------------------------------------- network
class SbasNetwork:
    """Dates, pairs and design matrices of an interferogram network.

    ``date1``/``date2`` are the reference/secondary date of every pair (any
    order; a pair given as later/earlier enters with sign -1). Raises
    :class:`TimeSeriesError` for a pair with equal dates, duplicate pairs or
    fewer than 3 dates (``names`` label the messages).
    """

    def __init__(self, date1, date2, names=None, bperp=None):
        m = len(date1)
        names = list(names) if names is not None else ["pair %d" % (k + 1) for k in range(m)]
        self.names = names
        seen = {}
        for k, (a, b) in enumerate(zip(date1, date2)):
            if a == b:
                raise TimeSeriesError("%s: reference date equals secondary date (%s)" % (names[k], format_date(a)))
            key = (min(a, b), max(a, b))
            if key in seen:
                raise TimeSeriesError("duplicate pair %s_%s: %s and %s"
                                      % (key[0].strftime("%Y%m%d"), key[1].strftime("%Y%m%d"), names[seen[key]], names[k]))
            seen[key] = k
        self.dates = sorted(set(date1) | set(date2))
        if len(self.dates) < 3:
            raise TimeSeriesError("an SBAS inversion needs at least 3 acquisition dates, the network has %d (%s)"
                                  % (len(self.dates), ", ".join(format_date(d) for d in self.dates)))
        pos = {d: i for i, d in enumerate(self.dates)}
        a = np.array([pos[d] for d in date1])
        b = np.array([pos[d] for d in date2])
        self.i1 = np.minimum(a, b)
        self.i2 = np.maximum(a, b)
        self.sign = np.where(b > a, 1.0, -1.0)
        self.bperp = None if bperp is None else np.asarray(bperp, dtype=np.float64)
        self.n_dates = len(self.dates)
        self.n_ifg = m
        self.tdays = np.array([(d - self.dates[0]).days for d in self.dates], dtype=np.float64)
        self.tyears = self.tdays / 365.25
        self.dt = np.diff(self.tyears)
        nu = self.n_dates - 1
        # Berardino 2002 eq. 9: B[k, j] = t_{j+1} - t_j for intervals spanned by pair k
        cols = np.arange(nu)
        span = (cols[None, :] >= self.i1[:, None]) & (cols[None, :] < self.i2[:, None])
        self.B = np.where(span, self.dt[None, :], 0.0)
        # A-form (phase per date, date 0 dropped): -1 at i1, +1 at i2
        A = np.zeros((m, self.n_dates))
        A[np.arange(m), self.i1] = -1.0
        A[np.arange(m), self.i2] = 1.0
        self.A = A
        # cumulative operator: ts[1:] = T v
        self.T = np.tril(np.ones((nu, nu))) * self.dt[None, :]
        self.bandwidth = int(np.max(self.i2 - self.i1))
        self._cache = {}

    @property
    def temporal_baselines(self):
        return self.tdays[self.i2] - self.tdays[self.i1]

    def components(self, valid=None):
        """Connected-component labels of the dates, ``(N, U)`` for validity patterns ``valid`` ``(M, U)``.

        A date's label is the smallest date index of its component (iterated
        min-label propagation along the pairs, vectorized over patterns).
        """
        if valid is None:
            if "components" not in self._cache:
                self._cache["components"] = self.components(np.ones((self.n_ifg, 1), dtype=bool))
            return self._cache["components"].copy()
        u = valid.shape[1]
        i1, i2 = self.i1, self.i2
        if u <= 64:
            # few patterns: scipy's graph components, one small sparse graph per pattern
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            lab = np.empty((self.n_dates, u), dtype=np.int32)
            for j in range(u):
                v = valid[:, j]
                g = coo_matrix((np.ones(int(v.sum())), (i1[v], i2[v])), shape=(self.n_dates, self.n_dates))
                _, comp = connected_components(g, directed=False)
                first = np.full(comp.max() + 1, self.n_dates, dtype=np.int32)
                np.minimum.at(first, comp, np.arange(self.n_dates, dtype=np.int32))
                lab[:, j] = first[comp]
            return lab
        lab = np.repeat(np.arange(self.n_dates, dtype=np.int32)[:, None], u, axis=1)
        for _ in range(self.n_dates + 1):
            before = lab.copy()
            for k in range(self.n_ifg):
                la, lb = lab[i1[k]], lab[i2[k]]
                mn = np.minimum(la, lb)
                v = valid[k]
                np.copyto(la, mn, where=v)
                np.copyto(lb, mn, where=v)
            if np.array_equal(before, lab):
                break
        return lab

    def n_gaps(self, valid=None):
        lab = self.components(valid)
        return (lab == np.arange(self.n_dates)[:, None]).sum(axis=0) - 1

    def nsbas_design(self, gamma=DEFAULT_NSBAS_GAMMA):
        """Augmented NSBAS design (LiCSBAS ``invert_nsbas``): unknowns [v (N-1), vel, c].

        Extra rows ``gamma * (T v - vel t_n - c) = 0`` for n = 1..N-1.
        """
        nu = self.n_dates - 1
        top = np.hstack([self.B, np.zeros((self.n_ifg, 2))])
        bottom = np.hstack([gamma * self.T, -gamma * self.tyears[1:, None], -gamma * np.ones((nu, 1))])
        return np.vstack([top, bottom])


def select_pairs(network, max_temporal_baseline=None, max_perp_baseline=None, exclude=()):
    """Network selection. Returns (used bool (M,), reasons list of str ('' = used)).

    ``exclude`` holds file names (with or without path/extension) or pair
    labels ``YYYYMMDD_YYYYMMDD``.
    """
    excl = set()
    for e in exclude or ():
        e = str(e).strip()
        if e:
            excl.add(os.path.basename(e))
            excl.add(os.path.basename(e).split(".")[0])
    tb = network.temporal_baselines
    used = np.ones(network.n_ifg, dtype=bool)
    reasons = [""] * network.n_ifg
    for k, name in enumerate(network.names):
        d1, d2 = network.dates[network.i1[k]], network.dates[network.i2[k]]
        label = "%s_%s" % (d1.strftime("%Y%m%d"), d2.strftime("%Y%m%d"))
        base = os.path.basename(str(name))
        if base in excl or base.split(".")[0] in excl or label in excl:
            used[k], reasons[k] = False, "excluded"
        elif max_temporal_baseline and tb[k] > max_temporal_baseline:
            used[k], reasons[k] = False, "temporal baseline %.0f d > %.0f d" % (tb[k], max_temporal_baseline)
        elif max_perp_baseline and network.bperp is not None and np.isfinite(network.bperp[k]) \
                and abs(network.bperp[k]) > max_perp_baseline:
            used[k], reasons[k] = False, "perpendicular baseline %.1f m > %.1f m" % (abs(network.bperp[k]), max_perp_baseline)
    return used, reasons


def subnetwork(network, used):
    """A new :class:`SbasNetwork` of the used pairs (dates re-derived)."""
    idx = np.flatnonzero(used)
    d1 = [network.dates[network.i1[k]] if network.sign[k] > 0 else network.dates[network.i2[k]] for k in idx]
    d2 = [network.dates[network.i2[k]] if network.sign[k] > 0 else network.dates[network.i1[k]] for k in idx]
    bp = None if network.bperp is None else network.bperp[idx]
    return SbasNetwork(d1, d2, [network.names[k] for k in idx], bp)


# --------------------------------------------------------------------------- weights
_TOUGH_CACHE = {}


def phase_variance_lut(looks, step=0.005):
    """Variance of the multilooked phase vs coherence (Tough et al. 1995 eq. 3-4 PDF).

    ``pdf(phi) = (1-g^2)^L / (2 pi) 2F1(L, 1; 1/2; b^2)
    + G(L+1/2) (1-g^2)^L b / (2 sqrt(pi) G(L) (1-b^2)^(L+1/2))``, ``b = g cos(phi)``,
    integrated numerically over (-pi, pi). Non-finite entries fall back to
    the Cramer-Rao bound. Returns (coherence grid, variance).
    """
    from scipy.special import gammaln, hyp2f1

    L = float(min(max(looks, 1), 80))
    key = (L, step)
    if key in _TOUGH_CACHE:
        return _TOUGH_CACHE[key]
    g = np.arange(0.0, 1.0 + step / 2, step)
    g = np.clip(g, 0.0, 0.999)
    phi = np.linspace(-np.pi, np.pi, 2001)
    gg, pp = np.meshgrid(g, phi, indexing="ij")
    beta = gg * np.cos(pp)
    with np.errstate(all="ignore"):
        a = (1 - gg ** 2) ** L
        t1 = a / (2 * np.pi) * hyp2f1(L, 1.0, 0.5, beta ** 2)
        t2 = a * beta * np.exp(gammaln(L + 0.5) - gammaln(L)) / (2 * np.sqrt(np.pi) * (1 - beta ** 2) ** (L + 0.5))
        pdf = t1 + t2
        var = np.trapz(pdf * pp ** 2, phi, axis=1) / np.trapz(pdf, phi, axis=1)
        crlb = (1 - g ** 2) / (2 * L * np.maximum(g, 1e-3) ** 2)
    bad = ~np.isfinite(var) | (var <= 0)
    var[bad] = np.minimum(crlb[bad], np.pi ** 2 / 3)
    _TOUGH_CACHE[key] = (g, var)
    return g, var


def coherence_weights(coherence, weighting, looks=DEFAULT_LOOKS):
    """Observation weights from coherence (NaN where coherence is NaN)."""
    coh = np.asarray(coherence, dtype=np.float64)
    if weighting == WEIGHT_COHERENCE:
        return np.clip(coh, MIN_WEIGHT_COHERENCE, 1.0)
    if weighting == WEIGHT_VARIANCE:
        try:
            L = float(looks) if looks is not None and float(looks) > 0 else DEFAULT_LOOKS
        except (TypeError, ValueError):
            L = DEFAULT_LOOKS
        g, var = phase_variance_lut(L)
        c = np.clip(coh, MIN_WEIGHT_COHERENCE, 0.999)
        return 1.0 / np.interp(c, g, var)
    raise ValueError("unknown weighting %r (use one of %s)" % (weighting, ", ".join(WEIGHTINGS)))


# --------------------------------------------------------------------------- engines
DET_CHUNK = 1024


def det_matmul(A, X, chunk=DET_CHUNK, out=None):
    """``A @ X`` computed on column chunks of exactly ``chunk`` columns (zero-padded).

    BLAS picks different kernels (with different summation order) for
    different matrix sizes, so a plain ``A @ X`` gives a pixel (column) a
    result that depends on how many other pixels share the call. Fixed-size
    chunks make every column's result independent of the block split
    (bit-for-bit identical results whatever the memory limit).
    ``out``: optional (rows of A, columns of X) array to write into.
    """
    A = np.asarray(A)
    X = np.asarray(X)
    n = X.shape[1]
    dt = np.result_type(A, X)
    if out is None:
        out = np.empty((A.shape[0], n), dtype=dt)
    if n == 0:
        return out
    full = n - n % chunk
    for c0 in range(0, full, chunk):
        np.matmul(A, X[:, c0:c0 + chunk], out=out[:, c0:c0 + chunk])
    if full < n:
        buf = np.zeros((X.shape[0], chunk), dtype=dt)
        buf[:, : n - full] = X[:, full:]
        out[:, full:] = (A @ buf)[:, : n - full]
    return out


def _work(workspace, name, shape, dtype):
    """An uninitialised work array: a fresh ``np.empty``, or a view of a buffer kept in the
    ``workspace`` dict and reused by the next call (a fresh multi-MB array per block costs a
    page fault per 4 kB page, which is more than the arithmetic done on it)."""
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    size = int(np.prod(shape))
    key = (name, np.dtype(dtype).str)
    buf = workspace.get(key)
    if buf is None or buf.size < size:
        buf = workspace[key] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def _unique_patterns(valid_cols):
    """Unique validity patterns of (M, P) bool columns -> (patterns (M, U) bool, inverse (P,))."""
    packed = np.packbits(valid_cols.T, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.hstack([packed, np.zeros((packed.shape[0], pad), np.uint8)])
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1])))[:, 0]
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return valid_cols[:, first], inv.reshape(-1)


def _engine(network, gap_handling, gamma, rcond):
    """SVD-based operators of the design used for the unweighted fast path (cached)."""
    full_gaps = int(network.n_gaps()[0])
    use_nsbas = gap_handling == GAP_NSBAS and full_gaps > 0
    key = ("engine", use_nsbas, gamma, rcond)
    if key in network._cache:
        return network._cache[key]
    m, nu = network.n_ifg, network.n_dates - 1
    if use_nsbas:
        D = network.nsbas_design(gamma)
        O = np.hstack([network.T, np.zeros((nu, 2))])
    else:
        D = network.B
        O = network.T
    U, s, Vt = np.linalg.svd(D, full_matrices=False)
    r = int(np.sum(s > rcond * s[0]))
    Ur, sr, Vr = U[:, :r], s[:r], Vt[:r].T
    pinv = (Vr / sr) @ Ur.T            # (nu', R)
    K = (O @ pinv)[:, :m]              # ts[1:] = K y  (extra rows have obs 0)
    Hm = Ur[:m] @ Ur[:m].T             # hat matrix of the data rows
    eng = {"K": K, "H": Hm, "U": np.ascontiguousarray(Ur[:m]), "rank": r, "full_gaps": full_gaps,
           "nsbas": use_nsbas}
    network._cache[key] = eng
    return eng


FALLBACK_CHUNK_BYTES = 16 * 2 ** 20   # working memory of one chunk of _fallback_solve
FALLBACK_BYTES_PER_ENTRY = 32        # float64 design copy, products and factors per design entry


def _fallback_solve(network, obs, valid, sqrtw, gap_handling, gamma, rcond, chunk=None):
    """Per-pixel minimum-norm (or NSBAS) least-squares solution, batched over pixels.

    obs (M, n), valid (M, n), sqrtw (M, n) or None -> ts[1:] (N-1, n).
    Rows of invalid observations are zeroed (a zero row does not change the
    min-norm least-squares solution). Minimum norm / mask: the pseudo-inverse of each
    pixel's design D (rank-deficient where the pixel's network is split) is taken through
    the eigen-decomposition of its normal matrix, D^+ y = V diag(1/lambda) V^T D^T y over
    the eigenvalues lambda > rcond^2 lambda_max (the singular values of D are
    sqrt(lambda): the same cut as ``pinv(D, rcond)``), plus one step of iterative
    refinement on the residual; a 59 x 59 ``eigh`` per pixel costs a fraction of the
    202 x 59 SVD. NSBAS keeps the SVD ``pinv``: its constraint rows are scaled by gamma
    and the normal matrix (condition number squared) would lose ~1e-8 relative.
    Pixels go in chunks of at most 512 whose per-pixel matrices take at most
    FALLBACK_CHUNK_BYTES (``chunk`` overrides).
    """
    m, nu = network.n_ifg, network.n_dates - 1
    D = network.nsbas_design(gamma) if gap_handling == GAP_NSBAS else network.B
    R, q = D.shape
    if chunk is None:
        chunk = int(max(1, min(512, FALLBACK_CHUNK_BYTES // (FALLBACK_BYTES_PER_ENTRY * R * q))))
    n = obs.shape[1]
    out = np.empty((nu, n))
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        w = valid[:, c0:c1].astype(np.float64)
        if sqrtw is not None:
            w = w * np.where(valid[:, c0:c1], sqrtw[:, c0:c1], 0.0)
        Dm = np.broadcast_to(D, (c1 - c0, R, q)).copy()
        Dm[:, :m, :] *= w.T[:, :, None]
        y = np.zeros((c1 - c0, R))
        y[:, :m] = (np.where(valid[:, c0:c1], obs[:, c0:c1], 0.0) * w).T
        if gap_handling == GAP_NSBAS:  # gamma-scaled rows: too ill-conditioned for normal equations
            x = np.einsum("nqr,nr->nq", np.linalg.pinv(Dm, rcond=rcond), y)
        else:
            lam, V = np.linalg.eigh(np.matmul(Dm.transpose(0, 2, 1), Dm))  # (n, q), (n, q, q)
            keep = lam > (rcond * rcond) * lam[:, -1:]
            inv = np.divide(1.0, lam, out=np.zeros_like(lam), where=keep)
            x = np.zeros((c1 - c0, q))
            r = y
            for _ in range(2):  # the solve and one step of iterative refinement on the residual
                g = np.einsum("nrq,nr->nq", Dm, r)                            # D^T r
                x += np.einsum("nqk,nk->nq", V, inv * np.einsum("nqk,nq->nk", V, g))
                r = y - np.einsum("nrq,nq->nr", Dm, x)
        out[:, c0:c1] = np.cumsum(x[:, :nu].T * network.dt[:, None], axis=0)  # T v (O = [T | 0])
    return out


def _band_cholesky_solve(Lb, rhs):
    """Solve SPD banded systems stored pixel-last, vectorized across pixels.

    ``Lb[i, k, p]`` = matrix entry (i, i-k) of pixel p for k = 0..bw (lower
    band); ``rhs`` (n, P). Banded Cholesky ``L = C C^T`` (C in the same band
    storage), forward and back substitution. Returns (x (n, P), ok (P,)),
    ok False where a pivot was not positive.
    """
    n, b1, P = Lb.shape
    bw = b1 - 1
    C = np.empty_like(Lb)
    ok = np.ones(P, dtype=bool)
    for j in range(n):
        d = Lb[j, 0].copy()
        for k in range(1, min(bw, j) + 1):
            d -= C[j, k] * C[j, k]
        bad = ~(d > 1e-300)
        if bad.any():
            ok &= ~bad
            d[bad] = 1.0
        cjj = np.sqrt(d)
        C[j, 0] = cjj
        for i in range(j + 1, min(n, j + bw + 1)):
            off = i - j
            s = Lb[i, off].copy()
            # sum over columns c < j inside both bands: C[i, i-c] * C[j, j-c]
            for c in range(max(0, i - bw), j):
                s -= C[i, i - c] * C[j, j - c]
            C[i, off] = s / cjj
    z = np.empty_like(rhs)
    for i in range(n):
        acc = rhs[i].copy()
        for c in range(max(0, i - bw), i):
            acc -= C[i, i - c] * z[c]
        z[i] = acc / C[i, 0]
    x = np.empty_like(rhs)
    for i in range(n - 1, -1, -1):
        acc = z[i].copy()
        for r in range(i + 1, min(n, i + bw + 1)):
            acc -= C[r, r - i] * x[r]
        x[i] = acc / C[i, 0]
    return x, ok


def _weighted_laplacian_solve(network, obs, valid, w, chunk=8192):
    """Weighted LSQ in phase-per-date form for connected pixels -> ts[1:] (N-1, n), ok (n,).

    The normal matrix ``A^T W A`` (A: -1/+1 incidence of the pairs) is the
    weighted graph Laplacian of the network; with date 0 removed it is SPD for
    a connected pixel network. It is banded (half bandwidth = the largest
    index distance of a pair), assembled in band storage for a chunk of
    pixels at once and solved by :func:`_band_cholesky_solve` (dense batched
    LU when the bandwidth exceeds 16).
    """
    m, N = network.n_ifg, network.n_dates
    n = obs.shape[1]
    i1, i2 = network.i1, network.i2
    absA = np.abs(network.A)
    out = np.empty((N - 1, n))
    okall = np.ones(n, dtype=bool)
    bw = network.bandwidth
    inner = i1 > 0                                   # pairs whose both dates are unknowns
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        p = c1 - c0
        W = np.where(valid[:, c0:c1], w[:, c0:c1], 0.0)
        rhs = det_matmul(network.A.T, W * np.where(valid[:, c0:c1], obs[:, c0:c1], 0.0))[1:]
        diag = det_matmul(absA.T, W)[1:]
        if bw <= 16:
            Lb = np.zeros((N - 1, bw + 1, p))
            Lb[:, 0] = diag
            Lb[i2[inner] - 1, (i2 - i1)[inner]] = -W[inner]
            x, ok = _band_cholesky_solve(Lb, rhs)
        else:
            Lap = np.zeros((p, N - 1, N - 1))
            Lap[:, np.arange(N - 1), np.arange(N - 1)] = diag.T
            Lap[:, i1[inner] - 1, i2[inner] - 1] = -W[inner].T
            Lap[:, i2[inner] - 1, i1[inner] - 1] = -W[inner].T
            try:
                x = np.linalg.solve(Lap, rhs.T[:, :, None])[:, :, 0].T
                ok = np.ones(p, dtype=bool)
            except np.linalg.LinAlgError:
                x = np.zeros_like(rhs)
                ok = np.zeros(p, dtype=bool)
        out[:, c0:c1] = x
        okall[c0:c1] = ok
    return out, okall


PIVOT_TOL = 1e-9
#: interferograms per chunk of the residual / temporal-coherence pass
RESID_CHUNK = 16


def _cholesky_pattern_last(Mat, tol=None, overwrite=False, workspace=None):
    """Cholesky factors of SPD matrices stored pattern-last, vectorized across patterns.

    Mat (s, s, U) -> (C (s, s, U), good (U,)): the factor is C's lower triangle (the
    strict upper triangle is not meaningful); good is False where a pivot fell below
    ``PIVOT_TOL`` (the matrix is singular: the pattern lost rank). Right-looking
    (outer-product) form: one rank-1 update of the trailing block per column.
    ``overwrite``: factor in place (C is Mat).
    """
    s, _, U = Mat.shape
    tol = PIVOT_TOL if tol is None else tol
    C = Mat if overwrite else Mat.copy()
    good = np.ones(U, dtype=bool)
    n1 = max(s - 1, 1)
    tmp = _work(workspace, "chol_tmp", (n1, n1, U), Mat.dtype)
    for j in range(s):
        d = C[j, j]
        ok = d > tol
        good &= ok
        cjj = np.sqrt(np.where(ok, d, 1.0))
        col = C[j:, j]
        np.divide(col, cjj, out=col)
        n = s - j - 1
        if n:
            c = col[1:]
            t = tmp[:n, :n]
            np.multiply(c[:, None, :], c[None, :, :], out=t)
            C[j + 1:, j + 1:] -= t
    return C, good


def _cholesky_solve_pixel_last(C, b):
    """Solve ``C C^T x = b`` for C (s, s, n), b (s, n) (column-oriented substitutions)."""
    s = C.shape[0]
    z = b.copy()
    for j in range(s):
        z[j] /= C[j, j]
        if j + 1 < s:
            z[j + 1:] -= C[j + 1:, j] * z[j]
    for i in range(s - 1, -1, -1):
        z[i] /= C[i, i]
        if i:
            z[:i] -= C[i, :i] * z[i]
    return z


def _impute_missing(H, Y, part, pat, inv, M, Ur=None, workspace=None):
    """Fill the missing observations of partial pixels with their own LSQ prediction (in place).

    For a validity pattern with missing rows S, ``(I - H_SS) c = (H y_0)_S``
    (EM fixed point / Woodbury identity; ``H`` = hat matrix of the design,
    ``y_0`` = observations with missing ones set to 0) makes ``K [y_valid; c]``
    the exact least-squares solution of the valid rows. ``I - H_SS`` is
    factorised once per distinct pattern (Cholesky vectorized across the
    patterns with the same number of missing rows), then solved per pixel.
    Returns a bool per pattern: True where solved, False where the pattern
    lost rank (a gap beyond the network's) or misses more than half the rows.
    """
    # float32 stacks: float32 factorisations (imputed values to ~1e-6 relative), looser rank tolerance
    fdt = np.float64 if Y.dtype == np.float64 else np.float32
    tol = PIVOT_TOL if fdt == np.float64 else 1e-5
    Hf = np.asarray(H, dtype=fdt)
    miss = ~pat
    s_count = miss.sum(axis=0)
    Yp = np.take(Y, part, axis=1)
    if Ur is not None:                                       # H y0 = U (U^T y0), U: (M, rank)
        Uf = Ur.astype(Y.dtype)
        pred = det_matmul(Uf, det_matmul(np.ascontiguousarray(Uf.T), Yp, chunk=256), chunk=256)
    else:
        pred = det_matmul(H.astype(Y.dtype), Yp, chunk=256)
    pat_ok = np.zeros(pat.shape[1], dtype=bool)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(pat.shape[1] + 1))
    for s in np.unique(s_count):
        if s > M // 2 or s == 0:
            continue
        us = np.flatnonzero(s_count == s)
        mt = miss.T if us.size == s_count.size else miss[:, us].T
        S = np.nonzero(np.ascontiguousarray(mt))[1].reshape(len(us), s)  # (u, s) missing rows
        ST = np.ascontiguousarray(S.T)
        u = len(us)
        idx = np.add((ST * M)[:, None, :], ST[None, :, :], out=_work(workspace, "hss_idx", (s, s, u), np.intp))
        Mat = Hf.ravel().take(idx, out=_work(workspace, "hss", (s, s, u), fdt))          # (s, s, u) = H_SS
        np.negative(Mat, out=Mat)
        Mat[np.arange(s), np.arange(s)] += 1                                          # I - H_SS
        C, good = _cholesky_pattern_last(Mat, tol, overwrite=True, workspace=workspace)
        if not good.any():
            continue
        ug = us[good]
        pat_ok[ug] = True
        if good.all():
            Cg, Sg = C, S
        else:
            Cg, Sg = C[:, :, good], S[good]
        unique_px = bool(np.all(starts[ug + 1] - starts[ug] == 1))
        counts = starts[ug + 1] - starts[ug]
        first = np.repeat(starts[ug], counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        sel = order[first + within]                                    # positions in `part`
        loc = np.repeat(np.arange(len(ug)), counts)
        step = max(256, int(2e7 // (s * s)))
        for c0 in range(0, sel.size, step):
            sl, lc = sel[c0:c0 + step], loc[c0:c0 + step]
            SpT = Sg[lc].T                                             # (s, n)
            rhs = pred[SpT, sl[None, :]].astype(fdt)
            Cp = Cg[:, :, c0:c0 + step] if unique_px else Cg[:, :, lc]
            c = _cholesky_solve_pixel_last(Cp, rhs)
            Y[SpT, part[sl][None, :]] = c
    return pat_ok


# --------------------------------------------------------------------------- block solver
def sbas_invert_block(obs_block, network, coherence_block=None, weighting=WEIGHT_NONE, looks=DEFAULT_LOOKS,
                      min_coherence=0.0, gap_handling=GAP_MIN_NORM, rad_per_unit=1.0,
                      nsbas_gamma=DEFAULT_NSBAS_GAMMA, rcond=DEFAULT_RCOND, dtype=np.float64, workspace=None,
                      ifg_stats=False):
    """Invert a block of interferograms into a displacement time series.

    Parameters
    ----------
    obs_block : (M, rows, cols) array, one interferogram per pair of
        ``network`` (same order), NaN = no data (an exact 0.0 is data). Units
        are kept (radians, mm...).
    network : :class:`SbasNetwork`.
    coherence_block : optional (M, rows, cols) coherence; observations with
        coherence < ``min_coherence`` (or NaN coherence when weighting) are dropped.
    weighting : ``none`` (classic SBAS), ``coherence`` or ``variance``.
    looks : number of looks for ``variance`` weights (None/invalid -> default).
    gap_handling : ``min_norm``, ``nsbas`` or ``mask``.
    rad_per_unit : radians per unit of ``obs_block`` (for temporal coherence).
    dtype : float type of the unweighted solve (float32 is ~2x faster;
        weighted normal equations are always float64).
    workspace : optional dict in which the (M, pixels) work arrays are kept and reused by the
        next call with it (consecutive blocks of one stack); results do not depend on it.
    ifg_stats : also return, per interferogram, the sum of squared residuals of the used
        observations (``ifg_sum_e2``, (M,), units of obs squared) and their number
        (``ifg_n``, (M,)) in ``quality`` (for the network table).

    Returns
    -------
    ts : (N, rows, cols) in ``dtype`` (float64 when weighted), first date 0,
        NaN where no solution.
    quality : dict of (rows, cols) arrays: ``temporal_coherence`` (Pepe &
        Lanari 2006), ``n_ifg_used``, ``residual_rms`` (units of obs, RMS of the
        residuals of the used interferograms), ``n_gaps`` (connected date
        components - 1; -1 for a pixel without data).
    """
    if gap_handling not in GAP_MODES:
        raise ValueError("unknown gap handling %r (use one of %s)" % (gap_handling, ", ".join(GAP_MODES)))
    if weighting not in WEIGHTINGS:
        raise ValueError("unknown weighting %r (use one of %s)" % (weighting, ", ".join(WEIGHTINGS)))
    obs_block = np.asarray(obs_block)
    M, rows, cols = obs_block.shape
    if M != network.n_ifg:
        raise ValueError("block has %d interferograms, network has %d" % (M, network.n_ifg))
    N, P = network.n_dates, rows * cols
    weighted = weighting != WEIGHT_NONE
    wdt = np.float64 if weighted else np.dtype(dtype).type
    y = obs_block.reshape(M, P)
    valid = np.isfinite(y, out=_work(workspace, "valid", (M, P), bool))
    coh = None
    if coherence_block is not None:
        coh = np.asarray(coherence_block).reshape(M, P)
        if min_coherence and min_coherence > 0:
            valid &= coh >= min_coherence
        if weighted:
            valid &= np.isfinite(coh)
    elif weighted:
        raise ValueError("weighting %r needs coherence" % weighting)
    Y = _work(workspace, "Y", (M, P), wdt)
    np.copyto(Y, y)
    miss = np.flatnonzero(np.logical_not(valid, out=_work(workspace, "invalid", (M, P), bool)))
    Y.reshape(-1)[miss] = 0  # (usually few: a sparse scatter beats a masked pass)
    if np.any(network.sign < 0):
        Y *= network.sign.astype(wdt)[:, None]

    full = valid.all(axis=0)
    has = valid.any(axis=0)
    part = np.flatnonzero(has & ~full)
    n_used = np.where(full, M, 0)
    if part.size:
        n_used[part] = valid[:, part].sum(axis=0)
    ts = np.full((N, P), np.nan, dtype=wdt)
    n_gaps = np.full(P, -1, dtype=np.int32)
    net_lab = network.components()[:, 0]
    net_gaps = int((net_lab == np.arange(N)).sum() - 1)
    n_gaps[full] = net_gaps
    pat = inv = None
    pat_gaps = None
    fallback = np.zeros(0, dtype=np.intp)
    if part.size:
        pat, inv = _unique_patterns(valid[:, part])

    def pattern_gaps(idx):
        lab = network.components(pat[:, idx])
        return (lab == np.arange(N)[:, None]).sum(axis=0) - 1, lab

    if not weighted:
        eng = _engine(network, gap_handling, nsbas_gamma, rcond)
        fallback = np.zeros(0, dtype=np.intp)
        if part.size:
            pat_ok = _impute_missing(eng["H"], Y, part, pat, inv, M, eng["U"], workspace=workspace)
            # patterns keeping the network's rank have the network's gaps; components only for the rest
            pat_gaps = np.full(pat.shape[1], net_gaps, dtype=np.int32)
            bad_pat = np.flatnonzero(~pat_ok)
            if bad_pat.size:
                pat_gaps[bad_pat] = pattern_gaps(bad_pat)[0]
            n_gaps[part] = pat_gaps[inv]
            fallback = part[~pat_ok[inv]]
        # the single matrix product for every pixel (full and imputed partial ones)
        det_matmul(eng["K"].astype(wdt), Y, out=ts[1:])
        ts[:, ~has] = np.nan
        if fallback.size:
            ts[1:, fallback] = _fallback_solve(network, y[:, fallback] * network.sign[:, None], valid[:, fallback],
                                               None, gap_handling, nsbas_gamma, rcond)
    else:
        w = coherence_weights(coh, weighting, looks)
        if part.size:
            pat_gaps = pattern_gaps(np.arange(pat.shape[1]))[0].astype(np.int32)
            n_gaps[part] = pat_gaps[inv]
        conn = has & (n_gaps == 0)
        ci = np.flatnonzero(conn)
        rest = np.flatnonzero(has & ~conn)
        if ci.size:
            x, ok = _weighted_laplacian_solve(network, Y[:, ci], valid[:, ci], w[:, ci])
            ts[1:, ci] = x
            rest = np.concatenate([rest, ci[~ok]])
        if rest.size:
            ts[1:, rest] = _fallback_solve(network, Y[:, rest], valid[:, rest], np.sqrt(w[:, rest]),
                                           gap_handling, nsbas_gamma, rcond)
    ts[0, has] = 0

    # residuals of the used observations (unweighted): e = y - A ts, then their RMS and the temporal
    # coherence |sum exp(i e)| / n (Pepe & Lanari 2006). Computed for RESID_CHUNK interferograms at a
    # time so that e, cos e and sin e stay in the CPU cache instead of streaming (M, P) arrays.
    tz = np.where(np.isnan(ts), wdt(0), ts)  # (ts is finite or NaN)
    # imputed observations have zero residual by construction; only pixels solved otherwise
    # (weighted / fallback) need their missing rows zeroed (and all partial ones for ifg_stats)
    fix = part if (weighted or ifg_stats) else fallback
    e2 = np.zeros(P)
    re_ = np.zeros(P)
    im_ = np.zeros(P)
    if ifg_stats:
        sum_e2 = np.empty(M)
        n_ifg = valid.sum(axis=1)
    ch = min(M, RESID_CHUNK)
    e = _work(workspace, "e", (ch, P), wdt)
    tmp = _work(workspace, "trig", (ch, P), wdt)
    rpu = wdt(rad_per_unit)
    for k0 in range(0, M, ch):
        k1 = min(M, k0 + ch)
        ek, tk = e[:k1 - k0], tmp[:k1 - k0]
        np.take(tz, network.i2[k0:k1], axis=0, out=ek)
        np.take(tz, network.i1[k0:k1], axis=0, out=tk)
        np.subtract(ek, tk, out=ek)
        np.subtract(Y[k0:k1], ek, out=ek)
        if fix.size:
            ep = ek[:, fix]
            ep[~valid[k0:k1, fix]] = 0
            ek[:, fix] = ep
        e2 += np.einsum("mp,mp->p", ek, ek)
        if ifg_stats:
            sum_e2[k0:k1] = np.einsum("mp,mp->m", ek, ek, dtype=np.float64)
        ek *= rpu
        re_ += np.cos(ek, out=tk).sum(axis=0)
        im_ += np.sin(ek, out=tk).sum(axis=0)
    nu_ = np.maximum(n_used, 1)
    rms = np.sqrt(e2 / nu_)
    re_ -= M - n_used  # e = 0 on missing rows -> cos 1
    tcoh = np.hypot(re_, im_) / nu_
    tcoh[~has] = np.nan
    rms[~has] = np.nan
    if gap_handling == GAP_MASK:
        gp = np.flatnonzero(n_gaps > 0)
        if gp.size:
            # dates not connected to the first date are undetermined: NaN
            if net_gaps > 0:
                ts[:, full] = np.where((net_lab == 0)[:, None], ts[:, full], np.nan)
            if part.size:
                pg = np.flatnonzero(pat_gaps > 0)
                if pg.size:
                    lab = network.components(pat[:, pg])
                    conn0 = np.ones((N, pat.shape[1]), dtype=bool)
                    conn0[:, pg] = lab == 0
                    ts[:, part] = np.where(conn0[:, inv], ts[:, part], np.nan)
    quality = {
        "temporal_coherence": tcoh.reshape(rows, cols),
        "n_ifg_used": n_used.reshape(rows, cols),
        "residual_rms": rms.reshape(rows, cols),
        "n_gaps": n_gaps.reshape(rows, cols),
    }
    if ifg_stats:
        quality["ifg_sum_e2"] = sum_e2
        quality["ifg_n"] = n_ifg
    return ts.reshape(N, rows, cols), quality


# --------------------------------------------------------------------------- velocity
def velocity_design(tyears, seasonal=False):
    """Columns [1, t, (cos 2pi t, sin 2pi t, cos 4pi t, sin 4pi t)] (t in years)."""
    t = np.asarray(tyears, dtype=np.float64)
    cols = [np.ones_like(t), t]
    if seasonal:
        for k in (1, 2):
            cols += [np.cos(2 * np.pi * k * t), np.sin(2 * np.pi * k * t)]
    return np.stack(cols, axis=1)


def velocity_fit(ts, tyears, seasonal=False):
    """Mean velocity by least squares on the time series, with its standard deviation.

    ``ts`` (N, rows, cols) (NaN = missing). ``d(t) = a + v t [+ annual + semi-annual]``;
    ``sigma_v^2 = s^2 (X^T X)^-1_vv`` with ``s^2 = sum r^2 / (n - p)``.
    Returns (velocity, std) in units of ts per year; NaN where fewer than
    p + 1 dates (std) or p dates (velocity).
    """
    ts = np.asarray(ts, dtype=np.float64)
    N = ts.shape[0]
    shape = ts.shape[1:]
    Y = ts.reshape(N, -1)
    X = velocity_design(tyears, seasonal)
    p = X.shape[1]
    ok = np.isfinite(Y)
    n = ok.sum(axis=0)
    vel = np.full(Y.shape[1], np.nan)
    std = np.full(Y.shape[1], np.nan)
    # pixels with every date (the usual case): one normal matrix for all of them
    full = np.flatnonzero(n == N)
    if full.size and N >= p:
        XtX = X.T @ X
        if np.linalg.cond(XtX) < 1e12:
            Ninv = np.linalg.inv(XtX)
            Yf = Y[:, full]
            coef = det_matmul(Ninv @ X.T, Yf)
            res = Yf - det_matmul(X, coef)
            vel[full] = coef[1]
            if N > p:
                std[full] = np.sqrt(np.einsum("np,np->p", res, res) / (N - p) * Ninv[1, 1])
    # pixels with missing dates: a normal matrix each (batched)
    rest = np.flatnonzero((n >= p) & (n < N))
    if rest.size:
        okr = ok[:, rest]
        Y0 = np.where(okr, Y[:, rest], 0.0)
        outer = (X[:, :, None] * X[:, None, :]).reshape(N, p * p)
        NM = det_matmul(outer.T, okr.astype(np.float64)).T.reshape(-1, p, p)
        rhs = det_matmul(X.T, Y0).T
        det_ok = np.linalg.cond(NM) < 1e12
        sel = np.flatnonzero(det_ok)
        if sel.size:
            idx = rest[sel]
            Ninv = np.linalg.inv(NM[sel])
            coef = np.einsum("nij,nj->ni", Ninv, rhs[sel])
            res = np.where(okr[:, sel], Y0[:, sel] - det_matmul(X, coef.T), 0.0)
            vel[idx] = coef[:, 1]
            dof = n[idx] - p
            s2 = np.where(dof > 0, (res ** 2).sum(axis=0) / np.maximum(dof, 1), np.nan)
            std[idx] = np.sqrt(s2 * Ninv[:, 1, 1])
    return vel.reshape(shape), std.reshape(shape)


# --------------------------------------------------------------------------- reference / units
def los_factor_mm(input_units, wavelength_m, flip_sign=False):
    """Multiplier from input units to LOS mm (positive toward the satellite)."""
    if input_units == UNITS_RADIANS:
        f = -wavelength_m / (4.0 * math.pi) * 1000.0
    elif input_units == UNITS_METRES:
        f = 1000.0
    elif input_units == UNITS_MM:
        f = 1.0
    else:
        raise ValueError("unknown input units %r (use one of %s)" % (input_units, ", ".join(INPUT_UNITS)))
    return -f if flip_sign else f


def radians_per_mm(wavelength_m):
    """Phase (rad) per mm of LOS displacement, for temporal coherence."""
    return 4.0 * math.pi / (wavelength_m * 1000.0)


def reference_values(window_values):
    """Per-interferogram reference value: the NaN-ignoring median of the window ``(M, k)``.

    Returns (values (M,), missing bool (M,)) where missing marks interferograms
    with no valid pixel in the window.
    """
    v = np.asarray(window_values, dtype=np.float64).reshape(window_values.shape[0], -1)
    missing = ~np.isfinite(v).any(axis=1)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(v, axis=1)
    return med, missing


def auto_reference(n_valid, n_ifg, score, higher_is_better=True):
    """Auto reference pixel: data in every interferogram and the best score.

    ``n_valid`` and ``score`` are (rows, cols). Returns (row, col) or None
    when no pixel has data in every interferogram.
    """
    cand = (np.asarray(n_valid) == n_ifg) & np.isfinite(score)
    if not cand.any():
        return None
    s = np.where(cand, score, -np.inf if higher_is_better else np.inf)
    k = int(np.argmax(s) if higher_is_better else np.argmin(s))
    return divmod(k, s.shape[1])
