"""Token layouts read from the config by the adapters, checked against transformers' own eager attentions.

Every layout the explorer knows — one CLS token (ViT, ViTMAE, CLIP, DINOv2), CLS + distillation (DeiT), CLS +
registers (DINOv2 with registers), none (VideoMAE), square and non-square grids — is loaded from a tiny random
checkpoint written by ``save_pretrained``.  The maps, rollout, relevance and faithfulness are compared with a hand
computation from the ``(L, B, H, T, T)`` attentions transformers returns with ``output_attentions=True`` on an
eager model: the right ``(gh, gw)`` / ``(t, gh, gw)`` grid, the prefix tokens left out.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers
from _tiny import random_image, save_tiny_clip

import explorer
from explorer import attention as A
from explorer.attention.faithfulness import _scorer, deletion_insertion
from explorer.models.layout import TokenLayout

SMALL = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
DECODER = dict(decoder_hidden_size=24, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=48)
VIDEO = dict(num_frames=4, tubelet_size=2)
REGS = tuple(f"reg{i}" for i in range(4))

#: id → (transformers class, config class, config overrides, adapter class, prefix names, grid, (H, W), target kind)
CASES = {
    "vit": ("ViTForImageClassification", "ViTConfig", dict(num_labels=3), "ViTAdapter", ("cls",), (4, 4), (32, 32), "logits"),
    "vit-32x48": ("ViTForImageClassification", "ViTConfig", dict(num_labels=3, image_size=[32, 48]), "ViTAdapter", ("cls",),
                  (4, 6), (32, 48), "logits"),
    "vit-48x32": ("ViTForImageClassification", "ViTConfig", dict(num_labels=3, image_size=(48, 32)), "ViTAdapter", ("cls",),
                  (6, 4), (48, 32), "logits"),
    "mae": ("ViTMAEForPreTraining", "ViTMAEConfig", DECODER, "MAEAdapter", ("cls",), (4, 4), (32, 32), "mae"),
    "clip": (None, None, {}, "CLIPImageAdapter", ("cls",), (4, 4), (32, 32), "clip"),
    "deit-teacher": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(num_labels=3), "DeiTAdapter", ("cls", "dist"),
                     (4, 4), (32, 32), "logits"),
    "deit-32x48": ("DeiTForImageClassification", "DeiTConfig", dict(num_labels=3, image_size=[32, 48]), "DeiTAdapter",
                   ("cls", "dist"), (4, 6), (32, 48), "logits"),
    "deit-model": ("DeiTModel", "DeiTConfig", {}, "DeiTAdapter", ("cls", "dist"), (4, 4), (32, 32), "cls"),
    "dinov2-registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig", dict(num_register_tokens=4),
                         "Dinov2RegistersAdapter", ("cls", *REGS), (4, 4), (32, 32), "pooler"),
    "dinov2-registers-classifier": ("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig",
                                    dict(num_register_tokens=2, num_labels=3), "Dinov2RegistersAdapter",
                                    ("cls", "reg0", "reg1"), (4, 4), (32, 32), "logits"),
    "dinov2": ("Dinov2Model", "Dinov2Config", {}, "Dinov2Adapter", ("cls",), (4, 4), (32, 32), "pooler"),
    "videomae": ("VideoMAEModel", "VideoMAEConfig", VIDEO, "VideoMAEAdapter", (), (2, 4, 4), (32, 32), "mean"),
    "videomae-32x48": ("VideoMAEModel", "VideoMAEConfig", dict(VIDEO, image_size=[32, 48]), "VideoMAEAdapter", (),
                       (2, 4, 6), (32, 48), "mean"),
    "videomae-pretraining": ("VideoMAEForPreTraining", "VideoMAEConfig", dict(VIDEO, **DECODER), "VideoMAEPreTrainingAdapter",
                             (), (2, 4, 4), (32, 32), "mean"),
}

IMG = random_image(64, seed=5)[:40]  # 40 x 64: every model fits it to its own input size
CLIP = np.random.default_rng(0).random((6, 40, 56, 3)).astype(np.float32)  # a 6-frame clip


def save_tiny(folder, case: str, seed: int = 0):
    """A random checkpoint of ``case`` written by ``save_pretrained`` (prefix tokens and positions randomised:
    transformers 5 leaves several of them at zero, which would hide a wrong token order)."""
    cls_name, cfg_name, over = CASES[case][:3]
    if cls_name is None:
        return save_tiny_clip(folder, seed=seed)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(copy.deepcopy(getattr(transformers, cfg_name)(**{**SMALL, **over})))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("position_embedding", "cls_token", "register_tokens", "distillation_token")):
                p.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    cache = {}

    def get(case):
        if case not in cache:
            cache[case] = explorer.load_model(str(save_tiny(tmp_path_factory.mktemp(case), case)), device="cpu")
        return cache[case]

    return get


def _input(adapter):
    return CLIP if adapter.layout.is_video else IMG


def _eager(adapter, x, *, grad: bool = False):
    """transformers' own forward with ``output_attentions=True`` on the eager path (the reference)."""
    m = adapter.model
    m.set_attn_implementation("eager")
    try:
        with torch.set_grad_enabled(grad):
            if isinstance(m, transformers.ViTMAEForPreTraining):
                old, m.config.mask_ratio = m.config.mask_ratio, 0.0
                try:
                    return m.vit(pixel_values=x, noise=torch.arange(adapter.num_patches, dtype=torch.float32)[None],
                                 output_attentions=True)
                finally:
                    m.config.mask_ratio = old
            if isinstance(m, transformers.CLIPModel):
                return m.vision_model(pixel_values=x, output_attentions=True)
            if isinstance(m, transformers.VideoMAEForPreTraining):
                return m.videomae(pixel_values=x, output_attentions=True)  # no bool_masked_pos: every tubelet
            return m(pixel_values=x, output_attentions=True)
    finally:
        m.set_attn_implementation("sdpa")


