"""The cross-modal alignment app: A/B comparison of two models' word maps, and reopening an exported view from its
sidecar.  The comparison is checked against maps computed independently through the compute API (``align``,
``randomise_fusion_layers``) and its metrics against scipy / the pointing game."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

import explorer.widgets.fusion_app as FA
import explorer.widgets.fusion_panels as FP
from explorer.fusion import align, pointing_hits
from explorer.fusion.compare import box_coverage, compare_maps, energy_in_box, pointing_hit, rank_correlation
from explorer.fusion.faithfulness import randomise_fusion_layers
from explorer.viz.compare_words import title_of
from explorer.widgets.fusion_app import FusionApp
from _tiny import export_png as _export


@pytest.fixture()
def app():
    return FusionApp(model="mini-fusion", image="scene:10000003")  # "a green circle above a blue triangle"


def _save_mini_fusion(folder, **overrides):
    """A random-weight mini fusion model with config ``overrides`` (another grid, fewer words), saved as shipped."""
    import torch
    from safetensors.torch import save_file

    from explorer.models.mini.fusion import FusionConfig, MiniFusion

    torch.manual_seed(0)
    cfg = FusionConfig(dim=32, heads=2, **overrides)
    model = MiniFusion(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "mini_fusion", **cfg.to_dict()}))
    return folder


def _z(fig, i) -> np.ndarray:
    return np.array(fig.data[i].z, dtype=float)


def _panels(app) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A's, B's and the difference panel's maps as the comparison figure holds them."""
    f = app.compare_fig
    assert [t.type for t in f.data] == ["image", "heatmap"] * 3
    return _z(f, 1), _z(f, 3), _z(f, 5)


# ------------------------------------------------------------------------------------------------ metrics
@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_rank_correlation_is_scipys_spearman():
    rng = np.random.default_rng(0)
    for k in range(20):
        a = rng.normal(size=(8, 8))
        b = a + rng.normal(scale=0.3 + k / 5, size=(8, 8))
        if k % 3 == 0:  # ties: a map quantised to a few levels
            a, b = np.round(a), np.round(b * 2) / 2
        assert rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    a = rng.random((8, 8))
    assert rank_correlation(a, a.copy()) == 1.0  # exactly one, not 0.9999999999999998
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # two equal (constant) maps agree
    assert np.isnan(rank_correlation(np.ones((4, 4)), a[:4, :4])) and np.isnan(spearmanr(np.ones(16), a[:4, :4].ravel()).statistic)
    b = a.copy()
    b[0, 0] = np.nan  # a cell missing in one map is left out of both
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel()[1:], b.ravel()[1:]).statistic)


def test_pointing_hit_and_energy_in_box_on_hand_made_maps(app):
    mask = np.zeros((64, 64), bool)
    mask[10:20, 34:50] = True  # box rows 10..19, cols 34..49: patch rows 1-2, patch cols 4-6 (8-px patches)
    cover = box_coverage(mask, (8, 8))
    assert cover[1, 4] == pytest.approx(6 / 8 * 6 / 8) and cover[2, 5] == pytest.approx(4 / 8) and cover[0, 4] == 0
    assert cover.sum() == pytest.approx(mask.sum() / 64)  # the box is the mask here: its area in patches
    m = np.zeros((8, 8))
    m[2, 5] = 1.0
    assert pointing_hit(m, mask) and energy_in_box(m, mask) == pytest.approx(0.5)
    m[7, 0] = 3.0  # the peak moves off the object; a quarter of 0.5 of the mass stays in the box
    assert not pointing_hit(m, mask) and energy_in_box(m, mask) == pytest.approx(0.5 / 4)
    m[0, 0] = -10.0  # negative values count as zero energy
    assert energy_in_box(m, mask) == pytest.approx(0.5 / 4)
    assert np.isnan(energy_in_box(-np.ones((8, 8)), mask))
    cmp = compare_maps(m, m, mask=mask)
    assert cmp.spearman == 1.0 and cmp.hit_delta == 0 and cmp.energy_delta == 0 and not cmp.difference.any()
    # the app's scene: the same rule as the pointing game of explorer.fusion, word by word
    al, masks = app.alignment, app.scene_word_masks()
    assert masks
    hits = pointing_hits(al, masks, ["relevance"])["relevance"]
    assert [pointing_hit(al.word_map("relevance", w), mk) for w, mk in masks.items()] == hits


# ------------------------------------------------------------------------------------------------ A/B comparison
def test_the_same_checkpoint_as_b_gives_a_zero_difference_and_correlation_one(app):
    app.compare_box.value = "mini-fusion"  # loaded again from the registry: other objects, the same weights
    app.compare_btn.click()
    assert app.compare_fig.shown and app.model_b is not app.adapter and not app.compare_off.disabled, app.status.value
    a, b, d = _panels(app)
    assert np.array_equal(a, b) and np.array_equal(d, np.zeros_like(d))
    assert app.comparison.spearman == 1.0 and app.comparison.hit_delta == 0 and app.comparison.energy_delta == 0
    title = title_of(app.compare_fig)
    assert "Spearman ρ(A, B) over 64 patches 1.000" in title and "(B − A +0)" in title and "(B − A +0.00)" in title


