"""The training core: one loop, ``fit``, that knows nothing about the model.

Callbacks are plain callables ``cb(event, state, control)`` called at
``fit_start``, ``step_end`` (after each optimizer step), ``eval_end`` (after every
evaluation, mid-epoch with ``eval_every`` or at an epoch's end), ``epoch_end``
(after each pass over the training loader) and ``fit_end``. They read ``State``
and may change only ``Control`` (the panel's Stop button sets
``control.should_stop``). A chapter changes *what one step does* by passing
``step=...`` (chapter 4's DANN step), never by writing a second loop.

No printing, plotting or widgets here: ``import tlkit.train`` pulls in neither
ipywidgets nor matplotlib (a test checks it).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics as _metrics
from . import surgery
from .config import ConfigError, TrainConfig

EVENTS = ("fit_start", "step_end", "eval_end", "epoch_end", "fit_end")


# --------------------------------------------------------------------------- state
@dataclass
class Control:
    """The one object callbacks (and the Stop button) may change."""

    should_stop: bool = False


@dataclass
class State:
    """What a run has done so far. Returned by ``fit`` whether it finished, stopped or failed."""

    cfg: TrainConfig
    epoch: int = 0                      # epochs completed
    step: int = 0                       # optimizer steps taken
    total_steps: int = 0
    steps_per_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)   # one row per evaluation
    steps: list[dict[str, float]] = field(default_factory=list)     # per-step rows if cfg.log_steps
    status: str = "created"             # running, finished, stopped, interrupted, diverged, failed
    message: str = ""
    error: BaseException | None = None
    device: str = "cpu"
    precision: str = "fp32"
    group_lrs: dict[str, float] = field(default_factory=dict)
    trainable_params: int = 0
    total_params: int = 0
    samples_seen: int = 0
    started_at: float = 0.0
    elapsed: float = 0.0
    best: dict[str, float] | None = None
    best_weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    monitor: str = "valid_acc"
    _last: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def last(self) -> dict[str, float]:
        """Metrics of the latest step as floats (reading them syncs the GPU once)."""
        return {k: float(v) for k, v in self._last.items()}

    @property
    def progress(self) -> float:
        """Fraction of the planned steps done, in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples_seen / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        """Seconds left at the current pace (0 when unknown)."""
        if not self.step or not self.total_steps:
            return 0.0
        return self.elapsed / self.step * max(0, self.total_steps - self.step)

    def frame(self):
        """History as a pandas DataFrame, one row per evaluation."""
        import pandas as pd

        return pd.DataFrame(self.history)

    def restore_best(self, model: nn.Module) -> bool:
        """Load the best-so-far weights (kept when ``cfg.restore_best``); False if none."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True


class TrainingError(RuntimeError):
    """Training failed; ``.state`` holds the history and status up to the failure."""

    def __init__(self, message: str, state: State):
        super().__init__(message)
        self.state = state


Callback = Callable[[str, State, Control], None]


@dataclass
class StepContext:
    """What a step function may need besides the model and batch."""

    device: torch.device
    state: State
    cfg: TrainConfig

    @property
    def progress(self) -> float:
        return self.state.progress


# --------------------------------------------------------------------------- device, precision, seeds
def pick_device(preference: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU (or the named one, with a clear error if absent)."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    if preference == "mps" and not has_mps:
        raise RuntimeError("device='mps' was asked for but Apple MPS is not available; use device='auto' or 'cpu'")
    return torch.device(preference)


def pick_precision(device: torch.device, preference: str = "auto") -> str:
    """bf16 on CUDA GPUs that support it, fp16 (with a grad scaler) on older ones, else fp32."""
    if device.type != "cuda":
        if preference in ("bf16", "fp16"):
            return "fp32"  # mixed precision is a CUDA feature here; CPU autocast is slower than fp32
        return "fp32"
    if preference == "auto":
        return "bf16" if native_bf16(device) else "fp16"
    return preference


def native_bf16(device: torch.device) -> bool:
    """True on GPUs with bf16 tensor cores: NVIDIA Ampere (compute capability 8.0) and newer, or ROCm.

    Not ``torch.cuda.is_bf16_supported()``: it answers True on a T4 (7.5, Colab's free GPU) too,
    because bf16 runs there by emulation, much slower than fp16 on its tensor cores."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


_NO_AUTOCAST = contextlib.nullcontext()  # reusable: one object instead of a new one per step


def autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return _NO_AUTOCAST


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) in one call."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader: seed numpy/random from torch's per-worker seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def loader(dataset, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0,
           collate_fn=None, num_workers: int = 0, drop_last: bool = False, **kw) -> torch.utils.data.DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed``."""
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g,
                                       collate_fn=collate_fn, num_workers=num_workers,
                                       worker_init_fn=seed_worker, drop_last=drop_last, **kw)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside (nested) tuples, lists and dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):  # dicts and Hugging Face BatchEncoding
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------- steps and evaluation
class DataError(ValueError):
    """The data given to ``fit``/``evaluate`` cannot be trained on; the message says what to change."""


LABEL_KEYS = ("labels", "label")  # Hugging Face models take "labels"; HF datasets name the column "label"
IGNORE_INDEX = -100               # cross_entropy's default ignore_index: such labels are skipped, not wrong


def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """(inputs, labels) from ``(x, y, ...)`` or a dict with ``labels`` or ``label`` (Hugging Face style).

    Raises ``DataError`` for a batch without labels (a bare tensor, a 1-tuple, a dict without a label key),
    naming what was seen, instead of the dtype error such a batch would cause further down."""
    if isinstance(batch, Mapping):
        key = next((k for k in LABEL_KEYS if k in batch), None)
        if key is None:
            raise DataError(f"a dict batch needs its class labels under 'labels' (or 'label'); its keys are "
                            f"{sorted(map(str, batch))}. Rename the label column (Hugging Face datasets: "
                            "ds.rename_column('<name>', 'labels'))")
        return {k: v for k, v in batch.items() if k != key}, batch[key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, torch.Tensor):
        seen = f"a single tensor of shape {tuple(batch.shape)}"
    else:
        seen = f"a {type(batch).__name__}" + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    raise DataError(f"the loader yielded {seen}, but training needs (inputs, labels) pairs: give the dataset its "
                    "labels, e.g. TensorDataset(x, y), or yield dicts with a 'labels' entry")


def check_labels(logits: torch.Tensor, y: torch.Tensor, *, values: bool = True) -> None:
    """Raise ``DataError`` unless ``y`` holds class indices in ``0..C-1`` for logits ``(N, C)``
    (``-100``, cross-entropy's ignore index, is allowed) or class probabilities shaped like the logits.

    Type and shape checks are free; the range check (``values``) is one ``aminmax`` over the labels:
    free on CPU, but on a GPU it waits for the device, so the training step asks for it only on the
    first step there (evaluation checks on CPU, after the fact)."""
    if not isinstance(y, torch.Tensor):
        raise DataError(f"labels must be a tensor of class indices, got {type(y).__name__}: the loader must "
                        "yield (inputs, labels) pairs")
    if y.is_floating_point() or y.dtype == torch.bool:
        if y.shape == logits.shape:
            return  # class probabilities (soft labels), which cross_entropy accepts
        raise DataError(f"labels must be class indices (an integer tensor of shape (N,)), got {y.dtype} of shape "
                        f"{tuple(y.shape)}: the loader must yield (inputs, labels) pairs with integer labels")
    if y.dtype not in (torch.long, torch.uint8):  # what cross_entropy takes as class indices
        raise DataError(f"labels must be int64 class indices, got {y.dtype}: convert them (y.long(), or "
                        "np.int64 labels in the dataset)")
    if not values or not y.numel():
        return
    n = logits.shape[-1]
    lo, hi = (int(v) for v in torch.aminmax(y))
    if lo < 0:
        real = y[y != IGNORE_INDEX]
        lo = int(real.min()) if real.numel() else 0
    bad = lo if lo < 0 else hi
    if bad < 0 or bad >= n:
        raise DataError(f"label {bad} but the model outputs {n} classes (labels must be 0..{n - 1}): check "
                        "num_classes (the head's output size) against the labels in your data")


def forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Call the model on ``inputs`` and return class logits (unwraps HF outputs)."""
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


def supervised_step(model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
    """Cross-entropy on one labelled batch. Returns ``loss`` (for backward) and ``acc``.

    Labels are checked against the logits' width (``check_labels``), so a label the head cannot output
    is an error that says so: on a GPU before the first step (a bad label there is a device-side assert
    that poisons the CUDA context), on CPU only when cross-entropy fails (it raises before anything
    changes, and skipping a range check on every step keeps ``fit`` close to a bare loop)."""
    inputs, y = split_batch(batch)
    logits = forward(model, inputs)
    check_labels(logits, y, values=y.device.type != "cpu" and ctx.state.step == 0)
    try:
        loss = F.cross_entropy(logits.float(), y)
    except (IndexError, RuntimeError):
        check_labels(logits, y)  # the clear DataError when a label is out of range
        raise
    return {"loss": loss, "acc": (logits.argmax(-1) == y).float().mean(), "n": len(y)}


@torch.no_grad()
def predict(model: nn.Module, dl: Iterable, *, device: torch.device | str | None = None,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for a whole loader (on CPU); restores the model's train mode."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for batch in dl:
            inputs, y = split_batch(to_device(batch, device))
            with autocast(device, precision):
                out = forward(model, inputs)
            logits.append(out.float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise DataError("the evaluation loader yielded no batches: its dataset is empty (or drop_last=True dropped "
                        "the only batch); pass a loader with data, or valid_dl=None to train without validation")
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, dl: Iterable, *, device: torch.device | str | None = None,
             precision: str = "fp32") -> dict[str, float]:
    """Loss, accuracy and balanced accuracy over a loader, under ``torch.no_grad()``."""
    logits, y = predict(model, dl, device=device, precision=precision)
    check_labels(logits, y)
    return {"loss": float(F.cross_entropy(logits, y)), "acc": _metrics.accuracy(logits, y),
            "bacc": _metrics.balanced_accuracy(logits, y)}


# --------------------------------------------------------------------------- schedules
def lr_factor(step: int, total: int, schedule: str = "constant", warmup: float = 0.0) -> float:
    """Multiplier of the base LR for step ``step`` (0-based) of ``total`` (pure; nanoGPT's ``get_lr`` in
    spirit). ``fit`` sets it *before* that step, so with warmup the first step runs at ``1/n_warm``.

    ``warmup`` is the fraction of steps with a linear ramp from 0; after it,
    ``constant`` stays at 1, ``linear`` falls to 0, ``warmup_cosine`` follows a
    half cosine to 0; ``onecycle`` is warmup (default 30%) then cosine.
    """
    total = max(1, total)
    if schedule == "onecycle" and warmup == 0:
        warmup = 0.3
    n_warm = int(round(warmup * total))
    if step < n_warm:
        return (step + 1) / n_warm
    if schedule == "constant":
        return 1.0
    p = (step - n_warm) / max(1, total - n_warm)
    if schedule == "linear":
        return max(0.0, 1.0 - p)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))


def merge_param_groups(param_groups: Sequence[dict]) -> list[dict]:
    """One optimizer group per distinct setting (learning rate, weight decay, ...), not per layer group.

    The fused Adam kernel runs once per group and step, so three layer groups with the same
    settings cost three launches instead of one (6% of a small MLP's step on CPU, measured with
    ``benchmarks/overhead.py``). Names are joined with "+"; groups are ordered by their last
    member, so the group holding the head (the last layer group) stays last.
    """
    merged: dict[tuple, dict] = {}
    try:
        for g in param_groups:
            key = tuple(sorted((k, v) for k, v in g.items() if k not in ("params", "name")))
            if key in merged:  # hashing the key raises TypeError for an unhashable setting
                m = merged.pop(key)
                m["params"] = m["params"] + list(g["params"])
                m["name"] = f"{m.get('name', '?')}+{g.get('name', '?')}"
            else:
                m = {**g, "params": list(g["params"])}
            merged[key] = m
    except TypeError:  # an unhashable setting: keep the groups as they are
        return list(param_groups)
    return list(merged.values())


def make_optimizer(param_groups: list[dict], cfg: TrainConfig, device: torch.device | None = None) -> torch.optim.Optimizer:
    """SGD, Adam or AdamW over ``param_groups``; Adam variants use the fused kernel on CPU
    and CUDA (about 2x faster updates of big embedding matrices, measured on chapter 1)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    fused = device is not None and device.type in ("cpu", "cuda")
    try:
        return kind(param_groups, lr=cfg.lr, fused=fused or None)
    except (RuntimeError, TypeError):  # an older torch or an unsupported dtype: plain kernel
        return kind(param_groups, lr=cfg.lr)


# --------------------------------------------------------------------------- the loop's parts
def reseed_loader(dl: Any, seed: int) -> None:
    """Restart the shuffling of ``dl`` from ``seed``: the generators of a DataLoader, its sampler and its
    batch sampler's sampler (``train.loader`` makes one and it would otherwise advance from run to run).
    A DataLoader without a generator shuffles from torch's global RNG, which ``seed_everything`` resets."""
    sampler = getattr(dl, "sampler", None)
    inner = getattr(getattr(dl, "batch_sampler", None), "sampler", None)
    for owner in (dl, sampler, inner):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator):
            g.manual_seed(seed)


