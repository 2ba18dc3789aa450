"""The apps serve slider moves from caches; a cache key that forgot a setting would show the previous setting's
result as if it were the new one.  Each test changes one setting that belongs in the key and compares what the
app then holds with a fresh computation (and checks the two settings really give different results)."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.attention import explain
from explorer.reconstruction.video import reconstruct_video
from explorer.widgets.attention_app import AttentionApp
from explorer.widgets.video_app import VIDEO_RATIOS, VideoMAEApp


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    from _tiny import save_tiny_videomae

    return save_tiny_videomae(tmp_path_factory.mktemp("vmae"))


@pytest.mark.parametrize("setting, value", [("seed", 1), ("strategy", "random")])
def test_video_sweep_follows_seed_and_strategy(video_folder, setting, value):
    app = VideoMAEApp(model=str(video_folder), clip="generated:10000003", ratio=0.75)
    before = {r: app.sweep[r].mask.copy() for r in VIDEO_RATIOS}
    getattr(app, setting).value = value
    for r in (0.5, 0.9):
        fresh = reconstruct_video(app.adapter, app.frames, ratio=r, strategy=app.strategy.value, seed=int(app.seed.value))
        np.testing.assert_array_equal(app.sweep[r].mask, fresh.mask)
        np.testing.assert_allclose(app.sweep[r].prediction, fresh.prediction, atol=1e-6)
    assert any(not np.array_equal(before[r], app.sweep[r].mask) for r in VIDEO_RATIOS)
    # and going back is served from the cache, equal to the first result
    getattr(app, setting).value = {"seed": 0, "strategy": "tube"}[setting]
    assert all(np.array_equal(before[r], app.sweep[r].mask) for r in VIDEO_RATIOS)


def test_rollout_cache_follows_discard_fusion_and_residual(tmp_path):
    from _tiny import save_tiny_vit

    app = AttentionApp(model=str(save_tiny_vit(tmp_path / "vit")), image="chelsea")
    first = app.explained("rollout").map.copy()
    for name, value in (("discard", 0.5), ("fusion", "max"), ("residual", False)):
        getattr(app, name).value = value
        got = app.explained("rollout").map
        fresh = explain(app.adapter, app.loaded, "rollout", query=app.query, fusion=app.fusion.value,
                        discard=app.discard.value, residual=app.residual.value).map
        np.testing.assert_allclose(got, fresh, rtol=1e-5, atol=1e-7)
        assert not np.allclose(got, first), name
        first = got.copy()
