"""Reference and analytic checks of the cross-modal maps (explorer/fusion) on the transformers adapters.

* BLIP ITM (two streams, text queries image) and ViLT (one joint stream): raw cross-modal attention, Grad-CAM,
  rollout and gradient relevance recomputed here from transformers' *eager* attention and autograd's own
  ``∂score/∂A`` (hooks on an untouched second copy of each model), then compared with what :func:`align` returns
  word by word and patch by patch — a text→image / image→text mix-up (zeros for BLIP), a transposed grid, a
  missing ReLU or a wrong layer fails.  Chefer et al. 2021's bi-modal rules are written out as the paper states
  them: eq. 10 with the normalised self-relevance of eqs. 8–9 on both sides (``R_ti += R̄_ttᵀ·Ā·R̄_ii``).
* Grad-CAM at the last cross layer is zero for BLIP ITM and ViLT *by construction*: both read only the [CLS]
  token after their last layer (``itm_head(question_embeds[:, 0])``, ``ViltPooler(hidden_states[:, 0])``), so no
  word's row of the last attention gets a gradient.  Shown on the tiny models, and the views say so (default
  layer moved down, a note) instead of showing a blank map.
* Integrated Gradients per word and the modality report on a toy adapter whose score is known in closed form
  (linear in the pixels for each word; bilinear image × text), per patch and per word; and ``word_ig`` on BLIP
  against captum run on the eager reference model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _tiny import eager_reference, random_image, save_tiny_blip_itm, save_tiny_mini_fusion, save_tiny_vilt_vqa

from explorer.fusion import align, modality_report, word_ig
from explorer.fusion.word_methods import word_attribution
from explorer.models.fusion_base import FusionAdapter, TextInput
from explorer.models.fusion_mini import MiniFusionAdapter
from explorer.models.fusion_registry import load_fusion_model

TEXT = "a red circle left of the blue square"
S = 32  # the tiny models' input side: the test image is fed as is (no resize)


# ---------------------------------------------------------------------------------------------- eager references
def _pixels(folder, image: np.ndarray) -> torch.Tensor:
    """``(1, 3, S, S)`` normalised with the checkpoint's own processor statistics (not the adapter's code)."""
    pp = json.loads((folder / "preprocessor_config.json").read_text())
    x = (image - np.asarray(pp["image_mean"])) / np.asarray(pp["image_std"])
    return torch.tensor(x, dtype=torch.float32).permute(2, 0, 1)[None]


def _ids(folder, text: str = TEXT) -> torch.Tensor:
    from transformers import BertTokenizer

    return torch.tensor([BertTokenizer.from_pretrained(folder)(text)["input_ids"]])


def _keep_probs(model, classes, kind):
    """Forward hooks keeping every attention-probability tensor (``output[1]``) with its gradient retained:
    ``[(kind, probs)]`` in forward order."""
    calls, handles = [], []
    for name, m in model.named_modules():
        if isinstance(m, classes):
            def hook(_m, _inp, out, name=name):
                out[1].retain_grad()
                calls.append((kind(name), out[1]))
            handles.append(m.register_forward_hook(hook))
    return calls, handles


def _blip_kind(name: str) -> str:
    return "ii" if name.startswith("vision_model.") else ("ti" if ".crossattention." in name else "tt")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("alignment-reference")
    return {"blip": save_tiny_blip_itm(root / "blip"), "vilt": save_tiny_vilt_vqa(root / "vilt")}


@pytest.fixture(scope="module")
def image():
    return random_image(S, seed=5)


@pytest.fixture(scope="module")
def blip(folders, image):
    """The adapter, its Alignment, and the eager reference: score, ``[(kind, A (H,Tq,Tk), ∂s/∂A)]``, ids."""
    from transformers.models.blip.modeling_blip import BlipAttention
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    a = load_fusion_model(folders["blip"], device="cpu")
    al = align(a, image, TEXT)
    ref = eager_reference(folders["blip"], "BlipForImageTextRetrieval")
    ids = _ids(folders["blip"])
    calls, handles = _keep_probs(ref, (BlipAttention, BlipTextSelfAttention), _blip_kind)
    out = ref(input_ids=ids, pixel_values=_pixels(folders["blip"], image), attention_mask=torch.ones_like(ids),
              use_itm_head=True)
    s = out.itm_score[0, 1] - out.itm_score[0, 0]
    s.backward()
    for h in handles:
        h.remove()
    steps = [(k, p[0].detach().double(), p.grad[0].double()) for k, p in calls]
    return dict(adapter=a, al=al, ref=ref, ids=ids, score=float(s.detach()), steps=steps)


@pytest.fixture(scope="module")
def vilt(folders, image):
    """Same for ViLT VQA (the answer explained: the reference's top answer); patches kept in reading order."""
    from transformers.models.vilt.modeling_vilt import ViltSelfAttention

    a = load_fusion_model(folders["vilt"], device="cpu")
    al = align(a, image, TEXT)
    ref = eager_reference(folders["vilt"], "ViltForQuestionAnswering")
    ids = _ids(folders["vilt"])
    calls, handles = _keep_probs(ref, ViltSelfAttention, lambda _n: "joint")
    real = torch.multinomial
    torch.multinomial = lambda inp, num_samples, replacement=False, **kw: torch.arange(num_samples)  # no patch shuffle
    try:
        logits = ref(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=_pixels(folders["vilt"], image),
                     pixel_mask=torch.ones(1, S, S, dtype=torch.long), output_attentions=True).logits
    finally:
        torch.multinomial = real
    target = int(logits[0].argmax())
    logits[0, target].backward()
    for h in handles:
        h.remove()
    steps = [(k, p[0].detach().double(), p.grad[0].double()) for k, p in calls]
    return dict(adapter=a, al=al, ref=ref, ids=ids, score=float(logits[0, target].detach()), target=target, steps=steps)


def _gradient_weighted(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Chefer et al. 2021 eq. 5: ``Ā = E_h[(∇A ⊙ A)⁺]``, ``(Tq, Tk)``."""
    return (G * A).clamp_min(0).mean(0)


def _bar(R: torch.Tensor) -> torch.Tensor:
    """Eqs. 8–9: ``R̂ = R − I`` with each row scaled to sum 1 (a zero row stays 0), ``R̄ = R̂ + I``."""
    eye = torch.eye(R.shape[0], dtype=R.dtype)
    h = R - eye
    assert float(h.diagonal().min()) >= -1e-12
    rows = h.sum(-1, keepdim=True)
    return torch.where(rows > 0, h / torch.where(rows > 0, rows, torch.ones_like(rows)), torch.zeros_like(h)) + eye


def _bimodal(steps, n_text: int, n_image: int) -> dict[str, torch.Tensor]:
    """The bi-modal rules over ``[(kind, Ā)]`` in forward order, kinds ``"ii"``, ``"tt"`` (self-attention, eqs. 6–7:
    ``R_ss += Ā·R_ss``, ``R_sq += Ā·R_sq``) and ``"ti"`` (text queries image; eq. 10 ``R_ti += R̄_ttᵀ·Ā·R̄_ii`` and
    eq. 11 ``R_tt += Ā·R_it``)."""
    R = {"tt": torch.eye(n_text, dtype=torch.float64), "ii": torch.eye(n_image, dtype=torch.float64),
         "ti": torch.zeros(n_text, n_image, dtype=torch.float64), "it": torch.zeros(n_image, n_text, dtype=torch.float64)}
    for kind, A in steps:
        if kind == "ii":
            R["ii"], R["it"] = R["ii"] + A @ R["ii"], R["it"] + A @ R["it"]
        elif kind == "tt":
            R["tt"], R["ti"] = R["tt"] + A @ R["tt"], R["ti"] + A @ R["ti"]
        else:
            add = _bar(R["tt"]).T @ A @ _bar(R["ii"])
            R["ti"], R["tt"] = R["ti"] + add, R["tt"] + A @ R["it"]
    return R


def _words_patches(M: torch.Tensor, rows, cols, grid=(4, 4)) -> np.ndarray:
    """``(W, gh, gw)``: rows = the words' positions, columns = the patches' positions (row-major)."""
    return M[list(rows)][:, list(cols)].reshape(len(rows), *grid).numpy()


def _blip_positions(d):
    T = d["ids"].shape[1]
    words = list(range(1, T - 1))  # [CLS] words [SEP], one token per word
    assert d["al"].words == words and d["al"].grid == (4, 4)
    return T, words, list(range(1, 17))  # image tokens: [CLS] + 16 patches


def _vilt_positions(d):
    T = d["ids"].shape[1]
    words = list(range(1, T - 1))
    assert d["al"].words == words
    return T, words, list(range(T + 1, T + 17))  # joint sequence: text, then image [CLS] + 16 patches


# ---------------------------------------------------------------------------------------------- BLIP ITM
def test_blip_attention_and_gradcam_equal_eager_attention_and_autograd(blip):
    al = blip["al"]
    T, words, patches = _blip_positions(blip)
    assert al.score == pytest.approx(blip["score"], abs=1e-5)
    cross = [(A, G) for k, A, G in blip["steps"] if k == "ti"]
    assert len(cross) == 2 and al.attention.shape == (2, 4, len(words), 4, 4)
    for layer, (A, G) in enumerate(cross):
        want = A[:, words][:, :, patches].reshape(4, len(words), 4, 4).numpy()  # text rows → image columns
        np.testing.assert_allclose(al.attention[layer], want, atol=1e-6)
        cam = (A * G.clamp_min(0)).mean(0)  # ALBEF: E_h[A ⊙ (∂s/∂A)⁺]
        np.testing.assert_allclose(al.gradcam[layer], _words_patches(cam, words, patches), atol=1e-6, rtol=1e-4)
    assert np.abs(al.gradcam[0]).max() > 1e-4


@pytest.mark.parametrize("method", ["relevance", "rollout"])
def test_blip_rollout_and_relevance_equal_the_papers_eq10_with_normalised_self_relevance(blip, method):
    """Hand-written propagation over the eager reference, read text→image (BLIP has no image→text attention, so the
    other direction would be all zeros), eq. 10 as the paper states it (``R_ti += R̄_ttᵀ·Ā·R̄_ii``)."""
    T, words, patches = _blip_positions(blip)
    steps = [(k, _gradient_weighted(A, G) if method == "relevance" else A.mean(0)) for k, A, G in blip["steps"]]
    R = _bimodal(steps, T, 17)
    assert float(R["it"].abs().max()) == 0  # nothing flows image→text: that readout would be a blank map
    want = _words_patches(R["ti"], words, patches)
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(blip["al"].maps[method], want, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- ViLT
def test_vilt_attention_gradcam_rollout_and_relevance_equal_eager_references(vilt):
    al = vilt["al"]
    T, words, patches = _vilt_positions(vilt)
    assert vilt["adapter"].current_target == vilt["target"] and al.score == pytest.approx(vilt["score"], abs=1e-5)
    n = T + 17
    eye = torch.eye(n, dtype=torch.float64)
    rollout, relevance = eye, eye
    for layer, (_k, A, G) in enumerate(vilt["steps"]):
        np.testing.assert_allclose(al.attention[layer], A[:, words][:, :, patches].reshape(4, len(words), 4, 4).numpy(),
                                   atol=1e-6)
        np.testing.assert_allclose(al.gradcam[layer], _words_patches((A * G.clamp_min(0)).mean(0), words, patches),
                                   atol=1e-6, rtol=1e-4)
        step = 0.5 * A.mean(0) + 0.5 * eye  # Abnar & Zuidema 2020: residual, rows renormalised, product over layers
        rollout = (step / step.sum(-1, keepdim=True)) @ rollout
        relevance = relevance + _gradient_weighted(A, G) @ relevance  # Chefer et al. 2021, eq. 6
    for method, M in (("rollout", rollout), ("relevance", relevance)):
        want = _words_patches(M, words, patches)  # word rows, patch columns of the joint matrix
        assert np.abs(want).max() > 1e-4
        np.testing.assert_allclose(al.maps[method], want, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- Grad-CAM, last layer
def _perturb_rows_after(module, rows):
    """Forward hook adding noise to rows ``rows`` of ``module``'s output hidden states (tensor or tuple)."""
    def hook(_m, _inp, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        h[:, rows] += torch.randn(h[:, rows].shape, generator=torch.Generator().manual_seed(0))
        return (h, *out[1:]) if isinstance(out, tuple) else h
    return module.register_forward_hook(hook)


@pytest.mark.parametrize("family", ["blip", "vilt"])
def test_gradcam_at_the_last_cross_layer_is_zero_by_construction(family, blip, vilt, folders, image):
    """The score reads only [CLS] after the last layer: autograd gives exactly zero on every other query row of the
    last attention (and not on row 0, nor on the word rows of the layer before); noise on those rows of the last
    layer's output leaves the score bit for bit unchanged, noise on [CLS] does not.  Structure, not weights."""
    d = blip if family == "blip" else vilt
    cross = [(A, G) for k, A, G in d["steps"] if k in ("ti", "joint")]
    (_A0, G0), (_A1, G1) = cross
    assert float(G1[:, 1:].abs().max()) == 0.0  # every query row but [CLS], every head, every key
    assert float(G1[:, 0].abs().max()) > 0 and float(G0[:, 1:].abs().max()) > 0
    al = d["al"]
    assert float(np.abs(al.gradcam[-1]).max()) == 0.0 and float(np.abs(al.gradcam[0]).max()) > 0
    assert al.zero_layers == {"gradcam": (1,)}

    ref, ids, x = d["ref"], d["ids"], _pixels(folders[family], image)
    if family == "blip":
        last, before = ref.text_encoder.encoder.layer[-1], ref.text_encoder.encoder.layer[-2]

        def score():
            with torch.no_grad():
                out = ref(input_ids=ids, pixel_values=x, attention_mask=torch.ones_like(ids), use_itm_head=True)
            return out.itm_score[0, 1] - out.itm_score[0, 0]
    else:
        last, before = ref.vilt.encoder.layer[-1], ref.vilt.encoder.layer[-2]

        def score():
            real = torch.multinomial
            torch.multinomial = lambda inp, num_samples, replacement=False, **kw: torch.arange(num_samples)
            try:
                with torch.no_grad():
                    return ref(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=x,
                               pixel_mask=torch.ones(1, S, S, dtype=torch.long)).logits[0, d["target"]]
            finally:
                torch.multinomial = real

    s = score()
    for module, rows, same in ((last, slice(1, None), True), (last, slice(0, 1), False), (before, slice(1, None), False)):
        h = _perturb_rows_after(module, rows)
        try:
            s2 = score()
        finally:
            h.remove()
        assert bool(s2 == s) is same, (module, rows, float(s), float(s2))


@pytest.mark.parametrize("family", ["blip", "vilt"])
def test_the_default_gradcam_layer_is_the_last_one_with_a_map_and_says_why(family, blip, vilt):
    al = (blip if family == "blip" else vilt)["al"]
    assert al.default_layer_index("gradcam") == 0 and al.default_layer_index("attention") is None
    np.testing.assert_array_equal(al.maps["gradcam"], al.gradcam[0])
    np.testing.assert_array_equal(al.word_map("gradcam", 2), al.gradcam[0, 2])
    np.testing.assert_array_equal(al.word_map("gradcam", 2, layer=1), al.gradcam[1, 2])  # still there when asked for
    assert "layer 0" in al.describe("gradcam")
    note = al.layer_note("gradcam")
    assert "zero by construction" in note and "[CLS]" in note and note.endswith("showing layer 0.")
    assert "layer 0 is the last layer with a non-zero map" in al.layer_note("gradcam", 1)
    assert al.layer_note("attention") is None and al.layer_note("relevance") is None


def test_a_model_whose_last_layer_has_a_map_keeps_it(tmp_path):
    """The mini model pools every image token: its last fusion layer gets a gradient, nothing moves, no note."""
    mini = MiniFusionAdapter.from_folder(save_tiny_mini_fusion(tmp_path / "mini"))
    al = align(mini, random_image(64, seed=1), TEXT)
    assert al.zero_layers == {} and al.layer_note("gradcam") is None and al.layer_note("gradcam", 0) is None
    assert al.default_layer_index("gradcam") == al.gradcam.shape[0] - 1
    np.testing.assert_array_equal(al.maps["gradcam"], al.gradcam[-1])
    assert "last layer" in al.describe("gradcam")


def test_the_app_opens_gradcam_on_a_layer_with_a_map_and_says_why(folders):
    from explorer.widgets.fusion_app import FusionApp

    app = FusionApp(model=str(folders["blip"]), image="scene:10000003")
    al = app.alignment
    assert app.method.value == "attention" and app.layer.value == 1 and app.layer_note.value == ""
    app.method.value = "gradcam"
    z = np.array(app.main.data[2].z, dtype=float)
    assert app.layer.value == 0 and np.abs(z).max() > 0
    np.testing.assert_allclose(z, al.gradcam[0, app.word], rtol=1e-6)
    assert "zero by construction" in app.layer_note.value and "showing layer 0" in app.layer_note.value
    assert "layer 0" in app.main.layout.annotations[1].text
    app.layer.value = 1  # asked for explicitly: the blank map, and why it is blank
    assert np.abs(np.array(app.main.data[2].z, dtype=float)).max() == 0
    assert "last cross layer (1) is zero by construction" in app.layer_note.value
    app.method.value = "attention"
    assert app.layer.value == 1 and app.layer_note.value == ""
    app.live.cancel()


# ---------------------------------------------------------------------------------------------- IG, known answers
class ToyAdapter(FusionAdapter):
    """A score known in closed form: ``s(x, e) = ⟨a, x⟩ + Σ_j ⟨e_j, b⟩ + Σ_j (e_j·v)(x·U_j)`` over normalised pixels
    ``x (3, 12, 12)`` (patch 4: a 3×3 grid) and token embeddings ``e_j`` (``[CLS]`` then one token per word).
    For word k at position p, ``F(x) = s(x, e) − s(x, e with e_p blanked)`` is linear in x: ``∇F = c_p·U_p``."""

    kind = "cross-attention"
    VOCAB = ("[MASK]", "[CLS]", *"a red circle left of the blue square".split())

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        m = torch.nn.Module()
        m.emb = torch.nn.Embedding(len(self.VOCAB), 6)
        with torch.no_grad():
            m.emb.weight.copy_(torch.randn(len(self.VOCAB), 6, generator=g))
        m.a, m.b, m.v = torch.randn(3, 12, 12, generator=g), torch.randn(6, generator=g), torch.randn(6, generator=g)
        m.U = torch.randn(16, 3, 12, 12, generator=g)
        super().__init__(m, model_id="toy", model_type="toy", image_size=12, patch_size=4, image_mean=(0.5, 0.4, 0.3),
                         image_std=(0.25, 0.2, 0.3), num_image_tokens=9, patch_index=torch.arange(9), max_text_tokens=16,
                         device="cpu", dtype=torch.float32)

    def tokenize(self, text: str) -> TextInput:
        words = text.split()
        ids = torch.tensor([[1] + [self.VOCAB.index(w) for w in words]])
        return TextInput(text, ids, torch.ones_like(ids), ["[CLS]", *words], list(range(1, len(words) + 1)))

    def blank_text(self, text: TextInput, positions=None) -> TextInput:
        ids = text.ids.clone()
        ids[0, list(text.words if positions is None else positions)] = 0
        return TextInput(text.text, ids, text.attention_mask, list(text.tokens), list(text.words))

    @property
    def text_embeddings(self):
        return self.model.emb

    def score(self, pixels, text, *, text_embeds=None):
        m = self.model
        e = self.text_embeddings(text.ids) if text_embeds is None else text_embeds
        T = e.shape[1]
        xa = (pixels * m.a).sum((1, 2, 3))
        eb = (e @ m.b).sum(-1)
        bil = ((e @ m.v) * torch.einsum("bchw,tchw->bt", pixels, m.U[:T])).sum(-1)
        return xa + eb + bil


def _per_patch(a: np.ndarray, p: int = 4) -> np.ndarray:
    """``(3, H, W)`` → ``(H/p, W/p)``: summed over channels and each patch's pixels."""
    c, H, W = a.shape
    return a.sum(0).reshape(H // p, p, W // p, p).sum((1, 3))


@pytest.fixture(scope="module")
def toy():
    a = ToyAdapter()
    img = np.random.default_rng(3).random((12, 12, 3)).astype(np.float32)
    x = ((img - np.array([0.5, 0.4, 0.3])) / np.array([0.25, 0.2, 0.3])).transpose(2, 0, 1)  # (3, 12, 12), float64
    with torch.no_grad():
        t = a.tokenize(TEXT)
        e = a.embed_text(t)[0].double().numpy()
        e0 = a.embed_text(a.blank_text(t))[0].double().numpy()
    P = {k: getattr(a.model, k).double().numpy() for k in ("a", "b", "v", "U")}
    return a, img, x, e, e0, P


def _word_gradient(toy, word: int) -> np.ndarray:
    """``∇_x F`` of word ``word``: ``((e_p − e0_p)·v) U_p`` with ``p = word + 1``."""
    _a, _img, _x, e, e0, P = toy
    p = word + 1
    return ((e[p] - e0[p]) @ P["v"]) * P["U"][p]


@pytest.mark.parametrize("word", [1, 6])
def test_word_ig_is_the_per_patch_sum_of_x_times_the_known_gradient(toy, word):
    a, img, x, *_ = toy
    want = _per_patch(x * _word_gradient(toy, word))
    assert not np.allclose(want, want.T, atol=1e-3)  # a transposed map would fail
    got = word_ig(a, img, TEXT, word, steps=4)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    other = _per_patch(x * _word_gradient(toy, 7 - word))
    assert not np.allclose(got, other, atol=1e-2)  # another word's map differs


@pytest.mark.parametrize("method, times_x", [("saliency", False), ("occlusion", True), ("gradient-shap", True),
                                             ("smoothgrad", False)])
def test_captum_word_methods_on_the_known_gradient(toy, method, times_x):
    """Linear F: saliency and SmoothGrad = the gradient; occlusion (patch windows, blank baseline) and GradientSHAP
    from the blank image = x ⊙ gradient, per patch."""
    a, img, x, *_ = toy
    g = _word_gradient(toy, 2)
    want = _per_patch(x * g if times_x else g)
    got = word_attribution(a, img, TEXT, 2, method, samples=4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_modality_report_on_a_bilinear_score_is_known_in_closed_form(toy):
    """Straight joint path from (blank image, blank words) to (x, e): IG of the bilinear term splits as
    ``x⊙U_j·(Q_j + Q0_j)/2`` and ``v⊙(e_j − e0_j)·P_j/2`` (``P_j = x·U_j``, ``Q = e·v``), exactly; Shapley by hand."""
    a, img, x, e, e0, P = toy
    rep = modality_report(a, img, TEXT, steps=4)
    T = e.shape[0]
    Pj = np.einsum("chw,tchw->t", x, P["U"][:T])
    Q, Q0 = e @ P["v"], e0 @ P["v"]

    def s(xx, ee):
        return float((xx * P["a"]).sum() + (ee @ P["b"]).sum() + ((ee @ P["v"]) * np.einsum("chw,tchw->t", xx, P["U"][:T])).sum())

    zero = np.zeros_like(x)
    full, no_img, no_txt, none = s(x, e), s(zero, e), s(x, e0), s(zero, e0)
    assert rep.score == pytest.approx(full, rel=1e-5, abs=1e-5)
    assert rep.masked == pytest.approx({"image": no_img, "text": no_txt, "both": none}, rel=1e-5, abs=1e-5)
    assert rep.shapley["image"] == pytest.approx(0.5 * ((full - no_img) + (no_txt - none)), rel=1e-5, abs=1e-5)
    assert rep.shapley["text"] == pytest.approx(0.5 * ((full - no_txt) + (no_img - none)), rel=1e-5, abs=1e-5)
    ai = x * P["a"] + np.einsum("t,tchw->chw", (Q + Q0) / 2, P["U"][:T]) * x
    at = (e - e0) * P["b"] + (e - e0) * P["v"] * (Pj / 2)[:, None]
    np.testing.assert_allclose(rep.patch_attribution, _per_patch(ai), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rep.word_attribution, at.sum(-1)[1:], rtol=1e-4, atol=1e-4)  # words: positions 1..W
    assert rep.ig_image == pytest.approx(ai.sum(), rel=1e-4, abs=1e-4)
    assert rep.ig_text == pytest.approx(at.sum(), rel=1e-4, abs=1e-4)
    assert rep.ig_delta < 1e-3 and rep.ig_image + rep.ig_text == pytest.approx(full - none, rel=1e-4, abs=1e-4)
    assert abs(at[0]).max() == 0  # [CLS] is never blanked: no attribution


def test_blip_word_ig_equals_captum_on_the_eager_reference_per_patch(blip, folders, image):
    """captum IG over the pixels of the eager reference, F = s(x, text) − s(x, text with the word → [MASK]), from the
    zero (mean-colour) image, summed per patch by hand; explorer's word_ig must agree patch by patch."""
    from captum.attr import IntegratedGradients
    from transformers import BertTokenizer

    ref, ids, word = blip["ref"], blip["ids"], 2
    masked = ids.clone()
    masked[0, word + 1] = BertTokenizer.from_pretrained(folders["blip"]).mask_token_id

    def s(x, i):
        out = ref(input_ids=i.expand(x.shape[0], -1), pixel_values=x, attention_mask=torch.ones_like(i).expand(x.shape[0], -1),
                  use_itm_head=True).itm_score
        return out[:, 1] - out[:, 0]

    x = _pixels(folders["blip"], image)
    attr = IntegratedGradients(lambda x: s(x, ids) - s(x, masked)).attribute(x, baselines=torch.zeros_like(x), n_steps=8,
                                                                               internal_batch_size=8)
    want = _per_patch(attr[0].detach().double().numpy(), p=8)
    got = word_ig(blip["adapter"], image, TEXT, word, steps=8)
    assert np.abs(want).max() > 1e-4 and not np.allclose(want, want.T, atol=1e-4)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_layer_notes_in_full_for_each_pattern_of_blank_layers(blip):
    """The note's words for every case: the default moved off a blank last layer, a blank layer asked for (the last
    one, or an earlier one), every layer blank, and an earlier blank layer while the last one has a map."""
    import dataclasses

    al = blip["al"]
    short = al.method("gradcam").short
    why = ("the score reads no word's row after that layer (only special tokens such as [CLS]), so the words' "
           "attention there gets no gradient")
    assert al.zero_layers == {"gradcam": (1,)}
    assert al.layer_note("gradcam") == f"{short} at the last cross layer (1) is zero by construction for this model: {why}; showing layer 0."
    assert al.layer_note("gradcam", 0) == al.layer_note("gradcam")  # the default layer, chosen by hand: same words
    assert al.layer_note("gradcam", 1) == (f"{short} at the last cross layer (1) is zero by construction for this model: {why}; "
                                          "layer 0 is the last layer with a non-zero map.")
    both = dataclasses.replace(al, zero_layers={"gradcam": (0, 1)})
    assert both.default_layer_index("gradcam") == 1  # every layer blank: the last one
    assert both.layer_note("gradcam", 0) == (f"{short} at cross layer 0 (0) is zero by construction for this model: {why}; "
                                            "no layer has a non-zero map.")
    first = dataclasses.replace(al, zero_layers={"gradcam": (0,)})
    assert first.default_layer_index("gradcam") == 1 and first.layer_note("gradcam") is None
    assert first.layer_note("gradcam", 0) == (f"{short} at cross layer 0 (0) is zero by construction for this model: {why}; "
                                             "layer 1 is the last layer with a non-zero map.")


def test_describe_names_the_layer_asked_for_not_the_default(blip):
    al = blip["al"]
    m = al.method("gradcam")
    assert al.describe("gradcam") == m.describe(layer=0)  # the default moved off the blank last layer
    assert al.describe("gradcam", layer=1) == m.describe(layer=1) != m.describe(layer=0)


def test_patch_words_defaults_to_the_mean_of_heads_and_computes_on_demand_maps_with_the_adapter(blip):
    al, adapter = blip["al"], blip["adapter"]
    W = len(al.words)
    by_hand = np.array([al.word_map("attention", w, layer=1, head="mean").ravel()[5] for w in range(W)])
    np.testing.assert_array_equal(al.patch_words("attention", 5, layer=1), by_hand)
    assert al.has("attention", 0) and al.has("rollout", W - 1) and not al.has("ig", 0, steps=4)
    v = al.patch_words("ig", 5, adapter=adapter, steps=4)
    assert np.isfinite(v).all() and all(al.has("ig", w, steps=4) for w in range(W))
    np.testing.assert_array_equal(v, [al.word_map("ig", w, steps=4).ravel()[5] for w in range(W)])


def test_word_map_reads_the_layer_and_head_asked_for(blip):
    al = blip["al"]
    stack = al.layered["attention"]  # (layers, heads, words, gh, gw)
    assert al.method("attention").default_layer == "mean" and al.method("gradcam").default_layer != "mean"
    np.testing.assert_allclose(al.word_map("attention", 2, head=1), stack[:, 1, 2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(al.word_map("attention", 2, layer=0), stack[0, :, 2].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(al.word_map("attention", 2, layer=1, head=0), stack[1, 0, 2])
    np.testing.assert_array_equal(al.word_map("gradcam", 2, head=1), al.gradcam[0, 2])  # no heads: the default layer
    W = len(al.words)
    with pytest.raises(IndexError) as e:
        al.word_map("attention", W)
    assert str(e.value) == f"word {W} out of range: the text has {W} clickable words"
    with pytest.raises(IndexError):
        al.word_map("attention", -1)


def test_a_dual_encoder_is_told_to_use_similarity(tmp_path, image):
    from _tiny import save_tiny_clip_pair

    al = align(load_fusion_model(save_tiny_clip_pair(tmp_path / "clip"), device="cpu"), image, TEXT)
    offered = ", ".join(al.offered)
    with pytest.raises(KeyError) as e:
        al.word_map("attention", 0)
    assert e.value.args[0] == (f"Method 'attention' is not available for this model (dual encoder): use 'similarity'; "
                               f"available: {offered}.")
    with pytest.raises(KeyError) as e:
        al.word_map("rollout", 0)
    assert e.value.args[0] == f"Method 'rollout' is not available for this model; available: {offered}."


def test_the_alignment_records_what_made_it_and_its_default_maps(blip, vilt):
    for d in (blip, vilt):
        al, a = d["al"], d["adapter"]
        assert al.meta == {"model_id": a.model_id, "model_type": a.model_type, "weights_sha256": a.weights_sha256,
                           "text": TEXT, "kind": a.kind}
        assert al.output_name == a.output_name and al.answer
        assert len(al.layer_names) == al.layered["attention"].shape[0] and all(isinstance(n, str) for n in al.layer_names)
        assert al.matrix_name == "cross-attention, mean over layers and heads"
        np.testing.assert_allclose(al.maps["attention"], al.layered["attention"].mean((0, 1)), rtol=1e-6)
        np.testing.assert_allclose(al.matrix, al.maps["attention"].reshape(len(al.words), -1), rtol=1e-6)
    assert blip["al"].layer_names == ["text_encoder.encoder.layer.0.crossattention.self",
                                      "text_encoder.encoder.layer.1.crossattention.self"]
    assert blip["al"].output_name == "ITM match log-odds" and vilt["al"].output_name == "answer logit"


def test_the_fit_policy_reaches_the_pixels(folders):
    a = load_fusion_model(folders["blip"], device="cpu")
    wide = random_image(S, seed=9)[:, : S // 2].repeat(3, axis=1)  # not square: crop and pad differ
    crop, pad = align(a, wide, TEXT), align(a, wide, TEXT, fit="pad")
    assert crop.image.shape == pad.image.shape and not np.array_equal(crop.image, pad.image)


def test_vqa_explains_each_images_own_top_answer(folders):
    """The answer explained is chosen again for every input (a later image must not inherit the earlier answer)."""
    a = load_fusion_model(folders["vilt"], device="cpu")
    first = align(a, random_image(S, seed=0), TEXT)
    for seed in range(1, 40):
        other = random_image(S, seed=seed)
        b = load_fusion_model(folders["vilt"], device="cpu")
        assert b is not a and getattr(b, "_auto_target", None) is None
        fresh = align(b, other, TEXT)  # an adapter that never saw the first image
        if fresh.answer != first.answer:
            break
    else:
        pytest.skip("no image with another top answer among 40 seeds")
    al = align(a, other, TEXT)
    assert al.answer == fresh.answer and al.score == pytest.approx(fresh.score, rel=1e-5)
