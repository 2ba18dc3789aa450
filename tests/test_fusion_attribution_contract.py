"""Modality attribution, per-word IG, deletion curves, the pointing game and the fusion interventions, against
answers worked out here.

An *analytic* adapter replaces the mini fusion model's score by ``s(x, e) = α·X + β·E + γ·X·E`` with
``X = Σ x·W_x`` (pixels) and ``E = Σ e·W_e`` (text embeddings).  Its exact Shapley values, its Integrated
Gradients per pixel and per word, what one word adds and its deletion curves have closed forms, computed in the
tests; the interventions run on the tiny random mini fusion and BLIP models and are compared with the alignment and
probes built directly.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _tiny import random_image, save_tiny_blip_itm, save_tiny_mini_fusion

from explorer.attention.faithfulness import BAND, Stopped, random_band
from explorer.attention.interventions import clear_cache, run_ablation
from explorer.fusion import align
from explorer.fusion import attribution as A
from explorer.fusion import interventions as FI
from explorer.fusion.capture import prepare
from explorer.fusion.faithfulness import deletion_auc, pointing_hits
from explorer.models.fusion_base import FusionInputError
from explorer.models.fusion_mini import MiniFusionAdapter
from explorer.models.fusion_registry import load_fusion_model

TEXT = "a red circle left of a blue square"
IMG = random_image(48, seed=31)
ALPHA, BETA, GAMMA = 0.7, -1.3, 0.45


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return MiniFusionAdapter.from_folder(save_tiny_mini_fusion(tmp_path_factory.mktemp("mini")))


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    return load_fusion_model(str(save_tiny_blip_itm(tmp_path_factory.mktemp("blip"))), device="cpu")


class Analytic:
    """The mini adapter with ``score = α X + β E + γ X E`` (everything else is the mini adapter's)."""

    def __init__(self, inner, seed=0):
        self._inner = inner
        g = torch.Generator().manual_seed(seed)
        S = inner.image_size
        self.Wx = torch.randn(3, S, S, generator=g, dtype=torch.float64) / S
        T = len(inner.tokenize(TEXT).tokens) - 1
        self.We = torch.randn(T, inner.model.config.dim, generator=g, dtype=torch.float64) / 10
        self.targets = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def X(self, x):
        return (x.double() * self.Wx).sum((1, 2, 3))

    def E(self, e):
        return (e.double() * self.We).sum((1, 2))

    def score(self, pixels, text, *, text_embeds=None):
        e = self._inner.embed_text(text) if text_embeds is None else text_embeds
        B = max(pixels.shape[0], e.shape[0])
        X, E = self.X(pixels).expand(B), self.E(e).expand(B)
        return (ALPHA * X + BETA * E + GAMMA * X * E).float()

    def set_target(self, pixels, text):
        self.targets.append((pixels, text))


@pytest.fixture(scope="module")
def analytic(mini):
    return Analytic(mini)


# ---------------------------------------------------------------------------------------------- modality attribution


def test_modality_report_has_the_closed_form_shapley_values_and_ig(analytic):
    a = analytic
    rep = A.modality_report(a, IMG, TEXT, steps=8)
    x, t, _, _ = prepare(a, IMG, TEXT)
    with torch.no_grad():
        e1, e0 = a.embed_text(t), a.embed_text(a.blank_text(t))
    X, E1, E0 = float(a.X(x)[0]), float(a.E(e1)[0]), float(a.E(e0)[0])
    s = lambda X_, E_: ALPHA * X_ + BETA * E_ + GAMMA * X_ * E_  # noqa: E731
    assert rep.score == pytest.approx(s(X, E1), rel=1e-5)
    assert rep.masked == pytest.approx({"image": s(0, E1), "text": s(X, E0), "both": s(0, E0)}, rel=1e-5, abs=1e-6)
    phi_img = ALPHA * X + GAMMA * X * (E0 + E1) / 2
    phi_txt = (BETA + GAMMA * X / 2) * (E1 - E0)
    assert rep.shapley["image"] == pytest.approx(phi_img, rel=1e-4, abs=1e-6)
    assert rep.shapley["text"] == pytest.approx(phi_txt, rel=1e-4, abs=1e-6)
    # Along the joint straight path IG equals the Shapley values here, and misses nothing.
    assert rep.ig_image == pytest.approx(phi_img, rel=1e-3, abs=1e-5)
    assert rep.ig_text == pytest.approx(phi_txt, rel=1e-3, abs=1e-5)
    assert rep.ig_delta < 1e-4 and rep.ig_steps == 8 and rep.warnings == ()
    # Per patch: x W_x (α + γ (E0 + E1) / 2) summed over each patch; per word: its embedding row's share.
    px = (x[0].double() * a.Wx).sum(0).numpy() * (ALPHA + GAMMA * (E0 + E1) / 2)
    p = a.patch_size
    gh, gw = a.grid
    np.testing.assert_allclose(rep.patch_attribution, px.reshape(gh, p, gw, p).sum((1, 3)), rtol=1e-3, atol=1e-6)
    assert rep.patch_attribution.dtype == np.float32 and rep.word_attribution.dtype == np.float32
    rows = (((e1 - e0)[0].double() * a.We).sum(1) * (BETA + GAMMA * X / 2)).numpy()
    by_pos = dict(zip(a.embedding_positions(t), rows))
    np.testing.assert_allclose(rep.word_attribution, [by_pos[w] for w in t.words], rtol=1e-3, atol=1e-6)
    assert a.targets and a.targets[-1][1].text == t.text


def test_modality_report_defaults_to_64_steps_and_fits_as_asked(analytic):
    rep = A.modality_report(analytic, IMG[:30], TEXT)
    assert rep.ig_steps == 64
    pad = A.modality_report(analytic, IMG[:30], TEXT, fit="pad", steps=4)
    x, _t, _, _ = prepare(analytic, IMG[:30], TEXT, fit="pad")
    with torch.no_grad():
        assert pad.score == pytest.approx(float(analytic.score(x, analytic.tokenize(TEXT))[0]), rel=1e-6)
    assert pad.score != pytest.approx(rep.score, rel=1e-6)


def _report(**kw):
    base = dict(score=1.0, masked={"image": 0.2, "text": 0.6, "both": 0.0}, ig_image=0.5, ig_text=0.5, ig_delta=0.0,
                word_attribution=np.zeros(2, np.float32), patch_attribution=np.zeros((2, 2), np.float32),
                shapley={"image": 0.6, "text": 0.4}, ig_steps=16)
    return A.ModalityReport(**(base | kw))


def test_shares_gaps_warnings_and_headline_in_full():
    r = _report()
    assert r.change == 1.0 and r.image_share == pytest.approx(0.6) and r.ig_image_share == 0.5
    assert r.ig_gap_share == 0.0 and r.warnings == ()
    assert r.headline() == ("Shapley values over modality masking: image +0.600, text +0.400 (image share 60%; they add "
                            "up to the change +1.000). Integrated Gradients along the joint path: image +0.500, text "
                            "+0.500, completeness gap 0 (0.0% of the change, 16 steps).")
    zero = _report(shapley={"image": 0.0, "text": 0.0}, ig_image=0.0, ig_text=0.0, score=0.0)
    assert zero.image_share == 0.5 and zero.ig_image_share == 0.5 and zero.ig_gap_share == 0.0
    assert _report(score=0.0, ig_delta=0.1).ig_gap_share == float("inf")
    gap = _report(ig_delta=0.06)
    assert gap.ig_gap_share == pytest.approx(0.06) and gap.warnings == (
        "Integrated Gradients misses 0.06 of the output change +1 (6% at 16 steps): its image / text split is "
        "unreliable here; the Shapley values are exact.",)
    assert _report(ig_delta=0.05).warnings == ()  # at the threshold: no warning
    huge = _report(score=0.0, masked={"image": 0, "text": 0, "both": 0.0}, ig_delta=2.0)
    assert "(9999% at 16 steps)" in huge.warnings[0] and "(9999.0% of the change" in huge.headline()
    flipped = _report(ig_image=-0.2, ig_text=1.2)
    assert flipped.warnings == ("IG along the joint path gives the image -0.2 but its Shapley value is +0.6: the two "
                                "modalities interact, and the joint path splits the effect differently from masking.",)
    text_flip = _report(ig_image=1.2, ig_text=-0.2)
    assert text_flip.warnings[0].startswith("IG along the joint path gives the text -0.2 but its Shapley value is +0.4")
    tiny = _report(ig_image=-1e-7, ig_text=1.0)
    assert tiny.warnings == ()  # a sign on a negligible number is not a disagreement


def test_word_ig_is_the_closed_form_of_what_the_word_adds(analytic):
    a = analytic
    x, t, _, _ = prepare(a, IMG, TEXT)
    for w in (0, 3):
        e1 = a.embed_text(t).detach()
        ew = a.embed_text(a.blank_text(t, [t.words[w]])).detach()
        k = GAMMA * float(a.E(e1)[0] - a.E(ew)[0])  # F(x) = β ΔE + γ X ΔE: linear in x, IG exact
        px = (x[0].double() * a.Wx).sum(0).numpy() * k
        p = a.patch_size
        gh, gw = a.grid
        got = A.word_ig(a, IMG, TEXT, w, steps=4)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, px.reshape(gh, p, gw, p).sum((1, 3)), rtol=1e-4, atol=1e-7)
    for w in (-1, len(t.words)):
        with pytest.raises(IndexError) as e:
            A.word_ig(a, IMG, TEXT, w)
        assert str(e.value) == f"word {w} out of range: the text has {len(t.words)} clickable words"
    pad = A.word_ig(a, IMG[:30], TEXT, 0, fit="pad", steps=2)
    crop = A.word_ig(a, IMG[:30], TEXT, 0, steps=2)
    assert not np.allclose(pad, crop)


