"""Plain, frozen configuration objects, validated with errors that name the field.

Change a config with ``dataclasses.replace(cfg, lr=3e-4)``; a bad value raises
``ConfigError`` at construction, before any training starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "warmup_cosine", "onecycle", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and what to do."""


def _number(name: str, value: Any, *, positive: bool = False, min_value: float | None = None,
            max_value: float | None = None, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"TrainConfig.{name} must be a number, got {value!r} ({type(value).__name__}); "
            f"pass a float such as {name}=1e-3, not a string")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"TrainConfig.{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"TrainConfig.{name} must be > 0, got {value!r}")
    if min_value is not None and value < min_value:
        raise ConfigError(f"TrainConfig.{name} must be >= {min_value}, got {value!r}")
    if max_value is not None and value > max_value:
        raise ConfigError(f"TrainConfig.{name} must be <= {max_value}, got {value!r}")
    return value


def _integer(name: str, value: Any, *, min_value: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(
                f"TrainConfig.{name} must be a whole number >= {min_value}, got {value!r} "
                f"({type(value).__name__})")
    if value < min_value:
        raise ConfigError(f"TrainConfig.{name} must be >= {min_value}, got {value!r}")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"TrainConfig.{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``fit`` needs besides the model and the data.

    Learning rates: ``lr`` is the head's rate. With layer groups, the group ``d``
    steps below the head gets ``lr * lr_decay ** d`` (``lr_decay=1`` gives every
    group the same rate); ``lrs`` sets chosen groups explicitly by name and wins
    over the decay. ``frozen`` names the groups whose weights must not change
    (``None`` leaves ``requires_grad`` as the model has it).
    """

    epochs: int = 3
    lr: float = 1e-3
    lr_decay: float = 1.0
    lrs: Mapping[str, float] | None = None
    frozen: tuple[str, ...] | None = None
    train_bn: bool = False
    batch_size: int = 32
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup: float = 0.0
    grad_clip: float | None = None
    max_steps: int | None = None
    device: str = "auto"
    precision: str = "auto"
    seed: int | None = 0
    restore_best: bool = False
    monitor: str = "auto"
    log_steps: bool = False
    eval_every: int | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        set_("epochs", _integer("epochs", self.epochs))
        set_("lr", _number("lr", self.lr, positive=True))
        set_("lr_decay", _number("lr_decay", self.lr_decay, positive=True, max_value=1.0))
        if self.lrs is not None:
            if not isinstance(self.lrs, Mapping):
                raise ConfigError(f"TrainConfig.lrs must be a dict of group name -> learning rate, got {self.lrs!r}")
            set_("lrs", {str(k): _number(f"lrs[{k!r}]", v, positive=True) for k, v in self.lrs.items()})
        if self.frozen is not None:
            if isinstance(self.frozen, str) or not all(isinstance(n, str) for n in self.frozen):
                raise ConfigError(f"TrainConfig.frozen must be a tuple of group names, got {self.frozen!r}")
            set_("frozen", tuple(self.frozen))
        set_("batch_size", _integer("batch_size", self.batch_size))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        set_("weight_decay", _number("weight_decay", self.weight_decay, min_value=0.0))
        set_("momentum", _number("momentum", self.momentum, min_value=0.0, max_value=1.0))
        _choice("schedule", self.schedule, SCHEDULES)
        set_("warmup", _number("warmup", self.warmup, min_value=0.0, max_value=1.0))
        set_("grad_clip", _number("grad_clip", self.grad_clip, positive=True, allow_none=True))
        set_("max_steps", _integer("max_steps", self.max_steps, allow_none=True))
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        set_("seed", _integer("seed", self.seed, min_value=0, allow_none=True))
        set_("eval_every", _integer("eval_every", self.eval_every, allow_none=True))
        for flag in ("train_bn", "restore_best", "log_steps"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"TrainConfig.{flag} must be True or False, got {getattr(self, flag)!r}")
        if not isinstance(self.monitor, str):
            raise ConfigError(f"TrainConfig.monitor must be a metric name such as 'valid_acc', got {self.monitor!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for run boards and results files)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = dict(v) if isinstance(v, Mapping) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
