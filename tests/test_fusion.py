"""Cross-modal alignment compute: per-word maps against a hand-written forward, Chefer's bi-modal
rules on an analytic case, attribution completeness, pointing game and deletion on known cases,
and clear errors for bad text."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _tiny import save_tiny_mini_fusion

from explorer.fusion import FusionInputError, align, deletion_auc, modality_report, pointing_hits, word_ig
from explorer.fusion import Alignment
from explorer.fusion.propagation import bimodal_propagate
from explorer.models.fusion_base import CallRole, FusionAdapter, TextInput
from explorer.models.fusion_mini import MiniFusionAdapter
from explorer.models.mini.fusion import MiniFusion
from explorer.data.scenes import make_scene

TEXT = "a red circle left of a blue square"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A random-weight mini fusion model written and read back like the shipped one."""
    return MiniFusionAdapter.from_folder(save_tiny_mini_fusion(tmp_path_factory.mktemp("mini-fusion")))


def _manual_forward(model: MiniFusion, x, ids):
    """The mini model's forward written out by hand, fusion attention as explicit tensors that keep their grad."""
    c = model.config
    h = model.patch(x).flatten(2).transpose(1, 2) + model.image_pos
    for blk in model.image_encoder:
        h = blk(h)
    t = model.token(ids) + model.text_pos[:, : ids.shape[1]]
    for blk in model.text_encoder:
        t = blk(t)
    t = torch.cat([model.null.expand(1, -1, -1), t], 1)
    probs = []
    for blk in model.fusion:
        mha = blk.attn
        q_in, kv = blk.norm_q(h), blk.norm_kv(t)
        Wq, Wk, Wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        H, d = c.heads, c.dim // c.heads
        q = (q_in @ Wq.T + bq).view(1, -1, H, d).transpose(1, 2)
        k = (kv @ Wk.T + bk).view(1, -1, H, d).transpose(1, 2)
        v = (kv @ Wv.T + bv).view(1, -1, H, d).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1)
        a.retain_grad()
        probs.append(a)
        o = (a @ v).transpose(1, 2).reshape(1, -1, c.dim)
        h = h + mha.out_proj(o)
        h = h + blk.mlp(blk.norm_mlp(h))
    z = model.norm(h)
    return model.match(torch.cat([z.mean(1), z.amax(1)], -1)).squeeze(-1), probs


def test_word_maps_and_gradcam_equal_a_hand_written_forward(mini):
    sc = make_scene(10_000_005)
    al = align(mini, sc.image, TEXT)
    x = mini.normalise(sc.image)
    ids = mini.tokenize(TEXT).ids[:, 1:]
    score, probs = _manual_forward(mini.model, x, ids)
    score.sum().backward()
    assert al.score == pytest.approx(float(score.detach()), abs=1e-5)
    W = len(TEXT.split())
    assert al.attention.shape == (2, 2, W, 8, 8) and al.gradcam.shape == (2, W, 8, 8)
    for layer, a in enumerate(probs):
        ref = a[0, :, :, 1:].detach().permute(0, 2, 1).reshape(2, W, 8, 8).numpy()  # column 0: the "none" slot
        np.testing.assert_allclose(al.attention[layer], ref, atol=1e-5)
        cam = (a[0] * a.grad[0].clamp_min(0)).mean(0)[:, 1:].T.reshape(W, 8, 8).detach().numpy()
        np.testing.assert_allclose(al.gradcam[layer], cam, atol=1e-6, rtol=1e-4)
    assert np.abs(al.gradcam).max() > 0
    # word 1 = "red": its map is the second word column, and methods differ from each other
    np.testing.assert_allclose(al.word_map("attention", 1, layer=0, head=1), al.attention[0, 1, 1])
    assert not np.allclose(al.maps["rollout"], al.maps["relevance"])


