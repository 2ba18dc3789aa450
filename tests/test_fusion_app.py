"""The cross-modal app: every interaction after the first forward is served from the cache and shows the
right map; bad input is explained in the app and the app keeps working; export reproduces."""

from __future__ import annotations

import html

import numpy as np
import pytest

import explorer.widgets.fusion_app as FA
from explorer.export import read_sidecar, reproduce
from explorer.fusion import align
from explorer.widgets.fusion_app import FusionApp

from test_widgets import _slow_loader, is_error, notebook, upload_value  # noqa: F401 (notebook: a fixture)


@pytest.fixture()
def app():
    return FusionApp(model="mini-fusion", image="scene:10000003")


def _z(app) -> np.ndarray:
    return np.array(app.main.data[2].z, dtype=float)


def test_words_layers_heads_and_methods_come_from_the_cache(app, monkeypatch):
    al = app.alignment
    assert al.word_strings == app.text_box.value.split()
    assert al.word_strings[app.word] not in ("a", "an") and app.words.value == app.word  # opens on a content word
    calls = []
    monkeypatch.setattr(FA, "align", lambda *a, **k: calls.append(1))
    app.method.value = "attention"
    app.select_word(2)
    np.testing.assert_allclose(_z(app), al.word_map("attention", 2, layer=app.layer.value), rtol=1e-6)
    app.layer.value = 0
    app.head.value = 1
    np.testing.assert_allclose(_z(app), al.attention[0, 1, 2], rtol=1e-6)
    assert "layer 0, head 1" in app.main.layout.annotations[1].text
    app.method.value = "relevance"
    np.testing.assert_allclose(_z(app), al.maps["relevance"][2], rtol=1e-6)
    app.words.value = 1  # clicking a word in the caption
    np.testing.assert_allclose(_z(app), al.maps["relevance"][1], rtol=1e-6)
    assert calls == [] and app.last_update_ms < 1000


def test_hovering_a_patch_lists_every_word_for_it(app):
    al = app.alignment
    app.method.value = "gradcam"
    app.select_patch(27)
    want = [al.word_map("gradcam", k, layer=app.layer.value).ravel()[27] for k in range(len(al.words))]
    np.testing.assert_allclose(app.bars.data[0].x, want, rtol=1e-6)
    assert app.main.layout.shapes and app.main.layout.shapes[0].type == "rect"
    app._update_matrix()
    app.sort.value = "word"
    order = [int(v) for v in app.matrix.data[0].x]
    assert order[0] == int(np.argmax(al.matrix[app.word]))
    assert sorted(order) == list(range(al.matrix.shape[1]))


def test_word_bars_read_every_word_at_a_patch_from_the_alignment(app, monkeypatch):
    """The bars come from Alignment.patch_words with the on-screen settings; the selected word is never touched,
    and Integrated Gradients shows the words computed so far instead of running the model for every word."""
    al = app.alignment
    calls = []
    orig = type(al).patch_words
    monkeypatch.setattr(type(al), "patch_words", lambda self, *a, **k: calls.append((a, k)) or orig(self, *a, **k))
    monkeypatch.setattr(type(app), "word", property(lambda s: s.__dict__["word"], _set_word_once_per_click), raising=False)
    app.method.value = "attention"
    app.layer.value = 0
    app.head.value = 1
    app.select_patch(9)
    r, c = divmod(9, al.grid[1])
    assert calls[-1] == (("attention", 9), {"layer": 0, "head": 1})
    np.testing.assert_array_equal(app.bars.data[0].x, al.attention[0, 1, :, r, c])
    app.method.value = "ig"
    app.select_word(1)
    x = np.array(app.bars.data[0].x, dtype=float)
    assert x[1] == al.word_map("ig", 1).ravel()[9] and np.isnan(np.delete(x, 1)).all()
    assert [k[:2] for k in al.computed] == [("ig", 1)]  # one word computed, for the map on screen
    assert "computed so far" in app.bars.layout.title.text


def _set_word_once_per_click(self, value):
    """``app.word`` may only be set to what the user picked (the old bars cycled it through every word)."""
    self.__dict__.setdefault("_word_sets", []).append(value)
    assert len(self.__dict__["_word_sets"]) <= 2, self.__dict__["_word_sets"]
    self.__dict__["word"] = value


