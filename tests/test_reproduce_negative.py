"""`reproduce` in the failing direction: the "byte-identical" promise is only worth something if a figure that is
*not* the original is reported as different, and the command line says so with its exit status.

Every test here starts from one real export (mini-mae, a sample photo), then changes one thing: the recorded hash of a
file, one pixel of the original PNG, an option in the sidecar, the weights the sidecar names."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import explorer
from explorer import export
from explorer.export.inputs import file_sha256
from explorer.export.reproduce import ReproduceReport, _png_difference

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="static export needs Debian chromium (make sysdeps)")


@pytest.fixture(scope="module")
def model():
    return explorer.load_model("mini-mae", device="cpu")


@pytest.fixture(scope="module")
def original(tmp_path_factory, model):
    """One export (png + json only: the fastest formats) in its own folder."""
    out = tmp_path_factory.mktemp("orig")
    return export.export_recipe("reconstruction", out / "fig", model=model, inputs=["chelsea"],
                                options=dict(ratio=0.75, seed=3), preset="single-column", formats=["png"])


def _copy(original, dest: Path) -> Path:
    """A copy of the exported folder (figure, sidecar, stored inputs); returns the copied sidecar."""
    shutil.copytree(original.files["json"].parent, dest)
    return dest / original.files["json"].name


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "explorer", "reproduce", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_a_different_recorded_hash_is_reported_and_the_cli_fails(original, tmp_path, model):
    """Catches a comparison that always says "identical": the recorded SHA-256 of the PNG no longer matches."""
    sc_path = _copy(original, tmp_path / "c")
    sc = json.loads(sc_path.read_text())
    sc["files"]["png"]["sha256"] = "0" * 64
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    # the original file is still there and equal to the rebuilt one, so the pixel comparison finds no difference,
    # but the recorded hash differs: the report must not say identical
    assert not rep.identical
    assert rep.comparison["png"].startswith("differs")
    run = _cli(sc_path, "--out", tmp_path / "cli")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Some files differ" in run.stdout and "byte-identical" not in run.stdout


def test_one_changed_pixel_is_counted_and_located(original, tmp_path, model):
    """Catches a PNG comparison that ignores pixel values: one pixel of the original changed by 7 grey levels."""
    sc_path = _copy(original, tmp_path / "c")
    png = sc_path.with_suffix(".png")
    a = np.asarray(Image.open(png).convert("RGBA")).copy()
    y, x = a.shape[0] // 3, a.shape[1] // 5
    a[y, x, 1] = (int(a[y, x, 1]) + 7) % 256
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    png.write_bytes(buf.getvalue())
    sc = json.loads(sc_path.read_text())
    sc["files"]["png"]["sha256"] = file_sha256(png)
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    assert rep.comparison["png"] == "differs: 1 pixels, at most 7/255"
    assert rep.max_png_difference == 7
    assert not rep.identical and not rep.equivalent
    assert "Some files differ" in rep.summary()


def test_a_changed_option_in_the_sidecar_gives_a_different_figure(original, tmp_path, model):
    """The sidecar's options drive the rebuild: another masking ratio must not reproduce the recorded bytes."""
    sc_path = _copy(original, tmp_path / "c")
    sc = json.loads(sc_path.read_text())
    sc["recipe"]["options"]["ratio"] = 0.5
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    assert not rep.identical
    assert rep.comparison["png"].startswith("differs:") and rep.max_png_difference > 1
    # ...and the unchanged sidecar does reproduce (the difference above is the option's, not noise)
    assert export.reproduce(original.files["json"], out=tmp_path / "same", model=model).identical


def test_reproduce_never_overwrites_an_earlier_figure(original, tmp_path, model):
    first = export.reproduce(original.files["json"], out=tmp_path / "again", model=model)
    before = first.result.files["png"].read_bytes()
    second = export.reproduce(original.files["json"], out=tmp_path / "again", model=model)
    assert second.result.files["png"] != first.result.files["png"]
    assert second.result.files["png"].name == "again-2.png"
    with pytest.raises(FileExistsError):
        export.write_atomic(first.result.files["png"], b"x")
    assert first.result.files["png"].read_bytes() == before


