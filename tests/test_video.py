"""Video loading: good files, and every bad input refused with a message."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.video import LoadedVideo, VideoLoadError, load_video, sample_indices, write_video


def _clip(n=12, h=40, w=48):
    t = np.zeros((n, h, w, 3), np.float32)
    for i in range(n):
        t[i, 5:20, 2 * i : 2 * i + 12] = 1.0  # a square moving right
    return t


def test_decodes_and_samples_uniformly(tmp_path):
    write_video(tmp_path / "a.avi", _clip())
    v = load_video(tmp_path / "a.avi", num_frames=4)
    assert isinstance(v, LoadedVideo) and v.frames.shape == (4, 40, 48, 3) and v.decoded == 12 and v.fps == 8.0
    assert list(v.indices) == [1, 4, 7, 10]
    # The square moves right: its column centre increases over the sampled frames (MJPG is lossy: a threshold).
    cols = [np.nonzero(f.mean(-1).max(0) > 0.5)[0].mean() for f in v.frames]
    assert cols == sorted(cols) and cols[-1] - cols[0] > 10
    same = load_video((tmp_path / "a.avi").read_bytes(), name="a.avi", num_frames=4)
    assert same.sha256 == v.sha256 and np.array_equal(same.frames, v.frames)


def test_arrays_and_short_videos():
    v = load_video((_clip(3) * 255).astype(np.uint8), num_frames=6)
    assert v.frames.shape == (6, 40, 48, 3) and any("repeat" in n for n in v.notes)
    assert list(sample_indices(3, 6)) == [0, 0, 1, 1, 2, 2]
    g = load_video(np.random.default_rng(0).random((2, 8, 8, 1)))
    assert g.frames.shape == (2, 8, 8, 3) and "grey" in g.notes[0]


@pytest.mark.parametrize("case", ["empty", "text", "image", "one-frame", "truncated", "bad-array", "missing"])
def test_bad_videos_are_refused_with_a_message(tmp_path, case):
    write_video(tmp_path / "ok.avi", _clip())
    data = (tmp_path / "ok.avi").read_bytes()
    src, match = {
        "empty": (b"", "empty"),
        "text": (b"hello, not a video", "Not a video file \\(detected: text file\\)"),
        "image": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "detected: PNG image"),
        "one-frame": (None, "1 frame"),
        "truncated": (data[: len(data) // 4], "corrupt|No frame|truncated"),
        "bad-array": (np.zeros((4, 8, 8)), "must be \\(T, H, W, 3\\)"),
        "missing": (str(tmp_path / "nope.mp4"), "File not found"),
    }[case]
    if case == "one-frame":
        write_video(tmp_path / "one.avi", _clip(1))
        src = tmp_path / "one.avi"
    try:
        v = load_video(src, num_frames=4)
    except VideoLoadError as e:
        import re

        assert re.search(match, str(e)), str(e)
    else:  # a truncated file may still decode its first frames: then it must say so
        assert case == "truncated" and any("truncated" in n for n in v.notes), v.notes
