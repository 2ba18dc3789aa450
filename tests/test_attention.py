"""Attention capture, rollout, relevance, faithfulness and provenance against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tiny import random_image, save_tiny_clip, save_tiny_vit

import explorer
from explorer import attention as A
from explorer.attention.faithfulness import deletion_insertion, randomisation_check, spearman


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return explorer.load_model(str(save_tiny_clip(tmp_path_factory.mktemp("clip"))), device="cpu")


IMG = random_image(48, seed=3)


def _eager(adapter, x):
    """transformers' own attentions (eager path, output_attentions=True): the reference."""
    m = adapter.model
    m.set_attn_implementation("eager")
    try:
        if adapter.family == "vit":
            out = m(pixel_values=x, output_attentions=True)
        elif adapter.family == "clip":
            out = m.vision_model(pixel_values=x, output_attentions=True)
        else:
            L = adapter.num_patches
            old = m.config.mask_ratio
            m.config.mask_ratio = 0.0
            try:
                out = m.vit(pixel_values=x, noise=torch.arange(L, dtype=torch.float32)[None], output_attentions=True)
            finally:
                m.config.mask_ratio = old
    finally:
        m.set_attn_implementation("sdpa")
    return out


@pytest.mark.parametrize("family", ["vit", "mae", "clip"])
def test_capture_equals_transformers_eager_attentions(family, vit, mae, clip):
    adapter = {"vit": vit, "mae": mae, "clip": clip}[family]
    maps = A.attention_maps(adapter, IMG)
    x = adapter.normalise(maps.image)
    with torch.no_grad():
        ref = torch.stack([a[0] for a in _eager(adapter, x).attentions]).numpy()
    assert maps.probs.shape == ref.shape
    np.testing.assert_allclose(maps.probs, ref, atol=2e-6)
    assert maps.path == "sdpa-recomputed"
    assert np.allclose(maps.probs.sum(-1), 1, atol=1e-5)


def test_capture_in_bfloat16_is_close_to_float32(tmp_path):
    folder = save_tiny_vit(tmp_path / "v")
    a32 = A.attention_maps(explorer.load_model(str(folder), device="cpu"), IMG).probs
    a16 = A.attention_maps(explorer.load_model(str(folder), device="cpu", dtype="bfloat16"), IMG).probs
    assert a16.dtype == np.float32 and np.abs(a16 - a32).max() < 0.05
    assert not np.array_equal(a16, a32)  # really ran in bf16


def test_capture_leaves_the_model_output_unchanged(vit):
    x = vit.normalise(IMG[:32, :32])
    with torch.no_grad():
        plain = vit.logits(x)
        with A.AttentionCapture(vit.model) as cap:
            captured = vit.logits(x)
    assert cap.count == 3
    assert torch.equal(plain, captured)


def test_multihead_attention_and_custom_sdpa_modules():
    torch.manual_seed(0)

    class MyAttention(nn.Module):  # a "bring your own" block calling SDPA, timm style
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(16, 48)

        def forward(self, x):
            q, k, v = self.qkv(x).view(1, -1, 3, 4, 4).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, 16)

    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    mine = MyAttention().eval()
    model = nn.ModuleDict({"mha": mha, "mine": mine})
    x = torch.randn(1, 7, 16)

    def fwd():
        out, w = mha(x, x, x)  # default: averaged weights wanted
        assert w.shape == (1, 7, 7)  # what the caller asked for is restored
        return mine(out)

    probs, names, path = A.capture_all(model, fwd)
    assert names == ("mha", "mine") and path == "mha-weights,sdpa-recomputed"
    _, ref_w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(probs[0], ref_w[0].detach().numpy(), atol=1e-6)
    with torch.no_grad():
        q, k, _ = mine.qkv(mha(x, x, x)[0]).view(1, -1, 3, 4, 4).permute(2, 0, 3, 1, 4)
        ref = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(4), -1)[0].numpy()
    np.testing.assert_allclose(probs[1], ref, atol=1e-6)


def test_model_without_attention_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(A.AttentionError, match="No attention was captured from Sequential"):
        A.capture_all(model, lambda: model(torch.randn(1, 4)))


