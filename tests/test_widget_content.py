"""The apps' main panels show the data they claim to show (not merely that something changed).

Every panel an app sends to the browser is decoded (PNG data URIs of ``go.Image`` traces, ``z`` of heatmaps) and
compared with the arrays of the result it stands for, recomputed here with numpy from the raw arrays (input,
prediction, mask, attention probabilities), at a position that is not symmetric (a row/column swap, a frame or word
off by one, or two panels swapped each make a test fail).  Images are compared as uint8 ``round(x * 255)`` within one
grey level.  Each test was seen failing on the app code broken as its docstring says (30 hand-made mutants: swapped
row/column, swapped panels, transposed maps, off-by-one frames / words / tokens, stale in-place updates, wrong colour
scales), then passing on the code restored.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from _tiny import DEPTH, RGB, save_tiny_mae, save_tiny_multimae, Points as _Points

TOL = 1  # grey levels: PNG is lossless, allow one level of rounding


# ---------------------------------------------------------------------------------------------------- helpers


def _decode(trace) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image a ``go.Image`` trace shows, at model resolution (the trace's integer nearest
    upscaling, ``dx = 1 / k``, undone)."""
    src = trace.source
    assert src.startswith("data:image/png;base64,"), src[:40]
    buf = np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8)
    rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    k = int(round(1 / trace.dx))
    assert k >= 1 and round(1 / trace.dy) == k
    small = rgb[::k, ::k]
    np.testing.assert_array_equal(np.repeat(np.repeat(small, k, 0), k, 1), rgb)  # crisp nearest upscaling
    return small


def _u8(x) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255), 0, 255).astype(np.uint8)


