"""Tests for explorer.io.load_image: every fixture is generated in tmp_path / memory."""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from explorer import io as eio
from explorer.io import ImageLoadError, LoadedImage, load_image


def _encode(ext: str, bgr: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, bgr, params or [])
    assert ok
    return buf.tobytes()


def _pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _check_invariants(img: LoadedImage) -> None:
    p = img.pixels
    assert p.dtype == np.float32 and p.ndim == 3 and p.shape[2] == 3
    assert p.flags["C_CONTIGUOUS"]
    assert np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0
    assert len(img.sha256) == 64


def _marker_image(w: int = 40, h: int = 24) -> np.ndarray:
    """RGB uint8 with a red block top-left and a green block top-right (asymmetric)."""
    a = np.full((h, w, 3), 40, np.uint8)
    a[:8, :8] = (255, 0, 0)
    a[:8, -8:] = (0, 255, 0)
    a[-8:, :8] = (0, 0, 255)
    return a


# ---------------------------------------------------------------- round trips


def test_png_red_is_red_not_blue(tmp_path):
    bgr = np.zeros((6, 8, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), bgr)
    img = load_image(path)
    _check_invariants(img)
    assert img.pixels.shape == (6, 8, 3)
    assert np.all(img.pixels[..., 0] == 1.0) and np.all(img.pixels[..., 1:] == 0.0)
    assert img.name == "red.png" and img.original_size == (8, 6)
    assert img.bit_depth == 8 and img.channels == 3 and img.exif_orientation == 1
    assert img.notes == ()


def test_str_path_and_file_object_and_bytes_agree(tmp_path):
    rgb = _marker_image()
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    a = load_image(str(path))
    with open(path, "rb") as f:
        b = load_image(f)
    c = load_image(path.read_bytes())
    d = load_image(bytearray(path.read_bytes()), name="custom")
    assert b.name == "m.png" and c.name == "<bytes>" and d.name == "custom"
    for x in (b, c, d):
        np.testing.assert_array_equal(x.pixels, a.pixels)
        assert x.sha256 == a.sha256
    np.testing.assert_allclose(a.pixels, rgb / 255.0, atol=1e-7)


def test_jpeg_close_to_original(tmp_path):
    rgb = _marker_image(64, 48)
    data = _encode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    img = load_image(data)
    _check_invariants(img)
    assert np.abs(img.pixels - rgb / 255.0).mean() < 0.02
    assert img.pixels[2, 2, 0] > 0.9 and img.pixels[2, 2, 2] < 0.15  # red stays red


def test_16bit_png(tmp_path):
    a = np.full((5, 7, 3), 32768, np.uint16)
    img = load_image(_encode(".png", a))
    _check_invariants(img)
    assert img.bit_depth == 16
    np.testing.assert_allclose(img.pixels, 32768 / 65535, atol=1e-6)
    assert any("16-bit" in n for n in img.notes)


def test_grayscale_png_replicated():
    g = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (4, 1))
    img = load_image(_encode(".png", g))
    _check_invariants(img)
    assert img.channels == 1
    np.testing.assert_array_equal(img.pixels[..., 0], img.pixels[..., 1])
    np.testing.assert_array_equal(img.pixels[..., 0], img.pixels[..., 2])
    np.testing.assert_allclose(img.pixels[..., 0], g / 255.0, atol=1e-7)
    assert "grayscale replicated to RGB" in img.notes


def test_rgba_transparent_becomes_white_and_half_alpha_blends():
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., 0] = 255  # blue
    bgra[:, :3, 3] = 0  # left: fully transparent
    bgra[:, 3:, 3] = 255  # right: opaque blue
    bgra[0, 5, 3] = 51  # one 20%-opaque blue pixel
    img = load_image(_encode(".png", bgra))
    _check_invariants(img)
    assert img.channels == 4
    np.testing.assert_allclose(img.pixels[:, :3], 1.0)
    np.testing.assert_allclose(img.pixels[1:, 3:], np.broadcast_to([0, 0, 1], (3, 3, 3)))
    np.testing.assert_allclose(img.pixels[0, 5], [0.8, 0.8, 1.0], atol=1e-6)
    assert "alpha channel composited on white" in img.notes