# ---------------------------------------------------------------------------- rollout / relevance
def _rollout_reference(probs: np.ndarray, fusion: str, discard: float, residual: bool) -> np.ndarray:
    """Abnar & Zuidema rollout written out with loops (no vectorisation, float64)."""
    L, H, T, _ = probs.shape
    R = np.eye(T)
    for layer in range(L):
        A_ = np.zeros((T, T))
        for i in range(T):
            for j in range(T):
                vals = probs[layer, :, i, j].astype(np.float64)
                A_[i, j] = {"mean": vals.mean(), "max": vals.max(), "min": vals.min()}[fusion]
        if discard > 0:
            k = int(discard * T)
            for i in range(T):
                cand = [(A_[i, j], j) for j in range(T) if j != i]
                for _, j in sorted(cand)[:k]:
                    A_[i, j] = 0.0
        if residual:
            A_ = 0.5 * A_ + 0.5 * np.eye(T)
        A_ = A_ / A_.sum(1, keepdims=True)
        R = A_ @ R
    return R


@pytest.mark.parametrize("fusion,discard,residual", [("mean", 0.0, True), ("max", 0.3, True), ("min", 0.0, False), ("mean", 0.5, False)])
def test_rollout_equals_a_direct_implementation(vit, fusion, discard, residual):
    maps = A.attention_maps(vit, IMG)
    ref = _rollout_reference(maps.probs, fusion, discard, residual)
    got = A.explain(vit, IMG, "rollout", fusion=fusion, discard=discard, residual=residual)
    np.testing.assert_allclose(got.matrix, ref, atol=1e-5)
    np.testing.assert_allclose(maps.rollout(fusion=fusion, discard=discard, residual=residual), ref, atol=1e-5)
    np.testing.assert_allclose(got.map.ravel(), ref[0, 1:], atol=1e-5)


@pytest.mark.parametrize("family", ["vit", "mae", "clip"])
def test_relevance_equals_a_direct_implementation(family, vit, mae, clip):
    """Chefer et al. 2021 with eager attentions and retain_grad (the paper's own recipe)."""
    adapter = {"vit": vit, "mae": mae, "clip": clip}[family]
    got = A.explain(adapter, IMG, "relevance")
    x = adapter.normalise(got.image)
    m = adapter.model
    m.set_attn_implementation("eager")
    try:
        if family == "vit":
            out = m(pixel_values=x, output_attentions=True)
            target = out.logits[0, out.logits[0].argmax()]
        elif family == "clip":
            out = m.vision_model(pixel_values=x, output_attentions=True)
            e = m.visual_projection(out.pooler_output)[0]
            target = (e * e.detach()).sum() / e.detach().norm()
        else:
            L = adapter.num_patches
            m.config.mask_ratio = 0.0
            out = m.vit(pixel_values=x, noise=torch.arange(L, dtype=torch.float32)[None], output_attentions=True)
            m.config.mask_ratio = 0.75
            cls = out.last_hidden_state[0, 0]
            target = (cls * cls.detach()).sum() / cls.detach().norm()
        for a in out.attentions:
            a.retain_grad()
        target.backward()
        T = out.attentions[0].shape[-1]
        R = torch.eye(T)
        for a in out.attentions:
            cam = (a.grad[0] * a[0]).clamp(min=0).mean(0)
            R = R + cam @ R
    finally:
        m.set_attn_implementation("sdpa")
        m.zero_grad(set_to_none=True)
    np.testing.assert_allclose(got.matrix, R.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(got.map).max() > 0


def test_integrated_gradients_is_complete(vit):
    """IG's completeness axiom: attributions (signed) sum to f(x) - f(baseline); checked via captum's convergence."""
    from captum.attr import IntegratedGradients

    got = A.explain(vit, IMG, "integrated-gradients", steps=64)
    x = vit.normalise(got.image)
    t = int(vit.logits(x)[0].argmax())
    ig = IntegratedGradients(lambda inp: vit.logits(inp)[:, t])
    attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=64, return_convergence_delta=True)
    assert abs(float(delta)) < 0.05 * abs(float(attr.sum()))
    ref = attr.detach().abs().sum(1)[0].numpy().reshape(4, 8, 4, 8).sum((1, 3))
    np.testing.assert_allclose(got.map, ref, rtol=1e-3, atol=1e-6)


