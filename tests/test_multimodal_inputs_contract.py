"""Multimodal inputs and modalities, pinned against independent computations.

prepare_rgbd / prepare_av: crop offsets, resize methods, frame indices worked out by hand, the sound's second and its
spectrogram, every note and refusal word for word; the named samples; the file front ends (stereo or depth reading,
keys, loader notes, still images, the loaders' own errors); Modality's geometry, exact patch order, the unknown-patch
threshold and normalisation.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import wave
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import explorer.depth
import explorer.video
from explorer.audio import load_audio
from explorer.data.av_clips import make_av_clip, spectrogram_patch_array
from explorer.data.rgbd import make_rgbd_scene, motorcycle_rgbd
from explorer.depth import DepthLoadError, load_depth, stereo_disparity
from explorer.io import load_image
from explorer.modalities import Modality
from explorer.multimodal import MultiModalInputError
from explorer.multimodal.inputs import (
    PreparedInputs,
    av_from_files,
    prepare_av,
    prepare_files,
    prepare_rgbd,
    rgbd_from_files,
    sample_inputs,
    sample_names,
)
from explorer.video import VideoLoadError, load_video, write_video

RATE = 16_000


def _raises(exc, message: str):
    """``pytest.raises`` matching the whole message."""
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


def _area(x: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA)


def _nearest(x: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.resize(x, (w, h), interpolation=cv2.INTER_NEAREST)


def _png(a: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", a[..., ::-1] if a.ndim == 3 else a)
    assert ok
    return buf.tobytes()


def _wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    x = np.asarray(samples, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes())
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------------------------------- prepare_rgbd
def test_rgbd_wide_image_is_centre_cropped_and_area_resized_into_0_1():
    rng = np.random.default_rng(0)
    img = rng.uniform(-0.5, 1.5, (30, 40, 3))  # float64, values outside [0, 1]
    img[:10] += 0.8  # averages above 1 at the top, below 0 at the bottom
    img[20:] -= 0.8
    x, notes = prepare_rgbd(img, None, size=12)
    want = _area(img.astype(np.float32)[:, 5:35], 12).clip(0, 1)
    assert set(x) == {"rgb"} and x["rgb"].dtype == np.float32 and x["rgb"].shape == (12, 12, 3)
    np.testing.assert_array_equal(x["rgb"], want)
    unclipped = _area(img.astype(np.float32)[:, 5:35], 12)
    assert unclipped.min() < 0 and unclipped.max() > 1 and x["rgb"].min() >= 0 and x["rgb"].max() <= 1
    assert notes == ["RGB centre-cropped from 40x30 to a square"]
    # the area average is not what a bilinear resize gives
    assert not np.array_equal(want, cv2.resize(img.astype(np.float32)[:, 5:35], (12, 12)).clip(0, 1))


def test_rgbd_tall_image_with_an_odd_difference_and_default_size():
    rng = np.random.default_rng(1)
    img = rng.random((45, 30, 3)).astype(np.float32)  # (45 - 30) // 2 = 7: rows 7..36
    x, notes = prepare_rgbd(img, None)
    np.testing.assert_array_equal(x["rgb"], _area(img[7:37], 64).clip(0, 1))
    assert x["rgb"].shape == (64, 64, 3) and notes == ["RGB centre-cropped from 30x45 to a square"]


def test_rgbd_square_inputs_give_no_notes():
    rng = np.random.default_rng(2)
    img = rng.random((20, 20, 3)).astype(np.float32)
    depth = rng.uniform(1, 5, (20, 20)).astype(np.float32)
    x, notes = prepare_rgbd(img, depth, size=8)
    assert notes == [] and list(x) == ["rgb", "depth"]
    np.testing.assert_array_equal(x["rgb"], _area(img, 8).clip(0, 1))
    np.testing.assert_array_equal(x["depth"], _nearest(depth, 8, 8))


def test_rgbd_depth_of_another_size_is_resized_to_the_image_by_nearest_neighbour():
    rng = np.random.default_rng(3)
    img = rng.random((30, 40, 3)).astype(np.float32)
    depth = rng.uniform(1, 5, (15, 20))  # float64: read as float32
    x, notes = prepare_rgbd(img, depth, size=12)
    d1 = _nearest(depth.astype(np.float32), 40, 30)
    want = _nearest(np.ascontiguousarray(d1[:, 5:35]), 12, 12)
    assert x["depth"].dtype == np.float32
    np.testing.assert_array_equal(x["depth"], want)
    assert set(np.unique(x["depth"])) <= set(np.unique(depth.astype(np.float32)))  # no blended depths
    assert notes == ["RGB centre-cropped from 40x30 to a square", "depth resized from 20x15 to the image's 40x30"]


def test_rgbd_depth_alone_is_cropped_without_notes_and_unknown_depth_is_counted():
    rng = np.random.default_rng(4)
    depth = rng.uniform(1, 5, (30, 41)).astype(np.float32)  # (41 - 30) // 2 = 5
    x, notes = prepare_rgbd(None, depth, size=10)
    assert list(x) == ["depth"] and notes == []
    np.testing.assert_array_equal(x["depth"], _nearest(np.ascontiguousarray(depth[:, 5:35]), 10, 10))
    sq = rng.uniform(1, 5, (10, 10)).astype(np.float32)
    sq[0, 0] = sq[3, 4] = np.nan
    sq[9, 9] = np.inf
    x, notes = prepare_rgbd(None, sq, size=10)
    assert np.isnan(x["depth"][0, 0]) and np.isinf(x["depth"][9, 9])
    assert notes == ["3% of the depth is unknown (left out of the input and of the scores)"]
    sq[:] = np.nan
    assert prepare_rgbd(None, sq, size=10)[1] == ["100% of the depth is unknown (left out of the input and of the scores)"]


def test_rgbd_refusals_word_for_word():
    with _raises(MultiModalInputError, "Give an RGB image, a depth map, or both."):
        prepare_rgbd(None, None)
    with _raises(MultiModalInputError, "The RGB image must be (H, W, 3), got (30, 40)."):
        prepare_rgbd(np.zeros((30, 40)), None)
    with _raises(MultiModalInputError, "The RGB image must be (H, W, 3), got (30, 40, 4)."):
        prepare_rgbd(np.zeros((30, 40, 4)), None)
    with _raises(MultiModalInputError, "The RGB image must be (H, W, 3), got (1, 30, 40, 3)."):
        prepare_rgbd(np.zeros((1, 30, 40, 3)), None)
    with _raises(MultiModalInputError, "The depth map must be (H, W), got (30, 40, 1)."):
        prepare_rgbd(np.zeros((30, 40, 3)), np.ones((30, 40, 1)))
    with _raises(MultiModalInputError, "The depth map must be (H, W), got (30,)."):
        prepare_rgbd(None, np.ones(30))


# ------------------------------------------------------------------------------------------------------ prepare_av
def _ramp(t: int, h: int = 6, w: int = 8) -> np.ndarray:
    """``t`` frames, frame ``i`` holding ``i / 100`` everywhere."""
    return np.stack([np.full((h, w, 3), i / 100) for i in range(t)])


def _which(video: np.ndarray) -> list[int]:
    return [int(v) for v in np.round(video[:, 0, 0, 0] * 100)]


def test_av_frames_at_8_fps_from_the_start_time_round_half_to_even():
    # (0.5 + k/8) * 20 = 10, 12.5, 15, 17.5, 20, 22.5, 25, 27.5 → np.round: 10, 12, 15, 18, 20, 22, 25, 28
    x, notes = prepare_av(_ramp(40), 20.0, None, start_s=0.5, size=4)
    assert _which(x["video"]) == [10, 12, 15, 18, 20, 22, 25, 28]
    np.testing.assert_allclose(x["video"][:, 2, 3, 1], np.array([10, 12, 15, 18, 20, 22, 25, 28]) / 100, atol=1e-6)
    assert list(x) == ["video"] and x["video"].shape == (8, 4, 4, 3)
    assert notes == ["frames at 8 fps from 0.50 s (clip at 20 fps)"]
    x, notes = prepare_av(_ramp(29), 20.0, None, start_s=0.5, size=4)  # the last index (28) is the last frame
    assert _which(x["video"]) == [10, 12, 15, 18, 20, 22, 25, 28]
    assert notes == ["frames at 8 fps from 0.50 s (clip at 20 fps)"]


def test_av_a_short_clip_repeats_its_last_frame_and_says_so():
    x, notes = prepare_av(_ramp(28), 20.0, None, start_s=0.5, size=4)  # index 28 is one past the end
    assert _which(x["video"]) == [10, 12, 15, 18, 20, 22, 25, 27]
    assert notes == ["the clip is shorter than 1.50 s: its last frame repeats",
                     "frames at 8 fps from 0.50 s (clip at 20 fps)"]
    x, notes = prepare_av(_ramp(12), 20.0, None, start_s=0.25, size=4)  # 5, 8 (7.5), 10, 12 (12.5), 15, ...
    assert _which(x["video"]) == [5, 8, 10, 11, 11, 11, 11, 11]
    assert notes == ["the clip is shorter than 1.25 s: its last frame repeats",
                     "frames at 8 fps from 0.25 s (clip at 20 fps)"]


def test_av_frame_rate_one_and_a_negative_start_are_clipped_to_the_clip():
    # k / 8 * 1 = 0, .125, .25, .375, .5, .625, .75, .875 → 0, 0, 0, 0, 0 (0.5 to even), 1, 1, 1
    x, notes = prepare_av(_ramp(3), 1.0, None, size=4)
    assert _which(x["video"]) == [0, 0, 0, 0, 0, 1, 1, 1]
    assert notes == ["frames at 8 fps from 0.00 s (clip at 1 fps)"]
    # (-0.25 + k/8) * 20 = -5, -2.5, 0, 2.5, 5, 7.5, 10, 12.5 → -5, -2, 0, 2, 5, 8, 10, 12 → clipped at 0
    x, notes = prepare_av(_ramp(40), 20.0, None, start_s=-0.25, size=4)
    assert _which(x["video"]) == [0, 0, 0, 2, 5, 8, 10, 12]
    assert notes == ["frames at 8 fps from -0.25 s (clip at 20 fps)"]
    x, notes = prepare_av(_ramp(40), 29.97, None, start_s=0.125, size=4)  # .3g of the rate
    assert _which(x["video"]) == [round(v) for v in (0.125 + np.arange(8) / 8) * 29.97]
    assert notes == ["frames at 8 fps from 0.12 s (clip at 30 fps)"]


@pytest.mark.parametrize("fps", [float("nan"), 0.0, -5.0, float("inf")])
def test_av_without_a_usable_frame_rate_spreads_the_frames_over_the_clip(fps):
    # floor((k + 0.5) * 20 / 8) = floor(1.25, 3.75, 6.25, 8.75, 11.25, 13.75, 16.25, 18.75)
    x, notes = prepare_av(_ramp(20), fps, None, size=4)
    assert _which(x["video"]) == [1, 3, 6, 8, 11, 13, 16, 18]
    assert notes == ["no frame rate known: frames spread over the clip, taken as one second"]
    x, _ = prepare_av(_ramp(2), fps, None, size=4)  # two frames are a clip, not a still
    assert _which(x["video"]) == [0, 0, 0, 0, 1, 1, 1, 1]


def test_av_a_still_image_is_repeated_and_other_frame_counts_and_sizes_are_kept():
    rng = np.random.default_rng(5)
    still = rng.uniform(-0.2, 1.2, (1, 30, 40, 3))
    x, notes = prepare_av(still, 20.0, None, size=12)
    want = _area(still[0].astype(np.float32)[:, 5:35], 12).clip(0, 1)
    assert x["video"].shape == (8, 12, 12, 3) and x["video"].dtype == np.float32
    for f in x["video"]:
        np.testing.assert_array_equal(f, want)
    assert notes == ["a still image: repeated over 8 frames"]
    x, notes = prepare_av(still, 20.0, None, num_frames=3, size=12)
    assert x["video"].shape == (3, 12, 12, 3) and notes == ["a still image: repeated over 3 frames"]
    x, notes = prepare_av(_ramp(40), 20.0, None, num_frames=4, size=4)  # k / 8 s: 0, 2.5 → 2, 5, 7.5 → 8
    assert _which(x["video"]) == [0, 2, 5, 8] and notes == ["frames at 8 fps from 0.00 s (clip at 20 fps)"]
    x, _ = prepare_av(_ramp(20), float("nan"), None, num_frames=4, size=4)  # floor((k + .5) * 5) = 2, 7, 12, 17
    assert _which(x["video"]) == [2, 7, 12, 17]


def test_av_frames_are_centre_cropped_area_resized_and_clipped():
    rng = np.random.default_rng(6)
    frames = rng.uniform(-0.5, 1.5, (3, 45, 30, 3))  # tall, odd difference: rows 7..36
    frames[:, :20] += 0.8  # averages above 1 at the top, below 0 at the bottom
    frames[:, 25:] -= 0.8
    x, _ = prepare_av(frames, float("nan"), None, size=12)
    idx = [0, 0, 0, 1, 1, 2, 2, 2]  # floor((k + .5) * 3 / 8)
    want = np.stack([_area(frames[i].astype(np.float32)[7:37], 12) for i in idx]).clip(0, 1)
    np.testing.assert_array_equal(x["video"], want)
    unclipped = np.stack([_area(f.astype(np.float32)[7:37], 12) for f in frames])
    assert unclipped.min() < 0 and unclipped.max() > 1
    x, _ = prepare_av(frames[:, :30].transpose(0, 2, 1, 3)[:, :, :, :], float("nan"), None)  # default size 48
    assert x["video"].shape == (8, 48, 48, 3)


def test_av_sound_is_the_second_from_the_start_time():
    rng = np.random.default_rng(7)
    a = rng.uniform(-0.5, 0.5, 24_000).astype(np.float32)
    x, notes = prepare_av(None, float("nan"), a, start_s=0.25)  # samples 4000..19999: exactly one second
    assert list(x) == ["audio"] and notes == []
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(a[4000:20_000], RATE))
    assert x["audio"].shape == (128, 96)
    x, notes = prepare_av(None, float("nan"), a[:RATE].astype(np.float64))  # exactly one second from 0: no padding
    assert notes == [] and x["audio"].dtype == np.float32
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(a[:RATE], RATE))
    # float64 samples are read as float32 (as the loaders give them)
    a64 = np.random.default_rng(17).uniform(-0.5, 0.5, RATE)
    x, _ = prepare_av(None, float("nan"), a64)
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(a64.astype(np.float32), RATE))
    assert not np.array_equal(x["audio"], spectrogram_patch_array(a64, RATE))


def test_av_short_sound_is_padded_with_silence_and_the_note_says_how_long_it_lasts():
    rng = np.random.default_rng(8)
    a = rng.uniform(-0.5, 0.5, 20_000).astype(np.float32)
    x, notes = prepare_av(None, float("nan"), a, start_s=0.5)  # 12000 samples after sample 8000
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(np.pad(a[8000:], (0, 4000)), RATE))
    assert notes == ["the sound lasts 0.75 s after 0.50 s: padded with silence to 1 s"]
    x, notes = prepare_av(None, float("nan"), a[:4000], start_s=0.5)  # starts after the sound ends
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(np.zeros(RATE, np.float32), RATE))
    assert notes == ["the sound lasts 0.00 s after 0.50 s: padded with silence to 1 s"]
    x, notes = prepare_av(None, float("nan"), a[:4000])
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(np.pad(a[:4000], (0, 12_000)), RATE))
    assert notes == ["the sound lasts 0.25 s after 0.00 s: padded with silence to 1 s"]


def test_av_video_and_sound_together_notes_in_order():
    rng = np.random.default_rng(9)
    a = rng.uniform(-0.5, 0.5, 8000).astype(np.float32)
    x, notes = prepare_av(_ramp(40), 20.0, a, start_s=0.25, size=4)
    assert list(x) == ["video", "audio"] and _which(x["video"]) == [5, 8, 10, 12, 15, 18, 20, 22]
    np.testing.assert_array_equal(x["audio"], spectrogram_patch_array(np.pad(a[4000:], (0, 12_000)), RATE))
    assert notes == ["frames at 8 fps from 0.25 s (clip at 20 fps)",
                     "the sound lasts 0.25 s after 0.25 s: padded with silence to 1 s"]


def test_av_refusals_word_for_word():
    with _raises(MultiModalInputError, "Give a video (or an image), a sound, or both."):
        prepare_av(None, 8.0, None)
    for shape in [(0, 8, 8, 3), (5, 8, 8), (2, 8, 8, 4), (1, 2, 8, 8, 3)]:
        with _raises(MultiModalInputError, f"Frames must be (T, H, W, 3) with T ≥ 1, got {shape}."):
            prepare_av(np.zeros(shape), 8.0, None)
    with _raises(MultiModalInputError, "Audio must be at 16 kHz here (got 8000 Hz); explorer.audio.load_audio resamples it."):
        prepare_av(None, 8.0, np.zeros(8000, np.float32), rate=8000)
    with _raises(MultiModalInputError, "Audio must be at 16 kHz here (got 16001 Hz); explorer.audio.load_audio resamples it."):
        prepare_av(None, 8.0, np.zeros(20_000, np.float32), rate=16_001)


# ------------------------------------------------------------------------------------------------- named samples
def _adapter(task: str, shape: tuple[int, ...]):
    def spec(name):
        if name != {"rgbd": "rgb", "audio-visual": "video"}[task]:
            raise KeyError(name)
        return SimpleNamespace(shape=shape)

    return SimpleNamespace(task=task, spec=spec)


def test_sample_names_offered_per_task():
    assert sample_names("rgbd") == [
        ("generated room 10000001 (held out)", "room:10000001"),
        ("generated room 10000004 (held out)", "room:10000004"),
        ("generated room 10000007 (held out)", "room:10000007"),
        ("generated room 10000012 (held out)", "room:10000012"),
        ("motorcycle, held-out crop 1 (Middlebury)", "motorcycle:1"),
        ("motorcycle, held-out crop 2 (Middlebury)", "motorcycle:2"),
    ]
    want = [("generated clip 10000002 (held out)", "clip:10000002"),
            ("generated clip 10000005 (held out)", "clip:10000005"),
            ("generated clip 10000009 (held out)", "clip:10000009")]
    assert sample_names("audio-visual") == want and sample_names("anything else") == want


def test_sample_room_motorcycle_and_clip():
    rgbd = _adapter("rgbd", (32, 40, 3))  # the first axis is the side
    x, notes = sample_inputs(rgbd, "room:7")
    s = make_rgbd_scene(7, 32)
    assert list(x) == ["rgb", "depth"] and x["rgb"].shape == (32, 32, 3)
    np.testing.assert_array_equal(x["rgb"], s.image)
    np.testing.assert_array_equal(x["depth"], s.depth)
    assert notes == ["room 7: generated, exact depth, not seen in training"]
    x, notes = sample_inputs(rgbd, "motorcycle:2")
    m = motorcycle_rgbd(2, 32, "test")
    np.testing.assert_array_equal(x["rgb"], m.image)
    np.testing.assert_array_equal(x["depth"], m.depth)
    assert x["depth"].shape == (32, 32)
    assert notes == ["motorcycle (test crop 2): Middlebury 2014 via scikit-image (Scharstein et al. 2014); "
                     "right 35 % of the image, held out"]
    x, notes = sample_inputs(_adapter("audio-visual", (8, 48, 48, 3)), "clip:3")
    c = make_av_clip(3)
    assert list(x) == ["video", "audio"] and x["video"].shape == (8, 48, 48, 3) and x["audio"].shape == (128, 96)
    np.testing.assert_array_equal(x["video"], c.frames)
    np.testing.assert_array_equal(x["audio"], c.spectrogram)
    assert notes == ["generated clip 3: objects ring when they bounce, held out"]


def test_unknown_samples_are_refused_with_the_offered_names():
    rgbd = _adapter("rgbd", (32, 32, 3))
    offered = "room:10000001, room:10000004, room:10000007, room:10000012, motorcycle:1, motorcycle:2"
    for name in ["clip:3", "room", "room:", "room:x", "room:X5", "room:-3", "room:²", "room:3:4", "room 3", ":3"]:
        with _raises(MultiModalInputError, f"Unknown sample {name!r} for a rgbd model; e.g. {offered}."):
            sample_inputs(rgbd, name)
    av = _adapter("audio-visual", (8, 48, 48, 3))
    with _raises(MultiModalInputError, "Unknown sample 'room:3' for a audio-visual model; e.g. "
                                       "clip:10000002, clip:10000005, clip:10000009."):
        sample_inputs(av, "room:3")
    with _raises(MultiModalInputError, "Unknown sample 'clip:3' for a text model; e.g. "
                                       "clip:10000002, clip:10000005, clip:10000009."):
        sample_inputs(SimpleNamespace(task="text"), "clip:3")


# ------------------------------------------------------------------------------------------------- rgbd from files
def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 2 + 1, w // 2 + 1, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def test_rgbd_files_image_and_grey_depth_map():
    left = _texture(30, 40)
    grey = np.random.default_rng(1).integers(0, 256, (15, 20)).astype(np.uint8)
    grey[0, 0] = 0  # no valid depth there
    lb, gb = _png(left), _png(grey)
    p = rgbd_from_files(lb, gb, size=12)
    assert isinstance(p, PreparedInputs) and p.key == f"upload:{_sha(lb)}:{_sha(gb)}"
    ld = load_depth(gb)
    assert ld.kind == "relative depth" and len(ld.notes) == 2
    assert p.notes == [*ld.notes, "relative depth: the model was trained on metres, so its numbers are not comparable",
                       "RGB centre-cropped from 40x30 to a square", "depth resized from 20x15 to the image's 40x30"]
    np.testing.assert_array_equal(p.arrays["rgb"], _area(load_image(lb).pixels[:, 5:35], 12).clip(0, 1))
    d1 = _nearest(ld.depth, 40, 30)
    np.testing.assert_array_equal(p.arrays["depth"], _nearest(np.ascontiguousarray(d1[:, 5:35]), 12, 12))


def test_rgbd_files_loader_notes_metric_depth_and_default_size():
    grey_left = _texture(32, 32)[..., 0]  # a grey image as the RGB: the loader's note comes first
    depth = np.random.default_rng(2).uniform(1, 4, (32, 32)).astype(np.float32)
    p = rgbd_from_files(_png(grey_left), depth)  # an array: metric depth, no kind note
    assert p.notes == ["grayscale replicated to RGB"]
    assert p.key == f"upload:{_sha(_png(grey_left))}:{load_depth(depth).sha256}"
    assert p.arrays["rgb"].shape == (64, 64, 3) and p.arrays["depth"].shape == (64, 64)
    mm = np.full((32, 32), 2000, np.uint16)
    p = rgbd_from_files(None, _png(mm), size=8)  # depth alone; a 16-bit PNG is millimetres
    assert list(p.arrays) == ["depth"] and p.key == f"upload:{_sha(_png(mm))}"
    assert p.notes == ["16-bit image read as millimetres (× 0.001 → metres)"]
    np.testing.assert_allclose(p.arrays["depth"], 2.0, rtol=1e-6)
    p = rgbd_from_files(_png(_texture(20, 20)), None, size=8)
    assert list(p.arrays) == ["rgb"] and p.notes == [] and p.key == f"upload:{_sha(_png(_texture(20, 20)))}"


def test_rgbd_files_a_colour_second_image_is_the_right_stereo_view():
    left = _texture(48, 64, seed=3)
    right = np.roll(left, -4, axis=1)
    lb, rb = _png(left), _png(right)
    p = rgbd_from_files(lb, rb, size=16)
    assert p.key == f"upload:{_sha(lb)}:{_sha(rb)}"
    d = stereo_disparity(load_image(lb).pixels, load_image(rb).pixels)
    dep = np.where(d.valid, 50.0 / np.maximum(d.depth, 1e-6), np.nan).astype(np.float32)
    want = _nearest(np.ascontiguousarray(dep[:, 8:56]), 16, 16)
    np.testing.assert_allclose(p.arrays["depth"], want, rtol=1e-6)
    unknown = f"{np.isnan(want).mean():.0%} of the depth is unknown (left out of the input and of the scores)"
    assert p.notes == ["depth from the stereo pair: 50 / disparity (relative, not metres; no calibration given)",
                       "RGB centre-cropped from 64x48 to a square", unknown]
    assert np.nanmedian(p.arrays["depth"]) == pytest.approx(50 / 4, rel=0.05)
    # forced: a grey right view is read as a view; a colour second file read as depth is refused by the depth loader
    grey_l, grey_r = left[..., 1], right[..., 1]
    p = rgbd_from_files(lb, _png(grey_r), size=16, stereo_right=True)
    assert p.notes[0].startswith("depth from the stereo pair") and p.key == f"upload:{_sha(lb)}:{_sha(_png(grey_r))}"
    p = rgbd_from_files(lb, _png(grey_r), size=16)  # not forced: grey → a depth map
    assert "relative depth: the model was trained on metres, so its numbers are not comparable" in p.notes
    with _raises(DepthLoadError, "<bytes> is a colour image, not a depth map (depth has one channel)."):
        rgbd_from_files(lb, rb, size=16, stereo_right=False)
    assert grey_l.shape == grey_r.shape


def test_rgbd_files_stereo_depth_is_50_over_the_disparity(monkeypatch):
    disp = np.array([[0.5, 2.0, 1e-7, 0.0], [4.0, 8.0, 0.25, -1.0], [1.0, 3.0, 5.0, 10.0], [0.75, 6.0, 7.0, 9.0]],
                    np.float32)
    valid = disp > 0
    monkeypatch.setattr(explorer.depth, "stereo_disparity", lambda a, b: SimpleNamespace(depth=disp, valid=valid))
    left = _texture(4, 4, seed=4)
    p = rgbd_from_files(_png(left), _png(np.roll(left, 1, axis=1)), size=4)
    want = np.where(valid, 50.0 / np.maximum(disp.astype(np.float64), 1e-6), np.nan)
    np.testing.assert_allclose(p.arrays["depth"], want, rtol=1e-6)
    assert p.arrays["depth"][0, 2] == pytest.approx(5e7, rel=1e-6)  # a disparity below 1e-6 counts as 1e-6


def test_rgbd_files_grey_alpha_second_image_is_a_depth_map_and_other_files_too():
    from PIL import Image

    left = _texture(16, 16)
    g = np.random.default_rng(5).integers(1, 256, (16, 16)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([g, g]), "LA").save(buf, "PNG")  # two channels: not a colour view
    la = buf.getvalue()
    assert load_image(la).channels == 2
    p = rgbd_from_files(_png(left), la, size=16)
    assert p.notes == ["grey depth stored as RGB: first channel used",
                       "8-bit image: relative depth (0–255, larger = farther assumed), not metres",
                       "relative depth: the model was trained on metres, so its numbers are not comparable"]
    np.testing.assert_array_equal(p.arrays["depth"], g.astype(np.float32))
    npy = io.BytesIO()
    np.save(npy, np.full((16, 16), 3.0, np.float32))  # not an image at all: the depth loader reads it
    p = rgbd_from_files(_png(left), npy.getvalue(), size=16)
    assert p.notes == [] and (p.arrays["depth"] == 3.0).all()


def test_rgbd_files_refusals():
    with _raises(MultiModalInputError, "A right stereo image needs the left image in the RGB box."):
        rgbd_from_files(None, _png(_texture(48, 64)))
    with _raises(MultiModalInputError, "A right stereo image needs the left image in the RGB box."):
        rgbd_from_files(None, _png(_texture(48, 64)[..., 0]), stereo_right=True)
    with _raises(MultiModalInputError, "Give an RGB image, a depth map, or both."):
        rgbd_from_files()


# --------------------------------------------------------------------------------------------------- av from files
@pytest.fixture()
def spy_load_video(monkeypatch):
    calls = []
    real = explorer.video.load_video

    def spy(source, **kw):
        calls.append(kw)
        return real(source, **kw)

    monkeypatch.setattr(explorer.video, "load_video", spy)
    return calls


def _crop48(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    s = min(h, w)
    return np.stack([_area(f[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s], 48) for f in frames]).clip(0, 1)


def test_av_files_video_and_sound(tmp_path, spy_load_video):
    tex = np.random.default_rng(10).random((240, 320, 3))
    frames = np.stack([0.5 * tex + i * 0.03 for i in range(16)])  # 16 frames at 16 fps: one second
    path = tmp_path / "clip.avi"
    write_video(path, frames, fps=16.0)
    snd = _wav(np.random.default_rng(11).uniform(-0.3, 0.3, (8000, 2)))  # stereo, 0.5 s
    p = av_from_files(str(path), snd, start_s=0.25)
    at = 0.25 + np.arange(8) / 8
    assert len(spy_load_video) == 1 and set(spy_load_video[0]) == {"at_s", "max_side", "max_pixels"}
    np.testing.assert_allclose(spy_load_video[0]["at_s"], at)
    assert spy_load_video[0]["max_side"] == 192 and spy_load_video[0]["max_pixels"] == 36_000_000
    v = load_video(str(path), at_s=at, max_side=192, max_pixels=36_000_000)
    assert v.fps == 16.0 and list(v.indices) == [4, 6, 8, 10, 12, 14, 15, 15] and v.frames.shape[1:3] == (144, 192)
    assert list(p.arrays) == ["video", "audio"] and p.arrays["video"].shape == (8, 48, 48, 3)
    np.testing.assert_array_equal(p.arrays["video"], _crop48(v.frames))
    np.testing.assert_allclose(p.arrays["video"].mean((1, 2, 3)) - 0.25, np.array(v.indices) * 0.03, atol=0.02)
    a = load_audio(snd)
    np.testing.assert_array_equal(p.arrays["audio"], spectrogram_patch_array(np.pad(a.samples[4000:], (0, 12_000)), RATE))
    assert p.key == f"upload:{_sha(path.read_bytes())}:{_sha(snd)}"
    assert len(v.notes) == 1 and a.notes == ("2 channels mixed down to mono",)
    assert p.notes == [*v.notes, "frames at 8 fps from 0.25 s (clip at 16 fps)", "2 channels mixed down to mono",
                       "the sound lasts 0.25 s after 0.25 s: padded with silence to 1 s"]


def test_av_files_video_alone_and_sound_alone(tmp_path, spy_load_video):
    frames = np.stack([np.full((30, 40, 3), i * 0.05) for i in range(12)])
    path = tmp_path / "clip.avi"
    write_video(path, frames, fps=12.0)
    p = av_from_files(path)
    assert list(p.arrays) == ["video"] and p.key == f"upload:{_sha(path.read_bytes())}"
    assert p.notes == ["frames at 8 fps from 0.00 s (clip at 12 fps)"]
    # k / 8 s at 12 fps: 0, 1.5, 3, 4.5, 6, 7.5, 9, 10.5 → nearest frame, ties to the later one
    np.testing.assert_allclose(p.arrays["video"][:, 0, 0, 0], np.array([0, 2, 3, 5, 6, 8, 9, 11]) * 0.05, atol=0.01)
    snd = _wav(np.random.default_rng(12).uniform(-0.3, 0.3, RATE))
    p = av_from_files(None, snd)
    a = load_audio(snd)
    assert list(p.arrays) == ["audio"] and p.key == f"upload:{_sha(snd)}" and p.notes == []
    np.testing.assert_array_equal(p.arrays["audio"], spectrogram_patch_array(a.samples, RATE))
    with _raises(MultiModalInputError, "Give a video (or an image), a sound, or both."):
        av_from_files()


def test_av_files_an_array_without_a_frame_rate_is_spread_over_the_clip(spy_load_video):
    arr = np.random.default_rng(13).random((12, 30, 40, 3)).astype(np.float32)
    p = av_from_files(arr)
    assert [set(c) for c in spy_load_video] == [{"at_s", "max_side", "max_pixels"}, {"num_frames", "max_side", "max_pixels"}]
    assert spy_load_video[1]["num_frames"] == 8 and spy_load_video[1]["max_side"] == 192
    assert spy_load_video[1]["max_pixels"] == 36_000_000
    v = load_video(arr, num_frames=8)
    assert list(v.indices) == [0, 2, 3, 5, 6, 8, 9, 11]  # floor((k + .5) * 12 / 8)
    np.testing.assert_array_equal(p.arrays["video"], _crop48(arr[[0, 2, 3, 5, 6, 8, 9, 11]]))
    assert p.notes == ["no frame rate known: frames spread over the clip, taken as one second"]
    assert p.key == f"upload:{v.sha256}"


#: load_audio's note for a sound of zeros (the sounds below are digital silence)
SILENT = "digital silence: every sample is 0, so the spectrogram is flat at its floor"


def test_av_files_a_still_image_with_sound():
    grey = _texture(30, 40)[..., 0]
    img = _png(grey)
    snd = _wav(np.zeros(RATE // 2))
    p = av_from_files(img, snd)
    assert p.key == f"upload:{_sha(img)}:{_sha(snd)}"
    # the image loader's note (grey replicated) is kept, as for the RGB-D files
    assert p.notes == ["grayscale replicated to RGB", SILENT, "a still image: repeated over 8 frames",
                       "the sound lasts 0.50 s after 0.00 s: padded with silence to 1 s"]
    want = _area(load_image(img).pixels[:, 5:35], 48).clip(0, 1)
    assert list(p.arrays) == ["video", "audio"] and p.arrays["video"].shape == (8, 48, 48, 3)
    for f in p.arrays["video"]:
        np.testing.assert_array_equal(f, want)
    p = av_from_files(_png(_texture(30, 40)))
    assert list(p.arrays) == ["video"] and p.notes == ["a still image: repeated over 8 frames"]


def test_av_files_neither_a_video_nor_an_image_gives_the_video_loaders_error():
    data = b"hello, this is neither a video nor an image" * 4
    with pytest.raises(VideoLoadError) as want:
        load_video(data)
    with pytest.raises(VideoLoadError) as got:
        av_from_files(data)
    assert str(got.value) == str(want.value) and str(got.value).startswith("Not a video file (detected: ")
    assert got.value.__cause__ is None and got.value.__suppress_context__


def test_prepare_files_dispatches_and_refuses():
    with _raises(MultiModalInputError, "Upload a file first (either box, or both)."):
        prepare_files("rgbd")
    with _raises(MultiModalInputError, "Upload a file first (either box, or both)."):
        prepare_files("audio-visual", None, None)
    with _raises(MultiModalInputError, "No file inputs for a 'text' model (rgbd or audio-visual)."):
        prepare_files("text", b"x")
    img = _png(_texture(20, 20))
    p = prepare_files("rgbd", img, size=8)
    assert list(p.arrays) == ["rgb"] and p.arrays["rgb"].shape == (8, 8, 3)
    assert prepare_files("rgbd", img).arrays["rgb"].shape == (64, 64, 3)
    depth = _png(np.full((20, 20), 1500, np.uint16))
    p = prepare_files("rgbd", None, depth, size=4)
    assert list(p.arrays) == ["depth"] and p.arrays["depth"].shape == (4, 4)
    colour = _png(_texture(48, 64))
    with _raises(DepthLoadError, "<bytes> is a colour image, not a depth map (depth has one channel)."):
        prepare_files("rgbd", colour, colour, stereo_right=False)
    grey = _png(_texture(48, 64)[..., 0])
    assert prepare_files("rgbd", colour, grey, stereo_right=True, size=8).notes[0].startswith("depth from the stereo pair")
    snd = _wav(np.zeros(RATE))
    p = prepare_files("audio-visual", None, snd, start_s=0.75)
    assert list(p.arrays) == ["audio"]
    assert p.notes == [SILENT, "the sound lasts 0.25 s after 0.75 s: padded with silence to 1 s"]
    p = prepare_files("audio-visual", img)
    assert list(p.arrays) == ["video"] and p.arrays["video"].shape == (8, 48, 48, 3)
    p = prepare_files("audio-visual", None, _wav(np.zeros(RATE // 2)))  # from the start by default
    assert p.notes == [SILENT, "the sound lasts 0.50 s after 0.00 s: padded with silence to 1 s"]


# -------------------------------------------------------------------------------------------------------- Modality
# statistics that float32 cannot hold exactly: a float64 input must be normalised with float64 statistics
IMG = Modality("img", "image", (4, 6, 2), (2, 3), (0.45, 0.3), (0.2, 0.7))
DEP = Modality("dep", "depth", (4, 6), (2, 3), (2.3,), (0.7,), unit="metres")
VID = Modality("vid", "video", (4, 4, 6, 2), (2, 2, 3), (0.1, 0.2), (1.0, 1.0))
SPEC = Modality("spec", "spectrogram", (4, 9), (2, 3), (-4.0,), (2.0,))


def _ref_patchify(m: Modality, x: np.ndarray) -> np.ndarray:
    """Loops: patches in row-major grid order, each the block's values in row-major order (channels last)."""
    out = []
    for b in range(x.shape[0]):
        toks = []
        for pos in itertools.product(*(range(g) for g in m.grid)):
            block = x[(b, *(slice(i * p, (i + 1) * p) for i, p in zip(pos, m.patch)))]
            toks.append(block.reshape(-1))
        out.append(np.stack(toks))
    return np.stack(out)


