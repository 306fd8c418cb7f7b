"""Split a model into named layer groups, freeze and unfreeze them, give each its LR.

A small per-architecture table says where the body ends and how to split it
(fastai's ``model_meta`` in spirit). Freezing then works on groups, never on
ad-hoc parameter-name matching. Groups are ordered from the input (stem) to the
output (head); the head is always the last group.

    groups = layer_groups(model)          # [stem, block1, ..., head]
    freeze_to(groups, -1)                 # train only the head
    summary(groups, lr=1e-3, lr_decay=0.5)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class LayerGroup:
    """A named set of modules that are frozen, unfrozen and given an LR together."""

    name: str
    modules: list[nn.Module] = field(default_factory=list)

    def parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for m in self.modules:
            for p in m.parameters():
                seen.setdefault(id(p), p)
        return list(seen.values())

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def frozen(self) -> bool:
        """True when no parameter of the group will be updated."""
        return all(not p.requires_grad for p in self.parameters())

    def bn_modules(self) -> list[nn.Module]:
        return [m for mod in self.modules for m in mod.modules() if isinstance(m, BN_TYPES)]

    def __repr__(self) -> str:
        return f"LayerGroup({self.name!r}, params={self.n_params:,}, trainable={self.n_trainable:,})"


class GroupError(ValueError):
    """A group name or index does not exist; the message lists the known ones."""


# --------------------------------------------------------------------------- table
def _mobilenet_v2(m: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    f = m.features  # 0: stem conv, 1-17: inverted residual blocks, 18: final 1x1 conv
    # Split where the spatial resolution halves (112, 56, 28, 14, 7 px at 224 input).
    return [("stem", [f[0], f[1]]), ("block1", list(f[2:4])), ("block2", list(f[4:7])),
            ("block3", list(f[7:14])), ("block4", list(f[14:17])), ("top", [f[17], f[18]]),
            ("head", [m.classifier])]


def _resnet(m: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    return [("stem", [m.conv1, m.bn1]), ("layer1", [m.layer1]), ("layer2", [m.layer2]),
            ("layer3", [m.layer3]), ("layer4", [m.layer4]), ("head", [m.fc])]


def _transformer_encoder(m: nn.Module) -> list[tuple[str, list[nn.Module]]] | None:
    """Hugging Face BERT-style encoders (BERT, MiniLM, RoBERTa, DistilBERT, ...)."""
    base = getattr(m, "base_model", None)
    if base is None or not hasattr(base, "embeddings"):
        return None
    layers = None
    for path in ("encoder.layer", "transformer.layer", "encoder.layers"):
        obj = base
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, nn.ModuleList):
            layers = obj
            break
    if layers is None:
        return None
    groups: list[tuple[str, list[nn.Module]]] = [("embeddings", [base.embeddings])]
    groups += [(f"layer{i}", [layer]) for i, layer in enumerate(layers)]
    head: list[nn.Module] = []
    if getattr(base, "pooler", None) is not None:
        head.append(base.pooler)
    if m is not base:
        head += [child for child in m.children() if child is not base]
    groups.append(("head", head))
    return groups


def _sequential(m: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    children = [(name, c) for name, c in m.named_children() if any(True for _ in c.parameters())]
    out = [(f"layer{name}" if name.isdigit() else name, [c]) for name, c in children]
    if out:
        out[-1] = ("head", out[-1][1])
    return out


ARCHITECTURES: dict[str, Callable[[nn.Module], list[tuple[str, list[nn.Module]]] | None]] = {
    "MobileNetV2": _mobilenet_v2,
    "ResNet": _resnet,
}


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Split ``model`` into ordered layer groups, stem first, head last.

    Lookup order: the model's own ``layer_groups()`` method (tlkit's chapter
    models define one), the architecture table (torchvision MobileNetV2 and
    ResNet), Hugging Face BERT-style encoders, then ``nn.Sequential`` children.
    Anything else becomes a single group ``"model"``. Every parameter lands in
    exactly one group (checked).
    """
    spec = None
    own = getattr(model, "layer_groups", None)
    if callable(own):
        spec = own()
    elif type(model).__name__ in ARCHITECTURES:
        spec = ARCHITECTURES[type(model).__name__](model)
    else:
        spec = _transformer_encoder(model)
        if spec is None and isinstance(model, nn.Sequential):
            spec = _sequential(model)
    if not spec:
        spec = [("model", [model])]
    groups = [g if isinstance(g, LayerGroup) else LayerGroup(g[0], list(g[1])) for g in spec]
    _check_coverage(model, groups)
    return groups


def _check_coverage(model: nn.Module, groups: Sequence[LayerGroup]) -> None:
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise GroupError(f"layer group names must be unique, got {names}")
    owner: dict[int, str] = {}
    for g in groups:
        for p in g.parameters():
            if id(p) in owner:
                raise GroupError(f"a parameter is in both groups {owner[id(p)]!r} and {g.name!r}")
            owner[id(p)] = g.name
    missing = [n for n, p in model.named_parameters() if id(p) not in owner]
    if missing:
        raise GroupError(f"{len(missing)} parameters belong to no layer group (first: {missing[:3]}); "
                         "extend the model's layer_groups() so every parameter is covered")


# --------------------------------------------------------------------------- freezing
def group_names(groups: Sequence[LayerGroup]) -> list[str]:
    return [g.name for g in groups]


def _select(groups: Sequence[LayerGroup], names: Iterable[str] | None) -> list[LayerGroup]:
    if names is None:
        return list(groups)
    if isinstance(names, str):
        names = [names]
    by_name = {g.name: g for g in groups}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise GroupError(f"unknown layer group(s) {unknown}; this model's groups are {list(by_name)}")
    return [by_name[n] for n in names]


