"""Paper styling: turn any explorer figure into one sized and typeset for a venue.

Pure plotly (no files, no browser): :func:`paper_style` takes a figure and a
:class:`explorer.export.Preset` and returns a styled copy — exact width, fonts in points,
panel letters (a, b, c, ...), labelled colour bars and colour-blind-safe colour scales.
"""

from __future__ import annotations

import copy
import string

import plotly.graph_objects as go

#: Colour scales that stay readable for the common colour-vision deficiencies (perceptually
#: uniform sequential maps and the diverging maps built from blue/orange or blue/red ends).
SAFE_COLORSCALES = {
    "viridis", "cividis", "plasma", "inferno", "magma", "greys", "gray", "blues", "purples", "oranges",
    "ylgnbu", "ylorbr", "rdbu", "rdbu_r", "puor", "brbg", "piyg", "prgn", "viridis_r", "cividis_r", "greys_r",
    "plasma_r", "inferno_r", "magma_r", "blues_r",
}
#: Replacement for scales that are not safe (jet, rainbow, hot, ...).
FALLBACK_COLORSCALE = "Viridis"


_NAMED: dict | None = None


def _key(cs) -> tuple:
    return tuple((round(float(a), 6), str(b).replace(" ", "").lower()) for a, b in cs)


def _scale_name(cs) -> str | None:
    """Lower-case name of a colour scale given as a name or as plotly's expanded list; None if custom."""
    global _NAMED
    if cs is None:
        return None
    if isinstance(cs, str):
        return cs.lower()
    if _NAMED is None:
        import plotly.colors as pc

        _NAMED = {}
        for n in pc.named_colorscales():
            for suffix in ("", "_r"):
                try:
                    key = _key(pc.get_colorscale(n + suffix))
                except Exception:
                    continue
                _NAMED.setdefault(key, n + suffix)
    try:
        key = _key(cs)
    except (TypeError, ValueError):
        return None
    return _NAMED.get(key)  # explicit lists of colours are the caller's choice


def _subplot_domains(fig: go.Figure) -> list[tuple[str, tuple, tuple]]:
    """``[(axis suffix, x domain, y domain)]`` of every subplot that has a trace."""
    seen, out = set(), []
    layout = fig.layout
    for tr in fig.data:
        xa = getattr(tr, "xaxis", None) or "x"
        ya = getattr(tr, "yaxis", None) or "y"
        if (xa, ya) in seen:
            continue
        seen.add((xa, ya))
        xd = layout[f"xaxis{xa[1:]}"].domain or (0, 1)
        yd = layout[f"yaxis{ya[1:]}"].domain or (0, 1)
        out.append((xa[1:], tuple(xd), tuple(yd)))
    # Reading order: top row first, then left to right.
    out.sort(key=lambda d: (-round(d[2][1], 3), round(d[1][0], 3)))
    return out


