"""The training control panel: thin ipywidgets views over ``tlkit.runs.RunManager``.

The only tlkit module that imports ipywidgets (core API shared by 7.7 and 8, no
front-end extension): it works in JupyterLab, Notebook 7, VS Code and Colab.
Everything a panel *knows* (settings, runs, names, seeds, the board's data,
config strings, lifecycle) lives in ``runs.py`` and is tested without widgets;
this module only draws it: the controls, the live plot and the run board.

Quick start (a chapter's "control panel" section)::

    from tlkit.ui import TrainPanel
    panel = TrainPanel(model, train_dl, valid_dl, cfg=TrainConfig(epochs=3, lr=1e-3),
                       title="Fine-tune MobileNetV2")
    panel                                   # shows the panel; click Train
    state = panel.train(block=True, train_last=2, lr=3e-4)   # scripted ("Run all")
    panel.runs                              # the board as a DataFrame: one row per run

Constructor ``TrainPanel(model=None, train_dl=None, valid_dl=None, *, groups=None,
cfg=TrainConfig(), step=supervised_step, title="", model_fn=None, loaders_fn=None,
step_fn=None, extras=None, metrics=("loss", "acc"), evaluate_fn=evaluate,
callbacks=(), background=True, key=None)``:

- ``model`` / ``model_fn``: the model, or a factory ``model_fn(**extras) -> nn.Module``
  (called when ``model`` is None, and again when an extra it accepts changes).
  Reset restores the weights cloned when the model was built (pretrained ones).
  Parameters frozen by hand (``requires_grad=False``) stay frozen in every run
  unless their group is switched from frozen to trained.
- ``train_dl, valid_dl`` / ``loaders_fn``: loaders, or ``loaders_fn(batch_size=...,
  **extras) -> (train_dl, valid_dl)``, called when batch size or an extra it accepts
  changes (without ``loaders_fn`` the batch size box is read-only). ``valid_dl``
  may be a dict ``{"source": dl, "target": dl}`` as in ``fit``.
- ``groups``: layer groups (default ``surgery.layer_groups(model)``) or a callable
  ``model -> groups`` (use that with ``model_fn`` and custom groups).
- ``cfg``: the starting settings (``cfg.frozen`` names must be groups of the model,
  as in ``fit``); fields without a control (schedule warmup, max_steps, monitor,
  eval_every, ...) are taken from it as they are.
- ``step`` / ``step_fn``: a fixed step function, or ``step_fn(**extras) -> step``
  called at every Train (chapter 4 picks DANN/CORAL/source-only this way).
- ``extras``: chapter-specific controls, name -> spec: ``(default, lo, hi[, step])``
  slider, a list (or tuple of strings) dropdown whose first item is the default,
  ``True/False`` checkbox, a number or string box. Each of ``model_fn``,
  ``loaders_fn`` and ``step_fn`` receives the extras its signature names.
- ``metrics``: step-output keys plotted live; ``callbacks`` are passed on to ``fit``.
- ``background=False`` runs clicks in the kernel thread (tests, headless).
- ``key``: the panel's name in this kernel (default: the title). A new panel with
  the same key (the cell ran again) stops the runs of the one it replaces.

Controls: per-group freeze toggles and a "train last N groups" slider (frozen
groups computed by ``recipes.last_n``) with a live trainable-parameter count;
head LR (a text box: ``1e-3``) and an LR factor per group below the head; epochs;
batch size; seed; train BatchNorm; optimizer; schedule; "start from initial
weights" (``fresh``, default on, so runs are comparable); run name; Train, Stop,
Reset; "Repeat × k seeds". Progress: step/epoch, elapsed, time left, samples/s.
A live PNG plot (loss, accuracy, gradient norm per layer group; >= 2 redraws a
second) and a run board (results first, then what changed; every setting on
demand; runs hidden/shown in the comparison plot; a config string per run).

Scripted use:

- ``panel.set(lr=3e-4, lr_decay=0.5, epochs=2, batch_size=64, train_last=2,
  frozen=("stem",), train_bn=True, optimizer="sgd", schedule="linear", seed=1,
  fresh=False, name="partial", max_len=128, ...)`` sets controls (any other
  ``TrainConfig`` field is kept as an override); unknown names raise ``KeyError``,
  a value a control cannot hold raises ``ConfigError`` naming the field.
- ``panel.train(block=True, **settings) -> State``: controls given here stay set;
  ``name`` and fields without a control (``max_steps=50``) apply to this run only.
  ``block=False`` returns a ``Run`` with ``.wait(timeout)``, ``.stop()``, ``.state``.
- ``panel.repeat(k=3)``: the current settings over k seeds; ``panel.seed_summary()``.
- ``panel.runs`` / ``panel.board(full=True)`` (DataFrames), ``panel.to_csv()``,
  ``panel.to_markdown()``, ``panel.config_string(run)``, ``panel.load(text)``,
  ``panel.hide(2, 3)`` / ``panel.show(2)``, ``panel.stop()``, ``panel.reset()``,
  ``panel.history`` (list of ``Run``), ``panel.model``, ``panel.message``, ``panel.widget``.

Threading: a Train click starts ``fit(..., on_error="return")`` in a daemon
thread so the kernel stays free to receive Stop; the thread touches the UI only
by setting widget traits. The kernel's interrupt button stops a background run
(``interrupted``, weights and history kept). ``block=True`` trains in the
calling thread: use the interrupt button there too.
"""
from __future__ import annotations

