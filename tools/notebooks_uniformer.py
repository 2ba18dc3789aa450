"""Cells of notebook 09 (UniFormer: local relations in the shallow stages, global attention in the deep ones); written by
tools/build_notebooks.py."""

UNIFORMER = [
    ("md", """
# 09 · UniFormer: local relations, then global attention

**UniFormer** (Li et al., ICLR 2022) splits the work of relating tokens between two mechanisms:

* in the **shallow stages** (1 and 2, many small tokens) a token aggregates its neighbours with a learned
  **depth-wise kernel** (5×5; 5×5×5 in video): the same weighting of the neighbourhood at every position, one kernel
  per channel, between two 1×1 convolutions — *local relation aggregation*, cheap and close to a convolution;
* in the **deep stages** (3 and 4, few large tokens) every token attends to every other with **self-attention**,
  whose weights depend on the input — *global relation aggregation*.

Every stage opens with a patch merge (÷4, then ÷2 three times), so a 64×64 image has 16×16, 8×8, 4×4 and 2×2 tokens.
This notebook shows, for a token you choose, what each stage relates it to: the kernel and the receptive field where
the relation is local, the attention map where it is global, and how rollout and gradient relevance flow through the
global stages.

`mini-uniformer` is trained in this repository on generated scenes of two shapes (circle, square, triangle) whose
label says where one lies relative to the other (`"circle left of triangle"`, 12 classes): telling the shapes apart is a
local question, comparing their positions a global one.  Its card is in `data/models/mini-uniformer/`.
"""),
    ("code", """
import numpy as np
import explorer
from explorer.attention.local_global import capture_relations, relation_view, local_global
from explorer.data.shape_relations import LABELS, relation_scene
from explorer.viz.uniformer import relations_figure

uf = explorer.load_uniformer_model("mini-uniformer")
for s, (kind, depth, dim, heads, grid) in enumerate(zip(uf.stage_kinds, uf.stage_depths, uf.stage_dims, uf.stage_heads,
                                                       uf.token_grids()), start=1):
    print(f"stage {s}: {kind:6s} {depth} blocks, {dim:3d} channels, {heads} heads / channel groups, "
          f"{'x'.join(map(str, grid))} tokens")
"""),
    ("md", """
## 1 · One token, four stages

`capture_relations` runs the model once with gradients and keeps every global block's attention (and its gradient for
relevance); `relation_view` answers one query point from it — a pixel `(row, column)`; for video `(frame, row, column)`.
The scene below was never seen in training.  We query a pixel on the first shape.
"""),
    ("code", """
scene = relation_scene(900007)
(x, y) = scene.objects[0].center
cap = capture_relations(uf, scene.image)
view = relation_view(uf, cap, (y, x))
print(f"true class: {LABELS[scene.label]}; "
      f"predicted: {view.target_label} (p = {view.probability:.2f})")
for st in view.stages:
    where = f"token {'x'.join(map(str, st.token))} of {'x'.join(map(str, st.grid))}"
    if st.kind == "local":
        side = "x".join(str(hi - lo + 1) for lo, hi in st.field)
        print(f"stage {st.stage} local  (block {st.block + 1}/{st.depth}, {where}): kernel {st.kernels.shape[-1]}x"
              f"{st.kernels.shape[-1]}, theoretical field {side} px, 95% of the effective field in {st.area95} px")
    else:
        peak = np.unravel_index(int(st.attention_mean.argmax()), st.grid)
        print(f"stage {st.stage} global (block {st.block + 1}/{st.depth}, {where}): attends most to token "
              f"{'x'.join(map(str, peak))} ({st.attention_mean.max():.2f} of its attention, mean of heads)")
"""),
    ("code", """
relations_figure(view)
"""),
    ("md", """
## 2 · What the kernels and receptive fields show

A local block's kernel is a **fixed** weighting of the 5×5 neighbourhood (the bottom row's panels: the mean `|w|` over
channels, or one channel group's signed mean with `heads=`): the same for every image and every position.  Stacked with
the stem and the 3×3 position-encoding convolutions, the kernels give each token a **theoretical receptive field** (the
dashed box): the pixels its features *can* depend on.  The **effective receptive field** (Luo et al. 2016) is where they
*do*: the gradient of the token's features with respect to the pixels.  It lies inside the theoretical field (the
gradient cannot leave it) and, typically, fills only its centre:
"""),
    ("code", """
for stage in (1, 2):
    for block in range(uf.stage_depths[stage - 1]):
        blocks = [uf.stage_depths[s] - 1 for s in range(4)]
        blocks[stage - 1] = block
        st = relation_view(uf, cap, (y, x), blocks=blocks).stages[stage - 1]
        print(f"stage {stage} block {block + 1}: theoretical {st.field_area:5d} px, 95% of the gradient in "
              f"{st.area95:5d} px ({100 * st.area95 / st.field_area:.0f}%), inside the theoretical field: {st.inside:.3f}")
"""),
    ("md", """
## 3 · Global stages: attention, rollout, relevance

Stage 3's attention of the token is a distribution over all 4×4 stage-3 tokens; stage 4's over its 2×2.  **Rollout**
multiplies the head-averaged attention (plus the residual, `0.5·A + 0.5·I`) through stage 3's blocks, then through the
**patch merge** — each stage-4 token is made from the 2×2 stage-3 tokens under it, so relevance flows from it equally
to those four (the matrix `M` of `explorer.attention.local_global.merge_matrix`) — then through stage 4's blocks.
**Relevance** (Chefer et al. 2021) does the same with the gradient-weighted attention of the predicted class.
The classifier averages every stage-4 token, so its maps are the mean over rows:
"""),
    ("code", """
def peak(m):
    return "x".join(map(str, np.unravel_index(int(np.argmax(m)), m.shape)))

M = cap.merge
print(f"patch merge: {M.shape[0]} stage-4 tokens from {M.shape[1]} stage-3 tokens, {int((M[0] > 0).sum())} each")
print(f"rollout of the query's stage-4 token peaks at stage-3 token {peak(view.rollout)}; "
      f"the classifier's at {peak(view.rollout_classifier)}; relevance at {peak(view.relevance)}")
shapes = ", ".join(f"{o.shape} at token {o.center[1] * 4 // 64}x{o.center[0] * 4 // 64}" for o in scene.objects)
print(f"the shapes: {shapes}")
"""),
    ("md", """
## 4 · Video UniFormers

Video UniFormers use 5×5×5 kernels and attention over `(time, row, column)` tokens; the view takes a clip and a
`(frame, row, column)` query, draws one frame, and shows the kernels per time offset side by side.  No video UniFormer
is shipped, so this one is **random** (seeded): it shows the shapes of things, not what a trained model learned.
"""),
    ("code", """
import torch
from explorer.models.uniformer import UniFormer, UniFormerAdapter, UniFormerConfig

torch.manual_seed(0)
video_uf = UniFormerAdapter(UniFormer(UniFormerConfig(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), head_dim=32,
                                                      num_classes=5, image_size=64, video=True, num_frames=8)),
                            model_id="random video UniFormer")
vview = local_global(video_uf, "generated:10000003", (3, 20, 40))
s1 = vview.stages[0]
print(f"stage-1 kernels {'x'.join(map(str, s1.kernels.shape))}, effective field over "
      f"{'x'.join(map(str, s1.effective.shape))} (frames x rows x columns), tokens "
      f"{' / '.join('x'.join(map(str, s.grid)) for s in vview.stages)}")
relations_figure(vview, frame=3)
"""),
    ("md", """
## 5 · With the published weights

The authors' checkpoints (`uniformer_small_in1k.pth`, `uniformer_base_in1k.pth`, the token-labeling `*_tl_224.pth`,
video `uniformer_small_k400_8x8.pth`…) are linked from the model-zoo tables of the Sense-X/UniFormer README on GitHub
(Google Drive, and the Sense-X pages on the Hugging Face hub).  They load by path, read as tensors only
(`weights_only=True`), into our implementation of their layout.  Point `UNIFORMER_WEIGHTS` at one to run this cell on it:
"""),
    ("code", """
import os

path = os.environ.get("UNIFORMER_WEIGHTS")
if path:
    big = explorer.load_uniformer_model(path)
    print(f"{big.model_id}: depths {big.stage_depths}, widths {big.stage_dims}, head width from {big.head_dim_source}")
    source = "generated:10000003" if big.is_video else "chelsea"
    big_view = local_global(big, source)
    print(f"predicted: {big_view.target_label} (p = {big_view.probability:.2f})")
    relations_figure(big_view).show()
else:
    print("skipped: UNIFORMER_WEIGHTS is not set (e.g. UNIFORMER_WEIGHTS=~/weights/uniformer_small_in1k.pth)")
"""),
    ("md", """
## 6 · The app

Click any panel of the top row to query the token under the pointer.  *Stage* picks the stage whose *Block* and *Head*
the selectors set (each stage keeps its own); *Rollout heads* and the residual box change rollout; *Export* writes the
view as PDF / SVG / PNG with a sidecar that `python -m explorer reproduce` rebuilds byte for byte, and *Reopen* comes
back to it.  Type a folder or an authors' `.pth` file into *Model*; a video UniFormer gets a frame slider.
"""),
    ("code", """
app = explorer.UniFormerApp("mini-uniformer", image=scene.image, query=(y, x))
app
"""),
    ("md", """
## 7 · Exports reproduce, bad input is refused
"""),
    ("code", """
import tempfile
from pathlib import Path
from explorer.export import export_recipe, reproduce

out = Path(tempfile.mkdtemp())
res = export_recipe("uniformer_relations", out / "uniformer", model=uf, inputs=[scene.image], formats=["png"],
                    options=dict(query=[int(y), int(x)], heads=["mean", "mean", 0, "mean"]))
print(reproduce(res.files["json"]).summary().splitlines()[-1])
for bad in [lambda: relation_view(uf, cap, (64, 10)), lambda: relation_view(uf, cap, (1, 2, 3)),
            lambda: relation_view(uf, cap, blocks=(0, 0, 9, 0)), lambda: local_global(uf, b"not an image")]:
    try:
        bad()
    except ValueError as e:
        print("refused:", e)
"""),
]
