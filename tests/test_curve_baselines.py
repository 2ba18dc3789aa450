"""Issue 18 (and 15): the quality-vs-ratio curves of the MAE and the video apps draw the non-learned baselines beside the
model, on exactly the sweep's own masks, computed once per sweep (a slider move recomputes nothing)."""

from __future__ import annotations

import numpy as np
import pytest

import explorer.reconstruction.baselines as B
from explorer import viz
from explorer.metrics import masked_psnr
from explorer.reconstruction import reconstruct_sweep
from explorer.reconstruction.baselines import mean_fill, nearest_frame_fill, telea_fill
from explorer.reconstruction.video import MEAN_FRAMES, NEAREST, TELEA_FRAMES, reconstruct_video, sweep_baseline_psnr
from explorer.viz import video as VV

from _tiny import save_tiny_mae, save_tiny_videomae

IMAGE_NAMES = [B.TELEA, B.MEAN]
VIDEO_NAMES = [TELEA_FRAMES, MEAN_FRAMES, NEAREST]


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    return save_tiny_mae(tmp_path_factory.mktemp("curve-mae"), image_size=64)


@pytest.fixture(scope="module")
def vmae_dir(tmp_path_factory):
    return save_tiny_videomae(tmp_path_factory.mktemp("curve-vmae"))


@pytest.fixture(scope="module")
def mae(mae_dir):
    from explorer.models import load_model

    return load_model(str(mae_dir), device="cpu")


@pytest.fixture()
def counted(monkeypatch):
    """Count the calls of the two image fills every baseline goes through (the video ones call them per frame)."""
    calls = {"telea": 0, "mean": 0}

    def telea(*a, **k):
        calls["telea"] += 1
        return telea_fill(*a, **k)

    def mean(*a, **k):
        calls["mean"] += 1
        return mean_fill(*a, **k)

    monkeypatch.setattr(B, "telea_fill", telea)
    monkeypatch.setattr(B, "mean_fill", mean)
    return calls


def _image_expected(sweep) -> dict[str, list[float]]:
    """Telea and mean fills recomputed here, independently, on each result's own mask."""
    p = sweep.results[0].patch_size
    return {B.TELEA: [masked_psnr(telea_fill(r.image, r.mask, p), r.image, r.mask, p) for r in sweep.results],
            B.MEAN: [masked_psnr(mean_fill(r.image, r.mask, p), r.image, r.mask, p) for r in sweep.results]}


def _clip_psnr(fill, rec) -> float:
    """PSNR over every hidden pixel of every frame (patches are equal-sized: the pooled patch MSE)."""
    px = np.stack([np.kron(rec.frame_mask(i), np.ones((rec.patch_size,) * 2, bool)) for i in range(len(rec.frames))])
    err = (np.asarray(fill, np.float64) - rec.frames) ** 2
    return float(10 * np.log10(1 / err[px].mean()))


def _video_expected(rec) -> dict[str, float]:
    p, T = rec.patch_size, len(rec.frames)
    telea = np.stack([telea_fill(rec.frames[i], rec.frame_mask(i), p) for i in range(T)])
    mean = np.stack([mean_fill(rec.frames[i], rec.frame_mask(i), p) for i in range(T)])
    return {TELEA_FRAMES: _clip_psnr(telea, rec), MEAN_FRAMES: _clip_psnr(mean, rec),
            NEAREST: _clip_psnr(nearest_frame_fill(rec.frames, rec.mask, rec.tubelet, p), rec)}


# ------------------------------------------------------------------------------------------------ image: compute + viz
def test_image_sweep_baselines_are_the_fills_on_the_sweeps_own_masks(mae):
    sweep = reconstruct_sweep(mae, "chelsea", seed=3, strategy="block")
    got = sweep.baseline_psnr
    assert list(got) == IMAGE_NAMES
    expected = _image_expected(sweep)
    for name in IMAGE_NAMES:
        assert got[name].shape == (len(sweep.ratios),)
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12)
    # another seed's masks give other values: the comparison above sees which masks were used
    other = _image_expected(reconstruct_sweep(mae, "chelsea", seed=4, strategy="block"))
    assert np.abs(np.asarray(other[B.TELEA]) - got[B.TELEA]).max() > 0.01
    assert not np.allclose(got[B.TELEA], got[B.MEAN])  # two different fills
    assert sweep.baseline_psnr is got  # kept with the sweep


def test_ratio_curve_draws_model_and_baselines_with_their_values(mae):
    sweep = reconstruct_sweep(mae, "chelsea", seed=0)
    fig = viz.ratio_curve(sweep, baselines=sweep.baseline_psnr, current=0.5)
    assert [t.name for t in fig.data] == [mae.model_id, *IMAGE_NAMES]
    np.testing.assert_allclose(fig.data[0].y, sweep.psnr_curve)
    expected = _image_expected(sweep)
    for trace, name in zip(fig.data[1:], IMAGE_NAMES):
        np.testing.assert_allclose(np.asarray(trace.x, float), sweep.ratios)
        np.testing.assert_allclose(np.asarray(trace.y, float), expected[name], rtol=1e-12)
    styles = {(t.line.color, t.line.dash) for t in fig.data}
    assert len(styles) == 3  # each curve its own colour / dash
    assert all("%{y" in t.hovertemplate for t in fig.data) and fig.layout.hovermode == "x unified"
    # the legend is below the axes (in the bottom margin, at the bottom of the figure), not over the data
    lg = fig.layout.legend
    assert lg.orientation == "h" and lg.yref == "container" and lg.y == 0 and lg.yanchor == "bottom"
    assert fig.layout.margin.b >= 60
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == 0.5  # the current-ratio marker, as before


