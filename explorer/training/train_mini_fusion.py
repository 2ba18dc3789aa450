"""Train the mini fusion model on generated scenes (image-text matching with hard negatives).

    python -m explorer.training.train_mini_fusion --steps 4000 --out data/models/mini-fusion

Positives are true captions; negatives change one colour, shape or relation word, so the model
must check each named object against the image — which is what makes its cross-attention point
at the objects.  Seeds: training scenes ``0..N-1``; the numbers logged during training (accuracy, pointing
game) use validation scenes from ``5_000_000``; the held-out scenes of the evaluation start at ``10_000_000``
and are never looked at here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..models.mini.fusion import FusionConfig, MiniFusion, tokenize
from ..data.scenes import make_scene

HELD_OUT_SEED = 10_000_000
VALIDATION_SEED = 5_000_000  # what training logs and method choices look at; disjoint from training and held-out seeds


def batch(seeds, rng, cfg: FusionConfig, device, easy: float = 0.0):
    """Half positives; negatives are hard (one word changed), or with probability ``easy`` another scene's caption."""
    scenes = [make_scene(int(s), size=cfg.image_size) for s in seeds]
    texts, labels = [], []
    for i, sc in enumerate(scenes):
        if rng.random() < 0.5:
            texts.append(sc.caption(rng))
            labels.append(1.0)
        elif rng.random() < easy:
            other = scenes[(i + 1) % len(scenes)]
            cap = other.caption(rng)
            texts.append(cap if not ({o.name for o in other.objects} <= {o.name for o in sc.objects}) else sc.negative_caption(rng))
            labels.append(0.0)
        else:
            texts.append(sc.negative_caption(rng))
            labels.append(0.0)
    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2)
    mean = torch.tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    ids, pad, _ = tokenize(texts, cfg.vocab, cfg.max_words)
    return ((x - mean) / std).to(device), ids.to(device), pad.to(device), torch.tensor(labels, device=device), scenes, texts


def named_patches(scene, text: str, patch_size: int, cover: float = 0.3) -> np.ndarray:
    """``(L,)`` float: 1 where at least ``cover`` of a patch belongs to an object the text names (colour + shape)."""
    words = text.split()
    pairs = {(words[k], words[k + 1]) for k in range(len(words) - 1)}
    S = scene.image.shape[0]
    g = S // patch_size
    m = np.zeros((S, S), bool)
    for o in scene.objects:
        if (o.colour, o.shape) in pairs:
            m |= o.mask
    return (m.reshape(g, patch_size, g, patch_size).mean((1, 3)) >= cover).astype(np.float32).ravel()


def word_targets(scene, text: str, patch_size: int, max_words: int, cover: float = 0.3) -> np.ndarray:
    """``(L, 1 + max_words)`` float: for each patch, which caption positions name it — column ``1 + k`` for word
    ``k`` when it is the colour or shape of a colour + shape pair that names an object covering at least ``cover``
    of the patch; column 0 ("none") for the patches no word names.  Rows sum to 1 (a target distribution)."""
    words = text.split()[:max_words]
    S = scene.image.shape[0]
    g = S // patch_size
    out = np.zeros((g * g, 1 + max_words), np.float32)
    for k in range(len(words) - 1):
        match = [o for o in scene.objects if (o.colour, o.shape) == (words[k], words[k + 1])]
        if len(match) == 1:
            inside = match[0].mask.reshape(g, patch_size, g, patch_size).mean((1, 3)).ravel() >= cover
            out[inside, 1 + k] = out[inside, 2 + k] = 1.0
    out[out.sum(1) == 0, 0] = 1.0
    return out / out.sum(1, keepdims=True)


