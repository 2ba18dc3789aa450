"""Labelled procedural scenes for the fusion models: images with captions, questions, object masks
and a depth map as ground truth (OpenCV drawing; free, unlimited, licence-free).

    s = make_scene(seed=3)
    s.image (64, 64, 3) · s.depth (64, 64) · s.objects[i].mask (64, 64) · s.caption() · s.questions()

Objects never overlap and (by default) no two share a colour or a shape, so every object word has
exactly one region; colours and shapes come from small named sets, and every random choice follows
the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .procedural import _background

COLOURS = {
    "red": (0.86, 0.16, 0.16), "green": (0.16, 0.67, 0.24), "blue": (0.16, 0.31, 0.86),
    "yellow": (0.92, 0.82, 0.16), "purple": (0.55, 0.24, 0.71), "orange": (0.94, 0.55, 0.12),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = ("zero", "one", "two", "three", "four")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object.

    Attributes:
        shape, colour, size: words (``size`` is ``"small"`` or ``"large"``).
        center: ``(x, y)`` pixels; radius: pixels; depth: distance (arbitrary units, larger = farther).
        mask: ``(S, S)`` bool, the object's pixels.
    """

    shape: str
    colour: str
    size: str
    center: tuple[int, int]
    radius: int
    depth: float
    mask: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _relation(a: SceneObject, b: SceneObject) -> str:
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


@dataclass(frozen=True)
class Scene:
    """A generated scene and its ground truth.

    Attributes:
        image: ``(S, S, 3)`` float32 in [0, 1].
        depth: ``(S, S)`` float32, larger = farther (background plane rising to the horizon).
        objects: the objects, in drawing order.
        seed: what generated it.
    """

    image: np.ndarray
    depth: np.ndarray
    objects: tuple[SceneObject, ...]
    seed: int

    def caption(self, rng: np.random.Generator | None = None) -> str:
        """``"a red circle left of a blue square"`` (two objects related), or one object's name."""
        rng = rng or np.random.default_rng(self.seed)
        if len(self.objects) == 1:
            return f"a {self.objects[0].size} {self.objects[0].name}"
        i, j = rng.choice(len(self.objects), 2, replace=False)
        a, b = self.objects[i], self.objects[j]
        return f"{_article(a.colour)} {a.name} {_relation(a, b)} {_article(b.colour)} {b.name}"

    def negative_caption(self, rng: np.random.Generator) -> str:
        """A caption that is false for this scene: one colour, shape or relation changed."""
        names = {o.name for o in self.objects}
        for _ in range(100):
            cap = self.caption(rng).split()
            kind = rng.integers(0, 3)
            words = [k for k, w in enumerate(cap) if (w in COLOURS if kind == 0 else w in SHAPES if kind == 1 else w in ("left", "right", "above", "below"))]
            if not words:
                continue
            k = int(rng.choice(words))
            if kind == 0:
                cap[k] = str(rng.choice([c for c in COLOURS if c != cap[k]]))
                if k > 0 and cap[k - 1] in ("a", "an"):
                    cap[k - 1] = _article(cap[k])
            elif kind == 1:
                cap[k] = str(rng.choice([s for s in SHAPES if s != cap[k]]))
            else:
                swap = {"left": "right", "right": "left", "above": "below", "below": "above"}
                cap[k] = swap[cap[k]]
            text = " ".join(cap)
            mentioned = [f"{cap[m]} {cap[m + 1]}" for m in range(len(cap) - 1) if cap[m] in COLOURS and cap[m + 1] in SHAPES]
            if kind < 2 and all(n in names for n in mentioned):
                continue  # the swap named another object of the scene: still true
            if text != self.caption(np.random.default_rng(0)) or kind == 2:
                return text
        raise RuntimeError("could not build a negative caption")

    def questions(self) -> list[tuple[str, str]]:
        """(question, one-word answer) pairs that the scene answers unambiguously."""
        qa = [("how many objects are there", NUMBERS[len(self.objects)])]
        shapes = [o.shape for o in self.objects]
        colours = [o.colour for o in self.objects]
        for o in self.objects:
            if shapes.count(o.shape) == 1:
                qa.append((f"what colour is the {o.shape}", o.colour))
            if colours.count(o.colour) == 1:
                qa.append((f"what shape is the {o.colour} object", o.shape))
        return qa

    def word_masks(self, text: str) -> dict[int, np.ndarray]:
        """Word position → mask of the object that word names (colour or shape of a named object)."""
        words = text.split()
        out = {}
        for k in range(len(words) - 1):
            if words[k] in COLOURS and words[k + 1] in SHAPES:
                match = [o for o in self.objects if o.colour == words[k] and o.shape == words[k + 1]]
                if len(match) == 1:
                    out[k] = out[k + 1] = match[0].mask
        return out


def _draw(img: np.ndarray, mask: np.ndarray, shape: str, c: tuple[int, int], r: int, colour) -> None:
    x, y = c
    if shape == "circle":
        cv2.circle(img, (x, y), r, colour, -1, cv2.LINE_AA)
        cv2.circle(mask, (x, y), r, 1, -1)
    elif shape == "square":
        h = int(round(r * 0.85))
        cv2.rectangle(img, (x - h, y - h), (x + h, y + h), colour, -1, cv2.LINE_AA)
        cv2.rectangle(mask, (x - h, y - h), (x + h, y + h), 1, -1)
    else:
        pts = np.array([[x, y - r], [x - int(r * 0.95), y + int(r * 0.8)], [x + int(r * 0.95), y + int(r * 0.8)]], np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
        cv2.fillPoly(mask, [pts], 1)


def make_scene(seed: int, size: int = 64, n_objects: tuple[int, int] = (1, 3), *, distinct: bool = True) -> Scene:
    """A scene of ``n_objects`` non-overlapping coloured shapes on a textured background.

    ``distinct``: every object has its own colour *and* its own shape, so each colour or shape word
    names exactly one region (what a per-word grounding check needs); otherwise only the
    colour + shape name is unique.
    """
    rng = np.random.default_rng(seed)
    img = _background(rng, size) * 0.5 + 0.25  # muted: objects stand out
    ys = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    depth = np.broadcast_to(8.0 - 5.0 * ys, (size, size)).copy()  # a floor: nearer at the bottom
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objs: list[SceneObject] = []
    tries = 0
    while len(objs) < n and tries < 200:
        tries += 1
        r = int(rng.integers(size // 8, size // 4 + 1))
        x, y = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
        if any((x - o.center[0]) ** 2 + (y - o.center[1]) ** 2 < (r + o.radius + 2) ** 2 for o in objs):
            continue
        shape = str(rng.choice(SHAPES))
        colour = str(rng.choice(list(COLOURS)))
        if any(o.shape == shape and o.colour == colour for o in objs):
            continue  # names must pick out one object
        if distinct and any(o.shape == shape or o.colour == colour for o in objs):
            continue  # each colour word and each shape word names one object
        rgb = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 0.04, 3), 0, 1)
        mask = np.zeros((size, size), np.uint8)
        _draw(img, mask, shape, (x, y), r, tuple(float(v) for v in rgb))
        d = float(rng.uniform(1.5, 4.0))
        depth[mask.astype(bool)] = d
        objs.append(SceneObject(shape, colour, "small" if r < size * 3 // 16 else "large", (x, y), r, d, mask.astype(bool)))
    return Scene(np.clip(img, 0, 1).astype(np.float32), depth.astype(np.float32), tuple(objs), int(seed))
