"""BERT fine-tuning throughput: tokens/s and model-FLOPs utilisation (MFU), fixed vs dynamic padding.

    .venv/bin/python benchmarks/bert_throughput.py                 # MiniLM + bert-base, CPU or GPU
    .venv/bin/python benchmarks/bert_throughput.py --models minilm-l6 --steps 20 --batch-size 32
    python benchmarks/bert_throughput.py --batch-size 64,256,1024 --compile   # GPU: batch sweep, torch.compile too
    python benchmarks/bert_throughput.py --models bert-base-uncased --batch-size 2048 --padding dynamic \
        --sdpa default,efficient --compile                                   # GPU: the best configuration seen

For each model, the SAME randomly drawn review snippets are trained on twice (forward, backward,
AdamW step), in one run:

* ``fixed``:   every batch padded to ``--seq-len`` (128), batches in random order;
* ``dynamic``: each batch padded only to its longest snippet, snippets bucketed by length
  (``tlkit.text.BucketSampler`` + ``PadCollate``), truncated at ``--seq-len`` too.

MFU = 6 x non-embedding parameters x tokens / time / peak FLOPS of the device (the usual
"6N" estimate of a training step; attention's extra FLOPs are not counted). It is reported on
*useful* (non-pad) tokens and on *all* processed tokens: fixed padding can show a decent
all-token MFU while most of that work is padding. On CUDA the step runs under bf16 autocast
(fp16 where bf16 is missing); on CPU in fp32 with the word-embedding matrix frozen, as the
chapter does. bert-base-uncased needs internet or the Hugging Face cache; without it a
randomly initialised BertConfig of bert-base size is timed instead (throughput does not depend
on the weights) and the output says so; the same holds for all-MiniLM-L6-v2 when its pip pack
is missing.

On CUDA the optimizer is the fused AdamW that ``tlkit.train`` uses there, batches are collated
into pinned memory, and the step never waits for the GPU (tokens are counted on the CPU copy),
so collating the next batch overlaps the current step. ``--compile`` adds rows for the same
model under ``torch.compile(dynamic=True)`` (one graph for every padded length), at the largest
batch size only. ``--sdpa efficient,cudnn`` times the same step with attention restricted to one
kernel family each, and ``--profile`` prints which operators take the device's time.

Measured on an H100 (80 GB HBM3, torch 2.11, bf16, movie snippets of median 26 tokens, batch
2048, dynamic padding): bert-base 28.5% useful-token MFU (32.5% on all tokens) compiled with the
memory-efficient attention kernel, 25.4% compiled with PyTorch's default (cuDNN) attention,
19.6% eager. At these short lengths cuDNN's attention took ~21% of the GPU time in the eager
profile; see the README's benchmark notes.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
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


# BertConfig arguments of the models timed here, for when their weights cannot be had offline
SIZES = {"bert-base": dict(), "minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                               intermediate_size=1536)}


def build(name: str, device: torch.device) -> tuple[text.BertClassifier, str]:
    """The model to time, and a note saying whether its weights are pretrained or random."""
    try:
        return text.load_classifier(name, num_labels=2, seed=0), "pretrained weights"
    except Exception as exc:  # noqa: BLE001 - bert-base is online-only; fall back to its architecture
        size = next((kw for key, kw in SIZES.items() if key in name), None)
        if size is None:
            raise
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        hf = BertForSequenceClassification(BertConfig(num_labels=2, **size))  # defaults == bert-base size
        return text.BertClassifier(hf, pooling="cls" if "bert-base" in name else "mean"), (
            f"RANDOM weights, {name} size ({type(exc).__name__}: weights not available offline); "
            "throughput does not depend on the weights")


def non_embedding_params(model: text.BertClassifier) -> int:
    emb = {id(p) for p in model.encoder.embeddings.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def trainer(step_model, model, device, precision: str):
    """A function that runs one training step (forward, backward, AdamW) of ``step_model`` on a
    batch; the optimizer holds ``model``'s trainable parameters (fused on CUDA, as tlkit's is)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                            fused=device.type == "cuda" or None)
    ctx = train.StepContext(device=device, state=train.State(cfg=train.TrainConfig()), cfg=train.TrainConfig())
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None  # T4-class GPUs, as fit() does

    def step(batch) -> None:
        batch = train.to_device(batch, device)
        with train.autocast(device, precision):
            loss = train.supervised_step(step_model, batch, ctx)["loss"]
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad(set_to_none=True)

    return step


