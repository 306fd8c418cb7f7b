"""Chapter 4's adaptation methods on the chapter's own data, without the notebook.

Checks that the kit's DANN is as strong as a standard recipe (Ganin & Lempitsky's
lambda schedule up to 1.0, a 3-layer 1,024-unit discriminator as in pytorch-adapt,
each domain through BatchNorm on its own) and shows what mixing both domains in one
BatchNorm batch costs. Prints one line per run and a mean ± std table.

    python benchmarks/dann_recipe.py --steps 1500 --seeds 0 1 2 --runs source_only dann dann_joint
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from tlkit import adapt, data, train

RUNS = {  # name -> (method, train_run keyword arguments)
    "source_only": ("source_only", {}),
    "dann": ("dann", {}),
    "dann_joint": ("dann", {"batchnorm": "joint"}),
    "dann_lambda0.3": ("dann", {"lambda_max": 0.3}),
    "dann_disc64": ("dann", {"model_kw": {"disc_hidden": 64}}),
    "coral": ("coral", {"coral_weight": 5.0}),
    "coral_joint": ("coral", {"coral_weight": 5.0, "batchnorm": "joint"}),
    "mmd": ("mmd", {}),
    "mmd_joint": ("mmd", {"batchnorm": "joint"}),
    "target_only": ("target_only", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", nargs="+", default=["source_only", "dann", "dann_joint"], choices=list(RUNS))
    ap.add_argument("--target", default="mnist_m", choices=["mnist_m", "uci"])
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Xs, ys = data.load_digits("mnist", size=28, rgb=True)
    Xt, yt = data.load_digits(args.target, size=28, rgb=True)
    pair = adapt.make_pair(f"mnist->{args.target}", (Xs, ys), (Xt, yt), n_test=args.n_test)
    rows = []
    for name in args.runs:
        method, kw = RUNS[name]
        for seed in args.seeds:
            t0, c0 = time.perf_counter(), time.process_time()
            model, state = adapt.train_run(method, pair, seed=seed, steps=args.steps, batch_size=args.batch_size,
                                           eval_every=args.steps, **kw)
            row = {"run": name, "seed": seed, **adapt.summarize_run(model, state, pair, seed=seed)}
            if method == "source_only":
                row["target_acc_adabn"] = train.evaluate(adapt.adabn(model, pair.target_train[0]),
                                                         pair.loaders()["target"])["acc"]
            row["wall_s"], row["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
            rows.append(row)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    df = pd.DataFrame(rows)
    cols = [c for c in ("target_acc", "target_acc_adabn", "source_acc", "domain_acc", "cpu_s") if c in df]
    print(df.groupby("run", sort=False)[cols].agg(["mean", "std"]).round(3).to_string())


if __name__ == "__main__":
    main()
