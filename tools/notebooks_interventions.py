"""Cells of notebook 10 (interventions: does an attention head matter?); written by tools/build_notebooks.py."""

INTERVENTIONS = [
    ("md", """
# 10 · Interventions: does an attention head matter?

An attention map shows where a head looks, not whether the model *needs* it.  Interventions answer that by changing
the model and measuring the output:

1. **ablation** — switch heads off (their output set to zero, or to its mean over the tokens) and compare with the
   intact model;
2. **head importance** — ablate every head in turn: an `(layers × heads)` grid of how much the output moves;
3. **activation patching** — run a *corrupted* input (a noisy image, a caption with one word changed) with one head's
   output copied from the *clean* run: the share of the output difference it restores says how much of the change
   flows through that head.

A head's output is its slice of the attention output *before* the output projection; one hook on
`scaled_dot_product_attention` reaches it in every model the explorer loads (`explorer.attention.interventions`).
"""),
    ("code", """
import numpy as np
import explorer
from explorer.attention import ablate, head_importance, patch_heads, corrupt
from explorer.fusion import load_fusion_model, ablate_fusion, fusion_head_importance, patch_fusion
from explorer.fusion.interventions import patch_fusion_heads
from explorer.viz import interventions as VI

model = explorer.load_model("mini-mae")
print(f"{model.num_layers} layers × {model.num_heads} heads")
"""),
    ("md", """
## 1 · Ablate a head of a masked autoencoder

An MAE is scored on its job: the PSNR of the reconstruction over the hidden patches of one seeded mask (75 %).
The map on the right is the per-patch error with the head ablated minus without (red = worse).  Ablating nothing is
the intact model, bit for bit.
"""),
    ("code", """
none = ablate(model, "chelsea", [], seed=0)
print(f"intact: {none.intact:.2f} dB, nothing ablated: Δ {none.delta:+.3f} dB")
layer0 = ablate(model, "chelsea", [(0, None)], seed=0)        # (layer, None): every head of the layer
print(f"layer 0 ablated: Δ masked-patch PSNR {layer0.delta:+.3f} dB")
VI.ablation_figure(layer0)
"""),
    ("md", """
## 2 · Which heads matter?  The importance sweep

Every head of every layer ablated in turn — one batched forward per layer (copy *i* of the image has head *i*
ablated; the last copy the whole layer), cached per weights, input, metric and mode.  Blue cells: the PSNR fell.
"""),
    ("code", """
imp = head_importance(model, "chelsea", seed=0)
for l, h, d in imp.ranked()[:3]:
    print(f"L{l} H{h}: Δ {d:+.3f} dB")
l, h, d = imp.ranked()[0]
print(f"most important head: L{l} H{h}, Δ masked-patch PSNR {d:+.3f} dB (intact {imp.intact:.2f} dB; sweep {imp.seconds:.1f} s)")
mean = head_importance(model, "chelsea", seed=0, mode="mean")
print(f"mean-ablation instead of zero: largest |Δ| {np.abs(mean.delta).max():.3f} dB "
      f"(zero: {np.abs(imp.delta).max():.3f} dB)")
VI.importance_grid(imp)
"""),
    ("md", """
## 3 · Activation patching on the mini fusion model

The generated scene's caption is true; the counterfactual changes one word.  The model runs on the counterfactual
with one cross-attention head's output copied from the true caption's run: 1 = that head restores the whole
difference in the match logit, 0 = nothing.  In this model text reaches the image stream *only* through the
cross-attention, so patching every head of every fusion layer restores exactly 100 %.
"""),
    ("code", """
from explorer.data.scenes import make_scene

fusion = load_fusion_model("mini-fusion")
scene = make_scene(10_000_003)
text = scene.caption()
counterfactual = text.replace("triangle", "square")
p = patch_fusion(fusion, scene.image, text, counterfactual)
print(f"'{text}': {p.clean:+.2f}; '{counterfactual}': {p.corrupted:+.2f}")
best = np.unravel_index(np.argmax(p.restored), p.restored.shape)
print(f"head L{best[0]} H{best[1]} restores {p.restored[best]:.0%}; whole layers: "
      + ", ".join(f"L{i} {r:.0%}" for i, r in enumerate(p.layer_restored)))
everything = patch_fusion_heads(fusion, scene.image, text, counterfactual, [(0, None), (1, None)])
print(f"every fusion head patched: {everything:.0%} restored")
VI.patching_grid(p)
"""),
    ("md", """
Ablating a head also moves the word maps.  Where the scene has ground truth, the pointing game (does each object
word's map peak on its object?) says whether the maps still point at the right place.
"""),
    ("code", """
fab = ablate_fusion(fusion, scene.image, text, [(best[0], best[1])], word_masks=scene.word_masks(text))
print(f"Δ match logit {fab.delta:+.2f}; pointing game {fab.pointing_intact:.0%} → {fab.pointing_ablated:.0%} ({fab.method})")
VI.fusion_ablation_figure(fab, word=fab.words.index("triangle"))
"""),
    ("md", """
## 4 · In the apps

Both apps have an **Interventions** panel.  Turn on **Ablate**, then click heads in the layers × heads grid (the
panel's *layer* column: a whole layer); **zero / mean over tokens** says how; **Reset** ablates nothing.
**Head importance** runs the sweep (the grid appears beside the head summary); **Patch** reruns a corrupted copy of
the image (noise, blur, grey) — or, in the fusion app, the counterfactual caption you type — with each head's clean
output.
"""),
    ("code", """
app = explorer.AttentionApp(model="mini-mae", image="chelsea")
app.interventions.ablate_btn.value = True
app.interventions.toggle(l, h)          # what clicking head (l, h) in the grid does in Ablate mode
print("ablated:", ", ".join(f"L{a} H{b}" for a, b in app.interventions.ablation.heads),
      f"Δ {app.interventions.ablation.delta:+.3f} dB")
app
"""),
    ("code", """
fapp = explorer.FusionApp(model="mini-fusion", image="scene:10000003")
fapp.interventions.second.value = counterfactual
fapp.interventions.run_patch()
fapp
"""),
    ("md", """
## 5 · Faithfulness with intervals

Deletion / insertion (Petsiuk et al. 2018) removes patches in a map's order and watches the score.  One random
order as the reference is noise: here every map is compared with the central 95% of **20 seeded random orders**, and a
map inside that band is reported as *not distinguishable from random*.  How a patch is "removed" is itself a
choice: for an MAE it can be *hidden* (the encoder never sees it), filled with the **MAE's own reconstruction** from
the kept patches (deletion then measures information, not the model's surprise at grey squares), the **mean colour**
or a **blurred** copy.  The same maps under every fill (12 random orders each here), and whether the fills agree on
which method is best:
"""),
    ("code", """
from explorer import attention as A
from explorer.attention.faithfulness import compare_fills

maps = {name: A.explain(model, "chelsea", name).map for name in ("rollout", "relevance", "saliency")}
maps["random map"] = np.random.default_rng(0).random(model.grid)
cmp = compare_fills(model, "chelsea", maps, steps=6, random_orders=12)  # the app uses 20 orders; 12 keep this cell short
print(f"{'map':22s}" + "".join(f"{fl:>34s}" for fl in cmp.fills))
for j, name in enumerate(cmp.methods):
    cells = []
    for fl in cmp.fills:
        c = cmp.curves[fl][name]
        cells.append(f"{c.deletion_auc:.3f} ({c.deletion_verdict.replace(' from random', '').replace(' than random', '')})")
    print(f"{name:22s}" + "".join(f"{x:>34s}" for x in cells))
print()
print(cmp.summary())
"""),
    ("md", """
The randomisation check (Adebayo et al. 2018) re-draws the top blocks' weights and recomputes the map; a method that
depends on the model must change.  Each level is reported, and a map that changes at one level but comes back at a
deeper one is called *mixed*, not a pass.  The same check runs on the fusion model's word maps (its cross-attention
layers re-drawn).
"""),
    ("code", """
from explorer.attention.faithfulness import randomisation_check
from explorer.fusion.faithfulness import fusion_randomisation_check

for name in ("rollout", "relevance"):
    s = randomisation_check(model, "chelsea", lambda a, im, n=name: A.explain(a, im, n).map)
    print(f"{name}: {s.verdict()}")
word = text.split().index("triangle")
for method in ("attention", "relevance"):
    s = fusion_randomisation_check(fusion, scene.image, text, method, word)
    print(f"mini-fusion {method}, word 'triangle': {s.verdict()}")
"""),
    ("md", """
How much does the match depend on each modality?  Masking the image, the text or both gives the four outputs from
which each modality's **exact Shapley value** follows (they add up to the change with no gap).  Integrated
Gradients along one joint path should add up to the same change; its completeness gap and any sign that disagrees
with Shapley are printed as warnings.
"""),
    ("code", """
from explorer.fusion import modality_report

rep = modality_report(fusion, scene.image, text)
print(rep.headline())
for w in rep.warnings:
    print("warning:", w)
"""),
    ("md", """
**Next:** `03_attention_maps.ipynb` (the maps themselves) and `04_cross_modal_alignment.ipynb` (word maps).
"""),
]
