"""A/B comparison in the attention app: model B beside A on the same image, query, layer, head and method options;
the metrics against scipy, the panels against maps computed independently through the public compute API."""

from __future__ import annotations

import html

import numpy as np
import pytest
from _tiny import save_tiny_mae, save_tiny_mini_fusion, Points as _Points
from scipy.stats import spearmanr

import explorer.attention.maps as maps_mod
from explorer.attention import attention_maps, explain
from explorer.attention.compare import compare_maps, default_k, rank_correlation, top_k_overlap
from explorer.attention.faithfulness import randomise_top_layers
from explorer.fusion import load_fusion_model
from explorer.widgets.attention_app import AttentionApp


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    return save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=3, image_size=64)


def _err(app) -> bool:
    return "⚠" in app.status.value


def _panels(app) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The A, B and B − A heatmaps of the comparison figure on screen."""
    hm = [t for t in app.compare_fig.data if t.type == "heatmap"]
    assert [t.name for t in hm] == ["A", "B", "B − A"]
    return tuple(np.array(t.z, dtype=float) for t in hm)


def _title(app) -> str:
    return app.compare_fig.layout.title.text


# ---------------------------------------------------------------------------------------------------- the metrics
@pytest.mark.parametrize("seed", range(5))
def test_rank_correlation_and_top_k_overlap_against_scipy_and_sets(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((7, 9))
    b = a + rng.normal(0, 0.3 * (seed + 1) / 5, a.shape)
    if seed % 2:  # ties in both maps: average ranks, as scipy's
        a, b = np.round(a, 1), np.round(b, 1)
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    for k in (1, 5, 20, a.size):
        ta = set(np.argsort(-a.ravel(), kind="stable")[:k])
        tb = set(np.argsort(-b.ravel(), kind="stable")[:k])
        assert top_k_overlap(a, b, k=k) == len(ta & tb) / k
    c = compare_maps(a, b)
    assert c.k == default_k(63) == 6 and np.array_equal(c.difference, b - a)
    assert c.max_abs_difference == np.abs(b - a).max()
    same = compare_maps(a, a.copy())
    assert same.spearman == 1.0 and same.top_k_overlap == 1.0 and same.max_abs_difference == 0.0  # exactly
    with pytest.raises(ValueError, match="different patches"):
        compare_maps(a, b[:, :8])


# ------------------------------------------------------------------------------------------------------- the app
def test_same_checkpoint_as_b_gives_zero_difference_and_correlation_one(mae_dir):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    assert not app.compare_fig.shown and app.compare_off.disabled
    app.compare_box.value = str(mae_dir)
    app.compare_btn.click()
    assert not _err(app), app.status.value
    assert app.compare_fig.shown and not app.compare_off.disabled
    a, b, d = _panels(app)
    assert np.array_equal(a, b) and np.all(d == 0)
    assert app.comparison.spearman == 1.0 and app.comparison.top_k_overlap == 1.0
    assert "Spearman ρ(A, B) 1.00" in _title(app) and "top 6 of 64 patches shared: 6 of 6" in _title(app)
    assert "max |B − A| 0 " in _title(app) + " "


def test_randomised_copy_follows_layer_head_query_and_image_from_cache(mae_dir, monkeypatch):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    app.compare("randomised copy")
    assert not _err(app) and app.compare_fig.shown and "randomised (seed 0)" in _title(app)
    # independently: the same re-drawing of A, and both models' maps through the public compute API
    ref_b, _ = randomise_top_layers(app.adapter, len(app.adapter.blocks), seed=0)
    maps_a, maps_b = attention_maps(app.adapter, "chelsea"), attention_maps(ref_b, "chelsea")
    calls = []
    real = maps_mod.capture_all
    monkeypatch.setattr(maps_mod, "capture_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    gw = app.maps.layout.grid[1]
    p = app.maps.patch_size
    seen_b = []
    for step in ("start", "layer", "head", "click"):
        if step == "layer":
            app.layer.value = 1
        elif step == "head":
            app.head.value = 2
        elif step == "click":
            app._on_image_click(app.main.data[0], _Points([5.5 * p], [2.5 * p]), None)  # row 2, column 5
            assert app.query == 2 * gw + 5
        want_a = maps_a.query_map(app.layer.value, app.head.value, app.query)
        want_b = maps_b.query_map(app.layer.value, app.head.value, app.query)
        a, b, d = _panels(app)
        np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(b, want_b, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(d, want_b.astype(np.float64) - want_a, rtol=1e-4, atol=1e-8)
        rho = spearmanr(want_a.ravel(), want_b.ravel()).statistic
        assert rho < 1 and np.abs(d).max() > 0
        assert app.comparison.spearman == pytest.approx(rho, abs=1e-6)
        assert f"Spearman ρ(A, B) {rho:.2f}".replace("-", "−") in _title(app)
        seen_b.append(b)
    assert calls == []  # B's attention came from its cache for every slider move and click
    assert not np.allclose(seen_b[0], seen_b[1]) and not np.allclose(seen_b[2], seen_b[3])
    # a new image: B's maps are captured again for it (once)
    app.sample_dd.value = "coffee"
    assert not _err(app), app.status.value
    want_b = attention_maps(ref_b, "coffee").query_map(app.layer.value, app.head.value, app.query)
    np.testing.assert_allclose(_panels(app)[1], want_b, rtol=1e-5, atol=1e-9)


def test_rollout_comparison_uses_the_same_options_for_both(mae_dir):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    app.compare_method.value = "rollout"
    app.compare("randomised copy", seed=4)
    app.discard.value = 0.5
    app.fusion.value = "max"
    ref_b, _ = randomise_top_layers(app.adapter, len(app.adapter.blocks), seed=4)
    opts = dict(query="cls", fusion="max", discard=0.5, residual=True)
    want_a = explain(app.adapter, "chelsea", "rollout", **opts).map
    want_b = explain(ref_b, "chelsea", "rollout", **opts).map
    a, b, d = _panels(app)
    np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(b, want_b, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(d, want_b.astype(np.float64) - want_a, rtol=1e-4, atol=1e-8)
    assert "rollout (max of heads, discard 0.50" in _title(app) and "seed 4" in _title(app)


def test_mismatched_or_non_attention_b_is_refused_and_the_app_keeps_working(mae_dir, tmp_path):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    other = save_tiny_mae(tmp_path / "other", image_size=32)
    app.compare(str(other))
    msg = html.unescape(app.status.value)
    assert _err(app) and "4x4" in msg and "8x8" in msg and "the same query patch cannot be given to both" in msg
    assert app.model_b is None and not app.compare_fig.shown
    fusion = save_tiny_mini_fusion(tmp_path / "fusion")
    app.compare(str(fusion))  # the loader says what it is and where to open it
    assert _err(app) and "image+text model" in app.status.value and app.model_b is None
    app.compare(load_fusion_model(str(fusion)))  # already loaded: no image attention view to compare
    assert _err(app) and "without image attention" in app.status.value and app.model_b is None
    app.layer.value = 1  # the app still works, and a good B is then accepted (the refusal's message goes)
    np.testing.assert_allclose(np.array(app.main.data[2].z, float), app.maps.query_map(1, "mean", "cls"), rtol=1e-6)
    app.compare("randomised copy")
    assert not _err(app) and app.compare_fig.shown
    app.compare_off.click()
    assert app.model_b is None and not app.compare_fig.shown and app.compare_off.disabled


def test_b_with_fewer_layers_and_a_new_model_a(mae_dir, tmp_path):
    app = AttentionApp(model=str(mae_dir), image="chelsea")
    shallow = save_tiny_mae(tmp_path / "shallow", image_size=64, num_hidden_layers=1)
    app.compare(str(shallow))
    assert app.compare_fig.shown and not _err(app)
    app.layer.value = 1  # A's only layer: said, and no stale comparison on screen
    assert _err(app) and "has 1 layer x 4 heads" in app.status.value and not app.compare_fig.shown
    app.layer.value = 0
    assert app.compare_fig.shown
    # model A changes to one whose grid B does not share: comparing stops, saying why; A's view is shown
    app.model_box.value = str(save_tiny_mae(tmp_path / "small", image_size=32))
    app._load_model()
    assert _err(app) and "Stopped comparing" in app.status.value and app.model_b is None
    assert not app.compare_fig.shown and app.maps.layout.grid == (4, 4)
