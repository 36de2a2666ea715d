#!/usr/bin/env python3
"""Regenerate the screenshots in ``docs/``: toolbox, SBAS and Geodetector dialogs, the time-series dock,
the workflow model in the graphical modeler, and the workflow and Geodetector reports.

Runs offscreen (no display needed; Xvfb works too): it builds the tiny demo world, runs the shipped
workflow model on it through Processing, then opens each piece of GUI on that data and grabs it.
The HTML reports are rendered with QtWebKit (as the Processing results viewer of QGIS 3.x does).

Usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/screenshots.py [OUTDIR]   (default docs/)
"""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package():
    spec = importlib.util.spec_from_file_location(
        "subsidence_toolkit", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["subsidence_toolkit"] = mod
    spec.loader.exec_module(mod)


def _settle(app, n=5):
    for _ in range(n):
        app.processEvents()


def run_workflow(work):
    import processing

    from subsidence_toolkit.demo import world
    from subsidence_toolkit.demo.step_90_workflow import FLDAS_VARS, _outlines, _pattern

    w = world.generate(work / "world", tiny=True)
    out = work / "out"
    out.mkdir(exist_ok=True)
    files = "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS)
    names = {
        "sbas:LOS velocity": "velocity.tif",
        "sbas:LOS displacement time series": "timeseries.tif",
        "sbas:SBAS quality": "quality.tif",
        "sbas:Interferogram network": "network.csv",
        "monthly:Monthly displacement": "displacement_monthly.tif",
        "downscaling:Downscaled TWSA": "twsa.tif",
        "gwsa:GWSA": "gwsa.tif",
        "classes:Class sample points": "class_points.gpkg",
        "classes:Class time series": "class_timeseries.csv",
        "lag:Lagged correlation": "lagged_correlation.csv",
        "lag:Lagged correlation report": "lagged_correlation.html",
        "geodetector:Geodetector factors": "geodetector_factor.csv",
        "geodetector:Geodetector interactions": "geodetector_interaction.csv",
        "geodetector:Geodetector report": "geodetector.html",
        "report:Workflow report": "report.html",
    }
    params = {
        "interferograms": w["interferograms"],
        "coherence": w["coherence"],
        "grace": w["grace"],
        "model_files": files,
        "component_files": files,
        "areas": w["areas"],
        "area_field": "area",
        "points_per_class": 20,
        "max_lag": 3,
        "factors": list(w["factors"].values()),
        "classes": 8,
    }
    params.update({k: str(out / v) for k, v in names.items()})
    res = processing.run("subsidence:workflow", params)
    return w, {k.split(":", 1)[1]: v for k, v in res.items() if ":" in k}, _outlines(w["areas"])


def render_html(app, path, png, width=1100, max_height=1900):
    """Render an HTML file as the results viewer shows it (QtWebKit), the top ``max_height`` px."""
    from qgis.PyQt.QtCore import QEventLoop, QSize, QTimer, QUrl
    from qgis.PyQt.QtGui import QImage, QPainter
    from qgis.PyQt.QtWebKitWidgets import QWebPage

    page = QWebPage()
    page.setViewportSize(QSize(width, 800))
    loop = QEventLoop()
    page.loadFinished.connect(lambda ok: loop.quit())
    QTimer.singleShot(20000, loop.quit)
    page.mainFrame().load(QUrl.fromLocalFile(str(path)))
    loop.exec()
    size = page.mainFrame().contentsSize()
    height = min(max_height, size.height())
    page.setViewportSize(QSize(width, height))
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(0xFFFFFFFF)
    painter = QPainter(image)
    page.mainFrame().render(painter)
    painter.end()
    image.save(str(png))
    return png


def toolbox(app, png):
    from qgis.core import QgsApplication
    from qgis.gui import QgsProcessingToolboxProxyModel, QgsProcessingToolboxTreeView

    view = QgsProcessingToolboxTreeView(None, QgsApplication.processingRegistry())
    filters = QgsProcessingToolboxProxyModel.Filter  # members renamed (FilterToolbox -> Toolbox) in QGIS 3.40
    view.setFilters(filters.Toolbox if hasattr(filters, "Toolbox") else filters.FilterToolbox)
    view.setHeaderHidden(True)
    view.resize(440, 600)
    model = view.model()
    for row in range(model.rowCount()):
        idx = model.index(row, 0)
        if "Subsidence" in str(model.data(idx)):
            view.expandRecursively(idx) if hasattr(view, "expandRecursively") else view.expand(idx)
            view.scrollTo(idx, view.ScrollHint.PositionAtTop)
    view.setWindowTitle("Processing Toolbox")
    view.show()
    _settle(app)
    view.grab().save(str(png))
    view.close()


class _Iface:
    """The little of ``iface`` the Processing dialogs use."""

    def __init__(self):
        from qgis.gui import QgsMapCanvas
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.canvas = QgsMapCanvas(self.window)

    def mainWindow(self):
        return self.window

    def mapCanvas(self):
        return self.canvas

    def messageBar(self):
        return None


def dialog(app, alg_id, png, size=(1000, 760)):
    import qgis.utils
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication

    if getattr(qgis.utils, "iface", None) is None:
        qgis.utils.iface = _Iface()
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    dlg = AlgorithmDialog(alg, False, None)
    dlg.resize(*size)
    dlg.show()
    _settle(app)
    dlg.grab().save(str(png))
    dlg.close()


def dock(app, outputs, outlines, png):
    from qgis.core import QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer, QgsVectorLayer
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMainWindow

    from subsidence_toolkit.processing_provider.styling import apply_toolkit_style
    from subsidence_toolkit.ui.timeseries_dock import TimeSeriesDock

    project = QgsProject.instance()
    project.clear()
    defo = QgsRasterLayer(outputs["Monthly displacement"], "Monthly displacement")
    gwsa = QgsRasterLayer(outputs["GWSA"], "GWSA")
    vel = QgsRasterLayer(outputs["LOS velocity"], "LOS velocity")
    for layer in (defo, gwsa, vel):
        apply_toolkit_style(layer)
    project.addMapLayers([vel, defo, gwsa])
    window = QMainWindow()
    window.resize(1280, 640)
    canvas = QgsMapCanvas(window)
    window.setCentralWidget(canvas)
    canvas.setDestinationCrs(vel.crs())
    layers = [vel]
    areas = None
    if outlines:
        areas = QgsVectorLayer("Polygon?crs=%s" % "EPSG:4326", "study areas", "memory")
        from qgis.core import QgsFeature

        feats = []
        for name, wkt, _crs in outlines:
            f = QgsFeature()
            f.setGeometry(QgsGeometry.fromWkt(wkt))
            feats.append(f)
        areas.dataProvider().addFeatures(feats)
        areas.renderer().symbol().setColor(Qt.GlobalColor.transparent)
        project.addMapLayer(areas)
        layers = [areas, vel]
    canvas.setLayers(layers)
    canvas.setExtent(vel.extent())
    window.show()
    d = TimeSeriesDock(canvas, window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d)
    window.resizeDocks([d], [560], Qt.Orientation.Horizontal)
    d.show()
    _settle(app)
    d.hold_check.setChecked(True)
    ext = vel.extent()
    # the deepest subsidence pixel and a pixel in the irrigation district (the second study area)
    import numpy as np
    from osgeo import gdal

    ds = gdal.Open(outputs["LOS velocity"])
    a = ds.ReadAsArray().astype(float)
    gt = ds.GetGeoTransform()
    r, c = np.unravel_index(np.nanargmin(a), a.shape)
    d.add_point(QgsPointXY(gt[0] + (c + 0.5) * gt[1], gt[3] + (r + 0.5) * gt[5]))
    others = [o for o in outlines if o[0] == "irrigation"] or outlines[1:]
    if others:
        g = QgsGeometry.fromWkt(others[0][1]).centroid().asPoint()
        from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform

        xf = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), vel.crs(), project)
        d.add_point(xf.transform(g))
    else:
        d.add_point(QgsPointXY(ext.center()))
    canvas.setCurrentLayer(defo)
    d.follow_layer(defo)
    canvas.refresh()
    canvas.waitWhileRendering()
    _settle(app, 10)
    canvas.waitWhileRendering()
    window.grab().save(str(png))
    d.cleanup()
    window.close()
    project.clear()


