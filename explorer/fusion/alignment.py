"""Which image region each word goes with: per-word maps, token × patch matrices, modality shares.

One forward + one backward per (image, text, model) gives every view:

* ``attention`` — raw cross-modal attention per layer and head, oriented word × patch
  (text→image rows for text-queries models and single-stream models; image→text columns,
  transposed, for image-queries models such as our mini model);
* ``rollout`` — attention flow through every layer of both streams: the bi-modal propagation
  rules of Chefer, Gur & Wolf (ICCV 2021, eqs. 6–11) with the head-mean attention in place of
  the gradient-weighted one (single-stream models: ordinary rollout of the joint sequence);
* ``relevance`` — Chefer et al. 2021 bi-modal gradient relevance of the model's output;
* ``gradcam`` — Grad-CAM on the cross-attention as in ALBEF (Li et al. 2021):
  ``E_h[A ⊙ (∂s/∂A)⁺]`` of one layer (per layer in :attr:`Alignment.gradcam`);
* ``similarity`` — dual encoders (CLIP): FILIP-style cosine similarity of projected patch and
  word embeddings (Yao et al. 2021).

Integrated Gradients per word (captum) is slower and computed on demand by :func:`word_ig`.

    al = align(adapter, image, "a red circle left of a blue square")
    al.maps["relevance"]      # (W, gh, gw), one map per clickable word
    al.attention              # (layers, heads, W, gh, gw)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..attention import AttentionCapture, RolloutAccumulator
from ..preprocess import fit_image
from ..models.fusion_base import FusionAdapter, FusionInputError, TextInput

METHODS = ("attention", "rollout", "relevance", "gradcam", "similarity", "ig")
METHOD_NAMES = {
    "attention": "cross-attention (layer, head)", "rollout": "attention rollout (bi-modal)",
    "relevance": "gradient relevance (Chefer 2021)", "gradcam": "Grad-CAM on cross-attention (ALBEF)",
    "similarity": "token-wise similarity (FILIP)", "ig": "Integrated Gradients (captum)",
}


@dataclass
class Alignment:
    """Everything the cross-modal views show for one (image, text, model); CPU numpy arrays.

    Attributes:
        image: ``(S, S, 3)`` float32, the model input.
        tokens: display tokens of the whole text; ``words``: positions of the clickable ones (``W``).
        score: the model's output scalar; ``answer``: its readable form; ``output_name``.
        grid: ``(gh, gw)``.
        attention: ``(layers, heads, W, gh, gw)`` raw cross-modal attention (``None`` for dual encoders).
        layer_names: names of those layers.
        gradcam: ``(layers, W, gh, gw)`` per-layer Grad-CAM (``None`` for dual encoders).
        maps: method → ``(W, gh, gw)`` (``gradcam`` here = the last cross layer).
        matrix: ``(W, L)`` the token × patch alignment matrix; ``matrix_name`` what it holds.
        notes: what happened to the inputs (fit, truncation, unknown words).
        meta: model id, weights' hash, text, kind (for sidecars).
    """

    image: np.ndarray
    tokens: list[str]
    words: list[int]
    score: float
    answer: str
    output_name: str
    grid: tuple[int, int]
    attention: np.ndarray | None
    layer_names: list[str]
    gradcam: np.ndarray | None
    maps: dict[str, np.ndarray]
    matrix: np.ndarray
    matrix_name: str
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def word_strings(self) -> list[str]:
        return [self.tokens[p] for p in self.words]

    def word_map(self, method: str, word: int, layer: int | None = None, head: int | str = "mean") -> np.ndarray:
        """``(gh, gw)`` map of clickable word ``word`` (0..W-1) for ``method``.

        ``attention`` takes a ``layer`` (default: last) and ``head`` (index or ``"mean"``);
        ``gradcam`` takes a ``layer``.
        """
        if not 0 <= word < len(self.words):
            raise IndexError(f"word {word} out of range: the text has {len(self.words)} clickable words")
        if method == "attention":  # layer None = mean over layers
            if self.attention is None:
                raise KeyError("This model has no cross-modal attention (dual encoder): use 'similarity'.")
            a = self.attention.mean(0) if layer is None else self.attention[layer]
            return a[:, word].mean(0) if head == "mean" else a[int(head), word]
        if method == "gradcam" and layer is not None and self.gradcam is not None:
            return self.gradcam[layer, word]
        if method not in self.maps:
            raise KeyError(f"Method {method!r} is not available for this model; available: {', '.join(self.available)}.")
        return self.maps[method][word]

    @property
    def available(self) -> list[str]:
        out = ["attention"] if self.attention is not None else []
        return out + [m for m in METHODS if m in self.maps and m != "attention"]

    def patch_words(self, method: str, patch: int, **kw) -> np.ndarray:
        """``(W,)``: how strongly each word goes with patch ``patch`` (row-major index) under ``method``."""
        return np.array([self.word_map(method, w, **kw).ravel()[patch] for w in range(len(self.words))])


# ---------------------------------------------------------------------------------------------- helpers
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


def _scatter(a: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, nq: int, nk: int) -> torch.Tensor:
    """``(Tq, Tk)`` → ``(nq, nk)`` placed at canonical positions (entries at -1 dropped)."""
    out = torch.zeros(nq, nk, dtype=torch.float64)
    qm, km = q_pos >= 0, k_pos >= 0
    sub = a.double()[qm][:, km]
    out[q_pos[qm].unsqueeze(1), k_pos[km].unsqueeze(0)] = sub
    return out


def bimodal_propagate(steps, n_text: int, n_image: int) -> dict[str, torch.Tensor]:
    """Chefer et al. 2021 bi-modal rules over calls in forward order.

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
        A = _scatter(abar, role.q_pos, role.k_pos, n[role.query], n[role.key])
        if s == o:  # self-attention: R_ss += A R_ss; R_s,other += A R_s,other
            other = "i" if s == "t" else "t"
            R[s + s] = R[s + s] + A @ R[s + s]
            R[s + other] = R[s + other] + A @ R[s + other]
        else:  # cross-attention, queries s, keys o: R_so += A R_oo; R_ss += A R_os
            R[s + o] = R[s + o] + A @ R[o + o]
            R[s + s] = R[s + s] + A @ R[o + s]
    return R


