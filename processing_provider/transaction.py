"""The output transaction every toolkit algorithm runs in (wired by :class:`.base.SubsidenceAlgorithm`).

What a run guarantees, whatever the algorithm does:

1. **Inputs are checked first** (:func:`input_problems`): every raster given as a path or in a file list
   exists, is not empty, opens and (GeoTIFF) is not truncated; polygon-only parameters hold polygons; a
   given CRS is valid; numbers are finite. The message names the parameter and the file.
2. **No output can overwrite an input**: every output (and its side-cars: ``.aux.xml``, shapefile parts,
   GeoPackage journals) is compared by file identity with every file the inputs refer to (layer sources,
   ``NETCDF:"f":var``, ``/vsizip/``, wildcards, ``;``-separated lists, GeoPackage layers). A collision,
   or two outputs on one file, stops the run before anything is written, naming both parameters.
3. **Outputs are staged**: each file output (raster, FeatureSink table/layer, HTML report) is written to
   a hidden ``.NAME.<id>.partial.EXT`` beside its destination; the algorithm sees the staging path in its
   parameters. When the algorithm returns, every staged output is checked (rasters re-opened and their
   block table checked against the file size, tables re-opened and their row count compared with the rows
   sent) and only then are all of them moved onto their destinations together. On any failure (an
   exception, a full disk, cancel, SIGTERM/SIGINT/SIGHUP under ``qgis_process``) every staged file is removed and
   previous outputs stay byte-identical. A GeoPackage layer written into an existing (non-input)
   GeoPackage is staged on a copy of that file. What a run killed with ``kill -9`` left staged in a folder
   is removed by the next run into it (:func:`..core.io.staging.remove_stale`), and the log says so; a run
   killed while it moved its outputs into place is undone (:func:`..core.io.staging.recover_commit`).
4. **Errors are one line** (:func:`one_line_error`): GDAL ``RuntimeError``, ``OSError`` (disk full,
   read-only folder), ``MemoryError`` and core's ``TimeSeriesError`` become a ``QgsProcessingException``
   naming the output / file and what to do.
"""

import contextlib
import errno
import gc
import math
import os
import re
import shutil
import signal
import threading

from osgeo import gdal
from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
    QgsProcessingUtils,
    QgsProperty,
    QgsWkbTypes,
)

from ..core.io.errors import Cancelled, DaskUnavailable, TimeSeriesError
from ..core.io.integrity import file_damage
from ..core.io.rasters import diagnose_raster, gdal_quiet
from ..core.io.staging import StagedFiles, file_key, input_file_set, inside_staging_dir, sidecar_paths, source_files
from ..core.io.tasks import handler_may_raise

TEMPORARY = getattr(QgsProcessing, "TEMPORARY_OUTPUT", "TEMPORARY_OUTPUT")


def _enum(scoped, name, legacy_owner, legacy_name):
    """An enum value from its scoped home (QGIS >= 3.36 / 4) or its 3.22 name."""
    from qgis import core

    owner = getattr(core, "Qgis", None)
    for part in scoped.split("."):
        owner = getattr(owner, part, None)
    value = getattr(owner, name, None) if owner is not None else None
    return value if value is not None else getattr(legacy_owner, legacy_name)


SOURCE_RASTER = _enum("ProcessingSourceType", "Raster", QgsProcessing, "TypeRaster")
SOURCE_POLYGON = _enum("ProcessingSourceType", "VectorPolygon", QgsProcessing, "TypeVectorPolygon")
POLYGON_GEOMETRY = _enum("GeometryType", "Polygon", QgsWkbTypes, "PolygonGeometry")
LAYER_INPUTS = (
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterMultipleLayers,
)
RASTER_EXTENSIONS = (".tif", ".tiff", ".nc", ".nc4", ".cdf", ".h5", ".he5", ".hdf", ".vrt", ".img", ".grd")
PATH_INPUTS = LAYER_INPUTS + (QgsProcessingParameterFile, QgsProcessingParameterString)


