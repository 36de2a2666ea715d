"""The prepared interferogram stack of an SBAS inversion: pairs, network selection, grid and coherence
checks (:func:`prepare_stack`), and the files read window by window (:class:`StackFiles`)."""
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..io.errors import TimeSeriesError
from ..io.rasters import RasterGrid, check_band_numeric, open_raster, read_window
from .network import SbasNetwork, select_pairs, subnetwork
from .pairs import match_pairs_csv, pair_from_name, pairs_from_names, read_pairs_csv


@dataclass(frozen=True, eq=False)
class PreparedStack:
    """What :func:`prepare_stack` checked: ``network_all`` (every pair, in input order), ``used`` (bool per
    pair), ``reasons`` (why a pair is not used, '' when used), ``network`` (the used pairs),
    ``ifg_paths`` (paths of the used pairs), ``coherence_paths`` (one per used pair, or None), ``grid``
    (:class:`RasterGrid` shared by every raster), ``all_paths`` (every input interferogram)."""
    network_all: SbasNetwork
    used: np.ndarray
    reasons: List[str]
    network: SbasNetwork
    ifg_paths: List[str]
    coherence_paths: Optional[List[str]]
    grid: RasterGrid
    all_paths: List[str]


def _pair_dates(paths, pairs_csv):
    """Reference dates, secondary dates and perpendicular baselines (or None) of every interferogram."""
    if pairs_csv:
        rows = match_pairs_csv(paths, read_pairs_csv(pairs_csv), "pairs CSV %s" % pairs_csv)
        bp = [np.nan if r["bperp"] is None else r["bperp"] for r in rows]
        bperp = np.array(bp, dtype=float) if any(np.isfinite(bp)) else None
        return [r["date1"] for r in rows], [r["date2"] for r in rows], bperp
    pairs = pairs_from_names(paths)
    return [p[0] for p in pairs], [p[1] for p in pairs], None


def _common_grid(paths):
    """The grid every interferogram is on (one numeric band each), or a TimeSeriesError naming the odd one."""
    grid = None
    for p in paths:
        ds = open_raster(p)
        check_band_numeric(ds, p)
        g = RasterGrid.of(ds)
        if grid is None:
            grid, first = g, p
        elif not g.same_as(grid):
            raise TimeSeriesError("%s is on a different grid (%s) than %s (%s); resample the interferograms "
                                  "to one grid" % (p, g.describe(), os.path.basename(first), grid.describe()))
        ds = None
    return grid


def match_coherence(coherence_paths, network, grid):
    """The coherence file of every pair of ``network`` (matched by the date pair in the file names), each
    checked to be on ``grid``."""
    cpaths = [str(p) for p in coherence_paths]
    cpairs = [pair_from_name(p) for p in cpaths]
    bad = [os.path.basename(p) for p, pp in zip(cpaths, cpairs) if pp is None]
    if bad:
        raise TimeSeriesError("coherence files without a date pair in the name: %s" % ", ".join(bad))
    index = {}
    for p, (a, b) in zip(cpaths, cpairs):
        k = (min(a, b), max(a, b))
        if k in index:
            raise TimeSeriesError("two coherence files for the pair %s_%s: %s and %s" % (
                k[0].strftime("%Y%m%d"), k[1].strftime("%Y%m%d"), os.path.basename(index[k]),
                os.path.basename(p)))
        index[k] = p
    coh, missing = [], []
    for k in range(network.n_ifg):
        key = (network.dates[network.i1[k]], network.dates[network.i2[k]])
        if key not in index:
            missing.append(network.names[k])
        coh.append(index.get(key))
    if missing:
        raise TimeSeriesError("the coherence list does not match the interferograms: no coherence file for %s"
                              % ", ".join(missing))
    for p in coh:
        ds = open_raster(p)
        g = RasterGrid.of(ds)
        if not g.same_as(grid):
            raise TimeSeriesError("coherence %s is on a different grid (%s) than the interferograms (%s)"
                                  % (p, g.describe(), grid.describe()))
        ds = None
    return coh


def prepare_stack(ifg_paths, pairs_csv=None, coherence_paths=None, max_temporal_baseline=None,
                  max_perp_baseline=None, exclude=()):
    """Parse pairs, build and select the network, open and check every raster -> :class:`PreparedStack`."""
    paths = [str(p) for p in ifg_paths]
    if not paths:
        raise TimeSeriesError("no interferograms given")
    d1, d2, bperp = _pair_dates(paths, pairs_csv)
    if max_perp_baseline and bperp is None:
        raise TimeSeriesError("a maximum perpendicular baseline needs baselines: give a pairs CSV with a bperp column")
    names = [os.path.basename(p) for p in paths]
    net_all = SbasNetwork(d1, d2, names, bperp)
    used, reasons = select_pairs(net_all, max_temporal_baseline, max_perp_baseline, exclude)
    if used.sum() == 0:
        raise TimeSeriesError("no interferogram left after the pair selection (%s)"
                              % "; ".join(sorted(set(reasons))))
    net = subnetwork(net_all, used)
    grid = _common_grid(paths)
    coh = match_coherence(coherence_paths, net, grid) if coherence_paths else None
    return PreparedStack(network_all=net_all, used=used, reasons=reasons, network=net,
                         ifg_paths=[paths[k] for k in np.flatnonzero(used)], coherence_paths=coh, grid=grid,
                         all_paths=paths)


class StackFiles:
    """Single-band rasters read as a stack of windows. Each file is opened, read and closed in turn: an
    open GeoTIFF keeps ~0.5 MB of decoder buffers once read, which for hundreds of inputs would be more
    than the memory cap. Holds only paths, so it pickles to a Dask worker."""

    def __init__(self, paths):
        self.paths = [str(p) for p in paths]

    def block_size(self):
        """(x, y) block size and the sample size in bytes of the first file's band 1."""
        from osgeo import gdal
        ds = open_raster(self.paths[0])
        b = ds.GetRasterBand(1)
        bs = b.GetBlockSize()
        return (int(bs[0]), int(bs[1])), max(1, gdal.GetDataTypeSize(b.DataType) // 8)

    def read_one(self, k, row0, nrows, col0=0, ncols=None):
        ds = open_raster(self.paths[k])
        try:
            return read_window(ds, col0, row0, ds.RasterXSize - col0 if ncols is None else ncols, nrows,
                               bands=[1], dtype=np.float32)[0]
        finally:
            ds = None

    def iter_window(self, row0, nrows, col0=0, ncols=None):
        """Yield ``(k, array)`` of every file's window, float32, NoData -> NaN."""
        for k in range(len(self.paths)):
            yield k, self.read_one(k, row0, nrows, col0, ncols)

    def read(self, row0, nrows, col0=0, ncols=None, out=None):
        """The window of every file as one ``(n_files, nrows, ncols)`` float32 array."""
        for k, a in self.iter_window(row0, nrows, col0, ncols):
            if out is None:
                out = np.empty((len(self.paths),) + a.shape, dtype=np.float32)
            out[k] = a
        return out