def test_ground_truth_counterfactual_and_modality(app):
    assert "pointing game" in app.truth.value and app.pointing
    d = app.run_deletion()
    assert {"map", "random", "band", "verdict"} <= set(d) and "Deletion AUC" in app.truth.value
    assert d["verdict"] in app.truth.value and f"{d['band'][0]:.3f}" in app.truth.value
    app.select_word(1)
    old_word = app.alignment.word_strings[1]
    new = "green" if old_word != "green" else "red"
    other = app.counterfactual(new)
    assert other.word_strings[1] == new and other.score != app.alignment.score
    assert len([t for t in app.cf.data if t.type == "heatmap"]) == 2 and new in app.cf_text.value
    rep = app.run_modality()
    assert rep.masked["image"] != rep.score and "image share" in app.modality_text.value
    assert f"{rep.shapley['text']:+.3f}" in app.modality_text.value  # the exact Shapley split is the headline
    assert all(w.split(":")[0][:30] in app.modality_text.value for w in rep.warnings)
    assert len(app.modality.data) == 3 and list(app.modality.data[1].y) == pytest.approx([rep.shapley["image"], rep.shapley["text"]])


def test_bad_text_is_explained_and_the_app_keeps_working(app):
    good = app.text_box.value
    app.set_text("   ")
    assert "empty" in app.status.value and app.alignment is None
    app.set_text("a 🙂 circle " + "left of a blue square " * 4)
    assert "[unk]" in app.answer.value and "dropped" in app.answer.value
    app.set_text(good)
    assert app.alignment is not None and "⚠" not in app.status.value
    app.counterfactual("two words")
    assert "one word" in app.status.value


def test_bad_images_and_models_are_explained(app, tmp_path):
    app.upload.value = upload_value(b"\x89PNG\r\n\x1a\n" + b"0" * 12, "broken.png")
    assert "⚠" in app.status.value and "truncated" in app.status.value
    app.model_box.value = "mini-mae"
    app.load_btn.click()
    assert "image-only" in app.status.value
    app.model_box.value = "no-such-model"
    app.load_btn.click()
    assert "Unknown model" in app.status.value
    app.model_box.value = "mini-fusion"
    app.load_btn.click()
    app.sample_dd.value = "scene:10000021"
    assert app.alignment is not None and app.alignment.meta["text"] == app.text_box.value


def test_photos_get_a_caption_and_maps(app):
    app.sample_dd.value = "chelsea"
    assert app.text_box.value == "a cat" and app.alignment.word_strings == ["a", "cat"]
    assert "[unk]" in app.answer.value  # "cat" is not in the mini model's scene vocabulary, and it says so
    assert app.truth.value == ""  # no ground truth for photos


def test_export_writes_a_reproducible_word_view(app, tmp_path):
    app.method.value = "relevance"
    app.export_panel.folder.value = str(tmp_path)
    res = app.export_panel.export()
    assert res is not None, app.export_panel.status.value
    side = read_sidecar(res.files["json"])
    assert side["recipe"]["name"] == "word_maps" and side["recipe"]["options"]["text"] == app.alignment.meta["text"]
    assert side["provenance"]["model"]["family"] == "fusion"
    rep = reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()
    fresh = align(app.adapter, app.loaded, app.alignment.meta["text"])
    np.testing.assert_allclose(fresh.maps["relevance"], app.alignment.maps["relevance"], rtol=1e-5, atol=1e-7)


def _on_screen(app) -> dict:
    """What the main figure shows: method, word, and the settings that method reads."""
    from explorer.fusion import get_method

    m = get_method(app.method.value)
    return dict(method=m.name, word=app.word, layer=int(app.layer.value) if m.layer else None,
                head=app.head.value if m.head else "mean", patch=app.patch)


def test_export_of_integrated_gradients_exports_integrated_gradients(app, tmp_path):
    """The fault: with 'Integrated Gradients' on screen, Export wrote a 'relevance' figure and said nothing."""
    app.method.value = "ig"
    app.select_word(1)
    app.export_panel.folder.value = str(tmp_path)
    for f, cb in app.export_panel.formats.items():
        cb.value = f == "svg"
    res = app.export_panel.export()
    assert res is not None, app.export_panel.status.value
    o = read_sidecar(res.files["json"])["recipe"]["options"]
    assert o["method"] == "ig" and o["word"] == 1 and o["method_options"] == {"steps": 16}, o
    assert "ig" in res.files["json"].name and "relevance" not in res.files["json"].name
    svg = res.files["svg"].read_text()
    assert "Integrated Gradients" in svg and "relevance" not in svg
    rep = reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()


def test_export_request_is_what_is_on_screen_for_every_method(app):
    """For every method of the registry the app offers: the recipe options are the on-screen settings, and the
    recipe's figure has the on-screen title and map."""
    from explorer.export.registry import get_recipe, options_for
    from explorer.fusion import REGISTRY

    offered = [v for _label, v in app.method.options]
    assert offered == [n for n, m in REGISTRY.items() if m.applies_to(app.adapter.kind)]
    assert [label for label, _v in app.method.options][:len(app.alignment.available)] == [
        REGISTRY[n].label for n in app.alignment.available]
    app.select_word(1)
    app.layer.value = 0
    app.head.value = 1
    app.select_patch(9)
    for method in offered:
        app.method.value = method
        req = app.export_request()
        o = req["options"]
        assert o["method"] == method, f"on screen {method!r}, exported {o['method']!r}"
        shown = _on_screen(app)
        assert {k: o.get(k) for k in shown} == shown
        fig = get_recipe("word_maps").build(app.adapter, [app.loaded], options_for("word_maps", o))
        title = app.main.layout.annotations[1].text.replace("<br>", " ")  # a long title breaks into lines on screen
        assert REGISTRY[method].label in title and title in [a.text for a in fig.layout.annotations]
        np.testing.assert_allclose(np.array(fig.data[2].z, dtype=float), _z(app), rtol=1e-6)
        assert len(fig.layout.shapes) == len(app.main.layout.shapes) > 0  # the selected patch is marked too


