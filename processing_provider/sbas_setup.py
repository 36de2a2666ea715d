"""The SBAS inversion's parameters read into what the core driver takes (``subsidence:sbasinversion``).

Helpers of :mod:`..algorithms.sbas_inversion` so that its ``processAlgorithm`` stays: parameters -> one core
call (:func:`..core.insar.sbas_stack.invert_stack`) -> outputs. Each takes the algorithm (``alg``: its parameter
ids and ``parameterAs*``) and returns plain values; the core never sees QGIS.
"""

import os
import tempfile

from qgis.core import QgsCoordinateReferenceSystem

from ..algorithms.project_los import geometry_spec
from ..core.insar import corrections, deramp, gacos, geometry, sbas_stack
from ..core.insar.reference import pixel_of
from ..core.io.dates import format_date
from ..core.io.errors import TimeSeriesError
from ..core.io.lazy import lazy_module
from ..core.reports.network_report import write_html_report as write_network_report
from .base import layer_path
from .rasters import output_raster_path
from .tables import write_table

pd = lazy_module("pandas")


def _incidence_spec(alg, parameters, context):
    return geometry_spec(alg, parameters, context, alg.INCIDENCE, alg.INCIDENCE_TYPE, alg.INCIDENCE_ANGLE)


def stack_selection(alg, parameters, context):
    """Keyword arguments of :func:`..core.insar.stack.prepare_stack` that select and read the network."""
    exclude = [
        s.strip()
        for s in (alg.parameterAsString(parameters, alg.EXCLUDE, context) or "")
        .replace(";", ",")
        .replace("\n", ",")
        .split(",")
        if s.strip()
    ]
    return dict(
        max_temporal_baseline=alg.parameterAsDouble(parameters, alg.MAX_TEMPORAL_BASELINE, context) or None,
        max_perp_baseline=alg.parameterAsDouble(parameters, alg.MAX_PERP_BASELINE, context) or None,
        exclude=exclude,
        product=alg.PRODUCTS[alg.parameterAsEnum(parameters, alg.PRODUCT, context)],
        extent=alg.EXTENTS[alg.parameterAsEnum(parameters, alg.EXTENT, context)],
        crs_mode=alg.CRS_MODES[alg.parameterAsEnum(parameters, alg.DIFFERENT_CRS, context)],
    )


def given_incidence(alg, parameters, context, vertical, folder):
    """The incidence geometry given for a vertical output (None: not vertical, or the products' own, found once the
    stack is open)."""
    given = any(parameters.get(k) not in (None, "") for k in (alg.INCIDENCE, alg.INCIDENCE_ANGLE))
    return _incidence_spec(alg, parameters, context) if vertical and (given or not folder) else None


def product_geometry(alg, parameters, context, stack, velocity_path, incidence, vertical, log):
    """The products' own incidence (LiCSAR U, HyP3 lv_theta) where it is needed: for OUTPUT_INCIDENCE, or for a
    vertical output without a given geometry (written next to the velocity as a hidden intermediate file).

    Returns ``(incidence, incidence_layer, product_incidence_path, output_incidence_path)``."""
    incidence_layer, product_incidence = None, None
    inc_path = (
        output_raster_path(alg, parameters, alg.OUTPUT_INCIDENCE, context)
        if parameters.get(alg.OUTPUT_INCIDENCE)
        else None
    )
    if inc_path or (vertical and incidence is None):
        incidence_layer = stack.products.geometry("incidence")  # checked before the inversion
        log("incidence angle from the products: %s" % incidence_layer.describe())
    if vertical and incidence is None:
        product_incidence = os.path.join(
            os.path.dirname(velocity_path), ".%s.incidence.tif" % os.path.basename(velocity_path)
        )
        incidence = dict(path=incidence_layer.write(product_incidence), kind=geometry.KIND_INCIDENCE, angle=None)
    return incidence, incidence_layer, product_incidence, inc_path


def log_network(stack, log):
    """One line on the network used, then one line per interferogram not used and why."""
    net = stack.network
    log(
        "%d interferograms, %d used, %d dates %s .. %s, network gaps: %d"
        % (
            len(stack.all_paths),
            net.n_ifg,
            net.n_dates,
            format_date(net.dates[0]),
            format_date(net.dates[-1]),
            int(net.n_gaps()[0]),
        )
    )
    for name, why in zip(stack.network_all.names, stack.reasons):
        if why:
            log("not used: %s (%s)" % (name, why))


def reference_pixel(alg, parameters, context, grid):
    """(row, col) of REFERENCE_POINT on ``grid`` (None: automatic); a point outside the grid is an error."""
    if parameters.get(alg.REFERENCE_POINT) in (None, ""):
        return None
    crs = QgsCoordinateReferenceSystem()
    if grid.projection:
        crs = QgsCoordinateReferenceSystem.fromWkt(grid.projection)
    pt = alg.parameterAsPoint(parameters, alg.REFERENCE_POINT, context, crs)
    reference = pixel_of(grid, pt.x(), pt.y())
    if reference is None:
        raise TimeSeriesError(
            "the reference point (%.6g, %.6g) lies outside the interferograms (%s)" % (pt.x(), pt.y(), grid.describe())
        )
    return reference


