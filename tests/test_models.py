import json
from pathlib import Path

import numpy as np
import pytest
import torch

import explorer
from explorer.masking import SWEEP_RATIOS, MaskSpec, make_mask, mask_from_order, mask_to_noise, masking_order
from explorer.models import DeviceError, ModelLoadError, load_model
from explorer.models.device import pick_device

from _tiny import random_image, save_tiny_mae


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_mae(tmp_path_factory.mktemp("tiny-mae"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_model(tiny_dir)


def _reference_forward(model, image, mask, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """transformers' own forward + an independent unpatchify written here."""
    S = image.shape[0]
    p = model.config.patch_size
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] - m) / s
    L = mask.size
    model.config.mask_ratio = (mask.sum() - 0.5) / L
    with torch.no_grad():
        out = model(pixel_values=x, noise=torch.from_numpy(mask_to_noise(mask))[None])
    model.config.mask_ratio = 0.75
    assert np.array_equal(out.mask[0].numpy().astype(bool), mask.ravel())
    g = S // p
    patches = out.logits[0].reshape(g, g, p, p, 3)  # (row, col, py, px, c)
    img = patches.permute(4, 0, 2, 1, 3).reshape(3, S, S)  # (c, row*py, col*px)
    return (img[None] * s + m)[0].permute(1, 2, 0).numpy()


def test_save_pretrained_folder_loads_through_registry(tiny, tiny_dir):
    assert isinstance(tiny, explorer.models.MAEAdapter)
    assert tiny.image_size == 32 and tiny.patch_size == 8 and tiny.grid == (4, 4)
    info = tiny.info
    assert info.model_type == "vit_mae" and info.device == "cpu" and info.dtype == "float32"
    assert len(info.weights_sha256) == 64
    # Reloading gives the same weights hash; different weights give another.
    assert load_model(tiny_dir).weights_sha256 == info.weights_sha256
    other = load_model(save_tiny_mae(tiny_dir.parent / "other", seed=1))
    assert other.weights_sha256 != info.weights_sha256


@pytest.mark.parametrize("strategy", ["random", "block", "grid"])
def test_batched_sweep_equals_transformers_forward(tiny, strategy):
    img = random_image(32, seed=2)
    order = masking_order(tiny.grid, strategy, 5)
    masks = np.stack([mask_from_order(order, tiny.grid, r) for r in SWEEP_RATIOS])
    batched = tiny.forward_masks(img, masks)
    chunked = tiny.forward_masks(img, masks, batch_size=4)
    for m, b, c in zip(masks, batched, chunked):
        ref = _reference_forward(tiny.model, img, m)
        np.testing.assert_allclose(b, ref, atol=2e-5)
        np.testing.assert_allclose(c, ref, atol=2e-5)
        np.testing.assert_allclose(tiny.forward_hf(img, m), ref, atol=2e-5)
    # Different masks really give different reconstructions (the comparison above is not vacuous).
    assert np.abs(batched[0] - batched[-1]).max() > 1e-3


def test_sweep_equals_per_ratio_reconstruct(tiny):
    img = random_image(32, seed=3)
    sweep = explorer.reconstruct_sweep(tiny, img, seed=4, strategy="random")
    assert len(sweep.results) == 19
    for r, res in zip(SWEEP_RATIOS, sweep.results):
        single = explorer.reconstruct(tiny, img, ratio=r, seed=4, strategy="random")
        assert np.array_equal(single.mask, res.mask)
        np.testing.assert_allclose(single.prediction, res.prediction, atol=2e-5)


def _oracle(adapter):
    """Make the decoder output the true (normalised) patches: an oracle that predicts the input."""
    model = adapter.model
    captured = {}

    def grab(_m, args):
        captured["x"] = args[0]

    def replace(_m, _args, output):
        target = model.patchify(captured["x"].float())
        if model.config.norm_pix_loss:
            mean = target.mean(-1, keepdim=True)
            var = target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        cls = torch.zeros_like(target[:, :1])
        return torch.cat([cls, target], 1).expand(output.shape[0], -1, -1)

    h1 = model.vit.embeddings.patch_embeddings.register_forward_pre_hook(grab)
    h2 = model.decoder.decoder_pred.register_forward_hook(replace)
    return h1, h2


@pytest.mark.parametrize("norm_pix", [False, True])
def test_oracle_reconstruction_equals_input(tmp_path, norm_pix):
    adapter = load_model(save_tiny_mae(tmp_path / "m", norm_pix_loss=norm_pix))
    hooks = _oracle(adapter)
    try:
        img = random_image(32, seed=9)
        for strategy in ("random", "block", "grid"):
            rec = explorer.reconstruct(adapter, img, ratio=0.75, seed=1, strategy=strategy)
            np.testing.assert_allclose(rec.prediction, img, atol=1e-4)
            np.testing.assert_allclose(rec.pasted, img, atol=1e-4)
            assert rec.psnr_masked > 70
    finally:
        for h in hooks:
            h.remove()
    assert bool(rec.notes) == norm_pix  # the norm-pix caveat is reported, and only then


def test_norm_pix_loss_is_labelled(tmp_path):
    adapter = load_model(save_tiny_mae(tmp_path / "np", norm_pix_loss=True))
    rec = explorer.reconstruct(adapter, random_image(32), ratio=0.5)
    assert adapter.info.norm_pix_loss and "TRUE patch mean" in rec.notes[0]


def test_bfloat16_close_to_float32(tiny_dir):
    f32 = load_model(tiny_dir)
    bf16 = load_model(tiny_dir, dtype="bfloat16")
    assert bf16.info.dtype == "bfloat16"
    img = random_image(32, seed=1)
    m = make_mask(f32.grid, MaskSpec("random", 0.5, 0))
    a, b = f32.forward_masks(img, m[None])[0], bf16.forward_masks(img, m[None])[0]
    assert np.abs(a - b).max() < 0.1 and not np.array_equal(a, b)


def test_unknown_model_id_is_explained():
    with pytest.raises(ModelLoadError, match="Unknown model 'definitely-not-a-model'"):
        load_model("definitely-not-a-model")


def test_hub_unreachable_is_explained(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hub") as e:
        load_model("facebook/vit-mae-base")
    assert "local-dir" in str(e.value) and "mini-mae" in str(e.value)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path / "empty")
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="'bert' model"):
        load_model(tmp_path / "bert")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="Cannot read"):
        load_model(tmp_path / "broken")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_no_gpu_is_explained(tiny_dir):
    with pytest.raises(DeviceError, match="no"):
        load_model(tiny_dir, device="cuda")
    assert pick_device("auto").type == "cpu"
    with pytest.raises(DeviceError, match="float16"):
        load_model(tiny_dir, dtype="float16")
    with pytest.raises(DeviceError, match="Unknown dtype"):
        load_model(tiny_dir, dtype="int8")


