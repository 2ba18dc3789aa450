"""io's small parts as a written-out contract: what a file is guessed to be (for error messages), OpenCV size
settings, every kind of source an image can come from, and the errors for each."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from explorer.io import ImageLoadError, _mp, _parse_size_t, _read_source, _sniff, read_source


@pytest.mark.parametrize("data, guess", [
    (b"%PDF-1.7\n", "PDF document"),
    (b"PK\x03\x04rest", "ZIP archive (or .docx/.xlsx/.npz)"),
    (b"\0\0\0\x18ftypheic", "HEIC/HEIF image"), (b"\0\0\0\x18ftypheix", "HEIC/HEIF image"),
    (b"\0\0\0\x18ftyphevc", "HEIC/HEIF image"), (b"\0\0\0\x18ftypmif1", "HEIC/HEIF image"),
    (b"\0\0\0\x18ftypmsf1", "HEIC/HEIF image"), (b"\0\0\0\x18ftypheif", "HEIC/HEIF image"),
    (b"\0\0\0\x18ftypavif", "AVIF image"), (b"\0\0\0\x18ftypavis", "AVIF image"),
    (b"\0\0\0\x18ftypisom", "MP4/QuickTime video"), (b"\0\0\0\x14ftypqt  ", "MP4/QuickTime video"),
    (b"GIF87a..", "GIF image"), (b"GIF89a..", "GIF image"),
    (b"\xff\xd8\xff\xe0", "JPEG image"), (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"RIFF\0\0\0\0WEBPVP8 ", "WebP image"), (b"RIFF\0\0\0\0WAVEfmt ", "unknown binary data"),
    (b"II*\x00", "TIFF image"), (b"MM\x00*", "TIFF image"), (b"BM\0\0", "BMP image"),
    (b"\x1f\x8b\x08", "gzip archive"), (b"\x93NUMPY\x01\x00", "NumPy .npy file (load it with np.load and pass the array)"),
    (b"<?xml version='1.0'?><SVG width='1'>", "SVG vector image (rasterise it to PNG first)"),
    (b"hello,\tworld\r\nline two\n", "text file"), (b"", "text file"),
    (b"\x00\x01\x02binary", "unknown binary data"),
    (b"\xff\xfe\xfd", "unknown binary data"),
])
def test_sniff_names_what_a_file_is(data, guess):
    assert _sniff(data) == guess


def test_sniff_reads_the_first_2048_bytes_and_tolerates_a_cut_character():
    assert _sniff(b"a" * 2047 + "é".encode()) == "text file"  # é cut in half at byte 2048: still text
    assert _sniff(b"a" * 2040 + b"\xff" + b"a" * 10) == "text file"  # a bad byte past 2040 in the window: read up to it
    assert _sniff(b"a" * 100 + b"\xff" + b"a" * 3000) == "unknown binary data"
    assert _sniff(b"a" * 2048 + b"\x00") == "text file"  # what lies past 2048 bytes is not looked at
    assert _sniff(b"x" * 60 + b"%PDF") == "text file"  # magic numbers only at the start
    assert _sniff(b"a\x07b") == "unknown binary data"  # a control character


@pytest.mark.parametrize("text, expected", [
    (None, 7), ("", 7), ("67108864", 67108864), ("64M", 64 << 20), ("64m", 64 << 20), ("1GB", 1 << 30),
    ("1gb", 1 << 30), (" 2G ", 2 << 30), ("512K", 512 << 10), ("512KB", 512 << 10), ("100B", 100),
    ("lots", 7), ("M", 7), ("1.5G", 7), ("12X", 7),
])
def test_opencv_size_settings(text, expected):
    assert _parse_size_t(text, 7) == expected


@pytest.mark.parametrize("n, text", [(40_000_000, "40"), (10_000_000, "10"), (9_999_999, "10"), (2_500_000, "2.5"),
                                     (123_456, "0.12")])
def test_megapixels_are_written_for_people(n, text):
    assert _mp(n) == text


def test_every_source_kind(tmp_path):
    arr = np.zeros((2, 2, 3), np.uint8)
    assert _read_source(arr, None)[0] is arr and _read_source(arr, None)[1] == "<array>"
    assert _read_source(arr, "mine")[1] == "mine"
    assert _read_source(b"abc", None) == (b"abc", "<bytes>")
    assert _read_source(bytearray(b"abc"), "n") == (b"abc", "n")
    assert _read_source(memoryview(b"abc"), None) == (b"abc", "<bytes>")
    p = tmp_path / "pic.png"
    p.write_bytes(b"data")
    assert _read_source(p, None) == (b"data", "pic.png")
    assert _read_source(str(p), "shown") == (b"data", "shown")
    up = {"name": "up.png", "content": memoryview(b"up")}
    assert _read_source(up, None) == (b"up", "up.png")
    assert _read_source([up], None) == (b"up", "up.png")  # ipywidgets 8 FileUpload.value
    assert _read_source(({"content": b"x"},), None) == (b"x", "<upload>")
    assert _read_source(io.BytesIO(b"f"), None) == (b"f", "<file>")
    with open(p, "rb") as fh:
        assert _read_source(fh, None) == (b"data", "pic.png")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.png", r"^File not found: '.*missing\.png'\.$"),
    (lambda d: d, r"^'.*' is a directory, not an image file\.$"),
    (lambda d: [], r"^No file uploaded yet: choose an image with the upload button first\.$"),
    (lambda d: {"name": "x"}, r"^Expected an uploaded-file dict with a 'content' key, got a dict with keys \['name'\]\.$"),
    (lambda d: {"content": "text"}, r"^Uploaded 'content' must be bytes, got str\.$"),
    (lambda d: io.StringIO("text"), r"^The file object returned str, not bytes: open it in binary mode \('rb'\)\.$"),
    (lambda d: 3.5, r"^Cannot load an image from a float: pass a path, bytes, a binary file object, a numpy array or "
                    r"the value of a FileUpload widget\.$"),
])
def test_every_bad_source_is_explained(tmp_path, make, message):
    with pytest.raises(ImageLoadError, match=message):
        _read_source(make(tmp_path), None)


def test_a_file_object_that_fails_and_other_media_nouns(tmp_path):
    class Broken:
        def read(self):
            raise OSError("disk on fire")

    with pytest.raises(ImageLoadError, match=r"^Cannot read from the file object: disk on fire\.$"):
        _read_source(Broken(), None)

    class VideoError(ValueError):
        pass

    with pytest.raises(VideoError, match=r"^Cannot load a video from a float"):
        read_source(1.0, None, error=VideoError, noun="a video")
    with pytest.raises(ImageLoadError, match="Cannot load an image from a float"):
        read_source(1.0, None)
    assert read_source(b"x", None, error=VideoError, noun="a video") == (b"x", "<bytes>")


def test_unreadable_path(tmp_path, monkeypatch):
    p = tmp_path / "locked.png"
    p.write_bytes(b"x")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # (as root, chmod 0 would not stop the read)
    with pytest.raises(ImageLoadError, match=r"^Cannot read '.*locked\.png': Permission denied\.$"):
        _read_source(p, None)


# ---------------------------------------------------------------------------------------------- hand-made headers
import struct  # noqa: E402

from explorer.io import _larger, header_size, image_size  # noqa: E402


def _jpeg(*segments: bytes, sof: int = 0xC0, w: int = 321, h: int = 123) -> bytes:
    frame = bytes([0xFF, sof]) + struct.pack(">HBHH", 17, 8, h, w) + b"\x03" + b"\0" * 9
    return b"\xff\xd8" + b"".join(segments) + frame + b"\xff\xda" + b"\0" * 20


@pytest.mark.parametrize("sof", sorted({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}))
def test_jpeg_every_frame_marker(sof):
    assert image_size(_jpeg(sof=sof)) == (321, 123)


def test_jpeg_segments_fill_bytes_and_markers_without_length():
    app = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9
    assert image_size(_jpeg(app, b"\xff\xff\xff\x01", b"\xff\xd0")) == (321, 123)  # fill bytes, TEM, RST0
    assert image_size(_jpeg(b"\xff\xc4" + struct.pack(">H", 4) + b"\0\0")) == (321, 123)  # DHT is not a frame
    assert image_size(b"\xff\xd8\xff\xda" + b"\0" * 30) is None  # scan before any frame header
    assert image_size(b"\xff\xd8\xff\xd9" + b"\0" * 30) is None
    assert image_size(b"\xff\xd8\x00\x00" + b"\0" * 30) is None  # not a marker
    assert image_size(_jpeg()[:10]) is None  # cut inside the frame header
    assert image_size(_jpeg()[:11]) == (321, 123)  # just enough of it


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("typ", [3, 4])
def test_tiff_classic_both_byte_orders_and_tag_types(order, typ):
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    fmt = "H2x" if typ == 3 else "I"
    entries = [struct.pack(order + "HHI", 258, 3, 1) + struct.pack(order + "H2x", 8),  # another tag first
               struct.pack(order + "HHI", 256, typ, 1) + struct.pack(order + fmt, 700),
               struct.pack(order + "HHI", 257, typ, 1) + struct.pack(order + fmt, 300)]
    d = magic + struct.pack(order + "I", 8) + struct.pack(order + "H", 3) + b"".join(entries) + b"\0" * 4
    assert image_size(d) == (700, 300)
    no_height = magic + struct.pack(order + "I", 8) + struct.pack(order + "H", 1) + entries[1] + b"\0" * 4
    assert image_size(no_height) is None
    odd = magic + struct.pack(order + "I", 8) + struct.pack(order + "H", 1) + \
        struct.pack(order + "HHI", 256, 5, 1) + b"\0" * 8  # a RATIONAL width: not read
    assert image_size(odd) is None


def test_bigtiff():
    e = "<"
    entries = [struct.pack(e + "HHQ", 256, 16, 1) + struct.pack(e + "Q", 90_000),
               struct.pack(e + "HHQ", 257, 4, 1) + struct.pack(e + "I4x", 40_000)]
    d = b"II+\x00" + struct.pack(e + "HHQ", 8, 0, 16) + struct.pack(e + "Q", 2) + b"".join(entries) + b"\0" * 8
    assert image_size(d) == (90_000, 40_000)
    assert image_size(b"II\x2b\x00" + b"\0" * 4) is None
    assert image_size(b"II*\x00" + struct.pack("<I", 10_000)) is None  # an IFD past the end


def test_webp_headers():
    vp8x = b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8 + (4999).to_bytes(3, "little") + (2999).to_bytes(3, "little")
    assert image_size(vp8x) == (5000, 3000)
    bits = (800 - 1) | ((600 - 1) << 14)
    vp8l = b"RIFF\0\0\0\0WEBPVP8L" + b"\0" * 4 + b"\x2f" + bits.to_bytes(4, "little")
    assert image_size(vp8l) == (800, 600)
    assert image_size(vp8l[:20] + b"\x00" + vp8l[21:]) is None  # no VP8L signature byte
    vp8 = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 7 + b"\x9d\x01\x2a" + struct.pack("<HH", 640 | 0xC000, 480 | 0x4000)
    assert image_size(vp8) == (640, 480)  # the two scale bits are not part of the size
    assert image_size(vp8[:23] + b"\0\0\0" + vp8[26:]) is None
    assert image_size(b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 10) is None  # too short


def test_gif_screen_colour_table_extensions_and_frames():
    screen = b"GIF89a" + struct.pack("<HH", 40, 30)
    table = bytes([0x80 | 2, 0, 0]) + b"\0" * (3 * 8)  # global colour table of 2**(2+1) entries
    ext = b"\x21\xf9\x04\0\0\0\0\0"  # graphic control extension
    frame = b"\x2c" + struct.pack("<HHHH", 30, 25, 50, 60) + b"\0"
    assert image_size(screen + table + ext + frame) == (80, 85)  # the frame reaches past the screen
    small = b"\x2c" + struct.pack("<HHHH", 1, 2, 3, 4) + b"\0"
    assert image_size(screen + table + small) == (40, 30)
    assert image_size(screen + bytes([0, 0, 0]) + small) == (40, 30)  # no colour table
    assert image_size(screen + bytes([0, 0, 0]) + b"\x3b") == (40, 30)  # trailer only: the screen
    assert image_size(b"GIF89a" + b"\0" * 4) is None


def test_bmp_headers():
    core = b"BM" + b"\0" * 12 + (12).to_bytes(4, "little") + struct.pack("<HH", 640, 480) + b"\0" * 4
    assert image_size(core) == (640, 480)
    info = b"BM" + b"\0" * 12 + (40).to_bytes(4, "little") + struct.pack("<ii", 320, -200)  # top-down
    assert image_size(info) == (320, 200)
    assert image_size(info[:25]) is None


@pytest.mark.parametrize("data, size", [
    (b"P6\n# made by hand\n 640   480\n255\n", (640, 480)), (b"P5 12 7 255 ", (12, 7)), (b"P4\n3 2\n", (3, 2)),
    (b"P1\n5 # width\n9\n", (5, 9)), (b"PF\n10 20\n-1.0\n", (10, 20)), (b"Pf 8 6 ", (8, 6)),
    (b"P7\nWIDTH 33\nHEIGHT 44\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n", (33, 44)),
    (b"P7\nWIDTH x\nHEIGHT 44\n", None), (b"P6\n640\n", None), (b"P6 -1 3 ", None),
])
def test_netpbm_headers(data, size):
    assert image_size(data) == size


@pytest.mark.parametrize("res, size", [(b"-Y 480 +X 640", (640, 480)), (b"+X 640 -Y 480", (640, 480)),
                                       (b"+Y 20 -X 30", (30, 20)), (b"-Y 480", None), (b"-Y x +X 640", None)])
def test_radiance_resolution_lines(res, size):
    assert image_size(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + res + b"\n") == size
    assert image_size(b"#?RGBE\n\n" + res + b"\n") == size


def test_png_and_unknown_headers():
    ihdr = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" + struct.pack(">II", 90, 45)
    assert image_size(ihdr) == (90, 45)
    assert image_size(ihdr[:20]) is None
    assert image_size(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDX" + b"\0" * 8) is None
    assert image_size(b"unknown format") is None and image_size(bytearray(ihdr)) == (90, 45)


def test_the_larger_claim_wins():
    assert _larger((10, 10), (5, 30)) == (5, 30) and _larger((5, 30), (10, 10)) == (5, 30)
    assert _larger(None, (3, 4)) == (3, 4) and _larger((3, 4), None) == (3, 4) and _larger(None, None) is None
    assert _larger((6, 5), (5, 6)) == (6, 5)  # a tie: the first
    gif = b"GIF89a" + struct.pack("<HH", 40, 30) + bytes([0, 0, 0]) + b"\x2c" + struct.pack("<HHHH", 0, 0, 100, 100) + b"\0"
    assert header_size(gif) == (100, 100)  # Pillow reads the screen; the frame claims more


# ---------------------------------------------------------------------------------------------- load_image messages
import io as _io  # noqa: E402

from PIL import Image  # noqa: E402

from explorer import io as xio  # noqa: E402
from explorer.io import _check_size, load_image  # noqa: E402


def _png_bytes(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = _io.BytesIO()
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(buf, format="PNG", **save)
    return buf.getvalue()


@pytest.mark.parametrize("w, h, ok", [(2, 2, True), (1, 5, False), (5, 1, False), (2, 3, True), (3, 2, True)])
def test_the_smallest_image(w, h, ok):
    if ok:
        _check_size(w, h, 100)
    else:
        with pytest.raises(ImageLoadError, match=rf"^Image is {w} x {h} pixels: too small \(at least 2 x 2 needed\)\.$"):
            _check_size(w, h, 100)


def test_size_limits_are_explained_exactly(monkeypatch):
    _check_size(10, 10, 100)  # exactly at max_pixels
    with pytest.raises(ImageLoadError) as e:
        _check_size(10, 11, 100)
    assert str(e.value) == ("Image is 10 x 11 = 0.00011 megapixels, above the limit of 0.0001 megapixels (max_pixels). "
                            "Downscale it first or raise max_pixels.")
    monkeypatch.setattr(xio, "CV2_PIXEL_CAP", 5_000_000)
    _check_size(2500, 2000, 10**9)  # exactly OpenCV's cap
    with pytest.raises(ImageLoadError) as e:
        _check_size(2501, 2000, 10**9)
    assert str(e.value) == (
        "Image is 2501 x 2000 = 5 megapixels, above OpenCV's own limit of 5 megapixels. Set the environment variable "
        "OPENCV_IO_MAX_IMAGE_PIXELS higher before cv2 or explorer is first imported (OpenCV reads it once), or "
        "downscale the image.")


@pytest.mark.parametrize("bad", [3, 0, -1, True, 4.0, "40"])
def test_max_pixels_must_be_an_integer_of_at_least_4(bad):
    with pytest.raises(ImageLoadError, match=rf"^max_pixels must be an integer >= 4, got {bad!r}\.$"):
        load_image(np.zeros((2, 2, 3), np.uint8), max_pixels=bad)


def test_load_image_limits_and_messages():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    with pytest.raises(ImageLoadError, match=r"^The file is empty\.$"):
        load_image(b"")
    data = _png_bytes(grey)
    ok = load_image(data, max_pixels=12)
    assert ok.original_size == (4, 3) and ok.channels == 1 and ok.pixels.shape == (3, 4, 3)
    np.testing.assert_allclose(ok.pixels[..., 0], grey / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ok.pixels[..., 0], ok.pixels[..., 2])
    with pytest.raises(ImageLoadError, match=r"^Image is 4 x 3 = .* above the limit of .*\(max_pixels\)"):
        load_image(data, max_pixels=11)  # from the header, before decoding


def test_grey_with_alpha_and_palette_images_keep_their_channels():
    ga = np.zeros((4, 5, 2), np.uint8)
    ga[..., 0] = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    ga[..., 1] = 255
    ga[0, 0, 1] = 0  # one transparent pixel: composited on white
    img = load_image(_png_bytes(ga, "LA"))
    assert img.channels == 2 and "alpha channel composited on white" in img.notes
    assert img.pixels[0, 0].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(img.pixels[1, 2], [ga[1, 2, 0] / 255.0] * 3, atol=1e-7)
    opaque = ga.copy()
    opaque[..., 1] = 255
    assert "fully opaque alpha channel dropped" in load_image(_png_bytes(opaque, "LA")).notes
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2] = (200, 100, 50)
    pal = Image.fromarray(rgb).convert("P")
    buf = _io.BytesIO()
    pal.save(buf, format="PNG")
    p = load_image(buf.getvalue())
    expected = np.asarray(pal.convert("RGB"))[1, 2] / 255.0  # the palette's colour for that pixel
    assert p.channels == 3 and p.pixels[1, 2].tolist() == pytest.approx(expected.tolist(), abs=1e-7)
    assert p.pixels[1, 2, 0] > 0.5 > p.pixels[1, 2, 2]


def test_sixteen_bit_is_scaled_and_said():
    a = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    img = load_image(_png_bytes(a))
    assert "16-bit image scaled to [0, 1]" in img.notes and img.bit_depth == 16
    np.testing.assert_allclose(img.pixels[..., 1], a / 65535.0, atol=1e-6)


@pytest.mark.parametrize("orientation", [0, 9, 42])
def test_an_invalid_exif_orientation_is_ignored_and_said(orientation):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[0, 5] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif, quality=100)
    img = load_image(buf.getvalue())
    assert f"invalid EXIF orientation {orientation} ignored" in img.notes
    assert img.exif_orientation == 1 and img.original_size == (6, 4) and img.pixels.shape == (4, 6, 3)


def test_animated_images_say_which_frame(tmp_path):
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200, 90)]
    buf = _io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert "animated GIF: first frame used (of 3)" in load_image(buf.getvalue()).notes
    two = _io.BytesIO()
    frames[0].save(two, format="PNG", save_all=True, append_images=frames[1:2])  # APNG
    assert "animated PNG: first frame used (of 2)" in load_image(two.getvalue()).notes
    one = _io.BytesIO()
    frames[0].save(one, format="GIF")
    assert not any("animated" in n for n in load_image(one.getvalue()).notes)


def test_arrays_are_checked_and_described():
    with pytest.raises(ImageLoadError, match=r"\(H, W, 3\) or \(H, W, 4\)\.$"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    for bad in (np.zeros((4, 4, 3), np.int32), np.zeros((4, 4, 3), np.uint32), np.array([["a"]])):
        with pytest.raises(ImageLoadError):
            load_image(bad)
    g = load_image(np.zeros((4, 5), np.uint8))
    assert g.channels == 1 and g.exif_orientation == 1 and g.original_size == (5, 4)
    a = load_image(np.zeros((4, 5, 4), np.uint8))
    assert a.channels == 4
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # arrays are RGB: red stays red
    assert load_image(bgr).pixels[0, 0].tolist() == [1.0, 0.0, 0.0]


def test_header_sizes_above_the_signed_range():
    """Widths past 32767 (16-bit fields) and 2**31 (32-bit fields) are read unsigned, as the formats define them:
    a decompression bomb is recognised by exactly these numbers."""
    big16, big32 = 40_000, 3_000_000_000
    png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" + struct.pack(">II", big32, 7)
    assert image_size(png) == (big32, 7)
    assert image_size(_jpeg(w=big16, h=50_000)) == (big16, 50_000)
    gif = b"GIF89a" + struct.pack("<HH", big16, 3) + bytes([0, 0, 0]) + b"\x3b"
    assert image_size(gif) == (big16, 3)
    frame = b"GIF89a" + struct.pack("<HH", 4, 4) + bytes([0, 0, 0]) + b"\x2c" + struct.pack("<HHHH", 0, 0, big16, 5) + b"\0"
    assert image_size(frame) == (big16, 5)
    core = b"BM" + b"\0" * 12 + (12).to_bytes(4, "little") + struct.pack("<HH", big16, 9) + b"\0" * 4
    assert image_size(core) == (big16, 9)
    for order in ("<", ">"):
        magic = b"II*\x00" if order == "<" else b"MM\x00*"
        short = magic + struct.pack(order + "I", 8) + struct.pack(order + "H", 2) + \
            struct.pack(order + "HHI", 256, 3, 1) + struct.pack(order + "H2x", big16) + \
            struct.pack(order + "HHI", 257, 4, 1) + struct.pack(order + "I", big32) + b"\0" * 4
        assert image_size(short) == (big16, big32)
    e = "<"
    bigtiff = b"II+\x00" + struct.pack(e + "HHQ", 8, 0, 16) + struct.pack(e + "Q", 2) + \
        struct.pack(e + "HHQ", 256, 16, 1) + struct.pack(e + "Q", 1 << 40) + \
        struct.pack(e + "HHQ", 257, 3, 1) + struct.pack(e + "H6x", big16) + b"\0" * 8
    assert image_size(bigtiff) == (1 << 40, big16)


def test_a_tiff_directory_of_more_than_32767_entries_is_read_up_to_its_first_4096():
    e = "<"
    n = 40_000
    entries = struct.pack(e + "HHI", 256, 3, 1) + struct.pack(e + "H2x", 600) + \
        struct.pack(e + "HHI", 257, 3, 1) + struct.pack(e + "H2x", 400) + struct.pack(e + "HHI", 258, 3, 1) * 0
    filler = (struct.pack(e + "HHI", 305, 2, 1) + b"\0" * 4) * (n - 2)
    d = b"II*\x00" + struct.pack(e + "I", 8) + struct.pack(e + "H", n) + entries + filler + b"\0" * 4
    assert image_size(d) == (600, 400)
    late = b"II*\x00" + struct.pack(e + "I", 8) + struct.pack(e + "H", n) + filler[:12 * 4096] + entries + b"\0" * 4
    assert image_size(late) is None  # tags past the first 4096 entries are not looked for


@pytest.mark.parametrize("data, size", [
    (b"P6\n" + b"#" * 1200 + b"\n640 480\n", None),  # the numbers lie past the first 1 KiB
    (b"P3 7 8 ", (7, 8)), (b"P2\t7\t8\t", (7, 8)), (b"P8 7 8 ", None), (b"P6x7 8 ", None),
    (b"P7\nHEIGHT 44\n", None), (b"P7\nWIDTH 33\n", None),
])
def test_more_netpbm_edges(data, size):
    assert image_size(data) == size


def test_radiance_header_limits():
    assert image_size(b"#?RADIANCE\n" + b"X" * 8200 + b"\n\n-Y 4 +X 5\n") is None  # no blank line in the first 8 KiB
    assert image_size(b"#?RADIANCE\n\n-Y 4 +X 5") == (5, 4)
    assert image_size(b"#?RADIANCE\n\n-Y   4   +X   5\n") == (5, 4)
    assert image_size(b"#?RADIANCE\n\n" + b" " * 70 + b"-Y 4 +X 5\n") is None  # the line is read within 78 bytes


def test_sources_that_look_like_uploads():
    class Upload:  # a mapping-like FileUpload entry that is not a dict
        def __init__(self, d):
            self.d = d

        def keys(self):
            return self.d.keys()

        def get(self, k, default=None):
            return self.d.get(k, default)

        def __contains__(self, k):
            return k in self.d

        def __getitem__(self, k):
            return self.d[k]

        def __iter__(self):
            return iter(self.d)

    assert _read_source(Upload({"name": "u.png", "content": b"z"}), None) == (b"z", "u.png")
    assert _read_source([{"name": "first.png", "content": b"1"}, {"content": b"2"}], "given") == (b"1", "given")
    with pytest.raises(ImageLoadError, match=r"with keys \['a', 'b', 'c', 'd', 'e'\]\.$"):
        _read_source({k: 1 for k in "abcdefg"}, None)
    with pytest.raises(ImageLoadError, match=r"^'.*' is a directory, not an image file\.$") as e:
        _read_source(Path("/tmp"), None)
    assert "'/tmp'" in str(e.value)


def _png_exif(arr: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("orientation, upright", [
    (1, lambda a: a), (2, np.fliplr), (3, lambda a: np.rot90(a, 2)), (4, np.flipud),
    (5, lambda a: np.transpose(a, (1, 0, 2))), (6, lambda a: np.rot90(a, -1)),
    (7, lambda a: np.rot90(np.transpose(a, (1, 0, 2)), 2)), (8, lambda a: np.rot90(a, 1)),
])
def test_exif_orientations_against_numpy(orientation, upright):
    arr = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)  # lossless PNG + eXIf
    img = load_image(_png_exif(arr, orientation))
    np.testing.assert_allclose(img.pixels, upright(arr) / 255.0, atol=1e-7)
    assert img.exif_orientation == orientation and img.original_size == (5, 3)
    if orientation != 1:
        assert img.notes[-1].startswith(f"EXIF orientation {orientation} applied (")


def test_truncated_and_undecodable_files_are_explained(monkeypatch):
    import cv2

    arr = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    jbuf = _io.BytesIO()
    Image.fromarray(arr).save(jbuf, format="JPEG")
    jpg = jbuf.getvalue()
    assert load_image(jpg + b"\r\n\0 \t").original_size == (8, 8)  # padding after the end marker is fine
    for cut in (jpg[:-2], jpg + b"XX"):
        with pytest.raises(ImageLoadError) as e:
            load_image(cut)
        assert str(e.value) == ("The file looks truncated (JPEG end marker missing): was the upload or download "
                                "interrupted?")
    png = _png_bytes(arr)
    with pytest.raises(ImageLoadError) as e:
        load_image(png[:png.rfind(b"IEND")])
    assert str(e.value) == "The file looks truncated (PNG IEND chunk missing): was the upload or download interrupted?"
    broken = png[:40] + b"\0" * (len(png) - 52) + png[-12:]  # header and IEND kept, pixel data zeroed
    with pytest.raises(ImageLoadError) as e:
        load_image(broken)
    assert str(e.value) == ("OpenCV cannot decode this file although it looks like a PNG image: it is probably "
                            "corrupt, or the format is not supported by this OpenCV build.")
    with pytest.raises(ImageLoadError) as e:
        load_image(b"just some text, not a picture")
    assert str(e.value) == "Not an image OpenCV can decode (detected: text file)."

    def capped(*a, **k):
        raise cv2.error("OpenCV(4.x) error: (-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS in validateInputImageSize")

    monkeypatch.setattr(xio, "CV2_PIXEL_CAP", 2_000_000)
    monkeypatch.setattr(cv2, "imdecode", capped)
    with pytest.raises(ImageLoadError) as e:
        load_image(png)
    assert str(e.value) == ("This PNG image is larger than OpenCV's own limit of 2 megapixels "
                            "(OPENCV_IO_MAX_IMAGE_PIXELS) or of 1,048,576 pixels a side: downscale it first.")

    def other(*a, **k):
        raise cv2.error("some other failure")

    monkeypatch.setattr(cv2, "imdecode", other)
    with pytest.raises(ImageLoadError, match="^OpenCV cannot decode this file although it looks like a PNG image"):
        load_image(png)


def test_array_identity_is_bytes_shape_and_dtype():
    import hashlib

    from explorer.io import array_sha256

    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    ref = hashlib.sha256(a.tobytes() + repr(((3, 4), "|u1")).encode()).hexdigest()
    assert array_sha256(a) == ref
    assert array_sha256(np.asfortranarray(a)) == ref  # the layout in memory does not matter
    assert array_sha256(a.reshape(4, 3)) != ref and array_sha256(a.astype(np.uint16)) != ref
    empty = np.zeros((0, 3), np.float32)
    assert array_sha256(empty) == hashlib.sha256(repr(((0, 3), "<f4")).encode()).hexdigest()


def test_max_pixels_of_exactly_4_and_still_images_are_not_animated():
    assert load_image(np.zeros((2, 2, 3), np.uint8), max_pixels=4).original_size == (2, 2)
    buf = _io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="JPEG")
    assert not any("animated" in n for n in load_image(buf.getvalue()).notes)


def test_gif_colours_come_back_exactly():
    """OpenCV decodes a GIF without transparency to BGRA; the colours must come back as the palette's RGB."""
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[1, 2] = (250, 120, 10)
    arr[3, 0] = (0, 40, 200)
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    buf = _io.BytesIO()
    pal.save(buf, format="GIF")
    img = load_image(buf.getvalue())
    expected = np.asarray(pal.convert("RGB")) / 255.0
    np.testing.assert_allclose(img.pixels, expected, atol=1e-7)
    assert img.channels == 3 and img.pixels[1, 2, 0] > 0.9 > 0.1 > img.pixels[1, 2, 2]


