"""Styles applied to the toolkit's raster outputs when QGIS loads them.

How an algorithm uses it (once per raster output, after the file is written,
at the end of ``processAlgorithm``)::

    from ..processing_provider.styling import style_output

    style_output(self, context, out_path, "velocity")                  # group named after the run
    style_output(self, context, ts_path, "timeseries")
    style_output(self, context, rmse_path, "quality")
    style_output(self, context, gwsa_path, "gwsa")

``style_output`` only acts when Processing is going to load the output (the
user kept "Open output file after running", or ``processing.runAndLoadResults``):
it attaches a post-processor to the output's
``QgsProcessingContext.LayerDetails``. Under ``qgis_process`` or
``processing.run`` with plain paths nothing is loaded and nothing happens.
Pass ``load=True`` for an extra file that is not a destination parameter: it is
then added with ``context.addLayerToLoadOnCompletion``.

Styles (all single-band pseudocolor, continuous interpolation):

* ``velocity`` -- diverging ``RdBu`` ramp centred on 0, symmetric limits
  ``+-max(|p2|, |p98|)`` of the band's values (2nd/98th percentiles of a
  decimated read of at most 10^6 pixels), rounded outward to two significant
  digits (:func:`nice_limits`: 54.840598 -> 55). Red = negative (subsidence, away from
  the satellite), blue = positive (uplift).
* ``timeseries`` / ``gwsa`` -- the same diverging rule on the **last band**
  (the latest date: cumulative displacement / storage anomaly at the end).
* ``quality`` (coherence, RMSE, p-values, counts) -- sequential ``Viridis``
  ramp between the 2nd and 98th percentiles.

Every output QGIS loads at the end of a run (rasters, tables) goes into one layer-tree group per run,
named after the algorithm (or the shipped model), its first input and the time, e.g.
``SBAS inversion – 20190103_20190115.geo.unw.tif +57 – 14:52:07`` (``(2)`` appended if taken). The base
class names the run in ``prepareAlgorithm`` (:func:`remember_run`) and gives the outputs without a style
a grouping post-processor in ``postProcessAlgorithm`` (:func:`group_run_outputs`). The run's id and name
live on the run's context (dynamic properties of its temporary layer store), so a model's steps share
one group. The group is searched in the whole tree, because QGIS desktop inserts each later output at the
current insertion point (inside the group just created); a new group never nests inside another run's.
``group_name`` of :func:`style_output` is only the fallback name.

On QGIS >= 3.38 time-series rasters also get per-band temporal ranges (band
``k`` valid from its date to the next band's date, see
:func:`core.timeseries.pixel_series.band_time_ranges`) so the temporal controller steps
through the dates; older versions (3.22) skip this (guarded with ``hasattr``).

The post-processor objects are kept alive in a module-level dict (Processing
holds only a C++ pointer to them).
"""

import datetime as _dt
import itertools
import math
import os
import re

import numpy as np
from qgis.core import (
    QgsColorRampShader,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

from ..core.io.errors import TimeSeriesError
from ..core.io.rasters import open_raster, read_dates
from ..core.timeseries import pixel_series
from .base import layer_path

KINDS = ("velocity", "timeseries", "quality", "gwsa")
DIVERGING = ("velocity", "timeseries", "gwsa")
LAST_BAND = ("timeseries", "gwsa")
PERCENTILES = (2.0, 98.0)
MAX_SAMPLE_PIXELS = 1_000_000
RUN_PROPERTY = "subsidence_toolkit/run"
RUN_ID_PROPERTY = "subsidence_toolkit_run_id"  # dynamic Qt properties of the run context's layer store
RUN_TITLE_PROPERTY = "subsidence_toolkit_run_title"
KIND_PROPERTY = "subsidence_toolkit/kind"

# Keeps the post-processors alive: {dest_path: OutputStyler}. The last run writing a path wins.
_POST_PROCESSORS = {}
_counter = itertools.count(1)


# --------------------------------------------------------------------------- ramps
def _ramp(style_name, colors):
    """The ramp ``style_name`` of the QGIS default style or, without it, a gradient through ``colors``
    (five RGB tuples at 0, 0.25, 0.5, 0.75 and 1)."""
    style = QgsStyle.defaultStyle()
    ramp = style.colorRamp(style_name) if style is not None else None
    if ramp is None:
        c = [QColor(*rgb) for rgb in colors]
        ramp = QgsGradientColorRamp(c[0], c[4], False, [QgsGradientStop(0.25 * i, c[i]) for i in (1, 2, 3)])
    return ramp


def diverging_ramp():
    """ColorBrewer RdBu (red = low/negative, white = 0, blue = high/positive)."""
    return _ramp("RdBu", [(202, 0, 32), (244, 165, 130), (247, 247, 247), (146, 197, 222), (5, 113, 176)])


def sequential_ramp():
    """Viridis (perceptually uniform, colour-blind safe)."""
    return _ramp("Viridis", [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)])