def test_grey_alpha_png():
    la = Image.new("LA", (6, 4), (0, 255))
    la.paste((0, 0), (0, 0, 3, 4))  # left half transparent black
    la.paste((100, 128), (3, 0, 6, 4))
    img = load_image(_pil_bytes(la, "PNG"))
    _check_invariants(img)
    assert img.channels == 2
    np.testing.assert_allclose(img.pixels[:, :3], 1.0)
    a = 128 / 255
    np.testing.assert_allclose(img.pixels[:, 3:], 100 / 255 * a + (1 - a), atol=1e-6)
    assert "alpha channel composited on white" in img.notes
    assert "grayscale replicated to RGB" in img.notes


def test_palette_png_with_transparency():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (2, 0, 4, 4))
    img = load_image(_pil_bytes(p, "PNG", transparency=0))
    np.testing.assert_allclose(img.pixels[:, :2], 1.0)  # transparent index → white
    np.testing.assert_allclose(img.pixels[:, 2:], np.broadcast_to([1, 0, 0], (4, 2, 3)))
    assert img.channels == 4


def test_16bit_grayscale_png():
    g = np.full((3, 4), 65535 // 4, np.uint16)
    img = load_image(_encode(".png", g))
    assert img.bit_depth == 16 and img.channels == 1
    np.testing.assert_allclose(img.pixels, (65535 // 4) / 65535, atol=1e-6)


def test_palette_png():
    p = Image.fromarray(_marker_image()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    img = load_image(_pil_bytes(p, "PNG"))
    ref = np.asarray(p.convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(img.pixels, ref, atol=1e-6)
    assert img.channels == 3


def test_float_tiff_clipped_and_nan_replaced():
    f = np.full((4, 5, 3), 0.25, np.float32)
    f[0, 0] = 2.0
    f[1, 1] = -1.0
    f[2, 2, 0] = np.nan
    data = _encode(".tiff", f)
    img = load_image(data)
    _check_invariants(img)
    assert img.bit_depth == 32
    assert np.all(img.pixels[0, 0] == 1.0) and np.all(img.pixels[1, 1] == 0.0)
    assert img.pixels[2, 2, 2] == 0.0  # NaN was in BGR channel 0, i.e. blue
    assert any("clipped" in n for n in img.notes) and any("NaN" in n for n in img.notes)


# ---------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg_matches_pillow_exif_transpose(orientation):
    rgb = _marker_image(40, 24)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    data = _pil_bytes(im, "JPEG", exif=exif.tobytes(), quality=98)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"), np.float32) / 255
    img = load_image(data)
    _check_invariants(img)
    assert img.exif_orientation == orientation
    assert img.original_size == (40, 24)
    assert img.pixels.shape == ref.shape
    assert img.pixels.shape[:2] == ((24, 40) if orientation <= 4 else (40, 24))
    assert np.abs(img.pixels - ref).max() < 0.1
    # The red marker must be where the reference puts it.
    red = (img.pixels[..., 0] > 0.8) & (img.pixels[..., 1] < 0.3)
    ref_red = (ref[..., 0] > 0.8) & (ref[..., 1] < 0.3)
    assert (red == ref_red).mean() > 0.98
    if orientation != 1:
        assert any(f"EXIF orientation {orientation} applied" in n for n in img.notes)


def test_exif_orientation_6_marker_position_explicit():
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:6, :6] = (255, 0, 0)  # top-left red
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6
    img = load_image(_pil_bytes(im, "JPEG", exif=exif.tobytes(), quality=98))
    assert img.pixels.shape == (40, 20, 3)  # rotated 90° clockwise
    assert img.pixels[2, -3, 0] > 0.8  # stored top-left → displayed top-right
    assert img.pixels[2, 2, 0] < 0.2


def test_exif_orientation_png():
    rgb = _marker_image(40, 24)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 8
    data = _pil_bytes(im, "PNG", exif=exif.tobytes())
    ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))), np.float32) / 255
    img = load_image(data)
    assert img.exif_orientation == 8
    np.testing.assert_allclose(img.pixels, ref, atol=1e-6)


# ---------------------------------------------------------------- truncated / corrupt


def test_truncated_jpeg():
    data = _encode(".jpg", _marker_image(64, 64)[..., ::-1].copy())
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: int(len(data) * 0.7)])


def test_jpeg_with_trailing_padding_ok():
    data = _encode(".jpg", _marker_image(64, 64)[..., ::-1].copy())
    assert load_image(data + b"\x00\x00\n").pixels.shape == (64, 64, 3)


