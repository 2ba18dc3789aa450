"""The attention explorer app: per-layer/head maps, head summaries, rollout / relevance / IG side
by side, faithfulness checks and (for MAE models) reconstruction provenance.

Composition only: results from :mod:`explorer.attention`, figures from :mod:`explorer.viz.attention`.
One forward per (model, image) feeds every layer / head / query / opacity interaction from the
cached :class:`explorer.attention.AttentionMaps`; rollout variants are recomputed from the cache;
relevance and integrated gradients are computed once per (query, target) and cached.
A/B: a second model's maps (:func:`explorer.attention.compare.compare_maps`, drawn by
:mod:`explorer.viz.compare_attention`) are computed once per (image, model B) and cached the same way.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
import time

import ipywidgets as W
import numpy as np

from ..attention import AttentionError, attention_maps, explain, provenance
from ..attention.compare import compare_maps
from ..export import ReproduceError
from ..attention.registry import REGISTRY, explainable
from ..attention.faithfulness import Stopped, deletion_insertion, randomisation_check, randomise_top_layers
from ..io import ImageLoadError
from ..masking import MaskError, MaskSpec, make_mask
from ..models import DeviceError, ModelLoadError, list_models, load_model
from ..models.base import model_lock
from ..reconstruction import load_input
from ..data.samples import SAMPLES, sample_label
from ..viz import attention as VA
from ..viz import compare_attention as VCA
from ..viz import interventions as VI
from ..viz.images import json_grid
from .background import Background
from .base import RANDOMISED, ROW, AppBase, file_stem
from .figures import AppFigure, figure_row, hide_figure, replace_figure
from .export_panel import ExportPanel
from .intervention_panel import ImageBackend, InterventionPanel
from .messages import guarded

USER_ERRORS = (AttentionError, ImageLoadError, ModelLoadError, DeviceError, MaskError, ValueError, ReproduceError)
HUB_ATTENTION_MODELS = ("facebook/vit-mae-base", "google/vit-base-patch16-224", "openai/clip-vit-base-patch16")


_guarded = guarded(USER_ERRORS)
#: the side-by-side panels shown first (names of :mod:`explorer.attention.registry`)
PANELS = ("raw", "rollout", "relevance", "integrated-gradients")
#: what the Compare box offers for "B = A with every encoder block (and any head) re-drawn" (a model that learned nothing)


def _head_text(head) -> str:
    return "mean of heads" if head == "mean" else f"head {head}"


def _layout_text(layout) -> str:
    """A token layout in words: ``"a grid of 4x4 patches of 8 px after CLS"``."""
    grid = "x".join(str(g) for g in layout.grid)
    unit = f"patches of {layout.patch_size} px" if layout.tubelet == 1 else \
        f"tubelets of {layout.tubelet} frames x {layout.patch_size} px"
    after = f"after {', '.join(n.upper() for n in layout.names)}" if layout.prefix else "with no prefix token"
    return f"a grid of {grid} {unit} {after}"


class AttentionApp(AppBase):
    """Interactive attention explorer.

    Args:
        model: shipped name, hub id or folder of a ViTMAE or ViT classifier.
        image: sample name or anything :func:`explorer.load_image` takes.

    A/B comparison: :meth:`compare` (or the "Compare A/B" button) shows a second model B (a checkpoint, or A's
    randomised copy) beside A on the same image, query, layer, head and method options: A's map, B's map and B − A,
    titled with their Spearman rank correlation and top-k patch overlap; it follows every slider, click and new image.

    Attributes:
        maps: the cached :class:`explorer.attention.AttentionMaps`.
        model_b, maps_b: model B and its cached maps of the image on screen (``None`` when not comparing).
        comparison: the :class:`explorer.attention.compare.MapComparison` on screen (``None`` before one is shown).
        query: ``"cls"`` or a flat patch index.
        last_update_ms: server time of the last layer / head / opacity update.
    """

    recipes = ("attention_methods",)

    def __init__(self, model: str = "mini-mae", image="chelsea", *, device: str = "auto"):
        if not isinstance(model, (str, os.PathLike)) and not hasattr(model, "model_id"):  # e.g. your own torch module
            raise AttentionError(f"AttentionApp takes a model name, hub id or folder (not a {type(model).__name__}); for your "
                                 "own torch module use explorer.attention.attention_maps(module, x, forward=...).")
        self.adapter = None
        self.loaded = None
        self._source = None
        self.maps = None
        self.query = "cls"
        self._explain_cache: dict = {}
        self.last_update_ms = float("nan")
        self.model_b = self.name_b = self.maps_b = self.comparison = None
        self._b_request = None  # (what compare() was given, seed): a new model A is compared with it again
        self._explain_cache_b: dict = {}
        style = {"description_width": "initial"}
        head = self.header(model=model, models=list_models() + list(HUB_ATTENTION_MODELS), device=device,
                           samples=[(sample_label(n), n) for n in SAMPLES], sample_value=next(iter(SAMPLES)))
        self.cls_btn = W.Button(description="Query: CLS", tooltip="show what the CLS token attends to")
        self.layer = W.IntSlider(value=0, min=0, max=0, description="Layer", continuous_update=True)
        self.head = W.Dropdown(options=[("mean of heads", "mean")], value="mean", description="Head", layout=W.Layout(width="240px"))
        self.opacity = W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="Opacity", continuous_update=True)
        self.cscale = W.Dropdown(options=list(VA.COLORSCALES), value="Viridis", description="Colours", layout=W.Layout(width="200px"))
        self.fusion = W.ToggleButtons(options=["mean", "max", "min"], value="mean", description="Head fusion")
        self.discard = W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="Discard ratio", style=style)
        self.residual = W.Checkbox(value=True, description="add residual (0.5·A + 0.5·I)", indent=False)
        self.faith_btn = W.Button(description="Deletion / insertion", icon="line-chart")
        self.faith_method = W.Dropdown(options=[(REGISTRY[n].label, n) for n in [*explainable(), "raw"]], value="relevance",
                                       description="for", layout=W.Layout(width="260px"))
        #: the method registry's panels in the side-by-side row (the captum ones are slower: chosen, not all shown)
        self.panels = W.SelectMultiple(options=[(m.label, n) for n, m in REGISTRY.items()], value=PANELS,
                                       description="Methods", rows=5, layout=W.Layout(width="420px"))
        self.sanity_btn = W.Button(description="Randomisation check", icon="random")
        self.prov_ratio = W.FloatSlider(value=0.75, min=0.1, max=0.95, step=0.05, description="Provenance mask ratio", style=style)
        self.prov_seed = W.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed", layout=W.Layout(width="150px"))
        self.main = AppFigure()
        self.grid = AppFigure(row=True)
        self.summary = AppFigure(row=True)
        self.methods = AppFigure()
        self.extra = AppFigure()
        self.prov = AppFigure()
        # A/B: a second model (or a randomised copy of this one) on the same image, query and settings
        self.compare_controls(list_models(), tooltip="show model B beside this one (A) on the same image, query and settings")
        self.compare_method = W.Dropdown(options=[(m.label, n) for n, m in REGISTRY.items()], value="raw",
                                         description="Map compared", style=style, layout=W.Layout(width="320px"))
        self.faith_text = W.HTML()
        #: deletion / insertion of every map in the methods row, computed in the background after the row appears
        self.live_text = W.HTML()
        self.live = Background()
        self.live_curves: dict = {}
        self.prov_box = W.VBox([W.HTML("<b>Reconstruction provenance</b> (MAE): click a grey patch"),
                                W.HBox([self.prov_ratio, self.prov_seed]), self.prov.box])
        self.export_panel = ExportPanel(self.export_request, reopen=self.restore)
        self.interventions = InterventionPanel(self, ImageBackend(self), on_marks=self._mark_ablated, on_pick=self.select,
                                               own_grid=False)  # ablation / importance / patching (issue 16)
        super().__init__([
            *head,
            W.HBox([self.cls_btn, self.layer, self.head]),
            W.HBox([self.opacity, self.cscale]),
            self.status_area, self.main.box,
            W.HBox([self.compare_box, self.compare_btn, self.compare_off, self.compare_method], layout=W.Layout(**ROW)),
            self.compare_fig.box, self.export_panel,
            figure_row(self.grid, self.summary, self.interventions.heads_fig), self.interventions,
            W.HTML("<b>Methods side by side</b> (raw = the layer / head above)"),
            W.HBox([self.fusion, self.residual]), W.HBox([self.discard, self.panels]), self.methods.box, self.live_text,
            W.HBox([self.faith_btn, self.faith_method, self.sanity_btn]), self.faith_text, self.extra.box,
            self.prov_box,
        ])
        self.load_btn.on_click(lambda _b: self._load_model())
        self.on_change(self.sample_dd, lambda ch: self._set_image(ch["new"]))
        self.on_change(self.upload, lambda ch: self.take_upload(ch["new"], self._set_image))
        self.cls_btn.on_click(lambda _b: self.set_query(self.maps.layout.default_query if self.maps else "cls"))
        self.on_change([self.layer, self.head, self.opacity, self.cscale], lambda _c: self._update_main())
        self.on_change([self.fusion, self.discard, self.residual, self.panels], lambda _c: self._update_methods())
        self.on_change([self.layer, self.head, self.opacity, self.cscale, self.compare_method], lambda _c: self._show_b())
        self.on_change([self.fusion, self.discard, self.residual],
                       lambda _c: self._show_b() if self.compare_method.value == "rollout" else None)
        self.faith_btn.on_click(lambda _b: self.run_faithfulness())
        self.sanity_btn.on_click(lambda _b: self.run_sanity())
        self.on_change([self.prov_ratio, self.prov_seed], lambda _c: self._draw_provenance(None))
        self.start(lambda: self._first(image))

    def _first(self, image):
        self._load_model(refresh=False)
        self.show_first(image, self._set_image)

    # ------------------------------------------------------------------ inputs
    @_guarded
    def _load_model(self, refresh: bool = True):
        self.adapter = self.load_selected(load_model)
        self.maps = None
        dropped = self._b_follows_a()
        if refresh and self.loaded is not None:
            self._compute()
        if dropped:
            raise ValueError(dropped)

    @_guarded
    def _set_image(self, image):
        self.loaded = load_input(image)
        self._source = image
        self._compute()

    def _compute(self):
        if self.adapter is None or self.loaded is None:
            return
        with self.computing():
            self.maps = attention_maps(self.adapter, self.loaded)
        self._explain_cache.clear()
        self.maps_b = None  # B's maps are of the previous image (or model A's settings): computed again when shown
        self._explain_cache_b.clear()
        L, H = self.maps.num_layers, self.maps.num_heads
        with self.quiet():  # the new ranges redraw once, below
            with self.layer.hold_trait_notifications():
                self.layer.max = L - 1
                self.layer.value = min(self.layer.value, L - 1)
            self.head.options = [("mean of heads", "mean")] + [(f"head {h}", h) for h in range(H)]
        self.query = self.maps.layout.default_query  # "cls", or "mean" for models without one (VideoMAE)
        self.cls_btn.description = "Query: CLS" if self.query == "cls" else "Query: all tokens"
        self.interventions.new_input()
        self._draw_all()

    def _draw_all(self):
        self._update_main(rebuild=True)
        g = VA.attention_grid(self.maps, self.query, colorscale=self.cscale.value, cell=70)
        replace_figure(self.grid, g)
        for tr in self.grid.data:
            if tr.type == "heatmap":
                tr.on_click(self._on_grid_click)
        self._mark_ablated(sorted(self.interventions.selected))
        replace_figure(self.summary, VA.head_summary(self.maps))
        self.summary.data[0].on_click(self._on_summary_click)
        self._update_methods()
        self.prov_box.layout.display = None if self.adapter.reconstructs == "image" else "none"
        if self.adapter.reconstructs == "image":
            self._draw_provenance(None)
        self._show_b()

    # ------------------------------------------------------------------ main view
    def set_query(self, query):
        """Show attention *from* ``query`` (``"cls"``, a flat patch index or ``(row, col)``)."""
        self._set_query(query)

    @_guarded
    def _set_query(self, query):
        if self.maps is None:
            return
        if isinstance(query, str) and query.lower() == "mean":
            self.query = "mean"
        else:
            tok = self.maps.layout.token(query)  # validates
            self.query = query.lower() if isinstance(query, str) else tok - self.maps.layout.n_prefix
        self._draw_all()

    @_guarded
    def _update_main(self, rebuild: bool = False):
        if self.maps is None:
            return
        t0 = time.perf_counter()
        m = self.maps.query_map(self.layer.value, self.head.value, self.query)
        head = "mean of heads" if self.head.value == "mean" else f"head {self.head.value}"
        title = f"layer {self.layer.value}, {head}: attention of {'CLS' if self.query == 'cls' else f'patch {self.query}'}"
        marker = VA._query_marker(self.maps.layout, self.maps.patch_size, self.query)
        if rebuild or len(self.main.data) != 3:
            fig = VA.query_overlay(self.maps.image, m, patch_size=self.maps.patch_size, title=title, opacity=self.opacity.value,
                                   colorscale=self.cscale.value, marker=marker)
            replace_figure(self.main, fig)
            self.main.data[0].on_click(self._on_image_click)
        else:
            with self.main.batch_update():
                hm = self.main.data[2]
                hm.z = json_grid(m)
                hm.opacity = self.opacity.value
                hm.colorscale = self.cscale.value
                self.main.layout.annotations[1].text = title
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        self._info(f"<b>{html.escape(self.maps.input.name)}</b> · model <b>{html.escape(self.maps.model.model_id)}</b> · "
                   f"{self.maps.num_layers} layers × {self.maps.num_heads} heads, captured by {self.maps.path} in "
                   f"{self.maps.seconds * 1e3:.0f} ms · view updated in {self.last_update_ms:.0f} ms (from cache)")

    def _on_image_click(self, trace, points, state):
        if not points.xs or self.maps is None:
            return
        p = self.maps.patch_size
        gh, gw = self.maps.layout.grid[-2:]  # video: (t, gh, gw); the image shows one frame
        r, c = int(points.ys[0] // p), int(points.xs[0] // p)
        if 0 <= r < gh and 0 <= c < gw:
            self._set_query(r * gw + c)

    def _on_grid_click(self, trace, points, state):
        if not points.point_inds:
            return
        name = trace.name  # "L{l} H{h}"
        l, h = (int(s[1:]) for s in name.split())
        if self.interventions.active:  # Ablate mode: the click adds / removes the head
            return self.interventions.toggle(l, h)
        self.select(l, h)

    def _mark_ablated(self, selected):
        """Outline the ablated heads on the layers × heads grid."""
        if self.maps is not None:
            self.grid.layout.shapes = VI.head_marks(selected, self.maps.num_layers, self.maps.num_heads)

    def _on_summary_click(self, trace, points, state):
        if not points.point_inds:
            return
        l, h, _ = trace.customdata[points.point_inds[0]]
        self.select(int(l), int(h))

    def select(self, layer: int, head):
        """Show ``layer`` / ``head`` in the main view (what clicking the grid or the summary does)."""
        with self.hold_trait_notifications():
            self.layer.value = int(layer)
            self.head.value = head if head == "mean" else int(head)

    # ------------------------------------------------------------------ methods
    def explained(self, method: str):
        """The cached :class:`explorer.attention.Relevance` of ``method`` for the current query and options."""
        return self._explained_by(self.adapter, self._explain_cache, method)

    def _explained_by(self, adapter, cache: dict, method: str):
        """``method``'s Relevance of ``adapter`` (A or B) for the current query and options, cached in ``cache``."""
        opts = (method, self.query, self.fusion.value, round(self.discard.value, 3), self.residual.value) if method == "rollout" \
            else (method, self.query)
        if opts not in cache:
            cache[opts] = explain(adapter, self.loaded, method, query=self.query, fusion=self.fusion.value,
                                  discard=self.discard.value, residual=self.residual.value, steps=16)
        return cache[opts]

    def method_maps(self) -> dict:
        """Title → map of each panel chosen in :attr:`panels` (names of the method registry), in registry order."""
        out = {}
        chosen = self.panels.value or PANELS  # none chosen: the first four
        for name in (n for n in REGISTRY if n in chosen):
            if name == "raw":
                out[f"raw L{self.layer.value} {self.head.value}"] = self.maps.query_map(self.layer.value, self.head.value, self.query)
            elif name == "rollout":
                out[f"rollout ({self.fusion.value}, discard {self.discard.value:.2f})"] = self.explained("rollout").map
            else:
                out[REGISTRY[name].label] = self.explained(name).map
        return out

    @_guarded
    def _update_methods(self):
        if self.maps is None:
            return
        maps = self.method_maps()
        replace_figure(self.methods, VA.method_row(self.maps.image, maps, opacity=self.opacity.value,
                                             colorscale=self.cscale.value))
        self._start_live(maps)

    #: the live check's settings: cheaper than the on-demand button's (fewer curve points), as many random orders
    LIVE_STEPS, LIVE_ORDERS = 8, 20

    def _start_live(self, maps: dict) -> None:
        """Deletion / insertion of each map of the methods row against random orders, in the background: the row is
        on screen first, the numbers follow (a newer row supersedes the work)."""
        adapter, loaded = self.adapter, self.loaded
        self.live_curves = {}
        self.live_text.value = ("<div style='font-size:12px'><i>Faithfulness of each map (deletion / insertion against "
                                f"{self.LIVE_ORDERS} random orders): computing in the background…</i></div>")

        def work(stop):
            out = {}
            for title, m in maps.items():
                out[title] = deletion_insertion(adapter, loaded, m, steps=self.LIVE_STEPS, random_orders=self.LIVE_ORDERS,
                                                lock=model_lock(), should_stop=stop)
            return out

        def failed(e):
            if not isinstance(e, Stopped):
                self.live_text.value = f"<div style='font-size:12px;color:var(--jp-error-color0,#8b0000)'>Faithfulness not computed: {html.escape(str(e))}</div>"

        self.live.submit(work, self._show_live, failed)

    def _show_live(self, curves: dict) -> None:
        self.live_curves = curves
        self.live_text.value = VA.faithfulness_table_html(curves)

    def _map_for(self, method: str) -> np.ndarray:
        if method == "raw":
            return self.maps.query_map(self.layer.value, self.head.value, self.query)
        return self.explained(method).map

    @_guarded
    def run_faithfulness(self):
        """Deletion / insertion curves for the chosen method's map (computed on demand)."""
        curves = deletion_insertion(self.adapter, self.loaded, self._map_for(self.faith_method.value))
        replace_figure(self.extra, VA.faithfulness_curves(curves, title=f"faithfulness of {self.faith_method.value}"))
        self.faith_text.value = (f"<div style='font-size:12px'>{html.escape(self.faith_method.value)}: "
                                 f"{html.escape(curves.summary())}</div>")
        return curves

    @_guarded
    def run_sanity(self):
        """Cascading model-randomisation check for the chosen method."""
        method = self.faith_method.value
        q, fusion, discard, residual = self.query, self.fusion.value, self.discard.value, self.residual.value
        layer, head = self.layer.value, self.head.value

        def fn(adapter, image):
            if method == "raw":
                return attention_maps(adapter, image).query_map(layer, head, q)
            return explain(adapter, image, method, query=q, fusion=fusion, discard=discard, residual=residual, steps=8).map

        s = randomisation_check(self.adapter, self.loaded, fn)
        rows = "".join(f"<tr><td>{n}</td><td>{r:.3f}</td><td>{x:.3f}</td></tr>" for n, r, x in zip(s.levels, s.spearman, s.ssim))
        colour = {"depends": "var(--jp-success-color0,#1b5e20)", "mixed": "var(--jp-warn-color1,#b35900)", "blind": "var(--jp-error-color0,#8b0000)"}[s.outcome]
        self.faith_text.value = (f"<div style='font-size:12px'><b>Randomisation check</b> ({html.escape(method)}): "
                                 f"<span style='color:{colour}'>{html.escape(s.verdict())}</span>."
                                 f"<table><tr><th>top blocks randomised</th><th>Spearman</th><th>SSIM</th></tr>{rows}</table></div>")
        return s

    # ------------------------------------------------------------------ A/B comparison
    @_guarded
    def compare(self, model_b, *, seed: int = 0):
        """Show model B beside the model on screen (A): the same image, query, layer, head, fusion, discard ratio and
        residual, A's map, B's map and B − A for the method chosen in :attr:`compare_method` (``"raw"``: the main
        view), titled with their Spearman rank correlation and top-k overlap over the patches.

        Args:
            model_b: a model name, hub id or folder, ``"randomised copy"`` (A with every encoder block and any head
                re-drawn, seeded by ``seed``), an adapter from :func:`explorer.load_model`, or ``None`` to stop.
        Refused (a message in the app) when B is not an image / video attention model, or when its token layout
        (grid, patch size, prefix tokens) differs from A's: the same query patch could not be given to both.
        """
        if model_b is None or (isinstance(model_b, str) and not model_b.strip()):
            self._stop_comparing()
            return
        if self.adapter is None:
            raise ValueError("Load model A first.")
        b, name = self._resolve_b(model_b, seed)
        self._check_b(b, name)
        self.model_b, self.name_b, self._b_request = b, name, (model_b, int(seed))
        self.maps_b = None
        self._explain_cache_b.clear()
        self.compare_off.disabled = False
        if self.maps is not None:
            self._update_main()  # the status line: A's view (an earlier refusal's message goes)
        self._show_b()

    def _stop_comparing(self) -> None:
        self.model_b = self.name_b = self.maps_b = self.comparison = self._b_request = None
        self._explain_cache_b.clear()
        self.compare_off.disabled = True
        hide_figure(self.compare_fig)

    def _resolve_b(self, model_b, seed: int):
        """``(adapter, name)`` of what :meth:`compare` was given."""
        return self.pick_model_b(
            model_b, load=lambda n: load_model(n, device=self.device_dd.value), redrawing="re-drawing every encoder block of A…",
            randomise=lambda: (randomise_top_layers(self.adapter, len(self.adapter.blocks), seed=int(seed))[0],
                               f"{self.adapter.model_id} randomised (seed {int(seed)})"))

    def _check_b(self, b, name: str) -> None:
        if not (hasattr(b, "layout") and hasattr(b, "relevance_target")):
            raise ModelLoadError(f"{name!r} is a {getattr(b, 'family', type(b).__name__)} model without image attention "
                                 "the explorer can capture: it cannot be compared here.")
        la, lb = self.adapter.layout, b.layout
        if (lb.grid, lb.patch_size, lb.names, lb.tubelet) != (la.grid, la.patch_size, la.names, la.tubelet):
            raise ValueError(f"{name!r} sees {_layout_text(lb)}, A ({self.adapter.model_id}) {_layout_text(la)}: the same "
                             "query patch cannot be given to both.")

    def _b_follows_a(self) -> "str | None":
        """After model A changed: a randomised copy is re-drawn from the new A; another B is kept if it still fits A,
        else comparing stops and the reason is returned."""
        if self.model_b is None:
            return None
        request, seed = self._b_request
        if isinstance(request, str) and request.strip() == RANDOMISED:
            self.model_b, self.name_b = self._resolve_b(request, seed)
            return None
        try:
            self._check_b(self.model_b, self.name_b)
        except (ValueError, ModelLoadError) as e:
            self._stop_comparing()
            return f"Stopped comparing: {e}"
        return None

    def map_b(self, method: "str | None" = None) -> np.ndarray:
        """Model B's map of ``method`` (default: the one chosen for the comparison) for the view on screen, from B's
        cache: B's attention is captured once per (image, model B); rollout / relevance / captum maps once per
        (query, options), as A's are.  ``layout.grid``-shaped."""
        method = method or self.compare_method.value
        if self.model_b is None or self.loaded is None:
            raise ValueError("Not comparing: choose model B and press Compare A/B first.")
        if method != "raw":
            with self.computing(f"computing B's {method}"):
                return self._explained_by(self.model_b, self._explain_cache_b, method).map
        if self.maps_b is None:
            with self.computing("capturing B's attention"):
                self.maps_b = attention_maps(self.model_b, self.loaded)
        layer, head = self.layer.value, self.head.value
        if layer >= self.maps_b.num_layers or (head != "mean" and head >= self.maps_b.num_heads):
            nl, nh = self.maps_b.num_layers, self.maps_b.num_heads
            raise ValueError(f"B ({self.name_b}) has {nl} layer{'s' * (nl != 1)} x {nh} head{'s' * (nh != 1)}: "
                             f"layer {layer}, {_head_text(head)} is A's only; choose another layer / head, or a map "
                             "over all layers (rollout, relevance).")
        return self.maps_b.query_map(layer, head, self.query)

    @_guarded
    def _show_b(self) -> None:
        if self.model_b is None or self.maps is None:
            return
        try:
            self.comparison, fig = self._comparison_figure()
        except Exception:
            hide_figure(self.compare_fig)  # no stale comparison beside a view it does not match
            raise
        replace_figure(self.compare_fig, fig)

    def _comparison_figure(self):
        method = self.compare_method.value
        a, b = self._map_for(method), self.map_b(method)
        comparison = compare_maps(a, b)
        note = ""
        if REGISTRY[method].target:
            ta = self.explained(method).options.get("target")
            tb = self._explained_by(self.model_b, self._explain_cache_b, method).options.get("target")
            if ta != tb:
                note = f"A explains its class {ta}, B its class {tb}"
        marker = VA._query_marker(self.maps.layout, self.maps.patch_size, self.query)
        fig = VCA.attention_comparison_figure(
            self.maps.image, comparison, name_a=self.adapter.model_id, name_b=self.name_b, what=self._compare_what(method),
            note=note, marker=marker, opacity=self.opacity.value, colorscale=self.cscale.value,
            label="attention" if method in ("raw", "rollout") else "relevance")
        return comparison, fig

    def _compare_what(self, method: str) -> str:
        """The compared map in words: ``"raw attention, layer 1, mean of heads, query CLS"``."""
        query = f", query {VA.query_text(self.query)}" if REGISTRY[method].query else ""
        if method == "raw":
            return f"raw attention, layer {self.layer.value}, {_head_text(self.head.value)}{query}"
        if method == "rollout":
            return (f"rollout ({self.fusion.value} of heads, discard {self.discard.value:.2f}, "
                    f"{'with' if self.residual.value else 'no'} residual){query}")
        return REGISTRY[method].label + query

    # ------------------------------------------------------------------ provenance
    def provenance_mask(self) -> np.ndarray:
        return make_mask(self.adapter.grid, MaskSpec("random", self.prov_ratio.value, self.prov_seed.value))

    @_guarded
    def _draw_provenance(self, query):
        if self.adapter is None or self.adapter.reconstructs != "image" or self.loaded is None:
            return
        mask = self.provenance_mask()
        if query is None:
            hidden = np.flatnonzero(mask)
            gh, gw = mask.shape
            centre = (gh // 2) * gw + gw // 2
            query = int(hidden[np.argmin(np.abs(hidden - centre))])
        prov = provenance(self.adapter, self.loaded, query, ratio=self.prov_ratio.value, seed=self.prov_seed.value)
        replace_figure(self.prov, VA.provenance_figure(prov))
        self.prov.data[0].on_click(self._on_prov_click)
        self.last_provenance = prov

    def _on_prov_click(self, trace, points, state):
        if not points.xs:
            return
        p = self.adapter.patch_size
        gh, gw = self.adapter.grid
        r, c = int(points.ys[0] // p), int(points.xs[0] // p)
        if 0 <= r < gh and 0 <= c < gw:
            self._draw_provenance(r * gw + c)

    def show_provenance(self, query):
        """Provenance of masked patch ``query`` (flat index), as clicking it does."""
        self._draw_provenance(int(query))

    # ------------------------------------------------------------------ sidecars
    @classmethod
    def from_sidecar(cls, path, *, device: str | None = None, allow_download: bool = False, **kwargs) -> "AttentionApp":
        """The app as it was when the figure ``path`` was exported (its ``.json`` sidecar, or the PNG / PDF / SVG that
        embeds it): the same model (weights checked), image, query, layer, head, fusion, discard ratio, residual and
        methods.  ``kwargs`` go to :class:`AttentionApp`."""
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in cls.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; AttentionApp reopens "
                             "'attention_methods' figures.")
        app = cls(model=r.model, image=r.sources[0], **kwargs)
        app._apply_recorded(r)
        return app

    @_guarded
    def restore(self, path):
        """Come back to the view the figure ``path`` was exported from, in this app (what the Reopen button does)."""
        r = self.reopen(path)
        self.hand_over_model(r.model)
        self.adapter = r.model
        dropped = self._b_follows_a()
        self._set_image(r.sources[0])
        self._apply_recorded(r)
        if dropped:
            raise ValueError(dropped)

    def _apply_recorded(self, r) -> None:
        o = r.options
        if not (isinstance(r.sources[0], str) and r.sources[0] in SAMPLES):
            with self.quiet():
                self.sample_dd.value = None  # not a listed sample: the dropdown does not name it
        self.layer.value, self.head.value = int(o["layer"]), o["head"]
        self.fusion.value, self.discard.value, self.residual.value = o["fusion"], float(o["discard"]), bool(o["residual"])
        self.panels.value = tuple(o["methods"])
        self.set_query(o["query"])

    # ------------------------------------------------------------------ export
    def export_request(self) -> dict:
        if self.maps is None:
            raise ValueError("Nothing to export yet: load a model and an image first.")
        return dict(recipe="attention_methods", model=self.adapter, inputs=[self._source],
                    name=f"{file_stem(self.maps.input.name)}-attention",
                    options=dict(query=self.query, layer=int(self.layer.value), head=self.head.value, fusion=self.fusion.value,
                                 discard=float(self.discard.value), residual=bool(self.residual.value), steps=16,
                                 methods=[n for n in REGISTRY if n in (self.panels.value or PANELS)]))

