"""A/B comparison of two masked reconstructions: two checkpoints (or a checkpoint and its randomised copy) on the
same input under the same mask, side by side, with their difference and the metric delta.  Pure: results in, plotly
figure out."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, upscale_factor
from .mae import _fmt_psnr

#: Colour scale of the difference panel (0 = the two agree).
DIFF_COLORSCALE = "Magma"


def comparison_title(a, b, *, name_a: str, name_b: str) -> str:
    """``"A mini-mae 20.7 dB · B randomised 12.3 dB · B − A −8.4 dB (masked-patch PSNR, same 147 patches hidden)"``."""
    d = b.psnr_masked - a.psnr_masked
    delta = f"{d:+.1f} dB".replace("-", "−") if math.isfinite(d) else "n/a"
    return (f"A {name_a} {_fmt_psnr(a.psnr_masked)} · B {name_b} {_fmt_psnr(b.psnr_masked)} · B − A {delta} "
            f"(masked-patch PSNR, the same {int(a.mask.sum())} patches hidden)")


def pixel_difference(a, b) -> np.ndarray:
    """``(S, S)`` float: mean over colour channels of ``|A − B|`` of the two predictions on hidden pixels, ``nan`` on
    visible ones (both show the input there).

    Raises:
        ValueError: the two results do not share their input or mask (not an A/B comparison).
    """
    if a.image.shape != b.image.shape or not np.array_equal(a.mask, b.mask) or not np.array_equal(a.image, b.image):
        raise ValueError("An A/B comparison needs the same input and the same mask in both reconstructions.")
    diff = np.abs(np.asarray(a.prediction, np.float64) - np.asarray(b.prediction, np.float64)).mean(axis=-1)
    return np.where(a.pixel_mask, diff, np.nan)


def comparison_figure(a, b, *, name_a: str = "A", name_b: str = "B", height: int = 300, width: int = 960,
                      min_side: int = 224) -> go.Figure:
    """A's and B's reconstructions (visible patches pasted back) and ``|A − B|`` on hidden pixels.

    Args:
        a, b: :class:`explorer.Reconstruction` of the same input under the same mask ``(gh, gw)``.
        name_a, name_b: what the two models are called in the titles.
    """
    diff = pixel_difference(a, b)
    S = a.image.shape[0]
    k = upscale_factor(S, S, min_side)
    titles = [f"A: {name_a} ({_fmt_psnr(a.psnr_masked)})", f"B: {name_b} ({_fmt_psnr(b.psnr_masked)})",
              "|A − B| on hidden pixels"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.02)
    for c, (r, name) in enumerate(((a, name_a), (b, name_b)), start=1):
        fig.add_trace(go.Image(source=data_uri(r.pasted, min_side=min_side), x0=0, y0=0, dx=1 / k, dy=1 / k, name=name,
                               hovertemplate="x %{x:.0f}, y %{y:.0f}<extra>" + name + "</extra>"), row=1, col=c)
    step = max(1, S // 112)  # at most 112 x 112 cells on screen
    small = diff[::step, ::step]
    top = float(np.nanmax(diff)) if np.isfinite(diff).any() else 1.0
    fig.add_trace(go.Heatmap(z=[[None if not math.isfinite(v) else round(float(v), 4) for v in row] for row in small],
                             x=(np.arange(small.shape[1]) + 0.5) * step, y=(np.arange(small.shape[0]) + 0.5) * step,
                             zmin=0, zmax=max(top, 1e-6), colorscale=DIFF_COLORSCALE, name="|A − B|",
                             colorbar=dict(title=dict(text="|A − B|", side="right"), thickness=10, len=0.8, x=1.0),
                             hovertemplate="x %{x:.0f}, y %{y:.0f}<br>|A − B| %{z:.3f}<extra></extra>"), row=1, col=3)
    for c in range(1, 4):
        fig.update_xaxes(range=[0, S], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[S, 0], showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         scaleanchor=f"x{'' if c == 1 else c}", scaleratio=1, row=1, col=c)
    fig.update_layout(title=dict(text=comparison_title(a, b, name_a=name_a, name_b=name_b), font=dict(size=13), x=0.01),
                      height=height, width=width, margin=dict(l=10, r=10, t=60, b=10), template="plotly_white",
                      dragmode=False)
    return fig
