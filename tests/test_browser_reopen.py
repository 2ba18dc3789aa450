"""The MAE app's A/B comparison, Export → Reopen and a reloaded tab, done by hand in a real JupyterLab (headless
chromium): every step is a click or a key press in the page, and the kernel is asked what it holds afterwards.
Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import json
import re
import time

import nbformat
import pytest

from browser_helpers import (chromium_page, jupyter_lab, kernel_eval, open_and_run_all, output_errors, screenshot,
                             wait_for, wait_kernel_idle)

pytestmark = pytest.mark.browser

NB = "reopen.ipynb"
#: the app's main figure and its A/B figure: how many <image> elements each plotly figure of the app draws
_IMAGES_JS = "els => els.map(g => g.querySelectorAll('.imagelayer image').length)"


def _notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('import explorer\napp = explorer.MAEApp(model="mini-mae", image="chelsea", '
                                          'ratio=0.6, seed=3)')]
    nbformat.write(nb, path)


def _app(page):
    return page.locator(".jp-OutputArea").filter(has=page.locator(".widget-label", has_text="Masking ratio")).last


def _type_and_press(app, placeholder: str, text: str, button: str) -> None:
    box = app.locator(f"input[placeholder^='{placeholder}']").first
    box.scroll_into_view_if_needed()
    box.fill(text)
    box.press("Tab")
    app.locator("button", has_text=re.compile(rf"^\s*{button}\s*$")).first.click()


def _steps(page, server, tmp_path) -> dict:
    seen = {}
    open_and_run_all(page, server, NB)
    app = _app(page)
    app.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    # A/B: B is the model's randomised copy, on the same image and mask
    _type_and_press(app, "B: a model", "randomised copy", "Compare A/B")
    # the comparison's figure exists (hidden) from the start: ask the kernel whether B is shown, then wait for its images
    wait_for(lambda: kernel_eval(page, NB, "print(app.compare_fig.shown)").strip() == "True", 120, "the A/B figure")
    wait_for(lambda: sum(app.locator(".js-plotly-plot").evaluate_all(_IMAGES_JS)) >= 5 + 2, 120, "the A/B images")
    wait_kernel_idle(page, NB)
    seen["ab"] = kernel_eval(page, NB, "print(app.name_b, app.compare_fig.shown, len(app.compare_fig.data), "
                                       "app.compare_fig.layout.title.text)")
    seen["ab_shot"] = screenshot(page, "reopen-ab")
    # Export the view on screen, change it, then Reopen the export from its sidecar
    button = app.locator("button", has_text=re.compile(r"^\s*Export\s*$")).first
    button.scroll_into_view_if_needed()
    button.click()
    app.locator(".widget-html", has_text=re.compile("Exported|Export failed")).first.wait_for(state="visible",
                                                                                              timeout=120_000)
    wait_kernel_idle(page, NB)
    sidecar = json.loads(kernel_eval(page, NB, "import json\nprint(json.dumps(str(app.export_panel.last.files['json'])))"))
    seen["sidecar"] = sidecar
    kernel_eval(page, NB, "app.seed.value = 7; app.ratio.value = 0.3")
    wait_kernel_idle(page, NB)
    seen["changed"] = kernel_eval(page, NB, "print(app.seed.value, app.ratio.value)").split()
    _type_and_press(app, "figures/", sidecar, "Reopen view")
    wait_for(lambda: kernel_eval(page, NB, "print(app.seed.value)").strip() == "3", 120, "the reopened view")
    wait_kernel_idle(page, NB)
    seen["reopened"] = kernel_eval(page, NB, "print(app.seed.value, round(app.ratio.value, 2), app.result.spec.seed, "
                                             "round(app.result.spec.ratio, 2))").split()
    seen["reopen_shot"] = screenshot(page, "reopen-view")
    # Reload the tab (the notebook saved first): the app's figures come back from the kernel, nothing re-run
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    time.sleep(2)
    count = kernel_eval(page, NB, "print(get_ipython().execution_count)").strip()
    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", state="visible", timeout=120_000)
    app = _app(page)
    app.wait_for(state="attached", timeout=120_000)
    app.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    wait_for(lambda: (app.locator(".js-plotly-plot").evaluate_all(_IMAGES_JS) or [0])[0] >= 5, 120,
             "the main figure drawn again after the reload")
    seen["after_reload"] = app.locator(".js-plotly-plot").evaluate_all(_IMAGES_JS)
    seen["count_after"] = kernel_eval(page, NB, "print(get_ipython().execution_count)").strip()
    seen["count_before"] = count
    seen["reload_shot"] = screenshot(page, "reopen-reloaded")
    seen["errors"] = output_errors(page)
    return seen


def test_mae_app_ab_export_reopen_and_reload_in_jupyterlab(tmp_path):
    """A/B from the page (randomised copy beside A), Export, change the view, Reopen the export from the page: the
    seed and ratio come back; then reload the tab: the app's figure is drawn again from the kernel."""
    _notebook(tmp_path / NB)
    with jupyter_lab(tmp_path) as server, chromium_page(viewport=(1440, 900)) as page:
        try:
            seen = _steps(page, server, tmp_path)
        except Exception as e:
            shot = screenshot(page, "reopen-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}\n"
                                 f"server log:\n{server.log_tail(30)}") from e
    print(seen)
    ab = seen["ab"]
    assert ab.startswith("mini-mae randomised (seed 3) True 3") and "B − A" in ab, ab
    assert seen["sidecar"].endswith(".json") and (tmp_path / seen["sidecar"]).is_file(), seen["sidecar"]
    assert seen["changed"] == ["7", "0.3"], seen["changed"]
    assert seen["reopened"] == ["3", "0.6", "3", "0.6"], seen["reopened"]
    assert seen["after_reload"][0] >= 5, seen["after_reload"]
    # the kernel ran nothing for the page to draw it (kernel_eval's own requests are not cells)
    assert seen["count_after"] == seen["count_before"], (seen["count_before"], seen["count_after"])
    assert not seen["errors"], seen["errors"]
