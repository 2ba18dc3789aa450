"""Per-head attention summaries on attention patterns with a known answer (ViT paper's mean attention distance, in
pixels; attention entropy in nats), computed here by brute force over coordinates."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from explorer.attention.methods import attention_entropy, mean_attention_distance


def _uniform(L: int, H: int, T: int) -> np.ndarray:
    return np.full((L, H, T, T), 1.0 / T)


@pytest.mark.parametrize("grid, patch, prefix", [((2, 3), 16, 1), ((3, 5), 14, 0), ((4, 4), 8, 2)])
def test_uniform_attention_distance_is_the_mean_pairwise_pixel_distance(grid, patch, prefix):
    gh, gw = grid
    P = gh * gw
    cells = list(itertools.product(range(gh), range(gw)))
    expected = np.mean([math.hypot((a - c) * patch, (b - d) * patch) for (a, b), (c, d) in itertools.product(cells, cells)])
    got = mean_attention_distance(_uniform(2, 3, prefix + P), grid, patch, prefix)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_one_hot_attention_to_a_known_key():
    """Each query attends to the patch two columns right (or two left at the edge) and a little to the [CLS]
    token, which is dropped and renormalised away: every distance is exactly 2 patches."""
    grid, patch, prefix = (3, 4), 16, 1
    gh, gw = grid
    T = prefix + gh * gw
    probs = np.zeros((1, 2, T, T))
    for r, c in itertools.product(range(gh), range(gw)):
        q = prefix + r * gw + c
        k = prefix + r * gw + (c + 2 if c + 2 < gw else c - 2)
        probs[0, :, q, k] = 0.7
        probs[0, :, q, 0] = 0.3
    # head 1: attend one row down (or up): 1 patch vertically
    for r, c in itertools.product(range(gh), range(gw)):
        q = prefix + r * gw + c
        probs[0, 1, q] = 0
        probs[0, 1, q, prefix + (r + 1 if r + 1 < gh else r - 1) * gw + c] = 1.0
    got = mean_attention_distance(probs, grid, patch, prefix)
    np.testing.assert_allclose(got, [[2 * patch, patch]], rtol=1e-12)


def test_video_distance_ignores_time():
    """Tubelet grid (t, gh, gw): a query attending to the same spatial patch in another time slot is at distance 0."""
    grid, patch = (2, 2, 3), 16
    t, gh, gw = grid
    P = t * gh * gw
    probs = np.zeros((1, 1, P, P))
    for i in range(P):
        probs[0, 0, i, (i + gh * gw) % P] = 1.0  # same (r, c), the other time slot
    assert mean_attention_distance(probs, grid, patch, 0)[0, 0] == pytest.approx(0.0)


@pytest.mark.parametrize("T", [5, 17, 50])
def test_entropy_of_uniform_attention_is_log_T(T):
    np.testing.assert_allclose(attention_entropy(_uniform(2, 2, T)), math.log(T), rtol=1e-9)


def test_entropy_of_one_hot_and_two_way_rows():
    T = 6
    probs = np.zeros((1, 2, T, T))
    probs[0, 0, np.arange(T), np.arange(T)] = 1.0  # one-hot: 0 nats
    probs[0, 1, :, 0] = 0.25
    probs[0, 1, :, 3] = 0.75  # every row: −(¼ ln ¼ + ¾ ln ¾)
    got = attention_entropy(probs)
    assert got[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert got[0, 1] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # the mean is over queries: a layer whose rows differ averages them
    mixed = probs.copy()
    mixed[0, 0, :3] = probs[0, 1, :3]
    assert attention_entropy(mixed)[0, 0] == pytest.approx(got[0, 1] / 2)


# ---------------------------------------------------------------------------------------------- rollout / relevance
import torch  # noqa: E402

from explorer.attention.methods import RelevanceAccumulator, RolloutAccumulator, fuse_heads, rollout_step  # noqa: E402


def _attn(seed: int, H: int = 3, T: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(H, T, T, generator=g), -1)


def test_head_fusion_is_the_mean_max_or_min_over_heads():
    a = _attn(0)
    torch.testing.assert_close(fuse_heads(a), a.mean(0))  # the default is the mean
    torch.testing.assert_close(fuse_heads(a, "max"), a.max(0).values)
    torch.testing.assert_close(fuse_heads(a, "min"), a.min(0).values)
    with pytest.raises(ValueError, match=r"Unknown head fusion 'median'; choose from \('mean', 'max', 'min'\)\."):
        fuse_heads(a, "median")


def test_rollout_step_defaults_and_the_discard_range():
    a = _attn(1)
    eye = torch.eye(5)
    expected = 0.5 * a.mean(0) + 0.5 * eye  # rows of A and of I sum to one: so does their average
    torch.testing.assert_close(rollout_step(a), expected)
    torch.testing.assert_close(rollout_step(a, fusion="mean", discard=0.0, residual=True), expected)
    torch.testing.assert_close(rollout_step(a, residual=False), a.mean(0))
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"discard ratio must be in \[0, 1\), got {bad}"):
            rollout_step(a, discard=bad)
    # discard 0.4 of 5 = the 2 smallest entries of each row, never the diagonal
    d = rollout_step(a, discard=0.4, residual=False)
    m = a.mean(0)
    for r in range(5):
        off = [c for c in np.argsort(m[r].numpy()) if c != r][:2]
        assert all(d[r, c] == 0 for c in off) and d[r, r] > 0
        torch.testing.assert_close(d[r].sum(), torch.tensor(1.0))


def test_rollout_accumulator_multiplies_the_chosen_layers_in_order():
    a0, a1, a2 = _attn(2), _attn(3), _attn(4)
    acc = RolloutAccumulator(layers=[0, 2])
    for a in (a0, a1, a2):
        acc.update(a)
    torch.testing.assert_close(acc.result, rollout_step(a2) @ rollout_step(a0))
    assert acc.seen == 3


def test_relevance_accumulator_builds_chefers_product_from_the_last_layer_down():
    """Called last layer first: R = (I + Ā_2)(I + Ā_1)(I + Ā_0) with Ā = mean over heads of (∇A ⊙ A)⁺; with
    ``layers`` only the named layers enter, whatever order the indices come in."""
    A = [_attn(s) for s in (5, 6, 7)]
    G = [torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(10 + s)) for s in range(3)]
    bar = [(g * a).clamp_min(0).mean(0) for a, g in zip(A, G)]
    eye = torch.eye(5)
    acc = RelevanceAccumulator()
    for i in (2, 1, 0):
        acc.update(A[i], G[i], index=i)
    torch.testing.assert_close(acc.result, (eye + bar[2]) @ (eye + bar[1]) @ (eye + bar[0]))
    assert acc.seen == [2, 1, 0]
    only = RelevanceAccumulator(layers=[2, 0])
    for i in (2, 1, 0):
        only.update(A[i], G[i], index=i)
    torch.testing.assert_close(only.result, (eye + bar[2]) @ (eye + bar[0]))
    implicit = RelevanceAccumulator(layers=[0])
    implicit.update(A[2], G[2])  # no index: counted 0, 1, ... in call order
    implicit.update(A[1], G[1])
    assert implicit.seen == [0, 1]
    torch.testing.assert_close(implicit.result, eye + bar[2])


def test_rollout_and_relevance_build_their_identity_on_the_inputs_device():
    """The identity is made where the attention lives (a GPU tensor must not meet a CPU identity): checked on
    PyTorch's "meta" device, where mixing devices fails just as it does on a GPU."""
    a = _attn(8).to("meta")
    assert rollout_step(a).device.type == "meta"
    assert rollout_step(a, discard=0.4).device.type == "meta"
    acc = RelevanceAccumulator()
    acc.update(a, a)
    assert acc.result.device.type == "meta" and acc.result.shape == (5, 5)


