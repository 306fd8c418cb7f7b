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


def test_check_keeps_triton_out_of_a_cpu_kernel_and_bert_still_loads():
    # transformers imports torch._dynamo with a BERT model class, which imports triton if installed (~76 MB)
    import subprocess
    import sys

    code = ("import sys, tlkit; tlkit.check(); import torch; from transformers import BertModel, BertConfig; "
            "m = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)); "
            "import torch._dynamo; print(torch.cuda.is_available(), sys.modules.get('triton') is None, "
            "m(torch.ones(1, 4, dtype=torch.long)).last_hidden_state.shape[-1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    cuda, no_triton, width = out[-3:]
    assert width == "32"
    assert no_triton == ("True" if cuda == "False" else no_triton)


def test_skip_gpu_compilers_is_a_no_op_once_triton_is_loaded(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "triton", object())
    assert memory.skip_gpu_compilers() is False
