"""core/insar/stack.py ScratchStack / ScratchFiles and their use by sbas_stack: the inversion pass reads the
values the scan pass kept instead of decoding the GeoTIFFs again, with results bit for bit equal to reading
them again (unweighted, weighted, with loop closure, ramps and GACOS, on several threads), and no file left
behind by a run, a failure or a cancel."""

import datetime as dt
import math
import os
import pickle
import re
import shutil
import time

import numpy as np
import pytest
from osgeo import gdal, osr

from subsidence_toolkit.core.insar import gacos, sbas_stack
from subsidence_toolkit.core.insar import products as products_module
from subsidence_toolkit.core.insar import stack as stack_module
from subsidence_toolkit.core.insar.stack import ScratchFiles, ScratchStack, StackFiles, prepare_stack
from subsidence_toolkit.core.io.errors import Cancelled, TimeSeriesError
from subsidence_toolkit.core.io.tasks import map_threads

WL = 0.05546576
NY, NX = 30, 40
X0, Y0, PX = 110.0, 35.0, 0.001


def _write_tiled(path, arr, nodata=None):
    """A deflate GeoTIFF of 16 x 16 tiles in EPSG:4326 (windows then cut tiles into columns)."""
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), NX, NY, 1, gdal.GDT_Float32, ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "COMPRESS=DEFLATE"]
    )
    ds.SetGeoTransform((X0, PX, 0, Y0, 0, -PX))
    s = osr.SpatialReference()
    s.ImportFromEPSG(4326)
    ds.SetProjection(s.ExportToWkt())
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds.GetRasterBand(1).WriteArray(arr)
    ds = None
    return str(path)


def _ztd(n, lon, lat):
    return 2.4 + 0.03 * np.sin(25 * (lon - X0) + n) + 0.5 * (lat - Y0) * (1 + 0.3 * n)


@pytest.fixture(scope="module")
def qc_stack(tmp_path_factory):
    """8 dates, pairs up to 36 days: subsidence bowl + per-date ramps + troposphere (GACOS files) + noise, one
    interferogram with a 2 pi error over a patch (rejected by loop closure), NoData holes, coherence."""
    folder = tmp_path_factory.mktemp("qc_stack")
    rng = np.random.default_rng(3)
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=12 * k) for k in range(8)]
    pairs = [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= 36]
    yy, xx = np.mgrid[0:NY, 0:NX]
    lon, lat = X0 + (xx + 0.5) * PX, Y0 - (yy + 0.5) * PX
    step, xf, yf = 0.0025, X0 - 0.004, Y0 + 0.004
    glon = xf + step * np.arange(int((NX * PX + 0.008) / step) + 2)
    glat = yf - step * np.arange(int((NY * PX + 0.008) / step) + 2)
    gdir = folder / "gacos"
    gdir.mkdir()
    ztds = []
    for n, d in enumerate(dates):
        z = _ztd(n, glon[None, :], glat[:, None]).astype(np.float32)
        ztds.append(gacos.write_ztd(gdir / ("%s.ztd" % d.strftime("%Y%m%d")), z, xf, yf, step, -step))
    slant = np.array([_ztd(n, lon, lat) for n in range(len(dates))]) / math.cos(math.radians(39.0))
    bowl = np.exp(-((yy - 15) ** 2 + (xx - 20) ** 2) / 40.0)
    ifgs, cohs = [], []
    for k, (a, b) in enumerate(pairs):
        i, j = dates.index(a), dates.index(b)
        ph = -3.0 * bowl * (j - i) / 30.0 + 4 * math.pi / WL * (slant[j] - slant[i])
        ph += 0.002 * (j - i) * xx - 0.001 * (j + i) * yy + rng.normal(0, 0.1, (NY, NX))
        if k == 4:
            ph[5:25, 3:30] += 2 * math.pi
        ph[rng.random((NY, NX)) < 0.04] = -9999.0
        coh = rng.uniform(0.2, 0.9, (NY, NX)).astype(np.float32)
        coh[rng.random((NY, NX)) < 0.02] = np.nan
        tag = "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
        ifgs.append(_write_tiled(folder / ("%s.geo.unw.tif" % tag), ph, nodata=-9999.0))
        cohs.append(_write_tiled(folder / ("%s.geo.cc.tif" % tag), coh))
    return dict(folder=folder, ifgs=ifgs, cohs=cohs, gacos=tuple(ztds))


