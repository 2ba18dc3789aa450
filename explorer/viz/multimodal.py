"""Figures for multimodal MAE reconstructions (pure: a MultiModalReconstruction in, plotly figures out).

* :func:`multimodal_figure` — one row per modality: original | what the model saw | reconstruction (visible
  pasted) | error per hidden patch; depth and spectrograms in colour maps with their range in the title.
* :func:`budget_curve` — a metric against one modality's visible share (from a list of reconstructions).

Depth uses the *turbo* map over a range shared by the original and the prediction (NaN = grey);
spectrograms use *magma* with low frequencies at the bottom; semantic maps one colour per class (the COCO panoptic
colours for MultiMAE's 133 classes) with a legend of the classes on screen.  Images go to the browser as PNG data URIs.
"""

from __future__ import annotations

import cv2
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, json_grid, upscale_factor
from ..modalities import COCO_PANOPTIC_CLASSES, COCO_PANOPTIC_COLOURS

GREY = 0.5
COLUMNS = ("original", "what the model saw", "reconstruction", "error per hidden patch")
_CMAPS = {"depth": cv2.COLORMAP_TURBO, "spectrogram": cv2.COLORMAP_MAGMA}


def value_range(result) -> tuple[float, float]:
    """The colour range of a depth / spectrogram row: 2nd–98th percentile of the known original and the prediction."""
    vals = np.concatenate([result.original[np.isfinite(result.original)].ravel(), result.prediction.ravel()])
    lo, hi = np.percentile(vals, [2, 98])
    return float(lo), float(max(hi, lo + 1e-6))


def colourise(values: np.ndarray, kind: str, vrange: tuple[float, float]) -> np.ndarray:
    """``(H, W)`` values → ``(H, W, 3)`` float RGB in [0, 1] with OpenCV's colour map for ``kind``; NaN → grey.

    Spectrograms ``(mels, frames)`` are flipped so the lowest mel bin is at the bottom.
    """
    lo, hi = vrange
    v = np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0, 1)
    rgb = cv2.applyColorMap((v * 255 + 0.5).astype(np.uint8), _CMAPS[kind])[..., ::-1].astype(np.float32) / 255
    rgb[~np.isfinite(values)] = GREY
    return rgb[::-1] if kind == "spectrogram" else rgb


