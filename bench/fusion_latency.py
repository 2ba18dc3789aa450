"""Server-side latency of interactions in the cross-modal app (CPU, mini fusion model), and on a GPU the
cost of every map for CLIP-B/16-sized image+text input against a plain forward.

    python bench/fusion_latency.py [--model mini-fusion] [--moves 200]
    python bench/fusion_latency.py --gpu-clip [--device cuda --dtype bfloat16]   # CLIP-B/16 config, random weights

"ours": the app as shipped — one forward + backward per (model, image, text) captured every layer;
a word / layer / head / method / opacity change reads the cached Alignment and updates the live
FigureWidget in place.
"naive": what a hand-written notebook does per click — a forward and backward again (the maps of one
word need the whole model) and a freshly built overlay figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, summary, timeit  # noqa: E402


def interactions(args) -> None:
    from explorer.fusion import align
    from explorer.viz import fusion as VF
    from explorer.widgets.fusion_app import FusionApp

    app = FusionApp(model=args.model, image="scene:10000003")
    al = app.alignment
    W, L = len(al.words), al.attention.shape[0]
    rng = np.random.default_rng(0)
    methods = [m for m in al.available]
    moves = []
    for _ in range(args.moves):
        kind = rng.integers(4)
        moves.append((["word", "layer", "method", "patch"][kind], int(rng.integers(1 << 30))))
    ours = []
    for kind, r in moves:
        t0 = time.perf_counter()
        if kind == "word":
            app.select_word(r % W)
        elif kind == "layer":
            app.layer.value = r % L
        elif kind == "method":
            app.method.value = methods[r % len(methods)]
        else:
            app.select_patch(r % (al.grid[0] * al.grid[1]))
        ours.append((time.perf_counter() - t0) * 1e3)
    naive = []
    for kind, r in moves[:60]:
        t0 = time.perf_counter()
        fresh = align(app.adapter, app.loaded, al.meta["text"])
        VF.word_overlay(fresh.image, fresh.word_map("relevance", r % W), patch_size=app.adapter.patch_size, title="")
        naive.append((time.perf_counter() - t0) * 1e3)
    print(f"# fusion_latency (interactions) on {machine()}, model {args.model}, {W} words, {L} cross layers")
    print(f"ours  (cached alignment, in-place update): {summary(ours)}  max {max(ours):6.1f} ms  (n={len(ours)})")
    print(f"naive (forward + backward + new figure):   {summary(naive)}  max {max(naive):6.1f} ms  (n={len(naive)})")
    print(f"median speed-up x{np.median(naive) / np.median(ours):.1f}")


def gpu_clip(args) -> None:
    """CLIP-B/16 geometry (random weights, a small word-level tokenizer): every map vs a plain forward
    with ``output_attentions=True``.  Written with save_pretrained and loaded like a hub checkpoint."""
    import tempfile

    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _tiny import write_clip_vocab

    from explorer.fusion import align, load_fusion_model

    folder = Path(tempfile.mkdtemp())
    write_clip_vocab(folder)
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    cfg = CLIPConfig(vision_config=dict(patch_size=16, image_size=224),
                     text_config=dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    ad = load_fusion_model(folder, device=args.device, dtype=args.dtype)
    model, dev = ad.model, ad.device
    img = np.random.default_rng(0).random((224, 224, 3)).astype(np.float32)
    text = "a red circle left of a blue square"
    x = ad.normalise(img)
    t = ad.tokenize(text)

    def plain():
        with torch.no_grad():
            model(pixel_values=x, input_ids=t.ids, attention_mask=t.attention_mask, output_attentions=True)

    def ours():
        align(ad, img, text)

    model.set_attn_implementation("eager")  # output_attentions needs eager attention
    a = timeit(plain, repeat=args.repeat, device=dev)
    model.set_attn_implementation("sdpa")
    b = timeit(ours, repeat=args.repeat, device=dev)
    print(f"# fusion_latency (CLIP-B/16 geometry, {args.dtype}) on {machine()}")
    print(f"plain forward, eager, output_attentions=True: {summary(a)}")
    print(f"align (FILIP token similarity, score, answer): {summary(b)}")
    print(f"ratio align / plain: {np.median(b) / np.median(a):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini-fusion")
    ap.add_argument("--moves", type=int, default=200)
    ap.add_argument("--gpu-clip", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    if args.gpu_clip:
        gpu_clip(args)
    else:
        interactions(args)


if __name__ == "__main__":
    main()
