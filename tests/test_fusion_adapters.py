"""The transformers image+text adapters (CLIP, BLIP ITM, ViLT) against transformers' own forward, on tiny
random-weight checkpoints written by save_pretrained (model + tokenizer + image processor) and loaded
through the registry."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from _tiny import (TINY_ANSWERS, eager_reference, random_image, save_tiny_blip_itm, save_tiny_clip, save_tiny_clip_pair,
                   save_tiny_mae, save_tiny_vilt_vqa)
from explorer.attention import AttentionCapture
from explorer.models.fusion_base import FusionInputError
from explorer.models.blip import BlipITMAdapter
from explorer.models.fusion_clip import CLIPFusionAdapter
from explorer.models.fusion_registry import FUSION_ADAPTERS, load_fusion_model
from explorer.models.vilt import ViltAdapter
from explorer.models.registry import ModelLoadError

TEXT = "a red circle left of the blue square"
FAMILIES = ("clip", "blip", "vilt")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    return {"clip": save_tiny_clip_pair(root / "clip"), "blip": save_tiny_blip_itm(root / "blip"),
            "vilt": save_tiny_vilt_vqa(root / "vilt"), "vilt-retrieval": save_tiny_vilt_vqa(root / "vilt-r", retrieval=True)}


@pytest.fixture(scope="module")
def adapters(folders):
    return {k: load_fusion_model(v, device="cpu") for k, v in folders.items()}


def _pixels(adapter, n: int = 2) -> torch.Tensor:
    return torch.cat([adapter.normalise(random_image(adapter.image_size, seed=s)) for s in range(n)])


def _offline(monkeypatch):
    """Offline for real: huggingface_hub reads $HF_HUB_OFFLINE once, at import."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _capture(adapter, pixels, text):
    with torch.no_grad(), AttentionCapture(adapter.capture_root, keep=True) as cap:
        adapter.score(pixels, text)
    return cap


# ---------------------------------------------------------------------------------------------- scores
def test_clip_score_is_logits_per_image(adapters, folders):
    a = adapters["clip"]
    ref = eager_reference(folders["clip"], "CLIPModel")
    x, t = _pixels(a), a.tokenize(TEXT)
    with torch.no_grad():
        want = ref(input_ids=t.ids, pixel_values=x, attention_mask=t.attention_mask).logits_per_image[:, 0]
        got = a.score(x, t)
    assert got.shape == (2,) and torch.allclose(got, want, atol=1e-5)
    assert abs(float(got[0] - got[1])) > 1e-3  # two images, two scores
    assert a.kind == "dual-encoder" and a.output_name == "cosine similarity × logit scale"


def test_blip_score_is_the_itm_log_odds(adapters, folders):
    a = adapters["blip"]
    ref = eager_reference(folders["blip"], "BlipForImageTextRetrieval")
    x, t = _pixels(a), a.tokenize(TEXT)
    with torch.no_grad():
        itm = ref(input_ids=t.ids.expand(2, -1), pixel_values=x, attention_mask=t.attention_mask.expand(2, -1),
                  use_itm_head=True).itm_score
        got = a.score(x, t)
    assert torch.allclose(got, itm[:, 1] - itm[:, 0], atol=1e-5)
    assert a.kind == "cross-attention"
    p = float(torch.softmax(itm[0], -1)[1])
    assert f"p = {p:.2f}" in a.answer(x, t)


def test_vilt_score_is_the_target_answer_logit(adapters, folders):
    a = adapters["vilt"]
    ref = eager_reference(folders["vilt"], "ViltForQuestionAnswering")
    x, t = _pixels(a), a.tokenize("what colour is the circle ?")
    S = a.image_size
    with torch.no_grad():  # transformers' own path: pixels + a pixel-level mask (its patch order is random)
        logits = ref(input_ids=t.ids.expand(2, -1), attention_mask=t.attention_mask.expand(2, -1), pixel_values=x,
                     pixel_mask=torch.ones(2, S, S, dtype=torch.long)).logits
        a.target = None
        a.set_target(x, t)
        top = int(logits[0].argmax())
        assert a.current_target == top
        assert torch.allclose(a.score(x, t), logits[:, top], atol=1e-5)
        a.target = 3
        assert torch.allclose(a.score(x, t), logits[:, 3], atol=1e-5)
        msg = a.answer(x, t)
        a.target = None
    p = float(torch.sigmoid(logits[0, top]))
    assert msg.startswith(f"answer: {TINY_ANSWERS[top]} (p = {p:.2f})")
    if top != 3:
        assert f"explaining '{TINY_ANSWERS[3]}'" in msg
    assert a.kind == "single-stream" and a.output_name == "answer logit"


