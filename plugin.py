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
        self.style_action = None
        self.model_action = None
        self.dock = None

    def initProcessing(self):
        from .processing_provider.provider import SubsidenceProvider

        if self.provider is None:
            self.provider = SubsidenceProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtGui import QIcon

        from .processing_provider.compat import qaction_class

        QAction = qaction_class()  # a class

        icon = QIcon(os.path.join(os.path.dirname(__file__), "ui", "icons", "subsidence.svg"))
        self.action = QAction(icon, "Time-series viewer", self.iface.mainWindow())
        self.action.setObjectName("SubsidenceToolkitTimeSeriesViewer")
        self.action.setToolTip("Subsidence Toolkit: plot the time series of a clicked pixel or drawn polygon")
        self.action.triggered.connect(self.show_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

        self.style_action = QAction(icon, "Apply toolkit style", self.iface.mainWindow())
        self.style_action.setObjectName("SubsidenceToolkitApplyStyle")
        self.style_action.setToolTip(
            "Style the selected toolkit rasters by their metadata (velocity, time series, "
            "GWSA, quality) with rounded legend limits"
        )
        self.style_action.triggered.connect(self.apply_style_to_selection)
        self.iface.addPluginToRasterMenu(MENU, self.style_action)
        if hasattr(self.iface, "addCustomActionForLayerType"):  # layer tree context menu of raster layers
            from .processing_provider.compat import LayerType

            self.iface.addCustomActionForLayerType(self.style_action, "", LayerType.Raster, True)

        self.model_action = QAction(icon, "Edit a copy of the workflow model…", self.iface.mainWindow())
        self.model_action.setObjectName("SubsidenceToolkitEditWorkflowModel")
        self.model_action.setToolTip(
            "Copy the shipped subsidence:workflow model into your Processing models "
            "folder and open it in the graphical modeler"
        )
        self.model_action.triggered.connect(self.edit_workflow_model)
        self.iface.addPluginToRasterMenu(MENU, self.model_action)

    def _selected_rasters(self):
        from qgis.core import QgsRasterLayer

        layers = []
        view = self.iface.layerTreeView() if hasattr(self.iface, "layerTreeView") else None
        if view is not None:
            layers = list(view.selectedLayers())
        if not layers and self.iface.activeLayer() is not None:
            layers = [self.iface.activeLayer()]
        return [lyr for lyr in layers if isinstance(lyr, QgsRasterLayer)]

    def apply_style_to_selection(self):
        from .ui.model_tools import style_layers

        done = style_layers(self._selected_rasters())
        text = "; ".join("%s: %s" % d for d in done) or "select one or more raster layers first"
        if hasattr(self.iface, "messageBar"):
            self.iface.messageBar().pushInfo("Subsidence Toolkit", text)
        return done

    def edit_workflow_model(self):
        from .ui.model_tools import copy_workflow_model, open_in_modeler

        path = copy_workflow_model()
        if hasattr(self.iface, "messageBar"):
            self.iface.messageBar().pushInfo("Subsidence Toolkit", "copied the workflow model to %s" % path)
        return path, open_in_modeler(path)

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
        for extra in (self.style_action, self.model_action):
            if extra is not None:
                if extra is self.style_action and hasattr(self.iface, "removeCustomActionForLayerType"):
                    self.iface.removeCustomActionForLayerType(extra)
                self.iface.removePluginRasterMenu(MENU, extra)
                extra.deleteLater()
        self.style_action = self.model_action = None
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
