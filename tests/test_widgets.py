"""The MAE app: slider served from cache, every bad input shown in the widget, kernel alive."""

import datetime
import io

import cv2
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

import explorer
from explorer.widgets.mae_app import MAEApp

from _tiny import save_tiny_mae


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_mae(tmp_path_factory.mktemp("app-model"), image_size=64)


@pytest.fixture()
def app(tiny_dir):
    return MAEApp(model=str(tiny_dir), image="chelsea", ratio=0.75)


def upload_value(data: bytes, name="x.png"):
    return ({"name": name, "type": "image/png", "size": len(data), "last_modified": datetime.datetime.now(),
             "content": memoryview(data)},)


def png_bytes(arr) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def is_error(app) -> bool:
    return "⚠" in app.status.value


def test_slider_updates_figure_from_cache(app):
    assert not is_error(app) and len(app.fig.data) == 5
    before = [im.source for im in app.fig.layout.images]
    misses = app.cache.misses
    app.ratio.value = 0.3
    after = [im.source for im in app.fig.layout.images]
    assert before[0] == after[0]  # the original does not change
    assert before[1] != after[1] and before[2] != after[2]  # masked input and reconstruction do
    assert app.cache.misses == misses  # no new forward: served from the cached sweep
    assert app.result.hidden_fraction == pytest.approx(0.3, abs=1 / 64)
    assert "30% hidden" in app.fig_caption.value
    assert app.last_update_ms < 1000
    # The error map is blank (None, JSON-safe) exactly on visible patches, numbers on hidden ones.
    z = app.fig.data[4].z
    blank = np.array([[v is None for v in row] for row in z])
    np.testing.assert_array_equal(blank, ~app.result.mask)
    hidden_vals = np.array([v for row in z for v in row if v is not None])
    np.testing.assert_allclose(hidden_vals, app.result.patch_error[app.result.mask], rtol=1e-6)


def test_seed_and_strategy_change_the_mask(app):
    m0 = app.result.mask.copy()
    app.seed.value = 5
    assert not np.array_equal(m0, app.result.mask) and app.result.spec.seed == 5
    app.strategy_tb.value = "grid"
    assert app.result.spec.strategy == "grid" and app.result.mask.sum() == m0.sum()


def test_click_paints_a_manual_mask(app):
    class Points:
        xs, ys = [3.0], [3.0]  # pixel (3, 3) → patch (0, 0)

    was = bool(app.result.mask[0, 0])
    hidden_before = int(app.result.mask.sum())
    app._on_click(app.fig.data[0], Points(), None)
    assert app.strategy_tb.value == "manual" and app.ratio.disabled
    assert bool(app.result.mask[0, 0]) != was
    assert abs(int(app.result.mask.sum()) - hidden_before) == 1  # the rest of the mask was kept
    app.strategy_tb.value = "random"
    assert not app.ratio.disabled and app.result.spec.strategy == "random"


def _jpeg_with_orientation(orientation: int) -> bytes:
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


GOOD_UPLOADS = {
    "16-bit": png_bytes(np.full((40, 50, 3), 30000, np.uint16)),
    "grayscale": png_bytes(np.full((40, 50), 90, np.uint8)),
    "rgba": png_bytes(np.dstack([np.full((40, 50, 3), 10, np.uint8), np.full((40, 50), 128, np.uint8)])),
    "exif-rotated": _jpeg_with_orientation(6),
}


@pytest.mark.parametrize("kind", list(GOOD_UPLOADS))
def test_unusual_but_valid_uploads_work(app, kind):
    app.upload.value = upload_value(GOOD_UPLOADS[kind])
    assert not is_error(app), app.status.value
    assert app.result.input.sha256 == explorer.load_image(GOOD_UPLOADS[kind]).sha256
    if kind == "exif-rotated":
        assert app.loaded.pixels.shape[:2] == (80, 40)  # rotated upright: portrait
        assert "rotated" in app.status.value


