"""Non-learned fills to judge a multimodal MAE against, scored exactly like the model.

    table = baseline_metrics(rec)     # {"training mean": {"depth": {...}}, "inpainting (visible patches)": {...}}

* **training mean** — every hidden value set to the modality's training mean (per channel): the
  "constant (mean depth)" baseline.  It needs no visible patch of that modality.  (MultiMAE's per-image standardised
  depth: the given map's own mean; semantic maps: none.)
* **inpainting (visible patches)** — OpenCV Telea inpainting from the modality's own visible patches (per
  frame for video, with the nearest visible frame first; semantic maps: the nearest visible pixel's class); only
  when some patch of that modality is visible.
Neither can use the *other* modality: that is what the model adds.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..reconstruction.baselines import nearest_frame_fill, telea_fill
from ..reconstruction.multimodal import modality_metrics


def mean_prediction(result) -> np.ndarray | None:
    """``spec.shape``: the training mean of each channel everywhere.  A depth map standardised per image (MultiMAE's,
    unit ``"… standardised per image"``) has no training mean in its units: the given map's own 10–90 % mean stands for
    it (what the model's output 0 means); a semantic map has none (``None``)."""
    s = result.spec
    if s.kind == "semantic":
        return None
    if s.kind == "depth" and "standardised per image" in s.unit:
        if not result.given:
            return None
        from ..models.multimae_epfl import depth_statistics

        return np.full(s.shape, depth_statistics(result.original)[0], np.float32)
    return np.broadcast_to(np.asarray(s.mean, np.float32) if s.channels > 1 else np.float32(s.mean[0]), s.shape).copy()


def _nearest_label(x: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Class ids: every hidden or unknown pixel takes the class of the nearest visible known pixel."""
    from scipy.ndimage import distance_transform_edt

    holes = hidden | ~np.isfinite(x)
    _d, (iy, ix) = distance_transform_edt(holes, return_indices=True)
    return x[iy, ix].astype(np.float32)


def _inpaint_plane(x: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Telea inpainting of one float plane through 16-bit (OpenCV's float path overshoots the known range)."""
    holes = hidden | ~np.isfinite(x)
    lo, hi = float(np.min(x[~holes])), float(np.max(x[~holes]))
    scale = 65535.0 / max(hi - lo, 1e-12)
    q = np.round((np.where(holes, lo, x) - lo) * scale).clip(0, 65535).astype(np.uint16)
    out = cv2.inpaint(q, holes.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    return (out.astype(np.float32) / scale + lo).astype(np.float32)


def inpaint_prediction(result) -> np.ndarray | None:
    """``spec.shape``: hidden values inpainted from the visible patches (``None`` when none is visible)."""
    s = result.spec
    if not result.visible.any() or not result.given:
        return None
    hidden = ~s.unpatchify_mask(result.visible)
    x = result.original
    if s.kind == "video":
        mask = (~result.visible).reshape(s.grid)
        return nearest_frame_fill(np.nan_to_num(x, nan=0.5), mask, s.patch[0], s.patch[1])
    if s.kind == "image":
        return telea_fill(np.nan_to_num(x, nan=0.5), (~result.visible).reshape(s.grid), s.patch[0])
    if s.kind == "semantic":
        return _nearest_label(x, hidden)
    return _inpaint_plane(x, hidden)


def baseline_metrics(rec) -> dict[str, dict[str, dict]]:
    """Baseline name → modality → the metrics :func:`modality_metrics` gives, on the same hidden values as the model."""
    out: dict[str, dict[str, dict]] = {"training mean": {}, "inpainting (visible patches)": {}}
    for name, r in rec.results.items():
        hidden = ~r.spec.unpatchify_mask(r.visible)
        m = mean_prediction(r)
        if m is not None:
            out["training mean"][name] = modality_metrics(r.spec, r.original, m, hidden)
        p = inpaint_prediction(r)
        if p is not None:
            out["inpainting (visible patches)"][name] = modality_metrics(r.spec, r.original, p, hidden)
    return out
