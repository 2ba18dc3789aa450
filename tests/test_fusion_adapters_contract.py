"""What each image+text adapter answers, read against the transformers modules (or our mini model) it wraps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.models import registry as R

from _tiny import random_image, save_tiny_clip_pair


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return R.load_fusion_model(save_tiny_clip_pair(tmp_path_factory.mktemp("clip-pair"), seed=4), device="cpu")


def test_clip_score_is_transformers_logits_per_image(clip):
    text = clip.tokenize("a red circle")
    x = torch.stack([clip.normalise(random_image(32, seed=s))[0] for s in (1, 2)])
    with torch.no_grad():
        ref = clip.model(pixel_values=x, input_ids=text.ids, attention_mask=text.attention_mask).logits_per_image[:, 0]
        got = clip.score(x, text)
    assert got.shape == (2,) and torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got[0], got[1])
