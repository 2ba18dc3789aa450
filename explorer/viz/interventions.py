"""Figures for interventions (pure: results in, plotly figures out; nothing here runs a model).

* :func:`head_grid` — layers × (heads + "layer") cells: a value per head (Δ metric of the importance sweep, share
  restored by patching) or a plain selection grid, selected heads outlined; click a cell to toggle a head (the
  "layer" column: the whole layer).
* :func:`importance_grid`, :func:`patching_grid` — :func:`head_grid` for a sweep / a patching result.
* :func:`ablation_figure` — an image model's ablation: intact and ablated reconstructions with the per-patch error
  difference (masked autoencoders), Δ logits per class (classifiers), or the number alone.
* :func:`fusion_ablation_figure` — one word's map with and without the ablated heads, and their difference.
* :func:`head_marks` — outlines for the selected heads on the attention app's layers × heads grid.

Results are read by attribute (``delta``, ``layer_delta``, ``restored``, ``what`` …), so this module imports no
compute code.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, json_grid, upscale_factor

SELECTED = "#d62728"


def _outline(x: float, y: float, *, xref: str = "x", yref: str = "y", half: float = 0.5) -> dict:
    return dict(type="rect", xref=xref, yref=yref, x0=x - half, x1=x + half, y0=y - half, y1=y + half,
                line=dict(color=SELECTED, width=3), fillcolor="rgba(0,0,0,0)", layer="above")


def selected_cells(selected, num_layers: int, num_heads: int) -> list[tuple[int, int]]:
    """``(layer, column)`` cells to outline: each selected head; column ``H`` where a whole layer is selected."""
    sel = {(int(l), int(h)) for l, h in selected}
    cells = sorted(sel)
    for l in range(num_layers):
        if all((l, h) in sel for h in range(num_heads)):
            cells.append((l, num_heads))
    return cells


def head_grid(num_layers: int, num_heads: int, *, values: "np.ndarray | None" = None,
              layer_values: "np.ndarray | None" = None, selected=(), title: str = "", value_name: str = "",
              colorscale: str = "RdBu", zmid: "float | None" = 0.0, zmin=None, zmax=None, cell: int = 34) -> go.Figure:
    """Layers (rows, top = 0) × heads (columns) and a last ``"layer"`` column; ``values (L, H)`` / ``layer_values
    (L,)`` coloured (empty grid without), ``selected`` ``[(layer, head)]`` outlined (a fully selected layer also
    outlines its ``"layer"`` cell).  Each cell's ``customdata`` is ``(layer, head)``, head ``-1`` for the layer column."""
    L, H = int(num_layers), int(num_heads)
    z = np.full((L, H + 1), np.nan)
    if values is not None:
        z[:, :H] = np.asarray(values, np.float64)
    if layer_values is not None:
        z[:, H] = np.asarray(layer_values, np.float64)
    ll, hh = np.meshgrid(np.arange(L), np.arange(H + 1), indexing="ij")
    custom = np.stack([ll, np.where(hh == H, -1, hh)], -1)
    text = [["" if np.isnan(v) else f"{v:+.2f}" if abs(v) < 100 else f"{v:+.0f}" for v in row] for row in z]
    has = values is not None or layer_values is not None
    finite = z[np.isfinite(z)]
    if has and finite.size and zmin is None and zmax is None and zmid is not None:
        r = float(np.abs(finite - zmid).max()) or 1.0
        zmin, zmax = zmid - r, zmid + r
    hm = go.Heatmap(
        z=json_grid(z) if has else json_grid(np.zeros((L, H + 1))), x=list(range(H + 1)), y=list(range(L)),
        customdata=custom, colorscale=colorscale if has else [[0, "#f4f4f4"], [1, "#f4f4f4"]], zmin=zmin, zmax=zmax,
        showscale=has, xgap=2, ygap=2, text=text if has else None, texttemplate="%{text}" if has else None,
        textfont=dict(size=9), name="heads",
        colorbar=dict(title=dict(text=value_name, side="right"), thickness=10) if has else None,
        hovertemplate=("layer %{customdata[0]} head %{customdata[1]}" + (f": %{{z:.4f}} {html.escape(value_name)}" if has else "")
                       + "<extra></extra>"))
    fig = go.Figure(hm)
    fig.update_layout(
        shapes=[_outline(c, l) for l, c in selected_cells(selected, L, H)],
        xaxis=dict(tickmode="array", tickvals=list(range(H + 1)), ticktext=[f"H{h}" for h in range(H)] + ["layer"],
                   side="top", showgrid=False, zeroline=False, fixedrange=True),
        yaxis=dict(tickmode="array", tickvals=list(range(L)), ticktext=[f"L{l}" for l in range(L)], autorange="reversed",
                   showgrid=False, zeroline=False, fixedrange=True),
        title=dict(text=title, font=dict(size=12)), width=cell * (H + 1) + 190, height=cell * L + 110,
        margin=dict(l=40, r=10, t=70, b=10), template="plotly_white", dragmode=False)
    return fig


