"""Text sizes of a figure shown narrower than it was built: pure layout arithmetic, no plotly widgets.

A figure built for ``W`` px and shown at ``w < W`` px keeps its height; its panels shrink, and titles sized for ``W``
collide.  :func:`scaled_text_sizes` scales every title, annotation and axis-label font by ``w / W``, never below
:data:`MIN_FONT_PX` (legible on screen) and never above the size it was built with.
"""

from __future__ import annotations

#: Smallest font (px) a scaled figure uses.
MIN_FONT_PX = 9.0
#: Plotly's default font size (px), used where a figure does not set one.
DEFAULT_FONT_PX = 12.0


def text_sizes(layout) -> dict:
    """The font sizes a fitted figure scales: ``{"title": px, "annotations": [px, …], "font": px}``.

    Args:
        layout: a ``plotly.graph_objects.Layout`` (or anything with ``title``, ``annotations`` and ``font``).
    """
    base = float(layout.font.size) if layout.font and layout.font.size else DEFAULT_FONT_PX
    title = layout.title.font.size if layout.title and layout.title.font and layout.title.font.size else None
    anns = [float(a.font.size) if a.font and a.font.size else base for a in (layout.annotations or ())]
    return {"font": base, "title": float(title) if title else None, "annotations": anns}


def scaled_text_sizes(sizes: dict, scale: float, *, min_px: float = MIN_FONT_PX) -> dict:
    """``update_layout`` arguments that scale the fonts of :func:`text_sizes` by ``scale`` (clipped to ``(0, 1]``).

    No font goes below ``min_px`` (or its own size, when that is smaller) or above the size it was built with.

    >>> scaled_text_sizes({"font": 12.0, "title": 14.0, "annotations": [16.0]}, 0.5)
    {'font': {'size': 9.0}, 'title': {'font': {'size': 9.0}}, 'annotations': [{'font': {'size': 9.0}}]}
    """
    s = min(max(float(scale), 0.0), 1.0)

    def fit(px: float) -> float:
        return round(max(min(px, min_px), px * s), 1)

    out = {"font": {"size": fit(sizes["font"])}}
    if sizes.get("title"):
        out["title"] = {"font": {"size": fit(sizes["title"])}}
    if sizes.get("annotations"):
        out["annotations"] = [{"font": {"size": fit(px)}} for px in sizes["annotations"]]
    return out


#: Height (px) of plotly's toolbar: a figure on screen keeps this strip free above its titles.
MODEBAR_PX = 26
#: Plotly's font size for subplot titles (px) when a figure does not set one.
SUBPLOT_TITLE_PX = 16.0
#: Average glyph width as a share of the font size (sans-serif text, as plotly draws it on screen).
CHAR_EM = 0.55


def _wrap(text: str, max_chars: int, max_lines: int) -> list[str]:
    words, lines = text.split(" "), [""]
    for w in words:
        if lines[-1] and len(lines[-1]) + 1 + len(w) > max_chars and len(lines) < max_lines:
            lines.append(w)
        else:
            lines[-1] = f"{lines[-1]} {w}" if lines[-1] else w
    return lines


def wrapped_titles(layout, *, max_lines: int = 3, gap_px: float = 8.0) -> tuple[dict, float]:
    """Subplot titles that are wider than their column, broken into lines at spaces.

    Subplot titles are the paper-anchored annotations placed above a panel (``yanchor="bottom"``); each may use the
    width up to halfway to its neighbours on the same row.  Returns ``(update_layout arguments, extra px the top row
    of titles now needs above the plot)``; no update when every title fits (or the layout has no width).

    >>> import plotly.graph_objects as go
    >>> lay = go.Layout(width=300, margin=dict(l=0, r=0), annotations=[
    ...     dict(text="rollout (mean, discard 0.00)", x=0.25, y=1, xref="paper", yref="paper", yanchor="bottom"),
    ...     dict(text="raw", x=0.75, y=1, xref="paper", yref="paper", yanchor="bottom")])
    >>> upd, extra = wrapped_titles(lay)
    >>> upd["annotations"][0]["text"], upd["annotations"][1], round(extra)
    ('rollout (mean,<br>discard 0.00)', {}, 21)
    """
    anns = list(layout.annotations or ())
    if not anns or not layout.width:
        return {}, 0.0
    m = layout.margin
    plot_w = float(layout.width) - float((m.l if m and m.l is not None else 80) + (m.r if m and m.r is not None else 80))
    titles = [i for i, a in enumerate(anns)
              if a.xref == "paper" and a.yref == "paper" and a.yanchor == "bottom" and a.text and "<br>" not in a.text
              and a.x is not None and a.y is not None]
    rows: dict = {}
    for i in titles:
        rows.setdefault(round(float(anns[i].y), 3), []).append(i)
    top = max(rows) if rows else None
    updates: list[dict] = [{} for _ in anns]
    extra = 0.0
    for y, idx in rows.items():
        xs = sorted((float(anns[i].x), i) for i in idx)
        for k, (x, i) in enumerate(xs):
            gaps = [x - xs[k - 1][0]] if k else []
            gaps += [xs[k + 1][0] - x] if k + 1 < len(xs) else []
            room = (min(gaps) if gaps else 1.0) * plot_w - gap_px
            a = anns[i]
            px = float(a.font.size) if a.font and a.font.size else SUBPLOT_TITLE_PX
            max_chars = max(4, int(room / (CHAR_EM * px)))
            if len(a.text) <= max_chars:
                continue
            lines = _wrap(a.text, max_chars, max_lines)
            if len(lines) > 1:
                updates[i] = {"text": "<br>".join(lines)}
                if y == top:
                    extra = max(extra, (len(lines) - 1) * 1.3 * px)
    if not any(updates):
        return {}, 0.0
    return {"annotations": updates}, extra
