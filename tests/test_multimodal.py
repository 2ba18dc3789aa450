"""Multimodal MAE: modalities, budgets, the model's masking invariance, reconstruction scores, baselines, loading."""

import numpy as np
import pytest
import torch

from explorer.models import ModelLoadError, load_model
from explorer.multimodal import (
    BudgetError,
    Modality,
    MultiModalInputError,
    dirichlet_counts,
    load_multimodal_model,
    reconstruct_multimodal,
    visible_counts,
    visible_masks,
)
from explorer.multimodal.baselines import baseline_metrics, inpaint_prediction, mean_prediction

from _tiny import AUDIO, DEPTH, RGB, VIDEO, save_tiny_multimae as _save_tiny

@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    return load_multimodal_model(str(_save_tiny(tmp_path_factory.mktemp("rgbd") / "m", [RGB, DEPTH])), device="cpu")


def _room(seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.random((32, 32, 3)).astype(np.float32), "depth": rng.uniform(2, 9, (32, 32)).astype(np.float32)}


@pytest.mark.parametrize("spec", [RGB, DEPTH, VIDEO, AUDIO])
def test_patchify_is_an_exact_inverse_with_row_major_patches(spec):
    x = torch.randn(2, *spec.shape)
    t = spec.patchify(x)
    assert t.shape == (2, spec.num_patches, spec.patch_dim)
    assert torch.equal(spec.unpatchify(t), x)
    # an independent reference: the last patch of the grid, sliced by hand
    pos = tuple(g - 1 for g in spec.grid)
    sl = tuple(slice(p * k, p * (k + 1)) for p, k in zip(spec.patch, pos))
    assert torch.equal(t[1, spec.patch_index(pos)], x[1][sl].reshape(-1))
    m = np.zeros(spec.num_patches, bool)
    m[spec.patch_index(pos)] = True
    full = spec.unpatchify_mask(m)
    assert full.shape == spec.shape and full[sl].all() and full.sum() == spec.patch_dim


def test_modalities_refuse_bad_shapes():
    with pytest.raises(ValueError, match="multiple of the patch"):
        Modality("d", "depth", (30, 32), (8, 8), (0.0,), (1.0,))
    with pytest.raises(ValueError, match="Unknown modality kind"):
        Modality("d", "lidar", (32, 32), (8, 8), (0.0,), (1.0,))
    with pytest.raises(ValueError, match="expected arrays of shape"):
        RGB.patchify(torch.zeros(1, 16, 32, 3))


def test_budgets_ratios_counts_dirichlet_and_errors():
    assert visible_counts([RGB, DEPTH], {"rgb": 1.0, "depth": 0.25}) == {"rgb": 16, "depth": 4}
    assert visible_counts([RGB, DEPTH], {"depth": 3}) == {"rgb": 0, "depth": 3}
    for bad, msg in [({"rgb": 0.0}, "fully masked"), ({"rgb": 1.5}, "between 0 and"), ({"rgb": 17}, "between 0 and"),
                     ({"lidar": 0.5}, "Unknown modality"), ({"rgb": "half"}, "ratio in"), ({"rgb": float("nan")}, "ratio in")]:
        with pytest.raises(BudgetError, match=msg):
            visible_counts([RGB, DEPTH], bad)
    draws = [dirichlet_counts([RGB, DEPTH], 20, seed=s) for s in range(30)]
    assert all(sum(d.values()) == 20 and max(d.values()) <= 16 for d in draws)
    assert draws[3] == dirichlet_counts([RGB, DEPTH], 20, seed=3)
    assert len({d["rgb"] for d in draws}) > 3  # the split varies with the seed
    with pytest.raises(BudgetError, match="between 1 and 32"):
        dirichlet_counts([RGB, DEPTH], 33, seed=0)


