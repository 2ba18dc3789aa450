"""The mini MAE shipped in data/models/ loads offline, is documented, and beats non-learned fills."""

import json

import numpy as np
import pytest

import explorer
from explorer.reconstruction.baselines import mean_fill, telea_fill
from explorer.metrics import masked_psnr
from explorer.models import shipped_models
from explorer.training.train_mini_mae import heldout_crops

FOLDER = shipped_models().get("mini-mae")


@pytest.fixture(scope="module")
def mini():
    assert FOLDER is not None, "data/models/mini-mae is missing"
    return explorer.load_model("mini-mae")


def test_model_card_matches_metrics(mini):
    card = (FOLDER / "README.md").read_text()
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    for key in ("mae", "telea", "mean_fill"):
        assert f"{metrics['psnr_db'][key]:.2f} dB" in card
    assert "python -m explorer.training.train_mini_mae" in card
    assert (FOLDER / "model.safetensors").stat().st_size < 20e6
    assert mini.image_size == 112 and mini.grid == (14, 14) and not mini.norm_pix_loss


def test_heldout_photos_never_trained_on():
    m = json.loads((FOLDER / "metrics.json").read_text())
    assert not set(m["heldout_photos"]) & set(m["train_photos"])


def test_beats_baselines_on_heldout_photos(mini):
    """Re-measured here through the app's own code path (reconstruct), not the training script's."""
    crops = heldout_crops(112, per_photo=2)
    mae, telea, mean = [], [], []
    for i, (_name, img) in enumerate(crops):
        rec = explorer.reconstruct(mini, img, ratio=0.75, seed=100 + i)
        mae.append(rec.psnr_masked)
        telea.append(masked_psnr(telea_fill(img, rec.mask, 8), img, rec.mask, 8))
        mean.append(masked_psnr(mean_fill(img, rec.mask, 8), img, rec.mask, 8))
    assert np.mean(mae) > np.mean(telea) > np.mean(mean)
