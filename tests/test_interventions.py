"""Interventions (head ablation, importance sweeps, activation patching) against second implementations.

The references edit the weights or hook the output projection directly, never through :class:`HeadHooks`:

* zero-ablating head ``h`` = zeroing columns ``h·d … (h+1)·d`` of the output projection's weight;
* ablating a whole layer = zeroing the whole output projection's weight (its bias stays);
* mean-ablating / patching a head = a forward pre-hook on the output projection that rewrites that head's slice of
  its input (the concatenated head outputs);
* the batched sweep = the one-at-a-time loop; patching nothing = 0; patching every cross-attention head of the mini
  fusion model = 1 (text reaches its image stream only through the cross-attention outputs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import random_image, save_tiny_blip_itm, save_tiny_clip

import explorer
from explorer.attention import AttentionError
from explorer.attention import interventions as I
from explorer.fusion import FusionInputError, load_fusion_model
from explorer.fusion import interventions as FI
from explorer.fusion.capture import prepare

IMG = random_image(32, seed=3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return explorer.load_model(str(save_tiny_clip(tmp_path_factory.mktemp("clip"))), device="cpu")


@pytest.fixture(scope="module")
def videomae(tmp_path_factory):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("videomae")
    model = VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                         num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    model.save_pretrained(folder)
    return explorer.load_model(str(folder), device="cpu")


@pytest.fixture(scope="module")
def mini_fusion():
    return load_fusion_model("mini-fusion", device="cpu")


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    return load_fusion_model(str(save_tiny_blip_itm(tmp_path_factory.mktemp("blip"))), device="cpu")


@pytest.fixture(scope="module")
def scene():
    from explorer.data.scenes import make_scene

    sc = make_scene(10_000_003)
    return sc, sc.caption()  # "a green circle above a blue triangle"


def _input(adapter):
    """The model input: an image, or (video) 4 frames of seeded noise."""
    if adapter.layout.is_video:
        return np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    return IMG


def _probe(adapter, **kw):
    mask = None
    if adapter.reconstructs == "image":
        mask = np.zeros(adapter.grid, bool)
        mask.flat[::3] = True  # 6 of 16 hidden
    return I.image_probe(adapter, _input(adapter), mask=mask, **kw)


def out_proj(site: torch.nn.Module, root: torch.nn.Module | None = None, name: str = "") -> torch.nn.Linear:
    """The output projection of a layer's attention: the Linear whose input is the concatenated head outputs."""
    for n, m in site.named_modules():
        if n.endswith(("o_proj", "out_proj", "attention.output.dense")):
            return m
    if isinstance(site, torch.nn.MultiheadAttention):
        return site.out_proj
    parent = root.get_submodule(name.rsplit(".", 1)[0])  # transformers' BERT-style: <attention>.output.dense
    return parent.output.dense


def _plain(probe) -> np.ndarray:
    """The model's own forward, no hooks at all."""
    with torch.no_grad():
        return probe.run(1)


# ---------------------------------------------------------------------------------------------- ablation
@pytest.mark.parametrize("name", ["vit", "mae", "clip", "videomae"])
def test_zero_ablation_equals_zeroed_output_projection_columns(name, request):
    adapter = request.getfixturevalue(name)
    probe = _probe(adapter)
    H = probe.num_heads
    heads = [(0, 1), (1, 3), (1, 0)]
    pairs, s0, s1, o0, o1 = I.run_ablation(probe, heads, "zero")
    assert pairs == ((0, 1), (1, 0), (1, 3))
    saved = {}
    try:
        for layer, h in heads:
            w = out_proj(probe.sites[layer]).weight
            saved.setdefault(layer, w.detach().clone())
            d = w.shape[1] // H
            with torch.no_grad():
                w[:, h * d:(h + 1) * d] = 0
        ref = _plain(probe)[0]
    finally:
        with torch.no_grad():
            for layer, w in saved.items():
                out_proj(probe.sites[layer]).weight.copy_(w)
    np.testing.assert_allclose(o1, ref, atol=2e-5, rtol=1e-5)
    assert float(probe.score(ref[None])[0]) == pytest.approx(s1, abs=1e-4)
    assert np.abs(o1 - o0).max() > 1e-4  # the heads did something


