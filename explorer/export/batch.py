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

Each input gets a folder ``OUT/<name>/`` and a ``done.json`` written last.  ``<name>`` is the
input's relative path with ``/`` → ``__`` and ``.`` → ``_`` when that cannot be mistaken for another
path (lower-case letters, digits, ``-``, single dots), else that cleaned path plus ``-`` and 10 hex
digits of the path's SHA-256: ``a.b.png`` → ``a_b_png``, ``a_b.png`` → ``a_b_png-1f2e…``.  Two inputs
that still meet in one folder are reported, never written over each other.

A rerun skips an input whose ``done.json`` records the same settings and the same file content
(SHA-256), re-exports an input whose file was replaced since, and refuses to write over an
export made with other settings or of another file unless ``--overwrite``; an overwrite removes
the files of the old export that the new settings do not write (only files listed in this
pipeline's own records: nothing else in the folder is touched).  One run at a time writes into
``OUT`` (:class:`explorer.export.lock.OutputLock`); the lock records the names the run may write, so
the run after a killed one cleans its unfinished folders, and removes its temporary files.
With ``--recursive``, folders written by this pipeline (``OUT`` itself, or any with its lock,
summary or records) are not read as inputs.  Inputs that fail are listed with their error and
the run goes on; ``OUT/summary.json`` records everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..io import ImageLoadError
from ..masking import MaskSpec, mask_from_order, masking_order
from .figure import export_figure, model_spec
from ..files import remove_stale_parts, write_atomic
from .lock import LOCK_NAME, OutputLock
from ..viz.presets import get_preset
from .recipes import reconstruction_view
from .registry import get_recipe, options_for
from .sidecar import dumps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jp2"}
VIEWS = ("tiles", "reconstruction", "grid", "attention")
DONE = "done.json"  # an input's record, written last
PENDING = ".explorer-export-pending.json"  # files an unfinished export may have left in its folder
SUMMARY = "summary.json"


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
    rows: "int | str" = "auto"
    dpi: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 16
    overwrite: bool = False
    recursive: bool = False
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 2))


@dataclass
class BatchSummary:
    """What a batch run did.

    ``replaced``: inputs (also in ``done``) re-exported because their file changed since the export recorded for them.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    forward_seconds: float = 0.0
    images_per_second: float = 0.0

    def text(self) -> str:
        lines = [f"{len(self.done)} exported, {len(self.skipped)} already done (skipped), {len(self.failed)} failed "
                 f"in {self.seconds:.1f} s ({self.images_per_second:.2f} images/s end to end)."]
        if self.replaced:
            lines.append(f"  {len(self.replaced)} of the exported inputs changed since their last export and were redone.")
        lines.extend(f"  note: {n}" for n in self.notes)
        for name, err in self.failed.items():
            lines.append(f"  FAILED {name}: {err}")
        return "\n".join(lines)


def _read_record(path: Path) -> dict | None:
    """The JSON object in ``path``, or None (missing, unreadable, not an object)."""
    try:
        rec = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def is_output_folder(folder: "str | Path") -> bool:
    """Whether ``folder`` was written by this pipeline: an ``--out`` (lock or summary) or one input's folder (records)."""
    folder = Path(folder)
    if (folder / LOCK_NAME).exists() or (folder / PENDING).exists():
        return True
    for name, keys in ((SUMMARY, {"config", "done", "failed"}), (DONE, {"key", "input", "files"})):
        if (folder / name).is_file():
            rec = _read_record(folder / name)
            if rec is not None and keys <= rec.keys():
                return True
    return False


