"""End-to-end: the control panel in a real JupyterLab, driven by headless Chromium.

Starts ``jupyter lab`` on 127.0.0.1 (token, temp root dir, free port), opens
``tests/notebooks/panel_demo.ipynb``, runs all cells, clicks Train, waits until
the progress bar moves and the live plot has been redrawn, clicks Stop and
checks that the panel reports the stopped run. Screenshots go to the test's tmp
dir and a copy to ``/tmp/panel_screenshot.png``.

Needs Debian's ``/usr/bin/chromium`` and Playwright's Python package (no
``playwright install``: the browser is the system one).
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

CHROMIUM = "/usr/bin/chromium"
DEMO = Path(__file__).parent / "notebooks" / "panel_demo.ipynb"
SCREENSHOT_COPY = Path("/tmp/panel_screenshot.png")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port with a token; yields (base_url, token)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(DEMO, root / DEMO.name)
    port, token = free_port(), secrets.token_hex(16)
    # own settings dir: no "get Jupyter news?" toast over the panel, no user settings leaking in
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "OMP_NUM_THREADS": "1",          # tiny model on a shared CPU: one thread is fastest
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
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
                pytest.fail("jupyter lab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
            time.sleep(0.5)
        yield base, token
    finally:
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
        log.close()


def test_panel_trains_and_stops_in_a_real_browser(lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    base, token = lab
    started = time.time()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1700})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab/tree/{DEMO.name}?token={token}")
            page.locator(".jp-Notebook").first.wait_for(state="visible", timeout=120_000)
            # the kernel must be connected before "Run All", or the cells are not run
            page.get_by_text(re.compile(r"\|\s*Idle")).first.wait_for(timeout=120_000)
            panel = page.locator(".tlkit-panel")
            # by text: an icon font's glyph would be part of the button's accessible name
            button = lambda name: panel.locator("button", has_text=re.compile(rf"^\s*{name}\s*$"))  # noqa: E731
            for attempt in range(2):  # Run > Run All Cells (the menu command: no keyboard focus games)
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
                try:
                    panel.wait_for(state="visible", timeout=150_000)   # kernel start + torch import
                    break
                except PlaywrightTimeout:
                    page.screenshot(path=str(tmp_path / f"no_panel_{attempt}.png"), full_page=True)
                    if attempt:
                        raise
            progress = panel.get_by_text("ready · device")
            expect(progress).to_be_visible(timeout=30_000)
            page.screenshot(path=str(tmp_path / "panel_ready.png"), full_page=True)

            button("Train").click()
            # the progress label reports steps, and the live plot is redrawn at least twice
            expect(panel.get_by_text("samples/s").first).to_be_visible(timeout=120_000)
            plot = panel.locator("img").first
            page.wait_for_function(
                """(el) => { const t = el.innerText.match(/step (\\d+)\\//); return t && +t[1] >= 20; }""",
                arg=panel.element_handle(), timeout=120_000)
            first_src = plot.get_attribute("src")
            page.wait_for_function("([el, src]) => el.src && el.src !== src", arg=[plot.element_handle(), first_src],
                                   timeout=120_000)
            bar_width = page.evaluate("""(el) => { const b = el.querySelector('.progress-bar');
                                                    return b ? b.style.width || getComputedStyle(b).width : ''; }""",
                                      panel.element_handle())
            assert bar_width not in ("", "0%", "0px"), f"the progress bar did not move: width={bar_width!r}"
            page.screenshot(path=str(tmp_path / "panel_training.png"), full_page=True)

            button("Stop").click()
            expect(panel.get_by_text("stopped at step").first).to_be_visible(timeout=60_000)
            expect(panel.get_by_text("Run board")).to_be_visible(timeout=30_000)
            text = panel.inner_text()
            assert "weights and history so far are kept" in text
            assert "stopped" in panel.locator("table").inner_text()
            shot = tmp_path / "panel_stopped.png"
            panel.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, SCREENSHOT_COPY)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            shutil.copy(tmp_path / "failure.png", "/tmp/panel_browser_failure.png")
            raise
        finally:
            browser.close()
    print(f"browser test took {time.time() - started:.1f} s; screenshots in {tmp_path}")
