"""Coursework on nbgrader: the exercise cells of every chapter, the course build and contained grading.

nbgrader (the standard for JupyterHub classrooms) does the assignment work:
the exercise cells carry its metadata (answer cells ``solution``, check cells
``grade`` with points and ``### BEGIN/END HIDDEN TESTS``, set-up and prompts
``locked``), ``nbgrader generate_assignment`` makes the student version
(solutions replaced by ``raise NotImplementedError()``, hidden tests removed)
and ``nbgrader autograde`` scores submissions. This module adds what a
transfer-learning course needs around it:

- ``coursework_cells``: the cells appended to a chapter, generated from the
  exercise table (``tlkit.exercises``) and the reference solutions
  (``course/solutions/chN.py``, kept out of the wheel and of the student
  notebooks); the chapter notebooks in the repository hold the student version.
- ``build``: instructor and student versions of every chapter plus an
  nbgrader course folder (``source/``, ``release/``, ``gradebook.db``).
- ``grade``: one CSV row per student, notebook and exercise. Only the
  coursework cells are graded (set-up + exercises, seconds), not the chapter's
  training (minutes, and nothing an exercise depends on: every check builds
  its own inputs). Each submission is autograded by nbgrader in its own
  temporary folder (HOME, TMPDIR and the kernel's working folder inside it), as
  a subprocess with a time limit: a cell that loops is interrupted after
  ``cell_timeout`` (that exercise scores 0), a notebook that outlives
  ``timeout`` is killed (its exercises score 0), output is capped, and a
  submission that deletes files loses only its own temporary folder. This is
  containment against accidents, not a security sandbox: run untrusted code
  in a container (nbgrader's docs say the same).
"""
from __future__ import annotations

import ast
import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import nbformat

from tlkit import exercises

__all__ = ["solutions_dir", "coursework_cells", "student_cells", "install", "executed_summary", "build", "grade",
           "GradeRow"]

TAG = "coursework"        # cells the grader keeps
QUIZ_TAG = "quiz"         # the self-test quiz: in the chapter, not graded
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def solutions_dir() -> Path:
    """Reference solutions: ``TLKIT_SOLUTIONS`` or the repository's ``course/solutions``."""
    env = os.environ.get("TLKIT_SOLUTIONS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "course" / "solutions"


def _need_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise RuntimeError("the course commands use nbgrader, which is not installed; install it with "
                           "`pip install 'tlkit[course]'` (or `pip install nbgrader`)") from None


# --------------------------------------------------------------------------- cells
def _solution_blocks(chapter: int, directory: Path | None = None) -> tuple[str, dict[str, str]]:
    """(set-up code, {exercise id: instructor answer cell}) from ``chN.py``'s ``# %% <id>`` blocks."""
    path = (directory or solutions_dir()) / f"ch{chapter}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no reference solutions for chapter {chapter}: expected {path} (a repository "
                                "checkout has course/solutions/; or set TLKIT_SOLUTIONS)")
    text = path.read_text()
    tree = ast.parse(text)
    doc_end = tree.body[0].end_lineno if tree.body and isinstance(tree.body[0], ast.Expr) else 0
    parts = re.split(r"^# %% (\S+)\s*$", "\n".join(text.splitlines()[doc_end:]), flags=re.M)
    setup, blocks = parts[0].strip(), {}
    for ex_id, body in zip(parts[1::2], parts[2::2]):
        blocks[ex_id] = body.strip()
    return setup, blocks


def _meta(grade_id: str, *, solution: bool = False, grade: bool = False, points: int = 0,
          tags: Iterable[str] = (TAG,)) -> dict[str, Any]:
    nbg: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
                           "solution": solution, "task": False}
    if grade:
        nbg["points"] = points
    return {"nbgrader": nbg, "tags": list(tags)}


def _cell(kind: str, source: str, cell_id: str, metadata: dict[str, Any]) -> Any:
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    c = make(source, metadata=metadata)
    c["id"] = cell_id
    return c


