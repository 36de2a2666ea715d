"""Every algorithm of the provider: stable id, group, short help, and help text on every parameter."""

import re


def test_provider_and_algorithms_are_documented(qgis_app):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("subsidence")
    assert provider is not None and provider.name() == "Subsidence Toolkit"
    assert provider.svgIconPath().endswith(".svg")
    algs = provider.algorithms()
    assert algs, "provider has no algorithms"
    for alg in algs:
        assert re.fullmatch(r"[a-z0-9]+", alg.name()), alg.name()
        assert alg.id() == "subsidence:" + alg.name()
        assert alg.displayName() and alg.group() and re.fullmatch(r"[a-z0-9]+", alg.groupId())
        assert len(alg.shortHelpString()) > 80, alg.id()
        if alg.id().startswith("subsidence:workflow"):  # models: lower-case inputs, help in their help content
            continue
        for p in alg.parameterDefinitions():
            assert p.help(), "%s: parameter %s has no help" % (alg.id(), p.name())
            assert p.name() == p.name().upper(), "%s: %s is not UPPER_CASE" % (alg.id(), p.name())
        assert alg.createInstance().name() == alg.name()


def test_dialog_labels_and_decimals(qgis_app):
    """No "(optional)" in our labels (QGIS appends "[optional]"); decimal spin boxes show what the default
    needs: the Sentinel-1 wavelength keeps all its digits in the dialog's widget (QGIS 3.22 and newer)."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingParameterNumber
    from qgis.gui import QgsGui, QgsProcessingGui

    provider = QgsApplication.processingRegistry().providerById("subsidence")
    for alg in provider.algorithms():
        for p in alg.parameterDefinitions():
            assert "optional" not in p.description().lower(), (alg.id(), p.description())
            if isinstance(p, QgsProcessingParameterNumber) and p.dataType() == QgsProcessingParameterNumber.Type.Double:
                assert "decimals" in (p.metadata().get("widget_wrapper") or {}), (alg.id(), p.name())
    wl = QgsApplication.processingRegistry().algorithmById("subsidence:sbasinversion").parameterDefinition("WAVELENGTH")
    from qgis.core import Qgis

    standard = Qgis.ProcessingMode.Standard if hasattr(Qgis, "ProcessingMode") else QgsProcessingGui.WidgetType.Standard
    wrapper = QgsGui.processingGuiRegistry().createParameterWidgetWrapper(wl, standard)
    widget = wrapper.createWrappedWidget(QgsProcessingContext())
    assert widget.decimals() == 8 and widget.text() == "0.05546576"
    assert wrapper.parameterValue() == 0.05546576


def test_loading_the_provider_imports_neither_pandas_nor_scipy(tmp_path):
    """QGIS (and every qgis_process run, whatever it runs) imports the plugin when it starts: loading the provider
    and defining every algorithm's parameters must not import pandas or SciPy (~0.5-1 s of each start); they
    are imported when an algorithm first uses them (core/io/lazy.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("subsidence_toolkit", os.path.join(%r, "__init__.py"),
                                              submodule_search_locations=[%r])
module = importlib.util.module_from_spec(spec)
sys.modules["subsidence_toolkit"] = module
spec.loader.exec_module(module)
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False); app.initQgis()
before = {m.split(".")[0] for m in sys.modules}
from subsidence_toolkit.processing_provider.provider import SubsidenceProvider
provider = SubsidenceProvider()
QgsApplication.processingRegistry().addProvider(provider)
n = len(provider.algorithms())
assert n > 10 and all(a.parameterDefinitions() for a in provider.algorithms())
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pandas", "scipy"} - before)
print("HEAVY", heavy, n)
""" % (str(root), str(root))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    line = [s for s in r.stdout.splitlines() if s.startswith("HEAVY")]
    assert r.returncode == 0 and line, r.stdout[-2000:] + r.stderr[-2000:]
    assert line[0].startswith("HEAVY []"), line[0]
