"""explorer analyze at scale on this CPU: 2 Ray workers vs 1 vs in-process, and the thread-based batch export.

    python bench/analyze_scale.py --images 48          # mini-mae, mae-sweep at one ratio / strategy (export's work)

Same inputs and model for every row.  "analyze" rows are end to end (``explorer.analyze.run``: listing, hashing, a
local Ray started per run (counted) or reused (``--reuse-ray``), decode / model / metrics, Parquet parts, merge).
"export" is ``python -m explorer export --views tiles`` (:func:`explorer.export.batch.run_batch`) at the same ratio
(it also writes PNG tiles, which analyze does not).  Per-stage throughput comes from the in-process run, timed stage by
stage on the same batches.  Results: bench/results/analyze_scale-<images>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_export import make_inputs  # noqa: E402
from common import machine  # noqa: E402

from explorer import analyze  # noqa: E402
from explorer.analyze.stages import ModelStage, decode_batch, metrics_batch  # noqa: E402
from explorer.export.batch import BatchConfig, run_batch  # noqa: E402
from explorer.models import load_model  # noqa: E402

OPTS = {"ratios": [0.75], "strategies": ["random"], "seed": 0}


def stages(folder: Path, model: str, batch: int) -> dict:
    adapter = load_model(model, device="cpu")
    recs = analyze.list_inputs(folder)
    t = {"decode": 0.0, "model": 0.0, "metrics": 0.0}
    for s in range(0, len(recs), batch):
        chunk = recs[s : s + batch]
        b = {"path": np.array([r["path"] for r in chunk], object), "label": np.array([""] * len(chunk), object),
             "key": np.array(["k"] * len(chunk), object), "input_sha256": np.array(["s"] * len(chunk), object)}
        t0 = time.perf_counter(); d = decode_batch(b, size=adapter.image_size, fit="center-crop")
        t1 = time.perf_counter(); m = ModelStage(adapter, "mae-sweep", analyze.resolve_options("mae-sweep", OPTS))(d)
        t2 = time.perf_counter(); metrics_batch(m, analysis="mae-sweep", options=analyze.resolve_options("mae-sweep", OPTS))
        t3 = time.perf_counter()
        t["decode"] += t1 - t0; t["model"] += t2 - t1; t["metrics"] += t3 - t2
    return {k: len(recs) / v for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--model", default="mini-mae")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reuse-ray", action="store_true", help="start Ray once (its start-up not counted)")
    args = ap.parse_args()
    res = {"machine": machine(), "images": args.images, "model": args.model, "batch_size": args.batch_size, "rows": {}}
    quiet = lambda *_: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "in", args.images, args.size)
        res["stages_inputs_per_s"] = stages(tmp / "in", args.model, args.batch_size)
        if args.reuse_ray:
            analyze.pipeline.start_ray(2, None)
        for name, kw in (("in-process", {"in_process": True}), ("ray 1 worker", {"workers": 1}), ("ray 2 workers", {"workers": 2})):
            t0 = time.perf_counter()
            s = analyze.run(tmp / "in", args.model, "mae-sweep", tmp / f"{name.replace(' ', '_')}.parquet", options=OPTS,
                            batch_size=args.batch_size, progress=False, log=quiet, **kw)
            res["rows"][name] = args.images / (time.perf_counter() - t0)
            assert s.processed == args.images and not s.errors
        cfg = BatchConfig(model=args.model, inputs=str(tmp / "in"), out=str(tmp / "exp"), ratios=(0.75,), views=("tiles",),
                          batch_size=args.batch_size, workers=2)
        t0 = time.perf_counter()
        run_batch(cfg, progress=False, log=quiet)
        res["rows"]["export (threads, 2)"] = args.images / (time.perf_counter() - t0)
    r = res["rows"]
    res["ratio_ray2_vs_ray1"] = r["ray 2 workers"] / r["ray 1 worker"]
    res["ratio_ray2_vs_export"] = r["ray 2 workers"] / r["export (threads, 2)"]
    for k, v in r.items():
        print(f"{k:22s} {v:8.2f} inputs/s end to end")
    print("per stage (in-process, one core):", ", ".join(f"{k} {v:.1f}/s" for k, v in res["stages_inputs_per_s"].items()))
    print(f"ray 2 vs 1 workers: x{res['ratio_ray2_vs_ray1']:.2f}; ray 2 workers vs export: x{res['ratio_ray2_vs_export']:.2f}")
    out = Path(__file__).resolve().parent / "results" / f"analyze_scale-{args.images}.json"
    from explorer.files import write_atomic

    write_atomic(out, json.dumps(res, indent=1).encode(), overwrite=True)
    print(f"written {out}")


if __name__ == "__main__":
    main()
