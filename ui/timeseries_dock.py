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
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsDockWidget, QgsMapCanvasItem, QgsRubberBand
from qgis.PyQt.QtCore import QLineF, QPointF, QRectF, Qt
from qgis.PyQt.QtGui import QColor, QFont, QPainterPath, QPen
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..core.timeseries import pixel_series
from ..processing_provider.base import layer_path
from ..processing_provider.compat import GeometryType, LayerType, renderer_band, set_renderer_band
from . import plot as plot_module
from .map_tools import PointTool, PolygonTool


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
        self.pick_button = QPushButton("Pick", body)
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Click the map to plot the series of the pixel under the cursor")
        self.polygon_button = QPushButton("Polygon", body)
        self.polygon_button.setCheckable(True)
        self.polygon_button.setToolTip("Left clicks add vertices, right click closes: plots the mean inside")
        self.selected_button = QPushButton("Selected", body)
        self.selected_button.setToolTip("Mean over the selected features of the current polygon layer")
        self.hold_check = QCheckBox("Hold", body)
        self.hold_check.setToolTip("Keep earlier series on the plot")
        for w in (self.pick_button, self.polygon_button, self.selected_button, self.hold_check):
            row.addWidget(w)
        row.addStretch(1)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        self.clear_button = QPushButton("Clear", body)
        self.clear_button.setToolTip("Remove every series and map marker")
        self.csv_button = QPushButton("CSV…", body)
        self.png_button = QPushButton("PNG…", body)
        self.png_button.setToolTip(
            "Saves the plot at a fixed publication size (%g x %g in at %d dpi)"
            % (plot_module.EXPORT_SIZE_IN + (plot_module.EXPORT_DPI,))
        )
        self.zero_check = QCheckBox("Align 0", body)
        self.zero_check.setToolTip("Put 0 at the same height on the deformation and storage axes")
        for w in (self.clear_button, self.csv_button, self.png_button, self.zero_check):
            row2.addWidget(w)
        row2.addStretch(1)
        layout.addLayout(row2)
        self.csv_button.setToolTip("Export the plotted series as CSV (one date column, one column per series)")
        for lay in (row, row2):
            lay.setSpacing(3)
        for b in (
            self.pick_button,
            self.polygon_button,
            self.selected_button,
            self.clear_button,
            self.csv_button,
            self.png_button,
        ):
            b.setMinimumWidth(10)
            b.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)

        # band / date shown by the current multiband layer
        self.band_row = QWidget(body)
        band_layout = QHBoxLayout(self.band_row)
        band_layout.setContentsMargins(0, 0, 0, 0)
        self.band_slider = QSlider(Qt.Orientation.Horizontal, self.band_row)
        self.band_slider.setMinimum(1)
        self.band_slider.setToolTip("Band (date) shown by the current layer on the map")
        self.band_label = QLabel(self.band_row)
        band_layout.addWidget(QLabel("Shown:", self.band_row))
        band_layout.addWidget(self.band_slider, 1)
        band_layout.addWidget(self.band_label)
        layout.addWidget(self.band_row)
        self.band_row.setVisible(False)
        self._band_layer = None

        self.plot = None
        self.message = QLabel(body)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        try:
            self.plot = plot_module.SeriesPlot(body)
        except ImportError as e:
            self.plot_error = plot_module.MATPLOTLIB_MISSING.format(error=e)
            self.placeholder = QLabel(self.plot_error, body)
            self.placeholder.setWordWrap(True)
            self.placeholder.setStyleSheet("color: #a00000; font-weight: bold;")
            self.placeholder.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            layout.addWidget(self.placeholder, 1)
            self.png_button.setEnabled(False)
        else:
            self.plot_error = ""
            self.plot.widget.setMinimumHeight(140)
            self.plot.widget.setMinimumWidth(220)
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
        self.zero_check.toggled.connect(self._toggle_zeros)
        self.band_slider.valueChanged.connect(self._band_changed)
        canvas.currentLayerChanged.connect(self.follow_layer)
        self.redraw()
        self.follow_layer(canvas.currentLayer())
        self.set_message(
            "Pick a point or draw a polygon. Time-series rasters are rasters whose bands are dated "
            "(YYYY-MM-DD band descriptions or DATE metadata)."
        )

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
        for signal, slot in (
            (self.canvas.mapToolSet, self._tool_changed),
            (self.canvas.currentLayerChanged, self.follow_layer),
        ):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass

    def _on_click(self, point, button=None):
        if button is None or button == Qt.MouseButton.LeftButton:
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
            if layer.type() != LayerType.Raster or layer.providerType() != "gdal" or not layer.isValid():
                continue
            path = layer_path(layer)
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

    def _mark_point(self, point, label, color):
        self._canvas_items.append(LabelledCross(self.canvas, point, label, color))

    def _mark_polygon(self, geometry, crs, color):
        c = QColor(color)
        band = QgsRubberBand(self.canvas, GeometryType.Polygon)
        band.setColor(QColor(c.red(), c.green(), c.blue(), 220))
        band.setFillColor(QColor(c.red(), c.green(), c.blue(), 35))
        band.setWidth(2)
        band.setToGeometry(geometry, crs)
        self._canvas_items.append(band)

    def _next_color(self, group):
        groups = list(plot_module.group_colors(self.series if self.hold_check.isChecked() else []))
        return plot_module.PALETTE[len([g for g in groups if g != group]) % len(plot_module.PALETTE)]

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
        group = "P%d" % self._npoints
        if crs == self.canvas_crs():
            self._mark_point(point, group, self._next_color(group))
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
            series = pixel_series.Series(label, src, src.dates, values, location=where, point=(point.x(), point.y()))
            series.group = group  # one colour per point, shared by all its series
            new.append(series)
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
        if geometry is None or geometry.isEmpty() or geometry.type() != GeometryType.Polygon:
            self.set_message("Not a polygon.")
            return []
        layers = self.time_series_layers()
        if not layers:
            self.set_message("No time-series raster is loaded (a raster whose bands carry dates).")
            return []
        self._npolygons += 1
        if not self.hold_check.isChecked():
            self._remove_canvas_items()
        group = "polygon %d" % self._npolygons
        self._mark_polygon(geometry, crs, self._next_color(group))
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
            series = pixel_series.Series(label, src, src.dates, values, location="%d px" % n, npixels=n)
            series.group = group
            new.append(series)
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
            if (
                layer is not None
                and layer.type() == LayerType.Vector
                and layer.geometryType() == GeometryType.Polygon
                and layer.selectedFeatureCount() > 0
            ):
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

    def _toggle_zeros(self, on):
        if self.plot is not None:
            self.plot.align_zeros = bool(on)
            self.redraw()

    # ------------------------------------------------------------------ band / date shown
    def follow_layer(self, layer):
        """Show the band slider when ``layer`` is a multiband raster drawn with one band (toolkit style)."""
        self._band_layer = None
        renderer = layer.renderer() if isinstance(layer, QgsRasterLayer) else None
        if renderer_band(renderer) is None or layer.bandCount() < 2:
            self.band_row.setVisible(False)
            return
        self._band_layer = layer
        self.band_slider.blockSignals(True)
        self.band_slider.setMaximum(layer.bandCount())
        self.band_slider.setValue(renderer_band(renderer))
        self.band_slider.blockSignals(False)
        self._update_band_label()
        self.band_row.setVisible(True)

    def _update_band_label(self):
        layer = self._band_layer
        if layer is None:
            return
        b = self.band_slider.value()
        name = layer.dataProvider().generateBandName(b)
        desc = layer.bandName(b)
        text = desc.split(": ", 1)[1] if ": " in desc else desc or name
        self.band_label.setText("%s (%d/%d)" % (text, b, layer.bandCount()))

    def _band_changed(self, band):
        layer = self._band_layer
        if layer is None:
            return
        renderer = layer.renderer()
        if renderer_band(renderer) is None:
            return
        set_renderer_band(renderer, band)
        layer.triggerRepaint()
        self._update_band_label()
        if hasattr(layer, "emitStyleChanged"):
            layer.emitStyleChanged()

    def show_band(self, layer, band):
        """Show ``band`` of ``layer`` (used by the slider; for scripts and tests)."""
        self.follow_layer(layer)
        self.band_slider.setValue(int(band))
        return renderer_band(layer.renderer())

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

    def closeEvent(self, event):
        for tool in (self.point_tool, self.polygon_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        super().closeEvent(event)


class LabelledCross(QgsMapCanvasItem):
    """A coloured cross with its label (``P1``, ``P2`` … as in the plot legend) at a map point."""

    SIZE = 6

    def __init__(self, canvas, point, text, color):
        super().__init__(canvas)
        self.point = point
        self.text = text
        self.color = QColor(color)
        self.setZValue(30)
        self.updatePosition()

    def updatePosition(self):
        self.setPos(self.toCanvasCoordinates(self.point))

    def boundingRect(self):
        return QRectF(-self.SIZE - 3, -26, 70, 26 + self.SIZE + 3)

    def paint(self, painter, option=None, widget=None):
        s = self.SIZE
        painter.setPen(QPen(QColor(255, 255, 255), 5))
        for line in (QLineF(-s, -s, s, s), QLineF(-s, s, s, -s)):
            painter.drawLine(line)
        painter.setPen(QPen(self.color, 3))
        for line in (QLineF(-s, -s, s, s), QLineF(-s, s, s, -s)):
            painter.drawLine(line)
        font = QFont(painter.font())
        font.setBold(True)
        font.setPointSizeF(max(font.pointSizeF(), 9.0))
        path = QPainterPath()
        path.addText(QPointF(s + 2, -s - 2), font, self.text)
        painter.setPen(QPen(QColor(255, 255, 255), 3))
        painter.drawPath(path)
        painter.fillPath(path, self.color)
