"""Write pandas DataFrames to Processing table outputs (FeatureSink without geometry).

Call :func:`write_table` only once all results are computed, so a failed run
never leaves a half-written table behind.
"""
import datetime as _dt
import math

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant


def fields_for(df):
    """QgsFields matching the DataFrame's columns (float → Double, int → LongLong, bool → Bool, else String)."""
    fields = QgsFields()
    for name in df.columns:
        kind = df[name].dtype.kind
        if kind == "f":
            fields.append(QgsField(str(name), QVariant.Double))
        elif kind in "iu":
            fields.append(QgsField(str(name), QVariant.LongLong))
        elif kind == "b":
            fields.append(QgsField(str(name), QVariant.Bool))
        else:
            fields.append(QgsField(str(name), QVariant.String))
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


def write_table(alg, parameters, name, context, df, feedback=None):
    """Write ``df`` to the table output ``name``; returns the destination id (or None if not requested)."""
    fields = fields_for(df)
    sink, dest_id = alg.parameterAsSink(
        parameters, name, context, fields, QgsWkbTypes.NoGeometry, QgsCoordinateReferenceSystem()
    )
    if sink is None:
        if parameters.get(name) in (None, ""):
            return None
        raise QgsProcessingException(alg.invalidSinkError(parameters, name))
    columns = list(df.columns)
    for row in df.itertuples(index=False, name=None):
        f = QgsFeature(fields)
        f.setAttributes([_value(v) for v in row])
        sink.addFeature(f, QgsFeatureSink.FastInsert)
    del sink
    return dest_id


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
