"""Real JupyterLab + headless chromium, part 2: the cross-modal, RGB-D and video notebooks' apps (split from
test_browser.py so that pytest-xdist runs the two halves on different cores)."""

from __future__ import annotations

import re

import pytest

from browser_helpers import ROOT, drive_notebook, plot_image_hrefs, require_browser, screenshot, wait_for, wait_stable_hrefs

pytestmark = pytest.mark.browser


ALIGNMENT = ROOT / "notebooks" / "04_cross_modal_alignment.ipynb"


def _click_another_word(page, app) -> dict:
    """Click a word of the rendered caption that is not selected; the word's map must replace the old one."""
    words = app.locator(".widget-toggle-buttons").filter(has=page.locator(".widget-label", has_text=re.compile(r"^\s*Word\s*$"))
                                                         ).locator("button")
    before = wait_stable_hrefs(app, timeout=60)
    inactive = [i for i in range(words.count()) if "mod-active" not in (words.nth(i).get_attribute("class") or "")]
    target = words.nth(inactive[-1])  # the last word that is not shown yet
    target.scroll_into_view_if_needed()
    label = target.inner_text().strip()
    target.click()
    wait_for(lambda: plot_image_hrefs(app) != before, 60, "the word map to change after clicking a word")
    after = wait_stable_hrefs(app, timeout=60)
    app.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    shot = screenshot(page, "alignment-word-click")
    titles = " | ".join(app.locator(".js-plotly-plot").first.locator(".annotation-text").evaluate_all(
        "els => els.map(e => e.textContent || '')"))
    return {"word": label, "changed": sum(a != b for a, b in zip(before, after)), "screenshot": shot, "titles": titles,
            "active": words.filter(has_text=label).first.get_attribute("class")}


def test_alignment_notebook_word_click_and_layer_slider_in_jupyterlab(tmp_path):
    """notebooks/04_cross_modal_alignment.ipynb: the FusionApp's Layer slider and a click on a word change the map."""
    require_browser()
    seen = drive_notebook(ALIGNMENT, tmp_path, "alignment", slider_label=r"^\s*Layer\s*$", presses=1, then=_click_another_word)
    assert seen["value_before"] == "1" and seen["value_after"] == "0"
    assert seen["then"]["changed"] >= 1 and "mod-active" in seen["then"]["active"], seen["then"]
    assert f"'{seen['then']['word']}'" in seen["then"]["titles"], seen["then"]  # the map on screen is the clicked word's


RGBD = ROOT / "notebooks" / "07_rgbd_mae.ipynb"


def test_rgbd_notebook_depth_budget_slider_in_jupyterlab(tmp_path):
    """notebooks/07_rgbd_mae.ipynb: moving the MultiMAEApp's depth-visible slider changes the reconstruction."""
    require_browser()
    seen = drive_notebook(RGBD, tmp_path, "rgbd", slider_label=r"^\s*depth visible\s*$", presses=4)
    assert seen["value_before"] == "9%" and seen["value_after"] == "16%"  # 6 → 10 of 64 depth patches


VIDEO = ROOT / "notebooks" / "06_video_mae.ipynb"


def _video_timeline_and_export(page, app) -> dict:
    """The VideoMAEApp's sampling time line is drawn; its Export button writes the frames view."""
    read = lambda: app.locator(".js-plotly-plot .gtitle").evaluate_all("els => els.map(e => e.textContent || '')")  # noqa: E731
    # the sampling time line is a figure of its own: wait until it is drawn (a loaded machine draws it later)
    titles = wait_for(lambda: next((t for t in [read()] if any("frames ·" in x for x in t)), None), 60,
                      "the sampling time line's title")
    button = app.locator("button", has_text=re.compile(r"^\s*Export\s*$")).first
    button.scroll_into_view_if_needed()
    button.click()
    report = app.locator(".widget-html", has_text=re.compile("Exported|Export failed")).first
    report.wait_for(state="visible", timeout=180_000)
    app.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    shot = screenshot(page, "video-app")
    return {"titles": titles, "report": report.inner_text(), "screenshot": shot}


def test_video_notebook_frame_slider_in_jupyterlab(tmp_path):
    """notebooks/06_video_mae.ipynb: the VideoMAEApp's Frame slider swaps the frame on screen (from the cached sweep);
    the sampling time line is shown and Export writes the frames view with its sidecar."""
    require_browser()
    seen = drive_notebook(VIDEO, tmp_path, "video", slider_label=r"^\s*Frame\s*$", presses=3, then=_video_timeline_and_export)
    # the slider and the title count frames the same way, from 1 (it read 3 under "frame 4 of 8" before)
    assert seen["value_before"] == "1" and seen["value_after"] == "4"
    assert any(t.startswith("frame 4 of 8") for t in seen["then"]["titles"]), seen["then"]["titles"]
    assert any("8 of 32 frames · consecutive frames, centred" in t for t in seen["then"]["titles"]), seen["then"]["titles"]
    assert "Exported" in seen["then"]["report"], seen["then"]["report"]
    names = {p.name for p in (tmp_path / "figures").iterdir() if p.is_file()}
    assert {"generated-10000011-frames-tube-90-seed0." + s for s in ("pdf", "svg", "png", "json")} <= names, names
