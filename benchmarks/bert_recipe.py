"""Chapter 2's fine-tuning against the Hugging Face Trainer's defaults, on the chapter's data (issue 14).

The reference is what the Hugging Face course and the ``run_glue`` example do, with no tlkit
training code: ``AutoModelForSequenceClassification`` on the same pretrained MiniLM (a new
pooler + linear head on the [CLS] token), ``transformers.Trainer`` with ``TrainingArguments``'
defaults (AdamW, learning rate 5e-5, linear decay, no warmup, batch 8, 3 epochs, no weight
decay) and the tokenizer's dynamic padding. A second variant takes the other end of the usual
range (learning rate 2e-5 with 10% warmup), and each also runs for 10 epochs, since 3 epochs
of 32 snippets are only 12 steps. The kit side is exactly the chapter's sweep run
(``FineTuneRunner.run("finetune_all", ..., head_init="probe")``, notebooks/02_bert_finetuning.ipynb
section 5). Both sides see the same labelled snippets (``data.budget_indices`` of the chapter's
pool, per budget and seed), truncated to the chapter's 48 tokens, and are scored on the same test
set.

**Which reference variant counts is chosen on the chapter's 200 validation snippets**, per
budget (mean over seeds), never on the test set; the test accuracy of every variant is printed
too.

    PYTHONPATH=/path/to/accelerate python benchmarks/bert_recipe.py           # CPU preset, 3 seeds
    python benchmarks/bert_recipe.py --budgets 16 --seeds 0 --variants defaults   # a quick check

``transformers.Trainer`` needs the ``accelerate`` package, which tlkit does not install:
``pip install accelerate`` (or into a folder on ``PYTHONPATH``, to keep the kit's environment
as tested).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd
import torch

from tlkit import data, text

# The chapter's CPU preset (notebooks/02_bert_finetuning.ipynb, SIZES["cpu"] and section 5's sweep)
MODEL, MAX_LEN, N_POOL, N_VALID, N_TEST = "minilm-l6", 48, 1000, 200, 400
KIT = dict(batch_size=16, epochs=2, min_steps=30, sweep_min_steps=20)   # runner.recipe; the sweep's min_steps
VARIANTS = {   # name -> TrainingArguments overrides (everything else at its default)
    "defaults": {},
    "defaults, 10 epochs": dict(num_train_epochs=10),
    "lr 2e-5 + 10% warmup": dict(learning_rate=2e-5, warmup_steps=0.1),
    "lr 2e-5 + 10% warmup, 10 epochs": dict(learning_rate=2e-5, warmup_steps=0.1, num_train_epochs=10),
}


def chapter_data():
    movies = data.load_sentiment("movies")
    sp = data.split(movies, valid=0.1, test=0.2, seed=0)
    return (data.budget(sp.train, N_POOL // 2, seed=0), data.budget(sp.valid, N_VALID // 2, seed=0),
            data.budget(sp.test, N_TEST // 2, seed=0))


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, tok, texts, labels):
        self.enc = tok(list(texts), truncation=True, max_length=MAX_LEN)
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": int(self.labels[i])}


def reference(tok, train_df, evals: dict, *, seed: int, overrides: dict) -> dict:
    """Fine-tune with ``transformers.Trainer`` at its defaults (plus ``overrides``); accuracy on each eval set."""
    try:
        import accelerate  # noqa: F401 -- Trainer needs it; say so before loading anything
    except ImportError as exc:
        raise SystemExit("transformers.Trainer needs the accelerate package: pip install accelerate") from exc
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()   # no load report per run: the classifier is new by design
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(text.model_path(MODEL), num_labels=2)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, seed=seed, report_to="none", save_strategy="no",
                                 logging_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                                 **overrides)
        trainer = Trainer(model=model, args=args, train_dataset=_Encoded(tok, train_df["text"], train_df["label"]),
                          processing_class=tok)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        accs = {}
        for name, df in evals.items():
            pred = trainer.predict(_Encoded(tok, df["text"], df["label"]))
            accs[name] = float((pred.predictions.argmax(-1) == df["label"].to_numpy()).mean())
    return {**accs, "train_s": seconds, "steps": trainer.state.global_step}


def kit(runner, *, budget: int, seed: int) -> dict:
    """The chapter's run: every layer but the word-embedding matrix, the head started from the probe."""
    out = runner.run("finetune_all", budget, seed, eval_on=["test", "valid"], head_init="probe", probe_C=0.1,
                     min_steps=KIT["sweep_min_steps"])
    return {"test": out["test_acc"], "valid": out["valid_acc"], "train_s": runner.last_state.elapsed,
            "steps": runner.last_state.step}


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[16, 32, 128], help="labelled snippets per class")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="reference variants to run")
    ap.add_argument("--csv", help="also write every run's row here")
    a = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    pool, valid, test = chapter_data()
    tok = text.load_tokenizer(MODEL)
    runner = text.FineTuneRunner(tok, pool["text"], pool["label"].to_numpy(),
                                 {"test": (test["text"], test["label"].to_numpy()),
                                  "valid": (valid["text"], valid["label"].to_numpy())},
                                 model_name=MODEL, max_length=MAX_LEN,
                                 recipe=dict(batch_size=KIT["batch_size"], epochs=KIT["epochs"],
                                             min_steps=KIT["min_steps"]))
    y_pool = pool["label"].to_numpy()
    rows = []
    for budget in a.budgets:
        for seed in a.seeds:
            r = kit(runner, budget=budget, seed=seed)
            rows.append(dict(method="kit (chapter 2)", budget=budget, seed=seed, **r))
            print(f"{budget:>4}/class seed {seed}  kit (chapter 2): test {r['test']:.3f}  valid {r['valid']:.3f}  "
                  f"{r['steps']} steps  {r['train_s']:.0f} s", flush=True)
            train_df = pool.iloc[data.budget_indices(y_pool, budget, seed=seed)]
            for name in a.variants:
                r = reference(tok, train_df, {"test": test, "valid": valid}, seed=seed, overrides=VARIANTS[name])
                rows.append(dict(method=f"HF Trainer: {name}", budget=budget, seed=seed, **r))
                print(f"{budget:>4}/class seed {seed}  HF Trainer: {name}: test {r['test']:.3f}  valid "
                      f"{r['valid']:.3f}  {r['steps']} steps  {r['train_s']:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    if a.csv:
        df.to_csv(a.csv, index=False)
    summary = df.groupby(["budget", "method"])[["test", "valid"]].agg(["mean", "std"]).round(3)
    print("\nmean ± std over seeds (test and validation accuracy):")
    print(summary.to_string())
    means = df.groupby(["budget", "method"])[["test", "valid"]].mean().reset_index()
    print("\nper budget: the reference variant with the best VALIDATION accuracy, against the kit (test accuracy):")
    for budget, g in means.groupby("budget"):
        ref = g[g.method != "kit (chapter 2)"].sort_values("valid", ascending=False).iloc[0]
        k = g[g.method == "kit (chapter 2)"].iloc[0]
        print(f"  {budget:>4}/class: kit {k.test:.3f} vs {ref.method} {ref.test:.3f} "
              f"(kit - reference {100 * (k.test - ref.test):+.1f} points)")
    return df


if __name__ == "__main__":
    main()
