"""Raster inputs as file paths, without loading QGIS layers.

Resolving a raster layer parameter the usual way (``parameterAsLayerList`` / ``parameterAsRasterLayer``)
creates a ``QgsRasterLayer`` for every path that is not yet a layer of the project. Its default renderer
computes band statistics (a read of the whole band) and GDAL saves them as an ``.aux.xml`` side-car **next
to the user's input**: for a stack of hundreds of interferograms that is a second read of the data, memory
outside the algorithm's cap, and files written into a data folder that may be read-only or shared.

The algorithms read their rasters with GDAL themselves, so a path is all they need: :func:`raster_paths`
takes a parameter's value as it was given (file paths, GDAL sources, layers, layer ids or names of the
project) and turns it into paths, loading a layer only for what it cannot resolve otherwise (e.g. an
expression-based value in a model).
"""

import os

from qgis.core import QgsMapLayer, QgsProcessingUtils

from ..core.io.rasters import diagnose_raster
from .base import layer_path
from .compat import ParameterFlag


def _gdal_can_stat(path):
    from osgeo import gdal

    return gdal.VSIStatL(path) is not None


def _as_path(item, context):
    """Path of one parameter item, or None when only QGIS can resolve it."""
    if isinstance(item, QgsMapLayer):
        return layer_path(item)
    if not isinstance(item, str) or not item:
        return None
    # a layer already in the project or the context's store (by id, name or source): no new layer is loaded
    layer = QgsProcessingUtils.mapLayerFromString(item, context, False)
    if layer is not None:
        return layer_path(layer)
    path = item.split("|")[0] if "|" in item and os.path.exists(item.split("|")[0]) else item
    if os.path.isfile(path) or (path.startswith("/vsi") and _gdal_can_stat(path)):
        return path
    return None


def raster_paths(alg, parameters, name, context):
    """File paths of a multiple-raster parameter, without loading layers for paths (see the module doc).

    Items that are not a path, a layer or a layer of the project (e.g. a value QGIS must evaluate) make
    the whole list go through ``parameterAsLayerList`` as before."""
    value = parameters.get(name)
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) == 1 and isinstance(items[0], str) and ";" in items[0] and not os.path.exists(items[0]):
        items = [s for s in items[0].split(";") if s]
    paths = [_as_path(item, context) for item in items]
    if all(p is not None for p in paths):
        return paths
    return [layer_path(lyr) for lyr in (alg.parameterAsLayerList(parameters, name, context) or [])]


def raster_path(alg, parameters, name, context):
    """File path of a single-raster parameter (None when empty), without loading a layer for a path."""
    value = parameters.get(name)
    if value is None or value == "":
        return None
    path = _as_path(value, context)
    if path is not None:
        return path
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    return layer_path(layer) if layer is not None else None


def parameters_to_check(alg, parameters, context, names):
    """``parameters`` for Processing's ``checkParameterValues`` without the optional raster parameters
    ``names`` whose values are file paths (checked here with GDAL: missing, empty, not a raster, truncated):
    its check loads every such path as a layer (statistics and an ``.aux.xml`` next to each input). Returns
    (parameters, error message naming the parameter and the file, or '')."""
    light = dict(parameters)
    for name in names:
        pdef = alg.parameterDefinition(name)
        value = parameters.get(name)
        if pdef is None or value in (None, "", []) or not pdef.flags() & ParameterFlag.Optional:
            continue
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(i, (str, QgsMapLayer)) for i in items):
            continue
        if len(items) == 1 and isinstance(items[0], str) and ";" in items[0] and not os.path.exists(items[0]):
            items = [s for s in items[0].split(";") if s]
        resolved = [_as_path(i, context) for i in items]
        for i, p in zip(items, resolved):
            # the same one-line diagnosis (missing, empty, not a raster, truncated) as the layer parameters get
            if p is None and isinstance(i, str) and os.path.isabs(i.split("|")[0]):
                return light, "%s: %s" % (name, diagnose_raster(i.split("|")[0]) or "%s cannot be read" % i)
            if p is not None and not p.startswith("/vsi"):
                problem = diagnose_raster(p)
                if problem:
                    return light, "%s: %s" % (name, problem)
        if all(p is not None for p in resolved):
            light[name] = None
    return light, ""
