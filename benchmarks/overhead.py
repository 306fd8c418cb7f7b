"""Overhead of ``tlkit.train.fit`` (with a no-op callback) vs a bare PyTorch loop.

Same model, data, optimizer and number of steps. One 0.25 s timing per side swung by +-10%
on a quiet machine (five runs printed 1.24, 1.11, 1.03, 1.17, 1.04), so this version times
longer runs (about 2 s each by default), interleaves them in pairs whose order alternates
(bare, fit, fit, bare, ...), takes the ratio within each pair (both sides saw the same machine
state) and prints the median ratio with its interquartile range and min/max. Target: median
ratio <= 1.05. Timings mean something only on an otherwise idle machine.

    python benchmarks/overhead.py                 # ~1 minute: 11 pairs of ~2 s runs
    python benchmarks/overhead.py --quick         # a few seconds, to check that it runs
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tlkit import toy, train
from tlkit.config import TrainConfig


def data(n: int, batch: int):
    ds = toy.blobs(n, n_features=64, n_classes=10)
    return train.loader(ds, batch, shuffle=True, seed=0)


def bare(model, dl, epochs, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)  # as fit() uses on CPU/CUDA
    model.train()
    for _ in range(epochs):
        for x, y in dl:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def with_fit(model, dl, epochs, lr):
    noop = lambda event, state, control: None  # noqa: E731
    train.fit(model, dl, None, TrainConfig(epochs=epochs, lr=lr, seed=None), callbacks=[noop])


def timed(fn, dl, args) -> float:
    torch.manual_seed(0)
    model = toy.MLP(n_in=64, n_classes=10, hidden=args.hidden)
    t0 = time.perf_counter()
    fn(model, dl, args.epochs, 1e-3)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192, help="training examples")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=16, help="epochs per timed run (16 x 64 steps ~ 2 s on 2 cores)")
    ap.add_argument("--pairs", type=int, default=11, help="interleaved (bare, fit) pairs")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 3 pairs: checks that it runs, times nothing")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.pairs = 1, 2
    dl = data(args.n, args.batch)
    timed(bare, dl, args), timed(with_fit, dl, args)  # warm-up: first-call costs (allocator, kernels) on neither side
    ratios, times = [], {"bare": [], "fit": []}
    for i in range(args.pairs):
        pair = {}
        for name, fn in (("bare", bare), ("fit", with_fit)) if i % 2 == 0 else (("fit", with_fit), ("bare", bare)):
            pair[name] = timed(fn, dl, args)
            times[name].append(pair[name])
        ratios.append(pair["fit"] / pair["bare"])
    steps = args.epochs * len(dl)
    q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    b, f = statistics.median(times["bare"]), statistics.median(times["fit"])
    print(f"steps per run: {steps}, pairs: {args.pairs}, device: cpu, threads: {torch.get_num_threads()}")
    print(f"bare loop : median {b:.3f} s ({1e3 * b / steps:.3f} ms/step)")
    print(f"fit()     : median {f:.3f} s ({1e3 * f / steps:.3f} ms/step; one evaluation-free epoch summary each epoch)")
    print(f"ratio fit/bare per pair: median {med:.3f}, IQR {q1:.3f}-{q3:.3f}, min {min(ratios):.3f}, "
          f"max {max(ratios):.3f}  (target: median <= 1.05)")
    if args.quick:
        print("(--quick: too short to judge the ratio; run without --quick on an idle machine)")


if __name__ == "__main__":
    main()
