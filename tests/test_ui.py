"""Headless tests of the control panel: set widget values, click buttons, check what ran.

No browser: ipywidgets work without a kernel, ``.click()`` calls the handlers.
``background=False`` makes Train clicks run in the test's thread (a blocking
runner); the threaded tests use the default background thread.
"""
from __future__ import annotations

import pytest
import torch

ipywidgets = pytest.importorskip("ipywidgets")

from tlkit import plots, surgery, toy, train, ui  # noqa: E402
from tlkit.config import ConfigError, TrainConfig  # noqa: E402
from tlkit.ui import Run, TrainPanel, _Throttle, accepted_kwargs, extra_widget  # noqa: E402

from panel_helpers import one_thread, slow_step, wait_until  # noqa: E402,F401 - one_thread is an autouse fixture


def data(n_train: int = 256, batch_size: int = 32):
    tr = train.loader(toy.blobs(n_train, seed=0), batch_size, shuffle=True)
    va = train.loader(toy.blobs(128, seed=1), 64)
    return tr, va


def panel(**kw) -> TrainPanel:
    tr, va = data()
    kw.setdefault("cfg", TrainConfig(epochs=2, lr=3e-3))
    kw.setdefault("background", False)
    return TrainPanel(toy.MLP(), tr, va, **kw)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- helpers
def test_extra_widget_forms():
    assert isinstance(extra_widget("max_len", (64, 16, 256, 16)), ipywidgets.IntSlider)
    w = extra_widget("weight", (0.3, 0.0, 1.0))
    assert isinstance(w, ipywidgets.FloatSlider) and w.value == pytest.approx(0.3)
    d = extra_widget("method", ["source_only", "dann", "coral"])
    assert isinstance(d, ipywidgets.Dropdown) and d.value == "source_only"
    assert isinstance(extra_widget("size", [32, 64, 96]), ipywidgets.Dropdown)
    assert isinstance(extra_widget("flip", True), ipywidgets.Checkbox)
    assert isinstance(extra_widget("lam", 0.3), ipywidgets.FloatText)
    assert isinstance(extra_widget("k", 3), ipywidgets.IntText)
    assert isinstance(extra_widget("name", "x"), ipywidgets.Text)
    with pytest.raises(ValueError, match="outside"):
        extra_widget("max_len", (300, 16, 256))
    with pytest.raises(TypeError, match="slider"):
        extra_widget("bad", {"a": 1})
    with pytest.raises(ValueError, match="'lam'"):
        extra_widget("lambda", 0.3)     # could never be passed as a keyword argument


def test_accepted_kwargs_follows_signature():
    values = {"max_len": 64, "method": "dann"}
    assert accepted_kwargs(lambda batch_size, max_len: None, values) == {"max_len": 64}
    assert accepted_kwargs(lambda **kw: None, values) == values
    assert accepted_kwargs(lambda: None, values) == {}


def test_throttle_keeps_drawing_within_budget():
    t = _Throttle(interval=0.5, budget=0.05)
    assert t.ready(0.0)
    t.spent(10.0, 10.1)                 # a 0.1 s draw may recur only after 2 s
    assert not t.ready(11.9) and t.ready(12.11)
    t.spent(20.0, 20.001)               # cheap draws still wait the minimum interval
    assert not t.ready(20.4) and t.ready(20.51)


def test_compare_runs_draws_one_line_per_run():
    hist = [{"epoch": 1, "valid_acc": 0.5}, {"epoch": 2, "valid_acc": 0.7}]
    fig = plots.agg_figure(1)
    ax = plots.compare_runs({"frozen": hist, "fine-tuned": hist, "no metric": [{"epoch": 1}]}, "valid_acc",
                            ax=fig.axes[0], highlight="frozen")
    assert [ln.get_label() for ln in ax.get_lines()] == ["frozen", "fine-tuned"]
    assert ax.get_lines()[0].get_linewidth() > ax.get_lines()[1].get_linewidth()
    assert plots.png_bytes(fig).startswith(b"\x89PNG")


