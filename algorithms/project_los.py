"""LOS to vertical (``subsidence:projectlos``)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.insar import geometry
from ..core.io.rasters import open_raster
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType
from ..processing_provider.inputs import raster_path
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.styling import style_output

GEOMETRY_TYPE_LABELS = ("Incidence angle (degrees)", "Up component U of the LOS unit vector (= cos incidence)")


def add_incidence_parameters(alg, raster_help, angle_help):
    """The parameters ``alg.INCIDENCE`` (raster), ``alg.INCIDENCE_TYPE`` and ``alg.INCIDENCE_ANGLE`` of the algorithms
    that use the incidence geometry besides their main job (read back with :func:`geometry_spec`)."""
    alg.add(
        QgsProcessingParameterRasterLayer(alg.INCIDENCE, alg.tr("Incidence raster (optional)"), optional=True),
        raster_help,
    )
    alg.add(
        QgsProcessingParameterEnum(
            alg.INCIDENCE_TYPE, alg.tr("Incidence raster type"), options=list(GEOMETRY_TYPE_LABELS), defaultValue=0
        ),
        "Incidence angle in degrees [0, 90), or U = cos(incidence) in (0, 1].",
    )
    alg.add(
        QgsProcessingParameterNumber(
            alg.INCIDENCE_ANGLE,
            alg.tr("Constant incidence angle (degrees)"),
            NumberType.Double,
            optional=True,
            minValue=0.0,
            maxValue=89.999,
        ),
        angle_help,
    )


def geometry_spec(alg, parameters, context, raster_name, type_name, angle_name):
    """``dict(path=, kind=, angle=)`` for :class:`~..core.insar.geometry.IncidenceSource` from a raster parameter,
    its type enum and a constant incidence-angle parameter (shared by the algorithms that use incidence)."""
    path = raster_path(alg, parameters, raster_name, context)  # no layer: no statistics, no .aux.xml
    angle = parameters.get(angle_name)
    angle = None if angle in (None, "") else alg.parameterAsDouble(parameters, angle_name, context)
    if path is None and angle is None:
        raise QgsProcessingException(
            "no incidence geometry: give a raster in %s (incidence angle or LiCSAR *.geo.U.tif) or a constant %s "
            "(degrees)" % (raster_name, angle_name)
        )
    kind = geometry.KINDS[alg.parameterAsEnum(parameters, type_name, context)]
    return dict(path=path, kind=kind, angle=angle)


class ProjectLos(SubsidenceAlgorithm):
    INPUT = "INPUT"
    GEOMETRY = "GEOMETRY"
    GEOMETRY_TYPE = "GEOMETRY_TYPE"
    INCIDENCE_ANGLE = "INCIDENCE_ANGLE"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    OUTPUT = "OUTPUT"

    NAME = "projectlos"
    DISPLAY_NAME = "LOS to vertical"
    GROUP = "InSAR"
    GROUP_ID = "insar"
    TAGS = ("InSAR", "LOS", "line of sight", "vertical", "incidence", "LiCSAR", "U", "projection", "leveling")
    SHORT_HELP = (
        "Projects line-of-sight (LOS) displacement or velocity onto the vertical, assuming no horizontal motion: "
        "d_v = d_LOS / cos(theta), theta the incidence angle. Sentinel-1 incidence runs from 29 to 46 degrees, so "
        "LOS understates vertical motion by a factor 1.15-1.4; compare vertical values with leveling (Huang et al. "
        "2025) or groundwater storage, not LOS.\n\n"
        "Geometry: an incidence-angle raster in degrees, or the up component U of the ground-to-satellite unit "
        "vector (LiCSAR metadata *.geo.U.tif; U = cos theta, exact zeros are NoData), resampled (bilinear) to the "
        "input grid when it is on another grid or CRS; or a constant incidence angle when no raster is given.\n\n"
        "Output: same grid, bands, band dates, units and NoData as the input; metadata COMPONENT = 'vertical, "
        "horizontal motion neglected'. Where horizontal motion is not negligible (east-west motion seen by both "
        "tracks), decompose ascending and descending tracks instead."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("LOS time series or velocity")),
            "LOS displacement time series (one band per date, mm) or velocity (mm/yr), positive toward the satellite.",
        )
        self.add(
            QgsProcessingParameterRasterLayer(self.GEOMETRY, self.tr("Geometry raster (optional)"), optional=True),
            "Incidence angle (degrees) or U component (LiCSAR *.geo.U.tif) per pixel, as chosen in 'Geometry "
            "type'. Any grid or CRS covering the input: it is resampled to the input grid.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.GEOMETRY_TYPE, self.tr("Geometry type"), options=list(GEOMETRY_TYPE_LABELS), defaultValue=0
            ),
            "What the geometry raster holds: incidence angle in degrees [0, 90), or U = cos(incidence) in "
            "(0, 1]. Values outside these ranges stop the run naming the file.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.INCIDENCE_ANGLE,
                self.tr("Constant incidence angle (degrees)"),
                NumberType.Double,
                optional=True,
                minValue=0.0,
                maxValue=89.999,
            ),
            "Used when no geometry raster is given, e.g. 39 for the middle of a Sentinel-1 IW swath. A "
            "constant angle is off by up to 10% at the swath edges: prefer a raster.",
        )
        self.add_memory_limit(self.MEMORY_LIMIT_MB, help_text=self.MEMORY_HELP_WINDOWS)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Vertical")),
            "Vertical displacement (or velocity): same bands, dates and units as the input, NoData NaN.",
        )

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        path = layer_path(layer)
        out = output_raster_path(self, parameters, self.OUTPUT, context)
        with self.core_errors():
            spec = geometry_spec(self, parameters, context, self.GEOMETRY, self.GEOMETRY_TYPE, self.INCIDENCE_ANGLE)
            summary = geometry.project_raster(
                path,
                out,
                spec,
                memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context),
                progress=lambda f: feedback.setProgress(100.0 * f),
                is_canceled=feedback.isCanceled,
                log=feedback.pushWarning,
            )
        feedback.pushInfo(
            "%s -> %s: %d pixels, geometry %s, mean 1/cos(theta) %.4f"
            % (path, out, summary["pixels"], summary["geometry"], summary["mean_inverse_cos"])
        )
        nb = open_raster(out).RasterCount
        style_output(self, context, out, "timeseries" if nb > 1 else "velocity")
        return {self.OUTPUT: out}
