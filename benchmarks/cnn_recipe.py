"""Chapter 3's fine-tuning against the PyTorch transfer-learning tutorial's recipe, on the chapter's data.

The reference is a plain PyTorch loop written the way the tutorial writes it (no tlkit
training code): ImageNet MobileNetV2 with a new 10-way head, every layer trained, SGD with
momentum 0.9 (body LR 1e-3, head LR 1e-2), step decay (LR x 0.1 every 7 epochs), 12 epochs,
random horizontal flips, BatchNorm in training mode. Both sides see the same images: the
chapter's CPU-preset pool (200 Fashion-MNIST images per class, drawn with seed 123), resized
to 64 px with ImageNet normalisation, scored on the chapter's balanced 600-image test set.
The kit side is ``vision.BudgetSweep`` with the chapter's sweep settings (one call per method
and seed, exactly what the chapter runs at its largest budget). Prints one line per run and
a mean ± std table.

    python benchmarks/cnn_recipe.py                         # the chapter's CPU preset, seeds 0 1
    python benchmarks/cnn_recipe.py --valid 1000            # score on 1,000 held-out training images
                                                            # instead (for choosing settings)
    python benchmarks/cnn_recipe.py --runs reference --epochs 3   # quick check that it runs

``--valid N`` scores every run on N Fashion-MNIST training images outside the pool (never on
the test set): use it when you choose settings, and the test set only to report.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from tlkit import data, metrics, vision

# The chapter's CPU preset (notebooks/03_cnn_features.ipynb, SIZES["cpu"]): pool, test set and sweep settings.
POOL_PER_CLASS, TEST_PER_CLASS, DRAW_SEED = 200, 60, 123
CHAPTER = dict(size=64, feature_size=96, batch_size=16)


def chapter_data(n_valid: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_pool, y_pool, X_eval, y_eval): the chapter's pool and its test set, or with ``n_valid``
    a class-balanced set of that many training images that are not in the pool."""
    X_all, y_all = data.load_fashion_mnist("train")
    pool = data.budget_indices(y_all, POOL_PER_CLASS, seed=DRAW_SEED)
    if n_valid:
        rest = np.setdiff1d(np.arange(len(y_all)), pool)
        ev = rest[data.budget_indices(y_all[rest], n_valid // 10, seed=7)]
        return X_all[pool], y_all[pool], X_all[ev], y_all[ev]
    X_test, y_test = data.load_fashion_mnist("test")
    test = data.budget_indices(y_test, TEST_PER_CLASS, seed=DRAW_SEED)
    return X_all[pool], y_all[pool], X_test[test], y_test[test]


def reference(X: np.ndarray, y: np.ndarray, X_eval: np.ndarray, y_eval: np.ndarray, *, seed: int, epochs: int = 12,
              step_size: int = 7, batch_size: int = 16, size: int = 64) -> float:
    """The tutorial's fine-tuning loop (``train_model`` in "Transfer Learning for Computer Vision"),
    with the body at 1e-3 and the new head at 1e-2; returns accuracy on ``X_eval``."""
    torch.manual_seed(seed)
    model = vision.classifier("mobilenet_v2", 10, pretrained=True, seed=seed)
    pre = vision.Preprocess(size=size)
    head = list(model.classifier.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    opt = torch.optim.SGD([{"params": body, "lr": 1e-3}, {"params": head, "lr": 1e-2}], momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    yt = torch.as_tensor(y, dtype=torch.long)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y) - batch_size + 1, batch_size):   # drop the last partial batch
            b = order[i:i + batch_size].numpy()
            x = pre(X[b])
            flip = torch.rand(len(b), generator=g) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            opt.zero_grad()
            loss_fn(model(x), yt[b]).backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(pre(X_eval[i:i + 200])) for i in range(0, len(X_eval), 200)])
    return metrics.accuracy(logits, torch.as_tensor(y_eval))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["reference", "fine-tune last N", "fine-tune all"],
                    choices=["reference", "fine-tune last N", "fine-tune all", "MobileNetV2 (scratch)"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=12, help="reference: epochs (the tutorial's step decay every 7)")
    ap.add_argument("--sweep-epochs", type=float, default=None,
                    help="kit: SweepSettings.epochs (default: the chapter's, vision.SweepSettings' default)")
    ap.add_argument("--valid", type=int, default=0, help="score on this many held-out training images, not the test set")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, X_eval, y_eval = chapter_data(args.valid)
    extra = {} if args.sweep_epochs is None else {"epochs": args.sweep_epochs}
    settings = vision.SweepSettings(**CHAPTER, **extra)
    sweep = vision.BudgetSweep(X, y, X_eval, y_eval, settings)
    scored_on = f"{len(y_eval)} held-out training images" if args.valid else f"the chapter's {len(y_eval)} test images"
    print(f"pool {len(y)} images ({POOL_PER_CLASS} per class), scored on {scored_on}; kit settings {settings}",
          flush=True)
    rows = []
    for run in args.runs:
        for seed in args.seeds:
            t0, c0 = time.perf_counter(), time.process_time()
            if run == "reference":
                acc = reference(X, y, X_eval, y_eval, seed=seed, epochs=args.epochs)
            else:
                acc = sweep(method=run, budget=POOL_PER_CLASS, seed=seed)["acc"]
            rows.append({"run": run, "seed": seed, "acc": acc, "wall_s": time.perf_counter() - t0,
                         "cpu_s": time.process_time() - c0})
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    df = pd.DataFrame(rows)
    print(df.groupby("run", sort=False)[["acc", "wall_s"]].agg(["mean", "std"]).round(3).to_string())
    if "reference" in set(df["run"]) and len(set(df["run"])) > 1:
        ref = df.loc[df["run"] == "reference", "acc"].mean()
        best = df[df["run"] != "reference"].groupby("run")["acc"].mean()
        print(f"best kit method: {best.idxmax()} {best.max():.3f} vs reference {ref:.3f}: "
              f"{100 * (best.max() - ref):+.1f} points")


if __name__ == "__main__":
    main()