def test_modality_geometry_by_hand():
    assert (IMG.grid, IMG.num_patches, IMG.channels, IMG.patch_dim) == ((2, 2), 4, 2, 12)
    assert (DEP.grid, DEP.num_patches, DEP.channels, DEP.patch_dim) == ((2, 2), 4, 1, 6)
    assert (VID.grid, VID.num_patches, VID.channels, VID.patch_dim) == ((2, 2, 2), 8, 2, 24)
    assert (SPEC.grid, SPEC.num_patches, SPEC.channels, SPEC.patch_dim) == ((2, 3), 6, 1, 6)
    for m in (IMG, DEP, VID, SPEC):
        assert all(type(g) is int for g in m.grid) and type(m.num_patches) is int and type(m.patch_dim) is int
    assert [IMG.patch_index((i, j)) for i in range(2) for j in range(2)] == [0, 1, 2, 3]
    assert VID.patch_index((1, 0, 1)) == 5 and SPEC.patch_index((1, 2)) == 5 and type(SPEC.patch_index((0, 1))) is int


@pytest.mark.parametrize("m", [IMG, DEP, VID, SPEC], ids=lambda m: m.kind)
def test_patchify_exact_order_and_unpatchify_inverse(m):
    x = np.arange(2 * prod_(m.shape), dtype=np.float32).reshape(2, *m.shape)
    tok = m.patchify(torch.from_numpy(x))
    assert tuple(tok.shape) == (2, m.num_patches, m.patch_dim)
    np.testing.assert_array_equal(tok.numpy(), _ref_patchify(m, x))
    back = m.unpatchify(tok)
    assert tuple(back.shape) == (2, *m.shape) and torch.equal(back, torch.from_numpy(x))


