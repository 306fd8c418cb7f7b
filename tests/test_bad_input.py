"""Bad input, table by table: every TrainConfig field, fit's data and settings, every data loader
and every CLI subcommand. Each case checks that the error names the field or argument and says what
to do, and for fit that nothing was lost: the weights are untouched when the run is refused, and the
history is kept when it fails later. (The panel's controls have their own table in
tests/test_bad_input_panel.py.)"""
from __future__ import annotations

import copy
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from tlkit import cli, data, toy, train
from tlkit.config import ConfigError, TrainConfig
from tlkit.train import TrainingError, fit

# ----------------------------------------------------------------------------- TrainConfig fields
# (field, garbage, words the message must contain besides "TrainConfig.<field>" and "Pass e.g.")
CONFIG_CASES = [
    ("epochs", "three", "whole number >= 1"), ("epochs", None, "whole number"), ("epochs", 0, ">= 1"),
    ("epochs", -2, ">= 1"), ("epochs", 2.5, "whole number"), ("epochs", float("inf"), "whole number"),
    ("epochs", [3], "whole number"), ("epochs", True, "whole number"),
    ("lr", "1e-3", "not a string"), ("lr", None, "a number > 0"), ("lr", -1e-3, "> 0"), ("lr", 0, "> 0"),
    ("lr", float("nan"), "finite"), ("lr", 10**400, "finite"), ("lr", [1e-3], "a number"), ("lr", False, "a number"),
    ("lr_decay", 1.5, "<= 1"), ("lr_decay", 0, "> 0"), ("lr_decay", "half", "a number"),
    ("lrs", [("head", 0.1)], "dict of layer-group name"), ("lrs", {"head": "fast"}, "lrs['head']"),
    ("lrs", {1: 0.1}, "dict of layer-group name"), ("lrs", {"head": -1.0}, "> 0"),
    ("frozen", "stem", "tuple of layer-group names"), ("frozen", {"stem": False}, "tuple of layer-group names"),
    ("frozen", 5, "tuple of layer-group names"), ("frozen", ("stem", 1), "strings"),
    ("train_bn", "yes", "True or False"), ("train_bn", 1, "True or False"),
    ("batch_size", "32", "whole number"), ("batch_size", 0, ">= 1"), ("batch_size", 3.5, "whole number"),
    ("optimizer", "adamx", "one of adamw, adam, sgd"), ("optimizer", None, "one of"), ("optimizer", ["sgd"], "one of"),
    ("weight_decay", -0.1, ">= 0"), ("weight_decay", "none", "a number"),
    ("momentum", 1.5, "<= 1"), ("momentum", -0.1, ">= 0"),
    ("schedule", "cosine", "one of constant, warmup_cosine, onecycle, linear"), ("schedule", 1, "one of"),
    ("warmup", 2.0, "<= 1"), ("warmup", -0.1, ">= 0"), ("warmup", "10%", "a number"),
    ("grad_clip", 0, "> 0 or None"), ("grad_clip", "1", "a number"), ("grad_clip", float("inf"), "finite"),
    ("max_steps", 0, ">= 1"), ("max_steps", "100", "whole number"), ("max_steps", 10.5, "whole number"),
    ("device", "gpu", "one of auto, cpu, cuda, mps"), ("device", np.array([1, 2]), "one of"),
    ("precision", "fp8", "one of auto, fp32, bf16, fp16"),
    ("seed", 2**64, "<= 4294967295"), ("seed", -1, ">= 0"), ("seed", "42", "whole number"), ("seed", 1.5, "whole number"),
    ("restore_best", "no", "True or False"), ("log_steps", None, "True or False"),
    ("monitor", 3, "metric name"), ("monitor", "", "metric name"), ("monitor", None, "metric name"),
    ("eval_every", 0, ">= 1"), ("eval_every", "10", "whole number"),
]


@pytest.mark.parametrize("field,value,words", CONFIG_CASES, ids=[f"{f}={v!r}"[:40] for f, v, _ in CONFIG_CASES])
def test_config_garbage_names_the_field_and_the_fix(field, value, words):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    msg = str(info.value)
    assert f"TrainConfig.{field}" in msg and words in msg and "Pass e.g." in msg, msg


