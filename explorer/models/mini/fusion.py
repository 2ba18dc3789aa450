"""A small image-text fusion model: image patches query the caption through cross-attention.

The design follows the cross-attention fusion of HiCA-VQA (images as queries, text as keys and
values): every image patch token asks "which words describe me?".  The per-word image map is then
read straight from the fusion attention: column ``1 + w`` of the (patches × [none] + words)
attention (column 0 is a learned "none of these words" slot).

    model = MiniFusion(FusionConfig(vocab=VOCAB))
    score = model(pixels (B, 3, S, S), tokens (B, T), pad (B, T) bool)      # (B,) image-text match logit
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

#: Every word the generated captions and questions use; index 0 pads, 1 is unknown.
VOCAB = (
    "[pad]", "[unk]", "a", "an", "the", "of", "is", "there", "what", "colour", "shape", "object", "how", "many",
    "objects", "are", "left", "right", "above", "below", "small", "large",
    "red", "green", "blue", "yellow", "purple", "orange", "circle", "square", "triangle",
    "zero", "one", "two", "three", "four", "yes", "no",
)


@dataclass
class FusionConfig:
    vocab: tuple = VOCAB
    image_size: int = 64
    patch_size: int = 8
    dim: int = 96
    heads: int = 4
    image_layers: int = 2
    text_layers: int = 1
    fusion_layers: int = 2
    max_words: int = 12
    stem_channels: int = 16
    image_layers_after: int = 0  # image self-attention blocks after the fusion (relations between named objects)
    grid_conv: bool = False  # a 3x3 convolution on the patch grid: each patch token sees its neighbours' pixels
    word_head: bool = False  # training-only head on the fused patch tokens: which caption positions name this patch
    image_mean: tuple = (0.5, 0.5, 0.5)
    image_std: tuple = (0.25, 0.25, 0.25)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vocab"] = list(self.vocab)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        d = dict(d)
        d["vocab"] = tuple(d["vocab"])
        for k in ("image_mean", "image_std"):
            d[k] = tuple(d[k])
        return cls(**d)


def tokenize(texts: "list[str]", vocab: tuple, max_words: int) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """Lower-case whitespace tokens → ``(ids (B, T), pad (B, T) bool, words)``; longer texts are cut at ``max_words``."""
    index = {w: i for i, w in enumerate(vocab)}
    words = [t.lower().split()[:max_words] for t in texts]
    T = max(1, max(len(w) for w in words))
    ids = torch.zeros(len(texts), T, dtype=torch.long)
    pad = torch.ones(len(texts), T, dtype=torch.bool)
    for b, ws in enumerate(words):
        for k, w in enumerate(ws):
            ids[b, k] = index.get(w, 1)
            pad[b, k] = False
    return ids, pad, words


class CrossBlock(nn.Module):
    """Patches (queries) attend to words (keys / values), then an MLP; pre-norm, residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(t)
        x = x + self.attn(self.norm_q(x), kv, kv, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class MiniFusion(nn.Module):
    """Image encoder (ViT) + text encoder + cross-attention fusion + image-text match head."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        c = self.config = config
        n = (c.image_size // c.patch_size) ** 2
        # A small convolutional stem before the patch projection: 8 px patches of 64 px scenes are
        # too coarse for one linear map to tell a circle's edge from a triangle's.
        s = c.stem_channels
        self.patch = nn.Sequential(
            nn.Conv2d(3, s, 3, 1, 1), nn.GELU(), nn.Conv2d(s, s, 3, 2, 1), nn.GELU(),
            nn.Conv2d(s, c.dim, c.patch_size // 2, c.patch_size // 2),
            *([nn.GELU(), nn.Conv2d(c.dim, c.dim, 3, 1, 1)] if c.grid_conv else []),
        )
        self.image_pos = nn.Parameter(torch.randn(1, n, c.dim) * 0.02)
        layer = lambda: nn.TransformerEncoderLayer(c.dim, c.heads, 4 * c.dim, dropout=0.0, batch_first=True, norm_first=True)  # noqa: E731
        self.image_encoder = nn.ModuleList([layer() for _ in range(c.image_layers)])
        self.token = nn.Embedding(len(c.vocab), c.dim, padding_idx=0)
        self.text_pos = nn.Parameter(torch.randn(1, c.max_words, c.dim) * 0.02)
        self.text_encoder = nn.ModuleList([layer() for _ in range(c.text_layers)])
        self.fusion = nn.ModuleList([CrossBlock(c.dim, c.heads) for _ in range(c.fusion_layers)])
        self.image_after = nn.ModuleList([layer() for _ in range(c.image_layers_after)])
        # A learned "none of these words" slot before the caption: a patch that no word describes
        # can attend there, so word columns of the fusion attention stay selective.
        self.null = nn.Parameter(torch.randn(1, 1, c.dim) * 0.02)
        self.norm = nn.LayerNorm(c.dim)
        self.match = nn.Linear(2 * c.dim, 1)
        # Training-only auxiliary head: "is this patch part of an object the text names?"
        self.named = nn.Linear(c.dim, 1)
        # Training-only per-word grounding head on the fused patch tokens (before the image blocks after the
        # fusion): "at which caption positions ([none], word 1, word 2, ...) are the words that name me?".  Word
        # positions reach a patch token only through what it took from the words, so answering needs the patch to
        # have read its own words rather than its neighbours'; the attention itself is not supervised.
        if c.word_head:
            self.word_norm = nn.LayerNorm(c.dim)
            self.word_pos = nn.Linear(c.dim, 1 + c.max_words)

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """``pixels (B, 3, S, S)`` normalised, ``tokens (B, T)``, ``pad (B, T)`` → match logit ``(B,)``.

        ``embeds (B, T, D)`` replaces ``self.token(tokens)`` (attribution on the word embeddings).
        """
        return self.forward_all(pixels, tokens, pad, embeds)[0]

    def forward_all(self, pixels: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor,
                    embeds: torch.Tensor | None = None, *, words: bool = False) -> tuple[torch.Tensor, ...]:
        """→ ``(match logit (B,), per-patch "named by the text" logit (B, L))``; with ``words`` (needs
        ``config.word_head``) also the per-patch logits over caption positions ``(B, L, 1 + T)`` (0: none)."""
        x = self.patch(pixels).flatten(2).transpose(1, 2) + self.image_pos
        for blk in self.image_encoder:
            x = blk(x)
        e = self.token(tokens) if embeds is None else embeds
        t = e + self.text_pos[:, : tokens.shape[1]]
        for blk in self.text_encoder:
            t = blk(t, src_key_padding_mask=pad)
        t = torch.cat([self.null.expand(t.shape[0], -1, -1), t], 1)
        pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], 1)
        for blk in self.fusion:
            x = blk(x, t, pad)
        fused = x
        for blk in self.image_after:
            x = blk(x)
        h = self.norm(x)
        # Mean and max over patches: one mismatching object must be able to veto the match.
        match = self.match(torch.cat([h.mean(1), h.amax(1)], -1)).squeeze(-1)
        if not words:
            return match, self.named(h).squeeze(-1)
        pos = self.word_pos(self.word_norm(fused))[..., : t.shape[1]].masked_fill(pad[:, None, :], float("-inf"))
        return match, self.named(h).squeeze(-1), pos
