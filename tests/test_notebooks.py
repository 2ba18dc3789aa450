"""Every notebook in notebooks/ runs end to end on the offline mini models (a failing cell fails the suite)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: App mode (Voila, `make app`): a title and one app each, written by tools/build_notebooks.py from tools/notebooks_apps.py
APP_NOTEBOOKS = sorted((ROOT / "notebooks" / "apps").glob("*.ipynb"))

#: Output a researcher should never have to read: a debugger's view of the numbers instead of the numbers.
DEBUGGER_LIKE = {
    "a numpy scalar repr": re.compile(r"np\.(?:float|int|uint|complex)\d+\(|np\.(?:bool_|str_)\("),
    "a float printed with more than 6 decimals": re.compile(r"(?<![\w.])-?\d+\.\d{7,}(?![\w.])"),
    "a progress bar or a retry loop": re.compile(r"Writing model shards|Retrying|\d+%\|"),
}
#: ... and in printed text (a cell's own print calls) also raw HTML and Python reprs of containers.
DEBUGGER_LIKE_PRINTED = {
    "raw HTML": re.compile(r"</?(?:div|span|b|br|p|ul|li|table|code)\b[^>]*>"),
    "a Python tuple / list / dict of strings": re.compile(r"[\[({]'"),
    "a tuple of tuples": re.compile(r"\(\(-?\d"),
}
#: A cell that loads a model by Hugging Face id ("organisation/name" literal and a load_* call).
HUB_ID = re.compile(r"""["'][A-Za-z0-9][\w.-]*/[\w.-]+["']""")
#: Seconds a hub-id cell may take offline: generous, this guards fast failure (no waiting on an unreachable hub).
HUB_CELL_S = 5.0


def _run(path: Path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def debugger_like(nb) -> list[str]:
    """``"cell 10: a numpy scalar repr: …np.float32(0.45)…"`` for every such output of an executed notebook."""
    found = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            printed = o.get("text", "") if o.get("output_type") == "stream" else ""
            shown = str(o.get("data", {}).get("text/plain", ""))
            for text, checks in ((printed, DEBUGGER_LIKE | DEBUGGER_LIKE_PRINTED), (shown, DEBUGGER_LIKE)):
                for what, rx in checks.items():
                    for m in rx.finditer(text):
                        found.append(f"cell {i}: {what}: …{text[max(0, m.start() - 30): m.end() + 30]}…")
    return found


def hub_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "load_" in c.source and HUB_ID.search(c.source)]


def _seconds(cell) -> float:
    ex = cell.metadata["execution"]  # written by nbclient (record_timing)
    start, end = (datetime.fromisoformat(ex[k].replace("Z", "+00:00")) for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def hub_cell_problems(nb, bound: float = HUB_CELL_S) -> list[str]:
    """Hub-id cells that waited on the hub (over ``bound`` s) or explained themselves in more than one line each
    (a cut message without the way to get the checkpoint, or a retry log)."""
    problems = []
    for i in hub_cells(nb):
        cell = nb.cells[i]
        if _seconds(cell) > bound:
            problems.append(f"cell {i} ({HUB_ID.search(cell.source).group()}) took {_seconds(cell):.1f} s (> {bound:g} s)")
        text = "".join(o.get("text", "") for o in cell.get("outputs", []))
        for line in text.splitlines():
            if ("skipped" in line or "Could not load" in line) and ("hf download" not in line or line.endswith("...")):
                problems.append(f"cell {i}: {line[:160]!r} does not say how to get the checkpoint in one line")
    return problems


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", ""))
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_hub_id_cells_are_found():
    """The timing check below has cells to check: the notebooks that try real checkpoints by id."""
    with_hub = {p.name[:2] for p in NOTEBOOKS if hub_cells(nbformat.read(p, as_version=4))}
    assert {"01", "02", "03", "04", "06"} <= with_hub, with_hub


def test_notebooks_are_stored_without_outputs():
    for p in NOTEBOOKS + APP_NOTEBOOKS:
        code = [c for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
        assert not [c for c in code if c.get("outputs") or c.get("execution_count")], p.name


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_mae_masking.ipynb", "03_attention_maps.ipynb", "04_cross_modal_alignment.ipynb",
            "05_export_figures.ipynb"} <= names


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = _run(path)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # No warnings either (e.g. a widget message that fails to serialise shows up here only).
    stderr = [o["text"] for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not [t for t in stderr if re.search(r"Warning|Error|Traceback", t)], stderr
    # Every code cell ran (an execution count on each) and the widgets / figures rendered.
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    mimes = {k for c in code for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "application/vnd.plotly.v1+json" in mimes or "application/vnd.jupyter.widget-view+json" in mimes
    # Output reads like a tutorial, not a debugger; hub ids fail at once offline and say so in one line.
    assert not debugger_like(nb), "\n".join(debugger_like(nb))
    assert not hub_cell_problems(nb), "\n".join(hub_cell_problems(nb))
    text = _text(nb)
    if path.name == "01_quickstart.ipynb":
        assert "147 of 196 patches hidden" in text  # 75% of the 14x14 grid, exactly
        assert "refused:" in text  # the bad-input cell explained itself
        assert "0.5" in text
    if path.name == "03_attention_maps.ipynb":
        assert "skipped: MAE_WEIGHTS is not set" in text  # tests/test_timm_vit.py runs that cell with a file
    if path.name == "02_mae_masking.ipynb":
        assert text.count("nested: True") == 3 and "nested: False" not in text
    if path.name == "04_cross_modal_alignment.ipynb":
        assert "| cross-attention | match logit" in text
        assert re.search(r"pointing game, relevance : \d/\d object words peak on their object", text)
        assert "-> refused: The text is empty" in text and "were dropped" in text and "read as [unk]: 🙂" in text
        assert "this is an image-only model" in text
        assert text.count("offline: skipped '") == 3  # offline: the hub ids explain themselves, one line each
        # the deletion AUC's sign and units are explained where it is printed
        assert "negative = the logit fell below 0; lower = falls sooner = more faithful" in text
        assert re.search(r"random map\s+0\.\d+", text) and re.search(r"relevance\s+0\.\d+", text)
    if path.name == "06_video_mae.ipynb":
        assert "patches hidden in every time step: 75%" in text and "running-cell" in text
        assert re.search(r"tube\s+model [\d.]+ dB \| nearest visible frame [\d.]+ dB", text)
        assert text.count("refused:") == 3 and "offline: skipped 'MCG-NJU/videomae-base'" in text
        assert "uniform: [7, 22, 37, 52, 67, 82, 97, 112] at [0.88, 2.75" in text
        assert "strided: [45, 49, 53, 57, 61, 65, 69, 73]" in text
        assert "[0, 4, 8, 11, 11, 11, 11, 11] | padded (the last frame repeats): the clip has 12 frames" in text
        assert re.search(r"real video, tube   75%: model [\d.]+ dB \| Telea [\d.]+ dB \| nearest visible frame [\d.]+ dB "
                         r"\| spread [\d.]+ over 8 clips", text)
        # the introduction carries the model card's verdict on real video, word for word
        from explorer.training.video_card import verdict
        metrics = json.loads((ROOT / "data" / "models" / "mini-video-mae" / "metrics.json").read_text())
        assert verdict(metrics) in nb.cells[0].source
    if path.name == "05_export_figures.ipynb":
        assert "All files are byte-identical to the originals." in text
        assert "PDF page: 496.8 x" in text and "LiberationSerif" in text
        assert "3 exported, 0 already done (skipped), 1 failed" in text and "broken.jpg" in text
        assert "r75_reconstruction.png" in text
        assert re.search(r"astronaut-mini-mae-manual-\d+\.pdf then astronaut-mini-mae-manual-\d+-2\.pdf", text)
    if path.name == "07_rgbd_mae.ipynb":
        assert re.search(r"depth \(0/64 visible\): rmse [\d.]+, absrel [\d.]+", text)
        assert "budget split by Dirichlet(1)" in text and "— RGB + 10% depth" in text
        assert re.search(r"depth visible  10%: model AbsRel [\d.]+ \| inpainting [\d.]+", text)
        assert "handled: depth: 24 patches are mostly unknown and never shown" in text
        assert text.count("refused:") == 5 and "not in transformers" in text
        assert "skipped: MULTIMAE_WEIGHTS is not set" in text  # tests/test_notebook_published_cells.py runs it on a file
    if path.name == "09_uniformer.ipynb":
        assert text.count("inside the theoretical field: 1.000") == 4  # gradients never leave the composed kernels
        assert "patch merge: 4 stage-4 tokens from 16 stage-3 tokens, 4 each" in text
        assert re.search(r"stage 3 global \(block 3/3, token \dx\d of 4x4\): attends most to token", text)
        assert "stage-1 kernels 16x5x5x5, effective field over 8x64x64" in text
        assert "skipped: UNIFORMER_WEIGHTS is not set" in text
        assert "All files are byte-identical to the originals." in text and text.count("refused:") == 4
    if path.name == "10_interventions.ipynb":
        assert "nothing ablated: Δ +0.000 dB" in text
        assert re.search(r"most important head: L\d H\d, Δ masked-patch PSNR [-+][\d.]+ dB", text)
        assert "every fusion head patched: 100% restored" in text
        assert re.search(r"head L\d H\d restores \d+%", text) and re.search(r"pointing game \d+% → \d+%", text)
        # faithfulness with intervals: every fill's row, the ranking per fill, per-level randomisation verdicts
        assert re.search(r"random map\s+[\d.]+ \(not distinguishable\)", text)
        assert "(deletion AUC, best first)" in text and "hidden from the encoder (an MAE simply does not see them):" in text
        assert text.count("Spearman to the original") >= 4 and "at most" not in text
        assert "Shapley values over modality masking: image" in text
    if path.name == "08_audio_visual_mae.ipynb":
        assert re.search(r"audio rmse_db model [\d.]+ \| training mean [\d.]+", text)
        assert "2 channels mixed down to mono" in text and "frames at 8 fps from 0.00 s" in text
        assert text.count("refused:") == 5 and "handled: the sound lasts 0.25 s" in text
        assert "skipped: AUDIOMAE_WEIGHTS is not set" in text  # tests/test_notebook_published_cells.py runs it on files


def _app_sources() -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_apps", ROOT / "tools" / "notebooks_apps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: module.app_cells(name) for name in module.APPS}


def test_app_notebooks_are_the_built_ones():
    """notebooks/apps/ holds exactly what tools/build_notebooks.py writes: per app a one-line title and the app."""
    built = _app_sources()
    assert {p.stem for p in APP_NOTEBOOKS} == set(built) >= {"mae", "attention", "alignment", "video", "rgbd", "audio_visual"}
    for p in APP_NOTEBOOKS:
        cells = [(c.cell_type, c.source) for c in nbformat.read(p, as_version=4).cells]
        assert cells == [("markdown" if k == "md" else "code", t.strip("\n")) for k, t in built[p.stem]], (
            f"{p.name} differs from tools/notebooks_apps.py: run python tools/build_notebooks.py")
        (_, title), (_, code) = cells
        assert title.startswith("# ") and "\n" not in title and "$" not in title, title  # one line, no maths (no MathJax)
        assert "App(" in code, code


@pytest.mark.notebook
def test_app_notebooks_run():
    """Every app notebook shows its app on the offline mini models, without errors or warnings.  Cheaply: all of them
    run in one kernel (one start, one import of explorer), each notebook's cells in turn."""
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    owner = []
    for p in APP_NOTEBOOKS:
        for cell in nbformat.read(p, as_version=4).cells:
            book.cells.append(cell)
            owner.append(p.name)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks" / "apps")}}).execute()
    for name, cell in zip(owner, book.cells):
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        assert cell.get("execution_count"), name
        assert not [o for o in outputs if o.get("output_type") == "error"], (name, outputs)
        stderr = [o["text"] for o in outputs if o.get("name") == "stderr"]
        assert not [t for t in stderr if re.search(r"Warning|Error|Traceback", t)], (name, stderr)
        mimes = {k for o in outputs for k in o.get("data", {})}
        assert "application/vnd.jupyter.widget-view+json" in mimes, (name, mimes)  # the app itself, nothing else
        assert not [o for o in outputs if o.get("output_type") == "stream"], (name, outputs)
