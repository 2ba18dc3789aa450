"""The UniFormer local / global view: compute (analytic cases, cross-checks against explorer's generic rollout and
relevance and against the model's own attention capture), the figure, the app, export → reproduce byte for byte,
Reopen, and bad input.

Models: small random UniFormers (image and video) saved with the adapter's own ``save``; no shipped weights needed.
Tolerances: float32 maps against float64 / torch references, ``atol=1e-6`` unless said otherwise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import explorer
from explorer.attention.local_global import (RelationError, capture_relations, check_blocks, local_global,
                                             merge_matrix, query_tokens, relation_input, relation_view, stage_relevance,
                                             stage_rollout, theoretical_field, upsample)
from explorer.attention.methods import RelevanceAccumulator, RolloutAccumulator
from explorer.models.uniformer import UniFormer, UniFormerAdapter, UniFormerConfig

from _tiny import Points, export_png

IMAGE = dict(depths=(1, 2, 2, 1), dims=(16, 32, 64, 128), head_dim=32, num_classes=10, image_size=64)
VIDEO = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), head_dim=32, num_classes=5, image_size=64, video=True,
             num_frames=8)


def _adapter(seed=0, **cfg) -> UniFormerAdapter:
    torch.manual_seed(seed)
    model = UniFormer(UniFormerConfig(**{**IMAGE, **cfg}))
    for m in model.modules():  # non-trivial batch-norm statistics, so that eval-mode norms are not the identity
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return UniFormerAdapter(model, model_id=f"tiny-{seed}")


@pytest.fixture(scope="module")
def uf():
    return _adapter()


@pytest.fixture(scope="module")
def ufv():
    return _adapter(1, **VIDEO)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("uniformers")
    return {"image": _adapter().save(root / "tiny-uf"), "video": _adapter(1, **VIDEO).save(root / "tiny-ufv")}


@pytest.fixture(scope="module")
def cap(uf):
    return capture_relations(uf, "chelsea")


# ---------------------------------------------------------------------------------------------- geometry
def test_theoretical_field_by_hand(uf):
    """Stage 1, block 0 of a 4-px stem, 3×3 position conv and 5×5 kernel: token i covers stem pixels 4i..4i+3, and the
    two convolutions add 1 + 2 tokens on each side: 4(i − 3) .. 4(i + 3) + 3, clipped to the image."""
    assert theoretical_field(uf, 1, 0, (5, 7), (64, 64)) == ((8, 35), (16, 43))
    assert theoretical_field(uf, 1, 0, (0, 15), (64, 64)) == ((0, 15), (48, 63))
    # stage 2 block 1: stage 1 (1 block: ±3 tokens of 4 px) then the 2×2 merge and two blocks (±6 tokens of 8 px)
    lo = 8 * (3 - 6) - 4 * 3
    assert theoretical_field(uf, 2, 1, (3, 3), (64, 64)) == ((max(lo, 0), 63), (0, 63))
    assert theoretical_field(uf, 3, 0, (1, 1), (64, 64)) == ((0, 63), (0, 63))  # global: everything


def test_query_tokens_and_upsample():
    grids = [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert query_tokens(grids, (64, 64), (20, 63)) == [(5, 15), (2, 7), (1, 3), (0, 1)]
    assert query_tokens([(4, 16, 16)], (8, 64, 64), (7, 0, 5)) == [(3, 0, 1)]
    m = np.arange(4, dtype=np.float32).reshape(2, 2)
    up = upsample(m, (4, 6))
    assert up.shape == (4, 6) and up[0, 0] == 0 and up[0, 5] == 1 and up[3, 0] == 2 and up[3, 5] == 3
    with pytest.raises(RelationError, match="2-D map"):
        upsample(m, (2, 4, 6))


def test_merge_matrix(uf):
    M = merge_matrix(uf, (4, 4), (2, 2))
    assert M.shape == (4, 16) and np.allclose(M.sum(1), 1)
    assert sorted(np.flatnonzero(M[0])) == [0, 1, 4, 5] and np.allclose(M[0][[0, 1, 4, 5]], 0.25)
    std = _adapter(2, **VIDEO, video_std=True)  # 3×2×2 footprint, clipped at the first and last time step
    Mv = merge_matrix(std, (3, 4, 4), (3, 2, 2))
    assert np.count_nonzero(Mv[0]) == 8 and np.count_nonzero(Mv[4]) == 12 and np.allclose(Mv.sum(1), 1)


# ---------------------------------------------------------------------------------------------- analytic cases
def test_identity_kernels_receptive_field_is_the_stem():
    """With every local kernel the identity and every position-encoding convolution zero, a stage-1 token sees its own
    4×4 stem patch only, and a stage-2 token its 8×8 patch: the effective field's support is exactly the stem's
    theoretical field, while the kernel sizes' field (what the shapes allow) is wider."""
    uf = _adapter(3)
    with torch.no_grad():
        for s in (1, 2):
            for blk in getattr(uf.model, f"blocks{s}"):
                blk.pos_embed.weight.zero_()
                blk.pos_embed.bias.zero_()
                blk.attn.weight.zero_()
                blk.attn.weight[:, :, 2, 2] = 1.0
    view = local_global(uf, "chelsea", (21, 42))
    s1, s2 = view.stages[:2]
    assert s1.token == (5, 10) and s2.token == (2, 5)
    for st, side in ((s1, 4), (s2, 8)):
        support = np.argwhere(st.effective > 0)
        (r0, c0), (r1, c1) = support.min(0), support.max(0)
        ty, tx = st.token
        assert (r0, r1, c0, c1) == (ty * side, ty * side + side - 1, tx * side, tx * side + side - 1)
        assert len(support) == side * side
        assert st.field_area > side * side  # the shapes allow more than the identity kernels use
    assert np.allclose(s1.kernel_magnitude[2, 2], 1 / 1) and s1.kernel_magnitude.sum() == pytest.approx(1.0)


