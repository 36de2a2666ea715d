"""Lagged correlation of a driver and a response series (``subsidence:laggedcorrelation``)."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.reports.lagcorr_report import write_html_report
from ..core.stats import lagcorr
from ..processing_provider.base import SubsidenceAlgorithm
from ..processing_provider.compat import FieldDataType, NumberType, SourceType, parameter_as_fields
from ..processing_provider.tables import dataframe_from_source, write_table


class LaggedCorrelation(SubsidenceAlgorithm):
    INPUT = "INPUT"
    DATE_FIELD = "DATE_FIELD"
    X_FIELD = "X_FIELD"
    Y_FIELD = "Y_FIELD"
    VARIABLE_FIELD = "VARIABLE_FIELD"
    VALUE_FIELD = "VALUE_FIELD"
    X_NAME = "X_NAME"
    Y_NAME = "Y_NAME"
    GROUP_FIELDS = "GROUP_FIELDS"
    MAX_LAG = "MAX_LAG"
    NEGATIVE_LAGS = "NEGATIVE_LAGS"
    SERIES = "SERIES"
    BASE_DATE = "BASE_DATE"
    DETREND = "DETREND"
    BEST_BY = "BEST_BY"
    MIN_PAIRS = "MIN_PAIRS"
    OUTPUT = "OUTPUT"
    OUTPUT_HTML = "OUTPUT_HTML"
    MAX_MESSAGES = 50

    SERIES_VALUES = ("levels", "cumulative", "temporal", "both")
    SERIES_LABELS = (
        "Levels (values as given)",
        "Cumulative change from a base month",
        "Temporal change (month-to-month)",
        "Both: cumulative and temporal",
    )
    DETREND_VALUES = ("none", "linear", "harmonic", "climatology")
    DETREND_LABELS = (
        "None",
        "Linear trend",
        "Linear trend + annual + semi-annual cycle",
        "Monthly climatology (mean of each calendar month)",
    )
    BEST_VALUES = ("abs", "max", "min")
    BEST_LABELS = ("Largest |r|", "Largest r (positive association)", "Smallest r (negative association)")

    NAME = "laggedcorrelation"
    DISPLAY_NAME = "Lagged correlation (deformation vs groundwater)"
    GROUP = "Groundwater and deformation"
    GROUP_ID = "groundwater"
    TAGS = (
        "lag",
        "cross-correlation",
        "Pearson",
        "GWSA",
        "GRACE",
        "InSAR",
        "deformation",
        "groundwater",
        "effective sample size",
        "autocorrelation",
        "time series",
    )
    SHORT_HELP = (
        "Correlates a driver series X (e.g. GWSA) with a response series Y (e.g. class-averaged deformation) "
        "at lags of 0..MAX_LAG months, per group (e.g. area and deformation class), as in Liu et al. (2024, "
        "sec. 3.3: temporal and cumulative correlation, deformation lagging groundwater by 1-2 months).\n\n"
        "Convention: lag k >= 0 means X leads Y by k months: R_k = Pearson(Y[t+k], X[t]) over the months where "
        "both exist (means over the pairs; equal to scipy.stats.pearsonr). With negative lags, k < 0 means Y "
        "leads X.\n\n"
        "Input: a table or layer, either wide (a date field, an X field and a Y field) or long (a date field, a "
        "variable field naming the layer of each row, a value field, and the names of the X and Y variables), "
        "e.g. the long table of the class sampling (area, class, layer, date, mean). Monthly series are keyed by "
        "calendar month; several values in one month are averaged. Empty values are missing months.\n\n"
        "Series: levels; cumulative change from a base month (X_t - X_base: it has exactly the r of the levels, "
        "because a constant shift does not change a correlation); temporal (month-to-month) change, missing when "
        "either month is missing (a gap is never bridged or zero-filled); or both cumulative and temporal.\n\n"
        "Detrending (of the analysed series, each on its own months): none (default, as in Liu et al. 2024 "
        "and Huang et al. 2025), linear, linear + annual + semi-annual, monthly climatology.\n\n"
        "Significance: p of the t-test with N-2 degrees of freedom assumes independent months, which monthly "
        "levels are not. The effective sample size of Bretherton et al. (1999) N_eff = N(1 - r1 r2)/(1 + r1 r2) "
        "(r1, r2: lag-1 autocorrelations of the paired series; capped at N) gives p_eff, the honest p.\n\n"
        "Outputs: a table (group fields, group, x, y, series, detrend, lag, n, r, p, r1_x, r1_y, n_eff, p_eff, "
        "best_lag, note) and an HTML report (series overlay and r-versus-lag plot per group when matplotlib is "
        "available, tables otherwise). A group with fewer than 4 overlapping months gets NaN rows and a warning."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterFeatureSource(self.INPUT, self.tr("Input table or layer"), [SourceType.Vector]),
            "Table (e.g. CSV) or vector layer with one row per date (wide) or per date and variable (long), "
            "e.g. the table of the class sampling.",
        )
        self.add(
            QgsProcessingParameterField(
                self.DATE_FIELD, self.tr("Date field"), parentLayerParameterName=self.INPUT, type=FieldDataType.Any
            ),
            "Date of each row: a date field or text YYYY-MM-DD, YYYYMMDD or YYYY-MM. Rows are grouped by calendar "
            "month.",
        )
        self.add(
            QgsProcessingParameterField(
                self.X_FIELD,
                self.tr("X field: driver, e.g. GWSA (wide table)"),
                parentLayerParameterName=self.INPUT,
                type=FieldDataType.Any,
                optional=True,
            ),
            "Wide table: the field with the driver series X (e.g. groundwater storage anomaly, mm). X leads Y at "
            "positive lags.",
        )
        self.add(
            QgsProcessingParameterField(
                self.Y_FIELD,
                self.tr("Y field: response, e.g. deformation (wide table)"),
                parentLayerParameterName=self.INPUT,
                type=FieldDataType.Any,
                optional=True,
            ),
            "Wide table: the field with the response series Y (e.g. class-averaged deformation, mm).",
        )
        self.add(
            QgsProcessingParameterField(
                self.VARIABLE_FIELD,
                self.tr("Variable field (long table)"),
                parentLayerParameterName=self.INPUT,
                type=FieldDataType.Any,
                optional=True,
            ),
            "Long table: the field naming the variable (layer) of each row, e.g. 'layer'. When set, the value "
            "field and the X and Y names are used instead of the X and Y fields.",
        )
        self.add(
            QgsProcessingParameterField(
                self.VALUE_FIELD,
                self.tr("Value field (long table)"),
                parentLayerParameterName=self.INPUT,
                type=FieldDataType.Any,
                optional=True,
            ),
            "Long table: the field holding the values, e.g. 'mean'.",
        )
        self.add(
            QgsProcessingParameterString(self.X_NAME, self.tr("X variable name (long table)"), optional=True),
            "Long table: the value of the variable field that marks X rows (the driver, e.g. gwsa).",
        )
        self.add(
            QgsProcessingParameterString(self.Y_NAME, self.tr("Y variable name (long table)"), optional=True),
            "Long table: the value of the variable field that marks Y rows (the response, e.g. deformation).",
        )
        self.add(
            QgsProcessingParameterField(
                self.GROUP_FIELDS,
                self.tr("Group by fields"),
                parentLayerParameterName=self.INPUT,
                type=FieldDataType.Any,
                allowMultiple=True,
                optional=True,
            ),
            "One analysis per combination of these fields (e.g. area and class). Empty: one analysis.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MAX_LAG,
                self.tr("Maximum lag (months)"),
                NumberType.Integer,
                defaultValue=3,
                minValue=0,
                maxValue=120,
            ),
            "Lags 0..MAX_LAG months are evaluated; lag k means X leads Y by k months.",
        )
        self.add(
            QgsProcessingParameterBoolean(
                self.NEGATIVE_LAGS, self.tr("Also negative lags (Y leads X)"), defaultValue=False
            ),
            "Also evaluate -MAX_LAG..-1 (Y leads X), e.g. to check that the best lag is not an artefact.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.SERIES, self.tr("Series"), options=list(self.SERIES_LABELS), defaultValue=3
            ),
            "Levels; cumulative change from the base month (same r as levels); temporal month-to-month change "
            "(missing across a missing month); or both cumulative and temporal (default, as in Liu et al. 2024).",
        )
        self.add(
            QgsProcessingParameterString(
                self.BASE_DATE, self.tr("Base month of the cumulative series (optional)"), optional=True
            ),
            "YYYY-MM-DD or YYYY-MM. Default: the first month where both series exist. A group without a value "
            "in the base month gets NaN rows and a warning.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterEnum(
                self.DETREND, self.tr("Detrending"), options=list(self.DETREND_LABELS), defaultValue=0
            ),
            "Removed from each analysed series before correlating: none (default, as in Liu et al. 2024 and "
            "Huang et al. 2025), a linear trend, linear + annual + semi-annual harmonics, or the mean of each calendar "
            "month.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.BEST_BY, self.tr("Best lag by"), options=list(self.BEST_LABELS), defaultValue=0
            ),
            "Which lag is flagged best per group and series: largest |r| (default), largest r or smallest r.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.MIN_PAIRS,
                self.tr("Minimum overlapping months"),
                NumberType.Integer,
                defaultValue=lagcorr.MIN_PAIRS,
                minValue=3,
            ),
            "Lags with fewer overlapping months get NaN r and p (and a warning) instead of a result.",
            advanced=True,
        )
        self.add(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Lagged correlation table"), SourceType.Vector),
            "One row per group, series and lag: n, r, p, lag-1 autocorrelations r1_x and r1_y, n_eff, p_eff, "
            "best_lag flag and a note when a value could not be computed.",
        )
        self.add(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_HTML, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True, createByDefault=True
            ),
            "HTML report shown in the results viewer: series overlay and r-versus-lag plot per group (when "
            "matplotlib is available) and the tables.",
        )

    # ------------------------------------------------------------------ helpers
    def _field(self, parameters, name, context):
        value = parameter_as_fields(self, parameters, name, context)
        return value[0] if value else None

    def _series_fields(self, parameters, context, feedback):
        """The date, X/Y (wide) or variable/value/names (long) fields, checked; a dict of keyword arguments."""
        f = {
            k: self._field(parameters, n, context)
            for k, n in (
                ("date_field", self.DATE_FIELD),
                ("x_field", self.X_FIELD),
                ("y_field", self.Y_FIELD),
                ("variable_field", self.VARIABLE_FIELD),
                ("value_field", self.VALUE_FIELD),
            )
        }
        f["x_name"] = (self.parameterAsString(parameters, self.X_NAME, context) or "").strip() or None
        f["y_name"] = (self.parameterAsString(parameters, self.Y_NAME, context) or "").strip() or None
        if not f["date_field"]:
            raise QgsProcessingException("DATE_FIELD: choose the field holding the dates")
        if f["variable_field"]:
            if f["x_field"] or f["y_field"]:
                feedback.pushInfo("VARIABLE_FIELD is set: long table; X_FIELD/Y_FIELD are ignored")
            if not f["value_field"]:
                raise QgsProcessingException(
                    "VALUE_FIELD: a long table (VARIABLE_FIELD '%s') needs the field "
                    "holding the values" % f["variable_field"]
                )
            if not f["x_name"] or not f["y_name"]:
                raise QgsProcessingException(
                    "X_NAME/Y_NAME: give the values of field '%s' that mark the X and the Y rows" % f["variable_field"]
                )
            f["x_field"] = f["y_field"] = None
        elif not f["x_field"] or not f["y_field"]:
            raise QgsProcessingException(
                "X_FIELD/Y_FIELD: give both fields (wide table) or VARIABLE_FIELD, "
                "VALUE_FIELD, X_NAME and Y_NAME (long table)"
            )
        elif f["x_field"] == f["y_field"]:
            raise QgsProcessingException("X_FIELD and Y_FIELD are the same field '%s'" % f["x_field"])
        return f

    def _log_result(self, result, feedback):
        shown = result.warnings[: self.MAX_MESSAGES]
        if len(result.warnings) > self.MAX_MESSAGES:
            shown.append(
                "... and %d more warnings (see the note column of the table)"
                % (len(result.warnings) - self.MAX_MESSAGES)
            )
        for w in shown:
            self.warn(feedback, w)
        for (grp, ser), part in list(result.table.groupby(["group", "series"], sort=False))[: self.MAX_MESSAGES]:
            best = part[part["best_lag"]]
            if len(best):
                b = best.iloc[0]
                feedback.pushInfo(
                    "%s, %s: best lag %d months, r = %.3f (n = %d, p = %.2g, n_eff = %.1f, "
                    "p_eff = %.2g)" % (grp, ser, b["lag"], b["r"], b["n"], b["p"], b["n_eff"], b["p_eff"])
                )
            else:
                feedback.pushInfo("%s, %s: no lag with enough overlapping months" % (grp, ser))

    def processAlgorithm(self, parameters, context, feedback):
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        fields = self._series_fields(parameters, context, feedback)
        groups = parameter_as_fields(self, parameters, self.GROUP_FIELDS, context) or []
        options = dict(
            max_lag=self.parameterAsInt(parameters, self.MAX_LAG, context),
            negative_lags=self.parameterAsBool(parameters, self.NEGATIVE_LAGS, context),
            series=self.SERIES_VALUES[self.parameterAsEnum(parameters, self.SERIES, context)],
            detrend=self.DETREND_VALUES[self.parameterAsEnum(parameters, self.DETREND, context)],
            base_date=(self.parameterAsString(parameters, self.BASE_DATE, context) or "").strip() or None,
            min_pairs=self.parameterAsInt(parameters, self.MIN_PAIRS, context),
            best_by=self.BEST_VALUES[self.parameterAsEnum(parameters, self.BEST_BY, context)],
        )
        needed = list(
            dict.fromkeys(
                [fields["date_field"]]
                + list(groups)
                + [fields[k] for k in ("x_field", "y_field", "variable_field", "value_field") if fields[k]]
            )
        )
        df = dataframe_from_source(source, needed)
        feedback.pushInfo("%d rows read from %s" % (len(df), source.sourceName()))

        def progress(done, total):
            self.check_canceled(feedback)
            feedback.setProgress(90.0 * done / max(total, 1))

        result = lagcorr.lagged_correlation_table(df, group_fields=groups, progress=progress, **fields, **options)
        self._log_result(result, feedback)
        self.check_canceled(feedback)
        results = {self.OUTPUT: write_table(self, parameters, self.OUTPUT, context, result.table, feedback)}
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html_path:
            write_html_report(
                html_path,
                result,
                title="Lagged correlation: %s vs %s" % (result.x_label, result.y_label),
                parameters={
                    "input": source.sourceName(),
                    "X": result.x_label,
                    "Y": result.y_label,
                    "groups": ", ".join(groups) or "(none)",
                    "lags": "%d .. %d months" % (result.lags[0], result.lags[-1]),
                    "series": options["series"],
                    "detrend": options["detrend"],
                    "base month": options["base_date"] or "first common month",
                    "best lag by": options["best_by"],
                    "minimum overlapping months": options["min_pairs"],
                },
            )
            results[self.OUTPUT_HTML] = html_path
        feedback.setProgress(100)
        return results
