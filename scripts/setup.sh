#!/usr/bin/env bash
# Install everything the plugin, its tests and its demo need on Debian 12 (bookworm), 13 (trixie) or
# testing (forky): the package names in apt-packages.txt are the same on all three.
# Idempotent: packages already installed are skipped. Needs root (or sudo).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t pkgs < <(grep -vE '^\s*(#|$)' "$here/apt-packages.txt")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
/usr/bin/python3 -c "import qgis.core, numpy, scipy, pandas; from osgeo import gdal; print('QGIS', qgis.core.Qgis.QGIS_VERSION, '| numpy', numpy.__version__, '| scipy', scipy.__version__, '| pandas', pandas.__version__, '| GDAL', gdal.__version__)"