def coursework_cells(chapter: int, directory: Path | None = None) -> list[Any]:
    """The instructor version of chapter ``chapter``'s exercise and quiz cells (solutions and hidden tests in)."""
    setup, blocks = _solution_blocks(chapter, directory)
    exs = exercises.all_exercises(chapter)
    missing = [ex.id for ex in exs if ex.id not in blocks]
    if missing:
        raise ValueError(f"the chapter {chapter} solutions have no '# %% <id>' block for {missing}")
    total = sum(ex.points for ex in exs)
    cells = [_cell("markdown",
                   f"## Check yourself: exercises ({total} points)\n\n"
                   "Write each function in its cell, then run the check below it. A check runs your code on fresh "
                   "inputs (a new model, random tensors) and compares what it *does* with a reference; when "
                   "something is off it gives a hint, never the answer. An empty answer only says \"not answered "
                   "yet\", so \"Run all\" still works. Instructors grade these cells with `tlkit course grade`, which runs "
                   "them on their own: use only your function's arguments and the imports of the next cell.",
                   f"ch{chapter}-coursework", _meta(f"ch{chapter}_intro")),
             _cell("code", "from tlkit import exercises, quiz\n" + setup, f"ch{chapter}-coursework-setup",
                   _meta(f"ch{chapter}_setup"))]
    for i, ex in enumerate(exs, 1):
        cells.append(_cell("markdown", f"### Exercise {chapter}.{i}: {ex.title} ({ex.points} point"
                           f"{'s' if ex.points != 1 else ''})\n\n{ex.task}",
                           f"{ex.id}-task", _meta(f"{ex.id}_task")))
        cells.append(_cell("code", blocks[ex.id], f"{ex.id}-answer", _meta(f"{ex.id}_answer", solution=True)))
        test = (f'exercises.check("{ex.id}", {ex.answer})\n'
                "### BEGIN HIDDEN TESTS\n"
                f'exercises.grade("{ex.id}", {ex.answer})  # other seeds than the visible check\n'
                "### END HIDDEN TESTS")
        cells.append(_cell("code", test, f"{ex.id}-check", _meta(ex.id, grade=True, points=ex.points)))
    cells.append(_cell("markdown", "## Quiz\n\nPick an answer and press *Check*: every option comes with an "
                       "explanation. Questions marked *from this run's results* are built from what this notebook "
                       "measured above.", f"ch{chapter}-quiz-intro", {"tags": [QUIZ_TAG]}))
    cells.append(_cell("code", f"quiz.for_chapter({chapter}, report.records()).show()", f"ch{chapter}-quiz",
                       {"tags": [QUIZ_TAG]}))
    return cells


def student_cells(cells: list[Any]) -> list[Any]:
    """``cells`` as nbgrader's own preprocessors release them: solutions stubbed, hidden tests removed."""
    _need_nbgrader()
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = nbformat.v4.new_notebook(cells=copy.deepcopy(cells))
    nb.metadata["kernelspec"] = KERNELSPEC
    nb, res = ClearSolutions().preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, res)
    return list(nb.cells)


def _is_ours(cell: Any) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return TAG in tags or QUIZ_TAG in tags


def install(nb: Any, chapter: int, *, instructor: bool = False, directory: Path | None = None) -> Any:
    """Replace chapter ``chapter``'s coursework cells in ``nb`` (appended at the end if absent); returns ``nb``."""
    cells = coursework_cells(chapter, directory)
    if not instructor:
        cells = student_cells(cells)
    nb.cells = [c for c in nb.cells if not _is_ours(c)] + cells
    return nb


def _chapter_of(path: Path) -> int | None:
    m = re.match(r"(\d\d)_", path.name)
    return int(m.group(1)) if m else None


def executed_summary(nb: Any) -> dict[str, Any]:
    """What "Run all" left in an executed chapter: each check cell's printed text and whether the quiz rendered.

    The chapter tests use it to show that an unanswered copy runs through
    (every check says "not answered yet") and that the quiz widget appears.
    """
    checks = {}
    quiz_widget = False
    for c in nb.cells:
        meta = c.get("metadata", {})
        if meta.get("nbgrader", {}).get("grade"):
            checks[meta["nbgrader"]["grade_id"]] = "".join(o.get("text", "") for o in c.get("outputs", [])
                                                           if o.get("output_type") == "stream")
        if QUIZ_TAG in meta.get("tags", []) and c.get("cell_type") == "code":
            quiz_widget = any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                              for o in c.get("outputs", []))
    return {"checks": checks, "quiz_widget": quiz_widget}


