"""The training core: one loop, ``fit``, that knows nothing about the model.

Callbacks are plain callables ``cb(event, state, control)`` called at
``fit_start``, ``step_end``, ``epoch_end`` and ``fit_end``. They read ``State``
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
from .config import TrainConfig

EVENTS = ("fit_start", "step_end", "epoch_end", "fit_end")


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
def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """(inputs, labels) from ``(x, y)`` or a dict with ``labels`` (Hugging Face style)."""
    if isinstance(batch, Mapping):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs, batch["labels"]
    x, y = batch[0], batch[1]
    return x, y


def forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Call the model on ``inputs`` and return class logits (unwraps HF outputs)."""
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


def supervised_step(model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
    """Cross-entropy on one labelled batch. Returns ``loss`` (for backward) and ``acc``."""
    inputs, y = split_batch(batch)
    logits = forward(model, inputs)
    loss = F.cross_entropy(logits.float(), y)
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
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, dl: Iterable, *, device: torch.device | str | None = None,
             precision: str = "fp32") -> dict[str, float]:
    """Loss, accuracy and balanced accuracy over a loader, under ``torch.no_grad()``."""
    logits, y = predict(model, dl, device=device, precision=precision)
    return {"loss": float(F.cross_entropy(logits, y)), "acc": _metrics.accuracy(logits, y),
            "bacc": _metrics.balanced_accuracy(logits, y)}


