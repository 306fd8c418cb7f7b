"""The GPU peak table that turns benchmark throughput into MFU (benchmarks/peaks.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from peaks import gpu_peak_tflops  # noqa: E402


def test_the_specific_gpu_name_wins_and_precision_picks_the_column():
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert gpu_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0      # not the SXM figure
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3", "fp32") == 67.0
    assert gpu_peak_tflops("NVIDIA L40S", "fp16") == 362.0            # not "L4"
    assert gpu_peak_tflops("Some Future GPU", "bf16") is None
