"""tlkit.adapt against references (micrograd style): gradients, losses and schedules
compared with direct computations, and every step function run through the core ``fit``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from tlkit import adapt, surgery, train
from tlkit.config import TrainConfig


# --------------------------------------------------------------------------- gradient reversal
@pytest.mark.parametrize("coeff", [0.0, 0.3, 1.0, 2.5])
def test_grad_reverse_backward_is_minus_coeff_times_grad(coeff):
    torch.manual_seed(0)
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.randn(4, 5)
    # Reference: the same expression without the layer, gradient of sum(w * x) is w.
    y = adapt.grad_reverse(x, coeff)
    assert torch.equal(y, x)                      # identity forward
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -coeff * w)


def test_grad_reverse_inside_a_network_matches_manual_negation():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    x1 = torch.randn(6, 3, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    lin(adapt.GradientReversal(0.7)(torch.tanh(x1))).pow(2).sum().backward()
    ref = lin(torch.tanh(x2)).pow(2).sum()
    ref.backward()
    assert torch.allclose(x1.grad, -0.7 * x2.grad, atol=1e-6)


@pytest.mark.parametrize("p, expected", [(0.0, 0.0), (0.5, 2 / (1 + math.exp(-5)) - 1),
                                         (1.0, 2 / (1 + math.exp(-10)) - 1)])
def test_dann_lambda_schedule(p, expected):
    assert adapt.dann_lambda(p) == pytest.approx(expected)
    assert adapt.dann_lambda(p, lambda_max=0.3) == pytest.approx(0.3 * expected)


def test_dann_lambda_values_and_bad_progress():
    assert adapt.dann_lambda(0.5) == pytest.approx(0.98661, abs=1e-5)
    assert adapt.dann_lambda(1.0) == pytest.approx(0.99991, abs=1e-5)
    with pytest.raises(ValueError, match="progress"):
        adapt.dann_lambda(1.5)


# --------------------------------------------------------------------------- losses vs numpy
def _np_cov(x):
    n = len(x)
    ones = np.ones((1, n))
    return (x.T @ x - (ones @ x).T @ (ones @ x) / n) / (n - 1)   # Sun & Saenko's formula


def test_coral_loss_equals_numpy_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 4)), 2 * rng.normal(size=(9, 4)) + 1
    d = a.shape[1]
    expected = ((_np_cov(a) - _np_cov(b)) ** 2).sum() / (4 * d * d)
    got = adapt.coral_loss(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(adapt.coral_loss(torch.tensor(a), torch.tensor(a))) == pytest.approx(0.0, abs=1e-7)


def _np_mmd(a, b, n_kernels=5, mul=2.0):
    z = np.concatenate([a, b])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    n = len(z)
    bw = d2.sum() / (n * n - n)
    k = sum(np.exp(-d2 / (bw * mul ** (i - n_kernels // 2))) for i in range(n_kernels))
    m = len(a)
    return k[:m, :m].mean() + k[m:, m:].mean() - 2 * k[:m, m:].mean()


def test_mmd_loss_equals_numpy_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(8, 3)) + 0.5
    got = adapt.mmd_loss(torch.tensor(a), torch.tensor(b))
    assert float(got) == pytest.approx(_np_mmd(a, b), rel=1e-4)
    # fixed bandwidth, single kernel: the textbook Gaussian-kernel MMD
    k = lambda x, y: np.exp(-((x[:, None] - y[None]) ** 2).sum(-1) / 2.0)  # noqa: E731
    ref = k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()
    got1 = adapt.mmd_loss(torch.tensor(a), torch.tensor(b), n_kernels=1, bandwidth=2.0)
    assert float(got1) == pytest.approx(ref, rel=1e-4)


def test_mmd_and_coral_grow_with_shift_and_reject_bad_shapes():
    torch.manual_seed(0)
    a = torch.randn(64, 8)
    near, far = torch.randn(64, 8), torch.randn(64, 8) * 3 + 2
    assert adapt.mmd_loss(a, far) > adapt.mmd_loss(a, near)
    assert adapt.coral_loss(a, far) > adapt.coral_loss(a, near)
    with pytest.raises(ValueError, match="same d"):
        adapt.mmd_loss(a, torch.randn(4, 3))
    with pytest.raises(ValueError, match="at least 2"):
        adapt.coral_loss(a[:1], a[:1])


def test_proxy_a_distance_separable_vs_identical():
    rng = np.random.default_rng(0)
    same = adapt.proxy_a_distance(rng.normal(size=(300, 5)), rng.normal(size=(300, 5)))
    apart = adapt.proxy_a_distance(rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 4)
    assert apart["domain_acc"] > 0.97 and apart["pad"] > 1.8
    assert same["domain_acc"] < 0.65 and same["pad"] < 0.6


# --------------------------------------------------------------------------- model and loader
def test_digitnet_forward_always_returns_logits_and_groups_cover_everything():
    m = adapt.DigitNet(in_channels=3, n_classes=10)
    x = torch.rand(5, 3, 28, 28)
    assert m(x).shape == (5, 10)
    m.eval()
    assert m(x).shape == (5, 10)
    assert m.features(x).shape == (5, m.feature_dim)
    assert m.domain_logits(m.features(x)).shape == (5,)
    groups = surgery.layer_groups(m)
    assert [g.name for g in groups] == ["conv", "fc", "domain", "head"]


def test_paired_loader_cycles_target_and_drops_target_labels():
    src = TensorDataset(torch.rand(40, 3, 8, 8), torch.arange(40) % 2)
    tgt = TensorDataset(torch.rand(12, 3, 8, 8), torch.arange(12) % 2)   # labels must not leak
    dl = adapt.PairedLoader(src, tgt, batch_size=8, seed=0)
    batches = list(dl)
    assert len(dl) == len(batches) == 5                      # one epoch = one pass over the source
    for (xs, ys), xt in batches:
        assert xs.shape == (8, 3, 8, 8) and ys.shape == (8,)
        assert isinstance(xt, torch.Tensor) and xt.shape == (8, 3, 8, 8)
    again = list(adapt.PairedLoader(src, tgt, batch_size=8, seed=0))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))     # seeded


# --------------------------------------------------------------------------- steps through fit
def _toy_pair(n=96, seed=0):
    """Source: toy images; target: the same task with a colour shift and noise."""
    ds = __import__("tlkit.toy", fromlist=["images"]).images(n=n, size=16, n_classes=2, channels=3, seed=seed)
    x, y = ds.tensors
    xt = (x * torch.tensor([0.4, 1.0, 0.2]).view(1, 3, 1, 1) + 0.3).clamp(0, 1)
    return adapt.DomainPair("toy", (x[:64], y[:64]), (x[64:], y[64:]), (xt[:64], y[:64]), (xt[64:], y[64:]))


@pytest.mark.parametrize("method", list(adapt.METHODS) + [adapt.REFERENCE])
def test_every_method_trains_through_fit_with_source_and_target_history(method):
    pair = _toy_pair()
    model, state = adapt.train_run(method, pair, seed=0, steps=6, batch_size=16, lr=3e-3, device="cpu",
                                   eval_every=3, model_kw={"widths": (4, 8), "feature_dim": 16, "disc_hidden": 8})
    assert state.status == "finished" and state.step == 6
    row = state.history[-1]
    assert {"source_acc", "target_acc", "train_loss", "train_acc"} <= set(row)
    if method == "dann":
        assert {"train_domain_acc", "train_lambda", "train_domain_loss"} <= set(row)
        assert 0 < row["train_lambda"] < 1.0        # the paper's schedule towards lambda_max = 1
    if method in ("coral", "mmd"):
        assert f"train_{method}_loss" in row


def test_dann_step_trains_discriminator_and_reverses_feature_gradient():
    pair = _toy_pair()
    model = adapt.DigitNet(in_channels=3, size=16, widths=(4, 8), feature_dim=16, disc_hidden=8)
    batch = next(iter(adapt.PairedLoader(TensorDataset(*pair.source_train), TensorDataset(pair.target_train[0]),
                                         16, seed=0)))
    state = train.State(cfg=TrainConfig(), total_steps=10, step=5)
    ctx = train.StepContext(device=torch.device("cpu"), state=state, cfg=state.cfg)
    torch.manual_seed(1)   # same dropout mask in both passes
    out = adapt.dann_step(lambda_max=1.0)(model, batch, ctx)
    out["loss"].backward()
    g_with = [p.grad.clone() for p in model.conv.parameters()]
    assert all(p.grad is not None for p in model.discriminator.parameters())
    assert float(out["lambda"]) == pytest.approx(adapt.dann_lambda(0.5))
    # Reference: the feature gradient equals d(cls)/dθ - lambda * d(domain)/dθ.
    model.zero_grad()
    xs, ys = batch[0]
    torch.manual_seed(1)
    f = torch.cat([model.features(xs), model.features(batch[1])])   # each domain through BatchNorm on its own
    cls = torch.nn.functional.cross_entropy(model.head(f[:16]), ys)
    d_true = torch.cat([torch.ones(16), torch.zeros(16)])
    dom = torch.nn.functional.binary_cross_entropy_with_logits(model.discriminator(f), d_true)
    (cls - adapt.dann_lambda(0.5) * dom).backward()
    g_ref = [p.grad for p in model.conv.parameters()]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_with, g_ref))


@pytest.mark.parametrize("method", ["dann", "coral", "mmd"])
def test_adaptation_steps_normalise_each_domain_on_its_own(method):
    # With separate passes the source features (train-mode BatchNorm) do not depend on the target
    # batch at all; with one joint batch they do (the statistics are the mix's).
    torch.manual_seed(0)
    model = adapt.DigitNet(in_channels=3, size=16, widths=(4, 8), feature_dim=8, disc_hidden=4, dropout=0.0)
    xs, ys = torch.rand(8, 3, 16, 16), torch.arange(8) % 2
    f_sep = [adapt.domain_features(model, xs, xt)[0] for xt in (torch.rand(8, 3, 16, 16), torch.ones(8, 3, 16, 16))]
    assert torch.allclose(f_sep[0], f_sep[1])
    assert torch.allclose(f_sep[0], model.features(xs))
    f_joint = [adapt.domain_features(model, xs, xt, "joint")[0]
               for xt in (torch.rand(8, 3, 16, 16), torch.ones(8, 3, 16, 16))]
    assert not torch.allclose(f_joint[0], f_joint[1], atol=1e-3)
    # the step itself follows the mode: its class loss on the source equals a source-only pass
    state = train.State(cfg=TrainConfig(), total_steps=10, step=5)
    ctx = train.StepContext(device=torch.device("cpu"), state=state, cfg=state.cfg)
    out = adapt.make_step(method)(model, ((xs, ys), torch.ones(8, 3, 16, 16)), ctx)
    ref = torch.nn.functional.cross_entropy(model(xs), ys).detach()
    assert float(out["cls_loss"]) == pytest.approx(float(ref), rel=1e-5)
    joint = adapt.make_step(method, batchnorm="joint")(model, ((xs, ys), torch.ones(8, 3, 16, 16)), ctx)
    assert float(joint["cls_loss"]) != pytest.approx(float(ref), rel=1e-3)
    with pytest.raises(ValueError, match="batchnorm"):
        adapt.make_step(method, batchnorm="mixed")


def test_default_discriminator_is_three_layers_of_1024_units():
    disc = adapt.DigitNet().discriminator
    linears = [m for m in disc.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 1024), (1024, 1024), (1024, 1)]
    assert adapt.DomainDiscriminator(8, hidden=4, layers=1)(torch.rand(3, 8)).shape == (3,)
    with pytest.raises(ValueError, match="layers"):
        adapt.DomainDiscriminator(8, layers=0)


def test_alignment_steps_need_target_batches():
    ds = TensorDataset(torch.rand(32, 3, 16, 16), torch.arange(32) % 2)
    model = adapt.DigitNet(in_channels=3, size=16, widths=(4, 8), feature_dim=8, disc_hidden=4)
    with pytest.raises(train.TrainingError, match="PairedLoader"):
        train.fit(model, train.loader(ds, 8), None, TrainConfig(epochs=1, device="cpu"), step=adapt.coral_step())
    with pytest.raises(ValueError, match="unknown method"):
        adapt.make_step("nope")


def test_run_returns_accuracies_and_label_free_diagnostics():
    pair = _toy_pair(n=160)
    kw = dict(seed=0, steps=60, batch_size=16, lr=3e-3, device="cpu", diagnose=True,
              model_kw={"widths": (4, 8), "feature_dim": 16, "disc_hidden": 16})
    src = adapt.run("source_only", pair, **kw)
    assert src["source_acc"] > 0.9
    assert set(src) >= {"target_acc", "domain_acc", "pad", "target_entropy", "target_class_balance"}


def test_results_table_mean_and_std():
    rows = [{"method": m, "seed": s, "target_acc": v, "source_acc": 0.9}
            for m, vals in (("a", [0.5, 0.7]), ("b", [0.8, 0.8])) for s, v in enumerate(vals)]
    t = adapt.results_table(rows, order=["b", "a"])
    assert list(t.index) == ["b", "a"]
    assert t.loc["a", "target_acc_mean"] == pytest.approx(0.6)
    assert t.loc["a", "target_acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert t.loc["b", "seeds"] == 2


def test_make_pair_splits_and_subsamples_both_domains():
    rng = np.random.default_rng(0)
    xs, ys = rng.random((200, 3, 8, 8), dtype=np.float32), np.arange(200) % 10
    xt, yt = rng.random((100, 3, 8, 8), dtype=np.float32), np.arange(100) % 10
    pair = adapt.make_pair("toy", (xs, ys), (xt, yt), n_source=50, n_test=30)
    assert pair.sizes() == {"source_train": 50, "source_test": 30, "target_train": 80, "target_test": 20}
    assert pair.source_train[0].dtype == torch.float32 and pair.target_test[1].dtype == torch.long
    assert len(set(pair.source_train[1].tolist())) == 10          # a random subset keeps every class here
    assert set(pair.loaders()) == {"source", "target"}


def test_make_step_weight_knob_sets_each_methods_weight():
    state = train.State(cfg=TrainConfig(), total_steps=1, step=1)   # progress 1: weight ~ its maximum
    ctx = train.StepContext(device=torch.device("cpu"), state=state, cfg=state.cfg)
    model = adapt.DigitNet(in_channels=3, size=16, widths=(4, 8), feature_dim=8, disc_hidden=4)
    batch = ((torch.rand(4, 3, 16, 16), torch.arange(4) % 2), torch.rand(4, 3, 16, 16))
    for method in ("dann", "coral", "mmd"):
        out = adapt.make_step(method, weight=0.7)(model, batch, ctx)
        assert float(out["lambda"]) == pytest.approx(adapt.dann_lambda(1.0, 0.7))
    assert adapt.make_step("source_only") is adapt.source_only_step


def test_adabn_reestimates_batchnorm_statistics_on_target_only():
    torch.manual_seed(0)
    model = adapt.DigitNet(in_channels=3, size=16, widths=(4, 8), feature_dim=8, disc_hidden=4)
    model.train()
    with torch.no_grad():
        model.features(torch.rand(64, 3, 16, 16))            # source-like statistics
    before = model.conv[1].running_mean.clone()
    xt = torch.rand(50, 3, 16, 16) * 0.2 + 0.8               # a brighter "target"
    new = adapt.adabn(model, xt, batch_size=25)   # equal batches: the cumulative mean is exact
    assert torch.equal(model.conv[1].running_mean, before)   # the original is untouched
    assert not new.training
    # Reference: the first BatchNorm's running mean equals the per-channel mean of conv1's output on xt.
    with torch.no_grad():
        ref = model.conv[0](xt).mean(dim=(0, 2, 3))
    assert torch.allclose(new.conv[1].running_mean, ref, atol=1e-5)
    with pytest.raises(ValueError, match="no BatchNorm"):
        adapt.adabn(torch.nn.Linear(3, 2), torch.rand(4, 3))
