"""Base class and parameter helpers shared by every algorithm of the provider.

Every subclass's ``processAlgorithm`` runs inside an output transaction (:mod:`.transaction`): inputs are
checked and outputs that would overwrite an input are refused before anything is written; outputs are
written to staging files the algorithm sees as its destination parameters and moved onto the real
destinations only when the whole run succeeded; any failure (exception, full disk, cancel, SIGTERM/SIGINT/SIGHUP)
removes them and becomes a one-line ``QgsProcessingException``. A new algorithm gets all of this by
subclassing :class:`SubsidenceAlgorithm`; it writes tables with :func:`.tables.write_table` (which reports
the rows sent so the transaction can check they all arrived).
"""

import contextlib
import functools
import os

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.io import blas
from ..core.io.errors import Cancelled, DaskUnavailable, TimeSeriesError
from ..core.io.rasters import compression_threads
from ..core.io.windows import DEFAULT_MEMORY_MB
from .compat import NumberType, ParameterFlag
from .transaction import OutputTransaction, input_problems, one_line_error, run_in_transaction

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui", "icons", "subsidence.svg")


def _in_transaction(process):
    """Wrap a subclass's ``processAlgorithm`` in the output transaction (see the module doc)."""

    @functools.wraps(process)
    def processAlgorithm(self, parameters, context, feedback):
        tx = OutputTransaction(self, parameters, context, feedback)
        self._transaction = tx

        def body(staged):
            said = blas.note()
            if said and feedback is not None:
                feedback.pushInfo(said)
            return process(self, staged, context, feedback)

        try:
            # BLAS on one thread for the run: the algorithms run their own windows on THREADS threads; the
            # GeoTIFFs they write compress their tiles on as many threads (core.io.rasters)
            with blas.one_thread(), compression_threads(self.writer_threads(parameters, context)):
                return run_in_transaction(self, tx, feedback, body)
        finally:
            self._transaction = None

    processAlgorithm._subsidence_transaction = True
    return processAlgorithm


