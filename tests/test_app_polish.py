"""Issue 18: figures that fit the notebook, the manual-mode curve, uploads that say what happened, one error scale
per image.  Widget-level checks (the browser checks are in tests/test_browser_polish.py)."""

from __future__ import annotations

import html
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from explorer.viz.fit import MIN_FONT_PX, MODEBAR_PX, scaled_text_sizes, text_sizes, wrapped_titles
from explorer.widgets.figures import AppFigure, fitted_bundle, figure_row, hide_figure, replace_figure
from explorer.widgets.mae_app import MAEApp

from _tiny import save_tiny_mae, export_png as _export
from test_widgets import app, png_bytes, tiny_dir, upload_value  # noqa: F401 - the MAE app fixtures, shared


def _figure(width=900, title_px=14, ann_px=(16, None)):
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    fig.update_layout(width=width, height=300, title=dict(text="t", font=dict(size=title_px)), font=dict(size=11))
    for px in ann_px:
        fig.add_annotation(text="panel", font=dict(size=px) if px else None)
    return fig


# ------------------------------------------------------------------------------------------------ fitting figures
def test_fitted_bundle_wraps_plotlys_default_export_once():
    js = fitted_bundle()
    exports = re.findall(r"export\s*\{([^{}]*)\}", js)
    last = [n.strip() for n in exports[-1].split(",")]
    assert "__explorerFit as default" in last and sum(n.endswith(" as default") for n in last) == 1
    assert "FigureView" in " ".join(last)  # plotly's named exports are kept
    original = re.search(r"const __plotlyWidget = (\w+);", js).group(1)
    assert f"{original} as default" not in exports[-1]
    assert "new ResizeObserver" in js and "model.set('fit_width', width)" in js


def test_replace_figure_autosizes_inside_a_box_no_wider_than_the_figure():
    w = AppFigure()
    assert not w.shown and w.box.children == (w,)  # nothing on screen before the first figure: no empty chart
    replace_figure(w, _figure(width=900))
    assert w.shown and w.box.layout.max_width == "900px" and w.box.layout.width == "100%"
    assert w.layout.width is None and w.layout.autosize is True
    assert w.layout.height == 300 + MODEBAR_PX and w.layout.margin.t == 100 + MODEBAR_PX  # a strip for the toolbar
    assert w.natural_width == 900 and len(w.data) == 1
    hide_figure(w)
    assert not w.shown
    replace_figure(w, _figure(width=640))
    assert w.shown and w.box.layout.max_width == "640px"


def test_figures_in_a_row_start_from_their_width_and_wrap():
    a, b = AppFigure(row=True), AppFigure(row=True)
    row = figure_row(a, b)
    assert row.children == (a.box, b.box) and row.layout.flex_flow == "row wrap"
    replace_figure(a, _figure(width=500))
    assert a.box.layout.flex == "0 1 500px" and a.box.layout.width == "auto"


def test_text_scales_to_the_reported_width_with_a_floor():
    w = AppFigure()
    replace_figure(w, _figure(width=1000, title_px=14, ann_px=(16, None)))
    assert [a.font.size for a in w.layout.annotations] == [16, None]
    w.fit_width = 1000  # at its natural width nothing changes
    assert [a.font.size for a in w.layout.annotations] == [16, 11] and w.layout.title.font.size == 14
    w.fit_width = 750
    assert [a.font.size for a in w.layout.annotations] == [12, 9] and w.layout.title.font.size == 10.5
    w.fit_width = 300  # 0.3x: every font at the floor
    assert [a.font.size for a in w.layout.annotations] == [MIN_FONT_PX] * 2 and w.layout.font.size == MIN_FONT_PX
    replace_figure(w, _figure(width=1000, title_px=14, ann_px=(16,)))  # a new figure fits the width reported last
    assert w.layout.annotations[0].font.size == MIN_FONT_PX


