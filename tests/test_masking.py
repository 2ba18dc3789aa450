import numpy as np
import pytest

from explorer.masking import (
    SWEEP_RATIOS, MaskError, MaskSpec, block_order, grid_order, make_mask, manual_mask, mask_from_order,
    mask_to_noise, masking_order, num_masked, random_order,
)

GRIDS = [(14, 14), (7, 10), (16, 16)]


@pytest.mark.parametrize("strategy", ["random", "block", "grid"])
@pytest.mark.parametrize("grid", GRIDS)
def test_orders_are_permutations_and_masks_nested(strategy, grid):
    for seed in range(5):
        order = masking_order(grid, strategy, seed)
        assert sorted(order.tolist()) == list(range(grid[0] * grid[1]))
        masks = [mask_from_order(order, grid, r) for r in SWEEP_RATIOS]
        for small, big in zip(masks, masks[1:]):
            assert np.all(big[small]), "a patch hidden at a lower ratio became visible at a higher one"
            assert big.sum() > small.sum()


@pytest.mark.parametrize("strategy", ["random", "block", "grid"])
def test_exact_ratio(strategy):
    grid = (14, 14)
    for r in SWEEP_RATIOS:
        m = make_mask(grid, MaskSpec(strategy, r, 1))
        assert m.sum() == round(r * 196)
    assert make_mask(grid, MaskSpec(strategy, 0.75, 0)).sum() == 147
    assert make_mask(grid, MaskSpec(strategy, 0.0, 0)).sum() == 0
    assert make_mask(grid, MaskSpec(strategy, 1.0, 0)).sum() == 196


def test_num_masked_keeps_one_of_each_inside_open_interval():
    assert num_masked(196, 0.001) == 1
    assert num_masked(196, 0.999) == 195
    assert num_masked(4, 0.5) == 2


def test_seeded_and_deterministic():
    grid = (14, 14)
    for fn in (random_order, block_order, grid_order):
        a, b, c = fn(grid, 7), fn(grid, 7), fn(grid, 8)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_grid_at_75_keeps_one_patch_per_2x2_cell():
    for seed in range(8):
        m = make_mask((16, 16), MaskSpec("grid", 0.75, seed))
        vis = ~m
        # The lattice phase depends on the seed: one of the four 2x2 alignments must hold exactly.
        ok = False
        for dy in (0, 1):
            for dx in (0, 1):
                cells = vis[dy : dy + 14, dx : dx + 14].reshape(7, 2, 7, 2).sum(axis=(1, 3))
                ok |= bool(np.all(cells == 1))
        assert ok


def _boundary_edges(m):
    return int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())


def test_block_masks_are_blocky_compared_with_random():
    grid = (14, 14)
    block = np.mean([_boundary_edges(make_mask(grid, MaskSpec("block", 0.4, s))) for s in range(10)])
    rand = np.mean([_boundary_edges(make_mask(grid, MaskSpec("random", 0.4, s))) for s in range(10)])
    assert block < 0.6 * rand


def test_manual_mask_and_errors():
    m = manual_mask((4, 4), [0, 5, 15])
    assert m.sum() == 3 and m[0, 0] and m[1, 1] and m[3, 3]
    with pytest.raises(MaskError, match="out of range"):
        manual_mask((4, 4), [16])
    with pytest.raises(MaskError, match="Unknown mask strategy"):
        MaskSpec("zigzag")
    with pytest.raises(MaskError, match=r"\[0, 1\]"):
        MaskSpec("random", 1.5)
    with pytest.raises(MaskError):
        MaskSpec("random", 0.5, -1)
    with pytest.raises(MaskError, match="manual"):
        masking_order((4, 4), "manual", 0)


def test_noise_orders_visible_first():
    m = make_mask((14, 14), MaskSpec("random", 0.6, 3))
    noise = mask_to_noise(m)
    kept = np.argsort(noise, kind="stable")[: (~m).sum()]
    assert set(kept.tolist()) == set(np.flatnonzero(~m.ravel()).tolist())
    assert np.all(np.diff(kept) > 0)  # visible tokens stay in raster order


@pytest.mark.parametrize("given", [
    [1, 6, 14], (1, 6, 14), np.array([[1, 6], [14, 6]]), np.array([1.0, 6.0, 14.0]), range(1, 15, 13),
])
def test_manual_indices_accepts_sequences_arrays_and_ranges(given):
    from explorer.masking.image import manual_indices

    got = manual_indices(given)
    assert isinstance(got, tuple) and all(type(i) is int for i in got)
    assert got == tuple(int(i) for i in np.asarray(list(given) if isinstance(given, range) else given).ravel())


