import math
import subprocess
import sys

import pytest
import torch

from tlkit import surgery, toy, train
from tlkit.config import TrainConfig
from tlkit.surgery import GroupError
from tlkit.train import Control, TrainingError, fit


def loaders(n=256, batch=32, seed=0):
    return (train.loader(toy.blobs(n, seed=seed), batch, shuffle=True, seed=seed),
            train.loader(toy.blobs(128, seed=seed + 100), 64))


def test_import_train_pulls_in_no_widgets_or_matplotlib():
    code = "import sys, tlkit.train, tlkit.surgery; bad = {'ipywidgets', 'matplotlib', 'transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loss_falls_and_accuracy_rises_on_toy_data():
    torch.manual_seed(0)
    tr, va = loaders()
    state = fit(toy.MLP(), tr, va, TrainConfig(epochs=4, lr=1e-2))
    losses = [r["train_loss"] for r in state.history]
    assert state.status == "finished" and len(state.history) == 4
    assert losses[-1] < 0.5 * losses[0]
    assert state.history[-1]["valid_acc"] > 0.9
    assert state.step == state.total_steps == 4 * len(tr)


def test_frozen_groups_bit_identical_and_bn_stats_unchanged():
    model = toy.MLP()
    groups = surgery.layer_groups(model)
    before = surgery.snapshot(groups, ["layer0", "layer1"])
    head_before = surgery.snapshot(groups, ["head"])
    tr, va = loaders()
    fit(model, tr, va, TrainConfig(epochs=2, lr=1e-2, frozen=("layer0", "layer1"), weight_decay=0.1), groups=groups)
    after = surgery.snapshot(groups, ["layer0", "layer1"])
    assert any("running_mean" in k for k in before)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    head_after = surgery.snapshot(groups, ["head"])
    assert not torch.equal(head_before["head.0.weight"], head_after["head.0.weight"])


def test_train_bn_lets_frozen_bn_statistics_move():
    model = toy.MLP()
    groups = surgery.layer_groups(model)
    before = surgery.snapshot(groups, ["layer1"])
    tr, _ = loaders()
    fit(model, tr, None, TrainConfig(epochs=1, frozen=("layer0", "layer1"), train_bn=True), groups=groups)
    after = surgery.snapshot(groups, ["layer1"])
    key = next(k for k in before if k.endswith("running_mean"))
    assert not torch.equal(before[key], after[key])
    assert torch.equal(before["layer1.0.0.weight"], after["layer1.0.0.weight"])


def test_each_param_group_gets_its_lr():
    model = toy.MLP()
    seen = {}

    def cb(event, state, control):
        if event == "fit_start":
            seen.update(state.group_lrs)

    tr, _ = loaders()
    state = fit(model, tr, None, TrainConfig(epochs=1, lr=0.01, lr_decay=0.5, lrs={"layer0": 0.001}), callbacks=[cb])
    assert seen == {"layer0": 0.001, "layer1": 0.005, "head": 0.01}
    assert state.group_lrs == seen


def test_optimizer_really_uses_group_lrs():
    # SGD without momentum: the update of each weight equals lr * grad, so the
    # change per group reveals the LR it got.
    model = toy.MLP(bn=False)
    groups = surgery.layer_groups(model)
    x, y = toy.blobs(32)[:]
    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    fit(model, dl, None, TrainConfig(epochs=1, optimizer="sgd", momentum=0.0, lr=0.1, lr_decay=0.1), groups=groups)
    for name, p in model.named_parameters():
        lr = {"0": 0.001, "1": 0.01, "2": 0.1}[name.split(".")[0]]
        assert torch.allclose(ref[name] - p.detach(), lr * grads[name], atol=1e-6), name


def test_layer_groups_with_equal_settings_share_one_optimizer_group():
    model = toy.MLP(bn=False)
    groups = surgery.layer_groups(model)
    pg = surgery.param_groups(groups, 0.01, 1.0, {"layer1": 0.001}, weight_decay=0.1)
    merged = train.merge_param_groups(pg)
    settings = {(g["lr"], g["weight_decay"]) for g in pg}
    assert len(merged) == len(settings) < len(pg)
    assert sum(len(g["params"]) for g in merged) == sum(len(g["params"]) for g in pg) == len(list(model.parameters()))
    assert "head" in merged[-1]["name"] and merged[-1]["lr"] == 0.01  # the head's group stays last (logged "lr")
    for g in merged:  # no parameter changed its settings
        for p in g["params"]:
            src = next(h for h in pg if any(p is q for q in h["params"]))
            assert (src["lr"], src["weight_decay"]) == (g["lr"], g["weight_decay"])