# --------------------------------------------------------------------------- build
def build(out: str | os.PathLike, *, notebooks: str | os.PathLike | None = None,
          solutions: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """Write ``out/instructor/`` and ``out/student/`` versions of every chapter and the nbgrader course ``out/nbgrader/``.

    The instructor version is the chapter with the reference solutions and
    hidden tests in its exercise cells; ``nbgrader generate_assignment`` turns
    it into the student version (``out/nbgrader/release/chNN/``, copied to
    ``out/student/``). ``out/nbgrader`` is an ordinary nbgrader course folder
    (run ``nbgrader formgrader`` or ``nbgrader autograde`` there if you like);
    ``grade`` reads its gradebook.
    """
    _need_nbgrader()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from tlkit import runner

    out = Path(out).resolve()
    sol = Path(solutions) if solutions else None
    chapters = [p for p in runner.chapters(Path(notebooks) if notebooks else None)
                if _chapter_of(p) in exercises.CHAPTERS]
    if not chapters:
        raise FileNotFoundError(f"no chapter notebooks with exercises in {notebooks or runner.notebooks_dir()}")
    root = out / "nbgrader"
    for sub in ("instructor", "student", "nbgrader"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(_NBGRADER_CONFIG)
    written: dict[str, list[Path]] = {"instructor": [], "student": []}
    for path in chapters:
        ch = _chapter_of(path)
        nb = install(nbformat.read(path, as_version=4), ch, instructor=True, directory=sol)
        nb.metadata["kernelspec"] = KERNELSPEC
        nbformat.write(nb, out / "instructor" / path.name)
        (root / "source" / f"ch{ch:02d}").mkdir(parents=True)
        nbformat.write(nb, root / "source" / f"ch{ch:02d}" / path.name)
        written["instructor"].append(out / "instructor" / path.name)
    cfg = Config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    api = NbGraderAPI(CourseDirectory(config=cfg), config=cfg)
    for path in chapters:
        aid = f"ch{_chapter_of(path):02d}"
        res = api.generate_assignment(aid, force=True, create=True)
        if not res.get("success"):
            raise RuntimeError(f"nbgrader generate_assignment {aid} failed:\n{res.get('error') or res.get('log')}")
        released = root / "release" / aid / path.name
        text = released.read_text()
        if "BEGIN SOLUTION" in text or "HIDDEN TESTS" in text:  # never hand out a solution by accident
            raise RuntimeError(f"{released} still holds a solution or hidden test; not copied to student/")
        shutil.copy(released, out / "student" / path.name)
        written["student"].append(out / "student" / path.name)
    return written


# nbgrader's own settings for the course folder: 30 s per cell, output capped
_NBGRADER_CONFIG = """\
c = get_config()
c.Execute.timeout = 30
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 40
"""


# --------------------------------------------------------------------------- grade
@dataclass
class GradeRow:
    """One line of the grades CSV."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    message: str


def _graded_copy(nb: Any) -> Any:
    """Only the coursework cells (set-up and exercises): what grading executes."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if TAG in c.get("metadata", {}).get("tags", [])
                or c.get("metadata", {}).get("nbgrader", {}).get("grade_id")]
    nb.metadata["kernelspec"] = KERNELSPEC
    return nb


def _find_submissions(folder: Path) -> tuple[list[tuple[str, Path]], list[GradeRow]]:
    """(student, notebook) pairs: ``folder/<student>/**/*.ipynb``; loose files become error rows."""
    found, errors = [], []
    for p in sorted(folder.rglob("*.ipynb")):
        rel = p.relative_to(folder)
        if ".ipynb_checkpoints" in rel.parts:
            continue
        if len(rel.parts) < 2:
            errors.append(GradeRow(p.stem, p.name, "", 0.0, 0.0, "put each student's notebooks in a folder named "
                                   "after the student (SUBMISSIONS/<student>/<chapter>.ipynb); not graded"))
            continue
        found.append((rel.parts[0], p))
    return found, errors


def _safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "student"


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill nbgrader, its kernel (jupyter_client starts kernels in their own session) and their children."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(procs, timeout=10)


MAX_OUTPUT_BYTES = 100_000  # per exercise (answer + check cell); more is a runaway print, not an answer
_TRUNCATED = "... Output truncated ..."  # what nbgrader's LimitOutput leaves after max_lines


def _cell_messages(nb_path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """From nbgrader's autograded notebook: grade_id -> the error its cell ended with (the check's hint),
    and exercise id -> bytes of output its answer and check cells printed (-1: cut by LimitOutput)."""
    if not nb_path.is_file():
        return {}, {}
    errors: dict[str, str] = {}
    printed: dict[str, int] = {}
    for c in nbformat.read(nb_path, as_version=4).cells:
        gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if not gid:
            continue
        outs = c.get("outputs", [])
        errs = [o for o in outs if o.get("output_type") == "error"]
        if errs:
            errors[gid] = f"{errs[-1].get('ename')}: {errs[-1].get('evalue')}"[:500]
        elif c.get("cell_type") == "code" and c.get("execution_count") is None:
            errors[gid] = ("this cell never ran: grading stopped at an earlier cell that did not end when "
                           "interrupted (a loop that catches KeyboardInterrupt?)")
        ex = gid.removesuffix("_answer")
        size = sum(len(json.dumps(o)) for o in outs)
        cut = any(_TRUNCATED in str(o.get("text", "")) for o in outs)
        printed[ex] = -1 if cut or printed.get(ex) == -1 else printed.get(ex, 0) + size
    return errors, printed


def _grade_one(student: str, path: Path, course_root: Path, *, timeout: float, cell_timeout: int) -> list[GradeRow]:
    """Autograde one submitted notebook with nbgrader in a fresh temporary folder, as a killable subprocess."""
    from nbgrader.api import Gradebook

    ch = _chapter_of(path)
    aid = f"ch{ch:02d}" if ch is not None else None
    source = course_root / "source" / (aid or "-") / path.name
    if aid is None or not source.is_file():
        known = sorted(p.name for p in (course_root / "source").glob("ch*/*.ipynb"))
        return [GradeRow(student, path.name, "", 0.0, 0.0, f"not a chapter of this course (expected one of {known}); "
                         "not graded")]
    exs = exercises.all_exercises(ch)
    sid = _safe_id(student)
    with tempfile.TemporaryDirectory(prefix="tlkit-grade-") as tmp:
        tmp = Path(tmp)
        work = tmp / "course"
        for sub in ("home", "tmp", "runtime"):
            (tmp / sub).mkdir()
        shutil.copytree(course_root / "source" / aid, work / "source" / aid)
        shutil.copy(course_root / "gradebook.db", work / "gradebook.db")
        (work / "nbgrader_config.py").write_text(_NBGRADER_CONFIG.replace("Execute.timeout = 30",
                                                                          f"Execute.timeout = {int(cell_timeout)}"))
        dest = work / "submitted" / sid / aid
        dest.mkdir(parents=True)
        try:
            nbformat.write(_graded_copy(nbformat.read(path, as_version=4)), dest / path.name)
        except Exception as e:  # not a notebook at all
            return [GradeRow(student, path.name, ex.id, 0.0, float(ex.points), f"could not read the notebook: {e}")
                    for ex in exs]
        (dest / "tlkit-grading-sentinel").touch()  # nbgrader copies it into the kernel's working folder
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
        env["TLKIT_GRADE_SENTINEL"] = str(work / "autograded" / sid / aid / "tlkit-grading-sentinel")
        env.update(HOME=str(tmp / "home"), TMPDIR=str(tmp / "tmp"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
                   IPYTHONDIR=str(tmp / "home" / ".ipython"), MPLCONFIGDIR=str(tmp / "home" / ".mpl"),
                   MPLBACKEND="Agg", TLKIT_SMOKE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   PYTHONDONTWRITEBYTECODE="1")
        log = tmp / "nbgrader.log"
        t0 = time.monotonic()
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "nbgrader", "autograde", aid, "--student", sid, "--force",
                                     "--create"], cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except BaseException as e:  # the limit, or Ctrl-C of the grader: leave no kernel running
                _kill_tree(proc)
                if not isinstance(e, subprocess.TimeoutExpired):
                    raise
                return [GradeRow(student, path.name, ex.id, 0.0, float(ex.points),
                                 f"grading stopped after {timeout:.0f} s (an endless loop?); 0 points")
                        for ex in exs]
        elapsed = time.monotonic() - t0
        scores: dict[str, tuple[float, float]] = {}
        try:
            with Gradebook(f"sqlite:///{work / 'gradebook.db'}") as gb:
                nb = gb.find_submission_notebook(path.stem, aid, sid)
                scores = {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}
        except Exception as e:
            tail = log.read_text(errors="replace")[-400:] if log.is_file() else "(the log is gone too)"
            why = ("the grader's files were deleted (by the submission?)" if not work.exists()
                   or not (work / "gradebook.db").exists() else f"nbgrader autograde failed (exit {rc}): {e}")
            return [GradeRow(student, path.name, ex.id, 0.0, float(ex.points), f"{why}; 0 points. {tail.strip()}")
                    for ex in exs]
        msgs, printed = _cell_messages(work / "autograded" / sid / aid / path.name)
    rows = []
    for ex in exs:
        score, top = scores.get(ex.id, (0.0, float(ex.points)))
        msg = "" if score >= top else msgs.get(ex.id, "check cell missing or not run")
        n = printed.get(ex.id, 0)
        if n < 0 or n > MAX_OUTPUT_BYTES:
            score = 0.0
            msg = (f"printed {'more than ' if n < 0 else ''}{max(n, MAX_OUTPUT_BYTES) / 1e6:.1f} MB of output "
                   f"(the limit is {MAX_OUTPUT_BYTES // 1000} kB per exercise); 0 points. " + msg).strip()
        rows.append(GradeRow(student, path.name, ex.id, score, top, msg))
    return rows


def grade(submissions: str | os.PathLike, *, course: str | os.PathLike | None = None,
          csv_path: str | os.PathLike = "grades.csv", timeout: float = 180.0, cell_timeout: int = 30,
          progress: Any = print) -> list[GradeRow]:
    """Grade every ``submissions/<student>/<chapter>.ipynb``; write ``csv_path`` (one row per exercise) and return the rows.

    ``course`` is a folder made by ``build`` (default: built now into a
    temporary folder from the repository's chapters and solutions).
    ``timeout`` bounds each notebook, ``cell_timeout`` each cell.
    """
    _need_nbgrader()
    folder = Path(submissions)
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}: expected SUBMISSIONS/<student>/<chapter>.ipynb")
    found, rows = _find_submissions(folder)
    with tempfile.TemporaryDirectory(prefix="tlkit-course-") as tmp:
        root = Path(course) / "nbgrader" if course else None
        if root is None:
            build(tmp)
            root = Path(tmp) / "nbgrader"
        if not (root / "gradebook.db").is_file():
            raise FileNotFoundError(f"{root} is not a course built by `tlkit course build` (no gradebook.db)")
        for student, path in found:
            t0 = time.monotonic()
            got = _grade_one(student, path, root.resolve(), timeout=timeout, cell_timeout=cell_timeout)
            rows += got
            if progress:
                pts = sum(r.points for r in got)
                top = sum(r.max_points for r in got)
                progress(f"{student:>16} {path.name}: {pts:g}/{top:g} ({time.monotonic() - t0:.0f} s)")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["student", "notebook", "exercise", "points", "max_points", "message"])
        for r in rows:
            w.writerow([r.student, r.notebook, r.exercise, r.points, r.max_points, r.message])
    return rows


