"""Capturing attention from your own modules, and the memory check, against answers worked out here.

* ``nn.MultiheadAttention`` through :class:`AttentionCapture`: the probabilities equal the module's own
  ``need_weights=True, average_attn_weights=False`` output, and what the caller asked for is what it gets back
  (no weights, averaged weights, per-head weights), batch first or not, with a padding mask;
* :func:`capture_all` / :func:`attention_maps` on a module of yours: names, path, batch index, the model and input
  records, and every refusal in full;
* :func:`check_capture_memory`: the byte count, the budget, the message (with the CPU hint on a GPU), and the size
  words.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.attention import AttentionCapture, AttentionError
from explorer.attention.maps import _available_bytes, _size, attention_maps, capture_all, check_capture_memory
from explorer.models.layout import TokenLayout


class Two(torch.nn.Module):
    """Two MHA layers, batch first, the second with a padding mask; the caller decides about weights."""

    def __init__(self, need=False, average=True, batch_first=True, heads=2):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.MultiheadAttention(8, heads, batch_first=batch_first)
        self.b = torch.nn.MultiheadAttention(8, heads, batch_first=batch_first)
        self.need, self.average, self.batch_first = need, average, batch_first
        self.returned = []

    def forward(self, x, pad=None):
        y = x  # (B, T, D), or (T, B, D) when not batch first
        for m, mask in ((self.a, None), (self.b, pad)):
            out, w = m(y, y, y, key_padding_mask=mask, need_weights=self.need, average_attn_weights=self.average)
            self.returned.append(w)
            y = y + out
        return y


def _reference(model: Two, x, pad=None):
    """Per-head probabilities from the modules themselves (no capture)."""
    y = x
    out = []
    with torch.no_grad():
        for m, mask in ((model.a, None), (model.b, pad)):
            o, w = m(y, y, y, key_padding_mask=mask, need_weights=True, average_attn_weights=False)
            out.append(w)
            y = y + o
    return out


X = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
PAD = torch.tensor([[False] * 5, [False, False, False, True, True]])


@pytest.mark.parametrize("need, average", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_probabilities_are_the_modules_own_and_the_caller_gets_what_it_asked_for(need, average, batch_first):
    model = Two(need, average, batch_first).eval()
    x = X if batch_first else X.transpose(0, 1)
    want = _reference(model, x, PAD)
    with torch.no_grad():
        plain_out = model(x, PAD)
        plain_w = model.returned[-2:]
        calls = []
        with AttentionCapture(model, on_forward=lambda c: calls.append(c)) as cap:
            got_out = model(x, PAD)
    torch.testing.assert_close(got_out, plain_out)
    assert [c.name for c in calls] == ["a", "b"] and "mha-weights" in cap.paths
    for c, w in zip(calls, want):
        assert c.probs.shape == (2, 2, 5, 5)
        torch.testing.assert_close(c.probs, w.float())
    assert float(calls[1].probs[1, :, :, 3:].abs().max()) == 0.0  # padded keys get nothing
    for got_w, plain in zip(model.returned[-2:], plain_w):
        if not need:
            assert got_w is None and plain is None
        else:
            torch.testing.assert_close(got_w, plain)  # averaged or per head, as asked


def test_mha_gradients_come_from_the_sdpa_path_when_no_weights_are_asked_for():
    # Returned weights are a side copy no gradient reaches; without them MHA runs SDPA, where the capture records
    # the probabilities and their gradient.
    model = Two(need=False).eval()
    grads, calls = {}, []
    with AttentionCapture(model, gradients=True, on_forward=calls.append,
                          on_backward=lambda c: grads.__setitem__(c.name, c.grad)) as cap:
        y = model(X.clone())
        y.sum().backward()
    assert set(grads) == {"a", "b"} and grads["a"].shape == (2, 2, 5, 5) and float(grads["b"].abs().max()) > 0
    assert "mha-weights" not in cap.paths
    for c, w in zip(calls, _reference(model, X)):
        torch.testing.assert_close(c.probs, w.float(), rtol=1e-5, atol=1e-6)


def test_capture_all_names_layers_path_and_batch_and_refuses_what_it_cannot_stack():
    model = Two(need=True).eval()
    probs, names, path = capture_all(model, lambda: model(X, PAD), batch_index=1)
    want = _reference(model, X, PAD)
    assert probs.shape == (2, 2, 5, 5) and probs.dtype == np.float32 and names == ("a", "b") and path == "mha-weights"
    np.testing.assert_allclose(probs[1], want[1][1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(capture_all(model, lambda: model(X))[0][0], want[0][0].numpy(), rtol=1e-6)
    lin = torch.nn.Linear(8, 8)
    with pytest.raises(AttentionError) as e:
        capture_all(lin, lambda: lin(X))
    assert str(e.value) == ("No attention was captured from Linear: it has no nn.MultiheadAttention, no call to "
                            "torch.nn.functional.scaled_dot_product_attention and no transformers attention module.")

    class Uneven(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.MultiheadAttention(8, 2, batch_first=True)
            self.b = torch.nn.MultiheadAttention(8, 4, batch_first=True)

        def forward(self, x):
            return self.b(x, x, x)[0] + self.a(x, x, x)[0]

    u = Uneven()
    with pytest.raises(AttentionError) as e:
        capture_all(u, lambda: u(X))
    assert str(e.value) == ("Attention layers differ in shape ([(2, 5, 5), (4, 5, 5)]); capture a part of the model with "
                            "one shape.")


def test_attention_maps_of_your_own_module_records_the_model_and_the_input():
    from explorer.io import array_sha256
    from explorer.models.base import state_dict_sha256

    model = Two(need=False).eval()
    m = attention_maps(model, X)
    want = _reference(model, X)
    np.testing.assert_allclose(m.probs[1], want[1][0].numpy(), rtol=1e-6)
    assert m.layout == TokenLayout(0, (5,), ()) and m.layer_names == ("a", "b")
    assert (m.model.model_id, m.model.family, m.model.model_type, m.model.device, m.model.dtype) == (
        "Two", "custom", "Two", "cpu", "float32")
    assert m.model.weights_sha256 == state_dict_sha256(model) and m.model.image_size == 0
    assert (m.input.name, m.input.fit_policy, m.input.fit_description) == ("<input>", "none", "given as a (2, 5, 8) tensor")
    assert m.input.sha256 == array_sha256(X.numpy())
    assert m.notes == ("Your own Two, run by forward(x); 2 attention calls captured.",)
    via = attention_maps(model, {"x": X}, forward=lambda d: model(d["x"]))
    assert via.input.fit_description == "given as a dict" and via.input.sha256 == ""
    np.testing.assert_allclose(via.probs, m.probs)


def test_your_own_module_is_refused_in_words():
    model = Two().eval()
    with pytest.raises(AttentionError) as e:
        attention_maps(model, [1, 2])
    assert str(e.value) == ("attention_maps(module, x) runs module(x) on a tensor x; for a list input pass "
                            "forward=lambda x: ... that runs your module on it.")
    with pytest.raises(AttentionError) as e:
        attention_maps(model, X, forward=3)
    assert str(e.value) == "forward must be a callable run as forward(x), got int."
    with pytest.raises(AttentionError) as e:
        attention_maps(model, X, layout=TokenLayout(1, (3, 3)))
    assert str(e.value) == "The layout has 10 tokens (1 prefix + 9 patches) but the captured attention has 5."


def test_a_module_without_parameters_is_recorded_on_the_cpu():
    class Bare(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    m = attention_maps(Bare(), torch.randn(1, 2, 3, 4))
    assert (m.model.device, m.model.dtype) == ("cpu", "") and m.probs.shape == (1, 2, 3, 3)


def test_check_capture_memory_counts_float32_bytes_against_the_budget():
    need = 4 * 12 * 12 * 197 * 197
    assert check_capture_memory(12, 12, 197, "cpu", max_bytes=need) == need  # exactly at the budget: fine
    with pytest.raises(AttentionError) as e:
        check_capture_memory(12, 12, 197, "cpu", max_bytes=need - 1)
    assert str(e.value) == (f"Keeping every layer's attention needs 21.3 MiB (12 layers × 12 heads × 197² tokens) but only "
                            f"21.3 MiB is available on cpu. Use the streaming aggregates instead: explain(model, image, "
                            f"'rollout') or 'relevance' keep one layer at a time.")
    with pytest.raises(AttentionError) as e:
        check_capture_memory(24, 16, 4097, "cuda:0", max_bytes=2**30)
    assert str(e.value) == ("Keeping every layer's attention needs 24.01 GiB (24 layers × 16 heads × 4097² tokens) but only "
                            "1.00 GiB is available on cuda:0. Use the streaming aggregates instead: explain(model, image, "
                            "'rollout') or 'relevance' keep one layer at a time — or run on the CPU, which usually has "
                            "more memory.")
    free = _available_bytes("cpu")
    assert check_capture_memory(1, 1, 8, "cpu") == 256
    with pytest.raises(AttentionError, match="is available on cpu"):
        check_capture_memory(1, 1, int((free // 2 // 4) ** 0.5) + 2, "cpu")


def test_available_memory_is_what_the_kernel_reports():
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    assert abs(_available_bytes("cpu") - kib * 1024) < 512 * 2**20  # read twice, a moment apart


def test_sizes_are_written_in_the_largest_unit_that_fits():
    assert [_size(n) for n in (512, 1024, 2**20 - 1, 2**20, 3 * 2**19, 2**30 - 1, 2**30, 5 * 2**29)] == [
        "0.5 KiB", "1.0 KiB", "1024.0 KiB", "1.0 MiB", "1.5 MiB", "1024.0 MiB", "1.00 GiB", "2.50 GiB"]


def test_unbatched_mha_input_is_captured_with_a_batch_axis():
    model = Two(need=True, average=False).eval()
    x = X[0]  # (T, D): MHA's unbatched form, weights (H, T, T)
    with torch.no_grad():
        _o, want = model.a(x, x, x, need_weights=True, average_attn_weights=False)
        calls = []
        with AttentionCapture(model.a, on_forward=calls.append):
            model.a(x, x, x)
    assert calls[0].probs.shape == (1, 2, 5, 5)
    torch.testing.assert_close(calls[0].probs[0], want)


@pytest.mark.parametrize("average", [False, True])
def test_a_loss_that_reads_the_returned_weights_sends_their_gradient_to_the_backward_hook(average):
    model = Two(need=True, average=average).eval()
    got = []
    with AttentionCapture(model, gradients=True, on_backward=got.append):
        model(X)
        loss = sum(w.sum() for w in model.returned[-2:])  # e.g. an attention regulariser
        loss.backward()
    assert sorted(c.name for c in got) == ["a", "b"]
    for c in got:
        assert c.path == "mha-weights" and c.grad.shape == (2, 2, 5, 5) and c.probs.shape == (2, 2, 5, 5)
        torch.testing.assert_close(c.grad, torch.full((2, 2, 5, 5), 0.5 if average else 1.0))
    assert sorted(c.index for c in got) == [0, 1]
    model.returned.clear()
    quiet = []
    with AttentionCapture(model, gradients=False, on_backward=quiet.append):
        model(X)
        sum(w.sum() for w in model.returned[-2:]).backward()
    assert quiet == []  # gradients were not asked for
    unbatched = []
    with AttentionCapture(model.a, gradients=True, on_backward=unbatched.append):
        _o, w = model.a(X[0], X[0], X[0], need_weights=True, average_attn_weights=False)
        w.sum().backward()
    assert unbatched[0].grad.shape == (1, 2, 5, 5)


# ---------------------------------------------------------------------------------------------- video inputs


@pytest.fixture(scope="module")
def videomae(tmp_path_factory):
    import explorer
    from _tiny import save_tiny_videomae

    return explorer.load_model(str(save_tiny_videomae(tmp_path_factory.mktemp("vmae"))), device="cpu")


def test_what_counts_as_a_still_image(tmp_path):
    from pathlib import Path

    from explorer.attention.maps import _is_still
    from explorer.io import load_image

    rgb = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    assert _is_still(load_image(rgb)) and _is_still("chelsea") and not _is_still("no-such-sample")
    assert _is_still("photo.PNG") and _is_still(Path("a/b.jpeg")) and not _is_still("clip.mp4")
    for shape, still in (((8, 8, 3), True), ((8, 8, 1), True), ((8, 8, 4), True), ((8, 8), True), ((8, 8, 2), False),
                         ((8, 8, 5), False), ((4, 8, 8, 3), False), ((3, 8, 8), False)):
        assert _is_still(np.zeros(shape, np.float32)) is still, shape
    assert not _is_still(b"bytes") and not _is_still(3)


def test_a_still_image_is_repeated_over_the_clip_with_a_note(videomae):
    from explorer.attention.maps import _video_input
    from explorer.reconstruction import as_input

    wide = np.random.default_rng(1).random((24, 40, 3)).astype(np.float32)
    frames, info = _video_input(videomae, wide, "pad")
    px, ref = as_input(wide, "pad", videomae.layout.image_size)
    assert frames.shape == (4, 32, 32, 3)
    for f in frames:
        np.testing.assert_array_equal(f, px)
    assert (info.name, info.sha256, info.fit_policy, info.fit_description) == (ref.name, ref.sha256, "pad",
                                                                                 ref.fit_description)
    assert info.notes == (*ref.notes, "A still image given to a video model: the same frame repeated 4 times.")


def test_a_clip_of_another_length_is_resampled_and_keeps_its_records(videomae):
    from explorer.attention.maps import _video_input
    from explorer.preprocess import fit_image
    from explorer.video import LoadedVideo, sample_indices

    raw = np.random.default_rng(2).random((7, 20, 30, 3)).astype(np.float32)
    clip = LoadedVideo(raw, 12.5, "abc", "clip.mp4", 7, np.arange(7), ("a note",))
    frames, info = _video_input(videomae, clip, "center-crop")
    want = [fit_image(raw[i], 32, "center-crop") for i in sample_indices(7, 4)]
    np.testing.assert_array_equal(frames, np.stack([w.pixels for w in want]))
    assert (info.name, info.sha256, info.fit_policy, info.fit_description, info.notes) == (
        "clip.mp4", "abc", "center-crop", want[0].description, ("a note",))
    four = LoadedVideo(raw[:4], 12.5, "abc", "clip.mp4", 4, np.arange(4), ())
    np.testing.assert_array_equal(_video_input(videomae, four, "pad")[0],
                                  np.stack([fit_image(f, 32, "pad").pixels for f in raw[:4]]))


def test_a_video_file_is_read_to_the_models_frames_and_side(videomae, tmp_path):
    import cv2

    from explorer.attention.maps import _video_input
    from explorer.preprocess import fit_image
    from explorer.video import load_video

    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(3)
    for k in range(10):
        w.write((np.full((120, 160, 3), 20 * k) + rng.integers(0, 30, (120, 160, 3))).astype(np.uint8))
    w.release()
    frames, info = _video_input(videomae, str(path), "center-crop")
    ref = load_video(str(path), num_frames=4, max_side=64)
    assert ref.frames.shape[0] == 4 and max(ref.frames.shape[1:3]) == 64
    np.testing.assert_array_equal(frames, np.stack([fit_image(f, 32, "center-crop").pixels for f in ref.frames]))
    assert info.name == "clip.avi" and info.sha256 == ref.sha256


def test_an_image_under_a_video_name_is_a_still_and_garbage_reports_the_video_error(videomae, tmp_path):
    import cv2

    from explorer.attention.maps import _video_input
    from explorer.video import VideoLoadError

    img = (np.random.default_rng(4).random((32, 32, 3)) * 255).astype(np.uint8)
    path = tmp_path / "still.dat"
    ok, data = cv2.imencode(".png", img)
    path.write_bytes(data.tobytes())
    frames, info = _video_input(videomae, str(path), "center-crop")
    assert frames.shape == (4, 32, 32, 3) and info.notes[-1].startswith("A still image given to a video model")
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(VideoLoadError):
        _video_input(videomae, str(bad), "center-crop")


# ---------------------------------------------------------------------------------------------- explain: layers, records


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    from _tiny import save_tiny_vit

    return save_tiny_vit(tmp_path_factory.mktemp("vit"), seed=1)


@pytest.fixture(scope="module")
def vit1(vit_folder):
    import explorer

    return explorer.load_model(str(vit_folder), device="cpu")


def _eager(vit_folder, vit1, image):
    """transformers' own eager forward: per-layer attention (gradients kept) and the predicted class's logit."""
    from transformers import ViTForImageClassification

    from explorer.reconstruction import as_input

    model = ViTForImageClassification.from_pretrained(vit_folder, attn_implementation="eager").eval()
    x = vit1.normalise(as_input(image, "center-crop", vit1.layout.image_size)[0])
    out = model(pixel_values=x, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    t = int(out.logits[0].argmax())
    out.logits[0, t].backward()
    return [a[0].detach().double() for a in out.attentions], [a.grad[0].double() for a in out.attentions]


IMG = np.random.default_rng(9).random((40, 40, 3)).astype(np.float32)


@pytest.mark.parametrize("layers", [[0], [2], [0, 2]])
def test_explain_restricted_to_layers_equals_the_rules_on_those_layers(vit_folder, vit1, layers):
    from explorer.attention import explain

    A, G = _eager(vit_folder, vit1, IMG)
    T = A[0].shape[-1]
    eye = torch.eye(T, dtype=torch.float64)
    roll = None
    for i in layers:  # rollout: forward order, each step (½ mean_h A + ½ I) with rows normalised
        s = 0.5 * A[i].mean(0) + 0.5 * eye
        s = s / s.sum(-1, keepdim=True)
        roll = s if roll is None else s @ roll
    rel = None
    for i in reversed(layers):  # relevance: I + mean_h (∇A ⊙ A)⁺, accumulated from the last layer down
        s = eye + (G[i] * A[i]).clamp_min(0).mean(0)
        rel = s if rel is None else rel @ s
    r = explain(vit1, IMG, "rollout", layers=layers)
    np.testing.assert_allclose(r.map, roll[0, 1:].reshape(4, 4).numpy(), rtol=1e-4, atol=1e-6)
    v = explain(vit1, IMG, "relevance", layers=layers)
    np.testing.assert_allclose(v.map, rel[0, 1:].reshape(4, 4).numpy(), rtol=1e-3, atol=1e-7)
    assert all(p.grad is None for p in vit1.model.parameters())


def test_explain_records_what_each_method_chose(vit1):
    from explorer.attention import explain

    occ = explain(vit1, IMG, "occlusion")
    assert occ.options["baseline"] == "the input's mean colour" and occ.options["window"] == "one patch (video: one tubelet)"
    gs = explain(vit1, IMG, "gradient-shap", samples=2, noise=0.2)
    x = vit1.normalise_input(np.asarray(gs.image))
    assert gs.options["baselines"] == "zeros (dataset mean colour) and the input's mean colour"
    assert gs.options["stdev"] == pytest.approx(0.2 * float(x.max() - x.min()), rel=1e-5)
    cam = explain(vit1, IMG, "gradcam")
    assert cam.options["layer"] == "input of block 2 (the last)"
    with pytest.raises(AttentionError) as e:
        explain(vit1, IMG, "smoothgrad", base="occlusion")
    assert str(e.value) == "SmoothGrad runs over saliency or integrated-gradients, not 'occlusion'."


def test_registering_a_random_method_needs_a_seed(monkeypatch):
    from explorer.attention import registry as R

    monkeypatch.setattr(R, "REGISTRY", {})
    ok = R.register(R.ImageMethod("coin", "coin", "coin", compute=lambda inp: None, stochastic=True, options={"seed": 0}))
    plain = R.register(R.ImageMethod("plain", "plain", "plain", compute=lambda inp: None, options={"k": 1}))
    assert R.REGISTRY == {"coin": ok, "plain": plain}
    with pytest.raises(ValueError) as e:
        R.register(R.ImageMethod("dice", "dice", "dice", compute=lambda inp: None, stochastic=True, options={"k": 1}))
    assert str(e.value) == "Method 'dice' draws random numbers: give it a 'seed' option."


# ---------------------------------------------------------------------------------------------- memory and refusals


def test_available_memory_reads_the_kernel_and_falls_back_to_sysconf(monkeypatch):
    import builtins
    import os

    from explorer.attention import maps as M

    def meminfo():
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) * 1024

    before = meminfo()
    got = _available_bytes("cpu")
    after = meminfo()
    assert min(before, after) - 4 * 2**20 <= got <= max(before, after) + 4 * 2**20
    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path) == "/proc/meminfo":
            raise OSError("no /proc here")
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    want = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    assert abs(_available_bytes("cpu") - want) < 64 * 2**20
    monkeypatch.setattr(builtins, "open", real_open)
    asked = []
    monkeypatch.setattr(M.torch.cuda, "mem_get_info", lambda d: asked.append(d) or (123, 456))
    assert _available_bytes("cuda:1") == 123 and asked == ["cuda:1"]


def test_the_default_budget_is_half_the_devices_free_memory(monkeypatch):
    from explorer.attention import maps as M

    asked = []
    monkeypatch.setattr(M, "_available_bytes", lambda d: asked.append(d) or 1001)
    assert check_capture_memory(1, 1, 11, "cpu") == 484  # 4 · 11² ≤ 500
    with pytest.raises(AttentionError, match=r"needs 576\.0 B|needs 0\.6 KiB") as e:
        check_capture_memory(1, 1, 12, "cpu")
    assert "but only 0.5 KiB is available on cpu" in str(e.value) and asked == ["cpu", "cpu"]


def test_attention_maps_checks_memory_on_the_models_device_and_names_its_layers(vit1, monkeypatch):
    from explorer.attention import maps as M

    asked = []
    real = M._available_bytes
    monkeypatch.setattr(M, "_available_bytes", lambda d: asked.append(d) or real(d))
    m = attention_maps(vit1, IMG)
    assert asked == [vit1.device]
    assert m.layer_names == tuple(n for n, mod in vit1.attention_module.named_modules()
                                  if type(mod).__name__.endswith("Attention") and "attention" in n.split(".")[-1])
    with pytest.raises(AttentionError) as e:
        attention_maps(vit1, IMG, forward=lambda x: x)
    assert str(e.value) == ("forward= and layout= are for your own torch modules; a model from explorer.load_model knows "
                            "its forward and token layout.")


def test_attention_maps_check_layer_and_head_ranges(vit1):
    m = attention_maps(vit1, IMG)
    m.query_map(2, 3)
    for layer in (-1, 3):
        with pytest.raises(AttentionError) as e:
            m.query_map(layer, 0)
        assert str(e.value) == f"Layer {layer} is out of range: this model has layers 0..2."
    for head in (-1, 4):
        with pytest.raises(AttentionError) as e:
            m.query_map(0, head)
        assert str(e.value) == f"Head {head} is out of range: this model has heads 0..3 (or 'mean')."
    np.testing.assert_array_equal(m.query_map(1, "mean"), m.query_map(1, "mean", query="cls"))
    own = attention_maps(Two().eval(), X)
    with pytest.raises(AttentionError) as e:
        own.head_distance()
    assert str(e.value) == ("Mean attention distance needs a patch grid over an image: pass layout=TokenLayout(...) "
                            "with image_size and patch_size.")


def test_explain_on_a_model_that_makes_no_attention_call_says_so(vit1):
    import copy

    from explorer.attention import explain

    silent = copy.copy(vit1)
    silent.attention_forward = lambda x: None
    with pytest.raises(AttentionError) as e:
        explain(silent, IMG, "rollout")
    assert str(e.value) == "No attention was captured from this model."
    r = explain(vit1, IMG, "rollout")
    with AttentionCapture(vit1.attention_module) as cap, torch.no_grad():
        vit1.attention_forward(vit1.normalise_input(np.asarray(r.image)))
    assert r.path == ",".join(sorted(cap.paths)) and r.path


# ---------------------------------------------------------------------------------------------- attention_probs vs SDPA


def _sdpa_probs(q, k, **kw):
    """torch's own SDPA with the identity as values returns exactly the attention probabilities."""
    Tk = k.shape[-2]
    eye = torch.eye(Tk, dtype=torch.float64).expand(*k.shape[:-2], Tk, Tk)
    return torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), eye, **kw)