def test_discarding_a_single_entry_per_row():
    a = _attn(9)
    d = rollout_step(a, discard=0.2, residual=False)  # 0.2 of 5 tokens: one entry per row
    m = a.mean(0)
    for r in range(5):
        c = [c for c in np.argsort(m[r].numpy()) if c != r][0]
        assert d[r, c] == 0 and int((d[r] == 0).sum()) == 1


def test_distance_is_computed_in_float64_and_a_row_on_the_prefix_counts_zero():
    grid, patch, prefix = (3, 4), 16, 1
    T = prefix + 12
    rng = np.random.default_rng(0)
    p32 = rng.random((1, 2, T, T)).astype(np.float32)
    p32 /= p32.sum(-1, keepdims=True)
    got = mean_attention_distance(p32, grid, patch, prefix)
    cells = list(itertools.product(range(3), range(4)))
    a = p32[0, :, prefix:, prefix:].astype(np.float64)
    a /= a.sum(-1, keepdims=True)
    ref = [np.mean([sum(a[h, q, k] * math.hypot((cells[q][0] - cells[k][0]) * patch, (cells[q][1] - cells[k][1]) * patch)
                        for k in range(12)) for q in range(12)]) for h in range(2)]
    np.testing.assert_allclose(got[0], ref, rtol=1e-12)
    only_cls = np.zeros((1, 1, T, T))
    only_cls[..., 0] = 1.0  # every query looks at [CLS] only: no patch-to-patch distance at all
    assert mean_attention_distance(only_cls, grid, patch, prefix)[0, 0] == 0.0