class Interrupted(BaseException):
    """SIGTERM/SIGINT/SIGHUP arrived while an algorithm ran (BaseException: never swallowed by ``except Exception``)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# ------------------------------------------------------------------------------------------- inputs
def _layer_source(value, context):
    """The source string of one input value (path, layer, layer id, feature-source definition)."""
    if value is None:
        return None
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        value = value.source.staticValue()
    if hasattr(value, "source") and callable(value.source):  # a QgsMapLayer
        return value.source()
    text = str(value)
    if text and not os.path.exists(text.split("|")[0]):
        try:
            layer = QgsProcessingUtils.mapLayerFromString(text, context, False)
        except Exception:  # noqa: BLE001 (any failure: treat the text as a path)
            layer = None
        if layer is not None:
            return layer.source()
    return text


def input_sources(alg, parameters, context):
    """``[(parameter name, source string)]`` of every input that may refer to files."""
    out = []
    for d in alg.parameterDefinitions():
        if d.isDestination() or not isinstance(d, PATH_INPUTS):
            continue
        value = parameters.get(d.name())
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            s = _layer_source(v, context)
            if s:
                out.append((d.name(), s))
    return out


def _is_path_value(value):
    """A plain file path (not a layer id, a driver spec such as NETCDF:"f":v, a /vsi path or a URI)."""
    if not isinstance(value, str) or not value.strip():
        return False
    path = value.split("|")[0].strip()
    if path.startswith("/vsi") or re.match(r"^[A-Za-z][A-Za-z0-9_]+:", path) and not re.match(r"^[A-Za-z]:[\\/]", path):
        return False
    return os.sep in path or os.path.exists(path)


def input_problems(alg, parameters, context):
    """The first problem with the inputs as one line naming the parameter and file, else ``None``."""
    problem = _parameter_problems(alg, parameters, context)
    if problem:
        return problem
    for name, src in input_sources(alg, parameters, context):  # truncated netCDF/HDF5 in files and file lists
        for f in source_files(src):
            damage = file_damage(f)
            if damage:
                return "%s: %s" % (name, damage)
    return None


def _parameter_problems(alg, parameters, context):
    for d in alg.parameterDefinitions():
        name = d.name()
        value = parameters.get(name)
        if d.isDestination() or value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(d, (QgsProcessingParameterRasterLayer, QgsProcessingParameterMultipleLayers)):
            if isinstance(d, QgsProcessingParameterMultipleLayers) and d.layerType() != SOURCE_RASTER:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if _is_path_value(v):
                    problem = diagnose_raster(v.split("|")[0])
                    if problem:
                        return "%s: %s" % (name, problem)
        elif isinstance(d, QgsProcessingParameterFeatureSource):
            types = list(d.dataTypes())
            if _is_path_value(value) and not os.path.exists(value.split("|")[0]):
                return "%s: %s does not exist" % (name, value.split("|")[0])
            if _is_path_value(value) and os.path.getsize(value.split("|")[0]) == 0:
                return "%s: %s is an empty (0-byte) file" % (name, value.split("|")[0])
            if types and all(t == SOURCE_POLYGON for t in types):
                layer = alg.parameterAsVectorLayer(parameters, name, context)
                if layer is not None and layer.isValid() and layer.geometryType() != POLYGON_GEOMETRY:
                    return "%s: %s holds %s features; give a polygon layer" % (
                        name,
                        layer.name() or layer.source(),
                        QgsWkbTypes.geometryDisplayString(layer.geometryType()).lower(),
                    )
        elif isinstance(d, QgsProcessingParameterCrs):
            if not alg.parameterAsCrs(parameters, name, context).isValid():
                return "%s: %r is not a known coordinate reference system (e.g. EPSG:4326)" % (name, value)
        elif isinstance(d, QgsProcessingParameterNumber):
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):
                return "%s: %r is not a finite number" % (name, value)
    return None


# ------------------------------------------------------------------------------------------ outputs
def _optional(definition):
    return bool(definition.flags() & _enum("ProcessingParameterFlag", "Optional", type(definition), "FlagOptional"))


class Output:
    """One file destination of the run: parameter ``name``, ``kind`` (raster, sink, file), ``final`` path,
    optional GeoPackage ``layer`` and the ``staging`` path the algorithm writes."""

    def __init__(self, name, kind, final, layer=None, explicit_layer=False):
        self.name, self.kind, self.final, self.layer, self.explicit_layer = name, kind, final, layer, explicit_layer
        self.staging = None
        self.direct = False
        self.expected_rows = None


def _value_string(value, context):
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.valueAsString(context.expressionContext(), "")[0]
    return "" if value is None else str(value)


def _parse_sink(text, definition):
    """(path, layer or None) of a file sink destination, or ``None`` for memory/database sinks."""
    text = text.strip()
    if not text or text == TEMPORARY or text.startswith("memory:"):
        return None
    if text.startswith("ogr:"):
        files = source_files(text[4:]) or []
        m = re.search(r"dbname\s*=\s*'([^']*)'", text)
        t = re.search(r'table\s*=\s*"([^"]*)"', text)
        path = m.group(1) if m else (files[0] if files else None)
        return (path, t.group(1) if t else None) if path else None
    if ":" in text.split("/")[0] and not os.path.isabs(text):  # postgres:, spatialite:, ...
        return None
    path, _, opts = text.partition("|")
    layer = None
    if opts.startswith("layername="):
        layer = opts[len("layername=") :]
    if not os.path.splitext(path)[1]:
        path += "." + definition.defaultFileExtension()
    return path, layer


class OutputTransaction:
    """Stage, check and commit (or roll back) every file output of one algorithm run (see the module doc)."""

    def __init__(self, alg, parameters, context, feedback, staging_dir=False):
        self.alg, self.parameters, self.context, self.feedback = alg, dict(parameters), context, feedback
        self.outputs = {}
        self.files = StagedFiles(staging_dir=staging_dir)
        self.committed = False
        self._after_commit = []

    # ------------------------------------------------------------------ begin
    def begin(self):
        """Check inputs and outputs, stage every file output; returns the parameters the algorithm runs with."""
        problem = input_problems(self.alg, self.parameters, self.context)
        if problem:
            raise QgsProcessingException(problem)
        self._resolve_outputs()
        self._check_collisions()
        staged = dict(self.parameters)
        for out in self.outputs.values():
            self._check_folder(out)
            if inside_staging_dir(out.final):  # a model's step: the model's transaction stages this output
                out.staging, out.direct = out.final, True
                continue
            out.staging = self.files.add(out.final, single_dot=out.kind == "sink" and out.layer is not None)
            if out.kind == "sink" and out.explicit_layer and os.path.exists(out.final):
                shutil.copyfile(out.final, out.staging)  # the other layers of the GeoPackage are kept
            staged[out.name] = self._staged_value(self.parameters.get(out.name), out)
        self._report_recovery()
        return staged

    def _report_recovery(self):
        """Say what the clean-up after killed earlier runs did in this run's output folders."""
        if self.feedback is None:
            return
        recovered = self.files.recovered
        warn = getattr(self.feedback, "pushWarning", self.feedback.pushInfo)
        if recovered.get("restored"):
            warn(
                "put back the previous %s, which an earlier run killed while it moved its outputs into place "
                "had replaced" % ", ".join(sorted(recovered["restored"]))
            )
        if recovered.get("removed"):
            warn(
                "removed %s, which an earlier run killed while it moved its outputs into place had left (there was "
                "no previous file)" % ", ".join(sorted(recovered["removed"]))
            )
        if recovered.get("kept"):
            warn(
                "kept %s: hidden copies of previous outputs that an earlier killed run set aside and that could "
                "not be put back (a newer file has the name); rename or remove them yourself"
                % ", ".join(sorted(recovered["kept"]))
            )
        if self.files.stale:
            folders = sorted({os.path.dirname(p) for p in self.files.stale})
            self.feedback.pushInfo(
                "removed %d hidden staged file(s) that a killed earlier run left in %s"
                % (len(self.files.stale), ", ".join(folders))
            )

    def _resolve_outputs(self):
        scratch = QgsProcessingContext()
        for d in self.alg.destinationParameterDefinitions():
            name, value = d.name(), self.parameters.get(d.name())
            text = _value_string(value, self.context)
            if not text.strip() and _optional(d) and not d.createByDefault():
                continue
            if isinstance(d, QgsProcessingParameterRasterDestination):
                path = self.alg.parameterAsOutputLayer(self.parameters, name, scratch)
                if path:
                    self.outputs[name] = Output(name, "raster", os.path.abspath(path))
            elif isinstance(d, QgsProcessingParameterFileDestination):
                path = self.alg.parameterAsFileOutput(self.parameters, name, scratch)
                if path:
                    self.outputs[name] = Output(name, "file", os.path.abspath(path))
            elif isinstance(d, (QgsProcessingParameterFeatureSink, QgsProcessingParameterVectorDestination)):
                parsed = _parse_sink(text, d)
                if parsed:
                    path, layer = parsed
                    ext = os.path.splitext(path)[1].lower()
                    default_layer = os.path.splitext(os.path.basename(path))[0] if ext == ".gpkg" else None
                    self.outputs[name] = Output(
                        name, "sink", os.path.abspath(path), layer or default_layer, explicit_layer=layer is not None
                    )

    def _check_collisions(self):
        sources = input_sources(self.alg, self.parameters, self.context)
        owners = {}
        folders = []  # folder inputs (a LiCSAR frame, a HyP3 download): every file under them is an input
        for pname, src in sources:
            for key, path in input_file_set([src]).items():
                owners.setdefault(key, (pname, path))
            if os.path.isdir(src):
                folders.append((pname, os.path.join(os.path.realpath(src), "")))
        seen = {}
        for out in self.outputs.values():
            for p in sidecar_paths(out.final):
                hit = owners.get(file_key(p)) if os.path.exists(p) else None
                if hit is None and os.path.isfile(p):
                    real = os.path.realpath(p)
                    hit = next(((pname, real) for pname, folder in folders if real.startswith(folder)), None)
                if hit:
                    raise QgsProcessingException(
                        "%s: the output %s would overwrite the input %s (%s); choose another output file — "
                        "nothing was written" % (out.name, out.final, hit[0], hit[1])
                    )
            key = (os.path.realpath(out.final), out.layer if out.explicit_layer else None)
            if key in seen:
                raise QgsProcessingException(
                    "%s and %s are the same file %s; give each output its own file — "
                    "nothing was written" % (seen[key], out.name, out.final)
                )
            seen[key] = out.name

    def _check_folder(self, out):
        folder = os.path.dirname(out.final)
        if os.path.isdir(out.final):
            raise QgsProcessingException("%s: %s is a folder; give a file name" % (out.name, out.final))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise QgsProcessingException(
                "%s: cannot create the folder %s (%s); choose another output folder"
                % (out.name, folder, e.strerror or e)
            ) from None
        if not os.access(folder, os.W_OK):
            try:
                ro = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
            except OSError:
                ro = False
            why = "read-only file system" if ro else "permission denied"
            raise QgsProcessingException(
                "%s: cannot write to the folder %s (%s); choose another output folder "
                "— nothing was written" % (out.name, folder, why)
            )

    def _staged_value(self, value, out):
        if out.kind == "sink" and out.layer:
            target = "ogr:dbname='%s' table=\"%s\" (geom)" % (out.staging, out.layer)
        else:
            target = out.staging
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            staged = QgsProcessingOutputLayerDefinition(value)
            staged.sink = QgsProperty.fromValue(target)
            if value.destinationProject is not None:
                # Processing loads the final file, never the staging one: register it here, under its real
                # path, as QGIS would have (the staged definition has no project, so nothing else registers)
                self._load_on_completion(value, out)
                staged.destinationProject = None
            return staged
        return target

    def _load_on_completion(self, value, out):
        definition = self.alg.parameterDefinition(out.name)
        name, output_name = value.destinationName, ""
        if (
            not name
            and definition is not None
            and definition.flags()
            & _enum("ProcessingParameterFlag", "IsModelOutput", type(definition), "FlagIsModelOutput")
        ):
            name, output_name = definition.description(), definition.name()
        hint = getattr(QgsProcessingUtils, "LayerHint", None)
        # QgsProcessingUtils.LayerHint itself on every QGIS (Qgis.LayerType, 3.30+, is another enum that
        # LayerDetails refuses on 3.40+)
        if out.kind == "raster":
            hint = hint.Raster if hint else None
        elif out.kind == "sink":
            hint = hint.Vector if hint else None
        else:
            return
        final = (
            out.final if out.kind == "raster" or not out.explicit_layer else "%s|layername=%s" % (out.final, out.layer)
        )
        details = QgsProcessingContext.LayerDetails(name, value.destinationProject, output_name, hint)
        self.context.addLayerToLoadOnCompletion(final, details)

    # ------------------------------------------------------------------ rows sent to sinks
    def expect_rows(self, name, count):
        """A table writer says how many rows it sent to output ``name``; checked at :meth:`finish`."""
        out = self.outputs.get(name)
        if out is not None:
            out.expected_rows = int(count)

    def staged_for(self, path):
        """The output whose staging file is (or contains) ``path``, else ``None``."""
        text = str(path or "")
        hits = [o for o in self.outputs.values() if o.staging and not o.direct and o.staging in text]
        if not hits and self.files.directory is None:  # flat staging names are unique: a bare name will do
            hits = [
                o for o in self.outputs.values() if o.staging and not o.direct and os.path.basename(o.staging) in text
            ]
        return max(hits, key=lambda o: len(o.staging)) if hits else None

    # ------------------------------------------------------------------ finish
    def finish(self, results, signals=None):
        """Check every staged output, move them all onto their destinations and map results to final paths.
        ``signals`` (:class:`InterruptState`): a signal received so far stops the run before the first move;
        from the first move on, signals are only recorded (the caller looks at ``signals.received``)."""
        results = dict(results or {})
        for out in self.outputs.values():
            written = out.staging and os.path.exists(out.staging)
            claimed = results.get(out.name) not in (None, "")
            if claimed and not written:
                raise QgsProcessingException("%s was not written (%s); nothing was written" % (out.name, out.final))
            if written:
                self._check_written(out)
        if signals is not None:
            signals.check()
            signals.hold()
        self.files.commit()
        self.committed = True
        for fn in self._after_commit:
            fn()
        return {k: self._final_value(v) for k, v in results.items()}

    def after_commit(self, fn):
        """Call ``fn()`` once every output is on its destination (e.g. to style the loaded layer)."""
        self._after_commit.append(fn)

    def final_path(self, path):
        """The destination of a staging path (other paths unchanged)."""
        return self._final_value(str(path))

    def _check_written(self, out):
        if out.kind == "raster":
            problem = diagnose_raster(out.staging)
            if problem:
                raise QgsProcessingException(
                    "%s could not be written completely (%s); nothing was written"
                    % (out.name, problem.replace(out.staging, out.final))
                )
        elif out.kind == "sink":
            count = _feature_count(out.staging, out.layer)
            if count is None:
                raise QgsProcessingException(
                    "%s: %s could not be written (the file cannot be read back; is the "
                    "disk full?); nothing was written" % (out.name, out.final)
                )
            if out.expected_rows is not None and count != out.expected_rows:
                raise QgsProcessingException(
                    "%s: only %d of %d rows reached %s (is the disk full?); nothing was "
                    "written" % (out.name, count, out.expected_rows, out.final)
                )
        elif os.path.getsize(out.staging) == 0:
            raise QgsProcessingException(
                "%s: %s came out empty (is the disk full?); nothing was written" % (out.name, out.final)
            )

    def _final_value(self, value):
        if isinstance(value, str):
            out = self.staged_for(value)
            if out is not None:
                value = value.replace(out.staging, out.final)
                if not out.explicit_layer and "|layername=" in value:
                    value = value.split("|")[0]
        elif isinstance(value, (list, tuple)):
            value = type(value)(self._final_value(v) for v in value)
        return value

    def abort(self):
        self.files.rollback()
        for out in self.outputs.values():
            if out.direct:  # inside the enclosing transaction's staging folder: ours to remove
                for p in sidecar_paths(out.final):
                    if os.path.isfile(p):
                        try:
                            os.remove(p)
                        except OSError:
                            pass