@pytest.mark.parametrize("case", ["plain", "scale", "causal", "bool", "float", "broadcast", "causal-rect", "gqa"])
def test_attention_probs_equal_sdpas_own_semantics(case):
    from explorer.attention.capture import attention_probs

    g = torch.Generator().manual_seed(7)
    B, H, Tq, Tk, d = 2, 4, 5, 7, 8
    q = torch.randn(B, H, Tq, d, generator=g)
    k = torch.randn(B, H, Tk, d, generator=g)
    kw = {}
    if case == "scale":
        kw = dict(scale=0.3)
    elif case == "causal":
        q, k = q[:, :, :5], k[:, :, :5]
        kw = dict(is_causal=True)
    elif case == "causal-rect":
        kw = dict(is_causal=True)  # top-left aligned, as SDPA
    elif case == "bool":
        mask = torch.rand(B, H, Tq, Tk, generator=g) > 0.3
        mask[..., 0] = True
        kw = dict(attn_mask=mask)
    elif case == "float":
        kw = dict(attn_mask=torch.randn(B, 1, Tq, Tk, generator=g))
    elif case == "broadcast":
        kw = dict(attn_mask=torch.tensor([[True] * 5 + [False] * 2]))  # (1, Tk): the last two keys are padding
    elif case == "gqa":
        k = k[:, :2]
        kw = dict(enable_gqa=True)
    got = attention_probs(q, k, **kw)
    ref_k = k.repeat_interleave(2, dim=-3) if case == "gqa" else k
    ref_kw = {kk: v for kk, v in kw.items() if kk != "enable_gqa"}
    want = _sdpa_probs(q, ref_k, **ref_kw)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(-1), torch.ones(got.shape[:-1]), rtol=1e-5, atol=1e-5)


