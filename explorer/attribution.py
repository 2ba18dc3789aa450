"""Thin wrappers over captum's attribution methods, returning per-patch maps."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def integrated_gradients_patches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, patch_size: int, *,
                                 steps: int = 32, baseline: torch.Tensor | None = None, tubelet: int = 1) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017, via captum) summed per patch.

    Args:
        fn: normalised pixels ``(B, 3, S, S)`` → ``(B,)`` scalar target.
        x: ``(1, 3, S, S)`` normalised input, or a video ``(1, T, 3, S, S)``.
        baseline: same shape as ``x``; default zeros (the dataset mean colour after normalisation).
        tubelet: frames per video token.
    Returns:
        ``(gh, gw)`` float32 (video: ``(T / tubelet, gh, gw)``): ``Σ |attribution|`` over each patch's
        pixels, channels (and frames).
    """
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(lambda inp: fn(inp).float())
    base = torch.zeros_like(x) if baseline is None else baseline
    with torch.enable_grad():
        attr = ig.attribute(x.float().requires_grad_(True), baselines=base.float(), n_steps=int(steps),
                            internal_batch_size=min(int(steps), 16))
    if attr.dim() == 5:  # video (1, T, 3, S, S)
        a = attr.detach().abs().sum(2)[0].cpu().numpy()  # (T, S, S)
        T, S = a.shape[0], a.shape[1]
        g = S // patch_size
        return a.reshape(T // tubelet, tubelet, g, patch_size, g, patch_size).sum((1, 3, 5)).astype(np.float32)
    a = attr.detach().abs().sum(1)[0].cpu().numpy()  # (S, S)
    S = a.shape[0]
    g = S // patch_size
    return a.reshape(g, patch_size, g, patch_size).sum((1, 3)).astype(np.float32)
