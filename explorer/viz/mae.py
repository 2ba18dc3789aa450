"""Figures for masked reconstructions (pure: results in, plotly figures out).

* :func:`reconstruction_figure`: original | masked input | reconstruction | reconstruction with
  the visible patches pasted back | per-patch error map.
* :func:`reconstruction_update`: the same panels as a small property dict, so a live
  ``FigureWidget`` is updated in place instead of rebuilt (what keeps sliders fast).
* :func:`ratio_curve`: masked PSNR against the masking ratio, from a sweep.
* :func:`reconstruction_grid`: MAE-paper style grid (rows = images / models, columns = ratios).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import data_uri, upscale_factor
from .notes import attach_notes

PANELS = ("Original", "Masked input", "Reconstruction", "Reconstruction + visible", "Error on hidden patches (MSE)")
ERROR_COLORSCALE = "Viridis"  # perceptually uniform and colour-blind safe


def _fmt_psnr(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.2f} dB"


def panel_titles(result) -> list[str]:
    """Titles of the five panels for ``result`` (ratio and PSNR included)."""
    pct = f"{100 * result.hidden_fraction:.0f}% hidden"
    return [
        PANELS[0],
        f"{PANELS[1]} ({pct})",
        f"{PANELS[2]}",
        f"{PANELS[3]}",
        f"{PANELS[4]}",
    ]


def figure_title(result) -> str:
    """One line: model, strategy, seed, ratio and masked PSNR."""
    s = result.spec
    return (
        f"{result.model.model_id} · {s.strategy} mask · seed {s.seed} · {100 * result.hidden_fraction:.0f}% hidden"
        f" · masked-patch PSNR {_fmt_psnr(result.psnr_masked)}"
    )


def reconstruction_update(result, *, error_max: float | None = None, min_side: int = 224) -> dict:
    """The data the five panels show, as plain values.

    Returns:
        ``{"sources": [4 data URIs], "error": gh x gw nested list (None on visible patches), "error_max": float,
        "titles": [5 str], "title": str}``.
    """
    # Error only where the model had to guess: visible patches are left blank. Blank cells are
    # None, not NaN: NaN is not JSON, and a live FigureWidget sends its data as JSON.
    err_grid = result.patch_error
    err = [[float(e) if m else None for e, m in zip(er, mr)] for er, mr in zip(err_grid, result.mask)]
    hidden = err_grid[result.mask]
    zmax = float(error_max) if error_max is not None else float(max(hidden.max() if hidden.size else 0.0, 1e-6))
    images = (result.image, result.masked_input, result.prediction, result.pasted)
    return {
        "sources": [data_uri(im, min_side=min_side) for im in images],
        "error": err,
        "error_max": zmax,
        "titles": panel_titles(result),
        "title": figure_title(result),
    }


def reconstruction_figure(result, *, error_max: float | None = None, height: int = 330, width: int | None = 1250,
                          min_side: int = 224) -> go.Figure:
    """Five aligned panels for one :class:`explorer.Reconstruction`.

    Axes are in model-input pixels (``0..S``), so a click at ``(x, y)`` on any panel is the
    patch ``(y // p, x // p)``.  The error map uses one colour scale from 0 to ``error_max``
    (pass the sweep's maximum to compare ratios on the same scale).
    """
    upd = reconstruction_update(result, error_max=error_max, min_side=min_side)
    S, p = result.image.shape[0], result.patch_size
    k = upscale_factor(S, S, min_side)  # the factor data_uri() used, so axes stay in model pixels
    fig = make_subplots(rows=1, cols=5, subplot_titles=upd["titles"], horizontal_spacing=0.02)
    for i, src in enumerate(upd["sources"]):
        fig.add_trace(
            go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, name=PANELS[i],
                     hovertemplate="x %{x:.0f}, y %{y:.0f}<extra>" + PANELS[i] + "</extra>"),
            row=1, col=i + 1,
        )
    gh, gw = result.mask.shape
    fig.add_trace(
        go.Heatmap(
            z=upd["error"], x=(np.arange(gw) + 0.5) * p, y=(np.arange(gh) + 0.5) * p, zmin=0, zmax=upd["error_max"],
            colorscale=ERROR_COLORSCALE, name=PANELS[4],
            colorbar=dict(title=dict(text="MSE", side="right"), thickness=10, len=0.8, x=1.0),
            hovertemplate="patch (%{y:.0f}, %{x:.0f}) px<br>MSE %{z:.4f}<extra></extra>",
        ),
        row=1, col=5,
    )
    for c in range(1, 6):
        fig.update_xaxes(range=[0, S], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[S, 0], showticklabels=False, showgrid=False, zeroline=False, scaleanchor=f"x{'' if c == 1 else c}",
                         scaleratio=1, constrain="domain", row=1, col=c)
    fig.update_layout(
        title=dict(text=upd["title"], font=dict(size=13), x=0.01), height=height, width=width, margin=dict(l=10, r=10, t=60, b=10),
        template="plotly_white", dragmode=False,
    )
    return attach_notes(fig, [*result.input.notes, *result.notes])


#: The model's curve: solid, thicker, with markers.
MODEL_STYLE = dict(color="#1f77b4", width=2.5)
#: Baseline curves in the order given: colour, dash and marker, so they differ in grey print too.
BASELINE_STYLES = (("#d62728", "dash", "square"), ("#2ca02c", "dot", "diamond"), ("#ff7f0e", "dashdot", "triangle-up"),
                   ("#7f7f7f", "longdash", "x"))


def _finite(values) -> list:
    """Floats with ``None`` for NaN / inf (NaN is not JSON; plotly leaves the point out)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, np.float64)]