def test_manual_indices_reads_boolean_masks_as_hidden_patches():
    from explorer.masking.image import manual_indices

    m = np.zeros((3, 5), bool)
    m[0, 1] = m[2, 0] = True  # flat 1 and 10: a transposed reading would give other indices
    assert manual_indices(m) == (1, 10)
    assert manual_indices(m.ravel()) == (1, 10)
    assert manual_indices(None) == () and manual_indices([]) == () and manual_indices(np.zeros((0,), int)) == ()
    mm = manual_mask((3, 5), m)
    np.testing.assert_array_equal(mm, m)


@pytest.mark.parametrize("bad, message", [
    ("0,1", "text"), (b"01", "text"), ([1.5, 2], "whole numbers"), ([np.nan], "whole numbers"),
    (["a", "b"], "whole numbers"), ([[1, 2], [3]], "flat sequence"),
])
def test_manual_indices_refuses_what_is_not_patch_numbers(bad, message):
    from explorer.masking.image import manual_indices

    with pytest.raises(MaskError, match=message):
        manual_indices(bad)


def test_manual_mask_places_each_index_in_raster_order():
    m = manual_mask((3, 4), [1, 6, 11])  # (0, 1), (1, 2), (2, 3): not on a diagonal of a square
    expected = np.zeros((3, 4), bool)
    expected[0, 1] = expected[1, 2] = expected[2, 3] = True
    np.testing.assert_array_equal(m, expected)
    with pytest.raises(MaskError, match=r"out of range for a 3x4 grid: -1\.\.6"):
        manual_mask((3, 4), [-1, 6])
    assert not manual_mask((3, 4), []).any()
    assert m.dtype == bool and manual_mask((3, 4), []).dtype == bool


def test_mask_to_noise_values():
    m = np.array([[False, True, False], [True, True, False]])
    noise = mask_to_noise(m)
    assert noise.dtype == np.float32 and noise.shape == (6,)
    np.testing.assert_allclose(noise, m.ravel().astype(np.float64) + np.arange(6) / 12.0, rtol=1e-7)
    assert noise[~m.ravel()].max() < 0.5 <= 1.0 <= noise[m.ravel()].min()


# ---------------------------------------------------------------------------------------------- multimodal budgets
def _specs():
    from explorer.modalities import Modality

    return [Modality("rgb", "image", (32, 48, 3), (8, 8), (0.5,) * 3, (0.2,) * 3),   # 24 patches
            Modality("depth", "depth", (32, 32), (8, 8), (2.0,), (1.0,))]           # 16 patches


def test_visible_counts_reads_ratios_and_counts():
    from explorer.masking.budgets import visible_counts

    specs = _specs()
    assert visible_counts(specs, {"rgb": 0.25, "depth": 3}) == {"rgb": 6, "depth": 3}
    assert visible_counts(specs, {"rgb": np.float32(0.5)}) == {"rgb": 12, "depth": 0}  # missing: nothing shown
    assert visible_counts(specs, {"depth": np.int64(16), "rgb": 1.0}) == {"rgb": 24, "depth": 16}
    assert visible_counts(specs, {"rgb": 0.0, "depth": 1}) == {"rgb": 0, "depth": 1}


@pytest.mark.parametrize("budgets, message", [
    ({"audio": 0.5}, r"Unknown modality 'audio'; this model has: depth, rgb\."),
    ({"rgb": True}, "must be a ratio in \\[0, 1\\] or a patch count, got True"),
    ({"rgb": "half"}, "got 'half'"),
    ({"rgb": float("nan")}, "got nan"),
    ({"rgb": 25}, "between 0 and 24 patches"),
    ({"rgb": -1}, "between 0 and 24 patches"),
    ({"rgb": 1.2}, "between 0 and 24 patches .0–1 as a ratio., got 1.2"),
    ({"rgb": -0.01}, "got -0.01"),
    ({"rgb": 0, "depth": 0.0}, "^Every modality is fully masked: show at least one patch of some modality\\.$"),
    ({}, "^Every modality is fully masked"),
])
def test_visible_counts_refuses_with_the_reason(budgets, message):
    from explorer.masking.budgets import BudgetError, visible_counts

    with pytest.raises(BudgetError, match=message):
        visible_counts(_specs(), budgets)


