"""A/B comparison of two patch maps of the same input (two checkpoints, or a checkpoint and its randomised copy):
how alike their orderings of the patches are, and where they differ.

    a = attention_maps(model_a, "chelsea").query_map(3, "mean", "cls")     # (gh, gw)
    b = attention_maps(model_b, "chelsea").query_map(3, "mean", "cls")
    c = compare_maps(a, b)                  # c.spearman, c.top_k_overlap, c.difference = b - a

Pure numpy: maps in, numbers out.  The two maps must cover the same patches (the same grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faithfulness import _rank, spearman

#: the share of the patches compared as "the top" when no ``k`` is given (10 %, at least one patch)
TOP_FRACTION = 0.1


def default_k(num_patches: int) -> int:
    """``k`` of :func:`top_k_overlap` for a map of ``num_patches`` patches: 10 % of them, at least 1."""
    return max(1, int(round(TOP_FRACTION * int(num_patches))))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation in [-1, 1] of two maps of the same shape over their patches (flattened; ties get
    their average rank, as :func:`scipy.stats.spearmanr` does).  Exactly 1.0 when the two order the patches the same
    way; two constant maps give 1.0, one constant map and one that is not 0.0."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    if a.shape != b.shape:
        raise ValueError(f"The two maps cover different patches: {a.size} and {b.size} values.")
    if np.array_equal(_rank(a), _rank(b)):
        return 1.0  # not 0.9999999999999998 from the floating-point correlation
    return spearman(a, b)


def top_k_patches(m: np.ndarray, k: int) -> np.ndarray:
    """``(k,)`` int: flat indices of the ``k`` largest values of ``m`` (any shape), largest first; ties go to the
    lower index (a stable order, so equal maps give equal sets)."""
    flat = np.ravel(np.asarray(m, np.float64))
    return np.argsort(-flat, kind="stable")[: int(k)]


def top_k_overlap(a: np.ndarray, b: np.ndarray, *, k: int) -> float:
    """Share in [0, 1] of the ``k`` patches ``a`` ranks highest that ``b`` also ranks among its ``k`` highest.

    Args:
        a, b: maps of the same shape (``(gh, gw)``, ``(t, gh, gw)``, ...), flattened over patches.
        k: how many top patches, ``1 <= k <= a.size``.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"The two maps cover different patches: shapes {a.shape} and {b.shape}.")
    if not 1 <= int(k) <= a.size:
        raise ValueError(f"k must be between 1 and the number of patches ({a.size}); got {k}.")
    shared = np.intersect1d(top_k_patches(a, k), top_k_patches(b, k))
    return float(len(shared)) / int(k)


@dataclass(frozen=True)
class MapComparison:
    """Two maps of the same input and their agreement.

    Attributes:
        a, b: the two maps, ``grid``-shaped float64 (``(gh, gw)``; video ``(t, gh, gw)``).
        difference: ``b - a``, same shape.
        spearman: Spearman rank correlation of ``a`` and ``b`` over the patches (average ranks for ties; 1 = the same
            ordering of the patches, 0 = unrelated); scale-free, so maps whose units differ still compare.
        k: how many top patches :attr:`top_k_overlap` compares.
        top_k_overlap: share in [0, 1] of ``a``'s ``k`` highest patches that are also among ``b``'s ``k`` highest.
        max_abs_difference: ``max |b - a|`` (0 for identical maps), in the maps' own unit.
    """

    a: np.ndarray
    b: np.ndarray
    difference: np.ndarray
    spearman: float
    k: int
    top_k_overlap: float
    max_abs_difference: float

    @property
    def top_k_shared(self) -> int:
        """How many of the ``k`` top patches the two maps share."""
        return int(round(self.top_k_overlap * self.k))


def compare_maps(a: np.ndarray, b: np.ndarray, *, k: int | None = None) -> MapComparison:
    """Compare map ``b`` with map ``a`` of the same input over the same patches.

    Args:
        a, b: ``(gh, gw)`` (or any shape, the same for both) maps, e.g. the attention of one query at one layer
            under model A and under model B.
        k: top patches compared by the overlap (default: 10 % of the patches, at least one).
    Returns:
        :class:`MapComparison` (``difference = b - a``).
    Raises:
        ValueError: the maps have different shapes, or are not finite.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"The two maps cover different patches: shapes {a.shape} and {b.shape}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("The maps to compare have non-finite values.")
    k = default_k(a.size) if k is None else int(k)
    diff = b - a
    return MapComparison(a, b, diff, rank_correlation(a, b), k, top_k_overlap(a, b, k=k),
                         float(np.abs(diff).max()) if diff.size else 0.0)
