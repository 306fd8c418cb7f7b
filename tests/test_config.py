import dataclasses

import pytest

from tlkit.config import ConfigError, TrainConfig


def test_defaults_are_valid_and_replace_works():
    cfg = TrainConfig()
    new = dataclasses.replace(cfg, lr=3e-4, epochs=2)
    assert (new.lr, new.epochs) == (3e-4, 2)
    assert cfg.lr == 1e-3  # frozen: the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0


@pytest.mark.parametrize("field,value,words", [
    ("lr", "abc", "lr must be a number"),
    ("lr", "1e-3", "lr must be a number"),
    ("lr", -1e-3, "lr must be a number > 0"),
    ("lr", 0, "lr must be a number > 0"),
    ("lr", float("nan"), "lr must be finite"),
    ("epochs", 0, "epochs must be a whole number >= 1"),
    ("epochs", 2.5, "epochs must be a whole number"),
    ("batch_size", "32", "batch_size must be a whole number"),
    ("lr_decay", 1.5, "lr_decay must be a number > 0 and <= 1"),
    ("optimizer", "adamx", "optimizer must be one of"),
    ("schedule", "cosine", "schedule must be one of"),
    ("warmup", 2.0, "warmup must be a number >= 0 and <= 1"),
    ("frozen", "stem", "frozen must be a tuple of layer-group names"),
    ("train_bn", "yes", "train_bn must be True or False"),
])
def test_bad_values_name_the_field(field, value, words):
    with pytest.raises(ConfigError, match=words) as info:
        TrainConfig(**{field: value})
    assert f"TrainConfig.{field}" in str(info.value)


def test_lrs_values_validated_and_whole_floats_accepted():
    with pytest.raises(ConfigError, match=r"lrs\['head'\]"):
        TrainConfig(lrs={"head": "fast"})
    assert TrainConfig(epochs=3.0).epochs == 3
    assert TrainConfig(lrs={"head": 1}).lrs == {"head": 1.0}


def test_to_dict_is_plain():
    d = TrainConfig(frozen=("stem",), lrs={"head": 0.1}).to_dict()
    assert d["frozen"] == ["stem"] and d["lrs"] == {"head": 0.1} and d["epochs"] == 3
