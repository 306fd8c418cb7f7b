import pytest
import torch
import torchvision
from torch import nn

from tlkit import surgery, toy
from tlkit.surgery import GroupError


def test_mlp_groups_cover_every_parameter():
    m = toy.MLP()
    groups = surgery.layer_groups(m)
    assert [g.name for g in groups] == ["layer0", "layer1", "head"]
    assert sum(g.n_params for g in groups) == sum(p.numel() for p in m.parameters())


def test_model_defined_groups_are_used():
    groups = surgery.layer_groups(toy.TinyCNN())
    assert [g.name for g in groups] == ["stem", "block", "head"]


def test_incomplete_groups_are_rejected():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def layer_groups(self):
            return [("a", [self.a])]

    with pytest.raises(GroupError, match="belong to no layer group"):
        surgery.layer_groups(Bad())


def test_torchvision_tables():
    mb = surgery.layer_groups(torchvision.models.mobilenet_v2())
    assert [g.name for g in mb] == ["stem", "block1", "block2", "block3", "block4", "top", "head"]
    rn = surgery.layer_groups(torchvision.models.resnet18())
    assert [g.name for g in rn] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


def test_bert_style_encoder_groups():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=32, num_labels=2)
    groups = surgery.layer_groups(BertForSequenceClassification(cfg))
    assert [g.name for g in groups] == ["embeddings", "layer0", "layer1", "layer2", "head"]


def test_freeze_unfreeze_freeze_to():
    groups = surgery.layer_groups(toy.MLP())
    surgery.freeze_to(groups, -1)
    assert [g.frozen for g in groups] == [True, True, False]
    surgery.unfreeze(groups, "layer1")
    assert [g.frozen for g in groups] == [True, False, False]
    surgery.freeze(groups)
    assert all(g.frozen for g in groups)
    with pytest.raises(GroupError, match="this model's groups are"):
        surgery.freeze(groups, ["stem"])
    with pytest.raises(GroupError, match="out of range"):
        surgery.freeze_to(groups, 7)


def test_group_lrs_decay_and_overrides():
    groups = surgery.layer_groups(toy.MLP())
    assert surgery.group_lrs(groups, 1.0, 0.5) == {"layer0": 0.25, "layer1": 0.5, "head": 1.0}
    assert surgery.group_lrs(groups, 1.0, 0.5, {"layer0": 0.1})["layer0"] == 0.1
    with pytest.raises(GroupError, match="unknown layer group"):
        surgery.group_lrs(groups, 1.0, lrs={"body": 0.1})


def test_param_groups_include_frozen_and_skip_decay_on_biases():
    groups = surgery.layer_groups(toy.MLP())
    surgery.freeze(groups, "layer0")
    pg = surgery.param_groups(groups, 1e-2, 0.5, weight_decay=0.1)
    names = {g["name"] for g in pg}
    assert names == {"layer0", "layer1", "head"}
    for g in pg:
        assert all(p.dim() >= 2 for p in g["params"]) == (g["weight_decay"] == 0.1)


def test_summary_table_counts():
    groups = surgery.layer_groups(toy.MLP())
    surgery.freeze_to(groups, 2)
    df = surgery.summary(groups, lr=1e-3)
    assert list(df.columns) == ["group", "params", "trainable", "frozen", "bn_layers", "lr"]
    assert df["trainable"].tolist() == [0, 0, groups[2].n_params]
    assert df.loc[df.group == "layer1", "bn_layers"].item() == 1
    assert df.loc[df.group == "head", "lr"].item() == 1e-3
    assert surgery.count_params(groups) == (groups[2].n_params, sum(g.n_params for g in groups))


def test_set_bn_mode_puts_frozen_bn_in_eval():
    m = toy.MLP()
    groups = surgery.layer_groups(m)
    surgery.freeze(groups, "layer1")
    m.train()
    surgery.set_bn_mode(groups, train_bn=False)
    bn = groups[1].bn_modules()[0]
    assert not bn.training
    m.train()
    surgery.set_bn_mode(groups, train_bn=True)
    assert bn.training


def test_snapshot_copies():
    groups = surgery.layer_groups(toy.MLP())
    snap = surgery.snapshot(groups, ["head"])
    with torch.no_grad():
        groups[-1].modules[0].weight.add_(1)
    assert not torch.equal(snap["head.0.weight"], groups[-1].modules[0].weight)
