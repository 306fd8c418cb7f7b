"""The repository's address, in one place, and the links and install commands built from it.

Forks change ``REPOSITORY`` (and ``BRANCH``) here; README's launch links, the
Binder and Colab URLs and each chapter's Colab setup cell are checked against
these functions by the tests.
"""
from __future__ import annotations

REPOSITORY = "tlkit-edu/tlkit"   # GitHub owner/name
BRANCH = "main"


def repo_url() -> str:
    return f"https://github.com/{REPOSITORY}"


def pip_spec() -> str:
    """What ``pip install`` gets on Colab: the package straight from the repository."""
    return f"tlkit @ git+{repo_url()}@{BRANCH}"


def binder_url(path: str = "notebooks") -> str:
    """mybinder.org launch link that opens JupyterLab at ``path``."""
    return f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}?urlpath=lab/tree/{path}"


def colab_url(notebook: str) -> str:
    """Colab link for ``notebook`` (e.g. ``"01_word_embeddings.ipynb"``)."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{notebook}"


def colab_commands(python: str = "python") -> list[list[str]]:
    """The commands a chapter's setup cell runs on Colab (argv lists; ``python`` is the kernel's)."""
    return [[python, "-m", "pip", "install", "-q", pip_spec()],
            [python, "-m", "tlkit.cli", "assets", "install", "--all"]]


def nbgitpuller_url(hub: str, notebook: str | None = None, *, app: str = "lab") -> str:
    """A link that a student clicks on a class's JupyterHub: it logs them in, starts their server,
    pulls (or updates, keeping their edits) the repository into ``~/tlkit`` with nbgitpuller, and
    opens ``notebook`` (e.g. ``"01_word_embeddings.ipynb"``) or the chapters' folder."""
    from urllib.parse import quote, urlencode

    target = "tlkit/notebooks" + (f"/{notebook}" if notebook else "")
    query = urlencode({"repo": repo_url(), "branch": BRANCH, "urlpath": f"{app}/tree/{target}"}, quote_via=quote)
    return f"{hub.rstrip('/')}/hub/user-redirect/git-pull?{query}"


SETUP_MARKER = "# tlkit setup cell"


def setup_cell_source() -> str:
    """Source of every chapter's first cell: installs tlkit on Colab, does nothing elsewhere.

    It cannot import tlkit (not installed yet on Colab), so the commands are
    written out; a test runs the cell with Colab detection forced on and checks
    them against ``colab_commands``. ``TLKIT_SETUP_DRY_RUN=1`` prints instead of running.
    """
    cmds = ",\n            ".join(
        "[sys.executable, " + ", ".join(repr(a) for a in c[1:]) + "]" for c in colab_commands())
    return f"""{SETUP_MARKER}: on Colab, install tlkit and its offline models/datasets (about 2 minutes,
# no restart needed). Anywhere else this cell does nothing: install with `bash scripts/lab.sh`.
import os, subprocess, sys
IN_COLAB = "google.colab" in sys.modules or os.environ.get("TLKIT_FORCE_COLAB") == "1"
if IN_COLAB:
    for cmd in [{cmds}]:
        if os.environ.get("TLKIT_SETUP_DRY_RUN") == "1":
            print("would run:", " ".join(cmd))
        else:
            subprocess.run(cmd, check=True)
    print("tlkit is installed: carry on, no restart needed.")"""


ENV_CELL_SOURCE = """import tlkit
tlkit.check()  # one line: device and preset, offline assets, widgets; what to do if something is missing"""
