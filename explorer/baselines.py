"""Non-learned fills of hidden patches, the bar a masked autoencoder has to clear.

* :func:`mean_fill`: every hidden pixel gets the mean colour of the visible pixels.
* :func:`telea_fill`: OpenCV's fast-marching inpainting (Telea, 2004) of the hidden pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from .metrics import upsample_mask


def mean_fill(image: np.ndarray, mask: np.ndarray, patch: int) -> np.ndarray:
    """Fill hidden patches with the mean visible colour.

    Args:
        image: ``(H, W, 3)`` float in ``[0, 1]``.
        mask: ``(H / patch, W / patch)`` bool, True = hidden.
    Returns ``(H, W, 3)`` float32.
    """
    px = upsample_mask(mask, patch)
    out = np.array(image, dtype=np.float32, copy=True)
    visible = out[~px]
    out[px] = visible.mean(axis=0) if len(visible) else 0.5
    return out


def telea_fill(image: np.ndarray, mask: np.ndarray, patch: int, radius: int = 5) -> np.ndarray:
    """Inpaint hidden patches with ``cv2.inpaint(..., cv2.INPAINT_TELEA)``.

    OpenCV's inpainting works on 8-bit images, so the input is quantised to 8 bits and the
    result returned as ``(H, W, 3)`` float32 in ``[0, 1]``.
    """
    px = upsample_mask(mask, patch).astype(np.uint8)
    img8 = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
    out = cv2.inpaint(img8, px, radius, cv2.INPAINT_TELEA)
    return out.astype(np.float32) / 255.0
