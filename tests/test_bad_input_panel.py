"""Garbage into every control of the panel: a message that names the field, and nothing lost.

Each case starts from a panel with one finished run, feeds one bad value the
way a user would (``panel.set``, a typed widget value then Train, a scripted
``panel.train``, a pasted config string), and checks that the message names
the field (and the choices where there are some), that no run started, that
the earlier run is still on the board, and that the model's weights did not
change.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("ipywidgets")

from tlkit import surgery, toy, train  # noqa: E402
from tlkit.config import ConfigError, TrainConfig  # noqa: E402
from tlkit.ui import TrainPanel  # noqa: E402

from panel_helpers import one_thread  # noqa: E402,F401 - an autouse fixture


def loaders(batch_size: int = 32, n_train: int = 128):
    return (train.loader(toy.blobs(n_train, seed=0), batch_size, shuffle=True),
            train.loader(toy.blobs(64, seed=1), 64))


@pytest.fixture(scope="module")
def panel():
    p = TrainPanel(toy.MLP(), loaders_fn=loaders, cfg=TrainConfig(epochs=1, lr=3e-3), background=False,
                   extras={"n_train": (128, 64, 256, 64), "method": ["plain", "smooth"], "flip": False,
                           "weight": 0.5, "tag": "x"}, key="bad-input-panel")
    p.train(block=True)
    return p


@pytest.fixture
def fresh_state(panel):
    """The panel as the first run left it; after each case: same board, same weights, no run going."""
    panel.manager.load(panel.config_string(1))
    weights = train.clone_weights(panel.model)
    yield panel
    assert len(panel.history) == 1 and panel.history[0].state.status == "finished"
    assert not panel.running
    after = train.clone_weights(panel.model)
    assert all(torch.equal(after[k], weights[k]) for k in weights), "a bad value changed the weights"


# (settings for panel.set, words the error must contain)
SET_CASES = [
    ({"lr": None}, ["lr"]),
    ({"lr": [1e-3]}, ["lr"]),
    ({"epochs": "three"}, ["epochs", "whole number"]),
    ({"epochs": 2.5}, ["epochs"]),
    ({"epochs": True}, ["epochs"]),
    ({"batch_size": "32"}, ["batch_size"]),
    ({"seed": 1.5}, ["seed"]),
    ({"seed": "0"}, ["seed"]),
    ({"lr_decay": 0.0}, ["lr_decay", "0.01", "1.0"]),
    ({"lr_decay": 1.5}, ["lr_decay"]),
    ({"lr_decay": "half"}, ["lr_decay"]),
    ({"optimizer": "adamx"}, ["optimizer", "adamw, adam, sgd"]),
    ({"optimizer": None}, ["optimizer", "adamw"]),
    ({"schedule": "cosine"}, ["schedule", "warmup_cosine"]),
    ({"train_bn": "yes"}, ["train_bn", "True or False"]),
    ({"fresh": 1}, ["fresh", "True or False"]),
    ({"train_last": 0}, ["train_last", "1 and 3"]),
    ({"train_last": 4}, ["train_last", "layer0"]),
    ({"train_last": "2"}, ["train_last"]),
    ({"frozen": "layer0"}, ["frozen", "tuple"]),
    ({"frozen": ("encoder",)}, ["encoder", "layer0"]),
    ({"name": 123}, ["name"]),
    ({"n_train": 100}, ["n_train", "64", "256"]),
    ({"n_train": 1000}, ["n_train"]),
    ({"method": "dann"}, ["method", "['plain', 'smooth']"]),
    ({"flip": "no"}, ["flip", "True or False"]),
    ({"weight": "heavy"}, ["weight", "number"]),
    ({"tag": 5}, ["tag", "string"]),
    ({"max_steps": 0}, ["max_steps"]),
    ({"warmup": 2.0}, ["warmup"]),
    ({"grad_clip": -1.0}, ["grad_clip"]),
    ({"monitor": 3}, ["monitor"]),
    ({"device": "tpu"}, ["device"]),
]


@pytest.mark.parametrize("settings, words", SET_CASES, ids=[next(iter(c[0])) + "=" + repr(next(iter(c[0].values())))
                                                             for c in SET_CASES])
def test_set_rejects_garbage_naming_the_field(fresh_state, settings, words):
    p = fresh_state
    before = dict(p.manager.values)
    with pytest.raises((ConfigError, surgery.GroupError)) as info:
        p.set(**settings)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert p.manager.values == before                   # nothing half-applied
    assert str(info.value) in p.message                 # the panel says it too


# garbage a user can type into a box (the widget accepts the text or number; Train must refuse it)
TYPED_CASES = [
    ("lr", "abc", ["head LR", "not a number"]),
    ("lr", "", ["head LR"]),
    ("lr", "0", ["lr"]),
    ("lr", "-1e-3", ["lr"]),
    ("lr", "nan", ["lr"]),
    ("lr", "1e400", ["lr"]),
    ("epochs", 0, ["epochs"]),
    ("epochs", -3, ["epochs"]),
    ("batch_size", 0, ["batch_size"]),
    ("seed", -1, ["seed"]),
]


@pytest.mark.parametrize("field, value, words", TYPED_CASES, ids=[f"{f}={v!r}" for f, v, _ in TYPED_CASES])
def test_typed_garbage_is_refused_on_train(fresh_state, field, value, words):
    p = fresh_state
    p._controls[field].value = value
    p._train_btn.click()
    assert "Not started" in p.message
    for w in words:
        assert w in p.message, (w, p.message)
    with pytest.raises(ConfigError):
        p.train(block=True)


def test_every_group_frozen_is_refused(fresh_state):
    p = fresh_state
    for t in p._toggles:
        t.value = False
    p._train_btn.click()
    assert "Not started" in p.message and "nothing to train" in p.message


def test_unknown_setting_lists_the_known_ones(fresh_state):
    with pytest.raises(KeyError, match="learning_rate.*known: .*lr"):
        fresh_state.set(learning_rate=1e-3)


def test_garbage_config_strings(fresh_state):
    p = fresh_state
    for text, words in [("lr=0.1", ["tlkit-run:"]), ("tlkit-run:{lr", ["not valid"]),
                        ('tlkit-run:{"learning_rate":1}', ["unknown settings", "learning_rate"]),
                        ('tlkit-run:{"optimizer":"adamx"}', ["optimizer", "adamw"]),
                        ('tlkit-run:[1,2]', ["settings by name"])]:
        before = dict(p.manager.values)
        with pytest.raises(ConfigError) as info:
            p.load(text)
        assert all(w in str(info.value) for w in words), str(info.value)
        assert "Not loaded" in p.message and p.manager.values == before


def test_repeat_with_a_bad_number_of_seeds(fresh_state):
    for k in (1, 0, 51, "3", 2.0):
        with pytest.raises(ConfigError, match="seeds"):
            fresh_state.repeat(k)


def test_override_given_to_train_is_checked_before_anything_runs(fresh_state):
    with pytest.raises(ConfigError, match="max_steps"):
        fresh_state.train(block=True, max_steps="fifty")


def test_panel_constructor_rejects_unknown_frozen_group():
    with pytest.raises(surgery.GroupError, match="body"):
        TrainPanel(toy.MLP(), *loaders(), cfg=TrainConfig(frozen=("body",)), background=False)


def test_lr_box_never_raises_anything_but_a_config_error(fresh_state):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    p = fresh_state

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.text(max_size=12))
    def check(text):
        p._controls["lr"].value = text
        try:
            cfg = p.config()
        except ConfigError as exc:
            assert "LR" in str(exc) or "lr" in str(exc)
        else:
            assert cfg.lr == float(text.strip()) and cfg.lr > 0

    check()
