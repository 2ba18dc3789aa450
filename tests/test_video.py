"""Video loading: good files, and every bad input refused with a message."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.video import (LoadedVideo, VideoLoadError, is_variable_rate, load_video, sample_indices, uniform_time_indices,
                            write_gif, write_video)


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


# ---------------------------------------------------------------------------- long clips, sampling, frame rates
def _numbered(n, h=16, w=16):
    """``n`` frames whose flat colours spell the frame number in base 10 (digit / 9 per channel)."""
    f = np.zeros((n, h, w, 3), np.float32)
    for i in range(n):
        f[i, ..., 0], f[i, ..., 1], f[i, ..., 2] = (i % 10) / 9, (i // 10 % 10) / 9, (i // 100 % 10) / 9
    return f


def _naive_decode(path):
    """Every frame, the obvious way (independent of load_video): ``cap.read()`` until it fails."""
    import cv2

    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    cap.release()
    return np.stack(out)


@pytest.fixture
def spy(monkeypatch):
    """Counts what the loader does through PyAV: containers opened, frames decoded (``grab``) and frames converted to
    pixels (``retrieve``, i.e. ``explorer.video._rgb``)."""
    import av

    import explorer.video as ev

    real_open, real_rgb, counts = av.open, ev._rgb, {"grab": 0, "retrieve": 0, "opened": 0}

    class Spy:
        def __init__(self, *a, **k):
            self._c = real_open(*a, **k)
            counts["opened"] += 1

        def decode(self, *a, **k):
            for fr in self._c.decode(*a, **k):
                counts["grab"] += 1
                yield fr

        def __getattr__(self, k):
            return getattr(self._c, k)

    def rgb(frame):
        counts["retrieve"] += 1
        return real_rgb(frame)

    monkeypatch.setattr(av, "open", Spy)
    monkeypatch.setattr(ev, "_rgb", rgb)
    return counts


def test_long_clip_is_sampled_in_one_pass_without_decoding_it_whole(tmp_path, spy, monkeypatch):
    import tqdm.auto

    write_video(tmp_path / "long.avi", _numbered(600), fps=30)
    bars = []
    real_tqdm = tqdm.auto.tqdm
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda *a, **k: bars.append((k, real_tqdm(*a, **k))) or bars[-1][1])
    v = load_video(tmp_path / "long.avi", num_frames=8, progress=True)  # the bar goes to stderr (captured here)
    want = [int((k + 0.5) * 600 / 8) for k in range(8)]  # the frame at the centre of each eighth: 37, 112, ...
    assert list(v.indices) == want and v.decoded == 600 and v.notes == () and not v.vfr
    assert spy["grab"] == 600 and spy["retrieve"] == 8  # one pass; 8 frames converted to pixels
    (kw, bar), = bars
    assert kw["total"] == 600 and not kw["disable"] and bar.n == 600  # over the declared frames, every frame counted
    load_video(tmp_path / "long.avi", num_frames=8, progress=False)
    assert bars[1][0]["disable"]
    np.testing.assert_allclose(v.times_s, np.array(want) / 30, atol=1e-6)
    assert np.array_equal(v.frames, _naive_decode(tmp_path / "long.avi")[want])
    assert v.frames.shape == (8, 16, 16, 3)


def test_strided_sampling_is_centred_at_the_stride(tmp_path, spy):
    write_video(tmp_path / "long.avi", _numbered(600), fps=30)
    v = load_video(tmp_path / "long.avi", num_frames=16, sampling="strided", stride=4, progress=False)
    start = (600 - 61) // 2  # 16 frames at stride 4 span 61 frames
    assert list(v.indices) == [start + 4 * k for k in range(16)] and spy["retrieve"] == 16
    assert np.array_equal(v.frames, _naive_decode(tmp_path / "long.avi")[v.indices])
    assert np.allclose(np.diff(v.times_s), 4 / 30) and v.sampling == "strided" and v.stride == 4


@pytest.mark.parametrize("sampling,short,want,note", [
    ("strided", "pad", [0, 4, 8, 8, 8, 8, 8, 8], "padded"),
    ("strided", "loop", [0, 4, 8, 3, 7, 2, 6, 1], "looped"),
    ("uniform", "loop", [0, 1, 2, 3, 5, 6, 7, 8], None),  # 9 frames are enough: no loop needed
    ("uniform", "pad", [0, 1, 2, 3, 5, 6, 7, 8], None),
])
def test_clips_shorter_than_the_model_reads_are_looped_or_padded(tmp_path, sampling, short, want, note):
    write_video(tmp_path / "short.avi", _numbered(9))
    v = load_video(tmp_path / "short.avi", num_frames=8, sampling=sampling, stride=4, short=short)
    assert list(v.indices) == want
    if note:
        assert any(n.startswith(note) and "has 9 frames" in n and "29 frames" in n for n in v.notes), v.notes
    else:
        assert v.notes == ()
    five = load_video(_numbered(5), num_frames=8, sampling="uniform", short=short)
    assert list(five.indices) == ([0, 1, 2, 3, 4, 0, 1, 2] if short == "loop" else [0, 1, 2, 3, 4, 4, 4, 4])
    assert any(("looped" if short == "loop" else "padded") in n and "has 5 frames" in n for n in five.notes)
    assert np.array_equal(five.frames, _numbered(5)[five.indices])


def test_variable_frame_rate_gif_is_sampled_in_time(tmp_path, spy):
    # A real variable-frame-rate file: an animated GIF with per-frame durations (FFmpeg gives each frame its
    # presentation time).
    durations = [40, 40, 40, 200, 200, 40, 40, 300, 40, 40]
    write_gif(tmp_path / "vfr.gif", _numbered(10), durations)
    v = load_video(tmp_path / "vfr.gif", num_frames=6)
    starts = np.cumsum([0] + durations[:-1]) / 1000
    # Independent reference: the clip lasts (last start) * n / (n - 1); the frame on screen at each sixth's centre.
    span = starts[-1] * 10 / 9
    want = [max(j for j in range(10) if starts[j] <= (k + 0.5) * span / 6 + 1e-9) for k in range(6)]
    assert list(v.indices) == want == [2, 3, 4, 7, 7, 9]
    assert want != list(sample_indices(10, 6))  # uniform in frame index would pick other frames
    assert v.vfr and any("variable frame rate (frame gaps from 40 to 300 ms)" in n for n in v.notes)
    np.testing.assert_allclose(v.clip_times_s, starts, atol=1e-6)
    np.testing.assert_allclose(v.times_s, starts[want], atol=1e-6)
    assert np.array_equal(v.frames, _naive_decode(tmp_path / "vfr.gif")[want])
    assert spy["retrieve"] <= 2 * 6  # planned from the declared rate, corrected in a second pass: never the whole clip


def test_time_sampling_on_synthetic_timestamps():
    for n, t in [(12, 4), (600, 8), (16, 8), (7, 7), (100, 16), (3, 6)]:
        ramp = np.arange(n) / 29.97
        assert list(uniform_time_indices(ramp, t)) == list(sample_indices(n, t)), (n, t)
    # a stall: frames 0-4 every 10 ms, then one frame held for a second, then 10 ms again
    ts = np.array([0.0, 0.01, 0.02, 0.03, 0.04, 1.04, 1.05, 1.06])
    assert is_variable_rate(ts) and not is_variable_rate(np.arange(8) / 25.0)
    assert list(uniform_time_indices(ts, 4)) == [4, 4, 4, 7]  # the held frame fills most of the clip's time


def test_huge_frames_are_refused_before_any_frame_is_decoded(tmp_path, spy):
    write_video(tmp_path / "big.avi", np.zeros((2, 2160, 4096, 3), np.float32))  # 8.8 megapixels
    spy["retrieve"] = 0
    with pytest.raises(VideoLoadError, match="4096x2160 are larger than the limit of 8 megapixels"):
        load_video(tmp_path / "big.avi", num_frames=2)
    assert spy["retrieve"] == 0


def test_zero_frame_and_corrupt_files_are_refused(tmp_path):
    import cv2

    wr = cv2.VideoWriter(str(tmp_path / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 8, (16, 16))
    wr.release()  # a valid container with no frame
    with pytest.raises(VideoLoadError, match="No frame could be decoded"):
        load_video(tmp_path / "zero.avi", num_frames=4)
    write_video(tmp_path / "ok.avi", _numbered(12))
    data = bytearray((tmp_path / "ok.avi").read_bytes())
    data[300:] = np.random.default_rng(0).integers(0, 256, len(data) - 300, dtype=np.uint8).tobytes()
    with pytest.raises(VideoLoadError, match="corrupt|No frame|truncated|1 frame"):
        v = load_video(bytes(data), name="bad.avi", num_frames=4)
        assert any("truncated" in n for n in v.notes), v.notes  # if some frames survive, it must say so
        raise VideoLoadError("truncated")


def test_max_side_shrinks_kept_frames_while_reading_and_the_total_is_capped(tmp_path, spy):
    write_video(tmp_path / "wide.avi", _numbered(12, h=60, w=160))
    v = load_video(tmp_path / "wide.avi", num_frames=4, max_side=40)
    assert v.frames.shape == (4, 15, 40, 3) and spy["retrieve"] == 4
    full = _naive_decode(tmp_path / "wide.avi")[v.indices]
    assert np.abs(v.frames.mean((1, 2)) - full.mean((1, 2))).max() < 0.02  # flat colours survive the shrinking
    with pytest.raises(VideoLoadError, match="max_total_pixels"):  # 4 x 60 x 160 = 38,400 pixels: refused before decoding
        load_video(tmp_path / "wide.avi", num_frames=4, max_total_pixels=30_000)
    assert spy["retrieve"] == 4
    with pytest.raises(VideoLoadError, match="max_total_pixels"):  # every frame: refused while reading
        load_video(tmp_path / "wide.avi", max_total_pixels=50_000)
    assert load_video(_numbered(6, h=60, w=160), num_frames=2, max_side=80).frames.shape == (2, 30, 80, 3)


def test_frames_at_given_times_stop_reading_after_the_last(tmp_path, spy):
    write_video(tmp_path / "long.avi", _numbered(600), fps=30)
    v = load_video(tmp_path / "long.avi", at_s=[0.0, 0.5, 1.0, 1.02])
    assert list(v.indices) == [0, 15, 30, 31] and v.sampling == "times"
    assert spy["grab"] < 100 and spy["retrieve"] == 4  # read up to a second past 1.02 s, not the 20 s clip
    assert np.array_equal(v.frames, _naive_decode(tmp_path / "long.avi")[[0, 15, 30, 31]])
    short = load_video(tmp_path / "long.avi", at_s=[25.0])  # past the end: the last frame, said so
    assert list(short.indices) == [599] and any("ends at" in n for n in short.notes)


# ---------------------------------------------------------------------------- PyAV decoding, against OpenCV's
def _write_av(path, frames, codec, rate=25, options=None):
    """``(T, H, W, 3)`` float [0, 1] frames encoded by PyAV with ``codec`` (skipped when this FFmpeg lacks it)."""
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    u8 = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = u8.shape[2], u8.shape[1], "yuv420p"
        for f in u8:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)


def _textured(n=30, h=48, w=64, seed=0):
    """``n`` frames of seeded noise sliding right and down (every pixel differs: a hard test of colour conversion)."""
    base = np.random.default_rng(seed).random((h * 2, w * 2, 3)).astype(np.float32)
    return np.stack([base[i % h:i % h + h, i % w:i % w + w] for i in range(n)])


def _opencv_times(path):
    import cv2

    cap, out = cv2.VideoCapture(str(path)), []
    while cap.grab():
        out.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return np.array(out), fps


@pytest.mark.parametrize("kind", ["h264.mp4", "mjpg.avi", "vp8.webm", "vp9.webm", "h264.mkv", "gif"])
def test_frames_equal_opencvs_decode_of_the_same_file(tmp_path, kind):
    clip = _textured()
    path = tmp_path / ("clip." + kind.split(".")[-1])
    if kind == "mjpg.avi":
        write_video(path, clip, fps=25)  # OpenCV's VideoWriter
    elif kind == "gif":
        write_gif(path, clip, 40)
    else:
        _write_av(path, clip, {"h264": "libx264", "vp8": "libvpx", "vp9": "libvpx-vp9"}[kind.split(".")[0]])
    v = load_video(path)  # every frame
    ref = _naive_decode(path)  # OpenCV: cap.read() until it fails
    times, fps = _opencv_times(path)
    assert v.frames.shape == ref.shape == (30, 48, 64, 3) and v.decoded == 30 and v.notes == ()
    # Same FFmpeg decoders and swscale conversion to RGB: the same grey levels, exactly (the contract is +-2 per channel).
    assert np.array_equal(np.round(v.frames * 255), np.round(ref * 255))
    np.testing.assert_allclose(v.clip_times_s, times, atol=1e-6)
    assert v.fps == pytest.approx(fps)
    sampled = load_video(path, num_frames=8)
    assert np.array_equal(sampled.frames, ref[sampled.indices])


def test_truncated_mp4_gives_the_truncation_note_not_an_exception(tmp_path):
    _write_av(tmp_path / "a.mp4", _textured(60), "libx264", options={"movflags": "+faststart"})  # index first
    data = (tmp_path / "a.mp4").read_bytes()
    v = load_video(data[: len(data) * 6 // 10], name="cut.mp4", num_frames=8)
    assert 2 <= v.decoded < 60 and v.frames.shape[0] == 8
    assert any("truncated" in n for n in v.notes), v.notes
    assert any(n.startswith("the file declares 60 frames but only") for n in v.notes), v.notes
    # The usual layout (index at the end): cut, it has no index left, refused with a message.
    _write_av(tmp_path / "b.mp4", _textured(60), "libx264")
    cut = (tmp_path / "b.mp4").read_bytes()
    with pytest.raises(VideoLoadError, match="cannot open this video: the file is corrupt"):
        load_video(cut[: len(cut) * 6 // 10], name="cut.mp4", num_frames=8)


def test_a_frame_that_fails_to_decode_mid_stream_ends_the_clip_with_a_note(tmp_path):
    write_video(tmp_path / "a.avi", _numbered(30), fps=25)
    data = bytearray((tmp_path / "a.avi").read_bytes())
    chunks = [i for i in range(len(data)) if data[i:i + 4] == b"00dc"]  # the header's, then one per frame, then the index
    p = chunks[1 + 12]  # frame 12's JPEG: its bytes zeroed after the start marker
    size = int.from_bytes(data[p + 4:p + 8], "little")
    data[p + 10:p + 8 + size] = bytes(size - 2)
    v = load_video(bytes(data), name="bad.avi", num_frames=4)
    assert v.decoded == 12 and "frame 13 could not be decoded: the file may be truncated" in v.notes
    assert np.array_equal(v.frames, _naive_decode(tmp_path / "a.avi")[v.indices])


def test_decoding_errors_of_pyav_become_notes_and_ffmpeg_logging_is_left_as_it_was(tmp_path, monkeypatch, caplog):
    import logging

    import av

    write_video(tmp_path / "a.avi", _numbered(20), fps=25)
    real_open = av.open

    class Breaks:  # the stream raises InvalidDataError after 7 frames, as a damaged packet does
        def __init__(self, *a, **k):
            self._c = real_open(*a, **k)

        def decode(self, *a, **k):
            for i, fr in enumerate(self._c.decode(*a, **k)):
                if i == 7:
                    raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
                yield fr

        def __getattr__(self, k):
            return getattr(self._c, k)

    monkeypatch.setattr(av, "open", Breaks)
    v = load_video(tmp_path / "a.avi", num_frames=4)
    assert v.decoded == 7 and v.notes[0] == "frame 8 could not be decoded: the file may be truncated"
    monkeypatch.setattr(av, "open", real_open)
    # Someone turned FFmpeg's log on: it is off while a damaged file is read, and on again afterwards.
    data = bytearray((tmp_path / "a.avi").read_bytes())
    data[len(data) // 2:] = np.random.default_rng(0).integers(0, 256, len(data) - len(data) // 2, np.uint8).tobytes()
    before = av.logging.get_level()
    av.logging.set_level(av.logging.VERBOSE)
    try:
        with caplog.at_level(logging.DEBUG):
            try:
                load_video(bytes(data), name="bad.avi", num_frames=4)
            except VideoLoadError:
                pass
        assert av.logging.get_level() == av.logging.VERBOSE
    finally:
        av.logging.set_level(before)
    assert not [r for r in caplog.records if r.name.startswith("libav")], [r.getMessage() for r in caplog.records]


def test_a_container_with_no_video_stream_is_refused(tmp_path):
    import av

    with av.open(str(tmp_path / "sound.mkv"), "w") as c:  # an MKV holding only sound
        s = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        fr.sample_rate = 8000
        for pkt in s.encode(fr):
            c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    with pytest.raises(VideoLoadError, match="no video stream"):
        load_video(tmp_path / "sound.mkv", num_frames=4)


def test_an_mjpg_avi_whose_codec_tag_ffmpeg_rejects_is_read_by_opencvs_mjpeg_reader(tmp_path):
    from explorer.video import _header

    write_video(tmp_path / "a.avi", _numbered(12), fps=8)
    data = bytearray((tmp_path / "a.avi").read_bytes())
    j = data.rfind(b"MJPG")  # the stream format's compression tag (the stream header's own tag is left alone)
    data[j:j + 4] = b"\x00\x01\x02\x03"
    (tmp_path / "b.avi").write_bytes(bytes(data))
    assert _header(str(tmp_path / "b.avi"))[0] == "opencv"  # FFmpeg finds no decoder for that tag
    v = load_video(tmp_path / "b.avi", num_frames=4)
    ref = load_video(tmp_path / "a.avi", num_frames=4)
    assert list(v.indices) == list(ref.indices) == [1, 4, 7, 10] and v.decoded == 12 and v.notes == ()
    np.testing.assert_allclose(v.times_s, ref.times_s)
    # another JPEG decoder (libjpeg's rounding, not FFmpeg's): the same flat colours within a grey level or two
    assert np.abs(v.frames.mean((1, 2)) - ref.frames.mean((1, 2))).max() < 0.02
