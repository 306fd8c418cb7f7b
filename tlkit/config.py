"""Plain, frozen configuration objects, validated with errors that name the field.

Change a config with ``dataclasses.replace(cfg, lr=3e-4)``; a bad value raises
``ConfigError`` at construction, before any training starts.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "warmup_cosine", "onecycle", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and what to do."""


SEED_MAX = 2**32 - 1  # numpy's limit (np.random.seed); torch accepts more, but one seed must seed both


def _fail(name: str, expected: str, value: Any, example: str) -> ConfigError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ConfigError(f"TrainConfig.{name} must be {expected}; got {shown} ({type(value).__name__}). "
                       f"Pass e.g. {name}={example}")


def _number(name: str, value: Any, *, example: str, positive: bool = False, min_value: float | None = None,
            max_value: float | None = None, allow_none: bool = False) -> float | None:
    """``value`` as a finite float within bounds; numpy scalars count as numbers, bools and strings do not."""
    if value is None and allow_none:
        return None
    bounds = ["> 0"] if positive else [f">= {min_value:g}"] if min_value is not None else []
    bounds += [f"<= {max_value:g}"] if max_value is not None else []
    expected = " ".join(["a number", " and ".join(bounds)]).strip() + (" or None" if allow_none else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(name, expected + " (not a string)" if isinstance(value, str) else expected, value, example)
    try:  # a float32 such as np.float32(1e-3) keeps its short decimal form (0.001, not 0.0010000000474974513)
        value = float(str(value)) if isinstance(value, np.floating) and value.itemsize < 8 else float(value)
    except OverflowError:  # an int too large for a float
        raise _fail(name, f"finite: {expected}", value, example) from None
    if not math.isfinite(value):
        raise _fail(name, f"finite: {expected}", value, example)
    if (positive and value <= 0) or (min_value is not None and value < min_value) or \
            (max_value is not None and value > max_value):
        raise _fail(name, expected, value, example)
    return value


def _integer(name: str, value: Any, *, example: str, min_value: int = 1, max_value: int | None = None,
             allow_none: bool = False) -> int | None:
    """``value`` as an int within bounds; numpy integers and whole floats (3.0) count, bools do not."""
    if value is None and allow_none:
        return None
    expected = f"a whole number >= {min_value}" + (f" and <= {max_value}" if max_value is not None else "") + \
        (" or None" if allow_none else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(name, expected, value, example)
    if not isinstance(value, numbers.Integral):
        if not (math.isfinite(float(value)) and float(value).is_integer()):
            raise _fail(name, expected, value, example)
    value = int(value)
    if value < min_value or (max_value is not None and value > max_value):
        raise _fail(name, expected, value, example)
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, f"one of {', '.join(choices)}", value, repr(choices[0]))
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(name, "True or False", value, "True")
    return bool(value)


def _group_names(value: Any) -> tuple[str, ...]:
    """``frozen`` as a tuple of group names: a dict such as {"stem": False} is refused, not read as names."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, Iterable):
        raise _fail("frozen", "a tuple of layer-group names to freeze (or None)", value, "('stem', 'block')")
    names = tuple(value)
    if not all(isinstance(n, str) for n in names):
        raise _fail("frozen", "a tuple of layer-group names (strings) to freeze", value, "('stem', 'block')")
    return names


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``fit`` needs besides the model and the data.

    Learning rates: ``lr`` is the head's rate. With layer groups, the group ``d``
    steps below the head gets ``lr * lr_decay ** d`` (``lr_decay=1`` gives every
    group the same rate); ``lrs`` sets chosen groups explicitly by name and wins
    over the decay. ``frozen`` names the groups whose weights must not change
    (``None`` leaves ``requires_grad`` as the model has it); a dict is refused, not read as names.
    Numbers may be numpy scalars (``np.int64(3)``, ``np.float32(1e-3)``); they are stored as plain
    ints and floats. ``seed`` runs from 0 to 2**32 - 1 (what numpy accepts). Every bad value raises
    ``ConfigError`` naming the field, what it must be and an example.
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
        set_("epochs", _integer("epochs", self.epochs, example="3"))
        set_("lr", _number("lr", self.lr, positive=True, example="1e-3"))
        set_("lr_decay", _number("lr_decay", self.lr_decay, positive=True, max_value=1.0, example="0.5"))
        if self.lrs is not None:
            if not isinstance(self.lrs, Mapping) or not all(isinstance(k, str) for k in self.lrs):
                raise _fail("lrs", "a dict of layer-group name -> learning rate (or None)", self.lrs,
                            "{'head': 1e-3, 'stem': 1e-4}")
            set_("lrs", {k: _number(f"lrs[{k!r}]", v, positive=True, example="1e-4") for k, v in self.lrs.items()})
        if self.frozen is not None:
            set_("frozen", _group_names(self.frozen))
        set_("batch_size", _integer("batch_size", self.batch_size, example="32"))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        set_("weight_decay", _number("weight_decay", self.weight_decay, min_value=0.0, example="0.01"))
        set_("momentum", _number("momentum", self.momentum, min_value=0.0, max_value=1.0, example="0.9"))
        _choice("schedule", self.schedule, SCHEDULES)
        set_("warmup", _number("warmup", self.warmup, min_value=0.0, max_value=1.0, example="0.1"))
        set_("grad_clip", _number("grad_clip", self.grad_clip, positive=True, allow_none=True, example="1.0"))
        set_("max_steps", _integer("max_steps", self.max_steps, allow_none=True, example="500"))
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        set_("seed", _integer("seed", self.seed, min_value=0, max_value=SEED_MAX, allow_none=True, example="0"))
        set_("eval_every", _integer("eval_every", self.eval_every, allow_none=True, example="100"))
        for flag in ("train_bn", "restore_best", "log_steps"):
            set_(flag, _flag(flag, getattr(self, flag)))
        if not isinstance(self.monitor, str) or not self.monitor:
            raise _fail("monitor", "a metric name such as 'valid_acc' or 'valid_loss', or 'auto'", self.monitor,
                        "'valid_acc'")

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
