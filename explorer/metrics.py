"""Reconstruction metrics over patch grids (pure numpy)."""

from __future__ import annotations

import numpy as np


def upsample_mask(mask: np.ndarray, patch: int) -> np.ndarray:
    """Patch mask ``(gh, gw)`` → pixel mask ``(gh * patch, gw * patch)`` (same dtype)."""
    return np.repeat(np.repeat(np.asarray(mask), patch, axis=0), patch, axis=1)


def patch_mse(pred: np.ndarray, target: np.ndarray, patch: int) -> np.ndarray:
    """Mean squared error per patch: images ``(H, W, C)`` in ``[0, 1]`` → ``(H / patch, W / patch)``."""
    h, w, c = target.shape
    diff = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    return diff.reshape(h // patch, patch, w // patch, patch, c).mean(axis=(1, 3, 4))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for signals in ``[0, 1]``; ``inf`` for a perfect match."""
    return float("inf") if mse <= 0 else float(10.0 * np.log10(1.0 / mse))


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, patch: int) -> float:
    """PSNR (dB) over the hidden patches only.

    Args:
        pred, target: ``(H, W, C)`` in ``[0, 1]``.
        mask: ``(H / patch, W / patch)`` bool, True = hidden.
    Returns ``nan`` when nothing is hidden.
    """
    m = np.asarray(mask, bool)
    if not m.any():
        return float("nan")
    return psnr_from_mse(float(patch_mse(pred, target, patch)[m].mean()))
