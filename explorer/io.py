"""Load a user-supplied image robustly: decode with OpenCV, validate, normalise to float RGB.

Every bad input raises :class:`ImageLoadError` (a ``ValueError``) with a message meant for the
notebook user; every silent fix-up (bit depth, alpha, EXIF rotation, grey → RGB) is recorded in
:attr:`LoadedImage.notes`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: OpenCV's own cap on the pixels of one decoded image (width x height), a second line behind our header checks.
#: OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when cv2 is first imported: we set it (when unset) before that.
CV2_PIXEL_CAP_DEFAULT = 1 << 26  # 67 megapixels
_CV2_WAS_IMPORTED = "cv2" in sys.modules
_CV2_ENV_BEFORE = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(CV2_PIXEL_CAP_DEFAULT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = ["DEFAULT_MAX_PIXELS", "ImageLoadError", "LoadedImage", "image_size", "load_image"]

#: Default ``max_pixels`` of :func:`load_image` (and of the depth loader): with the conversion done in bands of rows,
#: the worst accepted image (16-bit RGBA) peaks near 20 bytes a pixel, i.e. about 0.8 GB.
DEFAULT_MAX_PIXELS = 40_000_000
#: Pixels converted to float at a time (bounds the temporaries of the conversion to a few tens of megabytes).
_BAND_PIXELS = 1 << 20


def _parse_size_t(text: "str | None", default: int) -> int:
    """A value of an OpenCV size parameter (``"67108864"``, ``"64M"``, ``"1GB"``…), or ``default``."""
    if not text:
        return default
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        return int(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        return default


#: The cap OpenCV actually applies in this process (its own default, 2**30, if cv2 was imported before us unset).
CV2_PIXEL_CAP = _parse_size_t(_CV2_ENV_BEFORE, 1 << 30) if _CV2_WAS_IMPORTED else \
    _parse_size_t(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"], 1 << 30)


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
    """SHA-256 of an array's bytes, shape and dtype (the identity of an input given as an array).

    Raises:
        TypeError: for an array holding Python objects (dtype ``object``, or a structured dtype with an object
            field): its bytes are pointers, which differ from run to run for equal contents.
    """
    a = np.ascontiguousarray(arr)
    if a.dtype.hasobject:
        raise TypeError(f"Cannot hash an array of Python objects (dtype {a.dtype}): its bytes are memory addresses, "
                        "not the values; convert it to a numeric dtype first.")
    h = hashlib.sha256()
    if a.dtype.itemsize == 0:
        h.update(a.tobytes())
    else:  # the same bytes as a.tobytes(), hashed in place (no copy of a large array)
        h.update(a.reshape(-1).view(np.uint8))
    h.update(repr((a.shape, a.dtype.str)).encode())
    return h.hexdigest()


def _check_size(w: int, h: int, max_pixels: int) -> None:
    if w < 2 or h < 2:
        raise ImageLoadError(f"Image is {w} x {h} pixels: too small (at least 2 x 2 needed).")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"Image is {w} x {h} = {_mp(w * h)} megapixels, above the limit of {_mp(max_pixels)} "
            "megapixels (max_pixels). Downscale it first or raise max_pixels.")
    if w * h > CV2_PIXEL_CAP:
        raise ImageLoadError(
            f"Image is {w} x {h} = {_mp(w * h)} megapixels, above OpenCV's own limit of {_mp(CV2_PIXEL_CAP)} megapixels. "
            "Set the environment variable OPENCV_IO_MAX_IMAGE_PIXELS higher before cv2 or explorer is first imported "
            "(OpenCV reads it once), or downscale the image.")


# ---------------------------------------------------------------- image sizes from the header bytes alone
def _png_size(d: bytes):
    if d[12:16] == b"IHDR" and len(d) >= 24:
        return struct.unpack(">II", d[16:24])
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(d: bytes):
    i, n = 2, len(d)
    while i + 4 <= n:
        if d[i] != 0xFF:
            return None
        while i < n and d[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = d[i]
        i += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if marker in (0xD9, 0xDA) or i + 2 > n:  # end of image, start of scan: no frame header before it
            return None
        length = int.from_bytes(d[i:i + 2], "big")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                return None
            h, w = struct.unpack(">HH", d[i + 3:i + 7])
            return w, h
        i += length
    return None


def _tiff_size(d: bytes):
    le = d[:2] == b"II"
    e = "<" if le else ">"
    try:
        version = struct.unpack(e + "H", d[2:4])[0]
        if version == 42:
            off = struct.unpack(e + "I", d[4:8])[0]
            count = struct.unpack(e + "H", d[off:off + 2])[0]
            entries = [(off + 2 + 12 * k, 12) for k in range(count)]
        elif version == 43:  # BigTIFF
            off = struct.unpack(e + "Q", d[8:16])[0]
            count = struct.unpack(e + "Q", d[off:off + 8])[0]
            entries = [(off + 8 + 20 * k, 20) for k in range(min(count, 4096))]
        else:
            return None
        found = {}
        for pos, size in entries[:4096]:
            tag, typ = struct.unpack(e + "HH", d[pos:pos + 4])
            if tag not in (256, 257):
                continue
            value = d[pos + 4 + (4 if size == 12 else 8):pos + size]
            fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)
            if fmt is None:
                return None
            found[tag] = struct.unpack(e + fmt, value[:struct.calcsize(fmt)])[0]
        return (found[256], found[257]) if len(found) == 2 else None
    except (struct.error, IndexError):
        return None


def _webp_size(d: bytes):
    chunk = d[12:16]
    if chunk == b"VP8X" and len(d) >= 30:
        return 1 + int.from_bytes(d[24:27], "little"), 1 + int.from_bytes(d[27:30], "little")
    if chunk == b"VP8L" and len(d) >= 25 and d[20] == 0x2F:
        bits = int.from_bytes(d[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(d) >= 30 and d[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", d[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _gif_size(d: bytes):
    """The logical screen, grown to the first frame's extent (a frame may claim more than the screen)."""
    if len(d) < 13:
        return None
    w, h = struct.unpack("<HH", d[6:10])
    i = 13 + (3 * 2 ** ((d[10] & 7) + 1) if d[10] & 0x80 else 0)
    while i < len(d):
        if d[i] == 0x2C and i + 9 <= len(d):  # image descriptor
            left, top, fw, fh = struct.unpack("<HHHH", d[i + 1:i + 9])
            return max(w, left + fw), max(h, top + fh)
        if d[i] != 0x21 or i + 2 > len(d):  # not an extension: stop
            break
        i += 2
        while i < len(d) and d[i]:  # sub-blocks
            i += 1 + d[i]
        i += 1
    return w, h