def _n_batches(name: str, dl: Any) -> int | None:
    """``len(dl)``, or None for a loader without a length; an empty loader is a ``DataError``."""
    try:
        n = len(dl)
    except TypeError:
        return None
    if n == 0:
        raise DataError(_empty_loader_message(name, dl))
    return n


def _empty_loader_message(name: str, dl: Any, epoch: int = 0) -> str:
    size, batch = getattr(dl, "dataset", None), getattr(dl, "batch_size", None)
    try:
        size = len(size)
    except TypeError:
        size = None
    if size == 0:
        why = "its dataset is empty: check the split, filter or budget that built it"
    elif getattr(dl, "drop_last", False) and batch and size is not None and size < batch:
        why = (f"drop_last=True drops its only batch ({size} examples < batch_size {batch}): pass "
               f"drop_last=False or a batch_size of at most {size}")
    elif epoch:
        why = (f"it ran dry in epoch {epoch + 1}: a generator can be iterated only once; pass a list of "
               "batches or a DataLoader")
    else:
        why = "give it at least one batch of data"
    return f"{name} yields no batches, so there is nothing to {'train on' if name == 'train_dl' else 'evaluate'}: {why}"


def _check_monitor(cfg: TrainConfig, valid: Mapping[str, Any], evaluate_fn: Callable) -> None:
    """Refuse, before training, a ``cfg.monitor`` no evaluation can produce (e.g. 'valid_accuracy')."""
    if cfg.monitor == "auto":
        return
    prefixes = ["train", *valid]
    # the longest loader name the monitor starts with: loader names may hold "_" themselves ("source_valid")
    prefix = max((p for p in prefixes if cfg.monitor.startswith(f"{p}_")), key=len, default="")
    metric = cfg.monitor[len(prefix) + 1:]
    if not prefix:
        raise ConfigError(f"TrainConfig.monitor={cfg.monitor!r} names no loader of this run: metrics are named "
                          f"<loader>_<metric> with loader one of {', '.join(prefixes)}; e.g. monitor="
                          f"'{prefixes[-1]}_acc', or 'auto'")
    if prefix != "train" and evaluate_fn is evaluate and metric not in ("loss", "acc", "bacc"):
        raise ConfigError(f"TrainConfig.monitor={cfg.monitor!r} is not a metric of this run; available: "
                          f"{', '.join(f'{prefix}_{m}' for m in ('loss', 'acc', 'bacc'))} (and train_* metrics); "
                          "pick one of them, or 'auto'")


