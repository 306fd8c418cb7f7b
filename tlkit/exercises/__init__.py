"""Self-checking exercises: the student writes a function, ``check`` tests what it *does*.

Each exercise builds fresh inputs (a fresh model, random tensors, random
snippets) from a seed, runs the student's function on them and compares the
result with a reference implementation or a property (row *i* is the vector of
word *i*; frozen BatchNorm statistics do not move). A wrong answer gets a hint
aimed at the usual mistake, never the solution. ``check`` only prints, so
"Run all" never stops on an exercise; ``grade`` (used by the hidden tests of
the graded notebooks, see ``tlkit.course``) raises and tries other seeds, so
an answer tuned to the visible inputs does not pass.

Chapters register their exercises in ``CHAPTERS`` (one module each, e.g.
``tlkit/exercises/ch3.py``); adding chapter 5 is one module and one line.
"""
from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["Exercise", "Mistake", "Result", "CHAPTERS", "all_exercises", "get", "run_check", "check", "grade"]

# chapter number -> module with EXERCISES (list[Exercise]) and quiz_questions(records)
CHAPTERS: dict[int, str] = {
    1: "tlkit.exercises.ch1",
    2: "tlkit.exercises.ch2",
    3: "tlkit.exercises.ch3",
    4: "tlkit.exercises.ch4",
    5: "tlkit.exercises.ch5",
}


class Mistake(AssertionError):
    """Raised by a check when the answer is wrong; the message is the hint shown to the student."""


@dataclass(frozen=True)
class Exercise:
    """One checked exercise.

    ``answer`` is the name of what the student defines in the notebook (a
    function), ``task`` the one-paragraph statement shown above the answer
    cell, and ``test(answer, rng)`` builds fresh inputs from ``rng``, runs the
    answer and raises ``Mistake(hint)`` when it is wrong.
    """

    id: str
    chapter: int
    title: str
    answer: str
    task: str
    test: Callable[[Callable[..., Any], np.random.Generator], None]
    points: int = 1


@dataclass(frozen=True)
class Result:
    """Outcome of one check: ``status`` is ``"passed"``, ``"failed"`` or ``"not answered"``."""

    exercise: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        mark = {"passed": "✔", "failed": "✘", "not answered": "…"}[self.status]
        return f"{mark} {self.exercise}: {self.message}"


def _load(chapter: int) -> Any:
    return importlib.import_module(CHAPTERS[chapter])


def all_exercises(chapter: int | None = None) -> list[Exercise]:
    """Every registered exercise, in chapter order (or only ``chapter``'s)."""
    chapters = [chapter] if chapter is not None else sorted(CHAPTERS)
    for c in chapters:
        if c not in CHAPTERS:
            raise KeyError(f"no exercises for chapter {c!r}; chapters with exercises: {sorted(CHAPTERS)}")
    return [ex for c in chapters for ex in _load(c).EXERCISES]


def get(exercise_id: str) -> Exercise:
    """The exercise called ``exercise_id`` (e.g. ``"ch3_freeze"``); the error lists the known ids."""
    prefix = exercise_id.split("_", 1)[0]
    chapter = int(prefix[2:]) if prefix[:2] == "ch" and prefix[2:].isdigit() else None
    for ex in all_exercises(chapter if chapter in CHAPTERS else None):
        if ex.id == exercise_id:
            return ex
    known = ", ".join(ex.id for ex in all_exercises())
    raise KeyError(f"unknown exercise {exercise_id!r}; known: {known}")


