"""explorer.io's header readers on hand-made bytes (JPEG markers, GIF blocks, TIFF / BigTIFF IFDs, Radiance lines),
the size checks around decoding, and the conversions whose edge cases the round-trip tests of test_io.py do not
reach (exact float ranges, NaN counts, opaque float alpha, CMYK / grey GIF / animated GIF channels, EXIF that is
late or malformed). Written against the mutants that survived those tests (tests/MUTATION.md)."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, features

from explorer import io as eio
from explorer.io import ImageLoadError, array_sha256, header_size, image_size, load_image, read_source


def _pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _encode(ext: str, arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pillow_rgb(data: bytes) -> np.ndarray:
    """Pillow's independent decode (first frame), as float RGB in [0, 1]."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255


# ---------------------------------------------------------------- read_source for other media


class _MediaError(ValueError):
    pass


def test_read_source_reraises_the_image_message_unchanged_under_the_callers_error_class():
    with pytest.raises(ImageLoadError) as ref:
        load_image(42)
    with pytest.raises(_MediaError) as got:
        read_source(42, None, error=_MediaError)
    assert str(got.value) == str(ref.value)
    assert str(got.value).startswith("Cannot load an image from a int: pass a path")
    with pytest.raises(_MediaError, match="^Cannot load a video from a int: pass a path"):
        read_source(42, None, error=_MediaError, noun="a video")


def test_read_source_keeps_the_name_given_by_the_caller():
    assert read_source(b"abc", "myname") == (b"abc", "myname")
    assert read_source(io.BytesIO(b"abc"), "clip.mp4", error=_MediaError, noun="a video") == (b"abc", "clip.mp4")
    assert read_source(b"abc", None) == (b"abc", "<bytes>")


def test_a_file_like_object_with_get_but_no_keys_is_read_as_a_file():
    """Only a mapping (``keys`` and ``get``) is an upload entry; a reader that happens to have ``get`` is a file."""
    class Reader:
        name = "/some/dir/photo.png"

        def __init__(self, data: bytes):
            self._data = data

        def read(self) -> bytes:
            return self._data

        def get(self, key, default=None):
            return default

    rgb = _rgb(5, 6)
    img = load_image(Reader(_encode(".png", rgb[..., ::-1].copy())))
    assert img.name == "photo.png"
    np.testing.assert_array_equal(img.pixels, rgb.astype(np.float32) / 255)


@pytest.mark.parametrize("brand, what", [(b"heic", "HEIC/HEIF image"), (b"mif1", "HEIC/HEIF image"),
                                         (b"avif", "AVIF image")])
def test_heif_and_avif_named_in_the_error_when_more_bytes_follow_the_brand(brand, what):
    data = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1" + b"\x00" * 40
    with pytest.raises(ImageLoadError, match=f"looks like an {what}: it is probably corrupt"):
        load_image(data)


# ---------------------------------------------------------------- array_sha256


def test_array_sha256_identifies_contents_shape_and_dtype():
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    h = array_sha256(a)
    assert len(h) == 64 and h == array_sha256(a.copy()) == array_sha256(np.asfortranarray(a))
    b = a.copy()
    b[2, 3] += 1
    assert array_sha256(b) != h  # one element changed
    assert array_sha256(a.astype(np.uint16)) != h  # same bytes, other dtype
    assert array_sha256(a.reshape(4, 3)) != h  # same bytes, other shape
    assert array_sha256(a.T) != h


def test_array_sha256_of_a_scalar_array_and_of_zero_size_items():
    s = np.array(2.5, np.float32)  # 0-d, itemsize 4
    assert array_sha256(s) == array_sha256(np.float32(2.5) * np.ones((), np.float32))
    assert array_sha256(s) != array_sha256(np.array(2.0, np.float32))
    v = np.zeros((2, 3), "V0")  # items of 0 bytes: only the shape and dtype tell arrays apart
    assert array_sha256(v) == array_sha256(np.zeros((2, 3), "V0"))
    assert array_sha256(v) != array_sha256(np.zeros((3, 2), "V0"))


@pytest.mark.parametrize("arr", [np.array([{"a": 1}, None], dtype=object),
                                 np.zeros(2, dtype=[("x", np.int32), ("o", object)])])