def list_inputs(folder: "str | Path", recursive: bool = False, *, exclude: "tuple[str | Path, ...]" = ()) -> list[Path]:
    """Files in ``folder`` that look like images (by suffix), sorted; other files are ignored.

    With ``recursive``, sub-folders written by this pipeline (:func:`is_output_folder`) and the folders in
    ``exclude`` are not entered: an ``--out`` inside ``--inputs`` never feeds its own tiles back.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Input folder {folder} does not exist.")
    if not recursive:
        found = [p for p in folder.iterdir() if p.is_file()]
    else:
        skip = set()
        for e in exclude:
            with contextlib.suppress(OSError):
                st = os.stat(e)
                skip.add((st.st_dev, st.st_ino))
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):  # symbolic links to folders are not followed, as rglob
            d = Path(dirpath)
            keep = []
            for n in dirnames:
                try:
                    st = os.stat(d / n)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in skip and not is_output_folder(d / n):
                    keep.append(n)
            dirnames[:] = keep
            found.extend(p for p in (d / n for n in filenames) if p.is_file())
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


_PLAIN_PART = re.compile(r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*")


def output_name(path: Path, root: Path) -> str:
    """The folder name of input ``path`` (under ``root``); different relative paths never share one.

    ``sub/img.1.png`` → ``sub__img_1_png``: each part lower-case letters, digits and ``-`` between single dots,
    so the name reads back to exactly one path.  Anything else (``_``, capitals, spaces, ``..``) gets the
    cleaned path plus ``-`` and 10 hex digits of the relative path's SHA-256: ``a_b.png`` → ``a_b_png-<hash>``,
    which no plain name ends like (those end in ``_<image suffix>``).
    """
    rel = path.relative_to(root)
    plain = "__".join(p.replace(".", "_") for p in rel.parts)
    if len(plain) <= 120 and all(_PLAIN_PART.fullmatch(p) for p in rel.parts):
        return plain
    digest = hashlib.sha256(rel.as_posix().encode("utf-8", "surrogateescape")).hexdigest()[:10]
    clean = re.sub(r"[^A-Za-z0-9-]", "_", "__".join(rel.parts))[-100:].lstrip("-") or "_"
    return f"{clean}-{digest}"


def _key(cfg: BatchConfig, weights: str) -> dict:
    d = asdict(cfg)
    for k in ("inputs", "out", "overwrite", "workers", "batch_size", "recursive", "device"):
        d.pop(k)
    d["weights_sha256"] = weights
    d["ratios"] = [float(r) for r in cfg.ratios]
    d["views"], d["formats"] = list(cfg.views), list(cfg.formats)
    return d


def _tag(ratio: float) -> str:
    return f"r{round(ratio * 100):02d}"


def _planned(cfg: BatchConfig, ratios: tuple[float, ...]) -> set[str]:
    """Names of the files one input's export writes with these settings (besides its records)."""
    names: set[str] = set()
    if "tiles" in cfg.views:
        names.add("original.png")
        names.update(f"{_tag(r)}_{k}.png" for r in ratios for k in ("masked", "reconstruction", "pasted"))
    stems = [f"reconstruction_{_tag(r)}" for r in ratios] if "reconstruction" in cfg.views else []
    stems += [v for v in ("grid", "attention") if v in cfg.views]
    formats = dict.fromkeys(f.lower().lstrip(".") for f in cfg.formats)
    names.update(f"{s}.{x}" for s in stems for x in (*formats, "json"))
    return names


def _listed(record: dict | None) -> set[str]:
    """File names a record of ours lists: plain names in the folder, never a path out of it or a record."""
    files = record.get("files") if record else None
    if not isinstance(files, list):
        return set()
    return {n for n in files if isinstance(n, str) and n and not n.startswith(".") and n != DONE and Path(n).name == n
            and "/" not in n and "\\" not in n}


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        path.unlink()


def _pending(folder: Path, files: set[str]) -> None:
    """Record in ``folder`` the names an unfinished export may have left there (read by the next run)."""
    write_atomic(folder / PENDING, (json.dumps({"files": sorted(files)}) + "\n").encode(), overwrite=True, durable=False)


def _file_sha256(path: Path) -> str | None:
    """SHA-256 of the file's bytes (as :func:`explorer.io.load_image` records it); None if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None  # exported again, where reading it fails with its own message
    return h.hexdigest()


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

    Raises:
        explorer.export.lock.OutputLocked: another run is writing into ``cfg.out``.
    """
    for v in cfg.views:
        if v not in VIEWS:
            raise ValueError(f"Unknown view {v!r}; choose from {', '.join(VIEWS)}.")
    ratios = tuple(float(r) for r in cfg.ratios)
    if not ratios or any(not 0 <= r < 1 for r in ratios):
        raise ValueError("--ratios must be fractions in [0, 1).")
    tags: dict[str, float] = {}
    for r in ratios:
        if tags.setdefault(_tag(r), r) != r:
            raise ValueError(f"--ratios {tags[_tag(r)]:g} and {r:g} would both write {_tag(r)}_* files; "
                             "give ratios that differ in percent.")
    if any(v != "tiles" for v in cfg.views):
        get_preset(cfg.preset)
    if cfg.rows != "auto" and not (isinstance(cfg.rows, int) and not isinstance(cfg.rows, bool) and cfg.rows >= 1):
        raise ValueError(f"--rows must be 'auto' or a whole number of rows (1, 2, …), got {cfg.rows!r}")
    root = Path(cfg.inputs)
    out = Path(cfg.out)
    files = list_inputs(root, cfg.recursive, exclude=(out,))
    with OutputLock(out) as lock:
        return _run_locked(cfg, ratios, root, out, files, lock, progress=progress, log=log, adapter=adapter)


