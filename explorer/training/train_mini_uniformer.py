"""Train the mini UniFormer (:class:`explorer.models.uniformer.UniFormer`, 2-D) on shape relations, and write its card.

    python -m explorer.training.train_mini_uniformer --steps 5000 --threads 1 --out data/models/mini-uniformer
    python -m explorer.training.train_mini_uniformer --card-only --out data/models/mini-uniformer   # re-evaluate

Task (:mod:`explorer.data.shape_relations`): two shapes of different kinds on a 64² image; 12 classes name the pair
and where the earlier shape lies relative to the other ("circle left of triangle").  Recognising a shape is local,
comparing two positions across the image is global.  Training images: generated seeds ``0..N-1`` with textured
backgrounds, a share of them over random crops of the *training* photos (:func:`explorer.data.photos.photos`);
mirrored left-right half of the time (the label mirrored with it).  Evaluation: seeds from
:data:`~explorer.training.tasks.HELD_OUT_SEED` with textured backgrounds, and the same shapes over crops of the four
*held-out* photos (never seen in training).  Baselines: the majority class of the training labels, and chance.
Every random choice follows ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.photos import photos
from ..data.shape_relations import LABELS, MIRROR, relation_dataset
from ..models.uniformer import UniFormer, UniFormerAdapter, UniFormerConfig
from .tasks import HELD_OUT_SEED

ARCH = dict(depths=(2, 2, 3, 1), dims=(32, 64, 96, 128), head_dim=32, mlp_ratio=3.0)


def held_out(n: int = 1000, *, photo: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Held-out samples: ``(N, 64, 64, 3) uint8`` images and ``(N,)`` labels (textures, or over held-out photos)."""
    if photo:
        return relation_dataset(range(HELD_OUT_SEED + 500_000, HELD_OUT_SEED + 500_000 + n),
                                photos=list(photos("heldout").values()), photo_share=1.0)
    return relation_dataset(range(HELD_OUT_SEED, HELD_OUT_SEED + n))


