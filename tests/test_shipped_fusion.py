"""The mini fusion model shipped in data/models/ loads offline, is documented, matches captions well above
chance and its maps point at the named objects well above the baselines — re-measured here."""

from __future__ import annotations

import json

import pytest

from explorer.fusion import load_fusion_model
from explorer.fusion.evaluate import matching_accuracy, pointing_game
from explorer.models import shipped_models

FOLDER = shipped_models().get("mini-fusion")


@pytest.fixture(scope="module")
def mini():
    assert FOLDER is not None, "data/models/mini-fusion is missing"
    return load_fusion_model("mini-fusion", device="cpu")


def test_model_card_matches_metrics(mini):
    card = (FOLDER / "README.md").read_text()
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    assert f"| accuracy | {metrics['matching']['accuracy']:.3f} |" in card
    for method in ("attention", "rollout", "relevance", "gradcam", "random map", "centre bias"):
        assert f"| {method} | {metrics['pointing_game'][method]:.3f} |" in card
    assert "python -m explorer.training.train_mini_fusion" in card
    assert (FOLDER / "model.safetensors").stat().st_size < 20e6
    assert mini.kind == "cross-attention" and mini.grid == (8, 8)


def test_matching_well_above_chance_on_held_out_scenes(mini):
    res = matching_accuracy(mini, scenes=150)
    assert res["accuracy"] > 0.7 > res["chance"]


def test_maps_point_at_the_named_objects(mini):
    card = json.loads((FOLDER / "metrics.json").read_text())["pointing_game"]
    res = pointing_game(mini, scenes=25)
    best = max(("attention", "rollout", "relevance", "gradcam"), key=lambda m: card[m])
    assert res[best] > res["random map"] + 0.4 and res[best] > res["centre bias"] + 0.2
    assert abs(res[best] - card[best]) < 0.15  # the card's number is what this code measures


def test_best_map_beats_the_baselines_on_60_held_out_scenes(mini):
    """The card's best map (gradient relevance for the shipped weights) on 60 held-out scenes (192 words).

    Measured: 0.839 on the card's 300 scenes; 0.880 here, centre bias 0.469, random 0.188.  With ~190 words one
    standard deviation of a hit rate near 0.84 is ~0.027, so 0.78 is ~2 sd under the card's number: it fails if the
    maps lose a tenth of their hits, not on sampling noise.  The 0.90 target is not reached by these weights (see
    the card's "What was tried"); the test guards what they do reach.
    """
    card = json.loads((FOLDER / "metrics.json").read_text())["pointing_game"]
    best = max(("attention", "rollout", "relevance", "gradcam"), key=lambda m: card[m])
    res = pointing_game(mini, scenes=60)
    assert res["words"] >= 150
    assert res[best] > 0.78
    assert res[best] > res["centre bias"] + 0.25 and res[best] > res["random map"] + 0.5
