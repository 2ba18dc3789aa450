"""Per-head attention summaries on attention patterns with a known answer (ViT paper's mean attention distance, in
pixels; attention entropy in nats), computed here by brute force over coordinates."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from explorer.attention.methods import attention_entropy, mean_attention_distance


def _uniform(L: int, H: int, T: int) -> np.ndarray:
    return np.full((L, H, T, T), 1.0 / T)


@pytest.mark.parametrize("grid, patch, prefix", [((2, 3), 16, 1), ((3, 5), 14, 0), ((4, 4), 8, 2)])
def test_uniform_attention_distance_is_the_mean_pairwise_pixel_distance(grid, patch, prefix):
    gh, gw = grid
    P = gh * gw
    cells = list(itertools.product(range(gh), range(gw)))
    expected = np.mean([math.hypot((a - c) * patch, (b - d) * patch) for (a, b), (c, d) in itertools.product(cells, cells)])
    got = mean_attention_distance(_uniform(2, 3, prefix + P), grid, patch, prefix)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_one_hot_attention_to_a_known_key():
    """Each query attends to the patch two columns right (or two left at the edge) and a little to the [CLS]
    token, which is dropped and renormalised away: every distance is exactly 2 patches."""
    grid, patch, prefix = (3, 4), 16, 1
    gh, gw = grid
    T = prefix + gh * gw
    probs = np.zeros((1, 2, T, T))
    for r, c in itertools.product(range(gh), range(gw)):
        q = prefix + r * gw + c
        k = prefix + r * gw + (c + 2 if c + 2 < gw else c - 2)
        probs[0, :, q, k] = 0.7
        probs[0, :, q, 0] = 0.3
    # head 1: attend one row down (or up): 1 patch vertically
    for r, c in itertools.product(range(gh), range(gw)):
        q = prefix + r * gw + c
        probs[0, 1, q] = 0
        probs[0, 1, q, prefix + (r + 1 if r + 1 < gh else r - 1) * gw + c] = 1.0
    got = mean_attention_distance(probs, grid, patch, prefix)
    np.testing.assert_allclose(got, [[2 * patch, patch]], rtol=1e-12)


def test_video_distance_ignores_time():
    """Tubelet grid (t, gh, gw): a query attending to the same spatial patch in another time slot is at distance 0."""
    grid, patch = (2, 2, 3), 16
    t, gh, gw = grid
    P = t * gh * gw
    probs = np.zeros((1, 1, P, P))
    for i in range(P):
        probs[0, 0, i, (i + gh * gw) % P] = 1.0  # same (r, c), the other time slot
    assert mean_attention_distance(probs, grid, patch, 0)[0, 0] == pytest.approx(0.0)


@pytest.mark.parametrize("T", [5, 17, 50])
def test_entropy_of_uniform_attention_is_log_T(T):
    np.testing.assert_allclose(attention_entropy(_uniform(2, 2, T)), math.log(T), rtol=1e-9)


def test_entropy_of_one_hot_and_two_way_rows():
    T = 6
    probs = np.zeros((1, 2, T, T))
    probs[0, 0, np.arange(T), np.arange(T)] = 1.0  # one-hot: 0 nats
    probs[0, 1, :, 0] = 0.25
    probs[0, 1, :, 3] = 0.75  # every row: −(¼ ln ¼ + ¾ ln ¾)
    got = attention_entropy(probs)
    assert got[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert got[0, 1] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # the mean is over queries: a layer whose rows differ averages them
    mixed = probs.copy()
    mixed[0, 0, :3] = probs[0, 1, :3]
    assert attention_entropy(mixed)[0, 0] == pytest.approx(got[0, 1] / 2)
