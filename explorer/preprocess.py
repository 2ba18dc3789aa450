"""Fit a decoded image to the input a model expects, square or ``(H, W)`` (resize / crop / pad).

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
        pixels: ``(S, S, 3)`` (or ``(H, W, 3)``) float32 RGB in ``[0, 1]``, the model input.
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


def _target(size) -> tuple[int, int]:
    """``S`` or ``(H, W)`` → ``(H, W)``."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


#: Enlargements up to this factor go without a note (rounding of an image that is about the model's size).
ENLARGE_NOTE_ABOVE = 1.05


def _enlarged(scale: float, src: str) -> str:
    """The note for an image enlarged ``scale`` times (empty up to :data:`ENLARGE_NOTE_ABOVE`)."""
    if scale <= ENLARGE_NOTE_ABOVE:
        return ""
    return f"; enlarged {scale:.1f}×: the model sees no more detail than the {src} original"


def fit_image(pixels: np.ndarray, size: "int | tuple[int, int]", policy: str = "center-crop", pad_value: float = 0.5) -> Fit:
    """Fit ``pixels`` ``(h, w, 3)`` float in ``[0, 1]`` to ``(size, size, 3)``, or to ``(H, W, 3)`` for ``size=(H, W)``.

    Policies:
        ``"center-crop"``: resize so the image covers the target (square: the shorter side to ``size``), crop the
        centre (no distortion, loses the borders of images of another aspect ratio);
        ``"resize"``: squash to the target (keeps everything, distorts aspect);
        ``"pad"``: resize so the image fits inside the target (square: the longer side to ``size``) and pad with
        ``pad_value`` grey.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown fit policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) RGB array, got shape {pixels.shape}.")
    H, W = _target(size)
    if H < 1 or W < 1:
        raise ValueError(f"The target size must be positive, got {size!r}.")
    square = H == W
    h, w = pixels.shape[:2]
    src = f"{w}x{h}"
    dst = f"{W}x{H}"
    img = np.ascontiguousarray(pixels, dtype=np.float32)
    if policy == "resize":
        out = _resize(img, W, H)
        note = "unchanged" if (w, h) == (W, H) else f"resized to {dst}"
        if w * H != h * W:
            note += f" (aspect ratio {w / h:.2f} squashed to {W / H:.2f})" if not square else f" (aspect ratio {w / h:.2f} squashed to 1)"
        return Fit(out, policy, (w, h), f"{src} → {note}{_enlarged(max(W / w, H / h), src)}")
    if policy == "center-crop":
        scale = max(H / h, W / w)
        nw, nh = max(W, int(round(w * scale))), max(H, int(round(h * scale)))
        resized = _resize(img, nw, nh) if (nw, nh) != (w, h) else img
        top, left = (nh - H) // 2, (nw - W) // 2
        out = np.ascontiguousarray(resized[top : top + H, left : left + W])
        cut = ""
        if nw > W:
            cut = f" (left/right {100 * (nw - W) / nw:.0f}% cut)"
        elif nh > H:
            cut = f" (top/bottom {100 * (nh - H) / nh:.0f}% cut)"
        step = "" if (nw, nh) == (w, h) else (f"shorter side resized to {H}, " if square else f"resized to {nw}x{nh}, ")
        return Fit(out, policy, (w, h), f"{src} → {step}centre-cropped to {dst}{cut}{_enlarged(scale, src)}")
    scale = min(H / h, W / w)
    nw, nh = max(1, min(W, int(round(w * scale)))), max(1, min(H, int(round(h * scale))))
    resized = _resize(img, nw, nh)
    out = np.full((H, W, 3), pad_value, dtype=np.float32)
    top, left = (H - nh) // 2, (W - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    what = f"longer side resized to {H}" if square else f"resized to {nw}x{nh}"
    return Fit(out, policy, (w, h), f"{src} → {what}, padded with grey to {dst}{_enlarged(scale, src)}")
