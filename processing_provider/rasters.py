"""Raster parameter glue: output paths, date parameters."""

import os

from qgis.core import QgsProcessingException

from ..core.io.dates import parse_date
from ..core.io.errors import TimeSeriesError


def output_raster_path(alg, parameters, name, context):
    """Destination path of a raster output; only GeoTIFF is written."""
    path = alg.parameterAsOutputLayer(parameters, name, context)
    if not path:
        raise QgsProcessingException("no destination given for %s" % name)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".tif", ".tiff"):
        raise QgsProcessingException(
            "%s: %s is not a GeoTIFF path; time-series outputs are written as .tif" % (name, path)
        )
    return path


def parse_date_param(text, label):
    """An optional YYYY-MM-DD parameter; ``None`` when empty. Raises naming the parameter."""
    text = (text or "").strip()
    if not text:
        return None
    d = parse_date(text)
    if d is None:
        raise TimeSeriesError("%s: %r is not a date (YYYY-MM-DD)" % (label, text))
    return d


def parse_date_list(text, label):
    """Comma/space separated dates, or ``None`` when empty."""
    text = (text or "").replace(";", ",").replace(" ", ",")
    items = [s for s in text.split(",") if s.strip()]
    if not items:
        return None
    return [parse_date_param(s, "%s item %d" % (label, i + 1)) for i, s in enumerate(items)]
