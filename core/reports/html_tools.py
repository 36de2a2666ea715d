"""Shared pieces of the HTML reports (no QGIS): number formatting, tables, embedded figures, pages.

* p-values in scientific notation below 0.001, ``p < 1e-300`` for a p that underflowed to 0;
* NaN / missing shown as an em dash "—" (each table that has one gets a footnote saying why);
* long break lists shown compactly (first … last, count) with the full list in a collapsible cell;
* figures embedded as PNG (base64) and never wider than the page (CSS ``max-width:100%``).
"""

import base64
import html
import io
import math
import os

import numpy as np

DASH = "\u2014"
P_FLOOR = 1e-300
PAGE_CSS = (
    "body{font-family:sans-serif;font-size:14px;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}"
    "img{max-width:100%;height:auto}"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top;white-space:nowrap}"
    "th{background:#eee}td.t{text-align:left;white-space:normal}"
    "details{white-space:normal;max-width:30em}summary{white-space:nowrap}"
    "tr.sig td{background:#e8f5e9}tr.warnrow td{background:#fff3e0}"
    "details summary{cursor:pointer}.note{color:#555;font-size:12px}.warn{color:#a40}"
    ".scroll{overflow-x:auto;max-width:100%}"
)


def is_missing(v):
    if v is None or (isinstance(v, str) and v.strip() in ("", "NULL")):
        return True
    try:
        return bool(isinstance(v, (float, np.floating)) and math.isnan(v))
    except TypeError:
        return False


def number_or_text(v):
    """``(float, None)`` for a number; ``(None, text)`` for an integer (its digits) or for what is not a number
    (escaped). Booleans and missing values are the caller's to show."""
    if isinstance(v, (int, np.integer)):
        return None, str(int(v))
    try:
        return float(v), None
    except (TypeError, ValueError):
        return None, html.escape(str(v))


def fmt_number(v, digits=4):
    """Numbers with ``digits`` significant digits; integers as integers; NaN/None as an em dash."""
    if is_missing(v):
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    f, text = number_or_text(v)
    if text is not None:
        return text
    if math.isnan(f):
        return DASH
    if f != 0 and 10**digits <= abs(f) < 1e6:
        return "%.0f" % f
    if f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e6):
        return "%.*e" % (max(digits - 2, 1), f)
    return ("%%.%dg" % digits) % f


def fmt_p(p):
    """A p-value: ``0.0123``, ``3.4e-07``, ``< 1e-300`` (a p that underflowed to 0), em dash for NaN."""
    if is_missing(p):
        return DASH
    try:
        p = float(p)
    except (TypeError, ValueError):
        return html.escape(str(p))
    if math.isnan(p):
        return DASH
    if p < P_FLOOR:
        return "&lt; 1e-300"
    if p < 1e-3:
        return "%.1e" % p
    return "%.3g" % p


def fmt_breaks(text, digits=4, show=3):
    """Compact breaks: ``"12.3 … 88.1 (19 breaks)"`` with every value in a collapsible ``<details>``."""
    if is_missing(text) or text == "":
        return DASH
    parts = [p for p in str(text).replace(",", ";").split(";") if p.strip()]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        return html.escape(str(text))
    short = [("%%.%dg" % digits) % v for v in vals]
    if len(short) <= show:
        return ", ".join(short)
    return "<details><summary>%s\u2009\u2026\u2009%s (%d breaks)</summary>%s</details>" % (
        short[0],
        short[-1],
        len(short),
        ", ".join(short),
    )


def table(df, formats=None, p_columns=(), text_columns=(), row_class=None, missing_note=None, max_rows=None):
    """An HTML table of a DataFrame.

    ``formats``: {column: callable(value) -> html}; ``p_columns`` use :func:`fmt_p`; other numbers
    :func:`fmt_number`; ``text_columns`` are left-aligned; ``row_class(row) -> css class or ""``.
    When any cell is missing, ``missing_note`` (or a default) is printed under the table.
    """
    formats = dict(formats or {})
    rows = df if max_rows is None else df.head(max_rows)
    out = ["<div class='scroll'><table><tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(str(c)) for c in df.columns)]
    any_missing = False
    for _, r in rows.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            if is_missing(v):
                any_missing = True
            if c in formats:
                s = formats[c](v)
            elif c in p_columns:
                s = fmt_p(v)
            elif isinstance(v, str):
                s = html.escape(v)
            else:
                s = fmt_number(v)
            left = c in text_columns or isinstance(v, str)
            cells.append("<td%s>%s</td>" % (" class='t'" if left else "", s))
        cls = row_class(r) if row_class else ""
        out.append("<tr%s>%s</tr>" % (" class='%s'" % cls if cls else "", "".join(cells)))
    out.append("</table></div>")
    if max_rows is not None and len(df) > max_rows:
        out.append("<p class='note'>First %d of %d rows (the output table has all).</p>" % (max_rows, len(df)))
    if any_missing:
        out.append("<p class='note'>%s %s</p>" % (DASH, html.escape(missing_note or "not computed or not defined")))
    return "\n".join(out)


def figure_png(fig, dpi=90, max_width_px=1000):
    """A matplotlib Figure as an ``<img>`` tag (base64 PNG) no wider than ``max_width_px`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    width_in = fig.get_figwidth()
    if width_in * dpi > max_width_px:
        dpi = max_width_px / width_in
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "<img src='data:image/png;base64,%s'/>" % base64.b64encode(buf.getvalue()).decode("ascii")


def matplotlib_figure():
    """matplotlib's ``Figure`` class, or None when matplotlib cannot be imported."""
    try:
        from matplotlib.figure import Figure
    except Exception:  # noqa: BLE001 - any import problem means: no plots
        return None
    return Figure


def page(title, body_parts, css=""):
    return "\n".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title><style>%s%s</style>"
            "</head><body>" % (html.escape(title), PAGE_CSS, css)
        ]
        + list(body_parts)
        + ["</body></html>"]
    )


def write_text_atomic(path, text):
    """Write UTF-8 text to ``path`` through a temporary file renamed on success."""
    path = str(path)
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
