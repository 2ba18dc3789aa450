"""Audio for audio-visual MAEs: decode WAV (any sample rate, 8/16/24/32-bit PCM, mono or multi-channel),
resample, and the Audio-MAE input, a log-mel spectrogram (128 mel bins, 25 ms windows, 10 ms hop at 16 kHz).

    a = load_audio("clip.wav")                 # LoadedAudio: samples (N,) float32 at 16 kHz, notes
    spec = log_mel(a.samples, a.rate)          # (frames, 128) float32

Decoding uses Python's ``wave`` module; resampling ``scipy.signal.resample_poly``; the mel filters and window
``transformers.audio_utils`` (the feature code transformers' own audio models use).
"""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from .io import ImageLoadError, array_sha256, read_source

TARGET_RATE = 16_000
#: What :func:`load_audio` accepts: source sample rates (Hz), channels, and samples decoded in all (every channel:
#: 2**26 is 11.6 minutes of 48 kHz stereo, 268 MB as float32); ``max_seconds`` caps the duration.
MIN_RATE, MAX_RATE = 1_000, 768_000
MAX_CHANNELS = 64
MAX_SAMPLES = 1 << 26
#: Sample frames mixed down at a time (bounds the float copy of a many-channel file).
_CHUNK_FRAMES = 1 << 18


class AudioLoadError(ImageLoadError):
    """The audio cannot be used; the message says why, for the user."""