def prod_(shape) -> int:
    return int(np.prod(shape))


def test_patchify_first_tokens_by_hand():
    x = torch.arange(48.0).reshape(1, 4, 6, 2)
    tok = IMG.patchify(x)
    # patch (0, 0): rows 0-1, columns 0-2, both channels; patch (0, 1) starts at column 3 = value 6
    assert tok[0, 0].tolist() == [0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17]
    assert tok[0, 1].tolist() == [6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23]
    assert tok[0, 2].tolist() == [24, 25, 26, 27, 28, 29, 36, 37, 38, 39, 40, 41]
    d = DEP.patchify(torch.arange(24.0).reshape(1, 4, 6))
    assert d[0].tolist() == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11], [12, 13, 14, 18, 19, 20], [15, 16, 17, 21, 22, 23]]


def test_unpatchify_mask_spreads_each_flag_over_its_patch():
    m = IMG.unpatchify_mask(np.array([True, False, False, True]))
    want = np.zeros((4, 6, 2), bool)
    want[0:2, 0:3] = want[2:4, 3:6] = True
    assert m.dtype == bool and np.array_equal(m, want)
    d = DEP.unpatchify_mask([0, 1, 0, 0])
    want = np.zeros((4, 6), bool)
    want[0:2, 3:6] = True
    assert np.array_equal(d, want)
    v = VID.unpatchify_mask(np.eye(8, dtype=bool)[5])  # (1, 0, 1): frames 2-3, rows 0-1, columns 3-5
    want = np.zeros((4, 4, 6, 2), bool)
    want[2:4, 0:2, 3:6] = True
    assert np.array_equal(v, want)


