"""Real videos the video models never train on: the held-out judges of reconstruction quality.

They are OpenCV's own sample recordings, shipped by Debian's ``opencv-doc`` package (Apache-2.0, like OpenCV;
see ``/usr/share/doc/opencv-doc/copyright`` of that package). Nothing is committed: ``make heldout-media``
downloads the package with ``apt-get download`` and unpacks only these files into ``.cache/heldout/``
(or ``$EXPLORER_HELDOUT``).

    clips = heldout_clips(frames=8, size=64)     # {"vtest@0": (8, 64, 64, 3) float32 in [0, 1], ...}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class HeldoutVideo:
    """One real recording.

    Attributes:
        name: short name; file: its name in the held-out folder; member: its path inside ``opencv-doc``;
        what: what it shows; step: frames skipped between the frames of one clip (about 10 frames per second).
    """

    name: str
    file: str
    member: str
    what: str
    step: int


VIDEOS: tuple[HeldoutVideo, ...] = (
    HeldoutVideo("vtest", "vtest.avi", "usr/share/doc/opencv-doc/examples/data/vtest.avi",
                 "pedestrians on a campus path, fixed camera (768 × 576, 10 fps)", 1),
    HeldoutVideo("tree", "tree.avi", "usr/share/doc/opencv-doc/examples/data/tree.avi",
                 "a tree in wind behind a window, fixed camera (320 × 240, 15 fps)", 1),
    HeldoutVideo("box", "box.mp4", "usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz",
                 "a hand moving a printed box over a table, hand-held camera (640 × 480, 30 fps)", 3),
    HeldoutVideo("cup", "cup.mp4", "usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz",
                 "a hand tilting a black cup before a wall, hand-held camera (640 × 480, 27 fps)", 3),
)
LICENCE = "Apache-2.0 (OpenCV sample data, Debian package opencv-doc)"


def heldout_dir() -> Path:
    """Folder holding the held-out videos: ``$EXPLORER_HELDOUT`` or ``<repo>/.cache/heldout``."""
    env = os.environ.get("EXPLORER_HELDOUT")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".cache" / "heldout"


def missing_videos() -> list[str]:
    """Names of held-out videos not on this machine (``make heldout-media`` fetches them)."""
    return [v.name for v in VIDEOS if not (heldout_dir() / v.file).is_file()]


def _decoded(path: Path, rgb: bool = True):
    """Every decodable frame of ``path`` as ``(H, W, 3)`` uint8 RGB, in order (PyAV; FFmpeg's complaints about the
    recordings' slightly damaged H.264 are kept quiet)."""
    import av

    av.logging.set_level(av.logging.PANIC)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24") if rgb else None


def read_frames(path: Path, start: int, count: int, step: int) -> np.ndarray:
    """Decoded frames ``start, start + step, …`` of a video file: ``(count, H, W, 3)`` uint8 RGB."""
    out = []
    for i, fr in enumerate(_decoded(path)):
        if i >= start and (i - start) % step == 0:
            out.append(fr)
            if len(out) == count:
                break
    if len(out) < count:
        raise ValueError(f"{path.name}: only {len(out)} of {count} frames from frame {start}")
    return np.stack(out)


def decodable_frames(path: Path) -> int:
    """How many frames of ``path`` actually decode (a container's count can be wrong: tree.avi says 444, holds 68)."""
    return sum(1 for _ in _decoded(path, rgb=False))


def square_clip(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of ``(T, H, W, 3)`` uint8 frames resized to ``(T, size, size, 3)`` float32 in [0, 1]."""
    h, w = frames.shape[1:3]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return np.stack([cv2.resize(f[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA) for f in frames]
                    ).astype(np.float32) / 255.0


def heldout_clips(frames: int = 8, size: int = 64, per_video: int = 4) -> dict[str, np.ndarray]:
    """``per_video`` evenly spaced clips of every held-out video: ``{"name@start": (frames, size, size, 3)}``.

    Raises ``FileNotFoundError`` naming ``make heldout-media`` when the videos are not on this machine."""
    return {k: v.copy() for k, v in _heldout_clips(frames, size, per_video).items()}


@lru_cache(maxsize=4)
def _heldout_clips(frames: int, size: int, per_video: int) -> dict[str, np.ndarray]:
    if missing := missing_videos():
        raise FileNotFoundError(f"Held-out videos {missing} are not in {heldout_dir()}; run `make heldout-media`.")
    out = {}
    for v in VIDEOS:
        path = heldout_dir() / v.file
        n = decodable_frames(path)
        span = frames * v.step
        for start in np.linspace(0, max(n - span - 2, 0), per_video).astype(int):
            out[f"{v.name}@{start}"] = square_clip(read_frames(path, int(start), frames, v.step), size)
    return out
