"""Time-series viewer dock: click the map, see the pixel's series from every time-series raster.

* **Pick point**: a click plots, for every raster layer of the project that is a
  time-series raster (two or more bands, each dated: see
  :func:`core.timeseries.pixel_series.inspect_raster`), the values of the pixel under the
  click. The point is transformed from the canvas CRS to each layer's CRS, so
  layers with different CRSs and grids work together; only the ``1 x 1 x N``
  pixel column is read.
* **Draw polygon** (left clicks, right click closes) or **Selected polygons**
  (the selected features of the current polygon layer): the mean over the
  pixels inside the polygon (pixel centre inside; see
  :func:`core.timeseries.pixel_series.polygon_mean_series`).
* **Hold**: keep earlier series (several points on one plot, with a legend);
  otherwise each new point/polygon replaces the plot. **Clear** empties it.
* **Export CSV** (one ``date`` column, one column per series) and **Export PNG**.
* Deformation series use the left y axis, water-storage series (GWSA, TWSA,
  groundwater: layer metadata ``KIND`` or the layer/file name) the right one.

matplotlib is used when it is importable (QGIS ships it on all platforms); the
dock says so plainly when it is not, and CSV export still works.
"""
import os

from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsGeometry,
    QgsMapLayerType,
    QgsProject,
    QgsWkbTypes,
)
from qgis.gui import QgsDockWidget, QgsRubberBand, QgsVertexMarker
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.timeseries import pixel_series
from . import plot as plot_module
from .map_tools import PointTool, PolygonTool


def _layer_file(layer):
    src = layer.source()
    return src.split("|")[0]


