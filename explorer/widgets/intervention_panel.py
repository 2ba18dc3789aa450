"""The intervention panel of the attention and fusion apps: ablate heads, sweep head importance, patch activations.

Composition only: results from :mod:`explorer.attention.interventions` / :mod:`explorer.fusion.interventions`
(through a small backend per app), figures from :mod:`explorer.viz.interventions`.

* **Ablate** (toggle): clicking a head in the app's layers × heads grid, or a cell of the panel's grid (its
  ``layer`` column: the whole layer), adds / removes it from the ablated set (outlined in red); the zero / mean
  dropdown says how; **Reset** empties the set.  Each change shows the ablated model's output beside the intact
  one's, their difference as a map, and the number (Δ masked PSNR, Δ logit, Δ score).
* **Head importance**: every head ablated in turn (one batched forward per layer, cached); the grid shows Δ.
* **Patch**: the corrupted input (images: a blurred / noisy / grey copy; image+text: a counterfactual caption) is
  rerun with each head's clean output; the grid shows the share of the output difference restored.
"""

from __future__ import annotations

import html
from typing import Callable

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..attention import AttentionError
from ..attention.interventions import CORRUPTIONS, MODES, ablate, head_importance, patch_heads
from ..fusion import FusionInputError
from ..fusion.interventions import ablate_fusion, fusion_head_importance, patch_fusion
from ..viz import interventions as VI
from .figures import AppFigure, figure_row, replace_figure
from .messages import guarded

USER_ERRORS = (AttentionError, FusionInputError, ValueError, IndexError, KeyError)
_guarded = guarded(USER_ERRORS)


# ---------------------------------------------------------------------------------------------- backends (no math)
class ImageBackend:
    """What the panel asks of the attention app: its adapter, input and (for MAE) the provenance mask settings."""

    second = "corruption"

    def __init__(self, app):
        self.app = app

    def shape(self) -> tuple[int, int]:
        return self.app.maps.num_layers, self.app.maps.num_heads

    def _mask_kw(self) -> dict:
        a = self.app
        return dict(ratio=float(a.prov_ratio.value), seed=int(a.prov_seed.value))

    def ablate(self, heads, mode):
        return ablate(self.app.adapter, self.app.loaded, heads, mode=mode, **self._mask_kw())

    def importance(self, mode):
        return head_importance(self.app.adapter, self.app.loaded, mode=mode, **self._mask_kw())

    def patch(self, second):
        return patch_heads(self.app.adapter, self.app.loaded, second, **self._mask_kw())

    def figure(self, result) -> go.Figure:
        return VI.ablation_figure(result)


class FusionBackend:
    """What the panel asks of the fusion app: adapter, image, text, the method / layer / head on screen, ground truth."""

    second = "text"

    def __init__(self, app):
        self.app = app

    def _text(self) -> str:
        return self.app.alignment.meta["text"]

    def shape(self) -> tuple[int, int]:
        """From the alignment's cross-modal attention stack (no forward); dual encoders: ``(0, 0)`` until a sweep ran."""
        att = self.app.alignment.attention
        return (int(att.shape[0]), int(att.shape[1])) if att is not None else (0, 0)

    def _settings(self) -> dict:
        a = self.app
        m = a.alignment.method(a.method.value)
        if m.on_demand:
            return dict(method=None)
        return dict(method=m.name, layer=int(a.layer.value) if m.layer else None, head=a.head.value if m.head else "mean")

    def ablate(self, heads, mode):
        a = self.app
        masks = a.scene_word_masks() if a.scene is not None else None
        return ablate_fusion(a.adapter, a.loaded, self._text(), heads, mode=mode, word_masks=masks or None, **self._settings())

    def importance(self, mode):
        return fusion_head_importance(self.app.adapter, self.app.loaded, self._text(), mode=mode)

    def patch(self, second):
        if not str(second).strip():
            raise FusionInputError("Type a counterfactual caption to patch from (e.g. the caption with one word changed).")
        return patch_fusion(self.app.adapter, self.app.loaded, self._text(), str(second))

    def figure(self, result) -> go.Figure:
        return VI.fusion_ablation_figure(result, min(int(self.app.word), len(result.words) - 1))