def test_stop_from_callback_ends_at_next_step_and_keeps_history():
    tr, va = loaders()

    def stopper(event, state, control):
        if event == "step_end" and state.step == 11:
            control.should_stop = True

    model = toy.MLP()
    state = fit(model, tr, va, TrainConfig(epochs=5), callbacks=[stopper])
    assert state.status == "stopped"
    assert state.step == 11
    assert len(state.history) == 2  # epoch 1 (8 steps) and the partial epoch 2
    assert state.history[-1]["step"] == 11


def test_two_seeded_cpu_runs_are_bit_identical():
    def run():
        torch.manual_seed(123)
        model = toy.MLP()
        tr, va = loaders()
        fit(model, tr, va, TrainConfig(epochs=2, seed=7))
        return train.clone_weights(model)

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_callback_events_arrive_in_order():
    events = []
    tr, va = loaders(n=64, batch=32)
    fit(toy.MLP(), tr, va, TrainConfig(epochs=2), callbacks=[lambda e, s, c: events.append(e)])
    assert events == ["fit_start", "step_end", "step_end", "eval_end", "epoch_end",
                      "step_end", "step_end", "eval_end", "epoch_end", "fit_end"]


def test_mid_epoch_evaluations_fire_eval_end_not_epoch_end():
    events = []
    tr, va = loaders()  # 8 steps per epoch
    state = fit(toy.MLP(), tr, va, TrainConfig(epochs=2, eval_every=3),
                callbacks=[lambda e, s, c: events.append((e, s.step, len(s.history)))])
    assert [(s, n) for e, s, n in events if e == "eval_end"] == [(3, 1), (6, 2), (9, 3), (12, 4), (15, 5), (16, 6)]
    assert [s for e, s, n in events if e == "epoch_end"] == [8, 16]
    assert set(train.EVENTS) == {e for e, _, _ in events}
    assert len(state.history) == 6


def test_unknown_group_name_is_a_clear_error():
    tr, _ = loaders()
    with pytest.raises(GroupError, match="unknown layer group.*'backbone'.*groups are"):
        fit(toy.MLP(), tr, None, TrainConfig(frozen=("backbone",)))
    with pytest.raises(GroupError, match="unknown layer group"):
        fit(toy.MLP(), tr, None, TrainConfig(lrs={"body": 1e-3}))


def test_everything_frozen_is_refused():
    tr, _ = loaders()
    with pytest.raises(TrainingError, match="nothing to train"):
        fit(toy.MLP(), tr, None, TrainConfig(frozen=("layer0", "layer1", "head")))


def test_failure_keeps_history_and_weights():
    tr, va = loaders()

    def flaky(model, batch, ctx):
        if ctx.state.step == 10:
            raise RuntimeError("boom")
        return train.supervised_step(model, batch, ctx)

    model = toy.MLP()
    with pytest.raises(TrainingError, match="boom") as info:
        fit(model, tr, va, TrainConfig(epochs=3), step=flaky)
    state = info.value.state
    assert state.status == "failed" and state.step == 10 and len(state.history) == 1
    state2 = fit(model, tr, va, TrainConfig(epochs=3), step=flaky, on_error="return")
    assert state2.status == "failed" and "boom" in state2.message


def test_divergence_stops_with_advice():
    tr, va = loaders()

    def nan_step(model, batch, ctx):
        out = train.supervised_step(model, batch, ctx)
        if ctx.state.step >= 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    state = fit(toy.MLP(), tr, va, TrainConfig(epochs=2), step=nan_step)
    assert state.status == "diverged" and "learning rate" in state.message and state.step == 3


def test_restore_best_weights():
    tr, va = loaders()
    model = toy.MLP()
    state = fit(model, tr, va, TrainConfig(epochs=3, lr=1e-2, restore_best=True))
    best = state.best
    assert best is not None and best["valid_acc"] == max(r["valid_acc"] for r in state.history)
    assert train.evaluate(model, va)["acc"] == pytest.approx(best["valid_acc"])


def test_keyboard_interrupt_ends_cleanly():
    tr, va = loaders()

    def interrupt(event, state, control):
        if event == "step_end" and state.step == 5:
            raise KeyboardInterrupt

    state = fit(toy.MLP(), tr, va, TrainConfig(epochs=3), callbacks=[interrupt])
    assert state.status == "interrupted" and state.step == 5


