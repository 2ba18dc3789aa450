"""What each image+text adapter answers, read against the transformers modules (or our mini model) it wraps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.models import registry as R
from explorer.models.fusion_base import FusionInputError

from _tiny import eager_reference, random_image, save_tiny_clip_pair


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


# ---------------------------------------------------------------------------------------------- the mini fusion adapter


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from _tiny import save_tiny_mini_fusion

    folder = save_tiny_mini_fusion(tmp_path_factory.mktemp("mf") / "tiny-fusion", seed=2)
    return R.load_fusion_model(folder, device="cpu"), folder


def test_mini_fusion_geometry_and_identity(mini):
    from explorer.models.fusion_mini import MiniFusionAdapter

    ad, folder = mini
    c = ad.config
    g = c.image_size // c.patch_size
    assert (ad.image_size, ad.patch_size, ad.grid, ad.num_patches, ad.num_image_tokens) == (c.image_size, c.patch_size,
                                                                                            (g, g), g * g, g * g)
    assert ad.patch_index.tolist() == list(range(g * g)) and ad.max_text_tokens == c.max_words + 1
    assert ad.model_id == str(folder) and ad.model_type == "mini_fusion" and ad.kind == "cross-attention"
    torch.testing.assert_close(ad._mean.flatten(), torch.tensor(c.image_mean))
    torch.testing.assert_close(ad._std.flatten(), torch.tensor(c.image_std))
    assert MiniFusionAdapter.from_folder(folder).model_id == "tiny-fusion"
    assert MiniFusionAdapter.from_folder(folder, model_id="x").weights_sha256 == ad.weights_sha256
    info = ad.info
    assert (info.family, info.model_type, info.image_size, info.patch_size) == ("fusion", "mini_fusion", c.image_size,
                                                                                c.patch_size)


def test_mini_fusion_tokenizes_words_with_notes(mini):
    ad, _ = mini
    vocab = ad.config.vocab
    w1, w2 = vocab[2], vocab[3]  # 0: [none], 1: [unk]
    t = ad.tokenize(f"  {w1.upper()}\u00a0{w2} zzzq zzzq  ")  # NFKC turns the no-break space into a space
    assert t.tokens == ["[none]", w1, w2, "zzzq", "zzzq"] and t.words == [1, 2, 3, 4]
    assert t.ids.tolist() == [[0, 2, 3, 1, 1]] and t.attention_mask.tolist() == [[1] * 5]
    assert t.notes == [f"2 word(s) are not in the model's {len(vocab) - 2}-word vocabulary and read as [unk]: zzzq."]
    assert not t.truncated
    n = ad.config.max_words
    long = ad.tokenize(" ".join([w1] * (n + 2)))
    assert long.truncated and len(long.tokens) == n + 1
    assert long.notes == [f"The text has {n + 2} words; this model reads at most {n}, so the last 2 ({w1} {w1}) were dropped."]
    with pytest.raises(FusionInputError) as e:
        ad.tokenize(" \t ")
    assert str(e.value) == "The text is empty: type a caption or a question (e.g. 'a red circle left of a blue square')."
    with pytest.raises(FusionInputError) as e:
        ad.tokenize(3)
    assert str(e.value) == "The text must be a string, got int."


def test_mini_fusion_blanks_words_and_replaces_one(mini):
    ad, _ = mini
    vocab = ad.config.vocab
    t = ad.tokenize(f"{vocab[2]} {vocab[3]} {vocab[4]}")
    b = ad.blank_text(t)
    assert b.ids.tolist() == [[0, 1, 1, 1]] and b.tokens == ["[none]", "[unk]", "[unk]", "[unk]"]
    assert b.notes == ["3 word(s) masked as [unk]"] and b.words == t.words and b.text == t.text
    one = ad.blank_text(t, [2])
    assert one.ids.tolist() == [[0, 2, 1, 4]] and one.notes == ["1 word(s) masked as [unk]"]
    assert t.ids.tolist() == [[0, 2, 3, 4]]  # the original is untouched
    r = ad.replace_word(t, 2, vocab[5])
    assert r.ids.tolist() == [[0, 2, 5, 4]] and r.text == f"{vocab[2]} {vocab[5]} {vocab[4]}"
    with pytest.raises(FusionInputError) as e:
        ad.replace_word(t, 0, vocab[5])
    assert str(e.value) == "Token 0 is not a word of the text."
    assert ad.word_strings(t) == [vocab[2], vocab[3], vocab[4]]


def test_mini_fusion_score_is_the_models_logit_for_any_batch(mini):
    ad, _ = mini
    vocab = ad.config.vocab
    t = ad.tokenize(f"{vocab[2]} {vocab[3]}")
    S = ad.image_size
    px = torch.cat([ad.normalise(random_image(S, seed=s)) for s in (1, 2, 3)])
    ids = torch.tensor([[2, 3]])
    pad = torch.zeros(1, 2, dtype=torch.bool)
    with torch.no_grad():
        want = torch.cat([ad.model(px[i:i + 1], ids, pad) for i in range(3)])
        torch.testing.assert_close(ad.score(px, t), want, rtol=1e-5, atol=1e-5)
        emb = ad.embed_text(t)
        torch.testing.assert_close(emb, ad.model.token(ids))
        assert ad.text_embeddings is ad.model.token and ad.embedding_positions(t) == [1, 2]
        three = torch.cat([emb, emb * 0.5, emb * 2])
        got = ad.score(px[:1], t, text_embeds=three)  # one image, three embeddings
        want_e = torch.cat([ad.model(px[:1], ids, pad, embeds=e[None]) for e in three])
        torch.testing.assert_close(got, want_e, rtol=1e-5, atol=1e-5)
    s = float(want[0])
    assert ad.answer_from_score(s) == f"{'match' if s > 0 else 'no match'} (p = {1 / (1 + np.exp(-s)):.2f}, logit {s:+.2f})"


def test_mini_fusion_roles_by_module_name(mini):
    ad, _ = mini
    t = ad.tokenize(" ".join(ad.config.vocab[2:5]))

    class Call:
        def __init__(self, name, tq, tk):
            self.name, self.probs = name, torch.zeros(1, 1, tq, tk)

    for name in ("image_encoder.0.self_attn", "image_after.1.attn"):
        r = ad.role(Call(name, 4, 4), t)
        assert (r.query, r.key, r.q_pos.tolist(), r.k_pos.tolist()) == ("image", "image", [0, 1, 2, 3], [0, 1, 2, 3])
    r = ad.role(Call("text_encoder.0.self_attn", 3, 3), t)
    assert (r.query, r.key, r.q_pos.tolist(), r.k_pos.tolist()) == ("text", "text", [1, 2, 3], [1, 2, 3])
    r = ad.role(Call("fusion.1.attn", 4, 4), t)
    assert (r.query, r.key, r.q_pos.tolist(), r.k_pos.tolist()) == ("image", "text", [0, 1, 2, 3], [0, 1, 2, 3])
    assert ad.role(Call("head", 1, 1), t) is None


def test_match_answer_in_words():
    from explorer.models.fusion_base import match_answer

    assert match_answer(2.61) == "match (p = 0.93, logit +2.61)"
    assert match_answer(-1.0, "log-odds") == "no match (p = 0.27, log-odds -1.00)"
    assert match_answer(0.0) == "no match (p = 0.50, logit +0.00)"


# ---------------------------------------------------------------------------------------------- padded batches, answers


def _padded(ad, texts):
    """A batch of texts padded to one length, with its attention mask (what a caller batching captions builds)."""
    import dataclasses

    from explorer.models.fusion_base import TextInput

    enc = ad.tokenizer(texts, padding=True, return_tensors="pt")
    first = ad.tokenize(texts[0])
    assert enc["attention_mask"].min() == 0  # some padding really is there
    return dataclasses.replace(first, ids=enc["input_ids"], attention_mask=enc["attention_mask"])


@pytest.fixture(scope="module")
def vilt_folder(tmp_path_factory):
    from _tiny import save_tiny_vilt_vqa

    return save_tiny_vilt_vqa(tmp_path_factory.mktemp("vilt-f"), seed=5)


@pytest.fixture(scope="module")
def vilt5(vilt_folder):
    return R.load_fusion_model(vilt_folder, device="cpu")


def test_vilt_reads_the_attention_mask_of_a_padded_batch(vilt5, vilt_folder):
    ref = eager_reference(vilt_folder, "ViltForQuestionAnswering")
    t = _padded(vilt5, ["what colour is the circle", "a red square"])
    px = torch.cat([vilt5.normalise(random_image(32, seed=s)) for s in (1, 2)])
    with torch.no_grad():
        got = vilt5.logits(px, t)
        want = ref(input_ids=t.ids, attention_mask=t.attention_mask, pixel_values=px,
                   pixel_mask=torch.ones(2, 32, 32, dtype=torch.long)).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    one = vilt5.tokenize("a red square")
    with torch.no_grad():
        emb = vilt5.embed_text(one)
        three = torch.cat([emb, emb * 0.5, emb * 2])
        by_embeds = vilt5.logits(px[:1], one, text_embeds=three)  # one image, three embeddings: a batch of three
        assert by_embeds.shape == (3, 7)
        torch.testing.assert_close(by_embeds[0], vilt5.logits(px[:1], one)[0], rtol=1e-5, atol=1e-5)


def test_vilt_rebinds_each_attention_once_and_refuses_non_square_configs(vilt5, vilt_folder):
    import copy

    from explorer.models.vilt import ViltAdapter, use_sdpa

    assert vilt5.sdpa_modules == 2 and use_sdpa(vilt5.model) == 0  # already rebound: nothing more to do
    assert vilt5.dtype == torch.float32 and vilt5.num_image_tokens == 17 and vilt5.patch_index.tolist() == list(range(1, 17))
    model = copy.deepcopy(vilt5.model)
    model.config.image_size = [32, 48]
    with pytest.raises(ValueError) as e:
        ViltAdapter(model, vilt5.tokenizer, model_id="x", image_mean=(0.5,) * 3, image_std=(0.5,) * 3, device="cpu",
                    dtype=torch.float32)
    assert str(e.value) == "ViLT with non-square image_size / patch_size ([32, 48], 8) is not supported."
    with pytest.raises(ValueError) as e:
        vilt5.image_embeds(torch.zeros(1, 3, 32, 40))
    assert str(e.value) == "Expected pixels of side 32, got (32, 40)."


def test_vilt_keeps_the_answer_it_explains_and_says_it(vilt5):
    from _tiny import TINY_ANSWERS

    t = vilt5.tokenize("what colour is the circle")
    x = vilt5.normalise(random_image(32, seed=1))
    y = vilt5.normalise(random_image(32, seed=2))
    with torch.no_grad():
        lx, ly = vilt5.logits(x, t)[0], vilt5.logits(y, t)[0]
    top, other = int(lx.argmax()), (int(lx.argmax()) + 1) % 7
    vilt5.target, vilt5._auto_target = None, None
    try:
        with torch.no_grad():
            got = vilt5.score(torch.cat([x, y]), t)  # no answer chosen yet: the first input's top answer
            assert vilt5.current_target == top
            torch.testing.assert_close(got, torch.stack([lx[top], ly[top]]))
            vilt5._auto_target = other  # an answer already chosen (e.g. on another input) is kept by score
            torch.testing.assert_close(vilt5.score(x, t), lx[other:other + 1])
            vilt5.set_target(y, t)  # set_target fixes the top answer of the input it is given
            assert vilt5.current_target == int(ly.argmax())
            vilt5._auto_target = other
            p = torch.sigmoid(lx)
            assert vilt5.answer(x, t) == (f"answer: {TINY_ANSWERS[top]} (p = {float(p[top]):.2f}); explaining "
                                          f"'{TINY_ANSWERS[other]}' (p = {float(p[other]):.2f})")
            vilt5._auto_target = None
            vilt5.set_target(torch.cat([x, y]), t)  # the first input's top answer
            assert vilt5.current_target == top
            assert vilt5.answer(x, t) == f"answer: {TINY_ANSWERS[top]} (p = {float(p[top]):.2f})"
            vilt5.target = other  # an explicit target wins over the chosen one
            assert vilt5.current_target == other and "explaining" in vilt5.answer(x, t)
            vilt5.target, vilt5._auto_target = None, None
            assert vilt5.answer(x, t) == f"answer: {TINY_ANSWERS[top]} (p = {float(p[top]):.2f})"
        with pytest.raises(RuntimeError) as e:
            vilt5.current_target
        assert str(e.value) == "No answer chosen: set adapter.target or call adapter.set_target(pixels, text) first."
    finally:
        vilt5.target, vilt5._auto_target = None, None


def test_vilt_labels(vilt5, monkeypatch):
    assert vilt5.label(2) == "red" and vilt5.label(99) == "99"
    monkeypatch.setattr(vilt5.config, "id2label", {"0": "yes", 1: "no"})  # string keys, as in some hub configs
    assert vilt5.label(0) == "yes" and vilt5.label(1) == "no" and vilt5.label(5) == "5"


def test_vilt_retrieval_answers_with_its_match_logit(tmp_path):
    from _tiny import save_tiny_vilt_vqa

    ad = R.load_fusion_model(save_tiny_vilt_vqa(tmp_path / "r", retrieval=True, seed=6), device="cpu")
    t = ad.tokenize("a red circle")
    px = torch.cat([ad.normalise(random_image(32, seed=s)) for s in (3, 4)])
    with torch.no_grad():
        logits = ad.logits(px, t)
    assert logits.shape == (2, 1) and ad.output_name == "match logit" and not ad.vqa
    s = float(logits[0, 0])
    assert ad.answer(px, t) == f"{'match' if s > 0 else 'no match'} (p = {1 / (1 + np.exp(-s)):.2f}, logit {s:+.2f})"


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    from _tiny import save_tiny_blip_itm

    return save_tiny_blip_itm(tmp_path_factory.mktemp("blip-f"), seed=7)


def test_blip_reads_the_attention_mask_and_answers_in_log_odds(blip_folder):
    from explorer.models.blip import use_sdpa

    ad = R.load_fusion_model(blip_folder, device="cpu")
    n_attn = sum(type(m).__name__ in ("BlipAttention", "BlipTextSelfAttention") for m in ad.model.modules())
    assert ad.sdpa_modules == n_attn and use_sdpa(ad.model) == 0
    ref = eager_reference(blip_folder, "BlipForImageTextRetrieval")
    t = _padded(ad, ["a red circle left of the blue square", "a dog"])
    px = torch.cat([ad.normalise(random_image(32, seed=s)) for s in (1, 2)])
    with torch.no_grad():
        got = ad.itm_logits(px, t)
        want = ref(input_ids=t.ids, attention_mask=t.attention_mask, pixel_values=px, use_itm_head=True).itm_score
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        one = ad.tokenize("a dog")
        emb = ad.embed_text(one)
        assert ad.score(px[:1], one, text_embeds=torch.cat([emb, emb * 2])).shape == (2,)
    s = float(got[0, 1] - got[0, 0])
    assert ad.answer_from_score(s) == f"{'match' if s > 0 else 'no match'} (p = {1 / (1 + np.exp(-s)):.2f}, log-odds {s:+.2f})"


def test_clip_text_batches_masks_and_the_broadcast_refusal(tmp_path):
    from _tiny import save_tiny_clip_pair

    folder = save_tiny_clip_pair(tmp_path / "c", seed=8)
    ad = R.load_fusion_model(folder, device="cpu")
    ref = eager_reference(folder, "CLIPModel")
    t = _padded(ad, ["a red circle left of the blue square", "a dog"])
    px = torch.cat([ad.normalise(random_image(32, seed=s)) for s in (1, 2)])
    with torch.no_grad():
        feats = ad.text_features(t)
        want = ref.get_text_features(input_ids=t.ids, attention_mask=t.attention_mask).pooler_output
        torch.testing.assert_close(feats, want / want.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-5)
        one = ad.tokenize("a dog")
        assert ad.text_features(one).shape == (1, 16) and ad.text_features(one, batch=3).shape == (3, 16)
        torch.testing.assert_close(ad.score(px, t),
                                   ref(input_ids=t.ids, attention_mask=t.attention_mask, pixel_values=px).logits_per_image
                                   .diagonal(), rtol=1e-4, atol=1e-4)
        tok = ad.text_token_embeddings(t)
        h = ref.text_model(input_ids=t.ids[:1], attention_mask=t.attention_mask[:1]).last_hidden_state[0]
        p = ref.text_projection(h)
        torch.testing.assert_close(tok, p / p.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-5)
        emb = ad.embed_text(one)
        three = torch.cat([emb, emb * 0.5, emb * 2])
        assert ad.text_features(one, text_embeds=three).shape == (3, 16)
        with pytest.raises(ValueError) as e:
            ad.score(px, one, text_embeds=three)
    assert str(e.value) == "Image batch 2 and text batch 3 do not broadcast."
    with pytest.raises(FusionInputError) as e:
        ad.tokenize(["a", "dog"])
    assert str(e.value) == "The text must be a string, got list."


def test_clip_with_the_legacy_end_token_pools_at_the_highest_id(tmp_path):
    """Configs with ``eos_token_id == 2`` (early CLIP checkpoints) pool the token with the highest id, as transformers
    does; the alignment view's score is then still the score."""
    import json

    from _tiny import save_tiny_clip_pair

    folder = save_tiny_clip_pair(tmp_path / "legacy", seed=9)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["eos_token_id"] = 2
    (folder / "config.json").write_text(json.dumps(cfg))
    ad = R.load_fusion_model(folder, device="cpu")
    t = ad.tokenize("a red circle")
    t.ids[0, 2] = 2  # a token with id 2 that is not the last one: the legacy rule must not pool there
    px = ad.normalise(random_image(32, seed=3))
    with torch.no_grad():
        patches, tokens, score = ad.alignment_embeddings(px, t)
        assert score == pytest.approx(float(ad.score(px, t)[0]), rel=1e-5, abs=1e-5)