def test_array_sha256_refuses_arrays_of_python_objects(arr):
    """The bytes of an object array are memory addresses: equal contents would hash differently from run to run."""
    with pytest.raises(TypeError, match=r"^Cannot hash an array of Python objects \(dtype .*\): its bytes are memory "
                                        r"addresses, not the values; convert it to a numeric dtype first\.$"):
        array_sha256(arr)


# ---------------------------------------------------------------- JPEG markers


def _sof(w: int, h: int, marker: int = 0xC0) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"


_APP0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


@pytest.mark.parametrize("body, size", [
    (_APP0 + _sof(640, 480), (640, 480)),
    (_APP0 + _sof(300, 200, 0xC2), (300, 200)),  # progressive
    (b"\xff\xff\xff" + _sof(640, 480)[1:], (640, 480)),  # fill bytes (FF FF) before the marker
    (b"\xff\xd7" + _sof(64, 48), (64, 48)),  # RST7 and TEM have no length: the next marker follows at once
    (b"\xff\xd0" + b"\xff\x01" + _sof(64, 48), (64, 48)),
    (b"\xff\xd9" + _sof(64, 48), None),  # end of image before any frame header
    (b"\xff\xd9\x00\x02" + _sof(64, 48), None),
    (b"\xff\xda\x00\x02" + _sof(64, 48), None),  # a scan before the frame header: no size
    (b"\xff\xe0\x00", None),  # a segment cut inside its length
    (_APP0 + b"\x00\xc0", None),  # not a marker where one must be
])
def test_jpeg_size_from_crafted_markers(body, size):
    assert image_size(b"\xff\xd8" + body) == size


def test_jpeg_size_of_encoded_files():
    assert image_size(_encode(".jpg", _rgb(30, 41))) == (41, 30)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    assert image_size(_pil_bytes(Image.fromarray(_rgb(17, 9)), "JPEG", exif=exif.tobytes(), progressive=True)) == (9, 17)


# ---------------------------------------------------------------- GIF screen and first frame


def _gif(w: int, h: int, flags: int = 0, gct: bytes = b"", body: bytes = b"") -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", w, h, flags, 0, 0) + gct + body


def _descriptor(left: int, top: int, w: int, h: int, flags: bytes = b"\x00") -> bytes:
    return b"\x2c" + struct.pack("<HHHH", left, top, w, h) + flags


_GCE = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control extension: delay 10, no transparency


@pytest.mark.parametrize("data, size", [
    (_gif(20, 10), (20, 10)),  # the 13-byte header alone
    (_gif(20, 10, body=_descriptor(4, 2, 30, 16) + b"\x02\x02\x4c\x01\x00\x3b"), (34, 18)),  # a frame beyond the screen
    (_gif(20, 10, body=_descriptor(0, 0, 8, 4)), (20, 10)),  # a frame inside it
    (_gif(20, 10, 0x81, bytes(range(12)), _descriptor(1, 1, 30, 20) + b"\x3b"), (31, 21)),  # after a 4-colour table
    (_gif(20, 10, 0x83, bytes(48), _descriptor(0, 0, 25, 5) + b"\x3b"), (25, 10)),  # after a 16-colour table
    (_gif(20, 10, 0x01, b"", _descriptor(1, 1, 30, 20) + b"\x3b"), (31, 21)),  # a table size but no table flag
    (_gif(20, 10, body=_GCE + _descriptor(0, 0, 25, 30)), (25, 30)),  # extensions are skipped
    (_gif(20, 10, body=b"\x21\xfe\x03abc\x02hi\x00" + _GCE + _descriptor(0, 0, 25, 30)), (25, 30)),
    (_gif(20, 10, body=_descriptor(0, 0, 25, 30)[:9]), (25, 30)),  # a descriptor that ends with the data
    (_gif(20, 10, body=_descriptor(0, 0, 25, 30)[:5]), (20, 10)),  # a descriptor cut short: the screen
    (_gif(20, 10, body=b"\x21\xfe\x00"), (20, 10)),  # data ending after an extension
    (_gif(20, 10, body=b"\x21\xfe\x05ab"), (20, 10)),  # ... inside its sub-blocks
    (_gif(20, 10, body=b"\x21\xf9"), (20, 10)),  # ... right after its label
    (_gif(20, 10, body=b"\x21"), (20, 10)),
    (_gif(20, 10, body=b"\x3b\x00\x00" + _descriptor(0, 0, 25, 30)), (20, 10)),  # nothing is read past the trailer
    (_gif(20, 10)[:12], None),
])
def test_gif_size_is_the_screen_grown_to_the_first_frame(data, size):
    assert image_size(data) == size


