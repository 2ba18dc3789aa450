"""Is the map faithful to the model?  Deletion / insertion curves against many random orders, the
randomisation check, and how the verdicts move with the way patches are removed.

* :func:`deletion_insertion` — patches are removed (deletion) or added (insertion) in the map's
  order, most important first, and the model's score is recorded (Petsiuk et al. 2018).  The
  reference is not one random order but ``random_orders`` seeded ones: the map's area is compared
  with the central 95% of theirs, and a map inside that band is *not distinguishable from random*.
  How a patch is removed (``fill``) and what is scored is the adapter's knowledge
  (:meth:`~explorer.models.base.ImageAdapter.faithfulness_scorer`): every model can fill removed
  patches with the input's mean colour (``"mean"``) or a blurred copy (``"blur"``); an MAE can also
  *hide* them (the encoder does not see them, ``"hide"``, its default) or fill them with its own
  reconstruction from the kept patches (``"mae"``), so that deletion measures information rather than
  the model's surprise at grey squares.  The score: the cosine similarity of the MAE encoder's CLS
  output to the full image's; the target logit of a classifier; the embedding's cosine similarity for
  encoders without labels.  A faithful map gives a low deletion AUC and a high insertion AUC.
* :func:`compare_fills` — the same maps under every fill, and how the methods' ranking changes.
* :func:`randomisation_check` — the model-parameter randomisation test of Adebayo et al. (2018):
  the top layers' weights are re-drawn (seeded) and the map recomputed.  A method that depends
  on the model must change; Spearman rank correlation and SSIM between the two maps say how much,
  level by level.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .capture import AttentionError

#: the share of random orders inside the reference band (two-sided)
BAND = 0.95

#: masks scored per batch (and per turn of the lock, for background work)
BATCH = 32


class Stopped(Exception):
    """Raised inside :func:`deletion_insertion` when ``should_stop()`` says the work was superseded."""


#: random-order reference curves kept per (model, input, fill, target, steps, seed, orders); oldest dropped first
_REFERENCE: dict = {}
_REFERENCE_SIZE = 32


def random_band(values: np.ndarray, band: float = BAND) -> tuple[float, float]:
    """``(low, high)``: the central ``band`` of ``values`` (percentiles), the range a random order falls in."""
    v = np.asarray(values, np.float64)
    q = (1.0 - band) / 2.0
    return float(np.quantile(v, q)), float(np.quantile(v, 1.0 - q))


def verdict(value: float, values: np.ndarray, *, lower_is_better: bool, band: float = BAND) -> str:
    """``"better than random"``, ``"worse than random"`` or ``"not distinguishable from random"``: where
    ``value`` lies against the central ``band`` of the random orders' ``values``."""
    lo, hi = random_band(values, band)
    if lo <= value <= hi:
        return "not distinguishable from random"
    better = value < lo if lower_is_better else value > hi
    return "better than random" if better else "worse than random"


@dataclass(frozen=True)
class Curves:
    """Deletion / insertion curves of one map, with many random orders as the reference.

    Attributes:
        fractions: ``(K,)`` fraction of patches removed (deletion) / added (insertion).
        deletion, insertion: ``(K,)`` scores normalised so the full image scores 1.
        deletion_auc, insertion_auc: trapezoid areas over ``fractions`` (0..1).
        random_deletion_aucs, random_insertion_aucs: ``(N,)`` the same for ``N`` seeded random orders.
        random_deletion, random_insertion: ``(K,)`` the random orders' mean curves.
        score: what the score is, in words; fill: how removed patches were filled.
        seed: seed of the first random order (order ``i`` uses ``seed + i``); band: the reference band's share.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    random_deletion_aucs: np.ndarray
    random_insertion_aucs: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    score: str
    fill: str = "mean"
    seed: int = 0
    band: float = BAND

    @property
    def random_deletion_auc(self) -> float:
        """Mean deletion AUC of the random orders."""
        return float(np.mean(self.random_deletion_aucs))

    @property
    def random_insertion_auc(self) -> float:
        """Mean insertion AUC of the random orders."""
        return float(np.mean(self.random_insertion_aucs))

    @property
    def random_deletion_band(self) -> tuple[float, float]:
        return random_band(self.random_deletion_aucs, self.band)

    @property
    def random_insertion_band(self) -> tuple[float, float]:
        return random_band(self.random_insertion_aucs, self.band)

    @property
    def deletion_verdict(self) -> str:
        return verdict(self.deletion_auc, self.random_deletion_aucs, lower_is_better=True, band=self.band)

    @property
    def insertion_verdict(self) -> str:
        return verdict(self.insertion_auc, self.random_insertion_aucs, lower_is_better=False, band=self.band)

    @property
    def fill_description(self) -> str:
        """How removed patches were filled, in words (``"hidden from the encoder …"``)."""
        return FILL_NAMES.get(self.fill, self.fill)

    def summary(self) -> str:
        """One sentence with the numbers and the verdicts, e.g. ``"deletion AUC 0.947 (random 0.949, 95% of
        20 orders in 0.921–0.975): not distinguishable from random; insertion AUC …"``."""
        n = len(self.random_deletion_aucs)
        pct = f"{round(self.band * 100)}%"
        parts = []
        for name, auc, mean, (lo, hi), v in (
                ("deletion", self.deletion_auc, self.random_deletion_auc, self.random_deletion_band, self.deletion_verdict),
                ("insertion", self.insertion_auc, self.random_insertion_auc, self.random_insertion_band, self.insertion_verdict)):
            parts.append(f"{name} AUC {auc:.3f} (random orders: mean {mean:.3f}, {pct} of {n} in {lo:.3f}–{hi:.3f}): {v}")
        return "; ".join(parts) + f". Removed patches: {self.fill_description}."