def test_effective_field_stays_inside_the_theoretical_one(uf, cap):
    view = relation_view(uf, cap, (30, 9))
    for st in view.stages[:2]:
        assert st.kind == "local" and st.effective.shape == (64, 64)
        assert st.effective.sum() == pytest.approx(1.0, abs=1e-5)
        assert st.inside == pytest.approx(1.0, abs=1e-6)  # gradients cannot leave the composed kernels' footprint
        assert 0 < st.area95 <= st.field_area
    s1 = view.stages[0]
    (y0, y1), (x0, x1) = s1.field
    outside = s1.effective.copy()
    outside[y0:y1 + 1, x0:x1 + 1] = 0
    assert outside.max() == 0.0


def test_uniform_attention_gives_uniform_rollout():
    """q = k = 0 in every global block → every attention row is uniform.  Without the residual the rollout is uniform
    over stage-3 tokens; with it each stage is 0.5ⁿ·I + (1 − 0.5ⁿ)·U, composed through the 2×2 merge."""
    uf = _adapter(4)
    with torch.no_grad():
        for s in (3, 4):
            for blk in getattr(uf.model, f"blocks{s}"):
                c = blk.attn.qkv.weight.shape[1]
                blk.attn.qkv.weight[: 2 * c].zero_()
                blk.attn.qkv.bias[: 2 * c].zero_()
    cap = capture_relations(uf, "coffee")
    for a in cap.attentions.values():
        assert np.allclose(a, 1.0 / a.shape[-1], atol=1e-7)
    plain = relation_view(uf, cap, (40, 10), residual=False)
    assert np.allclose(plain.rollout, 1 / 16, atol=1e-7) and np.allclose(plain.rollout_classifier, 1 / 16, atol=1e-7)
    res = relation_view(uf, cap, (40, 10))
    n3, n4 = uf.stage_depths[2:]
    r3 = 0.5 ** n3 * np.eye(16) + (1 - 0.5 ** n3) / 16
    r4 = 0.5 ** n4 * np.eye(4) + (1 - 0.5 ** n4) / 4
    expected = (r4 @ merge_matrix(uf, (4, 4), (2, 2)) @ r3)[2].reshape(4, 4)  # (40, 10) lies in stage-4 token (1, 0)
    assert np.allclose(res.rollout, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------- cross-checks
def test_captured_attention_is_the_models_own(uf, cap):
    """The capture (with gradients) holds the same probabilities as the adapter's own no-grad forward."""
    out = uf.run(cap.input.pixels)
    assert set(out.attentions) == set(cap.attentions) == {"blocks3.0", "blocks3.1", "blocks4.0"}
    for k, a in out.attentions.items():
        np.testing.assert_allclose(cap.attentions[k], a[0], atol=1e-6)
    np.testing.assert_allclose(cap.probs, out.probs[0], atol=1e-6)
    assert cap.target == int(out.logits[0].argmax())


def test_stage_rollout_matches_explorers_generic_rollout(cap):
    """One global stage (stage 3, two blocks) against explorer.attention.methods.RolloutAccumulator, for each fusion
    and with / without the residual."""
    blocks = cap.stage_attentions(3)
    for fusion in ("mean", "max", "min"):
        for residual in (True, False):
            acc = RolloutAccumulator(fusion=fusion, residual=residual)
            for a in blocks:
                acc.update(torch.from_numpy(a))
            ours = stage_rollout(blocks, fusion=fusion, residual=residual)
            np.testing.assert_allclose(ours, acc.result.double().numpy(), atol=1e-6)


def test_stage_relevance_matches_explorers_generic_relevance(uf, cap):
    """Stage 3's relevance against RelevanceAccumulator fed the attention and its gradient (taken here with a plain
    autograd call on the model's attention), last block first."""
    x = uf.normalise(cap.input.pixels)
    kept = {}
    blocks = [uf.model.blocks3[i] for i in range(2)]
    for i, b in enumerate(blocks):
        b.attn.sink = lambda p, i=i: kept.__setitem__(i, p)
    try:
        logits = uf.model(x)[0]
        grads = torch.autograd.grad(logits[cap.target], [kept[0], kept[1]])
    finally:
        for b in blocks:
            b.attn.sink = None
    acc = RelevanceAccumulator()
    for i in (1, 0):
        acc.update(kept[i].detach()[0], grads[i][0])
    ours = stage_relevance([cap.abars["blocks3.0"], cap.abars["blocks3.1"]])
    np.testing.assert_allclose(ours, acc.result.double().numpy(), atol=1e-5)


def test_view_rows_and_maps(uf, cap):
    view = relation_view(uf, cap, (50, 60), blocks=(0, 0, 1, 0))
    s3, s4 = view.stages[2:]
    assert s3.token == (3, 3) and s4.token == (1, 1) and s3.block == 1 and s3.attention.shape == (2, 4, 4)
    np.testing.assert_allclose(s3.attention.reshape(2, 16), cap.attentions["blocks3.1"][:, 15], atol=0)
    np.testing.assert_allclose(s3.attention_mean, s3.attention.mean(0), atol=1e-7)
    np.testing.assert_allclose(s4.head_map(3), cap.attentions["blocks4.0"][3, 3].reshape(2, 2), atol=0)
    R = cap.rollout()
    np.testing.assert_allclose(view.rollout.ravel(), R[3], atol=1e-6)
    np.testing.assert_allclose(view.rollout_classifier.ravel(), R.mean(0), atol=1e-6)
    assert view.rollout.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(view.relevance.ravel(), cap.relevance.mean(0), atol=1e-6)
    s2 = view.stages[1]
    k = uf.local_kernels(2, 0)
    np.testing.assert_allclose(s2.kernel_magnitude, np.abs(k).mean(0), atol=1e-7)
    np.testing.assert_allclose(s2.head_kernels, k.reshape(1, 32, 5, 5).mean(1), atol=1e-7)
    assert s2.token == (6, 7) and np.isnan(s2.affinity).sum() == 64 - 4 * 3  # clipped at the border
    assert s2.affinity[s2.token] == pytest.approx(s2.kernel_magnitude[2, 2])
    assert view.options == {"blocks": [0, 0, 1, 0], "fusion": "mean", "residual": True}


def test_video_view(ufv):
    view = local_global(ufv, "generated:10000003", (5, 20, 40))
    assert view.video and view.size == (8, 64, 64)
    s1 = view.stages[0]
    assert s1.grid == (4, 16, 16) and s1.token == (2, 5, 10) and s1.kernels.shape == (16, 5, 5, 5)
    assert s1.effective.shape == (8, 64, 64) and s1.inside == pytest.approx(1.0, abs=1e-6)
    assert s1.field[0] == (0, 7)  # the 3-frame stem (stride 2) and two 5- / 3-frame kernels reach every frame
    assert view.stages[2].attention.shape == (2, 4, 4, 4) and view.rollout.shape == (4, 4, 4)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_by_name(uf, ufv, cap):
    with pytest.raises(RelationError, match="not a UniFormer"):
        capture_relations(object(), "chelsea")
    with pytest.raises(RelationError, match="outside the input"):
        relation_view(uf, cap, (64, 0))
    with pytest.raises(RelationError, match="2 coordinates"):
        relation_view(uf, cap, (1, 2, 3))
    with pytest.raises(RelationError, match="Stage 3 has blocks 0..1"):
        check_blocks(uf, (0, 0, 5, 0))
    with pytest.raises(RelationError, match="head fusion"):
        relation_view(uf, cap, None, fusion="median")
    with pytest.raises(RelationError, match="target 99"):
        capture_relations(uf, "chelsea", target=99)
    with pytest.raises(RelationError, match="image model"):
        relation_input(uf, np.zeros((4, 64, 64, 3), np.float32))
    with pytest.raises(explorer.ImageLoadError):
        capture_relations(uf, b"not an image")
    with pytest.raises(ValueError, match="Not a video"):
        capture_relations(ufv, b"\x89PNG\r\n\x1a\n not a clip")
    with pytest.raises(RelationError, match="channel groups 0..0"):
        relation_view(uf, cap).stages[1].head_kernel(3)


# ---------------------------------------------------------------------------------------------- figure
def test_figure(uf, cap):
    from explorer.viz.uniformer import kernel_mosaic, relations_figure

    view = relation_view(uf, cap, (20, 30))
    fig = relations_figure(view, heads=("mean", 0, 1, "mean"))
    heat = {tr.name: tr for tr in fig.data if tr.type == "heatmap"}
    np.testing.assert_allclose(np.array(heat["S3 attention"].z, float), view.stages[2].attention[1], atol=1e-12)
    np.testing.assert_allclose(np.array(heat["S2 kernel"].z, float), view.stages[1].head_kernels[0], atol=1e-7)
    assert fig.layout.coloraxis3.colorscale[0][1].startswith("rgb")  # signed kernel: a diverging scale
    assert fig.layout.coloraxis3.cmin == -fig.layout.coloraxis3.cmax
    assert len([tr for tr in fig.data if tr.type == "image"]) == 8 and len(fig.layout.annotations) == 10
    assert "S1: theoretical 28×28 px" in fig.layout.meta["notes"][0]
    with pytest.raises(ValueError, match="one head per stage"):
        relations_figure(view, heads=("mean",))
    mosaic = kernel_mosaic(np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3))
    assert mosaic.shape == (3, 7) and np.isnan(mosaic[:, 3]).all() and mosaic[0, 4] == 9


