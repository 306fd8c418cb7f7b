"""The ``tlkit`` command: ``env``, ``run`` and ``assets``.

    tlkit env                      # versions, device, Colab/Binder, offline assets
    tlkit run 01 --smoke           # execute chapter 1 headless, print its results
    tlkit run --all --out runs/    # every chapter; executed copies + results.json in runs/
    tlkit assets list              # offline assets: present?, source, size, license
    tlkit notebooks DIR            # copy the chapters bundled with the install into DIR
    tlkit lab [DIR]                # copy them (first time) and open DIR in JupyterLab
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path


# --------------------------------------------------------------------------- env
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}  # import name -> pip distribution, where they differ


def _version(module: str) -> str:
    """Installed version of ``module`` from its package metadata, without importing it: importing
    torchvision, scikit-learn, gensim and jupyterlab just to print versions would add ~400 MB to
    every chapter's kernel (measured with the CUDA build of torch)."""
    from importlib import metadata

    try:
        return metadata.version(_DISTRIBUTIONS.get(module, module))
    except metadata.PackageNotFoundError:
        return "not installed"


def platform_name() -> str:
    """``colab``, ``binder``, ``kaggle`` or ``local``."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG") or os.environ.get("COLAB_GPU"):
        return "colab"
    if os.environ.get("BINDER_SERVICE_HOST") or os.environ.get("BINDER_REQUEST") or os.environ.get("BINDER_LAUNCH_HOST"):
        return "binder"
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        return "kaggle"
    return "local"


def environment() -> dict:
    """Everything ``tlkit env`` reports, as a dict (chapters show a short form)."""
    import torch

    from . import __version__
    from .resources import cpu_limit
    from .train import pick_precision

    cuda = torch.cuda.is_available()
    info = {"tlkit": __version__, "python": platform.python_version(), "platform": platform_name(),
            "torch": torch.__version__, "cuda": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "precision": pick_precision(torch.device("cuda", 0)) if cuda else None,  # bf16, or fp16 on a T4
            "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
            "cpu_threads": torch.get_num_threads(), "cpu_limit": cpu_limit().source}
    for name in ("torchvision", "transformers", "gensim", "ipywidgets", "jupyterlab", "sklearn", "matplotlib", "pandas"):
        info[name] = _version(name)
    info["offline_assets"] = _offline_assets()
    return info


def _offline_assets() -> dict[str, bool] | str:
    try:
        from . import assets

        table = assets.list_assets()
    except Exception as exc:  # noqa: BLE001 - env must always print something
        return f"unknown ({type(exc).__name__}: {exc})"
    if "tier" in table.columns:  # only the assets every chapter needs offline; online ones download on demand
        table = table[table["tier"] == "offline"]
    return {str(r["name"]): bool(r["present"]) for _, r in table.iterrows()}


def summary_line(info: dict | None = None) -> str:
    """One line for a chapter's environment cell: what will happen and what to do."""
    info = info or environment()
    gpu = info.get("gpu")
    if info.get("precision"):
        gpu = f"{gpu}, {info['precision']} mixed precision"
    device = f"GPU ({gpu})" if info["cuda"] else ("Apple MPS" if info["mps"] else "CPU")
    from . import resolve_preset

    try:
        preset = f"preset '{resolve_preset('auto', cuda=info['cuda'])}'"
    except ValueError as exc:  # a bad TLKIT_PRESET: chapters refuse to start, so say so here too
        preset = f"NO preset: {exc} (chapters will refuse to start)"
    assets = info["offline_assets"]
    if isinstance(assets, dict):
        missing = [k for k, v in assets.items() if not v]
        asset_txt = "all offline assets present" if not missing else \
            f"missing offline assets: {', '.join(missing)} (run `tlkit assets install --all`)"
    else:
        asset_txt = f"offline assets {assets}"
    widgets = "widgets ok" if info["ipywidgets"] != "not installed" else "ipywidgets missing: pip install ipywidgets"
    return f"{device} -> {preset}; {asset_txt}; {widgets}; platform {info['platform']}"


def cmd_env(args: argparse.Namespace) -> int:
    info = environment()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(len(k) for k in info)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{name}: {'present' if ok else 'missing'}" for name, ok in v.items())
        print(f"{k:<{width}}  {v}")
    print()
    line = summary_line(info)
    print(line)
    return 1 if "NO preset" in line else 0