def test_dict_of_valid_loaders_and_eval_every():
    tr, va = loaders()
    state = fit(toy.MLP(), tr, {"source": va, "target": va}, TrainConfig(epochs=2, eval_every=4, max_steps=12))
    assert [r["step"] for r in state.history] == [4, 8, 12]
    assert {"source_acc", "target_acc", "train_loss"} <= set(state.history[0])
    assert state.monitor == "source_acc"


def test_lr_factor_schedules():
    assert train.lr_factor(0, 100, "constant") == 1.0
    assert train.lr_factor(4, 100, "warmup_cosine", 0.1) == pytest.approx(0.5)
    assert train.lr_factor(10, 100, "warmup_cosine", 0.1) == pytest.approx(1.0)
    assert train.lr_factor(100, 100, "warmup_cosine", 0.1) == pytest.approx(0.0, abs=1e-9)
    assert train.lr_factor(55, 100, "warmup_cosine", 0.1) == pytest.approx(0.5)
    assert train.lr_factor(50, 100, "linear") == pytest.approx(0.5)
    assert max(train.lr_factor(s, 100, "onecycle") for s in range(100)) == pytest.approx(1.0)


def test_schedule_applied_to_optimizer():
    tr, _ = loaders()
    state = fit(toy.MLP(), tr, None, TrainConfig(epochs=2, lr=0.1, schedule="linear", log_steps=True))
    lrs = [s["lr"] for s in state.steps]  # the rate each step ran at: 0.1 * (1, 1 - 1/16, ..., 1/16)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 / 16)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_grad_clip_limits_update():
    x, y = toy.blobs(32)[:]
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x * 100, y), batch_size=32)
    model = toy.MLP(bn=False)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit(model, dl, None, TrainConfig(epochs=1, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=0.01))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 0.01 + 1e-5


def test_device_and_precision_choice_on_cpu():
    assert train.pick_device("auto").type in ("cpu", "cuda", "mps")
    assert train.pick_precision(torch.device("cpu"), "auto") == "fp32"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            train.pick_device("cuda")


def test_evaluate_restores_train_mode_and_uses_no_grad():
    model = toy.MLP()
    model.train()
    _, va = loaders()
    out = train.evaluate(model, va)
    assert model.training and set(out) == {"loss", "acc", "bacc"} and math.isfinite(out["loss"])


@pytest.mark.parametrize("key", ["labels", "label"])  # HF models take "labels"; HF datasets name the column "label"
def test_hf_style_dict_batches(key):
    class DictModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 3)

        def forward(self, input_ids):
            return self.lin(input_ids)

    ds = toy.blobs(64)
    batches = [{"input_ids": ds.tensors[0][i:i + 16], key: ds.tensors[1][i:i + 16]} for i in range(0, 64, 16)]
    state = fit(DictModel(), batches, batches, TrainConfig(epochs=2, lr=1e-2))
    assert state.status == "finished" and state.samples_seen == 128 and "valid_acc" in state.history[-1]


def test_precision_choice_on_cuda_devices(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers (emulation)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))
    assert train.pick_precision(cuda, "auto") == "bf16"      # A100/H100
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    assert train.pick_precision(cuda, "auto") == "fp16"      # T4 (Colab): fp16 with a grad scaler, not emulated bf16
    assert train.pick_precision(cuda, "fp32") == "fp32"
    assert train.pick_precision(torch.device("cpu"), "bf16") == "fp32"


def test_to_device_handles_nested_batches():
    batch = {"input_ids": torch.ones(2, 3), "meta": [torch.zeros(1), ("x", torch.ones(1))]}
    out = train.to_device(batch, torch.device("cpu"))
    assert torch.equal(out["input_ids"], batch["input_ids"]) and out["meta"][1][0] == "x"


def test_eval_every_skips_epoch_end_evaluations():
    tr, va = loaders()  # 8 steps per epoch
    state = fit(toy.MLP(), tr, va, TrainConfig(epochs=3, eval_every=5))
    assert [r["step"] for r in state.history] == [5, 10, 15, 20, 24]


@pytest.mark.parametrize("schedule,warmup,n_warm", [("constant", 0.25, 4), ("linear", 0.25, 4),
                                                    ("warmup_cosine", 0.25, 4), ("onecycle", 0.0, 5)])