def test_attention_probs_of_half_precision_inputs_are_float32_and_fully_masked_rows_are_zero():
    from explorer.attention.capture import attention_probs

    g = torch.Generator().manual_seed(8)
    q, k = torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 2, 3, 4, generator=g)
    got = attention_probs(q.half(), k.half())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, attention_probs(q.half().float(), k.half().float()))
    mask = torch.ones(1, 2, 3, 3, dtype=torch.bool)
    mask[0, 1, 2] = False  # one query may attend nowhere
    p = attention_probs(q, k, attn_mask=mask)
    assert float(p[0, 1, 2].abs().sum()) == 0.0 and torch.isfinite(p).all()
    torch.testing.assert_close(p[0, 0], _sdpa_probs(q, k)[0, 0].float(), rtol=1e-5, atol=1e-6)
    # Heads that do not divide evenly are not grouped (SDPA would refuse them too).
    assert attention_probs(q, k[:, :1]).shape == (1, 2, 3, 3)


def test_explain_returns_a_complete_record(vit1):
    import time

    from explorer.attention import explain
    from explorer.attention.registry import get_method
    from explorer.reconstruction import as_input

    t0 = time.perf_counter()
    r = explain(vit1, IMG, "integrated-gradients", query=(1, 2))
    elapsed = time.perf_counter() - t0
    px, info = as_input(IMG, "center-crop", vit1.layout.image_size)
    t = vit1.pick_target(vit1.normalise_input(px), None)
    assert r.method == "integrated-gradients" and r.map.dtype == np.float32 and r.patch_size == 8
    assert r.options == {"query": [1, 2], "steps": 32, "target": t}
    assert r.model == vit1.info and r.input == info and 0 < r.seconds <= elapsed
    assert r.notes == tuple(vit1.attention_notes) + tuple(info.notes)
    roll = explain(vit1, IMG, "rollout", query=5, discard=0.25)
    assert roll.options == {"query": 5, "fusion": "mean", "discard": 0.25, "residual": True}
    assert "target" not in roll.options and roll.path
    assert explain(vit1, IMG).method == "rollout" and explain(vit1, IMG).options["query"] == "cls"
    with pytest.raises(AttentionError) as e:
        explain(vit1, IMG, "raw")
    assert str(e.value) == "Raw attention is per layer and head: use attention_maps(...).query_map(layer, head)."
    with pytest.raises(AttentionError) as e:
        explain(vit1, IMG, "rollout", samples=3, colour="red")
    assert str(e.value) == "explain() has no option 'colour'; rollout's options: fusion, discard, residual."
    with pytest.raises(AttentionError) as e:
        explain(vit1, IMG, "saliency", bogus=1)
    assert str(e.value) == f"explain() has no option 'bogus'; saliency's options: {', '.join(get_method('saliency').options) or 'none'}."
    with pytest.raises(AttentionError) as e:
        explain(torch.nn.Linear(2, 2), IMG)
    assert str(e.value).startswith("explain needs a model from explorer.load_model")


