"""Judge a video MAE on held-out clips against non-learned fills of the same hidden tubelets.

    python -m explorer.training.video_evaluate data/models/mini-video-mae        # prints the table as JSON

For each clip, strategy and ratio: the model's masked-patch PSNR (all hidden patches of all clips pooled), the
baselines' (:func:`explorer.reconstruction.video.video_baseline_psnr`), and the **spread**: the standard deviation
of the predicted hidden pixels over that of the true ones (1 = as varied as the truth; a model that paints one flat
colour scores near 0).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from ..metrics import patch_mse, psnr_from_mse, upsample_mask
from ..reconstruction import baselines as B
from ..reconstruction.video import MEAN_FRAMES, NEAREST, TELEA_FRAMES, reconstruct_video

MODEL = "model"


def hidden_pixels(frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
    """``(K, 3)`` the pixels of ``frames`` ``(T, S, S, 3)`` under the hidden tubelets of ``mask`` ``(T / tubelet, g, g)``."""
    return np.concatenate([f[upsample_mask(mask[i // tubelet], patch)] for i, f in enumerate(frames)])


def judge(adapter, clips: dict[str, np.ndarray], ratio: float, strategy: str, seed: int = 0) -> dict:
    """Pooled masked-patch PSNR (dB) of the model and the fills, and the model's spread, over ``clips``.

    Args:
        clips: name → ``(T, S, S, 3)`` float frames in [0, 1] at the model's size.
    Returns ``{"psnr": {method: dB}, "spread": float, "truth_std": float, "ratio", "strategy", "clips"}``.
    """
    errs: dict[str, list] = {MODEL: [], TELEA_FRAMES: [], NEAREST: [], MEAN_FRAMES: []}
    pred_px, true_px = [], []
    for k, (name, frames) in enumerate(sorted(clips.items())):
        rec = reconstruct_video(adapter, frames, ratio=ratio, strategy=strategy, seed=seed + k)
        x, m, tub, p = rec.frames, rec.mask, rec.tubelet, rec.patch_size
        inpainted = B.video_telea_fill(x, m, tub, p)
        fills = {MODEL: rec.prediction, TELEA_FRAMES: inpainted, MEAN_FRAMES: B.video_mean_fill(x, m, tub, p),
                 NEAREST: B.nearest_frame_fill(x, m, tub, p, inpainted=inpainted)}
        for method, f in fills.items():
            errs[method] += [patch_mse(f[i], x[i], p)[m[i // tub]] for i in range(len(x))]
        pred_px.append(hidden_pixels(rec.prediction, m, tub, p))
        true_px.append(hidden_pixels(x, m, tub, p))
    pred, true = np.concatenate(pred_px), np.concatenate(true_px)
    return {"psnr": {k: psnr_from_mse(float(np.concatenate(v).mean())) for k, v in errs.items()},
            "spread": float(pred.std() / true.std()), "truth_std": float(true.std()), "ratio": float(ratio),
            "strategy": strategy, "clips": len(clips)}


def real_media_table(adapter, ratios=(0.9, 0.75, 0.5), strategies=("tube", "random"), per_video: int = 4) -> list[dict]:
    """:func:`judge` on the held-out real videos (:mod:`explorer.data.heldout_video`) at every ratio and strategy."""
    from ..data.heldout_video import heldout_clips

    clips = heldout_clips(frames=adapter.num_frames, size=adapter.image_size, per_video=per_video)
    return [judge(adapter, clips, r, s) for s in strategies for r in ratios]


if __name__ == "__main__":
    from ..models import load_model

    print(json.dumps(real_media_table(load_model(sys.argv[1] if len(sys.argv) > 1 else "mini-video-mae")), indent=1))
