"""What every image-model adapter shares: identity (id, weights' hash), input normalisation, geometry.

Family knowledge lives here and in the family files, never in compute code:

* :class:`TokenLayout` — where the patch tokens sit in the sequence (CLS / registers / distillation
  token / none, grid, input size), read from the checkpoint's config by the adapter;
* :class:`ImageAdapter` — what the attention views ask an adapter: the module to watch
  (:attr:`~ImageAdapter.attention_module`), the forward to show (:meth:`~ImageAdapter.attention_forward`),
  the scalar to explain (:meth:`~ImageAdapter.relevance_target`), what deletion / insertion curves
  score (:meth:`~ImageAdapter.faithfulness_scorer`) and caveats for the results (:attr:`~ImageAdapter.attention_notes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

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
    image_size: "int | tuple[int, int]"  # the side, or (H, W) for a non-square input
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


def own_length(e: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` → ``(B,)``: each vector's length along its own (fixed) direction, the target of models without labels."""
    e = e.float()
    return (e * e.detach()).sum(-1) / e.detach().norm(dim=-1).clamp_min(1e-6)


class PixelModel(HashedWeights):
    """What every image adapter shares: the weights' identity and image normalisation.

    Needs ``model``, ``image_size`` (side or ``(H, W)``), ``device``, ``dtype``, ``_mean`` / ``_std`` ``(1, 3, 1, 1)``
    and ``_sha``.
    """

    #: raised when an image has the wrong shape
    shape_error: type = ValueError

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return pair(self.image_size)

    def normalise(self, images: np.ndarray) -> torch.Tensor:
        """``(B, H, W, 3)`` or ``(H, W, 3)`` float in [0, 1] → normalised ``(B, 3, H, W)`` on the device."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.ndim == 3:
            x = x[None]
        H, W = self.input_size
        if tuple(x.shape[1:]) != (H, W, 3):
            raise self.shape_error(f"Expected images of shape (B, {H}, {W}, 3), got {tuple(x.shape)}.")
        x = (x.permute(0, 3, 1, 2) - self._mean) / self._std
        return x.to(self.device, self.dtype)


class ImageAdapter(PixelModel):
    """A transformers vision model cut into ``p x p`` patches, and what the attention views need to know of it.

    Attributes:
        model: the transformers module (eval mode).
        layout: :class:`TokenLayout` read from the config (prefix tokens, grid, input size).
        image_size: ``S``, the input side in pixels, or ``(H, W)`` for a non-square input.
        patch_size: ``p``.
        grid: ``(gh, gw) = (H / p, W / p)``, the spatial patch grid.
        num_patches: ``L = gh * gw``.
        image_mean, image_std: ``(3,)`` normalisation of the checkpoint's image processor.

    Subclasses say what their family is: :meth:`prefix_names` (the tokens before the patches), :attr:`blocks`,
    :attr:`attention_module`, and :meth:`logits` (classifiers, ``classifier = True``) or :meth:`embedding`
    (everything else).
    """

    family = "image"
    #: the masked reconstruction this model can do from visible patches: ``"image"``, ``"video"`` or ``None``
    reconstructs: "str | None" = None
    #: transformers' implementation of this family works with square inputs only
    square_only = False
    #: the model has class logits (:meth:`logits`); otherwise targets come from :meth:`embedding`
    classifier = False
    #: what :meth:`embedding` returns, in words (faithfulness curves are labelled with it)
    embedding_name = "CLS output"

    def __init__(self, model, *, model_id: str, image_mean, image_std, device: torch.device, dtype: torch.dtype):
        self.model = model.eval()
        self.model_id = model_id
        cfg = getattr(model.config, "vision_config", None) or model.config  # dual encoders: the image tower
        self.vision_config = cfg
        self.layout = self.read_layout(cfg)
        H, W = self.layout.image_size
        if self.square_only and H != W:
            raise ValueError(f"transformers' {type(model).__name__} works with square images only; this config has "
                             f"image_size {H}x{W}.")
        self.image_size = H if H == W else (H, W)
        self.patch_size = self.layout.patch_size
        self.grid = tuple(self.layout.grid[-2:])
        self.num_patches = self.grid[0] * self.grid[1]
        self.norm_pix_loss = bool(getattr(cfg, "norm_pix_loss", False))
        self.device = device
        self.dtype = dtype
        self._mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self._sha: str | None = None

    # ------------------------------------------------------------------ layout
    def prefix_names(self, cfg) -> "tuple[str, ...]":
        """Names of the tokens before the patches, from the config (default: one CLS token)."""
        return ("cls",)

    def read_layout(self, cfg) -> TokenLayout:
        """The :class:`TokenLayout` of this checkpoint (images; video adapters add time)."""
        return TokenLayout.from_config(cfg, self.prefix_names(cfg))

    @property
    def num_layers(self) -> int:
        """Encoder blocks whose attention the views show."""
        return len(self.blocks)

    @property
    def num_heads(self) -> int:
        return int(self.vision_config.num_attention_heads)

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The image encoder's transformer blocks, first to last."""
        raise NotImplementedError

    @property
    def head_modules(self) -> list:
        """Modules after the blocks that make the output (classifier, projection): randomised with the top blocks."""
        return []

    # ------------------------------------------------------------------ what the attention views ask
    @property
    def attention_module(self) -> torch.nn.Module:
        """The module whose attention calls are captured (the image encoder; not a decoder)."""
        return self.model

    @property
    def attention_notes(self) -> "tuple[str, ...]":
        """Caveats every attention result of this model carries (e.g. which forward was shown)."""
        return ()

    def normalise_input(self, pixels: np.ndarray) -> torch.Tensor:
        """Fitted pixels (``(H, W, 3)`` image; video adapters take ``(T, H, W, 3)`` frames) → normalised model input."""
        return self.normalise(pixels)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input → class logits ``(B, C)`` (classifiers only)."""
        raise AttentionError(f"{type(self.model).__name__} has no classifier head.")

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input → ``(B, D)`` output vector (models without labels)."""
        raise NotImplementedError

    def _class(self, logits: torch.Tensor, target: "int | None") -> int:
        t = int(logits[0].argmax()) if target is None else int(target)
        if not 0 <= t < logits.shape[-1]:
            raise AttentionError(f"Class {t} is out of range 0..{logits.shape[-1] - 1}.")
        return t

    def relevance_target(self, x: torch.Tensor, target: "int | None" = None) -> torch.Tensor:
        """Normalised input ``(B, ...)`` → ``(B,)`` the scalar explained by relevance and integrated gradients.

        Classifiers: the logit of ``target`` (default: the predicted class).  Other models (no labels): the output
        vector's length along its own direction (``target`` is ignored).
        """
        if self.classifier:
            logits = self.logits(x).float()
            return logits[:, self._class(logits, target)]
        return own_length(self.embedding(x))

    def attention_forward(self, x: torch.Tensor):
        """The forward whose attention the views show (default: the one :meth:`relevance_target` runs)."""
        return self.relevance_target(x)

    def faithfulness_score(self, x: torch.Tensor, target: "int | None" = None) -> "tuple[Callable, str]":
        """``(score, what)``: ``score(xs) -> (B,)`` for inputs like ``x``, and what it is in words.

        Classifiers: the logit of ``target`` (default: the class predicted for ``x``); others: the cosine
        similarity of :meth:`embedding` to ``x``'s.
        """
        with torch.no_grad():
            if self.classifier:
                t = self._class(self.logits(x), target)
                return (lambda xs: self.logits(xs)[:, t]), f"logit of class {t}"
            ref = self.embedding(x).float()
        whole = "clip" if self.layout.is_video else "image"
        return (lambda xs: torch.nn.functional.cosine_similarity(self.embedding(xs).float(), ref.expand(len(xs), -1))), \
            f"cosine similarity of the {self.embedding_name} to the full {whole}'s"

    def faithfulness_scorer(self, x: torch.Tensor, target: "int | None" = None, *, chunk: int = 8
                            ) -> "tuple[Callable[[np.ndarray], np.ndarray], str]":
        """``(f, what)``: ``f(keep (K, num_patches) bool) -> (K,)`` scores with only the kept patches present.

        Removed patches take the input's mean colour (per channel; video: over the whole clip).
        """
        score, what = self.faithfulness_score(x, target)
        dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)  # all but the channel axis
        fill = x.mean(dim=dims, keepdim=True)

        def f(keep):
            keep = torch.as_tensor(np.asarray(keep, bool), device=x.device)
            out = []
            with torch.no_grad():
                for s in range(0, len(keep), chunk):
                    m = self.layout.pixel_mask(keep[s : s + chunk]).to(x.dtype)
                    out.append(score(x * m + fill * (1 - m)).float().cpu().numpy())
            return np.concatenate(out)

        return f, what

    # ------------------------------------------------------------------ identity
    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            model_id=self.model_id, family=self.family, model_type=self.model.config.model_type,
            device=str(self.device), dtype=str(self.dtype).replace("torch.", ""), image_size=self.image_size,
            patch_size=self.patch_size, norm_pix_loss=self.norm_pix_loss, weights_sha256=self.weights_sha256,
        )
