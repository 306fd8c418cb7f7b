"""Chapters record their headline numbers with one call; ``tlkit run`` gathers them.

    from tlkit import report
    report.record(method="dann", metric="target_acc", value=0.78, seeds=3, preset=P)

Outside ``tlkit run`` (no ``TLKIT_REPORT`` in the environment) a record is only
kept in memory for this kernel (``report.records()``), at negligible cost.

A chapter also declares its conclusions as ``Claims`` checked on this run's
numbers (rows ``method="claim"``, value 1.0 or 0.0), renders prose that quotes
measured values with ``say`` (Markdown built from the results), and records its
time and memory with ``record_resources`` (``wall_s``, ``cpu_s``, ``peak_rss_mb``).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

_RECORDS: list[dict[str, Any]] = []  # this kernel's records, newest last


def record(method: str, metric: str, value: float, *, seeds: int | None = None, preset: str | None = None,
           chapter: str | None = None, **extra: Any) -> dict[str, Any]:
    """Record one headline number (``value`` must be a finite number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"report.record needs a finite number as value, got {value!r} for {method}/{metric}")
    row = {"chapter": chapter or os.environ.get("TLKIT_CHAPTER", ""), "method": str(method),
           "metric": str(metric), "value": float(value), "seeds": seeds,
           "preset": preset or os.environ.get("TLKIT_PRESET", ""), "time": time.time(), **extra}
    _RECORDS.append(row)
    path = os.environ.get("TLKIT_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
    return row


def records() -> list[dict[str, Any]]:
    """Copies of this kernel's records."""
    return [dict(r) for r in _RECORDS]


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records written to a ``TLKIT_REPORT`` file (missing file: empty list)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------- claims
# A chapter's conclusions ("DANN beats source-only", "features beat scratch at 10
# images per class") are declared as checks on the numbers the run recorded, so the
# text can never drift from the outputs: a claim that does not hold on a run says so
# in the notebook's claims table and lands in results.json as value 0.0.

def _stats(values: float | Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), count) of a number or a list of seed values."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        vals = [float(values)]
    else:
        vals = [float(v) for v in values]
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"a claim needs one or more finite numbers, got {values!r}")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std, len(vals)