def main(argv: list[str] | None = None) -> int:
    """``tlkit course build|grade`` (see ``tlkit course --help``)."""
    import argparse

    p = argparse.ArgumentParser(prog="tlkit course", description="assign and grade the chapters' exercises "
                                "(nbgrader underneath)")
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("build", help="instructor and student versions of every chapter, plus an nbgrader course")
    b.add_argument("--out", required=True, help="folder to write (instructor/, student/, nbgrader/)")
    b.add_argument("--notebooks", help="chapters folder (default: the repository's notebooks/)")
    b.add_argument("--solutions", help="reference solutions folder (default: the repository's course/solutions/)")
    g = sub.add_parser("grade", help="grade SUBMISSIONS/<student>/<chapter>.ipynb into a CSV")
    g.add_argument("submissions", help="folder with one sub-folder per student")
    g.add_argument("--course", help="folder made by `tlkit course build` (default: build one now)")
    g.add_argument("--csv", default="grades.csv", help="CSV to write (default grades.csv)")
    g.add_argument("--timeout", type=float, default=180.0, help="seconds per notebook (default 180)")
    g.add_argument("--cell-timeout", type=int, default=30, help="seconds per cell (default 30)")
    s = sub.add_parser("sync", help="(maintainers) rewrite the exercise and quiz cells at the end of chapter notebooks")
    s.add_argument("notebooks", nargs="+", help="chapter notebooks to update in place")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, RuntimeError, ValueError) as e:  # a clear line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: Any) -> int:
    if args.what == "sync":
        for path in map(Path, args.notebooks):
            ch = _chapter_of(path)
            if ch not in exercises.CHAPTERS:
                print(f"{path}: no exercises for chapter {ch}; left alone")
                continue
            # load, change, save at once: other people edit other cells of the same notebook
            nbformat.write(install(nbformat.read(path, as_version=4), ch), path)
            print(f"{path}: coursework cells updated")
        return 0
    if args.what == "build":
        out = build(args.out, notebooks=args.notebooks, solutions=args.solutions)
        for kind, paths in out.items():
            print(f"{kind}: " + ", ".join(str(x) for x in paths))
        print(f"nbgrader course folder: {Path(args.out) / 'nbgrader'}")
        return 0
    rows = grade(args.submissions, course=args.course, csv_path=args.csv, timeout=args.timeout,
                 cell_timeout=args.cell_timeout)
    print(f"wrote {args.csv}: {len(rows)} rows, {len({r.student for r in rows})} students")
    return 0


if __name__ == "__main__":
    sys.exit(main())
