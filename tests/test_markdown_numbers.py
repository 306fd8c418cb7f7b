"""No chapter types a number measured by its own run into markdown (issue 14).

Why: multi-threaded CPU training is not bit-reproducible and every library update
moves the results a little, so a number typed into prose from one run silently
becomes false. Measured values belong in a summary the run renders from its own
records (``report.say``) and in checked claims (``report.Claims``).

The rule, per markdown line (a line is the unit: a citation covers its line):

- flagged: a two-or-more-digit decimal in [0, 1) such as ``0.61`` or ``0.875``
  (accuracies, PADs, balances), a percentage (``61%``), a difference in points
  (``+11.8 points``, ``3 points``), a spread (``± 0.04``), and a time or memory
  amount (``7 minutes``, ``1.45 GB``, ``68 s``);
- allowed: a line that cites its source (``et al.`` or a year like ``2015``), so
  anchors from papers stay; anything in inline code (constants such as ImageNet's
  mean ``(0.485, 0.456, 0.406)``, settings); coursework marks in headings (``(1 point)``); a time/memory amount stated as a target or limit
  (``within 15 minutes``, ``under 1.5 GB``, ``at most``, ``limit``, ``about`` for
  smoke mode); a decimal given as a setting (``= 0.01``, ``lr 0.01``); and the
  phrases in ``ALLOWED`` below, each with its reason.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0[1-9]_*.ipynb"))   # every chapter, 5 too

PATTERNS = {
    "decimal result": re.compile(r"(?<![\w.])0\.\d{2,}(?![\d])"),
    "percentage": re.compile(r"\d+(?:\.\d+)?\s?%"),
    "points": re.compile(r"[+−-]?\d+(?:\.\d+)?\s*(?:percentage\s+)?points?\b"),
    "spread": re.compile(r"±\s?\d"),
    "time or memory": re.compile(r"\d+(?:[.,]\d+)?(?:\s*(?:GB|MB|minutes?|min|CPU-minutes|seconds)|\s+s)\b"),
}
CITATION = re.compile(r"et al\.|\b(?:19|20)\d\d\b")
TARGET_WORDS = re.compile(r"(?:within|under|at most|limit|target|budget|about|below|above|≤|<=|up to|more than|over)(?:\s+the)?\s*$",
                          re.IGNORECASE)
SETTING = re.compile(r"(?:=|lr|LR|rate|momentum|decay|weight|λ_max|w)\s*$")
ALLOWED = {
    # (phrase, why it is not a measured result of this run)
    ("0.5", "chance level of a two-domain classifier"),
    ("10%", "the share of each class when all ten are predicted equally often"),
    ("10 points", "a claim's margin, fixed before the run"),
    ("2 points", "a claim's margin, fixed before the run"),
    ("3 points", "a claim's margin, fixed before the run"),
    ("5 points", "a claim's margin, fixed before the run"),
}


def offending_numbers(text: str) -> list[tuple[str, str, str]]:
    """(kind, matched text, line) for every number in ``text`` the rule above flags."""
    allowed = {phrase for phrase, _ in ALLOWED}
    hits = []
    for line in text.splitlines():
        line = re.sub(r"`[^`]*`", "`…`", line)   # inline code holds constants and settings, not results
        if CITATION.search(line):
            continue
        grading = line.lstrip().startswith("#")   # "Exercise 1.1 (1 point)": marks for coursework, not results
        for kind, pattern in PATTERNS.items():
            for m in pattern.finditer(line):
                before = line[max(0, m.start() - 25):m.start()]
                if m.group(0).strip() in allowed:
                    continue
                if kind == "time or memory" and TARGET_WORDS.search(before):
                    continue
                if kind == "decimal result" and SETTING.search(before):
                    continue
                if kind == "points" and grading:
                    continue
                hits.append((kind, m.group(0), line.strip()))
    return hits


def test_the_rule_flags_typed_results_and_keeps_anchors_and_settings():
    flagged = offending_numbers("we measured DANN 0.61 ± 0.04 (+11.8 points); it took 15.4 minutes and 1.73 GB")
    assert {k for k, _, _ in flagged} == {"decimal result", "spread", "points", "time or memory"}
    assert offending_numbers("source-only reached 61% of the target") != []
    assert offending_numbers("the paper reports 0.52 → 0.77 (Ganin & Lempitsky 2015, table 2)") == []
    assert offending_numbers("targets: within 15 minutes and under 1.5 GB") == []
    assert offending_numbers("Adam with lr = 0.001 and momentum 0.9, body lr 0.001") == []
    assert offending_numbers("a discriminator near 0.5 does not prove alignment") == []
    assert offending_numbers("ImageNet's mean `(0.485, 0.456, 0.406)`") == []
    assert offending_numbers("mapping target 4s onto the cluster of 9s") == []
    assert offending_numbers("### Exercise 4.1: The gradient reversal layer (1 point)") == []


# Chapters whose prose still quotes numbers typed in from an earlier run (issue 14, not yet rewritten):
# strict, so the mark must go the moment a chapter is fixed.
NOT_YET: dict[str, str] = {}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[p.stem[:2]]))
                                  if p.stem[:2] in NOT_YET else p for p in NOTEBOOKS], ids=lambda p: p.stem)
def test_markdown_cells_quote_no_measured_numbers(path):
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for kind, match, line in offending_numbers(cell.source):
            problems.append(f"cell {i} ({cell.get('id')}): {kind} {match!r} in: {line[:120]}")
    assert not problems, ("markdown states numbers measured by a run; render them from the records with "
                          "report.say(...) after the cell that measures them:\n" + "\n".join(problems))
