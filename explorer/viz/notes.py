"""Notes that travel with a figure: the caveats the screen shows beside a result (e.g. "PSNR is optimistic" for a
``norm_pix_loss`` checkpoint) ride in ``fig.layout.meta["notes"]``, so that an export can put them in the sidecar,
the caption and under the figure itself.

    fig = attach_notes(reconstruction_figure(rec), [*rec.input.notes, *rec.notes])
    figure_notes(fig)   # ["This checkpoint predicts per-patch-normalised pixels …"]
"""

from __future__ import annotations

from typing import Iterable

import plotly.graph_objects as go


def figure_notes(fig: go.Figure) -> list[str]:
    """The notes attached to ``fig`` (empty list when none)."""
    meta = fig.layout.meta
    if isinstance(meta, dict):
        return [str(n) for n in meta.get("notes", [])]
    return []


def attach_notes(fig: go.Figure, notes: Iterable[str]) -> go.Figure:
    """Add ``notes`` to ``fig`` (in place, once each, order kept) and return it."""
    have = figure_notes(fig)
    new = have + [str(n) for n in notes if str(n) and str(n) not in have]
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    meta["notes"] = list(dict.fromkeys(new))
    fig.layout.meta = meta
    return fig
