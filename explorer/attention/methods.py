"""Aggregations of attention over layers and heads (pure torch / numpy; no model calls).

* :func:`fuse_heads`, :func:`rollout_step`, :class:`RolloutAccumulator` — attention rollout
  (Abnar & Zuidema, 2020): per layer fuse heads (mean / max / min), optionally drop the weakest
  links (discard ratio), add the residual path (``0.5·A + 0.5·I``), renormalise rows, and
  multiply through the layers.  The accumulator takes one layer at a time (streaming).
* :class:`RelevanceAccumulator` — the generic gradient-weighted relevance of Chefer, Gur & Wolf
  (ICCV 2021) for self-attention: ``R ← R + Ā·R`` with ``Ā = E_h[(∇A ⊙ A)⁺]``.  Gradients come in
  backward order, so the product is built from the last layer down: ``M ← M·(I + Ā_l)``.
* :func:`mean_attention_distance`, :func:`attention_entropy` — per-head summaries (ViT paper).
"""

from __future__ import annotations

import numpy as np
import torch

FUSIONS = ("mean", "max", "min")


def fuse_heads(attn: torch.Tensor, fusion: str = "mean") -> torch.Tensor:
    """``(H, T, T)`` → ``(T, T)`` by the mean, max or min over heads."""
    if fusion == "mean":
        return attn.mean(0)
    if fusion == "max":
        return attn.max(0).values
    if fusion == "min":
        return attn.min(0).values
    raise ValueError(f"Unknown head fusion {fusion!r}; choose from {FUSIONS}.")


def rollout_step(attn: torch.Tensor, *, fusion: str = "mean", discard: float = 0.0, residual: bool = True) -> torch.Tensor:
    """One layer's contribution to rollout.

    Args:
        attn: ``(H, T, T)`` attention probabilities of one layer.
        fusion: head fusion.
        discard: fraction in [0, 1) of each row's smallest entries set to 0 (never the diagonal).
        residual: add the skip connection, ``0.5·A + 0.5·I``.
    Returns:
        ``(T, T)`` row-stochastic matrix.
    """
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard ratio must be in [0, 1), got {discard}")
    a = fuse_heads(attn.float(), fusion)
    T = a.shape[-1]
    eye = torch.eye(T, dtype=a.dtype, device=a.device)
    if discard > 0:
        k = int(discard * T)
        if k > 0:
            masked = a.masked_fill(eye.bool(), float("inf"))  # the diagonal is never discarded
            idx = masked.topk(k, dim=-1, largest=False).indices
            a = a.scatter(-1, idx, 0.0)
    if residual:
        a = 0.5 * a + 0.5 * eye
    return a / a.sum(-1, keepdim=True).clamp_min(1e-12)


class RolloutAccumulator:
    """Streaming rollout: ``update()`` once per layer in forward order; ``result`` is ``(T, T)``.

    Only the running product (``T × T``) is kept, never the per-layer attention.
    """

    def __init__(self, *, fusion: str = "mean", discard: float = 0.0, residual: bool = True, layers=None):
        self.fusion, self.discard, self.residual = fusion, discard, residual
        self.layers = None if layers is None else set(layers)
        self.result: torch.Tensor | None = None
        self.seen = 0

    def update(self, attn: torch.Tensor) -> None:
        """``attn``: ``(H, T, T)`` (batch element already selected)."""
        i = self.seen
        self.seen += 1
        if self.layers is not None and i not in self.layers:
            return
        step = rollout_step(attn, fusion=self.fusion, discard=self.discard, residual=self.residual)
        self.result = step if self.result is None else step @ self.result


class RelevanceAccumulator:
    """Streaming gradient-weighted relevance (Chefer et al. 2021, self-attention rule).

    ``update(attn, grad)`` is called in **backward** order (last layer first); ``result`` is the
    ``(T, T)`` relevance ``R = Π_{l=1..L} (I + Ā_l)`` applied in forward order.
    """

    def __init__(self, layers=None):
        self.result: torch.Tensor | None = None
        self.layers = None if layers is None else set(layers)
        self.seen: list[int] = []

    def update(self, attn: torch.Tensor, grad: torch.Tensor, index: int | None = None) -> None:
        """``attn``, ``grad``: ``(H, T, T)``; ``index``: the layer (default: calls are counted 0, 1, … in call order,
        and ``layers`` filters on that count)."""
        i = index if index is not None else len(self.seen)
        self.seen.append(i)
        if self.layers is not None and i not in self.layers:
            return
        abar = (grad.float() * attn.float()).clamp_min(0).mean(0)
        eye = torch.eye(abar.shape[-1], dtype=abar.dtype, device=abar.device)
        step = eye + abar
        self.result = step if self.result is None else self.result @ step


def mean_attention_distance(probs: np.ndarray, grid: tuple, patch_size: int, n_prefix: int) -> np.ndarray:
    """Mean attention distance in pixels (ViT paper, Fig. 7), patch queries to patch keys.

    Args:
        probs: ``(L, H, T, T)`` with ``T = n_prefix + prod(grid)``.
        grid: ``(gh, gw)``, or ``(t, gh, gw)`` for video tubelets (then the distance is spatial: time is ignored).
    Returns:
        ``(L, H)``: for each head, the average over query patches of ``Σ_k a_qk · ‖pos_q − pos_k‖``
        (attention renormalised over patch keys).
    """
    coords = np.unravel_index(np.arange(int(np.prod(grid))), tuple(grid))
    pos = np.stack(coords[-2:], 1).astype(np.float64) * patch_size
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))  # (P, P)
    a = probs[:, :, n_prefix:, n_prefix:].astype(np.float64)
    a = a / np.clip(a.sum(-1, keepdims=True), 1e-12, None)
    return (a * dist).sum(-1).mean(-1)


def attention_entropy(probs: np.ndarray) -> np.ndarray:
    """``(L, H, T, T)`` → ``(L, H)`` mean over queries of the entropy (nats) of each attention row."""
    p = np.clip(probs.astype(np.float64), 1e-12, None)
    return -(probs * np.log(p)).sum(-1).mean(-1)
