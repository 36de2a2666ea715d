"""Interferogram pair dates: from file names (LiCSAR, HyP3) or a pairs CSV, matched to the files."""

import csv
import os
import re

from ..io.dates import parse_date
from ..io.errors import TimeSeriesError

_PAIR_RE = re.compile(r"(?<!\d)(\d{8})(?:T(\d{6}))?(?!\d)")


def pair_from_name(name):
    """The (reference, secondary) dates of an interferogram file name, or None.

    The first two 8-digit ``YYYYMMDD`` groups (optionally followed by
    ``Thhmmss``) that are valid dates: LiCSAR ``20200103_20200115.geo.unw.tif``,
    HyP3 ``S1AA_20200103T054123_20200115T054122_VVP012_INT80_G_ueF_1A2B_unw_phase.tif``.
    """
    base = os.path.basename(str(name))
    found = []
    for m in _PAIR_RE.finditer(base):
        d = parse_date(m.group(1))
        if d is not None:
            found.append(d)
        if len(found) == 2:
            return found[0], found[1]
    return None


def pairs_from_names(names):
    """Date pairs of every file name; the error lists every name without two dates."""
    out, bad = [], []
    for n in names:
        p = pair_from_name(n)
        if p is None:
            bad.append(os.path.basename(str(n)))
        out.append(p)
    if bad:
        raise TimeSeriesError(
            "no reference and secondary date (two YYYYMMDD groups) in the file name of: %s; "
            "rename the files or give a pairs CSV" % ", ".join(bad)
        )
    return out


_FILE_COLS = ("file", "filename", "file_name", "path", "name", "interferogram", "ifg")
_REF_COLS = ("reference", "reference_date", "ref", "ref_date", "date1", "primary", "master", "date_ref")
_SEC_COLS = ("secondary", "secondary_date", "sec", "sec_date", "date2", "slave", "date_sec")
_BPERP_COLS = ("bperp", "perp_baseline", "perpendicular_baseline", "b_perp", "baseline", "perp")


def read_pairs_csv(path):
    """Read a pairs CSV: file name or path, reference date, secondary date, optional Bperp (m).

    Columns are found by header name (``file``, ``reference``/``date1``,
    ``secondary``/``date2``, ``bperp``) or, without a recognised header, by
    position. Returns a list of dicts ``{file, date1, date2, bperp}``.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(f, dialect) if any(c.strip() for c in r)]
    if not rows:
        raise TimeSeriesError("pairs CSV %s is empty" % path)
    head = [c.strip().lower() for c in rows[0]]

    def find(names):
        for i, h in enumerate(head):
            if h in names:
                return i
        return None

    fi, ri, si, bi = find(_FILE_COLS), find(_REF_COLS), find(_SEC_COLS), find(_BPERP_COLS)
    if fi is not None and ri is not None and si is not None:
        body = rows[1:]
    else:
        fi, ri, si = 0, 1, 2
        bi = 3 if len(rows[0]) > 3 else None
        body = rows[1:] if parse_date(rows[0][1].strip() if len(rows[0]) > 1 else "") is None else rows
    out = []
    for n, r in enumerate(body, start=2 if body is not rows else 1):
        if len(r) <= max(fi, ri, si):
            raise TimeSeriesError("pairs CSV %s line %d: expected file, reference date, secondary date" % (path, n))
        d1, d2 = parse_date(r[ri].strip()), parse_date(r[si].strip())
        if d1 is None or d2 is None:
            raise TimeSeriesError(
                "pairs CSV %s line %d: %r / %r are not dates (YYYY-MM-DD or YYYYMMDD)" % (path, n, r[ri], r[si])
            )
        bp = None
        if bi is not None and bi < len(r) and r[bi].strip():
            try:
                bp = float(r[bi])
            except ValueError:
                raise TimeSeriesError(
                    "pairs CSV %s line %d: perpendicular baseline %r is not a number" % (path, n, r[bi])
                ) from None
        out.append({"file": r[fi].strip(), "date1": d1, "date2": d2, "bperp": bp})
    return out


def match_pairs_csv(files, table, source="PAIRS"):
    """Look up each interferogram file in a pairs table (by path, base name or stem)."""

    def keys(p):
        b = os.path.basename(str(p))
        return {str(p), b, b.split(".")[0], os.path.splitext(b)[0]}

    index = {}
    for row in table:
        for k in keys(row["file"]):
            index.setdefault(k, row)
    out, missing = [], []
    for f in files:
        row = next(
            (
                index[k]
                for k in (
                    str(f),
                    os.path.basename(str(f)),
                    os.path.splitext(os.path.basename(str(f)))[0],
                    os.path.basename(str(f)).split(".")[0],
                )
                if k in index
            ),
            None,
        )
        if row is None:
            missing.append(os.path.basename(str(f)))
        out.append(row)
    if missing:
        raise TimeSeriesError("%s has no row for: %s" % (source, ", ".join(missing)))
    return out
