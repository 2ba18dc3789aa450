"""Adapter over transformers' ``VideoMAEModel`` (the encoder) for the attention views.

Tokens are tubelets: ``num_frames / tubelet_size`` time steps × ``gh × gw`` patches, no CLS token.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import ImageAdapter


class VideoMAEAdapter(ImageAdapter):
    """A ``VideoMAEModel`` (see :class:`ImageAdapter`; ``grid`` is the spatial grid of one time step).

    Attributes:
        num_frames: ``T`` frames per clip.
        tubelet_size: frames per token.
        time_steps: ``T / tubelet_size``.
    """

    family = "videomae"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        cfg = model.config
        self.num_frames = int(cfg.num_frames)
        self.tubelet_size = int(cfg.tubelet_size)
        self.time_steps = self.num_frames // self.tubelet_size

    @property
    def blocks(self):
        return self.model.encoder.layer

    @property
    def head_modules(self) -> list:
        return [m for m in (self.model.layernorm,) if m is not None]

    def normalise_video(self, frames: np.ndarray) -> torch.Tensor:
        """``(T, S, S, 3)`` float in [0, 1] → normalised ``(1, T, 3, S, S)`` on the device."""
        f = np.asarray(frames, np.float32)
        if f.shape != (self.num_frames, self.image_size, self.image_size, 3):
            raise ValueError(f"Expected frames of shape ({self.num_frames}, {self.image_size}, {self.image_size}, 3), got {f.shape}.")
        x = (torch.from_numpy(f).permute(0, 3, 1, 2) - self._mean) / self._std
        return x[None].to(self.device, self.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, S, S)`` → mean-pooled encoder output ``(B, D)``."""
        return self.model(pixel_values=x).last_hidden_state.mean(1)