# --------------------------------------------------------------------------- controls
def test_slider_and_toggles_stay_in_sync_with_param_count():
    p = panel()
    names = [g.name for g in p.groups]
    assert names == ["layer0", "layer1", "head"]
    p._train_last.value = 1
    assert p.frozen == ("layer0", "layer1")
    head = p.groups[-1].n_params
    assert f"trainable <b>{head:,}</b>" in p._params.value
    p._toggles[1].value = True          # press layer1: the last 2 groups train
    assert p._train_last.value == 2 and p.frozen == ("layer0",)
    p._toggles[0].value = True
    assert p._train_last.value == 3 and p.frozen == ()
    total = sum(g.n_params for g in p.groups)
    assert f"trainable <b>{total:,}</b> of {total:,}" in p._params.value


def test_click_train_runs_the_widget_settings_and_keeps_frozen_groups():
    p = panel()
    p._train_last.value = 1
    p._lr.value = "0.01"
    p._epochs.value = 3
    p._lr_decay.value = 0.5
    frozen_before = surgery.snapshot(p.groups, ["layer0", "layer1"])  # BatchNorm buffers included
    head_before = surgery.snapshot(p.groups, ["head"])
    p._train_btn.click()
    assert len(p.history) == 1
    run = p.history[0]
    cfg = run.state.cfg
    assert (cfg.lr, cfg.epochs, cfg.lr_decay, cfg.frozen) == (0.01, 3, 0.5, ("layer0", "layer1"))
    assert run.state.status == "finished" and run.state.epoch == 3
    assert same(surgery.snapshot(p.groups, ["layer0", "layer1"]), frozen_before)
    assert not same(surgery.snapshot(p.groups, ["head"]), head_before)
    board = p.board(full=True)
    assert len(board) == 1 and board.loc[0, "trains"] == "head only" and board.loc[0, "lr"] == 0.01
    assert board.loc[0, "best_valid_acc"] == pytest.approx(max(r["valid_acc"] for r in run.state.history))
    assert bytes(p._plot.value)[:3] == b"\xff\xd8\xff" and bytes(p._board_plot.value)[:4] == b"\x89PNG"
    assert "finished" in p.message and "Run board" in p._board.value
    assert p._bar.value == p._bar.max == run.state.total_steps


def test_scripted_train_returns_state_and_board_gains_rows():
    p = panel()
    s1 = p.train(block=True, train_last=1, label="head only")
    s2 = p.train(block=True, train_last=3, lr=1e-3, label="all")
    assert isinstance(s1, train.State) and s1.status == s2.status == "finished"
    assert list(p.runs["name"]) == ["head only", "all"]
    assert s1.cfg.frozen == ("layer0", "layer1") and s2.cfg.frozen == () and s2.cfg.lr == 1e-3
    assert s1.trainable_params < s2.trainable_params


def test_fresh_runs_start_from_initial_weights_and_reset_restores_them():
    # unshuffled loaders: a seeded loader's shuffle order moves on from run to run
    tr = train.loader(toy.blobs(256, seed=0), 32)
    p = TrainPanel(toy.MLP(), tr, data()[1], cfg=TrainConfig(epochs=2, lr=3e-3), background=False)
    initial = train.clone_weights(p.model)
    a = p.train(block=True)
    b = p.train(block=True)             # same seed, same start, same batches: same result
    assert a.history[-1]["valid_loss"] == pytest.approx(b.history[-1]["valid_loss"])
    c = p.train(block=True, fresh=False)  # continues from b's weights: lower loss
    assert c.history[-1]["train_loss"] < b.history[0]["train_loss"]
    assert not same(train.clone_weights(p.model), initial)
    p._reset_btn.click()
    assert same(train.clone_weights(p.model), initial) and "reset" in p.message


