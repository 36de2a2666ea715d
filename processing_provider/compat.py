"""The one place where the plugin bridges QGIS 3.22 → 3.40/3.44 → 4.x (Qt5 → Qt6) API differences.

Everything else in the plugin writes the *new* spelling, e.g. ``SourceType.Raster``,
``NumberType.Double``, ``ParameterFlag.Advanced``, ``GeometryType.Polygon``, ``field("n", FieldType.Double)``.
On QGIS versions that have the ``Qgis.*`` enums (3.30/3.36 and later, and QGIS 4, where the old
unscoped names are gone) these names *are* those enums; on older QGIS they are filled from the old,
fully scoped enums (``QgsProcessing.SourceType.TypeRaster``...), which PyQt5 accepts. Field types use
``QMetaType.Type`` on QGIS >= 3.38 (the ``QVariant.Type`` constructor of ``QgsField`` is deprecated
there and gone with Qt6) and ``QVariant.Type`` before.

``scripts/check_qt6.py`` (run by the test suite) keeps the rest of the code free of unscoped enums;
the fallback lines below are marked ``# qt6-compat:`` for it.
"""

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsCoordinateReferenceSystem,
    QgsField,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType, QVariant

QGIS_VERSION_INT = Qgis.QGIS_VERSION_INT


class _Members:
    """A namespace of enum values under their new (``Qgis.*``) names, built from an older enum."""

    def __init__(self, old_enum, **new_to_old):
        self._names = {}
        for new, old in new_to_old.items():
            value = getattr(old_enum, old, None)
            if value is not None:
                setattr(self, new, value)
                self._names[new] = old

    def __repr__(self):
        return "<compat enum %s>" % ", ".join(sorted(self._names))


def _new_or_old(new_name, old_enum, **new_to_old):
    """``Qgis.<new_name>`` where this QGIS has it, else the old enum's members under the new names.

    ``old_enum`` is a function returning the old enum: it is only looked up on a QGIS without the new one
    (QGIS 4 has dropped many of the old names).
    """
    new = getattr(Qgis, new_name, None)
    return new if new is not None else _Members(old_enum(), **new_to_old)


# Processing (Qgis.* since 3.36)
SourceType = _new_or_old(
    "ProcessingSourceType",
    lambda: QgsProcessing.SourceType,  # qt6-compat: 3.22-3.34 fallback
    MapLayer="TypeMapLayer",
    VectorAnyGeometry="TypeVectorAnyGeometry",
    VectorPoint="TypeVectorPoint",
    VectorLine="TypeVectorLine",
    VectorPolygon="TypeVectorPolygon",
    Raster="TypeRaster",
    File="TypeFile",
    Vector="TypeVector",
    Mesh="TypeMesh",
    Plugin="TypePlugin",
    PointCloud="TypePointCloud",
)
NumberType = _new_or_old(
    "ProcessingNumberParameterType",
    lambda: QgsProcessingParameterNumber.Type,  # qt6-compat: 3.22-3.34 fallback
    Integer="Integer",
    Double="Double",
)
FieldDataType = _new_or_old(
    "ProcessingFieldParameterDataType",
    lambda: QgsProcessingParameterField.DataType,  # qt6-compat: 3.22-3.34 fallback
    Any="Any",
    Numeric="Numeric",
    String="String",
    DateTime="DateTime",
)
ParameterFlag = _new_or_old(
    "ProcessingParameterFlag",
    lambda: QgsProcessingParameterDefinition.Flag,  # qt6-compat: 3.22-3.34 fallback
    Advanced="FlagAdvanced",
    Hidden="FlagHidden",
    Optional="FlagOptional",
    IsModelOutput="FlagIsModelOutput",
)

AlgorithmFlag = _new_or_old(
    "ProcessingAlgorithmFlag",
    lambda: QgsProcessingAlgorithm.Flag,  # qt6-compat: 3.22-3.34 fallback
    HideFromToolbox="FlagHideFromToolbox",
    HideFromModeler="FlagHideFromModeler",
    Deprecated="FlagDeprecated",
    NoThreading="FlagNoThreading",
)