def _feature_count(path, layer=None):
    try:
        ds = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    except RuntimeError:
        return None
    if ds is None:
        return None
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        return None
    try:
        return int(lyr.GetFeatureCount(True))
    except RuntimeError:
        return None


def release_frames(error):
    """Free, now and with GDAL quiet, the frames a failed run's exception (and the exceptions chained to it)
    still holds, and the GDAL datasets their variables hold: a dataset whose file can no longer be written
    (a full disk) fails to close, and would otherwise close whenever the exception is freed, raising from
    its destructor where Python can only print a traceback; on Windows a file still open cannot be removed.
    Call it after the one-line message is made (it needs nothing of the frames) and before the staged
    files are removed."""
    todo, seen = [error], set()
    with gdal_quiet():
        while todo:
            e = todo.pop()
            if e is None or id(e) in seen:
                continue
            seen.add(id(e))
            e.__traceback__ = None
            todo += [e.__cause__, e.__context__]
        # frames in reference cycles wait for the collector: run it here in the main thread (qgis_process);
        # not in QGIS's task threads, where it could finalise the GUI's Qt objects away from their thread
        if threading.current_thread() is threading.main_thread():
            gc.collect()


# ------------------------------------------------------------------------------------------ signals
#: the signals :func:`interrupt_guard` turns into a clean stop (SIGHUP does not exist on Windows)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class InterruptState:
    """What :func:`interrupt_guard` saw: the signals received while the algorithm ran.

    The handler records every signal and cancels the feedback (the core stops at its next cancel check). It
    raises :class:`Interrupted` only while *armed* (:meth:`arm`: the algorithm's body, inside its ``try``), and
    only once: a signal arriving before the ``try`` is entered, during the moves into place or during the
    clean-up is recorded and looked at by the caller, never raised where nothing would catch it. Python
    swallows exceptions raised inside weakref callbacks, ``__del__`` and garbage-collector callbacks
    ("Exception ignored in ..."): the record and the cancel still stop the run, and :meth:`check` (called
    again before the outputs are committed) raises. Nor does it raise while the main thread is inside thread
    machinery (:func:`~..core.io.tasks.shielded`: waiting for window threads, a writer thread): an exception there
    would leave a lock held and the process hung; the cancel stops the run as the current window finishes. From
    Python 3.12 on it never raises (:data:`~..core.io.tasks.SIGNAL_HANDLERS_MAY_RAISE`: the exception could escape
    the transaction's ``try``): every run stops at its next cancel check, and :meth:`check` after the body."""

    def __init__(self, feedback=None):
        self.feedback = feedback
        self.received = []
        self._armed = False

    def handler(self, signum, frame):
        self.note(signum)
        if self._armed and handler_may_raise():  # else (thread machinery, Python 3.12+) the cancel stops the run
            self._armed = False
            raise Interrupted(signum)

    def note(self, signum):
        """Record ``signum`` handed on by a run inside this one (a model's step, already cleaned up): never
        raised here, in the step's Python called from QGIS's C++; the step's error stops the model, whose
        own clean-up then reports the signal."""
        self.received.append(signum)
        if self.feedback is not None:
            try:
                self.feedback.cancel()
            except Exception:  # noqa: BLE001
                pass

    def arm(self):
        """From now on the first signal raises :class:`Interrupted` (at once, if one arrived already)."""
        self._armed = True
        self.check()

    def hold(self):
        """From now until the end of the run, signals are recorded but raise nothing: moving outputs into
        place and cleaning up are not cut short (a second SIGTERM, or Ctrl-C pressed twice, would otherwise
        leave staged files or half-restored previous outputs). The caller looks at :attr:`received` once the
        guard has put the previous handlers back."""
        self._armed = False

    def check(self):
        """Raise :class:`Interrupted` if a signal arrived (even one whose exception was swallowed)."""
        if self.received:
            self._armed = False
            raise Interrupted(self.received[0])

    def replace(self, error):
        """The exception to handle: ``Interrupted`` when a signal arrived, whatever the code then raised
        (e.g. the core's cancel exception after the handler's own exception was swallowed)."""
        if self.received and not isinstance(error, Interrupted):
            return Interrupted(self.received[0])
        return error


