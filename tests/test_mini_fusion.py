"""The mini fusion model's wiring: tokens, shapes, per-word cross-attention, the pointing-game scorer."""

from __future__ import annotations

import torch

from explorer.attention import AttentionCapture
from explorer.models.mini.fusion import VOCAB, FusionConfig, MiniFusion, tokenize
from explorer.training.train_mini_fusion import pointing_game


def test_tokenize_pads_cuts_and_marks_unknown_words():
    ids, pad, words = tokenize(["a red circle", "what colour is the emoji 🙂 square"], VOCAB, max_words=5)
    assert ids.shape == (2, 5) and words[1] == ["what", "colour", "is", "the", "emoji"]
    assert pad[0].tolist() == [False, False, False, True, True]
    assert ids[1, 4] == 1 and ids[0, 1] == VOCAB.index("red")


def test_patches_attend_to_words_and_the_capture_sees_it():
    torch.manual_seed(0)
    cfg = FusionConfig(dim=32, heads=2)
    model = MiniFusion(cfg).eval()
    ids, pad, _ = tokenize(["a red circle left of a blue square", "a small green square"], VOCAB, cfg.max_words)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x, ids, pad)
        with AttentionCapture(model.fusion, keep=True) as cap:
            got = model(x, ids, pad)
    assert torch.allclose(plain, got) and plain.shape == (2,)
    assert cap.count == 2 and cap.paths == {"mha-weights"}
    a = cap.calls[0].probs  # (B, H, patches, [none] + words)
    assert a.shape == (2, 2, 64, 9)
    assert torch.allclose(a.sum(-1), torch.ones(2, 2, 64), atol=1e-5)
    assert a[1, :, :, 5:].abs().max() == 0  # padded words get no attention
    assert a[1, :, :, :5].min() > 0


def test_pointing_game_reports_methods_and_baselines():
    torch.manual_seed(0)
    res = pointing_game(MiniFusion(FusionConfig(dim=32, heads=2)), FusionConfig(dim=32, heads=2), n=20)
    assert {"fusion layer 0", "fusion layer 1", "mean of fusion layers", "random", "centre bias"} <= set(res)
    assert res["words"] >= 40 and all(0 <= v <= 1 for k, v in res.items() if k != "words")