# ---------------------------------------------------------------------------- faithfulness
def _edges(adapter, image):
    import cv2

    from explorer.reconstruction import as_input

    px, _ = as_input(image, "center-crop", adapter.image_size)
    g = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY)
    e = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    p = adapter.patch_size
    return e.reshape(adapter.grid[0], p, adapter.grid[1], p).mean((1, 3))


def test_randomisation_check_flags_a_model_blind_method_and_passes_rollout_and_relevance(tmp_path):
    adapter = explorer.load_model(str(save_tiny_vit(tmp_path / "v", num_hidden_layers=4, image_size=64)), device="cpu")
    edges = randomisation_check(adapter, IMG, _edges)
    assert not edges.passed and np.allclose(edges.spearman, 1.0)
    for method in ("rollout", "relevance"):
        s = randomisation_check(adapter, IMG, lambda a, im, m=method: A.explain(a, im, m).map)
        assert s.passed, (method, s.spearman)
        assert s.spearman.min() < s.threshold
    assert spearman(np.arange(10), np.arange(10)[::-1]) == pytest.approx(-1.0)


def test_deletion_insertion_curves_are_consistent_and_beat_random_with_occlusion(vit):
    L = vit.num_patches
    # An occlusion map (score drop when each patch alone is removed) must beat a random order.
    from explorer.attention.faithfulness import _scorer
    from explorer.reconstruction import as_input

    px, _ = as_input(IMG, "center-crop", vit.image_size)
    f, _ = _scorer(vit, px, None)
    full = f(np.ones((1, L), bool))[0]
    occl = np.array([full - f(~np.eye(L, dtype=bool)[i : i + 1])[0] for i in range(L)]).reshape(vit.grid)
    c = deletion_insertion(vit, IMG, occl, steps=L)
    assert c.deletion[0] == pytest.approx(1.0) and c.insertion[-1] == pytest.approx(1.0)
    assert c.deletion[-1] == pytest.approx(c.insertion[0])  # both: every patch replaced
    assert c.deletion_auc == pytest.approx(float(np.trapezoid(c.deletion, c.fractions)))
    assert c.deletion_auc < c.random_deletion_auc
    worst = deletion_insertion(vit, IMG, -occl, steps=L)
    assert worst.deletion_auc > c.deletion_auc


def test_mae_faithfulness_hides_patches(mae):
    rel = A.explain(mae, IMG, "relevance")
    c = deletion_insertion(mae, IMG, rel.map, steps=4)
    assert c.score.startswith("cosine similarity")
    assert c.deletion[0] == pytest.approx(1.0) and c.insertion[0] == 0.0  # nothing visible scores 0


# ---------------------------------------------------------------------------- provenance
def test_provenance_gradient_is_zero_exactly_on_hidden_patches(mae):
    from explorer.masking import MaskSpec, make_mask

    mask = make_mask(mae.grid, MaskSpec("random", 0.5, 1))
    q = int(np.flatnonzero(mask)[0])
    p = A.provenance(mae, IMG, q, ratio=0.5, seed=1)
    assert np.array_equal(p.mask, mask)
    assert np.all(p.gradient[mask] == 0.0) and np.all(p.gradient[~mask] > 0)
    assert np.all(np.isnan(p.attention[mask])) and np.all(p.attention[~mask] >= 0)
    assert np.nansum(p.attention) + p.via_cls + p.via_mask_tokens == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(A.AttentionError, match="is visible"):
        A.provenance(mae, IMG, int(np.flatnonzero(~mask)[0]), ratio=0.5, seed=1)
    with pytest.raises(A.AttentionError, match="outside"):
        A.provenance(mae, IMG, 10_000, ratio=0.5, seed=1)


def test_provenance_rejects_a_non_mae_model(vit):
    with pytest.raises(explorer.ModelLoadError, match="not a masked autoencoder"):
        A.provenance(vit, IMG, 0)