@pytest.mark.parametrize("name", ["vit", "mae"])
def test_ablating_nothing_is_the_intact_model_bit_for_bit(name, request):
    adapter = request.getfixturevalue(name)
    probe = _probe(adapter)
    pairs, s0, s1, o0, o1 = I.run_ablation(probe, [], "mean")
    assert pairs == () and s0 == s1
    assert np.array_equal(o0, _plain(probe)[0]) and np.array_equal(o0, o1)


def test_whole_layer_equals_zeroed_projection_and_listing_every_head(vit):
    probe = _probe(vit)
    _p, _s0, s_layer, _o0, o_layer = I.run_ablation(probe, [(2, None)], "zero")
    _p, _s0, _s, _o, o_all = I.run_ablation(probe, [(2, h) for h in range(4)], "zero")
    np.testing.assert_array_equal(o_layer, o_all)
    w = out_proj(probe.sites[2]).weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.zero_()  # the attention sublayer adds only its output bias to the residual stream
        ref = _plain(probe)[0]
    finally:
        with torch.no_grad():
            w.copy_(saved)
    np.testing.assert_allclose(o_layer, ref, atol=2e-5)


def _slice_hook(site, H, heads, fn):
    """A pre-hook on the output projection rewriting heads' slices of its input ``(B, T, H·d)`` with ``fn(slice, h)``."""
    proj = out_proj(site)

    def hook(_m, args):
        x = args[0].clone()
        d = x.shape[-1] // H
        for h in heads:
            x[..., h * d:(h + 1) * d] = fn(x[..., h * d:(h + 1) * d], h)
        return (x,)

    return proj.register_forward_pre_hook(hook)


@pytest.mark.parametrize("name", ["vit", "clip"])
def test_mean_ablation_equals_a_token_mean_on_the_projection_input(name, request):
    """'mean': each ablated head's output is its mean over the tokens of the same input (not over a batch)."""
    probe = _probe(request.getfixturevalue(name))
    _p, _s0, s1, _o0, o1 = I.run_ablation(probe, [(1, 2)], "mean")
    h = _slice_hook(probe.sites[1], probe.num_heads, [2], lambda s, _h: s.mean(-2, keepdim=True).expand_as(s))
    try:
        ref = _plain(probe)[0]
    finally:
        h.remove()
    np.testing.assert_allclose(o1, ref, atol=2e-5)


def test_ablation_result_and_errors(vit, mae):
    ab = I.ablate(vit, IMG, [(0, 1)])
    assert ab.what.startswith("logit of class") and ab.delta == pytest.approx(ab.ablated - ab.intact)
    assert ab.diff_map.shape == ab.intact_output.shape  # Δ logits per class
    np.testing.assert_allclose(ab.diff_map, ab.ablated_output - ab.intact_output, atol=1e-6)
    am = I.ablate(mae, IMG, [(1, None)], mode="mean", seed=1)
    from explorer.metrics import masked_psnr, patch_mse

    assert am.what == "masked-patch PSNR (dB)" and am.mask.shape == (4, 4) and am.mask.sum() == 12
    assert am.intact == pytest.approx(masked_psnr(am.intact_output, am.image, am.mask, 8))
    np.testing.assert_allclose(am.diff_map, patch_mse(am.ablated_output, am.image, 8) - patch_mse(am.intact_output, am.image, 8),
                               atol=1e-6)
    with pytest.raises(AttentionError, match="Head 4 is out of range"):
        I.ablate(vit, IMG, [(0, 4)])
    with pytest.raises(AttentionError, match="Layer 3 is out of range"):
        I.ablate(vit, IMG, [(3, 0)])
    with pytest.raises(AttentionError, match="Unknown ablation mode"):
        I.ablate(vit, IMG, [(0, 0)], mode="noise")


# ---------------------------------------------------------------------------------------------- sweeps
@pytest.mark.parametrize("name,mode", [("vit", "zero"), ("vit", "mean"), ("mae", "zero"), ("clip", "mean"),
                                       ("videomae", "zero")])
def test_batched_sweep_equals_the_one_at_a_time_loop(name, mode, request):
    probe = _probe(request.getfixturevalue(name))
    d, ld, s0 = I.run_importance(probe, mode)
    d_ref, ld_ref, s0_ref = I.run_importance(probe, mode, batched=False)
    assert d.shape == (probe.num_layers, probe.num_heads) and s0 == s0_ref
    np.testing.assert_allclose(d, d_ref, atol=2e-4 if name == "mae" else 2e-5)  # PSNR in dB
    np.testing.assert_allclose(ld, ld_ref, atol=2e-4 if name == "mae" else 2e-5)
    assert np.abs(d).max() > 0