def _invert(qc, out, log=None, **kw):
    stack = prepare_stack(qc["ifgs"], None, qc["cohs"])
    out.mkdir()
    paths = [str(out / n) for n in ("ts.tif", "vel.tif", "q.tif")]
    summary = sbas_stack.invert_stack(stack, *paths, sbas_stack.SbasOptions(**kw), log=log)
    return summary, [gdal.Open(p).ReadAsArray() for p in paths]


QC = dict(loop_closure=2, deramp="linear", incidence_angle=39.0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(memory_mb=64),
        dict(memory_mb=1, threads=3, gacos=True),
        dict(memory_mb=64, weighting="coherence", gacos=True),
        dict(memory_mb=1, threads=3, weighting="coherence", min_coherence=0.3, gacos=True),
        dict(memory_mb=1, threads=2, reference=(12, 33), deramp="quadratic"),
        dict(memory_mb=64, threads=2, loop_closure=3, weighting="coherence", min_coherence=0.3, gacos=True),
    ],
)
def test_scratch_equals_reading_the_files_again(qc_stack, tmp_path, monkeypatch, kw):
    """The same run with the scan's scratch copy and with the files decoded again: every output raster and
    every network-table value equal bit for bit (the corrections are applied to the same float32 values in the
    same order); the loop closure rejected the planted interferogram in both."""
    kw = dict(QC, **kw)
    if kw.pop("gacos", False):
        kw["gacos"] = qc_stack["gacos"]
    logs_on, logs_off = [], []
    tiles = []

    released = []

    class Recorded(sbas_stack.ScratchStack):
        def __init__(self, *a, tile=None):
            tiles.append(tile)
            super().__init__(*a, tile=tile)

        def close(self):
            released.append(bool(self._released.all()))
            super().close()

    monkeypatch.setattr(sbas_stack, "ScratchStack", Recorded)
    s_on, a_on = _invert(qc_stack, tmp_path / "on", logs_on.append, **kw)
    assert tiles == [(16, 16)]  # the copy in the inputs' 16 x 16 tiles
    # the inversion freed every tile once read (a second read would have raised); windows that cut the tiles
    # (the 1 MB cap) leave them to the close
    assert released == [kw["memory_mb"] >= 64]
    monkeypatch.setattr(sbas_stack, "scratch_supported", lambda: False)
    s_off, a_off = _invert(qc_stack, tmp_path / "off", logs_off.append, **kw)
    assert any("anonymous temporary file" in m for m in logs_on)
    assert any("no positioned file reads" in m for m in logs_off)
    if kw["memory_mb"] < 2:  # several windows, some narrower than the grid: per-row reads and writes
        assert any(re.search(r"invert pass: \d\d+ windows of up to \d+ x 16 px", m) for m in logs_on)
    assert s_on["rejected"] == s_off["rejected"]
    if kw["loop_closure"] == 2:  # the planted 2 pi patch (LOOP_CLOSURE 3 may keep and correct it)
        assert len(s_on["rejected"]) == 1
    assert s_on["reference"] == s_off["reference"]
    for x, y in zip(a_on, a_off):
        assert np.array_equal(x, y, equal_nan=True)
    for r1, r2 in zip(s_on["network_rows"], s_off["network_rows"]):
        assert r1.keys() == r2.keys()
        for k in r1:
            same = r1[k] == r2[k] or (isinstance(r1[k], float) and math.isnan(r1[k]) and math.isnan(r2[k]))
            assert same, (k, r1[k], r2[k])


