"""One pass of an image+text model, read into canonical word × patch form (the input of every cached method).

* :func:`prepare` — image + text → normalised pixels, :class:`~explorer.models.fusion_base.TextInput`, the
  fitted image and notes.
* :func:`capture` — one forward + backward with every attention call kept (attention models), or the
  projected patch / token embeddings (dual encoders): a :class:`Captured`.
* :func:`attention_stack`, :func:`gradcam_stack`, :func:`similarity` — the direct read-outs of a
  :class:`Captured` (the registry's builders for ``attention``, ``gradcam``, ``similarity``).

Canonical spaces are those of :mod:`explorer.models.fusion_base`: text tokens ``0..T-1``, image tokens
``0..N-1`` of which ``adapter.patch_index`` are the ``L = gh·gw`` patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..attention import AttentionCapture
from ..models.fusion_base import FusionAdapter, FusionInputError, TextInput
from ..preprocess import fit_image


def prepare(adapter: FusionAdapter, image, text: str, *, fit: str = "center-crop") -> tuple[torch.Tensor, TextInput, np.ndarray, list[str]]:
    """Image (``(H, W, 3)`` float [0, 1], a LoadedImage, or anything :func:`explorer.load_image` takes) + text → ``(pixels (1,3,S,S), TextInput, fitted (S,S,3), notes)``."""
    if not isinstance(image, np.ndarray) and not hasattr(image, "pixels"):
        from ..reconstruction import load_input

        image = load_input(image)  # a sample name, a path, bytes, a file object (ImageLoadError if it does not decode)
    arr = np.asarray(getattr(image, "pixels", image))
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise FusionInputError(f"Expected an RGB image of shape (H, W, 3), got {arr.shape}. Load files with explorer.load_image.")
    f = fit_image(arr.astype(np.float32), adapter.image_size, fit)
    t = adapter.tokenize(text)
    notes = list(getattr(image, "notes", []) or []) + [f.description] + t.notes
    return adapter.normalise(f.pixels), t, f.pixels, notes


def scatter(a: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, nq: int, nk: int) -> torch.Tensor:
    """``(Tq, Tk)`` → ``(nq, nk)`` float64 placed at canonical positions (entries at -1 dropped)."""
    out = torch.zeros(nq, nk, dtype=torch.float64)
    qm, km = q_pos >= 0, k_pos >= 0
    sub = a.double()[qm][:, km]
    out[q_pos[qm].unsqueeze(1), k_pos[km].unsqueeze(0)] = sub
    return out


def orient(role, probs: torch.Tensor, text: TextInput, adapter: FusionAdapter, layout) -> torch.Tensor | None:
    """One call ``(H, Tq, Tk)`` → ``(H, W, L)`` word × patch, or ``None`` if the call is not cross-modal.

    Text→image calls give rows; image→text calls give columns, transposed; a joint sequence gives its
    word-rows × patch-columns block.
    """
    words = torch.tensor(text.words)
    if role.query == "joint":
        tp = layout.text[words]
        ip = layout.image[adapter.patch_index]
        return probs[:, tp][:, :, ip]
    if {role.query, role.key} != {"text", "image"}:
        return None
    H = probs.shape[0]
    if role.query == "text":
        full = torch.zeros(H, len(text.tokens), adapter.num_image_tokens, dtype=probs.dtype)
        for h in range(H):
            full[h] = scatter(probs[h], role.q_pos, role.k_pos, len(text.tokens), adapter.num_image_tokens).to(probs.dtype)
        return full[:, words][:, :, adapter.patch_index]
    full = torch.zeros(H, adapter.num_image_tokens, len(text.tokens), dtype=probs.dtype)
    for h in range(H):
        full[h] = scatter(probs[h], role.q_pos, role.k_pos, adapter.num_image_tokens, len(text.tokens)).to(probs.dtype)
    return full[:, adapter.patch_index][:, :, words].transpose(1, 2)


@dataclass
class Captured:
    """What one pass of the model leaves for the builders (CPU tensors).

    Attributes:
        adapter, text: the model and the tokenised text; ``grid`` ``(gh, gw)``; ``n_words`` ``W``.
        score: the output scalar; ``answer``: its readable form.
        calls: captured attention calls in forward order; ``roles``: what each relates (``None``: ignored).
        grads: call index → ``(H, Tq, Tk)`` gradient of the score w.r.t. that call's attention.
        layout: the joint layout of a single-stream model (``None`` otherwise).
        cross: the cross-modal calls as ``(name, attention (H, W, L), gradient (H, W, L) | None)``.
        patches, tokens: dual encoders: ``(L, D)`` / ``(T, D)`` L2-normalised embeddings.
    """

    adapter: FusionAdapter
    text: TextInput
    score: float
    answer: str
    calls: list = field(default_factory=list)
    roles: list = field(default_factory=list)
    grads: dict = field(default_factory=dict)
    layout: object = None
    cross: list = field(default_factory=list)
    patches: torch.Tensor | None = None
    tokens: torch.Tensor | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return self.adapter.grid

    @property
    def n_words(self) -> int:
        return len(self.text.words)


def capture(adapter: FusionAdapter, pixels: torch.Tensor, t: TextInput, *, gradients: bool = True) -> Captured:
    """One forward (+ one backward when ``gradients``) with every attention call kept; dual encoders: one pass per tower."""
    if adapter.kind == "dual-encoder":
        with torch.no_grad():
            if hasattr(adapter, "alignment_embeddings"):  # one pass per tower gives the score too
                patches, tokens, score = adapter.alignment_embeddings(pixels, t)
            else:
                patches, tokens = adapter.token_embeddings(pixels, t)
                score = float(adapter.score(pixels, t)[0])
            answer = adapter.answer_from_score(score) or adapter.answer(pixels, t)
        return Captured(adapter, t, score, answer, patches=patches, tokens=tokens)

    grads: dict[int, torch.Tensor] = {}
    with AttentionCapture(adapter.capture_root, gradients=gradients, keep=True,
                          on_backward=lambda c: grads.__setitem__(c.index, c.grad[0].detach().cpu())) as cap:
        with torch.enable_grad() if gradients else torch.no_grad():
            s = adapter.score(pixels, t)
            if gradients:
                s.sum().backward()
    adapter.model.zero_grad(set_to_none=True)
    score = float(s.detach()[0])
    answer = adapter.answer_from_score(score) or adapter.answer(pixels, t)  # match models: no second forward
    layout = adapter.joint_layout(t)
    calls = cap.calls
    roles = [adapter.role(c, t) for c in calls]
    cross = []
    for c, r in zip(calls, roles):
        if r is None:
            continue
        o = orient(r, c.probs[0].cpu(), t, adapter, layout)
        if o is None:
            continue
        g = grads.get(c.index)
        cross.append((c.name, o, None if g is None else orient(r, g, t, adapter, layout)))
    if not cross:
        raise FusionInputError(f"No cross-modal attention was captured from {adapter.model_id}: the model may not fuse the modalities.")
    return Captured(adapter, t, score, answer, calls=calls, roles=roles, grads=grads, layout=layout, cross=cross)


# ---------------------------------------------------------------------------------------------- direct read-outs
def attention_stack(cap: Captured) -> np.ndarray | None:
    """``(layers, heads, W, gh, gw)`` raw cross-modal attention of every cross-modal call."""
    if not cap.cross:
        return None
    gh, gw = cap.grid
    return np.stack([o.float().reshape(o.shape[0], cap.n_words, gh, gw).numpy() for _n, o, _g in cap.cross])


def gradcam_stack(cap: Captured) -> np.ndarray | None:
    """``(layers, W, gh, gw)`` Grad-CAM on the cross-attention (ALBEF): ``E_h[A ⊙ (∂s/∂A)⁺]`` per call (zeros without a gradient).

    In captum's terms this is ``LayerGradientXActivation`` on the attention-probability tensor, ReLU'd, averaged over
    heads (``A >= 0``, so ``A ⊙ g⁺ = (A ⊙ g)⁺``); captum's ``LayerGradCam`` is a different rule (it averages the gradient
    over the whole query × key plane per head before weighting A).  tests/test_captum_methods.py shows both on the mini
    model.  It stays written out here because captum needs a module whose *output* is the probability tensor in the
    autograd graph, and our models have none: ``nn.MultiheadAttention`` computes it inside
    ``F.multi_head_attention_forward`` (its returned weights are a side copy no gradient reaches) and transformers' SDPA
    attention never materialises it.  :class:`~explorer.attention.AttentionCapture` recovers ``∂s/∂A = ∂s/∂out · vᵀ`` on
    every capture path, from the one backward that relevance uses too; captum would need the attention rewritten and a
    second pass.
    """
    # Not captum: see the docstring (no module outputs A; the capture's ∂s/∂A serves every path in one backward).
    if not cap.cross:
        return None
    gh, gw = cap.grid
    W = cap.n_words
    return np.stack([(o * g.clamp_min(0)).mean(0).float().reshape(W, gh, gw).numpy() if g is not None
                     else np.zeros((W, gh, gw), np.float32) for _n, o, g in cap.cross])


def similarity(cap: Captured) -> np.ndarray | None:
    """``(W, gh, gw)`` FILIP-style cosine similarity of each word's embedding with each patch's (dual encoders)."""
    if cap.patches is None:
        return None
    gh, gw = cap.grid
    sim = (cap.tokens[torch.tensor(cap.text.words)] @ cap.patches.T).float().cpu()  # (W, L)
    return sim.reshape(cap.n_words, gh, gw).numpy()