def test_bimodal_rules_on_an_analytic_case():
    """Chefer et al. 2021 eqs. 6-11 on four random non-negative steps, eq. 10 with the normalised self-relevance."""
    rng = np.random.default_rng(0)
    A = torch.tensor(rng.random((3, 3)))  # image self-attention
    B = torch.tensor(rng.random((3, 2)))  # image queries text
    C = torch.tensor(rng.random((2, 2)))  # text self-attention
    D = torch.tensor(rng.random((2, 3)))  # text queries image
    r = lambda q, k, nq, nk: CallRole(q, k, torch.arange(nq), torch.arange(nk))  # noqa: E731
    R = bimodal_propagate([(r("image", "image", 3, 3), A), (r("image", "text", 3, 2), B), (r("text", "text", 2, 2), C),
                           (r("text", "image", 2, 3), D)], 2, 3)
    I2, I3 = torch.eye(2, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    # Eqs. 8-9 by hand: R̄ = (R − I, rows scaled to sum 1) + I.  At B, R_ii − I = A and R_tt − I = 0 (a zero row stays
    # 0, R̄_tt = I); at D, R_ii − I = A still (R_ti is 0 when B runs) and R_tt − I = C.
    Abar = I3 + A / A.sum(1, keepdim=True)
    Cbar = I2 + C / C.sum(1, keepdim=True)
    # A: R_ii = I + A.  B (eq. 10): R_it = R̄_iiᵀ·B·R̄_tt = Abarᵀ·B; eq. 11 adds B·R_ti = 0 to R_ii.  C: R_tt = I + C,
    # R_ti stays 0.  D (eq. 10): R_ti = R̄_ttᵀ·D·R̄_ii = Cbarᵀ·D·Abar; eq. 11: R_tt += D·R_it = D·Abarᵀ·B.
    torch.testing.assert_close(R["ii"], I3 + A)
    torch.testing.assert_close(R["it"], Abar.T @ B)
    torch.testing.assert_close(R["ti"], Cbar.T @ D @ Abar)
    torch.testing.assert_close(R["tt"], I2 + C + D @ Abar.T @ B)


def test_positions_outside_the_canonical_space_are_dropped():
    A = torch.ones(2, 2)
    role = CallRole("text", "text", torch.tensor([-1, 1]), torch.tensor([-1, 1]))
    R = bimodal_propagate([(role, A)], 3, 1)
    assert R["tt"][1, 1] == 2 and R["tt"][0].sum() == 1 and R["tt"][2].sum() == 1


def test_word_ig_and_modality_report_are_complete(mini):
    sc = make_scene(10_000_006)
    x = mini.normalise(sc.image)
    t = mini.tokenize(TEXT)
    blank_word = mini.blank_text(t, [t.words[1]])
    with torch.no_grad():
        f = lambda p: float(mini.score(p, t)[0] - mini.score(p, blank_word)[0])  # noqa: E731
        want = f(x) - f(torch.zeros_like(x))
    ig = word_ig(mini, sc.image, TEXT, 1, steps=64)
    assert ig.shape == (8, 8)
    assert ig.sum() == pytest.approx(want, rel=0.05, abs=1e-3)
    rep = modality_report(mini, sc.image, TEXT, steps=64)
    with torch.no_grad():
        s = float(mini.score(x, t)[0])
        none = float(mini.score(torch.zeros_like(x), mini.blank_text(t))[0])
        no_img = float(mini.score(torch.zeros_like(x), t)[0])
    assert rep.score == pytest.approx(s, abs=1e-5) and rep.masked["image"] == pytest.approx(no_img, abs=1e-5)
    assert rep.masked["both"] == pytest.approx(none, abs=1e-5)
    assert rep.ig_image + rep.ig_text == pytest.approx(s - none, rel=0.05, abs=1e-3)
    assert rep.word_attribution.shape == (len(TEXT.split()),)
    # Exact Shapley values from the four masked outputs, written out for two players.
    with torch.no_grad():
        no_txt = float(mini.score(x, mini.blank_text(t))[0])
    assert rep.shapley["image"] == pytest.approx(0.5 * ((s - no_img) + (no_txt - none)), abs=1e-5)
    assert rep.shapley["text"] == pytest.approx(0.5 * ((s - no_txt) + (no_img - none)), abs=1e-5)
    assert rep.image_share == pytest.approx(abs(rep.shapley["image"]) / (abs(rep.shapley["image"]) + abs(rep.shapley["text"])))


def _alignment(maps: np.ndarray) -> Alignment:
    W = maps.shape[0]
    return Alignment(image=np.zeros((16, 16, 3), np.float32), tokens=[f"w{i}" for i in range(W)], words=list(range(W)), score=0.0,
                     answer="", output_name="x", grid=(4, 4), layer_names=[],
                     maps={"relevance": maps}, matrix=maps.reshape(W, -1), matrix_name="")


def test_pointing_hits_on_a_known_case():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = 1  # word 0 peaks in the top-left patch
    maps[1, 3, 3] = 1  # word 1 peaks in the bottom-right patch
    mask = np.zeros((16, 16), bool)
    mask[1:3, 1:3] = True  # an object inside the top-left patch
    hits = pointing_hits(_alignment(maps), {0: mask, 1: mask})
    assert hits == {"relevance": [True, False]}


class _LinearAdapter(FusionAdapter):
    """A known model: the output is a weighted sum of pixels, weight ``w[r, c]`` on patch (r, c)."""

    kind = "cross-attention"

    def __init__(self, weights: np.ndarray):
        super().__init__(torch.nn.Identity(), model_id="linear", model_type="linear", image_size=16, patch_size=4,
                         image_mean=(0, 0, 0), image_std=(1, 1, 1), num_image_tokens=16, patch_index=torch.arange(16),
                         max_text_tokens=4, device="cpu", dtype=torch.float32)
        self.w = torch.tensor(np.kron(weights, np.ones((4, 4))), dtype=torch.float32)

    def tokenize(self, text):
        return TextInput(text, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long), ["x"], [0])

    def score(self, pixels, text, *, text_embeds=None):
        return (pixels.sum(1) * self.w).sum((1, 2))


