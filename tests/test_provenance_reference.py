"""MAE reconstruction provenance against transformers' own ViTMAE forward (eager attention, ``output_attentions``).

The reference runs ``ViTMAEForPreTraining``'s encoder and decoder itself, with the noise that reproduces our mask,
and computes by hand: rollout ``Π (½·mean_h A + ½·I)`` (rows normalised) through each, the decoder row of the masked
patch carried back through the encoder's rollout to the visible patches, the shares on CLS and on mask tokens, and
``|∂t/∂x|`` per patch where ``t`` is the predicted patch's length along its own direction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import random_image, save_tiny_mae

from explorer.attention import AttentionError
from explorer.attention.provenance import provenance
from explorer.masking import MaskSpec, make_mask
from explorer.masking.image import mask_to_noise

IMG = random_image(48, seed=8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=4)


@pytest.fixture(scope="module")
def mae(folder):
    import explorer

    return explorer.load_model(str(folder), device="cpu")


def _rollout(attentions, fusion="mean", residual=True):
    R = None
    for a in attentions:
        m = a[0].double().mean(0) if fusion == "mean" else a[0].double().amax(0)
        if residual:
            m = 0.5 * m + 0.5 * torch.eye(m.shape[-1], dtype=m.dtype)
        m = m / m.sum(-1, keepdim=True)
        R = m if R is None else m @ R
    return R.numpy()


def reference(folder, mae, image, mask, q, fit="center-crop", fusion="mean", residual=True):
    from transformers import ViTMAEForPreTraining

    from explorer.reconstruction import as_input

    model = ViTMAEForPreTraining.from_pretrained(folder, attn_implementation="eager").eval()
    pixels, _ = as_input(image, fit, mae.layout.image_size)
    x = mae.normalise(pixels).detach().clone().requires_grad_(True)
    n_hidden = int(mask.sum())
    model.config.mask_ratio = (n_hidden - 0.5) / mask.size
    noise = torch.from_numpy(mask_to_noise(mask))[None]
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEAttention

    def recorder(root):
        """Each eager attention module returns ``(output, weights)``: keep the weights, in call order."""
        kept = []
        hooks = [m.register_forward_hook(lambda _m, _a, out: kept.append(out[1].detach()))
                 for m in root.modules() if isinstance(m, ViTMAEAttention)]
        return kept, hooks

    enc_att, h1 = recorder(model.vit)
    dec_att, h2 = recorder(model.decoder)
    try:
        enc = model.vit(pixel_values=x, noise=noise)
        dec = model.decoder(enc.last_hidden_state, enc.ids_restore)
    finally:
        for h in h1 + h2:
            h.remove()
    assert np.array_equal(enc.mask[0].bool().numpy(), mask.ravel())
    assert len(enc_att) == model.config.num_hidden_layers and len(dec_att) == model.config.decoder_num_hidden_layers
    pred = dec.logits[0, q].float()
    t = (pred * pred.detach()).sum() / pred.detach().norm().clamp_min(1e-6)
    t.backward()
    r_enc, r_dec = _rollout(enc_att, fusion, residual), _rollout(dec_att, fusion, residual)[1 + q]
    visible = np.flatnonzero(~mask.ravel())
    w = r_dec[0] * r_enc[0]
    for k, j in enumerate(visible):
        w = w + r_dec[1 + j] * r_enc[1 + k]
    amap = np.full(mask.size, np.nan)
    amap[visible] = w[1:]
    p = mae.patch_size
    gh, gw = mae.grid
    g = x.grad.abs().sum(1)[0].numpy().reshape(gh, p, gw, p).sum((1, 3))
    return amap.reshape(gh, gw), g, float(w[0]), float(r_dec[1:][mask.ravel()].sum())


@pytest.mark.parametrize("strategy, ratio, seed, q", [("random", 0.75, 3, None), ("block", 0.5, 1, None)])
def test_provenance_equals_the_hand_computed_rollouts_and_gradient(folder, mae, strategy, ratio, seed, q):
    mask = make_mask(mae.grid, MaskSpec(strategy, ratio, seed))
    q = int(np.flatnonzero(mask.ravel())[1]) if q is None else q
    pv = provenance(mae, IMG, q, ratio=ratio, seed=seed, strategy=strategy)
    amap, g, via_cls, via_mask = reference(folder, mae, IMG, mask, q)
    np.testing.assert_array_equal(pv.mask, mask)
    np.testing.assert_allclose(pv.attention, amap, rtol=1e-4, atol=1e-6)  # nan on the hidden patches, both
    np.testing.assert_allclose(pv.gradient, g, rtol=1e-3, atol=1e-7)
    assert (pv.gradient[mask] == 0).all() and (pv.gradient[~mask] > 0).all()
    assert pv.via_cls == pytest.approx(via_cls, rel=1e-4) and pv.via_mask_tokens == pytest.approx(via_mask, rel=1e-4)
    # The three shares account for the whole decoder row.
    assert np.nansum(pv.attention) + pv.via_cls + pv.via_mask_tokens == pytest.approx(1.0, abs=1e-5)
    assert pv.query == q and pv.patch_size == mae.patch_size
    assert pv.options == dict(ratio=ratio, seed=seed, strategy=strategy, fusion="mean", residual=True)
    assert pv.prediction.min() >= 0 and pv.prediction.max() <= 1 and pv.prediction.shape == pv.image.shape


def test_a_row_column_query_and_the_defaults(folder, mae):
    mask = make_mask(mae.grid, MaskSpec("random", 0.75, 0))
    q = int(np.flatnonzero(mask.ravel())[0])
    gw = mae.grid[1]
    by_rc = provenance(mae, IMG, (q // gw, q % gw))
    by_flat = provenance(mae, IMG, q, ratio=0.75, seed=0, strategy="random")
    assert by_rc.query == q
    np.testing.assert_array_equal(by_rc.attention, by_flat.attention)
    np.testing.assert_array_equal(by_rc.gradient, by_flat.gradient)
    amap, _g, _c, _m = reference(folder, mae, IMG, mask, q)
    np.testing.assert_allclose(by_rc.attention, amap, rtol=1e-4, atol=1e-6)


def test_refusals_name_the_patch(mae):
    gh, gw = mae.grid
    with pytest.raises(AttentionError) as e:
        provenance(mae, IMG, gh * gw)
    assert str(e.value) == f"Patch {gh * gw} is outside the {gh}x{gw} patch grid."
    with pytest.raises(AttentionError) as e:
        provenance(mae, IMG, (gh, 0))
    assert str(e.value) == f"Patch ({gh}, 0) is outside the {gh}x{gw} patch grid."
    mask = make_mask(mae.grid, MaskSpec("random", 0.75, 0))
    v = int(np.flatnonzero(~mask.ravel())[0])
    with pytest.raises(AttentionError) as e:
        provenance(mae, IMG, v)
    assert str(e.value) == (f"Patch {v} (row {v // gw}, column {v % gw}) is visible: its reconstruction is the input "
                            "itself. Pick a masked patch.")


def test_head_fusion_residual_manual_mask_and_records(folder, mae):
    import copy

    gh, gw = mae.grid
    hidden = [1, 2, 6, 7, 9, 11, 13, 14]
    mask = np.zeros(gh * gw, bool)
    mask[hidden] = True
    mask = mask.reshape(gh, gw)
    q = 6  # row 1, column 2
    pv = provenance(mae, IMG, (1, 2), strategy="manual", manual=hidden, fusion="max", residual=False)
    amap, g, via_cls, via_mask = reference(folder, mae, IMG, mask, q, fusion="max", residual=False)
    np.testing.assert_array_equal(pv.mask, mask)
    assert pv.query == q and pv.attention.dtype == np.float32 and pv.gradient.dtype == np.float32
    np.testing.assert_allclose(pv.attention, amap, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pv.gradient, g, rtol=1e-3, atol=1e-7)
    assert pv.via_cls == pytest.approx(via_cls, rel=1e-4) and pv.via_mask_tokens == pytest.approx(via_mask, rel=1e-4)
    assert pv.options == dict(ratio=0.75, seed=0, strategy="manual", fusion="max", residual=False)
    assert pv.model == mae.info and pv.input.name == "<array>"
    # The prediction is the decoder's output in pixels, clipped to [0, 1].
    loud = copy.copy(mae)
    loud._to_pixels = lambda logits, x: (mae._to_pixels(logits, x) - 0.45) * 20
    raw = (mae._to_pixels(*_logits(mae, IMG, mask.reshape(1, -1))) - 0.45) * 20
    got = provenance(loud, IMG, (1, 2), strategy="manual", manual=hidden).prediction
    assert raw.min() < 0 and raw.max() > 1
    np.testing.assert_allclose(got, np.clip(raw[0], 0, 1), atol=1e-6)


def _logits(mae, image, flat):
    from explorer.reconstruction import as_input

    pixels, _ = as_input(image, "center-crop", mae.layout.image_size)
    x = mae.normalise(pixels)
    with torch.no_grad():
        h, keep, valid = mae.encode(x, flat)
        return mae.decode(h, keep, valid), x


def test_a_norm_pix_loss_prediction_is_shown_with_each_patchs_true_statistics(tmp_path):
    """The prediction of a ``norm_pix_loss`` MAE is un-normalised with the input's own patch statistics: the same
    pixels as transformers' own forward under the same mask, un-normalised the same way."""
    import explorer
    from explorer.reconstruction import as_input

    npl = explorer.load_model(str(save_tiny_mae(tmp_path / "npl", seed=5, norm_pix_loss=True)), device="cpu")
    q = int(np.flatnonzero(make_mask(npl.grid, MaskSpec("random", 0.5, 1)))[0])
    pv = provenance(npl, IMG, q, ratio=0.5, seed=1)
    pixels = as_input(IMG, "center-crop", npl.layout.image_size)[0]
    want = np.clip(npl.forward_hf(pixels, pv.mask), 0, 1)
    np.testing.assert_allclose(pv.prediction, want, atol=1e-5)
