"""Modules imported on first use (core/io/lazy.py)."""

import copy
import sys
import threading

from subsidence_toolkit.core.io.lazy import lazy_module


def test_lazy_module_imports_on_first_attribute_once_from_any_thread():
    name = "colorsys"  # a small stdlib module nothing else here uses
    sys.modules.pop(name, None)
    m = lazy_module(name)
    assert name not in sys.modules and "imported" not in repr(m)
    got = []
    threads = [threading.Thread(target=lambda: got.append(m.rgb_to_hsv)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert name in sys.modules and len(got) == 4 and all(g is sys.modules[name].rgb_to_hsv for g in got)
    assert "imported" in repr(m)


def test_lazy_module_copied_without_init_does_not_recurse():
    m = lazy_module("json")
    c = copy.copy(m)
    assert c.dumps([1]) == "[1]"
