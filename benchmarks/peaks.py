"""Dense peak FLOPS of GPUs, for the MFU that the benchmarks report (one table for all of them)."""
from __future__ import annotations

# (substring of torch.cuda.get_device_name(), bf16/fp16 tensor-core TFLOPS, fp32 TFLOPS without TF32),
# dense, from vendor datasheets. More specific names first: "H100 PCIe" before "H100".
GPU_PEAK_TFLOPS = [
    ("H200", 989.0, 67.0), ("H100 PCIe", 756.0, 51.0), ("H100", 989.0, 67.0), ("A100", 312.0, 19.5),
    ("L40S", 362.0, 91.6), ("L4", 121.0, 30.3), ("A10", 125.0, 31.2), ("V100", 125.0, 15.7),
    ("T4", 65.0, 8.1),
]


def gpu_peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak TFLOPS of ``device_name`` at ``precision`` ("bf16"/"fp16" or "fp32"); None if unknown."""
    for key, half, single in GPU_PEAK_TFLOPS:
        if key in device_name:
            return half if precision in ("bf16", "fp16") else single
    return None
