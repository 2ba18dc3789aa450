"""Audio-visual clips for the mini audio-visual MAE: moving shapes that sound (generated; free, licence-free).

    c = make_av_clip(seed=3)      # c.frames (8, 48, 48, 3) · c.audio (16000,) at 16 kHz · c.spectrogram (128, 96)

What is heard follows what is seen, so each modality can be predicted from the other:
- an object's **colour sets its pitch** (C-major notes: red C4 … orange G5);
- its **shape sets the timbre**: circle = pure sine, square = odd harmonics (1, 1/3, 1/5), triangle = all
  harmonics (1, 1/2, 1/3);
- it hums quietly all the time and **rings loudly when it bounces off a border** (a decaying burst starting
  at the bounce frame's time); larger objects are louder.
Frames come from :func:`explorer.data.clips.make_clip` (its ``tone_hz`` is not used here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import log_mel
from .clips import Clip, make_clip

RATE = 16_000
PITCH_HZ = {"red": 261.63, "green": 329.63, "blue": 392.0, "yellow": 523.25, "purple": 659.25, "orange": 783.99}
HARMONICS = {"circle": (1.0,), "square": (1.0, 0.0, 1 / 3, 0.0, 1 / 5), "triangle": (1.0, 1 / 2, 1 / 3)}
N_MELS, SPEC_FRAMES = 128, 96


@dataclass(frozen=True)
class AVClip:
    """A generated clip with its sound.

    Attributes:
        clip: the video part (frames, masks, objects).
        audio: ``(fps⁻¹ · T · 16000,)`` float32 in [-1, 1].
        bounces: per object, the frame indices where it bounced.
        fps: frames per second the audio is timed to.
    """

    clip: Clip
    audio: np.ndarray
    bounces: tuple[tuple[int, ...], ...]
    fps: float

    @property
    def frames(self) -> np.ndarray:
        return self.clip.frames

    @property
    def spectrogram(self) -> np.ndarray:
        """``(128, 96)`` log-mel (mel bins × 10 ms frames), Audio-MAE style."""
        return spectrogram_patch_array(self.audio)


def spectrogram_patch_array(audio: np.ndarray, rate: int = RATE, frames: int = SPEC_FRAMES) -> np.ndarray:
    """``(n_mels, frames)`` log-mel of the first ``frames`` 10 ms hops (padded with the quietest value if short)."""
    mel = log_mel(audio, rate, n_mels=N_MELS).T  # (mels, hops)
    if mel.shape[1] < frames:
        mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), constant_values=float(mel.min()))
    return np.ascontiguousarray(mel[:, :frames], np.float32)


def _bounce_frames(clip: Clip, k: int, size: int) -> tuple[int, ...]:
    o = clip.objects[k]
    pos = np.array([o.position(t, size) for t in range(len(clip.frames) + 1)], float)
    v = np.diff(pos, axis=0)
    flips = np.any((np.sign(v[1:]) * np.sign(v[:-1]) < 0), axis=1)
    return tuple(int(t) + 1 for t in np.nonzero(flips)[0])


def make_av_clip(seed: int, frames: int = 8, size: int = 48, fps: float = 8.0) -> AVClip:
    """A clip of 1–2 moving shapes and the sound they make (see the module docstring); fully set by ``seed``."""
    clip = make_clip(seed, frames=frames, size=size, n_objects=(1, 2), max_speed=5.0)
    n = int(round(frames / fps * RATE))
    t = np.arange(n) / RATE
    rng = np.random.default_rng([seed, 7])
    audio = rng.normal(0, 0.003, n)
    bounces = []
    for k, o in enumerate(clip.objects):
        f0 = PITCH_HZ[o.colour]
        phase = rng.uniform(0, 2 * np.pi)
        wave = sum(a * np.sin(2 * np.pi * f0 * (h + 1) * t + phase) for h, a in enumerate(HARMONICS[o.shape]) if a)
        env = np.full(n, 0.12)
        b = _bounce_frames(clip, k, size)
        for fr in b:
            start = fr / fps
            env += np.where(t >= start, 0.7 * np.exp(-(t - start) / 0.12), 0.0)
        loud = 0.6 + 0.8 * o.radius / size
        audio += loud * env * wave / sum(HARMONICS[o.shape])
        bounces.append(b)
    return AVClip(clip, np.clip(audio, -1, 1).astype(np.float32), tuple(bounces), float(fps))
