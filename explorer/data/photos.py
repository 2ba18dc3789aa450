"""Openly licensed photos that ship inside Python packages, split into train / held-out.

Nothing is downloaded: scikit-image and scikit-learn carry these files in their wheels.
The held-out photos are never shown to the model during training; they measure it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotoSource:
    """One photo: where it ships and under which licence."""

    name: str
    package: str  # "skimage" or "sklearn"
    filename: str
    licence: str
    split: str  # "train" or "heldout"


PHOTOS: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "skimage", "astronaut.png", "public domain (NASA)", "train"),
    PhotoSource("rocket", "skimage", "rocket.jpg", "public domain (SpaceX)", "train"),
    PhotoSource("camera", "skimage", "camera.png", "CC0 (Lav Varshney)", "train"),
    PhotoSource("coins", "skimage", "coins.png", "no known copyright restrictions", "train"),
    PhotoSource("hubble_deep_field", "skimage", "hubble_deep_field.jpg", "public domain (NASA)", "train"),
    PhotoSource("immunohistochemistry", "skimage", "ihc.png", "no known copyright restrictions", "train"),
    PhotoSource("retina", "skimage", "retina.jpg", "CC0 1.0", "train"),
    PhotoSource("cell", "skimage", "cell.png", "CC0", "train"),
    PhotoSource("microaneurysms", "skimage", "microaneurysms.png", "CC0 (Andreas Maier)", "train"),
    PhotoSource("brick", "skimage", "brick.png", "CC0 (CC0Textures)", "train"),
    PhotoSource("grass", "skimage", "grass.png", "CC0 (CC0Textures)", "train"),
    PhotoSource("gravel", "skimage", "gravel.png", "CC0 (CC0Textures)", "train"),
    PhotoSource("text", "skimage", "text.png", "public domain", "train"),
    PhotoSource("clock", "skimage", "clock_motion.png", "public domain (Stefan van der Walt)", "train"),
    # Held out: never seen in training.
    PhotoSource("chelsea", "skimage", "chelsea.png", "CC0 (Stefan van der Walt)", "heldout"),
    PhotoSource("coffee", "skimage", "coffee.png", "CC0 (Rachel Michetti)", "heldout"),
    PhotoSource("china", "sklearn", "china.jpg", "CC BY 2.0 (sklearn sample image)", "heldout"),
    PhotoSource("flower", "sklearn", "flower.jpg", "CC BY 2.0 (sklearn sample image)", "heldout"),
)


def photo_path(src: PhotoSource) -> Path:
    """Absolute path of the photo file inside its installed package."""
    if src.package == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent / src.filename
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / src.filename


def load_photo(src: PhotoSource) -> np.ndarray:
    """Decode one photo: ``(H, W, 3)`` float32 RGB in ``[0, 1]`` (grey replicated)."""
    img = cv2.imread(str(photo_path(src)), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"Cannot read sample photo {src.name} at {photo_path(src)}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def photos(split: str) -> dict[str, np.ndarray]:
    """All photos of one split (``"train"`` or ``"heldout"``), by name."""
    return {p.name: load_photo(p) for p in PHOTOS if p.split == split}