def test_every_config_field_has_garbage_cases():
    assert {f for f, _, _ in CONFIG_CASES} == set(TrainConfig.field_names())


@pytest.mark.parametrize("kw,expected", [
    ({"epochs": np.int64(3)}, {"epochs": 3}), ({"lr": np.float32(1e-3)}, {"lr": 1e-3}),
    ({"seed": np.uint32(2**32 - 1)}, {"seed": 2**32 - 1}), ({"restore_best": np.bool_(True)}, {"restore_best": True}),
    ({"epochs": 3.0, "max_steps": np.float64(50)}, {"epochs": 3, "max_steps": 50}),
    ({"frozen": ["stem", "block"]}, {"frozen": ("stem", "block")}), ({"frozen": (n for n in ["a"])}, {"frozen": ("a",)}),
])
def test_numpy_scalars_and_sequences_are_accepted_as_plain_values(kw, expected):
    cfg = TrainConfig(**kw)
    for k, v in expected.items():
        assert getattr(cfg, k) == v and type(getattr(cfg, k)) is type(v), k


_garbage = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                     st.text(max_size=6), st.lists(st.integers(), max_size=2), st.tuples(st.text(max_size=3)),
                     st.dictionaries(st.text(max_size=3), st.floats(), max_size=2),
                     st.sampled_from(["adamw", "sgd", "linear", "cpu", "fp32", "valid_acc", "auto", "head"]),
                     st.builds(np.int64, st.integers(-5, 5)), st.builds(np.float32, st.floats(-1, 2, width=32)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(TrainConfig.field_names()), _garbage, max_size=4))
def test_any_value_builds_a_plain_config_or_a_config_error_naming_a_given_field(kw):
    try:
        cfg = TrainConfig(**kw)
    except ConfigError as exc:
        named = re.findall(r"TrainConfig\.(\w+)", str(exc))
        assert named and named[0] in kw, str(exc)
        return
    for name, value in cfg.to_dict().items():  # what a run board stores: plain python values only
        assert value is None or type(value) in (int, float, str, bool, list, dict), (name, value)
        assert not (isinstance(value, float) and not math.isfinite(value)), (name, value)


# ----------------------------------------------------------------------------- fit: data and settings
def _blobs_dl(n=64, batch=16, **kw):
    return DataLoader(toy.blobs(n), batch_size=batch, **kw)


def _labels_dl(y):
    x = torch.randn(len(y), 8)
    return DataLoader(TensorDataset(x, torch.tensor(y)), batch_size=len(y))


def _inputs_only():
    return DataLoader(toy.blobs(32).tensors[0], batch_size=16)  # yields x only


def _dict_batches(key):
    x, y = toy.blobs(32).tensors
    return [{"x": x[i:i + 16], key: y[i:i + 16]} for i in (0, 16)]


def _generator():
    return (b for b in _blobs_dl())


