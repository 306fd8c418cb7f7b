"""A class of two on a real JupyterHub (127.0.0.1, SimpleLocalProcessSpawner, DummyAuthenticator,
configurable-http-proxy from npm): both students log in, start servers, run chapter 1 in smoke mode
through the kernel API plus the panel's scripted training, and save the notebook with every output.
The N = 1, 4, 8 measurements are `python benchmarks/classroom.py` (not a test: timings)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import classroom  # noqa: E402

pytestmark = pytest.mark.classroom


@pytest.fixture
def hubs(monkeypatch):
    """Every Hub the test starts, to check afterwards that none of its processes is left."""
    made = []
    real = classroom.Hub

    class Recorded(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(classroom, "Hub", Recorded)
    return made


def _alive(hub) -> list[int]:
    return [pid for pid, p in hub.seen.items() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_two_students_run_chapter_1_on_a_real_hub(hubs, tmp_path):
    res = classroom.run_class(2, keep=True, workdir=tmp_path, timeout=900)
    errors = [s.error for s in res.students if s.error]
    assert res.all_finished, errors
    assert res.lost == 0
    for s in res.students:
        nb = nbformat.read(s.saved, as_version=4)  # the file in the student's home, as saved through the API
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert sum(len(c.outputs) for c in code) == s.outputs > 10
        text = json.dumps([c.outputs for c in code[-2:]])
        assert "@@MEM" in text and 300 < s.kernel_peak_mb < 4000  # the probe ran after the panel's training
        assert s.peak_mb >= s.kernel_peak_mb * 0.5  # the sampler saw the student's server + kernel
    assert res.total_peak_mb > sum(s.kernel_peak_mb for s in res.students) * 0.5
    assert len(res.latencies_ms) > 10 and res.latency(0.95) >= res.latency(0.5) > 0
    (hub,) = hubs
    assert len(hub.seen) >= 5  # hub, proxy, 2 servers, 2 kernels
    assert _alive(hub) == [] and hub.proc.poll() is not None


def test_a_failing_student_is_reported_and_everything_still_stops(hubs, tmp_path, monkeypatch):
    bad = tmp_path / "bad.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('before')"), nbformat.v4.new_code_cell("1 / 0")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, bad)
    monkeypatch.setattr(classroom, "CHAPTER", bad)
    res = classroom.run_class(1, workdir=tmp_path, timeout=300)
    (s,) = res.students
    assert not s.finished and "ZeroDivisionError" in s.error
    assert _alive(hubs[0]) == []


def test_an_exception_in_the_driver_stops_the_hub(hubs, tmp_path, monkeypatch):
    async def broken(hub, name, latencies, timeout):
        raise KeyboardInterrupt  # e.g. Ctrl-C while students work

    monkeypatch.setattr(classroom, "student", broken)
    with pytest.raises(KeyboardInterrupt):
        classroom.run_class(1, workdir=tmp_path)
    assert _alive(hubs[0]) == [] and hubs[0].proc.poll() is not None