def time_training(model, dl, device, precision: str, warmup: int, compile_model: bool = False) -> dict[str, float]:
    """Train over every batch of ``dl``; time all but the first ``warmup`` steps."""
    model.to(device).train()
    step = trainer(torch.compile(model, dynamic=True) if compile_model else model, model, device, precision)
    useful = total = samples = steps = 0
    t0 = None
    for i, batch in enumerate(dl):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        if i >= warmup:  # counted on the CPU copy: no wait for the GPU inside the timed loop
            useful += int(batch["attention_mask"].sum())
            total += batch["attention_mask"].numel()
            samples += len(batch["labels"])
            steps += 1
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"steps": steps, "samples": samples, "useful_tokens": useful, "all_tokens": total, "seconds": elapsed}


def sdpa_backend(name: str):
    """Restrict scaled_dot_product_attention to one kernel family (``default``: PyTorch's choice)."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kinds = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    if name not in kinds:
        raise SystemExit(f"unknown --sdpa {name!r}; choose from default, {', '.join(kinds)}")
    return sdpa_kernel([kinds[name]])


def profile_steps(model, dl, device, precision: str, steps: int = 6, warmup: int = 3) -> None:
    """Print the operators that take the most device (or CPU) time over ``steps`` training steps."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    batches = list(itertools.islice(itertools.cycle(dl), warmup + steps))
    step = trainer(model, model, device, precision)
    for b in batches[:warmup]:
        step(b)
    with profile(activities=acts) as prof:
        for b in batches[warmup:]:
            step(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\nprofile of {len(batches) - warmup} steps (eager, dynamic padding), by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="minilm-l6,bert-base-uncased")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", default=None,
                    help="one or more, comma-separated (default: 16 on CPU, 64,256,1024 on GPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per mode (default: 8 CPU, 40 GPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 CPU, 5 GPU)")
    ap.add_argument("--domain", default="movies", help="review snippets whose real lengths are used")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile'd models (at the largest batch size: compiling takes minutes)")
    ap.add_argument("--padding", default="fixed,dynamic",
                    help="modes to time (fixed pads every batch to --seq-len: keep batch x seq-len within GPU memory)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak")
    ap.add_argument("--sdpa", default="default",
                    help="attention kernels to time, comma-separated: default (PyTorch's choice), cudnn, "
                         "flash, efficient, math")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, profile a few steps of the last model at the largest batch (dynamic "
                         "padding, eager) and print where the time goes, by operator")
    args = ap.parse_args(argv)

    device = train.pick_device(args.device)
    precision = train.pick_precision(device, "auto")
    gpu = device.type == "cuda"
    sizes = [int(b) for b in (args.batch_size or ("64,256,1024" if gpu else "16")).split(",")]
    steps, warmup = args.steps or (40 if gpu else 8), args.warmup if args.warmup is not None else (5 if gpu else 1)
    if args.compile:
        warmup = max(warmup, 8)  # compilation (and one recompile as shapes vary) stays out of the timing
    if args.peak_tflops:
        peak, peak_note = args.peak_tflops * 1e12, f"--peak-tflops {args.peak_tflops}"
    elif gpu:
        peak, peak_note = gpu_peak_flops(precision)
    else:
        peak, peak_note = cpu_peak_flops(torch.get_num_threads())
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    print(f"device {device} ({precision}), peak {peak / 1e12:.2f} TFLOPS [{peak_note}]")
    print(f"seq len {args.seq_len}, batch {sizes}, {steps} timed steps (+{warmup} warm-up) per mode; "
          f"texts: {args.domain} snippets; torch {torch.__version__}")

    tok = text.load_tokenizer("minilm-l6")  # bert-base-uncased uses the same uncased WordPiece vocabulary
    df = data.load_sentiment(args.domain)
    mult = 8 if gpu else 1
    paddings = [m.strip() for m in args.padding.split(",")]
    attns = [a.strip() for a in args.sdpa.split(",")]
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, note = build(name, device)
        if not gpu:  # the chapter's CPU habit: AdamW over the 30522 x H matrix is slow and not needed
            model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
        n_params = non_embedding_params(model)
        print(f"\n{name}: {note}; {n_params / 1e6:.1f}M non-embedding parameters")
        for bs in sizes:
            n = bs * (steps + warmup)  # more than the domain has: drawn with replacement
            pick = np.random.default_rng(0).choice(len(df), size=n, replace=n > len(df))
            ds = text.TokenDataset.from_texts(tok, df["text"].iloc[pick], df["label"].iloc[pick], args.seq_len)
            lengths = ds.lengths
            print(f"  batch {bs}: snippet lengths (tokens) median {np.median(lengths):.0f}, mean "
                  f"{lengths.mean():.1f}, max {lengths.max()} (truncated at {args.seq_len})")
            loaders = {
                "fixed": lambda: torch.utils.data.DataLoader(
                    ds, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(0), pin_memory=gpu,
                    collate_fn=text.PadCollate(pad_to=args.seq_len)),
                # one bucket over all drawn snippets: the same snippets as "fixed", only grouped by length
                "dynamic": lambda: torch.utils.data.DataLoader(
                    ds, batch_sampler=text.BucketSampler(ds.lengths, bs, shuffle=True, seed=0, bucket_batches=10**6),
                    collate_fn=text.PadCollate(multiple=mult), pin_memory=gpu),
            }
            speed = {}
            compiled = (False, True) if args.compile and bs == max(sizes) else (False,)
            for comp, mode, attn in itertools.product(compiled, paddings, attns):
                with sdpa_backend(attn):
                    r = time_training(model, loaders[mode](), device, precision, warmup, comp)
                flops = 6 * n_params
                row = {"model": name, "batch": bs, "compiled": comp, "padding": mode, "sdpa": attn,
                       "samples/s": r["samples"] / r["seconds"],
                       "useful tok/s": r["useful_tokens"] / r["seconds"],
                       "all tok/s": r["all_tokens"] / r["seconds"],
                       "useful frac": r["useful_tokens"] / r["all_tokens"],
                       "MFU useful %": 100 * flops * r["useful_tokens"] / r["seconds"] / peak,
                       "MFU all %": 100 * flops * r["all_tokens"] / r["seconds"] / peak,
                       "ms/step": 1000 * r["seconds"] / r["steps"]}
                rows.append(row)
                speed[mode, comp, attn] = row["samples/s"]
                print("    " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in row.items() if k != "model"), flush=True)
                if mode == paddings[-1] and ("dynamic", comp, attn) in speed and ("fixed", comp, attn) in speed:
                    print(f"    => batch {bs}{' compiled' if comp else ''}: dynamic / fixed padding speed "
                          f"(samples/s, same snippets, this run): "
                          f"{speed['dynamic', comp, attn] / speed['fixed', comp, attn]:.2f}x")
        if args.profile:
            profile_steps(model, loaders["dynamic"](), device, precision)
        del model
        if gpu:
            torch.cuda.empty_cache()

    import pandas as pd

    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for name, part in table.groupby("model", sort=False):
        ratio = part.pivot_table(index=["batch", "compiled", "sdpa"], columns="padding", values="samples/s")
        ratio = (ratio["dynamic"] / ratio["fixed"]).dropna() if {"dynamic", "fixed"} <= set(ratio) else ratio.iloc[:0, 0]
        best = part.loc[part["MFU useful %"].idxmax()]
        ratios = ", ".join(f"{v:.2f}x" for v in ratio) or "not timed (needs --padding fixed,dynamic)"
        print(f"{name}: dynamic/fixed = {ratios} (target on CPU >= 2x); best useful-token MFU "
              f"{best['MFU useful %']:.1f}% ({best['padding']} padding, batch {best['batch']}, sdpa {best['sdpa']}"
              f"{', compiled' if best['compiled'] else ''}; all-token MFU {best['MFU all %']:.1f}%)")


if __name__ == "__main__":
    main()
