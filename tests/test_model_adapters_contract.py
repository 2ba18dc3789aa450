"""What each image adapter answers, read against transformers' own modules on tiny random-weight checkpoints.

Every value is recomputed here from the transformers model the adapter wraps (its forward, its config, its
sub-modules), or from numpy / OpenCV, never from the adapter itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from explorer.models import load_model
from explorer.models.layout import AttentionError

from _tiny import random_image, save_tiny_vit

MEAN = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)  # ViTImageProcessor's default (no preprocessor file saved)
STD = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)


def _pixels(img: np.ndarray, mean, std) -> torch.Tensor:
    return (torch.from_numpy(img).permute(2, 0, 1)[None] - mean) / std


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    save_tiny_vit(folder, seed=3, num_labels=4, id2label={0: "zero", 1: "one", 2: "two", 3: "three"},
                  label2id={"zero": 0, "one": 1, "two": 2, "three": 3})
    return load_model(folder)


def test_vit_logits_labels_blocks_and_heads_are_the_models(vit):
    m = vit.model
    assert vit.labels == {0: "zero", 1: "one", 2: "two", 3: "three"}
    assert vit.classifier and vit.family == "vit"
    blocks = m.vit.layers if hasattr(m.vit, "layers") else m.vit.encoder.layer
    assert vit.blocks is blocks and vit.num_layers == 3 and vit.num_heads == 4
    assert vit.head_modules == [m.classifier]
    img = random_image(32, seed=1)
    x = vit.normalise(img)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (vit.model.config.to_dict().get("image_mean", [0.5] * 3),
                                                              vit.model.config.to_dict().get("image_std", [0.5] * 3)))
    assert torch.allclose(x, _pixels(img, vit._mean, vit._std), atol=1e-6)
    with torch.no_grad():
        ref = m(pixel_values=x).logits
        got = vit.logits(x)
    assert torch.equal(got, ref)
