"""Loading videos for the video models (FFmpeg through PyAV), with clear refusals.

    v = explorer.video.load_video("clip.mp4", num_frames=16)                        # uniform in time over the clip
    v = explorer.video.load_video("clip.mp4", num_frames=16, sampling="strided", stride=4)   # as Kinetics VideoMAE
    v.frames, v.indices, v.times_s, v.notes     # (16, H, W, 3) float32; which frames, when; what was done

Frames are decoded by PyAV (``av.open(path).decode(video=0)``, the stream's ``thread_type = "AUTO"``) and only the
frames that will be kept are converted to RGB pixels (``frame.to_ndarray(format="rgb24")``: the same pixels OpenCV's
FFmpeg reader gives, checked by the tests). PyAV replaced ``cv2.VideoCapture`` because it decodes faster, measured in
one run by ``bench/video_decode.py`` (figures in the README). PyAV opens every container OpenCV's FFmpeg reader
opened (AVI/MJPG, MP4/H.264, WebM/VP8-9, MKV, MPEG, animated GIF). One case falls back to OpenCV: an AVI for whose
codec tag FFmpeg has no decoder (a damaged MJPG tag) is read by OpenCV's own MJPEG reader
(``cv2.CAP_OPENCV_MJPEG``; another JPEG decoder, so pixels may differ by a few grey levels; times are index / fps).
OpenCV also still writes the test clips (:func:`write_video`) and shrinks kept frames. FFmpeg's log stays off while
a file is read; a stream that breaks off mid-way (``av.error.InvalidDataError`` and the like) ends the clip there,
with a note ("frame N could not be decoded: the file may be truncated").

Long clips are never held whole: one pass decodes every frame (reading its presentation timestamp × time_base) and
converts only the frames that will be kept, so memory is bounded by ``num_frames`` converted frames, not by the
clip's length. The frames to keep are planned from the frame count and rate the file declares; when the timestamps
show that plan was wrong (variable frame rate, a wrong or missing frame count, a truncated file), a second pass
converts the right ones.

Memory is bounded by what is kept: ``max_side`` shrinks each kept frame as soon as it is decoded (to what the model
reads), and kept frames × their pixels may not exceed ``max_total_pixels`` (refused, with a message, before decoding).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .io import ImageLoadError, _sniff, array_sha256, read_source


class VideoLoadError(ImageLoadError):
    """The video cannot be used; the message says why, for the user."""


#: How frames are chosen: ``"uniform"`` spreads them evenly in time over the whole clip; ``"strided"`` takes
#: consecutive frames ``stride`` apart, centred in the clip (how VideoMAE checkpoints read clips: 16 frames at
#: stride 4 for Kinetics-400, 2 for Something-Something v2).
SAMPLINGS = ("uniform", "strided")
#: What to do when the clip has fewer frames than the sampling needs: ``"stretch"`` repeats frames evenly (uniform
#: sampling's default), ``"loop"`` starts the clip again, ``"pad"`` repeats the last frame (VideoMAE's choice, strided default).
SHORT_CLIP = ("stretch", "loop", "pad")
#: Frame gaps that differ by more than this fraction of the median gap (and by over 1 ms) mean a variable frame rate.
VFR_TOLERANCE = 0.1
#: Default caps of :func:`load_video`: pixels of one stored frame, and kept frames × pixels of a kept frame (the
#: float32 result plus the decoded frames stay under about 1 GB).
MAX_FRAME_PIXELS = 8_000_000
MAX_TOTAL_PIXELS = 64_000_000


@dataclass(frozen=True)
class LoadedVideo:
    """Decoded frames.

    Attributes:
        frames: ``(T, H, W, 3)`` float32 RGB in [0, 1].
        fps: frames per second stored in the file (``nan`` for arrays without ``fps``).
        sha256: of the raw bytes (arrays: bytes + shape + dtype).
        name: file name or ``"<array>"``.
        decoded: frames in the clip (decoded from the file; only the kept ones are converted to pixels; with ``at_s``,
            the frames read, up to a second past the last time asked for).
        indices: ``(T,)`` which frames of the clip were kept.
        notes: conversions and caveats, for the user.
        times_s: ``(T,)`` timestamp of each kept frame in seconds (``nan`` for arrays without ``fps``).
        clip_times_s: ``(decoded,)`` timestamp of every frame of the clip.
        vfr: the frame gaps vary (variable frame rate): frames were picked by timestamp.
        sampling, stride, short: how the frames were chosen (``sampling="all"`` when every frame was kept, ``"times"``
            when they were picked by ``at_s``).
    """

    frames: np.ndarray
    fps: float
    sha256: str
    name: str
    decoded: int
    indices: np.ndarray
    notes: tuple[str, ...]
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clip_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vfr: bool = False
    sampling: str = "all"
    stride: int = 1
    short: str = ""


_VIDEO_MAGIC = {b"ftyp": "MP4/QuickTime", b"\x1aE\xdf\xa3": "Matroska/WebM"}


def _looks_like_video(data: bytes) -> bool:
    head = data[:16]
    return head[4:8] == b"ftyp" or head.startswith(b"\x1aE\xdf\xa3") or (head.startswith(b"RIFF") and head[8:12] == b"AVI ") \
        or head.startswith((b"GIF87a", b"GIF89a")) or head.startswith(b"\x00\x00\x01\xba")


# ---------------------------------------------------------------------------- which frames (pure functions)
def sample_indices(n: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread uniformly over ``n`` frames (repeating frames when ``n < num_frames``): the frame
    on screen at the centre of each of ``num_frames`` equal segments of a constant-rate clip."""
    return np.floor((np.arange(num_frames) + 0.5) * n / num_frames).astype(int).clip(0, n - 1)


