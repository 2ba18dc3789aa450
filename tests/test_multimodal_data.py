"""Generated RGB-D rooms and audio-visual clips, the motorcycle's metric depth, input preparation, the trainer."""

import json

import cv2
import numpy as np
import pytest

from explorer.audio import log_mel
from explorer.multimodal import MultiModalInputError, load_multimodal_model, reconstruct_multimodal
from explorer.multimodal.inputs import prepare_av, prepare_rgbd
from explorer.data.av_clips import PITCH_HZ, RATE, make_av_clip
from explorer.data.rgbd import CAMERA_HEIGHT_M, make_rgbd_scene, motorcycle_depth, motorcycle_rgbd


def test_room_floor_depth_follows_the_pinhole_camera():
    s = make_rgbd_scene(5, size=64, n_objects=(0, 0), supersample=1)
    rng = np.random.default_rng(5)
    horizon = 64 * rng.uniform(0.2, 0.45)
    wall = rng.uniform(7.0, 14.0)
    rows = np.arange(64) + 0.5
    with np.errstate(divide="ignore"):
        expect = np.where(rows > horizon, 64 * CAMERA_HEIGHT_M / np.maximum(rows - horizon, 1e-6), np.inf)
    expect = np.minimum(expect, wall)
    np.testing.assert_allclose(s.depth[:, 10], expect, rtol=1e-5)
    assert np.array_equal(make_rgbd_scene(5, n_objects=(0, 0), supersample=1).image, s.image)


def test_room_objects_are_nearer_than_what_they_hide_and_reproducible():
    for seed in range(6):
        s = make_rgbd_scene(seed)
        empty_rng_scene = s.depth.copy()
        for o in s.objects:
            if o.mask.any():
                d = s.depth[o.mask]
                assert d.max() <= o.distance + 1e-4 and d.min() > 0.5  # the object's surface is at or before its base
        assert np.isfinite(empty_rng_scene).all() and s.image.min() >= 0 and s.image.max() <= 1
    a, b = make_rgbd_scene(9), make_rgbd_scene(9)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.depth, b.depth)


def test_motorcycle_depth_uses_the_middlebury_calibration():
    from skimage.data import stereo_motorcycle

    _, _, disp = stereo_motorcycle()
    img, depth = motorcycle_depth()
    y, x = np.argwhere(np.isfinite(disp) & (disp > 0))[1000]
    assert depth[y, x] == pytest.approx(3979.911 * 0.193001 / (4 * disp[y, x] + 124.343), rel=1e-5)
    assert 1.5 < np.nanmin(depth) and np.nanmax(depth) < 7 and np.isnan(depth[~np.isfinite(disp)]).all()
    tr, te = motorcycle_rgbd(0, part="train"), motorcycle_rgbd(0, part="test")
    assert tr.image.shape == (64, 64, 3) and not np.array_equal(tr.image, te.image)
    assert set(np.unique(te.depth[te.valid])) <= set(np.unique(depth[np.isfinite(depth)]))  # nearest: no invented depths


def test_av_clip_sounds_follow_colour_and_bounces():
    c = make_av_clip(0)
    assert c.audio.shape == (RATE,) and c.spectrogram.shape == (128, 96)
    for k, o in enumerate(c.clip.objects):  # a bounce is a reversal of the velocity
        pos = np.array([o.position(t, 48) for t in range(9)], float)
        v = np.diff(pos, axis=0)
        for fr in c.bounces[k]:
            assert (np.sign(v[fr]) * np.sign(v[fr - 1]) < 0).any()
    quiet = make_av_clip(3)
    assert quiet.bounces == ((),)
    o = quiet.clip.objects[0]
    spec = np.fft.rfft(quiet.audio * np.hanning(RATE))
    peak = np.argmax(np.abs(spec)) * RATE / RATE  # 1 Hz bins for one second
    assert peak == pytest.approx(PITCH_HZ[o.colour], abs=2) and o.shape in ("circle", "square", "triangle")
    loud = make_av_clip(0)
    fr = loud.bounces[0][0]
    mel = log_mel(loud.audio)
    before, after = mel[max(0, fr * 12 - 8):fr * 12 - 2].mean(), mel[fr * 12 + 1:fr * 12 + 6].mean()
    assert after > before + 0.5  # the bounce rings


