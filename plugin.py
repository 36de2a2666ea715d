"""QGIS plugin class: registers the Processing provider; in QGIS desktop also the time-series dock.

Under ``qgis_process`` the plugin is built with ``iface=None`` and only
:meth:`initProcessing` is called, so nothing here may touch ``iface`` or ``ui``
outside :meth:`initGui` (``ui`` is imported there, lazily).
"""
import os

from qgis.core import QgsApplication

MENU = "&Subsidence Toolkit"


class SubsidenceToolkitPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.action = None
        self.dock = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        from .processing_provider.provider import SubsidenceProvider

        if self.provider is None:
            self.provider = SubsidenceProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        icon = QIcon(os.path.join(os.path.dirname(__file__), "ui", "icons", "subsidence.svg"))
        self.action = QAction(icon, "Time-series viewer", self.iface.mainWindow())
        self.action.setObjectName("SubsidenceToolkitTimeSeriesViewer")
        self.action.setToolTip("Subsidence Toolkit: plot the time series of a clicked pixel or drawn polygon")
        self.action.triggered.connect(self.show_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

    def show_dock(self):
        """Create the dock on first use, then show and raise it."""
        from qgis.PyQt.QtCore import Qt

        from .ui.timeseries_dock import TimeSeriesDock

        if self.dock is None:
            self.dock = TimeSeriesDock(self.iface.mapCanvas(), self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.show()
        self.dock.raise_()
        return self.dock

    def unload(self):
        if self.dock is not None:
            self.dock.cleanup()
            if self.iface is not None:
                self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
