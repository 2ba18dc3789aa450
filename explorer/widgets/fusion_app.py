"""The cross-modal alignment app: which image region each word goes with, and how much the output
depends on each modality.

Composition only: results from :mod:`explorer.fusion`, figures from :mod:`explorer.viz.fusion`.
One forward + backward per (model, image, text) feeds every word / method / layer / head /
opacity / sort interaction from the cached :class:`explorer.fusion.Alignment`; Integrated
Gradients per word, the modality report and the counterfactual are computed on demand and cached.
"""

from __future__ import annotations

import html
import time

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..models.fusion_registry import list_fusion_models
from ..fusion import METHOD_NAMES, FusionInputError, align, deletion_auc, load_fusion_model, modality_report, pointing_hits, word_ig
from ..io import ImageLoadError, LoadedImage, load_image
from ..models import DeviceError, ModelLoadError, available_devices
from ..reconstruction import load_input
from ..data.samples import SAMPLES, sample_label
from ..data.scenes import make_scene
from ..viz import fusion as VF
from ..viz.attention import COLORSCALES
from ..viz.images import json_grid
from .attention_app import _replace
from .export_panel import ExportPanel
from .messages import StatusMixin, guarded

USER_ERRORS = (FusionInputError, ImageLoadError, ModelLoadError, DeviceError, ValueError, IndexError, KeyError)
#: Held-out generated scenes offered as samples (seeds never used in training), with ground truth.
SCENE_SEEDS = (10_000_003, 10_000_011, 10_000_021, 10_000_042, 10_000_077, 10_000_101)
PHOTO_CAPTIONS = {"chelsea": "a cat", "coffee": "a cup of coffee", "astronaut": "an astronaut", "rocket": "a rocket",
                  "china": "a white teapot", "flower": "a pink flower"}

_guarded = guarded(USER_ERRORS)


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


