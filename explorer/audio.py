"""Audio for audio-visual MAEs: decode sound (WAV in every PCM / float / EXTENSIBLE layout, FLAC, OGG/Vorbis, MP3,
AIFF… through libsndfile; the sound track of a video file through FFmpeg), resample, and the Audio-MAE input, a log-mel spectrogram (128 mel bins, 25 ms windows, 10 ms hop at 16 kHz).

    a = load_audio("clip.wav")                 # LoadedAudio: samples (N,) float32 at 16 kHz, notes
    spec = log_mel(a.samples, a.rate)          # (frames, 128) float32

Decoding uses ``soundfile`` (libsndfile), and ``av`` (PyAV, FFmpeg) for what libsndfile does not open; resampling ``scipy.signal.resample_poly``; the mel filters and window
``transformers.audio_utils`` (the feature code transformers' own audio models use).
"""

from __future__ import annotations

import hashlib
import io
import struct
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


def _riff_header(data: bytes) -> "tuple[int, int, int, int, int] | None":
    """``(format_tag, channels, rate, block_align, declared_data_bytes)`` of a RIFF/WAVE file from its ``fmt `` and
    ``data`` chunks (``None`` when no ``fmt `` chunk comes before the data).

    The header's own claims, checked before libsndfile sees the file: libsndfile refuses a zero rate with "SF_INFO
    struct incomplete" and silently cuts a declared data size down to what is present (so truncation is found here).
    """
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if cid == b"fmt " and pos + 22 <= len(data):
            tag, channels, rate, _, align = struct.unpack_from("<HHIIH", data, pos + 8)
            fmt = (tag, channels, rate, align)
        elif cid == b"data":
            return (*fmt, size) if fmt else None
        pos += 8 + size + (size & 1)
    return None


def _reason(e: BaseException) -> str:
    """libsndfile's / FFmpeg's message without the ``Error opening <_io.BytesIO object at 0x…>:`` prefix."""
    msg = getattr(e, "strerror", None) or str(e)
    msg = msg.split(": ", 1)[1] if msg.startswith("Error opening") and ": " in msg else msg
    msg = msg.strip().rstrip(".")
    return msg[:1].lower() + msg[1:]


#: WAV format tags whose frames are ``block_align`` bytes each (PCM, IEEE float, EXTENSIBLE), so a declared data size
#: gives the declared number of frames.
_FIXED_FRAME_TAGS = (1, 3, 0xFFFE)


