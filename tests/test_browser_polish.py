"""Issue 18 in a real JupyterLab (headless chromium, a 1440 x 757 window as a laptop has): clicks work after Run All
with the app off screen, figures fit the output area with the file browser open or closed, manual mode hides the
ratio curve.  Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

from browser_helpers import (chromium_page, jupyter_lab, kernel_eval, notebook_state, output_errors, plot_image_hrefs,
                             require_browser, run_all_and_wait, screenshot, wait_for, wait_kernel_idle,
                             wait_stable_hrefs)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = (1440, 757)

#: Every plotly figure in the page: its element's width, its drawn (svg) width and its box's width and display.
_PLOTS_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea .js-plotly-plot')).map(g => {
  const svg = g.querySelector('svg.main-svg');
  const box = g.parentElement;
  return {widget: !g.classList.contains('jp-RenderedPlotly'), el: g.offsetWidth, svg: svg ? Number(svg.getAttribute('width')) : 0,
          box: box.offsetWidth, area: g.closest('.jp-OutputArea-output').offsetWidth,
          shown: getComputedStyle(box).display !== 'none' && g.offsetParent !== null};
})"""

_TOP_JS = "() => { const p = document.querySelector('.jp-WindowedPanel-outer'); if (p) p.scrollTop = 0; }"


def _run_all_off_screen(page, server, nb: str) -> None:
    """Open ``nb``, Run All while keeping the notebook scrolled to its top (the apps render and update off screen)."""
    page.set_default_timeout(120_000)
    page.goto(server.notebook_url(nb), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="visible", timeout=120_000)
    wait_kernel_idle(page, nb, timeout=120)
    notebook_state(page, nb)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        page.evaluate(_TOP_JS)
        s = notebook_state(page, nb)
        if s.get("kernel") == "idle" and all(c is not None for c in s.get("counts", [])):
            break
        time.sleep(0.2)
    run_all_and_wait(page, nb, timeout=300)
    page.evaluate(_TOP_JS)
    time.sleep(1.0)
    early = output_errors(page)
    assert not early, "running the notebook produced errors:\n" + "\n---\n".join(early)


