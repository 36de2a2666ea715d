"""The prepared interferogram stack of an SBAS inversion: products opened on one grid, pairs, network
selection and coherence matching (:func:`prepare_stack`), and the files read window by window
(:class:`StackFiles`)."""

import math
import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..io.errors import TimeSeriesError
from ..io.rasters import RasterGrid, open_raster, read_window
from ..io.tasks import result_of, shielded, thread_pool
from . import products
from .network import SbasNetwork, select_pairs, subnetwork
from .pairs import match_pairs_csv, pair_from_name, pairs_from_names, read_pairs_csv


@dataclass(frozen=True, eq=False)
class PreparedStack:
    """What :func:`prepare_stack` checked: ``network_all`` (every pair, in input order), ``used`` (bool per
    pair), ``reasons`` (why a pair is not used, '' when used), ``network`` (the used pairs),
    ``ifg_paths`` (paths of the used pairs), ``coherence_paths`` (one per used pair, or None), ``grid``
    (:class:`RasterGrid` of the stack: the products' common area or union), ``all_paths`` (every input
    interferogram), ``rasters`` (path -> :class:`~.products.ProductRaster`: how each file is read on ``grid``
    with its product's conventions; a path without one is read as it is), ``products`` (the
    :class:`~.products.ProductStack`: format, baselines, geometry)."""

    network_all: SbasNetwork
    used: np.ndarray
    reasons: List[str]
    network: SbasNetwork
    ifg_paths: List[str]
    coherence_paths: Optional[List[str]]
    grid: RasterGrid
    all_paths: List[str]
    rasters: Optional[Dict[str, "products.ProductRaster"]] = None
    products: Optional["products.ProductStack"] = None

    def ifg_files(self):
        """The used interferograms as :class:`StackFiles`, read with their product's conventions on ``grid``
        (every step that reads the interferograms goes through this)."""
        return StackFiles(self.ifg_paths, self.rasters)

    def coherence_files(self):
        """The coherence of the used pairs as :class:`StackFiles` (0-1 on ``grid``), or None."""
        return (
            StackFiles(self.coherence_paths, self.rasters, valid_range=(0.0, 1.0), quantity="coherence")
            if self.coherence_paths
            else None
        )


def _pair_dates(paths, pairs_csv, product_bperp=None):
    """Reference dates, secondary dates and perpendicular baselines (or None) of every interferogram; the
    baselines of a pairs CSV's bperp column, else those the products ship (``product_bperp``)."""
    if pairs_csv:
        rows = match_pairs_csv(paths, read_pairs_csv(pairs_csv), "pairs CSV %s" % pairs_csv)
        bp = [np.nan if r["bperp"] is None else r["bperp"] for r in rows]
        bperp = np.array(bp, dtype=float) if any(np.isfinite(bp)) else product_bperp
        return [r["date1"] for r in rows], [r["date2"] for r in rows], bperp
    pairs = pairs_from_names(paths)
    return [p[0] for p in pairs], [p[1] for p in pairs], product_bperp


def match_coherence(coherence_paths, network, grid=None):
    """The coherence file of every pair of ``network`` (matched by the date pair in the file names), each
    checked to be on ``grid`` (None: the product layer placed them on the stack grid already)."""
    cpaths = [str(p) for p in coherence_paths]
    cpairs = [pair_from_name(p) for p in cpaths]
    bad = [os.path.basename(p) for p, pp in zip(cpaths, cpairs) if pp is None]
    if bad:
        raise TimeSeriesError("coherence files without a date pair in the name: %s" % ", ".join(bad))
    index = {}
    for p, (a, b) in zip(cpaths, cpairs):
        k = (min(a, b), max(a, b))
        if k in index:
            raise TimeSeriesError(
                "two coherence files for the pair %s_%s: %s and %s"
                % (k[0].strftime("%Y%m%d"), k[1].strftime("%Y%m%d"), os.path.basename(index[k]), os.path.basename(p))
            )
        index[k] = p
    coh, missing = [], []
    for k in range(network.n_ifg):
        key = (network.dates[network.i1[k]], network.dates[network.i2[k]])
        if key not in index:
            missing.append(network.names[k])
        coh.append(index.get(key))
    if missing:
        raise TimeSeriesError(
            "the coherence list does not match the interferograms: no coherence file for %s" % ", ".join(missing)
        )
    for p in coh if grid is not None else ():
        ds = open_raster(p)
        g = RasterGrid.of(ds)
        if not g.same_as(grid):
            raise TimeSeriesError(
                "coherence %s is on a different grid (%s) than the interferograms (%s)"
                % (p, g.describe(), grid.describe())
            )
        ds = None
    return coh


