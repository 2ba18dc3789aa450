"""Peak memory of attention capture on a long input: keep every layer vs stream layer by layer.

    python bench/attention_memory.py                      # CPU: peak RSS, each mode in a fresh process
    python bench/attention_memory.py --device cuda        # GPU: torch.cuda.max_memory_allocated, one process

VideoMAE-base (random weights from the config; memory does not depend on the values) on 16 frames
of 224² = 1,568 tokens, 12 layers × 12 heads.  Modes:

* ``plain``      — the forward alone (SDPA), the floor;
* ``eager``      — transformers' ``output_attentions=True`` (eager attention, every layer returned);
* ``keep-all``   — explorer's capture keeping every layer (``AttentionCapture(keep=True)``);
* ``streaming``  — explorer's rollout accumulated layer by layer (what ``explain(..., "rollout")`` does).

Printed: peak memory of each mode, the capture's extra memory over ``plain``, and streaming / keep-all.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

MODES = ("plain", "eager", "keep-all", "streaming")


def build(device: str, dtype: str, frames: int, size: int):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    cfg = VideoMAEConfig(image_size=size, num_frames=frames, tubelet_size=2, patch_size=16)
    model = VideoMAEModel(cfg).eval().to(device, getattr(torch, dtype))
    x = torch.randn(1, frames, 3, size, size, device=device, dtype=getattr(torch, dtype))
    return model, x


def run_mode(mode: str, model, x) -> dict:
    from explorer.attention import AttentionCapture, RolloutAccumulator

    t0 = time.perf_counter()
    tokens = None
    with torch.no_grad():
        if mode == "plain":
            model(pixel_values=x)
        elif mode == "eager":
            model.set_attn_implementation("eager")
            out = model(pixel_values=x, output_attentions=True)
            tokens = out.attentions[0].shape[-1]
            held = sum(a.numel() * a.element_size() for a in out.attentions)
            del out
            model.set_attn_implementation("sdpa")
            return {"seconds": time.perf_counter() - t0, "tokens": tokens, "held_bytes": held}
        elif mode == "keep-all":
            with AttentionCapture(model, keep=True) as cap:
                model(pixel_values=x)
            tokens = cap.calls[0].probs.shape[-1]
            held = sum(c.probs.numel() * c.probs.element_size() for c in cap.calls)
            return {"seconds": time.perf_counter() - t0, "tokens": tokens, "held_bytes": held, "layers": cap.count}
        elif mode == "streaming":
            acc = RolloutAccumulator()
            with AttentionCapture(model, on_forward=lambda c: acc.update(c.probs[0])) as cap:
                model(pixel_values=x)
            return {"seconds": time.perf_counter() - t0, "tokens": acc.result.shape[-1],
                    "held_bytes": acc.result.numel() * acc.result.element_size(), "layers": cap.count}
    return {"seconds": time.perf_counter() - t0}


def child(args) -> None:
    model, x = build(args.device, args.dtype, args.frames, args.size)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    res = run_mode(args.mode, model, x)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        res["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    else:
        res["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    print(machine())
    results = {}
    for mode in MODES:
        # A fresh process per mode: peak RSS (CPU) and the CUDA caching allocator start clean.
        cmd = [sys.executable, __file__, "--mode", mode, "--device", args.device, "--dtype", args.dtype,
               "--frames", str(args.frames), "--size", str(args.size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[mode] = json.loads(out.split("RESULT ", 1)[1])
    gib = 2**30
    what = "peak GPU memory allocated by the forward" if args.device.startswith("cuda") else "peak process RSS"
    print(f"VideoMAE-base config, {args.frames}x{args.size}x{args.size}, {results['keep-all'].get('tokens')} tokens, "
          f"{args.dtype}, {args.device}; {what}:")
    plain = results["plain"]["peak_bytes"]
    for mode in MODES:
        r = results[mode]
        extra = r["peak_bytes"] - plain
        held = f", attention held {r['held_bytes'] / gib:.3f} GiB" if "held_bytes" in r else ""
        print(f"  {mode:10s} peak {r['peak_bytes'] / gib:6.2f} GiB  (+{extra / gib:5.2f} GiB over plain){held}  {r['seconds']:.1f} s")
    ka = results["keep-all"]["peak_bytes"] - plain
    st = results["streaming"]["peak_bytes"] - plain
    print(f"streaming / keep-all: peak {results['streaming']['peak_bytes'] / results['keep-all']['peak_bytes']:.2f}, "
          f"capture overhead {st / ka if ka > 0 else float('nan'):.2f}")


if __name__ == "__main__":
    main()
