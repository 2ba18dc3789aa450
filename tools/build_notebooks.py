"""Write the tutorial notebooks (cells kept here as plain text so diffs stay readable).

    python tools/build_notebooks.py       # rewrites notebooks/*.ipynb and notebooks/apps/*.ipynb without outputs
"""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1] / "notebooks"


def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(cells):
        text = text.strip("\n")
        cell = nbf.v4.new_markdown_cell(text) if kind == "md" else nbf.v4.new_code_cell(text)
        cell.id = f"cell-{i:02d}"  # stable ids: rebuilding a notebook changes only what changed
        book.cells.append(cell)
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
from explorer.reconstruction.baselines import mean_fill, telea_fill
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
print(img.pixels.shape, "| notes:", "; ".join(img.notes) or "none")

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
    print(e.brief)  # one line; str(e) has the whole story (where the cache is, which models work offline)
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
from explorer.reconstruction.baselines import mean_fill, telea_fill
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
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # saving one small file needs no "Writing model shards" bar
torch.manual_seed(0)
untrained = ViTMAEForPreTraining(model.model.config.__class__.from_dict(model.model.config.to_dict()))
untrained_dir = tempfile.mkdtemp(prefix="untrained-mae-")
untrained.save_pretrained(untrained_dir)
"""),
    ("code", """
candidates = {"mini-mae (trained)": "mini-mae", "same architecture, untrained": untrained_dir,
              "facebook/vit-mae-base": "facebook/vit-mae-base"}
loaded = {}
for label, source in candidates.items():
    try:
        loaded[label] = explorer.load_model(source)
    except explorer.ModelLoadError as e:
        print(e.brief)  # offline, a hub id fails at once and says how to get the checkpoint
"""),
    ("code", """
rows = [(label, [explorer.reconstruct(m, "chelsea", ratio=r, seed=0) for r in (0.5, 0.75, 0.9)])
        for label, m in loaded.items()]
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

