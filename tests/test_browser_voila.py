"""App mode (issue 18): the MAE app as a standalone Voilà page in headless chromium.

Voilà (as `make app` runs it: 127.0.0.1, sources stripped; plus a token, as when shared) serves a copy of
notebooks/apps/mae.ipynb; the page shows the title and the app without any code, the figure fits the page and
re-fits when the window narrows (AppFigure's ResizeObserver around plotly's widget bundle), and moving the masking
ratio slider with the keyboard changes the figure.  Screenshots go to test-artifacts/browser/voila-*.png.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from browser_helpers import (chromium_page, free_port, plot_image_hrefs, require_browser, screenshot, stop_process, tail_log, wait_for,
                             wait_stable_hrefs)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
APP_NOTEBOOK = ROOT / "notebooks" / "apps" / "mae.ipynb"
#: What the Voilà page may ask for outside this machine: Voilà's lab template links Font Awesome's stylesheets from a
#: CDN; offline they fail at once and the page does not need them (the widget manager brings the button icons).
#: Anything else off-host fails the test.
CDN_ALLOWED = re.compile(r"^https://cdn\.jsdelivr\.net/npm/@fortawesome/fontawesome-free@(?:\^|%5E)?5/css/[\w-]+\.min\.css$")

#: Every plotly figure on the page: its drawn (svg) width and the width of the app's column.
_PLOTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => {
  const svg = g.querySelector('svg.main-svg');
  const out = g.closest('.jp-OutputArea-output') || document.body;
  return {svg: svg ? Number(svg.getAttribute('width')) : 0, el: g.offsetWidth, area: out.clientWidth,
          shown: g.offsetParent !== null};
})"""


@dataclass
class VoilaServer:
    url: str  # http://127.0.0.1:PORT
    token: str
    log: Path
    proc: subprocess.Popen

    def app_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    def log_tail(self, n: int = 60) -> str:
        return tail_log(self.log, n)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # report the 302 itself


def _answer(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """HTTP status and Location header of a GET of ``url``, redirects not followed."""
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=timeout) as r:  # localhost only
            return r.status, r.headers.get("Location", "")
    except urllib.error.HTTPError as e:  # an answer all the same (e.g. 302 to the login page without the token)
        return e.code, e.headers.get("Location", "")


@contextlib.contextmanager
def voila(notebook: Path, workdir: Path, start_timeout: float = 60.0):
    """Start Voilà (this interpreter's) on a free 127.0.0.1 port for ``notebook`` (copied into ``workdir``), with the
    options `make app` passes and a token.  Jupyter config and runtime files live in ``workdir/.voila``; the server and
    its kernels are always stopped on exit."""
    shutil.copy2(notebook, workdir / notebook.name)
    state = workdir / ".voila"
    for d in ("config", "runtime", "data"):
        (state / d).mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "voila", notebook.name, "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
           "--Voila.port_retries=0", f"--token={token}", "--strip_sources=True"]
    log = state / "server.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    server = VoilaServer(f"http://127.0.0.1:{port}", token, log, proc)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"voila exited with {proc.returncode} before answering:\n{server.log_tail()}")
            try:  # the login page answers at once (the app's page runs the notebook first)
                if _answer(f"{server.url}/login")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"voila did not answer in {start_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop Voilà and its kernels (as browser_helpers stops JupyterLab, less the /api/shutdown Voilà does not have)."""
    stop_process(proc)