class SubsidenceAlgorithm(QgsProcessingAlgorithm):
    """Thin base: subclasses set NAME, DISPLAY_NAME, GROUP, GROUP_ID, SHORT_HELP, TAGS and implement
    ``initAlgorithm`` and ``processAlgorithm`` (parameters -> one core call -> outputs), which runs in the
    output transaction automatically."""

    _transaction = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("processAlgorithm")
        if own is not None and not getattr(own, "_subsidence_transaction", False):
            cls.processAlgorithm = _in_transaction(own)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Name the parameter and the file for missing, empty, truncated or non-raster inputs, line layers
        given to polygon parameters, unknown CRSs and non-finite numbers (before QGIS's generic check)."""
        problem = input_problems(self, parameters, context)
        if problem:
            return False, problem
        return super().checkParameterValues(parameters, context)

    def expect_rows(self, name, count):
        """Tell the running transaction how many rows were sent to the table output ``name``."""
        if self._transaction is not None:
            self._transaction.expect_rows(name, count)

    def warn(self, feedback, text):
        """A warning in the log (pushWarning where it exists, reportError otherwise)."""
        if feedback is None:
            return
        if hasattr(feedback, "pushWarning"):
            feedback.pushWarning(text)
        else:
            feedback.reportError(text, False)

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    SHORT_HELP = ""
    TAGS = ()

    def tr(self, text):
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self):
        return type(self)()

    def name(self):
        return self.NAME

    def displayName(self):
        return self.tr(self.DISPLAY_NAME)

    def group(self):
        return self.tr(self.GROUP)

    def groupId(self):
        return self.GROUP_ID

    def tags(self):
        return [self.tr(t) for t in self.TAGS]

    def shortHelpString(self):
        return self.tr(self.SHORT_HELP)

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def prepareAlgorithm(self, parameters, context, feedback):
        """Names this run's layer-tree group (algorithm, first input, time) for the outputs QGIS loads."""
        from .styling import remember_run

        remember_run(self, parameters, context)
        return True

    def validateInputCrs(self, parameters, context):  # noqa: N802
        """No check here: Processing's (``processing.run`` calls it) loads every input path as a QGIS layer,
        whose default renderer computes band statistics and makes GDAL write an ``.aux.xml`` next to the
        user's input (hundreds for an interferogram stack). The algorithms read their inputs with GDAL and
        check grids and CRS themselves, with an error that names the file."""
        return True

    def postProcessAlgorithm(self, context, feedback):
        """Every output QGIS is about to load goes into this run's one layer-tree group."""
        from .styling import group_run_outputs

        group_run_outputs(self, context)
        return {}

    # ---------------------------------------------------------------- helpers
    def add(self, param, help_text, advanced=False, decimals=None):
        """Add a parameter with its help text (shown by the GUI and ``qgis_process help``).

        Labels do not say "(optional)": QGIS appends "[optional]" itself. Decimal numbers get a spin box
        with ``decimals`` places (default: as many as the default value needs, at least 2), so that e.g.
        a wavelength of 0.05546576 m is neither shown nor stored as 0.055466.
        """
        desc = param.description()
        if "optional)" in desc:
            param.setDescription(desc.replace(" (optional)", "").replace(", optional)", ")"))
        if decimals is None and any(u in desc for u in WHOLE_NUMBER_UNITS):
            decimals = 0
        _set_decimals(param, decimals)
        if hasattr(param, "setHelp"):
            param.setHelp(self.tr(help_text))
        if advanced:
            param.setFlags(param.flags() | ParameterFlag.Advanced)
        self.addParameter(param)
        return param

    #: help of the memory limit of runs whose windows read inputs through GDAL's block cache (counted under it)
    MEMORY_HELP_WITH_CACHE = (
        "Upper bound of the run's working memory, all threads together: the windows' arrays and GDAL's cache of "
        "the input blocks they read (a pixel-interleaved multiband GeoTIFF, GDAL's default layout, decodes every "
        "band of a tile at once: all its bands count, so its windows are smaller). Large grids are streamed in "
        "windows under this cap; results do not depend on it (to float rounding)."
    )

    MEMORY_HELP_WINDOWS = (
        "Upper bound of the run's working memory, all threads together: the windows' arrays and GDAL's cache of "
        "the input blocks that neighbouring windows share (GDAL's own default cache, 5 % of the RAM, is lowered to "
        "that for the run). Large grids are streamed in windows of whole 256 x 256 output tiles under this cap; "
        "results do not depend on it."
    )

    def add_memory_limit(self, name="MEMORY_LIMIT_MB", default=DEFAULT_MEMORY_MB, help_text=None):
        """The common memory cap parameter (MB); ``help_text`` says what the cap covers."""
        return self.add(
            QgsProcessingParameterNumber(
                name,
                self.tr("Memory limit (MB)"),
                NumberType.Double,
                defaultValue=default,
                minValue=0.001,
            ),
            help_text
            or (
                "Upper bound of the working memory used for one row block. Large stacks are streamed block "
                "by block under this cap; results do not depend on it."
            ),
            advanced=True,
        )

    def add_threads(self, name="THREADS"):
        """Windows computed at the same time in this process (0 = every core), under the one memory cap."""
        return self.add(
            QgsProcessingParameterNumber(
                name, self.tr("Threads (0 = all cores)"), NumberType.Integer, defaultValue=0, minValue=0, optional=True
            ),
            "Windows processed at the same time in this process (numpy, LAPACK and GDAL decoding run on one core "
            "each). The memory limit holds for all threads together (each window gets limit / threads). Results "
            "do not depend on it beyond float rounding (smaller windows may sum in another order). NetCDF and HDF "
            "inputs are read by one thread at a time (their libraries are not thread-safe): their reading does not "
            "scale, the arithmetic does. 0 = every core this process may use. Ignored with a Dask scheduler. During "
            "the run numpy's BLAS (OpenBLAS, MKL, BLIS) is set to one thread and restored afterwards: these "
            "threads replace its own (set SUBSIDENCE_BLAS_THREADS=keep to leave it alone). The GeoTIFF outputs "
            "compress their tiles on as many threads (with a Dask scheduler too: they are written here).",
            advanced=True,
        )

    def thread_count(self, parameters, context, name="THREADS", scheduler_name="DASK_SCHEDULER"):
        """Threads of this run: the parameter (0 = every core), 1 when it is absent or a Dask scheduler is set."""
        if self.parameterDefinition(name) is None:
            return 1
        if (
            self.parameterDefinition(scheduler_name) is not None
            and (self.parameterAsString(parameters, scheduler_name, context) or "").strip()
        ):
            return 1
        return self.writer_threads(parameters, context, name)

    def writer_threads(self, parameters, context, name="THREADS"):
        """Threads compressing the run's GeoTIFF outputs: the THREADS parameter (0 = every core; with a Dask
        scheduler too: the outputs are written here), every core for an algorithm without one."""
        from ..core.io.tasks import default_threads

        if self.parameterDefinition(name) is None:
            return default_threads()
        return self.parameterAsInt(parameters, name, context) or default_threads()

    def add_dask_scheduler(self, name="DASK_SCHEDULER"):
        """Optional address of a running dask.distributed scheduler (empty = run here)."""
        from ..core.io.tasks import dask_available

        note = (
            ""
            if dask_available()
            else " (dask.distributed is not installed in this QGIS Python: "
            "install python3-distributed / distributed to use it)"
        )
        return self.add(
            QgsProcessingParameterString(
                name, self.tr("Dask scheduler address") + note, defaultValue="", optional=True
            ),
            "Address of a running dask.distributed scheduler, e.g. tcp://10.0.0.5:8786. Row blocks then run "
            "as tasks on its workers, which must see the input and output paths (shared file system) and "
            "have numpy, scipy and GDAL; results are identical to a local run. Empty: run in this process." + note,
            advanced=True,
        )

    def map_blocks(
        self,
        task_fn,
        tasks,
        parameters,
        context,
        feedback,
        name="DASK_SCHEDULER",
        shared=None,
        report_progress=True,
        threads=None,
    ):
        """Run row-block tasks locally or on Dask (per the scheduler parameter), with progress and cancel.
        ``shared``: passed to every task as ``task_fn(task, shared)``, sent to Dask workers once.
        ``report_progress=False``: the caller sets the progress itself (e.g. several passes). ``threads``:
        without a scheduler, run that many tasks at a time in this process (core ``map_threads``); None: the
        algorithm's THREADS parameter (:meth:`thread_count`; its windows must be planned under cap / threads)."""
        from ..core.io.tasks import map_blocks

        scheduler = (
            (self.parameterAsString(parameters, name, context) or "").strip()
            if self.parameterDefinition(name) is not None
            else ""
        )
        if scheduler:
            feedback.pushInfo("Running %d row blocks on the Dask scheduler %s" % (len(tasks), scheduler))
        done = 0
        for i, result in map_blocks(
            task_fn,
            tasks,
            scheduler=scheduler or None,
            is_canceled=lambda: feedback is not None and feedback.isCanceled(),
            shared=shared,
            threads=1 if scheduler else (threads or self.thread_count(parameters, context)),
        ):
            done += 1
            if report_progress:
                feedback.setProgress(100.0 * done / max(1, len(tasks)))
            yield i, result

    @contextlib.contextmanager
    def core_errors(self):
        """Turn errors raised by core/ (which name the file, band or date) into one-line
        QgsProcessingExceptions (the transaction does this for the whole run; kept for blocks that want
        the conversion early)."""
        try:
            yield
        except QgsProcessingException:
            raise
        except (
            Cancelled,
            DaskUnavailable,
            TimeSeriesError,
            ValueError,
            KeyError,
            OSError,
            RuntimeError,
            MemoryError,
        ) as e:
            raise one_line_error(self, e, self._transaction) from None

    @staticmethod
    def check_canceled(feedback):
        """Raise :class:`~..core.io.errors.Cancelled` when the user pressed Cancel (call it once per block)."""
        if feedback is not None and feedback.isCanceled():
            raise Cancelled()


