"""Geodetector: factor, interaction, risk and ecological detectors (``subsidence:geodetector``)."""

import numpy as np
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.io.lazy import lazy_module
from ..core.reports.geodetector_report import CI_HELP, write_html_report
from ..core.stats import geodetector as gd
from ..core.stats.factor_settings import parse_overrides
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import (
    FieldDataType,
    NumberType,
    ParameterFlag,
    SourceType,
    parameter_as_fields,
)
from ..processing_provider.tables import dataframe_from_source, write_table

pd = lazy_module("pandas")


def _column(series):
    """A table column as float (NULL -> NaN) when every value is numeric, else text (NULL -> None)."""
    num = pd.to_numeric(series, errors="coerce")
    if num.notna().sum() == series.notna().sum():
        return num.to_numpy(dtype=np.float64)
    return series.where(series.notna(), None).astype(object).to_numpy()


class Geodetector(SubsidenceAlgorithm):
    INPUT = "INPUT"
    TARGET_FIELD = "TARGET_FIELD"
    FACTOR_FIELDS = "FACTOR_FIELDS"
    TARGET_RASTER = "TARGET_RASTER"
    FACTOR_RASTERS = "FACTOR_RASTERS"
    METHOD = "METHOD"
    CLASSES = "CLASSES"
    FACTOR_SETTINGS = "FACTOR_SETTINGS"
    OPTIMAL_MIN_CLASSES = "OPTIMAL_MIN_CLASSES"
    OPTIMAL_MAX_CLASSES = "OPTIMAL_MAX_CLASSES"
    OPTIMAL_MIN_GAIN = "OPTIMAL_MIN_GAIN"
    SUBSIDENCE_THRESHOLD = "SUBSIDENCE_THRESHOLD"
    SAMPLE_RATIO = "SAMPLE_RATIO"
    SEED = "SEED"
    CONVENTION = "CONVENTION"
    SINGLETONS = "SINGLETONS"
    LAMBDA_VARIANCE = "LAMBDA_VARIANCE"
    PERMUTATIONS = "PERMUTATIONS"
    ALPHA = "ALPHA"
    CONFIDENCE_LEVEL = "CONFIDENCE_LEVEL"
    STRATUM_FACTOR = "STRATUM_FACTOR"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    OUTPUT_FACTOR = "OUTPUT_FACTOR"
    OUTPUT_INTERACTION = "OUTPUT_INTERACTION"
    OUTPUT_RISK = "OUTPUT_RISK"
    OUTPUT_RISK_TESTS = "OUTPUT_RISK_TESTS"
    OUTPUT_ECOLOGICAL = "OUTPUT_ECOLOGICAL"
    OUTPUT_CURVES = "OUTPUT_CURVES"
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_STRATUM_MEAN = "OUTPUT_STRATUM_MEAN"

    METHODS = ("natural", "quantile", "equal", "geometric", "sd", "optimal")
    METHOD_LABELS = (
        "Natural breaks (exact Jenks)",
        "Quantile",
        "Equal interval",
        "Geometric interval",
        "Standard deviation",
        "Optimal (methods x classes, elbow on q gain)",
    )
    CONVENTIONS = ("r", "tolerance")
    SINGLETON_MODES = ("keep", "drop")

    NAME = "geodetector"
    DISPLAY_NAME = "Geodetector (factor, interaction, risk, ecological)"
    GROUP = "Drivers"
    GROUP_ID = "drivers"
    TAGS = (
        "geodetector",
        "q statistic",
        "spatial stratified heterogeneity",
        "driving factors",
        "interaction",
        "natural breaks",
        "jenks",
        "subsidence",
    )
    SHORT_HELP = (
        "Which drivers explain the spatial pattern of a variable Y (e.g. the subsidence rate), by the q "
        "statistic of Wang & Xu (2017): q = 1 - sum_h N_h sigma_h^2 / (N sigma^2), as in Huang et al. "
        "(2025, sec. 2.2.4 and 3.3.2: 9 drivers, natural breaks with 20 classes, -15 mm/yr threshold, "
        "subsidence : non-subsidence samples 1:2, 1:1, 1:0.5).\n\n"
        "Vector mode: a layer or table with the Y field and factor fields. Raster mode: a target raster "
        "and factor rasters on any grids; factors are warped to the target grid (nearest neighbour for "
        "categorical factors, bilinear otherwise, through warped VRTs) and read in row blocks under the "
        "memory limit; only the pixels with a valid Y are kept (float32 where lossless). NoData is masked per "
        "factor and per pair.\n\n"
        "Numeric factors are discretized (exact natural breaks, quantile, equal, geometric, standard "
        "deviation, manual breaks, or the optimal mode that reports the q-versus-classes curve and picks "
        "the elbow); integer or text factors with at most 50 distinct values are used as categories.\n\n"
        "Outputs: factor table (q with a confidence interval from the noncentral F inverted in its "
        "noncentrality (Steiger 2004), Wang-Zhang-Fu 2016 noncentral-F p, one-way ANOVA p, adjusted q, q "
        "expected by chance (L-1)/(N-1)); interaction table (type by the R geodetector 1.0-5 rules by "
        "default, integer cell keys, Wang p of q(A∩B), optional permutation p of the enhancement); risk detector "
        "(stratum means, pairwise Welch t-tests); ecological detector (F = SSW_A/SSW_B, df N-1, two-sided p); an "
        "HTML report. Rows with NULL/NaN are dropped per factor and per pair, never made a stratum."
    )

    MODE = "both"  # "vector" / "raster": the split algorithms below show one mode's inputs only

    def flags(self):
        # the two-mode algorithm stays for saved models and command lines; the toolbox shows the split ones
        if self.MODE != "both":
            return super().flags()
        flag = getattr(QgsProcessingAlgorithm, "FlagHideFromToolbox", None)
        if flag is None:
            from qgis.core import Qgis

            flag = Qgis.ProcessingAlgorithmFlag.HideFromToolbox
        return super().flags() | flag

    def initAlgorithm(self, config=None):
        vector, raster = self.MODE in ("both", "vector"), self.MODE in ("both", "raster")
        either = self.MODE == "both"  # one dialog for both modes: every mode input is optional
        vprefix, rprefix = ("Vector mode: ", "Raster mode: ") if either else ("", "")
        if vector:
            self.add(
                QgsProcessingParameterFeatureSource(
                    self.INPUT, self.tr(vprefix + "Input layer or table"), [SourceType.Vector], optional=either
                ),
                "Points, polygons or a table with the target field and the factor fields."
                + (" Leave empty in raster mode." if either else ""),
            )
            self.add(
                QgsProcessingParameterField(
                    self.TARGET_FIELD,
                    self.tr(vprefix + "Target field Y"),
                    parentLayerParameterName=self.INPUT,
                    type=FieldDataType.Numeric,
                    optional=either,
                ),
                "Numeric field explained by the factors, e.g. the subsidence rate (mm/yr).",
            )
            self.add(
                QgsProcessingParameterField(
                    self.FACTOR_FIELDS,
                    self.tr(vprefix + "Factor fields"),
                    parentLayerParameterName=self.INPUT,
                    allowMultiple=True,
                    optional=either,
                ),
                "Explanatory fields. Numeric fields are discretized; text fields and integer fields with "
                "at most 50 distinct values are categories.",
            )
        if raster:
            self.add(
                QgsProcessingParameterRasterLayer(
                    self.TARGET_RASTER, self.tr(rprefix + "Target raster Y"), optional=either
                ),
                "Raster of Y (band 1), e.g. the SBAS velocity. Its grid is the analysis grid.",
            )
            self.add(
                QgsProcessingParameterMultipleLayers(
                    self.FACTOR_RASTERS, self.tr(rprefix + "Factor rasters"), SourceType.Raster, optional=either
                ),
                "Factor rasters (band 1) on any grid overlapping the target; the layer name is the factor name.",
            )
        self.add(
            QgsProcessingParameterEnum(
                self.METHOD,
                self.tr("Discretization of numeric factors"),
                options=list(self.METHOD_LABELS),
                defaultValue=0,
            ),
            "Natural breaks = exact Jenks (optimal 1-D k-means). Optimal: every method with "
            "'Optimal: classes from/to' classes; the smallest class count after which no extra class "
            "gains more than 'Optimal: minimum relative q gain per class' is chosen.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.CLASSES, self.tr("Number of classes"), NumberType.Integer, defaultValue=5, minValue=2
            ),
            "Classes per numeric factor (Huang et al. 2025 used 20).",
        )
        self.add(
            QgsProcessingParameterString(
                self.FACTOR_SETTINGS, self.tr("Per-factor settings"), optional=True, multiLine=True
            ),
            "Overrides separated by ';': name=method[:classes], name=classes, name=manual:b1,b2,..., "
            "name=categorical. Methods: natural, quantile, equal, geometric, sd, optimal. Example: "
            "dem=quantile:10; ndvi=manual:0.2,0.4,0.6; landuse=categorical.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.OPTIMAL_MIN_CLASSES,
                self.tr("Optimal: classes from"),
                NumberType.Integer,
                defaultValue=3,
                minValue=2,
            ),
            "Smallest class count tried by the optimal mode.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.OPTIMAL_MAX_CLASSES,
                self.tr("Optimal: classes to"),
                NumberType.Integer,
                defaultValue=10,
                minValue=2,
            ),
            "Largest class count tried by the optimal mode.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.OPTIMAL_MIN_GAIN,
                self.tr("Optimal: minimum relative q gain per class"),
                NumberType.Double,
                defaultValue=0.05,
                minValue=0,
            ),
            "Elbow rule: stop at the first k from which no larger k gains more than this fraction of "
            "q(k) per extra class.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.SUBSIDENCE_THRESHOLD, self.tr("Subsidence threshold"), NumberType.Double, optional=True
            ),
            "Seed sampling: rows with Y <= threshold (e.g. -15 mm/yr) are subsidence samples and all "
            "are kept; non-subsidence rows are drawn by 'Sample ratio'. Empty: use every row.",
        )
        self.add(
            QgsProcessingParameterString(
                self.SAMPLE_RATIO, self.tr("Sample ratio subsidence:non-subsidence"), defaultValue="1:2", optional=True
            ),
            "e.g. 1:2, 1:1 or 1:0.5 (Huang et al. 2025). Used only with a subsidence threshold.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), NumberType.Integer, defaultValue=0, minValue=0
            ),
            "Seed of the sampling and of the permutation test: same seed, same result.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.CONVENTION,
                self.tr("Interaction type rules"),
                options=[
                    "R geodetector 1.0-5 (default)",
                    "Wang & Xu table with tolerance 1e-10 (Independent reachable)",
                ],
                defaultValue=0,
            ),
            "R rules: q12 <= min -> Weaken, nonlinear; min < q12 < max -> Weaken, uni-; "
            "max <= q12 <= q1+q2 -> Enhance, bi-; q12 > q1+q2 -> Enhance, nonlinear (Independent is "
            "never assigned by R). Tolerance rules report Independent when |q12 - (q1+q2)| <= 1e-10.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterEnum(
                self.SINGLETONS,
                self.tr("Strata with one sample"),
                options=["Keep (R geodetector)", "Drop (GD, gdverse, PyPI geodetector)"],
                defaultValue=0,
            ),
            "Keep: a single-sample stratum adds 0 to SSW and counts in N and L. Drop: removed first.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterEnum(
                self.LAMBDA_VARIANCE,
                self.tr("Variance in the noncentrality parameter"),
                options=["Sample variance (R geodetector)", "Population variance (GD, gdverse)"],
                defaultValue=0,
            ),
            "Variance of Y used in lambda of the Wang-Zhang-Fu p-value.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.PERMUTATIONS,
                self.tr("Permutations for the interaction p"),
                NumberType.Integer,
                defaultValue=0,
                minValue=0,
            ),
            "0: off. Otherwise Y is shuffled within the strata of the stronger factor this many times and "
            "p_enhance = share of shuffles whose q(A∩B) - max(q(A), q(B)) reaches the observed one. "
            "Many classes inflate q(A∩B) by chance: check p_enhance and q_ab_null before reading a type.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.ALPHA,
                self.tr("Significance level"),
                NumberType.Double,
                defaultValue=0.05,
                minValue=1e-6,
                maxValue=0.5,
            ),
            "Level of the risk and ecological tests.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.CONFIDENCE_LEVEL,
                self.tr("Confidence level of q"),
                NumberType.Double,
                defaultValue=0.95,
                minValue=0.5,
                maxValue=0.9999,
                optional=True,
            ),
            CI_HELP,
            advanced=True,
        )
        if raster:
            self.add(
                QgsProcessingParameterString(
                    self.STRATUM_FACTOR, self.tr("Factor for the stratum-mean raster"), optional=True
                ),
                "Raster mode: name of the factor whose stratum means of Y are written to the stratum-mean "
                "raster (default: the factor with the largest q).",
            )
        # optional (with its default) so that models saved before these parameters existed stay valid
        mem = self.add_memory_limit(self.MEMORY_LIMIT_MB)
        mem.setFlags(mem.flags() | ParameterFlag.Optional)
        self.add(
            QgsProcessingParameterFeatureSink(self.OUTPUT_FACTOR, self.tr("Factor detector"), SourceType.Vector),
            "factor, method, classes, breaks, n, strata, q, q_ci_low, q_ci_high (confidence interval of "
            "the population q, see 'Confidence level of q'), ci_level, p_wang, p_anova, q_adj, q_null, "
            "lambda, singletons.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_INTERACTION,
                self.tr("Interaction detector"),
                SourceType.Vector,
                optional=True,
                createByDefault=True,
            ),
            "factor_a, factor_b, q_a, q_b, q_ab, type, cells, n, q_ab_null = (cells-1)/(n-1), lambda_ab and "
            "p_wang_ab (Wang-Zhang-Fu noncentral-F p of q(A∩B), the A∩B cells taken as one stratification, "
            "same conventions as the factor p), p_enhance (permutation p, when permutations > 0).",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_RISK,
                self.tr("Risk detector (strata)"),
                SourceType.Vector,
                optional=True,
                createByDefault=True,
            ),
            "factor, stratum, range, n, mean and sd of Y.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_RISK_TESTS,
                self.tr("Risk detector (Welch t-tests)"),
                SourceType.Vector,
                optional=True,
                createByDefault=True,
            ),
            "Pairwise Welch t-tests between the strata of each factor: t, df, p, significant.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_ECOLOGICAL,
                self.tr("Ecological detector"),
                SourceType.Vector,
                optional=True,
                createByDefault=True,
            ),
            "factor_a, factor_b, n, ssw_a, ssw_b, F = ssw_a/ssw_b, df1, df2, two-sided p, significant, stronger.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_CURVES,
                self.tr("q versus classes (optimal mode)"),
                SourceType.Vector,
                optional=True,
                createByDefault=False,
            ),
            "Optimal mode: q for every factor, method and class count, with the chosen one flagged.",
        )
        self.add(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_HTML, self.tr("HTML report"), "HTML files (*.html)", optional=True, createByDefault=True
            ),
            "Settings, all tables, a q bar chart and an interaction heat map (when matplotlib is available).",
        )
        if raster:
            self.add(
                QgsProcessingParameterRasterDestination(
                    self.OUTPUT_STRATUM_MEAN, self.tr("Stratum-mean raster"), optional=True, createByDefault=False
                ),
                "Raster mode: every pixel gets the mean Y of its stratum of the chosen factor (risk map).",
            )

    def _number_or_default(self, parameters, name, context):
        if parameters.get(name) in (None, ""):
            return float(self.parameterDefinition(name).defaultValue())
        return self.parameterAsDouble(parameters, name, context)

    # ------------------------------------------------------------------ inputs
    def _vector_inputs(self, parameters, context):
        source = self.parameterAsSource(parameters, self.INPUT, context)
        target = self.parameterAsString(parameters, self.TARGET_FIELD, context)
        fields = parameter_as_fields(self, parameters, self.FACTOR_FIELDS, context)
        if not target:
            raise QgsProcessingException("vector mode: choose the target field Y")
        if not fields:
            raise QgsProcessingException("vector mode: choose at least one factor field")
        if target in fields:
            raise QgsProcessingException(f"field {target!r} is both the target and a factor")
        df = dataframe_from_source(source, [target] + list(fields))
        try:
            y = gd.as_target(df[target].to_numpy(), target)
        except ValueError as e:
            raise QgsProcessingException(str(e)) from None
        return y, {f: _column(df[f]) for f in fields}, source.sourceName(), None

    def _raster_inputs(self, parameters, context, feedback, categorical_names):
        tlayer = self.parameterAsRasterLayer(parameters, self.TARGET_RASTER, context)
        layers = self.parameterAsLayerList(parameters, self.FACTOR_RASTERS, context)
        if not layers:
            raise QgsProcessingException("raster mode: add at least one factor raster")
        tpath = layer_path(tlayer)
        from osgeo import gdal

        paths, used = {}, set()
        for i, lyr in enumerate(layers):
            name = lyr.name() or "factor%d" % (i + 1)
            while name in used:
                name = "%s_%d" % (name, i + 1)
            used.add(name)
            path = layer_path(lyr)
            ds = gdal.Open(path)
            if ds is None:
                raise QgsProcessingException("cannot open factor raster %s" % path)
            is_int = ds.GetRasterBand(1).DataType in (
                gdal.GDT_Byte,
                gdal.GDT_Int16,
                gdal.GDT_UInt16,
                gdal.GDT_Int32,
                gdal.GDT_UInt32,
            )
            ds = None
            paths[name] = (path, is_int or name in categorical_names)
            feedback.pushInfo(
                "%s: aligned to the target grid (%s)" % (name, "nearest" if paths[name][1] else "bilinear")
            )
        memory = self._number_or_default(parameters, self.MEMORY_LIMIT_MB, context)
        y, factors, info = gd.read_raster_samples(
            tpath,
            paths,
            memory,
            check=lambda: self.check_canceled(feedback),
            progress=lambda f: feedback.setProgress(5 + 25 * f),
        )
        feedback.pushInfo(
            "%d of %d target pixels have a valid Y (read in row blocks under %g MB)" % (y.size, info["pixels"], memory)
        )
        return y, factors, tpath, (tpath, paths, memory)

    # ------------------------------------------------------------------ run
    def processAlgorithm(self, parameters, context, feedback):
        raster_mode = parameters.get(self.TARGET_RASTER) not in (None, "")
        vector_mode = parameters.get(self.INPUT) not in (None, "")
        if raster_mode and vector_mode:
            raise QgsProcessingException("give either an input layer (vector mode) or a target raster, not both")
        if not raster_mode and not vector_mode:
            raise QgsProcessingException(
                "give an input layer with fields (vector mode) or a target raster with factor rasters (raster mode)"
            )
        messages = []
        with self.core_errors():
            specs = parse_overrides(self.parameterAsString(parameters, self.FACTOR_SETTINGS, context))
            categorical_names = {n for n, s in specs.items() if s.get("method") == "categorical"}
            if raster_mode:
                y, factors, source, raster = self._raster_inputs(parameters, context, feedback, categorical_names)
            else:
                y, factors, source, raster = self._vector_inputs(parameters, context)
            unknown = set(specs) - set(factors)
            if unknown:
                raise QgsProcessingException(
                    "per-factor settings name unknown factors: %s (factors: %s)"
                    % (", ".join(sorted(unknown)), ", ".join(factors))
                )
            threshold = parameters.get(self.SUBSIDENCE_THRESHOLD)
            ys, fs, sampled = gd.select_rows(
                y,
                factors,
                None
                if threshold in (None, "")
                else self.parameterAsDouble(parameters, self.SUBSIDENCE_THRESHOLD, context),
                self.parameterAsString(parameters, self.SAMPLE_RATIO, context) or "1:1",
                self.parameterAsInt(parameters, self.SEED, context),
                messages=messages,
            )
            factors = None
            info = ["source: %s" % source, sampled]
            feedback.pushInfo(sampled)
            options = self._detector_options(parameters, context)
            self.check_canceled(feedback)
            feedback.setProgress(35)
            res = gd.run_geodetector(ys, fs, specs, messages=messages, **options)
            feedback.setProgress(80)
            for m in messages:
                feedback.pushWarning(m) if hasattr(feedback, "pushWarning") else feedback.reportError(m)
            for line in gd.factor_lines(res["factor"]):
                feedback.pushInfo(line)
            info.append(
                "discretization: %s, %d classes; interaction rules %s; singletons %s; lambda ddof %d; "
                "q confidence level %g"
                % (
                    options["default_method"],
                    options["default_k"],
                    options["convention"],
                    options["singletons"],
                    options["lambda_ddof"],
                    options["ci_level"],
                )
            )
            info += messages
            stratum_path = None
            if raster is not None and parameters.get(self.OUTPUT_STRATUM_MEAN) not in (None, ""):
                stratum_path = self._stratum_raster(parameters, context, feedback, res, ys, raster)
        outputs = self._write_outputs(parameters, context, res, info)
        if stratum_path:
            outputs[self.OUTPUT_STRATUM_MEAN] = stratum_path
        feedback.setProgress(100)
        return outputs

    def _detector_options(self, parameters, context):
        """Keyword arguments of :func:`..core.stats.geodetector.run_geodetector` from the parameters."""
        kmin = self.parameterAsInt(parameters, self.OPTIMAL_MIN_CLASSES, context)
        kmax = self.parameterAsInt(parameters, self.OPTIMAL_MAX_CLASSES, context)
        if kmax < kmin:
            raise QgsProcessingException("Optimal: 'classes to' is smaller than 'classes from'")
        return dict(
            default_method=self.METHODS[self.parameterAsEnum(parameters, self.METHOD, context)],
            default_k=self.parameterAsInt(parameters, self.CLASSES, context),
            convention=self.CONVENTIONS[self.parameterAsEnum(parameters, self.CONVENTION, context)],
            lambda_ddof=1 if self.parameterAsEnum(parameters, self.LAMBDA_VARIANCE, context) == 0 else 0,
            singletons=self.SINGLETON_MODES[self.parameterAsEnum(parameters, self.SINGLETONS, context)],
            permutations=self.parameterAsInt(parameters, self.PERMUTATIONS, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            alpha=self.parameterAsDouble(parameters, self.ALPHA, context),
            optimal_ks=range(kmin, kmax + 1),
            min_gain=self.parameterAsDouble(parameters, self.OPTIMAL_MIN_GAIN, context),
            ci_level=self._number_or_default(parameters, self.CONFIDENCE_LEVEL, context),
        )

    def _write_outputs(self, parameters, context, res, info):
        """The detector tables and the HTML report (inside the output transaction: a failure removes them all)."""
        outputs = {}
        for name, key in (
            (self.OUTPUT_FACTOR, "factor"),
            (self.OUTPUT_INTERACTION, "interaction"),
            (self.OUTPUT_RISK, "risk"),
            (self.OUTPUT_RISK_TESTS, "risk_tests"),
            (self.OUTPUT_ECOLOGICAL, "ecological"),
            (self.OUTPUT_CURVES, "curves"),
        ):
            df = res[key]
            if not len(df.columns):
                df = pd.DataFrame({"note": ["not computed (fewer than 2 factors or not optimal mode)"]})
            dest = write_table(self, parameters, name, context, df)
            if dest is not None:
                outputs[name] = dest
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html_path:
            write_html_report(html_path, res, info)
            outputs[self.OUTPUT_HTML] = html_path
        return outputs

    def _stratum_raster(self, parameters, context, feedback, res, ys, raster):
        from ..processing_provider.rasters import output_raster_path

        tpath, paths, memory = raster
        name = (self.parameterAsString(parameters, self.STRATUM_FACTOR, context) or "").strip()
        codings = {c.name: c for c in res["codings"]}
        if not name:
            name = res["factor"].sort_values("q", ascending=False).factor.iloc[0]
        if name not in codings:
            raise QgsProcessingException(
                "stratum-mean raster: no factor named %r (factors: %s)" % (name, ", ".join(codings))
            )
        out = output_raster_path(self, parameters, self.OUTPUT_STRATUM_MEAN, context)
        lut = gd.stratum_mean_lut(ys, codings[name])
        path, categorical = paths[name]
        gd.write_stratum_mean_raster(
            out,
            tpath,
            path,
            categorical,
            codings[name],
            lut,
            memory,
            check=lambda: self.check_canceled(feedback),
            band_name="mean of Y by %s stratum" % name,
            metadata={"FACTOR": name, "SOURCE": tpath},
        )
        return out


class GeodetectorTable(Geodetector):
    """Geodetector on a vector layer or table (``subsidence:geodetectortable``): Y and factors are fields."""

    MODE = "vector"
    NAME = "geodetectortable"
    DISPLAY_NAME = "Geodetector on a table or vector layer"
    SHORT_HELP = (
        "Fields of one layer or table: the target field Y and the factor fields (same method and "
        "outputs as 'Geodetector on rasters').\n\n" + Geodetector.SHORT_HELP
    )


class GeodetectorRaster(Geodetector):
    """Geodetector on rasters (``subsidence:geodetectorraster``): a target raster Y and factor rasters."""

    MODE = "raster"
    NAME = "geodetectorraster"
    DISPLAY_NAME = "Geodetector on rasters"
    SHORT_HELP = (
        "A target raster Y (e.g. the SBAS velocity) and factor rasters on any grids (same method and "
        "outputs as 'Geodetector on a table or vector layer').\n\n" + Geodetector.SHORT_HELP
    )
