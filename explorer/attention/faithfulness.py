"""Is the map faithful to the model?  Deletion / insertion curves and the randomisation check.

* :func:`deletion_insertion` — patches are removed (deletion) or added (insertion) in the map's
  order, most important first, and the model's score is recorded (Petsiuk et al. 2018).  How a
  patch is removed and what is scored is the adapter's knowledge
  (:meth:`~explorer.models.base.ImageAdapter.faithfulness_scorer`): for an MAE the patches are
  *hidden* (the encoder simply does not see them) and the score is the cosine similarity of the
  encoder's CLS output to the full image's; for a classifier the patches are replaced by the
  image's mean colour and the score is the target logit; for encoders without labels (CLIP,
  DINOv2, VideoMAE tubelets) the mean colour and the embedding's cosine similarity.  A faithful
  map gives a low deletion AUC and a high insertion AUC.
* :func:`randomisation_check` — the model-parameter randomisation test of Adebayo et al. (2018):
  the top layers' weights are re-drawn (seeded) and the map recomputed.  A method that depends
  on the model must change; Spearman rank correlation and SSIM between the two maps say how much.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .capture import AttentionError


@dataclass(frozen=True)
class Curves:
    """Deletion / insertion curves of one map.

    Attributes:
        fractions: ``(K,)`` fraction of patches removed (deletion) / added (insertion).
        deletion, insertion: ``(K,)`` scores normalised so the full image scores 1.
        deletion_auc, insertion_auc: trapezoid areas over ``fractions`` (0..1).
        random_deletion_auc, random_insertion_auc: the same for a random order (seeded), the reference.
        score: what the score is, in words.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    score: str


