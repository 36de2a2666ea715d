#!/usr/bin/env bash
# Build an installable plugin zip: one top folder subsidence_toolkit/, no tests, demo or CI files
# (see .gitattributes export-ignore), no compiled files or caches (git tracks none). Packs the committed
# HEAD into dist/ (or the folder given as first argument) and prints the zip's path.
# tests/test_package.py checks the zip against the QGIS plugin repository's upload rules.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version=//p' metadata.txt)
outdir="${1:-dist}"
mkdir -p "$outdir"
out="$outdir/subsidence_toolkit-${version}.zip"
git archive --format=zip --prefix=subsidence_toolkit/ -o "$out" HEAD
/usr/bin/python3 - "$out" <<'PY'
import re, sys, zipfile
bad = [n for n in zipfile.ZipFile(sys.argv[1]).namelist()
       if re.search(r"(\.py[co]$|(^|/)(__pycache__|\.git|__MACOSX|\.pytest_cache)(/|$))", n)]
if bad:
    sys.exit("package.sh: compiled files or caches in the zip: %s" % ", ".join(bad))
PY
echo "$out"
