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
