"""Reading the text parameters that several algorithms share (source lists, unit statements)."""
import re

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
        raise TimeSeriesError("%s: %d unit statements for %d inputs (give one, or one per input)"
                              % (label, len(items), n))
    return items
