"""Run a training function over label budgets x seeds (x methods) into a tidy table.

    def run(method, budget, seed):          # returns {"acc": 0.71, ...} or a float
        ...
    df = sweep(run, budgets=[25, 100, None], seeds=[0, 1, 2], methods=["random", "frozen"])
    summarize(df, "acc")                    # mean, std per method and budget
    plots.learning_curves(df, metric="acc")

A budget of ``None`` means "all labels" (shown as ``"all"``).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence


def sweep(fn: Callable[..., Any], budgets: Sequence[int | None], seeds: Iterable[int],
          methods: Sequence[str] | None = None, *, progress: Callable[[str], None] | None = None):
    """Call ``fn(method=..., budget=..., seed=...)`` for every combination.

    ``fn`` returns a float (stored as ``acc``) or a dict of metrics. Returns a
    pandas DataFrame with columns ``method, budget, seed, <metrics...>, time_s``
    in a stable order (methods, then budgets, then seeds). Without ``methods``,
    ``fn`` is called without the ``method`` argument and the column is ``"-"``.
    ``progress`` (e.g. ``print``) receives a one-line message per run.
    """
    import pandas as pd

    seeds = list(seeds)
    if not budgets:
        raise ValueError("sweep needs at least one label budget, e.g. budgets=[25, 100, None]")
    if not seeds:
        raise ValueError("sweep needs at least one seed, e.g. seeds=[0, 1, 2]")
    rows = []
    for method in (methods or [None]):
        for budget in budgets:
            for seed in seeds:
                kw = {"budget": budget, "seed": seed}
                if method is not None:
                    kw["method"] = method
                t0 = time.perf_counter()
                result = fn(**kw)
                dt = time.perf_counter() - t0
                metrics = result if isinstance(result, dict) else {"acc": float(result)}
                rows.append({"method": method if method is not None else "-",
                             "budget": "all" if budget is None else int(budget), "seed": seed,
                             **metrics, "time_s": dt})
                if progress is not None:
                    shown = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
                    progress(f"{kw.get('method', '-')}, budget={rows[-1]['budget']}, seed={seed}: {shown} ({dt:.1f}s)")
    return pd.DataFrame(rows)


def budget_order(values: Iterable[Any]) -> list[Any]:
    """Budgets sorted numerically with ``"all"`` last; numbers may be ints or numeric strings
    (results.json records budgets as strings: "100" comes after "25")."""
    vals = list(dict.fromkeys(values))
    nums = sorted((v for v in vals if v != "all"), key=float)
    return nums + (["all"] if "all" in vals else [])


def summarize(df, metric: str = "acc"):
    """Mean and standard deviation of ``metric`` per method and budget (wide: one row a method)."""
    import pandas as pd

    if metric not in df.columns:
        raise KeyError(f"no column {metric!r} in the sweep results; columns are {list(df.columns)}")
    g = df.groupby(["method", "budget"], sort=False)[metric].agg(["mean", "std", "count"]).reset_index()
    g["std"] = g["std"].fillna(0.0)
    g["budget"] = pd.Categorical(g["budget"], categories=budget_order(df["budget"]), ordered=True)
    return g.sort_values(["method", "budget"], kind="stable").reset_index(drop=True)


def pivot(df, metric: str = "acc", fmt: str = "{:.3f} ± {:.3f}"):
    """Method x budget table of ``mean ± std`` strings, for a notebook to show."""
    s = summarize(df, metric)
    s["cell"] = [fmt.format(m, sd) for m, sd in zip(s["mean"], s["std"])]
    out = s.pivot(index="method", columns="budget", values="cell")
    out = out[[b for b in budget_order(df["budget"]) if b in out.columns]]
    out.columns.name = "labels per class"
    return out.loc[list(dict.fromkeys(df["method"]))]


def gain(df, metric: str, better: str, baseline: str):
    """Mean ``metric`` of method ``better`` minus ``baseline`` per budget (a pandas Series)."""
    s = summarize(df, metric).set_index(["method", "budget"])["mean"]
    out = s.loc[better] - s.loc[baseline]
    return out.reindex([b for b in budget_order(df["budget"]) if b in out.index])