import html
import math
import re
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W

from . import plots, runs, surgery, train
from .config import OPTIMIZERS, SCHEDULES, ConfigError, TrainConfig
from .runs import Run, accepted_kwargs, parse_extra  # noqa: F401 - re-exported for notebooks and tests

PROGRESS_INTERVAL_S = 0.2   # progress label/bar refresh period
PLOT_INTERVAL_S = 0.4       # live plot: ~2.4 redraws a second while they cost < 5% of wall time (0.45 s
                            # plus the wait for the next step end gave 2.05-2.1 a second in the browser),
PLOT_BUDGET = 0.05          # (a redraw is ~10 ms: blit + JPEG), and never fewer than 2 a second:
PLOT_MAX_GAP_S = 0.45       # a slow machine pays a bigger share rather than watching a stale plot (0.45,
                            # not 0.5: a redraw waits for the next step end, so a 0.5 s cap gave < 2 a second)

_WIDE = {"description_width": "initial"}
# Where each setting's control sits (a new control: its name in runs.CONTROLLED, a widget in
# TrainPanel._controls, and its name in one of these rows).
CONTROL_ROWS = (("lr", "lr_decay", "epochs", "batch_size", "seed"), ("optimizer", "schedule", "train_bn", "fresh"))


# --------------------------------------------------------------------------- small helpers
def extra_widget(name: str, spec: Any) -> W.ValueWidget:
    """Turn one ``extras`` spec into a widget (see ``runs.parse_extra`` for the forms)."""
    return _extra_widget(parse_extra(name, spec))


def _extra_widget(e: runs.Extra) -> W.ValueWidget:
    name = e.name
    if e.kind == "checkbox":
        return W.Checkbox(value=e.default, description=name, indent=False)
    if e.kind == "dropdown":
        return W.Dropdown(options=list(e.choices), value=e.default, description=name, style=_WIDE)
    if e.kind == "slider":
        if isinstance(e.default, int) and isinstance(e.lo, int) and isinstance(e.hi, int):
            return W.IntSlider(value=e.default, min=e.lo, max=e.hi, step=int(e.step), description=name, style=_WIDE,
                               continuous_update=False)
        return W.FloatSlider(value=e.default, min=e.lo, max=e.hi, step=e.step, description=name, style=_WIDE,
                             continuous_update=False, readout_format=".3g")
    if e.kind == "number":
        cls = W.IntText if isinstance(e.default, int) else W.FloatText
        return cls(value=e.default, description=name, style=_WIDE, layout=W.Layout(width="170px"))
    return W.Text(value=e.default, description=name, style=_WIDE)


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Throttle:
    """Allow an action every ``interval`` s, within ``budget`` of wall time, and at least every ``max_gap`` s."""

    def __init__(self, interval: float, budget: float = 1.0, max_gap: float = math.inf):
        self.interval, self.budget, self.max_gap, self.next = interval, budget, max_gap, 0.0

    def ready(self, now: float) -> bool:
        return now >= self.next

    def spent(self, start: float, end: float) -> None:
        # counted from the start of the action, so the period (not the pause after it) is what is capped
        self.next = start + min(self.max_gap, max(self.interval, (end - start) / self.budget))


def grad_norms(groups: Sequence[surgery.LayerGroup]) -> list[float]:
    """L2 norm of the current gradients of each group (0 for a group without gradients: frozen)."""
    out = []
    for g in groups:
        sq = [p.grad.detach().float().pow(2).sum() for p in g.parameters() if p.grad is not None]
        out.append(float(sum(sq)) ** 0.5 if sq else 0.0)
    return out


