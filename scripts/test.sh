#!/usr/bin/env bash
# Install what the tests need (venv, tlkit, offline assets, Chromium) and run the whole suite:
# unit tests, every chapter executed in smoke mode, and the real-browser panel test.
set -euo pipefail
cd "$(dirname "$0")/.."
# TLKIT_UNPINNED=1: the newest versions pyproject.toml allows, in .venv-unpinned (see scripts/setup.sh)
if [ "${TLKIT_UNPINNED:-0}" = 1 ]; then VENV="${TLKIT_VENV:-.venv-unpinned}"; else VENV="${TLKIT_VENV:-.venv}"; fi
bash scripts/setup.sh --test
bash scripts/classic_env.sh "$VENV"   # classic Notebook 6.5 + ipywidgets 7.7 (Colab's stack) for the browser test
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
python -m pytest -q -ra --durations=15 "$@"