def _orient(role, probs: torch.Tensor, text: TextInput, adapter: FusionAdapter, layout) -> torch.Tensor | None:
    """One call ``(H, Tq, Tk)`` → ``(H, W, L)`` word × patch, or ``None`` if the call is not cross-modal."""
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
            full[h] = _scatter(probs[h], role.q_pos, role.k_pos, len(text.tokens), adapter.num_image_tokens).to(probs.dtype)
        return full[:, words][:, :, adapter.patch_index]
    full = torch.zeros(H, adapter.num_image_tokens, len(text.tokens), dtype=probs.dtype)
    for h in range(H):
        full[h] = _scatter(probs[h], role.q_pos, role.k_pos, adapter.num_image_tokens, len(text.tokens)).to(probs.dtype)
    return full[:, adapter.patch_index][:, :, words].transpose(1, 2)


def _readout(R: dict, text: TextInput, adapter: FusionAdapter) -> torch.Tensor:
    """Word × patch block of the propagated matrices: text→image if the model has it, else image→text transposed."""
    words = torch.tensor(text.words)
    ti = R["ti"][words][:, adapter.patch_index]
    it = R["it"][adapter.patch_index][:, words].T
    return ti if ti.abs().sum() >= it.abs().sum() else it


# ---------------------------------------------------------------------------------------------- main entry
def align(adapter: FusionAdapter, image, text: str, *, fit: str = "center-crop") -> Alignment:
    """Run the model once (forward + backward) and build every per-word view.

    Args:
        adapter: from :func:`explorer.fusion.load_fusion_model`.
        image: ``(H, W, 3)`` float in [0, 1] or a :class:`~explorer.io.LoadedImage`.
        text: caption or question.
    Raises:
        FusionInputError: empty text, wrong image shape.
    """
    pixels, t, fitted, notes = prepare(adapter, image, text, fit=fit)
    set_target = getattr(adapter, "set_target", None)
    if set_target is not None:
        set_target(pixels, t)
    gh, gw = adapter.grid
    W = len(t.words)
    meta = {"model_id": adapter.model_id, "model_type": adapter.model_type, "weights_sha256": adapter.weights_sha256,
            "text": text, "kind": adapter.kind}
    if W == 0:
        raise FusionInputError("The text has no word the model can read (only special tokens): type a caption.")
    if adapter.kind == "dual-encoder":
        return _align_dual(adapter, pixels, t, fitted, notes, meta)

    calls: list = []
    grads: dict[int, torch.Tensor] = {}
    with AttentionCapture(adapter.capture_root, gradients=True, keep=True,
                          on_backward=lambda c: grads.__setitem__(c.index, c.grad[0].detach().cpu())) as cap:
        with torch.enable_grad():
            s = adapter.score(pixels, t)
            s.sum().backward()
    calls = cap.calls
    adapter.model.zero_grad(set_to_none=True)
    score = float(s.detach()[0])
    answer = adapter.answer_from_score(score) or adapter.answer(pixels, t)  # match models: no second forward
    layout = adapter.joint_layout(t)
    roles = [adapter.role(c, t) for c in calls]

    attn, names, gcam = [], [], []
    for c, r in zip(calls, roles):
        if r is None:
            continue
        p = c.probs[0].cpu()
        o = _orient(r, p, t, adapter, layout)
        if o is None:
            continue
        names.append(c.name)
        attn.append(o.float().reshape(o.shape[0], W, gh, gw).numpy())
        g = grads.get(c.index)
        if g is not None:
            og = _orient(r, g, t, adapter, layout)
            gcam.append((o * og.clamp_min(0)).mean(0).float().reshape(W, gh, gw).numpy())
        else:
            gcam.append(np.zeros((W, gh, gw), np.float32))
    if not attn:
        raise FusionInputError(f"No cross-modal attention was captured from {adapter.model_id}: the model may not fuse the modalities.")

    maps: dict[str, np.ndarray] = {}
    if layout is not None:  # single stream: joint rollout / relevance
        words, ip = torch.tensor(t.words), layout.image[adapter.patch_index]
        ro = RolloutAccumulator()
        rel = None
        for c in calls:
            p = c.probs[0].cpu()
            ro.update(p)
            g = grads.get(c.index)
            if g is not None:
                abar = (g.float() * p.float()).clamp_min(0).mean(0).double()
                rel = torch.eye(abar.shape[0], dtype=torch.float64) if rel is None else rel
                rel = rel + abar @ rel
        maps["rollout"] = ro.result[words][:, ip].float().reshape(W, gh, gw).numpy()
        if rel is not None:
            maps["relevance"] = rel[words][:, ip].float().reshape(W, gh, gw).numpy()
    else:
        n_text, n_img = len(t.tokens), adapter.num_image_tokens
        valid = [(r, c) for r, c in zip(roles, calls) if r is not None]
        R = bimodal_propagate(((r, c.probs[0].cpu().mean(0)) for r, c in valid), n_text, n_img)
        maps["rollout"] = _readout(R, t, adapter).float().reshape(W, gh, gw).numpy()
        rel_steps = [(r, (grads[c.index].float() * c.probs[0].cpu().float()).clamp_min(0).mean(0)) for r, c in valid if c.index in grads]
        R = bimodal_propagate(rel_steps, n_text, n_img)
        maps["relevance"] = _readout(R, t, adapter).float().reshape(W, gh, gw).numpy()
    maps["attention"] = np.stack(attn).mean((0, 1))  # mean over layers and heads
    maps["gradcam"] = gcam[-1]
    matrix = maps["attention"].reshape(W, gh * gw)
    return Alignment(image=fitted, tokens=list(t.tokens), words=list(t.words), score=score, answer=answer,
                     output_name=adapter.output_name, grid=(gh, gw), attention=np.stack(attn), layer_names=names,
                     gradcam=np.stack(gcam), maps=maps, matrix=matrix,
                     matrix_name="cross-attention, mean over layers and heads", notes=notes, meta=meta)