def _assert_image(trace, want, what: str):
    got = _decode(trace)
    want = _u8(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= TOL, f"{what}: panel differs from its array by up to {diff.max()} grey levels"


def _distinct(*images):
    """Precondition: the expected panels differ pairwise (so showing one in place of another is caught)."""
    u = [_u8(im).astype(int) for im in images]
    for i in range(len(u)):
        for j in range(i + 1, len(u)):
            assert np.abs(u[i] - u[j]).max() > TOL, f"panels {i} and {j} would look alike: the test could not tell them apart"


def _z(trace) -> np.ndarray:
    """A heatmap's ``z`` as floats (``None`` → NaN)."""
    return np.array([[np.nan if v is None else v for v in row] for row in trace.z], dtype=float)


def _pixels(mask: np.ndarray, p: int) -> np.ndarray:
    """``(gh, gw)`` patch mask → ``(gh·p, gw·p)`` pixel mask."""
    return np.kron(np.asarray(mask, bool), np.ones((p, p), bool)).astype(bool)


def _patch_mse(pred, image, p) -> np.ndarray:
    """``(gh, gw)`` mean squared error per patch over pixels and channels."""
    d = (np.asarray(pred, np.float64) - np.asarray(image, np.float64)) ** 2
    h, w = d.shape[:2]
    return d.reshape(h // p, p, w // p, p, -1).mean(axis=(1, 3, 4))


def _asym_grid(g: np.ndarray):
    """Precondition: a grid that is not symmetric, so a transposed grid is caught."""
    assert g.shape[0] == g.shape[1] and not np.allclose(np.nan_to_num(g, nan=-1), np.nan_to_num(g.T, nan=-1))


# ---------------------------------------------------------------------------------------------------- MAE app
@pytest.fixture(scope="module")
def mae_app(tmp_path_factory):
    from explorer.widgets.mae_app import MAEApp

    folder = save_tiny_mae(tmp_path_factory.mktemp("wc-mae"), seed=2)  # 32 px, patch 8: a 4 x 4 grid
    app = MAEApp(model=str(folder), image="chelsea", ratio=0.5, seed=0)
    assert "⚠" not in app.status.value, app.status.value
    return app


def _check_mae_figure(fig, rec, error_max: float):
    """The five panels of ``fig`` against ``rec``'s arrays; the error map's scale is ``[0, error_max]``."""
    image, pred, p = rec.image, rec.prediction, rec.patch_size
    px = _pixels(rec.mask, p)[..., None]
    masked = np.where(px, 0.5, image)
    pasted = np.where(px, pred, image)
    _distinct(image, masked, pred, pasted)
    assert len(fig.data) == 5
    for i, (tr, want, name) in enumerate(zip(fig.data[:4], (image, masked, pred, pasted),
                                             ("original", "masked input", "reconstruction", "reconstruction + visible"))):
        assert tr.type == "image" and tr.xaxis == ("x" if i == 0 else f"x{i + 1}"), (name, tr.xaxis)  # panel i in column i
        _assert_image(tr, want, name)
    titles = [a.text for a in fig.layout.annotations[:5]]
    assert titles[0] == "Original" and titles[1].startswith("Masked input") and titles[2] == "Reconstruction"
    assert titles[3] == "Reconstruction + visible" and titles[4].startswith("Error")
    hm = fig.data[4]
    assert hm.type == "heatmap" and hm.xaxis == "x5"
    gh, gw = rec.mask.shape
    np.testing.assert_allclose(hm.x, (np.arange(gw) + 0.5) * p)  # column c drawn at x of patch column c
    np.testing.assert_allclose(hm.y, (np.arange(gh) + 0.5) * p)
    z = _z(hm)
    want = np.where(rec.mask, _patch_mse(pred, image, p), np.nan)
    _asym_grid(want)
    np.testing.assert_array_equal(np.isnan(z), ~rec.mask)  # blank exactly on visible patches
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-9)
    assert hm.zmin == 0
    assert hm.zmax == pytest.approx(error_max, rel=1e-5)
    assert np.nanmax(z) <= hm.zmax * (1 + 1e-6)  # nothing on screen saturates the colour scale


def _decode_uri(src: str, size: int) -> np.ndarray:
    """The ``(size, size, C)`` uint8 RGB(A) image a PNG data URI holds, its integer nearest upscaling undone."""
    assert src.startswith("data:image/png;base64,"), src[:40]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    k = img.shape[0] // size
    assert k >= 1 and img.shape[:2] == (k * size, k * size), (img.shape, size)
    small = img[::k, ::k]
    np.testing.assert_array_equal(np.repeat(np.repeat(small, k, 0), k, 1), img)  # crisp nearest upscaling
    return small


def _plotly_colours(values: np.ndarray, vmax: float) -> np.ndarray:
    """``(N, 3)`` RGB that plotly's own ``sample_colorscale`` gives the error scale (Viridis on ``[0, vmax]``)."""
    import plotly.colors as pc

    got = pc.sample_colorscale("Viridis", list(np.clip(np.asarray(values, float) / vmax, 0, 1)), colortype="tuple")
    return np.array([[c * 255 if max(t) <= 1 else c for c in t] for t in got], float)


def _check_mae_screen(fig, rec, error_max: float, caption: str | None = None):
    """The app's on-screen figure (layout images, one per panel): the five panels against ``rec``'s arrays, the
    error map's colours against plotly's own colour scale on ``[0, error_max]`` (transparent exactly on visible
    patches), the hover heatmap's values and colour bar, the click heatmaps over the patch grid, the ratio in the
    title."""
    image, pred, p = rec.image, rec.prediction, rec.patch_size
    S = image.shape[0]
    px = _pixels(rec.mask, p)[..., None]
    masked = np.where(px, 0.5, image)
    pasted = np.where(px, pred, image)
    _distinct(image, masked, pred, pasted)
    imgs = fig.layout.images
    assert len(imgs) == 5 and len(fig.data) == 5
    names = ("original", "masked input", "reconstruction", "reconstruction + visible")
    for i, (im, want, name) in enumerate(zip(imgs[:4], (image, masked, pred, pasted), names)):
        ax = "" if i == 0 else str(i + 1)
        assert (im.xref, im.yref, im.x, im.y, im.sizex, im.sizey) == (f"x{ax}", f"y{ax}", 0, 0, S, S), (name, im)
        got = _decode_uri(im.source, S)
        diff = np.abs(got.astype(int) - _u8(want).astype(int))
        assert diff.max() <= TOL, f"{name}: panel differs from its array by up to {diff.max()} grey levels"
    gh, gw = rec.mask.shape
    want = np.where(rec.mask, _patch_mse(pred, image, p), np.nan)
    _asym_grid(want)
    assert imgs[4].xref == "x5" and imgs[4].sizex == S
    err = _decode_uri(imgs[4].source, gh)
    np.testing.assert_array_equal(err[..., 3] == 0, ~rec.mask)  # transparent exactly on visible patches
    np.testing.assert_allclose(err[rec.mask][:, :3], _plotly_colours(want[rec.mask], error_max), atol=1.01)
    hm = fig.data[4]
    assert hm.type == "heatmap" and hm.xaxis == "x5" and hm.opacity == 0
    np.testing.assert_allclose(hm.x, (np.arange(gw) + 0.5) * p)
    np.testing.assert_allclose(hm.y, (np.arange(gh) + 0.5) * p)
    z = _z(hm)
    np.testing.assert_array_equal(np.isnan(z), ~rec.mask)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-9)
    assert hm.zmin == 0 and hm.zmax == pytest.approx(error_max, rel=1e-5)
    assert np.nanmax(z) <= hm.zmax * (1 + 1e-6)
    for i, tr in enumerate(fig.data[:4]):  # the click targets: one cell per patch, centred on it
        assert tr.type == "heatmap" and tr.opacity == 0 and tr.xaxis == ("x" if i == 0 else f"x{i + 1}")
        np.testing.assert_allclose(tr.x, (np.arange(gw) + 0.5) * p)
    assert not fig.layout.title.text  # no figure text changes with the ratio: the caption above says it
    if caption is not None:
        assert f"{100 * rec.hidden_fraction:.0f}% hidden" in caption and f"{rec.psnr_masked:.2f} dB" in caption