def test_the_registrys_ig_runs_on_the_alignments_image_and_text(mini):
    al = align(mini, IMG[:30], TEXT, fit="pad")
    np.testing.assert_allclose(A.ig_word_map(mini, al, 2, steps=3), A.word_ig(mini, al.image, TEXT, 2, steps=3))


# ---------------------------------------------------------------------------------------------- deletion and pointing


def _patch_terms(a, image, text, fit="center-crop"):
    """``(c, P (L,))``: the analytic score with only patches ``K`` kept is ``c + Σ_K P``."""
    x, t, _, _ = prepare(a, image, text, fit=fit)
    E = float(a.E(a.embed_text(t).detach())[0])
    p = a.patch_size
    gh, gw = a.grid
    px = (x[0].double() * a.Wx).sum(0).numpy()
    return BETA * E, (ALPHA + GAMMA * E) * px.reshape(gh, p, gw, p).sum((1, 3)).ravel()


def _curve_auc(c, P, order, steps):
    L = len(P)
    fr = np.linspace(0, 1, steps + 1)
    s = [c + P.sum() - P[order[: int(round(f * L))]].sum() for f in fr]
    return float(np.trapezoid(s, fr))


def test_deletion_auc_equals_the_hand_worked_curves(analytic):
    a = analytic
    c, P = _patch_terms(a, IMG, TEXT)
    pm = P.reshape(a.grid)
    got = deletion_auc(a, IMG, TEXT, pm, steps=4, seed=3, random_orders=5, band=0.5)
    order = sorted(range(len(P)), key=lambda i: (-P[i], i))
    assert got["map"] == pytest.approx(_curve_auc(c, P, order, 4), rel=1e-5, abs=1e-6)
    rnd = [_curve_auc(c, P, np.random.default_rng(3 + i).permutation(len(P)), 4) for i in range(5)]
    np.testing.assert_allclose(got["random_aucs"], rnd, rtol=1e-5, atol=1e-6)
    assert got["random"] == pytest.approx(np.mean(rnd), rel=1e-5) and got["orders"] == 5
    assert got["band"] == pytest.approx(random_band(np.array(rnd), 0.5))
    assert got["verdict"] == "better than random"  # the largest terms first: the score falls fastest
    worst = deletion_auc(a, IMG, TEXT, -pm, steps=4, seed=3, random_orders=5)
    assert worst["verdict"] == "worse than random"
    assert got["band"] != deletion_auc(a, IMG, TEXT, pm, steps=4, seed=3, random_orders=5)["band"]  # 95% by default


