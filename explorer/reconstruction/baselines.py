"""Non-learned fills of hidden patches, the bar a masked autoencoder has to clear.

* :func:`mean_fill`: every hidden pixel gets the mean colour of the visible pixels.
* :func:`telea_fill`: OpenCV's fast-marching inpainting (Telea, 2004) of the hidden pixels.
* :func:`video_telea_fill`, :func:`video_mean_fill`, :func:`nearest_frame_fill`: the same, frame by frame, and a copy
  from the nearest frame where the patch is visible.
* :func:`sweep_baseline_psnr`: every image baseline's masked-patch PSNR at every mask of a ratio sweep (the curves the
  apps draw beside the model's; :attr:`explorer.ReconstructionSweep.baseline_psnr` keeps them with the sweep).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..metrics import masked_psnr, upsample_mask

#: Curve names of the baselines (the apps' legends, notebook 02's dictionary keys).
TELEA = "Telea inpainting"
MEAN = "mean colour fill"


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


def video_telea_fill(frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
    """Per-frame Telea inpainting of a masked clip.

    Args:
        frames: ``(T, H, W, 3)`` float in [0, 1]; mask: ``(T / tubelet, H / patch, W / patch)`` bool.
    Returns ``(T, H, W, 3)`` float32.
    """
    return np.stack([telea_fill(f, mask[i // tubelet], patch) for i, f in enumerate(frames)])


def video_mean_fill(frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
    """Per-frame mean fill: each frame's hidden patches get the mean colour of that frame's visible pixels.

    Args:
        frames: ``(T, H, W, 3)`` float in [0, 1]; mask: ``(T / tubelet, H / patch, W / patch)`` bool.
    Returns ``(T, H, W, 3)`` float32.
    """
    return np.stack([mean_fill(f, mask[i // tubelet], patch) for i, f in enumerate(frames)])


def nearest_frame_fill(frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int, *,
                       inpainted: np.ndarray | None = None) -> np.ndarray:
    """Copy each hidden patch from the nearest frame in time where that patch is visible (ties: the earlier
    frame); where it is hidden in every frame (tube masking), fall back to per-frame Telea inpainting.

    Args:
        frames: ``(T, H, W, 3)`` float in [0, 1]; mask: ``(T / tubelet, H / patch, W / patch)`` bool.
        inpainted: ``video_telea_fill(frames, mask, tubelet, patch)`` when the caller already has it (not recomputed).
    Returns ``(T, H, W, 3)`` float32.
    """
    T = len(frames)
    per_frame = np.repeat(np.asarray(mask, bool), tubelet, axis=0)  # (T, gh, gw)
    out = np.array(video_telea_fill(frames, mask, tubelet, patch) if inpainted is None else inpainted, np.float32, copy=True)
    for i, r, c in zip(*np.nonzero(per_frame)):
        visible = np.flatnonzero(~per_frame[:, r, c])
        if visible.size:
            j = int(visible[np.argmin(np.abs(visible - i) * 2 * T + visible)])  # nearest in time, earlier on ties
            out[i, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = frames[j, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch]
    return out.astype(np.float32)


def sweep_baseline_psnr(image: np.ndarray, masks, patch: int) -> dict[str, np.ndarray]:
    """Masked-patch PSNR (dB) of :func:`telea_fill` and :func:`mean_fill` on each of ``masks``.

    Args:
        image: ``(S, S, 3)`` float in [0, 1]; masks: ``R`` masks ``(gh, gw)`` bool (a sweep's, True = hidden).
    Returns ``{TELEA: (R,), MEAN: (R,)}`` float64, NaN where a mask hides nothing.
    """
    masks = [np.asarray(m, bool) for m in masks]
    return {
        TELEA: np.array([masked_psnr(telea_fill(image, m, patch), image, m, patch) for m in masks], float),
        MEAN: np.array([masked_psnr(mean_fill(image, m, patch), image, m, patch) for m in masks], float),
    }
