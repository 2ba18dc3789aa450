"""The attention app: interactions served from cache, clicks, faithfulness, provenance, errors in the widget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import save_tiny_clip, save_tiny_mae, save_tiny_vit, Points as _Points

import explorer.attention.maps as maps_mod
from explorer.widgets.attention_app import AttentionApp


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    return save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=3, image_size=64)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return save_tiny_vit(tmp_path_factory.mktemp("vit"), image_size=64)


def _err(app) -> bool:
    return "⚠" in app.status.value


def test_layer_head_opacity_come_from_the_cache(mae_dir, monkeypatch):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    assert not _err(app), app.status.value
    calls = []
    real = maps_mod.capture_all
    monkeypatch.setattr(maps_mod, "capture_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    z0 = np.array(app.main.data[2].z, dtype=float)
    app.layer.value = 1
    z1 = np.array(app.main.data[2].z, dtype=float)
    app.head.value = 2
    z2 = np.array(app.main.data[2].z, dtype=float)
    app.opacity.value = 0.3
    assert not np.allclose(z0, z1) and not np.allclose(z1, z2)
    np.testing.assert_allclose(z2, app.maps.query_map(1, 2, "cls"), rtol=1e-6)
    assert app.main.data[2].opacity == 0.3
    assert calls == []  # no forward for any of these
    assert app.last_update_ms < 1000


def test_clicks_choose_query_layer_and_head(mae_dir):
    app = AttentionApp(model=str(mae_dir), image="coffee")
    p = app.maps.patch_size
    app._on_image_click(app.main.data[0], _Points([2.5 * p], [1.5 * p]), None)  # row 1, column 2
    gw = app.maps.layout.grid[1]
    assert app.query == 1 * gw + 2
    np.testing.assert_allclose(np.array(app.main.data[2].z, float), app.maps.query_map(app.layer.value, "mean", app.query), rtol=1e-6)
    grid_trace = next(t for t in app.grid.data if t.type == "heatmap" and t.name == "L1 H3")
    app._on_grid_click(grid_trace, _Points([0], [0]), None)
    assert (app.layer.value, app.head.value) == (1, 3)
    s = app.summary.data[0]
    i = next(k for k, cd in enumerate(s.customdata) if int(cd[0]) == 0 and int(cd[1]) == 1)
    app._on_summary_click(s, _Points([0], [0], [i]), None)
    assert (app.layer.value, app.head.value) == (0, 1)
    app.set_query("cls")
    assert app.query == "cls"
    app.set_query(10_000)  # outside the grid: message, previous state kept
    assert _err(app) and "outside" in app.status.value and app.query == "cls"


def test_methods_faithfulness_and_sanity(mae_dir):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    names = [t.name for t in app.methods.data if t.type == "heatmap"]
    assert any(n.startswith("rollout") for n in names) and any("relevance" in n for n in names)
    before = np.array(next(t.z for t in app.methods.data if t.type == "heatmap" and t.name.startswith("rollout")), float)
    app.discard.value = 0.5
    after = np.array(next(t.z for t in app.methods.data if t.type == "heatmap" and t.name.startswith("rollout")), float)
    assert not np.allclose(before, after)
    c = app.run_faithfulness()
    assert c is not None and "deletion AUC" in app.faith_text.value and len(app.extra.data) == 4
    assert c.deletion_verdict in app.faith_text.value and f"{c.deletion_auc:.3f}" in app.faith_text.value
    assert np.allclose(app.extra.data[1].y, c.random_deletion)  # the random orders' mean curve, as computed
    s = app.run_sanity()
    assert s is not None and "Randomisation check" in app.faith_text.value
    for r in s.spearman:  # every level's number is on screen, not only the smallest
        assert f"{r:.2f}" in app.faith_text.value


def test_provenance_click_and_visible_patch_message(mae_dir):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    assert app.prov_box.layout.display is None
    mask = app.provenance_mask()
    gw = mask.shape[1]
    p = app.adapter.patch_size
    hidden = int(np.flatnonzero(mask)[3])
    r, c = divmod(hidden, gw)
    app._on_prov_click(app.prov.data[0], _Points([(c + 0.5) * p], [(r + 0.5) * p]), None)
    assert app.last_provenance.query == hidden and not _err(app)
    visible = int(np.flatnonzero(~mask)[0])
    r, c = divmod(visible, gw)
    app._on_prov_click(app.prov.data[0], _Points([(c + 0.5) * p], [(r + 0.5) * p]), None)
    assert _err(app) and "is visible" in app.status.value
    assert app.last_provenance.query == hidden


def test_vit_classifier_hides_provenance_and_bad_inputs_are_explained(vit_dir, tmp_path):
    app = AttentionApp(model=str(vit_dir), image="chelsea")
    assert not _err(app) and app.prov_box.layout.display == "none"
    app.upload.value = ({"name": "x.png", "type": "image/png", "size": 5, "last_modified": __import__("datetime").datetime.now(),
                         "content": memoryview(b"\x89PNG\r\n\x1a\nbroken")},)
    assert _err(app)
    assert app.maps is not None  # previous view kept
    app.model_box.value = "no-such/model-here"
    app._load_model()
    assert _err(app) and "no-such/model-here" in app.status.value


def test_clip_image_tower_in_the_app(tmp_path):
    app = AttentionApp(model=str(save_tiny_clip(tmp_path / "clip", image_size=64)), image="astronaut")
    assert not _err(app), app.status.value
    assert app.prov_box.layout.display == "none" and app.maps.num_layers == 3
    app.layer.value = 2
    np.testing.assert_allclose(np.array(app.main.data[2].z, float), app.maps.query_map(2, "mean", "cls"), rtol=1e-6)


def test_live_faithfulness_follows_the_methods_row_and_matches_a_direct_call(mae_dir):
    from explorer.attention.faithfulness import deletion_insertion

    app = AttentionApp(model=str(mae_dir), image="chelsea")
    app.panels.value = ("rollout", "relevance")
    assert app.live.wait(120)
    maps = app.method_maps()
    assert set(app.live_curves) == set(maps)
    for title, m in maps.items():
        direct = deletion_insertion(app.adapter, app.loaded, m, steps=app.LIVE_STEPS, random_orders=app.LIVE_ORDERS)
        got = app.live_curves[title]
        assert got.deletion_auc == pytest.approx(direct.deletion_auc) and got.insertion_auc == pytest.approx(direct.insertion_auc)
        assert got.deletion_verdict in app.live_text.value and f"{got.deletion_auc:.3f}" in app.live_text.value
    # A new row supersedes the running work: only the newest row's numbers are shown.
    app.discard.value = 0.3
    app.discard.value = 0.6
    assert app.live.wait(120)
    assert set(app.live_curves) == set(app.method_maps()) and any("discard 0.60" in k for k in app.live_curves)


def test_hooks_hold_the_model_lock_so_background_work_waits(mae_dir):
    import threading

    from explorer.attention.capture import AttentionCapture
    from explorer.models.base import model_lock

    got = []
    with AttentionCapture(torch.nn.Linear(2, 2)):
        t = threading.Thread(target=lambda: got.append(model_lock().acquire(timeout=0.2)))
        t.start()
        t.join()
    assert got == [False]  # another thread could not run a model while the hooks were on
    assert model_lock().acquire(timeout=0.2)
    model_lock().release()
