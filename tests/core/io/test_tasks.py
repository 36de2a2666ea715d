"""map_blocks gives the same blocks locally and on a 2-worker LocalCluster (loopback, no dashboard)."""

import time

import numpy as np
import pytest
from synthetic import sentinel1_dates, smooth_stack, write_stack

from subsidence_toolkit.core.io import tasks as runner
from subsidence_toolkit.core.io.dates import days_since
from subsidence_toolkit.core.io.windows import row_blocks
from subsidence_toolkit.core.timeseries import resample


def _tasks(path, dates, ny):
    t = days_since(dates)
    t_new = days_since(resample.target_dates(dates), dates[0])
    return [
        dict(path=path, row0=r, nrows=n, t=t, t_new=t_new, method="cubic", min_valid=2)
        for r, n in row_blocks(ny, 1, memory_mb=3e-6)
    ]


def test_local_map_blocks_in_order_and_cancel(tmp_path):
    dates = sentinel1_dates(n=15)
    path = write_stack(tmp_path / "s.tif", smooth_stack(dates, ny=9, nx=4), dates=dates)
    tasks = _tasks(path, dates, 9)
    got = list(runner.map_blocks(resample.resample_block_task, tasks))
    assert [i for i, _ in got] == list(range(len(tasks)))
    calls = []
    with pytest.raises(runner.Cancelled):
        for i, _ in runner.map_blocks(resample.resample_block_task, tasks, is_canceled=lambda: len(calls) >= 2):
            calls.append(i)
    assert calls == [0, 1]


def _scaled_task(task, shared):
    return task * shared["factor"]


def test_shared_object_reaches_every_task():
    got = dict(runner.map_blocks(_scaled_task, [1, 2, 3], shared={"factor": 10}))
    assert got == {0: 10, 1: 20, 2: 30}


def test_dask_missing_is_reported(monkeypatch):
    monkeypatch.setattr(runner, "dask_available", lambda: False)
    with pytest.raises(runner.DaskUnavailable, match="dask.distributed is not installed"):
        runner.connect("tcp://127.0.0.1:1")


@pytest.mark.skipif(not runner.dask_available(), reason="dask.distributed not installed")
def test_local_cluster_equals_local_run(tmp_path):
    from distributed import Client, LocalCluster

    dates = sentinel1_dates(n=15)
    path = write_stack(tmp_path / "s.tif", smooth_stack(dates, ny=12, nx=5, nan_fraction=0.2), dates=dates)
    tasks = _tasks(path, dates, 12)
    local = dict(runner.map_blocks(resample.resample_block_task, tasks))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = dict(runner.map_blocks(resample.resample_block_task, tasks, client=client, max_in_flight=3))
        scaled = dict(
            runner.map_blocks(
                _scaled_task, [np.arange(3.0), np.ones(2)], client=client, shared={"factor": np.full(1, 2.5)}
            )
        )
        # a cancel stops the run at once, not when the tasks on the workers end (3 s each here)
        t0 = time.perf_counter()
        late = lambda: time.perf_counter() > t0 + 0.3  # noqa: E731
        with pytest.raises(runner.Cancelled):
            list(runner.map_blocks(_sleep, [3.0] * 4, client=client, is_canceled=late))
        assert time.perf_counter() - t0 < 2.5, time.perf_counter() - t0  # before any task could end
    assert np.array_equal(scaled[0], [0.0, 2.5, 5.0]) and np.array_equal(scaled[1], [2.5, 2.5])
    assert sorted(remote) == sorted(local)
    for i in local:
        assert local[i][0] == remote[i][0]
        assert np.array_equal(local[i][1], remote[i][1], equal_nan=True)


def _sleep(seconds):
    time.sleep(seconds)
    return seconds


def _slow_square(task, shared):
    time.sleep(0.002 * (task % 3))  # later tasks may finish first
    return {"value": task * task + shared, "thread": __import__("threading").get_ident()}


def test_threads_give_every_result_once_with_bounded_tasks_in_flight():
    import threading

    running, peak = [0], [0]
    lock = threading.Lock()

    def task(t, shared):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return _slow_square(t, shared)
        finally:
            with lock:
                running[0] -= 1

    out = dict((i, r["value"]) for i, r in runner.map_blocks(task, range(20), shared=1, threads=3))
    assert out == {i: i * i + 1 for i in range(20)}
    assert 1 <= peak[0] <= 3


def test_threads_raise_task_errors_and_cancel():
    def bad(t, shared):
        if t == 4:
            raise ValueError("window 4 is broken")
        return t

    with pytest.raises(ValueError, match="window 4"):
        list(runner.map_threads(bad, range(10), 2, shared=0))
    seen = []
    with pytest.raises(runner.Cancelled):
        for i, _ in runner.map_threads(lambda t: t, range(10), 2, is_canceled=lambda: len(seen) >= 3):
            seen.append(i)
    assert len(seen) == 3


def test_run_windows_lets_go_of_each_window_before_the_next_is_computed():
    """A window's result is released once written, before the next window's task runs: only one window's
    arrays are alive at a time (``enumerate`` over the results kept the previous one until the next was done,
    a whole window more than the memory limit counts)."""
    import weakref

    from subsidence_toolkit.core.io.windows import run_windows

    alive, refs, written = [], [], []

    class Window(np.ndarray):
        pass

    def task(t, shared):
        alive.append(sum(r() is not None for r in refs))
        a = np.zeros((1, 2, 4)).view(Window)
        refs.append(weakref.ref(a))
        return {"out": a, "sums": t}

    blocks = [(2 * i, 2, 0, 4) for i in range(4)]
    partial = run_windows(task, list(range(4)), blocks, 4, "out", write=lambda r0, b: written.append(r0))
    assert written == [0, 2, 4, 6] and partial == {0: 0, 1: 1, 2: 2, 3: 3}
    assert alive == [0, 0, 0, 0]


