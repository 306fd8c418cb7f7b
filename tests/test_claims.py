"""report.Claims: conclusions checked on the run's numbers, recorded as claim rows."""
import json
from pathlib import Path

import pytest

from tlkit import report


@pytest.fixture
def report_file(tmp_path, monkeypatch):
    path = tmp_path / "records.jsonl"
    monkeypatch.setenv("TLKIT_REPORT", str(path))
    monkeypatch.setenv("TLKIT_CHAPTER", "99_test")
    return path


def test_beats_needs_more_than_the_seed_spread(report_file):
    claims = report.Claims(preset="cpu")
    # difference 0.05, spread 0.1: within the noise, so no win
    assert not claims.beats("noisy", "A beats B", [0.6, 0.7, 0.8], [0.64, 0.65, 0.66]).holds
    # same means, tight seeds: a win
    assert claims.beats("clear", "A beats B", [0.69, 0.70, 0.71], [0.64, 0.65, 0.66]).holds
    # without the spread requirement only the margin counts
    assert claims.beats("plain", "A beats B", [0.6, 0.7, 0.8], [0.64, 0.65, 0.66], beyond_spread=False).holds
    assert not claims.beats("margin", "A beats B by 10 points", 0.70, 0.65, margin=0.10).holds
    rows = [json.loads(line) for line in report_file.read_text().splitlines()]
    assert [(r["method"], r["metric"], r["value"]) for r in rows] == [
        ("claim", "noisy", 0.0), ("claim", "clear", 1.0), ("claim", "plain", 1.0), ("claim", "margin", 0.0)]
    assert rows[0]["chapter"] == "99_test" and rows[0]["preset"] == "cpu"
    assert rows[0]["text"] == "A beats B" and "0.700 ± 0.100" in rows[0]["numbers"]


def test_at_least_at_most_close_and_check(report_file):
    claims = report.Claims(preset="cpu")
    assert claims.at_least("high", "reaches 0.85", [0.86, 0.88], 0.85).holds
    assert not claims.at_least("low", "reaches 0.85", [0.84, 0.85], 0.85).holds
    assert claims.at_most("mem", "under 1.5 GB", 1400.0, 1536).holds
    assert claims.close("same", "no real difference", [0.617, 0.62], [0.622, 0.63], tolerance=0.02).holds
    assert not claims.close("apart", "no real difference", 0.60, 0.65, tolerance=0.02).holds
    assert not claims.check("custom", "the model collapses", False, "balance 0.9", "balance < 0.5").holds
    assert [c.holds for c in claims.items] == [True, False, True, True, False, False]
    assert not claims.all_hold


def test_markdown_table_says_which_claims_fail_and_escapes_pipes(report_file):
    claims = report.Claims()
    claims.at_least("ok", "reaches 0.5", 0.6, 0.5)
    claims.close("no_gap", "no gap", 0.6, 0.7, tolerance=0.01)
    md = claims.markdown()
    assert "✅ holds" in md and "❌ does NOT hold" in md
    assert "1 of 2 claims hold" in md and "no_gap" in md
    assert "\\|difference\\|" in md     # a pipe inside a cell would split the table
    assert all(line.count("|") - line.count("\\|") == 5 for line in md.splitlines() if line.startswith("| "))
    assert list(claims.table()["on this run"]) == ["holds", "does NOT hold"]
    assert type(claims.show()).__name__ == "Markdown"


def test_bad_claims_are_errors(report_file):
    claims = report.Claims()
    claims.at_least("once", "x", 1.0, 0.5)
    with pytest.raises(ValueError, match="declared twice"):
        claims.at_least("once", "x", 1.0, 0.5)
    with pytest.raises(ValueError, match="short identifier"):
        claims.at_least("two words", "x", 1.0, 0.5)
    with pytest.raises(ValueError, match="finite"):
        claims.at_least("nan", "x", [float("nan")], 0.5)
    with pytest.raises(ValueError, match="finite"):
        claims.beats("empty", "x", [], [0.5])


def test_pm_formats_mean_and_spread():
    assert report.pm([0.6, 0.7, 0.8]) == "0.700 ± 0.100"
    assert report.pm(0.61234, digits=2) == "0.61"


def test_record_resources_rows(report_file, monkeypatch):
    import time

    monkeypatch.setattr(report, "_METER", None)   # no memory meter started: the three rows only
    values = report.record_resources(time.perf_counter() - 2.0, preset="cpu")
    assert values["wall_s"] >= 2.0 and values["cpu_s"] > 0 and values["peak_rss_mb"] > 10
    rows = [json.loads(line) for line in report_file.read_text().splitlines()]
    assert {(r["method"], r["metric"]) for r in rows} == {("chapter", "wall_s"), ("chapter", "cpu_s"),
                                                          ("chapter", "peak_rss_mb")}
    text = report.resources_markdown(values, "cpu")
    assert "CPU-minutes" in text and "GB" in text


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the meter reads /proc (Linux)")
def test_start_resources_meters_the_kernels_own_data(report_file, monkeypatch):
    """start_resources() starts one sampler of anonymous memory; a 200 MB array held for 0.3 s and freed
    before record_resources is still in its peak, and the sentence says what the two numbers are."""
    import time

    import numpy as np

    monkeypatch.setattr(report, "_METER", None)
    t0 = report.start_resources()
    meter = report._METER
    assert meter is not None and report.start_resources() and report._METER is meter   # one meter per process
    before = meter.sample()
    block = np.ones(200 * 2**20 // 8)   # 200 MB, written, so resident
    time.sleep(0.3)
    del block
    values = report.record_resources(t0, preset="cpu")
    assert values["peak_anon_mb"] >= before + 150
    assert values["peak_rss_mb"] >= values["peak_anon_mb"]
    rows = {r["metric"] for r in map(json.loads, report_file.read_text().splitlines())}
    assert "peak_anon_mb" in rows
    text = report.resources_markdown(values, "cpu")
    assert "kernel's own data" in text and "shared-library pages" in text
    meter._stop.set()


def test_record_resources_adds_the_gpu_peak_when_cuda_was_used(report_file, monkeypatch):
    """On a CUDA machine the chapter also records what it took from the GPU (``max_memory_reserved``)
    and names the card in its resources sentence; a stand-in torch module plays the GPU here."""
    import sys
    import time
    import types

    cuda = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True,
                                 get_device_name=lambda: "Tesla T4", max_memory_reserved=lambda: 3 * 2**30)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    values = report.record_resources(time.perf_counter() - 1.0, preset="gpu")
    assert values["peak_gpu_mb"] == 3 * 1024
    rows = {r["metric"]: r for r in map(json.loads, report_file.read_text().splitlines())}
    assert rows["peak_gpu_mb"]["gpu"] == "Tesla T4" and rows["peak_gpu_mb"]["value"] == 3072
    text = report.resources_markdown(values, "gpu")
    assert "Tesla T4 GPU" in text and "peak GPU memory **3.00 GB**" in text


def test_record_resources_never_touches_cuda_when_torch_is_not_loaded(report_file, monkeypatch):
    import sys
    import time

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    values = report.record_resources(time.perf_counter(), preset="cpu")
    assert "peak_gpu_mb" not in values and "torch" not in sys.modules