def sbas_options(alg, parameters, context, stack, weighting):
    """:class:`..core.insar.sbas_stack.SbasOptions` from the parameters, and a temporary folder to remove after the
    run (the deramp mask rasterised on the stack grid; None without a mask)."""
    reference = reference_pixel(alg, parameters, context, stack.grid)
    gacos_files = [f for f in (alg.parameterAsFileList(parameters, alg.GACOS, context) or []) if f]
    gacos_incidence = _incidence_spec(alg, parameters, context) if gacos_files else None
    deramp_mode = alg.DERAMPS[alg.parameterAsEnum(parameters, alg.DERAMP, context)]
    mask_layer = alg.parameterAsLayer(parameters, alg.DERAMP_MASK, context)
    tmpdir = None
    mask_path = None
    if mask_layer is not None and deramp_mode != deramp.DERAMP_NONE:
        tmpdir = tempfile.mkdtemp(prefix="sbas_deramp_mask_")
        mask_path = corrections.mask_on_grid(
            layer_path(mask_layer), stack.grid, os.path.join(tmpdir, "deramp_mask.tif")
        )
    options = sbas_stack.SbasOptions(
        input_units=alg.UNITS[alg.parameterAsEnum(parameters, alg.INPUT_UNITS, context)],
        wavelength=alg.parameterAsDouble(parameters, alg.WAVELENGTH, context),
        flip_sign=alg.parameterAsBoolean(parameters, alg.FLIP_SIGN, context),
        weighting=weighting,
        looks=alg.parameterAsInt(parameters, alg.LOOKS, context),
        min_coherence=alg.parameterAsDouble(parameters, alg.MIN_COHERENCE, context),
        gap_handling=alg.GAPS[alg.parameterAsEnum(parameters, alg.GAP_HANDLING, context)],
        reference=reference,
        reference_half_window=(alg.parameterAsInt(parameters, alg.REFERENCE_WINDOW, context) - 1) // 2,
        seasonal=alg.parameterAsBoolean(parameters, alg.SEASONAL, context),
        memory_mb=alg.parameterAsDouble(parameters, alg.MEMORY_LIMIT_MB, context),
        loop_closure=alg.parameterAsEnum(parameters, alg.LOOP_CLOSURE, context),
        loop_threshold=alg.parameterAsDouble(parameters, alg.LOOP_THRESHOLD, context),
        deramp=deramp_mode,
        deramp_mask=mask_path,
        gacos=tuple(gacos_files),
        incidence=gacos_incidence["path"] if gacos_incidence else None,
        incidence_type=gacos.INCIDENCE_UP
        if gacos_incidence and gacos_incidence["kind"] == geometry.KIND_UP
        else gacos.INCIDENCE_ANGLE,
        incidence_angle=gacos_incidence["angle"]
        if gacos_incidence and gacos_incidence["angle"] is not None
        else gacos.DEFAULT_INCIDENCE_ANGLE,
        gacos_tolerance=alg.parameterAsDouble(parameters, alg.GACOS_TOLERANCE, context) / 100.0,
        gacos_skip_missing=alg.parameterAsBoolean(parameters, alg.GACOS_SKIP_MISSING, context),
        threads=alg.thread_count(parameters, context),
    )
    return options, tmpdir


def write_outputs(alg, parameters, context, outs, summary, incidence_layer, inc_path):
    """The results dict: the three rasters, the network table and figure, the products' incidence."""
    results = {alg.OUTPUT_TIMESERIES: outs[0], alg.OUTPUT_VELOCITY: outs[1], alg.OUTPUT_QUALITY: outs[2]}
    dest = write_table(alg, parameters, alg.OUTPUT_NETWORK, context, pd.DataFrame(summary["network_rows"]))
    if inc_path:
        results[alg.OUTPUT_INCIDENCE] = incidence_layer.write(inc_path)
    if dest is not None:
        results[alg.OUTPUT_NETWORK] = dest
    network_html = alg.parameterAsFileOutput(parameters, alg.OUTPUT_NETWORK_HTML, context)
    if network_html:
        results[alg.OUTPUT_NETWORK_HTML] = write_network_report(network_html, pd.DataFrame(summary["network_rows"]))
    return results


def reference_text(summary):
    return "reference pixel row %d col %d (x %.10g, y %.10g); %d pixels, %d with gaps" % (
        summary["reference"][0],
        summary["reference"][1],
        summary["reference_xy"][0],
        summary["reference_xy"][1],
        summary["n_pixels"],
        summary["n_pixels_with_gaps"],
    )