def _align_dual(adapter, pixels, t: TextInput, fitted, notes, meta) -> Alignment:
    gh, gw = adapter.grid
    W = len(t.words)
    with torch.no_grad():
        if hasattr(adapter, "alignment_embeddings"):  # one pass per tower gives the score too
            patches, tokens, score = adapter.alignment_embeddings(pixels, t)
        else:
            patches, tokens = adapter.token_embeddings(pixels, t)
            score = float(adapter.score(pixels, t)[0])
        answer = adapter.answer_from_score(score) or adapter.answer(pixels, t)
        sim = (tokens[torch.tensor(t.words)] @ patches.T).float().cpu()  # (W, L)
    maps = {"similarity": sim.reshape(W, gh, gw).numpy()}
    return Alignment(image=fitted, tokens=list(t.tokens), words=list(t.words), score=score, answer=answer,
                     output_name=adapter.output_name, grid=(gh, gw), attention=None, layer_names=[], gradcam=None,
                     maps=maps, matrix=sim.numpy(), matrix_name="token-wise cosine similarity (FILIP)", notes=notes, meta=meta)


# ---------------------------------------------------------------------------------------------- attributions
def word_ig(adapter: FusionAdapter, image, text: str, word: int, *, steps: int = 16, fit: str = "center-crop") -> np.ndarray:
    """Integrated Gradients (captum) over image patches of *what word ``word`` adds* to the output:
    ``F(x) = s(x, text) − s(x, text with the word masked)``, from the mean-colour image to ``x``.

    Returns:
        ``(gh, gw)`` float32, signed attribution summed per patch (positive: the patch supports the word).
    """
    from captum.attr import IntegratedGradients

    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    if not 0 <= word < len(t.words):
        raise IndexError(f"word {word} out of range: the text has {len(t.words)} clickable words")
    blank = adapter.blank_text(t, [t.words[word]])
    ig = IntegratedGradients(lambda x: (adapter.score(x, t) - adapter.score(x, blank)).float())
    with torch.enable_grad():
        attr = ig.attribute(pixels.float(), baselines=adapter.blank_pixels(pixels).float(), n_steps=steps,
                            internal_batch_size=steps)
    a = attr.detach().sum(1)[0].cpu().numpy()
    gh, gw = adapter.grid
    p = adapter.patch_size
    return a.reshape(gh, p, gw, p).sum((1, 3)).astype(np.float32)