@pytest.mark.parametrize("case", ["plain", "mask", "causal", "scale", "gqa"])
def test_captured_sdpa_calls_keep_their_output_probabilities_and_gradient(case):
    g = torch.Generator().manual_seed(11)
    Hq, Hk = 4, (2 if case == "gqa" else 4)
    q = torch.randn(1, Hq, 5, 8, generator=g)
    k = torch.randn(1, Hk, 5, 8, generator=g)
    v = torch.randn(1, Hk, 5, 8, generator=g)
    kw = {"mask": dict(attn_mask=(torch.rand(1, 1, 5, 5, generator=g) > 0.4) | torch.eye(5, dtype=torch.bool)),
          "causal": dict(is_causal=True), "scale": dict(scale=0.2), "gqa": dict(enable_gqa=True)}.get(case, {})

    class One(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)

    m = One()
    plain = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)
    calls, grads = [], []
    qq = q.clone().requires_grad_(True)
    with AttentionCapture(m, gradients=True, on_forward=calls.append, on_backward=grads.append) as cap:
        out = m(qq, k, v)
        (out * torch.arange(8.0)).sum().backward()
    torch.testing.assert_close(out.detach(), plain)
    assert cap.paths == {"sdpa-recomputed"} and len(calls) == 1 and len(grads) == 1
    kr = k.repeat_interleave(Hq // Hk, dim=-3)
    vr = v.repeat_interleave(Hq // Hk, dim=-3)
    want = _sdpa_probs(q, kr, **{a: b for a, b in kw.items() if a != "enable_gqa"}).float()
    torch.testing.assert_close(calls[0].probs, want, rtol=1e-5, atol=1e-6)
    # ∂t/∂A with t = Σ out · w: (∂t/∂out) vᵀ, where ∂t/∂out = w at every query.
    w = torch.arange(8.0).expand(1, Hq, 5, 8)
    torch.testing.assert_close(grads[0].grad, w @ vr.transpose(-2, -1), rtol=1e-5, atol=1e-5)
    quiet = []
    with AttentionCapture(m, gradients=False, on_backward=quiet.append):
        m(q.clone().requires_grad_(True), k, v).sum().backward()
    assert quiet == []


# ---------------------------------------------------------------------------------------------- entering and leaving


class _Config:
    def __init__(self, impl):
        self._attn_implementation = impl


class Switchable(torch.nn.Module):
    """A model whose attention implementation can be switched, recording every switch (and failing when told)."""

    def __init__(self, impl, fail_on=()):
        super().__init__()
        self.config = _Config(impl)
        self.switches = []
        self.fail_on = fail_on

    def set_attn_implementation(self, impl):
        self.switches.append(impl)
        if impl in self.fail_on:
            raise ValueError(f"no {impl} here")
        self.config._attn_implementation = impl

    def forward(self, q):
        if self.config._attn_implementation == "sdpa":
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return torch.softmax(q @ q.transpose(-2, -1) / q.shape[-1] ** 0.5, -1) @ q  # "eager": no SDPA call


Q = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("impl", ["sdpa", None])
def test_a_model_already_on_sdpa_is_not_switched(impl):
    m = Switchable(impl)
    with AttentionCapture(m, keep=True) as cap:
        m(Q)
    assert m.switches == [] and m.config._attn_implementation == impl
    assert cap.count == (1 if impl == "sdpa" else 0)


def test_an_eager_model_is_switched_to_sdpa_for_the_capture_and_back():
    m = Switchable("eager")
    with AttentionCapture(m, keep=True) as cap:
        assert m.config._attn_implementation == "sdpa"
        m(Q)
    assert m.switches == ["sdpa", "eager"] and m.config._attn_implementation == "eager"
    assert cap.count == 1 and cap.calls[0].name == "Switchable"
    torch.testing.assert_close(cap.calls[0].probs, _sdpa_probs(Q, Q).float(), rtol=1e-5, atol=1e-6)


def test_a_model_without_a_switch_is_left_alone():
    plain = torch.nn.Module()
    plain.config = _Config("eager")
    with AttentionCapture(plain) as cap:
        pass
    assert plain.config._attn_implementation == "eager" and cap.count == 0


def test_a_failed_switch_is_an_attention_error_and_releases_the_lock():
    import threading

    m = Switchable("flash_attention_2", fail_on=("sdpa",))
    with pytest.raises(AttentionError) as e:
        with AttentionCapture(m):
            pass
    assert str(e.value) == "This model uses 'flash_attention_2' attention and cannot switch to SDPA for capture: no sdpa here"
    assert torch.nn.functional.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"
    from explorer.models.base import model_lock

    got = []

    def other_thread():
        ok = model_lock().acquire(timeout=5)
        if ok:
            model_lock().release()
        got.append(ok)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(10)
    assert got == [True]


def test_a_failed_switch_back_is_silent_and_the_capture_still_ends():
    m = Switchable("eager", fail_on=("eager",))
    with AttentionCapture(m) as cap:
        m(Q)
    assert m.switches == ["sdpa", "eager"] and m.config._attn_implementation == "sdpa" and cap.count == 1
    assert torch.nn.functional.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"


# ---------------------------------------------------------------------------------------------- names and hooks


def _sdpa_self(x):
    return torch.nn.functional.scaled_dot_product_attention(x, x, x)


class Helper(torch.nn.Module):  # a module of another class that makes the call inside an attention module
    def forward(self, x):
        return _sdpa_self(x)


class OutputAttention(torch.nn.Module):  # "…Attention" with "Output" in the name: not an attention module
    def forward(self, x):
        return _sdpa_self(x)


class BlockAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.helper = Helper()
        self.out = OutputAttention()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.out(self.helper(self.proj(x)))


class MixerBlock(torch.nn.Module):
    def forward(self, x):
        return _sdpa_self(x)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = BlockAttention()
        self.mixer = MixerBlock()
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x):
        y = self.mixer(self.block(self.norm(x)))
        return _sdpa_self(y)  # the model's own forward, after its children have finished


def test_each_call_is_named_by_the_innermost_attention_module_else_the_module_that_made_it():
    net = Net()
    with AttentionCapture(net, keep=True) as cap:
        net(Q)
    assert [c.name for c in cap.calls] == ["block", "block", "mixer", "Net"]
    assert [c.index for c in cap.calls] == [0, 1, 2, 3] and cap.count == 4
    assert {c.path for c in cap.calls} == {"sdpa-recomputed"}
    # after the capture nothing is left on the modules or on the stacks
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in net.modules())
    assert cap._stack == [] and cap._other == []


