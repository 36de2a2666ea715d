#!/usr/bin/env bash
# Build an installable plugin zip: one top folder subsidence_toolkit/, no tests, demo or CI files
# (see .gitattributes export-ignore). Packs the committed HEAD.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version=//p' metadata.txt)
mkdir -p dist
out="dist/subsidence_toolkit-${version}.zip"
git archive --format=zip --prefix=subsidence_toolkit/ -o "$out" HEAD
echo "$out"
