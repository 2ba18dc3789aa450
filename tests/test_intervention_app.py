"""The intervention panel in the attention and fusion apps: clicks change the ablated set, and the figures on screen
are the compute functions' results."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny import save_tiny_mae, save_tiny_vit, Points as _Points

from explorer.attention import interventions as I
from explorer.fusion import interventions as FI
from explorer.widgets.attention_app import AttentionApp
from explorer.widgets.fusion_app import FusionApp


def _err(app) -> bool:
    return "⚠" in app.status.value


@pytest.fixture(scope="module")
def mae_app(tmp_path_factory):
    folder = save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=3)
    return AttentionApp(model=str(folder), image="chelsea")


def _grid_trace(app, l, h):
    return next(t for t in app.grid.data if t.type == "heatmap" and t.name == f"L{l} H{h}")


def test_ablate_mode_clicks_toggle_heads_and_show_the_compute_result(mae_app):
    app, panel = mae_app, mae_app.interventions
    assert not _err(app), app.status.value
    app._on_grid_click(_grid_trace(app, 1, 2), _Points(), None)  # Ablate off: the click shows the head
    assert (app.layer.value, app.head.value) == (1, 2) and panel.selected == set()
    panel.ablate_btn.value = True
    app._on_grid_click(_grid_trace(app, 1, 2), _Points(), None)
    assert panel.selected == {(1, 2)} and not _err(app), app.status.value
    ref = I.ablate(app.adapter, app.loaded, [(1, 2)], ratio=app.prov_ratio.value, seed=app.prov_seed.value)
    shown = panel.ablation_fig
    assert len(app.grid.layout.shapes) == 1  # the ablated head is outlined
    z, hidden = np.array(shown.data[2].z, float), ref.mask
    np.testing.assert_allclose(z[hidden], ref.diff_map[hidden], rtol=1e-5, atol=1e-9)
    assert np.isnan(z[~hidden]).all()  # visible patches: not scored, not drawn
    assert f"{ref.delta:+.3f}" in shown.layout.title.text and f"{ref.delta:+.4f}" in panel.text.value
    # the panel's 'layer' column ablates the whole layer 0 as well
    cell = panel.heads_fig.data[0]
    H = app.maps.num_heads
    panel._on_cell_click(cell, _Points(inds=[(0, H)]), None)
    assert panel.selected == {(1, 2)} | {(0, h) for h in range(H)}
    ref2 = I.ablate(app.adapter, app.loaded, sorted(panel.selected), ratio=app.prov_ratio.value, seed=app.prov_seed.value)
    np.testing.assert_allclose(np.array(panel.ablation_fig.data[2].z, float)[hidden], ref2.diff_map[hidden], rtol=1e-5,
                               atol=1e-9)
    assert len(panel.heads_fig.layout.shapes) == H + 2 and len(app.grid.layout.shapes) == H + 1
    app._on_grid_click(_grid_trace(app, 1, 2), _Points(), None)  # click again: removed
    assert (1, 2) not in panel.selected
    panel.mode_dd.value = "mean"
    ref3 = I.ablate(app.adapter, app.loaded, sorted(panel.selected), mode="mean", ratio=app.prov_ratio.value,
                    seed=app.prov_seed.value)
    assert f"{ref3.delta:+.4f}" in panel.text.value
    panel.reset_btn.click()
    assert panel.selected == set() and panel.ablation_box.children == () and len(app.grid.layout.shapes) == 0
    panel.ablate_btn.value = False


def test_importance_and_patching_grids_are_the_compute_results(mae_app):
    app, panel = mae_app, mae_app.interventions
    panel.mode_dd.value = "zero"
    panel.importance_btn.click()
    imp = I.head_importance(app.adapter, app.loaded, ratio=app.prov_ratio.value, seed=app.prov_seed.value)
    z = np.array(panel.heads_fig.data[0].z, float)
    np.testing.assert_allclose(z[:, :-1], imp.delta, rtol=1e-6)
    np.testing.assert_allclose(z[:, -1], imp.layer_delta, rtol=1e-6)
    assert "head importance" in panel.heads_fig.layout.title.text
    panel.second.value = "noise"
    panel.patch_btn.click()
    p = I.patch_heads(app.adapter, app.loaded, "noise", ratio=app.prov_ratio.value, seed=app.prov_seed.value)
    np.testing.assert_allclose(np.array(panel.patch_fig.data[0].z, float)[:, :-1], p.restored, rtol=1e-6)
    assert not _err(app), app.status.value


def test_errors_are_messages(tmp_path):
    app = AttentionApp(model=str(save_tiny_vit(tmp_path / "v")), image="chelsea")
    panel = app.interventions
    panel.second.options = [("a file that is not there", "missing.png")]
    panel.patch_btn.click()  # a second input that does not load: a message, the kernel and the app survive
    assert _err(app) and "not found" in app.status.value
    panel.ablate_btn.value = True
    panel.toggle(0, 1)
    assert not _err(app) and panel.ablation is not None and panel.ablation.heads == ((0, 1),)


def test_fusion_app_ablation_word_map_and_patching():
    app = FusionApp(model="mini-fusion", image="scene:10000003")
    panel = app.interventions
    assert not _err(app), app.status.value and (panel.num_layers, panel.num_heads) == (2, 4)
    panel.ablate_btn.value = True
    panel._on_cell_click(panel.heads_fig.data[0], _Points(inds=[(0, 2)]), None)
    assert panel.selected == {(0, 2)} and not _err(app), app.status.value
    text = app.alignment.meta["text"]
    ref = FI.ablate_fusion(app.adapter, app.loaded, text, [(0, 2)], method=app.method.value,
                           layer=app.layer.value, word_masks=app.scene_word_masks())
    fig = panel.ablation_fig
    np.testing.assert_allclose(np.array(fig.data[-1].z, float), ref.diff_maps[app.word], rtol=1e-5, atol=1e-7)
    assert f"{ref.delta:+.3f}" in fig.layout.title.text
    app.select_word(0)  # the figure follows the word, no forward
    np.testing.assert_allclose(np.array(panel.ablation_fig.data[-1].z, float), ref.diff_maps[0], rtol=1e-5, atol=1e-7)
    panel.second.value = text.replace("triangle", "square")
    panel.patch_btn.click()
    p = FI.patch_fusion(app.adapter, app.loaded, text, panel.second.value)
    np.testing.assert_allclose(np.array(panel.patch_fig.data[0].z, float)[:, :-1], p.restored, rtol=1e-6)
    assert not _err(app), app.status.value
    panel.second.value = ""
    panel.patch_btn.click()
    assert _err(app) and "counterfactual caption" in app.status.value
