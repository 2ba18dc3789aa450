"""Procedurally generated scenes (OpenCV drawing): free, unlimited, licence-free data."""

from __future__ import annotations

import cv2
import numpy as np


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(0, 3)
    if kind == 0:  # linear gradient between two colours
        c0, c1 = rng.random(3), rng.random(3)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)
    if kind == 1:  # smooth coloured noise
        k = int(rng.integers(2, 9))
        small = rng.random((k, k, 3)).astype(np.float32)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    # stripes
    c0, c1 = rng.random(3), rng.random(3)
    period = rng.uniform(6, 30)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)


def random_scene(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A random scene of shapes on a textured background: ``(size, size, 3)`` float32 in [0, 1]."""
    img = _background(rng, size)
    for _ in range(int(rng.integers(1, 8))):
        colour = tuple(float(c) for c in rng.random(3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16, size // 3))
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.circle(img, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            pts = rng.integers(-r, r, (3, 2)) + np.array([x, y])
            cv2.fillPoly(img, [pts.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            x2, y2 = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(img, (x, y), (x2, y2), colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.0)))
    return np.clip(img, 0, 1).astype(np.float32)
