"""A/B comparison of two attention (or explanation) maps of the same image and query: A's map, B's map on one colour
scale, and B − A on a diverging scale centred on 0, titled with how alike the two are.  Pure: a comparison in,
a plotly figure out (the numbers come from :func:`explorer.attention.compare.compare_maps`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .attention import _flat, _image_axes, _still
from .images import data_uri, json_grid, upscale_factor

#: colour scale of the difference panel: blue where B is below A, red where above, white where they agree
DIFF_COLORSCALE = "RdBu_r"
#: longest model name shown in a title (longer ones keep their end: a folder's last parts, a hub id's name)
NAME_CHARS = 40


def short_name(name: str, *, chars: int = NAME_CHARS) -> str:
    """``name`` as it fits a panel title: unchanged when short, else ``"…"`` and its last ``chars - 1`` characters."""
    name = str(name)
    return name if len(name) <= chars else "…" + name[-(chars - 1):]


def comparison_title(comparison, *, name_a: str, name_b: str, what: str, note: str = "") -> str:
    """Two lines: which models and which map, then the agreement numbers, e.g.
    ``"A mini-mae · B mini-mae randomised (seed 0) · raw attention, layer 1, mean of heads, query CLS<br>Spearman ρ(A, B)
    0.42 (1 = the same patch order) · top 2 of 16 patches shared: 1 of 2 · max |B − A| 0.031"``."""
    c = comparison
    n = int(np.asarray(c.a).size)
    first = f"A {short_name(name_a)} · B {short_name(name_b)} · {what}"
    second = (f"Spearman ρ(A, B) {c.spearman:.2f} (1 = the same patch order) · top {c.k} of {n} patches shared: "
              f"{c.top_k_shared} of {c.k} · max |B − A| {c.max_abs_difference:.3g}").replace("-", "−")
    if note:
        second += f" · {note}"
    return f"{first}<br>{second}"


def attention_comparison_figure(image: np.ndarray, comparison, *, name_a: str = "A", name_b: str = "B", what: str = "",
                                note: str = "", marker: dict | None = None, opacity: float = 0.6,
                                colorscale: str = "Viridis", label: str = "attention", cell: int = 250) -> go.Figure:
    """Three panels over the image: A's map, B's map (one shared colour scale) and B − A (diverging, 0 = agree).

    Args:
        image: ``(H, W, 3)`` float in [0, 1] (video: ``(T, H, W, 3)`` frames, the first one is shown).
        comparison: a :class:`explorer.attention.compare.MapComparison`: maps ``a``, ``b``, ``difference`` of shape
            ``(gh, gw)`` (video ``(t, gh, gw)``: drawn as the mean over time steps; the numbers cover every step),
            ``spearman``, ``k``, ``top_k_shared``, ``max_abs_difference``.
        name_a, name_b: the two models' names; ``what``: the map in words (method, layer, head, query).
        note: a caveat added to the title (e.g. the two explain different classes).
        marker: a plotly shape (the query patch) drawn on every panel; ``label``: the unit of A's and B's maps.
    """
    image = _still(image)
    a, b, d = (_flat(np.asarray(m, np.float64)) for m in (comparison.a, comparison.b, comparison.difference))
    H, W = image.shape[:2]
    gh, gw = a.shape
    k = upscale_factor(H, W, 224)
    src = data_uri(image, min_side=224)
    lo = min(0.0, float(min(a.min(), b.min())))
    hi = float(max(a.max(), b.max()))
    top = float(np.abs(d).max())
    top = top if top > 0 else 1e-9  # identical maps: an all-white panel, not a plotly error
    titles = [f"A: {short_name(name_a)}", f"B: {short_name(name_b)}", "B − A"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.1)
    xs, ys = (np.arange(gw) + 0.5) * W / gw, (np.arange(gh) + 0.5) * H / gh
    for c, (m, name, axis) in enumerate(((a, "A", "coloraxis"), (b, "B", "coloraxis"), (d, "B − A", "coloraxis2")), start=1):
        fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, hoverinfo="skip"), row=1, col=c)
        fmt = "%{z:+.4f}" if c == 3 else "%{z:.4f}"
        fig.add_trace(go.Heatmap(z=json_grid(m), x=xs, y=ys, coloraxis=axis, opacity=opacity, name=name,
                                 hovertemplate=f"patch (%{{y:.0f}}, %{{x:.0f}}) px<br>{name}: {fmt}<extra></extra>"),
                      row=1, col=c)
    _image_axes(fig, (H, W), 1, 3)
    bar = dict(thickness=10, len=0.85, xanchor="left")
    end2 = fig.layout.xaxis2.domain[1]
    fig.update_layout(
        coloraxis=dict(colorscale=colorscale, cmin=lo, cmax=hi if hi > lo else lo + 1e-9,
                       colorbar=dict(title=dict(text=label, side="right"), x=end2 + 0.005, **bar)),
        coloraxis2=dict(colorscale=DIFF_COLORSCALE, cmin=-top, cmax=top, cmid=0,
                        colorbar=dict(title=dict(text="B − A", side="right"), x=1.005, **bar)),
        title=dict(text=comparison_title(comparison, name_a=name_a, name_b=name_b, what=what, note=note),
                   font=dict(size=13), x=0.01, xanchor="left"),
        shapes=[dict(marker, xref=f"x{'' if c == 1 else c}", yref=f"y{'' if c == 1 else c}") for c in (1, 2, 3)] if marker else [],
        width=int(3 * cell * max(1.0, W / H)) + 260, height=int(cell * min(1.0, H / W)) + 90,
        margin=dict(l=10, r=60, t=80, b=10), template="plotly_white", dragmode=False)
    return fig
