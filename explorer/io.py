"""Load a user-supplied image robustly: decode with OpenCV, validate, normalise to float RGB.

Every bad input raises :class:`ImageLoadError` (a ``ValueError``) with a message meant for the
notebook user; every silent fix-up (bit depth, alpha, EXIF rotation, grey → RGB) is recorded in
:attr:`LoadedImage.notes`.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

__all__ = ["ImageLoadError", "LoadedImage", "load_image"]


class ImageLoadError(ValueError):
    """Raised for every input that cannot be turned into an image; the message is user-facing."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, normalised image.

    Attributes:
        pixels: ``(H, W, 3)`` float32 RGB in ``[0, 1]``, C-contiguous, EXIF orientation applied.
        sha256: hex SHA-256 of the raw input bytes (arrays: array bytes + shape + dtype).
        name: file name, or ``"<array>"`` / ``"<bytes>"`` / ``"<file>"``.
        original_size: ``(width, height)`` as stored, before EXIF rotation.
        bit_depth: 8, 16 or 32 (float).
        channels: channels in the source: 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha.
        exif_orientation: EXIF orientation tag, 1..8 (1 = upright / none).
        notes: human-readable notes on every conversion that was applied.
    """

    pixels: np.ndarray
    sha256: str
    name: str
    original_size: tuple[int, int]
    bit_depth: int
    channels: int
    exif_orientation: int
    notes: tuple[str, ...]


_ORIENTATION_TEXT = {
    2: "mirrored horizontally",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "transposed (mirrored + rotated 90° counter-clockwise)",
    6: "rotated 90° clockwise",
    7: "transversed (mirrored + rotated 90° clockwise)",
    8: "rotated 90° counter-clockwise",
}
# Pillow mode → number of channels stored in the file (absent: use what OpenCV decoded).
_MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "F": 1, "I;16": 1, "I;16B": 1, "I;16L": 1,
                  "LA": 2, "La": 2, "RGB": 3, "RGBA": 4, "RGBa": 4, "PA": 4}


def _mp(n: int) -> str:
    mp = n / 1e6
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.2g}"


def _sniff(data: bytes) -> str:
    """Guess what ``data`` is from its magic number, for error messages."""
    head = data[:64]
    if head.startswith(b"%PDF"):
        return "PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "ZIP archive (or .docx/.xlsx/.npz)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heif"):
            return "HEIC/HEIF image"
        if brand in (b"avif", b"avis"):
            return "AVIF image"
        return "MP4/QuickTime video"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF image"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG image"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG image"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF image"
    if head.startswith(b"BM"):
        return "BMP image"
    if head.startswith(b"\x1f\x8b"):
        return "gzip archive"
    if head.startswith(b"\x93NUMPY"):
        return "NumPy .npy file (load it with np.load and pass the array)"
    try:
        text = data[:2048].decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte char may be cut at the end
        if exc.start < 2040:
            return "unknown binary data"
        text = data[: exc.start].decode("utf-8")
    if "<svg" in text.lower():
        return "SVG vector image (rasterise it to PNG first)"
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "text file"
    return "unknown binary data"


def _read_source(source: Any, name: str | None) -> tuple[bytes | np.ndarray, str]:
    """Turn any supported ``source`` into raw bytes (or an array) plus a display name."""
    if isinstance(source, np.ndarray):
        return source, name or "<array>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise ImageLoadError(f"File not found: {str(path)!r}.")
        if path.is_dir():
            raise ImageLoadError(f"{str(path)!r} is a directory, not an image file.")
        try:
            return path.read_bytes(), name or path.name
        except OSError as exc:
            raise ImageLoadError(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from exc
    if isinstance(source, (tuple, list)):  # ipywidgets 8 FileUpload.value
        if not source:
            raise ImageLoadError("No file uploaded yet: choose an image with the upload button first.")
        return _read_source(source[0], name)
    if isinstance(source, dict) or hasattr(source, "keys") and hasattr(source, "get"):  # one FileUpload entry
        if "content" not in source:
            raise ImageLoadError(
                f"Expected an uploaded-file dict with a 'content' key, got a {type(source).__name__} "
                f"with keys {sorted(map(str, source))[:5]}.")
        content = source["content"]
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ImageLoadError(f"Uploaded 'content' must be bytes, got {type(content).__name__}.")
        return bytes(content), name or str(source.get("name") or "<upload>")
    if hasattr(source, "read"):
        try:
            data = source.read()
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"Cannot read from the file object: {exc}.") from exc
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageLoadError(
                f"The file object returned {type(data).__name__}, not bytes: open it in binary mode ('rb').")
        fname = getattr(source, "name", None)
        return bytes(data), name or (os.path.basename(fname) if isinstance(fname, str) else "<file>")
    raise ImageLoadError(
        f"Cannot load an image from a {type(source).__name__}: pass a path, bytes, a binary file object, "
        "a numpy array or the value of a FileUpload widget.")


def read_source(source: Any, name: str | None, *, error: type = ImageLoadError, noun: str = "an image") -> tuple[bytes | np.ndarray, str]:
    """:func:`_read_source` for other media: its errors re-raised as ``error``, with "an image" read as ``noun``
    (``"a video"``, ``"a depth map"``…)."""
    try:
        return _read_source(source, name)
    except ImageLoadError as e:
        if error is ImageLoadError:
            raise
        raise error(str(e).replace("an image", noun)) from None


def array_sha256(arr: np.ndarray) -> str:
    """SHA-256 of an array's bytes, shape and dtype (the identity of an input given as an array)."""
    a = np.ascontiguousarray(arr)
    return hashlib.sha256(a.tobytes() + repr((a.shape, a.dtype.str)).encode()).hexdigest()


