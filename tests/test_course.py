"""The instructor path end to end: build the course with nbgrader, fill student copies, grade them contained."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import nbformat
import pytest

from tlkit import course, exercises

pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
CH4 = "04_domain_adaptation.ipynb"


def _answer_cells(nb):
    return {c.metadata["nbgrader"]["grade_id"][:-len("_answer")]: c for c in nb.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    course.build(out)
    return out


def test_build_writes_instructor_student_and_nbgrader_versions(built):
    for ch in exercises.CHAPTERS:
        name = next(p.name for p in (ROOT / "notebooks").glob(f"{ch:02d}_*.ipynb"))
        instr = (built / "instructor" / name).read_text()
        student = (built / "student" / name).read_text()
        assert "BEGIN SOLUTION" in instr and "BEGIN HIDDEN TESTS" in instr
        assert "BEGIN SOLUTION" not in student and "HIDDEN TESTS" not in student
        assert "exercises.grade(" not in student and "raise NotImplementedError()" in student
        assert (built / "nbgrader" / "release" / f"ch{ch:02d}" / name).is_file()
    assert (built / "nbgrader" / "gradebook.db").is_file()
    assert "x.view_as(x)" not in (built / "student" / CH4).read_text()  # the GRL solution stays out


def test_repository_notebooks_hold_the_student_version():
    """notebooks/ is what students open: its coursework cells are nbgrader's student cells, in sync."""
    for ch in exercises.CHAPTERS:
        path = next((ROOT / "notebooks").glob(f"{ch:02d}_*.ipynb"))
        nb = nbformat.read(path, as_version=4)
        ours = [c for c in nb.cells if course._is_ours(c)]
        want = course.student_cells(course.coursework_cells(ch))
        assert [c.source for c in ours] == [c.source for c in want], f"run `python -m tlkit.course sync {path}`"
        assert nb.cells[-len(ours):] == ours, "the coursework cells come last"
        assert "BEGIN SOLUTION" not in path.read_text()


def _submit(built: Path, folder: Path, student: str, answers: dict[str, str]) -> None:
    nb = nbformat.read(built / "student" / CH4, as_version=4)
    cells = _answer_cells(nb)
    for ex_id, src in answers.items():
        cells[ex_id].source = src
    (folder / student).mkdir(parents=True)
    nbformat.write(nb, folder / student / CH4)


def _read(csv_path: Path) -> dict[tuple[str, str], dict]:
    with open(csv_path) as fh:
        return {(r["student"], r["exercise"]): r for r in csv.DictReader(fh)}


def test_grade_scores_good_wrong_looping_and_deleting_submissions(built, tmp_path):
    _, solution = course._solution_blocks(4)
    subs = tmp_path / "submitted"
    _submit(built, subs, "ada", solution)
    _submit(built, subs, "bob", {
        "ch4_grl": "def grad_reverse(x, coeff):\n    return x * 1\n",
        "ch4_coral": "import torch\ndef coral(f_s, f_t):\n    return ((torch.cov(f_s.T) - torch.cov(f_t.T)) ** 2).sum()\n",
        "ch4_lambda": "def dann_weight(p, lambda_max, gamma):\n    return lambda_max\n",
    })
    # an endless loop (sleeping, so that it spends the time limit without burning a shared CPU)
    _submit(built, subs, "cy", {**solution, "ch4_grl": "import time\nwhile True:\n    time.sleep(0.05)\n"})
    _submit(built, subs, "dee", {**solution,
                                 "ch4_coral": "import os, shutil\nshutil.rmtree(os.getcwd())\n" + solution["ch4_coral"],
                                 "ch4_lambda": "print('x' * 3_000_000)\n" + solution["ch4_lambda"]})
    (tmp_path / "keep.txt").write_text("outside the grader's folders")
    csv_path = tmp_path / "grades.csv"
    limit = 150.0
    t0 = time.monotonic()
    rows = course.grade(subs, course=built, csv_path=csv_path, timeout=limit, cell_timeout=20, progress=None)
    elapsed = time.monotonic() - t0
    assert elapsed < 4 * limit  # every notebook ended within its limit (none was killed: see the messages)
    got = _read(csv_path)
    assert len(rows) == len(got) == 12
    points = {k: float(v["points"]) for k, v in got.items()}
    assert points == {
        ("ada", "ch4_grl"): 1, ("ada", "ch4_coral"): 1, ("ada", "ch4_lambda"): 1,
        ("bob", "ch4_grl"): 0, ("bob", "ch4_coral"): 0, ("bob", "ch4_lambda"): 0,
        ("cy", "ch4_grl"): 0, ("cy", "ch4_coral"): 1, ("cy", "ch4_lambda"): 1,
        ("dee", "ch4_grl"): 1, ("dee", "ch4_coral"): 0, ("dee", "ch4_lambda"): 0,
    }, "\n".join(map(str, rows))
    assert "sign must be reversed" in got[("bob", "ch4_grl")]["message"]
    assert "normalisation is missing" in got[("bob", "ch4_coral")]["message"]
    assert "must start at 0" in got[("bob", "ch4_lambda")]["message"]
    assert "grad_reverse" in got[("cy", "ch4_grl")]["message"]          # its cell timed out, so no function
    assert "deleted files" in got[("dee", "ch4_coral")]["message"]
    assert "MB of output" in got[("dee", "ch4_lambda")]["message"]
    assert not any("stopped after" in r.message for r in rows)
    # nothing outside the temporary folders was touched
    assert (tmp_path / "keep.txt").is_file() and all((subs / s / CH4).is_file() for s in ("ada", "bob", "cy", "dee"))
    assert (built / "nbgrader" / "gradebook.db").is_file()


def test_a_notebook_that_outlives_its_limit_is_killed_and_scores_zero(built, tmp_path):
    psutil = pytest.importorskip("psutil")
    _, solution = course._solution_blocks(4)
    subs = tmp_path / "submitted"
    _submit(built, subs, "eve", {**solution, "ch4_grl": "while True:\n    pass\n"})
    t0 = time.monotonic()
    # the cell limit is longer than the notebook's, so only the notebook limit can stop it
    rows = course.grade(subs, course=built, csv_path=tmp_path / "g.csv", timeout=20, cell_timeout=600, progress=None)
    assert time.monotonic() - t0 < 20 + 30
    assert [r.points for r in rows] == [0, 0, 0]
    assert all("stopped after 20 s" in r.message for r in rows)
    def grading_processes():  # the kernel's connection file lies in the submission's temporary folder (TMPDIR)
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if any("tlkit-grade-" in a for a in (p.info["cmdline"] or [])):
                found.append(p)
        return found
    assert not grading_processes(), "the kernel of the killed notebook is still running"


def test_loose_files_and_unknown_notebooks_are_reported_not_graded(built, tmp_path):
    subs = tmp_path / "submitted"
    (subs / "zed").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), subs / "zed" / "99_other.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), subs / "loose.ipynb")
    rows = course.grade(subs, course=built, csv_path=tmp_path / "g.csv", progress=None)
    msgs = {r.notebook: r.message for r in rows}
    assert "folder named after the student" in msgs["loose.ipynb"]
    assert "not a chapter of this course" in msgs["99_other.ipynb"]


def test_cli_course_help_lists_build_and_grade(capsys):
    from tlkit import cli

    with pytest.raises(SystemExit):
        cli.main(["course", "--help"])
    out = capsys.readouterr().out
    assert "build" in out and "grade" in out
