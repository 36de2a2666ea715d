"""Modules imported on first use.

QGIS imports every enabled plugin when it starts, and so does each ``qgis_process`` run, whatever algorithm it
runs: pandas and SciPy imported at the top of the algorithm modules cost ~0.5-1 s of every start (measured
with ``python3 -X importtime``). Modules that need them take them from here, as ``pd = lazy_module("pandas")``,
and the import happens on the first attribute used (under the interpreter's import lock, so also from a
worker thread).
"""

import importlib
import threading


class LazyModule:
    """A stand-in for the module ``name``, imported on its first attribute access."""

    __slots__ = ("_name", "_module", "_lock")

    def __init__(self, name):
        self._name = name
        self._module = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._module is None:
                self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr):
        if attr in LazyModule.__slots__:  # not set yet (an instance made without __init__, e.g. by copy)
            raise AttributeError(attr)
        return getattr(self._module or self._load(), attr)

    def __repr__(self):
        return "<lazy module %r%s>" % (self._name, "" if self._module is None else ", imported")


def lazy_module(name):
    """A :class:`LazyModule` for ``name`` (e.g. ``"pandas"``, ``"scipy.stats"``)."""
    return LazyModule(name)
