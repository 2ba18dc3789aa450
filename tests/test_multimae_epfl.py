"""MultiMAE (EPFL-VILAB) checkpoints: our implementation against the authors' own code's outputs.

The fixtures (tests/fixtures/multimae, see its README) were made by running EPFL-VILAB/MultiMAE's model code on a
small random configuration: a checkpoint in their exact key layout, inputs, masks and every output adapter's output,
their Dirichlet split of a total budget, and the names / shapes / parameter counts of their full-size model.
Tolerance: fp32 on the CPU, ``atol=1e-5`` on outputs of magnitude ~1 (observed: < 2e-6).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.models import ModelLoadError
from explorer.models.checkpoint_file import identify, read_state_dict
from explorer.models.multimae_epfl import (EPFLMultiMAE, EPFLMultiMAEAdapter, config_from_state, depth_statistics)
from explorer.modalities import COCO_PANOPTIC_CLASSES
from explorer.multimodal import load_multimodal_model, reconstruct_multimodal

FIX = Path(__file__).parent / "fixtures" / "multimae"
CKPT = FIX / "multimae_tiny.pth"
ATOL = 1e-5
CASES = ("rgb_only", "mixed", "no_rgb")
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "reference.npz"))


@pytest.fixture(scope="module")
def mm():
    return load_multimodal_model(str(CKPT), device="cpu")


def _case(ref, case):
    given = [str(g) for g in ref[f"{case}/given"]]
    arrays = {k: ref[k][None].astype(np.float32) for k in given}
    visible = {k: (ref[f"{case}/mask/{k}"] == 0)[None] for k in given}  # theirs: 0 = visible
    return arrays, visible


def _theirs(ref, case, name):
    """Their output ``(C, H, W)`` as ours: ``(H, W, 3)`` / ``(H, W)`` / ``(C, h, w)`` logits."""
    r = ref[f"{case}/pred/{name}"]
    return r if name == "semseg" else (r.transpose(1, 2, 0) if r.shape[0] == 3 else r[0])


# ------------------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("case", CASES)
def test_every_output_adapter_matches_the_authors_code(mm, ref, case):
    arrays, visible = _case(ref, case)
    out = mm.predict_details(arrays, visible)
    for name in ("rgb", "depth", "semseg", "norm_rgb"):
        theirs = _theirs(ref, case, name)
        assert out[f"raw/{name}"][0].shape == theirs.shape
        np.testing.assert_allclose(out[f"raw/{name}"][0], theirs, atol=ATOL, rtol=0, err_msg=f"{case}: {name}")
        assert np.abs(theirs).max() > 0.1  # not a trivially small output


@pytest.mark.parametrize("case", CASES)
def test_predictions_in_the_users_units(mm, ref, case):
    """RGB back in [0, 1] (ImageNet stats), depth rescaled with the given map's own statistics (their standardisation
    undone) or left standardised when no depth was given, classes = argmax of their logits."""
    arrays, visible = _case(ref, case)
    out = mm.predict(arrays, visible)
    np.testing.assert_allclose(out["rgb"][0], _theirs(ref, case, "rgb") * IMAGENET_STD + IMAGENET_MEAN, atol=ATOL)
    d = _theirs(ref, case, "depth")
    want = d * ref["depth_std"] + ref["depth_mean"] if "depth" in arrays else d
    np.testing.assert_allclose(out["depth"][0], want, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    logits = _theirs(ref, case, "semseg")
    np.testing.assert_array_equal(out["semseg"][0], logits.argmax(0))
    probs = mm.predict_details(arrays, visible)["semseg/probabilities"][0]
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(-1), logits.argmax(0))


def test_depth_standardisation_is_theirs(ref):
    m, s = depth_statistics(ref["depth"])
    assert m == pytest.approx(float(ref["depth_mean"]), rel=1e-6) and s == pytest.approx(float(ref["depth_std"]), rel=1e-5)
    np.testing.assert_allclose((ref["depth"] - m) / s, ref["depth_input"], atol=ATOL)
    # unknown values are left out of the statistics, not counted as zeros
    holes = ref["depth"].copy()
    holes[:4] = np.nan
    assert depth_statistics(holes)[0] != pytest.approx(m, rel=1e-3)
    assert np.isfinite(depth_statistics(holes)).all()


def test_absent_modality_is_the_same_as_a_fully_hidden_one(mm, ref):
    """Their forward without depth / semseg (case rgb_only) = ours with zeros there and nothing of them visible."""
    arrays, visible = _case(ref, "rgb_only")
    a = mm.predict_details(arrays, visible)
    b = mm.predict_details(arrays | {"depth": np.full((1, 32, 32), 3.0, np.float32)},
                           visible | {"depth": np.zeros((1, 16), bool), "semseg": np.zeros((1, 16), bool)})
    np.testing.assert_allclose(a["raw/semseg"], b["raw/semseg"], atol=1e-6)
    np.testing.assert_allclose(a["raw/depth"], b["raw/depth"], atol=1e-6)


# ------------------------------------------------------------------------------------------ loading
def test_loads_through_the_registry_with_its_modalities(mm):
    assert isinstance(mm, EPFLMultiMAEAdapter)
    assert identify(read_state_dict(CKPT)).tag == "multimae"
    assert [(s.name, s.kind, s.shape, s.patch) for s in mm.modalities] == [
        ("rgb", "image", (32, 32, 3), (8, 8)), ("depth", "depth", (32, 32), (8, 8)), ("semseg", "semantic", (8, 8), (2, 2))]
    assert mm.spec("semseg").classes == COCO_PANOPTIC_CLASSES and mm.cfg.heads == 1 and mm.cfg.dec_heads == 8
    assert mm.info.model_id == str(CKPT.resolve()) and mm.info.model_type == "multimae-epfl"
    assert any("published values" in n for n in mm.notes) and any("standardised per image" in n for n in mm.notes)


def test_full_size_builds_with_the_published_names_shapes_and_counts():
    """Their pretrain_multimae_base with rgb / depth / semseg adapters (the demo) and with the norm_rgb adapter of the
    1600-epoch config: our model built from the shapes alone has exactly their parameter names and shapes.

    Counts: their code gives 95,754,128 parameters (98,569,360 with norm_rgb; fixture full_size_keys.json).  The ViT-B
    part (12 blocks + global token + RGB patch embedding and positions) is 85,796,352 ≈ the 86 M of ViT-Base in
    Dosovitskiy et al. 2021, Table 1 (MultiMAE's encoder is a ViT-B/16, Bachmann et al. 2022, Sec. 3).
    """
    full = json.loads((FIX / "full_size_keys.json").read_text())
    for variant, want_total in (("demo", 95_754_128), ("with_norm_rgb", 98_569_360)):
        keys = full[variant]["keys"]
        state = {k: torch.empty(v, device="meta") for k, v in keys.items()}
        cfg = config_from_state(state)
        assert (cfg.dim, cfg.depth, cfg.heads, cfg.patch, cfg.grid, cfg.num_classes, cfg.dec_dim, cfg.dec_depth) == \
            (768, 12, 12, 16, (14, 14), 133, 256, 2)
        with torch.device("meta"):
            model = EPFLMultiMAE(cfg)
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert ours == keys, variant
        total = sum(p.numel() for p in model.parameters())
        assert total == want_total == full[variant]["num_parameters"]
        vit = sum(p.numel() for n, p in model.named_parameters()
                  if n.startswith(("encoder.", "global_tokens", "input_adapters.rgb.")))
        assert vit == 85_796_352 and abs(vit - 86e6) / 86e6 < 0.005
    assert full["with_norm_rgb"]["output_adapter_parameters"]["semseg"] == \
        sum(p.numel() for p in model.output_adapters["semseg"].parameters())


# ------------------------------------------------------------------------------------------ refusals
def _save(tmp_path, obj, name="bad.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    sd = read_state_dict(CKPT)
    missing = {k: v for k, v in sd.items() if k != "output_adapters.depth.decoder.kv.bias"}
    with pytest.raises(ModelLoadError, match=r"missing keys: 'output_adapters\.depth\.decoder\.kv\.bias'"):
        load_multimodal_model(_save(tmp_path, {"model": missing}), device="cpu")
    extra = sd | {"output_adapters.depth.extra_scale": torch.ones(1)}
    with pytest.raises(ModelLoadError, match=r"unexpected keys: 'output_adapters\.depth\.extra_scale'"):
        load_multimodal_model(_save(tmp_path, {"model": extra}), device="cpu")
    bent = sd | {"encoder.1.mlp.fc2.bias": torch.zeros(33)}
    with pytest.raises(ModelLoadError, match=r"wrong shapes: encoder\.1\.mlp\.fc2\.bias \(33,\) \(expected \(32,\)\)"):
        load_multimodal_model(_save(tmp_path, bent), device="cpu")
    other = {k.replace("output_adapters.depth.", "output_adapters.normal."): v for k, v in sd.items()}
    with pytest.raises(ModelLoadError, match=r"adapters this explorer does not know: output_adapters\.normal"):
        load_multimodal_model(_save(tmp_path, other), device="cpu")
    encoder_only = {k: v for k, v in sd.items() if not k.startswith("output_adapters.")}
    with pytest.raises(ModelLoadError, match="without output adapters"):
        load_multimodal_model(_save(tmp_path, {"model": encoder_only}), device="cpu")


def test_wrong_family_and_unsafe_pickles_are_refused(tmp_path):
    vit = {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 5, 8), "patch_embed.proj.weight": torch.zeros(8, 3, 2, 2)}
    with pytest.raises(ModelLoadError, match="not a checkpoint of a family|not a multimodal|open it with"):
        load_multimodal_model(_save(tmp_path, {"model": vit}, "vit.pth"), device="cpu")
    sd = read_state_dict(CKPT)
    from fractions import Fraction

    train = _save(tmp_path, {"model": sd, "args": argparse.Namespace(num_heads=1), "epoch": 1600}, "train.pth")
    assert load_multimodal_model(train, device="cpu").task  # their training checkpoints carry a Namespace: loads
    unsafe = _save(tmp_path, {"model": sd, "args": argparse.Namespace(num_heads=Fraction(1, 3))}, "odd.pth")
    with pytest.raises(ModelLoadError, match="not a weights-only checkpoint.*fractions.Fraction"):
        load_multimodal_model(unsafe, device="cpu")
    from explorer.models import load_model

    with pytest.raises(ModelLoadError, match="MultiMAE.*load_multimodal_model"):  # the image loader names the right one
        load_model(str(CKPT), device="cpu")


# ------------------------------------------------------------------------------------------ Dirichlet budgets
def test_dirichlet_split_has_the_distribution_of_theirs(ref):
    """Their generate_random_masks (98 of 3 × 196 tokens, alpha 1) against our dirichlet_counts over the same specs:
    the per-modality counts have the same distribution (two-sample KS), and a different alpha is told apart."""
    from scipy.stats import ks_2samp

    from explorer.masking.budgets import dirichlet_counts
    from explorer.modalities import Modality

    theirs = ref["dirichlet/counts"].astype(int)
    assert (theirs.sum(1) == 98).all()
    specs = [Modality(n, "depth", (224, 224), (16, 16), (0.0,), (1.0,)) for n in ("a", "b", "c")]

    def ours(alpha):
        return np.array([list(dirichlet_counts(specs, 98, seed=s, alpha=alpha).values()) for s in range(2000)])

    same, other = ours(1.0), ours(0.2)
    for k in range(3):
        assert ks_2samp(theirs[:, k], same[:, k]).pvalue > 0.01
        assert abs(theirs[:, k].mean() - same[:, k].mean()) < 2.5
        assert ks_2samp(theirs[:, k], other[:, k]).pvalue < 1e-6


# ------------------------------------------------------------------------------------------ reconstruction + metrics
def test_reconstruction_scores_semantic_maps_by_class(mm, ref):
    x = {"rgb": ref["rgb"], "depth": ref["depth"], "semseg": ref["semseg"].astype(np.float32)}
    rec = reconstruct_multimodal(mm, x, {"rgb": 1.0, "depth": 0.5, "semseg": 0.25}, seed=0)
    r = rec["semseg"]
    hidden = ~r.spec.unpatchify_mask(r.visible)
    assert r.metrics["accuracy"] == pytest.approx(np.mean(r.prediction[hidden] == x["semseg"][hidden]))
    assert 0 <= r.metrics["miou"] <= 1 and "rmse" not in r.metrics
    wrong = (r.prediction != x["semseg"]).reshape(4, 2, 4, 2).mean((1, 3))
    np.testing.assert_allclose(np.where(r.visible.reshape(4, 4), np.nan, wrong), r.patch_error, atol=1e-6)


# ------------------------------------------------------------------------------------------ the app
def test_multimodal_app_opens_the_checkpoint_and_reexports_byte_for_byte(ref, tmp_path):
    """MultiMAEApp on the fixture file: the MultiMAE presets, a semantic row with its class legend, depth units said,
    and an export of given arrays (a semantic map included) that reopens from its sidecar and re-exports the same PNG."""
    import html

    from explorer.widgets.multimodal_app import MultiMAEApp

    from _tiny import export_png

    app = MultiMAEApp(model=str(CKPT), sample="room:10000001")
    assert "⚠" not in app.status.value, app.status.value
    assert [b.description for b in app.presets.children] == [
        "RGB → depth + semantics", "RGB + 10% depth", "depth + RGB, 25% each", "drop RGB (depth → RGB)",
        "drop depth (RGB + semantics)"]
    assert app.upload_b.description == "Depth map (any unit) / right image"
    assert "standardised per image" in html.unescape(app.status.value)  # the depth units, said on screen
    assert app.result.counts == {"rgb": 16, "depth": 0, "semseg": 0} and len(app.fig.data) == 12
    app.presets.children[3].click()  # drop RGB: depth → RGB and semantics
    assert app.result.counts == {"rgb": 0, "depth": 16, "semseg": 0}
    assert "pixel accuracy" not in app.fig.layout.annotations[2].text  # no semantic map given: nothing to score
    app.set_arrays({"rgb": ref["rgb"], "depth": ref["depth"], "semseg": ref["semseg"]})
    app.presets.children[4].click()  # drop depth: RGB + semantics
    assert app.result.counts == {"rgb": 8, "depth": 0, "semseg": 8}
    title = app.fig.layout.annotations[2].text
    assert "pixel accuracy" in title and "■</span>" in title
    assert any(n in title for n in COCO_PANOPTIC_CLASSES)
    res = export_png(app, tmp_path / "figs", "multimae")
    again = MultiMAEApp.from_sidecar(res.files["json"])
    assert again.result.counts == app.result.counts
    np.testing.assert_array_equal(again.result["semseg"].prediction, app.result["semseg"].prediction)
    res2 = export_png(again, tmp_path / "figs", "multimae-again")
    assert res2.files["png"].read_bytes() == res.files["png"].read_bytes()