# ------------------------------------------------------------------------------------------------ image: the app
def test_mae_app_curve_shows_baselines_and_a_slider_move_recomputes_nothing(mae_dir, counted):
    from explorer.widgets.mae_app import MAEApp

    app = MAEApp(model=str(mae_dir), image="chelsea", ratio=0.75)
    n = len(app.sweep.ratios)
    assert counted == {"telea": n, "mean": n}  # once per ratio of the one sweep on screen
    assert [t.name for t in app.curve.data] == [app.adapter.model_id, *IMAGE_NAMES]
    expected = _image_expected(app.sweep)
    for trace, name in zip(app.curve.data[1:], IMAGE_NAMES):
        np.testing.assert_allclose(np.asarray(trace.y, float), expected[name], rtol=1e-12)
    counted.update(telea=0, mean=0)
    for r in (0.3, 0.5, 0.9, 0.6):
        app.ratio.value = r
    assert counted == {"telea": 0, "mean": 0}
    assert app.curve.layout.shapes[0].x0 == pytest.approx(0.6) and len(app.curve.data) == 3
    app.strategy_tb.value = "block"  # another sweep: its own baselines, once
    assert counted == {"telea": n, "mean": n}
    app.strategy_tb.value = "random"  # back to the cached sweep: nothing recomputed
    assert counted == {"telea": n, "mean": n}
    np.testing.assert_allclose(np.asarray(app.curve.data[1].y, float), expected[B.TELEA], rtol=1e-12)


# ------------------------------------------------------------------------------------------------ video
def test_video_baselines_are_the_fills_on_each_reconstructions_own_mask(vmae_dir):
    from explorer.models import load_model
    from explorer.data.clips import make_clip

    model = load_model(str(vmae_dir), device="cpu")
    frames = make_clip(10_000_003, frames=4, size=32).frames
    recs = [reconstruct_video(model, frames, ratio=r, strategy="random", seed=1) for r in (0.5, 0.75, 0.9)]
    got = sweep_baseline_psnr(recs)
    assert list(got) == VIDEO_NAMES
    for k, rec in enumerate(recs):
        exp = _video_expected(rec)
        for name in VIDEO_NAMES:
            assert got[name][k] == pytest.approx(exp[name], rel=1e-9)
    # random masks leave each patch visible in some frame: copying it beats inpainting, so the curves differ
    assert (got[NEAREST] > got[TELEA_FRAMES]).all()
    fig = VV.ratio_curve(recs, baselines=got)
    assert [t.name for t in fig.data] == ["model", *VIDEO_NAMES]
    np.testing.assert_allclose(np.asarray(fig.data[0].y, float), [r.psnr_masked for r in recs])
    for trace, name in zip(fig.data[1:], VIDEO_NAMES):
        np.testing.assert_allclose(np.asarray(trace.y, float), got[name])
    assert len({(t.line.color, t.line.dash) for t in fig.data}) == 4


def test_video_app_curve_shows_baselines_and_a_slider_move_recomputes_nothing(vmae_dir, counted):
    from explorer.widgets.video_app import VIDEO_RATIOS, VideoMAEApp

    app = VideoMAEApp(model=str(vmae_dir), clip="generated:10000003", ratio=0.9, strategy="random")
    T = len(app.result.frames)
    once = {"telea": len(VIDEO_RATIOS) * T, "mean": len(VIDEO_RATIOS) * T}  # Telea once per frame serves two baselines
    assert counted == once
    assert [t.name for t in app.curve.data] == ["model", *VIDEO_NAMES]
    recs = [app.sweep[r] for r in VIDEO_RATIOS]
    for k, rec in enumerate(recs):
        exp = _video_expected(rec)
        for trace, name in zip(app.curve.data[1:], VIDEO_NAMES):
            assert trace.y[k] == pytest.approx(exp[name], rel=1e-9)
    counted.update(telea=0, mean=0)
    app.ratio.value = 0.5
    app.frame.value = 2
    app.ratio.value = 0.75
    assert counted == {"telea": 0, "mean": 0} and len(app.curve.data) == 4
    app.strategy.value = "tube"  # a new sweep: its baselines once
    assert counted == once
    app.strategy.value = "random"  # the cached sweep and its cached baselines
    assert counted == once
    assert app.curve.data[3].y[0] == pytest.approx(_video_expected(app.sweep[VIDEO_RATIOS[0]])[NEAREST], rel=1e-9)
