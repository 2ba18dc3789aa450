"""Where the patch tokens sit in a vision transformer's sequence (:class:`TokenLayout`), read from a config.

CLS / register / distillation tokens or none (VideoMAE), then the patches in raster order over a ``(gh, gw)`` or
``(t, gh, gw)`` grid; the adapter builds its layout from the checkpoint's config and compute reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class AttentionError(RuntimeError):
    """The model exposes no attention the explorer can capture, or an index / query token is out of range.

    Defined next to :class:`TokenLayout` (which raises it for bad queries); :mod:`explorer.attention` re-exports it.
    """


def pair(value) -> tuple[int, int]:
    """A config size (``224``, ``[224]``, ``[32, 48]``, ``(32, 48)``) → ``(H, W)``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    v = tuple(int(x) for x in value)
    if len(v) == 1:
        return v[0], v[0]
    if len(v) != 2:
        raise ValueError(f"Expected a size or an (height, width) pair, got {value!r}.")
    return v


@dataclass(frozen=True)
class TokenLayout:
    """Where the patch tokens are in a vision transformer's sequence: ``prefix`` tokens, then the patches in raster
    order (video: time step, row, column).

    Attributes:
        prefix: tokens before the patches: 1 for ViT / ViTMAE / CLIP (CLS), 2 for DeiT (CLS + distillation),
            ``1 + R`` for DINOv2 with ``R`` registers, 0 for VideoMAE.
        grid: ``(gh, gw)`` patch grid, or ``(t, gh, gw)`` for video tubelets; any shape for your own modules
            (``(T,)`` when nothing is known).
        names: the prefix tokens' names, ``len(names) == prefix``: ``("cls",)``, ``("cls", "dist")``,
            ``("cls", "reg0", ..., "reg3")``; default ``("cls",)`` for one prefix token.
        image_size: ``(H, W)`` input pixels (one frame for video); ``None`` when the input is not an image.
        patch_size: ``p`` pixels per patch side (1 when unknown).
        tubelet: frames per token (video), 1 for images.

    A query is a prefix name (``"cls"``, ``"reg0"``, ``"dist"``; any case), ``"mean"`` (the average over all
    query tokens, for models without a CLS token), a flat patch index, or grid coordinates (``(row, col)`` /
    ``(t, row, col)``).
    """

    prefix: int
    grid: tuple
    names: "tuple[str, ...] | None" = None
    image_size: "tuple[int, int] | None" = None
    patch_size: int = 1
    tubelet: int = 1

    def __post_init__(self):
        object.__setattr__(self, "prefix", int(self.prefix))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        names = self.names
        if names is None:
            names = ("cls",) if self.prefix == 1 else tuple(f"prefix{i}" for i in range(self.prefix))
        names = tuple(str(n) for n in names)
        if len(names) != self.prefix:
            raise ValueError(f"{self.prefix} prefix tokens need {self.prefix} names, got {names}.")
        object.__setattr__(self, "names", names)
        if self.image_size is not None:
            object.__setattr__(self, "image_size", pair(self.image_size))

    # ------------------------------------------------------------------ reading a config
    @classmethod
    def from_config(cls, cfg, names: "tuple[str, ...]" = ("cls",), *, frames: "int | None" = None,
                    tubelet: int = 1) -> "TokenLayout":
        """The layout of a transformers vision config (``image_size``, ``patch_size``; ``frames`` for video).

        Raises:
            ValueError: patches that are not square or that do not tile the image.
        """
        H, W = pair(cfg.image_size)
        ph, pw = pair(cfg.patch_size)
        if ph != pw:
            raise ValueError(f"Non-square patches ({ph}x{pw}) are not supported.")
        if H % ph or W % pw:
            raise ValueError(f"The image size {H}x{W} is not a multiple of the patch size {ph}.")
        grid = (H // ph, W // pw)
        if frames is not None:
            if frames % tubelet:
                raise ValueError(f"{frames} frames do not split into tubelets of {tubelet}.")
            grid = (frames // tubelet, *grid)
        return cls(len(names), grid, tuple(names), (H, W), ph, tubelet)

    # ------------------------------------------------------------------ compatibility names
    @property
    def n_prefix(self) -> int:
        """Same as :attr:`prefix`."""
        return self.prefix

    @property
    def prefix_names(self) -> "tuple[str, ...]":
        """Same as :attr:`names`."""
        return self.names

    # ------------------------------------------------------------------ geometry
    @property
    def num_patches(self) -> int:
        return int(np.prod(self.grid))

    @property
    def num_tokens(self) -> int:
        return self.prefix + self.num_patches

    @property
    def is_video(self) -> bool:
        """A ``(t, gh, gw)`` grid of tubelets over frames."""
        return self.image_size is not None and len(self.grid) == 3

    @property
    def num_frames(self) -> int:
        """Frames per clip (video), 1 for images."""
        return self.grid[0] * self.tubelet if self.is_video else 1

    @property
    def default_query(self) -> str:
        """``"cls"`` where there is a CLS token, else ``"mean"``."""
        return "cls" if "cls" in (n.lower() for n in self.names) else "mean"

    # ------------------------------------------------------------------ queries
    def token(self, query) -> int:
        """Token index of ``query`` (not ``"mean"``).

        Raises:
            AttentionError: an unknown prefix name, a patch outside the grid.
        """
        if isinstance(query, str):
            names = [n.lower() for n in self.names]
            if query.lower() in names:
                return names.index(query.lower())
            hint = " Use query='mean' (all tokens) or a patch." if not self.names else ""
            raise AttentionError(f"Unknown query token {query!r}; this model's prefix tokens are "
                                 f"{list(self.names) or 'none'}.{hint}")
        if isinstance(query, (tuple, list)):
            if len(query) != len(self.grid):
                raise AttentionError(f"A patch of this model has {len(self.grid)} coordinates {self.grid}, got {tuple(query)}.")
            coords = tuple(int(v) for v in query)
            if any(not 0 <= c < g for c, g in zip(coords, self.grid)):
                raise AttentionError(f"Patch {coords} is outside the {'x'.join(map(str, self.grid))} patch grid.")
            return self.prefix + int(np.ravel_multi_index(coords, self.grid))
        i = int(query)
        if not 0 <= i < self.num_patches:
            raise AttentionError(f"Patch index {i} is outside 0..{self.num_patches - 1}.")
        return self.prefix + i

    def row(self, matrix: np.ndarray, query) -> np.ndarray:
        """The ``(T,)`` row of a ``(..., T, T)`` matrix for ``query`` (``"mean"`` averages all rows)."""
        if isinstance(query, str) and query.lower() == "mean":
            return matrix.mean(-2)
        return matrix[..., self.token(query), :]

    def patch_map(self, row: np.ndarray) -> np.ndarray:
        """A ``(T,)`` row over tokens → ``grid``-shaped map over the patches (prefix tokens dropped)."""
        row = np.asarray(row)
        if row.shape[-1] != self.num_tokens:
            raise AttentionError(f"A row of {row.shape[-1]} tokens does not fit this layout "
                                 f"({self.prefix} prefix + {self.num_patches} patches).")
        return np.asarray(row[..., self.prefix :], dtype=np.float32).reshape(*row.shape[:-1], *self.grid)

    def pixel_mask(self, keep: torch.Tensor) -> torch.Tensor:
        """``(K, num_patches)`` bool per patch → per-pixel float mask: ``(K, 1, H, W)`` for images,
        ``(K, T, 1, H, W)`` for video (the shapes of normalised inputs)."""
        if self.image_size is None:
            raise AttentionError("This layout has no image: patches cannot be turned into pixels.")
        p = self.patch_size
        k = keep.reshape(len(keep), *self.grid)
        k = k.repeat_interleave(p, -2).repeat_interleave(p, -1)
        if self.is_video:
            return k.repeat_interleave(self.tubelet, 1)[:, :, None].float()
        return k[:, None].float()