# --------------------------------------------------------------------------- live plot
class LivePlot:
    """Train/validation curves and per-group gradient norms, updated in place and rendered to JPEG.

    One Axes per metric, each with the same series: ``train steps`` (step-level
    values), ``train`` (means per evaluation) and every validation set, plus a
    bar chart of the gradient norm of each layer group (frozen groups labelled
    and empty). The static parts are drawn once into a background that is
    reused (matplotlib blitting): a redraw restores it, draws the lines and bars
    and encodes the PNG, ~10x cheaper than a full draw. Axis limits refit, with
    a full draw, only when the data leaves them or fills less than half of them.
    """

    def __init__(self, metrics: Sequence[str], valid_names: Sequence[str], group_names: Sequence[str] = ()):
        from matplotlib.lines import Line2D

        self.metrics, self.valid_names = tuple(metrics), tuple(valid_names)
        self.group_names = tuple(group_names)
        self.series = ("train steps", "train", *self.valid_names)
        n = len(self.metrics) + (1 if self.group_names else 0)
        self.fig = plots.agg_figure(n, width=3.6, height=3.0)
        self.fig.subplots_adjust(top=0.78, wspace=0.36)  # room for the run's name and the legend
        self.axes = dict(zip(self.metrics, self.fig.axes))
        self.lock = threading.Lock()
        self.lines: dict[tuple[str, str], Any] = {}
        styles = {}
        for i, name in enumerate(self.series):
            color = plots.SERIES_COLORS[max(0, i - 1) % len(plots.SERIES_COLORS)]
            styles[name] = (dict(color=color, linewidth=0.8, alpha=0.45) if name == "train steps"
                            else dict(color=color, marker="o", markersize=3, linewidth=1.6))
        for m, ax in self.axes.items():
            ax.set_xlabel("epoch")
            ax.set_ylabel(m.replace("_", " "))
            ax.set_title(f"{m.replace('_', ' ')}: train and validation", fontsize=10)
            for name in self.series:  # animated: left out of the background, drawn on top of it
                self.lines[(m, name)], = ax.plot([], [], animated=True, label=name, **styles[name])
        self.bars = []
        self.grad_ax = self.fig.axes[-1] if self.group_names else None
        if self.grad_ax is not None:
            ax = self.grad_ax
            y = range(len(self.group_names))
            self.bars = list(ax.barh(list(y), [0.0] * len(self.group_names), color="#2ca02c", animated=True))
            ax.set_yticks(list(y), list(self.group_names), fontsize=8)
            ax.set_xlim(0, 1.05)
            ax.set_xlabel("gradient norm / largest")
            ax.set_title("gradient norm per group", fontsize=10)
        legend = self.fig.legend([Line2D([], [], **styles[n]) for n in self.series], self.series, loc="upper right",
                                 ncol=len(self.series), fontsize=8, frameon=False, bbox_to_anchor=(0.995, 1.0))
        plots.plain_text(*legend.get_texts())
        self._title = self.fig.text(0.01, 0.975, "", fontsize=10, va="top", ha="left")
        plots.plain_text(self._title)  # a run name is the user's text, never maths
        self._background = None
        self.grads: list[float] = []
        self.start("", 1.0)

    def start(self, title: str, x_max: float, frozen: Sequence[str] = ()) -> None:
        """A new run: its name, the planned number of epochs (x range), empty lines, frozen groups."""
        with self.lock:
            self._title.set_text(title)
            for line in self.lines.values():
                line.set_data([], [])
            for ax in self.axes.values():
                ax.set_xlim(0, max(x_max, 1e-3) * 1.02)
                ax.set_ylim(0, 1)
            if self.grad_ax is not None:
                labels = [f"{g} (frozen)" if g in set(frozen) else g for g in self.group_names]
                self.grad_ax.set_yticks(range(len(labels)), labels, fontsize=8)
                for t, g in zip(self.grad_ax.get_yticklabels(), self.group_names):
                    t.set_color("#999999" if g in set(frozen) else "black")
                for b in self.bars:
                    b.set_width(0.0)
            self.grads = []
            self._fitted: dict[str, tuple[float, float] | None] = {m: None for m in self.metrics}
            self._background = None

    def set_x_max(self, x_max: float) -> None:
        """Change the x range (a run stopped early: fit the epochs it did)."""
        with self.lock:
            for ax in self.axes.values():
                ax.set_xlim(0, max(x_max, 1e-3) * 1.02)
            self._background = None

    @staticmethod
    def _wanted(metric: str, lo: float, hi: float) -> tuple[float, float]:
        """Y range for data in [lo, hi], with head room below so falling curves rarely force a refit."""
        if metric.endswith("acc"):  # accuracies: up to 1, down to the next 0.1 below the data
            return max(0.0, math.floor((lo - 0.02) * 10) / 10), 1.01
        span = (hi - lo) or 0.1 * abs(hi) or 0.1
        if lo >= 0 and span > 0.3 * hi:  # a loss that has fallen a good deal: show it from 0, no more refits
            return 0.0, hi + 0.08 * span
        below = lo - 0.25 * span
        return (max(0.0, below) if lo >= 0 else below), hi + 0.08 * span

    def render(self, samples: Sequence[dict[str, float]], history: Sequence[dict[str, float]],
               grads: Sequence[float] | None = None) -> bytes:
        """Update every line from step ``samples`` and ``history`` rows (and the gradient bars); return JPEG."""
        with self.lock:
            full = self._background is None
            for m, ax in self.axes.items():
                values = []
                for name in self.series:
                    if name == "train steps":
                        pts = [(s["epoch"], s[m]) for s in samples if s.get(m, math.nan) == s.get(m, math.nan)]
                    else:
                        key = f"{name}_{m}"
                        pts = [(r["epoch"], r[key]) for r in history if r.get(key, math.nan) == r.get(key, math.nan)]
                    self.lines[(m, name)].set_data([p[0] for p in pts], [p[1] for p in pts])
                    values += [p[1] for p in pts if math.isfinite(p[1])]
                if not values:
                    continue
                lo, hi = self._wanted(m, min(values), max(values))
                have = self._fitted[m]
                if (have is None or min(values) < have[0] or max(values) > have[1]
                        or (hi - lo) < 0.5 * (have[1] - have[0])):
                    self._fitted[m] = (lo, hi)
                    ax.set_ylim(lo, hi)
                    full = True
            if grads is not None and self.bars:
                self.grads = list(grads)
                top = max(self.grads) or 1.0
                for b, g in zip(self.bars, self.grads):
                    b.set_width(g / top if math.isfinite(g) else 0.0)
            canvas = self.fig.canvas
            if full:
                canvas.draw()
                self._background = canvas.copy_from_bbox(self.fig.bbox)
            else:
                canvas.restore_region(self._background)
            for (m, _), line in self.lines.items():
                self.axes[m].draw_artist(line)
            for b in self.bars:
                self.grad_ax.draw_artist(b)
            return plots.canvas_jpeg(self.fig)


