"""Patch masks for masked-image modelling.

Every strategy is expressed as a *masking order*: a permutation of the ``L = gh * gw``
patch indices, most-hidden first.  The mask at ratio ``r`` hides the first
``num_masked(L, r)`` patches of that order.  Two consequences follow for free:

* masks for one seed are **nested** across ratios (a patch hidden at 50% stays hidden
  at 75%), so a ratio slider tells one continuous story;
* one order covers a whole ratio sweep, which is what lets the model run the sweep
  ahead of the slider (see :mod:`explorer.sweep`).

All functions are pure: the same ``(grid, seed)`` gives the same order on every machine
(numpy's PCG64 generator is stable across releases).

Shapes: ``grid = (gh, gw)``; an order is ``(L,)`` int64; a mask is ``(gh, gw)`` bool with
``True`` = hidden (the convention of MAE's ``mask`` output, where 1 = removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STRATEGIES = ("random", "block", "grid", "manual")
#: The ratios a slider sweep is computed for: 0.05, 0.10, ..., 0.95 (19 values).
SWEEP_RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 20))


class MaskError(ValueError):
    """A mask request that cannot be honoured (unknown strategy, ratio out of range...)."""


@dataclass(frozen=True)
class MaskSpec:
    """What to hide.

    Attributes:
        strategy: ``"random"`` (MAE), ``"block"`` (BEiT/SimMIM block-wise), ``"grid"``
            (regular lattice; at 75% it is MAE's grid sampling) or ``"manual"``.
        ratio: fraction of patches hidden, in ``[0.0, 1.0]``; ignored for ``"manual"``.
        seed: seed of every random choice.
        manual: for ``"manual"``, the flat indices of the hidden patches.
    """

    strategy: str = "random"
    ratio: float = 0.75
    seed: int = 0
    manual: tuple[int, ...] = field(default=())

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise MaskError(f"Unknown mask strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        if not (0.0 <= float(self.ratio) <= 1.0):
            raise MaskError(f"Masking ratio must lie in [0, 1], got {self.ratio}.")
        if int(self.seed) < 0:
            raise MaskError(f"Seed must be a non-negative integer, got {self.seed}.")


def num_masked(num_patches: int, ratio: float) -> int:
    """Number of hidden patches at ``ratio``: ``round(ratio * L)``, kept in ``[1, L - 1]``
    when ``0 < ratio < 1`` so that something is always hidden and something visible."""
    if not (0.0 <= ratio <= 1.0):
        raise MaskError(f"Masking ratio must lie in [0, 1], got {ratio}.")
    n = int(round(ratio * num_patches))
    if 0.0 < ratio < 1.0:
        n = min(max(n, 1), num_patches - 1)
    return n


def random_order(grid: tuple[int, int], seed: int) -> np.ndarray:
    """MAE's uniform random masking as an order: ``(L,)`` int64, most-hidden first."""
    gh, gw = grid
    rng = np.random.Generator(np.random.PCG64(seed))
    noise = rng.random(gh * gw)
    # MAE keeps the *lowest* noise, so the highest noise is hidden first.
    return np.argsort(-noise, kind="stable").astype(np.int64)


def block_order(
    grid: tuple[int, int],
    seed: int,
    *,
    min_block: int = 16,
    max_block_frac: float = 0.4,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
) -> np.ndarray:
    """BEiT-style block-wise masking as an order: ``(L,)`` int64.

    Rectangles of random area (``min_block`` patches up to ``max_block_frac * L``) and
    aspect ratio are hidden one after another, each adding only patches not yet hidden,
    until every patch is in the order.  Any prefix of the order is therefore a union of
    whole blocks plus, at most, part of one block.
    """
    gh, gw = grid
    L = gh * gw
    rng = np.random.Generator(np.random.PCG64(seed))
    taken = np.zeros((gh, gw), dtype=bool)
    order: list[int] = []
    log_lo, log_hi = np.log(aspect[0]), np.log(aspect[1])
    max_area = max(min_block, int(max_block_frac * L))
    stalls = 0
    while len(order) < L:
        area = rng.uniform(min(min_block, L), max_area)
        ar = float(np.exp(rng.uniform(log_lo, log_hi)))
        h = int(round(np.sqrt(area * ar)))
        w = int(round(np.sqrt(area / ar)))
        h, w = min(max(h, 1), gh), min(max(w, 1), gw)
        top = int(rng.integers(0, gh - h + 1))
        left = int(rng.integers(0, gw - w + 1))
        sub = taken[top : top + h, left : left + w]
        new = np.argwhere(~sub)
        if len(new) == 0:
            stalls += 1
            if stalls > 50:  # the last scattered holes: shrink the blocks to single patches
                min_block, max_area = 1, 1
            continue
        stalls = 0
        for dy, dx in new:  # row-major inside the block
            order.append((top + int(dy)) * gw + left + int(dx))
        sub[:] = True
    return np.asarray(order, dtype=np.int64)


def _bayer(n: int) -> np.ndarray:
    """Bayer ordered-dither matrix of size ``n x n`` (``n`` a power of two), values 0..n²-1."""
    m = np.zeros((1, 1), dtype=np.int64)
    while m.shape[0] < n:
        m = np.block([[4 * m, 4 * m + 2], [4 * m + 3, 4 * m + 1]])
    return m


def grid_order(grid: tuple[int, int], seed: int, *, tile: int = 8) -> np.ndarray:
    """Regular-lattice masking as an order: ``(L,)`` int64.

    Patches are ranked by a tiled Bayer dither matrix, so every prefix is spread as evenly
    as a lattice allows; at 75% exactly one patch of every 2x2 cell stays visible (MAE's
    "grid-wise sampling").  The seed shifts the lattice phase and breaks ties between tiles.
    """
    gh, gw = grid
    rng = np.random.Generator(np.random.PCG64(seed))
    bayer = _bayer(tile)
    dy, dx = (int(v) for v in rng.integers(0, tile, size=2))
    yy, xx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    keep_rank = bayer[(yy + dy) % tile, (xx + dx) % tile].ravel()  # low = kept longest
    tie = rng.random(gh * gw)
    # Most hidden first = highest rank first; ties broken by the seeded tie noise.
    return np.lexsort((tie, -keep_rank)).astype(np.int64)


def masking_order(grid: tuple[int, int], strategy: str, seed: int) -> np.ndarray:
    """The order for ``strategy`` in ``{"random", "block", "grid"}``: ``(L,)`` int64."""
    if strategy == "random":
        return random_order(grid, seed)
    if strategy == "block":
        return block_order(grid, seed)
    if strategy == "grid":
        return grid_order(grid, seed)
    if strategy == "manual":
        raise MaskError("A manual mask has no ratio sweep; build it with manual_mask().")
    raise MaskError(f"Unknown mask strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")


def mask_from_order(order: np.ndarray, grid: tuple[int, int], ratio: float) -> np.ndarray:
    """Hide the first ``num_masked(L, ratio)`` patches of ``order``: ``(gh, gw)`` bool."""
    gh, gw = grid
    flat = np.zeros(gh * gw, dtype=bool)
    flat[order[: num_masked(gh * gw, ratio)]] = True
    return flat.reshape(gh, gw)


def manual_indices(manual) -> tuple[int, ...]:
    """Flat patch indices from ``None``, a list / tuple / range of ints, an integer array of any shape, or a boolean
    ``(gh, gw)`` / ``(L,)`` mask (True = hidden).

    Raises:
        MaskError: strings, non-integer numbers or nested ragged sequences.
    """
    if manual is None:
        return ()
    if isinstance(manual, (str, bytes)):
        raise MaskError(f"Manual mask: expected patch indices (a sequence of ints), got the text {manual!r}.")
    try:
        arr = np.asarray(manual)
    except ValueError as e:
        raise MaskError(f"Manual mask: expected a flat sequence of patch indices ({e}).") from None
    if arr.size == 0:
        return ()
    if arr.dtype == bool:
        return tuple(int(i) for i in np.flatnonzero(arr))
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr)))):
        raise MaskError(f"Manual mask: patch indices must be whole numbers, got {arr.ravel()[:5].tolist()}.")
    return tuple(int(i) for i in arr.ravel())


