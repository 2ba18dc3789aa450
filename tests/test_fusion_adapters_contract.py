"""What each image+text adapter answers, read against the transformers modules (or our mini model) it wraps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.models import registry as R

from _tiny import random_image, save_tiny_clip_pair


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return R.load_fusion_model(save_tiny_clip_pair(tmp_path_factory.mktemp("clip-pair"), seed=4), device="cpu")


def test_clip_score_is_transformers_logits_per_image(clip):
    text = clip.tokenize("a red circle")
    x = torch.stack([clip.normalise(random_image(32, seed=s))[0] for s in (1, 2)])
    with torch.no_grad():
        ref = clip.model(pixel_values=x, input_ids=text.ids, attention_mask=text.attention_mask).logits_per_image[:, 0]
        got = clip.score(x, text)
    assert got.shape == (2,) and torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got[0], got[1])


# ---------------------------------------------------------------------------------------------- SDPA and the rebound modules


def _manual(q, k, v, mask=None, scale=None):
    s = (q.double() @ k.double().transpose(-2, -1)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    return torch.softmax(s, -1) @ v.double()


def test_sdpa_is_softmax_attention_with_any_mask_and_no_dropout_by_default():
    from explorer.models.fusion_hf import sdpa

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 4, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(sdpa(q, k, v, None), _manual(q, k, v).float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa(q, k, v, None, scale=0.1), _manual(q, k, v, scale=0.1).float(), rtol=1e-5, atol=1e-5)
    pad = torch.tensor([[True, True, True, False], [True, True, False, False]])[:, None, None, :]
    torch.testing.assert_close(sdpa(q, k, v, pad), _manual(q, k, v, pad).float(), rtol=1e-5, atol=1e-5)
    additive = torch.zeros(2, 1, 1, 4, dtype=torch.float64)  # a float64 mask on float32 inputs is cast, not refused
    additive[1, ..., 3] = -1e4
    torch.testing.assert_close(sdpa(q, k, v, additive), _manual(q, k, v, additive).float(), rtol=1e-5, atol=1e-5)
    half = sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16(), additive)
    assert half.dtype == torch.bfloat16
    torch.manual_seed(0)
    a = sdpa(q, k, v, None)
    torch.manual_seed(1)
    torch.testing.assert_close(sdpa(q, k, v, None), a)  # no dropout unless asked
    assert not torch.allclose(sdpa(q, k, v, None, dropout=0.5), a)


@pytest.fixture(scope="module")
def vilt(tmp_path_factory):
    from _tiny import save_tiny_vilt_vqa

    return R.load_fusion_model(save_tiny_vilt_vqa(tmp_path_factory.mktemp("vilt")), device="cpu")


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    from _tiny import save_tiny_blip_itm

    return R.load_fusion_model(save_tiny_blip_itm(tmp_path_factory.mktemp("blip")), device="cpu")


def _rebound(model, cls):
    mods = [m for m in model.modules() if isinstance(m, cls)]
    assert mods and all(getattr(m, "_explorer_original_forward", None) is not None for m in mods)
    return mods


def test_vilts_rebound_self_attention_equals_the_original_with_and_without_weights(vilt):
    from transformers.models.vilt.modeling_vilt import ViltSelfAttention

    mods = _rebound(vilt.model, ViltSelfAttention)
    assert vilt.sdpa_modules == len(mods) == 2
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 7, 32, generator=g)
    mask = torch.zeros(2, 1, 1, 7)
    mask[1, ..., 5:] = -10000.0  # the second sequence's last two tokens are padding (an extended additive mask)
    for m in mods:
        with torch.no_grad():
            ctx, probs = m(h, mask, output_attentions=True)
            ref_ctx, ref_probs = m._explorer_original_forward(h, mask, output_attentions=True)[:2]
            only = m(h, mask)
            unmasked = m(h, None, True)
            ref_unmasked = m._explorer_original_forward(h, None, True)
        torch.testing.assert_close(ctx, ref_ctx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(probs, ref_probs, rtol=1e-5, atol=1e-6)
        assert isinstance(only, tuple) and len(only) == 1
        torch.testing.assert_close(only[0], ref_ctx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(unmasked[0], ref_unmasked[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(unmasked[1], ref_unmasked[1], rtol=1e-5, atol=1e-6)


def _dropout_differs(m, call):
    """In training mode with attention dropout the output changes from call to call; in eval mode it does not."""
    old = m.dropout.p
    try:
        m.dropout.p = 0.5
        m.eval()
        with torch.no_grad():
            e1, e2 = call(), call()
        m.train()
        with torch.no_grad():
            t1, t2 = call(), call()
    finally:
        m.dropout.p = old
        m.eval()
    return torch.equal(e1, e2), not torch.allclose(t1, t2)


def test_rebound_attention_drops_out_only_in_training(vilt, blip):
    from transformers.models.blip.modeling_blip import BlipAttention
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention
    from transformers.models.vilt.modeling_vilt import ViltSelfAttention

    h = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3))
    vm = _rebound(vilt.model, ViltSelfAttention)[0]
    assert _dropout_differs(vm, lambda: vm(h)[0]) == (True, True)
    bv = _rebound(blip.model, BlipAttention)[0]
    assert _dropout_differs(bv, lambda: bv(h)[0]) == (True, True)
    bt = _rebound(blip.model, BlipTextSelfAttention)[0]
    assert _dropout_differs(bt, lambda: bt(h)[0]) == (True, True)


def test_blips_rebound_attention_equals_the_original(blip):
    from transformers.models.blip.modeling_blip import BlipAttention
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    g = torch.Generator().manual_seed(4)
    vis = _rebound(blip.model, BlipAttention)
    text = _rebound(blip.model, BlipTextSelfAttention)
    assert blip.sdpa_modules == len(vis) + len(text)
    img = torch.randn(2, 17, 32, generator=g)
    for m in vis:
        with torch.no_grad():
            got, none = m(img)
            ref = m._explorer_original_forward(img)[0]
        assert none is None
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    h = torch.randn(2, 6, 32, generator=g)
    mask = torch.zeros(2, 1, 1, 6)
    mask[0, ..., 4:] = torch.finfo(torch.float32).min
    img_mask = torch.zeros(2, 1, 1, 17)
    img_mask[1, ..., 10:] = -1e4
    checked = {"self": 0, "cross": 0}
    names = {id(x): n for n, x in blip.model.named_modules()}
    for m in text:
        cross = ".crossattention." in names[id(m)]
        with torch.no_grad():
            if cross:
                got = m(h, attention_mask=mask, encoder_hidden_states=img, encoder_attention_mask=img_mask)[0]
                ref = m._explorer_original_forward(h, attention_mask=mask, encoder_hidden_states=img,
                                                   encoder_attention_mask=img_mask)[0]
                masked_out = m(h, attention_mask=mask, encoder_hidden_states=img)[0]
                assert not torch.allclose(got, masked_out)  # the image mask is the one used, not the text's
            else:
                got = m(h, attention_mask=mask)[0]
                ref = m._explorer_original_forward(h, attention_mask=mask)[0]
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        checked["cross" if cross else "self"] += 1
    assert checked["self"] > 0 and checked["cross"] > 0


def test_blips_text_embeddings_add_positions_out_of_place(blip):
    from transformers.models.blip.modeling_blip_text import BlipTextEmbeddings

    (emb,) = _rebound(blip.model, BlipTextEmbeddings)
    ids = torch.tensor([[2, 5, 7, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(emb(ids), emb._explorer_original_forward(ids))
        torch.testing.assert_close(emb(ids, cache_length=2), emb._explorer_original_forward(ids, cache_length=2))
        pos = torch.tensor([[4, 3, 2, 1, 0]])
        torch.testing.assert_close(emb(ids, position_ids=pos), emb._explorer_original_forward(ids, position_ids=pos))
    leaf = emb.word_embeddings(ids).detach().requires_grad_(True)
    out = emb(inputs_embeds=leaf)
    torch.testing.assert_close(out.detach(), emb._explorer_original_forward(inputs_embeds=leaf.detach()))
    out.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
