#!/usr/bin/env bash
# Set everything up and run the whole test suite (core, algorithms through processing.run,
# headless through qgis_process.bin). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
# Test paths among the arguments replace the default "tests" (else pytest would run both).
for arg in "$@"; do
  case "$arg" in -*) ;; *) if [ -e "${arg%%::*}" ]; then exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$@"; fi ;; esac
done
exec /usr/bin/python3 -m pytest tests -q -p no:cacheprovider "$@"
