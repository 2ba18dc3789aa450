"""captum's methods through the registries, each against an independent reference: captum called directly on the
same function, an analytic answer, or a second implementation written here.

Image / video models (:mod:`explorer.attention.registry`): the class is picked once on the real input (a model whose
top class changes along IG's path shows the old per-batch pick was wrong), every method's ``layout.grid`` map
equals captum's own call, occlusion of a linear model is analytic, seeds fix the stochastic methods.
Fusion models (:mod:`explorer.fusion.methods`): per-word saliency / GradientSHAP / occlusion / SmoothGrad of
``s(x, text) − s(x, text without the word)`` equal captum's, and which captum call (if any) reproduces ALBEF's
Grad-CAM on the cross-attention.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import random_image, save_tiny_vit

import explorer
from explorer import attention as A
from explorer import attribution as AT
from explorer.attention import registry as R
from explorer.models.layout import TokenLayout


def _patches(attr: torch.Tensor, p: int, reduce: str = "abs") -> np.ndarray:
    """``(1, 3, H, W)`` attributions → ``(H / p, W / p)``, written out here (not :func:`explorer.attribution.patch_map`)."""
    a = attr.detach()[0].numpy().astype(np.float64)
    a = np.abs(a) if reduce == "abs" else a
    C, H, W = a.shape
    out = np.zeros((H // p, W // p))
    for i in range(H // p):
        for j in range(W // p):
            out[i, j] = a[:, i * p:(i + 1) * p, j * p:(j + 1) * p].sum()
    return out / (C * p * p) if reduce == "mean" else out


# ---------------------------------------------------------------------------------------------- the target, picked once
@pytest.fixture(scope="module")
def switching():
    """``(adapter, image)``: a tiny 2-class ViT whose classifier makes class 0 win near the zero baseline and class 1
    at the input (logit 1 − logit 0 goes linearly in the classifier features from −1 at the baseline to +1 at x)."""
    from transformers import ViTConfig, ViTForImageClassification

    from explorer.models.vit import ViTAdapter

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=4, intermediate_size=64, num_labels=2))
    with torch.no_grad():
        model.vit.embeddings.position_embeddings.normal_(0, 0.5)
    ad = ViTAdapter(model, model_id="tiny-switch", image_mean=(0.5,) * 3, image_std=(0.25,) * 3,
                    device=torch.device("cpu"), dtype=torch.float32)
    img = random_image(32, seed=1)
    x = ad.normalise(img)
    feats = {}
    hook = model.classifier.register_forward_hook(lambda m, i, o: feats.__setitem__("f", i[0].detach()[0]))
    with torch.no_grad():
        model(pixel_values=torch.zeros_like(x))
        f0 = feats["f"]
        model(pixel_values=x)
        d = feats["f"] - f0
    hook.remove()
    w = 2 * d / d.dot(d)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.weight[1] = w
        model.classifier.bias[1] = -1 - w.dot(f0)
    return ad, img


def test_integrated_gradients_explains_the_class_predicted_for_the_input(switching):
    from captum.attr import IntegratedGradients

    ad, img = switching
    x = ad.normalise(img)
    with torch.no_grad():
        path = ad.logits(torch.linspace(0, 1, 33).view(-1, 1, 1, 1) * x)
    top = path.argmax(1).tolist()
    assert top[0] == 0 and top[-1] == 1, top  # the top class really changes along the path
    ref_attr, delta = IntegratedGradients(ad.logits).attribute(x, baselines=torch.zeros_like(x), target=1, n_steps=32,
                                                               return_convergence_delta=True)
    ref = _patches(ref_attr, 8)
    got = A.explain(ad, img, "integrated-gradients", steps=32)
    np.testing.assert_allclose(got.map, ref, rtol=1e-4, atol=1e-6 * ref.max())
    assert got.options["target"] == 1 and got.options["steps"] == 32
    # completeness at that class: signed attributions add up to f(x) − f(baseline)
    gap = float(path[-1, 1] - path[0, 1])
    assert gap == pytest.approx(2.0, rel=1e-3)
    assert float(ref_attr.sum()) == pytest.approx(gap, rel=1e-3) and abs(float(delta)) < 1e-3
    signed = AT.integrated_gradients_patches(ad.logits, x, 8, steps=32, reduce="sum")  # (B, C) output: picked once
    assert float(signed.sum()) == pytest.approx(gap, rel=1e-3)
    # an explicit class is explained as given
    other = A.explain(ad, img, "integrated-gradients", steps=8, target=0)
    ref0 = _patches(IntegratedGradients(ad.logits).attribute(x, baselines=torch.zeros_like(x), target=0, n_steps=8), 8)
    assert other.options["target"] == 0
    np.testing.assert_allclose(other.map, ref0, rtol=1e-4, atol=1e-6 * ref0.max())


def test_the_class_is_never_picked_per_batch(switching):
    ad, img = switching
    x = ad.normalise(img)
    with pytest.raises(A.AttentionError, match="pick it once"):
        ad.relevance_target(torch.cat([x, 0 * x]))
    assert ad.pick_target(torch.cat([x, 0 * x])) == 1  # the first (real) input decides
    for name in ("saliency", "occlusion", "gradcam", "relevance"):
        assert A.explain(ad, img, name).options["target"] == 1


def test_integrated_gradients_patches_non_square_and_analytic():
    """A plain ``(B, 2)`` function: output 0 is the constant 1, output 1 is ``w·x`` with ``w·x = 2``.  Class 0 wins at
    the zero baseline, class 1 at ``x``; IG of a linear function is ``w ⊙ x`` exactly."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 16, 24, generator=g)
    w = torch.randn(1, 3, 16, 24, generator=g)
    w = w * 2 / (w * x).sum()

    def fn(xs):
        return torch.stack([torch.ones(len(xs)), (xs * w).flatten(1).sum(1)], 1)

    assert AT.pick_target(fn, x) == 1 and AT.pick_target(fn, 0 * x) == 0
    got = AT.integrated_gradients_patches(fn, x, 8, steps=8, reduce="sum")
    np.testing.assert_allclose(got, _patches(w * x, 8, "sum"), rtol=1e-4, atol=1e-6)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(AT.integrated_gradients_patches(fn, x, 8, steps=8), _patches(w * x, 8), rtol=1e-4)
    np.testing.assert_allclose(AT.integrated_gradients_patches(fn, x, 8, steps=8, target=0), 0, atol=1e-7)


