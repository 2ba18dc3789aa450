"""The fusion method registry, the per-word captum methods and the capture pass, against answers worked out here.

* the registry's settings and descriptions in full, registration rules and refusals;
* ``word_function`` / ``word_attribution``: the word range, the fit, each method's options and defaults against the
  attribution layer called directly with the same ``F``, pixels and the adapter's own blank image;
* ``capture``: the dual-encoder path with and without the one-pass shortcut, the answer of a model that needs a
  forward for it, gradients, and calls the adapter does not recognise;
* ``orient`` and ``gradcam_stack`` on hand-built calls.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _tiny import random_image, save_tiny_clip_pair, save_tiny_mini_fusion, save_tiny_vilt_vqa

from explorer import attribution as AT
from explorer.fusion import align
from explorer.fusion import capture as C
from explorer.fusion import methods as M
from explorer.fusion.word_methods import WORD_METHODS, _stdev, word_attribution, word_function, word_map_of
from explorer.models.fusion_base import CallRole, FusionInputError
from explorer.models.fusion_mini import MiniFusionAdapter
from explorer.models.fusion_registry import load_fusion_model

TEXT = "a red circle left of a blue square"
IMG = random_image(48, seed=21)
WIDE = random_image(64, seed=22)[:40]  # not square: "pad" and "center-crop" differ


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return MiniFusionAdapter.from_folder(save_tiny_mini_fusion(tmp_path_factory.mktemp("mini")))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_fusion_model(save_tiny_clip_pair(tmp_path_factory.mktemp("clip")), device="cpu")


@pytest.fixture(scope="module")
def vilt(tmp_path_factory):
    return load_fusion_model(save_tiny_vilt_vqa(tmp_path_factory.mktemp("vilt")), device="cpu")


class Proxy:
    """An adapter seen through a wrapper: everything is the inner adapter's unless overridden here."""

    def __init__(self, inner, **overrides):
        self._inner = inner
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        if name == "alignment_embeddings" and self.__dict__.get("no_shortcut"):
            raise AttributeError(name)
        return getattr(self._inner, name)


# ---------------------------------------------------------------------------------------------- the registry


def test_settings_keep_only_what_the_method_reads():
    att, cam, gs = M.get_method("attention"), M.get_method("gradcam"), M.get_method("gradient-shap")
    assert att.settings() == {"layer": None, "head": "mean"}
    assert att.settings(layer="2", head="1") == {"layer": 2, "head": 1}
    assert cam.settings(layer=1, head=3) == {"layer": 1, "head": "mean"}  # no head: always the mean
    assert gs.settings(layer=1, head=2, samples="4", steps=9) == {"layer": None, "head": "mean", "samples": 4,
                                                                   "noise": 0.0, "seed": 0}


def test_describe_reads_the_settings_in_words():
    att, cam, gs = M.get_method("attention"), M.get_method("gradcam"), M.get_method("gradient-shap")
    assert att.describe() == "cross-attention (layer, head), mean of layers, mean of heads"
    assert att.describe(layer=2, head=1) == "cross-attention (layer, head), layer 2, head 1"
    assert cam.describe() == "Grad-CAM on cross-attention (ALBEF), last layer"
    assert cam.describe(layer=0, head=1) == "Grad-CAM on cross-attention (ALBEF), layer 0"
    assert gs.describe(samples=4, seed=2) == "GradientSHAP (captum), samples 4, noise 0.0, seed 2"
    assert M.get_method("rollout").describe(layer=1, head=1) == "attention rollout (bi-modal)"


def test_register_takes_exactly_one_way_to_compute(monkeypatch):
    monkeypatch.setattr(M, "REGISTRY", {})
    cached = M.register(M.FusionMethod("c", "C", "c", build=lambda cap: None))
    lazy = M.register(M.FusionMethod("d", "D", "d", compute=lambda *a: None))
    assert M.REGISTRY == {"c": cached, "d": lazy} and not cached.on_demand and lazy.on_demand
    for kw in ({}, {"build": lambda cap: None, "compute": lambda *a: None}):
        with pytest.raises(ValueError) as e:
            M.register(M.FusionMethod("e", "E", "e", **kw))
        assert str(e.value) == "Method 'e' needs exactly one of build (cached) or compute (on demand)."
    assert "e" not in M.REGISTRY


def test_an_unknown_method_is_refused_with_the_known_ones():
    with pytest.raises(KeyError) as e:
        M.get_method("gradcam++")
    assert e.value.args[0] == ("Unknown method 'gradcam++'; known: attention, rollout, relevance, gradcam, similarity, "
                               "ig, saliency, gradient-shap, occlusion, smoothgrad.")