def _monitor_name(cfg: TrainConfig, valid_keys: Sequence[str]) -> str:
    if cfg.monitor != "auto":
        return cfg.monitor
    return f"{valid_keys[0]}_acc" if valid_keys else "train_acc"


def _prepare(model: nn.Module, train_dl: Iterable, valid: Mapping[str, Iterable], cfg: TrainConfig,
             groups: Sequence[surgery.LayerGroup] | None, evaluate_fn: Callable, on_error: str) -> tuple[State, list]:
    """Everything before the first step: check the data and settings (refusing a run that cannot train
    with a ``TrainingError``, before anything changes), seed, pick the device, freeze, plan the steps."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}; build one with TrainConfig(lr=..., ...)")
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
    try:
        n_batches = _n_batches("train_dl", train_dl)
        for name, dl in valid.items():
            _n_batches(f"valid_dl[{name!r}]" if name != "valid" else "valid_dl", dl)
        _check_monitor(cfg, valid, evaluate_fn)
        if n_batches is None and not cfg.max_steps and (cfg.schedule != "constant" or cfg.warmup):
            raise ConfigError(f"TrainConfig.schedule={cfg.schedule!r} (warmup {cfg.warmup}) needs the number of "
                              "steps, but train_dl has no len(): pass max_steps=..., or use a DataLoader")
    except (DataError, ConfigError) as exc:
        raise TrainingError(str(exc), State(cfg=cfg, status="failed", message=str(exc), error=exc)) from exc
    if cfg.seed is not None:
        seed_everything(cfg.seed)
        reseed_loader(train_dl, cfg.seed)
    device = pick_device(cfg.device)
    groups = list(groups) if groups is not None else surgery.layer_groups(model)
    state = State(cfg=cfg, device=str(device), precision=pick_precision(device, cfg.precision),
                  monitor=_monitor_name(cfg, list(valid)))
    if cfg.frozen is not None:
        surgery.apply_frozen(groups, cfg.frozen)
    state.group_lrs = surgery.group_lrs(groups, cfg.lr, cfg.lr_decay, cfg.lrs)
    state.trainable_params, state.total_params = surgery.count_params(groups)
    if state.trainable_params == 0:
        raise TrainingError("every layer group is frozen, so there is nothing to train: "
                            "unfreeze at least the head (e.g. frozen=all groups but 'head')", state)
    model.to(device)
    state.steps_per_epoch = n_batches or 0
    # without len(train_dl) the plan is max_steps, or unknown (0): the epochs then end when the loader does
    state.total_steps = min(cfg.epochs * n_batches, cfg.max_steps or 10**18) if n_batches else (cfg.max_steps or 0)
    return state, groups


class OptimizerStep:
    """One update: backward (through the fp16 grad scaler when there is one), gradient clipping once
    (after unscaling), then the optimizer step, at the learning rate the schedule gives *this* step."""

    def __init__(self, model: nn.Module, groups: Sequence[surgery.LayerGroup], cfg: TrainConfig,
                 device: torch.device, precision: str):
        pgroups = surgery.param_groups(groups, cfg.lr, cfg.lr_decay, cfg.lrs, cfg.weight_decay)
        self.optimizer = make_optimizer(merge_param_groups(pgroups), cfg, device)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.model, self.clip, self.factor = model, cfg.grad_clip, 1.0

    @property
    def lr(self) -> float:
        """The head's learning rate (the last group holds the head)."""
        return self.optimizer.param_groups[-1]["lr"]

    def __call__(self, loss: torch.Tensor, factor: float) -> None:
        opt, scaler = self.optimizer, self.scaler
        if factor != self.factor:  # set before the step it is for: warmup's first step runs warmed up
            for g, lr in zip(opt.param_groups, self.base_lrs):
                g["lr"] = lr * factor
            self.factor = factor
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if self.clip:
            if scaler:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()