def class_palette(classes: tuple[str, ...]) -> np.ndarray:
    """``(len(classes), 3)`` float RGB in [0, 1]: the COCO panoptic colours for those classes, otherwise evenly spread
    hues (golden-ratio steps) at two lightnesses."""
    if tuple(classes) == COCO_PANOPTIC_CLASSES:
        return np.asarray(COCO_PANOPTIC_COLOURS, np.float32) / 255
    k = np.arange(len(classes))
    hsv = np.stack([(k * 0.618034 % 1.0) * 180, np.full(len(k), 200), np.where(k % 2, 170, 235)], -1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255


def paint_classes(ids: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """``(H, W)`` class ids (float, NaN = unknown) → ``(H, W, 3)`` float RGB with :func:`class_palette`; NaN → grey."""
    pal = class_palette(classes)
    known = np.isfinite(ids)
    out = np.full((*ids.shape, 3), GREY, np.float32)
    out[known] = pal[np.clip(ids[known].astype(int), 0, len(pal) - 1)]
    return out


def class_legend(result, top: int = 8) -> str:
    """HTML: a coloured square and the name of the ``top`` classes covering most pixels of the original and the
    prediction (``"■ wall-other-merged ■ person … (+5 more)"``)."""
    s = result.spec
    vals = np.concatenate([result.original[np.isfinite(result.original)].ravel(), result.prediction.ravel()])
    ids, counts = np.unique(vals.astype(int), return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    pal = (class_palette(s.classes) * 255).round().astype(int)
    shown = " ".join(f"<span style='color:rgb({pal[c][0]},{pal[c][1]},{pal[c][2]})'>■</span> {s.classes[c]}"
                     for c in order[:top] if 0 <= c < len(s.classes))
    return shown + (f" (+{len(order) - top} more)" if len(order) > top else "")


def _frame(result, x: np.ndarray, frame: int) -> np.ndarray:
    return x[frame] if result.spec.kind == "video" else x


def _display(result, x: np.ndarray, frame: int, vrange) -> np.ndarray:
    x = _frame(result, x, frame)
    if result.spec.kind in ("image", "video"):
        return np.where(np.isfinite(x), np.clip(x, 0, 1), GREY).astype(np.float32)
    if result.spec.kind == "semantic":
        return paint_classes(x, result.spec.classes)
    return colourise(x, result.spec.kind, vrange)


def modality_panels(result, frame: int = 0) -> dict:
    """What one modality's row shows, as plain values (for in-place updates of a live figure):
    ``{"sources": [3 PNG data URIs], "error": nested lists, "title": str}``."""
    s = result.spec
    if s.kind == "video" and not 0 <= frame < s.shape[0]:
        raise IndexError(f"frame {frame} out of range: the clip has {s.shape[0]} frames")
    vr = value_range(result) if s.kind in _CMAPS else (0.0, 1.0)
    imgs = [_display(result, a, frame, vr) for a in (result.original, result.masked_input, result.pasted)]
    if not result.given:
        imgs[0] = imgs[1] = np.full_like(imgs[2], GREY)
    err = result.patch_error[frame // s.patch[0]] if s.kind == "video" else result.patch_error
    if s.kind == "spectrogram":
        err = err[::-1]
    vis, n = int(result.visible.sum()), s.num_patches
    m = result.metrics
    score = {"image": "psnr", "video": "psnr", "depth": "absrel", "spectrogram": "rmse_db", "semantic": "accuracy"}[s.kind]
    unit = {"psnr": " dB", "absrel": " AbsRel", "rmse_db": " dB RMSE", "accuracy": " pixel accuracy"}[score]
    what = f"{m[score]:.3g}{unit}" if score in m else "nothing hidden"
    rng = f" · colours {vr[0]:.3g}–{vr[1]:.3g} {s.unit}" if s.kind in _CMAPS else ""
    when = f" · frame {frame + 1}/{s.shape[0]}" if s.kind == "video" else ""
    legend = f"<br>{class_legend(result)}" if s.kind == "semantic" else ""
    return {"sources": [data_uri(i, min_side=160) for i in imgs], "error": json_grid(err),
            "title": f"{s.name}: {vis}/{n} patches visible ({vis / n:.0%}) · {what}{rng}{when}{legend}"}


#: pixels a row's title sits above its panels (clear of the panel letters an export adds at their top-left corners)
ROW_TITLE_LIFT = 16
#: the annotation name of a row title (paper styling lifts it above the panel letters)
ROW_TITLE = "row-title"


def multimodal_figure(rec, *, frame: int = 0, cell: int = 190) -> go.Figure:
    """One row per modality of ``rec``: original | what the model saw | reconstruction | error per hidden patch."""
    names = list(rec.results)
    rows = [modality_panels(rec[n], frame) for n in names]
    fig = make_subplots(rows=len(names), cols=4, horizontal_spacing=0.02, vertical_spacing=0.14)
    for k, (name, r) in enumerate(zip(names, rows), start=1):
        res = rec[name]
        shape = res.original.shape[1:3] if res.spec.kind == "video" else res.original.shape[:2]
        h, w = shape
        f = upscale_factor(h, w, 160)
        for c, src in enumerate(r["sources"], start=1):
            fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / f, dy=1 / f, name=f"{name} {COLUMNS[c - 1]}", hoverinfo="skip"),
                          row=k, col=c)
        gh, gw = np.asarray(r["error"], dtype=object).shape[:2] if r["error"] else (1, 1)
        fig.add_trace(go.Heatmap(z=r["error"], x0=w / gw / 2, dx=w / gw, y0=h / gh / 2, dy=h / gh, colorscale="Reds",
                                 showscale=False, name=f"{name} error",
                                 hovertemplate=("%{z:.0%} of pixels with the wrong class" if res.spec.kind == "semantic"
                                                else "RMSE %{z:.3g} " + res.spec.unit) + "<extra></extra>"),
                      row=k, col=4)
        top = fig.get_subplot(k, 1).yaxis.domain[1]
        # a line above the panels' tops, where exported figures put the panel letters (a, b, c …)
        fig.add_annotation(text=r["title"], x=0, y=top, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                           showarrow=False, font=dict(size=11), yshift=ROW_TITLE_LIFT, name=ROW_TITLE)
        for c in range(1, 5):
            fig.update_xaxes(range=[0, w], visible=False, constrain="domain", row=k, col=c)
            i = (k - 1) * 4 + c
            fig.update_yaxes(range=[h, 0], visible=False, scaleanchor=f"x{'' if i == 1 else i}", scaleratio=1,
                             constrain="domain", row=k, col=c)
    bottom = fig.get_subplot(len(names), 1).yaxis.domain[0]
    for c, label in enumerate(COLUMNS):  # under the last row: every panel's column named once
        dom = fig.get_subplot(len(names), c + 1).xaxis.domain
        fig.add_annotation(text=label, x=(dom[0] + dom[1]) / 2, y=bottom, xref="paper", yref="paper", yanchor="top",
                           showarrow=False, yshift=-2, font=dict(size=11))
    fig.update_layout(height=cell * len(names) + 90 + ROW_TITLE_LIFT, width=cell * 4 + 60,
                      margin=dict(l=10, r=10, t=50 + ROW_TITLE_LIFT, b=30),
                      title=dict(text=f"{rec.model_id} · seed {rec.seed}", x=0.01, y=0.995, font=dict(size=13)),
                      template="plotly_white")
    return fig


def budget_curve(recs: list, modality: str, scored: str, metric: str, *, baselines: dict[str, float] | None = None) -> go.Figure:
    """``metric`` of modality ``scored`` against the visible share of ``modality``, one point per reconstruction."""
    xs = [r.counts[modality] / r[modality].spec.num_patches for r in recs]
    ys = [r[scored].metrics.get(metric, np.nan) for r in recs]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", name="model"))
    for name, v in (baselines or {}).items():
        fig.add_hline(y=v, line_dash="dot", annotation_text=name, annotation_position="top left")
    fig.update_layout(xaxis_title=f"visible share of {modality}", yaxis_title=f"{scored} {metric}", height=300, width=480,
                      template="plotly_white", margin=dict(l=50, r=10, t=30, b=40))
    return fig
