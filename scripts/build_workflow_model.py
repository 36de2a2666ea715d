#!/usr/bin/env python3
"""Build ``processing_provider/models/workflow.model3``: the whole seed workflow as one Processing model.

SBAS inversion -> monthly resampling -> GRACE downscaling -> GWSA -> sampling by deformation class
-> lagged correlation, and Geodetector on the SBAS velocity. The provider offers the shipped file
as ``subsidence:workflow``; this script is how it is (re)generated, so the model stays in step with
the algorithms' parameter names (``tests/algorithms/test_workflow_model.py`` checks it).

Also ``workflow_regional.model3`` (``subsidence:workflowregional``): several frames' LOS time series and
velocities -> frame mosaics -> vertical (LOS / cos incidence) -> the same downstream steps.

Usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/build_workflow_model.py
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
        QgsProcessing,
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

    m = QgsProcessingModelAlgorithm("workflowregional" if regional else "workflow", "Workflows")
    m.setHelpContent({
        "ALG_DESC": (
            "The seed workflow at regional scale (Liu et al. 2024: eleven Sentinel-1 frames on one monthly grid): "
            "the LOS time series and velocities of several overlapping frames (on common monthly dates, e.g. from "
            "'Resample time series in time') are mosaicked with per-date offsets between frames, projected to "
            "vertical with the up component of the LOS unit vector (horizontal motion neglected), and go through "
            "GRACE downscaling, groundwater storage anomaly, class sampling, lagged correlation and Geodetector "
            "as in the single-frame workflow. Open the model in the graphical modeler to change any setting."
        ) if regional else (
            "The whole seed workflow (Liu et al. 2024; Huang et al. 2025) in one run: SBAS inversion of the "
            "interferograms, monthly resampling of the displacement, GRACE weighted downscaling to the "
            "hydrological model grid, groundwater storage anomaly by water balance, random points per "
            "deformation class in each study area with class-averaged deformation and GWSA series, lagged "
            "correlation of deformation and GWSA per area and class, and Geodetector on the SBAS velocity. "
            "Every step is also available on its own; open the model in the graphical modeler to change "
            "any setting."),
        "ALG_CREATOR": "Subsidence Toolkit",
    })
    param_help = {}

    def param(p, help_text):
        p.setHelp(help_text)
        param_help[p.name()] = help_text
        comp = QgsProcessingModelParameter(p.name())
        comp.setPosition(QPointF(120.0, 60.0 + 70.0 * len(m.parameterComponents())))
        m.addModelParameter(p, comp)

    if regional:
        param(QgsProcessingParameterMultipleLayers("frames", "Frame LOS time series", QgsProcessing.TypeRaster),
              "LOS displacement time series (mm) of overlapping frames, on common monthly dates; the first frame "
              "is the reference of the mosaic.")
        param(QgsProcessingParameterMultipleLayers("frame_velocities", "Frame LOS velocities",
                                                   QgsProcessing.TypeRaster),
              "LOS velocities (mm/yr) of the same frames, in the same order.")
        param(QgsProcessingParameterRasterLayer("up_component", "Up component U of the LOS unit vector"),
              "U = cos(incidence) covering all frames (e.g. LiCSAR *.geo.U.tif mosaicked), for LOS -> vertical.")
    else:
        param(QgsProcessingParameterMultipleLayers("interferograms", "Unwrapped interferograms",
                                                   QgsProcessing.TypeRaster),
              "Unwrapped interferograms (radians), reference and secondary dates in the file names "
              "(LiCSAR YYYYMMDD_YYYYMMDD.geo.unw.tif, HyP3 ..._YYYYMMDDThhmmss_YYYYMMDDThhmmss_...).")
        param(QgsProcessingParameterMultipleLayers("coherence", "Coherence rasters", QgsProcessing.TypeRaster,
                                                   optional=True),
              "Coherence rasters matched to the interferograms by their date pair (optional).")
    param(QgsProcessingParameterFile("grace", "GRACE mascon file (CSR/JPL NetCDF or time-series GeoTIFF)"),
          "GRACE TWSA: CSR or JPL mascon NetCDF (lwe_thickness, cm) or a GeoTIFF with one band per month.")
    param(QgsProcessingParameterString("model_files", "Fine model TWS monthly files", multiLine=True),
          "Monthly model storage files as GDAL sources with wildcards, one per line, e.g. "
          "NETCDF:\"/data/FLDAS_NOAH01_C_GL_M.A*.001.nc\":SoilMoi00_10cm_tavg (soil moisture layers, SWE...).")
    param(QgsProcessingParameterString("component_files", "Storage components (soil moisture, snow, canopy...)",
                                       multiLine=True),
          "The storage components subtracted from the downscaled TWS to give GWSA, as monthly file lists "
          "(same syntax as the model files); units are taken from the files.")
    param(QgsProcessingParameterNumber("baseline_start", "GWSA baseline start (decimal year)",
                                       QgsProcessingParameterNumber.Double, defaultValue=2004.0),
          "First year of the anomaly baseline (GRACE convention 2004.0-2009.999; use your own study period "
          "for data after 2010).")
    param(QgsProcessingParameterNumber("baseline_end", "GWSA baseline end (decimal year)",
                                       QgsProcessingParameterNumber.Double, defaultValue=2009.999),
          "Last year of the anomaly baseline.")
    param(QgsProcessingParameterVectorLayer("areas", "Study areas (polygons)", [QgsProcessing.TypeVectorPolygon]),
          "One polygon per landscape / study area; each is sampled separately.")
    param(QgsProcessingParameterField("area_field", "Area name field", parentLayerParameterName="areas"),
          "Field with the study-area names.")
    param(QgsProcessingParameterNumber("points_per_class", "Points per deformation class",
                                       QgsProcessingParameterNumber.Integer, defaultValue=100, minValue=1),
          "Random points per deformation class in each area (seed 000: 100).")
    param(QgsProcessingParameterNumber("max_lag", "Maximum lag (months)", QgsProcessingParameterNumber.Integer,
                                       defaultValue=3, minValue=0),
          "Lags 0..max (GWSA leading deformation) are tested.")
    param(QgsProcessingParameterMultipleLayers("factors", "Geodetector factor rasters", QgsProcessing.TypeRaster),
          "Candidate drivers of subsidence (e.g. GWSA trend, DEM, NDVI, mining intensity) on any grid.")
    param(QgsProcessingParameterNumber("classes", "Geodetector classes per factor",
                                       QgsProcessingParameterNumber.Integer, defaultValue=20, minValue=2),
          "Natural-breaks classes per numeric factor (seed 002: 20).")

    def child(cid, alg, sources, outputs=(), row=0):
        c = QgsProcessingModelChildAlgorithm(alg)
        c.setChildId(cid)
        c.setDescription(cid)
        c.setPosition(QPointF(480.0 + 260.0 * (row % 2), 80.0 + 110.0 * row))
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
        c.setModelOutputs(outs)
        m.addChildAlgorithm(c)
        return cid

    P = Src.fromModelParameter
    S = Src.fromStaticValue
    O = Src.fromChildOutput

    if regional:
        child("mosaic", "subsidence:mosaicframes", {
            "INPUTS": P("frames"), "REFERENCE_FRAME": S(0),
        }, [("OUTPUT", "LOS mosaic time series"), ("OUTPUT_OFFSETS", "Frame offsets")], row=0)
        child("mosaicvelocity", "subsidence:mosaicframes", {
            "INPUTS": P("frame_velocities"), "REFERENCE_FRAME": S(0),
        }, [("OUTPUT", "LOS mosaic velocity"), ("OUTPUT_OFFSETS", "Frame velocity offsets")], row=1)
        child("vertical", "subsidence:projectlos", {
            "INPUT": O("mosaic", "OUTPUT"), "GEOMETRY": P("up_component"), "GEOMETRY_TYPE": S(1),
        }, [("OUTPUT", "Monthly vertical displacement")], row=2)
        child("verticalvelocity", "subsidence:projectlos", {
            "INPUT": O("mosaicvelocity", "OUTPUT"), "GEOMETRY": P("up_component"), "GEOMETRY_TYPE": S(1),
        }, [("OUTPUT", "Vertical velocity")], row=3)
        series, velocity = O("vertical", "OUTPUT"), O("verticalvelocity", "OUTPUT")
    else:
        child("sbas", "subsidence:sbasinversion", {
            "INTERFEROGRAMS": P("interferograms"), "COHERENCE": P("coherence"),
        }, [("OUTPUT_TIMESERIES", "LOS displacement time series"), ("OUTPUT_VELOCITY", "LOS velocity"),
            ("OUTPUT_QUALITY", "SBAS quality"), ("OUTPUT_NETWORK", "Interferogram network")], row=0)
        child("monthly", "subsidence:resampletimeseries", {
            "INPUT": O("sbas", "OUTPUT_TIMESERIES"), "METHOD": S(1), "STEP": S(0), "DAY_OF_MONTH": S(15),
        }, [("OUTPUT", "Monthly displacement")], row=1)
        series, velocity = O("monthly", "OUTPUT"), O("sbas", "OUTPUT_VELOCITY")
    shift = 2 if regional else 0  # modeler layout: the regional model has two more children on top
    child("downscaling", "subsidence:gracedownscaling", {
        "GRACE": P("grace"), "MODEL_FILES": P("model_files"),
    }, [("OUTPUT", "Downscaled TWSA")], row=2 + shift)
    child("gwsa", "subsidence:groundwateranomaly", {
        "TWSA": O("downscaling", "OUTPUT"), "COMPONENT_FILES": P("component_files"), "MODE": S(0),
        "BASELINE_START": P("baseline_start"), "BASELINE_END": P("baseline_end"),
    }, [("OUTPUT", "GWSA")], row=3 + shift)
    child("classes", "subsidence:sampledeformationclasses", {
        "VELOCITY": velocity, "AREA": P("areas"), "AREA_FIELD": P("area_field"),
        "POINTS_PER_CLASS": P("points_per_class"), "SEED": S(1),
        "TIME_SERIES": [series, O("gwsa", "OUTPUT")], "LAYER_NAMES": S("deformation,gwsa"),
    }, [("OUTPUT_POINTS", "Class sample points"), ("OUTPUT_TABLE", "Class time series")], row=4 + shift)
    child("lag", "subsidence:laggedcorrelation", {
        "INPUT": O("classes", "OUTPUT_TABLE"), "DATE_FIELD": S("date"), "VARIABLE_FIELD": S("layer"),
        "VALUE_FIELD": S("mean"), "X_NAME": S("gwsa"), "Y_NAME": S("deformation"),
        "GROUP_FIELDS": S(["area", "class"]), "MAX_LAG": P("max_lag"),
        "BEST_BY": S(1),  # largest positive r: elastic deformation follows groundwater with the same sign
    }, [("OUTPUT", "Lagged correlation"), ("OUTPUT_HTML", "Lagged correlation report")], row=5 + shift)
    child("geodetector", "subsidence:geodetector", {
        "TARGET_RASTER": velocity, "FACTOR_RASTERS": P("factors"), "CLASSES": P("classes"),
    }, [("OUTPUT_FACTOR", "Geodetector factors"), ("OUTPUT_INTERACTION", "Geodetector interactions"),
        ("OUTPUT_HTML", "Geodetector report")], row=6 + shift)
    content = m.helpContent()
    content.update(param_help)  # the modeler shows parameter help from here
    m.setHelpContent(content)
    return m


def main():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_HASH_SEED", "0")  # attributes written in a fixed order: small diffs between builds
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    spec = importlib.util.spec_from_file_location("subsidence_toolkit", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["subsidence_toolkit"] = mod
    spec.loader.exec_module(mod)
    from subsidence_toolkit.processing_provider.provider import SubsidenceProvider

    provider = SubsidenceProvider(load_models=False)
    QgsApplication.processingRegistry().addProvider(provider)
    for regional, target in ((False, TARGET), (True, TARGET_REGIONAL)):
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
