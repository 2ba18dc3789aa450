"""RGB-D training and evaluation data: generated rooms with exact metric depth, and the Middlebury motorcycle.

    s = make_rgbd_scene(seed=3)            # s.image (64, 64, 3) · s.depth (64, 64) metres · s.objects
    m = motorcycle_rgbd(part="test")       # crops of scikit-image's stereo_motorcycle with its true disparity

The rooms are drawn with a pinhole camera (focal length = image width, camera 1.5 m above a checkered
floor, a textured back wall), so depth can be inferred from the image the way a person would: the floor's
texture gradient and the row where an object stands, object size, sphere shading, occlusion and a light
haze with distance.  Everything follows the seed.  OpenCV drawing: free, unlimited, licence-free.

The motorcycle pair (Middlebury 2014 stereo, Scharstein et al. GCPR 2014, shipped with scikit-image; the dataset asks
to be cited, no other terms) gives
real depth through ``depth = f · B / (d + doffs)`` with the dataset's calibration (``f`` = 3979.911 px,
``B`` = 193.001 mm, ``doffs`` = 124.343 px at full resolution; scikit-image's copy is a quarter of it).
Its left 65 % feeds training and the right 35 % is held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .procedural import _background
from .scenes import COLOURS, SHAPES

CAMERA_HEIGHT_M = 1.5
MOTORCYCLE_F_PX, MOTORCYCLE_BASELINE_M, MOTORCYCLE_DOFFS_PX, MOTORCYCLE_SCALE = 3979.911, 0.193001, 124.343, 4
DEPTH_RANGE_M = (0.5, 20.0)


@dataclass(frozen=True)
class RoomObject:
    """One object standing on the floor: ``shape``, ``colour`` words; ``distance`` (m) to its base; ``mask`` (S, S) bool."""

    shape: str
    colour: str
    distance: float
    mask: np.ndarray


@dataclass(frozen=True)
class RGBDScene:
    """An RGB image with its depth.

    Attributes:
        image: ``(S, S, 3)`` float32 in [0, 1].
        depth: ``(S, S)`` float32 metres; NaN where unknown.
        objects: the objects (generated rooms) or ``()``.
        name: what it is (``"room 3"``, ``"motorcycle (test crop 2)"``).
    """

    image: np.ndarray
    depth: np.ndarray
    objects: tuple[RoomObject, ...]
    name: str

    @property
    def valid(self) -> np.ndarray:
        """``(S, S)`` bool: pixels with a known depth."""
        return np.isfinite(self.depth)


def _floor(rng: np.random.Generator, n: int, f: float, horizon: float, wall: float):
    """Depth and colour of the floor and back wall at ``n × n`` (a checkerboard in world coordinates)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    below = yy - horizon
    with np.errstate(divide="ignore"):
        z = np.where(below > 0, f * CAMERA_HEIGHT_M / np.maximum(below, 1e-6), np.inf)
    on_wall = z >= wall
    z = np.where(on_wall, wall, z).astype(np.float32)
    tile = rng.uniform(0.4, 0.9)
    world_x = (xx - n / 2) * z / f
    checker = ((np.floor(world_x / tile) + np.floor(z / tile)) % 2).astype(np.float32)
    c0, c1 = rng.uniform(0.25, 0.75, 3), rng.uniform(0.25, 0.75, 3)
    floor = c0 * (1 - checker[..., None]) + c1 * checker[..., None]
    wall_img = cv2.resize(_background(rng, 64), (n, n), interpolation=cv2.INTER_LINEAR) * 0.5 + 0.25
    rgb = np.where(on_wall[..., None], wall_img, floor).astype(np.float32)
    return z, rgb


def _draw_object(rgb, z, shape, colour, cx, cy, r, dist, size_m):
    """Paint one object over ``rgb`` / ``z`` (``n × n``) and return its mask; nearer surfaces win."""
    n = rgb.shape[0]
    mask = np.zeros((n, n), np.uint8)
    if shape == "circle":  # a sphere: depth and shading vary over the disc
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        rho2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / max(r * r, 1e-6)
        bulge = np.sqrt(np.clip(1 - rho2, 0, 1))
        surf = dist - size_m * bulge
        shade = 0.45 + 0.55 * np.clip(bulge * 0.8 + (cx - xx) / max(r, 1) * 0.15 + (cy - yy) / max(r, 1) * 0.25, 0, 1)
    elif shape == "square":  # a box seen face-on, its top lit
        h = r * 0.85
        cv2.rectangle(mask, (int(round(cx - h)), int(round(cy - h))), (int(round(cx + h)), int(round(cy + h))), 1, -1)
        surf = np.full((n, n), dist - size_m * 0.85, np.float32)
        yy = np.mgrid[0:n, 0:n][0].astype(np.float32)
        shade = np.where(yy < cy - h * 0.6, 1.0, 0.8)
    else:  # a flat cut-out triangle
        pts = np.array([[cx, cy - r], [cx - r * 0.95, cy + r * 0.8], [cx + r * 0.95, cy + r * 0.8]])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        surf = np.full((n, n), dist, np.float32)
        shade = np.full((n, n), 0.9, np.float32)
    m = mask.astype(bool) & (surf < z)
    rgb[m] = (np.asarray(colour, np.float32)[None] * np.asarray(shade, np.float32)[m][:, None]).clip(0, 1)
    z[m] = surf[m]
    return m


