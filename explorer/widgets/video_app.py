"""The video MAE app: pick a clip, a mask strategy and a ratio; scrub or play through the frames.

Composition only: clips from :mod:`explorer.video` / :mod:`explorer.data.clips` (sampled as the model expects:
uniform in time, or strided as it was trained; the time line shows which frames), results from
:mod:`explorer.reconstruction.video` (one reconstruction per ratio of the sweep, computed once per
(model, clip, sampling, strategy, seed) and cached), figures from :mod:`explorer.viz.video`, files from
:mod:`explorer.export` (recipes ``video_frames``, ``video_filmstrip``, ``video_sampling``).  Moving the time or
the ratio slider swaps cached PNG frames in the live figure; the ratio curve's marker follows the slider once it rests.
An exported view comes back from its sidecar: :meth:`VideoMAEApp.from_sidecar`, or the export panel's Reopen row.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
import ipywidgets as W
import plotly.graph_objects as go

from ..export import ReproduceError
from ..io import ImageLoadError
from ..masking import MaskError
from ..models import DeviceError, ModelLoadError, load_model
from ..reconstruction.video import model_clip
from ..video import SAMPLINGS, VideoLoadError
from ..masking.video import VIDEO_STRATEGIES
from ..reconstruction.video import reconstruct_video
from ..viz import video as VV
from .base import REST_DELAY_S, AppBase, FrameControls, file_stem
from .figures import AppFigure, replace_figure
from .export_panel import ExportPanel
from .messages import guarded

def play_interval_ms(times_s, default: int = 250) -> int:
    """Milliseconds between frames when Play runs: the clip's own pace (the median gap between the timestamps of the
    frames the model reads, ``times_s`` ``(T,)`` seconds), kept within 20–2000 ms; ``default`` without timestamps."""
    t = np.asarray(times_s, float)
    gaps = np.diff(t[np.isfinite(t)]) if t.size else np.zeros(0)
    gaps = gaps[gaps > 0]
    return int(np.clip(round(float(np.median(gaps)) * 1000), 20, 2000)) if gaps.size else int(default)


def baseline_line(result) -> str:
    """The non-learned fills' masked PSNR on the same hidden tubelets, beside the model's (HTML, for the status line);
    says so in bold when one of them beats the model."""
    base = dict(getattr(result, "baseline_psnr", None) or {})
    if not base:
        return "no baselines"
    short = {name: name.split(" (")[0] for name in base}
    text = "baselines " + ", ".join(f"{html.escape(short[n])} {v:.2f} dB" for n, v in base.items())
    best = max(base, key=base.get)
    if base[best] > result.psnr_masked:
        text += (f" · <b>{html.escape(short[best])} beats the model by {base[best] - result.psnr_masked:.2f} dB here: a "
                 "non-learned fill reconstructs these hidden tubelets better</b>")
    return text


USER_ERRORS = (VideoLoadError, ImageLoadError, ModelLoadError, DeviceError, MaskError, ValueError, ReproduceError)
#: The ratios of the slider (VideoMAE works at 90–95 %).
VIDEO_RATIOS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
CLIP_SEEDS = (10_000_003, 10_000_011, 10_000_021)
STRIDES = (1, 2, 4, 8)
EXPORT_VIEWS = (("frames (first, current, last)", "video_frames"), ("filmstrip", "video_filmstrip"),
                ("sampling time line", "video_sampling"))
#: how long the ratio slider rests before the curve's marker follows it (seconds), as in the MAE app
MARKER_DELAY_S = REST_DELAY_S

_guarded = guarded(USER_ERRORS)


class VideoMAEApp(FrameControls, AppBase):
    """Interactive masked video reconstruction.

    Args:
        model: a ``VideoMAEForPreTraining`` checkpoint: shipped name, hub id (``MCG-NJU/videomae-base``) or folder.
        clip: ``"generated:<seed>"`` or anything :func:`explorer.video.load_video` takes.
        sampling: ``"uniform"`` or ``"strided"`` (see :data:`explorer.video.SAMPLINGS`); stride: frames apart when strided
            (default: the model's :attr:`frame_stride`, 1 for our mini models, 4 for Kinetics VideoMAE checkpoints).
        dtype: ``"float32"`` or ``"bfloat16"`` (``"float16"`` on GPUs); the dtype dropdown starts there.

    Attributes:
        result: the :class:`explorer.reconstruction.video.VideoReconstruction` on screen.
        video: the :class:`explorer.video.LoadedVideo` the model reads (which frames, when).
        sweep: ratio → reconstruction for the current (clip, strategy, seed).
        curve: the ratio curve, its marker (:func:`explorer.viz.video.ratio_marker`) at the ratio on screen.
        last_update_ms: server time of the last frame / ratio update.
    """

    recipes = tuple(name for _label, name in EXPORT_VIEWS)

    def __init__(self, model: str = "mini-video-mae", clip="generated:10000003", *, ratio: float = 0.9, strategy: str = "tube",
                 seed: int = 0, device: str = "auto", dtype: str = "float32", sampling: str = "strided",
                 stride: int | None = None):
        self.adapter = None
        self.frames = None
        self.video = None
        self._source = None
        self.notes: list[str] = []
        self.sweep: dict[float, object] = {}
        self._cache: dict[tuple, dict] = {}
        self.result = None
        self.last_update_ms = float("nan")
        head = self.header(model=model, models=["mini-video-mae", "MCG-NJU/videomae-base"], device=device,
                           dtypes=["float32", "bfloat16", "float16"], dtype=dtype,
                           samples=[(f"generated clip {s} (held out)", f"generated:{s}") for s in CLIP_SEEDS], sample_label="Clip",
                           upload_accept="video/*,.gif,.avi,.mp4,.webm", upload_label="Upload video")
        self.clip_dd = self.sample_dd
        self.strategy = W.Dropdown(options=list(VIDEO_STRATEGIES), value=strategy, description="Masking", layout=W.Layout(width="240px"))
        self.sampling = W.Dropdown(options=[("uniform in time", "uniform"), ("strided (as trained)", "strided")],
                                   value=sampling if sampling in SAMPLINGS else "strided", description="Sampling",
                                   layout=W.Layout(width="260px"))
        self.stride = W.Dropdown(options=list(STRIDES), value=stride if stride in STRIDES else None, description="Stride",
                                 layout=W.Layout(width="140px"))
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="Seed", layout=W.Layout(width="160px"))
        self.ratio = W.SelectionSlider(options=list(VIDEO_RATIOS), value=min(VIDEO_RATIOS, key=lambda r: abs(r - ratio)),
                                       description="Ratio", continuous_update=True)
        self.frame_controls(interval=250)
        self.fig = AppFigure()
        self.strip = AppFigure()
        self.curve = AppFigure()
        self.timeline = AppFigure()
        self.export_view = W.Dropdown(options=list(EXPORT_VIEWS), value="video_frames", description="Export view",
                                      layout=W.Layout(width="320px"))
        self.export_panel = ExportPanel(self.export_request, reopen=self.restore)
        super().__init__([
            *head,
            W.HBox([self.sampling, self.stride, self.strategy, self.seed]), W.HBox([self.ratio, self.play, self.frame]),
            self.status_area, self.fig.box, self.timeline.box, self.curve.box, self.strip.box, self.export_view, self.export_panel,
        ])
        self.load_btn.on_click(lambda _b: self._load_model())
        self.on_change(self.clip_dd, lambda ch: self._set_clip(ch["new"]) if ch["new"] else None)
        self.on_change(self.upload, lambda ch: self.take_upload(ch["new"], self._set_clip))
        self.on_change([self.strategy, self.seed], lambda _c: self._compute())
        self.on_change([self.sampling, self.stride], lambda _c: self._set_clip(self._source) if self._source is not None else None)
        self.on_change(self.ratio, lambda _c: self._show())
        self.on_change(self.frame, lambda _c: self._show_frame())
        self.start(lambda: self._first(clip))

    def _first(self, clip):
        self._load_model(refresh=False)
        if self.adapter is not None:
            self.show_first(clip, self._set_clip)
        else:  # the load failed and says why: keep the clip for the next "Load model"
            self._source = clip
            with self.quiet():
                self.show_first(clip, lambda _c: None)

    # ------------------------------------------------------------------ sidecars
    @classmethod
    def from_sidecar(cls, path, *, device: str | None = None, allow_download: bool = False, **kwargs) -> "VideoMAEApp":
        """The app as it was when the figure ``path`` was exported (its ``.json`` sidecar, or the exported PNG / PDF /
        SVG that embeds it): the same model (weights checked) and dtype, clip (a stored one checked against its hash),
        sampling and stride, mask strategy, ratio and seed, frame on screen and export view.  ``kwargs`` go to
        :class:`VideoMAEApp`.

        Raises:
            ValueError: a figure of another app's recipe, or options the app has no control for (reproduce those with
                ``python -m explorer reproduce``).
        """
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in cls.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; VideoMAEApp reopens "
                             f"{', '.join(repr(x) for x in cls.recipes)} figures.")
        view = _recorded_view(r, path)
        kwargs.setdefault("dtype", view["dtype"])
        if device is not None:
            kwargs.setdefault("device", device)
        app = cls(model=r.model, clip=view["clip"], ratio=view["ratio"], strategy=view["strategy"], seed=view["seed"],
                  sampling=view["sampling"], stride=view["stride"], **kwargs)
        app._apply_recorded(r.recipe, view)
        return app

    @_guarded
    def restore(self, path):
        """Come back to the view the figure ``path`` was exported from, in this app (what the Reopen button does)."""
        r = self.reopen(path)
        view = _recorded_view(r, path)  # everything checked before anything on screen changes
        if r.model is not self.adapter:
            self._cache.clear()
        self.hand_over_model(r.model)
        self.adapter = r.model
        with self.quiet():
            if view["dtype"] in self.dtype_dd.options:
                self.dtype_dd.value = view["dtype"]
            self.sampling.value, self.stride.value = view["sampling"], view["stride"]
            self.strategy.value, self.seed.value, self.ratio.value = view["strategy"], view["seed"], view["ratio"]
        self._set_clip(view["clip"])
        self._apply_recorded(r.recipe, view)

    def _apply_recorded(self, recipe: str, view: dict) -> None:
        """The parts of a recorded view the constructor does not take: the clip dropdown, the frame, the export view."""
        with self.quiet():
            listed = isinstance(view["clip"], str) and view["clip"] in [v for _l, v in self.clip_dd.options]
            self.clip_dd.value = view["clip"] if listed else None  # a clip not listed: the dropdown does not name it
            self.export_view.value = recipe
        if self.result is not None:
            self.frame.value = min(view["frame"] + 1, self.frame.max)

    @property
    def dtype(self) -> str:
        """The dtype chosen for the next model load."""
        return self.dtype_dd.value

    # ------------------------------------------------------------------ inputs
    @_guarded
    def _load_model(self, refresh: bool = True):
        self.adapter = None
        m = self.load_selected(load_model)
        if getattr(m, "reconstructs", None) != "video":
            raise ModelLoadError(f"{self.model_box.value!r} is not a VideoMAEForPreTraining checkpoint (it has no decoder to "
                                 "reconstruct hidden tubelets); try mini-video-mae or MCG-NJU/videomae-base.")
        self.adapter = m
        self._cache.clear()
        if self.stride.value is None or refresh:  # the new model's own stride
            with self.quiet():
                self.stride.value = m.frame_stride if m.frame_stride in STRIDES else 4
        if refresh and self._source is not None:
            self._set_clip(self._source)

    @_guarded
    def _set_clip(self, clip):
        if self.adapter is None:
            raise ModelLoadError("Load a video model first.")
        self._source = clip
        self.video = self.load_clip(clip)
        self.frames = self.video.frames
        self.play.interval = play_interval_ms(self.video.times_s)
        self.notes = (["generated clip (moving shapes, held out)"] if _is_generated(clip) else []) + list(self.video.notes)
        self._clip_key = (self.video.sha256, self.video.sampling, self.video.stride)
        replace_figure(self.timeline, VV.sampling_figure(self.video))
        self._compute()

    def load_clip(self, clip):
        """The :class:`explorer.video.LoadedVideo` the model reads from ``clip`` with the sampling on screen."""
        return model_clip(self.adapter, clip, sampling=self.sampling.value, stride=int(self.stride.value or 1))

    # ------------------------------------------------------------------ compute
    @_guarded
    def _compute(self):
        if self.adapter is None or self.frames is None:
            return
        key = (self._clip_key, self.adapter.model_id, self.strategy.value, int(self.seed.value))
        t0 = time.perf_counter()
        if key not in self._cache:
            with self.computing("computing the ratio sweep"):
                self._cache[key] = {r: reconstruct_video(self.adapter, self.frames, ratio=r, strategy=self.strategy.value,
                                                         seed=int(self.seed.value)) for r in VIDEO_RATIOS}
        self.sweep = self._cache[key]
        self._sweep_s = time.perf_counter() - t0
        n = len(next(iter(self.sweep.values())).frames)
        with self.quiet():  # shown once, below
            self.set_frame_count(n)
        self._show(rebuild=True)
        replace_figure(self.curve, self.ratio_curve())  # marked at the ratio on screen

    def ratio_curve(self) -> go.Figure:
        """Masked-patch PSNR of the clip against the ratio, from the cached sweep, beside the non-learned fills (nearest
        visible frame, per-frame Telea, mean colour) on the same masks: each reconstruction keeps its own, so a cached
        sweep computes them once."""
        from ..reconstruction.video import sweep_baseline_psnr

        recs = [self.sweep[r] for r in sorted(self.sweep)]
        return VV.ratio_curve(recs, baselines=sweep_baseline_psnr(recs), model="model",
                              title=f"{self.strategy.value} masking, seed {self.seed.value}", current=self.ratio.value)

    def _move_marker(self) -> None:
        """Move the ratio curve's marker (line, ring on the model's curve, its value) to the ratio on screen once the
        slider rests (~0.15 s), in place: three layout entries change, no trace.  Without a running event loop (scripts,
        tests) it moves at once."""
        def move():
            if not self.sweep or self.result is None or len(self.curve.layout.shapes) < 2 or not self.curve.layout.annotations:
                return
            ratios = sorted(self.sweep)
            m = VV.ratio_marker(self.result.ratio, self.result.psnr_masked, span=(ratios[0], ratios[-1]))
            lay = self.curve.layout
            with self.curve.batch_update():
                lay.shapes[0].update(m["shapes"][0])
                lay.shapes[1].update(m["shapes"][1])
                lay.annotations[0].update(m["annotations"][0])

        self.when_resting(move)

    @_guarded
    def _show(self, rebuild: bool = False):
        if not self.sweep:
            return
        self.result = self.sweep[self.ratio.value]
        self._show_frame(rebuild=rebuild)
        n = len(VV.filmstrip_rows(self.result)) * len(self.result.frames)
        if rebuild or len(self.strip.data) != n:
            replace_figure(self.strip, VV.filmstrip(self.result))
        else:  # a ratio move: same layout, new thumbnails
            with self.strip.batch_update():
                for trace, src in zip(self.strip.data, VV.filmstrip_sources(self.result)):
                    trace.source = src
        if not rebuild:  # a ratio move (a rebuild draws a new curve, marked where it should be)
            self._move_marker()
        self._info(f"{html.escape(self.adapter.model_id)} · "
                   f"{len(self.result.frames)} frames · {self.strategy.value} masking, ratio {self.ratio.value:.2f}: "
                   f"masked PSNR {self.result.psnr_masked:.2f} dB · {baseline_line(self.result)} · sweep of "
                   f"{len(self.sweep)} ratios ({self._sweep_s:.1f} s, cached) · "
                   + html.escape("; ".join(self.notes + self.result.notes[-1:])))

    @_guarded
    def _show_frame(self, rebuild: bool = False):
        if self.result is None:
            return
        t0 = time.perf_counter()
        i = self.frame_index
        if rebuild or len(self.fig.data) != 4:
            replace_figure(self.fig, VV.video_frame_figure(self.result, i))
        else:  # in place: three PNG sources, the error grid and two titles
            v = VV.frame_panels(self.result, i)
            with self.fig.batch_update():
                for k in range(3):
                    self.fig.data[k].source = v["sources"][k]
                self.fig.data[3].z = v["error"]
                self.fig.layout.title.text = v["title"]
                self.fig.layout.annotations[3].text = v["error_title"]
        self.last_update_ms = (time.perf_counter() - t0) * 1e3

    # ------------------------------------------------------------------ export
    def export_request(self) -> dict:
        """What the Export button exports: the view chosen in ``export_view`` for the clip, sampling and mask on screen.

        A generated clip is named in the options; any other clip (upload, file, array) is handed over as it is
        (``attach``): the export stores it as ``inputs/<sha>.<ext>`` next to the figure, once it writes the figure, so that
        ``python -m explorer reproduce`` can rebuild it from the same clip + seed."""
        if self.result is None or self.video is None:
            raise ValueError("Nothing to export yet: load a model and a clip first.")
        r, T = self.result, len(self.result.frames)
        opts = dict(sampling=self.video.sampling, stride=int(self.video.stride), ratio=float(r.ratio), strategy=r.strategy,
                    seed=int(r.seed), frame=self.frame_index)  # the mask and frame on screen also for the time line
        generated = _is_generated(self._source)
        if generated:
            opts["clip"] = self._source
        view = self.export_view.value
        if view == "video_frames":
            opts["frames"] = sorted({0, self.frame_index, T - 1})
        what = file_stem(self._source) if generated else "clip-" + self.video.sha256[:8]
        name = f"{what}-{view.split('_', 1)[1]}-{r.strategy}-{round(100 * r.ratio)}-seed{r.seed}"
        return dict(recipe=view, model=self.adapter, inputs=[], options=opts, name=name,
                    attach={} if generated else {"video": self._source})


def _is_generated(clip) -> bool:
    return isinstance(clip, str) and clip.startswith("generated:")


def _recorded_view(r, path) -> dict:
    """What the app shows for a reopened video sidecar ``r`` (an :class:`explorer.export.Reopened`): its controls' values
    and the clip (a generated clip's name, or the stored clip read from the figure's folder and checked against its
    recorded hash, as the recipe reads it).

    Raises:
        ValueError: options the app has no control for (a ratio off the slider, another stride, ``short``, ``fit``,
            ``step``, or frames other than the first, the current and the last).
        ReproduceError: a stored clip that is missing, outside the figure's folder or not the recorded one.
    """
    from ..export.registry import options_for
    from ..export.video_recipes import recorded_clip

    o, T = options_for(r.recipe, r.options), int(r.model.num_frames)  # a key missing (an older sidecar): its default
    problems = []
    ratio = next((x for x in VIDEO_RATIOS if abs(x - float(o["ratio"])) < 1e-9), None)
    if ratio is None:
        problems.append(f"ratio {o['ratio']} is not on the slider ({', '.join(f'{x:g}' for x in VIDEO_RATIOS)})")
    if int(o["stride"]) not in STRIDES:
        problems.append(f"stride {o['stride']} is not offered ({', '.join(map(str, STRIDES))})")
    if o["short"] is not None:
        problems.append(f"short={o['short']!r} (the app reads short clips the sampling's default way)")
    if o["fit"] != "center-crop":
        problems.append(f"fit={o['fit']!r} (the app centre-crops)")
    if o.get("step", 1) != 1:
        problems.append(f"a filmstrip with step {o['step']} (the app's shows every frame)")
    frame = o["frame"]
    if r.recipe == "video_frames":
        shown = [0, T // 2, T - 1] if o["frames"] is None else [int(i) for i in o["frames"]]
        if frame is None:  # exported before the frame on screen was recorded: the one between the first and the last
            frame = shown[1] if len(shown) == 3 else shown[0]
        if shown != sorted({0, int(frame), T - 1}):
            problems.append(f"frames {shown} (the app exports the first, the current and the last of {T})")
    frame = 0 if frame is None else int(frame)
    if not 0 <= frame < T:
        problems.append(f"frame {frame} of a {T}-frame clip")
    if problems:
        raise ValueError(f"{Path(path).name} cannot be shown in the video app as it was exported: {'; '.join(problems)}. "
                         "Rebuild it with python -m explorer reproduce.")
    clip = recorded_clip(o, path)
    return dict(clip=clip, ratio=ratio, strategy=o["strategy"], seed=int(o["seed"]), sampling=o["sampling"],
                stride=int(o["stride"]), frame=frame, dtype=str(r.sidecar["provenance"]["model"].get("dtype", "float32")))