def _run_locked(cfg: BatchConfig, ratios: tuple[float, ...], root: Path, out: Path, files: list[Path], lock: OutputLock,
                *, progress: bool, log, adapter) -> BatchSummary:
    from tqdm.auto import tqdm

    from ..models import load_model
    from ..reconstruction.image import Reconstruction, _notes

    t_start = time.perf_counter()
    summary = BatchSummary()
    planned = _planned(cfg, ratios)
    # Names a killed earlier run may have left in folders it did not finish, carried on until cleaned.
    orphans = _listed(lock.previous)
    lock.update(files=sorted(planned | orphans))
    if lock.note:
        summary.notes.append(lock.note)
    removed = remove_stale_parts(out)
    if not files:
        log(f"No image files in {root}.")
    if adapter is None:
        adapter = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    key = _key(cfg, adapter.weights_sha256)
    mspec = model_spec(adapter)
    order = masking_order(adapter.grid, cfg.strategy, cfg.seed)
    masks = np.stack([mask_from_order(order, adapter.grid, r) for r in ratios])  # (R, gh, gw)

    # One folder per input; two inputs meeting in one (a hash collision, or names differing only in
    # case on a case-insensitive disk) are refused rather than written over each other.
    names: dict[Path, str] = {}
    owner: dict[str, Path] = {}
    for f in files:
        name = output_name(f, root)
        first = owner.setdefault(name.casefold(), f)
        if first is not f:
            summary.failed[str(f)] = (f"its output folder {out / name} is already that of {first}; "
                                      "rename one of the two inputs.")
            continue
        names[f] = name

    reader = ThreadPoolExecutor(max(1, cfg.workers))
    writer = ThreadPoolExecutor(max(1, cfg.workers))
    pending_writes = []
    bar = None
    try:
        todo, prior, removed = _resume_plan(cfg, key, out, names, summary, reader, removed, orphans)
        if removed:
            summary.notes.append(f"removed {len(removed)} temporary file(s) left by a run that was stopped")
        bar = tqdm(total=len(todo), desc="export", unit="img", disable=not progress)

        def write_outputs(f: Path, pixels, info, preds, maps=None):
            folder = out / names[f]
            before = prior.get(f)  # None: a new folder (the lock records what a killed run may leave in it)
            if before is None:
                folder.mkdir(parents=True, exist_ok=True)
            else:
                for stale in before - planned:  # the old export's files the new settings do not write
                    _remove(folder / stale)
                _remove(folder / DONE)  # from here on the folder is not a finished export
            ours = planned | (before or set())
            try:
                _write_files(f, folder, pixels, info, preds, maps, ours)
            except BaseException:
                with contextlib.suppress(Exception):  # what the next run cleans up
                    _pending(folder, ours)
                raise
            if before is not None:
                _remove(folder / PENDING)
            return str(f)

        def _write_files(f: Path, folder: Path, pixels, info, preds, maps, ours: set[str]) -> None:
            """Write the views, remove the names in ``ours`` not written again, then write the record."""
            recs = [Reconstruction(pixels, m, np.clip(p, 0, 1).astype(np.float32), adapter.patch_size,
                                   MaskSpec(cfg.strategy, r, cfg.seed), adapter.info, info, _notes(adapter))
                    for r, m, p in zip(ratios, masks, preds)]
            written = []
            in_spec = {"path": str(f.resolve()), "name": info.name, "sha256": info.sha256}
            if "tiles" in cfg.views:
                written.append(str(write_atomic(folder / "original.png", _png(pixels), overwrite=True, durable=False)))
                for rec in recs:
                    tag = _tag(rec.spec.ratio)
                    for kind, im in (("masked", rec.masked_input), ("reconstruction", rec.prediction), ("pasted", rec.pasted)):
                        written.append(str(write_atomic(folder / f"{tag}_{kind}.png", _png(im), overwrite=True, durable=False)))

            def figure(fig, stem: str, recipe_name: str, opts: dict, batched: bool = True) -> None:
                res = export_figure(fig, folder / stem, preset=cfg.preset, formats=cfg.formats, dpi=cfg.dpi, overwrite=True,
                                    rows=cfg.rows,
                                    letters=get_recipe(recipe_name).letters, recipe={"name": recipe_name, "options": opts},
                                    provenance={"model": mspec, "inputs": [in_spec], **({"batched": True} if batched else {})})
                written.extend(str(p) for p in res.files.values())

            if "reconstruction" in cfg.views:
                for rec in recs:
                    opts = options_for("reconstruction", dict(ratio=rec.spec.ratio, seed=cfg.seed, strategy=cfg.strategy, fit=cfg.fit))
                    figure(reconstruction_view(rec, opts), f"reconstruction_{_tag(rec.spec.ratio)}", "reconstruction", opts)
            if "grid" in cfg.views:
                from ..viz.mae import reconstruction_grid

                opts = options_for("reconstruction_grid", dict(ratios=list(ratios), seed=cfg.seed, strategy=cfg.strategy, fit=cfg.fit))
                figure(reconstruction_grid([(info.name, recs)], show=opts["show"], cell=int(opts["cell"])), "grid",
                       "reconstruction_grid", opts)
            if maps is not None:  # the attention forward ran unbatched, on this image alone
                from ..viz.attention import attention_grid

                figure(attention_grid(maps, maps.layout.default_query), "attention", "attention_grid", options_for("attention_grid", dict(fit=cfg.fit)),
                       batched=False)
            wrote = sorted(Path(w).name for w in written)
            for stale in ours.difference(wrote):
                _remove(folder / stale)
            record = {"key": key, "input": in_spec, "files": wrote,
                      # a perfect fill has an infinite PSNR, which JSON cannot hold: recorded as null
                      "psnr_masked_db": {f"{r:g}": rec.psnr_masked if np.isfinite(rec.psnr_masked) else None
                                         for r, rec in zip(ratios, recs)}}
            write_atomic(folder / DONE, (dumps(record) + "\n").encode(), overwrite=True)

        def on_written(fut, f):
            try:
                summary.done.append(fut.result())
            except Exception as e:  # noqa: BLE001 - reported per file, the run goes on
                summary.failed[str(f)] = f"{type(e).__name__}: {e}"
            bar.update(1)

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
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t_start
    summary.images_per_second = len(summary.done) / summary.seconds if summary.seconds else 0.0
    record = {"tool": "explorer export", "config": {**asdict(cfg), "ratios": list(ratios)}, "done": summary.done,
              "skipped": summary.skipped, "failed": summary.failed, "replaced": summary.replaced, "notes": summary.notes,
              "folders": {str(f): n for f, n in names.items()}, "seconds": round(summary.seconds, 3)}
    write_atomic(out / SUMMARY, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(), overwrite=True)
    return summary


