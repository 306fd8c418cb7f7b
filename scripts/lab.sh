#!/usr/bin/env bash
# Install everything (first run only) and open the chapters in JupyterLab.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TLKIT_VENV:-.venv}"
[ -x "$VENV/bin/tlkit" ] || bash scripts/setup.sh
exec "$VENV/bin/jupyter" lab notebooks/ "$@"