# ---------------------------------------------------------------------------------------------- per-word captum maps


def test_word_function_takes_every_clickable_word_and_refuses_the_rest(mini):
    t = mini.tokenize(TEXT)
    n = len(t.words)
    for w in (0, n - 1):
        word_function(mini, IMG, TEXT, w)
    for w in (-1, n):
        with pytest.raises(IndexError) as e:
            word_function(mini, IMG, TEXT, w)
        assert str(e.value) == f"word {w} out of range: the text has {n} clickable words"


def test_word_function_fits_the_image_as_asked_and_scores_the_words_contribution(mini):
    for fit in ("pad", "center-crop"):
        px, F, blank = word_function(mini, WIDE, TEXT, 2, fit=fit)
        torch.testing.assert_close(px, C.prepare(mini, WIDE, TEXT, fit=fit)[0])
        t = mini.tokenize(TEXT)
        with torch.no_grad():
            want = mini.score(px, t) - mini.score(px, mini.blank_text(t, [t.words[2]]))
            torch.testing.assert_close(F(px), want.float())
        torch.testing.assert_close(blank, torch.zeros_like(px))
    torch.testing.assert_close(word_function(mini, WIDE, TEXT, 2)[0], C.prepare(mini, WIDE, TEXT, fit="center-crop")[0])
    assert not torch.equal(C.prepare(mini, WIDE, TEXT, fit="pad")[0], C.prepare(mini, WIDE, TEXT, fit="center-crop")[0])


def test_noise_is_a_share_of_the_inputs_range():
    assert _stdev(torch.tensor([-1.0, 0.5, 3.0]), 0.5) == 2.0
    assert _stdev(torch.tensor([2.0, 4.0]), 0.25) == 0.5


@pytest.fixture(scope="module")
def grey_blank(mini):
    """The mini adapter with a mid-grey blank image (not zeros), so the baseline each method uses is visible."""
    return Proxy(mini, blank_pixels=lambda px: torch.full_like(px, 0.5))


def test_each_word_method_is_the_attribution_layer_on_F_from_the_adapters_blank(grey_blank):
    a = grey_blank
    px, F, blank = word_function(a, WIDE, TEXT, 1, fit="pad")
    assert float(blank.detach().mean()) == 0.5
    x, p = px.float(), a.patch_size
    sd = lambda noise: noise * float(x.detach().max() - x.detach().min())  # noqa: E731
    want = {
        ("saliency", ()): AT.saliency_patches(F, x, p, absolute=False),
        ("gradient-shap", (("samples", 4), ("seed", 3), ("noise", 0.1))):
            AT.gradient_shap_patches(F, x, p, baselines=blank, samples=4, stdev=sd(0.1), seed=3),
        ("occlusion", ()): AT.occlusion_patches(F, x, p, baseline=blank.expand_as(x)),
        ("smoothgrad", (("samples", 2), ("seed", 2), ("noise", 0.3), ("base", "integrated-gradients"), ("steps", 3))):
            AT.smoothgrad_patches(F, x, p, base="integrated-gradients", samples=2, stdev=sd(0.3), seed=2, steps=3,
                                  absolute=False, baseline=blank.expand_as(x)),
    }
    for (method, opts), ref in want.items():
        got = word_attribution(a, WIDE, TEXT, 1, method, fit="pad", **dict(opts))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7, err_msg=method)
    assert (want[("saliency", ())] < 0).any()  # signed


def test_word_method_defaults(mini):
    d = lambda method, **kw: word_attribution(mini, IMG, TEXT, 2, method, **kw)  # noqa: E731
    np.testing.assert_array_equal(d("gradient-shap"), d("gradient-shap", samples=16, seed=0, noise=0.0))
    assert not np.allclose(d("gradient-shap"), d("gradient-shap", noise=0.2))
    np.testing.assert_array_equal(d("smoothgrad", samples=2), d("smoothgrad", samples=2, noise=0.15, seed=0, base="saliency"))
    assert not np.allclose(d("smoothgrad", samples=2), d("smoothgrad", samples=2, noise=0.4))
    ig = d("smoothgrad", samples=2, base="integrated-gradients")
    np.testing.assert_array_equal(ig, d("smoothgrad", samples=2, base="integrated-gradients", steps=16))
    assert not np.allclose(ig, d("smoothgrad", samples=2, base="integrated-gradients", steps=2))


def test_unknown_word_methods_and_smoothgrad_bases_are_refused_in_words(mini):
    with pytest.raises(ValueError) as e:
        word_attribution(mini, IMG, TEXT, 0, "lime")
    assert str(e.value) == "Unknown per-word method 'lime'; choose from saliency, gradient-shap, occlusion, smoothgrad."
    assert WORD_METHODS == ("saliency", "gradient-shap", "occlusion", "smoothgrad")
    with pytest.raises(ValueError) as e:
        word_attribution(mini, IMG, TEXT, 0, "smoothgrad", base="occlusion")
    assert str(e.value) == "SmoothGrad runs over 'saliency' or 'integrated-gradients', not 'occlusion'."


