"""UniFormer's two kinds of token relation, for one query token: local affinity in the shallow stages, global
self-attention in the deep ones, and how relevance flows through the global stages.

A UniFormer (:mod:`explorer.models.uniformer`) has four stages.  Stages 1 and 2 relate a token to its neighbours by a
learned **depth-wise kernel** (5×5, or 5×5×5 in video): the same weighting of the neighbourhood at every position, one
kernel per channel.  Stages 3 and 4 relate every token to every other by **self-attention**, which depends on the input.
For a query point (a pixel, or a pixel of a frame) this module returns, per stage:

* local stages: the kernels of the chosen block (raw per channel, the mean kernel of each channel group the paper calls a
  head, the mean magnitude ``|w|`` over channels), the magnitude placed around the query's token on the stage grid, and
  the token's **receptive field**: the *theoretical* one (the input pixels the token can depend on, composed through the
  stem / patch embeddings, every dynamic-position-encoding convolution and every local kernel up to that block) and the
  *effective* one (Luo et al., NeurIPS 2016): ``|∂ Σ_c y[c, token] / ∂ x|`` summed over the RGB channels, for this input;
* global stages: the query token's attention row in the chosen block, per head and averaged over heads, on the stage's
  token grid and (:func:`upsample`) on the input's pixels;

and across the global stages:

* **rollout** (Abnar & Zuidema 2020): per block ``0.5·Ā + 0.5·I`` (``Ā`` the head-fused attention, rows renormalised),
  multiplied through the blocks of stage 3, then through the patch merge into stage 4 (below), then through the blocks of
  stage 4: ``R = R₄ · M · R₃`` (``N₄ × N₃``, row-stochastic).  The row of the stage-4 token that holds the query says which
  stage-3 tokens it draws on; the mean of all rows is what the classifier (a mean over stage-4 tokens) draws on;
* **relevance** (Chefer, Gur & Wolf, CVPR 2021, the self-attention rule): per block ``Ā = E_h[(∇A ⊙ A)⁺]`` with ``∇A`` the
  gradient of the explained class's logit, ``R ← R + Ā·R`` through the blocks of a stage, and the same patch merge ``M``
  between stages 3 and 4: ``R = R₄ · M · R₃``; the classifier's relevance of the stage-3 tokens is the mean of its rows.

**The patch merge between stage 3 and stage 4.**  ``patch_embed4`` is a convolution (2×2 stride 2; 1×2×2 in video, or
3×2×2 with one frame of padding for the "std" video models; 3×3 stride 2 padding 1 for the convolutional stem) followed
by a layer norm: each stage-4 token is made from the stage-3 tokens under its kernel.  ``M[j, i]`` is ``1 / |footprint(j)|``
for each stage-3 token ``i`` under stage-4 token ``j``'s kernel (clipped at the border), else 0: relevance and attention
flow from a stage-4 token equally to the stage-3 tokens it was merged from (the convolution's learned weights are not
used: they mix channels, not tokens, in a way no single number per token pair summarises).

What rollout and relevance leave out: the depth-wise position-encoding convolution (3×3) at the start of every global
block adds a little of each token's neighbours; it is treated as part of the residual path, as the MLP is.

    cap = capture_relations(uf, "chelsea")                    # one forward with gradients, per input
    view = relation_view(uf, cap, (32, 40))                   # the query pixel (row, column); video: (frame, row, column)
    view.stages[0].kernel_magnitude                           # (5, 5)
    view.stages[2].attention_mean                             # (H/16, W/16)
    view.rollout                                              # (H/16, W/16): stage-3 tokens the query's stage-4 token draws on
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import torch

from ..models.base import model_lock

#: Head fusions of rollout (as :func:`explorer.attention.methods.fuse_heads`).
FUSIONS = ("mean", "max", "min")
#: Largest capture kept (attention probabilities of every global block, per head), in bytes.
MAX_CAPTURE_BYTES = 1_500_000_000


class RelationError(ValueError):
    """A query, block or input the view cannot use; the message says why."""


# ---------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class RelationInput:
    """An input fitted to a UniFormer.

    Attributes:
        pixels: image ``(H, W, 3)`` or clip ``(T, H, W, 3)`` float32 in [0, 1], at the model's input size (and frames).
        name: file / sample name; sha256: of the source (as :class:`explorer.LoadedImage` / ``LoadedVideo`` report it).
        notes: conversions, for the user.
    """

    pixels: np.ndarray
    name: str
    sha256: str
    notes: tuple[str, ...] = ()

    @property
    def video(self) -> bool:
        return self.pixels.ndim == 4


def relation_input(adapter, source, *, fit: str = "center-crop", sampling: str = "uniform", stride: int = 4,
                   short: str | None = None) -> RelationInput:
    """``source`` fitted to ``adapter``'s input.

    Args:
        source: image models: a sample name, path, bytes, upload, ``(H, W, 3)`` array or :class:`explorer.LoadedImage`;
            video models: ``"generated:<seed>"``, a video file / bytes / upload, a ``(T, H, W, 3)`` array or a
            :class:`explorer.video.LoadedVideo` (sampled to the model's ``num_frames`` with ``sampling`` / ``stride`` /
            ``short``, as :func:`explorer.video.load_video` does), or a :class:`RelationInput` (returned as it is).
        fit: how a non-square image (frame) becomes the model's square input (:data:`explorer.preprocess.POLICIES`).
    Raises:
        explorer.ImageLoadError / explorer.video.VideoLoadError: an unreadable input.
    """
    from ..preprocess import fit_image

    if isinstance(source, RelationInput):
        return source
    size = int(adapter.config.image_size)
    if not adapter.is_video:
        from ..reconstruction import load_input

        if isinstance(source, np.ndarray) and source.ndim == 4:
            raise RelationError(f"{adapter.model_id} is an image model: give one (H, W, 3) image, not {source.shape} frames.")
        loaded = load_input(source)
        f = fit_image(loaded.pixels, size, fit)
        notes = (*loaded.notes, f.description) if f.description and "no change" not in f.description else loaded.notes
        return RelationInput(np.ascontiguousarray(f.pixels, np.float32), loaded.name, loaded.sha256, tuple(notes))
    from ..reconstruction.video import model_clip
    from ..video import LoadedVideo

    shim = SimpleNamespace(num_frames=int(adapter.config.num_frames), image_size=size)
    clip = source if isinstance(source, LoadedVideo) else model_clip(shim, source, sampling=sampling, stride=stride,
                                                                     short=short)
    frames = clip.frames
    if len(frames) != shim.num_frames:  # a LoadedVideo handed over as it is: sample it to the model's frames
        idx = np.linspace(0, len(frames) - 1, shim.num_frames).round().astype(int)
        frames = frames[idx]
    fitted = [fit_image(f, size, fit) for f in frames]
    notes = list(clip.notes)
    if fitted[0].description and frames.shape[1:3] != (size, size):
        notes.append(fitted[0].description)
    return RelationInput(np.ascontiguousarray(np.stack([f.pixels for f in fitted]), np.float32), clip.name, clip.sha256,
                         tuple(notes))


# ---------------------------------------------------------------------------------------------- geometry
def _axis_layers(cfg, stage: int, block: int) -> tuple[list, list] | None:
    """The token-mixing layers from the input to the output of ``blocks{stage}.{block}``, as ``(kernel, stride,
    padding)`` per spatial axis and per time axis (video), in forward order; ``None`` when a global block is on the path.
    Point-wise layers (1×1 convolutions, norms, MLPs) do not widen a receptive field and are left out."""
    space, time = [], []
    for s in range(1, stage + 1):
        if cfg.conv_stem:
            space += [(3, 2, 1)] * (2 if s == 1 else 1)
            time += [(1, 1, 0)]
        elif s == 1:
            space.append((cfg.patch_size, cfg.patch_size, 0))
            time.append((3, cfg.temporal_stride, 1))
        else:
            space.append((2, 2, 0))
            time.append((3, 1, 1) if cfg.video_std else (1, 1, 0))
        if s >= 3:
            return None
        n = cfg.depths[s - 1] if s < stage else block + 1
        for _ in range(n):
            space += [(cfg.pos_kernel, 1, cfg.pos_kernel // 2), (cfg.local_kernel, 1, cfg.local_kernel // 2)]
            time += [(cfg.pos_kernel, 1, cfg.pos_kernel // 2), (cfg.local_kernel, 1, cfg.local_kernel // 2)]
    return space, time


def _footprint(index: int, layers: list, size: int) -> tuple[int, int]:
    """Input positions ``[lo, hi]`` (inclusive, clipped to ``[0, size)``) that output position ``index`` of ``layers``
    can depend on: each layer maps output ``i`` to inputs ``i·stride − padding … i·stride − padding + kernel − 1``."""
    lo = hi = int(index)
    for k, s, p in reversed(layers):
        lo, hi = lo * s - p, hi * s - p + k - 1
    return max(lo, 0), min(hi, size - 1)


def theoretical_field(adapter, stage: int, block: int, token: tuple, size: tuple) -> tuple[tuple[int, int], ...]:
    """The theoretical receptive field of ``token`` at the output of ``blocks{stage}.{block}``.

    Args:
        token: the token's index on the stage grid, ``(row, col)`` or ``(t, row, col)``.
        size: the input's ``(H, W)`` or ``(T, H, W)``.
    Returns:
        ``((lo, hi), …)`` per input axis, inclusive, clipped to the input: the input pixels (frames) the token's features
        can depend on.  A global stage's tokens depend on the whole input.
    """
    cfg = adapter.config
    layers = _axis_layers(cfg, stage, block)
    if layers is None:
        return tuple((0, int(n) - 1) for n in size)
    space, time = layers
    axes = [time, space, space] if len(size) == 3 else [space, space]
    return tuple(_footprint(i, lay, int(n)) for i, lay, n in zip(token, axes, size))


def query_tokens(grids: list, size: tuple, point: tuple) -> list[tuple[int, ...]]:
    """The token holding input position ``point`` on each stage grid.

    Args:
        grids: per stage ``(H_s, W_s)`` / ``(T_s, H_s, W_s)``; size: the input's ``(H, W)`` / ``(T, H, W)``;
        point: ``(row, col)`` pixel or ``(frame, row, col)``.
    Returns:
        per stage, the index ``floor(point · grid / size)`` on each axis (a grid that divides the input evenly: the
        token whose patch covers the point).
    """
    return [tuple(min(int(p) * int(g) // int(n), int(g) - 1) for p, g, n in zip(point, grid, size)) for grid in grids]


def upsample(grid_map: np.ndarray, size: tuple) -> np.ndarray:
    """A map on a stage's token grid → the input's pixels (each token's value over the pixels / frames it covers).

    Args:
        grid_map: ``(H_s, W_s)`` or ``(T_s, H_s, W_s)``; size: ``(H, W)`` or ``(T, H, W)``.
    Returns:
        ``size``-shaped float32; input position ``p`` takes the token ``floor(p · grid / size)`` of each axis.
    """
    m = np.asarray(grid_map, np.float32)
    if m.ndim != len(size):
        raise RelationError(f"A {m.ndim}-D map cannot be drawn on a {len(size)}-D input.")
    for axis, n in enumerate(size):
        idx = np.minimum(np.arange(int(n)) * m.shape[axis] // int(n), m.shape[axis] - 1)
        m = np.take(m, idx, axis=axis)
    return m


def merge_matrix(adapter, grid3: tuple, grid4: tuple) -> np.ndarray:
    """``M``: ``(N₄, N₃)``, how stage-4 tokens are made from stage-3 tokens by ``patch_embed4`` (see the module's
    docstring): ``M[j, i] = 1 / |footprint(j)|`` for each stage-3 token ``i`` under stage-4 token ``j``'s kernel.  Rows
    sum to 1."""
    cfg = adapter.config
    space = (3, 2, 1) if cfg.conv_stem else (2, 2, 0)
    time = (3, 1, 1) if cfg.video_std else (1, 1, 0)
    layers = ([time] if len(grid3) == 3 else []) + [space, space]
    n3, n4 = int(np.prod(grid3)), int(np.prod(grid4))
    M = np.zeros((n4, n3), np.float64)
    for j, coord in enumerate(np.ndindex(*grid4)):
        ranges = [range(lo, hi + 1) for lo, hi in (_footprint(c, [lay], g) for c, lay, g in zip(coord, layers, grid3))]
        idx = np.ravel_multi_index(np.meshgrid(*ranges, indexing="ij"), grid3).ravel()
        M[j, idx] = 1.0 / idx.size
    return M


# ---------------------------------------------------------------------------------------------- aggregations
def _fuse(attn: np.ndarray, fusion: str) -> np.ndarray:
    """``(heads, N, N)`` → ``(N, N)``."""
    if fusion == "mean":
        return attn.mean(0)
    if fusion == "max":
        return attn.max(0)
    if fusion == "min":
        return attn.min(0)
    raise RelationError(f"Unknown head fusion {fusion!r}; choose from {', '.join(FUSIONS)}.")


def stage_rollout(attentions: list, *, fusion: str = "mean", residual: bool = True) -> np.ndarray:
    """Rollout through one stage's blocks: ``Π_b norm(0.5·fuse(A_b) + 0.5·I)`` (later blocks on the left).

    Args:
        attentions: the stage's blocks in forward order, each ``(heads, N, N)`` softmax probabilities.
        residual: add the skip connection (``0.5·A + 0.5·I``); without it, the plain product of the fused attentions.
    Returns:
        ``(N, N)`` float64, row-stochastic; the identity for a stage without blocks.
    """
    n = attentions[0].shape[-1] if attentions else 0
    R = None
    for a in attentions:
        f = _fuse(np.asarray(a, np.float64), fusion)
        if residual:
            f = 0.5 * f + 0.5 * np.eye(n)
        f = f / np.clip(f.sum(-1, keepdims=True), 1e-12, None)
        R = f if R is None else f @ R
    return np.eye(n) if R is None else R


def stage_relevance(abars: list) -> np.ndarray:
    """Relevance through one stage's blocks (Chefer et al. 2021): ``R ← R + Ā_b·R`` in forward order, from ``R = I``.

    Args:
        abars: the stage's blocks in forward order, each ``(N, N)`` ``E_h[(∇A ⊙ A)⁺]``.
    Returns:
        ``(N, N)`` float64 (the identity for a stage without blocks).
    """
    n = abars[0].shape[-1] if abars else 0
    R = np.eye(n)
    for a in abars:
        R = R + np.asarray(a, np.float64) @ R
    return R


# ---------------------------------------------------------------------------------------------- capture
@dataclass(frozen=True)
class RelationCapture:
    """What one forward (with gradients) of a UniFormer on one input gives every query of :func:`relation_view`.

    Attributes:
        input: the :class:`RelationInput`.
        model_id: the model's name.
        grids: per stage ``(H_s, W_s)`` / ``(T_s, H_s, W_s)``.
        attentions: ``"blocks{s}.{i}"`` → ``(heads, N_s, N_s)`` float32 softmax probabilities (rows: queries).
        abars: the same keys → ``(N_s, N_s)`` float32 ``E_h[(∇A ⊙ A)⁺]`` for the explained class.
        probs: ``(K,)`` float32 class probabilities; target: the class explained (the predicted one unless given);
        labels: class names.
        merge: ``(N₄, N₃)`` float64 :func:`merge_matrix`.
        relevance: ``(N₄, N₃)`` float64 ``R₄ · M · R₃``.
        notes: caveats for the user.
    """

    input: RelationInput
    model_id: str
    grids: tuple
    attentions: dict
    abars: dict
    probs: np.ndarray
    target: int
    labels: tuple
    merge: np.ndarray
    relevance: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, ...]:
        """The input's ``(H, W)`` or ``(T, H, W)``."""
        return tuple(self.input.pixels.shape[:-1])

    def stage_attentions(self, stage: int) -> list[np.ndarray]:
        """``(heads, N, N)`` of each block of ``stage`` (3 or 4), in order."""
        keys = sorted((k for k in self.attentions if k.startswith(f"blocks{stage}.")), key=lambda k: int(k.split(".")[1]))
        return [self.attentions[k] for k in keys]

    def rollout(self, *, fusion: str = "mean", residual: bool = True) -> np.ndarray:
        """``(N₄, N₃)`` ``R₄ · M · R₃`` (row-stochastic)."""
        r3 = stage_rollout(self.stage_attentions(3), fusion=fusion, residual=residual)
        r4 = stage_rollout(self.stage_attentions(4), fusion=fusion, residual=residual)
        return r4 @ self.merge @ r3


def _global_modules(model) -> list:
    from ..models.uniformer import GlobalBlock

    return [(name, blk) for name, blk in model.named_modules() if isinstance(blk, GlobalBlock)]


def _check_adapter(adapter) -> None:
    if getattr(adapter, "kind", None) != "hierarchical" or not hasattr(adapter, "stage_kinds"):
        raise RelationError(f"{getattr(adapter, 'model_id', type(adapter).__name__)} is not a UniFormer: the local / global "
                            "view needs a model from explorer.load_uniformer_model.")


def capture_relations(adapter, source, *, target: int | None = None, fit: str = "center-crop",
                      sampling: str = "uniform", stride: int = 4, short: str | None = None) -> RelationCapture:
    """One forward of ``adapter`` on ``source`` with every global block's attention kept, and one backward of the
    explained class's logit to those attentions (for relevance).

    Args:
        adapter: a :class:`explorer.models.uniformer.UniFormerAdapter` (image or video).
        source: anything :func:`relation_input` takes.
        target: the class explained (default: the predicted one, picked once).
    Raises:
        RelationError: not a UniFormer, a target out of range, or a capture above :data:`MAX_CAPTURE_BYTES`.
    """
    _check_adapter(adapter)
    inp = relation_input(adapter, source, fit=fit, sampling=sampling, stride=stride, short=short)
    grids = adapter.token_grids(inp.pixels.shape[:-1])
    heads = adapter.stage_heads
    need = sum(adapter.stage_depths[s] * heads[s] * int(np.prod(grids[s])) ** 2 * 4 for s in (2, 3))
    if need > MAX_CAPTURE_BYTES:
        raise RelationError(f"Keeping every global block's attention for this input takes {need / 1e9:.1f} GB (more than "
                            f"{MAX_CAPTURE_BYTES / 1e9:.1f} GB): use fewer frames or a smaller input.")
    x = adapter.normalise(inp.pixels)
    model = adapter.model
    kept: dict[str, torch.Tensor] = {}
    mods = _global_modules(model)
    with model_lock(model):
        for name, blk in mods:
            def sink(p, name=name):
                kept[name] = p
            blk.attn.sink = sink
        try:
            with torch.enable_grad():
                maps = model.stages(x)
                logits = model.classify(maps[-1]).float()[0]
                k = int(logits.shape[0])
                t = int(logits.argmax()) if target is None else int(target)
                if not 0 <= t < k:
                    raise RelationError(f"target {t} is not a class of {adapter.model_id} (0..{k - 1}).")
                names = list(kept)
                grads = torch.autograd.grad(logits[t], [kept[n] for n in names], allow_unused=True) if names else []
        finally:
            for _, blk in mods:
                blk.attn.sink = None
    attentions, abars = {}, {}
    for n, g in zip(names, grads):
        a = kept[n].detach().float()[0]
        attentions[n] = a.cpu().numpy()
        g = torch.zeros_like(a) if g is None else g.detach().float()[0]
        abars[n] = (g * a).clamp_min(0).mean(0).cpu().numpy()
    probs = logits.detach().softmax(-1).cpu().numpy().astype(np.float32)
    n3, n4 = (tuple(g) for g in grids[2:])
    merge = merge_matrix(adapter, n3, n4)
    cap = RelationCapture(inp, adapter.model_id, tuple(tuple(g) for g in grids), attentions, abars, probs, t,
                          tuple(adapter.labels), merge, np.zeros((0, 0)), tuple(inp.notes))
    r3 = stage_relevance([cap.abars[k] for k in _stage_keys(cap.abars, 3)])
    r4 = stage_relevance([cap.abars[k] for k in _stage_keys(cap.abars, 4)])
    return replace(cap, relevance=r4 @ merge @ r3)


def _stage_keys(d: dict, stage: int) -> list[str]:
    return sorted((k for k in d if k.startswith(f"blocks{stage}.")), key=lambda k: int(k.split(".")[1]))


# ---------------------------------------------------------------------------------------------- one query
@dataclass(frozen=True)
class StageRelation:
    """One stage's relation of the query token.

    Attributes:
        stage: 1..4; kind: ``"local"`` (depth-wise kernel) or ``"global"`` (self-attention); block: the block shown
            (0-based); depth: blocks in the stage.
        grid: the stage's token grid ``(H_s, W_s)`` / ``(T_s, H_s, W_s)``; token: the query's token on it.
        stride: input pixels (frames) per token along each axis.
        attention: global: ``(heads, *grid)`` float32, the query token's attention row in the block, per head.
        attention_mean: global: ``(*grid)`` its mean over heads.
        kernels: local: ``(C, *k)`` float32 depth-wise kernels of the block (``k`` = ``(5, 5)`` or ``(5, 5, 5)``).
        head_kernels: local: ``(heads, *k)`` the mean kernel of each head's channel group (signed).
        kernel_magnitude: local: ``(*k)`` the mean of ``|w|`` over all channels (where the block's affinity sits).
        affinity: local: ``(*grid)`` ``kernel_magnitude`` placed on the stage grid centred on the query token (NaN
            elsewhere): the neighbours the token aggregates and with what weight magnitude.
        field: ``((lo, hi), …)`` per input axis: the theoretical receptive field of the token after the block
            (:func:`theoretical_field`; a global stage: the whole input).
        effective: local: ``(*input)`` float32, the effective receptive field: ``|∂ Σ_c y[c, token] / ∂ x|`` summed
            over RGB (``x`` the normalised input, ``y`` the block's output), divided by its sum.
        inside: local: the share of ``effective`` inside ``field`` (1 up to float rounding: gradients cannot leave it).
        area95: local: how many input positions hold 95% of ``effective`` (``field_area``: of the theoretical field).
    """

    stage: int
    kind: str
    block: int
    depth: int
    grid: tuple
    token: tuple
    stride: tuple
    attention: np.ndarray | None = None
    attention_mean: np.ndarray | None = None
    kernels: np.ndarray | None = None
    head_kernels: np.ndarray | None = None
    kernel_magnitude: np.ndarray | None = None
    affinity: np.ndarray | None = None
    field: tuple = ()
    effective: np.ndarray | None = None
    inside: float = float("nan")
    area95: int = 0

    @property
    def field_area(self) -> int:
        """Input positions in the theoretical receptive field."""
        return int(np.prod([hi - lo + 1 for lo, hi in self.field])) if self.field else 0

    def head_map(self, head="mean") -> np.ndarray:
        """Global: ``(*grid)`` attention of ``head`` (an index, or ``"mean"``)."""
        if self.kind != "global":
            raise RelationError(f"Stage {self.stage} is local: it has kernels, not attention maps.")
        if head == "mean":
            return self.attention_mean
        h = int(head)
        if not 0 <= h < len(self.attention):
            raise RelationError(f"Stage {self.stage} has heads 0..{len(self.attention) - 1}, not {head!r}.")
        return self.attention[h]

    def head_kernel(self, head="mean") -> np.ndarray:
        """Local: ``(*k)`` kernel of ``head`` (signed mean over its channels), or ``"mean"``: the mean magnitude."""
        if self.kind != "local":
            raise RelationError(f"Stage {self.stage} is global: it has attention maps, not kernels.")
        if head == "mean":
            return self.kernel_magnitude
        h = int(head)
        if not 0 <= h < len(self.head_kernels):
            raise RelationError(f"Stage {self.stage} has channel groups 0..{len(self.head_kernels) - 1}, not {head!r}.")
        return self.head_kernels[h]


@dataclass(frozen=True)
class RelationView:
    """Every stage's relation of one query point, with rollout and relevance through the global stages.

    Attributes:
        pixels: the input ``(H, W, 3)`` / ``(T, H, W, 3)`` float32 in [0, 1]; name: its name; model_id.
        query: the query point, ``(row, col)`` or ``(frame, row, col)`` in input pixels (frames).
        stages: 4 :class:`StageRelation`.
        rollout: ``(*grid₃)`` the row of ``R₄ · M · R₃`` of the stage-4 token holding the query: which stage-3 tokens it
            draws on (sums to 1).
        rollout_classifier: ``(*grid₃)`` the mean of every row: what the classifier (mean of stage-4 tokens) draws on.
        relevance: ``(*grid₃)`` the mean row of the relevance ``R₄ · M · R₃`` for class ``target``.
        relevance_query: ``(*grid₃)`` the row of the query's stage-4 token.
        target: the class explained; target_label: its name; probability: its probability.
        options: how the view was made (blocks, fusion, residual), for a sidecar.
        notes: caveats for the user.
    """

    pixels: np.ndarray
    name: str
    model_id: str
    query: tuple
    stages: tuple
    rollout: np.ndarray
    rollout_classifier: np.ndarray
    relevance: np.ndarray
    relevance_query: np.ndarray
    target: int
    target_label: str
    probability: float
    options: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def video(self) -> bool:
        return self.pixels.ndim == 4

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape[:-1])