def test_unknown_patches_more_than_half_unknown():
    t = torch.zeros(2, 3, 4)
    t[0, 0, :2] = float("nan")  # exactly half: still shown
    t[0, 1, :3] = float("nan")  # three quarters
    t[0, 2, :3] = float("inf")
    t[1, 0, 0] = float("-inf")
    t[1, 2, :] = float("nan")
    assert Modality.unknown_patches(t).tolist() == [[False, True, True], [False, False, True]]
    assert IMG.unknown_patches(torch.zeros(5, 2)).shape == (5,)


def test_normalise_and_denormalise_per_channel_in_the_input_dtype():
    x = torch.from_numpy(np.random.default_rng(14).random((2, 4, 6, 2)))  # float64
    n = IMG.normalise(x)
    want = (x.numpy() - np.array([0.45, 0.3])) / np.array([0.2, 0.7])
    assert n.dtype == torch.float64 and np.array_equal(n.numpy(), want)
    assert np.array_equal(IMG.denormalise(n).numpy(), want * np.array([0.2, 0.7]) + np.array([0.45, 0.3]))
    n32 = IMG.normalise(x.float())
    assert n32.dtype == torch.float32
    np.testing.assert_allclose(n32.numpy(), want, rtol=1e-5, atol=1e-6)
    d = torch.from_numpy(np.random.default_rng(15).random((2, 4, 6)) * 5)
    d[0, 0, 0] = float("nan")
    nd = DEP.normalise(d)
    assert nd.shape == (2, 4, 6) and nd.dtype == torch.float64 and torch.isnan(nd[0, 0, 0])
    np.testing.assert_array_equal(nd.numpy(), (d.numpy() - 2.3) / 0.7)
    dd = DEP.denormalise(nd)
    assert dd.shape == (2, 4, 6)
    np.testing.assert_array_equal(dd.numpy(), nd.numpy() * 0.7 + 2.3)
    # the statistics follow the input's device
    meta = IMG.normalise(torch.zeros(1, 4, 6, 2, device="meta"))
    assert meta.device.type == "meta" and IMG.denormalise(meta).device.type == "meta"


