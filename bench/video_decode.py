"""Frame decoding, OpenCV vs PyAV, side by side: which one should read video frames, and what did switching give?

    python bench/video_decode.py [--frames 240] [--size 640x360] [--repeat 5] [--keep 16] [--max-side 224]

A clip is written here by PyAV (H.264 in MP4 when this FFmpeg has libx264, else MPEG-4 Part 2) with moving texture
(seeded), then timed two ways, all in one run and interleaved (so load on the machine hits every way alike):

* raw decoders, every frame to RGB ``(H, W, 3)`` uint8: ``cv2.VideoCapture.read`` + BGR→RGB, and
  ``av.open(...).decode(video=0)`` + ``frame.to_ndarray(format="rgb24")`` (with the stream's thread_type "AUTO" and
  without);
* the loader end to end, ``--keep`` frames uniform in time, and every frame shrunk to ``--max-side`` while reading
  (``(T, H, W, 3)`` float32): the previous OpenCV path of ``explorer.video`` (``grab()`` every frame, ``retrieve()``
  the kept ones; its code read from git at commit ``OPENCV_COMMIT``, so both paths run in the same process) against
  ``explorer.video.load_video`` as it is now (PyAV, threaded).

Every way must give the same frames (checked: largest absolute difference in grey levels against OpenCV).
Writes ``bench/results/video_decode-<date>.json`` with the machine and its load average before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: The last commit whose ``explorer/video.py`` decoded with OpenCV (``cv2.VideoCapture`` grab / retrieve).
OPENCV_COMMIT = "3b43dc9"


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


def old_loader():
    """``explorer/video.py`` as of :data:`OPENCV_COMMIT` (the OpenCV path), imported beside the current one; ``None``
    when git or that commit is not at hand."""
    try:
        code = subprocess.run(["git", "show", f"{OPENCV_COMMIT}:explorer/video.py"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    import explorer  # noqa: F401  (the old module's relative imports resolve in this package)

    d = Path(tempfile.mkdtemp())
    (d / "video_opencv.py").write_text(code)
    spec = importlib.util.spec_from_file_location("explorer._video_opencv", d / "video_opencv.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    from common import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=int, default=16, help="frames the loader keeps in the sampled case")
    ap.add_argument("--max-side", type=int, default=224,
                    help="the all-frames case shrinks frames to this while reading (as the models read them; without "
                         "it, allocating T x H x W x 3 float32 dominates and varies run to run on this VM)")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    from explorer.video import load_video

    old = old_loader()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "clip.mp4"
        codec = make_clip(p, a.frames, w, h)
        ways = {"opencv": lambda: read_cv2(str(p)), "pyav": lambda: read_av(str(p), False),
                "pyav-threads": lambda: read_av(str(p), True)}
        every = {"max_side": a.max_side, "progress": False}
        loads = {f"load_video {a.keep} frames, new (PyAV)": lambda: load_video(p, num_frames=a.keep, progress=False),
                 "load_video all frames, new (PyAV)": lambda: load_video(p, **every)}
        if old is not None:
            loads = {f"load_video {a.keep} frames, old (OpenCV)": lambda: old.load_video(p, num_frames=a.keep, progress=False),
                     **loads, "load_video all frames, old (OpenCV)": lambda: old.load_video(p, **every)}
            loads = dict(sorted(loads.items()))  # keep / all, new / old beside each other
        else:
            print(f"git show {OPENCV_COMMIT}:explorer/video.py failed: the old OpenCV loader is left out")
        frames = {k: f() for k, f in ways.items()}  # warm-up, and the frames to compare
        ref = np.stack(frames["opencv"]).astype(np.int16)
        diff = {k: int(np.abs(np.stack(v).astype(np.int16) - ref).max()) if len(v) == len(ref) else None
                for k, v in frames.items()}
        counts = {k: len(v) for k, v in frames.items()}
        for k, f in loads.items():
            v = f()
            pick = ref[v.indices]
            if pick.shape[1:3] != v.frames.shape[1:3]:  # shrunk to max_side: compare with OpenCV's frames shrunk alike
                import cv2

                pick = np.stack([cv2.resize(f.astype(np.uint8), v.frames.shape[2:0:-1], interpolation=cv2.INTER_AREA)
                                 for f in pick]).astype(np.int16)
            counts[k] = len(v.frames)
            diff[k] = int(np.abs(np.round(v.frames * 255).astype(np.int16) - pick).max())
        ms = {k: [] for k in [*ways, *loads]}
        for _ in range(a.repeat):  # interleaved, so load on the machine hits every way alike
            for k, f in {**ways, **loads}.items():
                t0 = time.perf_counter()
                f()
                ms[k].append((time.perf_counter() - t0) * 1e3)
    load1 = os.getloadavg()
    rows = {k: {"median_ms": statistics.median(v), "ms_per_frame": statistics.median(v) / a.frames,
                "frames_out": counts[k], "max_abs_diff_vs_opencv": diff[k]} for k, v in ms.items()}
    for k, r in rows.items():
        print(f"{k:36s} {r['median_ms']:8.1f} ms ({r['ms_per_frame']:.2f} ms per frame of the clip), "
              f"{r['frames_out']} frames out, max |diff| vs OpenCV {r['max_abs_diff_vs_opencv']}")
    ratios = {}
    for what in (f"load_video {a.keep} frames", "load_video all frames"):
        o, n = rows.get(f"{what}, old (OpenCV)"), rows.get(f"{what}, new (PyAV)")
        if o and n:
            ratios[what] = o["median_ms"] / n["median_ms"]
            print(f"{what}: old / new = x{ratios[what]:.2f}")
    ratios["raw: opencv / pyav-threads"] = rows["opencv"]["median_ms"] / rows["pyav-threads"]["median_ms"]
    print(f"load average (1, 5, 15 min) before {load0}, after {load1}")
    out = {"machine": machine(), "load_average_before": load0, "load_average_after": load1, "codec": codec,
           "size": [w, h], "frames": a.frames, "keep": a.keep, "max_side": a.max_side, "repeat": a.repeat, "opencv_commit": OPENCV_COMMIT,
           "results": rows, "speedups": ratios, "command": "python bench/video_decode.py " + " ".join(sys.argv[1:])}
    from explorer.files import write_atomic

    dest = ROOT / "bench" / "results" / f"video_decode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_atomic(dest, (json.dumps(out, indent=2) + "\n").encode())
    print("wrote", dest.relative_to(ROOT))


if __name__ == "__main__":
    main()
