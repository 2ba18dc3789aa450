"""The cross-modal alignment app's A/B comparison in a real JupyterLab (headless chromium, a 1440 x 757 laptop window):
choose "randomised copy" in the B box, press "Compare A/B", and the three-panel comparison appears with its metric;
clicking another word redraws B's panel.  The screenshot goes to test-artifacts/browser/fusion-ab-compare.png."""

from __future__ import annotations

import re
import time

import nbformat
import pytest

from browser_helpers import (chromium_page, find_app, jupyter_lab, kernel_eval, open_and_run_all, output_errors,
                             require_browser, screenshot, wait_for, wait_kernel_idle, wait_stable_hrefs)

pytestmark = pytest.mark.browser

LAPTOP = (1440, 757)
NB = "fusion_ab.ipynb"

_PLOT_JS = """g => {
  const svg = g.querySelector('svg.main-svg');
  return {titles: Array.from(g.querySelectorAll('.annotation-text')).map(e => e.textContent || ''),
          title: Array.from(g.querySelectorAll('.annotation-text')).map(e => e.textContent || '').filter(t => t.includes('Spearman')).join(' '),
          images: g.querySelectorAll('image').length,
          svg: svg ? Number(svg.getAttribute('width')) : 0, area: g.closest('.jp-OutputArea-output').offsetWidth};
}"""


def _notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('from explorer.widgets.fusion_app import FusionApp\n'
                                          'app = FusionApp(model="mini-fusion", image="scene:10000003")')]
    nbformat.write(nb, path)


def _hrefs(plot) -> list[str]:
    """``href`` data URIs of the images (photo and maps) of one plotly figure."""
    return plot.locator("image").evaluate_all("els => els.map(e => e.getAttribute('href') || '')")


def _stable_hrefs(plot, timeout: float = 60.0) -> list[str]:
    """:func:`_hrefs` once there are some and they hold still for 1.5 s."""
    last, since = None, [0.0]

    def settled():
        nonlocal last
        cur = _hrefs(plot)
        if cur != last:
            last, since[0] = cur, time.monotonic()
            return None
        return cur if cur and all(cur) and time.monotonic() - since[0] >= 1.5 else None

    return wait_for(settled, timeout, "the comparison's images to settle")


def _b_map(page) -> str:
    return kernel_eval(page, NB, "import numpy as _np; c = app.comparison\n"
                                 "print(app.word, None if c is None else _np.round(c.b, 6).tobytes().hex()[:4000])").strip()


def _drive(page, server) -> dict:
    open_and_run_all(page, server, NB)
    app, _slider, _plot = find_app(page, r"^\s*Layer\s*$")
    wait_stable_hrefs(app, timeout=60)
    box = app.locator("input[placeholder^='B: a model']")  # the Compare-with combobox
    box.scroll_into_view_if_needed()
    box.fill("randomised copy")
    box.press("Enter")
    wait_for(lambda: kernel_eval(page, NB, "print(app.compare_box.value)").strip() == "randomised copy", 30,
             "the B box's value to reach the kernel")
    app.locator("button", has_text=re.compile(r"^\s*Compare A/B\s*$")).click()
    compare = app.locator(".js-plotly-plot").filter(has=page.locator(".annotation-text", has_text="Spearman"))
    compare.wait_for(state="visible", timeout=120_000)
    compare.scroll_into_view_if_needed()
    before = _stable_hrefs(compare)
    seen = {"first": compare.evaluate(_PLOT_JS), "b_before": _b_map(page)}
    # click a word that is not selected: B's panel must follow
    words = app.locator(".widget-toggle-buttons").filter(
        has=page.locator(".widget-label", has_text=re.compile(r"^\s*Word\s*$"))).locator("button")
    inactive = [i for i in range(words.count()) if "mod-active" not in (words.nth(i).get_attribute("class") or "")]
    target = words.nth(inactive[-1])
    target.scroll_into_view_if_needed()
    seen["word"] = target.inner_text().strip()
    target.click()
    wait_for(lambda: _hrefs(compare) != before, 60, "the comparison to change after clicking a word")
    after = _stable_hrefs(compare)
    wait_kernel_idle(page, NB)
    seen["changed"] = sum(a != b for a, b in zip(before, after))
    seen["second"] = compare.evaluate(_PLOT_JS)
    seen["b_after"] = _b_map(page)
    compare.scroll_into_view_if_needed()
    seen["shot"] = screenshot(page, "fusion-ab-compare")
    seen["errors"] = output_errors(page)
    return seen


def test_fusion_app_compares_a_with_its_randomised_copy_in_jupyterlab(tmp_path):
    require_browser()
    _notebook(tmp_path / NB)
    with jupyter_lab(tmp_path) as server, chromium_page(viewport=LAPTOP) as page:
        try:
            seen = _drive(page, server)
        except Exception as e:
            shot = screenshot(page, "fusion-ab-failure")
            raise AssertionError(f"{type(e).__name__}: {e}\nscreenshot: {shot}\nconsole: {page.console_log[-15:]}\n"
                                 f"server log:\n{server.log_tail(30)}") from e
    print(seen)
    first, second = seen["first"], seen["second"]
    assert len(first["titles"]) >= 3 and first["titles"][0].startswith("A: mini-fusion"), first
    assert first["titles"][1].startswith("B: mini-fusion randomised") and "difference B − A" in first["titles"][2], first
    assert first["images"] == 6, first  # three panels: the image under each, and a map over each
    assert "Spearman ρ(A, B) over 64 patches" in first["title"], first
    assert f"'{seen['word']}'" in second["title"] and "Spearman ρ(A, B)" in second["title"], second
    assert seen["changed"] >= 1
    w0, b0 = seen["b_before"].split(" ", 1)
    w1, b1 = seen["b_after"].split(" ", 1)
    assert w0 != w1 and b0 != "None" and b1 != b0, (seen["b_before"][:80], seen["b_after"][:80])  # B's panel followed
    assert second["svg"] <= second["area"] + 1, second  # fits the output area
    assert not seen["errors"], seen["errors"]
