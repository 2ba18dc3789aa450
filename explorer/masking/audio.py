"""Masks for spectrogram patches (Audio-MAE, Huang et al. 2022, section 3.2 and figure 3): pure, seeded, nested.

    hidden = spectrogram_mask((8, 64), "time-frequency", ratio=0.8, seed=0)   # (8, 64) bool, True = hidden
    vis = spectrogram_visible((8, 64), 102, "time", seed=0)                   # (512,) bool, whole time strips

The grid is the spectrogram's patch grid as :class:`explorer.modalities.Modality` tiles a ``(mels, frames)`` array:
``(frequency patches, time patches)``, patches row-major (frequency-major).  Strategies:

* ``"random"`` — unstructured (the paper's best for pretraining, 80 %);
* ``"time"`` — whole time strips (every frequency of a moment) hidden;
* ``"frequency"`` — whole frequency strips (a band over the whole clip) hidden;
* ``"time-frequency"`` — both: a patch is visible only when its time strip *and* its frequency strip are (their
  ``random_masking_2d``); visible = kept times × kept frequencies.

Their 2-D masking keeps ``int(T * (1 - mask_t_prob))`` time strips and ``int(F * (1 - mask_f_prob))`` frequency
strips, the ones with the lowest uniform noise (:func:`kept_strips`, :func:`audiomae_mask_2d` reproduce it from
their noise).  Ours draws the noise once per seed (numpy PCG64) and keeps strips in that order, so masks are
nested: a patch hidden at one ratio stays hidden at every larger one.  A single ratio is split between the axes as
their pretraining defaults split it (``mask_t_prob=0.7``, ``mask_f_prob=0.3``: time keeps ``(1 - ratio) ** a``,
frequency ``(1 - ratio) ** (1 - a)`` with ``a = ln 0.3 / ln 0.21``), unless ``probs=(mask_t_prob, mask_f_prob)``
is given.
"""

from __future__ import annotations

import math

import numpy as np

from .image import MaskError, num_masked

AUDIO_STRATEGIES = ("random", "time", "frequency", "time-frequency")
#: Audio-MAE's 2-D masking defaults (main_pretrain.py): the share of time and of frequency strips hidden.
MASK_T_PROB, MASK_F_PROB = 0.7, 0.3
#: exponent that splits a kept share between time and frequency as those defaults do (0.3 = 0.21 ** TIME_SHARE)
TIME_SHARE = math.log(1 - MASK_T_PROB) / math.log((1 - MASK_T_PROB) * (1 - MASK_F_PROB))


def kept_strips(n: int, mask_prob: float) -> int:
    """Strips kept out of ``n`` when each axis hides ``mask_prob`` of them: ``int(n * (1 - mask_prob))`` (theirs)."""
    if not 0.0 <= mask_prob <= 1.0:
        raise MaskError(f"A masking probability must lie in [0, 1], got {mask_prob}.")
    return int(n * (1 - mask_prob))


def audiomae_mask_2d(noise_t: np.ndarray, noise_f: np.ndarray, mask_t_prob: float, mask_f_prob: float) -> np.ndarray:
    """Audio-MAE's time-frequency mask from its noise: ``(T, F)`` bool, True = hidden, in *their* token layout
    (time-major, ``(frames / p, mels / p)``).

    Args:
        noise_t: ``(T,)`` uniform noise per time strip; noise_f: ``(F,)`` per frequency strip (lowest kept).
    """
    t, f = len(noise_t), len(noise_f)
    keep_t = np.zeros(t, bool)
    keep_t[np.argsort(np.asarray(noise_t), kind="stable")[:kept_strips(t, mask_t_prob)]] = True
    keep_f = np.zeros(f, bool)
    keep_f[np.argsort(np.asarray(noise_f), kind="stable")[:kept_strips(f, mask_f_prob)]] = True
    return ~(keep_t[:, None] & keep_f[None, :])


