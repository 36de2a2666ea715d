"""processing_provider.compat: the QGIS 3.22 -> 4.x bridge gives the same behaviour on every QGIS."""

import warnings

import pytest

# The shipped model's outputs, as saved command lines and the demo use them (README, "Algorithms").
WORKFLOW_OUTPUTS = sorted(
    [
        "sbas:LOS displacement time series",
        "sbas:LOS velocity",
        "sbas:SBAS quality",
        "sbas:Interferogram network",
        "monthly:Monthly displacement",
        "downscaling:Downscaled TWSA",
        "gwsa:GWSA",
        "classes:Class sample points",
        "classes:Class time series",
        "lag:Lagged correlation",
        "lag:Lagged correlation report",
        "geodetector:Geodetector factors",
        "geodetector:Geodetector interactions",
        "geodetector:Geodetector report",
        "report:Workflow report",
    ]
)


def test_enums_are_the_ones_qgis_uses(qgis_app):
    from qgis.core import (
        QgsProcessingParameterField,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterDestination,
        QgsProcessingParameterVectorLayer,
    )

    from subsidence_toolkit.processing_provider import compat

    number = QgsProcessingParameterNumber("N", "n", compat.NumberType.Double)
    assert number.dataType() == compat.NumberType.Double != compat.NumberType.Integer
    field = QgsProcessingParameterField("F", "f", type=compat.FieldDataType.Numeric)
    assert field.dataType() == compat.FieldDataType.Numeric
    layer = QgsProcessingParameterVectorLayer("L", "l", [compat.SourceType.VectorPolygon])
    assert list(layer.dataTypes()) == [compat.SourceType.VectorPolygon]
    dest = QgsProcessingParameterRasterDestination("R", "r")
    dest.setFlags(dest.flags() | compat.ParameterFlag.Advanced)
    assert dest.flags() & compat.ParameterFlag.Advanced
    assert not dest.flags() & compat.ParameterFlag.Optional


def test_fields_have_their_types_without_deprecation_warnings(qgis_app):
    from qgis.core import QgsFields

    from subsidence_toolkit.processing_provider import compat
    from subsidence_toolkit.processing_provider.tables import fields_for

    pd = pytest.importorskip("pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        fields = fields_for(pd.DataFrame({"f": [1.5], "i": [2], "b": [True], "s": ["x"]}))
        assert isinstance(fields, QgsFields)
        got = [(fields.at(i).name(), fields.at(i).type()) for i in range(fields.count())]
        assert got == [
            ("f", compat.FieldType.Double),
            ("i", compat.FieldType.LongLong),
            ("b", compat.FieldType.Bool),
            ("s", compat.FieldType.String),
        ]


def _chain_model():
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("pinned", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("stack", "stack"), QgsProcessingModelParameter("stack"))
    child = QgsProcessingModelChildAlgorithm("subsidence:resampletimeseries")
    child.setChildId("monthly")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("stack")])
    out = QgsProcessingModelOutput("Final series", "Final series")
    out.setChildOutputName("OUTPUT")
    out.setChildId("monthly")
    child.setModelOutputs({"Final series": out})
    model.addChildAlgorithm(child)
    return model


def test_pinned_model_names_outputs_child_colon_name_on_every_qgis(qgis_app, tmp_path):
    from qgis.core import QgsProcessingModelAlgorithm

    from subsidence_toolkit.processing_provider.compat import pin_model_output_names

    model = pin_model_output_names(_chain_model())
    assert [p.name() for p in model.destinationParameterDefinitions()] == ["monthly:Final series"]
    path = tmp_path / "pinned.model3"
    assert model.toFile(str(path))
    again = QgsProcessingModelAlgorithm()
    assert again.fromFile(str(path))
    assert [p.name() for p in again.destinationParameterDefinitions()] == ["monthly:Final series"]


def test_shipped_workflow_output_names(qgis_app):
    from qgis.core import QgsApplication

    model = QgsApplication.processingRegistry().algorithmById("subsidence:workflow")
    assert sorted(p.name() for p in model.destinationParameterDefinitions()) == WORKFLOW_OUTPUTS
    assert sorted(o.name() for o in model.outputDefinitions()) == WORKFLOW_OUTPUTS


@pytest.mark.parametrize("regional", [False, True])
def test_rebuilt_models_keep_the_shipped_output_names(qgis_app, regional):
    """scripts/build_workflow_model.py on this QGIS gives the output names of the shipped files, all
    ``child:Output name``."""
    import importlib.util
    import re
    from pathlib import Path

    from qgis.core import QgsApplication

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("build_workflow_model", root / "scripts" / "build_workflow_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build(regional)  # keep the model alive while its parameter definitions are read
    rebuilt = sorted(p.name() for p in model.destinationParameterDefinitions())
    shipped = QgsApplication.processingRegistry().algorithmById(
        "subsidence:workflowregional" if regional else "subsidence:workflow"
    )
    assert rebuilt == sorted(p.name() for p in shipped.destinationParameterDefinitions())
    assert rebuilt and all(re.match(r"^[a-z_]+:[A-Z]", name) for name in rebuilt), rebuilt
    if not regional:
        assert rebuilt == WORKFLOW_OUTPUTS


def test_parameter_as_fields(qgis_app):
    from qgis.core import QgsProcessingContext, QgsProcessingParameterField

    from subsidence_toolkit.algorithms.lagged_correlation import LaggedCorrelation
    from subsidence_toolkit.processing_provider.compat import parameter_as_fields

    alg = LaggedCorrelation()
    alg.initAlgorithm()
    assert isinstance(alg.parameterDefinition(alg.GROUP_FIELDS), QgsProcessingParameterField)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        got = parameter_as_fields(alg, {alg.GROUP_FIELDS: ["area", "class"]}, alg.GROUP_FIELDS, QgsProcessingContext())
    assert list(got) == ["area", "class"]