def _check_size(w: int, h: int, max_pixels: int) -> None:
    if w < 2 or h < 2:
        raise ImageLoadError(f"Image is {w} x {h} pixels: too small (at least 2 x 2 needed).")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"Image is {w} x {h} = {_mp(w * h)} megapixels, above the limit of {_mp(max_pixels)} "
            "megapixels (max_pixels). Downscale it first or raise max_pixels.")


def _read_header(data: bytes) -> dict | None:
    """Size, mode, EXIF orientation and frame count from Pillow WITHOUT decoding pixels; None if unknown."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we apply our own, clearer limit
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = 1
            # PNG getexif() would decode the image unless the eXIf chunk precedes the pixel data.
            if im.format != "PNG" or "exif" in im.info:
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # malformed EXIF: ignore it, pixels may still be fine
                    orientation = 1
            return {"size": im.size, "mode": im.mode, "format": im.format, "orientation": orientation,
                    "frames": int(getattr(im, "n_frames", 1) or 1),
                    "transparency": "transparency" in im.info}
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _check_truncated(data: bytes) -> None:
    if data.startswith(b"\xff\xd8\xff") and not data.rstrip(b"\x00 \t\r\n").endswith(b"\xff\xd9"):
        marker = "JPEG end marker missing"
    elif data.startswith(b"\x89PNG\r\n\x1a\n") and data.rfind(b"IEND") < 0:
        marker = "PNG IEND chunk missing"
    else:
        return
    raise ImageLoadError(
        f"The file looks truncated ({marker}): was the upload or download interrupted?")


def _to_float(img: np.ndarray, notes: list[str]) -> tuple[np.ndarray, int]:
    """uint8 / uint16 / float ``(H, W[, C])`` → float32 in [0, 1] (NaN → 0, clipped), plus bit depth."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0, 8
    if img.dtype == np.uint16:
        notes.append("16-bit image scaled to [0, 1]")
        return img.astype(np.float32) / 65535.0, 16
    if img.dtype.kind == "f":
        out = img.astype(np.float32)
        nan = np.isnan(out)
        if nan.any():
            notes.append(f"{int(nan.sum())} NaN values replaced by 0")
            out = np.where(nan, np.float32(0), out)
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            notes.append(f"float values in [{lo:.3g}, {hi:.3g}] clipped to [0, 1]")
            out = np.clip(out, 0.0, 1.0)
        return out, 32
    raise ImageLoadError(f"Unsupported pixel type {img.dtype}: expected uint8, uint16 or float.")