def test_weights_other_than_the_recorded_ones_are_refused(original, tmp_path):
    sc_path = _copy(original, tmp_path / "c")
    sc = json.loads(sc_path.read_text())
    sc["provenance"]["model"]["weights_sha256"] = "f" * 64
    sc_path.write_text(json.dumps(sc))
    with pytest.raises(export.ReproduceError, match="different checkpoint"):
        export.reproduce(sc_path, out=tmp_path / "again")
    run = _cli(sc_path, "--out", tmp_path / "cli")
    assert run.returncode != 0 and "different checkpoint" in run.stderr
    # the user's word lets it go on: the pixels are the same (the weights are), but the embedded sidecar records
    # another hash, and the report says exactly that
    ok = export.reproduce(sc_path, out=tmp_path / "forced", check_weights=False)
    assert not ok.identical and ok.max_png_difference == 0
    assert ok.comparison["png"].startswith("differs: same pixels, other bytes")


def test_equivalence_is_one_grey_level_and_only_for_batched_figures(tmp_path):
    """``equivalent`` forgives at most one grey level, and only for a figure made by a batched forward."""
    fake = type("R", (), {"files": {"png": tmp_path / "x.png"}})()
    for batched, diff, expected in [(True, 1, True), (True, 2, False), (False, 1, False), (True, None, False),
                                    (True, 0, True)]:
        rep = ReproduceReport(fake, comparison={"png": "differs: 3 pixels, at most 1/255"}, batched=batched,
                              max_png_difference=diff)
        assert rep.equivalent is expected, (batched, diff)
        assert rep.identical is False
    assert ReproduceReport(fake, comparison={}).identical is False  # nothing compared is not "identical"
    assert ReproduceReport(fake, comparison={"png": "identical", "pdf": "identical"}).identical is True
    assert ReproduceReport(fake, comparison={"png": "identical", "pdf": "differs (x)"}).identical is False


def test_png_difference_reads_sizes_before_pixels(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (10, 6), (1, 2, 3)).save(a)
    Image.new("RGB", (6, 10), (1, 2, 3)).save(b)
    assert _png_difference(a, b) == ("differs: size 10x6 vs 6x10", None)
    Image.new("RGB", (10, 6), (1, 2, 3)).save(b)
    arr = np.asarray(Image.open(b)).copy()
    arr[0, 0] = (1, 2, 3 + 200)
    arr[5, 9] = (1, 9, 3)
    Image.fromarray(arr).save(b)
    assert _png_difference(a, b) == ("differs: 2 pixels, at most 200/255", 200)
    assert _png_difference(a, a)[1] == 0 and "same pixels" in _png_difference(a, a)[0]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    msg, d = _png_difference(tmp_path / "bad.png", b)
    assert msg.startswith("differs: the original cannot be read as a PNG") and d is None


def test_summary_names_each_file_its_state_the_versions_and_the_verdict(tmp_path):
    """The report a user reads: one line per compared format with its file, one per changed package version,
    then the verdict, which is one of three sentences."""
    files = {"png": tmp_path / "f.png", "pdf": tmp_path / "f.pdf"}
    fake = type("R", (), {"files": files})()
    same = ReproduceReport(fake, comparison={"png": "identical", "pdf": "identical"})
    assert same.summary().splitlines() == [f"png: {files['png']} — identical", f"pdf: {files['pdf']} — identical",
                                           "All files are byte-identical to the originals."]
    moved = ReproduceReport(fake, comparison={"png": "differs: 2 pixels, at most 1/255"}, batched=True,
                            max_png_difference=1, version_changes={"torch": ("2.1", "2.13"), "plotly": ("5", None)})
    lines = moved.summary().splitlines()
    assert lines[:3] == [f"png: {files['png']} — differs: 2 pixels, at most 1/255",
                         "version of torch: recorded 2.1, here 2.13", "version of plotly: recorded 5, here None"]
    assert len(lines) == 4 and lines[3].startswith("The original came from a batched forward (batch export)")
    assert "agree within rounding" in lines[3]
    other = ReproduceReport(fake, comparison={"png": "differs: 2 pixels, at most 9/255"}, batched=True,
                            max_png_difference=9)
    assert other.summary().splitlines()[-1] == "Some files differ from the originals (see above)."


