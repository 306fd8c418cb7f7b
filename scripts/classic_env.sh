#!/usr/bin/env bash
# A second environment with Colab's notebook stack (classic Notebook 6.5 + ipywidgets 7.7) for the
# real-browser panel test (tests/test_browser.py). It holds only the Jupyter packages; torch, tlkit's
# other dependencies and the offline assets come from the main venv through a site dir appended after
# its own site-packages (so its own Jupyter packages win), which saves ~3 GB and ~5 minutes.
# Usage: bash scripts/classic_env.sh [main venv (default .venv)] [target (default .venv-classic)]
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN="${1:-.venv}"
CLASSIC="${2:-.venv-classic}"
if [ -x "$CLASSIC/bin/jupyter-notebook" ] && "$CLASSIC/bin/python" -c "import ipywidgets, notebook, torch, tlkit" 2>/dev/null; then
  exit 0
fi
PY="$MAIN/bin/python"
"$PY" -m venv --without-pip "$CLASSIC" 2>/dev/null || "$PY" -m venv "$CLASSIC"
"$CLASSIC/bin/python" -m ensurepip -q 2>/dev/null || true
MAIN_SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
OWN_SITE=$("$CLASSIC/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# addsitedir also runs the main venv's .pth files (tlkit's editable install among them)
echo "import site; site.addsitedir('$(realpath "$MAIN_SITE")')" > "$OWN_SITE/zz_tlkit_main_venv.pth"
# --ignore-installed: never touch the main venv's newer Jupyter packages, install these beside them
"$CLASSIC/bin/python" -m pip install -q --ignore-installed \
  "notebook==6.5.7" "ipywidgets==7.7.5" "widgetsnbextension==3.6.10" "ipykernel==6.29.5" "jupyter_client<8" \
  "pyzmq<26" "traitlets<5.10" "nbclassic<1.2" "jupyter_server<2.15"
"$CLASSIC/bin/python" -c "import ipywidgets, notebook, torch, tlkit; print('classic env:', 'notebook', notebook.__version__, 'ipywidgets', ipywidgets.__version__)"
