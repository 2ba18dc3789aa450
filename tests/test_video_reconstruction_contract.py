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