@torch.no_grad()
def accuracy(adapter: UniFormerAdapter, images: np.ndarray, labels: np.ndarray, batch: int = 250) -> float:
    """Top-1 accuracy of ``adapter`` on ``images (N, H, W, 3)`` uint8 against ``labels (N,)``."""
    hits = 0
    for i in range(0, len(images), batch):
        hits += int((adapter.logits(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
    return hits / len(images)


def evaluate(adapter: UniFormerAdapter, train_labels: np.ndarray, n: int = 1000) -> dict:
    """Accuracy on held-out textures and held-out photos against the majority-class baseline and chance."""
    majority = int(np.bincount(train_labels, minlength=len(LABELS)).argmax())
    out = {"chance": 1 / len(LABELS), "majority_class": LABELS[majority]}
    for name, photo in (("texture", False), ("photo", True)):
        x, y = held_out(n, photo=photo)
        out[f"heldout_{name}_n"] = int(len(y))
        out[f"heldout_{name}_accuracy"] = accuracy(adapter, x, y)
        out[f"heldout_{name}_majority_baseline"] = float((y == majority).mean())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--samples", type=int, default=24000, help="training seeds generated up front")
    ap.add_argument("--photo-share", type=float, default=0.3, help="share of training images over training photos")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-n", type=int, default=1000)
    ap.add_argument("--card-only", action="store_true", help="evaluate the model in --out and rewrite its card")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    x_train, y_train = relation_dataset(range(args.samples), photos=list(photos("train").values()),
                                        photo_share=args.photo_share)
    print(f"generated {len(y_train)} training images in {time.time() - t0:.0f} s", flush=True)
    if args.card_only:
        adapter = UniFormerAdapter.from_folder(args.out)
        log = json.loads((args.out / "training_log.json").read_text())
        write_card(args.out, adapter, evaluate(adapter, y_train, args.eval_n), log)
        return
    cfg = UniFormerConfig(**ARCH, num_classes=len(LABELS), image_size=64, labels=LABELS)
    model = UniFormer(cfg)
    adapter = UniFormerAdapter(model, model_id="mini-uniformer")
    model.train()
    mean = torch.tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    mirror = torch.tensor(MIRROR)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    log, running = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(y_train), args.batch)
        x = torch.from_numpy(x_train[idx]).float().div_(255).permute(0, 3, 1, 2)
        y = torch.from_numpy(y_train[idx])
        flip = torch.from_numpy(rng.random(args.batch) < 0.5)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        y = torch.where(flip, mirror[y], y)
        logits = model((x - mean) / std)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running.append((float(loss.detach()), float((logits.argmax(1) == y).float().mean())))
        if step % 100 == 0:
            l, a = np.mean(running, 0)
            running = []
            print(f"step {step} loss {l:.4f} train acc {a:.3f} ({time.time() - t0:.0f} s)", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            x_val, y_val = held_out(300)
            entry = {"step": step, "loss": round(float(loss.detach()), 4), "heldout_texture_accuracy_300": accuracy(adapter, x_val, y_val),
                     "seconds": round(time.time() - t0)}
            model.train()
            log.append(entry)
            print("eval", json.dumps(entry), flush=True)
            adapter.save(args.out)
            (args.out / "training_log.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                    "log": log}, indent=1) + "\n")
    model.eval()
    write_card(args.out, adapter, evaluate(adapter, y_train, args.eval_n),
               json.loads((args.out / "training_log.json").read_text()))


def write_card(out: Path, adapter: UniFormerAdapter, metrics: dict, log: dict) -> None:
    """``metrics.json`` and the model card ``README.md``."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    cfg = adapter.config
    n_params = sum(p.numel() for p in adapter.model.parameters())
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    a = log["args"]
    seconds = log["log"][-1]["seconds"] if log.get("log") else "?"
    shown = {"texture": "generated textures", "photo": "held-out photos (chelsea, coffee, china, flower)"}
    row = lambda name: (f"| {shown[name]} | {metrics[f'heldout_{name}_n']} | **{metrics[f'heldout_{name}_accuracy']:.3f}** | "
                        f"{metrics[f'heldout_{name}_majority_baseline']:.3f} | {metrics['chance']:.3f} |")
    text = f"""# mini-uniformer: a small UniFormer trained in this repository

A 2-D UniFormer (Li et al., "UniFormer: Unifying Convolution and Self-attention for Visual Recognition", TPAMI 2023;
ICLR 2022 for video) in the authors' key layout, so everything the explorer shows for their checkpoints works on it
offline: local relation aggregation (depth-wise 5×5 token-affinity kernels) in stages 1-2, global self-attention in
stages 3-4. Load it with `explorer.load_uniformer_model("mini-uniformer")`.

| | |
|---|---|
| input | 64×64 RGB, ImageNet mean / std |
| stages | depths {list(cfg.depths)}, widths {list(cfg.dims)}, head width {cfg.head_dim} (heads {list(cfg.heads)}), MLP ratio {cfg.mlp_ratio:g} |
| token grids | {' → '.join('×'.join(map(str, g)) for g in adapter.token_grids())} (stage 1 → 4) |
| classes | {len(cfg.labels)}: {', '.join(cfg.labels)} |
| parameters | {n_params:,} |
| weights | `model.safetensors` ({size_mb:.1f} MB, float32), no pickle |

## Task and data

Two shapes of different kinds (circle, square, triangle; six colours, radius 8-16 px) on a 64² image. The class names
the pair and where the earlier shape (circle < square < triangle) lies relative to the other, by the larger of the
horizontal and vertical offsets ("circle left of triangle"). What a shape is, is local; where it is relative to a shape
up to the whole image away, is global.

* **Generated scenes** (`explorer/data/shape_relations.py` on `explorer/data/scenes.py`, OpenCV drawing, made by code:
  no licence question): seeds `0..{int(a['samples']) - 1}` for training, held-out seeds from 10,000,000.
* **Real photos as backgrounds**: {float(a['photo_share']):.0%} of the training images lay the shapes over random crops
  of the training photos of `explorer/data/photos.py` (scikit-image's astronaut, rocket, camera, coins, … ; licences
  listed there). The held-out photo set lays them over crops of the four held-out photos (chelsea, coffee, china,
  flower), which training never sees.
* Augmentation: left-right mirror (label mirrored) half of the time.

## Training

`python -m explorer.training.train_mini_uniformer --steps {a['steps']} --batch {a['batch']} --samples {a['samples']}
--photo-share {a['photo_share']} --lr {a['lr']} --seed {a['seed']} --threads {a['threads']} --out data/models/mini-uniformer`
— one CPU core, {seconds} s wall time while other jobs shared the machine's two cores (alone a step of 64 took
0.15 s: about 10 minutes), AdamW (weight decay 0.05, cosine schedule, 5 % warm-up), cross-entropy, seed {a['seed']}.
`make train-mini-uniformer` runs it.

## Evaluation (held-out; `python -m explorer.training.train_mini_uniformer --card-only --out data/models/mini-uniformer`)

| held-out set | images | model accuracy | majority class ("{metrics['majority_class']}") | chance |
|---|---|---|---|---|
{row('texture')}
{row('photo')}

`tests/test_mini_uniformer.py` recomputes both on 200 held-out images each and checks the model beats the baseline.

## Limits

* A teaching model: 64-pixel scenes of two drawn shapes. It shows how local kernels and global attention divide the
  work, not state-of-the-art numbers; real UniFormer checkpoints (the authors' `.pth` files) load the same way.
* Photo backgrounds are real, the shapes on them are drawn; there is no real-photo task with these labels.
* Two shapes of the same kind, or more than two, are outside the task: the model still answers one of the 12 classes.
"""
    (out / "README.md").write_text(text)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