WHOLE_NUMBER_UNITS = ("(days)",)  # decimal parameters shown as whole numbers


def decimals_needed(value, at_least=2, at_most=10):
    """Decimal places that show ``value`` exactly (``0.05546576 -> 8``, ``2009.999 -> 3``, ``5.0 -> 2``)."""
    try:
        text = ("%.*f" % (at_most, float(value))).rstrip("0")
    except (TypeError, ValueError):
        return at_least
    places = len(text.split(".", 1)[1]) if "." in text else 0
    return max(at_least, min(at_most, places))


def _set_decimals(param, decimals=None):
    if not isinstance(param, QgsProcessingParameterNumber):
        return
    if param.dataType() != NumberType.Double:
        return
    meta = dict(param.metadata() or {})
    wrapper = dict(meta.get("widget_wrapper") or {})
    if "decimals" in wrapper and decimals is None:
        return
    wrapper["decimals"] = int(decimals) if decimals is not None else decimals_needed(param.defaultValue())
    meta["widget_wrapper"] = wrapper
    param.setMetadata(meta)


def layer_path(layer):
    """File path (or GDAL source string) of a raster layer, without QGIS's ``|option`` suffixes."""
    src = layer.source()
    if layer.providerType() == "gdal":
        return src.split("|")[0]
    return src