def test_reproduce_from_an_exported_png_with_and_without_its_json(original, tmp_path, model):
    """A figure passed around alone: the PNG path finds the full sidecar beside it; without one, the sidecar embedded
    in the PNG rebuilds it, and the given file itself is the original compared against."""
    folder = _copy(original, tmp_path / "with").parent
    png = folder / original.files["png"].name
    rep = export.reproduce(png, out=tmp_path / "a", model=model)
    assert rep.identical and set(rep.comparison) == {"png"}
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(png, alone / png.name)
    for f in folder.iterdir():  # the stored inputs, not the sidecar
        if f.is_dir():
            shutil.copytree(f, alone / f.name)
    assert not (alone / png.with_suffix(".json").name).exists()
    rep = export.reproduce(alone / png.name, out=tmp_path / "b", model=model)
    assert rep.comparison == {"png": "identical"} and rep.identical
    arr = np.asarray(Image.open(alone / png.name).convert("RGB")).copy()
    arr[3, 3] = 255 - arr[3, 3]
    changed = alone / "changed.png"  # one pixel changed, the embedded sidecar kept
    meta = PngInfo()
    with Image.open(alone / png.name) as im:
        for k, v in im.info.items():
            if isinstance(v, str):
                meta.add_text(k, v)
    Image.fromarray(arr).save(changed, pnginfo=meta)
    rep = export.reproduce(changed, out=tmp_path / "c", model=model)
    assert rep.comparison["png"] == "differs: 1 pixels, at most " + f"{int(np.abs(arr[3, 3].astype(int) * 2 - 255).max())}/255"
    assert not rep.identical


def test_the_api_does_not_download_a_named_model_unless_asked(tmp_path, monkeypatch):
    """``reproduce`` itself (not only the command line) refuses a hub id that is not cached by default."""
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    from test_sidecar_untrusted import _sidecar, _write

    sc = _sidecar()
    sc["provenance"]["model"]["id"] = "someone/not-a-cached-model"
    path = _write(tmp_path, sc, "hub.json")
    with pytest.raises(export.ReproduceError, match="--allow-download"):
        export.reproduce(path)


# ---------------------------------------------------------------------------------------------------------------------
# Everything the sidecar records reaches the rebuilt figure: its style (height, letters, title), every format, the
# input stored beside it, the model options the user gives, and the batch flag.
@pytest.fixture(scope="module")
def styled(tmp_path_factory, model):
    """PNG + SVG with a title, no panel letters and a height of 2.3 in, from an array input (stored in ``inputs/``)."""
    out = tmp_path_factory.mktemp("styled")
    pixels = explorer.load_sample("coffee").pixels[::2, ::2].copy()
    return export.export_recipe("reconstruction", out / "styled", model=model, inputs=[pixels],
                                options=dict(ratio=0.5, seed=1), preset="single-column", formats=["png", "svg"],
                                height_in=2.3, letters=False, title="Coffee, half hidden")


