"""Installable without the repository: the wheel carries the chapters, and an installed tlkit copies
them into a folder and runs one in smoke mode, with no editable install and no checkout on the path.

The big dependencies are reused, not reinstalled: the fresh venv gets a ``.pth`` line naming this
environment's site-packages (a path added that way does not run that folder's own ``.pth`` files,
so the editable-install hook for the repository's ``tlkit`` stays off), and the wheel goes in with
``pip --python NEWVENV install --no-deps``."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(dist)], check=True, capture_output=True, text=True)
    (whl,) = dist.glob("tlkit-*.whl")
    return whl


def test_wheel_carries_every_module_and_the_chapters(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "tlkit").rglob("*.py")}
    chapters = {f"tlkit/notebooks/{p.name}" for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert len(chapters) >= 4
    assert modules - names == set(), "modules missing from the wheel (pyproject's [tool.setuptools] packages?)"
    assert chapters - names == set()


@pytest.mark.notebook
def test_installed_wheel_copies_the_chapters_and_runs_one(wheel, tmp_path):
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        py = venv / "bin" / "python"
        site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
        (site / "_reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                        str(wheel)], check=True, capture_output=True, text=True)
        work = tmp_path / "student"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TLKIT_NOTEBOOKS", "JUPYTER_PATH")}
        env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv), HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
        run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)  # noqa: E731

        probe = run(str(py), "-c", "import sys, tlkit, tlkit.runner as r; from jupyter_client.kernelspec import "
                    "KernelSpecManager as K; print(tlkit.__file__); print(r.bundled_notebooks()); "
                    "print(K().get_kernel_spec('python3').argv[0]); print(repr(sys.path))")
        assert probe.returncode == 0, probe.stderr
        module, bundled, kernel_python, path = probe.stdout.splitlines()
        assert Path(module).is_relative_to(venv) and Path(bundled).is_relative_to(venv)
        assert Path(kernel_python).parent == venv / "bin"  # the chapter's kernel runs the installed tlkit too
        assert repr(str(ROOT)) not in path and repr(str(ROOT / "tlkit")) not in path

        copied = run(str(venv / "bin" / "tlkit"), "notebooks", "chapters")
        assert copied.returncode == 0 and (work / "chapters" / "01_word_embeddings.ipynb").is_file(), copied.stderr
        res = run(str(venv / "bin" / "tlkit"), "run", "01", "--smoke", "--notebooks", "chapters", "--out", "runs")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert (work / "runs" / "01_word_embeddings.ipynb").is_file() and "movies_acc" in res.stdout
    finally:
        shutil.rmtree(venv, ignore_errors=True)
