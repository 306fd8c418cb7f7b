"""Execute chapter notebooks headless (nbclient) and gather what they record.

Used by ``tlkit run`` and by the notebook tests. Each chapter runs in a fresh
kernel with ``TLKIT_REPORT`` pointing at a records file, so every
``tlkit.report.record(...)`` call in the chapter lands in ``ChapterResult.records``.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


@dataclass
class ChapterResult:
    """What one executed chapter produced."""

    name: str
    path: Path
    output: Path | None
    wall_s: float
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None          # failing cell's error (ename: evalue + source), None when it ran
    notebook: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def bundled_notebooks() -> Path:
    """The chapters that ship inside the installed package (``tlkit/notebooks`` in the wheel; in a
    repository checkout, the repository's ``notebooks/``)."""
    here = Path(__file__).resolve().parent
    inside = here / "notebooks"
    return inside if inside.is_dir() else here.parent / "notebooks"


def notebooks_dir() -> Path:
    """Where the chapters live: ``TLKIT_NOTEBOOKS``, the repository's ``notebooks/``, the copy
    bundled in the installed package, or ``./notebooks``."""
    env = os.environ.get("TLKIT_NOTEBOOKS")
    if env:
        return Path(env)
    bundled = bundled_notebooks()
    return bundled if chapters(bundled) else Path.cwd() / "notebooks"


def copy_notebooks(dest: str | os.PathLike, *, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy the bundled chapters into ``dest`` (created if needed), so a student opens and edits their
    own copies, never the installed ones. Returns (copied, kept): a chapter already in ``dest`` is kept
    as it is -- it may hold the student's work -- unless ``force=True``. Raises ``FileNotFoundError``
    when the package has no chapters (a broken install) and ``OSError`` when ``dest`` is not writable."""
    import shutil

    src = chapters(bundled_notebooks())
    if not src:
        raise FileNotFoundError(f"no chapter notebooks in {bundled_notebooks()}: this tlkit install is incomplete; "
                                "reinstall it (pip install --force-reinstall tlkit)")
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest} is a file; give a folder for the notebooks")
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for nb in src:
        target = dest / nb.name
        if target.exists() and not force:
            kept.append(target)
            continue
        shutil.copyfile(nb, target)
        copied.append(target)
    return copied, kept


def chapters(directory: Path | None = None) -> list[Path]:
    """Chapter notebooks ``NN_name.ipynb`` in order."""
    d = directory or notebooks_dir()
    return sorted(p for p in d.glob("[0-9][0-9]_*.ipynb")) if d.is_dir() else []


def select(names: list[str], directory: Path | None = None) -> list[Path]:
    """Chapters by prefix (``"01"``, ``"1"``, ``"01_word"``) or full name; unknown names raise."""
    available = chapters(directory)
    if not names:
        return available
    picked = []
    for name in names:
        key = name.removesuffix(".ipynb")
        if key.isdigit():
            key = f"{int(key):02d}"
        hits = [p for p in available if p.stem == key or p.stem.startswith(key)]
        if not hits:
            known = ", ".join(p.stem for p in available) or "none yet"
            raise LookupError(f"no chapter matches {name!r}; chapters: {known}")
        picked += [h for h in hits if h not in picked]
    return picked


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(path: str | os.PathLike, *, smoke: bool = True, out_dir: str | os.PathLike | None = None,
                 timeout: int = 900, kernel_name: str = "python3", env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> ChapterResult:
    """Execute ``path`` top to bottom in a fresh kernel; never raises for a failing cell.

    The executed copy is written to ``out_dir`` (if given). ``smoke`` sets
    ``TLKIT_SMOKE=1`` for the kernel. The working directory is ``cwd``, by default the notebook's folder.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from . import report

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="tlkit-run-") as tmp:
        records_file = Path(tmp) / "records.jsonl"
        values = {"TLKIT_REPORT": str(records_file), "TLKIT_CHAPTER": path.stem,
                  "TLKIT_SMOKE": "1" if smoke else "0",
                  # inline backend: figures land in the executed copy (a parent's MPLBACKEND=Agg would hide them)
                  "MPLBACKEND": "module://matplotlib_inline.backend_inline", **(env or {})}
        error = None
        t0 = time.perf_counter()
        with _env(**values):
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                    resources={"metadata": {"path": str(Path(cwd or path.parent).resolve())}})
            try:
                client.execute()
            except (CellExecutionError, CellTimeoutError) as exc:
                error = _short_error(str(exc))
            except Exception as exc:  # kernel died, missing kernel, ...
                error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        records = report.read(records_file)
    output = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        output = Path(out_dir) / path.name
        nbformat.write(nb, output)
    return ChapterResult(path.stem, path, output, wall, records, error, nb)


def _short_error(text: str, limit: int = 3000) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # strip ANSI colours from tracebacks
    return text if len(text) <= limit else text[:1200] + "\n...\n" + text[-1800:]