def test_torchs_own_building_blocks_are_not_hooked_but_multihead_attention_is():
    net = Net()
    net.mha = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    with AttentionCapture(net):
        hooked = {name for name, m in net.named_modules() if m._forward_pre_hooks}
        counts = (len(net.mha._forward_pre_hooks), len(net.mha._forward_hooks))
    assert hooked == {"", "block", "block.helper", "block.out", "mixer", "mha"}
    assert counts == (2, 2)  # its weights, and its name


def test_by_default_calls_are_not_kept_and_multihead_weights_are_asked_for():
    model = Two(need=False).train(False)
    with AttentionCapture(model) as cap:
        model(X)  # autograd on, need_weights=False: without gradients the weights are still asked for
    assert cap.calls == [] and cap.count == 2 and cap.paths == {"mha-weights"}
    assert model.returned[-2:] == [None, None]


def test_with_gradients_a_multihead_call_without_need_weights_keeps_its_weights_path():
    class Default(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a = torch.nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.a(x, x, x)  # need_weights left at its default (True)

    m = Default()
    with AttentionCapture(m, gradients=True, keep=True) as cap:
        out, w = m(X)
    assert cap.paths == {"mha-weights"} and cap.count == 1
    torch.testing.assert_close(w, cap.calls[0].probs.mean(1))


def test_the_wrapped_sdpa_passes_every_argument_through():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 4, 5, 8, generator=g) for _ in range(3))
    m = torch.nn.Module()
    with AttentionCapture(m):
        torch.manual_seed(4)
        dropped = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
        with pytest.raises(TypeError):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, colour="red")
        with pytest.raises(RuntimeError):  # 4 query heads, 2 key heads, no enable_gqa: SDPA's own refusal
            torch.nn.functional.scaled_dot_product_attention(q, k[:, :2], v[:, :2])
    torch.manual_seed(4)
    torch.testing.assert_close(dropped, torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.5))
    assert not torch.allclose(dropped, torch.nn.functional.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("B, Hq, Hk, d", [(4, 4, 2, 4), (2, 4, 2, 2), (1, 4, 2, 3), (3, 4, 2, 3), (3, 6, 3, 2)])
def test_grouped_heads_are_repeated_for_the_probabilities_and_the_gradient(B, Hq, Hk, d):
    from explorer.attention.capture import attention_probs

    g = torch.Generator().manual_seed(B * 10 + d)
    q = torch.randn(B, Hq, 5, d, generator=g)
    k, v = torch.randn(B, Hk, 5, d, generator=g), torch.randn(B, Hk, 5, d, generator=g)
    kr, vr = k.repeat_interleave(Hq // Hk, dim=-3), v.repeat_interleave(Hq // Hk, dim=-3)
    want = _sdpa_probs(q, kr).float()
    torch.testing.assert_close(attention_probs(q, k), want, rtol=1e-5, atol=1e-6)  # grouped without being told
    m = torch.nn.Module()
    grads = []
    qq = q.clone().requires_grad_(True)
    with AttentionCapture(m, gradients=True, on_backward=grads.append):
        out = torch.nn.functional.scaled_dot_product_attention(qq, k, v, enable_gqa=True)
        out.sum().backward()
    assert len(grads) == 1 and grads[0].path == "sdpa-recomputed" and grads[0].name == "Module"
    torch.testing.assert_close(grads[0].probs, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0].grad, torch.ones(B, Hq, 5, d) @ vr.transpose(-2, -1), rtol=1e-5, atol=1e-5)


def test_unbatched_three_axis_inputs_are_captured_with_their_gradient():
    from explorer.attention.capture import attention_probs

    g = torch.Generator().manual_seed(6)
    q, k, v = torch.randn(2, 5, 3, generator=g), torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 3, generator=g)
    torch.testing.assert_close(attention_probs(q, k), _sdpa_probs(q, k).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention_probs(q, k, is_causal=True), _sdpa_probs(q, k, is_causal=True).float(),
                               rtol=1e-5, atol=1e-6)
    grads = []
    qq = q.clone().requires_grad_(True)
    with AttentionCapture(torch.nn.Module(), gradients=True, on_backward=grads.append):
        torch.nn.functional.scaled_dot_product_attention(qq, k, v).sum().backward()
    torch.testing.assert_close(grads[0].grad, torch.ones(2, 5, 3) @ v.transpose(-2, -1), rtol=1e-5, atol=1e-5)


