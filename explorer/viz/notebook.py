"""Static figures in a notebook fit its output area.

A figure built for a paper column or a wide screen has a fixed width (a five-panel reconstruction row is 1250 px).
Shown as it is in JupyterLab it overflows the output area beside the file browser or in a narrow window, and the
notebook scrolls sideways.  Once :mod:`explorer.viz` is imported, plotly's JupyterLab output (the
``plotly_mimetype`` renderer) is replaced by :class:`FittedMimeRenderer`: a figure wider than
:data:`FIT_ABOVE_PX` is drawn at the output area's width (autosized, and re-fitted when the area changes size), its
height kept.  Narrower figures, exports (kaleido) and other renderers are untouched.  ``notebook_fit(False)``
switches it off.
"""

from __future__ import annotations

import copy

import plotly.io as pio
from plotly.io._base_renderers import PlotlyRenderer

#: Figures with a fixed width above this (px) are fitted to the output area; narrower ones fit any notebook as built.
FIT_ABOVE_PX = 800
#: The name of the renderer in ``plotly.io.renderers``.
RENDERER = "explorer_fit"


def fitted_figure_dict(fig_dict: dict, *, above: float = FIT_ABOVE_PX) -> dict:
    """``fig_dict`` (a figure's ``to_dict()``) as a notebook draws it: a fixed width above ``above`` px removed and
    ``autosize`` on, so it takes the output area's width; anything else is returned as it is.  The input is never
    modified."""
    layout = fig_dict.get("layout") or {}
    width = layout.get("width")
    if not isinstance(width, (int, float)) or width <= above:
        return fig_dict
    out = dict(fig_dict)
    out["layout"] = {k: copy.deepcopy(v) for k, v in layout.items() if k != "width"}
    out["layout"]["autosize"] = True
    return out


class FittedMimeRenderer(PlotlyRenderer):
    """plotly's JupyterLab renderer (``application/vnd.plotly.v1+json``), with wide figures fitted to the output area
    (:func:`fitted_figure_dict`) and drawn responsive (re-fitted when the area changes size)."""

    def __init__(self, config: dict | None = None):
        super().__init__(config={"responsive": True, **(config or {})})

    def to_mimebundle(self, fig_dict: dict) -> dict:
        return super().to_mimebundle(fitted_figure_dict(fig_dict))


def notebook_fit(on: bool = True) -> str:
    """Fit wide static figures to the notebook's output area (``on``) or show them at their fixed width again.

    Swaps ``plotly_mimetype`` for :data:`RENDERER` (or back) in ``plotly.io.renderers.default``; a default without
    ``plotly_mimetype`` (a script, a browser renderer) is left alone.  Returns the default now in force.
    """
    if RENDERER not in pio.renderers:
        pio.renderers[RENDERER] = FittedMimeRenderer()
    parts = [p for p in (pio.renderers.default or "").split("+") if p]
    old, new = ("plotly_mimetype", RENDERER) if on else (RENDERER, "plotly_mimetype")
    if old in parts:
        pio.renderers.default = "+".join(new if p == old else p for p in parts)
    return pio.renderers.default
