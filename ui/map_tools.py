"""Map tools of the time-series dock: click a point, draw a polygon."""

from qgis.core import QgsGeometry, QgsPointXY
from qgis.gui import QgsMapTool, QgsMapToolEmitPoint, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

from ..processing_provider.compat import GeometryType


class PointTool(QgsMapToolEmitPoint):
    """Emits ``canvasClicked(point: QgsPointXY, button: a Qt mouse button)`` (map coordinates in the canvas CRS)."""

    def __init__(self, canvas):
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)


class PolygonTool(QgsMapTool):
    """Left click adds a vertex, right click (or double click) closes the polygon, Esc cancels.

    Emits ``polygonDrawn(QgsGeometry)`` in the canvas CRS when at least three
    vertices were given.
    """

    polygonDrawn = pyqtSignal(QgsGeometry)

    def __init__(self, canvas):
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.points = []
        self.band = QgsRubberBand(canvas, GeometryType.Polygon)
        self.band.setColor(QColor(255, 140, 0, 180))
        self.band.setFillColor(QColor(255, 140, 0, 50))
        self.band.setWidth(2)

    def reset(self):
        self.points = []
        self.band.reset(GeometryType.Polygon)

    def canvasReleaseEvent(self, event):
        if event.button() == Qt.MouseButton.LeftButton:
            self.points.append(QgsPointXY(self.toMapCoordinates(event.pos())))
            self.band.addPoint(self.points[-1], True)
        elif event.button() == Qt.MouseButton.RightButton:
            self.finish()

    def canvasDoubleClickEvent(self, event):
        self.finish()

    def keyPressEvent(self, event):
        if event.key() == Qt.Key.Key_Escape:
            self.reset()

    def finish(self):
        pts = list(self.points)
        self.reset()
        if len(pts) >= 3:
            self.polygonDrawn.emit(QgsGeometry.fromPolygonXY([pts + [pts[0]]]))

    def deactivate(self):
        self.reset()
        super().deactivate()
