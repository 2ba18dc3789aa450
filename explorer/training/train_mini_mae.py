"""Train the shipped mini MAE (a small ``ViTMAEForPreTraining``) from a fixed seed.

    python -m explorer.training.train_mini_mae --steps 3000 --out data/models/mini-mae

Data: random crops / flips of the CC0 / public-domain photos of :mod:`explorer.data.photos`
("train" split) mixed with procedural OpenCV scenes.  The "heldout" photos are only used
for the final evaluation: masked-patch PSNR at 75% random masking against two non-learned
baselines (mean colour fill and OpenCV Telea inpainting).  Runs on CPU (default) or CUDA.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..reconstruction.baselines import mean_fill, telea_fill
from ..masking import mask_from_order, mask_to_noise, num_masked, random_order
from ..metrics import masked_psnr
from ..models.mae import sincos_table
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from ..data.photos import PHOTOS, photos
from ..data.procedural import random_scene


CONFIG = dict(
    image_size=112,
    patch_size=8,
    num_channels=3,
    hidden_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    intermediate_size=512,
    decoder_hidden_size=128,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=4,
    decoder_intermediate_size=512,
    mask_ratio=0.75,
    norm_pix_loss=False,
    qkv_bias=True,
)


def random_crop(rng: np.random.Generator, img: np.ndarray, size: int, scale=(0.12, 1.0)) -> np.ndarray:
    """Random-resized crop + horizontal flip: ``(H, W, 3)`` → ``(size, size, 3)``."""
    h, w = img.shape[:2]
    area = rng.uniform(*scale) * h * w
    ar = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    ch = int(min(h, max(8, round(math.sqrt(area / ar)))))
    cw = int(min(w, max(8, round(math.sqrt(area * ar)))))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = img[top : top + ch, left : left + cw]
    interp = cv2.INTER_AREA if ch > size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out, 0, 1).astype(np.float32)


def sample_batch(rng: np.random.Generator, train: list[np.ndarray], n: int, size: int, p_scene: float = 0.3) -> np.ndarray:
    """``(n, size, size, 3)`` float32 batch of photo crops and procedural scenes."""
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        if rng.random() < p_scene:
            out[i] = random_crop(rng, random_scene(rng, 160), size, scale=(0.4, 1.0))
        else:
            out[i] = random_crop(rng, train[int(rng.integers(0, len(train)))], size)
    return out


def to_model(batch: np.ndarray, device) -> torch.Tensor:
    """``(B, H, W, 3)`` in [0, 1] → normalised ``(B, 3, H, W)`` tensor."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    return ((x - mean) / std).to(device)


