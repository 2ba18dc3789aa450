"""The masked-reconstruction app: pick a model and an image, move the masking-ratio slider.

Composition only: inputs come from :mod:`explorer.io` / :mod:`explorer.data.samples`, results from
:mod:`explorer.reconstruction` (a cached ratio sweep), figures from :mod:`explorer.viz`.
Every error is shown inside the widget; no callback lets an exception reach the kernel.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import ipywidgets as W
import numpy as np

from .. import viz
from ..attention.faithfulness import randomise_top_layers
from ..viz import compare as VC
from ..viz.mae import figure_title
from ..viz.mae_screen import screen_figure, screen_update
from ..export import ReproduceError
from ..io import ImageLoadError, LoadedImage
from ..masking import SWEEP_RATIOS, STRATEGIES, MaskError
from ..models import DeviceError, ModelLoadError, list_models, load_model
from ..preprocess import POLICIES
from ..reconstruction import InputInfo, SweepCache, as_input, load_input, reconstruct_manual
from ..data.samples import SAMPLES, sample_label
from .base import RANDOMISED, REST_DELAY_S, ROW, AppBase, file_stem  # noqa: F401 (RANDOMISED: public here)
from .figures import AppFigure, hide_figure, replace_figure
from .export_panel import ExportPanel
from .messages import guarded

#: Exceptions whose message is meant for the user as it is (no traceback shown).
#: how long the ratio slider rests before the curve's marker follows it (seconds)
MARKER_DELAY_S = REST_DELAY_S
#: what the Compare box offers for "B = A with every encoder block re-drawn" (a model that learned nothing)

USER_ERRORS = (ImageLoadError, ModelLoadError, DeviceError, MaskError, ValueError, ReproduceError)


_guarded = guarded(USER_ERRORS)


class MAEApp(AppBase):
    """Interactive masked reconstruction.

    Args:
        model: shipped mini model name, Hugging Face id or folder (loaded at start).
        image: a sample name (see :data:`explorer.SAMPLES`) or anything :func:`explorer.load_image` takes.
        ratio, seed, strategy, fit: initial settings.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...

    Attributes:
        result: the :class:`explorer.Reconstruction` on screen.
        sweep: the cached :class:`explorer.ReconstructionSweep` behind the slider (``None`` in manual mode).
        fig: the ``plotly.graph_objects.FigureWidget`` with the five panels.
        last_update_ms: server-side time of the last figure update.
    """

    recipes = ("reconstruction",)

    def __init__(self, model: str = "mini-mae", image="chelsea", *, ratio: float = 0.75, seed: int = 0,
                 strategy: str = "random", fit: str = "center-crop", device: str = "auto", cache: SweepCache | None = None):
        self.cache = cache or SweepCache()
        self.adapter = None
        self.loaded: LoadedImage | None = None
        self._source = None  # what the user gave (sample name, path, upload): recorded by exports
        self.result = None
        self.sweep = None
        self.last_update_ms = float("nan")
        self._pixels = None
        self._input_info: InputInfo | None = None
        self._err_max = None
        self._updates: dict = {}  # (id(result), error scale) -> encoded panel update, for the sweep on screen

        self.fit_dd = W.Dropdown(options=list(POLICIES), value=fit, description="Fit", layout=W.Layout(width="190px"))
        head = self.header(model=model, models=list_models(), placeholder="mini-mae, facebook/vit-mae-base or a folder",
                           device=device, dtypes=["float32", "bfloat16"], dtype="float32",
                           samples=[(sample_label(n), n) for n in SAMPLES], sample_value=next(iter(SAMPLES)),
                           sample_extra=[self.fit_dd])
        self.strategy_tb = W.ToggleButtons(options=list(STRATEGIES), value=strategy, description="Mask",
                                           tooltips=["MAE uniform random", "BEiT/SimMIM blocks", "regular lattice", "click patches to hide / show"])
        self.ratio = W.FloatSlider(value=ratio, min=SWEEP_RATIOS[0], max=SWEEP_RATIOS[-1], step=0.05, description="Masking ratio",
                                   readout_format=".2f", continuous_update=True, style={"description_width": "initial"},
                                   layout=W.Layout(width="420px"))
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="Seed", layout=W.Layout(width="160px"))
        self.per_view_scale = W.Checkbox(value=False, description="error scale per view", indent=False,
                                         tooltip="off: one error colour scale per image (that of the random masks), "
                                                 "so strategies compare; on: each sweep's own largest error")
        self.fig = AppFigure()
        #: the line above the figure: model, mask, seed, ratio, masked-patch PSNR (HTML; updated with the panels)
        self.fig_caption = W.HTML()
        self.curve = AppFigure()
        # A/B: a second checkpoint (or a randomised copy of this one) on the same input under the same masks
        self.model_b = None
        self.name_b = None
        self.compare_controls(list_models(), tooltip="show model B beside this one (A) on the same image and the same mask")
        self.export_panel = ExportPanel(self.export_request, reopen=self.restore)

        super().__init__([
            *head,
            W.HBox([self.strategy_tb]),
            W.HBox([self.ratio, self.seed, self.per_view_scale], layout=W.Layout(**ROW)),
            self.status_area, self.fig_caption, self.fig.box,
            W.HBox([self.compare_box, self.compare_btn, self.compare_off], layout=W.Layout(**ROW)), self.compare_fig.box,
            self.export_panel, self.curve.box,
        ])

        self.load_btn.on_click(lambda _b: self._load_model())
        self.on_change(self.sample_dd, lambda ch: self._set_image_from(ch["new"]))
        self.on_change(self.upload, lambda ch: self.take_upload(ch["new"], self._set_image_from))
        self.on_change([self.fit_dd, self.strategy_tb, self.seed, self.per_view_scale], lambda _c: self._refresh())
        self.on_change(self.ratio, self._on_ratio)
        self.start(lambda: self._first(image))

    # ------------------------------------------------------------------ sidecars
    @classmethod
    def from_sidecar(cls, path, *, device: str | None = None, allow_download: bool = False, **kwargs) -> "MAEApp":
        """The app as it was when the figure ``path`` was exported (its ``.json`` sidecar, or the exported PNG / PDF /
        SVG that embeds it): the same model (weights checked), input, mask strategy, ratio, seed, fit, hand-made mask
        and error scale.  ``kwargs`` go to :class:`MAEApp` (e.g. ``cache``)."""
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in cls.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; MAEApp reopens "
                             "'reconstruction' figures.")
        o = r.options
        app = cls(model=r.model, image=r.sources[0], ratio=o["ratio"], seed=o["seed"], fit=o["fit"],
                  strategy="random" if o["strategy"] == "manual" else o["strategy"], **kwargs)
        app._apply_recorded(r)
        return app

    @_guarded
    def restore(self, path):
        """Come back to the view the figure ``path`` was exported from, in this app (what the Reopen button does)."""
        r = self.reopen(path)
        o = r.options
        self.hand_over_model(r.model)
        self.adapter = r.model
        with self.quiet():
            self.ratio.value, self.seed.value, self.fit_dd.value = o["ratio"], o["seed"], o["fit"]
            self.strategy_tb.value = "random" if o["strategy"] == "manual" else o["strategy"]
            self.per_view_scale.value = False
        self._source, self.loaded = r.sources[0], r.inputs[0]
        self._refresh()
        self._apply_recorded(r)

    def _apply_recorded(self, r) -> None:
        """The parts of a recorded view the constructor does not take: the sample shown, a hand-made mask, the error
        scale the figure was drawn with."""
        o = r.options
        if not (isinstance(r.sources[0], str) and r.sources[0] in SAMPLES):
            with self.quiet():
                self.sample_dd.value = None  # not a listed sample: the dropdown does not name it
        if o["strategy"] == "manual":
            self.paint(o["manual"])
        want = o.get("error_max")
        if want is not None and self.sweep is not None and not np.isclose(self._err_max, want, rtol=1e-6):
            self.per_view_scale.value = True  # exported with the scale of its own sweep
            if not np.isclose(self._err_max, want, rtol=1e-6):
                self._err_max = float(want)
                self._show(self.result, rebuild=True)

    def _first(self, image):
        self._load_model(refresh=False)
        self.show_first(image, self._set_image_from)

    # ------------------------------------------------------------------ status
    def _info_line(self, extra: str = ""):
        r = self.result
        parts = []
        if r is not None:
            parts.append(f"<b>{html.escape(r.input.name)}</b>: {html.escape(r.input.fit_description)}")
            parts += [html.escape(n) for n in r.input.notes]
            parts += [f"<span style='color:var(--jp-warn-color0,#8a5300)'>{html.escape(n)}</span>" for n in r.notes]
            if self.adapter is not None:
                parts.append(f"model <b>{html.escape(self.adapter.model_id)}</b> on {self.adapter.device} ({str(self.adapter.dtype).replace('torch.', '')})")
        if extra:
            parts.append(extra)
        self._info("<br>".join(parts))

    # ------------------------------------------------------------------ inputs
    @_guarded
    def _load_model(self, refresh: bool = True):
        adapter = self.load_selected(load_model)
        if adapter.reconstructs != "image":
            why = getattr(adapter, "no_reconstruction", None) or f"it is a {adapter.family} model, not a masked autoencoder"
            raise ModelLoadError(f"{self.model_box.value.strip()!r} cannot be reconstructed here: {why}. Open it in the "
                                 "attention explorer (notebook 03) instead.")
        self.adapter = adapter
        if refresh and self.loaded is not None:
            self._set_image(self.loaded)

    @_guarded
    def _set_image_from(self, image):
        loaded = load_input(image)
        self._source = image
        self._set_image(loaded)

    @_guarded
    def _set_image(self, loaded: LoadedImage):
        self.loaded = loaded
        self._refresh()

    # ------------------------------------------------------------------ compute → show
    @_guarded
    def _refresh(self):
        if self.adapter is None or self.loaded is None:
            return
        if self.strategy_tb.value == "manual":
            self._pixels, self._input_info = as_input(self.loaded, self.fit_dd.value, self.adapter.image_size)
            self.ratio.disabled = True
            hidden = np.flatnonzero(self.result.mask) if self.result is not None and self.result.mask.size == self.adapter.num_patches else []
            self.sweep = None
            self._show(reconstruct_manual(self.adapter, self._pixels, self._input_info, hidden, self.seed.value), rebuild=True)
            return
        self.ratio.disabled = False
        t0 = time.perf_counter()
        with self.computing("computing the ratio sweep"):
            self.sweep = self.cache.get(self.adapter, self.loaded, self.seed.value, self.strategy_tb.value, self.fit_dd.value)
        # The sweep already holds the fitted input: clicks paint on exactly what it was computed from.
        self._pixels, self._input_info = self.sweep.results[0].image, self.sweep.results[0].input
        self._err_max = self._error_scale()
        self._show(self.sweep.at(self.ratio.value), rebuild=True, extra_ms=(time.perf_counter() - t0) * 1e3)

    def _error_scale(self) -> float:
        """The error map's top colour: the largest hidden-patch error of this image's **random** sweep (same model,
        fit and seed), so block and grid masks share the random one's scale; with "scale per view" ticked, the
        largest error of the sweep on screen.  Errors above the scale show in the top colour."""
        sweep = self.sweep
        if not self.per_view_scale.value and sweep.results[0].spec.strategy != "random":
            with self.computing("computing the random sweep for the error scale"):
                sweep = self.cache.get(self.adapter, self.loaded, self.seed.value, "random", self.fit_dd.value)
        return float(max(r.patch_error[r.mask].max() for r in sweep.results))

    @_guarded
    def _on_ratio(self, change):
        if self.sweep is None:
            return
        self._show(self.sweep.at(change["new"]))

    @_guarded
    def _on_click(self, trace, points, state):
        if self.adapter is None or self._pixels is None or not points.xs:
            return
        p = self.adapter.patch_size
        gh, gw = self.adapter.grid
        col, row = int(points.xs[0] // p), int(points.ys[0] // p)
        if not (0 <= row < gh and 0 <= col < gw):
            return
        mask = self.result.mask.copy()
        mask[row, col] = ~mask[row, col]
        self._paint(mask)

    def _paint(self, mask: np.ndarray):
        rec = reconstruct_manual(self.adapter, self._pixels, self._input_info, np.flatnonzero(mask), self.seed.value)
        if self.strategy_tb.value != "manual":
            with self.quiet():  # keep the current mask: do not recompute on the toggle change
                self.strategy_tb.value = "manual"
            self.ratio.disabled = True
            self.sweep = None
            hide_figure(self.curve)
        self._show(rec)

    @_guarded
    def paint(self, hidden: "list[int]"):
        """Show a hand-made mask (flat patch indices hidden), as clicking patches does."""
        mask = np.zeros(self.adapter.num_patches, bool)
        mask[np.asarray(hidden, dtype=np.int64)] = True
        self._paint(mask.reshape(self.adapter.grid))

    def _show(self, rec, rebuild: bool = False, extra_ms: float = 0.0):
        t0 = time.perf_counter()
        same_size = self.result is not None and self.result.image.shape == rec.image.shape and len(self.fig.data) == 5
        self.result = rec
        err_max = self._err_max if self.sweep is not None else None
        if rebuild or not same_size:
            replace_figure(self.fig, screen_figure(rec, error_max=err_max))
            for tr in self.fig.data[:4]:
                tr.on_click(self._on_click)
            self._draw_curve()
        else:
            # five image sources in one message whose keys plotly.js reads as edits of the layout images
            # (``images[i].source``: the ``images.i.source`` form a batch update sends makes it redraw the whole figure,
            # as a title edit would): no trace is redrawn, so every panel lands in one frame
            upd = self._update_for(rec, err_max)
            if self.fig.data[4].zmax != upd["error_max"]:
                self.fig.data[4].zmax = upd["error_max"]
            self.fig.plotly_relayout({f"images[{i}].source": src for i, src in enumerate(upd["sources"])})
            self._settle(upd)
        self.fig_caption.value = (f"<div style='font-size:13px;padding:2px 0 0 10px;color:var(--jp-ui-font-color1,#2a3f5f)'>"
                                  f"{html.escape(figure_title(rec))}</div>")
        self._show_b(rec)
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        timing = f"figure updated in {self.last_update_ms:.0f} ms"
        if extra_ms:
            timing = f"ratio sweep ready in {extra_ms:.0f} ms (19 ratios, cached); " + timing
        hint = "click patches to hide / show them" if rec.spec.strategy != "manual" else f"manual mask: {rec.mask.sum()} patches hidden; click to toggle"
        self._info_line(f"<span style='color:var(--jp-ui-font-color2,#666)'>{timing} · {hint}</span>")

    def _update_for(self, rec, err_max) -> dict:
        """The panel update for ``rec`` (encoded images, error grid, titles): encoded once per result of the sweep
        on screen and reused when the slider comes back to its ratio."""
        key = (id(rec), err_max)
        upd = self._updates.get(key)
        if upd is None or upd[0] is not rec:
            if len(self._updates) > 64:
                self._updates.clear()
            upd = self._updates[key] = (rec, screen_update(rec, error_max=err_max))
        return upd[1]

    def _settle(self, upd: dict | None = None) -> None:
        """Once the slider rests (~0.15 s): move the ratio curve's marker to the ratio on screen and give the error
        map its hover values (``upd["error"]``).  Both redraw more than the panels (the whole curve; every trace of
        the figure), which would delay the panels of a slider being dragged.  Without a running event loop (scripts,
        tests) it happens at once."""
        def move():
            if upd is not None and len(self.fig.data) == 5:
                self.fig.data[4].z = upd["error"]  # plotly sends it only when it differs
            if self.sweep is not None and self.result is not None and self.curve.layout.shapes:
                r = self.result.spec.ratio
                self.curve.plotly_relayout({"shapes[0].x0": r, "shapes[0].x1": r})

        self.when_resting(move)

    # ------------------------------------------------------------------ A/B comparison
    @_guarded
    def compare(self, model_b):
        """Show model B beside the model on screen (A): the same input, the same mask (every strategy, ratio and hand-
        made mask), their difference and B − A in masked-patch PSNR.  ``model_b``: a model name, hub id or folder,
        ``"randomised copy"`` (A with every encoder block re-drawn, seeded by the Seed box), an adapter, or ``None``
        to stop comparing."""
        if model_b is None or (isinstance(model_b, str) and not model_b.strip()):
            self.model_b = self.name_b = None
            self.compare_off.disabled = True
            hide_figure(self.compare_fig)
            return
        if self.adapter is None:
            raise ValueError("Load model A first.")
        seed = int(self.seed.value)
        b, name = self.pick_model_b(
            model_b, load=lambda n: load_model(n, device=self.device_dd.value), redrawing="re-drawing every encoder block of A…",
            randomise=lambda: (randomise_top_layers(self.adapter, len(self.adapter.blocks), seed=seed)[0],
                               f"{self.adapter.model_id} randomised (seed {seed})"))
        if b.reconstructs != "image":
            raise ModelLoadError(f"{name!r} is a {b.family} model, not a masked autoencoder: it cannot be compared here.")
        if (b.grid, b.patch_size) != (self.adapter.grid, self.adapter.patch_size):
            raise ValueError(f"{name!r} sees a {b.grid[0]}x{b.grid[1]} grid of {b.patch_size}-px patches, A a "
                             f"{self.adapter.grid[0]}x{self.adapter.grid[1]} grid of {self.adapter.patch_size}-px "
                             "patches: the same mask cannot be given to both.")
        self.model_b, self.name_b = b, name
        self.compare_off.disabled = False
        if self.result is not None:
            self._show_b(self.result)

    def result_b(self, rec=None):
        """Model B's reconstruction of the view on screen (same input and mask), or ``None`` when not comparing."""
        rec = rec if rec is not None else self.result
        if self.model_b is None or rec is None:
            return None
        if rec.spec.strategy == "manual" or self.sweep is None:
            return reconstruct_manual(self.model_b, self._pixels, self._input_info, np.flatnonzero(rec.mask),
                                      self.seed.value)
        with self.computing("computing B's ratio sweep"):
            sweep_b = self.cache.get(self.model_b, self.loaded, self.seed.value, self.strategy_tb.value, self.fit_dd.value)
        return sweep_b.at(rec.spec.ratio)

    def _show_b(self, rec) -> None:
        if self.model_b is None:
            return
        replace_figure(self.compare_fig, VC.comparison_figure(rec, self.result_b(rec), name_a=self.adapter.model_id,
                                                              name_b=self.name_b))

    # ------------------------------------------------------------------ export
    def export_request(self) -> dict:
        """What the Export button exports: the ``reconstruction`` recipe for the view on screen."""
        r = self.result
        if r is None or self.adapter is None:
            raise ValueError("Nothing to export yet: load a model and an image first.")
        manual = r.spec.strategy == "manual"
        options = dict(ratio=float(r.spec.ratio), seed=int(r.spec.seed), strategy=r.spec.strategy, fit=r.input.fit_policy,
                       manual=[int(i) for i in np.flatnonzero(r.mask)] if manual else [],
                       error_max=self._err_max if self.sweep is not None else None)
        name = f"{file_stem(r.input.name)}-{self.adapter.model_id.split('/')[-1]}-{r.spec.strategy}-{round(100 * r.hidden_fraction)}"
        return dict(recipe="reconstruction", model=self.adapter, inputs=[self._source if self._source is not None else self.loaded],
                    options=options, name=name)

    def _draw_curve(self):
        if self.sweep is None:  # a hand-made mask has no ratio sweep: no curve (not an empty strip)
            hide_figure(self.curve)
            return
        # the non-learned fills on the same masks, computed once per sweep and kept with it (a slider move redraws nothing)
        replace_figure(self.curve, viz.ratio_curve(self.sweep, baselines=self.sweep.baseline_psnr, current=self.result.spec.ratio))
