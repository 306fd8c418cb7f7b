"""The control panel's widget-free half: settings, runs, seeds, names, the run board and lifecycle.

``RunManager`` holds what a panel is *about*, with no ipywidgets in sight, so it
is tested headless and reused by any front end: the current settings (what the
controls show), the runs (each a ``Run`` with its ``TrainConfig``, State and
step curve), unique run names, repeat-over-seeds groups, the run board as a
DataFrame (results first, then what changed), config strings that restore a
run exactly, a one-sentence diagnosis of each run, and the lifecycle rules:

- a run starts from the initial weights (``fresh``) with the visible seed, so
  the same settings give the same run (``fit`` reseeds python, numpy, torch and
  the loaders' shuffling from ``cfg.seed``);
- a new manager with the same ``key`` (a re-executed notebook cell) stops the
  runs of the one it replaces;
- the kernel's interrupt (SIGINT) stops background runs, keeping weights and
  history (``interrupted``), then goes on to whatever handled SIGINT before;
- a run that ends (finished, stopped at step 0, failed, drawing failed) always
  reaches ``runs``; run numbers are never reused.

ui.py is a thin view over it: a ``Listener`` whose methods draw progress, the
live plot and the board. Imports: ``runs -> train, recipes, surgery, config``;
never ipywidgets (a test checks it).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import keyword
import math
import signal
import statistics
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from . import recipes, surgery, train
from .config import OPTIMIZERS, SCHEDULES, ConfigError, TrainConfig

#: Settings with a control of their own (the rest of ``TrainConfig`` are overrides).
CONTROLLED = ("lr", "lr_decay", "epochs", "batch_size", "train_bn", "optimizer", "schedule", "frozen", "seed")
#: Choices of the dropdown controls, for messages that list them.
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}
LR_DECAY_RANGE = (0.01, 1.0)
CONFIG_PREFIX = "tlkit-run:"
STEP_POINTS = 600           # at most this many points on a run's step-level curve


# --------------------------------------------------------------------------- extras (chapter controls)
@dataclass(frozen=True)
class Extra:
    """One chapter-specific control, parsed from its spec (see ``TrainPanel``'s ``extras``)."""

    name: str
    kind: str                     # checkbox, dropdown, slider, number, text
    default: Any
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    step: float | None = None

    def check(self, value: Any) -> Any:
        """``value`` if this control can hold it, else ``ConfigError`` naming the control and the choices."""
        ok = {"checkbox": lambda v: isinstance(v, bool),
              "dropdown": lambda v: v in self.choices,
              "slider": lambda v: _is_num(v) and self.lo <= v <= self.hi
              and (not isinstance(self.default, int) or (isinstance(v, int) and (v - self.lo) % self.step == 0)),
              "number": lambda v: _is_num(v) and (isinstance(v, int) or not isinstance(self.default, int)),
              "text": lambda v: isinstance(v, str)}[self.kind]
        if not ok(value):
            want = {"checkbox": "True or False", "dropdown": f"one of {list(self.choices)}",
                    "slider": (f"a whole number from {self.lo} to {self.hi} in steps of {self.step}"
                               if isinstance(self.default, int) else f"a number from {self.lo} to {self.hi}"),
                    "number": f"a {'whole ' if isinstance(self.default, int) else ''}number", "text": "a string"}
            raise ConfigError(f"{self.name}: {value!r} is not allowed; expected {want[self.kind]}")
        return value


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_extra(name: str, spec: Any) -> Extra:
    """Read one ``extras`` spec: ``(default, lo, hi[, step])`` slider, a list of choices, a bool, a number, a str."""
    if not name.isidentifier() or keyword.iskeyword(name):
        # extras reach model_fn / loaders_fn / step_fn as keyword arguments, matched by name
        raise ValueError(f"extras name {name!r} cannot be a keyword argument; use a Python identifier "
                         "such as 'lam' instead of 'lambda' or 'max_len' instead of 'max-len'")
    if isinstance(spec, bool):
        return Extra(name, "checkbox", spec)
    if isinstance(spec, list) or (isinstance(spec, tuple) and spec and all(isinstance(s, str) for s in spec)):
        if not spec:
            raise ValueError(f"extras[{name!r}] is an empty list; give the choices, first one is the default")
        return Extra(name, "dropdown", spec[0], choices=tuple(spec))
    if isinstance(spec, tuple) and len(spec) in (3, 4) and all(_is_num(v) for v in spec):
        default, lo, hi = spec[:3]
        if not lo <= default <= hi:
            raise ValueError(f"extras[{name!r}] = {spec!r}: the default {default} is outside [{lo}, {hi}]; "
                             "write (default, low, high[, step])")
        ints = all(isinstance(v, int) for v in spec)
        step = spec[3] if len(spec) == 4 else (1 if ints else (hi - lo) / 100)
        return Extra(name, "slider", default, lo=lo, hi=hi, step=step)
    if _is_num(spec):
        return Extra(name, "number", spec)
    if isinstance(spec, str):
        return Extra(name, "text", spec)
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


def loader_batch_size(dl: Any) -> int | None:
    """The batch size a loader really yields (``DataLoader``, a batch sampler, or a ``batch_size`` attribute)."""
    for obj in (dl, getattr(dl, "batch_sampler", None)):
        bs = getattr(obj, "batch_size", None)
        if isinstance(bs, int) and not isinstance(bs, bool):
            return bs
    return None


def fmt(v: Any) -> str:
    """Short text for a board cell or a run name."""
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "–"
    if isinstance(v, (tuple, list)):
        return "+".join(map(str, v)) if v else "none"
    return str(v)


# --------------------------------------------------------------------------- a run
class Run:
    """One training run: wait for it, stop it, read its State, its settings and its step curve."""

    def __init__(self, number: int, name: str, cfg: TrainConfig, settings: dict[str, Any],
                 seed_group: int | None = None):
        self.number, self.name, self.cfg, self.settings = number, name, cfg, settings
        self.seed_group = seed_group          # runs of one "repeat over seeds" click share it
        self.control = train.Control()
        self.state: train.State | None = None  # set at fit_start; the final State when done
        self.samples: list[dict[str, float]] = []  # step-level curve: epoch + step metrics
        self.batch_size: int | None = None     # what the loader really yields
        self.diagnosis = ""
        self.interrupted = False
        self.finishing = False                 # training is over; the board is being drawn
        self.thread: threading.Thread | None = None
        self._done = threading.Event()
        self._sample_every = 1

    label = property(lambda self: self.name)  # the name used to be called label

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self) -> None:
        """Ask the run to end after its current step."""
        self.control.should_stop = True

    def interrupt(self) -> None:
        """Stop because of the kernel's interrupt (the run ends ``interrupted``)."""
        self.interrupted = True
        self.control.should_stop = True

    def wait(self, timeout: float | None = None) -> train.State:
        """Block until the run ends and return its State (``TimeoutError`` after ``timeout`` s)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.number} still going after {timeout} s; call run.stop() to end it")
        assert self.state is not None
        return self.state

    def __repr__(self) -> str:
        status = self.state.status if self.state else "starting"
        return f"Run({self.number}, {self.name!r}, status={status!r})"


class Listener:
    """What a view does when the manager's state changes; every method may be left as a no-op.

    Methods are called from the thread that runs the training (a background
    thread for Train clicks): a view updates itself there only by setting
    widget traits.
    """

    def say(self, text: str, kind: str = "info") -> None: ...
    def settings_changed(self) -> None: ...
    def run_started(self, run: Run, valid_names: list[str]) -> None: ...
    def run_event(self, run: Run, event: str, state: train.State) -> None: ...
    def run_finished(self, run: Run) -> None: ...


# --------------------------------------------------------------------------- lifecycle: registry and SIGINT
_MANAGERS: dict[str, "weakref.ref[RunManager]"] = {}
_ACTIVE: "weakref.WeakSet[Run]" = weakref.WeakSet()
_PREVIOUS_SIGINT: list[Any] = [None]


def _on_sigint(signum: int, frame: Any) -> None:
    """Stop every background run (weights and history kept), then do what SIGINT did before."""
    for run in list(_ACTIVE):
        if run.running:
            run.interrupt()
    prev = _PREVIOUS_SIGINT[0]
    if callable(prev):
        prev(signum, frame)
    elif prev in (None, signal.SIG_DFL):
        raise KeyboardInterrupt


def _kernel() -> Any:
    """The running ipykernel, if this process is one (without importing IPython otherwise)."""
    ipy = sys.modules.get("IPython")
    shell = ipy.get_ipython() if ipy is not None and hasattr(ipy, "get_ipython") else None
    return getattr(shell, "kernel", None)


def hook_sigint() -> bool:
    """Route SIGINT through ``_on_sigint`` (main thread only); True when the hook is in place.

    ipykernel ignores SIGINT while idle and puts ``default_int_handler`` in place
    only while it handles a message, restoring its ``saved_sigint_handler``
    afterwards; a background run never sees a KeyboardInterrupt. So inside a
    kernel the hook replaces the handler the kernel restores, chaining to it.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGINT)
    kernel = _kernel()
    saved = getattr(kernel, "saved_sigint_handler", None) if kernel is not None else None
    if _on_sigint in (current, saved):
        return True
    if saved is not None and current is signal.default_int_handler:
        _PREVIOUS_SIGINT[0] = saved           # inside a message handler: the kernel restores `saved` after it
        kernel.saved_sigint_handler = _on_sigint
    else:
        _PREVIOUS_SIGINT[0] = current
        signal.signal(signal.SIGINT, _on_sigint)
    return True


