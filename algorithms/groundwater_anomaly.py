"""Groundwater storage anomaly by water balance (``subsidence:groundwateranomaly``), Liu et al. (2024) eqs. 10-12."""

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.grace import gwsa, products
from ..core.io.dates import month_from_index
from ..core.io.rasters import RasterWriter, north_up
from ..processing_provider.base import SubsidenceAlgorithm, layer_path
from ..processing_provider.compat import NumberType, SourceType
from ..processing_provider.parameters import add_accept_zero_months, split_specs, unit_specs
from ..processing_provider.rasters import output_raster_path
from ..processing_provider.tables import write_table


def component_name(source, used):
    path, var = products.split_source(source)
    base = var or os.path.splitext(os.path.basename(path))[0]
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in base)[:40] or "component"
    name, i = base, 2
    while name in used or name in ("twsa", "gwsa", "date", "decimal_year"):
        name, i = "%s_%d" % (base, i), i + 1
    used.add(name)
    return name


class GroundwaterAnomaly(SubsidenceAlgorithm):
    TWSA = "TWSA"
    TWSA_UNITS = "TWSA_UNITS"
    COMPONENTS = "COMPONENTS"
    COMPONENT_FILES = "COMPONENT_FILES"
    COMPONENT_UNITS = "COMPONENT_UNITS"
    MODE = "MODE"
    BASELINE_START = "BASELINE_START"
    BASELINE_END = "BASELINE_END"
    MASK = "MASK"
    ACCEPT_ZERO_MONTHS = "ACCEPT_ZERO_MONTHS"
    MEMORY_LIMIT_MB = "MEMORY_LIMIT_MB"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    OUTPUT = "OUTPUT"
    OUTPUT_TABLE = "OUTPUT_TABLE"

    MODES = gwsa.MODES

    NAME = "groundwateranomaly"
    DISPLAY_NAME = "Groundwater storage anomaly (water balance)"
    GROUP = "GRACE and groundwater"
    GROUP_ID = "grace"
    TAGS = (
        "GRACE",
        "GWSA",
        "groundwater",
        "water balance",
        "GLDAS",
        "FLDAS",
        "soil moisture",
        "snow",
        "canopy",
        "TWSA",
        "storage",
    )
    SHORT_HELP = (
        "Groundwater storage from terrestrial water storage by water balance (Liu et al. 2024, Land 13:184, "
        "sec. 2.3.3, eqs. 10-12): TWS = SMS + SWS + SWE + CWS + GWS.\n\n"
        "Anomaly mode: GWSA = TWSA - (soil moisture + surface water + snow + canopy water), every term as the "
        "anomaly against the mean of the same baseline period (default 2004.0-2009.999, the GRACE convention).\n"
        "Change mode (eq. 12): dGWS = dTWS - (dSMS + dSWS + dSWE + dCWS), dX = this month minus the previous "
        "month; a month next to a missing month is NoData (gaps are never bridged).\n\n"
        "Components may lie on their own grids (e.g. GLDAS 0.25 deg canopy, FLDAS 0.1 deg soil moisture): they "
        "are interpolated bilinearly to the TWSA grid. Give their units: kg m-2 = mm; volumetric m3 m-3 x layer "
        "thickness x 1000 (auto from names like SoilMoi10_40cm); cm x 10. Runoff/evaporation rates are not "
        "storages and are refused.\n\n"
        "Outputs: GWSA (mm, one band per TWSA month) and a table with the cos(latitude)-weighted regional means "
        "per month of TWSA, each component and GWSA (inside the mask polygon when given)."
    )

    def initAlgorithm(self, config=None):
        self.add(
            QgsProcessingParameterRasterLayer(self.TWSA, self.tr("TWSA time series")),
            "Terrestrial water storage (anomaly), one band per month, e.g. the output of GRACE weighted "
            "downscaling, or a GRACE mascon variable.",
        )
        self.add(
            QgsProcessingParameterString(self.TWSA_UNITS, self.tr("TWSA units"), defaultValue="auto", optional=True),
            "auto (from the raster's units, mm for toolkit outputs), or mm, cm, kg m-2, m, or a number.",
        )
        self.add(
            QgsProcessingParameterMultipleLayers(
                self.COMPONENTS, self.tr("Storage components"), SourceType.Raster, optional=True
            ),
            "Soil-moisture layers, snow water equivalent, canopy water, surface water: time-series rasters, "
            "each on its own grid.",
        )
        self.add(
            QgsProcessingParameterString(
                self.COMPONENT_FILES, self.tr("Component monthly file lists (optional)"), optional=True, multiLine=True
            ),
            "Further components as monthly file lists, one per line or ';' separated, e.g. "
            'NETCDF:"/data/GLDAS_NOAH025_M.A*.nc4":CanopInt_inst.',
        )
        self.add(
            QgsProcessingParameterString(
                self.COMPONENT_UNITS, self.tr("Component units"), defaultValue="auto", optional=True
            ),
            "One unit statement for all components or one per component (rasters first, then file lists), "
            "comma separated: auto, mm, kg m-2, cm, m, m3 m-3:<layer thickness in m>, or a number.",
        )
        self.add(
            QgsProcessingParameterEnum(
                self.MODE,
                self.tr("Mode"),
                options=["Anomaly against the baseline period", "Month-to-month change (eq. 12)"],
                defaultValue=0,
            ),
            "Anomalies against a baseline mean, or monthly changes dGWS = dTWS - sum dComponents.",
        )
        self.add(
            QgsProcessingParameterNumber(
                self.BASELINE_START, self.tr("Baseline start (decimal year)"), NumberType.Double, optional=True
            ),
            "Start of the baseline period for anomalies (months whose middle falls in the period). Empty "
            "(with the end): 2004.0-2009.999 (GRACE convention) when the data cover it, else the period "
            "of the data.",
            decimals=3,
        )
        self.add(
            QgsProcessingParameterNumber(
                self.BASELINE_END, self.tr("Baseline end (decimal year)"), NumberType.Double, optional=True
            ),
            "End of the baseline period (2009.999 = through December 2009). Empty: see the start.",
            decimals=3,
        )
        self.add(
            QgsProcessingParameterFeatureSource(
                self.MASK, self.tr("Study area polygon (optional)"), [SourceType.VectorPolygon], optional=True
            ),
            "Cells whose centres fall outside the polygons are NoData and left out of the regional means.",
        )
        add_accept_zero_months(self, self.ACCEPT_ZERO_MONTHS)
        self.add_memory_limit(self.MEMORY_LIMIT_MB, help_text=self.MEMORY_HELP_WITH_CACHE)
        self.add_threads()
        self.add_dask_scheduler(self.DASK_SCHEDULER)
        self.add(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("GWSA")),
            "Groundwater storage anomaly (or monthly change), mm, on the TWSA grid, one band per month.",
        )
        self.add(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TABLE,
                self.tr("Regional means per month"),
                SourceType.Vector,
                optional=True,
                createByDefault=False,
            ),
            "Per month: regional mean TWSA, each component and GWSA (mm).",
        )

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.TWSA, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.TWSA))
        twsa_src = layer_path(layer)
        comp_src = [layer_path(lyr) for lyr in self.parameterAsLayerList(parameters, self.COMPONENTS, context)]
        comp_src += split_specs(self.parameterAsString(parameters, self.COMPONENT_FILES, context))
        if not comp_src:
            raise QgsProcessingException("give at least one storage component (COMPONENTS / COMPONENT_FILES)")
        mode = self.MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        given = [parameters.get(n) not in (None, "") for n in (self.BASELINE_START, self.BASELINE_END)]
        if any(given) and not all(given):
            raise QgsProcessingException("give both baseline start and end, or neither (automatic baseline)")
        baseline = (
            (
                self.parameterAsDouble(parameters, self.BASELINE_START, context),
                self.parameterAsDouble(parameters, self.BASELINE_END, context),
            )
            if all(given)
            else None
        )
        out_path = output_raster_path(self, parameters, self.OUTPUT, context)
        tw = products.ProductReader(
            twsa_src, units=self.parameterAsString(parameters, self.TWSA_UNITS, context) or "auto", label=twsa_src
        )
        readers, names = self._components(comp_src, parameters, context, feedback)
        for line in tw.report():
            feedback.pushInfo(line)
        if baseline is None:
            baseline = gwsa.auto_baseline(tw.record_months, [r.record_months for r in readers])
            feedback.pushInfo("baseline (automatic): %.3f-%.3f" % baseline)
        grid = north_up(tw.grid())
        with RasterWriter(
            out_path,
            grid,
            len(tw.months),
            dates=[month_from_index(k) for k in tw.months],
            metadata={
                "KIND": "gwsa",
                "SOURCE_TWSA": twsa_src,
                "COMPONENTS": " + ".join(comp_src),
                "MODE": mode,
                "BASELINE": "%.3f-%.3f" % baseline,
                "METHOD": "water balance, Liu et al. 2024 eqs. 10-12",
            },
            require_data=True,
        ) as writer:
            threads = self.thread_count(parameters, context)
            months, table = gwsa.groundwater_anomaly(
                tw,
                readers,
                mode=mode,
                baseline=baseline,
                mask=self._mask(parameters, context, grid),
                write=lambda r0, b, c0=0: writer.write_block(r0, b.astype("float32", copy=False), c0),
                progress=lambda fraction: self.check_canceled(feedback),
                # one window per thread at a time: each under the cap / threads
                memory_mb=self.parameterAsDouble(parameters, self.MEMORY_LIMIT_MB, context) / threads,
                windows_at_once=threads,
                log=feedback.pushInfo,
                out_dtype="float32",
                names=names,
                accept_zero_months=self.parameterAsBool(parameters, self.ACCEPT_ZERO_MONTHS, context),
                run_tasks=lambda fn, tasks, shared: self.map_blocks(
                    fn, tasks, parameters, context, feedback, self.DASK_SCHEDULER, shared=shared
                ),
            )
        table_id = write_table(self, parameters, self.OUTPUT_TABLE, context, table)
        feedback.setProgress(100)
        return {self.OUTPUT: out_path, self.OUTPUT_TABLE: table_id}

    def _components(self, sources, parameters, context, feedback):
        units = unit_specs(
            self.parameterAsString(parameters, self.COMPONENT_UNITS, context), len(sources), "Component units"
        )
        readers, names, used = [], [], set()
        for src, unit in zip(sources, units):
            reader = products.ProductReader(src, units=unit)
            feedback.pushInfo("component: " + "; ".join(reader.report()))
            readers.append(reader)
            names.append(component_name(src, used))
        return readers, names

    def _mask(self, parameters, context, grid):
        """Boolean mask of the cells whose centres fall inside the MASK polygons, or ``None``."""
        source = self.parameterAsSource(parameters, self.MASK, context)
        if source is None:
            return None
        crs = QgsCoordinateReferenceSystem()
        crs.createFromWkt(grid.projection)
        xform = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        wkts = []
        for f in source.getFeatures():
            geom = f.geometry()
            if not geom.isEmpty():
                geom.transform(xform)
                wkts.append(geom.asWkt())
        if not wkts:
            raise QgsProcessingException("MASK: the layer has no polygon")
        return gwsa.mask_from_wkt(wkts, grid)