def test_weights_never_unpickled():
    """Shipped weights are safetensors only; no pickle-based files in data/."""
    data = Path(explorer.models.registry.data_dir())
    bad = [p for p in data.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert not bad
    for folder in explorer.models.shipped_models().values():
        assert (folder / "model.safetensors").is_file()
        json.loads((folder / "config.json").read_text())


def test_hub_id_loads_from_a_hub_cache_offline(tmp_path, tiny_dir, monkeypatch):
    """A hub id goes through from_pretrained(id): served here from a cache laid out like the hub's."""
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--test-org--tiny-mae"
    commit = "0" * 40
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        shutil.copy(f, snap / f.name)
    (snap / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    adapter = load_model("test-org/tiny-mae", cache_dir=tmp_path)
    assert adapter.model_id == "test-org/tiny-mae"
    assert adapter.weights_sha256 == load_model(tiny_dir).weights_sha256
    assert adapter._mean.flatten().tolist() == [0.5] * 3  # the checkpoint's processor config was read


def test_deit_and_dinov2_families_and_non_square_vit_load_through_the_registry(tmp_path):
    """Entries of the registry's table: DeiT (CLS + distillation token), DINOv2 with registers; a ViT's (H, W) input."""
    import transformers

    small = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    transformers.DeiTForImageClassificationWithTeacher(transformers.DeiTConfig(**small, num_labels=2)).save_pretrained(tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    del cfg["architectures"]  # a DeiT config naming no head: the distilled classifier, the hub's usual DeiT
    (tmp_path / "d" / "config.json").write_text(json.dumps(cfg))
    deit = load_model(tmp_path / "d", device="cpu")
    assert type(deit.model).__name__ == "DeiTForImageClassificationWithTeacher" and deit.classifier
    assert deit.info.family == "deit" and deit.layout.names == ("cls", "dist") and deit.layout.prefix == 2
    transformers.Dinov2WithRegistersForImageClassification(
        transformers.Dinov2WithRegistersConfig(**small, num_register_tokens=3, num_labels=2)).save_pretrained(tmp_path / "r")
    dino = load_model(tmp_path / "r", device="cpu")
    assert dino.layout.names == ("cls", "reg0", "reg1", "reg2") and dino.num_registers == 3 and dino.classifier
    transformers.ViTForImageClassification(transformers.ViTConfig(**{**small, "image_size": [32, 48]})).save_pretrained(tmp_path / "w")
    wide = load_model(tmp_path / "w", device="cpu")
    assert wide.grid == (4, 6) and wide.num_patches == 24 and wide.image_size == (32, 48) and wide.info.image_size == (32, 48)
    x = wide.normalise(random_image(48)[:32])
    assert x.shape == (1, 3, 32, 48) and wide.logits(x).shape == (1, 2)
