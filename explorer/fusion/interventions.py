"""Interventions on image+text models: ablate cross-modal heads, sweep them, patch them between a caption and a
counterfactual caption.

    al = align(adapter, image, "a green circle above a blue triangle")
    ab = ablate_fusion(adapter, image, text, [(1, 2)])      # Δ score, the word maps with and without the head
    imp = fusion_head_importance(adapter, image, text)       # (L, H) Δ score
    pt = patch_fusion(adapter, image, text, "a green circle above a blue square")  # (L, H) share restored

The heads are those of the model's cross-modal layers — the layers the alignment views show
(:attr:`explorer.fusion.Alignment.layer_names`: cross-attention, or the joint layers of a single-stream model) —
unless the adapter names its own (:meth:`~explorer.models.fusion_base.FusionAdapter.intervention_layers`; CLIP's
towers never meet, so it names its image tower's layers).  The hook mechanism, modes and batched sweeps are those of
:mod:`explorer.attention.interventions`; the number is the model's output scalar (:meth:`FusionAdapter.score`:
match logit, CLIP's scaled cosine, the answer's logit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from ..attention.interventions import (HeadImportance, Patching, Probe, _cached, _expand, _sha, ablation_edit,
                                       heads_by_layer, run_ablation, run_importance, run_patching)
from ..models.fusion_base import FusionAdapter, FusionInputError, TextInput
from .capture import capture, prepare


def fusion_layers(adapter: FusionAdapter, pixels: torch.Tensor, text: TextInput) -> tuple[list[str], list]:
    """``(names, modules)`` of the layers whose heads are ablated / patched (see the module docstring)."""
    own = adapter.intervention_layers()
    if own is not None:
        return [n for n, _m in own], [m for _n, m in own]
    cap = capture(adapter, pixels, text, gradients=False)
    names = [n for n, _o, _g in cap.cross]
    root = adapter.capture_root
    return names, [root.get_submodule(n) for n in names]


def intervention_shape(adapter: FusionAdapter, image, text: str, *, fit: str = "center-crop") -> tuple[int, int]:
    """``(L, H)``: the layers and heads per layer the interventions reach for this model and text."""
    pixels, t, _f, _n, names, sites = _setup(adapter, image, text, fit)
    return len(sites), _num_heads(adapter, pixels, t, sites)


def fusion_probe(adapter: FusionAdapter, pixels: torch.Tensor, text: TextInput, names: list, sites: list) -> Probe:
    """The :class:`~explorer.attention.interventions.Probe` of ``adapter.score`` on one (image, text)."""
    num_heads = _num_heads(adapter, pixels, text, sites)

    def run(B):
        return adapter.score(_expand(pixels, B), text).float().cpu().numpy()

    key = (adapter.weights_sha256, _sha(pixels.float().cpu().numpy(), text.ids.cpu().numpy(), tuple(names)), "score")
    return Probe(adapter.output_name, run, lambda out: np.asarray(out, np.float64), sites=sites, num_heads=num_heads,
                 root=adapter.capture_root, key=key)


def _num_heads(adapter, pixels, text, sites) -> int:
    """Heads per layer, read from one forward (every layer must have the same number)."""
    from ..attention.interventions import HeadHooks

    with torch.no_grad(), HeadHooks(sites, lambda _l, _o: None, root=adapter.capture_root) as hooks:
        adapter.score(pixels, text)
    hooks.check()
    heads = {shape[1] for _l, shape in hooks.calls}
    if len(heads) != 1:
        raise FusionInputError(f"The cross-modal layers of {adapter.model_id} differ in their number of heads ({sorted(heads)}).")
    return heads.pop()


def _setup(adapter: FusionAdapter, image, text: str, fit: str):
    pixels, t, fitted, notes = prepare(adapter, image, text, fit=fit)
    adapter.set_target(pixels, t)
    names, sites = fusion_layers(adapter, pixels, t)
    if not sites:
        raise FusionInputError(f"{adapter.model_id} has no cross-modal attention layers to ablate.")
    return pixels, t, fitted, notes, names, sites


@dataclass(frozen=True)
class FusionAblation:
    """One ablation of an image+text model against the intact model.

    Attributes:
        heads: ablated ``(layer, head)`` pairs (layers: :attr:`layer_names`), sorted; mode: ``"zero"`` / ``"mean"``.
        what: the output scalar, in words; intact / ablated: its values; ``delta = ablated - intact``.
        method: the word-map method compared; words: the clickable words.
        intact_maps / ablated_maps: ``(W, gh, gw)`` word maps of ``method``; diff_maps: ablated − intact.
        pointing_intact / pointing_ablated: share of words with ground truth whose map peak falls on the word's
            object (pointing game), or ``None`` without ground truth.
        image: ``(S, S, 3)`` the model input; text: the caption.
    """

    heads: tuple
    mode: str
    what: str
    intact: float
    ablated: float
    method: str
    words: tuple
    intact_maps: np.ndarray
    ablated_maps: np.ndarray
    layer_names: tuple
    image: np.ndarray
    text: str
    pointing_intact: "float | None" = None
    pointing_ablated: "float | None" = None
    notes: tuple = ()

    @property
    def delta(self) -> float:
        return self.ablated - self.intact

    @property
    def diff_maps(self) -> np.ndarray:
        return self.ablated_maps - self.intact_maps

    @property
    def delta_pointing(self) -> "float | None":
        if self.pointing_intact is None:
            return None
        return self.pointing_ablated - self.pointing_intact


def _maps(al, method: str, settings: dict) -> np.ndarray:
    return np.stack([np.asarray(al.word_map(method, w, **settings), np.float32) for w in range(len(al.words))])


def ablate_fusion(adapter: FusionAdapter, image, text: str, heads: Iterable, *, mode: str = "zero",
                  method: "str | None" = None, layer: "int | None" = None, head="mean", word_masks: "dict | None" = None,
                  fit: str = "center-crop") -> FusionAblation:
    """Ablate ``heads`` (``[(layer, head | None)]`` over the cross-modal layers) and compare score and word maps.

    Args:
        method: the word-map method compared (default: ``"relevance"`` where the model has it, else the first cached
            method); ``layer`` / ``head``: its settings, as in :meth:`Alignment.word_map`.
        word_masks: ground truth ``{word index: (S, S) bool}`` (generated scenes): adds the pointing game.
    """
    from .alignment import align
    from .faithfulness import pointing_hits
    from ..attention.interventions import HeadHooks

    pixels, t, fitted, notes, names, sites = _setup(adapter, image, text, fit)
    probe = fusion_probe(adapter, pixels, t, names, sites)
    spec = heads_by_layer(heads, probe.num_layers, probe.num_heads)
    pairs, s0, s1, _o0, _o1 = run_ablation(probe, heads, mode)

    def aligned(edit):
        with HeadHooks(sites, edit, root=adapter.capture_root) as hooks:
            al = align(adapter, fitted, text, fit=fit)
        hooks.check()
        return al

    al0 = aligned(ablation_edit({}, mode))
    al1 = al0 if not pairs else aligned(ablation_edit(spec, mode))
    method = method or ("relevance" if "relevance" in al0.maps else al0.available[0])
    if al0.method(method).on_demand:
        raise FusionInputError(f"{al0.method(method).label} is computed on demand; compare a cached method "
                               f"({', '.join(al0.available)}).")
    settings = dict(layer=layer, head=head)
    p0 = p1 = None
    if word_masks:
        h0 = pointing_hits(al0, word_masks, [method], layer=layer)[method]
        h1 = pointing_hits(al1, word_masks, [method], layer=layer)[method]
        p0, p1 = float(np.mean(h0)), float(np.mean(h1))
    return FusionAblation(pairs, mode, adapter.output_name, s0, s1, method, tuple(al0.word_strings),
                          _maps(al0, method, settings), _maps(al1, method, settings), tuple(names), fitted, text, p0, p1,
                          tuple(notes))


def fusion_head_importance(adapter: FusionAdapter, image, text: str, *, mode: str = "zero", fit: str = "center-crop",
                           batched: bool = True) -> HeadImportance:
    """Every cross-modal head ablated in turn: ``(L, H)`` Δ score (cached per weights, input, text and mode)."""
    pixels, t, _f, notes, names, sites = _setup(adapter, image, text, fit)
    probe = fusion_probe(adapter, pixels, t, names, sites)
    notes = (f"layers: {', '.join(names)}", *notes)
    t0 = time.perf_counter()
    if not batched:
        d, ld, s0 = run_importance(probe, mode, batched=False)
        return HeadImportance(d, ld, s0, probe.what, mode, seconds=time.perf_counter() - t0, notes=notes)
    (d, ld, s0), hit = _cached(("fusion-importance", *probe.key, mode), lambda: run_importance(probe, mode))
    return HeadImportance(d, ld, s0, probe.what, mode, seconds=0.0 if hit else time.perf_counter() - t0, notes=notes)


def patch_fusion(adapter: FusionAdapter, image, text: str, counterfactual: str, *, fit: str = "center-crop",
                 batched: bool = True) -> Patching:
    """Activation patching: the model runs on ``counterfactual`` (e.g. one word changed) with the cross-modal heads'
    outputs of ``text`` patched in, one head (and one whole layer) at a time: ``(L, H)`` share of the score
    difference restored.

    Raises:
        FusionInputError: the two texts tokenise to different lengths where the patched outputs depend on it (text
            queries); change one word for one word.
    """
    pixels, t, _f, notes, names, sites = _setup(adapter, image, text, fit)
    t_cf = adapter.tokenize(counterfactual)
    p_clean = fusion_probe(adapter, pixels, t, names, sites)
    p_bad = fusion_probe(adapter, pixels, t_cf, names, sites)
    t0 = time.perf_counter()
    from ..attention.capture import AttentionError

    try:
        if not batched:
            r, lr, c, k, pt = run_patching(p_clean, p_bad, batched=False)
            seconds = time.perf_counter() - t0
        else:
            (r, lr, c, k, pt), hit = _cached(("fusion-patching", *p_clean.key, *p_bad.key),
                                             lambda: run_patching(p_clean, p_bad))
            seconds = 0.0 if hit else time.perf_counter() - t0
    except AttentionError as e:
        raise FusionInputError(f"{e} The texts have {len(t.tokens)} and {len(t_cf.tokens)} tokens: change one word for "
                               "one word.") from e
    return Patching(r, lr, c, k, pt, p_clean.what, f"counterfactual text: {counterfactual!r}", seconds=seconds,
                    notes=(f"layers: {', '.join(names)}", *notes, *t_cf.notes))


def patch_fusion_heads(adapter: FusionAdapter, image, text: str, counterfactual: str, heads: Iterable, *,
                       fit: str = "center-crop") -> float:
    """Share of the score difference restored by patching ``heads`` (``[(layer, head | None)]``) all at once."""
    pixels, t, _f, _n, names, sites = _setup(adapter, image, text, fit)
    t_cf = adapter.tokenize(counterfactual)
    return run_patching(fusion_probe(adapter, pixels, t, names, sites), fusion_probe(adapter, pixels, t_cf, names, sites),
                        heads=list(heads))


__all__ = ["FusionAblation", "ablate_fusion", "fusion_head_importance", "fusion_layers", "fusion_probe", "intervention_shape", "patch_fusion",
           "patch_fusion_heads"]
