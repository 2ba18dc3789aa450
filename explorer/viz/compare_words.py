"""A/B comparison of one word's map from two image+text models (pure: maps and their comparison in, plotly figure out).

The comparison (maps, rank correlation, pointing game, energy in the box) is computed by
:func:`explorer.fusion.compare.compare_maps`; this floor only draws it: A's map and B's map over the image on one shared
colour scale, and B − A on a diverging scale centred on 0, with the metrics and their B − A in the title.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .fit import SUBPLOT_TITLE_PX, wrapped_titles
from .images import data_uri, json_grid, upscale_factor

#: Colour scale of the difference panel: blue where B is lower, white where the two agree, red where B is higher.
DIFF_COLORSCALE = "RdBu"


def _delta(v, digits: int = 2) -> str:
    """``+0.12`` / ``−0.30`` (a real minus sign) / ``n/a``."""
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:+.{digits}f}".replace("-", "−")


def _num(v, digits: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def metrics_text(cmp) -> str:
    """``"Spearman ρ(A, B) 0.31 · pointing game A hit, B miss (B − A −1) · energy in box A 0.42, B 0.18 (B − A −0.24)"``
    (the ground-truth parts only when ``cmp`` has them)."""
    parts = [f"Spearman ρ(A, B) over {cmp.a.size} patches {_num(cmp.spearman, 3)}"]
    if cmp.has_truth:
        hit = {True: "hit", False: "miss"}
        parts.append(f"pointing game A {hit[cmp.hit_a]}, B {hit[cmp.hit_b]} (B − A {cmp.hit_delta:+d})".replace("-", "−"))
        parts.append(f"energy in box A {_num(cmp.energy_a)}, B {_num(cmp.energy_b)} (B − A {_delta(cmp.energy_delta)})")
    return " · ".join(parts)


def title_of(fig) -> str:
    """The text of the comparison's title (the annotation named ``"title"``) in a figure from
    :func:`word_comparison_figure`."""
    return next(a.text for a in fig.layout.annotations if a.name == "title")


def word_comparison_title(cmp, *, word: str, description: str) -> str:
    """Two lines: the word and the method with its settings (the same for A and B); then :func:`metrics_text`."""
    return f"'{word}': {description}, model A vs model B<br>{metrics_text(cmp)}"


def word_comparison_figure(image: np.ndarray, cmp, *, patch_size: int, word: str, description: str,
                           name_a: str = "A", name_b: str = "B", colorscale: str = "Viridis", opacity: float = 0.6,
                           label: str = "association", diverging: bool = False, patch: int | None = None,
                           height: int = 340, width: int = 980, min_side: int = 224) -> go.Figure:
    """Three panels over ``image``: A's map, B's map (one colour scale, shared), and B − A (diverging, centred on 0).

    Args:
        image: ``(S, S, 3)`` float in [0, 1], the model input the maps refer to.
        cmp: a :class:`explorer.fusion.compare.MapComparison` (``a``, ``b`` ``(gh, gw)``, ``difference``, metrics).
        word, description: the word and the method with its settings (e.g. ``al.describe(method, layer=…)``).
        diverging: the maps are signed (e.g. Integrated Gradients): A and B get a diverging scale centred on 0 too; maps
            with negative values get one anyway.
        patch: a patch (row-major) to outline in every panel.
    """
    a, b, d = (np.asarray(m, np.float64) for m in (cmp.a, cmp.b, cmp.difference))
    S = image.shape[0]
    gh, gw = a.shape
    k = upscale_factor(S, S, min_side)
    src = data_uri(image, min_side=min_side)
    both = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    signed = diverging or lo < 0
    if signed:
        top = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -top, top
    elif hi <= lo:
        hi = lo + 1e-12
    dtop = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 0.0
    titles = [f"A: {name_a}", f"B: {name_b}", "difference B − A"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.075)
    x, y = (np.arange(gw) + 0.5) * S / gw, (np.arange(gh) + 0.5) * S / gh
    for c, (m, axis, name) in enumerate(((a, "coloraxis", "A"), (b, "coloraxis", "B"), (d, "coloraxis2", "B − A")), start=1):
        fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), row=1, col=c)
        fig.add_trace(go.Heatmap(z=json_grid(m), x=x, y=y, coloraxis=axis, opacity=opacity if c < 3 else max(opacity, 0.85),
                                 name=name, hovertemplate="patch (%{y:.0f}, %{x:.0f}) px<br>" + name + ": %{z:.4f}<extra></extra>"),
                      row=1, col=c)
    for c in range(1, 4):
        fig.update_xaxes(range=[0, S], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[S, 0], showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         scaleanchor=f"x{'' if c == 1 else c}", scaleratio=1, row=1, col=c)
    # colour bars beside the panel each belongs to: the shared one after B, the difference's after the last panel
    x_b, x_d = fig.layout.xaxis2.domain[1], fig.layout.xaxis3.domain[1]
    bar = dict(thickness=10, len=0.85, y=0.5, yanchor="middle", xpad=4)
    fig.update_layout(
        coloraxis=dict(colorscale="RdBu" if signed else colorscale, reversescale=signed, cmin=lo, cmax=hi,
                       colorbar=dict(title=dict(text=label, side="right"), x=x_b + 0.005, xanchor="left", **bar)),
        coloraxis2=dict(colorscale=DIFF_COLORSCALE, reversescale=True, cmin=-(dtop or 1.0), cmax=dtop or 1.0,
                        colorbar=dict(title=dict(text="B − A", side="right"), x=x_d + 0.005, xanchor="left", **bar)),
        width=width, margin=dict(l=10, r=50, t=0, b=10), template="plotly_white", dragmode=False)
    # panel titles wider than their panel (a long model name) break into lines here, so the title goes above them
    wrap, extra = wrapped_titles(fig.layout)
    if wrap:
        fig.update_layout(wrap)
    title = word_comparison_title(cmp, word=word, description=description)
    lines = 1 + max(str(a.text).count("<br>") for a in fig.layout.annotations)
    below = 1.4 * SUBPLOT_TITLE_PX * lines + 8  # the panel titles' strip, between the plot area and the title
    top = below + 17 * (title.count("<br>") + 1) + 8
    plot_h = height + extra - top - 10  # the plot area's height: the title sits ``below`` px above it
    # an annotation, not layout.title: it stays just above the panel titles (a title cannot go above the plot area's
    # top in paper coordinates, and at the figure's top it would run under plotly's toolbar)
    fig.add_annotation(text=title, name="title", x=0, y=1 + below / plot_h, xref="paper", yref="paper", xanchor="left",
                       yanchor="bottom", align="left", showarrow=False, font=dict(size=12))
    fig.update_layout(height=height + extra, margin=dict(t=top))
    if patch is not None:
        r, c = divmod(int(patch), gw)
        ph, pw = S / gh, S / gw
        fig.update_layout(shapes=[dict(type="rect", x0=c * pw, x1=(c + 1) * pw, y0=r * ph, y1=(r + 1) * ph, xref=xr, yref=yr,
                                       line=dict(color="red", width=2))
                                  for xr, yr in (("x", "y"), ("x2", "y2"), ("x3", "y3"))])
    return fig