def test_deletion_auc_defaults_ties_fit_and_refusals(analytic):
    a = analytic
    c, P = _patch_terms(a, IMG[:30], TEXT, fit="pad")
    flat = np.zeros(a.grid)
    got = deletion_auc(a, IMG[:30], TEXT, flat, fit="pad", random_orders=2)
    assert got["map"] == pytest.approx(_curve_auc(c, P, list(range(len(P))), 8), rel=1e-5, abs=1e-6)  # ties: by index
    assert got["random_aucs"][0] == pytest.approx(_curve_auc(c, P, np.random.default_rng(0).permutation(len(P)), 8),
                                                  rel=1e-5, abs=1e-6)
    assert deletion_auc(a, IMG, TEXT, flat)["orders"] == 20 and BAND == 0.95
    assert deletion_auc(a, IMG, TEXT, flat, random_orders=2)["orders"] == 2
    with pytest.raises(ValueError) as e:
        deletion_auc(a, IMG, TEXT, flat, random_orders=1)
    assert str(e.value) == "At least 2 random orders are needed for a reference band (20 or more is better)."


def test_deletion_auc_stops_when_asked_and_holds_the_lock_per_order(analytic):
    asked = []
    with pytest.raises(Stopped) as e:
        deletion_auc(analytic, IMG, TEXT, np.zeros(analytic.grid), random_orders=4,
                     should_stop=lambda: asked.append(1) or len(asked) == 3)
    assert str(e.value) == "superseded" and len(asked) == 3

    class Watch:
        n = 0
        lock = threading.Lock()

        def __enter__(self):
            self.lock.acquire()
            Watch.n += 1

        def __exit__(self, *exc):
            self.lock.release()

    deletion_auc(analytic, IMG, TEXT, np.zeros(analytic.grid), random_orders=3, lock=Watch())
    assert Watch.n == 4  # the map's order and three random ones