def _drive(page, server: VoilaServer) -> dict:
    seen: dict = {"off_host": []}
    page.on("request", lambda r: seen["off_host"].append(r.url)
            if urlparse(r.url).scheme in ("http", "https") and urlparse(r.url).hostname != "127.0.0.1" else None)
    page.set_default_timeout(120_000)
    t0 = time.monotonic()
    page.goto(server.app_url(), wait_until="domcontentloaded", timeout=120_000)  # Voilà runs the notebook, then answers
    slider = page.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text="Masking ratio")).first
    slider.wait_for(state="visible", timeout=120_000)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(state="visible", timeout=120_000)
    body = page.locator("body")
    try:
        before = wait_stable_hrefs(body, timeout=90)
    except TimeoutError as e:
        # In Voilà every figure is drawn before its view exists: AppFigure's view asks the kernel for it and, with no
        # answer in its 8 s, draws an empty plot with a note (explorer/widgets/figures.py); a late answer is ignored.
        notes = page.locator(".explorer-restore-note").count()
        raise TimeoutError(f"{e}; {notes} figure(s) with the 'could not be restored' note" if notes else str(e)) from None
    seen["ready_s"] = time.monotonic() - t0
    seen["text"] = page.inner_text("body")
    seen["code"] = page.evaluate("""() => ({
        inputs: document.querySelectorAll('.jp-CodeCell .jp-InputArea, .jp-InputArea-editor, .jp-Editor, .CodeMirror, .cm-editor').length,
        prompts: Array.from(document.querySelectorAll('.jp-InputPrompt, .jp-OutputPrompt'))
                   .filter(e => e.offsetParent !== null && e.textContent.trim()).length,
        title: (document.querySelector('h1') || {}).textContent || ''})""")
    seen["wide"] = page.evaluate(_PLOTS_JS)
    seen["shots"] = [screenshot(page, "voila-mae-before")]

    handle = slider.locator(".noUi-handle").first
    readout = slider.locator(".widget-readout").first
    seen["value_before"] = readout.inner_text().strip()
    handle.focus()
    for _ in range(3):
        handle.press("ArrowLeft")  # 0.75 -> 0.60
        time.sleep(0.3)
    wait_for(lambda: readout.inner_text().strip() != seen["value_before"], 30, "the slider readout to change")
    wait_for(lambda: plot_image_hrefs(body) != before, 60, "the plotly images to change after the slider move")
    after = wait_stable_hrefs(body, timeout=60)
    seen["value_after"] = readout.inner_text().strip()
    seen["changed"] = sum(a != b for a, b in zip(before, after))
    seen["n_images"] = len(after)
    seen["shots"].append(screenshot(page, "voila-mae-after"))

    # A narrower window: the figure re-fits (AppFigure's ResizeObserver works in Voilà too).
    page.set_viewport_size({"width": 900, "height": 1100})
    wait_for(lambda: max((p["svg"] for p in page.evaluate(_PLOTS_JS) if p["shown"]), default=0) < 900, 30,
             "the figure to re-fit a 900-px window")
    time.sleep(1.0)
    seen["narrow"] = page.evaluate(_PLOTS_JS)
    seen["shots"].append(screenshot(page, "voila-mae-narrow"))
    # Failed loads are the CDN's (counted against the off-host requests below); any other error fails the test.
    errors = [m for m in page.console_log if m.startswith(("error", "pageerror"))]
    seen["failed_loads"] = [m for m in errors if m.startswith("error: Failed to load resource: net::")]
    seen["console"] = [m for m in errors if m not in seen["failed_loads"]]
    seen["seconds"] = time.monotonic() - t0
    return seen


def test_mae_app_as_a_voila_page(tmp_path):
    """`make app`: the MAE app alone on a page (no code), live: the ratio slider redraws the figure, which fits the
    window; only the page's own server is asked for anything (Font Awesome's CDN stylesheet aside)."""
    require_browser()
    assert APP_NOTEBOOK.is_file(), "notebooks/apps/mae.ipynb is missing: run tools/build_notebooks.py"
    with voila(APP_NOTEBOOK, tmp_path) as server:
        # Without the token: the login page, not the app (the README tells a colleague to use the token).
        status, where = _answer(f"{server.url}/")
        assert status == 302 and where.startswith("/login"), (status, where)
        with chromium_page(viewport=(1440, 1300)) as page:
            try:
                seen = _drive(page, server)
            except Exception as e:
                shot = screenshot(page, "voila-mae-failure")
                raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}\n"
                                     f"voila log:\n{server.log_tail(30)}") from e
        log = server.log_tail(200)
    print({k: v for k, v in seen.items() if k != "text"})

    # App mode: the title and the app, no code and no prompts.
    assert seen["code"]["title"].strip().startswith("Masked autoencoder"), seen["code"]
    assert seen["code"]["inputs"] == 0 and seen["code"]["prompts"] == 0, seen["code"]
    assert "explorer.MAEApp(" not in seen["text"] and "import explorer" not in seen["text"]
    # Live: the keyboard moved the slider, the kernel redrew the figure.
    assert (seen["value_before"], seen["value_after"]) == ("0.75", "0.60"), seen
    assert seen["changed"] > 0, "the figure did not change when the masking ratio moved"
    # The figures fit the page, wide and narrow.
    for when in ("wide", "narrow"):
        shown = [p for p in seen[when] if p["shown"] and p["svg"]]
        assert shown, (when, seen[when])
        assert all(p["svg"] <= p["area"] + 1 for p in shown), (when, seen[when])
    assert max(p["svg"] for p in seen["narrow"] if p["shown"]) < max(p["svg"] for p in seen["wide"] if p["shown"])
    # Nothing failed on the page or in the kernel; nothing but the Font Awesome stylesheets came from elsewhere.
    assert not seen["console"], seen["console"]
    assert not re.search(r"Traceback|\bError\b", log), log
    assert not [u for u in seen["off_host"] if not CDN_ALLOWED.match(u)], seen["off_host"]
    assert len(seen["failed_loads"]) <= len(seen["off_host"]), seen["failed_loads"]
    # ~25 s on an idle 2-core machine (most of it Voilà running the notebook before it sends the page)
    assert seen["seconds"] < 150, f"{seen['seconds']:.0f} s"