# (id, train_dl, valid_dl, cfg kwargs, fit kwargs, words in the message, refused before training?)
FIT_CASES = [
    ("empty train loader", lambda: _blobs_dl(0), None, {}, {}, r"train_dl yields no batches.*dataset is empty", True),
    ("drop_last leaves none", lambda: _blobs_dl(10, 16, drop_last=True), None, {}, {},
     r"train_dl yields no batches.*drop_last=True.*batch_size of at most 10", True),
    ("empty valid loader", _blobs_dl, lambda: _blobs_dl(0), {}, {}, r"valid_dl yields no batches", True),
    ("empty target loader", _blobs_dl, lambda: {"source": _blobs_dl(), "target": _blobs_dl(0)}, {}, {},
     r"valid_dl\['target'\] yields no batches", True),
    ("label out of range", lambda: _labels_dl([0, 1, 5, 2]), None, {}, {},
     r"label 5 but the model outputs 3 classes.*check num_classes", True),
    ("negative label", lambda: _labels_dl([0, -1, 2, 2]), None, {}, {}, r"label -1 but the model outputs 3", True),
    ("valid label out of range", _blobs_dl, lambda: _labels_dl([0, 7]), {}, {}, r"label 7 but the model outputs 3", False),
    ("float labels", lambda: DataLoader(TensorDataset(torch.randn(8, 8), torch.randn(8, 4)), batch_size=4), None, {},
     {}, r"labels must be class indices.*float32 of shape \(4, 4\)", True),
    ("int32 labels", lambda: DataLoader(TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.int32)),
                                        batch_size=4), None, {}, {}, r"labels must be int64 class indices, got torch\.int32", True),
    ("inputs only", _inputs_only, None, {}, {}, r"yielded a single tensor of shape \(16, 8\).*\(inputs, labels\)", True),
    ("dict without labels", lambda: _dict_batches("target"), None, {}, {},
     r"'labels' \(or 'label'\); its keys are \['target', 'x'\]", True),
    ("generator runs dry", _generator, None, {"epochs": 2}, {}, r"ran dry in epoch 2.*list of batches", False),
    ("schedule without len", _generator, None, {"schedule": "linear"}, {}, r"schedule='linear'.*max_steps", True),
    ("unknown monitor", _blobs_dl, _blobs_dl, {"monitor": "valid_accuracy", "restore_best": True}, {},
     r"monitor='valid_accuracy' is not a metric.*valid_loss, valid_acc, valid_bacc", True),
    ("monitor of no loader", _blobs_dl, _blobs_dl, {"monitor": "test_acc"}, {}, r"loader one of train, valid", True),
    ("unknown train metric", _blobs_dl, _blobs_dl, {"monitor": "train_f1", "restore_best": True}, {},
     r"monitor='train_f1' is not a metric.*train_loss, train_acc", False),
    ("cfg as a dict", _blobs_dl, None, None, {"cfg": {"lr": 0.1}}, r"cfg must be a TrainConfig, got dict", True),
    ("on_error garbage", _blobs_dl, None, {}, {"on_error": "ignore"}, r"on_error must be 'raise' or 'return'", True),
]


@pytest.mark.parametrize("case", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_refuses_bad_data_with_the_fix_and_keeps_what_it_had(case):
    _, make_train, make_valid, cfg_kw, fit_kw, words, refused = case
    fit_kw = dict(fit_kw)
    torch.manual_seed(0)
    model = toy.MLP()
    params = lambda: {n: p.detach().clone() for n, p in model.named_parameters()}  # noqa: E731
    before = params()  # weights; BatchNorm's running statistics may see the one batch that failed
    cfg = fit_kw.pop("cfg", None) if cfg_kw is None else TrainConfig(**{"epochs": 1, **cfg_kw})
    with pytest.raises((TrainingError, TypeError, ValueError)) as info:
        fit(model, make_train(), make_valid() if make_valid else None, cfg, **fit_kw)
    assert re.search(words, str(info.value)), str(info.value)
    after = params()
    if refused:  # nothing trained: every weight is as it was
        assert all(torch.equal(before[k], after[k]) for k in before)
    else:  # failed after training a while: the state keeps the history up to the failure
        state = info.value.state
        assert state.status == "failed" and state.step > 0 and words.split(".*")[0][:10] in state.message
        if "monitor" in words or "dry" in words:
            assert len(state.history) == 1


def test_return_mode_keeps_the_history_of_a_failed_run():
    state = fit(toy.MLP(), _generator(), None, TrainConfig(epochs=3), on_error="return")
    assert state.status == "failed" and len(state.history) == 1 and "ran dry" in state.message


def test_exploding_finite_loss_is_diverged_not_finished():
    torch.manual_seed(0)
    state = fit(toy.MLP(), _blobs_dl(256, 32), _blobs_dl(), TrainConfig(epochs=2, optimizer="adamw", lr=1e3))
    assert state.status == "diverged" and "lower it (e.g. by 10x)" in state.message


@pytest.mark.parametrize("dl", [[], iter([])], ids=["empty list", "exhausted iterator"])
def test_evaluate_on_an_empty_loader_says_so(dl):
    with pytest.raises(train.DataError, match="evaluation loader yielded no batches.*valid_dl=None"):
        train.evaluate(toy.MLP(), dl)


def test_a_loader_without_len_trains_to_max_steps():
    state = fit(toy.MLP(), _generator(), None, TrainConfig(epochs=5, max_steps=3))
    assert state.status == "finished" and state.step == state.total_steps == 3


def test_friendly_error_hint_fires_on_torch_wording():
    msg = train.friendly_error(IndexError("Target 5 is out of bounds."))
    assert "outside the model's classes" in msg and "num_classes" in msg


def test_monitor_may_name_a_loader_whose_name_has_an_underscore():
    """Chapter 4's panel validates on {"source_valid": ..., "target_test": ...}: monitor="source_valid_acc" is a
    metric of that run (it was refused: the loader was read as the text before the first "_")."""
    dl = train.loader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), 4)
    valid = {"source_valid": dl, "target_test": dl}
    state = fit(torch.nn.Linear(4, 2), dl, valid, TrainConfig(epochs=1, monitor="source_valid_acc"))
    assert state.status == "finished" and state.monitor == "source_valid_acc"
    with pytest.raises(TrainingError, match="source_valid_accuracy.*source_valid_loss"):
        fit(torch.nn.Linear(4, 2), dl, valid, TrainConfig(epochs=1, monitor="source_valid_accuracy"))
    with pytest.raises(TrainingError, match="names no loader"):
        fit(torch.nn.Linear(4, 2), dl, valid, TrainConfig(epochs=1, monitor="source_acc"))


