"""Export layer: presets, the three formats re-read by independent tools, sidecars, reproduce,
atomic / no-overwrite writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

import explorer
from explorer import export
from explorer import files as xfiles

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="static export needs Debian chromium (make sysdeps)")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return explorer.load_model("mini-mae", device="cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("exp")
    res = export.export_recipe("reconstruction", out / "cat", model=model, inputs=["chelsea"],
                               options=dict(ratio=0.75, seed=3), preset="double-column")
    return res


def _pdfinfo_size(path) -> tuple[float, float]:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", out)
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("preset", ["single-column", "double-column", "nature-single"])
def test_pdf_page_is_the_preset_size_in_points(tmp_path, model, preset):
    res = export.export_recipe("reconstruction_grid", tmp_path / "g", model=model, inputs=["chelsea"],
                               options=dict(ratios=[0.5, 0.9]), preset=preset, formats=["pdf"])
    w, h = _pdfinfo_size(res.files["pdf"])
    p = export.PRESETS[preset]
    assert w == pytest.approx(p.width_in * 72, abs=0.01)
    assert h == pytest.approx(res.sidecar["style"]["height_pt"], abs=0.01)
    # Images are square panels: height follows from the content, not a fixed default.
    assert 0.25 * w < h < 0.8 * w


def test_pdf_fonts_are_embedded_truetype(exported):
    out = subprocess.run(["pdffonts", str(exported.files["pdf"])], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    assert rows, "the figure has text, so the PDF must list fonts"
    for row in rows:
        assert "Type" not in row[1:3] or row[2] != "3", f"Type 3 font: {row}"
        emb = row[-5]
        assert emb == "yes", f"font not embedded: {row}"
    assert any("LiberationSerif" in r[0] for r in rows), out


def test_png_has_dpi_and_the_preset_pixel_width(exported):
    with Image.open(exported.files["png"]) as im:
        dpi = im.info["dpi"]
        assert round(dpi[0]) == 300
        assert im.width == round(export.PRESETS["double-column"].width_in * 300)


def test_pdf_rendered_by_poppler_resembles_the_png(exported, tmp_path):
    subprocess.run(["pdftoppm", "-r", "300", "-png", "-singlefile", str(exported.files["pdf"]), str(tmp_path / "r")], check=True)
    a = np.asarray(Image.open(tmp_path / "r.png").convert("L"), np.float32)
    b = np.asarray(Image.open(exported.files["png"]).convert("L"), np.float32)
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    assert abs(a.shape[1] - b.shape[1]) <= 2 and abs(a.shape[0] - b.shape[0]) <= 2
    # Compare at 1/8 resolution: a one-pixel shift of 300 dpi detail must not count.
    def small(x):
        return np.asarray(Image.fromarray(x[:h, :w].astype(np.uint8)).resize((w // 8, h // 8), Image.BOX), np.float32)

    a, b = small(a), small(b)
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.95, corr
    assert np.abs(a - b).mean() < 10
    # A different figure must not resemble it: the check can fail.
    other = b[:, ::-1]
    assert np.corrcoef(a.ravel(), other.ravel())[0, 1] < corr - 0.2


def test_svg_parses_and_carries_the_sidecar(exported):
    root = ET.parse(exported.files["svg"]).getroot()
    assert root.tag.endswith("svg")
    assert float(root.get("width")) == pytest.approx(export.PRESETS["double-column"].width_px, abs=1)
    assert export.read_sidecar(exported.files["svg"]) == {k: v for k, v in exported.sidecar.items() if k != "files"}


def test_sidecar_records_what_regenerates_the_figure(exported, model):
    sc = json.loads(exported.files["json"].read_text())
    assert sc["recipe"]["name"] == "reconstruction"
    assert sc["recipe"]["options"]["ratio"] == 0.75 and sc["recipe"]["options"]["seed"] == 3
    assert sc["provenance"]["model"]["weights_sha256"] == model.weights_sha256
    assert sc["provenance"]["inputs"][0]["sha256"] == explorer.load_sample("chelsea").sha256
    assert sc["versions"]["torch"] and sc["versions"]["plotly"] and sc["versions"]["kaleido"]
    for fmt in ("pdf", "svg", "png"):
        embedded = export.read_sidecar(exported.files[fmt])
        assert embedded == {k: v for k, v in sc.items() if k != "files"}
    assert "CreationDate" not in subprocess.run(["pdfinfo", str(exported.files["pdf"])], capture_output=True, text=True).stdout


def test_reproduce_gives_identical_bytes(exported, tmp_path):
    rep = export.reproduce(exported.files["json"], out=tmp_path / "again")
    assert rep.comparison == {"pdf": "identical", "svg": "identical", "png": "identical"}
    for fmt in ("pdf", "svg", "png"):
        assert rep.result.files[fmt].read_bytes() == exported.files[fmt].read_bytes()


def test_reproduce_notices_a_different_input(exported, tmp_path):
    sc = json.loads(exported.files["json"].read_text())
    sc["provenance"]["inputs"][0] = {"path": str(tmp_path / "cat.png"), "sha256": sc["provenance"]["inputs"][0]["sha256"]}
    shutil.copy(explorer.data.samples.photo_path(explorer.SAMPLES["coffee"]), tmp_path / "cat.png")
    (tmp_path / "fig.json").write_text(json.dumps(sc))
    with pytest.raises(export.ReproduceError, match="not the same input"):
        export.reproduce(tmp_path / "fig.json")


def test_reproduce_cli_and_errors(exported, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "explorer", "reproduce", str(exported.files["png"]), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "byte-identical" in run.stdout
    bad = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(bad)
    run = subprocess.run([sys.executable, "-m", "explorer", "reproduce", str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2 and "not exported by explorer" in run.stderr


def test_same_name_never_overwritten_without_the_flag(tmp_path, model):
    fig = go.Figure(go.Heatmap(z=[[0, 1], [2, 3]]))
    a = export.export_figure(fig, tmp_path / "f.pdf", formats=["png"], preset="single-column")
    b = export.export_figure(fig, tmp_path / "f", formats=["png"], preset="single-column")
    assert a.files["png"].name == "f.png" and b.files["png"].name == "f-2.png"
    before = a.files["png"].read_bytes()
    fig2 = go.Figure(go.Heatmap(z=[[3, 2], [1, 0]]))
    c = export.export_figure(fig2, tmp_path / "f", formats=["png"], preset="single-column", overwrite=True)
    assert c.files["png"] == a.files["png"] and c.files["png"].read_bytes() != before
    with pytest.raises(FileExistsError):
        export.write_atomic(tmp_path / "f.png", b"x")
    assert c.files["png"].read_bytes() != b"x"


def test_a_killed_export_leaves_no_partial_file(tmp_path):
    # The child dies (SIGKILL) while writing the second file: every file is written under a temporary name first and
    # named only once all are written, so no file of the export has its name (all or none).
    code = textwrap.dedent(f"""
        import os, signal
        import plotly.graph_objects as go
        from explorer import export
        real = os.fsync
        calls = []
        def dying_fsync(fd):
            calls.append(fd)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(fd)
        os.fsync = dying_fsync
        export.export_figure(go.Figure(go.Heatmap(z=[[0, 1], [2, 3]])), {str(tmp_path / 'k')!r}, formats=["pdf", "png"])
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "k.pdf" not in names and "k.png" not in names and "k.json" not in names
    parts = [n for n in names if ".part-" in n]
    assert parts and all(n.startswith(".") for n in parts) and len(parts) == len(names)
    removed = export.remove_stale_parts(tmp_path)
    assert sorted(p.name for p in removed) == parts