class DivergenceGuard:
    """Decides that a run diverged, so it ends as "diverged" with advice instead of "finished".

    The rule: the loss is not finite, or its running mean (an exponential moving average, decay 0.9,
    so about the last 10 steps) has stayed above ``FACTOR`` (100) x its start for ``PATIENCE`` (5)
    steps in a row; the start is the first step's loss, at least 1.0 (so a run that starts near zero,
    e.g. training a trained model again, needs a loss above 100 to trip it). A cross-entropy of 100
    means confidently wrong on nearly every example: healthy runs, spikes included, stay far below
    (tests/test_train.py checks the margin on runs at the edge of stability). The check happens
    before the update, so a non-finite loss never reaches the weights on CPU. On a GPU the running
    mean and flags stay on the device and are read every ``EVERY`` (25) steps, so no step waits for
    the GPU; there a diverged run stops up to 24 steps late.
    """

    FACTOR, PATIENCE, DECAY, EVERY = 100.0, 5, 0.9, 25

    def __init__(self, lazy: bool):
        self.lazy = lazy
        self.start: Any = None
        self.mean: Any = None
        self.over: Any = 0
        self.tripped: Any = False

    def __call__(self, loss: torch.Tensor, step: int) -> str:
        """'' while the run is healthy, else the message that ends it (``step``: steps done so far)."""
        x = loss.detach().float()
        if not self.lazy:
            x = x.item()  # on CPU reading the value costs nothing
        finite = torch.isfinite(x) if self.lazy else math.isfinite(x)
        if self.start is None:
            self.start = x.clamp(min=1.0) if self.lazy else max(x, 1.0)
            self.mean = x
        # the same arithmetic on floats (CPU) and on 0-d tensors (GPU: no sync until read below)
        self.mean = self.DECAY * self.mean + (1 - self.DECAY) * x
        self.over = (self.over + 1) * (self.mean > self.FACTOR * self.start)
        if self.lazy:
            self.tripped = self.tripped | ~finite | (self.over >= self.PATIENCE)
            if step % self.EVERY or not bool(self.tripped):
                return ""
        elif finite and self.over < self.PATIENCE:
            return ""
        advice = "the learning rate is probably too high; lower it (e.g. by 10x) and train again"
        if not bool(finite) or not math.isfinite(float(self.mean)):
            return f"the loss became {float(x):.3g} at step {step}: {advice}"
        return (f"the loss grew from {float(self.start):.3g} to {float(x):.3g} by step {step} (its running mean "
                f"stayed above {self.FACTOR:g}x its start for {self.PATIENCE} steps): {advice}")


