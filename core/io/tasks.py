"""Run pure row-block tasks locally or on a Dask cluster, with the same results bit for bit.

A *task function* takes one picklable task description (e.g. ``(row0, nrows)`` plus the input
paths and parameters) and returns arrays; it reads its inputs itself from paths the workers can
reach (a shared file system) and has no side effects. :func:`map_blocks` runs such tasks and
yields ``(index, result)`` as they finish; the caller writes each result into the output files
(e.g. with :class:`~.rasters.RasterWriter`), so the outputs are assembled in one place and a
failed run leaves nothing behind.

Locally, tasks run one after the other in this process. With ``scheduler`` set to the address of
a running ``dask.distributed`` scheduler (``tcp://host:8786``) they run on its workers; at most
``max_in_flight`` tasks are outstanding so memory stays bounded, a task whose worker dies is
retried (``retries``), and cancelling stops submitting and cancels the outstanding futures.
Dask is optional: it is imported only when a scheduler is given.
"""

import contextlib
import importlib.util
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import Cancelled, DaskUnavailable

#: the plugin folder (core/io/tasks.py -> three levels up), made importable on Dask workers
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_LIBC = []


def give_back_free_memory():
    """Return the memory freed so far to the system (glibc's ``malloc_trim``; nothing elsewhere). Window runs call
    it after each window is written: glibc keeps freed blocks of a few hundred kB (GDAL's cached blocks, numpy
    temporaries) in its heap once frees have raised its mmap threshold, and the holes between live blocks are
    not reused by the next window's larger arrays (measured: a 1 000 x 1 000 x 120 downscaling from a
    pixel-interleaved model at 256 MB peaked 75 MB higher without it; ~1 ms per call)."""
    if not _LIBC:
        import ctypes
        import ctypes.util

        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.append(lib.malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


class _Shield(threading.local):
    depth = 0


_SHIELD = _Shield()


@contextlib.contextmanager
def shielded():
    """A block of this thread that an exception raised by a signal handler must not cut: waiting for, submitting,
    cancelling and joining threads. ``concurrent.futures`` and ``threading`` take several locks in Python code
    (``wait`` locks every future's condition in a loop, ``Event.wait`` releases and re-takes its condition): an
    exception raised between two of those steps leaves a lock held, and the thread that needs it next (a worker
    reporting its result, then this thread joining that worker) waits for ever. Measured: a handler raising at a
    random moment of :func:`map_threads` (200 tasks on 2 threads, then every 30 us) hung this process within 31-103
    runs; a ``qgis_process`` run sent SIGTERM hung the same way once in CI.

    A handler that stops a run by raising (the plugin's SIGTERM/SIGINT handler) raises only where
    :func:`handler_may_raise` (outside the shield, and never from Python 3.12 on); elsewhere it records the signal
    and cancels instead: the runners check the cancel as each task finishes (a task's time at most) and raise
    :class:`~.errors.Cancelled` at a safe point."""
    _SHIELD.depth += 1
    try:
        yield
    finally:
        _SHIELD.depth -= 1


def is_shielded():
    """True inside :func:`shielded` in this thread (a signal handler runs in the main thread: the main thread's)."""
    return _SHIELD.depth > 0


#: Whether a signal handler may stop a run by raising at all. From Python 3.12 on an exception raised by a
#: signal handler can escape the ``try`` around the code it interrupted: a loop whose ``try`` / ``except`` catches
#: the handler's exception let it through (uncaught) within 6 000 runs of one signal each on Python 3.13 and 3.14,
#: never on 3.11 (18 000 runs); CPython gh-148874 describes one such case (a ``with`` block's ``__exit__``
#: skipped). There the handlers only record the signal and cancel; 3.12 was not measured and is treated alike.
SIGNAL_HANDLERS_MAY_RAISE = sys.version_info < (3, 12)


def handler_may_raise():
    """Whether a signal handler that stops a run may raise here and now: Python older than 3.12
    (:data:`SIGNAL_HANDLERS_MAY_RAISE`) and outside :func:`shielded`; otherwise it records and cancels."""
    return SIGNAL_HANDLERS_MAY_RAISE and not is_shielded()


class ShieldedPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose ``submit``, ``map`` and ``shutdown`` (and so its ``with`` block's exit) run
    :func:`shielded`; take results with :func:`result_of`. Every thread pool of the core is one of these
    (:func:`thread_pool`): the main thread of ``qgis_process`` waits on them while a SIGTERM may arrive."""

    def submit(self, *args, **kwargs):
        with shielded():
            return super().submit(*args, **kwargs)

    def map(self, fn, *iterables, **kwargs):
        """The results in order (every call submitted at once, as ``Executor.map``); the ones not started are
        cancelled when the caller stops early."""
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        try:
            for fut in futures:
                yield result_of(fut)
        finally:
            with shielded():
                for fut in futures:
                    fut.cancel()

    def shutdown(self, *args, **kwargs):
        with shielded():
            return super().shutdown(*args, **kwargs)


def thread_pool(threads, name):
    """A :class:`ShieldedPool` of ``threads`` threads named ``name``-N."""
    return ShieldedPool(max_workers=max(1, int(threads)), thread_name_prefix=name)


def result_of(future):
    """``future.result()`` inside :func:`shielded` (waiting on a future's condition must not be cut short)."""
    with shielded():
        return future.result()


def dask_available():
    """True when ``dask.distributed`` can be imported."""
    return importlib.util.find_spec("distributed") is not None


_BOOTSTRAP = """
import importlib, importlib.util, os, sys
if {name!r} not in sys.modules:
    try:
        importlib.import_module({name!r})
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            {name!r}, os.path.join({root!r}, "__init__.py"), submodule_search_locations=[{root!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules[{name!r}] = module
        spec.loader.exec_module(module)
"""


def prepare_workers(client):
    """Make this package importable on every current and future worker of ``client``.

    The plugin may live in a folder whose name is not its package name (a git checkout), so
    workers register it the way QGIS does. The set-up is sent as source text run by ``exec``
    (a builtin), because a function of this package could not be unpickled before it exists there.
    """
    import functools

    code = _BOOTSTRAP.format(name=__name__.split(".")[0], root=PACKAGE_ROOT)
    client.register_worker_callbacks(setup=functools.partial(exec, code))
    client.run(functools.partial(exec, code))


def connect(scheduler, timeout=10):
    """A ``distributed.Client`` for ``scheduler`` with this package importable on every worker."""
    if not dask_available():
        raise DaskUnavailable(
            "a Dask scheduler was given (%s) but dask.distributed is not installed in this Python "
            "(Debian: apt-get install python3-distributed; elsewhere: pip install distributed)" % scheduler
        )
    from distributed import Client

    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise DaskUnavailable("cannot reach the Dask scheduler %s: %s" % (scheduler, e)) from None
    return client


def default_threads():
    """The cores this process may use (its CPU affinity where the OS tells it, else every core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def map_threads(task_fn, tasks, threads, shared=None, is_canceled=None, ahead=False):
    """Yield ``(index, task_fn(tasks[index], shared))`` computed by ``threads`` threads of this process, in
    completion order (numpy, LAPACK and GDAL release the GIL, so windows compute and decode on every core).

    At most ``threads`` tasks are outstanding and the next one is submitted only after the caller took
    the previous result (and, e.g., wrote it): memory stays at ``threads`` windows, so a caller that plans
    each window under ``memory / threads`` keeps the whole run under its cap. While the caller writes a
    result, the other threads compute (writing overlaps the solve), but the thread whose result it is waits.
    ``ahead``: the next task is submitted as soon as the caller takes a result, so every thread computes while
    the caller writes; memory is then ``threads`` windows plus the one result the caller holds (its plan must
    count that). An exception in a task is raised here; cancelling (``is_canceled``) or closing the generator
    drops the tasks not yet started and waits for the running ones. BLAS runs on one thread meanwhile
    (:func:`.blas.one_thread`): the threads here replace its own."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from .blas import one_thread

    tasks = list(tasks)
    is_canceled = is_canceled or (lambda: False)
    extra = () if shared is None else (shared,)
    n = max(1, int(threads))
    with one_thread():
        pool = thread_pool(n, "subsidence")
        pending = {}
        it = iter(enumerate(tasks))

        def submit_next():
            for i, task in it:
                pending[pool.submit(task_fn, task, *extra)] = i
                return True
            return False

        try:
            with shielded():  # the pool's machinery is not cut by a signal handler's exception (see shielded)
                for _ in range(n):
                    if not submit_next():
                        break
            while pending:
                with shielded():
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                ready = sorted(done, key=lambda f: pending[f], reverse=True)
                del done
                while ready:
                    # (no reference to a future kept once its result is taken: the caller's del frees the window)
                    fut = ready.pop()
                    i = pending.pop(fut)
                    result = result_of(fut)
                    del fut
                    if is_canceled():
                        raise Cancelled()
                    if ahead:
                        with shielded():
                            submit_next()
                    yield i, result
                    del result
                    if not ahead:
                        with shielded():
                            submit_next()
        finally:
            with shielded():
                for fut in pending:
                    fut.cancel()
            pool.shutdown(wait=True)


def map_blocks(
    task_fn, tasks, scheduler=None, client=None, max_in_flight=None, is_canceled=None, retries=2, shared=None, threads=1
):
    """Yield ``(index, task_fn(tasks[index]))`` for every task, in completion order.

    ``scheduler``/``client``: run on Dask (else locally, in order). ``is_canceled``: a callable
    polled between tasks; when it returns True, :class:`Cancelled` is raised after cancelling the
    outstanding futures. ``shared``: an object every task needs (e.g. coarse arrays, a reader):
    the call becomes ``task_fn(task, shared)``; on Dask it is sent to the workers once
    (scattered, replicated on every worker) instead of with every task. ``threads``: locally, run the
    tasks on this many threads (:func:`map_threads`, completion order) instead of one after the other.
    """
    tasks = list(tasks)
    is_canceled = is_canceled or (lambda: False)
    extra = () if shared is None else (shared,)
    if not scheduler and client is None and threads and threads > 1:
        yield from map_threads(task_fn, tasks, threads, shared=shared, is_canceled=is_canceled)
        return
    if not scheduler and client is None:
        for i, task in enumerate(tasks):
            if is_canceled():
                raise Cancelled()
            yield i, task_fn(task, *extra)
        return
    own = client is None
    scattered = ()
    with shielded():  # Dask's client waits on threading events too (see shielded)
        client = client or connect(scheduler)
    try:
        with shielded():
            prepare_workers(client)
            from distributed import as_completed

            nworkers = max(1, len(client.scheduler_info().get("workers", {})))
            if extra:
                extra = scattered = tuple(client.scatter(list(extra), broadcast=True, hash=False))
        window = max_in_flight or 2 * nworkers
        pending = {}
        it = iter(enumerate(tasks))
        ac = None

        def submit_next():
            try:
                i, task = next(it)
            except StopIteration:
                return None
            fut = client.submit(
                task_fn,
                task,
                *extra,
                pure=False,
                retries=retries,
                key="subsidence-block-%d-%s" % (i, os.urandom(4).hex()),
            )
            pending[fut.key] = (i, fut)
            if ac is not None:
                ac.add(fut)
            return fut

        with shielded():
            first = [f for f in (submit_next() for _ in range(window)) if f is not None]
        if not first:
            return
        ac = as_completed(first, loop=client.loop)
        while True:
            with shielded():
                fut = _next_done(ac, is_canceled)
            if fut is None:
                break
            if fut is _CANCELED or is_canceled():
                with shielded():
                    client.cancel([f for _, f in pending.values()])
                raise Cancelled()
            i, _ = pending.pop(fut.key)
            with shielded():
                result = fut.result()
                fut.release()
            yield i, result
            with shielded():
                submit_next()
    finally:
        with shielded():
            for f in scattered:
                f.release()
            if own:
                client.close()


_CANCELED = object()

#: seconds between two looks at the cancel flag while waiting for a Dask task
DASK_POLL_SECONDS = 0.1


def _next_done(ac, is_canceled, poll=DASK_POLL_SECONDS):
    """The next finished future of the ``distributed.as_completed`` ``ac``, None when none is left, or
    :data:`_CANCELED` as soon as ``is_canceled()`` (looked at every ``poll`` s: a cancel, or a SIGTERM that only
    cancels inside :func:`shielded`, does not wait for a task that may run for minutes on a worker)."""
    while not ac.has_ready():
        if ac.is_empty():
            return None
        if is_canceled():
            return _CANCELED
        time.sleep(poll)
    return next(ac, None)


def run_tasks_here_or(task_fn, tasks, run_tasks=None, shared=None):
    """Yield ``(index, task_fn(tasks[index], shared))``: here in order, or through
    ``run_tasks(task_fn, tasks, shared)`` (e.g. Dask via :func:`map_blocks`, any completion order;
    ``shared`` is what every task needs and goes to each worker once). The runner is closed when the
    consumer stops early (error, cancel), so outstanding tasks are dropped."""
    if run_tasks is None:
        for i, task in enumerate(tasks):
            yield i, task_fn(task, shared)
        return
    results = run_tasks(task_fn, tasks, shared)
    try:
        for item in results:
            yield item
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
