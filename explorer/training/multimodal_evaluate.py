"""Held-out evaluation of a multimodal MAE under fixed budget protocols, against non-learned baselines.

    python -m explorer.training.multimodal_evaluate --model mini-rgbd-mae --samples 200

A protocol is a budget (visible share per modality) and the modality it scores.  Each is scored on the
same hidden values for the model and for the baselines (:mod:`explorer.multimodal.baselines`); results are
means over held-out samples (generated seeds from 10,000,000; the motorcycle's held-out crops).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..multimodal.baselines import baseline_metrics
from ..reconstruction.multimodal import modality_metrics, reconstruct_multimodal
from .tasks import HELD_OUT_SEED

#: task → (label, budgets, scored modality, metric) per protocol.
PROTOCOLS = {
    "rgbd": [
        ("depth from RGB alone", {"rgb": 1.0}, "depth", "absrel"),
        ("depth from RGB + 10% of depth", {"rgb": 1.0, "depth": 0.1}, "depth", "absrel"),
        ("depth from 10% of depth alone", {"depth": 0.1}, "depth", "absrel"),
        ("RGB from depth alone", {"depth": 1.0}, "rgb", "psnr"),
        ("RGB from 25% RGB + 25% depth", {"rgb": 0.25, "depth": 0.25}, "rgb", "psnr"),
        ("RGB from 25% RGB alone", {"rgb": 0.25}, "rgb", "psnr"),
    ],
    "audio-visual": [
        ("sound from video alone", {"video": 1.0}, "audio", "rmse_db"),
        ("sound from 20% of sound + all video", {"video": 1.0, "audio": 0.2}, "audio", "rmse_db"),
        ("sound from 20% of sound alone", {"audio": 0.2}, "audio", "rmse_db"),
        ("video from sound alone", {"audio": 1.0}, "video", "psnr"),
        ("video from 10% of video + all sound", {"video": 0.1, "audio": 1.0}, "video", "psnr"),
        ("video from 10% of video alone", {"video": 0.1}, "video", "psnr"),
    ],
}


def held_out(adapter, n: int, kind: str = "generated") -> list[dict]:
    """``n`` held-out inputs: generated rooms / clips, (``kind="motorcycle"``) the motorcycle's held-out crops, or
    (``kind="speech"``) held-out real speech (Asterisk prompts never trained on, with a still frame)."""
    from ..multimodal.inputs import sample_inputs

    if kind == "speech":
        from .tasks import held_out_speech

        return held_out_speech(n)
    if kind == "motorcycle":
        return [sample_inputs(adapter, f"motorcycle:{i}")[0] for i in range(n)]
    prefix = "room" if adapter.task == "rgbd" else "clip"
    return [sample_inputs(adapter, f"{prefix}:{HELD_OUT_SEED + i}")[0] for i in range(n)]


def evaluate(adapter, samples: list[dict], protocols=None) -> dict:
    """Mean metric per protocol for the model and each baseline (and, for the depth/sound-alone protocols of the
    same sample, the model scored on the *same* hidden values as the mixed budget).

    Returns ``{label: {"metric", "modality", "model", "<baseline>": value, ...}}``.
    """
    protocols = protocols or PROTOCOLS[adapter.task]
    out = {}
    for label, budgets, scored, metric in protocols:
        vals: dict[str, list] = {"model": []}
        for i, x in enumerate(samples):
            rec = reconstruct_multimodal(adapter, x, budgets, seed=i)
            vals["model"].append(rec[scored].metrics.get(metric, np.nan))
            for b, m in baseline_metrics(rec).items():
                if scored in m and metric in m[scored]:
                    vals.setdefault(b, []).append(m[scored][metric])
        out[label] = {"metric": metric, "modality": scored, "budgets": budgets, "samples": len(samples)} | {
            k: float(np.nanmean(v)) for k, v in vals.items() if len(v) == len(samples)}
    return out


def same_pixels_gain(adapter, samples: list[dict], scored: str, base: dict, more: dict, metric: str) -> dict:
    """Does adding visible patches help on the *same* hidden values?  Both budgets share a seed, so the masks are
    nested and the larger budget's hidden values are a subset of the smaller's; both are scored on that subset."""
    a, b = [], []
    for i, x in enumerate(samples):
        r_more = reconstruct_multimodal(adapter, x, more, seed=i)
        r_base = reconstruct_multimodal(adapter, x, base, seed=i)
        res = r_more[scored]
        hidden = ~res.spec.unpatchify_mask(res.visible)
        a.append(modality_metrics(res.spec, res.original, r_base[scored].prediction, hidden)[metric])
        b.append(res.metrics[metric])
    return {"metric": metric, "without": float(np.mean(a)), "with": float(np.mean(b)), "samples": len(samples)}


def object_pixels(adapter, n: int, budgets_list=None) -> dict:
    """Depth AbsRel on the generated rooms' *object* pixels only (objects are few pixels; the floor and wall dominate
    the image-wide mean), for depth from RGB alone and with 10 % of depth, against the training-mean depth."""
    from ..data.rgbd import make_rgbd_scene

    budgets_list = budgets_list or {"depth from RGB alone": {"rgb": 1.0}, "depth from RGB + 10% of depth": {"rgb": 1.0, "depth": 0.1}}
    spec = adapter.spec("depth")
    out = {}
    for label, budgets in budgets_list.items():
        model, const, count = [], [], 0
        for i in range(n):
            s = make_rgbd_scene(HELD_OUT_SEED + i, spec.shape[0])
            obj = np.zeros(spec.shape, bool)
            for o in s.objects:
                obj |= o.mask
            rec = reconstruct_multimodal(adapter, {"rgb": s.image, "depth": s.depth}, budgets, seed=i)
            keep = obj & ~spec.unpatchify_mask(rec["depth"].visible)
            if not keep.any():
                continue
            count += 1
            model.append(modality_metrics(spec, s.depth, rec["depth"].prediction, keep)["absrel"])
            const.append(modality_metrics(spec, s.depth, np.full(spec.shape, spec.mean[0], np.float32), keep)["absrel"])
        out[label] = {"metric": "absrel", "modality": "depth (object pixels)", "budgets": budgets, "samples": count,
                      "model": float(np.mean(model)), "training mean": float(np.mean(const))}
    return out


def scaled_rooms(adapter, n: int, factor: float) -> list[dict]:
    """``n`` held-out generated rooms (seeds from 10,000,000) with their depth multiplied by ``factor`` (RGB as drawn)."""
    return [{"rgb": x["rgb"], "depth": x["depth"] * np.float32(factor)} for x in held_out(adapter, n)]


def visible_median_prediction(result) -> np.ndarray | None:
    """``spec.shape``: the median of the modality's visible known values everywhere (``None`` when none is visible) —
    the baseline that knows the visible depth's scale and nothing else."""
    s = result.spec
    vis = s.unpatchify_mask(result.visible) & np.isfinite(result.original)
    if not vis.any():
        return None
    return np.full(s.shape, float(np.median(result.original[vis])), np.float32)