class Records:
    """The run's bookkeeping: per-step metrics (summed until the next evaluation), evaluation rows in
    ``state.history`` and the best row by ``state.monitor``, with a copy of its weights when
    ``cfg.restore_best``. On a GPU step metrics stay tensors, so no step waits for the device."""

    def __init__(self, model: nn.Module, valid: Mapping[str, Iterable], evaluate_fn: Callable[..., dict],
                 state: State, update: OptimizerStep):
        self.model, self.valid, self.evaluate_fn, self.state, self.update = model, valid, evaluate_fn, state, update
        self.on_host = state.device == "cpu"
        self.sums: dict[str, Any] = {}
        self.count = 0
        self.best_score = -math.inf

    def step(self, out: Mapping[str, Any], batch: Any) -> None:
        """Add one step's metrics (``out`` from the step function) to the sums and the step log."""
        state = self.state
        n = int(out["n"]) if "n" in out else len(split_batch(batch)[1])
        self.count += n
        state.samples_seen += n
        if self.on_host:  # plain floats are cheapest on CPU
            logged = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                      for k, v in out.items() if k != "n"}
        else:
            logged = {k: v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                      for k, v in out.items() if k != "n"}
        for k, v in logged.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        state._last = logged
        state.elapsed = time.perf_counter() - state.started_at
        if state.cfg.log_steps:
            state.steps.append({"step": state.step, **state.last, "lr": self.update.lr})

    def evaluate(self) -> dict[str, float]:
        """Evaluate on every validation loader, append the row to the history and track the best."""
        state, spe = self.state, self.state.steps_per_epoch
        row: dict[str, float] = {"epoch": state.step / spe if spe else float(state.epoch), "step": state.step}
        row.update({f"train_{k}": float(v) / max(1, self.count) for k, v in self.sums.items()})
        for name, dl in self.valid.items():
            metrics = self.evaluate_fn(self.model, dl, device=torch.device(state.device), precision=state.precision)
            row.update({f"{name}_{k}": float(v) for k, v in metrics.items()})
        row["lr"] = self.update.lr
        row["time"] = state.elapsed = time.perf_counter() - state.started_at
        state.history.append(row)
        self.sums, self.count = {}, 0
        self._track_best(row)
        return row

    def restore_best(self) -> None:
        """Load the best weights when ``cfg.restore_best`` (not after a failure); say so when there are none."""
        state = self.state
        if not state.cfg.restore_best or state.status == "failed":
            return
        if state.best_weights is not None:
            self.model.load_state_dict(state.best_weights)
        elif state.history:  # e.g. the monitored metric was NaN at every evaluation
            state.message = "; ".join(filter(None, [state.message, f"restore_best: {state.monitor} never had a "
                                                    "value to compare, so the model keeps its final weights"]))

    def _track_best(self, row: dict[str, float]) -> None:
        state = self.state
        fallback = state.monitor.replace("_acc", "_loss")  # 'auto' with an evaluate_fn that has no "acc"
        if state.monitor not in row and state.cfg.monitor == "auto" and fallback in row:
            state.monitor = fallback
        if state.monitor not in row and (state.cfg.monitor != "auto" or state.cfg.restore_best):
            raise ConfigError(f"TrainConfig.monitor={state.monitor!r} is not a metric of this run; available: "
                              f"{', '.join(k for k in row if k not in ('epoch', 'step', 'lr', 'time'))}; "
                              "pick one of them, or 'auto'")
        value = row.get(state.monitor, math.nan)
        if math.isnan(value):
            return
        score = -value if state.monitor.endswith("loss") else value
        if score > self.best_score:
            self.best_score = score
            state.best = dict(row)
            if state.cfg.restore_best:
                state.best_weights = clone_weights(self.model)