@contextlib.contextmanager
def interrupt_guard(feedback=None):
    """While an algorithm runs in the main thread (``qgis_process``), SIGTERM, SIGINT and SIGHUP (the terminal
    or SSH session closed; not under ``nohup``, which ignores it) are recorded in the :class:`InterruptState`
    it yields, and raise :class:`Interrupted` once it is armed, so the transaction can remove staged files;
    the previous handlers come back after. Outside the main thread the state never records anything."""
    state = InterruptState(feedback)
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {}
    for sig in SIGNALS:
        try:
            old = signal.getsignal(sig)
            if old in (signal.SIG_IGN, None):
                continue
            signal.signal(sig, state.handler)
            previous[sig] = old
        except (ValueError, OSError):
            pass
    try:
        yield state
    finally:
        for sig, old in previous.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError):
                pass


def deliver(interrupted):
    """After clean-up, outside :func:`interrupt_guard`: let the signal do what it did before the run.
    SIG_DFL terminates the process (``qgis_process`` dies of SIGTERM, as it would have without us); an
    enclosing run's guard (a model running this step) records it (:meth:`InterruptState.note`); another
    Python handler runs. Python's own SIGINT handler is left out: its ``KeyboardInterrupt`` would only reach
    QGIS's C++ as a traceback; the caller's one-line "Interrupted by SIGINT" error ends the run instead."""
    try:
        previous = signal.getsignal(interrupted.signum)
    except (ValueError, OSError):
        return
    owner = getattr(previous, "__self__", None)
    if isinstance(owner, InterruptState):
        owner.note(interrupted.signum)
        return
    if previous is signal.default_int_handler:
        return
    if previous == signal.SIG_DFL or callable(previous):
        signal.raise_signal(interrupted.signum)