def test_each_row_is_normalised_on_its_own_even_far_below_the_others():
    from explorer.attention.capture import attention_probs

    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 1, 3, 4, generator=g), torch.randn(1, 1, 4, 4, generator=g)
    low = torch.zeros(1, 1, 3, 4)
    low[..., 0, :] = -1000.0  # one query's scores all 1000 lower: its softmax is unchanged
    got = attention_probs(q, k, attn_mask=low)
    torch.testing.assert_close(got, attention_probs(q, k), rtol=1e-5, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(1, 1, 3))


# ---------------------------------------------------------------------------------------------- what the views accept


def test_names_that_cannot_be_a_model_are_refused_before_loading():
    from explorer.attention.maps import _adapter
    from explorer.models import ModelLoadError

    with pytest.raises(AttentionError) as e:
        _adapter("mini-mae\nrm -rf /")
    assert str(e.value) == "'mini-mae\\nrm -rf /'… is not a model name, hub id or folder; pass one, or an adapter from explorer.load_model."
    long = "x" * 1025
    with pytest.raises(AttentionError) as e:
        _adapter(long)
    assert str(e.value) == f"{'x' * 60!r}… is not a model name, hub id or folder; pass one, or an adapter from explorer.load_model."
    with pytest.raises(ModelLoadError):  # 1024 characters may be a name: the loader answers
        _adapter("x" * 1024)