def _open_deleted_files_in(folder):
    """Descriptors of this process open on (deleted) files of ``folder``."""
    real = os.path.realpath(folder)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if target.startswith(real + os.sep):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("how", ["success", "failure", "cancel"])
def test_nothing_left_behind(qc_stack, tmp_path, monkeypatch, how):
    """After a run, a failure in the inversion pass and a cancel after the scan: no new file next to the inputs,
    only the outputs (success) or nothing (failure, cancel) in the output folder, and no descriptor of the
    process left open on a file there (the scratch file is closed, so its space is given back)."""
    out = tmp_path / "out"
    before_in = sorted(os.listdir(qc_stack["folder"]))
    logs, fractions = [], []
    hooks = {}
    if how == "failure":

        def broken(*a, **k):
            raise TimeSeriesError("planted failure in the inversion pass")

        monkeypatch.setattr(sbas_stack, "_solve_sub_block", broken)
    if how == "cancel":
        hooks["is_canceled"] = lambda: bool(fractions) and fractions[-1] > 0.5
    stack = prepare_stack(qc_stack["ifgs"], None, qc_stack["cohs"])
    out.mkdir()
    paths = [str(out / n) for n in ("ts.tif", "vel.tif", "q.tif")]
    opts = sbas_stack.SbasOptions(memory_mb=1, threads=2, weighting="coherence", **QC)
    call = lambda: sbas_stack.invert_stack(stack, *paths, opts, log=logs.append, progress=fractions.append, **hooks)  # noqa: E731
    if how == "success":
        call()
        assert sorted(os.listdir(out)) == ["q.tif", "ts.tif", "vel.tif"]
    else:
        with pytest.raises(TimeSeriesError if how == "failure" else Cancelled):
            call()
        assert os.listdir(out) == []
    assert any("anonymous temporary file in %s" % out in m for m in logs)
    assert sorted(os.listdir(qc_stack["folder"])) == before_in
    assert _open_deleted_files_in(out) == []


def test_falls_back_without_space_or_with_a_task_runner(qc_stack, tmp_path, monkeypatch):
    """Too little free space beside the outputs, or windows run by a given runner (Dask, other processes): the
    files are decoded again, the log says why, and the results equal the scratch run's."""
    logs = []
    _, ref = _invert(qc_stack, tmp_path / "scratch", logs.append, memory_mb=64, **QC)
    assert any("anonymous temporary file" in m for m in logs)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    logs = []
    _, a = _invert(qc_stack, tmp_path / "full", logs.append, memory_mb=64, **QC)
    assert any(re.search(r"10 MB free in .*, a copy of the stack as read needs", m) for m in logs)
    assert all("anonymous temporary file" not in m for m in logs)
    for x, y in zip(ref, a):
        assert np.array_equal(x, y, equal_nan=True)
    monkeypatch.undo()
    logs = []
    stack = prepare_stack(qc_stack["ifgs"], None, qc_stack["cohs"])
    (tmp_path / "runner").mkdir()
    paths = [str(tmp_path / "runner" / n) for n in ("ts.tif", "vel.tif", "q.tif")]
    sbas_stack.invert_stack(
        stack,
        *paths,
        sbas_stack.SbasOptions(memory_mb=64, **QC),
        log=logs.append,
        run_tasks=lambda fn, tasks, shared: (
            (i, fn(t, pickle.loads(pickle.dumps(shared)))) for i, t in enumerate(tasks)
        ),
    )
    assert any("through the given task runner" in m for m in logs)
    for x, p in zip(ref, paths):
        assert np.array_equal(x, gdal.Open(p).ReadAsArray(), equal_nan=True)


