"""Light and dark looks of a figure on screen: pure layout arithmetic, no widgets.

A figure is built light (``plotly_white``).  Under a dark JupyterLab theme an app shows it with
:func:`dark_updates`: plotly's dark template, a transparent background (the notebook's own colour shows through) and
light text.  :func:`light_state` records what a figure looked like when built, so the light look can be put back
exactly when the theme changes back.  Exports are always light (paper is white).
"""

from __future__ import annotations

import plotly.io as pio

#: Text colour of dark figures (JupyterLab's dark theme's primary font colour).
DARK_TEXT = "rgba(255, 255, 255, 0.87)"
#: Background of dark figures: transparent, so the output area's colour shows.
DARK_BACKGROUND = "rgba(0, 0, 0, 0)"


def light_state(layout) -> dict:
    """``update_layout`` arguments that restore ``layout``'s look (template, backgrounds, text colour)."""
    return {
        "template": layout.template if layout.template is not None else pio.templates["plotly_white"],
        "paper_bgcolor": layout.paper_bgcolor,
        "plot_bgcolor": layout.plot_bgcolor,
        "font": {"color": layout.font.color if layout.font else None},
    }


def dark_updates() -> dict:
    """``update_layout`` arguments for the dark look: plotly's dark template, transparent background, light text."""
    return {"template": pio.templates["plotly_dark"], "paper_bgcolor": DARK_BACKGROUND,
            "plot_bgcolor": DARK_BACKGROUND, "font": {"color": DARK_TEXT}}
