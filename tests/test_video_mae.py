"""Video MAE groundwork: tube / random / frame / running-cell masks over (t, gh, gw), and masked video
reconstruction through VideoMAEForPreTraining checked against transformers' own loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import explorer
from explorer.masking import MaskError
from explorer.masking.video import VIDEO_STRATEGIES, video_mask, video_masking_order
from explorer.reconstruction.video import reconstruct_video

GRID = (4, 6, 6)


@pytest.mark.parametrize("strategy", VIDEO_STRATEGIES)
def test_masks_are_nested_seeded_and_exact(strategy):
    t, gh, gw = GRID
    prev = np.zeros(GRID, bool)
    for r in (0.25, 0.5, 0.75, 0.9):
        m = video_mask(GRID, r, strategy, seed=3)
        assert m.shape == GRID and (m | prev).sum() == m.sum()  # nested: what was hidden stays hidden
        n = round(r * gh * gw) * t if strategy == "tube" else round(r * t * gh * gw)
        assert m.sum() == n
        prev = m
    order = video_masking_order(GRID, strategy, 3)
    assert sorted(order.tolist()) == list(range(t * gh * gw))
    np.testing.assert_array_equal(order, video_masking_order(GRID, strategy, 3))
    assert not np.array_equal(video_mask(GRID, 0.5, strategy, 3), video_mask(GRID, 0.5, strategy, 4)) or strategy == "running-cell"


def test_each_strategy_has_its_shape_in_time():
    tube = video_mask(GRID, 0.75, "tube", 0)
    assert all(np.array_equal(tube[0], tube[k]) for k in range(GRID[0]))  # the same patches hidden at every time step
    frame = video_mask(GRID, 0.5, "frame", 0)
    assert sorted(frame.reshape(GRID[0], -1).mean(1).tolist()) == [0, 0, 1, 1]  # whole time steps
    cell = video_mask(GRID, 0.75, "running-cell", 0)
    per_step = cell.reshape(GRID[0], -1).sum(1)
    assert (per_step == per_step[0]).all()
    seen = cell.any(0) & (~cell).any(0)
    assert seen.all()  # every position is hidden in some time step and visible in another
    rand = video_mask(GRID, 0.75, "random", 0)
    assert not all(np.array_equal(rand[0], rand[k]) for k in range(GRID[0]))


def test_bad_requests_are_refused():
    with pytest.raises(MaskError, match="Unknown video mask strategy"):
        video_masking_order(GRID, "diagonal", 0)
    with pytest.raises(MaskError, match="Seed"):
        video_mask(GRID, 0.5, "tube", -1)
    with pytest.raises(MaskError, match="ratio"):
        video_mask(GRID, 1.5, "tube", 0)


def _tiny_videomae(folder, norm_pix: bool):
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    torch.manual_seed(0)
    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                         decoder_num_attention_heads=4, decoder_intermediate_size=64, norm_pix_loss=norm_pix)
    VideoMAEForPreTraining(cfg).save_pretrained(folder)
    return explorer.load_model(folder, device="cpu")


def _clip():
    rng = np.random.default_rng(0)
    frames = (0.3 + 0.1 * rng.random((4, 32, 32, 3))).astype(np.float32)  # textured: no constant tubelet (norm_pix divides by its std)
    for i in range(4):
        frames[i, 8:20, 4 + 3 * i: 16 + 3 * i] = rng.random(3)
    return frames


@pytest.mark.parametrize("norm_pix", [False, True])
def test_reconstruction_layout_matches_transformers_loss(tmp_path, norm_pix):
    model = _tiny_videomae(tmp_path / "vmae", norm_pix)
    assert model.family == "videomae-pretraining" and model.time_steps == 2 and model.grid == (4, 4)
    clip = _clip()
    rec = reconstruct_video(model, clip, ratio=0.75, strategy="tube", seed=1)
    hidden = np.repeat(np.kron(rec.mask, np.ones((8, 8), bool)), 2, axis=0)  # (T, S, S) hidden pixels
    np.testing.assert_allclose(rec.prediction[~hidden], clip[~hidden], atol=1e-6)  # visible tubelets are the input
    pred, loss = model.reconstruct(clip, rec.mask)
    # Independent check of the tubelet layout: the model's MSE, recomputed from our pixel-space prediction.
    err = []
    for k, r, c in zip(*np.nonzero(rec.mask)):
        a = pred[2 * k: 2 * k + 2, 8 * r: 8 * r + 8, 8 * c: 8 * c + 8].reshape(-1, 3)
        b = clip[2 * k: 2 * k + 2, 8 * r: 8 * r + 8, 8 * c: 8 * c + 8].reshape(-1, 3)
        if norm_pix:  # the loss lives in per-tubelet, per-channel normalised space
            mu, sd = b.mean(0), b.std(0, ddof=1) + 1e-6
            a, b = (a - mu) / sd, (b - mu) / sd
        err.append(((a - b) ** 2).mean())
    assert float(np.mean(err)) == pytest.approx(loss, rel=1e-3)
    assert np.isfinite(rec.psnr_masked) and rec.psnr_per_frame.shape == (4,)
    assert any("norm_pix_loss" in n for n in rec.notes) == norm_pix


def test_video_reconstruction_refuses_wrong_inputs(tmp_path):
    model = _tiny_videomae(tmp_path / "vmae", False)
    with pytest.raises(ValueError, match="4 frames"):
        reconstruct_video(model, _clip()[:3])
    with pytest.raises(ValueError, match="strategy"):
        reconstruct_video(model, _clip(), strategy="diagonal")
    with pytest.raises(ValueError, match="at least one"):
        model.reconstruct(_clip(), np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match="VideoMAEForPreTraining"):
        reconstruct_video(explorer.load_model("mini-mae"), _clip())


def test_video_baselines_copy_from_time_or_inpaint():
    from explorer.reconstruction.baselines import nearest_frame_fill, video_telea_fill

    clip = _clip()
    frame_mask = video_mask((2, 4, 4), 0.5, "frame", 0)  # one time step fully hidden
    filled = nearest_frame_fill(clip, frame_mask, 2, 8)
    hidden_step = int(np.flatnonzero(frame_mask.reshape(2, -1).all(1))[0])
    src = 1 - hidden_step  # the only visible step; its nearest frame is the adjacent one
    near = 2 * src + (1 if hidden_step > src else 0)
    for i in (2 * hidden_step, 2 * hidden_step + 1):
        np.testing.assert_array_equal(filled[i], clip[near])
    tube = video_mask((2, 4, 4), 0.5, "tube", 0)  # hidden everywhere in time: falls back to inpainting
    np.testing.assert_allclose(nearest_frame_fill(clip, tube, 2, 8), video_telea_fill(clip, tube, 2, 8))
    visible = ~np.repeat(np.kron(tube, np.ones((8, 8), bool)), 2, axis=0)
    assert np.abs(video_telea_fill(clip, tube, 2, 8)[visible] - clip[visible]).max() <= 1 / 255 + 1e-6


def test_video_figures_show_the_frame_and_its_error(tmp_path):
    from explorer.viz import video as VV

    model = _tiny_videomae(tmp_path / "vmae", False)
    rec = reconstruct_video(model, _clip(), ratio=0.5, strategy="frame", seed=0)
    shown = int(np.flatnonzero(rec.mask.reshape(2, -1).any(1))[0]) * 2  # a frame of the hidden time step
    fig = VV.video_frame_figure(rec, shown)
    err = np.array(fig.data[3].z, dtype=float)
    want = ((rec.prediction[shown] - rec.frames[shown]) ** 2).mean(-1).reshape(4, 8, 4, 8).mean((1, 3))
    np.testing.assert_allclose(err, want, rtol=1e-5)
    assert f"{rec.psnr_per_frame[shown]:.1f} dB" in fig.layout.annotations[3].text
    masked = VV.masked_frame(rec, shown)
    assert np.all(masked == VV.GREY)  # frame-wise masking hid the whole frame
    strip = VV.filmstrip(rec)
    assert len(strip.data) == 5 * 4 and all(t.source.startswith("data:image/png;base64,") for t in strip.data)
    titles = [a.text for a in strip.layout.annotations if a.xanchor == "left"]  # row titles, at the right
    assert [t.split("<br>")[0] for t in titles] == ["original", "masked", "model", "Telea (per frame)", "nearest visible frame"]
    assert f"{rec.psnr_masked:.1f} dB" in titles[2]
    # the baseline rows show the fills themselves: the Telea row's second-frame thumbnail decodes to the fill
    from explorer.reconstruction.video import TELEA_FRAMES
    assert strip.data[3 * 4 + shown].source == VV.filmstrip_sources(rec)[3 * 4 + shown]
    assert rec.baseline_psnr[TELEA_FRAMES] == pytest.approx(
        explorer.reconstruction.video.clip_masked_psnr(rec.baseline_fills[TELEA_FRAMES], rec.frames, rec.mask, 2, 8))
    tube = reconstruct_video(model, _clip(), ratio=0.5, strategy="tube", seed=0)  # the nearest frame is Telea here
    assert [t for t, _ in VV.filmstrip_rows(tube)] == ["original", "masked", "model", "Telea (per frame)"]
    assert len(VV.filmstrip(tube).data) == 4 * 4
    curve = VV.psnr_per_frame_figure(rec)
    assert sum(v is None for v in curve.data[0].y) == 2  # the visible time step has no masked PSNR
    with pytest.raises(IndexError):
        VV.video_frame_figure(rec, 4)


def test_generated_clips_move_and_are_reproducible():
    from explorer.data.clips import make_clip

    a, b = make_clip(5, frames=8), make_clip(5, frames=8)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(make_clip(6, frames=8).frames, a.frames)
    assert a.frames.shape == (8, 64, 64, 3) and a.masks.shape[:2] == (8, len(a.objects))
    for k, o in enumerate(a.objects):
        for t in range(8):
            x, y = o.position(t, 64)
            assert o.radius < x < 64 - o.radius and o.radius < y < 64 - o.radius  # bounces, never leaves
        if np.hypot(*o.velocity) > 1 and a.masks[:, k].any((1, 2)).all():
            c0 = np.argwhere(a.masks[0, k]).mean(0)
            c1 = np.argwhere(a.masks[1, k]).mean(0)
            assert np.hypot(*(c1 - c0)) > 0.3  # it moved between frames
    assert not (a.masks.sum(1) > 1).any()  # occlusion: a pixel belongs to one object at most


def test_mini_video_mae_training_script_runs_and_evaluates(tmp_path):
    from explorer.training import train_mini_video_mae as T

    T.main(["--steps", "2", "--batch", "2", "--eval-clips", "2", "--photo-clips", "3", "--generated-clips", "2",
            "--real-per-video", "1", "--out", str(tmp_path / "vmae"), "--threads", "1"])
    metrics = json.loads((tmp_path / "vmae" / "metrics.json").read_text())
    assert set(metrics) == {"real videos", "held-out photo clips", "generated clips"}
    grid = {(s, r) for s in ("tube", "random") for r in (0.9, 0.75, 0.5)}
    for name, rows in metrics.items():
        assert {(r["strategy"], r["ratio"]) for r in rows} == grid, name
    assert {r["clips"] for r in metrics["real videos"]} == {4}  # one clip of each of the four held-out videos
    # the generated-clip numbers are recomputed here from the saved model: hidden pixels picked with np.kron,
    # squared error and spread by hand
    from explorer.data.clips import make_clip
    from explorer.reconstruction.baselines import nearest_frame_fill, video_telea_fill
    from explorer.reconstruction.video import NEAREST, TELEA_FRAMES

    saved = explorer.load_model(tmp_path / "vmae")
    for m in metrics["generated clips"]:
        sq = {k: [] for k in ("model", NEAREST, TELEA_FRAMES)}
        pred_px, true_px = [], []
        for k in range(2):  # clips sorted by name, mask seed = its position
            c = make_clip(T.HELD_OUT_SEED + k, frames=saved.num_frames, size=saved.image_size)
            rec = reconstruct_video(saved, c.frames, ratio=m["ratio"], strategy=m["strategy"], seed=k)
            hidden = np.kron(np.repeat(rec.mask, rec.tubelet, 0), np.ones((1, rec.patch_size, rec.patch_size), bool))
            fills = {"model": rec.prediction, NEAREST: nearest_frame_fill(c.frames, rec.mask, rec.tubelet, rec.patch_size),
                     TELEA_FRAMES: video_telea_fill(c.frames, rec.mask, rec.tubelet, rec.patch_size)}
            for name, pred in fills.items():
                sq[name].append(((pred.astype(np.float64) - c.frames) ** 2)[hidden])
            pred_px.append(rec.prediction[hidden])
            true_px.append(c.frames[hidden])
        for name, v in sq.items():
            assert m["psnr"][name] == pytest.approx(10 * np.log10(1 / np.concatenate(v).mean()), abs=1e-6), (m["strategy"], name)
        assert m["spread"] == pytest.approx(np.concatenate(pred_px).std() / np.concatenate(true_px).std(), rel=1e-4)
        # under tube masking a patch is hidden in every frame: copying from time falls back to inpainting
        if m["strategy"] == "tube":
            assert m["psnr"][NEAREST] == pytest.approx(m["psnr"][TELEA_FRAMES])
        else:
            assert m["psnr"][NEAREST] != m["psnr"][TELEA_FRAMES]
    assert saved.family == "videomae-pretraining" and saved.num_frames == 8 and saved.grid == (8, 8)


def test_model_clip_reads_frames_at_what_the_model_needs(tmp_path):
    """Frames of a large clip are shrunk while they are read (twice the model's side on the longer side), so a clip's
    memory is bounded by what the model needs, not by the file's resolution."""
    import explorer
    from explorer.reconstruction.video import model_clip
    from explorer.video import write_video

    model = explorer.load_model("mini-video-mae", device="cpu")
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.random((12, 30, 40, 3), dtype=np.float32), 16, axis=1).repeat(16, axis=2)  # (12, 480, 640, 3)
    write_video(tmp_path / "big.avi", frames, fps=8)
    clip = model_clip(model, str(tmp_path / "big.avi"))
    assert clip.frames.shape == (model.num_frames, 96, 128, 3)  # 640x480 -> longer side 2 * 64
    rec = explorer.reconstruction.video.reconstruct_video(model, clip, ratio=0.75, seed=0)
    assert np.isfinite(rec.psnr_masked)


