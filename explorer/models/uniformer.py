"""UniFormer (Li et al., ICLR 2022 / TPAMI 2023; Sense-X): local relation aggregation in the shallow stages, global
self-attention in the deep ones — images (2-D) and video (3-D), in the authors' checkpoint layout.

A UniFormer has four stages, each opened by a patch embedding that shrinks the token grid (÷4, then ÷2 three times)
and widens the channels.  Every block adds a depth-wise convolution of its input ("dynamic position encoding") and
then aggregates relations between tokens:

* **local** stages (1 and 2): the token affinity is a learned depth-wise kernel over a small neighbourhood
  (5×5, or 5×5×5 in video) between two 1×1 convolutions, after batch norm — the same kernel for every position,
  one per channel;
* **global** stages (3 and 4): multi-head self-attention over every token of the stage, after layer norm;

each followed by an MLP (1×1 convolutions in local blocks, linear layers in global ones).  The classifier averages
the last stage's tokens after a final batch norm.

Loading: :func:`explorer.load_uniformer_model` with the authors' file (``uniformer_small_in1k.pth``,
``uniformer_base_k400_8x8.pth``…, read with ``weights_only=True``; recognised by :data:`FORMATS`), or a folder of our
own (``config.json`` with model_type ``"uniformer"`` + ``model.safetensors`` in the same key layout), e.g. the shipped
``mini-uniformer``.  The architecture is read off the weights' names and shapes (stage depths and widths, MLP ratio,
2-D or 3-D, plain or convolutional stem, the 3-frame "std" patch embeddings, layer scale, token-labeling head); only
the attention head width is not in the weights, see :func:`infer_config`.

What a view asks of :class:`UniFormerAdapter`::

    uf = explorer.load_uniformer_model("mini-uniformer")
    uf.stage_kinds                      # ("local", "local", "global", "global")
    uf.token_grids()                    # [(16, 16), (8, 8), (4, 4), (2, 2)]  (video: (T, H, W) per stage)
    out = uf.run(images)                # logits, class probabilities, stage features, global attention maps
    out.attentions["blocks3.0"]         # (B, heads, N, N) softmax probabilities, N = tokens of stage 3
    uf.local_kernels(1, 0)              # (C, 5, 5) depth-wise token-affinity kernels of blocks1.0
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import HashedWeights, ModelInfo
from .checkpoint_file import CheckpointFormat, strict_load
from .hub import IMAGENET_MEAN, IMAGENET_STD, ModelLoadError, read_folder_weights, read_json

#: The kinds of the four stages: depth-wise convolution affinity, then self-attention.
STAGE_KINDS = ("local", "local", "global", "global")

#: Video normalisation of the authors' SlowFast configs (``DATA.MEAN`` / ``DATA.STD``).
VIDEO_MEAN = (0.45, 0.45, 0.45)
VIDEO_STD = (0.225, 0.225, 0.225)


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class UniFormerConfig:
    """A UniFormer's architecture (everything but the head width is read off a checkpoint's shapes).

    Attributes:
        depths: blocks per stage, e.g. ``(3, 4, 8, 3)`` (UniFormer-S) or ``(5, 8, 20, 7)`` (-B).
        dims: channels per stage, e.g. ``(64, 128, 320, 512)``.
        head_dim: channels per attention head (heads per stage = dim // head_dim).
        mlp_ratio: MLP hidden width / channels.
        num_classes: classifier outputs (0: no classifier).
        video: 3-D (``(B, 3, T, H, W)`` input) instead of 2-D.
        conv_stem: overlapping 3×3 stride-2 convolution stems (UniFormer-S†) instead of non-overlapping patches.
        patch_size: the first stage's spatial patch (4; the stem halves twice instead).
        local_kernel: side of the local affinity kernel (5).
        pos_kernel: side of the position-encoding kernel (3).
        video_std: video only: 3-frame kernels in the patch embeddings of stages 2-4 (``UNIFORMER.STD``).
        temporal_stride: video only: frames per step of the first patch embedding (2).
        layer_scale: learned per-channel scales on the global blocks' residual branches.
        local_layer_scale: the same on the local blocks (token-labeling models with layer scale).
        aux_head: the token-labeling models' per-token classifier (logits = head(mean) + 0.5 · max over tokens).
        qkv_bias: bias on the attention's q, k, v projection.
        image_size: the input side the weights were trained at (224); any multiple of 32 runs.
        num_frames: video only: frames per clip the weights were trained on.
        image_mean, image_std: per-channel input normalisation.
        labels: class names (index → name), when known.
    """

    depths: tuple[int, ...] = (3, 4, 8, 3)
    dims: tuple[int, ...] = (64, 128, 320, 512)
    head_dim: int = 64
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    video: bool = False
    conv_stem: bool = False
    patch_size: int = 4
    local_kernel: int = 5
    pos_kernel: int = 3
    video_std: bool = False
    temporal_stride: int = 2
    layer_scale: bool = False
    local_layer_scale: bool = False
    aux_head: bool = False
    qkv_bias: bool = True
    image_size: int = 224
    num_frames: int = 16
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    labels: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if len(self.depths) != 4 or len(self.dims) != 4:
            raise ValueError(f"A UniFormer has 4 stages; got depths {self.depths} and dims {self.dims}.")
        for d in self.dims[2:]:
            if d % self.head_dim:
                raise ValueError(f"Stage width {d} is not a multiple of the head width {self.head_dim}.")
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.num_classes} classes.")

    @property
    def heads(self) -> tuple[int, ...]:
        """Attention heads per stage (dim // head_dim; the local stages' head count only groups channels)."""
        return tuple(max(1, d // self.head_dim) for d in self.dims)

    def to_dict(self) -> dict:
        """The ``config.json`` form (with ``model_type: "uniformer"``)."""
        d = asdict(self)
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
        return {"model_type": "uniformer", **d}

    @classmethod
    def from_dict(cls, d: dict) -> "UniFormerConfig":
        """From a ``config.json`` dict (unknown keys are refused by name)."""
        d = {k: v for k, v in d.items() if k not in ("model_type", "architectures")}
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"config.json has keys a UniFormer does not read: {', '.join(extra)}.")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


# ---------------------------------------------------------------------------------------------- modules
def _conv(video: bool):
    return nn.Conv3d if video else nn.Conv2d


def _bn(video: bool, c: int):
    return nn.BatchNorm3d(c) if video else nn.BatchNorm2d(c)


def _same(k: int, video: bool, kt: int | None = None) -> dict:
    """Stride-1, size-keeping convolution arguments for a ``k``-sided (``kt`` frames) kernel."""
    if video:
        kt = k if kt is None else kt
        return {"kernel_size": (kt, k, k), "padding": (kt // 2, k // 2, k // 2)}
    return {"kernel_size": k, "padding": k // 2}


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, *grid)`` map (the patch embeddings' norm)."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(c, eps=eps)

    def forward(self, x):
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class PatchMerge(nn.Module):
    """Non-overlapping patch embedding: a strided convolution, then LayerNorm over channels.

    Keys: ``proj.weight``, ``proj.bias``, ``norm.weight``, ``norm.bias``.
    """

    def __init__(self, cin: int, cout: int, patch: int, *, video: bool, frames: int = 1, time_stride: int = 1):
        super().__init__()
        if video:
            self.proj = nn.Conv3d(cin, cout, (frames, patch, patch), (time_stride, patch, patch), (frames // 2, 0, 0))
        else:
            self.proj = nn.Conv2d(cin, cout, patch, patch)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        x = self.proj(x)
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class ConvStem(nn.Module):
    """Overlapping embedding (UniFormer-S†): 3×3 stride-2 convolutions with batch norm (two with a GELU between in the
    first stage, one in the others).  Keys: ``proj.0`` conv, ``proj.1`` BN[, ``proj.3`` conv, ``proj.4`` BN]."""

    def __init__(self, cin: int, cout: int, *, first: bool):
        super().__init__()
        if first:
            mid = cout // 2
            self.proj = nn.Sequential(nn.Conv2d(cin, mid, 3, 2, 1), nn.BatchNorm2d(mid), nn.GELU(),
                                      nn.Conv2d(mid, cout, 3, 2, 1), nn.BatchNorm2d(cout))
        else:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.proj(x)


class ConvMlp(nn.Module):
    """Point-wise MLP on a ``(B, C, *grid)`` map: 1×1 conv, GELU, 1×1 conv (keys ``fc1``, ``fc2``)."""

    def __init__(self, c: int, hidden: int, video: bool):
        super().__init__()
        conv = _conv(video)
        self.fc1 = conv(c, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = conv(hidden, c, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TokenMlp(nn.Module):
    """MLP on ``(B, N, C)`` tokens: linear, GELU, linear (keys ``fc1``, ``fc2``)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class LocalBlock(nn.Module):
    """Local relation aggregation (the paper's local MHRA) on a ``(B, C, *grid)`` map.

    ``x += dw_pos(x)``; ``x += γ₁ · conv2(affinity(conv1(BN(x))))`` with ``affinity`` a depth-wise ``k×k`` (``k×k×k``)
    convolution: each output token is a fixed, learned, position-relative weighting of its neighbours, one kernel per
    channel; ``x += γ₂ · mlp(BN(x))``.  Keys: ``pos_embed``, ``norm1``, ``conv1``, ``attn`` (the affinity kernels),
    ``conv2``, ``norm2``, ``mlp.fc1/fc2`` [, ``gamma_1``, ``gamma_2`` of shape ``(1, C, 1, 1)``].
    """

    kind = "local"

    def __init__(self, c: int, cfg: UniFormerConfig):
        super().__init__()
        conv, v = _conv(cfg.video), cfg.video
        self.pos_embed = conv(c, c, groups=c, **_same(cfg.pos_kernel, v))
        self.norm1 = _bn(v, c)
        self.conv1 = conv(c, c, 1)
        self.attn = conv(c, c, groups=c, **_same(cfg.local_kernel, v))
        self.conv2 = conv(c, c, 1)
        self.norm2 = _bn(v, c)
        self.mlp = ConvMlp(c, int(c * cfg.mlp_ratio), v)
        if cfg.local_layer_scale:
            shape = (1, c, 1, 1, 1) if v else (1, c, 1, 1)
            self.gamma_1 = nn.Parameter(torch.ones(shape))
            self.gamma_2 = nn.Parameter(torch.ones(shape))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x):
        x = x + self.pos_embed(x)
        y = self.conv2(self.attn(self.conv1(self.norm1(x))))
        x = x + (y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + (y if self.gamma_2 is None else self.gamma_2 * y)


class GlobalAttention(nn.Module):
    """Multi-head self-attention over ``(B, N, C)`` tokens (keys ``qkv``, ``proj``).

    Runs through ``F.scaled_dot_product_attention`` (so :class:`explorer.attention.capture.AttentionCapture` sees it),
    or, while :attr:`sink` is set, computes the probabilities explicitly and hands ``(B, heads, N, N)`` to it.
    """

    def __init__(self, c: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.scale = (c // heads) ** -0.5
        self.qkv = nn.Linear(c, 3 * c, bias=qkv_bias)
        self.proj = nn.Linear(c, c)
        self.sink = None

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if self.sink is None:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            probs = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            self.sink(probs)
            out = probs @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class GlobalBlock(nn.Module):
    """Global relation aggregation (self-attention) on a ``(B, C, *grid)`` map.

    ``x += dw_pos(x)``; tokens ``t = flatten(x)`` ``(B, N, C)``; ``t += γ₁ · attn(LN(t))``; ``t += γ₂ · mlp(LN(t))``.
    Keys: ``pos_embed``, ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1/fc2`` [, ``gamma_1``,
    ``gamma_2`` of shape ``(C,)``].
    """

    kind = "global"

    def __init__(self, c: int, heads: int, cfg: UniFormerConfig):
        super().__init__()
        self.pos_embed = _conv(cfg.video)(c, c, groups=c, **_same(cfg.pos_kernel, cfg.video))
        self.norm1 = nn.LayerNorm(c, eps=1e-6)
        self.attn = GlobalAttention(c, heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(c, eps=1e-6)
        self.mlp = TokenMlp(c, int(c * cfg.mlp_ratio))
        if cfg.layer_scale:
            self.gamma_1 = nn.Parameter(torch.ones(c))
            self.gamma_2 = nn.Parameter(torch.ones(c))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x):
        x = x + self.pos_embed(x)
        shape = x.shape
        t = x.flatten(2).transpose(1, 2)
        y = self.attn(self.norm1(t))
        t = t + (y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(t))
        t = t + (y if self.gamma_2 is None else self.gamma_2 * y)
        return t.transpose(1, 2).reshape(shape)


class UniFormer(nn.Module):
    """The network: ``patch_embed{1..4}`` each followed by ``blocks{1..4}``, then ``norm`` (batch norm), the mean over
    tokens and ``head`` (plus ``aux_head`` for token-labeling models).

    Input: image ``(B, 3, H, W)`` or video ``(B, 3, T, H, W)``, normalised.  Output: logits ``(B, num_classes)``.
    """

    def __init__(self, cfg: UniFormerConfig):
        super().__init__()
        self.cfg = cfg
        d, v = cfg.dims, cfg.video
        cins = (3,) + tuple(d[:3])
        for s in range(4):
            if cfg.conv_stem:
                embed = ConvStem(cins[s], d[s], first=s == 0)
            elif s == 0:
                embed = PatchMerge(3, d[0], cfg.patch_size, video=v, frames=3 if v else 1,
                                   time_stride=cfg.temporal_stride)
            else:
                embed = PatchMerge(cins[s], d[s], 2, video=v, frames=3 if cfg.video_std else 1)
            setattr(self, f"patch_embed{s + 1}", embed)
            blocks = [LocalBlock(d[s], cfg) if STAGE_KINDS[s] == "local" else GlobalBlock(d[s], cfg.heads[s], cfg)
                      for _ in range(cfg.depths[s])]
            setattr(self, f"blocks{s + 1}", nn.ModuleList(blocks))
        self.norm = _bn(v, d[3])
        self.head = nn.Linear(d[3], cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        if cfg.aux_head:
            self.aux_head = nn.Linear(d[3], cfg.num_classes)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output map: ``[(B, C_s, *grid_s)]`` for s = 1..4 (the last before ``norm``)."""
        out = []
        for s in range(1, 5):
            x = getattr(self, f"patch_embed{s}")(x)
            for blk in getattr(self, f"blocks{s}"):
                x = blk(x)
            out.append(x)
        return out

    def classify(self, last: torch.Tensor) -> torch.Tensor:
        """Last stage map ``(B, C, *grid)`` → logits ``(B, K)``."""
        tokens = self.norm(last).flatten(2).transpose(1, 2)  # (B, N, C)
        logits = self.head(tokens.mean(1))
        if self.cfg.aux_head:
            logits = logits + 0.5 * self.aux_head(tokens).max(1).values
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.stages(x)[-1])


# ---------------------------------------------------------------------------------------------- reading a state dict
_KEY = re.compile(r"^blocks([1-4])\.(\d+)\.")

#: Head widths of the published models (not recoverable from the weights, which hold q, k, v side by side).
PUBLISHED_HEAD_DIMS = {
    "uniformer_small / _base / _base_ls (ImageNet-1K), every video model, uniformer_large_ls (token labeling), *_dim64": 64,
    "uniformer_small_plus (ImageNet-1K), uniformer_small / _small_plus / _base with token labeling": 32,
}


def _is_uniformer(state: dict, ndim: int) -> bool:
    w = state.get("blocks1.0.attn.weight")
    return (w is not None and w.ndim == ndim and w.shape[1] == 1 and "norm.running_mean" in state
            and any(k.startswith("patch_embed4.") for k in state) and any(k.startswith("blocks4.0.") for k in state))


def claims_image(state: dict) -> bool:
    """Whether ``state`` has UniFormer's 2-D key layout (depth-wise ``blocks1.0.attn`` conv, four stages)."""
    return _is_uniformer(state, 4)


def claims_video(state: dict) -> bool:
    """Whether ``state`` has UniFormer's 3-D (video) key layout."""
    return _is_uniformer(state, 5)


def _frames_from_name(name: str, default: int = 16) -> int:
    m = re.search(r"_(8|16|32)x\d+|_(8|16|32)_", name)
    return int(m.group(1) or m.group(2)) if m else default


def infer_config(state: dict[str, torch.Tensor], *, name: str = "") -> tuple[UniFormerConfig, str]:
    """The architecture of a checkpoint in the authors' layout, read off its key names and shapes.

    Depths (block indices), widths (``patch_embed{s}`` outputs), MLP ratio (``mlp.fc1`` rows / width), 2-D or 3-D
    (rank of the depth-wise kernels), stem (``patch_embed1.proj.0`` = convolutional), ``video_std`` (3-frame kernels in
    ``patch_embed2``), layer scale (``gamma_1``), token labeling (``aux_head``), qkv bias, classes (``head``).

    The head width is not in the weights.  It is taken from the published model the checkpoint matches, using the file
    ``name`` where the weights alone cannot tell (see :data:`PUBLISHED_HEAD_DIMS`): ``"dim<N>"`` in the name → N (the
    authors name their re-trained head_dim=64 files ``*_dim64*``; rename a file to say its width); else 32 for the
    token-labeling models without layer scale and for the convolutional-stem UniFormer-S†; else 64.

    Returns:
        ``(config, how)``: ``how`` says in words where the head width came from.
    Raises:
        ModelLoadError: a UniFormer variant this module does not implement (named) or inconsistent shapes.
    """
    keys = set(state)
    video = state["blocks1.0.attn.weight"].ndim == 5
    what = Path(name).name or "the checkpoint"
    if any(k.startswith(("cls_token", "head_cls", "norm_cls", "cls_upsample")) for k in keys):
        raise ModelLoadError(f"{what} is a lightweight UniFormer (UniFormer-XXS / -XS: class token, token pruning; keys "
                             "cls_token, head_cls …); only UniFormer-S / -S† / -B / -L are supported.")
    split = sorted(k for k in keys if ".t_attn." in k or ".t_norm." in k)
    if split:
        raise ModelLoadError(f"{what} uses divided space-time attention (SplitSABlock: keys {', '.join(split[:3])} …), "
                             "which no published UniFormer checkpoint uses; it is not supported.")
    depths = []
    for s in range(1, 5):
        idx = {int(m.group(2)) for k in keys if (m := _KEY.match(k)) and m.group(1) == str(s)}
        if not idx or idx != set(range(max(idx) + 1)):
            raise ModelLoadError(f"{what}: the blocks of stage {s} are missing or not numbered 0..n-1 "
                                 f"(found blocks{s}.{sorted(idx)}).")
        depths.append(max(idx) + 1)
    conv_stem = "patch_embed1.proj.0.weight" in keys
    if conv_stem and video:
        raise ModelLoadError(f"{what}: a video UniFormer with a convolutional stem is not a published model.")
    dims = []
    for s in range(1, 5):
        w = state.get(f"patch_embed{s}.proj.{'3' if s == 1 else '0'}.weight" if conv_stem else f"patch_embed{s}.proj.weight")
        if w is None:
            raise ModelLoadError(f"{what}: no patch embedding weight for stage {s}.")
        dims.append(int(w.shape[0]))
    fc1 = state["blocks1.0.mlp.fc1.weight"]
    mlp_ratio = fc1.shape[0] / dims[0]
    head = state.get("head.weight")
    num_classes = int(head.shape[0]) if head is not None else 0
    pe1 = state["patch_embed1.proj.weight"] if not conv_stem else None
    layer_scale = "blocks3.0.gamma_1" in keys or "blocks4.0.gamma_1" in keys
    aux = "aux_head.weight" in keys
    low = what.lower()
    named = re.search(r"dim(\d+)", low)
    if named and int(named.group(1)) > 0:
        head_dim = int(named.group(1))
        how = f"{head_dim}: 'dim{head_dim}' in the file name"
    elif aux and not layer_scale:
        head_dim, how = 32, ("32: a token-labeling UniFormer-S / -S† / -B (published with head_dim 32; the re-trained "
                             "'_dim64' files have 'dim64' in their names)")
    elif conv_stem and not aux:
        head_dim, how = 32, "32: UniFormer-S† (uniformer_small_plus, published with head_dim 32)"
    else:
        head_dim, how = 64, "64: the published value for this layout"
    if any(d % head_dim for d in dims[2:]):
        raise ModelLoadError(f"{what}: stage widths {dims} are not multiples of the head width {head_dim} ({how}).")
    cfg = UniFormerConfig(
        depths=tuple(depths), dims=tuple(dims), head_dim=head_dim, mlp_ratio=float(mlp_ratio), num_classes=num_classes,
        video=video, conv_stem=conv_stem,
        patch_size=int(pe1.shape[-1]) if pe1 is not None else 4,
        local_kernel=int(state["blocks1.0.attn.weight"].shape[-1]),
        pos_kernel=int(state["blocks1.0.pos_embed.weight"].shape[-1]),
        video_std=bool(video and state["patch_embed2.proj.weight"].shape[2] == 3),
        layer_scale=layer_scale, local_layer_scale="blocks1.0.gamma_1" in keys, aux_head=aux,
        qkv_bias="blocks3.0.attn.qkv.bias" in keys or (depths[2] == 0 and "blocks4.0.attn.qkv.bias" in keys),
        num_frames=_frames_from_name(low) if video else 16,
        image_mean=VIDEO_MEAN if video else IMAGENET_MEAN, image_std=VIDEO_STD if video else IMAGENET_STD)
    if video and pe1 is not None and pe1.shape[2] != 3:
        raise ModelLoadError(f"{what}: the first video patch embedding has {pe1.shape[2]}-frame kernels; the published "
                             "models use 3.")
    return cfg, how


# ---------------------------------------------------------------------------------------------- the adapter
@dataclass(frozen=True)
class UniFormerOutput:
    """One forward of a UniFormer.

    Attributes:
        logits: ``(B, K)`` float32.
        probs: ``(B, K)`` float32 softmax of ``logits``.
        features: per stage, ``(B, C_s, *grid_s)`` float32 output maps (``grid_s`` = ``(H_s, W_s)`` or
            ``(T_s, H_s, W_s)``); empty unless asked for.
        attentions: ``"blocks{s}.{i}"`` → ``(B, heads, N_s, N_s)`` float32 softmax probabilities of each global block
            (rows: query tokens, columns: key tokens, both in row-major grid order), or ``(B, N_s, N_s)`` with
            ``heads="mean"``; empty unless asked for.
        grids: per stage, the token grid ``(H_s, W_s)`` / ``(T_s, H_s, W_s)`` of this input.
    """

    logits: np.ndarray
    probs: np.ndarray
    features: tuple = ()
    attentions: dict = field(default_factory=dict)
    grids: tuple = ()


class UniFormerAdapter(HashedWeights):
    """A loaded UniFormer (image or video) and what the views ask of it.

    Attributes:
        model: the :class:`UniFormer` module (eval mode, on ``device`` in ``dtype``).
        config: its :class:`UniFormerConfig`.
        model_id: name shown to the user; device; dtype.
        format_tag: ``"uniformer-image"``, ``"uniformer-video"`` (authors' files) or ``"uniformer"`` (our folders).
        head_dim_source: where the head width came from (authors' files cannot say; see :func:`infer_config`).
    """

    family = "uniformer"
    kind = "hierarchical"

    def __init__(self, model: UniFormer, *, model_id: str, device: torch.device = torch.device("cpu"),
                 dtype: torch.dtype = torch.float32, format_tag: str = "uniformer", head_dim_source: str = "config.json"):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.config: UniFormerConfig = model.cfg
        self.model_id, self.device, self.dtype = model_id, device, dtype
        self.format_tag, self.head_dim_source = format_tag, head_dim_source
        self._sha: str | None = None

    # -------------------------------------------------------------- loading / saving
    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], *, model_id: str, path: str | Path | None = None,
                        device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32,
                        format_tag: str | None = None) -> "UniFormerAdapter":
        """Build from a state dict in the authors' layout (architecture from its shapes) and load it strictly.

        Raises:
            ModelLoadError: unsupported variant, or missing / unexpected / wrongly shaped keys (named).
        """
        name = str(path or model_id)
        cfg, how = infer_config(state, name=name)
        model = UniFormer(cfg)
        strict_load(model, state, what=f"{Path(name).name} (UniFormer {'video' if cfg.video else 'image'})")
        return cls(model, model_id=model_id, device=device, dtype=dtype,
                   format_tag=format_tag or ("uniformer-video" if cfg.video else "uniformer-image"), head_dim_source=how)

    @classmethod
    def from_folder(cls, folder: str | Path, *, model_id: str | None = None, device: torch.device = torch.device("cpu"),
                    dtype: torch.dtype = torch.float32) -> "UniFormerAdapter":
        """Load ``config.json`` (model_type ``"uniformer"``) + ``model.safetensors`` (same key layout; nothing unpickled).

        Raises:
            ModelLoadError: missing / damaged files, a config a UniFormer cannot read, weights that do not fit it.
        """
        folder = Path(folder)
        try:
            cfg = UniFormerConfig.from_dict(read_json(folder / "config.json"))
        except (TypeError, ValueError) as e:
            raise ModelLoadError(f"{folder.name}/config.json is not a UniFormer config: {e}") from None
        state = read_folder_weights(folder)
        model = strict_load(UniFormer(cfg), state, what=f"{folder.name}/model.safetensors")
        return cls(model, model_id=model_id or folder.name, device=device, dtype=dtype)

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (float32) into ``folder``; returns it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        return folder

    @property
    def info(self) -> ModelInfo:
        """What export sidecars record."""
        return ModelInfo(self.model_id, self.family, self.format_tag, str(self.device), str(self.dtype).replace("torch.", ""),
                         self.config.image_size, self.config.patch_size, False, self.weights_sha256)

    # -------------------------------------------------------------- structure
    @property
    def is_video(self) -> bool:
        return self.config.video

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` the weights were trained at."""
        return self.config.image_size, self.config.image_size

    @property
    def stage_kinds(self) -> tuple[str, ...]:
        """``("local", "local", "global", "global")``: the relation aggregator of each stage."""
        return STAGE_KINDS

    @property
    def stage_depths(self) -> tuple[int, ...]:
        return self.config.depths

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return self.config.dims

    @property
    def stage_heads(self) -> tuple[int, ...]:
        """Attention heads per stage (for the local stages: how many equal channel groups the paper calls heads)."""
        return self.config.heads

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, or ``("0", "1", …)`` when the checkpoint carries none."""
        return self.config.labels or tuple(str(i) for i in range(self.config.num_classes))

    def blocks(self) -> list[tuple[str, str]]:
        """Every block as ``(name, kind)``: ``[("blocks1.0", "local"), …, ("blocks4.2", "global")]``."""
        return [(f"blocks{s + 1}.{i}", STAGE_KINDS[s]) for s in range(4) for i in range(self.config.depths[s])]

    def token_grids(self, size: tuple[int, ...] | None = None) -> list[tuple[int, ...]]:
        """The token grid of each stage for an input of ``size``.

        Args:
            size: image ``(H, W)`` or video ``(T, H, W)``; default: the training size (and ``num_frames``).
        Returns:
            4 tuples: ``(H_s, W_s)`` (image) or ``(T_s, H_s, W_s)`` (video), e.g. 224 → 56, 28, 14, 7 per side.
        """
        c = self.config
        if size is None:
            size = ((c.num_frames,) if c.video else ()) + (c.image_size, c.image_size)
        size = tuple(int(v) for v in size)
        if len(size) != (3 if c.video else 2):
            raise ValueError(f"Expected a {'(T, H, W)' if c.video else '(H, W)'} size, got {size}.")
        t, hw = (size[0], size[1:]) if c.video else (None, size)
        grids = []
        if c.conv_stem:
            for s in range(4):
                for _ in range(2 if s == 0 else 1):
                    hw = tuple((v - 1) // 2 + 1 for v in hw)
                grids.append(hw)
            return grids
        for s in range(4):
            p = c.patch_size if s == 0 else 2
            hw = tuple(v // p for v in hw)
            if c.video and s == 0:
                t = (t + 2 * 1 - 3) // c.temporal_stride + 1
            grids.append(((t,) if c.video else ()) + hw)
        return grids

    # -------------------------------------------------------------- weights a view shows
    def _block(self, stage: int, block: int) -> nn.Module:
        if stage not in (1, 2, 3, 4):
            raise ValueError(f"stage must be 1..4, got {stage!r}.")
        blocks = getattr(self.model, f"blocks{stage}")
        if not 0 <= block < len(blocks):
            raise ValueError(f"Stage {stage} has blocks 0..{len(blocks) - 1}, not {block!r}.")
        return blocks[block]

    def local_kernels(self, stage: int, block: int) -> np.ndarray:
        """The token-affinity kernels of a local block: its depth-wise convolution weights.

        Output channel ``c`` at a token is ``Σ_offsets kernel[c, offset] · (conv1 · BN(x))[c, token + offset]``: the
        same learned weighting of the neighbourhood everywhere (before ``conv2`` mixes the channels).

        Returns:
            ``(C, k, k)`` (image) or ``(C, k_t, k, k)`` (video) float32, ``k`` = 5 in the published models.
        Raises:
            ValueError: a block that is not local, or out of range.
        """
        blk = self._block(stage, block)
        if not isinstance(blk, LocalBlock):
            raise ValueError(f"blocks{stage}.{block} is a global (self-attention) block; local kernels exist in stages 1-2.")
        return blk.attn.weight.detach().float().cpu().numpy()[:, 0]

    def local_kernels_by_head(self, stage: int, block: int) -> np.ndarray:
        """:meth:`local_kernels` grouped into the stage's heads: ``(heads, C // heads, *kernel)``."""
        k = self.local_kernels(stage, block)
        h = self.config.heads[stage - 1]
        return k.reshape(h, k.shape[0] // h, *k.shape[1:])

    # -------------------------------------------------------------- running
    def normalise(self, x: np.ndarray) -> torch.Tensor:
        """Pixels → the model input on the device.

        Args:
            x: image ``(H, W, 3)`` / ``(B, H, W, 3)`` or video ``(T, H, W, 3)`` / ``(B, T, H, W, 3)``, float in [0, 1]
                (or uint8 0..255); any size whose sides are multiples of 32 (image) / of 32 with T ≥ 1 (video).
        Returns:
            ``(B, 3, H, W)`` or ``(B, 3, T, H, W)`` normalised by the checkpoint's mean / std.
        Raises:
            ValueError: wrong rank, not RGB, or sides that the four down-samplings do not divide.
        """
        a = np.asarray(x)
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32, copy=False)
        rank = 4 if self.is_video else 3
        if a.ndim == rank:
            a = a[None]
        if a.ndim != rank + 1 or a.shape[-1] != 3:
            want = "(T, H, W, 3) or (B, T, H, W, 3)" if self.is_video else "(H, W, 3) or (B, H, W, 3)"
            raise ValueError(f"Expected RGB {'video' if self.is_video else 'images'} of shape {want}, got {a.shape}.")
        if not np.isfinite(a).all():
            raise ValueError("The input holds NaN or infinite values.")
        h, w = a.shape[-3:-1]
        if h % 32 or w % 32 or h < 32 or w < 32:
            raise ValueError(f"Height and width must be multiples of 32 (four down-samplings), got {h}x{w}.")
        t = torch.from_numpy(np.ascontiguousarray(a))
        mean = torch.tensor(self.config.image_mean, dtype=torch.float32)
        std = torch.tensor(self.config.image_std, dtype=torch.float32)
        t = ((t - mean) / std).movedim(-1, 1)  # (B, 3, [T,] H, W)
        return t.to(self.device, self.dtype)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, *, attention: bool = False, heads: str = "all",
                features: bool = False) -> UniFormerOutput:
        """Run the normalised input ``(B, 3, H, W)`` / ``(B, 3, T, H, W)`` (see :meth:`run` for the options)."""
        if heads not in ("all", "mean"):
            raise ValueError(f"heads must be 'all' or 'mean', got {heads!r}.")
        attn: dict[str, np.ndarray] = {}
        mods = []
        if attention:
            for name, blk in self.model.named_modules():
                if isinstance(blk, GlobalBlock):
                    def sink(p, name=name):
                        p = p.float()
                        attn[name] = (p.mean(1) if heads == "mean" else p).cpu().numpy()
                    blk.attn.sink = sink
                    mods.append(blk.attn)
        try:
            maps = self.model.stages(inputs.to(self.device, self.dtype))
            logits = self.model.classify(maps[-1]).float()
        finally:
            for m in mods:
                m.sink = None
        return UniFormerOutput(
            logits=logits.cpu().numpy(), probs=logits.softmax(-1).cpu().numpy(),
            features=tuple(m.float().cpu().numpy() for m in maps) if features else (),
            attentions=attn, grids=tuple(tuple(m.shape[2:]) for m in maps))

    def run(self, x: np.ndarray, *, attention: bool = True, heads: str = "all", features: bool = False) -> UniFormerOutput:
        """Pixels → logits, and what the views show.

        Args:
            x: see :meth:`normalise`.
            attention: record every global block's attention probabilities.
            heads: ``"all"`` → ``(B, heads, N, N)`` per block; ``"mean"`` → ``(B, N, N)`` (a video's stage 3 has
                N = T/2 · H/16 · W/16 tokens: 1,568 for 16 frames at 224, so per-head maps of every block take
                hundreds of MB).
            features: keep each stage's output map.
        Returns:
            :class:`UniFormerOutput`.
        """
        return self.forward(self.normalise(x), attention=attention, heads=heads, features=features)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Pixels → ``(B, K)`` float32 logits."""
        return self.forward(self.normalise(x)).logits


# ---------------------------------------------------------------------------------------------- formats
def _build(state: dict, *, path, model_id, device, dtype):
    return UniFormerAdapter.from_state_dict(state, model_id=model_id, path=path, device=device, dtype=dtype)


_UNSUPPORTED = ("lightweight UniFormer-XXS / -XS (class token, token pruning) and divided space-time attention "
                "(SplitSABlock) are refused by name; detection / segmentation backbones (keys under 'backbone.', no "
                "classifier) are not read; the head width is not stored in the weights (taken from the published "
                "model; see explorer.models.uniformer.infer_config)")

FORMATS = (
    CheckpointFormat(
        tag="uniformer-image", kind="hierarchical", title="UniFormer image (Sense-X)", claims=claims_image, build=_build,
        source="github.com/Sense-X/UniFormer image_classification model zoo (uniformer_{small,small_plus,base,base_ls}"
               "_in1k.pth, token-labeling *_tl_224/384.pth; Google Drive / huggingface.co/Sense-X/uniformer_image)",
        views="ImageNet logits; local stages: the depth-wise token-affinity kernels; global stages: per-head "
              "self-attention over the stage's token grid",
        unsupported=_UNSUPPORTED),
    CheckpointFormat(
        tag="uniformer-video", kind="hierarchical", title="UniFormer video (Sense-X)", claims=claims_video, build=_build,
        source="github.com/Sense-X/UniFormer video_classification model zoo (uniformer_{small,base}_k400_8x8 / _16x4 "
               "/ _k600 / _sthv2 .pth; huggingface.co/Sense-X/uniformer_video)",
        views="Kinetics / SSv2 logits; 5×5×5 local affinity kernels; space-time self-attention over T/2 × H/16 × W/16 "
              "tokens (stage 3) and T/2 × H/32 × W/32 (stage 4)",
        unsupported=_UNSUPPORTED),
)
