import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tlkit import cli, report, runner


def test_record_is_memory_only_without_tlkit_report(monkeypatch, tmp_path):
    monkeypatch.delenv("TLKIT_REPORT", raising=False)
    row = report.record("dann", "target_acc", 0.78, seeds=3, preset="cpu")
    assert row["value"] == 0.78 and report.records()[-1]["method"] == "dann"
    monkeypatch.setenv("TLKIT_REPORT", str(tmp_path / "r.jsonl"))
    monkeypatch.setenv("TLKIT_CHAPTER", "04_x")
    report.record("src", "target_acc", 0.5)
    rows = report.read(tmp_path / "r.jsonl")
    assert rows[0]["chapter"] == "04_x" and rows[0]["value"] == 0.5
    with pytest.raises(ValueError, match="finite number"):
        report.record("x", "acc", float("nan"))
    with pytest.raises(ValueError, match="finite number"):
        report.record("x", "acc", "0.5")


def make_chapter(folder: Path, name: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(body)]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


GOOD = "import tlkit\nfrom tlkit import report\nreport.record('m', 'acc', 0.9 if tlkit.smoke_mode() else 0.5, seeds=1)"


def test_run_notebook_gathers_records_and_writes_copy(tmp_path):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    path = make_chapter(nbdir, "01_demo", GOOD)
    r = runner.run_notebook(path, smoke=True, out_dir=tmp_path / "out")
    assert r.ok, r.error
    assert r.records[0]["value"] == 0.9 and r.records[0]["chapter"] == "01_demo"
    assert (tmp_path / "out" / "01_demo.ipynb").exists()


def test_run_notebook_reports_failing_cell(tmp_path):
    path = make_chapter(tmp_path, "02_bad", "raise ValueError('wrong number of classes')")
    r = runner.run_notebook(path, smoke=True)
    assert not r.ok and "wrong number of classes" in r.error


def test_select_by_prefix(tmp_path):
    for n in ("01_a", "02_b", "10_c"):
        make_chapter(tmp_path, n, "1")
    assert [p.stem for p in runner.select(["1"], tmp_path)] == ["01_a"]
    assert [p.stem for p in runner.select(["02_b"], tmp_path)] == ["02_b"]
    assert len(runner.select([], tmp_path)) == 3
    with pytest.raises(LookupError, match="chapters: 01_a, 02_b, 10_c"):
        runner.select(["07"], tmp_path)


def test_cli_run_writes_results_and_fails_loudly(tmp_path, capsys):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    make_chapter(nbdir, "01_demo", GOOD)
    make_chapter(nbdir, "02_bad", "1/0")
    out = tmp_path / "out"
    rc = cli.main(["run", "--all", "--smoke", "--notebooks", str(nbdir), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    results = json.loads((out / "results.json").read_text())
    assert results[0]["chapter"] == "01_demo" and results[0]["method"] == "m" and "preset" in results[0]
    assert "01_demo" in captured.out and "ZeroDivisionError" in captured.err


def test_preset_follows_tlkit_preset_and_cli_run_sets_it(tmp_path, monkeypatch, capsys):
    import tlkit

    monkeypatch.delenv("TLKIT_SMOKE", raising=False)
    monkeypatch.setenv("TLKIT_PRESET", "gpu")
    assert tlkit.resolve_preset("auto") == "gpu"      # a notebook's PRESET = "auto" follows the variable
    assert tlkit.resolve_preset("cpu") == "cpu"       # an explicit PRESET wins
    assert tlkit.resolve_preset("auto", smoke=True) == "smoke"
    assert "preset 'gpu'" in cli.summary_line({"cuda": False, "mps": False, "offline_assets": {},
                                               "ipywidgets": "8", "platform": "local"})  # what check() says
    t4 = cli.summary_line({"cuda": True, "gpu": "Tesla T4", "precision": "fp16", "mps": False, "offline_assets": {},
                           "ipywidgets": "8", "platform": "colab"})
    assert t4.startswith("GPU (Tesla T4, fp16 mixed precision) -> preset 'gpu'")
    monkeypatch.setenv("TLKIT_PRESET", "fast")
    with pytest.raises(ValueError, match="unknown TLKIT_PRESET 'fast'"):
        tlkit.resolve_preset("auto")
    monkeypatch.delenv("TLKIT_PRESET")
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    make_chapter(nbdir, "01_p", "import tlkit\nfrom tlkit import report\n"
                               "report.record('m', 'preset_is_cpu', float(tlkit.resolve_preset('auto') == 'cpu'))")
    assert cli.main(["run", "01", "--preset", "cpu", "--notebooks", str(nbdir), "--out", str(tmp_path / "o")]) == 0
    assert "cpu preset" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "results.json").read_text())[0]["value"] == 1.0
    assert "TLKIT_PRESET" not in os.environ           # the variable was only set for the kernel


def test_cli_run_with_no_chapters_says_so(tmp_path, capsys):
    assert cli.main(["run", "--all", "--notebooks", str(tmp_path)]) == 2
    assert "no chapters found" in capsys.readouterr().err


def test_console_script_help_and_env():
    exe = Path(sys.executable).with_name("tlkit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tlkit.cli"]
    out = subprocess.run(cmd + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "env" in out and "run" in out and "assets" in out
    env = subprocess.run(cmd + ["env", "--json"], capture_output=True, text=True, check=True).stdout
    info = json.loads(env)
    assert {"torch", "transformers", "gensim", "ipywidgets", "jupyterlab", "platform", "offline_assets"} <= set(info)


def test_check_imports_no_heavy_library_just_to_print_versions():
    # the environment cell runs first in every chapter kernel: importing torchvision, scikit-learn,
    # gensim and jupyterlab there cost ~400 MB of a 2 GB Binder kernel
    code = ("import sys, tlkit; line = tlkit.check(); "
            "print(sorted(m for m in ('torchvision', 'sklearn', 'gensim', 'jupyterlab', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert "preset" in out


def test_platform_detection(monkeypatch):
    monkeypatch.setenv("BINDER_SERVICE_HOST", "x")
    assert cli.platform_name() == "binder"
    monkeypatch.delenv("BINDER_SERVICE_HOST")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "x")
    assert cli.platform_name() == "colab"