def test_a_name_or_folder_is_loaded_and_an_adapter_passes_through(vit_folder, vit1):
    from explorer.attention.maps import _adapter

    loaded = _adapter(vit_folder)
    assert loaded.weights_sha256 == vit1.weights_sha256 and loaded.layout == vit1.layout
    assert _adapter(vit1) is vit1


def test_half_an_adapter_and_other_objects_are_refused_in_words():
    from explorer.attention.maps import _adapter

    class LayoutOnly:
        layout = TokenLayout(1, (2, 2))

    with pytest.raises(AttentionError) as e:
        _adapter(LayoutOnly(), "explain")
    assert str(e.value) == ("The attention views take an image or video model from explorer.load_model (or its name), or "
                            "your own torch.nn.Module with attention_maps(module, x, forward=...); got LayoutOnly.")
    with pytest.raises(AttentionError) as e:
        _adapter(torch.nn.Linear(2, 2))
    assert str(e.value).startswith("this needs a model from explorer.load_model (or its name); for your own Linear")
    with pytest.raises(AttentionError) as e:
        _adapter(torch.nn.Linear(2, 2), "explain")
    assert str(e.value) == ("explain needs a model from explorer.load_model (or its name); for your own Linear use "
                            "attention_maps(module, x, forward=...) and its .rollout().")


