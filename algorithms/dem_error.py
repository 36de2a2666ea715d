"""Correct DEM error of a displacement time series (``subsidence:demerror``)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.insar import dem_error
from ..core.io.lazy import lazy_module
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType, SourceType
from ..processing_provider.inputs import raster_path
from ..processing_provider.rasters import output_raster_path, parse_date_list, parse_date_param
from ..processing_provider.styling import style_output
from ..processing_provider.tables import dataframe_from_source, write_table
from .project_los import add_incidence_parameters, geometry_spec

pd = lazy_module("pandas")


class DemError(SubsidenceAlgorithm):
    INPUT = "INPUT"
    BASELINES = "BASELINES"
    BASELINE_TABLE = "BASELINE_TABLE"
    POLY_DEGREE = "POLY_DEGREE"
    SEASONAL = "SEASONAL"
    STEP_DATES = "STEP_DATES"
    EXCLUDE_DATES = "EXCLUDE_DATES"
    REFERENCE_DATE = "REFERENCE_DATE"
    SLANT_RANGE = "SLANT_RANGE"
    SLANT_RANGE_RASTER = "SLANT_RANGE_RASTER"
    INCIDENCE = "INCIDENCE"
    INCIDENCE_TYPE = "INCIDENCE_TYPE"
    INCIDENCE_ANGLE = "INCIDENCE_ANGLE"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    THREADS = "THREADS"
    OUTPUT_TIMESERIES = "OUTPUT_TIMESERIES"
    OUTPUT_DEM_ERROR = "OUTPUT_DEM_ERROR"
    OUTPUT_TABLE = "OUTPUT_TABLE"

    NAME = "demerror"
    DISPLAY_NAME = "Correct DEM error (time series)"
    GROUP = "InSAR"
    GROUP_ID = "insar"
    TAGS = ("InSAR", "SBAS", "DEM error", "topographic residual", "perpendicular baseline", "MintPy", "time series")
    SHORT_HELP = (
        "Removes the displacement an error of the DEM leaves in an InSAR time series (Fattahi & Amelung 2013, IEEE "
        "TGRS 51(7)), as MintPy's dem_error.py does after the inversion: a DEM error dz (m) adds "
        "B_perp(t) / (r sin theta) x dz to the displacement of date t, B_perp(t) the perpendicular baseline of that "
        "acquisition relative to the reference date of the series. Per pixel the series is fitted by least squares "
        "with that term and a smooth deformation model (a polynomial of degree 2 in time by default, as MintPy; "
        "optional annual + semi-annual terms and steps); the corrected series is the input minus the fitted "
        "topographic term on every date, and dz is written as a map. Chain it after 'SBAS inversion' (its time "
        "series and its network table, which carries the baselines).\n\n"
        "As MintPy: the series is referenced to its first date and the baselines to that date (the corrected "
        "series stays 0 there); no mean is removed; time in decimal years (year + (day of year - 1) / 365.25); "
        "dates left out of the estimation are still corrected. Pixels with no more valid dates than model "
        "parameters, or whose dates cannot separate the topographic term from the model, are left as they are "
        "(DEM error NoData) and counted in the log. Pixels with missing dates are fitted on their own valid dates.\n\n"
        "The corrected series does not depend on the slant range or the incidence (they only scale the dz map); "
        "the defaults are a mid-swath Sentinel-1 IW geometry (880 km, 39 degrees). What correlates with the "
        "baseline history (a deformation signal that happens to follow it, orbital errors) is removed with the "
        "DEM error: look at the dz map and the table."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Displacement time series")),
            "LOS displacement time series (one band per date, mm), e.g. the OUTPUT_TIMESERIES of 'SBAS inversion' "
            "(referenced to its first date).",
        )
        self.add(
            QgsProcessingParameterFile(
                self.BASELINES,
                self.tr("Baselines file"),
                optional=True,
                fileFilter="Baselines (baselines *.csv *.txt *.tsv);;All files (*)",  # LiCSAR's file has no extension
            ),
            "Perpendicular baselines (m): a LiCSAR frame's metadata/baselines file; a CSV per acquisition "
            "(columns date, bperp); or a CSV per interferogram (date1/reference_date, date2/secondary_date, "
            "bperp/perp_baseline_m = B(date2) - B(date1)) such as the pairs CSV of 'SBAS inversion' or its network "
            "table written as CSV. Pair baselines are turned into per-date ones by least squares (first date 0); "
            "inconsistent pairs are reported. Give this or 'Baselines table'.",
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.BASELINE_TABLE, self.tr("Baselines table"), [SourceType.Vector], optional=True
            ),
            "A table (layer) with the same columns as the baselines file, e.g. the OUTPUT_NETWORK table of "
            "'SBAS inversion' in a model (its perp_baseline_m column: baselines of LiCSAR and HyP3 products). Used "
            "when no baselines file is given.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.POLY_DEGREE,
                self.tr("Polynomial degree of the deformation model"),
                NumberType.Integer,
                defaultValue=dem_error.DEFAULT_POLY_DEGREE,
                minValue=0,
                maxValue=6,
            ),
            "Degree of the polynomial in time fitted with the DEM error: 2 (default, MintPy's polyOrder) = offset, "
            "velocity and acceleration; 1 = linear.",
        )
        self.add(
            QgsProcessingParameterBoolean(self.SEASONAL, self.tr("Annual and semi-annual terms"), defaultValue=False),
            "Also fit cos/sin terms of 1 and 0.5 years (MintPy's periodic functions), for seasonal deformation "
            "(e.g. irrigation pumping) that would otherwise leak into the DEM-error estimate.",
        )
        self.add(
            QgsProcessingParameterString(self.STEP_DATES, self.tr("Step dates"), optional=True),
            "Comma-separated dates (YYYY-MM-DD) of sudden displacements (earthquake, mine collapse): a step "
            "function acting strictly after each date is added to the model (MintPy's stepDate).",
        )
        self.add(
            QgsProcessingParameterString(
                self.EXCLUDE_DATES, self.tr("Dates left out of the estimation"), optional=True
            ),
            "Comma-separated dates (YYYY-MM-DD) not used to estimate the DEM error (noisy acquisitions, MintPy's "
            "excludeDate); they are corrected like every other date.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterString(self.REFERENCE_DATE, self.tr("Reference date of the series"), optional=True),
            "The date at which the input series is 0 (YYYY-MM-DD). Default: its first date, as 'SBAS inversion' "
            "and MintPy write it. The baselines are taken relative to this date.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.SLANT_RANGE,
                self.tr("Slant range (m)"),
                NumberType.Double,
                defaultValue=dem_error.SENTINEL1_SLANT_RANGE_M,
                minValue=1.0,
            ),
            "Satellite-to-ground distance used when no slant-range raster is given. Default 880000 m: the "
            "scene-centre range of a Sentinel-1 IW frame (LiCSAR's frame metadata centre_range_m; MintPy uses the "
            "scene-centre range for geocoded products); IW1-IW3 span about 800-950 km. It only scales the DEM-error "
            "map (dz is proportional to it), never the corrected series.",
        )
        self.add(
            QgsProcessingParameterRasterLayer(
                self.SLANT_RANGE_RASTER, self.tr("Slant-range raster (m)"), optional=True
            ),
            "Slant range per pixel in metres (any grid or CRS covering the series: resampled to it); replaces the "
            "constant.",
            advanced=True,
        )
        add_incidence_parameters(
            self,
            "Incidence angle (degrees) or U = cos(incidence) (LiCSAR *.geo.U.tif) per pixel, as chosen in 'Incidence "
            "raster type'; any grid or CRS covering the series. It only scales the DEM-error map.",
            "Used when no incidence raster is given (default 39 degrees, mid-swath Sentinel-1 IW).",
        )
        self.parameterDefinition(self.INCIDENCE_ANGLE).setDefaultValue(dem_error.SENTINEL1_INCIDENCE_DEG)
        self.add_memory_limit(self.MEMORY_LIMIT_MB, help_text=self.MEMORY_HELP_WINDOWS)
        self.add_threads(self.THREADS)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_TIMESERIES, self.tr("Corrected time series")),
            "The input minus the fitted topographic term: same dates, units and metadata (plus "
            "DEM_ERROR_CORRECTION), NoData NaN.",
        )
        self.add(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_DEM_ERROR, self.tr("DEM error (m)"), optional=True, createByDefault=True
            ),
            "Estimated DEM error dz in metres (one band), relative to the reference pixel of the series (InSAR "
            "is relative); NoData where a pixel was not estimated or has no geometry.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TABLE, self.tr("Baselines and topographic term"), SourceType.Vector, optional=True
            ),
            "One row per date: perpendicular baseline relative to the reference date (m), whether the date was used "
            "in the estimation, RMS over the corrected pixels of the removed topographic term (mm), pixels.",
        )

    def _baselines(self, parameters, context):
        path = self.parameterAsFile(parameters, self.BASELINES, context)
        if path:
            return dem_error.read_baselines(path)
        source = self.parameterAsSource(parameters, self.BASELINE_TABLE, context)
        if source is None:
            raise QgsProcessingException(
                "no perpendicular baselines: give a baselines file (BASELINES: LiCSAR metadata/baselines, a pairs "
                "or per-date CSV) or a table (BASELINE_TABLE, e.g. the network table of 'SBAS inversion')"
            )
        df = dataframe_from_source(source)
        name = source.sourceName() or self.BASELINE_TABLE
        return dem_error.baselines_from_records(list(df.columns), df.itertuples(index=False, name=None), name)

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        ts_path = layer_path(layer)
        out_ts = output_raster_path(self, parameters, self.OUTPUT_TIMESERIES, context)
        wants_dz = self.parameterAsOutputLayer(parameters, self.OUTPUT_DEM_ERROR, context)
        out_dz = output_raster_path(self, parameters, self.OUTPUT_DEM_ERROR, context) if wants_dz else None
        with self.core_errors():
            baselines = self._baselines(parameters, context)
            rng_raster = raster_path(self, parameters, self.SLANT_RANGE_RASTER, context)
            threads = self.thread_count(parameters, context)
            summary = dem_error.correct_dem_error(
                ts_path,
                out_ts,
                out_dz,
                baselines,
                poly_degree=self.parameterAsInt(parameters, self.POLY_DEGREE, context),
                periods=(1.0, 0.5) if self.parameterAsBool(parameters, self.SEASONAL, context) else (),
                step_dates=parse_date_list(self.parameterAsString(parameters, self.STEP_DATES, context), "STEP_DATES")
                or (),
                exclude_dates=parse_date_list(
                    self.parameterAsString(parameters, self.EXCLUDE_DATES, context), "EXCLUDE_DATES"
                )
                or (),
                reference_date=parse_date_param(
                    self.parameterAsString(parameters, self.REFERENCE_DATE, context), "REFERENCE_DATE"
                ),
                slant_range=rng_raster or self.parameterAsDouble(parameters, self.SLANT_RANGE, context),
                incidence=geometry_spec(
                    self,
                    dict({self.INCIDENCE_ANGLE: dem_error.SENTINEL1_INCIDENCE_DEG}, **parameters),  # its default
                    context,
                    self.INCIDENCE,
                    self.INCIDENCE_TYPE,
                    self.INCIDENCE_ANGLE,
                ),
                # one window per thread at a time: each under the cap / threads
                memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context) / threads,
                run_tasks=lambda fn, tasks, shared: self.map_blocks(
                    fn, tasks, parameters, context, feedback, shared=shared
                ),
                is_canceled=feedback.isCanceled,
                log=feedback.pushInfo,
                windows_at_once=threads,
            )
        results = {self.OUTPUT_TIMESERIES: out_ts}
        style_output(self, context, out_ts, "timeseries")
        if out_dz:
            results[self.OUTPUT_DEM_ERROR] = out_dz
            style_output(self, context, out_dz, "velocity")
        dest = write_table(self, parameters, self.OUTPUT_TABLE, context, pd.DataFrame(summary["rows"]))
        if dest is not None:
            results[self.OUTPUT_TABLE] = dest
        return results