def test_hf_blanking_broadcasting_and_replacing(blip, tmp_path):
    from _tiny import save_tiny_clip_pair

    t = blip.tokenize("a red circle.")  # BERT splits the full stop off: 4 word pieces for 3 words
    assert t.tokens == ["[CLS]", "a", "red", "circle", ".", "[SEP]"] and t.words == [1, 2, 3, 4]
    assert blip.blank_token() == (4, "[MASK]")
    b = blip.blank_text(t, [2, 3])
    assert b.ids[0].tolist() == [t.ids[0, 0].item(), t.ids[0, 1].item(), 4, 4, t.ids[0, 4].item(), t.ids[0, 5].item()]
    assert b.tokens == ["[CLS]", "a", "[MASK]", "[MASK]", ".", "[SEP]"] and b.notes == ["2 token(s) replaced by [MASK]"]
    assert blip.blank_text(t).tokens == ["[CLS]", "[MASK]", "[MASK]", "[MASK]", "[MASK]", "[SEP]"]
    with pytest.raises(FusionInputError) as e:
        blip.blank_text(t, [0, 2, 5])
    assert str(e.value) == "Token(s) [0, 5] are not words of the text (start / end tokens cannot be blanked)."
    assert blip.embedding_positions(t) == [0, 1, 2, 3, 4, 5]
    r = blip.replace_word(t, 3, "square")  # 3 words typed, 4 pieces: the pieces are joined again
    assert r.tokens == ["[CLS]", "a", "red", "square", ".", "[SEP]"] and r.text == "a red square ."
    px = blip.normalise(random_image(32, seed=1))
    two = torch.cat([px, px])
    p, ids, mask, B = blip.broadcast(px, t, torch.zeros(3, 6, 32))
    assert B == 3 and p.shape == (3, 3, 32, 32) and ids.shape == mask.shape == (3, 6)
    with pytest.raises(FusionInputError) as e:
        blip.broadcast(two, t, torch.zeros(3, 6, 32))
    assert str(e.value) == "Batch sizes [1, 2, 3] do not broadcast (each must be 1 or 3)."
    clip = R.load_fusion_model(save_tiny_clip_pair(tmp_path / "c"), device="cpu")
    # CLIP: no mask token and its unknown / padding token is the end token, which pools the sentence: id 0 ("!")
    assert clip.blank_token() == (0, "!")
    with pytest.raises(NotImplementedError) as e:
        blip.token_embeddings(px, t)
    assert str(e.value) == "BlipITMAdapter is not a dual encoder."