def test_video_figure_shows_the_frame(ufv):
    from explorer.viz.uniformer import relations_figure

    view = local_global(ufv, "generated:10000003", (5, 20, 40))
    a = relations_figure(view, frame=0)
    b = relations_figure(view, frame=7)
    za = np.array(next(t for t in a.data if t.name == "S3 attention").z, float)
    np.testing.assert_allclose(za, view.stages[2].attention_mean[0], atol=1e-7)
    assert a.data[0].source != b.data[0].source and "frame 8/8" in b.layout.annotations[0].text
    with pytest.raises(ValueError, match="outside the clip"):
        relations_figure(view, frame=8)


# ---------------------------------------------------------------------------------------------- app, export, reopen
def test_app_click_select_export_reproduce_reopen(folders, tmp_path):
    from explorer.export import reproduce
    from explorer.widgets.uniformer_app import UniFormerApp

    app = UniFormerApp(model=str(folders["image"]), image="chelsea")
    assert app.view is not None and app.view.query == (32, 32) and "⚠" not in app.status.value
    before = app.fig.to_plotly_json()
    app._on_click(app.fig.data[0], Points(xs=[50], ys=[10]), None)
    assert app.view.query == (10, 50) and app.view.stages[0].token == (2, 12)
    assert app.fig.to_plotly_json() != before
    app.select(3, block=0, head=1)
    assert app.blocks[2] == 0 and app.heads[2] == 1 and app.view.stages[2].block == 0
    assert app.head.value == 1 and app.block.value == 1
    app.set_query((99, 0))  # refused in the app, the view stays
    assert "outside the input" in app.status.value and app.view.query == (10, 50)
    app.select(3, head=7)
    assert "heads 0..1" in app.status.value
    res = export_png(app, tmp_path, "uf")
    sc = json.loads(res.files["json"].read_text())
    assert sc["provenance"]["model"]["family"] == "hierarchical" and sc["recipe"]["options"]["query"] == [10, 50]
    assert reproduce(res.files["json"]).identical
    again = UniFormerApp.from_sidecar(res.files["json"])
    assert again.view.query == (10, 50) and again.blocks == app.blocks and again.heads == app.heads
    assert export_png(again, tmp_path, "uf-again").files["png"].read_bytes() == res.files["png"].read_bytes()
    app.set_query((1, 1))
    app.restore(str(res.files["json"]))
    assert app.view.query == (10, 50) and "⚠" not in app.status.value


