"""UniFormer (Sense-X) checkpoints in the authors' layout, against the authors' own code.

The oracle: tests/fixtures/uniformer/ holds small random checkpoints written by Sense-X/UniFormer's model code (commit
52a0415; image, token-labeling and SlowFast video models) in their exact key layout and container, with the logits,
global-attention probabilities and stage outputs *their* code computed (see the fixture README).  Our implementation
(explorer/models/uniformer.py) loads the files through ``explorer.load_uniformer_model`` and must agree in float32 to
``|ours − theirs| ≤ 1e-5 · max(1, max|theirs|)`` per array (attention probabilities: ≤ 1e-5 absolute).

Full-size models: the key names, shapes and parameter counts of the authors' published architectures, recorded from
their code (published_shapes.json.gz), must come out of our builder exactly, and the counts must round to the numbers
the authors publish.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import explorer
from explorer.attention.capture import AttentionCapture
from explorer.models import ModelLoadError
from explorer.models.checkpoint_file import identify, read_state_dict
from explorer.models.uniformer import UniFormer, UniFormerAdapter, UniFormerConfig, claims_image, claims_video, infer_config

FIX = Path(__file__).parent / "fixtures" / "uniformer"
CASES = {  # fixture → (format tag, stage depths, heads per stage, video, container key)
    "image_small_dim8": ("uniformer-image", (1, 2, 1, 1), (1, 2, 2, 3), False, "model"),
    "image_tokenlabel_dim8": ("uniformer-image", (1, 1, 2, 1), (1, 2, 2, 3), False, "model"),
    "video_small_dim8": ("uniformer-video", (1, 1, 2, 1), (1, 2, 2, 3), True, "model_state"),
    "video_std_dim8": ("uniformer-video", (1, 1, 2, 1), (1, 2, 2, 3), True, "model_state"),
}

#: Parameter counts the authors publish, in millions.  Image: Sense-X/UniFormer image_classification/README.md,
#: "ImageNet-1K pretrained (224x224)" table ("#Param.": UniFormer-S 22M, UniFormer-S† 24M, UniFormer-B 50M,
#: UniFormer-B+Layer Scale 50M) and the token-labeling table (UniFormer-L+Layer Scale 100M).  Video: the ICLR 2022 paper's
#: Kinetics-400 results as listed in mmaction2's configs/recognition/uniformer/README.md ("params": UniFormer-S 21.4M,
#: UniFormer-B 49.8M; 400 classes).
PUBLISHED_M = {"uniformer_small_in1k": (22, 0.5), "uniformer_small_plus_in1k": (24, 0.5), "uniformer_base_in1k": (50, 0.5),
               "uniformer_base_ls_in1k": (50, 0.5), "uniformer_large_ls_tl_224": (100, 0.5),
               "uniformer_small_k400_16x4": (21.4, 0.05), "uniformer_base_k400_16x4": (49.8, 0.05)}
#: The head widths those models were built with (their model functions / configs).
PUBLISHED_HEAD_DIM = {"uniformer_small_in1k": 64, "uniformer_small_plus_in1k": 32, "uniformer_base_in1k": 64,
                      "uniformer_base_ls_in1k": 64, "uniformer_large_ls_tl_224": 64,
                      "uniformer_small_k400_16x4": 64, "uniformer_base_k400_16x4": 64}


def close(ours, theirs, what):
    """float32 agreement: |ours − theirs| ≤ 1e-5 · max(1, max|theirs|)."""
    theirs = np.asarray(theirs, np.float32)
    atol = 1e-5 * max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol, err_msg=what)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    name = request.param
    adapter = explorer.load_uniformer_model(FIX / f"{name}.pth", device="cpu")
    return name, adapter, dict(np.load(FIX / f"{name}.npz"))


# ---------------------------------------------------------------------------------------------- against their code
def test_fixture_containers_are_the_authors_and_weights_only():
    for name, (*_, key) in CASES.items():
        obj = torch.load(FIX / f"{name}.pth", weights_only=True)
        assert key in obj and all(isinstance(v, torch.Tensor) for v in obj[key].values())
    assert sum(p.stat().st_size for p in FIX.iterdir()) < 1_000_000


def test_logits_attention_and_stages_match_the_reference(case):
    name, uf, ref = case
    tag, depths, heads, video, _ = CASES[name]
    assert isinstance(uf, UniFormerAdapter) and uf.format_tag == tag and uf.is_video is video
    assert uf.stage_depths == depths and uf.stage_heads == heads and uf.config.head_dim == 8
    x = torch.from_numpy(ref["input"].astype(np.float32))
    out = uf.forward(x, attention=True, features=True)
    close(out.logits, ref["logits"], "logits")
    attn_keys = sorted(k[len("attn."):] for k in ref if k.startswith("attn."))
    assert sorted(out.attentions) == attn_keys == [b for b, kind in uf.blocks() if kind == "global"]
    for k in attn_keys:
        assert out.attentions[k].shape == ref[f"attn.{k}"].shape
        np.testing.assert_allclose(out.attentions[k], ref[f"attn.{k}"], rtol=0, atol=1e-5, err_msg=k)
    for s in range(4):
        close(out.features[s], ref[f"stage{s + 1}"], f"stage {s + 1}")
    # the token grids a view draws are the reference's stage shapes
    assert list(out.grids) == [ref[f"stage{s}"].shape[2:] for s in range(1, 5)] == uf.token_grids(x.shape[2:])
    # head-averaged maps are the mean of the per-head ones
    mean = uf.forward(x, attention=True, heads="mean").attentions
    for k in attn_keys:
        np.testing.assert_allclose(mean[k], ref[f"attn.{k}"].mean(1), rtol=0, atol=1e-5)


def test_attention_capture_sees_the_same_probabilities_through_sdpa(case):
    """The library's generic capture (SDPA recomputed) works on our model and gives the reference probabilities."""
    name, uf, ref = case
    x = torch.from_numpy(ref["input"].astype(np.float32))
    calls = []
    with torch.no_grad(), AttentionCapture(uf.model, on_forward=calls.append):
        logits = uf.model(x)
    close(logits.numpy(), ref["logits"], "logits through SDPA")
    assert [c.name for c in calls] == [f"{b}.attn" for b, kind in uf.blocks() if kind == "global"]
    for c in calls:
        np.testing.assert_allclose(c.probs.numpy(), ref[f"attn.{c.name[:-len('.attn')]}"], rtol=0, atol=1e-5)