def test_free_stem_skips_every_taken_suffix(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    assert xfiles.free_stem(tmp_path / "x", [".pdf", ".json"]).name == "x-2"
    assert xfiles.free_stem(tmp_path / "x", [".pdf", ".json"], overwrite=True).name == "x"


def test_paper_style_fonts_letters_and_safe_colours():
    from explorer.viz.paper import paper_style
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=["A", "B", ""])
    fig.add_trace(go.Heatmap(z=[[0, 1]], colorscale="Jet", name="attention"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=[[0, 1]], colorscale="Viridis", showscale=False), row=1, col=2)
    fig.add_trace(go.Scatter(y=[1, 2]), row=1, col=3)
    p = export.get_preset("single-column")
    out, notes = paper_style(fig, p)
    assert out.layout.width == pytest.approx(3.3 * 96)
    assert out.layout.font.size == pytest.approx(8 * 96 / 72)
    assert len(notes) == 1 and "jet" in notes[0]
    from explorer.viz.paper import _scale_name
    assert _scale_name(out.data[0].colorscale) == "viridis" and _scale_name(out.data[1].colorscale) == "viridis"
    texts = [a.text for a in out.layout.annotations]
    assert any(t.endswith("A") and "<b>a</b>" in t for t in texts) and any("<b>b</b>" in t and t.endswith("B") for t in texts)
    assert "<b>c</b>" in texts  # the untitled panel gets its own letter
    assert out.data[0].colorbar.title.text == "attention"  # colour bars are always labelled