def _ending(state: State, control: Control, limit: float) -> bool:
    """True when the run should take no further epoch: stopped, at its step limit or its last epoch."""
    return control.should_stop or state.step >= limit or state.epoch >= state.cfg.epochs


def _train_mode(model: nn.Module, groups: Sequence[surgery.LayerGroup], cfg: TrainConfig) -> None:
    model.train()
    surgery.set_bn_mode(groups, cfg.train_bn)  # BatchNorm of frozen groups stays in eval mode


# --------------------------------------------------------------------------- the loop
def fit(model: nn.Module, train_dl: Iterable, valid_dl: Iterable | Mapping[str, Iterable] | None = None,
        cfg: TrainConfig | None = None, *, groups: Sequence[surgery.LayerGroup] | None = None,
        step: Callable[[nn.Module, Any, StepContext], dict] = supervised_step,
        evaluate_fn: Callable[..., dict[str, float]] = evaluate,
        callbacks: Sequence[Callback] = (), control: Control | None = None,
        on_error: str = "raise") -> State:
    """Train ``model`` and return a ``State`` with the history.

    ``valid_dl`` is one loader (metrics ``valid_loss``, ``valid_acc``, ...) or a
    dict ``{"source": dl, "target": dl}`` (metrics ``source_acc``, ...).
    ``groups`` (default: ``surgery.layer_groups(model)``) carries the per-group
    LRs and freezing of ``cfg``. With ``cfg.seed`` set, python, numpy, torch and the
    training loader's shuffling are reseeded, so the same settings give the same run.
    Events: ``fit_start``, ``step_end``, ``eval_end`` (after every evaluation;
    ``state.history[-1]`` is its row), ``epoch_end`` (after each pass over
    ``train_dl``), ``fit_end``. The run stops early when ``control.should_stop``
    is set (by a callback or another thread), after the current step; a
    ``KeyboardInterrupt`` also ends it cleanly; a diverging loss ends it as
    "diverged" (see ``DivergenceGuard``). Either way the model keeps its
    weights and the returned State its history. Data or settings that cannot
    train (an empty loader, an unknown monitor, everything frozen) raise
    ``TrainingError`` before anything changes. On an exception during training,
    ``on_error="raise"`` raises ``TrainingError`` (with ``.state``); ``"return"``
    returns the State with ``status="failed"`` and ``error`` set (the panel uses this).
    """
    cfg = TrainConfig() if cfg is None else cfg
    control = control if control is not None else Control()
    valid = {} if valid_dl is None else dict(valid_dl) if isinstance(valid_dl, Mapping) else {"valid": valid_dl}
    state, groups = _prepare(model, train_dl, valid, cfg, groups, evaluate_fn, on_error)
    device = torch.device(state.device)
    update = OptimizerStep(model, groups, cfg, device, state.precision)
    guard = DivergenceGuard(lazy=device.type != "cpu")
    records = Records(model, valid, evaluate_fn, state, update)
    ctx = StepContext(device=device, state=state, cfg=cfg)
    limit = state.total_steps or math.inf  # 0: unknown, until the loader ends

    def emit(event: str) -> None:
        for cb in callbacks:
            cb(event, state, control)

    failure: BaseException | None = None
    state.status, state.started_at = "running", time.perf_counter()
    try:
        emit("fit_start")
        while state.status == "running" and not _ending(state, control, limit):
            _train_mode(model, groups, cfg)
            first = state.step
            for batch in train_dl:
                if control.should_stop:
                    break
                if device.type != "cpu":  # on CPU the batch is already where it must be: skip the walk
                    batch = to_device(batch, device)
                with autocast(device, state.precision):
                    out = step(model, batch, ctx)
                state.message = guard(out["loss"], state.step)
                if state.message:
                    state.status = "diverged"
                    break
                update(out["loss"], lr_factor(state.step, state.total_steps, cfg.schedule, cfg.warmup))
                state.step += 1
                records.step(out, batch)
                emit("step_end")
                if cfg.eval_every and state.step % cfg.eval_every == 0:
                    records.evaluate()
                    emit("eval_end")
                    _train_mode(model, groups, cfg)
                if state.step >= limit:
                    break
            if state.status != "running":
                break
            if state.step == first and not control.should_stop:
                raise DataError(_empty_loader_message("train_dl", train_dl, state.epoch))
            state.epoch += 1
            # with eval_every, evaluate on that cadence and once more at the very end, not per epoch
            if records.count and (not cfg.eval_every or _ending(state, control, limit)):
                records.evaluate()
                emit("eval_end")
            emit("epoch_end")
        if state.status == "running":
            state.status = "stopped" if control.should_stop and state.step < limit else "finished"
    except KeyboardInterrupt:
        state.status = "interrupted"
        state.message = "interrupted by the user; the model keeps the weights it had reached"
    except Exception as exc:  # noqa: BLE001 - reported in State, re-raised below if asked
        failure, state.status, state.error, state.message = exc, "failed", exc, friendly_error(exc)
    finally:
        state.elapsed = time.perf_counter() - state.started_at
        records.restore_best()
        model.eval()
        emit("fit_end")
    if failure is not None and on_error == "raise":
        raise TrainingError(f"training failed at step {state.step}: {state.message}", state) from failure
    return state


