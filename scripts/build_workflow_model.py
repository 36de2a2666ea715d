#!/usr/bin/env python3
"""Build ``processing_provider/models/workflow.model3``: the whole workflow of Liu et al.
2024 and Huang et al. 2025 as one Processing model.

SBAS inversion -> mask by quality -> monthly resampling -> GRACE downscaling -> GWSA -> sampling by
deformation class -> lagged correlation, and Geodetector on the (masked) SBAS velocity. The provider offers the
shipped file as ``subsidence:workflow``; this script is how it is (re)generated, so the model stays in step with
the algorithms' parameter names (``tests/algorithms/test_workflow_model.py`` checks it).

Also ``workflow_regional.model3`` (``subsidence:workflowregional``): several frames' LOS time series and
velocities -> frame mosaics -> vertical (LOS / cos incidence) -> the same downstream steps.

Usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/build_workflow_model.py [OUTPUT_FOLDER]

The models' outputs are named ``childId:Output name`` (e.g. ``sbas:LOS velocity``) whichever QGIS builds
them: see ``processing_provider.compat.pin_model_output_names``.
"""

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "processing_provider" / "models" / "workflow.model3"
TARGET_REGIONAL = ROOT / "processing_provider" / "models" / "workflow_regional.model3"


def build(regional=False):
    from qgis.core import (
        QgsApplication,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterField,
        QgsProcessingParameterFile,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterString,
        QgsProcessingParameterVectorLayer,
    )
    from qgis.core import (
        QgsProcessingModelChildParameterSource as Src,
    )
    from qgis.PyQt.QtCore import QPointF

    from subsidence_toolkit.processing_provider.compat import NumberType, SourceType, pin_model_output_names

    _next_y[0] = TOP_Y  # modeler layout starts at the top for each model
    m = QgsProcessingModelAlgorithm("workflowregional" if regional else "workflow", "Workflows")
    m.setHelpContent(
        {
            "ALG_DESC": (
                "The workflow at regional scale (Liu et al. 2024: eleven Sentinel-1 frames on one monthly grid): "
                "the LOS time series and velocities of several overlapping frames (on common monthly dates, e.g. from "
                "'Resample time series in time') are mosaicked with per-date offsets between frames, projected to "
                "vertical with the up component of the LOS unit vector (horizontal motion neglected), and go through "
                "GRACE downscaling, groundwater storage anomaly, class sampling, lagged correlation and Geodetector "
                "as in the single-frame workflow. Open the model in the graphical modeler to change any setting."
            )
            if regional
            else (
                "The whole workflow (Liu et al. 2024; Huang et al. 2025) in one run: SBAS inversion of the "
                "interferograms, masking by the SBAS quality layers (LiCSBAS-style thresholds), monthly resampling "
                "of the displacement, GRACE weighted downscaling to the "
                "hydrological model grid, groundwater storage anomaly by water balance, random points per "
                "deformation class in each study area with class-averaged deformation and GWSA series, lagged "
                "correlation of deformation and GWSA per area and class, and Geodetector on the SBAS velocity. "
                "Every step is also available on its own; open the model in the graphical modeler to change "
                "any setting."
            ),
            "ALG_CREATOR": "Subsidence Toolkit",
        }
    )
    param_help = {}

    def param(p, help_text):
        p.setHelp(help_text)
        param_help[p.name()] = help_text
        comp = QgsProcessingModelParameter(p.name())
        comp.setPosition(QPointF(120.0, 60.0 + 70.0 * len(m.parameterComponents())))
        m.addModelParameter(p, comp)

    if regional:
        param(
            QgsProcessingParameterMultipleLayers("frames", "Frame LOS time series", SourceType.Raster),
            "LOS displacement time series (mm) of overlapping frames, on common monthly dates; the first frame "
            "is the reference of the mosaic.",
        )
        param(
            QgsProcessingParameterMultipleLayers("frame_velocities", "Frame LOS velocities", SourceType.Raster),
            "LOS velocities (mm/yr) of the same frames, in the same order.",
        )
        param(
            QgsProcessingParameterRasterLayer("up_component", "Up component U of the LOS unit vector"),
            "U = cos(incidence) covering all frames (e.g. LiCSAR *.geo.U.tif mosaicked), for LOS -> vertical.",
        )
    else:
        param(
            QgsProcessingParameterMultipleLayers("interferograms", "Unwrapped interferograms", SourceType.Raster),
            "Unwrapped interferograms (radians), reference and secondary dates in the file names "
            "(LiCSAR YYYYMMDD_YYYYMMDD.geo.unw.tif, HyP3 ..._YYYYMMDDThhmmss_YYYYMMDDThhmmss_...).",
        )
        param(
            QgsProcessingParameterMultipleLayers("coherence", "Coherence rasters", SourceType.Raster, optional=True),
            "Coherence rasters matched to the interferograms by their date pair (optional).",
        )
    param(
        QgsProcessingParameterFile("grace", "GRACE mascon file"),
        "GRACE TWSA: CSR or JPL mascon NetCDF (lwe_thickness, cm) or a GeoTIFF with one band per month.",
    )
    param(
        QgsProcessingParameterString("model_files", "Fine model TWS monthly files", multiLine=True),
        "Monthly model storage files as GDAL sources with wildcards, one per line, e.g. "
        'NETCDF:"/data/FLDAS_NOAH01_C_GL_M.A*.001.nc":SoilMoi00_10cm_tavg (soil moisture layers, SWE...).',
    )
    param(
        QgsProcessingParameterString("component_files", "Storage components", multiLine=True),
        "The storage components (soil moisture, snow, canopy, surface water) subtracted from the downscaled "
        "TWS to give GWSA, as monthly file lists "
        "(same syntax as the model files); units are taken from the files.",
    )
    param(
        decimal_places(
            QgsProcessingParameterNumber(
                "baseline_start", "GWSA baseline start (decimal year)", NumberType.Double, optional=True
            ),
            3,
        ),
        "First year of the anomaly baseline. Empty (with the end): the GRACE convention 2004.0-2009.999 when "
        "the data cover it, otherwise the period of the data (e.g. 2015-2021 for a Sentinel-1 study).",
    )
    param(
        decimal_places(
            QgsProcessingParameterNumber(
                "baseline_end", "GWSA baseline end (decimal year)", NumberType.Double, optional=True
            ),
            3,
        ),
        "Last year of the anomaly baseline (2009.999 = through December 2009). Empty: see the start.",
    )
    param(
        QgsProcessingParameterVectorLayer("areas", "Study areas (polygons)", [SourceType.VectorPolygon]),
        "One polygon per landscape / study area; each is sampled separately.",
    )
    param(
        QgsProcessingParameterField("area_field", "Area name field", parentLayerParameterName="areas"),
        "Field with the study-area names.",
    )
    param(
        QgsProcessingParameterNumber(
            "points_per_class", "Points per deformation class", NumberType.Integer, defaultValue=100, minValue=1
        ),
        "Random points per deformation class in each area (Liu et al. 2024: 100).",
    )
    param(
        QgsProcessingParameterNumber("max_lag", "Maximum lag (months)", NumberType.Integer, defaultValue=3, minValue=0),
        "Lags 0..max (GWSA leading deformation) are tested.",
    )
    param(
        QgsProcessingParameterMultipleLayers("factors", "Geodetector factor rasters", SourceType.Raster),
        "Candidate drivers of subsidence (e.g. GWSA trend, DEM, NDVI, mining intensity) on any grid.",
    )
    param(
        QgsProcessingParameterNumber(
            "classes", "Geodetector classes per factor", NumberType.Integer, defaultValue=20, minValue=2
        ),
        "Natural-breaks classes per numeric factor (Huang et al. 2025: 20).",
    )

    def child(cid, alg, sources, outputs=(), row=0):
        c = QgsProcessingModelChildAlgorithm(alg)
        c.setChildId(cid)
        c.setDescription(describe(cid))
        for name, src in sources.items():
            c.addParameterSources(name, src if isinstance(src, list) else [src])
        # every other input at its default, as the modeler dialog would set it
        alg_def = QgsApplication.processingRegistry().algorithmById(alg)
        for pdef in alg_def.parameterDefinitions():
            if pdef.isDestination() or pdef.name() in sources or pdef.defaultValue() is None:
                continue
            c.addParameterSources(pdef.name(), [Src.fromStaticValue(pdef.defaultValue())])
        outs = {}
        for child_out, model_out in outputs:
            o = QgsProcessingModelOutput(model_out, model_out)
            o.setChildOutputName(child_out)
            o.setChildId(cid)
            outs[model_out] = o
        place(c, outs)
        c.setModelOutputs(outs)
        m.addChildAlgorithm(c)
        return cid

    P = Src.fromModelParameter
    S = Src.fromStaticValue
    O = Src.fromChildOutput  # noqa: E741 (P, S, O: parameter, static value, child output)

    if regional:
        child(
            "mosaic",
            "subsidence:mosaicframes",
            {
                "INPUTS": P("frames"),
                "REFERENCE_FRAME": S(0),
            },
            [("OUTPUT", "LOS mosaic time series"), ("OUTPUT_OFFSETS", "Frame offsets")],
            row=0,
        )
        child(
            "mosaicvelocity",
            "subsidence:mosaicframes",
            {
                "INPUTS": P("frame_velocities"),
                "REFERENCE_FRAME": S(0),
            },
            [("OUTPUT", "LOS mosaic velocity"), ("OUTPUT_OFFSETS", "Frame velocity offsets")],
            row=1,
        )
        child(
            "vertical",
            "subsidence:projectlos",
            {
                "INPUT": O("mosaic", "OUTPUT"),
                "GEOMETRY": P("up_component"),
                "GEOMETRY_TYPE": S(1),
            },
            [("OUTPUT", "Monthly vertical displacement")],
            row=2,
        )
        child(
            "verticalvelocity",
            "subsidence:projectlos",
            {
                "INPUT": O("mosaicvelocity", "OUTPUT"),
                "GEOMETRY": P("up_component"),
                "GEOMETRY_TYPE": S(1),
            },
            [("OUTPUT", "Vertical velocity")],
            row=3,
        )
        series, velocity = O("vertical", "OUTPUT"), O("verticalvelocity", "OUTPUT")
    else:
        child(
            "sbas",
            "subsidence:sbasinversion",
            {
                "INTERFEROGRAMS": P("interferograms"),
                "COHERENCE": P("coherence"),
            },
            [
                ("OUTPUT_TIMESERIES", "LOS displacement time series"),
                ("OUTPUT_VELOCITY", "LOS velocity"),
                ("OUTPUT_QUALITY", "SBAS quality"),
                ("OUTPUT_NETWORK", "Interferogram network"),
            ],
            row=0,
        )
        child(
            "mask",
            "subsidence:maskbyquality",
            {
                "QUALITY": O("sbas", "OUTPUT_QUALITY"),
                "VELOCITY": O("sbas", "OUTPUT_VELOCITY"),
                "TIMESERIES": O("sbas", "OUTPUT_TIMESERIES"),
            },
            row=1,
        )
        child(
            "monthly",
            "subsidence:resampletimeseries",
            {
                "INPUT": O("mask", "OUTPUT_TIMESERIES"),
                "METHOD": S(1),
                "STEP": S(0),
                "DAY_OF_MONTH": S(15),
            },
            [("OUTPUT", "Monthly displacement")],
            row=2,
        )
        series, velocity = O("monthly", "OUTPUT"), O("mask", "OUTPUT_VELOCITY")
    shift = 2 if regional else 0  # modeler layout: the regional model has two more children on top
    child(
        "downscaling",
        "subsidence:gracedownscaling",
        {
            "GRACE": P("grace"),
            "MODEL_FILES": P("model_files"),
        },
        [("OUTPUT", "Downscaled TWSA")],
        row=2 + shift,
    )
    child(
        "gwsa",
        "subsidence:groundwateranomaly",
        {
            "TWSA": O("downscaling", "OUTPUT"),
            "COMPONENT_FILES": P("component_files"),
            "MODE": S(0),
            "BASELINE_START": P("baseline_start"),
            "BASELINE_END": P("baseline_end"),
        },
        [("OUTPUT", "GWSA")],
        row=3 + shift,
    )
    child(
        "classes",
        "subsidence:sampledeformationclasses",
        {
            "VELOCITY": velocity,
            "AREA": P("areas"),
            "AREA_FIELD": P("area_field"),
            "POINTS_PER_CLASS": P("points_per_class"),
            "SEED": S(1),
            "TIME_SERIES": [series, O("gwsa", "OUTPUT")],
            "LAYER_NAMES": S("deformation,gwsa"),
        },
        [("OUTPUT_POINTS", "Class sample points"), ("OUTPUT_TABLE", "Class time series")],
        row=4 + shift,
    )
    child(
        "lag",
        "subsidence:laggedcorrelation",
        {
            "INPUT": O("classes", "OUTPUT_TABLE"),
            "DATE_FIELD": S("date"),
            "VARIABLE_FIELD": S("layer"),
            "VALUE_FIELD": S("mean"),
            "X_NAME": S("gwsa"),
            "Y_NAME": S("deformation"),
            "GROUP_FIELDS": S(["area", "class"]),
            "MAX_LAG": P("max_lag"),
            "BEST_BY": S(1),  # largest positive r: elastic deformation follows groundwater with the same sign
        },
        [("OUTPUT", "Lagged correlation"), ("OUTPUT_HTML", "Lagged correlation report")],
        row=5 + shift,
    )
    child(
        "geodetector",
        "subsidence:geodetector",
        {
            "TARGET_RASTER": velocity,
            "FACTOR_RASTERS": P("factors"),
            "CLASSES": P("classes"),
        },
        [
            ("OUTPUT_FACTOR", "Geodetector factors"),
            ("OUTPUT_INTERACTION", "Geodetector interactions"),
            ("OUTPUT_HTML", "Geodetector report"),
        ],
        row=6 + shift,
    )
    child(
        "report",
        "subsidence:workflowreport",
        {
            "VELOCITY": velocity,
            "GWSA": O("gwsa", "OUTPUT"),
            "AREAS": P("areas"),
            "AREA_FIELD": P("area_field"),
            "CLASS_TABLE": O("classes", "OUTPUT_TABLE"),
            "LAG_TABLE": O("lag", "OUTPUT"),
            "FACTOR_TABLE": O("geodetector", "OUTPUT_FACTOR"),
            "INTERACTION_TABLE": O("geodetector", "OUTPUT_INTERACTION"),
            "LAG_REPORT": O("lag", "OUTPUT_HTML"),
            "GEODETECTOR_REPORT": O("geodetector", "OUTPUT_HTML"),
        },
        [("OUTPUT_HTML", "Workflow report")],
    )
    # the dialog lists the inputs in the order they were declared above (as the workflow runs), on every QGIS
    m.setParameterOrder(
        [c.parameterName() for c in sorted(m.parameterComponents().values(), key=lambda c: c.position().y())]
    )
    content = m.helpContent()
    content.update(param_help)  # the modeler shows parameter help from here
    m.setHelpContent(content)
    # Outputs keep their "childId:Output name" keys whichever QGIS (3.22 ... 4.x) builds or runs the model.
    return pin_model_output_names(m)