def default_query(size: tuple) -> tuple[int, ...]:
    """The centre of the input: ``(H // 2, W // 2)`` or ``(T // 2, H // 2, W // 2)``."""
    return tuple(int(n) // 2 for n in size)


def check_query(query, size: tuple) -> tuple[int, ...]:
    """``query`` as a tuple of ints inside an input of ``size`` (``None``: :func:`default_query`).

    Raises:
        RelationError: the wrong number of coordinates, or a point outside the input.
    """
    if query is None:
        return default_query(size)
    try:
        q = tuple(int(v) for v in query)
    except (TypeError, ValueError):
        raise RelationError(f"A query is a point {'(frame, row, column)' if len(size) == 3 else '(row, column)'}, "
                            f"got {query!r}.") from None
    if len(q) != len(size):
        raise RelationError(f"A query on this {'clip' if len(size) == 3 else 'image'} has {len(size)} coordinates "
                            f"{'(frame, row, column)' if len(size) == 3 else '(row, column)'}, got {query!r}.")
    if not all(0 <= v < n for v, n in zip(q, size)):
        raise RelationError(f"The query {q} lies outside the input of size {tuple(size)}.")
    return q


def check_blocks(adapter, blocks) -> tuple[int, ...]:
    """The block shown in each stage (``None``: the last block of every stage; ``-1`` counts from the end).

    Raises:
        RelationError: not 4 blocks, or one out of range.
    """
    depths = adapter.stage_depths
    if blocks is None:
        return tuple(max(d - 1, 0) for d in depths)
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 4:
        raise RelationError(f"Give one block per stage (4), got {blocks}.")
    out = []
    for s, (b, d) in enumerate(zip(blocks, depths), start=1):
        b = b + d if b < 0 else b
        if not 0 <= b < max(d, 1):
            raise RelationError(f"Stage {s} has blocks 0..{d - 1}, not {b}.")
        out.append(b)
    return tuple(out)


def _place(kernel: np.ndarray, grid: tuple, token: tuple) -> np.ndarray:
    """``kernel`` ``(*k)`` centred on ``token`` of an all-NaN ``grid`` (clipped at the border)."""
    out = np.full(grid, np.nan, np.float32)
    dst, src = [], []
    for t, k, g in zip(token, kernel.shape, grid):
        lo = t - k // 2
        a, b = max(lo, 0), min(lo + k, g)
        dst.append(slice(a, b))
        src.append(slice(a - lo, b - lo))
    out[tuple(dst)] = kernel[tuple(src)]
    return out


def _effective_fields(adapter, pixels: np.ndarray, wanted: list) -> list[np.ndarray]:
    """``|∂ Σ_c y[c, token] / ∂ x|`` summed over RGB for each ``(stage, block, token)`` of ``wanted`` (local stages),
    each ``(*input)`` float32 divided by its sum (zeros when the gradient is 0 everywhere)."""
    if not wanted:
        return []
    model = adapter.model
    last = max(s for s, _, _ in wanted)
    x = adapter.normalise(pixels).detach().requires_grad_(True)
    outputs = {}
    with model_lock(model), torch.enable_grad():
        h = x
        for s in range(1, last + 1):
            h = getattr(model, f"patch_embed{s}")(h)
            for i, blk in enumerate(getattr(model, f"blocks{s}")):
                h = blk(h)
                outputs[(s, i)] = h
        fields = []
        for j, (s, b, token) in enumerate(wanted):
            y = outputs[(s, b)][0]
            (g,) = torch.autograd.grad(y[(slice(None), *token)].sum(), x, retain_graph=j + 1 < len(wanted))
            e = g.detach().float()[0].abs().sum(0).cpu().numpy().astype(np.float64)
            total = e.sum()
            fields.append((e / total if total > 0 else e).astype(np.float32))
    return fields


def _area95(e: np.ndarray) -> int:
    v = np.sort(e.ravel())[::-1]
    if v.sum() <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(v), 0.95 * v.sum()) + 1)


