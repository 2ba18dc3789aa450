"""Figures for attention results (pure: results in, plotly figures out).

* :func:`query_overlay` — one map over the image, query marked, adjustable opacity / colour scale.
* :func:`attention_grid` — layers × heads small multiples for one query on one shared colour scale.
* :func:`head_summary` — mean attention distance against depth, one point per head (colour = entropy).
* :func:`method_row` — raw / rollout / relevance / IG side by side, each scaled to [0, 1].
* :func:`faithfulness_curves` — deletion and insertion curves with AUCs and the random-order reference.
* :func:`provenance_figure` — MAE provenance of one masked patch (attention and gradient views).

Images may be non-square (``(H, W, 3)``; the patch grid ``(gh, gw)`` follows).  Video results (frames
``(T, H, W, 3)``, maps ``(t, gh, gw)``) are drawn over the first frame with the map averaged over time steps
(:func:`video_maps` shows every step).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, json_grid, upscale_factor
from .maps import map_strip

COLORSCALES = ("Viridis", "Cividis", "Inferno", "Greys")



def query_text(query) -> str:
    """A query token in words: ``"cls"`` → ``"CLS"``, ``"reg0"`` → ``"REG0"``, ``"mean"`` → ``"all tokens"``, 7 → ``"patch 7"``."""
    if isinstance(query, str):
        return "all tokens" if query.lower() == "mean" else query.upper()
    return f"patch {query}"

def _image_axes(fig, size, rows, cols):
    """Image axes for every panel: ``size`` is the side ``S`` or ``(H, W)``."""
    H, W = (size, size) if np.isscalar(size) else size
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            i = (r - 1) * cols + c
            ax = "" if i == 1 else str(i)
            fig.update_xaxes(range=[0, W], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=r, col=c)
            fig.update_yaxes(range=[H, 0], showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                             scaleanchor=f"x{ax}", scaleratio=1, row=r, col=c)


def _still(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` image, or the first frame of ``(T, H, W, 3)`` frames."""
    image = np.asarray(image)
    return image[0] if image.ndim == 4 else image


def _flat(patch_map: np.ndarray) -> np.ndarray:
    """``(gh, gw)`` map, or the mean over time steps of a ``(t, gh, gw)`` map."""
    m = np.asarray(patch_map)
    return m.mean(0) if m.ndim == 3 else m


def _query_marker(layout, patch_size: int, query) -> dict | None:
    """Rectangle around the query patch (None for a prefix token or ``"mean"``; video: the patch's row / column)."""
    if isinstance(query, str):
        return None
    t = layout.token(query) - layout.n_prefix
    r, c = (int(v) for v in np.unravel_index(t, layout.grid)[-2:])
    p = patch_size
    return dict(type="rect", x0=c * p, x1=(c + 1) * p, y0=r * p, y1=(r + 1) * p, line=dict(color="red", width=2))


def query_overlay(image: np.ndarray, patch_map: np.ndarray, *, patch_size: int, title: str = "", opacity: float = 0.6,
                  colorscale: str = "Viridis", marker: dict | None = None, zmax: float | None = None, width: int = 760,
                  height: int = 400, label: str = "attention") -> go.Figure:
    """Two panels: the image (click a patch to choose the query) and ``patch_map`` ``(gh, gw)`` over it.

    Video: ``image`` ``(T, H, W, 3)`` and ``patch_map`` ``(t, gh, gw)`` are shown as the first frame and the mean over time.
    """
    image, patch_map = _still(image), _flat(patch_map)
    H, W = image.shape[:2]
    gh, gw = patch_map.shape
    k = upscale_factor(H, W, 224)
    src = data_uri(image, min_side=224)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["image (click a patch = query)", title], horizontal_spacing=0.04)
    fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hovertemplate="x %{x:.0f}, y %{y:.0f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), 1, 2)
    fig.add_trace(go.Heatmap(z=json_grid(patch_map), x=(np.arange(gw) + 0.5) * patch_size, y=(np.arange(gh) + 0.5) * patch_size,
                             opacity=opacity, colorscale=colorscale, zmin=0, zmax=zmax, name=label,
                             colorbar=dict(title=dict(text=label, side="right"), thickness=10),
                             hovertemplate="patch (%{y:.0f}, %{x:.0f}) px: %{z:.4f}<extra></extra>"), 1, 2)
    _image_axes(fig, (H, W), 1, 2)
    shapes = [dict(marker, xref=x, yref=y) for x, y in (("x", "y"), ("x2", "y2"))] if marker else []
    fig.update_layout(shapes=shapes, width=width, height=height, margin=dict(l=10, r=10, t=40, b=10),
                      template="plotly_white", dragmode=False)
    return fig