def test_importance_is_cached_per_input_metric_and_mode(vit):
    I.clear_cache()
    a = I.head_importance(vit, IMG)
    b = I.head_importance(vit, IMG)
    assert b.seconds == 0.0 and np.array_equal(a.delta, b.delta) and a.delta.shape == (3, 4)
    c = I.head_importance(vit, IMG, mode="mean")
    assert c.seconds > 0 and not np.array_equal(a.delta, c.delta)
    d = I.head_importance(vit, IMG[::-1].copy())
    assert d.seconds > 0
    e = I.head_importance(vit, IMG, target=0 if a.what != "logit of class 0 (LABEL_0)" else 1)
    assert e.seconds > 0 and e.what != a.what
    l, h, v = a.ranked()[0]
    assert abs(v) == np.abs(a.delta).max() and a.delta[l, h] == v


def test_shipped_mini_mae_importance(request):
    """The shipped mini-mae: the sweep's single entries agree with ablate() one head at a time."""
    imp = I.head_importance("mini-mae", "chelsea", seed=0)
    assert imp.delta.shape == (6, 4) and imp.what == "masked-patch PSNR (dB)" and 10 < imp.intact < 40
    l, h, v = imp.ranked()[0]
    ab = I.ablate("mini-mae", "chelsea", [(l, h)], seed=0)
    assert ab.intact == pytest.approx(imp.intact, abs=1e-9)
    assert ab.delta == pytest.approx(v, abs=2e-3)


# ---------------------------------------------------------------------------------------------- patching
def test_patching_nothing_restores_nothing_and_batched_equals_loop(vit):
    bad = I.corrupt(IMG, "noise", seed=0)
    clean, corr = I.image_probe(vit, IMG), I.image_probe(vit, bad, reference=IMG)
    assert I.run_patching(clean, corr, heads=[]) == 0.0
    r, lr, c, k, pt = I.run_patching(clean, corr)
    r2, lr2, c2, k2, pt2 = I.run_patching(clean, corr, batched=False)
    assert c == c2 and k == k2 and r.shape == (3, 4)
    np.testing.assert_allclose(pt, pt2, atol=2e-6)  # the patched logits (shares divide float32 noise by the gap)
    np.testing.assert_allclose(r, r2, atol=2e-6 / abs(c - k))
    np.testing.assert_allclose(lr, lr2, atol=2e-6 / abs(c - k))
    np.testing.assert_allclose(pt, k + r * (c - k), atol=1e-6)  # patched value = corrupted + share × gap
    r3 = I.run_patching(clean, corr)[0]
    assert np.array_equal(r, r3)  # deterministic


def test_patching_a_head_equals_rewriting_the_projection_input(vit):
    """Second implementation: record the clean input of the output projection, write head h's slice into the
    corrupted run's."""
    bad = I.corrupt(IMG, "blur")
    clean, corr = I.image_probe(vit, IMG), I.image_probe(vit, bad, reference=IMG)
    r = I.run_patching(clean, corr, heads=[(1, 3), (2, 0)])
    kept = {}
    hooks = [out_proj(clean.sites[layer]).register_forward_pre_hook(
        lambda _m, a, layer=layer: kept.__setitem__(layer, a[0].detach().clone())) for layer in (1, 2)]
    try:
        clean_out = _plain(clean)
    finally:
        for h in hooks:
            h.remove()
    hooks = [_slice_hook(corr.sites[1], 4, [3], lambda s, h: kept[1][..., h * 8:(h + 1) * 8]),
             _slice_hook(corr.sites[2], 4, [0], lambda s, h: kept[2][..., h * 8:(h + 1) * 8])]
    try:
        patched = _plain(corr)
    finally:
        for h in hooks:
            h.remove()
    m_clean, m_corr = clean.score(clean_out)[0], corr.score(_plain(corr))[0]
    assert r == pytest.approx((corr.score(patched)[0] - m_corr) / (m_clean - m_corr), abs=1e-4)


def test_image_patching_result(vit):
    p = I.patch_heads(vit, IMG, "noise", seed=0)
    assert p.restored.shape == (3, 4) and p.layer_restored.shape == (3,)
    assert p.clean != p.corrupted and p.corruption.startswith("noise")
    np.testing.assert_allclose(p.restored, (p.patched - p.corrupted) / (p.clean - p.corrupted))
    with pytest.raises(AttentionError, match="Unknown corruption"):
        I.corrupt(IMG, "jpeg")


