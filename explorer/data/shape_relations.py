"""Where is one shape relative to another: a classification task that needs local *and* global relations.

Each image holds exactly two shapes of different kinds (circle, square, triangle; any of six colours) on a textured
background, or on a crop of a real photo.  The label names the pair and where the earlier shape of
:data:`~explorer.data.scenes.SHAPES` lies relative to the other, e.g. ``"circle left of triangle"`` (12 classes).
Telling a circle from a square is a local question (a few tokens of edges); comparing two positions up to the whole
image apart is a global one — what UniFormer's local and global stages divide between them.

    s = relation_scene(seed=3)                     # image (64, 64, 3) float32, label index, label words, the objects
    s = relation_scene(seed=3, background=photo)   # the same shapes over a random crop of ``photo`` (H, W, 3)
    images, labels = relation_dataset(range(1000)) # (N, 64, 64, 3) uint8, (N,) int64 (seeds without two shapes skipped)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import cv2
import numpy as np

from .scenes import RELATIONS, SHAPES, SceneObject, _relation, make_scene

#: The 12 classes: ``"<shape a> <relation> <shape b>"`` with a before b in SHAPES.
PAIRS = tuple(combinations(SHAPES, 2))
LABELS = tuple(f"{a} {rel} {b}" for a, b in PAIRS for rel in RELATIONS)

#: Horizontal mirror: class index → the index of the mirrored scene's class (left ↔ right).
MIRROR = tuple(LABELS.index(lab.replace("left", "@").replace("right", "left").replace("@", "right")) for lab in LABELS)


@dataclass(frozen=True)
class RelationScene:
    """One sample.

    Attributes:
        image: ``(S, S, 3)`` float32 in [0, 1].
        label: index into :data:`LABELS`.
        objects: the two shapes (centres, radii, masks), in drawing order.
        seed: what generated it; background: ``"texture"`` or ``"photo"``.
    """

    image: np.ndarray
    label: int
    objects: tuple[SceneObject, ...]
    seed: int
    background: str

    @property
    def words(self) -> str:
        return LABELS[self.label]


def label_of(objects: tuple[SceneObject, ...]) -> int:
    """The class of two shapes of different kinds: where the earlier one (in SHAPES order) lies relative to the other."""
    if len(objects) != 2 or objects[0].shape == objects[1].shape:
        raise ValueError("A relation label needs exactly two shapes of different kinds.")
    a, b = sorted(objects, key=lambda o: SHAPES.index(o.shape))
    return LABELS.index(f"{a.shape} {_relation(a, b)} {b.shape}")


def _photo_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(size, size, 3)`` crop of ``photo`` after scaling its shorter side to 1.5–4 × ``size``."""
    h, w = photo.shape[:2]
    scale = rng.uniform(1.5, 4.0) * size / min(h, w)
    small = cv2.resize(photo, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
    y = int(rng.integers(0, small.shape[0] - size + 1))
    x = int(rng.integers(0, small.shape[1] - size + 1))
    return small[y:y + size, x:x + size].astype(np.float32)


def relation_scene(seed: int, size: int = 64, *, background: np.ndarray | None = None) -> RelationScene | None:
    """The sample of ``seed`` (``None`` when the seed's scene did not place two shapes).

    Args:
        seed: every random choice follows it.
        size: image side.
        background: ``(H, W, 3)`` float RGB in [0, 1]: the shapes are laid over a random crop of it (seeded) instead
            of the generated texture.
    """
    scene = make_scene(seed, size, n_objects=(2, 2), distinct=True)
    if len(scene.objects) != 2:
        return None
    image = scene.image
    kind = "texture"
    if background is not None:
        crop = _photo_crop(np.asarray(background, np.float32), size, np.random.default_rng([seed, 1]))
        on = np.zeros((size, size), bool)
        for o in scene.objects:
            on |= o.mask
        image = np.where(on[..., None], image, crop).astype(np.float32)
        kind = "photo"
    return RelationScene(np.clip(image, 0, 1), label_of(scene.objects), scene.objects, int(seed), kind)


def relation_dataset(seeds, size: int = 64, *, photos: list[np.ndarray] | None = None,
                     photo_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``seeds`` as arrays.

    Args:
        seeds: iterable of ints (seeds without two shapes are skipped).
        photos: real photos for backgrounds; a seed's photo and whether it gets one follow the seed.
        photo_share: fraction of samples laid over a photo (1.0: all).
    Returns:
        ``images (N, size, size, 3) uint8``, ``labels (N,) int64``.
    """
    images, labels = [], []
    for seed in seeds:
        bg = None
        if photos and photo_share > 0:
            rng = np.random.default_rng([int(seed), 2])
            if rng.random() < photo_share:
                bg = photos[int(rng.integers(len(photos)))]
        s = relation_scene(int(seed), size, background=bg)
        if s is None:
            continue
        images.append(np.round(s.image * 255).astype(np.uint8))
        labels.append(s.label)
    return np.stack(images), np.asarray(labels, np.int64)
