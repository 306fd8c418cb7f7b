"""Run each chapter headless and print wall time, the kernel's peak memory and headline numbers.

    python benchmarks/chapters.py            # default preset (CPU here), every chapter
    python benchmarks/chapters.py 01 03      # some chapters
    python benchmarks/chapters.py --smoke    # smoke mode

Each chapter runs in a fresh kernel started by a fresh wrapper process, so the
wrapper's ``RUSAGE_CHILDREN`` maximum resident set size is the kernel's peak
(the whole kernel process, PyTorch, data and all). Targets: every chapter
under 1.5 GB; chapter 1 under 5 minutes, chapters 2-4 under 10 (2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

WRAPPER = """
import json, resource, sys
from tlkit.runner import run_notebook
r = run_notebook(sys.argv[1], smoke=sys.argv[2] == "1", timeout=1800)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak = usage.ru_maxrss / 1024  # kB -> MB on Linux
cpu = usage.ru_utime + usage.ru_stime  # the kernel's CPU time: about the wall time on one core
print("@@" + json.dumps({"wall_s": r.wall_s, "peak_mb": peak, "cpu_s": cpu, "error": r.error, "records": r.records}))
"""

TARGET_S = {"01": 300, "02": 600, "03": 600, "04": 600}


def main() -> int:
    from tlkit import runner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    rows = []
    for path in runner.select(args.chapters):
        proc = subprocess.run([sys.executable, "-c", WRAPPER, str(path), "1" if args.smoke else "0"],
                              capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("@@")), None)
        if line is None:
            print(f"{path.stem}: wrapper failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            rows.append({"chapter": path.stem, "error": "wrapper failed"})
            continue
        res = json.loads(line[2:])
        heads = [r for r in res["records"] if r.get("headline")] or res["records"][:3]
        rows.append({"chapter": path.stem, "wall_s": res["wall_s"], "peak_mb": res["peak_mb"], "cpu_s": res["cpu_s"],
                     "ok": res["error"] is None, "target_s": TARGET_S.get(path.stem[:2]),
                     "headline": "; ".join(f"{r['method']} {r['metric']}={r['value']:.3f}" for r in heads),
                     "error": res["error"], "records": res["records"]})
        print(f"{path.stem}: {res['wall_s']:.0f} s, {res['cpu_s']:.0f} CPU-s, peak {res['peak_mb']:.0f} MB, "
              f"{'ok' if res['error'] is None else 'FAILED'}", flush=True)
    print()
    print("| chapter | wall time | target | kernel CPU time | peak memory (kernel) | headline |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "wall_s" not in r:
            print(f"| {r['chapter']} | failed | | | | |")
            continue
        t = f"{r['target_s'] // 60} min" if r["target_s"] else ""
        print(f"| {r['chapter']} | {r['wall_s'] / 60:.1f} min | {t} | {r['cpu_s'] / 60:.1f} min | {r['peak_mb']:.0f} MB "
              f"| {r['headline']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
