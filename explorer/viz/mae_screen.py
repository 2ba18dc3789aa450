"""The MAE app's five-panel figure as it is drawn on screen, built so that a masking-ratio change is one cheap redraw.

:func:`explorer.viz.reconstruction_figure` (used for exported figures) draws the four pictures as ``go.Image``
traces and the error map as a heatmap.  Changing a trace's data makes plotly.js recompute and redraw every trace of
every panel (its ``calc`` step), and changing a subplot title does the same; in the browser that costs 20–50 ms per
slider step.  Here every panel, the error map included, is a *layout image* of the axes it sits on, and no text of the
figure changes with the ratio (a title edit also makes plotly.js redraw everything): the app shows the line that
says the ratio and the PSNR (:func:`screen_update`'s ``"title"``) above the figure.  A ratio change only swaps five
image sources, which plotly.js applies without recomputing any trace, so all five panels are painted in one frame.

What the traces did is kept by invisible traces:

* panels 1–4: a transparent heatmap over the patch grid receives clicks (``points.xs`` / ``points.ys`` are the patch
  centre, in model pixels) and says which patch is under the pointer;
* panel 5: a transparent heatmap of the error values gives the colour bar and the hover values.  Its values may be
  sent after the images (:func:`screen_update` returns them apart): they are not seen, only hovered.

Pure: results in, plotly figure or plain values out.
"""

from __future__ import annotations

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri
from .mae import ERROR_COLORSCALE, PANELS, figure_title
from .notes import attach_notes


def colour_map(values: np.ndarray, *, vmax: float, colorscale: str = ERROR_COLORSCALE) -> np.ndarray:
    """``(H, W)`` float (NaN = blank) → ``(H, W, 4)`` uint8 RGBA: plotly's ``colorscale`` on ``[0, vmax]``
    interpolated linearly in RGB between its stops, as a heatmap with ``zmin=0, zmax=vmax`` colours it; NaN cells
    are fully transparent."""
    stops = pc.get_colorscale(colorscale)
    pos = np.array([float(s) for s, _c in stops])
    rgb = np.array([pc.unlabel_rgb(pc.convert_colors_to_same_type(c, "rgb")[0][0]) for _s, c in stops], np.float64)
    v = np.asarray(values, np.float64)
    blank = ~np.isfinite(v)
    t = np.clip(np.where(blank, 0.0, v) / max(float(vmax), 1e-12), 0.0, 1.0)
    out = np.empty(v.shape + (4,), np.uint8)
    for ch in range(3):
        out[..., ch] = np.clip(np.round(np.interp(t, pos, rgb[:, ch])), 0, 255).astype(np.uint8)
    out[..., 3] = np.where(blank, 0, 255).astype(np.uint8)
    return out


def _error_grid(result) -> np.ndarray:
    """``(gh, gw)`` float: the per-patch MSE on hidden patches, NaN on visible ones."""
    return np.where(result.mask, result.patch_error, np.nan)


def _error_max(result, error_max: float | None) -> float:
    hidden = result.patch_error[result.mask]
    return float(error_max) if error_max is not None else float(max(hidden.max() if hidden.size else 0.0, 1e-6))


def screen_update(result, *, error_max: float | None = None, min_side: int = 224) -> dict:
    """What changes on screen when the result changes, as plain values.

    Returns:
        ``{"sources": [5 data URIs: original, masked input, reconstruction, pasted, error map],
        "title": str (model, mask, seed, ratio, masked-patch PSNR: the line the app shows above the figure),
        "error": gh x gw nested list (None on visible patches, for the hover values), "error_max": float}``.
    """
    vmax = _error_max(result, error_max)
    err = _error_grid(result)
    images = (result.image, result.masked_input, result.prediction, result.pasted)
    return {
        "sources": [data_uri(im, min_side=min_side) for im in images] + [data_uri(colour_map(err, vmax=vmax), min_side=min_side)],
        "title": figure_title(result),
        "error": [[None if not np.isfinite(e) else float(e) for e in row] for row in err],
        "error_max": vmax,
    }


def screen_figure(result, *, error_max: float | None = None, height: int = 330, width: int | None = 1250,
                  min_side: int = 224) -> go.Figure:
    """The five panels of ``result`` for the app: layout images on axes in model-input pixels (``0..S``, so a click
    at ``(x, y)`` is the patch ``(y // p, x // p)``), transparent click / hover heatmaps, the error map's colour bar
    on ``[0, error_max]``; no figure title (the app shows ``screen_update(...)["title"]`` above it).  Update it with
    :func:`screen_update`: ``layout.images[i].source`` (and, when convenient, the hover values ``data[4].z``)."""
    upd = screen_update(result, error_max=error_max, min_side=min_side)
    S, p = result.image.shape[0], result.patch_size
    gh, gw = result.mask.shape
    xs, ys = ((np.arange(gw) + 0.5) * p).tolist(), ((np.arange(gh) + 0.5) * p).tolist()
    fig = make_subplots(rows=1, cols=5, subplot_titles=list(PANELS), horizontal_spacing=0.02)
    cells = [[[r, c] for c in range(gw)] for r in range(gh)]
    for i in range(4):
        fig.add_trace(go.Heatmap(z=np.zeros((gh, gw)).tolist(), x=xs, y=ys, opacity=0, showscale=False, name=PANELS[i],
                                 customdata=cells, colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
                                 hovertemplate="patch row %{customdata[0]}, column %{customdata[1]}<extra>"
                                               + PANELS[i] + "</extra>"), row=1, col=i + 1)
    fig.add_trace(go.Heatmap(z=upd["error"], x=xs, y=ys, zmin=0, zmax=upd["error_max"], colorscale=ERROR_COLORSCALE,
                             opacity=0, name=PANELS[4],
                             colorbar=dict(title=dict(text="MSE", side="right"), thickness=10, len=0.8, x=1.0),
                             hovertemplate="patch (%{y:.0f}, %{x:.0f}) px<br>MSE %{z:.4f}<extra></extra>"), row=1, col=5)
    images = []
    for c in range(1, 6):
        ax = "" if c == 1 else str(c)
        images.append(dict(source=upd["sources"][c - 1], xref=f"x{ax}", yref=f"y{ax}", x=0, y=0, sizex=S, sizey=S,
                           xanchor="left", yanchor="top", sizing="stretch", layer="below"))
        fig.update_xaxes(range=[0, S], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[S, 0], showticklabels=False, showgrid=False, zeroline=False, scaleanchor=f"x{ax}",
                         scaleratio=1, constrain="domain", row=1, col=c)
    fig.update_layout(
        images=images, height=height, width=width, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white",
        dragmode=False,
    )
    return attach_notes(fig, [*result.input.notes, *result.notes])
