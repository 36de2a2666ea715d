"""Write pandas DataFrames to Processing table outputs (FeatureSink without geometry).

Sinks are written inside the algorithm's output transaction (:mod:`.transaction`): the sink is created
at a staging path, every ``addFeature`` is checked, the number of rows sent is reported to the
transaction, which re-opens the staged file, compares the row count and only then moves it onto the
destination. A write failure fails the run with an error naming the output.
"""

import datetime as _dt
import math
import re

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsProcessingException,
)

from .compat import FieldType, WkbType, field


def fields_for(df):
    """QgsFields matching the DataFrame's columns (float → Double, int → LongLong, bool → Bool, else String)."""
    fields = QgsFields()
    for name in df.columns:
        kind = df[name].dtype.kind
        if kind == "f":
            fields.append(field(name, FieldType.Double))
        elif kind in "iu":
            fields.append(field(name, FieldType.LongLong))
        elif kind == "b":
            fields.append(field(name, FieldType.Bool))
        else:
            fields.append(field(name, FieldType.String))
    return fields


def _value(v):
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.strftime("%Y-%m-%d")
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, str):
        return v
    try:
        if v != v:  # pandas NA/NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


#: OGR layer options of a CSV table: a ``.csvt`` side-car with the column types, so that QGIS (and any OGR
#: reader) reads integer, boolean and real columns back as numbers, not as text (GDAL's CSV driver writes
#: integers quoted, e.g. ``"3"``, and without the side-car every column reads back as a string)
CSV_LAYER_OPTIONS = ["CREATE_CSVT=YES"]
_DBNAME = re.compile(r"""dbname\s*=\s*(?:'([^']*)'|"([^"]*)"|(\S+))""")


def sink_layer_options(destination):
    """OGR layer options for a sink written to ``destination`` (a path, ``path|layername=..`` or an
    ``ogr:dbname='path' table=..`` URI): the CSV ones for a ``.csv`` file, none otherwise."""
    text = str(destination or "")
    uri = _DBNAME.search(text)
    path = next(g for g in uri.groups() if g is not None) if uri else text.split("|")[0]
    return list(CSV_LAYER_OPTIONS) if path.strip().lower().endswith(".csv") else []


def write_features(alg, parameters, name, context, fields, wkb_type, crs, features):
    """Write ``features`` (an iterable of QgsFeature) to the sink output ``name``; returns the destination id
    (or None when the optional output was not requested). Every feature is checked; the count goes to the
    transaction, which verifies the file before moving it onto the destination. A CSV table gets a ``.csvt``
    side-car with its column types (:data:`CSV_LAYER_OPTIONS`)."""
    options = sink_layer_options(alg.parameterAsOutputLayer(parameters, name, context))
    sink, dest_id = alg.parameterAsSink(parameters, name, context, fields, wkb_type, crs, layerOptions=options)
    if sink is None:
        if parameters.get(name) in (None, ""):
            return None
        raise QgsProcessingException(alg.invalidSinkError(parameters, name))
    n = 0
    for f in features:
        if not sink.addFeature(f, QgsFeatureSink.Flag.FastInsert):
            error = sink.lastError() if hasattr(sink, "lastError") else ""
            raise QgsProcessingException(
                "%s: row %d could not be written (%s); is the disk full?"
                % (name, n + 1, (error or "write error").splitlines()[0])
            )
        n += 1
    if hasattr(sink, "flushBuffer") and not sink.flushBuffer():
        raise QgsProcessingException("%s: the rows could not be written (%s)" % (name, sink.lastError()))
    del sink
    if hasattr(alg, "expect_rows"):
        alg.expect_rows(name, n)
    return dest_id


def write_table(alg, parameters, name, context, df, feedback=None):
    """Write ``df`` to the table output ``name``; returns the destination id (or None if not requested)."""
    fields = fields_for(df)

    def features():
        for row in df.itertuples(index=False, name=None):
            f = QgsFeature(fields)
            f.setAttributes([_value(v) for v in row])
            yield f

    return write_features(
        alg, parameters, name, context, fields, WkbType.NoGeometry, QgsCoordinateReferenceSystem(), features()
    )


def dataframe_from_source(source, fields=None):
    """Read a QgsFeatureSource's attributes into a pandas DataFrame (NULL → None/NaN)."""
    import pandas as pd

    names = fields or [f.name() for f in source.fields()]
    idx = [source.fields().lookupField(n) for n in names]
    for n, i in zip(names, idx):
        if i < 0:
            raise QgsProcessingException("field %r not found in %s" % (n, source.sourceName()))
    rows = []
    for feat in source.getFeatures():
        attrs = feat.attributes()
        rows.append([_plain(attrs[i]) for i in idx])
    return pd.DataFrame(rows, columns=names)


def _plain(v):
    """QVariant-ish attribute → plain Python (NULL → None, QDate → date)."""
    if v is None:
        return None
    if hasattr(v, "isNull") and v.isNull():
        return None
    if hasattr(v, "toPyDate"):
        return v.toPyDate()
    if hasattr(v, "toPyDateTime"):
        return v.toPyDateTime()
    return v