def test_settings_from_code_and_config_overrides():
    p = panel()
    p.set(lr=2e-4, epochs=4, train_bn=True, optimizer="sgd", schedule="linear", frozen=("layer0",),
          max_steps=5, seed=3)
    cfg = p.config()
    assert (cfg.lr, cfg.epochs, cfg.train_bn, cfg.optimizer, cfg.schedule) == (2e-4, 4, True, "sgd", "linear")
    assert (cfg.frozen, cfg.max_steps, cfg.seed) == (("layer0",), 5, 3)
    assert p._lr.value == "0.0002" and p._train_last.value == 2
    with pytest.raises(KeyError, match="unknown panel setting"):
        p.set(learning_rate=1e-3)
    with pytest.raises(surgery.GroupError, match="layer0"):
        p.set(frozen=("encoder",))
    with pytest.raises(ValueError, match="loaders_fn"):
        p.set(batch_size=64)            # no loaders_fn: loaders cannot be rebuilt


@pytest.mark.parametrize("setting, expected", [
    ({"lr": "abc"}, "not a number"),
    ({"lr": "0"}, "lr must be"),
    ({"lr": "-1e-3"}, "lr must be"),
    ({"epochs": 0}, "epochs must be"),
    ({"frozen": ("layer0", "layer1", "head")}, "nothing to train"),
])
def test_bad_values_show_an_error_and_start_nothing(setting, expected):
    p = panel()
    before = train.clone_weights(p.model)
    p.set(**setting)
    p._train_btn.click()
    assert "Not started" in p.message and expected in p.message
    assert p._current is None and p.history == [] and len(p.runs) == 0
    assert same(train.clone_weights(p.model), before)
    with pytest.raises(ConfigError):
        p.train(block=True)


def test_error_during_training_is_shown_and_progress_kept():
    def oom_after_3(model, batch, ctx):
        if ctx.state.step == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return train.supervised_step(model, batch, ctx)

    p = panel(step=oom_after_3)
    before = train.clone_weights(p.model)
    p._train_btn.click()
    run = p._current
    assert run.state.status == "failed" and run.state.step == 3
    assert "ran out of memory" in p.message and "batch size" in p.message
    assert not same(train.clone_weights(p.model), before)      # the 3 steps' weights are kept
    assert len(p.runs) == 1 and p.runs.loc[0, "status"] == "failed"
    p.step = train.supervised_step      # the panel stays usable after a failure
    assert p.train(block=True).status == "finished"


# --------------------------------------------------------------------------- threads
def test_stop_during_threaded_run_ends_within_one_step_and_keeps_history():
    p = panel(background=True, step=slow_step(0.03), cfg=TrainConfig(epochs=100, lr=3e-3))
    p._train_btn.click()
    run = p._current
    assert isinstance(run, Run) and p.running
    wait_until(lambda: run.state is not None and run.state.step >= 10)  # past the first epoch (8 steps)
    p._train_btn.click()                # a second click is refused, visibly, and changes nothing
    assert "still going" in p.message and p._current is run
    with pytest.raises(RuntimeError, match="still going"):
        p.train(block=True)
    step_at_click = run.state.step
    p._stop_btn.click()
    state = run.wait(timeout=60)
    assert state.status == "stopped"
    assert state.step <= step_at_click + 1
    assert len(state.history) >= 1 and state.history[-1]["step"] == state.step
    assert "stopped" in p.message and len(p.runs) == 1 and p.runs.loc[0, "status"] == "stopped"
    assert p._bar.bar_style == "warning" and p._bar.value == state.step
    assert not p.running and run.thread is not None and not run.thread.is_alive()


def test_nonblocking_train_returns_a_run_to_wait_on():
    p = panel(background=True)
    run = p.train(block=False, epochs=1)
    assert isinstance(run, Run)
    state = run.wait(timeout=90)
    assert state.status == "finished" and state.epoch == 1 and p.history == [run]


