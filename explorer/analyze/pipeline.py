"""``explorer.analyze.run``: a dataset-scale analysis on Ray Data (or the same stages in one process).

    decode (CPU tasks) ─► model (actor pool: one model per actor; num_gpus=1 each on CUDA) ─► metrics (CPU tasks)
                      ─► the driver writes one Parquet part per block, atomically ─► one final atomic merge

Resume: each input's key is SHA-256(file content hash + the run's settings); rows already in ``out`` or in the parts
folder of an interrupted run (``.<out>.parts/``) are skipped, except inputs whose row is an error (retried).  A killed
run leaves only complete parts (and maybe a hidden ``.part-`` temporary file); ``out`` is replaced only by the merge.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import write_atomic
from ..version import __version__
from .analyses import ANALYSES, resolve_options, schema
from .inputs import AnalyzeError, hash_all, list_inputs
from .stages import ModelStage, decode_batch, metrics_batch

META_KEY = b"explorer.analyze"


@dataclass(frozen=True)
class AnalyzeSummary:
    """What a run did: counts of inputs, rows and errors, time, and where the rows are."""

    out: str
    inputs: int
    skipped: int
    processed: int
    errors: int
    rows: int
    seconds: float
    engine: str

    @property
    def throughput(self) -> float:
        """Inputs processed per second (0 when nothing ran)."""
        return self.processed / self.seconds if self.seconds > 0 and self.processed else 0.0

    def text(self) -> str:
        return (f"analyze: {self.processed} inputs processed ({self.errors} with errors), {self.skipped} skipped as "
                f"already written, {self.rows} rows in {self.out}; {self.seconds:.1f} s, "
                f"{self.throughput:.2f} inputs/s ({self.engine})")


def _settings(analysis: str, options: dict, model_info, fit: str, dtype: str) -> dict:
    return {"analysis": analysis, "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "fit": fit, "model_id": model_info.model_id, "weights_sha256": model_info.weights_sha256, "dtype": dtype}


def _key(settings_json: str, sha: str) -> str:
    return hashlib.sha256(f"{settings_json}\n{sha}".encode()).hexdigest()


def read_metadata(path) -> dict:
    """The run metadata stored in an ``analyze`` Parquet (settings, versions, engine); ``{}`` when absent."""
    md = pq.read_schema(path).metadata or {}
    return json.loads(md[META_KEY]) if META_KEY in md else {}


def _table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _done_keys(tables: list) -> set:
    keys = set()
    for t in tables:
        ok = t.filter(pa.compute.is_null(t.column("error")))
        keys.update(ok.column("key").to_pylist())
    return keys


def _versions(engine: str) -> dict:
    import torch

    v = {"explorer": __version__, "torch": torch.__version__, "pyarrow": pa.__version__, "numpy": np.__version__}
    if engine == "ray":
        import ray

        v["ray"] = ray.__version__
    return v


def _stages_in_process(todo: list, stage: ModelStage, analysis: str, options: dict, size: int, fit: str, batch_size: int):
    for s in range(0, len(todo), batch_size):
        chunk = todo[s : s + batch_size]
        batch = {k: np.array([r[k] for r in chunk], dtype=object) for k in chunk[0]}
        yield metrics_batch(stage(decode_batch(batch, size=size, fit=fit)), analysis=analysis, options=options)


def _stages_ray(todo, model, analysis, options, size, fit, batch_size, workers, device, dtype, cuda):
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    # one block per batch, so parts stream out as they finish
    ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), -(-len(todo) // batch_size))))
    ds = ds.map_batches(decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=0.25,
                        fn_kwargs={"size": size, "fit": fit})
    actor = {"num_gpus": 1} if cuda else {"num_cpus": 0.75}
    ds = ds.map_batches(ModelStage, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=workers),
                        fn_constructor_kwargs={"model": model, "analysis": analysis, "options": options, "device": device,
                                               "dtype": dtype, "threads": None if cuda else 1},
                        **actor)
    ds = ds.map_batches(metrics_batch, batch_size=batch_size, batch_format="numpy", num_cpus=0.25,
                        fn_kwargs={"analysis": analysis, "options": options})
    for t in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield t


def start_ray(workers: int, address: "str | None"):
    """Join ``address`` or start a quiet local Ray with ``workers`` CPUs (workers find this checkout on PYTHONPATH).

    Returns whether the caller must ``ray.shutdown()`` (False when Ray was already initialised: it is reused).
    """
    import logging

    import ray

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    repo = str(Path(__file__).resolve().parents[2])
    # in the environment the raylet inherits (not a runtime_env: those workers could not be prestarted or reused)
    if repo not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    common = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False,
              "configure_logging": True}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=workers, **common)
    return True


def run(inputs, model: str, analysis: str, out, *, options: "dict | None" = None, workers: "int | None" = None,
        address: "str | None" = None, in_process: bool = False, resume: bool = True, overwrite: bool = False,
        batch_size: int = 4, device: str = "auto", dtype: str = "float32", fit: str = "center-crop",
        progress: bool = True, log=print) -> AnalyzeSummary:
    """Run ``analysis`` with ``model`` over ``inputs`` and write one row per input × setting to the Parquet ``out``.

    Args:
        inputs: a folder (recursive; ImageFolder gives ``label``), a glob, a list file, a Parquet with ``path``, or a
            list of paths (:func:`explorer.analyze.inputs.list_inputs`).
        model: a shipped name, hub id or folder (each actor loads it with :func:`explorer.load_model`).
        analysis: ``"mae-sweep"``, ``"heads"`` or ``"faithfulness"`` (:data:`ANALYSES`).
        out: the ``.parquet`` file to write; its schema metadata (key ``explorer.analyze``) holds the settings and
            versions.
        options: the analysis' options over its defaults (e.g. ``{"ratios": [0.5, 0.75], "seed": 1}``).
        workers: model actors (and, for a local Ray, its CPUs); default ``os.cpu_count()``.
        address: join this Ray cluster (``"auto"``, ``"ray://host:10001"``) instead of starting a local one.
        in_process: run the same stages in this process, without Ray (same rows).
        resume: skip inputs whose rows ``out`` (or an interrupted run's parts) already holds; False with an existing
            ``out`` needs ``overwrite``.
        overwrite: replace an ``out`` written with other settings.
        batch_size: inputs per block (decode, model and metrics work per block; one Parquet part per block).
        device, dtype: the model's (``"bfloat16"`` for bf16 on a GPU); ``fit``: how images are fitted to the model.
    Returns:
        :class:`AnalyzeSummary` (also printed through ``log`` as the last line).
    Raises:
        AnalyzeError: bad arguments, no inputs, or an ``out`` of other settings without ``overwrite``.
    """
    from ..models import load_model

    try:
        options = resolve_options(analysis, options)
    except ValueError as e:
        raise AnalyzeError(str(e)) from None
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise AnalyzeError(f"--out must name a .parquet file, got {str(out)!r}.")
    if int(batch_size) < 1:
        raise AnalyzeError(f"batch_size must be at least 1, got {batch_size}.")
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise AnalyzeError(f"workers must be at least 1, got {workers}.")
    t_start = time.perf_counter()
    records = list_inputs(inputs)
    adapter = load_model(model, device=device if in_process else "cpu", dtype=dtype if in_process else "float32")
    settings = _settings(analysis, options, adapter.info, fit, dtype)
    sj = json.dumps(settings, sort_keys=True)
    for r, sha in zip(records, hash_all([r["path"] for r in records])):
        r["input_sha256"], r["key"] = sha, _key(sj, sha)

    parts = out.parent / f".{out.name}.parts"
    old: list = []
    if out.exists():
        prev = read_metadata(out).get("settings")
        if prev != settings and not overwrite:
            raise AnalyzeError(f"{out} holds rows of other settings ({json.dumps(prev, sort_keys=True)[:300]}); pass "
                               "overwrite=True (--overwrite) to replace it, or choose another --out.")
        if not resume and not overwrite:
            raise AnalyzeError(f"{out} exists; rerun with resume (the default) to add to it, or overwrite=True to replace it.")
        if prev == settings and resume:
            old.append(pq.read_table(out))
    if parts.exists():
        try:
            prev = json.loads((parts / "settings.json").read_text())
        except (OSError, ValueError):
            prev = None
        if prev != settings or not resume:
            shutil.rmtree(parts)
        else:
            old += [pq.read_table(p) for p in sorted(parts.glob("part-*.parquet"))]
    parts.mkdir(parents=True, exist_ok=True)
    if not (parts / "settings.json").exists():
        write_atomic(parts / "settings.json", sj.encode(), overwrite=True)
    done = _done_keys(old)
    todo = [r for r in records if r["key"] not in done]
    skipped = len(records) - len(todo)
    if skipped:
        log(f"analyze: skipping {skipped} of {len(records)} inputs already written with these settings")

    import torch

    cuda = torch.cuda.is_available() and device in ("auto", "cuda") and not in_process
    engine = "in-process" if in_process else ("ray " + (f"cluster {address}" if address else f"local, {workers} workers"))
    written, n_done, n_err = [], 0, 0
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="input", desc=f"analyze {analysis}", file=sys.stderr)
    t0 = time.perf_counter()
    shutdown = False
    try:
        if not todo:
            tables = iter(())
        elif in_process:
            stage = ModelStage(adapter, analysis, options)
            tables = _stages_in_process(todo, stage, analysis, options, adapter.image_size, fit, int(batch_size))
        else:
            shutdown = start_ray(workers, address)
            tables = _stages_ray(todo, model, analysis, options, adapter.image_size, fit, int(batch_size), workers,
                                 device, dtype, cuda)
        for i, t in enumerate(tables):
            if t.num_rows == 0:
                continue
            t = t.cast(schema(analysis))
            write_atomic(parts / f"part-{time.time_ns():020d}-{i:06d}.parquet", _table_bytes(t), durable=False)
            written.append(t)
            keys, errs = t.column("key").to_pylist(), t.column("error").to_pylist()
            n_new = len(set(keys))
            n_done += n_new
            n_err += len({k for k, e in zip(keys, errs) if e})
            if bar is not None:
                bar.update(n_new)
    finally:
        if bar is not None:
            bar.close()
        if shutdown:
            import ray

            ray.shutdown()
    seconds = time.perf_counter() - t0

    # merge: earlier rows (minus the inputs rerun now), the new parts; sorted so the file does not depend on scheduling
    new_keys = set()
    for t in written:
        new_keys.update(t.column("key").to_pylist())
    keep = [t.filter(pa.compute.invert(pa.compute.is_in(t.column("key"), value_set=pa.array(sorted(new_keys), pa.string()))))
            for t in old] if new_keys else old
    a = ANALYSES[analysis]
    merged = pa.concat_tables([t.cast(schema(analysis)) for t in keep + written] or [schema(analysis).empty_table()])
    order = [("path", "ascending")] + [(c, "ascending") for c in a.setting_columns]
    merged = merged.sort_by(order)
    meta = {"settings": settings, "versions": _versions("in-process" if in_process else "ray"), "engine": engine,
            "inputs": str(inputs) if not isinstance(inputs, (list, tuple)) else f"{len(inputs)} paths"}
    merged = merged.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    write_atomic(out, _table_bytes(merged), overwrite=True)
    shutil.rmtree(parts, ignore_errors=True)
    summary = AnalyzeSummary(str(out), len(records), skipped, n_done, n_err, merged.num_rows,
                             time.perf_counter() - t_start if not todo else seconds, engine)
    log(summary.text())
    return summary
