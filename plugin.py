"""QGIS plugin class: registers the Processing provider.

Under ``qgis_process`` the plugin is built with ``iface=None`` and only
:meth:`initProcessing` is called, so nothing here may touch ``iface`` or ``ui``
outside :meth:`initGui`.
"""
from qgis.core import QgsApplication


class SubsidenceToolkitPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        from .processing_provider.provider import SubsidenceProvider

        if self.provider is None:
            self.provider = SubsidenceProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