@pytest.mark.parametrize(
    "tile, vectored",
    [(None, True), (None, False), ((8, 16), True), ((8, 16), False), ((5, 37), True), ((1, 37), True), ((4, 5), True)],
)
def test_scratch_stack_windows_threads_and_pickling(tmp_path, monkeypatch, tile, vectored):
    """Windows written from several threads (whole-width and narrower ones, of whole tiles and across tile edges)
    read back as any other window split, whatever the slot's tiles (None: the row-major image): through the
    thread's staging buffer in several calls per tile, or with os.pread where os.preadv is missing (macOS before
    11); the scratch file has no name in the folder; it refuses to be pickled."""
    if not vectored:
        monkeypatch.delattr(os, "preadv", raising=False)
        monkeypatch.delattr(os, "pwritev", raising=False)
    else:
        monkeypatch.setattr(stack_module, "STAGE_VALUES", 40)  # 1-8 rows per call: several calls per tile
    rng = np.random.default_rng(1)
    data = {("ifg", "a"): rng.normal(size=(23, 37)).astype(np.float32)}
    data[("coh", "b")] = rng.uniform(size=(23, 37)).astype(np.float32)
    data[("coh", "b")][3, 4] = np.nan
    s = ScratchStack(str(tmp_path), 23, 37, list(data), tile=tile)
    assert os.listdir(tmp_path) == []
    windows = [(0, 8, 0, 37), (8, 15, 0, 16), (8, 15, 16, 21)] if tile == (8, 16) else []
    windows = windows or [(0, 10, 0, 37), (10, 13, 0, 16), (10, 13, 16, 21)]
    tasks = [(key, w) for key in data for w in windows]

    def write(task, _):
        key, (r0, h, c0, w) = task
        s.write(key, r0, c0, data[key][r0 : r0 + h, c0 : c0 + w])

    list(map_threads(write, tasks, 3, shared=0))
    for key, arr in data.items():
        for r0, h, c0, w in [(0, 23, 0, 37), (5, 7, 3, 30), (22, 1, 36, 1), (0, 23, 1, 36), (4, 19, 0, 36)]:
            out = np.empty((h, w), np.float32)
            s.read_into(key, r0, c0, out)
            assert np.array_equal(out, arr[r0 : r0 + h, c0 : c0 + w], equal_nan=True)
    assert os.fstat(s.fd).st_size == ScratchStack.nbytes(23, 37, 2)  # the tiles fill the slots exactly
    with pytest.raises(ValueError, match="outside"):
        s.read_into(("ifg", "a"), 20, 0, np.empty((4, 37), np.float32))
    files = ScratchFiles(s, "ifg", StackFiles(["a"]))
    assert np.array_equal(files.read(2, 5, 1, 9)[0], data[("ifg", "a")][2:7, 1:10])
    with pytest.raises(TypeError):
        pickle.dumps(files)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    s.close()
    assert os.listdir(tmp_path) == []


def test_scratch_stack_moves_a_tile_per_call(tmp_path, monkeypatch):
    """A window of whole tiles wider than one tile (its rows apart in the caller's buffer, as in the frame's scan
    and inversion windows) moves one positioned write and one positioned read per tile, not one buffer per row,
    and its values round-trip; a window that cuts tiles reads each tile's rows in one call too."""
    calls = {"pwrite": 0, "preadv": 0}
    real_pwrite, real_preadv = os.pwrite, getattr(os, "preadv", None)
    if real_preadv is None:
        pytest.skip("no os.preadv on this platform")

    def pwrite(fd, data, offset):
        calls["pwrite"] += 1
        return real_pwrite(fd, data, offset)

    def preadv(fd, buffers, offset):
        calls["preadv"] += 1
        assert len(buffers) == 1  # one buffer, not a list of rows
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "preadv", preadv)
    values = np.arange(24 * 48, dtype=np.float32).reshape(24, 48)
    s = ScratchStack(str(tmp_path), 24, 48, ["a"], tile=(8, 16))
    s.write("a", 0, 0, values)  # 3 x 3 tiles
    assert calls["pwrite"] == 9
    out = np.empty((16, 32), np.float32)
    s.read_into("a", 8, 16, out)  # 2 x 2 tiles
    assert calls["preadv"] == 4 and np.array_equal(out, values[8:24, 16:48])
    calls["preadv"] = 0
    cut = np.empty((10, 20), np.float32)
    s.read_into("a", 3, 5, cut)  # rows 3-12, columns 5-24: 2 tile rows x 2 tile columns, cut
    assert calls["preadv"] == 4 and np.array_equal(cut, values[3:13, 5:25])
    s.close()


