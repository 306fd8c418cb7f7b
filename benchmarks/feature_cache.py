"""Cached features vs recomputing the frozen body, and CNN fine-tuning throughput (images/s, MFU).

    .venv/bin/python benchmarks/feature_cache.py                      # CPU or GPU, defaults below
    .venv/bin/python benchmarks/feature_cache.py --n 500 --size 64 --epochs 3
    .venv/bin/python benchmarks/feature_cache.py --skip-cache --gpu-size 224 --compile   # GPU only part

Part 1, in one run, on the same Fashion-MNIST images and the same linear head (what chapter 3
does): time per epoch of training the head

* ``cached``: on features extracted once (``tlkit.vision.extract_features``), and
* ``recompute``: running the frozen MobileNetV2 body on every batch of every epoch,

and their ratio (target >= 10x). The one-off extraction time is printed too.

Part 2: images/s of a full fine-tuning step (forward, backward, AdamW) for MobileNetV2 and
ResNet-50: on CPU in fp32 (channels_last), and on CUDA with bf16 autocast (fp16 where bf16 is
missing) + channels_last, with model-FLOPs utilisation MFU = 3 x forward FLOPs x images/s /
device peak (training = forward + backward ~ 3 forward passes; forward FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode``, a multiply-add = 2 FLOPs). ResNet-50 is randomly
initialised when its ImageNet weights cannot be had offline: throughput does not depend on them.
Timings on a shared machine are pessimistic; the ratio is measured within one run.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from peaks import gpu_peak_tflops  # benchmarks/peaks.py, next to this script
from tlkit import data, train, vision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def head_epoch(head: torch.nn.Module, opt: torch.optim.Optimizer, batches) -> float:
    """One epoch of the linear head over ``batches`` of (inputs, labels); returns seconds."""
    t0 = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def bench_cache(n: int, size: int, epochs: int, batch_size: int) -> None:
    X, y = data.load_fashion_mnist("train")
    idx = data.budget_indices(y, max(1, n // 10), seed=0)
    X, y = X[idx], torch.as_tensor(y[idx])
    model = vision.build("mobilenet_v2")
    pre = vision.Preprocess(size=size)
    print(f"== feature cache: {len(y)} Fashion-MNIST images at {size} px, batch {batch_size}, "
          f"{torch.get_num_threads()} CPU threads")
    t0 = time.perf_counter()
    feats = vision.embed(model, X, pre, batch_size=batch_size)        # what extract_features caches
    extract_s = time.perf_counter() - t0
    print(f"extract once: {extract_s:.2f} s ({len(y) / extract_s:.0f} images/s)")

    torch.manual_seed(0)
    head = vision.linear_head(feats, 10)
    opt = torch.optim.AdamW(head.parameters(), 1e-3)
    order = torch.randperm(len(y))
    cached_batches = [(feats[order[i:i + batch_size]], y[order[i:i + batch_size]])
                      for i in range(0, len(y), batch_size)]
    cached = [head_epoch(head, opt, cached_batches) for _ in range(max(epochs, 20))]
    cached_s = float(np.median(cached))

    body = vision.Body(model).eval()

    def recompute_batches():
        for i in range(0, len(y), batch_size):
            j = order[i:i + batch_size]
            with torch.inference_mode():           # the frozen body, run again every epoch
                f = body(pre(X[j.numpy()]))
            yield f.clone(), y[j]

    recompute = [head_epoch(head, opt, recompute_batches()) for _ in range(epochs)]
    recompute_s = float(np.median(recompute))
    print(f"head epoch on cached features: {cached_s * 1e3:.2f} ms; recomputing the body: {recompute_s:.2f} s")
    e = len(cached)
    print(f"speed-up per epoch: {recompute_s / cached_s:,.0f}x (target >= 10x); for {e} epochs including "
          f"the one-off extraction: {recompute_s * e / (extract_s + cached_s * e):.1f}x")


def train_throughput(name: str, device: torch.device, size: int, batch_size: int, steps: int,
                     compile_model: bool = False) -> tuple[float, float, str]:
    """Images/s of full fine-tuning steps on random images; returns (images/s, forward FLOPs per image, precision)."""
    try:
        model = vision.build(name, pretrained=True)
        weights = "ImageNet"
    except Exception:  # noqa: BLE001 - offline without the weights: throughput does not depend on them
        model = vision.build(name, pretrained=False)
        weights = "random init (weights unavailable offline)"
    model = model.to(device).train()
    precision = train.pick_precision(device, "auto")
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch_size,), device=device)
    flops = vision.forward_flops(model, x[:1]) if device.type == "cpu" else vision.forward_flops(model, x[:1].float())
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def step():
        with train.autocast(device, precision):
            loss = F.cross_entropy(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(3 if not compile_model else 5):   # warm-up: cuDNN/oneDNN autotuning, compilation
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    ips = steps * batch_size / (time.perf_counter() - t0)
    print(f"{name:>13} ({weights}), {size} px, batch {batch_size}, {precision}, channels_last"
          f"{', torch.compile' if compile_model else ''}: {ips:,.0f} images/s "
          f"({flops / 1e9:.2f} GFLOPs forward per image)")
    return ips, flops, precision


def gpu_peak() -> tuple[float | None, str]:
    name = torch.cuda.get_device_name()
    peak = gpu_peak_tflops(name, "bf16")
    return (peak * 1e12 if peak is not None else None), name


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="images for the cache comparison")
    ap.add_argument("--size", type=int, default=64, help="image side (px) for the cache comparison and CPU runs")
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed when recomputing the body")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cpu-steps", type=int, default=3)
    ap.add_argument("--gpu-size", type=int, default=224)
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--gpu-batch", default="256", help="GPU batch size(s), comma-separated")
    ap.add_argument("--gpu-models", default="mobilenet_v2,resnet50", help="models timed on the GPU, comma-separated")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models on CUDA")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the GPU peak (bf16 dense)")
    ap.add_argument("--skip-cache", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true")
    args = ap.parse_args(argv)

    if not args.skip_cache:
        bench_cache(args.n, args.size, args.epochs, args.batch_size)
    if not args.skip_cpu:
        print(f"== fine-tuning throughput on CPU ({torch.get_num_threads()} threads, fp32)")
        cpu = torch.device("cpu")
        train_throughput("mobilenet_v2", cpu, args.size, 32, args.cpu_steps)
        train_throughput("resnet50", cpu, args.size, 16, args.cpu_steps)
    if torch.cuda.is_available():
        peak, name = gpu_peak()
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak
        print(f"== fine-tuning throughput on {name} (peak {peak / 1e12 if peak else float('nan'):.0f} TFLOPS bf16 dense)")
        torch.backends.cudnn.benchmark = True
        runs = [(m, int(b), c) for m in args.gpu_models.split(",") for b in args.gpu_batch.split(",")
                for c in ((False, True) if args.compile else (False,))]
        for name_, bs, comp in runs:
            ips, flops, _ = train_throughput(name_, torch.device("cuda"), args.gpu_size, bs, args.gpu_steps, comp)
            if peak:
                print(f"   MFU = 3 x {flops / 1e9:.2f} GFLOPs x {ips:,.0f} img/s / {peak / 1e12:.0f} TFLOPS "
                      f"= {3 * flops * ips / peak:.1%}", flush=True)
    else:
        print("(no CUDA GPU: the AMP + channels_last + MFU part runs only on a GPU)")


if __name__ == "__main__":
    main()