ATTENTION = [
    ("md", """
# 03 · Attention maps: layers, heads, rollout, relevance — and whether to trust them

A transformer's attention says which tokens each token reads from, in every layer and head. This notebook
shows how to look at it, how to aggregate it into one map per image (attention rollout; gradient-weighted
relevance after Chefer et al. 2021; Integrated Gradients from captum as a non-attention baseline), and —
because pretty maps are easy to make — how to test whether a map reflects the model at all:

* **deletion / insertion**: remove (or add) patches in the map's order; a faithful map makes the model's
  score fall fast (or rise fast), faster than a random order;
* **randomisation check** (Adebayo et al. 2018): re-draw the top layers' weights; a method that depends on
  the model must change its map. An edge detector, which never looks at the model, fails it.

For masked autoencoders there is one more view: **reconstruction provenance**, which visible patches a
masked patch's reconstruction drew on.
"""),
    ("code", """
import numpy as np

import explorer
from explorer import attention as A
from explorer.viz import attention as VA

model = explorer.load_model("mini-mae")
maps = A.attention_maps(model, "chelsea")
print(f"{maps.num_layers} layers x {maps.num_heads} heads, {maps.layout.num_tokens} tokens, captured by {maps.path} "
      f"in {maps.seconds * 1e3:.0f} ms")
"""),
    ("md", """
## 1 · Every layer and head

The CLS token's attention in every layer (rows) and head (columns), on one colour scale. Attention is captured
with the model's fast SDPA kernel left in place: the probabilities are recomputed from the same queries and
keys in float32 (`sdpa-recomputed`), and a test checks they equal transformers' own eager attentions.
"""),
    ("code", """
VA.attention_grid(maps, "cls")
"""),
    ("md", """
Per-head summaries across depth, as in the ViT paper: the **mean attention distance** (how far, in pixels,
a patch looks) and the **entropy** (how spread out). Early layers mix local and global heads; in the app a
click on a point opens that head.
"""),
    ("code", """
VA.head_summary(maps)
"""),
    ("md", """
## 2 · One map per image: four methods side by side

Rollout multiplies the layers' head-fused attention (with the residual path); relevance weights each layer's
attention by its gradient; Integrated Gradients attributes the input pixels. Each map is scaled to [0, 1]:
their units differ. For an MAE there is no class, so the target is the encoder's CLS output.
"""),
    ("code", """
methods = {
    "raw, last layer (mean of heads)": maps.query_map(maps.num_layers - 1, "mean", "cls"),
    "rollout": A.explain(model, "chelsea", "rollout").map,
    "relevance": A.explain(model, "chelsea", "relevance").map,
    "integrated gradients": A.explain(model, "chelsea", "integrated-gradients", steps=32).map,
}
VA.method_row(maps.image, methods)
"""),
    ("md", """
### captum's methods, from the method registry

One `explain` call serves every method of `explorer.attention.registry` (`A.METHODS`): besides the four above,
captum's saliency, GradientSHAP, occlusion (one patch at a time, filled with the image's mean colour), SmoothGrad
(NoiseTunnel over saliency) and Grad-CAM (on the tokens entering the last block). Each gives one value per patch,
explains the target picked once on the real input (a classifier's predicted class; for an MAE the CLS output's
length) and records its options, seeds included, in `Relevance.options`; the attention app's *Methods* list shows any
of them side by side. Occlusion runs the model once per patch (196 forwards here), so it is left out below:
`A.explain(model, "chelsea", "occlusion")` computes it.
"""),
    ("code", """
from explorer.attention.registry import REGISTRY

captum_maps = {}
for name in ("saliency", "gradient-shap", "smoothgrad", "gradcam"):
    r = A.explain(model, "chelsea", name, samples=8)  # samples: GradientSHAP's and SmoothGrad's draws (seed 0)
    captum_maps[REGISTRY[name].short + (" (signed)" if REGISTRY[name].signed else "")] = r.map
print("methods:", ", ".join(A.METHODS))
print("Grad-CAM options:", "; ".join(f"{k} = {v}" for k, v in r.options.items()))
VA.method_row(maps.image, captum_maps)
"""),
    ("md", """
## 3 · Are the maps faithful?

For an MAE, removing a patch means *hiding* it (the encoder just does not see it) and the score is how close
the CLS output stays to the full image's. Lower deletion AUC and higher insertion AUC than a random order
mean the map ranks patches the way the model uses them. One random order is noise, so the reference is 20
seeded random orders: a map whose AUC falls inside the central 95% of theirs is *not distinguishable from random*.
"""),
    ("code", """
from explorer.attention.faithfulness import deletion_insertion, randomisation_check

print(f"{'method':34s} {'deletion AUC':>12s}  verdict {'':26s} {'insertion AUC':>13s}  verdict")
for name, m in methods.items():
    c = deletion_insertion(model, "chelsea", m)
    print(f"{name:34s} {c.deletion_auc:12.3f}  {c.deletion_verdict:34s} {c.insertion_auc:13.3f}  {c.insertion_verdict}")
(dlo, dhi), (ilo, ihi) = c.random_deletion_band, c.random_insertion_band
print(f"{'20 random orders (95% band)':34s} {dlo:.3f}–{dhi:.3f} {'':35s} {ilo:.3f}–{ihi:.3f}")
VA.faithfulness_curves(deletion_insertion(model, "chelsea", methods["relevance"]), title="relevance")
"""),
    ("code", """
import cv2

def edges(adapter, image):
    # A map that never looks at the model: local contrast per patch.
    px = A.attention_maps(adapter, image).image
    g = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY)
    e = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    p = adapter.patch_size
    return e.reshape(adapter.grid[0], p, adapter.grid[1], p).mean((1, 3))

checks = {
    "rollout": lambda a, im: A.explain(a, im, "rollout").map,
    "relevance": lambda a, im: A.explain(a, im, "relevance").map,
    "edge detector (ignores the model)": edges,
}
for name, fn in checks.items():
    s = randomisation_check(model, "chelsea", fn)
    print(f"{name}: {s.verdict()}")
"""),
    ("md", """
## 4 · Reconstruction provenance (MAE only)

Hide 75% of the patches, pick a hidden one, and ask where its reconstruction came from: rollout through the
decoder and back through the encoder (left), and the gradient of the predicted patch with respect to the
input pixels (right). Hidden patches get exactly zero gradient — they never reach the encoder.
"""),
    ("code", """
from explorer.masking import MaskSpec, make_mask

mask = make_mask(model.grid, MaskSpec("random", 0.75, seed=0))
query = int(np.flatnonzero(mask)[60])
prov = A.provenance(model, "chelsea", query, ratio=0.75, seed=0)
print("gradient on hidden patches:", prov.gradient[mask].max(), "| shares: visible", round(float(np.nansum(prov.attention)), 3),
      "CLS", round(prov.via_cls, 3), "mask tokens", round(prov.via_mask_tokens, 3))
VA.provenance_figure(prov)
"""),
    ("md", """
## 5 · The app

Click a patch on the left image to make it the query (or press *Query: CLS*); move *Layer*, *Head*, *Opacity*;
click a small multiple or a point of the head summary to open that head. Below: methods side by side with
rollout's head fusion, discard ratio and residual; deletion / insertion and the randomisation check on
demand; and, for MAE models, provenance (click a grey patch). Every interaction except the first forward
is served from the cache.
"""),
    ("code", """
app = explorer.AttentionApp(model="mini-mae", image="coffee")
app
"""),
    ("md", """
## 6 · Long inputs and your own models

Keeping every layer's attention grows with depth × heads × tokens². For VideoMAE-base on 16 frames of 224²
(1,568 tokens) that is 1.32 GiB; the explorer refuses with a message when it would not fit and points to
the streaming aggregates, which keep one layer at a time (`bench/attention_memory.py` measures it).
"""),
    ("code", """
from pathlib import Path

import torch

try:
    A.check_capture_memory(num_layers=12, num_heads=12, num_tokens=1568, device="cpu", max_bytes=512 * 2**20)
except A.AttentionError as e:
    print(e)
"""),
    ("md", """
Video models work the same way. VideoMAE has no CLS token: its tokens are tubelets (2 frames × 16 × 16
pixels), so a query is a tubelet `(t, row, col)` or `"mean"` (all tokens). Rollout streams layer by layer.
Below, a small VideoMAE with random weights (`MCG-NJU/videomae-base` loads by id where the hub is
reachable) on a clip of a square moving right, made with OpenCV:
"""),
    ("code", """
import tempfile

from transformers import VideoMAEConfig, VideoMAEModel
from transformers.utils import logging as hf_logging

from explorer.video import load_video, write_video

frames = np.full((16, 112, 112, 3), 0.2, np.float32)
for i in range(16):
    frames[i, 40:72, 5 * i: 5 * i + 32] = (1.0, 0.6, 0.1)
clip_path = Path(tempfile.mkdtemp()) / "square.avi"
write_video(clip_path, frames)

hf_logging.disable_progress_bar()  # saving one small file needs no "Writing model shards" bar
torch.manual_seed(0)
video_dir = tempfile.mkdtemp()
VideoMAEModel(VideoMAEConfig(image_size=112, num_frames=16, hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                             intermediate_size=768)).save_pretrained(video_dir)
video_model = explorer.load_model(video_dir)
roll = A.explain(video_model, clip_path, "rollout", query="mean")
print(f"{roll.layout.num_tokens} tokens, tubelet grid {roll.layout.grid}, captured by {roll.path}")
VA.video_maps(roll.image, roll.map, tubelet=video_model.tubelet_size, title="rollout (random weights): mean over queries")
"""),
    ("md", """
Any torch module whose attention goes through `nn.MultiheadAttention`, `F.scaled_dot_product_attention`
or a transformers attention block can be captured:
"""),
    ("code", """
torch.manual_seed(0)
layers = torch.nn.ModuleList([torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True) for _ in range(3)]).eval()
tokens = torch.randn(1, 10, 32)

def run():
    h = tokens
    for layer in layers:
        h = layer(h)
    return h

probs, names, path = A.capture_all(layers, run)
print(f"attention {probs.shape} (layers, heads, queries, keys) from {', '.join(names)}, captured by {path}")
"""),
    ("md", """
Real checkpoints load by id (they need the Hugging Face hub or a local copy), e.g. a ViT classifier, for
which the relevance target is the predicted class's logit:
"""),
    ("code", """
try:
    vit = explorer.load_model("google/vit-base-patch16-224")
    print(vit.labels[int(vit.logits(vit.normalise(A.attention_maps(vit, "chelsea").image))[0].argmax())])
except explorer.ModelLoadError as e:
    print(e.brief)
"""),
    ("md", """
**Checkpoint files in timm's layout.** timm's MAE encoders (`vit_base_patch16_224.mae`, `-large`, `-huge`: the
`model.safetensors` of `timm/vit_base_patch16_224.mae` on the Hugging Face hub, or that folder) and the MAE
authors' own files from github.com/facebookresearch/mae (`mae_pretrain_vit_base.pth`: the encoder;
`mae_visualize_vit_large.pth` from their demo: encoder + decoder) load by path. They are read as tensors only
(`weights_only=True`) and converted into transformers' ViT / ViTMAE, so every view here works on them; an
encoder-only file has no decoder, so the reconstruction views say so instead. Point `MAE_WEIGHTS` at one to run
this cell on it:
"""),
    ("code", """
import os

path = os.environ.get("MAE_WEIGHTS")
if path:
    authors = explorer.load_model(path)
    print(f"{authors.family}: {authors.num_layers} layers x {authors.num_heads} heads, {authors.grid} patches")
    VA.attention_grid(A.attention_maps(authors, "chelsea"), "cls", layers=[0, authors.num_layers - 1]).show()
else:
    print("skipped: MAE_WEIGHTS is not set (e.g. MAE_WEIGHTS=~/weights/mae_visualize_vit_large.pth)")
"""),
]