# --------------------------------------------------------------------------- modeler layout
# Readable names of the model's steps (shown in the graphical modeler and the log) and a layout without
# overlaps: inputs in a column on the left, steps in a column in the middle, each step's outputs stacked to
# its right; a step gets as much height as its outputs need.
DESCRIPTIONS = {
    "sbas": "SBAS inversion of the interferograms",
    "mask": "Mask by quality (LiCSBAS-style thresholds on the SBAS quality layers)",
    "monthly": "Monthly resampling of the displacement",
    "downscaling": "GRACE weighted downscaling",
    "gwsa": "Groundwater storage anomaly (water balance)",
    "classes": "Sampling by deformation class",
    "lag": "Lagged correlation, GWSA vs deformation",
    "geodetector": "Geodetector on the SBAS velocity",
    "report": "Workflow summary report",
    "mosaic": "Mosaic of the frames' time series",
    "mosaicvelocity": "Mosaic of the frames' velocities",
    "vertical": "LOS to vertical (time series)",
    "verticalvelocity": "LOS to vertical (velocity)",
}
STEP_X, OUTPUT_X, TOP_Y = 560.0, 900.0, 60.0
OUTPUT_DY, STEP_GAP = 42.0, 64.0
_next_y = [TOP_Y]


def describe(cid):
    return DESCRIPTIONS.get(cid, cid.replace("_", " ").capitalize())