def test_scaled_sizes_never_grow_and_keep_small_fonts():
    sizes = text_sizes(_figure(title_px=8, ann_px=(20,)).layout)
    assert sizes == {"font": 11.0, "title": 8.0, "annotations": [20.0]}
    up = scaled_text_sizes(sizes, 3.0)  # wider than built: unchanged
    assert up == {"font": {"size": 11.0}, "title": {"font": {"size": 8.0}}, "annotations": [{"font": {"size": 20.0}}]}
    down = scaled_text_sizes(sizes, 0.1)
    assert down["title"] == {"font": {"size": 8.0}}  # already below the floor: not raised
    assert down["annotations"] == [{"font": {"size": MIN_FONT_PX}}]


def test_subplot_titles_wider_than_their_panel_break_into_lines_on_screen():
    """Fault 7: the methods row's titles ran into each other ("…0.00) relevance (Chefer 2021)integrated…")."""
    from explorer.viz.maps import map_strip

    maps = {name: np.random.default_rng(0).random((4, 4)) for name in
            ("raw L0 mean", "rollout (mean, discard 0.00)", "relevance (Chefer 2021)", "integrated gradients (captum)")}
    fig = map_strip(np.zeros((32, 32, 3)), maps, cell=190, show_image=False)
    w = AppFigure()
    replace_figure(w, fig)
    texts = [a.text for a in w.layout.annotations]
    assert texts[0] == "raw L0 mean"  # short: unchanged
    assert [t.count("<br>") for t in texts[1:]] == [1, 1, 1]
    assert [t.replace("<br>", " ") for t in texts] == list(maps)  # broken at spaces, nothing dropped
    pitch = (fig.layout.width - fig.layout.margin.l - fig.layout.margin.r) * (fig.layout.annotations[1].x - fig.layout.annotations[0].x)
    for t in texts:  # every line fits its column at 16 px (0.55 em per character)
        assert all(len(line) * 0.55 * 16 <= pitch - 8 for line in t.split("<br>")), (t, pitch)
    extra = w.layout.margin.t - fig.layout.margin.t - MODEBAR_PX
    assert extra == round(fig.layout.margin.t + 1.3 * 16) - fig.layout.margin.t  # room above for the second line (whole px)
    assert [a.text for a in fig.layout.annotations] == list(maps)  # the figure (and its exports) keep one line
    assert wrapped_titles(go.Layout(width=2000, annotations=fig.layout.annotations))[0] == {}  # wide enough: no change


# ------------------------------------------------------------------------------------------------ fault 5: manual mode
def test_manual_mode_hides_the_ratio_curve_and_random_brings_it_back(app):
    assert app.curve.shown and len(app.curve.data) > 0
    height = app.curve.layout.height
    app.strategy_tb.value = "manual"
    assert not app.curve.shown and app.result.spec.strategy == "manual"
    assert app.curve.layout.height == height  # hidden, not squashed to a strip
    app.strategy_tb.value = "random"
    assert app.curve.shown and app.sweep is not None


def test_a_click_that_starts_a_manual_mask_hides_the_curve(app):
    app.paint([0, 1, 2])
    assert app.result.spec.strategy == "manual" and not app.curve.shown


# ------------------------------------------------------------------------------------------------ fault 6: uploads
def test_a_good_upload_is_named_and_the_sample_dropdown_goes_blank(app):
    assert app.sample_dd.value == "chelsea"
    small = (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)
    app.upload.value = upload_value(png_bytes(small), name="tiny cat.png")
    assert "⚠" not in app.status.value
    assert app.sample_dd.value is None  # it no longer names what is on screen
    assert "tiny cat.png" in app.upload_label.value
    assert "enlarged 1.3×" in app.status.value  # 48 px → the 64 px test model, said aloud
    app.sample_dd.value = "chelsea"  # choosing the sample again shows it again
    assert app.result.input.name == "chelsea"


