"""Memory on small machines (Binder restarts a kernel at 2 GB): make glibc hand freed tensor
memory back to the OS, and trim the heap after a big section of a chapter.

Both do nothing (and say so by their return values) off Linux/glibc.
"""
from __future__ import annotations

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc mallopt parameter numbers


def _glibc():
    """``ctypes`` handle on glibc, or None (macOS, Windows, musl): the memory helpers then do nothing."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tame_malloc(mmap_threshold: int = 256 * 1024, arenas: int = 2) -> bool:
    """Make glibc give freed tensor memory back to the OS; True if applied (Linux/glibc only).

    By default glibc raises its mmap threshold (up to 32 MB) after big blocks are freed, so
    later tensors land on the heap, which fragments and never shrinks: a fine-tuning run
    left ~270 MB of such garbage resident (measured on MiniLM, 100 labels per class). A fixed
    threshold sends every block above ``mmap_threshold`` to its own mapping that is
    unmapped on free, and ``arenas`` caps the per-thread heaps. Costs a few % CPU time.
    Process-wide: call it once, early (the chapter's first code cell)."""
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, int(mmap_threshold)) == 1
    ok &= libc.mallopt(_M_ARENA_MAX, int(arenas)) == 1
    return bool(ok)


def release_memory() -> int:
    """Collect garbage and hand free heap pages back to the OS (``malloc_trim(0)`` on glibc).

    Call it after ``del`` of a model, optimizer or big arrays, so the next section starts
    from a low resident size (Binder restarts kernels at 2 GB). Returns the number of
    objects ``gc`` collected."""
    import gc

    n = gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    return n


def skip_gpu_compilers() -> bool:
    """On a machine without a CUDA GPU, keep Triton (a GPU kernel compiler) out of the process; True if applied.

    transformers 5 imports ``torch._dynamo`` as soon as a BERT model class loads (its
    ``masking_utils``), and ``torch._dynamo`` imports ``triton`` whenever that package is installed,
    which the CUDA wheel of PyTorch always brings: ~76 MB resident in every chapter-2 kernel for
    nothing on a CPU (measured: torch 2.14.1+cu130, transformers 5.24; 597 -> 748 MB for
    ``import torch._dynamo``, 672 MB with Triton kept out). ``torch.compile`` on a CPU does not use
    Triton (inductor writes C++ there), so nothing is lost. Must run before ``transformers`` or
    ``torch._dynamo`` is imported (``tlkit.check()`` in each chapter's first cell calls it);
    does nothing when CUDA is available or Triton is already imported."""
    import sys

    if "triton" in sys.modules:
        return False
    import torch

    if torch.cuda.is_available():
        return False
    # a None entry makes `import triton` raise ImportError: torch.utils._triton.has_triton_package() -> False
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True


__all__ = ["tame_malloc", "release_memory", "skip_gpu_compilers"]
