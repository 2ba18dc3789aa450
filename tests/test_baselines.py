"""Non-learned fills recomputed with OpenCV and numpy directly: the bar the shipped models are judged against must be
the baseline its name says (Telea with OpenCV's radius 5, the visible mean, the nearest visible frame)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from explorer.reconstruction.baselines import mean_fill, nearest_frame_fill, telea_fill, video_telea_fill


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """(48, 64, 3) float in [0, 1] with real texture (scikit-image's astronaut, downscaled)."""
    from skimage import data

    img = cv2.resize(data.astronaut(), (64, 48), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    m = np.zeros((6, 8), bool)  # 8-pixel patches
    m[1, 2] = m[2, 2] = m[4, 6] = m[0, 7] = True
    return m


def test_mean_fill_is_the_visible_mean(photo, mask):
    out = mean_fill(photo, mask, 8)
    px = np.kron(mask, np.ones((8, 8), bool))
    np.testing.assert_array_equal(out[~px], photo[~px])
    np.testing.assert_allclose(out[px], np.broadcast_to(photo[~px].mean(0), out[px].shape), rtol=1e-6)
    # nothing visible: mid grey
    assert np.all(mean_fill(photo, np.ones_like(mask), 8) == 0.5)


def test_telea_fill_is_opencvs_telea_with_radius_5(photo, mask):
    out = telea_fill(photo, mask, 8)
    img8 = np.clip(np.round(photo * 255.0), 0, 255).astype(np.uint8)
    holes = np.kron(mask, np.ones((8, 8), np.uint8))
    ref = cv2.inpaint(img8, holes, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    np.testing.assert_array_equal(out, ref)
    # the radius matters on this image: another radius would be another baseline
    other = cv2.inpaint(img8, holes, 1, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    assert np.abs(other - ref).max() > 0.02
    assert np.abs(cv2.inpaint(img8, holes, 0, cv2.INPAINT_TELEA) / 255.0 - ref).max() > 0.02
    # only hidden pixels change (up to the 8-bit quantisation)
    assert np.abs(out - photo)[holes == 0].max() <= 0.5 / 255 + 1e-6
    assert telea_fill(photo, mask, 8, radius=1).tolist() == other.tolist()


def _clip(T: int = 6) -> np.ndarray:
    """Frame t is the photo-free constant (t + 1) / 10 plus a horizontal ramp: each frame is recognisable."""
    ramp = np.linspace(0, 0.05, 32, dtype=np.float32)[None, :, None]
    return np.stack([np.full((16, 32, 3), (t + 1) / 10, np.float32) + ramp for t in range(T)])


def test_video_telea_uses_each_tubelets_mask():
    clip = _clip(4)
    m = np.zeros((2, 2, 4), bool)  # tubelet 2: frames 0-1 use m[0], frames 2-3 use m[1]
    m[0, 0, 1] = True
    m[1, 1, 3] = True
    out = video_telea_fill(clip, m, 2, 8)
    for t in range(4):
        np.testing.assert_array_equal(out[t], telea_fill(clip[t], m[t // 2], 8))
    assert not np.array_equal(out[0], telea_fill(clip[0], m[1], 8))


def test_nearest_frame_copies_from_the_closest_visible_frame_earlier_on_ties():
    clip = _clip(6)
    m = np.zeros((6, 2, 4), bool)  # tubelet 1
    m[1:3, 0, 1] = True  # hidden at 1, 2; visible at 0 and 3: frame 1 ← 0, frame 2 ← 3
    m[2, 1, 2] = True    # hidden at 2; visible at 1 and 3 (a tie): ← 1
    m[:, 1, 3] = True    # hidden everywhere: Telea per frame
    out = nearest_frame_fill(clip, m, 1, 8)
    blk = lambda a, t, r, c: a[t, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
    np.testing.assert_array_equal(blk(out, 1, 0, 1), blk(clip, 0, 0, 1))
    np.testing.assert_array_equal(blk(out, 2, 0, 1), blk(clip, 3, 0, 1))
    np.testing.assert_array_equal(blk(out, 2, 1, 2), blk(clip, 1, 1, 2))
    tel = video_telea_fill(clip, m, 1, 8)
    for t in range(6):
        np.testing.assert_array_equal(blk(out, t, 1, 3), blk(tel, t, 1, 3))
    visible = ~np.kron(m, np.ones((1, 8, 8), bool))
    assert np.abs(out - clip)[visible].max() <= 0.5 / 255 + 1e-6


def test_nearest_frame_with_tubelets_counts_frames_not_tubelets():
    clip = _clip(6)
    m = np.zeros((3, 2, 4), bool)  # tubelet 2: tubelet 1 = frames 2, 3
    m[1, 0, 0] = True
    out = nearest_frame_fill(clip, m, 2, 8)
    # frame 2 ← frame 1 (distance 1), frame 3 ← frame 4 (distance 1)
    np.testing.assert_array_equal(out[2, :8, :8], clip[1, :8, :8])
    np.testing.assert_array_equal(out[3, :8, :8], clip[4, :8, :8])


def test_fills_return_float32_and_read_integer_masks_and_overshoots():
    """float64 images come back float32 (as documented); a 0/1 integer mask is a boolean one; values a little outside
    [0, 1] (a model's overshoot) are clipped before 8-bit inpainting instead of wrapping around."""
    img = np.linspace(-0.05, 1.05, 16 * 24 * 3).reshape(16, 24, 3)
    m = np.zeros((2, 3), bool)
    m[1, 2] = True
    assert mean_fill(img, m, 8).dtype == np.float32
    out = telea_fill(img, m, 8)
    ref8 = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, cv2.inpaint(ref8, np.kron(m, np.ones((8, 8), np.uint8)), 5, cv2.INPAINT_TELEA) / np.float32(255))
    assert out.min() >= 0 and out.max() <= 1
    clip = _clip(4)
    tm = np.zeros((4, 2, 4), bool)
    tm[1, 0, 1] = tm[2, 1, 3] = True
    a = nearest_frame_fill(clip, tm, 1, 8)
    np.testing.assert_array_equal(a, nearest_frame_fill(clip, tm.astype(np.uint8), 1, 8))
    assert a.dtype == np.float32 and nearest_frame_fill(clip.astype(np.float64), tm, 1, 8).dtype == np.float32


# ---------------------------------------------------------------------------------------------- multimodal baselines
def _result(spec, original, visible):
    return type("R", (), {"spec": spec, "original": original, "visible": np.asarray(visible, bool), "given": True})()


def test_training_mean_prediction_is_per_channel():
    from explorer.modalities import Modality
    from explorer.multimodal.baselines import mean_prediction

    rgb = Modality("rgb", "image", (16, 16, 3), (8, 8), (0.1, 0.5, 0.9), (0.2,) * 3)
    depth = Modality("depth", "depth", (16, 16), (8, 8), (4.25,), (1.0,))
    p = mean_prediction(_result(rgb, None, [True] * 4))
    assert p.shape == (16, 16, 3) and p.dtype == np.float32
    np.testing.assert_array_equal(p[3, 7], np.float32([0.1, 0.5, 0.9]))
    d = mean_prediction(_result(depth, None, [True] * 4))
    assert d.shape == (16, 16) and d.dtype == np.float32 and (d == np.float32(4.25)).all()


def test_depth_inpainting_is_16_bit_telea_over_the_visible_range():
    """The plane is quantised to 16 bits over the visible values' range, holes (hidden or unknown) are inpainted
    by OpenCV's Telea with radius 3, and mapped back: checked against cv2 directly and against a ramp."""
    from explorer.multimodal.baselines import _inpaint_plane

    yy, xx = np.mgrid[0:24, 0:32].astype(np.float32)
    depth = 1.5 + 0.1 * xx + 0.05 * yy  # 1.5 … 6.25 m ramp
    hidden = np.zeros((24, 32), bool)
    hidden[8:16, 8:16] = True
    x = depth.copy()
    x[2, 30] = np.nan  # an unknown value among the visible ones is a hole too
    x[9, 9] = 99.0     # under the hidden patch: must not stretch the range
    got = _inpaint_plane(x, hidden)
    holes = hidden | ~np.isfinite(x)
    lo, hi = float(depth[~holes].min()), float(depth[~holes].max())
    scale = 65535.0 / (hi - lo)
    q = np.round((np.where(holes, lo, x) - lo) * scale).clip(0, 65535).astype(np.uint16)
    ref = cv2.inpaint(q, holes.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA).astype(np.float32) / scale + lo
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.isfinite(got).all()
    vis = ~holes
    assert np.abs(got[vis] - depth[vis]).max() <= (hi - lo) / 65535 + 1e-5  # visible values kept (16-bit steps)
    assert np.abs(got[hidden] - depth[hidden]).max() < 0.35  # a smooth ramp is inpainted close to the ramp
    assert abs(float(got[2, 30]) - float(depth[2, 30])) < 0.1
    assert got.dtype == np.float32


@pytest.mark.parametrize("pair, budgets", [(("RGB", "DEPTH"), {"rgb": 0.5, "depth": 0.4}),
                                           (("VIDEO", "AUDIO"), {"video": 0.5, "audio": 0.3})])
def test_multimodal_baselines_are_the_fills_of_each_kind_on_the_hidden_values(tmp_path, pair, budgets):
    """Every modality kind gets its own fill (Telea for images, the nearest visible frame for video, 16-bit Telea for
    depth / spectrograms) from its own visible patches, and the scores read the hidden values only — on textured
    random inputs, where filling the wrong patches or scoring the visible ones gives other numbers."""
    import _tiny
    from explorer.multimodal import load_multimodal_model
    from explorer.multimodal.baselines import _inpaint_plane, baseline_metrics, inpaint_prediction, mean_prediction
    from explorer.reconstruction.multimodal import reconstruct_multimodal

    specs = [getattr(_tiny, n) for n in pair]
    mm = load_multimodal_model(str(_tiny.save_tiny_multimae(tmp_path / "m", specs, task="rgbd" if "RGB" in pair else "audio-visual")),
                               device="cpu")
    rng = np.random.default_rng(3)
    inputs = {s.name: (rng.random(s.shape) if s.kind in ("image", "video") else
                       rng.uniform(2, 9, s.shape) if s.kind == "depth" else rng.normal(-5, 3, s.shape)).astype(np.float32)
              for s in specs}
    rec = reconstruct_multimodal(mm, inputs, budgets, seed=1)
    for s in specs:  # one unknown (NaN) value in a visible patch of the colour modalities, where the fill reads it
        if s.kind in ("image", "video"):
            v = s.unpatchify_mask(rec[s.name].visible)[..., 0]
            # image: next to a hidden pixel on its right; video: the frame after it is hidden there (it is copied)
            edge = v[:, :-1] & ~v[:, 1:] if s.kind == "image" else v[:-1] & ~v[1:]
            inputs[s.name][tuple(np.argwhere(edge)[0]) + (1,)] = np.nan
    rec = reconstruct_multimodal(mm, inputs, budgets, seed=1)
    base = baseline_metrics(rec)
    for s in specs:
        r = rec[s.name]
        x, hidden_patches = inputs[s.name], ~r.visible
        assert hidden_patches.any() and r.visible.any()
        hidden = ~s.unpatchify_mask(r.visible)
        grey = np.nan_to_num(x, nan=0.5)
        if s.kind == "image":
            ref = telea_fill(grey, hidden_patches.reshape(s.grid), s.patch[0])
        elif s.kind == "video":
            ref = nearest_frame_fill(grey, hidden_patches.reshape(s.grid), s.patch[0], s.patch[1])
        else:
            ref = _inpaint_plane(x, hidden)
        got = inpaint_prediction(r)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
        assert np.nanmax(np.abs(got - x)[hidden]) > 0.05  # the hidden values were filled, not copied
        mean = np.asarray(s.mean, np.float64) if s.channels > 1 else s.mean[0]
        for name, pred in (("training mean", np.broadcast_to(mean, s.shape)), ("inpainting (visible patches)", ref)):
            keep = hidden & np.isfinite(x)
            rmse = float(np.sqrt(np.mean((np.asarray(pred, np.float64)[keep] - x[keep]) ** 2)))
            assert base[name][s.name]["rmse"] == pytest.approx(rmse, rel=1e-5), (name, s.name)
            assert base[name][s.name]["hidden_values"] == int(keep.sum())
        np.testing.assert_array_equal(mean_prediction(r), np.broadcast_to(np.float32(mean), s.shape))


def test_depth_inpainting_keeps_small_ranges_exact():
    """A near wall (0.80–0.83 m): the 16-bit steps follow the visible range however small it is."""
    from explorer.multimodal.baselines import _inpaint_plane

    x = (0.8 + 0.001 * np.arange(32, dtype=np.float32))[None, :].repeat(16, 0)
    hidden = np.zeros_like(x, bool)
    hidden[4:12, 8:16] = True
    got = _inpaint_plane(x, hidden)
    assert np.abs(got - x)[~hidden].max() <= 0.031 / 65535 + 1e-6
    assert np.abs(got - x)[hidden].max() < 0.004
