"""Server-side latency of a masking-ratio slider move in the MAE app (CPU, mini model).

    python bench/slider_latency.py

"ours": the app as shipped — the 19-ratio sweep is computed once and cached; a move swaps four
PNG panels and the error map in the live FigureWidget.  "naive": what a hand-written notebook
does — one model forward and a freshly built figure per move.  Times are measured from setting
the slider value to the end of the figure update (the widget message is serialised, no browser).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, pct, summary  # noqa: E402

import explorer  # noqa: E402
from explorer.masking import SWEEP_RATIOS  # noqa: E402
from explorer.widgets.mae_app import MAEApp  # noqa: E402


def main(moves: int = 200):
    print(f"# slider_latency on {machine()}")
    app = MAEApp(model="mini-mae", image="chelsea")
    rng = np.random.default_rng(0)
    targets = [float(SWEEP_RATIOS[i]) for i in rng.integers(0, len(SWEEP_RATIOS), moves)]
    ours = []
    for r in targets:
        if abs(app.ratio.value - r) < 1e-9:
            continue
        t0 = time.perf_counter()
        app.ratio.value = r
        ours.append((time.perf_counter() - t0) * 1e3)
    assert app.cache.misses == 1, "slider moves must not recompute the sweep"

    model, image = app.adapter, app.loaded
    naive = []
    for r in targets[:60]:
        t0 = time.perf_counter()
        rec = explorer.reconstruct(model, image, ratio=r, seed=0)
        explorer.viz.reconstruction_figure(rec)
        naive.append((time.perf_counter() - t0) * 1e3)
    print(f"ours  (cached sweep, in-place update): {summary(ours)}  max {max(ours):6.1f} ms  (n={len(ours)})")
    print(f"naive (forward + new figure per move): {summary(naive)}  max {max(naive):6.1f} ms  (n={len(naive)})")
    print(f"p95 within 50 ms: {pct(ours, 95) <= 50}; median speed-up x{np.median(naive) / np.median(ours):.1f}")


if __name__ == "__main__":
    main()