# ---------------------------------------------------------------------------------------------- every method vs captum
@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A random 3-class ViT on 32×48 inputs: a 4×6 grid (non-square)."""
    return explorer.load_model(str(save_tiny_vit(tmp_path_factory.mktemp("vitw"), seed=4, image_size=[32, 48])),
                               device="cpu")


IMG = random_image(48, seed=3)


def _setup(ad):
    got = A.explain(ad, IMG, "saliency")
    x = ad.normalise(got.image)
    with torch.no_grad():
        t = int(ad.logits(x)[0].argmax())
    return x, t


def test_registry_names_and_errors(wide):
    assert A.METHODS == tuple(R.REGISTRY) and A.METHODS[:4] == ("raw", "rollout", "relevance", "integrated-gradients")
    assert {"saliency", "gradient-shap", "occlusion", "smoothgrad", "gradcam"} <= set(A.METHODS)
    assert R.explainable() == list(A.METHODS[1:])
    assert [n for n, m in R.REGISTRY.items() if m.signed] == ["gradient-shap", "occlusion"]
    with pytest.raises(A.AttentionError, match="per layer and head"):
        A.explain(wide, IMG, "raw")
    with pytest.raises(A.AttentionError, match="no option 'sigma'"):
        A.explain(wide, IMG, "smoothgrad", sigma=1.0)
    with pytest.raises(A.AttentionError, match="SmoothGrad runs over"):
        A.explain(wide, IMG, "smoothgrad", base="occlusion")


def test_saliency_and_integrated_gradients_equal_captum(wide):
    from captum.attr import IntegratedGradients, Saliency

    x, t = _setup(wide)
    sal = A.explain(wide, IMG, "saliency")
    assert sal.map.shape == (4, 6) and sal.options["target"] == t
    np.testing.assert_allclose(sal.map, _patches(Saliency(wide.logits).attribute(x, target=t), 8), rtol=1e-4)
    ig = A.explain(wide, IMG, "integrated-gradients", steps=16)
    ref = IntegratedGradients(wide.logits).attribute(x, baselines=torch.zeros_like(x), target=t, n_steps=16)
    np.testing.assert_allclose(ig.map, _patches(ref, 8), rtol=1e-4)


def test_gradient_shap_equals_captum_and_is_seeded(wide):
    from captum.attr import GradientShap

    x, t = _setup(wide)
    got = A.explain(wide, IMG, "gradient-shap", samples=8, noise=0.1, seed=3)
    sd = 0.1 * float(x.max() - x.min())
    assert got.options["seed"] == 3 and got.options["samples"] == 8 and got.options["stdev"] == pytest.approx(sd)
    base = torch.cat([torch.zeros_like(x), x.mean((2, 3), keepdim=True).expand_as(x)])
    torch.manual_seed(3)
    np.random.seed(3)
    ref = GradientShap(wide.logits).attribute(x, baselines=base, target=t, n_samples=8, stdevs=sd)
    np.testing.assert_allclose(got.map, _patches(ref, 8, "sum"), rtol=1e-4, atol=1e-7)
    assert (got.map < 0).any() and (got.map > 0).any()  # signed
    # same seed, same map; another seed, another map; the caller's random state is left alone
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    np.testing.assert_array_equal(A.explain(wide, IMG, "gradient-shap", samples=8, noise=0.1, seed=3).map, got.map)
    assert torch.equal(torch.rand(3), before)
    assert not np.allclose(A.explain(wide, IMG, "gradient-shap", samples=8, noise=0.1, seed=4).map, got.map)


@pytest.mark.parametrize("base", ["saliency", "integrated-gradients"])
def test_smoothgrad_equals_captum_noise_tunnel_and_is_seeded(wide, base):
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    x, t = _setup(wide)
    got = A.explain(wide, IMG, "smoothgrad", base=base, samples=4, noise=0.2, seed=1, steps=4)
    sd = 0.2 * float(x.max() - x.min())
    assert got.options["base"] == base and got.options["stdev"] == pytest.approx(sd)
    torch.manual_seed(1)
    np.random.seed(1)
    if base == "saliency":
        ref = NoiseTunnel(Saliency(wide.logits)).attribute(x, nt_type="smoothgrad", nt_samples=4, stdevs=sd, target=t,
                                                           nt_samples_batch_size=AT.NT_BATCH[base], abs=True)
    else:
        ref = NoiseTunnel(IntegratedGradients(wide.logits)).attribute(
            x, nt_type="smoothgrad", nt_samples=4, stdevs=sd, target=t, nt_samples_batch_size=AT.NT_BATCH[base],
            baselines=torch.zeros_like(x), n_steps=4)
    np.testing.assert_allclose(got.map, _patches(ref, 8), rtol=1e-4)
    again = A.explain(wide, IMG, "smoothgrad", base=base, samples=4, noise=0.2, seed=1, steps=4)
    np.testing.assert_array_equal(again.map, got.map)
    assert not np.allclose(A.explain(wide, IMG, "smoothgrad", base=base, samples=4, noise=0.2, seed=2, steps=4).map,
                           got.map)


def test_occlusion_equals_captum_and_one_patch_at_a_time(wide):
    from captum.attr import Occlusion

    x, t = _setup(wide)
    got = A.explain(wide, IMG, "occlusion")
    fill = x.mean((2, 3), keepdim=True).expand_as(x)
    ref = Occlusion(wide.logits).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 8, 8), baselines=fill, target=t,
                                           perturbations_per_eval=8)
    np.testing.assert_allclose(got.map, _patches(ref, 8, "mean"), rtol=1e-4, atol=1e-6)
    # the same by hand: the drop of the logit when one patch takes the mean colour
    with torch.no_grad():
        full = float(wide.logits(x)[0, t])
        hand = np.zeros((4, 6))
        for i in range(4):
            for j in range(6):
                xo = x.clone()
                xo[..., i * 8:(i + 1) * 8, j * 8:(j + 1) * 8] = fill[..., i * 8:(i + 1) * 8, j * 8:(j + 1) * 8]
                hand[i, j] = full - float(wide.logits(xo)[0, t])
    np.testing.assert_allclose(got.map, hand, rtol=1e-4, atol=1e-6)


class _LinearPatches:
    """Not a transformer: ``f(x) = Σ_k w_k · mean(patch k of x)`` over a 2×3 grid of 8×8 patches (16×24 pixels)."""

    layout = TokenLayout(1, (2, 3), ("cls",), (16, 24), 8)
    patch_size = 8
    attention_notes = ()
    info = None
    w = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])

    def normalise_input(self, pixels):
        return torch.as_tensor(np.asarray(pixels, np.float32)).permute(2, 0, 1)[None]

    def pick_target(self, x, target=None):
        return None

    def relevance_target(self, x, target=None):
        means = x.reshape(len(x), 3, 2, 8, 3, 8).mean((1, 3, 5))  # (B, 2, 3)
        return (means * self.w).flatten(1).sum(1)


def test_occlusion_of_a_linear_model_is_analytic():
    model = _LinearPatches()
    img = np.random.default_rng(0).random((16, 24, 3)).astype(np.float32)
    got = A.explain(model, img, "occlusion")
    patch_means = img.reshape(2, 8, 3, 8, 3).mean((1, 3, 4))
    # occluding patch k by the image's mean colour changes f by w_k · (mean(patch k) − mean colour)
    np.testing.assert_allclose(got.map, model.w.numpy() * (patch_means - img.mean()), rtol=1e-4, atol=1e-6)
    # saliency of the same model: |∂f/∂x| = |w_k| / (3·8·8) on each of the patch's 192 values
    np.testing.assert_allclose(A.explain(model, img, "saliency").map, np.abs(model.w.numpy()), rtol=1e-5)


def _gradcam_by_hand(ad, x, t):
    """Grad-CAM written out: tokens ``h`` entering the last block, ``relu(Σ_d mean_patches(∂y/∂h)_d · h_d)``."""
    kept = {}

    def pre(_m, args, kwargs):
        h = (args[0] if args else kwargs["hidden_states"]).detach().requires_grad_(True)
        kept["h"] = h
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    handle = ad.blocks[-1].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        y = ad.relevance_target(x, t)
        (g,) = torch.autograd.grad(y.sum(), kept["h"])
    finally:
        handle.remove()
    P = ad.layout.prefix
    h, g = kept["h"][0, P:].detach(), g[0, P:]
    return torch.relu(h @ g.mean(0)).numpy().reshape(ad.layout.grid)


def test_gradcam_equals_a_hand_written_gradcam(wide, tmp_path):
    x, t = _setup(wide)
    got = A.explain(wide, IMG, "gradcam")
    ref = _gradcam_by_hand(wide, x, t)
    assert got.map.shape == (4, 6) and ref.max() > 0
    np.testing.assert_allclose(got.map, ref, rtol=1e-4, atol=1e-6 * ref.max())
    assert "last" in got.options["layer"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("videomae")
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)).save_pretrained(folder)
    return explorer.load_model(str(folder), device="cpu")


def test_video_maps_are_per_tubelet_and_equal_captum(video):
    from captum.attr import Occlusion, Saliency

    clip = np.random.default_rng(1).random((4, 32, 32, 3)).astype(np.float32)
    sal = A.explain(video, clip, "saliency", query="mean")
    x = video.normalise_video(sal.image)
    f = lambda v: video.relevance_target(v)  # noqa: E731 - no labels: the embedding's length

    def per_tubelet(attr, reduce):
        a = attr.detach()[0].numpy()  # (T, 3, H, W)
        a = np.abs(a) if reduce == "abs" else a
        out = a.reshape(2, 2, 3, 4, 8, 4, 8).sum((1, 2, 4, 6))
        return out / (2 * 3 * 64) if reduce == "mean" else out

    assert sal.map.shape == (2, 4, 4) and sal.options["target"] is None
    np.testing.assert_allclose(sal.map, per_tubelet(Saliency(f).attribute(x), "abs"), rtol=1e-4)
    occ = A.explain(video, clip, "occlusion", query="mean")
    fill = x.mean((0, 1, 3, 4), keepdim=True).expand_as(x)
    ref = Occlusion(f).attribute(x, sliding_window_shapes=(2, 3, 8, 8), strides=(2, 3, 8, 8), baselines=fill)
    np.testing.assert_allclose(occ.map, per_tubelet(ref, "mean"), rtol=1e-4, atol=1e-6)
    cam = A.explain(video, clip, "gradcam", query="mean")
    np.testing.assert_allclose(cam.map, _gradcam_by_hand(video, x, None), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------- fusion: per word
TEXT = "a red circle left of a blue square"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A random-weight mini fusion model written and read back like the shipped one."""
    from _tiny import save_tiny_mini_fusion

    from explorer.models.fusion_mini import MiniFusionAdapter

    return MiniFusionAdapter.from_folder(save_tiny_mini_fusion(tmp_path_factory.mktemp("mini-fusion")))