def uniform_time_indices(times_s: np.ndarray, num_frames: int) -> np.ndarray:
    """``(num_frames,)`` frames on screen at the centres of ``num_frames`` equal *time* segments of the clip.

    Args:
        times_s: ``(N,)`` increasing timestamps of every frame (seconds). The clip lasts from ``times_s[0]`` to the
            last timestamp plus one mean frame gap (the last frame's own duration is not stored).
    For a constant frame rate this equals :func:`sample_indices`; for a variable one, a frame shown longer is
    picked more often (as a viewer would see it).
    """
    t = np.asarray(times_s, np.float64)
    n = len(t)
    if n == 1:
        return np.zeros(num_frames, int)
    span = (t[-1] - t[0]) * n / (n - 1)
    centres = t[0] + (np.arange(num_frames) + 0.5) * span / num_frames
    return (np.searchsorted(t, centres + 1e-7, side="right") - 1).clip(0, n - 1)


def strided_indices(n: int, num_frames: int, stride: int, short: str = "pad") -> np.ndarray:
    """``num_frames`` frames ``stride`` apart, centred in a clip of ``n`` frames (VideoMAE's test-time sampling).

    When the clip is shorter than the ``(num_frames - 1) * stride + 1`` frames needed: ``short="pad"`` repeats the
    last frame, ``"loop"`` starts the clip again, ``"stretch"`` spreads the frames uniformly instead.
    """
    stride = max(1, int(stride))
    need = (num_frames - 1) * stride + 1
    k = np.arange(num_frames) * stride
    if n >= need:
        return (n - need) // 2 + k
    return short_clip_indices(n, num_frames, short, k)


def short_clip_indices(n: int, num_frames: int, short: str, wanted: "np.ndarray | None" = None) -> np.ndarray:
    """Indices into a clip of ``n`` frames for ``wanted`` positions (default ``0..num_frames-1``) that run past its end."""
    if short not in SHORT_CLIP:
        raise ValueError(f"Unknown short-clip policy {short!r}; choose one of {', '.join(SHORT_CLIP)}.")
    wanted = np.arange(num_frames) if wanted is None else np.asarray(wanted)
    if short == "loop":
        return wanted % n
    if short == "pad":
        return np.minimum(wanted, n - 1)
    return sample_indices(n, num_frames)


def is_variable_rate(times_s: np.ndarray) -> bool:
    """True when the gaps between consecutive timestamps differ by more than :data:`VFR_TOLERANCE` of the median."""
    g = np.diff(np.asarray(times_s, np.float64))
    if len(g) < 2:
        return False
    return bool(g.max() - g.min() > max(1e-3, VFR_TOLERANCE * float(np.median(g))))