def _target(adapter, out, kind: str) -> torch.Tensor:
    """The scalar each family explains, computed from transformers' outputs (independently of the adapter)."""
    if kind == "logits":
        return out.logits[0, out.logits[0].argmax()]
    e = {"mae": lambda: out.last_hidden_state[0, 0], "cls": lambda: out.last_hidden_state[0, 0],
         "pooler": lambda: out.pooler_output[0], "mean": lambda: out.last_hidden_state[0].mean(0),
         "clip": lambda: adapter.model.visual_projection(out.pooler_output)[0]}[kind]()
    return (e * e.detach()).sum() / e.detach().norm()


def _rollout(probs: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema rollout (head mean, residual), float64."""
    T = probs.shape[-1]
    R = np.eye(T)
    for layer in probs.astype(np.float64):
        a = 0.5 * layer.mean(0) + 0.5 * np.eye(T)
        R = (a / a.sum(1, keepdims=True)) @ R
    return R


def _row(matrix: np.ndarray, names, query) -> np.ndarray:
    return matrix.mean(0) if query == "mean" else matrix[list(names).index(query)]


@pytest.mark.parametrize("case", list(CASES))
def test_layout_maps_rollout_relevance_and_faithfulness_against_eager_attentions(case, loaded):
    _, _, _, adapter_cls, names, grid, size, kind = CASES[case]
    adapter = loaded(case)
    layout = adapter.layout
    # the layout, read from the config by the adapter
    assert type(adapter).__name__ == adapter_cls
    assert (layout.prefix, layout.names, layout.grid, layout.image_size) == (len(names), names, grid, size)
    assert adapter.image_size == (size[0] if size[0] == size[1] else size) and adapter.grid == grid[-2:]

    maps = A.attention_maps(adapter, _input(adapter))
    assert maps.image.shape[-3:] == (*size, 3) and maps.layout == layout
    x = adapter.normalise_input(maps.image)
    ref = torch.stack([a[0] for a in _eager(adapter, x).attentions]).numpy()  # (L, H, T, T)
    P = len(names)
    assert ref.shape[-1] == P + int(np.prod(grid))
    np.testing.assert_allclose(maps.probs, ref, atol=3e-6)

    # raw maps: the query's row without the prefix tokens, in the grid's shape (by hand from the eager tensors)
    queries = [*names, "mean"] if names else ["mean"]
    for q in queries:
        for layer, head in ((0, 1), (1, "mean")):
            a = ref[layer].mean(0) if head == "mean" else ref[layer, head]
            hand = _row(a, names, q)[P:].reshape(grid)
            np.testing.assert_allclose(maps.query_map(layer, head, q), hand, atol=3e-6)
    patch = tuple(g - 1 for g in grid)  # the last patch, by coordinates
    hand = ref[1, 2, P + int(np.prod(grid)) - 1, P:].reshape(grid)
    np.testing.assert_allclose(maps.query_map(1, 2, patch), hand, atol=3e-6)

    # rollout over the eager attentions, the query's row, prefix left out
    q = queries[0]
    roll = A.explain(adapter, _input(adapter), "rollout", query=q)
    R = _rollout(ref)
    np.testing.assert_allclose(roll.matrix, R, atol=1e-5)
    assert roll.map.shape == grid
    np.testing.assert_allclose(roll.map, _row(R, names, q)[P:].reshape(grid), atol=1e-5)

    # relevance (Chefer et al. 2021) with retain_grad on the eager attentions, for the family's own target
    rel = A.explain(adapter, _input(adapter), "relevance", query=q)
    out = _eager(adapter, x.detach().clone(), grad=True)
    try:
        for att in out.attentions:
            att.retain_grad()
        _target(adapter, out, kind).backward()
        Rr = torch.eye(ref.shape[-1])
        for att in out.attentions:
            Rr = Rr + (att.grad[0] * att[0]).clamp(min=0).mean(0) @ Rr
    finally:
        adapter.model.zero_grad(set_to_none=True)
    np.testing.assert_allclose(rel.matrix, Rr.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(rel.map, _row(rel.matrix, names, q)[P:].reshape(grid), atol=1e-6)
    assert rel.layout == layout and np.abs(rel.map).max() > 0

    # faithfulness: the same grid, full input scores 1
    c = deletion_insertion(adapter, _input(adapter), rel.map, steps=2)
    assert c.deletion[0] == pytest.approx(1.0, abs=1e-4) and c.insertion[-1] == pytest.approx(1.0, abs=1e-4)
    assert len(c.fractions) == 3


@pytest.mark.parametrize("case", ["vit-32x48", "deit-32x48", "videomae-32x48"])
def test_non_square_inputs_integrated_gradients_and_mean_colour_fill_by_hand(case, loaded):
    from captum.attr import IntegratedGradients

    adapter = loaded(case)
    layout = adapter.layout
    H, W = layout.image_size
    p = layout.patch_size
    ig = A.explain(adapter, _input(adapter), "integrated-gradients", steps=8)
    assert ig.map.shape == layout.grid
    x = adapter.normalise_input(ig.image)
    fn = (lambda inp: adapter.logits(inp)[:, int(adapter.logits(x)[0].argmax())]) if adapter.classifier else \
        (lambda inp: (lambda e: (e * e.detach()).sum(-1) / e.detach().norm(dim=-1))(adapter.embedding(inp)))
    attr = IntegratedGradients(fn).attribute(x, baselines=torch.zeros_like(x), n_steps=8, internal_batch_size=8)
    a = attr.detach().abs().sum(-3)[0].numpy()
    if layout.is_video:
        t, gh, gw = layout.grid
        hand = a.reshape(t, layout.tubelet, gh, p, gw, p).sum((1, 3, 5))
    else:
        hand = a.reshape(H // p, p, W // p, p).sum((1, 3))
    np.testing.assert_allclose(ig.map, hand, rtol=1e-3, atol=1e-6)

    # removing one patch = that patch's pixels take the input's mean colour (per channel), by hand
    f, what = _scorer(adapter, ig.image, None)
    keep = np.ones((1, layout.num_patches), bool)
    coords = tuple(g - 2 for g in layout.grid)
    keep[0, np.ravel_multi_index(coords, layout.grid)] = False
    r, c = coords[-2:]
    xs = x.clone()
    if layout.is_video:
        fill = x.mean(dim=(0, 1, 3, 4))
        tt = coords[0] * layout.tubelet
        xs[0, tt : tt + layout.tubelet, :, r * p : (r + 1) * p, c * p : (c + 1) * p] = fill[None, :, None, None]
        with torch.no_grad():
            e, e0 = adapter.embedding(xs).float(), adapter.embedding(x).float()
        expected = float(torch.nn.functional.cosine_similarity(e, e0))
    else:
        fill = x.mean(dim=(0, 2, 3))
        xs[0, :, r * p : (r + 1) * p, c * p : (c + 1) * p] = fill[:, None, None]
        with torch.no_grad():
            expected = float(adapter.logits(xs)[0, int(adapter.logits(x)[0].argmax())])
    assert f(keep)[0] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert f(np.ones((1, layout.num_patches), bool))[0] != pytest.approx(expected, abs=1e-7)  # the patch mattered


def test_non_square_vit_input_checks_figures_and_export(loaded, tmp_path):
    adapter = loaded("vit-32x48")
    assert adapter.normalise(np.zeros((32, 48, 3), np.float32)).shape == (1, 3, 32, 48)
    with pytest.raises(ValueError, match=r"\(B, 32, 48, 3\)"):
        adapter.normalise(np.zeros((32, 32, 3), np.float32))
    for fit in ("center-crop", "pad", "resize"):
        maps = A.attention_maps(adapter, IMG, fit=fit)
        assert maps.image.shape == (32, 48, 3) and maps.query_map(0, "mean").shape == (4, 6)
    assert maps.head_distance().shape == (2, 4)

    from explorer.viz import attention as VA

    fig = VA.query_overlay(maps.image, maps.query_map(1, 0), patch_size=8, marker=VA._query_marker(maps.layout, 8, (3, 5)))
    assert tuple(fig.layout.xaxis2.range) == (0, 48) and tuple(fig.layout.yaxis2.range) == (32, 0)
    hm = fig.data[2]
    assert np.asarray(hm.z).shape == (4, 6) and list(hm.x) == [4, 12, 20, 28, 36, 44] and list(hm.y) == [4, 12, 20, 28]
    assert (fig.layout.shapes[0].x0, fig.layout.shapes[0].y0) == (40, 24)  # row 3, column 5
    grid = VA.attention_grid(maps, "cls")
    assert all(np.asarray(t.z).shape == (4, 6) for t in grid.data if t.type == "heatmap")
    row = VA.method_row(maps.image, {"a": maps.query_map(0, 0), "b": maps.query_map(1, 1)})
    assert [list(t.x) for t in row.data if t.type == "heatmap"][0] == [4, 12, 20, 28, 36, 44]
    assert tuple(row.layout.xaxis.range) == (0, 48)

    import shutil

    if shutil.which("chromium") is None:
        pytest.skip("static export needs Debian chromium")
    from explorer import export

    res = export.export_recipe("attention_methods", tmp_path / "wide", model=adapter, inputs=["coffee"],
                               options=dict(steps=4), formats=["svg"])
    assert export.reproduce(res.files["json"]).identical


def test_video_maps_default_to_the_mean_query_and_draw_over_the_first_frame(loaded):
    from explorer.viz import attention as VA

    adapter = loaded("videomae-32x48")
    maps = A.attention_maps(adapter, CLIP)
    assert maps.layout.default_query == "mean" and loaded("deit-teacher").layout.default_query == "cls"
    fig = VA.query_overlay(maps.image, maps.query_map(0, "mean", "mean"), patch_size=8)
    np.testing.assert_allclose(np.asarray(fig.data[2].z, float), maps.query_map(0, "mean", "mean").mean(0), rtol=1e-6)
    marker = VA._query_marker(maps.layout, 8, (1, 2, 3))
    assert (marker["x0"], marker["y0"]) == (24, 16)
    assert maps.head_distance().shape == (2, 4)  # spatial distance, time ignored
    strip = VA.video_maps(maps.image, maps.query_map(0, "mean", "mean"), tubelet=2)
    texts = [a.text for a in strip.layout.annotations]
    assert "frames 1–2" in texts and "frames 3–4" in texts and not any(t.startswith("frames 0") for t in texts)
    # an image given to a video model is a still clip, and says so
    still = A.attention_maps(adapter, IMG)
    assert still.image.shape == (4, 32, 48, 3) and np.array_equal(still.image[0], still.image[3])
    assert any("still image" in n for n in still.notes)


def test_square_only_families_refuse_a_non_square_config_clearly(tmp_path):
    """transformers' DINOv2 builds with a 32x48 config but fails in its forward; the adapter says why at load time."""
    cfg = transformers.Dinov2WithRegistersConfig(**{**SMALL, "image_size": [32, 48]})
    transformers.Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path / "dino")
    with pytest.raises(ValueError, match="square images only; this config has image_size 32x48"):
        explorer.load_model(str(tmp_path / "dino"), device="cpu")


