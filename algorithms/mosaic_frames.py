"""Mosaic frames (``subsidence:mosaicframes``)."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from ..core.insar import mosaic
from ..core.io.lazy import lazy_module
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType, SourceType
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.styling import style_output
from ..processing_provider.tables import write_table

pd = lazy_module("pandas")

OFFSET_COLUMNS = [
    "frame",
    "input",
    "date",
    "offset_mm",
    "overlap_pixels",
    "rms_before_mm",
    "rms_after_mm",
    "connected_to_reference",
]


class MosaicFrames(SubsidenceAlgorithm):
    INPUTS = "INPUTS"
    REFERENCE_FRAME = "REFERENCE_FRAME"
    TARGET_CRS = "TARGET_CRS"
    TARGET_EXTENT = "TARGET_EXTENT"
    TARGET_RESOLUTION = "TARGET_RESOLUTION"
    MISSING_DATES = "MISSING_DATES"
    TIME_TREND = "TIME_TREND"
    QUALITY = "QUALITY"
    BLEND_WIDTH = "BLEND_WIDTH"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    THREADS = "THREADS"
    OUTPUT = "OUTPUT"
    OUTPUT_OFFSETS = "OUTPUT_OFFSETS"

    MISSING = (mosaic.MISSING_DROP, mosaic.MISSING_AVAILABLE)

    NAME = "mosaicframes"
    DISPLAY_NAME = "Mosaic frames"
    GROUP = "InSAR"
    GROUP_ID = "insar"
    TAGS = ("InSAR", "mosaic", "frames", "tracks", "offsets", "regional", "merge", "LiCSAR", "Sentinel-1", "reference")
    SHORT_HELP = (
        "Joins time series (or velocities) of overlapping InSAR frames or tracks, each referenced to its own "
        "reference point, into one raster on one grid, as Liu et al. (2024) did with eleven Sentinel-1 frames "
        "of four orbits brought to one 0.01 degree monthly grid.\n\n"
        "1. Every frame is brought to the target grid (default: the union of the frames in the first frame's CRS "
        "at the finest input resolution; frames already on that pixel lattice are read as they are, others are "
        "resampled bilinearly).\n"
        "2. Per date, each pair of overlapping frames gives the median of their differences in the overlap; one "
        "least-squares adjustment over all pairs (weighted by overlap pixels) gives every frame's offset, with "
        "the reference frame fixed at 0 (or offsets of zero mean), so chains of frames without a common overlap "
        "stay consistent. Optionally each frame's offsets are a straight line in time (a drifting reference).\n"
        "3. Overlaps are blended with weights that fall off towards each frame's edge of valid data (times a "
        "quality raster such as temporal coherence, when given).\n\n"
        "Dates: those common to all inputs (resample to monthly dates first), or each date from the frames that "
        "have it. Frames that share no valid pixel with the reference frame's group on a date are reported in "
        "the log and in the offsets table (connected_to_reference = false). The output streams in windows under "
        "the memory limit and can be much larger than memory.\n\n"
        "Offsets table: one row per frame and date: frame (0-based index into the inputs), input (file name), "
        "date (empty for a velocity), offset_mm (added to the frame), overlap_pixels, rms_before_mm, "
        "rms_after_mm (RMS of the differences with the overlapping frames before and after the offsets), "
        "connected_to_reference."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterMultipleLayers(self.INPUTS, self.tr("Frames"), SourceType.Raster),
            "Two or more time-series (one band per date) or velocity rasters of overlapping frames or tracks, on "
            "any grids and CRS. Time series need the same dates (e.g. monthly from 'Resample time series in "
            "time').",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.REFERENCE_FRAME,
                self.tr("Reference frame (0-based, -1 = zero mean)"),
                NumberType.Integer,
                defaultValue=0,
                minValue=-1,
            ),
            "Index into the frames (0 = the first) whose values are kept as they are; the others are shifted "
            "onto it. -1: offsets of zero mean over the frames.",
        )
        self.add(
            QgsProcessingParameterCrs(self.TARGET_CRS, self.tr("Target CRS"), optional=True),
            "CRS of the mosaic. Default: the first frame's CRS.",
        )
        self.add(
            QgsProcessingParameterExtent(self.TARGET_EXTENT, self.tr("Target extent"), optional=True),
            "Extent of the mosaic. Default: the union of the frames.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.TARGET_RESOLUTION, self.tr("Target resolution"), NumberType.Double, defaultValue=0.0, minValue=0.0
            ),
            "Pixel size in target CRS units, e.g. 0.01 degrees as in Liu et al. (2024). 0 = the finest input "
            "resolution (on the finest frame's pixel lattice).",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.MISSING_DATES,
                self.tr("Dates missing from some frames"),
                options=[
                    self.tr("Drop them (dates common to all frames)"),
                    self.tr("Mosaic the frames that have them"),
                ],
                defaultValue=0,
            ),
            "What to do with dates that only some frames have: leave them out (default), or mosaic each date "
            "from the frames that have it. The missing dates are reported either way.",
        )
        self.add(
            QgsProcessingParameterBoolean(self.TIME_TREND, self.tr("Offsets linear in time"), defaultValue=False),
            "Replace each frame's per-date offsets by a straight line in time (for references that drift "
            "linearly, e.g. velocity-like offsets); ignored for velocities.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.QUALITY, self.tr("Quality rasters (optional)"), SourceType.Raster, optional=True
            ),
            "One quality raster per frame, same order (e.g. SBAS temporal coherence, 0-1): blending weights "
            "are multiplied by it.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.BLEND_WIDTH,
                self.tr("Blend width (pixels)"),
                NumberType.Integer,
                defaultValue=mosaic.DEFAULT_BLEND_WIDTH,
                minValue=1,
            ),
            "Weights rise linearly from a frame's edge of valid data over this many target pixels.",
            advanced=True,
        )
        self.add_memory_limit(self.MEMORY_LIMIT_MB)
        self.add_threads(self.THREADS)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Mosaic")),
            "One raster on the target grid: bands and dates as chosen, units of the first frame, NoData NaN.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_OFFSETS, self.tr("Offsets"), SourceType.Vector, optional=True
            ),
            "Long table, one row per frame and date: " + ", ".join(OFFSET_COLUMNS) + ".",
        )

    def processAlgorithm(self, parameters, context, feedback):
        layers = self.parameterAsLayerList(parameters, self.INPUTS, context) or []
        if len(layers) < 2:
            raise QgsProcessingException("Mosaic frames needs at least two rasters in INPUTS, got %d" % len(layers))
        inputs = [layer_path(lyr) for lyr in layers]
        quality = [layer_path(lyr) for lyr in (self.parameterAsLayerList(parameters, self.QUALITY, context) or [])]
        crs = self.parameterAsCrs(parameters, self.TARGET_CRS, context)
        if not crs.isValid():
            crs = layers[0].crs()
        extent = None
        if parameters.get(self.TARGET_EXTENT) not in (None, ""):
            r = self.parameterAsExtent(parameters, self.TARGET_EXTENT, context, crs)
            if not r.isNull() and not r.isEmpty():
                extent = (r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum())
        out = output_raster_path(self, parameters, self.OUTPUT, context)
        ref = self.parameterAsInt(parameters, self.REFERENCE_FRAME, context)
        if ref >= len(inputs):
            raise QgsProcessingException(
                "REFERENCE_FRAME %d: there are %d frames (0..%d, or -1 for zero mean)"
                % (ref, len(inputs), len(inputs) - 1)
            )
        with self.core_errors():
            rows, summary = mosaic.mosaic_frames(
                inputs,
                out,
                reference_frame=ref,
                crs_wkt=crs.toWkt() if crs.isValid() else None,
                extent=extent,
                resolution=self.parameterAsDouble(parameters, self.TARGET_RESOLUTION, context),
                missing=self.MISSING[self.parameterAsEnum(parameters, self.MISSING_DATES, context)],
                time_trend=self.parameterAsBoolean(parameters, self.TIME_TREND, context),
                quality_paths=quality or None,
                blend_width=self.parameterAsInt(parameters, self.BLEND_WIDTH, context),
                memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context),
                progress=lambda f: feedback.setProgress(100.0 * f),
                is_canceled=feedback.isCanceled,
                log=feedback.pushInfo,
                threads=self.thread_count(parameters, context, self.THREADS),
            )
            dest = write_table(
                self, parameters, self.OUTPUT_OFFSETS, context, pd.DataFrame(rows, columns=OFFSET_COLUMNS)
            )
        for (i, j), n in zip(summary["pairs"], summary["pair_pixels"]):
            feedback.pushInfo(
                "overlap %s / %s: %d pixels" % (os.path.basename(inputs[i]), os.path.basename(inputs[j]), n)
            )
        results = {self.OUTPUT: out}
        if dest is not None:
            results[self.OUTPUT_OFFSETS] = dest
        style_output(self, context, out, "velocity" if summary["dates"] is None else "timeseries")
        return results
