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
