"""Adapter over transformers' ``CLIPModel``: the image tower for the attention views.

The text tower and image-text matching belong to the cross-modal views; here CLIP is an image
encoder whose output is ``get_image_features`` (the projected pooled CLS token).
"""

from __future__ import annotations

import torch

from .base import ImageAdapter


class CLIPImageAdapter(ImageAdapter):
    """A ``CLIPModel`` seen through its vision tower (see :class:`ImageAdapter` for the attributes)."""

    family = "clip"
    square_only = True  # CLIPVisionConfig has one image side
    embedding_name = "image embedding"

    @property
    def blocks(self):
        return self.model.vision_model.encoder.layers

    @property
    def head_modules(self) -> list:
        return [self.model.vision_model.post_layernorm, self.model.visual_projection]

    @property
    def attention_module(self):
        return self.model.vision_model

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``(B, 3, S, S)`` → projected image embeddings ``(B, D)``."""
        out = self.model.get_image_features(pixel_values=x)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_features(x)
