"""Register this checkout as the package ``subsidence_toolkit`` (the benchmarks run from a plain checkout,
not from an installed plugin). Importing the module registers it; ``register()`` is idempotent."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def register():
    if "subsidence_toolkit" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "subsidence_toolkit", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["subsidence_toolkit"] = mod
        spec.loader.exec_module(mod)


register()