EXPORT = [
    ("md", """
# 05 · Figures for papers: export, presets, reproducible sidecars

Every view of the explorer can be written as **PDF, SVG and PNG**, sized for a paper column, with a **JSON
sidecar** that rebuilds the figure: model id and weights' SHA-256, the input's SHA-256, seed, ratio, strategy,
the figure recipe and its options, package versions. The same JSON is embedded in each file (PNG text chunk,
PDF metadata, SVG `<metadata>`), so a figure found in a slide deck still says how it was made.

This notebook:

1. lists the paper presets,
2. exports an MAE-paper style grid (rows = images, columns = original and three masking ratios),
3. exports a strip of error maps on one shared colour scale,
4. checks the files (page size in points, embedded fonts) and rebuilds one from its sidecar,
5. exports the interactive app's current view, as the **Export** button does,
6. runs the batch exporter over a folder.

Files go to a temporary folder here; pass your own folder in real use.
"""),
    ("code", """
import tempfile
from pathlib import Path

import explorer
from explorer import export

out = Path(tempfile.mkdtemp(prefix="explorer-figures-"))
for name, p in export.PRESETS.items():
    print(f"{name:15s} {p.width_in:5.2f} in  {p.font_pt:g} pt text  {p.dpi} dpi  {p.description}")
"""),
    ("md", """
## 1 · An MAE-paper style grid

`export_recipe` runs the model and builds the figure from a *recipe* (a name plus JSON options). What it
writes is exactly what `python -m explorer reproduce` rebuilds. The preset sets the width (6.9 in for a
full-width figure of a two-column paper), the fonts (8 pt Liberation Serif, metric-compatible with Times)
and the PNG resolution; the height follows from the content.
"""),
    ("code", """
model = explorer.load_model("mini-mae")
grid = export.export_recipe(
    "reconstruction_grid", out / "mae_grid", model=model, inputs=["chelsea", "coffee", "china", "flower"],
    options=dict(ratios=[0.5, 0.75, 0.9], seed=0), preset="double-column")
grid
"""),
    ("code", """
from IPython.display import Image

Image(filename=str(grid.files["png"]), width=700)
"""),
    ("md", """
## 2 · Maps on one shared colour scale

Where values are comparable, panels share one colour bar: here the per-patch reconstruction error at three
ratios (visible patches left clear). Colour scales are colour-blind safe (Viridis); an unsafe one such as
Jet is replaced at export and the sidecar says so. The same builder, `explorer.viz.map_strip`, draws
per-word and per-head attention strips.
"""),
    ("code", """
strip = export.export_recipe("error_strip", out / "error_strip", model=model, inputs=["coffee"],
                             options=dict(ratios=[0.5, 0.75, 0.9]), preset="double-column")
Image(filename=str(strip.files["png"]), width=700)
"""),
    ("md", """
## 3 · Check the files, then rebuild one from its sidecar

The PDF page is the preset's width in points (72 per inch), fonts are embedded TrueType (no Type 3 fonts,
which some publishers reject), and the PNG carries its resolution. `reproduce` rebuilds the figure from
the JSON and compares bytes: on the same machine they are identical.
"""),
    ("code", """
import json

from pypdf import PdfReader

page = PdfReader(grid.files["pdf"]).pages[0]
print(f"PDF page: {float(page.mediabox.width):g} x {float(page.mediabox.height):g} pt; preset width: "
      f"{export.PRESETS['double-column'].width_in * 72:g} pt")
fonts = {f["/BaseFont"] for res in [page["/Resources"]] for f in res["/Font"].values()}
print("embedded fonts:", ", ".join(sorted(str(f) for f in fonts)))
sidecar = json.loads(grid.files["json"].read_text())
print(json.dumps({k: sidecar[k] for k in ("recipe", "provenance")}, indent=1)[:900], "...")
"""),
    ("code", """
report = export.reproduce(grid.files["json"])
print(report.summary())
assert report.identical
"""),
    ("md", """
## 4 · Export what the app shows

The apps have an **Export** row (preset, formats, dpi, folder, name). It exports the recipe of the view on
screen — here a hand-painted mask — and an uploaded image is copied next to the figure so the sidecar can
find it again. Files are never overwritten unless *overwrite* is ticked: a second export gets `-2`.
"""),
    ("code", """
app = explorer.MAEApp(model="mini-mae", image="astronaut", ratio=0.75)
app.export_panel.folder.value = str(out)
app.export_panel.preset.value = "double-column"
app.paint(list(range(0, 196, 3)))          # what clicking patches does
first = app.export_panel.export()          # what the Export button does
second = app.export_panel.export()
print(first.files["pdf"].name, "then", second.files["pdf"].name)
app
"""),
    ("md", """
## 5 · A whole folder from the command line

`python -m explorer export` decodes the next images in threads while the model reconstructs the current
batch (every image × ratio pair in one forward; on a GPU pass `--device cuda --dtype bfloat16`), writes
tiles and/or figures with sidecars, skips inputs finished by an earlier run, and lists the inputs that
failed without stopping.
"""),
    ("code", """
import shutil
import subprocess
import sys

inputs = out / "inputs_folder"
inputs.mkdir()
for name in ["chelsea", "coffee", "rocket"]:
    src = explorer.data.samples.photo_path(explorer.SAMPLES[name])
    shutil.copy(src, inputs / f"{name}{Path(src).suffix}")
(inputs / "broken.jpg").write_bytes(b"\\xff\\xd8\\xff\\xe0 not really a JPEG")
run = subprocess.run([sys.executable, "-m", "explorer", "export", "--model", "mini-mae", "--inputs", str(inputs),
                      "--out", str(out / "batch"), "--ratios", "0.5", "0.75", "0.9", "--views", "tiles", "--quiet"],
                     capture_output=True, text=True)
print(run.stdout)
print("exit code", run.returncode, "(1: some inputs failed, the others were exported)")
sorted(p.name for p in (out / "batch" / "coffee_png").iterdir())
"""),
]