# --------------------------------------------------------------------------- schedules
def lr_factor(step: int, total: int, schedule: str = "constant", warmup: float = 0.0) -> float:
    """Multiplier of the base LR at ``step`` of ``total`` (pure; nanoGPT's ``get_lr`` in spirit).

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


# --------------------------------------------------------------------------- the loop
def _monitor_name(cfg: TrainConfig, valid_keys: Sequence[str]) -> str:
    if cfg.monitor != "auto":
        return cfg.monitor
    return f"{valid_keys[0]}_acc" if valid_keys else "train_acc"


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
    LRs and freezing of ``cfg``. The run stops early when ``control.should_stop``
    is set (by a callback or another thread), after the current step; a
    ``KeyboardInterrupt`` also ends it cleanly. Either way the model keeps its
    weights and the returned State its history. On an exception, ``on_error=
    "raise"`` raises ``TrainingError`` (with ``.state``); ``"return"`` returns
    the State with ``status="failed"`` and ``error`` set (the panel uses this).
    """
    cfg = cfg or TrainConfig()
    control = control if control is not None else Control()
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
    if cfg.seed is not None:
        seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    precision = pick_precision(device, cfg.precision)
    groups = list(groups) if groups is not None else surgery.layer_groups(model)
    if cfg.frozen is not None:
        surgery.apply_frozen(groups, cfg.frozen)
    if valid_dl is None:
        valid = {}
    elif isinstance(valid_dl, Mapping):
        valid = dict(valid_dl)
    else:
        valid = {"valid": valid_dl}

    state = State(cfg=cfg, device=str(device), precision=precision, monitor=_monitor_name(cfg, list(valid)))
    model.to(device)
    pgroups = surgery.param_groups(groups, cfg.lr, cfg.lr_decay, cfg.lrs, cfg.weight_decay)
    state.group_lrs = surgery.group_lrs(groups, cfg.lr, cfg.lr_decay, cfg.lrs)
    state.trainable_params, state.total_params = surgery.count_params(groups)
    if state.trainable_params == 0:
        raise TrainingError("every layer group is frozen, so there is nothing to train: "
                            "unfreeze at least the head (e.g. frozen=all groups but 'head')", state)
    opt = make_optimizer(merge_param_groups(pgroups), cfg, device)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    try:
        n_batches = len(train_dl)  # type: ignore[arg-type]
    except TypeError:
        n_batches = cfg.max_steps or 0
    state.steps_per_epoch = n_batches
    state.total_steps = min(cfg.epochs * n_batches, cfg.max_steps or 10**18)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    ctx = StepContext(device=device, state=state, cfg=cfg)
    best_value = -math.inf
    maximize = not state.monitor.endswith("loss")

    def emit(event: str) -> None:
        for cb in callbacks:
            cb(event, state, control)

    def evaluate_now(sums: dict[str, torch.Tensor], count: int) -> None:
        nonlocal best_value
        row: dict[str, float] = {"epoch": state.step / n_batches if n_batches else float(state.epoch),
                                 "step": state.step}
        for k, v in sums.items():
            row[f"train_{k}"] = float(v) / max(1, count)
        for name, dl in valid.items():
            for k, v in evaluate_fn(model, dl, device=device, precision=precision).items():
                row[f"{name}_{k}"] = float(v)
        row["lr"] = opt.param_groups[-1]["lr"]
        row["time"] = time.perf_counter() - state.started_at
        state.elapsed = row["time"]
        state.history.append(row)
        value = row.get(state.monitor)
        if value is not None and not math.isnan(value):
            score = value if maximize else -value
            if score > best_value:
                best_value = score
                state.best = dict(row)
                if cfg.restore_best:
                    state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    state.status = "running"
    state.started_at = time.perf_counter()
    failure: BaseException | None = None
    try:
        emit("fit_start")
        done = state.total_steps == 0 or control.should_stop
        while not done and state.epoch < cfg.epochs:
            model.train()
            surgery.set_bn_mode(groups, cfg.train_bn)
            sums: dict[str, torch.Tensor] = {}
            count = 0
            for batch in train_dl:
                if control.should_stop:
                    break
                batch = to_device(batch, device)
                with autocast(device, precision):
                    out = step(model, batch, ctx)
                loss = out["loss"]
                # On CUDA the check syncs the GPU, so look only every 25 steps there.
                on_host = device.type == "cpu"
                check = on_host or state.step % 25 == 0
                if check and not (math.isfinite(loss.item()) if on_host else bool(torch.isfinite(loss.detach()).all())):
                    state.status = "diverged"
                    state.message = (f"the loss became {float(loss.detach()):.3g} at step {state.step}: the learning "
                                     "rate is probably too high; lower it (e.g. by 10x) and train again")
                    done = True
                    break
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if cfg.grad_clip:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                state.step += 1
                f = lr_factor(state.step, state.total_steps, cfg.schedule, cfg.warmup)
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * f
                n = int(out["n"]) if "n" in out else _batch_size(batch)
                count += n
                state.samples_seen += n
                # On CPU plain floats are cheapest; on a GPU keep tensors so no step waits for the device.
                if on_host:
                    logged = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                              for k, v in out.items() if k != "n"}
                else:
                    logged = {k: v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                              for k, v in out.items() if k != "n"}
                for k, v in logged.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                state._last = logged
                state.elapsed = time.perf_counter() - state.started_at
                if cfg.log_steps:
                    state.steps.append({"step": state.step, **state.last, "lr": opt.param_groups[-1]["lr"]})
                emit("step_end")
                if cfg.eval_every and state.step % cfg.eval_every == 0:
                    evaluate_now(sums, count)
                    model.train()
                    surgery.set_bn_mode(groups, cfg.train_bn)
                    sums, count = {}, 0
                    emit("epoch_end")
                if state.step >= state.total_steps:
                    done = True
                    break
            if control.should_stop:
                done = True
            if state.status == "diverged":
                break
            state.epoch += 1
            # With eval_every, evaluate on that cadence and once more at the very end, not per epoch.
            if count and (not cfg.eval_every or done or state.epoch >= cfg.epochs):
                evaluate_now(sums, count)
                emit("epoch_end")
        if state.status == "running":
            state.status = "stopped" if control.should_stop and state.step < state.total_steps else "finished"
    except KeyboardInterrupt:
        state.status = "interrupted"
        state.message = "interrupted by the user; the model keeps the weights it had reached"
    except Exception as exc:  # noqa: BLE001 - reported in State, re-raised below if asked
        failure = exc
        state.status = "failed"
        state.error = exc
        state.message = friendly_error(exc)
    finally:
        state.elapsed = time.perf_counter() - state.started_at
        if cfg.restore_best and state.best_weights is not None and state.status != "failed":
            model.load_state_dict(state.best_weights)
        model.eval()
        emit("fit_end")
    if failure is not None and on_error == "raise":
        raise TrainingError(f"training failed at step {state.step}: {state.message}", state) from failure
    return state


def _batch_size(batch: Any) -> int:
    _, y = split_batch(batch)
    return len(y)


def friendly_error(exc: BaseException) -> str:
    """One or two sentences that say what went wrong and what to do."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return ("the GPU ran out of memory. Lower the batch size (or the sequence length / image size), "
                "freeze more layers, and train again; the weights and history so far are kept. " + text[:300])
    if isinstance(exc, (IndexError, RuntimeError)) and "target" in str(exc) and "out of bounds" in str(exc):
        return ("a label is larger than the model's number of classes: check num_classes against the "
                "labels in your data. " + text[:300])
    return text[:500]


# fastai's two-phase ``fine_tune`` lives in ``tlkit.recipes`` with the other recipes.
def clone_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the state dict (for Reset buttons and before/after comparisons)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


__all__ = ["Control", "State", "StepContext", "TrainingError", "Callback", "EVENTS", "fit", "evaluate",
           "predict", "supervised_step", "pick_device", "pick_precision", "autocast", "seed_everything",
           "seed_worker", "loader", "to_device", "lr_factor", "clone_weights", "friendly_error",
           "split_batch", "forward"]
