"""Cross-modal reconstruction with a multimodal MAE: per-modality visible budgets → every modality predicted.

    rec = reconstruct_multimodal(mm, {"rgb": image, "depth": depth}, {"rgb": 1.0, "depth": 0.0}, seed=0)
    rec["depth"].prediction       # (64, 64) metres, predicted from RGB alone
    rec["depth"].metrics          # {"rmse": …, "absrel": …, "delta1": …} on hidden pixels with known depth
    rec.summary()                 # one line per modality

Budgets are ratios in [0, 1] or patch counts per modality, or ``total=`` patches split by a seeded
Dirichlet draw (MultiMAE).  Patches that are mostly unknown (NaN, e.g. invalid depth) are never shown, and
unknown values are left out of every metric.  The same inputs, budgets and seed give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import array_sha256
from ..masking.budgets import BudgetError, dirichlet_counts, visible_counts, visible_masks
from ..modalities import Modality

NAT_TO_DB = 10.0 / np.log(10.0)  # a natural-log power difference in decibels


class MultiModalInputError(ValueError):
    """Inputs that do not fit the model; the message says why."""


@dataclass(frozen=True)
class ModalityResult:
    """One modality of a reconstruction.

    Attributes:
        spec: the :class:`Modality`.
        original: ``spec.shape`` float32 (NaN = unknown; all NaN when the modality was not given).
        visible: ``(N,)`` bool, the patches the model saw.
        prediction: ``spec.shape`` float32, the model's output for every patch.
        patch_error: ``spec.grid`` float32 RMSE per hidden patch (semantic maps: the share of its pixels with the wrong
            class; NaN for visible or unknown patches).
        metrics: on hidden patches with known values (see :func:`modality_metrics`).
    """

    spec: Modality
    original: np.ndarray
    visible: np.ndarray
    prediction: np.ndarray
    patch_error: np.ndarray
    metrics: dict

    @property
    def given(self) -> bool:
        return bool(np.isfinite(self.original).any())

    @property
    def pasted(self) -> np.ndarray:
        """Prediction with the visible patches replaced by the input (what the MAE papers show)."""
        s = self.spec
        vis = s.unpatchify_mask(self.visible)
        return np.where(vis & np.isfinite(self.original), self.original, self.prediction).astype(np.float32)

    @property
    def masked_input(self) -> np.ndarray:
        """The input with hidden patches set to NaN (what the model saw)."""
        return np.where(self.spec.unpatchify_mask(self.visible), self.original, np.nan).astype(np.float32)


@dataclass(frozen=True)
class MultiModalReconstruction:
    """Result of :func:`reconstruct_multimodal`: per-modality results plus provenance.

    Attributes:
        results: name → :class:`ModalityResult`; counts: name → visible patches; seed; model_id;
        weights_sha256; input_sha256: name → hash of the given array (``""`` if not given); notes.
    """

    results: dict
    counts: dict
    seed: int
    model_id: str
    weights_sha256: str
    input_sha256: dict
    notes: tuple = field(default=())

    def __getitem__(self, name: str) -> ModalityResult:
        return self.results[name]

    def summary(self) -> str:
        """``"depth (6/64 visible): rmse 0.81 m, absrel 0.09 …"`` per modality."""
        lines = []
        for name, r in self.results.items():
            m = ", ".join(f"{k} {v:.3g}" for k, v in r.metrics.items() if k != "hidden_values")
            lines.append(f"{name} ({self.counts[name]}/{r.spec.num_patches} visible): {m or 'nothing hidden to score'}")
        return "\n".join(lines)


def modality_metrics(spec: Modality, truth: np.ndarray, pred: np.ndarray, hidden: np.ndarray) -> dict:
    """Errors on ``hidden`` (``spec.shape`` bool) values that are known.

    All: ``hidden_values``; all but semantic maps: ``rmse`` (in the modality's unit).  Image / video: ``psnr`` (dB,
    values in [0, 1]).  Depth: ``absrel`` (mean |d̂ − d| / d), ``delta1`` (share with max(d̂/d, d/d̂) < 1.25).
    Spectrogram: ``rmse_db`` (the RMSE of log power in decibels).  Semantic (class ids): ``accuracy`` (share of pixels
    with the right class) and ``miou`` (intersection over union averaged over the classes in the truth or the
    prediction there).
    """
    keep = hidden & np.isfinite(truth)
    if not keep.any():
        return {}
    t, p = truth[keep].astype(np.float64), pred[keep].astype(np.float64)
    if spec.kind == "semantic":
        classes = np.union1d(t, p)
        iou = [np.sum((t == c) & (p == c)) / np.sum((t == c) | (p == c)) for c in classes]
        return {"accuracy": float(np.mean(t == p)), "miou": float(np.mean(iou)), "hidden_values": int(keep.sum())}
    mse = float(np.mean((p - t) ** 2))
    out = {"rmse": float(np.sqrt(mse)), "hidden_values": int(keep.sum())}
    if spec.kind in ("image", "video"):
        out["psnr"] = float(10 * np.log10(1.0 / max(mse, 1e-12)))
    elif spec.kind == "depth":
        pp = np.maximum(p, 1e-3)
        out["absrel"] = float(np.mean(np.abs(pp - t) / t))
        out["delta1"] = float(np.mean(np.maximum(pp / t, t / pp) < 1.25))
    elif spec.kind == "spectrogram":
        out["rmse_db"] = out["rmse"] * NAT_TO_DB
    return out


def _patch_rmse(spec: Modality, truth: np.ndarray, pred: np.ndarray, hidden_tokens: np.ndarray) -> np.ndarray:
    import torch

    d = spec.patchify(torch.from_numpy((pred - truth)[None].astype(np.float32)))[0].numpy()
    n = np.isfinite(d).sum(1)
    if spec.kind == "semantic":  # the share of the patch's known pixels with the wrong class
        err = np.where(n > 0, np.nansum(d != 0, axis=1) / np.maximum(n, 1), np.nan)
        return np.where(hidden_tokens, err, np.nan).reshape(spec.grid).astype(np.float32)
    err = np.sqrt(np.where(n > 0, np.nansum(d ** 2, axis=1) / np.maximum(n, 1), np.nan))
    err = np.where(hidden_tokens, err, np.nan)
    return err.reshape(spec.grid).astype(np.float32)


def _check_inputs(adapter, inputs: dict) -> dict[str, np.ndarray]:
    names = [s.name for s in adapter.modalities]
    unknown = set(inputs) - set(names)
    if unknown:
        raise MultiModalInputError(f"Unknown modality {sorted(unknown)[0]!r}; {adapter.model_id} takes: {', '.join(names)}.")
    out = {}
    for s in adapter.modalities:
        x = inputs.get(s.name)
        if x is None:
            continue
        x = np.asarray(x, np.float32)
        if tuple(x.shape) != tuple(s.shape):
            raise MultiModalInputError(f"{s.name}: expected shape {s.shape}, got {tuple(x.shape)} (use the prepare_* helpers "
                                       "in explorer.multimodal.inputs to crop and resize).")
        if not np.isfinite(x).any():
            raise MultiModalInputError(f"{s.name}: no known value (all NaN or infinite).")
        out[s.name] = np.where(np.isfinite(x), x, np.nan).astype(np.float32)
    if not out:
        raise MultiModalInputError(f"No input given: pass at least one of {', '.join(names)}.")
    return out


def reconstruct_multimodal(adapter, inputs: dict[str, np.ndarray], budgets: dict[str, float | int] | None = None, *,
                           seed: int = 0, total: int | None = None, alpha: float = 1.0,
                           strategy: dict[str, str] | None = None) -> MultiModalReconstruction:
    """Mask each modality to its budget, run the model, and score every modality on what was hidden.

    Args:
        adapter: from :func:`explorer.multimodal.load_multimodal_model`.
        inputs: name → one sample in the modality's shape (``(64, 64, 3)`` RGB in [0, 1], ``(64, 64)`` depth in
            metres with NaN for unknown, ``(T, H, W, 3)`` video, ``(mels, frames)`` log-mel).  A modality left out
            can only be predicted (its budget must be 0).
        budgets: name → ratio in [0, 1] or patch count (missing = 0).  Exclusive with ``total``.
        total: visible patches split between the *given* modalities by Dirichlet(``alpha``) (MultiMAE).
        seed: which patches are shown (and the Dirichlet split).
        strategy: name → ``"random"`` or ``"tube"`` (video).
    Raises:
        MultiModalInputError / BudgetError: with a message for the user.
    """
    arrays = _check_inputs(adapter, inputs)
    specs = adapter.modalities
    notes = []
    if (budgets is None) == (total is None):
        raise BudgetError("Give either per-modality budgets or a total to split (not both).")
    if total is not None:
        given = [s for s in specs if s.name in arrays]
        counts = {s.name: 0 for s in specs} | dirichlet_counts(given, int(total), seed, alpha)
        notes.append("budget split by Dirichlet(%g): %s" % (alpha, ", ".join(f"{k} {v}" for k, v in counts.items())))
    else:
        counts = visible_counts(specs, budgets)
    missing = [k for k, v in counts.items() if v and k not in arrays]
    if missing:
        raise BudgetError(f"No {missing[0]} was given, so none of it can be shown: set its budget to 0 (it is then predicted).")
    import torch

    ineligible = {}
    for s in specs:
        if s.name in arrays:
            bad = s.unknown_patches(s.patchify(torch.from_numpy(arrays[s.name][None])))[0].numpy()
            if bad.any():
                ineligible[s.name] = bad
                notes.append(f"{s.name}: {int(bad.sum())} patches are mostly unknown and never shown")
    vis = visible_masks(specs, counts, seed, strategy=strategy, ineligible=ineligible)
    counts = {k: int(v.sum()) for k, v in vis.items()}
    pred = adapter.predict({k: v[None] for k, v in arrays.items()}, {k: v[None] for k, v in vis.items()})
    results = {}
    for s in specs:
        truth = arrays.get(s.name, np.full(s.shape, np.nan, np.float32))
        p = pred[s.name][0]
        hidden = ~s.unpatchify_mask(vis[s.name])
        results[s.name] = ModalityResult(s, truth, vis[s.name], p, _patch_rmse(s, truth, p, ~vis[s.name]),
                                         modality_metrics(s, truth, p, hidden))
    return MultiModalReconstruction(results, counts, int(seed), adapter.model_id, adapter.weights_sha256,
                                    {s.name: array_sha256(arrays[s.name]) if s.name in arrays else "" for s in specs}, tuple(notes))
