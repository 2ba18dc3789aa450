"""Modalities of a multimodal MAE: their array shape, patch grid, (un)patchify and normalisation.

    rgb = Modality("rgb", "image", (64, 64, 3), (8, 8), mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25))
    tokens = rgb.patchify(x)          # (B, 64, 64, 3) → (B, 64, 192)
    x2 = rgb.unpatchify(tokens)       # and back, exactly

An array is its patch axes followed (for ``image`` / ``video``) by a channel axis: ``image (H, W, C)``,
``depth (H, W)``, ``video (T, H, W, C)``, ``spectrogram (mel bins, frames)``.  Patches tile the patch
axes row-major (time, then rows, then columns), each flattened as ``(patch axes..., channels)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import prod

import numpy as np
import torch

KINDS = ("image", "depth", "video", "spectrogram")


@dataclass(frozen=True)
class Modality:
    """One input stream.

    Attributes:
        name: key used everywhere (``"rgb"``, ``"depth"``, ``"video"``, ``"audio"``).
        kind: one of :data:`KINDS`.
        shape: the array shape one sample has (see the module docstring).
        patch: patch size along each patch axis (``len(patch)`` = number of patch axes).
        mean, std: normalisation per channel (one value for single-channel kinds).
        unit: what values mean, for labels (``"metres"``, ``"log mel power"``).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    patch: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    unit: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown modality kind {self.kind!r}; known: {', '.join(KINDS)}.")
        axes = self.shape[:len(self.patch)]
        if any(a % p for a, p in zip(axes, self.patch)):
            raise ValueError(f"{self.name}: shape {self.shape} is not a multiple of the patch {self.patch}.")

    @property
    def channels(self) -> int:
        return self.shape[-1] if len(self.shape) > len(self.patch) else 1

    @property
    def grid(self) -> tuple[int, ...]:
        """Patches along each patch axis, e.g. ``(8, 8)`` or ``(4, 6, 6)``."""
        return tuple(a // p for a, p in zip(self.shape, self.patch))

    @property
    def num_patches(self) -> int:
        return prod(self.grid)

    @property
    def patch_dim(self) -> int:
        return prod(self.patch) * self.channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Modality":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def _with_channels(self, x):
        return x[..., None] if len(self.shape) == len(self.patch) else x

    def check(self, x: np.ndarray | torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, *shape)``."""
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise ValueError(f"{self.name}: expected arrays of shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}.")

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *shape)`` → ``(B, num_patches, patch_dim)``."""
        self.check(x)
        x = self._with_channels(x)
        b, k = x.shape[0], len(self.patch)
        split = [b]
        for g, p in zip(self.grid, self.patch):
            split += [g, p]
        x = x.reshape(*split, self.channels)
        order = [0] + [1 + 2 * i for i in range(k)] + [2 + 2 * i for i in range(k)] + [1 + 2 * k]
        return x.permute(*order).reshape(b, self.num_patches, self.patch_dim)

    @staticmethod
    def unknown_patches(tokens: torch.Tensor) -> torch.Tensor:
        """``(..., N, D)`` patches → ``(..., N)`` bool: more than half the patch's values are unknown (NaN / inf).

        Such patches are never shown to the model (in training and in reconstruction alike)."""
        return (~torch.isfinite(tokens)).float().mean(-1) > 0.5

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, num_patches, patch_dim)`` → ``(B, *shape)`` (inverse of :meth:`patchify`)."""
        b, k = tokens.shape[0], len(self.patch)
        x = tokens.reshape(b, *self.grid, *self.patch, self.channels)
        order = [0]
        for i in range(k):
            order += [1 + i, 1 + k + i]
        x = x.permute(*order, 1 + 2 * k).reshape(b, *self.shape[:k], self.channels)
        return x.reshape(b, *self.shape)

    def _stats(self, like: torch.Tensor):
        m = torch.tensor(self.mean, dtype=like.dtype, device=like.device)
        s = torch.tensor(self.std, dtype=like.dtype, device=like.device)
        return m, s

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Values → model units (per channel ``(x - mean) / std``); NaN (unknown) stays NaN."""
        m, s = self._stats(x)
        return (self._with_channels(x) - m) / s if self.channels > 1 else (x - m[0]) / s[0]

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self._stats(x)
        return self._with_channels(x) * s + m if self.channels > 1 else x * s[0] + m[0]

    def patch_index(self, position: tuple[int, ...]) -> int:
        """Row-major token index of a patch given its grid coordinates."""
        return int(np.ravel_multi_index(position, self.grid))

    def unpatchify_mask(self, tokens: np.ndarray) -> np.ndarray:
        """``(N,)`` bool per patch → ``shape`` bool per value (each patch's flag spread over its values)."""
        t = torch.from_numpy(np.repeat(np.asarray(tokens, np.float32)[:, None], self.patch_dim, 1)[None])
        return self.unpatchify(t)[0].numpy() > 0.5