def test_unknown_preset_format_and_recipe_are_clear(tmp_path, model):
    fig = go.Figure()
    with pytest.raises(ValueError, match="Unknown preset"):
        export.export_figure(fig, tmp_path / "a", preset="cvpr-quarter")
    with pytest.raises(ValueError, match="Unknown format"):
        export.export_figure(fig, tmp_path / "a", formats=["jpg"])
    with pytest.raises(ValueError, match="Unknown figure recipe"):
        export.export_recipe("nope", tmp_path / "a", model=model, inputs=["chelsea"])
    with pytest.raises(ValueError, match="has no option"):
        export.export_recipe("reconstruction", tmp_path / "a", model=model, inputs=["chelsea"], options={"ratioo": 0.5})
    assert not any(tmp_path.iterdir())


def test_attention_figures_export_and_reproduce(tmp_path, model):
    for name, opts in (("attention_grid", dict(query="cls", layers=[0, 5])), ("attention_methods", dict(layer=2, steps=8))):
        res = export.export_recipe(name, tmp_path / name, model=model, inputs=["coffee"], options=opts,
                                   preset="double-column", formats=["png", "svg"])
        rep = export.reproduce(res.files["json"])
        assert rep.identical, rep.summary()


# ---------------------------------------------------------------------------- input copies: only when the figure is written
def _png_upload(seed: int, name: str = "mine.png"):
    import cv2

    ok, buf = cv2.imencode(".png", (np.random.default_rng(seed).random((40, 48, 3)) * 255).astype(np.uint8))
    return ({"name": name, "type": "image/png", "size": len(buf), "content": memoryview(buf.tobytes())},)


def _stored(folder: Path) -> set[str]:
    return {p.name for p in (folder / "inputs").iterdir()} if (folder / "inputs").is_dir() else set()


@pytest.mark.parametrize("how", ["upload", "attached arrays"])
def test_inputs_are_stored_only_after_the_overwrite_decision(tmp_path, model, how):
    """An existing export and overwrite off: refused, no new inputs/ file; overwrite on: written with its input."""
    opts = dict(ratio=0.5, seed=1)
    if how == "upload":
        call = lambda seed, **kw: export.export_recipe("reconstruction", tmp_path / "fig", model=model,  # noqa: E731
                                                       inputs=[_png_upload(seed)], options=opts, formats=["png"], **kw)
    else:
        rgbd = explorer.load_multimodal_model("mini-rgbd-mae", device="cpu")
        rng = np.random.default_rng(0)
        arrays = lambda seed: {"rgb": np.random.default_rng(seed).random((64, 64, 3)).astype(np.float32),  # noqa: E731
                               "depth": rng.uniform(1, 4, (64, 64)).astype(np.float32)}
        call = lambda seed, **kw: export.export_recipe("multimodal", tmp_path / "fig", model=rgbd, inputs=[],  # noqa: E731
                                                       options=dict(budgets={"rgb": 16, "depth": 0}),
                                                       attach={"arrays": arrays(seed)}, formats=["png"], **kw)
    first = call(1)
    before = _stored(tmp_path)
    png = first.files["png"].read_bytes()
    assert len(before) == 1
    with pytest.raises(FileExistsError, match="not overwritten.*nothing was written"):
        call(2, rename=False)
    assert _stored(tmp_path) == before and first.files["png"].read_bytes() == png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.json", "fig.png", "inputs"]
    again = call(2, overwrite=True)
    assert again.files["png"] == first.files["png"] and again.files["png"].read_bytes() != png
    added = _stored(tmp_path) - before
    assert len(added) == 1
    rec = again.sidecar["provenance"]["inputs"][0]["path"] if how == "upload" else again.sidecar["recipe"]["options"]["arrays"]
    assert rec == "inputs/" + added.pop()
    assert export.reproduce(again.files["json"], out=tmp_path / "re").identical


