"""A/B comparison of one word's map from two image+text models (two checkpoints, or a checkpoint and its randomised
copy) on the same image, text, word, method and settings.  Pure numpy over maps the caller computed, plus the checks
that two models can be compared at all.

* :func:`rank_correlation` — Spearman's rank correlation of two maps over patches (ties get average ranks).
* :func:`pointing_hit` — does the map's peak fall on a patch that overlaps the object (the pointing game)?
* :func:`energy_in_box` — share of the map's positive mass inside the object's bounding box (energy-based pointing
  game, Wang et al. 2020, Score-CAM).
* :func:`compare_maps` — all of the above for A and B → :class:`MapComparison`.
* :func:`check_comparable` — refuse a pair whose tokenizers read other words or whose image grids differ.
* :func:`word_maps_ab` — the same word's map from two :class:`~explorer.fusion.Alignment` objects, refused with a
  reason when B has no such map.
* :func:`randomised_copy` — A with every cross-modal layer re-drawn (seeded), as the randomisation check does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..models.fusion_base import FusionInputError


def average_ranks(x: np.ndarray) -> np.ndarray:
    """``(N,)`` ranks 0..N-1 of ``x`` ``(N,)``, tied values sharing the mean of their ranks (as scipy's ``rankdata``,
    minus 1)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(x.size, np.float64)
    r[order] = np.arange(x.size)
    _vals, inv = np.unique(x, return_inverse=True)
    return (np.bincount(inv, weights=r) / np.bincount(inv))[inv]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps over their cells (patches); cells NaN in either map are left out.

    Args:
        a, b: ``(gh, gw)`` (any shape with the same number of cells) float.
    Returns:
        ρ in [-1, 1]: exactly ``1.0`` for two equal maps (a constant map included), ``nan`` when one map is constant
        and the other is not, or fewer than 2 cells are left (the correlation is undefined; scipy says the same).
    """
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"Maps of {x.size} and {y.size} cells cannot be correlated cell by cell.")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size >= 1 and np.array_equal(x, y):
        return 1.0
    if x.size < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))


def _cells(mask_shape: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel edges of the grid's rows and columns in a mask of ``mask_shape``: ``(gh + 1,)``, ``(gw + 1,)``."""
    (H, W), (gh, gw) = mask_shape, grid
    return np.floor(np.arange(gh + 1) * H / gh).astype(int), np.floor(np.arange(gw + 1) * W / gw).astype(int)


def pointing_hit(patch_map: np.ndarray, mask: np.ndarray) -> bool:
    """The pointing game for one map: does its maximum fall on a patch that overlaps ``mask``?  (The rule of
    :func:`explorer.fusion.pointing_hits`, for one map.)

    Args:
        patch_map: ``(gh, gw)`` float.
        mask: ``(H, W)`` bool, the object in the model input's pixels (any ``H, W``; cells are ``H / gh`` pixels high).
    """
    m = np.asarray(patch_map, np.float64)
    if not np.isfinite(m).any():
        return False
    r, c = np.unravel_index(int(np.nanargmax(m)), m.shape)
    ys, xs = _cells(np.shape(mask), m.shape)
    return bool(np.asarray(mask, bool)[ys[r]:ys[r + 1], xs[c]:xs[c + 1]].any())


def box_coverage(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(gh, gw)`` share of each patch's area inside the bounding box of ``mask`` ``(H, W)`` bool (all zeros for an
    empty mask)."""
    mask = np.asarray(mask, bool)
    H, W = mask.shape
    gh, gw = grid
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        return np.zeros((gh, gw))
    y0, y1, x0, x1 = rows[0] / H, (rows[-1] + 1) / H, cols[0] / W, (cols[-1] + 1) / W

    def overlap(n, lo, hi):  # (n,) share of each of n equal cells of [0, 1] inside [lo, hi]
        edges = np.arange(n + 1) / n
        return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None) * n

    return np.outer(overlap(gh, y0, y1), overlap(gw, x0, x1))


def energy_in_box(patch_map: np.ndarray, mask: np.ndarray) -> float:
    """Energy-based pointing game: the share of the map's positive mass that falls inside the bounding box of ``mask``
    (each patch's value spread evenly over its pixels, negative values counted as 0).

    Args:
        patch_map: ``(gh, gw)`` float; mask: ``(H, W)`` bool in the model input's pixels.
    Returns:
        in [0, 1]; ``nan`` when the map has no positive value (nothing to share out).
    """
    m = np.clip(np.nan_to_num(np.asarray(patch_map, np.float64), nan=0.0), 0, None)
    total = m.sum()
    if total <= 0:
        return float("nan")
    return float((m * box_coverage(mask, m.shape)).sum() / total)


@dataclass(frozen=True)
class MapComparison:
    """One word's map from model A and from model B on the same input, method and settings, and how they differ.

    Attributes:
        a, b: ``(gh, gw)`` float64 maps; :attr:`difference` ``(gh, gw)`` = ``b − a``.
        spearman: :func:`rank_correlation` of ``a`` and ``b`` over patches.
        hit_a, hit_b: :func:`pointing_hit` of each map (``None`` without a ground-truth object for the word).
        energy_a, energy_b: :func:`energy_in_box` of each map (``None`` without a ground-truth object).
    """

    a: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    spearman: float
    hit_a: bool | None = None
    hit_b: bool | None = None
    energy_a: float | None = None
    energy_b: float | None = None

    @property
    def difference(self) -> np.ndarray:
        """``(gh, gw)`` B − A."""
        return self.b - self.a

    @property
    def has_truth(self) -> bool:
        return self.hit_a is not None

    @property
    def hit_delta(self) -> int | None:
        """B's pointing-game hit minus A's: −1, 0 or +1 (``None`` without ground truth)."""
        return None if self.hit_a is None else int(self.hit_b) - int(self.hit_a)

    @property
    def energy_delta(self) -> float | None:
        """B's energy in the box minus A's (``None`` without ground truth; ``nan`` when either is undefined)."""
        return None if self.energy_a is None else self.energy_b - self.energy_a


def compare_maps(a: np.ndarray, b: np.ndarray, *, mask: np.ndarray | None = None) -> MapComparison:
    """Compare A's and B's ``(gh, gw)`` maps of one word; ``mask`` ``(H, W)`` bool: the object the word names, when
    the input is a generated scene that knows it (adds the pointing game and the energy in its box)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"A's map is {a.shape[0]}x{a.shape[1]} patches, B's {b.shape[0]}x{b.shape[1]}: they cannot be "
                         "compared patch by patch.")
    truth = {}
    if mask is not None:
        truth = dict(hit_a=pointing_hit(a, mask), hit_b=pointing_hit(b, mask), energy_a=energy_in_box(a, mask),
                     energy_b=energy_in_box(b, mask))
    return MapComparison(a, b, rank_correlation(a, b), **truth)


