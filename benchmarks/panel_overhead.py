"""Overhead of the control panel: a panel-driven run vs bare ``fit()`` on the same work.

Both train the same TinyCNN from the same initial weights on the same seeded
toy images for the same number of steps; the panel run includes everything a
Train click does (progress updates, throttled live-plot PNGs, the final plot and
the run-board row). Prints each wall time, the ratio (target <= 1.05) and the live
plot's refresh rate during the panel runs (target >= 2 redraws a second): both are
measured in the same runs, so a fast refresh cannot hide behind a separate benchmark.

    python benchmarks/panel_overhead.py [--epochs 20] [--repeats 3]

Runs headless (no kernel): widget trait changes are then not sent anywhere, so
the comm cost of a live notebook (a few small messages a second) is left out.
Wall times on a shared CPU are noisy, so the script alternates bare and panel
runs, compares medians, and also reports process CPU time (what this process
used, whatever the neighbours do) and the time spent inside the panel's own code
(callbacks, plots, run board), timed directly.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from tlkit import toy, train
from tlkit.config import TrainConfig
from tlkit.ui import TrainPanel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tr = train.loader(toy.images(1024, size=24, n_classes=4, seed=0), 32, shuffle=True)
    va = train.loader(toy.images(256, size=24, n_classes=4, seed=1), 128)
    model = toy.TinyCNN(n_classes=4, width=16)
    initial = train.clone_weights(model)
    cfg = TrainConfig(epochs=args.epochs, lr=2e-3, seed=0)
    panel = TrainPanel(model, tr, va, cfg=cfg, background=False)
    # warm-up, excluded from both sides: the first optimizer import, matplotlib's font cache
    panel.train(block=True, max_steps=3, epochs=1)
    panel.set(max_steps=None, epochs=args.epochs)
    panel.manager.runs.clear()

    # CPU time spent in the panel's own code, measured by wrapping its two entry points:
    # the callback (progress, live plot: scales with run length) and _finish (final plot
    # and run board: a fixed cost per run)
    inside = {"during": 0.0, "after": 0.0}

    def timed(fn, key):
        def wrapper(*a):
            t0 = time.process_time()
            try:
                return fn(*a)
            finally:
                inside[key] += time.process_time() - t0
        return wrapper

    panel.run_event, panel.run_finished = timed(panel.run_event, "during"), timed(panel.run_finished, "after")

    bare_s, panel_s, bare_cpu, panel_cpu, own, rates, gaps = [], [], [], [], [], [], []
    for _ in range(args.repeats):
        model.load_state_dict(initial)
        t0, c0 = time.perf_counter(), time.process_time()
        bare = train.fit(model, tr, va, cfg)
        bare_s.append(time.perf_counter() - t0)
        bare_cpu.append(time.process_time() - c0)
        inside.update(during=0.0, after=0.0)
        t0, c0 = time.perf_counter(), time.process_time()
        state = panel.train(block=True)          # fresh=True: starts from the same initial weights
        panel_s.append(time.perf_counter() - t0)
        panel_cpu.append(time.process_time() - c0)
        own.append(dict(inside))
        rates.append(panel.refresh_rate)
        gaps.append(max(b - a for a, b in zip(panel.redraws, panel.redraws[1:])))
        assert state.step == bare.step, (state.step, bare.step)
    med = statistics.median
    print(f"work: {bare.step} steps of TinyCNN on 24 px images, {args.epochs} epochs, batch 32, "
          f"{torch.get_num_threads()} thread(s)")
    print("bare fit   wall s: " + ", ".join(f"{t:.2f}" for t in bare_s) +
          "  cpu s: " + ", ".join(f"{t:.2f}" for t in bare_cpu))
    print("panel run  wall s: " + ", ".join(f"{t:.2f}" for t in panel_s) +
          "  cpu s: " + ", ".join(f"{t:.2f}" for t in panel_cpu))
    print("panel's own code cpu s: " + ", ".join(f"{o['during']:.2f} during training + {o['after']:.2f} after "
                                                 "(final plot, run board)" for o in own))
    own_total = med([o["during"] + o["after"] for o in own])
    print("live plot redraws per second: " + ", ".join(f"{r:.2f}" for r in rates) +
          "  longest gap s: " + ", ".join(f"{g:.2f}" for g in gaps) + "  (target >= 2 per second)")
    print(f"panel / bare = {med(panel_s) / med(bare_s):.3f} wall, {med(panel_cpu) / med(bare_cpu):.3f} cpu, "
          f"{1 + own_total / med(bare_cpu):.3f} from the panel's own cpu time "
          f"(medians of {args.repeats}; target <= 1.05)")


if __name__ == "__main__":
    main()