def test_local_kernels_are_the_depthwise_weights_of_the_file(case):
    name, uf, _ = case
    state = read_state_dict(FIX / f"{name}.pth")  # independent read of the same file
    for bname, kind in uf.blocks():
        s, i = int(bname[6]), int(bname.split(".")[1])
        if kind == "local":
            k = uf.local_kernels(s, i)
            np.testing.assert_array_equal(k, state[f"{bname}.attn.weight"][:, 0].numpy())
            assert k.shape == ((uf.stage_dims[s - 1], 5, 5, 5) if uf.is_video else (uf.stage_dims[s - 1], 5, 5))
            by_head = uf.local_kernels_by_head(s, i)
            assert by_head.shape[0] == uf.stage_heads[s - 1]
            np.testing.assert_array_equal(by_head.reshape(k.shape), k)
        else:
            with pytest.raises(ValueError, match="global"):
                uf.local_kernels(s, i)
    assert uf.stage_kinds == ("local", "local", "global", "global")


def test_pixels_are_normalised_with_the_checkpoints_statistics(case):
    name, uf, _ = case
    rng = np.random.default_rng(0)
    shape = (8, 32, 32, 3) if uf.is_video else (64, 64, 3)
    pixels = rng.random(shape, dtype=np.float32)
    x = uf.normalise(pixels)
    mean = (0.45,) * 3 if uf.is_video else (0.485, 0.456, 0.406)
    std = (0.225,) * 3 if uf.is_video else (0.229, 0.224, 0.225)
    want = (pixels - np.array(mean, np.float32)) / np.array(std, np.float32)
    want = np.moveaxis(want, -1, 0)[None]
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(uf.run(pixels, attention=False).logits, uf.forward(x).logits, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 32"):
        uf.normalise(np.zeros(shape[:-3] + (40, 40, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        uf.normalise(pixels[..., :2])


def test_a_safetensors_copy_and_a_saved_folder_give_the_same_model(case, tmp_path):
    from safetensors.torch import save_file

    name, uf, ref = case
    x = torch.from_numpy(ref["input"].astype(np.float32))
    copy = tmp_path / f"{name}.safetensors"
    save_file(read_state_dict(FIX / f"{name}.pth"), str(copy))
    again = explorer.load_uniformer_model(copy, device="cpu")
    np.testing.assert_array_equal(again.forward(x).logits, uf.forward(x).logits)
    folder = uf.save(tmp_path / "folder")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "uniformer"
    mine = explorer.load_uniformer_model(folder, device="cpu")
    assert mine.format_tag == "uniformer" and mine.config == uf.config
    np.testing.assert_array_equal(mine.forward(x).logits, uf.forward(x).logits)


# ---------------------------------------------------------------------------------------------- full-size models
@pytest.fixture(scope="module")
def published():
    with gzip.open(FIX / "published_shapes.json.gz", "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_full_size_models_have_the_published_names_shapes_and_sizes(published, name):
    theirs = published[name]
    state = {k: torch.empty(shape, device="meta") for k, shape in theirs["keys"].items()}
    fmt = identify(state, path=f"{name}.pth", kinds=("hierarchical",))
    assert fmt.tag == ("uniformer-video" if "_k400_" in name else "uniformer-image")
    cfg, how = infer_config(state, name=f"{name}.pth")
    assert cfg.head_dim == PUBLISHED_HEAD_DIM[name], how
    with torch.device("meta"):
        model = UniFormer(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == theirs["keys"]  # the same names, the same shapes, nothing more, nothing less
    count = sum(p.numel() for p in model.parameters())
    assert count == theirs["params"]
    value, tol = PUBLISHED_M[name]
    assert abs(count / 1e6 - value) < tol, (name, count)


def test_published_configs_read_as_the_papers_models(published):
    s, _ = infer_config({k: torch.empty(v, device="meta") for k, v in published["uniformer_small_in1k"]["keys"].items()})
    assert (s.depths, s.dims, s.mlp_ratio, s.num_classes, s.video, s.conv_stem) == ((3, 4, 8, 3), (64, 128, 320, 512), 4.0, 1000, False, False)
    b, _ = infer_config({k: torch.empty(v, device="meta") for k, v in published["uniformer_base_k400_16x4"]["keys"].items()},
                        name="uniformer_base_k400_8x8.pth")
    assert (b.depths, b.video, b.video_std, b.num_classes, b.num_frames, b.heads) == ((5, 8, 20, 7), True, False, 400, 8, (1, 2, 5, 8))
    ls, _ = infer_config({k: torch.empty(v, device="meta") for k, v in published["uniformer_base_ls_in1k"]["keys"].items()})
    assert ls.layer_scale and not ls.local_layer_scale
    large, _ = infer_config({k: torch.empty(v, device="meta") for k, v in published["uniformer_large_ls_tl_224"]["keys"].items()})
    assert large.aux_head and large.layer_scale and large.local_layer_scale and large.dims == (128, 192, 448, 640)


# ---------------------------------------------------------------------------------------------- refusals
def _state(name="image_small_dim8"):
    return read_state_dict(FIX / f"{name}.pth")


def _save(tmp_path, state, name="bad_dim8.pth", wrap="model"):
    path = tmp_path / name
    torch.save({wrap: state}, path)
    return path


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    s = _state()
    del s["blocks2.1.conv1.weight"]
    with pytest.raises(ModelLoadError, match=r"missing keys: 'blocks2\.1\.conv1\.weight'"):
        explorer.load_uniformer_model(_save(tmp_path, s), device="cpu")
    s = _state()
    s["blocks3.0.attn.extra"] = torch.zeros(3)
    with pytest.raises(ModelLoadError, match=r"unexpected keys: 'blocks3\.0\.attn\.extra'"):
        explorer.load_uniformer_model(_save(tmp_path, s), device="cpu")
    s = _state()
    s["blocks4.0.mlp.fc2.bias"] = torch.zeros(7)
    with pytest.raises(ModelLoadError, match=r"wrong shapes: blocks4\.0\.mlp\.fc2\.bias \(7,\) \(expected \(24,\)\)"):
        explorer.load_uniformer_model(_save(tmp_path, s), device="cpu")
    s = _state()
    del s["blocks1.0.mlp.fc1.weight"]
    with pytest.raises(ModelLoadError, match="could not be built"):
        explorer.load_uniformer_model(_save(tmp_path, s), device="cpu")


def test_head_width_that_does_not_divide_the_stages_is_refused(tmp_path):
    path = _save(tmp_path, _state(), name="no_hint.pth")  # without 'dim8' the published 64 is assumed
    with pytest.raises(ModelLoadError, match=r"not multiples of the head width 64"):
        explorer.load_uniformer_model(path, device="cpu")


def test_variants_without_an_implementation_are_refused_by_name(tmp_path):
    s = _state()
    s["cls_token"] = torch.zeros(1, 1, 16)
    with pytest.raises(ModelLoadError, match="lightweight UniFormer"):
        explorer.load_uniformer_model(_save(tmp_path, s), device="cpu")
    v = _state("video_small_dim8")
    v["blocks3.0.t_attn.qkv.weight"] = torch.zeros(48, 16)
    with pytest.raises(ModelLoadError, match=r"SplitSABlock: keys blocks3\.0\.t_attn\.qkv\.weight"):
        explorer.load_uniformer_model(_save(tmp_path, v, wrap="model_state"), device="cpu")


def test_wrong_family_and_wrong_loader(tmp_path):
    vit = {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 5, 8), "patch_embed.proj.weight": torch.zeros(8, 3, 4, 4),
           "blocks.0.attn.qkv.weight": torch.zeros(24, 8), "norm.weight": torch.zeros(8)}
    with pytest.raises(ModelLoadError) as e:
        explorer.load_uniformer_model(_save(tmp_path, vit, name="vit.pth"), device="cpu")
    assert not claims_image(vit) and not claims_video(vit)
    assert "vit.pth" in str(e.value) and "could not be built" not in str(e.value) and "does not fit" not in str(e.value)
    with pytest.raises(ModelLoadError, match=r"UniFormer image \(Sense-X\).*explorer\.load_uniformer_model"):
        explorer.load_model(FIX / "image_small_dim8.pth", device="cpu")
    with pytest.raises(ModelLoadError, match=r"UniFormer video \(Sense-X\).*explorer\.load_uniformer_model"):
        explorer.load_multimodal_model(FIX / "video_small_dim8.pth", device="cpu")


def test_pickles_that_are_not_weights_only_are_refused_not_run(tmp_path):
    path = tmp_path / "full_training_checkpoint_dim8.pth"
    from fractions import Fraction

    torch.save({"model": _state(), "args": argparse.Namespace(lr=1e-3)}, path)  # what their main.py writes: loads
    assert explorer.load_uniformer_model(path, device="cpu").stage_kinds
    torch.save({"model": _state(), "args": argparse.Namespace(lr=Fraction(1, 3))}, path)  # any other object: refused
    with pytest.raises(ModelLoadError, match=r"not a weights-only checkpoint.*fractions\.Fraction"):
        explorer.load_uniformer_model(path, device="cpu")


def test_folder_config_errors_are_named(tmp_path, case):
    _, uf, _ = case
    folder = uf.save(tmp_path / "f")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["depth"] = [1, 1, 1, 1]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not read: depth"):
        explorer.load_uniformer_model(folder, device="cpu")
    with pytest.raises(ValueError, match="multiple of the head width"):
        UniFormerConfig(dims=(64, 128, 320, 500))
