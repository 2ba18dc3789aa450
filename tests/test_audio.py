"""Audio: PCM WAV of any width, rate and channel count → mono at 16 kHz; a pure tone lands in the right mel band;
bad or missing audio gets a message."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from explorer.audio import AudioLoadError, load_audio, log_mel


def _wav(x: np.ndarray, rate: int, width: int = 2) -> bytes:
    x = np.atleast_2d(x.T).T if x.ndim == 1 else x
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            pcm = np.clip(np.round(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
        elif width == 2:
            pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()
        else:  # 24-bit
            v = np.clip(np.round(x * (2**23 - 1)), -(2**23), 2**23 - 1).astype(np.int32).ravel()
            pcm = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], 1).astype(np.uint8).tobytes()
        w.writeframes(pcm)
    return buf.getvalue()


def _tone(hz: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("rate, width", [(16_000, 2), (44_100, 2), (8_000, 1), (22_050, 3)])
def test_any_rate_and_width_become_16_khz_mono(rate, width):
    a = load_audio(_wav(_tone(440, rate), rate, width), name="tone.wav")
    assert a.rate == 16_000 and a.source_rate == rate and abs(a.seconds - 1.0) < 0.01
    spectrum = np.abs(np.fft.rfft(a.samples))
    assert abs(np.argmax(spectrum) * 16_000 / len(a.samples) - 440) < 3  # the tone survives decoding and resampling
    assert any("resampled" in n for n in a.notes) == (rate != 16_000)


def test_stereo_is_mixed_down_and_noted():
    left, right = _tone(440, 16_000), _tone(660, 16_000)
    a = load_audio(_wav(np.stack([left, right], 1), 16_000))
    assert a.channels == 2 and any("mixed down" in n for n in a.notes)
    np.testing.assert_allclose(a.samples, (left + right) / 2, atol=2e-4)


def test_a_tone_lands_in_its_mel_band():
    low, high = log_mel(_tone(300, 16_000)), log_mel(_tone(3000, 16_000))
    assert low.shape == (98, 128)  # (1 s − 25 ms) / 10 ms + 1 frames
    assert np.argmax(low.mean(0)) < np.argmax(high.mean(0))
    from transformers.audio_utils import hertz_to_mel

    lo, hi = hertz_to_mel(20.0, "kaldi"), hertz_to_mel(8000.0, "kaldi")
    centre = lambda hz: (hertz_to_mel(hz, "kaldi") - lo) / (hi - lo) * 129 - 1  # noqa: E731 - mel band of a frequency
    assert abs(np.argmax(high.mean(0)) - centre(3000)) <= 2 and abs(np.argmax(low.mean(0)) - centre(300)) <= 2


def test_bad_audio_is_refused_with_a_reason():
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(b"", name="x.wav")
    with pytest.raises(AudioLoadError, match="not an audio file libsndfile or FFmpeg can read"):
        load_audio(b"ID3\x04" + b"0" * 100, name="x.mp3")
    with pytest.raises(AudioLoadError, match="no audio samples"):
        load_audio(_wav(np.zeros(0, np.float32), 16_000))
    with pytest.raises(AudioLoadError, match="fewer than one"):
        log_mel(np.zeros(100, np.float32))
    cut = _wav(_tone(440, 16_000), 16_000)[:-1000]
    a = load_audio(cut)
    assert any("truncated" in n for n in a.notes)


def test_a_folder_is_not_an_audio_file(tmp_path):
    with pytest.raises(AudioLoadError, match="is a directory, not an audio file"):
        load_audio(tmp_path)


def test_log_mel_equals_transformers_spectrogram():
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    x = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)
    mel = mel_filter_bank(num_frequency_bins=513, num_mel_filters=128, min_frequency=20.0, max_frequency=8000,
                          sampling_rate=16_000, norm=None, mel_scale="kaldi")
    ref = spectrogram(x.astype(np.float64), window_function(400, "hann"), frame_length=400, hop_length=160, fft_length=1024,
                      power=2.0, center=False, mel_filters=mel, log_mel="log", mel_floor=1e-10).T
    ours = log_mel(x)
    assert ours.shape == ref.shape == (1 + (4000 - 400) // 160, 128)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("field, value, match", [(24, 0, "sample rate of 0 Hz"), (24, 2**32 - 1, "sample rate of 4294967295 Hz"),
                                                  (22, 65535, "65535 channels")])
def test_impossible_headers_are_refused_before_decoding(field, value, match):
    import struct

    data = bytearray(_wav(_tone(440, 16_000), 16_000))
    assert data[12:16] == b"fmt "
    data[field:field + (4 if field == 24 else 2)] = struct.pack("<I" if field == 24 else "<H", value)
    with pytest.raises(AudioLoadError, match=match):
        load_audio(bytes(data), name="x.wav")


def test_a_header_claiming_more_data_than_the_file_holds_is_read_as_truncated():
    import struct

    data = bytearray(_wav(_tone(440, 16_000), 16_000))
    d = data.index(b"data") + 4
    data[d:d + 4] = struct.pack("<I", 0xFFFFFFF0)  # as streaming writers leave it
    a = load_audio(bytes(data))
    assert abs(a.seconds - 1.0) < 0.01 and any("truncated" in n for n in a.notes)
