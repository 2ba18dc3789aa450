"""Cells of the multimodal MAE notebooks (07 RGB-D, 08 audio-visual); written by tools/build_notebooks.py."""

RGBD = [
    ("md", """
# 07 · RGB + depth: cross-modal masked autoencoding

A **multimodal MAE** (MultiMAE, Bachmann et al. 2022) hides patches of *several* modalities at once and
reconstructs all of them from what is left, with one shared encoder and one decoder per modality.  Because the
decoders read every visible token, the model can predict **depth from RGB alone**, **RGB from depth alone**, or
fill both from a few patches of each.

`mini-rgbd-mae` is trained in this repository (CPU, about 20 min) on generated rooms with exact metric depth
(checkered floor, back wall, shapes standing on the floor, haze) and on crops of the Middlebury *motorcycle*
(shipped with scikit-image).  Its card is in `data/models/mini-rgbd-mae/README.md`.
"""),
    ("code", """
import numpy as np
import explorer
from explorer.multimodal import load_multimodal_model, reconstruct_multimodal
from explorer.multimodal.baselines import baseline_metrics
from explorer.multimodal.inputs import sample_inputs
from explorer.viz.multimodal import multimodal_figure, budget_curve

mm = load_multimodal_model("mini-rgbd-mae")
for s in mm.modalities:
    print(f"{s.name:6s} {s.kind:6s} shape {s.shape}, patches {s.patch} → {s.num_patches} tokens ({s.unit})")
x, notes = sample_inputs(mm, "room:10000001")   # a generated room the model never saw
print("; ".join(notes))
"""),
    ("md", """
## 1 · Depth from RGB alone

Every RGB patch visible, no depth patch: the depth row is entirely the model's guess.  Scores are on hidden values
only: absolute relative error (AbsRel, lower is better), RMSE in metres and δ₁ (share within 25 %).
"""),
    ("code", """
rec = reconstruct_multimodal(mm, x, {"rgb": 1.0, "depth": 0.0}, seed=0)
print(rec.summary())
multimodal_figure(rec)
"""),
    ("md", """
## 2 · Budgets per modality

The same room under four budgets, each next to two non-learned fills that can only use the modality's *own*
visible patches: the training mean (a constant depth) and OpenCV inpainting.  Ten per cent of visible depth
patches (6 of 64) anchor the scale; RGB from depth alone shows what geometry says about appearance (not much).
"""),
    ("code", """
budgets = {"depth from RGB": {"rgb": 1.0}, "RGB + 10% depth": {"rgb": 1.0, "depth": 0.1},
           "RGB from depth": {"depth": 1.0}, "25% + 25%": {"rgb": 0.25, "depth": 0.25}}
for label, b in budgets.items():
    r = reconstruct_multimodal(mm, x, b, seed=0)
    base = baseline_metrics(r)
    print(f"— {label}")
    for name, res in r.results.items():
        key = "absrel" if name == "depth" else "psnr"
        if key in res.metrics:
            others = ", ".join(f"{b} {m[name][key]:.3g}" for b, m in base.items() if key in m.get(name, {}))
            print(f"   {name:5s} {key} model {res.metrics[key]:.3g} | {others}")
"""),
    ("md", """
MultiMAE samples the split of one shared budget from a Dirichlet distribution; `total=` does that with a seed:
"""),
    ("code", """
for seed in range(3):
    r = reconstruct_multimodal(mm, x, total=24, seed=seed)
    print(r.notes[0], "→ depth AbsRel", round(r["depth"].metrics.get("absrel", float("nan")), 3))
"""),
    ("md", """
## 3 · How much does visible depth help?

Depth AbsRel on 8 held-out rooms as the visible share of depth grows (all RGB visible), against inpainting from the
same visible depth patches.  Masks are nested: each larger budget keeps the patches a smaller one showed.
"""),
    ("code", """
from explorer.data.rgbd import make_rgbd_scene

shares = [0.0, 0.1, 0.2, 0.35, 0.5]
model_err, inpaint_err = [], []
for share in shares:
    m, b = [], []
    for seed in range(10_000_100, 10_000_108):
        s = make_rgbd_scene(seed)
        r = reconstruct_multimodal(mm, {"rgb": s.image, "depth": s.depth}, {"rgb": 1.0, "depth": share}, seed=seed)
        m.append(r["depth"].metrics["absrel"])
        b.append(baseline_metrics(r)["inpainting (visible patches)"].get("depth", {}).get("absrel"))
    model_err.append(np.mean(m))
    inpaint_err.append(np.mean(b) if None not in b else None)   # no visible depth: nothing to inpaint from
    print(f"depth visible {share:4.0%}: model AbsRel {model_err[-1]:.3f} | inpainting "
          + ("–" if inpaint_err[-1] is None else f"{inpaint_err[-1]:.3f}"))
"""),
    ("code", """
import plotly.graph_objects as go

fig = go.Figure([go.Scatter(x=shares, y=model_err, name="model (RGB + visible depth)", mode="lines+markers"),
                 go.Scatter(x=shares, y=inpaint_err, name="inpainting (visible depth only)", mode="lines+markers")])
fig.update_layout(xaxis_title="visible share of depth patches", yaxis_title="depth AbsRel (hidden pixels)",
                  xaxis_tickformat=".0%", height=320, width=560, template="plotly_white")
fig
"""),
    ("md", """
## 4 · Real depth: the Middlebury motorcycle, and a stereo pair

scikit-image ships the *motorcycle* stereo pair with its true disparity.  With the dataset's calibration, depth is
`f · B / (d + doffs)` metres.  The crops below come from the right 35 % of the image, which training never saw.
The rooms are far from this photo, so expect a rough guess, not a depth estimator.
"""),
    ("code", """
x_m, notes_m = sample_inputs(mm, "motorcycle:1")
print("; ".join(notes_m))
r = reconstruct_multimodal(mm, x_m, {"rgb": 1.0, "depth": 0.1}, seed=0)
print(r.summary())
multimodal_figure(r)
"""),
    ("md", """
From a stereo pair you have no disparity file for: OpenCV's semi-global block matching (`explorer.depth.stereo_disparity`)
gives the disparity, `disparity_to_depth` the depth (pixels it could not match stay unknown and are never shown).
"""),
    ("code", """
import cv2
from skimage.data import stereo_motorcycle
from explorer.depth import disparity_to_depth, stereo_disparity
from explorer.multimodal.inputs import prepare_rgbd
from explorer.data.rgbd import MOTORCYCLE_BASELINE_M, MOTORCYCLE_DOFFS_PX, MOTORCYCLE_F_PX

left, right, _ = stereo_motorcycle()
half = lambda im: cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA)
d = stereo_disparity(half(left), half(right), num_disparities=48)
# full-resolution disparity = 8 × this one (scikit-image's copy is already a quarter of Middlebury's)
depth = MOTORCYCLE_F_PX * MOTORCYCLE_BASELINE_M / (np.where(d.valid, d.depth * 8, np.nan) + MOTORCYCLE_DOFFS_PX)
x_s, notes_s = prepare_rgbd(half(left)[:, 230:].astype(np.float32) / 255, depth[:, 230:])
print("\\n".join([*d.notes, *notes_s]))
r = reconstruct_multimodal(mm, x_s, {"rgb": 1.0, "depth": 0.25}, seed=0)
print(r.summary())
"""),
    ("md", """
## 5 · The app

Pick a sample or upload an RGB image and a depth map (16-bit PNG in millimetres, float TIFF, `.npy`; a second
*colour* image is taken as the right view of a stereo pair), set the visible share of each modality with its slider or
a preset, or let **Dirichlet split** divide a total budget as MultiMAE does.  The table compares the model with the
baselines on the same hidden values (best in bold).
"""),
    ("code", """
from explorer.widgets.multimodal_app import MultiMAEApp

app = MultiMAEApp("mini-rgbd-mae", "room:10000004", budgets={"rgb": 1.0, "depth": 0.1})
app
"""),
    ("md", """
## 6 · Bad input
"""),
    ("code", """
from explorer.multimodal import BudgetError, MultiModalInputError
from explorer.depth import DepthLoadError, load_depth

holes = x["depth"].copy(); holes[:24] = np.nan            # invalid depth: never shown, never scored
r = reconstruct_multimodal(mm, {"rgb": x["rgb"], "depth": holes}, {"rgb": 1.0, "depth": 0.3}, seed=0)
print("handled:", "; ".join(r.notes))
for call in [lambda: reconstruct_multimodal(mm, x, {"rgb": 0.0, "depth": 0.0}),
             lambda: reconstruct_multimodal(mm, {"rgb": x["rgb"]}, {"rgb": 0.5, "depth": 0.5}),
             lambda: reconstruct_multimodal(mm, {"rgb": x["rgb"][:32]}, {"rgb": 1.0}),
             lambda: load_depth(np.zeros((8, 8), np.float32)),
             lambda: load_multimodal_model("EPFL-VILAB/multimae-b")]:
    try:
        call()
    except (BudgetError, MultiModalInputError, DepthLoadError, explorer.ModelLoadError) as e:
        print("refused:", e)
"""),    ("md", """
## 7 · With the published MultiMAE weights

MultiMAE's authors (EPFL-VILAB) publish their pre-trained model as a file for their own repository, not on the
Hugging Face hub: download `multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth` (about 400 MB, from the
"pretrained weights" link of github.com/EPFL-VILAB/MultiMAE) and set `MULTIMAE_WEIGHTS` to its path before starting
JupyterLab. It is read as tensors only (`weights_only=True`) into our implementation of their layout, which the tests
check against the authors' own code. It has three modalities: RGB, depth and 133 COCO panoptic classes.

* **Depth in any unit** (larger = farther). The model sees each depth map standardised by the mean and spread of its
  10–90 % values, as it was trained. Its predictions are put back in your map's units with that map's own statistics,
  so the scale comes from your map, not from the model: this is a *relative* depth model.
* **Semantic maps** are drawn with the class palette and a legend of the classes on screen.

Without the file, the cell below says it skipped.
"""),
    ("code", """
import os

path = os.environ.get("MULTIMAE_WEIGHTS")
if path:
    published = load_multimodal_model(path)
    print("\\n".join(published.notes))
    x_p, _ = sample_inputs(published, "motorcycle:1")
    r = reconstruct_multimodal(published, x_p, {"rgb": 1.0, "depth": 0.0}, seed=0)   # depth and semantics from RGB
    print(r.summary())
    multimodal_figure(r).show()
    display(MultiMAEApp(path, "motorcycle:1"))
else:
    print("skipped: MULTIMAE_WEIGHTS is not set (the path of the authors' multimae-b_98_rgb+-depth-semseg_1600e .pth)")
"""),
]

