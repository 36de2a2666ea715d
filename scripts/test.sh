#!/usr/bin/env bash
# Set everything up and run the whole test suite (core, algorithms through processing.run,
# headless through qgis_process.bin). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
exec /usr/bin/python3 -m pytest tests -q -p no:cacheprovider "$@"
