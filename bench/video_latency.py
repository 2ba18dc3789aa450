"""Server-side latency of a time-slider move in the video MAE app (CPU, mini video MAE).

    python bench/video_latency.py [--model mini-video-mae] [--moves 200]

"ours": the app as shipped — a ratio sweep computed once per (clip, strategy, seed); a frame move swaps three cached
PNG frames and the error grid in the live figure.  "naive": a reconstruction (forward) and a new figure per move.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, summary  # noqa: E402

from explorer.reconstruction.video import reconstruct_video  # noqa: E402
from explorer.viz import video as VV  # noqa: E402
from explorer.widgets.video_app import VideoMAEApp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini-video-mae")
    ap.add_argument("--moves", type=int, default=200)
    args = ap.parse_args()
    t0 = time.perf_counter()
    app = VideoMAEApp(model=args.model, clip="generated:10000003", ratio=0.9)
    build = time.perf_counter() - t0
    n = app.frame.max  # frames on the slider are numbered 1..n
    rng = np.random.default_rng(0)
    ours = []
    for _ in range(args.moves):
        f = int(rng.integers(1, n + 1))
        while f == app.frame.value:
            f = int(rng.integers(1, n + 1))
        t = time.perf_counter()
        app.frame.value = f
        ours.append((time.perf_counter() - t) * 1e3)
    naive = []
    for k in range(40):
        t = time.perf_counter()
        rec = reconstruct_video(app.adapter, app.frames, ratio=0.9, strategy="tube", seed=0)
        VV.video_frame_figure(rec, k % n)
        naive.append((time.perf_counter() - t) * 1e3)
    print(f"# video_latency on {machine()}, model {args.model}, {n} frames; app start with a 10-ratio sweep: {build:.1f} s")
    print(f"ours  (cached sweep, in-place update): {summary(ours)}  max {max(ours):6.1f} ms  (n={len(ours)})")
    print(f"naive (forward + new figure):          {summary(naive)}  max {max(naive):6.1f} ms  (n={len(naive)})")
    print(f"median speed-up x{np.median(naive) / np.median(ours):.1f}")


if __name__ == "__main__":
    main()
