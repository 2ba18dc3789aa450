"""The mini UniFormer shipped in data/models/ loads offline, is documented, and beats the majority-class baseline on
held-out shape-relation scenes (textured backgrounds and the held-out real photos), recomputed here."""

from __future__ import annotations

import json

import numpy as np
import pytest

import explorer
from explorer.data.shape_relations import LABELS, MIRROR, label_of, relation_dataset, relation_scene
from explorer.data.shipped import shipped_models
from explorer.models.uniformer import UniFormerAdapter
from explorer.training.train_mini_uniformer import accuracy, held_out

FOLDER = shipped_models().get("mini-uniformer")


@pytest.fixture(scope="module")
def uf():
    assert FOLDER is not None, "data/models/mini-uniformer is missing"
    return explorer.load_uniformer_model("mini-uniformer", device="cpu")


def test_it_loads_offline_as_a_uniformer_with_its_labels(uf):
    assert isinstance(uf, UniFormerAdapter) and uf.format_tag == "uniformer" and not uf.is_video
    assert uf.labels == LABELS and uf.stage_kinds == ("local", "local", "global", "global")
    assert uf.token_grids() == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert "mini-uniformer" in explorer.models.registry.list_uniformer_models()
    assert (FOLDER / "model.safetensors").stat().st_size < 8e6
    card = (FOLDER / "README.md").read_text()
    assert "python -m explorer.training.train_mini_uniformer" in card and "majority class" in card


@pytest.mark.parametrize("photo", [False, True], ids=["textures", "heldout-photos"])
def test_it_beats_the_majority_class_on_held_out_scenes(uf, photo):
    x, y = held_out(200, photo=photo)
    train_labels = relation_dataset(range(600))[1]
    majority = np.bincount(train_labels, minlength=len(LABELS)).argmax()
    baseline = float((y == majority).mean())
    acc = accuracy(uf, x, y)
    assert acc > baseline + 0.3, (acc, baseline)
    # and the card's numbers are what the model does (within sampling error of 200 vs 1000 images)
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    assert abs(acc - metrics[f"heldout_{'photo' if photo else 'texture'}_accuracy"]) < 0.1


def test_the_labels_follow_the_scene_geometry():
    s = relation_scene(10_000_003)
    a, b = sorted(s.objects, key=lambda o: ("circle", "square", "triangle").index(o.shape))
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    rel = ("left of" if dx < 0 else "right of") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")
    assert s.words == f"{a.shape} {rel} {b.shape}" and label_of(s.objects) == s.label
    assert [LABELS[MIRROR[i]] for i in range(4)] == ["circle right of square", "circle left of square",
                                                      "circle above square", "circle below square"]
    again = relation_scene(10_000_003)
    np.testing.assert_array_equal(again.image, s.image)  # seeded