def heldout_crops(size: int, per_photo: int = 8, seed: int = 1234) -> list[tuple[str, np.ndarray]]:
    """Fixed evaluation crops of the held-out photos: the centre square plus ``per_photo`` random crops."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for name, img in photos("heldout").items():
        h, w = img.shape[:2]
        s = min(h, w)
        centre = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append((name, cv2.resize(centre, (size, size), interpolation=cv2.INTER_AREA)))
        out += [(name, random_crop(rng, img, size, scale=(0.2, 1.0))) for _ in range(per_photo)]
    return out


@torch.no_grad()
def evaluate(model, size: int, patch: int, ratio: float = 0.75, seeds=(0, 1, 2), device="cpu") -> dict:
    """Masked-patch PSNR (dB, mean over crops x seeds) of the model and the two baselines."""
    model.eval()
    crops = heldout_crops(size)
    grid = (size // patch, size // patch)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    scores = {"mae": [], "telea": [], "mean_fill": []}
    old_ratio = model.config.mask_ratio
    L = grid[0] * grid[1]
    model.config.mask_ratio = (num_masked(L, ratio) - 0.5) / L
    for seed in seeds:
        masks = [mask_from_order(random_order(grid, seed * 1000 + i), grid, ratio) for i in range(len(crops))]
        imgs = np.stack([c for _, c in crops])
        noise = torch.from_numpy(np.stack([mask_to_noise(m) for m in masks])).to(device)
        logits = model(pixel_values=to_model(imgs, device), noise=noise).logits.float().cpu()
        pred = model.unpatchify(logits, (size, size)) * std + mean
        pred = pred.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for img, m, p in zip(imgs, masks, pred):
            scores["mae"].append(masked_psnr(p, img, m, patch))
            scores["telea"].append(masked_psnr(telea_fill(img, m, patch), img, m, patch))
            scores["mean_fill"].append(masked_psnr(mean_fill(img, m, patch), img, m, patch))
    model.config.mask_ratio = old_ratio
    return {
        "ratio": ratio,
        "n_crops": len(crops),
        "n_masks_per_crop": len(seeds),
        "heldout_photos": sorted({n for n, _ in crops}),
        "psnr_db": {k: round(float(np.mean(v)), 3) for k, v in scores.items()},
    }


def init_sincos_positions(model) -> None:
    """Fill the encoder and decoder position embeddings with MAE's fixed 2-D sin-cos tables.

    transformers 5.x leaves both at zero when a ``ViTMAEForPreTraining`` is built from a config
    (its ``_init_weights`` zeroes them after they are set), and they are frozen
    (``requires_grad=False``): trained that way, the model never learns where a patch is and
    predicts little more than the mean colour.  Checkpoints loaded with ``from_pretrained`` carry
    their own tables and are unaffected.
    """
    g = model.config.image_size // model.config.patch_size
    for param in position_tables(model):
        with torch.no_grad():
            param.copy_(sincos_table(g, param.shape[-1]).reshape(param.shape))
    assert float(model.decoder.decoder_pos_embed.abs().sum()) > 0


def position_tables(model) -> list:
    """The encoder's and the decoder's position tables, ``(1, 1 + L, D)`` each."""
    return [model.vit.embeddings.position_embeddings, model.decoder.decoder_pos_embed]


def trainable_parameters(model) -> list:
    """Every parameter the optimiser may change: all but MAE's fixed sin-cos position tables, which are frozen here.

    ``from_pretrained`` in transformers 5 returns the position tables with ``requires_grad=True`` (a model built from
    a config has them frozen), so a stage started with ``--init`` would otherwise train them.
    """
    for param in position_tables(model):
        param.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def train(steps: int, out: Path, seed: int = 0, batch: int = 64, lr: float = 1.5e-3, device: str = "cpu", log_every: int = 100,
          init: Path | None = None) -> dict:
    """Train (from scratch, or on from the weights in ``init``) and write ``out/``: config,
    safetensors weights, preprocessor config, metrics (with every training stage) and model card."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    torch.manual_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    stages = []
    if init is not None:  # continue a previous run (its weights are safetensors: nothing unpickled)
        model = ViTMAEForPreTraining.from_pretrained(init, dtype=torch.float32, use_safetensors=True)
        cfg = model.config
        prev = json.loads((Path(init) / "metrics.json").read_text())
        stages = prev.get("stages") or [{k: prev[k] for k in ("steps", "batch", "lr", "seed", "train_seconds")}]
    else:
        cfg = ViTMAEConfig(**CONFIG)
        model = ViTMAEForPreTraining(cfg)
        init_sincos_positions(model)
    model = model.to(device)
    size, patch = cfg.image_size, cfg.patch_size
    train_imgs = list(photos("train").values())
    opt = torch.optim.AdamW(trainable_parameters(model), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    L = (size // patch) ** 2
    t0 = time.time()
    losses = []
    for step in range(steps):
        model.train()
        ratio = float(rng.uniform(0.5, 0.9))
        model.config.mask_ratio = (num_masked(L, ratio) - 0.5) / L
        x = to_model(sample_batch(rng, train_imgs, batch, size), device)
        noise = torch.from_numpy(rng.random((batch, L)).astype(np.float32)).to(device)
        loss = model(pixel_values=x, noise=noise).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step == 0:
            print(f"step {step + 1}/{steps}  loss {np.mean(losses[-log_every:]):.4f}  {time.time() - t0:.0f}s", flush=True)
    model.config.mask_ratio = 0.75
    train_seconds = time.time() - t0
    metrics = evaluate(model, size, patch, device=device)
    metrics.update(
        steps=steps, batch=batch, lr=lr, seed=seed, device=str(device), train_seconds=round(train_seconds, 1),
        final_loss=round(float(np.mean(losses[-100:])), 5), torch=torch.__version__, machine=platform.machine(),
        train_photos=[p.name for p in PHOTOS if p.split == "train"],
    )
    metrics["stages"] = stages + [{"steps": steps, "batch": batch, "lr": lr, "seed": seed, "train_seconds": round(train_seconds, 1),
                                   "init": str(init) if init is not None else None}]
    metrics["train_seconds"] = round(sum(s["train_seconds"] for s in metrics["stages"]), 1)
    out.mkdir(parents=True, exist_ok=True)
    model.cpu().save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "rescale_factor": 1 / 255,
        "resample": 3, "size": {"height": size, "width": size},
    }, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from .model_card import write as write_card

    write_card(out)
    print(json.dumps(metrics["psnr_db"]))
    return metrics


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("data/models/mini-mae"))
    ap.add_argument("--init", type=Path, default=None, help="continue from the weights in this folder")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train(args.steps, args.out, seed=args.seed, batch=args.batch, lr=args.lr, device=args.device, init=args.init)


if __name__ == "__main__":
    main()
