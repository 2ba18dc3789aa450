"""The "Export" row shared by every app: preset, formats, dpi, folder, name, overwrite.

Composition only: the app hands over a *request* (recipe name, model, inputs, options, in-memory
inputs to attach, suggested file name) and :func:`explorer.export.export_recipe` does the work, so
what is exported is rebuilt from the recipe — exactly what ``python -m explorer reproduce``
rebuilds.  The panel writes no file itself: the export stores uploaded inputs next to the figure
once it has decided to write it.

Names: with the automatic name an export never replaces an earlier one (``-2``, ``-3``, …); a
name typed in *Name* is replaced only when *overwrite* is ticked, otherwise the export is refused
and says so.
"""

from __future__ import annotations

import html
import traceback
import warnings
from pathlib import Path
from typing import Callable

import ipywidgets as W

from ..export import FORMATS, PRESETS, ExportError, LayoutWarning, export_recipe
from .messages import error_html


class ExportPanel(W.VBox):
    """Export the current view of an app to PDF / SVG / PNG + JSON sidecar.

    Args:
        reopen: called with the path typed in *Reopen* when *Reopen view* is clicked (``None``: no such row).
        request: called on every click; returns ``dict(recipe=..., model=adapter, inputs=[...],
            options={...}, name="suggested-stem")`` for the view on screen, optionally with
            ``attach={option: in-memory input}`` (see :func:`explorer.export.export_recipe`).
        folder: default output folder.

    Attributes:
        last: the :class:`explorer.export.ExportResult` of the last export (or ``None``).
    """

    def __init__(self, request: Callable[[], dict], *, folder: str = "figures",
                 reopen: "Callable[[str], None] | None" = None):
        self.request = request
        self.last = None
        self.preset = W.Dropdown(options=[(f"{k} ({p.width_in:.2f} in)", k) for k, p in PRESETS.items()],
                                 value="double-column", description="Preset", layout=W.Layout(width="280px"))
        self.formats = {f: W.Checkbox(value=True, description=f.upper(), indent=False, layout=W.Layout(width="60px"))
                        for f in FORMATS}
        self.dpi = W.Dropdown(options=[150, 300, 600], value=300, description="PNG dpi", layout=W.Layout(width="150px"))
        self.letters = W.Checkbox(value=True, description="panel letters", indent=False, layout=W.Layout(width="120px"))
        self.rows = W.Dropdown(options=[("auto", "auto"), ("1 row", 1), ("2 rows", 2), ("3 rows", 3)], value="auto",
                               description="Panels in", layout=W.Layout(width="190px"),
                               tooltip="auto: one row where the titles fit the column, else as many rows as needed")
        self.folder = W.Text(value=folder, description="Folder", layout=W.Layout(width="260px"))
        self.name = W.Text(value="", placeholder="(automatic)", description="Name", layout=W.Layout(width="260px"))
        self.overwrite = W.Checkbox(value=False, description="overwrite", indent=False, layout=W.Layout(width="100px"))
        self.button = W.Button(description="Export", icon="file-export", button_style="success")
        self.status = W.HTML()
        self.reopen_path = W.Text(value="", placeholder="figures/….json (or the exported .png / .pdf / .svg)",
                                  description="Reopen", layout=W.Layout(width="420px"))
        self.reopen_btn = W.Button(description="Reopen view", icon="folder-open",
                                   tooltip="come back to the view a figure was exported from: model, input, settings")
        reopen_row = [W.HBox([self.reopen_path, self.reopen_btn], layout=W.Layout(flex_flow="row wrap"))] if reopen else []
        if reopen is not None:
            self.reopen_btn.on_click(lambda _b: reopen(self.reopen_path.value.strip()))
        super().__init__([
            W.HBox([self.preset, *self.formats.values(), self.dpi, self.letters, self.rows],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            W.HBox([self.folder, self.name, self.overwrite, self.button],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            self.status,
            *reopen_row,
        ])
        self.button.on_click(lambda _b: self.export())

    def export(self):
        """Export now (what the button does); returns the result or ``None`` after an error."""
        formats = [f for f, cb in self.formats.items() if cb.value]
        try:
            if not formats:
                raise ValueError("Tick at least one format.")
            req = self.request()
            typed = self.name.value.strip()
            stem = Path(self.folder.value.strip() or ".") / (typed or req["name"])
            self.status.value = "Exporting…"
            self.button.disabled = True
            with warnings.catch_warnings():  # a layout warning is also a note of the result: shown below, not on stderr
                warnings.simplefilter("ignore", LayoutWarning)
                res = export_recipe(req["recipe"], stem, model=req["model"], inputs=req["inputs"], options=req["options"],
                                    attach=req.get("attach"), preset=self.preset.value, formats=formats,
                                    dpi=int(self.dpi.value), letters=self.letters.value, overwrite=self.overwrite.value,
                                    rename=not typed, rows=self.rows.value)
        except (ExportError, ValueError, FileExistsError, OSError) as e:
            self._show_error(str(e))
            return None
        except Exception as e:  # noqa: BLE001 - never let a click kill the kernel
            self._show_error(f"{type(e).__name__}: {e}", traceback.format_exc())
            return None
        finally:
            self.button.disabled = False
        self.last = res
        items = "".join(f"<li><code>{html.escape(str(p))}</code> ({p.stat().st_size / 1024:.0f} KB)</li>"
                        for p in res.files.values())
        notes = "".join(f"<div style='color:var(--jp-warn-color0,#8a5300)'>{html.escape(n)}</div>" for n in res.notes)
        self.status.value = (f"<div style='font-size:12px'><b>Exported</b> ({html.escape(self.preset.value)}, "
                             f"{res.sidecar['style']['width_pt']:.0f} × {res.sidecar['style']['height_pt']:.0f} pt):"
                             f"<ul style='margin:2px 0'>{items}</ul>{notes}"
                             "Rebuild with <code>python -m explorer reproduce "
                             f"{html.escape(str(res.files['json']))}</code></div>")
        return res

    def _show_error(self, message: str, details: str | None = None):
        extra = f"<details><summary>details</summary><pre>{html.escape(details)}</pre></details>" if details else ""
        self.status.value = error_html(f"Export failed: {message}", extra)
