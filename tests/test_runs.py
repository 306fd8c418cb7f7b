"""The panel's widget-free half (tlkit.runs): reproducible runs, seeds, names, board, config strings, lifecycle.

No ipywidgets here: ``RunManager`` is driven directly, as ui.py's views drive it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tlkit import runs, surgery, toy, train
from tlkit.config import ConfigError, TrainConfig
from tlkit.runs import Listener, RunManager, diagnose

from panel_helpers import one_thread, slow_step, wait_until  # noqa: F401 - one_thread is an autouse fixture

ROOT = Path(__file__).resolve().parents[1]


class DropoutMLP(nn.Sequential):
    """toy.MLP's groups with dropout in the body, so runs also depend on the dropout masks."""

    def __init__(self):
        super().__init__(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3)),
                         nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3)),
                         nn.Linear(32, 3))


def valid_dl():
    return train.loader(toy.blobs(128, seed=1), 64)


def manager(model=None, tr=None, **kw) -> RunManager:
    kw.setdefault("cfg", TrainConfig(epochs=2, lr=3e-3))
    return RunManager(model if model is not None else toy.MLP(),
                      tr if tr is not None else train.loader(toy.blobs(256, seed=0), 32, shuffle=True),
                      valid_dl(), **kw)


def test_runs_imports_no_widgets_or_matplotlib():
    code = ("import sys, tlkit.runs; bad = [m for m in ('ipywidgets', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------- reproducible by default
@pytest.mark.parametrize("kind", ["tlkit loader", "plain DataLoader"])
def test_three_runs_with_the_same_settings_give_the_same_history(kind):
    ds = toy.blobs(256, seed=0)
    tr = (train.loader(ds, 32, shuffle=True, seed=5) if kind == "tlkit loader"
          else torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True))
    m = manager(DropoutMLP(), tr, cfg=TrainConfig(epochs=3, lr=3e-3, seed=0))
    states = [m.train(block=True) for _ in range(3)]
    h = [s.history for s in states]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(h[0]) == strip(h[1]) == strip(h[2])            # bit-identical numbers, not approx
    other = m.train(block=True, seed=1)                          # another seed: another run
    assert strip(other.history) != strip(h[0])
    assert [r["seed"] for r in m.board().to_dict("records")] == [0, 0, 0, 1]


def test_repeat_over_seeds_gives_k_rows_and_mean_std():
    m = manager(cfg=TrainConfig(epochs=1, lr=3e-3, seed=4))
    states = m.repeat(3)
    assert len(states) == 3 and [s.cfg.seed for s in states] == [4, 5, 6]
    board = m.board()
    assert len(board) == 3 and list(board["seed"]) == [4, 5, 6]
    summary = m.seed_summary()
    assert len(summary) == 1 and summary.loc[0, "seeds"] == 3 and summary.loc[0, "runs"] == "1-3"
    best = list(board["best_valid_acc"])
    assert summary.loc[0, "best_valid_acc_mean"] == pytest.approx(sum(best) / 3)
    assert summary.loc[0, "best_valid_acc_std"] == pytest.approx(torch.tensor(best).std().item())
    assert m.values["seed"] == 4                                   # the seed control is left where it was
    with pytest.raises(ConfigError, match="seeds"):
        m.repeat(1)


# --------------------------------------------------------------------------- names and board
def test_run_names_are_unique_and_auto_names_say_what_changed():
    m = manager(cfg=TrainConfig(epochs=1, lr=3e-3))
    m.train(block=True, name="baseline")
    m.train(block=True, name="baseline")
    m.set(name="baseline")
    m.train(block=True)
    assert [r.name for r in m.runs] == ["baseline", "baseline (2)", "baseline (3)"]
    assert m.values["name"] == ""                       # the name box does not keep a run's name
    m.train(block=True)                                 # no name: auto-name says what changed (nothing)
    m.train(block=True, lr=1e-2, train_last=1)
    names = [r.name for r in m.runs]
    assert names[3] == "as run 1"
    assert "head only" in names[4] and "lr 0.01" in names[4]
    assert len(set(names)) == len(names)


