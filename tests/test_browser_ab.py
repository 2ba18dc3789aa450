"""The attention app's A/B comparison in a real JupyterLab (headless chromium, a 1440 x 900 window): type
"randomised copy" in the B box, press "Compare A/B", the three-panel comparison appears titled with its metrics;
moving the Layer slider in the page redraws B's panel.  Screenshot in test-artifacts/browser/."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from browser_helpers import (chromium_page, find_app, jupyter_lab, kernel_eval, open_and_run_all, output_errors,
                             require_browser, screenshot, wait_for, wait_kernel_idle)

pytestmark = pytest.mark.browser

VIEWPORT = (1440, 900)

#: the comparison figure in the page: its title, panel titles, heatmap images (A, B, B − A) and whether it is clipped
_COMPARE_JS = """(area) => {
  const plot = Array.from(area.querySelectorAll('.js-plotly-plot'))
      .find(g => (g.querySelector('.gtitle') || {}).textContent && g.querySelector('.gtitle').textContent.includes('Spearman'));
  if (!plot) return null;
  const svg = plot.querySelector('svg.main-svg');
  return {title: Array.from(plot.querySelectorAll('.gtitle')).map(t => t.textContent).join(' '),
          panels: Array.from(plot.querySelectorAll('.annotation-text')).map(t => t.textContent),
          heatmaps: Array.from(plot.querySelectorAll('g.hm image')).map(i => i.getAttribute('href') || i.getAttribute('xlink:href') || ''),
          svg: svg ? Number(svg.getAttribute('width')) : 0,
          area: plot.closest('.jp-OutputArea-output').offsetWidth};
}"""


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A/B attention comparison"),
                nbformat.v4.new_code_cell('import explorer\napp = explorer.AttentionApp(model="mini-mae", image="chelsea")')]
    nbformat.write(nb, path)


def _compare_state(app):
    return app.element_handle().evaluate(_COMPARE_JS)


def test_attention_ab_comparison_in_the_page(tmp_path):
    require_browser()
    _notebook(tmp_path / "ab.ipynb")
    nb = "ab.ipynb"
    with jupyter_lab(tmp_path) as server, chromium_page(viewport=VIEWPORT) as page:
        try:
            open_and_run_all(page, server, nb)
            app, slider, _plot = find_app(page, "^Layer$")
            box = app.locator("input[placeholder^='B: a model']")
            box.fill("randomised copy")
            box.press("Tab")
            wait_for(lambda: kernel_eval(page, nb, "print(app.compare_box.value)").strip() == "randomised copy", 30,
                     "the B box's value to reach the kernel")
            app.locator("button", has_text="Compare A/B").click()
            first = wait_for(lambda: (s := _compare_state(app)) and len(s["heatmaps"]) == 3 and all(s["heatmaps"]) and s,
                             120, "the comparison figure with three panels")
            wait_kernel_idle(page, nb)
            page.locator(".jp-OutputArea .js-plotly-plot").filter(has_text="Spearman").first.scroll_into_view_if_needed()
            time.sleep(1.0)
            shot_before = screenshot(page, "ab-attention-compare")
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            wait_for(lambda: (s := _compare_state(app)) and s["heatmaps"][1] != first["heatmaps"][1] and s,
                     120, "B's panel to change after the Layer slider moved")
            # settled: the title says layer 1 and the figure fits its output area (it is refitted after a redraw)
            after = wait_for(lambda: (s := _compare_state(app)) and "layer 1" in s["title"] and s["svg"] <= s["area"] + 1
                             and s, 30, "the comparison to show layer 1 inside its output area")
            wait_kernel_idle(page, nb)
            kernel = kernel_eval(page, nb, "import numpy as _np\nprint(app.layer.value, app.model_b is not None, "
                                           "_np.allclose(_np.array(app.compare_fig.data[3].z, float), app.map_b()), "
                                           "_np.allclose(_np.array(app.compare_fig.data[1].z, float), "
                                           "app.maps.query_map(app.layer.value, app.head.value, app.query)))")
            page.locator(".jp-OutputArea .js-plotly-plot").filter(has_text="Spearman").first.scroll_into_view_if_needed()
            time.sleep(1.0)
            shot_after = screenshot(page, "ab-attention-compare-layer1")
            errors = output_errors(page)
        except Exception as e:
            shot = screenshot(page, "ab-attention-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}\n"
                                 f"server log:\n{server.log_tail(30)}") from e
    print(first["title"], first["panels"], shot_before, shot_after, kernel)
    assert "Spearman ρ(A, B)" in first["title"] and "patches shared" in first["title"]
    assert "layer 0" in first["title"] and "layer 1" in after["title"]
    assert any(p.startswith("A: mini-mae") for p in first["panels"])
    assert any("randomised (seed 0)" in p for p in first["panels"]) and "B − A" in first["panels"]
    assert kernel.split() == ["1", "True", "True", "True"], kernel  # B's panel is B's map at the new layer
    assert after["svg"] <= after["area"] + 1, after  # not clipped
    assert not errors, errors
