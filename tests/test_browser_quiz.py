"""A chapter quiz answered in a real browser (JupyterLab + ipywidgets 8, Debian Chromium, Playwright).

Starts JupyterLab with the server helpers of ``test_browser.py``, opens a small notebook that shows
chapter 4's quiz built from fixed records, picks a wrong then the right option of the first question
and clicks *Check*: the page shows the verdict, the option's explanation and the score.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from test_browser import _server, _stop  # same server set-up as the panel's browser test
from tlkit import quiz

pytestmark = pytest.mark.browser

RECORDS = [{"method": "source_only", "metric": "target_acc", "value": 0.59},
           {"method": "dann", "metric": "target_acc", "value": 0.72},
           {"method": "dann", "metric": "gain_over_source_only", "value": 0.13}]


def test_quiz_question_answered_in_jupyterlab(tmp_path):
    from playwright.sync_api import sync_playwright

    proc, base, token, log = _server(tmp_path, "lab")
    try:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            f"from tlkit import quiz\nquiz.for_chapter(4, {RECORDS!r}).show()")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nbformat.write(nb, tmp_path / "root" / "quiz.ipynb")
        first = quiz.for_chapter(4, RECORDS).questions[0]  # same order as the kernel's: the shuffle is seeded
        right = first.options[first.answer]
        wrong = first.options[(first.answer + 1) % len(first.options)]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/quiz.ipynb?token={token}")
            page.locator(".jp-Notebook").first.wait_for(state="visible", timeout=120_000)
            page.get_by_text(re.compile(r"\|\s*Idle")).first.wait_for(timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            block = page.locator(".widget-vbox", has=page.get_by_text(first.prompt)).last
            block.wait_for(timeout=120_000)
            block.locator("label", has_text=wrong.text).first.click()
            block.get_by_role("button", name="Check").click()
            page.get_by_text("Not quite").first.wait_for(timeout=30_000)
            block.locator("label", has_text=right.text).first.click()
            block.get_by_role("button", name="Check").click()
            page.get_by_text("Right.").first.wait_for(timeout=30_000)
            assert right.why[:40] in block.inner_text()
            page.get_by_text(re.compile(r"Score: 1 / \d+")).first.wait_for(timeout=30_000)
            browser.close()
    finally:
        _stop(proc, base, token)
        log.close()
