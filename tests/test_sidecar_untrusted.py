"""Sidecars are untrusted input: figures are shared and `reproduce` runs on files from others.

Most checks run on sidecar dicts and small files directly (no rendering); two tests render (PNG only) to show the
happy path stays byte-identical and that a file outside the sidecar's folder needs the user's word.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

import explorer
from explorer import export
from explorer import files as xfiles
from explorer.export import figure as F
from explorer.export import inputs as I
from explorer.export.registry import OutsideFolderError, input_folder, input_path, options_for
from explorer.export.sidecar import SCHEMA, SidecarError, read_sidecar, validate

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="static export needs Debian chromium")


def _png_bytes(seed: int = 0, size=(24, 20)) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8))
    return buf.tobytes()


def _sidecar(**options) -> dict:
    """A valid sidecar of the ``reconstruction`` recipe on the shipped photo ``chelsea`` (as an export writes it)."""
    return {
        "schema": SCHEMA, "title": None,
        "recipe": {"name": "reconstruction", "options": options_for("reconstruction", options)},
        "provenance": {"model": {"id": "mini-mae", "model_type": "vit_mae", "weights_sha256": None, "device": "cpu",
                                 "dtype": "float32"},
                       "inputs": [{"sample": "chelsea", "name": "chelsea", "sha256": explorer.load_sample("chelsea").sha256}]},
        "style": {"preset": export.get_preset("double-column").as_dict(), "height_in": None, "letters": True,
                  "width_pt": 496.8, "height_pt": 150.0},
        "formats": ["png"], "notes": [], "versions": {"numpy": np.__version__},
    }


def _write(folder: Path, sc: dict, name: str = "fig.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(sc))
    return folder / name


def _secret(tmp_path: Path) -> tuple[Path, str]:
    """An image outside the figure's folder and its hash (as if the sidecar's author knew it)."""
    (tmp_path / "private").mkdir()
    secret = tmp_path / "private" / "secret.png"
    secret.write_bytes(_png_bytes(7))
    return secret, explorer.load_image(secret).sha256


# ---------------------------------------------------------------------------------------------- paths stay inside
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_an_input_outside_the_sidecars_folder_is_not_read(tmp_path, monkeypatch, how):
    secret, sha = _secret(tmp_path)
    figs = tmp_path / "shared" / "figs"
    (figs / "inputs").mkdir(parents=True)
    if how == "dotdot":
        rec = "../../private/secret.png"
    elif how == "absolute":
        rec = str(secret)
    else:
        (figs / "inputs" / "cat.png").symlink_to(secret)
        rec = "inputs/cat.png"
    sc = _sidecar()
    sc["provenance"]["inputs"] = [{"path": rec, "name": "secret.png", "sha256": sha}]
    side = _write(figs, sc)
    loaded = []
    monkeypatch.setattr(F, "_load_any", lambda *a, **k: loaded.append(a) or pytest.fail("the model must not load"))
    with pytest.raises(export.ReproduceError, match="outside the sidecar's folder|not found"):
        export.reproduce(side)
    assert not loaded and not list(figs.glob("fig-reproduced*"))
    with pytest.raises(export.ReproduceError, match="outside the sidecar's folder|not found"):
        I.resolve_input(sc["provenance"]["inputs"][0], figs)
    # the user's own word reads it: the file itself, or its folder
    assert I.resolve_input(sc["provenance"]["inputs"][0], figs, override=secret)[0].sha256 == sha
    if how != "symlink":
        assert I.resolve_input(sc["provenance"]["inputs"][0], figs, search=[secret.parent])[0].sha256 == sha


def test_inputs_need_their_recorded_hash(tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.png").write_bytes(_png_bytes(1))
    sc = _sidecar()
    sc["provenance"]["inputs"] = [{"path": "inputs/a.png", "name": "a.png"}]
    with pytest.raises(SidecarError, match=r"inputs\[0\] lacks 'sha256'"):
        read_sidecar(_write(tmp_path, sc))
    with pytest.raises(export.ReproduceError, match="no recorded SHA-256"):
        I.resolve_input({"path": "inputs/a.png"}, tmp_path)
    sc["provenance"]["inputs"] = [{"sample": "chelsea"}]
    with pytest.raises(SidecarError, match="lacks 'sha256'"):
        read_sidecar(_write(tmp_path, sc))
    # shipped sample names are names, not paths
    sc["provenance"]["inputs"] = [{"sample": "../../etc/passwd", "sha256": "0" * 64}]
    with pytest.raises(SidecarError, match="sample must be one of"):
        read_sidecar(_write(tmp_path, sc))
    good = I.resolve_input({"sample": "chelsea", "sha256": explorer.load_sample("chelsea").sha256}, tmp_path)
    assert good[1] == "chelsea"


@pytest.mark.parametrize("value", ["../outside.npz", "/tmp/outside.npz", "inputs/../../x.npz"])
def test_stored_arrays_and_clips_are_relative_paths_inside_the_folder(tmp_path, value):
    for recipe, opt in (("multimodal", "arrays"), ("video_frames", "video")):
        sc = _sidecar()
        sc["recipe"] = {"name": recipe, "options": {opt: value, f"{opt}_sha256": "a" * 64}}
        with pytest.raises(SidecarError, match=f"Option '{opt}' of recipe '{recipe}' must be a relative path"):
            read_sidecar(_write(tmp_path, sc))
    with input_folder(tmp_path), pytest.raises(OutsideFolderError):
        input_path(value)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "link.npz").symlink_to(tmp_path.parent)
    with input_folder(tmp_path), pytest.raises(OutsideFolderError):
        input_path("inputs/link.npz/x")  # a link inside that leads out


def test_a_stored_input_without_its_hash_is_refused():
    with pytest.raises(ValueError, match="without its SHA-256"):
        options_for("multimodal", {"arrays": "inputs/0123456789abcdef.npz"})
    with pytest.raises(ValueError, match="without its SHA-256"):
        options_for("video_frames", {"video": "inputs/0123456789abcdef.mp4"})
    with pytest.raises(Exception, match="no recorded SHA-256"):
        I.load_arrays("inputs/x.npz", None)


def _forge_sizes(data: bytes, size: int) -> bytes:
    """A zip whose first member *declares* ``size`` bytes uncompressed (local header and central directory)."""
    b = bytearray(data)
    local = b.find(b"PK\x03\x04")
    struct.pack_into("<I", b, local + 22, size)
    central = b.find(b"PK\x01\x02")
    struct.pack_into("<I", b, central + 24, size)
    return bytes(b)


def test_npz_and_npy_sizes_are_checked_before_anything_is_allocated(tmp_path):
    npy = io.BytesIO()
    np.save(npy, np.zeros((64, 64, 3), np.float32))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("rgb.npy", npy.getvalue())
    bomb = _forge_sizes(buf.getvalue(), 4_000_000_000)  # a zip bomb declares what it will inflate to
    with pytest.raises(ValueError, match=r"declares 3\.7 GiB once decompressed"):
        I.load_npz(bomb)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "b.npz").write_bytes(bomb)
    with input_folder(tmp_path), pytest.raises(ValueError, match="declares"):
        I.load_arrays(input_path("inputs/b.npz"), "a" * 64)
    # a .npy header that declares more than the data holds (np.load would allocate it first)
    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(fake, {"descr": "<f4", "fortran_order": False, "shape": (900_000_000,)})
    data = fake.getvalue() + b"\0" * 16
    with pytest.raises(ValueError, match="declares .* bytes of data but holds 16|above the"):
        I.load_npy(data)
    obj = io.BytesIO()
    np.lib.format.write_array_header_1_0(obj, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    with pytest.raises(ValueError, match="only plain numeric arrays"):
        I.load_npy(obj.getvalue() + b"\0" * 8)
    good = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = io.BytesIO()
    np.save(out, good)
    assert np.array_equal(I.load_npy(out.getvalue()), good)
    out = io.BytesIO()
    np.savez(out, a=good, b=good[0])
    got = I.load_npz(out.getvalue())
    assert list(got) == ["a", "b"] and np.array_equal(got["a"], good)


@pytest.mark.parametrize("name", ["/etc/passwd", "../fig.png", "sub/fig.png"])
def test_the_files_to_compare_are_plain_names(tmp_path, name):
    sc = _sidecar()
    sc["files"] = {"png": {"name": name, "sha256": "a" * 64}}
    with pytest.raises(SidecarError, match=r"files\['png'\]\.name must be a file name \(no folder\)"):
        read_sidecar(_write(tmp_path, sc))


# ---------------------------------------------------------------------------------------------- the schema
_BAD = {
    "min_side=40000": (lambda sc: sc["recipe"]["options"].update(min_side=40000), "Option 'min_side'.*in \\[0, 2048\\]"),
    "20,000 ratios": (lambda sc: sc["recipe"].update(name="reconstruction_grid", options={"ratios": [0.5] * 20000}),
                      "Option 'ratios'.*1 to 16 items"),
    "IG steps=20000": (lambda sc: sc["recipe"].update(name="attention_methods", options={"steps": 20000}),
                       "Option 'steps'.*in \\[1, 128\\]"),
    "word_maps IG steps": (lambda sc: sc["recipe"].update(name="word_maps", options={"method": "ig",
                                                                                      "method_options": {"steps": 20000}}),
                           "'method_options' of recipe 'word_maps'.steps must be an integer in \\[1, 64\\]"),
    "options a string": (lambda sc: sc["recipe"].update(options="ratio=0.5"), "recipe.options must be a dict"),
    "height_in=1e5": (lambda sc: sc["style"].update(height_in=1e5), "style.height_in must be a number in"),
    "dpi=100000": (lambda sc: sc["style"]["preset"].update(dpi=100000), "style.preset.dpi must be an integer"),
    "NaN ratio": (lambda sc: sc["recipe"]["options"].update(ratio=float("nan")), "Option 'ratio'"),
    "bool seed": (lambda sc: sc["recipe"]["options"].update(seed=True), "Option 'seed'"),
    "unknown top key": (lambda sc: sc.update(run="rm -rf /"), "sidecar has an unknown key 'run'"),
    "unknown option": (lambda sc: sc["recipe"]["options"].update(ratioo=0.5), "has no option 'ratioo'"),
    "unknown recipe": (lambda sc: sc["recipe"].update(name="nope"), "Unknown figure recipe 'nope'"),
    "format twice": (lambda sc: sc.update(formats=["png", "png"]), "lists a format twice"),
    "too many inputs": (lambda sc: sc["provenance"].update(inputs=sc["provenance"]["inputs"] * 17), "1 to 16|0 to 16"),
    "sample and path": (lambda sc: sc["provenance"]["inputs"][0].update(path="x.png"), "either a shipped sample or a path"),
    "newline in model id": (lambda sc: sc["provenance"]["model"].update(id="mini-mae\r\nx"), "model.id must be"),
    "clip as a path": (lambda sc: sc["recipe"].update(name="video_sampling", options={"clip": "/etc/passwd"}),
                       "Option 'clip'.*'generated:<seed>'"),
}


@pytest.mark.parametrize("case", list(_BAD))
def test_the_whole_sidecar_is_checked_before_anything_runs(tmp_path, case, monkeypatch):
    change, message = _BAD[case]
    sc = copy.deepcopy(_sidecar())
    change(sc)
    side = _write(tmp_path, sc)
    with pytest.raises(SidecarError, match=message):
        read_sidecar(side)
    monkeypatch.setattr(F, "_load_any", lambda *a, **k: pytest.fail("nothing may run"))
    with pytest.raises(SidecarError, match=message):
        export.reproduce(side)


def test_a_valid_sidecar_passes_and_every_recipe_default_fits_its_schema(tmp_path):
    assert read_sidecar(_write(tmp_path, _sidecar(ratio=0.5, manual=[1, 2])))["recipe"]["options"]["ratio"] == 0.5
    for name, r in export.RECIPES.items():
        assert set(r.schema) == set(r.defaults), name
        options_for(name, {})
    with pytest.raises(ValueError, match=r"Option 'min_side' of recipe 'reconstruction' must be an integer in \[0, 2048\]"):
        options_for("reconstruction", {"min_side": 40000})  # exports are held to the same bounds


def test_cli_reproduce_errors_are_messages_not_tracebacks(tmp_path):
    sc = _sidecar()
    sc["recipe"]["options"] = "not a dict"
    bad = _write(tmp_path, sc, "bad.json")
    sc = _sidecar()
    sc["files"] = {"png": {"name": "fig.png", "sha256": "a" * 64}}
    sc["provenance"]["model"]["id"] = "someone/not-a-cached-model"
    hub = _write(tmp_path, sc, "hub.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = ("import sys\nfrom explorer.__main__ import main\n"
            f"print('rc', main(['reproduce', {str(bad)!r}]), file=sys.stderr)\n"
            f"print('rc', main(['reproduce', {str(hub)!r}]), file=sys.stderr)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert lines.count("rc 2") == 2, run.stderr
    assert any("recipe.options must be a dict" in line for line in lines), run.stderr
    assert any("--allow-download" in line for line in lines), run.stderr
    assert "--allow-download" in subprocess.run([sys.executable, "-m", "explorer", "reproduce", "--help"],
                                                capture_output=True, text=True, env=env, timeout=120).stdout


# ---------------------------------------------------------------------------------------------- models
def test_a_model_id_is_not_downloaded_without_the_users_word(tmp_path, monkeypatch):
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr("explorer.models.hub.offline_reason", no_network)
    with pytest.raises(export.ReproduceError, match="--allow-download"):
        F.model_source("someone/not-a-cached-model", tmp_path)
    assert F.model_source("someone/not-a-cached-model", tmp_path, allow_download=True) == ("someone/not-a-cached-model", False)
    monkeypatch.setattr(F, "_hub_cached", lambda _id: True)  # in the local cache: loaded with the hub offline
    assert F.model_source("someone/cached-model", tmp_path) == ("someone/cached-model", True)
    assert F.model_source("mini-mae", tmp_path) == ("mini-mae", False)  # shipped


def test_model_folders_load_inside_the_folder_or_when_the_user_named_them(tmp_path):
    (tmp_path / "figs" / "model").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    base = tmp_path / "figs"
    assert F.model_source("model", base) == (str((base / "model").resolve()), False)
    assert F.model_source(str(base / "model"), base) == (str((base / "model").resolve()), False)
    for name in (str(tmp_path / "elsewhere"), "../elsewhere", "/etc", "~"):
        with pytest.raises(export.ReproduceError, match="not a folder inside the sidecar's folder.*--model"):
            F.model_source(name, base)
    F._trust_model(str(tmp_path / "elsewhere"))  # the user exported with it in this process
    assert F.model_source(str(tmp_path / "elsewhere"), base) == (str((tmp_path / "elsewhere").resolve()), False)


# ---------------------------------------------------------------------------------------------- readers: linear time
def test_embedded_sidecar_readers_take_linear_time(tmp_path):
    svg = tmp_path / "many.svg"
    svg.write_text("<svg>" + '<metadata id="explorer-sidecar">x' * 18_000 + "</svg>")  # 600 KB, no closer
    png = tmp_path / "many.png"
    chunk = struct.pack(">I", 1) + b"tEXt" + b"k" + b"\0\0\0\0"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk * 70_000 + struct.pack(">I", 0) + b"IEND" + b"\0" * 4)
    tail = b"trailer << /Info 1 0 R /Root 1 0 R >>\nstartxref\n12\n%%EOF\n"
    pdf = tmp_path / "nested.pdf"  # 800 KB: 2.3 s in pypdf, and growing faster than the file
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj " + b"<< /A " * 100_000 + b">>" * 100_000 + b"\nendobj\n" + tail)
    escapes = tmp_path / "escapes.pdf"
    escapes.write_bytes(b"%PDF-1.4\n1 0 obj << /explorer:sidecar (" + b"\\(" * 300_000 + b") >>\nendobj\n" + tail)
    unclosed = tmp_path / "unclosed.pdf"
    unclosed.write_bytes(b"%PDF-1.4\n1 0 obj << /explorer:sidecar (" + b"(x\\)" * 150_000 + b"\nendobj\n" + tail)
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "explorer-figure/1", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    for path in (svg, png, pdf, escapes, unclosed, deep):
        t = time.perf_counter()
        with pytest.raises(SidecarError):
            read_sidecar(path)
        assert time.perf_counter() - t < 2.0, path.name


def test_the_pdf_reader_reads_what_pypdf_writes(tmp_path):
    from pypdf import PdfReader, PdfWriter

    from explorer.export.sidecar import PDF_KEY, _pdf_text

    for text in ('{"a": "plain (x) \\\\ y\\n"}', '{"a": "naïve — ×"}', '{"a": "emoji 🐈 and ( unbalanced"}'):
        w = PdfWriter()
        w.add_blank_page(72, 72)
        w.add_metadata({PDF_KEY: text, "/Title": "t"})
        buf = io.BytesIO()
        w.write(buf)
        assert _pdf_text(buf.getvalue(), PDF_KEY) == text == str(PdfReader(io.BytesIO(buf.getvalue())).metadata[PDF_KEY])
    assert _pdf_text(b"%PDF-1.4 /explorer:sidecarX (no) /explorer:sidecar <FEFF0041 00e9>", PDF_KEY) == "A\u00e9"
    assert _pdf_text(b"%PDF-1.4 no entry", PDF_KEY) is None


# ---------------------------------------------------------------------------------------------- export names and files
def test_notebook_summary_escapes_names():
    res = export.ExportResult({"png": Path("figs/<img src=x onerror=alert(1)>.png")}, {}, ["<script>x</script>"])
    out = res._repr_html_()
    assert "<img" not in out and "<script>" not in out and "&lt;img src=x" in out


@pytest.mark.parametrize("name, message", [("a" * 230, "bytes long"), ("cat\nnews", "control character"),
                                           ("cat\u202egnp.exe", "control character"), ("a\\b", "path separator"),
                                           ("..", "not a file name")])
def test_export_names_are_checked_before_any_work(tmp_path, monkeypatch, name, message):
    monkeypatch.setattr(F, "render_files", lambda *a, **k: pytest.fail("nothing may render"))
    with pytest.raises(ValueError, match=message):
        export.export_figure(go.Figure(go.Heatmap(z=[[0, 1]])), tmp_path / name, formats=["png", "svg"])
    assert not any(tmp_path.iterdir())
    longest = "a" * (xfiles.name_max(tmp_path) - len(".json") - xfiles.PART_OVERHEAD)
    assert xfiles.check_name(longest, suffixes=[".png", ".json"], folder=tmp_path) == longest


def test_write_all_is_all_or_none(tmp_path, monkeypatch):
    a, b, c = tmp_path / "f.pdf", tmp_path / "f.png", tmp_path / "f.json"
    c.write_bytes(b"old json")
    with pytest.raises(FileExistsError):
        xfiles.write_all([(a, b"pdf"), (b, b"png"), (c, b"json")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"] and c.read_bytes() == b"old json"
    a.write_bytes(b"old pdf")
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if Path(dst) == c:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        xfiles.write_all([(a, b"new pdf"), (b, b"new png"), (c, b"new json")], overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert a.read_bytes() == b"old pdf" and c.read_bytes() == b"old json" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "f.pdf"]  # no temporary file left
    kept = tmp_path / "inputs" / "x.png"
    kept.parent.mkdir()
    kept.write_bytes(b"same")
    assert xfiles.write_all([(kept, b"same"), (b, b"png")], keep_existing={kept}) == [b]


# ---------------------------------------------------------------------------------------------- rendered (happy path)
@needs_chromium
def test_a_figure_of_a_file_elsewhere_reproduces_with_the_users_word(tmp_path):
    model = explorer.load_model("mini-mae", device="cpu")
    (tmp_path / "data").mkdir()
    photo = tmp_path / "data" / "cat.png"
    photo.write_bytes(_png_bytes(3, (40, 48)))
    res = export.export_recipe("reconstruction", tmp_path / "figs" / "cat", model=model, inputs=[str(photo)],
                               options=dict(ratio=0.5, seed=2), formats=["png"])
    with pytest.raises(export.ReproduceError, match="outside the sidecar's folder.*--input"):
        export.reproduce(res.files["json"])
    rep = export.reproduce(res.files["json"], input_dirs=[tmp_path / "data"])
    assert rep.identical, rep.summary()
    rep = export.reproduce(res.files["json"], inputs=[str(photo)], overwrite=True)
    assert rep.identical, rep.summary()