def quality_curves(fig: go.Figure, x, model_name: str, model_y, baselines: "dict[str, np.ndarray] | None" = None, *,
                   unit: str = "dB", legend_rows: int = 1) -> go.Figure:
    """Add the model's curve and one curve per baseline (``{name: (R,) values}`` at the same ``x``) to ``fig``.

    Distinct colours, dashes and markers; one hover box per ``x`` lists every curve's value; the legend sits in a row
    below the axes (reserved in the bottom margin), where it covers no data.  Returns ``fig``.
    """
    fig.add_trace(go.Scatter(x=list(map(float, x)), y=_finite(model_y), mode="lines+markers", name=model_name,
                             line=MODEL_STYLE, marker=dict(size=6), hovertemplate=f"%{{y:.2f}} {unit}"))
    for k, (bname, vals) in enumerate((baselines or {}).items()):
        colour, dash, symbol = BASELINE_STYLES[k % len(BASELINE_STYLES)]
        fig.add_trace(go.Scatter(x=list(map(float, x)), y=_finite(vals), mode="lines+markers", name=bname,
                                 line=dict(color=colour, dash=dash, width=1.8), marker=dict(size=5, symbol=symbol),
                                 hovertemplate=f"%{{y:.2f}} {unit}"))
    rows = max(1, int(legend_rows))
    fig.update_layout(hovermode="x unified", showlegend=True,
                      legend=dict(orientation="h", x=0, xanchor="left", yref="container", y=0, yanchor="bottom",
                                  font=dict(size=11), tracegroupgap=0))
    fig.update_layout(margin=dict(b=45 + 22 * rows))
    return fig


def ratio_curve(sweep, *, baselines: dict[str, np.ndarray] | None = None, current: float | None = None, title: str | None = None) -> go.Figure:
    """Masked PSNR (dB) against masking ratio for a :class:`explorer.ReconstructionSweep`.

    Args:
        baselines: extra curves, name → ``(R,)`` PSNR at the sweep's ratios; the apps pass the sweep's own
            ``sweep.baseline_psnr`` (Telea inpainting and mean colour fill on the same masks).
        current: ratio to mark with a vertical line (the figure's first shape).
    """
    fig = go.Figure()
    quality_curves(fig, sweep.ratios, sweep.results[0].model.model_id, sweep.psnr_curve, baselines)
    if current is not None:
        fig.add_vline(x=current, line=dict(color="grey", dash="dot"))
    b = fig.layout.margin.b  # the legend row below the axes; the plot keeps the height it had without one
    fig.update_layout(
        title=title or f"Masked-patch PSNR vs masking ratio ({sweep.results[0].spec.strategy}, seed {sweep.results[0].spec.seed})",
        xaxis_title="masking ratio", yaxis_title="PSNR over hidden patches (dB)", template="plotly_white", height=280 + b,
        width=700, margin=dict(l=50, r=10, t=50, b=b),
    )
    return fig


def reconstruction_grid(rows: "list[tuple[str, list]]", *, show: str = "pasted", include_original: bool = True,
                        cell: int = 150) -> go.Figure:
    """MAE-paper style grid.

    Args:
        rows: ``[(row_label, [Reconstruction, ...]), ...]``; every row has the same number of results.
        show: ``"pasted"`` (reconstruction + visible), ``"prediction"`` or ``"masked"`` per cell;
            ``"pair"`` shows masked input and pasted reconstruction side by side for each result.
        include_original: first column is the original image.
    """
    if not rows:
        raise ValueError("reconstruction_grid needs at least one row")
    n = len(rows[0][1])
    per = 2 if show == "pair" else 1
    cols = n * per + (1 if include_original else 0)
    titles = []
    for r, (label, results) in enumerate(rows):
        if len(results) != n:
            raise ValueError("every row needs the same number of results")
        if include_original:
            titles.append(f"{label}: original" if r == 0 else label)
        for res in results:
            pct = f"{100 * res.hidden_fraction:.0f}%"
            if show == "pair":
                titles += [f"masked {pct}" if r == 0 else "", f"{_fmt_psnr(res.psnr_masked)}"]
            else:
                titles.append(f"{pct} · {_fmt_psnr(res.psnr_masked)}")
    fig = make_subplots(rows=len(rows), cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.06)
    for r, (label, results) in enumerate(rows, start=1):
        c = 1
        if include_original:
            fig.add_trace(go.Image(source=data_uri(results[0].image, min_side=cell), name="original"), row=r, col=c)
            c += 1
        for res in results:
            panels = {"pasted": [res.pasted], "prediction": [res.prediction], "masked": [res.masked_input],
                      "pair": [res.masked_input, res.pasted]}[show]
            for im in panels:
                fig.add_trace(go.Image(source=data_uri(im, min_side=cell), name=label), row=r, col=c)
                c += 1
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=cell * len(rows) + 80, width=cell * cols + 40, margin=dict(l=10, r=10, t=50, b=10),
                      template="plotly_white")
    fig.update_annotations(font_size=10)
    return attach_notes(fig, [n for _label, results in rows for res in results for n in (*res.input.notes, *res.notes)])