def test_scratch_stack_release_frees_whole_tiles_and_keeps_the_rest(tmp_path):
    """Released windows: the disk blocks of the tiles wholly inside them are freed (whole file-system blocks,
    so the neighbours' values, in slots that do not start on a block, read back unchanged), a tile the window
    only cuts is kept, and reading a released tile raises instead of returning zeros."""
    rng = np.random.default_rng(3)
    ny, nx, keys = 150, 200, ["a", "b", "c"]  # a slot of 120 000 bytes: the slots start off the 4 kB blocks
    data = {k: rng.normal(size=(ny, nx)).astype(np.float32) for k in keys}
    s = ScratchStack(str(tmp_path), ny, nx, keys, tile=(64, 64))
    for k in keys:
        s.write(k, 0, 0, data[k])
    os.fsync(s.fd)
    before = os.fstat(s.fd).st_blocks
    assert s.release(0, 64, 0, 200) > 0  # the first tile row, whole
    assert s.release(64, 64, 0, 100) > 0  # tile (1, 0) whole; tile (1, 1) cut at column 100: kept
    s._releaser.close()  # wait for the frees
    if s._releaser.error is None:
        assert s._releaser.freed > 0
        assert os.fstat(s.fd).st_blocks < before
    assert os.fstat(s.fd).st_size == ScratchStack.nbytes(ny, nx, 3)
    for k in keys:
        kept = np.empty((86, 136), np.float32)
        s.read_into(k, 64, 64, kept)  # tiles (1, 1), (1, 2), (1, 3), (2, *) untouched
        assert np.array_equal(kept, data[k][64:, 64:])
        last = np.empty((22, 64), np.float32)
        s.read_into(k, 128, 0, last)
        assert np.array_equal(last, data[k][128:, :64])
        with pytest.raises(RuntimeError, match="released"):
            s.read_into(k, 60, 0, np.empty((8, 8), np.float32))
        with pytest.raises(RuntimeError, match="released"):
            s.read_into(k, 64, 0, np.empty((8, 8), np.float32))
    s.close()


def test_hole_releaser_where_the_file_system_cannot(tmp_path):
    """Where punching holes fails (a file system without it), the releaser stops quietly and the values stay."""
    calls = []

    def fallocate(fd, mode, offset, length):
        calls.append((mode, offset, length))
        return -1

    s = ScratchStack(str(tmp_path), 64, 64, ["a"], tile=(32, 32))
    values = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    s.write("a", 0, 0, values)
    s._releaser = stack_module.HoleReleaser(s.fd, fallocate=fallocate)
    s.release(0, 32, 0, 64)
    s._releaser.close()
    assert calls and calls[0][0] == stack_module.PUNCH_HOLE and s._releaser.error is not None
    assert s._releaser.freed == 0
    out = np.empty((32, 64), np.float32)
    s.read_into("a", 32, 0, out)
    assert np.array_equal(out, values[32:])
    s.close()


def _scratch_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "subsidence-scratch"]


