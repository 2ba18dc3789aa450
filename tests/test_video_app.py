"""The video MAE app: the ratio sweep is computed once per (clip, strategy, seed); frame and ratio moves are served
from the cache and show the right frame; bad clips and models are explained in the app."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explorer.widgets.video_app as VA
from explorer.viz.images import data_uri
from explorer.widgets.video_app import VIDEO_RATIOS, VideoMAEApp


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    torch.manual_seed(0)
    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=4, intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                         decoder_num_attention_heads=4, decoder_intermediate_size=64, norm_pix_loss=False)
    f = tmp_path_factory.mktemp("vmae")
    VideoMAEForPreTraining(cfg).save_pretrained(f)
    return f


def test_frames_and_ratios_come_from_the_cache(folder, monkeypatch):
    app = VideoMAEApp(model=str(folder), clip="generated:10000003", ratio=0.9)
    assert set(app.sweep) == set(VIDEO_RATIOS) and app.frame.max == 3 and app.status.value.count("⚠") == 0
    calls = []
    monkeypatch.setattr(VA, "reconstruct_video", lambda *a, **k: calls.append(1))
    app.frame.value = 2
    rec = app.sweep[0.9]
    assert app.fig.data[0].source == data_uri(rec.frames[2], min_side=160)
    assert app.fig.data[2].source == data_uri(rec.prediction[2], min_side=160)
    app.ratio.value = 0.5
    assert app.result is app.sweep[0.5] and app.result.mask.sum() < app.sweep[0.9].mask.sum()
    assert calls == [] and app.last_update_ms < 1000
    ys = app.curve.data[0].y
    assert len(ys) == len(VIDEO_RATIOS) and ys[0] == pytest.approx(app.sweep[0.5].psnr_masked)


def test_strategy_change_recomputes_and_tube_keeps_patches_hidden_in_time(folder):
    app = VideoMAEApp(model=str(folder), clip="generated:10000011", ratio=0.75)
    app.strategy.value = "tube"
    m = app.result.mask
    assert all(np.array_equal(m[0], m[k]) for k in range(len(m)))
    app.strategy.value = "frame"
    assert set(app.result.mask.reshape(len(app.result.mask), -1).mean(1).tolist()) <= {0.0, 0.5, 1.0}


def test_bad_clips_and_models_are_explained(folder):
    app = VideoMAEApp(model=str(folder), clip="generated:10000003")
    app._set_clip(b"not a video at all")
    assert "⚠" in app.status.value
    app._set_clip(np.zeros((1, 32, 32, 3), np.float32))  # one frame
    assert "⚠" in app.status.value and "frame" in app.status.value
    app.model_box.value = "mini-mae"
    app.load_btn.click()
    assert "not a VideoMAEForPreTraining" in app.status.value