def test_deletion_auc_ranks_the_true_map_first():
    rng = np.random.default_rng(1)
    w = rng.random((4, 4))
    ad = _LinearAdapter(w)
    img = np.ones((16, 16, 3), np.float32)
    good = deletion_auc(ad, img, "x", w)
    bad = deletion_auc(ad, img, "x", -w)
    assert good["map"] < good["random"] < bad["map"]
    assert good["random"] == bad["random"]  # same seed, same random orders
    assert good["verdict"] == "better than random" and bad["verdict"] == "worse than random"
    assert good["band"][0] <= good["random"] <= good["band"][1] and good["random_aucs"].shape == (20,)
    # A map that is one of the random orders is inside their band.
    perm = np.random.default_rng(3).permutation(16)
    as_map = np.empty(16)
    as_map[perm] = np.arange(16, 0, -1)
    same = deletion_auc(ad, img, "x", as_map.reshape(4, 4), seed=0)
    assert same["map"] == pytest.approx(same["random_aucs"][3])


@pytest.mark.parametrize("text, message", [("", "empty"), ("   \n", "empty")])
def test_empty_text_is_refused_with_a_clear_message(mini, text, message):
    with pytest.raises(FusionInputError, match=message):
        align(mini, make_scene(1).image, text)


def test_long_unknown_and_emoji_text_is_read_and_reported(mini):
    long = " ".join(["a red circle left of a blue square"] * 3)
    t = mini.tokenize(long)
    assert t.truncated and len(t.words) == mini.config.max_words
    assert "12" in t.notes[0] and "dropped" in t.notes[0]
    al = align(mini, make_scene(1).image, "a 🙂 circle, très rouge")
    assert any("[unk]" in n and "🙂" in n for n in al.notes)
    assert al.word_strings == ["a", "🙂", "circle,", "très", "rouge"]
    with pytest.raises(FusionInputError, match="shape"):
        align(mini, np.zeros((8, 8)), "a red circle")