def _to_rgb(img: np.ndarray, bgr: bool, notes: list[str]) -> np.ndarray:
    """float ``(H, W)`` / ``(H, W, 1|2|3|4)`` → ``(H, W, 3)`` RGB, alpha composited on white."""
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    alpha = None
    if c in (2, 4):
        img, alpha = img[:, :, :-1], img[:, :, -1:]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
        notes.append("grayscale replicated to RGB")
    elif bgr:
        img = img[:, :, ::-1]
    if alpha is not None:
        if float(alpha.min()) >= 1.0:
            notes.append("fully opaque alpha channel dropped")
        else:
            img = img * alpha + (1.0 - alpha)
            notes.append("alpha channel composited on white")
    return img


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to ``(H, W, 3)`` so the result displays upright."""
    if orientation == 2:
        return cv2.flip(img, 1)
    if orientation == 3:
        return cv2.rotate(img, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(img, 0)
    if orientation == 5:
        return cv2.transpose(img)
    if orientation == 6:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(img), -1)
    if orientation == 8:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


def _from_array(arr: np.ndarray, name: str, max_pixels: int) -> LoadedImage:
    if arr.dtype.kind not in "uf" or arr.dtype.kind == "u" and arr.dtype not in (np.uint8, np.uint16):
        raise ImageLoadError(
            f"Unsupported array dtype {arr.dtype} (shape {arr.shape}): expected uint8, uint16 or float in [0, 1].")
    if not (arr.ndim == 2 or arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
        raise ImageLoadError(
            f"Unsupported array shape {arr.shape} (dtype {arr.dtype}): expected (H, W), (H, W, 1), "
            "(H, W, 3) or (H, W, 4).")
    h, w = arr.shape[:2]
    _check_size(w, h, max_pixels)
    arr = np.ascontiguousarray(arr)
    digest = array_sha256(arr)
    notes: list[str] = []
    img, depth = _to_float(arr, notes)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    rgb = _to_rgb(img, bgr=False, notes=notes)
    return LoadedImage(np.ascontiguousarray(rgb, dtype=np.float32), digest, name, (w, h), depth,
                       channels, 1, tuple(notes))


def load_image(source: Any, *, max_pixels: int = 80_000_000, name: str | None = None) -> LoadedImage:
    """Decode and validate an image from any common source.

    Args:
        source: a path (``str`` / ``os.PathLike``); ``bytes`` / ``bytearray`` / ``memoryview``; a
            binary file object; a numpy array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
            ``(H, W, 4)`` of uint8 / uint16 / float (float in ``[0, 1]``, RGB order); or the value
            of an ipywidgets 8 ``FileUpload`` (tuple of dicts with ``name`` / ``content``; the
            first file is used).
        max_pixels: refuse images with ``width * height`` above this (checked from the header,
            before decoding).
        name: display name overriding the one derived from ``source``.

    Returns:
        A :class:`LoadedImage` whose ``pixels`` are ``(H, W, 3)`` float32 RGB in ``[0, 1]``.

    Raises:
        ImageLoadError: for every unusable input, with a message for the user.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 4:
        raise ImageLoadError(f"max_pixels must be an integer >= 4, got {max_pixels!r}.")
    data, name = _read_source(source, name)
    if isinstance(data, np.ndarray):
        return _from_array(data, name, int(max_pixels))
    if not data:
        raise ImageLoadError("The file is empty.")
    digest = hashlib.sha256(data).hexdigest()
    kind = _sniff(data)
    header = _read_header(data)
    if header is not None:
        _check_size(*header["size"], max_pixels)
    _check_truncated(data)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        if kind.endswith("image"):
            raise ImageLoadError(
                f"OpenCV cannot decode this file although it looks like a {kind}: it is probably corrupt, "
                "or the format is not supported by this OpenCV build.")
        raise ImageLoadError(f"Not an image OpenCV can decode (detected: {kind}).")
    h, w = img.shape[:2]
    if header is None:
        _check_size(w, h, max_pixels)
    notes: list[str] = []
    if header is not None and header["frames"] > 1:
        fmt = "GIF" if header["format"] == "GIF" else (header["format"] or "image")
        notes.append(f"animated {fmt}: first frame used (of {header['frames']})")
    decoded_c = 1 if img.ndim == 2 else img.shape[2]
    mode = header["mode"] if header is not None else ""
    if mode == "P":
        channels = 4 if header["transparency"] else 3
    else:
        channels = _MODE_CHANNELS.get(mode, decoded_c)
    pixels, depth = _to_float(img, notes)
    if channels in (1, 2) and decoded_c > 2:  # OpenCV expanded grey(+alpha) to BGR(A)
        pixels = pixels[:, :, [0, 3]] if decoded_c == 4 else pixels[:, :, :1]
    elif channels == 3 and decoded_c == 4:  # e.g. GIF without transparency: alpha added by OpenCV
        pixels = pixels[:, :, :3]
    pixels = _to_rgb(pixels, bgr=True, notes=notes)
    orientation = header["orientation"] if header is not None else 1
    if orientation not in range(1, 9):
        notes.append(f"invalid EXIF orientation {orientation} ignored")
        orientation = 1
    if orientation != 1:
        pixels = _apply_orientation(pixels, orientation)
        notes.append(f"EXIF orientation {orientation} applied ({_ORIENTATION_TEXT[orientation]})")
    return LoadedImage(np.ascontiguousarray(pixels, dtype=np.float32), digest, name, (w, h), depth,
                       channels, orientation, tuple(notes))
