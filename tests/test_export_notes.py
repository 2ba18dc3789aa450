"""Exports carry every note the screen shows: sidecar, caption and the figure itself (issue: norm_pix_loss caveat)."""

from __future__ import annotations

import json
import subprocess

import pytest
from _tiny import save_tiny_mae

import explorer
from explorer import export
from explorer.reconstruction import reconstruct
from explorer.viz.notes import attach_notes, figure_notes


@pytest.fixture(scope="module")
def normpix(tmp_path_factory):
    return explorer.load_model(str(save_tiny_mae(tmp_path_factory.mktemp("np"), seed=1, norm_pix_loss=True)), device="cpu")


def test_attach_notes_keeps_order_and_drops_repeats():
    import plotly.graph_objects as go

    fig = attach_notes(go.Figure(), ["b", "a", "b"])
    attach_notes(fig, ["a", "c", ""])
    assert figure_notes(fig) == ["b", "a", "c"]
    assert figure_notes(go.Figure()) == []


def test_a_norm_pix_export_keeps_the_psnr_caveat_in_sidecar_caption_and_pdf(normpix, tmp_path):
    rec = reconstruct(normpix, "chelsea", ratio=0.75, seed=0)
    caveat = next(n for n in rec.notes if "PSNR is optimistic" in n)  # what the MAE app shows
    res = export.export_recipe("reconstruction", tmp_path / "fig", model=normpix, inputs=["chelsea"],
                               options={"ratio": 0.75, "seed": 0}, formats=("pdf", "svg"), title="Masked reconstruction")
    sc = json.loads(res.files["json"].read_text())
    assert caveat in sc["notes"]
    assert sc["caption"].startswith("Masked reconstruction.") and "PSNR is optimistic" in sc["caption"]
    text = subprocess.run(["pdftotext", "-raw", str(res.files["pdf"]), "-"], capture_output=True, text=True).stdout
    flat = " ".join(text.split())
    assert "Note: This checkpoint predicts per-patch-normalised pixels" in flat and "optimistic" in flat
    # The figure's own data: the footnote is an annotation under the panels.
    svg = res.files["svg"].read_text()
    assert "optimistic" in svg
    # Reproduce rebuilds the same notes (same bytes).
    rep = export.reproduce(res.files["json"], out=tmp_path / "again")
    assert set(rep.comparison.values()) == {"identical"}


def test_a_plain_checkpoint_gets_no_footnote(tmp_path):
    res = export.export_recipe("reconstruction", tmp_path / "fig", model="mini-mae", inputs=["chelsea"],
                               options={"ratio": 0.5, "seed": 1}, formats=("svg",))
    sc = json.loads(res.files["json"].read_text())
    assert not any("optimistic" in n for n in sc["notes"]) and sc["caption"] is None
    assert "Note:" not in res.files["svg"].read_text()


def test_a_word_map_export_carries_the_text_notes_the_fusion_app_shows(tmp_path):
    from explorer.data.scenes import make_scene
    from explorer.fusion import align, load_fusion_model

    model = load_fusion_model("mini-fusion", device="cpu")
    img = make_scene(10_000_003).image
    text = "a green zebra above a blue triangle"  # "zebra" is not in the model's vocabulary
    shown = align(model, img, text).notes  # what the app prints under the answer
    assert any("zebra" in n for n in shown)
    res = export.export_recipe("word_maps", tmp_path / "w", model=model, inputs=[img],
                               options={"text": text, "method": "attention", "word": 1}, formats=("svg",))
    sc = json.loads(res.files["json"].read_text())
    for n in shown:
        assert n in sc["notes"] and n.rstrip(".") in sc["caption"]
    assert "zebra" in res.files["svg"].read_text()