ALIGNMENT = [
    ("md", """
# 04 · Cross-modal alignment: which image region goes with each word

An image+text model answers one question about a pair (does the caption match? what is the answer?). This
notebook asks *how*: for every word, which image patches does the model connect it with, by which measure,
and how much does the output depend on the image and on the text at all?

We start with `mini-fusion`, a small model trained in this repository on generated scenes (its model card:
`data/models/mini-fusion/README.md`). Generated scenes come with object masks, so here we can check a map
against the truth. Real checkpoints (CLIP, BLIP, ViLT) load by Hugging Face id at the end.
"""),
    ("code", """
import numpy as np

import explorer
from explorer.fusion import align, deletion_auc, load_fusion_model, modality_report, pointing_hits, word_ig
from explorer.data.scenes import make_scene
from explorer.viz import fusion as VF
from explorer.viz import attention as VA

model = load_fusion_model("mini-fusion")
scene = make_scene(10_000_003)           # a held-out scene (training used seeds below 200,000)
text = scene.caption()
print(text, "|", model.kind, "|", model.output_name)
"""),
    ("md", """
## 1 · One forward, every map

`align` runs the model once (forward and backward) and returns an `Alignment` with, for each word:

* **attention** — the raw fusion attention per layer and head (here image patches are the queries and words
  the keys, as in HiCA-VQA; BLIP is the other way round, ViLT has one joint sequence);
* **rollout** — attention flow through every layer of both streams (Chefer et al. 2021's bi-modal rules with
  plain attention);
* **relevance** — Chefer et al. 2021's gradient-weighted bi-modal relevance of the output;
* **gradcam** — Grad-CAM on the cross-attention, as ALBEF does.
"""),
    ("code", """
al = align(model, scene.image, text)
print(al.answer)
print("words:", " ".join(f"{i}:{w}" for i, w in enumerate(al.word_strings)), "| attention", al.attention.shape,
      "(layers, heads, words, rows, cols)")
VF.word_strip(al, "relevance")
"""),
    ("md", """
The token × patch matrix holds the same information the other way round: one row per word, one column per patch
(here sorted by the word *circle*).
"""),
    ("code", """
fig, order = VF.alignment_matrix(al.matrix, al.word_strings, sort_by=al.word_strings.index(text.split()[2]), title=al.matrix_name)
fig
"""),
    ("md", """
## 2 · Methods side by side, and the truth

For one object word, the four maps over the image, each scaled to [0, 1]. Because the scene is generated we know
where each object is: the *pointing game* asks whether a word's map peaks on its object, and *deletion* blanks
patches in the map's order and watches the output fall. Its *area* (deletion AUC) is the output averaged over the
share of patches blanked, in the output's own units: here the match logit, so it is negative once blanking drives the
logit below zero (an all-blank image scores about −7). Lower than random orders means the map found what the output
needs.
"""),
    ("code", """
word = 1  # the first colour word
maps = {m: al.word_map(m, word) for m in al.available}
maps["integrated gradients"] = word_ig(model, scene.image, text, word)
print("word:", al.word_strings[word])
VA.method_row(al.image, maps)
"""),
    ("code", """
truth = scene.word_masks(text)   # word index -> the mask of the object it names
hits = pointing_hits(al, truth)
for m, h in hits.items():
    print(f"pointing game, {m:10s}: {sum(h)}/{len(h)} object words peak on their object")
print(f"deletion AUC of '{al.word_strings[word]}': the {model.output_name} averaged while the map's patches are blanked, "
      f"best first (intact {al.score:+.2f}; negative = the logit fell below 0; lower = falls sooner = more faithful)")
for m in al.available:
    d = deletion_auc(model, scene.image, text, al.word_map(m, word))
    lo, hi = d["band"]
    print(f"  {m:10s} {d['map']:+.2f}   {d['orders']} random orders: 95% between {lo:+.2f} and {hi:+.2f} -> {d['verdict']}")
"""),
    ("md", """
## 3 · How much does the output depend on each modality?

Two views: mask a modality entirely (the image becomes its mean colour, every word `[unk]`) — the four masked
outputs give each modality's exact **Shapley value**, which add up to the change of the output with no gap — and
captum's Integrated Gradients along one path that scales both inputs together, whose attributions should add up
to the same change (the *completeness gap* says how closely; a large gap or a sign that disagrees with Shapley
gets a warning).
"""),
    ("code", """
rep = modality_report(model, scene.image, text)
print(f"output {rep.score:+.2f}; image masked {rep.masked['image']:+.2f}; text masked {rep.masked['text']:+.2f}; "
      f"both masked {rep.masked['both']:+.2f}")
print(rep.headline())
for w in rep.warnings:
    print("warning:", w)
print("per word (IG):", ", ".join(f"{w} {a:+.2f}" for w, a in zip(al.word_strings, rep.word_attribution)))
VF.modality_figure(rep, output_name=model.output_name)
"""),
    ("md", """
## 4 · Counterfactual: change one word

Replace the colour word by another colour and compare the maps and the score: a model that really reads the word
should stop matching and look elsewhere.
"""),
    ("code", """
other_colour = "blue" if text.split()[1] != "blue" else "red"
edited = " ".join([text.split()[0], other_colour, *text.split()[2:]]).replace("an blue", "a blue").replace("a orange", "an orange")
cf = align(model, scene.image, edited)
print(f"{text!r}: {al.answer}\\n{edited!r}: {cf.answer}")
VF.counterfactual_figure(al.image, {f"'{al.word_strings[word]}' {al.score:+.2f}": al.word_map("relevance", word),
                                    f"'{cf.word_strings[word]}' {cf.score:+.2f}": cf.word_map("relevance", word)})
"""),
    ("md", """
## 5 · The app

Pick an image (generated scenes carry ground truth; photos and uploads work too), type a caption, press Enter.
Click a word (or its bar) to see its map; hover or click a patch on the left image to see how every word goes
with it; switch method, layer and head; sort the matrix by the selected word; ask for the modality dependence,
the deletion AUC, or a counterfactual; *Export* writes the view on screen (the selected word's map by the selected method, layer and head) for a paper. Everything after the first
forward is served from the cache (`bench/fusion_latency.py`).
"""),
    ("code", """
app = explorer.FusionApp(model="mini-fusion", image="scene:10000011")
app
"""),
    ("md", """
## 6 · Faithfulness over many scenes

The same pointing game over held-out scenes, per method, with a random map and a centre-biased map as
baselines (the model card reports it over 300 scenes; here 30 to stay quick).
"""),
    ("code", """
from explorer.fusion.evaluate import pointing_game

res = pointing_game(model, scenes=30)
for k, v in res.items():  # hit rates (share of object words whose map peaks on the object), then counts
    print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
"""),
    ("md", """
## 7 · Bad input and real checkpoints

Empty text, text longer than the model reads, words it does not know, and models without a text input all
get a message, never a dead kernel:
"""),
    ("code", """
from explorer.fusion import FusionInputError

for bad in ["", "a red circle " * 10, "a 🙂 circle"]:
    try:
        print(repr(bad[:30]), "->", align(model, scene.image, bad).notes[-1])
    except FusionInputError as e:
        print(repr(bad[:30]), "-> refused:", e)
try:
    load_fusion_model("mini-mae")
except explorer.ModelLoadError as e:
    print("mini-mae -> refused:", e)
"""),
    ("md", """
CLIP (dual encoder: token-wise similarity of patch and word embeddings, FILIP-style), BLIP image-text
matching (words attend to patches) and ViLT (one joint sequence) load by id where the Hugging Face hub or a
local copy is reachable:
"""),
    ("code", """
for hub_id in ["openai/clip-vit-base-patch16", "Salesforce/blip-itm-base-coco", "dandelin/vilt-b32-finetuned-vqa"]:
    try:
        m = load_fusion_model(hub_id)
        print(hub_id, align(m, "chelsea", "a cat lying on a couch").answer)
    except explorer.ModelLoadError as e:
        print(e.brief)
"""),
]