@pytest.mark.parametrize("total, seed, alpha", [(10, 0, 1.0), (30, 5, 0.2), (40, 3, 1.0), (7, 11, 5.0), (1, 2, 1.0)])
def test_dirichlet_counts_follow_numpys_dirichlet_sum_to_the_total_and_respect_caps(total, seed, alpha):
    from explorer.masking.budgets import dirichlet_counts

    specs = _specs()
    got = dirichlet_counts(specs, total, seed, alpha)
    p = np.random.default_rng(seed).dirichlet([alpha, alpha])
    assert sum(got.values()) == total
    assert got["rgb"] <= 24 and got["depth"] <= 16
    if total <= 16:  # no cap binds: each share is p · total rounded down, the remainder to the larger share
        base = np.floor(p * total).astype(int)
        expected = base.copy()
        expected[int(np.argmax(p))] += total - base.sum()
        assert (got["rgb"], got["depth"]) == tuple(int(v) for v in expected)
    assert got == dirichlet_counts(specs, total, seed, alpha)
    if alpha == 1.0:
        assert got == dirichlet_counts(specs, total, seed)  # MultiMAE's default: a flat Dirichlet


def test_dirichlet_counts_refuse_impossible_totals():
    from explorer.masking.budgets import BudgetError, dirichlet_counts

    for bad in (0, 41, -3):
        with pytest.raises(BudgetError, match="between 1 and 40 patches, got " + str(bad)):
            dirichlet_counts(_specs(), bad, 0)


# ---------------------------------------------------------------------------------------------- orders, exactly
def test_random_order_is_maes_argsort_of_seeded_noise():
    """MAE keeps the lowest noise: the order hides the highest noise first (numpy's PCG64 with the seed)."""
    noise = np.random.default_rng(7).random(6 * 9)
    np.testing.assert_array_equal(random_order((6, 9), 7), np.argsort(-noise))
    assert random_order((6, 9), 7).dtype == np.int64


def test_bayer_matrices_are_the_ordered_dither_ones():
    from explorer.masking.image import _bayer

    np.testing.assert_array_equal(_bayer(1), [[0]])
    np.testing.assert_array_equal(_bayer(2), [[0, 2], [3, 1]])
    np.testing.assert_array_equal(_bayer(4), [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]])
    b8 = _bayer(8)
    assert b8.shape == (8, 8) and b8.dtype == np.int64 and sorted(b8.ravel().tolist()) == list(range(64))