def _bmp_size(d: bytes):
    if len(d) < 26:
        return None
    if int.from_bytes(d[14:18], "little") == 12:  # OS/2 core header
        return struct.unpack("<HH", d[18:22])
    w, h = struct.unpack("<ii", d[18:26])
    return abs(w), abs(h)


def _pnm_size(d: bytes):
    """Netpbm (P1–P6 / PF / Pf: the first two numbers after the magic, comments skipped; P7: WIDTH / HEIGHT lines)."""
    lines = [ln.split(b"#")[0].split() for ln in d[2:1024].split(b"\n")]
    if d[:2] == b"P7":
        fields = {ln[0]: ln[1] for ln in lines if len(ln) == 2}
        w, h = fields.get(b"WIDTH", b""), fields.get(b"HEIGHT", b"")
        return (int(w), int(h)) if w.isdigit() and h.isdigit() else None
    nums = [t for ln in lines for t in ln][:2]
    return (int(nums[0]), int(nums[1])) if len(nums) == 2 and all(t.isdigit() for t in nums) else None


def _hdr_size(d: bytes):
    """Radiance HDR: a resolution line such as ``-Y 480 +X 640`` after the header's blank line."""
    end = d.find(b"\n\n", 0, 8192)
    if end < 0:
        return None
    line = d[end + 2:end + 80].split(b"\n")[0].split()
    if len(line) == 4 and line[1].isdigit() and line[3].isdigit():
        a, b = int(line[1]), int(line[3])
        return (b, a) if line[0][-1:] == b"Y" else (a, b)
    return None