def importance_grid(imp, *, selected=(), cell: int = 34) -> go.Figure:
    """:func:`head_grid` of a :class:`~explorer.attention.interventions.HeadImportance` (Δ metric, blue = the metric
    fell when the head was ablated)."""
    return head_grid(imp.delta.shape[0], imp.delta.shape[1], values=imp.delta, layer_values=imp.layer_delta,
                     selected=selected, value_name="Δ", colorscale="RdBu", cell=cell,
                     title=f"head importance: Δ {html.escape(imp.what)} when ablated ({imp.mode})<br>"
                           f"<sub>intact {imp.intact:.3f}; click a cell to ablate it</sub>")


def patching_grid(p, *, cell: int = 34) -> go.Figure:
    """:func:`head_grid` of a :class:`~explorer.attention.interventions.Patching`: share of the output difference
    restored by each head's clean output (1 = all of it)."""
    return head_grid(p.restored.shape[0], p.restored.shape[1], values=p.restored, layer_values=p.layer_restored,
                     value_name="restored", colorscale="Viridis", zmid=None, zmin=0.0, zmax=1.0, cell=cell,
                     title=f"activation patching: share of {html.escape(p.what)} restored<br><sub>clean {p.clean:.3f}, "
                           f"corrupted {p.corrupted:.3f} ({html.escape(p.corruption)})</sub>")


def head_marks(selected, num_layers: int, num_heads: int, *, layers=None, heads=None) -> list[dict]:
    """Outlines for :func:`explorer.viz.attention.attention_grid`'s subplots (row = layer, column = head) of the
    ``selected`` ``[(layer, head)]`` heads."""
    layers = list(range(num_layers)) if layers is None else list(layers)
    heads = list(range(num_heads)) if heads is None else list(heads)
    out = []
    for l, h in sorted({(int(a), int(b)) for a, b in selected}):
        if l in layers and h in heads:
            k = layers.index(l) * len(heads) + heads.index(h) + 1
            ax = "" if k == 1 else str(k)
            out.append(dict(type="rect", xref=f"x{ax} domain", yref=f"y{ax} domain", x0=0, x1=1, y0=0, y1=1,
                            line=dict(color=SELECTED, width=4), fillcolor="rgba(0,0,0,0)", layer="above"))
    return out


def heads_text(heads) -> str:
    """``"L1 H2, L3 (all heads)"``-style summary of ablated heads (``[(layer, head)]``)."""
    return ", ".join(f"L{l} H{h}" for l, h in heads) or "nothing"


def _image_panel(fig, image, row, col):
    img = np.asarray(image)
    H, W = img.shape[:2]
    k = upscale_factor(H, W, 160)
    fig.add_trace(go.Image(source=data_uri(img, min_side=160), x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), row, col)


def _axes(fig, H, W, n):
    for i in range(1, n + 1):
        ax = "" if i == 1 else str(i)
        fig.update_xaxes(range=[0, W], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=i)
        fig.update_yaxes(range=[H, 0], showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         scaleanchor=f"x{ax}", scaleratio=1, row=1, col=i)


