"""Figures for cross-modal alignment (pure: :class:`explorer.fusion.Alignment` in, plotly figures out).

Method labels come from the method registry through the Alignment (``al.method(name)``, ``al.describe(name, …)``),
so this floor never imports :mod:`explorer.fusion`.  Maps of on-demand methods (Integrated Gradients) must have
been computed by the caller (``al.word_map(name, word, adapter=…)``): figures never run a model.

* :func:`word_overlay` — the image and one word's map over it (hover the image: words per patch).
* :func:`word_view` — :func:`word_overlay` of one word of an Alignment as the fusion app shows it (and exports it).
* :func:`word_bars` — how strongly each word goes with one patch (or per-word attributions).
* :func:`alignment_matrix` — words × patches, sortable, on one colour scale.
* :func:`word_strip` — every word's map side by side, one shared colour scale (paper figure).
* :func:`modality_figure` — output with each modality masked, and IG totals per modality.
* :func:`counterfactual_figure` — one word's map for two texts side by side, scores in the titles.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .attention import query_overlay
from .images import json_grid
from .maps import map_strip


def patch_marker(patch: int, grid: tuple[int, int], patch_size: int) -> dict:
    """Rectangle around patch ``patch`` (row-major)."""
    r, c = divmod(int(patch), grid[1])
    p = patch_size
    return dict(type="rect", x0=c * p, x1=(c + 1) * p, y0=r * p, y1=(r + 1) * p, line=dict(color="red", width=2))


def word_overlay(image: np.ndarray, patch_map: np.ndarray, *, patch_size: int, title: str, opacity: float = 0.6,
                 colorscale: str = "Viridis", marker: dict | None = None, label: str = "association",
                 zmax: float | None = None, diverging: bool = False, image_title: str = "hover / click a patch") -> go.Figure:
    """Two panels: the image (hover or click a patch) and the word's ``(gh, gw)`` map over it.

    ``diverging``: a diverging colour scale around 0 (signed attributions); a map with negative values gets one anyway.
    """
    fig = query_overlay(image, patch_map, patch_size=patch_size, title=title, opacity=opacity, colorscale=colorscale,
                        marker=marker, label=label, zmax=zmax if zmax is not None else float(np.nanmax(patch_map)))
    fig.layout.annotations[0].text = image_title
    if diverging or np.nanmin(patch_map) < 0:
        m = float(np.nanmax(np.abs(patch_map))) or 1.0
        fig.data[2].update(colorscale="RdBu", zmin=-m, zmax=m, zmid=0, reversescale=True)
    return fig


def word_title(al, word: int, method: str, **settings) -> str:
    """``"'red': cross-attention (layer, head), layer 0, head 1"``: the word and the method with the settings it reads."""
    return f"'{al.word_strings[word]}': {al.describe(method, **settings)}"


def word_view(al, word: int, method: str, *, layer: int | None = None, head="mean", patch: int | None = None,
              opacity: float = 0.6, colorscale: str = "Viridis", interactive: bool = True, **options) -> go.Figure:
    """Word ``word``'s map under ``method`` over the image, titled with the method's label and settings, ``patch``
    (row-major) outlined: what the fusion app shows, and what its Export writes (``interactive=False``)."""
    m = al.method(method)
    mp = al.word_map(method, word, layer=layer, head=head, **options)
    marker = patch_marker(patch, al.grid, al.patch_size) if patch is not None else None
    return word_overlay(al.image, mp, patch_size=al.patch_size, title=word_title(al, word, method, layer=layer, head=head, **options),
                        opacity=opacity, colorscale=colorscale, marker=marker, label=m.short, diverging=m.diverging,
                        image_title="hover / click a patch" if interactive else "image")


def word_labels(words: list[str]) -> list[str]:
    """Axis labels of the words: ``"0: a"``, ``"1: red"``… (positions keep repeated words apart)."""
    return [f"{i}: {w}" for i, w in enumerate(words)]


def bar_colours(n: int, selected: int | None) -> list[str]:
    """Bar colours with the ``selected`` word highlighted."""
    return ["#d62728" if i == selected else "#4c78a8" for i in range(n)]


def word_bars(words: list[str], values: np.ndarray, *, selected: int | None = None, title: str = "",
              value_name: str = "association", width: int = 420, height: int = 300) -> go.Figure:
    """Horizontal bars, one per word in text order (top = first word); ``selected`` is highlighted."""
    v = np.asarray(values, np.float64)
    colours = bar_colours(len(words), selected)
    labels = word_labels(words)
    fig = go.Figure(go.Bar(x=v, y=labels, orientation="h", marker_color=colours, name=value_name,
                           hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font=dict(size=12)), xaxis_title=value_name,
                      yaxis=dict(autorange="reversed", type="category"), width=width, height=height,
                      margin=dict(l=90, r=10, t=40, b=40), template="plotly_white")
    return fig


def alignment_matrix(matrix: np.ndarray, words: list[str], *, sort_by: int | None = None, title: str = "",
                     colorscale: str = "Viridis", width: int = 760, height: int | None = None) -> tuple[go.Figure, np.ndarray]:
    """Words (rows) × patches (columns) heatmap.

    Args:
        matrix: ``(W, L)``.
        sort_by: a word index: columns sorted by that word's value, highest first (``None``: row-major patch order).
    Returns:
        ``(figure, order)`` with ``order (L,)`` the patch index of each column (clicks map back through it).
    """
    m = np.asarray(matrix, np.float64)
    order = np.arange(m.shape[1]) if sort_by is None else np.argsort(-m[sort_by], kind="stable")
    z = m[:, order]
    labels = word_labels(words)
    fig = go.Figure(go.Heatmap(z=json_grid(z), y=labels, x=[str(p) for p in order], colorscale=colorscale,
                               customdata=np.broadcast_to(order, z.shape),
                               colorbar=dict(thickness=10, title=dict(text="value", side="right")),
                               hovertemplate="%{y} · patch %{customdata}: %{z:.4f}<extra></extra>"))
    sort_txt = "patches in reading order" if sort_by is None else f"patches sorted by '{words[sort_by]}'"
    fig.update_layout(title=dict(text=f"{title} — {sort_txt} (click a cell)", font=dict(size=12)),
                      xaxis=dict(title="patch", type="category", showticklabels=m.shape[1] <= 64),
                      yaxis=dict(autorange="reversed", type="category"), width=width,
                      height=height or max(220, 26 * len(words) + 110), margin=dict(l=90, r=10, t=40, b=40),
                      template="plotly_white")
    return fig, order


def word_strip(al, method: str = "relevance", *, layer: int | None = None, head="mean", colorscale: str = "Viridis",
               opacity: float = 0.6, cell: int = 160, **options) -> go.Figure:
    """Every clickable word's map over the image, one shared colour scale (maps scaled by the largest); the colour
    bar names the method (``layer``, ``head`` and ``options`` go to the methods that read them)."""
    maps = {f"{k}: {w}": al.word_map(method, k, layer=layer, head=head, **options) for k, w in enumerate(al.word_strings)}
    return map_strip(al.image, maps, opacity=opacity, colorscale=colorscale, colorbar_title=al.method(method).short,
                     show_image=True, cell=cell)


def modality_figure(report, *, output_name: str = "output", width: int = 760, height: int = 320) -> go.Figure:
    """Left: the output with the image, the text or both masked; right: each modality's exact Shapley value over
    that masking beside its Integrated Gradients total (joint path), with IG's completeness gap in the title."""
    gap = f"IG gap {report.ig_delta:.2g} = {100 * min(report.ig_gap_share, 99.99):.0f}% of Δ"
    fig = make_subplots(rows=1, cols=2, subplot_titles=["output with a modality masked",
                                                        f"Shapley (exact) vs IG (joint path); {gap}"],
                        horizontal_spacing=0.15)
    names = ["full input", "image masked", "text masked", "both masked"]
    vals = [report.score, report.masked["image"], report.masked["text"], report.masked["both"]]
    fig.add_trace(go.Bar(x=names, y=vals, marker_color=["#4c78a8", "#f58518", "#54a24b", "#9d9d9d"], name=output_name,
                         hovertemplate="%{x}: %{y:.3f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=["image", "text"], y=[report.shapley["image"], report.shapley["text"]], marker_color="#332288",
                         name="Shapley value", hovertemplate="Shapley %{x}: %{y:.3f}<extra></extra>"), 1, 2)
    fig.add_trace(go.Bar(x=["image", "text"], y=[report.ig_image, report.ig_text], marker_color="#bbbbbb",
                         name="IG total", hovertemplate="IG %{x}: %{y:.3f}<extra></extra>"), 1, 2)
    fig.update_yaxes(title_text=output_name, row=1, col=1)
    fig.update_yaxes(title_text="contribution (sums to Δ output)", row=1, col=2)
    fig.update_layout(barmode="group", showlegend=True, legend=dict(orientation="h", x=0.58, y=-0.15, font=dict(size=10)),
                      width=width, height=height, margin=dict(l=60, r=10, t=40, b=60), template="plotly_white")
    return fig


def counterfactual_figure(image: np.ndarray, panels: "dict[str, np.ndarray]", *, colorscale: str = "Viridis",
                          opacity: float = 0.6, cell: int = 200) -> go.Figure:
    """``{title: (gh, gw) map}`` for the original and the edited text, on one shared colour scale."""
    return map_strip(image, panels, opacity=opacity, colorscale=colorscale, colorbar_title="association", show_image=False,
                     cell=cell)
