"""Which patches each modality shows: per-modality visible budgets, MultiMAE's Dirichlet split, seeded masks.

    counts = visible_counts(specs, {"rgb": 1.0, "depth": 0.1})          # ratios or counts → {"rgb": 64, "depth": 6}
    counts = dirichlet_counts(specs, total=24, seed=0)                 # MultiMAE: split a shared budget
    vis = visible_masks(specs, counts, seed=0)                          # name → (N_m,) bool, True = visible

Masks are nested: with the same seed, a larger budget keeps every patch a smaller one showed (each
modality ranks its patches once by a seeded permutation).  Video can use tube masking (the same
spatial patches hidden in every time step, VideoMAE); patches that are ``ineligible`` (e.g. mostly
invalid depth) are never shown.
"""

from __future__ import annotations

import numpy as np

from ..modalities import Modality


class BudgetError(ValueError):
    """A visible budget that cannot be met; the message says why."""


def visible_counts(specs: list[Modality], budgets: dict[str, float | int]) -> dict[str, int]:
    """Visible patch counts from ratios (floats in [0, 1]: fraction of the modality's patches shown) or counts (ints).

    Modalities missing from ``budgets`` show nothing.
    """
    names = {s.name for s in specs}
    unknown = set(budgets) - names
    if unknown:
        raise BudgetError(f"Unknown modality {sorted(unknown)[0]!r}; this model has: {', '.join(sorted(names))}.")
    out = {}
    for s in specs:
        b = budgets.get(s.name, 0)
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, float, np.integer, np.floating)) or not np.isfinite(b):
            raise BudgetError(f"The budget for {s.name} must be a ratio in [0, 1] or a patch count, got {b!r}.")
        n = int(b) if isinstance(b, (int, np.integer)) else int(round(float(b) * s.num_patches))
        if not 0 <= n <= s.num_patches or (isinstance(b, (float, np.floating)) and not 0 <= b <= 1):
            raise BudgetError(f"The budget for {s.name} must be between 0 and {s.num_patches} patches (0–1 as a ratio), got {b}.")
        out[s.name] = n
    if sum(out.values()) == 0:
        raise BudgetError("Every modality is fully masked: show at least one patch of some modality.")
    return out


def dirichlet_counts(specs: list[Modality], total: int, seed: int, alpha: float = 1.0) -> dict[str, int]:
    """Split ``total`` visible patches between modalities with proportions ~ Dirichlet(``alpha``) (MultiMAE).

    Counts are capped at each modality's patch count and always sum to ``total``.
    """
    cap = np.array([s.num_patches for s in specs])
    if not 0 < total <= cap.sum():
        raise BudgetError(f"The total budget must be between 1 and {cap.sum()} patches, got {total}.")
    p = np.random.default_rng(seed).dirichlet([alpha] * len(specs))
    counts = np.minimum(np.floor(p * total).astype(int), cap)
    order = np.argsort(-p)
    while counts.sum() < total:  # hand out what rounding and caps left over, largest share first
        for k in order:
            if counts.sum() < total and counts[k] < cap[k]:
                counts[k] += 1
    return {s.name: int(c) for s, c in zip(specs, counts)}


def _ranking(spec: Modality, seed: int, strategy: str) -> np.ndarray:
    """Patch indices in the order they become visible as the budget grows (seeded per modality)."""
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    if strategy == "random":
        return rng.permutation(spec.num_patches)
    if strategy == "tube":
        if spec.kind != "video":
            raise BudgetError(f"Tube masking needs a video modality; {spec.name} is {spec.kind}.")
        t, spatial = spec.grid[0], int(np.prod(spec.grid[1:]))
        cells = rng.permutation(spatial)
        return (np.arange(t)[None, :] * spatial + cells[:, None]).ravel()  # a whole tube, then the next
    raise BudgetError(f"Unknown masking strategy {strategy!r}: use 'random' or 'tube'.")


#: strategies for spectrogram modalities, from :mod:`explorer.masking.audio` (counts are rounded down to whole strips)
SPECTROGRAM_STRATEGIES = ("time", "frequency", "time-frequency")


def _strips(spec: Modality, n: int, seed: int, strategy: str, bad) -> np.ndarray:
    from .audio import spectrogram_visible

    if spec.kind != "spectrogram":
        raise BudgetError(f"{strategy} masking needs a spectrogram modality; {spec.name} is {spec.kind}.")
    vis = spectrogram_visible(spec.grid, n, strategy, seed)
    return vis & ~np.asarray(bad, bool) if bad is not None else vis  # mostly unknown patches are never shown


def visible_masks(specs: list[Modality], counts: dict[str, int], seed: int, *, strategy: dict[str, str] | None = None,
                  ineligible: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Seeded visible masks: name → ``(N_m,)`` bool with exactly ``counts[name]`` True (nested in the count).

    Args:
        strategy: name → ``"random"`` (default), ``"tube"`` (video; counts are then rounded down to whole tubes) or, for
            spectrograms, ``"time"`` / ``"frequency"`` / ``"time-frequency"`` (whole strips, :mod:`explorer.masking.audio`).
        ineligible: name → ``(N_m,)`` bool patches never shown (the count is capped by what is left, never silently:
            :class:`BudgetError` if it cannot be met).
    """
    strategy, ineligible = strategy or {}, ineligible or {}
    out = {}
    for s in specs:
        n = int(counts.get(s.name, 0))
        if strategy.get(s.name) in SPECTROGRAM_STRATEGIES:  # whole time / frequency strips (Audio-MAE): masking.audio
            out[s.name] = _strips(s, n, seed, strategy[s.name], ineligible.get(s.name))
            continue
        order = _ranking(s, seed, strategy.get(s.name, "random"))
        bad = ineligible.get(s.name)
        if bad is not None:
            order = order[~np.asarray(bad, bool)[order]]
            if n > len(order):
                raise BudgetError(f"{s.name}: {n} visible patches asked but only {len(order)} have valid values.")
        if strategy.get(s.name) == "tube":
            n -= n % s.grid[0]
        vis = np.zeros(s.num_patches, bool)
        vis[order[:n]] = True
        out[s.name] = vis
    return out