def friendly_error(exc: BaseException) -> str:
    """One or two sentences that say what went wrong and what to do."""
    if isinstance(exc, (DataError, ConfigError)):
        return str(exc)[:800]  # written for people already
    text = f"{type(exc).__name__}: {exc}"
    low = str(exc).lower()
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in low:
        return ("the GPU ran out of memory. Lower the batch size (or the sequence length / image size), "
                "freeze more layers, and train again; the weights and history so far are kept. " + text[:300])
    if ("target" in low and "out of bounds" in low) or "device-side assert" in low:
        return ("a label is outside the model's classes (labels must be 0..num_classes-1): check num_classes "
                "(the head's output size) against the labels in your data. " + text[:300])
    if len(text) > 500 and "\nFix:" in text:  # e.g. AssetError lists every source tried, then the fix: keep the fix
        head, _, fix = text.rpartition("\nFix:")
        return f"{head[:300]} ...\nFix:{fix[:300]}"
    return text[:500]


# fastai's two-phase ``fine_tune`` lives in ``tlkit.recipes`` with the other recipes.
def clone_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the state dict (for Reset buttons and before/after comparisons)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


__all__ = ["Control", "State", "StepContext", "TrainingError", "Callback", "EVENTS", "fit", "evaluate",
           "predict", "supervised_step", "pick_device", "pick_precision", "autocast", "seed_everything",
           "seed_worker", "loader", "to_device", "lr_factor", "clone_weights", "friendly_error",
           "split_batch", "forward", "DataError", "check_labels", "reseed_loader", "DivergenceGuard",
           "OptimizerStep"]