def make_rgbd_scene(seed: int, size: int = 64, n_objects: tuple[int, int] = (1, 4), supersample: int = 2) -> RGBDScene:
    """A room: checkered floor, back wall, 1–4 objects standing on the floor; exact depth in metres.

    Drawn at ``supersample × size`` and reduced (area average for colour, nearest for depth).
    """
    rng = np.random.default_rng(seed)
    n = size * supersample
    f = float(n)  # focal length = image width (53° field of view)
    horizon = n * rng.uniform(0.2, 0.45)
    wall = float(rng.uniform(7.0, 14.0))
    z, rgb = _floor(rng, n, f, horizon, wall)
    specs = []
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        dist = float(rng.uniform(2.6, wall - 1.0))
        size_m = float(rng.uniform(0.3, 0.8))
        base_y = horizon + f * CAMERA_HEIGHT_M / dist
        r = f * size_m / dist
        cx = float(rng.uniform(r * 0.3, n - r * 0.3))
        name = str(rng.choice(list(COLOURS)))
        colour = np.clip(np.array(COLOURS[name]) + rng.normal(0, 0.05, 3), 0, 1)
        specs.append((str(rng.choice(SHAPES)), name, colour, cx, base_y - r, r, dist, size_m))
    objects = []
    for shape, name, colour, cx, cy, r, dist, size_m in sorted(specs, key=lambda s: -s[6]):  # far to near
        m = _draw_object(rgb, z, shape, colour, cx, cy, r, dist, size_m)
        objects.append((shape, name, dist, m))
    haze = 1 - np.exp(-z / 40.0)
    rgb = rgb * (1 - haze[..., None]) + 0.75 * haze[..., None]
    img = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    depth = z[supersample // 2::supersample, supersample // 2::supersample]
    objs = tuple(RoomObject(s, c, d, m[supersample // 2::supersample, supersample // 2::supersample]) for s, c, d, m in objects)
    return RGBDScene(np.clip(img, 0, 1).astype(np.float32), np.ascontiguousarray(depth, np.float32), objs, f"room {seed}")


def motorcycle_depth() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's motorcycle: left image ``(500, 741, 3)`` float32 and metric depth ``(500, 741)`` (NaN = unknown)."""
    from skimage.data import stereo_motorcycle

    left, _, disparity = stereo_motorcycle()
    d_full = np.where(np.isfinite(disparity) & (disparity > 0), disparity * MOTORCYCLE_SCALE, np.nan)
    depth = MOTORCYCLE_F_PX * MOTORCYCLE_BASELINE_M / (d_full + MOTORCYCLE_DOFFS_PX)
    return left.astype(np.float32) / 255.0, depth.astype(np.float32)


def motorcycle_rgbd(seed: int, size: int = 64, part: str = "train", *, _cache: dict = {}) -> RGBDScene:  # noqa: B006
    """A seeded square crop of the motorcycle (left 65 % for ``part="train"``, the rest for ``"test"``), resized to ``size``."""
    if "m" not in _cache:
        _cache["m"] = motorcycle_depth()
    img, depth = _cache["m"]
    h, w = depth.shape
    split = int(w * 0.65)
    rng = np.random.default_rng(seed)
    lo_x, hi_x = (0, split) if part == "train" else (split, w)
    side = int(rng.integers(min(160, hi_x - lo_x), min(h, hi_x - lo_x) + 1))
    x0 = int(rng.integers(lo_x, hi_x - side + 1))
    y0 = int(rng.integers(0, h - side + 1))
    crop = img[y0:y0 + side, x0:x0 + side]
    dcrop = depth[y0:y0 + side, x0:x0 + side]
    im = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    dd = cv2.resize(dcrop, (size, size), interpolation=cv2.INTER_NEAREST)
    return RGBDScene(np.clip(im, 0, 1).astype(np.float32), dd.astype(np.float32), (), f"motorcycle ({part} crop {seed})")