# --------------------------------------------------------------------------- chapter hooks
def test_extras_reach_loaders_model_and_step_functions():
    calls = {"loaders": [], "model": [], "step": []}

    def loaders_fn(batch_size, n_train):
        calls["loaders"].append((batch_size, n_train))
        return data(n_train, batch_size)

    def model_fn(hidden):
        calls["model"].append(hidden)
        return toy.MLP(hidden=hidden)

    def step_fn(method, weight):
        calls["step"].append((method, weight))
        if method == "plain":
            return train.supervised_step

        def smoothed(model, batch, ctx):  # a chapter-style step that reads its own extra
            out = train.supervised_step(model, batch, ctx)
            return {**out, "loss": out["loss"] * (1 - weight)}
        return smoothed

    p = TrainPanel(model_fn=model_fn, loaders_fn=loaders_fn, step_fn=step_fn, cfg=TrainConfig(epochs=1),
                   extras={"n_train": (128, 64, 256, 64), "hidden": [16, 32], "method": ["plain", "smoothed"],
                           "weight": 0.1},
                   background=False)
    assert calls["model"] == [16] and calls["loaders"] == []
    s = p.train(block=True, batch_size=64)
    assert calls["loaders"] == [(64, 128)] and calls["step"] == [("plain", 0.1)]
    assert s.steps_per_epoch == 2                    # 128 samples / 64
    p.train(block=True)                              # nothing changed: loaders and model reused
    assert calls["loaders"] == [(64, 128)] and calls["model"] == [16]
    s = p.train(block=True, hidden=32, n_train=256, method="smoothed", weight=0.5)
    assert calls["model"] == [16, 32] and calls["loaders"][-1] == (64, 256)
    assert calls["step"][-1] == ("smoothed", 0.5)
    assert p.model[0][0].out_features == 32 and s.steps_per_epoch == 4
    board = p.board(full=True)
    assert list(board["method"]) == ["plain", "plain", "smoothed"] and list(board["hidden"]) == [16, 16, 32]
    assert p.extras == {"n_train": 256, "hidden": 32, "method": "smoothed", "weight": 0.5}


def test_a_model_replaced_by_model_fn_is_freed():
    """Once model_fn has built another model, the panel holds nothing of the first one (chapter 5's panel
    kept its first student, 66 MB, for its whole life)."""
    import gc
    import weakref

    p = TrainPanel(model_fn=lambda hidden: toy.MLP(hidden=hidden), loaders_fn=lambda batch_size: data(),
                   cfg=TrainConfig(epochs=1), extras={"hidden": [16, 32]}, background=False)
    first = weakref.ref(p.model)
    p.train(block=True, hidden=32)
    gc.collect()
    assert first() is None and p.model[0][0].out_features == 32


def test_dict_of_validation_sets_is_plotted_and_tabled():
    tr, va = data()
    p = TrainPanel(toy.MLP(), tr, {"source": va, "target": train.loader(toy.blobs(64, seed=2), 64)},
                   cfg=TrainConfig(epochs=1, monitor="target_acc"), background=False)
    s = p.train(block=True)
    assert s.monitor == "target_acc"
    assert {"best_source_acc", "best_target_acc"} <= set(p.runs.columns)
    labels = {ln.get_label() for ln in p._live.axes["acc"].get_lines()}
    assert {"train", "source", "target"} <= labels
    assert "best target_acc" in p._board.value


def test_panel_needs_a_model_and_data():
    with pytest.raises(ValueError, match="model"):
        TrainPanel(None, *data())
    with pytest.raises(ValueError, match="loaders_fn"):
        TrainPanel(toy.MLP())


def test_custom_groups_list_or_callable():
    cnn = toy.TinyCNN()

    def two_groups(m):
        return [surgery.LayerGroup("body", [m.stem, m.block]), surgery.LayerGroup("head", [m.head])]

    imgs = train.loader(toy.images(32, seed=0), 16)
    for groups in (two_groups(cnn), two_groups):
        p = TrainPanel(cnn, imgs, imgs, groups=groups, cfg=TrainConfig(epochs=1), background=False)
        assert [t.description for t in p._toggles] == ["body", "head"]
        p.set(train_last=1)
        assert p.config().frozen == ("body",)