def relation_view(adapter, capture: RelationCapture, query=None, *, blocks=None, fusion: str = "mean",
                  residual: bool = True) -> RelationView:
    """The view of one query point: every stage's relation, rollout and relevance.

    Args:
        adapter: the UniFormer ``capture`` was made with (it runs again for the effective receptive fields: one forward
            through stages 1-2 and one backward per local stage).
        query: ``(row, col)`` / ``(frame, row, col)`` input position (``None``: the centre).
        blocks: the block shown in each of the 4 stages (``None``: the last of each; see :func:`check_blocks`).
        fusion, residual: rollout's head fusion and skip connection (:func:`stage_rollout`).
    Raises:
        RelationError: a query outside the input, a block out of range, an unknown fusion.
    """
    _check_adapter(adapter)
    if fusion not in FUSIONS:
        raise RelationError(f"Unknown head fusion {fusion!r}; choose from {', '.join(FUSIONS)}.")
    size = capture.size
    q = check_query(query, size)
    blocks = check_blocks(adapter, blocks)
    grids = [tuple(g) for g in capture.grids]
    tokens = query_tokens(grids, size, q)
    kinds = adapter.stage_kinds
    heads = adapter.stage_heads
    wanted = [(s + 1, blocks[s], tokens[s]) for s in range(4) if kinds[s] == "local" and adapter.stage_depths[s] > 0]
    erfs = dict(zip([w[0] for w in wanted], _effective_fields(adapter, capture.input.pixels, wanted)))
    stages = []
    for s in range(4):
        stage, grid, token, b = s + 1, grids[s], tokens[s], blocks[s]
        stride = tuple(int(n) // int(g) for n, g in zip(size, grid))
        common = dict(stage=stage, kind=kinds[s], block=b, depth=adapter.stage_depths[s], grid=grid, token=token,
                      stride=stride, field=theoretical_field(adapter, stage, b, token, size))
        if adapter.stage_depths[s] == 0:
            stages.append(StageRelation(**common))
        elif kinds[s] == "local":
            k = adapter.local_kernels(stage, b)
            hk = adapter.local_kernels_by_head(stage, b).mean(1)
            mag = np.abs(k).mean(0)
            e = erfs[stage]
            lo_hi = common["field"]
            inside = float(e[tuple(slice(lo, hi + 1) for lo, hi in lo_hi)].sum())
            stages.append(StageRelation(**common, kernels=k, head_kernels=hk.astype(np.float32),
                                        kernel_magnitude=mag.astype(np.float32), affinity=_place(mag, grid, token),
                                        effective=e, inside=inside, area95=_area95(e)))
        else:
            a = capture.attentions[f"blocks{stage}.{b}"]
            flat = int(np.ravel_multi_index(token, grid))
            row = a[:, flat, :].reshape(heads[s], *grid).astype(np.float32)
            stages.append(StageRelation(**common, attention=row, attention_mean=row.mean(0)))
    g3, g4 = grids[2], grids[3]
    j = int(np.ravel_multi_index(tokens[3], g4))
    R = capture.rollout(fusion=fusion, residual=residual)
    rel = capture.relevance
    t = capture.target
    return RelationView(
        pixels=capture.input.pixels, name=capture.input.name, model_id=capture.model_id, query=q, stages=tuple(stages),
        rollout=R[j].reshape(g3).astype(np.float32), rollout_classifier=R.mean(0).reshape(g3).astype(np.float32),
        relevance=rel.mean(0).reshape(g3).astype(np.float32), relevance_query=rel[j].reshape(g3).astype(np.float32),
        target=t, target_label=capture.labels[t] if t < len(capture.labels) else str(t),
        probability=float(capture.probs[t]), options=dict(blocks=list(blocks), fusion=fusion, residual=bool(residual)),
        notes=capture.notes)


def local_global(adapter, source, query=None, *, blocks=None, fusion: str = "mean", residual: bool = True,
                 target: int | None = None, fit: str = "center-crop", sampling: str = "uniform", stride: int = 4,
                 short: str | None = None) -> RelationView:
    """:func:`capture_relations` then :func:`relation_view`, in one call (see both for the arguments)."""
    cap = capture_relations(adapter, source, target=target, fit=fit, sampling=sampling, stride=stride, short=short)
    return relation_view(adapter, cap, query, blocks=blocks, fusion=fusion, residual=residual)
