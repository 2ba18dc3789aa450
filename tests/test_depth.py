"""Depth maps: 16-bit PNG (millimetres), 8-bit, float EXR and .npy with NaN / zeros / infinity; bad files refused
with a message; stereo → disparity checked against the Middlebury ground truth that ships with scikit-image."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from explorer.depth import DepthLoadError, disparity_to_depth, load_depth, stereo_disparity


def _png(arr) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def test_16_bit_png_is_millimetres_and_zeros_are_invalid():
    raw = np.full((20, 30), 1500, np.uint16)
    raw[:5] = 0
    d = load_depth(_png(raw), name="d.png")
    assert d.kind == "metric depth" and d.depth.dtype == np.float32
    assert np.allclose(d.depth[5:], 1.5) and np.isnan(d.depth[:5]).all() and d.valid.sum() == 15 * 30
    assert any("millimetres" in n for n in d.notes) and any("25.0 %" in n for n in d.notes)
    assert np.allclose(load_depth(_png(raw), scale=0.0001).depth[5:], 0.15)


def test_npy_with_nan_inf_and_negatives(tmp_path):
    a = np.linspace(0.5, 4.0, 100, dtype=np.float32).reshape(10, 10)
    a[0, 0], a[0, 1], a[0, 2], a[0, 3] = np.nan, np.inf, -1.0, 0.0
    p = tmp_path / "d.npy"
    np.save(p, a)
    d = load_depth(p)
    assert d.valid.sum() == 96 and np.isnan(d.depth[0, :4]).all() and d.depth[5, 5] == pytest.approx(a[5, 5])
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DepthLoadError, match="unpickling"):
        load_depth(obj.getvalue(), name="evil.npy")


def test_float_tiff_round_trip_and_exr_explained(tmp_path):
    a = np.random.default_rng(0).uniform(0.5, 5, (16, 24)).astype(np.float32)
    a[3, 3] = np.nan
    p = tmp_path / "d.tiff"
    assert cv2.imwrite(str(p), a)
    d = load_depth(p)
    assert d.valid.sum() == a.size - 1 and np.allclose(d.depth[d.valid], a[d.valid])
    exr = b"\x76\x2f\x31\x01" + b"\x00" * 60  # OpenEXR magic number
    if not cv2.haveImageReader("x.exr"):
        with pytest.raises(DepthLoadError, match="OpenEXR"):
            load_depth(exr, name="d.exr")


def test_bad_depth_inputs_are_refused_with_a_reason():
    with pytest.raises(DepthLoadError, match="no valid depth"):
        load_depth(_png(np.zeros((8, 8), np.uint16)))
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8)
    with pytest.raises(DepthLoadError, match="colour image"):
        load_depth(_png(rgb))
    with pytest.raises(DepthLoadError, match="decode"):
        load_depth(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    with pytest.raises(DepthLoadError, match="empty"):
        load_depth(b"")
    rel = load_depth(_png(np.full((4, 4), 100, np.uint8)))
    assert rel.kind == "relative depth" and any("relative" in n for n in rel.notes)


def test_stereo_disparity_agrees_with_middlebury_ground_truth():
    from skimage.data import stereo_motorcycle

    left, right, truth = stereo_motorcycle()
    s = 4  # quarter resolution keeps the test fast; disparities scale with it
    small = lambda im: cv2.resize(im, (im.shape[1] // s, im.shape[0] // s), interpolation=cv2.INTER_AREA)  # noqa: E731
    d = stereo_disparity(small(left), small(right), num_disparities=80 // s * 2)
    gt = cv2.resize(truth, (truth.shape[1] // s, truth.shape[0] // s), interpolation=cv2.INTER_NEAREST) / s
    both = d.valid & np.isfinite(gt) & (gt > 0)
    assert both.mean() > 0.5
    err = np.abs(d.depth[both] - gt[both])
    assert np.median(err) < 1.5  # pixels, at quarter resolution
    depth = disparity_to_depth(d.depth, focal_px=100.0, baseline_m=0.2)
    assert np.isnan(depth[~d.valid]).all() and np.allclose(depth[both] * d.depth[both], 20.0, rtol=1e-5)


def test_stereo_on_narrow_images_reduces_the_range_or_refuses():
    rng = np.random.default_rng(0)
    left = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    right = np.roll(left, -4, axis=1)
    d = stereo_disparity(left, right, num_disparities=64)  # OpenCV alone fails here with an internal assertion
    assert any("reduced to 32" in n for n in d.notes)
    assert np.median(d.depth[d.valid]) == pytest.approx(4, abs=0.5)
    with pytest.raises(DepthLoadError, match="at least 32"):
        stereo_disparity(left[:, :20], right[:, :20])