def test_vilt_retrieval_score_is_its_match_logit(adapters, folders):
    a = adapters["vilt-retrieval"]
    ref = eager_reference(folders["vilt-retrieval"], "ViltForImageAndTextRetrieval")
    x, t = _pixels(a), a.tokenize(TEXT)
    with torch.no_grad():
        want = ref(input_ids=t.ids.expand(2, -1), pixel_values=x).logits[:, 0]
        assert torch.allclose(a.score(x, t), want, atol=1e-5)
    assert a.output_name == "match logit"


# ---------------------------------------------------------------------------------------------- attention
def _grouped(cap, adapter, text):
    out: dict[tuple, list] = {}
    for c in cap.calls:
        r = adapter.role(c, text)
        assert r is not None, c.name
        assert r.q_pos.shape == (c.probs.shape[-2],) and r.k_pos.shape == (c.probs.shape[-1],)
        out.setdefault((r.query, r.key), []).append(c.probs)
    return out


def _same(captured: list, reference, atol=1e-5):
    assert len(captured) == len(reference)
    for got, want in zip(captured, reference):
        assert got.shape == want.shape
        assert torch.allclose(got, want.float(), atol=atol)


def test_clip_capture_equals_eager_attentions(adapters, folders):
    a = adapters["clip"]
    ref = eager_reference(folders["clip"], "CLIPModel")
    x, t = _pixels(a, 1), a.tokenize(TEXT)
    g = _grouped(_capture(a, x, t), a, t)
    with torch.no_grad():
        out = ref(input_ids=t.ids, pixel_values=x, attention_mask=t.attention_mask, output_attentions=True)
    _same(g[("image", "image")], out.vision_model_output.attentions)
    _same(g[("text", "text")], out.text_model_output.attentions)
    assert g[("image", "image")][0].shape[-1] == a.num_image_tokens == 1 + a.num_patches
    assert g[("text", "text")][0].shape[-1] == len(t.tokens)
    assert g[("text", "text")][0][0, :, 0, 1:].abs().max() == 0  # causal text tower


def test_blip_capture_sees_self_and_cross_attention_as_eager_blip_computes_it(adapters, folders):
    a = adapters["blip"]
    ref = eager_reference(folders["blip"], "BlipForImageTextRetrieval")
    x, t = _pixels(a, 1), a.tokenize(TEXT)
    cap = _capture(a, x, t)
    g = _grouped(cap, a, t)
    assert set(g) == {("image", "image"), ("text", "text"), ("text", "image")}
    with torch.no_grad():
        vis = ref.vision_model(pixel_values=x, output_attentions=True)
        txt = ref.text_encoder(input_ids=t.ids, attention_mask=t.attention_mask, encoder_hidden_states=vis.last_hidden_state,
                               encoder_attention_mask=torch.ones(vis.last_hidden_state.shape[:2], dtype=torch.long),
                               output_attentions=True)
    _same(g[("image", "image")], vis.attentions)
    _same(g[("text", "text")], txt.attentions)
    _same(g[("text", "image")], txt.cross_attentions)
    T, N = len(t.tokens), a.num_image_tokens
    assert all(p.shape[-2:] == (T, N) for p in g[("text", "image")])
    assert N == 1 + a.num_patches and a.patch_index.tolist() == list(range(1, N))


