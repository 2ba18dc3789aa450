"""Forward time of each authors'-checkpoint family at its published full size (random weights), batch 1.

    python bench/family_forward.py [--device cpu|cuda] [--dtype float32|bfloat16] [--repeat 5] [--only NAME ...]

Every model is built the way the explorer builds a published file: the published key layout (names and shapes, kept
in tests/fixtures/ from the authors' code) becomes a random state dict, which goes through the family's own
``claims`` / ``build`` — the converter for timm / the MAE authors, our implementations for MultiMAE, Audio-MAE and
UniFormer — so what is timed is the module a user of the real file gets.  One row per model:

* timm ViT-B/16 ``.mae`` encoder: one 224² image, every patch (the attention views' forward);
* MAE authors' ViT-L/16 + decoder (``mae_visualize_vit_large``): one image at 75 % masking (encoder on 49 patches +
  decoder on 196), through the explorer's batched masked forward;
* MultiMAE-B (RGB + depth + semantics): 224² RGB with 1/6 of all patches visible, all three domains predicted;
* Audio-MAE-B (Swin decoder): a 1024 × 128 fbank at 80 % masking;
* UniFormer-S / -B (ImageNet, 224²) and UniFormer-S video (Kinetics, 16 × 224²): class logits.

Writes ``bench/results/family_forward-<device>-<dtype>-<date>.json``.  No naive counterpart: the question is how long
each family takes, on this machine, at its real size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import machine, timeit  # noqa: E402

from explorer.models.checkpoint_file import identify  # noqa: E402

FIX = ROOT / "tests" / "fixtures"


def _random(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(tuple(s), generator=g) * 0.02 for k, s in shapes.items()}


def _build(state: dict, name: str, kinds, device, dtype):
    fmt = identify(state, path=name, kinds=kinds)
    return fmt.build(state, path=Path(name), model_id=name, device=device, dtype=dtype)


def timm_encoder(device, dtype):
    shapes = json.loads((FIX / "timm_vit" / "published_shapes.json").read_text())["vit_base_patch16_224.mae"]["shapes"]
    a = _build(_random(shapes), "vit_base_patch16_224.mae.safetensors", ("image",), device, dtype)
    x = torch.randn(1, 3, 224, 224, device=device, dtype=dtype)
    return a, lambda: a.model(pixel_values=x)


def mae_authors_large(device, dtype):
    shapes = json.loads((FIX / "timm_vit" / "published_shapes.json").read_text())["mae_vit_large_patch16"]["shapes"]
    a = _build(_random(shapes), "mae_visualize_vit_large.pth", ("image",), device, dtype)
    pixels = np.random.default_rng(0).random((224, 224, 3)).astype(np.float32)
    from explorer.masking import MaskSpec, make_mask

    mask = make_mask(a.grid, MaskSpec("random", 0.75, 0))[None]
    return a, lambda: a.forward_masks(pixels, mask)


def multimae_base(device, dtype):
    keys = json.loads((FIX / "multimae" / "full_size_keys.json").read_text())["demo"]["keys"]
    a = _build(_random(keys), "multimae-b_98_rgb+-depth-semseg_1600e_multivit.pth", ("multimodal",), device, dtype)
    rng = np.random.default_rng(0)
    arrays = {"rgb": rng.random((1, 224, 224, 3)).astype(np.float32)}
    total = sum(s.num_patches for s in a.modalities)
    visible = {s.name: np.zeros((1, s.num_patches), bool) for s in a.modalities}
    visible["rgb"][0, rng.choice(visible["rgb"].shape[1], total // 6, replace=False)] = True
    return a, lambda: a.predict(arrays, visible)


def audiomae_base(device, dtype):
    layout = json.loads((FIX / "audiomae" / "full_size_layout.json").read_text())["swin"]["keys"]
    a = _build(_random(layout), "audiomae_pretrained.pth", ("multimodal",), device, dtype)
    (spec,) = a.modalities
    rng = np.random.default_rng(0)
    arrays = {spec.name: rng.normal(-4, 4, (1, *spec.shape)).astype(np.float32)}
    visible = {spec.name: np.zeros((1, spec.num_patches), bool)}
    visible[spec.name][0, rng.choice(spec.num_patches, spec.num_patches // 5, replace=False)] = True
    return a, lambda: a.predict(arrays, visible)


def uniformer(name: str, size: tuple[int, ...]):
    def make(device, dtype):
        with gzip.open(FIX / "uniformer" / "published_shapes.json.gz", "rt") as f:
            keys = json.load(f)[name]["keys"]
        a = _build(_random(keys), f"{name}.pth", ("hierarchical",), device, dtype)
        x = torch.randn(1, 3, *size, device=device, dtype=dtype)
        return a, lambda: a.model(x)

    return make


MODELS = {
    "timm ViT-B/16 .mae encoder": timm_encoder,
    "MAE authors ViT-L/16 + decoder, 75% hidden": mae_authors_large,
    "MultiMAE-B (rgb+depth+semseg), 1/6 visible": multimae_base,
    "Audio-MAE-B (Swin decoder), 80% hidden": audiomae_base,
    "UniFormer-S (ImageNet)": uniformer("uniformer_small_in1k", (224, 224)),
    "UniFormer-B (ImageNet)": uniformer("uniformer_base_in1k", (224, 224)),
    "UniFormer-S video (K400, 16 frames)": uniformer("uniformer_small_k400_16x4", (16, 224, 224)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="substrings of the model names to run")
    args = ap.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(f"# family_forward on {machine()}, {args.device} {args.dtype}, batch 1, median of {args.repeat}")
    rows = []
    for name, make in MODELS.items():
        if args.only and not any(s.lower() in name.lower() for s in args.only):
            continue
        t0 = time.perf_counter()
        adapter, forward = make(device, dtype)
        built = time.perf_counter() - t0
        params = sum(p.numel() for p in adapter.model.parameters())
        with torch.inference_mode():
            times = timeit(forward, repeat=args.repeat, warmup=1, device=device)
        med = statistics.median(times)
        rows.append({"model": name, "params": params, "median_ms": round(med, 2), "min_ms": round(min(times), 2),
                     "build_s": round(built, 2)})
        print(f"{name:46s} {params / 1e6:7.1f} M params  forward median {med:9.1f} ms  (min {min(times):.1f})  "
              f"built in {built:.1f} s")
        del adapter, forward
    out = ROOT / "bench" / "results" / f"family_forward-{args.device}-{args.dtype}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "device": args.device, "dtype": args.dtype, "repeat": args.repeat,
                               "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"# written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