class _Mixer:
    """Collects ``(n, channels)`` float blocks as mono, refusing (before the rest is decoded) once a limit is passed."""

    def __init__(self, name: str, rate: int, channels: int, max_seconds: float):
        self.name, self.rate, self.channels, self.max_seconds = name, rate, channels, max_seconds
        self.limit = min(int(max_seconds * rate), MAX_SAMPLES // max(channels, 1))
        self.parts: list[np.ndarray] = []
        self.got = 0

    def add(self, x: np.ndarray) -> None:
        """``x``: ``(n, C)`` float32 samples."""
        self.parts.append(x[:, 0].astype(np.float32) if x.shape[1] == 1 else x.mean(1, dtype=np.float32))
        self.got += len(x)
        if self.got > self.limit:  # the header understated the length (or gave none)
            _check_format(self.name, self.rate, self.channels, self.got, self.max_seconds)
            raise AudioLoadError(f"{self.name} is longer than the limit of {self.max_seconds:.0f} s (max_seconds).")

    def mono(self) -> np.ndarray:
        """``(N,)`` float32."""
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def _decode_soundfile(data: bytes, name: str, max_seconds: float, notes: list[str]) -> "tuple[np.ndarray, int, int] | str":
    """Mono float32 samples, the source rate and channel count of anything libsndfile reads (WAV in every PCM / float
    / EXTENSIBLE layout, RF64, W64, FLAC, OGG/Vorbis, MP3, AIFF…), or libsndfile's reason for not opening it.

    The header is checked before any sample is decoded, and decoding stops at the limits whatever it said.
    """
    import soundfile as sf

    declared = None
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        h = _riff_header(data)
        if h is not None:
            tag, channels, rate, align, nbytes = h
            _check_format(name, rate, channels, 0, max_seconds)
            if tag in _FIXED_FRAME_TAGS and align > 0:
                declared = nbytes // align
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        return _reason(e)
    with f:
        channels, src_rate = int(f.channels), int(f.samplerate)
        frames = int(f.frames) if 0 < f.frames < (1 << 62) else 0
        _check_format(name, src_rate, channels, frames, max_seconds)
        mix, failed = _Mixer(name, src_rate, channels, max_seconds), None
        # compressed streams in small blocks: libsndfile returns nothing of a block in which the decoder fails
        block = _CHUNK_FRAMES if f.format in ("WAV", "WAVEX", "RF64", "W64", "AIFF") else 4096
        while True:
            try:
                x = f.read(min(block, mix.limit + 1 - mix.got), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                failed = _reason(e)
                break
            if not len(x):
                break
            mix.add(x)
        kind = f.format
    got = mix.got
    if failed is not None and not got:  # FFmpeg may still read it (it decodes a cut FLAC up to the cut)
        return f"cannot decode this {kind} file: {failed}"
    if declared is not None and declared > got:
        notes.append(f"the file is truncated: {got} of {declared} samples present")
    elif failed is not None:
        notes.append(f"the file is truncated or damaged: decoding stopped after {got} samples ({failed})")
    elif declared is None and frames and got < frames:
        notes.append(f"the file is truncated: {got} of {frames} samples present")
    return mix.mono(), src_rate, channels


def _decode_container(data: "bytes | str", name: str, max_seconds: float, notes: list[str], why: str,
                      until_s: float | None = None) -> tuple[np.ndarray, int, int]:
    """Mono float32 samples, rate and channels of the first sound track of a container FFmpeg reads (MP4, MKV, WebM,
    AVI, MOV, M4A/AAC, Opus…), through PyAV; ``data``: the file's bytes or its path; ``why``: libsndfile's reason, for
    the message when FFmpeg fails too. ``until_s``: stop decoding there (the length limit is then not checked)."""
    import av

    accepted = ("Accepted: WAV (PCM, float, EXTENSIBLE), FLAC, OGG/Vorbis, MP3, AIFF…, or a video (MP4, MKV, WebM…) "
                "with a sound track.")
    try:
        container = av.open(io.BytesIO(data) if isinstance(data, bytes) else data, mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise AudioLoadError(f"{name} is not an audio file libsndfile or FFmpeg can read (libsndfile: {why}; "
                             f"FFmpeg: {_reason(e)}). "
                             + accepted) from None
    with container:
        if not container.streams.audio:
            if container.streams.video:
                raise AudioLoadError(f"{name} is a video without a sound track: give the sound as a separate file.")
            raise AudioLoadError(f"{name} is not an audio file libsndfile or FFmpeg can read (libsndfile: {why}; "
                                 "FFmpeg: no sound track). " + accepted)
        s = container.streams.audio[0]
        src_rate = int(s.codec_context.sample_rate or s.rate or 0)
        channels = int(s.codec_context.layout.nb_channels) if s.codec_context.layout else 0
        _check_format(name, src_rate, channels, 0, max_seconds)
        if s.duration and s.time_base:
            seconds = float(s.duration * s.time_base)
        else:
            seconds = container.duration / 1e6 if container.duration and container.duration > 0 else 0.0
        if until_s is None:
            _check_format(name, src_rate, channels, int(seconds * src_rate), max_seconds)
        mix, failed = _Mixer(name, src_rate, channels, max_seconds if until_s is None else until_s + 60.0), None
        resampler = av.AudioResampler(format="fltp", rate=src_rate)  # planar float, the stream's own rate
        try:
            for frame in container.decode(s):
                for out in resampler.resample(frame):
                    mix.add(out.to_ndarray().T)
                if until_s is not None and mix.got >= until_s * src_rate:
                    break
        except av.FFmpegError as e:
            failed = _reason(e)
    if failed is not None:
        if not mix.got:
            raise AudioLoadError(f"{name}: cannot decode its sound track ({failed}); the file is probably corrupt.")
        notes.append(f"the sound track is truncated or damaged: decoding stopped after {mix.got} samples ({failed})")
    elif until_s is None and seconds > 0 and mix.got < 0.98 * seconds * src_rate - 2048:
        notes.append(f"the file is truncated: {mix.got / src_rate:.2f} of {seconds:.2f} s present")
    notes.append(f"sound track of a {container.format.name.split(',')[0]} file ({s.codec_context.name}), decoded by FFmpeg")
    return mix.mono(), src_rate, channels


def _finish(mono: np.ndarray, rate: int, src_rate: int, channels: int, name: str, digest: str,
            notes: list[str]) -> LoadedAudio:
    """Checks, notes and resampling shared by the loaders: ``mono`` ``(N,)`` float32 at ``src_rate``."""
    if mono.shape[0] == 0:
        raise AudioLoadError(f"{name} holds no audio samples.")
    if channels > 1:
        notes.append(f"{channels} channels mixed down to mono")
    if not np.any(mono):
        notes.append("digital silence: every sample is 0, so the spectrogram is flat at its floor")
    if src_rate != rate:
        from scipy.signal import resample_poly

        f = Fraction(rate, src_rate).limit_denominator(1000)
        mono = resample_poly(mono, f.numerator, f.denominator).astype(np.float32)
        notes.append(f"resampled from {src_rate} Hz to {rate} Hz")
    return LoadedAudio(np.clip(mono, -1, 1).astype(np.float32), int(rate), int(src_rate), int(channels), name, digest, tuple(notes))


def load_audio(source: Any, *, rate: int = TARGET_RATE, name: str | None = None, max_seconds: float = 600.0) -> LoadedAudio:
    """Decode a sound file (path, bytes, upload: WAV of any layout, FLAC, OGG/Vorbis, MP3, AIFF… through libsndfile; a
    video or other container with a sound track, e.g. MP4 / MKV / WebM, through FFmpeg's first sound track) or take
    ``(N,)`` / ``(N, C)`` float samples (then pass ``rate`` as the array's rate and it is kept); mix down to mono and
    resample to ``rate``.

    Refused before decoding: sample rates outside :data:`MIN_RATE` – :data:`MAX_RATE`, more than :data:`MAX_CHANNELS`
    channels, more than ``max_seconds`` or than :data:`MAX_SAMPLES` samples (all channels together), as the header
    declares them; a header that understates the length stops decoding as soon as a limit is passed. Notes say what
    was done (mixed down, resampled, truncated, a video's sound track, digital silence).

    Raises:
        AudioLoadError: missing, empty, not audio that libsndfile or FFmpeg reads, a video without a sound track,
            corrupt, no samples, an impossible rate or channel count, or too long.
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
        got = _decode_soundfile(data, name, max_seconds, notes)
        if isinstance(got, str):  # libsndfile cannot open it: a video's (or another container's) sound track?
            got = _decode_container(data, name, max_seconds, notes, got)
        mono, src_rate, channels = got
    return _finish(mono, rate, src_rate, channels, name, digest, notes)


def load_sound_track(video: Any, *, rate: int = TARGET_RATE, until_s: float | None = None,
                     name: str | None = None) -> LoadedAudio | None:
    """The first sound track of a video file (path or bytes: MP4, MKV, WebM, AVI, MOV…) through FFmpeg (PyAV), mono at
    ``rate``; ``None`` when the file has no sound track or FFmpeg cannot open it (the video loader says why).

    A path is read by FFmpeg itself (a large video is not loaded into memory); ``until_s`` stops decoding there
    (``None``: the whole track, refused above 600 s as :func:`load_audio` does).

    Returns:
        :class:`LoadedAudio` with ``samples`` ``(N,)`` float32; its ``sha256`` is the file's.
    Raises:
        AudioLoadError: a sound track that cannot be decoded or holds an impossible rate / channel count.
    """
    import os

    import av

    if isinstance(video, (str, os.PathLike)) and os.path.isfile(video):
        src, name = os.fspath(video), name or os.path.basename(os.fspath(video))
        h = hashlib.sha256()
        with open(src, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = h.hexdigest()
    else:
        try:
            src, name = read_source(video, name, error=AudioLoadError, noun="a video")
        except AudioLoadError:
            return None
        if not isinstance(src, bytes) or not src:
            return None
        digest = hashlib.sha256(src).hexdigest()
    try:
        with av.open(io.BytesIO(src) if isinstance(src, bytes) else src, mode="r") as c:
            if not c.streams.audio:
                return None
    except (av.FFmpegError, ValueError, OSError):
        return None
    notes: list[str] = []
    mono, src_rate, channels = _decode_container(src, name, 600.0, notes, "not opened", until_s=until_s)
    return _finish(mono, rate, src_rate, channels, name, digest, notes)


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
