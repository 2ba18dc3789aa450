"""Faithfulness of per-word maps on held-out generated scenes (ground truth = object masks).

    python -m explorer.fusion.evaluate --model mini-fusion --scenes 300 [--ig]

Pointing game (Zhang et al. 2016): for every colour or shape word of a true caption, does the
maximum of its map fall on a patch that overlaps the named object?  Reported per method, beside a
seeded random map and a centre-bias map; plus the model's own task accuracy (image-text matching
with one word changed in the negatives) beside chance.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..data.scenes import COLOURS as _COLOURS
from ..data.scenes import SHAPES as _SHAPES
from ..data.scenes import make_scene
from .alignment import align
from .attribution import word_ig
from .faithfulness import pointing_hits

HELD_OUT_SEED = 10_000_000


def pointing_game(adapter, *, scenes: int = 300, seed: int = HELD_OUT_SEED + 1, ig: bool = False, ig_steps: int = 16) -> dict:
    """Share of object words whose map peaks on their object, per method and baseline (+ the word count)."""
    rng = np.random.default_rng(seed)
    gh, gw = adapter.grid
    yy, xx = np.mgrid[0:gh, 0:gw]
    centre = -((yy - (gh - 1) / 2) ** 2 + (xx - (gw - 1) / 2) ** 2).astype(np.float64)
    hits: dict[str, list[bool]] = {}
    for s in range(seed, seed + scenes):
        sc = make_scene(s)
        text = sc.caption(rng)
        al = align(adapter, sc.image, text)
        masks = sc.word_masks(text)
        per_layer = {f"attention, layer {i}": i for i in range(al.attention.shape[0])} if al.attention is not None else {}
        kinds = ["colour" if text.split()[w] in _COLOURS else "shape" for w in masks]
        for m, h in pointing_hits(al, masks).items():
            hits.setdefault(m, []).extend(h)
            for kind, hit in zip(kinds, h):
                hits.setdefault(f"{m} ({kind} words)", []).append(hit)
        for name, i in per_layer.items():
            hits.setdefault(name, []).extend(pointing_hits(al, masks, ["attention"], layer=i)["attention"])
            if al.gradcam is not None:
                hits.setdefault(name.replace("attention", "gradcam"), []).extend(pointing_hits(al, masks, ["gradcam"], layer=i)["gradcam"])
        for w, mask in masks.items():
            cover = mask.reshape(gh, mask.shape[0] // gh, gw, mask.shape[1] // gw).any((1, 3))
            cands = {"random map": rng.random((gh, gw)), "centre bias": centre + rng.random((gh, gw)) * 1e-6}
            if ig:
                cands["ig"] = word_ig(adapter, sc.image, text, w, steps=ig_steps)
            for name, m in cands.items():
                hits.setdefault(name, []).append(bool(cover.flat[int(np.argmax(m))]))
    return {k: float(np.mean(v)) for k, v in hits.items()} | {"words": len(hits["random map"]), "scenes": scenes}


def matching_accuracy(adapter, *, scenes: int = 1000, seed: int = HELD_OUT_SEED) -> dict:
    """Image-text matching on held-out scenes: half true captions, half with one colour / shape / relation
    word changed.  Accuracy of ``score > 0`` overall and per kind of negative; chance is 0.5."""
    import torch

    rng = np.random.default_rng(seed)
    correct: dict[str, list[bool]] = {}
    for s in range(seed, seed + scenes):
        sc = make_scene(s)
        pos = sc.caption(rng)
        neg = sc.negative_caption(rng)
        kind = next(("colour" if a in _COLOURS else "shape" if a in _SHAPES else "relation")
                    for a, b in zip(pos.split(), neg.split()) if a != b) if pos.split() != neg.split() else "relation"
        x = adapter.normalise(sc.image)
        with torch.no_grad():
            sp = float(adapter.score(x, adapter.tokenize(pos))[0])
            sn = float(adapter.score(x, adapter.tokenize(neg))[0])
        correct.setdefault("positives", []).append(sp > 0)
        correct.setdefault(f"negatives ({kind})", []).append(sn <= 0)
        correct.setdefault(f"pairwise ({kind}): true caption scores higher", []).append(sp > sn)
    pos_neg = correct["positives"] + [v for k, vs in correct.items() if k.startswith("negatives") for v in vs]
    out = {k: float(np.mean(v)) for k, v in sorted(correct.items())}
    return {"accuracy": float(np.mean(pos_neg)), "chance": 0.5, **out, "pairs": scenes}


def main(argv=None) -> None:
    from . import load_fusion_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini-fusion")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--ig", action="store_true", help="also Integrated Gradients per word (slow)")
    args = ap.parse_args(argv)
    adapter = load_fusion_model(args.model, device="cpu")
    res = {"pointing_game": pointing_game(adapter, scenes=args.scenes, ig=args.ig),
           "matching": matching_accuracy(adapter, scenes=args.pairs)}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
