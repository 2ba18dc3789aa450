"""Batch export over a folder: ``python -m explorer export --model M --inputs DIR --out DIR``.

Pipeline (one process): a thread pool decodes and fits the next images while the model
reconstructs the current batch — every (image, ratio) pair of a batch in one padded forward
(:meth:`explorer.models.MAEAdapter.forward_batch`) — and another pool writes the outputs.

Views:

* ``tiles``: raw PNG tiles per ratio (original, masked input, reconstruction, reconstruction
  + visible), written with OpenCV; the fast path for large datasets.
* ``reconstruction``: the five-panel paper figure per ratio (PDF/SVG/PNG + sidecar, kaleido).
* ``grid``: one MAE-paper style row per input (original + reconstruction at each ratio).
* ``attention``: the CLS token's attention in every layer and head (``attention_grid`` recipe),
  from the encoder on all patches; its forward runs in the main thread after the batch.

Each input gets a folder ``OUT/<name>/`` and a ``done.json`` written last; a rerun with the same
settings skips finished inputs (resume), a rerun with other settings refuses to overwrite
them unless ``--overwrite``.  Inputs that fail are listed with their error and the run goes
on; ``OUT/summary.json`` records everything.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..io import ImageLoadError
from ..masking import MaskSpec, mask_from_order, masking_order
from .figure import export_figure, model_spec
from ..files import write_atomic
from ..viz.presets import get_preset
from .recipes import reconstruction_view
from .registry import get_recipe, options_for
from .sidecar import dumps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jp2"}
VIEWS = ("tiles", "reconstruction", "grid", "attention")


@dataclass
class BatchConfig:
    """Settings of one batch run (also the resume key)."""

    model: str
    inputs: str
    out: str
    ratios: tuple[float, ...] = (0.5, 0.75, 0.9)
    views: tuple[str, ...] = ("tiles",)
    seed: int = 0
    strategy: str = "random"
    fit: str = "center-crop"
    formats: tuple[str, ...] = ("pdf", "svg", "png")
    preset: str = "double-column"
    dpi: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 16
    overwrite: bool = False
    recursive: bool = False
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 2))


@dataclass
class BatchSummary:
    """What a batch run did."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    forward_seconds: float = 0.0
    images_per_second: float = 0.0

    def text(self) -> str:
        lines = [f"{len(self.done)} exported, {len(self.skipped)} already done (skipped), {len(self.failed)} failed "
                 f"in {self.seconds:.1f} s ({self.images_per_second:.2f} images/s end to end)."]
        for name, err in self.failed.items():
            lines.append(f"  FAILED {name}: {err}")
        return "\n".join(lines)


