"""What each image adapter answers, read against transformers' own modules on tiny random-weight checkpoints.

Every value is recomputed here from the transformers model the adapter wraps (its forward, its config, its
sub-modules), or from numpy / OpenCV, never from the adapter itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from explorer.models import load_model
from explorer.models.layout import AttentionError

from _tiny import random_image, save_tiny_vit

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet's: no preprocessor file is saved with these
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _pixels(img: np.ndarray, mean, std) -> torch.Tensor:
    return (torch.from_numpy(img).permute(2, 0, 1)[None] - mean) / std


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    save_tiny_vit(folder, seed=3, num_labels=4, id2label={0: "zero", 1: "one", 2: "two", 3: "three"},
                  label2id={"zero": 0, "one": 1, "two": 2, "three": 3})
    return load_model(folder)


def test_vit_logits_labels_blocks_and_heads_are_the_models(vit):
    m = vit.model
    assert vit.labels == {0: "zero", 1: "one", 2: "two", 3: "three"}
    assert vit.classifier and vit.family == "vit"
    blocks = m.vit.layers if hasattr(m.vit, "layers") else m.vit.encoder.layer
    assert vit.blocks is blocks and vit.num_layers == 3 and vit.num_heads == 4
    assert vit.head_modules == [m.classifier]
    img = random_image(32, seed=1)
    x = vit.normalise(img)
    assert torch.allclose(x, _pixels(img, MEAN, STD), atol=1e-6)
    with torch.no_grad():
        ref = m(pixel_values=x).logits
        got = vit.logits(x)
    assert torch.equal(got, ref)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1))


# ---------------------------------------------------------------------------------------------- MAE


@pytest.fixture(scope="module")
def mae(tmp_path_factory):
    from _tiny import save_tiny_mae

    # initializer_range 0.2: with transformers' default (0.02) a 2-layer encoder's CLS output hardly depends on the
    # image (cosines of 0.9999 whatever is removed), too flat to tell one fill or mask from another
    return load_model(save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=2, initializer_range=0.2), device="cpu")


@pytest.fixture(scope="module")
def mae_npl(tmp_path_factory):
    from _tiny import save_tiny_mae

    return load_model(save_tiny_mae(tmp_path_factory.mktemp("mae-npl"), seed=3, norm_pix_loss=True, initializer_range=0.2),
                      device="cpu")


def _hf_cls(adapter, x: torch.Tensor, hidden: np.ndarray) -> torch.Tensor:
    """transformers' ViTMAE encoder with exactly ``hidden`` (flat bool) masked: the final CLS output ``(D,)``."""
    from explorer.masking import mask_to_noise

    cfg = adapter.model.config
    old = cfg.mask_ratio
    n = int(hidden.sum())
    cfg.mask_ratio = (n - 0.5) / hidden.size if n else 0.0
    try:
        with torch.no_grad():
            out = adapter.model.vit(pixel_values=x, noise=torch.from_numpy(mask_to_noise(hidden.reshape(adapter.grid)))[None])
    finally:
        cfg.mask_ratio = old
    assert np.array_equal(out.mask[0].numpy().astype(bool), hidden)
    return out.last_hidden_state[0, 0]


KEEPS = np.array([[True] * 16, [False] * 16, [True, False] * 8, [False] * 15 + [True], [True] * 4 + [False] * 12,
                  [False, True, True, False] * 4, [True] * 12 + [False] * 4, [False] * 8 + [True] * 8, [True] + [False] * 15])


