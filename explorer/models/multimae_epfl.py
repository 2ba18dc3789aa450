"""MultiMAE (Bachmann, Mizrahi, Atanov & Zamir, ECCV 2022): the authors' checkpoint files, in our implementation.

    mm = load_multimodal_model("multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth")
    mm.modalities        # rgb (224, 224, 3) · depth (224, 224) · semseg (56, 56) COCO panoptic class ids
    rec = reconstruct_multimodal(mm, {"rgb": image}, {"rgb": 1.0})     # depth and semantics from RGB alone

What a MultiMAE checkpoint (EPFL-VILAB/MultiMAE, "MultiViT" format: ``{"model": state_dict}``) holds, and what this
module rebuilds from its key names and shapes:

* **input adapters** per domain: ``rgb`` and ``depth`` cut the image into P×P patches with a strided convolution and
  add fixed 2-D sine-cosine positions (``pos_emb (1, D, h, w)``, resized bicubically when the grid differs);
  ``semseg`` maps each pixel's class id (a map at 1/4 resolution) to a learned class embedding, then cuts P/4×P/4
  patches of it (positions resized bilinearly);
* ``global_tokens (1, G, D)`` appended after the visible patch tokens, and a ViT encoder (``encoder.{i}``: pre-norm
  blocks, no final norm) over the visible tokens of all domains together;
* **output adapters** per domain (``rgb``, ``depth``, ``semseg``, and ``norm_rgb`` in the published file, trained on
  per-patch normalised RGB): encoder tokens are projected to the decoder width, every hidden position gets the mask
  token, every position its domain's task embedding and a sine-cosine position; the domain's own positions are the
  queries, which cross-attend once to the *visible* tokens (+ global tokens) — no residual around that attention —
  then an MLP (residual), then ``decoder_transformer`` self-attention blocks, then a linear layer to P×P×C values.

Inputs as the authors prepare them (``MultiMAE_Demo.ipynb``, ``run_pretraining_multimae.py``): RGB in [0, 1]
normalised with the ImageNet mean / std; **depth standardised per image** — minus the mean and over the standard
deviation of the values between the 10th and 90th percentile (Omnidata DPT pseudo labels in training, so any unit
and any scale: only relative depth matters, larger = farther); semantic maps of the 133 COCO panoptic classes
(Mask2Former pseudo labels) at a quarter of the image's resolution.  Predictions come back in the same units: RGB
in [0, 1], depth rescaled by the given depth map's own statistics (or in standard units when no depth is given),
classes as the argmax per pixel (probabilities from :meth:`EPFLMultiMAEAdapter.predict_details`).

Not inferable from the weights, so the published values are used (and said in :attr:`EPFLMultiMAEAdapter.notes`):
encoder heads (12 at width 768 as ``pretrain_multimae_base``, 16 at 1024 as ``_large``, otherwise width / 64 — the
head width both use), decoder heads (8, the pre-training script's default) and task queries (on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import HashedWeights
from .checkpoint_file import CheckpointFormat, strict_load
from .hub import IMAGENET_MEAN, IMAGENET_STD, ModelLoadError
from ..modalities import COCO_PANOPTIC_CLASSES, Modality

#: domain → (kind, input channels, stride level: the map's resolution is the image's / stride).
DOMAINS = {"rgb": ("image", 3, 1), "depth": ("depth", 1, 1), "semseg": ("semantic", None, 4)}
#: output-only heads → the domain whose positions they predict.
EXTRA_OUTPUTS = {"norm_rgb": "rgb"}
#: encoder width → heads of the published models (``pretrain_multimae_base`` / ``_large``).
PUBLISHED_HEADS = {768: 12, 1024: 16}
#: decoder heads of the published pre-training (``--decoder_num_heads`` default).
DECODER_HEADS = 8
#: the fraction cut from each end of the sorted depth values before its mean and spread are taken.
DEPTH_TRIM = 0.1
LN_EPS = 1e-6
SOURCE = ("EPFL-VILAB/MultiMAE releases (pretrained-weights): multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth "
          "(MultiViT format; the '_timm' file of the same release is an RGB-only ViT and opens in explorer.load_model)")


# ---------------------------------------------------------------------------------------------- layers
class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """``(B, N, D)`` → ``(B, h, N, D / h)``."""
    b, n, d = x.shape
    return x.reshape(b, n, h, d // h).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, h, N, d)`` → ``(B, N, h·d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(_merge(F.scaled_dot_product_attention(*(_heads(t, self.heads) for t in (q, k, v)))))


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x, context):
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.proj(_merge(F.scaled_dot_product_attention(*(_heads(t, self.heads) for t in (self.q(x), k, v)))))


class _Block(nn.Module):
    """Pre-norm transformer block (self-attention, then MLP, each with a residual)."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LN_EPS), nn.LayerNorm(dim, eps=LN_EPS)
        self.attn, self.mlp = _SelfAttention(dim, heads), _Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _positions(pos: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """``pos (1, D, h, w)`` resized to ``grid`` → ``(1, N, D)`` in row-major patch order."""
    return F.interpolate(pos, size=grid, mode=mode, align_corners=False).flatten(2).transpose(1, 2)


class PatchInput(nn.Module):
    """RGB / depth → patch tokens: ``(B, C, H, W)`` → ``(B, (H/P)·(W/P), D)`` (+ bicubically resized positions)."""

    def __init__(self, channels: int, dim: int, patch: int, grid: tuple[int, int]):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(1, dim, *grid), requires_grad=False)
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x):
        t = self.proj(x)
        return t.flatten(2).transpose(1, 2) + _positions(self.pos_emb, t.shape[-2:], "bicubic")


