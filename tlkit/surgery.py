"""Split a model into named layer groups, freeze and unfreeze them, give each its LR.

Groups come from the backbone table (``tlkit.backbones``: fastai's ``model_meta`` in
spirit) or, for any other ``nn.Module``, from a general finder: the head is the module
that produces the logits, the body a handful of ordered groups named after the modules
they hold. Freezing then works on groups, never on ad-hoc parameter-name matching.
Groups are ordered from the input (stem) to the output (head); the head is always last.

    groups = layer_groups(model)          # [stem, block1, ..., head]
    freeze_to(groups, -1)                 # train only the head
    summary(groups, lr=1e-3, lr_decay=0.5)

Parameters frozen by hand (``p.requires_grad = False`` before tlkit saw them) stay frozen:
tlkit only unfreezes what it froze itself, unless told ``include_hand_frozen=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from . import backbones

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
NORM_TYPES = BN_TYPES + (nn.LayerNorm, nn.GroupNorm)
_TAG = "_tlkit_frozen"  # on a module: names of its own parameters that tlkit (not the user) froze


@dataclass
class LayerGroup:
    """A named set of modules that are frozen, unfrozen and given an LR together.

    ``direct`` holds ``(module, attribute)`` of parameters registered on a module whose
    submodules belong to other groups (a vision transformer's class token). ``note`` says
    where the groups came from (the backbone table or the general finder).
    """

    name: str
    modules: list[nn.Module] = field(default_factory=list)
    direct: list[tuple[nn.Module, str]] = field(default_factory=list)
    note: str = ""

    def owned(self) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
        """(owning module, attribute, parameter) of every parameter of the group, once each."""
        seen: set[int] = set()
        pairs = [(sub, n) for m in self.modules for sub in m.modules() for n, _ in sub.named_parameters(recurse=False)]
        for owner, n in pairs + list(self.direct):
            p = getattr(owner, n)
            if id(p) not in seen:
                seen.add(id(p))
                yield owner, n, p

    def parameters(self) -> list[nn.Parameter]:
        return [p for _, _, p in self.owned()]

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def n_hand_frozen(self) -> int:
        """Parameters (elements) frozen by the user, not by tlkit: they stay frozen."""
        return sum(p.numel() for o, n, p in self.owned() if _hand_frozen(o, n, p))

    @property
    def frozen(self) -> bool:
        """True when no parameter of the group will be updated."""
        return all(not p.requires_grad for p in self.parameters())

    def bn_modules(self) -> list[nn.Module]:
        return [m for mod in self.modules for m in mod.modules() if isinstance(m, BN_TYPES)]

    def __repr__(self) -> str:
        return f"LayerGroup({self.name!r}, params={self.n_params:,}, trainable={self.n_trainable:,})"


class GroupError(ValueError):
    """Layer groups cannot be found or a group name or index does not exist; the message says what to do."""


HOW_TO_PASS = ("pass the groups yourself: fit(..., groups=[surgery.LayerGroup('body', [model.body]), "
               "surgery.LayerGroup('head', [model.head])]) (TrainPanel takes groups= too), or give the model "
               "a layer_groups() method returning [(name, [modules]), ...] stem first, head last")


# --------------------------------------------------------------------------- finding groups
def layer_groups(model: nn.Module, example: Any = None) -> list[LayerGroup]:
    """Split ``model`` into ordered layer groups, stem first, head last.

    First the backbone table (``tlkit.backbones.TABLE``: the model's own ``layer_groups()``,
    torchvision, EfficientNet-Lite, timm, Hugging Face encoders, ``nn.Sequential``), then
    the general finder (``find_groups``), which raises ``GroupError`` rather than guess.
    ``example`` (an input batch) lets the finder trace which layer produces the logits.
    Every parameter lands in exactly one group (checked); each group's ``note`` says how
    the groups were found (``summary`` shows it).
    """
    entry = backbones.find(model)
    if entry is not None:
        spec = entry.split(model)
        note = f"backbone table: {entry.family}"
        groups = [g if isinstance(g, LayerGroup) else LayerGroup(g[0], list(g[1])) for g in spec]
        if not groups:
            raise GroupError(f"{type(model).__name__} has no parameters to group")
    else:
        groups, note = find_groups(model, example)
    for g in groups:
        g.note = g.note or note
    _check_coverage(model, groups)
    return groups


def _is_head_layer(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1))


def _final_layer(model: nn.Module, example: Any) -> tuple[nn.Module | None, str]:
    """The module producing the logits and how it was found.

    ``get_classifier()`` when the model has one; else the last ``nn.Linear``/1x1 convolution
    run on ``example`` (a Hugging Face model's own ``dummy_inputs`` when none is given); else
    the last one registered. An ``example`` the caller gave that fails raises.
    """
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head, "get_classifier()"
    how = "registration order"
    given = example is not None
    example = example if given else getattr(model, "dummy_inputs", None)  # Hugging Face models carry one
    if example is not None:
        order: list[nn.Module] = []
        hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
                 for m in model.modules() if _is_head_layer(m)]
        was = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(**example) if isinstance(example, Mapping) else model(example)
        except Exception as exc:  # noqa: BLE001 - re-raised for a given example, noted for dummy_inputs
            if given:
                raise GroupError(f"layer_groups(example=...): {type(model).__name__} failed on the example "
                                 f"({type(exc).__name__}: {exc}); pass an input batch the model accepts") from exc
            how = f"registration order (its dummy_inputs failed: {type(exc).__name__})"
        finally:
            for h in hooks:
                h.remove()
            model.train(was)
        if order:
            return order[-1], "last nn.Linear/1x1 conv run in forward"
    last = [m for m in model.modules() if _is_head_layer(m)]
    return (last[-1] if last else None), f"last nn.Linear/1x1 conv in {how}"


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _head_container(model: nn.Module, final: nn.Module) -> tuple[str, nn.Module]:
    """The biggest module around ``final`` that does not also hold the model's first layer:
    ``my_head`` of a user model, ``classifier`` of an HF model, ``fc`` inside a wrapped ResNet."""
    first = next(p for p in model.parameters())
    path, current = "", model
    while current is not final:
        child_name, child = next((n, c) for n, c in current.named_children()
                                 if any(m is final for m in c.modules()))
        path = f"{path}.{child_name}" if path else child_name
        if not any(p is first for p in child.parameters()) or child is final:
            return path, child
        current = child
    return path, final


def find_groups(model: nn.Module, example: Any = None, n_body: int = 4) -> tuple[list[LayerGroup], str]:
    """The general finder: (groups, one-line note) for a model in no table entry.

    The head is the module that produces the logits (``get_classifier()``, else the last
    ``nn.Linear`` or 1x1 convolution run on ``example`` or registered), grown to the
    biggest enclosing module that does not hold the input layer. The body is opened up
    from the top (largest part first) until no part holds more than its share, then cut
    into ``n_body`` consecutive groups of similar parameter count, named after their modules.
    The body is opened up while a part holds more than ``1/n_body`` of it.
    """
    final, how = _final_layer(model, example)
    if final is None:
        raise GroupError(f"could not find the head of {type(model).__name__}: it has no nn.Linear or 1x1 "
                         f"convolution producing the logits; {HOW_TO_PASS}")
    head_path, head = _head_container(model, final)
    head_ids = {id(p) for p in head.parameters()}
    # units: (path, module or None, direct parameter names); opened up largest first
    units: list[tuple[str, nn.Module, list[str]]] = [("", model, [])]

    def size(u: tuple[str, nn.Module, list[str]]) -> int:
        path, mod, direct = u
        if direct:
            return sum(getattr(mod, n).numel() for n in direct)
        return sum(p.numel() for p in mod.parameters() if id(p) not in head_ids)

    def can_open(u: tuple[str, nn.Module, list[str]]) -> bool:
        return not u[2] and any(_has_params(c) for c in u[1].children())

    def opened(u: tuple[str, nn.Module, list[str]]) -> list[tuple[str, nn.Module, list[str]]]:
        path, mod, _ = u
        out = []
        own = [n for n, _ in mod.named_parameters(recurse=False)]
        if own:
            label = "+".join(own) if len(own) <= 2 else "params"
            out.append((f"{path}.{label}" if path else label, mod, own))
        for n, c in mod.named_children():
            if c is head or not _has_params(c):
                continue
            out.append((f"{path}.{n}" if path else n, c, []))
        return [x for x in out if size(x) > 0]

    for _ in range(200):
        total = sum(size(u) for u in units) or 1
        holds_head = [u for u in units if not u[2] and u[1] is not head and any(id(p) in head_ids for p in u[1].parameters())]
        candidates = holds_head or [u for u in units if can_open(u) and size(u) * n_body > total]
        if not candidates and len(units) < n_body:
            candidates = [u for u in units if can_open(u)]
        if not candidates:
            break
        u = max(candidates, key=size)
        i = units.index(u)
        units[i:i + 1] = opened(u)
    body = [u for u in units if size(u) > 0]
    if not body:
        groups = [LayerGroup("head", [head])]
        return groups, f"general finder: the whole model is its head ({head_path or type(head).__name__}, {how})"
    # a normalisation layer stays with the layer it normalises (no group of a lone BatchNorm)
    blocks: list[list[tuple[str, nn.Module, list[str]]]] = []
    for u in body:
        if blocks and not u[2] and isinstance(u[1], NORM_TYPES):
            blocks[-1].append(u)
        else:
            blocks.append([u])
    sizes = [sum(size(u) for u in b) for b in blocks]
    total, cum, cuts = sum(sizes), 0, []
    for s in sizes:  # group index of a block: where the middle of it falls in the cumulative count
        cuts.append(min(n_body - 1, int((cum + s / 2) * n_body / total)))
        cum += s
    groups: list[LayerGroup] = []
    for k in sorted(set(cuts)):
        members = [u for b, c in zip(blocks, cuts) if c == k for u in b]
        name = _span_name(members[0][0], members[-1][0])
        groups.append(LayerGroup(name, [m for _, m, d in members if not d],
                                 [(m, n) for _, m, d in members for n in d]))
    groups.append(LayerGroup("head", [head]))
    note = (f"general finder: head = {head_path} ({how}); body = {len(groups) - 1} group(s) by parameter count")
    return groups, note


def _span_name(first: str, last: str) -> str:
    """``encoder.layers.0-3`` for siblings, ``conv_proj..encoder.layers.0`` otherwise."""
    if first == last:
        return first
    a, b = first.rsplit(".", 1) if "." in first else ("", first), last.rsplit(".", 1) if "." in last else ("", last)
    if a[0] == b[0]:
        return f"{a[0]}.{a[1]}-{b[1]}" if a[0] else f"{a[1]}-{b[1]}"
    return f"{first}..{last}"


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


def _hand_frozen(owner: nn.Module, name: str, p: nn.Parameter) -> bool:
    return not p.requires_grad and name not in owner.__dict__.get(_TAG, ())


def _set(groups: Iterable[LayerGroup], trainable: bool, include_hand_frozen: bool = False) -> None:
    for g in groups:
        for owner, name, p in g.owned():
            tagged = owner.__dict__.setdefault(_TAG, set())
            if not trainable:
                if p.requires_grad:
                    p.requires_grad_(False)
                    tagged.add(name)       # tlkit froze it, so tlkit may unfreeze it
            elif not p.requires_grad and (name in tagged or include_hand_frozen):
                p.requires_grad_(True)
                tagged.discard(name)


def freeze(groups: Sequence[LayerGroup], names: Iterable[str] | str | None = None) -> None:
    """Stop gradients for the named groups (all groups when ``names`` is None)."""
    _set(_select(groups, names), False)


def unfreeze(groups: Sequence[LayerGroup], names: Iterable[str] | str | None = None, *,
             include_hand_frozen: bool = False) -> None:
    """Let the named groups (all when ``names`` is None) be trained.

    Parameters the user froze by hand stay frozen unless ``include_hand_frozen=True``.
    """
    _set(_select(groups, names), True, include_hand_frozen)


def hand_frozen(groups: Sequence[LayerGroup]) -> dict[str, list[str]]:
    """Per group, the parameters the user froze by hand (tlkit leaves them frozen):
    ``{group: ["0.weight", ...]}``, only groups that have some."""
    out: dict[str, list[str]] = {}
    for g in groups:
        names = {id(p): n for m in g.modules for n, p in m.named_parameters()}
        found = [names.get(id(p), n) for o, n, p in g.owned() if _hand_frozen(o, n, p)]
        if found:
            out[g.name] = found
    return out


def freeze_to(groups: Sequence[LayerGroup], n: int) -> None:
    """Freeze groups ``[:n]`` and unfreeze ``[n:]`` (``n=-1``: train only the head)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise GroupError(f"freeze_to needs a whole number of groups, got {n!r}")
    idx = n if n >= 0 else len(groups) + n
    if not 0 <= idx <= len(groups):
        raise GroupError(f"freeze_to({n}) is out of range for {len(groups)} groups {group_names(groups)}")
    freeze(groups, [g.name for g in groups[:idx]])
    unfreeze(groups, [g.name for g in groups[idx:]])


def apply_frozen(groups: Sequence[LayerGroup], frozen: Iterable[str]) -> None:
    """Freeze exactly the named groups and unfreeze the others (except hand-frozen parameters)."""
    chosen = set(g.name for g in _select(groups, list(frozen)))
    _set([g for g in groups if g.name in chosen], False)
    _set([g for g in groups if g.name not in chosen], True)


def set_bn_mode(groups: Sequence[LayerGroup], train_bn: bool) -> None:
    """Put frozen BatchNorm layers in eval mode (call after ``model.train()``).

    Frozen means: in a frozen group, or with all its own parameters frozen (by a group,
    ``cfg.frozen`` or by hand). A frozen BatchNorm in train mode still updates its running
    mean and variance and normalises with batch statistics, so "frozen" features would
    drift. With ``train_bn=True`` BatchNorm keeps training (fastai's default for
    fine-tuning); its affine weights stay frozen only if ``requires_grad`` says so.
    """
    if train_bn:
        return
    for g in groups:
        whole = g.frozen
        for bn in g.bn_modules():
            own = list(bn.parameters())
            if whole or (own and not any(p.requires_grad for p in own)):
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
    hand = sum(g.n_hand_frozen for g in groups)
    if hand:
        df.insert(3, "hand_frozen", [g.n_hand_frozen for g in groups])
    df.attrs["note"] = groups[0].note if groups else ""
    df.index.name = df.attrs["note"] or None  # printed above the rows: how the groups were found
    return df


def snapshot(groups: Sequence[LayerGroup], names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """CPU copies of the named groups' parameters and buffers (to check what changed)."""
    out = {}
    for g in _select(groups, names):
        for i, m in enumerate(g.modules):
            for k, v in m.state_dict().items():
                out[f"{g.name}.{i}.{k}"] = v.detach().cpu().clone()
        for owner, n in g.direct:
            out[f"{g.name}.direct.{n}"] = getattr(owner, n).detach().cpu().clone()
    return out
