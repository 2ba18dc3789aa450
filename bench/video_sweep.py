"""VideoMAE-base geometry, end to end: a clip file to a figure, and the app's ratio sweep against recomputing per move.

    python bench/video_sweep.py [--device cpu|cuda] [--dtype float32|bfloat16] [--repeat 3] [--moves 5]

The model is the ``VideoMAEConfig()`` default (16 frames × 224², tubelets of 2 × 16 × 16 → 1,568 tokens) with random
weights, saved with ``save_pretrained`` and loaded through :func:`explorer.load_model` like a hub checkpoint. The clip is
a 64-frame generated video written as an MJPG AVI and read as Kinetics VideoMAE reads clips (16 frames at stride 4).

(a) latency per clip, split into decode (``load_video``), forward (``predict``: normalise + encoder + decoder),
    unpatchify (tubelets → frames, de-normalised) and figure (the app's frame figure + filmstrip, PNG-encoded);
(b) the 10-ratio sweep that :class:`explorer.widgets.video_app.VideoMAEApp` computes once per (clip, sampling,
    strategy, seed), against the naive app that runs a forward (and builds the figures) on every ratio-slider move;
    both in this run, with the ratio of per-move latencies and the number of moves after which the sweep has paid off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, summary, sync  # noqa: E402

from explorer.models import load_model  # noqa: E402
from explorer.data.clips import make_clip  # noqa: E402
from explorer.video import load_video, write_video  # noqa: E402
from explorer.masking.video import video_mask  # noqa: E402
from explorer.reconstruction.video import VideoReconstruction, reconstruct_video  # noqa: E402
from explorer.viz import video as VV  # noqa: E402
from explorer.widgets.video_app import VIDEO_RATIOS, VideoMAEApp  # noqa: E402


def base_checkpoint(folder: Path) -> Path:
    """A ``VideoMAEForPreTraining`` with the default (base) config and seeded random weights, saved like a hub checkpoint."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    torch.manual_seed(0)
    VideoMAEForPreTraining(VideoMAEConfig()).save_pretrained(folder)
    return folder


def one_clip(model, path: Path, device: str, ratio: float = 0.9) -> dict[str, float]:
    """Milliseconds per stage for one clip: file → 16 frames → masked forward → frames → figures."""
    t = {}
    t0 = time.perf_counter()
    v = load_video(path, num_frames=model.num_frames, sampling="strided", stride=4, progress=False)
    t["decode"] = time.perf_counter() - t0
    mask = video_mask((model.time_steps, *model.grid), ratio, "tube", 0)
    t0 = time.perf_counter()
    x, pos, logits, loss = model.predict(v.frames, mask)
    sync(device)
    t["forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.unpatchify(x, pos, logits)
    t["unpatchify"] = time.perf_counter() - t0
    rec = VideoReconstruction(frames=v.frames, mask=mask, prediction=np.clip(pred, 0, 1), loss=loss, ratio=ratio,
                              strategy="tube", seed=0, tubelet=model.tubelet_size, patch_size=model.patch_size)
    t0 = time.perf_counter()
    VV.video_frame_figure(rec, 0)
    VV.filmstrip(rec)
    t["figure"] = time.perf_counter() - t0
    return {k: 1e3 * s for k, s in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeat", type=int, default=3, help="clips timed end to end (after one warm-up)")
    ap.add_argument("--moves", type=int, default=5, help="ratio-slider moves timed, ours and naive")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="video_sweep_"))
    model = load_model(str(base_checkpoint(tmp / "videomae-base-random")), device=args.device, dtype=args.dtype)
    assert model.num_frames == 16 and model.image_size == 224 and model.time_steps * model.grid[0] * model.grid[1] == 1568
    clip = tmp / "clip.avi"
    write_video(clip, make_clip(10_000_003, frames=64, size=224).frames, fps=30)
    print(f"# video_sweep on {machine()}; VideoMAE-base config (1,568 tokens), random weights, {args.device} {args.dtype}")

    # (a) end to end, per stage
    one_clip(model, clip, args.device)  # warm-up
    runs = [one_clip(model, clip, args.device) for _ in range(args.repeat)]
    total = [sum(r.values()) for r in runs]
    print(f"(a) one clip, ratio 0.9 tube (n={args.repeat}):")
    for k in runs[0]:
        print(f"    {k:10s} {summary([r[k] for r in runs])}")
    print(f"    {'total':10s} {summary(total)}")

    # (b) the app's cached sweep against a forward per move
    t0 = time.perf_counter()
    app = VideoMAEApp(model=str(tmp / "videomae-base-random"), clip=str(clip), ratio=0.9, device=args.device, dtype=args.dtype)
    start = time.perf_counter() - t0
    if "⚠" in app.status.value:
        raise SystemExit(app.status.value)
    sweep_ms = 1e3 * app._sweep_s
    order = [0.5, 0.75, 0.95, 0.6, 0.85, 0.7, 0.55, 0.8, 0.65, 0.9]
    ours, naive = [], []
    for k in range(args.moves):
        r = order[k % len(order)]
        t0 = time.perf_counter()
        app.ratio.value = r
        ours.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        rec = reconstruct_video(app.adapter, app.frames, ratio=r, strategy="tube", seed=0)
        sync(args.device)
        VV.video_frame_figure(rec, app.frame_index)
        VV.filmstrip(rec)
        naive.append(1e3 * (time.perf_counter() - t0))
    print(f"(b) app start {start:.1f} s, of which the {len(VIDEO_RATIOS)}-ratio sweep (cache build) {sweep_ms / 1e3:.1f} s "
          f"({sweep_ms / len(VIDEO_RATIOS):.0f} ms per ratio)")
    print(f"    ours  (cached sweep, a ratio move)     {summary(ours)}  (n={len(ours)})")
    print(f"    naive (forward + figures per move)     {summary(naive)}  (n={len(naive)})")
    print(f"    per-move ratio naive / ours x{statistics.median(naive) / statistics.median(ours):.0f}; the sweep pays off "
          f"after {sweep_ms / statistics.median(naive):.1f} ratio moves")


if __name__ == "__main__":
    main()