# --------------------------------------------------------------------------- diagnosis
def diagnose(state: train.State) -> str:
    """One sentence on what a run's curves say, and what to try next.

    Rules (first match): diverged/failed/stopped before a step; overfitting (the
    first validation loss has a minimum before the last evaluation, rose by more
    than 5% of it since, while training loss fell); still improving (the
    monitored metric's last evaluation is its best and improved on the previous
    one); underfitting (training loss fell by less than 10% from the first
    evaluation and training accuracy, if measured, is below 0.7); else settled.
    """
    h = state.history
    if state.status == "diverged":
        return f"Diverged: {state.message or 'the loss blew up'}. Lower the learning rate (e.g. 10x)."
    if state.status == "failed":
        return f"Failed: {state.message}"
    if state.step == 0:
        return "Stopped before its first step: nothing was trained."
    valid = next((k[:-5] for k in (h[-1] if h else {}) if k.endswith("_loss") and not k.startswith("train")), None)
    if len(h) < 2 or valid is None:
        return (f"Only {len(h)} evaluation(s): too few points to read a trend; train for more epochs "
                "(or set eval_every) to see the curves.")
    vl = [r.get(f"{valid}_loss", math.nan) for r in h]
    tl = [r.get("train_loss", math.nan) for r in h]
    i_min = min(range(len(vl)), key=lambda i: vl[i] if vl[i] == vl[i] else math.inf)
    if (i_min < len(h) - 1 and vl[-1] > vl[i_min] + 0.05 * abs(vl[i_min])
            and tl[-1] < tl[i_min]):
        return (f"Overfitting: {valid} loss was lowest at epoch {h[i_min]['epoch']:.3g} ({vl[i_min]:.3g}) and rose to "
                f"{vl[-1]:.3g} while training loss kept falling ({tl[i_min]:.3g} -> {tl[-1]:.3g}); try fewer "
                "epochs (or restore_best=True), freezing more groups, or a lower learning rate.")
    mon = state.monitor
    m = [r.get(mon, math.nan) for r in h]
    better = (lambda a, b: a < b) if mon.endswith("loss") else (lambda a, b: a > b)
    finite = [x for x in m if x == x]
    if finite and m[-1] == m[-1] and all(not better(x, m[-1]) for x in finite) and better(m[-1], m[-2]):
        ended = "when it was stopped" if state.status != "finished" else "when it ended"
        return (f"Still improving {ended}: {mon} went {m[-2]:.3g} -> {m[-1]:.3g} in the last evaluation; "
                "train for more epochs.")
    t_acc = h[-1].get("train_acc")
    if tl[0] == tl[0] and tl[-1] > 0.9 * tl[0] and (t_acc is None or t_acc < 0.7):
        return (f"Underfitting: training loss barely fell ({tl[0]:.3g} -> {tl[-1]:.3g}); try a higher learning "
                "rate, training more groups, or more epochs.")
    return (f"Settled: {mon} best {max(finite) if not mon.endswith('loss') else min(finite):.3g}, no clear trend "
            "at the end; compare other settings (or repeat over seeds to see the noise).")