@dataclass
class ModalityReport:
    """How much the output depends on each modality.

    Attributes:
        score: output on the full input.
        masked: ``{"image": s(no image, text), "text": s(image, no text), "both": s(neither)}``.
        ig_image, ig_text: Integrated Gradients totals per modality along the joint path
            (both modalities scaled from their blank baseline together); ``ig_delta``: completeness gap
            ``|Σ attributions − (s(x) − s(baseline))|``.
        word_attribution: ``(W,)`` IG per clickable word; ``patch_attribution``: ``(gh, gw)``.
    """

    score: float
    masked: dict[str, float]
    ig_image: float
    ig_text: float
    ig_delta: float
    word_attribution: np.ndarray
    patch_attribution: np.ndarray

    @property
    def image_share(self) -> float:
        tot = abs(self.ig_image) + abs(self.ig_text)
        return abs(self.ig_image) / tot if tot > 0 else 0.5


def modality_report(adapter: FusionAdapter, image, text: str, *, steps: int = 64, fit: str = "center-crop") -> ModalityReport:
    """Masking each modality entirely, and captum Integrated Gradients over both inputs at once
    (pixels and the text token embeddings, as LayerIntegratedGradients does for the embedding layer)."""
    from captum.attr import IntegratedGradients

    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    set_target = getattr(adapter, "set_target", None)
    if set_target is not None:
        set_target(pixels, t)
    blank_t = adapter.blank_text(t)
    blank_p = adapter.blank_pixels(pixels)
    with torch.no_grad():
        full = float(adapter.score(pixels, t)[0])
        masked = {"image": float(adapter.score(blank_p, t)[0]), "text": float(adapter.score(pixels, blank_t)[0]),
                  "both": float(adapter.score(blank_p, blank_t)[0])}
        emb = adapter.embed_text(t).detach()
        emb0 = adapter.embed_text(blank_t).detach()

    ig = IntegratedGradients(lambda x, e: adapter.score(x, t, text_embeds=e).float())
    with torch.enable_grad():
        (ai, at), delta = ig.attribute((pixels.float(), emb.float()), baselines=(blank_p.float(), emb0.float()), n_steps=steps,
                                       internal_batch_size=steps, return_convergence_delta=True)
    gh, gw = adapter.grid
    p = adapter.patch_size
    patch = ai.detach().sum(1)[0].cpu().numpy().reshape(gh, p, gw, p).sum((1, 3))
    per_tok = at.detach().sum(-1)[0].cpu().numpy()  # rows of the embedding output
    pos = adapter.embedding_positions(t)
    by_pos = dict(zip(pos, per_tok))
    words = np.array([by_pos.get(w, 0.0) for w in t.words], np.float32)
    return ModalityReport(score=full, masked=masked, ig_image=float(ai.sum()), ig_text=float(at.sum()),
                          ig_delta=float(delta.abs().max()), word_attribution=words, patch_attribution=patch.astype(np.float32))