# --------------------------------------------------------------------------- the panel
class TrainPanel(runs.Listener):
    """Widgets over a ``runs.RunManager``; see the module docstring."""

    def __init__(self, model=None, train_dl=None, valid_dl=None, *, groups=None,
                 cfg: TrainConfig = TrainConfig(), step: Callable = train.supervised_step, title: str = "",
                 model_fn: Callable[..., Any] | None = None,
                 loaders_fn: Callable[..., tuple[Any, Any]] | None = None,
                 step_fn: Callable[..., Callable] | None = None, extras: Mapping[str, Any] | None = None,
                 metrics: Sequence[str] = ("loss", "acc"), evaluate_fn: Callable = train.evaluate,
                 callbacks: Sequence[train.Callback] = (), background: bool = True, key: str | None = None):
        self.title, self.metrics, self.background = title, tuple(metrics), background
        self._guard = False          # true while code pushes values into widgets (no observer echo)
        self._status_lock = threading.Lock()
        self._widgets_ready = False
        self.manager = runs.RunManager(model, train_dl, valid_dl, groups=groups, cfg=cfg, step=step,
                                       model_fn=model_fn, loaders_fn=loaders_fn, step_fn=step_fn, extras=extras,
                                       evaluate_fn=evaluate_fn, callbacks=callbacks, listener=self, key=None)
        self._build_widgets()
        self._widgets_ready = True
        self._live = LivePlot(self.metrics, self.manager.valid_names, surgery.group_names(self.groups))
        self._board_fig = plots.agg_figure(1, width=8.8, height=3.2)
        self._board_fig.subplots_adjust(right=0.66)  # the legend sits to the right of the curves
        self._progress_next = 0.0
        self._plot_throttle = _Throttle(PLOT_INTERVAL_S, PLOT_BUDGET, PLOT_MAX_GAP_S)
        self.redraws: list[float] = []   # times of the current run's live-plot redraws
        self.refresh_rate = 0.0          # redraws per second during the last run
        self._show_idle()
        self.settings_changed()
        # last: a panel re-created with the same key stops the old panel's runs
        self.manager.key = key if key is not None else (title or "tlkit-panel")
        runs._register(self.manager.key, self.manager)

    # ------------------------------------------------------------------ manager passthroughs
    model = property(lambda self: self.manager.model)
    groups = property(lambda self: self.manager.groups)
    base_cfg = property(lambda self: self.manager.base_cfg)
    history = property(lambda self: self.manager.runs, doc="Every run that ended (list of ``Run``).")
    extras = property(lambda self: self.manager.extras, doc="Current values of the chapter controls.")
    running = property(lambda self: self.manager.running)
    _current = property(lambda self: self.manager.current)
    step = property(lambda self: self.manager.step, lambda self, v: setattr(self.manager, "step", v))

    @property
    def frozen(self) -> tuple[str, ...]:
        """Names of the groups the next run freezes."""
        return tuple(self.manager.values["frozen"])

    @property
    def runs(self):
        """The run board as a DataFrame (results first, then what changed); ``board(full=True)`` for all."""
        return self.manager.board()

    def board(self, full: bool = False):
        return self.manager.board(full)

    def seed_summary(self):
        return self.manager.seed_summary()

    def to_csv(self, path: str | None = None, full: bool = True):
        return self.manager.to_csv(path, full)

    def to_markdown(self, full: bool = False) -> str:
        return self.manager.to_markdown(full)

    def config_string(self, run: Run | int) -> str:
        return self.manager.config_string(run)

    def config(self) -> TrainConfig:
        """The ``TrainConfig`` the next run will use; ``ConfigError`` names what is wrong."""
        return self.manager.config()

    def values(self) -> dict[str, Any]:
        """Every setting as the controls show it, plus overrides."""
        return {**self.manager.values, "train_last": self._trailing(), **self.manager.overrides}

    # ------------------------------------------------------------------ widgets
    def _build_widgets(self) -> None:
        m, v = self.manager, self.manager.values
        self._toggles = [W.ToggleButton(value=g.name not in set(v["frozen"]), description=g.name,
                                        layout=W.Layout(width="auto")) for g in self.groups]
        for t in self._toggles:
            t.observe(self._on_toggle, "value")
        self._train_last = W.IntSlider(value=max(1, self._trailing()), min=1, max=len(self.groups),
                                       description="train last", style=_WIDE, continuous_update=False,
                                       layout=W.Layout(width="260px"))
        self._train_last.observe(self._on_slider, "value")
        self._params = W.HTML()
        lo, hi = runs.LR_DECAY_RANGE
        # one place per control: setting name -> widget; observers copy values into the manager
        self._controls: dict[str, W.ValueWidget] = {
            "lr": W.Text(value=f"{v['lr']:g}", description="head LR", style=_WIDE, layout=W.Layout(width="170px"),
                         placeholder="e.g. 1e-3"),
            "lr_decay": W.FloatSlider(value=v["lr_decay"], min=lo, max=hi, step=0.01, description="LR × per group",
                                      style=_WIDE, readout_format=".2f", continuous_update=False,
                                      layout=W.Layout(width="300px")),
            "epochs": W.IntText(value=v["epochs"], description="epochs", style=_WIDE, layout=W.Layout(width="130px")),
            "batch_size": W.IntText(value=v["batch_size"], description="batch size", style=_WIDE,
                                    layout=W.Layout(width="150px"), disabled=m.loaders_fn is None),
            "seed": W.IntText(value=v["seed"], description="seed", style=_WIDE, layout=W.Layout(width="120px")),
            "optimizer": W.Dropdown(options=list(OPTIMIZERS), value=v["optimizer"], description="optimizer",
                                    style=_WIDE, layout=W.Layout(width="170px")),
            "schedule": W.Dropdown(options=list(SCHEDULES), value=v["schedule"], description="schedule",
                                   style=_WIDE, layout=W.Layout(width="210px")),
            "train_bn": W.Checkbox(value=v["train_bn"], description="train BatchNorm", indent=False,
                                   layout=W.Layout(width="150px")),
            "fresh": W.Checkbox(value=v["fresh"], description="start from initial weights", indent=False,
                                layout=W.Layout(width="210px")),
            "name": W.Text(value="", placeholder="run name (optional)", layout=W.Layout(width="180px")),
            **{name: _extra_widget(e) for name, e in m.extra_specs.items()},
        }
        for key, w in self._controls.items():
            w.observe(lambda change, key=key: self._on_control(key, change["new"]), "value")
        self._lr, self._lr_decay, self._epochs = (self._controls[k] for k in ("lr", "lr_decay", "epochs"))
        self._batch, self._label = self._controls["batch_size"], self._controls["name"]

        button = lambda text, style, icon, fn, tip="": W.Button(  # noqa: E731
            description=text, button_style=style, icon=icon, tooltip=tip)
        self._train_btn = button("Train", "primary", "play", None)
        self._stop_btn = button("Stop", "warning", "stop", None)
        self._reset_btn = button("Reset", "", "undo", None, "back to the initial (pretrained) weights")
        self._repeat_btn = button("Repeat", "info", "repeat", None, "train the current settings once per seed")
        self._k = W.BoundedIntText(value=3, min=2, max=50, description="× seeds", style=_WIDE,
                                   layout=W.Layout(width="120px"))
        self._train_btn.on_click(lambda _: self._click(lambda: self.manager.start(block=not self.background)))
        self._stop_btn.on_click(lambda _: self.stop())
        self._reset_btn.on_click(lambda _: self._click(self.manager.reset))
        self._repeat_btn.on_click(lambda _: self._click(lambda: self.repeat(self._k.value, block=not self.background)))
        self._status = W.HTML(value="")
        self._bar = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="260px"))
        self._progress = W.HTML()
        self._overrides = W.HTML()
        self._plot = W.Image(format="jpeg", layout=W.Layout(max_width="100%"))
        self._plot.layout.display = "none"  # an empty Image shows a broken-image icon
        self._board = W.HTML()  # stretched to the panel's width by the VBox (a width of 100% + margin overflows)
        self._full = W.Checkbox(value=False, description="all settings", indent=False, layout=W.Layout(width="120px"))
        self._full.observe(lambda _: self._draw_board(), "value")
        self._shown = W.SelectMultiple(options=[], value=[], description="plot runs", rows=4, style=_WIDE,
                                       layout=W.Layout(width="260px"))
        self._shown.observe(self._on_shown, "value")
        self._load_text = W.Text(placeholder="paste a run's config string (tlkit-run:...)",
                                 layout=W.Layout(width="330px"))
        self._load_btn = button("Load", "", "upload", None, "set every control to that run's settings")
        self._load_btn.on_click(lambda _: self._click(lambda: self.load(self._load_text.value)))
        self._board_plot = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self._board_plot.layout.display = "none"
        self._board_tools = W.HBox([self._full, self._shown, self._load_text, self._load_btn],
                                   layout=W.Layout(flex_flow="row wrap", align_items="center"))
        self._board_tools.layout.display = "none"

        header = W.HTML(f"<b style='font-size:1.1em'>{html.escape(self.title or 'Training control panel')}</b>")
        c = self._controls
        rows = [header,
                W.HBox([W.HTML("layer groups (pressed = trained):"), *self._toggles],
                       layout=W.Layout(flex_flow="row wrap", align_items="center")),
                W.HBox([self._train_last, self._params], layout=W.Layout(align_items="center", flex_flow="row wrap")),
                *(W.HBox([c[k] for k in row], layout=W.Layout(flex_flow="row wrap", align_items="center"))
                  for row in CONTROL_ROWS)]
        if m.extra_specs:
            rows.append(W.HBox([W.HTML("chapter settings:"), *(c[n] for n in m.extra_specs)],
                               layout=W.Layout(flex_flow="row wrap", align_items="center")))
        rows += [self._overrides,
                 W.HBox([self._train_btn, self._stop_btn, self._reset_btn, c["name"], self._repeat_btn, self._k],
                        layout=W.Layout(align_items="center", flex_flow="row wrap")),
                 self._status, W.HBox([self._bar, self._progress], layout=W.Layout(align_items="center")),
                 self._plot, self._board, self._board_tools, self._board_plot]
        # the panel never grows wider than the notebook: wide content scrolls inside itself
        self.widget = W.VBox(rows, layout=W.Layout(border="1px solid rgba(128,128,128,0.4)", padding="6px",
                                                   max_width="100%"))
        self.widget.add_class("tlkit-panel")
        for w, css in ((self._plot, "tlkit-live-plot"), (self._board, "tlkit-board"),
                       (self._board_plot, "tlkit-board-plot"), (self._status, "tlkit-status")):
            w.add_class(css)  # stable handles for the browser test and for user CSS

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ controls <-> manager
    def _on_control(self, key: str, value: Any) -> None:
        if self._guard:
            return
        try:
            self.manager.set(**{key: value})
        except (ConfigError, ValueError) as exc:
            self.say(str(exc), "error")

    def _trailing(self) -> int:
        """How many groups at the end are trained, counting back until the first frozen one."""
        frozen = set(self.manager.values["frozen"])
        n = 0
        for g in reversed(self.groups):
            if g.name in frozen:
                break
            n += 1
        return n

    def _on_toggle(self, change) -> None:
        if self._guard:
            return
        self.manager.set_frozen([g.name for g, t in zip(self.groups, self._toggles) if not t.value])

    def _on_slider(self, change) -> None:
        if self._guard:
            return
        self.manager.set(train_last=change["new"])

    def settings_changed(self) -> None:
        """Push the manager's values into the widgets (no echo), recount trainable parameters."""
        if not self._widgets_ready:
            return
        m, v = self.manager, self.manager.values
        self._guard = True
        try:
            for key, w in self._controls.items():
                value = f"{v[key]:g}" if key == "lr" and not isinstance(v[key], str) else v[key]
                if w.value != value:
                    w.value = value
            frozen = set(v["frozen"])
            for g, t in zip(self.groups, self._toggles):
                t.value = g.name not in frozen
            self._train_last.value = max(1, self._trailing())
        finally:
            self._guard = False
        for g, t in zip(self.groups, self._toggles):
            hand = m.hand_frozen_count(g.name)
            t.button_style = "success" if t.value else ""
            t.icon = "unlock" if t.value and not hand else "lock"
            t.tooltip = (f"{g.name}: {g.n_params:,} parameters; pressed = trained"
                         + (f"; {hand} tensors frozen by hand stay frozen (switch the group off and on to "
                            "unfreeze them)" if hand else ""))
        trainable, total = m.trainable_count()
        share = 100 * trainable / total if total else 0.0
        text = f"trainable <b>{trainable:,}</b> of {total:,} parameters ({share:.1f}%)"
        hand = sum(m.hand_frozen_count(g.name) for g in self.groups)
        if hand:
            text += f" · {hand} tensors frozen by hand"
        try:
            rates = surgery.group_lrs(self.groups, float(v["lr"]), float(v["lr_decay"]), m.overrides.get("lrs"))
            trained = [f"{n}: {r:.2g}" for n, r in rates.items() if n not in frozen]
            text += f" · LRs {', '.join(trained[-4:])}"
        except (ValueError, ConfigError, surgery.GroupError):
            pass  # a half-typed LR: the count still shows, the error appears on Train
        self._params.value = text
        self._overrides.value = ("" if not m.overrides else "<span style='font-size:0.85em'>settings from code: "
                                 + html.escape(", ".join(f"{k}={runs.fmt(x)}" for k, x in m.overrides.items()))
                                 + "</span>")

    # ------------------------------------------------------------------ actions
    def say(self, text: str, kind: str = "info") -> None:
        color = {"info": "inherit", "ok": "#2e7d32", "warn": "#b26a00", "error": "#c62828"}[kind]
        with self._status_lock:
            self._status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    @property
    def message(self) -> str:
        """The status line as plain text (what the user was last told)."""
        return html.unescape(re.sub(r"<[^>]+>", "", self._status.value))

    def _click(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (ConfigError, RuntimeError, ValueError, KeyError) as exc:
            if "Not started" not in self.message and "still going" not in self.message:
                self.say(str(exc), "error")  # a button callback must not raise into the kernel log

    def set(self, **settings: Any) -> "TrainPanel":
        """Set controls from code (see the module docstring); bad values raise ``ConfigError`` naming the field."""
        try:
            self.manager.set(**settings)
        except (ConfigError, surgery.GroupError) as exc:
            self.say(str(exc), "error")
            raise
        return self

    def train(self, block: bool = True, **settings: Any) -> train.State | Run:
        """Apply ``settings``, train, and return the State (``block=False``: the Run)."""
        return self.manager.train(block=block, **settings)

    def repeat(self, k: int = 3, block: bool = True, **settings: Any):
        """Train the current settings for ``k`` seeds (seed, seed+1, ...); the board shows mean ± std."""
        return self.manager.repeat(k, block=block, **settings)

    def load(self, text: str) -> "TrainPanel":
        """Set every control to a run's config string (from the board), so Train repeats that run."""
        try:
            self.manager.load(text)
        except ConfigError as exc:
            self.say(f"Not loaded: {exc}", "error")
            raise
        self.say("settings loaded: press Train to repeat that run", "ok")
        return self

    def stop(self) -> None:
        """Ask the current run to end after its step (the Stop button)."""
        if not self.manager.stop():
            self.say("nothing to stop: no run is going")
            return
        self.say(f"run {self._current.number}: stopping after the current step…", "warn")

    def reset(self) -> None:
        """Put the model back to its initial (pretrained) weights."""
        self.manager.reset()

    def hide(self, *numbers: int) -> None:
        """Leave these runs out of the comparison plot (they stay on the board)."""
        self.manager.hidden |= set(numbers)
        self._draw_board()

    def show(self, *numbers: int) -> None:
        """Put hidden runs back into the comparison plot (all when no number is given)."""
        self.manager.hidden -= set(numbers) if numbers else set(self.manager.hidden)
        self._draw_board()

    def _on_shown(self, change) -> None:
        if self._guard:
            return
        shown = set(change["new"])
        self.manager.hidden = {r.number for r in self.history if r.number not in shown}
        self._draw_board()

    # ------------------------------------------------------------------ listener (the run's thread)
    def run_started(self, run: Run, valid_names: list[str]) -> None:
        if tuple(valid_names) != self._live.valid_names:
            self._live = LivePlot(self.metrics, valid_names, surgery.group_names(self.groups))
        self.redraws = []
        self._plot_throttle.next = time.perf_counter() + PLOT_INTERVAL_S

    def run_event(self, run: Run, event: str, state: train.State) -> None:
        if event == "fit_start":
            spe = state.steps_per_epoch
            self._live.start(f"run {run.number}: {run.name}", state.total_steps / spe if spe else state.cfg.epochs,
                             frozen=[g.name for g in self.groups if g.frozen])
            self._bar.bar_style = "info"
            self._bar.max = max(1, state.total_steps)
            self._show_progress(state)
            return
        now = time.perf_counter()
        if event == "step_end" and now < self._progress_next and now < self._plot_throttle.next:
            return  # the common case: nothing to draw, cost of two comparisons
        if event == "fit_end":
            return  # run_finished draws the final plot
        redraw = self._plot_throttle.ready(now)
        if redraw or now >= self._progress_next or event != "step_end":
            self._show_progress(state)  # with a redraw: the plotted point and the progress line show one step
            self._progress_next = now + PROGRESS_INTERVAL_S
        if redraw:
            self._redraw(run, state, grads=grad_norms(self.groups) if event == "step_end" else None)

    def _redraw(self, run: Run, state: train.State, grads: list[float] | None = None) -> None:
        t0 = time.perf_counter()
        self._plot.value = self._live.render(run.samples, state.history, grads)
        self._plot.layout.display = None
        t1 = time.perf_counter()
        self.redraws.append(t1)
        self._plot_throttle.spent(t0, t1)

    def _show_progress(self, state: train.State) -> None:
        self._bar.value = min(state.step, self._bar.max)
        spe = state.steps_per_epoch or 1
        epoch = min(state.cfg.epochs, state.step // spe + (1 if state.step % spe else 0)) if state.step else 0
        left = f" · ~{_clock(state.eta)} left" if state.status == "running" and state.step else ""
        grad = max(self._live.grads, default=0.0)  # text here, not in the plot: a glyph per redraw costs 2 ms
        grad = f" · largest gradient norm {grad:.2g}" if grad else ""
        self._progress.value = (f"step {state.step}/{state.total_steps} · epoch {epoch}/{state.cfg.epochs} · "
                                f"{_clock(state.elapsed)} elapsed{left} · {state.samples_per_s:,.0f} samples/s · "
                                f"{state.device} {state.precision}{grad}")

    def _show_idle(self) -> None:
        try:
            device = train.pick_device(self.base_cfg.device)
            where = f"{device.type} {train.pick_precision(device, self.base_cfg.precision)}"
        except RuntimeError as exc:
            where = str(exc)
        self._progress.value = f"ready · device {where}"

    def run_finished(self, run: Run) -> None:
        """Final progress, plot and board (in the run's thread; the manager has recorded the run already)."""
        state = run.state
        self._bar.bar_style = {"finished": "success", "stopped": "warning",
                               "interrupted": "warning"}.get(state.status, "danger")
        self._show_progress(state)
        try:
            if state.history or run.samples:
                if 0 < state.step < state.total_steps and state.steps_per_epoch:
                    self._live.set_x_max(state.step / state.steps_per_epoch)  # stopped early: zoom to what ran
                self._redraw(run, state, grads=grad_norms(self.groups))  # the last step's gradients are kept
            if len(self.redraws) >= 2:  # redraws per second, the final one included
                self.refresh_rate = (len(self.redraws) - 1) / (self.redraws[-1] - self.redraws[0])
        finally:
            self._draw_board()

    # ------------------------------------------------------------------ run board
    def _draw_board(self) -> None:
        """The board: results first, what changed, seed groups (mean ± std), and the comparison plot."""
        m = self.manager
        with m._lock:
            history = list(m.runs)
        if not history:
            return
        df = m.board(full=self._full.value)
        mon = history[-1].state.monitor
        best_col = f"best_{mon}"
        best_run = None
        if best_col in df and df[best_col].notna().any():
            best_run = df.loc[df[best_col].idxmin() if mon.endswith("loss") else df[best_col].idxmax(), "run"]
        cols = list(df.columns)
        cell = "padding:2px 6px;text-align:left;white-space:nowrap"
        wrap = "padding:2px 6px;text-align:left;white-space:normal;min-width:10em;max-width:16em"
        head = "".join(f"<th style='{cell}'>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
        body = []
        for _, r in df.iterrows():
            weight = "bold" if r["run"] == best_run else "normal"
            cells = "".join(f"<td style='{wrap if c in ('name', 'changed', 'diagnosis', 'config') else cell}'>"
                            f"{html.escape(runs.fmt(r[c]))}</td>" for c in cols)  # long text wraps
            body.append(f"<tr style='font-weight:{weight};border-top:1px solid rgba(128,128,128,0.35)'>{cells}</tr>")
        seeds = m.seed_summary()
        seed_html = ""
        if len(seeds):
            mean_col = next(c for c in seeds.columns if c.startswith("best_") and c.endswith("_mean"))
            metric = mean_col[len("best_"):-len("_mean")]
            items = [f"runs {r['runs']} ({html.escape(r['name'])}): best {html.escape(metric)} "
                     f"{r[mean_col]:.4g} ± {r[mean_col[:-5] + '_std']:.2g} over {r['seeds']} seeds"
                     for _, r in seeds.iterrows()]
            seed_html = "<div>Repeats over seeds (mean ± std): " + "; ".join(items) + "</div>"
        last = history[-1]
        self._board.value = (
            # width 0 + min-width 100%: as wide as the panel, but the table's width never widens the panel
            f"<div style='width:0;min-width:100%;max-width:100%;overflow-x:auto'><b>Run board</b> (bold: best {html.escape(mon)}; "
            f"last run: {html.escape(last.diagnosis)})"
            f"<table style='border-collapse:collapse;font-size:0.85em'><tr>{head}</tr>{''.join(body)}</table>"
            f"{seed_html}</div>")
        self._guard = True
        try:
            self._shown.options = [(f"{r.number}: {r.name}", r.number) for r in history]
            self._shown.value = [r.number for r in history if r.number not in m.hidden]
        finally:
            self._guard = False
        self._board_tools.layout.display = None
        shown = [r for r in history if r.number not in m.hidden and r.state.history]
        grouped = {g: rs for g, rs in m.seed_groups().items()}
        in_group = {r.number for rs in grouped.values() for r in rs}
        lines = {f"{r.number}: {r.name}": r.state.history for r in shown if r.number not in in_group}
        bands = {f"{rs[0].number}-{rs[-1].number}: {rs[0].name.split(' seed ')[0]}":
                 [r.state.history for r in rs if r in shown] for rs in grouped.values()}
        bands = {k: v for k, v in bands.items() if v}
        best_label = next((k for k in lines if k.split(":")[0] == str(best_run)), None)
        ax = self._board_fig.axes[0]
        ax.clear()
        plots.compare_runs(lines, mon, ax=ax, highlight=best_label, bands=bands,
                           title=f"all runs: {mon.replace('_', ' ')}")
        self._board_plot.value = plots.png_bytes(self._board_fig)
        self._board_plot.layout.display = None


__all__ = ["TrainPanel", "Run", "LivePlot", "extra_widget", "accepted_kwargs", "grad_norms"]
