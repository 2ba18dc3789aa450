"""Adapter over transformers' DeiT (Touvron et al. 2021): ``DeiTForImageClassificationWithTeacher``,
``DeiTForImageClassification`` and ``DeiTModel``.

Every DeiT sequence starts with two tokens: CLS and the distillation token (``("cls", "dist")``), then the
patches.  The distilled classifier's logits are the mean of the CLS head's and the distillation head's, as in
transformers; the views explain those.  (DeiT checkpoints without a distillation token are plain ViTs:
``model_type == "vit"``, loaded by :class:`~explorer.models.vit.ViTAdapter`.)
"""

from __future__ import annotations

import torch

from .base import ImageAdapter


class DeiTAdapter(ImageAdapter):
    """A DeiT (see :class:`ImageAdapter` for the attributes).

    Attributes:
        labels: class index → name from the config (``id2label``; empty for ``DeiTModel``).
    """

    family = "deit"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.classifier = any(hasattr(model, h) for h in ("cls_classifier", "classifier"))
        self.labels = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()} \
            if self.classifier else {}

    def prefix_names(self, cfg) -> tuple[str, ...]:
        return ("cls", "dist")

    @property
    def _deit(self):
        return getattr(self.model, "deit", self.model)

    @property
    def blocks(self):
        deit = self._deit
        return deit.layers if hasattr(deit, "layers") else deit.encoder.layer

    @property
    def head_modules(self) -> list:
        return [getattr(self.model, h) for h in ("cls_classifier", "distillation_classifier", "classifier")
                if hasattr(self.model, h)]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``(B, 3, H, W)`` → class logits ``(B, C)`` (with a teacher: mean of both heads)."""
        if not self.classifier:
            return super().logits(x)
        return self.model(pixel_values=x).logits

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``DeiTModel``: the final CLS output ``(B, D)``."""
        return self._deit(pixel_values=x).last_hidden_state[:, 0]
