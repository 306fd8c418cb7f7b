"""Size and latency of chapter 5's compressed variants, as ratios measured in one run.

    .venv/bin/python benchmarks/compression.py                    # 1 thread, batch 1 and 32, 30 rounds
    .venv/bin/python benchmarks/compression.py --threads 2 --repeats 50

Variants of MiniLM-L6 (the chapter's teacher architecture): the teacher in float32, shallow copies
(3 and 2 of 6 layers, ``compress.shallow_copy``), dynamic int8 (``compress.quantize_int8``, one scale
per weight row, and one per matrix for comparison; torchao's int8 path too when torchao is installed),
unstructured magnitude pruning at 50% and 90% (``compress.magnitude_prune``), structured pruning
(half the heads and half the feed-forward channels, ``compress.prune_heads``/``prune_ffn``), and
structured + int8. Size = serialized ``state_dict`` bytes; latency = ``compress.compare_latency``:
the variants timed head to head (one call each per round, 30 rounds after 2 warm-up calls, 1 thread,
medians) on the inputs chapter 5 times, its CPU preset's fixed batches (the first 1 and 32 snippets
of its 500-snippet movies test set, in order, at most 48 tokens, padded per batch). Chapter 5 computes
its speed-up claims with the same function, inputs and defaults, so the two agree up to the machine's
load. Size and latency do not depend on what the weights have learned, so the head is left untrained
here; accuracy targets are measured by the chapter (``tlkit run 05 --preset cpu``).

Targets (issue 18): shallow student with <= 50% of the encoder parameters and >= 2x lower latency
at batch 1 / 1 thread; int8 >= 3x smaller Linear weights and >= 1.5x faster at batch 32 / 1 thread;
unstructured pruning does not shrink the file; structured pruning does. Run it on an idle machine:
every latency on a loaded one is slower by an amount that changes during the run.
"""
from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tlkit import compress, data, text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds (compress.compare_latency's default)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per model first (compare_latency's default)")
    ap.add_argument("--max-len", type=int, default=48, help="tokens per snippet (chapter 5's CPU preset: 48)")
    ap.add_argument("--n-test", type=int, default=500, help="chapter 5's test-set size (CPU preset: 500)")
    ap.add_argument("--model", default="minilm-l6")
    args = ap.parse_args()

    t0 = time.perf_counter()
    tok = text.load_tokenizer(args.model)
    teacher = text.load_classifier(args.model, num_labels=2, seed=0).eval()
    # chapter 5's test set, built as its data cell builds it, and its fixed batches, as its measuring cell does
    split = data.split(data.load_sentiment("movies"), valid=0.1, test=0.2, seed=0)
    test = data.budget(split.test, args.n_test // 2, seed=0)
    ds = text.TokenDataset.from_texts(tok, test["text"], test["label"], args.max_len)
    dl = text.text_loader(ds, 32, bucket=False, pad_id=tok.pad_token_id or 0)   # snippets in their own order
    batches = {"b1": compress.fixed_batch(dl, 1), "b32": compress.fixed_batch(dl, 32)}

    models: dict[str, torch.nn.Module] = {}
    models["teacher fp32"] = teacher
    models["shallow 3/6"] = compress.shallow_copy(teacher, compress.every_other(6, 3))
    models["shallow 2/6"] = compress.shallow_copy(teacher, compress.every_other(6, 2))
    models["teacher int8"] = compress.quantize_int8(teacher)
    models["teacher int8, per matrix"] = compress.quantize_int8(teacher, per_channel=False)
    if compress.torchao_available():   # optional: the alternative the chapter measured against
        models["teacher int8 (torchao)"] = compress.quantize_int8(teacher, backend="torchao")
    models["shallow 3/6 int8"] = compress.quantize_int8(models["shallow 3/6"])
    for s in (0.5, 0.9):
        models[f"unstructured {s:.0%}"] = m = copy.deepcopy(teacher)
        compress.magnitude_prune(m, s)
    models["structured heads 6/12 + ffn 1/2"] = m = copy.deepcopy(teacher)
    compress.prune_heads(m, 6)
    compress.prune_ffn(m, 0.5)
    models["structured + int8"] = compress.quantize_int8(m)

    # the variants take turns (compress.compare_latency), so a change in load hits all of them alike
    lat = compress.compare_latency(models, batches, threads=args.threads, repeats=args.repeats, warmup=args.warmup)
    rows: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        quantized = any(hasattr(m, "_packed_params") for m in model.modules())
        rows[name] = {"size_mb": compress.size_bytes(model) / 1e6, "linear_mb": compress.linear_weight_bytes(model) / 1e6,
                      "encoder_params_m": float("nan") if quantized else compress.encoder_params(model) / 1e6,
                      **{f"lat_{b}_ms": lat[name][b] for b in batches}}

    print(f"MiniLM-L6 variants, {args.threads} thread(s), median of {args.repeats} rounds after {args.warmup} warm-up "
          f"calls, batch 1 = "
          f"{batches['b1']['input_ids'].shape[1]} tokens, batch 32 = {tuple(batches['b32']['input_ids'].shape)}; "
          f"torch {torch.__version__}, int8 backend {compress.int8_backend()} "
          f"(engine {torch.backends.quantized.engine}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    head = f"{'variant':34s} {'size MB':>8s} {'Linear MB':>9s} {'enc. M':>7s} {'b1 ms':>8s} {'b32 ms':>8s}"
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:34s} {r['size_mb']:8.1f} {r['linear_mb']:9.1f} {r['encoder_params_m']:7.2f} "
              f"{r['lat_b1_ms']:8.2f} {r['lat_b32_ms']:8.1f}")

    t, s3, s2, q = rows["teacher fp32"], rows["shallow 3/6"], rows["shallow 2/6"], rows["teacher int8"]
    u, st = rows["unstructured 90%"], rows["structured heads 6/12 + ffn 1/2"]

    def check(label: str, value: float, target: str, ok: bool) -> None:
        print(f"  {label:58s} {value:6.2f}  (target {target}: {'met' if ok else 'MISSED'})")

    print("\nratios (teacher / variant unless said otherwise):")
    check("shallow 3/6: encoder parameter share", s3["encoder_params_m"] / t["encoder_params_m"], "<= 0.5",
          s3["encoder_params_m"] / t["encoder_params_m"] <= 0.5)
    check("shallow 3/6: latency speed-up, batch 1", t["lat_b1_ms"] / s3["lat_b1_ms"], ">= 2", t["lat_b1_ms"] / s3["lat_b1_ms"] >= 2)
    check("shallow 2/6: latency speed-up, batch 1", t["lat_b1_ms"] / s2["lat_b1_ms"], ">= 2", t["lat_b1_ms"] / s2["lat_b1_ms"] >= 2)
    check("int8: Linear weights smaller by", t["linear_mb"] / q["linear_mb"], ">= 3", t["linear_mb"] / q["linear_mb"] >= 3)
    check("int8: whole file smaller by", t["size_mb"] / q["size_mb"], "none", True)
    check("int8: latency speed-up, batch 32", t["lat_b32_ms"] / q["lat_b32_ms"], ">= 1.5", t["lat_b32_ms"] / q["lat_b32_ms"] >= 1.5)
    check("int8: latency speed-up, batch 1", t["lat_b1_ms"] / q["lat_b1_ms"], "none", True)
    pm = rows["teacher int8, per matrix"]
    check("int8 one scale per matrix: latency speed-up, batch 32", t["lat_b32_ms"] / pm["lat_b32_ms"], "none", True)
    if "teacher int8 (torchao)" in rows:
        ao = rows["teacher int8 (torchao)"]
        check("torchao int8: latency speed-up, batch 32", t["lat_b32_ms"] / ao["lat_b32_ms"], "none", True)
        check("torchao int8: Linear weights smaller by", t["linear_mb"] / ao["linear_mb"], "none", True)
    else:
        print("  (torchao is not installed: pip install torchao to time its int8 path beside torch.ao's)")
    check("unstructured 90%: size ratio variant/teacher", u["size_mb"] / t["size_mb"], "== 1, not smaller",
          abs(u["size_mb"] / t["size_mb"] - 1) < 1e-3)
    check("unstructured 90%: latency ratio variant/teacher, batch 32", u["lat_b32_ms"] / t["lat_b32_ms"], "~1, not faster", True)
    check("structured: size ratio variant/teacher", st["size_mb"] / t["size_mb"], "< 1", st["size_mb"] < t["size_mb"])
    check("structured: latency speed-up, batch 32", t["lat_b32_ms"] / st["lat_b32_ms"], "> 1", t["lat_b32_ms"] > st["lat_b32_ms"])
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
