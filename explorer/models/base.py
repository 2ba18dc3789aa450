"""What every image-model adapter shares: identity (id, weights' hash), input normalisation, geometry.

Family knowledge lives here and in the family files, never in compute code:

* :class:`~explorer.models.layout.TokenLayout` (in :mod:`.layout`) — where the patch tokens sit in the sequence (CLS / registers / distillation
  token / none, grid, input size), read from the checkpoint's config by the adapter;
* :class:`ImageAdapter` — what the attention views ask an adapter: the module to watch
  (:attr:`~ImageAdapter.attention_module`), the forward to show (:meth:`~ImageAdapter.attention_forward`),
  the scalar to explain (:meth:`~ImageAdapter.relevance_target`), what deletion / insertion curves
  score (:meth:`~ImageAdapter.faithfulness_scorer`) and caveats for the results (:attr:`~ImageAdapter.attention_notes`).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .layout import AttentionError, TokenLayout, pair  # noqa: F401 - re-exported: adapters and compute import them from here


#: one lock for every model: hook contexts (attention capture, interventions) hold it, and so does background work
#: while it runs a model.  Sub-modules and wrappers of one model share it, so a capture on ``model.vit`` and a forward
#: of ``model`` cannot interleave.
_MODEL_LOCK = threading.RLock()


def model_lock(module: "torch.nn.Module | None" = None) -> threading.RLock:
    """The lock held while hooks are on a model (attention capture, interventions) and by background work that runs
    one, so that a forward in one thread never passes through another thread's hooks.  (One lock for all models:
    ``module`` is accepted for readability at the call sites.)"""
    return _MODEL_LOCK


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
        """``target`` checked, or the top class of ``logits``' only row: a batch needs its class picked first."""
        if target is None and logits.shape[0] != 1:
            raise AttentionError(f"Which class to explain is ambiguous over a batch of {logits.shape[0]} inputs: pick it "
                                 "once on the real input (pick_target) and pass it as target.")
        t = int(logits[0].argmax()) if target is None else int(target)
        if not 0 <= t < logits.shape[-1]:
            raise AttentionError(f"Class {t} is out of range 0..{logits.shape[-1] - 1}.")
        return t

    def pick_target(self, x: torch.Tensor, target: "int | None" = None) -> "int | None":
        """The class explained for the real input ``x`` ``(1, ...)``, picked once: ``target`` (checked) or the predicted
        class; ``None`` for models without labels.  Methods that run the model on other points (integrated gradients'
        path, noisy copies, occluded copies) pass it to :meth:`relevance_target` so the class never changes on the way.
        """
        if not self.classifier:
            return None
        with torch.no_grad():
            return self._class(self.logits(x[:1]).float(), target)

    def relevance_target(self, x: torch.Tensor, target: "int | None" = None) -> torch.Tensor:
        """Normalised input ``(B, ...)`` → ``(B,)`` the scalar explained by relevance and the captum methods.

        Classifiers: the logit of ``target``; ``None`` = the predicted class of a single input (``B = 1``; for a batch
        pick it once with :meth:`pick_target`).  Other models (no labels): the output vector's length along its own
        direction (``target`` is ignored).
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

    #: how :meth:`faithfulness_scorer` can fill removed patches; the first is the default
    fills: "tuple[str, ...]" = ("mean", "blur")

    @property
    def default_fill(self) -> str:
        return self.fills[0]

    def fill_values(self, x: torch.Tensor, fill: str) -> torch.Tensor:
        """What removed patches of ``x`` (normalised, ``(1, 3, H, W)`` or video ``(1, T, 3, H, W)``) become.

        ``"mean"``: the input's mean colour (per channel; video: over the whole clip); ``"blur"``: a Gaussian
        blur of the input with sigma = one patch side (a patch's own detail is gone, its colour stays).
        Returns a tensor broadcastable to ``x``.
        """
        if fill == "mean":
            dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)  # all but the channel axis
            return x.mean(dim=dims, keepdim=True)
        if fill == "blur":
            import cv2

            a = x.detach().float().cpu().numpy()
            flat = a.reshape(-1, *a.shape[-3:]).transpose(0, 2, 3, 1)  # (N, H, W, 3)
            s = float(self.patch_size)
            out = np.stack([cv2.GaussianBlur(np.ascontiguousarray(f), (0, 0), sigmaX=s, sigmaY=s,
                                             borderType=cv2.BORDER_REFLECT) for f in flat])
            return torch.from_numpy(out.transpose(0, 3, 1, 2).reshape(a.shape)).to(x)
        raise AttentionError(f"Unknown fill {fill!r} for {type(self).__name__}; choose from {', '.join(self.fills)}.")

    def faithfulness_scorer(self, x: torch.Tensor, target: "int | None" = None, *, chunk: int = 8, fill: str = "mean"
                            ) -> "tuple[Callable[[np.ndarray], np.ndarray], str]":
        """``(f, what)``: ``f(keep (K, num_patches) bool) -> (K,)`` scores with only the kept patches present.

        Removed patches take :meth:`fill_values` (``fill``: ``"mean"`` colour or ``"blur"``).
        """
        score, what = self.faithfulness_score(x, target)
        values = self.fill_values(x, fill)

        def f(keep):
            keep = torch.as_tensor(np.asarray(keep, bool), device=x.device)
            out = []
            with torch.no_grad():
                for s in range(0, len(keep), chunk):
                    m = self.layout.pixel_mask(keep[s : s + chunk]).to(x.dtype)
                    out.append(score(x * m + values * (1 - m)).float().cpu().numpy())
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