def _sweep_error_max(sweep) -> float:
    """The documented shared scale of a sweep: the largest hidden-patch MSE over every ratio (numpy, from the arrays)."""
    return max(float(_patch_mse(r.prediction, r.image, r.patch_size)[r.mask].max()) for r in sweep.results)


def test_mae_panels_show_original_masked_prediction_pasted_and_error(mae_app):
    """Catches: two of the five MAE panels swapped (e.g. "Reconstruction" showing the pasted image, or the masked input
    in the original's place), in the rebuilt figure and in the in-place slider update; an error map transposed, shown
    on visible patches, or computed from other arrays; an error colour scale that is not the sweep's documented
    ``[0, max hidden-patch MSE over the sweep]``."""
    app = mae_app
    if app.strategy_tb.value != "random":
        app.strategy_tb.value = "random"
    app.ratio.value = 0.5
    assert app.sweep is not None and app.result.spec.strategy == "random"
    _check_mae_screen(app.fig, app.result, _sweep_error_max(app.sweep), app.fig_caption.value)
    app.ratio.value = 0.75  # the in-place update path (screen_update)
    assert app.result.hidden_fraction == pytest.approx(0.75)
    _check_mae_screen(app.fig, app.result, _sweep_error_max(app.sweep), app.fig_caption.value)
    app.ratio.value = 0.05  # one hidden patch: its error is far below the sweep's maximum, the scale must still be the sweep's
    rec = app.result
    assert rec.mask.sum() == 1
    assert _patch_mse(rec.prediction, rec.image, 8)[rec.mask].max() < 0.9 * _sweep_error_max(app.sweep)
    _check_mae_screen(app.fig, rec, _sweep_error_max(app.sweep), app.fig_caption.value)
    # The pure figure builder too (what exports draw).
    from explorer import viz

    _check_mae_figure(viz.reconstruction_figure(app.result, error_max=0.123), app.result, 0.123)
    _check_mae_figure(viz.reconstruction_figure(app.result), app.result,
                      float(_patch_mse(app.result.prediction, app.result.image, 8)[app.result.mask].max()))