#: what each fill does, in words (figures, notes, the app)
FILL_NAMES = {
    "mean": "filled with the input's mean colour",
    "blur": "filled with a blurred copy of the input",
    "hide": "hidden from the encoder (an MAE simply does not see them)",
    "mae": "filled with the MAE's own reconstruction from the kept patches",
}


def _auc(y: np.ndarray, x: np.ndarray):
    """Trapezoid area of ``y (..., K)`` over ``x (K,)``: a float for one curve, an array for a stack."""
    a = np.sum((y[..., 1:] + y[..., :-1]) * np.diff(x), axis=-1) / 2.0
    return float(a) if np.ndim(a) == 0 else a


def _scorer(adapter, pixels: np.ndarray, target: int | None, fill: str | None = None
            ) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """``f(keep (K, num_patches) bool) -> (K,) scores`` and what they are: the adapter's own
    (:meth:`~explorer.models.base.ImageAdapter.faithfulness_scorer`), with ``fill`` (default: the adapter's)."""
    fill = fill or adapter.default_fill
    if fill not in adapter.fills:
        raise AttentionError(f"Fill {fill!r} is not available for {adapter.model_id}; choose from {', '.join(adapter.fills)}.")
    return adapter.faithfulness_scorer(adapter.normalise_input(pixels), target, fill=fill)


