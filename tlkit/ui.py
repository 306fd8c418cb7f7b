"""The training control panel: widgets that start, watch and stop real training.

The only tlkit module that imports ipywidgets (core API shared by 7.7 and 8, no
front-end extension): it works in JupyterLab, Notebook 7, VS Code and Colab.
Widgets only gather values into a ``TrainConfig`` and call ``train.fit``.

Quick start (a chapter's "control panel" section)::

    from tlkit.ui import TrainPanel
    panel = TrainPanel(model, train_dl, valid_dl, cfg=TrainConfig(epochs=3, lr=1e-3),
                       title="Fine-tune MobileNetV2")
    panel                                   # shows the panel; click Train
    state = panel.train(block=True, train_last=2, lr=3e-4)   # scripted ("Run all")
    panel.runs                              # DataFrame: one row per run

Constructor ``TrainPanel(model=None, train_dl=None, valid_dl=None, *, groups=None,
cfg=TrainConfig(), step=supervised_step, title="", model_fn=None, loaders_fn=None,
step_fn=None, extras=None, metrics=("loss", "acc"), evaluate_fn=evaluate,
callbacks=(), background=True)``:

- ``model`` / ``model_fn``: the model, or a factory ``model_fn(**extras) -> nn.Module``
  (called when ``model`` is None, and again when an extra it accepts changes).
  Reset restores the weights cloned when the model was built (pretrained ones).
- ``train_dl, valid_dl`` / ``loaders_fn``: loaders, or ``loaders_fn(batch_size=...,
  **extras) -> (train_dl, valid_dl)``, called when batch size or an extra it accepts
  changes (without ``loaders_fn`` the batch size box is read-only). ``valid_dl``
  may be a dict ``{"source": dl, "target": dl}`` as in ``fit``.
- ``groups``: layer groups (default ``surgery.layer_groups(model)``) or a callable
  ``model -> groups`` (use that with ``model_fn`` and custom groups).
- ``cfg``: the starting settings; fields without a widget (schedule warmup,
  max_steps, seed, monitor, eval_every, ...) are taken from it as they are.
- ``step`` / ``step_fn``: a fixed step function, or ``step_fn(**extras) -> step``
  called at every Train (chapter 4 picks DANN/CORAL/source-only this way).
- ``extras``: chapter-specific controls without importing ipywidgets, name -> spec:
  ``(default, lo, hi[, step])`` slider (ints -> IntSlider), a list (or tuple of
  strings) dropdown whose first item is the default, ``True/False`` checkbox, a
  number or string box. Example: ``extras={"max_len": (64, 16, 256, 16),
  "method": ["source_only", "dann", "coral"], "weight": 0.3}``.
  Each of ``model_fn``, ``loaders_fn`` and ``step_fn`` receives the extras its
  signature names (all of them if it takes ``**kwargs``), so
  ``loaders_fn(batch_size, max_len)`` gets ``max_len`` only (so names must be
  identifiers: ``lam``, not ``lambda``). Current values: ``panel.extras``.
- ``metrics``: step-output keys plotted live (each plot shows train and every
  validation set); ``callbacks`` are passed on to ``fit``.
- ``background=False`` runs clicks in the kernel thread (tests, headless).

Controls: per-group freeze toggles and a "train last N groups" slider with a live
trainable-parameter count; head LR (a text box: ``1e-3``) and an LR factor per
group below the head (``cfg.lr_decay``); epochs; batch size; train BatchNorm;
optimizer; schedule; "start from initial weights" (``fresh``, default on, so runs
on the board are comparable; off continues from the current weights); run name;
Train, Stop, Reset. Progress: step/epoch, elapsed, time left, samples/s, device
and precision. A live PNG plot (loss and accuracy) and a run board (table plus
every run's validation curves).

Scripted use:

- ``panel.set(lr=3e-4, lr_decay=0.5, epochs=2, batch_size=64, train_last=2,
  frozen=("stem",), train_bn=True, optimizer="sgd", schedule="linear",
  fresh=False, label="partial", max_len=128, seed=1, ...)`` sets widgets (any other
  ``TrainConfig`` field is kept as an override); unknown names raise ``KeyError``.
- ``panel.config() -> TrainConfig`` (raises ``ConfigError`` on bad values).
- ``panel.train(block=True, **settings) -> State``; ``block=False`` returns a
  ``Run`` with ``.wait(timeout) -> State``, ``.stop()``, ``.running``, ``.state``.
- ``panel.stop()``, ``panel.reset()``, ``panel.runs`` (DataFrame),
  ``panel.history`` (list of ``Run``), ``panel.model`` (current model),
  ``panel.message`` (the status line as text), ``panel.widget`` (root widget).

Threading: a Train click starts ``fit(..., on_error="return")`` in a daemon
thread so the kernel stays free to receive Stop; Stop sets
``Control.should_stop`` and the run ends after the current step (plus the
closing validation pass), keeping weights and history. The thread touches the UI
only by setting widget traits (never print or ``with output:``, which vanish in
JupyterLab). A Train click during a run is refused with a message; bad values
(LR "abc" or <= 0, epochs 0) are reported in the panel and start nothing;
errors, CUDA out-of-memory included, appear in the panel with what to do.
``block=True`` trains in the calling (kernel) thread, so the Stop button cannot
be heard: use the kernel's interrupt button; the run then ends "interrupted",
weights and history kept.

Drawing costs: progress updates at most 5x a second; plot redraws at most 2x a
second and within ~2% of wall time (redraws blit the lines onto a cached
background, ~10 ms); the final plot and run board cost ~0.15-0.3 s per run.
"""
from __future__ import annotations