def test_vilt_capture_equals_eager_joint_attention_with_patches_in_order(adapters, folders, monkeypatch):
    a = adapters["vilt"]
    ref = eager_reference(folders["vilt"], "ViltForQuestionAnswering")
    x, t = _pixels(a, 1), a.tokenize(TEXT)
    a.set_target(x, t)
    cap = _capture(a, x, t)
    g = _grouped(cap, a, t)
    assert set(g) == {("joint", "joint")}
    lay = a.joint_layout(t)
    T, N = len(t.tokens), a.num_image_tokens
    assert lay.text.tolist() == list(range(T)) and lay.image.tolist() == list(range(T, T + N))
    real = torch.multinomial

    def in_order(inp, num_samples, replacement=False, **kw):  # ViLT's patch shuffle, made the identity
        assert not replacement and num_samples == inp.numel()
        return torch.arange(num_samples)

    monkeypatch.setattr(torch, "multinomial", in_order)
    with torch.no_grad():
        out = ref(input_ids=t.ids, attention_mask=t.attention_mask, pixel_values=x,
                  pixel_mask=torch.ones(1, a.image_size, a.image_size, dtype=torch.long), output_attentions=True)
    monkeypatch.setattr(torch, "multinomial", real)
    _same(g[("joint", "joint")], out.attentions)
    assert g[("joint", "joint")][0].shape[-1] == T + N


def test_capture_records_gradients_through_the_rebound_attention(adapters):
    """BLIP / ViLT attention now runs through SDPA: the capture's backward hooks fire for every call."""
    for k in ("blip", "vilt"):
        a = adapters[k]
        x, t = _pixels(a, 1), a.tokenize(TEXT)
        a.set_target(x, t)
        grads = []
        with AttentionCapture(a.capture_root, gradients=True, on_backward=grads.append) as cap:
            a.score(x, t).sum().backward()
        a.model.zero_grad(set_to_none=True)
        assert cap.count == len(grads) > 0 and all(g.grad.shape == g.probs.shape for g in grads)


# ---------------------------------------------------------------------------------------------- CLIP token embeddings
def test_clip_filip_token_embeddings_match_the_pooled_features(adapters, folders):
    a = adapters["clip"]
    ref = eager_reference(folders["clip"], "CLIPModel")
    x, t = _pixels(a, 1), a.tokenize(TEXT)
    with torch.no_grad():
        patches, tokens = a.token_embeddings(x, t)
        every = a.image_token_embeddings(x)
        img = ref.get_image_features(pixel_values=x).pooler_output[0]
        txt = ref.get_text_features(input_ids=t.ids, attention_mask=t.attention_mask).pooler_output[0]
    P = img.shape[0]
    assert patches.shape == (a.num_patches, P) and tokens.shape == (len(t.tokens), P)
    assert torch.allclose(patches.norm(dim=-1), torch.ones(a.num_patches), atol=1e-5)
    assert torch.allclose(tokens.norm(dim=-1), torch.ones(len(t.tokens)), atol=1e-5)
    assert torch.allclose(every[0], img / img.norm(), atol=1e-5)  # the CLS row = get_image_features
    assert torch.allclose(every[1:], patches, atol=1e-6)
    eos = t.tokens.index(a.tokenizer.eos_token)
    assert eos == len(t.tokens) - 1
    assert torch.allclose(tokens[eos], txt / txt.norm(), atol=1e-5)  # the end-token row = get_text_features
    assert (patches @ patches.T).std() > 1e-3  # patches differ


