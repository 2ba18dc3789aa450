"""What a word, a patch or a whole modality adds to the output: Integrated Gradients (captum) and masking.

* :func:`word_ig` — IG over image patches of what one word adds (the registry's on-demand ``ig`` method);
* :func:`modality_report` — the output with each modality masked (exact Shapley values over the four masked
  outputs), and IG over both inputs at once with its completeness gap.
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


#: IG's completeness gap above this share of the output change gets a warning
GAP_WARNING = 0.05


@dataclass
class ModalityReport:
    """How much the output depends on each modality.

    Attributes:
        score: output on the full input.
        masked: ``{"image": s(no image, text), "text": s(image, no text), "both": s(neither)}``.
        shapley: exact Shapley values ``{"image": φ_image, "text": φ_text}`` of the two modalities over the four
            masked outputs (:func:`explorer.shapley.exact_shapley`); they add up to ``score − masked["both"]``.
        ig_image, ig_text: Integrated Gradients totals per modality along the joint path
            (both modalities scaled from their blank baseline together); ``ig_delta``: completeness gap
            ``|Σ attributions − (s(x) − s(baseline))|``; ``ig_steps``: integration steps.
        word_attribution: ``(W,)`` IG per clickable word; ``patch_attribution``: ``(gh, gw)``.
    """

    score: float
    masked: dict[str, float]
    ig_image: float
    ig_text: float
    ig_delta: float
    word_attribution: np.ndarray
    patch_attribution: np.ndarray
    shapley: dict = None  # type: ignore[assignment]
    ig_steps: int = 0

    @property
    def change(self) -> float:
        """``s(x) − s(both masked)``: what the two modalities together add (the Shapley values' sum)."""
        return self.score - self.masked["both"]

    @property
    def image_share(self) -> float:
        """``|φ_image| / (|φ_image| + |φ_text|)`` from the exact Shapley values (0.5 when both are 0)."""
        tot = abs(self.shapley["image"]) + abs(self.shapley["text"])
        return abs(self.shapley["image"]) / tot if tot > 0 else 0.5

    @property
    def ig_image_share(self) -> float:
        """The same share from the joint-path IG totals (can disagree with the Shapley share: see :attr:`ig_gap_share`)."""
        tot = abs(self.ig_image) + abs(self.ig_text)
        return abs(self.ig_image) / tot if tot > 0 else 0.5

    @property
    def ig_gap_share(self) -> float:
        """IG's completeness gap as a share of the output change it should account for (``inf`` when that is 0)."""
        return self.ig_delta / abs(self.change) if abs(self.change) > 1e-12 else (0.0 if self.ig_delta == 0 else float("inf"))

    @property
    def warnings(self) -> tuple[str, ...]:
        """Caveats a reader needs beside the numbers: a large completeness gap, IG and Shapley disagreeing in sign."""
        out = []
        if self.ig_gap_share > GAP_WARNING:
            out.append(f"Integrated Gradients misses {self.ig_delta:.3g} of the output change {self.change:+.3g} "
                       f"({100 * min(self.ig_gap_share, 99.99):.0f}% at {self.ig_steps} steps): its image / text split "
                       "is unreliable here; the Shapley values are exact.")
        for m in ("image", "text"):
            ig = self.ig_image if m == "image" else self.ig_text
            sh = self.shapley[m]
            if abs(sh) > 1e-6 and abs(ig) > 1e-6 and np.sign(ig) != np.sign(sh):
                out.append(f"IG along the joint path gives the {m} {ig:+.3g} but its Shapley value is {sh:+.3g}: the "
                           "two modalities interact, and the joint path splits the effect differently from masking.")
        return tuple(out)

    def headline(self) -> str:
        """One line for a reader: the Shapley split first, IG beside it with its gap."""
        return (f"Shapley values over modality masking: image {self.shapley['image']:+.3f}, text {self.shapley['text']:+.3f} "
                f"(image share {100 * self.image_share:.0f}%; they add up to the change {self.change:+.3f}). "
                f"Integrated Gradients along the joint path: image {self.ig_image:+.3f}, text {self.ig_text:+.3f}, "
                f"completeness gap {self.ig_delta:.3g} ({100 * min(self.ig_gap_share, 99.99):.1f}% of the change, "
                f"{self.ig_steps} steps).")


def modality_report(adapter: FusionAdapter, image, text: str, *, steps: int = 64, fit: str = "center-crop") -> ModalityReport:
    """Masking each modality entirely (and both: the exact Shapley values of the two modalities), and captum
    Integrated Gradients over both inputs at once (pixels and the text token embeddings, as
    LayerIntegratedGradients does for the embedding layer)."""
    from captum.attr import IntegratedGradients

    from ..shapley import exact_shapley

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
    value = {frozenset({"image", "text"}): full, frozenset({"text"}): masked["image"], frozenset({"image"}): masked["text"],
             frozenset(): masked["both"]}
    shapley = exact_shapley(("image", "text"), value)

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
                          ig_delta=float(delta.abs().max()), word_attribution=words, patch_attribution=patch.astype(np.float32),
                          shapley=shapley, ig_steps=int(steps))


def ig_word_map(adapter: FusionAdapter, al, word: int, *, steps: int = 16) -> np.ndarray:
    """The registry's on-demand ``ig`` method: :func:`word_ig` of clickable word ``word`` of an
    :class:`~explorer.fusion.Alignment` (its fitted image and text), ``(gh, gw)``."""
    return word_ig(adapter, al.image, al.meta["text"], word, steps=int(steps))