def test_a_bad_upload_names_the_file_and_says_what_is_still_shown(app):
    before = app.result
    app.upload.value = upload_value(b"this is not an image", name="notes.txt")
    status = app.status.value
    assert "⚠" in status and "notes.txt was not loaded" in status
    assert "Still showing" in status and "chelsea" in status  # the line that named the image on screen stays
    assert app.result is before and app.sample_dd.value == "chelsea"
    assert "line-through" in app.upload_label.value and "notes.txt" in app.upload_label.value


# ------------------------------------------------------------------------------------------------ fault 9: error scale
def test_the_error_scale_is_one_per_image_across_strategies(app):
    scales = {}
    for strategy in ("random", "block", "grid"):
        app.strategy_tb.value = strategy
        scales[strategy] = app.fig.data[4].zmax
    random_sweep = app.cache.get(app.adapter, app.loaded, 0, "random", app.fit_dd.value)
    top = max(float(r.patch_error[r.mask].max()) for r in random_sweep.results)
    assert scales == {s: pytest.approx(top) for s in scales}
    # the block sweep's own largest error differs: the shared scale is a choice, not a coincidence
    block = app.cache.get(app.adapter, app.loaded, 0, "block", app.fit_dd.value)
    own = max(float(r.patch_error[r.mask].max()) for r in block.results)
    assert own != pytest.approx(top)
    app.per_view_scale.value = True  # the user asks for a scale per view
    app.strategy_tb.value = "block"
    assert app.fig.data[4].zmax == pytest.approx(own)
    assert app.export_request()["options"]["error_max"] == pytest.approx(own)  # the export draws what is on screen


# ------------------------------------------------------------------------------------------------ fault 4: reload
def test_a_view_drawn_after_a_reload_gets_the_figure_on_screen(app):
    """A view drawn after the page reloaded, when the figure changed in place since it was saved, asks for the
    figure on screen and gets it, with the change the last slider move made."""
    fig = app.fig
    assert fig.has_figure and not fig.stale  # saved with the figure: a page loading now draws it at once
    app.ratio.value = 0.5  # served by an in-place update: the saved state is now older than the screen
    saved = lambda: [im["source"] for im in fig._widget_layout["images"]]  # noqa: E731
    assert fig.stale and saved() != [im.source for im in fig.layout.images]
    sent = []
    fig.send = lambda content, buffers=None: sent.append(content)
    fig._on_page_message(fig, {"type": "explorer-restore"}, [])
    assert sent == [{"type": "explorer-restored"}]
    assert len(fig._widget_data) == 5
    assert saved() == [im.source for im in fig.layout.images]
    assert "50% hidden" in app.fig_caption.value
    fig._on_page_message(fig, {"type": "something else"}, [])
    assert len(sent) == 1


# ------------------------------------------------------------------------------------------------ dark theme
def test_dark_theme_switches_the_look_and_back_exactly():
    from explorer.viz.theme import DARK_BACKGROUND, DARK_TEXT

    w = AppFigure()
    fig = _figure()
    fig.update_layout(template="plotly_white", font=dict(color="#123456"))
    replace_figure(w, fig)
    light = w.layout.to_plotly_json()
    w.dark = True  # the page reported a dark theme
    assert w.layout.paper_bgcolor == DARK_BACKGROUND and w.layout.font.color == DARK_TEXT
    assert w.layout.template.layout.paper_bgcolor == "rgb(17,17,17)"  # plotly's dark template
    replace_figure(w, _figure(width=700))  # a figure shown while dark is drawn dark
    assert w.layout.font.color == DARK_TEXT and w.layout.paper_bgcolor == DARK_BACKGROUND
    assert fig.layout.font.color == "#123456"  # the figure handed in is not changed
    w.dark = False
    assert w.layout.font.color is None and w.layout.paper_bgcolor is None  # as _figure() built it
    replace_figure(w, fig)
    w.dark, w.dark = True, False
    assert w.layout.to_plotly_json() == light


