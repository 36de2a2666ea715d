"""Decompose ascending and descending LOS (``subsidence:decomposelos``)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.insar import geometry
from ..core.io.dates import format_date
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import SourceType
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.styling import style_output


def _numbers(text, label):
    items = [s for s in (text or "").replace(";", ",").replace(" ", ",").split(",") if s.strip()]
    out = []
    for s in items:
        try:
            out.append(float(s))
        except ValueError:
            raise QgsProcessingException("%s: %r is not a number" % (label, s)) from None
    return out or None


class DecomposeLos(SubsidenceAlgorithm):
    INPUTS = "INPUTS"
    E_RASTERS = "E_RASTERS"
    N_RASTERS = "N_RASTERS"
    U_RASTERS = "U_RASTERS"
    HEADINGS = "HEADINGS"
    INCIDENCE_ANGLES = "INCIDENCE_ANGLES"
    UNCERTAINTIES = "UNCERTAINTIES"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    OUTPUT_VERTICAL = "OUTPUT_VERTICAL"
    OUTPUT_EAST = "OUTPUT_EAST"
    OUTPUT_QUALITY = "OUTPUT_QUALITY"

    NAME = "decomposelos"
    DISPLAY_NAME = "Decompose ascending and descending LOS"
    GROUP = "InSAR"
    GROUP_ID = "insar"
    TAGS = (
        "InSAR",
        "LOS",
        "ascending",
        "descending",
        "decomposition",
        "vertical",
        "east",
        "LiCSAR",
        "E N U",
        "2D",
        "horizontal",
    )
    SHORT_HELP = (
        "Combines two or more line-of-sight (LOS) rasters seen from different geometries (e.g. one ascending and "
        "one descending Sentinel-1 track) into vertical and east motion.\n\n"
        "Per pixel (and date) the weighted least squares d_k = U_k dU + E_k dE over the inputs valid there, with "
        "E, N, U the ground-to-satellite unit vector of each input (LiCSAR *.geo.E.tif / *.geo.N.tif / "
        "*.geo.U.tif) or computed from a heading and an incidence angle. North motion is neglected (constrained "
        "to zero), as is standard with near-polar orbits, whose LOS hardly sees it.\n\n"
        "Inputs are velocities (mm/yr, one band) or time series on common dates (e.g. monthly series from "
        "'Resample time series in time'); the dates used are those common to all inputs (the others are "
        "reported). The common grid is the intersection of the inputs' footprints in the first input's CRS at "
        "the finest input resolution; everything else is resampled (bilinear) to it.\n\n"
        "Outputs: vertical and east (same units and dates), and a quality raster: propagated standard deviation "
        "of vertical and east (for the given input uncertainties, 1 mm each by default: then a noise "
        "amplification factor), the condition number of the weighted design matrix, and the number of inputs "
        "used. Pixels with fewer than two inputs, or a degenerate geometry (condition number > 1e6), are NoData."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterMultipleLayers(self.INPUTS, self.tr("LOS rasters"), SourceType.Raster),
            "Two or more LOS velocities or time series (mm, positive toward the satellite) from different "
            "geometries, e.g. an ascending and a descending track.",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.E_RASTERS, self.tr("E rasters (east component)"), SourceType.Raster, optional=True
            ),
            "East component of each input's ground-to-satellite unit vector (LiCSAR *.geo.E.tif), in the same "
            "order as the LOS rasters.",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.N_RASTERS, self.tr("N rasters (north component, optional)"), SourceType.Raster, optional=True
            ),
            "North component (LiCSAR *.geo.N.tif), same order. North motion is constrained to zero, so these "
            "are only checked for coverage; they may be left out.",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.U_RASTERS, self.tr("U rasters (up component)"), SourceType.Raster, optional=True
            ),
            "Up component (LiCSAR *.geo.U.tif, = cos incidence, in (0, 1]; exact zeros are NoData), same "
            "order. Geometry rasters must cover the data of their input.",
        )
        self.add(
            QgsProcessingParameterString(
                self.HEADINGS, self.tr("Headings (degrees, instead of E/U rasters)"), optional=True
            ),
            "Comma-separated satellite heading per input, degrees clockwise from north (Sentinel-1: about -10 "
            "ascending, 190 descending). Used with the incidence angles when no E/U rasters are given.",
        )
        self.add(
            QgsProcessingParameterString(self.INCIDENCE_ANGLES, self.tr("Incidence angles (degrees)"), optional=True),
            "Comma-separated incidence angle per input (degrees), with the headings.",
        )
        self.add(
            QgsProcessingParameterString(self.UNCERTAINTIES, self.tr("Uncertainties (optional)"), optional=True),
            "Comma-separated standard deviation per input (same units as the inputs), used as weights 1/sigma^2 "
            "and propagated to the quality raster. Default: 1 for every input.",
        )
        self.add_memory_limit(self.MEMORY_LIMIT_MB, help_text=self.MEMORY_HELP_WINDOWS)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_VERTICAL, self.tr("Vertical")),
            "Vertical motion (positive up), same units and dates as the inputs, NoData NaN.",
        )
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_EAST, self.tr("East")),
            "East motion (positive east), same units and dates as the inputs, NoData NaN.",
        )
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_QUALITY, self.tr("Decomposition quality")),
            "Bands: sigma_vertical, sigma_east (propagated), condition_number, n_inputs.",
        )

    def processAlgorithm(self, parameters, context, feedback):
        def paths(name):
            return [layer_path(lyr) for lyr in (self.parameterAsLayerList(parameters, name, context) or [])]

        inputs = paths(self.INPUTS)
        outs = [
            output_raster_path(self, parameters, n, context)
            for n in (self.OUTPUT_VERTICAL, self.OUTPUT_EAST, self.OUTPUT_QUALITY)
        ]
        with self.core_errors():
            summary = geometry.decompose_rasters(
                inputs,
                up_paths=paths(self.U_RASTERS),
                east_paths=paths(self.E_RASTERS),
                north_paths=paths(self.N_RASTERS),
                headings=_numbers(self.parameterAsString(parameters, self.HEADINGS, context), "Headings"),
                incidences=_numbers(
                    self.parameterAsString(parameters, self.INCIDENCE_ANGLES, context), "Incidence angles"
                ),
                sigmas=_numbers(self.parameterAsString(parameters, self.UNCERTAINTIES, context), "Uncertainties"),
                out_vertical=outs[0],
                out_east=outs[1],
                out_quality=outs[2],
                memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context),
                progress=lambda f: feedback.setProgress(100.0 * f),
                is_canceled=feedback.isCanceled,
                log=feedback.pushWarning,
            )
        dates = summary["dates"]
        feedback.pushInfo(
            "%d inputs on %s; %s"
            % (
                summary["n_inputs"],
                summary["grid"].describe(),
                "velocities"
                if dates is None
                else "%d common dates %s .. %s" % (len(dates), format_date(dates[0]), format_date(dates[-1])),
            )
        )
        kind = "velocity" if dates is None else "timeseries"
        style_output(self, context, outs[0], kind, group_name="LOS decomposition")
        style_output(self, context, outs[1], kind, group_name="LOS decomposition")
        style_output(self, context, outs[2], "quality", group_name="LOS decomposition")
        return {self.OUTPUT_VERTICAL: outs[0], self.OUTPUT_EAST: outs[1], self.OUTPUT_QUALITY: outs[2]}
