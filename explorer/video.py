"""Loading videos for the video models (OpenCV ``VideoCapture``), with clear refusals.

    v = explorer.video.load_video("clip.mp4", num_frames=16)   # (16, H, W, 3) float32, sampled uniformly
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .io import ImageLoadError, _sniff, read_source


class VideoLoadError(ImageLoadError):
    """The video cannot be used; the message says why, for the user."""


@dataclass(frozen=True)
class LoadedVideo:
    """Decoded frames.

    Attributes:
        frames: ``(T, H, W, 3)`` float32 RGB in [0, 1].
        fps: frames per second stored in the file (``nan`` for arrays).
        sha256: of the raw bytes (arrays: bytes + shape + dtype).
        name: file name or ``"<array>"``.
        decoded: frames decoded from the file before sampling.
        indices: ``(T,)`` which decoded frames were kept.
        notes: conversions and caveats, for the user.
    """

    frames: np.ndarray
    fps: float
    sha256: str
    name: str
    decoded: int
    indices: np.ndarray
    notes: tuple[str, ...]


_VIDEO_MAGIC = {b"ftyp": "MP4/QuickTime", b"\x1aE\xdf\xa3": "Matroska/WebM"}


def _looks_like_video(data: bytes) -> bool:
    head = data[:16]
    return head[4:8] == b"ftyp" or head.startswith(b"\x1aE\xdf\xa3") or (head.startswith(b"RIFF") and head[8:12] == b"AVI ") \
        or head.startswith((b"GIF87a", b"GIF89a")) or head.startswith(b"\x00\x00\x01\xba")


def sample_indices(n: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread uniformly over ``n`` frames (repeating frames when ``n < num_frames``)."""
    return np.floor((np.arange(num_frames) + 0.5) * n / num_frames).astype(int).clip(0, n - 1)


def load_video(source: Any, *, num_frames: int | None = None, max_frames: int = 2000, max_pixels: int = 8_000_000,
               name: str | None = None) -> LoadedVideo:
    """Decode a video file (path, bytes, FileUpload value) or take a ``(T, H, W, 3)`` array.

    Args:
        num_frames: sample this many frames uniformly (``None``: keep all decoded frames).
        max_frames: stop decoding after this many frames (noted).
        max_pixels: refuse frames larger than this (width × height).
    Raises:
        VideoLoadError: empty, not a video, undecodable, too large, or fewer than two frames.
    """
    data, name = read_source(source, name, error=VideoLoadError, noun="a video")
    notes: list[str] = []
    if isinstance(data, np.ndarray):
        arr = np.asarray(data)
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise VideoLoadError(f"A video array must be (T, H, W, 3) or (T, H, W, 1), got shape {arr.shape}.")
        h = hashlib.sha256(np.ascontiguousarray(arr).tobytes())
        h.update(str((arr.shape, str(arr.dtype))).encode())
        if arr.dtype == np.uint8:
            frames = arr.astype(np.float32) / 255.0
        elif np.issubdtype(arr.dtype, np.floating):
            frames = np.clip(arr.astype(np.float32), 0, 1)
        else:
            raise VideoLoadError(f"Video arrays must be uint8 or float in [0, 1], got {arr.dtype}.")
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, -1)
            notes.append("grey frames repeated to RGB")
        fps, digest, decoded = float("nan"), h.hexdigest(), len(frames)
    else:
        if not data:
            raise VideoLoadError("The file is empty.")
        if not _looks_like_video(data):
            raise VideoLoadError(f"Not a video file (detected: {_sniff(data)}). Supported: MP4, AVI, WebM/MKV, MPEG, animated GIF.")
        digest = hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(name)[1] or ".mp4")  # VideoCapture needs a file name
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            cap = cv2.VideoCapture(tmp)
            if not cap.isOpened():
                raise VideoLoadError("OpenCV cannot open this video: the file is corrupt or its codec is not supported.")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or float("nan"))
            declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            w, hgt = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w * hgt > max_pixels:
                raise VideoLoadError(f"Frames of {w}x{hgt} are larger than the limit of {max_pixels / 1e6:.0f} megapixels.")
            out = []
            while len(out) < max_frames:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            cap.release()
        finally:
            os.unlink(tmp)
        if len(out) == max_frames:
            notes.append(f"decoding stopped at {max_frames} frames")
        elif declared > len(out) + 1:
            notes.append(f"the file declares {declared} frames but only {len(out)} could be decoded: it may be truncated")
        if not out:
            raise VideoLoadError("No frame could be decoded: the video is empty, truncated or uses an unsupported codec.")
        frames = np.stack(out).astype(np.float32) / 255.0
        decoded = len(frames)
    if len(frames) < 2:
        raise VideoLoadError(f"The video has {len(frames)} frame{'s' if len(frames) != 1 else ''}: video models need at least 2 "
                             "(tubelets span 2 frames). Load a single frame as an image instead.")
    idx = np.arange(len(frames))
    if num_frames is not None:
        idx = sample_indices(len(frames), int(num_frames))
        if len(frames) < num_frames:
            notes.append(f"only {len(frames)} frames: some of the {num_frames} sampled frames repeat")
        frames = frames[idx]
    return LoadedVideo(np.ascontiguousarray(frames), fps, digest, name, decoded, idx, tuple(notes))


def write_video(path: "str | os.PathLike", frames: np.ndarray, fps: float = 8.0) -> None:
    """Write ``(T, H, W, 3)`` float [0, 1] frames as an MJPG AVI (for tests and examples)."""
    frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = frames.shape[1:3]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not wr.isOpened():
        raise VideoLoadError(f"OpenCV cannot write {path}.")
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
