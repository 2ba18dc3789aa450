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
