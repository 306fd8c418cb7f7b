"""deploy/ cannot be built here (no container engine, no Kubernetes): lint what can be linted.
The Z2JH values parse with the keys a class needs, sized from the measured peaks; the Dockerfile's base
image is pinned to the lock's Python, it installs with the lock, and its names and paths agree with
tlkit's registry and the Z2JH values."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.version import Version

from tlkit import assets, links

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
VALUES = yaml.safe_load((ROOT / "deploy" / "z2jh" / "config.yaml").read_text())


def _bytes(size: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMGT])", str(size))
    assert m, f"memory size {size!r}: expected a number and K/M/G/T as in the Z2JH docs"
    return float(m.group(1)) * 1024 ** ("KMGT".index(m.group(2)) + 1)


def _lock() -> dict[str, str]:
    return dict(l.split("==", 1) for l in (ROOT / "constraints.txt").read_text().splitlines() if "==" in l)


def test_dockerfile_base_is_pinned_to_the_locks_python():
    m = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert m and re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE, re.M)
    image, _, tag = m.group(1).rpartition(":")
    assert image.startswith("quay.io/jupyter/") and tag and tag != "latest" and "latest" not in tag
    lock_python = re.search(r"Python (\d+\.\d+)", (ROOT / "constraints.txt").read_text()).group(1)
    assert tag.startswith(f"python-{lock_python}."), f"base image {tag} vs the lock's Python {lock_python}"


def test_dockerfile_installs_with_the_lock_and_makes_assets_read_only():
    assert "COPY constraints.txt /opt/tlkit/constraints.txt" in DOCKERFILE
    assert "PIP_CONSTRAINT=/opt/tlkit/constraints.txt" in DOCKERFILE
    assert "[hub]" in DOCKERFILE and "hub" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = re.findall(r"([A-Za-z0-9_.-]+)==([^\s\"']+)", DOCKERFILE)
    lock = _lock()
    assert all(lock.get(name) == version for name, version in pins), pins  # any pin written here is the lock's
    assert 'tlkit assets install --all --into "${TLKIT_HOME}"' in DOCKERFILE and "chmod -R a-w" in DOCKERFILE
    # the pip copies dropped after the copy into TLKIT_HOME are exactly the offline packs' distributions
    dropped = set(re.search(r"pip uninstall -y ([^\\\n]+)", DOCKERFILE).group(1).split())
    packs = {a.package.pip.split("==")[0] for a in assets.REGISTRY.values()
             if a.offline_pack and a.package is not None and "==" in a.package.pip}
    assert dropped == packs


def test_z2jh_values_have_what_a_class_needs():
    su = VALUES["singleuser"]
    lock, version = _lock(), tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert su["image"]["tag"] != "latest" and su["image"]["tag"] == f"{version}-torch{lock['torch']}"
    guarantee, limit = _bytes(su["memory"]["guarantee"]), _bytes(su["memory"]["limit"])
    # sized from the measured peaks: a chapter kernel <= 1.5 GB (the target chapters.py checks) + the server
    assert 1.5 * 2**30 < guarantee <= limit and limit >= 2 * 2**30
    assert 0 < su["cpu"]["guarantee"] <= su["cpu"]["limit"] <= 2
    env = su["extraEnv"]
    assert env["TLKIT_HOME"] == re.search(r"TLKIT_HOME=(\S+)", DOCKERFILE).group(1)
    assert env["TLKIT_CACHE"].startswith("/home/jovyan/")
    (mount,) = [m for m in su["storage"]["extraVolumeMounts"] if m["mountPath"] == env["TLKIT_HOME"]]
    (volume,) = [v for v in su["storage"]["extraVolumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
    assert su["lifecycleHooks"]["postStart"]["exec"]["command"][:2] == ["tlkit", "notebooks"]
    assert VALUES["cull"]["enabled"] is True and VALUES["cull"]["timeout"] > 0
    assert VALUES["prePuller"]["hook"]["enabled"] is True


def test_readme_running_a_class_names_the_deploy_files_and_a_working_nbgitpuller_link():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running a class", 1)[1].split("\n## ", 1)[0]
    for needle in ("deploy/Dockerfile", "deploy/z2jh/config.yaml", "tljh", "TLKIT_HOME", "TLKIT_CACHE",
                   "benchmarks/classroom.py", "--into"):
        assert needle in section, needle
    assert links.nbgitpuller_url("https://hub.example.edu", "01_word_embeddings.ipynb") in section
    assert Version(_lock()["jupyterhub"]).major >= 5