_SIGNAL_STRESS = r"""
import faulthandler, random, signal, sys
import numpy as np
from subsidence_toolkit.core.io import tasks

faulthandler.dump_traceback_later(60, exit=True)  # a hang ends the run (exit 1) with every thread's stack


class Stop(BaseException):
    pass


state = {"armed": False, "cancel": False}


def handler(signum, frame):  # the plugin's SIGTERM handler: record and cancel, raise only where it may
    state["cancel"] = True
    if state["armed"] and (sys.argv[1] == "unshielded" or tasks.handler_may_raise()):
        state["armed"] = False
        raise Stop()


def task(seed):
    a = np.random.default_rng(seed).normal(size=(60, 60))
    for _ in range(3):
        a = a @ a.T / 60
    return seed


signal.signal(signal.SIGALRM, handler)
random.seed(0)
stopped = 0
for run in range(int(sys.argv[2])):
    state.update(armed=True, cancel=False)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0005, 0.02), 0.00003)  # then every 30 us
            if sys.argv[3] == "map_threads":
                for i, r in tasks.map_threads(task, range(200), 2, is_canceled=lambda: state["cancel"]):
                    pass
            else:  # a pool of the core (inner threads of a window), its results taken in order
                with tasks.thread_pool(2, "stress") as pool:
                    futures = [pool.submit(task, seed) for seed in range(200)]
                    try:
                        for fut in futures:
                            tasks.result_of(fut)
                            if state["cancel"]:
                                raise tasks.Cancelled()
                    finally:
                        with tasks.shielded():
                            for fut in futures:
                                fut.cancel()
        finally:
            state["armed"] = False  # the handler may still raise before this line (after a Cancelled): caught below
            signal.setitimer(signal.ITIMER_REAL, 0)
    except (Stop, tasks.Cancelled):
        stopped += 1
    signal.setitimer(signal.ITIMER_REAL, 0)  # disarmed: from here the handler raises nothing
print("stopped", stopped)
"""


@pytest.mark.parametrize("runner", ["map_threads", "pool"])
def test_a_signal_handler_raising_mid_run_never_hangs_the_threads(tmp_path, runner):
    """SIGTERM under qgis_process raises from the handler in the main thread: landing inside the pool's locks
    (concurrent.futures.wait takes each future's lock in a loop; a future's result waits on its condition) it left
    one held and the process hung. Inside the runner's shielded blocks the handler only cancels. 300 runs, each
    interrupted at a random moment and then every 30 us: without the shield this hung within 31-103 runs
    (map_threads, 3 tries) and within 13-285 (a pool of the core, 4 tries), Python 3.11. From Python 3.12 on the
    handler raises nowhere (tasks.SIGNAL_HANDLERS_MAY_RAISE): every run is stopped by the cancel."""
    import os
    import subprocess
    import sys

    import subsidence_toolkit

    script = tmp_path / "stress.py"
    script.write_text(_SIGNAL_STRESS)
    (tmp_path / "pkg").mkdir()  # the checkout's folder may have another name than the package
    os.symlink(os.path.dirname(os.path.abspath(subsidence_toolkit.__file__)), tmp_path / "pkg" / "subsidence_toolkit")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "pkg"))
    res = subprocess.run(
        [sys.executable, str(script), "shielded", "300", runner], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["stopped", "300"], res.stdout  # every run was stopped, none finished


def test_thread_pool_map_in_order_raises_and_stops_early():
    with runner.thread_pool(2, "test") as pool:
        assert list(pool.map(lambda a, b: a * b, range(6), range(6))) == [0, 1, 4, 9, 16, 25]

        def bad(k):
            if k == 3:
                raise ValueError("file 3 is damaged")
            return k

        with pytest.raises(ValueError, match="file 3"):
            list(pool.map(bad, range(6)))
        results = pool.map(lambda k: k, range(100))
        assert next(results) == 0
        results.close()  # the calls not started are dropped


@pytest.mark.parametrize("ahead", [False, True])
def test_map_threads_ahead_keeps_every_thread_busy_while_the_caller_writes(ahead):
    """``ahead``: the next task starts as soon as the caller takes a result (every thread computes while it
    writes), and at most ``threads`` results plus the one the caller holds are alive; without it the thread
    whose result the caller holds waits."""
    import threading
    import time
    import weakref

    lock = threading.Lock()
    started, alive, peak = [], [0], [0]

    class Window:
        def __init__(self, t):
            self.t = t
            with lock:
                alive[0] += 1
                peak[0] = max(peak[0], alive[0])
            weakref.finalize(self, _gone, alive, lock)

    def task(t, shared):
        with lock:
            started.append(t)
        time.sleep(0.002)
        return Window(t)

    got = []
    for i, res in runner.map_threads(task, range(12), 2, shared=0, ahead=ahead):
        assert res.t == i
        got.append(i)
        if len(got) == 1:  # the caller "writes" its first result
            deadline = time.monotonic() + 5.0  # (a loaded machine: wait for the threads, not a fixed time)
            while alive[0] < (3 if ahead else 2) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)  # time enough for a task that would start now
            assert len(started) == (3 if ahead else 2)
            assert alive[0] == (3 if ahead else 2)  # this one and both threads' next (ahead) or the other's
        del res
    assert sorted(got) == list(range(12))
    assert peak[0] == 2 + (1 if ahead else 0)  # the windows computing (or done) and the one the caller holds


def _gone(alive, lock):
    with lock:
        alive[0] -= 1