def real_media(adapter, samples: list[dict], budgets: dict, scored: str, metric: str) -> dict:
    """One budget on ``samples``, scored on ``scored``'s hidden known values: the model's mean ``metric``, the baselines'
    (training mean, OpenCV inpainting, and for depth the visible median), the **spread** (mean over samples of the
    prediction's standard deviation over the hidden values ÷ the truth's: ≪ 1 means it predicts a constant) and for
    depth the **scale** (median over samples of median(prediction / truth) on the hidden values).

    Returns ``{"metric", "modality", "budgets", "samples", "model", "<baseline>", "spread", "scale ratio"}``.
    """
    vals: dict[str, list] = {"model": []}
    spread_p, spread_t, ratios = [], [], []
    for i, x in enumerate(samples):
        rec = reconstruct_multimodal(adapter, x, budgets, seed=i)
        r = rec[scored]
        keep = ~r.spec.unpatchify_mask(r.visible) & np.isfinite(r.original)
        vals["model"].append(r.metrics[metric])
        spread_p.append(float(np.std(r.prediction[keep])))
        spread_t.append(float(np.std(r.original[keep])))
        if r.spec.kind == "depth":
            ratios.append(float(np.median(r.prediction[keep] / r.original[keep])))
            med = visible_median_prediction(r)
            if med is not None:
                vals.setdefault("visible median", []).append(modality_metrics(r.spec, r.original, med, ~r.spec.unpatchify_mask(r.visible))[metric])
        for b, m in baseline_metrics(rec).items():
            if scored in m and metric in m[scored]:
                vals.setdefault(b, []).append(m[scored][metric])
    out = {"metric": metric, "modality": scored, "budgets": budgets, "samples": len(samples)}
    out |= {k: float(np.mean(v)) for k, v in vals.items() if len(v) == len(samples)}
    out["spread"] = float(np.mean(spread_p) / max(np.mean(spread_t), 1e-12))
    if ratios:
        out["scale ratio"] = float(np.median(ratios))
    return out


def ratio_sweep(adapter, samples: list[dict], scored: str, others: dict, shown=(0.1, 0.25, 0.5), metric: str = "absrel") -> dict:
    """The model's mean ``metric`` on ``scored`` with ``shown`` shares of it visible (90 % → 75 % → 50 % hidden), the
    ``others`` budgets fixed; the same seeds, so the masks are nested.  Returns ``{share: value}``."""
    out = {}
    for v in shown:
        out[float(v)] = float(np.mean([reconstruct_multimodal(adapter, x, others | {scored: v}, seed=i)[scored].metrics[metric]
                                       for i, x in enumerate(samples)]))
    return out


def main(argv=None) -> None:
    from ..models.registry import load_multimodal_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mini-rgbd-mae")
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args(argv)
    mm = load_multimodal_model(args.model, device="cpu")
    print(json.dumps(evaluate(mm, held_out(mm, args.samples)), indent=1))


if __name__ == "__main__":
    main()