def test_board_shows_results_first_then_what_changed_and_the_real_batch_size():
    tr = train.loader(toy.blobs(256, seed=0), 16, shuffle=True)     # the loader's batch is 16, cfg says 32
    m = manager(tr=tr, cfg=TrainConfig(epochs=1, lr=3e-3, batch_size=32))
    m.train(block=True)
    m.train(block=True, lr=1e-2, epochs=2)
    board = m.board()
    assert list(board.columns[:6]) == ["run", "name", "status", "seed", "best_valid_acc", "final_valid_acc"]
    assert list(board["batch"]) == [16, 16]
    assert board.loc[0, "changed"] == "" and board.loc[1, "changed"] == "epochs 2, lr 0.01"
    assert "lr" not in board.columns                       # settings only on demand
    full = m.board(full=True)
    assert {"lr", "epochs", "optimizer", "config", "diagnosis"} <= set(full.columns)
    md = m.to_markdown()
    assert md.splitlines()[0].startswith("| run | name | status") and len(md.splitlines()) == 4
    csv = m.to_csv()
    assert csv.splitlines()[0].startswith("run,name,status") and len(csv.splitlines()) == 3


def test_a_loaded_config_string_reproduces_its_run():
    m = manager(DropoutMLP(), cfg=TrainConfig(epochs=2, lr=3e-3))
    first = m.train(block=True, train_last=2, lr=5e-3, seed=3, optimizer="sgd", lr_decay=0.5, weight_decay=0.01)
    text = m.config_string(1)
    assert text.startswith(runs.CONFIG_PREFIX) and len(text) < 200
    m.train(block=True, train_last=3, lr=1e-3, seed=0, optimizer="adam", lr_decay=1.0)   # something else
    m.overrides.clear()
    m.load(text)
    again = m.train(block=True)
    assert again.cfg == first.cfg
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(again.history) == strip(first.history)
    with pytest.raises(ConfigError, match="tlkit-run:"):
        m.load("lr=0.1")
    with pytest.raises(ConfigError, match="unknown settings"):
        m.load('tlkit-run:{"learning_rate":0.1}')


def test_override_for_one_run_does_not_persist():
    m = manager()
    s1 = m.train(block=True, max_steps=3)
    s2 = m.train(block=True)
    assert s1.step == 3 and s1.cfg.max_steps == 3
    assert s2.cfg.max_steps is None and s2.step == 2 * 8
    m.set(max_steps=5)                                  # set() is for good: shown as an override
    assert m.train(block=True).step == 5 and m.train(block=True).step == 5


def test_run_stopped_before_its_first_step_reaches_the_board_and_keeps_its_number():
    def stop_at_start(event, state, control):
        if event == "fit_start" and state.cfg.lr == 0.5:
            control.should_stop = True

    m = manager(callbacks=(stop_at_start,))
    s = m.train(block=True, lr=0.5)
    assert s.status == "stopped" and s.step == 0
    m.train(block=True, lr=3e-3)
    board = m.board()
    assert list(board["run"]) == [1, 2] and list(board["steps"])[0] == 0
    assert list(board["status"]) == ["stopped", "finished"]
    assert "before its first step" in m.runs[0].diagnosis


def test_unknown_group_in_cfg_frozen_is_an_error_as_in_fit():
    with pytest.raises(surgery.GroupError, match="body"):
        manager(cfg=TrainConfig(frozen=("body",)))


def test_hand_frozen_parameters_stay_frozen_until_their_group_is_unfrozen():
    model = toy.MLP()
    model[1][0].weight.requires_grad_(False)             # part of layer1, frozen by hand
    bn = model[1][1]
    m = manager(model)
    before_w = model[1][0].weight.detach().clone()
    bn_before = bn.running_mean.clone()
    m.train(block=True)                                  # every group trains, by the panel's defaults
    assert torch.equal(model[1][0].weight, before_w)
    assert not torch.equal(bn.running_mean, bn_before)   # layer1's BatchNorm is not frozen: it trains
    assert m.hand_frozen_count("layer1") == 1
    trainable, total = m.trainable_count()
    assert total - trainable == before_w.numel()
    m.set(train_last=1)                                  # freeze layer1 ...
    m.set(train_last=3)                                  # ... and unfreeze it: an explicit unfreeze
    m.train(block=True)
    assert not torch.equal(model[1][0].weight, before_w) and m.hand_frozen_count("layer1") == 0


