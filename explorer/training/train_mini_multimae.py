"""Train a mini multimodal MAE (:class:`explorer.models.mini.multimae.MiniMultiMAE`) on generated data.

    python -m explorer.training.train_mini_multimae --task rgbd --steps 6000 --out data/models/mini-rgbd-mae
    python -m explorer.training.train_mini_multimae --task audio-visual --steps 6000 --out data/models/mini-av-mae

Tasks:
    rgbd: RGB (64², 8 px patches) + metric depth; generated rooms (:mod:`explorer.data.rgbd`) and 20 %
        crops of the Middlebury motorcycle's training part.  Depth patches that are mostly unknown are never shown
        and unknown pixels carry no loss.  Depth of a sample that shows some depth is scaled by a random factor
        (0.25–4×, log-uniform); the model is scale-invariant in depth (``depth_scale``, ``depth_base``).
    audio-visual: 8 frames of 48² video (tubelets 2 × 8 × 8) + a 1 s log-mel spectrogram (128 bins × 96 frames,
        16 × 16 patches); generated clips whose objects make tones (:mod:`explorer.data.av_clips`) (60 %) and
        one-second speech windows with a still frame (40 %: Asterisk training prompts and espeak-ng,
        :mod:`explorer.data.speech`).  The model reads loudness from the visible sound (``spectrogram_level``).

Masking as MultiMAE: per batch a total visible budget ``K``; per sample it is split between the modalities
by a Dirichlet(1) draw, or (30 % of samples) given to one modality alone, so cross-modal prediction
(depth from RGB only, audio from video only) is part of training.  The loss is the MSE on hidden patches,
averaged per modality.  Every random choice follows ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..models.mini.multimae import MiniMultiMAE, MultiMAEConfig
from ..masking.budgets import visible_masks
from ..modalities import Modality
from .tasks import TASKS, Task

ARCH = {"rgbd": dict(dim=96, depth=4, heads=4, dec_dim=64, dec_depth=2, dec_heads=4),
        "audio-visual": dict(dim=96, depth=4, heads=4, dec_dim=64, dec_depth=2, dec_heads=4)}


def split_budget(total: int, caps: np.ndarray, rng: np.random.Generator, single: float = 0.3) -> np.ndarray:
    """Visible counts per modality summing to ``total`` (≤ ``caps``): one modality alone with probability ``single``, else Dirichlet(1)."""
    if rng.random() < single:
        p = np.zeros(len(caps))
        p[rng.integers(len(caps))] = 1.0
    else:
        p = rng.dirichlet(np.ones(len(caps)))
    counts = np.minimum(np.floor(p * total).astype(int), caps)
    for k in np.argsort(-p):  # rounding and caps: fill the largest share first, then the others
        counts[k] += min(total - counts.sum(), caps[k] - counts[k])
    return counts


def make_batch(task: Task, specs: list[Modality], data: dict[str, np.ndarray], idx: np.ndarray, total: int,
               rng: np.random.Generator):
    """Normalised tokens, visible masks and hidden-and-known loss weights for samples ``idx``.

    Depth of a sample that shows some depth is multiplied by a global factor, log-uniform in ``task.depth_scale_range``
    (RGB unchanged), so the metric scale can only be read from the visible depth (no depth shown: factor 1, the
    training data's own scale, which is all that RGB alone can tell).
    """
    arrays = {k: v[idx].astype(np.float32) for k, v in data.items()}
    arrays = task.augment(arrays, rng)
    tokens, known = {}, {}
    for s in specs:
        t = s.patchify(s.normalise(torch.from_numpy(arrays[s.name])))
        known[s.name] = torch.isfinite(t)
        tokens[s.name] = t
    unknown = {s.name: Modality.unknown_patches(tokens[s.name]).numpy() for s in specs}  # (B, N_m): never shown
    caps_all = np.stack([(~unknown[s.name]).sum(1) for s in specs], 1)
    vis = {s.name: np.zeros((len(idx), s.num_patches), bool) for s in specs}
    for b in range(len(idx)):
        counts = split_budget(min(total, int(caps_all[b].sum())), caps_all[b], rng)
        masks = visible_masks(specs, dict(zip([s.name for s in specs], counts)), int(rng.integers(1 << 31)),
                              ineligible={s.name: unknown[s.name][b] for s in specs})
        for s in specs:
            vis[s.name][b] = masks[s.name]
    lo_hi = getattr(task, "depth_scale_range", None)
    for s in specs:
        if s.kind == "depth" and lo_hi:
            f = np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]), len(idx))).astype(np.float32)
            f = np.where(vis[s.name].any(1), f, 1.0).astype(np.float32)
            scaled = arrays[s.name] * f.reshape(-1, *[1] * (arrays[s.name].ndim - 1))
            tokens[s.name] = s.patchify(s.normalise(torch.from_numpy(scaled)))
    vis = {k: torch.from_numpy(v) for k, v in vis.items()}
    return tokens, vis, known


def masked_loss(pred: dict, tokens: dict, vis: dict, known: dict, edge_weight: float = 0.0,
                scales: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Mean over modalities of the MSE on hidden, known values.

    ``scales``: name → ``(B,)`` the model's depth scale per sample (:meth:`MiniMultiMAE.depth_scales`); that modality's
    squared errors are divided by its square, so a room scaled ×4 weighs as much as one at ×1.

    ``edge_weight`` > 0: depth patches whose values span more than half a standard deviation (an object edge in depth: small
    objects are few pixels but the point of depth) weigh ``1 + edge_weight`` (label-free, from the target itself).
    """
    per = {}
    for k in pred:
        w = (~vis[k])[..., None] & known[k]
        target = torch.nan_to_num(tokens[k])
        weight = torch.ones_like(target[..., :1])
        if edge_weight > 0 and k == "depth":
            span = torch.where(known[k], tokens[k], target.amin(-1, keepdim=True)).amax(-1, keepdim=True) \
                - torch.where(known[k], tokens[k], target.amax(-1, keepdim=True)).amin(-1, keepdim=True)
            weight = 1 + edge_weight * (span > 0.5).to(target.dtype)
        w = w * weight  # hidden, known values, weighted
        if scales and k in scales:
            w = w / scales[k].detach().reshape(-1, 1, 1) ** 2
        per[k] = (w * (pred[k] - target) ** 2).sum() / w.sum().clamp(min=1)
    return sum(per.values()) / len(per), {k: float(v.detach()) for k, v in per.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="rgbd")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8000, help="training samples generated up front")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--edge-weight", type=float, default=0.0, help="extra loss weight of depth patches spanning > 0.5 std")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--eval-every", type=int, default=500)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    task = TASKS[args.task]()
    t0 = time.time()
    data = task.generate(range(args.samples))
    specs = task.specs(data)
    print(f"generated {args.samples} samples in {time.time() - t0:.0f} s; modalities "
          + ", ".join(f"{s.name} {s.shape} → {s.num_patches} patches" for s in specs), flush=True)
    cfg = MultiMAEConfig(modalities=[s.to_dict() for s in specs], task=args.task, **ARCH[args.task], **task.model_options(data))
    model = MiniMultiMAE(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    lo, hi = task.budget_range(specs)
    log = []
    args.out.mkdir(parents=True, exist_ok=True)
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, args.samples, args.batch)
        tokens, vis, known = make_batch(task, specs, data, idx, int(rng.integers(lo, hi + 1)), rng)
        loss, per = masked_loss(model(tokens, vis), tokens, vis, known, args.edge_weight, model.depth_scales(tokens, vis))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step} loss {float(loss.detach()):.4f} " + " ".join(f"{k} {v:.4f}" for k, v in per.items())
                  + f" ({time.time() - t0:.0f} s)", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            metrics = task.quick_eval(model, specs)
            model.train()
            log.append({"step": step, "loss": float(loss.detach()), **per, **metrics, "seconds": round(time.time() - t0)})
            print("eval", json.dumps(log[-1]), flush=True)
            save(model, cfg, args.out, log, vars(args))


def save(model: MiniMultiMAE, cfg: MultiMAEConfig, out: Path, log: list, args: dict) -> None:
    """Weights (safetensors), config and training log, each written atomically."""
    from safetensors.torch import save_file

    from ..files import write_atomic

    tmp = out / "model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(out / "model.safetensors")
    write_atomic(out / "config.json", (json.dumps(cfg.to_dict(), indent=2) + "\n").encode(), overwrite=True)
    write_atomic(out / "training_log.json", (json.dumps({"args": {k: str(v) for k, v in args.items()}, "log": log}, indent=1) + "\n").encode(), overwrite=True)


if __name__ == "__main__":
    main()