@dataclass(frozen=True)
class LoadedAudio:
    """Decoded mono audio.

    Attributes:
        samples: ``(N,)`` float32 in [-1, 1] at ``rate`` Hz.
        rate: samples per second after resampling; source_rate: as stored.
        channels: channels in the source (mixed down to mono).
        name, sha256, notes: the source and every conversion, for the user.
    """

    samples: np.ndarray
    rate: int
    source_rate: int
    channels: int
    name: str
    sha256: str
    notes: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _pcm_to_float(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise AudioLoadError(f"{width * 8}-bit samples are not supported (8, 16, 24 or 32-bit PCM WAV).")
    return x.reshape(-1, channels)


def _check_format(name: str, rate: int, channels: int, frames: int, max_seconds: float) -> None:
    """Refuse what cannot be audio, or would be too much of it, before any sample is decoded."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioLoadError(f"{name} declares a sample rate of {rate} Hz: not a usable rate (accepted: {MIN_RATE:,} to "
                             f"{MAX_RATE:,} Hz). The file is damaged or not really a WAV recording.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioLoadError(f"{name} declares {channels} channels; at most {MAX_CHANNELS} are accepted.")
    if frames / rate > max_seconds:
        raise AudioLoadError(f"{name} lasts {frames / rate:.0f} s; the limit is {max_seconds:.0f} s (max_seconds; cut it first).")
    if frames * channels > MAX_SAMPLES:
        raise AudioLoadError(f"{name} holds {frames:,} samples in each of {channels} channels, above the limit of "
                             f"{MAX_SAMPLES:,} samples in all: cut it, or mix it down / resample it first.")


def _decode_wav(data: bytes, name: str, max_seconds: float, notes: list[str]) -> tuple[np.ndarray, int, int]:
    """Mono float32 samples, the source rate and channel count of a PCM WAV; checked before decoding."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, src_rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            frame_bytes = width * channels
            if not 1 <= width <= 4:
                raise AudioLoadError(f"{width * 8}-bit samples are not supported (8, 16, 24 or 32-bit PCM WAV).")
            present = min(n, len(data) // max(frame_bytes, 1))  # a declared size larger than the file is common
            _check_format(name, src_rate, channels, present, max_seconds)
            mono = np.empty(present, np.float32)
            got = 0
            while got < present:
                raw = w.readframes(min(_CHUNK_FRAMES, present - got))
                raw = raw[: len(raw) - len(raw) % frame_bytes]
                if not raw:
                    break
                x = _pcm_to_float(raw, width, channels)
                mono[got:got + len(x)] = x[:, 0] if channels == 1 else x.mean(1)
                got += len(x)
    except (wave.Error, EOFError) as e:
        raise AudioLoadError(f"{name}: cannot decode this WAV file ({e}); only uncompressed PCM is read.") from None
    if got < n:
        notes.append(f"the file is truncated: {got} of {n} samples present")
    return mono[:got], int(src_rate), int(channels)


def load_audio(source: Any, *, rate: int = TARGET_RATE, name: str | None = None, max_seconds: float = 600.0) -> LoadedAudio:
    """Decode a PCM WAV file (path, bytes, upload) or take ``(N,)`` / ``(N, C)`` float samples (then pass ``rate``
    as the array's rate and it is kept); mix down to mono and resample to ``rate``.

    Refused before decoding: sample rates outside :data:`MIN_RATE` – :data:`MAX_RATE`, more than :data:`MAX_CHANNELS`
    channels, more than ``max_seconds`` or than :data:`MAX_SAMPLES` samples (all channels together).

    Raises:
        AudioLoadError: missing, empty, not WAV, unsupported sample width, no samples, an impossible rate or channel
            count, or too long.
    """
    data, name = read_source(source, name, error=AudioLoadError, noun="an audio")
    notes: list[str] = []
    if isinstance(data, np.ndarray):
        x = np.asarray(data, np.float32)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2:
            raise AudioLoadError(f"Audio samples must be (N,) or (N, channels), got shape {data.shape}.")
        src_rate, digest = rate, array_sha256(x)
        _check_format(name, int(src_rate), x.shape[1] or 1, x.shape[0], max_seconds)
        channels = x.shape[1]
        mono = x.mean(1) if channels > 1 else x[:, 0]
    else:
        if not data:
            raise AudioLoadError(f"{name} is empty (0 bytes): there is no audio.")
        digest = hashlib.sha256(data).hexdigest()
        if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
            raise AudioLoadError(f"{name} is not a WAV file. Convert other formats first, e.g. "
                                 "`ffmpeg -i clip.mp4 -ac 1 -ar 16000 clip.wav`.")
        mono, src_rate, channels = _decode_wav(data, name, max_seconds, notes)
    if mono.shape[0] == 0:
        raise AudioLoadError(f"{name} holds no audio samples.")
    if channels > 1:
        notes.append(f"{channels} channels mixed down to mono")
    if src_rate != rate:
        from scipy.signal import resample_poly

        f = Fraction(rate, src_rate).limit_denominator(1000)
        mono = resample_poly(mono, f.numerator, f.denominator).astype(np.float32)
        notes.append(f"resampled from {src_rate} Hz to {rate} Hz")
    return LoadedAudio(np.clip(mono, -1, 1).astype(np.float32), int(rate), int(src_rate), int(channels), name, digest, tuple(notes))


def log_mel(samples: np.ndarray, rate: int = TARGET_RATE, *, n_mels: int = 128, window_ms: float = 25.0,
            hop_ms: float = 10.0) -> np.ndarray:
    """Log-mel spectrogram ``(frames, n_mels)`` float32 (natural log of mel power, floored at 1e-10), Audio-MAE style.

    The window and the kaldi-scale mel filters are ``transformers.audio_utils``'; the framing and FFT are done
    for all frames at once (the same numbers as ``transformers.audio_utils.spectrogram``, which loops in Python).
    """
    from transformers.audio_utils import window_function

    x = np.asarray(samples, np.float64)
    win = int(round(rate * window_ms / 1000))
    hop = int(round(rate * hop_ms / 1000))
    n_fft = max(1024, 1 << (win - 1).bit_length())  # fine enough that no low mel band is empty
    if len(x) < win:
        raise AudioLoadError(f"The audio has {len(x)} samples, fewer than one {window_ms:.0f} ms window ({win}).")
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop] * window_function(win, "hann")
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    return np.log(np.maximum(power @ _mel_filters(n_fft, n_mels, rate), 1e-10)).astype(np.float32)


@lru_cache(maxsize=8)
def _mel_filters(n_fft: int, n_mels: int, rate: int) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
                           max_frequency=rate / 2, sampling_rate=rate, norm=None, mel_scale="kaldi")


# ---------------------------------------------------------------------------- Kaldi fbank (Audio-MAE / AST front end)
#: AudioSet statistics of the Kaldi fbank that Audio-MAE (and AST) normalise with: ``(x - mean) / (2 * std)``
#: (facebookresearch/AudioMAE main_pretrain.py ``norm_stats['audioset']``; dataset.py divides by ``2 * std``).
AUDIOSET_FBANK_MEAN, AUDIOSET_FBANK_STD = -4.2677393, 4.5689974
#: Kaldi's log floor: float32 machine epsilon.
_KALDI_EPS = float(np.finfo(np.float32).eps)