@pytest.mark.parametrize("grid, seed", [((8, 12), 0), ((14, 14), 5), ((10, 6), 9)])
def test_grid_masks_are_lattices_with_a_seeded_phase(grid, seed):
    """At 75% one patch of every 2x2 cell stays visible, at 50% a checkerboard, at 1/64 visible one patch per 8x8
    tile at the same place in every tile; the seed moves that phase."""
    gh, gw = grid
    order = masking_order(grid, "grid", seed)
    visible = ~mask_from_order(order, grid, 0.75)
    ys, xs = np.nonzero(visible)
    assert len(set(ys % 2)) == 1 and len(set(xs % 2)) == 1  # one row / column parity: a regular 2-lattice
    assert visible.sum() == gh * gw // 4
    half = ~mask_from_order(order, grid, 0.5)
    par = (np.add.outer(np.arange(gh), np.arange(gw)) % 2)
    assert (half == (par == par[half][0])).all()  # a checkerboard
    first = order[::-1][: (gh // 8) * (gw // 8)]
    if len(first):
        r, c = np.divmod(first, gw)
        assert len(set(r % 8)) == 1 and len(set(c % 8)) == 1
    phases = {tuple(np.argwhere(~mask_from_order(masking_order(grid, "grid", s), grid, 0.75))[0] % 2) for s in range(12)}
    assert len(phases) > 1  # the seed moves the lattice


@pytest.mark.parametrize("call, message", [
    (lambda: MaskSpec("zigzag"), r"Unknown mask strategy 'zigzag'; choose one of random, block, grid, manual\."),
    (lambda: MaskSpec("random", 0.5, -2), r"Seed must be a non-negative integer, got -2\."),
    (lambda: num_masked(10, 1.5), r"Masking ratio must lie in \[0, 1\], got 1\.5\."),
    (lambda: masking_order((4, 4), "zigzag", 0), r"Unknown mask strategy 'zigzag'; choose one of random, block, grid, manual\."),
    (lambda: masking_order((4, 4), "manual", 0), r"^A manual mask has no ratio sweep; build it with manual_mask\(\)\.$"),
    (lambda: manual_mask((4, 4), [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]),
     r"^Manual mask: patch indices must be whole numbers, got \[0\.5, 1\.5, 2\.5, 3\.5, 4\.5\]\.$"),
])
def test_mask_errors_say_what_is_wrong(call, message):
    with pytest.raises(MaskError, match=message):
        call()


def test_make_mask_reads_every_field_of_the_spec():
    assert make_mask((3, 4), MaskSpec("manual", manual=[1, 6])).tolist() == manual_mask((3, 4), [1, 6]).tolist()
    a = make_mask((8, 8), MaskSpec("random", 0.5, 1))
    np.testing.assert_array_equal(a, mask_from_order(random_order((8, 8), 1), (8, 8), 0.5))
    assert not np.array_equal(a, make_mask((8, 8), MaskSpec("random", 0.5, 2)))


def test_block_orders_place_whole_rectangles_of_the_documented_size():
    """BEiT-style blocks: the first block of an order is a full rectangle inside the grid, of 16 up to 0.4·L patches
    (up to rounding), and blocks come both wider than tall and taller than wide."""
    grid = (14, 14)
    shapes = []
    for seed in range(40):
        order = block_order(grid, seed)
        r, c = np.divmod(order, grid[1])
        k = 1
        while k < len(order):  # longest prefix that is exactly its bounding box in row-major order
            rr, cc = r[: k + 1], c[: k + 1]
            h, w = rr.max() - rr.min() + 1, cc.max() - cc.min() + 1
            box = [(y * grid[1] + x) for y in range(rr.min(), rr.max() + 1) for x in range(cc.min(), cc.max() + 1)]
            if h * w == k + 1 and order[: k + 1].tolist() == box:
                k += 1
            elif h * w > k + 1 and order[: k + 1].tolist() == box[: k + 1]:
                k += 1
            else:
                break
        rr, cc = r[:k], c[:k]
        h, w = rr.max() - rr.min() + 1, cc.max() - cc.min() + 1
        assert h * w == k, (seed, h, w, k)
        shapes.append((h, w))
    areas = [h * w for h, w in shapes]
    assert min(areas) >= 12 and max(areas) <= int(0.4 * 196) + 3, areas
    assert max(areas) >= 40 and len(set(areas)) >= 10  # block sizes spread over [16, 0.4·L], not one size
    # a block is placed anywhere it fits, uniformly: few first blocks touch the bottom edge (a placement that ran
    # past the grid would cut many there)
    bottoms = sum(int(np.divmod(block_order(grid, s), 14)[0][:16].max() == 13) for s in range(40))
    assert bottoms <= 10, bottoms
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes) and any(abs(h - w) >= 2 for h, w in shapes)


def test_visible_tubes_and_ineligible_patches():
    from explorer.masking.budgets import BudgetError, visible_masks
    from explorer.modalities import Modality

    video = Modality("video", "video", (6, 16, 24, 3), (2, 8, 8), (0.5,) * 3, (0.2,) * 3)  # grid (3, 2, 3)
    depth = Modality("depth", "depth", (16, 24), (8, 8), (2.0,), (1.0,))                    # 6 patches
    got = visible_masks([video, depth], {"video": 8}, seed=3, strategy={"video": "tube"})
    v = got["video"].reshape(video.grid)
    assert v.sum() == 6 and (v[0] == v[1]).all() and (v[0] == v[2]).all()  # 8 → 2 whole tubes of 3 time slots
    assert not got["depth"].any()  # a modality missing from the counts shows nothing
    bad = np.zeros(6, np.uint8)
    bad[[0, 2, 4]] = 1  # 0/1 integers, as read from a file
    shown = visible_masks([depth], {"depth": 3}, seed=0, ineligible={"depth": bad})["depth"]
    assert shown.tolist() == [False, True, False, True, False, True]
    with pytest.raises(BudgetError, match="depth: 4 visible patches asked but only 3 have valid values"):
        visible_masks([depth], {"depth": 4}, seed=0, ineligible={"depth": bad})
    with pytest.raises(BudgetError, match=r"Unknown masking strategy 'zigzag': use 'random' or 'tube'\."):
        visible_masks([depth], {"depth": 1}, seed=0, strategy={"depth": "zigzag"})
    with pytest.raises(BudgetError, match="Tube masking needs a video modality; depth is depth"):
        visible_masks([depth], {"depth": 1}, seed=0, strategy={"depth": "tube"})


def test_grid_phase_takes_every_offset_in_the_tile():
    """The seed draws the lattice phase uniformly over the 8 x 8 tile: over 64 seeds, the patch kept longest in the
    first tile sits at every row and every column of the tile."""
    rows, cols = set(), set()
    for s in range(64):
        last = int(masking_order((8, 8), "grid", s)[-1])  # kept longest
        rows.add(last // 8)
        cols.add(last % 8)
    assert rows == set(range(8)) and cols == set(range(8))