def nearest_indices(times_s: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """``(len(at_s),)`` index of the frame whose timestamp is nearest each time (ties: the later frame).

    Args:
        times_s: ``(N,)`` increasing timestamps of the clip's frames, seconds from its first frame.
        at_s: times in seconds; before the first frame → 0, after the last → ``N - 1``.
    """
    t = np.asarray(times_s, np.float64)
    mids = (t[:-1] + t[1:]) / 2
    return np.searchsorted(mids, np.asarray(at_s, np.float64), side="right").astype(int)


def choose_frames(times_s: np.ndarray, num_frames: "int | None", sampling: str = "uniform", stride: int = 4,
                  short: "str | None" = None) -> tuple[np.ndarray, list[str]]:
    """Which of the clip's frames to keep, and notes for the user.

    Args:
        times_s: ``(N,)`` timestamps of every frame (seconds; a constant-rate ramp when unknown).
        num_frames: frames wanted (``None``: all of them).
        sampling: one of :data:`SAMPLINGS`; short: one of :data:`SHORT_CLIP` (default: stretch for uniform, pad for strided).
    Returns:
        ``(indices (num_frames,), notes)``.
    """
    n = len(times_s)
    if num_frames is None:
        return np.arange(n), []
    if sampling not in SAMPLINGS:
        raise ValueError(f"Unknown sampling {sampling!r}; choose one of {', '.join(SAMPLINGS)}.")
    num_frames = int(num_frames)
    if sampling == "uniform":
        short = short or "stretch"
        if n >= num_frames or short == "stretch":
            idx = uniform_time_indices(times_s, num_frames)
        else:
            idx = short_clip_indices(n, num_frames, short)
        need = num_frames
    else:
        short = short or "pad"
        idx = strided_indices(n, num_frames, stride, short)
        need = (num_frames - 1) * max(1, int(stride)) + 1
    notes = []
    if n < need:
        what = {"stretch": "stretched (frames repeat evenly)", "loop": "looped (the clip starts again)",
                "pad": "padded (the last frame repeats)"}[short]
        how = f"{num_frames} frames" if sampling == "uniform" else f"{num_frames} frames at stride {stride} ({need} frames)"
        notes.append(f"{what}: the clip has {n} frames, the model reads {how}")
    return idx, notes


# ---------------------------------------------------------------------------- decoding
def _progress(total: int, show: "bool | None", desc: str):
    from tqdm.auto import tqdm

    if show is None:
        show = total >= 500
    return tqdm(total=total or None, disable=not show, unit="frame", desc=desc, leave=False)


def _fit_size(w: int, h: int, max_side: "int | None") -> tuple[int, int]:
    """``(w, h)`` shrunk (aspect kept) so that the longer side is at most ``max_side``."""
    if not max_side or max(w, h) <= max_side:
        return w, h
    f = max_side / max(w, h)
    return max(1, int(round(w * f))), max(1, int(round(h * f)))


class _Keep:
    """What happens to each wanted decoded frame: size checks (before converting it), conversion to RGB, shrinking to
    ``max_side``, the pixel budget."""

    def __init__(self, max_pixels: int, max_side: "int | None", budget: int):
        self.max_pixels, self.max_side, self.budget = max_pixels, max_side, budget
        self.size: "tuple[int, int] | None" = None  # (w, h) of a stored frame
        self.kept = 0  # pixels held

    def __call__(self, frame) -> np.ndarray:
        """``frame``: a decoded ``av.VideoFrame`` (or the OpenCV fallback's :class:`_CvFrame`); returns it as
        ``(H', W', 3)`` uint8 RGB, shrunk to ``max_side``."""
        w, h = int(frame.width), int(frame.height)
        if self.size is None:
            self.size = (w, h)
        elif self.size != (w, h):
            raise VideoLoadError(f"The video's frames change size ({self.size[0]}x{self.size[1]}, then {w}x{h}): "
                                 "re-encode it at one size first.")
        if w * h > self.max_pixels:
            raise VideoLoadError(f"Frames of {w}x{h} are larger than the limit of {self.max_pixels / 1e6:.0f} megapixels "
                                 "(the file's header claimed less).")
        ow, oh = _fit_size(w, h, self.max_side)
        self.kept += ow * oh
        if self.kept > self.budget:
            raise VideoLoadError(f"Keeping these frames of {ow}x{oh} needs more than max_total_pixels = {self.budget:,} "
                                 "pixels: ask for fewer frames (num_frames=) or smaller ones (max_side=).")
        fr = _rgb(frame)
        if (ow, oh) != (w, h):
            fr = cv2.resize(fr, (ow, oh), interpolation=cv2.INTER_AREA)
        return fr


class _Broken(Exception):
    """The stream broke off: a frame could not be decoded or converted (the scan stops there, with a note)."""


#: The message when FFmpeg (and, for MJPG AVIs, OpenCV's own reader) cannot open a file.
_CANNOT_OPEN = "FFmpeg cannot open this video: the file is corrupt or its codec is not supported."


class _CannotOpen(VideoLoadError):
    """FFmpeg cannot open the file or has no decoder for its video (the OpenCV fallback may still read it)."""


def _decode_errors() -> tuple:
    """What PyAV raises for a damaged or unreadable stream: ``av.error.InvalidDataError`` and the other FFmpeg errors,
    an I/O error, a pixel format it cannot convert."""
    import av

    return (av.FFmpegError, OSError, ValueError, RuntimeError)


def _rgb(frame) -> np.ndarray:
    """A decoded frame as ``(H, W, 3)`` uint8 RGB: an ``av.VideoFrame`` through FFmpeg's swscale (the same pixels
    OpenCV's FFmpeg reader gives), a :class:`_CvFrame` retrieved from OpenCV; :class:`_Broken` when that fails."""
    if isinstance(frame, _CvFrame):
        return frame.to_rgb()
    try:
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    except _decode_errors() as e:
        raise _Broken(str(e)) from e


@contextmanager
def _quiet_ffmpeg():
    """FFmpeg's own log off while a file is read (damaged files make it print a line per bad packet), then put back.

    PyAV's default is already off (``av.logging.get_level() is None``); only a level someone set is lowered, and
    restored afterwards, so other code's logging is not changed for good."""
    import av.logging

    prev = av.logging.get_level()
    if prev is None:
        yield
        return
    av.logging.set_level(None)
    try:
        yield
    finally:
        av.logging.set_level(prev)


def _open(path: str):
    """``(container, its first video stream)`` opened by PyAV; :class:`_CannotOpen` when FFmpeg cannot open the file
    or decode its video, a :class:`VideoLoadError` when the file has no video stream."""
    import av

    try:
        container = av.open(path, "r", metadata_errors="replace")  # a damaged tag is no reason to refuse the pixels
    except _decode_errors() as e:
        raise _CannotOpen(_CANNOT_OPEN) from e
    if not container.streams.video:
        container.close()
        raise VideoLoadError("The file has no video stream (it may hold only sound): the file is corrupt or not a video.")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec FFmpeg does not know (or a damaged codec tag)
        container.close()
        raise _CannotOpen(_CANNOT_OPEN)
    return container, stream


def _stream_start_s(stream) -> float:
    """The stream's first timestamp in seconds (frame times are counted from it, as OpenCV's reader did); 0 if unknown."""
    try:
        return float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    except (TypeError, ZeroDivisionError, OverflowError):
        return 0.0


def _frame_time_s(frame) -> float:
    """The frame's presentation time in seconds: FFmpeg's best-effort timestamp × time_base (its ``pts``, repaired
    when the stream's are missing or broken; what OpenCV's reader used), else ``frame.time``; ``nan`` when neither."""
    be, tb = frame.best_effort_timestamp, frame.time_base
    if be is not None and tb:
        return float(be * tb)
    t = frame.time
    return float(t) if t is not None else float("nan")


def _pyav_frames(path: str, opened=None):
    """Every decoded frame of the first video stream, as ``(av.VideoFrame, seconds from the stream's start)``;
    frame and slice threads on (``thread_type = "AUTO"``). ``opened``: ``(container, stream)`` already opened (by
    :func:`_header`; closed here when done), so a file is not probed twice."""
    container, stream = opened if opened is not None else _open(path)
    errors = _decode_errors()
    try:
        stream.thread_type = "AUTO"
        start = _stream_start_s(stream)
        decoded = container.decode(stream)
        while True:
            try:
                fr = next(decoded)
            except StopIteration:
                return
            except errors as e:  # a damaged packet mid-stream (av.error.InvalidDataError, ...)
                raise _Broken(str(e)) from e
            yield fr, _frame_time_s(fr) - start
    finally:
        container.close()


class _CvFrame:
    """A frame grabbed by the OpenCV fallback: its size as the header declares, its pixels on demand (``retrieve``)."""

    def __init__(self, cap, width: int, height: int):
        self.cap, self.width, self.height = cap, width, height

    def to_rgb(self) -> np.ndarray:
        ok, fr = self.cap.retrieve()
        if not ok or fr is None:
            raise _Broken("retrieve failed")
        if fr.shape[:2] != (self.height, self.width):
            raise VideoLoadError(f"The video's frames are {fr.shape[1]}x{fr.shape[0]}, not the {self.width}x{self.height} "
                                 "its header declares: the file is corrupt.")
        return cv2.cvtColor(fr, cv2.COLOR_BGR2RGB)


def _opencv_frames(path: str):
    """The fallback reader (OpenCV's own MJPEG reader, for MJPG AVIs FFmpeg refuses): ``(_CvFrame, seconds)``, times
    ``index / fps`` (the rate such a file declares is constant)."""
    cap = cv2.VideoCapture(path, cv2.CAP_OPENCV_MJPEG)
    try:
        if not cap.isOpened():
            raise _CannotOpen(_CANNOT_OPEN)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        step = 1.0 / fps if 0 < fps <= 10_000 else 1.0
        j = 0
        while cap.grab():
            yield _CvFrame(cap, w, h), j * step
            j += 1
    finally:
        cap.release()


def _scan(path: str, want: "set[int] | None", max_frames: int, *, stop_early: bool = False, total: int = 0,
          progress: "bool | None" = None, desc: str = "", keep=None, stop_s: "float | None" = None,
          backend: str = "pyav", opened=None) -> tuple[dict[int, np.ndarray], list[float], bool, bool]:
    """One pass over the file: decode every frame (PyAV, threaded; ``backend="opencv"``: the fallback reader), convert
    to pixels only those in ``want`` (``None``: all); ``stop_early``: stop after the last wanted frame (otherwise read
    to the end, for every timestamp); ``stop_s``: stop after the first frame more than this many seconds after the
    first one; ``keep``: applied to each wanted decoded frame (default: to ``(H, W, 3)`` uint8 RGB); ``opened``: the
    PyAV ``(container, stream)`` :func:`_header` left open (closed when the scan ends).

    Returns ``({index: (H, W, 3) uint8 RGB}, timestamps in seconds of every decoded frame, failed, ended)`` where
    ``failed`` says the stream broke off with a decoding error (the scan stops there) and ``ended`` that the clip ended.
    """
    keep = keep or (lambda fr: _rgb(fr))
    frames: dict[int, np.ndarray] = {}
    times: list[float] = []
    last = max(want) if (want and stop_early) else max_frames
    failed = ended = False
    with _quiet_ffmpeg():
        source = _pyav_frames(path, opened) if backend == "pyav" else _opencv_frames(path)
        try:
            with _progress(total, progress, desc) as bar:
                while len(times) < max_frames and len(times) <= last:
                    try:
                        fr, t = next(source)
                    except StopIteration:
                        ended = True
                        break
                    except _Broken:
                        failed = True
                        break
                    j = len(times)
                    if want is None or j in want:
                        try:
                            frames[j] = keep(fr)
                        except _Broken:
                            failed = True
                            break
                    times.append(t)
                    bar.update(1)
                    if stop_s is not None and times[-1] - times[0] > stop_s:
                        break
        finally:
            source.close()  # closes the container / releases the capture
    return frames, times, failed, ended


def _timestamps(times: list[float], fps: float, notes: list[str]) -> np.ndarray:
    """The decoded frames' timestamps; a constant-rate ramp when the file's are unusable (missing, not increasing)."""
    t = np.asarray(times, np.float64)
    if len(t) > 1 and np.all(np.diff(t) > 0):
        return t - t[0] if t[0] < 0 else t
    step = 1.0 / fps if np.isfinite(fps) and fps > 0 else 1.0
    if len(t) > 1:
        notes.append("the file's frame timestamps are unusable (not increasing): frames assumed evenly spaced")
    return np.arange(len(t)) * step


def _header(path: str) -> tuple[str, float, int, int, int, Any]:
    """``(backend, fps, declared frames, width, height, opened)`` from the container's header (nothing decoded past
    FFmpeg's probe). ``backend`` is ``"pyav"``, or ``"opencv"`` when FFmpeg cannot open the file or decode its video
    but OpenCV's own MJPEG reader can (an MJPG AVI with a damaged codec tag). ``opened``: PyAV's ``(container,
    stream)``, left open for the first scan (the caller closes it), ``None`` for OpenCV.

    The frame count is the stream's own (``stream.frames``), else its duration × fps, else the whole file's duration ×
    fps (WebM / MKV store no count: OpenCV's reader estimated it the same way); 0 means unknown."""
    with _quiet_ffmpeg():
        try:
            container, stream = _open(path)
        except _CannotOpen:
            cap = cv2.VideoCapture(path, cv2.CAP_OPENCV_MJPEG)
            try:
                if not cap.isOpened():
                    raise
                return ("opencv", float(cap.get(cv2.CAP_PROP_FPS) or float("nan")),
                        max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
                        int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), None)
            finally:
                cap.release()
        try:
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else float("nan")
            declared = int(stream.frames or 0)
            if declared <= 0 and np.isfinite(fps) and 0 < fps <= 10_000:
                if stream.duration and stream.time_base:
                    seconds = float(stream.duration * stream.time_base)
                else:
                    seconds = (container.duration or 0) / 1e6  # av.time_base: microseconds
                declared = int(np.floor(seconds * fps + 0.5))
            cc = stream.codec_context
            return "pyav", fps, max(declared, 0), int(cc.width or 0), int(cc.height or 0), (container, stream)
        except BaseException:
            container.close()
            raise


