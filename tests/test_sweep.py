import matplotlib

matplotlib.use("Agg")

import pytest

from tlkit import plots, sweep


def fake(method, budget, seed):
    base = {"random": 0.5, "pretrained": 0.7}[method]
    return {"acc": base + (0 if budget is None else budget / 1000) + seed / 100}


def test_sweep_is_tidy_and_ordered():
    df = sweep.sweep(fake, [25, 100, None], [0, 1], ["random", "pretrained"])
    assert list(df.columns) == ["method", "budget", "seed", "acc", "time_s"]
    assert len(df) == 12
    assert df["budget"].tolist()[:6] == [25, 25, 100, 100, "all", "all"]


def test_sweep_without_methods_and_float_results():
    df = sweep.sweep(lambda budget, seed: 0.5, [10], [0, 1, 2])
    assert set(df["method"]) == {"-"} and df["acc"].tolist() == [0.5, 0.5, 0.5]


def test_sweep_rejects_empty_inputs():
    with pytest.raises(ValueError, match="at least one label budget"):
        sweep.sweep(fake, [], [0])
    with pytest.raises(ValueError, match="at least one seed"):
        sweep.sweep(fake, [10], [])


def test_summarize_pivot_gain():
    df = sweep.sweep(fake, [100, 25, None], [0, 2], ["random", "pretrained"])
    s = sweep.summarize(df, "acc")
    row = s[(s.method == "random") & (s.budget == 25)].iloc[0]
    assert row["mean"] == pytest.approx(0.525 + 0.01) and row["count"] == 2
    assert list(s[s.method == "random"]["budget"]) == [25, 100, "all"]
    table = sweep.pivot(df)
    assert list(table.columns) == [25, 100, "all"] and list(table.index) == ["random", "pretrained"]
    assert sweep.gain(df, "acc", "pretrained", "random").round(6).tolist() == [0.2, 0.2, 0.2]
    with pytest.raises(KeyError, match="no column 'f1'"):
        sweep.summarize(df, "f1")


def test_learning_curves_plot_has_labels_and_spread():
    df = sweep.sweep(fake, [25, 100, None], [0, 1, 2], ["random", "pretrained"])
    ax = plots.learning_curves(df, "acc", baseline={"target-trained": 0.95})
    assert ax.get_xlabel() and ax.get_ylabel() and "3 seeds" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25", "100", "all"]
    assert len(ax.lines) == 3  # two methods + baseline
    assert len(ax.collections) == 2  # the spread bands


def test_budget_order_is_numeric_for_ints_and_the_strings_results_json_holds():
    assert sweep.budget_order([400, 25, "all", 100, 25]) == [25, 100, 400, "all"]
    assert sweep.budget_order(["400", "all", "25", "100"]) == ["25", "100", "400", "all"]  # not "100" < "25"
