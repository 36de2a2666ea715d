"""Summary report of a workflow run (``subsidence:workflowreport``): the last step of the shipped model."""

from qgis.core import (
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.reports.workflow_report import write_html_report
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import CrsWktVariant, SourceType
from ..processing_provider.tables import dataframe_from_source


class WorkflowReport(SubsidenceAlgorithm):
    VELOCITY = "VELOCITY"
    GWSA = "GWSA"
    AREAS = "AREAS"
    AREA_FIELD = "AREA_FIELD"
    CLASS_TABLE = "CLASS_TABLE"
    LAG_TABLE = "LAG_TABLE"
    FACTOR_TABLE = "FACTOR_TABLE"
    INTERACTION_TABLE = "INTERACTION_TABLE"
    LAG_REPORT = "LAG_REPORT"
    GEODETECTOR_REPORT = "GEODETECTOR_REPORT"
    OUTPUT_HTML = "OUTPUT_HTML"

    NAME = "workflowreport"
    DISPLAY_NAME = "Workflow summary report"
    GROUP = "Reports"
    GROUP_ID = "reports"
    TAGS = ("report", "html", "workflow", "summary", "subsidence", "groundwater")
    SHORT_HELP = (
        "One HTML page summarising a subsidence-groundwater study: velocity and GWSA maps in map "
        "coordinates with the study-area outlines, class-averaged cumulative deformation and GWSA per area, "
        "the best lag per group (a lag whose autocorrelation-corrected p_eff is not significant is flagged, "
        "not reported as a result) and the Geodetector factor and interaction tables, with links to the "
        "detailed reports. The last step of the shipped workflow model; the demo writes the same page."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.VELOCITY, self.tr("LOS velocity")),
            "Velocity raster (mm/yr), e.g. the SBAS inversion's velocity output.",
        )
        self.add(
            QgsProcessingParameterRasterLayer(self.GWSA, self.tr("GWSA time series")),
            "Groundwater storage anomaly raster (one band per month); the last month is mapped.",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.AREAS, self.tr("Study areas"), [SourceType.VectorPolygon], optional=True
            ),
            "Polygons drawn as outlines on the maps.",
        )
        self.add(
            QgsProcessingParameterField(
                self.AREA_FIELD, self.tr("Area name field"), parentLayerParameterName=self.AREAS, optional=True
            ),
            "Field whose value labels each outline.",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.CLASS_TABLE, self.tr("Class time series"), [SourceType.Vector], optional=True
            ),
            "Table of 'Sample points by deformation class' (area, class, layer, date, cumulative_change, n).",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.LAG_TABLE, self.tr("Lagged correlation table"), [SourceType.Vector], optional=True
            ),
            "Table of 'Lagged correlation' (group, series, lag, r, p, n_eff, p_eff, best_lag).",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.FACTOR_TABLE, self.tr("Geodetector factor table"), [SourceType.Vector], optional=True
            ),
            "Factor detector table of the Geodetector.",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.INTERACTION_TABLE, self.tr("Geodetector interaction table"), [SourceType.Vector], optional=True
            ),
            "Interaction detector table of the Geodetector.",
        )
        self.add(
            QgsProcessingParameterFile(
                self.LAG_REPORT, self.tr("Lagged correlation report"), extension="html", optional=True
            ),
            "HTML report of the lagged correlation, linked from the summary.",
        )
        self.add(
            QgsProcessingParameterFile(
                self.GEODETECTOR_REPORT, self.tr("Geodetector report"), extension="html", optional=True
            ),
            "HTML report of the Geodetector, linked from the summary.",
        )
        self.add(
            QgsProcessingParameterFileDestination(self.OUTPUT_HTML, self.tr("Workflow report"), "HTML files (*.html)"),
            "The summary page (self-contained: figures embedded).",
        )

    def _table(self, parameters, name, context):
        if parameters.get(name) in (None, ""):
            return None
        source = self.parameterAsSource(parameters, name, context)
        return dataframe_from_source(source) if source is not None else None

    def processAlgorithm(self, parameters, context, feedback):
        velocity = layer_path(self.parameterAsRasterLayer(parameters, self.VELOCITY, context))
        gwsa = layer_path(self.parameterAsRasterLayer(parameters, self.GWSA, context))
        outlines = []
        areas = self.parameterAsSource(parameters, self.AREAS, context)
        if areas is not None:
            field = self.parameterAsString(parameters, self.AREA_FIELD, context)
            crs = areas.sourceCrs().toWkt(CrsWktVariant.PreferredGdal)
            for f in areas.getFeatures():
                if f.hasGeometry():
                    outlines.append((str(f[field]) if field else "", f.geometry().asWkt(), crs))
        tables = {
            k: self._table(parameters, n, context)
            for k, n in (
                ("class_table", self.CLASS_TABLE),
                ("lag_table", self.LAG_TABLE),
                ("factor_table", self.FACTOR_TABLE),
                ("interaction_table", self.INTERACTION_TABLE),
            )
        }
        feedback.setProgress(30)
        links = {
            "lagged correlation": self.parameterAsFile(parameters, self.LAG_REPORT, context),
            "Geodetector": self.parameterAsFile(parameters, self.GEODETECTOR_REPORT, context),
        }
        out = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        with self.core_errors():
            write_html_report(out, velocity, gwsa, outlines=outlines, links=links, **tables)
        feedback.setProgress(100)
        return {self.OUTPUT_HTML: out}
