"""BERT fine-tuning throughput: tokens/s and model-FLOPs utilisation (MFU), fixed vs dynamic padding.

    .venv/bin/python benchmarks/bert_throughput.py                 # MiniLM + bert-base, CPU or GPU
    .venv/bin/python benchmarks/bert_throughput.py --models minilm-l6 --steps 20 --batch-size 32

For each model, the SAME randomly drawn review snippets are trained on twice (forward, backward,
AdamW step), in one run:

* ``fixed``:   every batch padded to ``--seq-len`` (128), batches in random order;
* ``dynamic``: each batch padded only to its longest snippet, snippets bucketed by length
  (``tlkit.text.text_loader``), truncated at ``--seq-len`` too.

MFU = 6 x non-embedding parameters x tokens / time / peak FLOPS of the device (the usual
"6N" estimate of a training step; attention's extra FLOPs are not counted). It is reported on
*useful* (non-pad) tokens and on *all* processed tokens: fixed padding can show a decent
all-token MFU while most of that work is padding. On CUDA the step runs under bf16 autocast
(fp16 where bf16 is missing); on CPU in fp32 with the word-embedding matrix frozen, as the
chapter does. bert-base-uncased needs internet or the Hugging Face cache; without it a
randomly initialised BertConfig of bert-base size is timed instead (throughput does not depend
on the weights) and the output says so.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import time

import numpy as np
import torch

from peaks import gpu_peak_tflops  # benchmarks/peaks.py, next to this script
from tlkit import data, text, train


def cpu_peak_flops(threads: int) -> tuple[float, str]:
    """fp32 peak of the CPU threads torch uses: threads x GHz x FLOPs/cycle (2 FMA units x vector width).

    An estimate (turbo clocks vary); pass ``--peak-tflops`` to use a known figure."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    mhz = [float(x) for x in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    ghz = (max(mhz) / 1000) if mhz else 2.5
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    model = (re.search(r"^model name\s*:\s*(.*)$", info, re.M) or [None, platform.processor()])[1]
    return threads * ghz * 1e9 * per_cycle, f"{model}: {threads} threads x {ghz:.2f} GHz x {per_cycle} fp32 FLOPs/cycle"


def gpu_peak_flops(precision: str) -> tuple[float, str]:
    name = torch.cuda.get_device_name()
    peak = gpu_peak_tflops(name, precision)
    if peak is None:
        raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops with its dense {precision} peak")
    return peak * 1e12, f"{name}: {peak:.0f} TFLOPS dense {precision}"


def build(name: str, device: torch.device) -> tuple[text.BertClassifier, str]:
    """The model to time, and a note saying whether its weights are pretrained or random."""
    try:
        return text.load_classifier(name, num_labels=2, seed=0), "pretrained weights"
    except Exception as exc:  # noqa: BLE001 - bert-base is online-only; fall back to its architecture
        if "bert-base" not in name:
            raise
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        hf = BertForSequenceClassification(BertConfig(num_labels=2))  # defaults == bert-base-uncased size
        return text.BertClassifier(hf, pooling="cls"), (
            f"RANDOM weights, bert-base size ({type(exc).__name__}: weights not available offline); "
            "throughput does not depend on the weights")


