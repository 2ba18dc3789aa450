"""The three stages of an analysis run, as plain functions over batches (Ray Data's ``numpy`` batch format).

A batch is ``dict[str, np.ndarray]`` with one entry per input: ``path``, ``label``, ``input_sha256``, ``key``.

- :func:`decode_batch` (CPU task): reads and fits each image (:func:`explorer.load_image`,
  :func:`explorer.preprocess.fit_image`) → adds ``pixels`` ``(N, S, S, 3)`` float32 and ``error`` ``(N,)`` str
  (``""`` when the image decoded; the pixels of a failed input are zeros).
- :class:`ModelStage` (actor: one model per actor, loaded once): the analysis' model outputs per input, e.g.
  ``pred`` ``(N, K, R, S, S, 3)`` for ``mae-sweep``; an exception for one input becomes its ``error``.
- :func:`metrics_batch` (CPU task): one row per input × setting → a :class:`pyarrow.Table` in the analysis'
  schema (:func:`explorer.analyze.analyses.schema`).

The same functions run inside Ray (:func:`explorer.analyze.run`) and in one process (``in_process=True``), so both
give the same rows.
"""

from __future__ import annotations

import numpy as np

from .analyses import ANALYSES, rows_table


def decode_batch(batch: dict, *, size: int, fit: str, max_pixels: "int | None" = None) -> dict:
    """Decode and fit each ``batch["path"]`` to ``(size, size, 3)``.

    Returns the batch with ``pixels`` ``(N, size, size, 3)`` float32 in [0, 1] and ``error`` ``(N,)`` str added.
    An input that cannot be read or decoded keeps zero pixels and the reason in ``error``; nothing is raised.
    """
    from ..io import load_image
    from ..preprocess import fit_image

    paths = [str(p) for p in batch["path"]]
    pixels = np.zeros((len(paths), size, size, 3), np.float32)
    errors = []
    for i, p in enumerate(paths):
        try:
            img = load_image(p, **({"max_pixels": max_pixels} if max_pixels else {}))
            pixels[i] = fit_image(img.pixels, size, fit).pixels
            errors.append("")
        except Exception as e:  # noqa: BLE001 - any failure is the input's row, never the run's crash
            errors.append(f"{type(e).__name__}: {e}" if not str(e).startswith(type(e).__name__) else str(e))
    out = dict(batch)
    out["pixels"] = pixels
    out["error"] = np.array(errors, dtype=object)
    return out


class ModelStage:
    """The model of a run, loaded once per actor; calling it runs the analysis' model step on a decoded batch.

    Args:
        model: a name / hub id / folder for :func:`explorer.load_model`, or an adapter already loaded (in-process).
        analysis: a name of :data:`explorer.analyze.analyses.ANALYSES`.
        options: the analysis' complete options (defaults filled in).
        device, dtype: as :func:`explorer.load_model` takes them (``"bfloat16"`` for bf16 on a GPU).
        threads: torch CPU threads of this actor (``None``: torch's default).
    """

    def __init__(self, model, analysis: str, options: dict, device: str = "auto", dtype: str = "float32",
                 threads: "int | None" = None):
        import torch

        from ..models import load_model

        if threads:
            torch.set_num_threads(int(threads))
        self.adapter = load_model(model, device=device, dtype=dtype) if isinstance(model, str) else model
        self.analysis = ANALYSES[analysis]
        self.options = dict(options)

    def __call__(self, batch: dict) -> dict:
        """``batch`` from :func:`decode_batch` → the same batch plus the analysis' model outputs."""
        n = len(batch["path"])
        errors = list(batch["error"])
        outs: "list[dict | None]" = []
        for i in range(n):
            if errors[i]:
                outs.append(None)
                continue
            try:
                outs.append(self.analysis.model_step(self.adapter, batch["pixels"][i], self.options))
            except Exception as e:  # noqa: BLE001 - the input's row says what went wrong
                errors[i] = f"{type(e).__name__}: {e}"
                outs.append(None)
        template = next((o for o in outs if o is not None), None)
        if template is None:  # nothing succeeded: the shapes come from a zero-sized description
            template = self.analysis.empty_output(self.adapter, self.options)
        out = {k: v for k, v in batch.items() if k != "pixels" or self.analysis.keeps_pixels}
        for name, value in template.items():
            arr = np.zeros((n,) + np.shape(value), np.asarray(value).dtype)
            for i, o in enumerate(outs):
                if o is not None:
                    arr[i] = o[name]
            out[name] = arr
        out["error"] = np.array(errors, dtype=object)
        out["patch_size"] = np.full(n, int(self.adapter.patch_size))
        return out


def metrics_batch(batch: dict, *, analysis: str, options: dict):
    """Model outputs of a batch → :class:`pyarrow.Table`, one row per input × setting (error inputs: one row)."""
    a = ANALYSES[analysis]
    rows = []
    for i in range(len(batch["path"])):
        base = {"key": str(batch["key"][i]), "path": str(batch["path"][i]), "label": str(batch["label"][i]) or None,
                "input_sha256": str(batch["input_sha256"][i]), "error": str(batch["error"][i]) or None}
        if base["error"]:
            rows.append(base)
            continue
        item = {k: v[i] for k, v in batch.items()}
        for r in a.metric_rows(item, options):
            rows.append({**base, **r})
    return rows_table(analysis, rows)
