"""The UniFormer app: local relation aggregation (shallow stages) against global self-attention (deep stages), for the
token you click.

Composition only: relations from :mod:`explorer.attention.local_global`, the figure from :mod:`explorer.viz.uniformer`,
exports through the ``uniformer_relations`` / ``uniformer_relations_video`` recipes.  One forward with gradients per
(model, input) feeds every query, block, head, rollout option and frame (:class:`~explorer.attention.local_global
.RelationCapture`, cached); a click runs only the effective receptive fields again (one forward through stages 1-2 and
one backward per local stage).
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import ipywidgets as W

from ..attention.local_global import RelationError, capture_relations, check_blocks, relation_view
from ..data.samples import SAMPLES, sample_label
from ..export import ReproduceError
from ..io import ImageLoadError
from ..models import DeviceError, ModelLoadError, list_uniformer_models, load_uniformer_model
from ..viz import uniformer as VU
from .base import ROW, AppBase, FrameControls, file_stem
from .export_panel import ExportPanel
from .figures import AppFigure, replace_figure
from .messages import guarded

USER_ERRORS = (RelationError, ImageLoadError, ModelLoadError, DeviceError, ValueError, ReproduceError)
_guarded = guarded(USER_ERRORS)
#: generated clips offered for video UniFormers (moving shapes; explorer.data.clips)
CLIP_SEEDS = (10000003, 10000011, 10000019)
RECIPES = ("uniformer_relations", "uniformer_relations_video")


def default_model() -> str:
    """``"mini-uniformer"`` when it ships, else the first shipped UniFormer, else ``"mini-uniformer"`` (its load then
    says what to do)."""
    shipped = list_uniformer_models()
    return "mini-uniformer" if "mini-uniformer" in shipped or not shipped else shipped[0]


def _is_generated(source) -> bool:
    return isinstance(source, str) and source.startswith("generated:")


class UniFormerApp(FrameControls, AppBase):
    """Interactive local / global view of a UniFormer (image or video).

    Args:
        model: ``"mini-uniformer"``, a folder (``config.json`` + ``model.safetensors``), the authors' ``.pth`` file, or
            an adapter from :func:`explorer.load_uniformer_model`.
        image: image models: a sample name or anything :func:`explorer.load_image` takes; video models:
            ``"generated:<seed>"`` or anything :func:`explorer.video.load_video` takes.
        query: the query point, ``(row, col)`` / ``(frame, row, col)`` in input pixels (default: the centre).

    Click any panel of the top row to query the token under the pointer.  *Stage* picks the stage whose block and head
    the two selectors set (every stage keeps its own).

    Attributes:
        adapter: the loaded UniFormer; capture: the cached :class:`~explorer.attention.local_global.RelationCapture`;
        view: the :class:`~explorer.attention.local_global.RelationView` on screen; query: its query point;
        blocks, heads: per stage, the block and head shown; last_update_ms: time of the last redraw.
    """

    recipes = RECIPES

    def __init__(self, model=None, image="chelsea", *, query=None, device: str = "auto"):
        if model is not None and not isinstance(model, (str, os.PathLike)) and not hasattr(model, "model_id"):
            raise RelationError(f"UniFormerApp takes a model name, folder, checkpoint file or an adapter from "
                                f"explorer.load_uniformer_model, not a {type(model).__name__}.")
        self.adapter = self.capture = self.view = None
        self._source = None
        self.query = None if query is None else tuple(int(v) for v in query)
        self.blocks: list = [0, 0, 0, 0]
        self.heads: list = ["mean"] * 4
        self.last_update_ms = float("nan")
        style = {"description_width": "initial"}
        head = self.header(model=model if model is not None else default_model(),
                           models=list(dict.fromkeys([*list_uniformer_models(), "mini-uniformer"])), device=device,
                           placeholder="mini-uniformer, a folder or the authors' .pth file",
                           samples=self._samples(video=False), sample_value=None, sample_label="Input",
                           upload_accept="image/*,video/*", upload_label="Upload image / video")
        self.stage = W.Dropdown(options=[], description="Stage", style=style, layout=W.Layout(width="260px"))
        self.block = W.IntSlider(value=1, min=1, max=1, description="Block", continuous_update=False)
        self.head = W.Dropdown(options=[("mean", "mean")], value="mean", description="Head", style=style,
                               layout=W.Layout(width="240px"))
        self.fusion = W.ToggleButtons(options=["mean", "max", "min"], value="mean", description="Rollout heads",
                                      style=style)
        self.residual = W.Checkbox(value=True, description="rollout adds the residual (0.5·A + 0.5·I)", indent=False)
        self.opacity = W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="Opacity",
                                     continuous_update=False)
        self.centre_btn = W.Button(description="Query: centre", tooltip="query the token at the input's centre")
        self.frame_controls(interval=400)
        self.frame_box = W.HBox([self.frame, self.play], layout=W.Layout(display="none", **ROW))
        self.fig = AppFigure()
        self.caption = W.HTML()
        self.export_panel = ExportPanel(self.export_request, reopen=self.restore)
        super().__init__([
            *head,
            W.HBox([self.stage, self.block, self.head, self.centre_btn], layout=W.Layout(**ROW)),
            W.HBox([self.fusion, self.residual, self.opacity], layout=W.Layout(**ROW)),
            self.frame_box, self.status_area, self.fig.box, self.caption, self.export_panel,
        ])
        self.load_btn.on_click(lambda _b: self._load_model())
        self.on_change(self.sample_dd, lambda ch: self._set_input(ch["new"]) if ch["new"] is not None else None)
        self.on_change(self.upload, lambda ch: self.take_upload(ch["new"], self._set_input))
        self.on_change(self.stage, lambda _c: self._show_stage())
        self.on_change([self.block, self.head], lambda _c: self._stage_changed())
        self.on_change([self.fusion, self.residual], lambda _c: self._redraw(new_view=True))
        self.on_change([self.opacity, self.frame], lambda _c: self._redraw())
        self.centre_btn.on_click(lambda _b: self.set_query(None))
        self.start(lambda: self._first(image))

    @staticmethod
    def _samples(*, video: bool) -> list:
        if video:
            return [(f"generated clip {s} (moving shapes)", f"generated:{s}") for s in CLIP_SEEDS]
        return [(sample_label(n), n) for n in SAMPLES]

    def _first(self, image):
        self._load_model(refresh=False)
        if self.adapter is None:  # the load failed and says why: keep the input for the next "Load model"
            self._source = image
            return
        if self.adapter.is_video and image == "chelsea":
            image = f"generated:{CLIP_SEEDS[0]}"
        self.show_first(image, self._set_input)

    # ------------------------------------------------------------------ inputs
    @_guarded
    def _load_model(self, refresh: bool = True):
        self.adapter = None
        m = self.load_selected(load_uniformer_model)
        self.adapter, self.capture, self.view = m, None, None
        self.blocks = list(check_blocks(m, None))
        self.heads = ["mean"] * 4
        with self.quiet():
            video = m.is_video
            self.sample_dd.options = self._samples(video=video)
            self.sample_dd.value = None
            self.stage.options = [(f"stage {s + 1} · {k}{' (no blocks)' if not m.stage_depths[s] else ''}", s + 1)
                                  for s, k in enumerate(m.stage_kinds)]
            self.stage.value = 3
            self.frame_box.layout.display = None if video else "none"
            self.set_frame_count(m.config.num_frames if video else 1)
        self._show_stage()
        if refresh and self._source is not None:
            source = self._source
            if m.is_video != _looks_video(source):
                source = f"generated:{CLIP_SEEDS[0]}" if m.is_video else "chelsea"
            self._set_input(source)

    @_guarded
    def _set_input(self, source):
        if self.adapter is None:
            raise ModelLoadError("Load a UniFormer first.")
        with self.computing("running the model with gradients"):
            cap = capture_relations(self.adapter, source)
        self.capture, self._source = cap, source
        if self.query is not None and (len(self.query) != len(cap.size)
                                       or not all(0 <= q < n for q, n in zip(self.query, cap.size))):
            self.query = None
        with self.quiet():
            listed = isinstance(source, str) and any(v == source for _l, v in self.sample_dd.options)
            self.sample_dd.value = source if listed else None
            if cap.input.video:
                self.set_frame_count(cap.size[0])
        self._redraw(new_view=True)

    # ------------------------------------------------------------------ selectors
    def _show_stage(self) -> None:
        """Point the block and head selectors at the stage chosen (its own block and head)."""
        if self.adapter is None or self.stage.value is None:
            return
        s = int(self.stage.value)
        depth = self.adapter.stage_depths[s - 1]
        kind = self.adapter.stage_kinds[s - 1]
        n = self.adapter.stage_heads[s - 1]
        with self.quiet():
            with self.block.hold_trait_notifications():
                self.block.max = max(depth, 1)
                self.block.value = self.blocks[s - 1] + 1
            self.block.disabled = depth == 0
            group = "head" if kind == "global" else "channel group"
            self.head.options = [("mean of heads" if kind == "global" else "mean |w| over channels", "mean")] + \
                [(f"{group} {h}", h) for h in range(n)]
            self.head.value = self.heads[s - 1]

    def _stage_changed(self) -> None:
        s = int(self.stage.value)
        self.blocks[s - 1] = int(self.block.value) - 1
        self.heads[s - 1] = self.head.value
        self._redraw(new_view=True)

    def select(self, stage: int, *, block: "int | None" = None, head="keep") -> None:
        """Show ``stage``'s ``block`` (0-based) and ``head`` (an index or ``"mean"``), as the selectors do."""
        self._select(stage, block, head)

    @_guarded
    def _select(self, stage, block, head):
        if self.adapter is None:
            raise ModelLoadError("Load a UniFormer first.")
        stage = int(stage)
        if stage not in (1, 2, 3, 4):
            raise RelationError(f"stage must be 1..4, got {stage}.")
        if block is not None:
            blocks = list(self.blocks)
            blocks[stage - 1] = int(block)
            self.blocks = list(check_blocks(self.adapter, blocks))
        if head != "keep":
            n = self.adapter.stage_heads[stage - 1]
            if head != "mean" and not (isinstance(head, int) and 0 <= head < n):
                raise RelationError(f"Stage {stage} has heads 0..{n - 1} (or 'mean'), not {head!r}.")
            self.heads[stage - 1] = head
        with self.quiet():
            self.stage.value = stage
        self._show_stage()
        self._redraw(new_view=True)

    # ------------------------------------------------------------------ query
    def set_query(self, point) -> None:
        """Query the token at ``point``: ``(row, col)`` / ``(frame, row, col)`` input pixels (``None``: the centre)."""
        self._set_query(point)

    @_guarded
    def _set_query(self, point):
        if self.capture is None:
            return
        if point is not None and self.capture.input.video and len(tuple(point)) == 2:
            point = (self.frame_index, *point)  # a click: on the frame on screen
        self.query = None if point is None else tuple(int(v) for v in point)
        self._redraw(new_view=True)

    def _on_click(self, trace, points, state):
        if not points.xs:
            return
        self.set_query((int(points.ys[0]), int(points.xs[0])))

    # ------------------------------------------------------------------ drawing
    @_guarded
    def _redraw(self, new_view: bool = False):
        if self.capture is None:
            return
        t0 = time.perf_counter()
        if new_view or self.view is None:
            with self.computing("effective receptive fields"):
                self.view = relation_view(self.adapter, self.capture, self.query, blocks=self.blocks,
                                          fusion=self.fusion.value, residual=bool(self.residual.value))
            self.query = self.view.query
            if self.view.video:
                with self.quiet():
                    self.frame.value = self.view.query[0] + 1
        fig = VU.relations_figure(self.view, heads=tuple(self.heads), frame=self.frame_index if self.view.video else None,
                                  opacity=float(self.opacity.value), wrap=False)
        replace_figure(self.fig, fig)
        for tr in self.fig.data:
            if tr.xaxis in ("x", "x2", "x3", "x4", "x5"):
                tr.on_click(self._on_click)
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        v = self.view
        kinds = " · ".join(f"S{s.stage} {s.kind}" for s in v.stages)
        self._info(f"<b>{html.escape(v.name)}</b> · model <b>{html.escape(v.model_id)}</b> ({kinds}) · query "
                   f"{html.escape(_point_text(v.query))} · class <b>{html.escape(v.target_label)}</b> "
                   f"(p = {v.probability:.2f})")
        self.caption.value = (f"<div style='font-size:12px;color:var(--jp-ui-font-color2,#555);max-width:1000px'>"
                              f"{html.escape(VU.figure_caption(v, heads=tuple(self.heads)))}</div>")

    # ------------------------------------------------------------------ sidecars
    @classmethod
    def from_sidecar(cls, path, *, device: "str | None" = None, allow_download: bool = False, **kwargs) -> "UniFormerApp":
        """The app as it was when the figure ``path`` was exported (its ``.json``, or the PNG / PDF / SVG embedding it):
        the same model (weights checked), input (checked against its hash), query, blocks, heads, rollout options and
        frame.  ``kwargs`` go to :class:`UniFormerApp`.

        Raises:
            ValueError: a figure of another recipe, or options the app has no control for.
        """
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in cls.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; UniFormerApp reopens "
                             f"{', '.join(repr(x) for x in cls.recipes)} figures.")
        view = _recorded_view(r, path)
        app = cls(model=r.model, image=view["source"], query=view["query"], **kwargs)
        app._apply_recorded(view)
        return app

    @_guarded
    def restore(self, path):
        """Come back to the view the figure ``path`` was exported from, in this app (what the Reopen button does)."""
        r = self.reopen(path)
        view = _recorded_view(r, path)  # everything checked before anything on screen changes
        self.hand_over_model(r.model)
        self._load_model(refresh=False)
        self.query = view["query"]
        self._set_input(view["source"])
        self._apply_recorded(view)

    def _apply_recorded(self, view: dict) -> None:
        if self.adapter is None:
            return
        self.blocks = list(check_blocks(self.adapter, view["blocks"]))
        self.heads = list(view["heads"])
        with self.quiet():
            self.fusion.value, self.residual.value = view["fusion"], view["residual"]
            self.opacity.value = view["opacity"]
            if view["frame"] is not None:
                self.frame.value = view["frame"] + 1
        self._show_stage()
        self.query = view["query"]
        self._redraw(new_view=True)
        if view["frame"] is not None:
            with self.quiet():
                self.frame.value = view["frame"] + 1
            self._redraw()

    # ------------------------------------------------------------------ export
    def export_request(self) -> dict:
        """What the Export button exports: the view on screen (model, input, query, blocks, heads, rollout options,
        opacity; video: the frame).  A generated clip is named in the options; any other clip is handed over
        (``attach``) and stored next to the figure; an image goes as the export's input (stored when it has no file)."""
        if self.view is None:
            raise ValueError("Nothing to export yet: load a model and an input first.")
        v = self.view
        opts = dict(query=list(v.query), blocks=list(self.blocks), heads=list(self.heads), fusion=self.fusion.value,
                    residual=bool(self.residual.value), opacity=float(self.opacity.value))
        name = f"{file_stem(v.name)}-uniformer-" + "-".join(map(str, v.query))
        if not v.video:
            return dict(recipe="uniformer_relations", model=self.adapter, inputs=[self._source], options=opts, name=name)
        opts["frame"] = self.frame_index
        generated = _is_generated(self._source)
        if generated:
            opts["clip"] = self._source
        return dict(recipe="uniformer_relations_video", model=self.adapter, inputs=[], options=opts, name=name,
                    attach={} if generated else {"video": self._source})


