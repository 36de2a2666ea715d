"""The interferogram network of an SBAS inversion: dates, pairs, design matrices, components, selection."""

import os

import numpy as np

from ..io.dates import format_date
from ..io.errors import TimeSeriesError

#: weight of the NSBAS linear-trend rows (LiCSBAS ``gamma``)
DEFAULT_NSBAS_GAMMA = 1e-4


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
                raise TimeSeriesError(
                    "duplicate pair %s_%s: %s and %s"
                    % (key[0].strftime("%Y%m%d"), key[1].strftime("%Y%m%d"), names[seen[key]], names[k])
                )
            seen[key] = k
        self.dates = sorted(set(date1) | set(date2))
        if len(self.dates) < 3:
            raise TimeSeriesError(
                "an SBAS inversion needs at least 3 acquisition dates, the network has %d (%s)"
                % (len(self.dates), ", ".join(format_date(d) for d in self.dates))
            )
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

        A date's label is the smallest date index of its component (:meth:`_components_graph`).
        """
        if valid is None:
            if "components" not in self._cache:
                self._cache["components"] = self.components(np.ones((self.n_ifg, 1), dtype=bool))
            return self._cache["components"].copy()
        return self._components_graph(valid)

    #: validity patterns per graph in :meth:`_components_graph` (a few MB of edges each)
    GRAPH_PATTERNS = 2048

    def _components_graph(self, valid):
        """:meth:`components` of many patterns: one sparse graph per batch of patterns, whose nodes are the (pattern,
        date) pairs (no edge between patterns), and SciPy's connected components; a component's label is its
        smallest node, i.e. its smallest date. (Iterated min-label propagation along the pairs took a numpy pass
        per pair and iteration: 0.4 s for 4 608 patterns of a 605-pair network.)"""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        N, u = self.n_dates, valid.shape[1]
        lab = np.empty((N, u), dtype=np.int32)
        for j0 in range(0, u, self.GRAPH_PATTERNS):
            v = valid[:, j0 : j0 + self.GRAPH_PATTERNS]
            nu = v.shape[1]
            k, j = np.nonzero(v)
            base = j.astype(np.int64) * N
            g = coo_matrix(
                (np.ones(k.size, dtype=np.int8), (base + self.i1[k], base + self.i2[k])), shape=(N * nu, N * nu)
            )
            _, comp = connected_components(g, directed=False)
            _, first = np.unique(comp, return_index=True)  # each component's smallest node
            lab[:, j0 : j0 + nu] = (first[comp] % N).reshape(nu, N).T
        return lab

    def n_gaps(self, valid=None):
        lab = self.components(valid)
        return (lab == np.arange(self.n_dates)[:, None]).sum(axis=0) - 1

    def nsbas_design(self, gamma=DEFAULT_NSBAS_GAMMA):
        """Augmented NSBAS design (LiCSBAS ``invert_nsbas``): unknowns [v (N-1), vel, c].

        Extra rows ``gamma * (T v - vel t_n - c) = 0`` for every date n = 0..N-1, the first date included
        (its row is ``-gamma c = 0``: the linear model passes through the first date's 0 unless the data
        say otherwise), t in years = days / 365.25, as LiCSBAS ``invert_nsbas``.
        """
        nu = self.n_dates - 1
        top = np.hstack([self.B, np.zeros((self.n_ifg, 2))])
        cum = np.vstack([np.zeros((1, nu)), self.T])
        bottom = np.hstack([gamma * cum, -gamma * self.tyears[:, None], -gamma * np.ones((self.n_dates, 1))])
        return np.vstack([top, bottom])


def largest_part(labels):
    """The largest connected part of the dates per pattern: ``labels`` (N, U) component labels (a date's
    label is the first date of its part) -> (keep (N, U) bool, first (U,) index of the part's first date).
    Ties go to the earliest part."""
    labels = np.asarray(labels)
    N = labels.shape[0]
    sizes = (labels[None, :, :] == np.arange(N)[:, None, None]).sum(axis=1)  # (label, U)
    first = np.argmax(sizes, axis=0)
    return labels == first[None, :], first


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
        elif (
            max_perp_baseline
            and network.bperp is not None
            and np.isfinite(network.bperp[k])
            and abs(network.bperp[k]) > max_perp_baseline
        ):
            used[k] = False
            reasons[k] = "perpendicular baseline %.1f m > %.1f m" % (abs(network.bperp[k]), max_perp_baseline)
    return used, reasons


def subnetwork(network, used):
    """A new :class:`SbasNetwork` of the used pairs (dates re-derived)."""
    idx = np.flatnonzero(used)
    d1 = [network.dates[network.i1[k]] if network.sign[k] > 0 else network.dates[network.i2[k]] for k in idx]
    d2 = [network.dates[network.i2[k]] if network.sign[k] > 0 else network.dates[network.i1[k]] for k in idx]
    bp = None if network.bperp is None else network.bperp[idx]
    return SbasNetwork(d1, d2, [network.names[k] for k in idx], bp)


def first_index_components(n, edges):
    """Connected components of ``n`` nodes joined by ``edges`` (pairs of node indices): per node, the smallest
    node index of its component (a small union-find; e.g. dates joined by pairs, frames joined by overlaps)."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)], dtype=np.intp)