class TimeSeriesDock(QgsDockWidget):
    """The dock. ``canvas``: the QgsMapCanvas clicks come from; ``project`` defaults to QgsProject.instance()."""

    OBJECT_NAME = "SubsidenceToolkitTimeSeriesDock"

    def __init__(self, canvas, parent=None, project=None):
        super().__init__("Subsidence time series", parent)
        self.setObjectName(self.OBJECT_NAME)
        self.canvas = canvas
        self.project = project or QgsProject.instance()
        self.series = []
        self._sources = {}  # (path, mtime, name) -> SeriesSource or None
        self._npoints = 0
        self._npolygons = 0
        self._canvas_items = []  # markers / outlines of the plotted points and polygons

        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.pick_button = QPushButton("Pick point", body)
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Click the map to plot the series of the pixel under the cursor")
        self.polygon_button = QPushButton("Draw polygon", body)
        self.polygon_button.setCheckable(True)
        self.polygon_button.setToolTip("Left clicks add vertices, right click closes: plots the mean inside")
        self.selected_button = QPushButton("Selected polygons", body)
        self.selected_button.setToolTip("Mean over the selected features of the current polygon layer")
        self.hold_check = QCheckBox("Hold", body)
        self.hold_check.setToolTip("Keep earlier series on the plot")
        for w in (self.pick_button, self.polygon_button, self.selected_button, self.hold_check):
            row.addWidget(w)
        row.addStretch(1)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        self.clear_button = QPushButton("Clear", body)
        self.csv_button = QPushButton("Export CSV…", body)
        self.png_button = QPushButton("Export PNG…", body)
        for w in (self.clear_button, self.csv_button, self.png_button):
            row2.addWidget(w)
        row2.addStretch(1)
        layout.addLayout(row2)

        self.plot = None
        self.message = QLabel(body)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        try:
            self.plot = plot_module.SeriesPlot(body)
        except ImportError as e:
            self.plot_error = plot_module.MATPLOTLIB_MISSING.format(error=e)
            self.placeholder = QLabel(self.plot_error, body)
            self.placeholder.setWordWrap(True)
            self.placeholder.setStyleSheet("color: #a00000; font-weight: bold;")
            self.placeholder.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
            layout.addWidget(self.placeholder, 1)
            self.png_button.setEnabled(False)
        else:
            self.plot_error = ""
            self.plot.widget.setMinimumHeight(220)
            layout.addWidget(self.plot.widget, 1)
        layout.addWidget(self.message)
        self.setWidget(body)

        self.point_tool = PointTool(canvas)
        self.point_tool.canvasClicked.connect(self._on_click)
        self.polygon_tool = PolygonTool(canvas)
        self.polygon_tool.polygonDrawn.connect(self._on_polygon)
        self.pick_button.toggled.connect(self._toggle_pick)
        self.polygon_button.toggled.connect(self._toggle_polygon)
        self.selected_button.clicked.connect(self.use_selected_polygons)
        self.clear_button.clicked.connect(self.clear)
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.png_button.clicked.connect(lambda: self.export_png())
        canvas.mapToolSet.connect(self._tool_changed)
        self.redraw()
        self.set_message("Pick a point or draw a polygon. Time-series rasters are rasters whose bands are dated "
                         "(YYYY-MM-DD band descriptions or DATE metadata).")

    # ------------------------------------------------------------------ tools
    def _toggle_pick(self, on):
        if on:
            self.polygon_button.setChecked(False)
            self.canvas.setMapTool(self.point_tool)
        elif self.canvas.mapTool() is self.point_tool:
            self.canvas.unsetMapTool(self.point_tool)

    def _toggle_polygon(self, on):
        if on:
            self.pick_button.setChecked(False)
            self.canvas.setMapTool(self.polygon_tool)
        elif self.canvas.mapTool() is self.polygon_tool:
            self.canvas.unsetMapTool(self.polygon_tool)

    def _tool_changed(self, new, old=None):
        if new is not self.point_tool and self.pick_button.isChecked():
            self.pick_button.setChecked(False)
        if new is not self.polygon_tool and self.polygon_button.isChecked():
            self.polygon_button.setChecked(False)

    def cleanup(self):
        """Release the map tools and canvas markers (call before deleting the dock)."""
        self._remove_canvas_items()
        for tool in (self.point_tool, self.polygon_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        try:
            self.canvas.mapToolSet.disconnect(self._tool_changed)
        except TypeError:
            pass

    def _on_click(self, point, button=None):
        if button is None or button == Qt.LeftButton:
            self.add_point(point)

    def _on_polygon(self, geometry):
        self.add_polygon(geometry)

    # ------------------------------------------------------------------ layers
    def set_message(self, text):
        self.message.setText(text)

    def canvas_crs(self):
        return self.canvas.mapSettings().destinationCrs()

    def time_series_layers(self):
        """``[(layer, SeriesSource)]`` for every time-series raster layer of the project (layer-tree order)."""
        out = []
        root = self.project.layerTreeRoot()
        ordered = [n.layer() for n in root.findLayers() if n.layer() is not None]
        others = [lyr for lyr in self.project.mapLayers().values() if lyr not in ordered]
        for layer in ordered + others:
            if layer.type() != QgsMapLayerType.RasterLayer or layer.providerType() != "gdal" or not layer.isValid():
                continue
            path = _layer_file(layer)
            try:
                key = (path, os.path.getmtime(path), layer.name())
            except OSError:
                key = (path, None, layer.name())
            if key not in self._sources:
                self._sources[key] = pixel_series.inspect_raster(path, layer.name())
            if self._sources[key] is not None:
                out.append((layer, self._sources[key]))
        return out

    def _transform(self, crs, layer):
        return QgsCoordinateTransform(crs, layer.crs(), self.project)

    def _format_point(self, point, crs):
        fmt = "%.5f, %.5f" if crs.isGeographic() else "%.1f, %.1f"
        return fmt % (point.x(), point.y())

    # ------------------------------------------------------------------ series
    def _remove_canvas_items(self):
        for item in self._canvas_items:
            self.canvas.scene().removeItem(item)
        self._canvas_items = []

    def _mark_point(self, point):
        m = QgsVertexMarker(self.canvas)
        m.setCenter(point)
        m.setIconType(QgsVertexMarker.ICON_X)
        m.setColor(QColor(220, 0, 0))
        m.setIconSize(12)
        m.setPenWidth(3)
        self._canvas_items.append(m)

    def _mark_polygon(self, geometry, crs):
        band = QgsRubberBand(self.canvas, QgsWkbTypes.PolygonGeometry)
        band.setColor(QColor(220, 0, 0, 200))
        band.setFillColor(QColor(220, 0, 0, 30))
        band.setWidth(2)
        band.setToGeometry(geometry, crs)
        self._canvas_items.append(band)

    def _add(self, new):
        if not self.hold_check.isChecked():
            self.series = []
        taken = {s.label for s in self.series}
        for s in new:
            s.label = pixel_series.unique_label(s.label, taken)
            taken.add(s.label)
            self.series.append(s)
        self.redraw()

    def add_point(self, point, crs=None):
        """Add the series of the pixel under ``point`` (QgsPointXY in ``crs``, default the canvas CRS)
        from every time-series layer. Returns the new Series."""
        crs = crs if crs is not None else self.canvas_crs()
        layers = self.time_series_layers()
        if not layers:
            self.set_message("No time-series raster is loaded (a raster whose bands carry dates).")
            return []
        self._npoints += 1
        if not self.hold_check.isChecked():
            self._remove_canvas_items()
        if crs == self.canvas_crs():
            self._mark_point(point)
        where = self._format_point(point, crs)
        new, outside, empty = [], [], []
        for layer, src in layers:
            try:
                p = self._transform(crs, layer).transform(point)
                values = pixel_series.read_pixel_series(src.path, p.x(), p.y())
            except (QgsCsException, pixel_series.TimeSeriesError) as e:
                outside.append("%s (%s)" % (layer.name(), e))
                continue
            if values is None:
                outside.append(layer.name())
                continue
            if not (values == values).any():  # all NaN
                empty.append(layer.name())
                continue
            label = "%s @ P%d" % (layer.name(), self._npoints)
            new.append(pixel_series.Series(label, src, src.dates, values, location=where,
                                           point=(point.x(), point.y())))
        self._add(new)
        msg = "P%d at %s: %d series" % (self._npoints, where, len(new))
        if outside:
            msg += "; outside: %s" % ", ".join(outside)
        if empty:
            msg += "; NoData at every date: %s" % ", ".join(empty)
        self.set_message(msg)
        return new

    def add_polygon(self, geometry, crs=None):
        """Add the polygon-mean series of every time-series layer (``geometry`` in ``crs``, default canvas CRS)."""
        crs = crs if crs is not None else self.canvas_crs()
        if geometry is None or geometry.isEmpty() or geometry.type() != QgsWkbTypes.PolygonGeometry:
            self.set_message("Not a polygon.")
            return []
        layers = self.time_series_layers()
        if not layers:
            self.set_message("No time-series raster is loaded (a raster whose bands carry dates).")
            return []
        self._npolygons += 1
        if not self.hold_check.isChecked():
            self._remove_canvas_items()
        self._mark_polygon(geometry, crs)
        new, outside = [], []
        for layer, src in layers:
            g = QgsGeometry(geometry)
            try:
                g.transform(self._transform(crs, layer))
                res = pixel_series.polygon_mean_series(src.path, g.asWkt())
            except (QgsCsException, pixel_series.TimeSeriesError) as e:
                outside.append("%s (%s)" % (layer.name(), e))
                continue
            if res is None:
                outside.append(layer.name())
                continue
            values, n = res
            label = "%s @ polygon %d" % (layer.name(), self._npolygons)
            new.append(pixel_series.Series(label, src, src.dates, values, location="%d px" % n, npixels=n))
        self._add(new)
        msg = "Polygon %d: %d mean series" % (self._npolygons, len(new))
        if outside:
            msg += "; no pixel inside: %s" % ", ".join(outside)
        self.set_message(msg)
        return new

    def polygon_layer_with_selection(self):
        """The current layer if it is a polygon layer with selected features, else the first such layer."""
        candidates = [self.canvas.currentLayer()] + list(self.project.mapLayers().values())
        for layer in candidates:
            if (layer is not None and layer.type() == QgsMapLayerType.VectorLayer
                    and layer.geometryType() == QgsWkbTypes.PolygonGeometry and layer.selectedFeatureCount() > 0):
                return layer
        return None

    def use_selected_polygons(self):
        """Plot the mean over the union of the selected polygons."""
        layer = self.polygon_layer_with_selection()
        if layer is None:
            self.set_message("Select one or more features of a polygon layer first.")
            return []
        geoms = [f.geometry() for f in layer.getSelectedFeatures() if f.hasGeometry()]
        return self.add_polygon(QgsGeometry.unaryUnion(geoms), layer.crs())

    def clear(self):
        self.series = []
        self._remove_canvas_items()
        self._npoints = 0
        self._npolygons = 0
        self.redraw()
        self.set_message("Cleared.")

    def redraw(self):
        if self.plot is not None:
            self.plot.draw(self.series)
        self.csv_button.setEnabled(bool(self.series))
        self.png_button.setEnabled(bool(self.series) and self.plot is not None)

    # ------------------------------------------------------------------ export
    def export_csv(self, path=None):
        if not self.series:
            self.set_message("Nothing to export: plot a series first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export series as CSV", "", "CSV (*.csv)")
            if not path:
                return None
            if not path.lower().endswith(".csv"):
                path += ".csv"
        pixel_series.write_series_csv(path, self.series)
        self.set_message("Wrote %d series to %s" % (len(self.series), path))
        return str(path)

    def export_png(self, path=None):
        if self.plot is None:
            self.set_message(self.plot_error)
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export plot as PNG", "", "PNG (*.png)")
            if not path:
                return None
            if not path.lower().endswith(".png"):
                path += ".png"
        self.plot.save_png(path)
        self.set_message("Saved the plot to %s" % path)
        return str(path)

    def closeEvent(self, event):  # noqa: N802
        for tool in (self.point_tool, self.polygon_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        super().closeEvent(event)

