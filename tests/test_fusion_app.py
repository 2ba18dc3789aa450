"""The cross-modal app: every interaction after the first forward is served from the cache and shows the
right map; bad input is explained in the app and the app keeps working; export reproduces."""

from __future__ import annotations

import numpy as np
import pytest

import explorer.widgets.fusion_app as FA
from explorer.export import read_sidecar, reproduce
from explorer.fusion import align
from explorer.widgets.fusion_app import FusionApp

from test_widgets import upload_value


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


def test_ground_truth_counterfactual_and_modality(app):
    assert "pointing game" in app.truth.value and app.pointing
    d = app.run_deletion()
    assert set(d) == {"map", "random"} and "Deletion AUC" in app.truth.value
    app.select_word(1)
    old_word = app.alignment.word_strings[1]
    new = "green" if old_word != "green" else "red"
    other = app.counterfactual(new)
    assert other.word_strings[1] == new and other.score != app.alignment.score
    assert len([t for t in app.cf.data if t.type == "heatmap"]) == 2 and new in app.cf_text.value
    rep = app.run_modality()
    assert rep.masked["image"] != rep.score and "image share" in app.modality_text.value
    assert len(app.modality.data) == 2


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


def test_export_writes_a_reproducible_word_strip(app, tmp_path):
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
