"""Recipes: the decisions that *are* transfer learning, each a few lines returning a ``TrainConfig``.

This module is the only place that decides which layer groups a way of training
freezes and which learning rate each group gets. Chapters, runners and the panel
call a recipe (or take one from a small table) instead of computing ``frozen``.

    groups = surgery.layer_groups(model)              # stem ... head
    cfg = head_only(groups, lr=1e-3)                   # a linear probe, BatchNorm kept in eval mode
    cfg = last_n(groups, 3, base=cfg)                  # the last 3 groups train
    cfg = all_layers(groups, body_lr_mult=0.1)         # every group; the body at a tenth of the head's LR
    cfg = all_layers(groups, lr_decay=0.5)             # ... or halved at every group below the head
    states = fine_tune(model, train_dl, valid_dl, cfg) # fastai's two phases: head, then everything

``groups`` is what ``surgery.layer_groups`` returns, a model (its groups are
looked up), or the group names in order (stem first, head last). ``base`` is a
``TrainConfig`` to start from; other keywords set its fields (``lr``, ``epochs``,
...). A ``Recipe`` binds a function to options and says whether training starts
from the pretrained weights, so a sweep's methods are a table ``name -> Recipe``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import torch
from torch import nn

from . import surgery
from .config import TrainConfig

Groups = Union[Sequence[surgery.LayerGroup], Sequence[str], nn.Module]


def group_names(groups: Groups) -> list[str]:
    """Group names in order, from layer groups, a model or names; at least two (a body and a head)."""
    if isinstance(groups, nn.Module):
        groups = surgery.layer_groups(groups)
    names = [g if isinstance(g, str) else g.name for g in groups]
    if len(names) < 2:
        raise surgery.GroupError(f"a recipe needs at least a body group and a head group, got {names}; pass the "
                                 "groups explicitly (see surgery.layer_groups)")
    return names


def _config(base: TrainConfig | None, cfg: Mapping[str, Any], **decided: Any) -> TrainConfig:
    clash = sorted(set(cfg) & set(decided))
    if clash:
        raise TypeError(f"this recipe decides {clash} itself; use another recipe (or surgery) to change them")
    return dataclasses.replace(base or TrainConfig(), **cfg, **decided)


def last_n(groups: Groups, n: int | None, *, keep_frozen: Iterable[str] = (), train_bn: bool = False,
           base: TrainConfig | None = None, **cfg: Any) -> TrainConfig:
    """Train the last ``n`` groups (``n=1``: the head only; ``None``: all), freeze the rest.

    ``keep_frozen`` names groups that stay frozen even among the last ``n`` (chapter 2's
    word-embedding matrix). BatchNorm layers in frozen groups stay in eval mode unless
    ``train_bn``, so a few small batches do not overwrite the pretrained statistics.
    Per-group LRs come from ``lr``/``lr_decay`` (explicit ``lrs`` are cleared).
    """
    names = group_names(groups)
    n = len(names) if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(names):
        raise surgery.GroupError(f"last_n: n must be a whole number between 1 (head only) and {len(names)} "
                                 f"(all of {names}), got {n!r}")
    stay = set(keep_frozen)
    surgery._select([surgery.LayerGroup(x) for x in names], list(stay))  # unknown names raise
    frozen = tuple(x for i, x in enumerate(names) if i < len(names) - n or x in stay)
    return _config(base, cfg, frozen=frozen, train_bn=train_bn, lrs=None)


def head_only(groups: Groups, *, train_bn: bool = False, base: TrainConfig | None = None, **cfg: Any) -> TrainConfig:
    """Freeze every group but the head (a linear probe trained end to end)."""
    return last_n(groups, 1, train_bn=train_bn, base=base, **cfg)


def all_layers(groups: Groups, *, body_lr_mult: float | None = None, train_bn: bool = True,
               base: TrainConfig | None = None, **cfg: Any) -> TrainConfig:
    """Train every group with discriminative learning rates.

    ``body_lr_mult``: every body group gets ``lr * body_lr_mult`` (pretrained weights need
    small steps); without it the rates follow ``lr_decay`` (the group ``d`` steps below the
    head gets ``lr * lr_decay**d``; pass ``lr_decay=`` as a keyword). BatchNorm trains.
    """
    names = group_names(groups)
    decided: dict[str, Any] = {"frozen": (), "train_bn": train_bn}
    if body_lr_mult is not None:
        lr = cfg.get("lr", (base or TrainConfig()).lr)
        decided["lrs"] = {x: lr * body_lr_mult for x in names[:-1]}
    return _config(base, cfg, **decided)


def scratch(groups: Groups, *, base: TrainConfig | None = None, **cfg: Any) -> TrainConfig:
    """Every group at one LR with BatchNorm training: for a randomly initialised model.

    The config cannot re-initialise weights: build the model with ``pretrained=False``
    or call ``reinit(model)`` first (``Recipe.pretrained`` is False for this recipe).
    """
    group_names(groups)
    return _config(base, cfg, frozen=(), train_bn=True, lrs=None, lr_decay=1.0)


def reinit(model: nn.Module, seed: int | None = 0) -> nn.Module:
    """Re-initialise every layer that knows how (``reset_parameters``), seeded; returns ``model``.

    Raises when a parameter would keep its trained value (a layer without ``reset_parameters``).
    """
    if seed is not None:
        torch.manual_seed(seed)
    done: set[int] = set()
    for m in model.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
            done.update(id(p) for p in m.parameters(recurse=False))
    kept = [n for n, p in model.named_parameters() if id(p) not in done]
    if kept:
        raise ValueError(f"reinit: {len(kept)} parameters belong to layers without reset_parameters() (first: "
                         f"{kept[:3]}); build the model again with pretrained=False instead")
    return model


def fine_tune(model: nn.Module, train_dl: Any, valid_dl: Any, cfg: TrainConfig, *, head_epochs: int = 1,
              lr_decay: float = 0.5, groups: Sequence[surgery.LayerGroup] | None = None, **fit_kw: Any) -> list:
    """fastai's ``fine_tune`` in a few composed lines: ``head_epochs`` with the body frozen,
    then ``cfg.epochs`` of every group at half the LR, ``lr_decay`` per group below the head.
    Returns the ``State`` of each phase (one when the first did not finish)."""
    from .train import fit

    groups = list(groups) if groups is not None else surgery.layer_groups(model)
    first = head_only(groups, base=cfg, epochs=head_epochs, train_bn=cfg.train_bn)
    head = fit(model, train_dl, valid_dl, first, groups=groups, **fit_kw)
    if head.status != "finished":
        return [head]
    second = all_layers(groups, base=cfg, lr=cfg.lr / 2, lr_decay=lr_decay, seed=None, train_bn=cfg.train_bn)
    return [head, fit(model, train_dl, valid_dl, second, groups=groups, **fit_kw)]


@dataclass(frozen=True)
class Recipe:
    """A recipe function with its options bound, and whether it starts from pretrained weights.

    ``Recipe(last_n, {"n": 3})(groups, base=cfg)`` is ``last_n(groups, 3, base=cfg)``; a
    sweep's methods are a table ``{"fine-tune last 3": Recipe(last_n, {"n": 3}), ...}``.
    """

    make: Callable[..., TrainConfig]
    options: Mapping[str, Any] = field(default_factory=dict)
    pretrained: bool = True

    def __call__(self, groups: Groups, **kw: Any) -> TrainConfig:
        return self.make(groups, **{**self.options, **kw})

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.make.__name__}({opts})" + ("" if self.pretrained else " from random init")


RECIPES: dict[str, Recipe] = {
    "head only": Recipe(head_only),
    "last 2": Recipe(last_n, {"n": 2}),
    "all layers": Recipe(all_layers, {"lr_decay": 0.5}),
    "scratch": Recipe(scratch, pretrained=False),
}


def table(groups: Groups, recipes: Mapping[str, Recipe | Callable[..., TrainConfig]] | None = None,
          **cfg: Any):
    """What each recipe does to these groups: a DataFrame, one row per recipe, one column per
    group holding that group's LR, or ``"frozen"`` (for a notebook cell to show)."""
    import pandas as pd

    names = group_names(groups)
    rows = []
    for label, r in (recipes or RECIPES).items():
        c = r(names, **cfg)
        rates = surgery.group_lrs([surgery.LayerGroup(x) for x in names], c.lr, c.lr_decay, c.lrs)
        frozen = set(c.frozen or ())
        rows.append({"recipe": label, **{x: "frozen" if x in frozen else f"{rates[x]:.2g}" for x in names},
                     "train_bn": c.train_bn})
    return pd.DataFrame(rows).set_index("recipe")


__all__ = ["group_names", "last_n", "head_only", "all_layers", "scratch", "reinit", "fine_tune", "Recipe",
           "RECIPES", "table"]
