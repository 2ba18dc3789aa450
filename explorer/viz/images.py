"""Arrays → compressed image data URIs for plotly ``go.Image`` traces (never giant heatmaps)."""

from __future__ import annotations

import base64

import cv2
import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1] → uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def upscale_factor(h: int, w: int, min_side: int) -> int:
    """Integer factor that brings the shorter side of an ``h x w`` image to at least ``min_side``."""
    return max(1, int(np.ceil(min_side / max(1, min(h, w))))) if min_side else 1


def upscale_nearest(image: np.ndarray, min_side: int) -> np.ndarray:
    """Integer nearest-neighbour upscaling so that patches stay crisp in the browser."""
    h, w = image.shape[:2]
    k = upscale_factor(h, w, min_side)
    if k == 1:
        return image
    return cv2.resize(image, (w * k, h * k), interpolation=cv2.INTER_NEAREST)


def data_uri(image: np.ndarray, fmt: str = "png", min_side: int = 224, quality: int = 92) -> str:
    """Encode ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (float in [0, 1] or uint8) as a ``data:image/...;base64`` URI.

    ``fmt`` is ``"png"`` (lossless, default; keeps the alpha channel) or ``"jpeg"`` (smaller for photos; RGB only).
    """
    img = image if image.dtype == np.uint8 else to_uint8(image)
    img = upscale_nearest(img, min_side)
    rgba = img.ndim == 3 and img.shape[2] == 4
    if rgba and fmt != "png":
        raise ValueError("only PNG keeps an alpha channel: encode RGBA images with fmt='png'")
    bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if rgba else cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    if not ok:
        raise RuntimeError("OpenCV failed to encode the image")
    mime = "png" if fmt == "png" else "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def json_grid(m) -> list:
    """A 2-D array as nested lists with ``None`` for non-finite cells (NaN is not JSON; a live
    FigureWidget sends its data as JSON, and plotly leaves ``None`` cells blank)."""
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(m, np.float64)]