@pytest.fixture(scope="module")
def scene_alignment(mini):
    from explorer.data.scenes import make_scene
    from explorer.fusion import align

    sc = make_scene(10_000_005)
    return sc, align(mini, sc.image, TEXT)


def _word_F(mini, image, word):
    """``(pixels, F)``, written here: ``F(x) = s(x, text) − s(x, text with the word as [unk])``."""
    x = mini.normalise(image)
    t = mini.tokenize(TEXT)
    blank = mini.blank_text(t, [t.words[word]])
    return x, lambda xs: mini.score(xs, t) - mini.score(xs, blank)


def test_fusion_registry_offers_the_captum_word_methods(mini, scene_alignment):
    from explorer.fusion import get_method, methods_for

    _sc, al = scene_alignment
    names = [m.name for m in methods_for(mini.kind) if m.on_demand]
    assert names == ["ig", "saliency", "gradient-shap", "occlusion", "smoothgrad"]
    assert all(get_method(n).diverging for n in names)  # signed maps
    assert get_method("gradient-shap").settings(seed=3) == {"layer": None, "head": "mean", "samples": 16, "noise": 0.0,
                                                            "seed": 3}
    assert all(get_method(n).applies_to("dual-encoder") for n in names)  # F needs only the score


def test_fusion_saliency_and_occlusion_equal_captum(mini, scene_alignment):
    from captum.attr import Occlusion, Saliency

    sc, al = scene_alignment
    x, F = _word_F(mini, al.image, 1)
    sal = al.word_map("saliency", 1, adapter=mini)
    np.testing.assert_allclose(sal, _patches(Saliency(F).attribute(x, abs=False), 8, "sum"), rtol=1e-4, atol=1e-7)
    assert (sal < 0).any() and (sal > 0).any()
    occ = al.word_map("occlusion", 1, adapter=mini)
    ref = Occlusion(F).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 8, 8), baselines=torch.zeros_like(x),
                                 perturbations_per_eval=32)
    np.testing.assert_allclose(occ, _patches(ref, 8, "mean"), rtol=1e-4, atol=1e-4 * np.abs(occ).max())  # batched
    with torch.no_grad():  # one patch by hand: F(x) − F(x with patch (2, 5) blanked)
        xo = x.clone()
        xo[..., 16:24, 40:48] = 0
        assert float(occ[2, 5]) == pytest.approx(float(F(x)[0] - F(xo)[0]), abs=1e-4 * float(np.abs(occ).max()))


