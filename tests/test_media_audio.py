"""Media I/O through libsndfile (soundfile) and FFmpeg (PyAV): every WAV layout, FLAC, OGG/Vorbis and MP3 decode to the
samples that were written (compared against the array handed to soundfile, or for lossy codecs against its tone);
headers that lie are refused before decoding; the sound track of an MP4 / MKV / WebM is read without a separate WAV.

Every test file is written here by soundfile or PyAV themselves: no binary blobs in the repository.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

from explorer.audio import AudioLoadError, load_audio, load_sound_track

RATE = 16_000


def _tone(hz: float, rate: int, seconds: float = 1.0, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """``(N, channels)`` float64: channel c plays ``hz * (c + 1)``."""
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([amp * np.sin(2 * np.pi * hz * (c + 1) * t) for c in range(channels)], 1)


def _write(x: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def _resampled_mean(x: np.ndarray, rate: int) -> np.ndarray:
    """The reference: channels averaged in float64, resampled to 16 kHz by scipy (what the loader promises)."""
    from scipy.signal import resample_poly

    f = Fraction(RATE, rate).limit_denominator(1000)
    m = x.mean(1)
    return m if rate == RATE else resample_poly(m, f.numerator, f.denominator)


# ---------------------------------------------------------------------------------------------- lossless layouts
@pytest.mark.parametrize("fmt, subtype, rate, channels, tol", [
    ("WAV", "PCM_U8", 8_000, 1, 1 / 64),
    ("WAV", "PCM_16", 44_100, 2, 1e-4),
    ("WAV", "PCM_24", 48_000, 2, 1e-5),
    ("WAV", "PCM_32", 22_050, 1, 1e-6),
    ("WAV", "FLOAT", 16_000, 2, 1e-6),           # format tag 3: refused before ("unknown format 3")
    ("WAV", "DOUBLE", 32_000, 1, 1e-6),
    ("WAVEX", "PCM_24", 96_000, 8, 1e-5),        # tag 65534, 8 channels at 96 kHz, as sox writes: refused before
    ("WAVEX", "FLOAT", 48_000, 6, 1e-6),
    ("FLAC", "PCM_16", 44_100, 2, 1e-4),
    ("FLAC", "PCM_24", 96_000, 1, 1e-5),
    ("AIFF", "PCM_16", 16_000, 1, 1e-4),
])
def test_every_lossless_layout_decodes_to_the_written_samples(fmt, subtype, rate, channels, tol):
    x = _tone(220, rate, 0.5, channels, amp=0.4)
    data = _write(x, rate, fmt, subtype)
    if fmt.startswith("WAV"):
        tag = struct.unpack_from("<H", data, data.index(b"fmt ") + 8)[0]
        assert tag == {"WAV": 3 if subtype in ("FLOAT", "DOUBLE") else 1, "WAVEX": 0xFFFE}[fmt]
    a = load_audio(data, name=f"x.{fmt.lower()}")
    assert a.rate == RATE and a.source_rate == rate and a.channels == channels
    want = _resampled_mean(x, rate)
    assert a.samples.shape == want.shape
    np.testing.assert_allclose(a.samples, want, atol=tol)
    assert ("mixed down" in " ".join(a.notes)) == (channels > 1)
    assert ("resampled" in " ".join(a.notes)) == (rate != RATE)
    assert not any("truncated" in n or "silence" in n for n in a.notes)


@pytest.mark.parametrize("fmt, subtype, rate", [("OGG", "VORBIS", 44_100), ("MP3", "MPEG_LAYER_III", 44_100),
                                                ("MP3", "MPEG_LAYER_III", 16_000)])
def test_lossy_codecs_keep_the_tone(fmt, subtype, rate):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) does not read {fmt}")
    x = _tone(440, rate, 1.0, 2, amp=0.4)
    a = load_audio(_write(x, rate, fmt, subtype), name=f"x.{fmt.lower()}")
    assert a.channels == 2 and a.source_rate == rate and abs(a.seconds - 1.0) < 0.06  # MP3 pads a frame or two
    assert abs(_peak_hz(a.samples, RATE) - 440) < 4 or abs(_peak_hz(a.samples, RATE) - 880) < 4
    # the mix of 440 + 880 Hz: both present, nothing else loud
    spec = np.abs(np.fft.rfft(a.samples[:RATE // 2 * 2]))
    hz = np.fft.rfftfreq(len(a.samples[:RATE // 2 * 2]), 1 / RATE)
    near = (np.abs(hz - 440) < 10) | (np.abs(hz - 880) < 10)
    assert (spec[near] ** 2).sum() > 0.9 * (spec ** 2).sum()


def test_a_files_path_and_its_bytes_give_the_same_audio(tmp_path):
    x = _tone(300, 48_000, 0.3, 2)
    p = tmp_path / "s.flac"
    sf.write(p, x, 48_000)
    a, b = load_audio(p), load_audio(p.read_bytes(), name="s.flac")
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.sha256 == b.sha256 and a.name == "s.flac"


# ---------------------------------------------------------------------------------------------- refusals
def _flac_claiming(total_samples: int, seconds: float = 1.0, rate: int = RATE) -> bytes:
    """A FLAC whose STREAMINFO declares ``total_samples`` (36 bits; 0 = unknown), whatever it holds."""
    data = bytearray(_write(_tone(440, rate, seconds), rate, "FLAC", "PCM_16"))
    assert data[:4] == b"fLaC"
    info = 8  # after "fLaC" and the block header
    word = int.from_bytes(data[info + 10:info + 18], "big")  # rate 20 | channels 3 | bps 5 | total 36
    word = (word & ~((1 << 36) - 1)) | total_samples
    data[info + 10:info + 18] = word.to_bytes(8, "big")
    return bytes(data)


def test_a_header_claiming_hours_is_refused_before_decoding(monkeypatch):
    import soundfile

    bomb = _flac_claiming((1 << 36) - 1)  # 4.3 million s at 16 kHz
    reads = []
    real = soundfile.SoundFile.read
    monkeypatch.setattr(soundfile.SoundFile, "read", lambda self, *a, **k: reads.append(1) or real(self, *a, **k))
    with pytest.raises(AudioLoadError, match=r"lasts 4294967 s; the limit is 600 s"):
        load_audio(bomb, name="bomb.flac")
    assert reads == []  # not one sample decoded


def test_a_header_understating_the_length_stops_decoding_at_the_limit():
    unknown = _flac_claiming(0, seconds=3.0)  # "length unknown", holds 3 s
    assert load_audio(unknown).seconds > 2.5
    with pytest.raises(AudioLoadError, match="limit is 1 s"):
        load_audio(unknown, max_seconds=1.0)
    one = _flac_claiming(RATE, seconds=3.0)  # claims 1 s, holds 3 s: libsndfile stops at the claimed length
    assert load_audio(one, max_seconds=1.5).seconds <= 1.5


def test_damaged_files_are_refused_or_noted():
    flac = _write(_tone(440, RATE, 1.0), RATE, "FLAC", "PCM_16")
    cut = load_audio(flac[: len(flac) // 2], name="cut.flac")
    assert 0.2 < cut.seconds < 0.8 and any("truncated" in n for n in cut.notes)
    with pytest.raises(AudioLoadError, match="not an audio file libsndfile or FFmpeg can read"):
        load_audio(flac[:40], name="head.flac")
    with pytest.raises(AudioLoadError, match="not an audio file libsndfile or FFmpeg can read"):
        load_audio(b"just some text, not a sound" * 20, name="notes.txt")
    wav = bytearray(_write(_tone(440, RATE, 0.5), RATE, "WAV", "FLOAT"))
    wav[wav.index(b"fmt ") + 12:wav.index(b"fmt ") + 16] = struct.pack("<I", 0)
    with pytest.raises(AudioLoadError, match="sample rate of 0 Hz"):
        load_audio(bytes(wav), name="r0.wav")
    fx = _write(_tone(440, RATE, 1.0, 2), RATE, "WAVEX", "FLOAT")
    a = load_audio(fx[:-8000], name="cut.wav")
    assert any(n == f"the file is truncated: {RATE - 1000} of {RATE} samples present" for n in a.notes)


def test_digital_silence_is_noted_and_quiet_sound_is_not():
    silent = load_audio(_write(np.zeros((RATE, 2)), RATE, "WAV", "PCM_16"))
    assert any("digital silence" in n for n in silent.notes)
    quiet = load_audio(_write(_tone(440, RATE, 1.0, amp=1e-3), RATE, "WAV", "PCM_16"))
    assert not any("silence" in n for n in quiet.notes)


# ---------------------------------------------------------------------------------------------- video sound tracks
def _video_with_sound(path, container: str, vcodec: str, acodec: str, *, hz: float = 440.0, seconds: float = 1.0,
                      rate: int = 48_000, fps: int = 10, sound: bool = True) -> None:
    """A small video (grey ramp frames) with a ``hz`` stereo tone on its sound track, muxed by PyAV."""
    import av

    with av.open(str(path), "w", format=container) as c:
        v = c.add_stream(vcodec, rate=fps)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = None
        if sound:
            a = c.add_stream(acodec, rate=rate)
            a.layout = "stereo"
        for i in range(int(seconds * fps)):
            img = np.full((48, 64, 3), 20 + 10 * i % 200, np.uint8)
            for pkt in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        if a is not None:
            t = np.arange(int(rate * seconds)) / rate
            x = (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
            step = 1024
            for s in range(0, len(x), step):
                block = np.stack([x[s:s + step], x[s:s + step]])
                fr = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                fr.rate, fr.pts = rate, s
                for pkt in a.encode(fr):
                    c.mux(pkt)
            for pkt in a.encode(None):
                c.mux(pkt)
        for pkt in v.encode(None):
            c.mux(pkt)


CONTAINERS = [("mp4", "mpeg4", "aac"), ("matroska", "mpeg4", "libvorbis"), ("webm", "libvpx", "libopus")]


@pytest.mark.parametrize("container, vcodec, acodec", CONTAINERS)
def test_the_sound_track_of_a_video_is_read(tmp_path, container, vcodec, acodec):
    import av

    if acodec not in av.codecs_available or vcodec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {acodec} / {vcodec} encoder")
    p = tmp_path / f"clip.{ {'matroska': 'mkv'}.get(container, container)}"
    _video_with_sound(p, container, vcodec, acodec)
    a = load_audio(p)
    assert a.channels == 2 and a.source_rate == 48_000 and abs(a.seconds - 1.0) < 0.1
    assert abs(_peak_hz(a.samples, RATE) - 440) < 4
    assert any("sound track" in n and "FFmpeg" in n for n in a.notes)
    t = load_sound_track(str(p), until_s=0.5)
    assert t is not None and 0.5 <= t.seconds < 0.7 and abs(_peak_hz(t.samples, RATE) - 440) < 6
    np.testing.assert_allclose(t.samples[: RATE // 4], a.samples[: RATE // 4], atol=1e-4)  # the same decode
    assert t.sha256 == a.sha256


def test_a_video_without_sound(tmp_path):
    p = tmp_path / "mute.mp4"
    _video_with_sound(p, "mp4", "mpeg4", "aac", sound=False)
    with pytest.raises(AudioLoadError, match="is a video without a sound track"):
        load_audio(p)
    assert load_sound_track(str(p)) is None and load_sound_track(b"not a video at all") is None


def test_av_from_files_uses_the_videos_own_sound(tmp_path):
    from explorer.data.av_clips import spectrogram_patch_array
    from explorer.multimodal.inputs import av_from_files

    p = tmp_path / "clip.mp4"
    _video_with_sound(p, "mp4", "mpeg4", "aac", seconds=2.0, hz=1000.0)
    got = av_from_files(str(p), start_s=0.5)
    assert set(got.arrays) == {"video", "audio"} and got.arrays["audio"].shape == (128, 96)
    ref = load_audio(p).samples[RATE // 2:RATE // 2 + RATE]  # the whole track through load_audio, the same second
    np.testing.assert_allclose(got.arrays["audio"], spectrogram_patch_array(ref, RATE), atol=1e-3)
    assert any("sound track" in n for n in got.notes) and got.key.endswith(":sound-track")
    mute = tmp_path / "mute.mp4"
    _video_with_sound(mute, "mp4", "mpeg4", "aac", sound=False)
    assert set(av_from_files(str(mute)).arrays) == {"video"}
