"""Train a mini video MAE (a small transformers ``VideoMAEForPreTraining``) on clips with real textures.

    python -m explorer.training.train_mini_video_mae --steps 5000 --out data/models/mini-video-mae

Training clips: a bank of ``--photo-clips`` clips from the training photos with camera motion, moving cut-outs and
lighting changes (:func:`explorer.data.photo_clips.make_photo_clip`) and ``--generated-clips`` generated
moving-shape clips (:func:`explorer.data.clips.make_clip`), flipped left-right and reversed in time at random.
Each batch draws its masking ratio from ``[--ratio-min, --ratio-max]`` and tube or random masking, so the model
learns every ratio the app's slider offers and PSNR rises as less is hidden.  The evaluation
(:mod:`explorer.training.video_evaluate`) judges the model on real videos it never saw against non-learned fills.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from ..masking.video import video_mask
from ..data.clips import make_clip

HELD_OUT_SEED = 10_000_000
CONFIG = dict(image_size=64, patch_size=8, num_frames=8, tubelet_size=2, hidden_size=128, num_hidden_layers=4,
              num_attention_heads=4, intermediate_size=512, decoder_hidden_size=96, decoder_num_hidden_layers=2,
              decoder_num_attention_heads=4, decoder_intermediate_size=384, norm_pix_loss=False)


def clip_bank(photo_clips: int, generated_clips: int, cfg: dict, seed: int) -> np.ndarray:
    """``(N, T, S, S, 3)`` uint8 training clips: photo clips (seeds ``seed·10⁶ + i``) then generated ones."""
    from ..data.photo_clips import make_photo_clip

    t, s = cfg["num_frames"], cfg["image_size"]
    photo = [make_photo_clip(seed * 1_000_000 + i, frames=t, size=s) for i in range(photo_clips)]
    gen = [make_clip(seed * 1_000_000 + i, frames=t, size=s).frames for i in range(generated_clips)]
    return np.round(np.stack(photo + gen) * 255).astype(np.uint8)


def batch(bank: np.ndarray, idx, cfg: dict, ratio: float, strategy: str, rng: np.random.Generator, device):
    """Normalised clips ``(B, T, 3, S, S)`` (randomly mirrored and time-reversed) and masks ``(B, N)`` bool (same count
    per clip, as the model needs)."""
    clips = bank[idx].astype(np.float32) / 255.0
    flip, rev = rng.random(len(idx)) < 0.5, rng.random(len(idx)) < 0.5
    clips[flip] = clips[flip][:, :, :, ::-1]
    clips[rev] = clips[rev][:, ::-1]
    x = (torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 1, 4, 2, 3) - torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    grid = (cfg["num_frames"] // cfg["tubelet_size"], cfg["image_size"] // cfg["patch_size"], cfg["image_size"] // cfg["patch_size"])
    masks = np.stack([video_mask(grid, ratio, strategy, int(rng.integers(1 << 31))).ravel() for _ in idx])
    return x.float().to(device), torch.from_numpy(masks).to(device)


@torch.no_grad()
def evaluate(adapter, clips: int = 64, seed: int = HELD_OUT_SEED, real_per_video: int = 4) -> dict:
    """The model and the non-learned fills on three held-out sets, at 90 / 75 / 50 % tube and random masking:
    the real videos (the verdict), clips made from the held-out photos, and generated clips (seeds from ``seed``).
    Returns ``{set: [judge rows]}`` (:func:`explorer.training.video_evaluate.judge`)."""
    from ..data.photo_clips import make_photo_clip
    from .video_evaluate import judge, real_media_table

    t, s = adapter.num_frames, adapter.image_size
    sets = {"held-out photo clips": {f"photo:{i}": make_photo_clip(seed + i, frames=t, size=s, split="heldout") for i in range(clips)},
            "generated clips": {f"generated:{i}": make_clip(seed + i, frames=t, size=s).frames for i in range(clips)}}
    out = {"real videos": real_media_table(adapter, per_video=real_per_video)}
    for name, cl in sets.items():
        out[name] = [judge(adapter, cl, r, st) for st in ("tube", "random") for r in (0.9, 0.75, 0.5)]
    return out


def main(argv=None) -> None:
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ratio-min", type=float, default=0.5)
    ap.add_argument("--ratio-max", type=float, default=0.9)
    ap.add_argument("--photo-clips", type=int, default=8000)
    ap.add_argument("--generated-clips", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-clips", type=int, default=64)
    ap.add_argument("--real-per-video", type=int, default=4, help="evaluation clips from each held-out real video")
    ap.add_argument("--init", default=None, help="continue from this folder's weights")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    bank = clip_bank(args.photo_clips, args.generated_clips, CONFIG, args.seed)
    print(f"clip bank {bank.shape} in {time.time() - t0:.0f} s", flush=True)
    model = (VideoMAEForPreTraining.from_pretrained(args.init) if args.init
             else VideoMAEForPreTraining(VideoMAEConfig(**CONFIG))).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    log, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        model.train()
        ratio = float(rng.uniform(args.ratio_min, args.ratio_max))
        strategy = "tube" if rng.random() < 0.5 else "random"
        x, m = batch(bank, rng.integers(0, len(bank), args.batch), CONFIG, ratio, strategy, rng, args.device)
        loss = model(pixel_values=x, bool_masked_pos=m).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            log.append({"step": step, "loss": loss.item(), "ratio": round(ratio, 3), "strategy": strategy,
                        "seconds": round(time.time() - t0, 1)})
            print(json.dumps(log[-1]), flush=True)
    if args.out:
        out = Path(args.out)
        model.eval().save_pretrained(out)
        (out / "preprocessor_config.json").write_text(json.dumps({"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}))
        record = {"args": vars(args), "log": log}
        if args.init and (Path(args.init) / "training_log.json").is_file():  # a continued run keeps every stage's record
            before = json.loads((Path(args.init) / "training_log.json").read_text())
            record["stages"] = before.get("stages", [before]) + [{"args": vars(args), "log": log}]
        (out / "training_log.json").write_text(json.dumps(record, indent=1))
        from ..models import load_model

        adapter = load_model(out, device=args.device)
        metrics = evaluate(adapter, clips=args.eval_clips, real_per_video=args.real_per_video)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
