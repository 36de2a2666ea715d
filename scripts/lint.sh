#!/bin/sh
# Lint the plugin with ruff (settings: [tool.ruff] in pyproject.toml). Debian 12 has no ruff package, so
# ruff lives in a virtual environment made here on first use (from PyPI, pinned).
#   scripts/lint.sh                  # ruff check of the whole tree
#   scripts/lint.sh core/insar       # some paths; any other ruff check option is passed on
#   RUFF_VENV=/path scripts/lint.sh  # another place for the environment (default: .venv-lint)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${RUFF_VENV:-$ROOT/.venv-lint}
RUFF_VERSION=0.17.6
if [ ! -x "$VENV/bin/ruff" ] || [ "$("$VENV/bin/ruff" --version)" != "ruff $RUFF_VERSION" ]; then
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "ruff==$RUFF_VERSION"
fi
cd "$ROOT"
"$VENV/bin/ruff" check "$@"
# formatting (120 columns, pyproject.toml): --check only, never rewrites files here
"$VENV/bin/ruff" format --check --quiet .
echo "ruff: lint and format clean"