def list_inputs(folder: "str | Path", recursive: bool = False) -> list[Path]:
    """Files in ``folder`` that look like images (by suffix), sorted; other files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Input folder {folder} does not exist.")
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _slug(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return "__".join(rel.parts[:-1] + (rel.name.replace(".", "_"),))


def _key(cfg: BatchConfig, weights: str) -> dict:
    d = asdict(cfg)
    for k in ("inputs", "out", "overwrite", "workers", "batch_size", "recursive", "device"):
        d.pop(k)
    d["weights_sha256"] = weights
    d["ratios"] = [float(r) for r in cfg.ratios]
    d["views"], d["formats"] = list(cfg.views), list(cfg.formats)
    return d


def _png(image: np.ndarray) -> bytes:
    u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    # Fast zlib level: tiles are for datasets (the paper figures are written separately).
    ok, buf = cv2.imencode(".png", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _prepare(path: Path, size: int, fit: str):
    from ..reconstruction import as_input

    return as_input(path, fit, size)


def run_batch(cfg: BatchConfig, *, progress: bool = True, log=print, adapter=None) -> BatchSummary:
    """Run the pipeline described by ``cfg``; see the module docstring.

    Args:
        adapter: an already loaded model to use instead of loading ``cfg.model`` (benchmarks, notebooks).
    """
    from tqdm.auto import tqdm

    from ..models import load_model
    from ..reconstruction.image import Reconstruction, _notes

    t_start = time.perf_counter()
    for v in cfg.views:
        if v not in VIEWS:
            raise ValueError(f"Unknown view {v!r}; choose from {', '.join(VIEWS)}.")
    ratios = tuple(float(r) for r in cfg.ratios)
    if not ratios or any(not 0 <= r < 1 for r in ratios):
        raise ValueError("--ratios must be fractions in [0, 1).")
    if any(v != "tiles" for v in cfg.views):
        get_preset(cfg.preset)
    root = Path(cfg.inputs)
    files = list_inputs(root, cfg.recursive)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary()
    if not files:
        log(f"No image files in {root}.")
    if adapter is None:
        adapter = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    key = _key(cfg, adapter.weights_sha256)
    mspec = model_spec(adapter)
    order = masking_order(adapter.grid, cfg.strategy, cfg.seed)
    masks = np.stack([mask_from_order(order, adapter.grid, r) for r in ratios])  # (R, gh, gw)

    todo: list[Path] = []
    for f in files:
        done = out / _slug(f, root) / "done.json"
        if done.is_file():
            try:
                prev = json.loads(done.read_text())
            except (OSError, json.JSONDecodeError):
                prev = None
            if prev and prev.get("key") == key:
                summary.skipped.append(str(f))
                continue
            if not cfg.overwrite:
                summary.failed[str(f)] = (f"{done.parent} holds an export made with other settings; pass --overwrite "
                                          "or choose another --out.")
                continue
        todo.append(f)

    reader = ThreadPoolExecutor(max(1, cfg.workers))
    writer = ThreadPoolExecutor(max(1, cfg.workers))
    pending_writes = []
    bar = tqdm(total=len(todo), desc="export", unit="img", disable=not progress)

    def write_outputs(f: Path, pixels, info, preds, maps=None):
        folder = out / _slug(f, root)
        recs = [Reconstruction(pixels, m, np.clip(p, 0, 1).astype(np.float32), adapter.patch_size,
                               MaskSpec(cfg.strategy, r, cfg.seed), adapter.info, info, _notes(adapter))
                for r, m, p in zip(ratios, masks, preds)]
        written = []
        in_spec = {"path": str(f.resolve()), "name": info.name, "sha256": info.sha256}
        if "tiles" in cfg.views:
            written.append(str(write_atomic(folder / "original.png", _png(pixels), overwrite=True, durable=False)))
            for rec in recs:
                tag = f"r{round(rec.spec.ratio * 100):02d}"
                for kind, im in (("masked", rec.masked_input), ("reconstruction", rec.prediction), ("pasted", rec.pasted)):
                    written.append(str(write_atomic(folder / f"{tag}_{kind}.png", _png(im), overwrite=True, durable=False)))
        def figure(fig, stem: str, recipe_name: str, opts: dict, batched: bool = True) -> None:
            res = export_figure(fig, folder / stem, preset=cfg.preset, formats=cfg.formats, dpi=cfg.dpi, overwrite=True,
                                letters=get_recipe(recipe_name).letters, recipe={"name": recipe_name, "options": opts},
                                provenance={"model": mspec, "inputs": [in_spec], **({"batched": True} if batched else {})})
            written.extend(str(p) for p in res.files.values())

        if "reconstruction" in cfg.views:
            for rec in recs:
                opts = options_for("reconstruction", dict(ratio=rec.spec.ratio, seed=cfg.seed, strategy=cfg.strategy, fit=cfg.fit))
                figure(reconstruction_view(rec, opts), f"reconstruction_r{round(rec.spec.ratio * 100):02d}", "reconstruction", opts)
        if "grid" in cfg.views:
            from ..viz.mae import reconstruction_grid

            opts = options_for("reconstruction_grid", dict(ratios=list(ratios), seed=cfg.seed, strategy=cfg.strategy, fit=cfg.fit))
            figure(reconstruction_grid([(info.name, recs)], show=opts["show"], cell=int(opts["cell"])), "grid",
                   "reconstruction_grid", opts)
        if maps is not None:  # the attention forward ran unbatched, on this image alone
            from ..viz.attention import attention_grid

            figure(attention_grid(maps, maps.layout.default_query), "attention", "attention_grid", options_for("attention_grid", dict(fit=cfg.fit)),
                   batched=False)
        record = {"key": key, "input": in_spec, "files": sorted(Path(w).name for w in written),
                  # a perfect fill has an infinite PSNR, which JSON cannot hold: recorded as null
                  "psnr_masked_db": {f"{r:g}": rec.psnr_masked if np.isfinite(rec.psnr_masked) else None
                                     for r, rec in zip(ratios, recs)}}
        write_atomic(folder / "done.json", (dumps(record) + "\n").encode(), overwrite=True)
        return str(f)

    def on_written(fut, f):
        try:
            summary.done.append(fut.result())
        except Exception as e:  # noqa: BLE001 - reported per file, the run goes on
            summary.failed[str(f)] = f"{type(e).__name__}: {e}"
        bar.update(1)

    try:
        B = max(1, int(cfg.batch_size))
        groups = [todo[i : i + B] for i in range(0, len(todo), B)]
        futures = [[reader.submit(_prepare, f, adapter.image_size, cfg.fit) for f in g] for g in groups[:2]]
        for gi, group in enumerate(groups):
            if gi + 2 < len(groups):  # keep two groups decoding ahead of the model
                futures.append([reader.submit(_prepare, f, adapter.image_size, cfg.fit) for f in groups[gi + 2]])
            ok = []
            for f, fut in zip(group, futures[gi]):
                try:
                    ok.append((f, *fut.result()))
                except ImageLoadError as e:
                    summary.failed[str(f)] = str(e)
                    bar.update(1)
                except Exception as e:  # noqa: BLE001
                    summary.failed[str(f)] = f"{type(e).__name__}: {e}"
                    bar.update(1)
            futures[gi] = None
            if not ok:
                continue
            R = len(ratios)
            images = np.repeat(np.stack([o[1] for o in ok]), R, axis=0)  # (n*R, S, S, 3)
            t0 = time.perf_counter()
            # Sorted by visible count, chunks of len(ok) hold exactly one ratio each: no padding
            # (what a CPU needs); a GPU takes the whole group in one forward.
            preds = adapter.forward_batch(images, np.tile(masks, (len(ok), 1, 1)),
                                          batch_size=len(images) if adapter.device.type == "cuda" else len(ok))
            summary.forward_seconds += time.perf_counter() - t0
            for j, (f, pixels, info) in enumerate(ok):
                maps = None
                if "attention" in cfg.views:  # capture patches torch globally: main thread, one image at a time
                    from ..attention import attention_maps

                    try:
                        maps = attention_maps(adapter, f, fit=cfg.fit)
                    except Exception as e:  # noqa: BLE001 - reported per file, the run goes on
                        summary.failed[str(f)] = f"attention: {type(e).__name__}: {e}"
                        bar.update(1)
                        continue
                fut = writer.submit(write_outputs, f, pixels, info, preds[j * R : (j + 1) * R], maps)
                fut.add_done_callback(lambda fu, f=f: on_written(fu, f))
                pending_writes.append(fut)
        for fut in pending_writes:
            fut.exception()
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)
        bar.close()
    summary.seconds = time.perf_counter() - t_start
    summary.images_per_second = len(summary.done) / summary.seconds if summary.seconds else 0.0
    record = {"config": {**asdict(cfg), "ratios": list(ratios)}, "done": summary.done, "skipped": summary.skipped,
              "failed": summary.failed, "seconds": round(summary.seconds, 3)}
    write_atomic(out / "summary.json", (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(), overwrite=True)
    return summary
