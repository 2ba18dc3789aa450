"""Our two mini architectures against forwards written out here from their weights.

The references compute every layer's math by hand — pre-norm, explicit multi-head attention with the padding
mask, GELU MLPs, the learned "none" slot, the per-sample gather of visible patches and the decoders' scatter — on
batches of two samples with different text lengths / visibility splits, so a layer built differently (post-norm,
ReLU, sequence-first, another width) or a token put in the wrong place gives other numbers.  The shipped
checkpoints must load strictly into the architecture as built; fresh models start with small positions and a zero
mask token; training mode equals eval mode (no dropout).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _tiny import AUDIO, DEPTH, RGB
from safetensors.torch import load_file

from explorer.models.mini.fusion import VOCAB, FusionConfig, MiniFusion, tokenize
from explorer.models.mini.multimae import MiniMultiMAE, MultiMAEConfig

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


def mha(m: torch.nn.MultiheadAttention, q_in, kv_in, pad=None):
    """``nn.MultiheadAttention`` from its weights: ``(B, Tq, D)``, ``(B, Tk, D)``, ``pad (B, Tk)`` True = ignored."""
    B, D, H = q_in.shape[0], m.embed_dim, m.num_heads
    d = D // H
    Wq, Wk, Wv = m.in_proj_weight.chunk(3)
    bq, bk, bv = m.in_proj_bias.chunk(3)
    q = (q_in @ Wq.T + bq).view(B, -1, H, d).transpose(1, 2)
    k = (kv_in @ Wk.T + bk).view(B, -1, H, d).transpose(1, 2)
    v = (kv_in @ Wv.T + bv).view(B, -1, H, d).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if pad is not None:
        s = s.masked_fill(pad[:, None, None, :], float("-inf"))
    o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, -1, D)
    return o @ m.out_proj.weight.T + m.out_proj.bias


def ln(norm: torch.nn.LayerNorm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def encoder_layer(blk: torch.nn.TransformerEncoderLayer, x, pad=None, act=F.gelu):
    """Pre-norm self-attention + MLP (``act``: GELU in MiniMultiMAE, torch's default ReLU in MiniFusion), from the
    layer's weights."""
    h = ln(blk.norm1, x)
    x = x + mha(blk.self_attn, h, h, pad)
    h = ln(blk.norm2, x)
    return x + act(h @ blk.linear1.weight.T + blk.linear1.bias) @ blk.linear2.weight.T + blk.linear2.bias


def cross_block(blk, q, ctx, pad=None):
    kv = ln(blk.norm_kv, ctx)
    q = q + mha(blk.attn, ln(blk.norm_q, q), kv, pad)
    lin1, lin2 = blk.mlp[0], blk.mlp[2]
    return q + F.gelu(ln(blk.norm_mlp, q) @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias


# ---------------------------------------------------------------------------------------------- MiniFusion


def fusion_reference(model: MiniFusion, pixels, ids, pad):
    c = model.config
    x = model.patch(pixels).flatten(2).transpose(1, 2) + model.image_pos
    for blk in model.image_encoder:
        x = encoder_layer(blk, x, act=F.relu)
    t = model.token.weight[ids] + model.text_pos[:, : ids.shape[1]]
    for blk in model.text_encoder:
        t = encoder_layer(blk, t, pad, act=F.relu)
    B = ids.shape[0]
    t = torch.cat([model.null.expand(B, 1, c.dim), t], 1)
    full_pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool), pad], 1)
    for blk in model.fusion:
        x = cross_block(blk, x, t, full_pad)
    fused = x
    for blk in model.image_after:
        x = encoder_layer(blk, x, act=F.relu)
    h = ln(model.norm, x)
    match = torch.cat([h.mean(1), h.amax(1)], -1) @ model.match.weight[0] + model.match.bias[0]
    named = h @ model.named.weight[0] + model.named.bias[0]
    return match, named, fused, t


@pytest.fixture(scope="module")
def fusion():
    torch.manual_seed(3)
    cfg = FusionConfig(image_size=32, dim=32, heads=2, image_layers=1, text_layers=1, fusion_layers=2, max_words=6,
                       image_layers_after=1, word_head=True)
    return MiniFusion(cfg).eval()


