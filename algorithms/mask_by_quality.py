"""Mask SBAS results by quality (``subsidence:maskbyquality``)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.insar import quality_mask
from ..core.io.lazy import lazy_module
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType, SourceType
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.styling import style_output
from ..processing_provider.tables import write_table

pd = lazy_module("pandas")


class MaskByQuality(SubsidenceAlgorithm):
    VELOCITY = "VELOCITY"
    TIMESERIES = "TIMESERIES"
    QUALITY = "QUALITY"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    OUTPUT_VELOCITY = "OUTPUT_VELOCITY"
    OUTPUT_TIMESERIES = "OUTPUT_TIMESERIES"
    OUTPUT_MASK = "OUTPUT_MASK"
    OUTPUT_TABLE = "OUTPUT_TABLE"

    NAME = "maskbyquality"
    DISPLAY_NAME = "Mask by quality"
    GROUP = "InSAR"
    GROUP_ID = "insar"
    TAGS = ("InSAR", "SBAS", "mask", "quality", "temporal coherence", "loop closure", "LiCSBAS", "MintPy")
    SHORT_HELP = (
        "Masks an SBAS velocity and/or displacement time series with the quality raster of 'SBAS inversion' "
        "(bands found by their names): a pixel is kept when it passes every threshold that is set, as "
        "LiCSBAS step 15 (LiCSBAS15_mask_ts.py) does with its noise indices. Leave a threshold empty to skip "
        "it; a NaN in a quality band is not evaluated there (e.g. loop errors when loop closure was off).\n\n"
        "Defaults: LiCSBAS's C-band thresholds where the quantity is the same (loop errors 5, residual RMS "
        "2 mm, velocity standard deviation 100 mm/yr, network gaps 10); temporal coherence 0.7 (MintPy's "
        "minTempCoh; LiCSBAS has none); number of interferograms off (LiCSBAS's n_unw_r is a ratio to the "
        "number of dates: 1.5 x dates for C band).\n\n"
        "Outputs: masked copies (same bands, descriptions and metadata, masked pixels NoData), a 0/1 mask "
        "(NoData where the quality raster has no data) and a table of how many pixels each threshold removed "
        "(and how many only that threshold removed)."
    )

    NUMBER_HELP = {
        "MIN_TEMPORAL_COHERENCE": (
            "Minimum temporal coherence",
            0.0,
            1.0,
            "Pixels whose temporal coherence (Pepe & Lanari 2006) is below this are masked "
            "(default 0.7, MintPy's minTempCoh).",
        ),
        "MAX_RESIDUAL_RMS": (
            "Maximum residual RMS (mm)",
            0.0,
            None,
            "Pixels whose inversion residual RMS is above this are masked (default 2 mm, LiCSBAS "
            "resid_rms for C band).",
        ),
        "MAX_LOOP_ERRORS": (
            "Maximum loops with an unwrapping error",
            0.0,
            None,
            "Pixels where more loops than this do not close within pi (n_loop_errors, an "
            "unclosed 2 pi ambiguity) are masked (default 5, LiCSBAS n_loop_err for C band). Noisy "
            "low-coherence pixels have the odd loop above pi from phase noise alone (the demo world: ~100 "
            "pixels with one such loop); an unwrapping error over an area shows as several loops per pixel.",
        ),
        "MIN_INTERFEROGRAMS": (
            "Minimum number of interferograms used",
            0.0,
            None,
            "Pixels inverted from fewer interferograms are masked (default: not applied; "
            "LiCSBAS uses 1.5 x the number of dates).",
        ),
        "MAX_VELOCITY_STD": (
            "Maximum velocity standard deviation (mm/yr)",
            0.0,
            None,
            "Pixels whose velocity standard deviation is above this are masked (default 100, LiCSBAS vstd for C band).",
        ),
        "MAX_GAPS": (
            "Maximum number of network gaps",
            0.0,
            None,
            "Pixels whose own network has more gaps (connected parts - 1) are masked (default 10, "
            "LiCSBAS n_gap for C band; 0 keeps only fully connected pixels).",
        ),
    }

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.QUALITY, self.tr("SBAS quality raster")),
            "The OUTPUT_QUALITY raster of 'SBAS inversion' (bands temporal_coherence, n_ifg_used, "
            "residual_rms_mm, velocity_std_mm_yr, n_gaps, n_loop_errors).",
        )
        self.add(
            QgsProcessingParameterRasterLayer(self.VELOCITY, self.tr("Velocity (optional)"), optional=True),
            "Velocity raster on the quality raster's grid, to be masked.",
        )
        self.add(
            QgsProcessingParameterRasterLayer(self.TIMESERIES, self.tr("Time series (optional)"), optional=True),
            "Displacement time series on the quality raster's grid (all bands masked alike).",
        )
        for key, _, _, default, _ in quality_mask.THRESHOLDS:
            label, lo, hi, help_text = self.NUMBER_HELP[key]
            kw = dict(minValue=lo, optional=True)
            if hi is not None:
                kw["maxValue"] = hi
            if default is not None:
                kw["defaultValue"] = default
            self.add(QgsProcessingParameterNumber(key, self.tr(label), NumberType.Double, **kw), help_text)
        self.add_memory_limit(self.MEMORY_LIMIT_MB, help_text=self.MEMORY_HELP_WINDOWS)
        self.add(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_VELOCITY, self.tr("Masked velocity"), optional=True, createByDefault=True
            ),
            "Copy of the velocity with masked pixels NoData (needs VELOCITY).",
        )
        self.add(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_TIMESERIES, self.tr("Masked time series"), optional=True, createByDefault=True
            ),
            "Copy of the time series with masked pixels NoData (needs TIMESERIES).",
        )
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_MASK, self.tr("Quality mask")),
            "1 = kept, 0 = masked, NoData = no quality data.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TABLE, self.tr("Pixels removed per threshold"), SourceType.Vector, optional=True
            ),
            "One row per threshold applied: rule, pixels failing it, pixels removed only by it; then the "
            "pixels kept and the pixels without quality data.",
        )

    def processAlgorithm(self, parameters, context, feedback):
        qlayer = self.parameterAsRasterLayer(parameters, self.QUALITY, context)
        if qlayer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.QUALITY))
        vel = self.parameterAsRasterLayer(parameters, self.VELOCITY, context)
        ts = self.parameterAsRasterLayer(parameters, self.TIMESERIES, context)
        if vel is None and ts is None:
            raise QgsProcessingException("give a velocity (VELOCITY) and/or a time series (TIMESERIES) to mask")
        thresholds = {}
        for key, _, _, default, _ in quality_mask.THRESHOLDS:
            # not given: the default (none = off); given empty: off
            if key in parameters and parameters[key] in (None, ""):
                continue
            if key not in parameters and default is None:
                continue
            thresholds[key] = self.parameterAsDouble(parameters, key, context)
        out_vel = output_raster_path(self, parameters, self.OUTPUT_VELOCITY, context) if vel is not None else None
        out_ts = output_raster_path(self, parameters, self.OUTPUT_TIMESERIES, context) if ts is not None else None
        out_mask = output_raster_path(self, parameters, self.OUTPUT_MASK, context)
        with self.core_errors():
            rows = quality_mask.mask_by_quality(
                layer_path(qlayer),
                thresholds,
                layer_path(vel) if vel is not None else None,
                layer_path(ts) if ts is not None else None,
                out_vel,
                out_ts,
                out_mask,
                memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context),
                progress=lambda f: feedback.setProgress(100.0 * f),
                is_canceled=feedback.isCanceled,
                log=feedback.pushInfo,
            )
        for r in rows:
            feedback.pushInfo(
                "%s: %s -> %d pixels%s"
                % (
                    r["threshold"],
                    r["rule"],
                    r["pixels"],
                    " (%d only by it)" % r["pixels_removed_only_by_it"]
                    if r["threshold"] not in ("kept", "no data")
                    else "",
                )
            )
        results = {self.OUTPUT_MASK: out_mask}
        if out_vel:
            results[self.OUTPUT_VELOCITY] = out_vel
            style_output(self, context, out_vel, "velocity", group_name="Mask by quality")
        if out_ts:
            results[self.OUTPUT_TIMESERIES] = out_ts
            style_output(self, context, out_ts, "timeseries", group_name="Mask by quality")
        dest = write_table(self, parameters, self.OUTPUT_TABLE, context, pd.DataFrame(rows))
        if dest is not None:
            results[self.OUTPUT_TABLE] = dest
        return results
