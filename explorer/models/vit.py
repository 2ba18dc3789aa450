"""Adapter over transformers' ``ViTForImageClassification`` (the attention views' classifier family).

One CLS token before the patches; square or non-square inputs (``ViTConfig(image_size=[32, 48], patch_size=8)``
is a 4x6 grid).
"""

from __future__ import annotations

import torch

from .base import ImageAdapter


class ViTAdapter(ImageAdapter):
    """A ViT classifier (see :class:`ImageAdapter` for the attributes).

    Attributes:
        labels: class index → name from the config (``id2label``).
    """

    family = "vit"
    classifier = True

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        cfg = model.config
        self.labels = {int(k): str(v) for k, v in (getattr(cfg, "id2label", None) or {}).items()}

    @property
    def blocks(self):
        vit = self.model.vit
        return vit.layers if hasattr(vit, "layers") else vit.encoder.layer

    @property
    def head_modules(self) -> list:
        return [self.model.classifier]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``(B, 3, H, W)`` → class logits ``(B, C)``."""
        return self.model(pixel_values=x).logits
