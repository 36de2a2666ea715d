"""Resample time series in time (``subsidence:resampletimeseries``)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.timeseries import resample
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType
from ..processing_provider.rasters import output_raster_path, parse_date_list, parse_date_param
from ..processing_provider.styling import style_output


class ResampleTimeSeries(SubsidenceAlgorithm):
    INPUT = "INPUT"
    DATES = "DATES"
    METHOD = "METHOD"
    STEP = "STEP"
    DAY_OF_MONTH = "DAY_OF_MONTH"
    STEP_DAYS = "STEP_DAYS"
    START = "START"
    END = "END"
    MIN_VALID = "MIN_VALID"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    OUTPUT = "OUTPUT"

    METHODS = ("linear", "cubic", "pchip", "nearest")
    METHOD_LABELS = ("Linear", "Cubic spline (not-a-knot)", "PCHIP (monotone cubic)", "Nearest date")
    STEPS = ("monthly", "days")

    NAME = "resampletimeseries"
    DISPLAY_NAME = "Resample time series in time"
    GROUP = "Time series"
    GROUP_ID = "timeseries"
    TAGS = ("time series", "resample", "interpolate", "monthly", "spline", "InSAR", "SBAS", "temporal")
    SHORT_HELP = (
        "Resamples a time-series raster (one band per date) to new dates, e.g. irregular Sentinel-1 "
        "acquisitions to one value per month as in Liu et al. (2024, sec. 2.3.1: cubic spline, 1 month).\n\n"
        "Input dates are read from the band descriptions or band metadata (YYYY-MM-DD, YYYYMMDD or "
        "DYYYYMMDD), from NetCDF time, or from the Dates parameter.\n\n"
        "Every pixel is interpolated from its own valid (non-NoData) dates only. Target dates before a "
        "pixel's first or after its last valid date are NoData: nothing is extrapolated. Pixels with fewer "
        "than 'Minimum valid dates' are NoData.\n\n"
        "Methods: linear (numpy.interp), cubic spline with not-a-knot ends (scipy CubicSpline), PCHIP "
        "(monotone, no overshoot between dates), nearest date (ties to the earlier date).\n\n"
        "Output: a float32 GeoTIFF with one band per target date (band description YYYY-MM-DD), NoData NaN, "
        "same units as the input. The stack is processed in row blocks under the memory limit; the result "
        "does not depend on the block size."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Time-series raster")),
            "Multiband raster, one band per date (e.g. an SBAS displacement time series in mm).",
        )
        self.add(
            QgsProcessingParameterString(self.DATES, self.tr("Dates of the bands (optional)"), optional=True),
            "Comma-separated dates (YYYY-MM-DD), one per band, for rasters whose bands carry no dates. "
            "Leave empty to read them from the raster.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterEnum(
                self.METHOD, self.tr("Interpolation method"), options=list(self.METHOD_LABELS), defaultValue=1
            ),
            "Linear, cubic spline (default, as in Liu et al. 2024), PCHIP or nearest date. Each pixel uses "
            "only its valid dates.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.STEP, self.tr("Target dates"), options=["Monthly", "Every N days"], defaultValue=0
            ),
            "Monthly: one date per calendar month on 'Day of month'. Every N days: a regular step from the start date.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.DAY_OF_MONTH,
                self.tr("Day of month (monthly step)"),
                NumberType.Integer,
                defaultValue=15,
                minValue=1,
                maxValue=31,
            ),
            "Day of each month for monthly targets (default 15 = mid-month). Days beyond a month's length "
            "(e.g. 31 in April, 29-31 in February) fall on that month's last day.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.STEP_DAYS,
                self.tr("Step in days (every N days)"),
                NumberType.Integer,
                defaultValue=12,
                minValue=1,
            ),
            "Step between target dates when 'Every N days' is chosen (e.g. 12 for the Sentinel-1 revisit).",
        )
        self.add(
            QgsProcessingParameterString(self.START, self.tr("Start date (optional)"), optional=True),
            "First date of the target range (YYYY-MM-DD). Default: the first input date.",
        )
        self.add(
            QgsProcessingParameterString(self.END, self.tr("End date (optional)"), optional=True),
            "Last date of the target range (YYYY-MM-DD). Default: the last input date.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MIN_VALID,
                self.tr("Minimum valid dates per pixel"),
                NumberType.Integer,
                defaultValue=2,
                minValue=2,
            ),
            "Pixels with fewer valid dates than this are NoData in the output.",
            advanced=True,
        )
        self.add_memory_limit(
            self.MEMORY_LIMIT_MB,
            help_text="Upper bound of the run's working memory, all threads together: the windows' arrays (about "
            "5 bytes per input date (9 for float64 or scaled inputs) and 4 per target date for each pixel, plus "
            "about 30 MB per thread of working chunks, interpolated in float64) and GDAL's cache of the input blocks "
            "two windows share. Large stacks are streamed in windows of whole 256 x 256 output tiles under this "
            "cap; results do not depend on it beyond float rounding. Decoding a tile of a pixel-interleaved stack "
            "takes all its bands at once (62 MB for 256 x 256 x 120 float32): where a window cannot fit the limit "
            "the log says how much each one takes.",
        )
        self.add_threads()
        self.add_dask_scheduler(self.DASK_SCHEDULER)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Resampled time series")),
            "GeoTIFF with one band per target date (band descriptions YYYY-MM-DD), NoData NaN.",
        )

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        out_path = output_raster_path(self, parameters, self.OUTPUT, context)
        threads = self.thread_count(parameters, context)
        resample.resample_raster(
            layer_path(layer),
            out_path,
            method=self.METHODS[self.parameterAsEnum(parameters, self.METHOD, context)],
            step=self.STEPS[self.parameterAsEnum(parameters, self.STEP, context)],
            day=self.parameterAsInt(parameters, self.DAY_OF_MONTH, context),
            every_days=self.parameterAsInt(parameters, self.STEP_DAYS, context),
            start=parse_date_param(self.parameterAsString(parameters, self.START, context), "Start date"),
            end=parse_date_param(self.parameterAsString(parameters, self.END, context), "End date"),
            explicit_dates=parse_date_list(self.parameterAsString(parameters, self.DATES, context), "Dates"),
            min_valid=self.parameterAsInt(parameters, self.MIN_VALID, context),
            # one window per thread at a time: each under the cap / threads
            memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context) / threads,
            run_tasks=lambda fn, tasks, shared: self.map_blocks(fn, tasks, parameters, context, feedback),
            log=feedback.pushInfo,
            windows_at_once=threads,
        )
        style_output(self, context, out_path, "timeseries")
        return {self.OUTPUT: out_path}