def pm(values: float | Sequence[float], digits: int = 3) -> str:
    """``"0.612 ± 0.021"`` for seed values (mean ± sample std), ``"0.612"`` for one value."""
    mean, std, n = _stats(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


@dataclass
class Claim:
    """One checked conclusion: its short ``name`` (the results.json metric), the sentence a
    student reads (``text``), whether it ``holds`` on this run, and the numbers that decided it."""

    name: str
    text: str
    holds: bool
    numbers: str
    rule: str


class Claims:
    """The claims of one chapter, checked against this run's numbers and recorded.

        claims = report.Claims(preset=P)
        claims.beats("dann_beats_adabn", "DANN beats the AdaBN control by more than the seed spread",
                     dann_seed_accs, adabn_seed_accs)
        claims.at_least("dann_reaches_085", "DANN reaches 0.85 on the target", dann_seed_accs, 0.85)
        claims.show()   # the table: holds / does NOT hold, with the numbers

    Every check records a row ``method="claim"``, ``metric=name``, ``value`` 1.0 or
    0.0 (with the sentence and numbers as extra fields), so ``tlkit run`` and CI see
    it. Margins belong to the claim, fixed before the run; when a claim does not
    hold, the lesson or the experiment changes, never the margin.
    """

    def __init__(self, *, preset: str | None = None, chapter: str | None = None):
        self.preset, self.chapter = preset, chapter
        self.items: list[Claim] = []

    def _add(self, name: str, text: str, holds: bool, numbers: str, rule: str) -> Claim:
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"a claim name is a short identifier like 'dann_beats_adabn', got {name!r}")
        if any(c.name == name for c in self.items):
            raise ValueError(f"claim {name!r} is declared twice; give each claim its own name")
        c = Claim(name, text, bool(holds), numbers, rule)
        self.items.append(c)
        record(method="claim", metric=name, value=1.0 if c.holds else 0.0, preset=self.preset,
               chapter=self.chapter, text=text, numbers=numbers, rule=rule)
        return c

    def beats(self, name: str, text: str, a: float | Sequence[float], b: float | Sequence[float], *,
              margin: float = 0.0, beyond_spread: bool = True) -> Claim:
        """Holds when ``mean(a) - mean(b) > margin`` plus, with ``beyond_spread``, the larger of
        the two seed spreads (sample std): a difference within the seed-to-seed noise is no win."""
        ma, sa, na = _stats(a)
        mb, sb, nb = _stats(b)
        need = margin + (max(sa, sb) if beyond_spread else 0.0)
        diff = ma - mb
        rule = f"difference > {need:.3f}" + (f" (margin {margin:g} + spread {max(sa, sb):.3f})" if beyond_spread
                                             else "")
        return self._add(name, text, diff > need, f"{pm(a)} vs {pm(b)}: difference {diff:+.3f}", rule)

    def at_least(self, name: str, text: str, a: float | Sequence[float], threshold: float) -> Claim:
        """Holds when ``mean(a) >= threshold``."""
        ma, _, _ = _stats(a)
        return self._add(name, text, ma >= threshold, pm(a), f"mean >= {threshold:g}")

    def at_most(self, name: str, text: str, a: float | Sequence[float], threshold: float) -> Claim:
        """Holds when ``mean(a) <= threshold``."""
        ma, _, _ = _stats(a)
        return self._add(name, text, ma <= threshold, pm(a), f"mean <= {threshold:g}")

    def close(self, name: str, text: str, a: float | Sequence[float], b: float | Sequence[float], *,
              tolerance: float) -> Claim:
        """Holds when ``|mean(a) - mean(b)| <= tolerance`` ("no real difference", "within 2 points")."""
        ma, _, _ = _stats(a)
        mb, _, _ = _stats(b)
        diff = ma - mb
        return self._add(name, text, abs(diff) <= tolerance, f"{pm(a)} vs {pm(b)}: difference {diff:+.3f}",
                         f"|difference| <= {tolerance:g}")

    def check(self, name: str, text: str, holds: bool, numbers: str, rule: str) -> Claim:
        """Any other claim: ``holds`` computed by the caller, ``numbers`` and ``rule`` saying from what."""
        return self._add(name, text, holds, numbers, rule)

    def table(self):
        """The claims as a pandas DataFrame (claim, on this run, numbers, rule)."""
        import pandas as pd

        return pd.DataFrame([{"claim": c.text, "on this run": "holds" if c.holds else "does NOT hold",
                              "numbers": c.numbers, "rule": c.rule, "name": c.name} for c in self.items])

    def markdown(self) -> str:
        """The claims table as Markdown (what ``show`` displays)."""
        lines = ["| claim | on this run | numbers | rule |", "|---|---|---|---|"]
        cell = lambda text: text.replace("|", "\\|")   # noqa: E731 -- a "|" in a cell would split it
        for c in self.items:
            lines.append(f"| {cell(c.text)} | {'✅ holds' if c.holds else '❌ does NOT hold'} | {cell(c.numbers)} "
                         f"| {cell(c.rule)} |")
        failed = [c.name for c in self.items if not c.holds]
        lines.append("")
        if self.preset == "smoke":
            lines.append("*Smoke mode trains for a few steps on tiny data: its claims test the code path, "
                         "they are not expected to hold.*")
            lines.append("")
        lines.append(f"**{len(self.items) - len(failed)} of {len(self.items)} claims hold on this run.**"
                     + (f" Not holding: {', '.join(failed)}: read the text above with that in mind." if failed else ""))
        return "\n".join(lines)

    def show(self):
        """Display the claims table in a notebook (returns an IPython ``Markdown`` object)."""
        return say(self.markdown())

    @property
    def all_hold(self) -> bool:
        return all(c.holds for c in self.items)


def say(text: str):
    """A Markdown summary rendered from this run's numbers (``IPython.display.Markdown``), so prose
    that quotes a measured value is produced by the run that measured it."""
    from IPython.display import Markdown

    return Markdown(text)


# --------------------------------------------------------------------------- time and memory
def _status_mb(*fields: str) -> dict[str, float]:
    """Fields of ``/proc/self/status`` (Linux) in MB, e.g. ``RssAnon``; empty elsewhere."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                name = line.split(":", 1)[0]
                if name in fields:
                    out[name] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: the kernel's ``VmHWM`` (Linux), else ``ru_maxrss``."""
    hwm = _status_mb("VmHWM")
    if hwm:
        return hwm["VmHWM"]
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024   # bytes on macOS, KiB on Linux