def test_truncated_png():
    rng = np.random.default_rng(0)
    data = _encode(".png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[: int(len(data) * 0.7)])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(data[:-12])  # only the IEND chunk lost


def test_random_bytes():
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageLoadError, match="Not an image OpenCV can decode"):
        load_image(data)


def test_jpeg_header_then_garbage():
    data = b"\xff\xd8\xff\xe0" + np.random.default_rng(2).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(data + b"\xff\xd9")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(p)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not an image\nsecond line: é\n", encoding="utf-8")
    with pytest.raises(ImageLoadError, match=r"detected: text file"):
        load_image(p)


@pytest.mark.parametrize(
    "data, what",
    [
        (b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n" + bytes(range(256)), "PDF document"),
        (b"PK\x03\x04" + bytes(200), "ZIP archive"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(200), "MP4"),
    ],
)
def test_sniffed_non_images(data, what):
    with pytest.raises(ImageLoadError, match=what):
        load_image(data)


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="nope.jpg"):
        load_image(missing)


@pytest.mark.parametrize("bad", [42, 3.5, None, {"name": "x.png"}, object()])
def test_wrong_python_type(bad):
    with pytest.raises(ImageLoadError) as ei:
        load_image(bad)
    assert type(bad).__name__ in str(ei.value)