def test_gif_frame_larger_than_its_screen_is_judged_by_the_frame():
    src = bytearray(_pil_bytes(Image.fromarray(_rgb(8, 10)).quantize(8), "GIF"))
    src[6:10] = struct.pack("<HH", 6, 4)  # the screen claims 6 x 4, the frame is 10 x 8
    assert image_size(bytes(src)) == (10, 8) and header_size(bytes(src)) == (10, 8)
    with pytest.raises(ImageLoadError, match=r"^Image is 10 x 8 = .* megapixels, above the limit"):
        load_image(bytes(src), max_pixels=79)


# ---------------------------------------------------------------- TIFF / BigTIFF, BMP, Radiance, others


def _tiff_entry(e: str, tag: int, typ: int, value: int, big: bool) -> bytes:
    fmt = {3: "H", 4: "I", 16: "Q"}[typ]
    if big:
        return struct.pack(e + "HHQ", tag, typ, 1) + struct.pack(e + fmt, value).ljust(8, b"\x00")
    return struct.pack(e + "HHI", tag, typ, 1) + struct.pack(e + fmt, value).ljust(4, b"\x00")


def _bigtiff(e: str, w: int, h: int, typ: int = 16) -> bytes:
    head = (b"II+\x00" if e == "<" else b"MM\x00+") + struct.pack(e + "HHQ", 8, 0, 16)
    ifd = struct.pack(e + "Q", 2) + _tiff_entry(e, 256, typ, w, True) + _tiff_entry(e, 257, typ, h, True)
    return head + ifd + struct.pack(e + "Q", 0)


@pytest.mark.parametrize("e", ["<", ">"])
def test_bigtiff_size_in_either_byte_order(e):
    assert image_size(_bigtiff(e, 70_000, 3, 16)) == (70_000, 3)
    assert image_size(_bigtiff(e, 640, 480, 4)) == (640, 480)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_bigtiff_claiming_a_huge_width_is_refused_as_too_large():
    data = _bigtiff(">", 1 << 63, 4)
    assert image_size(data) == (1 << 63, 4)
    with pytest.raises(ImageLoadError, match="above the limit of 40 megapixels"):
        load_image(data)


@pytest.mark.parametrize("big", [False, True])
def test_tiff_ifd_offset_past_the_end_gives_no_size(big):
    """An offset with its top bit set points past the end: nothing is read, in particular not from the file's end."""
    e = ">"
    entries = _tiff_entry(e, 256, 3, 640, big) + _tiff_entry(e, 257, 3, 480, big)
    if big:
        ifd = struct.pack(e + "Q", 2) + entries + struct.pack(e + "Q", 0)
        data = b"MM\x00+" + struct.pack(e + "HHQ", 8, 0, (1 << 64) - len(ifd)) + ifd
    else:
        ifd = struct.pack(e + "H", 2) + entries + struct.pack(e + "I", 0)
        data = b"MM\x00*" + struct.pack(e + "I", (1 << 32) - len(ifd)) + ifd
    assert image_size(data) is None
    good = data[:4] + (struct.pack(e + "HHQ", 8, 0, 16) if big else struct.pack(e + "I", 8)) + ifd
    assert image_size(good) == (640, 480)


def test_bmp_size():
    assert image_size(_encode(".bmp", _rgb(13, 21))) == (21, 13)
    assert image_size(_encode(".bmp", _rgb(13, 21)[::-1].copy())[:26]) == (21, 13)


