"""Sound you can hear: a spectrogram back to a waveform, and a waveform as WAV bytes a browser player takes.

    wave = spectrogram_to_audio(spec)                 # (N,) float32 at 16 kHz: Griffin-Lim, an approximation
    data = wav_bytes(wave)                            # 16-bit PCM WAV for ipywidgets.Audio(value=data, format="wav")

A log-mel spectrogram keeps no phase and only 128 mel bands of the spectrum, so the waveform made from it is an
approximation: the mel power is mapped back to a linear-frequency magnitude by non-negative least squares against the
same mel filters the spectrogram was made with (``librosa.util.nnls``), then a phase is found by Griffin-Lim
(``librosa.griffinlim``, its random initial phase seeded).  The original sound plays from its own samples.

Compute layer: numpy, librosa and soundfile only.
"""

from __future__ import annotations

import io

import numpy as np

from .audio import TARGET_RATE, _kaldi_mel_filters, _mel_filters

#: Label for every player whose sound is made from a spectrogram.
APPROXIMATION = "Griffin-Lim from the spectrogram: an approximation (no phase is stored; 128 mel bands)"
#: Griffin-Lim iterations by default (32 is librosa's default; more converges further).
N_ITER = 64


def _frontend(kind: str, rate: int) -> tuple[np.ndarray, int, int, int, "str | np.ndarray"]:
    """``(mel filters (n_fft // 2 + 1, n_mels), n_fft, window length, hop, window)`` of the spectrogram ``kind``."""
    win, hop = int(round(rate * 0.025)), int(round(rate * 0.010))
    if kind == "log_mel":  # explorer.audio.log_mel: periodic Hann, zero-padded to >= 1024 points
        n_fft = max(1024, 1 << (win - 1).bit_length())
        return _mel_filters(n_fft, 128, rate), n_fft, win, hop, "hann"
    if kind == "kaldi_fbank":  # explorer.audio.kaldi_fbank: symmetric Hann, 512 points, pre-emphasis 0.97
        import scipy.signal

        n_fft = 1 << (win - 1).bit_length()
        return _kaldi_mel_filters(n_fft, 128, rate, 20.0), n_fft, win, hop, scipy.signal.get_window("hann", win, fftbins=False)
    raise ValueError(f"Unknown spectrogram kind {kind!r}: 'log_mel' (explorer.audio.log_mel) or 'kaldi_fbank'.")