def _looks_video(source) -> bool:
    """Whether an input named on screen is a clip (a generated one, or a 4-D array)."""
    import numpy as np

    return _is_generated(source) or (isinstance(source, np.ndarray) and source.ndim == 4)


def _point_text(q) -> str:
    return f"(row {q[-2]}, column {q[-1]})" + (f" of frame {q[0] + 1}" if len(q) == 3 else "")


def _recorded_view(r, path) -> dict:
    """The app's values for a reopened sidecar (an :class:`explorer.export.Reopened`), and its input (an image source,
    a generated clip's name, or a stored clip read next to the figure and checked against its hash).

    Raises:
        ValueError: options the app has no control for (another fit, target class, colour scale, sampling).
        ReproduceError: a stored clip that is missing, outside the figure's folder or not the recorded one.
    """
    from ..export.registry import options_for

    o = options_for(r.recipe, r.options)
    problems = []
    if o["fit"] != "center-crop":
        problems.append(f"fit={o['fit']!r} (the app centre-crops)")
    if o["target"] is not None:
        problems.append(f"target class {o['target']} (the app explains the predicted class)")
    if o["colorscale"] != "Viridis":
        problems.append(f"colour scale {o['colorscale']!r}")
    if r.recipe == "uniformer_relations_video" and (o["sampling"] != "uniform" or o["short"] is not None):
        problems.append(f"sampling={o['sampling']!r}, short={o['short']!r} (the app samples uniformly)")
    if problems:
        raise ValueError(f"{Path(path).name} cannot be shown in the UniFormer app as it was exported: "
                         f"{'; '.join(problems)}. Rebuild it with python -m explorer reproduce.")
    if r.recipe == "uniformer_relations":
        source = r.sources[0]
    else:
        from ..export.video_recipes import recorded_clip

        source = recorded_clip(o, path)
    heads = list(o["heads"] or ["mean"] * 4)
    return dict(source=source, query=None if o["query"] is None else tuple(int(v) for v in o["query"]),
                blocks=o["blocks"], heads=heads, fusion=o["fusion"], residual=bool(o["residual"]),
                opacity=float(o["opacity"]), frame=o.get("frame"))
