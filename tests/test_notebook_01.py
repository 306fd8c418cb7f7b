"""Chapter 1 executed top to bottom in smoke mode; assertions on what it records."""
from __future__ import annotations

from pathlib import Path

import pytest

from tlkit.runner import run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_word_embeddings.ipynb"
STRATEGIES = ("random", "frozen", "fine-tuned")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return run_notebook(NOTEBOOK, smoke=True, out_dir=tmp_path_factory.mktemp("ch1"))


def test_chapter_runs_in_smoke_mode(result):
    assert result.ok, result.error
    assert result.output is not None and result.output.exists()


def test_every_strategy_has_every_budget(result):
    accs = [r for r in result.records if r["metric"] == "movies_acc"]
    budgets = {r["budget"] for r in accs}
    assert len(budgets) >= 2, budgets
    for method in STRATEGIES:
        assert {r["budget"] for r in accs if r["method"] == method} == budgets, method
    for r in result.records:
        if r["metric"].endswith(("_acc", "_bacc")):
            assert 0.0 <= r["value"] <= 1.0, r
        assert r["preset"] == "smoke"


def test_pretrained_beats_random_at_the_smallest_budget(result):
    accs = {(r["method"], r["budget"]): r["value"] for r in result.records if r["metric"] == "movies_acc"}
    smallest = str(min(int(b) for _, b in accs if b != "all"))
    assert accs[("frozen", smallest)] > accs[("random", smallest)], accs
    gain = [r for r in result.records if r["metric"].startswith("acc_gain@")]
    assert len(gain) == 1 and gain[0]["value"] > 0


def test_cross_domain_table_and_panel_run_are_recorded(result):
    metrics = {(r["method"], r["metric"]) for r in result.records}
    for method in STRATEGIES:
        for metric in ("amazon_acc", "amazon_bacc", "tweets_acc", "tweets_bacc"):
            assert (method, metric) in metrics
    panel = [r for r in result.records if r["method"].startswith("panel")]
    assert len(panel) == 1 and 0.0 <= panel[0]["value"] <= 1.0


def test_notebook_01_exercises_wait_for_answers_and_the_quiz_renders(result):
    """The student's copy has empty answers: "Run all" goes through, each check says so, the quiz shows."""
    from tlkit import course, exercises

    done = course.executed_summary(result.notebook)
    assert set(done["checks"]) == {ex.id for ex in exercises.all_exercises(1)}
    assert all("not answered yet" in text for text in done["checks"].values()), done["checks"]
    assert done["quiz_widget"]


def test_notebook_01_panel_validates_on_the_movie_validation_split_only(result):
    """Issue 14: the panel's curves never use section 4's test sets (Amazon, tweets): its board's
    columns name only the movie validation split."""
    assert result.ok, result.error
    cell = next(c for c in result.notebook.cells if c.cell_type == "code" and "panel.train(block=True" in c.source)
    board = "\n".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs if o.get("output_type") == "execute_result")
    assert "movies_valid" in board, board
    assert not any(name in board for name in ("amazon", "tweets", "test")), board