def test_video_orders_follow_their_definitions_exactly():
    """Tube: one seeded spatial argsort (MAE's noise) repeated in time; random: MAE's argsort over all tokens;
    frame: whole time steps in a seeded order; running-cell at 25 %: step k hides the cell position k mod 4."""
    t, gh, gw = grid = (4, 4, 6)
    L = gh * gw
    spatial = np.argsort(-np.random.default_rng(5).random(L))
    expected = (np.arange(t)[None, :] * L + spatial[:, None]).ravel()
    np.testing.assert_array_equal(video_masking_order(grid, "tube", 5), expected)
    np.testing.assert_array_equal(video_masking_order(grid, "random", 5), np.argsort(-np.random.default_rng(5).random(t * L)))
    rng = np.random.default_rng(5)
    steps = rng.permutation(t)
    within = np.argsort(-rng.random(L))
    np.testing.assert_array_equal(video_masking_order(grid, "frame", 5), (steps[:, None] * L + within[None, :]).ravel())
    np.testing.assert_array_equal(video_mask(grid, 0.5), video_mask(grid, 0.5, "tube", 0))  # the defaults: tube, seed 0
    np.testing.assert_array_equal(video_masking_order(grid), video_masking_order(grid, "tube", 0))
    # running cell below 25 %: which cells of the moving position hide first is the seed's choice
    low = {video_mask(grid, 0.1, "running-cell", s).tobytes() for s in range(6)}
    assert len(low) > 1
    cell = (np.arange(gh)[:, None] % 2) * 2 + (np.arange(gw)[None, :] % 2)
    m = video_mask(grid, 0.25, "running-cell", 5)
    for k in range(t):
        np.testing.assert_array_equal(m[k], cell == k % 4)
    with pytest.raises(MaskError, match=r"Bad token grid \(0, 4, 6\)\."):
        video_masking_order((0, 4, 6), "tube", 0)
    with pytest.raises(MaskError, match=r"Bad token grid \(2, 0, 6\)\."):
        video_masking_order((2, 0, 6), "tube", 0)
    with pytest.raises(MaskError, match=r"Bad token grid \(2, 4, 0\)\."):
        video_masking_order((2, 4, 0), "tube", 0)
    with pytest.raises(MaskError, match=r"choose one of tube, random, frame, running-cell\."):
        video_masking_order(grid, "zigzag", 0)