def test_fusion_gradient_shap_and_smoothgrad_equal_captum_and_are_seeded(mini, scene_alignment):
    from captum.attr import GradientShap, IntegratedGradients, NoiseTunnel, Saliency

    sc, al = scene_alignment
    x, F = _word_F(mini, al.image, 2)
    gs = al.word_map("gradient-shap", 2, adapter=mini, samples=8, seed=5)
    torch.manual_seed(5)
    np.random.seed(5)
    ref = GradientShap(F).attribute(x, baselines=torch.zeros_like(x), n_samples=8, stdevs=0.0)
    np.testing.assert_allclose(gs, _patches(ref, 8, "sum"), rtol=1e-4, atol=1e-7)
    assert np.array_equal(gs, al.word_map("gradient-shap", 2, adapter=mini, samples=8, seed=5))
    assert not np.allclose(gs, al.word_map("gradient-shap", 2, adapter=mini, samples=8, seed=6))
    sd = 0.15 * float(x.max() - x.min())
    sg = al.word_map("smoothgrad", 2, adapter=mini, samples=4, seed=1)
    torch.manual_seed(1)
    np.random.seed(1)
    ref = NoiseTunnel(Saliency(F)).attribute(x, nt_type="smoothgrad", nt_samples=4, stdevs=sd, abs=False,
                                             nt_samples_batch_size=AT.NT_BATCH["saliency"])
    np.testing.assert_allclose(sg, _patches(ref, 8, "sum"), rtol=1e-4, atol=1e-7)
    sgi = al.word_map("smoothgrad", 2, adapter=mini, samples=2, seed=1, base="integrated-gradients", steps=4)
    torch.manual_seed(1)
    np.random.seed(1)
    ref = NoiseTunnel(IntegratedGradients(F)).attribute(x, nt_type="smoothgrad", nt_samples=2, stdevs=sd,
                                                        baselines=torch.zeros_like(x), n_steps=4,
                                                        nt_samples_batch_size=AT.NT_BATCH["integrated-gradients"])
    np.testing.assert_allclose(sgi, _patches(ref, 8, "sum"), rtol=1e-4, atol=1e-7)
    assert not np.allclose(sg, al.word_map("smoothgrad", 2, adapter=mini, samples=4, seed=2))