# --------------------------------------------------------------------------- styles
def style_band_and_limits(path, kind):
    """``(band, (vmin, vmax), dates)`` the style of ``kind`` uses for the raster at ``path``.

    ``dates`` is the list of band dates for a dated multiband raster, else ``None``.
    """
    ds = open_raster(path)
    dates = None
    if ds.RasterCount >= 2:
        try:
            dates = read_dates(ds, require=False)
        except TimeSeriesError:
            dates = None
    band = ds.RasterCount if kind in LAST_BAND else 1
    values = pixel_series.sample_band(ds, band, MAX_SAMPLE_PIXELS)
    limits = pixel_series.robust_limits(values, PERCENTILES[0], PERCENTILES[1], symmetric=kind in DIVERGING)
    if limits is None:
        limits = (-1.0, 1.0) if kind in DIVERGING else (0.0, 1.0)
    return band, nice_limits(*limits, symmetric=kind in DIVERGING), dates


def _round_out(value, step, up):
    q = value / step
    q = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
    return float(round(q * step, 12))


def nice_limits(vmin, vmax, symmetric=False):
    """Legend limits rounded outward to two significant digits of the range: ``54.840598 -> 55``,
    ``(0.2134, 0.8871) -> (0.21, 0.89)``; symmetric limits stay symmetric."""
    span = max(abs(vmin), abs(vmax)) if symmetric else vmax - vmin
    if not (span > 0) or not math.isfinite(span):
        return vmin, vmax
    step = 10.0 ** (math.floor(math.log10(span)) - 1)
    if symmetric:
        lim = _round_out(max(abs(vmin), abs(vmax)), step, True)
        return -lim, lim
    return _round_out(vmin, step, False), _round_out(vmax, step, True)


_QUALITY_WORDS = re.compile(r"coheren|rms|sigma|std|count|quality|p_?value|residual|number|used|gap", re.I)


def detect_kind(path, name=""):
    """The toolkit style for a raster by its metadata: ``timeseries`` / ``gwsa`` for dated multiband
    rasters (storage by ``KIND`` or name), ``quality`` for undated multiband rasters and single bands
    named like coherence/RMS/σ/counts or without negative values, else ``velocity``."""
    ds = open_raster(path)
    md = ds.GetMetadata() or {}
    kind_text = " ".join(str(md.get(k, "")) for k in ("KIND", "kind", "QUANTITY", "quantity"))
    storage = pixel_series.series_kind(name, md, path) == pixel_series.STORAGE
    if ds.RasterCount >= 2:
        try:
            dates = read_dates(ds, require=False)
        except TimeSeriesError:
            dates = None
        if dates:
            return "gwsa" if storage else "timeseries"
        return "quality"
    desc = " ".join([ds.GetRasterBand(1).GetDescription() or "", name or "", os.path.basename(str(path)), kind_text])
    if storage:
        return "gwsa" if ds.RasterCount >= 2 else "velocity"
    if _QUALITY_WORDS.search(desc):
        return "quality"
    values = pixel_series.sample_band(ds, 1, 250_000)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0:
        return "quality"
    return "velocity"


def apply_toolkit_style(layer):
    """Style any toolkit raster by its metadata (:func:`detect_kind`). Returns the kind applied."""
    if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
        raise ValueError("not a valid raster layer: %r" % (layer.name() if layer is not None else None))
    kind = detect_kind(layer_path(layer), layer.name())
    apply_style(layer, kind)
    return kind


def apply_style(layer, kind):
    """Give a raster layer the pseudocolor style of ``kind`` (see the module docstring).

    Returns ``(band, vmin, vmax)``.
    """
    if kind not in KINDS:
        raise ValueError("unknown output kind %r; expected one of %s" % (kind, ", ".join(KINDS)))
    if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
        raise ValueError("not a valid raster layer: %r" % (layer.name() if layer is not None else None))
    band, (vmin, vmax), dates = style_band_and_limits(layer_path(layer), kind)
    ramp = diverging_ramp() if kind in DIVERGING else sequential_ramp()
    from .compat import ShaderClassification, ShaderInterpolation

    shader_fn = QgsColorRampShader(vmin, vmax, ramp, ShaderInterpolation.Linear, ShaderClassification.Continuous)
    shader_fn.classifyColorRamp(5, -1)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(vmin)
    renderer.setClassificationMax(vmax)
    layer.setRenderer(renderer)
    layer.setCustomProperty(KIND_PROPERTY, kind)
    if dates and kind in LAST_BAND:
        set_band_temporal_ranges(layer, dates)
    layer.triggerRepaint()
    return band, vmin, vmax