def non_embedding_params(model: text.BertClassifier) -> int:
    emb = {id(p) for p in model.encoder.embeddings.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def time_training(model, dl, device, precision: str, warmup: int) -> dict[str, float]:
    """Train over every batch of ``dl``; time all but the first ``warmup`` steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    model.to(device).train()
    ctx = train.StepContext(device=device, state=train.State(cfg=train.TrainConfig()), cfg=train.TrainConfig())
    useful = total = samples = steps = 0
    t0 = None
    for i, batch in enumerate(dl):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        batch = train.to_device(batch, device)
        with train.autocast(device, precision):
            loss = train.supervised_step(model, batch, ctx)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            useful += int(batch["attention_mask"].sum())
            total += batch["attention_mask"].numel()
            samples += len(batch["labels"])
            steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"steps": steps, "samples": samples, "useful_tokens": useful, "all_tokens": total, "seconds": elapsed}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="minilm-l6,bert-base-uncased")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 16 on CPU, 64 on GPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per mode (default: 8 CPU, 40 GPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 CPU, 5 GPU)")
    ap.add_argument("--domain", default="movies", help="review snippets whose real lengths are used")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak")
    args = ap.parse_args(argv)

    device = train.pick_device(args.device)
    precision = train.pick_precision(device, "auto")
    gpu = device.type == "cuda"
    bs = args.batch_size or (64 if gpu else 16)
    steps, warmup = args.steps or (40 if gpu else 8), args.warmup if args.warmup is not None else (5 if gpu else 1)
    if args.peak_tflops:
        peak, peak_note = args.peak_tflops * 1e12, f"--peak-tflops {args.peak_tflops}"
    elif gpu:
        peak, peak_note = gpu_peak_flops(precision)
    else:
        peak, peak_note = cpu_peak_flops(torch.get_num_threads())
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    print(f"device {device} ({precision}), peak {peak / 1e12:.2f} TFLOPS [{peak_note}]")
    print(f"seq len {args.seq_len}, batch {bs}, {steps} timed steps (+{warmup} warm-up) per mode; "
          f"texts: {args.domain} snippets")

    tok = text.load_tokenizer("minilm-l6")  # bert-base-uncased uses the same uncased WordPiece vocabulary
    df = data.load_sentiment(args.domain)
    n = bs * (steps + warmup)
    pick = np.random.default_rng(0).choice(len(df), size=min(n, len(df)), replace=False)
    ds = text.TokenDataset.from_texts(tok, df["text"].iloc[pick], df["label"].iloc[pick], args.seq_len)
    lengths = ds.lengths
    print(f"snippet lengths (tokens): median {np.median(lengths):.0f}, mean {lengths.mean():.1f}, "
          f"max {lengths.max()} (truncated at {args.seq_len})")
    mult = 8 if gpu else 1
    loaders = {
        "fixed": lambda: text.text_loader(ds, bs, shuffle=True, seed=0, bucket=False, pad_to=args.seq_len),
        # one bucket over all drawn snippets: the same snippets as "fixed", only grouped by length
        "dynamic": lambda: torch.utils.data.DataLoader(
            ds, batch_sampler=text.BucketSampler(ds.lengths, bs, shuffle=True, seed=0, bucket_batches=10**6),
            collate_fn=text.PadCollate(multiple=mult)),
    }
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, note = build(name, device)
        if not gpu:  # the chapter's CPU habit: AdamW over the 30522 x H matrix is slow and not needed
            model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        n_params = non_embedding_params(model)
        print(f"\n{name}: {note}; {n_params / 1e6:.1f}M non-embedding parameters")
        speed = {}
        for mode, make in loaders.items():
            r = time_training(model, make(), device, precision, warmup)
            flops = 6 * n_params
            row = {"model": name, "padding": mode, "samples/s": r["samples"] / r["seconds"],
                   "useful tok/s": r["useful_tokens"] / r["seconds"], "all tok/s": r["all_tokens"] / r["seconds"],
                   "useful frac": r["useful_tokens"] / r["all_tokens"],
                   "MFU useful %": 100 * flops * r["useful_tokens"] / r["seconds"] / peak,
                   "MFU all %": 100 * flops * r["all_tokens"] / r["seconds"] / peak,
                   "ms/step": 1000 * r["seconds"] / r["steps"]}
            rows.append(row)
            speed[mode] = row["samples/s"]
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                                   if k not in ("model",)))
        print(f"  => dynamic / fixed padding speed (samples/s, same snippets, this run): "
              f"{speed['dynamic'] / speed['fixed']:.2f}x")
        del model
        if gpu:
            torch.cuda.empty_cache()

    import pandas as pd

    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for name, part in table.groupby("model", sort=False):
        s = part.set_index("padding")["samples/s"]
        print(f"{name}: dynamic/fixed = {s['dynamic'] / s['fixed']:.2f}x "
              f"(target on CPU >= 2x); MFU on useful tokens: dynamic "
              f"{part.set_index('padding').loc['dynamic', 'MFU useful %']:.1f}%, fixed "
              f"{part.set_index('padding').loc['fixed', 'MFU useful %']:.1f}%")


if __name__ == "__main__":
    main()
