"""Subsidence Toolkit: a QGIS Processing provider for InSAR deformation and GRACE groundwater studies."""


def classFactory(iface):
    """QGIS plugin entry point (``iface`` is None under qgis_process)."""
    from .plugin import SubsidenceToolkitPlugin

    return SubsidenceToolkitPlugin(iface)
