"""The UniFormer local / global figure (pure: a :class:`explorer.attention.local_global.RelationView` in, plotly out).

:func:`relations_figure` draws one view of one query token, two rows of five panels:

======================  =========================  =========================  ===========================  =====================
input (click a token)   stage 1 · local: receptive  stage 2 · local: receptive  stage 3 · global: attention  stage 4 · global: attention
                        field over the input        field over the input        of the token, over the input of the token, over the input
rollout: classifier     stage 1 kernel              stage 2 kernel              rollout: the token           relevance of the class
======================  =========================  =========================  ===========================  =====================

Colour scales (one colour bar each, named in the figure's note):

* **attention**: softmax probability, 0 to the largest value of both global panels (equal colours = equal weight);
* **effective receptive field**: the share of ``|∂ token / ∂ pixels|`` per pixel, 0 to the largest of both local panels;
  the dashed box is the theoretical receptive field, the red box the token;
* **kernel**: a head's kernel (signed mean of its channels) on a symmetric red-blue scale, or the mean ``|w|`` over every
  channel on a sequential one, 0 to the largest; video kernels are drawn per time offset side by side (Δt = −2 … +2);
* **rollout / relevance**: each scaled to [0, 1] of its own maximum (their units differ).

Video views show one frame (``frame``) of the clip: the maps of the stage time step that frame falls in.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .fit import wrapped_titles
from .images import data_uri, json_grid, upscale_factor
from .notes import attach_notes

#: Largest number of heatmap cells per side of an effective-receptive-field panel (finer maps are sum-pooled).
ERF_CELLS = 64
#: The token's outline and the theoretical receptive field's.
TOKEN_LINE = dict(color="red", width=2)
FIELD_LINE = dict(color="white", width=2, dash="dash")
FIELD_EDGE = dict(color="black", width=1, dash="dash")


def _pool(m: np.ndarray, cells: int) -> tuple[np.ndarray, int]:
    """Sum-pool a ``(H, W)`` map by the smallest integer factor that brings both sides to at most ``cells``."""
    H, W = m.shape
    f = max(1, int(np.ceil(max(H, W) / cells)))
    while H % f or W % f:
        f += 1
    return m.reshape(H // f, f, W // f, f).sum((1, 3)), f


def _token_time(view, frame: int, grid: tuple) -> int:
    """The stage time step that input frame ``frame`` falls in."""
    T = view.size[0]
    return min(int(frame) * int(grid[0]) // int(T), int(grid[0]) - 1)


def _still(view, frame: "int | None") -> np.ndarray:
    return view.pixels[frame] if view.video else view.pixels


def _frame_map(view, m: np.ndarray, grid: tuple, frame: "int | None") -> np.ndarray:
    """A stage-grid map ``(*grid)`` → the 2-D map of the frame shown."""
    m = np.asarray(m)
    return m[_token_time(view, frame, grid)] if view.video else m


def kernel_mosaic(kernel: np.ndarray) -> np.ndarray:
    """``(k, k)`` as it is; ``(k_t, k, k)`` → ``(k, k_t·(k+1) − 1)``: the time offsets side by side, NaN between."""
    k = np.asarray(kernel, np.float64)
    if k.ndim == 2:
        return k
    kt, kh, kw = k.shape
    out = np.full((kh, kt * (kw + 1) - 1), np.nan)
    for t in range(kt):
        out[:, t * (kw + 1): t * (kw + 1) + kw] = k[t]
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    hi = np.nanmax(m) if np.isfinite(m).any() else 0.0
    return m / hi if hi > 0 else np.zeros_like(m)


def _rect(box, **line) -> dict:
    (y0, y1), (x0, x1) = box
    return dict(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=line)


def head_text(head) -> str:
    return "mean of heads" if head == "mean" else f"head {head}"


def stage_title(st, head="mean") -> str:
    """``"S3 global · block 2/2 · attention, mean of heads"``."""
    depth = f"block {st.block + 1}/{st.depth}" if st.depth else "no blocks"
    if st.kind == "local":
        return f"S{st.stage} local · {depth} · receptive field"
    return f"S{st.stage} global · {depth} · attention, {head_text(head)}"


def relations_figure(view, *, heads=("mean", "mean", "mean", "mean"), frame: "int | None" = None,
                     opacity: float = 0.6, colorscale: str = "Viridis", cell: int = 180, wrap: bool = True,
                     compact: bool = False) -> go.Figure:
    """Every stage's relation of the query token of ``view`` (see the module docstring for the panels and scales).

    Args:
        view: a :class:`explorer.attention.local_global.RelationView`.
        heads: per stage, ``"mean"`` or a head index: global stages show that head's attention (``"mean"``: the mean
            over heads), local stages that channel group's kernel (``"mean"``: the mean magnitude over channels).
        frame: video: the input frame shown (default: the query's frame).
        opacity: of the maps over the input; colorscale: of attention, receptive fields, rollout and relevance.
        wrap: break titles wider than their panel into lines (on screen; an export leaves them whole: the paper
            layout wraps them for the column it is exported to).
        compact: short panel titles ("S3 global", "S1 kernel" …) that fit five panels across a paper column; the
            block, head and channel group of each panel then go into the caption (what exports use).
    Returns:
        a figure of 2 × 5 panels; its meta notes explain the colour scales (they go under an exported figure).
    Raises:
        ValueError: a head or frame out of range.
    """
    heads = tuple(heads)
    if len(heads) != 4:
        raise ValueError(f"Give one head per stage (4), got {heads}.")
    size = view.size
    if view.video:
        frame = view.query[0] if frame is None else int(frame)
        if not 0 <= frame < size[0]:
            raise ValueError(f"frame {frame} is outside the clip (0..{size[0] - 1}).")
    else:
        frame = None
    H, W = size[-2:]
    image = _still(view, frame)
    k = upscale_factor(H, W, 160)
    src = data_uri(image, min_side=160)
    st = view.stages
    qy, qx = view.query[-2:]
    titles = _plain_titles(view, heads, frame)
    titles[0] += " · click a token"
    titles[-1] = titles[-1][:60]
    if compact:
        titles = ["input" + (f", frame {frame + 1}" if view.video else "")]
        titles += [f"S{x.stage} {x.kind}" + ("" if heads[i] == "mean" else f", {'group' if x.kind == 'local' else 'head'} "
                                                                       f"{heads[i]}") for i, x in enumerate(st)]
        titles += ["rollout<br>(class)", "S1 kernel", "S2 kernel", "rollout<br>(token)", "relevance"]
    fig = make_subplots(rows=2, cols=5, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.22 if compact else 0.12)  # compact: two-line titles over row 2
    image_panels = [(1, c) for c in range(1, 6)] + [(2, 1), (2, 4), (2, 5)]
    for r, c in image_panels:
        fig.add_trace(go.Image(source=src, x0=0, y0=0, dx=1 / k, dy=1 / k, name="input",
                               hovertemplate="row %{y:.0f}, column %{x:.0f}<extra>click: query</extra>"), r, c)
    shapes = []

    def axes_ref(r, c):
        i = (r - 1) * 5 + c
        return ("x" if i == 1 else f"x{i}"), ("y" if i == 1 else f"y{i}")

    def token_box(r, c, stage):
        s = st[stage]
        t = s.token[-2:]
        sy, sx = s.stride[-2:]
        xr, yr = axes_ref(r, c)
        shapes.append(dict(_rect(((t[0] * sy, (t[0] + 1) * sy), (t[1] * sx, (t[1] + 1) * sx)), **TOKEN_LINE),
                           xref=xr, yref=yr))

    def overlay(r, c, m, *, axis, name, fmt):
        gh, gw = m.shape
        fig.add_trace(go.Heatmap(z=json_grid(m), x=(np.arange(gw) + 0.5) * W / gw, y=(np.arange(gh) + 0.5) * H / gh,
                                 coloraxis=axis, opacity=opacity, name=name,
                                 hovertemplate=name + ": %{z:" + fmt + "}<extra>click: query</extra>"), r, c)

    # row 1: the query on the input, then every stage over the input
    xr, yr = axes_ref(1, 1)
    shapes.append(dict(type="circle", x0=qx - 2, x1=qx + 2, y0=qy - 2, y1=qy + 2, line=TOKEN_LINE, fillcolor="red",
                       xref=xr, yref=yr))
    erf_max = att_max = 0.0
    for i, s in enumerate(st):
        c = i + 2
        if s.depth == 0:
            continue
        if s.kind == "local":
            e = s.effective[frame] if view.video else s.effective
            pooled, f = _pool(e, ERF_CELLS)
            pooled = pooled / float(f * f)  # share per pixel
            pooled[pooled <= 0] = np.nan  # outside the field the input shows
            erf_max = max(erf_max, float(np.nanmax(pooled)) if np.isfinite(pooled).any() else 0.0)
            overlay(1, c, pooled, axis="coloraxis2", name=f"S{s.stage} receptive field", fmt=".2e")
            field = s.field[-2:]
            if not view.video or s.field[0][0] <= frame <= s.field[0][1]:
                xr, yr = axes_ref(1, c)
                box = ((field[0][0], field[0][1] + 1), (field[1][0], field[1][1] + 1))
                shapes.append(dict(_rect(box, **FIELD_EDGE), xref=xr, yref=yr))
                shapes.append(dict(_rect(box, **FIELD_LINE), xref=xr, yref=yr))
        else:
            m = _frame_map(view, s.head_map(heads[i]), s.grid, frame)
            att_max = max(att_max, float(np.nanmax(m)))
            overlay(1, c, m, axis="coloraxis", name=f"S{s.stage} attention", fmt=".4f")
        token_box(1, c, i)
    # row 2: rollout (classifier) | kernels | rollout (token) | relevance
    g3 = st[2].grid
    overlay(2, 1, _unit(_frame_map(view, view.rollout_classifier, g3, frame)), axis="coloraxis4", name="rollout",
            fmt=".3f")
    overlay(2, 4, _unit(_frame_map(view, view.rollout, g3, frame)), axis="coloraxis4", name="rollout", fmt=".3f")
    overlay(2, 5, _unit(_frame_map(view, view.relevance, g3, frame)), axis="coloraxis4", name="relevance", fmt=".3f")
    token_box(2, 4, 3)
    signed = False
    kmax = 0.0
    for i in (0, 1):
        s = st[i]
        if s.depth == 0:
            continue
        kn = kernel_mosaic(s.head_kernel(heads[i]))
        signed = signed or heads[i] != "mean"
        kmax = max(kmax, float(np.nanmax(np.abs(kn))))
        kh, kw = kn.shape
        fig.add_trace(go.Heatmap(z=json_grid(kn), x=np.arange(kw) - (kh // 2 if not view.video else 0),
                                 y=np.arange(kh) - kh // 2, coloraxis="coloraxis3", name=f"S{s.stage} kernel",
                                 hovertemplate="offset (%{y}, %{x}): %{z:.4f}<extra></extra>"), 2, i + 2)
    # axes: image panels in pixels, kernel panels in offsets
    for r, c in image_panels:
        fig.update_xaxes(range=[0, W], showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=r, col=c)
        xr, _ = axes_ref(r, c)
        fig.update_yaxes(range=[H, 0], showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         scaleanchor=xr, scaleratio=1, row=r, col=c)
    for c in (2, 3):
        xr, _ = axes_ref(2, c)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=2, col=c)
        fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                         scaleanchor=xr, scaleratio=1, row=2, col=c)
    bar = dict(thickness=9, len=0.42, xpad=4)
    kscale = dict(colorscale="RdBu_r", cmin=-kmax, cmax=kmax) if signed else dict(colorscale="Viridis", cmin=0, cmax=kmax)
    fig.update_layout(
        coloraxis=dict(colorscale=colorscale, cmin=0, cmax=att_max or 1.0,
                       colorbar=dict(title=dict(text="attention", side="right"), x=1.0, y=0.78, **bar)),
        coloraxis2=dict(colorscale="Inferno", cmin=0, cmax=erf_max or 1.0,
                        colorbar=dict(title=dict(text="ERF share", side="right"), x=1.07, y=0.78, exponentformat="e",
                                      **bar)),
        coloraxis3=dict(**kscale, colorbar=dict(title=dict(text="kernel" + (" (signed)" if signed else " |w|"),
                                                           side="right"), x=1.0, y=0.22, **bar)),
        coloraxis4=dict(colorscale=colorscale, cmin=0, cmax=1,
                        colorbar=dict(title=dict(text="rollout / relevance", side="right"), x=1.07, y=0.22, **bar)),
        shapes=shapes, width=5 * cell + 150, height=2 * cell + 110, margin=dict(l=10, r=10, t=40, b=10),
        template="plotly_white", dragmode=False, showlegend=False)
    scales = (f"attention 0–{att_max or 1.0:.3g} (Viridis), ERF share 0–{erf_max or 1.0:.2e} (Inferno), kernel "
              + (f"−{kmax:.3g}–{kmax:.3g} (RdBu, red > 0)" if signed else f"|w| 0–{kmax:.3g} (Viridis)")
              + ", rollout / relevance 0–1 (Viridis)")
    if compact:  # five panels across a column leave no room for four colour bars: their ranges go into the caption
        for ax in ("coloraxis", "coloraxis2", "coloraxis3", "coloraxis4"):
            fig.layout[ax].showscale = False
        fig.update_layout(width=5 * cell + 20)
    if wrap:
        upd, extra = wrapped_titles(fig.layout, max_lines=2)
        if upd:
            fig.update_layout(**upd)
            fig.layout.height = fig.layout.height + extra
            fig.layout.margin.t = fig.layout.margin.t + extra
    caption = figure_caption(view, heads=heads, frame=frame)
    if compact:  # what the long titles and the colour bars said
        caption += (" Panels, left to right: " + "; ".join(_plain_titles(view, heads, frame)) + ". Colour scales (dark = "
                    "low): " + scales + ".")
    return attach_notes(fig, [caption, *view.notes])


def _plain_titles(view, heads, frame) -> list[str]:
    """The full panel titles of :func:`relations_figure` (for the caption of a compact figure)."""
    st = view.stages
    top = ["input" + (f" · frame {frame + 1}/{view.size[0]}" if view.video else "")]
    top += [stage_title(x, heads[i]) for i, x in enumerate(st)]
    kern = [f"S{i + 1} kernel · " + ("mean |w|" if heads[i] == "mean" else f"channel group {heads[i]}")
            + (" · Δt = −2 … +2, left to right" if view.video else "") for i in (0, 1)]
    return top + ["rollout S3→S4 · the classifier", *kern, "rollout S3→S4 · the token's S4 token",
                  f"relevance · class {view.target_label}"]


def figure_caption(view, *, heads=("mean",) * 4, frame: "int | None" = None) -> str:
    """What the figure shows and how its colour scales read, in one paragraph (the export puts it under the figure)."""
    q = f"pixel (row {view.query[-2]}, column {view.query[-1]})" + (f" of frame {view.query[0] + 1}" if view.video else "")
    fields = []
    for s in view.stages:
        if s.kind == "local" and s.depth:
            sides = [str(hi - lo + 1) for lo, hi in s.field]
            box = (f"{sides[0]} frames × " if view.video else "") + "×".join(sides[-2:]) + " px"
            fields.append(f"S{s.stage}: theoretical {box}, 95% of the effective field in {s.area95} of {s.field_area} "
                          f"{'positions' if view.video else 'px'}")
    return (f"{view.model_id} on {view.name}, query {q}; class {view.target_label} (p = {view.probability:.2f}). "
            "Attention: softmax probability, one scale for both global stages. ERF share: |∂ token / ∂ pixels| per "
            "pixel (Luo et al. 2016); dashed: theoretical receptive field, red: the token; "
            + "; ".join(fields) + ". Kernel: mean |w| over channels (or one channel group's signed mean). Rollout "
            "(0.5·A + 0.5·I through stages 3 and 4, the patch merge averaging each S4 token's 2×2 S3 tokens) and "
            "relevance (Chefer et al. 2021) each scaled to [0, 1].")