import dataclasses
import html
import inspect
import keyword
import math
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W

from . import plots, surgery, train
from .config import OPTIMIZERS, SCHEDULES, ConfigError, TrainConfig

# Settings with a widget of their own; everything else in TrainConfig is an override.
PANEL_SETTINGS = ("lr", "lr_decay", "epochs", "batch_size", "train_bn", "optimizer", "schedule",
                  "train_last", "frozen", "fresh", "label")
PROGRESS_INTERVAL_S = 0.2   # progress label/bar refresh period
PLOT_INTERVAL_S = 0.5       # fastest plot refresh
PLOT_BUDGET = 0.02          # plot drawing may use at most this fraction of wall time

_WIDE = {"description_width": "initial"}


# --------------------------------------------------------------------------- small helpers
def extra_widget(name: str, spec: Any) -> W.ValueWidget:
    """Turn one ``extras`` spec into a widget (see the module docstring for the forms)."""
    is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not name.isidentifier() or keyword.iskeyword(name):
        # extras reach model_fn / loaders_fn / step_fn as keyword arguments, matched by name
        raise ValueError(f"extras name {name!r} cannot be a keyword argument; use a Python identifier "
                         "such as 'lam' instead of 'lambda' or 'max_len' instead of 'max-len'")
    if isinstance(spec, bool):
        return W.Checkbox(value=spec, description=name, indent=False)
    if isinstance(spec, list) or (isinstance(spec, tuple) and spec and all(isinstance(s, str) for s in spec)):
        if not spec:
            raise ValueError(f"extras[{name!r}] is an empty list; give the choices, first one is the default")
        return W.Dropdown(options=list(spec), value=spec[0], description=name, style=_WIDE)
    if isinstance(spec, tuple) and len(spec) in (3, 4) and all(is_num(v) for v in spec):
        default, lo, hi = spec[:3]
        if not lo <= default <= hi:
            raise ValueError(f"extras[{name!r}] = {spec!r}: the default {default} is outside [{lo}, {hi}]; "
                             "write (default, low, high[, step])")
        if all(isinstance(v, int) for v in spec):
            return W.IntSlider(value=default, min=lo, max=hi, step=spec[3] if len(spec) == 4 else 1,
                               description=name, style=_WIDE, continuous_update=False)
        step = spec[3] if len(spec) == 4 else (hi - lo) / 100
        return W.FloatSlider(value=default, min=lo, max=hi, step=step, description=name, style=_WIDE,
                             continuous_update=False, readout_format=".3g")
    if is_num(spec):
        cls = W.IntText if isinstance(spec, int) else W.FloatText
        return cls(value=spec, description=name, style=_WIDE, layout=W.Layout(width="170px"))
    if isinstance(spec, str):
        return W.Text(value=spec, description=name, style=_WIDE)
    raise TypeError(f"extras[{name!r}] = {spec!r} is not a control spec; use (default, low, high[, step]) for a "
                    "slider, a list of choices, True/False, a number or a string")