def run_in_transaction(alg, tx, feedback, body, describe=None, raise_in_body=True):
    """Run ``body(staged parameters) -> results`` in the output transaction ``tx`` under :func:`interrupt_guard`
    (every toolkit algorithm and the shipped models): stage, run, check, move into place; on any failure the
    one-line error of ``describe(exception, tx)`` (default :func:`one_line_error`), the failed run's frames
    released and every staged file removed; a signal handed on to the handler from before the run once the
    clean-up is done. Returns the results with the final paths.

    ``raise_in_body`` False: a signal during ``body`` is only recorded (and cancels the feedback), the run stops
    when ``body`` returns. For a body in QGIS's C++ that calls back into Python (a model running its steps,
    feedback methods, parameter checks): an exception raised in such a callback would abort the process."""
    if describe is None:
        describe = lambda exc, t: one_line_error(alg, exc, t)  # noqa: E731
    error = results = None
    with interrupt_guard(feedback) as signals:
        try:
            if raise_in_body:
                signals.arm()  # a signal from here on raises Interrupted (one that came already: now)
            else:
                signals.check()  # one that came already stops the run; later ones are recorded
            results = body(tx.begin())
            signals.check()  # a signal whose exception was swallowed (see InterruptState) stops the run
            results = tx.finish(results, signals)  # from the first move on, signals are only recorded
        except BaseException as e:  # noqa: BLE001 (every failure path removes the staged outputs)
            try:
                signals.hold()  # no signal may cut the clean-up short
            except Interrupted:  # the first one, arriving as this failure was being handled: recorded
                pass
            error = describe(signals.replace(e), tx)  # first: it looks at the disk as the failure left it
            release_frames(e)  # the failed run's open datasets are closed (quietly) before their files go
            tx.abort()
    # the handlers from before the run are back: every signal that arrived until now is in signals.received
    if signals.received:
        if error is None:  # it arrived while the outputs were moved into place: they were all moved
            name = signal.Signals(signals.received[0]).name
            error = QgsProcessingException("Interrupted by %s after every output was written" % name)
        if feedback is not None:
            feedback.reportError(str(error.args[0]) if error.args else "Interrupted", True)
        deliver(Interrupted(signals.received[0]))  # the handler from before the run gets the signal
    if error is not None:
        raise error from None
    return results