# ---------------------------------------------------------------------------------------------- ground truth
def pointing_hits(al: Alignment, word_masks: dict[int, np.ndarray], methods=None, *, layer=None) -> dict[str, list[bool]]:
    """Pointing game on one input: for each clickable word with a ground-truth mask (``word index → (S, S) bool``),
    does the maximum of its map fall on a patch that overlaps the mask?  Returns method → hits."""
    gh, gw = al.grid
    out: dict[str, list[bool]] = {}
    for m in methods or al.available:
        for w, mask in word_masks.items():
            S = mask.shape[0]
            cover = mask.reshape(gh, S // gh, gw, S // gw).any((1, 3))
            mp = al.word_map(m, w, layer=layer) if m in ("attention", "gradcam") else al.word_map(m, w)
            out.setdefault(m, []).append(bool(cover.flat[int(np.argmax(mp))]))
    return out


def deletion_auc(adapter: FusionAdapter, image, text: str, patch_map: np.ndarray, *, steps: int = 8, seed: int = 0,
                 fit: str = "center-crop") -> dict[str, float]:
    """Deletion curve of the output: blank patches (mean colour) in the order of ``patch_map`` ``(gh, gw)``,
    highest first, and in a seeded random order; the area under each curve (the output averaged over the
    fraction deleted, in the output's units: lower = the map found what the output needs).
    Returns ``{"map": auc, "random": auc}``."""
    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    gh, gw = adapter.grid
    p = adapter.patch_size
    L = gh * gw
    rng = np.random.default_rng(seed)
    orders = {"map": np.argsort(-np.asarray(patch_map, np.float64).ravel(), kind="stable"), "random": rng.permutation(L)}
    fracs = np.linspace(0, 1, steps + 1)
    out = {}
    with torch.no_grad():
        base = adapter.blank_pixels(pixels)
        for name, order in orders.items():
            batch = []
            for f in fracs:
                keep = torch.ones(L, dtype=pixels.dtype, device=pixels.device)
                keep[torch.as_tensor(order[: int(round(f * L))], device=pixels.device)] = 0
                m = keep.view(1, 1, gh, 1, gw, 1).expand(1, 1, gh, p, gw, p).reshape(1, 1, gh * p, gw * p)
                batch.append(pixels * m + base * (1 - m))
            s = adapter.score(torch.cat(batch), t).float().cpu().numpy()
            out[name] = float(np.trapezoid(s, fracs))
    return out