# --------------------------------------------------------------------------- board and names (issues 16, 17)
@pytest.mark.parametrize("name", [r"$\foo$", "unclosed $ sign", "_private", "a_$b$_c"])
def test_any_run_name_reaches_the_board_and_the_legend(name):
    p = panel(cfg=TrainConfig(epochs=1, lr=3e-3))
    s = p.train(block=True, name=name)
    assert s.status == "finished" and "training…" not in p.message and "finished" in p.message
    assert list(p.runs["name"]) == [name]
    assert "drawing failed" not in p.history[0].settings.get("notes", "")
    legend = p._board_fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"1: {name}"]
    assert bytes(p._board_plot.value).startswith(b"\x89PNG")


def test_board_html_scrolls_inside_the_panel_and_puts_results_first():
    p = panel(cfg=TrainConfig(epochs=1, lr=3e-3))
    p.train(block=True)
    p.train(block=True, lr=1e-2)
    html_ = p._board.value
    assert "overflow-x:auto" in html_ and "max-width:100%" in html_
    head = html_.split("<tr>")[1]
    assert head.index("best valid acc") < head.index("changed")
    assert "lr 0.01" in html_ and p.widget.layout.max_width == "100%"
    p._full.value = True                      # every setting on demand
    assert "optimizer" in p._board.value and "tlkit-run:" in p._board.value


def test_hidden_runs_leave_the_plot_and_come_back():
    p = panel(cfg=TrainConfig(epochs=1, lr=3e-3))
    for lr in (1e-3, 3e-3, 1e-2):
        p.train(block=True, lr=lr)
    labels = lambda: [t.get_text() for t in p._board_fig.axes[0].get_legend().get_texts()]  # noqa: E731
    assert len(labels()) == 3
    p.hide(2)
    assert [x.split(":")[0] for x in labels()] == ["1", "3"] and len(p.runs) == 3
    p._shown.value = [1]                      # the widget does the same
    assert [x.split(":")[0] for x in labels()] == ["1"]
    p.show()
    assert len(labels()) == 3


def test_more_than_ten_runs_get_distinct_colour_and_style():
    hist = [{"epoch": 1, "valid_acc": 0.5}, {"epoch": 2, "valid_acc": 0.6}]
    fig = plots.agg_figure(1)
    ax = plots.compare_runs({f"run {i}": hist for i in range(24)}, "valid_acc", ax=fig.axes[0])
    styles = {(ln.get_color(), ln.get_linestyle()) for ln in ax.get_lines()}
    assert len(styles) == 24
    legend = ax.get_legend()
    fig.canvas.draw()
    # the legend is outside the axes: it never covers the curves
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_repeat_button_runs_k_seeds_and_plots_a_band():
    p = panel(cfg=TrainConfig(epochs=2, lr=3e-3))
    p._k.value = 3
    p._repeat_btn.click()
    assert [r.cfg.seed for r in p.history] == [0, 1, 2]
    assert "mean ± std" in p._board.value and "over 3 seeds" in p._board.value
    legend = [t.get_text() for t in p._board_fig.axes[0].get_legend().get_texts()]
    assert legend == ["1-3: head only, lr 0.003 (mean ± std, 3 seeds)"] or "3 seeds" in legend[0]
    assert p._board_fig.axes[0].collections                    # the ± std band


def test_load_box_restores_a_run():
    p = panel(cfg=TrainConfig(epochs=1, lr=3e-3))
    p.train(block=True, lr=5e-3, train_last=2, seed=7)
    text = p.config_string(1)
    p.set(lr=1e-1, train_last=3, seed=0)
    p._load_text.value = text
    p._load_btn.click()
    assert p._lr.value == "0.005" and p._train_last.value == 2 and p._controls["seed"].value == 7
    assert p.config() == p.history[0].cfg


