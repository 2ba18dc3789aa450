"""Depth maps for RGB-D models: decode, validate, mark invalid pixels, and stereo → disparity (OpenCV).

    d = load_depth("frame_depth.png")        # 16-bit PNG in millimetres → metres, zeros marked invalid
    d.depth (H, W) float32 (NaN = invalid) · d.valid (H, W) bool · d.notes
    disp = stereo_disparity(left, right)     # OpenCV semi-global block matching

Accepted: 16-bit PNG (millimetres, the Kinect / NYU / ScanNet convention; ``scale=`` overrides), 8-bit
images (relative depth, said so), 32-bit float TIFF, OpenEXR where the installed OpenCV was built with it
(the PyPI wheel of OpenCV 5 is not: such files get a message saying how to convert them), ``.npy`` (read
with ``allow_pickle=False``), and arrays.
Zeros, negatives, NaN and infinity are invalid depth; a map with no valid pixel is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must be set before OpenCV reads its first EXR

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .io import CV2_PIXEL_CAP, DEFAULT_MAX_PIXELS, ImageLoadError, array_sha256, header_size, read_source  # noqa: E402


class DepthLoadError(ImageLoadError):
    """The depth map cannot be used; the message says why, for the user."""


@dataclass(frozen=True)
class LoadedDepth:
    """A decoded depth (or disparity) map.

    Attributes:
        depth: ``(H, W)`` float32, metres for metric sources; NaN where invalid.
        valid: ``(H, W)`` bool.
        kind: ``"metric depth"``, ``"relative depth"`` or ``"disparity"`` (pixels).
        name, sha256: the source; notes: every conversion, for the user.
    """

    depth: np.ndarray
    valid: np.ndarray
    kind: str
    name: str
    sha256: str
    notes: tuple[str, ...]


def _finish(arr: np.ndarray, kind: str, name: str, digest: str, notes: list[str], *, owned: bool = False) -> LoadedDepth:
    """``arr`` (float32 when ``owned``: then modified in place) → a :class:`LoadedDepth`; peak memory ≈ 6 bytes a pixel
    on top of ``arr``."""
    a = arr if owned and arr.dtype == np.float32 else np.array(arr, np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise DepthLoadError(f"A depth map must be one channel (H, W), got shape {a.shape}"
                             + (": this looks like a colour image; pass the depth image instead." if a.ndim == 3 else "."))
    valid = np.isfinite(a)
    valid &= a > 0
    n_valid = int(np.count_nonzero(valid))
    bad = int(a.size - n_valid)
    if not n_valid:
        raise DepthLoadError(f"{name}: no valid depth (every pixel is zero, negative, NaN or infinite).")
    if bad:
        notes.append(f"{bad} of {a.size} pixels ({100 * bad / a.size:.1f} %) have no valid depth (zero, negative, NaN or "
                     "infinite): they are marked invalid and left out of every metric")
        a[~valid] = np.nan
    return LoadedDepth(np.ascontiguousarray(a), valid, kind, name, digest, tuple(notes))


def _scaled(img: np.ndarray, s: float) -> np.ndarray:
    """``img`` as a new float32 array times ``s`` (in place: one copy of the pixels, not two)."""
    out = img.astype(np.float32)
    if s != 1.0:
        out *= np.float32(s)
    return out


def _check_pixels(name: str, w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise DepthLoadError(f"{name}: {w}x{h} pixels is over the limit of {max_pixels:,} (max_pixels).")
    if w * h > CV2_PIXEL_CAP:
        raise DepthLoadError(f"{name}: {w}x{h} pixels is over OpenCV's own limit of {CV2_PIXEL_CAP:,} "
                             "(OPENCV_IO_MAX_IMAGE_PIXELS, read when cv2 is first imported).")


def _load_npy(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """A ``.npy`` file's array; its header (shape, dtype) is checked before the array is read."""
    from numpy.lib import format as npy

    f = io.BytesIO(data)
    try:
        version = npy.read_magic(f)
        shape, _fortran, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(f)
    except Exception as e:  # noqa: BLE001 - not a valid .npy header
        raise DepthLoadError(f"{name}: cannot read this .npy file ({type(e).__name__}: {e}).") from None
    if dtype.hasobject:
        raise DepthLoadError(f"{name}: a .npy file holding Python objects is refused (it would need unpickling).")
    if not np.issubdtype(dtype, np.number):
        raise DepthLoadError(f"{name}: a depth array must be numeric, got dtype {dtype}.")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count > max_pixels:
        raise DepthLoadError(f"{name}: an array of shape {shape} ({count:,} values) is over the limit of {max_pixels:,} "
                             "pixels (max_pixels).")
    if count * dtype.itemsize > len(data) - f.tell():
        raise DepthLoadError(f"{name}: the .npy file is truncated (its header declares shape {shape}, {dtype}, "
                             f"{count * dtype.itemsize:,} bytes; {len(data) - f.tell():,} are present).")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - corrupt npy
        raise DepthLoadError(f"{name}: cannot read this .npy file ({type(e).__name__}: {e}).") from None