def test_masks_are_exact_nested_seeded_tubes_and_skip_ineligible():
    small = visible_masks([RGB, DEPTH], {"rgb": 4, "depth": 2}, seed=5)
    large = visible_masks([RGB, DEPTH], {"rgb": 10, "depth": 9}, seed=5)
    assert small["rgb"].sum() == 4 and large["depth"].sum() == 9
    assert (large["rgb"] >= small["rgb"]).all() and (large["depth"] >= small["depth"]).all()  # nested
    assert not np.array_equal(small["rgb"], visible_masks([RGB, DEPTH], {"rgb": 4}, seed=6)["rgb"])
    tube = visible_masks([VIDEO], {"video": 5}, seed=1, strategy={"video": "tube"})["video"].reshape(VIDEO.grid)
    assert tube.sum() == 4 and (tube[0] == tube[1]).all()  # rounded down to whole tubes, same places in time
    bad = np.zeros(16, bool)
    bad[:10] = True
    m = visible_masks([DEPTH], {"depth": 6}, seed=0, ineligible={"depth": bad})["depth"]
    assert m.sum() == 6 and not (m & bad).any()
    with pytest.raises(BudgetError, match="only 6 have valid values"):
        visible_masks([DEPTH], {"depth": 7}, seed=0, ineligible={"depth": bad})
    with pytest.raises(BudgetError, match="needs a video"):
        visible_masks([DEPTH], {"depth": 2}, seed=0, strategy={"depth": "tube"})


def test_model_ignores_hidden_values_but_reads_the_other_modality(rgbd):
    x = _room(1)
    vis = {"rgb": np.ones((1, 16), bool), "depth": np.zeros((1, 16), bool)}
    vis["depth"][0, :3] = True
    base = rgbd.predict({k: v[None] for k, v in x.items()}, vis)
    hidden_changed = x["depth"].copy()
    keep = DEPTH.unpatchify_mask(vis["depth"][0])
    hidden_changed[~keep] += 3.0  # only hidden depth values change
    same = rgbd.predict({"rgb": x["rgb"][None], "depth": hidden_changed[None]}, vis)
    np.testing.assert_allclose(same["depth"], base["depth"], atol=1e-5)
    other = rgbd.predict({"rgb": (1 - x["rgb"])[None], "depth": x["depth"][None]}, vis)
    assert np.abs(other["depth"] - base["depth"]).max() > 1e-3  # depth is predicted from the RGB it sees
    with pytest.raises(ValueError, match="same total number"):
        two = {"rgb": np.ones((2, 16), bool), "depth": np.zeros((2, 16), bool)}
        two["rgb"][1, 0] = False
        rgbd.predict({k: np.stack([v, v]) for k, v in x.items()}, two)