def test_randomised_copy_panels_are_maps_computed_independently_and_follow_word_and_layer(app, monkeypatch):
    text = app.alignment.meta["text"]
    app.compare("randomised copy")
    assert app.compare_fig.shown and "randomised (2 cross-modal layers, seed 0)" in app.name_b
    # independently: the same re-drawing (every cross-modal layer, seed 0) and fresh alignments of A and B
    names = list(dict.fromkeys(app.alignment.layer_names))
    ref_a = align(app.adapter, app.loaded, text)
    ref_b = align(randomise_fusion_layers(app.adapter, names, len(names), 0), app.loaded, text)
    calls = []
    monkeypatch.setattr(FA, "align", lambda *a, **k: calls.append("A"))
    monkeypatch.setattr(FP, "align", lambda *a, **k: calls.append("B"))
    masks = app.scene_word_masks()
    seen_b = []
    for method, word, layer, head in (("attention", 1, 1, "mean"), ("attention", 5, 1, "mean"), ("attention", 5, 0, 1),
                                      ("relevance", 2, None, "mean"), ("gradcam", 1, 0, "mean")):
        app.method.value = method
        if layer is not None:
            app.layer.value = layer
        app.head.value = head
        app.select_word(word)
        s = dict(layer=layer, head=head)
        want_a, want_b = ref_a.word_map(method, word, **s), ref_b.word_map(method, word, **s)
        a, b, d = _panels(app)
        np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b, want_b, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d, want_b - want_a, rtol=1e-5, atol=1e-7)
        assert np.abs(d).max() > 1e-4, (method, word)  # re-drawn layers: another map
        title = title_of(app.compare_fig)
        rho = spearmanr(want_a.ravel(), want_b.ravel()).statistic
        assert f"'{app.alignment.word_strings[word]}'" in title and f"over 64 patches {rho:.3f}" in title, title
        if word in masks:  # a colour / shape word: its object is known
            hit = {True: "hit", False: "miss"}
            ea, eb = energy_in_box(want_a, masks[word]), energy_in_box(want_b, masks[word])
            assert (f"pointing game A {hit[pointing_hit(want_a, masks[word])]}, B {hit[pointing_hit(want_b, masks[word])]}"
                    in title) and f"energy in box A {ea:.2f}, B {eb:.2f}" in title, title
        else:
            assert "pointing game" not in title
        seen_b.append(b)
    assert not np.array_equal(seen_b[0], seen_b[1]) and not np.array_equal(seen_b[1], seen_b[2])  # word, then layer/head
    assert calls == []  # B's alignment (and A's) served from the cache for every word / method / layer / head
    app.select_patch(9)  # the clicked patch is outlined in all three panels
    assert len(app.compare_fig.layout.shapes) == 3 and {s.x0 for s in app.compare_fig.layout.shapes} == {8}
    monkeypatch.undo()
    app.sample_dd.value = "scene:10000021"  # a new input: B's alignment is computed again, for it
    assert app.alignment_b is not None and app.alignment_b.meta["text"] == app.alignment.meta["text"] != text
    np.testing.assert_allclose(_panels(app)[2], app.comparison.b - app.comparison.a)


def test_a_b_with_another_grid_or_other_words_is_refused_and_the_app_keeps_working(app, tmp_path):
    grid = _save_mini_fusion(tmp_path / "grid", patch_size=16)
    app.compare(str(grid))
    shown = html.unescape(app.status.value)
    assert "⚠" in shown and "sees 4x4 patches of 16 px (64-px input)" in shown and "A (mini-fusion) 8x8 patches of 8 px" in shown, shown
    assert app.model_b is None and not app.compare_fig.shown and app.compare_off.disabled
    few = _save_mini_fusion(tmp_path / "few", max_words=3)
    app.compare(str(few))
    shown = html.unescape(app.status.value)
    assert "⚠" in shown and "the tokenizers read other words" in shown.lower() and "reads 7 words" in shown, shown
    assert "a green circle above a blue triangle" in shown and app.model_b is None and not app.compare_fig.shown
    # the app still works: a word, a layer, a new text, and a comparable B
    before = _z(app.main, 2)
    app.select_word(5)
    assert not np.array_equal(_z(app.main, 2), before)
    app.set_text("a green circle")
    assert "⚠" not in app.status.value and app.alignment.word_strings == ["a", "green", "circle"]
    app.compare(str(few))  # three words: both read the same ones now
    assert app.compare_fig.shown and app.model_b is not None and "⚠" not in app.status.value
    app.set_text("a green circle above a blue triangle")  # B would read other words: said, the comparison waits
    assert not app.compare_fig.shown and "reads 7 words, B" in html.unescape(app.compare_note.value)
    app.set_text("a blue triangle")
    assert app.compare_fig.shown and app.compare_note.value == ""


