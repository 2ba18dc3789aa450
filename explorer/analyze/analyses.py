"""The analyses ``explorer analyze`` runs: a registry of name → :class:`Analysis` (options, model step, rows).

- ``mae-sweep``: masked-patch PSNR and SSIM per ratio × strategy under nested masks, exactly
  :func:`explorer.reconstruct_sweep`'s forward (``adapter.forward_masks``) and
  :meth:`explorer.reconstruction.Reconstruction.psnr_masked`.
- ``heads``: mean attention distance (pixels) and entropy (nats) per layer × head, from
  :func:`explorer.attention.attention_maps` (``head_distance()`` / ``head_entropy()``, notebook 03's head summary).
- ``faithfulness``: deletion / insertion AUC per explanation method (:func:`explorer.attention.explain` +
  :func:`explorer.attention.faithfulness.deletion_insertion`), with the random orders' mean AUCs as reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

#: columns every analysis has, first
BASE_COLUMNS = [("key", pa.string()), ("path", pa.string()), ("label", pa.string()), ("input_sha256", pa.string()),
                ("error", pa.string())]


@dataclass(frozen=True)
class Analysis:
    """One analysis: its options (defaults), its model step and its rows.

    Attributes:
        name: CLI name.
        defaults: every option and its default (unknown options are refused).
        columns: ``[(name, pyarrow type)]`` of the rows after :data:`BASE_COLUMNS`.
        model_step: ``(adapter, pixels (S, S, 3), options) → {name: array}`` (runs in the model actor).
        empty_output: ``(adapter, options) → {name: zeros}`` with the shapes of ``model_step``'s outputs.
        metric_rows: ``(item, options) → [row dict]`` (runs in a CPU task); ``item`` holds one input's batch values.
        keeps_pixels: the metric step needs the fitted pixels.
        setting_columns: columns that, with ``path``, identify a row (the sort order of the output).
    """

    name: str
    defaults: dict
    columns: list
    model_step: Callable
    empty_output: Callable
    metric_rows: Callable
    keeps_pixels: bool = False
    setting_columns: tuple = field(default_factory=tuple)


# ---------------------------------------------------------------------------- mae-sweep
def _sweep_masks(grid, strategy: str, seed: int, ratios) -> np.ndarray:
    from ..masking import mask_from_order, masking_order

    order = masking_order(grid, strategy, seed)
    return np.stack([mask_from_order(order, grid, r) for r in ratios])


def _sweep_model(adapter, pixels, o) -> dict:
    if getattr(adapter, "reconstructs", None) != "image":
        raise ValueError(f"{adapter.model_id!r} is not a masked autoencoder of images; mae-sweep needs one (mini-mae, "
                         "facebook/vit-mae-base).")
    preds = [adapter.forward_masks(pixels, _sweep_masks(adapter.grid, s, o["seed"], o["ratios"]))
             for s in o["strategies"]]
    return {"pred": np.stack(preds).astype(np.float32)}  # (K, R, S, S, 3)


def _sweep_empty(adapter, o) -> dict:
    S = adapter.image_size
    return {"pred": np.zeros((len(o["strategies"]), len(o["ratios"]), S, S, 3), np.float32)}


def masked_ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, patch: int) -> float:
    """SSIM over the hidden patches: scikit-image's SSIM map (7×7 window, data range 1, per channel) of ``pred``
    against ``target`` ``(H, W, 3)``, averaged over hidden pixels and channels; ``nan`` when nothing is hidden."""
    from skimage.metrics import structural_similarity

    from ..metrics import upsample_mask

    m = upsample_mask(np.asarray(mask, bool), patch)
    if not m.any():
        return float("nan")
    _, smap = structural_similarity(np.asarray(pred, np.float64), np.asarray(target, np.float64), data_range=1.0,
                                    channel_axis=2, full=True)
    return float(smap[m].mean())


def _sweep_rows(item, o) -> list:
    from ..metrics import masked_psnr

    pixels, patch = item["pixels"], int(item["patch_size"])
    grid = (pixels.shape[0] // patch, pixels.shape[1] // patch)
    rows = []
    for k, s in enumerate(o["strategies"]):
        masks = _sweep_masks(grid, s, o["seed"], o["ratios"])
        for r, (ratio, mask) in enumerate(zip(o["ratios"], masks)):
            pred = np.clip(item["pred"][k, r], 0.0, 1.0).astype(np.float32)
            rows.append({"strategy": s, "ratio": float(ratio), "seed": int(o["seed"]), "hidden_fraction": float(mask.mean()),
                         "psnr_masked": masked_psnr(pred, pixels, mask, patch),
                         "ssim_masked": masked_ssim(pred, pixels, mask, patch)})
    return rows


# ---------------------------------------------------------------------------- heads
def _heads_model(adapter, pixels, o) -> dict:
    from ..attention import attention_maps

    maps = attention_maps(adapter, pixels, fit="center-crop")
    return {"distance": maps.head_distance().astype(np.float64), "entropy": maps.head_entropy().astype(np.float64)}


def _heads_empty(adapter, o) -> dict:
    L, H = adapter.num_layers, adapter.num_heads
    return {"distance": np.zeros((L, H)), "entropy": np.zeros((L, H))}


def _heads_rows(item, o) -> list:
    d, e = item["distance"], item["entropy"]
    return [{"layer": int(layer), "head": int(h), "distance_px": float(d[layer, h]), "entropy_nats": float(e[layer, h])}
            for layer in range(d.shape[0]) for h in range(d.shape[1])]


# ---------------------------------------------------------------------------- faithfulness
def _faith_model(adapter, pixels, o) -> dict:
    from ..attention import explain
    from ..attention.faithfulness import deletion_insertion

    out = []
    for i, method in enumerate(o["methods"]):
        rel = explain(adapter, pixels, method)
        c = deletion_insertion(adapter, pixels, rel.map, steps=o["steps"], seed=o["seed"], random_orders=o["random_orders"])
        out.append([c.deletion_auc, c.insertion_auc, c.random_deletion_auc, c.random_insertion_auc])
    return {"aucs": np.asarray(out, np.float64)}  # (M, 4)


def _faith_empty(adapter, o) -> dict:
    return {"aucs": np.zeros((len(o["methods"]), 4))}


def _faith_rows(item, o) -> list:
    a = item["aucs"]
    return [{"method": m, "steps": int(o["steps"]), "seed": int(o["seed"]), "deletion_auc": float(a[i, 0]),
             "insertion_auc": float(a[i, 1]), "random_deletion_auc": float(a[i, 2]), "random_insertion_auc": float(a[i, 3])}
            for i, m in enumerate(o["methods"])]


ANALYSES: dict[str, Analysis] = {
    "mae-sweep": Analysis(
        "mae-sweep", {"ratios": (0.25, 0.5, 0.75, 0.9), "strategies": ("random", "block", "grid"), "seed": 0},
        [("strategy", pa.string()), ("ratio", pa.float64()), ("seed", pa.int64()), ("hidden_fraction", pa.float64()),
         ("psnr_masked", pa.float64()), ("ssim_masked", pa.float64())],
        _sweep_model, _sweep_empty, _sweep_rows, keeps_pixels=True, setting_columns=("strategy", "ratio")),
    "heads": Analysis(
        "heads", {},
        [("layer", pa.int64()), ("head", pa.int64()), ("distance_px", pa.float64()), ("entropy_nats", pa.float64())],
        _heads_model, _heads_empty, _heads_rows, setting_columns=("layer", "head")),
    "faithfulness": Analysis(
        "faithfulness", {"methods": ("rollout", "relevance"), "steps": 10, "seed": 0, "random_orders": 20},
        [("method", pa.string()), ("steps", pa.int64()), ("seed", pa.int64()), ("deletion_auc", pa.float64()),
         ("insertion_auc", pa.float64()), ("random_deletion_auc", pa.float64()), ("random_insertion_auc", pa.float64())],
        _faith_model, _faith_empty, _faith_rows, setting_columns=("method",)),
}


def schema(analysis: str) -> pa.Schema:
    """The Parquet schema of ``analysis``' rows (without the run's metadata)."""
    return pa.schema(BASE_COLUMNS + ANALYSES[analysis].columns)


def rows_table(analysis: str, rows: list) -> pa.Table:
    """``rows`` (dicts; missing columns are null) → a table in :func:`schema` order."""
    sch = schema(analysis)
    return pa.Table.from_pylist([{n: r.get(n) for n in sch.names} for r in rows], schema=sch)


def resolve_options(analysis: str, options: "dict | None") -> dict:
    """``options`` over the analysis' defaults; lists become tuples, unknown names are refused (ValueError)."""
    if analysis not in ANALYSES:
        raise ValueError(f"Unknown analysis {analysis!r}; choose one of {', '.join(ANALYSES)}.")
    a = ANALYSES[analysis]
    options = dict(options or {})
    unknown = sorted(set(options) - set(a.defaults))
    if unknown:
        raise ValueError(f"{analysis} has no option {', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(a.defaults) or 'none'}.")
    out = {**a.defaults, **options}
    for k, v in out.items():
        if isinstance(v, (list, tuple)):
            out[k] = tuple(float(x) if k == "ratios" else x for x in v)
    if analysis == "mae-sweep":
        from ..masking import STRATEGIES

        odd = [s for s in out["strategies"] if s not in STRATEGIES or s == "manual"]
        if odd:
            raise ValueError(f"Unknown strategies {odd}; choose from {', '.join(x for x in STRATEGIES if x != 'manual')}.")
        bad = [r for r in out["ratios"] if not 0.0 < r < 1.0]
        if bad:
            raise ValueError(f"Ratios must lie strictly between 0 and 1, got {bad}.")
    return out