def set_band_temporal_ranges(layer, dates):
    """Per-band temporal ranges (QGIS >= 3.38). Returns True when set, False on older QGIS."""
    props = layer.temporalProperties()
    if not hasattr(props, "setFixedRangePerBand"):
        return False
    from qgis.core import Qgis, QgsDateTimeRange
    from qgis.PyQt.QtCore import QDateTime

    ranges = {}
    for band, (start, end) in enumerate(pixel_series.band_time_ranges(dates), start=1):
        ranges[band] = QgsDateTimeRange(QDateTime(start), QDateTime(end), True, False)
    props.setMode(Qgis.RasterTemporalMode.FixedRangePerBand)
    props.setFixedRangePerBand(ranges)
    props.setIsActive(True)
    return True


# --------------------------------------------------------------------------- layer tree
def _walk_groups(group):
    for g in group.findGroups(True):
        yield g


def find_run_group(root, run_id):
    """The group of run ``run_id`` anywhere in the tree (or None)."""
    for g in _walk_groups(root):
        if g.customProperty(RUN_PROPERTY) == run_id:
            return g
    return None


def _unique_group_name(root, name):
    return pixel_series.unique_label(name, {g.name() for g in _walk_groups(root)})


def move_to_run_group(layer, project, group_name, run_id):
    """Move the layer's tree node into the group of run ``run_id`` (created on first use).

    The group is searched in the whole tree: QGIS desktop inserts a run's later outputs at the
    current insertion point, which after the first output is *inside* the group just created.
    A new group is created next to the layer, but never inside another run's group (it climbs
    out of those), so runs never nest whatever the layer-tree selection.
    """
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return None
    group = find_run_group(root, run_id)
    if group is None:
        parent = node.parent() or root
        child = node
        while parent is not root and parent.customProperty(RUN_PROPERTY):
            child = parent
            parent = parent.parent() or root
        index = parent.children().index(child) if child in parent.children() else 0
        group = parent.insertGroup(index, _unique_group_name(root, group_name))
        group.setCustomProperty(RUN_PROPERTY, run_id)
    if node.parent() is group:
        return group
    old_parent = node.parent() or root
    clone = node.clone()
    group.addChildNode(clone)
    old_parent.removeChildNode(node)
    return group


class OutputStyler(QgsProcessingLayerPostProcessorInterface):
    """Post-processor: style the loaded layer (``kind``; None = keep its style) and put it into its run's group."""

    def __init__(self, kind, group_name, run_id):
        super().__init__()
        self.kind = kind
        self.group_name = group_name
        self.run_id = run_id

    def postProcessLayer(self, layer, context, feedback):
        if self.kind is not None:
            try:
                apply_style(layer, self.kind)
            except Exception as e:  # a style must never fail a finished run
                if feedback is not None:
                    feedback.pushInfo("Subsidence Toolkit: could not style %s: %s" % (layer.name(), e))
        if self.group_name:
            project = context.project() or QgsProject.instance()
            try:
                move_to_run_group(layer, project, self.group_name, self.run_id)
            except Exception as e:  # grouping must never fail a finished run either
                if feedback is not None:
                    feedback.pushInfo("Subsidence Toolkit: could not group %s: %s" % (layer.name(), e))


def run_title(alg, parameters, context, when=None):
    """``"SBAS inversion – 20190101_20190113.unw +11 – 14:52:07"``: algorithm, first input, time.

    Names a run's layer-tree group so that two runs of one algorithm can be told apart.
    """
    title = alg.displayName() if alg is not None else "Subsidence Toolkit"
    title = title.split(" (")[0]
    first = ""
    for pdef in alg.parameterDefinitions() if alg is not None else []:
        if pdef.isDestination() or pdef.name() not in parameters:
            continue
        value = parameters.get(pdef.name())
        if value in (None, "", []):
            continue
        try:
            first = _input_label(alg, pdef, parameters, context)
        except Exception:  # noqa: BLE001 - a label is cosmetic
            first = ""
        if first:
            break
    when = when or _dt.datetime.now()
    parts = [title] + ([first] if first else []) + [when.strftime("%H:%M:%S")]
    return " \u2013 ".join(parts)


LAYER_PARAMETER_TYPES = ("raster", "vector", "source", "layer", "mesh", "multilayer", "file", "pointcloud")


def _input_label(alg, pdef, parameters, context):
    """A short name of an input layer/file parameter's value, without loading any layer."""
    if pdef.type() not in LAYER_PARAMETER_TYPES:
        return ""
    value = parameters.get(pdef.name())
    values = value if isinstance(value, (list, tuple)) else [value]
    values = [v for v in values if v not in (None, "")]
    if not values:
        return ""
    extra = " +%d" % (len(values) - 1) if len(values) > 1 else ""
    return _short(_value_name(values[0], context)) + extra