def test_the_app_starts_with_progress_and_one_forward(notebook, monkeypatch):
    """On the shared app base: displayed first, "loading mini-fusion…" with a progress bar before any figure, then
    exactly one forward for the model, the scene and its caption (the image and text are set quietly)."""
    events, _ = notebook
    _slow_loader(monkeypatch, FA, "load_fusion_model", events, "main")
    forwards = []
    real_align = FA.align
    monkeypatch.setattr(FA, "align", lambda *a, **k: forwards.append(a[2]) or real_align(*a, **k))
    app = FusionApp(model="mini-fusion", image="scene:10000011")
    assert [k for k, _ in events][:3] == ["app", "display", "loading"]
    seen = events[2][1]
    assert seen["progress"] and seen["traces"] == 0 and "loading mini-fusion…" in seen["status"]
    assert forwards == [app.text_box.value] and len(app.main.data) == 3 and not is_error(app), app.status.value
    assert not app.loading and "fa-spin" not in app.status.value and app.started
    app.sample_dd.value = "scene:10000021"  # a new scene sets its caption quietly: one more forward, not two
    assert len(forwards) == 2 and forwards[-1] == app.text_box.value == app.alignment.meta["text"]


def test_a_failed_start_shows_the_error_and_no_spinner(notebook, monkeypatch):
    from explorer.models import ModelLoadError

    events, _ = notebook
    _slow_loader(monkeypatch, FA, "load_fusion_model", events, "main", error=ModelLoadError("simulated: the checkpoint is gone"))
    app = FusionApp(model="mini-fusion", image="scene:10000003")
    assert is_error(app) and "simulated: the checkpoint is gone" in app.status.value
    assert not app.loading and "fa-spin" not in app.status.value and app.adapter is None and app.alignment is None


def test_live_deletion_of_the_map_on_screen_matches_a_direct_call_and_follows_the_word(app):
    from explorer.fusion import deletion_auc

    assert app.live.wait(60)
    d = app.live_deletion
    direct = deletion_auc(app.adapter, app.loaded, app.alignment.meta["text"], app.current_map())
    assert d["map"] == pytest.approx(direct["map"]) and np.allclose(d["random_aucs"], direct["random_aucs"])
    assert d["verdict"] in app.live_text.value and f"{d['map']:.3f}" in app.live_text.value
    # what the number is, in whose units, and why it may be negative
    assert f"model's {app.adapter.output_name}" in html.unescape(app.live_text.value)
    assert "can be negative" in app.live_text.value and "lower than the random orders" in app.live_text.value
    before = app.live_deletion
    app.select_word(0 if app.word != 0 else 1)
    assert app.live.wait(60) and app.live_deletion is not before
    assert app.live_deletion["map"] == pytest.approx(
        deletion_auc(app.adapter, app.loaded, app.alignment.meta["text"], app.current_map())["map"])
    gen = app.live.generation
    app.select_patch(3)  # hovering / clicking a patch does not restart the work
    assert app.live.generation == gen


def test_fusion_randomisation_check_reports_each_level_and_leaves_the_model_intact(app):
    from explorer.attention.faithfulness import spearman
    from explorer.fusion import align
    from explorer.fusion.faithfulness import fusion_randomisation_check, randomise_fusion_layers

    sha = app.adapter.weights_sha256
    text = app.alignment.meta["text"]
    s = fusion_randomisation_check(app.adapter, app.loaded, text, "attention", 1)
    assert app.adapter.weights_sha256 == sha == app.adapter._sha  # the original was copied, not changed
    names = list(dict.fromkeys(app.alignment.layer_names))
    assert s.levels == tuple(sorted({1, len(names) // 2 or 1, len(names)}))
    # Independently: randomise the top layer, recompute the map, compare.
    rand = randomise_fusion_layers(app.adapter, names, s.levels[0], 0)
    assert rand.weights_sha256 != sha
    b = align(rand, app.loaded, text).word_map("attention", 1)
    assert s.spearman[0] == pytest.approx(spearman(app.alignment.word_map("attention", 1), b))
    out = app.run_sanity()
    assert out is not None and "Randomisation check" in app.truth.value
    for r in out.spearman:
        assert f"{r:.3f}" in app.truth.value