def test_reconstruction_scores_match_an_independent_computation(rgbd):
    x = _room(2)
    x["depth"][:8, :8] = np.nan  # one patch of unknown depth
    rec = reconstruct_multimodal(rgbd, x, {"rgb": 0.5, "depth": 0.5}, seed=3)
    assert rec.counts == {"rgb": 8, "depth": 8}
    d = rec["depth"]
    assert not d.visible[0]  # the unknown patch is never shown
    hidden = ~DEPTH.unpatchify_mask(d.visible) & np.isfinite(x["depth"])
    t, p = x["depth"][hidden].astype(float), np.maximum(d.prediction[hidden].astype(float), 1e-3)
    assert d.metrics["absrel"] == pytest.approx(np.mean(np.abs(p - t) / t), rel=1e-6)
    assert d.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((d.prediction[hidden] - t) ** 2)), rel=1e-5)
    assert d.metrics["hidden_values"] == hidden.sum() == 7 * 64
    r = rec["rgb"]
    mse = np.mean((r.prediction[~RGB.unpatchify_mask(r.visible)] - x["rgb"][~RGB.unpatchify_mask(r.visible)]) ** 2)
    assert r.metrics["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    shown = RGB.unpatchify_mask(r.visible)
    assert np.array_equal(r.pasted[shown], x["rgb"][shown]) and np.isnan(r.masked_input[~shown]).all()
    assert np.isnan(d.patch_error.reshape(-1)[d.visible]).all() and np.isfinite(d.patch_error.reshape(-1)[1:][~d.visible[1:]]).all()
    again = reconstruct_multimodal(rgbd, x, {"rgb": 0.5, "depth": 0.5}, seed=3)
    assert np.array_equal(again["depth"].prediction, d.prediction) and again.input_sha256 == rec.input_sha256
    assert "never shown" in " ".join(rec.notes)


def test_reconstruction_refuses_what_it_cannot_do(rgbd):
    x = _room(3)
    cases = [(dict(inputs={"rgb": x["rgb"]}, budgets={"rgb": 0.5, "depth": 0.5}), BudgetError, "No depth was given"),
             (dict(inputs=x, budgets={"rgb": 0, "depth": 0}), BudgetError, "fully masked"),
             (dict(inputs={"rgb": x["rgb"][:16]}, budgets={"rgb": 1.0}), MultiModalInputError, "expected shape"),
             (dict(inputs={"rgb": x["rgb"], "audio": x["depth"]}, budgets={"rgb": 1.0}), MultiModalInputError, "Unknown modality"),
             (dict(inputs={"depth": np.full((32, 32), np.nan, np.float32)}, budgets={"depth": 0.5}), MultiModalInputError, "no known"),
             (dict(inputs={}, budgets={"rgb": 1.0}), MultiModalInputError, "No input"),
             (dict(inputs=x, budgets={"rgb": 1.0}, total=4), BudgetError, "either")]
    for kw, err, msg in cases:
        with pytest.raises(err, match=msg):
            reconstruct_multimodal(rgbd, kw["inputs"], kw["budgets"], total=kw.get("total"))
    rec = reconstruct_multimodal(rgbd, {"rgb": x["rgb"]}, total=6, seed=0)  # Dirichlet over the given modalities only
    assert rec.counts == {"rgb": 6, "depth": 0} and not rec["depth"].given and rec["depth"].metrics == {}


def test_baselines_on_analytic_cases(rgbd):
    plane = {"rgb": np.full((32, 32, 3), 0.3, np.float32), "depth": np.full((32, 32), 4.0, np.float32)}
    rec = reconstruct_multimodal(rgbd, plane, {"rgb": 0.5, "depth": 0.25}, seed=0)
    base = baseline_metrics(rec)
    # inpainting a constant from visible patches is exact; the training mean (5 m) is off by exactly 1 m
    assert base["inpainting (visible patches)"]["depth"]["rmse"] < 1e-3
    assert base["training mean"]["depth"]["rmse"] == pytest.approx(1.0, rel=1e-6)
    assert base["training mean"]["depth"]["absrel"] == pytest.approx(0.25, rel=1e-6)
    assert base["inpainting (visible patches)"]["rgb"]["psnr"] > 40
    assert mean_prediction(rec["rgb"]).shape == (32, 32, 3)
    only_rgb = reconstruct_multimodal(rgbd, plane, {"rgb": 1.0}, seed=0)
    assert inpaint_prediction(only_rgb["depth"]) is None and "depth" not in baseline_metrics(only_rgb)["inpainting (visible patches)"]


def test_loading_explains_every_wrong_model(tmp_path):
    with pytest.raises(ModelLoadError, match="not in transformers"):
        load_multimodal_model("EPFL-VILAB/multimae-b")
    with pytest.raises(ModelLoadError, match="transformers has no multimodal"):
        load_multimodal_model("someone/some-av-mae")
    with pytest.raises(ModelLoadError, match="Unknown model"):
        load_multimodal_model("not a model")
    with pytest.raises(ModelLoadError, match="not a multimodal MAE"):
        load_multimodal_model("mini-mae")
    folder = _save_tiny(tmp_path / "a", [RGB, DEPTH])
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        load_multimodal_model(str(folder))
    other = _save_tiny(tmp_path / "b", [RGB])
    (other / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_multimodal_model(str(other))
    with pytest.raises(ModelLoadError, match="load_multimodal_model"):
        load_model(str(_save_tiny(tmp_path / "c", [RGB, DEPTH])))


def test_weights_hash_follows_the_weights(tmp_path):
    a = load_multimodal_model(str(_save_tiny(tmp_path / "a", [RGB, DEPTH], seed=0)), device="cpu")
    b = load_multimodal_model(str(_save_tiny(tmp_path / "b", [RGB, DEPTH], seed=0)), device="cpu")
    c = load_multimodal_model(str(_save_tiny(tmp_path / "c", [RGB, DEPTH], seed=1)), device="cpu")
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
