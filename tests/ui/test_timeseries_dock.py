"""The time-series dock in a real QgsMapCanvas under offscreen Qt."""

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr
from synthetic import sentinel1_dates, smooth_stack, write_stack

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ORIGIN = (500000.0, 4000000.0)  # UTM 49N, near 111.0 E 36.1 N
PIX = 30.0
NY, NX = 5, 7


def utm_centre(col, row):
    return ORIGIN[0] + (col + 0.5) * PIX, ORIGIN[1] - (row + 0.5) * PIX


def _utm_to_wgs(x, y):
    utm, wgs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32649)
    wgs.ImportFromEPSG(4326)
    for s in (utm, wgs):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat, _ = osr.CoordinateTransformation(utm, wgs).TransformPoint(x, y)
    return lon, lat


@pytest.fixture
def scene(qgis_app, tmp_path):
    """Deformation stack in UTM (30 m) + GWSA stack in EPSG:4326 (0.0005 deg) over the same place."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMainWindow

    project = QgsProject.instance()
    project.clear()
    ddates = sentinel1_dates(n=24)
    defo = smooth_stack(ddates, ny=NY, nx=NX, seed=4, nan_fraction=0.0).astype(np.float32)
    defo[5, 1, 2] = np.nan  # one NoData date at the clicked pixel
    dpath = write_stack(tmp_path / "sbas_timeseries.tif", defo, dates=ddates, nodata=float("nan"))

    gdates = [dt.date(2019, m, 15) for m in range(11, 13)] + [dt.date(2020, m, 15) for m in range(1, 13)]
    lon0, lat0 = _utm_to_wgs(ORIGIN[0] - 60, ORIGIN[1] + 60)
    gpix = 0.0005
    gx0, gy0 = np.floor(lon0 / gpix) * gpix, np.ceil(lat0 / gpix) * gpix
    gny, gnx = 6, 8
    t = np.arange(len(gdates))[:, None, None]
    gwsa = (
        -3.0 * t + 20 * np.sin(2 * np.pi * t / 12) + np.arange(gny)[None, :, None] + 0.1 * np.arange(gnx)[None, None, :]
    ).astype(np.float32)
    gpath = write_stack(tmp_path / "gwsa_monthly.tif", gwsa, dates=gdates, epsg=4326, origin=(gx0, gy0), pixel=gpix)
    for p in (dpath, gpath):
        ds = gdal.Open(p, gdal.GA_Update)
        ds.SetMetadata({"UNITS": "mm"})
        ds = None
    velocity = write_stack(tmp_path / "velocity.tif", defo[-1])  # single band: not a time series

    layers = [
        QgsRasterLayer(p, n) for p, n in ((dpath, "SBAS displacement"), (gpath, "GWSA (GRACE)"), (velocity, "velocity"))
    ]
    assert all(lyr.isValid() for lyr in layers)
    project.addMapLayers(layers)
    from subsidence_toolkit.processing_provider.styling import apply_style

    apply_style(layers[0], "timeseries")

    window = QMainWindow()
    window.resize(1100, 520)
    canvas = QgsMapCanvas(window)
    window.setCentralWidget(canvas)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32649"))
    canvas.setLayers(layers[:1])
    window.show()
    canvas.setExtent(layers[0].extent().buffered(15))
    canvas.refresh()

    from subsidence_toolkit.ui.timeseries_dock import TimeSeriesDock

    dock = TimeSeriesDock(canvas, window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.show()
    qgis_app.processEvents()
    yield dict(
        project=project,
        canvas=canvas,
        dock=dock,
        window=window,
        defo=defo,
        ddates=ddates,
        gwsa=gwsa,
        gdates=gdates,
        gpath=gpath,
        dpath=dpath,
        ggrid=(gx0, gy0, gpix),
    )
    dock.cleanup()
    window.close()
    project.clear()


def _click(tool, canvas, x, y, button=None):
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    dev = canvas.getCoordinateTransform().transform(x, y)
    pos = QPoint(int(round(dev.x())), int(round(dev.y())))
    button = button if button is not None else Qt.MouseButton.LeftButton
    # a full click: QgsMapToolEmitPoint reacts to the press, the polygon tool to the release
    tool.canvasPressEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonPress, pos, button, button))
    release = QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)
    tool.canvasReleaseEvent(release)


def _gwsa_expected(scene, x, y):
    lon, lat = _utm_to_wgs(x, y)
    gx0, gy0, gpix = scene["ggrid"]
    col, row = int(np.floor((lon - gx0) / gpix)), int(np.floor((gy0 - lat) / gpix))
    return scene["gwsa"][:, row, col]


def test_click_plots_known_series_on_twin_axes_and_exports(scene, tmp_path):
    dock, canvas = scene["dock"], scene["canvas"]
    dock.pick_button.click()
    assert canvas.mapTool() is dock.point_tool
    x, y = utm_centre(2, 1)
    _click(dock.point_tool, canvas, x, y)
    assert len(dock.series) == 2, dock.message.text()  # velocity.tif (one band) is not a time series
    defo_s, gwsa_s = dock.series
    assert abs(defo_s.point[0] - x) < 1 and abs(defo_s.point[1] - y) < 1
    assert defo_s.label == "SBAS displacement @ P1" and gwsa_s.label == "GWSA (GRACE) @ P1"
    assert defo_s.column_name() == "SBAS displacement @ P1 (%.1f, %.1f) [mm]" % defo_s.point

    # the plotted Line2D data are the known series
    left, right = dock.plot.ax_left.get_lines(), dock.plot.ax_right.get_lines()
    assert len(left) == 1 and len(right) == 1
    assert list(left[0].get_xdata()) == scene["ddates"]
    np.testing.assert_array_equal(np.asarray(left[0].get_ydata(), float), scene["defo"][:, 1, 2].astype(float))
    assert np.isnan(left[0].get_ydata()[5])
    assert list(right[0].get_xdata()) == scene["gdates"]
    np.testing.assert_array_equal(np.asarray(right[0].get_ydata(), float), _gwsa_expected(scene, *defo_s.point))
    assert dock.plot.ax_left.get_ylabel() == "Deformation (mm)"
    assert dock.plot.ax_right.get_ylabel() in ("Water storage anomaly (mm)", "Storage anomaly (mm)")  # by size

    # hold: a second point joins the plot with its own legend entries
    dock.hold_check.setChecked(True)
    x2, y2 = utm_centre(5, 3)
    _click(dock.point_tool, canvas, x2, y2)
    assert len(dock.series) == 4
    assert len(dock._canvas_items) == 2  # one marker per held point
    # compact legend: one colour per point (shared by its deformation and GWSA lines), one style per layer
    legend = [t.get_text() for t in dock.plot.ax_left.get_legend().get_texts()]
    assert legend == ["P1", "P2", "SBAS displacement", "GWSA (GRACE)"]
    lines = dock.plot.lines
    assert lines["SBAS displacement @ P1"].get_color() == lines["GWSA (GRACE) @ P1"].get_color()
    assert lines["SBAS displacement @ P2"].get_color() == lines["GWSA (GRACE) @ P2"].get_color()
    assert lines["SBAS displacement @ P1"].get_color() != lines["SBAS displacement @ P2"].get_color()
    assert lines["SBAS displacement @ P1"].get_linestyle() != lines["GWSA (GRACE) @ P1"].get_linestyle()
    # the map crosses carry the same labels and colours
    assert [m.text for m in dock._canvas_items] == ["P1", "P2"]
    assert [m.color.name() for m in dock._canvas_items] == [
        lines["SBAS displacement @ P%d" % k].get_color() for k in (1, 2)
    ]
    np.testing.assert_array_equal(dock.plot.ax_left.get_lines()[1].get_ydata(), scene["defo"][:, 3, 5])

    # CSV: union of dates, one column per plotted series
    out = dock.export_csv(str(tmp_path / "series.csv"))
    rows = list(csv.reader(Path(out).read_text().splitlines()))
    assert rows[0] == ["date"] + [s.column_name() for s in dock.series]
    all_dates = sorted(set(scene["ddates"]) | set(scene["gdates"]))
    assert [r[0] for r in rows[1:]] == [d.isoformat() for d in all_dates]
    by_date = {r[0]: r for r in rows[1:]}
    for k, d in enumerate(scene["ddates"]):
        cell = by_date[d.isoformat()][1]
        v = scene["defo"][k, 1, 2]
        assert (cell == "") if np.isnan(v) else float(cell) == pytest.approx(float(v), rel=1e-9)
    for k, d in enumerate(scene["gdates"]):
        assert float(by_date[d.isoformat()][2]) == pytest.approx(float(_gwsa_expected(scene, *defo_s.point)[k]))
    only_gwsa = [d for d in scene["gdates"] if d not in scene["ddates"]]
    assert only_gwsa and all(by_date[d.isoformat()][1] == "" for d in only_gwsa)  # absent from the SBAS series

    # PNG export and a screenshot of the dock next to the map (artifact)
    png = dock.export_png(str(tmp_path / "plot.png"))
    assert Path(png).stat().st_size > 10000
    from qgis.PyQt.QtGui import QImage

    img = QImage(png)
    assert (img.width(), img.height()) == (1500, 900)  # fixed publication size, whatever the dock size
    ARTIFACTS.mkdir(exist_ok=True)
    canvas.refresh()
    canvas.waitWhileRendering()
    scene["window"].grab().save(str(ARTIFACTS / "timeseries_dock.png"))
    assert (ARTIFACTS / "timeseries_dock.png").stat().st_size > 10000

    # no hold: the next click replaces the plot; clear empties it
    dock.hold_check.setChecked(False)
    _click(dock.point_tool, canvas, x, y)
    assert len(dock.series) == 2
    dock.clear_button.click()
    assert dock.series == [] and dock.plot.ax_left.get_lines() == []
    assert not dock.csv_button.isEnabled()
    # a click outside every raster plots nothing and says so
    _click(dock.point_tool, canvas, ORIGIN[0] - 5000, ORIGIN[1] + 5000)
    assert dock.series == [] and "outside" in dock.message.text()


def test_drawn_polygon_and_selected_feature_average(scene):
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsFeature,
        QgsGeometry,
        QgsPointXY,
        QgsProject,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import Qt

    from subsidence_toolkit.core.timeseries import pixel_series

    dock, canvas = scene["dock"], scene["canvas"]
    dock.polygon_button.click()
    assert canvas.mapTool() is dock.polygon_tool and not dock.pick_button.isChecked()
    drawn = []
    dock.polygon_tool.polygonDrawn.connect(drawn.append)
    # rectangle around the centres of cols 1-2, rows 2-3
    xa, xb, ya, yb = ORIGIN[0] + 35, ORIGIN[0] + 85, ORIGIN[1] - 65, ORIGIN[1] - 115
    for px, py in ((xa, ya), (xb, ya), (xb, yb), (xa, yb)):
        _click(dock.polygon_tool, canvas, px, py)
    _click(dock.polygon_tool, canvas, xa, ya, Qt.MouseButton.RightButton)
    assert len(drawn) == 1 and len(dock.series) == 2
    defo_s, gwsa_s = dock.series
    assert defo_s.npixels == 4 and defo_s.label == "SBAS displacement @ polygon 1"
    assert defo_s.column_name() == "SBAS displacement @ polygon 1 (4 px) [mm]"
    np.testing.assert_allclose(
        defo_s.values, scene["defo"][:, 2:4, 1:3].reshape(len(scene["ddates"]), -1).mean(axis=1), rtol=1e-6
    )
    g = QgsGeometry(drawn[0])
    g.transform(
        QgsCoordinateTransform(
            QgsCoordinateReferenceSystem("EPSG:32649"), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
        )
    )
    exp, n = pixel_series.polygon_mean_series(scene["gpath"], g.asWkt())
    np.testing.assert_allclose(gwsa_s.values, exp)
    assert gwsa_s.npixels == n >= 1

    # selected feature of a polygon layer in another CRS (EPSG:4326): cols 4-5, rows 0-1
    ring = [
        _utm_to_wgs(ORIGIN[0] + 4 * PIX + 5, ORIGIN[1] - 5),
        _utm_to_wgs(ORIGIN[0] + 6 * PIX - 5, ORIGIN[1] - 5),
        _utm_to_wgs(ORIGIN[0] + 6 * PIX - 5, ORIGIN[1] - 2 * PIX + 5),
        _utm_to_wgs(ORIGIN[0] + 4 * PIX + 5, ORIGIN[1] - 2 * PIX + 5),
    ]
    vl = QgsVectorLayer("Polygon?crs=EPSG:4326", "areas", "memory")
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(*p) for p in ring + ring[:1]]]))
    vl.dataProvider().addFeatures([f])
    scene["project"].addMapLayer(vl)
    assert dock.use_selected_polygons() == [] and "Select" in dock.message.text()
    vl.selectAll()
    new = dock.use_selected_polygons()
    assert len(new) == 2 and dock.series == new  # hold is off: replaced
    assert new[0].npixels == 4
    np.testing.assert_allclose(
        new[0].values, scene["defo"][:, 0:2, 4:6].reshape(len(scene["ddates"]), -1).mean(axis=1), rtol=1e-6
    )


def test_dock_without_matplotlib_says_so_and_still_exports_csv(scene, monkeypatch, tmp_path):
    from qgis.core import QgsPointXY

    from subsidence_toolkit.ui import plot as plot_module
    from subsidence_toolkit.ui.timeseries_dock import TimeSeriesDock

    def missing():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plot_module, "load_matplotlib", missing)
    dock = TimeSeriesDock(scene["canvas"], scene["window"])
    try:
        assert dock.plot is None
        assert "matplotlib is not available" in dock.placeholder.text()
        dock.add_point(QgsPointXY(*utm_centre(3, 3)))
        assert len(dock.series) == 2
        assert dock.export_png(str(tmp_path / "x.png")) is None and not dock.png_button.isEnabled()
        rows = list(csv.reader(Path(dock.export_csv(str(tmp_path / "s.csv"))).read_text().splitlines()))
        assert len(rows) == 1 + len(set(scene["ddates"]) | set(scene["gdates"]))
    finally:
        dock.cleanup()
        dock.deleteLater()


def test_plugin_adds_and_removes_the_action(qgis_app, monkeypatch, tmp_path):
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtWidgets import QMainWindow

    from subsidence_toolkit.plugin import SubsidenceToolkitPlugin

    class FakeIface:
        def __init__(self):
            self.window = QMainWindow()
            self.canvas = QgsMapCanvas(self.window)
            self.toolbar, self.menu, self.docks = [], [], []
            self.active = None

        def mainWindow(self):
            return self.window

        def mapCanvas(self):
            return self.canvas

        def activeLayer(self):
            return self.active

        def addToolBarIcon(self, a):
            self.toolbar.append(a)

        def removeToolBarIcon(self, a):
            self.toolbar.remove(a)

        def addPluginToRasterMenu(self, m, a):
            self.menu.append((m, a))

        def removePluginRasterMenu(self, m, a):
            self.menu.remove((m, a))

        def addDockWidget(self, area, d):
            self.docks.append(d)
            self.window.addDockWidget(area, d)

        def removeDockWidget(self, d):
            self.docks.remove(d)
            self.window.removeDockWidget(d)

    # the session provider stays registered: this test checks the GUI part only
    monkeypatch.setattr(SubsidenceToolkitPlugin, "initProcessing", lambda self: None)
    headless = SubsidenceToolkitPlugin(None)
    headless.initGui()
    assert headless.action is None
    headless.unload()

    iface = FakeIface()
    plugin = SubsidenceToolkitPlugin(iface)
    plugin.initGui()
    assert iface.toolbar == [plugin.action] and iface.menu[0][1] is plugin.action
    plugin.action.trigger()
    assert plugin.dock is not None and iface.docks == [plugin.dock]
    plugin.action.trigger()  # the same dock again
    assert iface.docks == [plugin.dock]
    # Apply toolkit style: a GWSA raster added by hand is styled by its metadata
    from qgis.core import QgsRasterLayer

    dates = sentinel1_dates(n=4)
    path = write_stack(tmp_path / "gwsa.tif", 30 * np.arange(4 * 6 * 7).reshape(4, 6, 7) / 168.0 - 12, dates=dates)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.SetMetadata({"KIND": "gwsa"})
    ds = None
    iface.active = QgsRasterLayer(path, "gwsa")
    assert [a.objectName() for _, a in iface.menu] == [
        "SubsidenceToolkitTimeSeriesViewer",
        "SubsidenceToolkitApplyStyle",
        "SubsidenceToolkitEditWorkflowModel",
    ]
    assert plugin.apply_style_to_selection() == [("gwsa", "gwsa")]
    from subsidence_toolkit.processing_provider.compat import renderer_band

    assert renderer_band(iface.active.renderer()) == 4
    # Edit a copy of the workflow model: copied into the models folder, never overwriting, opened in the modeler
    from subsidence_toolkit.ui import model_tools

    monkeypatch.setattr(model_tools, "user_models_folder", lambda: str(tmp_path))
    path1, dialog = plugin.edit_workflow_model()
    path2 = model_tools.copy_workflow_model()
    assert Path(path1).name == "subsidence_workflow.model3" and Path(path2).name == "subsidence_workflow_2.model3"
    assert Path(path1).read_bytes() == Path(model_tools.shipped_model_path()).read_bytes()
    assert dialog.model().childAlgorithms() and dialog.model().sourceFilePath() == path1
    dialog.close()
    plugin.unload()
    assert iface.toolbar == [] and iface.menu == [] and iface.docks == [] and plugin.dock is None


def _overlaps(boxes):
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]


@pytest.mark.parametrize("size", [(380, 300), (900, 600)])
def test_readable_at_dock_sizes(scene, qgis_app, size):
    """Tick labels do not overlap, axis labels and the legend are inside the figure, at both sizes;
    the same holds after a polygon and with aligned zeros. Screenshots go to tests/artifacts."""
    dock = scene["dock"]
    dock.setFloating(True)
    dock.resize(*size)
    dock.show()
    qgis_app.processEvents()
    dock.hold_check.setChecked(True)
    for col, row in ((2, 1), (5, 3), (0, 4)):
        dock.add_point(__import__("qgis.core", fromlist=["QgsPointXY"]).QgsPointXY(*utm_centre(col, row)))
    from qgis.core import QgsGeometry

    x0, y0 = utm_centre(1, 1)
    x1, y1 = utm_centre(4, 3)
    dock.add_polygon(
        QgsGeometry.fromWkt("POLYGON((%f %f,%f %f,%f %f,%f %f,%f %f))" % (x0, y0, x1, y0, x1, y1, x0, y1, x0, y0))
    )
    assert len(dock.series) == 8
    dock.zero_check.setChecked(True)
    qgis_app.processEvents()
    fig = dock.plot.figure
    w, h = dock.plot.widget.width(), dock.plot.widget.height()
    assert w <= size[0] and h <= size[1]
    assert abs(fig.get_figwidth() * fig.dpi - w) <= 2 and abs(fig.get_figheight() * fig.dpi - h) <= 2  # follows resize
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    fbox = fig.bbox
    ax, axr = dock.plot.ax_left, dock.plot.ax_right

    def inside(box, tol=1.0):
        return (
            box.x0 >= fbox.x0 - tol and box.x1 <= fbox.x1 + tol and box.y0 >= fbox.y0 - tol and box.y1 <= fbox.y1 + tol
        )

    def shown(axis, view):  # labels of the ticks drawn (inside the view limits)
        lo, hi = sorted(view)
        return [
            t.get_window_extent(renderer)
            for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs())
            if t.get_visible() and t.get_text() and lo <= v <= hi
        ]

    xt = shown(ax.xaxis, ax.get_xlim())
    assert len(xt) >= 2 and not _overlaps(xt)
    for a in (ax, axr):
        yt = shown(a.yaxis, a.get_ylim())
        assert len(yt) >= 2 and not _overlaps(yt) and all(inside(b) for b in yt)
        label = a.yaxis.label
        assert label.get_text() and inside(label.get_window_extent(renderer)), label.get_text()
    assert all(inside(b) for b in xt)
    legend = ax.get_legend().get_window_extent(renderer)
    assert inside(legend) and legend.y0 >= ax.get_window_extent(renderer).y1 - 2  # above the data, not over it
    # aligned zeros: 0 at the same height on both axes
    l0, l1 = ax.get_ylim()
    r0, r1 = axr.get_ylim()
    assert -l0 / (l1 - l0) == pytest.approx(-r0 / (r1 - r0), abs=1e-9)
    ARTIFACTS.mkdir(exist_ok=True)
    dock.grab().save(str(ARTIFACTS / ("timeseries_dock_%dx%d.png" % size)))


def test_band_slider_shows_the_chosen_date(scene, qgis_app):
    """A multiband toolkit layer: the dock's slider picks the band (date) the map shows."""
    dock, canvas, project = scene["dock"], scene["canvas"], scene["project"]
    layer = project.mapLayersByName("SBAS displacement")[0]
    velocity = project.mapLayersByName("velocity")[0]
    canvas.setCurrentLayer(layer)  # the dock follows the current layer
    assert not dock.band_row.isHidden()
    n = layer.bandCount()
    assert dock.band_slider.maximum() == n and dock.band_slider.value() == n  # the style shows the last date
    assert dock.show_band(layer, 3) == 3
    assert dock.band_label.text() == "%s (3/%d)" % (scene["ddates"][2].isoformat(), n)
    canvas.setCurrentLayer(velocity)  # one band: nothing to pick
    assert dock.band_row.isHidden()