def spectrogram_to_audio(spec: np.ndarray, rate: int = TARGET_RATE, *, kind: str = "log_mel", n_iter: int = N_ITER,
                         seed: int = 0) -> np.ndarray:
    """A waveform whose spectrogram approximates ``spec`` (Griffin-Lim; see the module docstring).

    Args:
        spec: ``(n_mels, frames)`` natural-log mel power, as :func:`explorer.audio.log_mel` (transposed) or
            :func:`explorer.audio.kaldi_fbank` (transposed) make it; 128 mel bands, 10 ms hops.
        kind: ``"log_mel"`` or ``"kaldi_fbank"`` (then the pre-emphasis is undone after).
        n_iter: Griffin-Lim iterations; seed: its random initial phase.
    Returns:
        ``(win + (frames - 1) * hop,)`` float32 in [-1, 1] at ``rate`` (15,600 samples for 96 frames at 16 kHz).
    Raises:
        ValueError: not ``(128, frames)`` with at least one frame, or not finite.
    """
    import librosa

    s = np.asarray(spec, np.float64)
    if s.ndim != 2 or s.shape[0] != 128 or s.shape[1] < 1:
        raise ValueError(f"The spectrogram must be (128 mel bands, frames), got shape {s.shape}.")
    if not np.all(np.isfinite(s)):
        raise ValueError("The spectrogram holds NaN or infinite values: no sound can be made from it.")
    filters, n_fft, win, hop, window = _frontend(kind, rate)
    power = librosa.util.nnls(filters.T, np.exp(s))  # (bins, frames): mel power back to linear power
    magnitude = np.sqrt(np.maximum(power, 0.0))
    # librosa centres a win-sample window in each n_fft frame; ours start at the frame: shift by the difference
    lead = (n_fft - win) // 2
    n = win + (s.shape[1] - 1) * hop
    y = librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=hop, win_length=win, n_fft=n_fft, window=window,
                           center=False, length=(s.shape[1] - 1) * hop + n_fft, random_state=np.random.default_rng(seed))
    # center=False: the first and last samples lie under window tails only, where istft divides by a tiny window sum;
    # scaling by min(1, sum / (0.1 * max)) keeps those few samples from blowing up
    wss = librosa.filters.window_sumsquare(window=window, n_frames=s.shape[1], hop_length=hop, win_length=win, n_fft=n_fft)
    y = (y * np.minimum(1.0, wss[:len(y)] / (0.1 * wss.max())))[lead:lead + n]
    if kind == "kaldi_fbank":
        import scipy.signal

        y = scipy.signal.lfilter([1.0], [1.0, -0.97], y)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return (y / peak * 0.9 if peak > 1.0 else y).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    """16-bit PCM mono WAV of ``samples`` ``(N,)`` float in [-1, 1] (clipped), for ``ipywidgets.Audio``.

    Raises:
        ValueError: not 1-D, empty, or not finite.
    """
    import soundfile as sf

    x = np.asarray(samples, np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"Samples to play must be (N,) with N > 0, got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("The samples hold NaN or infinite values.")
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), int(rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def masked_spectrogram(spec: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """``spec`` ``(n_mels, frames)`` with the ``hidden`` (same shape, bool) bins set to its quietest value: what the
    model is shown, as sound (hidden patches are silent)."""
    s = np.array(spec, np.float32, copy=True)
    s[np.asarray(hidden, bool)] = float(np.min(spec))
    return s


#: What each player of :func:`playback` plays, in order.
PLAYERS = ("original", "what the model heard", "reconstruction")


def playback(result, *, kind: str = "log_mel", samples: "np.ndarray | None" = None, rate: int = TARGET_RATE,
             n_iter: int = N_ITER, seed: int = 0) -> dict:
    """Sounds to play for one spectrogram modality of a multimodal reconstruction.

    Args:
        result: a :class:`explorer.reconstruction.multimodal.ModalityResult` of a ``spectrogram`` modality
            (``(128, frames)``).
        kind: how that spectrogram was made: ``"log_mel"`` (the explorer's) or ``"kaldi_fbank"`` (Audio-MAE's).
        samples: the original's own samples ``(N,)`` at ``rate``, when known: the original then plays from them.
        n_iter, seed: Griffin-Lim's iterations and its initial phase.
    Returns:
        :data:`PLAYERS` name → ``(WAV bytes, label)``: the original (its samples, or Griffin-Lim of its spectrogram),
        what the model heard (hidden patches silent) and the reconstruction (visible patches as given, hidden ones
        predicted); every sound made from a spectrogram is labelled an approximation. A modality that was not given
        has only the reconstruction.
    Raises:
        ValueError: not a spectrogram modality.
    """
    spec = result.spec
    if spec.kind != "spectrogram":
        raise ValueError(f"{spec.name} is a {spec.kind} modality: only spectrograms can be played.")
    out = {}
    if result.given:
        if samples is not None and len(samples):
            out["original"] = (wav_bytes(np.asarray(samples, np.float32), rate), "original: its own samples")
        else:
            orig = np.nan_to_num(result.original, nan=float(np.nanmin(result.original)))
            out["original"] = (wav_bytes(spectrogram_to_audio(orig, rate, kind=kind, n_iter=n_iter, seed=seed), rate),
                               f"original spectrogram — {APPROXIMATION}")
        hidden = ~spec.unpatchify_mask(result.visible)
        heard = masked_spectrogram(np.nan_to_num(result.original, nan=float(np.nanmin(result.original))), hidden)
        out["what the model heard"] = (wav_bytes(spectrogram_to_audio(heard, rate, kind=kind, n_iter=n_iter, seed=seed),
                                                 rate), f"hidden patches silent — {APPROXIMATION}")
    recon = result.pasted if result.given else result.prediction
    out["reconstruction"] = (wav_bytes(spectrogram_to_audio(np.nan_to_num(recon, nan=float(np.nanmin(recon))), rate,
                                                            kind=kind, n_iter=n_iter, seed=seed), rate),
                             f"reconstruction — {APPROXIMATION}")
    return out