def _video_verdict() -> str:
    """The first paragraph of the video model's card (its verdict on real video), for notebook 06's introduction."""
    import json

    from explorer.training.video_card import verdict

    return verdict(json.loads((ROOT.parent / "data" / "models" / "mini-video-mae" / "metrics.json").read_text()))


VIDEO_VERDICT = _video_verdict()

VIDEO = [
    ("md", """
# 06 · Video masked autoencoders

VideoMAE (Tong et al. 2022) hides 90–95 % of a clip's *tubelets* (2 frames × 8 × 8 pixels here) and reconstructs
them. Which tubelets are hidden matters as much as how many: hide a patch in one frame only and the model can copy it
from the next; hide it in every frame (*tube* masking) and it has to understand the motion.

`mini-video-mae` is a small `VideoMAEForPreTraining` trained in this repository on clips made from photos (a moving
camera, moving cut-outs, changing light) and on generated clips of moving shapes (model card:
`data/models/mini-video-mae/README.md`); `MCG-NJU/videomae-base` loads by id where the hub is reachable.

""" + VIDEO_VERDICT + """
"""),
    ("code", """
import numpy as np

import explorer
from explorer.reconstruction.baselines import nearest_frame_fill, video_telea_fill
from explorer.data.clips import make_clip
from explorer.masking.video import VIDEO_STRATEGIES, video_mask
from explorer.reconstruction.video import reconstruct_video
from explorer.viz import video as VV

model = explorer.load_model("mini-video-mae")
print(model.num_frames, "frames of", model.image_size, "px; tubelet", model.tubelet_size, "frames; token grid",
      (model.time_steps, *model.grid))
clip = make_clip(10_000_003, frames=model.num_frames, size=model.image_size)   # held out from training
"""),
    ("md", """
## 1 · Which frames the model reads

A checkpoint reads a fixed number of frames (8 here, 16 for VideoMAE-base), so a clip must be *sampled*: uniformly
in time over the whole clip, or — as VideoMAE was trained — consecutive frames a fixed *stride* apart (4 for the
Kinetics-400 checkpoints; 1 for `mini-video-mae`, trained on consecutive frames), centred in the clip. `load_video`
reads long files in one pass and decodes only the frames it keeps; it picks frames by their timestamps, so a clip
with a variable frame rate is sampled evenly in *time*, and says so. Red dots: the frames the model reads.
"""),
    ("code", """
import tempfile
from pathlib import Path

from explorer.video import load_video, write_video

folder = Path(tempfile.mkdtemp())
write_video(folder / "long.avi", make_clip(10_000_021, frames=120, size=model.image_size).frames, fps=8)
uniform = load_video(folder / "long.avi", num_frames=model.num_frames)
strided = load_video(folder / "long.avi", num_frames=model.num_frames, sampling="strided", stride=4)
print("uniform:", uniform.indices.tolist(), "at", uniform.times_s.round(2).tolist(), "s")
print("strided:", strided.indices.tolist())
VV.sampling_figure(uniform)
"""),
    ("code", """
write_video(folder / "short.avi", make_clip(10_000_021, frames=12, size=model.image_size).frames, fps=8)
short = load_video(folder / "short.avi", num_frames=model.num_frames, sampling="strided", stride=4)
print(short.indices.tolist(), "|", "; ".join(short.notes))
VV.sampling_figure(short)
"""),
    ("md", """
## 2 · Four ways to hide 75 % of a clip

Rows are time steps; a hidden token is dark. *tube*: the same patches in every time step; *random*: independent per
token; *frame*: whole time steps; *running cell*: a 2×2 cell whose hidden positions shift every step (VideoMAE V2).
"""),
    ("code", """
for s in VIDEO_STRATEGIES:
    m = video_mask((model.time_steps, *model.grid), 0.75, s, seed=0)
    hidden_everywhere = m.all(0).mean()
    print(f"{s:13s} hidden per time step {m.reshape(len(m), -1).mean(1).round(2)}; "
          f"patches hidden in every time step: {hidden_everywhere:.0%}")
"""),
    ("md", """
## 3 · Reconstruct, frame by frame
"""),
    ("code", """
rec = reconstruct_video(model, clip.frames, ratio=0.9, strategy="tube", seed=0)
print(f"masked PSNR {rec.psnr_masked:.2f} dB; per frame {np.round(rec.psnr_per_frame, 1)}")
VV.filmstrip(rec)
"""),
    ("code", """
VV.video_frame_figure(rec, 3)
"""),
    ("md", """
## 4 · Against non-learned fills

Copying a hidden patch from the nearest frame where it is visible is a strong baseline when masks change over time
(and the background does not move); under tube masking it has nothing to copy and falls back to inpainting.
"""),
    ("code", """
from explorer.metrics import patch_mse, psnr_from_mse

def psnr(pred, rec):
    return psnr_from_mse(float(np.concatenate([patch_mse(pred[i], rec.frames[i], rec.patch_size)[rec.frame_mask(i)]
                                               for i in range(len(rec.frames))]).mean()))

for strategy in ("tube", "random"):
    r = reconstruct_video(model, clip.frames, ratio=0.9, strategy=strategy, seed=0)
    print(f"{strategy:7s} model {psnr(r.prediction, r):5.2f} dB | nearest visible frame "
          f"{psnr(nearest_frame_fill(r.frames, r.mask, r.tubelet, r.patch_size), r):5.2f} dB | inpainting "
          f"{psnr(video_telea_fill(r.frames, r.mask, r.tubelet, r.patch_size), r):5.2f} dB")
"""),
    ("md", """
### On real video it never saw

Generated clips flatter a model. The verdict comes from real recordings: OpenCV's sample videos (Debian package
`opencv-doc`, Apache-2.0; `make heldout-media` fetches them, `make test` does it for you). The filmstrip shows the
model's rows beside the non-learned fills of the same hidden tubelets, each with its PSNR on this clip; *spread* is the
standard deviation of the predicted hidden pixels over the true ones (a model that paints one flat colour scores ~0).
"""),
    ("code", """
from explorer.data.heldout_video import heldout_clips, missing_videos
from explorer.training.video_evaluate import judge

if missing_videos():
    print("skipped: the held-out videos are not on this machine; run `make heldout-media`")
else:
    real = heldout_clips(frames=model.num_frames, size=model.image_size, per_video=2)
    for strategy in ("tube", "random"):
        j = judge(model, real, 0.75, strategy)
        p = j["psnr"]
        print(f"real video, {strategy:6s} 75%: model {p['model']:.2f} dB | Telea {p['Telea inpainting (per frame)']:.2f} dB"
              f" | nearest visible frame {p['nearest visible frame (else Telea)']:.2f} dB | spread {j['spread']:.2f}"
              f" over {j['clips']} clips")
    box = real[sorted(k for k in real if k.startswith("box"))[0]]
    display(VV.filmstrip(reconstruct_video(model, box, ratio=0.75, strategy="random", seed=0)))
"""),
    ("md", """
## 5 · The app

Pick a clip (or upload one: mp4 / avi / webm / gif), how to sample it (the model's own stride by default; the time
line shows which frames), a strategy and a seed; the ratio slider and the frame slider (or Play) are served from a
sweep computed once per (clip, sampling, strategy, seed). *Export* writes the chosen view (frames, filmstrip or the
sampling time line) as PDF / SVG / PNG with a sidecar: `python -m explorer reproduce <file>.json` rebuilds it
byte for byte from the same clip and seed.
"""),
    ("code", """
from explorer.widgets.video_app import VideoMAEApp

app = VideoMAEApp(model="mini-video-mae", clip="generated:10000011", ratio=0.9)
app
"""),
    ("md", """
## 6 · Bad input and real checkpoints
"""),
    ("code", """
from explorer.video import VideoLoadError, load_video

for bad in [b"not a video", np.zeros((1, 64, 64, 3), np.float32)]:
    try:
        load_video(bad, num_frames=model.num_frames)
    except VideoLoadError as e:
        print("refused:", e)
try:
    reconstruct_video(model, clip.frames[:3])
except ValueError as e:
    print("refused:", e)
try:
    explorer.load_model("MCG-NJU/videomae-base")
except explorer.ModelLoadError as e:
    print(e.brief)
"""),
]

