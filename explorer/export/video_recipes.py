"""Figure recipes for masked video reconstruction (VideoMAE), registered on import by :mod:`explorer.export.recipes`.

The clip is named in the options, not passed as an image: ``clip="generated:<seed>"`` or ``video="inputs/<sha16>.<ext>"``
(the clip's own bytes, or ``.npy`` for arrays, stored next to the figure when the export writes it) with ``video_sha256``;
pass the clip itself as ``attach={"video": clip}`` and the export fills both in (:func:`video_input`).
The recipe decodes and samples it again (``sampling``, ``stride``, ``short``) and masks it with the same ``seed``, so
``python -m explorer reproduce`` rebuilds the same figure.  ``frame`` (every video recipe) and the mask options of
``video_sampling`` are recorded for the video app's Reopen only: the figure does not use them.

    export_recipe("video_frames", "figs/clip", model="mini-video-mae", inputs=[],
                  options=dict(clip="generated:10000003", ratio=0.9, strategy="tube", seed=0, frames=[0, 4, 7]))
    export_recipe("video_frames", "figs/mine", model="mini-video-mae", inputs=[], attach={"video": "my_clip.mp4"},
                  options=dict(ratio=0.9, frames=[0, 7]))
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from .inputs import ReproduceError, StoredInput, _raw_bytes, attachment, input_bytes, load_npy, npy_bytes, stored_input
from ..masking.video import VIDEO_STRATEGIES
from ..preprocess import POLICIES
from ..video import SAMPLINGS, SHORT_CLIP
from .registry import SEED, SHA256_OR_NONE, Choice, Int, ListOf, Num, StoredPath, Text, input_folder, input_path, recipe

CLIP = dict(clip=None, video=None, video_sha256=None, sampling="uniform", stride=4, short=None)
MASK = dict(ratio=0.9, strategy="tube", seed=0, fit="center-crop")
#: Option schemas: a generated clip is named by its seed, a stored one is a relative path with its hash.
CLIP_SCHEMA = dict(clip=Text(32, r"generated:[0-9]{1,12}", none=True, what="'generated:<seed>'"), video=StoredPath(),
                   video_sha256=SHA256_OR_NONE, sampling=Choice(SAMPLINGS), stride=Int(1, 64),
                   short=Choice(SHORT_CLIP, none=True))
MASK_SCHEMA = dict(ratio=Num(0.0, 1.0), strategy=Choice(VIDEO_STRATEGIES), seed=SEED, fit=Choice(POLICIES))
#: The frame the app showed when it exported (from 0): not drawn, recorded so that the app's Reopen comes back to it
#: (``None``, as in sidecars written before it was recorded: ``frames``' middle one for ``video_frames``, else the first).
VIEW = dict(frame=None)
VIEW_SCHEMA = dict(frame=Int(0, 4095, none=True))


@attachment("video")
def video_input(source) -> StoredInput:
    """A clip to keep next to an export as ``inputs/<sha16><ext>`` (written by the export, once it writes the figure).

    Args:
        source: a path, bytes, a FileUpload value, or a ``(T, H, W, 3)`` array (kept as ``.npy``).
    Returns:
        the :class:`StoredInput`, its ``sha256`` as :attr:`explorer.video.LoadedVideo.sha256` reports it.
    """
    from ..video import _from_array

    data, fname = _raw_bytes(source)
    if data is None and isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        data, fname = Path(source).read_bytes(), str(source)
    if data is not None:
        return stored_input(hashlib.sha256(data).hexdigest(), Path(fname).suffix.lower()[:8] or ".bin", data)
    if isinstance(source, np.ndarray):
        return stored_input(_from_array(source, [])[1], ".npy", npy_bytes(source))
    raise ReproduceError(f"Cannot store a clip of type {type(source).__name__} for reproduction; pass its file.")


def video_from_options(adapter, o: dict):
    """The :class:`explorer.video.LoadedVideo` the options name, sampled to the model's frames (hash checked)."""
    from ..reconstruction.video import model_clip

    if (o["clip"] is None) == (o["video"] is None):
        raise ValueError("A video recipe needs either clip='generated:<seed>' or a stored video (video=..., video_sha256=...).")
    kw = dict(sampling=o["sampling"], stride=int(o["stride"]), short=o["short"])
    if o["clip"] is not None:
        return model_clip(adapter, o["clip"], **kw)
    if not o["video_sha256"]:
        raise ReproduceError(f"The clip {o['video']!r} has no recorded SHA-256 (video_sha256): it cannot be checked, so "
                             "it is not read.")
    path = input_path(o["video"])  # refused if it leads out of the figure's folder
    data = input_bytes(path)  # from memory while the export that stores it is being built
    if data is None:
        raise ReproduceError(f"The clip {o['video']!r} was not found next to the figure ({path}).")
    src = load_npy(data, f"the stored clip {path.name}") if path.suffix == ".npy" else {"name": path.name, "content": data}
    v = model_clip(adapter, src, **kw)
    if v.sha256 != o["video_sha256"]:
        raise ReproduceError(f"{path} has SHA-256 {v.sha256[:12]}…, the figure was made from {o['video_sha256'][:12]}….")
    return v