def ablation_figure(ab, *, width: int = 720, height: int = 300) -> go.Figure:
    """An image model's :class:`~explorer.attention.interventions.Ablation`: reconstructions and the per-patch error
    difference (red = worse with the heads ablated), Δ logits per class, or the number alone."""
    head = (f"ablated ({ab.mode}): {html.escape(heads_text(ab.heads))} — Δ {html.escape(ab.what)} = "
            f"<b>{ab.delta:+.3f}</b> ({ab.intact:.3f} → {ab.ablated:.3f})")
    d = None if ab.diff_map is None else np.asarray(ab.diff_map)
    if d is not None and d.ndim == 2:
        img = np.asarray(ab.intact_output)
        H, W = img.shape[:2]
        gh, gw = d.shape
        p = H // gh
        shown = [ab.intact_output, ab.ablated_output]
        titles = ("intact reconstruction", "ablated reconstruction", "Δ error per patch")
        if ab.mask is not None:  # visible patches pasted back from the input; Δ only where the score looks
            hidden = np.repeat(np.repeat(np.asarray(ab.mask, bool), p, 0), p, 1)[..., None]
            shown = [np.where(hidden, o, ab.image) for o in shown]
            d = np.where(np.asarray(ab.mask, bool), d, np.nan)
            titles = ("intact (visible pasted)", "ablated (visible pasted)", "Δ error per hidden patch")
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.03, subplot_titles=titles)
        _image_panel(fig, shown[0], 1, 1)
        _image_panel(fig, shown[1], 1, 2)
        r = float(np.nanmax(np.abs(d))) or 1.0
        fig.add_trace(go.Heatmap(z=json_grid(d), x=(np.arange(gw) + 0.5) * p, y=(np.arange(gh) + 0.5) * p, zmid=0,
                                 zmin=-r, zmax=r, colorscale="RdBu_r", name="Δ error",
                                 colorbar=dict(title=dict(text="Δ MSE", side="right"), thickness=10),
                                 hovertemplate="Δ MSE %{z:.5f}<extra></extra>"), 1, 3)
        _axes(fig, H, W, 3)
        fig.update_layout(showlegend=False)
    elif d is not None and d.ndim == 1:
        top = np.argsort(-np.abs(d), kind="stable")[:10]
        fig = go.Figure(go.Bar(x=[f"class {int(i)}" for i in top], y=d[top], marker_color="#4c78a8", name="Δ logit",
                               hovertemplate="%{x}: Δ %{y:.4f}<extra></extra>"))
        fig.update_layout(yaxis_title="Δ logit (ablated − intact)")
    else:
        fig = go.Figure(go.Bar(x=["intact", "ablated"], y=[ab.intact, ab.ablated], marker_color=["#4c78a8", SELECTED],
                               hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
        fig.update_layout(yaxis_title=html.escape(ab.what))
    fig.update_layout(title=dict(text=head, font=dict(size=12)), width=width, height=height,
                      margin=dict(l=10, r=10, t=60, b=10), template="plotly_white", dragmode=False)
    return fig


def fusion_ablation_figure(fab, word: int, *, opacity: float = 0.6, width: int = 760, height: int = 300) -> go.Figure:
    """Word ``word``'s map (method ``fab.method``) over the image, intact and ablated, and their difference."""
    img = np.asarray(fab.image)
    H, W = img.shape[:2]
    gh, gw = fab.intact_maps.shape[1:]
    p = H // gh
    a, b = fab.intact_maps[word], fab.ablated_maps[word]
    d = b - a
    w = fab.words[word]
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.09,
                        subplot_titles=(f"'{html.escape(w)}' intact", f"'{html.escape(w)}' ablated", "ablated − intact"))
    bar_x = fig.layout.xaxis2.domain[1] + 0.005  # the shared scale of the two maps, between panels 2 and 3
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    x, y = (np.arange(gw) + 0.5) * p, (np.arange(gh) + 0.5) * p
    for col, m in ((1, a), (2, b)):
        _image_panel(fig, img, 1, col)
        fig.add_trace(go.Heatmap(z=json_grid(m), x=x, y=y, zmin=lo, zmax=hi, colorscale="Viridis", opacity=opacity,
                                 showscale=col == 2, colorbar=dict(x=bar_x, xanchor="left", thickness=8) if col == 2 else None,
                                 hovertemplate="%{z:.4f}<extra></extra>"), 1, col)
    r = float(np.abs(d).max()) or 1.0
    fig.add_trace(go.Heatmap(z=json_grid(d), x=x, y=y, zmid=0, zmin=-r, zmax=r, colorscale="RdBu_r", name="difference",
                             colorbar=dict(thickness=8), hovertemplate="Δ %{z:.4f}<extra></extra>"), 1, 3)
    _axes(fig, H, W, 3)
    point = ""
    if fab.pointing_intact is not None:
        point = f"; pointing {fab.pointing_intact:.0%} → {fab.pointing_ablated:.0%}"
    fig.update_layout(
        title=dict(text=f"ablated ({fab.mode}): {html.escape(heads_text(fab.heads))} — Δ {html.escape(fab.what)} = "
                        f"<b>{fab.delta:+.3f}</b> ({fab.intact:.3f} → {fab.ablated:.3f}){point} · "
                        f"{html.escape(fab.method)} maps", font=dict(size=12)),
        width=width, height=height, margin=dict(l=10, r=10, t=60, b=10), template="plotly_white", dragmode=False,
        showlegend=False)
    return fig