def test_a_failed_write_leaves_no_new_input(tmp_path, model, monkeypatch):
    real = xfiles._write_part

    def failing(path, data, durable=True):
        if Path(path).suffix == ".json":  # the last file of the export: its figure and input were already staged
            raise OSError(28, "No space left on device")
        return real(path, data, durable)

    monkeypatch.setattr(xfiles, "_write_part", failing)
    with pytest.raises(OSError, match="No space"):
        export.export_recipe("reconstruction", tmp_path / "fig", model=model, inputs=[_png_upload(3)], formats=["png"])
    assert _stored(tmp_path) == set() and not (tmp_path / "fig.png").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporary file either


def test_unknown_attachment_is_refused_before_anything_runs(tmp_path, model):
    with pytest.raises(ValueError, match="Cannot attach an input as 'clip'"):
        export.export_recipe("reconstruction", tmp_path / "x", model=model, inputs=["chelsea"], attach={"clip": b"x"})
    with pytest.raises(ValueError, match="has no option 'video'"):
        export.export_recipe("reconstruction", tmp_path / "x", model=model, inputs=["chelsea"], attach={"video": b"x"})
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_renders_with_its_own_browser():
    """After the parent has started kaleido's server, a forked child (a DataLoader worker, multiprocessing's
    default on Linux, a mutation-test runner) must start its own: the parent's server thread did not survive the
    fork, and asking it would wait forever."""
    import multiprocessing as mp

    import plotly.graph_objects as go

    from explorer.export.render import render_raw

    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]), layout=dict(width=120, height=90))
    assert render_raw(fig, "png")[:8] == b"\x89PNG\r\n\x1a\n"  # the parent's server is running now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_render_in_child, args=(q,))
    child.start()
    child.join(120)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child's export hung on the parent's kaleido server"
    assert child.exitcode == 0 and q.get(timeout=5) == b"\x89PNG\r\n\x1a\n"
    assert render_raw(fig, "png")[:8] == b"\x89PNG\r\n\x1a\n"  # and the parent's server still answers


def _render_in_child(q) -> None:
    import plotly.graph_objects as go

    from explorer.export.render import render_raw

    q.put(render_raw(go.Figure(go.Bar(y=[1, 2]), layout=dict(width=100, height=80)), "png")[:8])


def test_a_browser_that_does_not_close_does_not_keep_the_process_alive(tmp_path):
    """CI once saw `python -m explorer reproduce` print its report and then never exit: kaleido's close
    joins its thread without a limit. Here Chromium's close is made to hang; the process must still end
    soon after, with its browser killed."""
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "hang.py"
    script.write_text(
        "import threading, kaleido, psutil, plotly.graph_objects as go\n"
        "from explorer.export import render\n"
        "render.STOP_TIMEOUT_S = 2.0\n"
        "render.render_raw(go.Figure(), 'png')\n"
        "print(*[c.pid for c in psutil.Process().children(recursive=True) if 'chrom' in c.name().lower()], flush=True)\n"
        "kaleido._global_server.close = lambda **kw: threading.Event().wait()\n")
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stderr
    pids = [int(p) for p in run.stdout.split()]
    assert pids, "the browser was not started as a child of the process"
    assert took < 60, f"the process took {took:.0f} s to exit"
    assert "did not close in time" in run.stderr
    time.sleep(0.5)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"browser processes left running: {alive}"