def _decode_file(tmp: str, name: str, num_frames, sampling, stride, short, max_frames, max_pixels, progress,
                 max_side=None, max_total_pixels=MAX_TOTAL_PIXELS, at_s=None):
    """Decode ``num_frames`` frames (or the frames at ``at_s``) of the file at ``tmp``; see :func:`load_video`."""
    backend, fps, declared, w, hgt, opened = _header(tmp)
    try:
        return _decode_opened(tmp, name, num_frames, sampling, stride, short, max_frames, max_pixels, progress, max_side,
                              max_total_pixels, at_s, backend, fps, declared, w, hgt, opened)
    finally:
        if opened is not None:
            opened[0].close()  # closed already when the first scan ran; here for a refusal before it


def _decode_opened(tmp, name, num_frames, sampling, stride, short, max_frames, max_pixels, progress, max_side,
                   max_total_pixels, at_s, backend, fps, declared, w, hgt, opened):
    """:func:`_decode_file` once the header is read (``opened``: PyAV's container, handed to the first scan)."""
    if w * hgt > max_pixels:
        raise VideoLoadError(f"Frames of {w}x{hgt} are larger than the limit of {max_pixels / 1e6:.0f} megapixels.")
    if not (np.isfinite(fps) and 0 < fps <= 10_000):
        fps = float("nan")  # 0, negative or absurd: unknown (timestamps or a 1 frame/s ramp are used instead)
    claimed, declared = declared, min(max(declared, 0), max_frames)  # a header may claim billions of frames
    wanted = len(at_s) if at_s is not None else num_frames
    ow, oh = _fit_size(w, hgt, max_side)
    if wanted is not None and wanted * ow * oh > max_total_pixels:
        raise VideoLoadError(
            f"{wanted} frames of {ow}x{oh} are {wanted * ow * oh / 1e6:.0f} megapixels in all, above max_total_pixels = "
            f"{max_total_pixels / 1e6:.0f} megapixels: ask for fewer frames or pass max_side= to shrink them while reading.")
    keep = _Keep(max_pixels, max_side, max_total_pixels)
    notes: list[str] = []
    step = 1.0 / fps if np.isfinite(fps) else 1.0
    # Plan from what the file declares (a constant-rate clip of `declared` frames); check it against the timestamps.
    planned = None
    stop_s = None
    if at_s is not None:
        planned = set(nearest_indices(np.arange(declared) * step, at_s).tolist()) if declared > 0 else set()
        stop_s = float(np.max(at_s)) + 1.0
    elif num_frames is not None:
        planned = set()
        if declared > 0:
            planned = set(choose_frames(np.arange(declared) * step, num_frames, sampling, stride, short)[0].tolist())
    got, times, failed, ended = _scan(tmp, planned, max_frames, total=declared, progress=progress, desc=name, keep=keep,
                                      stop_s=stop_s, backend=backend, opened=opened)
    if failed:
        notes.append(f"frame {len(times) + 1} could not be decoded: the file may be truncated")
    n = len(times)
    if n == 0:
        raise VideoLoadError("No frame could be decoded: the video is empty, truncated or uses an unsupported codec.")
    if n == max_frames and not failed:
        notes.append(f"decoding stopped at {max_frames} frames")
    elif claimed > n + 1 and not failed and ended:
        notes.append(f"the file declares {claimed} frames but only {n} could be decoded: it may be truncated")
    t = _timestamps(times, fps, notes)
    vfr = is_variable_rate(t)
    if vfr:
        g = np.diff(t) * 1e3
        notes.append(f"variable frame rate (frame gaps from {g.min():.0f} to {g.max():.0f} ms): frames were picked by "
                     "their timestamps")
    if n < 2:
        return got, t, n, fps, vfr, notes, np.arange(n)
    if at_s is not None:
        rel = t - t[0]
        idx, more = nearest_indices(rel, at_s), []
        gap = float(np.median(np.diff(rel)))
        if ended and float(np.max(at_s)) > rel[-1] + gap / 2:
            more.append(f"the clip ends at {rel[-1] + gap:.2f} s, before {float(np.max(at_s)):.2f} s: its last frame "
                        "stands for the later times")
    else:
        idx, more = choose_frames(t, num_frames, sampling, stride, short)
    missing = set(idx.tolist()) - set(got)
    if missing:  # the declared frame count / rate was wrong: a second, shorter pass for the right frames
        got = {j: f for j, f in got.items() if j in set(idx.tolist())}
        keep.kept = sum(f.shape[0] * f.shape[1] for f in got.values())
        extra, _t, _f, _e = _scan(tmp, missing, max_frames, stop_early=True, total=max(missing) + 1, progress=progress,
                                  desc=name, keep=keep, backend=backend)
        got.update(extra)
        if set(idx.tolist()) - set(got):
            raise VideoLoadError("The video decodes differently on a second pass: the file is corrupt.")
    return got, t, n, fps, vfr, notes + more, idx