def accepted_kwargs(fn: Callable, values: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``values`` that ``fn`` takes as keyword arguments (all with ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass nothing extra
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(values)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in values.items() if k in names}


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "–"
    return str(v)


class _Throttle:
    """Allow an action at most every ``interval`` s and within ``budget`` of wall time."""

    def __init__(self, interval: float, budget: float = 1.0):
        self.interval, self.budget, self.next = interval, budget, 0.0

    def ready(self, now: float) -> bool:
        return now >= self.next

    def spent(self, start: float, end: float) -> None:
        self.next = end + max(self.interval, (end - start) / self.budget)


# --------------------------------------------------------------------------- a run
class Run:
    """One training run started by the panel: wait for it, stop it, read its State."""

    def __init__(self, number: int, label: str, cfg: TrainConfig, settings: dict[str, Any]):
        self.number, self.label, self.cfg, self.settings = number, label, cfg, settings
        self.control = train.Control()
        self.state: train.State | None = None   # set at fit_start; final State when done
        self._done = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self) -> None:
        """Ask the run to end after its current step."""
        self.control.should_stop = True

    def wait(self, timeout: float | None = None) -> train.State:
        """Block until the run ends and return its State (``TimeoutError`` after ``timeout`` s)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.number} still going after {timeout} s; call run.stop() to end it")
        assert self.state is not None
        return self.state

    def __repr__(self) -> str:
        status = self.state.status if self.state else "starting"
        return f"Run({self.number}, {self.label!r}, status={status!r})"


# --------------------------------------------------------------------------- live plot
class LivePlot:
    """Train/validation curves updated in place and rendered to PNG, cheaply enough to redraw often.

    One Axes per metric, each with the same series: ``train steps`` (sampled
    step values, thin), ``train`` (epoch means) and every validation set. The
    static parts (axes, ticks, labels, legend) are drawn once into a background
    that is reused (matplotlib blitting): a redraw restores it, draws the lines
    and encodes the PNG, ~10x cheaper than a full draw. Axis limits are fixed
    (x: the planned epochs) and refitted, with a full draw, only when the data
    leaves them or fills less than half of them.
    """

    def __init__(self, metrics: Sequence[str], valid_names: Sequence[str]):
        from matplotlib.lines import Line2D

        self.metrics, self.valid_names = tuple(metrics), tuple(valid_names)
        self.series = ("train steps", "train", *self.valid_names)
        self.fig = plots.agg_figure(len(self.metrics), width=4.4, height=3.0)
        self.fig.subplots_adjust(top=0.78)  # room for the run's name and the legend
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
        # one legend for all Axes, above them, so lines never hide it
        self.fig.legend([Line2D([], [], **styles[n]) for n in self.series], self.series, loc="upper right",
                        ncol=len(self.series), fontsize=8, frameon=False, bbox_to_anchor=(0.995, 1.0))
        self._title = self.fig.text(0.01, 0.975, "", fontsize=10, va="top", ha="left")
        self._background = None
        self.start("", 1.0)

    def start(self, title: str, x_max: float) -> None:
        """A new run: its name, the planned number of epochs (x range), empty lines."""
        with self.lock:
            self._title.set_text(title)
            for line in self.lines.values():
                line.set_data([], [])
            for ax in self.axes.values():
                ax.set_xlim(0, max(x_max, 1e-3) * 1.02)
                ax.set_ylim(0, 1)
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

    def render(self, samples: Sequence[dict[str, float]], history: Sequence[dict[str, float]]) -> bytes:
        """Update every line from step ``samples`` (epoch + metrics) and ``history`` rows; return PNG bytes."""
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
                    values += [p[1] for p in pts]
                if not values:
                    continue
                lo, hi = self._wanted(m, min(values), max(values))
                have = self._fitted[m]
                if (have is None or min(values) < have[0] or max(values) > have[1]
                        or (hi - lo) < 0.5 * (have[1] - have[0])):
                    self._fitted[m] = (lo, hi)
                    ax.set_ylim(lo, hi)
                    full = True
            canvas = self.fig.canvas
            if full:
                canvas.draw()
                self._background = canvas.copy_from_bbox(self.fig.bbox)
            else:
                canvas.restore_region(self._background)
            for (m, _), line in self.lines.items():
                self.axes[m].draw_artist(line)
            return plots.canvas_png(self.fig)


# --------------------------------------------------------------------------- the panel
class TrainPanel:
    """Widgets that gather a ``TrainConfig`` and run ``train.fit``; see the module docstring."""

    def __init__(self, model=None, train_dl=None, valid_dl=None, *, groups=None,
                 cfg: TrainConfig = TrainConfig(), step: Callable = train.supervised_step, title: str = "",
                 model_fn: Callable[..., Any] | None = None,
                 loaders_fn: Callable[..., tuple[Any, Any]] | None = None,
                 step_fn: Callable[..., Callable] | None = None, extras: Mapping[str, Any] | None = None,
                 metrics: Sequence[str] = ("loss", "acc"), evaluate_fn: Callable = train.evaluate,
                 callbacks: Sequence[train.Callback] = (), background: bool = True):
        if model is None and model_fn is None:
            raise ValueError("TrainPanel needs a model or a model_fn(**extras) that builds one")
        if train_dl is None and loaders_fn is None:
            raise ValueError("TrainPanel needs train_dl (and valid_dl) or a loaders_fn(batch_size=...) "
                             "that returns (train_dl, valid_dl)")
        self.base_cfg = cfg
        self.step, self.step_fn, self.model_fn, self.loaders_fn = step, step_fn, model_fn, loaders_fn
        self.evaluate_fn, self.callbacks, self.background = evaluate_fn, tuple(callbacks), background
        self.metrics, self.title = tuple(metrics), title
        self._groups_arg = groups
        self._overrides: dict[str, Any] = {}
        self.history: list[Run] = []
        self._current: Run | None = None
        self._guard = False  # true while code syncs toggles <-> slider, to avoid observer loops

        self._extra_w = {name: extra_widget(name, spec) for name, spec in (extras or {}).items()}
        self.model = model
        self._model_key = self._key(model_fn) if model_fn is not None else None
        if self.model is None:
            self.model = model_fn(**accepted_kwargs(model_fn, self.extras))
        self._groups_for = self.model
        self.groups = self._make_groups(self.model)
        self._initial = train.clone_weights(self.model)
        self.train_dl, self.valid_dl = train_dl, valid_dl
        self._loaders_key = ((cfg.batch_size, self._key(loaders_fn)) if train_dl is not None and loaders_fn
                             else None)
        valid_names = (list(valid_dl) if isinstance(valid_dl, Mapping) else ["valid"]) if valid_dl is not None \
            else ([] if loaders_fn is None else ["valid"])
        self._valid_names = valid_names
        self._build_widgets(cfg)
        self._live = LivePlot(self.metrics, valid_names)
        self._board_fig = plots.agg_figure(1, width=8.8, height=3.0)  # as wide as the live plot
        self._samples: list[dict[str, float]] = []
        self._progress_next = 0.0
        self._plot_throttle = _Throttle(PLOT_INTERVAL_S, PLOT_BUDGET)
        self._show_idle()

    # ------------------------------------------------------------------ widgets
    def _build_widgets(self, cfg: TrainConfig) -> None:
        n = len(self.groups)
        frozen = set(cfg.frozen) if cfg.frozen is not None else {g.name for g in self.groups if g.frozen}
        self._toggles = [W.ToggleButton(value=g.name not in frozen, description=g.name,
                                        tooltip=f"{g.name}: {g.n_params:,} parameters; pressed = trained",
                                        layout=W.Layout(width="auto")) for g in self.groups]
        for t in self._toggles:
            t.observe(self._on_toggle, "value")
        self._train_last = W.IntSlider(value=max(1, self._trailing()), min=1, max=n, description="train last",
                                       style=_WIDE, continuous_update=False,
                                       layout=W.Layout(width="260px"))
        self._train_last.observe(self._on_slider, "value")
        self._params = W.HTML()
        self._lr = W.Text(value=f"{cfg.lr:g}", description="head LR", style=_WIDE, layout=W.Layout(width="170px"),
                          placeholder="e.g. 1e-3")
        self._lr_decay = W.FloatSlider(value=cfg.lr_decay, min=0.01, max=1.0, step=0.01, description="LR × per group",
                                       style=_WIDE, readout_format=".2f", continuous_update=False,
                                       layout=W.Layout(width="300px"))
        self._epochs = W.IntText(value=cfg.epochs, description="epochs", style=_WIDE, layout=W.Layout(width="130px"))
        self._batch = W.IntText(value=cfg.batch_size, description="batch size", style=_WIDE,
                                layout=W.Layout(width="150px"), disabled=self.loaders_fn is None)
        self._train_bn = W.Checkbox(value=cfg.train_bn, description="train BatchNorm", indent=False,
                                    layout=W.Layout(width="150px"))
        self._optimizer = W.Dropdown(options=list(OPTIMIZERS), value=cfg.optimizer, description="optimizer",
                                     style=_WIDE, layout=W.Layout(width="170px"))
        self._schedule = W.Dropdown(options=list(SCHEDULES), value=cfg.schedule, description="schedule",
                                    style=_WIDE, layout=W.Layout(width="210px"))
        self._fresh = W.Checkbox(value=True, description="start from initial weights", indent=False,
                                 layout=W.Layout(width="210px"))
        self._label = W.Text(value="", placeholder="run name (optional)", layout=W.Layout(width="180px"))
        for w in (self._lr, self._lr_decay):
            w.observe(lambda _: self._update_counts(), "value")

        self._train_btn = W.Button(description="Train", button_style="primary", icon="play")
        self._stop_btn = W.Button(description="Stop", button_style="warning", icon="stop")
        self._reset_btn = W.Button(description="Reset", icon="undo", tooltip="back to the initial (pretrained) weights")
        self._train_btn.on_click(lambda _: self._click_train())
        self._stop_btn.on_click(lambda _: self.stop())
        self._reset_btn.on_click(lambda _: self._click_reset())
        self._status = W.HTML(value="")
        self._bar = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="260px"))
        self._progress = W.HTML()
        self._plot = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self._plot.layout.display = "none"  # an empty Image shows a broken-image icon
        self._board = W.HTML()
        self._board_plot = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self._board_plot.layout.display = "none"

        header = W.HTML(f"<b style='font-size:1.1em'>{html.escape(self.title or 'Training control panel')}</b>")
        groups_row = W.HBox([W.HTML("layer groups (pressed = trained):"), *self._toggles],
                            layout=W.Layout(flex_flow="row wrap", align_items="center"))
        rows = [header, groups_row, W.HBox([self._train_last, self._params], layout=W.Layout(align_items="center")),
                W.HBox([self._lr, self._lr_decay, self._epochs, self._batch],
                       layout=W.Layout(flex_flow="row wrap")),
                W.HBox([self._optimizer, self._schedule, self._train_bn, self._fresh],
                       layout=W.Layout(flex_flow="row wrap", align_items="center"))]
        if self._extra_w:
            rows.append(W.HBox([W.HTML("chapter settings:"), *self._extra_w.values()],
                               layout=W.Layout(flex_flow="row wrap", align_items="center")))
        rows += [W.HBox([self._train_btn, self._stop_btn, self._reset_btn, self._label],
                        layout=W.Layout(align_items="center")),
                 self._status, W.HBox([self._bar, self._progress], layout=W.Layout(align_items="center")),
                 self._plot, self._board, self._board_plot]
        self.widget = W.VBox(rows, layout=W.Layout(border="1px solid rgba(128,128,128,0.4)", padding="6px"))
        self.widget.add_class("tlkit-panel")
        self._update_counts()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ groups
    def _make_groups(self, model) -> list[surgery.LayerGroup]:
        """Groups for ``model``: the callable or list given to the panel, else ``surgery.layer_groups``.

        A list describes the model passed to the constructor only; a model that
        ``model_fn`` rebuilds gets its groups from the callable or from the table.
        """
        if callable(self._groups_arg):
            return list(self._groups_arg(model))
        if self._groups_arg is not None and model is self._groups_for:
            return list(self._groups_arg)
        return surgery.layer_groups(model)

    def _trailing(self) -> int:
        """How many groups at the end are trained, counting back until the first frozen one."""
        n = 0
        for t in reversed(self._toggles):
            if not t.value:
                break
            n += 1
        return n

    def _on_toggle(self, change) -> None:
        if self._guard:
            return
        self._guard = True
        try:
            self._train_last.value = max(1, self._trailing())
        finally:
            self._guard = False
        self._update_counts()

    def _on_slider(self, change) -> None:
        if self._guard:
            return
        self._guard = True
        try:
            n = len(self._toggles)
            for i, t in enumerate(self._toggles):
                t.value = i >= n - change["new"]
        finally:
            self._guard = False
        self._update_counts()

    @property
    def frozen(self) -> tuple[str, ...]:
        """Names of the groups the next run freezes (toggles that are not pressed)."""
        return tuple(g.name for g, t in zip(self.groups, self._toggles) if not t.value)

    def _update_counts(self) -> None:
        for t in self._toggles:
            t.button_style = "success" if t.value else ""
            t.icon = "unlock" if t.value else "lock"
        total = sum(g.n_params for g in self.groups)
        trainable = sum(g.n_params for g, t in zip(self.groups, self._toggles) if t.value)
        share = 100 * trainable / total if total else 0.0
        text = f"trainable <b>{trainable:,}</b> of {total:,} parameters ({share:.1f}%)"
        try:
            lr = float(self._lr.value)
            rates = surgery.group_lrs(self.groups, lr, float(self._lr_decay.value), self._overrides.get("lrs"))
            trained = [f"{n}: {r:.2g}" for (n, r), t in zip(rates.items(), self._toggles) if t.value]
            text += f" · LRs {', '.join(trained[-4:])}"
        except (ValueError, ConfigError, surgery.GroupError):
            pass  # a half-typed LR: the count still shows, the error appears on Train
        self._params.value = text

    # ------------------------------------------------------------------ settings
    @property
    def extras(self) -> dict[str, Any]:
        """Current values of the chapter-specific controls."""
        return {name: w.value for name, w in self._extra_w.items()}

    def values(self) -> dict[str, Any]:
        """Every setting as the widgets show it (raw, unvalidated), plus extras and overrides."""
        return {"lr": self._lr.value, "lr_decay": self._lr_decay.value, "epochs": self._epochs.value,
                "batch_size": self._batch.value, "train_bn": self._train_bn.value,
                "optimizer": self._optimizer.value, "schedule": self._schedule.value,
                "train_last": self._trailing(), "frozen": self.frozen, "fresh": self._fresh.value,
                "label": self._label.value, **self.extras, **self._overrides}

    def set(self, **settings: Any) -> "TrainPanel":
        """Set controls from code: panel settings, extras by name, or other ``TrainConfig`` fields."""
        known = set(PANEL_SETTINGS) | set(self._extra_w) | set(TrainConfig.field_names())
        unknown = sorted(set(settings) - known)
        if unknown:
            raise KeyError(f"unknown panel setting(s) {unknown}; known: {', '.join(sorted(known))}")
        if "train_last" in settings and "frozen" in settings:
            raise ValueError("give train_last or frozen, not both")
        simple = {"lr_decay": self._lr_decay, "epochs": self._epochs, "batch_size": self._batch,
                  "train_bn": self._train_bn, "optimizer": self._optimizer, "schedule": self._schedule,
                  "fresh": self._fresh, "label": self._label}
        for key, value in settings.items():
            if key == "lr":
                self._lr.value = value if isinstance(value, str) else f"{value:g}" \
                    if isinstance(value, (int, float)) else str(value)
            elif key == "batch_size" and self.loaders_fn is None and value != self._batch.value:
                raise ValueError("batch_size can change only when the panel has a loaders_fn(batch_size=...) "
                                 "to rebuild the loaders; pass loaders_fn to TrainPanel")
            elif key == "train_last":
                if not isinstance(value, int) or not 1 <= value <= len(self.groups):
                    raise ValueError(f"train_last must be between 1 and {len(self.groups)} (groups "
                                     f"{surgery.group_names(self.groups)}), got {value!r}")
                self._train_last.value = value
                self._on_slider({"new": value})
            elif key == "frozen":
                names = tuple(value or ())
                surgery._select(self.groups, list(names))  # unknown names -> GroupError listing the groups
                self._guard = True
                try:
                    for g, t in zip(self.groups, self._toggles):
                        t.value = g.name not in names
                finally:
                    self._guard = False
                self._on_toggle(None)
            elif key in simple:
                simple[key].value = value
            elif key in self._extra_w:
                self._extra_w[key].value = value
            else:
                self._overrides[key] = value
        self._update_counts()
        return self

    def config(self) -> TrainConfig:
        """The ``TrainConfig`` the next run will use; ``ConfigError`` names what is wrong."""
        text = str(self._lr.value).strip()
        try:
            lr = float(text)
        except ValueError:
            raise ConfigError(f"head LR {text!r} is not a number; type a positive number such as 1e-3") from None
        if len(self.frozen) >= len(self.groups):
            raise ConfigError("every layer group is frozen, so there is nothing to train; press at least the "
                              "head's toggle (or set train_last >= 1)")
        values = dict(lr=lr, lr_decay=float(self._lr_decay.value), epochs=self._epochs.value,
                      batch_size=self._batch.value, train_bn=bool(self._train_bn.value),
                      optimizer=self._optimizer.value, schedule=self._schedule.value, frozen=self.frozen)
        return dataclasses.replace(self.base_cfg, **{**values, **self._overrides})

    # ------------------------------------------------------------------ actions
    def _say(self, text: str, kind: str = "info") -> None:
        color = {"info": "inherit", "ok": "#2e7d32", "warn": "#b26a00", "error": "#c62828"}[kind]
        self._status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    @property
    def message(self) -> str:
        """The status line as plain text (what the user was last told)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self._status.value))

    @property
    def running(self) -> bool:
        return self._current is not None and self._current.running

    def _click_train(self) -> None:
        try:
            self._start(block=not self.background)
        except (ConfigError, RuntimeError, ValueError):
            pass  # already shown in the panel; a button callback must not raise into the kernel log

    def train(self, block: bool = True, **settings: Any) -> train.State | Run:
        """Apply ``settings`` (as in ``set``), train, and return the State (``block=False``: the Run)."""
        if settings:
            if self.running:
                self._say("a run is still going: press Stop (or run.wait()) before training again", "warn")
                raise RuntimeError("a run is still going; call panel.stop() or run.wait() first")
            self.set(**settings)
        run = self._start(block=block)
        return run.wait() if block else run

    def _start(self, block: bool) -> Run:
        if self.running:
            self._say(f"run {self._current.number} is still going: press Stop first (this click was ignored)",
                      "warn")
            raise RuntimeError("a run is still going; call panel.stop() or run.wait() first")
        try:
            cfg = self.config()
        except ConfigError as exc:
            self._say(f"Not started: {exc}", "error")
            raise
        settings = {k: v for k, v in self.values().items() if k not in TrainConfig.field_names() or k == "frozen"}
        number = len(self.history) + 1
        label = self._label.value.strip() or self._auto_label(cfg)
        run = Run(number, label, cfg, settings)
        self._current = run
        self._say(f"run {number} ({label}): starting…")
        if block:
            self._execute(run)
        else:
            run.thread = threading.Thread(target=self._execute, args=(run,), name=f"tlkit-run-{number}", daemon=True)
            run.thread.start()
        return run

    def _auto_label(self, cfg: TrainConfig) -> str:
        n_train = len(self.groups) - len(cfg.frozen or ())
        what = "all groups" if n_train == len(self.groups) else (
            "head only" if n_train == 1 else f"last {n_train} groups")
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in self.extras.items())
        return f"#{len(self.history) + 1} {what}, lr {cfg.lr:g}" + (f", {extra}" if extra else "")

    def stop(self) -> None:
        """Ask the current run to end after its step (the Stop button)."""
        if not self.running:
            self._say("nothing to stop: no run is going")
            return
        self._current.stop()
        self._say(f"run {self._current.number}: stopping after the current step…", "warn")

    def _click_reset(self) -> None:
        try:
            self.reset()
        except RuntimeError:
            pass

    def reset(self) -> None:
        """Put the model back to its initial (pretrained) weights."""
        if self.running:
            self._say("cannot reset while a run is going: press Stop first", "warn")
            raise RuntimeError("cannot reset while a run is going; call panel.stop() first")
        self.model.load_state_dict(self._initial)
        self._say("weights reset to the initial (pretrained) weights", "ok")

    def _key(self, fn: Callable | None, **fixed: Any) -> tuple:
        return tuple(sorted({**fixed, **(accepted_kwargs(fn, self.extras) if fn else {})}.items()))

    # ------------------------------------------------------------------ the run (kernel or background thread)
    def _prepare(self, run: Run) -> tuple[Any, Any, Callable]:
        """Rebuild model / loaders when their extras changed, reset weights, pick the step."""
        notes = []
        if self.model_fn is not None and self._key(self.model_fn) != self._model_key:
            self._say(f"run {run.number}: building the model for {dict(self._key(self.model_fn))}…")
            self.model = self.model_fn(**accepted_kwargs(self.model_fn, self.extras))
            self.groups = self._make_groups(self.model)
            if [g.name for g in self.groups] != [t.description for t in self._toggles]:
                raise ValueError("model_fn built a model with different layer groups "
                                 f"({surgery.group_names(self.groups)}); the panel needs the same groups")
            self._initial = train.clone_weights(self.model)
            self._model_key = self._key(self.model_fn)
            notes.append("model rebuilt")
        elif self._fresh.value:
            self.model.load_state_dict(self._initial)
        if self.loaders_fn is not None:
            key = (run.cfg.batch_size, self._key(self.loaders_fn))
            if key != self._loaders_key:
                self._say(f"run {run.number}: building loaders (batch size {run.cfg.batch_size})…")
                self.train_dl, self.valid_dl = self.loaders_fn(batch_size=run.cfg.batch_size,
                                                               **accepted_kwargs(self.loaders_fn, self.extras))
                self._loaders_key = key
                notes.append("loaders rebuilt")
        step = self.step_fn(**accepted_kwargs(self.step_fn, self.extras)) if self.step_fn else self.step
        if notes:
            run.settings["notes"] = ", ".join(notes)
        return self.train_dl, self.valid_dl, step

    def _execute(self, run: Run) -> None:
        state: train.State | None = None
        try:
            train_dl, valid_dl, step = self._prepare(run)
            names = list(valid_dl) if isinstance(valid_dl, Mapping) else (["valid"] if valid_dl is not None else [])
            if names != self._valid_names:
                self._valid_names = names
                self._live = LivePlot(self.metrics, names)
            self._samples = []
            self._plot_throttle.next = time.perf_counter() + PLOT_INTERVAL_S  # a first plot with a few points
            self._say(f"run {run.number} ({run.label}): training…")
            state = train.fit(self.model, train_dl, valid_dl, run.cfg, groups=self.groups, step=step,
                              evaluate_fn=self.evaluate_fn, callbacks=(self._callback, *self.callbacks),
                              control=run.control, on_error="return")
        except train.TrainingError as exc:
            state = exc.state
            state.status, state.message, state.error = "failed", str(exc), exc
        except Exception as exc:  # noqa: BLE001 - shown in the panel; the kernel thread must survive
            state = run.state or train.State(cfg=run.cfg)
            state.status, state.error, state.message = "failed", exc, train.friendly_error(exc)
        finally:
            if state is None:  # KeyboardInterrupt before fit: still end the run cleanly
                state = run.state or train.State(cfg=run.cfg, status="interrupted", message="interrupted")
            run.state = state
            try:
                self._finish(run)
            finally:
                run._done.set()

    def _callback(self, event: str, state: train.State, control: train.Control) -> None:
        run = self._current
        if event == "fit_start":
            run.state = state
            self._live.start(f"run {run.number}: {run.label}",
                             state.total_steps / state.steps_per_epoch if state.steps_per_epoch else state.cfg.epochs)
            self._bar.bar_style = "info"
            self._bar.max = max(1, state.total_steps)
            self._show_progress(state)
            return
        now = time.perf_counter()
        if event == "step_end" and now < self._progress_next and now < self._plot_throttle.next:
            return  # the common case: nothing to draw, cost of two comparisons
        if event == "step_end" and now >= self._progress_next:
            spe = state.steps_per_epoch or 1
            self._samples.append({"epoch": state.step / spe, **state.last})
            self._show_progress(state)
            self._progress_next = now + PROGRESS_INTERVAL_S
        if event == "epoch_end":
            self._show_progress(state)
        if event != "fit_end" and self._plot_throttle.ready(now):  # _finish draws the final plot
            self._redraw(run, state)

    def _redraw(self, run: Run, state: train.State) -> None:
        t0 = time.perf_counter()
        self._plot.value = self._live.render(self._samples, state.history)
        self._plot.layout.display = None
        self._plot_throttle.spent(t0, time.perf_counter())

    def _show_progress(self, state: train.State) -> None:
        self._bar.value = min(state.step, self._bar.max)
        spe = state.steps_per_epoch or 1
        epoch = min(state.cfg.epochs, state.step // spe + (1 if state.step % spe else 0)) if state.step else 0
        left = f" · ~{_clock(state.eta)} left" if state.status == "running" and state.step else ""
        self._progress.value = (f"step {state.step}/{state.total_steps} · epoch {epoch}/{state.cfg.epochs} · "
                                f"{_clock(state.elapsed)} elapsed{left} · {state.samples_per_s:,.0f} samples/s · "
                                f"{state.device} {state.precision}")

    def _show_idle(self) -> None:
        try:
            device = train.pick_device(self.base_cfg.device)
            where = f"{device.type} {train.pick_precision(device, self.base_cfg.precision)}"
        except RuntimeError as exc:
            where = str(exc)
        self._progress.value = f"ready · device {where}"

    def _finish(self, run: Run) -> None:
        """Final progress, plot, status and run-board row (called in the run's thread)."""
        state = run.state
        self._bar.bar_style = {"finished": "success", "stopped": "warning"}.get(state.status, "danger")
        self._show_progress(state)
        if state.history or self._samples:
            if 0 < state.step < state.total_steps and state.steps_per_epoch:
                self._live.set_x_max(state.step / state.steps_per_epoch)  # stopped early: zoom to what ran
            self._redraw(run, state)
        mon = state.monitor
        best = state.best.get(mon) if state.best else None
        note = f"; best {mon} {best:.4f}" if best is not None else ""
        if state.status == "finished":
            self._say(f"run {run.number} ({run.label}) finished in {state.elapsed:.1f} s{note}", "ok")
        elif state.status == "stopped":
            self._say(f"run {run.number} ({run.label}) stopped at step {state.step}/{state.total_steps}{note}; "
                      "weights and history so far are kept", "warn")
        else:
            self._say(f"run {run.number} ({run.label}) {state.status}: {state.message or state.status}", "error")
        if state.step > 0:
            self.history.append(run)
            self._update_board()

    # ------------------------------------------------------------------ run board
    @property
    def runs(self):
        """One row per run: settings, status, best and final validation metrics, time."""
        import pandas as pd

        return pd.DataFrame([self._row(r) for r in self.history])

    def _row(self, run: Run) -> dict[str, Any]:
        s, cfg = run.state, run.cfg
        n_train = len(self.groups) - len(cfg.frozen or ())
        row: dict[str, Any] = {"run": run.number, "label": run.label, "status": s.status,
                               "trained_groups": f"{n_train}/{len(self.groups)}",
                               "trainable_params": s.trainable_params, "lr": cfg.lr, "lr_decay": cfg.lr_decay,
                               "epochs": cfg.epochs, "batch_size": cfg.batch_size, "train_bn": cfg.train_bn,
                               "optimizer": cfg.optimizer, **{k: run.settings.get(k) for k in self._extra_w},
                               "steps": s.step}
        last = s.history[-1] if s.history else {}
        for name in self._valid_names or ["train"]:
            for m in ("acc", "loss"):
                col = f"{name}_{m}"
                values = [r[col] for r in s.history if col in r and r[col] == r[col]]
                if values:
                    row[f"best_{col}"] = max(values) if m == "acc" else min(values)
                    row[f"final_{col}"] = last.get(col, float("nan"))
        row.update({"time_s": round(s.elapsed, 2), "device": s.device, "precision": s.precision})
        return row

    def _update_board(self) -> None:
        df = self.runs
        mon = self.history[-1].state.monitor
        best_col = f"best_{mon}"
        best_run = None
        if best_col in df and df[best_col].notna().any():
            best_run = df.loc[df[best_col].idxmax() if not mon.endswith("loss") else df[best_col].idxmin(), "run"]
        cols = [c for c in df.columns if c not in ("optimizer", "device", "precision", "trainable_params")]
        cell = "padding:2px 6px;text-align:left;white-space:nowrap"  # inherits the theme's colours
        head = "".join(f"<th style='{cell}'>{html.escape(c)}</th>" for c in cols)
        body = []
        for _, r in df.iterrows():
            weight = "bold" if r["run"] == best_run else "normal"
            cells = "".join(f"<td style='{cell}'>{html.escape(_fmt(r[c]))}</td>" for c in cols)
            body.append(f"<tr style='font-weight:{weight};border-top:1px solid rgba(128,128,128,0.35)'>{cells}</tr>")
        self._board.value = (f"<div style='overflow-x:auto'><b>Run board</b> (bold: best {html.escape(mon)})"
                             f"<table style='border-collapse:collapse;font-size:0.85em'><tr>{head}</tr>"
                             f"{''.join(body)}</table></div>")
        histories = {r.label: r.state.history for r in self.history}
        best_label = next((r.label for r in self.history if r.number == best_run), None)
        ax = self._board_fig.axes[0]
        ax.clear()
        plots.compare_runs(histories, mon, ax=ax, highlight=best_label, title=f"all runs: {mon.replace('_', ' ')}")
        self._board_plot.value = plots.png_bytes(self._board_fig)
        self._board_plot.layout.display = None


__all__ = ["TrainPanel", "Run", "LivePlot", "extra_widget", "accepted_kwargs"]