def test_mae_encoder_equals_transformers_under_every_mask(mae):
    img = random_image(32, seed=4)
    x = mae.normalise(img)
    h, keep, valid = mae.encode(x, ~KEEPS)  # one batch of masks of different sizes, padded
    assert h.shape == (len(KEEPS), 1 + 16, 32) and keep.shape == valid.shape == (len(KEEPS), 16)
    for b, k in enumerate(KEEPS):
        n = int(k.sum())
        assert valid[b].tolist() == [True] * n + [False] * (16 - n)
        assert keep[b, :n].tolist() == np.flatnonzero(k).tolist()
        if n:
            torch.testing.assert_close(h[b, 0], _hf_cls(mae, x, ~k), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mae.embedding(x)[0], _hf_cls(mae, x, np.zeros(16, bool)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fill", ["hide", "mae", "mean", "blur"])
def test_mae_faithfulness_scores_are_the_cosine_to_the_full_image(mae, fill):
    import cv2

    img = random_image(32, seed=5)
    x = mae.normalise(img)
    f, what = mae.faithfulness_scorer(x, fill=fill, chunk=2)
    got = f(KEEPS)
    assert what == "cosine similarity of the encoder's CLS output to the full image's"
    assert got.shape == (len(KEEPS),)
    ref = _hf_cls(mae, x, np.zeros(16, bool))
    px = np.kron(KEEPS.reshape(-1, 4, 4), np.ones((8, 8)))[..., None]  # (K, 32, 32, 1) kept pixels
    for k, keep in enumerate(KEEPS):
        if fill == "hide":
            want = _cos(_hf_cls(mae, x, ~keep), ref) if keep.any() else 0.0
        else:
            if fill == "mae":
                pred = mae.forward_hf(img, ~keep.reshape(4, 4))
                filled = np.clip(img * px[k] + pred * (1 - px[k]), 0, 1)
                xs = mae.normalise(filled)
            else:
                xn = x[0].permute(1, 2, 0).numpy()
                if fill == "mean":
                    values = xn.reshape(-1, 3).mean(0)
                else:
                    values = cv2.GaussianBlur(np.ascontiguousarray(xn), (0, 0), sigmaX=8, sigmaY=8, borderType=cv2.BORDER_REFLECT)
                xs = torch.from_numpy((xn * px[k] + values * (1 - px[k])).astype(np.float32)).permute(2, 0, 1)[None]
            want = _cos(_hf_cls(mae, xs, np.zeros(16, bool)), ref)
        assert got[k] == pytest.approx(want, abs=2e-5), (fill, k)
    assert got[0] == pytest.approx(1.0, abs=1e-5)
    assert np.ptp(got[1:]) > 0.01  # the scores tell the masks apart
    as_ints = f(KEEPS.astype(int).tolist())  # 0/1 lists are read as booleans
    np.testing.assert_allclose(as_ints, got, atol=1e-6)
    if fill == "hide":
        np.testing.assert_allclose(mae.faithfulness_scorer(x)[0](KEEPS), got, atol=1e-6)  # "hide" is the default


def test_mae_faithfulness_names_its_norm_pix_loss_infill_and_refuses_unknown_fills(mae, mae_npl):
    x = mae_npl.normalise(random_image(32, seed=6))
    assert mae_npl.faithfulness_scorer(x, fill="mae")[1] == (
        "cosine similarity of the encoder's CLS output to the full image's (norm_pix_loss checkpoint: the infill is "
        "un-normalised with each removed patch's true mean and variance, so it keeps their mean colour and contrast)")
    assert mae_npl.faithfulness_scorer(x, fill="hide")[1] == "cosine similarity of the encoder's CLS output to the full image's"
    with pytest.raises(ValueError) as e:
        mae.faithfulness_scorer(x, fill="zeros")
    assert str(e.value) == "Unknown fill 'zeros'; choose from hide, mae, mean, blur."
    assert mae.fills == ("hide", "mae", "mean", "blur") and mae.default_fill == "hide"


def _reference_pixels(adapter, img: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """transformers' own ViTMAE forward for one mask, un-normalised here (true patch statistics under norm_pix_loss)."""
    from explorer.masking import mask_to_noise

    x = adapter.normalise(img)
    cfg = adapter.model.config
    old = cfg.mask_ratio
    cfg.mask_ratio = (hidden.sum() - 0.5) / hidden.size if hidden.any() else 0.0
    try:
        with torch.no_grad():
            out = adapter.model(pixel_values=x, noise=torch.from_numpy(mask_to_noise(hidden))[None])
    finally:
        cfg.mask_ratio = old
    logits = out.logits[0]  # (16, 8*8*3), patch rows (py, px, c)
    if cfg.norm_pix_loss:
        t = adapter.model.patchify(x)[0]
        logits = logits * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
    img_n = logits.reshape(4, 4, 8, 8, 3).permute(4, 0, 2, 1, 3).reshape(3, 32, 32)
    return (img_n[None] * adapter._std + adapter._mean)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("which", ["plain", "norm_pix_loss"])
@pytest.mark.parametrize("batch_size", [None, 1, 3, 100])
def test_mae_forward_masks_in_input_order_equals_transformers(mae, mae_npl, which, batch_size):
    ad = mae if which == "plain" else mae_npl
    img = random_image(32, seed=7)
    masks = ~KEEPS[1:].reshape(-1, 4, 4)  # every mask hides something; different ratios, unsorted
    got = ad.forward_masks(img, masks, batch_size=batch_size)
    assert got.shape == (len(masks), 32, 32, 3) and got.dtype == np.float32
    for b, m in enumerate(masks):
        np.testing.assert_allclose(got[b], _reference_pixels(ad, img, m), atol=2e-4, err_msg=f"mask {b}")


def test_mae_forward_batch_reconstructs_each_image_under_its_own_mask(mae):
    imgs = np.stack([random_image(32, seed=s) for s in range(5)])
    masks = ~KEEPS[[2, 4, 6, 7, 8]].reshape(-1, 4, 4)
    got = mae.forward_batch(imgs, masks, batch_size=2)
    for b in range(5):
        np.testing.assert_allclose(got[b], _reference_pixels(mae, imgs[b], masks[b]), atol=2e-4)
    np.testing.assert_allclose(mae.forward_batch(imgs, masks), got, atol=1e-6)  # the CPU default chunk
    with pytest.raises(ValueError) as e:
        mae.forward_batch(imgs[:3], masks)
    assert str(e.value) == "Expected (N, S, S, 3) images and N masks, got (3, 32, 32, 3) and 5 masks."
    with pytest.raises(ValueError) as e:
        mae.forward_batch(imgs[0], masks[:1])
    assert str(e.value) == "Expected (N, S, S, 3) images and N masks, got (32, 32, 3) and 1 masks."
    with pytest.raises(ValueError) as e:
        mae.forward_masks(imgs[0], np.zeros((2, 3, 3), bool))
    assert str(e.value) == "Masks have 9 patches, the model expects 16."


def test_mae_chunks_are_sorted_by_visible_count(mae, monkeypatch):
    seen = []
    real = mae._forward_chunk
    monkeypatch.setattr(mae, "_forward_chunk", lambda x, m: (seen.append((~m).sum(1).tolist()), real(x, m))[1])
    masks = ~KEEPS[[6, 2, 8, 4, 7]].reshape(-1, 4, 4)  # visible: 12, 8, 1, 4, 8
    mae.forward_masks(random_image(32, seed=1), masks, batch_size=2)
    assert seen == [[1, 4], [8, 8], [12]]
    seen.clear()
    mae.forward_masks(random_image(32, seed=1), masks)
    assert seen == [[1, 4, 8, 8], [12]] and mae.CPU_CHUNK == 4
    seen.clear()
    mae.forward_masks(random_image(32, seed=1), masks.astype(int), batch_size=1)  # 0/1 masks are read as booleans
    assert seen == [[1], [4], [8], [8], [12]]


def test_a_flat_patch_under_norm_pix_loss_stays_finite(mae_npl):
    img = random_image(32, seed=9)
    img[8:16, 8:16] = MEAN.flatten().numpy()  # the normalisation's mean colour: every value of the patch is 0, variance 0
    hidden = np.zeros((4, 4), bool)
    hidden[1, 1] = hidden[2, 3] = True
    got = mae_npl.forward_masks(img, hidden[None])[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _reference_pixels(mae_npl, img, hidden), atol=2e-4)


def test_sincos_table_is_maes_fixed_2d_table():
    from explorer.models.mae import sincos_table

    t = sincos_table(3, 8).numpy()
    assert t.shape == (10, 8) and np.all(t[0] == 0)
    # MAE's layout: first half encodes the column (w), second half the row (h); each half is [sin | cos] of pos·ω.
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    for i in range(9):
        r, c = divmod(i, 3)
        want = np.concatenate([np.sin(c * omega), np.cos(c * omega), np.sin(r * omega), np.cos(r * omega)])
        np.testing.assert_allclose(t[1 + i], want, atol=1e-6)


# ---------------------------------------------------------------------------------------------- DeiT, DINOv2, CLIP


SMALL = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)


def _save(model, folder, architectures=None):
    import json

    model.save_pretrained(folder)
    if architectures is not None:
        cfg = json.loads((folder / "config.json").read_text())
        cfg["architectures"] = architectures
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("cls", ["DeiTForImageClassificationWithTeacher", "DeiTForImageClassification", "DeiTModel"])
def test_deit_heads_labels_and_outputs_are_the_models(tmp_path, cls):
    torch.manual_seed(1)
    cfg = transformers.DeiTConfig(**SMALL, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    model = getattr(transformers, cls)(cfg)
    with torch.no_grad():  # transformers leaves CLS, distillation token and positions at zero: the two would be equal
        emb = getattr(model, "deit", model).embeddings
        for p in (emb.cls_token, emb.distillation_token, emb.position_embeddings):
            p.normal_(0, 0.5)
    ad = load_model(_save(model, tmp_path / "d"), device="cpu")
    m = ad.model
    assert type(m).__name__ == cls and ad.family == "deit" and ad.layout.names == ("cls", "dist")
    deit = getattr(m, "deit", m)
    assert ad.blocks is (deit.layers if hasattr(deit, "layers") else deit.encoder.layer)
    x = ad.normalise(random_image(32, seed=2))
    if cls == "DeiTModel":
        assert not ad.classifier and ad.labels == {} and ad.head_modules == []
        with torch.no_grad():
            torch.testing.assert_close(ad.embedding(x), m(pixel_values=x).last_hidden_state[:, 0])
        with pytest.raises(AttentionError):
            ad.logits(x)
        assert ad.pick_target(x) is None
    else:
        heads = ["cls_classifier", "distillation_classifier"] if "Teacher" in cls else ["classifier"]
        assert ad.classifier and ad.labels == {0: "a", 1: "b", 2: "c"}
        assert ad.head_modules == [getattr(m, h) for h in heads]
        with torch.no_grad():
            ref = m(pixel_values=x).logits
            torch.testing.assert_close(ad.logits(x), ref)
            torch.testing.assert_close(ad.embedding(x), deit(pixel_values=x).last_hidden_state[:, 0])
        assert ad.pick_target(x) == int(ref[0].argmax())


@pytest.mark.parametrize("registers", [0, 2])
@pytest.mark.parametrize("head", [False, True])
def test_dinov2_registers_heads_and_outputs_are_the_models(tmp_path, registers, head):
    torch.manual_seed(2)
    if registers:
        cfg = transformers.Dinov2WithRegistersConfig(**SMALL, num_register_tokens=registers, num_labels=2)
        cls = transformers.Dinov2WithRegistersForImageClassification if head else transformers.Dinov2WithRegistersModel
    else:
        cfg = transformers.Dinov2Config(**SMALL, num_labels=2)
        cls = transformers.Dinov2ForImageClassification if head else transformers.Dinov2Model
    m0 = cls(cfg)
    ad = load_model(_save(m0, tmp_path / "r"), device="cpu")
    m = ad.model
    enc = getattr(m, "dinov2_with_registers", None) or getattr(m, "dinov2", None) or m
    assert ad.family == ("dinov2-registers" if registers else "dinov2") and ad.num_registers == registers
    assert ad.layout.names == ("cls",) + tuple(f"reg{i}" for i in range(registers)) and ad.layout.prefix == 1 + registers
    assert ad.blocks is enc.encoder.layer and ad.classifier is head
    x = ad.normalise(random_image(32, seed=3))
    with torch.no_grad():
        torch.testing.assert_close(ad.embedding(x), enc(pixel_values=x).pooler_output)
        if head:
            assert ad.head_modules == [m.classifier] and ad.labels == {0: "LABEL_0", 1: "LABEL_1"}
            torch.testing.assert_close(ad.logits(x), m(pixel_values=x).logits)
        else:
            assert ad.head_modules == [enc.layernorm] and ad.labels == {}
            with pytest.raises(AttentionError):
                ad.logits(x)


def test_clip_image_tower_features_and_modules(tmp_path):
    from _tiny import save_tiny_clip

    ad = load_model(save_tiny_clip(tmp_path / "c", seed=4), device="cpu")
    m = ad.model
    assert ad.family == "clip" and ad.attention_module is m.vision_model and ad.blocks is m.vision_model.encoder.layers
    assert ad.head_modules == [m.vision_model.post_layernorm, m.visual_projection]
    assert ad.embedding_name == "image embedding" and not ad.classifier
    x = ad.normalise(random_image(32, seed=4))
    with torch.no_grad():
        pooled = m.vision_model(pixel_values=x).pooler_output
        torch.testing.assert_close(ad.embedding(x), m.visual_projection(pooled))
    f, what = ad.faithfulness_scorer(x, fill="mean")
    assert what == "cosine similarity of the image embedding to the full image's"


# ---------------------------------------------------------------------------------------------- what every image adapter shares


def test_classifier_targets_scores_and_fills(vit):
    import cv2

    img = random_image(32, seed=8)
    x = vit.normalise(img)
    with torch.no_grad():
        logits = vit.model(pixel_values=x).logits[0]
    top = int(logits.argmax())
    assert vit.pick_target(x) == top and vit.pick_target(x, 2) == 2
    torch.testing.assert_close(vit.relevance_target(x), logits[top:top + 1])
    torch.testing.assert_close(vit.relevance_target(x, 1), logits[1:2])
    for bad in (4, -1):
        with pytest.raises(AttentionError) as e:
            vit.relevance_target(x, bad)
        assert str(e.value) == f"Class {bad} is out of range 0..3."
    two = torch.cat([x, x.flip(-1)])
    with pytest.raises(AttentionError) as e:
        vit.relevance_target(two)
    assert str(e.value).startswith("Which class to explain is ambiguous over a batch of 2 inputs")
    score, what = vit.faithfulness_score(x)
    assert what == f"logit of class {top}" and vit.faithfulness_score(x, 1)[1] == "logit of class 1"
    with torch.no_grad():
        torch.testing.assert_close(score(two), vit.model(pixel_values=two).logits[:, top])
    # fills: the input's mean colour per channel, or a Gaussian blur with sigma = one patch
    torch.testing.assert_close(vit.fill_values(x, "mean"), x.mean(dim=(0, 2, 3), keepdim=True))
    xn = x[0].permute(1, 2, 0).numpy()
    blur = cv2.GaussianBlur(np.ascontiguousarray(xn), (0, 0), sigmaX=8, sigmaY=8, borderType=cv2.BORDER_REFLECT)
    torch.testing.assert_close(vit.fill_values(x, "blur")[0].permute(1, 2, 0), torch.from_numpy(blur))
    with pytest.raises(AttentionError) as e:
        vit.fill_values(x, "noise")
    assert str(e.value) == "Unknown fill 'noise' for ViTAdapter; choose from mean, blur."
    f, _ = vit.faithfulness_scorer(x, fill="blur", chunk=3)
    keep = KEEPS[:5]
    px = torch.from_numpy(np.kron(keep.reshape(-1, 4, 4), np.ones((8, 8))).astype(np.float32))[:, None]
    with torch.no_grad():
        want = vit.model(pixel_values=x * px + vit.fill_values(x, "blur") * (1 - px)).logits[:, top].numpy()
    np.testing.assert_allclose(f(keep), want, rtol=1e-5, atol=1e-5)


def test_normalise_checks_the_shape_and_puts_channels_first(vit):
    imgs = np.stack([random_image(32, seed=s) for s in (1, 2)])
    x = vit.normalise(imgs)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x[1:], _pixels(imgs[1], MEAN, STD))
    with pytest.raises(ValueError) as e:
        vit.normalise(np.zeros((2, 32, 30, 3)))
    assert str(e.value) == "Expected images of shape (B, 32, 32, 3), got (2, 32, 30, 3)."
    info = vit.info
    assert (info.family, info.model_type, info.image_size, info.patch_size, info.norm_pix_loss) == ("vit", "vit", 32, 8, False)


# ---------------------------------------------------------------------------------------------- VideoMAE


def _videomae(folder, seed=0, pretraining=True, **overrides):
    torch.manual_seed(seed)
    cfg = transformers.VideoMAEConfig(**{**dict(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
        decoder_intermediate_size=64, norm_pix_loss=False), **overrides})
    cls = transformers.VideoMAEForPreTraining if pretraining else transformers.VideoMAEModel
    cls(cfg).save_pretrained(folder)
    return folder


CLIP = np.random.default_rng(4).random((4, 32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("name, stride, want", [("mini-clip", None, 1), ("some-clip", None, 4), ("mini-clip", 2, 2),
                                                ("other", 3, 3)])
def test_videomae_reads_its_frames_tubelets_and_stride(tmp_path, name, stride, want):
    over = {} if stride is None else {"frame_stride": stride}
    ad = load_model(_videomae(tmp_path / name, pretraining=False, **over), device="cpu")
    assert (ad.num_frames, ad.tubelet_size, ad.time_steps, ad.grid, ad.frame_stride) == (4, 2, 2, (4, 4), want)
    assert ad.family == "videomae" and ad.layout.prefix == 0 and tuple(ad.layout.grid) == (2, 4, 4)
    assert ad.blocks is ad.model.encoder.layer


def test_videomae_encoder_input_and_features_are_the_models(tmp_path):
    ad = load_model(_videomae(tmp_path / "v", pretraining=False), device="cpu")
    x = ad.normalise_video(CLIP)
    want = ((torch.from_numpy(CLIP).permute(0, 3, 1, 2) - MEAN) / STD)[None]
    assert x.shape == (1, 4, 3, 32, 32)
    torch.testing.assert_close(x, want)
    torch.testing.assert_close(ad.normalise_input(CLIP), want)
    with torch.no_grad():
        torch.testing.assert_close(ad.embedding(x), ad.model(pixel_values=x).last_hidden_state.mean(1))
    assert ad.head_modules == ([ad.model.layernorm] if ad.model.layernorm is not None else [])
    half = load_model(tmp_path / "v", device="cpu", dtype="bfloat16")
    assert half.normalise_video(CLIP).dtype == torch.bfloat16
    for bad in ((3, 32, 32, 3), (4, 32, 30, 3), (4, 32, 32)):
        with pytest.raises(ValueError) as e:
            ad.normalise_video(np.zeros(bad, np.float32))
        assert str(e.value) == f"Expected frames of shape (4, 32, 32, 3), got {bad}."


def _tubelets_reference(frames01: np.ndarray, ts=2, p=8) -> np.ndarray:
    """(T, H, W, 3) → (N, ts·p·p, 3) in transformers' order: tokens (t, row, col), values (frame, y, x) per channel."""
    T, H, W, C = frames01.shape
    out = []
    for t in range(T // ts):
        for r in range(H // p):
            for c in range(W // p):
                out.append(frames01[t * ts:(t + 1) * ts, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(-1, C))
    return np.stack(out)


@pytest.mark.parametrize("npl", [False, True])
def test_videomae_reconstruction_equals_transformers_logits_put_back(tmp_path, npl):
    ad = load_model(_videomae(tmp_path / "p", seed=3, norm_pix_loss=npl), device="cpu")
    assert ad.family == "videomae-pretraining" and ad.reconstructs == "video"
    assert ad.attention_module is ad.model.videomae and ad.blocks is ad.model.videomae.encoder.layer
    assert ad.head_modules == [ad.model.encoder_to_decoder]
    mask = np.zeros((2, 4, 4), bool)
    mask[0, 1:3, 0] = mask[1, 3] = True
    pred, loss = ad.reconstruct(CLIP, mask)
    x = ad.normalise_video(CLIP)
    pos = torch.from_numpy(mask.reshape(1, -1))
    with torch.no_grad():
        out = ad.model(pixel_values=x, bool_masked_pos=pos)
    assert loss == pytest.approx(float(out.loss), rel=1e-6)
    target = _tubelets_reference(CLIP)  # the true tubelets, in [0, 1]
    logits = out.logits[0].numpy().reshape(-1, 2 * 64, 3)
    hidden = np.flatnonzero(mask.ravel())
    if npl:
        h = target[hidden]
        logits = logits * (h.std(1, ddof=1, keepdims=True) + 1e-6) + h.mean(1, keepdims=True)
    full = target.copy()
    full[hidden] = logits
    want = np.zeros_like(CLIP)
    k = 0
    for t in range(2):
        for r in range(4):
            for c in range(4):
                want[t * 2:(t + 1) * 2, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = full[k].reshape(2, 8, 8, 3)
                k += 1
    np.testing.assert_allclose(pred, want, atol=1e-5)
    np.testing.assert_allclose(pred[:2, :, 8:], CLIP[:2, :, 8:], atol=1e-6)  # visible tubelets are the input
    with torch.no_grad():
        torch.testing.assert_close(ad.embedding(x), ad.model.videomae(pixel_values=x).last_hidden_state.mean(1))


def test_videomae_reconstruction_refuses_bad_masks(tmp_path):
    ad = load_model(_videomae(tmp_path / "q"), device="cpu")
    with pytest.raises(ValueError) as e:
        ad.reconstruct(CLIP, np.ones((4, 4, 4), bool))
    assert str(e.value) == "Expected a mask of shape (2, 4, 4), got (4, 4, 4)."
    with pytest.raises(ValueError) as e:
        ad.reconstruct(CLIP, np.zeros((2, 4, 4), bool))
    assert str(e.value) == "Hide at least one tubelet: the decoder predicts hidden tubelets only."


# ---------------------------------------------------------------------------------------------- multimodal MAE


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    from _tiny import DEPTH, RGB, save_tiny_multimae

    from explorer.models import load_multimodal_model

    folder = save_tiny_multimae(tmp_path_factory.mktemp("mm") / "tiny-rgbd", [RGB, DEPTH], task="rgbd", seed=3)
    return load_multimodal_model(folder, device="cpu"), folder


def test_multimodal_adapter_loads_its_folder_and_says_what_it_is(rgbd):
    from explorer.models.base import state_dict_sha256
    from explorer.models.multimae import MultiMAEAdapter

    mm, folder = rgbd
    assert mm.model_id == str(folder) and mm.task == "rgbd" and mm.family == "multimodal"
    assert [s.name for s in mm.modalities] == ["rgb", "depth"] and mm.spec("depth").unit == "metres"
    assert (mm.device, mm.dtype) == (torch.device("cpu"), torch.float32) and not mm.model.training
    info = mm.info
    assert (info.model_id, info.family, info.model_type, info.device, info.dtype, info.image_size, info.patch_size,
            info.norm_pix_loss) == (str(folder), "multimodal", "mini-multimae", "cpu", "float32", 32, 8, False)
    assert info.weights_sha256 == state_dict_sha256(mm.model)
    named = MultiMAEAdapter.from_folder(folder, model_id="given")
    assert named.model_id == "given" and named.weights_sha256 == mm.weights_sha256
    assert MultiMAEAdapter.from_folder(folder).model_id == "tiny-rgbd"  # no name given: the folder's
    half = MultiMAEAdapter.from_folder(folder, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and next(half.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(KeyError) as e:
        mm.spec("audio")
    assert e.value.args[0] == "This model has no 'audio' modality; it has: rgb, depth."


def test_multimodal_adapter_predicts_what_the_model_predicts(rgbd):
    mm, _ = rgbd
    rng = np.random.default_rng(5)
    rgb = rng.random((2, 32, 32, 3)).astype(np.float32)
    depth = (rng.random((2, 32, 32)) * 6).astype(np.float32)
    vis = {"rgb": np.array([[True, False] * 8, [True] * 5 + [False] * 11]),  # every sample: 11 patches visible in all
           "depth": np.array([[False] * 13 + [True] * 3, [True, False] * 6 + [False] * 4])}
    got = mm.predict({"rgb": rgb, "depth": depth}, vis)
    specs = {s.name: s for s in mm.modalities}
    tokens = {n: specs[n].patchify(specs[n].normalise(torch.from_numpy(a))) for n, a in (("rgb", rgb), ("depth", depth))}
    with torch.no_grad():
        out = mm.model(tokens, {n: torch.from_numpy(v) for n, v in vis.items()})
    for n in ("rgb", "depth"):
        want = specs[n].denormalise(specs[n].unpatchify(out[n])).numpy()
        assert got[n].shape == want.shape and got[n].dtype == np.float32
        np.testing.assert_allclose(got[n], want, atol=1e-6)
    # a modality with nothing given is zeros in token space (nothing of it visible)
    rgb_vis = np.array([[True, False] * 8, [False, True] * 8])
    only = mm.predict({"rgb": rgb}, {"rgb": rgb_vis, "depth": np.zeros((2, 16), bool)})
    tokens["depth"] = torch.zeros_like(tokens["depth"])
    with torch.no_grad():
        out = mm.model(tokens, {"rgb": torch.from_numpy(rgb_vis), "depth": torch.zeros(2, 16, dtype=torch.bool)})
    np.testing.assert_allclose(only["depth"], specs["depth"].denormalise(specs["depth"].unpatchify(out["depth"])).numpy(),
                               atol=1e-6)


def test_multimodal_folders_that_cannot_load_say_why(tmp_path, rgbd):
    import shutil

    from explorer.models import ModelLoadError, load_multimodal_model

    _, folder = rgbd
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError):
        load_multimodal_model(broken)
    missing = tmp_path / "missing"
    shutil.copytree(folder, missing)
    (missing / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError):
        load_multimodal_model(missing)


# ---------------------------------------------------------------------------------------------- the shared adapter code


def test_weights_hash_covers_names_shapes_and_values():
    from explorer.models.base import state_dict_sha256

    a, b = torch.nn.Linear(3, 2, bias=False), torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        a.weight.zero_()
        b.weight.zero_()
    assert state_dict_sha256(a) != state_dict_sha256(b)  # same bytes, other shape
    c = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        c.weight.zero_()
    assert state_dict_sha256(a) == state_dict_sha256(c)
    assert state_dict_sha256(a.to(torch.bfloat16)) == state_dict_sha256(c)  # format-independent (float32 bytes)
    with torch.no_grad():
        c.weight[0, 0] = 1e-3
    assert state_dict_sha256(a) != state_dict_sha256(c)


def test_own_length_of_short_and_long_vectors():
    from explorer.models.base import own_length

    e = torch.tensor([[0.03, 0.04], [3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    got = own_length(e)
    torch.testing.assert_close(got.detach(), torch.tensor([0.05, 5.0, 0.0]))
    got[0].backward()
    torch.testing.assert_close(e.grad[0], torch.tensor([0.6, 0.8]))  # the fixed unit direction


def test_square_only_families_refuse_other_shapes_in_words(mae):
    import copy

    from explorer.models.mae import MAEAdapter

    model = copy.deepcopy(mae.model)
    model.config.image_size = [32, 48]
    with pytest.raises(ValueError) as e:
        MAEAdapter(model, model_id="x", image_mean=(0.5,) * 3, image_std=(0.5,) * 3, device=torch.device("cpu"),
                   dtype=torch.float32)
    assert str(e.value) == ("transformers' ViTMAEForPreTraining works with square images only; this config has image_size "
                            "32x48.")


def test_refusals_and_defaults_of_the_shared_scorer(vit, tmp_path):
    from _tiny import save_tiny_clip

    clip = load_model(save_tiny_clip(tmp_path / "c"), device="cpu")
    x = clip.normalise(random_image(32, seed=1))
    with pytest.raises(AttentionError) as e:
        clip.logits(x)
    assert str(e.value) == "CLIPModel has no classifier head."
    with pytest.raises(AttentionError) as e:
        vit._class(torch.zeros(2, 4), None)
    assert str(e.value) == ("Which class to explain is ambiguous over a batch of 2 inputs: pick it once on the real input "
                            "(pick_target) and pass it as target.")
    xv = vit.normalise(random_image(32, seed=2))
    keep = KEEPS[:4]
    by_default, _ = vit.faithfulness_scorer(xv)
    by_mean, _ = vit.faithfulness_scorer(xv, fill="mean")
    np.testing.assert_allclose(by_default(keep), by_mean(keep))
    np.testing.assert_allclose(by_default(keep.astype(int).tolist()), by_mean(keep))  # 0/1 lists are booleans
    with torch.no_grad():
        logits = vit.model(pixel_values=xv).logits[0]
    other = (int(logits.argmax()) + 1) % 4
    f, what = vit.faithfulness_scorer(xv, other)
    assert what == f"logit of class {other}"
    px = torch.from_numpy(np.kron(keep.reshape(-1, 4, 4), np.ones((8, 8))).astype(np.float32))[:, None]
    with torch.no_grad():
        want = vit.model(pixel_values=xv * px + vit.fill_values(xv, "mean") * (1 - px)).logits[:, other].numpy()
    np.testing.assert_allclose(f(keep), want, rtol=1e-5, atol=1e-5)


def test_video_fills_and_scores_name_the_clip(tmp_path):
    import cv2

    ad = load_model(_videomae(tmp_path / "v", pretraining=False), device="cpu")
    x = ad.normalise_video(CLIP)  # (1, T, 3, H, W)
    torch.testing.assert_close(ad.fill_values(x, "mean"), x.mean(dim=(0, 1, 3, 4), keepdim=True))
    blur = ad.fill_values(x, "blur")
    assert blur.shape == x.shape
    for t in range(4):
        frame = x[0, t].permute(1, 2, 0).numpy()
        want = cv2.GaussianBlur(np.ascontiguousarray(frame), (0, 0), sigmaX=8, sigmaY=8, borderType=cv2.BORDER_REFLECT)
        torch.testing.assert_close(blur[0, t].permute(1, 2, 0), torch.from_numpy(want))
    _, what = ad.faithfulness_score(x)
    assert what == "cosine similarity of the mean-pooled encoder output to the full clip's"