def _click_in(page, plot, fx: float, fy: float) -> None:
    drag = plot.locator("g.draglayer rect.nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def _fits(plots: list[dict]) -> list[dict]:
    """The figures (app figures and the notebook's static ones) drawn wider than the space they have (clipped or
    scrolled)."""
    return [p for p in plots if p["shown"] and p["svg"] > p["area"] + 1]


def _quickstart(page, server, nb: str) -> dict:
    _run_all_off_screen(page, server, nb)
    app = page.locator(".jp-OutputArea").filter(has=page.locator(".widget-label", has_text="Masking ratio")).last
    plot = app.locator(".js-plotly-plot").first
    seen = {"open": page.evaluate(_PLOTS_JS)}
    plot.scroll_into_view_if_needed()
    before = wait_stable_hrefs(app, timeout=60)
    seen["shot_open"] = screenshot(page, "polish-quickstart-browser-open")
    _click_in(page, plot, 0.1, 0.1)  # the Original panel's top-left patch
    wait_for(lambda: plot_image_hrefs(app) != before, 60, "the figure to change after a click on a patch")
    wait_kernel_idle(page, nb)
    seen["kernel"] = kernel_eval(page, nb, "print(app.result.spec.strategy, int(app.result.mask[0, 0]), app.curve.shown)")
    seen["after_click"] = page.evaluate(_PLOTS_JS)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    time.sleep(2.0)
    seen["closed"] = page.evaluate(_PLOTS_JS)
    plot.scroll_into_view_if_needed()
    seen["shot_closed"] = screenshot(page, "polish-quickstart-browser-closed")
    seen["errors"] = output_errors(page)
    return seen


def test_quickstart_click_after_run_all_off_screen_and_figures_fit(tmp_path):
    """Faults 1, 3, 5: Run All with the app below the fold, then a click on a patch hides it (manual mode, curve
    hidden); the 5-panel figure fits the output area with the file browser open, and grows when it closes."""
    require_browser()
    shutil.copy2(ROOT / "notebooks" / "01_quickstart.ipynb", tmp_path)
    nb = "01_quickstart.ipynb"
    with jupyter_lab(tmp_path) as server, chromium_page(viewport=LAPTOP) as page:
        try:
            seen = _quickstart(page, server, nb)
        except Exception as e:
            shot = screenshot(page, "polish-quickstart-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}\n"
                                 f"server log:\n{server.log_tail(30)}") from e
    print(seen)
    assert seen["kernel"].split() == ["manual", "1", "False"], seen["kernel"]  # the click reached Python; no curve
    static = [p for p in seen["open"] if not p["widget"] and p["shown"]]
    assert static and max(p["svg"] for p in static) > 800, static  # the notebook's own 1250-px figure, fitted
    for when in ("open", "after_click", "closed"):
        assert not _fits(seen[when]), (when, seen[when])
    app_figs = [p for p in seen["closed"] if p["widget"] and p["shown"]]
    assert app_figs, seen["closed"]
    main_open = max(p["svg"] for p in seen["open"] if p["widget"] and p["shown"])
    main_closed = max(p["svg"] for p in app_figs)
    assert main_open < 1250 and main_closed > main_open  # shrunk to fit beside the file browser, grown back
    assert main_closed <= 1250  # never wider than it was built
    assert not seen["errors"], seen["errors"]


def _attention_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    filler = "\n\n".join(f"Paragraph {i}: text that pushes the app below the fold." for i in range(40))
    nb.cells = [nbformat.v4.new_markdown_cell("# Attention, off screen\n\n" + filler),
                nbformat.v4.new_code_cell('import explorer\napp = explorer.AttentionApp(model="mini-mae", image="chelsea")'),
                nbformat.v4.new_code_cell("app.layer.value = 1  # updated at once, while still off screen")]
    nbformat.write(nb, path)


_HREFS = "els => els.map(e => e.getAttribute('href') || e.getAttribute('xlink:href') || '')"

#: Empty a plotly view as a lost update leaves it: no traces, no images.
_EMPTY_VIEW_JS = "g => { g.data.splice(0, g.data.length); g.querySelectorAll('image').forEach(i => i.remove()); }"


def test_attention_app_click_after_run_all_off_screen(tmp_path):
    """Fault 1 for the attention app: its query-patch click works after Run All rendered and updated it off screen.
    A view left empty (its traces lost) while the kernel shows a figure asks the kernel for it and redraws."""
    require_browser()
    _attention_notebook(tmp_path / "offscreen.ipynb")
    nb = "offscreen.ipynb"
    with jupyter_lab(tmp_path) as server, chromium_page(viewport=LAPTOP) as page:
        try:
            _run_all_off_screen(page, server, nb)
            app = page.locator(".jp-OutputArea").filter(has=page.locator(".widget-label", has_text="Layer")).last
            plot = app.locator(".js-plotly-plot").first
            plot.scroll_into_view_if_needed()
            before = wait_stable_hrefs(app, timeout=60)
            query_before = kernel_eval(page, nb, "print(app.query)").strip()
            _click_in(page, plot, 0.8, 0.8)
            wait_for(lambda: kernel_eval(page, nb, "print(app.query)").strip() != query_before, 60,
                     "the clicked patch to become the query")
            wait_kernel_idle(page, nb)
            query = kernel_eval(page, nb, "print(app.query, app.layer.value)").split()
            plots = page.evaluate(_PLOTS_JS)
            shot = screenshot(page, "polish-attention-click")
            # A view that lost its traces (an empty plot while the kernel holds a figure) asks for it and redraws.
            drawn = plot.locator("image").evaluate_all(_HREFS)
            plot.evaluate(_EMPTY_VIEW_JS)
            emptied = plot.locator("image").evaluate_all(_HREFS)
            kernel_eval(page, nb, "app.main.n_shown += 1")  # a figure is shown: the views check themselves
            wait_for(lambda: plot.locator("image").evaluate_all(_HREFS) == drawn, 60, "the emptied view to redraw")
            repaired = [m for m in page.console_log if "a figure view is empty" in m]
            errors = output_errors(page)
        except Exception as e:
            shot = screenshot(page, "polish-attention-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}") from e
    print(query, shot)
    assert query_before == "cls" and query[0].isdigit() and query[1] == "1", (query_before, query)
    assert drawn and not emptied and repaired, (len(drawn), len(emptied), page.console_log[-5:])
    assert not _fits(plots), plots
    assert not errors, errors
    assert before  # the map was drawn before the click



_LOOK_JS = """() => {
  const lum = c => { const m = (c || '').match(/[\\d.]+/g) || [0, 0, 0]; return (0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / 255; };
  const status = Array.from(document.querySelectorAll('.jp-OutputArea .widget-html div'))
      .find(e => (e.innerText || '').includes('figure updated'));
  const fig = document.querySelector('.jp-OutputArea .js-plotly-plot:not(.jp-RenderedPlotly)');
  const title = fig && fig.querySelector('.annotation-text');
  const bg = fig && fig.querySelector('rect.bg');
  return {status: status ? lum(getComputedStyle(status).color) : null,
          title: title ? lum(title.style.fill || getComputedStyle(title).fill) : null,
          paper: fig ? getComputedStyle(fig.querySelector('svg.main-svg')).backgroundColor : null,
          plotbg: bg ? [bg.style.fill, bg.style.fillOpacity] : null,
          page: lum(getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor)};
}"""


def test_apps_follow_the_dark_theme(tmp_path):
    """Dark theme: the app's figures switch to the dark look and its status text to the theme's colours (light on
    dark), and back when the theme is light again; screenshots in both themes."""
    require_browser()
    shutil.copy2(ROOT / "notebooks" / "01_quickstart.ipynb", tmp_path)
    nb = "01_quickstart.ipynb"
    looks, shots = {}, {}
    with jupyter_lab(tmp_path) as server, chromium_page(viewport=LAPTOP) as page:
        try:
            _run_all_off_screen(page, server, nb)
            app = page.locator(".jp-OutputArea").filter(has=page.locator(".widget-label", has_text="Masking ratio")).last
            app.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            looks["light"] = page.evaluate(_LOOK_JS)
            shots["light"] = screenshot(page, "polish-theme-light")
            for theme, dark in (("JupyterLab Dark", "True"), ("JupyterLab Light", "False")):
                page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
                wait_for(lambda: kernel_eval(page, nb, "print(app.fig.dark, app.curve.dark)").split() == [dark, dark], 60,
                         f"the app figures to follow {theme}")
                time.sleep(1.5)
                key = "dark" if dark == "True" else "light-again"
                looks[key] = page.evaluate(_LOOK_JS)
                shots[key] = screenshot(page, f"polish-theme-{key}")
            errors = output_errors(page)
        except Exception as e:
            shot = screenshot(page, "polish-theme-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}") from e
    print(looks, shots)
    light, dark, again = looks["light"], looks["dark"], looks["light-again"]
    assert dark["page"] < 0.3 < light["page"]  # the theme did change
    assert light["status"] < 0.5 < dark["status"]  # status text readable on each background
    assert light["title"] < 0.5 < dark["title"]  # figure text too
    assert light["paper"] == "rgb(255, 255, 255)" and dark["paper"] == "rgba(0, 0, 0, 0)"  # white, then the page shows
    assert again["paper"] == light["paper"] and again["plotbg"] == light["plotbg"]
    assert again["title"] == light["title"] and not errors
