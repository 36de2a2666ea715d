"""The ``subsidence`` Processing provider. Its id prefixes every algorithm id: never change it."""

import os

from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..algorithms.decompose_los import DecomposeLos
from ..algorithms.dem_error import DemError
from ..algorithms.geodetector import Geodetector, GeodetectorRaster, GeodetectorTable
from ..algorithms.grace_downscaling import GraceDownscaling
from ..algorithms.groundwater_anomaly import GroundwaterAnomaly
from ..algorithms.lagged_correlation import LaggedCorrelation
from ..algorithms.mask_by_quality import MaskByQuality
from ..algorithms.mosaic_frames import MosaicFrames
from ..algorithms.project_los import ProjectLos
from ..algorithms.resample_timeseries import ResampleTimeSeries
from ..algorithms.sample_deformation_classes import SampleDeformationClasses
from ..algorithms.sbas_inversion import SbasInversion
from ..algorithms.validate_time_series import ValidateTimeSeries
from ..algorithms.workflow_report import WorkflowReport
from .base import ICON

PROVIDER_ID = "subsidence"

# One entry per algorithm class, listed explicitly (no discovery by file name).
ALGORITHMS = [
    ResampleTimeSeries,
    GraceDownscaling,
    GroundwaterAnomaly,
    SampleDeformationClasses,
    ValidateTimeSeries,
    LaggedCorrelation,
    Geodetector,
    GeodetectorTable,
    GeodetectorRaster,
    SbasInversion,
    ProjectLos,
    DecomposeLos,
    MosaicFrames,
    WorkflowReport,
    MaskByQuality,
    DemError,
]


def _version():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "metadata.txt")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("version="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ""


MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")
# shipped models: file name -> (algorithm name, display name)
MODELS = {
    "workflow.model3": ("workflow", "Subsidence\u2013groundwater workflow"),
    "workflow_regional.model3": ("workflowregional", "Subsidence\u2013groundwater workflow, several frames"),
}


class ShippedModel(QgsProcessingModelAlgorithm):
    """A .model3 shipped with the plugin, offered under a stable id and a readable name."""

    def __init__(self, path, name, display_name):
        super().__init__()
        self._args = (path, name, display_name)
        self.fromFile(path)

    def name(self):
        return self._args[1]

    def displayName(self):
        return self._args[2]

    def group(self):
        return "Workflows"

    def groupId(self):
        return "workflows"

    def createInstance(self):
        return ShippedModel(*self._args)

    def prepareAlgorithm(self, parameters, context, feedback):
        # one layer-tree group for the whole model run, named after the model (its steps share the context)
        from .styling import remember_run

        remember_run(self, parameters, context)
        return super().prepareAlgorithm(parameters, context, feedback)

    def processAlgorithm(self, parameters, context, feedback):
        """Run the model; a failing step's error names the step and says why (QGIS 3.22 only says
        'Error encountered while running <step>' and reports the reason separately)."""
        from .model_errors import ErrorRecorder, step_failure
        from .transaction import OutputTransaction, clean_message, one_line_error, run_in_transaction

        recorder = ErrorRecorder(feedback)

        def describe(exc, tx):
            if isinstance(exc, QgsProcessingException):  # a step failed: name it and say why
                return QgsProcessingException(clean_message(step_failure(self, str(exc), recorder.errors), tx))
            return one_line_error(self, exc, tx)

        # the model's outputs: all or nothing, staged in a folder under their own names (reports link each other)
        tx = OutputTransaction(self, parameters, context, feedback, staging_dir=True)
        return run_in_transaction(
            self,
            tx,
            feedback,
            lambda staged: QgsProcessingModelAlgorithm.processAlgorithm(self, staged, context, recorder),
            describe,
            raise_in_body=False,  # C++ runs the steps: a signal is recorded and cancels the feedback
        )


class SubsidenceProvider(QgsProcessingProvider):
    """The provider; ``load_models=False`` leaves out the shipped models (used while rebuilding them)."""

    def __init__(self, load_models=True):
        super().__init__()
        self.load_models = load_models
        self._models_attached = False

    def load(self):
        ok = super().load()
        if self.load_models:
            # A model's child algorithms are looked up in the registry when the model is read, but this
            # provider's algorithms are only there once the registry has accepted the provider: read the
            # models again at that moment.
            QgsApplication.processingRegistry().providerAdded.connect(self._on_provider_added)
        return ok

    def _on_provider_added(self, provider_id):
        if provider_id == self.id() and not self._models_attached:
            self._models_attached = True
            self.refreshAlgorithms()

    def id(self):
        return PROVIDER_ID

    def name(self):
        return "Subsidence Toolkit"

    def longName(self):
        return "Subsidence Toolkit %s (InSAR, GRACE, groundwater)" % _version()

    def versionInfo(self):
        return _version()

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def loadAlgorithms(self):
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
        if self.load_models:
            for fname, (name, label) in MODELS.items():
                path = os.path.join(MODELS_DIR, fname)
                if os.path.exists(path):
                    self.addAlgorithm(ShippedModel(path, name, label))