def test_mae_click_toggles_the_clicked_patch_not_its_transpose(mae_app):
    """Catches: a click's row and column swapped (x is the column, y the row), a click toggling the wrong patch or more
    than one, and a masked panel or error map that does not follow the clicked mask; in manual mode the error scale is
    the current result's largest hidden-patch MSE."""
    app = mae_app
    if app.strategy_tb.value != "random":
        app.strategy_tb.value = "random"
    app.ratio.value = 0.05
    p = app.adapter.patch_size
    r, c = 1, 3
    before = app.result.mask.copy()
    sweep_max = _sweep_error_max(app.sweep)
    app._on_click(app.fig.data[1], _Points([c * p + 0.6 * p], [r * p + 0.3 * p]), None)  # x in column 3, y in row 1
    after = app.result.mask
    assert "⚠" not in app.status.value, app.status.value
    assert app.result.spec.strategy == "manual"
    assert after[r, c] != before[r, c], "the clicked patch (row 1, column 3) did not toggle"
    assert after[c, r] == before[c, r], "the transposed patch (row 3, column 1) toggled"
    changed = np.argwhere(after != before)
    assert changed.tolist() == [[r, c]]
    # What the screen shows at the clicked place follows: grey in the masked panel iff now hidden.
    masked = _decode_uri(app.fig.layout.images[1].source, app.result.image.shape[0])
    block = masked[r * p:(r + 1) * p, c * p:(c + 1) * p].astype(int)
    if after[r, c]:
        assert np.abs(block - 128).max() <= TOL
    else:
        np.testing.assert_allclose(block, _u8(app.result.image[r * p:(r + 1) * p, c * p:(c + 1) * p]), atol=TOL)
    rec = app.result
    own_max = float(_patch_mse(rec.prediction, rec.image, p)[rec.mask].max())
    assert abs(own_max - sweep_max) > 0.01 * sweep_max  # the manual scale is told from the sweep's
    _check_mae_screen(app.fig, rec, own_max, app.fig_caption.value)
    # A second click on the same patch puts it back.
    app._on_click(app.fig.data[0], _Points([c * p + 1], [r * p + 1]), None)
    np.testing.assert_array_equal(app.result.mask, before)
    app.strategy_tb.value = "random"


# ---------------------------------------------------------------------------------------------------- attention app
@pytest.fixture(scope="module")
def attention_app(tmp_path_factory):
    from explorer.widgets.attention_app import AttentionApp

    folder = save_tiny_mae(tmp_path_factory.mktemp("wc-att"), seed=3)
    app = AttentionApp(model=str(folder), image="chelsea")
    assert "⚠" not in app.status.value, app.status.value
    return app


def test_attention_map_is_the_captured_row_of_the_clicked_query(attention_app):
    """Catches: the main heat-map showing another query than the clicked patch (row / column swapped in the click,
    a transposed map, an off-by-one in the CLS offset), another layer or head than the sliders say, or the mean of
    heads in place of the chosen head; the query's red outline drawn at the wrong patch."""
    app = attention_app
    maps = app.maps
    assert maps.layout.n_prefix == 1  # ViTMAE: CLS first, then the patches row-major
    gh, gw = maps.layout.grid
    p = maps.patch_size
    r, c = 1, 3
    app.select(1, 2)
    app._on_image_click(app.main.data[0], _Points([c * p + 0.5 * p], [r * p + 0.5 * p]), None)  # redraws the figure
    assert app.query == r * gw + c and (app.layer.value, app.head.value) == (1, 2)
    probs = maps.probs
    want = probs[1, 2, 1 + r * gw + c, 1:].reshape(gh, gw)
    swapped = probs[1, 2, 1 + c * gw + r, 1:].reshape(gh, gw)
    assert not np.allclose(want, swapped) and not np.allclose(want, want.T)
    assert not np.allclose(want, probs[1, :, 1 + r * gw + c, 1:].mean(0).reshape(gh, gw))
    hm = app.main.data[2]
    assert hm.type == "heatmap"
    np.testing.assert_allclose(_z(hm), want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hm.x, (np.arange(gw) + 0.5) * p)
    np.testing.assert_allclose(hm.y, (np.arange(gh) + 0.5) * p)
    assert f"patch {r * gw + c}" in app.main.layout.annotations[1].text and "layer 1, head 2" in app.main.layout.annotations[1].text
    rect = app.main.layout.shapes[0]
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (c * p, (c + 1) * p, r * p, (r + 1) * p)
    # The mean of heads, layer 0 (the in-place update).
    app.select(0, "mean")
    np.testing.assert_allclose(_z(app.main.data[2]), probs[0, :, 1 + r * gw + c, 1:].mean(0).reshape(gh, gw), rtol=1e-6,
                               atol=1e-9)
    _assert_image(app.main.data[1], maps.image, "image under the map")