def test_pointing_hits_reads_each_words_peak_against_its_mask():
    maps = {("attention", 0, 1): np.array([[0, 0], [0, 9.0]]), ("attention", 1, 1): np.array([[9.0, 0], [0, 0]]),
            ("rollout", 0, None): np.array([[0, 9.0], [0, 0]]), ("rollout", 1, None): np.array([[9.0, 0], [0, 0]])}
    al = SimpleNamespace(grid=(2, 2), available=("attention", "rollout"),
                         word_map=lambda m, w, layer=None: maps[(m, w, layer if m == "attention" else None)])
    masks = {0: np.zeros((8, 8), bool), 1: np.zeros((8, 8), bool)}
    masks[0][5, 6] = True  # patch (1, 1)
    masks[1][0:2, 0:2] = True  # patch (0, 0)
    assert pointing_hits(al, masks, layer=1) == {"attention": [True, True], "rollout": [False, True]}
    assert pointing_hits(al, masks, ["rollout"]) == {"rollout": [False, True]}


# ---------------------------------------------------------------------------------------------- interventions


def test_ablate_fusion_compares_the_maps_it_is_asked_for(mini):
    sc_text = "a green circle above a blue triangle"
    # layer 0's head 0 ablated: layer 1's attention (read after it) changes
    ab = FI.ablate_fusion(mini, IMG, sc_text, [(0, 0)], mode="mean", method="attention", layer=1, head=0)
    ref0 = align(mini, IMG, sc_text)
    want0 = np.stack([ref0.word_map("attention", w, layer=1, head=0) for w in range(len(ref0.words))])
    assert ab.intact_maps.dtype == np.float32 and ab.ablated_maps.dtype == np.float32
    np.testing.assert_allclose(ab.intact_maps, want0, rtol=1e-5, atol=1e-7)
    assert not np.allclose(ab.ablated_maps, ab.intact_maps)
    pixels, t, _, _ = prepare(mini, IMG, sc_text)
    names, sites = FI.fusion_layers(mini, pixels, t)
    probe = FI.fusion_probe(mini, pixels, t, names, sites)
    _p, s0, s1, _o0, _o1 = run_ablation(probe, [(0, 0)], "mean")
    assert (ab.intact, ab.ablated) == pytest.approx((s0, s1)) and ab.mode == "mean" and ab.what == "match logit"
    assert ab.pointing_intact is None and ab.pointing_ablated is None and ab.delta_pointing is None
    dflt = FI.ablate_fusion(mini, IMG, sc_text, [(0, 1)], method="attention")
    np.testing.assert_allclose(dflt.intact_maps, np.stack([ref0.word_map("attention", w, head="mean")
                                                           for w in range(len(ref0.words))]), rtol=1e-5, atol=1e-7)
    with pytest.raises(FusionInputError) as e:
        FI.ablate_fusion(mini, IMG, sc_text, [(0, 0)], method="ig")
    assert str(e.value) == (f"Integrated Gradients (captum) is computed on demand; compare a cached method "
                            f"({', '.join(ref0.available)}).")


