"""tlkit.memory: chapters call release_memory() after a big section so the next one starts small."""
import pytest
import torch

from tlkit import memory


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_tame_malloc_reports_whether_it_applied():
    applied = memory.tame_malloc()
    assert applied == (memory._glibc() is not None)
    assert memory.release_memory() >= 0


@pytest.mark.skipif(memory._glibc() is None, reason="malloc_trim is glibc's")
def test_release_memory_gives_a_fragmented_heap_back_to_the_os():
    # ~400 MB of 80 KB tensors (below glibc's mmap threshold, so on the heap); keeping every
    # tenth one alive leaves holes that free() alone never returns: what a training loop leaves.
    xs = [torch.ones(20_000) for _ in range(5_000)]
    keep = xs[::10]
    del xs
    before = _rss_mb()
    memory.release_memory()
    after = _rss_mb()
    assert before - after > 100, f"resident size {before:.0f} MB -> {after:.0f} MB after release_memory()"
    assert len(keep) == 500