# ---------------------------------------------------------------------------------------------------- fusion app
@pytest.fixture(scope="module")
def fusion_app():
    from explorer.widgets.fusion_app import FusionApp

    app = FusionApp(model="mini-fusion", image="scene:10000003")
    assert "⚠" not in app.status.value, app.status.value
    return app


def test_fusion_word_map_is_the_clicked_words_map(fusion_app):
    """Catches: the word map shown for another word than the clicked one (the first word, the default word, an
    off-by-one between clickable words and tokens), another layer / head than chosen, a transposed map, and a colour
    scale that cuts the map's maximum."""
    app = fusion_app
    al = app.alignment
    n = len(al.words)
    assert n >= 3
    k = next(j for j in range(n - 1, 0, -1) if j != app.word)  # neither the first word nor the one shown at start
    app.method.value = "attention"
    app.layer.value = 0
    app.head.value = 1
    app.words.value = k  # clicking the word in the caption
    assert app.word == k
    want = al.attention[0, 1, k]
    assert not np.allclose(want, al.attention[0, 1, 0]) and not np.allclose(want, al.attention[0, 1, k - 1])
    assert not np.allclose(want, al.attention[0, :, k].mean(0))
    _asym_grid(want)
    hm = app.main.data[2]
    np.testing.assert_allclose(_z(hm), want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(_z(hm), al.word_map("attention", k, layer=0, head=1), rtol=1e-6)
    assert hm.zmax == pytest.approx(float(want.max()), rel=1e-6)
    assert f"'{al.word_strings[k]}'" in app.main.layout.annotations[1].text
    gh, gw = al.grid
    np.testing.assert_allclose(hm.x, (np.arange(gw) + 0.5) * al.patch_size)
    np.testing.assert_allclose(hm.y, (np.arange(gh) + 0.5) * al.patch_size)
    # The default (cached) map of another method, for the same word.
    app.method.value = "relevance"
    np.testing.assert_allclose(_z(app.main.data[2]), al.maps["relevance"][k], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(_z(app.main.data[2]), al.word_map("relevance", k), rtol=1e-6)
    _assert_image(app.main.data[1], al.image, "image under the word map")


# ---------------------------------------------------------------------------------------------------- video app
@pytest.fixture(scope="module")
def video_app(tmp_path_factory):
    from _tiny import save_tiny_videomae

    from explorer.widgets.video_app import VideoMAEApp

    folder = save_tiny_videomae(tmp_path_factory.mktemp("wc-vmae"))
    app = VideoMAEApp(model=str(folder), clip="generated:10000003", ratio=0.5, strategy="random")
    assert "⚠" not in app.status.value, app.status.value
    return app


def _check_video_frame(app, rec, k: int):
    p, T = rec.patch_size, len(rec.frames)
    m = rec.mask[k // rec.tubelet]
    px = _pixels(m, p)[..., None]
    frame, pred = rec.frames[k], rec.prediction[k]
    masked = np.where(px, 0.5, frame)
    _distinct(frame, masked, pred)
    vis = ~px[..., 0]
    assert np.abs(_u8(pred[vis]).astype(int) - _u8(frame[vis])).max() <= TOL  # documented: the input on visible patches
    for tr, want, name in zip(app.fig.data[:3], (frame, masked, pred), ("original", "masked input", "reconstruction")):
        _assert_image(tr, want, f"frame {k} {name}")
    z = _z(app.fig.data[3])
    want = np.where(m, _patch_mse(pred, frame, p), np.nan)
    np.testing.assert_array_equal(np.isnan(z), ~m)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-9)
    assert f"frame {k + 1} of {T}" in app.fig.layout.title.text


def test_video_frame_k_shows_frame_k(video_app):
    """Catches: the frame slider showing another frame than the chosen one (frame 0, k - 1, the wrong tubelet's mask),
    the masked panel or the error map from another frame, panels swapped, a transposed error map."""
    app = video_app
    k = 3  # not 0, and in the second tubelet (time step 1)
    rec = app.result
    assert not np.array_equal(rec.mask[0], rec.mask[1])  # random masking: each time step has its own mask
    for j in range(len(rec.frames)):
        if j != k:
            assert np.abs(_u8(rec.frames[j]).astype(int) - _u8(rec.frames[k])).max() > TOL
            assert np.abs(_u8(rec.prediction[j]).astype(int) - _u8(rec.prediction[k])).max() > TOL
    app.frame.value = k + 1  # in-place update; the slider numbers frames from 1
    assert app.frame.value == k + 1 and app.frame_index == k
    _check_video_frame(app, rec, k)
    app.ratio.value = 0.75  # a ratio move, same frame
    assert app.result is app.sweep[0.75]
    _check_video_frame(app, app.result, k)
    app._show_frame(rebuild=True)  # a rebuilt figure
    _check_video_frame(app, app.result, k)


# ---------------------------------------------------------------------------------------------------- multimodal app
@pytest.fixture(scope="module")
def multimodal_app(tmp_path_factory):
    from explorer.widgets.multimodal_app import MultiMAEApp

    folder = str(save_tiny_multimae(tmp_path_factory.mktemp("wc-mm") / "rgbd", [RGB, DEPTH]))
    app = MultiMAEApp(folder, "room:10000001", budgets={"rgb": 0.5, "depth": 0.25}, device="cpu")
    assert "⚠" not in app.status.value, app.status.value
    return app


def _check_multimodal(app):
    from explorer.viz.multimodal import colourise, value_range

    rec = app.result
    names = list(rec.results)
    assert names == ["rgb", "depth"] and len(app.fig.data) == 8
    for row, name in enumerate(names):
        res = rec[name]
        s = res.spec
        p = s.patch[0]
        vis = _pixels(np.asarray(res.visible).reshape(s.grid), p)
        assert 0 < vis.mean() < 1
        orig, pred = res.original, res.prediction
        pasted = np.where(vis if orig.ndim == 2 else vis[..., None], orig, pred)
        # error: RMSE per hidden patch, over the patch's pixels (and channels), blank where visible
        d2 = (np.asarray(pred, np.float64) - orig) ** 2
        d2 = d2.reshape(s.grid[0], p, s.grid[1], p, -1).mean(axis=(1, 3, 4))
        err = np.where(np.asarray(res.visible).reshape(s.grid), np.nan, np.sqrt(d2))
        _asym_grid(err)
        if s.kind == "image":
            shown = [np.clip(orig, 0, 1), np.where(vis[..., None], orig, 0.5), np.clip(pasted, 0, 1)]
            other = np.clip(pred, 0, 1)
        else:  # depth: drawn through the colour map over the row's range (the figure's own colouring)
            vr = value_range(res)
            shown = [colourise(orig, s.kind, vr), colourise(np.where(vis, orig, np.nan), s.kind, vr),
                     colourise(pasted, s.kind, vr)]
            other = colourise(pred, s.kind, vr)
        _distinct(*shown, other)  # the reconstruction panel would be told from the raw prediction
        for c, (want, what) in enumerate(zip(shown, ("original", "what the model saw", "reconstruction"))):
            _assert_image(app.fig.data[4 * row + c], want, f"{name} {what}")
        hm = app.fig.data[4 * row + 3]
        assert hm.type == "heatmap"
        z = _z(hm)
        np.testing.assert_array_equal(np.isnan(z), np.isnan(err))
        np.testing.assert_allclose(z, err, rtol=1e-4, atol=1e-7)
        h, w = orig.shape[:2]
        assert hm.x0 == pytest.approx(w / s.grid[1] / 2) and hm.dx == pytest.approx(w / s.grid[1])
        assert hm.y0 == pytest.approx(h / s.grid[0] / 2) and hm.dy == pytest.approx(h / s.grid[0])
        assert app.fig.layout.annotations[row].text.startswith(f"{name}: {int(res.visible.sum())}/{s.num_patches}")


def test_multimodal_rows_show_original_visible_pasted_and_error(multimodal_app):
    """Catches: a row's reconstruction panel showing the raw prediction, the original or another modality instead of
    the prediction with the visible patches pasted back; the "what the model saw" panel hiding the wrong patches
    (transposed visible mask); the error map not the per-hidden-patch RMSE; rows swapped; and the same after an
    in-place update (a budget change)."""
    app = multimodal_app
    _check_multimodal(app)
    app.set_budgets({"rgb": 0.25, "depth": 0.5})  # another result, drawn in place
    assert app.result.counts == {"rgb": 4, "depth": 8}
    _check_multimodal(app)