# ------------------------------------------------------------------------------------------ errors
MAX_MESSAGE = 600


def _first_line(text):
    """The last non-empty line of a message (GDAL puts the cause last), cut to MAX_MESSAGE characters."""
    lines = [s.strip() for s in str(text).strip().splitlines() if s.strip()]
    line = lines[-1] if lines else ""
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 40].rstrip() + " … (%d more characters)" % (len(line) - MAX_MESSAGE + 40)
    return line


def _output_named(tx, text):
    """(parameter name, final path) of the output a message refers to, else (None, None)."""
    if tx is None:
        return None, None
    out = tx.staged_for(text)
    if out is None:
        for o in tx.outputs.values():
            if o.final in str(text):
                out = o
    if out is None:
        outs = list(tx.outputs.values())
        staged = [(t, o) for o in outs for t in [_staged_mtime(o)] if t is not None]
        if len(outs) == 1:
            out = outs[0]
        elif staged:  # the output being written when it failed: the latest staged file
            out = max(staged, key=lambda item: item[0])[1]
    return (out.name, out.final) if out is not None else (None, None)


def _staged_mtime(out):
    """Latest modification time of the files staged for ``out`` (the staging file or a writer's own
    temporary beside it), else ``None``."""
    if not out.staging:
        return None
    folder, base = os.path.split(out.staging)
    stem = os.path.splitext(base)[0]
    times = []
    try:
        for n in os.listdir(folder):
            if n.startswith(stem) or n.startswith("." + base):
                times.append(os.path.getmtime(os.path.join(folder, n)))
    except OSError:
        return None
    return max(times) if times else None


