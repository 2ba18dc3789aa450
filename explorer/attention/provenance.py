"""Reconstruction provenance for MAE models: which visible patches did a masked patch's
reconstruction draw on?

Two views, side by side:

* **attention**: rollout through the decoder from the masked patch's token, carried back
  through the encoder's rollout to the visible patches.  Decoder inputs at hidden positions are
  mask tokens (they carry a position, no content); their share is reported separately, as is the
  share that flows through the CLS token.
* **gradient**: ``|∂ t / ∂ pixels|`` summed per patch, where ``t`` is the predicted patch's
  length along its own direction.  Hidden patches never reach the encoder, so their gradient
  is exactly zero — the view is a check of the masking as much as an explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .capture import AttentionCapture, AttentionError
from .methods import RolloutAccumulator


@dataclass(frozen=True)
class Provenance:
    """Where one masked patch's reconstruction came from.

    Attributes:
        query: flat index of the masked patch.
        mask: ``(gh, gw)`` bool, True = hidden.
        attention: ``(gh, gw)`` rollout weight of each visible patch (``nan`` on hidden patches).
        gradient: ``(gh, gw)`` ``Σ |∂t/∂x|`` per patch (exactly 0 on hidden patches).
        via_cls, via_mask_tokens: shares of the decoder rollout row on the CLS token and on mask tokens.
        image: ``(S, S, 3)``; prediction: ``(S, S, 3)`` the decoder's output; patch_size: ``p``.
    """

    query: int
    mask: np.ndarray
    attention: np.ndarray
    gradient: np.ndarray
    via_cls: float
    via_mask_tokens: float
    image: np.ndarray
    prediction: np.ndarray
    patch_size: int
    model: Any
    input: Any
    options: dict


def provenance(model, image, query, *, ratio: float = 0.75, seed: int = 0, strategy: str = "random", manual=None,
               fit: str = "center-crop", fusion: str = "mean", residual: bool = True) -> Provenance:
    """Provenance of the reconstruction of masked patch ``query`` (flat index or ``(row, col)``).

    Raises:
        AttentionError: ``query`` is outside the grid or not hidden by the mask.
    """
    from ..masking import MaskSpec, make_mask, manual_indices
    from ..reconstruction.image import _resolve_model, as_input

    adapter = _resolve_model(model)
    layout = adapter.layout
    gh, gw = layout.grid
    P = layout.prefix  # tokens before the patches, in the encoder and in the decoder
    q = int(query[0]) * gw + int(query[1]) if isinstance(query, (tuple, list)) else int(query)
    if not 0 <= q < gh * gw:
        raise AttentionError(f"Patch {query} is outside the {gh}x{gw} patch grid.")
    pixels, info = as_input(image, fit, layout.image_size)
    spec = MaskSpec(strategy, ratio, seed, manual_indices(manual))
    mask = make_mask(adapter.grid, spec)
    flat = mask.reshape(1, -1)
    if not flat[0, q]:
        raise AttentionError(f"Patch {q} (row {q // gw}, column {q % gw}) is visible: its reconstruction is the input "
                             "itself. Pick a masked patch.")
    x = adapter.normalise(pixels)
    enc = RolloutAccumulator(fusion=fusion, residual=residual)
    dec = RolloutAccumulator(fusion=fusion, residual=residual)

    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with AttentionCapture(adapter.model, on_forward=lambda c: enc.update(c.probs[0])):  # encoder calls only
            h, keep_t, valid_t = adapter.encode(xg, flat)
        with AttentionCapture(adapter.model, on_forward=lambda c: dec.update(c.probs[0])):  # decoder calls only
            logits = adapter.decode(h, keep_t, valid_t)
        pred_q = logits[0, q].float()
        t = (pred_q * pred_q.detach()).sum() / pred_q.detach().norm().clamp_min(1e-6)
        t.backward()
    if enc.result is None or dec.result is None:
        raise AttentionError("Could not capture the encoder and decoder attention of this MAE.")
    grad = xg.grad.detach().abs().sum(1)[0].float().cpu().numpy()
    p = adapter.patch_size
    gmap = grad.reshape(gh, p, gw, p).sum((1, 3)).astype(np.float32)

    r_dec = dec.result.cpu().numpy()[P + q]  # (P + L,) over decoder inputs
    r_enc = enc.result.cpu().numpy()  # (P + K, P + K) over [prefix, visible in raster order]
    visible = np.flatnonzero(~flat[0])
    enc_index = {i: i for i in range(P)}
    for k, j in enumerate(visible):
        enc_index[P + j] = P + k
    w = np.zeros(r_enc.shape[0])
    for pos, e in enc_index.items():
        w += r_dec[pos] * r_enc[e]
    amap = np.full(gh * gw, np.nan, np.float32)
    amap[visible] = w[P:]
    via_mask = float(r_dec[P:][flat[0]].sum())
    pred = adapter._to_pixels(logits.detach(), x)[0]
    return Provenance(q, mask, amap.reshape(gh, gw), gmap, float(w[:P].sum()), via_mask, pixels, np.clip(pred, 0, 1), p,
                      adapter.info, info, dict(ratio=ratio, seed=seed, strategy=strategy, fusion=fusion, residual=residual))