def test_counterfactual_word_replacement_changes_the_score(mini):
    t = mini.tokenize(TEXT)
    edited = mini.replace_word(t, t.words[1], "green")
    assert edited.text == "a green circle left of a blue square"
    x = mini.normalise(make_scene(3).image)
    with torch.no_grad():
        assert float(mini.score(x, t)[0]) != float(mini.score(x, edited)[0])
    with pytest.raises(FusionInputError):
        mini.replace_word(t, 0, "x")  # position 0 is the "none" slot, not a word


# ---------------------------------------------------------------------------------------------- the method registry
def test_the_method_registry_drives_align_and_keeps_the_old_names(mini):
    from explorer.fusion import METHOD_NAMES, METHODS, REGISTRY, get_method, methods_for

    assert METHODS == tuple(REGISTRY) and METHODS[:2] == ("attention", "rollout") and "ig" in METHODS
    assert METHOD_NAMES == {n: m.label for n, m in REGISTRY.items()}
    al = align(mini, make_scene(10_000_005).image, TEXT)
    cached = [m.name for m in methods_for(mini.kind) if not m.on_demand]
    assert al.available == cached == ["attention", "rollout", "relevance", "gradcam"]
    assert al.offered == cached + ["ig", "saliency", "gradient-shap", "occlusion", "smoothgrad"]
    assert "similarity" not in al.offered  # dual encoders only
    for name in cached:  # with no settings, every method's map is its default map
        np.testing.assert_array_equal(al.word_map(name, 2), al.maps[name][2])
    assert get_method("gradcam").settings(layer=1, head=0) == {"layer": 1, "head": "mean"}  # no heads in Grad-CAM
    assert get_method("relevance").settings(layer=1, head=0, steps=3) == {"layer": None, "head": "mean"}
    assert get_method("ig").settings(steps=4) == {"layer": None, "head": "mean", "steps": 4}
    assert get_method("attention").describe(layer=0, head=1) == "cross-attention (layer, head), layer 0, head 1"
    with pytest.raises(KeyError, match="Unknown method"):
        al.word_map("lrp", 0)


def test_on_demand_ig_is_computed_with_the_adapter_and_kept(mini):
    sc = make_scene(10_000_005)
    al = align(mini, sc.image, TEXT)
    with pytest.raises(KeyError, match="on demand"):
        al.word_map("ig", 1)
    assert np.isnan(al.patch_words("ig", 5)).all()  # nothing computed yet, no model given: nothing run
    m = al.word_map("ig", 1, adapter=mini, steps=8)
    np.testing.assert_array_equal(m, word_ig(mini, sc.image, TEXT, 1, steps=8))
    assert al.has("ig", 1, steps=8) and not al.has("ig", 1) and not al.has("ig", 2, steps=8)
    v = al.patch_words("ig", 5, steps=8)
    assert v[1] == m.ravel()[5] and np.isnan(np.delete(v, 1)).all()


def test_patch_words_reads_each_word_at_one_patch(mini):
    al = align(mini, make_scene(10_000_005).image, TEXT)
    W = len(al.words)
    np.testing.assert_array_equal(al.patch_words("attention", 9, layer=0, head=1), al.attention[0, 1, :, 1, 1])
    np.testing.assert_array_equal(al.patch_words("gradcam", 9, layer=1), al.gradcam[1, :, 1, 1])
    np.testing.assert_array_equal(al.patch_words("relevance", 63), al.maps["relevance"][:, 7, 7])
    np.testing.assert_array_equal(al.patch_words("rollout"), al.maps["rollout"].reshape(W, -1).max(1))  # no patch: peaks
