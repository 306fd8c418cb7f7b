"""Pure plotting functions: each draws on an Axes (given or new) and returns it.

Never calls ``plt.show()``; notebooks display the figure. Shared by the
chapters and the panel (ui.py renders some of these into PNGs).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _axes(ax=None, figsize=(6, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


def learning_curves(df, metric: str = "acc", *, ax=None, title: str | None = None,
                    ylabel: str | None = None, xlabel: str = "labelled examples per class", baseline: dict | None = None):
    """Mean ± one standard deviation of ``metric`` against label budget, one line per method.

    ``df`` is ``tlkit.sweep.sweep``'s tidy table. Budgets sit at evenly spaced
    positions (labelled 25, 100, ..., all) so "all" fits on the axis. ``baseline``
    maps a label to a horizontal reference value (e.g. a target-trained model).
    """
    from .sweep import budget_order, summarize

    ax = _axes(ax)
    order = budget_order(df["budget"])
    pos = {b: i for i, b in enumerate(order)}
    s = summarize(df, metric)
    for method in dict.fromkeys(df["method"]):
        part = s[s["method"] == method].sort_values("budget")
        x = np.array([pos[b] for b in part["budget"]])
        m, sd = part["mean"].to_numpy(float), part["std"].to_numpy(float)
        line, = ax.plot(x, m, marker="o", label=str(method))
        ax.fill_between(x, m - sd, m + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    for label, value in (baseline or {}).items():
        ax.axhline(value, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (0, value), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
    ax.set_xticks(range(len(order)), [str(b) for b in order])
    n_seeds = df.groupby(["method", "budget"]).size().max()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or metric.replace("_", " "))
    ax.set_title(title or f"{metric.replace('_', ' ')} vs label budget (mean ± std over {n_seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def history(hist: Any, metrics=("loss", "acc"), *, axes=None, title: str = "Training history"):
    """Train and validation curves from a ``State.history`` (list of rows) or its DataFrame.

    Returns the list of Axes, one per metric, x axis in epochs.
    """
    import pandas as pd

    df = hist if isinstance(hist, pd.DataFrame) else pd.DataFrame(hist)
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), constrained_layout=True)
        axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics):
        for col in [c for c in df.columns if c.endswith(f"_{metric}")]:
            ax.plot(df["epoch"], df[col], marker=".", label=col.rsplit("_", 1)[0])
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{title}: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return list(axes)


# --------------------------------------------------------------------------- panel figures (used by ui.py)
# The panel draws from a training thread, so its figures live outside pyplot:
# no global figure manager to race with, and the notebook never auto-displays
# them. White backgrounds keep them readable in light and dark themes alike.

#: Colours for the panel's series: train, then validation sets in order.
SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def agg_figure(ncols: int = 1, *, width: float = 4.4, height: float = 3.0, dpi: int = 80):
    """A white ``Figure`` with ``ncols`` Axes on matplotlib's Agg canvas, outside pyplot.

    Safe to draw from a background thread (no pyplot state) and rendered to PNG
    with ``png_bytes``; margins are fixed (no constrained layout) because the
    panel redraws the same figure many times and layout solving is slow.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    fig.subplots(1, ncols, squeeze=False)
    fig.subplots_adjust(left=0.75 / (width * ncols) * 1.4, right=0.98, bottom=0.17, top=0.87,
                        wspace=0.28)
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.set_facecolor("white")
        ax.grid(alpha=0.3)
        for axis in (ax.xaxis, ax.yaxis):  # few ticks: tick labels are most of the drawing time
            axis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
    return fig


def png_bytes(fig) -> bytes:
    """Draw ``fig`` and return it as PNG bytes (white background)."""
    import io

    if hasattr(fig.canvas, "buffer_rgba"):  # Agg: draw once, encode the buffer (cheaper than savefig)
        fig.canvas.draw()
        return canvas_png(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def canvas_png(fig) -> bytes:
    """PNG of what ``fig``'s Agg canvas holds now, without drawing it again.

    For figures updated by blitting (restore a saved background, draw a few
    artists): ``savefig`` would redraw everything, which is what blitting avoids.
    """
    import io

    from PIL import Image

    w, h = fig.canvas.get_width_height(physical=True)
    img = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="png", compress_level=1)  # fast; the PNG is sent once
    return buf.getvalue()