def test_prepare_rgbd_crops_resizes_and_keeps_unknown_depth():
    img = np.random.default_rng(0).random((120, 160, 3)).astype(np.float32)
    depth = np.random.default_rng(1).uniform(1, 5, (60, 80)).astype(np.float32)
    depth[:10] = np.nan
    x, notes = prepare_rgbd(img, depth, 64)
    assert x["rgb"].shape == (64, 64, 3) and x["depth"].shape == (64, 64)
    assert set(np.unique(x["depth"][np.isfinite(x["depth"])])) <= set(np.unique(depth[np.isfinite(depth)]))
    assert np.isnan(x["depth"][0]).all() and any("centre-cropped" in n for n in notes) and any("unknown" in n for n in notes)
    centre = cv2.resize(img[:, 20:140], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(x["rgb"], centre, atol=1e-6)
    with pytest.raises(MultiModalInputError, match="Give an RGB"):
        prepare_rgbd(None, None)
    with pytest.raises(MultiModalInputError, match=r"\(H, W, 3\)"):
        prepare_rgbd(img[..., 0], None)


def test_prepare_av_times_frames_and_sound():
    frames = np.stack([np.full((30, 40, 3), t / 40, np.float32) for t in range(40)])  # 40 frames at 20 fps = 2 s
    x, notes = prepare_av(frames, 20.0, None, start_s=0.5)
    want = np.round((0.5 + np.arange(8) / 8) * 20).astype(int)
    np.testing.assert_allclose(x["video"][:, 0, 0, 0], want / 40, atol=1e-6)
    assert "audio" not in x and any("8 fps from 0.50 s" in n for n in notes)
    still, notes = prepare_av(frames[:1], float("nan"), None)
    assert (still["video"] == still["video"][0]).all() and any("still image" in n for n in notes)
    short, notes = prepare_av(None, float("nan"), np.zeros(RATE // 4, np.float32) + 0.01)
    assert short["audio"].shape == (128, 96) and any("padded with silence" in n for n in notes)
    with pytest.raises(MultiModalInputError, match="Give a video"):
        prepare_av(None, 8.0, None)
    with pytest.raises(MultiModalInputError, match="T ≥ 1"):
        prepare_av(np.zeros((0, 8, 8, 3)), 8.0, None)


@pytest.mark.parametrize("task", ["rgbd", "audio-visual"])
def test_trainer_runs_saves_safetensors_and_the_model_loads(tmp_path, task):
    import shutil

    from explorer.data.speech import ASTERISK_DIR
    from explorer.training.train_mini_multimae import main

    if task == "audio-visual" and (shutil.which("espeak-ng") is None or not ASTERISK_DIR.is_dir()):
        pytest.skip("the audio-visual task trains on speech: it needs the Debian packages espeak-ng and "
                    "asterisk-core-sounds-en-wav (make sysdeps installs them)")

    out = tmp_path / task
    main(["--task", task, "--steps", "4", "--samples", "12", "--batch", "4", "--eval-every", "2", "--out", str(out)])
    log = json.loads((out / "training_log.json").read_text())["log"]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["loss"]) for r in log)
    assert not list(out.glob("*.pt")) and (out / "model.safetensors").is_file()
    mm = load_multimodal_model(str(out), device="cpu")
    assert mm.task == task and [s.name for s in mm.modalities] == (["rgb", "depth"] if task == "rgbd" else ["video", "audio"])
    first = mm.modalities[0]
    x = {first.name: np.zeros(first.shape, np.float32) + 0.5}
    rec = reconstruct_multimodal(mm, x, {first.name: 0.5}, seed=0)
    assert rec.counts[first.name] == first.num_patches // 2


def test_masked_loss_counts_hidden_known_values_and_weights_depth_edges():
    import torch

    from explorer.training.train_mini_multimae import masked_loss

    target = {"depth": torch.tensor([[[0.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])}
    pred = {"depth": torch.zeros(1, 3, 2)}
    vis = {"depth": torch.tensor([[False, False, True]])}  # the third patch is visible: never in the loss
    known = {"depth": torch.ones(1, 3, 2, dtype=torch.bool)}
    assert float(masked_loss(pred, target, vis, known)[0]) == pytest.approx(9 / 4)
    # the second patch spans 3 (> 0.5 std): weight 1 + 4 on both its values → (5 · 9) / (2 + 10)
    assert float(masked_loss(pred, target, vis, known, edge_weight=4.0)[0]) == pytest.approx(45 / 12)
    known["depth"][0, 1, 1] = False  # an unknown value is left out
    assert float(masked_loss(pred, target, vis, known)[0]) == pytest.approx(0.0)