# ---------------------------------------------------------------------------------------------- the panel
class InterventionPanel(W.VBox):
    """Ablation / importance / patching controls and figures.

    Args:
        host: the app (an :class:`~explorer.widgets.base.AppBase`): its progress (``working``) and error line.
        backend: :class:`ImageBackend` or :class:`FusionBackend` of the app.
        on_marks: ``f(selected)`` after the ablated set changed (the host outlines them on its own grid).
        on_pick: ``f(layer, head)`` for a click on the panel's grid outside Ablate mode (show that head).
        own_grid: place the panel's grid (:attr:`heads_fig`) in the panel; ``False``: the host places it.

    Attributes:
        selected: the ablated ``(layer, head)`` pairs; ablation / importance / patching: the last results.
    """

    def __init__(self, host, backend, *, on_marks: "Callable | None" = None, on_pick: "Callable | None" = None,
                 own_grid: bool = True):
        self.host = host
        self.backend = backend
        self.on_marks = on_marks
        self.on_pick = on_pick
        self.selected: set[tuple[int, int]] = set()
        self.ablation = self.importance = self.patching = None
        self.num_layers = self.num_heads = 0
        self.ablate_btn = W.ToggleButton(value=False, description="Ablate", icon="scissors",
                                         tooltip="on: clicking a head adds it to / removes it from the ablated set")
        self.mode_dd = W.Dropdown(options=[("zero", "zero"), ("mean over tokens", "mean")], value="zero",
                                  description="replace by", layout=W.Layout(width="220px"), style={"description_width": "initial"})
        self.reset_btn = W.Button(description="Reset", icon="undo", tooltip="ablate nothing")
        self.importance_btn = W.Button(description="Head importance", icon="th", layout=W.Layout(width="auto"),
                                       tooltip="ablate every head in turn (one batched forward per layer)")
        if backend.second == "text":
            self.second = W.Text(value="", description="counterfactual", placeholder="the caption with one word changed",
                                 style={"description_width": "initial"}, layout=W.Layout(width="420px"))
        else:
            self.second = W.Dropdown(options=[(f"{c} copy", c) for c in CORRUPTIONS], value="noise",
                                     description="corrupted input", style={"description_width": "initial"},
                                     layout=W.Layout(width="260px"))
        self.patch_btn = W.Button(description="Patch", icon="exchange", tooltip="rerun the corrupted input with each head's clean output")
        self.text = W.HTML()
        self.heads_fig = AppFigure(row=True)
        self.ablation_fig = AppFigure(row=True)
        self.patch_fig = AppFigure()
        self.ablation_box = W.VBox([])
        self.patch_box = W.VBox([])
        self.own_grid = own_grid
        super().__init__([
            W.HTML("<b>Interventions</b>: does a head matter? Ablate it, or patch it from a clean input."),
            W.HBox([self.ablate_btn, self.mode_dd, self.reset_btn, self.importance_btn]),
            self.text,
            figure_row(*([self.heads_fig] if own_grid else []), self.ablation_box),
            W.HBox([self.second, self.patch_btn]), self.patch_box,
        ])
        self.ablate_btn.observe(lambda ch: self._mode_changed(), names="value")
        self.mode_dd.observe(lambda ch: self._rerun(), names="value")
        self.reset_btn.on_click(lambda _b: self.reset())
        self.importance_btn.on_click(lambda _b: self.run_importance())
        self.patch_btn.on_click(lambda _b: self.run_patch())

    # ------------------------------------------------------------------ host plumbing
    def _error(self, message: str, details: str | None = None):
        self.host._error(message, details)

    def _ok(self):
        """A step worked: an earlier error in the host's status line goes."""
        if "⚠" in self.host.status.value:
            self.host._info("Interventions: see the panel below.")

    @property
    def active(self) -> bool:
        """Ablate mode is on: clicks on heads toggle them."""
        return bool(self.ablate_btn.value)

    def new_input(self):
        """A new model or input: empty selection, results forgotten, an empty grid of the new shape."""
        self.selected.clear()
        self.ablation = self.importance = self.patching = None
        self.ablation_box.children = []
        self.patch_box.children = []
        self.text.value = ""
        self.num_layers, self.num_heads = self.backend.shape()
        if not self.num_layers:
            self.heads_fig.data = ()
        self._draw_grid()
        self._marks()

    def _marks(self):
        if self.on_marks is not None:
            self.on_marks(sorted(self.selected))

    def _draw_grid(self):
        if not self.num_layers:
            return
        if self.importance is not None:
            fig = VI.importance_grid(self.importance, selected=self.selected)
        else:
            fig = VI.head_grid(self.num_layers, self.num_heads, selected=self.selected,
                               title="heads (Ablate on: click to ablate; 'layer' = every head)")
        replace_figure(self.heads_fig, fig)
        self.heads_fig.data[0].on_click(self._on_cell_click)

    def _on_cell_click(self, trace, points, state):
        if not points.point_inds:
            return
        r, c = points.point_inds[0]
        l, h = (int(v) for v in trace.customdata[r][c])
        if self.active:
            self.toggle(l, None if h < 0 else h)
        elif self.on_pick is not None and h >= 0:
            self.on_pick(l, h)

    def _mode_changed(self):
        self.ablate_btn.button_style = "danger" if self.active else ""

    # ------------------------------------------------------------------ ablation
    def toggle(self, layer: int, head: "int | None"):
        """Add ``(layer, head)`` to the ablated set or remove it (``head=None``: the whole layer — added unless it is
        all selected already), then show the ablated model."""
        layer = int(layer)
        if head is None:
            whole = {(layer, h) for h in range(self.num_heads)}
            self.selected = self.selected - whole if whole <= self.selected else self.selected | whole
        else:
            self.selected ^= {(layer, int(head))}
        self._draw_grid()
        self._marks()
        self._rerun()

    def reset(self):
        """Ablate nothing."""
        self.selected.clear()
        self._draw_grid()
        self._marks()
        self._rerun()

    @_guarded
    def _rerun(self):
        if not self.selected:
            self.ablation = None
            self.ablation_box.children = []
            self.text.value = "<div style='font-size:12px'>Nothing ablated: the intact model.</div>"
            return
        with self.host.working(f"ablating {len(self.selected)} head(s)…"):
            ab = self.backend.ablate(sorted(self.selected), self.mode_dd.value)
        self.ablation = ab
        self._ok()
        replace_figure(self.ablation_fig, self.backend.figure(ab))
        self.ablation_box.children = [self.ablation_fig.box]
        extra = ""
        if getattr(ab, "delta_pointing", None) is not None:
            extra = f"; pointing game {ab.pointing_intact:.0%} → {ab.pointing_ablated:.0%}"
        self.text.value = (f"<div style='font-size:12px'>Ablated ({html.escape(ab.mode)}): "
                           f"{html.escape(VI.heads_text(ab.heads))} — Δ {html.escape(ab.what)} = <b>{ab.delta:+.4f}</b> "
                           f"({ab.intact:.4f} → {ab.ablated:.4f}){extra}</div>")

    @_guarded
    def redraw(self):
        """Draw the current ablation again (the host's word changed); no forward."""
        if self.ablation is not None:
            replace_figure(self.ablation_fig, self.backend.figure(self.ablation))

    def refresh(self):
        """The host's view changed (word, method, layer): show the current ablation again."""
        if self.selected:
            self._rerun()

    # ------------------------------------------------------------------ sweeps
    @_guarded
    def run_importance(self):
        """Every head ablated in turn; the grid shows Δ (cached per input, metric and mode)."""
        with self.host.working("ablating every head in turn…"):
            imp = self.backend.importance(self.mode_dd.value)
        self.importance = imp
        self._ok()
        self.num_layers, self.num_heads = imp.delta.shape
        self._draw_grid()
        l, h, v = imp.ranked()[0]
        self.text.value = (f"<div style='font-size:12px'>Head importance ({html.escape(imp.mode)}): the largest change "
                           f"of {html.escape(imp.what)} is <b>{v:+.4f}</b> at L{l} H{h}"
                           + (f"; computed in {imp.seconds:.1f} s" if imp.seconds else "; from the cache") + ".</div>")
        return imp

    @_guarded
    def run_patch(self):
        """Activation patching from the second input; the grid shows the share restored."""
        with self.host.working("patching every head from the clean input…"):
            p = self.backend.patch(self.second.value)
        self.patching = p
        self._ok()
        replace_figure(self.patch_fig, VI.patching_grid(p))
        self.patch_box.children = [self.patch_fig.box]
        best = np.nanargmax(np.abs(p.restored)) if np.isfinite(p.restored).any() else None
        where = "" if best is None else (f"; head L{best // p.restored.shape[1]} H{best % p.restored.shape[1]} restores "
                                         f"{p.restored.flat[best]:.0%}")
        self.text.value = (f"<div style='font-size:12px'>Patching ({html.escape(p.corruption)}): {html.escape(p.what)} "
                           f"clean {p.clean:.4f}, corrupted {p.corrupted:.4f}{where}.</div>")
        return p


__all__ = ["FusionBackend", "ImageBackend", "InterventionPanel", "MODES"]
