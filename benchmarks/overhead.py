"""Overhead of ``tlkit.train.fit`` (with a no-op callback) vs a bare PyTorch loop.

Same model, data, optimizer and number of steps; the two are interleaved over
several repeats in one run and the best time of each is compared. Target:
ratio <= 1.05. Run: ``python benchmarks/overhead.py [--steps 300]``.
"""
from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dl = data(args.n, args.batch)
    times = {"bare": [], "fit": []}
    for r in range(args.repeats):
        for name, fn in (("bare", bare), ("fit", with_fit)) if r % 2 == 0 else (("fit", with_fit), ("bare", bare)):
            torch.manual_seed(0)
            model = toy.MLP(n_in=64, n_classes=10, hidden=args.hidden)
            t0 = time.perf_counter()
            fn(model, dl, args.epochs, 1e-3)
            times[name].append(time.perf_counter() - t0)
    steps = args.epochs * len(dl)
    b, f = min(times["bare"]), min(times["fit"])
    print(f"steps per run: {steps}, device: cpu, threads: {torch.get_num_threads()}")
    print(f"bare loop : {b:.3f} s ({1e3 * b / steps:.2f} ms/step)")
    print(f"fit()     : {f:.3f} s ({1e3 * f / steps:.2f} ms/step; includes one validation-free epoch summary)")
    print(f"ratio fit/bare = {f / b:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