def _reconstruction(adapter, o):
    from ..reconstruction.video import reconstruct_video

    v = video_from_options(adapter, o)
    return reconstruct_video(adapter, v, ratio=float(o["ratio"]), strategy=o["strategy"], seed=int(o["seed"]), fit=o["fit"])


@recipe("video_frames", n_inputs="none", letters=False, defaults=dict(CLIP, **MASK, **VIEW, frames=None),
        schema=dict(CLIP_SCHEMA, **MASK_SCHEMA, **VIEW_SCHEMA, frames=ListOf(Int(0, 4095), 64, 1, none=True)))
def _video_frames(adapter, images, o) -> go.Figure:
    """Masked video: chosen frames as rows of original | masked input | reconstruction | error."""
    from ..viz.video import frames_figure

    from ..viz.notes import attach_notes

    rec = _reconstruction(adapter, o)
    return attach_notes(frames_figure(rec, o["frames"]), rec.notes)


@recipe("video_filmstrip", n_inputs="none", letters=False, defaults=dict(CLIP, **MASK, **VIEW, step=1),
        schema=dict(CLIP_SCHEMA, **MASK_SCHEMA, **VIEW_SCHEMA, step=Int(1, 1024)))
def _video_filmstrip(adapter, images, o) -> go.Figure:
    """Masked video: every frame (or every ``step``-th) as rows original / masked input / reconstruction."""
    from ..viz.video import filmstrip, filmstrip_psnr_note

    from ..viz.notes import attach_notes

    rec = _reconstruction(adapter, o)
    return attach_notes(filmstrip(rec, step=int(o["step"]), level_titles=False), [filmstrip_psnr_note(rec), *rec.notes])


@recipe("video_sampling", n_inputs="none", letters=False, defaults=dict(CLIP, **MASK, **VIEW),
        schema=dict(CLIP_SCHEMA, **MASK_SCHEMA, **VIEW_SCHEMA))
def _video_sampling(adapter, images, o) -> go.Figure:
    """Which frames of the clip the video model reads, on a time line.

    The mask options are not drawn: the app records the mask it showed beside the time line, for its Reopen (sidecars
    written before they were recorded read as the app's defaults)."""
    from ..viz.video import sampling_figure

    return sampling_figure(video_from_options(adapter, o))


def recorded_clip(options: dict, sidecar_path: "str | os.PathLike"):
    """The clip a video recipe's ``options`` name, as an app reopening the figure shows it again.

    Returns:
        ``"generated:<seed>"``, or the stored clip next to the figure: a ``(T, H, W, 3)`` array (``.npy``) or an upload
        dict ``{"name", "content"}`` (a video file), checked against the recorded SHA-256.
    Raises:
        ReproduceError: no clip named, or a stored one that is missing, outside the figure's folder or not the recorded
            one.
    """
    from ..io import array_sha256

    if options.get("clip") is not None:
        return options["clip"]
    name = Path(sidecar_path).name
    if not options.get("video") or not options.get("video_sha256"):
        raise ReproduceError(f"{name} names no clip with its SHA-256: there is nothing to reopen.")
    with input_folder(Path(sidecar_path).parent):
        stored = input_path(options["video"])  # refused if it leads out of the figure's folder
        data = input_bytes(stored)
    if data is None:
        raise ReproduceError(f"The clip {options['video']!r} was not found next to the figure ({stored}).")
    if stored.suffix == ".npy":
        clip = load_npy(data, f"the stored clip {stored.name}")
        got = array_sha256(clip)  # as explorer.video.load_video hashes an array
    else:  # as the recipe reads it
        clip, got = {"name": stored.name, "content": data}, hashlib.sha256(data).hexdigest()
    if got != options["video_sha256"]:
        raise ReproduceError(f"{stored} has SHA-256 {got[:12]}…, the figure was made from {options['video_sha256'][:12]}….")
    return clip