def test_the_registrys_word_map_runs_on_the_alignments_image_and_text(mini):
    al = align(mini, WIDE, TEXT, fit="pad")
    for method in WORD_METHODS:
        fn = word_map_of(method)
        assert fn.__name__ == f"{method.replace('-', '_')}_word_map"
    fn = word_map_of("gradient-shap")
    got = fn(mini, al, 3, samples=2, seed=1)
    np.testing.assert_array_equal(got, word_attribution(mini, al.image, TEXT, 3, "gradient-shap", samples=2, seed=1))
    assert not np.allclose(got, word_attribution(mini, al.image, TEXT, 2, "gradient-shap", samples=2, seed=1))


# ---------------------------------------------------------------------------------------------- capture


def _vision_passes(adapter):
    """A counter of forwards of CLIP's image tower."""
    n = [0]
    h = adapter.model.vision_model.register_forward_hook(lambda *a: n.__setitem__(0, n[0] + 1))
    return n, h


def test_a_dual_encoder_is_read_in_one_pass_per_tower_or_from_its_embeddings_and_score(clip):
    px, t, _, _ = C.prepare(clip, IMG, TEXT)
    n, h = _vision_passes(clip)
    try:
        fast = C.capture(clip, px, t)
        assert n[0] == 1  # the shortcut: the score comes with the embeddings
        slow = C.capture(Proxy(clip, no_shortcut=True), px, t)
        assert n[0] == 3  # token_embeddings, then score
    finally:
        h.remove()
    patches, tokens = clip.token_embeddings(px, t)
    torch.testing.assert_close(slow.patches, patches)
    torch.testing.assert_close(slow.tokens, tokens)
    assert slow.score == pytest.approx(float(clip.score(px, t)[0]), rel=1e-5)
    assert slow.answer == clip.answer_from_score(slow.score)
    torch.testing.assert_close(fast.patches, slow.patches)
    assert fast.score == pytest.approx(slow.score, rel=1e-5) and fast.answer == clip.answer_from_score(fast.score)
    assert fast.answer.startswith("similarity ")


def test_a_model_whose_score_does_not_say_the_answer_gets_one_from_a_forward(vilt):
    px, t, _, _ = C.prepare(vilt, IMG, "what colour is the square?")
    assert vilt.answer_from_score(0.0) is None
    cap = C.capture(vilt, px, t)
    assert cap.answer == vilt.answer(px, t) and cap.answer


def test_capture_keeps_gradients_by_default_and_leaves_none_on_the_weights(mini):
    px, t, _, _ = C.prepare(mini, IMG, TEXT)
    cap = C.capture(mini, px, t)
    assert cap.grads and all(g is not None for _n, _o, g in cap.cross)
    assert all(p.grad is None for p in mini.model.parameters())
    bare = C.capture(mini, px, t, gradients=False)
    assert bare.grads == {} and all(g is None for _n, _o, g in bare.cross)
    assert [n for n, _o, _g in bare.cross] == [n for n, _o, _g in cap.cross]


def test_calls_the_adapter_does_not_recognise_are_skipped_not_the_end(mini):
    px, t, _, _ = C.prepare(mini, IMG, TEXT)
    ref = C.capture(mini, px, t)
    first = ref.calls[0].name
    ignoring = Proxy(mini, role=lambda c, text: None if c.name == first else mini.role(c, text))
    cap = C.capture(ignoring, px, t)
    assert cap.roles[0] is None and all(r is not None for r in cap.roles[1:])
    assert [n for n, _o, _g in cap.cross] == [n for n, _o, _g in ref.cross]
    for (_n, o, g), (_m, o2, g2) in zip(cap.cross, ref.cross):
        torch.testing.assert_close(o, o2)
        torch.testing.assert_close(g, g2)


