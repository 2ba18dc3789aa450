import numpy as np
import pytest

import explorer
from explorer.reconstruction.baselines import mean_fill, telea_fill
from explorer.masking import MaskSpec, make_mask
from explorer.metrics import masked_psnr, patch_mse, psnr_from_mse, upsample_mask
from explorer.models import load_model
from explorer.preprocess import fit_image
from explorer.reconstruction import SweepCache

from _tiny import random_image, save_tiny_mae


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(save_tiny_mae(tmp_path_factory.mktemp("m")))


def test_result_views_are_consistent(tiny):
    img = random_image(32, 1)
    rec = explorer.reconstruct(tiny, img, ratio=0.5, seed=2)
    px = rec.pixel_mask
    assert px.shape == (32, 32) and px.sum() == 8 * 8 * 8  # 8 of 16 patches
    np.testing.assert_array_equal(rec.pasted[~px], img[~px])
    np.testing.assert_array_equal(rec.pasted[px], rec.prediction[px])
    assert np.all(rec.masked_input[px] == 0.5)
    np.testing.assert_array_equal(rec.masked_input[~px], img[~px])
    assert rec.patch_error.shape == (4, 4)
    expected = psnr_from_mse(float(((rec.prediction - img) ** 2)[px].mean()))
    assert rec.psnr_masked == pytest.approx(expected, rel=1e-6)
    meta = rec.metadata()
    assert meta["seed"] == 2 and meta["ratio"] == 0.5 and meta["weights_sha256"] == tiny.weights_sha256
    assert len(meta["input_sha256"]) == 64


def test_metrics_analytic():
    img = np.zeros((16, 16, 3), np.float32)
    mask = np.array([[True, False], [False, False]])
    pred = img.copy()
    pred[:8, :8] += 0.1  # error only on the hidden patch
    assert masked_psnr(pred, img, mask, 8) == pytest.approx(20.0, abs=1e-6)
    assert np.isnan(masked_psnr(pred, img, np.zeros_like(mask), 8))
    assert masked_psnr(img, img, mask, 8) == float("inf")
    err = patch_mse(pred, img, 8)
    assert err[0, 0] == pytest.approx(0.01) and err[1, 1] == 0
    assert upsample_mask(mask, 8).sum() == 64


def test_baselines_fill_only_hidden_patches():
    img = random_image(32, 5)
    mask = make_mask((4, 4), MaskSpec("random", 0.5, 0))
    px = upsample_mask(mask, 8)
    mf = mean_fill(img, mask, 8)
    np.testing.assert_array_equal(mf[~px], img[~px])
    np.testing.assert_allclose(mf[px], np.broadcast_to(img[~px].mean(0), mf[px].shape), atol=1e-6)
    tf = telea_fill(img, mask, 8)
    assert np.abs(tf[~px] - img[~px]).max() <= 0.5 / 255 + 1e-6  # 8-bit quantisation only
    # On a smooth image, inpainting beats the flat mean colour.
    assert masked_psnr(tf, img, mask, 8) > masked_psnr(mf, img, mask, 8)


@pytest.mark.parametrize("policy,desc", [("center-crop", "centre-cropped"), ("resize", "squashed"), ("pad", "padded")])
def test_fit_policies(policy, desc):
    img = np.random.default_rng(0).random((60, 120, 3)).astype(np.float32)
    fit = fit_image(img, 32, policy)
    assert fit.pixels.shape == (32, 32, 3) and fit.pixels.dtype == np.float32
    assert "120x60" in fit.description and desc in fit.description
    if policy == "pad":
        assert np.all(fit.pixels[:8] == 0.5)  # grey band above the letterboxed image


def test_sweep_cache_serves_hits(tiny):
    cache = SweepCache(max_items=2)
    img = explorer.load_image(random_image(32, 1))
    a = cache.get(tiny, img, 0, "random")
    b = cache.get(tiny, img, 0, "random")
    assert a is b and cache.hits == 1 and cache.misses == 1
    cache.get(tiny, img, 1, "random")
    cache.get(tiny, img, 2, "random")
    assert len(cache) == 2
    assert cache.get(tiny, img, 0, "random") is not a  # evicted (LRU), recomputed
    # Same seed, strategy and input give identical results after recomputation (determinism).
    np.testing.assert_array_equal(cache.get(tiny, img, 0, "random").results[7].mask, a.results[7].mask)


def test_sample_images_load():
    for name in explorer.SAMPLES:
        img = explorer.load_sample(name)
        assert img.pixels.ndim == 3 and img.pixels.shape[2] == 3 and img.name == name


@pytest.mark.parametrize("manual", [
    np.array([0, 5, 9]), np.array([[0], [5], [9]]), (0, 5, 9), range(0, 10, 5), np.array([0.0, 5.0, 9.0]), [np.int64(0), 5, 9],
])
def test_manual_indices_accept_any_sequence_of_ints(tiny, manual):
    """``manual=np.array([...])`` used to raise "truth value of an array is ambiguous"."""
    rec = explorer.reconstruct(tiny, random_image(32, seed=3), strategy="manual", manual=manual)
    want = sorted({int(i) for i in np.asarray(list(manual) if isinstance(manual, range) else manual).ravel()})
    assert np.flatnonzero(rec.mask).tolist() == want
    assert rec.spec.manual == tuple(int(i) for i in np.asarray(list(manual) if isinstance(manual, range) else manual).ravel())


def test_manual_mask_from_a_boolean_grid(tiny):
    grid = np.zeros(tiny.grid, bool)
    grid[1, 2] = grid[0, 0] = True
    rec = explorer.reconstruct(tiny, random_image(32, seed=3), strategy="manual", manual=grid)
    assert np.array_equal(rec.mask, grid)


@pytest.mark.parametrize("bad", ["0,1", [0.5, 2], np.array([1.5])])
def test_manual_indices_refuse_what_is_not_indices(tiny, bad):
    with pytest.raises(explorer.MaskError, match="Manual mask"):
        explorer.reconstruct(tiny, random_image(32, seed=3), strategy="manual", manual=bad)