def test_grey_with_alpha_tiff_keeps_its_alpha_like_the_same_png():
    """OpenCV decodes a grey + alpha TIFF as one channel: the alpha must not be lost (transparent → white, as PNG)."""
    ga = np.zeros((4, 5, 2), np.uint8)
    ga[..., 0] = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    ga[..., 1] = 255
    ga[0, 0, 1] = 0
    ga[2, 3, 1] = 128
    buf = io.BytesIO()
    Image.fromarray(ga, "LA").save(buf, format="TIFF")
    tif, png = load_image(buf.getvalue()), load_image(_png_bytes(ga, "LA"))
    assert tif.channels == png.channels == 2
    np.testing.assert_array_equal(tif.pixels, png.pixels)
    assert tif.pixels[0, 0].tolist() == [1.0, 1.0, 1.0]
    a = 128 / 255
    np.testing.assert_allclose(tif.pixels[2, 3], [ga[2, 3, 0] / 255 * a + (1 - a)] * 3, atol=1e-6)
    assert "alpha channel composited on white" in tif.notes


def test_a_depth_array_of_python_objects_is_a_depth_error():
    from explorer.depth import DepthLoadError, load_depth

    with pytest.raises(DepthLoadError, match="must be numeric, got dtype object"):
        load_depth(np.array([[1.0, "a"], [2.0, 3.0]], dtype=object))
