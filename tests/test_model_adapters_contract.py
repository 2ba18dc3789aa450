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

    return load_model(save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=2), device="cpu")


@pytest.fixture(scope="module")
def mae_npl(tmp_path_factory):
    from _tiny import save_tiny_mae

    return load_model(save_tiny_mae(tmp_path_factory.mktemp("mae-npl"), seed=3, norm_pix_loss=True), device="cpu")


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
