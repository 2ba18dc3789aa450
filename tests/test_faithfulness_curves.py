"""Deletion / insertion curves, fill comparisons and the randomisation cascade worked out by hand.

The model's score is replaced by a known function of the kept patches, ``score(keep) = c + keep · w`` (``c`` the
normalised input's mean plus a per-fill offset, ``w`` one weight per patch), so every curve, area, random order,
normalisation and cache hit has an answer computed here independently, with Python's own sort and numpy's trapezoid.
The randomisation check runs on the tiny ViT, whose blocks' weights say exactly which were re-drawn.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from _tiny import random_image

from explorer.attention import AttentionError
from explorer.attention import faithfulness as F
from explorer.attention.faithfulness import (FILL_NAMES, Curves, SanityCheck, Stopped, _auc, cascade, compare_fills,
                                             deletion_insertion, random_band, randomisation_check, randomise_top_layers,
                                             redraw, verdict)
from explorer.reconstruction import as_input

IMG = random_image(40, seed=11)
L = 16  # the tiny ViT: 32 px, 8 px patches, a 4 x 4 grid


@pytest.fixture(autouse=True)
def _own_reference_cache(monkeypatch):
    """Every test starts with an empty cache of random-order curves (the fake scorers share the ViT's weights hash)."""
    monkeypatch.setattr(F, "_REFERENCE", {})


class Linear:
    """A scorer whose value is ``c + keep · w``; it records every batch of masks, target and fill it is asked for."""

    def __init__(self, weights: dict, offsets: dict | None = None):
        self.weights = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.offsets = offsets or {}
        self.batches: list[np.ndarray] = []
        self.asked: list[tuple] = []
        self.c: dict = {}
        self.constant: float | None = None  # when set, c is exactly this (no input mean)

    def __call__(self, x, target=None, *, fill="mean"):
        self.asked.append((target, fill))
        c = float(x.float().mean()) + self.offsets.get(fill, 0.0) if self.constant is None else self.constant
        self.c[fill] = c
        w = self.weights[fill]

        def f(keep):
            self.batches.append(np.array(keep, copy=True))
            return c + np.asarray(keep, np.float64) @ w

        return f, f"a known linear score ({fill})"


def linear_model(vit, weights, offsets=None, fills=("mean", "blur")):
    """A copy of the tiny ViT adapter whose faithfulness score is :class:`Linear`."""
    a = copy.copy(vit)
    a.fills = tuple(fills)
    a.faithfulness_scorer = Linear({fl: weights[fl] if isinstance(weights, dict) else weights for fl in fills}, offsets)
    return a


def input_mean(vit, image=IMG, fit="center-crop"):
    px, _ = as_input(image, fit, vit.image_size)
    return float(vit.normalise_input(px).float().mean())


def expected(w, c, patch_map, steps, seed, orders):
    """``(fractions, deletion, insertion, random deletions (N, K), random insertions (N, K))`` by hand."""
    w = np.asarray(w, np.float64)
    n = len(w)
    fractions = np.array([k / steps for k in range(steps + 1)])
    counts = [int(round(f * n)) for f in fractions]
    full = c + w.sum()
    norm = full if abs(full) > 1e-9 else 1.0
    pm = np.ravel(patch_map)
    mine = sorted(range(n), key=lambda i: (np.inf if np.isnan(pm[i]) else -pm[i], i))

    def curves(order):
        removed = np.array([sum(w[order[j]] for j in range(k)) for k in counts])
        return (full - removed) / norm, (c + removed) / norm

    rnd = [curves(list(np.random.default_rng(seed + i).permutation(n))) for i in range(orders)]
    d, i = curves(mine)
    return fractions, d, i, np.array([r[0] for r in rnd]), np.array([r[1] for r in rnd])


W = np.array([5.0, 0.5, 3.0, 0.0, 1.0, 7.0, 0.25, 2.0, 0.0, 4.0, 6.0, 0.75, 1.5, 0.0, 2.5, 3.5])


def test_curves_areas_and_random_orders_equal_the_hand_worked_ones(vit):
    m = linear_model(vit, W, {"blur": 1.0})
    pm = W.reshape(4, 4) + 0.1  # the perfect map: the patches that carry the score first
    c = deletion_insertion(m, IMG, pm, steps=5, seed=3, random_orders=4, fill="blur", target=2)
    fr, d, i, rd, ri = expected(W, input_mean(vit) + 1.0, pm, 5, 3, 4)
    np.testing.assert_allclose(c.fractions, fr)
    np.testing.assert_allclose(c.deletion, d, atol=1e-12)
    np.testing.assert_allclose(c.insertion, i, atol=1e-12)
    assert c.deletion_auc == pytest.approx(np.trapezoid(d, fr), abs=1e-12)
    assert c.insertion_auc == pytest.approx(np.trapezoid(i, fr), abs=1e-12)
    np.testing.assert_allclose(c.random_deletion_aucs, np.trapezoid(rd, fr, axis=1), atol=1e-12)
    np.testing.assert_allclose(c.random_insertion_aucs, np.trapezoid(ri, fr, axis=1), atol=1e-12)
    np.testing.assert_allclose(c.random_deletion, rd.mean(0), atol=1e-12)
    np.testing.assert_allclose(c.random_insertion, ri.mean(0), atol=1e-12)
    assert c.random_deletion_aucs.dtype == np.float64 and c.random_insertion_aucs.dtype == np.float64
    assert (c.score, c.fill, c.seed, c.band) == ("a known linear score (blur)", "blur", 3, F.BAND)
    assert type(c.seed) is int and type(c.band) is float
    assert type(c.deletion_auc) is float and type(c.insertion_auc) is float
    # The scorer was asked for the user's target and fill, and got boolean masks, as its contract says.
    assert m.faithfulness_scorer.asked == [(2, "blur")]
    assert all(b.dtype == bool for b in m.faithfulness_scorer.batches)
    # The perfect map deletes the score fastest and inserts it fastest.
    assert c.deletion_verdict == "better than random" and c.insertion_verdict == "better than random"


def test_masks_remove_and_add_exactly_the_maps_first_patches(vit):
    m = linear_model(vit, W)
    pm = np.arange(L, 0, -1.0)  # patch 0 first, then 1, …
    deletion_insertion(m, IMG, pm.reshape(4, 4), steps=4, seed=0, random_orders=2)
    keep = np.concatenate(m.faithfulness_scorer.batches)
    K = 5
    assert keep.shape == (1 + 2 * K * 3, L)  # the full image, then per order its deletion and insertion masks
    assert keep[0].all()
    mine = keep[-2 * K:]
    for k, count in enumerate([0, 4, 8, 12, 16]):
        np.testing.assert_array_equal(mine[k], np.arange(L) >= count)  # deletion: the first `count` removed
        np.testing.assert_array_equal(mine[K + k], np.arange(L) < count)  # insertion: only they are kept


def test_ties_go_by_patch_index_and_nan_patches_come_last(vit):
    m = linear_model(vit, W)
    pm = np.zeros(L)
    pm[[3, 9]] = np.nan
    pm[[12, 5]] = 2.0  # a tie: 5 before 12
    deletion_insertion(m, IMG, pm.reshape(4, 4), steps=16, seed=0, random_orders=2)
    ins = np.concatenate(m.faithfulness_scorer.batches)[-17:]  # insertion masks, one more patch each
    added = [int(np.flatnonzero(ins[k + 1] & ~ins[k])[0]) for k in range(16)]
    assert added == [5, 12, 0, 1, 2, 4, 6, 7, 8, 10, 11, 13, 14, 15, 3, 9]
    fr, d, i, _, _ = expected(W, input_mean(vit), pm, 16, 0, 2)
    c = deletion_insertion(m, IMG, pm.reshape(4, 4), steps=16, seed=0, random_orders=2)
    np.testing.assert_allclose(c.insertion, i, atol=1e-12)


def test_the_score_is_normalised_by_the_full_images_unless_that_is_zero(vit):
    half = linear_model(vit, np.full(L, 0.5 / L))
    c0 = input_mean(vit)
    half.faithfulness_scorer.offsets = {"mean": -c0}  # full image scores 0.5
    c = deletion_insertion(half, IMG, np.arange(L), steps=4, seed=0, random_orders=2)
    np.testing.assert_allclose(c.deletion, [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-12)
    # (the fake scorers share the ViT's weights, so its cached reference is emptied between them)
    F._REFERENCE.clear()
    zero = linear_model(vit, np.zeros(L), {"mean": -c0})  # full image scores 0: not divided
    c = deletion_insertion(zero, IMG, np.arange(L), steps=2, seed=0, random_orders=2)
    np.testing.assert_allclose(c.deletion, 0.0, atol=1e-12)
    F._REFERENCE.clear()
    tiny = linear_model(vit, np.zeros(L))
    tiny.faithfulness_scorer.constant = 1e-9  # exactly at the threshold: still not divided
    c = deletion_insertion(tiny, IMG, np.arange(L), steps=2, seed=0, random_orders=2)
    np.testing.assert_allclose(c.deletion, 1e-9, rtol=1e-6)
    F._REFERENCE.clear()
    small = linear_model(vit, np.zeros(L), {"mean": -c0 + 1e-8})  # above it: divided
    c = deletion_insertion(small, IMG, np.arange(L), steps=2, seed=0, random_orders=2)
    np.testing.assert_allclose(c.deletion, 1.0, rtol=1e-6)


def test_default_orders_and_the_cost_in_forwards(vit):
    m = linear_model(vit, W)
    c = deletion_insertion(m, IMG, W.reshape(4, 4))
    assert c.random_deletion_aucs.shape == (20,) and len(c.fractions) == 11 and c.fill == "mean" and c.seed == 0
    # 1 full image + 2 (steps + 1) (random_orders + 1) masks, in batches of at most BATCH.
    sizes = [len(b) for b in m.faithfulness_scorer.batches]
    assert sum(sizes) == 1 + 2 * 11 * 21 and max(sizes) == F.BATCH and sizes[0] == 1
    assert sizes[1:] == [F.BATCH] * (2 * 11 * 20 // F.BATCH) + [2 * 11 * 20 % F.BATCH] + [2 * 11]


def test_two_random_orders_are_enough_and_one_is_refused_in_words(vit):
    m = linear_model(vit, W)
    assert deletion_insertion(m, IMG, W.reshape(4, 4), random_orders=2).random_deletion_aucs.shape == (2,)
    with pytest.raises(AttentionError) as e:
        deletion_insertion(m, IMG, W.reshape(4, 4), random_orders=1)
    assert str(e.value) == "At least 2 random orders are needed for a reference band (20 or more is better)."


def test_a_map_of_the_wrong_size_is_refused_with_both_sizes(vit):
    with pytest.raises(AttentionError) as e:
        deletion_insertion(linear_model(vit, W), IMG, np.zeros((3, 5)))
    assert str(e.value) == "The map has 15 patches, the model 16 (4x4)."


@pytest.mark.parametrize("fn, name", [
    (lambda mod: deletion_insertion(mod, IMG, np.zeros((4, 4))), "deletion_insertion"),
    (lambda mod: compare_fills(mod, IMG, {"a": np.zeros((4, 4))}), "compare_fills"),
    (lambda mod: randomisation_check(mod, IMG, lambda a, im: np.zeros((4, 4))), "randomisation_check"),
])
def test_a_bare_torch_module_is_refused_naming_the_function(fn, name):
    with pytest.raises(AttentionError) as e:
        fn(torch.nn.Linear(2, 2))
    assert str(e.value).startswith(f"{name} needs a model from explorer.load_model (or its name); for your own Linear")


def test_the_random_reference_is_cached_per_input_seed_and_fill_and_the_oldest_dropped(vit, monkeypatch):
    m = linear_model(vit, {"mean": W, "blur": W[::-1]})
    rec = m.faithfulness_scorer
    first = deletion_insertion(m, IMG, W.reshape(4, 4), steps=4, seed=0, random_orders=3)
    n_first = sum(map(len, rec.batches))
    again = deletion_insertion(m, IMG, -W.reshape(4, 4), steps=4, seed=0, random_orders=3)
    assert sum(map(len, rec.batches)) - n_first == 2 * 5  # only the new map's masks were scored
    np.testing.assert_array_equal(again.random_deletion_aucs, first.random_deletion_aucs)
    # Another seed, input or fill is another reference, equal to a fresh computation.
    other_img = random_image(40, seed=12)
    for kw, img, w, c in ((dict(seed=1), IMG, W, input_mean(vit)),
                          (dict(seed=0), other_img, W, input_mean(vit, other_img)),
                          (dict(seed=0, fill="blur"), IMG, W[::-1], input_mean(vit))):
        got = deletion_insertion(m, img, W.reshape(4, 4), steps=4, random_orders=3, **kw)
        fr, _, _, rd, _ = expected(w, c, W, 4, kw["seed"], 3)
        np.testing.assert_allclose(got.random_deletion_aucs, np.trapezoid(rd, fr, axis=1), atol=1e-12)
    assert len(F._REFERENCE) == 4
    # A small cache keeps the newest entries: the first one is computed again, the last is still there.
    monkeypatch.setattr(F, "_REFERENCE_SIZE", 2)
    deletion_insertion(m, IMG, W.reshape(4, 4), steps=4, seed=5, random_orders=3)
    assert len(F._REFERENCE) == 2
    before = sum(map(len, rec.batches))
    deletion_insertion(m, IMG, W.reshape(4, 4), steps=4, seed=5, random_orders=3)
    assert sum(map(len, rec.batches)) - before == 2 * 5
    deletion_insertion(m, IMG, W.reshape(4, 4), steps=4, seed=0, random_orders=3)
    assert sum(map(len, rec.batches)) - before == 2 * 5 + 1 + 2 * 5 * 4


def test_should_stop_is_asked_between_batches_and_stops_with_superseded(vit):
    m = linear_model(vit, W)
    asked = []

    def stop():
        asked.append(len(m.faithfulness_scorer.batches))
        return len(asked) == 3

    with pytest.raises(Stopped) as e:
        deletion_insertion(m, IMG, W.reshape(4, 4), steps=10, random_orders=4, should_stop=stop)
    assert str(e.value) == "superseded"
    assert asked == [0, 1, 2] and len(m.faithfulness_scorer.batches) == 2


def test_the_lock_is_held_for_every_batch_and_the_scorers_set_up(vit):
    m = linear_model(vit, W)
    lock = threading.RLock()
    held = []
    inner = m.faithfulness_scorer

    class Watching:
        def __init__(self):
            self.depth = 0

        def __enter__(self):
            lock.acquire()
            self.depth += 1

        def __exit__(self, *exc):
            self.depth -= 1
            lock.release()

    watch = Watching()

    def scorer(x, target=None, *, fill="mean"):
        held.append(watch.depth)
        f, what = inner(x, target, fill=fill)
        return (lambda keep: (held.append(watch.depth), f(keep))[1]), what

    m.faithfulness_scorer = scorer
    deletion_insertion(m, IMG, W.reshape(4, 4), steps=10, random_orders=4, lock=watch)
    # set-up, the full image, 2 · 11 · 4 = 88 reference masks in 3 batches, the map's 22 in 1
    assert held == [1] * (1 + 1 + 3 + 1) and watch.depth == 0


def test_verdict_counts_both_ends_of_the_band_as_inside_and_uses_the_band_given():
    rnd = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    lo, hi = random_band(rnd)
    q = (1 - F.BAND) / 2
    assert (lo, hi) == (float(np.quantile(rnd.astype(np.float64), q)), float(np.quantile(rnd.astype(np.float64), 1 - q)))
    for lower in (True, False):
        assert verdict(lo, rnd, lower_is_better=lower) == "not distinguishable from random"
        assert verdict(hi, rnd, lower_is_better=lower) == "not distinguishable from random"
    # A 50% band is [0.25, 0.75]: 0.2 is outside it, though inside the 95% one.
    assert verdict(0.2, rnd, lower_is_better=True, band=0.5) == "better than random"
    assert verdict(0.2, rnd, lower_is_better=False, band=0.5) == "worse than random"
    assert verdict(0.2, rnd, lower_is_better=True) == "not distinguishable from random"


def test_auc_is_a_float_for_one_curve_and_an_array_for_a_stack():
    x = np.array([0.0, 0.5, 1.0])
    one = _auc(np.array([1.0, 0.5, 0.0]), x)
    assert type(one) is float and one == 0.5
    stack = _auc(np.array([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]), x)
    np.testing.assert_allclose(stack, [0.5, 1.0, 0.25])


def test_summary_reads_every_number_and_verdict():
    c = Curves(np.linspace(0, 1, 3), np.ones(3), np.ones(3), 0.1234, 0.9, np.array([0.3, 0.5, 0.4, 0.6]),
               np.array([0.5, 0.5, 0.5, 0.5]), np.ones(3), np.ones(3), "s", fill="blur", band=0.5)
    lo, hi = random_band(np.array([0.3, 0.5, 0.4, 0.6]), 0.5)
    assert c.summary() == (
        f"deletion AUC 0.123 (random orders: mean 0.450, 50% of 4 in {lo:.3f}–{hi:.3f}): better than random; "
        "insertion AUC 0.900 (random orders: mean 0.500, 50% of 4 in 0.500–0.500): better than random. "
        "Removed patches: filled with a blurred copy of the input.")
    odd = Curves(np.linspace(0, 1, 3), np.ones(3), np.ones(3), 0.5, 0.5, np.array([0.5, 0.5]), np.array([0.5, 0.5]),
                 np.ones(3), np.ones(3), "s", fill="noise")
    assert odd.summary().endswith("95% of 2 in 0.500–0.500): not distinguishable from random. Removed patches: noise.")


def test_compare_fills_gives_each_fills_curves_ranking_and_summary(vit):
    # Under "mean" the score sits in the first patches, under "blur" in the last: the two maps swap places.
    w_mean = np.r_[np.ones(8), np.zeros(8)]
    m = linear_model(vit, {"mean": w_mean, "blur": w_mean[::-1]})
    maps = {"first": np.arange(L, 0, -1.0).reshape(4, 4), "last": np.arange(L, dtype=float).reshape(4, 4),
            "also first": np.arange(L, 0, -1.0).reshape(4, 4)}
    cmp = compare_fills(m, IMG, maps, steps=4, seed=2, random_orders=3, target=1, fit="pad")
    assert cmp.fills == ("mean", "blur") and cmp.methods == ("first", "last", "also first")
    c = input_mean(vit, fit="pad")
    for i, (fl, w) in enumerate((("mean", w_mean), ("blur", w_mean[::-1]))):
        for j, name in enumerate(maps):
            got = cmp.curves[fl][name]
            fr, d, ins, rd, _ = expected(w, c, maps[name], 4, 2, 3)
            np.testing.assert_allclose(got.deletion, d, atol=1e-12)
            assert got.random_deletion_aucs.shape == (3,) and got.fill == fl and got.seed == 2
            assert cmp.deletion_auc[i, j] == got.deletion_auc
            assert cmp.insertion_auc[i, j] == pytest.approx(np.trapezoid(ins, fr), abs=1e-12)
    assert set(m.faithfulness_scorer.asked) == {(1, "mean"), (1, "blur")}
    assert cmp.ranking == {"mean": ["first", "also first", "last"], "blur": ["last", "first", "also first"]}
    assert cmp.ranking_changes
    assert cmp.summary() == ("The ranking of the methods changes with the fill (deletion AUC, best first):\n"
                             f"{FILL_NAMES['mean']}: first < also first < last\n"
                             f"{FILL_NAMES['blur']}: last < first < also first")
    same = compare_fills(m, IMG, {"first": maps["first"]}, fills=["mean"], steps=2, random_orders=2)
    assert not same.ranking_changes and same.fills == ("mean",)
    assert same.summary() == f"Every fill ranks the methods the same (deletion AUC, best first):\n{FILL_NAMES['mean']}: first"
    assert same.curves["mean"]["first"].random_deletion_aucs.shape == (2,)


def test_compare_fills_defaults_to_every_fill_and_twenty_orders(vit):
    m = linear_model(vit, W, fills=("mean", "blur", "smudge"))
    cmp = compare_fills(m, IMG, {"a": W.reshape(4, 4)}, steps=2)
    assert cmp.fills == ("mean", "blur", "smudge") and cmp.deletion_auc.shape == (3, 1)
    assert cmp.curves["smudge"]["a"].random_deletion_aucs.shape == (20,)
    assert cmp.summary().splitlines()[-1] == "smudge: a"


# ----------------------------------------------------------------------------- the randomisation cascade


def _block_norms(adapter, image=None):
    """A "map" that is each block's and the head's weight norms: it says which ones were re-drawn."""
    return np.array([float(torch.cat([p.detach().flatten() for p in m.parameters()]).norm())
                     for m in [*adapter.blocks, *adapter.head_modules]])


def test_randomise_top_layers_redraws_only_the_top_blocks_and_the_head_in_a_copy(vit):
    before = _block_norms(vit)
    sha = vit.weights_sha256
    new, names = randomise_top_layers(vit, 1, seed=4)
    assert names == ("layer 2", "Linear")
    np.testing.assert_array_equal(_block_norms(vit), before)  # the original is untouched
    assert vit.weights_sha256 == sha and new.model is not vit.model
    after = _block_norms(new)
    np.testing.assert_array_equal(after[:2], before[:2])
    assert (after[2:] != before[2:]).all()
    assert new.weights_sha256 != sha and len(new.weights_sha256) == 64
    assert randomise_top_layers(vit, 0)[1] == ("layer 2", "Linear")  # at least one block
    assert randomise_top_layers(vit, 2)[1] == ("layer 1", "layer 2", "Linear")
    assert randomise_top_layers(vit, 9)[1] == ("layer 0", "layer 1", "layer 2", "Linear")
    # Seeded: the same seed re-draws the same weights whatever the global generator did in between.
    torch.manual_seed(123)
    a = _block_norms(randomise_top_layers(vit, 2, seed=7)[0])
    torch.manual_seed(321)
    np.testing.assert_array_equal(_block_norms(randomise_top_layers(vit, 2, seed=7)[0]), a)
    assert (_block_norms(randomise_top_layers(vit, 2, seed=8)[0])[1:] != a[1:]).all()


def test_redraw_keeps_each_tensors_mean_and_spread_and_leaves_a_single_number_alone():
    torch.manual_seed(0)
    big = torch.nn.Parameter(torch.randn(200, 200) * 0.3 + 2.0)
    pair = torch.nn.Parameter(torch.tensor([1.0, 3.0]))
    one = torch.nn.Parameter(torch.tensor([5.0]))
    mod = torch.nn.Module()
    mod.big, mod.pair, mod.one = big, pair, one
    old = big.detach().clone()
    redraw([mod], torch.Generator().manual_seed(1))
    new = big.detach()
    assert float(new.mean()) == pytest.approx(2.0, abs=0.01) and float(new.std()) == pytest.approx(0.3, abs=0.01)
    assert float(torch.corrcoef(torch.stack([new.flatten(), old.flatten()]))[0, 1]) == pytest.approx(0, abs=0.02)
    assert one.item() == 5.0
    assert pair[0].item() != pair[1].item() and torch.isfinite(pair).all()


def test_randomisation_check_maps_each_level_with_its_own_number_of_blocks(vit):
    seen = []

    def method(adapter, image):
        seen.append(image is IMG)
        return _block_norms(adapter)

    s = randomisation_check(vit, IMG, method, levels=(2, 1), seed=5, threshold=0.99)
    assert s.levels == (1, 2) and all(seen)
    np.testing.assert_array_equal(s.original, _block_norms(vit).astype(np.float32))
    for k, n in enumerate(s.levels):
        np.testing.assert_array_equal(s.randomised_maps[k], _block_norms(randomise_top_layers(vit, n, 5)[0]).astype(np.float32))
        changed = s.randomised_maps[k] != s.original
        np.testing.assert_array_equal(changed, np.arange(4) >= 3 - n)
    assert s.threshold == 0.99
    default = randomisation_check(vit, IMG, method)
    assert default.levels == (1, 3) and default.threshold == 0.5


def test_cascade_levels_numbers_and_pass_by_hand():
    base = np.arange(36.0).reshape(6, 6)
    calls = []

    def randomised(n):
        calls.append(n)
        return {1: base, 2: base.T, 6: -base}[n]

    s = cascade(6, lambda: base.astype(int), randomised, levels=(0, 2, 6, 2, 9), threshold=0.6)
    assert s.levels == (1, 2, 6) and calls == [1, 2, 6]
    from explorer.attention.faithfulness import _ssim, spearman

    np.testing.assert_allclose(s.spearman, [1.0, spearman(base, base.T), -1.0])
    np.testing.assert_allclose(s.ssim, [_ssim(base, base), _ssim(base, base.T), _ssim(base, -base)])
    assert s.original.dtype == np.float32 and s.randomised_maps.dtype == np.float32
    np.testing.assert_array_equal(s.randomised_maps, np.stack([base, base.T, -base]))
    assert s.passed == (spearman(base, base.T) < 0.6) and s.threshold == 0.6
    assert cascade(6, lambda: base, lambda n: base, levels=None).levels == (1, 3, 6)
    assert cascade(7, lambda: base, lambda n: base).levels == (1, 3, 7)
    # The default threshold is 0.5, and a level exactly at it counts as unchanged.
    at = SanityCheck((1,), np.array([0.5]), np.array([0.0]), False, base, base[None], 0.5)
    assert not at.changed.any()
    rho_06 = cascade(6, lambda: base, lambda n: base, levels=(1,))
    assert rho_06.threshold == 0.5


def test_cascade_passes_only_when_the_map_stays_changed_through_the_deepest_level():
    a = np.arange(16.0).reshape(4, 4)
    maps = {1: -a, 2: a, 4: -a}  # changed, back to the original, changed
    s = cascade(4, lambda: a, lambda n: maps[n], levels=(1, 2, 4))
    assert not s.passed and s.outcome == "mixed"
    assert s.verdict() == ("mixed: the map changes when the top 1, 4 block(s) are randomised but stays close to the "
                           "original when the top 2 are (Spearman to the original -1.00 (top 1 block), 1.00 (top 2 "
                           "blocks), -1.00 (top 4 blocks); below 0.5 counts as changed): it does not track the weights "
                           "consistently")
    late = cascade(4, lambda: a, lambda n: {1: a, 2: -a, 4: -a}[n], levels=(1, 2, 4))
    assert late.passed and late.outcome == "depends"
    assert late.verdict() == ("the map changes once the top 2 blocks are randomised (Spearman to the original 1.00 "
                              "(top 1 block), -1.00 (top 2 blocks), -1.00 (top 4 blocks); below 0.5 counts as changed): "
                              "it depends on the model's weights")
    every = cascade(4, lambda: a, lambda n: -a, levels=(1, 4))
    assert every.verdict().startswith("the map changes at every level (Spearman to the original -1.00 (top 1 block), "
                                      "-1.00 (top 4 blocks); below 0.5")
    blind = cascade(4, lambda: a, lambda n: a, levels=(2, 4))
    assert not blind.passed and blind.outcome == "blind"
    assert blind.verdict() == ("the map barely changes when the weights are randomised (Spearman to the original 1.00 "
                               "(top 2 blocks), 1.00 (top 4 blocks); below 0.5 counts as changed): it may show the "
                               "image, not the model")


def test_band_reaches_the_curves_and_a_boolean_map_ranks_like_its_numbers(vit):
    m = linear_model(vit, W)
    c = deletion_insertion(m, IMG, W.reshape(4, 4), steps=4, random_orders=5, band=0.5)
    assert c.band == 0.5 and c.random_deletion_band == random_band(c.random_deletion_aucs, 0.5)
    mask = (W > 2.0).reshape(4, 4)  # "these patches matter": a boolean map
    b = deletion_insertion(m, IMG, mask, steps=4, random_orders=5)
    f = deletion_insertion(m, IMG, mask.astype(float), steps=4, random_orders=5)
    np.testing.assert_array_equal(b.deletion, f.deletion)
    np.testing.assert_array_equal(b.insertion, f.insertion)


def test_compare_fills_follows_fit_and_its_defaults(vit):
    wide = random_image(40, seed=4)[:24]  # not square: "pad" and "center-crop" see different pixels
    m = linear_model(vit, W)
    got = compare_fills(m, wide, {"a": W.reshape(4, 4)}, fills=["mean"], random_orders=2, fit="pad")
    assert input_mean(vit, wide, "pad") != pytest.approx(input_mean(vit, wide, "center-crop"))
    fr, d, _, _, _ = expected(W, input_mean(vit, wide, "pad"), W, 10, 0, 2)  # default: 10 steps, seed 0
    np.testing.assert_allclose(got.curves["mean"]["a"].deletion, d, atol=1e-12)
    np.testing.assert_allclose(got.curves["mean"]["a"].fractions, fr)
    assert got.curves["mean"]["a"].seed == 0


def test_compare_fills_keeps_the_users_order_among_equal_methods(vit):
    # 40 methods with two distinct areas: a sort that is not stable scrambles the tied ones.
    maps = {f"m{k:02d}": (W if k % 3 == 0 else -W).reshape(4, 4) for k in range(40)}
    m = linear_model(vit, W)
    cmp = compare_fills(m, IMG, maps, fills=["mean"], steps=2, random_orders=2)
    names = list(maps)
    best = [n for k, n in enumerate(names) if k % 3 == 0]  # the heaviest patches first: the better deletion map
    assert cmp.ranking["mean"] == best + [n for n in names if n not in best]


def test_seeds_default_to_zero(vit):
    np.testing.assert_array_equal(_block_norms(randomise_top_layers(vit, 1)[0]),
                                  _block_norms(randomise_top_layers(vit, 1, seed=0)[0]))
    assert not np.array_equal(_block_norms(randomise_top_layers(vit, 1)[0]), _block_norms(randomise_top_layers(vit, 1, seed=1)[0]))
    s0 = randomisation_check(vit, IMG, _block_norms, levels=(1,))
    np.testing.assert_array_equal(s0.randomised_maps, randomisation_check(vit, IMG, _block_norms, levels=(1,), seed=0).randomised_maps)


def test_cascade_reads_boolean_maps_and_counts_a_level_at_the_threshold_as_unchanged():
    a = np.eye(5, dtype=bool)
    s = cascade(3, lambda: a, lambda n: a if n < 3 else ~a, levels=(1, 3))
    np.testing.assert_allclose(s.spearman, [1.0, -1.0])
    assert s.passed and np.isfinite(s.ssim).all() and s.ssim[0] == pytest.approx(1.0)
    at = cascade(3, lambda: a, lambda n: a, levels=(1, 3), threshold=1.0)
    assert not at.passed and at.outcome == "blind"


def test_the_mixed_verdict_lists_every_level_on_each_side():
    a = np.arange(16.0).reshape(4, 4)
    s = cascade(8, lambda: a, lambda n: -a if n in (1, 4) else a, levels=(1, 2, 4, 8))
    assert s.verdict().startswith("mixed: the map changes when the top 1, 4 block(s) are randomised but stays close to "
                                  "the original when the top 2, 8 are (Spearman")


def test_map_similarity_is_defined_from_three_patches_a_side():
    a = np.arange(9.0).reshape(3, 3)
    assert F._ssim(a, a) == pytest.approx(1.0)
    assert np.isnan(F._ssim(a[:2], a[:2]))
    mask = np.eye(4, dtype=bool)  # a thresholded map
    assert F._ssim(mask, mask) == pytest.approx(1.0) and F._ssim(mask, ~mask) < 0
