"""Write the tutorial notebooks (cells kept here as plain text so diffs stay readable).

    python tools/build_notebooks.py       # rewrites notebooks/*.ipynb without outputs
"""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1] / "notebooks"


def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    for kind, text in cells:
        text = text.strip("\n")
        book.cells.append(nbf.v4.new_markdown_cell(text) if kind == "md" else nbf.v4.new_code_cell(text))
    return book


QUICKSTART = [
    ("md", """
# 01 · Quickstart: look inside a masked autoencoder

A **masked autoencoder** (MAE, He et al. 2022) hides most patches of an image and learns to paint them back.
This notebook shows what a trained MAE does with *your* image:

1. load a model (a small MAE shipped with this repository works offline; real checkpoints load by Hugging Face id),
2. reconstruct an image from Python,
3. explore it interactively: masking ratio, seed, mask strategy, and patches you hide by clicking,
4. compare with non-learned fills, so a good-looking picture is not mistaken for a good model.

Run the cells from top to bottom (Shift+Enter). Everything runs on the CPU in a few seconds.
"""),
    ("code", """
import explorer

explorer.list_models()
"""),
    ("md", """
## 1 · Load a model

`mini-mae` is our own small `ViTMAEForPreTraining` (112×112 pixels, 8×8 patches, 14×14 = 196 patches — the same grid as
`facebook/vit-mae-base`), trained in this repository on public-domain photos; its model card is in
`data/models/mini-mae/README.md`. `load_model` picks the GPU when there is one (`device="auto"`: cuda → mps → cpu).
"""),
    ("code", """
model = explorer.load_model("mini-mae")
model.info
"""),
    ("md", """
## 2 · Reconstruct from Python

`reconstruct` hides `ratio` of the patches (chosen by `seed`), runs the model and returns a `Reconstruction`:
plain numpy arrays (`image`, `mask`, `prediction`, `pasted`, `patch_error`) plus the metadata to reproduce it.
The sample photo `chelsea` was **held out** from training.
"""),
    ("code", """
rec = explorer.reconstruct(model, "chelsea", ratio=0.75, seed=0, strategy="random")
print(rec.input.fit_description)
print(f"{rec.mask.sum()} of {rec.mask.size} patches hidden; masked-patch PSNR {rec.psnr_masked:.2f} dB")
"""),
    ("code", """
explorer.viz.reconstruction_figure(rec)
"""),
    ("md", """
## 3 · Explore interactively

* **Masking ratio** (0.05–0.95): the whole sweep of 19 ratios is computed once, in one batched pass, and cached —
  moving the slider only swaps pictures. Masks are **nested**: a patch hidden at 50% stays hidden at 75%.
* **Seed**: another random draw of the mask.
* **Mask**: `random` (MAE), `block` (BEiT / SimMIM), `grid` (a regular lattice; at 75% it is MAE's grid sampling),
  `manual` — or simply **click a patch** in any panel to hide / show it.
* **Upload image**: any photo (PNG, JPEG, 16-bit, grey, with transparency or EXIF rotation); **Fit** says how a
  non-square image is made square.
* **Model**: type a Hugging Face id (`facebook/vit-mae-base`) or a folder and press *Load model*.
"""),
    ("code", """
app = explorer.MAEApp(model="mini-mae", image="chelsea", ratio=0.75)
app
"""),
    ("md", """
The app is also a Python object: `app.result` is the `Reconstruction` on screen.
"""),
    ("code", """
app.ratio.value = 0.5
print(app.result.hidden_fraction, f"{app.result.psnr_masked:.2f} dB", f"(figure updated in {app.last_update_ms:.0f} ms)")
"""),
    ("md", """
## 4 · Is the model better than a trivial fill?

Two non-learned baselines fill the same hidden patches: the mean colour of the visible pixels, and OpenCV's
Telea inpainting. A masked autoencoder earns its keep only where it beats them.
"""),
    ("code", """
from explorer.baselines import mean_fill, telea_fill
from explorer.metrics import masked_psnr

p = rec.patch_size
for name, filled in [("MAE (mini-mae)", rec.prediction),
                     ("Telea inpainting", telea_fill(rec.image, rec.mask, p)),
                     ("mean colour fill", mean_fill(rec.image, rec.mask, p))]:
    print(f"{name:18s} {masked_psnr(filled, rec.image, rec.mask, p):6.2f} dB")
"""),
    ("md", """
## 5 · Your own image and real checkpoints

`explorer.load_image` accepts a path, bytes or an array and explains what it did (or why it refused).
Real checkpoints need the Hugging Face hub or a local copy; offline, the message says what to do.
"""),
    ("code", """
import numpy as np

xx, yy = np.meshgrid(np.linspace(0, 1, 300), np.linspace(0, 1, 200))
gradient = np.dstack([xx, yy, np.full_like(xx, 0.5)])
img = explorer.load_image(gradient.astype("float32"))
print(img.pixels.shape, img.notes)

try:
    explorer.load_image(b"this is not an image")
except explorer.ImageLoadError as e:
    print("refused:", e)
"""),
    ("code", """
try:
    base = explorer.load_model("facebook/vit-mae-base")
    print("loaded", base.info)
except explorer.ModelLoadError as e:
    print(e)
"""),
    ("md", """
**Next:** `02_mae_masking.ipynb` compares mask strategies, sweeps the ratio and compares checkpoints.
"""),
]

