"""The UniFormer view in a real JupyterLab (headless chromium): notebook 09 runs end to end, then a click on the app's
input panel queries another token — the kernel's app holds the new query and the figure in the page changes (its
maps and the token boxes).  Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import contextlib
import json
import shutil
import time

import pytest

from browser_helpers import (ROOT, chromium_page, find_app, jupyter_lab, kernel_eval, open_and_run_all, output_errors,
                             require_browser, screenshot, wait_for, wait_kernel_idle)

pytestmark = pytest.mark.browser

NB = "09_uniformer.ipynb"
#: the plotted maps and shapes of a plotly figure element, as text (what changes when another token is queried)
_MAPS_JS = ("el => JSON.stringify([(el.data || []).filter(d => d.type === 'heatmap').map(d => d.z), "
            "(el.layout && el.layout.shapes || []).map(s => [s.x0, s.y0, s.x1, s.y1])])")


def _query(page) -> str:
    return kernel_eval(page, NB, "print(app.view.query if app.view is not None else None)").strip()


def test_click_a_token_in_the_uniformer_app(tmp_path):
    require_browser()
    shutil.copy2(ROOT / "notebooks" / NB, tmp_path / NB)
    with jupyter_lab(tmp_path) as server, chromium_page() as page:
        try:
            open_and_run_all(page, server, NB)
            app, _block, plot = find_app(page, "Block")
            wait_kernel_idle(page, NB)
            before_query = _query(page)
            plot.scroll_into_view_if_needed()
            wait_for(lambda: json.loads(plot.evaluate(_MAPS_JS))[0], 60, "the app's maps in the page")
            before = plot.evaluate(_MAPS_JS)
            shot_before = screenshot(page, "uniformer-before")
            # the input panel (subplot 1): click near its top-left corner, far from the query at the first shape
            drag = plot.locator("g.draglayer g.xy rect.nsewdrag").first
            box = drag.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.12, box["y"] + box["height"] * 0.12)
            wait_for(lambda: _query(page) != before_query, 60, "the kernel to take the clicked token")
            wait_for(lambda: plot.evaluate(_MAPS_JS) != before, 60, "the figure to change after the click")
            wait_kernel_idle(page, NB)
            after_query = _query(page)
            time.sleep(1.0)
            plot.scroll_into_view_if_needed()
            shot_after = screenshot(page, "uniformer-after")
            status = kernel_eval(page, NB, "print(app.status.value)")
            errors = output_errors(page)
        except Exception as e:
            with contextlib.suppress(Exception):
                screenshot(page, "uniformer-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nbrowser console:\n" + "\n".join(page.console_log[-20:]) +
                                 f"\nserver log:\n{server.log_tail(30)}") from e
    print(f"query {before_query} -> {after_query}; screenshots {shot_before}, {shot_after}")
    q = tuple(int(v) for v in after_query.strip("()").split(","))
    assert q != tuple(int(v) for v in before_query.strip("()").split(","))
    assert all(0 <= v < 20 for v in q), q  # the top-left corner of the 64 x 64 input, where the click was
    assert "⚠" not in status and f"(row {q[0]}, column {q[1]})" in status
    assert not errors, "cell outputs show errors:\n" + "\n---\n".join(errors)