def _assemble(got: dict, idx: np.ndarray, max_total_pixels: int) -> np.ndarray:
    """``(len(idx), H, W, 3)`` float32 in [0, 1] from the kept uint8 frames, which are released as they are copied."""
    first = got[int(idx[0])]
    h, w = first.shape[:2]
    if len(idx) * h * w > max_total_pixels:
        raise VideoLoadError(f"{len(idx)} frames of {w}x{h} are above max_total_pixels = {max_total_pixels:,}: ask for "
                             "fewer frames or pass max_side= to shrink them while reading.")
    out = np.empty((len(idx), h, w, 3), np.float32)
    last_use = {j: k for k, j in enumerate(idx.tolist())}
    for k, j in enumerate(idx.tolist()):
        out[k] = got[j].astype(np.float32) / 255.0
        if last_use[j] == k:
            del got[j]
    return out


def _from_array(arr: np.ndarray, notes: list[str]) -> tuple[np.ndarray, str]:
    """Check a ``(T, H, W, 1 | 3)`` uint8 / float array; return it (not converted yet) and its digest."""
    arr = np.asarray(arr)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise VideoLoadError(f"A video array must be (T, H, W, 3) or (T, H, W, 1), got shape {arr.shape}.")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise VideoLoadError(f"Video arrays must be uint8 or float in [0, 1], got {arr.dtype}.")
    if arr.shape[-1] == 1:
        notes.append("grey frames repeated to RGB")
    return arr, array_sha256(arr)


