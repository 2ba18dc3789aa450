"""Procedural video clips for the video MAEs: shapes moving over a textured background (OpenCV drawing;
free, unlimited, licence-free).  Each object also carries a pure tone (for audio-visual models later).

    c = make_clip(seed=3, frames=16, size=64)
    c.frames (16, 64, 64, 3) float32 · c.masks (16, n, 64, 64) bool · c.objects[i].velocity (px / frame)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .procedural import _background
from .scenes import COLOURS, SHAPES, _draw


@dataclass(frozen=True)
class MovingObject:
    """A shape moving at constant velocity, bouncing off the borders.

    Attributes:
        shape, colour: words from the scene vocabulary; radius: pixels.
        start: ``(x, y)`` pixels at frame 0; velocity: ``(vx, vy)`` pixels per frame.
        tone_hz: the pure tone this object makes (for audio-visual clips).
    """

    shape: str
    colour: str
    radius: int
    start: tuple[float, float]
    velocity: tuple[float, float]
    tone_hz: float

    def position(self, t: int, size: int) -> tuple[int, int]:
        """Centre at frame ``t``: straight motion, reflected at the borders (never leaves the frame)."""
        out = []
        for p0, v in zip(self.start, self.velocity):
            lo, hi = self.radius + 1, size - self.radius - 2
            span = hi - lo
            x = (p0 - lo + v * t) % (2 * span)
            out.append(int(round(lo + (x if x <= span else 2 * span - x))))
        return out[0], out[1]


@dataclass(frozen=True)
class Clip:
    """A generated clip and its ground truth.

    Attributes:
        frames: ``(T, S, S, 3)`` float32 in [0, 1]; masks: ``(T, n, S, S)`` bool, each object's pixels per frame
        (later objects drawn over earlier ones); objects: the movers; seed.
    """

    frames: np.ndarray
    masks: np.ndarray
    objects: tuple[MovingObject, ...]
    seed: int


def make_clip(seed: int, frames: int = 16, size: int = 64, n_objects: tuple[int, int] = (1, 3), max_speed: float = 3.0) -> Clip:
    """``frames`` frames of 1–3 shapes moving over a static textured background, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    bg = _background(rng, size) * 0.5 + 0.25
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objs = []
    for _ in range(n):
        r = int(rng.integers(size // 10, size // 5 + 1))
        objs.append(MovingObject(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), r,
                                 tuple(float(v) for v in rng.uniform(r + 1, size - r - 2, 2)),
                                 tuple(float(v) for v in rng.uniform(-max_speed, max_speed, 2)),
                                 float(rng.choice([220.0, 330.0, 440.0, 550.0, 660.0]))))
    out = np.empty((frames, size, size, 3), np.float32)
    masks = np.zeros((frames, n, size, size), bool)
    for t in range(frames):
        img = bg.copy()
        for k, o in enumerate(objs):
            m = np.zeros((size, size), np.uint8)
            _draw(img, m, o.shape, o.position(t, size), o.radius, COLOURS[o.colour])
            masks[t, :k] &= ~m.astype(bool)[None]  # occluded by this one
            masks[t, k] = m.astype(bool)
        out[t] = np.clip(img, 0, 1)
    return Clip(out, masks, tuple(objs), int(seed))
