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

    def specs(self) -> list[Modality]:
        return [Modality.from_dict(m) for m in self.modalities]

    def to_dict(self) -> dict:
        return asdict(self) | {"model_type": "mini-multimae", "architectures": ["MiniMultiMAE"]}

    @classmethod
    def from_dict(cls, d: dict) -> "MultiMAEConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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

    def forward(self, tokens: dict[str, torch.Tensor], visible: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predict every patch of every modality: name → ``(B, N_m, D_m)`` in normalised units."""
        enc, idx = self.encode(tokens, visible)
        total = sum(s.num_patches for s in self.specs)
        return {s.name: self.decoders[s.name](enc, idx, total, off, s.num_patches)
                for s, off in zip(self.specs, self._offsets())}
