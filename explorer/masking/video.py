"""Token masks for video masked autoencoders, over the ``(t, gh, gw)`` tubelet grid.

Like :mod:`explorer.masking`, every strategy is a *masking order* (a permutation of the
``N = t · gh · gw`` token indices, most-hidden first), so masks are nested across ratios and one
order serves a whole ratio sweep.  Strategies:

* ``"tube"`` — VideoMAE (Tong et al. 2022): one random spatial mask shared by every time step
  (a hidden patch stays hidden through time, so the model cannot copy it from a neighbouring frame);
* ``"random"`` — independent random masking of every token (what an image MAE does per frame, and
  the "random" baseline of the VideoMAE paper);
* ``"frame"`` — whole time steps hidden, in a seeded random order of time steps (frame-wise masking);
* ``"running-cell"`` — VideoMAE V2's decoder-masking pattern: a 2×2 cell whose hidden positions
  shift by one position each time step, so every position is hidden in some frames and visible in
  others; within each time step the cell positions are hidden in a fixed order.

Shapes: ``grid = (t, gh, gw)``; an order is ``(N,)`` int64; a mask is ``(t, gh, gw)`` bool,
True = hidden.  Pure functions of ``(grid, strategy, seed)``.
"""

from __future__ import annotations

import numpy as np

from . import MaskError, num_masked

VIDEO_STRATEGIES = ("tube", "random", "frame", "running-cell")


def _rng(seed: int) -> np.random.Generator:
    if int(seed) < 0:
        raise MaskError(f"Seed must be a non-negative integer, got {seed}.")
    return np.random.Generator(np.random.PCG64(int(seed)))


def video_masking_order(grid: tuple[int, int, int], strategy: str = "tube", seed: int = 0) -> np.ndarray:
    """``(N,)`` int64 token order, most-hidden first, for ``strategy`` on a ``(t, gh, gw)`` grid."""
    t, gh, gw = (int(v) for v in grid)
    if min(t, gh, gw) < 1:
        raise MaskError(f"Bad token grid {grid}.")
    L = gh * gw
    idx = np.arange(t * L).reshape(t, L)
    rng = _rng(seed)
    if strategy == "tube":
        spatial = np.argsort(-rng.random(L), kind="stable")
        # position-major: all time steps of the first spatial position, then the next…
        return idx[:, spatial].T.ravel().astype(np.int64)
    if strategy == "random":
        return np.argsort(-rng.random(t * L), kind="stable").astype(np.int64)
    if strategy == "frame":
        steps = rng.permutation(t)
        within = np.argsort(-rng.random(L), kind="stable")
        return idx[steps][:, within].ravel().astype(np.int64)
    if strategy == "running-cell":
        rows, cols = np.divmod(np.arange(L), gw)
        cell = (rows % 2) * 2 + (cols % 2)  # position inside its 2x2 cell: 0..3
        tie = rng.random(L)
        keys = []
        for k in range(t):
            rank = (cell - k) % 4  # the hidden cell position moves by one every time step
            keys.append(rank * 2 + tie)  # lower = hidden first
        keys = np.stack(keys).ravel()
        return np.argsort(keys, kind="stable").astype(np.int64)
    raise MaskError(f"Unknown video mask strategy {strategy!r}; choose one of {', '.join(VIDEO_STRATEGIES)}.")


def video_mask(grid: tuple[int, int, int], ratio: float, strategy: str = "tube", seed: int = 0) -> np.ndarray:
    """``(t, gh, gw)`` bool mask hiding ``num_masked(N, ratio)`` tokens of the strategy's order.

    For ``"tube"`` the count is rounded to whole tubes, so every time step hides the same patches.
    """
    t, gh, gw = (int(v) for v in grid)
    order = video_masking_order(grid, strategy, seed)
    n = num_masked(t * gh * gw, ratio)
    if strategy == "tube":
        n = num_masked(gh * gw, ratio) * t
    flat = np.zeros(t * gh * gw, dtype=bool)
    flat[order[:n]] = True
    return flat.reshape(t, gh, gw)
