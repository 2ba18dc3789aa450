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