def test_radiance_size_is_read_from_the_line_after_the_first_blank_line():
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 48 +X 64\n"
    assert image_size(head + b"\x02\x02\x00\x40\n\n+Y 1 +X 2\n\n") == (64, 48)
    assert image_size(b"#?RGBE\n\n+X 64 -Y 48\n") == (64, 48)


def test_image_size_accepts_bytes_bytearray_and_memoryview():
    data = _encode(".png", _rgb(7, 9))
    assert image_size(data) == image_size(bytearray(data)) == image_size(memoryview(data)) == (9, 7)


@pytest.mark.parametrize("data", [
    b"hello world", b"", b"PX 4 3\n255\n",  # P + a letter that is no Netpbm kind
    b"RIFX\x00\x00\x00\x00WEBPVP8X" + bytes(10) + b"\x3f\x00\x00\x1f\x00\x00",  # WEBP at 8 but no RIFF
])
def test_image_size_of_what_no_reader_knows_is_none(data):
    assert image_size(data) is None


# ---------------------------------------------------------------- header_size: Pillow's reader, else image_size


@pytest.mark.parametrize("fmt", ["TGA", "PCX"])
def test_header_size_reads_formats_only_pillow_knows(fmt):
    data = _pil_bytes(Image.fromarray(_rgb(30, 40)), fmt)
    assert image_size(data) is None
    assert header_size(data) == (40, 30)


def test_header_size_falls_back_to_image_size_and_knows_nothing_of_junk():
    damaged = bytearray(_encode(".png", _rgb(6, 5)))
    damaged[29:33] = b"\x00\x00\x00\x00"  # IHDR checksum broken: Pillow refuses it, the IHDR bytes still tell
    assert eio._read_header(bytes(damaged)) is None
    assert header_size(bytes(damaged)) == (5, 6)
    assert header_size(b"hello world") is None


# ---------------------------------------------------------------- size checks around decoding


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow without JPEG 2000")
def test_jpeg2000_size_from_pillow_refused_before_decoding(monkeypatch):
    rgb = _rgb(30, 40)
    data = _pil_bytes(Image.fromarray(rgb), "JPEG2000")
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        pytest.skip("OpenCV without JPEG 2000")
    assert image_size(data) is None  # only Pillow's header reader knows this format
    assert load_image(data).original_size == (40, 30)
    np.testing.assert_array_equal(load_image(data).pixels, rgb.astype(np.float32) / 255)  # lossless

    def no_decoding(*a, **k):
        raise AssertionError("an image above max_pixels must be refused before decoding")

    monkeypatch.setattr(eio, "_decode", no_decoding)
    with pytest.raises(ImageLoadError, match=r"40 x 30 = 0\.0012 megapixels, above the limit of 0\.001 megapixels"):
        load_image(data, max_pixels=1000)


def _no_header(monkeypatch, size=None):
    header = None if size is None else {"size": size, "mode": "L", "format": "PNG", "orientation": 1, "frames": 1,
                                        "transparency": False}
    monkeypatch.setattr(eio, "_read_header", lambda data: header)
    monkeypatch.setattr(eio, "image_size", lambda data: None)


def test_decoded_size_checked_when_no_header_reader_knows_it(monkeypatch):
    grey = np.random.default_rng(0).integers(0, 256, (100, 100), dtype=np.uint8)
    data = _encode(".png", grey)
    _no_header(monkeypatch)
    with pytest.raises(ImageLoadError, match=r"Image is 100 x 100 = 0\.01 megapixels, above the limit of 0\.0025"):
        load_image(data, max_pixels=2500)
    img = load_image(data, max_pixels=10_000)
    assert img.original_size == (100, 100) and img.channels == 1 and img.notes == ("grayscale replicated to RGB",)
    np.testing.assert_array_equal(img.pixels[..., 1], grey.astype(np.float32) / 255)
    with pytest.raises(ImageLoadError, match=r"^Image is 1 x 1 pixels: too small"):
        load_image(_encode(".png", np.zeros((1, 1), np.uint8)))


def test_decoded_size_checked_when_the_header_understates_it(monkeypatch):
    data = _encode(".png", np.zeros((100, 100), np.uint8))
    _no_header(monkeypatch, size=(10, 10))
    with pytest.raises(ImageLoadError, match=r"Image is 100 x 100 = 0\.01 megapixels, above the limit"):
        load_image(data, max_pixels=2500)