def test_stop_comparing_hides_the_figure(app):
    app.compare_box.value = "randomised copy"
    app.compare_btn.click()
    assert app.compare_fig.shown and not app.compare_off.disabled
    app.compare_off.click()
    assert not app.compare_fig.shown and app.model_b is None and app.alignment_b is None and app.compare_off.disabled
    app.select_word(2)  # not comparing: nothing comes back
    assert not app.compare_fig.shown


# ------------------------------------------------------------------------------------------------ reopen


def _view(app) -> dict:
    """Every control of the view, and what the main figure shows."""
    return {"model": app.adapter.model_id, "weights": app.adapter.weights_sha256, "image": app.loaded.sha256,
            "sample": app.sample_dd.value, "text": app.text_box.value, "word": app.word, "words": app.words.value,
            "method": app.method.value, "layer": app.layer.value, "head": app.head.value, "patch": app.patch,
            "colours": app.cscale.value, "opacity": app.opacity.value, "scene": app.scene is not None,
            "map": _z(app.main, 2).tolist(), "title": app.main.layout.annotations[1].text.replace("<br>", " "),
            "shapes": len(app.main.layout.shapes), "request": app.export_request()["options"]}


def test_from_sidecar_reopens_the_exported_view_and_reexports_it_byte_for_byte(app, tmp_path):
    app.method.value = "attention"
    app.layer.value, app.head.value = 0, 1
    app.select_word(5)
    app.select_patch(27)
    app.cscale.value, app.opacity.value = "Cividis", 0.35
    before = _view(app)
    res = _export(app, tmp_path, "word-view")
    again = FusionApp.from_sidecar(res.files["json"])
    assert _view(again) == before and again.sample_dd.value == "scene:10000003" and again.scene_word_masks()
    res2 = _export(again, tmp_path, "word-view-again")
    assert res2.files["png"].read_bytes() == res.files["png"].read_bytes()
    side, side2 = (json.loads(r.files["json"].read_text()) for r in (res, res2))
    assert side2["recipe"] == side["recipe"] and side2["provenance"] == side["provenance"]


def test_from_sidecar_reads_the_png_and_an_on_demand_method(app, tmp_path):
    app.sample_dd.value = "chelsea"  # a photo, not a scene
    app.method.value = "ig"
    app.select_word(1)
    before = _view(app)
    res = _export(app, tmp_path, "ig-view")
    again = FusionApp.from_sidecar(res.files["png"])  # the PNG carries its sidecar
    assert _view(again) == before and again.sample_dd.value == "chelsea" and again.scene is None
    assert _export(again, tmp_path, "ig-view-again").files["png"].read_bytes() == res.files["png"].read_bytes()


def test_reopen_button_restores_in_place_and_refuses_other_recipes(app, tmp_path):
    from explorer.export import export_recipe

    app.method.value = "relevance"
    app.select_word(2)
    app.opacity.value = 0.8
    before = _view(app)
    res = _export(app, tmp_path, "relevance-view")
    app.sample_dd.value = "scene:10000042"
    app.method.value = "gradcam"
    assert _view(app) != before
    app.export_panel.reopen_path.value = str(res.files["json"])
    app.export_panel.reopen_btn.click()
    assert _view(app) == before and "⚠" not in app.status.value
    other = export_recipe("error_strip", tmp_path / "strip", model="mini-mae", inputs=["chelsea"], formats=["png"])
    app.export_panel.reopen_path.value = str(other.files["json"])
    app.export_panel.reopen_btn.click()
    shown = html.unescape(app.status.value)
    assert "⚠" in shown and "strip.json was exported with the 'error_strip' recipe; FusionApp reopens 'word_maps'" in shown
    with pytest.raises(ValueError, match="'error_strip' recipe; FusionApp reopens 'word_maps' figures"):
        FusionApp.from_sidecar(other.files["json"])
    assert _view(app) == before  # nothing changed
    # a word view with settings the app has no control for (here IG with 4 steps): refused by name, not shown otherwise
    ig4 = export_recipe("word_maps", tmp_path / "ig4", model="mini-fusion", inputs=["chelsea"], formats=["png"],
                        options=dict(text="a cat", method="ig", word=1, method_options={"steps": 4}))
    with pytest.raises(ValueError, match=r"ig4.json was exported with method_options=\{'steps': 4\}, which FusionApp has no"):
        FusionApp.from_sidecar(ig4.files["json"])
    app.export_panel.reopen_path.value = str(ig4.files["png"])
    app.export_panel.reopen_btn.click()
    assert "⚠" in app.status.value and "python -m explorer reproduce" in app.status.value and _view(app) == before
