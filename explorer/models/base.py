"""What every image-model adapter shares: identity (id, weights' hash), input normalisation, geometry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


def state_dict_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over parameter / buffer names, shapes and float32 bytes: the same for the same weights in any format."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a loaded model in results and sidecars."""

    model_id: str
    family: str
    model_type: str
    device: str
    dtype: str
    image_size: int
    patch_size: int
    norm_pix_loss: bool
    weights_sha256: str


class HashedWeights:
    """The weights' identity of an adapter. Needs ``model`` and ``_sha`` (``None`` until first asked)."""

    @property
    def weights_sha256(self) -> str:
        """SHA-256 over parameter names, shapes and float32 bytes (format-independent, cached)."""
        if self._sha is None:
            self._sha = state_dict_sha256(self.model)
        return self._sha


class PixelModel(HashedWeights):
    """What every image adapter shares: the weights' identity and image normalisation.

    Needs ``model``, ``image_size``, ``device``, ``dtype``, ``_mean`` / ``_std`` ``(1, 3, 1, 1)`` and ``_sha``.
    """

    #: raised when an image has the wrong shape
    shape_error: type = ValueError

    def normalise(self, images: np.ndarray) -> torch.Tensor:
        """``(B, S, S, 3)`` or ``(S, S, 3)`` float in [0, 1] → normalised ``(B, 3, S, S)`` on the device."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != (self.image_size, self.image_size, 3):
            raise self.shape_error(f"Expected images of shape (B, {self.image_size}, {self.image_size}, 3), got {tuple(x.shape)}.")
        x = (x.permute(0, 3, 1, 2) - self._mean) / self._std
        return x.to(self.device, self.dtype)


class ImageAdapter(PixelModel):
    """A transformers vision model with square inputs cut into ``p x p`` patches.

    Attributes:
        model: the transformers module (eval mode).
        image_size: ``S``, the square input side in pixels.
        patch_size: ``p``.
        grid: ``(gh, gw) = (S / p, S / p)``.
        num_patches: ``L = gh * gw``.
        image_mean, image_std: ``(3,)`` normalisation of the checkpoint's image processor.
    """

    family = "image"

    def __init__(self, model, *, model_id: str, image_mean, image_std, device: torch.device, dtype: torch.dtype):
        self.model = model.eval()
        self.model_id = model_id
        cfg = getattr(model.config, "vision_config", None) or model.config  # dual encoders: the image tower
        self.vision_config = cfg
        self.image_size = int(cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0])
        self.patch_size = int(cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0])
        self.grid = (self.image_size // self.patch_size, self.image_size // self.patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.norm_pix_loss = bool(getattr(cfg, "norm_pix_loss", False))
        self.device = device
        self.dtype = dtype
        self._mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self._sha: str | None = None

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The image encoder's transformer blocks, first to last."""
        raise NotImplementedError

    @property
    def head_modules(self) -> list:
        """Modules after the blocks that make the output (classifier, projection): randomised with the top blocks."""
        return []

    # ------------------------------------------------------------------ identity
    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            model_id=self.model_id, family=self.family, model_type=self.model.config.model_type,
            device=str(self.device), dtype=str(self.dtype).replace("torch.", ""), image_size=self.image_size,
            patch_size=self.patch_size, norm_pix_loss=self.norm_pix_loss, weights_sha256=self.weights_sha256,
        )


