"""The intervention machinery's contract, piece by piece, against answers worked out here.

* :class:`HeadHooks` on toy layers that call SDPA themselves: which layer a call belongs to (nested sites, other
  threads, calls outside every site), the edit's shape and dtype, what is restored on exit (SDPA, the MHA fast path,
  the attention implementation, the hooks, the model lock), and the refusals in full;
* the edits (:func:`ablation_edit`, :func:`sweep_edit`, :func:`record_edit`) on known tensors;
* head lists, corruptions against OpenCV / numpy called directly, the sweep cache, the result objects, and the
  notes, names and masks that reach the user.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import random_image

from explorer.attention import AttentionError
from explorer.attention import interventions as I
from explorer.models.base import model_lock
from explorer.reconstruction import as_input

IMG = random_image(32, seed=3)


class Layer(torch.nn.Module):
    """A toy layer: SDPA on the q, k, v it is given (looked up at call time, as transformers does)."""

    def __init__(self, inner: "torch.nn.Module | None" = None):
        super().__init__()
        self.inner = inner

    def forward(self, q, k, v):
        out = F.scaled_dot_product_attention(q, k, v)
        return out if self.inner is None else self.inner(q, k, v) + out


def qkv(B=1, H=2, T=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, T, d, generator=g) for _ in range(3))


def plain(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


# ---------------------------------------------------------------------------------------------- HeadHooks


def test_calls_belong_to_the_innermost_running_site_and_edits_replace_them():
    inner = Layer()
    outer = Layer(inner)
    q, k, v = qkv()
    seen = []

    def edit(layer, out):
        seen.append(layer)
        return torch.zeros_like(out) if layer == 1 else None

    with I.HeadHooks([outer, inner], edit) as hooks:
        got = outer(q, k, v)
        outside = plain(q, k, v)  # no site running: not a layer's call
    # inner (layer 1) was zeroed; outer's own call (layer 0) was left
    torch.testing.assert_close(got, plain(q, k, v))
    torch.testing.assert_close(outside, plain(q, k, v))
    assert seen == [0, 1] and hooks.calls == [(0, (1, 2, 4, 8)), (1, (1, 2, 4, 8))]
    hooks.check()


def test_another_threads_calls_are_left_alone():
    site = Layer()
    q, k, v = qkv()
    other = {}
    with I.HeadHooks([site], lambda layer, out: torch.zeros_like(out)) as hooks:
        t = threading.Thread(target=lambda: other.setdefault("out", site(q, k, v)))
        t.start()
        t.join()
        mine = site(q, k, v)
    torch.testing.assert_close(other["out"], plain(q, k, v))
    assert float(mine.abs().max()) == 0.0 and hooks.calls == [(0, (1, 2, 4, 8))]


def test_an_edit_of_the_wrong_shape_is_refused_and_a_wider_dtype_is_cast_back():
    site = Layer()
    q, k, v = qkv()
    with pytest.raises(AttentionError) as e:
        with I.HeadHooks([site], lambda layer, out: out[:, :1]):
            site(q, k, v)
    assert str(e.value) == ("An intervention on layer 0 returned shape (1, 1, 4, 8) for an attention output of shape "
                            "(1, 2, 4, 8).")
    with I.HeadHooks([site], lambda layer, out: out.double() * 2):
        got = site(q, k, v)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, plain(q, k, v) * 2)


def test_everything_is_put_back_on_exit_and_the_model_lock_is_held_inside():
    site = Layer()
    original = F.scaled_dot_product_attention
    for fast in (True, False):
        torch.backends.mha.set_fastpath_enabled(fast)
        with I.HeadHooks([site], lambda layer, out: None):
            assert F.scaled_dot_product_attention is not original
            assert torch.backends.mha.get_fastpath_enabled() is False
            assert len(site._forward_pre_hooks) == 1 and len(site._forward_hooks) == 1
            free = []
            t = threading.Thread(target=lambda: free.append(model_lock().acquire(timeout=0.05)))
            t.start()
            t.join()
            assert free == [False]  # another thread cannot run a model through these hooks
        assert F.scaled_dot_product_attention is original
        assert torch.backends.mha.get_fastpath_enabled() is fast
        assert not site._forward_pre_hooks and not site._forward_hooks
    torch.backends.mha.set_fastpath_enabled(True)
    got = []
    t = threading.Thread(target=lambda: got.append(model_lock().acquire(timeout=1) and (model_lock().release() or True)))
    t.start()
    t.join()
    assert got == [True]


def test_multihead_attention_is_run_on_the_sdpa_path_so_its_heads_are_reachable():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(1, 5, 16)
    with torch.no_grad(), I.HeadHooks([mha], lambda layer, out: torch.zeros_like(out)) as hooks:
        out, _w = mha(x, x, x, need_weights=True)  # the caller asked for weights: the hooks turn that off
    assert hooks.calls == [(0, (1, 2, 5, 8))]
    torch.testing.assert_close(out, mha.out_proj.bias.expand(1, 5, 16))  # every head zeroed: only the bias is left
    assert not mha._forward_pre_hooks_with_kwargs


class Root(torch.nn.Module):
    """A transformers-like root whose attention implementation can be switched (or refuses to)."""

    def __init__(self, impl, refuse=False):
        super().__init__()
        self.config = type("Cfg", (), {"_attn_implementation": impl})()
        self.refuse = refuse
        self.switched: list = []

    def set_attn_implementation(self, impl):
        if self.refuse:
            raise ValueError("flash only")
        self.switched.append(impl)
        self.config._attn_implementation = impl


def test_the_attention_implementation_is_switched_to_sdpa_and_back():
    site = Layer()
    eager = Root("eager")
    with I.HeadHooks([site], lambda layer, out: None, root=eager):
        assert eager.switched == ["sdpa"]
    assert eager.switched == ["sdpa", "eager"]
    already = Root("sdpa")
    with I.HeadHooks([site], lambda layer, out: None, root=already):
        pass
    assert already.switched == []
    stuck = Root("flash_attention_2", refuse=True)
    with pytest.raises(AttentionError) as e:
        with I.HeadHooks([site], lambda layer, out: None, root=stuck):
            pass
    assert str(e.value) == ("This model uses 'flash_attention_2' attention and cannot switch to SDPA for an "
                            "intervention: flash only")
    assert isinstance(e.value.__cause__, ValueError)
    got = []
    t = threading.Thread(target=lambda: got.append(model_lock().acquire(timeout=1) and (model_lock().release() or True)))
    t.start()
    t.join()
    assert got == [True]  # the failed entry released the lock
    assert F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"


def test_check_names_the_layers_that_made_no_call():
    a, b, c = Layer(), Layer(), Layer()
    with I.HeadHooks([a, b, c], lambda layer, out: None) as hooks:
        a(*qkv())
    with pytest.raises(AttentionError) as e:
        hooks.check()
    assert str(e.value) == ("Layer(s) [1, 2] made no scaled-dot-product attention call: their heads cannot be ablated "
                            "or patched.")


# ---------------------------------------------------------------------------------------------- the edits


def test_heads_by_layer_validates_merges_and_sorts():
    got = I.heads_by_layer([(2, "all"), (0, 3), ("0", "1"), (0, 3), (1, None)], 3, 4)
    assert got == {0: [1, 3], 1: [0, 1, 2, 3], 2: [0, 1, 2, 3]} and list(got) == [0, 1, 2]
    assert I.heads_by_layer([(2, 3), (0, 0)], 3, 4) == {0: [0], 2: [3]}  # both ends are in range
    for item in (5, (0, 1, 2), "a"):
        with pytest.raises(AttentionError) as e:
            I.heads_by_layer([item], 3, 4)
        assert str(e.value) == f"Heads are (layer, head) pairs (head None = the whole layer); got {item!r}."
    for layer in (-1, 3):
        with pytest.raises(AttentionError) as e:
            I.heads_by_layer([(layer, 0)], 3, 4)
        assert str(e.value) == f"Layer {layer} is out of range: this model has layers 0..2."
    for head in (-1, 4):
        with pytest.raises(AttentionError) as e:
            I.heads_by_layer([(0, head)], 3, 4)
        assert str(e.value) == f"Head {head} is out of range: this model has heads 0..3."


def test_replacement_zeroes_or_spreads_the_token_mean():
    out = torch.arange(24.0).reshape(1, 2, 3, 4)
    assert float(I.replacement(out, "zero").abs().max()) == 0.0
    mean = I.replacement(out, "mean")
    torch.testing.assert_close(mean, out.mean(dim=2, keepdim=True).expand(1, 2, 3, 4))
    with pytest.raises(AttentionError) as e:
        I.replacement(out, "noise")
    assert str(e.value) == "Unknown ablation mode 'noise'; choose from zero, mean."


def test_ablation_edit_replaces_the_listed_heads_of_its_layers_in_every_copy():
    with pytest.raises(AttentionError, match="Unknown ablation mode 'half'"):
        I.ablation_edit({0: [0]}, "half")  # refused before any forward
    out = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    keep = out.clone()
    edit = I.ablation_edit({1: [0, 2]}, "mean")
    assert edit(0, out) is None and I.ablation_edit({1: []}, "zero")(1, out) is None
    got = edit(1, out)
    torch.testing.assert_close(out, keep)  # the input is not written to
    torch.testing.assert_close(got[:, 1], out[:, 1])
    for h in (0, 2):
        torch.testing.assert_close(got[:, h], out[:, h].mean(dim=1, keepdim=True).expand(2, 4, 5))


def test_sweep_edit_gives_copy_i_head_i_and_the_last_copy_every_head():
    H = 3
    out = torch.randn(H + 1, H, 4, 5, generator=torch.Generator().manual_seed(1))
    edit = I.sweep_edit(2, H)
    assert edit(1, out) is None
    got = edit(2, out)
    for i in range(H):
        for h in range(H):
            want = torch.zeros_like(out[i, h]) if h == i else out[i, h]
            torch.testing.assert_close(got[i, h], want)
    assert float(got[H].abs().max()) == 0.0
    src = torch.randn(1, H, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    patched = I.sweep_edit(2, H, source=src)(2, out)
    assert patched.dtype == torch.float32
    for i in range(H):
        torch.testing.assert_close(patched[i, i], src[0, i].float())
        torch.testing.assert_close(patched[i, (i + 1) % H], out[i, (i + 1) % H])
    torch.testing.assert_close(patched[H], src[0].float())
    with pytest.raises(AttentionError) as e:
        edit(2, out[:2])
    assert str(e.value) == "A sweep runs 4 copies of the input; this call has batch 2."
    with pytest.raises(AttentionError) as e:
        I.sweep_edit(2, H, source=src[:, :, :3])(2, out)
    assert str(e.value) == ("Layer 2's attention output has shape (3, 4, 5) here and (3, 3, 5) for the other input: "
                            "patching needs inputs of one length (same number of tokens).")


def test_record_edit_keeps_a_detached_copy_and_changes_nothing():
    store = {}
    out = torch.ones(1, 2, 3, 4, requires_grad=True) * 1.0
    assert I.record_edit(store)(5, out) is None
    with torch.no_grad():
        out.mul_(3)
    assert float(store[5].max()) == 1.0 and not store[5].requires_grad


# ---------------------------------------------------------------------------------------------- corruptions


def test_blur_is_opencvs_gaussian_with_a_sixteenth_of_the_side_per_frame():
    got = I.corrupt(IMG, "blur", strength=2.0)
    np.testing.assert_allclose(got, cv2.GaussianBlur(IMG.astype(np.float32), (0, 0), 4.0).clip(0, 1), atol=1e-7)
    tiny = random_image(4, seed=1)
    np.testing.assert_allclose(I.corrupt(tiny, "blur"), cv2.GaussianBlur(tiny, (0, 0), 0.5).clip(0, 1), atol=1e-7)
    clip = np.stack([IMG, IMG[::-1].copy()])
    got = I.corrupt(clip, "blur")
    for t in range(2):
        np.testing.assert_allclose(got[t], cv2.GaussianBlur(clip[t], (0, 0), 2.0).clip(0, 1), atol=1e-7)


def test_noise_is_seeded_clipped_gaussian_and_grey_is_the_luminance():
    got = I.corrupt(IMG, "noise", seed=4, strength=0.5)
    want = (IMG + np.random.default_rng(4).normal(0, 0.15, IMG.shape)).clip(0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.dtype == np.float32 and got.min() == 0.0 and got.max() == 1.0
    assert not np.array_equal(got, I.corrupt(IMG, "noise", seed=5, strength=0.5))
    np.testing.assert_array_equal(I.corrupt(IMG, "noise"), I.corrupt(IMG, "noise", seed=0, strength=1.0))
    grey = I.corrupt(IMG, "grey")
    y = 0.299 * IMG[..., 0] + 0.587 * IMG[..., 1] + 0.114 * IMG[..., 2]
    assert grey.dtype == np.float32 and grey.shape == IMG.shape
    for c in range(3):
        np.testing.assert_allclose(grey[..., c], y, atol=1e-6)
    with pytest.raises(AttentionError) as e:
        I.corrupt(IMG, "jpeg")
    assert str(e.value) == "Unknown corruption 'jpeg'; choose from blur, noise, grey."


# ---------------------------------------------------------------------------------------------- cache and results


def test_the_sweep_cache_keeps_the_most_recently_used(monkeypatch):
    monkeypatch.setattr(I, "_CACHE", type(I._CACHE)())
    monkeypatch.setattr(I, "CACHE_SIZE", 2)
    made = []

    def make(v):
        return lambda: made.append(v) or v

    assert I._cached(("a",), make(1)) == (1, False)
    assert I._cached(("b",), make(2)) == (2, False)
    assert I._cached(("a",), make(9)) == (1, True)  # a is now the newest
    assert I._cached(("c",), make(3)) == (3, False)  # b, the oldest, goes
    assert list(I._CACHE) == [("a",), ("c",)]
    assert I._cached(("b",), make(4)) == (4, False) and made == [1, 2, 3, 4]
    I.clear_cache()
    assert len(I._CACHE) == 0


def test_ranked_orders_heads_by_size_of_effect_ties_by_position():
    imp = I.HeadImportance(np.array([[0.5, -2.0, 0.0], [2.0, 0.5, -0.1]]), np.zeros(2), 1.0, "x", "zero")
    assert imp.ranked() == [(0, 1, -2.0), (1, 0, 2.0), (0, 0, 0.5), (1, 1, 0.5), (1, 2, -0.1), (0, 2, 0.0)]
    assert (imp.num_layers, imp.num_heads) == (2, 3)
    # 6 layers x 8 heads with many ties (a sort that is not stable scrambles them): position order among equals.
    d = np.where(np.arange(48).reshape(6, 8) % 3 == 0, 1.0, -0.5)
    big = I.HeadImportance(d, np.zeros(6), 0.0, "x", "zero").ranked()
    want = [(i // 8, i % 8, 1.0) for i in range(0, 48, 3)] + [(i // 8, i % 8, -0.5) for i in range(48) if i % 3]
    assert big == want
    p = I.Patching(np.zeros((1, 1)), np.zeros(1), 3.5, 1.25, np.zeros((1, 1)), "x", "blur")
    assert p.gap == 2.25


def test_sha_tells_shapes_and_values_apart():
    z = np.zeros((2, 3), np.float32)
    assert I._sha(z) != I._sha(z.reshape(3, 2)) and I._sha(z) == I._sha(z.copy())
    assert I._sha(z, "a") != I._sha(z, "b") and I._sha(np.asfortranarray(np.arange(6.0).reshape(2, 3))) == I._sha(
        np.arange(6.0).reshape(2, 3))


def test_run_ablation_of_nothing_returns_the_intact_run_and_sorted_pairs(vit):
    probe = I.image_probe(vit, IMG)
    pairs, s0, s1, o0, o1 = I.run_ablation(probe, [])
    assert pairs == () and s0 == s1 and np.shares_memory(o0, o1)  # not run twice
    pairs, s0, s1, o0, o1 = I.run_ablation(probe, [(2, 1), (0, 3), (0, None)][::-1])
    assert pairs == ((0, 0), (0, 1), (0, 2), (0, 3), (2, 1)) and s1 != s0
    assert s0 == pytest.approx(float(probe.score(o0[None])[0])) and s1 == pytest.approx(float(probe.score(o1[None])[0]))


# ---------------------------------------------------------------------------------------------- what the user reads


def test_probes_say_what_they_score(vit, clip_image, mae):
    assert I.image_probe(vit, IMG, target=1).what == f"logit of class 1 ({vit.labels[1]})"
    assert I.image_probe(clip_image, IMG).what == (f"cosine similarity of the {clip_image.embedding_name} to the intact "
                                                   "model's")
    with pytest.raises(AttentionError) as e:
        I.image_probe(mae, IMG)
    assert str(e.value) == "A masked autoencoder is scored on a reconstruction: pass mask= (gh, gw) bool, True = hidden."
    with pytest.raises(AttentionError) as e:
        I.image_probe(mae, IMG, mask=np.zeros(16, bool))
    assert str(e.value) == "Hide at least one patch: the reconstruction is scored on the hidden patches."


def test_ablate_draws_its_mask_from_ratio_and_seed_and_reads_a_flat_one(mae):
    from explorer.masking import MaskSpec, make_mask

    ab = I.ablate(mae, IMG, [(0, 0)], ratio=0.5, seed=4)
    np.testing.assert_array_equal(ab.mask, make_mask(mae.grid, MaskSpec("random", 0.5, 4)))
    np.testing.assert_array_equal(I.ablate(mae, IMG, [(0, 0)]).mask, make_mask(mae.grid, MaskSpec("random", 0.75, 0)))
    flat = np.zeros(16, bool)
    flat[[1, 6]] = True
    given = I.ablate(mae, IMG, [(0, 0)], mask=flat)
    assert given.mask.shape == (4, 4) and given.mask.sum() == 2 and given.mask[0, 1] and given.mask[1, 2]


def test_results_carry_the_models_and_the_inputs_notes(mae):
    wide = (random_image(64, seed=5)[:40, :, 0] * 255).astype(np.uint8)  # a grey 8-bit array: the loader notes it
    _px, info = as_input(wide, "center-crop", mae.image_size)
    notes = tuple(mae.attention_notes) + tuple(info.notes)
    assert info.notes == ("grayscale replicated to RGB",) and mae.attention_notes
    assert I.ablate(mae, wide, [(0, 0)]).notes == notes
    I.clear_cache()
    assert I.head_importance(mae, wide).notes == notes
    assert I.head_importance(mae, wide, batched=False).notes == notes
    patched = ("Patched: each head's output before the output projection; the residual stream still carries the "
               "corrupted input's embedding, so patching every head need not restore everything.")
    for batched in (True, False):
        p = I.patch_heads(mae, wide, "noise", batched=batched)  # a random tiny MAE barely notices the noise
        gap = (f"The corruption barely changes {p.what} ({p.clean:.4g} → {p.corrupted:.4g}): the shares divide by that "
               "small gap and are unreliable; try a stronger corruption.")
        assert p.notes == (patched, gap, "grayscale replicated to RGB") and p.corruption == "noise (seed 0)"
    trained = I.patch_heads("mini-mae", wide, "noise")
    assert abs(trained.clean - trained.corrupted) > 0.01 * abs(trained.clean)  # a real gap: no warning about it
    assert trained.notes == (patched, "grayscale replicated to RGB")


def test_patching_names_the_corruption_and_warns_when_it_changes_nothing(vit):
    I.clear_cache()
    assert I.patch_heads(vit, IMG, "noise", seed=3).corruption == "noise (seed 3)"
    assert I.patch_heads(vit, IMG, "blur").corruption == "blur"
    same = I.patch_heads(vit, IMG, IMG.copy())
    name = as_input(IMG, "center-crop", vit.image_size)[1].name
    assert same.corruption == f"another input ({name})"
    assert np.isnan(same.restored).all() and np.isnan(same.layer_restored).all()
    assert same.notes[1] == (f"The corruption barely changes {same.what} ({same.clean:.4g} → {same.corrupted:.4g}): the "
                             "shares divide by that small gap and are unreliable; try a stronger corruption.")
    for kind in ("noise", "grey", "blur"):
        p = I.patch_heads(vit, IMG, kind)
        small = abs(p.clean - p.corrupted) < 0.01 * abs(p.clean)
        assert any(n.startswith("The corruption barely") for n in p.notes) == small


@pytest.fixture(scope="module")
def clip_image(tmp_path_factory):
    import explorer
    from _tiny import save_tiny_clip

    return explorer.load_model(str(save_tiny_clip(tmp_path_factory.mktemp("clip"))), device="cpu")


# ---------------------------------------------------------------------------------------------- second round


def test_sdpas_keyword_arguments_reach_the_kernel():
    class Causal(torch.nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)

    site = Causal()
    q, k, v = qkv(T=5)
    with I.HeadHooks([site], lambda layer, out: None):
        got = site(q, k, v)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3))
    assert not torch.allclose(got, plain(q, k, v))


def test_a_model_loaded_with_eager_attention_is_ablated_through_sdpa_and_put_back(vit):
    want = I.ablate(vit, IMG, [(1, 2)])
    vit.model.set_attn_implementation("eager")
    try:
        got = I.ablate(vit, IMG, [(1, 2)])
        assert vit.model.config._attn_implementation == "eager"
    finally:
        vit.model.set_attn_implementation("sdpa")
    assert got.delta == pytest.approx(want.delta, abs=1e-6) and got.delta != 0


def test_sweeps_are_cached_per_weights_input_mask_and_corruption(vit, mae, tmp_path):
    import explorer
    from _tiny import save_tiny_vit

    I.clear_cache()
    other = explorer.load_model(str(save_tiny_vit(tmp_path / "v1", seed=1)), device="cpu")
    a = I.head_importance(vit, IMG)
    b = I.head_importance(other, IMG)
    assert b.seconds > 0 and not np.allclose(a.delta, b.delta)
    m1 = np.zeros((4, 4), bool)
    m1[:2] = True
    first = I.head_importance(mae, IMG, mask=m1)
    second = I.head_importance(mae, IMG, mask=~m1)
    assert second.seconds > 0 and not np.allclose(first.delta, second.delta)
    assert I.head_importance(mae, IMG, mask=m1).seconds == 0.0
    blur = I.patch_heads(vit, IMG, "blur")
    grey = I.patch_heads(vit, IMG, "grey")
    assert grey.seconds > 0 and grey.corrupted != blur.corrupted
    bad = I.corrupt(IMG, "noise", seed=1)
    one = I.patch_heads(vit, IMG, bad)
    two = I.patch_heads(vit, IMG[::-1].copy(), bad)  # the same corrupted input, another clean one
    assert two.seconds > 0 and two.clean != one.clean


def test_the_default_mask_seed_and_patching_defaults_are_the_documented_ones(mae, vit):
    I.clear_cache()
    I.head_importance(mae, IMG)
    assert I.head_importance(mae, IMG, seed=0, ratio=0.75).seconds == 0.0
    d = I.patch_heads(vit, IMG)
    assert d.corruption == "blur"
    again = I.patch_heads(vit, IMG, "blur")
    assert again.seconds == 0.0 and np.array_equal(again.restored, d.restored)


def test_importance_and_patching_run_the_mask_target_and_corruption_given(mae, vit):
    I.clear_cache()
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    imp = I.head_importance(mae, IMG, mask=m, mode="mean")
    d, ld, s0 = I.run_importance(I.image_probe(mae, IMG, mask=m), "mean")
    np.testing.assert_allclose(imp.delta, d, atol=1e-9)
    assert imp.intact == s0
    p = I.patch_heads(mae, IMG, "noise", mask=m, seed=3)
    probe = I.image_probe(mae, I.corrupt(IMG, "noise", seed=3), reference=IMG, mask=m)
    assert p.corrupted == pytest.approx(float(probe.score(probe.run(1))[0]), abs=1e-9)
    # A target that is not the predicted class: both runs score its logit.
    x_bad = vit.normalise_input(I.corrupt(IMG, "grey"))
    t = I.patch_heads(vit, IMG, "grey", target=0)
    with torch.no_grad():
        assert t.corrupted == pytest.approx(float(vit.logits(x_bad)[0, 0]), abs=1e-6)
        assert t.clean == pytest.approx(float(vit.logits(vit.normalise_input(IMG))[0, 0]), abs=1e-6)
    assert t.what == f"logit of class 0 ({vit.labels[0]})"
    assert I.ablate(vit, IMG, [(0, 0)], target=0).what == f"logit of class 0 ({vit.labels[0]})"


def test_the_one_at_a_time_results_are_complete_and_timed(vit):
    import time

    I.clear_cache()
    t0 = time.perf_counter()
    loop = I.head_importance(vit, IMG, mode="mean", batched=False)
    elapsed = time.perf_counter() - t0
    fast = I.head_importance(vit, IMG, mode="mean")
    np.testing.assert_allclose(loop.delta, fast.delta, atol=2e-5)
    np.testing.assert_allclose(loop.layer_delta, fast.layer_delta, atol=2e-5)
    assert (loop.intact, loop.what, loop.mode, loop.model, loop.input) == (fast.intact, fast.what, "mean", vit.info,
                                                                              fast.input)
    assert 0 < loop.seconds <= elapsed and 0 < fast.seconds < 60
    assert (fast.mode, fast.model, fast.notes) == ("mean", vit.info, loop.notes)
    t0 = time.perf_counter()
    pl = I.patch_heads(vit, IMG, "noise", batched=False)
    elapsed = time.perf_counter() - t0
    pf = I.patch_heads(vit, IMG, "noise")
    assert 0 < pl.seconds <= elapsed and 0 < pf.seconds < 60
    np.testing.assert_allclose(pl.patched, pf.patched, atol=2e-6)
    assert (pl.model, pl.input.name, pl.corruption) == (vit.info, "<array>", "noise (seed 0)")
    assert I.patch_heads(vit, IMG, "noise").seconds == 0.0


def test_whole_layer_numbers_are_the_whole_layer_ablated_or_patched(vit):
    probe = I.image_probe(vit, IMG)
    d, ld, s0 = I.run_importance(probe)  # default: zero, batched
    for layer in range(3):
        _pairs, intact, ablated, _o0, _o1 = I.run_ablation(probe, [(layer, None)], "zero")
        assert ld[layer] == pytest.approx(ablated - intact, abs=1e-6)
    np.testing.assert_array_equal(d, I.run_importance(probe, "zero")[0])
    bad = I.image_probe(vit, I.corrupt(IMG, "noise", seed=2), reference=IMG)
    r, lr, c, k, pt = I.run_patching(probe, bad)
    for layer in range(3):  # the shares divide float32 noise by the (small) gap
        assert lr[layer] == pytest.approx(I.run_patching(probe, bad, heads=[(layer, None)]), abs=2e-6 / abs(c - k))


def test_the_batched_sweeps_run_one_forward_per_layer():
    class Counting(I.Probe):
        pass

    site = Layer()
    q, k, v = qkv(B=1, H=2, T=3, d=4)
    runs = []

    def run(B):
        runs.append(B)
        return site(q.expand(B, -1, -1, -1), k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)).sum((1, 2, 3)).numpy()

    probe = Counting("sum", run, lambda out: np.asarray(out, np.float64), [site], 2)
    I.run_importance(probe)
    assert runs == [1, 3]  # intact, then one batch of H + 1 copies
    runs.clear()
    I.run_importance(probe, batched=False)
    assert runs == [1, 1, 1, 1]
    runs.clear()
    I.run_patching(probe, probe)
    assert runs == [1, 1, 3]


def test_patching_inputs_of_different_lengths_is_refused_in_words():
    site = Layer()

    def probe(T):
        q, k, v = qkv(B=1, H=2, T=T, d=4, seed=T)
        return I.Probe("sum", lambda B: site(*(a.expand(B, -1, -1, -1) for a in (q, k, v))).sum((1, 2, 3)).numpy(),
                       lambda out: np.asarray(out, np.float64), [site], 2)

    with pytest.raises(AttentionError) as e:
        I.run_patching(probe(4), probe(5), heads=[(0, 1)])
    assert str(e.value) == ("Layer 0's attention output has shape (1, 2, 5, 4) here and (1, 2, 4, 4) for the clean "
                            "input: patching needs inputs of one length.")
    same = I.run_patching(probe(4), probe(4))
    assert same[0].shape == (1, 2) and np.isnan(same[0]).all() and same[1].shape == (1,) and np.isnan(same[1]).all()


def test_the_reconstruction_is_clipped_to_the_image_range(mae):
    import copy

    loud = copy.copy(mae)
    raw_forward = mae.forward_masks
    loud.forward_masks = lambda px, masks, batch_size=8: (raw_forward(px, masks, batch_size=batch_size) - 0.45) * 20
    m = np.zeros((4, 4), bool)
    m[0] = True
    ab = I.ablate(loud, IMG, [], mask=m)
    raw = (raw_forward(ab.image, m[None], batch_size=1)[0] - 0.45) * 20
    assert raw.min() < 0 and raw.max() > 1
    np.testing.assert_array_equal(ab.intact_output, np.clip(raw, 0, 1))


def test_result_fields_and_dtypes(vit, mae, clip_image):
    ab = I.ablate(vit, IMG, [(2, 1), (0, 3)], mode="mean")
    assert ab.heads == ((0, 3), (2, 1)) and ab.mode == "mean" and ab.model == vit.info and ab.input.name == "<array>"
    assert ab.diff_map.dtype == np.float32
    am = I.ablate(mae, IMG, [(0, 0)])
    assert am.diff_map.dtype == np.float32 and am.diff_map.shape == (4, 4)
    ac = I.ablate(clip_image, IMG, [(0, 0)])
    assert ac.diff_map is None and ac.what.startswith("cosine similarity of the ")
    assert ac.intact == pytest.approx(1.0, abs=1e-6)


def test_cosine_patching_compares_the_corrupted_embedding_with_the_clean_one(clip_image):
    I.clear_cache()
    p = I.patch_heads(clip_image, IMG, "noise", seed=1)
    with torch.no_grad():
        e_clean = clip_image.embedding(clip_image.normalise_input(IMG)).float()
        e_bad = clip_image.embedding(clip_image.normalise_input(I.corrupt(IMG, "noise", seed=1))).float()
    assert p.clean == pytest.approx(1.0, abs=1e-6)
    assert p.corrupted == pytest.approx(float(F.cosine_similarity(e_bad, e_clean, dim=-1)[0]), abs=1e-6)
    assert p.corrupted < 0.9999
    assert I.head_importance(clip_image, IMG).delta.shape == (clip_image.num_layers, clip_image.num_heads)
    assert I.head_importance(clip_image, IMG).seconds == 0.0


def test_classifiers_without_label_names_say_the_class_number(vit):
    import copy

    bare = copy.copy(vit)
    bare.labels = {}
    assert I.image_probe(bare, IMG, target=1).what == "logit of class 1"
    del bare.labels
    assert I.image_probe(bare, IMG, target=1).what == "logit of class 1"


def test_a_mask_of_zeros_and_ones_is_read_as_booleans(mae):
    m = np.zeros((4, 4), int)
    m[2:] = 1
    a, b = I.ablate(mae, IMG, [(1, 0)], mask=m), I.ablate(mae, IMG, [(1, 0)], mask=m.astype(bool))
    assert a.mask.dtype == bool and (a.intact, a.ablated) == (b.intact, b.ablated)
    p = I.image_probe(mae, IMG, mask=m.ravel())
    q = I.image_probe(mae, IMG, mask=m.astype(bool))
    assert p.key == q.key and p.score(p.run(1))[0] == q.score(q.run(1))[0]


def test_corrupt_defaults_to_blur_returns_float32_and_grey_in_float32():
    np.testing.assert_array_equal(I.corrupt(IMG), I.corrupt(IMG, "blur"))
    assert I.corrupt(IMG.astype(np.float64), "blur").dtype == np.float32
    w = np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_array_equal(I.corrupt(IMG, "grey")[..., 1], IMG.astype(np.float32) @ w)


def test_a_bare_module_is_refused_naming_interventions():
    with pytest.raises(AttentionError) as e:
        I.ablate(torch.nn.Linear(2, 2), IMG, [])
    assert str(e.value).startswith("interventions needs a model from explorer.load_model (or its name)")


def test_patching_caches_tell_corruptions_and_clean_inputs_apart_for_every_metric(mae, clip_image):
    I.clear_cache()
    for model in (mae, clip_image):
        blur = I.patch_heads(model, IMG, "blur")
        grey = I.patch_heads(model, IMG, "grey")
        assert grey.seconds > 0 and grey.corrupted != blur.corrupted
        bad = I.corrupt(IMG, "noise", seed=1)
        one = I.patch_heads(model, IMG, bad)
        two = I.patch_heads(model, IMG[::-1].copy(), bad)
        assert two.seconds > 0 and (two.clean, two.corrupted) != (one.clean, one.corrupted)
    a = I.head_importance(clip_image, IMG)
    b = I.head_importance(clip_image, IMG[::-1].copy())
    assert b.seconds > 0 and not np.array_equal(a.delta, b.delta) and b.mode == "zero" and b.model == clip_image.info


def test_a_failed_switch_back_of_the_attention_implementation_is_not_an_error():
    class OneWay(Root):
        def set_attn_implementation(self, impl):
            if impl != "sdpa":
                raise ValueError("cannot go back")
            super().set_attn_implementation(impl)

    root = OneWay("eager")
    with I.HeadHooks([Layer()], lambda layer, out: None, root=root):
        pass
    assert root.switched == ["sdpa"] and F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"


def test_the_small_gap_warning_is_relative_to_the_clean_value():
    wide = (random_image(64, seed=5)[:40, :, 0] * 255).astype(np.uint8)
    clean = np.repeat(wide[..., None], 3, -1).astype(np.float32) / 255
    faint = I.patch_heads("mini-mae", clean, clean * 0.99 + 0.005)  # PSNR about 30 dB, moved by about 0.15 dB
    assert 0.0 < abs(faint.clean - faint.corrupted) < 0.01 * abs(faint.clean)
    assert faint.notes[1].startswith("The corruption barely changes masked-patch PSNR (dB)")
    clear = I.patch_heads("mini-mae", clean, clean * 0.95 + 0.025)
    assert abs(clear.clean - clear.corrupted) > 0.01 * abs(clear.clean)
    assert not any(n.startswith("The corruption barely") for n in clear.notes)