def _masks(order: np.ndarray, counts: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """``(deletion keep (K, L), insertion keep (K, L))`` for one order."""
    dele = np.ones((len(counts), L), bool)
    ins = np.zeros((len(counts), L), bool)
    for i, c in enumerate(counts):
        dele[i, order[:c]] = False
        ins[i, order[:c]] = True
    return dele, ins


def deletion_insertion(model, image, patch_map: np.ndarray, *, steps: int = 10, seed: int = 0, target: int | None = None,
                       fit: str = "center-crop", random_orders: int = 20, fill: str | None = None,
                       band: float = BAND, lock=None, should_stop: "Callable[[], bool] | None" = None) -> Curves:
    """Deletion and insertion curves for ``patch_map`` (``layout.grid``-shaped, higher = more important).

    Args:
        steps: ``steps + 1`` points from 0 to 100% of the patches (video: tubelets); ties are broken by patch index.
        random_orders: how many seeded random orders make the reference (order ``i`` uses seed ``seed + i``).
        fill: how removed patches are filled (``adapter.fills``; default ``adapter.default_fill``).
        band: share of the random orders' AUCs that make the "not distinguishable from random" band.
        lock: a lock held around each batch of forwards (background work: see :func:`explorer.models.base.model_lock`).
        should_stop: checked between batches; when it returns True, :class:`Stopped` is raised (superseded work).
    Costs ``2 · (steps + 1) · (random_orders + 1)`` forwards, batched.
    """
    from .maps import _adapter, _prepare

    if int(random_orders) < 2:
        raise AttentionError("At least 2 random orders are needed for a reference band (20 or more is better).")
    adapter = _adapter(model, "deletion_insertion")
    pixels, _, _ = _prepare(adapter, image, fit)
    L = adapter.layout.num_patches
    pm = np.asarray(patch_map, np.float64).reshape(-1)
    if pm.size != L:
        raise AttentionError(f"The map has {pm.size} patches, the model {L} ({'x'.join(map(str, adapter.layout.grid))}).")
    fill = fill or adapter.default_fill
    with lock or contextlib.nullcontext():
        f, what = _scorer(adapter, pixels, target, fill)

    def score(keep: np.ndarray) -> np.ndarray:
        """``f`` in batches of :data:`BATCH` masks, the lock held per batch, stopping when asked."""
        out = []
        for s in range(0, len(keep), BATCH):
            if should_stop is not None and should_stop():
                raise Stopped("superseded")
            with lock or contextlib.nullcontext():
                out.append(f(keep[s : s + BATCH]))
        return np.concatenate(out)

    fractions = np.linspace(0, 1, steps + 1)
    counts = np.round(fractions * L).astype(int)
    K = len(counts)
    order = np.lexsort((np.arange(L), -np.nan_to_num(pm, nan=-np.inf)))
    # The random orders do not depend on the map: their curves are computed once per (model, input, fill, target,
    # steps, seed, number of orders) and shared by every map asked about afterwards.
    key = (adapter.weights_sha256, hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest(), fill, target,
           int(steps), int(seed), int(random_orders))
    ref = _REFERENCE.get(key)
    if ref is None:
        full = float(score(np.ones((1, L), bool))[0])
        orders = [np.random.default_rng(seed + i).permutation(L) for i in range(int(random_orders))]
        scores = score(np.concatenate([m for o in orders for m in _masks(o, counts, L)]))
        ref = (full, scores.reshape(len(orders), 2, K))
        _REFERENCE[key] = ref
        while len(_REFERENCE) > _REFERENCE_SIZE:
            _REFERENCE.pop(next(iter(_REFERENCE)))
    full, rnd_scores = ref
    norm = full if abs(full) > 1e-9 else 1.0
    mine = score(np.concatenate(_masks(order, counts, L))).reshape(1, 2, K)
    curves = np.concatenate([mine, rnd_scores]) / norm  # (order, deletion/insertion, K)
    aucs = _auc(curves, fractions)  # (order, 2)
    return Curves(fractions, curves[0, 0], curves[0, 1], float(aucs[0, 0]), float(aucs[0, 1]),
                  np.asarray(aucs[1:, 0], np.float64), np.asarray(aucs[1:, 1], np.float64),
                  curves[1:, 0].mean(0), curves[1:, 1].mean(0), what, fill, int(seed), float(band))


@dataclass(frozen=True)
class FillComparison:
    """The same maps' faithfulness under several fills.

    Attributes:
        methods: map names; fills: fill names.
        curves: ``{fill: {method: Curves}}``.
        deletion_auc, insertion_auc: ``(len(fills), len(methods))``.
        ranking: ``{fill: methods sorted best first}`` by deletion AUC (lower is better).
    """

    methods: tuple[str, ...]
    fills: tuple[str, ...]
    curves: dict
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    ranking: dict

    @property
    def ranking_changes(self) -> bool:
        """Whether the fills disagree on the order of the methods."""
        return len({tuple(r) for r in self.ranking.values()}) > 1

    def summary(self) -> str:
        """The ranking under each fill, in words."""
        lines = [f"{FILL_NAMES.get(fl, fl)}: " + " < ".join(self.ranking[fl]) for fl in self.fills]
        head = ("The ranking of the methods changes with the fill" if self.ranking_changes
                else "Every fill ranks the methods the same")
        return head + " (deletion AUC, best first):\n" + "\n".join(lines)


def compare_fills(model, image, maps: dict, *, fills=None, steps: int = 10, seed: int = 0, target: int | None = None,
                  fit: str = "center-crop", random_orders: int = 20) -> FillComparison:
    """:func:`deletion_insertion` of every map of ``maps`` (name → ``layout.grid``-shaped map) under every fill
    (default: all the adapter offers), and each fill's ranking of the methods by deletion AUC."""
    from .maps import _adapter

    adapter = _adapter(model, "compare_fills")
    fills = tuple(fills or adapter.fills)
    names = tuple(maps)
    out: dict = {}
    for fl in fills:
        out[fl] = {n: deletion_insertion(adapter, image, maps[n], steps=steps, seed=seed, target=target, fit=fit,
                                         random_orders=random_orders, fill=fl) for n in names}
    dele = np.array([[out[fl][n].deletion_auc for n in names] for fl in fills])
    ins = np.array([[out[fl][n].insertion_auc for n in names] for fl in fills])
    ranking = {fl: [names[j] for j in np.argsort(dele[i], kind="stable")] for i, fl in enumerate(fills)}
    return FillComparison(names, fills, out, dele, ins, ranking)


@dataclass(frozen=True)
class SanityCheck:
    """Outcome of the cascading model-randomisation test.

    Attributes:
        levels: numbers of top blocks randomised, e.g. ``(1, 3, 6)``.
        spearman, ssim: ``(len(levels),)`` similarity of the map to the original at each level
            (rank correlation; SSIM of the maps scaled to [0, 1]); 1 = unchanged.
        passed: :attr:`outcome` is ``"depends"``: the map changed (``spearman < threshold``) from some level on,
            through the deepest.  A method that ignores the model stays at 1 and fails; one that changes at a level
            and comes back at a deeper one is ``"mixed"`` and does not pass.
        original: ``(gh, gw)``; randomised_maps: ``(len(levels), gh, gw)``.
    """

    levels: tuple[int, ...]
    spearman: np.ndarray
    ssim: np.ndarray
    passed: bool
    original: np.ndarray
    randomised_maps: np.ndarray
    threshold: float

    @property
    def changed(self) -> np.ndarray:
        """``(len(levels),)`` bool: the map changed at that level (Spearman below the threshold)."""
        return np.asarray(self.spearman) < self.threshold

    @property
    def outcome(self) -> str:
        """``"depends"``: the map changes from some level on and stays changed through the deepest (all the
        top blocks randomised); ``"blind"``: it changes at no level; ``"mixed"``: it changes at a level but comes
        back close to the original at a deeper one (the test's result does not track the weights)."""
        c = self.changed
        if not c.any():
            return "blind"
        first = int(np.argmax(c))
        return "depends" if c[first:].all() else "mixed"

    def per_level(self) -> str:
        """``"0.08 (top 1 block), 1.00 (top 3 blocks), 0.99 (top 6 blocks)"``: Spearman at each level."""
        return ", ".join(f"{r:.2f} (top {n} block{'s' if n != 1 else ''})" for n, r in zip(self.levels, self.spearman))

    def verdict(self) -> str:
        """The outcome in words that match every level's number."""
        c = self.changed
        numbers = f"Spearman to the original {self.per_level()}; below {self.threshold:g} counts as changed"
        if self.outcome == "blind":
            return (f"the map barely changes when the weights are randomised ({numbers}): it may show the image, "
                    "not the model")
        if self.outcome == "depends":
            n = self.levels[int(np.argmax(c))]
            when = "at every level" if c.all() else f"once the top {n} blocks are randomised"
            return f"the map changes {when} ({numbers}): it depends on the model's weights"
        yes = [n for n, k in zip(self.levels, c) if k]
        no = [n for n, k in zip(self.levels, c) if not k]
        return (f"mixed: the map changes when the top {', '.join(map(str, yes))} block(s) are randomised but stays close "
                f"to the original when the top {', '.join(map(str, no))} are ({numbers}): it does not track the "
                "weights consistently")


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
    redraw([*list(blocks)[len(blocks) - n :], *extra], gen)
    return new, tuple(names + [type(m).__name__ for m in extra])


def redraw(modules, gen: torch.Generator) -> None:
    """Re-draw every parameter of ``modules`` in place: fresh Gaussian weights with each tensor's own mean and spread
    (the structure the training put in is gone, the scale — how peaked attention can be — is kept)."""
    with torch.no_grad():
        for mod in modules:
            for p in mod.parameters():
                mean, std = p.float().mean(), p.float().std() if p.numel() > 1 else torch.tensor(0.0)
                p.copy_((torch.randn(p.shape, generator=gen) * std + mean).to(p))


def randomisation_check(model, image, method: Callable, *, levels=None, seed: int = 0, threshold: float = 0.5) -> SanityCheck:
    """Run ``method(adapter, image) -> map`` on the model and on copies with the top blocks randomised.

    Args:
        method: any map function, e.g. ``lambda m, im: explain(m, im, "rollout").map``.
        levels: how many top blocks to randomise, cascading (default: 1, half, all).
        threshold: Spearman correlation below which the map counts as changed.
    """
    from .maps import _adapter

    adapter = _adapter(model, "randomisation_check")
    return cascade(len(adapter.blocks), lambda: method(adapter, image),
                   lambda n: method(randomise_top_layers(adapter, n, seed)[0], image), levels=levels, threshold=threshold)


def cascade(depth: int, original: Callable[[], np.ndarray], randomised: Callable[[int], np.ndarray], *, levels=None,
            threshold: float = 0.5) -> SanityCheck:
    """The cascading randomisation test over ``depth`` layers: ``original()`` is the map, ``randomised(n)`` the map with
    the top ``n`` layers re-drawn, at each level of ``levels`` (default: 1, half, all)."""
    levels = tuple(sorted({max(1, min(int(n), depth)) for n in (levels or (1, depth // 2, depth))}))
    a = np.asarray(original(), np.float64)
    rho, ss, maps = [], [], []
    for n in levels:
        b = np.asarray(randomised(n), np.float64)
        rho.append(spearman(a, b))
        ss.append(_ssim(a, b))
        maps.append(b.astype(np.float32))
    rho_a = np.array(rho)
    changed = rho_a < threshold
    passed = bool(changed.any() and changed[int(np.argmax(changed)):].all())
    return SanityCheck(levels, rho_a, np.array(ss), passed, a.astype(np.float32), np.stack(maps), threshold)