# ---------------------------------------------------------------------------------------------- fusion: Grad-CAM
class _ProbedAttention(torch.nn.Module):
    """``nn.MultiheadAttention``'s math written out, the probabilities passing through ``self.probs`` (an identity
    module captum's layer methods can watch).  Same call signature as the mini model uses."""

    def __init__(self, mha: torch.nn.MultiheadAttention):
        super().__init__()
        self.mha = mha
        self.probs = torch.nn.Identity()

    def forward(self, q_in, k_in, v_in, key_padding_mask=None, need_weights=False):
        import math

        m = self.mha
        B, D, H = q_in.shape[0], m.embed_dim, m.num_heads
        Wq, Wk, Wv = m.in_proj_weight.chunk(3)
        bq, bk, bv = m.in_proj_bias.chunk(3)
        q = (q_in @ Wq.T + bq).view(B, -1, H, D // H).transpose(1, 2)
        k = (k_in @ Wk.T + bk).view(B, -1, H, D // H).transpose(1, 2)
        v = (v_in @ Wv.T + bv).view(B, -1, H, D // H).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        if key_padding_mask is not None:
            s = s.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        a = self.probs(torch.softmax(s, -1))  # (B, H, L, 1 + T)
        return m.out_proj((a @ v).transpose(1, 2).reshape(B, -1, D)), None


def test_which_captum_call_reproduces_albef_gradcam(mini, scene_alignment):
    """ALBEF's Grad-CAM ``E_h[A ⊙ (∂s/∂A)⁺]`` (explorer.fusion.capture.gradcam_stack) is captum's
    LayerGradientXActivation on the probability tensor, ReLU'd and averaged over heads (A ≥ 0, so
    ``A ⊙ g⁺ = (A ⊙ g)⁺``); LayerGradCam, which averages the gradient over the (query, key) plane first, is not."""
    from captum.attr import LayerGradCam, LayerGradientXActivation

    sc, al = scene_alignment
    x = mini.normalise(al.image)
    t = mini.tokenize(TEXT)
    W = len(t.words)
    blocks = mini.model.fusion
    real = [b.attn for b in blocks]
    probed = [_ProbedAttention(m) for m in real]
    for b, p in zip(blocks, probed):
        b.attn = p
    try:
        score = lambda xs: mini.score(xs, t)  # noqa: E731
        with torch.no_grad():
            assert float(score(x)[0]) == pytest.approx(al.score, abs=1e-5)  # the probed forward is the model's
        gxa = LayerGradientXActivation(score, [p.probs for p in probed]).attribute(x)
        gxa_in = LayerGradientXActivation(score, [p.probs for p in probed]).attribute(x, attribute_to_layer_input=True)
        cams = [LayerGradCam(score, p.probs).attribute(x) for p in probed]
    finally:
        for b, m in zip(blocks, real):
            b.attn = m

    def words_by_patches(a):  # (H or 1, L, 1 + T) → (H or 1, W, 8, 8): word columns (column 0 is the "none" slot)
        return a[:, :, 1:].transpose(1, 2).reshape(a.shape[0], W, 8, 8).detach().numpy()

    assert al.gradcam.shape == (2, W, 8, 8) and np.abs(al.gradcam).max() > 0
    for layer in range(2):
        albef = words_by_patches(gxa[layer][0].clamp_min(0)).mean(0)
        np.testing.assert_allclose(al.gradcam[layer], albef, rtol=1e-4, atol=1e-6 * np.abs(albef).max())
        np.testing.assert_allclose(words_by_patches(gxa_in[layer][0].clamp_min(0)).mean(0), albef, rtol=1e-6)
        # the signed product (no clamp) is not it, nor captum's Grad-CAM (with or without ReLU)
        assert not np.allclose(words_by_patches(gxa[layer][0]).mean(0), albef, rtol=1e-3, atol=1e-6 * np.abs(albef).max())
        cam = words_by_patches(cams[layer][0])[0]
        for c in (cam, np.maximum(cam, 0), np.maximum(cam, 0) / 2):  # Σ_h vs mean_h
            assert not np.allclose(c, al.gradcam[layer], rtol=1e-2, atol=1e-3 * np.abs(albef).max())


# ---------------------------------------------------------------------------------------------- recipe and app
def _unit(m):
    m = np.asarray(m, np.float64)
    return (m - m.min()) / (m.max() - m.min())


def test_attention_methods_recipe_reads_the_registry(wide):
    from explorer.export.figure import build_recipe
    from explorer.reconstruction import load_input

    im = load_input("chelsea")
    default = build_recipe("attention_methods", wide, [im], {})
    assert [a.text for a in default.layout.annotations] == ["raw L0 mean", "rollout", "relevance", "integrated gradients"]
    fig = build_recipe("attention_methods", wide, [im], {"methods": ["occlusion", "gradient-shap"], "target": 1,
                                                         "method_options": {"seed": 2, "samples": 4}})
    assert [t.name for t in fig.data if t.type == "heatmap"] == ["occlusion", "GradientSHAP"]
    ref = A.explain(wide, im, "gradient-shap", target=1, seed=2, samples=4)
    assert ref.options["target"] == 1
    z = np.array(fig.data[3].z, float)
    np.testing.assert_allclose(z, _unit(ref.map), atol=1e-6)
    other = A.explain(wide, im, "gradient-shap", target=0, seed=2, samples=4)
    assert not np.allclose(z, _unit(other.map), atol=1e-3)  # the target option reaches the method
    with pytest.raises(ValueError, match="methods"):
        build_recipe("attention_methods", wide, [im], {"methods": ["deconvolution"]})


def test_attention_app_offers_every_registry_method(tmp_path):
    from explorer.widgets.attention_app import AttentionApp

    app = AttentionApp(model=str(save_tiny_vit(tmp_path / "vit", seed=1)), image="chelsea")
    assert [v for _l, v in app.faith_method.options] == [*R.explainable(), "raw"]
    assert [v for _l, v in app.panels.options] == list(A.METHODS)
    assert len([t for t in app.methods.data if t.type == "heatmap"]) == 4  # the first four, as before
    app.panels.value = ("occlusion", "gradcam")
    names = [t.name for t in app.methods.data if t.type == "heatmap"]
    assert names == [R.get_method("occlusion").label, R.get_method("gradcam").label]
    np.testing.assert_allclose(np.array(app.methods.data[1].z, float), _unit(app.explained("occlusion").map), atol=1e-6)
    assert app.export_request()["options"]["methods"] == ["occlusion", "gradcam"]
    app.faith_method.value = "saliency"
    assert app.run_faithfulness() is not None and "saliency" in app.faith_text.value