def _toy(dtype):
    """3 text tokens (words 1, 2), 5 image tokens ([CLS] + 4 patches); the call's last key is outside the space."""
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(2, 3, 5, generator=g).to(dtype)
    text = SimpleNamespace(tokens=["[CLS]", "red", "square"], words=[1, 2])
    adapter = SimpleNamespace(num_image_tokens=5, patch_index=torch.tensor([1, 2, 3, 4]))
    return probs, text, adapter


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orient_places_text_to_image_rows_and_image_to_text_columns(dtype):
    probs, text, adapter = _toy(dtype)
    # text → image: key 4 maps to no image token; key k < 4 is image token k
    role = CallRole("text", "image", torch.arange(3), torch.tensor([0, 1, 2, 3, -1]))
    out = C.orient(role, probs, text, adapter, None)
    want = torch.zeros(2, 2, 4, dtype=dtype)
    for h in range(2):
        for w, tok in enumerate(text.words):
            for l, img_tok in enumerate([1, 2, 3]):  # patch 4 (image token 4) was never a key
                want[h, w, l] = probs[h, tok, img_tok]
    assert out.dtype == dtype
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    # image → text: the same numbers read from a (5 image, 3 text) call, transposed
    back = C.orient(CallRole("image", "text", torch.tensor([0, 1, 2, 3, 4]), torch.arange(3)),
                    probs.transpose(1, 2).contiguous(), text, adapter, None)
    assert back.dtype == dtype
    torch.testing.assert_close(back[..., :3], want[..., :3], rtol=0, atol=0)
    torch.testing.assert_close(back[..., 3], probs[:, 1:, 4], rtol=0, atol=0)
    assert C.orient(CallRole("text", "text", torch.arange(3), torch.arange(3)), probs, text, adapter, None) is None


def test_gradcam_stack_is_the_head_mean_of_attention_times_positive_gradient_and_zeros_without_one():
    g = torch.Generator().manual_seed(1)
    o = torch.rand(3, 2, 4, generator=g)
    grad = torch.randn(3, 2, 4, generator=g)
    cap = C.Captured(SimpleNamespace(grid=(2, 2)), SimpleNamespace(words=[4, 6]), 0.0, "",
                     cross=[("a", o, grad), ("b", o, None)])
    out = C.gradcam_stack(cap)
    assert out.shape == (2, 2, 2, 2) and out.dtype == np.float32
    want = np.mean(o.numpy() * np.maximum(grad.numpy(), 0), axis=0).reshape(2, 2, 2)
    np.testing.assert_allclose(out[0], want, rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)
    assert C.gradcam_stack(C.Captured(SimpleNamespace(grid=(2, 2)), SimpleNamespace(words=[]), 0.0, "")) is None


def test_capture_refuses_a_model_with_no_cross_modal_call(mini):
    px, t, _, _ = C.prepare(mini, IMG, TEXT)
    blind = Proxy(mini, role=lambda c, text: None)
    with pytest.raises(FusionInputError, match="No cross-modal attention was captured from"):
        C.capture(blind, px, t)


# ---------------------------------------------------------------------------------------------- inputs and leftovers


def test_prepare_loads_files_and_keeps_their_notes_before_the_fit_and_the_texts(mini, tmp_path):
    import cv2

    from explorer.io import load_image

    grey = (random_image(40, seed=3)[..., 0] * 65535).astype(np.uint16)  # a 16-bit grey PNG: the loader notes both
    path = tmp_path / "grey16.png"
    cv2.imwrite(str(path), grey)
    loaded = load_image(path)
    assert loaded.notes
    px, t, fitted, notes = C.prepare(mini, str(path), TEXT)
    px2, _t, fitted2, notes2 = C.prepare(mini, loaded, TEXT)
    torch.testing.assert_close(px, px2)
    assert fitted.dtype == np.float32 and fitted2.dtype == np.float32
    assert notes == notes2 and notes[: len(loaded.notes)] == list(loaded.notes)
    assert len(notes) == len(loaded.notes) + 1 + len(t.notes) and notes[len(loaded.notes)].startswith("40x40")
    # An array has no notes of its own: the fit's description comes first; float64 is fitted as float32.
    px3, _t, fitted3, notes3 = C.prepare(mini, loaded.pixels.astype(np.float64), TEXT)
    assert fitted3.dtype == np.float32 and notes3 == notes[len(loaded.notes):]
    torch.testing.assert_close(px3, px)
    sample = C.prepare(mini, "chelsea", TEXT)
    assert sample[2].shape == (mini.image_size, mini.image_size, 3)


def test_a_dual_encoder_whose_score_does_not_say_the_answer_runs_answer_on_the_pixels(clip):
    px, t, _, _ = C.prepare(clip, IMG, TEXT)
    asked = []

    def answer(pixels, text):
        asked.append((pixels, text))
        return "from a forward"

    cap = C.capture(Proxy(clip, answer_from_score=lambda s: None, answer=answer), px, t)
    assert cap.answer == "from a forward" and len(asked) == 1
    assert asked[0][0] is px and asked[0][1] is t


def test_method_options_are_every_methods_options_the_later_winning():
    assert M.method_options() == {"steps": 16, "samples": 16, "noise": 0.15, "seed": 0, "base": "saliency"}
