"""timm-layout ViT checkpoints (timm's MAE encoders) and the MAE authors' own pretraining files.

The oracle is the reference code itself: tests/fixtures/timm_vit/ holds small random checkpoints in timm's and the
MAE authors' exact key layouts and containers, with the outputs *their* code computed on them (timm 1.0.31
``VisionTransformer``; facebookresearch/mae ``models_mae.MaskedAutoencoderViT`` at efb2a80; see the fixture README).
Our loader converts the files into transformers classes; everything is compared in float32 at ``atol=1e-5``
(hidden states, logits, reconstructions) and ``atol=1e-6`` (attention probabilities, which lie in [0, 1]).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import explorer
from explorer import export
from explorer.attention.maps import capture_all
from explorer.models import ModelLoadError
from explorer.models.checkpoint_file import read_state_dict
from explorer.models.timm_vit import TimmViTAdapter, convert_encoder, convert_mae

FIX = Path(__file__).parent / "fixtures" / "timm_vit"
ENCODER, CLASSIFIER, MAE = FIX / "timm_vit_encoder.safetensors", FIX / "timm_vit_classifier.pth", FIX / "mae_authors_pretrain.pth"

#: Encoder parameter counts on timm's model cards ("Params (M)": 85.8, 303.3, 630.8), to the parameter, as timm's own
#: ``create_model`` gives them (recorded in published_shapes.json by the scratch script).
TIMM_CARDS_M = {"vit_base_patch16_224.mae": 85.8, "vit_large_patch16_224.mae": 303.3, "vit_huge_patch14_224.mae": 630.8}


@pytest.fixture(scope="module")
def encoder():
    return explorer.load_model(ENCODER, device="cpu")


@pytest.fixture(scope="module")
def mae():
    return explorer.load_model(MAE, device="cpu")


# ---------------------------------------------------------------------------------------------- against the reference
def test_timm_encoder_matches_timms_forward_and_attention(encoder):
    ref = np.load(FIX / "timm_vit_encoder_outputs.npz")
    x = torch.tensor(ref["x"])
    assert isinstance(encoder, TimmViTAdapter) and not encoder.classifier
    assert encoder.grid == (4, 4) and encoder.num_heads == 2 and encoder.image_size == 32
    with torch.no_grad():
        hidden = encoder.model.vit(pixel_values=x).last_hidden_state
        pooled = encoder.embedding(x)
    np.testing.assert_allclose(hidden.numpy(), ref["features"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pooled.numpy(), ref["pooled"], atol=1e-5, rtol=0)
    for b in range(2):  # our capture path (SDPA recomputed) against timm's own softmax, per layer and head
        probs, names, path = capture_all(encoder.attention_module, lambda: encoder.model(pixel_values=x), batch_index=b)
        assert probs.shape == (2, 2, 17, 17) and path == "sdpa-recomputed"
        np.testing.assert_allclose(probs[0], ref["attn0"][b], atol=1e-6, rtol=0)
        np.testing.assert_allclose(probs[1], ref["attn1"][b], atol=1e-6, rtol=0)


def test_timm_classifier_matches_timms_logits():
    clf = explorer.load_model(CLASSIFIER, device="cpu")
    ref = np.load(FIX / "timm_vit_classifier_outputs.npz")
    assert clf.classifier and clf.num_layers == 1
    with torch.no_grad():
        logits = clf.logits(torch.tensor(ref["x"]))
    assert logits.shape == (2, 5)
    np.testing.assert_allclose(logits.numpy(), ref["logits"], atol=1e-5, rtol=0)


def test_mae_authors_file_matches_their_forward_mask_and_loss(mae):
    ref = np.load(FIX / "mae_authors_outputs.npz")
    imgs, noise = torch.tensor(ref["imgs"]), torch.tensor(ref["noise"])
    assert mae.family == "mae" and mae.reconstructs == "image" and not mae.norm_pix_loss
    calls = []
    from explorer.attention.capture import AttentionCapture

    with torch.no_grad(), AttentionCapture(mae.model, on_forward=lambda c: calls.append(c.probs.numpy())):
        out = mae.model(pixel_values=imgs, noise=noise)
    np.testing.assert_array_equal(out.mask.numpy(), ref["mask"])  # their argsort-of-noise masking, same patches
    np.testing.assert_allclose(out.logits.numpy(), ref["pred"], atol=1e-5, rtol=0)
    assert abs(out.loss.item() - float(ref["loss"])) < 1e-5
    assert len(calls) == 2  # one encoder block (on the 4 visible patches + CLS), one decoder block (all 17 tokens)
    np.testing.assert_allclose(calls[0], ref["attn0"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(calls[1], ref["dec_attn0"], atol=1e-6, rtol=0)


def test_the_explorers_batched_reconstruction_of_the_authors_file_equals_their_prediction(mae):
    """The app's path (several masks in one padded forward) on the authors' model gives their decoder output."""
    ref = np.load(FIX / "mae_authors_outputs.npz")
    mean, std = np.array(explorer.models.registry.IMAGENET_MEAN), np.array(explorer.models.registry.IMAGENET_STD)
    pixels = ref["imgs"][0].transpose(1, 2, 0) * std + mean  # the normalised input back in [0, 1]-ish pixels
    mask = ref["mask"][0].reshape(4, 4).astype(bool)
    other = ~mask  # a second, different mask in the same batch
    pred = mae.forward_masks(pixels.astype(np.float32), np.stack([mask, other]))
    theirs = mae.model.unpatchify(torch.tensor(ref["pred"][:1]), (32, 32))[0].permute(1, 2, 0).numpy() * std + mean
    np.testing.assert_allclose(pred[0], theirs, atol=1e-4, rtol=0)
    assert np.abs(pred[1] - theirs).max() > 1e-2  # the other mask gives another picture


# ---------------------------------------------------------------------------------------------- published sizes
def _meta_state(shapes: dict) -> dict:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


@pytest.mark.parametrize("name", list(TIMM_CARDS_M))
def test_published_timm_encoders_convert_with_their_names_shapes_and_parameter_counts(name):
    published = json.loads((FIX / "published_shapes.json").read_text())[name]
    cfg, converted = convert_encoder(_meta_state(published["shapes"]), name)
    n = sum(t.numel() for t in converted.values())
    assert n == published["params"] and round(n / 1e6, 1) == TIMM_CARDS_M[name]
    from transformers import ViTForImageClassification

    with torch.device("meta"):
        own = ViTForImageClassification(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v.shape) for k, v in converted.items()}
    assert cfg.num_attention_heads == {"vit_base_patch16_224.mae": 12}.get(name, 16)
    assert cfg.num_labels == 0


@pytest.mark.parametrize("name,params", [("mae_vit_base_patch16", 111_907_840), ("mae_vit_large_patch16", 329_541_888),
                                         ("mae_vit_huge_patch14", 657_074_508)])
def test_the_authors_full_models_convert_with_their_names_and_shapes(name, params):
    """Every tensor of their ``mae_vit_*`` models (encoder + 512-wide, 8-block, 16-head decoder) has a home."""
    published = json.loads((FIX / "published_shapes.json").read_text())[name]
    assert published["params"] == params
    cfg, converted = convert_mae(_meta_state(published["shapes"]), name)
    from transformers import ViTMAEForPreTraining

    with torch.device("meta"):
        own = ViTMAEForPreTraining(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v.shape) for k, v in converted.items()}
    assert sum(t.numel() for t in converted.values()) == params
    assert (cfg.decoder_hidden_size, cfg.decoder_num_hidden_layers, cfg.decoder_num_attention_heads) == (512, 8, 16)


# ---------------------------------------------------------------------------------------------- refusals
def _save(tmp_path, state, name="x.pth"):
    torch.save({"model": state}, tmp_path / name)
    return tmp_path / name


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    state = read_state_dict(MAE)
    less = dict(state)
    del less["decoder_blocks.0.mlp.fc2.bias"]
    with pytest.raises(ModelLoadError, match=r"missing keys: 'decoder\.decoder_layers\.0\.mlp\.fc2\.bias'"):
        explorer.load_model(_save(tmp_path, less, "less.pth"))
    more = {**state, "blocks.0.attn.extra": torch.zeros(3)}
    with pytest.raises(ModelLoadError, match=r"keys the MAE authors' model does not: blocks\.0\.attn\.extra"):
        explorer.load_model(_save(tmp_path, more, "more.pth"))
    bent = {**state, "blocks.0.mlp.fc1.bias": torch.zeros(7)}
    with pytest.raises(ModelLoadError, match=r"wrong shapes: vit\.layers\.0\.mlp\.fc1\.bias \(7,\) \(expected \(128,\)\)"):
        explorer.load_model(_save(tmp_path, bent, "bent.pth"))


def test_timm_variants_and_other_kinds_are_refused_by_name(tmp_path):
    state = read_state_dict(ENCODER)
    with pytest.raises(ModelLoadError, match=r"fc_norm\.weight \(global average pooling"):
        explorer.load_model(_save(tmp_path, {**state, "fc_norm.weight": torch.ones(128), "fc_norm.bias": torch.zeros(128)}))
    with pytest.raises(ModelLoadError, match=r"is a .*timm ViT.* checkpoint \(image\); open it with explorer.load_model"):
        explorer.load_multimodal_model(ENCODER)
    with pytest.raises(ModelLoadError, match=r"not a checkpoint of a family the explorer reads \(its keys: 'a\.weight'"):
        explorer.load_model(_save(tmp_path, {"a.weight": torch.zeros(2)}, "other.pth"))


def test_pickles_that_are_not_weights_only_and_damaged_files_are_refused(tmp_path):
    import argparse

    from fractions import Fraction

    # what the authors' training scripts write: the weights beside their arguments (a Namespace of plain values) loads
    torch.save({"model": read_state_dict(CLASSIFIER), "args": argparse.Namespace(lr=1), "epoch": 3}, tmp_path / "train.pth")
    assert explorer.load_model(tmp_path / "train.pth", device="cpu").classifier
    # any other Python object, even inside that Namespace, is refused and named
    torch.save({"model": read_state_dict(CLASSIFIER), "args": argparse.Namespace(lr=Fraction(1, 3))}, tmp_path / "full.pth")
    with pytest.raises(ModelLoadError, match=r"not a weights-only checkpoint.*fractions\.Fraction.*refused rather than unpickled"):
        explorer.load_model(tmp_path / "full.pth")

    class Boom:  # a pickle that would run code when unpickled
        def __reduce__(self):
            return (print, ("unpickled!",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Boom()}))
    with pytest.raises(ModelLoadError, match="evil.pth"):
        explorer.load_model(tmp_path / "evil.pth")
    (tmp_path / "cut.pth").write_bytes(CLASSIFIER.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"cut\.pth is damaged or not a PyTorch checkpoint"):
        explorer.load_model(tmp_path / "cut.pth")
    (tmp_path / "cut.safetensors").write_bytes(ENCODER.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match=r"cut\.safetensors is damaged"):
        explorer.load_model(tmp_path / "cut.safetensors")


# ---------------------------------------------------------------------------------------------- in the views
def test_the_encoder_opens_in_the_attention_views_and_the_reconstruction_views_say_why_not(encoder):
    maps = explorer.attention_maps(encoder, "chelsea")
    assert maps.probs.shape[:2] == (2, 2)
    rel = explorer.explain(encoder, "chelsea", "rollout")
    assert rel.map.shape == (4, 4) and np.isfinite(rel.map).all() and np.ptp(rel.map) > 0
    with pytest.raises(ModelLoadError, match="no MAE decoder"):
        explorer.reconstruct(encoder, "chelsea")
    from explorer.widgets.mae_app import MAEApp

    app = MAEApp(model=str(ENCODER), image="chelsea")
    assert "no MAE decoder" in app.status.value
    from explorer.widgets.attention_app import AttentionApp

    view = AttentionApp(model=str(ENCODER), image="chelsea")
    assert view.adapter.family == "timm-vit" and "2 layers × 2 heads" in view.status.value


def test_an_export_from_the_authors_file_reproduces_byte_for_byte(mae, tmp_path):
    res = export.export_recipe("reconstruction", tmp_path / "rec", model=mae, inputs=["chelsea"],
                               options=dict(ratio=0.75, seed=1), preset="single-column", formats=["png", "svg"])
    sc = json.loads(res.files["json"].read_text())
    assert sc["provenance"]["model"]["id"] == str(MAE.resolve())
    assert sc["provenance"]["model"]["weights_sha256"] == mae.weights_sha256
    rep = export.reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()


def test_a_timm_hub_folder_loads_by_its_config_and_safetensors(tmp_path):
    """timm's hub layout: config.json naming an ``architecture`` (no transformers model_type) + model.safetensors."""
    folder = tmp_path / "vit_tiny.mae"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(ENCODER.read_bytes())
    cfg = {"architecture": "vit_base_patch16_224", "num_classes": 0,
           "pretrained_cfg": {"tag": "mae", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    (folder / "config.json").write_text(json.dumps(cfg))
    a = explorer.load_model(folder, device="cpu")
    ref = np.load(FIX / "timm_vit_encoder_outputs.npz")
    with torch.no_grad():
        np.testing.assert_allclose(a.embedding(torch.tensor(ref["x"])).numpy(), ref["pooled"], atol=1e-5, rtol=0)
    assert a.model_id == str(folder)
    cfg["pretrained_cfg"]["mean"] = [0.5, 0.5, 0.5]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"normalises its input with mean \(0\.5, 0\.5, 0\.5\)"):
        explorer.load_model(folder, device="cpu")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="timm model folder .* without model.safetensors"):
        explorer.load_model(folder, device="cpu")


