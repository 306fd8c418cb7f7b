"""Run each chapter headless and print wall time, the kernel's peak memory and headline numbers.

    python benchmarks/chapters.py            # default preset (CPU here), every chapter
    python benchmarks/chapters.py 01 03      # some chapters
    python benchmarks/chapters.py --smoke    # smoke mode
    python benchmarks/chapters.py 02 --cells # also the kernel's peak (VmHWM) and RSS after every cell

Each chapter runs in a fresh kernel started by a fresh wrapper process, so the
wrapper's ``RUSAGE_CHILDREN`` maximum resident set size is the kernel's peak
(the whole kernel process, PyTorch, data and all). ``--cells`` runs a copy of the
chapter with a probe cell after every code cell that prints the kernel's
``VmHWM`` (peak so far) and ``VmRSS`` (now) from ``/proc/self/status``, which shows
which cell raised the peak. The kernel's own data (anonymous memory, ``peak_anon_mb``
from ``report.start_resources``) is shown beside the peak, which also counts shared-library
pages. Targets: the kernel's own data under 1.5 GB; chapter 1 under 5 minutes, chapters 2-5
under 10 (2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

# One fresh process per chapter: its RUSAGE_CHILDREN peak is the kernel's alone.
WRAPPER = r"""
import json, os, re, resource, shutil, sys, tempfile
import nbformat
from tlkit.runner import run_notebook

PROBE_SRC = ("print('@@MEM', *[l.split()[1] for l in open('/proc/self/status') "
             "if l.startswith(('VmHWM:', 'VmRSS:'))])")


def probe_copy(path):
    # a copy in a temporary folder (run with the chapter's folder as working directory) with a probe
    # after each code cell
    nb = nbformat.read(path, as_version=4)
    cells = []
    for i, c in enumerate(nb.cells):
        cells.append(c)
        if c.cell_type == "code":
            p = nbformat.v4.new_code_cell(PROBE_SRC)
            p.metadata["probe_of"] = i
            cells.append(p)
    nb.cells = cells
    out = os.path.join(tempfile.mkdtemp(prefix="tlkit-probe-"), os.path.basename(path))
    nbformat.write(nb, out)
    return out


def probe_read(nb):
    rows = []
    for j, c in enumerate(nb.cells):
        i = c.metadata.get("probe_of")
        m = re.search(r"@@MEM (\d+) (\d+)", "".join(o.get("text", "") for o in c.get("outputs", [])))
        if i is not None and m:
            src = nb.cells[j - 1].source.strip().splitlines() or [""]
            rows.append([i, src[0][:70], int(m.group(1)) / 1024, int(m.group(2)) / 1024])
    return rows


path = probe_copy(sys.argv[1]) if sys.argv[3] == "1" else sys.argv[1]
try:
    r = run_notebook(path, smoke=sys.argv[2] == "1", timeout=1800, cwd=os.path.dirname(os.path.abspath(sys.argv[1])))
finally:
    if path != sys.argv[1]:
        shutil.rmtree(os.path.dirname(path))
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak = usage.ru_maxrss / 1024  # kB -> MB on Linux
cpu = usage.ru_utime + usage.ru_stime  # the kernel's CPU time: about the wall time on one core
print("@@" + json.dumps({"wall_s": r.wall_s, "peak_mb": peak, "cpu_s": cpu, "error": r.error, "records": r.records,
                         "cells": probe_read(r.notebook) if path != sys.argv[1] else []}))
"""

TARGET_S = {"01": 300, "02": 600, "03": 600, "04": 600, "05": 600}


def main() -> int:
    from tlkit import runner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--cells", action="store_true", help="print the kernel's peak and RSS after every code cell")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    rows = []
    for path in runner.select(args.chapters):
        proc = subprocess.run([sys.executable, "-c", WRAPPER, str(path), "1" if args.smoke else "0",
                               "1" if args.cells else "0"], capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("@@")), None)
        if line is None:
            print(f"{path.stem}: wrapper failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            rows.append({"chapter": path.stem, "error": "wrapper failed"})
            continue
        res = json.loads(line[2:])
        heads = [r for r in res["records"] if r.get("headline")] or res["records"][:3]
        own = next((r["value"] for r in res["records"] if (r["method"], r["metric"]) == ("chapter", "peak_anon_mb")),
                   None)   # the kernel's own data (report.start_resources), without shared-library pages
        rows.append({"chapter": path.stem, "wall_s": res["wall_s"], "peak_mb": res["peak_mb"], "own_mb": own,
                     "cpu_s": res["cpu_s"],
                     "ok": res["error"] is None, "target_s": TARGET_S.get(path.stem[:2]),
                     "headline": "; ".join(f"{r['method']} {r['metric']}={r['value']:.3f}" for r in heads),
                     "error": res["error"], "records": res["records"], "cells": res["cells"]})
        for i, src, hwm, rss in res["cells"]:
            print(f"  cell {i:3d}: peak {hwm:6.0f} MB, now {rss:6.0f} MB  {src}")
        print(f"{path.stem}: {res['wall_s']:.0f} s, {res['cpu_s']:.0f} CPU-s, peak {res['peak_mb']:.0f} MB, "
              f"{'ok' if res['error'] is None else 'FAILED: ' + res['error'][-300:]}", flush=True)
    print()
    print("| chapter | wall time | target | kernel CPU time | peak memory (kernel) | kernel's own data (peak) | headline |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "wall_s" not in r:
            print(f"| {r['chapter']} | failed | | | | | |")
            continue
        t = f"{r['target_s'] // 60} min" if r["target_s"] else ""
        own = f"{r['own_mb']:.0f} MB" if r["own_mb"] is not None else "not recorded"
        print(f"| {r['chapter']} | {r['wall_s'] / 60:.1f} min | {t} | {r['cpu_s'] / 60:.1f} min | {r['peak_mb']:.0f} MB "
              f"| {own} | {r['headline']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
