"""Masked video reconstruction with a VideoMAE (compute layer; figures live in ``viz``).

    clip = explorer.video.load_video("clip.mp4", num_frames=model.num_frames)
    rec = reconstruct_video(model, clip, ratio=0.9, strategy="tube", seed=0)
    rec.psnr_masked, rec.psnr_per_frame            # dB over hidden pixels (overall, per frame)
    rec.baseline_psnr                              # the same for nearest visible frame, Telea, mean colour fills
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import baselines as B
from ..metrics import masked_psnr, patch_mse, psnr_from_mse
from ..preprocess import fit_image
from ..masking.video import VIDEO_STRATEGIES, video_mask
from ..video import LoadedVideo, load_video


@dataclass
class VideoReconstruction:
    """One masked clip and what the model made of it.

    Attributes:
        frames: ``(T, S, S, 3)`` float32 in [0, 1], the model input.
        mask: ``(T / tubelet, gh, gw)`` bool, True = hidden.
        prediction: ``(T, S, S, 3)`` float32, clipped to [0, 1]: the model's pixels on hidden tubelets,
            the input on visible ones.
        loss: the model's own training loss for this mask (its target space: normalised per tubelet when
            ``norm_pix_loss``).
        ratio, strategy, seed: the mask; tubelet, patch_size: geometry.
        notes: what was done to the input (frame sampling, fitting, de-normalisation).
    """

    frames: np.ndarray
    mask: np.ndarray
    prediction: np.ndarray
    loss: float
    ratio: float
    strategy: str
    seed: int
    tubelet: int
    patch_size: int
    model_id: str = ""
    notes: list[str] = field(default_factory=list)

    def frame_mask(self, i: int) -> np.ndarray:
        """``(gh, gw)`` bool: the hidden patches of frame ``i``."""
        return self.mask[i // self.tubelet]

    @property
    def psnr_per_frame(self) -> np.ndarray:
        """``(T,)`` masked-patch PSNR (dB) per frame; NaN for a frame with nothing hidden."""
        return np.array([masked_psnr(self.prediction[i], self.frames[i], self.frame_mask(i), self.patch_size)
                         for i in range(len(self.frames))])

    @property
    def psnr_masked(self) -> float:
        """Masked-patch PSNR (dB) over the whole clip (mean squared error over every hidden patch of every frame)."""
        return clip_masked_psnr(self.prediction, self.frames, self.mask, self.tubelet, self.patch_size)

    @cached_property
    def baseline_fills(self) -> dict[str, np.ndarray]:
        """The non-learned fills of the same hidden tubelets (:func:`video_baseline_fills`): name → ``(T, S, S, 3)``.
        Computed on first use and kept with the reconstruction (the filmstrip shows them beside the model)."""
        return video_baseline_fills(self.frames, self.mask, self.tubelet, self.patch_size)

    @property
    def fills_to_show(self) -> list[tuple[str, np.ndarray, float]]:
        """The fills worth showing beside the model, as ``(short title, (T, S, S, 3) fill, masked PSNR dB)``: per-frame
        Telea and, unless every hidden patch is hidden in every frame (tube masking, where it is Telea), the copy
        from the nearest visible frame."""
        out = [("Telea (per frame)", self.baseline_fills[TELEA_FRAMES], self.baseline_psnr[TELEA_FRAMES])]
        if (self.mask.any(0) & ~self.mask.all(0)).any():
            out.append(("nearest visible frame", self.baseline_fills[NEAREST], self.baseline_psnr[NEAREST]))
        return out

    @cached_property
    def baseline_psnr(self) -> dict[str, float]:
        """:attr:`baseline_fills` scored as :attr:`psnr_masked`: name → dB."""
        return {name: clip_masked_psnr(f, self.frames, self.mask, self.tubelet, self.patch_size)
                for name, f in self.baseline_fills.items()}


#: Curve names of the video baselines (drawn in the order Telea, mean, nearest: Telea and mean look as in the image app).
NEAREST = "nearest visible frame (else Telea)"
TELEA_FRAMES = "Telea inpainting (per frame)"
MEAN_FRAMES = "mean colour fill (per frame)"


def clip_masked_psnr(pred: np.ndarray, frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int) -> float:
    """Masked-patch PSNR (dB) of ``pred`` over a whole clip: the mean squared error over every hidden patch of every frame.

    Args:
        pred, frames: ``(T, H, W, 3)`` float in [0, 1]; mask: ``(T / tubelet, H / patch, W / patch)`` bool, True = hidden.
    Returns ``nan`` when nothing is hidden.
    """
    errs = np.concatenate([patch_mse(pred[i], frames[i], patch)[mask[i // tubelet]] for i in range(len(frames))])
    return psnr_from_mse(float(errs.mean())) if errs.size else float("nan")


def video_baseline_fills(frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int) -> dict[str, np.ndarray]:
    """The non-learned fills of ``mask`` (those of notebook 06 and the video model card, plus the mean colour):
    :data:`TELEA_FRAMES` (:func:`~explorer.reconstruction.baselines.video_telea_fill`), :data:`MEAN_FRAMES`
    (:func:`~explorer.reconstruction.baselines.video_mean_fill`) and :data:`NEAREST`
    (:func:`~explorer.reconstruction.baselines.nearest_frame_fill`).  Telea runs once per frame and serves the
    first and the last.

    Args:
        frames: ``(T, H, W, 3)`` float in [0, 1]; mask: ``(T / tubelet, H / patch, W / patch)`` bool.
    Returns name → ``(T, H, W, 3)`` float32.
    """
    inpainted = B.video_telea_fill(frames, mask, tubelet, patch)
    return {TELEA_FRAMES: inpainted, MEAN_FRAMES: B.video_mean_fill(frames, mask, tubelet, patch),
            NEAREST: B.nearest_frame_fill(frames, mask, tubelet, patch, inpainted=inpainted)}


def video_baseline_psnr(frames: np.ndarray, mask: np.ndarray, tubelet: int, patch: int) -> dict[str, float]:
    """:func:`clip_masked_psnr` of every fill of :func:`video_baseline_fills`: name → dB.

    Args:
        frames: ``(T, H, W, 3)`` float in [0, 1]; mask: ``(T / tubelet, H / patch, W / patch)`` bool.
    """
    return {name: clip_masked_psnr(f, frames, mask, tubelet, patch)
            for name, f in video_baseline_fills(frames, mask, tubelet, patch).items()}


def sweep_baseline_psnr(recs) -> dict[str, np.ndarray]:
    """The baselines of a ratio sweep of :class:`VideoReconstruction` ``recs`` (in the curve's order): name → ``(R,)`` dB.

    Each reconstruction keeps its own (:attr:`VideoReconstruction.baseline_psnr`), so a cached sweep computes them once.
    """
    per = [r.baseline_psnr for r in recs]
    return {name: np.array([p[name] for p in per], float) for name in (per[0] if per else {})}


def reconstruct_video(model, clip, ratio: float = 0.9, strategy: str = "tube", seed: int = 0, *,
                      fit: str = "center-crop") -> VideoReconstruction:
    """Hide tubelets of ``clip`` and let a ``VideoMAEForPreTraining`` reconstruct them.

    Args:
        model: an adapter from :func:`explorer.load_model` of a ``VideoMAEForPreTraining`` checkpoint.
        clip: a :class:`explorer.video.LoadedVideo` or ``(T, H, W, 3)`` float frames in [0, 1]; ``T`` must be the
            model's ``num_frames`` (load files with ``load_video(..., num_frames=model.num_frames)``).
        ratio: fraction of tubelets hidden; strategy: one of :data:`explorer.masking.video.VIDEO_STRATEGIES`.
    """
    if getattr(model, "reconstructs", None) != "video":
        raise ValueError("reconstruct_video needs a VideoMAEForPreTraining checkpoint (e.g. MCG-NJU/videomae-base).")
    if strategy not in VIDEO_STRATEGIES:
        raise ValueError(f"Unknown video mask strategy {strategy!r}; choose one of {', '.join(VIDEO_STRATEGIES)}.")
    frames = np.asarray(getattr(clip, "frames", clip), np.float32)
    notes = list(getattr(clip, "notes", []) or [])
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Expected frames of shape (T, H, W, 3), got {frames.shape}.")
    if len(frames) != model.num_frames:
        raise ValueError(f"The model reads clips of {model.num_frames} frames, got {len(frames)}: load the video with "
                         f"load_video(..., num_frames={model.num_frames}).")
    fitted = [fit_image(f, model.image_size, fit) for f in frames]
    notes.append(fitted[0].description)
    x = np.stack([f.pixels for f in fitted])
    mask = video_mask((model.time_steps, *model.grid), ratio, strategy, seed)
    pred, loss = model.reconstruct(x, mask)
    if model.model.config.norm_pix_loss:
        notes.append("This checkpoint predicts tubelets normalised by their own mean and variance (norm_pix_loss); "
                     "hidden tubelets are shown de-normalised with their TRUE statistics, as in the VideoMAE figures.")
    return VideoReconstruction(frames=x, mask=mask, prediction=np.clip(pred, 0, 1), loss=loss, ratio=float(ratio),
                               strategy=strategy, seed=int(seed), tubelet=model.tubelet_size, patch_size=model.patch_size,
                               model_id=model.model_id, notes=notes)


#: Generated clips (``"generated:<seed>"``) are this many times the model's clip length, at this frame rate.
GENERATED_LENGTH, GENERATED_FPS = 4, 8.0


def model_clip(adapter, clip, *, sampling: str = "uniform", stride: int = 4, short: str | None = None) -> LoadedVideo:
    """``clip`` sampled to the ``adapter.num_frames`` frames a video model reads.

    Args:
        clip: ``"generated:<seed>"`` (:func:`explorer.data.clips.make_clip`, :data:`GENERATED_LENGTH` × the model's
            clip length at :data:`GENERATED_FPS`, frames of the model's size) or any :func:`load_video` source.
    """
    if isinstance(clip, str) and clip.startswith("generated:"):
        from ..data.clips import make_clip

        c = make_clip(int(clip.split(":", 1)[1]), frames=GENERATED_LENGTH * adapter.num_frames, size=adapter.image_size)
        return load_video(c.frames, num_frames=adapter.num_frames, sampling=sampling, stride=stride, short=short,
                          fps=GENERATED_FPS, name=clip)
    return load_video(clip, num_frames=adapter.num_frames, sampling=sampling, stride=stride, short=short,
                      max_side=reading_side(adapter.image_size))


def reading_side(image_size) -> int:
    """The longer side kept frames are shrunk to while a clip is read: twice the model's input side, so that frames up to
    2:1 still cover the model's square input after a centre crop (memory stays bounded by what the model needs)."""
    size = image_size if isinstance(image_size, int) else max(image_size)
    return 2 * int(size)
