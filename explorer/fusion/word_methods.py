"""captum's per-word maps for image+text models: what one word adds, attributed to the image patches.

Every method explains ``F(x) = s(x, text) − s(x, text with the word masked)`` over the pixels ``x`` (the same
function as Integrated Gradients' :func:`~explorer.fusion.attribution.word_ig`), with the blank image
(:meth:`~explorer.models.fusion_base.FusionAdapter.blank_pixels`, the mean colour) as baseline, and returns a
signed ``(gh, gw)`` float32 map (positive: the patch supports the word):

* ``saliency`` — ``∂F/∂x`` summed per patch (captum ``Saliency(abs=False)``);
* ``gradient-shap`` — captum ``GradientShap`` from the blank image, summed per patch (seeded);
* ``occlusion`` — ``F(x) − F(x with the patch blanked)``, one patch at a time (captum ``Occlusion``, windows = patches);
* ``smoothgrad`` — captum ``NoiseTunnel`` (SmoothGrad) over saliency or IG, summed per patch (seeded).

The registry (:mod:`explorer.fusion.methods`) serves them on demand, one word at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import attribution as AT
from ..models.fusion_base import FusionAdapter
from .capture import prepare

#: the per-word captum methods, in menu order
WORD_METHODS = ("saliency", "gradient-shap", "occlusion", "smoothgrad")


def word_function(adapter: FusionAdapter, image, text: str, word: int, *, fit: str = "center-crop"):
    """``(pixels (1, 3, S, S), F, blank pixels)``: the fitted image and ``F(x) = s(x, text) − s(x, text without word)``,
    ``(B, 3, S, S) → (B,)`` float.

    Raises:
        IndexError: ``word`` is not a clickable word of ``text``.
    """
    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    if not 0 <= word < len(t.words):
        raise IndexError(f"word {word} out of range: the text has {len(t.words)} clickable words")
    blank = adapter.blank_text(t, [t.words[word]])
    return pixels, (lambda x: (adapter.score(x, t) - adapter.score(x, blank)).float()), adapter.blank_pixels(pixels)


def _stdev(pixels: torch.Tensor, noise: float) -> float:
    """Noise level ``noise`` × the input's range (max − min), in normalised units."""
    return float(noise) * float(pixels.max() - pixels.min())


def word_attribution(adapter: FusionAdapter, image, text: str, word: int, method: str, *, samples: int = 16,
                     noise: float | None = None, seed: int = 0, base: str = "saliency", steps: int = 16,
                     fit: str = "center-crop") -> np.ndarray:
    """``(gh, gw)`` float32 signed map of what clickable word ``word`` adds, by ``method`` (one of :data:`WORD_METHODS`).

    Args:
        samples: GradientSHAP's random points / SmoothGrad's noisy copies.
        noise: Gaussian noise, × the input's range (default: 0 for GradientSHAP, 0.15 for SmoothGrad).
        seed: GradientSHAP and SmoothGrad draw with torch and numpy seeded by it (in a local fork).
        base: what SmoothGrad averages: ``"saliency"`` or ``"integrated-gradients"`` (``steps``, from the blank image).
    """
    pixels, F, blank = word_function(adapter, image, text, word, fit=fit)
    p = adapter.patch_size
    x = pixels.float()
    if method == "saliency":
        return AT.saliency_patches(F, x, p, absolute=False)
    if method == "gradient-shap":
        sd = _stdev(x, 0.0 if noise is None else noise)
        return AT.gradient_shap_patches(F, x, p, baselines=blank.float(), samples=samples, stdev=sd, seed=seed)
    if method == "occlusion":
        return AT.occlusion_patches(F, x, p, baseline=blank.float().expand_as(x))
    if method == "smoothgrad":
        if base not in ("saliency", "integrated-gradients"):
            raise ValueError(f"SmoothGrad runs over 'saliency' or 'integrated-gradients', not {base!r}.")
        sd = _stdev(x, 0.15 if noise is None else noise)
        return AT.smoothgrad_patches(F, x, p, base=base, samples=samples, stdev=sd, seed=seed, steps=steps,
                                     absolute=False, baseline=blank.float().expand_as(x))
    raise ValueError(f"Unknown per-word method {method!r}; choose from {', '.join(WORD_METHODS)}.")


def word_map_of(method: str):
    """The registry's on-demand function for ``method``: ``(adapter, alignment, word, **options) → (gh, gw)`` on the
    :class:`~explorer.fusion.Alignment`'s fitted image and text."""

    def compute(adapter: FusionAdapter, al, word: int, **options) -> np.ndarray:
        return word_attribution(adapter, al.image, al.meta["text"], word, method, **options)

    compute.__name__ = f"{method.replace('-', '_')}_word_map"
    return compute