def place(c, outputs):
    """Position a step and its model outputs below the previous step (no overlaps)."""
    from qgis.PyQt.QtCore import QPointF

    y = _next_y[0]
    height = max(1, len(outputs)) * OUTPUT_DY
    c.setPosition(QPointF(STEP_X, y + height / 2.0 - OUTPUT_DY / 2.0))
    for k, o in enumerate(outputs.values()):
        o.setPosition(QPointF(OUTPUT_X, y + k * OUTPUT_DY))
    _next_y[0] = y + height + STEP_GAP


def decimal_places(param, n):
    meta = dict(param.metadata() or {})
    meta["widget_wrapper"] = {"decimals": n}
    param.setMetadata(meta)
    return param


def main():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_HASH_SEED", "0")  # attributes written in a fixed order: small diffs between builds
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    spec = importlib.util.spec_from_file_location(
        "subsidence_toolkit", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["subsidence_toolkit"] = mod
    spec.loader.exec_module(mod)
    from subsidence_toolkit.processing_provider.provider import SubsidenceProvider

    provider = SubsidenceProvider(load_models=False)
    QgsApplication.processingRegistry().addProvider(provider)
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    for regional, target in ((False, TARGET), (True, TARGET_REGIONAL)):
        target = folder / target.name if folder else target
        model = build(regional)
        errors = model.validate() if hasattr(model, "validate") else (True, [])
        target.parent.mkdir(parents=True, exist_ok=True)
        if not model.toFile(str(target)):
            raise SystemExit("could not write %s" % target)
        print("wrote %s (%d child algorithms)" % (target, len(model.childAlgorithms())))
        if errors and errors is not True and not errors[0]:
            print("validation:", errors[1])
    app.exitQgis()


if __name__ == "__main__":
    main()