# ---------------------------------------------------------------------------------------------- Grad-CAM's token grid


class _Block(torch.nn.Module):
    """A block that records what it received, called positionally or by keyword."""

    def forward(self, *args, **kwargs):
        self.seen = (args, kwargs)
        h = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))
        return h * 2


class _Blocks:
    def __init__(self):
        self.blocks = torch.nn.ModuleList([_Block(), _Block()])


@pytest.mark.parametrize("call", ["positional", "hidden_states", "hidden_states-second", "other-keyword"])
def test_gradcam_layer_reroutes_the_last_blocks_tokens_through_the_grid(call):
    from explorer.attention.registry import gradcam_layer

    ad = _Blocks()
    layout = TokenLayout(1, (2, 3))
    h = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(1))
    extra = torch.tensor(3.0)
    grid, handle = gradcam_layer(ad, layout)
    seen_grid = []
    grid.register_forward_hook(lambda _m, _a, out: seen_grid.append(out))
    block = ad.blocks[-1]
    try:
        if call == "positional":
            out = block(h, extra, "third")
            args, kwargs = block.seen
            assert len(args) == 3 and args[1] is extra and args[2] == "third" and kwargs == {}
            passed = args[0]
        elif call.startswith("hidden_states"):
            out = block(hidden_states=h, scale=extra) if call == "hidden_states" else block(scale=extra, hidden_states=h)
            args, kwargs = block.seen
            assert args == () and set(kwargs) == {"hidden_states", "scale"} and kwargs["scale"] is extra
            passed = kwargs["hidden_states"]
        else:
            out = block(x=h, scale=extra)
            args, kwargs = block.seen
            assert args == () and set(kwargs) == {"x", "scale"} and kwargs["scale"] is extra
            passed = kwargs["x"]
    finally:
        handle.remove()
    torch.testing.assert_close(passed, h)  # the tokens are unchanged on the way through the grid
    torch.testing.assert_close(out, 2 * h)
    assert len(seen_grid) == 1
    torch.testing.assert_close(seen_grid[0], h[:, 1:].transpose(1, 2).reshape(2, 5, 2, 3))
    assert ad.blocks[0]._forward_pre_hooks == {} and block._forward_pre_hooks == {}


# ---------------------------------------------------------------------------------------------- your own module's record


def test_your_own_cross_attention_module_is_laid_out_over_its_keys_and_timed():
    import time

    from explorer.models.base import ModelInfo, state_dict_sha256

    class Cross(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.keys = torch.nn.Parameter(torch.randn(1, 2, 6, 4, generator=torch.Generator().manual_seed(3)))

        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, self.keys, self.keys)

    mod = Cross()
    q = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(4))
    t0 = time.perf_counter()
    m = attention_maps(mod, q)
    elapsed = time.perf_counter() - t0
    assert m.probs.shape == (1, 2, 3, 6) and m.layout == TokenLayout(0, (6,), ())
    assert 0 < m.seconds <= elapsed
    assert m.model == ModelInfo(model_id="Cross", family="custom", model_type="Cross", device="cpu", dtype="float32",
                                image_size=0, patch_size=1, norm_pix_loss=False, weights_sha256=state_dict_sha256(mod))
    given = attention_maps(mod, q, layout=TokenLayout(0, (2, 3), patch_size=4))
    assert (given.model.patch_size, given.model.norm_pix_loss, given.patch_size) == (4, False, 4)


# ---------------------------------------------------------------------------------------------- explain's options


def test_explain_passes_its_steps_and_unknown_options_are_all_named(vit1):
    from explorer.attention import explain
    from explorer.attention.registry import REGISTRY

    # The step count reaches captum: an explicit count gives the same map twice and another map than the default's
    # (attribution.py's defaults: 32 steps for integrated gradients, 16 under SmoothGrad).
    few = explain(vit1, IMG, "integrated-gradients", steps=3)
    assert few.options["steps"] == 3
    assert np.array_equal(few.map, explain(vit1, IMG, "integrated-gradients", steps=3).map)
    assert not np.array_equal(few.map, explain(vit1, IMG, "integrated-gradients", steps=32).map)
    sg = explain(vit1, IMG, "smoothgrad", base="integrated-gradients", samples=2, steps=2)
    assert sg.options["steps"] == 2
    assert not np.array_equal(sg.map, explain(vit1, IMG, "smoothgrad", base="integrated-gradients", samples=2, steps=16).map)
    with pytest.raises(AttentionError) as e:
        explain(vit1, IMG, "rollout", colour="red", size=3)
    assert str(e.value) == "explain() has no option 'colour', 'size'; rollout's options: fusion, discard, residual."
    with pytest.raises(AttentionError) as e:
        explain(vit1, IMG, "magic")
    assert str(e.value) == f"Unknown method 'magic'; choose from {', '.join(REGISTRY)}."


def test_gradcam_leaves_no_gradient_on_the_model(vit1):
    from explorer.attention import explain

    r = explain(vit1, IMG, "gradcam")
    assert r.map.shape == vit1.grid and r.map.dtype == np.float32
    assert all(p.grad is None for p in vit1.model.parameters())


@pytest.mark.parametrize("method, opts", [("smoothgrad", dict(samples=2)), ("gradient-shap", dict(samples=2)),
                                          ("integrated-gradients", dict(steps=2)), ("saliency", {})])
def test_video_attributions_are_summed_per_tubelet(videomae, method, opts):
    from explorer.attention import explain

    clip = np.random.default_rng(3).random((4, 32, 32, 3)).astype(np.float32)
    r = explain(videomae, clip, method, **opts)
    assert r.map.shape == (2, 4, 4) == tuple(videomae.layout.grid)
    assert np.isfinite(r.map).all() and r.map.std() > 0


def test_attention_maps_of_an_adapter_is_timed(vit1):
    import time

    t0 = time.perf_counter()
    m = attention_maps(vit1, IMG)
    assert 0 < m.seconds <= time.perf_counter() - t0