def test_the_recorded_style_title_formats_and_stored_input_are_rebuilt(styled, tmp_path, model, monkeypatch):
    """From the PNG path (its JSON beside it), in another working directory: both formats are compared and
    byte-identical, the rebuilt files are named ``<stem>-reproduced``, and the input is found in the sidecar's own
    ``inputs/`` folder."""
    sc_path = _copy(styled, tmp_path / "copy")
    monkeypatch.chdir(tmp_path)  # the input is found beside the sidecar, never relative to the working directory
    rep = export.reproduce(sc_path.with_suffix(".png"), model=model)
    assert rep.comparison == {"png": "identical", "svg": "identical"}, rep.summary()
    assert rep.result.files["png"] == sc_path.with_name("styled-reproduced.png")
    assert rep.result.files["svg"] == sc_path.with_name("styled-reproduced.svg")
    svg = rep.result.files["svg"].read_text()
    assert "Coffee, half hidden" in svg
    # none of the recorded settings is a default, so a rebuild that dropped one would not be identical
    sc = json.loads(sc_path.read_text())
    assert (sc["style"]["height_in"], sc["style"]["letters"], sc["title"]) == (2.3, False, "Coffee, half hidden")


def test_overwrite_lets_a_reproduction_replace_its_own_earlier_output(original, tmp_path, model):
    sc_path = _copy(original, tmp_path / "c")
    first = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    assert export.reproduce(sc_path, out=tmp_path / "again", model=model).result.files["png"].name == "again-2.png"
    second = export.reproduce(sc_path, out=tmp_path / "again", model=model, overwrite=True)
    assert second.result.files["png"] == first.result.files["png"] and second.identical
    assert not (tmp_path / "again-3.png").exists()


def test_the_users_device_folder_download_and_model_choices_reach_the_model_loader(original, tmp_path, model, monkeypatch):
    """``reproduce`` hands the model loader exactly what the user chose (a CPU-only machine cannot show a device
    choice in the figure, so the hand-over itself is checked), and the sidecar's folder as the base."""
    import importlib

    R = importlib.import_module("explorer.export.reproduce")
    sc_path = _copy(original, tmp_path / "c")
    seen = {}

    def spy(spec, **kw):
        seen.update(kw, id=spec["id"])
        return model

    monkeypatch.setattr(R, "resolve_model", spy)
    export.reproduce(sc_path, out=tmp_path / "a", device="cuda:1", allow_download=True, model="mini-mae",
                     check_weights=False)
    assert seen == {"device": "cuda:1", "check": False, "base": sc_path.parent, "allow_download": True,
                    "model": "mini-mae", "id": "mini-mae"}


def test_a_batched_figure_is_reported_as_batched(original, tmp_path, model):
    sc_path = _copy(original, tmp_path / "c")
    assert export.reproduce(sc_path, out=tmp_path / "a", model=model).batched is False
    sc = json.loads(sc_path.read_text())
    sc["provenance"]["batched"] = True
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "b", model=model)
    # the PNG embeds the sidecar, which now says "batched": same pixels, other bytes, within the batched tolerance
    assert rep.batched is True and not rep.identical and rep.equivalent
    assert rep.comparison["png"].startswith("differs: same pixels") and rep.max_png_difference == 0


def test_a_bare_figure_and_too_many_inputs_are_refused_with_their_reason(original, tmp_path, model):
    sc_path = _copy(original, tmp_path / "c")
    with pytest.raises(export.ReproduceError, match=r"^2 inputs given, but the figure was made from 1\.$"):
        export.reproduce(sc_path, out=tmp_path / "a", model=model, inputs=[None, None])
    sc = json.loads(sc_path.read_text())
    sc["recipe"] = None
    bare = sc_path.with_name("bare.json")
    bare.write_text(json.dumps(sc))
    with pytest.raises(export.ReproduceError, match=r"bare\.json was exported from a bare figure \(no recipe\), so it "
                                                    r"cannot be rebuilt\.$"):
        export.reproduce(bare, out=tmp_path / "b", model=model)


def test_png_difference_messages_name_the_error_and_count_one_level_changes(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (8, 5), (10, 20, 30)).save(a)
    arr = np.asarray(Image.open(a)).copy()
    arr[1, 2, 0] += 1  # one grey level: still a changed pixel
    arr[4, 7, 2] -= 1
    Image.fromarray(arr).save(b)
    assert _png_difference(a, b) == ("differs: 2 pixels, at most 1/255", 1)
    Image.new("RGB", (8, 5), (10, 20, 30)).save(b, pnginfo=_text("note", "other bytes"))
    assert _png_difference(a, b) == ("differs: same pixels, other bytes (the embedded sidecar or the PNG encoder)", 0)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    msg, _ = _png_difference(tmp_path / "bad.png", b)
    assert msg == "differs: the original cannot be read as a PNG (UnidentifiedImageError)"