def test_scripted_name_does_not_stay_in_the_name_box():
    p = panel(cfg=TrainConfig(epochs=1, lr=3e-3))
    p.train(block=True, name="scripted")
    assert p._label.value == ""
    p._train_btn.click()                      # the student's next run gets its own name
    assert p.history[1].name != "scripted" and len(set(p.runs["name"])) == 2


def test_live_plot_throttle_never_waits_more_than_half_a_second():
    t = _Throttle(ui.PLOT_INTERVAL_S, ui.PLOT_BUDGET, ui.PLOT_MAX_GAP_S)
    assert ui.PLOT_MAX_GAP_S < 0.5      # headroom for the wait until the next step end: >= 2 redraws a second
    t.spent(10.0, 10.2)                 # a slow 0.2 s redraw: the next one still starts 0.45 s after it began
    assert t.ready(10.0 + ui.PLOT_MAX_GAP_S) and not t.ready(10.0 + ui.PLOT_MAX_GAP_S - 0.01)
    t.spent(20.0, 20.01)                # a cheap one: every PLOT_INTERVAL_S (0.4 s)
    assert t.ready(20.0 + ui.PLOT_INTERVAL_S) and not t.ready(20.0 + ui.PLOT_INTERVAL_S - 0.01)
    # the measured rate is printed by benchmarks/panel_overhead.py and counted in the browser test


def test_live_plot_is_redrawn_during_a_run_with_step_curves():
    p = panel(background=True, step=slow_step(0.01), cfg=TrainConfig(epochs=8, lr=3e-3))
    run = p.train(block=False)
    run.wait(timeout=120)
    assert len(p.redraws) >= 2 and p.refresh_rate > 0
    assert len(run.samples) == run.state.step               # short run: every step on the curve


def test_gradient_bars_show_frozen_groups_as_frozen():
    p = panel(cfg=TrainConfig(epochs=1, lr=3e-3))
    p.train(block=True, train_last=1)
    labels = [t.get_text() for t in p._live.grad_ax.get_yticklabels()]
    assert labels == ["layer0 (frozen)", "layer1 (frozen)", "head"]
    norms = ui.grad_norms(p.groups)
    assert norms[0] == norms[1] == 0.0 and norms[2] > 0


def test_hand_frozen_parameters_are_shown_frozen_and_survive_a_panel_run():
    tr, va = data()
    model = toy.MLP()
    for prm in model[1].parameters():                # layer1 (Linear + BatchNorm) frozen by hand, entirely
        prm.requires_grad_(False)
    before = train.clone_weights(model)              # BatchNorm running statistics included
    p = TrainPanel(model, tr, va, cfg=TrainConfig(epochs=1, lr=3e-3), background=False)
    assert p.frozen == ("layer1",) and not p._toggles[1].value and p._toggles[0].value
    p._train_btn.click()
    assert p.history[0].state.status == "finished"
    after = train.clone_weights(model)
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("1.")), "layer1 changed"
    assert not torch.equal(after["0.0.weight"], before["0.0.weight"])      # layer0 trained
    p.set(train_last=3)                              # the user switches layer1 on: an explicit unfreeze
    p.train(block=True)
    assert not torch.equal(train.clone_weights(model)["1.0.weight"], before["1.0.weight"])


def test_re_executed_panel_cell_stops_the_old_panels_run():
    old = panel(background=True, step=slow_step(0.02), cfg=TrainConfig(epochs=100, lr=3e-3), title="ch-x panel")
    old._train_btn.click()
    run = old._current
    wait_until(lambda: run.state is not None and run.state.step >= 3)
    new = panel(title="ch-x panel")             # the same cell run again
    assert not run.running and run.state.status == "stopped" and len(old.runs) == 1
    assert "closed" in old.message and "replaced" in old.message
    assert not new.running and len(new.runs) == 0