def test_status_text_uses_the_themes_colours(app):
    from explorer.widgets import base, messages

    assert "var(--jp-ui-font-color1" in base._STATUS_STYLE and "var(--jp-error-color0" in messages._ERROR_STYLE
    app.ratio.value = 0.5
    assert "var(--jp-ui-font-color2" in app.status.value and "#444" not in app.status.value.replace(",#444", "")


# ------------------------------------------------------------------------------------------------ fault 11 in the app
def test_export_panel_lays_out_rows_and_shows_a_forced_rows_warning(app, tmp_path, recwarn):
    import json

    panel = app.export_panel
    panel.folder.value = str(tmp_path)
    panel.preset.value = "single-column"
    panel.formats["svg"].value = panel.formats["png"].value = False
    res = panel.export()
    assert res is not None and json.loads(res.files["json"].read_text())["style"]["rows"] == 2  # auto: two rows fit
    assert "rows=2" not in panel.status.value
    panel.rows.value = 1  # the user forces one row on a column too narrow for five panels
    res = panel.export()
    assert res is not None and json.loads(res.files["json"].read_text())["style"]["rows"] == 1
    assert "rows=2" in panel.status.value and any("rows=2" in n for n in res.notes)
    assert not [w for w in recwarn if "legible" in str(w.message)]  # shown in the panel, not on stderr


# ------------------------------------------------------------------------------------------------ reopen from a sidecar


def _view(app) -> dict:
    r = app.result
    return {"sha": r.input.sha256, "fit": r.input.fit_policy, "strategy": r.spec.strategy, "ratio": r.spec.ratio,
            "seed": r.spec.seed, "mask": r.mask.tolist(), "zmax": app.fig.data[4].zmax,
            "sources": [im.source for im in app.fig.layout.images], "model": app.adapter.model_id}


def test_from_sidecar_reopens_the_exported_view(app, tmp_path):
    app.fit_dd.value = "pad"
    app.strategy_tb.value = "block"
    app.seed.value = 3
    app.ratio.value = 0.4
    before = _view(app)
    res = _export(app, tmp_path, "block-view")
    again = MAEApp.from_sidecar(res.files["json"])
    assert _view(again) == before
    assert again.sample_dd.value == "chelsea" and again.per_view_scale.value is False
    # the reopened view exports the same figure, byte for byte
    res2 = _export(again, tmp_path, "block-view-again")
    assert res2.files["png"].read_bytes() == res.files["png"].read_bytes()


def test_from_sidecar_restores_a_hand_made_mask_and_a_per_view_scale_from_the_png(app, tmp_path):
    app.per_view_scale.value = True
    app.strategy_tb.value = "grid"
    app.paint([0, 5, 17, 40])
    before = _view(app)
    res = _export(app, tmp_path, "manual-view")
    again = MAEApp.from_sidecar(res.files["png"])  # the PNG carries its sidecar
    assert _view(again) == before and again.result.spec.strategy == "manual"
    assert sorted(np.flatnonzero(again.result.mask)) == [0, 5, 17, 40]


def test_reopen_button_restores_in_place_and_refuses_other_figures(app, tmp_path, tiny_dir):
    from explorer.export import export_recipe

    app.seed.value = 7
    app.ratio.value = 0.9
    before = _view(app)
    res = _export(app, tmp_path, "seed7")
    app.seed.value, app.ratio.value = 0, 0.25
    assert _view(app) != before
    app.export_panel.reopen_path.value = str(res.files["json"])
    app.export_panel.reopen_btn.click()
    assert _view(app) == before and "⚠" not in app.status.value
    other = export_recipe("error_strip", tmp_path / "strip", model=str(tiny_dir), inputs=["chelsea"], formats=["png"])
    app.export_panel.reopen_path.value = str(other.files["json"])
    app.export_panel.reopen_btn.click()
    shown = html.unescape(app.status.value)
    assert "⚠" in shown and "strip.json was exported with the 'error_strip' recipe; MAEApp reopens 'reconstruction'" in shown
    with pytest.raises(ValueError, match="'error_strip' recipe; MAEApp reopens 'reconstruction' figures"):
        MAEApp.from_sidecar(other.files["json"])
    assert _view(app) == before  # nothing changed
    app.export_panel.reopen_path.value = str(tmp_path / "missing.json")
    app.export_panel.reopen_btn.click()
    assert "⚠" in app.status.value and _view(app) == before