# --------------------------------------------------------------------------- lifecycle
def test_a_recreated_panel_stops_the_old_run():
    old = manager(step=slow_step(0.02), cfg=TrainConfig(epochs=100, lr=3e-3), key="test-panel-key")
    run = old.start(block=False)
    wait_until(lambda: run.state is not None and run.state.step >= 3)
    new = manager(key="test-panel-key")
    assert not run.running and run.state.status == "stopped"
    assert run.state.history and old.runs == [run]        # the old run kept its history and its place
    assert new.runs == [] and not new.running


def test_train_right_after_a_run_finishes_is_never_refused():
    class Slow(Listener):  # a slow final board (as a big one in a browser): the race window
        def run_finished(self, run):
            time.sleep(0.3)

    m = manager(listener=Slow(), cfg=TrainConfig(epochs=1, lr=3e-3))
    for _ in range(3):
        run = m.start(block=False)
        run.wait(timeout=60)              # "finished" is said exactly when the run is done
        again = m.start(block=False)      # must not raise "still going"
        again.wait(timeout=60)
    run = m.start(block=False)
    wait_until(lambda: run.finishing)     # trained, still drawing its board: a click now waits for it
    again = m.start(block=False)
    assert not run.running and again.wait(timeout=60).status == "finished"
    assert [r.number for r in m.runs] == list(range(1, 9))


# a manager whose run takes a while (20 ms a step), for the interrupt tests
SLOW_MANAGER = textwrap.dedent("""
    import sys, time, torch
    from tlkit import runs, toy, train
    from tlkit.config import TrainConfig
    torch.set_num_threads(1)
    def slow(model, batch, ctx):
        time.sleep(0.02)
        return train.supervised_step(model, batch, ctx)
    m = runs.RunManager(toy.MLP(), train.loader(toy.blobs(256, seed=0), 32, shuffle=True),
                        train.loader(toy.blobs(64, seed=1), 64), cfg=TrainConfig(epochs={epochs}, eval_every=4),
                        step=slow)
""")


def test_kernel_interrupt_stops_a_background_run_keeping_weights_and_history(tmp_path):
    script = SLOW_MANAGER.format(epochs=200) + textwrap.dedent("""
        initial = train.clone_weights(m.model)
        run = m.start(block=False)
        while run.state is None or run.state.step < 10:
            time.sleep(0.01)
        try:
            print("ready", flush=True)   # inside the try: the interrupt may come at once
            while run.running:
                time.sleep(0.05)
        except KeyboardInterrupt:
            print("main thread interrupted too", flush=True)   # chained to Python's own handler
        state = run.wait(60)
        changed = any(not torch.equal(v, initial[k]) for k, v in m.model.state_dict().items())
        print(state.status, state.step, len(state.history), changed, m.runs == [run], flush=True)
    """)
    # a shell's background job starts with SIGINT ignored; a kernel does not, so restore the default
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    lines = out.strip().splitlines()
    assert lines, err[-2000:]
    status, step, n_hist, changed, on_board = lines[-1].split()
    assert status == "interrupted" and int(step) < 200 * 8 and int(n_hist) >= 2
    assert changed == "True" and on_board == "True"
    assert "main thread interrupted too" in lines


