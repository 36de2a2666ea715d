"""Validate a time-series raster against leveling or well measurements (``subsidence:validatetimeseries``)."""

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsWkbTypes,
)

from ..core.insar import geometry
from ..core.io.lazy import lazy_module
from ..core.io.rasters import open_raster
from ..core.stats import validation
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import GeometryType, NumberType, SourceType
from ..processing_provider.tables import _plain, write_table
from .project_los import add_incidence_parameters, geometry_spec

pd = lazy_module("pandas")


class ValidateTimeSeries(SubsidenceAlgorithm):
    MEASUREMENTS = "MEASUREMENTS"
    ID_FIELD = "ID_FIELD"
    DATE_FIELD = "DATE_FIELD"
    VALUE_FIELD = "VALUE_FIELD"
    X_FIELD = "X_FIELD"
    Y_FIELD = "Y_FIELD"
    MEASUREMENTS_CRS = "MEASUREMENTS_CRS"
    VALUE_SCALE = "VALUE_SCALE"
    SIGN = "SIGN"
    TIME_SERIES = "TIME_SERIES"
    WINDOW = "WINDOW"
    DATE_TOLERANCE = "DATE_TOLERANCE"
    DATE_MATCHING = "DATE_MATCHING"
    RELATIVE = "RELATIVE"
    PROJECT_TO_VERTICAL = "PROJECT_TO_VERTICAL"
    INCIDENCE = "INCIDENCE"
    INCIDENCE_TYPE = "INCIDENCE_TYPE"
    INCIDENCE_ANGLE = "INCIDENCE_ANGLE"
    OUTPUT = "OUTPUT"
    OUTPUT_SUMMARY = "OUTPUT_SUMMARY"

    SIGNS = (1.0, -1.0)
    MATCHING = ("nearest", "linear")

    NAME = "validatetimeseries"
    DISPLAY_NAME = "Validate time series against measurements"
    GROUP = "Validation and sampling"
    GROUP_ID = "validation"
    TAGS = (
        "validation",
        "leveling",
        "levelling",
        "wells",
        "groundwater",
        "specific yield",
        "GWSA",
        "InSAR",
        "RMSE",
        "Pearson",
        "error",
        "benchmark",
    )
    SHORT_HELP = (
        "Compares a time-series raster with point measurements, one feature (or table row) per observation: "
        "InSAR deformation with leveling benchmarks (Liu et al. 2024, sec. 3.1.1: mean of the pixels in a "
        "200 m square around each benchmark, relative to a starting date) or GWSA with wells (sec. 2.3.4, "
        "eq. 13: dGWS = dH x Sy; sec. 3.2.1: 10 km square, Pearson R).\n\n"
        "Measured (mm) = sign x value x VALUE_SCALE. Leveling in mm: scale 1. Well levels in metres: "
        "scale = Sy x 1000 (Sy = 0.03 -> 30); sign -1 for depth to water (a deeper water table is a loss), "
        "+1 for head / water-table elevation.\n\n"
        "Dates: 'nearest' takes the band nearest the observation date if within the tolerance (ties to the "
        "earlier band); 'linear' interpolates between the two bands around the date (an observation up to "
        "the tolerance outside the series takes the end band). Observations that cannot be matched stop the "
        "run with their id and date.\n\n"
        "Window: mean of the valid pixels whose centres lie in a square of side WINDOW around the point "
        "(raster map units; metres for rasters in degrees; 0 = the pixel under the point). Points are "
        "transformed to the raster's CRS.\n\n"
        "Relative: each id's measured and predicted series are taken relative to their first common valid "
        "date; that reference row is kept in the table (reference = true) and left out of the summary.\n\n"
        "Outputs: per observation (id, date, band_date, measured, predicted, error = predicted - measured, "
        "n_pixels, reference) and a summary for all observations and per id (n, max/min/median/mean "
        "absolute error, RMSE, bias, Pearson R, p)."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterFeatureSource(self.MEASUREMENTS, self.tr("Measurements"), [SourceType.Vector]),
            "Point layer (or a table with X/Y fields) with one feature per observation: an id, a date and a value.",
        )
        self.add(
            QgsProcessingParameterField(self.ID_FIELD, self.tr("Id field"), parentLayerParameterName=self.MEASUREMENTS),
            "Benchmark or well identifier; observations with the same id form one series.",
        )
        self.add(
            QgsProcessingParameterField(
                self.DATE_FIELD, self.tr("Date field"), parentLayerParameterName=self.MEASUREMENTS
            ),
            "Observation date: a date field or text YYYY-MM-DD / YYYYMMDD.",
        )
        self.add(
            QgsProcessingParameterField(
                self.VALUE_FIELD, self.tr("Value field"), parentLayerParameterName=self.MEASUREMENTS
            ),
            "Measured value (leveling height/deformation in mm, well level in m, ...).",
        )
        self.add(
            QgsProcessingParameterField(
                self.X_FIELD, self.tr("X field (tables)"), parentLayerParameterName=self.MEASUREMENTS, optional=True
            ),
            "For tables without geometry: x / longitude column. Leave empty to use the point geometry.",
        )
        self.add(
            QgsProcessingParameterField(
                self.Y_FIELD, self.tr("Y field (tables)"), parentLayerParameterName=self.MEASUREMENTS, optional=True
            ),
            "For tables without geometry: y / latitude column.",
        )
        self.add(
            QgsProcessingParameterCrs(self.MEASUREMENTS_CRS, self.tr("CRS of the X/Y fields"), optional=True),
            "CRS of the X/Y columns (default: the layer's CRS, or EPSG:4326 when it has none).",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.VALUE_SCALE, self.tr("Value scale (to mm)"), NumberType.Double, defaultValue=1.0
            ),
            "Multiplier turning the value into mm of the raster's quantity: 1 for leveling in mm; "
            "Sy x 1000 for well levels in metres (eq. 13, dGWS = dH x Sy).",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.SIGN,
                self.tr("Value direction"),
                options=[
                    self.tr("Increases with uplift / storage (height, head)"),
                    self.tr("Increases with loss (depth to water)"),
                ],
                defaultValue=0,
            ),
            "Depth to water grows when storage falls, so its sign is flipped (measured = -value x scale).",
        )
        self.add(
            QgsProcessingParameterRasterLayer(self.TIME_SERIES, self.tr("Time-series raster")),
            "One band per date (band descriptions YYYY-MM-DD), in mm: SBAS deformation or GWSA.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.WINDOW, self.tr("Window side"), NumberType.Double, defaultValue=0.0, minValue=0.0
            ),
            "Side of the averaged square (raster map units; metres for rasters in degrees): 200 m for "
            "leveling, 10 km for wells in Liu et al. 2024; 0 = the pixel under the point.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.DATE_TOLERANCE,
                self.tr("Date tolerance (days)"),
                NumberType.Double,
                defaultValue=16.0,
                minValue=0.0,
            ),
            "Largest accepted distance between an observation date and the matched band date (nearest), "
            "or outside the series (linear). 16 days suits monthly series on mid-month dates.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.DATE_MATCHING,
                self.tr("Date matching"),
                options=[self.tr("Nearest date"), self.tr("Linear interpolation in time")],
                defaultValue=0,
            ),
            "Nearest band within the tolerance, or linear interpolation between the bands around the date.",
        )
        self.add(
            QgsProcessingParameterBoolean(
                self.RELATIVE, self.tr("Relative to the first common date"), defaultValue=False
            ),
            "Compare changes: both series of each id minus their value at the id's first date where both "
            "are valid (e.g. leveling relative to the first survey).",
        )
        self.add(
            QgsProcessingParameterBoolean(
                self.PROJECT_TO_VERTICAL, self.tr("Project LOS to vertical"), defaultValue=False
            ),
            "The raster holds LOS deformation and the measurements are vertical (leveling): compare with "
            "LOS / cos(incidence), horizontal motion neglected (as 'LOS to vertical').",
        )
        add_incidence_parameters(
            self,
            "For the vertical projection: incidence angle (degrees) or U component of the LOS unit vector "
            "(LiCSAR *.geo.U.tif) per pixel, as chosen in 'Incidence raster type'.",
            "For the vertical projection when no incidence raster is given.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Validation per observation"), SourceType.Vector),
            "id, date, band_date, measured, predicted, error, n_pixels, reference.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(self.OUTPUT_SUMMARY, self.tr("Validation summary"), SourceType.Vector),
            "For all observations (id '(all)') and per id: n, max/min/median/mean absolute error, RMSE, "
            "bias, Pearson R and p.",
        )

    def _observations(self, parameters, context, raster_crs):
        source = self.parameterAsSource(parameters, self.MEASUREMENTS, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.MEASUREMENTS))
        fields = source.fields()
        names = {}
        for key, label in (
            (self.ID_FIELD, "id"),
            (self.DATE_FIELD, "date"),
            (self.VALUE_FIELD, "value"),
            (self.X_FIELD, "x"),
            (self.Y_FIELD, "y"),
        ):
            name = self.parameterAsString(parameters, key, context)
            if not name:
                if label in ("x", "y"):
                    continue
                raise QgsProcessingException("%s: no %s field given" % (source.sourceName(), label))
            if fields.lookupField(name) < 0:
                raise QgsProcessingException(
                    "%s: field %r (%s) not found; fields are %s"
                    % (source.sourceName(), name, label, ", ".join(fields.names()))
                )
            names[label] = fields.lookupField(name)
        use_xy = "x" in names or "y" in names
        if use_xy and not ("x" in names and "y" in names):
            raise QgsProcessingException("give both an X and a Y field, or neither (to use the point geometry)")
        if not use_xy and QgsWkbTypes.geometryType(source.wkbType()) != GeometryType.Point:
            raise QgsProcessingException(
                "%s has no point geometry: give X and Y fields (and their CRS)" % source.sourceName()
            )
        if use_xy:
            src_crs = self.parameterAsCrs(parameters, self.MEASUREMENTS_CRS, context)
            if not src_crs.isValid():
                src_crs = (
                    source.sourceCrs() if source.sourceCrs().isValid() else QgsCoordinateReferenceSystem("EPSG:4326")
                )
        else:
            src_crs = source.sourceCrs()
        xform = None
        if src_crs.isValid() and raster_crs.isValid() and src_crs != raster_crs:
            xform = QgsCoordinateTransform(src_crs, raster_crs, context.transformContext())
        rows = []
        for f in source.getFeatures():
            a = f.attributes()
            oid, date, value = (_plain(a[names[k]]) for k in ("id", "date", "value"))
            if use_xy:
                x, y = _plain(a[names["x"]]), _plain(a[names["y"]])
                x = np.nan if x is None else float(x)
                y = np.nan if y is None else float(y)
            else:
                g = f.geometry()
                if g.isNull() or g.isEmpty():
                    x = y = np.nan
                else:
                    p = g.vertexAt(0)
                    x, y = p.x(), p.y()
            if xform is not None and np.isfinite(x) and np.isfinite(y):
                try:
                    p = xform.transform(QgsPointXY(x, y))
                    x, y = p.x(), p.y()
                except QgsCsException:
                    x = y = np.nan
            rows.append((oid, date, np.nan if value is None else value, x, y))
        if not rows:
            raise QgsProcessingException("%s has no observation" % source.sourceName())
        return pd.DataFrame(rows, columns=["id", "date", "value", "x", "y"])

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.TIME_SERIES, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.TIME_SERIES))
        path = layer_path(layer)
        window = self.parameterAsDouble(parameters, self.WINDOW, context)
        if window < 0:
            raise QgsProcessingException("Window side must be >= 0, got %g" % window)
        obs = self._observations(parameters, context, layer.crs())
        feedback.setProgress(20)
        with self.core_errors():
            if self.parameterAsBoolean(parameters, self.PROJECT_TO_VERTICAL, context):
                vertical = QgsProcessingUtils.generateTempFilename("vertical.tif")
                spec = geometry_spec(
                    self, parameters, context, self.INCIDENCE, self.INCIDENCE_TYPE, self.INCIDENCE_ANGLE
                )
                info = geometry.project_raster(
                    path, vertical, spec, is_canceled=feedback.isCanceled, log=feedback.pushWarning
                )
                feedback.pushInfo("comparing with the vertical projection of %s (%s)" % (path, info["geometry"]))
                path = vertical
            ds = open_raster(path)
            table, summary = validation.validate_time_series(
                ds,
                obs,
                window=window,
                tolerance_days=self.parameterAsDouble(parameters, self.DATE_TOLERANCE, context),
                method=self.MATCHING[self.parameterAsEnum(parameters, self.DATE_MATCHING, context)],
                value_scale=self.parameterAsDouble(parameters, self.VALUE_SCALE, context),
                sign=self.SIGNS[self.parameterAsEnum(parameters, self.SIGN, context)],
                relative=self.parameterAsBoolean(parameters, self.RELATIVE, context),
                canceled=lambda: self.check_canceled(feedback),
            )
        feedback.setProgress(80)
        nan = int(table["predicted"].isna().sum())
        if nan:
            feedback.pushWarning(
                "%d of %d observations have no valid raster value (NoData or outside %s)" % (nan, len(table), path)
            )
        s = summary.iloc[0]
        feedback.pushInfo(
            "n = %d, max |error| = %.3f, min = %.3f, median = %.3f, mean = %.3f, RMSE = %.3f, "
            "bias = %.3f, R = %.3f (p = %.3g)"
            % (
                s["n"],
                s["max_abs_error"],
                s["min_abs_error"],
                s["median_abs_error"],
                s["mean_abs_error"],
                s["rmse"],
                s["bias"],
                s["pearson_r"],
                s["p_value"],
            )
        )
        out = write_table(self, parameters, self.OUTPUT, context, table)
        out_s = write_table(self, parameters, self.OUTPUT_SUMMARY, context, summary)
        feedback.setProgress(100)
        return {self.OUTPUT: out, self.OUTPUT_SUMMARY: out_s}
