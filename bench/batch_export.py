"""Batch export throughput: end to end (files in → tiles + done.json out) vs the raw model forward.

    python bench/batch_export.py                                   # CPU, mini-mae and the vit-mae-base config
    python bench/batch_export.py --device cuda --dtype bfloat16 --attn sdpa --images 2048 --batch-size 256

"raw" = ``ViTMAEForPreTraining(pixel_values)`` at 75% masking on tensors already on the device, in
batches of ``--batch-size`` — the ceiling.  "end to end" = ``python -m explorer export --views tiles``
(:func:`explorer.export.batch.run_batch`): PNG decoding and fitting in threads, one padded forward per
batch, PNG tiles written in threads, resume records.  Both use the same loaded model and batch size;
the ratio is end-to-end images/s over raw images/s.  Random weights are fine for timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, sync  # noqa: E402
from sweep_speed import base_folder  # noqa: E402

from explorer.export.batch import BatchConfig, run_batch  # noqa: E402
from explorer.models import load_model  # noqa: E402


def make_inputs(folder: Path, n: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))


def raw_throughput(adapter, n: int, batch: int) -> float:
    model = adapter.model
    S = adapter.image_size
    x = torch.randn(batch, 3, S, S, device=adapter.device, dtype=adapter.dtype)
    with torch.no_grad():
        model(pixel_values=x)  # warm-up
        sync(adapter.device)
        t0 = time.perf_counter()
        done = 0
        while done < n:
            model(pixel_values=x)
            done += batch
        sync(adapter.device)
    return done / (time.perf_counter() - t0)


def run(label: str, model: str, args) -> None:
    adapter = load_model(model, device=args.device, dtype=args.dtype, attn_implementation=args.attn)
    adapter.model.config.mask_ratio = 0.75
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "in", args.images, args.size)
        cfg = BatchConfig(model=model, inputs=str(tmp / "in"), out=str(tmp / "out"), ratios=(0.75,), views=("tiles",),
                          device=args.device, dtype=args.dtype, batch_size=args.batch_size, workers=args.workers)
        # Warm-up run on a few images (first-call allocations, thread pools).
        run_batch(BatchConfig(**{**cfg.__dict__, "out": str(tmp / "warm")}), progress=False, adapter=adapter, log=lambda *_: None)
        t0 = time.perf_counter()
        s = run_batch(BatchConfig(**{**cfg.__dict__, "out": str(tmp / "out")}), progress=False, adapter=adapter, log=lambda *_: None)
        e2e = len(s.done) / (time.perf_counter() - t0)
        assert len(s.done) == args.images and not s.failed, s.text()
    raw = raw_throughput(adapter, args.images, args.batch_size)
    print(f"{label:28s} raw forward {raw:8.1f} img/s | end to end {e2e:8.1f} img/s | ratio {e2e / raw:5.2f} "
          f"({args.images} images {args.size}px, batch {args.batch_size}, {args.dtype}, {args.attn}, {adapter.device})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=min(8, __import__("os").cpu_count() or 2))
    ap.add_argument("--models", nargs="+", default=["mini-mae", "vit-mae-base-config"])
    args = ap.parse_args()
    torch.manual_seed(0)
    print(machine())
    for m in args.models:
        run(m, base_folder() if m == "vit-mae-base-config" else m, args)


if __name__ == "__main__":
    main()
