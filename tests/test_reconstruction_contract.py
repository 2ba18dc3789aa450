"""Image reconstruction's API as a contract: a hand-painted mask gives what `reconstruct` gives for the same
patches, a sweep equals one forward per ratio, the sweep cache keys on everything that changes a result, the
metadata records what regenerates it, and a model that cannot reconstruct is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import explorer
from explorer.models import ModelLoadError
from explorer.reconstruction.image import (SweepCache, as_input, load_input, reconstruct, reconstruct_manual,
                                           reconstruct_sweep)
from explorer.version import __version__


@pytest.fixture(scope="module")
def px(mae):
    return as_input("chelsea", "center-crop", mae.image_size)


def test_a_hand_painted_mask_is_the_manual_strategy(mae, px):
    pixels, info = px
    hidden = [1, 6, 11]  # (0, 1), (1, 2), (2, 3): not symmetric
    a = reconstruct_manual(mae, pixels, info, hidden, seed=5)
    b = reconstruct(mae, "chelsea", strategy="manual", manual=hidden, seed=5)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.mask.sum() == 3 and a.mask[0, 1] and a.mask[1, 2] and a.mask[2, 3] and not a.mask[1, 0]
    np.testing.assert_allclose(a.prediction, b.prediction, atol=1e-6)
    assert a.spec.strategy == "manual" and a.spec.manual == (1, 6, 11) and a.spec.seed == 5
    assert a.spec.ratio == pytest.approx(3 / mae.grid[0] / mae.grid[1])
    assert a.prediction.dtype == np.float32 and 0.0 <= a.prediction.min() and a.prediction.max() <= 1.0
    assert a.input is info and a.model == mae.info


def test_a_sweep_equals_one_forward_per_ratio(mae):
    sweep = reconstruct_sweep(mae, "chelsea", seed=3, strategy="block", ratios=(0.25, 0.5, 0.75))
    assert sweep.ratios == (0.25, 0.5, 0.75) and sweep.seconds > 0
    for r, res in zip(sweep.ratios, sweep.results):
        one = reconstruct(mae, "chelsea", ratio=r, seed=3, strategy="block")
        np.testing.assert_array_equal(res.mask, one.mask)
        np.testing.assert_allclose(res.prediction, one.prediction, atol=1e-5)
        assert (res.spec.strategy, res.spec.ratio, res.spec.seed) == ("block", r, 3)
    assert not (sweep.results[0].mask & ~sweep.results[1].mask).any()  # nested
    assert sweep.at(0.3) is sweep.results[0] and sweep.at(0.6) is sweep.results[1] and sweep.at(1.0) is sweep.results[2]
    np.testing.assert_array_equal(sweep.psnr_curve, [r.psnr_masked for r in sweep.results])


def test_the_sweep_cache_keys_on_image_fit_seed_and_strategy_and_evicts_the_oldest(mae):
    cache = SweepCache(max_items=2)
    a = cache.get(mae, "chelsea", 0, "random")
    assert cache.get(mae, "chelsea", 0, "random") is a and (cache.hits, cache.misses) == (1, 1)
    for args in (("chelsea", 1, "random"), ("chelsea", 0, "grid"), ("coffee", 0, "random")):
        b = cache.get(mae, *args)
        assert b is not a and not np.array_equal(b.results[10].prediction, a.results[10].prediction), args
    assert cache.get(mae, "chelsea", 0, "random", fit="pad") is not a
    assert len(cache) == 2 and cache.misses == 5
    assert cache.get(mae, "chelsea", 0, "random") is not a  # evicted: computed again
    key = SweepCache.key(mae, "sha", "pad", 4, "grid")
    assert key == ("sha", "pad", mae.model_id, id(mae.model), str(mae.device), str(mae.dtype), 4, "grid")
    assert SweepCache().max_items == 16


def test_metadata_records_what_regenerates_the_result(mae):
    r = reconstruct(mae, "chelsea", ratio=0.5, seed=7, strategy="grid", fit="pad")
    m = r.metadata()
    assert m == {
        "explorer": __version__, "model_id": mae.model_id, "model_type": mae.info.model_type,
        "weights_sha256": mae.weights_sha256, "device": mae.info.device, "dtype": mae.info.dtype,
        "input_name": "chelsea", "input_sha256": explorer.load_sample("chelsea").sha256, "fit": "pad",
        "strategy": "grid", "ratio": 0.5, "seed": 7, "manual": [], "hidden_fraction": r.hidden_fraction,
        "psnr_masked_db": r.psnr_masked}
    assert r.hidden_fraction == pytest.approx(0.5, abs=1 / r.mask.size)


def test_views_of_a_result():
    from explorer.masking.image import MaskSpec
    from explorer.reconstruction.image import InputInfo, Reconstruction

    img = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    pred = np.full_like(img, 0.25)
    mask = np.array([[True, False, False], [False, False, True]])  # (2, 3) patches of 2 pixels
    r = Reconstruction(image=img, mask=mask, prediction=pred, patch_size=2, spec=MaskSpec("manual", 1 / 3, 0, (0, 5)),
                       model=None, input=InputInfo("x", "s", "pad", "", ()))
    px = r.pixel_mask
    assert px.shape == (4, 6) and px[:2, :2].all() and px[2:, 4:].all() and px.sum() == 8
    np.testing.assert_array_equal(r.masked_input[:2, :2], 0.5)
    np.testing.assert_array_equal(r.masked_input[2:, 4:], 0.5)
    np.testing.assert_array_equal(r.masked_input[:2, 2:], img[:2, 2:])
    np.testing.assert_array_equal(r.pasted[:2, :2], 0.25)
    np.testing.assert_array_equal(r.pasted[2:, 4:], 0.25)
    np.testing.assert_array_equal(r.pasted[:2, 2:], img[:2, 2:])
    assert r.hidden_fraction == pytest.approx(1 / 3)
    assert r.patch_error.dtype == np.float32 and r.patch_error.shape == (2, 3)
    np.testing.assert_allclose(r.patch_error[0, 0], ((img[:2, :2] - 0.25) ** 2).mean(), rtol=1e-6)


def test_inputs_and_models_that_cannot_be_reconstructed(mae, vit):
    loaded = explorer.load_sample("coffee")
    assert load_input(loaded) is loaded and load_input("coffee").sha256 == loaded.sha256
    from_array = load_input(loaded.pixels)
    np.testing.assert_array_equal(from_array.pixels, loaded.pixels)
    assert from_array.name == "<array>"
    pixels, info = as_input("coffee", "resize", mae.image_size)
    assert pixels.shape == (mae.image_size, mae.image_size, 3) and info.fit_policy == "resize" and info.name == "coffee"
    with pytest.raises(ModelLoadError, match=r"is not a masked autoencoder of images .*needs a ViTMAE checkpoint"):
        reconstruct(vit, "chelsea")
    with pytest.raises(ModelLoadError, match="not a masked autoencoder"):
        reconstruct_sweep(vit, "chelsea")


def test_norm_pix_checkpoints_say_their_patches_borrow_the_true_statistics(tmp_path):
    from _tiny import save_tiny_mae

    m = explorer.load_model(str(save_tiny_mae(tmp_path / "np", norm_pix_loss=True)), device="cpu")
    notes = reconstruct(m, "chelsea").notes
    assert len(notes) == 1 and "norm_pix_loss" in notes[0] and "TRUE patch mean and variance" in notes[0]


# ---------------------------------------------------------------------------------------------------------------------
# What each result records, the defaults a user relies on, and the refusals' words.
def test_defaults_are_seed_0_random_at_75_percent_and_the_records_follow_the_input(mae):
    rgba = np.dstack([explorer.load_sample("chelsea").pixels, np.ones(explorer.load_sample("chelsea").pixels.shape[:2],
                                                                          np.float32)])
    r = reconstruct(mae, rgba)
    assert (r.spec.strategy, r.spec.ratio, r.spec.seed) == ("random", 0.75, 0)
    np.testing.assert_array_equal(r.mask, reconstruct(mae, rgba, ratio=0.75, seed=0, strategy="random").mask)
    assert r.input.notes == ("fully opaque alpha channel dropped",)
    from explorer.preprocess import fit_image

    assert r.input.fit_description == fit_image(rgba[..., :3], mae.image_size, "center-crop").description
    assert r.input.fit_description != fit_image(rgba[..., :3], mae.image_size, "pad").description
    s = reconstruct_sweep(mae, "chelsea", ratios=(0.5,))
    assert (s.results[0].spec.strategy, s.results[0].spec.seed) == ("random", 0)
    assert s.results[0].input.name == "chelsea" and s.results[0].input.fit_policy == "center-crop"
    padded, pinfo = as_input("chelsea", "pad", mae.image_size)
    np.testing.assert_array_equal(padded, fit_image(explorer.load_sample("chelsea").pixels, mae.image_size, "pad").pixels)
    assert pinfo.fit_policy == "pad"
    pixels, info = as_input("chelsea", "center-crop", mae.image_size)
    assert not np.array_equal(pixels, padded)
    m = reconstruct_manual(mae, pixels, info, [0, 5])
    assert m.spec.seed == 0 and m.image is pixels


def test_a_model_named_by_string_is_loaded():
    r = reconstruct("mini-mae", "chelsea", ratio=0.5, seed=1)
    assert r.model.model_id == "mini-mae" and r.hidden_fraction == pytest.approx(0.5, abs=0.02)


def test_refusals_name_the_model_and_its_family(vit):
    with pytest.raises(ModelLoadError) as e:
        reconstruct(vit, "chelsea")
    assert str(e.value) == (f"{vit.model_id!r} is not a masked autoencoder of images (vit); masked reconstruction needs a "
                            "ViTMAE checkpoint such as mini-mae or facebook/vit-mae-base.")
    stranger = type("NotAnAdapter", (), {"model_id": "mine"})()  # no `reconstructs`, no `family`
    with pytest.raises(ModelLoadError, match=r"^'mine' is not a masked autoencoder of images \(\?\); "):
        reconstruct(stranger, "chelsea")


def test_predictions_are_clipped_to_the_unit_range(mae, monkeypatch):
    def wild(pixels, masks, batch_size=None):
        out = np.full((len(masks), *pixels.shape), 1.5, np.float32)
        out[:, ::2] = -0.5
        return out

    monkeypatch.setattr(mae, "forward_masks", wild)
    r = reconstruct(mae, "chelsea")
    assert r.prediction.min() == 0.0 and r.prediction.max() == 1.0 and r.prediction.dtype == np.float32


def test_the_sweep_passes_its_batch_size_and_times_itself(mae, monkeypatch):
    import time

    seen = []
    real = mae.forward_masks

    def spy(pixels, masks, batch_size=None):
        seen.append(batch_size)
        return real(pixels, masks, batch_size=batch_size)

    monkeypatch.setattr(mae, "forward_masks", spy)
    t0 = time.perf_counter()
    s = reconstruct_sweep(mae, "chelsea", ratios=(0.25, 0.75), batch_size=1)
    elapsed = time.perf_counter() - t0
    assert seen == [1] and 0 < s.seconds <= elapsed


def test_the_sweep_cache_counts_every_hit_and_keys_on_the_image_and_the_fit(mae):
    cache = SweepCache()
    a = cache.get(mae, "chelsea", 0, "random")
    b = cache.get(mae, "coffee", 0, "random")
    assert b is not a and b.results[0].input.name == "coffee"
    assert cache.get(mae, "chelsea", 0, "random") is a and cache.get(mae, "coffee", 0, "random") is b
    assert (cache.hits, cache.misses) == (2, 2)
    p = cache.get(mae, "chelsea", 0, "random", fit="pad")
    assert p is not a and p.results[0].input.fit_policy == "pad" and cache.misses == 3


def test_norm_pix_note_in_full(tmp_path):
    from _tiny import save_tiny_mae

    m = explorer.load_model(str(save_tiny_mae(tmp_path / "np", norm_pix_loss=True)), device="cpu")
    (note,) = reconstruct(m, "chelsea").notes
    assert note == ("This checkpoint predicts per-patch-normalised pixels (norm_pix_loss). Hidden patches are shown "
                    "de-normalised with the TRUE patch mean and variance, as in the MAE paper's figures: their brightness "
                    "and contrast come from the original, so PSNR is optimistic.")
