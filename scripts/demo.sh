#!/usr/bin/env bash
# Set everything up, generate the deterministic demo data and run every algorithm headless
# through qgis_process.bin. Outputs go to ./demo_output (or the folder given as first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec /usr/bin/python3 demo/run_demo.py --out "${1:-demo_output}" "${@:2}"
