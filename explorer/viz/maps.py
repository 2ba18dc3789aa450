"""Strips of patch maps over an image, on one shared colour scale (pure plotly).

Used for per-ratio error maps today and for per-word / per-head attention strips: any
``(gh, gw)`` map per label.  One ``coloraxis`` is shared by every panel, so equal colours mean
equal values across panels (the comparison a reader makes).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, json_grid, upscale_factor


def map_strip(image: np.ndarray, maps: "dict[str, np.ndarray]", *, opacity: float = 0.6, colorscale: str = "Viridis",
              zmin: float | None = None, zmax: float | None = None, colorbar_title: str = "value",
              show_image: bool = True, cell: int = 200, min_side: int = 224) -> go.Figure:
    """One panel per map, each overlaid on ``image``, with a single shared colour bar.

    Args:
        image: ``(S, S, 3)`` float in [0, 1] (the model input the maps refer to), or
            ``(K, S, S, 3)``: one image per map (e.g. video frames), then ``show_image`` is ignored.
        maps: label → ``(gh, gw)`` float map; ``nan`` cells are left transparent.
        opacity: opacity of the maps over the image (0 = image only).
        zmin, zmax: colour range; default the min / max over all maps (shared).
        show_image: draw the image as the first panel as well.
    """
    if not maps:
        raise ValueError("map_strip needs at least one map")
    per_map = np.asarray(image).ndim == 4
    if per_map and len(image) != len(maps):
        raise ValueError(f"{len(image)} images for {len(maps)} maps")
    show_image = show_image and not per_map
    S = image.shape[1] if per_map else image.shape[0]
    grids = {k: np.asarray(v, dtype=np.float64) for k, v in maps.items()}
    shapes = {g.shape for g in grids.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"All maps must be 2-D and of one shape, got {sorted(shapes)}")
    gh, gw = next(iter(shapes))
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    lo = float(zmin) if zmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = float(zmax) if zmax is not None else (float(finite.max()) if finite.size else 1.0)
    labels = (["image"] if show_image else []) + list(grids)
    fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, horizontal_spacing=0.015)
    k = upscale_factor(S, S, min_side)
    srcs = [data_uri(im, min_side=min_side) for im in image] if per_map else [data_uri(image, min_side=min_side)] * len(labels)
    for c, label in enumerate(labels, start=1):
        fig.add_trace(go.Image(source=srcs[c - 1], x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), row=1, col=c)
        if label == "image" and show_image:
            continue
        z = json_grid(grids[label])
        fig.add_trace(go.Heatmap(z=z, x=(np.arange(gw) + 0.5) * S / gw, y=(np.arange(gh) + 0.5) * S / gh, coloraxis="coloraxis",
                                 opacity=opacity, name=label, hovertemplate=label + ": %{z:.4f}<extra></extra>"), row=1, col=c)
    for c in range(1, len(labels) + 1):
        fig.update_xaxes(range=[0, S], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[S, 0], showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         scaleanchor=f"x{'' if c == 1 else c}", scaleratio=1, row=1, col=c)
    fig.update_layout(coloraxis=dict(colorscale=colorscale, cmin=lo, cmax=hi,
                                     colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=10)),
                      width=cell * len(labels) + 80, height=cell + 60, margin=dict(l=10, r=10, t=40, b=10),
                      template="plotly_white")
    return fig