def _array_frames(arr: np.ndarray, idx: np.ndarray, max_side: "int | None") -> np.ndarray:
    """The kept frames ``arr[idx]`` as float32 RGB in [0, 1], shrunk to ``max_side`` (only the kept ones converted)."""
    t, h, w = len(idx), arr.shape[1], arr.shape[2]
    ow, oh = _fit_size(w, h, max_side)
    out = np.empty((t, oh, ow, 3), np.float32)
    for k, j in enumerate(idx.tolist()):
        f = arr[j].astype(np.float32) / 255.0 if arr.dtype == np.uint8 else np.clip(arr[j].astype(np.float32), 0, 1)
        if (ow, oh) != (w, h):
            f = cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA)
            f = f[..., None] if f.ndim == 2 else f
        out[k] = f  # (H, W, 1) broadcasts: grey repeated to RGB
    return out


def _refuse_short(n: int) -> None:
    if n < 2:
        raise VideoLoadError(f"The video has {n} frame{'s' if n != 1 else ''}: video models need at least 2 "
                             "(tubelets span 2 frames). Load a single frame as an image instead.")


def load_video(source: Any, *, num_frames: int | None = None, sampling: str = "uniform", stride: int = 4,
               short: str | None = None, fps: float | None = None, max_frames: int = 100_000,
               max_pixels: int = MAX_FRAME_PIXELS, max_side: int | None = None, max_total_pixels: int = MAX_TOTAL_PIXELS,
               at_s: "np.ndarray | list[float] | None" = None, name: str | None = None,
               progress: bool | None = None) -> LoadedVideo:
    """Decode a video file (path, bytes, FileUpload value) or take a ``(T, H, W, 3)`` array.

    Files are decoded by FFmpeg through PyAV (threaded), one pass converting only the kept frames; an AVI whose codec
    tag FFmpeg cannot decode falls back to OpenCV's own MJPEG reader (see the module docstring).

    Args:
        num_frames: keep this many frames (``None``: keep every frame, up to ``max_frames``).
        sampling: ``"uniform"`` (evenly in time over the whole clip, by timestamp) or ``"strided"`` (``num_frames``
            consecutive frames ``stride`` apart, centred in the clip); see :data:`SAMPLINGS`.
        short: what to do with a clip shorter than the sampling needs (:data:`SHORT_CLIP`); noted.
        fps: frame rate of an array input (gives it timestamps); ignored for files.
        max_frames: stop reading a file after this many frames (noted).
        max_pixels: refuse frames larger than this (width × height, as stored).
        max_side: shrink each kept frame (area interpolation, aspect kept) so that its longer side is at most this,
            as soon as it is decoded: pass what the model reads, so a large video never sits in memory whole.
        max_total_pixels: refuse when the kept frames × their pixels (after ``max_side``) would exceed this; checked
            before decoding from the header, and again while reading.
        at_s: instead of ``num_frames`` / ``sampling``: keep the frame nearest each of these times (seconds from the
            first frame; later than the clip's end → its last frame, noted). Reading stops a second after the last.
        progress: a progress bar over the file's declared frames (``None``: only for clips of 500 frames or more).
    Raises:
        VideoLoadError: empty, not a video, undecodable, too large, or fewer than two frames.
    Returns:
        :class:`LoadedVideo`: ``frames (T, H', W', 3)`` float32 RGB in [0, 1] (``T = num_frames``, ``len(at_s)`` or
        every frame read; ``H', W'`` shrunk to ``max_side``), ``indices (T,)``, ``times_s (T,)``, notes.
    """
    data, name = read_source(source, name, error=VideoLoadError, noun="a video")
    notes: list[str] = []
    if at_s is not None:
        at_s = np.atleast_1d(np.asarray(at_s, np.float64))
        if at_s.ndim != 1 or not len(at_s) or not np.isfinite(at_s).all():
            raise VideoLoadError(f"at_s must be a non-empty list of finite times in seconds, got {at_s!r}.")
    how = "times" if at_s is not None else "all" if num_frames is None else sampling
    if isinstance(data, np.ndarray):
        arr, digest = _from_array(data, notes)
        n = len(arr)
        _refuse_short(n)
        rate = float(fps) if fps else float("nan")
        t = np.arange(n) / rate if np.isfinite(rate) else np.arange(n, dtype=np.float64)
        if at_s is not None:
            idx, more = nearest_indices(t, at_s), []
        else:
            idx, more = choose_frames(t, num_frames, sampling, stride, short)
        ow, oh = _fit_size(arr.shape[2], arr.shape[1], max_side)
        if len(idx) * ow * oh > max_total_pixels:
            raise VideoLoadError(f"{len(idx)} frames of {ow}x{oh} are above max_total_pixels = {max_total_pixels:,}: "
                                 "ask for fewer frames or pass max_side=.")
        kept = _array_frames(arr, idx, max_side)
        times = t if np.isfinite(rate) else np.full(n, np.nan)
        return LoadedVideo(kept, rate, digest, name, n, idx, tuple(notes + more), times[idx], times, False,
                           how, int(stride), short or "")
    if not data:
        raise VideoLoadError("The file is empty.")
    if not _looks_like_video(data):
        raise VideoLoadError(f"Not a video file (detected: {_sniff(data)}). Supported: MP4, AVI, WebM/MKV, MPEG, animated GIF.")
    digest = hashlib.sha256(data).hexdigest()
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(name)[1] or ".mp4")  # read from a file: the bytes are let go meanwhile
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        del data
        got, t, n, rate, vfr, notes, idx = _decode_file(tmp, name, num_frames, sampling, stride, short, max_frames,
                                                        max_pixels, progress, max_side, max_total_pixels, at_s)
    finally:
        os.unlink(tmp)
    _refuse_short(n)
    kept = _assemble(got, idx, max_total_pixels)
    return LoadedVideo(kept, rate, digest, name, n, idx, tuple(notes), t[idx], t, vfr, how, int(stride), short or "")


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


def write_gif(path: "str | os.PathLike", frames: np.ndarray, durations_ms: "list[int] | int" = 125) -> None:
    """Write ``(T, H, W, 3)`` float [0, 1] frames as an animated GIF; ``durations_ms`` per frame gives a variable
    frame rate (GIF stores durations in 10 ms steps). Written atomically (for tests and examples)."""
    from PIL import Image

    from .files import write_atomic

    ims = [Image.fromarray((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)) for f in frames]
    import io

    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=durations_ms, loop=0, disposal=1,
                optimize=False)
    write_atomic(path, buf.getvalue(), overwrite=True)
