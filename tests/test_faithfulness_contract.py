"""Faithfulness helpers against independent implementations: Spearman against scipy (ties averaged), the map
similarity against scikit-image's SSIM on maps scaled to [0, 1] (per time step for video), and their edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from explorer.attention.faithfulness import _rank, _ssim, spearman


def _unit(m):
    m = np.asarray(m, np.float64)
    return (m - m.min()) / (m.max() - m.min())


@pytest.mark.parametrize("seed", range(4))
def test_spearman_equals_scipys_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, (6, 7)).astype(float)  # many ties
    b = a + rng.normal(0, 2, a.shape)
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    c = rng.random((3, 9))
    assert spearman(c, -c) == pytest.approx(-1.0) and spearman(c, c ** 3) == pytest.approx(1.0)


def test_ranks_are_zero_based_with_ties_averaged():
    np.testing.assert_array_equal(_rank(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [3.0, 0.0, 3.0, 1.0, 3.0])
    np.testing.assert_array_equal(_rank(np.array([5.0, -1.0, 2.0])), [2.0, 0.0, 1.0])


def test_constant_maps_agree_only_with_constant_maps():
    flat = np.ones((4, 4))
    assert spearman(flat, 2 * flat) == 1.0
    assert spearman(flat, np.arange(16.0).reshape(4, 4)) == 0.0
    assert spearman(np.arange(16.0), flat) == 0.0


def test_ssim_is_scikit_images_on_maps_scaled_to_the_unit_range():
    rng = np.random.default_rng(0)
    a = rng.random((14, 14)) * 7 - 3
    b = a + rng.normal(0, 1, a.shape)
    assert _ssim(a, b) == pytest.approx(structural_similarity(_unit(a), _unit(b), data_range=1.0, win_size=7), abs=1e-12)
    small_a, small_b = rng.random((6, 5)), rng.random((6, 5))  # the window shrinks to the largest odd side
    assert _ssim(small_a, small_b) == pytest.approx(
        structural_similarity(_unit(small_a), _unit(small_b), data_range=1.0, win_size=5), abs=1e-12)
    even_a, even_b = rng.random((4, 8)), rng.random((4, 8))
    assert _ssim(even_a, even_b) == pytest.approx(
        structural_similarity(_unit(even_a), _unit(even_b), data_range=1.0, win_size=3), abs=1e-12)
    assert np.isnan(_ssim(rng.random((2, 9)), rng.random((2, 9))))  # too small for any window
    assert _ssim(a, a) == pytest.approx(1.0)
    flat = np.full((8, 8), 4.0)  # a constant map is all zeros after scaling
    assert _ssim(flat, flat) == pytest.approx(1.0)


def test_video_ssim_is_the_mean_over_time_steps_each_scaled_on_its_own():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 9, 9)), rng.random((3, 9, 9))
    a[1] *= 5.0  # a louder step: scaled to [0, 1] on its own
    want = np.mean([structural_similarity(_unit(x), _unit(y), data_range=1.0, win_size=7) for x, y in zip(a, b)])
    assert _ssim(a, b) == pytest.approx(want, abs=1e-12)