def attention_grid(maps, query="cls", *, layers=None, heads=None, colorscale: str = "Viridis", cell: int = 90,
                   with_image: bool = True) -> go.Figure:
    """Layers (rows) × heads (columns) of ``maps.query_map(layer, head, query)``, one shared colour scale."""
    layers = list(range(maps.num_layers)) if layers is None else list(layers)
    heads = list(range(maps.num_heads)) if heads is None else list(heads)
    grids = {(l, h): _flat(maps.query_map(l, h, query)) for l in layers for h in heads}
    zmax = float(max(g.max() for g in grids.values()))
    image, p = _still(maps.image), maps.patch_size
    H, W = image.shape[:2]
    gh, gw = maps.layout.grid[-2:]
    titles = [f"L{l} H{h}" for l in layers for h in heads]
    fig = make_subplots(rows=len(layers), cols=len(heads), subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.03 if len(layers) > 1 else 0.0)
    small = data_uri(image, min_side=64) if with_image else None
    k = upscale_factor(H, W, 64)
    for i, l in enumerate(layers, start=1):
        for j, h in enumerate(heads, start=1):
            if small:
                fig.add_trace(go.Image(source=small, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), i, j)
            fig.add_trace(go.Heatmap(z=json_grid(grids[(l, h)]), x=(np.arange(gw) + 0.5) * p, y=(np.arange(gh) + 0.5) * p,
                                     coloraxis="coloraxis", opacity=0.75 if small else 1.0, name=f"L{l} H{h}",
                                     customdata=np.full((gh, gw, 2), (l, h)),
                                     hovertemplate=f"layer {l} head {h}: " + "%{z:.4f}<extra></extra>"), i, j)
    _image_axes(fig, (H, W), len(layers), len(heads))
    q = query_text(query)
    if len(maps.layout.grid) == 3:
        q += f", mean over {maps.layout.grid[0]} time steps"
    fig.update_layout(coloraxis=dict(colorscale=colorscale, cmin=0, cmax=zmax,
                                     colorbar=dict(title=dict(text="attention", side="right"), thickness=10)),
                      title=dict(text=f"attention of {q} — layers × heads ({maps.path})", font=dict(size=13)),
                      width=cell * len(heads) + 120, height=cell * len(layers) + 70, margin=dict(l=10, r=10, t=50, b=10),
                      template="plotly_white", dragmode=False)
    fig.update_annotations(font_size=9)
    return fig


def head_summary(maps) -> go.Figure:
    """Mean attention distance (px) against layer, one point per head, coloured by entropy (click = that head)."""
    dist, ent = maps.head_distance(), maps.head_entropy()
    L, H = dist.shape
    ll, hh = np.meshgrid(np.arange(L), np.arange(H), indexing="ij")
    jitter = (hh - (H - 1) / 2) * (0.5 / max(H, 1))
    fig = go.Figure(go.Scatter(
        x=(ll + jitter).ravel(), y=dist.ravel(), mode="markers",
        marker=dict(size=9, color=ent.ravel(), colorscale="Cividis", colorbar=dict(title=dict(text="entropy (nats)", side="right"), thickness=10),
                    line=dict(width=0.5, color="black")),
        customdata=np.stack([ll.ravel(), hh.ravel(), ent.ravel()], 1),
        hovertemplate="layer %{customdata[0]} head %{customdata[1]}<br>distance %{y:.1f} px<br>entropy %{customdata[2]:.2f}<extra></extra>",
        name="heads"))
    fig.update_layout(xaxis=dict(title="layer", tickmode="linear", dtick=1), yaxis=dict(title="mean attention distance (px)"),
                      title=dict(text="per-head summary (click a point to show that head)", font=dict(size=13)),
                      width=560, height=330, margin=dict(l=60, r=10, t=40, b=40), template="plotly_white")
    return fig


def method_row(image: np.ndarray, maps: "dict[str, np.ndarray]", *, opacity: float = 0.6, colorscale: str = "Viridis",
               cell: int = 190) -> go.Figure:
    """Maps of several methods over the image, each scaled to [0, 1] (their units differ).

    ``image`` ``(H, W, 3)`` with ``(gh, gw)`` maps, or video frames ``(T, H, W, 3)`` with ``(t, gh, gw)`` maps (the
    first frame, the mean over time steps).
    """
    image = _still(image)
    maps = {k: _flat(v) for k, v in maps.items()}

    def unit(m):
        m = np.asarray(m, np.float64)
        fin = m[np.isfinite(m)]
        if fin.size == 0:
            return m
        lo, hi = fin.min(), fin.max()
        return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)

    scaled = {k: unit(v) for k, v in maps.items()}
    if image.shape[0] == image.shape[1]:
        return map_strip(image, scaled, opacity=opacity, colorscale=colorscale, zmin=0, zmax=1,
                         colorbar_title="relative importance", show_image=False, cell=cell)
    return _strip(image, scaled, opacity=opacity, colorscale=colorscale, colorbar_title="relative importance", cell=cell)


