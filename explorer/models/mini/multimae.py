"""A small multimodal masked autoencoder in the style of MultiMAE (Bachmann et al. 2022).

One shared transformer encoder sees the *visible* patches of every modality (each modality has its own
linear patch embedding, learned positions and a modality embedding).  Each modality has its own decoder:
its queries are the modality's full patch grid (encoded tokens where the patch was visible, a learned
mask token elsewhere, plus positions); they first cross-attend to *all* encoded tokens (so depth can be
predicted from RGB alone) and then self-attend; a linear head gives the patch values.

    model = MiniMultiMAE(MultiMAEConfig(modalities=[rgb.to_dict(), depth.to_dict()]))
    pred = model({"rgb": (B, 64, 192), "depth": (B, 64, 64)}, {"rgb": vis (B, 64) bool, "depth": vis (B, 64) bool})
    pred["depth"]  # (B, 64, 64): every patch predicted, in normalised units

Every sample of a batch must have the same *total* number of visible patches (the split between
modalities may differ per sample, as MultiMAE's Dirichlet sampling gives).

Scale-invariant depth (``depth_scale="visible-median"``): a depth map's visible values are divided by their median
(times ``depth_ref``, the training data's median) before the encoder, and the depth prediction is multiplied back, so
the metric scale of the output is read from the visible depth, never guessed from the image.  With no visible depth
the scale is ``depth_ref`` (what the training data had).  ``depth_base="visible-idw"``: the depth decoder's output is
added to an inverse-distance-weighted fill of the visible depth patches (:func:`idw_fill`).  Likewise ``spectrogram_level="visible-mean"`` takes the mean
log power of the visible spectrogram patches out before the encoder and puts it back into the prediction (loudness).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from ...modalities import Modality


@dataclass
class MultiMAEConfig:
    modalities: list = field(default_factory=list)  # Modality.to_dict() per modality
    dim: int = 128
    depth: int = 4
    heads: int = 4
    dec_dim: int = 96
    dec_depth: int = 2
    dec_heads: int = 4
    mlp_ratio: int = 4
    task: str = ""  # "rgbd" or "audio-visual": what the model was trained for
    #: ``"visible-median"``: depth is divided by the median of its visible known values before the encoder and the depth
    #: prediction multiplied back (scale-invariant depth; ``depth_ref`` metres stands for the median when no depth is
    #: visible); ``""``: depth goes in as it is (older models).
    depth_scale: str = ""
    depth_ref: float = 0.0
    #: ``"visible-mean"``: a spectrogram's visible values have their mean subtracted before the encoder and added back to
    #: the prediction (loudness read from what is visible; none visible: no shift); ``""``: as it is (older models).
    spectrogram_level: str = ""
    #: ``"visible-idw"``: the depth decoder predicts a residual over an inverse-distance-weighted fill of the visible
    #: depth patches' means (:func:`idw_fill`), so copying the visible depth's layout is the starting point; ``""``: none.
    depth_base: str = ""

    def specs(self) -> list[Modality]:
        return [Modality.from_dict(m) for m in self.modalities]

    def to_dict(self) -> dict:
        return asdict(self) | {"model_type": "mini-multimae", "architectures": ["MiniMultiMAE"]}

    @classmethod
    def from_dict(cls, d: dict) -> "MultiMAEConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def idw_fill(tokens: torch.Tensor, visible: torch.Tensor, grid: tuple[int, ...], power: float = 2.0) -> torch.Tensor:
    """Inverse-distance-weighted fill of patch means.

    Args:
        tokens: ``(B, N, D)`` patches (NaN = unknown value); visible: ``(B, N)`` bool; grid: the patch grid (``N = prod``).
    Returns:
        ``(B, N, 1)``: per patch, Σ_j w_ij m_j / Σ_j w_ij over the visible patches j with a known value (``m_j`` their mean,
        ``w_ij = 1 / (d_ij^power + 1e-3)``, ``d`` the distance in patches: a visible patch gets its own mean); 0 for a
        sample with no such patch.
    """
    known = torch.isfinite(tokens)
    n = known.sum(-1)
    means = torch.where(known, tokens, 0).sum(-1) / n.clamp(min=1)  # (B, N)
    use = visible.bool() & (n > 0)
    coords = torch.stack(torch.meshgrid(*[torch.arange(g, dtype=tokens.dtype, device=tokens.device) for g in grid],
                                        indexing="ij"), -1).reshape(-1, len(grid))
    w = 1.0 / (torch.cdist(coords, coords) ** power + 1e-3)  # (N, N)
    w = w[None] * use[:, None, :].to(tokens.dtype)  # (B, N, N): only visible, known patches weigh
    total = w.sum(-1)
    fill = (w * torch.where(use, means, 0)[:, None, :]).sum(-1) / total.clamp(min=1e-12)
    return torch.where(total > 0, fill, torch.zeros_like(fill))[..., None]


def _block(dim: int, heads: int, mlp_ratio: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, dim * mlp_ratio, dropout=0.0, activation="gelu", batch_first=True,
                                      norm_first=True)


class CrossBlock(nn.Module):
    """Queries attend to a context (pre-norm), then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(ctx)
        q = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class ModalityDecoder(nn.Module):
    """Predicts every patch of one modality from the encoded visible tokens of all modalities."""

    def __init__(self, spec: Modality, cfg: MultiMAEConfig):
        super().__init__()
        d = cfg.dec_dim
        self.proj = nn.Linear(cfg.dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, spec.num_patches, d) * 0.02)
        self.cross = CrossBlock(d, cfg.dec_heads, cfg.mlp_ratio)
        self.blocks = nn.ModuleList(_block(d, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, spec.patch_dim)

    def forward(self, enc: torch.Tensor, idx: torch.Tensor, total: int, offset: int, n: int) -> torch.Tensor:
        """``enc (B, K, dim)`` encoded visible tokens at positions ``idx (B, K)`` of the ``total`` concatenated
        patches → ``(B, n, patch_dim)`` for this modality's patches ``offset : offset + n``."""
        ctx = self.proj(enc)
        full = self.mask_token.expand(enc.shape[0], total, -1).clone()
        full = full.scatter(1, idx[..., None].expand(-1, -1, ctx.shape[-1]), ctx)
        q = full[:, offset:offset + n] + self.pos
        q = self.cross(q, ctx)
        for blk in self.blocks:
            q = blk(q)
        return self.head(self.norm(q))


class MiniMultiMAE(nn.Module):
    """Shared encoder over the visible patches of all modalities, one decoder per modality."""

    def __init__(self, cfg: MultiMAEConfig):
        super().__init__()
        self.cfg = cfg
        self.specs = cfg.specs()
        if not self.specs:
            raise ValueError("A multimodal MAE needs at least one modality.")
        names = [s.name for s in self.specs]
        self.embed = nn.ModuleDict({s.name: nn.Linear(s.patch_dim, cfg.dim) for s in self.specs})
        self.pos = nn.ParameterDict({s.name: nn.Parameter(torch.randn(1, s.num_patches, cfg.dim) * 0.02) for s in self.specs})
        self.modality = nn.Parameter(torch.randn(len(names), cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(_block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.decoders = nn.ModuleDict({s.name: ModalityDecoder(s, cfg) for s in self.specs})

    def _offsets(self) -> list[int]:
        out, o = [], 0
        for s in self.specs:
            out.append(o)
            o += s.num_patches
        return out

    def encode(self, tokens: dict[str, torch.Tensor], visible: dict[str, torch.Tensor]):
        """Encode the visible patches.

        Args:
            tokens: name → ``(B, N_m, D_m)`` normalised patches (values of hidden patches are ignored; NaN allowed there).
            visible: name → ``(B, N_m)`` bool.
        Returns:
            ``(enc (B, K, dim), idx (B, K))``: encoded tokens and their positions in the concatenated patch list.
        """
        xs, vis = [], []
        for k, s in enumerate(self.specs):
            t = torch.nan_to_num(tokens[s.name])
            xs.append(self.embed[s.name](t) + self.pos[s.name] + self.modality[k])
            vis.append(visible[s.name].bool())
        x, v = torch.cat(xs, 1), torch.cat(vis, 1)
        counts = v.sum(1)
        if (counts != counts[0]).any():
            raise ValueError("Every sample of a batch must have the same total number of visible patches.")
        if int(counts[0]) == 0:
            raise ValueError("No patch is visible: give at least one visible patch in some modality.")
        idx = torch.argsort((~v).to(torch.int8), dim=1, stable=True)[:, :int(counts[0])]
        x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), idx

    def depth_scales(self, tokens: dict[str, torch.Tensor], visible: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per depth modality, ``(B,)``: median of the visible known depth ÷ ``depth_ref`` (1 where no depth is visible);
        empty unless ``cfg.depth_scale == "visible-median"``.  ``tokens`` as :meth:`forward` takes them."""
        if self.cfg.depth_scale != "visible-median":
            return {}
        out = {}
        for s in self.specs:
            if s.kind != "depth" or s.name not in tokens:
                continue
            raw = s.denormalise(tokens[s.name].detach().float())  # (B, N, D) metres, NaN unknown
            keep = visible[s.name].bool()[..., None] & torch.isfinite(raw) & (raw > 0)
            med = torch.nanmedian(torch.where(keep, raw, torch.nan).flatten(1), dim=1).values
            ref = float(self.cfg.depth_ref)
            out[s.name] = torch.where(torch.isfinite(med), med / ref, torch.ones_like(med)).to(tokens[s.name].dtype)
        return out

    def level_shifts(self, tokens: dict[str, torch.Tensor], visible: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per spectrogram modality, ``(B,)``: the mean of its visible known values in normalised units (0 where none is
        visible); empty unless ``cfg.spectrogram_level == "visible-mean"``."""
        if self.cfg.spectrogram_level != "visible-mean":
            return {}
        out = {}
        for s in self.specs:
            if s.kind != "spectrogram" or s.name not in tokens:
                continue
            t = tokens[s.name].detach()
            keep = visible[s.name].bool()[..., None] & torch.isfinite(t)
            n = keep.flatten(1).sum(1)
            out[s.name] = torch.where(keep, t, 0).flatten(1).sum(1) / n.clamp(min=1)
        return out

    def forward(self, tokens: dict[str, torch.Tensor], visible: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predict every patch of every modality: name → ``(B, N_m, D_m)`` in normalised units."""
        scales = self.depth_scales(tokens, visible)
        shifts = self.level_shifts(tokens, visible)
        specs = {s.name: s for s in self.specs}
        if scales or shifts:
            tokens = dict(tokens)
            for k, sc in scales.items():  # to the reference scale: depth / (median / ref)
                tokens[k] = specs[k].normalise(specs[k].denormalise(tokens[k]) / sc[:, None, None])
            for k, sh in shifts.items():  # visible mean level out
                tokens[k] = tokens[k] - sh[:, None, None]
        enc, idx = self.encode(tokens, visible)
        total = sum(s.num_patches for s in self.specs)
        out = {s.name: self.decoders[s.name](enc, idx, total, off, s.num_patches)
               for s, off in zip(self.specs, self._offsets())}
        if self.cfg.depth_base == "visible-idw":  # a residual over the fill of the visible depth
            for s in self.specs:
                if s.kind == "depth" and s.name in tokens:
                    out[s.name] = out[s.name] + idw_fill(tokens[s.name], visible[s.name], s.grid)
        for k, sc in scales.items():  # and back to the visible depth's scale
            out[k] = specs[k].normalise(specs[k].denormalise(out[k]) * sc[:, None, None])
        for k, sh in shifts.items():  # and back in
            out[k] = out[k] + sh[:, None, None]
        return out
