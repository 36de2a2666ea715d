"""Dates of the toolkit: parsing, CF time decoding, month indices and decimal years.

Accepted text forms are ``YYYY-MM-DD``, ``YYYYMMDD`` and ``DYYYYMMDD``; NetCDF time values decode
with their ``units`` attribute (``days since 2002-01-01``). Monthly series are keyed by calendar
month (:func:`month_index`), and monthly dates fall on the 15th by default (:func:`month_from_index`).
"""

import datetime as _dt
import math
import re

import numpy as np

from .errors import TimeSeriesError

DATE_FORMAT = "%Y-%m-%d"

_DATE_PATTERNS = (
    re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?\s*$"),
    re.compile(r"^\s*[Dd]?_?(\d{4})(\d{2})(\d{2})\s*$"),
)
_NC_UNITS = re.compile(
    r"^\s*(seconds?|minutes?|hours?|days?|months?|years?)\s+since\s+"
    r"(\d{1,4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?",
    re.IGNORECASE,
)


def parse_date(text):
    """Parse ``YYYY-MM-DD``, ``YYYYMMDD`` or ``DYYYYMMDD`` (also ``D_YYYYMMDD``).

    Returns a :class:`datetime.date`, or ``None`` when the text is not a date.
    """
    if text is None:
        return None
    if isinstance(text, _dt.datetime):
        return text.date()
    if isinstance(text, _dt.date):
        return text
    s = str(text).strip()
    for pat in _DATE_PATTERNS:
        m = pat.match(s)
        if m:
            try:
                return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                return None
    return None


def format_date(d):
    """The canonical text of a date, ``YYYY-MM-DD``."""
    return d.strftime(DATE_FORMAT)


def decode_cf_time(value, units):
    """Decode a CF time value such as ``107.5`` with ``days since 2002-01-01``.

    Returns a :class:`datetime.datetime` (proleptic Gregorian). ``months since``
    and ``years since`` are calendar offsets (fractional parts are
    days of the month / year), as GRACE/GLDAS products use them.
    """
    m = _NC_UNITS.match(units or "")
    if not m:
        raise TimeSeriesError("time units %r are not of the form '<unit> since YYYY-MM-DD'" % units)
    unit = m.group(1).lower().rstrip("s")
    base = _dt.datetime(
        int(m.group(2)),
        int(m.group(3)),
        int(m.group(4)),
        int(m.group(5) or 0),
        int(m.group(6) or 0),
        int(float(m.group(7) or 0)),
    )
    v = float(value)
    if unit in ("second", "minute", "hour", "day"):
        scale = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}[unit]
        return base + _dt.timedelta(seconds=v * scale)
    if unit == "month":
        whole = int(math.floor(v))
        total = base.year * 12 + (base.month - 1) + whole
        y, mo = divmod(total, 12)
        start = base.replace(year=y, month=mo + 1, day=min(base.day, 28))
        return start + _dt.timedelta(days=(v - whole) * days_in_month(y, mo + 1))
    whole = int(math.floor(v))
    start = base.replace(year=base.year + whole)
    return start + _dt.timedelta(days=(v - whole) * (366 if _is_leap(start.year) else 365))


def _is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_in_month(year, month):
    """Number of days of a calendar month."""
    if month == 12:
        return 31
    return (_dt.date(year, month + 1, 1) - _dt.date(year, month, 1)).days


def month_index(d):
    """Calendar-month key: ``12 * year + (month - 1)``. Monthly series are keyed by it."""
    return d.year * 12 + d.month - 1


def month_from_index(k, day=15):
    """Inverse of :func:`month_index` (date on ``day`` of that month)."""
    y, m = divmod(int(k), 12)
    return _dt.date(y, m + 1, min(day, days_in_month(y, m + 1)))


def decimal_year(d):
    """Decimal year of a date (``2020-07-02`` -> ~2020.5)."""
    start = _dt.date(d.year, 1, 1)
    n = 366 if _is_leap(d.year) else 365
    return d.year + (d - start).days / n


def days_since(dates, origin=None):
    """Days of each date since ``origin`` (default: the first date) as float64 array."""
    dates = list(dates)
    origin = origin or dates[0]
    return np.array([(d - origin).days for d in dates], dtype=np.float64)


def validate_dates(dates, source="input"):
    """Check a date list: at least two, no duplicates, strictly increasing.

    Raises :class:`TimeSeriesError` naming ``source`` and the offending band
    (1-based) and date.
    """
    if len(dates) < 2:
        raise TimeSeriesError("%s: a time series needs at least two dates, found %d" % (source, len(dates)))
    seen = {}
    for i, d in enumerate(dates):
        if d in seen:
            raise TimeSeriesError(
                "%s: duplicate date %s in band %d (already in band %d)" % (source, format_date(d), i + 1, seen[d] + 1)
            )
        seen[d] = i
    for i in range(1, len(dates)):
        if dates[i] <= dates[i - 1]:
            raise TimeSeriesError(
                "%s: dates are not in increasing order: band %d (%s) comes after band %d (%s)"
                % (source, i + 1, format_date(dates[i]), i, format_date(dates[i - 1]))
            )
    return list(dates)


def month_label(k):
    """``YYYY-MM`` of a month index (:func:`month_index`)."""
    d = month_from_index(k)
    return "%04d-%02d" % (d.year, d.month)
