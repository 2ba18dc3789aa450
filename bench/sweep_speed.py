"""Cold ratio sweep: one batched pass over 19 nested masks vs one transformers forward per ratio.

    python bench/sweep_speed.py                       # CPU: mini-mae and the vit-mae-base config
    python bench/sweep_speed.py --device cuda --dtype bfloat16 --attn sdpa   # on a GPU

"naive" = what a slider without a cache does: ``ViTMAEForPreTraining(pixel_values, noise)`` once per
ratio. "ours" = :meth:`MAEAdapter.forward_masks` (visible tokens padded to the longest, masked
attention, one decoder batch).  Both must agree: the script checks the largest difference.
Random weights are fine for timing (the FLOPs do not depend on the values).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, summary, timeit  # noqa: E402

from explorer.masking import SWEEP_RATIOS, mask_from_order, masking_order  # noqa: E402
from explorer.models import load_model  # noqa: E402

BASE = dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, decoder_hidden_size=512, decoder_num_hidden_layers=8,
            decoder_num_attention_heads=16, decoder_intermediate_size=2048)


def base_folder() -> str:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    d = tempfile.mkdtemp(prefix="vit-mae-base-config-")
    torch.manual_seed(0)
    ViTMAEForPreTraining(ViTMAEConfig(**BASE)).save_pretrained(d)
    return d


def run(label: str, source: str, device: str, dtype: str, attn: str, repeat: int, batch_size: int | None) -> dict:
    adapter = load_model(source, device=device, dtype=dtype, attn_implementation=attn)
    rng = np.random.default_rng(0)
    img = rng.random((adapter.image_size, adapter.image_size, 3)).astype(np.float32)
    order = masking_order(adapter.grid, "random", 0)
    masks = np.stack([mask_from_order(order, adapter.grid, r) for r in SWEEP_RATIOS])

    naive_out = np.stack([adapter.forward_hf(img, m) for m in masks])
    ours_out = adapter.forward_masks(img, masks, batch_size=batch_size)
    diff = float(np.abs(naive_out - ours_out).max())

    naive = timeit(lambda: [adapter.forward_hf(img, m) for m in masks], repeat=repeat, device=device)
    ours = timeit(lambda: adapter.forward_masks(img, masks, batch_size=batch_size), repeat=repeat, device=device)
    speed = float(np.median(naive) / np.median(ours))
    print(f"{label:28s} {device:5s} {dtype:9s} {attn:5s} naive(19 forwards) {summary(naive)} | "
          f"ours(batched) {summary(ours)} | speed-up x{speed:.2f} | max |diff| {diff:.1e}")
    return {"label": label, "naive_ms": float(np.median(naive)), "ours_ms": float(np.median(ours)), "speedup": speed, "diff": diff}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="masks per forward (default: the adapter's choice: all 19 on a GPU, chunks of 4 on a CPU)")
    ap.add_argument("--skip-base", action="store_true", help="only the shipped mini model")
    args = ap.parse_args(argv)
    print(f"# sweep_speed on {machine()}; batch size {args.batch_size or 'auto'}")
    run("mini-mae (112px, 196 patches)", "mini-mae", args.device, args.dtype, args.attn, args.repeat * 2, args.batch_size)
    if not args.skip_base:
        run("vit-mae-base config (224px)", base_folder(), args.device, args.dtype, args.attn, args.repeat, args.batch_size)


if __name__ == "__main__":
    main()
