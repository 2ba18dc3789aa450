"""The shipped mini multimodal MAEs load offline, their cards show metrics.json, and the card's claims hold when
re-measured here on held-out samples (fewer of them, through the same code path)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.models import shipped_models
from explorer.reconstruction.multimodal import reconstruct_multimodal
from explorer.multimodal import load_multimodal_model
from explorer.training.multimodal_evaluate import PROTOCOLS, evaluate, held_out, same_pixels_gain
from explorer.training.multimodal_card import GAINS


@pytest.fixture(scope="module", params=["mini-rgbd-mae", "mini-av-mae"])
def shipped(request):
    folder = shipped_models().get(request.param)
    assert folder is not None, f"data/models/{request.param} is missing"
    return folder, load_multimodal_model(request.param, device="cpu")


def test_card_shows_the_measured_numbers(shipped):
    folder, mm = shipped
    card = (folder / "README.md").read_text()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["task"] == mm.task and "python -m explorer.training.train_mini_multimae" in card
    for label, r in m["generated"].items():
        assert f"| {label} |" in card and ("%.3g" % r["model"]) in card
    assert f"{m['gain']['without']:.3g} → {m['gain']['with']:.3g}" in card
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))


def test_cross_modal_prediction_beats_the_constant_and_more_visible_data_helps(shipped):
    folder, mm = shipped
    card = json.loads((folder / "metrics.json").read_text())
    samples = held_out(mm, 16)
    first = PROTOCOLS[mm.task][0]  # depth from RGB alone / sound from video alone
    r = evaluate(mm, samples, [first])[first[0]]
    margin = {"rgbd": 0.5, "audio-visual": 0.8}[mm.task]
    assert r["model"] < margin * r["training mean"]  # a clear margin over the constant (mean depth / mean spectrogram)
    # the card's number (over its 200 held-out samples, of which these are the first 16) agrees with these 16
    # within their own sampling error: 4 standard errors, with the finite-population correction
    label, budgets, scored_first, metric_first = first
    per = np.array([reconstruct_multimodal(mm, x, budgets, seed=i)[scored_first].metrics[metric_first]
                    for i, x in enumerate(samples)], np.float64)
    assert r["model"] == pytest.approx(per.mean(), rel=1e-9)  # evaluate() is the mean over samples
    n, N = len(per), card["generated"][label].get("samples", 200)
    se = per.std(ddof=1) / np.sqrt(n) * np.sqrt(max(N - n, 0) / max(N - 1, 1))
    assert abs(per.mean() - card["generated"][label]["model"]) <= 4 * se, (per.mean(), card["generated"][label], se)
    scored, base, more, metric, _ = GAINS[mm.task]
    # mini-av-mae also learns speech shown with a still frame (video says nothing there), so all the video lowers the
    # sound's error on generated clips by only ~0.3 dB (the card: 8.91 → 8.58 over 200): 16 clips are too few to see it
    gain_samples = samples if mm.task == "rgbd" else held_out(mm, 64)
    g = same_pixels_gain(mm, gain_samples, scored, base, more, metric)
    assert g["with"] < g["without"]  # 10 % of depth (or all the video) lowers the error on the same hidden values
