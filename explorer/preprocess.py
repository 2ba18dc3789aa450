"""Fit a decoded image to the square input a model expects (resize / crop / pad).

The policy is always reported back in words, so the user sees what the model was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

POLICIES = ("center-crop", "resize", "pad")


@dataclass(frozen=True)
class Fit:
    """How an image was fitted.

    Attributes:
        pixels: ``(S, S, 3)`` float32 RGB in ``[0, 1]``, the model input.
        policy: one of :data:`POLICIES`.
        source_size: ``(width, height)`` before fitting.
        description: one sentence for the user, e.g. "3000x2000 → shorter side resized to 224,
            centre-cropped to 224x224 (left/right 12% cut)".
    """

    pixels: np.ndarray
    policy: str
    source_size: tuple[int, int]
    description: str


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    shrinking = w * h < img.shape[0] * img.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(img, (w, h), interpolation=interp)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def fit_image(pixels: np.ndarray, size: int, policy: str = "center-crop", pad_value: float = 0.5) -> Fit:
    """Fit ``pixels`` ``(H, W, 3)`` float in ``[0, 1]`` to ``(size, size, 3)``.

    Policies:
        ``"center-crop"``: resize the shorter side to ``size``, crop the centre (no distortion,
        loses the borders of non-square images);
        ``"resize"``: squash to ``size x size`` (keeps everything, distorts aspect);
        ``"pad"``: resize the longer side to ``size`` and pad with ``pad_value`` grey.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown fit policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) RGB array, got shape {pixels.shape}.")
    h, w = pixels.shape[:2]
    src = f"{w}x{h}"
    img = np.ascontiguousarray(pixels, dtype=np.float32)
    if policy == "resize":
        out = _resize(img, size, size)
        note = "unchanged" if (w, h) == (size, size) else f"resized to {size}x{size}"
        if w != h:
            note += f" (aspect ratio {w / h:.2f} squashed to 1)"
        return Fit(out, policy, (w, h), f"{src} → {note}")
    if policy == "center-crop":
        scale = size / min(w, h)
        nw, nh = max(size, int(round(w * scale))), max(size, int(round(h * scale)))
        resized = _resize(img, nw, nh) if (nw, nh) != (w, h) else img
        top, left = (nh - size) // 2, (nw - size) // 2
        out = np.ascontiguousarray(resized[top : top + size, left : left + size])
        cut = ""
        if nw > size:
            cut = f" (left/right {100 * (nw - size) / nw:.0f}% cut)"
        elif nh > size:
            cut = f" (top/bottom {100 * (nh - size) / nh:.0f}% cut)"
        step = "" if (nw, nh) == (w, h) else f"shorter side resized to {size}, "
        return Fit(out, policy, (w, h), f"{src} → {step}centre-cropped to {size}x{size}{cut}")
    scale = size / max(w, h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    resized = _resize(img, nw, nh)
    out = np.full((size, size, 3), pad_value, dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return Fit(out, policy, (w, h), f"{src} → longer side resized to {size}, padded with grey to {size}x{size}")