def manual_mask(grid: tuple[int, int], hidden: "list[int] | tuple[int, ...] | np.ndarray") -> np.ndarray:
    """Mask hiding exactly the flat patch indices ``hidden``: ``(gh, gw)`` bool."""
    gh, gw = grid
    idx = np.asarray(manual_indices(hidden), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= gh * gw):
        raise MaskError(f"Patch index out of range for a {gh}x{gw} grid: {idx.min()}..{idx.max()}.")
    flat = np.zeros(gh * gw, dtype=bool)
    flat[idx] = True
    return flat.reshape(gh, gw)


def make_mask(grid: tuple[int, int], spec: MaskSpec) -> np.ndarray:
    """The mask described by ``spec``: ``(gh, gw)`` bool, True = hidden."""
    if spec.strategy == "manual":
        return manual_mask(grid, spec.manual)
    return mask_from_order(masking_order(grid, spec.strategy, spec.seed), grid, spec.ratio)


def mask_to_noise(mask: np.ndarray) -> np.ndarray:
    """Noise that makes ``ViTMAEForPreTraining`` reproduce ``mask``: ``(L,)`` float32.

    The model keeps the lowest-noise patches, so visible patches get noise in ``[0, 0.5)``
    and hidden ones ``[1, 1.5)``; the small ramp keeps the kept tokens in raster order.
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    ramp = np.arange(flat.size, dtype=np.float32) / (2.0 * flat.size)
    return (flat.astype(np.float32) + ramp).astype(np.float32)