# --------------------------------------------------------------------------- settings and diagnosis
def test_set_checks_each_control_and_names_it():
    m = manager(extras={"method": ["a", "b"], "size": (32, 16, 64, 16), "flip": True})
    for bad, field in [({"optimizer": "adamx"}, "optimizer"), ({"schedule": 3}, "schedule"),
                       ({"epochs": "three"}, "epochs"), ({"seed": 1.5}, "seed"), ({"lr_decay": 2.0}, "lr_decay"),
                       ({"method": "c"}, "method"), ({"size": 100}, "size"), ({"flip": "yes"}, "flip"),
                       ({"train_last": 7}, "train_last"), ({"max_steps": -1}, "max_steps")]:
        with pytest.raises(ConfigError, match=field):
            m.set(**bad)
    with pytest.raises(ConfigError, match="adamw, adam, sgd"):
        m.set(optimizer="adamx")
    with pytest.raises(ConfigError, match=r"\['a', 'b'\]"):
        m.set(method="c")
    with pytest.raises(KeyError, match="unknown panel setting"):
        m.set(learning_rate=1e-3)


def _state(rows, status="finished", monitor="valid_acc", step=10):
    s = train.State(cfg=TrainConfig(), status=status, step=step, monitor=monitor)
    s.history = [dict(epoch=i + 1, **r) for i, r in enumerate(rows)]
    return s


def test_diagnosis_names_the_pattern_and_the_epoch():
    over = _state([dict(train_loss=1.0, valid_loss=0.9, valid_acc=0.6), dict(train_loss=0.6, valid_loss=0.7,
                   valid_acc=0.7), dict(train_loss=0.3, valid_loss=0.8, valid_acc=0.69),
                   dict(train_loss=0.1, valid_loss=1.1, valid_acc=0.66)])
    assert diagnose(over).startswith("Overfitting") and "epoch 2" in diagnose(over)
    improving = _state([dict(train_loss=1.0, valid_loss=1.0, valid_acc=0.5),
                        dict(train_loss=0.8, valid_loss=0.8, valid_acc=0.6)])
    assert diagnose(improving).startswith("Still improving") and "more epochs" in diagnose(improving)
    flat = _state([dict(train_loss=1.10, valid_loss=1.1, valid_acc=0.34, train_acc=0.35),
                   dict(train_loss=1.09, valid_loss=1.1, valid_acc=0.34, train_acc=0.35),
                   dict(train_loss=1.08, valid_loss=1.1, valid_acc=0.33, train_acc=0.36)])
    assert diagnose(flat).startswith("Underfitting") and "higher learning rate" in diagnose(flat)
    diverged = _state([], status="diverged")
    assert diagnose(diverged).startswith("Diverged") and "Lower the learning rate" in diagnose(diverged)


def test_interrupt_button_of_a_real_kernel_stops_a_background_run():
    """ipykernel ignores SIGINT while idle: the panel's hook must still hear the interrupt button."""
    jupyter_client = pytest.importorskip("jupyter_client")
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)

        def run(code: str) -> str:
            out = []
            kc.execute_interactive(code, timeout=120, output_hook=lambda m: out.append(
                m["content"].get("text", "") if m["msg_type"] == "stream" else ""))
            return "".join(out)

        run(SLOW_MANAGER.format(epochs=500) + "r = m.start(block=False)\n")
        assert "step" in run("while r.state is None or r.state.step < 8: time.sleep(0.01)\nprint('step', r.state.step)")
        time.sleep(0.5)                       # the kernel is idle now, the run goes on in its thread
        km.interrupt_kernel()
        out = run("s = r.wait(60); print(s.status, s.step < 4000, len(s.history) >= 2, m.runs == [r])")
        assert out.split() == ["interrupted", "True", "True", "True"], out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_drawing_failure_still_puts_the_run_on_the_board():
    class Broken(Listener):
        def __init__(self):
            self.said = []

        def say(self, text, kind="info"):
            self.said.append(text)

        def run_finished(self, run):
            raise ValueError("mathtext cannot parse $\\foo$")

    listener = Broken()
    m = manager(listener=listener, cfg=TrainConfig(epochs=1, lr=3e-3))
    s = m.train(block=True)
    assert s.status == "finished" and len(m.runs) == 1 and not m.running
    assert "finished" in listener.said[-1] and "drawing failed" in m.runs[0].settings["notes"]
