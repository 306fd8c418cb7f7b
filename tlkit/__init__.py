"""tlkit: a Jupyter-native kit for teaching and exploring transfer learning.

Import the modules you need explicitly (``from tlkit import surgery, train``).
This package imports neither ipywidgets nor transformers nor matplotlib.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"

PRESETS = ("auto", "smoke", "cpu", "gpu")


def smoke_mode() -> bool:
    """True when ``TLKIT_SMOKE`` is set to 1/true/yes: chapters shrink data and epochs
    (same code path, same real models) so a whole chapter runs in well under a minute."""
    return os.environ.get("TLKIT_SMOKE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_preset(preset: str = "auto", smoke: bool | None = None, cuda: bool | None = None) -> str:
    """Turn a notebook's ``PRESET`` into ``"smoke"``, ``"cpu"`` or ``"gpu"``.

    ``"auto"`` follows ``TLKIT_PRESET`` when that is set (``tlkit run --preset cpu`` sets it,
    e.g. for a quick demo on a GPU with the CPU sizes), else picks ``"gpu"`` when CUDA is
    available (``cuda``; default: ask torch) and ``"cpu"`` otherwise; smoke mode (argument or
    ``TLKIT_SMOKE``) wins over everything.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown PRESET {preset!r}; choose one of {', '.join(PRESETS)}")
    if smoke if smoke is not None else smoke_mode():
        return "smoke"
    if preset == "auto":
        preset = os.environ.get("TLKIT_PRESET", "").strip().lower() or "auto"
        if preset not in PRESETS:
            raise ValueError(f"unknown TLKIT_PRESET {preset!r}; choose one of {', '.join(PRESETS)} or unset it")
    if preset != "auto":
        return preset
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "gpu" if cuda else "cpu"


def check() -> str:
    """Print and return one line on what will happen here: GPU or CPU preset, offline
    assets present or what to install, widget support, platform (the short ``tlkit env``),
    and PyTorch's CPU threads, which it first sets from the CPU limit this process really has
    (cgroup quota, affinity mask; see :mod:`tlkit.resources`) unless the user chose a count.
    On a machine without CUDA it also keeps the Triton GPU compiler out of the kernel
    (:func:`tlkit.memory.skip_gpu_compilers`, ~76 MB less per kernel)."""
    from .cli import summary_line
    from .memory import skip_gpu_compilers
    from .resources import apply_cpu_limit

    skip_gpu_compilers()
    threads = apply_cpu_limit()
    line = f"{summary_line()}; {threads}"
    print(line)
    return line


__all__ = ["check", "__version__", "smoke_mode", "resolve_preset", "PRESETS"]
