"""Render ``README.md`` (the model card) of a trained mini model from its ``metrics.json``.

    python -m explorer.training.model_card data/models/mini-mae
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..data.photos import PHOTOS

TEMPLATE = """\
# mini-mae: a small masked autoencoder trained in this repository

A `ViTMAEForPreTraining` (transformers) small enough to ship and to run on a laptop CPU, so that
every notebook works offline. Load it with `explorer.load_model("mini-mae")` or, like any
checkpoint folder, `ViTMAEForPreTraining.from_pretrained("data/models/mini-mae")`.

| | |
|---|---|
| input | {image_size}x{image_size} RGB, ImageNet mean/std normalisation |
| patches | {patch_size}x{patch_size}, a {grid}x{grid} grid ({num_patches} patches, the same grid as `facebook/vit-mae-base`) |
| encoder | {enc_layers} layers, width {hidden}, {heads} heads |
| decoder | {dec_layers} layers, width {dec_hidden}, {dec_heads} heads |
| parameters | {params:,} |
| loss | MSE on hidden patches, pixels normalised with the dataset mean/std (`norm_pix_loss=False`, so reconstructions are shown without borrowing the true patch statistics) |
| weights | `model.safetensors` ({weights_mb:.1f} MB, float32), no pickle |

## Training data (all shipped inside Python packages, nothing downloaded)

Random resized crops (12-100% of the area, aspect 3/4-4/3) and horizontal flips of these photos,
mixed 70/30 with procedurally generated OpenCV scenes (shapes, lines, gradients, stripes, blur):

{train_table}

**Held out** (never seen in training, used only for the metrics below):

{heldout_table}

## Training

```
{commands}
```

AdamW (betas 0.9/0.95, weight decay 0.05), linear warm-up over 5% of the steps then cosine decay,
gradient clipping at 1.0, masking ratio drawn uniformly in [0.5, 0.9] per step. A stage started with
`--init` continues from the previous weights (fresh optimiser, its own warm-up and seed).
Trained on `{device}` in {minutes:.0f} minutes ({machine}, torch {torch}); final training loss {final_loss}.
The script fills MAE's fixed 2-D sin-cos position tables itself: transformers 5 leaves them at zero
when the model is built from a config, which silently reduces an MAE to predicting mean colours.

{positions}

## Metrics (held-out photos, 75% random masking)

Masked-patch PSNR (dB, higher is better) over {n_crops} crops of the {n_heldout} held-out photos
(centre square + 8 random crops each) x {n_masks} mask seeds, at {image_size}x{image_size}:

| method | masked-patch PSNR |
|---|---|
| **mini-mae** | **{psnr_mae:.2f} dB** |
| OpenCV inpainting (`cv2.inpaint`, Telea) | {psnr_telea:.2f} dB |
| mean colour of the visible patches | {psnr_mean:.2f} dB |

Measured by the training script (`evaluate()` in `explorer/training/train_mini_mae.py`); the test
suite re-checks on the held-out photos that the shipped weights beat both baselines.

## Limits

A few thousand CPU steps on ~14 photos: reconstructions are blurry, colours and coarse structure are
right, textures are not. It is a teaching and testing model, not a feature extractor.

## Licences

Photos: see the tables (CC0 / public domain for everything trained on; the two CC BY 2.0 scikit-learn
images are only used for evaluation). Procedural scenes: generated, no licence attached.
Weights: Apache-2.0, like the code.
"""


def _table(split: str) -> str:
    rows = ["| photo | package | licence |", "|---|---|---|"]
    rows += [f"| {p.name} | {p.package} (`{p.filename}`) | {p.licence} |" for p in PHOTOS if p.split == split]
    return "\n".join(rows)


def _commands(m: dict) -> str:
    stages = m.get("stages") or [{k: m[k] for k in ("steps", "batch", "lr", "seed")}]
    lines = []
    for st in stages:
        init = "--init data/models/mini-mae " if st.get("init") else ""
        lines.append(f"python -m explorer.training.train_mini_mae {init}--steps {st['steps']} --batch {st['batch']} "
                     f"--lr {st['lr']} --seed {st['seed']} --out data/models/mini-mae")
    return "\n".join(lines)


#: tensor names of the encoder's and the decoder's position tables in ``model.safetensors``
POSITION_KEYS = {"encoder": "vit.embeddings.position_embeddings", "decoder": "decoder.decoder_pos_embed"}


def position_drift(folder: Path) -> dict[str, tuple[float, float]]:
    """How far the stored position tables are from MAE's sin-cos tables: name → (relative L2 change, largest |change|)."""
    from safetensors.torch import load_file

    from ..models.mae import sincos_table

    cfg = json.loads((folder / "config.json").read_text())
    g = cfg["image_size"] // cfg["patch_size"]
    weights = load_file(str(folder / "model.safetensors"))
    out = {}
    for name, key in POSITION_KEYS.items():
        stored = weights[key].reshape(1 + g * g, -1).float()
        ref = sincos_table(g, stored.shape[-1]).float()
        out[name] = (float((stored - ref).norm() / ref.norm()), float((stored - ref).abs().max()))
    return out


def _positions_text(drift: dict[str, tuple[float, float]]) -> str:
    head = ("**Position tables.** MAE's encoder and decoder position tables are fixed 2-D sin-cos tables, and the "
            "script freezes them in every stage (`trainable_parameters`).")
    if all(rel < 1e-6 for rel, _ in drift.values()):
        return head + " The shipped weights hold exactly those tables."
    parts = ", ".join(f"{name} {rel:.1%} (largest element change {mx:.3f})" for name, (rel, mx) in drift.items())
    return (head + " The shipped weights do not hold exactly those tables: their second stage (`--init`) ran before "
            "the freeze, and `from_pretrained` in transformers 5 returns the tables trainable, so that stage trained "
            f"them a little. Relative change from sin-cos: {parts}. The model uses them as stored; a retrain with "
            "the commands above keeps them exactly sin-cos.")


def render(folder: Path) -> str:
    cfg = json.loads((folder / "config.json").read_text())
    m = json.loads((folder / "metrics.json").read_text())
    weights = folder / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    g = cfg["image_size"] // cfg["patch_size"]
    return TEMPLATE.format(
        image_size=cfg["image_size"], patch_size=cfg["patch_size"], grid=g, num_patches=g * g,
        enc_layers=cfg["num_hidden_layers"], hidden=cfg["hidden_size"], heads=cfg["num_attention_heads"],
        dec_layers=cfg["decoder_num_hidden_layers"], dec_hidden=cfg["decoder_hidden_size"], dec_heads=cfg["decoder_num_attention_heads"],
        params=params, weights_mb=weights.stat().st_size / 1e6, train_table=_table("train"), heldout_table=_table("heldout"),
        commands=_commands(m), device=m["device"], minutes=m["train_seconds"] / 60,
        machine=m.get("machine", "?"), torch=m.get("torch", "?"), final_loss=m["final_loss"], n_crops=m["n_crops"],
        n_heldout=len(m["heldout_photos"]), n_masks=m["n_masks_per_crop"], psnr_mae=m["psnr_db"]["mae"],
        psnr_telea=m["psnr_db"]["telea"], psnr_mean=m["psnr_db"]["mean_fill"], positions=_positions_text(position_drift(folder)),
    )


def write(folder: Path) -> Path:
    out = folder / "README.md"
    out.write_text(render(folder))
    return out


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "data/models/mini-mae")))