def prepare_stack(
    ifg_paths,
    pairs_csv=None,
    coherence_paths=None,
    max_temporal_baseline=None,
    max_perp_baseline=None,
    exclude=(),
    folder=None,
    product=products.PRODUCT_AUTO,
    extent=products.EXTENT_INTERSECTION,
    crs_mode=products.CRS_ERROR,
    log=None,
):
    """Open the products, parse pairs, build and select the network -> :class:`PreparedStack`.

    Interferograms and coherence are read through :mod:`.products` (LiCSAR / HyP3 conventions, per-product
    extents on one stack grid): ``ifg_paths`` (+ ``coherence_paths``) or a download ``folder`` (LiCSAR frame,
    HyP3 products); ``product``, ``extent``, ``crs_mode`` as in :func:`.products.open_stack`.
    """
    if not folder and not ifg_paths:
        raise TimeSeriesError("no interferograms given")
    ps = products.open_stack(
        ifg_paths, coherence_paths, folder, product=product, extent=extent, crs_mode=crs_mode, log=log, exclude=exclude
    )
    paths = ps.paths
    d1, d2, bperp = _pair_dates(paths, pairs_csv, ps.bperp)
    if max_perp_baseline and bperp is None:
        raise TimeSeriesError(
            "a maximum perpendicular baseline needs baselines: give LiCSAR products with their "
            "baselines file, HyP3 products with their .txt, or a pairs CSV with a bperp column"
        )
    if max_perp_baseline and not np.isfinite(bperp).all():
        miss = [os.path.basename(paths[k]) for k in np.flatnonzero(~np.isfinite(bperp))]
        raise TimeSeriesError(
            "no perpendicular baseline for %s%s; complete the baselines or set the maximum "
            "perpendicular baseline to 0" % (", ".join(miss[:5]), " ..." if len(miss) > 5 else "")
        )
    names = [os.path.basename(p) for p in paths]
    net_all = SbasNetwork(d1, d2, names, bperp)
    used, reasons = select_pairs(net_all, max_temporal_baseline, max_perp_baseline, exclude)
    if used.sum() == 0:
        raise TimeSeriesError("no interferogram left after the pair selection (%s)" % "; ".join(sorted(set(reasons))))
    net = subnetwork(net_all, used)
    coh = match_coherence([r.path for r in ps.coh], net) if ps.coh else None
    rasters = {r.path: r for r in ps.ifg + (ps.coh or [])}
    return PreparedStack(
        network_all=net_all,
        used=used,
        reasons=reasons,
        network=net,
        ifg_paths=[paths[k] for k in np.flatnonzero(used)],
        coherence_paths=coh,
        grid=ps.grid,
        all_paths=paths,
        rasters=rasters,
        products=ps,
    )


def check_value_range(values, valid_range, path, quantity, byte_raw=False):
    """Raise naming ``path`` when a finite value lies outside ``valid_range`` (values as read, after the
    product's scaling: 8-bit coherence / 255). ``byte_raw``: an unscaled 8-bit band, whose 0-255 is accepted.
    The extremes come from ``fmin``/``fmax`` reductions, which skip NaN, without copying the finite values out."""
    if not values.size:
        return
    lo, hi = float(np.fmin.reduce(values, axis=None)), float(np.fmax.reduce(values, axis=None))
    if np.isnan(lo):  # every value NaN
        return
    if np.isinf(lo) or np.isinf(hi):  # infinities are not checked: the extremes of the finite values
        finite = values[np.isfinite(values)]
        if not finite.size:
            return
        lo, hi = float(finite.min()), float(finite.max())
    if byte_raw and lo >= 0 and hi <= 255:
        return
    low, high = valid_range
    tol = 1e-6 * max(1.0, abs(high - low))
    if lo < low - tol or hi > high + tol:
        raise TimeSeriesError(
            "%s: %s values from %.4g to %.4g lie outside [%g, %g]; give %s rasters (0 = none, "
            "1 = perfect) or check the file" % (path, quantity, lo, hi, low, high, quantity)
        )