def test_warmup_applies_to_the_first_optimizer_step(schedule, warmup, n_warm):
    # SGD without momentum: step 1 moves each weight by lr * factor * grad, so the parameter
    # delta of the first step reveals the learning rate it really ran at (1/n_warm of the base)
    x, y = toy.blobs(32)[:]
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)  # 1 step per epoch
    model = toy.MLP(bn=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()))

    def stop_after_first(event, state, control):
        if event == "step_end":
            control.should_stop = True

    state = fit(model, dl, None, TrainConfig(epochs=16, optimizer="sgd", momentum=0.0, lr=0.1, schedule=schedule,
                                             warmup=warmup, log_steps=True), callbacks=[stop_after_first])
    assert state.step == 1 and state.total_steps == 16
    assert state.steps[0]["lr"] == pytest.approx(0.1 / n_warm)
    for (name, p), g in zip(model.named_parameters(), grads):
        assert torch.allclose(before[name] - p.detach(), 0.1 / n_warm * g, atol=1e-7), name


def test_an_exploding_but_finite_loss_ends_as_diverged():
    tr, va = loaders()
    torch.manual_seed(0)
    model = toy.MLP()
    state = fit(model, tr, va, TrainConfig(epochs=3, lr=1e3, log_steps=True))
    assert state.status == "diverged" and "lower it" in state.message and "learning rate" in state.message
    assert all(math.isfinite(s["loss"]) for s in state.steps) and max(s["loss"] for s in state.steps) > 1e4
    assert state.step <= train.DivergenceGuard.PATIENCE + 1  # stopped within a few steps, not after 24


@pytest.mark.parametrize("lr,optimizer,pretrain", [(3e-2, "adamw", False), (1e-1, "adamw", False),
                                                   (1.0, "sgd", False), (3e-2, "adamw", True), (1e-1, "sgd", True)])
def test_divergence_rule_leaves_healthy_runs_alone(lr, optimizer, pretrain):
    # runs at the edge of stability (AdamW 0.1, SGD 1.0 with BatchNorm) and a second run on a
    # trained model (starting loss near 0) all finish; the running mean stays far below the limit
    tr, va = loaders()
    torch.manual_seed(1)
    model = toy.MLP()
    if pretrain:
        fit(model, tr, va, TrainConfig(epochs=3, lr=1e-2))
    guard = train.DivergenceGuard(lazy=False)
    state = fit(model, tr, va, TrainConfig(epochs=4, lr=lr, optimizer=optimizer, log_steps=True))
    assert state.status == "finished", state.message
    for i, s in enumerate(state.steps):
        assert guard(torch.tensor(s["loss"]), i) == ""
    assert guard.mean < guard.FACTOR * guard.start / 10  # a 10x margin at the end of the run


def test_divergence_guard_on_gpu_reads_the_device_only_every_few_steps():
    guard = train.DivergenceGuard(lazy=True)  # tensors kept as tensors, as on a GPU
    assert guard(torch.tensor(1.0), 0) == ""
    messages = [guard(torch.tensor(1e9), step) for step in range(1, 26)]
    assert messages[:-1] == [""] * 24 and "lower it" in messages[-1]  # step 25 is the first read-back
    guard = train.DivergenceGuard(lazy=True)
    assert "nan" in guard(torch.tensor(float("nan")), 0)


@pytest.mark.parametrize("kind", ["tlkit loader", "plain DataLoader"])
def test_same_seed_same_run_on_every_fit_call(kind):
    import copy

    ds = toy.blobs(256)
    dl = (train.loader(ds, 32, shuffle=True, seed=0) if kind == "tlkit loader"
          else torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True))
    _, va = loaders()
    torch.manual_seed(0)
    model = toy.MLP()
    runs = [fit(copy.deepcopy(model), dl, va, TrainConfig(epochs=2, seed=3, log_steps=True)) for _ in range(3)]
    rows = [[{k: v for k, v in r.items() if k != "time"} for r in s.history] for s in runs]
    assert rows[0] == rows[1] == rows[2]
    assert [s["loss"] for s in runs[0].steps] == [s["loss"] for s in runs[2].steps]
    other = fit(copy.deepcopy(model), dl, va, TrainConfig(epochs=2, seed=4, log_steps=True))
    assert [s["loss"] for s in other.steps] != [s["loss"] for s in runs[0].steps]  # the seed matters



def test_restore_best_with_no_usable_metric_says_so():
    tr, va = loaders()

    def nan_eval(model, dl, **kw):
        return {"acc": float("nan")}

    model = toy.MLP()
    state = fit(model, tr, va, TrainConfig(epochs=2, restore_best=True), evaluate_fn=nan_eval)
    assert state.status == "finished" and state.best_weights is None
    assert "restore_best: valid_acc never had a value" in state.message