def modeler(app, png):
    from processing.modeler.ModelerDialog import ModelerDialog
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    model.fromFile(str(ROOT / "processing_provider" / "models" / "workflow.model3"))
    dlg = ModelerDialog.create(model) if hasattr(ModelerDialog, "create") else ModelerDialog(model)
    dlg.resize(1400, 900)
    dlg.show()
    _settle(app)
    if hasattr(dlg, "zoomFull"):
        dlg.zoomFull()
    _settle(app)
    dlg.grab().save(str(png))
    dlg.close()


def main():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    out_dir.mkdir(parents=True, exist_ok=True)
    sys.path.append("/usr/share/qgis/python/plugins")
    _package()
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from subsidence_toolkit.processing_provider.provider import SubsidenceProvider

    provider = SubsidenceProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    with tempfile.TemporaryDirectory(prefix="subsidence_shots_") as tmp:
        work = Path(tmp)
        w, outputs, outlines = run_workflow(work)
        shots = {}
        toolbox(app, out_dir / "toolbox.png")
        dialog(app, "subsidence:sbasinversion", out_dir / "dialog_sbas.png")
        dialog(app, "subsidence:geodetectorraster", out_dir / "dialog_geodetector.png")
        dock(app, outputs, outlines, out_dir / "timeseries_dock.png")
        modeler(app, out_dir / "modeler_workflow.png")
        render_html(app, outputs["Workflow report"], out_dir / "report_workflow.png")
        render_html(app, outputs["Geodetector report"], out_dir / "report_geodetector.png")
        render_html(
            app, outputs["Lagged correlation report"], out_dir / "report_lagged_correlation.png", max_height=1400
        )
        for p in sorted(out_dir.glob("*.png")):
            shots[p.name] = p.stat().st_size
        for name, size in shots.items():
            print("%-32s %7.0f kB" % (name, size / 1024))
    QgsApplication.processingRegistry().removeProvider(provider)
    app.exitQgis()


if __name__ == "__main__":
    main()
