"""Are the per-word maps faithful?  Ground truth (pointing game) and the model itself (deletion curves).

* :func:`pointing_hits` — does each word's map peak on its object (generated scenes know where it is)?
* :func:`deletion_auc` — blank patches in the map's order, and in many seeded random orders: does the map hurt
  the output sooner than the random orders' 95% band?
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..attention.faithfulness import BAND, Stopped, random_band, verdict
from ..models.fusion_base import FusionAdapter
from .capture import prepare


def pointing_hits(al, word_masks: dict[int, np.ndarray], methods=None, *, layer=None) -> dict[str, list[bool]]:
    """Pointing game on one input: for each clickable word with a ground-truth mask (``word index → (S, S) bool``),
    does the maximum of its map fall on a patch that overlaps the mask?

    Args:
        al: an :class:`~explorer.fusion.Alignment`.
        methods: names from the method registry (default: the ones ``al`` holds); ``layer`` goes to those that take one.
    Returns:
        method → hits, one per word of ``word_masks``.
    """
    gh, gw = al.grid
    out: dict[str, list[bool]] = {}
    for m in methods or al.available:
        for w, mask in word_masks.items():
            S = mask.shape[0]
            cover = mask.reshape(gh, S // gh, gw, S // gw).any((1, 3))
            mp = al.word_map(m, w, layer=layer)  # methods without layers ignore it
            out.setdefault(m, []).append(bool(cover.flat[int(np.argmax(mp))]))
    return out


def deletion_auc(adapter: FusionAdapter, image, text: str, patch_map: np.ndarray, *, steps: int = 8, seed: int = 0,
                 fit: str = "center-crop", random_orders: int = 20, band: float = BAND, lock=None,
                 should_stop=None) -> dict:
    """Deletion curve of the output: blank patches (mean colour) in the order of ``patch_map`` ``(gh, gw)``,
    highest first, and in ``random_orders`` seeded random orders (order ``i`` uses seed ``seed + i``); the area
    under each curve (the output averaged over the fraction deleted, in the output's units: lower = the map found
    what the output needs).

    Returns:
        ``{"map": auc, "random": mean of the random orders' AUCs, "random_aucs": (N,) array, "band": (low, high)
        central ``band`` of them, "verdict": "better than random" | "worse than random" | "not distinguishable
        from random", "orders": N}``.
    """
    if int(random_orders) < 2:
        raise ValueError("At least 2 random orders are needed for a reference band (20 or more is better).")
    pixels, t, _, _ = prepare(adapter, image, text, fit=fit)
    gh, gw = adapter.grid
    p = adapter.patch_size
    L = gh * gw
    orders = [np.argsort(-np.asarray(patch_map, np.float64).ravel(), kind="stable")]
    orders += [np.random.default_rng(seed + i).permutation(L) for i in range(int(random_orders))]
    fracs = np.linspace(0, 1, steps + 1)
    aucs = []
    with torch.no_grad():
        base = adapter.blank_pixels(pixels)
        for order in orders:
            if should_stop is not None and should_stop():
                raise Stopped("superseded")
            batch = []
            for f in fracs:
                keep = torch.ones(L, dtype=pixels.dtype, device=pixels.device)
                keep[torch.as_tensor(order[: int(round(f * L))], device=pixels.device)] = 0
                m = keep.view(1, 1, gh, 1, gw, 1).expand(1, 1, gh, p, gw, p).reshape(1, 1, gh * p, gw * p)
                batch.append(pixels * m + base * (1 - m))
            with lock or contextlib.nullcontext():
                s = adapter.score(torch.cat(batch), t).float().cpu().numpy()
            aucs.append(float(np.trapezoid(s, fracs)))
    rnd = np.asarray(aucs[1:])
    return {"map": aucs[0], "random": float(rnd.mean()), "random_aucs": rnd, "band": random_band(rnd, band),
            "verdict": verdict(aucs[0], rnd, lower_is_better=True, band=band), "orders": len(rnd)}


def randomise_fusion_layers(adapter: FusionAdapter, layer_names, n_layers: int, seed: int = 0) -> FusionAdapter:
    """A copy of ``adapter`` whose last ``n_layers`` cross-modal attention modules (``layer_names``, module paths under
    ``adapter.capture_root`` in forward order, as :attr:`Alignment.layer_names` lists them) get fresh weights."""
    import copy

    from ..attention.faithfulness import redraw

    new = copy.copy(adapter)
    new.model = copy.deepcopy(adapter.model)
    new._sha = None
    modules = dict(new.capture_root.named_modules())
    names = list(dict.fromkeys(layer_names))  # one module may make several calls
    chosen = names[len(names) - max(1, min(int(n_layers), len(names))):]
    missing = [n for n in chosen if n not in modules]
    if missing:
        raise ValueError(f"The cross-modal layers {missing} are not modules of {adapter.model_id}.")
    redraw([modules[n] for n in chosen], torch.Generator().manual_seed(seed))
    return new


def fusion_randomisation_check(adapter: FusionAdapter, image, text: str, method: str, word: int, *, levels=None,
                               seed: int = 0, threshold: float = 0.5, fit: str = "center-crop", **settings):
    """The cascading model-randomisation test (Adebayo et al. 2018) for one word's map: the top cross-modal layers are
    re-drawn (1, half, all by default) and word ``word``'s ``method`` map recomputed each time.

    Returns:
        :class:`explorer.attention.faithfulness.SanityCheck` (per-level Spearman / SSIM, outcome, verdict).
    """
    from ..attention.faithfulness import cascade
    from .alignment import align

    al = align(adapter, image, text, fit=fit)
    names = list(dict.fromkeys(al.layer_names))
    if not names:
        raise ValueError(f"{adapter.model_id} has no cross-modal attention layer to randomise.")

    def randomised(n):
        rand = randomise_fusion_layers(adapter, names, n, seed)
        return align(rand, image, text, fit=fit).word_map(method, word, adapter=rand, **settings)

    return cascade(len(names), lambda: al.word_map(method, word, adapter=adapter, **settings), randomised,
                   levels=levels, threshold=threshold)