def _value_name(value, context):
    if hasattr(value, "source") and hasattr(value, "name") and callable(value.name):  # a map layer
        return value.name()
    if hasattr(value, "source") and hasattr(value.source, "staticValue"):  # feature source definition
        value = value.source.staticValue()
    text = str(value)
    project = context.project() if context is not None else None
    layer = project.mapLayer(text) if project is not None else None
    if layer is not None:
        return layer.name()
    text = text.split("|")[0]
    if text.upper().startswith("NETCDF:"):
        text = text.split(":")[1].strip('"')
    return os.path.basename(text.rstrip("/\\")) or text


def _short(text, n=32):
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _store(context):
    """The run's QObject that lives exactly as long as the run's context (its temporary layer store):
    a model's steps share it, a new run (new context) gets a fresh one."""
    try:
        return context.temporaryLayerStore()
    except Exception:  # noqa: BLE001 - not a real QgsProcessingContext
        return None


def _run_state(alg, context):
    """``[run_id, title]`` shared by every output of one run: kept on the run's context (so the steps of a
    model run share one group), else on the running algorithm instance."""
    store = _store(context)
    if store is not None:
        rid = store.property(RUN_ID_PROPERTY)
        if rid:
            return [str(rid), store.property(RUN_TITLE_PROPERTY) or None]
        rid = "run-%d-%d" % (os.getpid(), next(_counter))
        store.setProperty(RUN_ID_PROPERTY, rid)
        return [rid, None]
    holder = alg if alg is not None else context
    state = getattr(holder, "_subsidence_run_state", None)
    if state is None:
        state = ["run-%d-%d" % (os.getpid(), next(_counter)), None]
        try:
            holder._subsidence_run_state = state
        except AttributeError:
            pass
    return state


def _set_title(alg, context, title):
    store = _store(context)
    if store is not None:
        store.setProperty(RUN_TITLE_PROPERTY, title)
    else:
        _run_state(alg, context)[1] = title


def remember_run(alg, parameters, context):
    """Called before a run (base class ``prepareAlgorithm``; the shipped models' too): names the run's group
    after the first algorithm of the run (a model before its steps), its first input and the time."""
    state = _run_state(alg, context)
    if not state[1]:
        try:
            title = run_title(alg, parameters, context)
        except Exception:  # noqa: BLE001 - cosmetic
            title = None
        if title:
            _set_title(alg, context, title)
            state[1] = title
    return state


def group_run_outputs(alg, context):
    """Put every output of this run that Processing will load into the run's group (called after a run
    by the base class ``postProcessAlgorithm``); outputs already given a post-processor keep theirs."""
    state = _run_state(alg, context)
    title = state[1] or (alg.displayName() if alg is not None else "Subsidence Toolkit")
    n = 0
    for dest in list(context.layersToLoadOnCompletion().keys()):
        details = context.layerToLoadOnCompletionDetails(dest)
        if details.postProcessor() is not None:
            continue
        styler = OutputStyler(None, title, state[0])
        _POST_PROCESSORS[dest] = styler
        details.setPostProcessor(styler)
        n += 1
    return n


def style_output(alg, context, dest_path, kind, group_name=None, name=None, load=False):
    """Style ``dest_path`` as ``kind`` when Processing loads it; group it with the run's other outputs.

    ``alg``: the running algorithm (the group is named after it, its first input and the time);
    ``context``: the ``QgsProcessingContext`` of ``processAlgorithm``;
    ``kind``: one of ``velocity``, ``timeseries``, ``quality``, ``gwsa``;
    ``group_name``: a fixed group name instead;
    ``load=True`` loads ``dest_path`` even if it is not a destination
    parameter (layer name ``name``). Returns the post-processor, or ``None``
    when the output is not going to be loaded.
    """
    if kind not in KINDS:
        raise ValueError("unknown output kind %r; expected one of %s" % (kind, ", ".join(KINDS)))
    tx = getattr(alg, "_transaction", None)
    if tx is not None and not tx.committed:  # the output is staged: style its final file once committed
        tx.after_commit(lambda: style_output(alg, context, tx.final_path(dest_path), kind, group_name, name, load))
        return None
    dest_path = str(dest_path)
    if not context.willLoadLayerOnCompletion(dest_path):
        project = context.project()
        if not load or project is None:
            return None
        label = name or os.path.splitext(os.path.basename(dest_path))[0]
        context.addLayerToLoadOnCompletion(dest_path, QgsProcessingContext.LayerDetails(label, project, label))
    state = _run_state(alg, context)
    title = state[1] or group_name or (alg.displayName() if alg is not None else None)
    styler = OutputStyler(kind, title, state[0])
    _POST_PROCESSORS[dest_path] = styler
    context.layerToLoadOnCompletionDetails(dest_path).setPostProcessor(styler)
    return styler