class FusionApp(StatusMixin, W.VBox):
    """Interactive cross-modal alignment explorer.

    Args:
        model: ``"mini-fusion"`` (shipped), a hub id (CLIP, BLIP ITM, ViLT) or a folder.
        image: ``"scene:<seed>"``, a sample photo name, or anything :func:`explorer.load_image` takes.
        text: caption / question (default: the scene's caption or the photo's).

    Attributes:
        alignment: the cached :class:`explorer.fusion.Alignment`.
        word: selected clickable word (0-based); patch: selected patch (or ``None``).
        last_update_ms: server time of the last view update served from the cache.
    """

    def __init__(self, model: str = "mini-fusion", image="scene:10000003", text: str | None = None, *, device: str = "auto"):
        self.adapter = None
        self.loaded: LoadedImage | None = None
        self.scene = None
        self._source = None
        self.alignment = None
        self.word = 0
        self.patch: int | None = None
        self._ig_cache: dict = {}
        self.report = None
        self.last_update_ms = float("nan")
        style = {"description_width": "initial"}
        self.model_box = W.Combobox(value=str(model), options=list_fusion_models(), description="Model",
                                    ensure_option=False, style=style, layout=W.Layout(width="380px"))
        devs = ["auto"] + available_devices()
        self.device_dd = W.Dropdown(options=devs, value=device if device in devs else "auto", description="Device",
                                    layout=W.Layout(width="160px"))
        self.load_btn = W.Button(description="Load model", icon="download", button_style="primary")
        opts = [(f"generated scene {s} (held out, with ground truth)", f"scene:{s}") for s in SCENE_SEEDS]
        opts += [(sample_label(n), n) for n in SAMPLES]
        self.sample_dd = W.Dropdown(options=opts, value=None, description="Image", style=style, layout=W.Layout(width="480px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload image")
        self.text_box = W.Text(value=text or "", description="Text", placeholder="a caption or a question",
                               continuous_update=False, layout=W.Layout(width="520px"))
        self.run_btn = W.Button(description="Run", icon="play", button_style="success")
        self.words = W.ToggleButtons(options=[], description="Word", style={"button_width": "auto"})
        self.method = W.Dropdown(options=[], description="Method", layout=W.Layout(width="380px"))
        self.layer = W.IntSlider(value=0, min=0, max=0, description="Layer", continuous_update=True)
        self.head = W.Dropdown(options=[("mean of heads", "mean")], value="mean", description="Head", layout=W.Layout(width="200px"))
        self.opacity = W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="Opacity", continuous_update=True)
        self.cscale = W.Dropdown(options=list(COLORSCALES), value="Viridis", description="Colours", layout=W.Layout(width="200px"))
        self.sort = W.ToggleButtons(options=[("reading order", "position"), ("by selected word", "word")], value="position",
                                    description="Patches")
        self.modality_btn = W.Button(description="Modality dependence", icon="balance-scale", layout=W.Layout(width="auto"))
        self.truth_btn = W.Button(description="Deletion AUC", icon="line-chart", tooltip="blank patches in map order",
                                  layout=W.Layout(width="auto"))
        self.cf_word = W.Text(value="", description="replace selected word with", style=style, layout=W.Layout(width="330px"))
        self.cf_btn = W.Button(description="Compare", icon="exchange")
        self.status = W.HTML()
        self.details = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))
        self.answer = W.HTML()
        self.main = go.FigureWidget()
        self.bars = go.FigureWidget()
        self.matrix = go.FigureWidget()
        self.modality = go.FigureWidget()
        self.modality_text = W.HTML()
        self.truth = W.HTML()
        self.cf = go.FigureWidget()
        self.cf_text = W.HTML()
        # On-demand figures are shown once they have something to show (no empty axes).
        self.modality_box = W.VBox([])
        self.cf_box = W.VBox([])
        self._order = None
        self.export_panel = ExportPanel(self.export_request)
        super().__init__([
            W.HBox([self.model_box, self.device_dd, self.load_btn]),
            W.HBox([self.sample_dd, self.upload]),
            W.HBox([self.text_box, self.run_btn]),
            self.status, self.details, self.answer, self.words,
            W.HBox([self.method, self.layer, self.head]),
            W.HBox([self.opacity, self.cscale]),
            W.HBox([self.main, self.bars]), self.export_panel, self.truth,
            self.sort, self.matrix,
            W.HBox([self.modality_btn, self.truth_btn]), self.modality_text, self.modality_box,
            W.HTML("<b>Counterfactual</b>: change the selected word and compare"),
            W.HBox([self.cf_word, self.cf_btn]), self.cf_text, self.cf_box,
        ])
        self.load_btn.on_click(lambda _b: self._load_model())
        self.sample_dd.observe(lambda ch: self._set_image(ch["new"]) if ch["new"] else None, names="value")
        self.upload.observe(lambda ch: self._set_image(ch["new"]) if ch["new"] else None, names="value")
        self.run_btn.on_click(lambda _b: self._compute())
        self.text_box.observe(lambda _c: self._compute(), names="value")
        self.words.observe(lambda ch: self.select_word(ch["new"]) if ch["new"] is not None else None, names="value")
        for w in (self.method, self.layer, self.head, self.opacity, self.cscale):
            w.observe(lambda _c: self._update(), names="value")
        self.sort.observe(lambda _c: self._update_matrix(), names="value")
        self.modality_btn.on_click(lambda _b: self.run_modality())
        self.truth_btn.on_click(lambda _b: self.run_deletion())
        self.cf_btn.on_click(lambda _b: self.counterfactual(self.cf_word.value))
        self._busy = True
        self._load_model(refresh=False)
        if isinstance(image, str) and any(v == image for _l, v in opts):
            self.sample_dd.value = image  # sets the image (and the scene's caption)
        else:
            self._set_image(image)
        if text:
            self.text_box.value = text
        self._busy = False
        self._compute()

    # ------------------------------------------------------------------ status
    def _info(self, text: str):
        self._clear_details()
        self.status.value = f"<div style='font-size:12px;color:#444'>{text}</div>"

    # ------------------------------------------------------------------ inputs
    @_guarded
    def _load_model(self, refresh: bool = True):
        name = self.model_box.value.strip()
        self._info(f"Loading <b>{html.escape(name)}</b>…")
        self.adapter = None
        self.adapter = load_fusion_model(name, device=self.device_dd.value)
        self.alignment = None
        self._info(f"Loaded <b>{html.escape(name)}</b> ({self.adapter.kind}; output: {html.escape(self.adapter.output_name)}).")
        if refresh:
            self._compute()

    @_guarded
    def _set_image(self, image):
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
        self._compute()

    def _set_text(self, text: str):
        busy, self._busy = self._busy, True
        try:
            self.text_box.value = text
        finally:
            self._busy = busy

    def set_text(self, text: str):
        """Type ``text`` in the text box and run (what pressing Enter does)."""
        if self.text_box.value == text:
            self._compute()  # same text: the box's observer would not fire
        else:
            self.text_box.value = text  # the observer runs the model once

    @_guarded
    def _compute(self):
        if self._busy or self.adapter is None or self.loaded is None:
            return
        self.alignment = None
        t0 = time.perf_counter()
        al = align(self.adapter, self.loaded, self.text_box.value)
        self.alignment = al
        self._compute_s = time.perf_counter() - t0
        self._ig_cache.clear()
        self.report = None
        self.modality_text.value = ""
        self.cf_text.value = ""
        self.modality_box.children = []
        self.cf_box.children = []
        methods = [(METHOD_NAMES[m], m) for m in al.available] + [(METHOD_NAMES["ig"] + " — on demand", "ig")]
        n_layers = 0 if al.attention is None else al.attention.shape[0]
        heads = 0 if al.attention is None else al.attention.shape[1]
        with self.hold_trait_notifications():
            self._busy = True
            try:
                keep = self.method.value
                self.method.options = methods
                self.method.value = keep if keep in [m for _l, m in methods] else methods[0][1]
                self.layer.max = max(0, n_layers - 1)
                self.layer.value = max(0, n_layers - 1)
                self.layer.disabled = n_layers == 0
                self.head.options = [("mean of heads", "mean")] + [(f"head {h}", h) for h in range(heads)]
                self.head.value = "mean"
                self.words.options = [(w, k) for k, w in enumerate(al.word_strings)]
                self.word = default_word(al.word_strings)
                self.words.value = self.word
                self.patch = None
            finally:
                self._busy = False
        self.answer.value = (f"<div style='font-size:14px'><b>Output:</b> {html.escape(al.answer)}</div>"
                             + "".join(f"<div style='font-size:12px;color:#8a5300'>ⓘ {html.escape(n)}</div>" for n in al.notes
                                       if "centre-cropped to" not in n or "cut" in n))
        self._update(rebuild=True)
        self._update_matrix()
        self._ground_truth()
        self._info(f"<b>{html.escape(self.loaded.name)}</b> · model <b>{html.escape(self.adapter.model_id)}</b> "
                   f"({self.adapter.kind}) · one forward + backward in {self._compute_s * 1e3:.0f} ms; words, layers, heads "
                   f"and methods are served from the cache")

    # ------------------------------------------------------------------ views
    def select_word(self, word: int):
        """Show word ``word`` (0-based clickable word), as clicking it in the caption does."""
        if self._busy:
            return
        self.word = int(word)
        if self.words.value != self.word:
            self._busy = True  # the toggle's observer would call back here: one update is enough
            try:
                self.words.value = self.word
            finally:
                self._busy = False
        self._update()
        if self.sort.value == "word":
            self._update_matrix()

    def current_map(self) -> np.ndarray:
        """``(gh, gw)`` map on screen: selected word, method, layer and head."""
        al = self.alignment
        m = self.method.value
        if m == "ig":
            key = (self.word,)
            if key not in self._ig_cache:
                self._ig_cache[key] = word_ig(self.adapter, self.loaded, al.meta["text"], self.word)
            return self._ig_cache[key]
        if m == "attention":
            return al.word_map("attention", self.word, layer=self.layer.value, head=self.head.value)
        if m == "gradcam":
            return al.word_map("gradcam", self.word, layer=self.layer.value)
        return al.word_map(m, self.word)

    def _title(self) -> str:
        m = self.method.value
        w = self.alignment.word_strings[self.word]
        where = ""
        if m == "attention":
            where = f", layer {self.layer.value}, {'mean of heads' if self.head.value == 'mean' else f'head {self.head.value}'}"
        elif m == "gradcam":
            where = f", layer {self.layer.value}"
        return f"'{w}': {METHOD_NAMES[m]}{where}"

    @_guarded
    def _update(self, rebuild: bool = False):
        if self._busy or self.alignment is None:
            return
        t0 = time.perf_counter()
        al = self.alignment
        m = self.current_map()
        marker = VF.patch_marker(self.patch, al.grid, self.adapter.patch_size) if self.patch is not None else None
        signed = bool(np.nanmin(m) < 0)
        if rebuild or len(self.main.data) != 3 or signed or self.main.data[2].zmid is not None:
            fig = VF.word_overlay(al.image, m, patch_size=self.adapter.patch_size, title=self._title(),
                                  opacity=self.opacity.value, colorscale=self.cscale.value, marker=marker)
            _replace(self.main, fig)
            self.main.data[0].on_click(self._on_image_click)
            self.main.data[0].on_hover(self._on_image_click)
        else:
            with self.main.batch_update():
                hm = self.main.data[2]
                hm.z = json_grid(m)
                hm.zmax = float(np.nanmax(m))
                hm.opacity = self.opacity.value
                hm.colorscale = self.cscale.value
                self.main.layout.annotations[1].text = self._title()
                self.main.layout.shapes = [dict(marker, xref=x, yref=y) for x, y in (("x", "y"), ("x2", "y2"))] if marker else []
        self._update_bars()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3

    def patch_words(self) -> np.ndarray:
        """``(W,)`` value of the selected patch (or of each word's peak) for every word, current method."""
        al = self.alignment
        vals = []
        for k in range(len(al.words)):
            keep, self.word = self.word, k
            try:
                mp = self.current_map() if self.method.value != "ig" else al.word_map(al.available[-1], k)
            finally:
                self.word = keep
            vals.append(float(mp.ravel()[self.patch]) if self.patch is not None else float(np.nanmax(mp)))
        return np.array(vals)

    def _update_bars(self):
        al = self.alignment
        title = (f"words for patch {self.patch}" if self.patch is not None else "each word's peak (hover / click a patch)")
        values = self.patch_words()
        labels = VF.word_labels(al.word_strings)
        if len(self.bars.data) == 1 and list(self.bars.data[0].y) == labels:  # same words: update in place
            with self.bars.batch_update():
                self.bars.data[0].x = values
                self.bars.data[0].marker.color = VF.bar_colours(len(labels), self.word)
                self.bars.layout.title.text = title
        else:
            _replace(self.bars, VF.word_bars(al.word_strings, values, selected=self.word, title=title))
            self.bars.data[0].on_click(self._on_bar_click)

    def select_patch(self, patch: int | None):
        """Show how every word goes with ``patch`` (row-major index), as hovering / clicking it does."""
        self.patch = None if patch is None else int(patch)
        self._update()

    def _on_image_click(self, trace, points, state):
        if not points.xs or self.alignment is None:
            return
        p = self.adapter.patch_size
        gh, gw = self.alignment.grid
        r, c = int(points.ys[0] // p), int(points.xs[0] // p)
        if 0 <= r < gh and 0 <= c < gw and r * gw + c != self.patch:
            self.select_patch(r * gw + c)

    def _on_bar_click(self, trace, points, state):
        if points.point_inds:
            self.select_word(points.point_inds[0])

    @_guarded
    def _update_matrix(self):
        if self.alignment is None:
            return
        al = self.alignment
        fig, self._order = VF.alignment_matrix(al.matrix, al.word_strings, sort_by=self.word if self.sort.value == "word" else None,
                                               title=al.matrix_name, colorscale=self.cscale.value)
        _replace(self.matrix, fig)
        self.matrix.data[0].on_click(self._on_matrix_click)

    def _on_matrix_click(self, trace, points, state):
        if not points.point_inds:
            return
        r, c = points.point_inds[0]
        self.patch = int(self._order[c])
        self.select_word(int(r))

    # ------------------------------------------------------------------ ground truth, attributions, counterfactual
    def scene_word_masks(self) -> dict[int, np.ndarray]:
        """Ground truth of a generated scene: clickable word → object mask (empty if the words are not the text's words)."""
        if self.scene is None or self.alignment is None:
            return {}
        text_words = self.alignment.meta["text"].lower().split()
        if [w.lower() for w in self.alignment.word_strings] != text_words[: len(self.alignment.words)]:
            return {}
        return {k: m for k, m in self.scene.word_masks(" ".join(text_words)).items() if k < len(self.alignment.words)}

    def _ground_truth(self):
        masks = self.scene_word_masks()
        if not masks:
            self.truth.value = ""
            return
        hits = pointing_hits(self.alignment, masks)
        rows = "".join(f"<tr><td>{html.escape(METHOD_NAMES[m])}</td><td>{sum(h)}/{len(h)}</td></tr>" for m, h in hits.items())
        self.truth.value = (f"<div style='font-size:12px'><b>Ground truth</b> (generated scene): pointing game — does each "
                            f"object word's map peak on its object?<table>{rows}</table></div>")
        self.pointing = hits

    @_guarded
    def run_deletion(self):
        """Deletion AUC of the current word's map (and a random order) for the current input."""
        al = self.alignment
        d = deletion_auc(self.adapter, self.loaded, al.meta["text"], self.current_map())
        verdict = "lower than random: the map found what the output needs" if d["map"] < d["random"] else "not lower than random"
        self.truth.value += (f"<div style='font-size:12px'>Deletion AUC of '{html.escape(al.word_strings[self.word])}' "
                             f"({html.escape(METHOD_NAMES[self.method.value])}): {d['map']:.3f} vs random order "
                             f"{d['random']:.3f} — {verdict}.</div>")
        return d

    @_guarded
    def run_modality(self):
        """How much the output depends on the image and on the text (masking + Integrated Gradients)."""
        r = modality_report(self.adapter, self.loaded, self.alignment.meta["text"])
        self.report = r
        _replace(self.modality, VF.modality_figure(r, output_name=self.adapter.output_name))
        self.modality_box.children = [self.modality]
        top = int(np.argmax(np.abs(r.word_attribution))) if len(r.word_attribution) else 0
        self.modality_text.value = (
            f"<div style='font-size:12px'>Integrated Gradients over both inputs at once: image {r.ig_image:+.3f}, text "
            f"{r.ig_text:+.3f} (image share {100 * r.image_share:.0f} %; completeness gap {r.ig_delta:.1e}). Word with the "
            f"largest attribution: '{html.escape(self.alignment.word_strings[top])}'. Masking the image moves the output "
            f"{r.masked['image'] - r.score:+.3f}, masking the text {r.masked['text'] - r.score:+.3f}.</div>")
        return r

    @_guarded
    def counterfactual(self, new_word: str):
        """Replace the selected word by ``new_word``; show both texts' maps of that word side by side."""
        al = self.alignment
        new_word = (new_word or "").strip()
        if not new_word or len(new_word.split()) != 1:
            raise FusionInputError("Type one word to put in place of the selected word (e.g. 'blue' for 'red').")
        edited_text = self.adapter.replace_word(self.adapter.tokenize(al.meta["text"]), al.words[self.word], new_word).text
        other = align(self.adapter, self.loaded, edited_text)
        k = min(self.word, len(other.words) - 1)
        m = self.method.value if self.method.value in other.available else other.available[0]
        a, b = al.word_map(m, self.word), other.word_map(m, k)
        panels = {f"'{al.word_strings[self.word]}' · {al.score:+.2f}": a, f"'{other.word_strings[k]}' · {other.score:+.2f}": b}
        _replace(self.cf, VF.counterfactual_figure(al.image, panels, colorscale=self.cscale.value, opacity=self.opacity.value))
        self.cf_box.children = [self.cf]
        self.cf_text.value = (f"<div style='font-size:12px'>“{html.escape(al.meta['text'])}” → {html.escape(al.answer)}<br>"
                              f"“{html.escape(edited_text)}” → {html.escape(other.answer)}<br>"
                              f"{html.escape(METHOD_NAMES[m])}; shared colour scale.</div>")
        self.counterfactual_alignment = other
        return other

    # ------------------------------------------------------------------ export
    def export_request(self) -> dict:
        if self.alignment is None:
            raise ValueError("Nothing to export yet: load a model, an image and a text first.")
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.loaded.name.rsplit(".", 1)[0])[:40]
        method = self.method.value if self.method.value != "ig" else "relevance"
        return dict(recipe="word_maps", model=self.adapter, inputs=[self._source], name=f"{stem}-words-{method}",
                    options=dict(text=self.alignment.meta["text"], method=method,
                                 layer=int(self.layer.value) if method in ("attention", "gradcam") else None,
                                 head=self.head.value, colorscale=self.cscale.value, opacity=float(self.opacity.value)))