def test_scratch_writer_copies_queues_under_its_budget_and_keeps_order(tmp_path, monkeypatch):
    """Windows given to a ScratchWriter from three threads, each buffer overwritten right after ``write`` returns
    (as the scan reuses its buffers): read back exactly as given; while the disk is slow (a write that sleeps),
    never more than the budget queued (one window of 5 x 37 values: 740 bytes; budget 2 windows); a window
    written twice lands in the order given; close() ends the thread."""
    import threading

    from subsidence_toolkit.core.insar.stack import ScratchWriter

    rng = np.random.default_rng(7)
    keys = [("ifg", str(k)) for k in range(6)]
    data = {key: rng.normal(size=(20, 37)).astype(np.float32) for key in keys}
    s = ScratchStack(str(tmp_path), 20, 37, keys, tile=(5, 37))
    peak = [0]
    real = ScratchStack.write

    def slow(self, *a):
        peak[0] = max(peak[0], writer._queued)
        time.sleep(0.002)
        real(self, *a)

    monkeypatch.setattr(ScratchStack, "write", slow)
    writer = ScratchWriter(s, 2 * 740)
    lock = threading.Lock()
    tasks = [(key, r0) for key in keys for r0 in range(0, 20, 5)]

    def put(task, _):
        key, r0 = task
        with lock:
            buf = data[key][r0 : r0 + 5].copy()
        writer.write(key, r0, 0, buf)
        buf[:] = np.nan  # the caller's buffer reused at once

    list(map_threads(put, tasks, 3, shared=0))
    writer.write(keys[0], 0, 0, np.zeros((5, 37), np.float32))  # overwritten below, in the order given
    writer.write(keys[0], 0, 0, data[keys[0]][0:5])
    writer.close()
    assert not _scratch_threads()
    assert 0 < peak[0] <= 2 * 740
    for key in keys:
        out = np.empty((20, 37), np.float32)
        s.read_into(key, 0, 0, out)
        assert np.array_equal(out, data[key])
    writer = ScratchWriter(s, 1)
    with pytest.raises(ValueError, match="outside"):  # refused before it is queued
        writer.write(keys[0], 18, 0, np.zeros((5, 37), np.float32))
    writer.close()
    assert not _scratch_threads()
    s.close()


def test_scratch_writer_raises_a_write_error_and_abort_drops_the_queue(tmp_path, monkeypatch):
    """A write that fails in the writer's thread (the disk full) is raised by the next ``write`` and by close();
    abort() drops what is queued and ends the thread."""
    import errno
    import threading

    from subsidence_toolkit.core.insar.stack import ScratchWriter

    s = ScratchStack(str(tmp_path), 4, 4, ["a"], tile=None)
    calls = []

    def full(self, *a):
        calls.append(a)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ScratchStack, "write", full)
    writer = ScratchWriter(s, 1)
    writer.write("a", 0, 0, np.ones((4, 4), np.float32))
    with pytest.raises(OSError, match="No space left"):
        for _ in range(1000):  # the error reaches the producer once the writer met it
            writer.write("a", 0, 0, np.ones((4, 4), np.float32))
            time.sleep(0.001)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert not _scratch_threads()
    gate = threading.Event()

    def stuck(self, *a):
        gate.wait(5)

    monkeypatch.setattr(ScratchStack, "write", stuck)
    writer = ScratchWriter(s, 10**6)
    for _ in range(5):
        writer.write("a", 0, 0, np.ones((4, 4), np.float32))
    threading.Timer(0.05, gate.set).start()
    writer.abort()
    assert writer._queued == 0 and not writer._queue
    assert not _scratch_threads()
    with pytest.raises(RuntimeError, match="stopped"):
        writer.write("a", 0, 0, np.ones((4, 4), np.float32))
    s.close()


def test_disk_full_while_the_scan_keeps_its_copy_fails_the_run_and_leaves_nothing(qc_stack, tmp_path, monkeypatch):
    """The disk fills while the scan pass writes its copy (the writer's thread meets ENOSPC on its 30th window):
    the run fails with that error, the output folder is left empty and no writer thread or open scratch file
    remains."""
    import errno

    calls = [0]
    real = ScratchStack.write

    def fills(self, *a):
        calls[0] += 1
        if calls[0] >= 30:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, *a)

    monkeypatch.setattr(ScratchStack, "write", fills)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        _invert(qc_stack, out, None, memory_mb=1, threads=2, **QC)
    assert calls[0] >= 30
    assert os.listdir(out) == []
    assert not _scratch_threads()
    assert _open_deleted_files_in(out) == []


