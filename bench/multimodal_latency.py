"""Server-side latency of the multimodal MAE app (CPU, shipped mini models).

    python bench/multimodal_latency.py [--moves 200]

* frame moves (audio-visual): "ours" swaps the cached PNGs of the video row in the live figure; "naive" runs the model
  again and builds a new figure for every move.
* budget moves (RGB-D): a slider move that is not cached yet (reconstruction + baselines + figure) versus one served
  from the cache (the app keeps every (budgets, seed) it has computed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, summary  # noqa: E402

from explorer.multimodal import reconstruct_multimodal  # noqa: E402
from explorer.viz.multimodal import multimodal_figure  # noqa: E402
from explorer.widgets.multimodal_app import MultiMAEApp  # noqa: E402


def _ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    av = MultiMAEApp("mini-av-mae", "clip:10000002", budgets={"video": 0.25, "audio": 0.25}, device="cpu")
    n = av.frame.max  # frames on the slider are numbered 1..n
    ours = []
    for _ in range(args.moves):
        f = int(rng.integers(1, n + 1))
        while f == av.frame.value:
            f = int(rng.integers(1, n + 1))
        ours.append(_ms(lambda: setattr(av.frame, "value", f)))
    naive = [_ms(lambda k=k: multimodal_figure(reconstruct_multimodal(av.adapter, av.inputs, {"video": 36, "audio": 12}, seed=0),
                                                frame=k % n)) for k in range(40)]
    print(f"# multimodal_latency on {machine()}")
    print(f"AV frame move  ours (cached, in-place): {summary(ours)}  max {max(ours):6.1f} ms  (n={len(ours)})")
    print(f"AV frame move  naive (forward + figure): {summary(naive)}  max {max(naive):6.1f} ms  (n={len(naive)})")
    print(f"frame move median speed-up x{np.median(naive) / np.median(ours):.1f}")
    rgbd = MultiMAEApp("mini-rgbd-mae", "room:10000001", budgets={"rgb": 1.0, "depth": 0.0}, device="cpu")
    steps = [k / 64 for k in range(0, 33)]
    miss = [_ms(lambda s=s: setattr(rgbd._sliders["depth"], "value", s)) for s in steps[1:]]
    hit = [_ms(lambda s=s: setattr(rgbd._sliders["depth"], "value", s)) for s in steps[::-1] * 3 if s != rgbd._sliders["depth"].value]
    print(f"RGB-D budget move, not cached (model + baselines + figure): {summary(miss)}  (n={len(miss)})")
    print(f"RGB-D budget move, cached:                                  {summary(hit)}  (n={len(hit)})")
    print(f"budget move median speed-up from the cache x{np.median(miss) / np.median(hit):.1f}")


if __name__ == "__main__":
    main()