# ---------------------------------------------------------------------------------------------- tokenisation
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(adapters, family, text):
    with pytest.raises(FusionInputError, match="empty"):
        adapters[family].tokenize(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_long_text_is_truncated_and_the_note_counts_the_dropped_tokens(adapters, family):
    a = adapters[family]
    text = " ".join(["the small red circle is left of the big blue square"] * 3)
    n_full = len(a.tokenizer(text, verbose=False)["input_ids"])  # independent count, specials included
    t = a.tokenize(text)
    assert t.truncated and len(t.tokens) == a.max_text_tokens == 16 == t.ids.shape[1]
    assert n_full > 16
    assert any(f"last {n_full - 16} token(s) were dropped" in n for n in t.notes), t.notes
    assert t.ids[0, -1] == a.tokenizer.sep_token_id if family != "clip" else t.ids[0, -1] == a.tokenizer.eos_token_id
    short = a.tokenize(TEXT)
    assert not short.truncated and not short.notes


@pytest.mark.parametrize("family", FAMILIES)
def test_emoji_and_unknown_characters_are_reported(adapters, family):
    a = adapters[family]
    t = a.tokenize("a red 🙂 circle")
    assert any("🙂" in n for n in t.notes), t.notes
    if family == "clip":  # byte-level BPE: never unknown, but split into byte pieces
        assert any("byte pieces" in n for n in t.notes)
    else:
        assert any("[UNK]" in n for n in t.notes) and "[UNK]" in t.tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_tokens_words_and_blank_text(adapters, family):
    a = adapters[family]
    x, t = _pixels(a, 1), a.tokenize(TEXT)
    a.set_target(x, t)
    assert [t.tokens[p] for p in t.words] == TEXT.split()  # display strings without "</w>", no specials
    assert 0 not in t.words and len(t.tokens) - 1 not in t.words
    b = a.blank_text(t)
    assert b.ids.shape == t.ids.shape and b.words == t.words
    bid, shown = a.blank_token()
    assert (b.ids[0, t.words] == bid).all() and b.ids[0, 0] == t.ids[0, 0] and b.ids[0, -1] == t.ids[0, -1]
    if family == "clip":  # no mask token, and unk / pad are the end token that pools the sentence
        assert bid not in (a.tokenizer.eos_token_id, a.tokenizer.bos_token_id) and shown == "!"
    else:
        assert shown == "[MASK]"
    one = a.blank_text(t, [t.words[1]])
    assert (one.ids != t.ids).sum() == 1
    with torch.no_grad():
        s, sb = float(a.score(x, t)[0]), float(a.score(x, b)[0])
    assert abs(s - sb) > 1e-3
    with pytest.raises(FusionInputError):
        a.blank_text(t, [0])


# ---------------------------------------------------------------------------------------------- text_embeds + captum
@pytest.mark.parametrize("family", FAMILIES)
def test_text_embeds_path_and_layer_integrated_gradients_are_complete(adapters, family):
    from captum.attr import LayerIntegratedGradients

    a = adapters[family]
    x, t = _pixels(a, 1), a.tokenize(TEXT)
    a.set_target(x, t)
    e = a.embed_text(t)
    assert e.shape == (1, len(t.tokens), a.text_embeddings.embedding_dim)
    with torch.no_grad():
        s = a.score(x, t)
        assert torch.allclose(a.score(x, t, text_embeds=e), s, atol=1e-6)
        e2 = e + 0.3 * torch.randn_like(e)
        assert not torch.allclose(a.score(x, t, text_embeds=e2), s, atol=1e-4)  # the replacement is used
    with pytest.raises(FusionInputError, match="shape"):
        a.score(x, t, text_embeds=e[:, :-1])

    def f(ids):  # the score as a function of token ids; captum swaps the embedding output along the path
        return a.score(x, dataclasses.replace(t, ids=ids, attention_mask=torch.ones_like(ids)))

    blank = a.blank_text(t)
    lig = LayerIntegratedGradients(f, a.text_embeddings)
    attr = lig.attribute(t.ids, baselines=blank.ids, n_steps=32, internal_batch_size=32)
    with torch.no_grad():
        gap = float(f(t.ids)[0] - f(blank.ids)[0])
    assert attr.shape == e.shape
    assert abs(gap) > 1e-3
    assert abs(float(attr.sum()) - gap) <= 0.05 * abs(gap), (float(attr.sum()), gap)


# ---------------------------------------------------------------------------------------------- with the alignment code
@pytest.mark.parametrize("family", FAMILIES)
def test_align_builds_word_maps_for_each_family(adapters, family):
    from explorer.fusion import align

    a = adapters[family]
    al = align(a, random_image(48, seed=5), TEXT)
    W = len(TEXT.split())
    assert len(al.words) == W and al.grid == (4, 4)
    if family == "clip":
        assert al.attention is None and al.maps["similarity"].shape == (W, 4, 4)
        x, t = a.normalise(al.image), a.tokenize(TEXT)
        with torch.no_grad():  # the one-pass alignment path agrees with the adapter's own score and FILIP embeddings
            assert al.score == pytest.approx(float(a.score(x, t)[0]), abs=1e-4)
            patches, tokens = a.token_embeddings(x, t)
        np.testing.assert_allclose(al.matrix, (tokens[t.words] @ patches.T).numpy(), atol=1e-5)
    else:  # 2 cross-modal layers (BLIP cross-attention / ViLT joint), 4 heads, W words × 4×4 patches
        assert al.attention.shape == (2, 4, W, 4, 4)
        assert {"rollout", "relevance", "gradcam"} <= set(al.maps) and all(np.isfinite(m).all() for m in al.maps.values())
        mass = al.attention.sum((-1, -2))  # each word's attention on the patches: part of one probability row
        assert al.attention.min() >= 0 and (mass > 0).all() and (mass <= 1 + 1e-5).all()


# ---------------------------------------------------------------------------------------------- registry
def test_registry_loads_each_folder_with_its_processor_normalisation(adapters, folders):
    assert set(FUSION_ADAPTERS) == {"mini_fusion", "clip", "blip", "vilt"}
    assert isinstance(adapters["clip"], CLIPFusionAdapter)
    assert isinstance(adapters["blip"], BlipITMAdapter)
    assert isinstance(adapters["vilt"], ViltAdapter) and adapters["vilt"].vqa
    assert not adapters["vilt-retrieval"].vqa
    for k, a in adapters.items():
        pp = json.loads((folders[k] / "preprocessor_config.json").read_text())
        assert torch.allclose(a._mean.flatten(), torch.tensor(pp["image_mean"]))
        assert torch.allclose(a._std.flatten(), torch.tensor(pp["image_std"]))
        assert a.model_id == str(folders[k]) and a.image_size == 32 and a.grid == (4, 4)
        assert len(a.weights_sha256) == 64
    assert adapters["vilt"]._mean.flatten().tolist() == [0.5] * 3


def test_registry_refuses_image_only_and_unknown_models(tmp_path, monkeypatch):
    save_tiny_mae(tmp_path / "mae")
    with pytest.raises(ModelLoadError, match="image-only model") as e:
        load_fusion_model(tmp_path / "mae", device="cpu")
    msg = str(e.value)
    assert "'vit_mae'" in msg and "no text input" in msg and "clip" in msg and "vilt" in msg
    with pytest.raises(ModelLoadError, match="Unknown model 'not-a-model'"):
        load_fusion_model("not-a-model")
    save_tiny_clip(tmp_path / "clip-without-tokenizer")  # transformers 5 would make an empty tokenizer of it
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_fusion_model(tmp_path / "clip-without-tokenizer", device="cpu")
    _offline(monkeypatch)
    with pytest.raises(ModelLoadError, match="hub") as e:
        load_fusion_model("openai/clip-vit-base-patch16", cache_dir=tmp_path / "empty-cache")
    assert "local-dir" in str(e.value)


def test_registry_loads_a_hub_id_from_a_hub_cache_offline(tmp_path, folders, monkeypatch):
    """A hub id goes through from_pretrained(id) (model and tokenizer); served here from a hub-layout cache."""
    _offline(monkeypatch)
    repo = tmp_path / "models--test-org--tiny-clip"
    commit = "0" * 40
    snap = repo / "snapshots" / commit
    shutil.copytree(folders["clip"], snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    a = load_fusion_model("test-org/tiny-clip", device="cpu", cache_dir=tmp_path)
    assert isinstance(a, CLIPFusionAdapter) and a.model_id == "test-org/tiny-clip"
    assert a._mean.flatten()[0] == pytest.approx(0.48145466)


# ---------------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("family", ["blip", "clip"])
def test_word_maps_export_reproduces_with_a_hub_class_model(adapters, family, tmp_path):
    """The sidecar names the model as an image+text one, so `reproduce` reloads it with the fusion registry."""
    from explorer.export import export_recipe, read_sidecar, reproduce

    method = "relevance" if family == "blip" else "similarity"
    res = export_recipe("word_maps", tmp_path / f"{family}-words", model=adapters[family], inputs=[random_image(48, seed=2)],
                        options=dict(text=TEXT, method=method), formats=["png"])
    side = read_sidecar(res.files["json"])
    assert side["provenance"]["model"]["family"] == "fusion" and side["provenance"]["model"]["model_type"] == family
    rep = reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()