MASKING = [
    ("md", """
# 02 · Masking strategies, ratio sweeps and checkpoints

What the model can reconstruct depends on *which* patches are hidden as much as on how many.
This notebook compares strategies at the same ratio, sweeps the ratio, checks that masks are nested, and compares
checkpoints on the same masks.
"""),
    ("code", """
import numpy as np
import explorer
from explorer.masking import make_mask, MaskSpec, masking_order, mask_from_order

model = explorer.load_model("mini-mae")
grid = model.grid
grid
"""),
    ("md", """
## 1 · Strategies at 75%

Rows: random (MAE), block-wise (BEiT/SimMIM), grid (MAE's grid sampling). Each cell shows the masked input and
the reconstruction with the visible patches pasted back.
"""),
    ("code", """
rows = []
for strategy in ["random", "block", "grid"]:
    rows.append((strategy, [explorer.reconstruct(model, "coffee", ratio=r, seed=0, strategy=strategy) for r in (0.5, 0.75, 0.9)]))
explorer.viz.reconstruction_grid(rows, show="pair")
"""),
    ("md", """
## 2 · Masks are nested across ratios

Every strategy is an *order* over patches; the mask at ratio *r* hides the first *r·L* of them. So the slider
tells one continuous story, and one batched forward covers the whole sweep.
"""),
    ("code", """
for strategy in ["random", "block", "grid"]:
    order = masking_order(grid, strategy, seed=3)
    m50, m75 = mask_from_order(order, grid, 0.5), mask_from_order(order, grid, 0.75)
    print(f"{strategy:6s} hidden at 50%: {m50.sum():3d}, at 75%: {m75.sum():3d}, nested: {bool(np.all(m75[m50]))}")
"""),
    ("md", """
## 3 · Ratio sweep, with baselines

`reconstruct_sweep` runs all 19 ratios in batched forwards. The dashed curves are the non-learned fills on the
same masks.
"""),
    ("code", """
from explorer.baselines import mean_fill, telea_fill
from explorer.metrics import masked_psnr

sweep = explorer.reconstruct_sweep(model, "coffee", seed=0, strategy="random")
p = model.patch_size
baselines = {
    "Telea inpainting": [masked_psnr(telea_fill(r.image, r.mask, p), r.image, r.mask, p) for r in sweep.results],
    "mean colour fill": [masked_psnr(mean_fill(r.image, r.mask, p), r.image, r.mask, p) for r in sweep.results],
}
print(f"sweep of {len(sweep.ratios)} ratios computed in {sweep.seconds * 1000:.0f} ms")
explorer.viz.ratio_curve(sweep, baselines=baselines, current=0.75)
"""),
    ("md", """
## 4 · Comparing checkpoints

The same image and masks through several models. Offline, only the shipped model is available, so we compare it
with an *untrained* network of the same architecture (what training buys), and try a real checkpoint, which loads
when the hub or a local copy is available.
"""),
    ("code", """
import tempfile, torch
from transformers import ViTMAEForPreTraining

torch.manual_seed(0)
untrained = ViTMAEForPreTraining(model.model.config.__class__.from_dict(model.model.config.to_dict()))
untrained_dir = tempfile.mkdtemp(prefix="untrained-mae-")
untrained.save_pretrained(untrained_dir)

candidates = {"mini-mae (trained)": "mini-mae", "same architecture, untrained": untrained_dir,
              "facebook/vit-mae-base": "facebook/vit-mae-base"}
rows = []
for label, source in candidates.items():
    try:
        m = explorer.load_model(source)
    except explorer.ModelLoadError as e:
        print(f"skipped {label}: {str(e)[:120]}...")
        continue
    rows.append((label, [explorer.reconstruct(m, "chelsea", ratio=r, seed=0) for r in (0.5, 0.75, 0.9)]))
explorer.viz.reconstruction_grid(rows, show="pasted")
"""),
    ("md", """
## 5 · The interactive app with another strategy

Start the app on block masking; switch to `manual` or click patches to paint your own mask.
"""),
    ("code", """
app = explorer.MAEApp(model="mini-mae", image="coffee", strategy="block", ratio=0.6, seed=1)
app
"""),
]

if __name__ == "__main__":
    ROOT.mkdir(exist_ok=True)
    for name, cells in [("01_quickstart.ipynb", QUICKSTART), ("02_mae_masking.ipynb", MASKING)]:
        nbf.write(nb(cells), ROOT / name)
        print("wrote", ROOT / name)