def image_size(data: bytes) -> "tuple[int, int] | None":
    """``(width, height)`` read from the header bytes alone, for PNG (IHDR), JPEG (SOF), TIFF / BigTIFF (first IFD),
    WebP (VP8 / VP8L / VP8X), GIF (screen and first frame), BMP, Netpbm and Radiance HDR; ``None`` when the format is
    not one of these or the header cannot be read. Checksums are not verified: a size is read even from a damaged
    file, so that a damaged file claiming a huge size is refused before anything decodes it."""
    d = data if isinstance(data, bytes) else bytes(data)
    try:
        if d.startswith(b"\x89PNG\r\n\x1a\n"):
            size = _png_size(d)
        elif d.startswith(b"\xff\xd8"):
            size = _jpeg_size(d[:1 << 22])
        elif d.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
            size = _tiff_size(d)
        elif d.startswith(b"RIFF") and d[8:12] == b"WEBP":
            size = _webp_size(d)
        elif d.startswith((b"GIF87a", b"GIF89a")):
            size = _gif_size(d[:1 << 22])
        elif d.startswith(b"BM"):
            size = _bmp_size(d)
        elif d[:1] == b"P" and d[1:2] in b"1234567Ff" and d[1:2] and d[2:3].isspace():
            size = _pnm_size(d)
        elif d.startswith((b"#?RADIANCE", b"#?RGBE")):
            size = _hdr_size(d)
        else:
            size = None
    except (struct.error, IndexError, ValueError):
        size = None
    if size is None:
        return None
    return int(size[0]), int(size[1])


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


def header_size(data: bytes) -> "tuple[int, int] | None":
    """``(width, height)`` of an encoded image from its header, without decoding: Pillow's header reader, else
    :func:`image_size` (which also reads damaged headers); ``None`` when neither knows the format."""
    header = _read_header(data)
    return _larger(header["size"] if header is not None else None, image_size(data))


def _larger(a, b) -> "tuple[int, int] | None":
    """The size with more pixels of two header readings (either may be ``None``): a file whose parts disagree (a GIF
    frame larger than its screen) is judged by its largest claim."""
    if a is None or b is None:
        return None if a is None and b is None else tuple(a or b)
    return tuple(a) if a[0] * a[1] >= b[0] * b[1] else tuple(b)


def _check_truncated(data: bytes) -> None:
    if data.startswith(b"\xff\xd8\xff") and not data.rstrip(b"\x00 \t\r\n").endswith(b"\xff\xd9"):
        marker = "JPEG end marker missing"
    elif data.startswith(b"\x89PNG\r\n\x1a\n") and data.rfind(b"IEND") < 0:
        marker = "PNG IEND chunk missing"
    else:
        return
    raise ImageLoadError(
        f"The file looks truncated ({marker}): was the upload or download interrupted?")