def _resume_plan(cfg: BatchConfig, key: dict, out: Path, names: dict, summary: BatchSummary, pool,
                 removed: list, orphans: set[str]) -> tuple[list[Path], dict[Path, set[str]], list]:
    """Which inputs to export (``todo``, in input order), and the files earlier exports left in their folders.

    Skipped: same settings and same file content (hashed in ``pool``).  Redone: no record (never
    finished: its temporary files are removed), or the same file with new content.  Refused unless
    ``--overwrite``: other settings, or the record of another file.  ``prior`` has an entry for every
    existing folder: the names its records list (``done.json``, the pending list, and ``orphans``, the
    names a killed run's lock held, for unfinished folders; written to their pending list at once).
    """
    todo: list[Path] = []
    prior: dict[Path, set[str]] = {}  # files of an earlier export in the input's folder, by our records
    recorded: list[tuple[Path, dict]] = []  # same settings: resumed if the file is unchanged
    for f, name in names.items():
        folder = out / name
        if not (folder / DONE).is_file():
            if folder.is_dir():  # an export that did not finish: its leftovers
                prior[f] = _listed(_read_record(folder / PENDING)) | orphans
                if orphans:  # recorded in the folder before the lock that named them is gone
                    _pending(folder, prior[f])
                removed = removed + remove_stale_parts(folder)
            todo.append(f)
            continue
        prev = _read_record(folder / DONE) or {}
        prev_input = prev.get("input") if isinstance(prev.get("input"), dict) else {}
        if prev.get("key") == key and prev_input.get("sha256"):
            recorded.append((f, prev))
            continue
        if not cfg.overwrite:
            summary.failed[str(f)] = (f"{folder} holds an export made with other settings; pass --overwrite "
                                      "or choose another --out.")
            continue
        prior[f] = _listed(prev) | _listed(_read_record(folder / PENDING))
        todo.append(f)
    for (f, prev), sha in zip(recorded, pool.map(_file_sha256, [f for f, _ in recorded])):
        prev_input = prev["input"]
        if sha == prev_input["sha256"]:
            summary.skipped.append(str(f))
            continue
        same_file = prev_input.get("path") == str(f.resolve())
        if not same_file and not cfg.overwrite:
            summary.failed[str(f)] = (f"{out / names[f]} holds the export of another file ({prev_input.get('path')}); "
                                      "pass --overwrite or choose another --out.")
            continue
        if same_file:
            summary.replaced.append(str(f))
        prior[f] = _listed(prev) | _listed(_read_record(out / names[f] / PENDING))
        todo.append(f)
    todo.sort()  # input order, whatever the checks above did
    return todo, prior, removed