def test_token_layout_unit():
    lay = TokenLayout.from_config(transformers.ViTConfig(image_size=[32, 48], patch_size=8), ("cls", "dist"))
    assert (lay.prefix, lay.n_prefix, lay.grid, lay.image_size, lay.num_tokens) == (2, 2, (4, 6), (32, 48), 26)
    assert lay.prefix_names == ("cls", "dist") and lay.token("DIST") == 1 and lay.token((3, 5)) == 25
    np.testing.assert_array_equal(lay.patch_map(np.arange(26.0)), np.arange(2, 26.0).reshape(4, 6))
    with pytest.raises(A.AttentionError, match="does not fit this layout"):
        lay.patch_map(np.arange(25.0))
    m = lay.pixel_mask(torch.tensor([[True] * 23 + [False]]))
    assert m.shape == (1, 1, 32, 48) and m[0, 0, 24:, 40:].sum() == 0 and m.sum() == 32 * 48 - 64
    vid = TokenLayout.from_config(transformers.VideoMAEConfig(image_size=32, patch_size=8), (), frames=4, tubelet=2)
    assert vid.grid == (2, 4, 4) and vid.is_video and vid.num_frames == 4 and vid.default_query == "mean"
    assert vid.pixel_mask(torch.ones(3, 32, dtype=torch.bool)).shape == (3, 4, 1, 32, 32)
    assert TokenLayout(1, (2, 2)).names == ("cls",)  # one prefix token: CLS by default
    with pytest.raises(ValueError, match="2 prefix tokens need 2 names"):
        TokenLayout(2, (2, 2), ("cls",))
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        TokenLayout.from_config(transformers.ViTConfig(image_size=30, patch_size=8))
