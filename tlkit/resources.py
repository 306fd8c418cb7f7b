"""CPU threads that match the CPU limit the process really has.

PyTorch starts one intra-op thread per core of the *node*. In a JupyterHub pod limited to 1-2
CPUs (Kubernetes sets a cgroup CPU quota), or a The Littlest JupyterHub user limited by systemd
(``CPUQuota=`` on the user's unit), a 64-core node gives every student 64 spinning threads that
the kernel then throttles: training gets several times slower, not faster. This module reads the
quota the process really has and sets ``torch.set_num_threads`` to it, unless the user chose:

- ``TLKIT_THREADS=N`` (ours, wins), ``OMP_NUM_THREADS`` (PyTorch reads it at import), or
- ``torch.set_num_threads`` called before (the count differs from what torch picked at import).

Where the limit comes from, smallest wins:

- cgroup v2: ``cpu.max`` (``"quota period"`` or ``"max period"``) of the process's own cgroup
  and of every ancestor up to the root (a limit set on a parent slice applies too);
- cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in the ``cpu`` controller's hierarchy;
- the affinity mask, ``os.sched_getaffinity(0)`` (``taskset``, ``docker --cpuset-cpus``).

A fractional quota is rounded up (1.5 CPUs -> 2 threads, as joblib's loky does). joblib's
``loky.cpu_count()`` does much the same but reads only the top-level ``/sys/fs/cgroup`` files (it
misses a systemd unit's quota, which is how The Littlest JupyterHub limits users) and cannot be
pointed at test files; hence these few functions, each taking a ``root`` for tests.

The chapters apply it in their first cell through ``tlkit.check()`` (which imports torch
anyway), not at ``import tlkit``: importing a package should not import torch or change process-wide
settings, and a script that imports ``tlkit.config`` alone must stay cheap.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuLimit:
    """What limits this process: ``cpus`` usable (a float for a fractional quota, None = no quota),
    ``affinity`` (cores in the mask) and where the quota came from."""

    quota: float | None
    affinity: int
    source: str

    @property
    def threads(self) -> int:
        """Threads that fit: the affinity mask, capped by the quota rounded up; at least 1."""
        n = self.affinity if self.quota is None else min(self.affinity, math.ceil(self.quota - 1e-9))
        return max(1, n)


def _cgroup_paths(root: Path) -> dict[str, str]:
    """{controller (``""`` for cgroup v2): path} from ``root/proc/self/cgroup``."""
    paths: dict[str, str] = {}
    try:
        lines = (root / "proc" / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and each parent directory up to ``base`` itself (deepest first)."""
    parts = [p for p in rel.strip("/").split("/") if p and p != ".."]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(root: Path, rel: str) -> tuple[float, str] | None:
    best = None
    for d in _ancestors(root / "sys" / "fs" / "cgroup", rel):
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and int(period) > 0:
            cpus = int(quota) / int(period)
            if best is None or cpus < best[0]:
                best = (cpus, f"cgroup v2 {d / 'cpu.max'}")
    return best


def _v1_quota(root: Path, rel: str) -> tuple[float, str] | None:
    best = None
    base = root / "sys" / "fs" / "cgroup"
    mounts = [base / name for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu")]
    for mount in (m for m in mounts if m.is_dir()):
        # in a container the hierarchy is usually mounted at the process's own cgroup: try both
        for d in {*_ancestors(mount, rel), mount}:
            try:
                quota = int((d / "cpu.cfs_quota_us").read_text())
                period = int((d / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota > 0 and period > 0 and (best is None or quota / period < best[0]):
                best = (quota / period, f"cgroup v1 {d / 'cpu.cfs_quota_us'}")
    return best


def cpu_limit(root: str | os.PathLike = "/", affinity: int | None = None) -> CpuLimit:
    """The CPU limit of this process, read from the cgroup files under ``root`` (tests pass a folder
    of fake ``proc/self/cgroup`` and ``sys/fs/cgroup/...`` files) and the affinity mask."""
    root = Path(root)
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    paths = _cgroup_paths(root)
    found = [q for q in (_v2_quota(root, paths[""]) if "" in paths else None,
                         _v1_quota(root, paths.get("cpu", "/"))) if q is not None]
    if not found:
        return CpuLimit(None, affinity, f"no CPU quota; {affinity} cores in the affinity mask")
    cpus, where = min(found)
    return CpuLimit(cpus, affinity, f"{cpus:g} CPUs from {where}; {affinity} cores in the affinity mask")


@dataclass(frozen=True)
class ThreadSetting:
    """What :func:`apply_cpu_limit` did: the thread count now, and why."""

    threads: int
    reason: str
    changed: bool

    def __str__(self) -> str:
        return f"{self.threads} CPU thread{'s' if self.threads != 1 else ''} ({self.reason})"


_APPLIED: int | None = None  # the count apply_cpu_limit set last in this process


def apply_cpu_limit(root: str | os.PathLike = "/", *, affinity: int | None = None) -> ThreadSetting:
    """Set PyTorch's intra-op threads to the CPU limit unless the user chose a count; say what was done.

    ``TLKIT_THREADS`` (a positive integer) is applied as given; a bad value raises ``ValueError``
    naming it. ``OMP_NUM_THREADS`` is respected. So is an earlier ``torch.set_num_threads`` call,
    recognised by a count that differs from torch's own default (one thread per core in the
    affinity mask) or from what this function set last."""
    import torch

    global _APPLIED
    now = torch.get_num_threads()
    env = os.environ.get("TLKIT_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TLKIT_THREADS={env!r}: expected a positive whole number of threads, e.g. "
                             "TLKIT_THREADS=2; unset it to follow the CPU limit")
        torch.set_num_threads(int(env))
        _APPLIED = int(env)
        return ThreadSetting(int(env), "TLKIT_THREADS", int(env) != now)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        return ThreadSetting(now, f"OMP_NUM_THREADS={omp}", False)
    limit = cpu_limit(root, affinity)
    if now != (limit.affinity if _APPLIED is None else _APPLIED):
        return ThreadSetting(now, "set by torch.set_num_threads", False)
    n = limit.threads
    if n != now:
        torch.set_num_threads(n)
    _APPLIED = n
    return ThreadSetting(n, limit.source, n != now)


__all__ = ["CpuLimit", "cpu_limit", "ThreadSetting", "apply_cpu_limit"]