def _bands(h: int, w: int):
    step = max(1, _BAND_PIXELS // max(w, 1))
    for r in range(0, h, step):
        yield slice(r, min(h, r + step))


def _convert(img: np.ndarray, notes: list[str], *, bgr: bool, select: "list[int] | None" = None) -> tuple[np.ndarray, int]:
    """uint8 / uint16 / float ``(H, W[, C])`` → ``(H, W, 3)`` float32 RGB in ``[0, 1]`` and the bit depth (8, 16, 32).

    ``select``: the decoded channels to use (e.g. ``[0, 3]``: grey + alpha of an image OpenCV expanded to BGRA).
    Grey is replicated to RGB; alpha is composited on white (or dropped when fully opaque); NaN → 0; floats clipped.
    The conversion runs over bands of rows, so besides the result it needs a few tens of megabytes, whatever the size.
    """
    if img.dtype == np.uint8:
        depth, top = 8, 255
    elif img.dtype == np.uint16:
        depth, top = 16, 65535
        notes.append("16-bit image scaled to [0, 1]")
    elif img.dtype.kind == "f":
        depth, top = 32, None
    else:
        raise ImageLoadError(f"Unsupported pixel type {img.dtype}: expected uint8, uint16 or float.")
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    chans = list(range(c)) if select is None else list(select)
    colour, alpha = (chans[:-1], chans[-1]) if len(chans) in (2, 4) else (chans, None)
    clip = False
    if top is None:  # floats: NaN count and range over every decoded channel, as one image
        nan, lo, hi = 0, np.inf, -np.inf
        for rows in _bands(h, w):
            f = img[rows].astype(np.float32)
            m = np.isnan(f)
            k = int(m.sum())
            if k:
                nan += k
                f[m] = 0
            lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
        if nan:
            notes.append(f"{nan} NaN values replaced by 0")
        if lo < 0.0 or hi > 1.0:
            notes.append(f"float values in [{lo:.3g}, {hi:.3g}] clipped to [0, 1]")
            clip = True
    if len(colour) == 1:
        notes.append("grayscale replicated to RGB")
    elif bgr:
        colour = colour[::-1]
    opaque = True
    if alpha is not None:
        if top is not None:
            opaque = int(img[:, :, alpha].min()) >= top
        else:
            opaque = all(float(np.clip(np.nan_to_num(img[rows, :, alpha].astype(np.float32), nan=0.0), 0, 1).min()) >= 1.0
                         for rows in _bands(h, w))
        notes.append("fully opaque alpha channel dropped" if opaque else "alpha channel composited on white")
    order = colour * 3 if len(colour) == 1 else colour  # the three source channels of R, G, B
    out = np.empty((h, w, 3), np.float32)
    for rows in _bands(h, w):
        o, band = out[rows], img[rows]
        if top is None:
            f = band.astype(np.float32)
            f[np.isnan(f)] = 0
            if clip:
                np.clip(f, 0.0, 1.0, out=f)
            o[...] = f[:, :, order]
            a = None if opaque else np.ascontiguousarray(f[:, :, alpha])
        else:  # channels reordered by OpenCV (fast), then the same float32 arithmetic as band.astype(np.float32) / top
            planes = cv2.split(np.ascontiguousarray(band))
            np.divide(cv2.merge([planes[c] for c in order]), np.float32(top), out=o, dtype=np.float32)
            a = None if opaque else np.divide(planes[alpha], np.float32(top), dtype=np.float32)
        if a is not None:  # composite on white: rgb * alpha + (1 - alpha)
            a3 = cv2.merge([a, a, a])
            o *= a3
            np.subtract(1.0, a3, out=a3)
            o += a3
    return out, depth


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
    digest = array_sha256(arr)
    notes: list[str] = []
    pixels, depth = _convert(arr, notes, bgr=False)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return LoadedImage(pixels, digest, name, (w, h), depth, channels, 1, tuple(notes))


def _article(noun: str) -> str:
    """"an" before a vowel sound ("an AVIF image", "an HEIC/HEIF image"), else "a"."""
    return "an" if noun[:1].upper() in "AEIOU" or noun.startswith(("HEIC", "HDR")) else "a"


def _pillow_grey_alpha(data: bytes) -> np.ndarray:
    """``(H, W, 2)`` uint8 grey + alpha decoded by Pillow (OpenCV drops the alpha of a grey + alpha TIFF)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("LA"))


def _decode(data: bytes, kind: str) -> np.ndarray:
    """``cv2.imdecode`` (unchanged depth and channels), its failures as :class:`ImageLoadError`."""
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        if "MAX_IMAGE" in str(e):  # OpenCV's own size cap (validateInputImageSize)
            raise ImageLoadError(
                f"This {kind} is larger than OpenCV's own limit of {_mp(CV2_PIXEL_CAP)} megapixels "
                "(OPENCV_IO_MAX_IMAGE_PIXELS) or of 1,048,576 pixels a side: downscale it first.") from None
        img = None
    except MemoryError:
        raise ImageLoadError(f"Decoding this {kind} ran out of memory: downscale it first.") from None
    if img is None or img.size == 0:
        if kind.endswith("image"):
            raise ImageLoadError(
                f"OpenCV cannot decode this file although it looks like {_article(kind)} {kind}: it is probably corrupt, "
                "or the format is not supported by this OpenCV build.")
        raise ImageLoadError(f"Not an image OpenCV can decode (detected: {kind}).")
    return img


def load_image(source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> LoadedImage:
    """Decode and validate an image from any common source.

    Args:
        source: a path (``str`` / ``os.PathLike``); ``bytes`` / ``bytearray`` / ``memoryview``; a
            binary file object; a numpy array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
            ``(H, W, 4)`` of uint8 / uint16 / float (float in ``[0, 1]``, RGB order); or the value
            of an ipywidgets 8 ``FileUpload`` (tuple of dicts with ``name`` / ``content``; the
            first file is used).
        max_pixels: refuse images with ``width * height`` above this (checked from the header,
            before decoding; :data:`DEFAULT_MAX_PIXELS` keeps the peak memory of any accepted image under 1 GB).
        name: display name overriding the one derived from ``source``.

    Returns:
        A :class:`LoadedImage` whose ``pixels`` are ``(H, W, 3)`` float32 RGB in ``[0, 1]``.

    Raises:
        ImageLoadError: for every unusable input, with a message for the user.

    The size comes from the file's header (Pillow's reader, or :func:`image_size` when Pillow refuses a damaged
    header) and is checked before anything is decoded; OpenCV's own cap (``OPENCV_IO_MAX_IMAGE_PIXELS``, set to
    67 megapixels when unset) is a second line for formats whose header neither can read.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 4:
        raise ImageLoadError(f"max_pixels must be an integer >= 4, got {max_pixels!r}.")
    max_pixels = int(max_pixels)
    data, name = _read_source(source, name)
    if isinstance(data, np.ndarray):
        return _from_array(data, name, max_pixels)
    if not data:
        raise ImageLoadError("The file is empty.")
    digest = hashlib.sha256(data).hexdigest()
    kind = _sniff(data)
    header = _read_header(data)
    size = _larger(header["size"] if header is not None else None, image_size(data))
    if size is not None:
        _check_size(*size, max_pixels)
    _check_truncated(data)
    img = _decode(data, kind)
    h, w = img.shape[:2]
    if size is None or (w, h) != tuple(size):
        _check_size(w, h, max_pixels)
    notes: list[str] = []
    if header is not None and header["frames"] > 1:
        fmt = header["format"] or "image"
        notes.append(f"animated {fmt}: first frame used (of {header['frames']})")
    decoded_c = 1 if img.ndim == 2 else img.shape[2]
    mode = header["mode"] if header is not None else ""
    if mode == "P":
        channels = 4 if header["transparency"] else 3
    else:
        channels = _MODE_CHANNELS.get(mode, decoded_c)
    if channels == 2 and decoded_c == 1:  # OpenCV dropped the alpha (grey + alpha TIFF): Pillow keeps it
        img, decoded_c = _pillow_grey_alpha(data), 2
    del data  # the file's bytes (when read here) are not needed any more
    select = None
    if channels in (1, 2) and decoded_c > 2:  # OpenCV expanded grey(+alpha) to BGR(A)
        select = [0, 3] if decoded_c == 4 else [0]
    elif channels == 3 and decoded_c == 4:  # e.g. GIF without transparency: alpha added by OpenCV
        select = [0, 1, 2]
    orientation = header["orientation"] if header is not None else 1
    if orientation not in range(1, 9):
        orientation_note = f"invalid EXIF orientation {orientation} ignored"
        orientation = 1
    else:
        orientation_note = ""
    if orientation != 1:  # on the decoded pixels (a permutation: the same result as on the float ones, cheaper)
        img = _apply_orientation(img, orientation)
    pixels, depth = _convert(img, notes, bgr=True, select=select)
    del img
    if orientation_note:
        notes.append(orientation_note)
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied ({_ORIENTATION_TEXT[orientation]})")
    return LoadedImage(pixels, digest, name, (w, h), depth, channels, orientation, tuple(notes))