def test_friendly_error_keeps_the_fix_of_a_long_message():
    """A missing optional asset (e.g. chapter 3's panel switched to EfficientNet-Lite0 without its pack) lists
    every source tried before its fix: the panel's shortened message must still say how to fix it."""
    from tlkit.assets import AssetError

    tried = "\n".join(f"  {i}. source {i}: not found " + "x" * 120 for i in range(1, 6))
    msg = train.friendly_error(AssetError(f"asset 'efficientnet-lite0' is not available. Tried:\n{tried}\n"
                                          "Fix: tlkit assets install efficientnet-lite0"))
    assert len(msg) < 700 and msg.startswith("AssetError: asset 'efficientnet-lite0'")
    assert msg.endswith("Fix: tlkit assets install efficientnet-lite0"), msg


# ----------------------------------------------------------------------------- data loaders
_frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})
DATA_CASES = [
    ("sentiment split on one file", lambda: data.load_sentiment("movies", split="test"), ValueError,
     r"split='test' applies only to the online domains.*data\.split\(df"),
    ("sentiment split=train on one file", lambda: data.load_sentiment("movies", split="train"), ValueError, r"data\.split"),
    ("sentiment neutral online", lambda: data.load_sentiment("sst2", neutral=0.3), ValueError,
     r"neutral applies only to the VADER domains"),
    ("sentiment neutral text", lambda: data.load_sentiment("movies", neutral="high"), ValueError, r"neutral must be >= 0"),
    ("sentiment neutral too big", lambda: data.load_sentiment("movies", neutral=5), ValueError, r"< 4"),
    ("sentiment unknown kwarg", lambda: data.load_sentiment("movies", spilt="test"), TypeError,
     r"unknown argument\(s\) spilt; it accepts: domain, neutral, split"),
    ("sentiment unknown domain", lambda: data.load_sentiment("yelp"), ValueError, r"known domains: movies"),
    ("digits huge size", lambda: data.load_digits("mnist", size=10**5), ValueError,
     r"size must be a whole number of pixels from 8 to 224.*resize per batch"),
    ("digits tiny size", lambda: data.load_digits("mnist", size=4), ValueError, r"from 8 to 224"),
    ("digits float size", lambda: data.load_digits("uci", size=28.5), ValueError, r"size must be a whole number"),
    ("digits text size", lambda: data.load_digits("uci", size="28"), ValueError, r"size must be a whole number"),
    ("digits seed on fixed set", lambda: data.load_digits("mnist", seed=1), ValueError,
     r"seed applies only to 'mnist_m'.*split_arrays"),
    ("digits split offline", lambda: data.load_digits("uci", split="test"), ValueError,
     r"split='test' applies only to the online sets.*split_arrays"),
    ("digits negative seed", lambda: data.load_digits("mnist_m", seed=-1), ValueError, r"seed must be a whole number >= 0"),
    ("digits rgb text", lambda: data.load_digits("mnist", rgb="yes"), ValueError, r"rgb must be True, False or None"),
    ("digits unknown kwarg", lambda: data.load_digits("mnist", colour=True), TypeError, r"colour; it accepts: name, size"),
    ("digits unknown set", lambda: data.load_digits("emnist"), ValueError, r"known: mnist, uci"),
    ("fashion bad split", lambda: data.load_fashion_mnist(split="valid"), ValueError, r"'train' or 'test'"),
    ("fashion unknown kwarg", lambda: data.load_fashion_mnist(size=32), TypeError, r"size; it accepts: split"),
    ("budget on empty frame", lambda: data.budget(_frame.iloc[:0], 5), ValueError, r"budget got no rows.*check the filter"),
    ("split on empty frame", lambda: data.split(_frame.iloc[:0]), ValueError, r"split got no rows"),
    ("split_arrays on empty", lambda: data.split_arrays(np.zeros((0, 2)), np.zeros(0)), ValueError, r"split_arrays got no rows"),
    ("budget too large", lambda: data.budget(_frame, 5), ValueError, r"use at most 2 per class"),
    ("budget zero", lambda: data.budget(_frame, 0), ValueError, r"positive integer or None"),
    ("budget without label", lambda: data.budget(_frame[["text"]], 1), ValueError, r"needs a 'label' column"),
    ("split bad fractions", lambda: data.split(_frame, valid=0.6, test=0.5), ValueError, r"valid \+ test < 1"),
    ("split_arrays lengths", lambda: data.split_arrays(np.zeros((4, 2)), np.zeros(3)), ValueError, r"4 rows but y has 3"),
    ("photos take no args", lambda: data.sample_photos(size=8), TypeError, r"unknown argument\(s\) size"),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_loaders_reject_what_they_would_ignore(case):
    _, call, kind, words = case
    with pytest.raises(kind) as info:
        call()
    assert re.search(words, str(info.value)), str(info.value)


# ----------------------------------------------------------------------------- CLI
def _file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    return str(tmp_path / "f.txt")


CLI_CASES = [
    ("run --out a file", lambda tmp: ["run", "01", "--out", _file(tmp)], 2, r"cannot write results to --out .*it is a file"),
    ("run --out in /proc", lambda tmp: ["run", "01", "--out", "/proc/tlkit-x"], 2, r"cannot write results to --out /proc"),
    ("run an unknown chapter", lambda tmp: ["run", "99", "--out", str(tmp)], 2, r"no chapter matches '99'; chapters: 01"),
    ("run nothing named", lambda tmp: ["run", "--out", str(tmp)], 2, r"name chapters to run.*--all"),
    ("run no notebooks", lambda tmp: ["run", "01", "--notebooks", str(tmp)], 2, r"no chapters found in"),
    ("run bad preset", lambda tmp: ["run", "01", "--preset", "garbage"], 2, r"--preset: invalid choice: 'garbage'"),
    ("run bad timeout", lambda tmp: ["run", "01", "--timeout", "-5"], 2, r"--timeout: expected a whole number of seconds > 0"),
    ("unknown subcommand", lambda tmp: ["bogus"], 2, r"invalid choice: 'bogus'"),
    ("env unknown flag", lambda tmp: ["env", "--bogus"], 2, r"unrecognized arguments: --bogus"),
    ("assets install unknown", lambda tmp: ["assets", "install", "nonexistent"], 2, r"unknown asset 'nonexistent'; known"),
    ("assets unknown command", lambda tmp: ["assets", "bogus"], 2, r"invalid choice: 'bogus'"),
    ("notebooks into a file", lambda tmp: ["notebooks", _file(tmp)], 2, r"is a file; give a folder"),
    ("course without a verb", lambda tmp: ["course"], 2, r"required"),
    ("course grade nowhere", lambda tmp: ["course", "grade", str(tmp / "none")], 2, r"no submissions folder"),
]


def _main(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse errors
        return exc.code


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_clear_line_and_exit_2(case, tmp_path, capsys):
    _, argv, code, words = case
    assert _main(argv(tmp_path)) == code
    out = capsys.readouterr()
    assert re.search(words, out.err + out.out), out.err + out.out
    assert "Traceback" not in out.err + out.out


def test_env_reports_a_bad_tlkit_preset(monkeypatch, capsys):
    monkeypatch.setenv("TLKIT_PRESET", "garbage")
    assert cli.main(["env"]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "TLKIT_PRESET 'garbage'" in line and "choose one of auto, smoke, cpu, gpu" in line and "preset 'cpu'" not in line
