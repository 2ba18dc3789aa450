"""The cross-modal alignment app: which image region each word goes with, and how much the output
depends on each modality.

Composition only: results from :mod:`explorer.fusion`, figures from :mod:`explorer.viz.fusion`, the views
and checks from :mod:`.fusion_panels`.  One forward + backward per (model, image, text) feeds every word /
method / layer / head / opacity / sort interaction from the cached :class:`explorer.fusion.Alignment`;
Integrated Gradients per word, the modality report and the counterfactual are computed on demand and kept.
The Method menu is the fusion method registry; Export writes the view on screen (method, its settings,
word, patch) through the ``word_maps`` recipe, and Reopen (or :meth:`FusionApp.from_sidecar`) comes back to it.
"Compare A/B" shows a second model (or a randomised copy of this one) beside it (:class:`.fusion_panels.ABComparison`).
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import ipywidgets as W

from ..models.fusion_registry import list_fusion_models
from ..fusion import align, get_method, load_fusion_model
from ..io import LoadedImage, load_image
from ..reconstruction import load_input
from ..data.samples import SAMPLES, sample_label
from ..data.scenes import make_scene
from ..viz.attention import COLORSCALES
from .background import Background
from .base import ROW, AppBase, file_stem
from .figures import AppFigure, figure_row
from .export_panel import ExportPanel
from .intervention_panel import FusionBackend, InterventionPanel
from .fusion_panels import RANDOMISED, USER_ERRORS, ABComparison, FusionChecks, WordPatchViews, _guarded, method_menu  # noqa: F401 (USER_ERRORS: public here)

#: Held-out generated scenes offered as samples (seeds never used in training), with ground truth.
SCENE_SEEDS = (10_000_003, 10_000_011, 10_000_021, 10_000_042, 10_000_077, 10_000_101)
PHOTO_CAPTIONS = {"chelsea": "a cat", "coffee": "a cup of coffee", "astronaut": "an astronaut", "rocket": "a rocket",
                  "china": "a white teapot", "flower": "a pink flower"}


#: Words a first look should skip (the app opens on the first word not in this list).
FUNCTION_WORDS = frozenset("a an the of is are there what how many which to in on at and with".split())


def default_word(words: list[str]) -> int:
    """Index of the first content word (``"red"`` in ``"a red circle"``), else 0."""
    return next((k for k, w in enumerate(words) if w.lower().strip(".,?!") not in FUNCTION_WORDS), 0)


def scene_sample(seed: int):
    """``(LoadedImage, caption, scene)`` of generated scene ``seed`` (64 px, ground truth attached)."""
    sc = make_scene(int(seed))
    img = load_image(sc.image, name=f"scene-{seed}")
    return img, sc.caption(), sc


def recorded_image(r):
    """What to show for the input of a reopened sidecar ``r``: ``"scene:<seed>"`` for a generated scene (one of
    :data:`SCENE_SEEDS`, or one recorded under its name ``scene-<seed>``; checked by its hash), so that its caption
    and ground truth come back; else the recorded source (a sample name) or the checked :class:`LoadedImage`."""
    loaded, source = r.inputs[0], r.sources[0]
    if isinstance(source, str) and source in SAMPLES:
        return source
    name = str(loaded.name or "")
    seeds = ([int(name[6:])] if name.startswith("scene-") and name[6:].isdigit() else []) + list(SCENE_SEEDS)
    for seed in dict.fromkeys(seeds):
        if scene_sample(seed)[0].sha256 == loaded.sha256:
            return f"scene:{seed}"
    return loaded


def check_recorded(r, path) -> None:
    """Refuse a ``word_maps`` sidecar with settings the app has no control for (a fit other than centre-crop, method
    options other than the registry's defaults): reopened, it would show another figure than the one exported.

    Raises:
        ValueError: naming the option (``python -m explorer reproduce`` rebuilds such figures).
    """
    o = r.options
    m = get_method(o["method"])
    want = {k: m.settings(**(o["method_options"] or {}))[k] for k in m.options}
    if o["fit"] != "center-crop" or want != dict(m.options):
        what = f"fit={o['fit']!r}" if o["fit"] != "center-crop" else f"method_options={o['method_options']!r}"
        raise ValueError(f"{Path(path).name} was exported with {what}, which FusionApp has no control for (it shows "
                         "center-crop and each method's default options); rebuild it with `python -m explorer "
                         "reproduce` instead.")


class FusionApp(ABComparison, WordPatchViews, FusionChecks, AppBase):
    """Interactive cross-modal alignment explorer.

    Args:
        model: ``"mini-fusion"`` (shipped), a hub id (CLIP, BLIP ITM, ViLT) or a folder.
        image: ``"scene:<seed>"``, a sample photo name, or anything :func:`explorer.load_image` takes.
        text: caption / question (default: the scene's caption or the photo's).

    Attributes:
        alignment: the cached :class:`explorer.fusion.Alignment`.
        word: selected clickable word (0-based); patch: selected patch (or ``None``).
        last_update_ms: server time of the last view update served from the cache.
        model_b, alignment_b, comparison: the A/B comparison (see :meth:`compare`), ``None`` when off.
    """

    recipes = ("word_maps",)

    def __init__(self, model: str = "mini-fusion", image="scene:10000003", text: str | None = None, *, device: str = "auto"):
        self.adapter = None
        self.loaded: LoadedImage | None = None
        self.scene = None
        self._source = None
        self.alignment = None
        self.word = 0
        self.patch: int | None = None
        self.report = None
        self.last_update_ms = float("nan")
        style = {"description_width": "initial"}
        opts = [(f"generated scene {s} (held out, with ground truth)", f"scene:{s}") for s in SCENE_SEEDS]
        opts += [(sample_label(n), n) for n in SAMPLES]
        head = self.header(model=model, models=list_fusion_models(), device=device, samples=opts, sample_label="Image",
                           sample_width="480px", upload_accept="image/*", upload_label="Upload image")
        self.text_box = W.Text(value=text or "", description="Text", placeholder="a caption or a question",
                               continuous_update=False, layout=W.Layout(width="520px"))
        self.run_btn = W.Button(description="Run", icon="play", button_style="success")
        self.words = W.ToggleButtons(options=[], description="Word", style={"button_width": "auto"})
        self.method = W.Dropdown(options=[], description="Method", layout=W.Layout(width="380px"))
        self.layer = W.IntSlider(value=0, min=0, max=0, description="Layer", continuous_update=True)
        self.head = W.Dropdown(options=[("mean of heads", "mean")], value="mean", description="Head", layout=W.Layout(width="240px"))
        self.layer_note = W.HTML()  # a layer whose map is zero by construction (Grad-CAM at BLIP's / ViLT's last layer)
        self.opacity = W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="Opacity", continuous_update=True)
        self.cscale = W.Dropdown(options=list(COLORSCALES), value="Viridis", description="Colours", layout=W.Layout(width="200px"))
        self.sort = W.ToggleButtons(options=[("reading order", "position"), ("by selected word", "word")], value="position",
                                    description="Patches")
        self.modality_btn = W.Button(description="Modality dependence", icon="balance-scale", layout=W.Layout(width="auto"))
        self.truth_btn = W.Button(description="Deletion AUC", icon="line-chart", tooltip="blank patches in map order",
                                  layout=W.Layout(width="auto"))
        self.cf_word = W.Text(value="", description="replace selected word with", style=style, layout=W.Layout(width="330px"))
        self.cf_btn = W.Button(description="Compare", icon="exchange")
        self.answer = W.HTML()
        self.main = AppFigure(row=True)
        self.bars = AppFigure(row=True)
        self.matrix = AppFigure()
        self.modality = AppFigure()
        self.modality_text = W.HTML()
        self.truth = W.HTML()
        self.live_text = W.HTML()  # the map on screen: deletion AUC against random orders, computed in the background
        self.live = Background()
        self.live_deletion = None
        self.sanity_btn = W.Button(description="Randomisation check", icon="random", layout=W.Layout(width="auto"),
                                   tooltip="re-draw the top cross-modal layers' weights: does the word map change?")
        self.cf = AppFigure()
        self.cf_text = W.HTML()
        # On-demand figures are shown once they have something to show (no empty axes).
        self.modality_box = W.VBox([])
        self.cf_box = W.VBox([])
        self._order = None
        # A/B: a second fusion model (or a randomised copy of this one) on the same image, text, word and settings
        self.compare_controls(list_fusion_models(),
                              tooltip="show model B's map of the same word beside this one's (A), and B − A")
        self.compare_note = W.HTML()
        self.export_panel = ExportPanel(self.export_request, reopen=self.restore)
        self.interventions = InterventionPanel(self, FusionBackend(self))  # ablation / importance / patching (issue 16)
        super().__init__([
            *head,
            W.HBox([self.text_box, self.run_btn]),
            self.status_area, self.answer, self.words,
            W.HBox([self.method, self.layer, self.head]), self.layer_note,
            W.HBox([self.opacity, self.cscale]),
            figure_row(self.main, self.bars), self.live_text,
            W.HBox([self.compare_box, self.compare_btn, self.compare_off], layout=W.Layout(**ROW)), self.compare_note,
            self.compare_fig.box,
            self.export_panel, self.truth,
            self.sort, self.matrix.box,
            W.HBox([self.modality_btn, self.truth_btn, self.sanity_btn]), self.modality_text, self.modality_box,
            W.HTML("<b>Counterfactual</b>: change the selected word and compare"),
            W.HBox([self.cf_word, self.cf_btn]), self.cf_text, self.cf_box,
            self.interventions,
        ])
        self.words.observe(lambda _c: self.interventions.redraw(), names="value")  # the ablation figure follows the word
        self.load_btn.on_click(lambda _b: self._load_model())
        self.on_change(self.sample_dd, lambda ch: self._set_image(ch["new"]) if ch["new"] else None)
        self.on_change(self.upload, lambda ch: self.take_upload(ch["new"], self._set_image))
        self.run_btn.on_click(lambda _b: self._compute())
        self.on_change(self.text_box, lambda _c: self._compute())
        self.on_change(self.words, lambda ch: self.select_word(ch["new"]) if ch["new"] is not None else None)
        self.on_change(self.method, lambda _c: self._method_changed())
        self.on_change([self.layer, self.head, self.opacity, self.cscale], lambda _c: self._update())
        self.on_change(self.sort, lambda _c: self._update_matrix())
        self.modality_btn.on_click(lambda _b: self.run_modality())
        self.truth_btn.on_click(lambda _b: self.run_deletion())
        self.sanity_btn.on_click(lambda _b: self.run_sanity())
        self.cf_btn.on_click(lambda _b: self.counterfactual(self.cf_word.value))
        self.start(lambda: self._first(image, text))

    def _first(self, image, text: str | None):
        """Model, image (and its caption), the typed text, then one forward: the image and text are set quietly."""
        self._load_model(refresh=False)
        with self.quiet():
            if isinstance(image, str) and any(v == image for _l, v in self.sample_dd.options):
                self.sample_dd.value = image
            self._set_image(image, run=False)  # the scene's or the photo's caption
            if text:
                self.text_box.value = text
        self._compute()

    # ------------------------------------------------------------------ sidecars
    @classmethod
    def from_sidecar(cls, path, *, device: str | None = None, allow_download: bool = False, **kwargs) -> "FusionApp":
        """The app as it was when the ``word_maps`` figure ``path`` was exported (its ``.json`` sidecar, or the PNG /
        PDF / SVG that embeds it): the same model (weights checked), image, text, word, method and its options, layer,
        head, clicked patch, colour scale and opacity (a strip of every word, ``word=None``, opens on the first content
        word).  ``kwargs`` go to :class:`FusionApp`.

        Raises:
            ValueError: the figure was made by another recipe (the message names it), or with a fit or method options
                the app has no control for.
        """
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in cls.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; FusionApp reopens "
                             "'word_maps' figures.")
        check_recorded(r, path)
        app = cls(model=r.model, image=recorded_image(r), text=r.options["text"], **kwargs)
        app._apply_recorded(r)
        return app

    @_guarded
    def restore(self, path):
        """Come back to the view the figure ``path`` was exported from, in this app (what the Reopen button does)."""
        r = self.reopen(path)
        check_recorded(r, path)
        self.hand_over_model(r.model)
        self.adapter = r.model
        self.alignment = None
        image = recorded_image(r)
        with self.quiet():
            listed = isinstance(image, str) and any(v == image for _l, v in self.sample_dd.options)
            self.sample_dd.value = image if listed else None
        self._set_image(image, run=False)
        self._set_text(r.options["text"])
        self._compute()
        self._apply_recorded(r)

    def _apply_recorded(self, r) -> None:
        """The parts of a recorded view the constructor does not take: what the input came from, method, layer, head,
        colours, opacity, word and patch (one redraw)."""
        o = r.options
        if self.scene is None:
            self._source = r.sources[0]  # a later export records the input as it was recorded (a scene: its pixels)
        if self.alignment is None:
            return
        with self.quiet():
            self.method.value = o["method"]
            self.layer.value = self._default_layer() if o["layer"] is None else int(o["layer"])
            self.head.value = o["head"]
            self.cscale.value = o["colorscale"]
            self.opacity.value = float(o["opacity"])
        self.patch = None if o["patch"] is None else int(o["patch"])
        if o["word"] is not None:
            self.word = int(o["word"])
            with self.quiet():
                self.words.value = self.word
        self._update(rebuild=True)
        self._update_matrix()

    # ------------------------------------------------------------------ inputs
    @_guarded
    def _load_model(self, refresh: bool = True):
        self.adapter = None
        self.adapter = self.load_selected(load_fusion_model)
        self.alignment = None
        self._info(f"Loaded <b>{html.escape(self.adapter.model_id)}</b> ({self.adapter.kind}; output: "
                   f"{html.escape(self.adapter.output_name)}).")
        if refresh:
            self._compute()

    @_guarded
    def _set_image(self, image, run: bool = True):
        self.scene = None
        if isinstance(image, str) and image.startswith("scene:"):
            loaded, caption, self.scene = scene_sample(int(image.split(":", 1)[1]))
            self._source = self.scene.image
            self.loaded = loaded
            self._set_text(caption)
        else:
            self.loaded = load_input(image)
            self._source = image
            if isinstance(image, str) and image in PHOTO_CAPTIONS:
                self._set_text(PHOTO_CAPTIONS[image])
        if run:
            self._compute()

    def _set_text(self, text: str):
        """Put ``text`` in the box without running the model (the caller runs it once)."""
        with self.quiet():
            self.text_box.value = text

    def set_text(self, text: str):
        """Type ``text`` in the text box and run (what pressing Enter does)."""
        if self.text_box.value == text:
            self._compute()  # same text: the box's observer would not fire
        else:
            self.text_box.value = text  # the observer runs the model once

    @_guarded
    def _compute(self):
        if self.adapter is None or self.loaded is None:
            return
        self.alignment = None
        t0 = time.perf_counter()
        with self.computing("forward + backward"):
            al = align(self.adapter, self.loaded, self.text_box.value)
        self.alignment = al
        self._compute_s = time.perf_counter() - t0
        self.report = None
        self.modality_text.value = ""
        self.cf_text.value = ""
        self.modality_box.children = []
        self.cf_box.children = []
        methods = method_menu(al)
        n_layers = 0 if al.attention is None else al.attention.shape[0]
        heads = 0 if al.attention is None else al.attention.shape[1]
        with self.quiet():  # new menus and ranges: one redraw, below
            keep = self.method.value
            self.method.options = methods
            self.method.value = keep if keep in [m for _l, m in methods] else methods[0][1]
            self.layer.max = max(0, n_layers - 1)
            self.layer.value = self._default_layer()
            self.layer.disabled = n_layers == 0
            self.head.options = [("mean of heads", "mean")] + [(f"head {h}", h) for h in range(heads)]
            self.head.value = "mean"
            self.words.options = [(w, k) for k, w in enumerate(al.word_strings)]
            self.word = default_word(al.word_strings)
            self.words.value = self.word
            self.patch = None
        self.answer.value = (f"<div style='font-size:14px'><b>Output:</b> {html.escape(al.answer)}</div>"
                             + "".join(f"<div style='font-size:12px;color:var(--jp-warn-color0,#8a5300)'>ⓘ {html.escape(n)}</div>" for n in al.notes
                                       if "centre-cropped to" not in n or "cut" in n))
        self._update(rebuild=True)
        self._update_matrix()
        self._ground_truth()
        self.interventions.new_input()
        self._info(f"<b>{html.escape(self.loaded.name)}</b> · model <b>{html.escape(self.adapter.model_id)}</b> "
                   f"({self.adapter.kind}) · one forward + backward in {self._compute_s * 1e3:.0f} ms; words, layers, heads "
                   f"and methods are served from the cache")

    def _default_layer(self) -> int:
        """The layer slider's value for the method on screen: the layer its default map comes from (the last one, or
        for Grad-CAM the last one whose map is not zero by construction)."""
        al = self.alignment
        n_layers = 0 if al.attention is None else al.attention.shape[0]
        k = al.default_layer_index(self.method.value)
        return max(0, n_layers - 1) if k is None else k

    def _method_changed(self):
        """A new method: off a layer where its map is zero by construction, onto its default layer (one redraw)."""
        al = self.alignment
        if al is not None and int(self.layer.value) in al.zero_layers.get(self.method.value, ()):
            with self.quiet():
                self.layer.value = self._default_layer()
        self._update()

    # ------------------------------------------------------------------ export
    def export_request(self) -> dict:
        """The ``word_maps`` recipe of the view on screen: method, the settings it reads, word, patch, colours."""
        if self.alignment is None:
            raise ValueError("Nothing to export yet: load a model, an image and a text first.")
        m = get_method(self.method.value)
        s = m.settings(**self.settings())
        own = {k: s.pop(k) for k in m.options}
        word = self.alignment.word_strings[self.word]
        stem = "-".join((file_stem(self.loaded.name), file_stem(word, default="word", length=20), m.name))
        return dict(recipe="word_maps", model=self.adapter, inputs=[self._source], name=stem,
                    options=dict(text=self.alignment.meta["text"], method=m.name, word=int(self.word), patch=self.patch,
                                 **s, method_options=own or None, colorscale=self.cscale.value,
                                 opacity=float(self.opacity.value)))

