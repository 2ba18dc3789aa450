"""Figures for papers: paper presets, PDF/SVG/PNG export with sidecars, reproduction, batch mode.

* :func:`export_figure` — style any plotly figure for a venue and write PDF, SVG and PNG.
* :func:`export_recipe` — build a registered figure recipe and export it reproducibly.
* :func:`reproduce` — rebuild an export from its sidecar and compare the bytes.
* :data:`PRESETS` — single / double column sizes and fonts of common venues.
* Layouts are checked on export: a strip of panels too wide for the preset takes two rows (``rows="auto"``); with
  ``rows=1`` forced, a :class:`LayoutWarning` (and a note) proposes the rows that fit.
* :func:`run_batch` — the ``python -m explorer export`` pipeline over a folder.
"""

from .figure import ExportResult, build_recipe, export_figure, export_recipe, model_spec
from ..files import free_stem, remove_stale_parts, write_atomic
from .inputs import ReproduceError
from ..viz.paper import LayoutWarning
from ..viz.presets import PRESETS, Preset, get_preset
from .registry import RECIPES, get_recipe, recipe
from . import recipes as _recipes, video_recipes as _video_recipes  # noqa: F401  (register the built-in recipes)
from . import uniformer_recipes as _uniformer_recipes  # noqa: F401,E402
from .render import FORMATS, ExportError
from .reproduce import Reopened, ReproduceReport, reopen, reproduce
from .sidecar import SidecarError, read_sidecar, versions

__all__ = [
    "ExportError", "ExportResult", "FORMATS", "LayoutWarning", "PRESETS", "Preset", "RECIPES", "ReproduceError", "ReproduceReport",
    "SidecarError", "build_recipe", "export_figure", "export_recipe", "free_stem", "get_preset", "get_recipe",
    "model_spec", "read_sidecar", "recipe", "remove_stale_parts", "Reopened", "reopen", "reproduce", "versions", "write_atomic",
]
