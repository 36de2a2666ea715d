"""SBAS inversion of an interferogram stack (``subsidence:sbasinversion``)."""

import os
import shutil

from qgis.core import (
    Qgis,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.insar import deramp, gacos, geometry, loop_closure, products, sbas, sbas_stack, units, weights
from ..core.insar.stack import prepare_stack
from ..processing_provider import sbas_setup
from ..processing_provider.base import SubsidenceAlgorithm
from ..processing_provider.compat import NumberType, SourceType
from ..processing_provider.inputs import parameters_to_check, raster_paths
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.styling import style_output
from .project_los import add_incidence_parameters

# Qgis.ProcessingFileParameterBehavior since QGIS 3.36 (the only spelling in QGIS 4)
FOLDER_BEHAVIOR = getattr(getattr(Qgis, "ProcessingFileParameterBehavior", None), "Folder", None)
if FOLDER_BEHAVIOR is None:
    FOLDER_BEHAVIOR = QgsProcessingParameterFile.Behavior.Folder  # qt6-compat: 3.22-3.34 fallback


def _remove(paths):
    """Remove intermediate files (LOS rasters and incidence of a vertical run); outputs are the transaction's."""
    for p in paths:
        if p and os.path.exists(p):
            try:
                os.remove(p)
            except OSError:
                pass


class SbasInversion(SubsidenceAlgorithm):
    INTERFEROGRAMS = "INTERFEROGRAMS"
    INPUT_FOLDER = "INPUT_FOLDER"
    PRODUCT = "PRODUCT"
    EXTENT = "EXTENT"
    DIFFERENT_CRS = "DIFFERENT_CRS"
    PAIRS = "PAIRS"
    COHERENCE = "COHERENCE"
    MIN_COHERENCE = "MIN_COHERENCE"
    WEIGHTING = "WEIGHTING"
    LOOKS = "LOOKS"
    INPUT_UNITS = "INPUT_UNITS"
    WAVELENGTH = "WAVELENGTH"
    FLIP_SIGN = "FLIP_SIGN"
    REFERENCE_POINT = "REFERENCE_POINT"
    REFERENCE_WINDOW = "REFERENCE_WINDOW"
    MAX_TEMPORAL_BASELINE = "MAX_TEMPORAL_BASELINE"
    MAX_PERP_BASELINE = "MAX_PERP_BASELINE"
    EXCLUDE = "EXCLUDE"
    GAP_HANDLING = "GAP_HANDLING"
    SEASONAL = "SEASONAL"
    OUTPUT_COMPONENT = "OUTPUT_COMPONENT"
    LOOP_CLOSURE = "LOOP_CLOSURE"
    LOOP_THRESHOLD = "LOOP_THRESHOLD"
    DERAMP = "DERAMP"
    DERAMP_MASK = "DERAMP_MASK"
    GACOS = "GACOS"
    GACOS_SKIP_MISSING = "GACOS_SKIP_MISSING"
    GACOS_TOLERANCE = "GACOS_TOLERANCE"
    INCIDENCE = "INCIDENCE"
    INCIDENCE_TYPE = "INCIDENCE_TYPE"
    INCIDENCE_ANGLE = "INCIDENCE_ANGLE"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    THREADS = "THREADS"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    OUTPUT_TIMESERIES = "OUTPUT_TIMESERIES"
    OUTPUT_VELOCITY = "OUTPUT_VELOCITY"
    OUTPUT_QUALITY = "OUTPUT_QUALITY"
    OUTPUT_NETWORK = "OUTPUT_NETWORK"
    OUTPUT_NETWORK_HTML = "OUTPUT_NETWORK_HTML"
    OUTPUT_INCIDENCE = "OUTPUT_INCIDENCE"

    PRODUCTS = (products.PRODUCT_AUTO, products.PRODUCT_LICSAR, products.PRODUCT_HYP3, products.PRODUCT_GENERIC)
    PRODUCT_LABELS = (
        "Automatic (from the file names)",
        "LiCSAR",
        "HyP3 (GAMMA, ISCE2 burst / multi-burst)",
        "Generic (NoData as declared, dates from the names or the pairs CSV)",
    )
    EXTENTS = (products.EXTENT_INTERSECTION, products.EXTENT_UNION)
    EXTENT_LABELS = ("Common intersection of the products", "Union (NoData outside a product)")
    CRS_MODES = (products.CRS_ERROR, products.CRS_WARP)
    CRS_LABELS = ("Stop with an error naming them", "Warp onto the first product's grid (nearest neighbour)")
    WEIGHTINGS = (weights.WEIGHT_NONE, weights.WEIGHT_COHERENCE, weights.WEIGHT_VARIANCE)
    WEIGHTING_LABELS = ("None (classic SBAS)", "Coherence", "Phase variance from coherence and looks")
    UNITS = (units.UNITS_RADIANS, units.UNITS_METRES, units.UNITS_MM)
    UNIT_LABELS = ("Unwrapped phase (radians)", "LOS displacement (m)", "LOS displacement (mm)")
    GAPS = (sbas.GAP_MIN_NORM, sbas.GAP_NSBAS, sbas.GAP_MASK)
    GAP_LABELS = (
        "Minimum-norm velocity (Berardino; zero velocity across a gap)",
        "NSBAS linear-trend bridge (LiCSBAS-style weak constraint)",
        "Mask: keep the largest connected part of the dates (others NoData)",
    )
    LOOP_LABELS = (
        "Off",
        "Report bad interferograms only",
        "Reject bad interferograms (LiCSBAS rule)",
        "Correct unwrapping errors per pixel (phase closure)",
    )
    DERAMPS = (deramp.DERAMP_NONE, deramp.DERAMP_LINEAR, deramp.DERAMP_QUADRATIC)
    DERAMP_LABELS = ("None", "Linear (a + b x + c y)", "Quadratic (+ d x2 + e xy + f y2)")

    NAME = "sbasinversion"
    DISPLAY_NAME = "SBAS inversion"
    GROUP = "InSAR"
    GROUP_ID = "insar"
    TAGS = (
        "InSAR",
        "SBAS",
        "NSBAS",
        "interferogram",
        "time series",
        "LiCSAR",
        "HyP3",
        "MintPy",
        "velocity",
        "subsidence",
        "Berardino",
    )
    SHORT_HELP = (
        "Inverts a stack of unwrapped interferograms (one GeoTIFF per pair) into the line-of-sight displacement "
        "time series of every pixel, its mean velocity and quality layers (Small BAseline Subset method, "
        "Berardino et al. 2002: design matrix of the velocities between consecutive acquisition dates, "
        "minimum-norm SVD least squares, cumulative sum; first date = 0).\n\n"
        "Input: a list of files, or a folder (INPUT_FOLDER) holding a LiCSAR frame download "
        "(GEOC/YYYYMMDD_YYYYMMDD/*.geo.unw.tif + *.geo.cc.tif, metadata/ with <frame>.geo.E/N/U/hgt.tif and "
        "baselines) or a HyP3 download (one folder or zip per product, read in place): interferograms, coherence "
        "and perpendicular baselines are found there, nothing else is needed.\n\n"
        "Pair dates come from the file names (the first two YYYYMMDD groups, with or without Thhmmss: LiCSAR "
        "20200103_20200115.geo.unw.tif, HyP3 S1AA_20200103T..._20200115T..._unw_phase.tif, "
        "S1_136231_IW2_20200103_20200115_..., S1_064_..._IW_20200103_20200115_...) or from a pairs CSV "
        "(file, reference date, secondary date, optional perpendicular baseline).\n\n"
        "Products are read as their processors ship them: 8-bit coherence (current LiCSAR) is DN/255; in LiCSAR "
        "products an exact 0 is no data (unwrapped phase, coherence, E/N/U), with or without a NoData tag, as "
        "LiCSBAS reads them; HyP3 and generic files: the band's NoData value or NaN (an exact 0.0 is then a valid "
        "observation). Products with different extents (HyP3) are read on their common area (or the union) "
        "without resampling when they share a pixel lattice; products in different CRS / UTM zones stop with an "
        "error naming them unless they may be warped onto the first product's grid.\n\n"
        "Displacement = -wavelength/(4 pi) x phase, positive toward the satellite (MintPy/LiCSBAS convention; "
        "LiCSAR and HyP3 unwrapped phase need no flip -- HyP3's own displacement maps have the opposite sign to "
        "its phase); 'Flip sign' reverses it for processors with the opposite convention.\n\n"
        "Pixels whose own network (after NoData / low coherence) is split get the chosen gap handling and are "
        "counted in the quality band n_gaps = number of connected parts of the dates - 1 (0 = connected); "
        "nothing is silently set to zero. (LiCSBAS's n_gap counts the intervals between consecutive dates that "
        "no pair spans instead: for an isolated middle date ours says 1 more part, LiCSBAS 2 intervals.)\n\n"
        "Corrections, applied to every interferogram before the loop closure and the inversion (as LiCSBAS "
        "corrects GACOS in step 03 before its loop closure in step 12): GACOS tropospheric delays (per-date "
        "zenith delay / cos(incidence), differenced per pair, not applied where it raises the interferogram's "
        "standard deviation), then a linear or quadratic ramp per interferogram fitted by least squares "
        "over the reliable pixels.\n\n"
        "Loop closure (LiCSBAS step 12, on by default): for every triplet of dates with its three pairs, the loop "
        "phase phi_ij + phi_jk - phi_ik; per loop its RMS over the image after removing the integer cycles of "
        "its median; a loop with RMS >= the threshold (1.5 rad) is bad; an interferogram in a bad loop and in "
        "no good loop is bad and, by default, rejected (named in the log and the network table); interferograms "
        "in no loop cannot be checked and are listed. The loop closure runs on the GACOS-corrected, "
        "referenced data without the ramp (ramps of orbital or atmospheric origin close in loops; a fitted "
        "ramp would absorb part of a large unwrapping error). Per pixel, the number of loops (of the "
        "interferograms kept) whose phase exceeds pi is the quality band n_loop_errors. Option 3 corrects "
        "unwrapping errors per pixel instead (phase closure, Yunjun et al. 2019): the integer cycles of the "
        "loops, the fewest interferogram cycles that explain them (exact), subtracted; ambiguous, inconsistent "
        "or isolated pixels are left and counted (see the parameter's help).\n\n"
        "Outputs: time series (mm, one band per date, band description YYYY-MM-DD); velocity (mm/yr, least "
        "squares on the time series, optionally with annual and semi-annual terms); quality (temporal "
        "coherence, number of interferograms used, residual RMS mm, velocity standard deviation mm/yr, number "
        "of gaps, loops with an unclosed 2 pi, first date of the part kept, interferograms corrected for "
        "unwrapping errors); network table (per interferogram: "
        "dates, baselines, used or why not, mean coherence, residual RMS, loop-closure check and loop RMS, GACOS "
        "standard deviation before / after)."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.INTERFEROGRAMS, self.tr("Unwrapped interferograms"), SourceType.File, optional=True
            ),
            "One single-band raster per pair (or give an input folder instead). Dates from the file names "
            "(first two YYYYMMDD groups: reference, then secondary) unless a pairs CSV is given. Files of one "
            "pixel lattice may differ in extent (see Extent). A file list: no QGIS layer is opened for them (no "
            "band statistics, nothing written next to the inputs); layers of the project are accepted too.",
        )
        self.add(
            QgsProcessingParameterFile(
                self.INPUT_FOLDER,
                self.tr("Input folder (LiCSAR frame or HyP3 download)"),
                behavior=FOLDER_BEHAVIOR,
                optional=True,
            ),
            "Instead of the file lists: a LiCSAR frame folder (GEOC/YYYYMMDD_YYYYMMDD/ or interferograms/"
            "YYYYMMDD_YYYYMMDD/ with *.geo.unw.tif and *.geo.cc.tif; metadata/ with <frame>.geo.E/N/U/hgt.tif "
            "and baselines) or a HyP3 download folder (one folder or .zip per product with *_unw_phase.tif, "
            "*_corr.tif and <name>.txt; zips are read in place). Interferograms, coherence and perpendicular "
            "baselines are discovered; a product without coherence or unwrapped phase is named in the error "
            "(leave it out with Exclude interferograms: its pair YYYYMMDD_YYYYMMDD or product name).",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.PRODUCT, self.tr("Product type"), options=list(self.PRODUCT_LABELS), defaultValue=0
            ),
            "How to read the inputs. Automatic: from the file names (LiCSAR *.geo.unw.tif, HyP3 *_unw_phase.tif; "
            "anything else generic). LiCSAR: an exact 0 is no data in unwrapped phase and coherence, with or "
            "without a NoData tag. HyP3: NoData as declared, baselines from each product's .txt. Generic: NoData "
            "as declared. In every case a coherence raster of 8-bit data type is DN/255.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.EXTENT, self.tr("Extent of products that differ"), options=list(self.EXTENT_LABELS), defaultValue=0
            ),
            "When the products cover different areas (each HyP3 product has its own extent): invert their "
            "common intersection (default; every pixel is in every interferogram), or their union with NoData "
            "where a product does not reach (pixels then have fewer interferograms; gaps are handled and "
            "counted as usual). Products on one pixel lattice are never resampled.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.DIFFERENT_CRS,
                self.tr("Products in different CRS or grids"),
                options=list(self.CRS_LABELS),
                defaultValue=0,
            ),
            "When products are in different CRS (e.g. HyP3 products in two UTM zones) or not on one pixel "
            "lattice: stop with an error naming them (default), or warp them onto the grid of the first product "
            "(nearest neighbour, its CRS and pixel size; logged).",
        )
        self.add(
            QgsProcessingParameterFile(self.PAIRS, self.tr("Pairs CSV (optional)"), extension="csv", optional=True),
            "CSV with columns file (name or path), reference, secondary (YYYY-MM-DD or YYYYMMDD) and optional "
            "bperp (m). Needed when file names carry no dates. Baselines of LiCSAR (baselines file) and HyP3 "
            "(.txt) products are read from the products; a CSV's bperp column takes precedence.",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.COHERENCE, self.tr("Coherence rasters (optional)"), SourceType.File, optional=True
            ),
            "One coherence raster (0-1, or 8-bit 0-255 = DN/255) per interferogram, matched by the date pair in "
            "the file name (LiCSAR .geo.cc.tif, HyP3 _corr.tif; found automatically with an input folder). Used "
            "for weighting, the coherence threshold, the automatic reference and the network table.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MIN_COHERENCE,
                self.tr("Minimum coherence"),
                NumberType.Double,
                defaultValue=0.0,
                minValue=0.0,
                maxValue=1.0,
            ),
            "Observations with coherence below this are dropped (default 0 = keep all).",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.WEIGHTING, self.tr("Weighting"), options=list(self.WEIGHTING_LABELS), defaultValue=0
            ),
            "None: classic SBAS. Coherence: weight = coherence. Phase variance: weight = 1/variance of the "
            "multilooked phase for the coherence and number of looks (Tough et al. 1995). Needs coherence.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.LOOKS,
                self.tr("Number of looks (phase-variance weights)"),
                NumberType.Integer,
                defaultValue=weights.DEFAULT_LOOKS,
                minValue=1,
            ),
            "Effective number of independent looks of the coherence estimate (default 20; LiCSAR/HyP3 use "
            "20x4 multilooking). Only used by the phase-variance weighting.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterEnum(
                self.INPUT_UNITS, self.tr("Input units"), options=list(self.UNIT_LABELS), defaultValue=0
            ),
            "Unwrapped phase in radians (default), or LOS displacement in metres or millimetres.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.WAVELENGTH,
                self.tr("Radar wavelength (m)"),
                NumberType.Double,
                defaultValue=units.SENTINEL1_WAVELENGTH_M,
                minValue=1e-6,
            ),
            "Default 0.05546576 m (Sentinel-1 C band). Phase to LOS: -wavelength/(4 pi).",
        )
        self.add(
            QgsProcessingParameterBoolean(self.FLIP_SIGN, self.tr("Flip sign"), defaultValue=False),
            "Reverse the sign of the input (for processors whose positive phase means motion toward the satellite).",
        )
        self.add(
            QgsProcessingParameterPoint(self.REFERENCE_POINT, self.tr("Reference point (optional)"), optional=True),
            "Stable point whose displacement is set to 0 (any CRS). Default: automatic, the pixel with data in "
            "every interferogram and the highest mean coherence (or the lowest residual RMS without "
            "coherence). The pixel used is reported in the log and in the output metadata.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.REFERENCE_WINDOW,
                self.tr("Reference window (pixels)"),
                NumberType.Integer,
                defaultValue=1,
                minValue=1,
            ),
            "Side of the square window around the reference pixel whose median is subtracted from each "
            "interferogram (1 = the pixel only; odd values are centred).",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MAX_TEMPORAL_BASELINE,
                self.tr("Maximum temporal baseline (days)"),
                NumberType.Double,
                defaultValue=0.0,
                minValue=0.0,
            ),
            "Pairs with a longer temporal baseline are not used (0 = no limit; Liu et al. 2024 use 300 d).",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MAX_PERP_BASELINE,
                self.tr("Maximum perpendicular baseline (m)"),
                NumberType.Double,
                defaultValue=0.0,
                minValue=0.0,
            ),
            "Pairs with a longer perpendicular baseline are not used (0 = no limit; Liu et al. 2024 use 300 m). "
            "Baselines from the products (LiCSAR baselines file, HyP3 .txt) or the bperp column of the pairs "
            "CSV.",
        )
        self.add(
            QgsProcessingParameterString(
                self.EXCLUDE, self.tr("Exclude interferograms"), optional=True, multiLine=True
            ),
            "File names (with or without folder/extension) or pairs YYYYMMDD_YYYYMMDD to leave out, separated "
            "by commas, semicolons or new lines.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.GAP_HANDLING, self.tr("Gap handling"), options=list(self.GAP_LABELS), defaultValue=0
            ),
            "What to do where a pixel's network is split in parts: minimum-norm velocity (Berardino, MintPy "
            "default: zero velocity across the unobserved interval), NSBAS linear-trend bridge (LiCSBAS), or "
            "NoData for the dates not connected to the first date. Gaps are counted in the quality band.",
        )
        self.add(
            QgsProcessingParameterBoolean(
                self.SEASONAL, self.tr("Fit annual and semi-annual terms"), defaultValue=False
            ),
            "Estimate the velocity together with annual and semi-annual sinusoids.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.LOOP_CLOSURE, self.tr("Loop closure"), options=list(self.LOOP_LABELS), defaultValue=2
            ),
            "Network check of LiCSBAS step 12. Off; report only (bad interferograms named, all used); reject "
            "(default): an interferogram whose every loop has a loop-phase RMS >= the threshold (it is in a "
            "bad loop and in no good loop) is not used. Rejections that split the network are handled by the "
            "gap handling. The quality band n_loop_errors counts, per pixel, the loops that do not close "
            "within pi.\n"
            "Correct unwrapping errors per pixel (phase closure; Yunjun et al. 2019, as MintPy's "
            "unwrap_error_phase_closure, solved exactly for every pixel): per pixel the integer cycles of each "
            "loop c = round(loop phase / 2 pi) of the referenced phase (the reference pixel's side of an "
            "error is right by definition, as in MintPy); the "
            "interferograms' integer errors u with C u = c and the fewest cycles (exact integer program, one per "
            "distinct pattern of c) are subtracted, 2 pi u, before the inversion. Left uncorrected and counted "
            "(log, network table): pixels where the answer is not unique (e.g. an interferogram that shares its "
            "only loop with another one: the error may sit on either), inconsistent loops (no integer solution: "
            "noise), pixels whose pattern no neighbour shares (an unwrapping error is a region; noise is not), "
            "solutions with more cycles than the loops miss, and patterns beyond the per-sub-block limit. "
            "Interferograms that the LiCSBAS rule finds bad are kept and corrected when the rule applied to the "
            "loop RMS without each pixel's integer cycles finds them good (their misclosure is integer cycles "
            "over patches) and their errors are told apart from any other interferogram's; otherwise they are "
            "rejected as with 'Reject' (noise or phase bias cannot be corrected by integers). With ramps, the "
            "ramps of the interferograms kept that way are fitted again without their errors (one more read of "
            "the stack). New quality band "
            "n_unwrap_corrected (interferograms corrected at the pixel; NaN in the other modes); n_loop_errors "
            "then counts the loops left unclosed after the correction. Errors in interferograms in no loop are "
            "not seen; two errors whose loops add up to a third interferogram's are attributed to that one.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.LOOP_THRESHOLD,
                self.tr("Loop-phase RMS threshold (rad)"),
                NumberType.Double,
                defaultValue=loop_closure.DEFAULT_LOOP_THRESHOLD,
                minValue=0.0,
            ),
            "A loop whose phase RMS over the image (after removing the integer cycles of its median) reaches "
            "this is bad (default 1.5 rad, LiCSBAS loop_thre).",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.DERAMP, self.tr("Remove ramps"), options=list(self.DERAMP_LABELS), defaultValue=0
            ),
            "Fit a linear or quadratic surface to every interferogram by least squares over its reliable pixels "
            "(coherence >= the minimum coherence when coherence is given, every valid pixel otherwise, minus "
            "the deramp mask) and subtract it before the inversion (orbital / long-wavelength errors). A ramp "
            "also removes a regional deformation gradient: mask the deforming area.",
        )
        self.add(
            QgsProcessingParameterMapLayer(
                self.DERAMP_MASK, self.tr("Area excluded from the ramp fit (optional)"), optional=True
            ),
            "Polygons (the deforming area) or a raster (non-zero = excluded, any grid) left out of the ramp fit. "
            "Draw the deforming areas with a margin: a plane fitted next to a subsiding district takes up the "
            "subsidence gradient at its edge and extrapolates it over the image (in the demo, polygons drawn on "
            "the districts' boundaries gave 5.5 mm/yr velocity RMSE, the same polygons 0.1 deg larger 1.4).",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.GACOS, self.tr("GACOS zenith delay files (optional)"), SourceType.File, optional=True
            ),
            "One file per acquisition date as GACOS distributes them: YYYYMMDD.ztd (raw float32, metres; its "
            "YYYYMMDD.ztd.rsc header must sit next to it, X_FIRST/Y_FIRST = centre of the first pixel, "
            "WGS84) or YYYYMMDD.ztd.tif, on their own grid (resampled bilinearly). Slant delay = ZTD / "
            "cos(incidence); per pair the difference of the two dates, in the interferograms' units and sign, "
            "is subtracted. The log and the network table give each interferogram's standard deviation "
            "before and after. The files must cover the interferograms.",
        )
        self.add(
            QgsProcessingParameterBoolean(
                self.GACOS_SKIP_MISSING, self.tr("Leave out interferograms of dates without GACOS"), defaultValue=False
            ),
            "A date without a GACOS file is an error naming the date (default); checked, its interferograms "
            "are left out instead (named in the log and the network table).",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.GACOS_TOLERANCE,
                self.tr("GACOS tolerance (%)"),
                NumberType.Double,
                defaultValue=100 * gacos.DEFAULT_TOLERANCE,
                minValue=0.0,
            ),
            "The correction is not applied to an interferogram whose standard deviation it raises by more "
            "than this percentage (default 100 %: it more than doubles it); the log and the network table "
            "name them. Meant to catch a failed GACOS map (wrong epoch, holes): an interferogram left "
            "uncorrected among corrected ones keeps its dates' delays, so each one skipped costs network "
            "consistency; the table also gives the standard deviations about a fitted plane. LiCSBAS step 03 "
            "(LiCSBAS03op_GACOS.py) has no such rule: it applies every correction and only reports the reduction "
            "rate (GACOS_info.txt); a very large tolerance (e.g. 1000000 %) does the same here.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterEnum(
                self.OUTPUT_COMPONENT,
                self.tr("Output component"),
                options=[self.tr("LOS"), self.tr("Vertical (horizontal motion neglected)")],
                defaultValue=0,
            ),
            "LOS (default), or the time series and velocity divided by cos(incidence) as in 'LOS to vertical' "
            "(needs the incidence raster or angle; with an input folder the products' own geometry is used when "
            "neither is given: LiCSAR metadata/<frame>.geo.U.tif, HyP3 _lv_theta.tif). Quality layers stay in "
            "LOS.",
        )
        add_incidence_parameters(
            self,
            "Incidence angle (degrees) or U component of the LOS unit vector (LiCSAR *.geo.U.tif) per pixel, "
            "as chosen in 'Incidence raster type'; resampled to the interferogram grid. Used by the vertical output "
            "component and by the GACOS slant delay (ZTD / cos incidence); NoData or 0 under interferogram data "
            "is an error naming the raster.",
            "Used when no incidence raster is given (e.g. 39 for the middle of a Sentinel-1 IW swath); the "
            "vertical output component and GACOS need the raster or this angle.",
        )
        self.add_memory_limit(
            self.MEMORY_LIMIT_MB,
            help_text=(
                "Upper bound of the memory this algorithm allocates besides QGIS itself: GDAL's block cache, the "
                "window of every interferogram being read, the solver's work arrays and the output buffers. "
                "Larger stacks are streamed in windows of whole input tiles; results do not depend on it. Small "
                "caps cost time (tiles decompressed more than once), not accuracy."
            ),
        )
        self.add_threads(self.THREADS)
        self.add_dask_scheduler(self.DASK_SCHEDULER)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_TIMESERIES, self.tr("Displacement time series")),
            "GeoTIFF, mm, one band per acquisition date (description YYYY-MM-DD), first date = 0, NoData NaN.",
        )
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_VELOCITY, self.tr("LOS velocity")),
            "Mean LOS velocity, mm/yr, positive toward the satellite.",
        )
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT_QUALITY, self.tr("Quality")),
            "Bands: temporal coherence, number of interferograms used, residual RMS (mm), velocity standard "
            "deviation (mm/yr), number of network gaps (connected parts - 1), n_loop_errors (loops of the "
            "interferograms used whose referenced phase exceeds pi: an unclosed 2 pi ambiguity; NaN with loop "
            "closure off; after the correction with loop closure 3), kept_first_date (index of the first date of "
            "the part kept: 0 unless the mask gap handling kept a later part), n_unwrap_corrected "
            "(interferograms whose unwrapping error was corrected at the pixel, loop closure 3; NaN otherwise).",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_NETWORK, self.tr("Network"), SourceType.Vector, optional=True
            ),
            "One row per interferogram: file, dates, temporal and perpendicular baseline, used or why not "
            "(e.g. 'loop closure'), mean coherence, residual RMS (mm); with loop closure: loop_check (ok, "
            "rejected, bad (kept: report only), in no loop), loop_rms_rad (the smallest RMS of its loops), "
            "n_loops, n_bad_loops; with the unwrapping-error correction also loop_rms_wrapped_rad (the same "
            "without each pixel's integer cycles), n_pixels_unwrap_corrected and n_pixels_unwrap_ambiguous "
            "(pixels where it was corrected / left because the answer is not unique) and loop_check 'bad (kept: "
            "unwrapping errors corrected per pixel)'; with GACOS: standard deviation before / after and whether "
            "applied; with a ramp: whether it was removed.",
        )
        self.add(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_NETWORK_HTML,
                self.tr("Network figure"),
                "HTML files (*.html)",
                optional=True,
                createByDefault=True,
            ),
            "The network as a figure (date vs perpendicular baseline, or date vs date without baselines): "
            "used interferograms and those not used, with the reason.",
        )
        self.add(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_INCIDENCE, self.tr("Incidence angle (optional)"), optional=True, createByDefault=False
            ),
            "The incidence angle (degrees from the vertical) from the products' own geometry, on the grid of the "
            "outputs, for LOS -> vertical projection or tropospheric corrections: acos(U) of LiCSAR's "
            "<frame>.geo.U.tif, or 90 deg - lv_theta of HyP3's _lv_theta.tif (radians). An error when the "
            "products ship no geometry or it does not cover the stack.",
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802
        # the interferogram and coherence paths are checked without loading hundreds of layers
        light, error = parameters_to_check(
            self, parameters, context, (self.INTERFEROGRAMS, self.COHERENCE, self.INCIDENCE)
        )
        if error:
            return False, error
        return super().checkParameterValues(light, context)

    def processAlgorithm(self, parameters, context, feedback):
        # paths, not layers: a layer per input would compute band statistics and write .aux.xml next to it
        ifgs = raster_paths(self, parameters, self.INTERFEROGRAMS, context)
        folder = self.parameterAsFile(parameters, self.INPUT_FOLDER, context) or None
        if not ifgs and not folder:
            raise QgsProcessingException("no interferograms given: give INTERFEROGRAMS or an INPUT_FOLDER")
        if ifgs and folder:
            raise QgsProcessingException("give either INTERFEROGRAMS or INPUT_FOLDER, not both")
        cohs = raster_paths(self, parameters, self.COHERENCE, context)
        pairs = self.parameterAsFile(parameters, self.PAIRS, context) or None
        outs = [
            output_raster_path(self, parameters, n, context)
            for n in (self.OUTPUT_TIMESERIES, self.OUTPUT_VELOCITY, self.OUTPUT_QUALITY)
        ]
        weighting = self.WEIGHTINGS[self.parameterAsEnum(parameters, self.WEIGHTING, context)]
        if weighting != weights.WEIGHT_NONE and not cohs and not folder:
            raise QgsProcessingException("Weighting '%s' needs the coherence rasters (COHERENCE)" % weighting)
        vertical = self.parameterAsEnum(parameters, self.OUTPUT_COMPONENT, context) == 1
        with self.core_errors():
            # vertical without a given geometry: the products' own (LiCSAR U, HyP3 lv_theta), found once open
            incidence = sbas_setup.given_incidence(self, parameters, context, vertical, folder)
            stack = prepare_stack(
                ifgs,
                pairs,
                cohs or None,
                folder=folder,
                log=feedback.pushInfo,
                **sbas_setup.stack_selection(self, parameters, context),
            )
            incidence, incidence_layer, product_incidence, inc_path = sbas_setup.product_geometry(
                self, parameters, context, stack, outs[1], incidence, vertical, feedback.pushInfo
            )
            sbas_setup.log_network(stack, feedback.pushInfo)
            los = (
                [os.path.join(os.path.dirname(o), ".%s.los.tif" % os.path.basename(o)) for o in outs[:2]]
                if vertical
                else outs[:2]
            )
            options, tmpdir = sbas_setup.sbas_options(self, parameters, context, stack, weighting)
            try:
                summary = sbas_stack.invert_stack(
                    stack,
                    los[0],
                    los[1],
                    outs[2],
                    options,
                    progress=lambda f: feedback.setProgress(100.0 * f),
                    is_canceled=feedback.isCanceled,
                    log=feedback.pushInfo,
                    # on Dask through the base runner; locally the driver runs its own threads (it may use fewer
                    # than asked when a window of whole tiles per thread does not fit the memory limit) and keeps
                    # what its scan pass reads for the inversion pass (in this process only)
                    run_tasks=None
                    if options.threads > 1
                    or not (self.parameterAsString(parameters, self.DASK_SCHEDULER, context) or "").strip()
                    else (
                        lambda fn, tasks, shared: self.map_blocks(
                            fn,
                            tasks,
                            parameters,
                            context,
                            feedback,
                            self.DASK_SCHEDULER,
                            shared=shared,
                            report_progress=False,
                            threads=1,
                        )
                    ),
                )
                if vertical:  # outputs are staged by the transaction: a failure here removes them
                    for src, dst in zip(los, outs[:2]):
                        geometry.project_raster(
                            src, dst, incidence, log=feedback.pushWarning, is_canceled=feedback.isCanceled
                        )
                    feedback.pushInfo(
                        "time series and velocity projected to vertical (%s)"
                        % geometry.IncidenceSource(grid=stack.grid, **incidence).describe()
                    )
            finally:
                if vertical:
                    _remove(los + [product_incidence])
                if tmpdir:
                    shutil.rmtree(tmpdir, ignore_errors=True)
            results = sbas_setup.write_outputs(self, parameters, context, outs, summary, incidence_layer, inc_path)
        feedback.pushInfo(sbas_setup.reference_text(summary))
        for path, kind in zip(outs, ("timeseries", "velocity", "quality")):
            style_output(self, context, path, kind, group_name="SBAS inversion")
        return results