METER_INTERVAL_S = 0.05   # how often start_resources' meter samples the kernel's anonymous memory


class _AnonMeter:
    """Samples this process's anonymous resident memory (``RssAnon``: heap, tensors, arrays) every
    ``interval`` seconds in a daemon thread and keeps the largest value. ``VmHWM`` is exact but also
    counts the pages of mapped shared libraries, which vary with how the same wheels were installed
    (after the same imports, 267 vs 353 MB in two venvs of the same lock on one machine, with
    identical anonymous memory) and which the OS can drop under memory pressure; the anonymous part
    is what a memory limit cannot reclaim. A sampled peak can miss a spike shorter than ``interval``."""

    def __init__(self, interval: float = METER_INTERVAL_S) -> None:
        import threading

        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tlkit-anon-meter", daemon=True)
        self._thread.start()

    def sample(self) -> float:
        now = _status_mb("RssAnon").get("RssAnon", 0.0)
        self.peak = max(self.peak, now)
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


_METER: _AnonMeter | None = None


def start_resources() -> float:
    """Start measuring the chapter: returns ``time.perf_counter()`` (pass it to :func:`record_resources`)
    and, on Linux, starts sampling the kernel's anonymous memory for ``record_resources``'
    ``peak_anon_mb`` row (once per process; later calls keep the running meter)."""
    global _METER
    if _METER is None and _status_mb("RssAnon"):
        _METER = _AnonMeter()
        _METER.sample()
    return time.perf_counter()


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children (DataLoader workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def gpu_peak() -> tuple[str, float] | None:
    """``(GPU name, peak MB)`` this process took from its CUDA GPU through PyTorch's caching allocator
    (``max_memory_reserved``: what must fit the card), or None when the process never used CUDA. Never
    imports torch or initialises CUDA itself."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.get_device_name(), torch.cuda.max_memory_reserved() / 2**20


def record_resources(wall_start: float, *, preset: str | None = None) -> dict[str, float]:
    """Record the chapter's ``wall_s`` (since ``wall_start``, a ``time.perf_counter()`` value),
    ``cpu_s`` and ``peak_rss_mb`` rows (``method="chapter"``), ``peak_anon_mb`` when
    :func:`start_resources` started the memory meter, and ``peak_gpu_mb`` when the chapter ran on a
    CUDA GPU, and return them."""
    values = {"wall_s": time.perf_counter() - wall_start, "cpu_s": cpu_s(), "peak_rss_mb": peak_rss_mb()}
    if _METER is not None:   # started by start_resources()
        values["peak_anon_mb"] = _METER.sample()
    gpu = gpu_peak()
    if gpu is not None:
        values["peak_gpu_mb"] = gpu[1]
    for metric, value in values.items():
        record(method="chapter", metric=metric, value=value, preset=preset,
               **({"gpu": gpu[0]} if gpu is not None and metric == "peak_gpu_mb" else {}))
    return values


def resources_markdown(values: dict[str, float], preset: str) -> str:
    """One sentence on the chapter's measured time and memory, from ``record_resources``."""
    import platform

    from .resources import cpu_limit

    cores = cpu_limit().affinity                 # the cores this process may use, not the machine's
    gpu = gpu_peak() if "peak_gpu_mb" in values else None
    where = f"{platform.machine()} with {cores} CPU cores" + (f" and a {gpu[0]} GPU" if gpu else "")
    anon_text = (f" resident (shared-library pages included, which the OS can drop); the kernel's own data "
                 f"(anonymous memory, sampled every {_METER.interval if _METER else METER_INTERVAL_S:g} s) peaked at "
                 f"**{values['peak_anon_mb'] / 1024:.2f} GB**" if "peak_anon_mb" in values else "")
    gpu_text = f", peak GPU memory **{values['peak_gpu_mb'] / 1024:.2f} GB**" if "peak_gpu_mb" in values else ""
    return (f"This run (preset `{preset}`, {where}): "
            f"**{values['wall_s'] / 60:.1f} min** wall time, **{values['cpu_s'] / 60:.1f} CPU-minutes**, "
            f"peak memory **{values['peak_rss_mb'] / 1024:.2f} GB**{anon_text}{gpu_text}. Wall time depends on the "
            "machine's load; CPU-minutes divided by your cores is a better guide.")
