"""The notebook cells that run only when a published checkpoint file is named (``MULTIMAE_WEIGHTS``,
``AUDIOMAE_WEIGHTS``): run here on the small random checkpoints in the authors' layouts (tests/fixtures/), since the
notebook test itself has no such file and sees only their "skipped" line."""

from __future__ import annotations

from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

ROOT = Path(__file__).parents[1]
FIX = Path(__file__).parent / "fixtures"


def _cell(notebook: str, marker: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    (src,) = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source and "os.environ" in c.source]
    return src


def _run(src: str, env: str, path: Path, monkeypatch, **names) -> tuple[list[str], list, list]:
    printed, shown, displayed = [], [], []
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self))
    monkeypatch.setenv(env, str(path))
    exec(src, {**names, "print": lambda *a, **k: printed.append(" ".join(map(str, a))), "display": displayed.append})
    return printed, shown, displayed


def test_notebook_07_runs_its_published_multimae_cell_on_a_file(monkeypatch):
    from explorer.multimodal import load_multimodal_model, reconstruct_multimodal
    from explorer.multimodal.inputs import sample_inputs
    from explorer.viz.multimodal import multimodal_figure
    from explorer.widgets.multimodal_app import MultiMAEApp

    printed, shown, displayed = _run(
        _cell("07_rgbd_mae.ipynb", "MULTIMAE_WEIGHTS"), "MULTIMAE_WEIGHTS", FIX / "multimae" / "multimae_tiny.pth",
        monkeypatch, load_multimodal_model=load_multimodal_model, reconstruct_multimodal=reconstruct_multimodal,
        sample_inputs=sample_inputs, multimodal_figure=multimodal_figure, MultiMAEApp=MultiMAEApp)
    text = "\n".join(printed)
    assert "133 COCO panoptic classes" in text and "depth: any unit" in text
    assert "depth (0/16 visible): rmse" in text  # depth predicted from RGB alone, scored against the motorcycle's
    assert len(shown) == 1 and len(displayed) == 1 and displayed[0].adapter.model_id.endswith("multimae_tiny.pth")


def test_the_cells_say_they_skipped_without_a_file():
    assert 'print("skipped: MULTIMAE_WEIGHTS is not set' in _cell("07_rgbd_mae.ipynb", "MULTIMAE_WEIGHTS")
    assert 'print("skipped: AUDIOMAE_WEIGHTS is not set' in _cell("08_audio_visual_mae.ipynb", "AUDIOMAE_WEIGHTS")


@pytest.mark.parametrize("decoder", ["swin", "global"])
def test_notebook_08_runs_its_published_audiomae_cell_on_a_file(monkeypatch, decoder):
    from explorer.multimodal import load_multimodal_model, reconstruct_multimodal
    from explorer.viz.multimodal import multimodal_figure
    from explorer.widgets.multimodal_app import MultiMAEApp

    printed, shown, displayed = _run(
        _cell("08_audio_visual_mae.ipynb", "AUDIOMAE_WEIGHTS"), "AUDIOMAE_WEIGHTS", FIX / "audiomae" / f"{decoder}_small.pth",
        monkeypatch, load_multimodal_model=load_multimodal_model, reconstruct_multimodal=reconstruct_multimodal,
        multimodal_figure=multimodal_figure, MultiMAEApp=MultiMAEApp)
    text = "\n".join(printed)
    assert f"Audio-MAE {decoder} decoder" in text and "norm_pix_loss" in text
    rows = [line for line in printed if "20% visible:" in line]
    assert [r.split()[0] for r in rows] == ["random", "time", "frequency", "time-frequency"]
    assert len({r.split(":")[1] for r in rows}) == 4  # four masks, four different errors
    assert len(shown) == 1 and len(displayed) == 1 and displayed[0].adapter.task == "audio"