def paper_style(fig: go.Figure, preset, *, height_in: float | None = None, letters: bool = True,
                title: bool = False, letter_offset: int = 0) -> tuple[go.Figure, list[str]]:
    """A copy of ``fig`` styled for ``preset``.

    Args:
        fig: any figure built by :mod:`explorer.viz`.
        preset: :class:`explorer.export.Preset` (or a preset name).
        height_in: figure height in inches; default keeps ``fig``'s aspect ratio.
        letters: add bold panel letters at the top-left corner of every subplot.
        title: keep the figure's title (papers put it in the LaTeX caption instead).
        letter_offset: start lettering at ``"a" + letter_offset``.
    Returns:
        ``(figure, notes)``; notes list every change a reader should know about (e.g. a
        colour scale that was replaced).
    """
    from .presets import get_preset

    p = get_preset(preset)
    out = go.Figure(copy.deepcopy(fig.to_dict()))
    notes: list[str] = []
    w0 = out.layout.width or 1000
    h0 = out.layout.height or 450
    width = p.width_px
    height = height_in * 96.0 if height_in else h0 * width / w0
    body, tick = p.px(p.font_pt), p.px(p.tick_pt)
    out.update_layout(
        width=width, height=height, font=dict(family=p.font_family, size=body, color="black"),
        paper_bgcolor="white", plot_bgcolor="white", dragmode=False, hovermode=False,
        legend=dict(font=dict(size=tick)),
    )
    if not title:
        out.update_layout(title=None)
    top = (body * 1.6 if any(a.yref == "paper" for a in out.layout.annotations) else 4) + (body * 1.3 if title else 0)
    out.update_layout(margin=dict(l=4 + (body * 3 if _has_tick_labels(out, "y") else 0), r=4,
                                  t=top + (p.px(p.letter_pt) * 0.2 if letters else 0),
                                  b=4 + (body * 3 if _has_tick_labels(out, "x") else 0)
                                  + (body * 1.6 if any(a.yref == "paper" and a.yanchor == "top" and (a.y or 0) <= 0.001
                                                       for a in out.layout.annotations) else 0)))
    out.update_xaxes(tickfont=dict(size=tick), title_font=dict(size=body))
    out.update_yaxes(tickfont=dict(size=tick), title_font=dict(size=body))
    out.update_annotations(font=dict(size=body, family=p.font_family))
    for i, tr in enumerate(out.data):
        tr.uid = f"t{i}"  # plotly.js names gradients and clip paths after trace uids: random unless set
        cs = getattr(tr, "colorscale", None) if "colorscale" in tr else None
        name = _scale_name(cs)
        if name is not None and name not in SAFE_COLORSCALES:
            tr.colorscale = FALLBACK_COLORSCALE
            notes.append(f"colour scale {name!r} of trace {tr.name!r} replaced by {FALLBACK_COLORSCALE} (colour-blind safe)")
        if hasattr(tr, "colorbar") and getattr(tr, "showscale", None) is not False and tr.type in ("heatmap", "contour"):
            cb = tr.colorbar
            label = (cb.title.text if cb.title and cb.title.text else None) or tr.name or "value"
            tr.colorbar.update(title=dict(text=label, side="right", font=dict(size=body)), tickfont=dict(size=tick),
                               thickness=max(6.0, body * 0.8), outlinewidth=0)
    for ax in [k for k in out.layout if k.startswith("coloraxis")]:
        ca = out.layout[ax]
        name = _scale_name(ca.colorscale)
        if name is not None and name not in SAFE_COLORSCALES:
            ca.colorscale = FALLBACK_COLORSCALE
            notes.append(f"colour scale {name!r} of {ax} replaced by {FALLBACK_COLORSCALE} (colour-blind safe)")
        label = (ca.colorbar.title.text if ca.colorbar and ca.colorbar.title and ca.colorbar.title.text else "value")
        ca.colorbar.update(title=dict(text=label, side="right", font=dict(size=body)), tickfont=dict(size=tick),
                           thickness=max(6.0, body * 0.8), outlinewidth=0)
    if not height_in:
        h = _content_height(out)
        if h is not None:
            out.update_layout(height=h)
    if letters:
        titles = [a for a in out.layout.annotations if a.xref == "paper" and a.yref == "paper" and a.yanchor == "bottom"]
        for i, (_suffix, xd, yd) in enumerate(_subplot_domains(out)):
            letter = f"<b>{_letter(i + letter_offset)}</b>"
            # A subplot title centred over this panel gets the letter in front (no collision);
            # otherwise the letter sits above the panel's top-left corner.
            own = [a for a in titles if xd[0] <= a.x <= xd[1] and abs(a.y - yd[1]) < 0.02 and a.text]
            if own:
                own[0].text = f"<span style='font-size:{p.px(p.letter_pt):.2f}px'>{letter}</span>  {own[0].text}"
                continue
            out.add_annotation(
                text=letter, x=xd[0], y=yd[1], xref="paper", yref="paper",
                xanchor="left", yanchor="bottom", showarrow=False, font=dict(size=p.px(p.letter_pt), family=p.font_family),
            )
    return out, notes


def _content_height(fig: go.Figure) -> float | None:
    """Height (px) at which aspect-locked panels (images) fill their domains; None if there are none."""
    lay = fig.layout
    m = lay.margin
    plot_w = float(lay.width) - float(m.l or 0) - float(m.r or 0)
    need = 0.0
    for suffix, xd, yd in _subplot_domains(fig):
        xa, ya = lay[f"xaxis{suffix}"], lay[f"yaxis{suffix}"]
        has_image = any(tr.type == "image" and (tr.xaxis or "x")[1:] == suffix for tr in fig.data)
        if not (has_image or ya.scaleanchor):
            continue
        xr = xa.range or (0, 1)
        yr = ya.range or (0, 1)
        aspect = abs(yr[1] - yr[0]) / max(abs(xr[1] - xr[0]), 1e-9) if (xa.range and ya.range) else 1.0
        need = max(need, plot_w * (xd[1] - xd[0]) * aspect / max(yd[1] - yd[0], 1e-9))
    if need <= 0:
        return None
    return need + float(m.t or 0) + float(m.b or 0)


def _letter(i: int) -> str:
    letters = string.ascii_lowercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def _has_tick_labels(fig: go.Figure, axis: str) -> bool:
    for k in fig.layout:
        if k.startswith(f"{axis}axis"):
            ax = fig.layout[k]
            if ax.showticklabels is not False and ax.visible is not False:
                return True
    return False


def add_footnote(fig: go.Figure, notes: "list[str]", preset) -> go.Figure:
    """A copy of ``fig`` (already :func:`paper_style`-d) with ``notes`` under the panels, in the preset's tick size,
    wrapped to the figure's width; the figure grows by the footnote's height."""
    import textwrap

    from .presets import get_preset

    if not notes:
        return fig
    p = get_preset(preset)
    out = go.Figure(fig)
    size = p.px(p.tick_pt)
    width = float(out.layout.width or p.width_px)
    chars = max(20, int(width / (size * 0.52)))
    lines = [ln for n in notes for ln in textwrap.wrap(f"Note: {n}", chars)]
    height = len(lines) * size * 1.25 + 4
    m = out.layout.margin
    bottom = float(m.b or 0)
    out.update_layout(height=float(out.layout.height or 0) + height, margin=dict(b=bottom + height))
    out.add_annotation(text="<br>".join(lines), x=0, y=0, xref="paper", yref="paper", xanchor="left", yanchor="top",
                       yshift=-bottom, align="left", showarrow=False, font=dict(size=size, family=p.font_family, color="black"))
    return out