def _strip(image: np.ndarray, maps: "dict[str, np.ndarray]", *, opacity: float, colorscale: str, colorbar_title: str,
           cell: int, zmin: float = 0.0, zmax: float = 1.0) -> go.Figure:
    """One panel per ``(gh, gw)`` map over an ``(H, W, 3)`` image of any aspect ratio, one shared colour scale."""
    H, W = image.shape[:2]
    k = upscale_factor(H, W, 224)
    src = data_uri(image, min_side=224)
    labels = list(maps)
    fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, horizontal_spacing=0.015)
    for c, label in enumerate(labels, start=1):
        gh, gw = maps[label].shape
        fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), row=1, col=c)
        fig.add_trace(go.Heatmap(z=json_grid(maps[label]), x=(np.arange(gw) + 0.5) * W / gw, y=(np.arange(gh) + 0.5) * H / gh,
                                 coloraxis="coloraxis", opacity=opacity, name=label,
                                 hovertemplate=label + ": %{z:.4f}<extra></extra>"), row=1, col=c)
    _image_axes(fig, (H, W), 1, len(labels))
    fig.update_layout(coloraxis=dict(colorscale=colorscale, cmin=zmin, cmax=zmax,
                                     colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=10)),
                      width=int(cell * len(labels) * max(1.0, W / H)) + 80, height=int(cell * min(1.0, H / W)) + 60,
                      margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def faithfulness_table_html(curves: dict) -> str:
    """An HTML table, one row per map (``{title: Curves}``): deletion and insertion AUC, the random orders' 95% band
    and the verdict of each, coloured (green: better than random; grey: not distinguishable; red: worse)."""
    import html as _html

    colour = {"better than random": "#1b5e20", "worse than random": "#8b0000"}
    rows = []
    for title, c in curves.items():
        cells = [f"<td style='text-align:left'>{_html.escape(title)}</td>"]
        for name in ("deletion", "insertion"):
            lo, hi = getattr(c, f"random_{name}_band")
            v = getattr(c, f"{name}_verdict")
            cells.append(f"<td>{getattr(c, f'{name}_auc'):.3f}</td><td>{lo:.3f}–{hi:.3f}</td>"
                         f"<td style='color:{colour.get(v, '#666')}'>{v}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    first = next(iter(curves.values()), None)
    what = (f"Removed patches {_html.escape(first.fill_description)}; score: {_html.escape(first.score)}; "
            f"{len(first.random_deletion_aucs)} random orders." if first is not None else "")
    return ("<div style='font-size:12px'><b>Faithfulness of each map</b> (lower deletion and higher insertion AUC than "
            "the random orders' 95% band = the map ranks patches the way the model uses them). " + what +
            "<table><tr><th>map</th><th>deletion AUC</th><th>random 95%</th><th>verdict</th><th>insertion AUC</th>"
            "<th>random 95%</th><th>verdict</th></tr>" + "".join(rows) + "</table></div>")


def faithfulness_curves(curves, *, title: str = "") -> go.Figure:
    """Deletion and insertion curves with their AUCs; the random orders' mean curves (dashed) as the reference,
    and the verdict of each AUC against the random orders' band (see :meth:`Curves.summary`)."""
    x = curves.fractions
    fig = go.Figure()
    colours = {"deletion": "#0072B2", "insertion": "#E69F00"}
    for name in ("deletion", "insertion"):
        auc = getattr(curves, f"{name}_auc")
        lo, hi = getattr(curves, f"random_{name}_band")
        fig.add_trace(go.Scatter(x=x, y=getattr(curves, name), mode="lines+markers", line=dict(color=colours[name]),
                                 name=f"{name} (AUC {auc:.3f})"))
        fig.add_trace(go.Scatter(x=x, y=getattr(curves, f"random_{name}"), mode="lines", line=dict(color=colours[name], dash="dash"),
                                 name=f"random orders' mean (AUC {lo:.3f}–{hi:.3f})"))
    n = len(curves.random_deletion_aucs)
    pct = round(curves.band * 100)
    fig.add_annotation(text=(f"deletion: {curves.deletion_verdict}; insertion: {curves.insertion_verdict} "
                             f"({pct}% of {n} random orders' AUCs in the ranges shown)"),
                       xref="paper", yref="paper", x=0, y=-0.28, showarrow=False, font=dict(size=11), xanchor="left")
    fig.update_layout(title=dict(text=title or "faithfulness: patches removed / added in the map's order", font=dict(size=13)),
                      xaxis_title="fraction of patches removed / added", yaxis_title=curves.score[:48] + ("…" if len(curves.score) > 48 else ""),
                      width=640, height=360, margin=dict(l=60, r=10, t=40, b=80), template="plotly_white",
                      legend=dict(x=1.02, y=1.0, font=dict(size=10)))
    return fig


def provenance_figure(prov, *, opacity: float = 0.7, colorscale: str = "Viridis", cell: int = 220) -> go.Figure:
    """Masked input with the query outlined | reconstruction | attention provenance | gradient provenance."""
    H, W = prov.image.shape[:2]
    p = prov.patch_size
    gh, gw = prov.mask.shape
    masked = prov.image.copy()
    px = np.kron(prov.mask, np.ones((p, p), bool))
    masked[px] = 0.5
    pasted = prov.image.copy()
    pasted[px] = prov.prediction[px]
    k = upscale_factor(H, W, 224)
    titles = ["masked input (click a grey patch)", "reconstruction + visible",
              f"attention rollout (via CLS {prov.via_cls:.0%}, mask tokens {prov.via_mask_tokens:.0%})", "input gradient |∂/∂x|"]
    fig = make_subplots(rows=1, cols=4, subplot_titles=titles, horizontal_spacing=0.02)
    for c, im in enumerate([masked, pasted, masked, masked], start=1):
        fig.add_trace(go.Image(source=data_uri(im, min_side=224), x0=0, y0=0, dx=1 / k, dy=1 / k,
                               hoverinfo="skip" if c > 1 else None), 1, c)

    def unit(m):
        m = np.asarray(m, np.float64)
        fin = m[np.isfinite(m)]
        hi = fin.max() if fin.size else 1.0
        return m / hi if hi > 0 else m

    xs, ys = (np.arange(gw) + 0.5) * p, (np.arange(gh) + 0.5) * p
    grad = np.where(prov.mask, np.nan, prov.gradient)  # exactly 0 on hidden patches: leave them clear
    for c, (m, name) in enumerate([(prov.attention, "attention"), (grad, "gradient")], start=3):
        fig.add_trace(go.Heatmap(z=json_grid(unit(m)), x=xs, y=ys, coloraxis="coloraxis", opacity=opacity, name=name,
                                 hovertemplate=name + " %{z:.3f}<extra></extra>"), 1, c)
    _image_axes(fig, (H, W), 1, 4)
    r, cq = divmod(prov.query, gw)
    box = dict(type="rect", x0=cq * p, x1=(cq + 1) * p, y0=r * p, y1=(r + 1) * p, line=dict(color="red", width=2))
    fig.update_layout(shapes=[dict(box, xref=f"x{'' if i == 1 else i}", yref=f"y{'' if i == 1 else i}") for i in range(1, 5)],
                      coloraxis=dict(colorscale=colorscale, cmin=0, cmax=1,
                                     colorbar=dict(title=dict(text="share (max = 1)", side="right"), thickness=10)),
                      width=cell * 4 + 100, height=cell + 70, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white",
                      title=dict(text=f"where the reconstruction of patch {prov.query} (row {r}, column {cq}) came from",
                                 font=dict(size=13)), dragmode=False)
    fig.update_annotations(font_size=11)
    return fig


def video_maps(frames: np.ndarray, patch_map: np.ndarray, *, tubelet: int, title: str = "", opacity: float = 0.6,
               colorscale: str = "Viridis", cell: int = 150) -> go.Figure:
    """A ``(t, gh, gw)`` tubelet map as a strip over time, each step over its first frame, one colour scale.

    Args:
        frames: ``(T, S, S, 3)`` model-input frames; ``T = t * tubelet``.
    """
    t = patch_map.shape[0]
    maps = {f"frames {i * tubelet + 1}–{(i + 1) * tubelet}": patch_map[i] for i in range(t)}  # numbered from 1
    fig = map_strip(np.asarray(frames)[::tubelet][:t], maps, opacity=opacity, colorscale=colorscale, cell=cell,
                    colorbar_title="attention" if not title else title.split(":")[0])
    if title:
        fig.update_layout(title=dict(text=title, font=dict(size=13)), margin=dict(t=60))
    return fig
