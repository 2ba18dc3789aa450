"""Turning what a researcher has into a multimodal MAE's inputs (crop, resize, align in time), with notes.

    x, notes = prepare_rgbd(image, depth, size=64)                   # {"rgb": (64, 64, 3), "depth": (64, 64) metres}
    x, notes = prepare_av(frames, fps, audio_samples, frames=8, size=48)   # {"video": (8, 48, 48, 3), "audio": (128, 96)}
    x, notes = sample_inputs(adapter, "room:10000001")                # shipped / generated samples by name
    p = prepare_files("rgbd", image_upload, depth_or_right_upload, size=64)   # files: decoded, then prepared

Depth is resized with nearest neighbours (never blending a foreground and a background depth into a
depth that exists nowhere); unknown depth stays NaN.  The audio-visual model covers one second: 8 frames
at 8 frames per second and the matching 1 s of sound (128 mel bins × 96 hops of 10 ms).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..io import ImageLoadError, array_sha256
from ..reconstruction.multimodal import MultiModalInputError

AV_FPS = 8.0
#: Frames of an uploaded video are shrunk to this longer side while they are read (4x the 48 pixels the shipped
#: audio-visual model reads), so a large video never sits in memory at full size.
AV_READ_SIDE = 192
#: Stored frames up to this size are accepted here (8K video): each is shrunk as soon as it is decoded.
AV_MAX_FRAME_PIXELS = 36_000_000
SAMPLE_KINDS = {"rgbd": ("room", "motorcycle"), "audio-visual": ("clip",)}


def _square(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    s = min(h, w)
    return x[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def prepare_rgbd(image: np.ndarray | None, depth: np.ndarray | None, size: int = 64) -> tuple[dict, list[str]]:
    """Centre-crop to a square and resize: RGB ``(H, W, 3)`` in [0, 1] by area, depth ``(H', W')`` by nearest neighbour.

    A depth map of another size than the image is first resized to the image (said in the notes).
    Returns ``({"rgb": (size, size, 3), "depth": (size, size)}, notes)`` with the given modalities only.
    """
    notes, out = [], {}
    if image is None and depth is None:
        raise MultiModalInputError("Give an RGB image, a depth map, or both.")
    if image is not None:
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise MultiModalInputError(f"The RGB image must be (H, W, 3), got {image.shape}.")
        if image.shape[0] != image.shape[1]:
            notes.append(f"RGB centre-cropped from {image.shape[1]}x{image.shape[0]} to a square")
        out["rgb"] = cv2.resize(_square(image), (size, size), interpolation=cv2.INTER_AREA).clip(0, 1)
    if depth is not None:
        depth = np.asarray(depth, np.float32)
        if depth.ndim != 2:
            raise MultiModalInputError(f"The depth map must be (H, W), got {depth.shape}.")
        if image is not None and depth.shape != image.shape[:2]:
            notes.append(f"depth resized from {depth.shape[1]}x{depth.shape[0]} to the image's {image.shape[1]}x{image.shape[0]}")
            depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        out["depth"] = cv2.resize(_square(depth), (size, size), interpolation=cv2.INTER_NEAREST)
        bad = ~np.isfinite(out["depth"])
        if bad.any():
            notes.append(f"{bad.mean():.0%} of the depth is unknown (left out of the input and of the scores)")
    return out, notes


def _square_frames(frames: np.ndarray, idx, size: int) -> np.ndarray:
    """``(len(idx), size, size, 3)``: the frames ``idx``, centre-cropped to a square and resized by area, in [0, 1]."""
    return np.stack([cv2.resize(_square(frames[i]), (size, size), interpolation=cv2.INTER_AREA) for i in idx]).clip(0, 1)


def prepare_av(frames: np.ndarray | None, fps: float, audio: np.ndarray | None, *, rate: int = 16_000, num_frames: int = 8,
               size: int = 48, start_s: float = 0.0) -> tuple[dict, list[str]]:
    """The model's second of video and sound from ``start_s``.

    Args:
        frames: ``(T, H, W, 3)`` decoded frames (a still image may be given as ``(1, H, W, 3)``: it is repeated).
        fps: their frame rate (``nan``: the frames are taken as spread over one second).
        audio: mono samples at ``rate`` (``None``: no sound; the model can predict it).
    Returns:
        ``({"video": (num_frames, size, size, 3), "audio": (128, 96)}, notes)`` with the given modalities only.
    """
    from ..data.av_clips import spectrogram_patch_array

    notes, out = [], {}
    if frames is None and audio is None:
        raise MultiModalInputError("Give a video (or an image), a sound, or both.")
    if frames is not None:
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise MultiModalInputError(f"Frames must be (T, H, W, 3) with T ≥ 1, got {frames.shape}.")
        if len(frames) == 1:
            idx = np.zeros(num_frames, int)
            notes.append(f"a still image: repeated over {num_frames} frames")
        elif np.isfinite(fps) and fps > 0:
            idx = np.round((start_s + np.arange(num_frames) / AV_FPS) * fps).astype(int)
            if idx[-1] >= len(frames):
                notes.append(f"the clip is shorter than {start_s + num_frames / AV_FPS:.2f} s: its last frame repeats")
            idx = idx.clip(0, len(frames) - 1)
            notes.append(f"frames at {AV_FPS:g} fps from {start_s:.2f} s (clip at {fps:.3g} fps)")
        else:
            idx = np.floor((np.arange(num_frames) + 0.5) * len(frames) / num_frames).astype(int)
            notes.append("no frame rate known: frames spread over the clip, taken as one second")
        out["video"] = _square_frames(frames, idx, size)
    if audio is not None:
        a = np.asarray(audio, np.float32)
        lo = int(round(start_s * rate))
        seg = a[lo:lo + rate]
        if len(seg) < rate:
            notes.append(f"the sound lasts {max(len(a) - lo, 0) / rate:.2f} s after {start_s:.2f} s: padded with silence to 1 s")
            seg = np.pad(seg, (0, rate - len(seg)))
        out["audio"] = spectrogram_patch_array(seg, rate) if rate == 16_000 else None
        if out["audio"] is None:
            raise MultiModalInputError(f"Audio must be at 16 kHz here (got {rate} Hz); explorer.audio.load_audio resamples it.")
    return out, notes


def sample_names(task: str) -> list[tuple[str, str]]:
    """(label, name) of the held-out samples offered for a task."""
    if task == "rgbd":
        return ([(f"generated room {s} (held out)", f"room:{s}") for s in (10_000_001, 10_000_004, 10_000_007, 10_000_012)]
                + [(f"motorcycle, held-out crop {s} (Middlebury)", f"motorcycle:{s}") for s in (1, 2)])
    return [(f"generated clip {s} (held out)", f"clip:{s}") for s in (10_000_002, 10_000_005, 10_000_009)]


def sample_inputs(adapter, name: str) -> tuple[dict, list[str]]:
    """The inputs of a named sample (``"room:<seed>"``, ``"motorcycle:<seed>"``, ``"clip:<seed>"``) for ``adapter``;
    an adapter with samples of its own (``adapter.sample_inputs``, e.g. Audio-MAE's ``"sound:<seed>"``) gives them."""
    own = getattr(adapter, "sample_inputs", None)
    if callable(own):
        try:
            return own(name)
        except ValueError as e:
            raise MultiModalInputError(str(e)) from None
    kind, _, seed = name.partition(":")
    if kind not in SAMPLE_KINDS.get(adapter.task, ()) or not seed.isdecimal():  # seeds are non-negative integers
        offered = ", ".join(n for _l, n in sample_names(adapter.task))
        raise MultiModalInputError(f"Unknown sample {name!r} for a {adapter.task} model; e.g. {offered}.")
    if kind == "room":
        from ..data.rgbd import make_rgbd_scene

        s = make_rgbd_scene(int(seed), adapter.spec("rgb").shape[0])
        return {"rgb": s.image, "depth": s.depth}, [f"{s.name}: generated, exact depth, not seen in training"]
    if kind == "motorcycle":
        from ..data.rgbd import motorcycle_rgbd

        s = motorcycle_rgbd(int(seed), adapter.spec("rgb").shape[0], "test")
        return {"rgb": s.image, "depth": s.depth}, [f"{s.name}: Middlebury 2014 via scikit-image (Scharstein et al. 2014); "
                                                    "right 35 % of the image, held out"]
    from ..data.av_clips import make_av_clip

    c = make_av_clip(int(seed))
    return {"video": c.frames, "audio": c.spectrogram}, [f"generated clip {seed}: objects ring when they bounce, held out"]


# ---------------------------------------------------------------------------- files (uploads, paths, bytes)
@dataclass(frozen=True)
class PreparedInputs:
    """A multimodal MAE's inputs made from files a user gave.

    Attributes:
        arrays: modality → array as :func:`prepare_rgbd` / :func:`prepare_av` return them (the given modalities only).
        notes: what was done to the files (decoding, stereo, crops, resampling), in order.
        key: ``"upload:<sha256>:<sha256>…"``, one hash per file: names the inputs (cache key, export name).
        samples: ``(16000,)`` float32, the second of sound the ``audio`` spectrogram was made from, when it came from a
            file (what a player plays as the original); ``None`` otherwise.
    """

    arrays: dict
    notes: list
    key: str
    samples: "np.ndarray | None" = None


def _colour_image(source: Any):
    """``source`` decoded as a colour image (the right view of a stereo pair), or ``None`` (grey or not an image)."""
    from ..io import load_image

    try:
        li = load_image(source)
    except ImageLoadError:
        return None
    return li if li.channels >= 3 else None


def rgbd_from_files(image: Any = None, second: Any = None, *, size: int = 64,
                    stereo_right: bool | None = None) -> PreparedInputs:
    """RGB-D inputs from an RGB image and a second file: a depth map, or the right view of a stereo pair.

    Args:
        image, second: anything :func:`explorer.load_image` / :func:`explorer.depth.load_depth` take (path, bytes, a
            FileUpload value), or ``None``.
        stereo_right: whether ``second`` is a right stereo view (``None``: a colour image is taken as one, a grey image or
            any other file as a depth map).  A stereo pair gives relative depth (50 / OpenCV SGBM disparity, said in the notes).
    Raises:
        MultiModalInputError: nothing given, or a right view without the left image; the loaders' errors for bad files.
    """
    from ..depth import load_depth, stereo_disparity
    from ..io import load_image

    notes, key, img, dep = [], [], None, None
    if image is not None:
        li = load_image(image)
        img, key = li.pixels, key + [li.sha256]
        notes += list(li.notes)
    if second is not None:
        right = load_image(second) if stereo_right else None if stereo_right is False else _colour_image(second)
        if right is not None:
            if img is None:
                raise MultiModalInputError("A right stereo image needs the left image in the RGB box.")
            d = stereo_disparity(img, right.pixels)
            dep = np.where(d.valid, 1.0 / np.maximum(d.depth, 1e-6), np.nan) * 50.0
            notes.append("depth from the stereo pair: 50 / disparity (relative, not metres; no calibration given)")
            key.append(right.sha256)
        else:
            ld = load_depth(second)
            dep, key = ld.depth, key + [ld.sha256]
            notes += list(ld.notes)
            if ld.kind != "metric depth":
                notes.append(f"{ld.kind}: the model was trained on metres, so its numbers are not comparable")
    x, more = prepare_rgbd(img, dep, size)
    return PreparedInputs(x, notes + more, "upload:" + ":".join(key))


def av_from_files(video: Any = None, audio: Any = None, *, start_s: float = 0.0) -> PreparedInputs:
    """Audio-visual inputs from a video (or a still image: repeated over the frames) and a sound file, one second from
    ``start_s``. Without a sound file, a video's own sound track is used when it has one (decoded by FFmpeg up to
    ``start_s`` + 1 s, :func:`explorer.audio.load_sound_track`).

    Only the frames the model reads are kept (the frame nearest each of its 8 times, shrunk to
    :data:`AV_READ_SIDE` pixels as they are decoded): memory does not grow with the video's size or length.

    Raises:
        MultiModalInputError: nothing given; the video loader's error when ``video`` is neither a video nor an image;
        the audio loader's for a bad sound.
    """
    from ..audio import load_audio, load_sound_track
    from ..video import VideoLoadError, load_video

    num_frames, size = 8, 48
    notes, key, frames, fps, samples, video_x = [], [], None, float("nan"), None, None
    if video is not None:
        try:
            read = dict(max_side=AV_READ_SIDE, max_pixels=AV_MAX_FRAME_PIXELS)
            v = load_video(video, at_s=start_s + np.arange(num_frames) / AV_FPS, **read)
            if not np.isfinite(v.fps):  # no frame rate known: spread over the clip, taken as one second (as before)
                v = load_video(video, num_frames=num_frames, **read)
                extra = ["no frame rate known: frames spread over the clip, taken as one second"]
            else:
                extra = [f"frames at {AV_FPS:g} fps from {start_s:.2f} s (clip at {v.fps:.3g} fps)"]
            video_x = _square_frames(v.frames, range(len(v.frames)), size)
            key.append(v.sha256)
            notes += list(v.notes) + extra
        except VideoLoadError as e:
            from ..io import load_image

            try:
                li = load_image(video)
            except ImageLoadError:
                raise e from None
            frames, key = li.pixels[None], key + [li.sha256]
            notes += list(li.notes)
    if audio is not None:
        a = load_audio(audio)
        samples, key = a.samples, key + [a.sha256]
        notes += list(a.notes)
    elif video_x is not None and not isinstance(video, np.ndarray):
        a = load_sound_track(video, until_s=start_s + 1.0)
        if a is not None:  # "sound track" in the key: the same file without its sound is another input
            samples, key = a.samples, key + ["sound-track"]
            notes += list(a.notes)
    x, more = {}, []
    if video_x is None or samples is not None:
        x, more = prepare_av(frames, fps, samples, start_s=start_s, num_frames=num_frames, size=size)
    if video_x is not None:
        x = {"video": video_x, **x}
    second = None
    if samples is not None:  # the second the spectrogram shows (prepare_av pads a short sound with silence)
        lo = int(round(start_s * 16_000))
        second = np.asarray(samples[lo:lo + 16_000], np.float32)
        second = np.pad(second, (0, 16_000 - len(second)))
    return PreparedInputs(x, notes + more, "upload:" + ":".join(key), second)


def prepare_files(task: str, first: Any = None, second: Any = None, *, size: int = 64, start_s: float = 0.0,
                  stereo_right: bool | None = None) -> PreparedInputs:
    """The inputs of a ``task`` model (``"rgbd"``: RGB image + depth map or right view; ``"audio-visual"``: video or still
    + sound) from the files a user gave; see :func:`rgbd_from_files` and :func:`av_from_files`."""
    if first is None and second is None:
        raise MultiModalInputError("Upload a file first (either box, or both).")
    if task == "rgbd":
        return rgbd_from_files(first, second, size=size, stereo_right=stereo_right)
    if task == "audio-visual":
        return av_from_files(first, second, start_s=start_s)
    raise MultiModalInputError(f"No file inputs for a {task!r} model (rgbd or audio-visual).")
