"""Chapter 5 executed top to bottom in smoke mode, with assertions on what it records.

Smoke mode trains on a few dozen snippets and tests on 64, so "the distilled student beats the
label-only student" is not asserted here (at that size it goes either way: a 64-snippet test set
moves in steps of 1.6 points); the CPU preset measures it (README, benchmarks/compression.py).
What holds at any size is asserted: int8 makes the Linear weights smaller, unstructured pruning
does not make the file smaller, structured pruning does, and every comparison is recorded."""
from __future__ import annotations

from pathlib import Path

import pytest

from tlkit.runner import run_notebook

pytestmark = pytest.mark.notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_compression.ipynb"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return run_notebook(NOTEBOOK, smoke=True, out_dir=tmp_path_factory.mktemp("ch5"))


def values(result) -> dict[tuple[str, str], float]:
    return {(r["method"], r["metric"]): r["value"] for r in result.records}


def test_chapter_runs(result):
    assert result.ok, result.error
    assert all(r["preset"] == "smoke" for r in result.records)


def test_no_deprecation_warning_reaches_the_reader(result):
    for cell in result.notebook.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("name") == "stderr" else ""
            assert "deprecat" not in text.lower(), text[:300]


def test_every_figure_is_drawn(result):
    pngs = sum(1 for c in result.notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert pngs >= 4  # temperatures, distillation, unstructured pruning, trade-off (+ the panel's own)


def test_distillation_rows_are_recorded_for_both_students(result):
    v = values(result)
    for student in ("glove_student", "shallow_student"):
        budget = 8
        for kind in ("labels_only", "distilled"):
            assert 0.0 <= v[(student, f"acc_{kind}_at_{budget}")] <= 1.0
        gain = v[(student, f"distill_gain_at_{budget}")]
        assert gain == pytest.approx(v[(student, f"acc_distilled_at_{budget}")] - v[(student, f"acc_labels_only_at_{budget}")])
    assert 0.0 <= v[("teacher", "acc")] <= 1.0


def test_int8_is_smaller_unstructured_pruning_is_not_structured_pruning_is(result):
    v = values(result)
    assert v[("teacher_int8", "linear_ratio")] > 3.0                 # int8 vs float32 weights
    assert v[("teacher + int8", "size_mb")] < v[("teacher", "size_mb")]
    assert v[("unstructured", "size_ratio_at_max_sparsity")] == pytest.approx(1.0, abs=1e-3)
    assert v[("teacher, 50% unstructured", "size_mb")] == pytest.approx(v[("teacher", "size_mb")], rel=1e-3)
    assert v[("structured", "size_ratio")] < 0.9
    assert v[("structured", "params_removed")] > 0
    assert v[("teacher, structured + recovery + int8", "size_mb")] < v[("teacher, structured + recovery", "size_mb")]


def test_shallow_student_and_panel_are_measured(result):
    v = values(result)
    assert v[("shallow_vs_teacher", "encoder_param_share")] == pytest.approx(0.5)   # 3 of 6 layers
    assert v[("shallow_vs_teacher", "speedup_b1")] > 0
    assert v[("GloVe student, distilled", "size_mb")] < v[("teacher", "size_mb")] / 10
    assert 0.0 <= v[("panel", "test_acc")] <= 1.0
    assert 0 < v[("panel", "size_mb")] < v[("teacher", "size_mb")]   # depth 2 + int8
    assert v[("chapter", "wall_s")] > 0 and v[("chapter", "peak_rss_mb")] > 0


def test_every_claim_is_checked_and_recorded(result):
    claims = {r["metric"]: r for r in result.records if r["method"] == "claim"}
    assert set(claims) == {"glove_distill_beats_labels", "shallow_distill_beats_labels", "shallow_keeps_95pct",
                           "shallow_half_encoder", "shallow_faster_than_distilbert_b1", "int8_linear_3x_smaller",
                           "int8_1p5x_faster_b32", "int8_drop_at_most_1pt", "unstructured_same_size",
                           "structured_smaller_faster", "structured_recovers"}
    assert all(r["value"] in (0.0, 1.0) and r["numbers"] for r in claims.values())
    # what holds at any data size holds in smoke mode too
    for name in ("shallow_half_encoder", "int8_linear_3x_smaller", "unstructured_same_size"):
        assert claims[name]["value"] == 1.0, claims[name]


def test_notebook_05_exercises_wait_for_answers_and_the_quiz_renders(result):
    """The student's copy has empty answers: "Run all" goes through, each check says so, the quiz shows."""
    from tlkit import course, exercises

    done = course.executed_summary(result.notebook)
    assert set(done["checks"]) == {ex.id for ex in exercises.all_exercises(5)}
    assert all("not answered yet" in text for text in done["checks"].values()), done["checks"]
    assert done["quiz_widget"]
