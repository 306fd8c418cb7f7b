"""Chapters record their headline numbers with one call; ``tlkit run`` gathers them.

    from tlkit import report
    report.record(method="dann", metric="target_acc", value=0.78, seeds=3, preset=P)

Outside ``tlkit run`` (no ``TLKIT_REPORT`` in the environment) a record is only
kept in memory for this kernel (``report.records()``), at negligible cost.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any

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