#: files ahead whose window :class:`StackFiles` asks the kernel to read while it decodes one (a few MB of page
#: cache per reading thread on a frame; decoding one file's window takes a few ms, reading it cold about as long)
PREFETCH_FILES = 8


class StackFiles:
    """Single-band rasters read as a stack of windows. Each file is opened, read and closed in turn: an
    open GeoTIFF keeps ~0.5 MB of decoder buffers once read, which for hundreds of inputs would be more
    than the memory cap. Holds only paths and :class:`~.products.ProductRaster` (``rasters``: path -> how to
    read it on the stack grid with its product's conventions), so it pickles to a Dask worker."""

    def __init__(self, paths, rasters=None, valid_range=None, quantity="value", forget=False, prefetch=PREFETCH_FILES):
        self.paths = [str(p) for p in paths]
        self.rasters = [(rasters or {}).get(p) for p in self.paths]
        self.valid_range = valid_range  # (low, high) of the values as read: outside fails naming the file
        self.quantity = quantity
        # the blocks read leave the page cache (read once in this run: the scan keeps its own copy)
        self.forget = bool(forget)
        # reading file k of a window asks the kernel for the window of file k + prefetch (see _prefetch)
        self.prefetch = max(0, int(prefetch))

    def forgetting(self):
        """The same reader, telling the kernel after each window that the file blocks it read will not be read
        again (:func:`~..io.rasters.forget_read_blocks`): for a pass whose reads are the run's last of these
        files, when they and what the run keeps would not fit in the page cache together."""
        files = self.subset(range(len(self.paths)))
        files.forget = True
        return files

    def block_size(self):
        """(x, y) block size and the sample size in bytes of the first file's band 1."""
        from osgeo import gdal

        if self.rasters[0] is not None:
            return self.rasters[0].block_size, self.rasters[0].sample_bytes
        ds = open_raster(self.paths[0])
        b = ds.GetRasterBand(1)
        bs = b.GetBlockSize()
        return (int(bs[0]), int(bs[1])), max(1, gdal.GetDataTypeSize(b.DataType) // 8)

    def read_one(self, k, row0, nrows, col0=0, ncols=None):
        if self.rasters[k] is not None:
            ncols = self.rasters[k].stack_shape[1] - col0 if ncols is None else ncols
            return self.read_into(k, row0, nrows, col0, ncols, np.empty((nrows, ncols), dtype=np.float32))
        else:
            ds = open_raster(self.paths[k])
            try:
                a = read_window(
                    ds,
                    col0,
                    row0,
                    ds.RasterXSize - col0 if ncols is None else ncols,
                    nrows,
                    bands=[1],
                    dtype=np.float32,
                )[0]
                byte_raw = ds.GetRasterBand(1).DataType == 1  # GDT_Byte, not scaled on this path
            finally:
                ds = None
        if self.valid_range is not None:
            check_value_range(a, self.valid_range, self.paths[k], self.quantity, byte_raw)
        return a

    def read_into(self, k, row0, nrows, col0, ncols, out):
        """The window of file ``k`` (the values of :meth:`read_one`) into ``out`` (float32 (nrows, ncols), e.g. one
        file's plane of a window buffer): a product raster is decoded straight into it
        (:meth:`~.products.ProductRaster.read_into`), a plain file through a copy. Returns ``out``."""
        if self.rasters[k] is None:
            out[...] = self.read_one(k, row0, nrows, col0, ncols)
            return out
        self._prefetch(k, row0, nrows, col0, ncols)
        self.rasters[k].read_into(row0, nrows, col0, ncols, out, self.forget)  # 8-bit coherence already / 255
        if self.valid_range is not None:
            check_value_range(out, self.valid_range, self.paths[k], self.quantity)
        return out

    def _prefetch(self, k, row0, nrows, col0, ncols):
        """Files are read window by window, file after file: while file ``k`` is read, the disk reads the window of
        file ``k + prefetch`` in the background (``posix_fadvise(WILLNEED)``; the first file of a window asks for
        the next ``prefetch``). On files in the page cache it costs a system call per file; on files that are not,
        the decoding threads stop waiting for the disk (measured on the frame benchmark: see BENCHMARKS.md)."""
        d, n = self.prefetch, len(self.paths)
        if not d:
            return
        for j in range(k + 1, min(n, k + d + 1)) if k == 0 else (k + d,) if k + d < n else ():
            r = self.rasters[j]
            if r is not None:
                r.prefetch(row0, nrows, col0, ncols)

    def valid_at(self, k, points):
        """Bool per (row, col) of ``points``: file ``k`` has data there (the file opened once)."""
        if self.rasters[k] is not None:
            return self.rasters[k].valid_at(points)
        ds = open_raster(self.paths[k])
        try:
            return np.array(
                [
                    bool(np.isfinite(read_window(ds, c, r, 1, 1, bands=[1], dtype=np.float32)[0, 0, 0]))
                    for r, c in points
                ],
                dtype=bool,
            )
        finally:
            ds = None

    def iter_window(self, row0, nrows, col0=0, ncols=None):
        """Yield ``(k, array)`` of every file's window, float32, NoData -> NaN."""
        for k in range(len(self.paths)):
            yield k, self.read_one(k, row0, nrows, col0, ncols)

    def read(self, row0, nrows, col0=0, ncols=None, out=None):
        """The window of every file as one ``(n_files, nrows, ncols)`` float32 array (read in place)."""
        for k in range(len(self.paths)):
            if out is None:
                a = self.read_one(k, row0, nrows, col0, ncols)
                out = np.empty((len(self.paths),) + a.shape, dtype=np.float32)
                out[k] = a
                del a
            else:
                self.read_into(k, row0, nrows, col0, out.shape[2], out[k])
        return out

    def subset(self, idx):
        """The reader of files ``idx`` (indices), with the same conventions."""
        return StackFiles(
            [self.paths[k] for k in idx],
            {p: r for p, r in zip(self.paths, self.rasters) if r is not None},
            self.valid_range,
            self.quantity,
            self.forget,
            self.prefetch,
        )


def read_files_into(files, out, row0, nrows, col0, ncols, threads=1):
    """Read the window of every file of ``files`` (a :class:`StackFiles` or :class:`ScratchFiles`) into ``out[k]``
    ((n_files, nrows, ncols) float32), with ``threads`` threads at once (each file opened by the thread that reads
    it; GDAL decodes without the GIL). The values are those of ``files.read_one``."""

    def one(k):
        if hasattr(files, "read_into"):
            files.read_into(k, row0, nrows, col0, ncols, out[k])
        else:
            out[k] = files.read_one(k, row0, nrows, col0, ncols)

    n = len(files.paths)
    if threads <= 1 or n <= 1:
        for k in range(n):
            one(k)
        return out
    with thread_pool(threads, "subsidence-read") as pool:
        for _ in pool.map(one, range(n)):  # raises the first error (e.g. a damaged file, named)
            pass
    return out


def map_files_in_order(fn, n, threads):
    """Yield ``(k, fn(k))`` for k = 0 .. n - 1 in order, with up to ``threads`` calls running at once (e.g. files
    decoded ahead by other threads while the caller adds up the previous ones in file order). Closing the
    generator early (an error, a cancel) drops the calls not started and waits for the running ones.
    ``fn(k + threads)`` starts only once the caller asks for result ``k`` (done with result ``k - 1``): results
    may live in a ring of ``threads + 1`` reused buffers."""
    if threads <= 1 or n <= 1:
        for k in range(n):
            yield k, fn(k)
        return
    with thread_pool(threads, "subsidence-read") as pool:
        pending = [pool.submit(fn, k) for k in range(min(n, threads))]
        try:
            for k in range(n):
                result = result_of(pending.pop(0))
                if k + threads < n:
                    pending.append(pool.submit(fn, k + threads))
                yield k, result
                del result
        finally:
            with shielded():
                for fut in pending:
                    fut.cancel()


# --------------------------------------------------------------------------- scratch copy of a stack
def scratch_supported():
    """True where positioned reads and writes exist (``os.pwrite`` and ``os.pread``: Linux, macOS, BSD; not
    Windows)."""
    return hasattr(os, "pwrite") and hasattr(os, "pread")


def _pwrite_all(fd, buf, offset):
    view = memoryview(buf).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pread_into(fd, buf, offset):
    view = memoryview(buf).cast("B")
    while view:
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view], offset)
        else:  # macOS before 11: a copy
            data = os.pread(fd, len(view), offset)
            n = len(data)
            view[:n] = data
        if n == 0:
            raise OSError("the scratch copy of the stack ends early (offset %d)" % offset)
        view, offset = view[n:], offset + n


