"""Server-side latency of a layer / head change in the attention app (CPU, mini model).

    python bench/attention_latency.py [--model mini-mae]

"ours": the app as shipped — one forward per (model, image) captured all layers and heads; a layer
or head change reads the cached array and updates the heatmap of the live FigureWidget in place.
"naive": what a hand-written notebook does — a forward with ``output_attentions=True`` (eager) and
a freshly built overlay figure per change.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, summary  # noqa: E402

from explorer.viz import attention as VA  # noqa: E402
from explorer.widgets.attention_app import AttentionApp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini-mae")
    ap.add_argument("--moves", type=int, default=200)
    args = ap.parse_args()
    print(f"# attention_latency on {machine()}")
    app = AttentionApp(model=args.model, image="chelsea")
    L, H = app.maps.num_layers, app.maps.num_heads
    rng = np.random.default_rng(0)
    moves = [(int(rng.integers(L)), int(rng.integers(H))) for _ in range(args.moves)]
    ours = []
    for layer, head in moves:
        t0 = time.perf_counter()
        app.select(layer, head)
        ours.append((time.perf_counter() - t0) * 1e3)

    adapter = app.adapter
    model = adapter.model
    x = adapter.normalise(app.maps.image)
    naive = []
    model.set_attn_implementation("eager")
    try:
        for layer, head in moves[:60]:
            t0 = time.perf_counter()
            with torch.no_grad():
                if adapter.family == "mae":
                    old = model.config.mask_ratio
                    model.config.mask_ratio = 0.0
                    out = model.vit(pixel_values=x, noise=torch.arange(adapter.num_patches, dtype=torch.float32)[None],
                                    output_attentions=True)
                    model.config.mask_ratio = old
                else:
                    out = model(pixel_values=x, output_attentions=True)
            m = out.attentions[layer][0, head, 0, 1:].numpy().reshape(adapter.grid)
            VA.query_overlay(app.maps.image, m, patch_size=adapter.patch_size, title=f"L{layer} H{head}")
            naive.append((time.perf_counter() - t0) * 1e3)
    finally:
        model.set_attn_implementation("sdpa")
    print(f"ours  (cached capture, in-place update): {summary(ours)}  max {max(ours):6.1f} ms  (n={len(ours)})")
    print(f"naive (eager forward + new figure):      {summary(naive)}  max {max(naive):6.1f} ms  (n={len(naive)})")
    print(f"median speed-up x{np.median(naive) / np.median(ours):.1f}")


if __name__ == "__main__":
    main()
