"""Multimodal reconstruction's scores and provenance against hand-computed answers: each modality's metrics on a
known error, the per-patch RMSE over known values only, the summary line, the Dirichlet budget note, patches that
are mostly unknown never shown, a modality left out, and the hashes that identify the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.io import array_sha256
from explorer.masking.budgets import dirichlet_counts
from explorer.multimodal import BudgetError, MultiModalInputError, load_multimodal_model, reconstruct_multimodal
from explorer.reconstruction.multimodal import NAT_TO_DB, ModalityResult, MultiModalReconstruction, _patch_rmse, modality_metrics

from _tiny import AUDIO, DEPTH, RGB, VIDEO, save_tiny_multimae


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    return load_multimodal_model(str(save_tiny_multimae(tmp_path_factory.mktemp("rgbd") / "m", [RGB, DEPTH])), device="cpu")


@pytest.fixture(scope="module")
def av(tmp_path_factory):
    return load_multimodal_model(str(save_tiny_multimae(tmp_path_factory.mktemp("av") / "m", [VIDEO, AUDIO], task="audio-visual")),
                                 device="cpu")


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.random(RGB.shape, dtype=np.float32), "depth": (1.0 + 4.0 * rng.random(DEPTH.shape)).astype(np.float32)}


# ---------------------------------------------------------------------------------------------------- metrics
def test_image_and_video_metrics_are_rmse_and_psnr_on_hidden_known_values_only():
    for spec in (RGB, VIDEO):
        truth = np.zeros(spec.shape, np.float32)
        pred = np.full(spec.shape, 0.1, np.float32)
        hidden = np.zeros(spec.shape, bool)
        hidden.flat[: hidden.size // 2] = True
        pred[~hidden] = 5.0  # visible values are never scored
        truth.flat[0] = np.nan  # an unknown value is never scored either
        m = modality_metrics(spec, truth, pred, hidden)
        assert set(m) == {"rmse", "hidden_values", "psnr"}, spec.kind
        assert m["hidden_values"] == hidden.size // 2 - 1
        assert m["rmse"] == pytest.approx(0.1, rel=1e-6) and m["psnr"] == pytest.approx(20.0, rel=1e-6)
    assert modality_metrics(VIDEO, truth, pred, np.zeros(VIDEO.shape, bool)) == {}


def test_depth_metrics_absrel_and_delta1_on_a_hand_worked_case():
    truth = np.array([[1.0, 2.0, 2.0], [0.5, 1.0, 4.0]], np.float32)
    # ratio exactly 1.25 is outside delta1; 0 is read as 1 mm; 2.2 for 2 is inside (its product with 2 is not)
    pred = np.array([[1.25, 3.0, 2.2], [0.5, 0.0, 3.0]], np.float32)
    hidden = np.ones((2, 3), bool)
    spec = type("S", (), {"kind": "depth"})()
    m = modality_metrics(spec, truth, pred, hidden)
    raw = np.array([1.25, 3.0, 2.2, 0.5, 0.0, 3.0], np.float32).astype(np.float64)
    pp = np.where(raw == 0, 1e-3, raw)
    t = np.array([1.0, 2.0, 2.0, 0.5, 1.0, 4.0])
    assert m["absrel"] == pytest.approx(np.mean(np.abs(pp - t) / t), rel=1e-12)
    assert m["delta1"] == pytest.approx(2 / 6)  # 0.5 for 0.5 and 2.2 for 2; 3 for 4 is 1.33 off
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((raw - t) ** 2)), rel=1e-12)
    assert set(m) == {"rmse", "hidden_values", "absrel", "delta1"}


def test_spectrogram_rmse_is_also_given_in_decibels():
    truth = np.zeros(AUDIO.shape, np.float32)
    pred = np.full(AUDIO.shape, 0.5, np.float32)
    m = modality_metrics(AUDIO, truth, pred, np.ones(AUDIO.shape, bool))
    assert set(m) == {"rmse", "hidden_values", "rmse_db"}
    assert m["rmse_db"] == pytest.approx(0.5 * 10 / np.log(10), rel=1e-12) and NAT_TO_DB == pytest.approx(4.342944819)


def test_patch_rmse_counts_known_values_only_and_leaves_visible_and_unknown_patches_blank():
    truth = np.full(DEPTH.shape, 1.5, np.float32)  # not zero: the error is pred - truth, not pred + truth
    pred = np.full(DEPTH.shape, 1.5, np.float32)
    pred[0:8, 0:8] = 3.5                     # patch 0: error 2 everywhere
    pred[0:8, 8:16] = 4.5                    # patch 1: only one known value, error 3
    truth[0:8, 8:16] = np.nan
    truth[0, 8] = 1.5
    truth[0:8, 16:24] = np.nan               # patch 2: nothing known
    pred[8:16, 0:8] = 2.5                    # patch 4: visible, never scored
    pred[8, 8] = 5.5                         # patch 5: one value of 64 off by 4 → sqrt(16 / 64)
    hidden = np.ones(DEPTH.num_patches, bool)
    hidden[4] = False
    e = _patch_rmse(DEPTH, truth, pred, hidden)
    assert e.shape == DEPTH.grid and e.dtype == np.float32
    assert e[0, 0] == 2.0 and e[0, 1] == 3.0 and np.isnan(e[0, 2]) and np.isnan(e[1, 0])
    assert e[1, 1] == pytest.approx(0.5) and e[0, 3] == 0.0


# ---------------------------------------------------------------------------------------------------- the run
def test_summary_lists_each_modality_its_budget_and_its_metrics_without_the_count():
    res = {
        "rgb": ModalityResult(RGB, np.zeros(RGB.shape), np.zeros(16, bool), np.zeros(RGB.shape), np.zeros((4, 4)),
                              {"rmse": 0.12345, "hidden_values": 99, "psnr": 18.2}),
        "depth": ModalityResult(DEPTH, np.zeros(DEPTH.shape), np.ones(16, bool), np.zeros(DEPTH.shape), np.zeros((4, 4)), {}),
    }
    rec = MultiModalReconstruction(res, {"rgb": 3, "depth": 16}, 0, "m", "w", {"rgb": "", "depth": ""})
    assert rec.summary() == "rgb (3/16 visible): rmse 0.123, psnr 18.2\ndepth (16/16 visible): nothing hidden to score"


def test_provenance_identifies_the_model_the_inputs_and_the_seed(rgbd):
    x = _inputs()
    rec = reconstruct_multimodal(rgbd, {"rgb": x["rgb"]}, {"rgb": 0.25})
    assert rec.seed == 0 and rec.model_id == rgbd.model_id and rec.weights_sha256 == rgbd.weights_sha256
    assert rec.input_sha256 == {"rgb": array_sha256(x["rgb"]), "depth": ""}
    d = rec["depth"]  # not given: predicted only, its original all unknown
    assert not d.given and d.original.dtype == np.float32 and np.isnan(d.original).all() and d.metrics == {}
    assert d.prediction.shape == DEPTH.shape and np.isfinite(d.prediction).all() and rec.counts["depth"] == 0
    again = reconstruct_multimodal(rgbd, {"rgb": x["rgb"]}, {"rgb": 0.25}, seed=0)
    np.testing.assert_array_equal(again["rgb"].visible, rec["rgb"].visible)


def test_a_total_is_split_by_the_seeded_dirichlet_and_the_note_says_how(rgbd):
    x = _inputs()
    for seed, alpha in ((3, 0.5), (4, 1.0)):
        rec = reconstruct_multimodal(rgbd, x, total=10, seed=seed, alpha=alpha)
        want = dirichlet_counts([RGB, DEPTH], 10, seed, alpha)
        assert rec.counts == want and rec.seed == seed
        assert rec.notes[0] == "budget split by Dirichlet(%g): rgb %d, depth %d" % (alpha, want["rgb"], want["depth"])
    default = reconstruct_multimodal(rgbd, x, total=10)
    assert default.counts == dirichlet_counts([RGB, DEPTH], 10, 0, 1.0) and default.notes[0].startswith("budget split by Dirichlet(1): ")
    with pytest.raises(BudgetError, match=r"^Give either per-modality budgets or a total to split \(not both\)\.$"):
        reconstruct_multimodal(rgbd, x, {"rgb": 1}, total=4)
    with pytest.raises(BudgetError, match=r"^Give either"):
        reconstruct_multimodal(rgbd, x)


def test_mostly_unknown_depth_patches_are_never_shown(rgbd):
    x = _inputs()
    x["depth"][:, :16] = np.nan  # the left half: 8 of 16 patches unknown
    for seed in range(4):
        rec = reconstruct_multimodal(rgbd, x, {"rgb": 0, "depth": 8}, seed=seed)
        vis = rec["depth"].visible.reshape(DEPTH.grid)
        assert vis[:, 2:].all() and not vis[:, :2].any(), seed
        assert "depth: 8 patches are mostly unknown and never shown" in rec.notes


def test_video_tube_strategy_reaches_the_masks(av):
    rng = np.random.default_rng(0)
    x = {"video": rng.random(VIDEO.shape, dtype=np.float32), "audio": rng.normal(-5, 3, AUDIO.shape).astype(np.float32)}
    rec = reconstruct_multimodal(av, x, {"video": 0.5, "audio": 0.5}, seed=2, strategy={"video": "tube"})
    vis = rec["video"].visible.reshape(VIDEO.grid)
    assert vis.shape[0] == 2 and (vis[0] == vis[1]).all() and 0 < vis[0].sum() < vis[0].size


def test_input_messages_name_what_the_model_takes(rgbd):
    with pytest.raises(MultiModalInputError, match=r"^Unknown modality 'audio'; .* takes: rgb, depth\.$"):
        reconstruct_multimodal(rgbd, {"audio": np.zeros((2, 2))}, {"rgb": 1})
    with pytest.raises(MultiModalInputError, match=r"^No input given: pass at least one of rgb, depth\.$"):
        reconstruct_multimodal(rgbd, {}, {"rgb": 1})
    with pytest.raises(MultiModalInputError, match=r"^rgb: expected shape \(32, 32, 3\), got \(8, 8, 3\) \(use the prepare_\* "
                                                   r"helpers in explorer\.multimodal\.inputs to crop and resize\)\.$"):
        reconstruct_multimodal(rgbd, {"rgb": np.zeros((8, 8, 3))}, {"rgb": 1})