# --------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from . import runner

    directory = Path(args.notebooks) if args.notebooks else runner.notebooks_dir()
    if not runner.chapters(directory):
        print(f"no chapters found in {directory} (expected notebooks named like 01_word_embeddings.ipynb); "
              "pass --notebooks DIR or run from the repository root", file=sys.stderr)
        return 2
    if not args.chapters and not args.all:
        print("name chapters to run (e.g. `tlkit run 01 02`) or pass --all; chapters: "
              + ", ".join(p.stem for p in runner.chapters(directory)), file=sys.stderr)
        return 2
    try:
        paths = runner.select([] if args.all else args.chapters, directory)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    out = Path(args.out)
    problem = _unwritable(out)
    if problem:
        print(f"tlkit run: cannot write results to --out {out}: {problem}; pass a writable folder, "
              "e.g. --out runs", file=sys.stderr)
        return 2
    results, failed = [], []
    for path in paths:
        print(f"running {path.stem} ({'smoke' if args.smoke else 'full'}"
              f"{'' if args.smoke or args.preset == 'auto' else ', ' + args.preset + ' preset'}) ...", flush=True)
        r = runner.run_notebook(path, smoke=args.smoke, out_dir=out, timeout=args.timeout,
                                env={"TLKIT_PRESET": args.preset} if args.preset != "auto" else None)
        print(f"  {'ok' if r.ok else 'FAILED'} in {r.wall_s:.1f} s, {len(r.records)} results", flush=True)
        for rec in r.records:
            rec.setdefault("chapter", r.name)
            rec["wall_s"] = round(r.wall_s, 1)
        results += r.records
        if not r.ok:
            failed.append(r)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    _print_table(results)
    print(f"executed notebooks and results.json in {out.resolve()}")
    for r in failed:
        print(f"\nchapter {r.name} failed:\n{r.error}", file=sys.stderr)
    return 1 if failed else 0


def _unwritable(folder: Path) -> str:
    """'' when ``folder`` exists (or was created) and takes files, else why not, before any chapter runs."""
    if folder.exists() and not folder.is_dir():
        return "it is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".tlkit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds > 0, got {text!r}")
    return value


def _print_table(rows: list[dict]) -> None:
    if not rows:
        print("(no results recorded)")
        return
    cols = ["chapter", "method", "metric", "value", "seeds", "preset", "wall_s"]
    cells = [[("%.4f" % r[c]) if c == "value" else str(r.get(c, "") if r.get(c) is not None else "") for c in cols]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# --------------------------------------------------------------------------- notebooks, lab
def cmd_notebooks(args: argparse.Namespace) -> int:
    from . import runner

    try:
        copied, kept = runner.copy_notebooks(args.dir, force=args.force)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: could not copy the chapters into {args.dir}: {exc}", file=sys.stderr)
        return 2
    for path in copied:
        print(f"copied {path}")
    for path in kept:
        print(f"kept   {path} (already there; --force replaces it, losing changes made in it)")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    if cmd_notebooks(args) != 0:
        return 2
    jupyter = shutil.which("jupyter") or shutil.which("jupyter", path=str(Path(sys.executable).parent))
    if jupyter is None:
        print("error: jupyter is not installed here; pip install jupyterlab, then run tlkit lab again", file=sys.stderr)
        return 2
    return subprocess.call([jupyter, "lab", str(args.dir), *args.lab_args])


# --------------------------------------------------------------------------- assets
def cmd_assets(args: argparse.Namespace) -> int:
    from . import assets

    return int(assets.cli(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="tlkit", description="tlkit: a Jupyter-native kit for teaching transfer learning")
    p.add_argument("--version", action="version", version=f"tlkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{env,run,assets,notebooks,lab,course}")
    e = sub.add_parser("env", help="versions, device, Colab/Binder detection, offline assets present")
    e.add_argument("--json", action="store_true", help="print as JSON")
    e.set_defaults(func=cmd_env)
    r = sub.add_parser("run", help="execute chapter notebooks headless and print their results")
    r.add_argument("chapters", nargs="*", help="chapter prefixes such as 01 or 03_cnn")
    r.add_argument("--all", action="store_true", help="run every chapter")
    r.add_argument("--smoke", action="store_true", help="tiny data and epochs (TLKIT_SMOKE=1): seconds per chapter")
    r.add_argument("--out", default="runs", help="folder for executed notebooks and results.json (default: runs)")
    r.add_argument("--notebooks", help="folder holding the chapters (default: the repository's notebooks/)")
    r.add_argument("--timeout", type=_positive_int, default=1800, help="seconds a cell may run (default 1800)")
    r.add_argument("--preset", choices=("auto", "cpu", "gpu"), default="auto",
                   help="sizes the chapters use (default auto: gpu when CUDA is available, else cpu)")
    r.set_defaults(func=cmd_run)
    a = sub.add_parser("assets", help="list, install or verify offline models and datasets", add_help=False)
    a.add_argument("rest", nargs=argparse.REMAINDER)
    a.set_defaults(func=cmd_assets)
    n = sub.add_parser("notebooks", help="copy the chapter notebooks bundled with tlkit into a folder")
    n.add_argument("dir", help="folder to copy them into (created if needed)")
    n.add_argument("--force", action="store_true", help="overwrite chapters already there (loses changes in them)")
    n.set_defaults(func=cmd_notebooks)
    lab = sub.add_parser("lab", help="copy the chapters into a folder (first time) and open it in JupyterLab")
    lab.add_argument("dir", nargs="?", default="tlkit-notebooks", help="folder (default: ./tlkit-notebooks)")
    lab.add_argument("--force", action="store_true", help="overwrite chapters already there")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="passed on to jupyter lab (after --)")
    lab.set_defaults(func=cmd_lab)
    sub.add_parser("course", help="coursework: student/instructor versions, grade submissions (nbgrader)",
                   add_help=False)  # handled in main() by tlkit.course.main
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["assets"]:  # `tlkit assets --help` etc. belong to the assets parser
        from . import assets

        return int(assets.cli(argv[1:]) or 0)
    if argv[:1] == ["course"]:  # `tlkit course build|grade` has its own parser (nbgrader underneath)
        from . import course

        return int(course.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