def freeze(groups: Sequence[LayerGroup], names: Iterable[str] | str | None = None) -> None:
    """Stop gradients for the named groups (all groups when ``names`` is None)."""
    for g in _select(groups, names):
        for p in g.parameters():
            p.requires_grad_(False)


def unfreeze(groups: Sequence[LayerGroup], names: Iterable[str] | str | None = None) -> None:
    """Let the named groups (all when ``names`` is None) be trained."""
    for g in _select(groups, names):
        for p in g.parameters():
            p.requires_grad_(True)


def freeze_to(groups: Sequence[LayerGroup], n: int) -> None:
    """Freeze groups ``[:n]`` and unfreeze ``[n:]`` (``n=-1``: train only the head)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise GroupError(f"freeze_to needs a whole number of groups, got {n!r}")
    idx = n if n >= 0 else len(groups) + n
    if not 0 <= idx <= len(groups):
        raise GroupError(f"freeze_to({n}) is out of range for {len(groups)} groups {group_names(groups)}")
    freeze(groups, [g.name for g in groups[:idx]])
    unfreeze(groups, [g.name for g in groups[idx:]])


def frozen_for_last(groups: Sequence[LayerGroup], n_trainable: int) -> tuple[str, ...]:
    """Names of the groups to freeze so that only the last ``n_trainable`` train."""
    if not 0 <= n_trainable <= len(groups):
        raise GroupError(f"can train between 0 and {len(groups)} groups, asked for {n_trainable}")
    return tuple(g.name for g in groups[: len(groups) - n_trainable])


def apply_frozen(groups: Sequence[LayerGroup], frozen: Iterable[str]) -> None:
    """Freeze exactly the named groups and unfreeze the others."""
    frozen = set(g.name for g in _select(groups, list(frozen)))
    for g in groups:
        for p in g.parameters():
            p.requires_grad_(g.name not in frozen)


def set_bn_mode(groups: Sequence[LayerGroup], train_bn: bool) -> None:
    """Put BatchNorm layers of frozen groups in eval mode (call after ``model.train()``).

    A frozen BatchNorm in train mode still updates its running mean and variance
    and normalises with batch statistics, so "frozen" features would drift.
    With ``train_bn=True`` BatchNorm keeps training (fastai's default for
    fine-tuning); its affine weights stay frozen only if ``requires_grad`` says so.
    """
    if train_bn:
        return
    for g in groups:
        if g.frozen:
            for bn in g.bn_modules():
                bn.eval()


# --------------------------------------------------------------------------- learning rates
def group_lrs(groups: Sequence[LayerGroup], lr: float, lr_decay: float = 1.0,
              lrs: Mapping[str, float] | None = None) -> dict[str, float]:
    """LR per group: the head gets ``lr``, ``d`` groups below it ``lr * lr_decay**d``;
    ``lrs`` overrides chosen groups by name."""
    lrs = dict(lrs or {})
    _select(groups, list(lrs))  # raises on unknown names
    out = {}
    for depth, g in enumerate(reversed(groups)):
        out[g.name] = float(lrs.get(g.name, lr * lr_decay ** depth))
    return {g.name: out[g.name] for g in groups}


def param_groups(groups: Sequence[LayerGroup], lr: float, lr_decay: float = 1.0,
                 lrs: Mapping[str, float] | None = None, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups, one per layer group, each with its own LR.

    Frozen groups are included too (their parameters get no gradient, so the
    optimizer skips them): unfreezing later needs no new optimizer. Biases and
    normalisation weights (1-D tensors) get no weight decay, as in nanoGPT.
    """
    rates = group_lrs(groups, lr, lr_decay, lrs)
    out = []
    for g in groups:
        params = g.parameters()
        if not weight_decay:  # one optimizer group per layer group: fewer (fused) kernel launches
            if params:
                out.append({"params": params, "lr": rates[g.name], "name": g.name, "weight_decay": 0.0})
            continue
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        if decay:
            out.append({"params": decay, "lr": rates[g.name], "name": g.name, "weight_decay": weight_decay})
        if no_decay:
            out.append({"params": no_decay, "lr": rates[g.name], "name": g.name, "weight_decay": 0.0})
    return out


def count_params(model_or_groups: nn.Module | Sequence[LayerGroup]) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    if isinstance(model_or_groups, nn.Module):
        params = list(model_or_groups.parameters())
    else:
        params = [p for g in model_or_groups for p in g.parameters()]
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def summary(groups: Sequence[LayerGroup], lr: float | None = None, lr_decay: float = 1.0,
            lrs: Mapping[str, float] | None = None):
    """A table a notebook can show: group, parameters, trainable, BatchNorm layers, LR."""
    import pandas as pd

    rates = group_lrs(groups, lr, lr_decay, lrs) if lr is not None else {}
    rows = [{"group": g.name, "params": g.n_params, "trainable": g.n_trainable,
             "frozen": g.frozen, "bn_layers": len(g.bn_modules()),
             "lr": (0.0 if g.frozen else rates.get(g.name)) if rates else None} for g in groups]
    df = pd.DataFrame(rows)
    if not rates:
        df = df.drop(columns="lr")
    return df


def snapshot(groups: Sequence[LayerGroup], names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """CPU copies of the named groups' parameters and buffers (to check what changed)."""
    out = {}
    for g in _select(groups, names):
        for i, m in enumerate(g.modules):
            for k, v in m.state_dict().items():
                out[f"{g.name}.{i}.{k}"] = v.detach().cpu().clone()
    return out
