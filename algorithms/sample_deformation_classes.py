"""Sample points by deformation class and average time series per class (``subsidence:sampledeformationclasses``)."""

import warnings

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.io.dates import parse_date
from ..core.io.errors import TimeSeriesError
from ..core.io.lazy import lazy_module
from ..core.io.rasters import open_raster, read_dates
from ..core.stats import sampling
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import FieldType, NumberType, SourceType, WkbType, field
from ..processing_provider.tables import write_features, write_table

pd = lazy_module("pandas")


class SampleDeformationClasses(SubsidenceAlgorithm):
    VELOCITY = "VELOCITY"
    CLASS_BREAKS = "CLASS_BREAKS"
    CLASS_NAMES = "CLASS_NAMES"
    SIGNED = "SIGNED"
    POINTS_PER_CLASS = "POINTS_PER_CLASS"
    AREA = "AREA"
    AREA_FIELD = "AREA_FIELD"
    SEED = "SEED"
    MIN_SPACING = "MIN_SPACING"
    TIME_SERIES = "TIME_SERIES"
    LAYER_NAMES = "LAYER_NAMES"
    WINDOW = "WINDOW"
    BASE_DATE = "BASE_DATE"
    OUTPUT_POINTS = "OUTPUT_POINTS"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OUTPUT_REPORT = "OUTPUT_REPORT"

    NAME = "sampledeformationclasses"
    DISPLAY_NAME = "Sample points by deformation class"
    GROUP = "Validation and sampling"
    GROUP_ID = "validation"
    TAGS = (
        "sampling",
        "random points",
        "deformation class",
        "velocity",
        "subsidence",
        "GWSA",
        "time series",
        "InSAR",
        "SBAS",
        "class mean",
        "cumulative change",
    )
    SHORT_HELP = (
        "Liu et al. (2024, sec. 2.3.5): picks N random points per deformation class of a velocity raster "
        "(micro 0-20, mild 20-50, moderate 50-100, severe >100 mm/yr), separately in each study area, and "
        "averages the time series of every class's points (e.g. the monthly SBAS deformation and GWSA) at "
        "the same spatial and temporal scale.\n\n"
        "Classes: breaks b0 < b1 < ... define [b0, b1), [b1, b2), ..., [bk, +inf) on |velocity|: the lower "
        "break is inclusive (exactly 20 mm/yr is 'mild', exactly 100 is 'severe'). Signed mode keeps "
        "subsidence (v < 0) and uplift (v >= 0) apart: 'subsidence micro', ..., 'uplift severe'.\n\n"
        "Selection: a uniform random sample without replacement of the valid (non-NoData) pixels of each "
        "class, reproducible from the seed (same seed -> same points). A class with fewer valid pixels than "
        "requested gives all of them, with a warning; an empty class gives no point and is reported. "
        "Optional minimum spacing (velocity map units) between points of one class.\n\n"
        "Time series: every raster may have its own grid and CRS; points are transformed to each raster's "
        "CRS and the mean of the valid pixels whose centres lie in a square of side WINDOW around the point "
        "is taken (0 = the pixel under the point; for rasters in degrees the side is in metres).\n\n"
        "Outputs: the points (id, area, class, velocity) and a long table with one row per area, class, "
        "layer and date: mean and sample std over the class's points, n points, temporal change (from the "
        "previous calendar month; empty across gaps) and cumulative change (from the base month)."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.VELOCITY, self.tr("Velocity raster (mm/yr)")),
            "Deformation rate, band 1 (e.g. the SBAS velocity, mm/yr; negative = subsidence). NoData pixels "
            "are never sampled.",
        )
        self.add(
            QgsProcessingParameterString(
                self.CLASS_BREAKS, self.tr("Class breaks (mm/yr)"), defaultValue="0,20,50,100"
            ),
            "Strictly increasing lower bounds of the classes on |velocity|, comma-separated. Class i is "
            "[break i, break i+1) (lower bound inclusive); the last class is open-ended.",
        )
        self.add(
            QgsProcessingParameterString(
                self.CLASS_NAMES, self.tr("Class names"), defaultValue="micro,mild,moderate,severe", optional=True
            ),
            "One name per break, comma-separated (default micro, mild, moderate, severe).",
        )
        self.add(
            QgsProcessingParameterBoolean(self.SIGNED, self.tr("Separate subsidence and uplift"), defaultValue=False),
            "Signed mode: the classes are applied to |velocity| separately for subsidence (v < 0) and uplift "
            "(v >= 0), giving 'subsidence <name>' and 'uplift <name>' classes.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.POINTS_PER_CLASS, self.tr("Points per class"), NumberType.Integer, defaultValue=100, minValue=1
            ),
            "Number of random points per class (and per area). 100 in Liu et al. 2024.",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.AREA, self.tr("Study areas (optional)"), [SourceType.VectorPolygon], optional=True
            ),
            "Polygon layer: each feature is sampled separately (a pixel belongs to a polygon when its centre "
            "is inside). Without it the whole raster is one area named 'all'.",
        )
        self.add(
            QgsProcessingParameterField(
                self.AREA_FIELD, self.tr("Area name field"), parentLayerParameterName=self.AREA, optional=True
            ),
            "Field labelling each polygon in the outputs (default: 'feature <id>').",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), NumberType.Integer, defaultValue=0, minValue=0
            ),
            "Same seed, same inputs -> the same points.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MIN_SPACING,
                self.tr("Minimum spacing between points"),
                NumberType.Double,
                defaultValue=0.0,
                minValue=0.0,
            ),
            "Minimum distance between two points of the same class and area, in the velocity raster's map "
            "units; 0 = none. When it cannot be met, fewer points are returned with a warning.",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.TIME_SERIES, self.tr("Time-series rasters"), SourceType.Raster, optional=True
            ),
            "Rasters with one band per date (band descriptions YYYY-MM-DD), e.g. the SBAS deformation "
            "resampled to months and a GWSA raster; grids and CRS may differ from the velocity raster.",
        )
        self.add(
            QgsProcessingParameterString(
                self.LAYER_NAMES, self.tr("Names of the time-series layers (optional)"), optional=True
            ),
            "Comma-separated names written in the 'layer' column of the table, one per time-series raster in "
            "the order given (e.g. deformation,gwsa). Default: the layer names. Set it in models, where "
            "intermediate outputs are all called OUTPUT.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.WINDOW, self.tr("Window side"), NumberType.Double, defaultValue=0.0, minValue=0.0
            ),
            "Side of the square averaged around each point in each time-series raster's map units (metres "
            "for rasters in degrees); 0 = the pixel under the point.",
        )
        self.add(
            QgsProcessingParameterString(
                self.BASE_DATE, self.tr("Base date of the cumulative change (optional)"), optional=True
            ),
            "YYYY-MM-DD, a date of every time-series raster. Default: the first date at which a class mean is valid.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterFeatureSink(self.OUTPUT_POINTS, self.tr("Sampled points"), SourceType.VectorPoint),
            "Point layer in the velocity raster's CRS: id, area, class, class_index, velocity (mm/yr), row, col.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TABLE, self.tr("Class time series"), SourceType.Vector, optional=True
            ),
            "Long table: area, class, layer, date, mean, std, n, temporal_change, cumulative_change.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_REPORT, self.tr("Class report"), SourceType.Vector, optional=True, createByDefault=False
            ),
            "One row per area and class: interval, available valid pixels, requested, selected, status "
            "(ok, fewer, spacing, empty).",
        )

    # ------------------------------------------------------------------ helpers
    def _areas(self, parameters, context, vel_crs, feedback):
        """[(label, wkt in the velocity CRS)] or [('all', None)]."""
        source = self.parameterAsSource(parameters, self.AREA, context)
        if source is None:
            return [("all", None)]
        field = self.parameterAsString(parameters, self.AREA_FIELD, context)
        idx = -1
        if field:
            idx = source.fields().lookupField(field)
            if idx < 0:
                raise QgsProcessingException("Area name field %r not found in %s" % (field, source.sourceName()))
        xform = QgsCoordinateTransform(source.sourceCrs(), vel_crs, context.transformContext())
        out = []
        for f in source.getFeatures(QgsFeatureRequest()):
            label = "feature %d" % f.id()
            if idx >= 0:
                v = f.attributes()[idx]
                if v is not None and not (hasattr(v, "isNull") and v.isNull()):
                    label = str(v)
            g = QgsGeometry(f.geometry())
            if g.isNull() or g.isEmpty():
                feedback.pushWarning("area %r has no geometry; skipped" % label)
                continue
            try:
                g.transform(xform)
            except QgsCsException as e:
                raise QgsProcessingException("area %r cannot be transformed to the velocity CRS: %s" % (label, e))
            out.append((label, g.asWkt()))
        if not out:
            raise QgsProcessingException("the area layer %s has no polygon" % source.sourceName())
        return out

    def _write_points(self, parameters, context, points, vel_crs):
        fields = QgsFields()
        for name, kind in (
            ("id", FieldType.LongLong),
            ("area", FieldType.String),
            ("class", FieldType.String),
            ("class_index", FieldType.Int),
            ("velocity", FieldType.Double),
            ("row", FieldType.LongLong),
            ("col", FieldType.LongLong),
        ):
            fields.append(field(name, kind))
        cols = [points[c].tolist() for c in ("id", "area", "class", "class_index", "velocity", "row", "col", "x", "y")]

        def features():
            for pid, area, cls, cidx, vel, row, col, x, y in zip(*cols):
                f = QgsFeature(fields)
                f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(x), float(y))))
                f.setAttributes([int(pid), str(area), str(cls), int(cidx), float(vel), int(row), int(col)])
                yield f

        return write_features(self, parameters, self.OUTPUT_POINTS, context, fields, WkbType.Point, vel_crs, features())

    # ------------------------------------------------------------------ run
    def processAlgorithm(self, parameters, context, feedback):
        vel_layer = self.parameterAsRasterLayer(parameters, self.VELOCITY, context)
        if vel_layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.VELOCITY))
        vel_path, vel_crs = layer_path(vel_layer), vel_layer.crs()
        series_layers = self.parameterAsLayerList(parameters, self.TIME_SERIES, context) or []
        given_names = [
            t.strip()
            for t in (self.parameterAsString(parameters, self.LAYER_NAMES, context) or "").split(",")
            if t.strip()
        ]
        if given_names and len(given_names) != len(series_layers):
            raise QgsProcessingException(
                "Names of the time-series layers: %d names for %d rasters (%s)"
                % (len(given_names), len(series_layers), ", ".join(given_names))
            )
        window = self.parameterAsDouble(parameters, self.WINDOW, context)
        if window < 0:
            raise QgsProcessingException("Window side must be >= 0, got %g" % window)
        base_text = (self.parameterAsString(parameters, self.BASE_DATE, context) or "").strip()
        base_date = parse_date(base_text) if base_text else None
        if base_text and base_date is None:
            raise TimeSeriesError("Base date: %r is not a date (YYYY-MM-DD)" % base_text)
        areas = self._areas(parameters, context, vel_crs, feedback)
        nsteps = len(areas) + len(series_layers)
        points, report = self._sample(parameters, context, feedback, vel_path, areas, nsteps)
        tables, layer_names = [], []
        for j, lyr in enumerate(series_layers):
            self.check_canceled(feedback)
            name = given_names[j] if given_names else (lyr.name() or layer_path(lyr))
            layer_names.append(name if name not in layer_names else "%s (%d)" % (name, j + 1))
            tables.append(
                self._class_series(points, lyr, vel_crs, context, feedback, window, layer_names[-1], base_date)
            )
            feedback.setProgress(100.0 * (len(areas) + j + 1) / nsteps)
        if not series_layers:
            self.warn(feedback, "no time-series raster given: the class time-series table is empty")
        table = pd.concat(tables, ignore_index=True) if tables else sampling.empty_class_series()
        return {
            self.OUTPUT_POINTS: self._write_points(parameters, context, points, vel_crs),
            self.OUTPUT_TABLE: write_table(self, parameters, self.OUTPUT_TABLE, context, table),
            self.OUTPUT_REPORT: write_table(
                self, parameters, self.OUTPUT_REPORT, context, report.astype({"area": str})
            ),
        }

    def _sample(self, parameters, context, feedback, vel_path, areas, nsteps):
        """Random points per class in every area: (points with ids, report)."""
        breaks = sampling.parse_breaks(self.parameterAsString(parameters, self.CLASS_BREAKS, context))
        signed = self.parameterAsBoolean(parameters, self.SIGNED, context)
        class_names = self.parameterAsString(parameters, self.CLASS_NAMES, context) or None
        names = sampling.class_names(breaks, class_names, signed)
        ds = open_raster(vel_path)
        feedback.pushInfo(
            "%s: classes %s"
            % (vel_path, "; ".join("%s = %s" % (a, b) for a, b in zip(names, sampling.class_intervals(breaks, signed))))
        )
        all_points, reports = [], []
        for i, (label, wkt) in enumerate(areas):
            self.check_canceled(feedback)
            window_px, mask = sampling.polygon_window_mask(ds, wkt, "area %r" % label) if wkt else (None, None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sampling.SamplingWarning)
                pts, rep, msgs = sampling.sample_deformation_classes(
                    ds,
                    self.parameterAsInt(parameters, self.POINTS_PER_CLASS, context),
                    breaks,
                    class_names,
                    signed,
                    self.parameterAsInt(parameters, self.SEED, context),
                    self.parameterAsDouble(parameters, self.MIN_SPACING, context),
                    window=window_px,
                    mask=mask,
                    area=label,
                    canceled=lambda: self.check_canceled(feedback),
                )
            for m in msgs:
                self.warn(feedback, m)
            feedback.pushInfo(
                "area %r: %s"
                % (
                    label,
                    ", ".join("%s %d/%d" % (r["class"], r["selected"], r["available"]) for _, r in rep.iterrows()),
                )
            )
            all_points.append(pts)
            reports.append(rep)
            feedback.setProgress(100.0 * (i + 1) / nsteps)
        points = pd.concat(all_points, ignore_index=True)
        if len(points) == 0:
            raise QgsProcessingException(
                "no valid velocity pixel in any class of %s within the areas; nothing was sampled" % vel_path
            )
        points.insert(0, "id", np.arange(1, len(points) + 1, dtype=np.int64))
        return points, pd.concat(reports, ignore_index=True)

    def _class_series(self, points, lyr, vel_crs, context, feedback, window, name, base_date):
        """The class-mean series of one time-series raster at the points."""
        path = layer_path(lyr)
        ts = open_raster(path)
        dates = read_dates(ts)
        x, y = self._transform(points, vel_crs, lyr.crs(), context, path)
        means, counts = sampling.window_means(ts, x, y, window, canceled=lambda: self.check_canceled(feedback))
        off = int((counts.sum(axis=1) == 0).sum())
        if off == len(points):
            raise QgsProcessingException(
                "%s: none of the %d sampled points has a valid pixel (rasters do not overlap)" % (path, len(points))
            )
        if off:
            self.warn(feedback, "%s: %d of %d points have no valid pixel in any band" % (path, off, len(points)))
        return sampling.class_series(points, means, dates, name, base_date)

    @staticmethod
    def _transform(points, src_crs, dst_crs, context, path):
        x = points["x"].to_numpy(dtype=np.float64)
        y = points["y"].to_numpy(dtype=np.float64)
        if not dst_crs.isValid() or not src_crs.isValid() or src_crs == dst_crs:
            return x, y
        xform = QgsCoordinateTransform(src_crs, dst_crs, context.transformContext())
        ox, oy = np.empty_like(x), np.empty_like(y)
        for i in range(x.size):
            try:
                p = xform.transform(QgsPointXY(x[i], y[i]))
                ox[i], oy[i] = p.x(), p.y()
            except QgsCsException:
                ox[i] = oy[i] = np.nan
        return ox, oy