if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from notebooks_multimodal import AUDIO_VISUAL, RGBD
    from notebooks_interventions import INTERVENTIONS
    from notebooks_uniformer import UNIFORMER
    from notebooks_apps import APPS, app_cells

    ROOT.mkdir(exist_ok=True)
    for name, cells in [("01_quickstart.ipynb", QUICKSTART), ("02_mae_masking.ipynb", MASKING),
                        ("03_attention_maps.ipynb", ATTENTION), ("04_cross_modal_alignment.ipynb", ALIGNMENT),
                        ("05_export_figures.ipynb", EXPORT), ("06_video_mae.ipynb", VIDEO),
                        ("07_rgbd_mae.ipynb", RGBD), ("08_audio_visual_mae.ipynb", AUDIO_VISUAL),
                        ("09_uniformer.ipynb", UNIFORMER),
                        ("10_interventions.ipynb", INTERVENTIONS)]:
        nbf.write(nb(cells), ROOT / name)
        print("wrote", ROOT / name)
    (ROOT / "apps").mkdir(exist_ok=True)
    for name in APPS:  # app mode (Voila): a title and the app, one notebook per app
        nbf.write(nb(app_cells(name)), ROOT / "apps" / f"{name}.ipynb")
        print("wrote", ROOT / "apps" / f"{name}.ipynb")
