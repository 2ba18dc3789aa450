"""Check the GPU paths against the CPU: every shipped mini model on ``cuda`` gives the CPU's answer.

    python tools/gpu_check.py            # prints one line per model and exits 1 on a mismatch

Run on a machine with a GPU (the test suite runs on CPU only).  Tolerances allow TF32 / kernel differences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def main() -> int:
    import explorer
    from explorer.fusion import align, load_fusion_model
    from explorer.multimodal import load_multimodal_model, reconstruct_multimodal
    from explorer.multimodal.inputs import sample_inputs
    from explorer.data.clips import make_clip
    from explorer.reconstruction.video import reconstruct_video

    assert torch.cuda.is_available(), "no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    rows, bad = [], 0

    def check(name, a, b, tol):
        """``tol`` is relative to the values' scale (depth in metres, log-mel power: not in [0, 1])."""
        nonlocal bad
        d = _max_diff(a, b)
        scale = max(1.0, float(np.max(np.abs(np.asarray(a, np.float64)))))
        ok = d <= tol * scale
        bad += not ok
        rows.append(f"{'ok ' if ok else 'BAD'} {name}: max |cuda - cpu| = {d:.2e} (tolerance {tol:g} × {scale:.3g})")

    dev_pair = ("cpu", "cuda")
    if True:
        cpu, gpu = (explorer.load_model("mini-mae", device=d) for d in dev_pair)
        r = [explorer.reconstruct(m, "chelsea", ratio=0.75, seed=0) for m in (cpu, gpu)]
        check("mini-mae reconstruction", r[0].prediction, r[1].prediction, 1e-3)
        check("mini-mae mask", r[0].mask, r[1].mask, 0)
        v = [explorer.load_model("mini-video-mae", device=d) for d in dev_pair]
        clip = make_clip(10_000_003, frames=v[0].num_frames, size=v[0].image_size).frames
        rv = [reconstruct_video(m, clip, ratio=0.9, strategy="tube", seed=0) for m in v]
        check("mini-video-mae reconstruction", rv[0].prediction, rv[1].prediction, 1e-3)
        for name in ("mini-rgbd-mae", "mini-av-mae"):
            mm = [load_multimodal_model(name, device=d) for d in dev_pair]
            x = sample_inputs(mm[0], "room:10000001" if mm[0].task == "rgbd" else "clip:10000002")[0]
            budgets = {mm[0].modalities[0].name: 1.0, mm[0].modalities[1].name: 0.1}
            rr = [reconstruct_multimodal(m, x, budgets, seed=0) for m in mm]
            for mod in rr[0].results:
                check(f"{name} {mod}", rr[0][mod].prediction, rr[1][mod].prediction, 1e-3)
        f = [load_fusion_model("mini-fusion", device=d) for d in dev_pair]
        img = explorer.load_sample("chelsea")
        al = [align(m, img, "a red circle left of a blue square") for m in f]
        check("mini-fusion score", al[0].score, al[1].score, 1e-3)
        for method in al[0].maps:
            check(f"mini-fusion {method} maps", al[0].maps[method], al[1].maps[method], 2e-3)
    bf = explorer.load_model("mini-mae", device="cuda", dtype="bfloat16")
    rb = explorer.reconstruct(bf, "chelsea", ratio=0.75, seed=0)
    rows.append(f"info mini-mae bfloat16 on cuda: masked PSNR {rb.psnr_masked:.2f} dB (fp32 CPU {r[0].psnr_masked:.2f} dB)")
    print("\n".join(rows))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