def test_ablate_fusion_plays_the_pointing_game_with_the_method_and_layer_given(mini):
    text = "a green circle above a blue triangle"
    masks = {1: np.zeros((mini.image_size,) * 2, bool), 2: np.zeros((mini.image_size,) * 2, bool)}
    masks[1][:16, :16] = True
    masks[2][40:, 40:] = True
    ab = FI.ablate_fusion(mini, IMG, text, [], method="gradcam", layer=0, word_masks=masks)
    al = align(mini, IMG, text)
    want = float(np.mean(pointing_hits(al, masks, ["gradcam"], layer=0)["gradcam"]))
    assert ab.pointing_intact == pytest.approx(want) and ab.pointing_ablated == ab.pointing_intact
    assert ab.delta_pointing == 0.0


def test_ablate_fusion_fits_the_image_as_asked(mini):
    text = "a red circle"
    pad = FI.ablate_fusion(mini, IMG[:30], text, [(0, 0)], fit="pad", method="attention")
    al = align(mini, IMG[:30], text, fit="pad")
    np.testing.assert_allclose(pad.intact_maps[0], al.word_map("attention", 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(pad.image, al.image)


def test_fusion_sweeps_are_cached_per_image_text_and_layers_and_keep_their_notes(mini):
    clear_cache()
    text, other = "a red circle left of a blue square", "a red circle left of a blue circle"
    a = FI.fusion_head_importance(mini, IMG, text)
    assert a.seconds > 0 and FI.fusion_head_importance(mini, IMG, text).seconds == 0.0
    b = FI.fusion_head_importance(mini, IMG[::-1].copy(), text)
    c = FI.fusion_head_importance(mini, IMG, other)
    assert b.seconds > 0 and c.seconds > 0 and not np.array_equal(a.delta, b.delta) and not np.array_equal(a.delta, c.delta)
    pixels, t, _, notes = prepare(mini, IMG, text)
    names, _sites = FI.fusion_layers(mini, pixels, t)
    want_notes = (f"layers: {', '.join(names)}", *notes)
    loop = FI.fusion_head_importance(mini, IMG, text, batched=False, mode="mean")
    assert a.notes == want_notes and loop.notes == want_notes and loop.mode == "mean" and loop.seconds > 0
    np.testing.assert_allclose(loop.delta, FI.fusion_head_importance(mini, IMG, text, mode="mean").delta, atol=2e-5)
    assert a.what == "match logit" and loop.what == "match logit"
    p = FI.patch_fusion(mini, IMG, text, other)
    q = FI.patch_fusion(mini, IMG, text, other, batched=False)
    assert p.corruption == f"counterfactual text: {other!r}" and q.corruption == p.corruption
    assert p.notes == want_notes and q.notes == want_notes and q.seconds > 0 and p.seconds > 0
    np.testing.assert_allclose(q.patched, p.patched, atol=2e-5)
    assert FI.patch_fusion(mini, IMG, text, other).seconds == 0.0
    r = FI.patch_fusion(mini, IMG, text, "a red circle left of a green square")
    assert r.seconds > 0 and r.corrupted != p.corrupted
    assert FI.intervention_shape(mini, IMG, text) == a.delta.shape


def test_fusion_setup_fixes_the_target_and_refuses_models_without_layers(mini):
    seen = []

    class Spy:
        def __init__(self, inner, layers=None):
            self._inner, self._layers = inner, layers

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def set_target(self, pixels, text):
            seen.append((tuple(pixels.shape), text.text))

        def intervention_layers(self):
            return self._layers

    FI.intervention_shape(Spy(mini), IMG[:30], TEXT, fit="pad")
    assert seen == [((1, 3, mini.image_size, mini.image_size), TEXT)]
    with pytest.raises(FusionInputError) as e:
        FI.intervention_shape(Spy(mini, []), IMG, TEXT)
    assert str(e.value) == f"{mini.model_id} has no cross-modal attention layers to ablate."
    x = prepare(mini, IMG[:30], TEXT, fit="pad")[0]
    assert FI.fusion_probe(mini, x, mini.tokenize(TEXT), *FI.fusion_layers(mini, x, mini.tokenize(TEXT))).key != \
        FI.fusion_probe(mini, prepare(mini, IMG[:30], TEXT)[0], mini.tokenize(TEXT),
                        *FI.fusion_layers(mini, x, mini.tokenize(TEXT))).key


def test_fusion_interventions_switch_an_eager_model_to_sdpa(blip):
    text = "a red circle"
    clear_cache()
    want = FI.fusion_head_importance(blip, IMG, text)
    blip.model.set_attn_implementation("eager")
    try:
        clear_cache()
        got = FI.fusion_head_importance(blip, IMG, text)
        ab = FI.ablate_fusion(blip, IMG, text, [(0, 0)], method="attention")
        assert blip.model.config._attn_implementation == "eager"
    finally:
        blip.model.set_attn_implementation("sdpa")
    np.testing.assert_allclose(got.delta, want.delta, atol=1e-5)
    assert ab.delta == pytest.approx(float(want.delta[0, 0]), abs=1e-5)


# ---------------------------------------------------------------------------------------------- randomisation


def _norms(adapter, names):
    mods = dict(adapter.capture_root.named_modules())
    return [float(torch.cat([p.detach().flatten() for p in mods[n].parameters()]).norm()) for n in names]


def test_randomise_fusion_layers_redraws_only_the_top_cross_modal_modules_of_a_copy(mini):
    from explorer.fusion.faithfulness import randomise_fusion_layers

    names = list(dict.fromkeys(align(mini, IMG, TEXT).layer_names))
    assert len(names) == 2
    before, sha = _norms(mini, names), mini.weights_sha256
    one = randomise_fusion_layers(mini, names + names[-1:], 1, seed=2)  # a repeated name counts once
    assert _norms(mini, names) == before and mini.weights_sha256 == sha and one.model is not mini.model
    after = _norms(one, names)
    assert after[0] == before[0] and after[1] != before[1] and one.weights_sha256 != sha
    assert _norms(randomise_fusion_layers(mini, names, 0), names)[0] == before[0]  # at least one, the top
    both = _norms(randomise_fusion_layers(mini, names, 5, seed=2), names)
    assert both[0] != before[0] and both[1] != before[1]
    assert _norms(randomise_fusion_layers(mini, names, 1, seed=2), names) == after
    assert _norms(randomise_fusion_layers(mini, names, 1), names) == _norms(randomise_fusion_layers(mini, names, 1, seed=0), names)
    assert _norms(randomise_fusion_layers(mini, names, 1, seed=3), names)[1] != after[1]
    with pytest.raises(ValueError) as e:
        randomise_fusion_layers(mini, names + ["fusion.9.attn"], 1)
    assert str(e.value) == f"The cross-modal layers ['fusion.9.attn'] are not modules of {mini.model_id}."


def test_fusion_randomisation_check_recomputes_the_words_map_per_level(mini):
    from explorer.attention.faithfulness import spearman
    from explorer.fusion.faithfulness import fusion_randomisation_check, randomise_fusion_layers

    text = "a red circle"
    s = fusion_randomisation_check(mini, IMG[:30], text, "attention", 1, levels=(2, 1), seed=4, threshold=0.9,
                                   fit="pad", layer=0, head=1)
    al = align(mini, IMG[:30], text, fit="pad")
    names = list(dict.fromkeys(al.layer_names))
    a = al.word_map("attention", 1, layer=0, head=1)
    np.testing.assert_allclose(s.original, a, rtol=1e-6)
    assert s.levels == (1, 2) and s.threshold == 0.9
    for k, n in enumerate(s.levels):
        rand = randomise_fusion_layers(mini, names, n, 4)
        b = align(rand, IMG[:30], text, fit="pad").word_map("attention", 1, layer=0, head=1, adapter=rand)
        np.testing.assert_allclose(s.randomised_maps[k], b, rtol=1e-5, atol=1e-7)
        assert s.spearman[k] == pytest.approx(spearman(a, b))
    d = fusion_randomisation_check(mini, IMG, text, "attention", 0)
    assert d.levels == (1, 2) and d.threshold == 0.5


# ---------------------------------------------------------------------------------------------- second round


class GreyBlank(Analytic):
    """The analytic adapter whose blank image is a mid grey (not zeros), so a removed patch is visibly replaced."""

    def blank_pixels(self, pixels):
        return torch.full_like(pixels, 0.3)


def test_deleted_patches_take_the_blank_image_and_ties_keep_the_patch_order(mini):
    a = GreyBlank(mini, seed=1)
    x, t, _, _ = prepare(a, IMG, TEXT)
    E = float(a.E(a.embed_text(t).detach())[0])
    p, (gh, gw) = a.patch_size, a.grid
    per = lambda img: (img.double() * a.Wx).sum(0).numpy().reshape(gh, p, gw, p).sum((1, 3)).ravel()  # noqa: E731
    P, B = per(x[0]), per(torch.full_like(x[0], 0.3))
    L = len(P)

    def auc(order, steps):
        fr = np.linspace(0, 1, steps + 1)
        vals = []
        for f in fr:
            gone = np.zeros(L, bool)
            gone[order[: int(round(f * L))]] = True
            vals.append(BETA * E + (ALPHA + GAMMA * E) * (P[~gone].sum() + B[gone].sum()))
        return float(np.trapezoid(vals, fr))

    tied = np.where(np.arange(L) % 3 == 0, 1.0, 0.0)  # many ties: they go in patch order
    got = deletion_auc(a, IMG, TEXT, tied.reshape(gh, gw), steps=4, random_orders=2)
    order = [i for i in range(L) if i % 3 == 0] + [i for i in range(L) if i % 3]
    assert got["map"] == pytest.approx(auc(order, 4), rel=1e-5, abs=1e-6)
    flags = deletion_auc(a, IMG, TEXT, (tied > 0).reshape(gh, gw), steps=4, random_orders=2)  # a boolean map
    assert flags["map"] == pytest.approx(got["map"], rel=1e-9)


def test_the_band_given_decides_the_verdict(analytic):
    a = analytic
    L = int(np.prod(a.grid))
    ref = deletion_auc(a, IMG, TEXT, np.zeros(a.grid), steps=4, seed=0, random_orders=20)
    second = int(np.argsort(ref["random_aucs"])[1])  # the second-lowest random order: inside 95%, outside 50%
    perm = np.random.default_rng(second).permutation(L)
    as_map = np.empty(L)
    as_map[perm] = np.arange(L, 0, -1)
    narrow = deletion_auc(a, IMG, TEXT, as_map.reshape(a.grid), steps=4, seed=0, random_orders=20, band=0.5)
    wide = deletion_auc(a, IMG, TEXT, as_map.reshape(a.grid), steps=4, seed=0, random_orders=20)
    assert narrow["map"] == pytest.approx(ref["random_aucs"][second], rel=1e-9)
    assert narrow["verdict"] == "better than random" and wide["verdict"] == "not distinguishable from random"


def test_ablation_records_heads_layers_text_and_notes_and_plays_the_game_on_the_layer_given(mini):
    text = "a green circle above a blue triangle"
    wide = IMG[:36]
    ab = FI.ablate_fusion(mini, wide, text, [(0, 1), (0, 0)], method="gradcam", layer=0)
    pixels, t, _, notes = prepare(mini, wide, text)
    names, _sites = FI.fusion_layers(mini, pixels, t)
    assert ab.heads == ((0, 0), (0, 1)) and ab.layer_names == tuple(names) and ab.text == text
    assert ab.notes == tuple(notes) and ab.notes[0].startswith("48x36 → ")  # the fit, described
    # Masks on the patch where each word's layer-0 map peaks: the game on layer 0 hits every time.
    al = align(mini, wide, text)
    S, gw = mini.image_size, mini.grid[1]
    p = mini.patch_size
    masks = {}
    for w in range(len(al.words)):
        k = int(np.argmax(al.word_map("gradcam", w, layer=0)))
        m = np.zeros((S, S), bool)
        m[(k // gw) * p:(k // gw + 1) * p, (k % gw) * p:(k % gw + 1) * p] = True
        masks[w] = m
    last = pointing_hits(al, masks, ["gradcam"], layer=None)["gradcam"]
    assert not all(last)  # the last layer's peaks are elsewhere for some word: the layer matters
    game = FI.ablate_fusion(mini, wide, text, [], method="gradcam", layer=0, word_masks=masks)
    assert game.pointing_intact == 1.0 and game.pointing_ablated == 1.0


def test_the_registrys_ig_defaults_to_16_steps(mini):
    al = align(mini, IMG, TEXT)
    np.testing.assert_array_equal(A.ig_word_map(mini, al, 1), A.word_ig(mini, al.image, TEXT, 1, steps=16))


def test_word_ig_starts_from_the_adapters_blank_image_with_16_steps_by_default(mini):
    a = GreyBlank(mini, seed=2)
    x, t, _, _ = prepare(a, IMG, TEXT)
    e1 = a.embed_text(t).detach()
    ew = a.embed_text(a.blank_text(t, [t.words[2]])).detach()
    k = GAMMA * float(a.E(e1)[0] - a.E(ew)[0])
    p, (gh, gw) = a.patch_size, a.grid
    want = ((x[0].double() - 0.3) * a.Wx).sum(0).numpy().reshape(gh, p, gw, p).sum((1, 3)) * k
    got = A.word_ig(a, IMG, TEXT, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(got, A.word_ig(a, IMG, TEXT, 2, steps=16))


def test_modality_report_fixes_the_target_on_the_fitted_pixels(analytic):
    analytic.targets.clear()
    A.modality_report(analytic, IMG, TEXT, steps=2)
    x, _t, _, _ = prepare(analytic, IMG, TEXT)
    (px, txt), = analytic.targets
    torch.testing.assert_close(px, x)
    assert txt.text == TEXT


def test_fusion_results_are_complete_in_both_modes(mini):
    import time

    clear_cache()
    text, other = "a red circle left of a blue square", "a red circle left of a blue circle"
    t0 = time.perf_counter()
    loop = FI.fusion_head_importance(mini, IMG, text, batched=False)
    elapsed = time.perf_counter() - t0
    fast = FI.fusion_head_importance(mini, IMG, text)
    assert loop.intact == pytest.approx(fast.intact) and fast.mode == "zero" and loop.mode == "zero"
    assert 0 < loop.seconds <= elapsed and 0 < fast.seconds < 60
    t0 = time.perf_counter()
    pl = FI.patch_fusion(mini, IMG, text, other, batched=False)
    elapsed = time.perf_counter() - t0
    pf = FI.patch_fusion(mini, IMG, text, other)
    assert 0 < pl.seconds <= elapsed and 0 < pf.seconds < 60
    for p in (pl, pf):
        assert p.what == "match logit" and p.layer_restored.shape == (loop.delta.shape[0],)
    np.testing.assert_allclose(pl.layer_restored, pf.layer_restored, atol=1e-3)


def test_modality_report_runs_captum_ig_with_the_steps_given(mini):
    from captum.attr import IntegratedGradients

    rep = A.modality_report(mini, IMG, TEXT, steps=3)
    pixels, t, _, _ = prepare(mini, IMG, TEXT)
    with torch.no_grad():
        emb, emb0 = mini.embed_text(t), mini.embed_text(mini.blank_text(t))
    ig = IntegratedGradients(lambda x, e: mini.score(x, t, text_embeds=e).float())
    (ai, at), delta = ig.attribute((pixels.float(), emb.float()), baselines=(mini.blank_pixels(pixels).float(), emb0.float()),
                                   n_steps=3, return_convergence_delta=True)
    assert rep.ig_image == pytest.approx(float(ai.sum()), rel=1e-4, abs=1e-6)
    assert rep.ig_text == pytest.approx(float(at.sum()), rel=1e-4, abs=1e-6)
    assert rep.ig_delta == pytest.approx(float(delta.abs().max()), rel=1e-3, abs=1e-6) and rep.ig_steps == 3


def test_the_randomised_copy_hashes_its_own_weights_and_on_demand_maps_use_it(mini):
    from explorer.attention.faithfulness import spearman
    from explorer.fusion.faithfulness import fusion_randomisation_check, randomise_fusion_layers

    text = "a red circle"
    names = list(dict.fromkeys(align(mini, IMG, text).layer_names))
    rand = randomise_fusion_layers(mini, names, 1)
    assert len(rand.weights_sha256) == 64 and rand.weights_sha256 != mini.weights_sha256
    s = fusion_randomisation_check(mini, IMG, text, "saliency", 1, levels=(1,))
    al = align(mini, IMG, text)
    a = al.word_map("saliency", 1, adapter=mini)
    b = align(rand, IMG, text).word_map("saliency", 1, adapter=rand)  # seed 0 by default
    np.testing.assert_allclose(s.original, a, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(s.randomised_maps[0], b, rtol=1e-5, atol=1e-8)
    assert s.spearman[0] == pytest.approx(spearman(a, b))