def test_limit_in_the_message_is_rounded_to_two_digits():
    with pytest.raises(ImageLoadError, match=r"2000 x 1000 = 2 megapixels, above the limit of 1\.3 megapixels"):
        load_image(np.zeros((1000, 2000), np.uint8), max_pixels=1_250_001)


def test_out_of_memory_while_decoding_is_explained(monkeypatch):
    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(eio.cv2, "imdecode", oom)
    with pytest.raises(ImageLoadError, match=r"^Decoding this PNG image ran out of memory: downscale it first\.$"):
        load_image(_encode(".png", _rgb(4, 4)))


# ---------------------------------------------------------------- EXIF: late in a PNG, malformed in a JPEG


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_exif(rgb: np.ndarray, orientation: int, where: str) -> bytes:
    h, w, _ = rgb.shape
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    ex = _chunk(b"eXIf", exif.tobytes()[6:])  # the TIFF structure, without the "Exif\0\0" of JPEG's APP1
    idat = _chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))))
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)), idat, _chunk(b"IEND", b"")]
    chunks.insert(1 if where == "before" else 2, ex)
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def test_png_exif_before_the_pixels_is_applied_and_after_them_ignored():
    """Reading an eXIf chunk that follows IDAT would decode the pixels before the size check (browsers ignore it
    too): only an eXIf before the image data counts."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    before = load_image(_png_with_exif(rgb, 6, "before"))
    assert before.pixels.shape == (6, 4, 3) and before.exif_orientation == 6
    assert before.notes == ("EXIF orientation 6 applied (rotated 90° clockwise)",)
    assert tuple(before.pixels[0, -1]) == (1.0, 0.0, 0.0)  # stored top-left → displayed top-right
    after = load_image(_png_with_exif(rgb, 6, "after"))
    assert after.pixels.shape == (4, 6, 3) and after.exif_orientation == 1 and after.notes == ()
    np.testing.assert_array_equal(after.pixels, rgb.astype(np.float32) / 255)


def _exif_orientation_entry(typ: int, count: int, value: bytes) -> bytes:
    ifd = struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, typ, count) + value + struct.pack(">I", 0)
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd


@pytest.mark.parametrize("exif", [_exif_orientation_entry(2, 4, b"abc\x00"),  # orientation as text
                                  _exif_orientation_entry(7, 4, b"\x00\x06\x00\x06")])  # as raw bytes
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_malformed_jpeg_exif_is_ignored(exif):
    bgr = np.zeros((8, 10, 3), np.uint8)
    bgr[:3, :3] = (0, 0, 255)
    plain = _encode(".jpg", bgr)
    data = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + plain[2:]
    img = load_image(data)
    assert img.exif_orientation == 1 and img.notes == () and img.pixels.shape == (8, 10, 3)
    np.testing.assert_array_equal(img.pixels, load_image(plain).pixels)


# ---------------------------------------------------------------- channels: CMYK, grey GIF, animated GIF


def test_cmyk_jpeg_reports_the_channels_opencv_decoded():
    cmyk = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 20, 4), dtype=np.uint8), "CMYK")
    data = _pil_bytes(cmyk, "JPEG", quality=95)
    img = load_image(data)
    assert img.channels == 3 and img.bit_depth == 8 and img.notes == ()
    np.testing.assert_allclose(img.pixels, _pillow_rgb(data), atol=3 / 255)


def test_grey_gif_is_one_channel():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    data = _pil_bytes(Image.fromarray(ramp, "L"), "GIF")
    assert Image.open(io.BytesIO(data)).mode == "L"
    img = load_image(data)
    assert img.channels == 1 and img.notes == ("grayscale replicated to RGB",)
    np.testing.assert_array_equal(img.pixels, _pillow_rgb(data))


def test_animated_gif_without_transparency_drops_the_alpha_opencv_adds():
    frames = [Image.fromarray(_rgb(12, 10, s)).quantize(16) for s in (1, 2)]
    data = _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (12, 10, 4)
    img = load_image(data)
    assert img.channels == 3 and img.notes == ("animated GIF: first frame used (of 2)",)
    np.testing.assert_allclose(img.pixels, _pillow_rgb(data), atol=1 / 255)


def test_int32_tiff_is_refused_with_its_pixel_type():
    data = _pil_bytes(Image.fromarray(np.arange(72, dtype=np.int32).reshape(8, 9), "I"), "TIFF")
    with pytest.raises(ImageLoadError, match=r"^Unsupported pixel type int32: expected uint8, uint16 or float\.$"):
        load_image(data)


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int8, np.uint64])
def test_unsupported_array_dtypes_are_named(dtype):
    with pytest.raises(ImageLoadError, match=f"^Unsupported array dtype {np.dtype(dtype).name} "):
        load_image(np.zeros((4, 4, 3), dtype))


# ---------------------------------------------------------------- float arrays: range, NaN, alpha


def test_floats_exactly_in_0_1_are_not_clipped():
    a = np.zeros((3, 4, 3), np.float32)
    a[0, 0], a[1, 1] = 1.0, 0.5
    img = load_image(a)
    assert img.notes == () and img.bit_depth == 32
    np.testing.assert_array_equal(img.pixels, a)
    # judged as the float32 they become: 1 + 1e-12 is 1.0 and -1e-50 is -0.0, nothing to clip
    b = a.astype(np.float64)
    b[0, 0], b[2, 2] = 1 + 1e-12, -1e-50
    assert load_image(b).notes == ()


def test_floats_above_1_are_clipped_with_their_range_noted():
    a = np.full((3, 4, 3), 0.25, np.float32)
    a[1, 2] = 1.5
    img = load_image(a)
    assert img.notes == ("float values in [0.25, 1.5] clipped to [0, 1]",)
    assert img.pixels.max() == 1.0 and tuple(img.pixels[1, 2]) == (1.0, 1.0, 1.0)


def test_nan_range_note_ignores_the_nans():
    a = np.linspace(-0.5, 0.5, 36, dtype=np.float32).reshape(3, 4, 3)
    a[1, 1, 1] = np.nan
    img = load_image(a)
    assert img.notes == ("1 NaN values replaced by 0", "float values in [-0.5, 0.5] clipped to [0, 1]")
    assert img.pixels[1, 1, 1] == 0.0


def test_nans_counted_over_every_band_of_rows(monkeypatch):
    monkeypatch.setattr(eio, "_BAND_PIXELS", 64)  # 4 rows of 16 a band
    a = np.full((20, 16), 0.5, np.float32)
    a[0, 0] = a[5, 3] = a[9, 9] = a[19, 15] = a[19, 14] = np.nan
    img = load_image(a)
    assert img.notes == ("5 NaN values replaced by 0", "grayscale replicated to RGB")
    assert (img.pixels == 0).sum() == 15


def test_float_alpha_exactly_one_is_dropped():
    a = np.full((3, 4, 4), 0.5, np.float32)
    a[..., 3] = 1.0
    img = load_image(a)
    assert img.notes == ("fully opaque alpha channel dropped",) and img.channels == 4
    np.testing.assert_array_equal(img.pixels, 0.5)
    b = a.astype(np.float64)
    b[..., 3] = 1 - 1e-12  # 1.0 as float32
    assert load_image(b).notes == ("fully opaque alpha channel dropped",)


def test_float_alpha_nan_is_transparent():
    a = np.full((3, 4, 4), 0.25, np.float32)
    a[..., 3] = 1.0
    a[2, 1, 3] = np.nan
    img = load_image(a)
    assert img.notes == ("1 NaN values replaced by 0", "alpha channel composited on white")
    assert tuple(img.pixels[2, 1]) == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.delete(img.pixels.reshape(-1, 3), 9, axis=0), 0.25)


def test_float_alpha_composited_in_float32():
    rng = np.random.default_rng(3)
    a = rng.random((16, 16, 4)).astype(np.float32)
    rgb, alpha = a[..., :3], a[..., 3:]
    expected = rgb * alpha
    expected += np.float32(1) - alpha
    img = load_image(a)
    assert img.notes == ("alpha channel composited on white",)
    np.testing.assert_array_equal(img.pixels, expected)