def _noise(grid: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    if int(seed) < 0:
        raise MaskError(f"Seed must be a non-negative integer, got {seed}.")
    fq, t = grid
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    return rng.random(t), rng.random(fq)  # time first, as their code draws it


def _check(grid, strategy):
    if strategy not in AUDIO_STRATEGIES:
        raise MaskError(f"Unknown spectrogram mask strategy {strategy!r}; choose one of {', '.join(AUDIO_STRATEGIES)}.")
    fq, t = (int(g) for g in grid)
    if min(fq, t) < 1:
        raise MaskError(f"Bad spectrogram patch grid {grid}.")
    return fq, t


def _from_kept(grid, kt: int, kf: int, seed: int) -> np.ndarray:
    """``(F, T)`` bool hidden: visible = the ``kt`` lowest-noise time strips × the ``kf`` lowest-noise frequency strips."""
    fq, t = grid
    nt, nf = _noise(grid, seed)
    keep_t = np.zeros(t, bool)
    keep_t[np.argsort(nt, kind="stable")[:kt]] = True
    keep_f = np.zeros(fq, bool)
    keep_f[np.argsort(nf, kind="stable")[:kf]] = True
    return ~(keep_f[:, None] & keep_t[None, :])


def split_kept(grid: tuple[int, int], kept_share: float) -> tuple[int, int]:
    """(time strips, frequency strips) kept for a kept share of the patches, split as :data:`TIME_SHARE` says; both
    grow with the share (so masks are nested) and their product never exceeds ``kept_share`` of the patches."""
    fq, t = grid
    if kept_share <= 0:
        return 0, 0
    kt = min(t, math.floor(t * kept_share ** TIME_SHARE + 1e-9))
    kf = min(fq, math.floor(fq * kept_share ** (1 - TIME_SHARE) + 1e-9))
    return max(kt, 1), max(kf, 1)


def spectrogram_mask(grid: tuple[int, int], strategy: str = "random", *, ratio: float | None = None, seed: int = 0,
                     probs: tuple[float, float] | None = None) -> np.ndarray:
    """``(F, T)`` bool mask (True = hidden) of a spectrogram patch grid ``(frequency patches, time patches)``.

    Args:
        ratio: share of patches hidden (``"time"`` / ``"frequency"``: rounded to whole strips; ``"time-frequency"``:
            split between the axes, see the module docstring).
        probs: ``"time-frequency"`` only, instead of ``ratio``: Audio-MAE's ``(mask_t_prob, mask_f_prob)``; the mask
            then hides exactly as many strips per axis as their ``random_masking_2d``.
    Raises:
        MaskError: unknown strategy, bad grid / ratio / seed, or both or neither of ``ratio`` and ``probs``.
    """
    fq, t = _check(grid, strategy)
    if (ratio is None) == (probs is None) or (probs is not None and strategy != "time-frequency"):
        raise MaskError("Give a ratio, or (time-frequency only) probs=(mask_t_prob, mask_f_prob).")
    if probs is not None:
        return _from_kept((fq, t), kept_strips(t, probs[0]), kept_strips(fq, probs[1]), seed)
    n_hidden = num_masked(fq * t, float(ratio))
    if strategy == "random":
        order = np.argsort(-np.random.Generator(np.random.PCG64(int(seed))).random(fq * t), kind="stable")
        hidden = np.zeros(fq * t, bool)
        hidden[order[:n_hidden]] = True
        return hidden.reshape(fq, t)
    if strategy == "time":
        return _from_kept((fq, t), t - num_masked(t, float(ratio)), fq, seed)
    if strategy == "frequency":
        return _from_kept((fq, t), t, fq - num_masked(fq, float(ratio)), seed)
    kt, kf = split_kept((fq, t), 1 - float(ratio))
    return _from_kept((fq, t), kt, kf, seed)


def spectrogram_visible(grid: tuple[int, int], n_visible: int, strategy: str = "random", seed: int = 0) -> np.ndarray:
    """``(F · T,)`` bool, True = visible, at most ``n_visible`` patches (row-major over ``(F, T)``), nested in
    ``n_visible`` for one seed: ``"random"`` shows exactly ``n_visible``; strip strategies round down to whole strips
    (``"time-frequency"``: kept times × kept frequencies, at least one of each when ``n_visible > 0``).

    Raises:
        MaskError: unknown strategy, bad grid, or ``n_visible`` outside ``[0, F · T]``.
    """
    fq, t = _check(grid, strategy)
    n = int(n_visible)
    if not 0 <= n <= fq * t:
        raise MaskError(f"{n} visible patches asked of {fq * t}.")
    if strategy == "random":
        order = np.argsort(np.random.Generator(np.random.PCG64(int(seed))).random(fq * t), kind="stable")
        vis = np.zeros(fq * t, bool)
        vis[order[:n]] = True
        return vis
    if n == 0:
        return np.zeros(fq * t, bool)
    if strategy == "time":
        kt, kf = n // fq, fq
    elif strategy == "frequency":
        kt, kf = t, n // t
    else:
        kt, kf = split_kept((fq, t), n / (fq * t))
    return ~_from_kept((fq, t), kt, kf, seed).ravel()
