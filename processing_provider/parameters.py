"""Reading the text parameters that several algorithms share (source lists, unit statements)."""

import re

from qgis.core import QgsProcessingParameterBoolean

from ..core.io.errors import TimeSeriesError


def split_specs(text):
    """``;`` or newline separated source specs (paths, ``NETCDF:"glob":var``)."""
    return [s.strip() for s in re.split(r"[;\n]", text or "") if s.strip()]


def unit_specs(text, n, label):
    """Comma-separated unit statements, one per input or one for all (default ``auto``)."""
    items = [s.strip() for s in (text or "").split(",") if s.strip()] or ["auto"]
    if len(items) == 1:
        return items * n
    if len(items) != n:
        raise TimeSeriesError(
            "%s: %d unit statements for %d inputs (give one, or one per input)" % (label, len(items), n)
        )
    return items


def add_accept_zero_months(alg, name):
    """The switch that accepts a monthly file month reading all 0 between normal months (GRACE/model readers)."""
    alg.add(
        QgsProcessingParameterBoolean(name, alg.tr("Accept all-zero months"), defaultValue=False, optional=True),
        "Off (default): a file month whose values over the area read are all exactly 0 (or all "
        "fill/NoData) while the months before and after are not stops the run with an error naming the "
        "file, variable and month: such a month is almost always a damaged or incompletely converted "
        "download that would otherwise be used as 0 mm; download that file again. Turn this on only if the "
        "zero month is real (it is then used and reported as a warning). Variables that are zero in every "
        "month (snow in a desert) or through a season are never flagged.",
        advanced=True,
    )