def test_text_mode_file_object(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("abc")
    with open(p) as f, pytest.raises(ImageLoadError, match="binary mode"):
        load_image(f)


# ---------------------------------------------------------------- FileUpload value


def test_fileupload_empty():
    with pytest.raises(ImageLoadError, match="No file uploaded yet"):
        load_image(())


def test_fileupload_one_file():
    rgb = _marker_image()
    data = _encode(".png", rgb[..., ::-1].copy())
    value = ({"name": "cat.png", "type": "image/png", "size": len(data), "content": memoryview(data),
              "last_modified": 0},)
    img = load_image(value)
    assert img.name == "cat.png"
    np.testing.assert_allclose(img.pixels, rgb / 255.0, atol=1e-7)
    assert img.sha256 == load_image(data).sha256


# ---------------------------------------------------------------- size limits


def _bomb_png(w: int, h: int) -> bytes:
    data = bytearray(_encode(".png", np.zeros((4, 4, 3), np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("cv2.imdecode must not be called for a decompression bomb")

    monkeypatch.setattr(eio.cv2, "imdecode", boom)
    data = _bomb_png(50_000, 50_000)
    t = time.perf_counter()
    with pytest.raises(ImageLoadError, match="megapixels") as ei:
        load_image(data)
    assert time.perf_counter() - t < 1.0
    msg = str(ei.value)
    assert "50000 x 50000 = 2500 megapixels" in msg and "limit of 40 megapixels" in msg
    assert "max_pixels" in msg
    assert Image.MAX_IMAGE_PIXELS is not None  # global Pillow limit restored


def test_max_pixels_parameter():
    data = _encode(".png", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(data, max_pixels=5000)
    assert load_image(data, max_pixels=10_000).pixels.shape == (100, 100, 3)
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(np.zeros((100, 100, 3), np.uint8), max_pixels=5000)


def test_too_small():
    with pytest.raises(ImageLoadError, match="too small"):
        load_image(_encode(".png", np.zeros((1, 5, 3), np.uint8)))
    with pytest.raises(ImageLoadError, match="too small"):
        load_image(np.zeros((5, 1), np.uint8))


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    "arr, expected, depth",
    [
        (np.full((3, 4, 3), 51, np.uint8), 0.2, 8),
        (np.full((3, 4, 3), 13107, np.uint16), 0.2, 16),
        (np.full((3, 4, 3), 0.2, np.float32), 0.2, 32),
        (np.full((3, 4, 3), 0.2, np.float64), 0.2, 32),
        (np.full((3, 4), 0.2, np.float16), 0.2, 32),
        (np.full((3, 4, 1), 51, np.uint8), 0.2, 8),
    ],
)
def test_array_dtypes(arr, expected, depth):
    img = load_image(arr)
    _check_invariants(img)
    assert img.name == "<array>" and img.bit_depth == depth
    assert img.original_size == (4, 3)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-3)


def test_array_is_rgb_order():
    a = np.zeros((3, 3, 3), np.uint8)
    a[..., 0] = 255
    np.testing.assert_array_equal(load_image(a).pixels[..., 0], 1.0)
    np.testing.assert_array_equal(load_image(a).pixels[..., 2], 0.0)


def test_array_rgba_composited():
    a = np.zeros((3, 3, 4), np.float32)  # transparent black
    img = load_image(a)
    np.testing.assert_array_equal(img.pixels, 1.0)
    assert img.channels == 4


def test_float_array_nan_and_clip():
    a = np.full((3, 3, 3), 0.5, np.float32)
    a[0, 0, 0] = np.nan
    a[1, 1, 1] = 5.0
    img = load_image(a)
    assert img.pixels[0, 0, 0] == 0.0 and img.pixels[1, 1, 1] == 1.0
    assert any("NaN" in n for n in img.notes) and any("clipped" in n for n in img.notes)


@pytest.mark.parametrize(
    "arr, fragment",
    [
        (np.zeros((4, 4, 5), np.uint8), "(4, 4, 5)"),
        (np.zeros((4, 4, 3, 1), np.uint8), "(4, 4, 3, 1)"),
        (np.zeros(16, np.uint8), "(16,)"),
        (np.zeros((4, 4, 3), np.complex64), "complex64"),
        (np.zeros((4, 4, 3), object), "object"),
        (np.zeros((4, 4, 3), bool), "bool"),
        (np.zeros((4, 4, 3), np.int32), "int32"),
    ],
)
def test_bad_arrays(arr, fragment):
    with pytest.raises(ImageLoadError) as ei:
        load_image(arr)
    assert fragment in str(ei.value)


# ---------------------------------------------------------------- hashing


def test_sha256_stable_and_distinct():
    a = _encode(".png", np.zeros((4, 4, 3), np.uint8))
    b = _encode(".png", np.full((4, 4, 3), 1, np.uint8))
    assert load_image(a).sha256 == load_image(bytes(a)).sha256
    assert load_image(a).sha256 != load_image(b).sha256
    arr = np.zeros((4, 4, 3), np.uint8)
    assert load_image(arr).sha256 == load_image(arr.copy()).sha256
    assert load_image(arr).sha256 != load_image(arr.astype(np.uint16)).sha256
    assert load_image(arr).sha256 != load_image(arr.reshape(3, 4, 4).copy()).sha256  # same bytes, other shape


# ---------------------------------------------------------------- GIF


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (8, 6), c) for c in ("red", "blue", "lime")]
    data = _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    probe = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if probe is None:
        with pytest.raises(ImageLoadError, match="GIF"):
            load_image(data)
        return
    img = load_image(data)
    _check_invariants(img)
    assert img.pixels.shape == (6, 8, 3)
    np.testing.assert_allclose(img.pixels[0, 0], [1, 0, 0], atol=0.02)
    assert any("animated GIF: first frame used" in n for n in img.notes)
    assert not any("alpha" in n for n in img.notes)  # GIF had no transparency


def test_damaged_png_header_still_refused_before_decoding(monkeypatch):
    """Pillow refuses a PNG whose text chunk has a bad checksum (libpng only warns and decodes): the size is then
    read from the IHDR bytes by explorer.io itself."""
    def boom(*a, **k):
        raise AssertionError("cv2.imdecode must not be called for a decompression bomb")

    data = bytearray(_bomb_png(30_000, 30_000))
    text = b"tEXt" + b"Comment\x00lies"
    data[33:33] = struct.pack(">I", len(text) - 4) + text + b"\x00\x00\x00\x00"  # after IHDR, wrong CRC
    assert eio._read_header(bytes(data)) is None and eio.image_size(bytes(data)) == (30_000, 30_000)
    monkeypatch.setattr(eio.cv2, "imdecode", boom)
    with pytest.raises(ImageLoadError, match="30000 x 30000 = 900 megapixels"):
        load_image(bytes(data))


def test_conversion_by_bands_equals_the_whole_image_at_once(monkeypatch):
    rng = np.random.default_rng(0)
    rgba16 = rng.integers(0, 65536, (53, 37, 4)).astype(np.uint16)
    grey = rng.random((53, 37)).astype(np.float32) * 1.4 - 0.2
    grey[3, 4] = np.nan
    whole = [load_image(a) for a in (rgba16, grey)]
    monkeypatch.setattr(eio, "_BAND_PIXELS", 100)  # 2 rows a band
    banded = [load_image(a) for a in (rgba16, grey)]
    for w, b in zip(whole, banded):
        assert np.array_equal(w.pixels, b.pixels) and w.notes == b.notes
    assert "1 NaN values replaced by 0" in whole[1].notes