# ---------------------------------------------------------------------------- edge cases
def test_indices_and_queries_out_of_range_are_clear(vit):
    maps = A.attention_maps(vit, IMG)
    with pytest.raises(A.AttentionError, match="Layer 9 is out of range"):
        maps.query_map(9, 0)
    with pytest.raises(A.AttentionError, match="Head 4 is out of range"):
        maps.query_map(0, 4)
    with pytest.raises(A.AttentionError, match="outside the 4x4"):
        maps.query_map(0, 0, (4, 0))
    with pytest.raises(A.AttentionError, match="outside 0..15"):
        maps.query_map(0, 0, 16)
    with pytest.raises(A.AttentionError, match="Unknown query token 'reg0'"):
        maps.query_map(0, 0, "reg0")
    assert maps.query_map(0, "mean", (1, 2)).shape == (4, 4)


def test_register_tokens_and_no_cls_layouts():
    regs = A.TokenLayout(5, (2, 3), ("CLS", "reg0", "reg1", "reg2", "reg3"))
    assert regs.token("reg2") == 3 and regs.token((1, 0)) == 5 + 3 and regs.num_tokens == 11
    np.testing.assert_array_equal(regs.patch_map(np.arange(11.0)), np.arange(5, 11.0).reshape(2, 3))
    none = A.TokenLayout(0, (2, 2), ())
    with pytest.raises(A.AttentionError, match="prefix tokens are none"):
        none.token("cls")
    assert none.token(3) == 3


def test_non_square_images_and_too_long_sequences(vit):
    wide = random_image(64, seed=1)[:20]  # 20 x 64
    for fit in ("center-crop", "pad", "resize"):
        maps = A.attention_maps(vit, wide, fit=fit)
        assert maps.image.shape == (32, 32, 3)
    with pytest.raises(A.AttentionError, match="streaming"):
        A.attention_maps(vit, IMG, max_bytes=10_000)
    assert A.explain(vit, IMG, "rollout").map.shape == (4, 4)  # the streaming path still works


def test_unknown_method_and_class(vit):
    with pytest.raises(A.AttentionError, match="Unknown method"):
        A.explain(vit, IMG, "gradcam++")
    with pytest.raises(A.AttentionError, match="out of range"):
        A.explain(vit, IMG, "relevance", target=7)


def test_clip_image_tower_faithfulness_and_sanity(clip):
    rel = A.explain(clip, IMG, "relevance")
    c = deletion_insertion(clip, IMG, rel.map, steps=4)
    assert c.score.startswith("cosine similarity of the image embedding") and c.deletion[0] == pytest.approx(1.0)
    s = randomisation_check(clip, IMG, lambda a, im: A.explain(a, im, "rollout").map)
    assert s.levels == (1, 3) and s.spearman.shape == (2,)


# ---------------------------------------------------------------------------- video (VideoMAE, no CLS token)
@pytest.fixture(scope="module")
def video_model(tmp_path_factory):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("videomae")
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)).save_pretrained(folder)
    return explorer.load_model(str(folder), device="cpu")


def test_videomae_capture_rollout_and_relevance(video_model, tmp_path):
    from explorer.video import write_video

    frames = np.random.default_rng(0).random((6, 40, 48, 3)).astype(np.float32)
    write_video(tmp_path / "v.avi", frames)
    maps = A.attention_maps(video_model, tmp_path / "v.avi")
    assert maps.layout.grid == (2, 4, 4) and maps.layout.n_prefix == 0 and maps.image.shape == (4, 32, 32, 3)
    x = video_model.normalise_video(maps.image)
    m = video_model.model
    m.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = torch.stack([a[0] for a in m(pixel_values=x, output_attentions=True).attentions]).numpy()
    finally:
        m.set_attn_implementation("sdpa")
    np.testing.assert_allclose(maps.probs, ref, atol=2e-6)
    roll = A.explain(video_model, tmp_path / "v.avi", "rollout", query="mean")
    np.testing.assert_allclose(roll.matrix, _rollout_reference(maps.probs, "mean", 0.0, True), atol=1e-5)
    np.testing.assert_allclose(roll.map, roll.matrix.mean(0).reshape(2, 4, 4), atol=1e-6)
    assert maps.query_map(1, 0, (1, 2, 3)).shape == (2, 4, 4)
    with pytest.raises(A.AttentionError, match="prefix tokens are none. Use query='mean'"):
        A.explain(video_model, tmp_path / "v.avi", "rollout")
    with pytest.raises(A.AttentionError, match="3 coordinates"):
        maps.query_map(0, 0, (1, 2))
    assert A.explain(video_model, tmp_path / "v.avi", "relevance", query="mean").map.shape == (2, 4, 4)


