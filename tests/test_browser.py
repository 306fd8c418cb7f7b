"""End-to-end: a chapter's own control panel in a real browser, on both notebook stacks a student meets.

- JupyterLab 4 + ipywidgets 8 (the main venv);
- classic Notebook 6.5 + ipywidgets 7.7 (Colab's stack; ``scripts/classic_env.sh`` builds
  ``.venv-classic`` with only the Jupyter packages, sharing torch and the rest with the main venv).

Each starts the server on 127.0.0.1 (token, temp root, free port) with chapter 1 in smoke
mode (``TLKIT_SMOKE=1``), runs all cells (the chapter's scripted panel run lands on the
board), types 200 epochs into the panel's box, clicks Train, counts the live plot's image
updates in the page (at least 2 a second, never more than a second apart), clicks Stop,
trains a second run, and checks that the board shows both runs' best metric inside the
visible width of the panel (element boxes) and that the panel never scrolls sideways.
Then four more runs for a 6-run board. Screenshots go to ``out/screenshots/``.

Needs Debian's ``/usr/bin/chromium`` and Playwright's Python package (no ``playwright
install``: the browser is the system one).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHAPTER = ROOT / "notebooks" / "01_word_embeddings.ipynb"
SHOTS = ROOT / "out" / "screenshots"
CLASSIC = Path(os.environ.get("TLKIT_CLASSIC_VENV", ROOT / ".venv-classic"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(tmp_path: Path, kind: str):
    """Start JupyterLab ('lab') or classic Notebook ('classic'); returns (process, base url, token, log path)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(CHAPTER, root / CHAPTER.name)
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "TLKIT_SMOKE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if kind == "lab":
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    else:
        python = CLASSIC / "bin" / "python"
        if not python.exists():
            pytest.skip(f"{CLASSIC} is missing: run `bash scripts/classic_env.sh` (scripts/test.sh does)")
        cmd = [str(python), "-m", "notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={port}", "--port-retries=0", f"--notebook-dir={root}", f"--NotebookApp.token={token}"]
    log_path = tmp_path / f"{kind}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.flush()
            _stop(proc, base, token)
            pytest.fail(f"jupyter {kind} did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.5)
    return proc, base, token, log


def _stop(proc, base: str, token: str) -> None:
    try:  # polite shutdown first (stops the kernel too), then the process group we started
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(req, timeout=10).close()
        proc.wait(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(params=["lab", "classic"])
def server(request, tmp_path):
    proc, base, token, log = _server(tmp_path, request.param)
    try:
        yield request.param, base, token
    finally:
        _stop(proc, base, token)
        log.close()


# JavaScript: record the times the live plot's image changes (a MutationObserver on its src)
# Counts every new frame of the live plot: a change of the `src` of any `.tlkit-live-plot` image anywhere on
# the page. It watches the document rather than one element handle, so a view that the front end re-renders
# (a new <img> with the same class) is still counted; a plot that stops updating still fails the rate check.
WATCH = """() => { window.__tlkitUpdates = [];
  new MutationObserver((records) => {
      if (records.some((r) => r.target.matches && r.target.matches('.tlkit-live-plot, .tlkit-live-plot img')))
          window.__tlkitUpdates.push(performance.now()); })
      .observe(document.body, {attributes: true, attributeFilter: ['src'], subtree: true}); }"""


def _open_and_run_all(page, kind: str, base: str, token: str, tmp_path: Path) -> None:
    if kind == "lab":
        page.goto(f"{base}/lab/tree/{CHAPTER.name}?token={token}")
        page.locator(".jp-Notebook").first.wait_for(state="visible", timeout=120_000)
        page.get_by_text(re.compile(r"\|\s*Idle")).first.wait_for(timeout=120_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    else:
        page.goto(f"{base}/notebooks/{CHAPTER.name}?token={token}")
        page.wait_for_function("() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel "
                               "&& Jupyter.notebook.kernel.is_connected()", timeout=120_000)
        page.evaluate("() => Jupyter.notebook.execute_all_cells()")


def _wait_for_run_all(page, kind: str) -> None:
    """Until "Run all" has executed every code cell and the kernel is idle. The cells after the panel (claims,
    coursework) still run when the scripted run lands on the board; in classic Notebook the panel's view was
    removed and rendered again meanwhile, and a click in that window waited 60 s for a detached button."""
    if kind == "lab":
        page.get_by_text(re.compile(r"\|\s*Idle")).first.wait_for(timeout=300_000)
        return
    page.wait_for_function("() => !Jupyter.notebook.kernel_busy && Jupyter.notebook.get_cells().every("
                           "c => c.cell_type !== 'code' || (c.input_prompt_number !== '*' "
                           "&& c.input_prompt_number !== undefined && c.input_prompt_number !== null))",
                           timeout=300_000, polling=250)


def _box(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None, "element not rendered"
    return box


def test_chapter_panel_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    kind, base, token = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    # Classic Notebook sometimes removes the panel's view during "Run all" and a locator then waits 60 s for
    # an element that is gone (seen in about 1 of 4 runs here and in a fresh-clone CI run; cause not found:
    # nothing in tlkit closes the widget). Classic gets one more attempt in a new page, which opens the same
    # notebook and runs it again; a second failure fails the test, and JupyterLab gets no second attempt.
    for attempt in (1, 2):
        try:
            _drive_the_panel(kind, base, token, tmp_path)
            return
        except PlaywrightTimeout as exc:
            if kind != "classic" or attempt == 2:
                raise
            print(f"classic: attempt 1 timed out ({str(exc).splitlines()[0]}); trying once more in a new page")


def _drive_the_panel(kind: str, base: str, token: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    started = time.time()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(60_000)
        try:
            _open_and_run_all(page, kind, base, token, tmp_path)
            panel = page.locator(".tlkit-panel").first
            panel.wait_for(state="visible", timeout=300_000)           # the chapter's cells up to the panel
            # the chapter's scripted run ("Run all") lands on the board first
            expect(panel.locator(".tlkit-board")).to_contain_text("GloVe frozen", timeout=300_000)
            _wait_for_run_all(page, kind)
            button = lambda name: panel.locator("button", has_text=re.compile(rf"^\s*{name}\s*$"))  # noqa: E731
            status = panel.locator(".tlkit-status")

            epochs = panel.locator(".widget-text", has_text="epochs").locator("input")
            # long enough that it is still going after 4 s of watching on any machine (200 epochs of
            # chapter 1's MLP finished in under 4 s on an idle CI machine, and Stop then had nothing to stop)
            epochs.fill("5000")
            epochs.press("Tab")                                        # IntText syncs on blur / Enter
            panel.scroll_into_view_if_needed()
            # chapter 1 has one panel; its live plot is rendered (hidden until the first frame). Classic
            # Notebook twice lost the element between finding it and taking a handle on it in fresh-clone CI
            # runs (a 60 s wait for `.tlkit-live-plot` after it had been attached), so WATCH takes no handle.
            page.locator(".tlkit-live-plot").first.wait_for(state="attached", timeout=120_000)
            page.evaluate(WATCH)
            button("Train").click()
            expect(status).to_contain_text("training", timeout=120_000)
            t_train = time.time()
            page.wait_for_timeout(4_000)                               # watch the live plot for 4 s
            updates = page.evaluate("() => window.__tlkitUpdates")
            page.screenshot(path=str(SHOTS / f"{kind}_live_plot.png"), full_page=False)
            button("Stop").click()
            expect(status).to_contain_text("stopped at step", timeout=60_000)
            assert len(updates) >= 3, f"live plot updated {len(updates)} times in {time.time() - t_train:.1f} s"
            span = (updates[-1] - updates[0]) / 1000
            rate = (len(updates) - 1) / span
            gap = max(b - a for a, b in zip(updates, updates[1:])) / 1000
            print(f"{kind}: live plot {rate:.2f} updates/s over {span:.1f} s, longest gap {gap:.2f} s")
            assert rate >= 2.0, f"{kind}: the live plot updated {rate:.2f} times a second"
            assert gap <= 1.0, f"{kind}: the live plot waited {gap:.2f} s between updates"

            # a second run right away: never refused as "still going"
            epochs.fill("3")
            epochs.press("Tab")
            button("Train").click()
            expect(status).to_contain_text("finished", timeout=120_000)
            assert "still going" not in status.inner_text()
            board = panel.locator(".tlkit-board")
            expect(board.locator("tr")).to_have_count(4, timeout=30_000)   # header + 3 runs
            page.screenshot(path=str(SHOTS / f"{kind}_board_3_runs.png"), full_page=True)

            # the best metric of every run is inside the panel's visible width, and the panel does not scroll
            header = [t.strip() for t in board.locator("tr").first.locator("th").all_inner_texts()]
            col = next(i for i, h in enumerate(header) if h.startswith("best"))
            pbox = _box(panel)
            scroller = _box(board.locator("div").first)
            for row in board.locator("tr").all()[1:]:
                cell = _box(row.locator("td").nth(col))
                assert pbox["x"] <= cell["x"] and cell["x"] + cell["width"] <= pbox["x"] + pbox["width"] + 1, \
                    (cell, pbox)
                assert cell["x"] + cell["width"] <= scroller["x"] + scroller["width"] + 1, (cell, scroller)
            widths = page.evaluate("(el) => [el.scrollWidth, el.clientWidth]", panel.element_handle())
            assert widths[0] <= widths[1] + 1, f"the panel scrolls sideways: {widths}"

            for lr in ("0.01", "0.001", "0.03"):                       # a 6-run board for the screenshot
                lr_box = panel.locator(".widget-text", has_text="head LR").locator("input")
                lr_box.fill(lr)
                lr_box.press("Tab")
                button("Train").click()
                expect(board.locator("tr")).to_have_count(4 + ("0.01", "0.001", "0.03").index(lr) + 1,
                                                          timeout=120_000)
            expect(status).to_contain_text("finished", timeout=60_000)
            board.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / f"{kind}_board_6_runs.png"), full_page=True)
            panel.screenshot(path=str(SHOTS / f"{kind}_panel_6_runs.png"))
        except Exception:
            page.screenshot(path=str(SHOTS / f"{kind}_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(f"{kind}: browser test took {time.time() - started:.1f} s; screenshots in {SHOTS}")
