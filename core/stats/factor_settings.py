"""The small per-factor settings language of the Geodetector (no QGIS).

``'dem=quantile:10; ndvi=manual:0.2,0.4; landuse=categorical; gwsa=20'`` ->
``{'dem': {'method': 'quantile', 'k': 10}, 'ndvi': {'method': 'manual', 'breaks': [0.2, 0.4]},
'landuse': {'method': 'categorical'}, 'gwsa': {'k': 20}}``. Items are separated by ``;`` or new
lines; methods are those of :data:`core.stats.geodetector.DISCRETIZE_METHODS`.
"""

from . import geodetector as gd


def parse_overrides(text):
    """'dem=quantile:10; ndvi=manual:0.2,0.4; landuse=categorical; gwsa=20' -> {name: spec}."""
    out = {}
    for item in (text or "").replace("\n", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"per-factor setting {item!r}: expected name=method[:classes or breaks]")
        name, spec = (s.strip() for s in item.split("=", 1))
        method, _, arg = spec.partition(":")
        method = method.strip().lower()
        d = {}
        if method.isdigit():
            d["k"] = int(method)
        else:
            if method not in gd.DISCRETIZE_METHODS:
                raise ValueError(f"per-factor setting {item!r}: unknown method {method!r}")
            d["method"] = method
            arg = arg.strip()
            if method == "manual":
                try:
                    d["breaks"] = [float(v) for v in arg.split(",") if v.strip()]
                except ValueError:
                    raise ValueError(f"per-factor setting {item!r}: breaks must be numbers") from None
                if not d["breaks"]:
                    raise ValueError(f"per-factor setting {item!r}: manual needs break values")
            elif arg:
                d["k"] = int(arg)
        out[name] = d
    return out
