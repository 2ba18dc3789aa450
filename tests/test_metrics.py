"""Reconstruction metrics against hand-computed values on non-square, non-symmetric cases (a transposed grid, the
wrong axis or pixels in place of patches each change the answer)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer.metrics import masked_psnr, patch_mse, psnr_from_mse, upsample_mask


def test_upsample_mask_repeats_each_patch_as_a_block():
    m = np.array([[1, 0, 0], [0, 0, 1]], bool)  # (2, 3): not square, not symmetric
    up = upsample_mask(m, 4)
    assert up.shape == (8, 12) and up.dtype == bool
    np.testing.assert_array_equal(up, np.kron(m.astype(int), np.ones((4, 4), int)).astype(bool))
    assert upsample_mask(m.astype(np.uint8), 1).dtype == np.uint8


def _per_patch_error(values: np.ndarray, patch: int, channel: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """target = 0; pred = ``values[r, c]`` in one channel of patch (r, c): its MSE is values² / 3."""
    gh, gw = values.shape
    target = np.zeros((gh * patch, gw * patch, 3))
    pred = target.copy()
    pred[..., channel] = np.kron(values, np.ones((patch, patch)))
    return pred, target


def test_patch_mse_is_the_mean_over_each_patch_and_channel():
    v = np.array([[0.1, 0.2, 0.3, 0.0], [0.5, 0.0, 0.0, 0.4]])  # (2, 4)
    pred, target = _per_patch_error(v, 3, channel=2)
    got = patch_mse(pred, target, 3)
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got, v ** 2 / 3, rtol=1e-12)
    # one pixel of one patch: the error is diluted by the patch's 3 * 3 * 3 values, and lands in that patch only
    p2 = target.copy()
    p2[4, 7, 1] = 0.9  # row 4 → patch row 1; col 7 → patch col 2
    e = patch_mse(p2, target, 3)
    assert e[1, 2] == pytest.approx(0.81 / 27) and np.count_nonzero(e) == 1


@pytest.mark.parametrize("mse, db", [(1.0, 0.0), (0.01, 20.0), (1e-4, 40.0), (0.5, 10 * math.log10(2))])
def test_psnr_of_known_errors(mse, db):
    assert psnr_from_mse(mse) == pytest.approx(db, abs=1e-9)


def test_psnr_of_a_perfect_match_is_infinite():
    assert psnr_from_mse(0.0) == math.inf and psnr_from_mse(-0.0) == math.inf


def test_masked_psnr_reads_hidden_patches_only():
    v = np.array([[0.3, 0.0, 0.0], [0.0, 0.0, 0.6]])
    pred, target = _per_patch_error(v, 2)
    hidden = np.array([[True, False, False], [False, True, True]])
    # hidden patch errors: 0.09/3, 0, 0.36/3 → mean 0.15/3 = 0.05 → 13.0103 dB
    assert masked_psnr(pred, target, hidden, 2) == pytest.approx(10 * math.log10(1 / 0.05), abs=1e-9)
    # errors only where nothing is hidden: perfect on the hidden part
    assert masked_psnr(pred, target, np.array([[False, True, True], [True, True, False]]), 2) == math.inf
    # transposing the mask would pick other patches: make sure the answer depends on the orientation
    only_top_left = np.zeros((2, 3), bool)
    only_top_left[0, 0] = True
    assert masked_psnr(pred, target, only_top_left, 2) == pytest.approx(10 * math.log10(3 / 0.09))
    assert math.isnan(masked_psnr(pred, target, np.zeros((2, 3), bool), 2))


def test_patch_mse_computes_in_float64_whatever_the_input_precision():
    """float32 images (what the models return) are compared in float64: the squared error of 0.1 in float32 would be
    off by ~1e-8 relative, which a float64 reference sees."""
    rng = np.random.default_rng(0)
    pred = rng.random((6, 9, 3), dtype=np.float32)
    target = rng.random((6, 9, 3), dtype=np.float32)
    ref = ((pred.astype(np.float64) - target.astype(np.float64)) ** 2).reshape(2, 3, 3, 3, 3).mean(axis=(1, 3, 4))
    got = patch_mse(pred, target, 3)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(patch_mse(pred, target.astype(np.float64), 3), ref, rtol=1e-13, atol=0)


def test_masked_psnr_takes_a_0_1_integer_mask_as_a_boolean_one():
    """A mask of 0 / 1 integers (as saved in .npy files) selects patches, not rows 0 and 1."""
    v = np.array([[0.3, 0.0, 0.0], [0.0, 0.0, 0.6]])
    pred, target = _per_patch_error(v, 2)
    hidden = np.array([[1, 0, 0], [0, 1, 1]], np.uint8)
    assert masked_psnr(pred, target, hidden, 2) == masked_psnr(pred, target, hidden.astype(bool), 2)
    assert masked_psnr(pred, target, hidden, 2) == pytest.approx(10 * math.log10(1 / 0.05), abs=1e-9)
