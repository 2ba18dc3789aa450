"""What a word, a patch or a whole modality adds to the output: Integrated Gradients (captum) and masking.

* :func:`word_ig` — IG over image patches of what one word adds (the registry's on-demand ``ig`` method);
* :func:`modality_report` — the output with each modality masked, and IG over both inputs at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.fusion_base import FusionAdapter
from .capture import prepare


def word_ig(adapter: FusionAdapter, image, text: str, word: int, *, steps: int = 16, fit: str = "center-crop") -> np.ndarray:
    """Integrated Gradients (captum) over image patches of *what word ``word`` adds* to the output:
    ``F(x) = s(x, text) − s(x, text with the word masked)``, from the mean-colour image to ``x``.

    Returns:
        ``(gh, gw)`` float32, signed attribution summed per patch (positive: the patch supports the word).
    """
    from captum.attr import IntegratedGradients

    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    if not 0 <= word < len(t.words):
        raise IndexError(f"word {word} out of range: the text has {len(t.words)} clickable words")
    blank = adapter.blank_text(t, [t.words[word]])
    ig = IntegratedGradients(lambda x: (adapter.score(x, t) - adapter.score(x, blank)).float())
    with torch.enable_grad():
        attr = ig.attribute(pixels.float(), baselines=adapter.blank_pixels(pixels).float(), n_steps=steps,
                            internal_batch_size=steps)
    a = attr.detach().sum(1)[0].cpu().numpy()
    gh, gw = adapter.grid
    p = adapter.patch_size
    return a.reshape(gh, p, gw, p).sum((1, 3)).astype(np.float32)


@dataclass
class ModalityReport:
    """How much the output depends on each modality.

    Attributes:
        score: output on the full input.
        masked: ``{"image": s(no image, text), "text": s(image, no text), "both": s(neither)}``.
        ig_image, ig_text: Integrated Gradients totals per modality along the joint path
            (both modalities scaled from their blank baseline together); ``ig_delta``: completeness gap
            ``|Σ attributions − (s(x) − s(baseline))|``.
        word_attribution: ``(W,)`` IG per clickable word; ``patch_attribution``: ``(gh, gw)``.
    """

    score: float
    masked: dict[str, float]
    ig_image: float
    ig_text: float
    ig_delta: float
    word_attribution: np.ndarray
    patch_attribution: np.ndarray

    @property
    def image_share(self) -> float:
        tot = abs(self.ig_image) + abs(self.ig_text)
        return abs(self.ig_image) / tot if tot > 0 else 0.5


def modality_report(adapter: FusionAdapter, image, text: str, *, steps: int = 64, fit: str = "center-crop") -> ModalityReport:
    """Masking each modality entirely, and captum Integrated Gradients over both inputs at once
    (pixels and the text token embeddings, as LayerIntegratedGradients does for the embedding layer)."""
    from captum.attr import IntegratedGradients

    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    set_target = getattr(adapter, "set_target", None)
    if set_target is not None:
        set_target(pixels, t)
    blank_t = adapter.blank_text(t)
    blank_p = adapter.blank_pixels(pixels)
    with torch.no_grad():
        full = float(adapter.score(pixels, t)[0])
        masked = {"image": float(adapter.score(blank_p, t)[0]), "text": float(adapter.score(pixels, blank_t)[0]),
                  "both": float(adapter.score(blank_p, blank_t)[0])}
        emb = adapter.embed_text(t).detach()
        emb0 = adapter.embed_text(blank_t).detach()

    ig = IntegratedGradients(lambda x, e: adapter.score(x, t, text_embeds=e).float())
    with torch.enable_grad():
        (ai, at), delta = ig.attribute((pixels.float(), emb.float()), baselines=(blank_p.float(), emb0.float()), n_steps=steps,
                                       internal_batch_size=steps, return_convergence_delta=True)
    gh, gw = adapter.grid
    p = adapter.patch_size
    patch = ai.detach().sum(1)[0].cpu().numpy().reshape(gh, p, gw, p).sum((1, 3))
    per_tok = at.detach().sum(-1)[0].cpu().numpy()  # rows of the embedding output
    pos = adapter.embedding_positions(t)
    by_pos = dict(zip(pos, per_tok))
    words = np.array([by_pos.get(w, 0.0) for w in t.words], np.float32)
    return ModalityReport(score=full, masked=masked, ig_image=float(ai.sum()), ig_text=float(at.sum()),
                          ig_delta=float(delta.abs().max()), word_attribution=words, patch_attribution=patch.astype(np.float32))


def ig_word_map(adapter: FusionAdapter, al, word: int, *, steps: int = 16) -> np.ndarray:
    """The registry's on-demand ``ig`` method: :func:`word_ig` of clickable word ``word`` of an
    :class:`~explorer.fusion.Alignment` (its fitted image and text), ``(gh, gw)``."""
    return word_ig(adapter, al.image, al.meta["text"], word, steps=int(steps))
