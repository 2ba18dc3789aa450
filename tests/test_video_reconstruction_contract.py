"""Video reconstruction's contract: defaults, the clip's notes carried into the result, the refusals' words, and
how `model_clip` hands the user's sampling choices to the reader."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import explorer
from explorer.masking.video import VIDEO_STRATEGIES
from explorer.reconstruction.video import GENERATED_FPS, model_clip, reading_side, reconstruct_video
from explorer.video import load_video, write_video

from _tiny import save_tiny_videomae


@pytest.fixture(scope="module")
def vmae(tmp_path_factory):
    return explorer.load_model(str(save_tiny_videomae(tmp_path_factory.mktemp("vmae") / "m")), device="cpu")


def _frames(t=4, h=40, w=56, seed=0):
    return np.random.default_rng(seed).random((t, h, w, 3), dtype=np.float32)


def test_defaults_and_the_clips_notes(vmae):
    clip = load_video(_frames(), fps=8.0, name="mine")
    rec = reconstruct_video(vmae, clip)
    assert (rec.ratio, rec.strategy, rec.seed) == (0.9, "tube", 0)
    np.testing.assert_array_equal(rec.mask, reconstruct_video(vmae, clip, 0.9, "tube", 0).mask)
    assert rec.notes[: len(clip.notes)] == list(clip.notes) and len(rec.notes) == len(clip.notes) + 1
    assert rec.notes[-1].startswith("center-crop") or "crop" in rec.notes[-1]
    plain = reconstruct_video(vmae, clip.frames)  # an array has no notes: only the fitting one
    assert len(plain.notes) == 1 and plain.notes[0] == rec.notes[-1]
    assert reconstruct_video(vmae, clip.frames.astype(np.float64)).frames.dtype == np.float32


def test_refusals_say_what_is_needed(vmae):
    with pytest.raises(ValueError) as e:
        reconstruct_video(object(), _frames())
    assert str(e.value) == "reconstruct_video needs a VideoMAEForPreTraining checkpoint (e.g. MCG-NJU/videomae-base)."
    with pytest.raises(ValueError) as e:
        reconstruct_video(vmae, _frames(), strategy="spiral")
    assert str(e.value) == f"Unknown video mask strategy 'spiral'; choose one of {', '.join(VIDEO_STRATEGIES)}."


def test_model_clip_hands_the_sampling_choices_to_the_reader(tmp_path):
    adapter = SimpleNamespace(num_frames=4, image_size=16)
    g = model_clip(adapter, "generated:3")
    assert g.name == "generated:3" and g.fps == GENERATED_FPS and len(g.frames) == 4 and g.frames.shape[1:3] == (16, 16)
    s = model_clip(adapter, "generated:3", sampling="strided", stride=7, short="loop")
    assert (s.sampling, s.stride, s.short) == ("strided", 7, "loop")
    d = model_clip(adapter, "generated:3", sampling="strided")
    assert d.stride == 4
    path = tmp_path / "wide.avi"
    write_video(path, _frames(t=12, h=48, w=80), fps=8.0)
    f = model_clip(adapter, path, sampling="strided", stride=2, short="pad")
    assert (f.sampling, f.stride, f.short) == ("strided", 2, "pad")
    np.testing.assert_array_equal(f.indices, [2, 4, 6, 8])
    assert max(f.frames.shape[1:3]) == reading_side(16) == 32  # shrunk while read
    assert model_clip(adapter, path).sampling == "uniform"


def test_reading_side_is_twice_the_longer_model_side():
    assert reading_side(16) == 32 and reading_side((16, 24)) == 48 and reading_side([30, 20]) == 60


def test_the_result_carries_the_clips_notes_loss_model_and_mask_seed(vmae):
    from explorer.masking.video import video_mask

    clip = SimpleNamespace(frames=_frames(), notes=("resampled from 30 fps",))
    rec = reconstruct_video(vmae, clip, seed=3)
    assert rec.notes[0] == "resampled from 30 fps" and len(rec.notes) == 2
    assert rec.model_id == vmae.model_id and isinstance(rec.loss, float) and np.isfinite(rec.loss)
    np.testing.assert_array_equal(rec.mask, video_mask((vmae.time_steps, *vmae.grid), 0.9, "tube", 3))
    pad = reconstruct_video(vmae, clip, fit="pad")
    assert pad.notes[-1] != rec.notes[-1] and not np.array_equal(pad.frames, rec.frames)


def test_frames_of_the_wrong_shape_are_named(vmae):
    with pytest.raises(ValueError) as e:
        reconstruct_video(vmae, _frames()[0])  # one image, not a clip
    assert str(e.value) == "Expected frames of shape (T, H, W, 3), got (40, 56, 3)."


def test_predictions_are_clipped_and_norm_pix_checkpoints_say_so(vmae, monkeypatch):
    def wild(x, mask):
        out = np.full(x.shape, 1.5, np.float32)
        out[:, ::2] = -0.5
        return out, 0.25

    monkeypatch.setattr(vmae, "reconstruct", wild)
    monkeypatch.setattr(vmae.model.config, "norm_pix_loss", True)
    rec = reconstruct_video(vmae, _frames())
    assert rec.prediction.min() == 0.0 and rec.prediction.max() == 1.0 and rec.loss == 0.25
    assert rec.notes[-1] == ("This checkpoint predicts tubelets normalised by their own mean and variance (norm_pix_loss); "
                             "hidden tubelets are shown de-normalised with their TRUE statistics, as in the VideoMAE figures.")