def test_forget_read_blocks_advises_exactly_the_whole_blocks_of_the_window(tmp_path, monkeypatch):
    """The bytes advised away are those of the 16 x 16 blocks lying wholly inside the window (per the TIFF's block
    offsets and sizes, adjacent blocks merged into one call), the image's cut last blocks counting as whole; a
    block the window only cuts, a VRT or a two-band file: nothing."""
    from subsidence_toolkit.core.io import rasters

    path = _write_tiled(tmp_path / "a.tif", np.random.default_rng(0).normal(size=(NY, NX)).astype(np.float32))
    calls = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: calls.append((off, n, advice)), raising=False)
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)

    def blocks(*xy):
        out = []
        for tx, ty in xy:
            off = int(band.GetMetadataItem("BLOCK_OFFSET_%d_%d" % (tx, ty), "TIFF"))
            out.append((off, off + int(band.GetMetadataItem("BLOCK_SIZE_%d_%d" % (tx, ty), "TIFF"))))
        return out

    def advised():
        return sorted((off, off + n) for off, n, advice in calls if advice == os.POSIX_FADV_DONTNEED)

    # 40 x 30 px in 16 x 16 blocks: 3 x 2 blocks, the last column and row cut to 8 x 14
    assert rasters.forget_read_blocks(ds, path, 0, 0, 40, 30) == sum(
        b - a for a, b in blocks(*[(x, y) for x in range(3) for y in range(2)])
    )
    calls.clear()
    n = rasters.forget_read_blocks(ds, path, 16, 0, 24, 16)  # blocks (1, 0) and (2, 0), adjacent in the file
    assert advised() == [(blocks((1, 0))[0][0], blocks((2, 0))[0][1])] and n == advised()[0][1] - advised()[0][0]
    calls.clear()
    assert rasters.forget_read_blocks(ds, path, 8, 0, 20, 16) == 0 and calls == []  # cuts blocks (0, 0) and (1, 0)
    assert rasters.forget_read_blocks(ds, path, 0, 16, 16, 10) == 0  # cuts block (0, 1), 14 rows high
    vrt = gdal.Translate(str(tmp_path / "a.vrt"), ds, format="VRT")
    assert rasters.forget_read_blocks(vrt, str(tmp_path / "a.vrt"), 0, 0, 40, 30) == 0
    two = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "two.tif"), NX, NY, 2, gdal.GDT_Float32, ["TILED=YES"])
    assert rasters.forget_read_blocks(two, str(tmp_path / "two.tif"), 0, 0, 40, 30) == 0
    assert calls == []