# Geometry, layers, rendering, CRS (Qgis.* since 3.30 / 3.36)
CrsWktVariant = _new_or_old(
    "CrsWktVariant",
    lambda: QgsCoordinateReferenceSystem.WktVariant,  # qt6-compat: 3.22-3.34 fallback
    PreferredGdal="WKT_PREFERRED_GDAL",
    Wkt1Gdal="WKT1_GDAL",
    Wkt2_2019Simplified="WKT2_2019_SIMPLIFIED",
)
GeometryType = _new_or_old(
    "GeometryType",
    lambda: QgsWkbTypes.GeometryType,  # qt6-compat: 3.22-3.28 fallback
    Point="PointGeometry",
    Line="LineGeometry",
    Polygon="PolygonGeometry",
    Unknown="UnknownGeometry",
    Null="NullGeometry",
)
WkbType = _new_or_old(
    "WkbType",
    lambda: QgsWkbTypes.Type,  # qt6-compat: 3.22-3.28 fallback
    NoGeometry="NoGeometry",
    Point="Point",
    LineString="LineString",
    Polygon="Polygon",
    MultiPolygon="MultiPolygon",
)
ShaderInterpolation = _new_or_old(
    "ShaderInterpolationMethod",
    lambda: QgsColorRampShader.Type,  # qt6-compat: 3.22-3.28 fallback
    Linear="Interpolated",
    Discrete="Discrete",
    Exact="Exact",
)
ShaderClassification = _new_or_old(
    "ShaderClassificationMethod",
    lambda: QgsColorRampShader.ClassificationMode,  # qt6-compat: 3.22-3.28 fallback
    Continuous="Continuous",
    EqualInterval="EqualInterval",
    Quantile="Quantile",
)


def _old_layer_type():
    import qgis.core

    return qgis.core.QgsMapLayerType  # qt6-compat: gone from QGIS 4


LayerType = _new_or_old(
    "LayerType",
    _old_layer_type,  # qt6-compat: 3.22-3.28 fallback
    Vector="VectorLayer",
    Raster="RasterLayer",
    Mesh="MeshLayer",
)


# Field types: QMetaType on QGIS >= 3.38, QVariant before (one helper for the whole plugin)
if QGIS_VERSION_INT >= 33800:
    _FIELD_TYPE_OWNER = QMetaType.Type
    _FIELD_TYPE_NAMES = dict(
        Double="Double",
        Int="Int",
        LongLong="LongLong",
        String="QString",
        Bool="Bool",
        Date="QDate",
        DateTime="QDateTime",
    )
else:
    _FIELD_TYPE_OWNER = QVariant  # qt6-compat: 3.22-3.36 fallback (always PyQt5 there: QVariant.Double ...)
    _FIELD_TYPE_NAMES = dict(
        Double="Double", Int="Int", LongLong="LongLong", String="String", Bool="Bool", Date="Date", DateTime="DateTime"
    )
FieldType = _Members(_FIELD_TYPE_OWNER, **_FIELD_TYPE_NAMES)


def field(name, field_type):
    """``QgsField(name, field_type)`` with a ``FieldType.*`` type, without deprecated constructors."""
    return QgsField(str(name), field_type)


def parameter_as_fields(alg, parameters, name, context):
    """Field names of a field parameter: ``parameterAsStrings`` (QGIS >= 3.32), else ``parameterAsFields``."""
    if hasattr(QgsProcessingAlgorithm, "parameterAsStrings"):
        return alg.parameterAsStrings(parameters, name, context)
    return alg.parameterAsFields(parameters, name, context)  # qt6-compat: QGIS < 3.32


def qaction_class():
    """``QAction``: in ``QtGui`` under Qt6, in ``QtWidgets`` under Qt5."""
    try:
        from qgis.PyQt.QtGui import QAction
    except ImportError:
        from qgis.PyQt.QtWidgets import QAction
    return QAction


def pin_model_output_names(model):
    """Keep a model's output parameters named ``childId:output name`` on every QGIS.

    QGIS >= 3.40 creates models with ``internal_version=Version2``, whose outputs are named after a
    "safe" form of their description (``los_velocity``) instead of ``sbas:LOS velocity`` as on 3.22, so
    the same model would take and return different keys depending on the QGIS that built it. Models
    loaded from a file without the key, or with ``Version1``, keep the old names everywhere.
    """
    variant = model.toVariant()
    variant["internal_version"] = "Version1"
    if not model.loadVariant(variant):
        raise RuntimeError("could not reload model %s" % model.name())
    return model


# Raster renderers drawing one band of a multiband raster (what the toolkit's styles use)
ONE_BAND_RENDERERS = ("singlebandpseudocolor", "paletted")  # band() / setBand() before QGIS 3.38


def renderer_band(renderer):
    """The band a one-band raster renderer draws (``inputBand()`` on QGIS >= 3.38, where ``band()`` is
    deprecated), or None for other renderers."""
    if renderer is None or renderer.type() not in ONE_BAND_RENDERERS:
        return None
    return renderer.inputBand() if hasattr(renderer, "inputBand") else renderer.band()  # qt6-compat: < 3.38


def set_renderer_band(renderer, band):
    """Make a one-band renderer draw ``band`` (``setInputBand`` on QGIS >= 3.38, ``setBand`` before)."""
    if hasattr(renderer, "setInputBand"):
        renderer.setInputBand(int(band))
    else:
        renderer.setBand(int(band))  # qt6-compat: QGIS < 3.38
