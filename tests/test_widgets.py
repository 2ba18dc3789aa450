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
    before = [t.source for t in app.fig.data[:4]]
    misses = app.cache.misses
    app.ratio.value = 0.3
    after = [t.source for t in app.fig.data[:4]]
    assert before[0] == after[0]  # the original does not change
    assert before[1] != after[1] and before[2] != after[2]  # masked input and reconstruction do
    assert app.cache.misses == misses  # no new forward: served from the cached sweep
    assert app.result.hidden_fraction == pytest.approx(0.3, abs=1 / 64)
    assert "30% hidden" in app.fig.layout.annotations[1].text
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
