"""The mini video MAE shipped in data/models/ loads offline, is documented, and beats the non-learned fills under
tube masking — re-measured here on held-out clips through the app's own code path."""

from __future__ import annotations

import json

import pytest

import explorer
from explorer.models import shipped_models
from explorer.training.train_mini_video_mae import evaluate

FOLDER = shipped_models().get("mini-video-mae")


@pytest.fixture(scope="module")
def mini():
    assert FOLDER is not None, "data/models/mini-video-mae is missing"
    return explorer.load_model("mini-video-mae", device="cpu")


def test_model_card_matches_metrics(mini):
    card = (FOLDER / "README.md").read_text()
    m = json.loads((FOLDER / "metrics.json").read_text())
    for k in ("model", "nearest visible frame", "OpenCV inpainting per frame"):
        assert f"| {k} | {m['tube'][k]:.2f} dB | {m['random'][k]:.2f} dB |" in card
    assert "python -m explorer.training.train_mini_video_mae" in card
    assert mini.family == "videomae-pretraining" and mini.num_frames == 8 and mini.grid == (8, 8)


def test_beats_the_fills_under_tube_masking(mini):
    res = evaluate(mini, clips=16, ratio=0.9, strategy="tube")
    assert res["model"] > res["OpenCV inpainting per frame"] and res["model"] > res["nearest visible frame"]
