#!/usr/bin/env python3
"""Find code that breaks on PyQt6 / QGIS 4 or is deprecated on QGIS 3.40+ (run by tests/test_qt6_compat.py).

    python3 scripts/check_qt6.py [FILE_OR_FOLDER ...]     # default: the whole checkout

Prints ``path:line: message`` per finding and exits 1 if there is any. What it looks for:

* **Unscoped enums.** PyQt6 (QGIS 4) only knows ``Qt.MouseButton.LeftButton``, not ``Qt.LeftButton``.
  Every ``Name.attr`` whose ``Name`` is imported from ``qgis.*`` / ``PyQt*`` is resolved on the
  installed QGIS and flagged when it is an enum *member* (sip enum on PyQt5, Python enum on newer
  QGIS) rather than an enum class. ``x.FlagAdvanced``-style parameter flags are flagged on any object.
* **APIs removed in PyQt6 / Qt6:** ``from PyQt5...`` imports (use ``qgis.PyQt``), ``exec_()``,
  ``QRegExp``, ``qApp``, ``QDesktopWidget``/``desktop()``, ``activated[str]``, ``QVariant()`` as NULL,
  ``QFontMetrics.width``, matplotlib's Qt5-only ``backend_qt5agg``.
* **Deprecated QGIS calls with a replacement:** ``parameterAsFields`` (use ``parameterAsStrings``,
  through ``processing_provider.compat``).

A line ending in ``# qt6-compat: <reason>`` is skipped: the 3.22 fallback branches in
``processing_provider/compat.py`` carry it. This is our own lint; QGIS's migration script
(``pyqt5to6`` on PyPI, run by scripts/check_pyqt6_official.sh) is the official one.
"""

import ast
import enum
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", "__pycache__", "dist", "build", ".venv", "demo_output", "node_modules"}
MARKER = "# qt6-compat:"
QT_MODULE_PREFIXES = ("qgis.", "PyQt5.", "PyQt6.")
REMOVED_NAMES = {
    "QgsMapLayerType": "QgsMapLayerType is deprecated (Qgis.LayerType since 3.30): use compat.LayerType",
    "QRegExp": "QRegExp is removed in Qt6: use QRegularExpression",
    "qApp": "qApp is removed in PyQt6: use QApplication.instance()",
    "QDesktopWidget": "QDesktopWidget is removed in Qt6: use QScreen (QGuiApplication.screens())",
}
DEPRECATED_CALLS = {
    "parameterAsFields": "parameterAsFields is deprecated since QGIS 3.32: use compat.parameter_as_fields",
    "exec_": "exec_() is removed in PyQt6: use exec()",
    "setBand": "renderer setBand()/band() are deprecated since QGIS 3.38: use compat.set_renderer_band / renderer_band",
}


def python_files(paths):
    for p in paths:
        p = Path(p)
        if p.is_file() and p.suffix == ".py":
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*.py")):
                if not SKIP_DIRS.intersection(f.relative_to(p).parts):
                    yield f


def _is_enum_member(value):
    """True for an enum *value* (PyQt5 sip enum, PyQt6/QGIS Python enum), False for classes and plain ints."""
    if value is None or isinstance(value, type):
        return False
    if isinstance(value, enum.Enum):
        return True
    meta = type(type(value))
    return meta.__name__ in ("enumtype", "EnumType", "EnumMeta") and meta.__module__ in (
        "sip",
        "PyQt5.sip",
        "PyQt6.sip",
        "enum",
    )


def _imported_qt_names(tree):
    """{local name: object} for names imported from qgis.* / PyQt* modules that import on this machine."""
    names = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and (node.module + ".").startswith(QT_MODULE_PREFIXES)
        ):
            try:
                module = importlib.import_module(node.module)
            except Exception:  # noqa: BLE001 - e.g. qgis.gui without a display: unknown names are not checked
                continue
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if obj is not None:
                    names[alias.asname or alias.name] = obj
    return names


def check_source(source, filename="<string>"):
    """Findings as (line, message) for one file's source text."""
    tree = ast.parse(source, filename=filename)
    lines = source.splitlines()
    known = _imported_qt_names(tree)
    findings = []

    def add(node, message):
        line = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
        if MARKER not in line:
            findings.append((node.lineno, message))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "PyQt5":
            add(
                node,
                "import from %s: use qgis.PyQt.%s (works on PyQt5 and PyQt6)"
                % (node.module, node.module.split(".", 1)[-1]),
            )
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith((".backend_qt5agg", ".backend_qt5")):
            add(node, "matplotlib's %s forces PyQt5: use matplotlib.backends.backend_qtagg" % node.module)
        if isinstance(node, (ast.ImportFrom, ast.Import)):
            for alias in node.names:
                if alias.name.split(".")[-1] in REMOVED_NAMES:
                    add(node, REMOVED_NAMES[alias.name.split(".")[-1]])
        elif isinstance(node, ast.Name) and node.id in REMOVED_NAMES and isinstance(node.ctx, ast.Load):
            add(node, REMOVED_NAMES[node.id])
        elif isinstance(node, ast.Attribute):
            if node.attr in DEPRECATED_CALLS:
                add(node, DEPRECATED_CALLS[node.attr])
            elif (
                node.attr.startswith("Flag")
                and node.attr[4:5].isupper()
                and not (isinstance(node.value, ast.Attribute) and node.value.attr[:1].isupper())
            ):
                # param.FlagAdvanced, QgsProcessingParameterDefinition.FlagOptional, ...
                add(node, "unscoped parameter flag .%s: use compat.ParameterFlag" % node.attr)
            elif isinstance(node.value, ast.Name) and node.value.id in known:
                owner = known[node.value.id]
                try:
                    value = getattr(owner, node.attr, None)
                except Exception:  # noqa: BLE001 - properties that need an instance
                    value = None
                if _is_enum_member(value) and type(value) is not owner:  # Enum.Member itself is scoped
                    scope = type(value).__name__
                    add(
                        node,
                        "unscoped enum %s.%s (of %s): PyQt6 has no unscoped enums; write the scoped form, "
                        "or the Qgis.* name through processing_provider.compat" % (node.value.id, node.attr, scope),
                    )
            if node.attr == "desktop" and isinstance(node.ctx, ast.Load):
                add(node, "QApplication.desktop() is removed in Qt6: use QScreen")
            if (
                node.attr == "width"
                and isinstance(node.value, ast.Call)
                and (
                    getattr(node.value.func, "attr", None) == "fontMetrics"
                    or getattr(node.value.func, "id", None) in ("QFontMetrics", "QFontMetricsF")
                )
            ):
                add(node, "QFontMetrics.width() is removed in Qt6: use horizontalAdvance()")
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "activated"
            and isinstance(node.slice, ast.Name)
            and node.slice.id == "str"
        ):
            add(node, "activated[str] is removed in Qt6: use textActivated")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "QVariant"
            and len(node.args) <= 1
            and not node.keywords
        ):
            if not node.args or isinstance(node.args[0], ast.Attribute):
                add(node, "QVariant() as NULL: use qgis.core.NULL")
    return sorted(set(findings))


def check_paths(paths):
    out = []
    for f in python_files(paths):
        for line, message in check_source(f.read_text(encoding="utf-8"), str(f)):
            out.append("%s:%d: %s" % (f, line, message))
    return out


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    findings = check_paths(args or [ROOT])
    for f in findings:
        print(f)
    print("check_qt6: %d finding(s)" % len(findings), file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