# ---------------------------------------------------------------------------------------------- tokenizer notes in full


def test_hf_notes_in_full(blip, tmp_path):
    from _tiny import save_tiny_clip_pair

    words = "the small red circle is left of the big blue square and the green triangle is above it"
    t = blip.tokenize(words)
    full = blip.tokenizer(words)["input_ids"]
    assert len(full) == 20  # [CLS] + 18 words + [SEP]; "it" is not in the tiny vocabulary
    assert t.truncated
    assert t.notes == ["The text has 20 tokens (start/end tokens included); this model reads at most 16, so the last 4 "
                       "token(s) were dropped: 'triangle is above [UNK]'."]
    # an unknown word among the kept ones does not shift what is reported as dropped
    t = blip.tokenize("zebra " + words)
    assert t.notes[0] == ("The text has 21 tokens (start/end tokens included); this model reads at most 16, so the last 5 "
                          "token(s) were dropped: 'green triangle is above [UNK]'.")
    assert t.notes[1] == "1 piece(s) of the text are not in the model's vocabulary and read as [UNK]: zebra."
    long_tail = "a " * 14 + "circle " * 20
    t = blip.tokenize(long_tail)
    dropped = blip.tokenizer.decode(blip.tokenizer(long_tail)["input_ids"][15:-1])
    assert len(dropped) > 60 and t.notes[0].endswith(f"were dropped: '{dropped[:57]}…'.")
    t = blip.tokenize("a zebra and a yak and a zebra")  # every unknown piece is counted, each shown once
    assert t.notes == ["3 piece(s) of the text are not in the model's vocabulary and read as [UNK]: zebra, yak."]
    with pytest.raises(FusionInputError) as e:
        blip.tokenize("  \n ")
    assert str(e.value) == "The text is empty: type a caption or a question (e.g. 'a photo of a red circle left of a blue square')."
    with pytest.raises(FusionInputError) as e:
        blip.tokenize("\u200b\u200b")  # zero-width spaces: not empty, but the tokenizer keeps no word of it
    assert str(e.value) == ("The text '\\u200b\\u200b' has no word the tokenizer keeps (only spaces / control "
                            "characters?): type a caption or a question.")
    assert t.ids.dtype == torch.long
    clip = R.load_fusion_model(save_tiny_clip_pair(tmp_path / "c"), device="cpu")
    t = clip.tokenize("a 🙂 red 🙂 circle é")
    pieces = {c: len(clip.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in ("🙂", "é")}
    assert t.notes == ["Character(s) outside the vocabulary are read as raw byte pieces (one token per piece): "
                       f"🙂 → {2 * pieces['🙂']} pieces, é → {pieces['é']} pieces."]
    assert [t.tokens[p] for p in t.words if t.tokens[p] in ("a", "red", "circle")] == ["a", "red", "circle"]


@pytest.mark.parametrize("limit, want", [(10, 10), (1, 1), (16, 16), (100, 16), (0, 16), (-5, 16), (100_000, 16),
                                         (None, 16), (10 ** 30, 16)])
def test_the_text_limit_is_the_smaller_of_the_models_and_a_sane_tokenizers(blip, monkeypatch, limit, want):
    monkeypatch.setattr(blip.tokenizer, "model_max_length", limit)
    assert blip._tokenizer_limit(16) == want


def test_mini_fusion_reads_exactly_its_word_limit_and_names_each_unknown_word(mini):
    ad, _ = mini
    n = ad.config.max_words
    w = ad.config.vocab[2]
    t = ad.tokenize(" ".join([w] * n))
    assert not t.truncated and t.notes == [] and len(t.tokens) == n + 1
    t = ad.tokenize(f"{w} qqq rrr qqq")
    assert t.notes == [f"3 word(s) are not in the model's {len(ad.config.vocab) - 2}-word vocabulary and read as [unk]: "
                       "qqq, rrr."]


def test_blanking_keeps_the_rest_of_the_text_record(mini, blip):
    ad, _ = mini
    n = ad.config.max_words
    t = ad.tokenize(" ".join([ad.config.vocab[2]] * (n + 1)))
    b = ad.blank_text(t, [1])
    assert b.truncated and b.attention_mask is t.attention_mask and b.text == t.text and b.notes[0] == t.notes[0]
    long = blip.tokenize("a red circle " * 8)
    bb = blip.blank_text(long, [1])
    assert bb.truncated and torch.equal(bb.attention_mask, long.attention_mask) and bb.text == long.text
    assert bb.notes == long.notes + ["1 token(s) replaced by [MASK]"]


def test_mini_fusion_dtype_and_a_single_images_score(mini):
    from explorer.models.fusion_mini import MiniFusionAdapter

    ad, folder = mini
    assert ad.dtype == torch.float32
    t = ad.tokenize(ad.config.vocab[2])
    px = ad.normalise(random_image(ad.image_size, seed=4))
    with torch.no_grad():
        assert ad.score(px, t).shape == (1,)
    half = MiniFusionAdapter.from_folder(folder, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and next(half.model.parameters()).dtype == torch.bfloat16
    assert half.normalise(random_image(ad.image_size, seed=4)).dtype == torch.bfloat16


def test_clip_words_padded_tokens_layers_and_answer(tmp_path):
    from _tiny import save_tiny_clip_pair

    folder = save_tiny_clip_pair(tmp_path / "c", seed=10)
    ad = R.load_fusion_model(folder, device="cpu")
    ref = eager_reference(folder, "CLIPModel")
    t = _padded(ad, ["a dog", "a red circle left of the blue square"])  # the first row is the padded one
    with torch.no_grad():
        tok = ad.text_token_embeddings(t)
        h = ref.text_model(input_ids=t.ids[:1], attention_mask=t.attention_mask[:1]).last_hidden_state[0]
    p = ref.text_projection(h).detach()
    torch.testing.assert_close(tok, p / p.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-5)
    names = [n for n, _ in ad.intervention_layers()]
    assert names == [f"vision_model.encoder.layers.{i}.self_attn" for i in range(2)]
    assert [m for _, m in ad.intervention_layers()] == [layer.self_attn for layer in ad.model.vision_model.encoder.layers]
    scale = float(ad.model.logit_scale.detach().exp())
    assert ad.answer_from_score(2 * scale) == f"similarity +2.000 (× logit scale {scale:.1f} = {2 * scale:.2f})"
