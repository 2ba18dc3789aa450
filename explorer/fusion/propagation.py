"""Attention flow through every layer of both streams: rollout and gradient relevance per word.

* ``rollout`` — the bi-modal propagation rules of Chefer, Gur & Wolf (ICCV 2021, eqs. 6–11; eq. 10 with the
  normalised self-relevance of eqs. 8–9) with the head-mean attention in place of the gradient-weighted one
  (single-stream models: ordinary rollout of the joint sequence);
* ``relevance`` — the same rules on ``E_h[(∇A ⊙ A)⁺]`` (Chefer et al. 2021 bi-modal gradient relevance).

Both read a :class:`~explorer.fusion.capture.Captured` and return ``(W, gh, gw)``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..attention import RolloutAccumulator
from .capture import Captured, scatter


def normalised_self_relevance(R: torch.Tensor) -> torch.Tensor:
    """Chefer et al. 2021 eqs. 8–9: ``R̄ = R̂ + I`` with ``R̂ = R − I`` scaled so each row sums to 1.

    Args:
        R: ``(n, n)`` self-relevance ``R^{xx}`` (``I`` plus non-negative additions).
    Returns:
        ``(n, n)`` ``R̄^{xx}``; a row of ``R − I`` that is all zero (nothing propagated yet) stays zero, so ``R̄ = I``
        there.
    """
    eye = torch.eye(R.shape[0], dtype=R.dtype)
    hat = R - eye
    rows = hat.sum(-1, keepdim=True)
    return torch.where(rows > 0, hat / torch.where(rows > 0, rows, torch.ones_like(rows)), torch.zeros_like(hat)) + eye


def bimodal_propagate(steps, n_text: int, n_image: int) -> dict[str, torch.Tensor]:
    """Chefer et al. 2021 bi-modal rules over calls in forward order.

    Self-attention of modality ``s`` (other modality ``q``), ``Ā (s, s)``: eqs. 6–7, ``R_ss += Ā·R_ss``,
    ``R_sq += Ā·R_sq``.  Cross-attention, queries ``s``, keys ``q``, ``Ā (s, q)``: eq. 10,
    ``R_sq += R̄_ssᵀ·Ā·R̄_qq`` (``R̄`` of eqs. 8–9, :func:`normalised_self_relevance`), and eq. 11,
    ``R_ss += Ā·R_qs``, both from the matrices before the call.

    Args:
        steps: iterable of ``(role, abar (Tq, Tk))`` with ``abar`` the head-aggregated (relevance or attention) matrix.
    Returns:
        ``{"tt": (T, T), "ii": (N, N), "ti": (T, N), "it": (N, T)}``.
    """
    n = {"text": n_text, "image": n_image}
    key = {"text": "t", "image": "i"}
    R = {"tt": torch.eye(n_text, dtype=torch.float64), "ii": torch.eye(n_image, dtype=torch.float64),
         "ti": torch.zeros(n_text, n_image, dtype=torch.float64), "it": torch.zeros(n_image, n_text, dtype=torch.float64)}
    for role, abar in steps:
        s, o = key[role.query], key[role.key]
        A = scatter(abar, role.q_pos, role.k_pos, n[role.query], n[role.key])
        if s == o:  # self-attention (eqs. 6-7): R_ss += A R_ss; R_s,other += A R_s,other
            other = "i" if s == "t" else "t"
            R[s + s] = R[s + s] + A @ R[s + s]
            R[s + other] = R[s + other] + A @ R[s + other]
        else:  # cross-attention, queries s, keys o (eqs. 10-11): R_so += R̄_ssᵀ A R̄_oo; R_ss += A R_os
            add = normalised_self_relevance(R[s + s]).T @ A @ normalised_self_relevance(R[o + o])
            R[s + o] = R[s + o] + add
            R[s + s] = R[s + s] + A @ R[o + s]
    return R


def readout(R: dict, cap: Captured) -> np.ndarray:
    """``(W, gh, gw)`` word × patch block of the propagated matrices: text→image if the model has it, else image→text transposed."""
    words = torch.tensor(cap.text.words)
    pi = cap.adapter.patch_index
    ti = R["ti"][words][:, pi]
    it = R["it"][pi][:, words].T
    block = ti if ti.abs().sum() >= it.abs().sum() else it
    return block.float().reshape(cap.n_words, *cap.grid).numpy()


def _joint_block(M: torch.Tensor, cap: Captured) -> np.ndarray:
    """Single-stream models: the word-rows × patch-columns block of a joint ``(T, T)`` matrix, ``(W, gh, gw)``."""
    ip = cap.layout.image[cap.adapter.patch_index]
    return M[torch.tensor(cap.text.words)][:, ip].float().reshape(cap.n_words, *cap.grid).numpy()


def _valid(cap: Captured):
    return [(r, c) for r, c in zip(cap.roles, cap.calls) if r is not None]


def rollout(cap: Captured) -> np.ndarray | None:
    """``(W, gh, gw)`` attention rollout: joint rollout (single stream) or the bi-modal rules on head-mean attention."""
    if not cap.calls:
        return None
    if cap.layout is not None:
        ro = RolloutAccumulator()
        for c in cap.calls:
            ro.update(c.probs[0].cpu())
        return _joint_block(ro.result, cap)
    R = bimodal_propagate(((r, c.probs[0].cpu().mean(0)) for r, c in _valid(cap)), len(cap.text.tokens),
                          cap.adapter.num_image_tokens)
    return readout(R, cap)


def relevance(cap: Captured) -> np.ndarray | None:
    """``(W, gh, gw)`` Chefer et al. 2021 gradient relevance of the model's output (``None`` without gradients)."""
    if not cap.calls or not cap.grads:
        return None
    if cap.layout is not None:
        rel = None
        for c in cap.calls:
            g = cap.grads.get(c.index)
            if g is not None:
                abar = (g.float() * c.probs[0].cpu().float()).clamp_min(0).mean(0).double()
                rel = torch.eye(abar.shape[0], dtype=torch.float64) if rel is None else rel
                rel = rel + abar @ rel
        return None if rel is None else _joint_block(rel, cap)
    steps = [(r, (cap.grads[c.index].float() * c.probs[0].cpu().float()).clamp_min(0).mean(0))
             for r, c in _valid(cap) if c.index in cap.grads]
    R = bimodal_propagate(steps, len(cap.text.tokens), cap.adapter.num_image_tokens)
    return readout(R, cap)
