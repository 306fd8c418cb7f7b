"""benchmarks/gpu_chapters.py, the harness behind README's gpu-preset table, on two stand-in chapters
(CPU only): a chapter that finishes is summarised from its results.json, and one still running at the
deadline is stopped with the rows it recorded so far kept (a GPU lease ends at its deadline)."""
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_chapters  # noqa: E402


def _chapter(path: Path, body: str) -> None:
    code = ("from tlkit import report\n"
            "report.record(method='claim', metric='c1', value=1.0, numbers='1 vs 0')\n"
            "report.record(method='claim', metric='c2', value=0.0, numbers='0 vs 1')\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code), nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_finished_and_stopped_chapters_are_both_summarised(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _chapter(nbs / "01_quick.ipynb", "import time, os\nfrom tlkit import report\n"
             "assert os.environ['TLKIT_PRESET'] == 'gpu'\n"
             "report.record_resources(time.perf_counter() - 1.0, preset='gpu')")
    _chapter(nbs / "02_endless.ipynb", "import time\nwhile True:\n    time.sleep(0.5)")
    code = gpu_chapters.main(["--out", str(tmp_path / "out"), "--notebooks", str(nbs), "--parallel",
                              "--deadline-s", "60"])
    assert code == 1                                   # one chapter did not finish
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {r["chapter"]: r for r in summary["chapters"]}
    assert summary["cap_gb"] == 16.0 and summary["precision"] == "fp16"
    quick, endless = rows["01_quick"], rows["02_endless"]
    assert quick["finished"] and quick["claims"] == 2 and quick["claims_held"] == 1
    assert quick["failed_claims"] == ["c2: 0 vs 1"] and quick["peak_rss_mb"] > 10
    assert not endless["finished"] and endless["claims"] == 2          # rows recorded before the stop are kept
    assert (tmp_path / "out" / "02_endless" / "02_endless.ipynb").exists()
    assert "deadline reached" in capsys.readouterr().out
