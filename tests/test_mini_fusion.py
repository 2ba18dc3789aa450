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
    assert res["words"] >= 40
    for k, v in res.items():  # each is a share of the words: a whole number of hits
        assert k == "words" or abs(v * res["words"] - round(v * res["words"])) < 1e-9, (k, v)


def test_pointing_game_on_the_shipped_model_beats_its_baselines_and_random_matches_coverage():
    """The shipped model's map (mean of its fusion layers) points at the named object far more often than the
    random and centre-bias maps; the random map's hit rate equals the objects' mean share of patches (the chance
    that a uniformly random patch lands on the object), computed here from the scenes directly."""
    import numpy as np

    from explorer.data.scenes import make_scene
    from explorer.models.registry import load_fusion_model
    from explorer.training.train_mini_fusion import VALIDATION_SEED

    model = load_fusion_model("mini-fusion", device="cpu").model
    cfg = model.config
    n = 20
    res = pointing_game(model, cfg, n=n)
    assert res["mean of fusion layers"] >= 0.7, res
    assert res["mean of fusion layers"] >= res["centre bias"] + 0.3 and res["mean of fusion layers"] >= res["random"] + 0.4
    g, p = cfg.image_size // cfg.patch_size, cfg.patch_size
    # the captions name random objects of each scene: weight every object of the scenes equally
    cover = [o.mask.reshape(g, p, g, p).any((1, 3)).mean()
             for s in range(VALIDATION_SEED + 1, VALIDATION_SEED + 1 + n) for o in make_scene(s, size=cfg.image_size).objects]
    se = np.sqrt(np.mean(cover) * (1 - np.mean(cover)) / res["words"])
    assert abs(res["random"] - np.mean(cover)) < 3.5 * se, (res["random"], np.mean(cover), se)


def test_word_targets_name_each_objects_own_positions():
    import numpy as np

    from explorer.data.scenes import make_scene
    from explorer.training.train_mini_fusion import word_targets

    sc = next(s for s in (make_scene(i) for i in range(50)) if len(s.objects) >= 2)
    a, b = sc.objects[:2]
    text = f"a {a.name} left of a {b.name}"
    t = word_targets(sc, text, 8, 12)
    assert t.shape == (64, 13) and np.allclose(t.sum(1), 1)
    cover_a = a.mask.reshape(8, 8, 8, 8).mean((1, 3)).ravel() >= 0.3
    assert cover_a.any() and np.allclose(t[cover_a][:, [2, 3]], 0.5)  # words 1, 2 ("colour shape" of a) → columns 2, 3
    assert (t[~(cover_a | (b.mask.reshape(8, 8, 8, 8).mean((1, 3)).ravel() >= 0.3))][:, 0] == 1).all()
    wrong = [c for c in ("red", "green", "blue", "yellow", "purple", "orange") if c != a.colour][0]
    t_neg = word_targets(sc, f"a {wrong} {a.shape} left of a {b.name}", 8, 12)
    assert t_neg[:, 2:4].sum() == 0  # a pair that names no object points nowhere


def test_word_head_gives_position_logits_with_padding_masked():
    torch.manual_seed(0)
    cfg = FusionConfig(dim=32, heads=2, word_head=True)
    model = MiniFusion(cfg).eval()
    ids, pad, _ = tokenize(["a red circle left of a blue square", "a small green square"], VOCAB, cfg.max_words)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        match, named, pos = model.forward_all(x, ids, pad, words=True)
        assert torch.allclose(match, model(x, ids, pad))  # the head only reads; the match logit is the same
    assert pos.shape == (2, 64, 1 + 8) and named.shape == (2, 64)
    assert torch.isinf(pos[1, :, 5:]).all() and torch.isfinite(pos[1, :, :5]).all()
    assert "word_pos.weight" not in MiniFusion(FusionConfig(dim=32, heads=2)).state_dict()  # off by default: old weights load