#: ``fallocate`` mode that frees a byte range of a file without changing its size (Linux ``<linux/falloc.h>``:
#: ``FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE``)
PUNCH_HOLE = 0x01 | 0x02


def _libc_fallocate():
    """libc's ``fallocate(fd, mode, offset, len)`` through ctypes (which releases the GIL during the call), or
    None where there is none (not Linux)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


def _next_queued(owner, pop):
    """The next item of a background thread's ``owner._queue`` (a deque; waiting on ``owner._cond`` while it is
    empty), taken from the queue when ``pop``; None once the queue is empty and ``owner._stopping`` is set."""
    with owner._cond:
        while not owner._queue and not owner._stopping:
            owner._cond.wait()
        if not owner._queue:
            return None
        return owner._queue.popleft() if pop else owner._queue[0]


class HoleReleaser:
    """Frees byte ranges of a file (``fallocate`` punch-hole) in a background thread, in the order given.

    Why: the scan's copy of a frame is 11.5 GB; freeing it all when the file is closed took 5.5 s at the end of
    the run, the closing thread waiting for the disk (``ext4_free_blocks`` -> ``blkdev_issue_discard`` on a file
    system mounted with ``discard``), with no CPU used. Freed window by window while the inversion pass computes,
    that time is spent while the cores work, and the disk space comes back during the pass. Only advice: where
    the file system cannot punch holes (or on another system), nothing is freed before the close and nothing
    fails. ``close()`` waits for the ranges queued (``drop``: only for the one being freed)."""

    def __init__(self, fd, fallocate=None):
        import collections

        self.fd = fd
        self._fallocate = fallocate if fallocate is not None else _libc_fallocate()
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = None
        self.freed = 0  # bytes freed
        self.error = None  # why freeing stopped (an errno's text), or None

    def release(self, ranges):
        """Queue the byte ranges ``[(offset, length), ...]`` to be freed."""
        if self._fallocate is None or self.error is not None:
            return
        with shielded(), self._cond:
            if self._stopping:
                return
            self._queue.extend((int(a), int(n)) for a, n in ranges if n > 0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="subsidence-release", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self):
        import ctypes

        while True:
            item = _next_queued(self, pop=True)
            if item is None:
                return
            offset, length = item
            if self._fallocate(self.fd, PUNCH_HOLE, offset, length) != 0:
                with self._cond:
                    self.error = os.strerror(ctypes.get_errno())
                    self._queue.clear()
                return
            self.freed += length

    def close(self, drop=False):
        """Stop after the ranges queued (``drop``: after the one being freed) and wait for the thread."""
        with shielded():
            with self._cond:
                self._stopping = True
                if drop:
                    self._queue.clear()
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()


#: float32 values moved by one positioned read or write of the scratch file through the thread's staging buffer
#: (1 MB: a 256 x 256 tile at once; a tile wider than this many values moves a row per call)
STAGE_VALUES = 1 << 18


class ScratchStack:
    """Float32 copies of single-band rasters already read once, kept in an anonymous temporary file so that a
    later pass reads them back instead of decoding the files again (:class:`ScratchFiles`).

    The file is ``tempfile.TemporaryFile(dir=folder)``: on Linux an ``O_TMPFILE`` (it never has a name and is
    gone on any exit of the process, even a kill), elsewhere a file removed as soon as it is created. Each
    raster has a slot of ``ysize x xsize`` float32 at its own offset, laid out in tiles of ``tile`` (rows,
    columns; the inputs' blocks, whose whole multiples the passes' windows are): tile after tile in row-major
    order, each tile's values contiguous (row-major; the tiles of the last row and column are cut to the
    image). A window moves one ``pwrite`` / ``preadv`` per tile it covers, through a staging buffer of the
    calling thread (:data:`STAGE_VALUES`) and one numpy copy: windows of whole tiles move only their own bytes
    in runs of a tile (a row-major slot would move 3 kB per call for a window of 768 of 2 500 columns, or read
    the columns in between); a read of a window that cuts a tile reads the tile's rows whole and keeps its
    columns. (One buffer per row in ``pwritev`` / ``preadv`` built a Python list of 1 280 memoryviews per file
    and window of the frame benchmark's scan; the writer thread held the GIL for 12 % of the pass and the two
    decoding threads waited for it.) A write that cuts a tile writes row by row (whole tile rows would clobber
    the neighbours' values). No mapping: mapped pages would count in the process's resident memory; the
    kernel's page cache does not. Positioned reads and writes at distinct offsets are safe from several threads
    at once. ``keys``: one hashable key per slot (e.g. ``("ifg", path)``); ``tile`` None: one tile, the
    row-major image. Not picklable: the file belongs to this process."""

    def __init__(self, folder, ysize, xsize, keys, tile=None):
        import tempfile

        self.ysize, self.xsize = int(ysize), int(xsize)
        th, tw = (self.ysize, self.xsize) if tile is None else tile
        self.tile = (max(1, min(int(th), self.ysize)), max(1, min(int(tw), self.xsize)))
        self.slots = {key: i for i, key in enumerate(keys)}
        self._file = tempfile.TemporaryFile(dir=folder)
        self.fd = self._file.fileno()
        self._local = threading.local()  # the staging buffer of each thread
        # tiles whose values were released (:meth:`release`): reading or writing them again is an error
        self._released = np.zeros((-(-self.ysize // self.tile[0]), -(-self.xsize // self.tile[1])), dtype=bool)
        self._releaser = HoleReleaser(self.fd)
        try:
            self._block = max(512, int(os.fstat(self.fd).st_blksize))
        except OSError:
            self._block = 4096

    def _stage(self, shape):
        """The calling thread's staging buffer as a C-contiguous float32 array of ``shape`` (grown as needed)."""
        n = math.prod(shape)  # not np.prod: 5 us of Python per call, with the GIL
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.size < n:
            buf = self._local.buf = np.empty(max(n, 1), np.float32)
        return buf[:n].reshape(shape)

    @staticmethod
    def nbytes(ysize, xsize, n_slots):
        """Bytes of a scratch file of ``n_slots`` rasters of ``ysize x xsize``."""
        return 4 * int(ysize) * int(xsize) * int(n_slots)

    def __reduce__(self):
        raise TypeError("a ScratchStack is a file of this process: it cannot be sent to another one")

    def close(self):
        """Close the file (which frees what is left of it), once the range being released is."""
        if self._file is not None:
            self._releaser.close(drop=True)  # what is queued the close frees as well
            self._file.close()
            self._file = None

    def release(self, row0, nrows, col0, ncols):
        """The values of every raster in the tiles wholly inside this window will not be read again: their disk
        blocks are freed in the background (:class:`HoleReleaser`; whole file-system blocks only, so that
        nothing outside those tiles is touched), and reading or writing those tiles afterwards raises. Returns
        the number of byte ranges queued."""
        th, tw = self.tile
        ty0, ty1 = -(-row0 // th), (row0 + nrows) // th  # tile rows starting inside the window ...
        tx0, tx1 = -(-col0 // tw), (col0 + ncols) // tw
        if row0 + nrows >= self.ysize:  # ... the image's last tile row ends early
            ty1 = self._released.shape[0]
        if col0 + ncols >= self.xsize:
            tx1 = self._released.shape[1]
        if ty1 <= ty0 or tx1 <= tx0:
            return 0
        self._released[ty0:ty1, tx0:tx1] = True
        blk = self._block
        s0, s1 = tx0 * tw, min(tx1 * tw, self.xsize)
        ranges = []
        for i in range(len(self.slots)):
            base = i * self.ysize * self.xsize
            for ty in range(ty0, ty1):
                t0 = ty * th
                hh = min(th, self.ysize - t0)
                # the tiles of a tile row lie one after the other: one range from the first tile to the last
                a, b = 4 * (base + t0 * self.xsize + s0 * hh), 4 * (base + t0 * self.xsize + s1 * hh)
                a, b = -(-a // blk) * blk, b // blk * blk
                if b > a:
                    if ranges and ranges[-1][0] + ranges[-1][1] == a:
                        ranges[-1] = (ranges[-1][0], b - ranges[-1][0])
                    else:
                        ranges.append((a, b - a))
        self._releaser.release(ranges)
        return len(ranges)

    def _pieces(self, key, row0, nrows, col0, ncols):
        """The window's parts in the tiles it covers: (rows, cols) slices of the window, the file offset of the
        part's first value, and the tile's width in values (the distance between the part's rows in the file)."""
        th, tw = self.tile
        base = self.slots[key] * self.ysize * self.xsize
        out = []
        for ty in range(row0 // th, (row0 + nrows - 1) // th + 1):
            t0 = ty * th
            hh = min(th, self.ysize - t0)  # rows of this tile row
            a, b = max(row0, t0), min(row0 + nrows, t0 + hh)
            for tx in range(col0 // tw, (col0 + ncols - 1) // tw + 1):
                if self._released[ty, tx]:
                    raise RuntimeError(
                        "the scratch copy's tile at row %d, col %d was released: it is not read twice" % (t0, tx * tw)
                    )
                s0 = tx * tw
                ww = min(tw, self.xsize - s0)
                c, d = max(col0, s0), min(col0 + ncols, s0 + ww)
                offset = base + t0 * self.xsize + s0 * hh + (a - t0) * ww + (c - s0)
                out.append((slice(a - row0, b - row0), slice(c - col0, d - col0), offset, ww))
        return out

    def _check(self, row0, col0, shape):
        if row0 < 0 or col0 < 0 or row0 + shape[0] > self.ysize or col0 + shape[1] > self.xsize:
            raise ValueError(
                "window %r at (%d, %d) outside the %d x %d scratch" % (shape, row0, col0, self.ysize, self.xsize)
            )

    def write(self, key, row0, col0, values):
        """Store the window ``values`` (nrows, ncols) of raster ``key`` at (``row0``, ``col0``)."""
        a = np.ascontiguousarray(values, dtype=np.float32)
        self._check(row0, col0, a.shape)
        if a.size == 0:
            return
        for rows, cols, offset, ww in self._pieces(key, row0, a.shape[0], col0, a.shape[1]):
            part = a[rows, cols]
            h, width = part.shape
            if width < ww:  # the window cuts the tile: its rows are apart in the file
                for i in range(h):
                    _pwrite_all(self.fd, part[i], 4 * (offset + i * ww))
                continue
            if part.flags.c_contiguous:
                _pwrite_all(self.fd, part, 4 * offset)
                continue
            step = max(1, STAGE_VALUES // ww)
            for r in range(0, h, step):
                chunk = part[r : r + step]
                buf = self._stage(chunk.shape)
                np.copyto(buf, chunk)
                _pwrite_all(self.fd, buf, 4 * (offset + r * ww))

    def read_into(self, key, row0, col0, out):
        """Read the window of raster ``key`` at (``row0``, ``col0``) into ``out`` (C-contiguous float32
        (nrows, ncols), e.g. one file's plane of a window buffer): per tile covered, one read straight into
        ``out`` where its part is contiguous there, else one read of the tile's rows (whole, from the part's
        first column on) into the thread's staging buffer per up to :data:`STAGE_VALUES` values, and a copy."""
        self._check(row0, col0, out.shape)
        if out.size == 0:
            return
        for rows, cols, offset, ww in self._pieces(key, row0, out.shape[0], col0, out.shape[1]):
            part = out[rows, cols]
            h, width = part.shape
            if width == ww and part.flags.c_contiguous:
                _pread_into(self.fd, part, 4 * offset)
                continue
            step = max(1, STAGE_VALUES // ww)
            for r in range(0, h, step):
                n = min(step, h - r)
                buf = self._stage((n, ww))
                # from the part's first value to its last: not beyond the slot where the tile ends early
                flat = buf.reshape(-1)[: (n - 1) * ww + width]
                _pread_into(self.fd, flat, 4 * (offset + r * ww))
                np.copyto(part[r : r + n], buf[:, :width])


class ScratchWriter:
    """The writes of a :class:`ScratchStack` done by one background thread, in the order given: ``write`` copies
    the window (the caller may reuse or change its buffer at once) into a queue of at most ``budget`` bytes
    (waiting while it is full; one window is always admitted) and returns.

    Why: a copy of a stack is about as large as the page cache can hold, so the kernel soon throttles whoever
    writes it to the disk's speed (``balance_dirty_pages``: a 12 GB ``dd`` into the page cache of a 23 GB machine
    ran at the disk's 444 MB/s). Written by the threads that decode the files, that wait is theirs; written from
    here, they decode on while this thread waits, and the disk keeps up as long as the files decode slower than
    it writes. What it does not remove is the kernel's CPU work of the writes (page allocation and reclaim):
    on two cores both busy decoding, the frame's scan took as long with this thread as without it (reclaim is
    what :func:`~..io.rasters.forget_read_blocks` cuts).

    ``close()`` waits for the queue to be written and raises the first error of a write (e.g. the disk full);
    a ``write`` after an error raises it too. ``abort()`` drops what is queued and stops the thread (on a
    failure or cancel of the pass). Not picklable, as the :class:`ScratchStack`."""

    def __init__(self, scratch, budget):
        import collections
        import threading

        self.scratch = scratch
        self.budget = max(1, int(budget))
        self._queue = collections.deque()
        self._queued = 0
        self._error = None
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="subsidence-scratch", daemon=True)
        self._thread.start()

    def __reduce__(self):
        raise TypeError("a ScratchWriter writes a file of this process: it cannot be sent to another one")

    def write(self, key, row0, col0, values):
        """Queue the window ``values`` of raster ``key`` at (``row0``, ``col0``) (see :meth:`ScratchStack.write`)."""
        self.scratch._check(row0, col0, np.shape(values))
        a = np.array(values, dtype=np.float32, order="C", copy=True)
        with shielded(), self._cond:  # a signal handler's exception would leave the condition's lock held
            while self._error is None and not self._stopping and self._queue and self._queued + a.nbytes > self.budget:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if self._stopping:
                raise RuntimeError("the scratch writer was stopped")
            self._queue.append((key, row0, col0, a))
            self._queued += a.nbytes
            self._cond.notify_all()

    def _run(self):
        while True:
            item = _next_queued(self, pop=False)  # left in the queue (its bytes counted) until written
            if item is None:
                return
            key, row0, col0, a = item
            try:
                self.scratch.write(key, row0, col0, a)
            except BaseException as e:  # kept for the producer, which raises it
                with self._cond:
                    self._error = e
                    self._queue.clear()
                    self._queued = 0
                    self._cond.notify_all()
                return
            with self._cond:
                if self._queue:  # abort() may have emptied it
                    self._queue.popleft()
                    self._queued -= a.nbytes
                self._cond.notify_all()

    def close(self):
        """Wait until everything queued is written; raise the first write error."""
        with shielded():
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self):
        """Drop what is queued and stop (the window being written is finished)."""
        with shielded():
            with self._cond:
                self._queue.clear()
                self._queued = 0
                self._stopping = True
                self._cond.notify_all()
            self._thread.join()


class ScratchFiles:
    """A :class:`StackFiles` whose windows are read from a :class:`ScratchStack` (the values exactly as the
    files gave them: same NoData, scaling and product conventions), by ``kind`` and path. ``files``: the
    reader of the same rasters (block size, and anything not in the scratch)."""

    def __init__(self, scratch, kind, files):
        self.scratch, self.kind, self.files = scratch, kind, files
        self.paths = files.paths
        self.rasters = files.rasters

    def __reduce__(self):
        raise TypeError("ScratchFiles read a file of this process: they cannot be sent to another one")

    def block_size(self):
        return self.files.block_size()

    def read_into(self, k, row0, nrows, col0, ncols, out):
        """Window of file ``k`` into ``out`` (nrows, ncols) float32."""
        self.scratch.read_into((self.kind, self.paths[k]), row0, col0, out)
        return out

    def read_one(self, k, row0, nrows, col0=0, ncols=None):
        ncols = self.scratch.xsize - col0 if ncols is None else ncols
        return self.read_into(k, row0, nrows, col0, ncols, np.empty((nrows, ncols), dtype=np.float32))

    def valid_at(self, k, points):
        return self.files.valid_at(k, points)

    def subset(self, idx):
        return ScratchFiles(self.scratch, self.kind, self.files.subset(idx))

    iter_window = StackFiles.iter_window

    def read(self, row0, nrows, col0=0, ncols=None, out=None):
        """The window of every file as one ``(n_files, nrows, ncols)`` float32 array (read in place)."""
        ncols = self.scratch.xsize - col0 if ncols is None else ncols
        if out is None:
            out = np.empty((len(self.paths), nrows, ncols), dtype=np.float32)
        for k in range(len(self.paths)):
            self.read_into(k, row0, nrows, col0, ncols, out[k])
        return out