def test_check_and_construction_refusals_word_for_word():
    with _raises(ValueError, "img: expected arrays of shape (B, 4, 6, 2), got (1, 4, 6, 3)."):
        IMG.patchify(torch.zeros(1, 4, 6, 3))
    with _raises(ValueError, "dep: expected arrays of shape (B, 4, 6), got (4, 6)."):
        DEP.check(np.zeros((4, 6)))
    DEP.check(np.zeros((3, 4, 6)))
    with _raises(ValueError, "Unknown modality kind 'lidar'; known: image, depth, video, spectrogram, semantic."):
        Modality("d", "lidar", (4, 6), (2, 3), (0.0,), (1.0,))
    with _raises(ValueError, "d: shape (4, 7) is not a multiple of the patch (2, 3)."):
        Modality("d", "depth", (4, 7), (2, 3), (0.0,), (1.0,))
    with _raises(ValueError, "d: shape (5, 6, 3) is not a multiple of the patch (2, 3)."):
        Modality("d", "image", (5, 6, 3), (2, 3), (0.0,), (1.0,))
    Modality("d", "image", (4, 6, 5), (2, 3), (0.0,), (1.0,))  # the channel axis is not tiled


def test_to_dict_and_from_dict_round_trip_through_json():
    d = DEP.to_dict()
    assert d == {"name": "dep", "kind": "depth", "shape": (4, 6), "patch": (2, 3), "mean": (2.3,), "std": (0.7,),
                 "unit": "metres"}
    back = Modality.from_dict(json.loads(json.dumps(d)))
    assert back == DEP and type(back.shape) is tuple and back.unit == "metres"
    assert Modality.from_dict(json.loads(json.dumps(VID.to_dict()))) == VID
