"""What the machine gave a benchmark: CPU time stolen by the hypervisor, and how well two threads can scale
right now. On a shared VM (2 vCPUs here) the host takes back part of the second core when it is busy, so a
1 -> 2 thread ratio means little without the ceiling measured beside it."""

import threading
import time

import numpy as np


def _cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[7]  # total jiffies (user .. steal), steal


class Steal:
    """``with Steal() as s: ...`` then ``s.fraction``: the share of this machine's CPU time the hypervisor
    stole during the block (``/proc/stat``; 0 where it is not reported)."""

    fraction = 0.0

    def __enter__(self):
        try:
            self._t0 = _cpu_times()
        except OSError:
            self._t0 = None
        return self

    def __exit__(self, *exc):
        if self._t0 is not None:
            t1 = _cpu_times()
            total, steal = t1[0] - self._t0[0], t1[1] - self._t0[1]
            self.fraction = steal / total if total > 0 else 0.0
        return False


def _reference_work(n=40):
    """Arithmetic that releases the GIL for its whole length (float64 matrix products of 384 x 384, ~10 ms each
    on one BLAS thread; the inputs stay in the core's cache)."""
    a = np.full((384, 384), 0.5)
    b = np.full((384, 384), 1.0 / 384)
    for _ in range(n):
        c = a @ b
    return c


def ceiling(n=40):
    """Speed-up of two threads over one on perfectly parallel work, measured now (1.0: the second core is
    not there; 2.0: it is all ours).

    BLAS is held to one thread while it measures (the plugin's ``blas.one_thread``): with BLAS on every core,
    the one-thread reference already uses both cores and the ratio reads ~1.0 on a machine that has two. The
    low ceilings printed before session 18 by callers that left BLAS on every core were that (see BENCHMARKS.md)."""
    import toolkit_package  # noqa: F401  (registers this checkout as subsidence_toolkit)

    from subsidence_toolkit.core.io.blas import one_thread

    with one_thread():
        return _ceiling(n)


def _ceiling(n, tries=3, work=None):
    """The best of ``tries`` for one thread and for two running ``work(n)`` (:func:`_reference_work` by default),
    after a warm-up (single short timings swing by 2x on a shared VM: a first run that pays for page faults or a
    clock ramp read as a ceiling above 2)."""
    work = work or _reference_work
    work(max(1, n // 4))
    one = two = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        work(n)
        one = min(one, time.perf_counter() - t)
        threads = [threading.Thread(target=work, args=(n,)) for _ in range(2)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        two = min(two, time.perf_counter() - t)
    return 2 * one / two


def status_kb(key):
    """A field of ``/proc/self/status`` in kB (Linux: ``VmRSS``, ``VmHWM`` ...), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _streaming_work(n=8, mb=64):
    """Arithmetic that streams through memory (float32 arrays of ``mb`` MB, far larger than the caches: a multiply
    and an add per element and pass), as the windows' element-wise steps do; numpy releases the GIL for each."""
    a = np.full(mb * 2**18, 0.5, dtype=np.float32)
    b = np.full_like(a, 1.5)
    for _ in range(n):
        np.multiply(a, b, out=b)
        np.add(a, b, out=b)
    return b


def streaming_ceiling(n=8, tries=3):
    """Speed-up of two threads over one on work bound by memory bandwidth (:func:`_streaming_work`), measured
    now: what two threads can give the element-wise parts of a window (reading, masking, residuals), where the
    two cores share the memory bus rather than each its cache (:func:`ceiling`)."""
    return _ceiling(n, tries, work=_streaming_work)


def _vmstat(keys):
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, _, v = line.partition(" ")
            if k in keys:
                out[k] = int(v)
    return out


class PageCounts:
    """``with PageCounts() as p: ...`` then ``p.allocated_gb`` (pages the kernel allocated during the block, in GB:
    anonymous memory faulted in, page cache filled), ``p.huge_faults_gb`` (anonymous memory faulted in as 2 MB
    pages) and ``p.faults`` (page faults), machine-wide from ``/proc/vmstat``; None where it is not readable.

    Why: on a VM whose freed memory goes back to its host (virtio-balloon free page reporting, as on the machines
    of this project's sessions), every page taken from the free lists is faulted in again by the host: the first
    touch of new memory ran at 0.38 GB/s there against 8.2 GB/s for memory touched before (:func:`first_touch`),
    so the memory a run allocates costs CPU seconds that a bare machine would not spend."""

    KEYS = ("pgalloc_normal", "pgalloc_dma32", "pgalloc_movable", "thp_fault_alloc", "pgfault")
    allocated_gb = huge_faults_gb = faults = None

    def __enter__(self):
        try:
            self._t0 = _vmstat(self.KEYS)
        except OSError:
            self._t0 = None
        return self

    def __exit__(self, *exc):
        if self._t0 is not None:
            t1 = _vmstat(self.KEYS)
            d = {k: t1.get(k, 0) - self._t0.get(k, 0) for k in self.KEYS}
            page = 4096
            self.allocated_gb = sum(d[k] for k in self.KEYS[:3]) * page / 2**30
            self.huge_faults_gb = d["thp_fault_alloc"] * 2 * 2**20 / 2**30
            self.faults = d["pgfault"]
        return False


def first_touch(mb=512):
    """(GB/s writing ``mb`` MB of new memory, GB/s writing it again): how much dearer memory the process has not
    touched yet is on this machine right now (kernel zeroing on a bare machine; on a VM that gives freed memory
    back to its host, the host's fault as well). Measured with one thread."""
    a = np.empty(mb * 2**18, dtype=np.float32)
    t = time.perf_counter()
    a.fill(1.0)
    first = time.perf_counter() - t
    t = time.perf_counter()
    a.fill(2.0)
    again = time.perf_counter() - t
    gb = a.nbytes / 1e9
    return gb / first, gb / again
