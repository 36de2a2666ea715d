"""GRACE weighted downscaling (``subsidence:gracedownscaling``), Liu et al. (2024) eqs. 6-9."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.grace import downscaling, products
from ..core.io.dates import month_from_index
from ..core.io.errors import TimeSeriesError
from ..core.io.rasters import RasterWriter
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType, SourceType
from ..processing_provider.parameters import add_accept_zero_months, split_specs, unit_specs
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.tables import write_table


def optional_number(alg, parameters, name, context):
    v = parameters.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    return alg.parameterAsDouble(parameters, name, context)


NC_EXT = (".nc", ".nc4", ".cdf", ".netcdf", ".h5", ".he5")
FILE_FILTER = "NetCDF or GeoTIFF (*.nc *.nc4 *.h5 *.tif *.tiff);;All files (*.*)"


def file_source(path, variable):
    """A file parameter + variable name -> a GDAL source (``NETCDF:"f":var`` for NetCDF files)."""
    path = (path or "").strip()
    if not path:
        return None
    if path.upper().startswith("NETCDF:") or not path.lower().endswith(NC_EXT) or not (variable or "").strip():
        return path
    return products.gdal_name(path, variable.strip())


class GraceDownscaling(SubsidenceAlgorithm):
    GRACE = "GRACE"
    GRACE_VARIABLE = "GRACE_VARIABLE"
    GRACE_SCALE = "GRACE_SCALE"
    SCALE_FACTOR = "SCALE_FACTOR"
    SCALE_FACTOR_VARIABLE = "SCALE_FACTOR_VARIABLE"
    MODEL = "MODEL"
    MODEL_FILES = "MODEL_FILES"
    MODEL_UNITS = "MODEL_UNITS"
    INTERPOLATION = "INTERPOLATION"
    CLIMATOLOGY_START = "CLIMATOLOGY_START"
    CLIMATOLOGY_END = "CLIMATOLOGY_END"
    ACCEPT_ZERO_MONTHS = "ACCEPT_ZERO_MONTHS"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    OUTPUT = "OUTPUT"
    OUTPUT_TABLE = "OUTPUT_TABLE"

    METHODS = downscaling.METHODS
    METHOD_LABELS = ("Bilinear", "Bicubic spline", "Inverse distance (4 nearest, power 2)", "Nearest")

    NAME = "gracedownscaling"
    DISPLAY_NAME = "GRACE weighted downscaling"
    GROUP = "GRACE and groundwater"
    GROUP_ID = "grace"
    TAGS = (
        "GRACE",
        "GRACE-FO",
        "mascon",
        "CSR",
        "JPL",
        "GLDAS",
        "FLDAS",
        "downscaling",
        "TWSA",
        "terrestrial water storage",
        "climatology",
    )
    SHORT_HELP = (
        "Brings GRACE terrestrial water storage anomalies (TWSA, 0.25-0.5 deg mascons) to the grid of a "
        "high-resolution hydrological model by weighted downscaling (Liu et al. 2024, Land 13:184, sec. 2.3.2, "
        "eqs. 6-9):\n"
        "TG_m = mean over years of GRACE for calendar month m; TF_m = the same for the model TWS; "
        "E = TG - TG_m; downscaled TD = TF_m + f(E), f = interpolation of the coarse deviation to the fine grid.\n\n"
        'GRACE input: a CSR/JPL mascon NetCDF variable (e.g. NETCDF:"CSR_GRACE_GRACE-FO_RL06_Mascons_'
        'all-corrections_v02.nc":lwe_thickness) or a time-series GeoTIFF. Files without a CRS are taken as '
        "EPSG:4326, 0-360 longitudes are handled, and the coarse grid is read with extra cells around the model "
        "grid so edge cells are not NoData. Each GRACE record goes to the calendar month holding the midpoint of "
        "its time_bounds; special months centred in a neighbouring month (e.g. Nov 2011 in Oct 2011) move to "
        "the adjacent empty month (reported in the log). Missing months (e.g. 2017-07..2018-05) are NoData "
        "bands, never interpolated, and are listed in the log.\n\n"
        "Model: one or more inputs summed into the fine TWS (e.g. FLDAS soil-moisture layers + SWE + GLDAS canopy "
        "water); the first defines the output grid, inputs on other grids are interpolated bilinearly to it. "
        "Inputs are rasters and/or monthly file lists such as "
        'NETCDF:"/data/FLDAS_NOAH01_C_GL_M.A*.nc":SoilMoi10_40cm_tavg '
        "(month from the file's time or the .AYYYYMM. in its name).\n\n"
        "Output: fine TWS (mm) with one band per month of the GRACE record (band descriptions YYYY-MM-15), and "
        "a table with the cos(latitude)-weighted regional mean of the interpolated GRACE field, the model TWS "
        "and the downscaled TWS per month."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterFile(
                self.GRACE, self.tr("GRACE TWSA (mascon NetCDF or time-series raster)"), fileFilter=FILE_FILTER
            ),
            "CSR or JPL mascon NetCDF file (the variable is chosen below), a GDAL source such as "
            'NETCDF:"file.nc":lwe_thickness, or a GeoTIFF with one band per month (band descriptions '
            "YYYY-MM-DD).",
        )
        self.add(
            QgsProcessingParameterString(
                self.GRACE_VARIABLE, self.tr("GRACE NetCDF variable"), defaultValue="lwe_thickness", optional=True
            ),
            "Variable read from a NetCDF GRACE file (lwe_thickness in CSR and JPL mascons).",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.GRACE_SCALE, self.tr("GRACE unit factor to mm"), NumberType.Double, defaultValue=10.0, minValue=0.0
            ),
            "Multiplier turning GRACE values into mm: 10 for the cm of CSR/JPL mascons, 1 for mm. "
            "0 = take it from the file's units attribute. A mismatch with the file's units is reported.",
        )
        self.add(
            QgsProcessingParameterFile(
                self.SCALE_FACTOR, self.tr("Gain (scale) factors (optional)"), optional=True, fileFilter=FILE_FILTER
            ),
            "JPL gain factors on the GRACE grid (the JPL mascon file itself, CLM4.SCALE_FACTOR...nc, or a "
            "GeoTIFF); GRACE values are multiplied by them cell by cell. CSR mascons have none.",
        )
        self.add(
            QgsProcessingParameterString(
                self.SCALE_FACTOR_VARIABLE,
                self.tr("Gain factor NetCDF variable"),
                defaultValue="scale_factor",
                optional=True,
            ),
            "Variable holding the gain factors in a NetCDF file (scale_factor in JPL files).",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.MODEL, self.tr("Fine model TWS rasters (summed)"), SourceType.Raster, optional=True
            ),
            "Time-series rasters of the hydrological model (one band per month); several rasters (e.g. "
            "soil-moisture layers, snow, canopy) are summed. The first model input defines the output grid; "
            "inputs on other grids are interpolated bilinearly to it.",
        )
        self.add(
            QgsProcessingParameterString(
                self.MODEL_FILES, self.tr("Model monthly file lists (optional)"), optional=True, multiLine=True
            ),
            "Further model inputs as monthly file lists, one per line or separated by ';', e.g. "
            'NETCDF:"/data/FLDAS_NOAH01_C_GL_M.A*.nc":SoilMoi00_10cm_tavg. Summed with the rasters above.',
        )
        self.add(
            QgsProcessingParameterString(self.MODEL_UNITS, self.tr("Model units"), defaultValue="auto", optional=True),
            "One unit statement for all model inputs or one per input (rasters first, then file lists), "
            "comma separated: auto (from the file; volumetric layer thickness from names like "
            "SoilMoi10_40cm), mm, kg m-2, cm, m, m3 m-3:<layer thickness in m>, or a number.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.INTERPOLATION,
                self.tr("Interpolation of the GRACE deviation"),
                options=list(self.METHOD_LABELS),
                defaultValue=0,
            ),
            "f in TD = TF_m + f(E): bilinear (default), bicubic spline, inverse distance or nearest coarse cell.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.CLIMATOLOGY_START,
                self.tr("Climatology start (decimal year, optional)"),
                NumberType.Double,
                optional=True,
            ),
            "First year of the months averaged into TG_m and TF_m (e.g. 2020.0). Default: every month where "
            "both GRACE and the model exist.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.CLIMATOLOGY_END,
                self.tr("Climatology end (decimal year, optional)"),
                NumberType.Double,
                optional=True,
            ),
            "Last year of the climatology months (e.g. 2021.999).",
        )
        add_accept_zero_months(self, self.ACCEPT_ZERO_MONTHS)
        self.add_memory_limit(self.MEMORY_LIMIT_MB, help_text=self.MEMORY_HELP_WITH_CACHE)
        self.add_threads()
        self.add_dask_scheduler(self.DASK_SCHEDULER)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Downscaled TWS")),
            "GeoTIFF on the model grid, mm, one band per GRACE month; missing GRACE months are NoData bands.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TABLE,
                self.tr("Regional means per month"),
                SourceType.Vector,
                optional=True,
                createByDefault=False,
            ),
            "Per month: cos(latitude)-weighted mean over the model grid of GRACE (interpolated), model TWS "
            "and downscaled TWS (mm).",
        )

    def _check_units(self, reader, source, scale, feedback):
        """Warn when the file's units imply another factor to mm than GRACE_SCALE."""
        if scale == 0 or not reader.file_units:
            return
        try:
            f = products.units_to_mm(reader.file_units, source=source)
        except TimeSeriesError:
            return
        if abs(f - scale) > 1e-9:
            self.warn(
                feedback,
                "%s: units %r imply a factor %g to mm but GRACE unit factor is %g"
                % (source, reader.file_units, f, scale),
            )

    def processAlgorithm(self, parameters, context, feedback):
        grace_src = file_source(
            self.parameterAsFile(parameters, self.GRACE, context),
            self.parameterAsString(parameters, self.GRACE_VARIABLE, context),
        )
        if not grace_src:
            raise QgsProcessingException("no GRACE input given")
        gain_src = file_source(
            self.parameterAsFile(parameters, self.SCALE_FACTOR, context),
            self.parameterAsString(parameters, self.SCALE_FACTOR_VARIABLE, context),
        )
        model_src = [layer_path(lyr) for lyr in self.parameterAsLayerList(parameters, self.MODEL, context)]
        model_src += split_specs(self.parameterAsString(parameters, self.MODEL_FILES, context))
        if not model_src:
            raise QgsProcessingException("give at least one model raster or monthly file list (MODEL / MODEL_FILES)")
        method = self.METHODS[self.parameterAsEnum(parameters, self.INTERPOLATION, context)]
        out_path = output_raster_path(self, parameters, self.OUTPUT, context)
        scale = self.parameterAsDouble(parameters, self.GRACE_SCALE, context)
        start = optional_number(self, parameters, self.CLIMATOLOGY_START, context)
        end = optional_number(self, parameters, self.CLIMATOLOGY_END, context)
        period = None if start is None and end is None else (start, end)
        # one window per thread at a time: each under the cap / threads
        threads = self.thread_count(parameters, context)
        memory = self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context) / threads
        with self.core_errors():
            g = products.ProductReader(grace_src, units="auto" if scale == 0 else repr(scale), label=grace_src)
            self._check_units(g, grace_src, scale, feedback)
            units = unit_specs(
                self.parameterAsString(parameters, self.MODEL_UNITS, context), len(model_src), "Model units"
            )
            model = downscaling.ModelSum([products.ProductReader(s, units=u) for s, u in zip(model_src, units)])
            for r in model.readers:
                feedback.pushInfo("model: " + "; ".join(r.report()))
            gain = None
            if gain_src:
                gain = lambda stack: products.read_gain(gain_src, stack)  # noqa: E731
            grid = model.grid()
            nt = len(g.months)
            writer = RasterWriter(
                out_path,
                grid,
                nt,
                dates=[month_from_index(k) for k in g.months],
                metadata={
                    "SOURCE_GRACE": grace_src,
                    "SOURCE_MODEL": model.label,
                    "INTERPOLATION": method,
                    "METHOD": "weighted downscaling, Liu et al. 2024 eqs. 6-9",
                },
                require_data=True,
            )
            with writer:
                months, table = downscaling.weighted_downscaling(
                    g,
                    model,
                    method=method,
                    period=period,
                    gain=gain,
                    write=lambda r0, b, c0=0: writer.write_block(r0, b.astype("float32", copy=False), c0),
                    progress=lambda fraction: self.check_canceled(feedback),
                    memory_mb=memory,
                    log=feedback.pushInfo,
                    out_dtype="float32",
                    accept_zero_months=self.parameterAsBool(parameters, self.ACCEPT_ZERO_MONTHS, context),
                    windows_at_once=threads,
                    run_tasks=lambda fn, tasks, shared: self.map_blocks(
                        fn, tasks, parameters, context, feedback, self.DASK_SCHEDULER, shared=shared
                    ),
                )
        table_id = write_table(self, parameters, self.OUTPUT_TABLE, context, table)
        feedback.setProgress(100)
        return {self.OUTPUT: out_path, self.OUTPUT_TABLE: table_id}