# --------------------------------------------------------------------------- the manager
class RunManager:
    """Settings, runs and the run board of one panel; see the module docstring.

    Arguments are ``TrainPanel``'s (ui.py documents them). ``listener`` receives
    progress and results; ``key`` names the panel in the registry (default: the
    title), so a re-created panel stops the runs of the one it replaces.
    """

    def __init__(self, model=None, train_dl=None, valid_dl=None, *, groups=None,
                 cfg: TrainConfig = TrainConfig(), step: Callable = train.supervised_step,
                 model_fn: Callable[..., Any] | None = None,
                 loaders_fn: Callable[..., tuple[Any, Any]] | None = None,
                 step_fn: Callable[..., Callable] | None = None, extras: Mapping[str, Any] | None = None,
                 evaluate_fn: Callable = train.evaluate, callbacks: Sequence[train.Callback] = (),
                 key: str | None = None, listener: Listener | None = None):
        if model is None and model_fn is None:
            raise ValueError("TrainPanel needs a model or a model_fn(**extras) that builds one")
        if train_dl is None and loaders_fn is None:
            raise ValueError("TrainPanel needs train_dl (and valid_dl) or a loaders_fn(batch_size=...) "
                             "that returns (train_dl, valid_dl)")
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"cfg must be a TrainConfig, got {type(cfg).__name__}; e.g. cfg=TrainConfig(lr=1e-3)")
        self.base_cfg = cfg
        self.step, self.step_fn, self.model_fn, self.loaders_fn = step, step_fn, model_fn, loaders_fn
        self.evaluate_fn, self.callbacks = evaluate_fn, tuple(callbacks)
        self.listener = listener or Listener()
        self.extra_specs = {name: parse_extra(name, spec) for name, spec in (extras or {}).items()}
        self.runs: list[Run] = []            # every run that ended, in order
        self.hidden: set[int] = set()        # run numbers left out of the comparison plot
        self.current: Run | None = None
        self.overrides: dict[str, Any] = {}  # TrainConfig fields without a control, set with set()
        self._next_number = 1
        self._next_group = 1
        self._lock = threading.RLock()
        self._groups_arg = groups
        self.valid_names: list[str] = ((list(valid_dl) if isinstance(valid_dl, Mapping) else ["valid"])
                                       if valid_dl is not None else ([] if loaders_fn is None else ["valid"]))

        self.values: dict[str, Any] = dict(self.extra_defaults)  # filled below, once the groups are known
        self.model = model if model is not None else model_fn(**accepted_kwargs(model_fn, self.extra_defaults))
        # which model a list of groups belongs to, without keeping it alive: a strong reference held the
        # first model for the panel's lifetime after model_fn built another (chapter 5: 66 MB)
        self._groups_for = weakref.ref(self.model)
        self._model_key = self._key(model_fn) if model_fn is not None else None
        self._adopt_model(self.model)
        self.train_dl, self.valid_dl = train_dl, valid_dl
        self._loaders_key = ((cfg.batch_size, self._key(loaders_fn)) if train_dl is not None and loaders_fn
                             else None)
        if cfg.frozen is not None:
            surgery._select(self.groups, list(cfg.frozen))  # unknown group names: an error, as in fit
        frozen = cfg.frozen if cfg.frozen is not None else tuple(g.name for g in self.groups if g.frozen)
        self.values: dict[str, Any] = {
            **{k: getattr(cfg, k) for k in CONTROLLED}, "frozen": tuple(frozen),
            "seed": cfg.seed if cfg.seed is not None else 0, "fresh": True, "name": "", **self.extra_defaults}
        self.key = key
        if key is not None:
            _register(key, self)

    # ------------------------------------------------------------------ model and groups
    @property
    def extra_defaults(self) -> dict[str, Any]:
        return {n: e.default for n, e in self.extra_specs.items()}

    @property
    def extras(self) -> dict[str, Any]:
        """Current values of the chapter-specific controls."""
        return {n: self.values[n] for n in self.extra_specs}

    def _make_groups(self, model) -> list[surgery.LayerGroup]:
        if callable(self._groups_arg):
            return list(self._groups_arg(model))
        if self._groups_arg is not None and model is self._groups_for():
            return list(self._groups_arg)
        return surgery.layer_groups(model)

    def _adopt_model(self, model) -> None:
        """Groups, initial weights and the parameters frozen by hand (kept frozen by every run)."""
        self.model = model
        self.groups = self._make_groups(model)
        self.initial = train.clone_weights(model)
        owner = {id(p): g.name for g in self.groups for p in g.parameters()}
        self.hand_frozen = {id(p): owner.get(id(p)) for p in model.parameters() if not p.requires_grad}
        self.unfrozen_by_user: set[str] = set()

    def hand_frozen_count(self, group: str) -> int:
        """How many parameter tensors of ``group`` were frozen by hand (and stay so unless unfrozen)."""
        return sum(1 for g in self.hand_frozen.values() if g == group and group not in self.unfrozen_by_user)

    def _key(self, fn: Callable | None, **fixed: Any) -> tuple:
        return tuple(sorted({**fixed, **(accepted_kwargs(fn, self.extras) if fn else {})}.items()))

    # ------------------------------------------------------------------ settings
    def set(self, **settings: Any) -> "RunManager":
        """Set controls by name (checked like the widgets would); other ``TrainConfig`` fields become overrides.

        Raises ``KeyError`` for unknown names and ``ConfigError`` (naming the
        field and what it accepts) for a value a control cannot hold.
        """
        known = {*CONTROLLED, "train_last", "fresh", "name", "label", *self.extra_specs,
                 *TrainConfig.field_names()}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise KeyError(f"unknown panel setting(s) {unknown}; known: {', '.join(sorted(known))}")
        if "train_last" in settings and "frozen" in settings:
            raise ConfigError("give train_last or frozen, not both")
        checked = {k: self._check(k, v) for k, v in settings.items()}  # all or nothing
        with self._lock:
            for k, v in checked.items():
                if k == "train_last":
                    k, v = "frozen", recipes.last_n(surgery.group_names(self.groups), v).frozen
                if k == "frozen":
                    self.set_frozen(v, notify=False)
                elif k in self.values or k == "label":
                    self.values["name" if k == "label" else k] = v
                else:
                    self.overrides[k] = v
        self.listener.settings_changed()
        return self

    def _check(self, key: str, value: Any) -> Any:
        if key in self.extra_specs:
            return self.extra_specs[key].check(value)
        if key == "lr":  # the LR box holds text; config() parses it and says what is wrong
            if isinstance(value, str) or _is_num(value):
                return value
            raise ConfigError(f"lr: {value!r} is not a number; type a positive number such as 1e-3")
        if key in ("epochs", "batch_size", "seed"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}: {value!r} is not a whole number; type one such as "
                                  f"{getattr(self.base_cfg, key) or 0}")
            if key == "batch_size" and self.loaders_fn is None and value != self.values["batch_size"]:
                raise ConfigError("batch_size can change only when the panel has a loaders_fn(batch_size=...) "
                                  "to rebuild the loaders; pass loaders_fn to TrainPanel")
            return value
        if key in CHOICES:
            if value not in CHOICES[key]:
                raise ConfigError(f"{key}: {value!r} is not one of the choices {', '.join(CHOICES[key])}")
            return value
        if key == "lr_decay":
            lo, hi = LR_DECAY_RANGE
            if not _is_num(value) or not lo <= value <= hi:
                raise ConfigError(f"lr_decay: {value!r} is outside the slider's range; give a number from {lo} to {hi}")
            return float(value)
        if key in ("train_bn", "fresh"):
            if not isinstance(value, bool):
                raise ConfigError(f"{key}: {value!r} is not True or False")
            return value
        if key in ("name", "label"):
            if not isinstance(value, str):
                raise ConfigError(f"name: {value!r} is not a string; give the run a text name")
            return value
        if key == "train_last":
            n = len(self.groups)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
                raise ConfigError(f"train_last must be a whole number between 1 and {n} (groups "
                                  f"{surgery.group_names(self.groups)}), got {value!r}")
            return value
        if key == "frozen":
            if isinstance(value, str):
                raise ConfigError(f"frozen: give a tuple of group names such as ({value!r},), not a string")
            names = tuple(value or ())
            surgery._select(self.groups, list(names))  # unknown names -> GroupError listing the groups
            return names
        try:  # any other TrainConfig field: checked by TrainConfig itself
            dataclasses.replace(self.base_cfg, **{key: value})
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        return value

    def set_frozen(self, names: Sequence[str], notify: bool = True) -> None:
        """Freeze exactly these groups in the next runs; a group switched from frozen to trained
        also unfreezes the parameters frozen by hand in it (an explicit unfreeze)."""
        names = tuple(g.name for g in self.groups if g.name in set(names))
        before = set(self.values["frozen"])
        self.unfrozen_by_user |= {g for g in before if g not in names}
        self.values["frozen"] = names
        if notify:
            self.listener.settings_changed()

    def config(self, **once: Any) -> TrainConfig:
        """The ``TrainConfig`` the next run will use; ``ConfigError`` names what is wrong."""
        v = self.values
        text = str(v["lr"]).strip()
        try:
            lr = float(text)
        except ValueError:
            raise ConfigError(f"head LR {text!r} is not a number; type a positive number such as 1e-3") from None
        if len(v["frozen"]) >= len(self.groups):
            raise ConfigError("every layer group is frozen, so there is nothing to train; press at least the "
                              "head's toggle (or set train_last >= 1)")
        values = {k: v[k] for k in CONTROLLED}  # a new control: one name in CONTROLLED, one widget in ui.py
        values.update(lr=lr, frozen=tuple(v["frozen"]))
        return dataclasses.replace(self.base_cfg, **{**values, **self.overrides, **once})

    def trainable_count(self) -> tuple[int, int]:
        """(trainable, total) parameters the next run trains, hand-frozen ones counted as frozen."""
        frozen = set(self.values["frozen"])
        total = trainable = 0
        for g in self.groups:
            for p in g.parameters():
                total += p.numel()
                keep = id(p) in self.hand_frozen and g.name not in self.unfrozen_by_user
                if g.name not in frozen and not keep:
                    trainable += p.numel()
        return trainable, total

    def _apply_freezing(self, frozen: Sequence[str]) -> None:
        """Before a run: groups the user switched from frozen to trained also lose their hand freezing.

        ``fit`` then freezes exactly ``cfg.frozen`` with ``surgery.apply_frozen``, which
        leaves every other parameter frozen by hand as it is.
        """
        explicit = [g for g in self.unfrozen_by_user if g not in set(frozen)]
        if explicit:
            surgery.unfreeze(self.groups, explicit, include_hand_frozen=True)

    # ------------------------------------------------------------------ names
    def describe(self, cfg: TrainConfig) -> str:
        """What trains, as a few words: "head only", "last 2 of 4 groups", "all groups"."""
        n_train = len(self.groups) - len(cfg.frozen or ())
        names = surgery.group_names(self.groups)
        trained = tuple(n for n in names if n not in set(cfg.frozen or ()))
        if n_train == len(names):
            return "all groups"
        if trained == tuple(names[-n_train:]):
            return "head only" if n_train == 1 else f"last {n_train} groups"
        return "train " + "+".join(trained)

    def _comparable(self, cfg: TrainConfig, settings: Mapping[str, Any]) -> dict[str, Any]:
        out = {"trains": self.describe(cfg)}
        for k, v in cfg.to_dict().items():
            if k not in ("frozen",):
                out[k] = tuple(v) if isinstance(v, list) else v
        out.update({k: settings.get(k) for k in self.extra_specs})
        out["fresh"] = settings.get("fresh", True)
        return out

    def changes(self, run: Run, since: Run | None = None) -> dict[str, Any]:
        """Settings of ``run`` that differ from ``since`` (default: the first run on the board)."""
        first = since if since is not None else (self.runs[0] if self.runs else None)
        if first is None or first is run:
            return {}
        a, b = self._comparable(first.cfg, first.settings), self._comparable(run.cfg, run.settings)
        return {k: v for k, v in b.items() if a.get(k) != v}

    def _auto_name(self, cfg: TrainConfig, settings: Mapping[str, Any]) -> str:
        probe = Run(0, "", cfg, dict(settings))
        if not self.runs:
            extra = ", ".join(f"{k} {fmt(v)}" for k, v in self.extras.items())
            return f"{self.describe(cfg)}, lr {cfg.lr:g}" + (f", {extra}" if extra else "")
        diff = self.changes(probe)
        if not diff:
            return f"as run {self.runs[0].number}"
        return ", ".join(f"{v}" if k == "trains" else f"{k} {fmt(v)}" for k, v in diff.items())

    def unique_name(self, name: str) -> str:
        """``name``, or ``name (2)``, ``name (3)``... when a run already has it."""
        taken = {r.name for r in self.runs} | ({self.current.name} if self.current else set())
        if name not in taken:
            return name
        i = 2
        while f"{name} ({i})" in taken:
            i += 1
        return f"{name} ({i})"

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        return self.current is not None and self.current.running

    def start(self, block: bool, once: Mapping[str, Any] | None = None, seed_group: int | None = None) -> Run:
        """Start one run with the current settings (plus ``once``: TrainConfig fields for this run only)."""
        once = dict(once or {})
        name = once.pop("name", once.pop("label", None))
        previous = self.current
        if previous is not None and previous.finishing and threading.current_thread() is not previous.thread:
            previous._done.wait(30)  # trained already, only drawing its board: this click waits, not refused
        with self._lock:
            if self.running:
                self.listener.say(f"run {self.current.number} is still going: press Stop first (this click was "
                                  "ignored)", "warn")
                raise RuntimeError("a run is still going; call panel.stop() or run.wait() first")
            try:
                cfg = self.config(**once)
            except (ConfigError, surgery.GroupError) as exc:
                self.listener.say(f"Not started: {exc}", "error")
                raise
            settings = {"fresh": self.values["fresh"], **self.extras, "frozen": cfg.frozen}
            given = (name if name is not None else self.values["name"]).strip()
            name = self.unique_name(given or self._auto_name(cfg, settings))
            run = Run(self._next_number, name, cfg, settings, seed_group)
            self._next_number += 1
            self.values["name"] = ""  # a name is for one run: the next run gets its own
            self.current = run
            self.listener.say(f"run {run.number} ({run.name}): starting…")
        self.listener.settings_changed()
        if threading.current_thread() is not threading.main_thread():
            _ACTIVE.add(run)  # e.g. repeat-over-seeds in its own thread: the interrupt button must reach it
        if block:
            self._execute(run)
        else:
            _ACTIVE.add(run)
            hook_sigint()
            run.thread = threading.Thread(target=self._execute, args=(run,), name=f"tlkit-run-{run.number}",
                                          daemon=True)
            run.thread.start()
        return run

    def train(self, block: bool = True, **settings: Any) -> train.State | Run:
        """Apply control ``settings`` (as ``set``; they stay), train, return the State (``block=False``: the Run).

        A ``name`` and ``TrainConfig`` fields without a control (``max_steps``, ...)
        apply to this run only.
        """
        once = {k: settings.pop(k) for k in list(settings)
                if k in ("name", "label") or (k in TrainConfig.field_names() and k not in CONTROLLED)}
        for k in once:
            if k not in ("name", "label"):
                self._check(k, once[k])
        if settings:
            if self.running:
                self.listener.say("a run is still going: press Stop (or run.wait()) before training again", "warn")
                raise RuntimeError("a run is still going; call panel.stop() or run.wait() first")
            self.set(**settings)
        run = self.start(block=block, once=once)
        return run.wait() if block else run

    def repeat(self, k: int = 3, block: bool = True, **settings: Any) -> list[train.State] | threading.Thread:
        """Run the current settings for ``k`` seeds (the seed control's value, +1, ...): mean ± std on the board."""
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 50:
            raise ConfigError(f"seeds: {k!r} is not allowed; repeat over 2 to 50 seeds")
        if settings:
            self.set(**settings)
        base = self.values["seed"]
        group = self._next_group
        self._next_group += 1
        name = self.values["name"].strip()

        def all_seeds() -> list[train.State]:
            states = []
            for i in range(k):
                once = {"seed": base + i, **({"name": f"{name} seed {base + i}"} if name else {})}
                try:
                    run = self.start(block=True, once=once, seed_group=group)
                except (RuntimeError, ConfigError):  # another run started in between, or settings went bad:
                    break                             # start() has said so in the panel
                states.append(run.state)
                if run.state.status != "finished":
                    break
            return states

        if block:
            return all_seeds()
        hook_sigint()
        thread = threading.Thread(target=all_seeds, name=f"tlkit-seeds-{group}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> bool:
        """Ask the current run to end after its step; False when nothing is running."""
        run = self.current
        if run is None or not run.running:
            return False
        run.stop()
        return True

    def shutdown(self, why: str = "this panel was replaced by a new one") -> None:
        """Stop the current run and wait for it to end (a re-created panel calls this on the old one)."""
        run = self.current
        if run is not None and run.running:
            run.stop()
            run.settings["notes"] = f"stopped: {why}"
            try:
                run.wait(timeout=60)
            except TimeoutError:
                pass
        self.listener.say(f"This panel is closed ({why}); use the new one.", "warn")

    def reset(self) -> None:
        """Put the model back to its initial (pretrained) weights."""
        if self.running:
            self.listener.say("cannot reset while a run is going: press Stop first", "warn")
            raise RuntimeError("cannot reset while a run is going; call panel.stop() first")
        self.model.load_state_dict(self.initial)
        self.listener.say("weights reset to the initial (pretrained) weights", "ok")

    # ------------------------------------------------------------------ the run (kernel or background thread)
    def _prepare(self, run: Run) -> tuple[Any, Any, Callable]:
        """Rebuild model / loaders when their extras changed, reset weights, set freezing, pick the step."""
        notes = []
        extras = run.settings
        if self.model_fn is not None and self._key(self.model_fn) != self._model_key:
            self.listener.say(f"run {run.number}: building the model for {dict(self._key(self.model_fn))}…")
            names = surgery.group_names(self.groups)
            self._adopt_model(self.model_fn(**accepted_kwargs(self.model_fn, extras)))
            if surgery.group_names(self.groups) != names:
                raise ValueError("model_fn built a model with different layer groups "
                                 f"({surgery.group_names(self.groups)}); the panel needs the same groups {names}")
            self._model_key = self._key(self.model_fn)
            notes.append("model rebuilt")
        elif run.settings.get("fresh", True):
            self.model.load_state_dict(self.initial)
        if self.loaders_fn is not None:
            key = (run.cfg.batch_size, self._key(self.loaders_fn))
            if key != self._loaders_key:
                self.listener.say(f"run {run.number}: building loaders (batch size {run.cfg.batch_size})…")
                self.train_dl, self.valid_dl = self.loaders_fn(batch_size=run.cfg.batch_size,
                                                               **accepted_kwargs(self.loaders_fn, extras))
                self._loaders_key = key
                notes.append("loaders rebuilt")
        self._apply_freezing(run.cfg.frozen or ())
        step = self.step_fn(**accepted_kwargs(self.step_fn, extras)) if self.step_fn else self.step
        if notes:
            run.settings["notes"] = ", ".join(notes)
        return self.train_dl, self.valid_dl, step

    def _execute(self, run: Run) -> None:
        state: train.State | None = None
        try:
            train_dl, valid_dl, step = self._prepare(run)
            run.batch_size = loader_batch_size(train_dl)
            self.valid_names = (list(valid_dl) if isinstance(valid_dl, Mapping)
                                else (["valid"] if valid_dl is not None else []))
            self.listener.run_started(run, self.valid_names)
            self.listener.say(f"run {run.number} ({run.name}): training…")
            state = train.fit(self.model, train_dl, valid_dl, run.cfg, groups=self.groups, step=step,
                              evaluate_fn=self.evaluate_fn, callbacks=(self._make_callback(run), *self.callbacks),
                              control=run.control, on_error="return")
        except train.TrainingError as exc:
            state = exc.state
            state.status, state.message, state.error = "failed", str(exc), exc
        except Exception as exc:  # noqa: BLE001 - shown in the panel; the kernel thread must survive
            state = run.state or train.State(cfg=run.cfg)
            state.status, state.error, state.message = "failed", exc, train.friendly_error(exc)
        except KeyboardInterrupt:  # before fit started (fit handles its own)
            state = run.state or train.State(cfg=run.cfg)
            state.status, state.message = "interrupted", "interrupted before training started"
        finally:
            if state is None:
                state = run.state or train.State(cfg=run.cfg, status="failed", message="ended before training")
            self._finish(run, state)

    def _make_callback(self, run: Run) -> train.Callback:
        listener = self.listener

        def on_event(event: str, state: train.State, control: train.Control) -> None:
            if event == "fit_start":
                run.state = state
                run._sample_every = max(1, state.total_steps // STEP_POINTS)
            elif event == "step_end" and state.step % run._sample_every == 0:
                spe = state.steps_per_epoch or 1
                run.samples.append({"epoch": state.step / spe, "step": state.step, **state.last})
            listener.run_event(run, event, state)
        return on_event

    def _finish(self, run: Run, state: train.State) -> None:
        """Record the run (always), let the view draw it, then mark it done and say how it ended."""
        run.finishing = True
        if run.interrupted and state.status in ("stopped", "finished", "running"):
            state.status = "interrupted"
            state.message = "interrupted by the kernel's interrupt; the model keeps its weights and history so far"
        run.state = state
        run.diagnosis = diagnose(state)
        with self._lock:
            self.runs.append(run)
        try:
            self.listener.run_finished(run)
        except Exception as exc:  # noqa: BLE001 - a drawing failure must not lose the run or hang the status
            run.settings["notes"] = f"drawing failed: {type(exc).__name__}: {exc}"
        mon = state.monitor
        best = state.best.get(mon) if state.best else None
        note = f"; best {mon} {best:.4f}" if best is not None else ""
        with self._lock:  # "done" and the final message together: a click right after sees both
            _ACTIVE.discard(run)
            run._done.set()
            if state.status == "finished":
                self.listener.say(f"run {run.number} ({run.name}) finished in {state.elapsed:.1f} s{note}. "
                                  f"{run.diagnosis}", "ok")
            elif state.status in ("stopped", "interrupted"):
                self.listener.say(f"run {run.number} ({run.name}) {state.status} at step {state.step}/"
                                  f"{state.total_steps}{note}; weights and history so far are kept. {run.diagnosis}",
                                  "warn")
            else:
                self.listener.say(f"run {run.number} ({run.name}) {state.status}: {state.message or state.status}",
                                  "error")

    # ------------------------------------------------------------------ board
    def metric_kind(self) -> str:
        mon = self.runs[-1].state.monitor if self.runs else "valid_acc"
        return mon.rsplit("_", 1)[-1]

    def row(self, run: Run, full: bool = False) -> dict[str, Any]:
        """One board row: results first (run, name, status, seed, best/final metrics, steps, time), then
        what changed since the first run; ``full`` adds every setting."""
        s, cfg = run.state, run.cfg
        row: dict[str, Any] = {"run": run.number, "name": run.name, "status": s.status, "seed": cfg.seed}
        kind = self.metric_kind()
        names = [n for n in self.valid_names] or ["train"]
        mon = s.monitor
        ordered = sorted(names, key=lambda n: f"{n}_{kind}" != mon)
        last = s.history[-1] if s.history else {}
        for name in ordered:
            col = f"{name}_{kind}"
            values = [r[col] for r in s.history if col in r and r[col] == r[col]]
            row[f"best_{col}"] = (min(values) if kind == "loss" else max(values)) if values else math.nan
            row[f"final_{col}"] = last.get(col, math.nan)
        row.update({"steps": s.step, "time_s": round(s.elapsed, 2)})
        diff = self.changes(run)
        row["changed"] = ", ".join(f"{v}" if k == "trains" else f"{k} {fmt(v)}" for k, v in diff.items()) or (
            "" if run is (self.runs[0] if self.runs else None) else "same settings")
        row["batch"] = run.batch_size  # what the loader really yields, not what the config asked for
        if full:
            row.update({"trains": self.describe(cfg), "trainable_params": s.trainable_params, "lr": cfg.lr,
                        "lr_decay": cfg.lr_decay, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                        "train_bn": cfg.train_bn, "optimizer": cfg.optimizer, "schedule": cfg.schedule,
                        "frozen": fmt(cfg.frozen or ()), "fresh": run.settings.get("fresh", True),
                        **{k: run.settings.get(k) for k in self.extra_specs},
                        **{k: v for k, v in cfg.to_dict().items() if k not in CONTROLLED
                           and v != self.base_cfg.to_dict().get(k)},
                        "device": s.device, "precision": s.precision, "notes": run.settings.get("notes", ""),
                        "diagnosis": run.diagnosis, "config": self.config_string(run)})
        return row

    def board(self, full: bool = False):
        """The run board as a DataFrame, one row per run (``full``: every setting too)."""
        import pandas as pd

        with self._lock:
            runs = list(self.runs)
        return pd.DataFrame([self.row(r, full) for r in runs])

    def seed_summary(self):
        """One row per "repeat over seeds" group: runs, seeds, mean and std of the best and final metric."""
        import pandas as pd

        rows = []
        for group, runs in self.seed_groups().items():
            s = runs[0].state
            kind = self.metric_kind()
            col = s.monitor if s.monitor.endswith(kind) else f"{self.valid_names[0]}_{kind}"
            best = [self.row(r)[f"best_{col}"] for r in runs]
            final = [self.row(r)[f"final_{col}"] for r in runs]
            rows.append({"runs": f"{runs[0].number}-{runs[-1].number}", "name": runs[0].name.split(" seed ")[0],
                         "seeds": len(runs), f"best_{col}_mean": statistics.fmean(best),
                         f"best_{col}_std": statistics.stdev(best) if len(best) > 1 else 0.0,
                         f"final_{col}_mean": statistics.fmean(final),
                         f"final_{col}_std": statistics.stdev(final) if len(final) > 1 else 0.0})
        return pd.DataFrame(rows)

    def seed_groups(self) -> dict[int, list[Run]]:
        """Runs of each repeat-over-seeds click, by group (only groups with at least two runs)."""
        groups: dict[int, list[Run]] = {}
        for r in self.runs:
            if r.seed_group is not None:
                groups.setdefault(r.seed_group, []).append(r)
        return {g: rs for g, rs in groups.items() if len(rs) >= 2}

    def to_csv(self, path: str | None = None, full: bool = True) -> str | None:
        """The board as CSV text (or written to ``path``)."""
        return self.board(full).to_csv(path, index=False)

    def to_markdown(self, full: bool = False) -> str:
        """The board as a markdown table (for a report or a forum post)."""
        df = self.board(full)
        cols = list(df.columns)
        esc = lambda v: fmt(v).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in df.itertuples(index=False)]
        return "\n".join(lines)

    # ------------------------------------------------------------------ config strings
    def config_string(self, run: Run | int) -> str:
        """A short string that ``load`` turns back into exactly this run's settings.

        Like TensorFlow Playground's URL state: the ``TrainConfig`` fields that
        differ from the panel's starting config, plus extras and ``fresh``.
        """
        run = self._run(run)
        base = self.base_cfg.to_dict()
        diff = {k: v for k, v in run.cfg.to_dict().items() if v != base.get(k)}
        payload = {**diff, **{k: run.settings[k] for k in self.extra_specs if k in run.settings}}
        if not run.settings.get("fresh", True):
            payload["fresh"] = False
        return CONFIG_PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)

    def parse_config(self, text: str) -> dict[str, Any]:
        """Settings from a ``config_string`` (``ConfigError`` says what is wrong with a bad one)."""
        text = text.strip()
        if not text.startswith(CONFIG_PREFIX):
            raise ConfigError(f"a run's config string starts with {CONFIG_PREFIX!r}; copy it from the board "
                              "(panel.config_string(run)), got " + repr(text[:40]))
        try:
            payload = json.loads(text[len(CONFIG_PREFIX):])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the config string is not valid ({exc}); copy it again from the board") from None
        if not isinstance(payload, dict):
            raise ConfigError("the config string must hold settings by name; copy it again from the board")
        known = set(TrainConfig.field_names()) | set(self.extra_specs) | {"fresh"}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ConfigError(f"the config string names unknown settings {unknown}: it was made for another panel")
        return payload

    def load(self, text: str) -> "RunManager":
        """Set every control (and override) to a run's config string, so the next run repeats it."""
        payload = self.parse_config(text)
        base = self.base_cfg.to_dict()
        cfg = {**base, **{k: v for k, v in payload.items() if k in base}}
        if cfg.get("frozen") is not None:
            cfg["frozen"] = tuple(cfg["frozen"])
        settings = {k: cfg[k] for k in CONTROLLED if k in cfg}
        if settings.get("seed") is None:
            settings["seed"] = 0
        if settings.get("frozen") is None:
            settings["frozen"] = tuple(g.name for g in self.groups if g.frozen)
        settings["fresh"] = payload.get("fresh", True)
        settings.update({k: payload.get(k, e.default) for k, e in self.extra_specs.items()})
        settings = {k: self._check(k, v) for k, v in settings.items()}
        overrides = {k: v for k, v in payload.items()
                     if k in base and k not in CONTROLLED}
        for k, v in overrides.items():
            self._check(k, v)
        with self._lock:
            self.overrides = overrides
            self.set(**settings)
        return self

    def _run(self, run: Run | int) -> Run:
        if isinstance(run, Run):
            return run
        for r in self.runs:
            if r.number == run:
                return r
        raise KeyError(f"no run {run!r} on the board; runs: {[r.number for r in self.runs]}")


def _register(key: str, manager: RunManager) -> None:
    """Remember ``manager`` under ``key``; an older manager with that key stops its runs."""
    old_ref = _MANAGERS.get(key)
    old = old_ref() if old_ref is not None else None
    _MANAGERS[key] = weakref.ref(manager)
    if old is not None and old is not manager:
        old.shutdown("this panel was replaced by a new one (the cell ran again)")


__all__ = ["RunManager", "Run", "Listener", "Extra", "parse_extra", "accepted_kwargs", "loader_batch_size",
           "diagnose", "hook_sigint", "CONTROLLED", "CONFIG_PREFIX"]
