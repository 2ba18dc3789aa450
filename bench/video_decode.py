"""Frame decoding, OpenCV vs PyAV, side by side: which one should read video frames?

    python bench/video_decode.py [--frames 240] [--size 640x360] [--repeat 5]

A clip is written here by PyAV (H.264 in MP4 when this FFmpeg has libx264, else MPEG-4 Part 2) with moving texture,
then decoded whole to RGB ``(H, W, 3)`` uint8 arrays both ways: ``cv2.VideoCapture.read`` + BGR→RGB (what
``explorer.video`` does now), and ``av.open(...).decode(video=0)`` + ``frame.to_ndarray(format="rgb24")`` (with the
stream's thread_type "AUTO" and without).  Both must give the same frames (checked: mean absolute difference in grey
levels, colour-conversion rounding only).  Writes ``bench/results/video_decode-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def make_clip(path: Path, n: int, w: int, h: int) -> str:
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rng = np.random.default_rng(0)
    base = (rng.random((h * 2, w * 2, 3)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.ascontiguousarray(base[i % h:i % h + h, (2 * i) % w:(2 * i) % w + w])
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return codec


def read_cv2(path: str) -> list[np.ndarray]:
    import cv2

    cap, out = cv2.VideoCapture(path), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


def read_av(path: str, threads: bool) -> list[np.ndarray]:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        if threads:
            s.thread_type = "AUTO"
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)]


def main() -> None:
    from common import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "clip.mp4"
        codec = make_clip(p, a.frames, w, h)
        ways = {"opencv": lambda: read_cv2(str(p)), "pyav": lambda: read_av(str(p), False),
                "pyav-threads": lambda: read_av(str(p), True)}
        frames = {k: f() for k, f in ways.items()}  # warm-up, and the frames to compare
        ref = np.stack(frames["opencv"]).astype(np.int16)
        diff = {k: float(np.abs(np.stack(v).astype(np.int16) - ref).mean()) if len(v) == len(ref) else None
                for k, v in frames.items()}
        ms = {k: [] for k in ways}
        for _ in range(a.repeat):  # interleaved, so load on the machine hits both alike
            for k, f in ways.items():
                t0 = time.perf_counter()
                f()
                ms[k].append((time.perf_counter() - t0) * 1e3)
    rows = {k: {"median_ms": statistics.median(v), "ms_per_frame": statistics.median(v) / a.frames,
                "frames": len(frames[k]), "mean_abs_diff_vs_opencv": diff[k]} for k, v in ms.items()}
    for k, r in rows.items():
        print(f"{k:13s} {r['median_ms']:8.1f} ms for {r['frames']} frames ({r['ms_per_frame']:.2f} ms/frame), "
              f"mean |diff| vs OpenCV {r['mean_abs_diff_vs_opencv']}")
    out = {"machine": machine(), "codec": codec, "size": [w, h], "frames": a.frames, "repeat": a.repeat, "results": rows,
           "command": "python bench/video_decode.py " + " ".join(sys.argv[1:])}
    from explorer.files import write_atomic

    dest = ROOT / "bench" / "results" / f"video_decode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_atomic(dest, (json.dumps(out, indent=2) + "\n").encode())
    print("wrote", dest.relative_to(ROOT))


if __name__ == "__main__":
    main()