def load_depth(source: Any, *, scale: float | None = None, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedDepth:
    """Decode a depth map from a path, bytes, an upload or an array.

    Args:
        scale: multiply raw values by this (default: 0.001 for 16-bit images, i.e. millimetres → metres; 1 otherwise).
        max_pixels: refuse maps with more pixels (checked from the file's header, before decoding).
    Raises:
        DepthLoadError: unreadable, not one channel, too large, or no valid pixel.
    """
    data, name = read_source(source, name, error=DepthLoadError, noun="a depth map")
    notes: list[str] = []
    s1 = 1.0 if scale is None else scale
    if isinstance(data, np.ndarray):
        if not np.issubdtype(data.dtype, np.number):
            raise DepthLoadError(f"A depth array must be numeric, got dtype {data.dtype}.")
        digest = array_sha256(data)
        if data.size > max_pixels:
            raise DepthLoadError(f"A depth array of shape {data.shape} is over the limit of {max_pixels:,} pixels (max_pixels).")
        return _finish(_scaled(data, s1), "metric depth", name, digest, notes, owned=True)
    if not data:
        raise DepthLoadError(f"{name} is empty (0 bytes).")
    digest = hashlib.sha256(data).hexdigest()
    if data[:6] == b"\x93NUMPY":
        arr = _load_npy(data, name, max_pixels)
        return _finish(_scaled(arr, s1), "metric depth", name, digest, notes, owned=True)
    size = header_size(data)
    if size is not None:
        _check_pixels(name, *size, max_pixels)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:
        if "MAX_IMAGE" in str(e):
            raise DepthLoadError(f"{name} is larger than OpenCV's own limit of {CV2_PIXEL_CAP:,} pixels "
                                 "(OPENCV_IO_MAX_IMAGE_PIXELS) or of 1,048,576 pixels a side.") from None
        img = None
    if img is None:
        if data[:4] == b"\x76\x2f\x31\x01":
            raise DepthLoadError(f"{name} is an OpenEXR file, and this OpenCV build cannot read OpenEXR. Convert it to a "
                                 "32-bit float TIFF or a .npy array (e.g. with the `OpenEXR` or `imageio` package) and load that.")
        raise DepthLoadError(f"{name}: not a depth image OpenCV can decode (16-bit PNG, 8-bit image, float TIFF or .npy).")
    del data
    _check_pixels(name, img.shape[1], img.shape[0], max_pixels)
    if img.ndim == 3 and img.shape[2] in (3, 4) and img.dtype != np.float32:
        if np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
            img = img[..., 0]
            notes.append("grey depth stored as RGB: first channel used")
        else:
            raise DepthLoadError(f"{name} is a colour image, not a depth map (depth has one channel).")
    if img.ndim == 3 and img.dtype == np.float32:
        img = img[..., 0]
        notes.append("multi-channel float image: first channel used as depth")
    if img.dtype == np.uint16:
        s = 0.001 if scale is None else scale
        notes.append("16-bit image read as millimetres (× 0.001 → metres)" if scale is None else f"16-bit image × {s}")
        return _finish(_scaled(img, s), "metric depth", name, digest, notes, owned=True)
    if img.dtype == np.uint8:
        notes.append("8-bit image: relative depth (0–255, larger = farther assumed), not metres")
        return _finish(_scaled(img, s1), "relative depth", name, digest, notes, owned=True)
    return _finish(_scaled(img, s1), "metric depth", name, digest, notes, owned=True)


def stereo_disparity(left: np.ndarray, right: np.ndarray, *, num_disparities: int = 64, block: int = 5) -> LoadedDepth:
    """Disparity (pixels) of a rectified stereo pair with OpenCV's semi-global block matching.

    Args:
        left, right: ``(H, W, 3)`` or ``(H, W)`` float in [0, 1] or uint8, same shape.
        num_disparities: search range (rounded up to a multiple of 16).
    Returns:
        a :class:`LoadedDepth` of kind ``"disparity"``; pixels without a match are invalid.
    """
    a, b = np.asarray(left), np.asarray(right)
    if a.shape != b.shape:
        raise DepthLoadError(f"The stereo images differ in size: {a.shape} vs {b.shape}.")

    def grey(x):
        if x.dtype != np.uint8:  # by bands of rows: no float temporaries the size of the image
            x8 = np.empty(x.shape, np.uint8)
            step = max(1, (1 << 20) // max(1, x.shape[1]))
            for r in range(0, x.shape[0], step):
                x8[r:r + step] = np.clip(np.round(x[r:r + step] * 255), 0, 255)
        else:
            x8 = x
        return cv2.cvtColor(x8, cv2.COLOR_RGB2GRAY) if x8.ndim == 3 else x8

    nd = int(np.ceil(num_disparities / 16) * 16)
    w = a.shape[1]
    if w < 32:
        raise DepthLoadError(f"The stereo images are {w} pixels wide: block matching needs at least 32.")
    notes = []
    if nd > w // 2:  # OpenCV fails with an internal assertion when the search range nears the width
        nd = max(16, (w // 2) // 16 * 16)
        notes.append(f"disparity range reduced to {nd} for images {w} pixels wide")
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=nd, blockSize=block, P1=8 * block * block,
                                 P2=32 * block * block, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                 mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    disp = sgbm.compute(grey(a), grey(b)).astype(np.float32) / 16.0  # OpenCV returns fixed point ×16
    digest = hashlib.sha256(np.ascontiguousarray(a).tobytes() + np.ascontiguousarray(b).tobytes()).hexdigest()
    return _finish(disp, "disparity", "<stereo pair>", digest,
                   [f"disparity from OpenCV semi-global block matching ({nd} disparities, block {block})"] + notes)


def disparity_to_depth(disparity: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """``depth = focal · baseline / disparity`` (metres); NaN where the disparity is not positive."""
    d = np.asarray(disparity, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(d > 0, focal_px * baseline_m / d, np.nan)
    return out.astype(np.float32)