class ClassInput(nn.Module):
    """Class ids → patch tokens: ``(B, h, w)`` long → ``(B, (h/p)·(w/p), D)`` (+ bilinearly resized positions)."""

    def __init__(self, classes: int, emb: int, dim: int, patch: int, grid: tuple[int, int]):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(1, dim, *grid), requires_grad=False)
        self.class_emb = nn.Embedding(classes, emb)
        self.proj = nn.Conv2d(emb, dim, patch, stride=patch)

    def forward(self, ids):
        t = self.proj(self.class_emb(ids).permute(0, 3, 1, 2))
        return t.flatten(2).transpose(1, 2) + _positions(self.pos_emb, t.shape[-2:], "bilinear")


@dataclass(frozen=True)
class _Layout:
    """Where each input domain's tokens sit in the concatenated sequence, and which of them the encoder saw."""

    order: tuple[str, ...]      # input domains, in sequence order
    sizes: tuple[int, ...]      # their token counts
    grid: tuple[int, int]       # patches per side of the image
    idx: torch.Tensor           # (B, K) positions of the visible tokens in the concatenated sequence

    def span(self, name: str) -> tuple[int, int]:
        k = self.order.index(name)
        start = sum(self.sizes[:k])
        return start, start + self.sizes[k]


class SpatialOutput(nn.Module):
    """One domain's decoder: its positions query the visible encoder tokens, then self-attend → ``(B, C, H', W')``."""

    def __init__(self, task: str, channels: int, patch: int, enc_dim: int, dim: int, depth: int, heads: int, hidden: int,
                 grid: tuple[int, int], context_tasks: tuple[str, ...], num_global: int):
        super().__init__()
        self.task, self.channels, self.patch, self.num_global = task, channels, patch, num_global
        self.task_embeddings = nn.ParameterDict({t: nn.Parameter(torch.zeros(1, 1, dim)) for t in context_tasks})
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_emb = nn.Parameter(torch.zeros(1, dim, *grid), requires_grad=False)
        self.decoder = _CrossAttention(dim, heads)
        self.context_norm, self.query_norm, self.out_norm = (nn.LayerNorm(dim, eps=LN_EPS) for _ in range(3))
        self.mlp = _Mlp(dim, hidden)
        if depth:
            self.decoder_transformer = nn.Sequential(*(_Block(dim, heads, hidden) for _ in range(depth)))
        self.out_proj = nn.Linear(dim, channels * patch * patch)
        self.proj_context = nn.Linear(enc_dim, dim)

    def _task(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return self.task_embeddings[name] if name in self.task_embeddings else torch.zeros_like(like[:, :1])

    def forward(self, enc: torch.Tensor, lay: _Layout) -> torch.Tensor:
        """``enc (B, K + G, D)`` encoded visible + global tokens → ``(B, C, gh·p, gw·p)``."""
        ctx = self.proj_context(enc)
        g = self.num_global
        seen, glob = (ctx[:, :-g], ctx[:, -g:]) if g else (ctx, ctx[:, :0])
        b, d = ctx.shape[0], ctx.shape[-1]
        full = self.mask_token.expand(b, sum(lay.sizes), d).scatter(1, lay.idx[..., None].expand(-1, -1, d), seen)
        pos = _positions(self.pos_emb, lay.grid, "bilinear")                       # (1, N, d), every domain's grid
        full = full + torch.cat([self._task(t, pos) + pos for t in lay.order], 1)  # + task embedding + position
        if self.task in lay.order:
            lo, hi = lay.span(self.task)
            queries = full[:, lo:hi]
        else:  # a domain that is not an input: mask tokens at its positions
            queries = (self.mask_token + pos + self._task(self.task, pos)).expand(b, -1, -1)
        context = torch.cat([full.gather(1, lay.idx[..., None].expand(-1, -1, d)), glob], 1)
        x = self.decoder(self.query_norm(queries), self.context_norm(context))
        x = x + self.mlp(self.out_norm(x))
        if hasattr(self, "decoder_transformer"):
            x = self.decoder_transformer(x)
        x = self.out_proj(x)                                                         # (B, N, C·p·p)
        gh, gw, p = *lay.grid, self.patch
        x = x.reshape(b, gh, gw, self.channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, self.channels, gh * p, gw * p)


# ---------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class EPFLMultiMAEConfig:
    """Everything the module needs, read from a checkpoint's shapes by :func:`config_from_state`.

    ``patch`` is the patch side on the image (16 published); ``grid`` the positions' patch grid (14×14 at 224);
    ``inputs`` / ``outputs`` the adapters' domains; ``context_tasks`` maps each output to the domains it has task
    embeddings for; heads are the published values (see the module docstring).
    """

    dim: int
    depth: int
    heads: int
    hidden: int
    num_global: int
    patch: int
    grid: tuple[int, int]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    num_classes: int
    class_dim: int
    dec_dim: int
    dec_depth: int
    dec_heads: int
    dec_hidden: int
    context_tasks: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.grid[0] * self.patch, self.grid[1] * self.patch

    def stride(self, domain: str) -> int:
        return DOMAINS[EXTRA_OUTPUTS.get(domain, domain)][2]

    def channels(self, domain: str) -> int:
        return DOMAINS[EXTRA_OUTPUTS.get(domain, domain)][1] or self.num_classes


class EPFLMultiMAE(nn.Module):
    """MultiMAE with the authors' parameter names (``input_adapters.*``, ``global_tokens``, ``encoder.{i}.*``,
    ``output_adapters.*``); see the module docstring."""

    def __init__(self, cfg: EPFLMultiMAEConfig):
        super().__init__()
        self.cfg = cfg
        ins = {}
        for d in cfg.inputs:
            if d == "semseg":
                ins[d] = ClassInput(cfg.num_classes, cfg.class_dim, cfg.dim, cfg.patch // cfg.stride(d), cfg.grid)
            else:
                ins[d] = PatchInput(DOMAINS[d][1], cfg.dim, cfg.patch, cfg.grid)
        self.input_adapters = nn.ModuleDict(ins)
        self.global_tokens = nn.Parameter(torch.zeros(1, cfg.num_global, cfg.dim))
        self.encoder = nn.Sequential(*(_Block(cfg.dim, cfg.heads, cfg.hidden) for _ in range(cfg.depth)))
        ctx = dict(cfg.context_tasks)
        self.output_adapters = nn.ModuleDict({
            d: SpatialOutput(EXTRA_OUTPUTS.get(d, d), cfg.channels(d), cfg.patch // cfg.stride(d), cfg.dim, cfg.dec_dim,
                             cfg.dec_depth, cfg.dec_heads, cfg.dec_hidden, cfg.grid, ctx.get(d, ()), cfg.num_global)
            for d in cfg.outputs})

    def forward(self, inputs: dict[str, torch.Tensor], visible: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every output domain from the visible patches of the inputs.

        Args:
            inputs: every input domain: ``rgb (B, 3, H, W)`` ImageNet-normalised, ``depth (B, 1, H, W)`` standardised,
                ``semseg (B, H/4, W/4)`` long class ids.  Values of hidden patches are never used.
            visible: the same domains → ``(B, N)`` bool, row-major patches; every sample of a batch shows the same
                total number of patches (the split between domains may differ).
        Returns:
            output domain → ``(B, 3, H, W)`` RGB / ``(B, 1, H, W)`` depth in model units, ``(B, classes, H/4, W/4)``
            logits.
        """
        order = tuple(self.cfg.inputs)
        tokens = [self.input_adapters[d](inputs[d]) for d in order]
        x = torch.cat(tokens, 1)
        v = torch.cat([visible[d].to(torch.bool) for d in order], 1)
        counts = v.sum(1)
        if (counts != counts[0]).any():
            raise ValueError("Every sample of a batch must show the same total number of patches.")
        if int(counts[0]) == 0:
            raise ValueError("No patch is visible: show at least one patch of some modality.")
        idx = torch.argsort((~v).to(torch.int8), dim=1, stable=True)[:, :int(counts[0])]
        x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x, self.global_tokens.expand(x.shape[0], -1, -1)], 1)
        enc = self.encoder(x)
        grid = (inputs[order[0]].shape[-2] // (self.cfg.patch // self.cfg.stride(order[0])),
                inputs[order[0]].shape[-1] // (self.cfg.patch // self.cfg.stride(order[0])))
        lay = _Layout(order, tuple(t.shape[1] for t in tokens), grid, idx)
        return {d: self.output_adapters[d](enc, lay) for d in self.cfg.outputs}


# ---------------------------------------------------------------------------------------------- reading a checkpoint
_ADAPTER = re.compile(r"^(input|output)_adapters\.([^.]+)\.")


def claims(state: dict) -> bool:
    """MultiMAE / MultiViT layout: ``global_tokens``, ``input_adapters.<domain>.*`` and ``encoder.0.attn.qkv.weight``."""
    return ("global_tokens" in state and "encoder.0.attn.qkv.weight" in state
            and any(k.startswith("input_adapters.") for k in state))


def _count(state: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state for m in [rx.match(k)] if m})


def config_from_state(state: dict, *, name: str = "the checkpoint") -> EPFLMultiMAEConfig:
    """The configuration a MultiMAE state dict was trained with, from its key names and shapes.

    Raises:
        ModelLoadError: domains this module does not know, no output adapters (an encoder-only MultiViT, e.g. a
            fine-tuning starting point), or shapes that do not agree with each other (named).
    """
    domains = {(m.group(1), m.group(2)) for k in state for m in [_ADAPTER.match(k)] if m}
    inputs = tuple(d for d in DOMAINS if ("input", d) in domains)
    outputs = tuple(d for d in (*DOMAINS, *EXTRA_OUTPUTS) if ("output", d) in domains)
    unknown = sorted({f"{io}_adapters.{d}" for io, d in domains if d not in DOMAINS and not (io == "output" and d in EXTRA_OUTPUTS)})
    if unknown:
        raise ModelLoadError(f"{name} is a MultiMAE checkpoint with adapters this explorer does not know: "
                             f"{', '.join(unknown)}; it reads the pre-training domains rgb, depth, semseg (and norm_rgb).")
    if not outputs:
        raise ModelLoadError(f"{name} is a MultiMAE / MultiViT encoder without output adapters (keys output_adapters.* "
                             "are missing), so it cannot predict masked patches; the multimodal explorer needs the "
                             "pre-training checkpoint (…_multivit-afff3f8c.pth), which keeps them.")
    if not inputs:
        raise ModelLoadError(f"{name}: no input adapter (input_adapters.rgb / depth / semseg) was found.")
    g = state["global_tokens"]
    dim, num_global = int(g.shape[-1]), int(g.shape[1])
    depth = _count(state, r"^encoder\.(\d+)\.attn\.qkv\.weight$")
    first = next(d for d in inputs if d != "semseg") if set(inputs) - {"semseg"} else "semseg"
    pw = state[f"input_adapters.{first}.proj.weight"]
    patch = int(pw.shape[-1]) * DOMAINS[first][2]
    grid = tuple(int(s) for s in state[f"input_adapters.{first}.pos_emb"].shape[-2:])
    if "input_adapters.semseg.class_emb.weight" in state:
        num_classes, class_dim = (int(s) for s in state["input_adapters.semseg.class_emb.weight"].shape)
    elif "semseg" in outputs:
        p = patch // DOMAINS["semseg"][2]
        num_classes, class_dim = int(state["output_adapters.semseg.out_proj.weight"].shape[0]) // (p * p), 0
    else:
        num_classes, class_dim = 0, 0
    o = outputs[0]
    dec_dim = int(state[f"output_adapters.{o}.mask_token"].shape[-1])
    dec_depth = _count(state, rf"^output_adapters\.{o}\.decoder_transformer\.(\d+)\.norm1\.weight$")
    ctx = tuple((d, tuple(t for t in DOMAINS if f"output_adapters.{d}.task_embeddings.{t}" in state)) for d in outputs)
    heads = PUBLISHED_HEADS.get(dim, max(1, dim // 64))
    if dim % heads or dec_dim % DECODER_HEADS:
        raise ModelLoadError(f"{name}: widths {dim} (encoder) / {dec_dim} (decoder) do not split into the published "
                             f"{heads} / {DECODER_HEADS} heads.")
    return EPFLMultiMAEConfig(
        dim=dim, depth=depth, heads=heads, hidden=int(state["encoder.0.mlp.fc1.weight"].shape[0]), num_global=num_global,
        patch=patch, grid=grid, inputs=inputs, outputs=outputs, num_classes=num_classes, class_dim=class_dim,
        dec_dim=dec_dim, dec_depth=dec_depth, dec_heads=DECODER_HEADS,
        dec_hidden=int(state[f"output_adapters.{o}.mlp.fc1.weight"].shape[0]), context_tasks=ctx)


# ---------------------------------------------------------------------------------------------- the adapter
def depth_statistics(depth: np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` of a depth map as MultiMAE standardises it: over its known values between the 10th and 90th
    percentile (sorted values ``[⌊0.1 n⌋, ⌊0.9 n⌋)``), std = √(unbiased variance + 1e-6)."""
    v = np.sort(np.asarray(depth, np.float64)[np.isfinite(depth)])
    if v.size < 2:
        raise ValueError("A depth map needs at least two known values to be standardised.")
    t = v[int(DEPTH_TRIM * v.size):int((1 - DEPTH_TRIM) * v.size)]
    t = t if t.size >= 2 else v
    return float(t.mean()), float(np.sqrt(t.var(ddof=1) + 1e-6))


class EPFLMultiMAEAdapter(HashedWeights):
    """A loaded MultiMAE checkpoint; answers what :class:`explorer.models.multimae.MultiMAEAdapter` answers.

    Attributes:
        model: :class:`EPFLMultiMAE`; modalities: its :class:`Modality` list (rgb, depth, semseg, as the checkpoint
        has them); task (``"rgbd"``: the RGB-D samples and uploads apply; semantic maps are predicted, or given as
        class-id arrays); model_id (for titles); source (the file, what sidecars record); notes (the published values
        used where the weights say nothing, and how depth is scaled); device; dtype.
    """

    family = "multimodal"
    model_type = "multimae-epfl"
    #: what the multimodal app's two upload slots take (depth in any unit: the model standardises it per image)
    upload_labels = ("RGB image", "Depth map (any unit) / right image")

    def __init__(self, model: EPFLMultiMAE, *, model_id: str, device: torch.device, dtype: torch.dtype,
                 source: str | None = None):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.model_id, self.device, self.dtype = model_id, device, dtype
        self.source = source or model_id
        self.cfg = cfg = model.cfg
        self.task = "rgbd"
        self._sha: str | None = None
        h, w = cfg.image_size
        specs = []
        for d in DOMAINS:
            if d not in cfg.inputs and d not in cfg.outputs:
                continue
            if d == "rgb":
                specs.append(Modality("rgb", "image", (h, w, 3), (cfg.patch,) * 2, IMAGENET_MEAN, IMAGENET_STD, "intensity"))
            elif d == "depth":
                specs.append(Modality("depth", "depth", (h, w), (cfg.patch,) * 2, (0.0,), (1.0,),
                                      "as given (standardised per image by the model)"))
            else:
                s = cfg.stride(d)
                names = COCO_PANOPTIC_CLASSES if cfg.num_classes == len(COCO_PANOPTIC_CLASSES) else \
                    tuple(f"class {k}" for k in range(cfg.num_classes))
                specs.append(Modality("semseg", "semantic", (h // s, w // s), (cfg.patch // s,) * 2, (0.0,), (1.0,),
                                      "COCO panoptic class" if names is COCO_PANOPTIC_CLASSES else "class", classes=names))
        self.modalities: list[Modality] = specs
        self.notes = (
            f"heads not stored in the weights: {cfg.heads} encoder / {cfg.dec_heads} decoder (the published values)",
            "depth: any unit (larger = farther); the model sees it standardised per image by the mean and spread of its "
            "10–90 % values, as in MultiMAE's training; predicted depth is put back in the given map's units with that "
            "map's own mean and spread (its hidden part included), or stays in standard units when no depth is given",
        ) + (("semantic maps: the 133 COCO panoptic classes (Mask2Former pseudo labels in training), at 1/4 of the image's "
              "resolution",) if "semseg" in cfg.outputs else ())

    @classmethod
    def from_state(cls, state: dict, *, model_id: str, device: torch.device = torch.device("cpu"),
                   dtype: torch.dtype = torch.float32, source: str | None = None) -> "EPFLMultiMAEAdapter":
        """Build from a state dict in the authors' layout, loaded strictly (missing / unexpected / misshapen keys named)."""
        cfg = config_from_state(state, name=model_id)
        model = strict_load(EPFLMultiMAE(cfg), state, what=f"{model_id} (MultiMAE)")
        return cls(model, model_id=model_id, device=device, dtype=dtype, source=source)

    @property
    def info(self):
        """What export sidecars record (:class:`explorer.models.base.ModelInfo`); the id is the file's path."""
        from .base import ModelInfo

        return ModelInfo(self.source, self.family, self.model_type, str(self.device), str(self.dtype).replace("torch.", ""),
                         int(self.cfg.image_size[0]), int(self.cfg.patch), False, self.weights_sha256)

    def spec(self, name: str) -> Modality:
        for s in self.modalities:
            if s.name == name:
                return s
        raise KeyError(f"This model has no {name!r} modality; it has: {', '.join(s.name for s in self.modalities)}.")

    def _model_inputs(self, arrays: dict, b: int) -> tuple[dict, dict]:
        """Numpy arrays (NaN = unknown) → the model's input tensors, and each given depth map's (mean, std) per sample."""
        dev, dt = self.device, self.dtype
        out, depth_stats = {}, {}
        for d in self.cfg.inputs:
            s = self.spec(d)
            x = arrays.get(d)
            if x is not None:
                x = np.asarray(x, np.float32)
                s.check(x)
            if d == "rgb":
                t = torch.zeros(b, 3, *s.shape[:2]) if x is None else \
                    torch.nan_to_num(s.normalise(torch.from_numpy(x)), nan=0.0).permute(0, 3, 1, 2)
                out[d] = t.to(dev, dt)
            elif d == "depth":
                if x is None:
                    t = torch.zeros(b, 1, *s.shape)
                else:
                    stats = [depth_statistics(x[i]) for i in range(b)]
                    m = np.array([st[0] for st in stats], np.float32)[:, None, None]
                    sd = np.array([st[1] for st in stats], np.float32)[:, None, None]
                    depth_stats[d] = (m, sd)
                    t = torch.from_numpy(np.nan_to_num((x - m) / sd, nan=0.0).astype(np.float32))[:, None]
                out[d] = t.to(dev, dt)
            else:
                ids = np.zeros((b, *s.shape), np.int64) if x is None else np.nan_to_num(x, nan=0.0).round().astype(np.int64)
                if ids.min() < 0 or ids.max() >= self.cfg.num_classes:
                    raise ValueError(f"{d}: class ids must lie in 0–{self.cfg.num_classes - 1}, got {ids.min()}–{ids.max()}.")
                out[d] = torch.from_numpy(ids).to(dev)
        return out, depth_stats

    @torch.no_grad()
    def predict_details(self, arrays: dict[str, np.ndarray], visible: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`predict` and what it is made from.

        Returns:
            ``"<domain>"`` → as :meth:`predict`; ``"raw/<output>"`` → the model's own output (RGB ImageNet-normalised
            ``(B, H, W, 3)``, depth standardised ``(B, H, W)``, ``norm_rgb`` per-patch normalised ``(B, H, W, 3)``);
            ``"semseg/probabilities"`` → ``(B, h, w, classes)`` softmax per pixel.
        """
        b = len(next(iter(visible.values())))
        for name, v in visible.items():
            if name not in self.cfg.inputs and np.asarray(v).any():
                raise ValueError(f"{self.model_id} has no input adapter for {name}: it can only predict it (budget 0).")
        x, depth_stats = self._model_inputs(arrays, b)
        vis = {d: torch.as_tensor(np.asarray(visible[d], bool) if d in visible else np.zeros((b, self.spec(d).num_patches), bool),
                                  device=self.device) for d in self.cfg.inputs}
        raw = {k: v.float().cpu() for k, v in self.model(x, vis).items()}
        out = {}
        for d, r in raw.items():
            if d == "semseg":
                out["semseg/probabilities"] = r.softmax(1).permute(0, 2, 3, 1).numpy()
                out[d] = r.argmax(1).numpy().astype(np.float32)
                out["raw/semseg"] = r.numpy()
                continue
            r = r.permute(0, 2, 3, 1).numpy() if r.shape[1] == 3 else r[:, 0].numpy()
            out[f"raw/{d}"] = r
            if d == "rgb":
                out[d] = self.spec("rgb").denormalise(torch.from_numpy(r)).numpy()
            elif d == "depth":
                out[d] = r * depth_stats[d][1] + depth_stats[d][0] if d in depth_stats else r.copy()
        for s in self.modalities:  # a modality with no output adapter cannot be predicted
            out.setdefault(s.name, np.full((b, *s.shape), np.nan, np.float32))
        return out

    def predict(self, arrays: dict[str, np.ndarray], visible: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every patch of every modality, from the visible ones.

        Args:
            arrays: name → ``(B, *shape)`` float: ``rgb`` in [0, 1], ``depth`` in any unit, ``semseg`` class ids (NaN =
                unknown; a modality with nothing visible may be absent).
            visible: name → ``(B, N_m)`` bool.
        Returns:
            name → ``(B, *shape)`` float32: RGB in [0, 1], depth in the given map's units (standard units when none
            was given), the most likely class per semantic pixel.
        """
        d = self.predict_details(arrays, visible)
        return {s.name: d[s.name].astype(np.float32) for s in self.modalities}


def build(state: dict, *, path, model_id: str, device: torch.device, dtype: torch.dtype) -> EPFLMultiMAEAdapter:
    """:class:`CheckpointFormat` ``build``: the adapter for a MultiMAE checkpoint's state dict."""
    return EPFLMultiMAEAdapter.from_state(state, model_id=model_id, device=device, dtype=dtype,
                                          source=str(Path(path)) if path is not None else None)


FORMATS = (CheckpointFormat(
    tag="multimae", kind="multimodal", title="MultiMAE (EPFL-VILAB)", claims=claims, build=build, source=SOURCE,
    views="MultiMAEApp: per-modality visible budgets (or a Dirichlet split of a total) over RGB, depth and COCO "
          "semantic maps; every modality predicted (RGB → depth, RGB → semantics, depth + RGB, any modality dropped)",
    unsupported="the fine-tuned heads (DPT depth, ConvNeXt / Segmenter semseg, linear classifier) and other domains "
                "(Taskonomy normals, curvature…): only the pre-training output adapters predict masked patches; "
                "sample_tasks_uniformly masking (off in the published pre-training)"),)
