"""Labelled procedural scenes: deterministic, and their ground truth agrees with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.data.scenes import COLOURS, SHAPES, make_scene


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = make_scene(7), make_scene(7), make_scene(8)
    assert np.array_equal(a.image, b.image) and a.caption() == b.caption()
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(40))
def test_ground_truth_matches_the_pixels(seed):
    s = make_scene(seed)
    assert 1 <= len(s.objects) <= 3
    masks = np.stack([o.mask for o in s.objects])
    assert masks.sum(0).max() == 1  # objects never overlap
    names = [o.name for o in s.objects]
    assert len(set(names)) == len(names)  # each name picks out one object
    for o in s.objects:
        assert o.mask.sum() > 20 and o.shape in SHAPES and o.colour in COLOURS
        # The object's pixels (away from anti-aliased edges) have its colour; depth is its own.
        inner = o.mask & np.roll(o.mask, 1, 0) & np.roll(o.mask, -1, 0) & np.roll(o.mask, 1, 1) & np.roll(o.mask, -1, 1)
        mean = s.image[inner].mean(0)
        assert np.abs(mean - np.array(COLOURS[o.colour])).max() < 0.15
        assert np.allclose(s.depth[o.mask], o.depth)
    bg = ~masks.any(0)
    assert (s.depth[bg] > 2.9).all()  # the floor is farther than... at least its nearest row
    rng = np.random.default_rng(seed)
    cap = s.caption(rng)
    words = cap.split()
    wm = s.word_masks(cap)
    assert wm, cap
    for k, m in wm.items():
        assert words[k] in COLOURS or words[k] in SHAPES
    if len(s.objects) > 1:  # the relation is true of the two centres
        a = next(o for o in s.objects if cap.split()[1:3] == [o.colour, o.shape])
        b = next(o for o in s.objects if cap.split()[-2:] == [o.colour, o.shape])
        rel = " ".join(words[3:-3]) if words[4] == "of" else words[3]
        dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
        expect = ("left of" if dx < 0 else "right of") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")
        assert rel == expect, (cap, a.center, b.center)
    neg = s.negative_caption(rng)
    assert neg != cap
    for q, ans in s.questions():
        if q.startswith("what colour is the "):
            shape = q.split()[-1]
            assert [o.colour for o in s.objects if o.shape == shape] == [ans]