def test_reading_a_window_asks_the_kernel_for_each_file_ahead_once(qc_stack, tmp_path, monkeypatch):
    """StackFiles reads a window file after file: the first file asks the kernel for the window of the next
    PREFETCH_FILES, every later one for the file that many ahead, so each file's window is asked for once and before
    it is read, as the byte ranges of the blocks the window touches (those it cuts too, adjacent ones merged); the
    values are those read without asking."""
    from subsidence_toolkit.core.io import rasters

    events = []
    monkeypatch.setattr(
        rasters, "advise_file_ranges", lambda path, ranges, advice: events.append(("ask", path, ranges, advice)) or 1
    )
    real_read = products_module.ProductRaster.read_into

    def read_into(self, *a, **k):
        events.append(("read", self.path))
        return real_read(self, *a, **k)

    monkeypatch.setattr(products_module.ProductRaster, "read_into", read_into)
    files = prepare_stack(qc_stack["ifgs"], None, qc_stack["cohs"]).ifg_files()
    n = len(files.paths)
    assert files.prefetch == stack_module.PREFETCH_FILES < n
    window = (16, 14, 8, 24)  # rows 16-29, cols 8-31 of 16 x 16 blocks: cuts blocks (0, 1) and (1, 1)
    got = files.read(*window)
    asked = [e for e in events if e[0] == "ask"]
    assert sorted(e[1] for e in asked) == sorted(files.paths[1:])
    assert all(e[3] == os.POSIX_FADV_WILLNEED for e in asked)
    for path in files.paths[1:]:
        order = [e[0] for e in events if e[1] == path]
        assert order == ["ask", "read"], path
    ds = gdal.Open(files.paths[3])
    band = ds.GetRasterBand(1)
    (a0, a1), (b0, b1) = (
        (
            int(band.GetMetadataItem("BLOCK_OFFSET_%d_1" % x, "TIFF")),
            int(band.GetMetadataItem("BLOCK_SIZE_%d_1" % x, "TIFF")),
        )
        for x in (0, 1)
    )
    expected = [(a0, a0 + a1), (b0, b0 + b1)] if b0 > a0 + a1 else [(a0, b0 + b1)]
    assert [e[2] for e in asked if e[1] == files.paths[3]] == [expected]
    quiet = StackFiles(
        files.paths, dict(zip(files.paths, files.rasters)), files.valid_range, files.quantity, prefetch=0
    )
    events.clear()
    assert np.array_equal(quiet.read(*window), got, equal_nan=True)
    assert not [e for e in events if e[0] == "ask"]
    # only advice: a file gone since the stack was prepared is left to the read to report
    gone = tmp_path / "gone.tif"
    shutil.copy(files.paths[0], gone)
    r = products_module.ProductRaster(str(gone), files.rasters[0].kind, files.rasters[0].product)
    gone.unlink()
    assert r.prefetch(*window) == 0


def test_scan_drops_the_files_from_the_page_cache_when_they_and_the_copy_do_not_fit(qc_stack, tmp_path, monkeypatch):
    """Where the files, the scan's copy, the outputs and the memory limit exceed the memory available, the scan
    advises every block of every interferogram and coherence file away once read (each file's whole blocks, the
    coherence too: no later pass reads them), the log says why, and every output equals a run that kept them;
    with room to spare, no advice."""
    from subsidence_toolkit.core.io import rasters

    calls = []
    real = rasters.forget_read_blocks

    def recorded(ds, path, *window):
        n = real(ds, path, *window)
        calls.append((path, n))
        return n

    monkeypatch.setattr(os, "posix_fadvise", lambda *a: None, raising=False)
    monkeypatch.setattr(products_module, "forget_read_blocks", recorded)
    kw = dict(QC, memory_mb=64, threads=2, weighting="coherence")  # windows of whole blocks (1 MB: of one row)
    logs = []
    monkeypatch.setattr(sbas_stack, "memory_available_bytes", lambda: 1)
    s_forget, forget = _invert(qc_stack, tmp_path / "forget", logs.append, **kw)
    assert any("drops the files' blocks from the page cache" in m for m in logs)
    advised = {}
    for path, n in calls:
        advised[path] = advised.get(path, 0) + n
    for path in qc_stack["ifgs"] + qc_stack["cohs"]:  # every block once: the file less its header
        ds = gdal.Open(path)
        band = ds.GetRasterBand(1)
        total = sum(int(band.GetMetadataItem("BLOCK_SIZE_%d_%d" % (x, y), "TIFF")) for x in range(3) for y in range(2))
        assert advised.get(path) == total, path
    calls.clear()
    logs = []
    monkeypatch.setattr(sbas_stack, "memory_available_bytes", lambda: 2**50)
    s_keep, keep = _invert(qc_stack, tmp_path / "keep", logs.append, **kw)
    assert not any("drops the files' blocks" in m for m in logs)
    assert calls == []
    for x, y in zip(forget, keep):
        assert np.array_equal(x, y, equal_nan=True)
    assert s_forget["rejected"] == s_keep["rejected"] and s_forget["reference"] == s_keep["reference"]