def test_app_video_frame_and_reopen(folders, tmp_path):
    from explorer.export import reproduce
    from explorer.widgets.uniformer_app import UniFormerApp

    app = UniFormerApp(model=str(folders["video"]))
    assert app.view.video and app.frame.max == 8 and app.frame_box.layout.display is None
    app.frame.value = 3
    app._on_click(app.fig.data[0], Points(xs=[20], ys=[30]), None)
    assert app.view.query == (2, 30, 20)
    res = export_png(app, tmp_path, "ufv")
    assert json.loads(res.files["json"].read_text())["recipe"]["options"]["clip"] == "generated:10000003"
    assert reproduce(res.files["json"]).identical
    again = UniFormerApp.from_sidecar(res.files["json"])
    assert again.view.query == (2, 30, 20) and again.frame.value == 3


def test_app_bad_inputs_never_raise(folders, tmp_path):
    from explorer.widgets.uniformer_app import UniFormerApp

    app = UniFormerApp(model=str(tmp_path / "nowhere"))
    assert "⚠" in app.status.value and app.view is None
    app.model_box.value = str(folders["image"])
    app._load_model()
    assert app.view is not None  # the input kept while the model failed is shown now
    app.take_upload(({"name": "broken.png", "content": b"\x89PNG broken"},), app._set_input)
    assert "broken.png was not loaded" in app.status.value and app.view.name == "chelsea"
    mae = tmp_path / "mae.json"
    mae.write_text("{}")
    app.restore(str(mae))
    assert "⚠" in app.status.value
    with pytest.raises(RelationError, match="not a list"):
        UniFormerApp(model=[1, 2])
