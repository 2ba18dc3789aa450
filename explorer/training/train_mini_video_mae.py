"""Train a mini video MAE (a small transformers ``VideoMAEForPreTraining``) on generated moving-shape clips.

    python -m explorer.training.train_mini_video_mae --steps 3000 --out data/models/mini-video-mae

Clips come from :func:`explorer.data.clips.make_clip` (training seeds ``0..N-1``, evaluation seeds from
``10_000_000``).  Tube masking at 90% as in VideoMAE.  The evaluation compares masked-patch PSNR with two
non-learned fills: copying the nearest visible frame in time and per-frame OpenCV inpainting.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..reconstruction.baselines import nearest_frame_fill, video_telea_fill
from ..metrics import patch_mse, psnr_from_mse
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from ..masking.video import video_mask
from ..data.clips import make_clip

HELD_OUT_SEED = 10_000_000
CONFIG = dict(image_size=64, patch_size=8, num_frames=8, tubelet_size=2, hidden_size=128, num_hidden_layers=4,
              num_attention_heads=4, intermediate_size=512, decoder_hidden_size=96, decoder_num_hidden_layers=2,
              decoder_num_attention_heads=4, decoder_intermediate_size=384, norm_pix_loss=False)


def batch(seeds, cfg: dict, ratio: float, rng: np.random.Generator, device):
    """Normalised clips ``(B, T, 3, S, S)`` and tube masks ``(B, N)`` bool (same count per clip, as the model needs)."""
    clips = np.stack([make_clip(int(s), frames=cfg["num_frames"], size=cfg["image_size"]).frames for s in seeds])
    x = (torch.from_numpy(clips).permute(0, 1, 4, 2, 3) - torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    grid = (cfg["num_frames"] // cfg["tubelet_size"], cfg["image_size"] // cfg["patch_size"], cfg["image_size"] // cfg["patch_size"])
    masks = np.stack([video_mask(grid, ratio, "tube", int(rng.integers(1 << 31))).ravel() for _ in seeds])
    return x.float().to(device), torch.from_numpy(masks).to(device), clips


@torch.no_grad()
def evaluate(adapter, clips: int = 64, ratio: float = 0.9, seed: int = HELD_OUT_SEED, strategy: str = "tube") -> dict:
    """Masked-patch PSNR (dB) of the model and the two baselines on held-out clips."""
    from ..reconstruction.video import reconstruct_video

    errs = {"model": [], "nearest visible frame": [], "OpenCV inpainting per frame": []}
    for s in range(seed, seed + clips):
        c = make_clip(s, frames=adapter.num_frames, size=adapter.image_size)
        rec = reconstruct_video(adapter, c.frames, ratio=ratio, strategy=strategy, seed=s)
        fills = {"model": rec.prediction, "nearest visible frame": nearest_frame_fill(c.frames, rec.mask, rec.tubelet, rec.patch_size),
                 "OpenCV inpainting per frame": video_telea_fill(c.frames, rec.mask, rec.tubelet, rec.patch_size)}
        for name, pred in fills.items():
            errs[name] += [patch_mse(pred[i], c.frames[i], rec.patch_size)[rec.frame_mask(i)] for i in range(len(c.frames))]
    return {k: psnr_from_mse(float(np.concatenate(v).mean())) for k, v in errs.items()} | {"clips": clips, "ratio": ratio,
                                                                                          "strategy": strategy}


def main(argv=None) -> None:
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--ratio", type=float, default=0.9)
    ap.add_argument("--clips", type=int, default=100_000, help="training clip seeds 0..N-1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-clips", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = VideoMAEForPreTraining(VideoMAEConfig(**CONFIG)).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    log, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        model.train()
        x, m, _ = batch(rng.integers(0, args.clips, args.batch), CONFIG, args.ratio, rng, args.device)
        loss = model(pixel_values=x, bool_masked_pos=m).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            log.append({"step": step, "loss": loss.item(), "seconds": round(time.time() - t0, 1)})
            print(json.dumps(log[-1]), flush=True)
    if args.out:
        out = Path(args.out)
        model.eval().save_pretrained(out)
        (out / "preprocessor_config.json").write_text(json.dumps({"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}))
        (out / "training_log.json").write_text(json.dumps({"args": vars(args), "log": log}, indent=1))
        from ..models import load_model

        adapter = load_model(out, device=args.device)
        metrics = {st: evaluate(adapter, clips=args.eval_clips, ratio=args.ratio, strategy=st) for st in ("tube", "random")}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