AUDIO_VISUAL = [
    ("md", """
# 08 · Audio + video: masking sound and pictures separately

Audio-MAE (Huang et al. 2022) treats a log-mel spectrogram as an image and hides 80 % of its 16 × 16 patches;
audio-visual MAEs (CAV-MAE, MAViL) do it for sound and video together.  `mini-av-mae` is a MultiMAE-style model
trained here on generated clips where **colour sets an object's pitch, shape its timbre, and every bounce off a border
rings**, so each modality can be predicted from the other.

Which real checkpoints load: transformers (5.x) has `VideoMAEForPreTraining` (open it in notebook 06) and the Audio
Spectrogram Transformer *classifier* (no decoder, nothing to reconstruct).  Audio-MAE, CAV-MAE, MAViL and MultiMAE are
released for their own code bases only; `load_multimodal_model` says so for their ids rather than guessing.
"""),
    ("code", """
import numpy as np
import plotly.graph_objects as go
import explorer
from explorer.multimodal import load_multimodal_model, reconstruct_multimodal
from explorer.multimodal.baselines import baseline_metrics
from explorer.data.av_clips import PITCH_HZ, make_av_clip
from explorer.viz.multimodal import colourise, multimodal_figure

av = load_multimodal_model("mini-av-mae")
for s in av.modalities:
    print(f"{s.name:6s} {s.kind:12s} shape {s.shape}, patches {s.patch} → {s.num_patches} tokens")
clip = make_av_clip(10_000_002)          # held out
for o, b in zip(clip.clip.objects, clip.bounces):
    print(f"{o.colour} {o.shape}: hums at {PITCH_HZ[o.colour]:.0f} Hz, bounces at "
          + (", ".join(f"{f / 8:.3g} s" for f in b) or "no time in this clip"))   # 8 frames per second
"""),
    ("md", """
## 1 · The log-mel spectrogram

128 mel bins (low at the bottom) × 96 hops of 10 ms: one second, the 8 frames of the clip.  Horizontal lines are the
hum of each object (its pitch and harmonics); vertical bright bars are bounces.
"""),
    ("code", """
spec = clip.spectrogram
fig = go.Figure(go.Heatmap(z=spec, x=np.arange(spec.shape[1]) * 0.01, colorscale="Magma",
                           colorbar=dict(title="log power")))
for fr in sorted({f for b in clip.bounces for f in b}):
    fig.add_vline(x=fr / 8, line_dash="dot", line_color="white")
fig.update_layout(xaxis_title="time (s)", yaxis_title="mel bin", height=300, width=620, template="plotly_white")
fig
"""),
    ("md", """
## 2 · Sound from video, video from sound

Scores are on hidden values: PSNR for video (higher is better) and the RMSE of log power in dB for sound (lower is
better), next to the training mean and inpainting from the modality's own visible patches.
"""),
    ("code", """
x = {"video": clip.frames, "audio": clip.spectrogram}
for label, b in {"sound from video": {"video": 1.0}, "video from sound": {"audio": 1.0},
                 "25% + 25%": {"video": 0.25, "audio": 0.25}, "video 10% + all sound": {"video": 0.1, "audio": 1.0}}.items():
    r = reconstruct_multimodal(av, x, b, seed=0)
    base = baseline_metrics(r)
    print(f"— {label}")
    for name, res in r.results.items():
        key = "psnr" if name == "video" else "rmse_db"
        if key in res.metrics:
            others = ", ".join(f"{k} {m[name][key]:.3g}" for k, m in base.items() if key in m.get(name, {}))
            print(f"   {name:5s} {key} model {res.metrics[key]:.3g} | {others}")
"""),
    ("code", """
rec = reconstruct_multimodal(av, x, {"video": 1.0, "audio": 0.0}, seed=0)
multimodal_figure(rec, frame=3)
"""),
    ("md", """
Video patches can be hidden as tubes (the same places in every time step, VideoMAE) instead of at random:
"""),
    ("code", """
for strategy in ("random", "tube"):
    r = reconstruct_multimodal(av, x, {"video": 0.25, "audio": 1.0}, seed=0, strategy={"video": strategy})
    print(f"{strategy:6s}: video PSNR {r['video'].metrics['psnr']:.2f} dB with {r.counts['video']} visible patches")
"""),
    ("md", """
## 3 · From files: a video and a sound

The sound comes from the video's own sound track (an MP4, MKV, WebM… decoded by FFmpeg through PyAV) or from a separate
sound file: WAV in any layout, FLAC, OGG, MP3 or AIFF, read by libsndfile through soundfile, at any rate and with any
number of channels (resampled to 16 kHz mono, and said so).  Without any sound, the model predicts it from the video.
Here the video is written by OpenCV, which stores no sound, so the sound comes as a stereo WAV beside it:
"""),
    ("code", """
import tempfile, wave, pathlib
from explorer.video import write_video
from explorer.multimodal.inputs import av_from_files

tmp = pathlib.Path(tempfile.mkdtemp())
write_video(tmp / "clip.avi", clip.frames, fps=8)
stereo = np.repeat((clip.audio * 32767).astype("<i2")[:, None], 2, 1)
with wave.open(str(tmp / "clip.wav"), "wb") as w:
    w.setnchannels(2); w.setsampwidth(2); w.setframerate(16_000); w.writeframes(stereo.tobytes())

files = av_from_files(str(tmp / "clip.avi"), str(tmp / "clip.wav"))   # what the app does with two uploads
print(", ".join(f"{k} {v.shape}" for k, v in files.arrays.items()))
print("\\n".join(files.notes))
"""),
    ("md", """
## 4 · The app

Sliders set the visible share of video and of sound; presets give the cross-modal cases; the frame slider (or Play)
moves through the clip from the cached result.  The app appears as soon as the cell runs and shows its progress
while the model loads.
"""),
    ("code", """
from explorer.widgets.multimodal_app import MultiMAEApp

app = MultiMAEApp("mini-av-mae", budgets={"video": 1.0, "audio": 0.0})
app.set_av(str(tmp / "clip.avi"), str(tmp / "clip.wav"))
print(app.result.summary())  # the app's numbers as text (its status line and table show them above)
print("notes:", "; ".join(app.notes))
"""),    ("md", """
**Listen.** The app's *Listen* button makes three players for the sound row: the original, what the model heard (its
hidden patches silent) and the reconstruction. A spectrogram keeps no phase, so each sound made from one is found by
Griffin-Lim (librosa): an approximation, labelled as such. Here the sound is predicted from 20 % of it:
"""),
    ("code", """
app.set_budgets({"video": 1.0, "audio": 0.2})
app.listen()
app.listen_box
"""),
    ("md", """
## 5 · Bad input
"""),
    ("code", """
from explorer.audio import AudioLoadError, load_audio
from explorer.multimodal import BudgetError, MultiModalInputError

for call in [lambda: load_audio(b""), lambda: load_audio(b"RIFF....WAVEjunk"),
             lambda: reconstruct_multimodal(av, {"video": clip.frames}, {"video": 0.5, "audio": 0.5}),
             lambda: reconstruct_multimodal(av, {"video": clip.frames[:3]}, {"video": 1.0}),
             lambda: load_multimodal_model("facebook/audiomae")]:
    try:
        call()
    except (AudioLoadError, BudgetError, MultiModalInputError, explorer.ModelLoadError) as e:
        print("refused:", e)
short = clip.audio[:4000]   # a quarter of a second: padded, and said so
from explorer.multimodal.inputs import prepare_av
_, notes = prepare_av(None, float("nan"), short)
print("handled:", "; ".join(notes))
"""),    ("md", """
## 6 · With the published Audio-MAE weights

Audio-MAE's authors (facebookresearch/AudioMAE) publish their AudioSet-2M pre-trained ViT-B as `pretrained.pth`
(linked from their README), not on the Hugging Face hub. Set `AUDIOMAE_WEIGHTS` to its path before starting
JupyterLab. It is read as tensors only (`weights_only=True`) into our implementation of their encoder and their
decoder (the global one or the shifted-window "local" one, whichever the file holds). The tests check this
implementation against the authors' own code.

* **Their front end.** The model reads 10.24 s of sound as a Kaldi-style log-mel filterbank: 128 bins, 25 ms windows
  every 10 ms, AudioSet's mean and 2 × std. It is chosen by the checkpoint, not our 1-second log-mel.
* **Their masking.** Hidden patches follow the paper: random patches, whole time strips, whole frequency strips, or
  both (time-frequency). The masks are seeded and nested across ratios, like the image masks.
* **What it paints back.** Each hidden patch is predicted normalised by its own mean and variance, as it was trained.
  It is shown with the true patch's statistics, as the paper's figures do.

Without the file, the cell below says it skipped.
"""),
    ("code", """
import os

path = os.environ.get("AUDIOMAE_WEIGHTS")
if path:
    audio_mae = load_multimodal_model(path)
    print("\\n".join(audio_mae.notes))
    x_a, notes_a = audio_mae.sample_inputs("sound:10000002")   # or a WAV uploaded in the app
    for strategy in ("random", "time", "frequency", "time-frequency"):
        r = reconstruct_multimodal(audio_mae, x_a, {"audio": 0.2}, seed=0, strategy={"audio": strategy})
        print(f"{strategy:15s} 20% visible: {r['audio'].metrics['rmse_db']:.2f} dB RMSE on hidden bins")
    multimodal_figure(r).show()
    display(MultiMAEApp(path))
else:
    print("skipped: AUDIOMAE_WEIGHTS is not set (the path of the authors' AudioSet-2M pretrained.pth)")
"""),
]
