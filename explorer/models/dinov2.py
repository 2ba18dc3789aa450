"""Adapter over transformers' DINOv2 (Oquab et al. 2023), with or without register tokens (Darcet et al. 2024):
``Dinov2WithRegistersModel`` / ``Dinov2WithRegistersForImageClassification`` and ``Dinov2Model`` /
``Dinov2ForImageClassification``.

The sequence is CLS, then ``config.num_register_tokens`` registers (``reg0``, ``reg1``, ...), then the patches.
The registers are no patches: the maps leave them out, and they can be queried by name.
"""

from __future__ import annotations

import torch

from .base import ImageAdapter


class Dinov2Adapter(ImageAdapter):
    """A DINOv2 encoder or classifier (see :class:`ImageAdapter` for the attributes).

    Attributes:
        num_registers: register tokens after CLS (0 for plain DINOv2).
        labels: class index → name (classifiers only).
    """

    family = "dinov2"
    square_only = True  # transformers interpolates DINOv2 position embeddings from a square grid

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.num_registers = len(self.layout.names) - 1
        self.classifier = hasattr(model, "classifier")
        self.labels = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()} \
            if self.classifier else {}

    def prefix_names(self, cfg) -> tuple[str, ...]:
        return ("cls",) + tuple(f"reg{i}" for i in range(int(getattr(cfg, "num_register_tokens", 0) or 0)))

    @property
    def _encoder_model(self):
        for name in ("dinov2_with_registers", "dinov2"):
            if hasattr(self.model, name):
                return getattr(self.model, name)
        return self.model

    @property
    def blocks(self):
        return self._encoder_model.encoder.layer

    @property
    def head_modules(self) -> list:
        return [self.model.classifier] if self.classifier else [self._encoder_model.layernorm]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if not self.classifier:
            return super().logits(x)
        return self.model(pixel_values=x).logits

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Encoders: the final (layer-normed) CLS output ``(B, D)``."""
        return self._encoder_model(pixel_values=x).pooler_output


class Dinov2RegistersAdapter(Dinov2Adapter):
    """DINOv2 with registers (``model_type == "dinov2_with_registers"``): the same adapter, its own family tag."""

    family = "dinov2-registers"