@torch.no_grad()
def accuracy(model, cfg, n: int = 512, seed: int = VALIDATION_SEED, device="cpu") -> float:
    model.eval()
    rng = np.random.default_rng(seed)
    x, ids, pad, y, _, _ = batch(range(seed, seed + n), rng, cfg, device)
    pred = (model(x, ids, pad) > 0).float()
    return float((pred == y).float().mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scenes", type=int, default=200_000, help="training scene seeds 0..N-1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--image-layers", type=int, default=0, help="image self-attention blocks before the fusion")
    ap.add_argument("--text-layers", type=int, default=1, help="text self-attention blocks (0: each key is its own word)")
    ap.add_argument("--image-layers-after", type=int, default=2, help="image self-attention blocks after the fusion")
    ap.add_argument("--grid-conv", action=argparse.BooleanOptionalAction, default=True,
                    help="3x3 convolution on the patch grid (each patch query sees its neighbourhood)")
    ap.add_argument("--aux", type=float, default=1.0, help="weight of the per-patch 'named by the text' loss")
    ap.add_argument("--word-aux", type=float, default=0.0,
                    help="weight of the per-word grounding loss: each fused patch token says at which caption positions "
                         "are the words that name it (0: no such head)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = FusionConfig(image_layers=args.image_layers, image_layers_after=args.image_layers_after, grid_conv=args.grid_conv,
                       text_layers=args.text_layers, word_head=args.word_aux > 0)
    model = MiniFusion(cfg).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    lossf = torch.nn.BCEWithLogitsLoss()
    t0 = time.time()
    log = []
    for step in range(1, args.steps + 1):
        model.train()
        easy = max(0.0, 0.5 * (1 - step / (0.5 * args.steps)))  # curriculum: easy negatives fade out by half-way
        x, ids, pad, y, scenes, texts = batch(rng.integers(0, args.scenes, args.batch), rng, cfg, args.device, easy=easy)
        named = torch.from_numpy(np.stack([named_patches(sc, t, cfg.patch_size) for sc, t in zip(scenes, texts)])).to(args.device)
        if args.word_aux > 0:
            match, patches, pos = model.forward_all(x, ids, pad, words=True)
            target = torch.from_numpy(np.stack([word_targets(sc, t, cfg.patch_size, cfg.max_words) for sc, t in zip(scenes, texts)]))
            target = target[..., : pos.shape[-1]].to(args.device)
            word_loss = -(target * torch.log_softmax(pos, -1).clamp_min(-1e4)).sum(-1).mean()
        else:
            match, patches = model.forward_all(x, ids, pad)
            word_loss = torch.zeros((), device=args.device)
        loss = lossf(match, y) + args.aux * lossf(patches, named) + args.word_aux * word_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            acc = accuracy(model, cfg, device=args.device)
            pg = pointing_game(model, cfg, n=60, device=args.device)
            log.append({"step": step, "loss": loss.item(), "word_loss": round(word_loss.item(), 4), "validation_accuracy": acc,
                        "pointing": {k: round(v, 3) for k, v in pg.items() if k != "words"}, "seconds": round(time.time() - t0, 1)})
            print(json.dumps(log[-1]), flush=True)
    if args.out:
        from safetensors.torch import save_file

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps({"model_type": "mini_fusion", **cfg.to_dict()}, indent=1))
        (out / "training_log.json").write_text(json.dumps({"args": vars(args), "log": log}, indent=1))



@torch.no_grad()
def pointing_game(model, cfg: FusionConfig, n: int = 300, seed: int = VALIDATION_SEED + 1, device="cpu") -> dict:
    """Share of object words whose map maximum falls on their object (validation scenes, true captions).

    Maps: per fusion layer and the mean over layers of the cross-attention column of the word
    (patches × words, mean over heads); baselines: a seeded random map and a centre-bias map.
    A hit: the arg-max patch overlaps the object's mask.
    """
    from ..attention import AttentionCapture

    model.eval()
    rng = np.random.default_rng(seed)
    g = cfg.image_size // cfg.patch_size
    p = cfg.patch_size
    yy, xx = np.mgrid[0:g, 0:g]
    centre = -((yy - (g - 1) / 2) ** 2 + (xx - (g - 1) / 2) ** 2).astype(np.float64)
    hits: dict[str, list[bool]] = {}
    for s in range(seed, seed + n):
        sc = make_scene(s, size=cfg.image_size)
        text = sc.caption(rng)
        x, _, _, _, _, _ = batch([s], rng, cfg, device)
        ids, pad, words = tokenize([text], cfg.vocab, cfg.max_words)
        calls = []
        with AttentionCapture(model.fusion, on_forward=lambda c: calls.append(c.probs[0].mean(0).cpu().numpy())):
            model(x, ids.to(device), pad.to(device))
        maps = {f"fusion layer {i}": a for i, a in enumerate(calls)}  # (patches, words)
        maps["mean of fusion layers"] = np.mean(calls, 0)
        for k, mask in sc.word_masks(text).items():
            cover = mask.reshape(g, p, g, p).any((1, 3))
            cands = {name: a[:, 1 + k].reshape(g, g) for name, a in maps.items()}  # column 0: the "none" slot
            cands["random"] = rng.random((g, g))
            cands["centre bias"] = centre + rng.random((g, g)) * 1e-6
            for name, m in cands.items():
                hits.setdefault(name, []).append(bool(cover.flat[int(np.argmax(m))]))
    return {k: float(np.mean(v)) for k, v in hits.items()} | {"words": len(next(iter(hits.values())))}


if __name__ == "__main__":
    main()
