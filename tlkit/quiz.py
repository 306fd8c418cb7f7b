"""Chapter quizzes: multiple-choice questions with an explanation for every option.

The widget-free half (``Option``, ``Question``, ``Quiz``: answering and
scoring) is plain Python and needs no ipywidgets; ``Quiz.show()`` renders it
with core ipywidgets only (RadioButtons, Button, HTML, VBox: the API shared by
ipywidgets 7.7 and 8, so it works in JupyterLab, Notebook, Colab and VS Code).
ipywidgets is imported inside ``show`` so that importing this module, or
``tlkit.train``, never pulls it in.

Questions about results are built from the chapter's ``report.records()``:
the correct option is computed from what this run measured, so it stays true
when the numbers change; a question whose result is missing is left out and
the quiz says which.
"""
from __future__ import annotations

import html
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

__all__ = ["Option", "Question", "Quiz", "for_chapter", "find", "records_table", "latest", "which_best"]


@dataclass(frozen=True)
class Option:
    """One answer: its text, whether it is right, and why (shown once chosen)."""

    text: str
    correct: bool
    why: str


@dataclass(frozen=True)
class Question:
    """A question with one correct option; ``from_run`` marks questions built from this run's results."""

    prompt: str
    options: tuple[Option, ...]
    from_run: bool = False

    def __post_init__(self) -> None:
        n_right = sum(o.correct for o in self.options)
        if len(self.options) < 2 or n_right != 1:
            raise ValueError(f"a question needs >= 2 options and exactly one correct one, got "
                             f"{len(self.options)} options and {n_right} correct: {self.prompt!r}")
        if any(not o.why.strip() for o in self.options):
            raise ValueError(f"every option needs an explanation: {self.prompt!r}")

    @property
    def answer(self) -> int:
        return next(i for i, o in enumerate(self.options) if o.correct)


@dataclass
class Quiz:
    """A list of questions and the answers given so far (question index -> option index)."""

    title: str
    questions: list[Question]
    skipped: list[str] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)

    def answer(self, question: int, option: int) -> Option:
        """Record ``option`` as the answer to ``question`` (0-based) and return it (``.correct``, ``.why``)."""
        if not 0 <= question < len(self.questions):
            raise IndexError(f"question {question} does not exist; this quiz has {len(self.questions)} (0-based)")
        q = self.questions[question]
        if not 0 <= option < len(q.options):
            raise IndexError(f"option {option} does not exist; question {question} has {len(q.options)} (0-based)")
        self.answers[question] = option
        return q.options[option]

    def score(self) -> tuple[int, int]:
        """(right answers so far, number of questions)."""
        right = sum(self.questions[q].options[o].correct for q, o in self.answers.items())
        return right, len(self.questions)

    def show(self) -> Any:
        """The quiz as a widget: per question, radio buttons, a Check button and the explanation."""
        import ipywidgets as W  # lazy: only the notebook needs it

        score = W.HTML()

        def refresh_score() -> None:
            right, n = self.score()
            score.value = f"<b>Score: {right} / {n}</b> ({len(self.answers)} answered)"

        boxes = [W.HTML(f"<h3>{html.escape(self.title)}</h3>")]
        for qi, q in enumerate(self.questions):
            tag = " <i>(from this run's results)</i>" if q.from_run else ""
            radio = W.RadioButtons(options=[(o.text, i) for i, o in enumerate(q.options)], value=None,
                                   layout=W.Layout(width="auto"))
            button = W.Button(description="Check", tooltip="check your answer")
            feedback = W.HTML()

            def on_click(_: Any, qi: int = qi, radio: Any = radio, feedback: Any = feedback) -> None:
                if radio.value is None:
                    feedback.value = "Pick an answer first."
                    return
                opt = self.answer(qi, radio.value)
                verdict = ("<span style='color:green'>✔ Right.</span>" if opt.correct
                           else "<span style='color:#b00'>✘ Not quite.</span>")
                feedback.value = f"{verdict} {html.escape(opt.why)}"
                refresh_score()

            button.on_click(on_click)
            boxes.append(W.VBox([W.HTML(f"<b>{qi + 1}. {html.escape(q.prompt)}</b>{tag}"), radio, button, feedback]))
        if self.skipped:
            boxes.append(W.HTML("<i>Left out (their results are not in this run): "
                                + html.escape("; ".join(self.skipped)) + "</i>"))
        refresh_score()
        boxes.append(score)
        return W.VBox(boxes)

    def __str__(self) -> str:
        lines = [self.title]
        for i, q in enumerate(self.questions):
            lines.append(f"{i + 1}. {q.prompt}")
            lines += [f"   ({chr(97 + j)}) {o.text}" for j, o in enumerate(q.options)]
        return "\n".join(lines)


# --------------------------------------------------------------------------- results of this run
Table = dict[tuple[str, str], list[dict[str, Any]]]


def records_table(records: Iterable[dict[str, Any]]) -> Table:
    """``report.records()`` grouped by (method, metric), in recording order (e.g. one per label budget)."""
    table: Table = {}
    for r in records:
        table.setdefault((r["method"], r["metric"]), []).append(r)
    return table


def find(records: Table, method: str, metric: str) -> float:
    """The last value recorded for (method, metric); ``KeyError`` naming it when this run did not record it."""
    if (method, metric) not in records:
        raise KeyError(f"{method} / {metric}")
    return float(records[(method, metric)][-1]["value"])


def latest(records: Table, metric: str) -> dict[str, float]:
    """method -> last value of ``metric``, for every method that recorded it."""
    return {m: float(rs[-1]["value"]) for (m, k), rs in records.items() if k == metric}


def which_best(prompt: str, values: dict[str, float], *, fmt: str = "{:.3f}") -> Question:
    """A result question "which X scored highest in this run?": one option per entry of ``values``."""
    if len(values) < 2:
        raise KeyError(f"at least two results for {prompt!r}")
    best = max(values, key=values.get)
    return Question(prompt, tuple(
        Option(name, name == best, f"{name}: {fmt.format(v)}" + (" — the highest in this run." if name == best
                                                                else f", below {best} ({fmt.format(values[best])})."))
        for name, v in values.items()), from_run=True)


QuestionSource = Question | Callable[[Table], Question]


def build(title: str, sources: Sequence[QuestionSource], records: Iterable[dict[str, Any]] = ()) -> Quiz:
    """A ``Quiz`` from fixed questions and builders of result questions (``records -> Question``).

    A builder whose result is missing (``KeyError``) is skipped and named in
    ``Quiz.skipped``, so a quiz shown before the chapter ran still works.
    """
    table = records_table(records)
    questions, skipped = [], []
    for s in sources:
        if isinstance(s, Question):
            q = s
        else:
            try:
                q = s(table)
            except KeyError as e:
                skipped.append(f"{(s.__doc__ or s.__name__).strip().splitlines()[0]} (needs {e.args[0]})")
                continue
        options = list(q.options)
        random.Random(q.prompt).shuffle(options)  # the right answer is not always first; same order every run
        questions.append(replace(q, options=tuple(options)))
    return Quiz(title, questions, skipped)


def for_chapter(chapter: int, records: Iterable[dict[str, Any]] = ()) -> Quiz:
    """Chapter ``chapter``'s quiz; pass ``report.records()`` so result questions use this run's numbers."""
    from tlkit import exercises

    if chapter not in exercises.CHAPTERS:
        raise KeyError(f"no quiz for chapter {chapter!r}; chapters with a quiz: {sorted(exercises.CHAPTERS)}")
    mod = exercises._load(chapter)
    return build(mod.QUIZ_TITLE, mod.QUIZ, records)
