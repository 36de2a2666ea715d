"""The code runs on PyQt6 / QGIS 4 as written: scripts/check_qt6.py finds nothing, and it does find what it is for."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("qgis.core")


def _checker():
    spec = importlib.util.spec_from_file_location("check_qt6", ROOT / "scripts" / "check_qt6.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_has_no_qt6_breakers():
    findings = _checker().check_paths([ROOT])
    assert findings == [], "\n".join(findings)


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from qgis.PyQt.QtCore import Qt\nb = Qt.LeftButton\n", "unscoped enum Qt.LeftButton"),
        ("from qgis.PyQt.QtCore import QVariant\nt = QVariant.Double\n", "unscoped enum QVariant.Double"),
        (
            "from qgis.core import QgsProcessing\nt = QgsProcessing.TypeRaster\n",
            "unscoped enum QgsProcessing.TypeRaster",
        ),
        ("from qgis.core import QgsProcessingParameterNumber as N\nt = N.Double\n", "unscoped enum N.Double"),
        ("p.setFlags(p.flags() | p.FlagAdvanced)\n", "unscoped parameter flag .FlagAdvanced"),
        ("from PyQt5.QtCore import Qt\n", "use qgis.PyQt.QtCore"),
        ("dialog.exec_()\n", "exec_() is removed"),
        ("from qgis.PyQt.QtCore import QRegExp\n", "QRegExp is removed"),
        ("x = alg.parameterAsFields(parameters, 'F', context)\n", "parameterAsFields is deprecated"),
        ("w = self.fontMetrics().width('abc')\n", "horizontalAdvance"),
        ("from qgis.PyQt.QtCore import QVariant\nv = QVariant()\n", "use qgis.core.NULL"),
        ("from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg\n", "backend_qtagg"),
        ("t = layer.type() == QgsMapLayerType.RasterLayer\n", "use compat.LayerType"),
    ],
)
def test_checker_finds_each_kind_of_breaker(source, expected):
    findings = _checker().check_source(source)
    assert len(findings) == 1 and expected in findings[0][1], findings


@pytest.mark.parametrize(
    "source",
    [
        "from qgis.PyQt.QtCore import Qt\nb = Qt.MouseButton.LeftButton\nc = Qt.CursorShape.CrossCursor\n",
        "from qgis.core import Qgis\nlevel = Qgis.MessageLevel.Warning\nv = Qgis.QGIS_VERSION_INT\n",
        "from qgis.core import QgsProcessingParameterNumber\nt = QgsProcessingParameterNumber.Type\n",
        "x = alg.parameterAsFields(p, 'F', c)  # qt6-compat: QGIS < 3.32\n",
        "from qgis.PyQt.QtCore import QVariant\nt = QVariant.Type.Double\n",
    ],
)
def test_checker_accepts_scoped_forms(source):
    assert _checker().check_source(source) == []