def _text(key: str, value: str) -> PngInfo:
    meta = PngInfo()
    meta.add_text(key, value)
    return meta


def test_the_batched_verdict_sentence_in_full(tmp_path):
    fake = type("R", (), {"files": {"png": tmp_path / "f.png"}})()
    rep = ReproduceReport(fake, comparison={"png": "differs: 2 pixels, at most 1/255"}, batched=True, max_png_difference=1)
    assert rep.summary().splitlines()[-1] == (
        "The original came from a batched forward (batch export); this one from a single forward. Float rounding "
        "differs between the two, so a few pixels differ by one grey level: the figures agree within rounding.")


def test_each_recorded_file_gets_its_own_verdict_and_the_versions_that_changed_are_named(styled, tmp_path, model):
    """A recorded file of a format the sidecar does not rebuild is said so (and the others are still compared); a
    non-PNG file that differs is named by its hashes, never opened as a PNG; a package whose version changed is listed
    with both versions, the others are not."""
    sc_path = _copy(styled, tmp_path / "c")
    sc = json.loads(sc_path.read_text())
    real_svg = sc["files"]["svg"]["sha256"]
    sc["files"] = {"pdf": {"name": "styled.pdf", "sha256": "1" * 64}, "png": sc["files"]["png"],
                   "svg": {"name": "styled.svg", "sha256": "0" * 64}}
    here = export.sidecar.versions()
    pkg = next(iter(sc["versions"]))
    sc["versions"][pkg] = "0.0.0-recorded"
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    got_svg = file_sha256(rep.result.files["svg"])
    assert got_svg == real_svg
    assert rep.comparison == {"pdf": "not rebuilt (not among the sidecar's formats)", "png": "identical",
                              "svg": f"differs (SHA-256 {got_svg[:12]}…, recorded {'0' * 12}…)"}
    assert rep.version_changes == {pkg: ("0.0.0-recorded", here.get(pkg))}


def test_a_recorded_file_that_links_out_of_the_folder_is_not_read(original, tmp_path, model):
    sc_path = _copy(original, tmp_path / "c")
    png = sc_path.with_suffix(".png")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(png.read_bytes())
    png.unlink()
    png.symlink_to(outside)
    sc = json.loads(sc_path.read_text())
    sc["files"]["png"]["sha256"] = "2" * 64
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    got = file_sha256(rep.result.files["png"])
    assert rep.comparison == {"png": f"differs (SHA-256 {got[:12]}…, recorded {'2' * 12}…)"}  # no pixel comparison


def test_the_output_name_is_checked_against_the_longest_suffix_before_anything_runs(original, tmp_path, model):
    from explorer.files import PART_OVERHEAD, name_max

    limit = name_max(tmp_path) - len(".json") - PART_OVERHEAD
    with pytest.raises(ValueError, match="Choose a shorter name"):
        export.reproduce(original.files["json"], out=tmp_path / ("n" * (limit + 1)), model=model)
    rep = export.reproduce(original.files["json"], out=tmp_path / ("n" * limit), model=model)
    assert rep.identical and rep.result.files["json"].name == "n" * limit + ".json"


def test_a_sidecar_without_versions_reproduces_and_names_no_change(original, tmp_path, model):
    sc_path = _copy(original, tmp_path / "c")
    sc = json.loads(sc_path.read_text())
    del sc["versions"]  # optional in the schema (hand-made or older sidecars)
    sc_path.write_text(json.dumps(sc))
    rep = export.reproduce(sc_path, out=tmp_path / "again", model=model)
    assert rep.version_changes == {} and rep.result.files["png"].is_file()