def kaldi_fbank(samples: np.ndarray, rate: int = TARGET_RATE, *, num_mel_bins: int = 128, frame_length_ms: float = 25.0,
                frame_shift_ms: float = 10.0, low_freq: float = 20.0, preemphasis: float = 0.97) -> np.ndarray:
    """Kaldi-compatible log mel filterbank ``(frames, num_mel_bins)`` float32, as ``torchaudio.compliance.kaldi.fbank``
    computes it with the options Audio-MAE's ``dataset.py`` passes (``htk_compat=True, use_energy=False,
    window_type='hanning', dither=0.0, frame_shift=10``) and Kaldi's defaults for the rest.

    Per 25 ms frame (``snip_edges``: only whole frames, ``1 + (N - 400) // 160`` of them at 16 kHz): the frame's mean is
    removed, pre-emphasis 0.97 (the first sample against itself), a symmetric Hann window, a power spectrum over the
    next power of two (512 points), Kaldi-mel triangles from ``low_freq`` to Nyquist (``transformers.audio_utils``'
    ``mel_filter_bank(mel_scale='kaldi', triangularize_in_mel_space=True)``), then ``log(max(energy, float32 eps))``.

    Args:
        samples: ``(N,)`` float waveform in [-1, 1] (what ``torchaudio.load`` returns; not scaled to 16-bit integers).
        rate: samples per second.
    Raises:
        AudioLoadError: fewer samples than one frame.
    """
    from transformers.audio_utils import window_function

    x = np.asarray(samples, np.float64).ravel()
    win = int(rate * frame_length_ms / 1000)
    hop = int(rate * frame_shift_ms / 1000)
    if len(x) < win:
        raise AudioLoadError(f"The audio has {len(x)} samples, fewer than one {frame_length_ms:g} ms frame ({win}).")
    n_fft = 1 << (win - 1).bit_length()
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - preemphasis), frames[:, 1:] - preemphasis * frames[:, :-1]], axis=1)
    frames = frames * window_function(win, "hann", periodic=False)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    energy = power @ _kaldi_mel_filters(n_fft, num_mel_bins, rate, float(low_freq))
    return np.log(np.maximum(energy, _KALDI_EPS)).astype(np.float32)


@lru_cache(maxsize=8)
def _kaldi_mel_filters(n_fft: int, n_mels: int, rate: int, low_freq: float) -> np.ndarray:
    import warnings

    from transformers.audio_utils import mel_filter_bank

    with warnings.catch_warnings():  # the lowest of 128 Kaldi triangles catch no 31.25 Hz FFT bin: empty, as in Kaldi
        warnings.simplefilter("ignore", UserWarning)
        return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=low_freq,
                               max_frequency=rate / 2, sampling_rate=rate, norm=None, mel_scale="kaldi",
                               triangularize_in_mel_space=True)


def audiomae_spectrogram(samples: np.ndarray, rate: int = TARGET_RATE, *, frames: int = 1024,
                         num_mel_bins: int = 128) -> tuple[np.ndarray, list[str]]:
    """Audio-MAE's input before normalisation: ``(num_mel_bins, frames)`` Kaldi fbank (mel bins × 10 ms frames), and
    notes.

    As their ``dataset.py``: the waveform's mean is removed, :func:`kaldi_fbank` computed, then zero-padded at the end
    (0 in log power: what their code pads with) or cut to ``frames`` (1024 frames = 10.24 s at 16 kHz).  Normalise
    with ``(x - AUDIOSET_FBANK_MEAN) / (2 * AUDIOSET_FBANK_STD)`` (the adapter's modality does).
    """
    x = np.asarray(samples, np.float64).ravel()
    fb = kaldi_fbank(x - x.mean(), rate, num_mel_bins=num_mel_bins)
    notes = []
    if len(fb) < frames:
        notes.append(f"{len(fb) / 100:.2f} s of sound: padded with zeros (log power 0, as Audio-MAE's data loader does) "
                     f"to {frames / 100:.2f} s")
        fb = np.pad(fb, ((0, frames - len(fb)), (0, 0)))
    elif len(fb) > frames:
        notes.append(f"{len(fb) / 100:.2f} s of sound: the first {frames / 100:.2f} s are used")
        fb = fb[:frames]
    return np.ascontiguousarray(fb.T, np.float32), notes
