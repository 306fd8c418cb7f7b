"""The pinned environment: pyproject.toml's loose ranges, the lock (constraints.txt), Binder and the
install scripts agree, so CI, Binder and a course image all install the resolve that was tested."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"


def read_lock(path: Path = LOCK) -> dict[str, Version]:
    """{canonical name: pinned version}; every non-comment line must be ``name==version``, once."""
    pins: dict[str, Version] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert m, f"{path.name} line {n}: {line!r} is not a name==version pin"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{path.name} line {n}: {name} pinned twice"
        pins[name] = Version(m.group(2))
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def requirement_lines(path: Path) -> list[str]:
    return [l.split("#")[0].strip() for l in path.read_text().splitlines()
            if l.split("#")[0].strip() and not l.strip().startswith("-")]


def test_every_dependency_is_pinned_within_pyprojects_range():
    pins = read_lock()
    problems = []
    for req in project_requirements():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is not pinned in constraints.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req}")
    assert not problems, "\n".join(problems) + "\nRefresh the lock: see scripts/lock.sh"


def test_lock_keeps_this_machines_torch_cap():
    # pip here only has torch <= 2.14.1 / torchvision <= 0.29.1 (local wheels); a lock beyond them cannot install
    pins = read_lock()
    assert pins["torch"] <= Version("2.14.1") and pins["torchvision"] <= Version("0.29.1")


def test_binder_installs_pyprojects_dependencies_with_the_lock():
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert re.search(r"^-c \.\./constraints\.txt$", text, re.M), "binder/requirements.txt must use -c ../constraints.txt"
    binder = {canonicalize_name(Requirement(l).name): Requirement(l) for l in requirement_lines(ROOT / "binder" / "requirements.txt")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    core = {canonicalize_name(Requirement(r).name): Requirement(r) for r in project}
    assert set(binder) == set(core), f"binder/requirements.txt vs pyproject: {set(binder) ^ set(core)}"
    for name, req in core.items():
        assert binder[name].specifier == req.specifier, f"{name}: binder {binder[name]} vs pyproject {req}"
    assert "PIP_CONSTRAINT" in (ROOT / "binder" / "postBuild").read_text()


def test_setup_installs_with_the_lock_unless_unpinned():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-c constraints.txt" in setup and 'PIP_CONSTRAINT="$PWD/constraints.txt"' in setup
    assert "TLKIT_UNPINNED" in setup and ".venv-unpinned" in setup
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert "scripts/setup.sh --test" in test_sh and "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert 'TLKIT_VENV:-.venv-unpinned' in test_sh  # the suite then runs in the venv setup.sh filled


def test_lock_parser_rejects_what_pip_would_not_pin(tmp_path):
    bad = tmp_path / "c.txt"
    bad.write_text("torch>=2.4\n")
    with pytest.raises(AssertionError, match="not a name==version pin"):
        read_lock(bad)
    bad.write_text("torch==2.1\nTorch==2.2\n")
    with pytest.raises(AssertionError, match="pinned twice"):
        read_lock(bad)
