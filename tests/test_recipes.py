import dataclasses
import re
from pathlib import Path

import pytest
import torch

from tlkit import recipes, surgery, toy, train
from tlkit.config import TrainConfig
from tlkit.recipes import Recipe

NAMES = ["stem", "block1", "block2", "top", "head"]


def loaders():
    return (train.loader(toy.blobs(128, seed=0), 32, shuffle=True), train.loader(toy.blobs(64, seed=1), 64))


def test_last_n_freezes_all_but_the_last_n_groups():
    cfg = recipes.last_n(NAMES, 2, lr=1e-2)
    assert cfg.frozen == ("stem", "block1", "block2") and cfg.train_bn is False and cfg.lr == 1e-2
    assert recipes.last_n(NAMES, 5).frozen == ()
    assert recipes.last_n(NAMES, 5, keep_frozen=["stem"]).frozen == ("stem",)
    for bad in (0, 6, 1.5, True):
        with pytest.raises(surgery.GroupError, match="between 1"):
            recipes.last_n(NAMES, bad)
    with pytest.raises(surgery.GroupError, match="unknown layer group"):
        recipes.last_n(NAMES, 2, keep_frozen=["body"])


def test_head_only_takes_groups_a_model_or_names():
    model = toy.TinyCNN()
    for g in (NAMES, surgery.layer_groups(model), model):
        cfg = recipes.head_only(g, epochs=2)
        assert cfg.frozen == tuple(recipes.group_names(g)[:-1]) and cfg.epochs == 2


def test_all_layers_discriminative_lrs():
    cfg = recipes.all_layers(NAMES, body_lr_mult=0.1, lr=1e-2)
    assert cfg.frozen == () and cfg.train_bn is True
    assert cfg.lrs == {n: pytest.approx(1e-3) for n in NAMES[:-1]}
    decayed = recipes.all_layers(NAMES, lr=1e-2, lr_decay=0.5)
    rates = surgery.group_lrs([surgery.LayerGroup(n) for n in NAMES], decayed.lr, decayed.lr_decay, decayed.lrs)
    assert rates == {"stem": 1e-2 / 16, "block1": 1e-2 / 8, "block2": 1e-2 / 4, "top": 1e-2 / 2, "head": 1e-2}
    base = TrainConfig(lr=3e-3)
    assert recipes.all_layers(NAMES, body_lr_mult=0.5, base=base).lrs["stem"] == pytest.approx(1.5e-3)


def test_scratch_and_a_recipe_cannot_be_overridden_silently():
    cfg = recipes.scratch(NAMES, base=TrainConfig(lr_decay=0.5, lrs={"stem": 1.0}))
    assert (cfg.frozen, cfg.train_bn, cfg.lrs, cfg.lr_decay) == ((), True, None, 1.0)
    with pytest.raises(TypeError, match="decides"):
        recipes.head_only(NAMES, frozen=())
    with pytest.raises(surgery.GroupError, match="at least a body group"):
        recipes.head_only(["head"])


def test_recipe_binds_options_and_table_shows_each_recipe():
    r = Recipe(recipes.last_n, {"n": 3})
    assert r(NAMES, lr=0.1) == recipes.last_n(NAMES, 3, lr=0.1)
    assert r.describe() == "last_n(n=3)" and recipes.RECIPES["scratch"].pretrained is False
    t = recipes.table(NAMES, lr=1e-3)
    assert list(t.index) == list(recipes.RECIPES) and list(t.columns) == NAMES + ["train_bn"]
    assert t.loc["head only", "stem"] == "frozen" and t.loc["head only", "head"] == "0.001"
    assert t.loc["all layers", "stem"] == f"{1e-3 / 16:.2g}"


def test_reinit_resets_every_parameter_or_says_why():
    m = toy.TinyCNN()
    before = [p.detach().clone() for p in m.parameters()]
    recipes.reinit(m, seed=1)
    assert all(not torch.equal(a, b) for a, b in zip(before, m.parameters()) if a.numel() > 16)

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match="without reset_parameters"):
        recipes.reinit(Odd())


def test_fine_tune_two_phases():
    tr, va = loaders()
    states = recipes.fine_tune(toy.MLP(), tr, va, TrainConfig(epochs=2, lr=1e-2), head_epochs=1)
    assert len(states) == 2
    assert states[0].cfg.frozen == ("layer0", "layer1") and states[0].cfg.epochs == 1
    assert states[1].cfg.frozen == () and states[1].cfg.lr == 5e-3 and states[1].cfg.lr_decay == 0.5
    assert states[0].trainable_params < states[1].trainable_params


def test_no_chapter_module_decides_what_is_frozen():
    """Chapter modules call recipes; a ``frozen=`` computed anywhere else is a second source of truth.

    Looks at the code (ast), not the docstrings: any ``frozen=`` keyword but a dataclass's, any
    assignment to a name ``frozen``, any call of surgery's freeze_to/frozen_for_last."""
    import ast

    root = Path(recipes.__file__).parent
    # the panel (ui.py, runs.py) turns the user's own per-group toggles into frozen=; its slider calls recipes
    allowed = {"recipes.py", "surgery.py", "backbones.py", "config.py", "train.py", "ui.py", "runs.py"}
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id == "dataclass"):
                if any(k.arg == "frozen" for k in node.keywords):
                    offenders.append(f"{path.name}:{node.lineno}: frozen= keyword")
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in ("freeze_to", "frozen_for_last", "apply_frozen"):
                    offenders.append(f"{path.name}:{node.lineno}: {name}()")
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "frozen" for t in targets):
                    offenders.append(f"{path.name}:{node.lineno}: frozen = ...")
    assert not offenders, "compute frozen groups with tlkit.recipes instead:\n" + "\n".join(offenders)
