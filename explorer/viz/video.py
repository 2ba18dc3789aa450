"""Figures for masked video reconstructions (pure: a VideoReconstruction in, plotly figures out).

* :func:`video_frame_figure` — one frame: original | masked input | reconstruction (visible pasted) | error.
* :func:`filmstrip` — every frame (or every ``step``-th) as rows original / masked / model / the non-learned fills.
* :func:`psnr_per_frame_figure` — masked-patch PSNR per frame, with the clip's overall value.
* :func:`ratio_curve` — the clip's masked-patch PSNR against the masking ratio, with the non-learned baselines.
* :func:`ratio_marker` — that curve's marker of the ratio on screen (line, ring on the curve, value), as layout entries.
* :func:`frames_figure` — chosen frames as rows of those four panels (for papers).
* :func:`sampling_figure` — which frames of the clip the model reads, on a time line.

Images go to the browser as PNG data URIs (small payloads), never as per-pixel heatmaps.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, json_grid, upscale_factor
from .mae import MODEL_STYLE, quality_curves

GREY = 0.5


def masked_frame(rec, i: int) -> np.ndarray:
    """``(S, S, 3)``: frame ``i`` with its hidden patches grey (what the encoder sees)."""
    p = rec.patch_size
    px = np.kron(rec.frame_mask(i), np.ones((p, p), bool))
    out = rec.frames[i].copy()
    out[px] = GREY
    return out


def _axes(fig, S, rows, cols):
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            i = (r - 1) * cols + c
            fig.update_xaxes(range=[0, S], visible=False, constrain="domain", row=r, col=c)
            fig.update_yaxes(range=[S, 0], visible=False, scaleanchor=f"x{'' if i == 1 else i}", scaleratio=1,
                             constrain="domain", row=r, col=c)


def frame_panels(rec, i: int) -> dict:
    """What the four panels of frame ``i`` show, as plain values (for in-place updates of a live figure):
    ``{"sources": [3 PNG data URIs], "error": (g, g) nested lists, "title": str, "error_title": str}``."""
    if not 0 <= i < len(rec.frames):
        raise IndexError(f"frame {i} out of range: the clip has {len(rec.frames)} frames")
    S, p = rec.frames.shape[1], rec.patch_size
    g = S // p
    err = ((rec.prediction[i] - rec.frames[i]) ** 2).mean(-1).reshape(g, p, g, p).mean((1, 3))
    err[~rec.frame_mask(i)] = np.nan
    psnr = rec.psnr_per_frame[i]
    return {"sources": [data_uri(img, min_side=160) for img in (rec.frames[i], masked_frame(rec, i), rec.prediction[i])],
            "error": json_grid(err),
            "title": f"frame {i + 1} of {len(rec.frames)} · {rec.strategy} masking, ratio {rec.ratio:.2f}",
            "error_title": f"error ({psnr:.1f} dB)" if np.isfinite(psnr) else "error (nothing hidden)"}


def video_frame_figure(rec, i: int, *, cell: int = 220) -> go.Figure:
    """Frame ``i`` of ``rec``: original | masked input | reconstruction | per-patch error (MSE on hidden patches)."""
    v = frame_panels(rec, i)
    S, p = rec.frames.shape[1], rec.patch_size
    g = S // p
    fig = make_subplots(rows=1, cols=4, subplot_titles=["original", "masked input", "reconstruction", v["error_title"]],
                        horizontal_spacing=0.02)
    k = upscale_factor(S, S, 160)
    for c, src in enumerate(v["sources"], start=1):
        fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), 1, c)
    fig.add_trace(go.Heatmap(z=v["error"], x=(np.arange(g) + 0.5) * p, y=(np.arange(g) + 0.5) * p, colorscale="Viridis",
                             colorbar=dict(title=dict(text="MSE", side="right"), thickness=10),
                             hovertemplate="MSE %{z:.4f}<extra></extra>"), 1, 4)
    _axes(fig, S, 1, 4)
    fig.update_layout(title=dict(text=v["title"], font=dict(size=13)),
                      width=4 * cell + 80, height=cell + 70, margin=dict(l=10, r=10, t=60, b=10), template="plotly_white")
    return fig


THUMB = 96  # filmstrip thumbnails are encoded at most this many pixels wide (the cells are 90 px)


def filmstrip_rows(rec) -> list[tuple[str, "callable"]]:
    """The filmstrip's rows as ``(title, frame index → (S, S, 3) image)``: original, masked input, the model, then the
    non-learned fills the reconstruction offers (``rec.fills_to_show``: per-frame Telea, and the copy from the nearest
    visible frame where there is one)."""
    rows = [("original", lambda i: rec.frames[i]), ("masked", lambda i: masked_frame(rec, i)),
            ("model", lambda i: rec.prediction[i])]
    for title, fill, _db in getattr(rec, "fills_to_show", None) or []:
        rows.append((title, lambda i, f=fill: f[i]))
    return rows


def filmstrip_sources(rec, *, step: int = 1) -> list[str]:
    """The filmstrip's PNG data URIs in trace order (rows of :func:`filmstrip_rows`, then frames):
    frames larger than :data:`THUMB` are reduced first (area average), so a 16 × 224² clip stays a small payload."""
    import cv2

    idx = list(range(0, len(rec.frames), max(1, int(step))))
    S = rec.frames.shape[1]

    def thumb(img):
        return cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA) if S > THUMB else img

    return [data_uri(thumb(get(i)), min_side=64) for _, get in filmstrip_rows(rec) for i in idx]


PAPER_ROW_TITLES = {"Telea (per frame)": "Telea", "nearest visible frame": "nearest"}


def filmstrip_psnr_note(rec) -> str:
    """One line for a caption: the masked-patch PSNR of the model and of each fill shown in the filmstrip."""
    parts = [f"model {rec.psnr_masked:.1f} dB"] + [f"{t} {v:.1f} dB" for t, _f, v in getattr(rec, "fills_to_show", None) or []]
    return "masked-patch PSNR on this clip: " + ", ".join(parts)


def filmstrip(rec, *, step: int = 1, cell: int = 90, level_titles: bool = True) -> go.Figure:
    """One row per :func:`filmstrip_rows` entry (original, masked input, model, the non-learned fills), one column
    per shown frame; each fill's row title gives its masked-patch PSNR on this clip.  ``level_titles``: row titles
    read horizontally at the right (the screen); else rotated along the rows, as the paper styles expect."""
    idx = list(range(0, len(rec.frames), max(1, int(step))))
    S = rec.frames.shape[1]
    rows = filmstrip_rows(rec)
    db = {"model": rec.psnr_masked} | {t: v for t, _f, v in getattr(rec, "fills_to_show", None) or []}
    if level_titles:
        titles = [f"{t}<br>{db[t]:.1f} dB" if db.get(t) is not None and np.isfinite(db[t]) else t for t, _ in rows]
    else:  # rotated titles must fit a row's height: short names (filmstrip_psnr_note gives the numbers)
        titles = [PAPER_ROW_TITLES.get(t, t) for t, _ in rows]
    fig = make_subplots(rows=len(rows), cols=len(idx), row_titles=titles,
                        column_titles=[str(i + 1) for i in idx], horizontal_spacing=0.005, vertical_spacing=0.01)
    side = min(S, THUMB)
    k = upscale_factor(side, side, 64) * side / S  # encoded pixels per frame pixel
    sources = iter(filmstrip_sources(rec, step=step))
    for r in range(1, len(rows) + 1):
        for c in range(1, len(idx) + 1):
            fig.add_trace(go.Image(source=next(sources), x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), r, c)
    _axes(fig, S, len(rows), len(idx))
    # row titles read horizontally at the right (two short lines: name, then PSNR on this clip)
    if level_titles:
        fig.for_each_annotation(lambda a: a.update(textangle=0, xanchor="left", xshift=4, font=dict(size=11))
                                if a.text in titles else None)
    right = 150 if level_titles else 40
    fig.update_layout(width=cell * len(idx) + right + 10, height=len(rows) * cell + 60, margin=dict(l=10, r=right, t=40, b=10),
                      template="plotly_white")
    return fig


def psnr_per_frame_figure(rec, *, baselines: "dict[str, np.ndarray] | None" = None) -> go.Figure:
    """Masked-patch PSNR (dB) per frame; optional baselines ``{name: (T,) dB}`` beside the model."""
    x = np.arange(1, len(rec.frames) + 1)
    fig = go.Figure(go.Scatter(x=x, y=json_grid(rec.psnr_per_frame[None])[0], mode="lines+markers",
                               name=f"model (clip {rec.psnr_masked:.2f} dB)"))
    for name, v in (baselines or {}).items():
        fig.add_trace(go.Scatter(x=x, y=json_grid(np.asarray(v)[None])[0], mode="lines+markers", name=name, line=dict(dash="dot")))
    fig.update_layout(xaxis_title="frame", yaxis_title="masked-patch PSNR (dB)", width=560, height=300,
                      margin=dict(l=60, r=10, t=30, b=40), template="plotly_white")
    return fig


def ratio_curve(recs, *, baselines: "dict[str, np.ndarray] | None" = None, model: str = "model",
                title: str | None = None, current: float | None = None) -> go.Figure:
    """Masked-patch PSNR (dB) of the clip against the masking ratio, one point per reconstruction of ``recs``.

    Args:
        recs: :class:`explorer.reconstruction.video.VideoReconstruction` of one clip, strategy and seed, by ratio.
        baselines: name → ``(R,)`` dB on the same masks (the apps pass
            :func:`explorer.reconstruction.video.sweep_baseline_psnr` of ``recs``).
        model: the model curve's legend name.
        current: a ratio of ``recs`` to mark (:func:`ratio_marker`: the figure's first two shapes and first
            annotation; no trace is added).
    """
    recs = list(recs)
    fig = quality_curves(go.Figure(), [r.ratio for r in recs], model, [r.psnr_masked for r in recs], baselines,
                         legend_rows=2 if baselines else 1)
    if current is not None and recs:
        at = min(recs, key=lambda r: abs(r.ratio - current))
        m = ratio_marker(at.ratio, at.psnr_masked, span=(min(r.ratio for r in recs), max(r.ratio for r in recs)))
        fig.update_layout(shapes=m["shapes"], annotations=m["annotations"])
    first = recs[0] if recs else None
    text = title or (f"{first.strategy} masking, seed {first.seed}" if first is not None else "")
    b = fig.layout.margin.b
    fig.update_layout(xaxis_title="masking ratio", yaxis_title="masked-patch PSNR (dB)", width=520, height=240 + b,
                      title=dict(text=text, font=dict(size=12)), margin=dict(l=60, r=10, t=40, b=b), template="plotly_white")
    return fig


def ratio_marker(ratio: float, value: "float | None", *, unit: str = "dB", span: "tuple[float, float]" = (0.5, 0.95)) -> dict:
    """The marker of the ratio on screen on a quality curve: a dotted vertical line at ``ratio``, a ring on the curve at
    ``(ratio, value)`` (a fixed size in pixels) and the value written beside it.

    Args:
        value: the model curve's value at ``ratio`` (NaN / inf / ``None``: the line alone).
        span: the curve's ratio range; the label goes to the left of the ring in its right half, so it stays inside.
    Returns:
        ``{"shapes": [line, ring], "annotations": [label]}``, plotly layout dicts.  :func:`ratio_curve` draws them; an
        app moves the marker of a curve on screen by updating these three layout entries (the traces stay as they are).
    """
    x = float(ratio)
    ok = value is not None and bool(np.isfinite(value))
    y = float(value) if ok else 0.0
    right = x > (span[0] + span[1]) / 2
    line = dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1, line=dict(color="grey", dash="dot", width=1))
    ring = dict(type="circle", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel", xanchor=x, yanchor=y,
                x0=-6, x1=6, y0=-6, y1=6, line=dict(color=MODEL_STYLE["color"], width=2), visible=ok)
    label = dict(x=x, y=y, xref="x", yref="y", text=f"{y:.2f} {unit}" if ok else "", showarrow=False,
                 xanchor="right" if right else "left", xshift=-9 if right else 9, yshift=10, visible=ok,
                 font=dict(size=11, color=MODEL_STYLE["color"]))
    return {"shapes": [line, ring], "annotations": [label]}


def frames_figure(rec, frames: "list[int] | None" = None, *, cell: int = 170) -> go.Figure:
    """One row per frame in ``frames`` (default: first, middle, last): original | masked input | reconstruction |
    per-patch error on hidden patches, the error on one colour scale for every row."""
    T = len(rec.frames)
    frames = [0, T // 2, T - 1] if frames is None else [int(i) for i in frames]
    if not frames:
        raise ValueError("Give at least one frame to show.")
    panels = [frame_panels(rec, i) for i in frames]
    S, p = rec.frames.shape[1], rec.patch_size
    g = S // p
    zmax = max([float(np.nanmax(np.asarray(v["error"], float))) for v in panels if np.isfinite(np.asarray(v["error"], float)).any()]
               or [1e-6])
    titles = [t for v in panels for t in ("original", "masked input", "reconstruction", v["error_title"])]
    fig = make_subplots(rows=len(frames), cols=4, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.3 / max(1, len(frames)), row_titles=[f"frame {i + 1}" for i in frames])
    k = upscale_factor(S, S, 160)
    for r, v in enumerate(panels, start=1):
        for c, src in enumerate(v["sources"], start=1):
            fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), r, c)
        fig.add_trace(go.Heatmap(z=v["error"], x=(np.arange(g) + 0.5) * p, y=(np.arange(g) + 0.5) * p, colorscale="Viridis",
                                 zmin=0, zmax=zmax, showscale=r == 1, colorbar=dict(title=dict(text="MSE", side="right"), thickness=10),
                                 hovertemplate="MSE %{z:.4f}<extra></extra>"), r, 4)
    _axes(fig, S, len(frames), 4)
    fig.update_layout(title=dict(text=f"{rec.strategy} masking, ratio {rec.ratio:.2f}, seed {rec.seed}", font=dict(size=13)),
                      width=4 * cell + 110, height=len(frames) * (cell + 30) + 70, margin=dict(l=10, r=40, t=60, b=10),
                      template="plotly_white")
    return fig


def _pick_labels(indices: np.ndarray) -> dict[int, str]:
    """Clip frame → the model frames (1-based) it fills, e.g. ``{3: "4", 8: "8·9"}`` when frames repeat."""
    out: dict[int, list[str]] = {}
    for k, j in enumerate(np.asarray(indices).tolist()):
        out.setdefault(int(j), []).append(str(k + 1))
    return {j: "·".join(v) for j, v in out.items()}


def sampling_figure(video, *, width: int = 640, max_points: int = 3000) -> go.Figure:
    """Which frames of the clip the model reads: every frame of the clip on a time line (grey), the kept ones
    marked and numbered in the model's order.

    Args:
        video: a :class:`explorer.video.LoadedVideo` (uses ``clip_times_s``, ``indices``, ``times_s``, ``notes``);
            arrays without a frame rate are drawn against the frame index.
        max_points: clips with more frames draw their extent as a line instead of one dot per frame.
    """
    t_all = np.asarray(video.clip_times_s, float)
    n = int(video.decoded)
    by_time = len(t_all) == n and np.isfinite(t_all).all()
    x_all = t_all if by_time else np.arange(n, dtype=float)
    unit = "s" if by_time else "frame"
    fig = go.Figure()
    if n <= max_points:
        fig.add_trace(go.Scatter(x=x_all, y=np.zeros(n), mode="markers", name=f"clip ({n} frames)",
                                 marker=dict(color="#bbbbbb", size=6, symbol="line-ns-open", line=dict(width=1.5)),
                                 customdata=np.arange(n), hovertemplate=f"frame %{{customdata}} · %{{x:.3f}} {unit}<extra></extra>"))
    else:
        fig.add_trace(go.Scatter(x=[x_all[0], x_all[-1]], y=[0, 0], mode="lines", line=dict(color="#bbbbbb", width=6),
                                 name=f"clip ({n} frames)", hoverinfo="skip"))
    labels = _pick_labels(video.indices)
    picked = np.array(sorted(labels))
    fig.add_trace(go.Scatter(x=x_all[picked], y=np.zeros(len(picked)), mode="markers+text", name="read by the model",
                             marker=dict(color="#d62728", size=11), text=[labels[j] for j in picked.tolist()],
                             textposition="top center", textfont=dict(size=10), customdata=picked,
                             hovertemplate=f"clip frame %{{customdata}} · %{{x:.3f}} {unit} → model frame %{{text}}<extra></extra>"))
    nth = {1: "consecutive frames", 2: "every 2nd frame", 3: "every 3rd frame"}.get(video.stride, f"every {video.stride}th frame")
    how = {"uniform": "uniform in time", "strided": f"{nth}, centred", "all": "every frame"}.get(video.sampling, video.sampling)
    extra = [s for s in video.notes if s.startswith(("looped", "padded", "stretched", "variable frame rate"))]
    title = f"{len(video.indices)} of {n} frames · {how}" + (f" · {extra[0].split(':')[0]}" if extra else "")
    fig.update_layout(title=dict(text=title, font=dict(size=12)), width=width, height=170, showlegend=False,
                      xaxis=dict(title=f"time ({unit})" if by_time else "frame", zeroline=False),
                      yaxis=dict(visible=False, range=[-1, 1.6]), margin=dict(l=20, r=20, t=40, b=40), template="plotly_white")
    return fig
