"""Interventions and faithfulness: the batched / shared way against the naive way, side by side (CPU, mini-mae).

    python bench/faithfulness_speed.py [--model mini-mae] [--repeat 3]

1. Head-importance sweep: ours = one forward per layer (copy i of the input has head i ablated, plus one copy
   with the whole layer); naive = one forward per head (``head_importance(..., batched=False)``, the same numbers).
2. Deletion / insertion of four maps against 20 random orders: ours = the random orders' curves computed once per
   input and shared by every map; naive = each map recomputes its own 20 random orders.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

import explorer  # noqa: E402
from explorer import attention as A  # noqa: E402
from explorer.attention import faithfulness as F  # noqa: E402
from explorer.attention import interventions as I  # noqa: E402


def _ms(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini-mae")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# faithfulness_speed on {machine()}")
    model = explorer.load_model(args.model, device="cpu")
    L, H = model.num_layers, model.num_heads

    def batched():
        I.clear_cache()
        return I.head_importance(model, "chelsea", seed=0)

    def loop():
        return I.head_importance(model, "chelsea", seed=0, batched=False)

    b, n = batched(), loop()
    err = float(np.abs(b.delta - n.delta).max())
    tb, tn = _ms(batched, args.repeat), _ms(loop, args.repeat)
    mb, mn = statistics.median(tb), statistics.median(tn)
    print(f"head-importance sweep ({L} layers × {H} heads, masked-patch PSNR): batched {mb:.0f} ms | "
          f"one forward per head {mn:.0f} ms | ×{mn / mb:.2f} | max |Δ| difference {err:.1e} dB")

    maps = {m: A.explain(model, "chelsea", m).map for m in ("rollout", "relevance", "saliency")}
    maps["random map"] = np.random.default_rng(0).random(model.grid)

    def shared():
        F._REFERENCE.clear()
        return [F.deletion_insertion(model, "chelsea", m) for m in maps.values()]

    def naive():
        out = []
        for m in maps.values():
            F._REFERENCE.clear()
            out.append(F.deletion_insertion(model, "chelsea", m))
        return out

    same = all(a.deletion_auc == b.deletion_auc and np.array_equal(a.random_deletion_aucs, b.random_deletion_aucs)
               for a, b in zip(shared(), naive()))
    ts, tn2 = _ms(shared, args.repeat), _ms(naive, args.repeat)
    ms_, mn2 = statistics.median(ts), statistics.median(tn2)
    print(f"deletion / insertion of {len(maps)} maps, 20 random orders, fill '{model.default_fill}': shared reference "
          f"{ms_:.0f} ms | each map its own {mn2:.0f} ms | ×{mn2 / ms_:.2f} | identical results: {same}")


if __name__ == "__main__":
    main()