def _grid_text(adapter) -> str:
    gh, gw = adapter.grid
    return f"{gh}x{gw} patches of {adapter.patch_size} px ({gh * adapter.patch_size}-px input)"


def check_comparable(a, b, text: str, *, name_a: str = "A", name_b: str = "B") -> None:
    """Refuse a pair of fusion adapters that cannot show the same word on the same patches.

    Raises:
        FusionInputError: the image grids differ (patch count or size), or the two tokenizers read other clickable
            words in ``text``; the message says what differs.
    """
    if (tuple(a.grid), a.patch_size) != (tuple(b.grid), b.patch_size):
        raise FusionInputError(f"{name_b} sees {_grid_text(b)}, {name_a} {_grid_text(a)}: their maps do not cover the "
                               "same patches, so they cannot be compared patch by patch.")
    wa, wb = a.word_strings(a.tokenize(text)), b.word_strings(b.tokenize(text))
    if wa != wb:
        k = next((i for i, (x, y) in enumerate(zip(wa, wb)) if x != y), min(len(wa), len(wb)))
        at = (f"word {k}: {name_a} reads {wa[k]!r}, {name_b} reads {wb[k]!r}" if k < min(len(wa), len(wb)) else
              f"{name_a} reads {len(wa)} words, {name_b} {len(wb)}")
        raise FusionInputError(f"The tokenizers read other words in '{text}' ({at}; {name_a}: {' '.join(wa)} | "
                               f"{name_b}: {' '.join(wb)}): the same word cannot be picked in both.")


def word_maps_ab(al_a, al_b, method: str, word: int, *, adapter_a=None, adapter_b=None, name_b: str = "B",
                 **settings) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)``: word ``word``'s ``(gh, gw)`` map under ``method`` and ``settings`` (layer, head, a method's own
    options) from A's and B's :class:`~explorer.fusion.Alignment`; on-demand methods run with each adapter (kept).

    Raises:
        ValueError: B offers no such method, or has no such layer / head (the message names what B has).
    """
    if method not in al_b.offered:
        raise ValueError(f"{name_b} ({al_b.kind}) has no '{al_a.method(method).label}' map; both offer: "
                         f"{', '.join(al_a.method(m).label for m in al_a.offered if m in al_b.offered)}.")
    m = al_a.method(method)
    stack = al_b.layered.get(m.name)
    layer, head = settings.get("layer"), settings.get("head", "mean")
    if m.layer and stack is not None and layer is not None and not 0 <= int(layer) < stack.shape[0]:
        raise ValueError(f"{name_b} has {stack.shape[0]} cross-modal layers: there is no layer {int(layer)} to compare.")
    if m.head and stack is not None and head != "mean" and not 0 <= int(head) < stack.shape[1]:
        raise ValueError(f"{name_b} has {stack.shape[1]} heads per layer: there is no head {int(head)} to compare.")
    return (np.asarray(al_a.word_map(method, word, adapter=adapter_a, **settings), np.float64),
            np.asarray(al_b.word_map(method, word, adapter=adapter_b, **settings), np.float64))


def randomised_copy(adapter, layer_names, *, seed: int = 0):
    """A copy of ``adapter`` with every cross-modal layer in ``layer_names`` (:attr:`Alignment.layer_names`) re-drawn,
    seeded: the deepest level of the randomisation check (:func:`explorer.fusion.faithfulness.fusion_randomisation_check`)."""
    from .faithfulness import randomise_fusion_layers

    names = list(dict.fromkeys(layer_names))
    if not names:
        raise ValueError(f"{adapter.model_id} has no cross-modal attention layer to randomise.")
    return randomise_fusion_layers(adapter, names, len(names), int(seed))

