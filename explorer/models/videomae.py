"""Adapters over transformers' ``VideoMAEModel`` (the encoder) and ``VideoMAEForPreTraining`` (encoder + decoder).

Tokens are tubelets: ``num_frames / tubelet_size`` time steps × ``gh × gw`` patches, no CLS token
(:class:`~explorer.models.base.TokenLayout` with ``prefix=0`` and a ``(t, gh, gw)`` grid).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import ImageAdapter
from .layout import TokenLayout


class VideoMAEAdapter(ImageAdapter):
    """A ``VideoMAEModel`` (see :class:`ImageAdapter`; ``grid`` is the spatial grid of one time step).

    Attributes:
        num_frames: ``T`` frames per clip.
        tubelet_size: frames per token.
        time_steps: ``T / tubelet_size``.
        frame_stride: the gap between the frames the checkpoint was trained on (``config.frame_stride`` when set; 1 for
            our mini models, trained on consecutive frames; else 4, VideoMAE's Kinetics-400 sampling — SSv2 used 2).
    """

    family = "videomae"
    embedding_name = "mean-pooled encoder output"

    def read_layout(self, cfg) -> TokenLayout:
        """No prefix token; a ``(num_frames / tubelet_size, gh, gw)`` grid of tubelets."""
        return TokenLayout.from_config(cfg, (), frames=int(cfg.num_frames), tubelet=int(cfg.tubelet_size))

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        cfg = model.config
        self.num_frames = int(cfg.num_frames)
        self.tubelet_size = int(cfg.tubelet_size)
        self.time_steps = self.layout.grid[0]
        default = 1 if str(self.model_id).split("/")[-1].startswith("mini-") else 4
        self.frame_stride = int(getattr(cfg, "frame_stride", 0) or default)

    @property
    def blocks(self):
        return self.model.encoder.layer

    @property
    def head_modules(self) -> list:
        return [m for m in (self.model.layernorm,) if m is not None]

    def normalise_video(self, frames: np.ndarray) -> torch.Tensor:
        """``(T, H, W, 3)`` float in [0, 1] → normalised ``(1, T, 3, H, W)`` on the device."""
        f = np.asarray(frames, np.float32)
        H, W = self.input_size
        if f.shape != (self.num_frames, H, W, 3):
            raise ValueError(f"Expected frames of shape ({self.num_frames}, {H}, {W}, 3), got {f.shape}.")
        x = (torch.from_numpy(f).permute(0, 3, 1, 2) - self._mean) / self._std
        return x[None].to(self.device, self.dtype)

    def normalise_input(self, pixels: np.ndarray) -> torch.Tensor:
        return self.normalise_video(pixels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` → mean-pooled encoder output ``(B, D)``."""
        return self.model(pixel_values=x).last_hidden_state.mean(1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class VideoMAEPreTrainingAdapter(VideoMAEAdapter):
    """A ``VideoMAEForPreTraining`` (encoder + decoder): masked video reconstruction.

    The decoder predicts each hidden tubelet as ``tubelet · p · p · 3`` values in transformers' order
    ``(time, row, col, channel)``, in ImageNet-unnormalised pixel space, or normalised per tubelet and
    channel when ``norm_pix_loss`` (then shown with the *true* tubelet statistics, as the papers' figures do).
    """

    family = "videomae-pretraining"
    reconstructs = "video"

    @property
    def blocks(self):
        return self.model.videomae.encoder.layer

    @property
    def head_modules(self) -> list:
        return [self.model.encoder_to_decoder]

    @property
    def attention_module(self):
        return self.model.videomae

    @property
    def attention_notes(self) -> tuple[str, ...]:
        return ("VideoMAEForPreTraining: the encoder's attention with no mask (every tubelet visible); "
                "the decoder is not run.",)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.videomae(pixel_values=x).last_hidden_state.mean(1)

    def _tubelets(self, frames01: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, S, S)`` in [0, 1] → ``(B, N, ts·p·p, 3)`` (transformers' patch order)."""
        B, T, C, H, W = frames01.shape
        ts, p = self.tubelet_size, self.patch_size
        f = frames01.view(B, T // ts, ts, C, H // p, p, W // p, p).permute(0, 1, 4, 6, 2, 5, 7, 3)
        return f.reshape(B, (T // ts) * (H // p) * (W // p), ts * p * p, C)

    def _from_tubelets(self, tub: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_tubelets`: ``(B, N, ts·p·p, 3)`` → ``(B, T, H, W, 3)``."""
        B = tub.shape[0]
        ts, p, (gh, gw) = self.tubelet_size, self.patch_size, self.grid
        t = self.num_frames // ts
        f = tub.view(B, t, gh, gw, ts, p, p, 3).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return f.reshape(B, self.num_frames, gh * p, gw * p, 3)

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """Predict the hidden tubelets of one clip.

        Args:
            frames: ``(T, S, S, 3)`` float in [0, 1].
            mask: ``(T / tubelet, gh, gw)`` bool, True = hidden (at least one token hidden).
        Returns:
            ``(prediction (T, S, S, 3) float32 with the input on visible tubelets, the model's own loss)``.
        """
        x, pos, logits, loss = self.predict(frames, mask)
        return self.unpatchify(x, pos, logits), loss

    @torch.no_grad()
    def predict(self, frames: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """The forward pass of :meth:`reconstruct`: ``(x (1, T, 3, S, S) normalised input, pos (1, N) bool,
        logits (1, N_hidden, ts·p·p·3) on the device, loss)``."""
        m = np.asarray(mask, bool)
        if m.shape != (self.time_steps, *self.grid):
            raise ValueError(f"Expected a mask of shape {(self.time_steps, *self.grid)}, got {m.shape}.")
        if not m.any():
            raise ValueError("Hide at least one tubelet: the decoder predicts hidden tubelets only.")
        x = self.normalise_video(frames)
        pos = torch.from_numpy(m.reshape(1, -1)).to(self.device)
        out = self.model(pixel_values=x, bool_masked_pos=pos)
        return x, pos, out.logits, float(out.loss)

    @torch.no_grad()
    def unpatchify(self, x: torch.Tensor, pos: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
        """:meth:`predict`'s tubelets back to frames: ``(T, S, S, 3)`` float32 in pixel space, the input on visible
        tubelets (hidden ones de-normalised with their true statistics when ``norm_pix_loss``)."""
        from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, 3, 1, 1)
        target = self._tubelets(x.float().cpu() * std + mean)  # what transformers' loss compares with, in [0, 1]
        logits = logits.float().cpu().view(1, -1, self.tubelet_size * self.patch_size ** 2, 3)
        hidden_pos = pos[0].cpu()
        if self.model.config.norm_pix_loss:
            hidden = target[:, hidden_pos]
            mu = hidden.mean(dim=-2, keepdim=True)
            sd = hidden.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
            logits = logits * sd + mu
        full = target.clone()
        full[:, hidden_pos] = logits
        return self._from_tubelets(full)[0].numpy().astype(np.float32)