def _bomb() -> bytes:
    import struct
    import zlib

    data = bytearray(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", 60000, 60000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _corrupt_png() -> bytes:
    data = bytearray(png_bytes(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    data[60:-20] = bytes(len(data) - 80)  # zero the compressed pixels, keep header and IEND
    return bytes(data)


BAD_UPLOADS = {
    "corrupt": (_corrupt_png(), "corrupt"),
    "truncated": (png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))[:-300], "truncated"),
    "not-an-image": (b"%PDF-1.4\n%%EOF\n", "PDF"),
    "empty": (b"", "empty"),
    "bomb": (_bomb(), "megapixels"),
}


@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_bad_uploads_are_explained_and_app_survives(app, kind):
    data, needle = BAD_UPLOADS[kind]
    shown = app.result
    app.upload.value = upload_value(data, name=f"{kind}.png")
    assert is_error(app) and needle.lower() in app.status.value.lower(), app.status.value
    assert app.result is shown  # the previous picture stays
    app.ratio.value = 0.5  # and the app still works
    assert app.result.hidden_fraction == pytest.approx(0.5, abs=1 / 64)


def test_unknown_model_and_no_gpu_in_widget(app):
    adapter = app.adapter
    app.model_box.value = "not-a-model"
    app.load_btn.click()
    assert is_error(app) and "Unknown model" in app.status.value and app.adapter is adapter
    app.model_box.value = "facebook/vit-mae-base"
    app.load_btn.click()
    assert is_error(app) and "hub" in app.status.value and app.adapter is adapter
    assert "cuda" not in app.device_dd.options or explorer.models.available_devices()[0] == "cuda"


def test_unexpected_exception_is_contained(app, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated failure deep inside")

    monkeypatch.setattr(app.cache, "get", boom)
    app.seed.value = 11
    assert is_error(app) and "RuntimeError: simulated failure deep inside" in app.status.value


@pytest.mark.notebook
def test_kernel_survives_bad_inputs(tiny_dir):
    """In a real kernel: bad inputs through the app and the API, then a normal cell still runs."""
    cells = [
        f"import explorer, datetime\napp = explorer.MAEApp(model={str(tiny_dir)!r}, image='coffee')",
        "app.upload.value = ({'name': 'a.png', 'type': 'image/png', 'size': 3, 'last_modified': datetime.datetime.now(),"
        " 'content': memoryview(b'abc')},)\nprint('ERR' if '⚠' in app.status.value else 'NOERR')",
        "app.model_box.value = 'nope'; app.load_btn.click(); print('ERR' if '⚠' in app.status.value else 'NOERR')",
        "try:\n    explorer.load_image(b'\\xff\\xd8\\xff' + b'0' * 100)\nexcept explorer.ImageLoadError as e:\n    print('REFUSED', e)",
        "app.ratio.value = 0.25\nprint('ALIVE', app.result.hidden_fraction)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    out = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]
    assert out[1].strip() == "ERR" and out[2].strip() == "ERR"
    assert out[3].startswith("REFUSED")
    assert out[4].startswith("ALIVE 0.25")


# ---------------------------------------------------------------------------- export button
needs_chromium = pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="export needs chromium")


@needs_chromium
def test_export_button_writes_the_view_on_screen_and_it_reproduces(app, tmp_path):
    from explorer.export import read_sidecar, reproduce

    app.export_panel.folder.value = str(tmp_path)
    app.upload.value = upload_value(png_bytes((np.random.default_rng(5).random((40, 50, 3)) * 255).astype(np.uint8)), "mine.png")
    app.paint([0, 3, 5])
    res = app.export_panel.export()
    assert res is not None, app.export_panel.status.value
    assert "Exported" in app.export_panel.status.value
    sc = read_sidecar(res.files["png"])
    assert sc["recipe"]["options"]["strategy"] == "manual" and sc["recipe"]["options"]["manual"] == [0, 3, 5]
    spec = sc["provenance"]["inputs"][0]
    assert spec["copied_from"] == "mine.png" and (tmp_path / spec["path"]).is_file()  # the upload travels with the figure
    rep = reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()
    # A second click never overwrites the first export.
    res2 = app.export_panel.export()
    assert res2.files["png"] != res.files["png"] and res.files["png"].is_file()


@needs_chromium
def test_export_errors_are_shown_not_raised(app, tmp_path):
    for cb in app.export_panel.formats.values():
        cb.value = False
    assert app.export_panel.export() is None
    assert "Tick at least one format" in app.export_panel.status.value
    app.export_panel.formats["png"].value = True
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app.export_panel.folder.value = str(blocker)  # a file where a folder should be
    assert app.export_panel.export() is None
    assert "Export failed" in app.export_panel.status.value
    assert not is_error(app)  # the app itself is fine


# ---------------------------------------------------------------------------- every app: progress while it starts
import time  # noqa: E402

from explorer.widgets import attention_app, base, mae_app, multimodal_app, video_app  # noqa: E402


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_dir):
    """Folders of tiny random models for each app (offline, a second to load)."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    from _tiny import DEPTH, RGB, save_tiny_multimae

    root = tmp_path_factory.mktemp("start-models")
    torch.manual_seed(0)
    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=4, intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                         decoder_num_attention_heads=4, decoder_intermediate_size=64, norm_pix_loss=False)
    VideoMAEForPreTraining(cfg).save_pretrained(root / "video")
    return {"mae": str(tiny_dir), "video": str(root / "video"),
            "rgbd": str(save_tiny_multimae(root / "rgbd", [RGB, DEPTH]))}


#: app → (module whose loader is patched, loader name, constructor, attribute of its main figure)
APPS = {
    "mae": (mae_app, "load_model", lambda m: mae_app.MAEApp(model=m["mae"], image="chelsea"), "fig"),
    "attention": (attention_app, "load_model", lambda m: attention_app.AttentionApp(model=m["mae"], image="chelsea"), "main"),
    "video": (video_app, "load_model", lambda m: video_app.VideoMAEApp(model=m["video"], clip="generated:10000003"), "fig"),
    "multimodal": (multimodal_app, "load_multimodal_model", lambda m: multimodal_app.MultiMAEApp(m["rgbd"], device="cpu"),
                   "fig"),
}


@pytest.fixture()
def notebook(monkeypatch):
    """Run as in a notebook kernel: ``events`` records what the apps display and which app is being built."""
    events = []

    class Shell:
        execution_count = 7

    monkeypatch.setattr(base, "_kernel_shell", lambda: Shell)
    monkeypatch.setattr(base, "_display", lambda bundle: events.append(("display", bundle)))
    real = base.AppBase._display_first

    def display_first(self):
        events.append(("app", self))
        real(self)

    monkeypatch.setattr(base.AppBase, "_display_first", display_first)
    return events, Shell


def _slow_loader(monkeypatch, module, name, events, fig_attr, error=None):
    """Patch ``module.name`` with a loader that takes a while and notes what the app under construction shows meanwhile."""
    real = getattr(module, name)

    def slow(*args, **kwargs):
        app = next(obj for kind, obj in events if kind == "app")
        events.append(("loading", {"progress": app.loading, "status": app.status.value,
                                   "traces": len(getattr(app, fig_attr).data)}))
        time.sleep(0.2)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)


@pytest.mark.parametrize("kind", list(APPS))
def test_each_app_shows_progress_from_the_start_and_none_after(kind, tiny_models, notebook, monkeypatch):
    events, shell = notebook
    module, loader, make, fig_attr = APPS[kind]
    _slow_loader(monkeypatch, module, loader, events, fig_attr)
    app = make(tiny_models)
    kinds = [k for k, _ in events]
    assert kinds[:3] == ["app", "display", "loading"]  # displayed first, then the model loads
    assert "application/vnd.jupyter.widget-view+json" in events[1][1]
    seen = events[2][1]
    assert seen["progress"] and seen["traces"] == 0  # a progress bar before any figure exists
    assert "loading " in seen["status"] and "…" in seen["status"] and "fa-spin" in seen["status"]
    assert len(getattr(app, fig_attr).data) > 0 and not is_error(app), app.status.value
    assert not app.loading and "fa-spin" not in app.status.value and app.started
    # The cell's own `app` line shows nothing more; `app` in a later cell shows it again.
    app._ipython_display_()
    assert [k for k, _ in events].count("display") == 1
    shell.execution_count = 8
    app._ipython_display_()
    assert [k for k, _ in events].count("display") == 2


@pytest.mark.parametrize("kind", list(APPS))
def test_a_failed_start_shows_the_error_and_no_spinner(kind, tiny_models, notebook, monkeypatch):
    from explorer.models import ModelLoadError

    events, _ = notebook
    module, loader, make, fig_attr = APPS[kind]
    _slow_loader(monkeypatch, module, loader, events, fig_attr, error=ModelLoadError("simulated: the checkpoint is gone"))
    app = make(tiny_models)
    assert [k for k, _ in events][:3] == ["app", "display", "loading"] and events[2][1]["progress"]
    assert is_error(app) and "simulated: the checkpoint is gone" in app.status.value
    assert not app.loading and "fa-spin" not in app.status.value and app.adapter is None


def test_first_forward_is_announced_and_later_forwards_say_what_runs(app, monkeypatch):
    seen = []
    real = app.cache.get

    def spy(*a, **k):
        seen.append((app.loading, app.status.value))
        return real(*a, **k)

    monkeypatch.setattr(app.cache, "get", spy)
    app.seed.value = 3
    assert seen and seen[0][0] and "computing the ratio sweep…" in seen[0][1]
    assert not app.loading and "fa-spin" not in app.status.value
    assert "first forward…" not in app.status.value


def test_quiet_changes_do_not_recompute(app):
    shown, seed = app.result, app.seed.value
    with app.quiet():
        app.seed.value = seed + 4
        assert app.is_quiet
    assert app.result is shown and not app.is_quiet  # a programmatic change: nothing recomputed
    app.seed.value = seed + 5
    assert app.result is not shown and app.result.spec.seed == seed + 5


def test_file_stem_cleans_upload_names():
    assert base.file_stem("my cat (1).JPG") == "my-cat--1-"
    assert base.file_stem(".png") == "image" and base.file_stem("x" * 60 + ".png") == "x" * 40
    assert base.file_stem("room:10000001") == "room-10000001"