def _auc(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _scorer(adapter, pixels: np.ndarray, target: int | None) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """``f(keep (K, num_patches) bool) -> (K,) scores`` and what they are: the adapter's own
    (:meth:`~explorer.models.base.ImageAdapter.faithfulness_scorer`: hidden patches for an MAE, the mean colour
    and the target logit or embedding similarity for the others)."""
    return adapter.faithfulness_scorer(adapter.normalise_input(pixels), target)


def deletion_insertion(model, image, patch_map: np.ndarray, *, steps: int = 10, seed: int = 0, target: int | None = None,
                       fit: str = "center-crop") -> Curves:
    """Deletion and insertion curves for ``patch_map`` (``layout.grid``-shaped, higher = more important).

    ``steps + 1`` points from 0 to 100% of the patches (video: tubelets); ties are broken by patch index.
    The random-order reference uses ``seed``.
    """
    from .maps import _adapter, _prepare

    adapter = _adapter(model, "deletion_insertion")
    pixels, _, _ = _prepare(adapter, image, fit)
    L = adapter.layout.num_patches
    pm = np.asarray(patch_map, np.float64).reshape(-1)
    if pm.size != L:
        raise AttentionError(f"The map has {pm.size} patches, the model {L} ({'x'.join(map(str, adapter.layout.grid))}).")
    f, what = _scorer(adapter, pixels, target)
    fractions = np.linspace(0, 1, steps + 1)
    counts = np.round(fractions * L).astype(int)
    order = np.lexsort((np.arange(L), -np.nan_to_num(pm, nan=-np.inf)))
    rnd = np.random.default_rng(seed).permutation(L)

    def curves(o):
        dele = np.ones((len(counts), L), bool)
        ins = np.zeros((len(counts), L), bool)
        for i, c in enumerate(counts):
            dele[i, o[:c]] = False
            ins[i, o[:c]] = True
        return dele, ins

    d, i = curves(order)
    rd, ri = curves(rnd)
    scores = f(np.concatenate([d, i, rd, ri]))
    full = float(f(np.ones((1, L), bool))[0])
    norm = full if abs(full) > 1e-9 else 1.0
    k = len(counts)
    dd, ii, rdd, rii = (scores[j * k : (j + 1) * k] / norm for j in range(4))
    return Curves(fractions, dd, ii, _auc(dd, fractions), _auc(ii, fractions), _auc(rdd, fractions), _auc(rii, fractions), what)


@dataclass(frozen=True)
class SanityCheck:
    """Outcome of the cascading model-randomisation test.

    Attributes:
        levels: numbers of top blocks randomised, e.g. ``(1, 3, 6)``.
        spearman, ssim: ``(len(levels),)`` similarity of the map to the original at each level
            (rank correlation; SSIM of the maps scaled to [0, 1]); 1 = unchanged.
        passed: True if at some level the map changed (``min(spearman) < threshold``): the method
            depends on the weights.  A method that ignores the model stays at 1 and fails.
        original: ``(gh, gw)``; randomised_maps: ``(len(levels), gh, gw)``.
    """

    levels: tuple[int, ...]
    spearman: np.ndarray
    ssim: np.ndarray
    passed: bool
    original: np.ndarray
    randomised_maps: np.ndarray
    threshold: float


def _rank(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a), np.float64)
    r[order] = np.arange(len(a))
    # Average ranks of ties, so a constant map does not look ordered.
    vals, inv = np.unique(a, return_inverse=True)
    sums = np.bincount(inv, weights=r)
    cnt = np.bincount(inv)
    return (sums / cnt)[inv]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened)."""
    ra, rb = _rank(np.ravel(a)), _rank(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(ra, rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    def unit(m):
        m = np.asarray(m, np.float64)
        span = m.max() - m.min()
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)

    a, b = unit(a), unit(b)
    if a.ndim == 3:  # video tubelets: the mean over time steps
        return float(np.mean([_ssim(x, y) for x, y in zip(a, b)]))
    side = min(a.shape)
    if side < 3:
        return float("nan")
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def randomise_top_layers(adapter, n_layers: int, seed: int = 0):
    """A deep copy of ``adapter`` whose last ``n_layers`` encoder blocks (and any head) get fresh weights."""
    new = copy.copy(adapter)
    new.model = copy.deepcopy(adapter.model)
    new._sha = None
    gen = torch.Generator().manual_seed(seed)
    blocks = new.blocks
    extra = new.head_modules
    n = max(1, min(int(n_layers), len(blocks)))
    names = [f"layer {i}" for i in range(len(blocks) - n, len(blocks))]
    with torch.no_grad():
        for mod in [*list(blocks)[len(blocks) - n :], *extra]:
            for p in mod.parameters():
                # Fresh Gaussian weights with each tensor's own mean and spread: the structure the
                # training put in is gone, the scale (how peaked attention can be) is kept.
                mean, std = p.float().mean(), p.float().std() if p.numel() > 1 else torch.tensor(0.0)
                p.copy_((torch.randn(p.shape, generator=gen) * std + mean).to(p))
    return new, tuple(names + [type(m).__name__ for m in extra])


def randomisation_check(model, image, method: Callable, *, levels=None, seed: int = 0, threshold: float = 0.5) -> SanityCheck:
    """Run ``method(adapter, image) -> map`` on the model and on copies with the top blocks randomised.

    Args:
        method: any map function, e.g. ``lambda m, im: explain(m, im, "rollout").map``.
        levels: how many top blocks to randomise, cascading (default: 1, half, all).
        threshold: Spearman correlation below which the map counts as changed.
    """
    from .maps import _adapter

    adapter = _adapter(model, "randomisation_check")
    depth = len(adapter.blocks)
    levels = tuple(sorted({max(1, min(int(n), depth)) for n in (levels or (1, depth // 2, depth))}))
    a = np.asarray(method(adapter, image), np.float64)
    rho, ss, maps = [], [], []
    for n in levels:
        rand, _names = randomise_top_layers(adapter, n, seed)
        b = np.asarray(method(rand, image), np.float64)
        rho.append(spearman(a, b))
        ss.append(_ssim(a, b))
        maps.append(b.astype(np.float32))
    return SanityCheck(levels, np.array(rho), np.array(ss), bool(min(rho) < threshold), a.astype(np.float32), np.stack(maps), threshold)