def _unanswered(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def _where(exc: BaseException) -> str:
    """The student's line that raised, if the traceback reaches one (notebook cells are ``<ipython-...>``)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "ipython-input" in f.filename
              or f.filename.startswith("<") or "/tmp/ipykernel" in f.filename]
    return f" (in your line: {frames[-1].line!r})" if frames and frames[-1].line else ""


def run_check(exercise_id: str, answer: Any, *, seed: int = 0) -> Result:
    """Run one exercise's test on ``answer`` with inputs drawn from ``seed``; never raises for the answer's sake.

    An answer that is ``None``/``...`` or raises ``NotImplementedError`` (nbgrader's
    stub) is "not answered"; one that raises anything else fails with the error
    and where it came from.
    """
    ex = get(exercise_id)
    if _unanswered(answer):
        return Result(ex.id, "not answered", "not answered yet: write your code in the cell above and run it.")
    if not callable(answer):
        return Result(ex.id, "failed", f"expected a function `{ex.answer}`, got {type(answer).__name__}.")
    try:
        ex.test(answer, np.random.default_rng(seed))
    except NotImplementedError:
        return Result(ex.id, "not answered",
                      "not answered yet: replace `raise NotImplementedError()` with your code and run the cell.")
    except Mistake as m:
        return Result(ex.id, "failed", str(m))
    except Exception as e:  # the student's code raised: say what and where, keep "Run all" going
        return Result(ex.id, "failed", f"your code raised {type(e).__name__}: {e}{_where(e)}")
    return Result(ex.id, "passed", "correct.")


def check(exercise_id: str, answer: Any, *, seed: int = 0) -> None:
    """Check ``answer`` for exercise ``exercise_id`` and print the verdict (a hint when it is wrong).

    Prints instead of raising so that "Run all" goes on past an unanswered or
    wrong exercise; ``run_check`` returns the ``Result`` instead.
    """
    print(run_check(exercise_id, answer, seed=seed))


def grade(exercise_id: str, answer: Any, *, seeds: Iterable[int] = (101, 202)) -> None:
    """Raise ``AssertionError`` with the hint unless ``answer`` passes on every seed (for autograding).

    The seeds differ from the visible check's, so an answer fitted to the
    inputs the student saw does not pass.
    """
    sentinel = os.environ.get("TLKIT_GRADE_SENTINEL")  # set by `tlkit course grade` in the working folder
    if sentinel and not os.path.exists(sentinel):
        os.makedirs(os.path.dirname(sentinel), exist_ok=True)
        open(sentinel, "w").close()  # the exercises after this one are graded normally
        raise AssertionError(f"{exercise_id}: your code deleted files of its working folder; 0 points for this "
                             "exercise. Exercises never need to delete files.")
    for s in seeds:
        r = run_check(exercise_id, answer, seed=s)
        if not r.passed:
            raise AssertionError(str(r))


# --------------------------------------------------------------------------- helpers for the checks
def close(a: Any, b: Any, *, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """``a`` and ``b`` have the same shape and values (tensors or arrays)."""
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=float)
    b = np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def need_loss(got: Any, reaches: str) -> None:
    """Raise a ``Mistake`` unless ``got`` is a finite scalar tensor still in the graph (its gradient reaches ``reaches``)."""
    if isinstance(got, (float, int, np.floating)):
        raise Mistake("the loss is a Python number (.item() or numpy?): it must stay a torch tensor so that its "
                      f"gradient reaches {reaches}.")
    need_tensor(got, "the loss")
    if got.dim() != 0:
        raise Mistake(f"return a scalar tensor (shape ()), got shape {tuple(got.shape)}.")
    if not got.requires_grad:
        raise Mistake("the loss is cut off from the graph (.item(), .numpy() or detach?): it must stay a torch "
                      f"tensor so that its gradient reaches {reaches}.")


def need_tensor(x: Any, what: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise a ``Mistake`` unless ``x`` is a torch tensor (of ``shape``)."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise Mistake(f"{what} should be a torch.Tensor, got {type(x).__name__}.")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise Mistake(f"{what} should have shape {tuple(shape)}, got {tuple(x.shape)}.")
    if not torch.isfinite(x.detach().float()).all():
        raise Mistake(f"{what} contains NaN or inf (a division by zero?).")
