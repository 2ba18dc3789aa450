"""Adapter over transformers' ``ViTMAEForPreTraining`` (MAE, He et al. 2022).

The adapter hides the checkpoint's quirks (input normalisation, ``norm_pix_loss``, patch
layout) and adds one thing transformers lacks: **a batch of different masks in one
forward**.  ``ViTMAEForPreTraining`` keeps the same number of tokens for every image of a
batch, so a ratio sweep would otherwise need one forward per ratio.  Here the visible
tokens of every mask are gathered and padded to the longest, padded keys are masked out of
attention, and the decoder (whose length never changes) runs on the whole batch.  The
encoder and decoder blocks are the model's own modules; only the token bookkeeping is ours,
and :meth:`MAEAdapter.forward_hf` (the model's own forward) is kept as the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from ..masking import mask_to_noise
from .base import ImageAdapter, ModelInfo  # noqa: F401 - ModelInfo re-exported


class MAEAdapter(ImageAdapter):
    """A ``ViTMAEForPreTraining`` ready for the explorer (see :class:`ImageAdapter` for the attributes)."""

    family = "mae"
    reconstructs = "image"
    square_only = True  # transformers' ViTMAE position embeddings assume a square grid
    embedding_name = "encoder's CLS output"

    @property
    def blocks(self):
        return self.model.vit.layers

    # ------------------------------------------------------------------ attention views
    @property
    def attention_module(self):
        return self.model.vit  # the encoder: the decoder's attention is provenance's business

    @property
    def attention_notes(self) -> tuple[str, ...]:
        return ("ViTMAE encoder run with no mask (every patch visible); the decoder is not run.",)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's CLS output ``(B, D)`` with every patch visible (no labels in an MAE)."""
        h, _, _ = self.encode(x, np.zeros((x.shape[0], self.num_patches), bool))
        return h[:, 0]

    #: ``"hide"``: removed patches are not shown to the encoder; ``"mae"``: filled with the model's own
    #: reconstruction from the kept patches; ``"mean"`` / ``"blur"`` as for every image model
    fills = ("hide", "mae", "mean", "blur")

    def faithfulness_scorer(self, x: torch.Tensor, target=None, *, chunk: int = 8, fill: str = "hide"):
        """``(f, what)``: ``f(keep (K, num_patches) bool) -> (K,)`` the cosine similarity of the encoder's CLS output
        to the full image's.

        ``fill="hide"``: removed patches are *hidden* (the encoder does not see them; 0 when nothing is visible).
        ``fill="mae"``: removed patches are replaced by this MAE's reconstruction from the kept ones (nothing kept:
        the reconstruction from no patch), then the encoder sees every patch.  ``"mean"`` / ``"blur"``: the
        removed patches are filled with the input's mean colour or a blurred copy, every patch seen.
        """
        with torch.no_grad():
            ref = self.embedding(x).float()
        what = f"cosine similarity of the {self.embedding_name} to the full image's"
        if fill == "mae" and self.norm_pix_loss:
            what += (" (norm_pix_loss checkpoint: the infill is un-normalised with each removed patch's true mean and "
                     "variance, so it keeps their mean colour and contrast)")
        if fill in ("mean", "blur"):
            return super().faithfulness_scorer(x, target, chunk=chunk, fill=fill)[0], what
        if fill not in ("hide", "mae"):
            raise ValueError(f"Unknown fill {fill!r}; choose from {', '.join(self.fills)}.")
        pixels = (x.float().cpu() * self._std + self._mean)[0].permute(1, 2, 0).numpy()  # (S, S, 3) in [0, 1]

        def cosine(h):
            return torch.nn.functional.cosine_similarity(h[:, 0].float(), ref.expand(len(h), -1)).cpu().numpy()

        def f(keep):
            keep = np.asarray(keep, bool)
            out = np.zeros(len(keep), np.float64)
            with torch.no_grad():
                if fill == "hide":
                    idx = np.flatnonzero(keep.any(1))
                    for s in range(0, len(idx), chunk):
                        ii = idx[s : s + chunk]
                        out[ii] = cosine(self.encode(x, ~keep[ii])[0])
                    return out
                hidden = ~keep.reshape(len(keep), *self.grid)
                pred = self.forward_masks(pixels, hidden)  # (K, S, S, 3), pixel space
                px = self.layout.pixel_mask(torch.from_numpy(keep)).numpy()[:, 0, :, :, None]  # (K, S, S, 1)
                filled = np.clip(pixels[None] * px + pred * (1 - px), 0, 1)
                for s in range(0, len(keep), chunk):
                    xs = self.normalise(filled[s : s + chunk])
                    out[s : s + chunk] = cosine(self.encode(xs, np.zeros((len(xs), self.num_patches), bool))[0])
            return out

        return f, what

    #: Masks per forward on a CPU when ``batch_size`` is not given (see :meth:`forward_masks`).
    CPU_CHUNK = 4

    def _to_pixels(self, logits: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        """Decoder output ``(B, L, p*p*3)`` → images ``(B, H, W, 3)`` float32 in pixel space (unclipped)."""
        logits = logits.float()
        if self.norm_pix_loss:
            # The decoder predicts each patch normalised by that patch's own mean / variance.
            # Undoing it needs the *true* patch statistics (as the MAE demo does); results say so.
            target = self.model.patchify(x.float())
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            logits = logits * (var + 1.0e-6) ** 0.5 + mean
        img = self.model.unpatchify(logits, self.input_size).cpu()
        img = img * self._std + self._mean
        return img.permute(0, 2, 3, 1).contiguous().numpy()

    # ------------------------------------------------------------------ forwards
    @torch.no_grad()
    def forward_hf(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Reference path: transformers' own forward for one mask.

        Args:
            image: ``(S, S, 3)`` float in [0, 1].
            mask: ``(gh, gw)`` bool, True = hidden.
        Returns:
            ``(S, S, 3)`` float32 prediction of every patch, pixel space.
        """
        x = self.normalise(image)
        n_hidden = int(np.asarray(mask).sum())
        noise = torch.from_numpy(mask_to_noise(mask))[None].to(self.device)
        cfg = self.model.config
        old = cfg.mask_ratio
        cfg.mask_ratio = (n_hidden - 0.5) / self.num_patches if n_hidden else 0.0
        try:
            out = self.model(pixel_values=x, noise=noise)
        finally:
            cfg.mask_ratio = old
        got = out.mask[0].bool().cpu().numpy().reshape(self.grid)
        if not np.array_equal(got, np.asarray(mask, bool)):
            raise RuntimeError("ViTMAE did not reproduce the requested mask (noise → mask mismatch).")
        return self._to_pixels(out.logits, x)[0]

    @torch.no_grad()
    def forward_masks(self, image: np.ndarray, masks: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Reconstruct one image under many masks, batching masks of different ratios.

        Args:
            image: ``(S, S, 3)`` float in [0, 1].
            masks: ``(B, gh, gw)`` bool, True = hidden; any number hidden per mask.
            batch_size: masks per forward.  ``None`` chooses: all at once on a GPU (where one
                launch-bound forward beats many), chunks of :attr:`CPU_CHUNK` on a CPU (where padding
                every mask to the longest would cost more than it saves; measured in
                ``bench/sweep_speed.py``).  Masks are sorted by visible count so each chunk pads little.
        Returns:
            ``(B, S, S, 3)`` float32 predictions, pixel space, in the input order.
        """
        return self._run(self.normalise(image), masks, batch_size, self.CPU_CHUNK, None)

    @torch.no_grad()
    def forward_batch(self, images: np.ndarray, masks: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Reconstruct many images, each under its own mask (the batch-export path).

        Args:
            images: ``(N, S, S, 3)`` float in [0, 1].
            masks: ``(N, gh, gw)`` bool, True = hidden; ratios may differ between items.
            batch_size: items per forward; default 256 on a GPU, :attr:`CPU_CHUNK` on a CPU.
        Returns:
            ``(N, S, S, 3)`` float32 predictions, pixel space, in the input order.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or len(images) != len(masks):
            raise ValueError(f"Expected (N, S, S, 3) images and N masks, got {images.shape} and {len(masks)} masks.")
        return self._run(None, masks, batch_size, self.CPU_CHUNK, images)

    def _run(self, x: torch.Tensor | None, masks, batch_size, cpu_chunk: int, images: np.ndarray | None) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool).reshape(len(masks), -1)
        B, L = masks.shape
        if L != self.num_patches:
            raise ValueError(f"Masks have {L} patches, the model expects {self.num_patches}.")
        # Sorting by visible count keeps the padding of each chunk small.
        order = np.argsort((~masks).sum(1), kind="stable")
        if batch_size is None:
            batch_size = (B if images is None else 256) if self.device.type == "cuda" else cpu_chunk
        chunk = max(1, int(batch_size))
        out = np.empty((B, *self.input_size, 3), np.float32)
        for start in range(0, B, chunk):
            idx = order[start : start + chunk]
            xi = x if images is None else self.normalise(images[idx])
            out[idx] = self._forward_chunk(xi, masks[idx])
        return out

    def encode(self, x: torch.Tensor, masks: np.ndarray):
        """Run the encoder on the visible patches of each mask (differentiable; no ``no_grad`` here).

        Args:
            x: normalised ``(1 or B, 3, S, S)``.
            masks: ``(B, L)`` bool, True = hidden.
        Returns:
            ``(h, keep, valid)``: encoder output ``(B, 1 + K, D)`` (CLS first, visible patches in
            raster order, padded to the longest ``K``), their patch indices ``(B, K)`` and which
            of them are real (``(B, K)`` bool).
        """
        vit = self.model.vit
        emb = vit.embeddings
        B, L = masks.shape
        pos = emb.position_embeddings.to(x.dtype)
        tokens = emb.patch_embeddings(x) + pos[:, 1:, :]  # (1 or B, L, D)
        visible = ~masks
        n_vis = visible.sum(1)
        K = int(n_vis.max())
        # Gather index of visible tokens in raster order, padded with patch 0.
        keep = np.zeros((B, K), np.int64)
        valid = np.zeros((B, K), bool)
        for b in range(B):
            ids = np.flatnonzero(visible[b])
            keep[b, : len(ids)] = ids
            valid[b, : len(ids)] = True
        keep_t = torch.from_numpy(keep).to(x.device)
        valid_t = torch.from_numpy(valid).to(x.device)
        h = tokens.expand(B, -1, -1).gather(1, keep_t[..., None].expand(-1, -1, tokens.shape[-1]))
        cls = (emb.cls_token + pos[:, :1, :]).expand(B, -1, -1)
        h = torch.cat([cls, h], dim=1)  # (B, 1 + K, D)
        attn_mask = None
        if not valid.all():
            key_ok = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), valid_t], dim=1)
            attn_mask = torch.zeros(B, 1, 1, K + 1, dtype=h.dtype, device=x.device)
            attn_mask.masked_fill_(~key_ok[:, None, None, :], torch.finfo(h.dtype).min)
        for layer in vit.layers:
            h = layer(h, attn_mask)
        return vit.layernorm(h), keep_t, valid_t

    def decode(self, h: torch.Tensor, keep_t: torch.Tensor, valid_t: torch.Tensor) -> torch.Tensor:
        """Encoder output from :meth:`encode` → decoder predictions ``(B, L, p*p*3)`` (normalised space)."""
        dec = self.model.decoder
        B, L = h.shape[0], self.num_patches
        # Decoder: full length L + 1 for every mask, so no padding is needed.
        d = dec.decoder_embed(h)  # (B, 1 + K, Dd)
        Dd = d.shape[-1]
        full = dec.mask_token.to(d.dtype).expand(B, L + 1, Dd).clone()  # slot L collects padding
        scatter_idx = torch.where(valid_t, keep_t, torch.full_like(keep_t, L))
        full = full.scatter(1, scatter_idx[..., None].expand(-1, -1, Dd), d[:, 1:, :])
        d = torch.cat([d[:, :1, :], full[:, :L, :]], dim=1) + dec.decoder_pos_embed.to(d.dtype)
        for layer in dec.decoder_layers:
            d = layer(d)
        return dec.decoder_pred(dec.decoder_norm(d))[:, 1:, :]

    def _forward_chunk(self, x: torch.Tensor, masks: np.ndarray) -> np.ndarray:
        h, keep_t, valid_t = self.encode(x, masks)
        logits = self.decode(h, keep_t, valid_t)
        return self._to_pixels(logits, x.expand(len(masks), -1, -1, -1))


def sincos_table(grid: int, dim: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position table for a ``grid x grid`` patch grid with a CLS row: ``(1 + grid**2, dim)``."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    table = build_2d_sinusoidal_position_embedding(height=grid, width=grid, embed_dim=dim, cls_token=True)
    half = dim // 2  # the original MAE layout puts the width half first (see transformers' comment)
    return torch.cat([table[..., half:], table[..., :half]], dim=-1).reshape(1 + grid * grid, dim)