def test_mini_fusion_equals_the_written_out_forward_with_padded_texts(fusion):
    ids, pad, words = tokenize(["a red circle left of", "the BLUE thing"], VOCAB, 6)
    assert words[1] == ["the", "blue", "thing"] and ids[1, 2] == 1 and pad[1].tolist() == [False] * 3 + [True] * 2
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        match, named, pos = fusion.forward_all(pixels, ids, pad, words=True)
        want_match, want_named, fused, t = fusion_reference(fusion, pixels, ids, pad)
        torch.testing.assert_close(match, want_match, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(named, want_named, atol=1e-5, rtol=1e-5)
        assert match.shape == (2,) and named.shape == (2, 16) and pos.shape == (2, 16, 1 + 5)
        logits = ln(fusion.word_norm, fused) @ fusion.word_pos.weight.T + fusion.word_pos.bias
        assert fusion.word_pos.out_features == 1 + fusion.config.max_words
        torch.testing.assert_close(pos[0], logits[0, :, :6], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pos[1, :, :4], logits[1, :, :4], atol=1e-5, rtol=1e-5)
        assert torch.isneginf(pos[1, :, 4:]).all()  # padded caption positions are never the answer
        # The padded words change nothing: the short text alone gives the same numbers.
        ids1, pad1, _ = tokenize(["the BLUE thing"], VOCAB, 6)
        torch.testing.assert_close(fusion(pixels[1:], ids1, pad1), match[1:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fusion(pixels, ids, pad, embeds=fusion.token(ids)), match)
        m2, named2 = fusion.forward_all(pixels, ids, pad)  # without the word head
        assert named2.shape == (2, 16)
        torch.testing.assert_close(named2, want_named, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m2, match)


def test_tokenize_keeps_one_padded_slot_for_empty_texts_and_cuts_long_ones():
    ids, pad, words = tokenize(["", ""], VOCAB, 4)
    assert ids.shape == (2, 1) and pad.all() and words == [[], []]
    ids, pad, words = tokenize(["a b c d e f"], VOCAB, 4)
    assert ids.shape == (1, 4) and words == [["a", "b", "c", "d"]] and not pad.any()


def test_mini_fusion_has_no_dropout_and_the_documented_start():
    torch.manual_seed(0)
    m = MiniFusion(FusionConfig(image_size=32, dim=32, heads=2))
    ids, pad, _ = tokenize(["a red circle", "two"], VOCAB, 12)
    x = torch.randn(2, 3, 32, 32)
    m.train()
    a = m(x, ids, pad)
    m.eval()
    torch.testing.assert_close(a, m(x, ids, pad))
    for p in (m.image_pos, m.text_pos, m.null):
        assert 0.01 < float(p.detach().std()) < 0.03
    assert float(m.token.weight[0].detach().abs().max()) == 0.0 and m.token.padding_idx == 0
    assert [type(k).__name__ for k in m.patch] == ["Conv2d", "GELU", "Conv2d", "GELU", "Conv2d"]
    conv = m.patch[0]
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    grid = MiniFusion(FusionConfig(image_size=32, dim=32, heads=2, grid_conv=True))
    assert [type(k).__name__ for k in grid.patch][-2:] == ["GELU", "Conv2d"] and len(grid.patch) == 7
    assert len(m.image_encoder) == 2 and len(m.text_encoder) == 1  # the config's defaults


def test_the_shipped_fusion_checkpoint_loads_strictly_into_the_architecture():
    cfg = json.loads((MODELS / "mini-fusion" / "config.json").read_text())
    cfg.pop("model_type", None)
    model = MiniFusion(FusionConfig.from_dict(cfg))
    model.load_state_dict(load_file(str(MODELS / "mini-fusion" / "model.safetensors")), strict=True)


# ---------------------------------------------------------------------------------------------- MiniMultiMAE


def multimae_reference(model: MiniMultiMAE, tokens, visible):
    """Per sample: the visible patches in concatenated order through the encoder, each decoder's full grid."""
    specs = model.specs
    out = {s.name: [] for s in specs}
    B = next(iter(tokens.values())).shape[0]
    for b in range(B):
        xs, vis = [], []
        for k, s in enumerate(specs):
            t = torch.nan_to_num(tokens[s.name][b])
            xs.append(t @ model.embed[s.name].weight.T + model.embed[s.name].bias + model.pos[s.name][0] + model.modality[k])
            vis.append(visible[s.name][b].bool())
        x, v = torch.cat(xs), torch.cat(vis)
        where = torch.nonzero(v)[:, 0]  # concatenated positions of the visible patches, in order
        h = x[where][None]
        for blk in model.blocks:
            h = encoder_layer(blk, h)
        enc = ln(model.norm, h)
        offset = 0
        for s in specs:
            dec = model.decoders[s.name]
            ctx = enc @ dec.proj.weight.T + dec.proj.bias  # (1, K, d)
            total = sum(sp.num_patches for sp in specs)
            full = dec.mask_token[0, 0].repeat(total, 1)
            full[where] = ctx[0]
            q = full[offset : offset + s.num_patches][None] + dec.pos
            q = cross_block(dec.cross, q, ctx)
            for blk in dec.blocks:
                q = encoder_layer(blk, q)
            out[s.name].append((ln(dec.norm, q) @ dec.head.weight.T + dec.head.bias)[0])
            offset += s.num_patches
    return {k: torch.stack(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def three():
    torch.manual_seed(5)
    cfg = MultiMAEConfig(modalities=[RGB.to_dict(), AUDIO.to_dict(), DEPTH.to_dict()], dim=40, depth=2, heads=2,
                         dec_dim=24, dec_depth=1, dec_heads=2, mlp_ratio=3, task="rgbd")
    model = MiniMultiMAE(cfg).eval()
    with torch.no_grad():  # a non-zero mask token, so a misplaced one shows
        for d in model.decoders.values():
            d.mask_token.normal_(0, 1.0)
    return model


def test_mini_multimae_equals_the_written_out_forward_with_per_sample_splits(three):
    g = torch.Generator().manual_seed(1)
    tokens = {s.name: torch.randn(2, s.num_patches, s.patch_dim, generator=g) for s in three.specs}
    # 16 + 6 + 16 patches; both samples show 9 in all, split differently between the modalities
    vis = {n: torch.zeros(2, s.num_patches, dtype=torch.bool) for n, s in zip(tokens, three.specs)}
    vis["rgb"][0, [0, 5, 9, 15]] = True
    vis["audio"][0, [1, 4]] = True
    vis["depth"][0, [2, 3, 14]] = True
    vis["rgb"][1, [7]] = True
    vis["audio"][1, [0, 1, 2, 3, 5]] = True
    vis["depth"][1, [6, 8, 12]] = True
    tokens["depth"][0, 0] = float("nan")  # hidden values are never read
    with torch.no_grad():
        got = three(tokens, vis)
        want = multimae_reference(three, tokens, vis)
    for name, s in zip(tokens, three.specs):
        assert got[name].shape == (2, s.num_patches, s.patch_dim)
        torch.testing.assert_close(got[name], want[name], atol=2e-5, rtol=1e-5)
    assert three._offsets() == [0, 16, 22]


def test_one_visible_patch_is_enough_and_none_or_unequal_counts_are_refused(three):
    tokens = {s.name: torch.zeros(1, s.num_patches, s.patch_dim) for s in three.specs}
    vis = {s.name: torch.zeros(1, s.num_patches, dtype=torch.bool) for s in three.specs}
    vis["audio"][0, 3] = True
    with torch.no_grad():
        got = three(tokens, vis)
        torch.testing.assert_close(got["depth"], multimae_reference(three, tokens, vis)["depth"], atol=2e-5, rtol=1e-5)
    vis["audio"][0, 3] = False
    with pytest.raises(ValueError) as e:
        three(tokens, vis)
    assert str(e.value) == "No patch is visible: give at least one visible patch in some modality."
    two = {k: v.repeat(2, 1, 1) for k, v in tokens.items()}
    vis2 = {k: v.repeat(2, 1) for k, v in vis.items()}
    vis2["rgb"][0, 0] = True
    with pytest.raises(ValueError) as e:
        three(two, vis2)
    assert str(e.value) == "Every sample of a batch must have the same total number of visible patches."
    with pytest.raises(ValueError) as e:
        MiniMultiMAE(MultiMAEConfig())
    assert str(e.value) == "A multimodal MAE needs at least one modality."


def test_mini_multimae_has_no_dropout_and_the_documented_start():
    torch.manual_seed(0)
    cfg = MultiMAEConfig(modalities=[RGB.to_dict(), DEPTH.to_dict()], dim=64, depth=1, heads=2, dec_dim=64, dec_depth=1,
                         dec_heads=2)
    m = MiniMultiMAE(cfg)
    assert len(m.blocks) == 1 and len(m.decoders["rgb"].blocks) == 1
    assert m.blocks[0].linear1.out_features == 64 * cfg.mlp_ratio
    assert isinstance(m.decoders["rgb"].cross.mlp[1], torch.nn.GELU)
    for p in (m.pos["rgb"], m.modality, m.decoders["depth"].pos):
        assert 0.01 < float(p.detach().std()) < 0.03
    assert m.modality.shape == (2, 64) and m.pos["rgb"].shape == (1, 16, 64) and m.decoders["rgb"].pos.shape == (1, 16, 64)
    assert m.decoders["rgb"].mask_token.shape == (1, 1, 64) and float(m.decoders["rgb"].mask_token.detach().abs().max()) == 0.0
    tokens = {s.name: torch.randn(2, s.num_patches, s.patch_dim) for s in m.specs}
    vis = {s.name: torch.arange(s.num_patches).repeat(2, 1) % 3 == 0 for s in m.specs}
    m.train()
    a = m(tokens, vis)
    m.eval()
    b = m(tokens, vis)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    d = cfg.to_dict()
    assert d["model_type"] == "mini-multimae" and d["architectures"] == ["MiniMultiMAE"]
    assert MultiMAEConfig.from_dict(d | {"unknown": 1}) == cfg


@pytest.mark.parametrize("name", ["mini-rgbd-mae", "mini-av-mae"])
def test_the_shipped_multimae_checkpoints_load_strictly_into_the_architecture(name):
    cfg = MultiMAEConfig.from_dict(json.loads((MODELS / name / "config.json").read_text()))
    MiniMultiMAE(cfg).load_state_dict(load_file(str(MODELS / name / "model.safetensors")), strict=True)