def canvas_jpeg(fig, quality: int = 90) -> bytes:
    """JPEG of what ``fig``'s Agg canvas holds now (no redraw): ~5x faster to encode than PNG.

    The panel's live plot is re-encoded twice a second; at quality 90 without chroma
    subsampling thin coloured lines stay crisp, and the image is as small as a PNG.
    """
    import io

    from PIL import Image

    w, h = fig.canvas.get_width_height(physical=True)
    img = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="jpeg", quality=quality, subsampling=0)
    return buf.getvalue()


#: Ten distinct colours; past ten runs the line style changes too (run i: colour i % 10, style i // 10).
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf")
RUN_STYLES = ("-", "--", ":", "-.")


def run_style(i: int) -> dict[str, Any]:
    """Colour and line style of the ``i``-th run (0-based): 40 distinct combinations."""
    return {"color": RUN_COLORS[i % len(RUN_COLORS)], "linestyle": RUN_STYLES[(i // len(RUN_COLORS)) % len(RUN_STYLES)]}


def plain_text(*texts) -> None:
    """Show these Text objects literally: a user's run name like ``$x`` or ``a_$b`` is not maths."""
    for t in texts:
        t.set_parse_math(False)


def compare_runs(runs: Any, metric: str = "valid_acc", *, ax=None, title: str | None = None,
                 highlight: str | None = None, bands: Any = None, outside: bool = True):
    """Every run's ``metric`` against epoch on one Axes, one labelled line per run.

    ``runs`` maps a run label to its history (``State.history`` rows or a
    DataFrame with an ``epoch`` column); runs without that metric are skipped.
    ``highlight`` (a label) is drawn thicker, e.g. the best run. ``bands`` maps a
    label to several histories (one per seed): drawn as their mean with a ±1 std
    band. Each line has its own colour and, past ten, its own style; labels are
    plain text (never parsed as maths, a leading ``_`` kept). With ``outside``
    the legend sits to the right of the Axes, so it never covers the curves. The
    panel's run board uses this to compare "frozen vs fine-tuned vs scratch".
    """
    import pandas as pd

    ax = _axes(ax)
    handles, labels = [], []
    items = [(label, [hist]) for label, hist in dict(runs).items()]
    items += [(label, list(hists)) for label, hists in dict(bands or {}).items()]
    for i, (label, hists) in enumerate(items):
        frames = [h if isinstance(h, pd.DataFrame) else pd.DataFrame(list(h)) for h in hists]
        frames = [df for df in frames if not df.empty and metric in df.columns and "epoch" in df.columns]
        if not frames:
            continue
        style = run_style(i)
        width = 2.6 if label == highlight else 1.4
        if len(frames) == 1:
            line, = ax.plot(frames[0]["epoch"], frames[0][metric], marker=".", linewidth=width, **style)
        else:
            n = min(len(df) for df in frames)
            values = np.array([df[metric].to_numpy(float)[:n] for df in frames])
            x = frames[0]["epoch"].to_numpy(float)[:n]
            mean, sd = values.mean(0), values.std(0, ddof=1)
            line, = ax.plot(x, mean, marker=".", linewidth=width, **style)
            ax.fill_between(x, mean - sd, mean + sd, color=style["color"], alpha=0.18, linewidth=0)
            label = f"{label} (mean ± std, {len(frames)} seeds)"
        line.set_label(str(label))
        handles.append(line)
        labels.append(str(label))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or f"all runs: {metric.replace('_', ' ')}", fontsize=10)
    ax.grid(alpha=0.3)
    if handles:  # explicit handles and labels: a label starting with "_" is not dropped
        kw = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0) if outside else dict(loc="best")
        leg = ax.legend(handles, labels, fontsize=7, frameon=False, ncol=1 + len(handles) // 16, **kw)
        plain_text(*leg.get_texts())
    return ax
