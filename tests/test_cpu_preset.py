"""Every chapter on the default CPU preset: all claims hold and memory stays under 1.5 GB (issue 14).

Every chapter runs in every test run and in CI: 15 s (chapter 1) to about 5 minutes per chapter on 2 idle
cores, about 20 minutes for all five (README). They are marked ``cpu_preset``, so ``-m "not cpu_preset"``
leaves them out of a quick local loop. The gpu-preset dry runs at the bottom are fast: they build
each chapter's gpu-preset data and models on the CPU and train a few steps, which catches shape,
config and data-size errors that no CPU run would.
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb"))   # every chapter, 5 too
PEAK_LIMIT_MB = 1.5 * 1024     # the kernel's own data (peak_anon_mb): what a memory limit cannot reclaim
RESIDENT_LIMIT_MB = 2 * 1024   # everything resident (peak_rss_mb, shared-library pages too): Binder's kernel limit


def check_records(name: str, records: list[dict]) -> list[str]:
    """What is wrong with one chapter's records: too few claims, a claim that does not hold, no
    time/memory rows, the kernel's own data (anonymous memory) above 1.5 GB at its peak, or everything
    resident above 2 GB. Empty when all is well.

    Why two numbers: ``peak_rss_mb`` (``VmHWM``) also counts the mapped pages of shared libraries
    (PyTorch's CUDA build maps ~0.3 GB of them even without a GPU), and that part varies with how the
    same wheels were installed: after the same imports, two venvs of one lock on one machine had 267 and
    353 MB of them, with identical anonymous memory, and a fresh-clone CI run measured chapters 2-5
    0.1-0.25 GB higher than the same chapters in an older venv. The OS can drop those pages under memory
    pressure; the anonymous part it cannot, so that is what the 1.5 GB target checks."""
    problems = []
    claims = [r for r in records if r["method"] == "claim"]
    if len(claims) < 3:
        problems.append(f"{name}: {len(claims)} claim rows, need at least 3")
    problems += [f"{name}: claim {r['metric']!r} does not hold: {r.get('text', '')} ({r.get('numbers', '')}; "
                 f"rule {r.get('rule', '')})" for r in claims if r["value"] != 1.0]
    res = {r["metric"]: r["value"] for r in records if r["method"] == "chapter"}
    for metric in ("wall_s", "cpu_s", "peak_rss_mb", "peak_anon_mb"):
        if metric not in res:
            problems.append(f"{name}: no {metric} row (report.start_resources / report.record_resources)")
    if res.get("peak_anon_mb", 0) > PEAK_LIMIT_MB:
        problems.append(f"{name}: the kernel's own data peaked at {res['peak_anon_mb']:.0f} MB, above "
                        f"{PEAK_LIMIT_MB:.0f} MB")
    if res.get("peak_rss_mb", 0) > RESIDENT_LIMIT_MB:
        problems.append(f"{name}: peak resident memory {res['peak_rss_mb']:.0f} MB is above {RESIDENT_LIMIT_MB:.0f} MB")
    return problems


def test_check_records_flags_failed_claims_missing_rows_and_memory():
    ok = [{"method": "claim", "metric": f"c{i}", "value": 1.0} for i in range(3)] + [
        {"method": "chapter", "metric": m, "value": v}
        for m, v in (("wall_s", 60), ("cpu_s", 100), ("peak_rss_mb", 1700), ("peak_anon_mb", 1200))]
    assert check_records("ch", ok) == []     # 1.7 GB resident is fine when the kernel's own data is 1.2 GB
    bad = [dict(r) for r in ok]
    bad[0]["value"] = 0.0
    bad[-1]["value"] = 1600
    problems = check_records("ch", bad[:4] + bad[5:])   # no cpu_s row
    assert any("'c0' does not hold" in p for p in problems)
    assert any("own data peaked at 1600 MB" in p for p in problems) and any("no cpu_s" in p for p in problems)
    assert any("need at least 3" in p for p in check_records("ch", ok[3:]))
    bad = [dict(r) for r in ok]
    bad[-2]["value"] = 2100
    assert any("resident memory 2100 MB" in p for p in check_records("ch", bad))
    assert any("no peak_anon_mb" in p for p in check_records("ch", ok[:-1]))


# Every chapter, in every run and in CI. On 2 idle cores they took 15 s, 2.5-5 min, ~5 min, 3.2 min and 5 min
# (README); on a machine shared with other heavy jobs they take many times longer (threads contend), which is
# why the per-cell limit stays generous.
@pytest.mark.cpu_preset
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_on_the_cpu_preset(path, tmp_path):
    from tlkit.runner import run_notebook

    keep = os.environ.get("TLKIT_CPU_PRESET_OUT")   # a folder to keep the executed chapters and results.json in
    out_dir = Path(keep) / path.stem if keep else tmp_path
    result = run_notebook(path, smoke=False, out_dir=out_dir, timeout=3600, env={"TLKIT_PRESET": "cpu"})
    if keep:
        (out_dir / "results.json").write_text(json.dumps(result.records, indent=1, default=str))
    assert result.ok, result.error
    assert all(r["preset"] == "cpu" for r in result.records if r["method"] == "claim")
    problems = check_records(path.stem, result.records)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- gpu preset, dry run on CPU
def preset_sizes(path: Path, dict_name: str) -> dict:
    """The ``{"smoke": ..., "cpu": ..., "gpu": ...}`` size table a chapter defines as ``NAME = {...}[P]``,
    read from the notebook's source without running it (the literal must stay a plain literal)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == dict_name for t in node.targets):
                value = node.value.value if isinstance(node.value, ast.Subscript) else node.value
                return _dict_call(value)
    raise LookupError(f"{path.name} defines no {dict_name} table")


def _dict_call(node: ast.AST) -> dict:
    """``{"cpu": dict(a=1, ...), ...}`` or a plain literal -> a dict."""
    assert isinstance(node, ast.Dict), "the size table must be a dict literal"
    return {ast.literal_eval(k): ({kw.arg: ast.literal_eval(kw.value) for kw in v.keywords}
                                  if isinstance(v, ast.Call) else ast.literal_eval(v))
            for k, v in zip(node.keys, node.values)}


SIZE_TABLES = {"03": "SIZES", "04": "SIZES"}


@pytest.mark.parametrize("chapter", sorted(SIZE_TABLES))
def test_every_preset_sets_the_same_sizes(chapter):
    path = next(p for p in CHAPTERS if p.stem.startswith(chapter))
    sizes = preset_sizes(path, SIZE_TABLES[chapter])
    assert set(sizes) == {"smoke", "cpu", "gpu"}
    assert set(sizes["gpu"]) == set(sizes["cpu"]) == set(sizes["smoke"]), "a preset lacks a size the others set"


def test_chapter_4_gpu_preset_dry_run_on_cpu():
    import torch

    from tlkit import adapt, data, train

    g = preset_sizes(next(p for p in CHAPTERS if p.stem.startswith("04")), "SIZES")["gpu"]
    Xs, ys = data.load_digits("mnist", size=28, rgb=True)
    for target in ("mnist_m", "uci"):
        Xt, yt = data.load_digits(target, size=28, rgb=True)
        pair = adapt.make_pair(target, (Xs, ys), (Xt, yt), n_source=g["n_train"], n_target=g["n_train"],
                               n_test=g["n_test"])
        small = adapt.DomainPair(pair.name, pair.source_train, tuple(t[:200] for t in pair.source_test),
                                 pair.target_train, tuple(t[:200] for t in pair.target_test))
        for method in adapt.METHODS + (adapt.REFERENCE,):
            torch.set_num_threads(1)
            model, state = adapt.train_run(method, small, seed=g["seeds"][-1], steps=3, batch_size=g["batch_size"],
                                           device="cpu", eval_every=3)
            assert state.status == "finished" and state.step == 3, (target, method, state.message)
            if method == "source_only":   # the AdaBN control at the gpu preset's sizes
                train.evaluate(adapt.adabn(model, pair.target_train[0]), small.loaders()["target"])


def run_data_cell(prefix: str, preset: str) -> tuple[dict, dict]:
    """A chapter's data cell (the one drawing ``data.budget(sp.test, ...)``), run as written with one
    preset's sizes; returns (the names it defined, the sizes)."""
    from tlkit import data

    path = next(p for p in CHAPTERS if p.stem.startswith(prefix))
    sizes = preset_sizes(path, "SIZES")[preset]
    cell = next(c.source for c in nbformat.read(path, as_version=4).cells
                if c.cell_type == "code" and "data.budget(sp.test" in c.source)
    scope = {"data": data, "S": sizes, "print": lambda *a, **k: None}
    exec(compile(cell, f"{path.name}:data cell", "exec"), scope)   # noqa: S102 -- the chapter's own cell
    return scope, sizes


def test_chapter_2_gpu_preset_data_sizes_fit_the_data():
    """Chapter 2's data cell, run as written with the gpu preset's sizes: every balanced subset it draws
    must exist (the movie test split has 999 positive snippets, so 1,000 per class cannot be drawn)."""
    for preset in ("cpu", "gpu"):
        scope, sizes = run_data_cell("02", preset)
        assert len(scope["test"]) == sizes["n_test"] // 2 * 2
        assert len(scope["pool"]) == sizes["n_pool"] // 2 * 2


def test_chapter_3_gpu_preset_budgets_fit_the_pool():
    s = preset_sizes(next(p for p in CHAPTERS if p.stem.startswith("03")), "SIZES")
    for preset, g in s.items():
        assert max(g["budgets"]) <= g["pool_per_class"], preset
        assert g["n_test"] // 10 <= 1000, preset          # Fashion-MNIST's test set has 1,000 images per class
        assert g["pool_per_class"] <= 6000, preset        # and its training set 6,000


def _chapter_3_settings(sizes: dict):
    """The chapter's own ``settings = vision.SweepSettings(...)`` statement, run with ``S = sizes``."""
    from tlkit import vision

    path = next(p for p in CHAPTERS if p.stem.startswith("03"))
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or "vision.SweepSettings(" not in cell.source:
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "settings":
                scope = {"vision": vision, "S": sizes}
                exec(compile(ast.Module([node], []), f"{path.name}:settings", "exec"), scope)  # noqa: S102
                return scope["settings"]
    raise LookupError(f"{path.name} has no `settings = vision.SweepSettings(...)` statement")


def test_chapter_3_every_preset_trains_longer_on_larger_budgets_and_the_gpu_preset_runs():
    """Issue 14: training length scales with the label budget on every preset (a fixed step count made
    fine-tuning worse with more labels), and the gpu preset's settings train a CNN run (a dry run on CPU:
    its image size and recipes, a tiny pool, a few steps)."""
    import dataclasses

    import numpy as np

    from tlkit import data, vision

    sizes = preset_sizes(next(p for p in CHAPTERS if p.stem.startswith("03")), "SIZES")
    for preset, s in sizes.items():
        settings = _chapter_3_settings(s)
        steps = [settings.steps_for(10 * b) for b in s["budgets"]]
        assert steps == sorted(steps) and steps[-1] > steps[0], (preset, steps)
        # at least one pass over the largest budget's images
        assert steps[-1] * min(settings.batch_size, 10 * s["budgets"][-1]) >= 10 * s["budgets"][-1], preset
    g = _chapter_3_settings(sizes["gpu"])
    X, y = data.load_fashion_mnist("test")
    idx = data.budget_indices(y, 2, seed=0)
    dry = dataclasses.replace(g, epochs=1, min_steps=1, device="cpu")
    run = vision.BudgetSweep(X[idx], y[idx], X[idx[:10]], y[idx[:10]], dry)
    for method in ("fine-tune last N", "fine-tune all"):
        out = run(method=method, budget=1, seed=sizes["gpu"]["cnn_seeds"][-1])
        assert out["steps"] == 1 and 0.0 <= out["acc"] <= 1.0, method
    assert np.isfinite(run(method="small CNN (scratch)", budget=2, seed=0)["acc"])


def test_chapter_5_every_preset_data_sizes_fit_the_data():
    """Chapter 5's data cell, run as written with each preset's sizes: the teacher's labelled set, the
    student's pool (drawn from what the teacher never sees), validation and test must all exist. The
    gpu preset's first run on a GPU failed here: 2,000 pool snippets per class where 1,997 were left."""
    for preset in ("cpu", "gpu"):
        scope, sizes = run_data_cell("05", preset)
        for name, key in (("teacher_df", "n_teacher"), ("pool", "n_pool"), ("valid", "n_valid"), ("test", "n_test")):
            assert len(scope[name]) == sizes[key] // 2 * 2, (preset, name)
        assert max(sizes["budgets"]) * 2 <= len(scope["pool"]), preset