# ---------------------------------------------------------------------------------------------- image + text
def test_mini_fusion_sweep_patching_and_references(mini_fusion, scene):
    sc, text = scene
    cf = text.replace("triangle", "square")
    imp = FI.fusion_head_importance(mini_fusion, sc.image, text)
    ref = FI.fusion_head_importance(mini_fusion, sc.image, text, batched=False)
    assert imp.delta.shape == (2, 4)
    np.testing.assert_allclose(imp.delta, ref.delta, atol=1e-5)
    np.testing.assert_allclose(imp.layer_delta, ref.layer_delta, atol=1e-5)
    # zero ablation = zeroed out_proj columns (nn.MultiheadAttention reads out_proj.weight itself)
    pixels, t, _f, _n = prepare(mini_fusion, sc.image, text)
    l, h = divmod(int(np.argmax(np.abs(imp.delta))), 4)
    w = mini_fusion.model.fusion[l].attn.out_proj.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w[:, h * 24:(h + 1) * 24] = 0
            s_ref = float(mini_fusion.score(pixels, t)[0])
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert imp.intact + imp.delta[l, h] == pytest.approx(s_ref, abs=1e-4)
    # patching: nothing = 0, every cross-attention head of every fusion layer = 1 (the only way text gets in)
    assert FI.patch_fusion_heads(mini_fusion, sc.image, text, cf, []) == 0.0
    assert FI.patch_fusion_heads(mini_fusion, sc.image, text, cf, [(0, None), (1, None)]) == pytest.approx(1.0, abs=1e-5)
    p = FI.patch_fusion(mini_fusion, sc.image, text, cf)
    p_loop = FI.patch_fusion(mini_fusion, sc.image, text, cf, batched=False)
    np.testing.assert_allclose(p.restored, p_loop.restored, atol=1e-5)
    assert p.clean > p.corrupted  # the true caption matches better
    assert np.nanmax(p.restored) > 0.5  # one head carries most of the changed word


def test_mini_fusion_ablation_changes_score_word_maps_and_pointing(mini_fusion, scene):
    sc, text = scene
    masks = sc.word_masks(text)
    none = FI.ablate_fusion(mini_fusion, sc.image, text, [], word_masks=masks)
    assert none.delta == 0 and np.array_equal(none.intact_maps, none.ablated_maps) and none.pointing_intact is not None
    ab = FI.ablate_fusion(mini_fusion, sc.image, text, [(0, None), (1, None)], word_masks=masks)
    assert ab.method == "relevance" and ab.intact_maps.shape == (len(ab.words), 8, 8)
    assert ab.intact == none.intact and abs(ab.delta) > 0.1
    assert np.abs(ab.diff_maps).max() > 1e-3
    assert ab.delta_pointing == pytest.approx(ab.pointing_ablated - ab.pointing_intact)


def test_blip_itm_sweep_and_length_mismatch(blip):
    img = random_image(32, seed=5)
    imp = FI.fusion_head_importance(blip, img, "a red circle")
    ref = FI.fusion_head_importance(blip, img, "a red circle", batched=False)
    assert imp.delta.shape == (2, 4)
    np.testing.assert_allclose(imp.delta, ref.delta, atol=1e-5)
    p = FI.patch_fusion(blip, img, "a red circle", "a blue circle")
    assert p.restored.shape == (2, 4)
    with pytest.raises(FusionInputError, match="one word for one word"):
        FI.patch_fusion(blip, img, "a red circle", "a big red circle on the left")


def test_clip_dual_encoder_ablates_its_image_tower(tmp_path):
    from _tiny import save_tiny_clip_pair

    a = load_fusion_model(str(save_tiny_clip_pair(tmp_path / "c")), device="cpu")
    img = random_image(32, seed=2)
    imp = FI.fusion_head_importance(a, img, "a photo of a red circle")
    assert imp.delta.shape == (2, 4) and np.abs(imp.delta).max() > 0
    ab = FI.ablate_fusion(a, img, "a photo of a red circle", [(1, 2)])
    assert ab.method == "similarity" and ab.delta == pytest.approx(imp.delta[1, 2], abs=1e-4)
