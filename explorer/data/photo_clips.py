"""Clips with the statistics of real footage, made from the training photos (:mod:`explorer.data.photos`).

A camera looks at a photo and moves (pan, zoom, roll, or stays still); cut-outs of other photos move in front of it
at their own speed (parallax and moving objects, with soft edges); the light changes over the clip. Every choice
follows the seed, and only the photos' ``split`` is used, so held-out photos never appear in training clips.

    clip = make_photo_clip(seed=3, frames=8, size=64)     # (8, 64, 64, 3) float32 in [0, 1]
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .photos import photos


@lru_cache(maxsize=2)
def _photo_bank(split: str) -> tuple[np.ndarray, ...]:
    return tuple(photos(split).values())


def _view(photo: np.ndarray, centre, side: float, angle_deg: float, size: int) -> np.ndarray:
    """``(size, size, 3)``: the square of ``side`` photo pixels around ``centre``, rolled by ``angle_deg``."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, side / size)
    m[:, 2] = np.array(centre) - m[:, :2] @ np.array([size / 2, size / 2])
    return cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def _camera(photo: np.ndarray, rng: np.random.Generator, frames: int, size: int, still: bool) -> np.ndarray:
    """``(frames, size, size, 3)``: a camera moving over ``photo`` (or still)."""
    h, w = photo.shape[:2]
    side0 = float(np.exp(rng.uniform(np.log(size * 1.5), np.log(max(size * 1.5, 0.8 * min(h, w))))))
    if still:
        vel, zoom, roll = np.zeros(2), 1.0, 0.0
    else:
        vel = rng.uniform(-3.0, 3.0, 2) * side0 / size  # up to 3 output pixels per frame
        zoom = float(np.exp(rng.uniform(-0.04, 0.04))) if rng.random() < 0.4 else 1.0
        roll = float(rng.uniform(-2.0, 2.0)) if rng.random() < 0.3 else 0.0
    # the window (its diagonal when rolling) stays inside the photo at both ends of the path; else the camera is still
    half = side0 * max(1.0, zoom ** (frames - 1)) / 2 * (np.sqrt(2) if roll else 1.0)
    travel = np.abs(vel) * (frames - 1)
    lo, hi = np.array([half, half]) + np.minimum(vel, 0) * -(frames - 1), np.array([w - half, h - half]) - np.maximum(vel, 0) * (frames - 1)
    if np.any(hi <= lo):
        vel, zoom, roll, half, travel = np.zeros(2), 1.0, 0.0, side0 / 2, np.zeros(2)
        lo, hi = np.array([half, half]), np.array([max(w - half, half + 1), max(h - half, half + 1)])
    centre = rng.uniform(lo, hi)
    return np.stack([_view(photo, centre + vel * t, side0 * zoom ** t, roll * t, size) for t in range(frames)])


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size)`` float32 soft mask of a random ellipse or polygon centred in the square."""
    m = np.zeros((size, size), np.uint8)
    c = size // 2
    if rng.random() < 0.5:
        axes = tuple(int(a) for a in rng.uniform(size * 0.2, size * 0.45, 2))
        cv2.ellipse(m, (c, c), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        k = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(size * 0.2, size * 0.45, k)
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 255)
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (3, 3), 0)


def _mover(bank, rng: np.random.Generator, frames: int, size: int):
    """A cut-out: ``(frames, size, size, 3)`` colours and ``(frames, size, size, 1)`` alpha, moving straight."""
    photo = bank[int(rng.integers(len(bank)))]
    r = int(rng.integers(size // 5, size // 2))
    patch = _view(photo, rng.uniform([r, r], [photo.shape[1] - r, photo.shape[0] - r]), 2 * r * rng.uniform(1, 3),
                  float(rng.uniform(0, 360)), 2 * r)
    alpha = _blob(rng, 2 * r)
    start = rng.uniform(-r * 0.5, size - r * 1.5, 2)
    vel = rng.uniform(-3.0, 3.0, 2)
    colour = np.zeros((frames, size, size, 3), np.float32)
    a = np.zeros((frames, size, size, 1), np.float32)
    for t in range(frames):
        m = np.float32([[1, 0, start[0] + vel[0] * t], [0, 1, start[1] + vel[1] * t]])
        colour[t] = cv2.warpAffine(patch, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        a[t, ..., 0] = cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return colour, a


def make_photo_clip(seed: int, frames: int = 8, size: int = 64, split: str = "train") -> np.ndarray:
    """A clip of ``frames`` frames, ``(frames, size, size, 3)`` float32 in [0, 1], fully determined by ``seed``.

    A still (30 %) or moving camera over one photo of ``split``; 0–2 cut-outs of other photos moving in front;
    a linear change of brightness and a colour cast over the clip."""
    rng = np.random.default_rng(seed)
    bank = _photo_bank(split)
    clip = _camera(bank[int(rng.integers(len(bank)))], rng, frames, size, still=rng.random() < 0.3)
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        colour, alpha = _mover(bank, rng, frames, size)
        clip = clip * (1 - alpha) + colour * alpha
    gain = np.linspace(*rng.uniform(0.8, 1.2, 2), frames, dtype=np.float32)[:, None, None, None]
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    return np.clip(clip * gain * cast, 0.0, 1.0).astype(np.float32)