def test_capture_ignores_other_threads(vit):
    import threading

    x = vit.normalise(A.attention_maps(vit, IMG).image)
    other = []
    with torch.no_grad(), A.AttentionCapture(vit.model, keep=True) as cap:
        t = threading.Thread(target=lambda: other.append(vit.logits(x)))  # e.g. a widget callback elsewhere
        t.start()
        t.join()
        vit.logits(x)
    assert cap.count == 3 and len(other) == 1


# ---------------------------------------------------------------------------- VideoMAEForPreTraining (encoder, no mask)
def test_videomae_pretraining_checkpoint_shows_its_unmasked_encoder(tmp_path):
    """A VideoMAEForPreTraining folder (as MCG-NJU/videomae-base is) opens in the attention views: the encoder's attention
    with every tubelet visible, equal to transformers' eager ``videomae`` forward without ``bool_masked_pos``."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    from explorer.video import write_video

    torch.manual_seed(1)
    VideoMAEForPreTraining(VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                          num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                          decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                          decoder_intermediate_size=32)).save_pretrained(tmp_path / "vmae")
    adapter = explorer.load_model(str(tmp_path / "vmae"), device="cpu")
    assert type(adapter).__name__ == "VideoMAEPreTrainingAdapter"
    write_video(tmp_path / "v.avi", np.random.default_rng(1).random((6, 40, 48, 3)).astype(np.float32))
    maps = A.attention_maps(adapter, tmp_path / "v.avi")
    assert maps.layout.grid == (2, 4, 4) and maps.layout.prefix == 0 and maps.num_layers == 2  # the decoder is not shown
    assert any("no mask" in n and "every tubelet visible" in n for n in maps.notes)
    m = adapter.model
    m.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = m.videomae(pixel_values=adapter.normalise_video(maps.image), output_attentions=True)
    finally:
        m.set_attn_implementation("sdpa")
    np.testing.assert_allclose(maps.probs, torch.stack([a[0] for a in out.attentions]).numpy(), atol=2e-6)
    rel = A.explain(adapter, tmp_path / "v.avi", "relevance", query="mean")
    assert rel.map.shape == (2, 4, 4) and any("no mask" in n for n in rel.notes)
    c = deletion_insertion(adapter, tmp_path / "v.avi", rel.map, steps=2)  # tubelets take the clip's mean colour
    assert c.score.startswith("cosine similarity of the mean-pooled encoder output to the full clip")


def test_shipped_video_mae_opens_in_attention_maps_and_the_app():
    from explorer.data.clips import make_clip
    from explorer.widgets.attention_app import AttentionApp

    model = explorer.load_model("mini-video-mae", device="cpu")
    clip = make_clip(3, frames=8, size=64).frames
    maps = A.attention_maps(model, clip)
    assert maps.layout.grid == (4, 8, 8) and maps.probs.shape == (4, 4, 256, 256)
    assert any("VideoMAEForPreTraining" in n for n in maps.notes)
    app = AttentionApp(model="mini-video-mae", image="chelsea")  # an image: a still clip
    assert "⚠" not in app.status.value, app.status.value
    assert app.query == "mean" and app.maps.layout.grid == (4, 8, 8)
    assert np.asarray(app.main.data[2].z).shape == (8, 8)  # drawn over the first frame, mean over time steps
    assert app.cls_btn.description == "Query: all tokens"
    # a click on the shown frame picks that patch (the grid is (t, gh, gw): the click reads its last two)
    before = np.asarray(app.main.data[2].z).copy()
    p = app.maps.patch_size
    app._on_image_click(None, type("P", (), {"xs": [2.5 * p], "ys": [5.5 * p]})(), None)
    assert "⚠" not in app.status.value, app.status.value
    assert app.query == 5 * 8 + 2
    assert not np.allclose(np.asarray(app.main.data[2].z), before)
    app.set_query("mean")
    assert app.query == "mean"


def test_attention_recipes_default_to_the_models_own_query(tmp_path):
    """The attention recipes' default query is the layout's (CLS, or all tokens for VideoMAE), not a fixed "cls"."""
    from explorer.data.clips import make_clip
    from explorer.export.figure import build_recipe

    model = explorer.load_model("mini-video-mae", device="cpu")
    clip = make_clip(3, frames=8, size=64).frames
    fig = build_recipe("attention_grid", model, [clip[0]], {"layers": [0], "heads": [0]})
    z = next(np.asarray(t.z) for t in fig.data if getattr(t, "z", None) is not None)
    want = A.attention_maps(model, clip[0]).query_map(0, 0, "mean").mean(0)  # (t, gh, gw): drawn as the mean over time
    np.testing.assert_allclose(z, want, atol=1e-6)


# ---------------------------------------------------------------------------- your own torch module
class MixerBlock(nn.Module):
    """Attention in a class whose name does not end in 'Attention' (it calls SDPA itself)."""

    def __init__(self, d=16, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        return x + F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([MixerBlock(), MixerBlock()])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def test_own_module_with_multihead_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(1, 7, 16)
    maps = A.attention_maps(mha, x, forward=lambda x: mha(x, x, x))
    _, ref = mha(x, x, x, need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(maps.probs[0], ref[0].detach().numpy(), atol=1e-6)
    assert maps.layout == A.TokenLayout(0, (7,), ()) and maps.path == "mha-weights"
    assert maps.layer_names == ("MultiheadAttention",) and maps.model.family == "custom" and maps.image.shape == (1, 7, 16)
    np.testing.assert_allclose(maps.query_map(0, 2, 3), ref[0, 2, 3].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(maps.rollout(), _rollout_reference(maps.probs, "mean", 0.0, True), atol=1e-6)


def test_own_module_with_a_custom_attention_class_and_a_layout():
    torch.manual_seed(0)
    model = Mixer().eval()
    x = torch.randn(1, 1 + 6, 16)
    maps = A.attention_maps(model, x)  # default forward: model(x)
    assert maps.layer_names == ("blocks.0", "blocks.1") and maps.path == "sdpa-recomputed"  # module paths
    with torch.no_grad():
        b = model.blocks[0]
        q, k, _ = b.qkv(b.norm(x)).view(1, 7, 3, 4, 4).permute(2, 0, 3, 1, 4)
        ref = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1)[0].numpy()
    np.testing.assert_allclose(maps.probs[0], ref, atol=1e-6)
    lay = A.TokenLayout(1, (2, 3), ("cls",), image_size=(16, 24), patch_size=8)
    maps = A.attention_maps(model, x, layout=lay)
    np.testing.assert_allclose(maps.query_map(1, 0, "cls"), maps.probs[1, 0, 0, 1:].reshape(2, 3), atol=1e-7)
    assert maps.head_distance().shape == (2, 4)
    with pytest.raises(A.AttentionError, match="layout has 5 tokens"):
        A.attention_maps(model, x, layout=A.TokenLayout(1, (2, 2)))


def test_own_module_errors_say_what_to_pass(vit):
    from explorer.widgets.attention_app import AttentionApp

    model = Mixer().eval()
    cases = [
        (lambda: A.attention_maps(model, "chelsea"), "forward=lambda x"),
        (lambda: A.explain(model, torch.randn(1, 7, 16)), r"attention_maps\(module, x, forward=\.\.\.\)"),
        (lambda: A.attention_maps(vit, IMG, forward=lambda x: x), "for your own torch modules"),
        (lambda: A.attention_maps(object(), IMG), "got object"),
        (lambda: A.attention_maps(nn.Linear(4, 4), torch.randn(1, 4)), "No attention was captured from Linear"),
        (lambda: AttentionApp(model=model), r"model name, hub id or folder \(not a Mixer\)"),
        (lambda: A.attention_maps(str(model) * 20, IMG), "is not a model name"),
    ]
    for call, match in cases:
        with pytest.raises(A.AttentionError, match=match) as e:
            call()
        assert str(e.value).count(". ") <= 1 or "Use query" in str(e.value), str(e.value)  # one sentence
