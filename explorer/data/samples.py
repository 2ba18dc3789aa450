"""Sample photos offered in the widgets: openly licensed files shipped by installed packages.

Held-out photos were never seen by the shipped mini models; "train" ones were (the label is
shown so nobody mistakes memorisation for generalisation).
"""

from __future__ import annotations

from functools import lru_cache

from ..io import LoadedImage, load_image
from .photos import PHOTOS, photo_path

_OFFERED = ("chelsea", "coffee", "china", "flower", "astronaut", "rocket")
SAMPLES = {p.name: p for p in PHOTOS if p.name in _OFFERED}


def sample_label(name: str) -> str:
    """Dropdown label, e.g. ``"chelsea (held out, CC0 (Stefan van der Walt))"``."""
    p = SAMPLES[name]
    split = "held out" if p.split == "heldout" else "seen in training"
    return f"{name} ({split}; {p.licence})"


@lru_cache(maxsize=16)
def load_sample(name: str) -> LoadedImage:
    """Decode a sample photo by name (cached; :class:`LoadedImage` is immutable)."""
    if name not in SAMPLES:
        raise KeyError(f"Unknown sample {name!r}; choose one of {', '.join(SAMPLES)}.")
    return load_image(photo_path(SAMPLES[name]), name=name)
