"""The multimodal MAE app: RGB + depth or video + sound, a visible budget per modality, cross-modal reconstruction.

Composition only: inputs from :mod:`explorer.multimodal.inputs` (and the image / depth / video / audio
loaders), results from :func:`explorer.multimodal.reconstruct_multimodal` (cached per budgets and seed),
baselines from :mod:`explorer.multimodal.baselines`, figures from :mod:`explorer.viz.multimodal`.
A frame move (audio-visual models) swaps cached PNGs in the live figure.  An exported view comes back from its sidecar:
:meth:`MultiMAEApp.from_sidecar`, or the export panel's Reopen row.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import ipywidgets as W
import numpy as np

from ..export import ReproduceError
from ..io import ImageLoadError
from ..models import DeviceError, ModelLoadError
from ..multimodal import BudgetError, MultiModalInputError, list_multimodal_models, load_multimodal_model, reconstruct_multimodal
from ..multimodal.baselines import baseline_metrics
from ..multimodal.inputs import PreparedInputs, av_from_files, prepare_files, rgbd_from_files, sample_inputs, sample_names
from ..viz import multimodal as MV
from .base import AppBase, FrameControls, file_stem
from .figures import AppFigure, replace_figure
from .export_panel import ExportPanel
from .messages import guarded

USER_ERRORS = (ImageLoadError, ModelLoadError, DeviceError, BudgetError, MultiModalInputError, ValueError, ReproduceError)
_guarded = guarded(USER_ERRORS)

#: Budget presets per task: label → {modality: visible ratio}.
PRESETS = {
    "rgbd": {"depth from RGB": {"rgb": 1.0, "depth": 0.0}, "RGB + 10% depth": {"rgb": 1.0, "depth": 0.1},
             "RGB from depth": {"rgb": 0.0, "depth": 1.0}, "25% + 25%": {"rgb": 0.25, "depth": 0.25}},
    "audio-visual": {"sound from video": {"video": 1.0, "audio": 0.0}, "video from sound": {"video": 0.0, "audio": 1.0},
                     "25% + 25%": {"video": 0.25, "audio": 0.25}, "video 10% + sound": {"video": 0.1, "audio": 1.0}},
    "audio": {"20% visible (pretraining)": {"audio": 0.2}, "50% visible": {"audio": 0.5}, "10% visible": {"audio": 0.1}},
    # MultiMAE (EPFL-VILAB): RGB, depth and COCO semantic maps; a slider at 0 drops that modality
    "rgbd+semantic": {"RGB → depth + semantics": {"rgb": 1.0, "depth": 0.0, "semseg": 0.0},
                      "RGB + 10% depth": {"rgb": 1.0, "depth": 0.1, "semseg": 0.0},
                      "depth + RGB, 25% each": {"rgb": 0.25, "depth": 0.25, "semseg": 0.0},
                      "drop RGB (depth → RGB)": {"rgb": 0.0, "depth": 1.0, "semseg": 0.0},
                      "drop depth (RGB + semantics)": {"rgb": 0.5, "depth": 0.0, "semseg": 0.5}},
}
#: masking strategies for spectrogram modalities (explorer.masking.audio): label → strategy
SPECTROGRAM_MASKING = (("random patches", "random"), ("time strips", "time"), ("frequency strips", "frequency"),
                       ("time × frequency (Audio-MAE 2-D)", "time-frequency"))
METRIC = {"image": ("psnr", "dB", True), "video": ("psnr", "dB", True), "depth": ("absrel", "AbsRel", False),
          "spectrogram": ("rmse_db", "dB RMSE", False), "semantic": ("accuracy", "pixel accuracy", True)}
#: the Total slider's first value (visible patches split by the Dirichlet button)
TOTAL = 16


class MultiMAEApp(FrameControls, AppBase):
    """Interactive cross-modal reconstruction with a multimodal MAE.

    Args:
        model: ``"mini-rgbd-mae"``, ``"mini-av-mae"`` or a folder in their format.
        sample: a named sample (``"room:10000001"``, ``"motorcycle:1"``, ``"clip:10000002"``) or ``None`` (the first).
        budgets: modality → visible ratio (default: the task's first preset).

    Attributes:
        result: the :class:`explorer.multimodal.MultiModalReconstruction` on screen.
        baselines: :func:`baseline_metrics` of it.
        last_update_ms: server time of the last frame update.
    """

    recipes = ("multimodal",)

    def __init__(self, model: str = "mini-rgbd-mae", sample: str | None = None, *, budgets: dict | None = None, seed: int = 0,
                 device: str = "auto"):
        self.adapter = None
        self.inputs: dict = {}
        self.samples = None  # the sound's own samples, when it came from a file (the original player plays them)
        self.notes: list[str] = []
        self.result = None
        self.baselines: dict = {}
        self._cache: dict = {}
        self._key = None
        self.last_update_ms = float("nan")
        self.upload_a = W.FileUpload(multiple=False)
        self.upload_b = W.FileUpload(multiple=False)
        self.use_uploads = W.Button(description="Use uploads", icon="upload")
        head = self.header(model=model, models=list_multimodal_models(), device=device, model_width="340px", upload_accept=None,
                           sample_extra=[self.upload_a, self.upload_b, self.use_uploads])
        self.model_dd = self.model_box
        self.sliders = W.HBox()
        self.presets = W.HBox()
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="Seed", layout=W.Layout(width="160px"))
        self.total = W.IntSlider(value=TOTAL, min=1, max=64, description="Total", continuous_update=False)
        self.dirichlet_btn = W.Button(description="Dirichlet split", tooltip="MultiMAE: split the total budget by a seeded Dirichlet(1) draw")
        self.masking_dd = W.Dropdown(options=SPECTROGRAM_MASKING, value="random", description="Sound masking",
                                     style={"description_width": "100px"}, layout=W.Layout(width="380px"))
        self.frame_controls(interval=300)
        self.time_box = W.HBox([self.play, self.frame])
        self.table = W.HTML()
        self.listen_btn = W.Button(description="Listen", icon="volume-up",
                                   tooltip="Make the sounds of the spectrogram rows (Griffin-Lim: a few seconds)")
        self.players = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.listen_box = W.VBox([self.listen_btn, self.players])
        self.sounds: dict = {}
        self.fig = AppFigure()
        self._request = None
        self.export_panel = ExportPanel(self.export_request, reopen=self.restore)
        super().__init__([
            *head,
            self.sliders, W.HBox([self.presets, self.seed]), W.HBox([self.total, self.dirichlet_btn]), self.masking_dd, self.time_box,
            self.status_area, self.fig.box, self.listen_box, self.table, self.export_panel,
        ])
        self.listen_btn.on_click(lambda _b: self.listen())
        self.load_btn.on_click(lambda _b: self._load_model())
        self.on_change(self.sample_dd, lambda ch: self._set_sample(ch["new"]) if ch["new"] else None)
        self.use_uploads.on_click(lambda _b: self._set_uploads())
        self.on_change(self.seed, lambda _c: self._compute())
        self.on_change(self.masking_dd, lambda _c: self._compute())
        self.dirichlet_btn.on_click(lambda _b: self._dirichlet())
        self.on_change(self.frame, lambda _c: self._show_frame())
        self._initial = (sample, budgets)
        self.start(self._load_model)

    # ------------------------------------------------------------------ sidecars
    @classmethod
    def from_sidecar(cls, path, *, device: str | None = None, allow_download: bool = False, **kwargs) -> "MultiMAEApp":
        """The app as it was when the figure ``path`` was exported (its ``.json`` sidecar, or the exported PNG / PDF /
        SVG that embeds it): the same model (weights checked), sample or stored inputs (checked against their hash),
        visible budget per modality or Dirichlet total, seed and frame.  ``kwargs`` go to :class:`MultiMAEApp`.

        Raises:
            ValueError: a figure of another app's recipe, or a masking strategy the app has no control for.
        """
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in cls.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; MultiMAEApp reopens "
                             f"{', '.join(repr(x) for x in cls.recipes)} figures.")
        view = _recorded_view(r, path)
        if device is not None:
            kwargs.setdefault("device", device)
        app = cls(model=r.model, sample=view["sample"], budgets=view["budgets"], seed=view["seed"], **kwargs)
        app._apply_recorded(view)
        return app

    @_guarded
    def restore(self, path):
        """Come back to the view the figure ``path`` was exported from, in this app (what the Reopen button does)."""
        r = self.reopen(path)
        view = _recorded_view(r, path)  # everything checked before anything on screen changes
        self.hand_over_model(r.model)
        if r.model is not self.adapter:  # another model: its controls, without computing the first sample's view
            self._initial = (view["sample"], view["budgets"])
            self._load_model()
        self._apply_recorded(view)

    def _apply_recorded(self, view: dict) -> None:
        """Show a recorded view: its inputs, budgets (or Dirichlet total) and seed in one computation, then its frame."""
        if self.adapter is None:
            return
        with self.quiet():
            self.seed.value = view["seed"]
            # a budgets view does not use the Total slider: it starts where a new app's does, as from_sidecar's
            self.total.value = view["total"] if view["total"] is not None else min(TOTAL, self.total.max)
            listed = view["sample"] in [v for _l, v in _sample_names(self.adapter)]
            self.masking_dd.value = view["masking"]
            self.sample_dd.value = view["sample"] if listed else None  # not listed: the dropdown does not name it
        if view["budgets"] is not None:
            self.set_budgets(view["budgets"], compute=False)
        arrays, notes, self._key = view["inputs"]
        self.inputs, self.notes = dict(arrays), list(notes)
        self._compute(dirichlet=view["total"] is not None)
        self.frame.value = min(view["frame"] + 1, self.frame.max)

    # ------------------------------------------------------------------ model and inputs
    @_guarded
    def _load_model(self):
        self.adapter = None
        self.adapter = self.load_selected(load_multimodal_model)
        task = self.adapter.task
        sample, budgets = self._initial
        self._initial = (None, None)
        budgets = budgets or next(iter(PRESETS.get(self._preset_key(), {"all": {s.name: 0.5 for s in self.adapter.modalities}}).values()))
        self._build_budget_controls(budgets)
        self._cache.clear()
        labels = getattr(self.adapter, "upload_labels", None) or {  # an adapter may say what its inputs are (Audio-MAE)
            "rgbd": ("RGB image", "Depth map / right image"), "audio-visual": ("Video or image", "Sound")}[task]
        self.upload_a.description, self.upload_b.description = labels
        self.upload_a.accept = "image/*,.png,.jpg,.jpeg,.tif,.tiff" if task == "rgbd" else "video/*,image/*,.gif,.avi,.mp4,.mkv,.webm,.mov"
        self.upload_b.accept = ".png,.tif,.tiff,.npy,.exr,image/*" if task == "rgbd" else ".wav,.flac,.ogg,.oga,.mp3,.aif,.aiff,audio/*"
        if getattr(self.adapter, "upload_accept", None):
            self.upload_a.accept, self.upload_b.accept = self.adapter.upload_accept
        self.masking_dd.layout.display = "" if any(s.kind == "spectrogram" for s in self.adapter.modalities) else "none"
        self.time_box.layout.display = "" if any(s.kind == "video" for s in self.adapter.modalities) else "none"
        self.listen_box.layout.display = "" if any(s.kind == "spectrogram" for s in self.adapter.modalities) else "none"
        self.total.max = sum(s.num_patches for s in self.adapter.modalities)
        names = _sample_names(self.adapter)
        with self.quiet():
            self.sample_dd.options = names
            self.sample_dd.value = None
        self.sample_dd.value = sample if sample in [v for _l, v in names] else names[0][1]

    def _build_budget_controls(self, budgets: dict):
        self._sliders = {}
        for s in self.adapter.modalities:
            sl = W.FloatSlider(value=round(float(budgets.get(s.name, 0.0)) * s.num_patches) / s.num_patches, min=0, max=1, step=1 / s.num_patches, readout_format=".0%",
                               description=f"{s.name} visible", continuous_update=False, style={"description_width": "90px"},
                               layout=W.Layout(width="360px"))
            self.on_change(sl, lambda _c: self._compute())
            self._sliders[s.name] = sl
        self.sliders.children = list(self._sliders.values())
        buttons = []
        for label, b in PRESETS.get(self._preset_key(), {}).items():
            btn = W.Button(description=label, layout=W.Layout(width="auto"))
            btn.on_click(lambda _b, b=b: self.set_budgets(b))
            buttons.append(btn)
        self.presets.children = buttons

    def _preset_key(self) -> str:
        """Which presets apply: the task's, or ``"rgbd+semantic"`` for a model that also reads semantic maps (MultiMAE)."""
        semantic = any(s.kind == "semantic" for s in self.adapter.modalities)
        return self.adapter.task + ("+semantic" if semantic else "")

    @_guarded
    def _set_sample(self, name: str):
        self.inputs, self.notes = sample_inputs(self.adapter, name)
        self._key, self.samples = name, None
        self._compute()

    @_guarded
    def _set_uploads(self):
        a, b = self.upload_a.value or None, self.upload_b.value or None
        own = getattr(self.adapter, "prepare_files", None)  # an adapter with its own front end (Audio-MAE's fbank)
        self._use_files(lambda size: own(a, b) if own else prepare_files(self.adapter.task, a, b, size=size))

    def set_rgbd(self, image=None, depth=None, *, stereo_right: bool | None = None):
        """Use an RGB image and/or a depth map (any source :func:`explorer.load_image` / :func:`explorer.depth.load_depth`
        takes).  A colour second image is taken as the right view of a stereo pair (depth from OpenCV's SGBM disparity,
        relative); see :func:`explorer.multimodal.inputs.rgbd_from_files`."""
        return self._use_files(lambda size: rgbd_from_files(image, depth, size=size, stereo_right=stereo_right))

    def set_arrays(self, arrays: dict, *, note: str = "arrays given in Python"):
        """Use inputs already in the model's shapes, e.g. with a MultiMAE checkpoint ``{"rgb": (224, 224, 3) in [0, 1],
        "depth": (224, 224) any unit, "semseg": (56, 56) COCO panoptic class ids}`` (NaN = unknown).  Modalities left
        out are predicted (budget 0); the arrays are stored with an export, as uploads are."""
        from ..io import array_sha256

        arrays = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
        key = "upload:" + ":".join(array_sha256(arrays[k]) for k in sorted(arrays))
        return self._use_files(lambda size: PreparedInputs(arrays, [note], key))

    def set_av(self, video=None, audio=None, *, start_s: float = 0.0):
        """Use a video (or a still image) and/or a WAV sound; the model takes one second from ``start_s``
        (see :func:`explorer.multimodal.inputs.av_from_files`)."""
        return self._use_files(lambda size: av_from_files(video, audio, start_s=start_s))

    @_guarded
    def _use_files(self, prepare):
        """``prepare(size)`` → :class:`explorer.multimodal.inputs.PreparedInputs`: use them, hidden modalities at budget 0."""
        if self.adapter is None:
            raise ModelLoadError("Load a multimodal model first.")
        with self.working("reading the files…"):
            p = prepare(self.adapter.spec("rgb").shape[0] if self.adapter.task == "rgbd" else 64)
        self.inputs, self.notes, self._key = p.arrays, list(p.notes), p.key
        self.samples = getattr(p, "samples", None) if self.adapter.task == "audio-visual" else None
        missing = [s.name for s in self.adapter.modalities if s.name not in p.arrays]
        if "audio" in missing:
            self.notes.append("no sound given: the model predicts it from the video (sound budget 0)")
        if missing:
            self.set_budgets({m: 0.0 for m in missing} | {k: max(self._sliders[k].value, 0.5) for k in p.arrays}, compute=False)
        self._compute()

    # ------------------------------------------------------------------ budgets
    def set_budgets(self, budgets: dict, *, compute: bool = True):
        """Set the visible ratio of each modality (missing ones keep their value) and recompute once."""
        self._dirichlet_total = None
        with self.quiet():
            for k, v in budgets.items():  # snapped to whole patches: the slider shows what is used
                n = self.adapter.spec(k).num_patches
                self._sliders[k].value = round(float(v) * n) / n
        if compute:
            self._compute()

    def _dirichlet(self):
        self._dirichlet_total = int(self.total.value)
        self._compute(dirichlet=True)

    # ------------------------------------------------------------------ compute and show
    @_guarded
    def _compute(self, dirichlet: bool = False):
        if self.adapter is None or not self.inputs:
            return
        seed = int(self.seed.value)
        strategy = self._strategy()
        if dirichlet:
            key = (self._key, self.adapter.model_id, "dirichlet", int(self.total.value), seed, str(strategy))
            kwargs = dict(total=int(self.total.value))
        else:
            budgets = {k: int(round(sl.value * self.adapter.spec(k).num_patches)) for k, sl in self._sliders.items()}
            key = (self._key, self.adapter.model_id, tuple(sorted(budgets.items())), seed, str(strategy))
            kwargs = dict(budgets=budgets)
        if strategy:
            kwargs["strategy"] = strategy
        self._request = dict(kwargs, seed=seed)
        if key not in self._cache:
            t0 = time.perf_counter()
            with self.computing():
                rec = reconstruct_multimodal(self.adapter, self.inputs, seed=seed, **kwargs)
                self._cache[key] = (rec, baseline_metrics(rec), time.perf_counter() - t0)
        self.result, self.baselines, secs = self._cache[key]
        self.sounds, self.players.children = {}, ()  # the players belong to the result they were made from
        if dirichlet:  # show the split the draw gave on the sliders, without recomputing
            self.set_budgets({k: v / self.adapter.spec(k).num_patches for k, v in self.result.counts.items()}, compute=False)
        vid = next((s for s in self.adapter.modalities if s.kind == "video"), None)
        if vid is not None:
            with self.quiet():  # shown once, below
                self.set_frame_count(vid.shape[0])
        self._show_frame(rows="all")
        self.table.value = self.metrics_table()
        self._info(f"{html.escape(self.adapter.model_id)} · seed {seed} · "
                   + " · ".join(f"{k} {v}/{self.adapter.spec(k).num_patches} visible" for k, v in self.result.counts.items())
                   + f" · computed in {secs * 1e3:.0f} ms (cached) · "
                   + html.escape("; ".join(self.notes + list(self.result.notes) + list(getattr(self.adapter, "notes", ())))))

    @_guarded
    def listen(self):
        """Players for every spectrogram modality of the result on screen: the original, what the model heard and the
        reconstruction (:func:`explorer.audio_playback.playback`: Griffin-Lim, labelled as an approximation)."""
        from ..audio_playback import playback

        if self.result is None:
            return
        kind = "kaldi_fbank" if getattr(self.adapter, "front_end", "") == "kaldi-fbank" else "log_mel"
        rows = []
        with self.working("making the sounds (Griffin-Lim)…"):
            for name, res in self.result.results.items():
                if res.spec.kind != "spectrogram":
                    continue
                own = self.samples if name == "audio" else None
                self.sounds[name] = playback(res, kind=kind, samples=own, seed=int(self.seed.value))
                for what, (data, label) in self.sounds[name].items():
                    rows.append(W.VBox([W.HTML(f"<b>{html.escape(name)}: {html.escape(what)}</b><br>"
                                               f"<small>{html.escape(label)}</small>",
                                               layout=W.Layout(width="300px")),
                                        W.Audio(value=data, format="wav", autoplay=False, loop=False)]))
        self.players.children = tuple(rows)

    def _strategy(self) -> dict | None:
        """The sound masking on screen as ``reconstruct_multimodal``'s ``strategy`` (``None``: every modality random)."""
        if self.masking_dd.value == "random":
            return None
        return {s.name: self.masking_dd.value for s in self.adapter.modalities if s.kind == "spectrogram"} or None

    def export_request(self) -> dict:
        """What the Export button exports: the ``multimodal`` recipe for the view on screen.  Uploaded inputs are handed
        over as arrays (``attach``): the export stores them as ``inputs/<sha>.npz`` next to the figure, once it writes the
        figure, so that ``reproduce`` can rebuild it."""
        if self.result is None or self._request is None:
            raise ValueError("Nothing to export yet: load a model and a sample first.")
        opts = dict(self._request, frame=self.frame_index)
        attach = {}
        if self._key.startswith("upload:"):
            attach["arrays"], what = self.inputs, "upload-" + self._key.split(":")[1][:8]
        else:
            opts["sample"], what = self._key, file_stem(self._key)
        return dict(recipe="multimodal", model=self.adapter, inputs=[], options=opts, attach=attach,
                    name=f"{self.adapter.task}-{what}-seed{opts['seed']}")

    def metrics_table(self) -> str:
        """HTML: per modality, the model's score on hidden values next to the baselines' (best marked)."""
        rows = []
        for name, r in self.result.results.items():
            key, unit, higher = METRIC[r.spec.kind]
            cells = {"model": r.metrics.get(key)} | {b: m.get(name, {}).get(key) for b, m in self.baselines.items()}
            known = {k: v for k, v in cells.items() if v is not None}
            best = (max if higher else min)(known, key=known.get) if known else None
            tds = "".join(f"<td style='padding:2px 10px'>{'<b>' if k == best else ''}{'–' if v is None else f'{v:.3g}'}"
                          f"{'</b>' if k == best else ''}</td>" for k, v in cells.items())
            rows.append(f"<tr><td style='padding:2px 10px'>{html.escape(name)} ({unit}, {'higher' if higher else 'lower'} is better)"
                        f"</td>{tds}</tr>")
        head = "".join(f"<th style='padding:2px 10px'>{html.escape(h)}</th>" for h in ["hidden values", "model", *self.baselines])
        return f"<table style='font-size:12px'><tr>{head}</tr>{''.join(rows)}</table>"

    @_guarded
    def _show_frame(self, rebuild: bool = False, rows: str = "video"):
        """Show the cached result: rebuild the figure only when its layout changes (another model); otherwise swap the
        PNGs, error grids and titles of ``rows`` (``"video"``: rows that change with time; ``"all"``) in place."""
        if self.result is None:
            return
        t0 = time.perf_counter()
        i = self.frame_index
        names = list(self.result.results)
        layout_key = (self.adapter.model_id, tuple(names))
        if rebuild or len(self.fig.data) != 4 * len(names) or getattr(self, "_layout_key", None) != layout_key:
            replace_figure(self.fig, MV.multimodal_figure(self.result, frame=i))
            self._layout_key = layout_key
        else:
            with self.fig.batch_update():
                for k, n in enumerate(names):
                    if rows == "video" and self.result[n].spec.kind != "video":
                        continue
                    v = MV.modality_panels(self.result[n], i)
                    for c in range(3):
                        self.fig.data[4 * k + c].source = v["sources"][c]
                    self.fig.data[4 * k + 3].z = v["error"]
                    self.fig.layout.annotations[k].text = v["title"]
                self.fig.layout.title.text = f"{self.result.model_id} · seed {self.result.seed}"
        self.last_update_ms = (time.perf_counter() - t0) * 1e3


def _recorded_view(r, path) -> dict:
    """What the app shows for a reopened ``multimodal`` sidecar ``r`` (an :class:`explorer.export.Reopened`): the
    sample's name or the stored inputs (read from the figure's folder, checked against their hash), budgets as visible
    ratios (recorded patch counts divided by the modality's patches), the Dirichlet total, seed and frame.

    Raises:
        ValueError: a per-modality masking strategy other than random (the app has no control for it).
        MultiModalInputError: stored inputs that are missing, changed or outside the figure's folder.
    """
    from ..export.inputs import load_arrays
    from ..export.registry import input_folder, input_path, options_for

    o, adapter = options_for(r.recipe, r.options), r.model  # a key missing (an older sidecar): its default
    kinds = {s.name: s.kind for s in adapter.modalities}
    sound = {k: v for k, v in (o["strategy"] or {}).items() if kinds.get(k) == "spectrogram"
             and v in {m for _l, m in SPECTROGRAM_MASKING}}  # the Sound masking control shows these
    odd = {k: v for k, v in (o["strategy"] or {}).items() if v != "random" and k not in sound}
    if odd:
        raise ValueError(f"{Path(path).name} masks {', '.join(f'{k} by {v}' for k, v in odd.items())}: the app masks every "
                         "modality at random. Rebuild it with python -m explorer reproduce.")
    if (o["sample"] is None) == (o["arrays"] is None):
        raise ValueError(f"{Path(path).name} names neither a sample nor stored inputs: there is nothing to reopen.")
    if o["sample"] is not None:  # an unknown sample is refused here, before anything on screen changes
        arrays, notes = sample_inputs(adapter, o["sample"])
        inputs = (arrays, list(notes), o["sample"])
    else:
        with input_folder(Path(path).parent):
            arrays = load_arrays(input_path(o["arrays"]), o["arrays_sha256"])
        inputs = (arrays, [f"stored inputs {Path(o['arrays']).name} (from the export)"], f"upload:{o['arrays_sha256']}")
    budgets = None
    if o["budgets"] is not None:  # patch counts (what the app records) or ratios; a modality left out shows nothing
        n = {s.name: s.num_patches for s in adapter.modalities}
        unknown = sorted(set(o["budgets"]) - set(n))
        if unknown:
            raise ValueError(f"{Path(path).name} gives a budget to {unknown[0]!r}, which {adapter.model_id} does not have.")
        budgets = {k: (v / n[k] if isinstance(v, int) else float(v)) for k, v in
                   ((k, o["budgets"].get(k, 0)) for k in n)}
    return dict(sample=o["sample"], inputs=inputs, budgets=budgets, total=o["total"], seed=int(o["seed"]),
                frame=int(o["frame"]), masking=next(iter(sound.values()), "random"))


def _sample_names(adapter) -> list[tuple[str, str]]:
    """(label, name) of the samples offered for ``adapter``: its own (Audio-MAE's generated sounds) or its task's."""
    own = getattr(adapter, "sample_names", None)
    return own() if callable(own) else sample_names(adapter.task)
