"""Run chapters on the gpu preset on one CUDA GPU, each capped to a T4's 16 GB, and report what they took.

    python benchmarks/gpu_chapters.py --out runs-gpu                 # every chapter, one after another
    python benchmarks/gpu_chapters.py --out runs-gpu --parallel 03 04  # side by side, CPU cores split

Colab's free GPU is a 16 GB T4; a chapter that fits a bigger card may not fit that one. Each chapter's
kernel caps its own share of the card with ``torch.cuda.set_per_process_memory_fraction`` (an IPython
startup file, so only the chapter kernels are capped), so running out of a T4's memory fails here too,
and mixed precision takes the T4's fp16 + loss-scaling path unless ``--bf16``.
The cap bounds memory, not speed: times on a faster card are not T4 times, and ``--parallel`` runs
share the card and split the CPU cores (each chapter is pinned to its own cores, and tlkit sizes its
thread pools from that mask), so say so when you quote them.

``--deadline-s`` stops every chapter still running at that point (its kernel is ended, so the executed
notebook and the rows recorded so far are kept). Prints one row per chapter (finished?, wall time,
CPU time, peak RAM, peak GPU memory, claims holding) and writes ``summary.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CAP_STARTUP = """\
import os
import torch
_cap = float(os.environ["TLKIT_BENCH_GPU_CAP_GB"]) * 2**30
if torch.cuda.is_available():
    _total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, _cap / _total))
if os.environ.get("TLKIT_BENCH_FP16") == "1":   # a T4 has no bf16 tensor cores: take its fp16 + GradScaler path
    import tlkit.train as _train
    _train.native_bf16 = lambda device: False
"""


def chapter_paths(names: list[str], directory: Path) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from tlkit import runner

    return runner.select(names, directory) if names else runner.chapters(directory)


def summarise(name: str, out: Path, finished: bool, wall_s: float) -> dict:
    path = out / name / "results.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    chapter = {r["metric"]: r["value"] for r in rows if r.get("method") == "chapter"}
    claims = [r for r in rows if r.get("method") == "claim"]
    return {"chapter": name, "finished": finished, "wall_s": round(wall_s, 1),
            "chapter_wall_s": chapter.get("wall_s"), "cpu_s": chapter.get("cpu_s"),
            "peak_rss_mb": chapter.get("peak_rss_mb"), "peak_gpu_mb": chapter.get("peak_gpu_mb"),
            "claims_held": sum(r["value"] == 1.0 for r in claims), "claims": len(claims),
            "failed_claims": [f"{r['metric']}: {r.get('numbers', '')}" for r in claims if r["value"] != 1.0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter prefixes (default: all)")
    ap.add_argument("--out", required=True, help="folder for each chapter's executed copy and results.json")
    ap.add_argument("--cap-gb", type=float, default=16.0, help="GPU memory per chapter kernel (default: T4, 16)")
    ap.add_argument("--bf16", action="store_true", help="let Ampere+ cards use bf16 (default: fp16, as on a T4)")
    ap.add_argument("--parallel", action="store_true", help="run the chapters side by side (CPU cores split)")
    ap.add_argument("--notebooks", default=str(REPO / "notebooks"), help="folder holding the chapters")
    ap.add_argument("--deadline-s", type=float, default=None, help="end every chapter still running after this")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = chapter_paths(args.chapters, Path(args.notebooks))
    ipython_dir = Path(tempfile.mkdtemp(prefix="tlkit-gpu-ipython-"))
    (ipython_dir / "profile_default" / "startup").mkdir(parents=True)
    (ipython_dir / "profile_default" / "startup" / "00-gpu-cap.py").write_text(CAP_STARTUP)
    env = {**os.environ, "IPYTHONDIR": str(ipython_dir), "TLKIT_BENCH_GPU_CAP_GB": str(args.cap_gb),
           "TLKIT_BENCH_FP16": "0" if args.bf16 else "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // len(paths)) if args.parallel else len(cores)
    t0 = time.perf_counter()
    deadline = t0 + args.deadline_s if args.deadline_s else None

    def start(i: int, path: Path) -> subprocess.Popen:
        mask = cores[i * share:(i + 1) * share] if args.parallel else cores
        log = open(out / f"{path.stem}.log", "w")
        return subprocess.Popen(
            [sys.executable, "-m", "tlkit.cli", "run", path.stem, "--preset", "gpu", "--out", str(out / path.stem),
             "--timeout", "3600", "--notebooks", str(path.parent)], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, mask), start_new_session=True)

    def stop(proc: subprocess.Popen) -> None:
        # end the chapter's kernel (a child of the runner, in a session of its own): nbclient sees a dead
        # kernel, and the runner still writes the executed copy and results.json with the rows so far
        subprocess.run(["pkill", "-TERM", "-P", str(proc.pid), "-f", "ipykernel"], check=False)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    results = []
    waves = [list(enumerate(paths))] if args.parallel else [[(0, p)] for p in paths]
    for wave in waves:
        running = {path.stem: (start(i, path), time.perf_counter()) for i, path in wave}
        while running:
            for name, (proc, t_start) in list(running.items()):
                stopped = proc.poll() is None and deadline is not None and time.perf_counter() > deadline
                if stopped:
                    print(f"{name}: deadline reached, stopping it", flush=True)
                    stop(proc)
                if proc.poll() is not None:
                    del running[name]
                    results.append(summarise(name, out, not stopped and proc.returncode == 0,
                                             time.perf_counter() - t_start))
                    print(json.dumps(results[-1]), flush=True)
            time.sleep(1)
    (out / "summary.json").write_text(json.dumps({"cap_gb": args.cap_gb, "parallel": args.parallel,
                                                  "precision": "bf16" if args.bf16 else "fp16",
                                                  "cores": len(cores), "chapters": results}, indent=2))
    print(f"\n{'chapter':<22} {'ok':>3} {'wall s':>7} {'CPU s':>7} {'RAM GB':>7} {'GPU GB':>7} claims")
    for r in results:
        gb = lambda mb: f"{mb / 1024:.2f}" if mb else "-"   # noqa: E731
        print(f"{r['chapter']:<22} {'yes' if r['finished'] else 'no':>3} {r['wall_s']:>7.0f} "
              f"{(r['cpu_s'] or 0):>7.0f} {gb(r['peak_rss_mb']):>7} {gb(r['peak_gpu_mb']):>7} "
              f"{r['claims_held']}/{r['claims']} {'; '.join(r['failed_claims'])}")
    return 0 if all(r["finished"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