def clean_message(text, tx):
    """Replace staging paths in a message by the paths the user gave."""
    text = str(text)
    if tx is not None:
        for o in sorted(tx.outputs.values(), key=lambda o: -len(o.staging or "")):
            if o.staging and not o.direct:
                text = text.replace(o.staging, o.final)
                if tx.files.directory is None:
                    text = text.replace(os.path.basename(o.staging), os.path.basename(o.final))
                else:
                    text = text.replace(os.path.dirname(o.staging) + os.sep, os.path.dirname(o.final) + os.sep)
    return text


def _full_folders(tx):
    """Output folders whose file system has (almost) no free space left."""
    folders = []
    for o in tx.outputs.values() if tx is not None else []:
        folder = os.path.dirname(o.final)
        if low_space(folder) and folder not in folders:
            folders.append(folder)
    return folders


def low_space(folder, margin=64 * 1024):
    """True when the file system of ``folder`` has (almost) no free space left: a write error there is a
    full disk (the margin covers what a failed writer freed while cleaning up)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < max(margin, 4 * st.f_frsize)


def _write_failure(tx, text, filename=None, code=None):
    """A one-line message for an output that could not be written, or ``None`` if ``text`` is not about that."""
    low = text.lower()
    full = _full_folders(tx)
    disk_full = code == errno.ENOSPC or "no space left" in low or "disk is full" in low or "disk full" in low
    read_only = code == errno.EROFS or "read-only file system" in low
    denied = code in (errno.EACCES, errno.EPERM) or "permission denied" in low
    about_output = tx is not None and (
        tx.staged_for(text + " " + str(filename or "")) is not None
        or "could not create layer" in low
        or "could not be written" in low
        or "io error writing" in low
    )  # GDAL >= 3.10 libtiff: names no file
    if not (disk_full or read_only or denied or (full and about_output)):
        return None
    name, final = _output_named(tx, text + " " + str(filename or ""))
    where = "%s (%s)" % (name, final) if name else None
    if disk_full or full:
        folders = ", ".join(full) or (os.path.dirname(final) if final else "the output folder")
        return "%s: the disk is full (%s); free space or choose another folder — nothing was written" % (
            where or "output",
            folders,
        )
    why = "read-only file system" if read_only else "permission denied"
    return "%s cannot be written (%s); choose another output folder — nothing was written" % (
        where or (filename or "an output"),
        why,
    )


def one_line_error(alg, exc, tx=None):
    """``exc`` as a one-line QgsProcessingException naming the file / output and what to do."""
    if isinstance(exc, QgsProcessingException):
        text = clean_message(_first_line(str(exc)) or str(exc), tx)
        ours = tx is not None and any(text.startswith(n + ":") or text.startswith(n + " (") for n in tx.outputs)
        return QgsProcessingException(text if ours else (_write_failure(tx, text) or text))
    if isinstance(exc, Interrupted):
        name = signal.Signals(exc.signum).name
        return QgsProcessingException("Interrupted by %s: no output was written" % name)
    if isinstance(exc, Cancelled) or type(exc).__name__ in ("Canceled", "Cancelled"):
        return QgsProcessingException("Canceled: no output was written.")
    if isinstance(exc, MemoryError):
        hint = " lower MEMORY_LIMIT_MB (advanced parameter) or" if alg.parameterDefinition("MEMORY_LIMIT_MB") else ""
        return QgsProcessingException(
            "not enough memory for this run:%s process a smaller area or fewer dates; nothing was written" % hint
        )
    text = clean_message(_first_line(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc), tx)
    if isinstance(exc, (TimeSeriesError, DaskUnavailable)):
        return QgsProcessingException(text)
    if isinstance(exc, KeyError):
        return QgsProcessingException("missing item %s" % text)
    if isinstance(exc, (OSError, RuntimeError)):
        filename = getattr(exc, "filename", None)
        message = _write_failure(
            tx, clean_message(str(exc), tx), clean_message(filename or "", tx), getattr(exc, "errno", None)
        )
        if message:
            return QgsProcessingException(message)
    if isinstance(exc, ValueError):
        return QgsProcessingException(text)
    if isinstance(exc, OSError):
        where = clean_message(getattr(exc, "filename", None) or "", tx)
        return QgsProcessingException("%s%s" % ("%s: " % where if where and where not in text else "", text))
    if isinstance(exc, RuntimeError):  # GDAL: find the damaged input if there is one
        for pname, src in input_sources(alg, getattr(tx, "parameters", {}) or {}, QgsProcessingContext()):
            for f in source_files(src):
                if os.path.splitext(f)[1].lower() not in RASTER_EXTENSIONS:
                    continue
                problem = diagnose_raster(f)
                if problem:
                    return QgsProcessingException("%s: %s" % (pname, problem))
        return QgsProcessingException("GDAL error: %s" % text)
    return QgsProcessingException("%s: %s (unexpected; please report it with the log)" % (type(exc).__name__, text))
