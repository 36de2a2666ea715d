#!/usr/bin/env bash
# QGIS's own PyQt5 -> PyQt6 migration script (published on PyPI as qgis-pyqt5to6; it introspects PyQt6,
# so it needs Python >= 3.12 and PyQt6 from PyPI in a venv) run over a copy of every tracked .py file.
# Passes when it would change nothing and warns about nothing. Debian 12's Python is 3.11, so run it in
# the Debian 13 chroot:   bash scripts/test-matrix.sh trixie -- bash scripts/check-pyqt6.sh
# (scripts/check_qt6.py, run by the test suite, is our own stricter lint on every QGIS.)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
  || { echo "check-pyqt6.sh: needs Python >= 3.12 (run it in the trixie chroot, see above)" >&2; exit 2; }
venv="${PYQT6_VENV:-/var/cache/subsidence-toolkit/pyqt6-venv}"
if [ ! -x "$venv/bin/pyqt5to6" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # the system's certificate store (with any locally added authority), not pip's own bundle
  [ -r /etc/ssl/certs/ca-certificates.crt ] && export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
  "$venv/bin/pip" install -q --disable-pip-version-check qgis-pyqt5to6 PyQt6 PyQt6-QScintilla
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/tree"
git ls-files -co --exclude-standard -- '*.py' | tar -cf - -T - | tar -xf - -C "$work/tree"
cp -r "$work/tree" "$work/orig"
rc=0
QT_QPA_PLATFORM=offscreen "$venv/bin/pyqt5to6" "$work/tree" >"$work/out" 2>"$work/err" || rc=$?
# the one line it always prints without a Qt6 build of QGIS to introspect: not a finding
grep -hv '^QGIS classes not available for introspection' "$work/out" "$work/err" >"$work/findings" || true
diff -ru "$work/orig" "$work/tree" >>"$work/findings" || true
if [ "$rc" -ne 0 ] || [ -s "$work/findings" ]; then
  cat "$work/findings"
  echo "pyqt5to6: findings above (exit $rc)" >&2
  exit 1
fi
echo "pyqt5to6 (QGIS PyQt5 -> PyQt6 checker): $(find "$work/tree" -name '*.py' | wc -l) files, nothing to change"
