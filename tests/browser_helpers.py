"""Harness for tests/test_browser.py: a throwaway JupyterLab server and a headless Debian chromium.

Nothing here touches the repository except ``test-artifacts/browser/`` (gitignored screenshots).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("EXPLORER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# Outputs that mean a cell or a widget callback failed. stderr (where JupyterLab also renders
# exceptions): a traceback or "SomethingError:"; stdout (e.g. an Output widget): a traceback only,
# since notebooks may print the message of an error they caught on purpose.
STDERR_ERROR = re.compile(r"Traceback|\b[A-Z]\w*(?:Error|Exception|Warning)\b:")
STDOUT_ERROR = re.compile(r"Traceback \(most recent call last\)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail_log(path: Path, n: int = 60) -> str:
    """The last ``n`` lines of a server's log file (for failure messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no server log)"


@dataclass
class LabServer:
    url: str  # http://127.0.0.1:PORT
    token: str
    root_dir: Path
    log: Path
    proc: subprocess.Popen

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def log_tail(self, n: int = 60) -> str:
        return tail_log(self.log, n)


def _get(url: str, token: str, timeout: float = 2.0) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - localhost only
        return r.read()


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, start_timeout: float = 60.0):
    """Start ``jupyter lab`` (this interpreter's) on a free localhost port serving ``root_dir``.

    Settings, workspaces and runtime files live in ``root_dir/.lab`` so the user's ~/.jupyter is
    neither read nor written. The news/update toast is switched off through overrides.json.
    The server (and its kernels) are always stopped on exit.
    """
    state = root_dir / ".lab"
    shutil.rmtree(state / "workspaces", ignore_errors=True)  # never restore tabs from an earlier run
    app_settings = state / "app-settings"
    app_settings.mkdir(parents=True, exist_ok=True)
    (app_settings / "overrides.json").write_text(
        json.dumps({"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}})
    )
    for d in ("user-settings", "workspaces", "config", "runtime"):
        (state / d).mkdir(exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(state / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.app_settings_dir={app_settings}",
        f"--LabApp.user_settings_dir={state / 'user-settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = state / "server.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, log, proc)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode} before answering:\n{server.log_tail()}")
            try:
                json.loads(_get(f"{server.url}/api/status", token))
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab did not answer /api/status in {start_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _stop(server)


def stop_process(proc: subprocess.Popen, polite=None) -> None:
    """Stop a server started in its own process group, and its kernels: ``polite()`` first when given (e.g. an HTTP
    shutdown that also shuts its kernels down), then SIGTERM and SIGKILL to the group, then any kernel left over."""
    kids = []
    with contextlib.suppress(Exception):
        import psutil

        kids = psutil.Process(proc.pid).children(recursive=True)  # kernels run in their own sessions
    if polite is not None and proc.poll() is None:
        with contextlib.suppress(Exception):
            polite()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for k in kids:
        with contextlib.suppress(Exception):
            if k.is_running():
                k.kill()


def _stop(server: LabServer) -> None:
    def shutdown():
        req = urllib.request.Request(
            f"{server.url}/api/shutdown", method="POST", headers={"Authorization": f"token {server.token}"}
        )
        urllib.request.urlopen(req, timeout=5).read()  # noqa: S310

    stop_process(server.proc, polite=shutdown)


@contextlib.contextmanager
def chromium_page(viewport=(1600, 1400)):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.console_log = console  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


# ---- JupyterLab state, read through window.jupyterapp (needs --LabApp.expose_app_in_browser) ------

_NOTEBOOK_STATE_JS = """(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return {ready: false, why: 'no app'};
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  if (!panel || !panel.content || !panel.sessionContext) return {ready: false, why: 'notebook not open: ' + path};
  if (app.shell.currentWidget !== panel) app.shell.activateById(panel.id);
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
  return {
    ready: panel.sessionContext.isReady && !!kernel,
    kernel: kernel ? kernel.status : null,
    counts: cells.map(c => c.model.executionCount),
    prompts: cells.map(c => (c.promptNode ? c.promptNode.textContent : '')),
    failed: cells.filter(c => c.model.outputs.toJSON().some(o => o.output_type === 'error')).length,
  };
}"""


def notebook_state(page, path: str) -> dict:
    """Kernel status and execution counts of the open notebook ``path`` (relative to the server root)."""
    return page.evaluate(_NOTEBOOK_STATE_JS, path)


_KERNEL_EVAL_JS = """async ([path, code]) => {
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel) return 'no kernel';
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let out = '';
  future.onIOPub = msg => {
    const t = msg.header.msg_type, c = msg.content;
    if (t === 'stream') out += c.text;
    else if (t === 'error') out += c.ename + ': ' + c.evalue;
  };
  await future.done;
  return out;
}"""

#: what the kernel says about every explorer app in the notebook's namespace when a figure did not change
_APP_STATE_PY = """
import threading as _t
for _k, _a in list(globals().items()):
    if hasattr(_a, 'is_quiet') and hasattr(_a, 'progress'):
        print(_k, type(_a).__name__, {n: getattr(getattr(_a, n, None), 'value', None) for n in ('layer', 'head', 'ratio', 'seed')},
              'last_update_ms', getattr(_a, 'last_update_ms', None), 'quiet', _a.is_quiet, 'loading', _a.loading,
              'status', str(getattr(getattr(_a, 'status', None), 'value', ''))[:300])
print('threads', [t.name for t in _t.enumerate()])
"""


def kernel_eval(page, path: str, code: str) -> str:
    """Run ``code`` in the kernel of the open notebook ``path`` (not as a cell) and return what it printed."""
    try:
        return page.evaluate(_KERNEL_EVAL_JS, [path, code])
    except Exception as e:  # noqa: BLE001 - a diagnostic must not hide the failure it explains
        return f"(kernel_eval failed: {type(e).__name__}: {e})"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def wait_kernel_idle(page, path: str, timeout: float = 120.0) -> dict:
    def idle():
        s = notebook_state(page, path)
        return s if s.get("ready") and s.get("kernel") == "idle" else None

    return wait_for(idle, timeout, "the notebook's kernel to be idle")


def run_all_and_wait(page, path: str, timeout: float = 300.0) -> dict:
    notebook_state(page, path)  # activates the notebook: run-all acts on the current one
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def done():
        s = notebook_state(page, path)
        ok = (
            s.get("kernel") == "idle"
            and not any("*" in p for p in s.get("prompts", []))
            # run-all stops at the first cell that raises: the cells after it never get a count
            and (s.get("failed") or all(c is not None for c in s.get("counts", [])))
        )
        return s if ok else None

    time.sleep(1.0)
    first = wait_for(done, timeout, "all cells to run")
    time.sleep(1.0)  # idle must hold: not a gap between two cells
    return wait_for(done, timeout, "all cells to run (second look)") or first


_HREFS_JS = "els => els.map(e => e.getAttribute('href') || e.getAttribute('xlink:href') || '')"


def plot_image_hrefs(area) -> list[str]:
    """``href`` data URIs of the images of every plotly figure inside ``area`` (a Playwright locator)."""
    return area.locator(".js-plotly-plot image").evaluate_all(_HREFS_JS)


def wait_stable_hrefs(area, timeout: float = 60.0, settle: float = 1.5) -> list[str]:
    """Image hrefs of the plotly figures in ``area``, once there are some and they stop changing."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        cur = plot_image_hrefs(area)
        if cur != last:
            last, since = cur, time.monotonic()
        elif cur and any(cur) and time.monotonic() - since >= settle:
            return cur
        time.sleep(0.25)
    raise TimeoutError(f"plotly image hrefs did not settle in {timeout:.0f} s (last: {len(last or [])} images)")


def output_errors(page) -> list[str]:
    """Texts of rendered outputs (stdout, stderr, errors, Output widgets) that show a failure."""
    texts = page.evaluate(
        """() => Array.from(document.querySelectorAll('.jp-OutputArea .jp-RenderedText'))
             .map(e => [e.getAttribute('data-mime-type') || '', e.innerText || ''])"""
    )
    # Widgets that report errors in an HTML status line (explorer's apps start them with a warning sign).
    statuses = page.evaluate(
        """() => Array.from(document.querySelectorAll('.jp-OutputArea .widget-html'))
             .map(e => (e.innerText || '').trim())"""
    )
    found = [
        t[:2000] for mime, t in texts
        if (STDERR_ERROR if mime == "application/vnd.jupyter.stderr" else STDOUT_ERROR).search(t)
    ]
    return found + [t[:2000] for t in statuses if t.startswith("⚠")]


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


# ---------------------------------------------------------------------------------------------- driving a notebook app
def require_browser():
    """Skip (fail under CI) when chromium or playwright is missing."""
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} is missing (run `make sysdeps` or `apt-get install -y chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright python package is missing (pip install -e '.[dev]')")
    if not problems:
        return
    import pytest

    if os.environ.get("CI"):
        pytest.fail("browser test cannot run in CI: " + "; ".join(problems))
    pytest.skip("browser test needs a browser: " + "; ".join(problems))


def drive_notebook(notebook: Path, workdir: Path, name: str, *, presses: int = 3, then=None, slider_label: str = "ratio") -> dict:
    """Open ``notebook`` (copied into ``workdir``) in JupyterLab, run all, move the ratio slider.

    Returns what it saw; asserts the figure changed and no output shows an error.
    """
    nb_name = notebook.name
    if notebook.parent != workdir:
        shutil.copy2(notebook, workdir / nb_name)
    t0 = time.monotonic()
    with jupyter_lab(workdir) as server, chromium_page() as page:
        try:
            return _drive(page, server, nb_name, name, presses, t0, then, slider_label)
        except Exception as e:
            # Leave evidence: a screenshot, the error outputs, the browser console and the server log.
            with contextlib.suppress(Exception):  # show the first error output, if any
                page.locator('.jp-OutputArea .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'
                             ).first.scroll_into_view_if_needed(timeout=2_000)
            shot = screenshot(page, f"{name}-failure")
            errors = output_errors(page)
            console = "\n".join(page.console_log[-20:])
            raise AssertionError(
                f"{type(e).__name__}: {e}\nscreenshot: {shot}\nerror outputs: {errors}\n"
                f"browser console (last 20):\n{console}\njupyter server log (tail):\n{server.log_tail(30)}"
            ) from e


def open_and_run_all(page, server, nb_name: str) -> None:
    """Open ``nb_name`` in JupyterLab, wait for its kernel, collapse the file browser, Run All, and assert no cell
    output shows an error."""
    page.set_default_timeout(120_000)
    page.goto(server.notebook_url(nb_name), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="visible", timeout=120_000)
    wait_kernel_idle(page, nb_name, timeout=120)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    run_all_and_wait(page, nb_name, timeout=300)
    early = output_errors(page)
    assert not early, "running the notebook produced errors:\n" + "\n---\n".join(early)


def find_app(page, slider_label: str = "ratio", *, slider_timeout: float = 60.0):
    """``(app output area, slider, first plotly figure)`` of the app whose slider is labelled ``slider_label`` (a
    regular expression), once the slider and the figure are visible."""
    labelled = page.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(slider_label, re.I))
    )
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea")
    slider = outputs.locator(labelled).first
    slider.wait_for(state="visible", timeout=slider_timeout * 1000)
    app = outputs.filter(has=labelled).last
    plot = app.locator(".js-plotly-plot").first
    plot.wait_for(state="visible", timeout=120_000)
    return app, slider, plot


def _drive(page, server, nb_name: str, name: str, presses: int, t0: float, then=None, slider_label: str = "ratio") -> dict:
    open_and_run_all(page, server, nb_name)

    # The app: the output area holding a slider labelled "...ratio..." and a plotly figure.
    app, slider, plot = find_app(page, slider_label)
    before = wait_stable_hrefs(app, timeout=120)
    handle = slider.locator(".noUi-handle").first
    readout = slider.locator(".widget-readout").first
    value_before = readout.inner_text().strip()
    now, lo, hi = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemin", "aria-valuemax"))
    key = "ArrowRight" if now < (lo + hi) / 2 else "ArrowLeft"

    slider.scroll_into_view_if_needed()
    plot.scroll_into_view_if_needed()
    shot_before = screenshot(page, f"{name}-before")

    handle.focus()
    for _ in range(presses):
        handle.press(key)
        time.sleep(0.3)
    wait_for(lambda: readout.inner_text().strip() != value_before, 30, "the slider readout to change")
    try:
        wait_for(lambda: plot_image_hrefs(app) != before, 120, "the plotly images to change after the slider move")
    except TimeoutError as e:
        # Say whether the kernel got the new value (and redrew) or not: the browser alone cannot tell.
        raise TimeoutError(f"{e}\nthe kernel says:\n{kernel_eval(page, nb_name, _APP_STATE_PY)}") from None
    after = wait_stable_hrefs(app, timeout=120)
    value_after = readout.inner_text().strip()
    wait_kernel_idle(page, nb_name, timeout=120)

    plot.scroll_into_view_if_needed()
    shot_after = screenshot(page, f"{name}-after")
    errors = output_errors(page)
    dialogs = page.locator(".jp-Dialog").count()
    print(f"{name}: slider {value_before} -> {value_after} ({presses}x {key}); "
          f"{len(before)} plot images, {sum(a != b for a, b in zip(before, after))} changed; "
          f"{time.monotonic() - t0:.1f} s")

    assert value_after != value_before
    assert after != before, f"the figure did not change when the {slider_label!r} slider moved"
    assert not errors, "cell outputs show errors:\n" + "\n---\n".join(errors)
    assert dialogs == 0, "JupyterLab shows a dialog (error?); see " + str(shot_after)
    seen = {"before": before, "after": after, "value_before": value_before, "value_after": value_after,
            "screenshots": [shot_before, shot_after]}
    if then is not None:
        seen["then"] = then(page, app)
    return seen
