"""Repository hygiene a user relies on: clean notebooks, a true README."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "tests" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", "kernelspec metadata missing"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: outputs committed; clear them"
            assert cell.get("execution_count") is None, f"{path.name}: execution counts committed"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_chapter_has_one_parameters_cell_right_after_the_setup_cells(path):
    # papermill and `tlkit run` find PRESET by this tag; scripts/nbtool.py puts the Colab setup
    # and environment cells first
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    params = [i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: expected exactly one code cell tagged 'parameters', found {len(params)}"
    source = "".join(code[params[0]]["source"])
    assert params[0] == 2 and 'PRESET = "auto"' in source and "tlkit.smoke_mode()" in source


def test_chapter_files_follow_numbering():
    names = [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    for n in names:
        assert n[:2].isdigit() and n[2] == "_", n


def test_readme_test_command_matches_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in readme and "scripts/test.sh" in ci