def test_the_state_a_later_page_draws_from_is_kept_without_sending_it_again():
    """Reload / Voila: the kernel's state of an app figure is the figure on screen (saved when it is replaced, without a
    message to the open views), and marked stale by an in-place change, so a page that loads later asks for it."""

    class Comm:  # stands in for the kernel's comm: records what would go to the open views
        kernel = object()
        comm_id = "test"

        def __init__(self):
            self.sent = []

        def send(self, data=None, metadata=None, buffers=None):
            self.sent.append(sorted((data or {}).get("state", {})))

        def on_msg(self, callback):
            pass

        def close(self, *args, **kwargs):
            pass

    w = AppFigure()
    w.comm = Comm()
    replace_figure(w, _figure(width=600))
    keys = {k for msg in w.comm.sent for k in msg}
    assert "has_figure" in keys and "_py2js_addTraces" in keys  # the spy sees what goes to the views
    assert "_widget_data" not in keys and "_widget_layout" not in keys and "stale" not in keys  # nothing re-sent
    assert len(w._widget_data) == 1 and w._widget_layout["height"] == 300 + MODEBAR_PX and w.stale is False
    assert w.get_state()["stale"] is False and len(w.get_state()["_widget_data"]) == 1  # what a new page is given
    w.comm.sent.clear()
    with w.batch_update():
        w.data[0].y = [1, 0]  # an in-place change, as a slider move makes
    assert w.stale is True and w.get_state()["stale"] is True
    assert not any("stale" in msg for msg in w.comm.sent)
    w._on_page_message(w, {"type": "explorer-restore"}, [])  # the late page asks; it gets the figure as it is now
    assert list(w._widget_data[0]["y"]) == [1, 0] and w.stale is False


# ------------------------------------------------------------------------------------------------ A/B comparison
def _title(fig) -> str:
    return fig.layout.title.text


def test_ab_comparison_with_a_randomised_copy_follows_every_mask(app):
    import explorer
    from explorer.attention.faithfulness import randomise_top_layers
    from explorer.viz.compare import pixel_difference

    assert not app.compare_fig.shown
    app.compare("randomised copy")
    assert app.compare_fig.shown and not app.compare_off.disabled
    b = app.model_b
    # an independent B: the same re-drawing, seed and blocks, reconstructed through the public API on the same mask
    ref_b, _ = randomise_top_layers(app.adapter, len(app.adapter.blocks), seed=0)
    for ratio in (0.75, 0.3):
        app.ratio.value = ratio
        a = app.result
        want = explorer.reconstruct(ref_b, "chelsea", ratio=ratio, seed=0, strategy="random")
        got = app.result_b()
        assert np.array_equal(got.mask, a.mask) and np.array_equal(want.mask, a.mask)
        assert got.psnr_masked == pytest.approx(want.psnr_masked, abs=1e-4)
        delta = got.psnr_masked - a.psnr_masked
        assert f"B − A {delta:+.1f} dB".replace("-", "−") in _title(app.compare_fig)
        assert f"the same {int(a.mask.sum())} patches hidden" in _title(app.compare_fig)
        diff = np.asarray(app.compare_fig.data[2].z, dtype=float)
        ref = pixel_difference(a, got)[::1, ::1]
        assert np.nanmax(np.abs(diff - np.round(ref, 4))) < 1e-6 and np.isnan(diff).sum() == (~a.pixel_mask).sum()
    app.paint([1, 2, 3, 30])  # a hand-made mask is given to B too
    assert np.array_equal(app.result_b().mask, app.result.mask) and "the same 4 patches hidden" in _title(app.compare_fig)
    assert app.model_b is b
    app.compare_off.click()
    assert app.model_b is None and not app.compare_fig.shown