def test_notebook_03s_checkpoint_file_cell_runs_on_a_file(monkeypatch):
    """The cell that runs when MAE_WEIGHTS points at a file (the notebook test runs it without one)."""
    import nbformat
    import plotly.graph_objects as go

    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "03_attention_maps.ipynb", as_version=4)
    (src,) = [c.source for c in nb.cells if c.cell_type == "code" and "MAE_WEIGHTS" in c.source]
    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self))
    monkeypatch.setenv("MAE_WEIGHTS", str(MAE))
    printed = []
    from explorer import attention as A
    from explorer.viz import attention as VA

    exec(src, {"explorer": explorer, "A": A, "VA": VA, "print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert printed == ["mae: 1 layers x 2 heads, (4, 4) patches"]
    assert len(shown) == 1 and len(shown[0].data) >= 2


def test_an_attention_export_from_a_timm_file_reproduces_byte_for_byte(encoder, tmp_path):
    res = export.export_recipe("attention_grid", tmp_path / "att", model=encoder, inputs=["chelsea"],
                               options=dict(query="cls", layers=[0, 1]), preset="single-column", formats=["png"])
    sc = json.loads(res.files["json"].read_text())
    assert sc["provenance"]["model"]["id"] == str(ENCODER.resolve())  # reproduce loads the file again, by path
    rep = export.reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()
