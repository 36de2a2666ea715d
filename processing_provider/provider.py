"""The ``subsidence`` Processing provider. Its id prefixes every algorithm id: never change it."""
import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..algorithms.geodetector import Geodetector
from ..algorithms.grace_downscaling import GraceDownscaling
from ..algorithms.groundwater_anomaly import GroundwaterAnomaly
from ..algorithms.lagged_correlation import LaggedCorrelation
from ..algorithms.resample_timeseries import ResampleTimeSeries
from ..algorithms.sample_deformation_classes import SampleDeformationClasses
from ..algorithms.sbas_inversion import SbasInversion
from ..algorithms.validate_time_series import ValidateTimeSeries

PROVIDER_ID = "subsidence"
ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui", "icons", "subsidence.svg")

# One entry per algorithm class, listed explicitly (no discovery by file name).
ALGORITHMS = [
    ResampleTimeSeries,
    GraceDownscaling,
    GroundwaterAnomaly,
    SampleDeformationClasses,
    ValidateTimeSeries,
    LaggedCorrelation,
    Geodetector,
    SbasInversion,
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


class SubsidenceProvider(QgsProcessingProvider):
    def id(self):
        return PROVIDER_ID

    def name(self):
        return "Subsidence Toolkit"

    def longName(self):  # noqa: N802
        return "Subsidence Toolkit %s (InSAR, GRACE, groundwater)" % _version()

    def versionInfo(self):  # noqa: N802
        return _version()

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802
        return ICON

    def loadAlgorithms(self):  # noqa: N802
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