def test_ab_comparison_refuses_a_model_with_another_grid(app, tmp_path):
    other = save_tiny_mae(tmp_path / "other", image_size=32)
    app.compare(str(other))
    assert "⚠" in app.status.value and "the same mask cannot be given to both" in html.unescape(app.status.value)
    assert app.model_b is None and not app.compare_fig.shown
    app.compare_box.value = str(app.model_box.value)  # the same checkpoint as B: Δ is exactly 0
    app.compare_btn.click()
    assert app.compare_fig.shown and "B − A +0.0 dB" in _title(app.compare_fig)
    assert np.nanmax(np.asarray(app.compare_fig.data[2].z, dtype=float)) == 0


def test_ab_comparison_shows_the_trained_model_beats_its_randomised_copy():
    app = MAEApp(model="mini-mae", image="chelsea", ratio=0.75)
    app.compare("randomised copy")
    a, b = app.result, app.result_b()
    assert b.psnr_masked < a.psnr_masked - 3  # the trained mini-mae is far ahead of weights that learned nothing
    assert "B − A −" in _title(app.compare_fig) and "randomised (seed 0)" in _title(app.compare_fig)


def _attention_view(app) -> dict:
    req = app.export_request()
    return {"options": req["options"], "sha": app.loaded.sha256, "model": app.adapter.model_id,
            "main": [list(map(list, app.main.data[2].z))], "title": app.main.layout.annotations[1].text}


def test_attention_app_reopens_its_exported_view(tiny_dir, tmp_path):
    from explorer.widgets.attention_app import AttentionApp

    app = AttentionApp(model=str(tiny_dir), image="chelsea")
    app.layer.value, app.head.value = 1, 0
    app.fusion.value, app.discard.value, app.residual.value = "max", 0.2, False
    app.panels.value = ("raw", "rollout")
    app.set_query((2, 3))
    before = _attention_view(app)
    res = _export(app, tmp_path, "attention-view")
    again = AttentionApp.from_sidecar(res.files["json"])
    assert _attention_view(again) == before
    assert _export(again, tmp_path, "attention-again").files["png"].read_bytes() == res.files["png"].read_bytes()
    fresh = AttentionApp(model=str(tiny_dir), image="chelsea")  # the Reopen button, in an app showing something else
    assert _attention_view(fresh) != before
    fresh.export_panel.reopen_path.value = str(res.files["png"])
    fresh.export_panel.reopen_btn.click()
    assert _attention_view(fresh) == before and "⚠" not in fresh.status.value
    with pytest.raises(ValueError, match="'attention_methods' recipe; MAEApp reopens 'reconstruction' figures"):
        MAEApp.from_sidecar(res.files["json"])


def test_the_plotly_view_methods_our_figures_patch_exist():
    """The views of AppFigure skip plotly's costly ``_doNotReportToPy`` mark and send the figure's deltas after the
    frame by wrapping methods of plotly's FigureView: a plotly release that renames them must fail here, not silently
    bring back the 20-30 ms full redraw on every slider step."""
    import pathlib

    import plotly

    from explorer.widgets.figures import fitted_bundle

    text = (pathlib.Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text(encoding="utf-8")
    for method in ("do_update(){", "do_relayout(){", "do_restyle(){", "handle_plotly_update(", "handle_plotly_relayout(",
                   "handle_plotly_restyle(", "_sendTraceDeltas(", "_sendLayoutDelta(", "_doNotReportToPy"):
        assert method in text, method
    bundle = fitted_bundle()
    assert re.search(r"__explorerPatchView\(\w+\);", bundle) and re.search(r"export\{[^{}]* as FigureView[^{}]*\}", bundle)
