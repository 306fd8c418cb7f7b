"""Chapter 2 executed top to bottom in smoke mode, with assertions on what it records."""
from __future__ import annotations

from pathlib import Path

import pytest

from tlkit.runner import run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_bert_finetuning.ipynb"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return run_notebook(NOTEBOOK, smoke=True, out_dir=tmp_path_factory.mktemp("ch2"))


def values(result, method=None, metric=None) -> dict[tuple[str, str], float]:
    return {(r["method"], r["metric"]): r["value"] for r in result.records
            if (method is None or r["method"] == method) and (metric is None or r["metric"] == metric)}


def test_chapter_runs(result):
    assert result.ok, result.error
    assert all(r["preset"] == "smoke" for r in result.records)


def test_feature_extraction_and_fine_tuning_rows_are_sane(result):
    v = values(result)
    for method in ("features", "finetune_top2", "finetune_all"):
        assert 0.0 <= v[(method, "movies_acc")] <= 1.0, method
    assert v[("features", "extract_s")] > 0
    assert v[("finetune_all", "train_s")] > 0
    for method in ("GloVe avg + MLP (ch1)", "frozen MiniLM + logreg", "fine-tuned MiniLM (probe-init head)"):
        accs = values(result, method=method)
        assert len(accs) == 2 and all(0.0 <= a <= 1.0 for a in accs.values()), (method, accs)
    for domain in ("amazon", "tweets"):
        assert 0.0 <= v[("finetune_all", f"{domain}_acc")] <= 1.0


def test_full_fine_tuning_changed_the_encoder_and_frozen_layers_did_not_move(result):
    v = values(result)
    assert v[("finetune_all", "encoder_min_layer_change")] > 0.0      # every encoder layer moved
    assert v[("finetune_all", "encoder_max_abs_change")] > 0.0
    assert v[("finetune_all", "word_embeddings_max_abs_change")] == 0.0  # frozen on CPU
    assert v[("finetune_top2", "frozen_layers_max_abs_change")] == 0.0
    assert v[("finetune_top2", "trained_layers_min_abs_change")] > 0.0


def test_too_high_lr_run_and_panel_are_reported(result):
    v = values(result)
    assert 0.5 <= v[("lr_too_high", "majority_class_share")] <= 1.0
    assert 0.0 <= v[("lr_too_high", "movies_acc")] <= 1.0
    assert 0.0 <= v[("panel_top2", "valid_acc")] <= 1.0
    assert v[("chapter", "wall_s")] > 0 and v[("chapter", "peak_rss_mb")] > 0


def test_notebook_02_exercises_wait_for_answers_and_the_quiz_renders(result):
    """The student's copy has empty answers: "Run all" goes through, each check says so, the quiz shows."""
    from tlkit import course, exercises

    done = course.executed_summary(result.notebook)
    assert set(done["checks"]) == {ex.id for ex in exercises.all_exercises(2)}
    assert all("not answered yet" in text for text in done["checks"].values()), done["checks"]
    assert done["quiz_widget"]
