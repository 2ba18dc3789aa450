"""Masked reconstruction: the compute layer behind the MAE views.

    model = explorer.load_model("mini-mae")
    result = explorer.reconstruct(model, "chelsea", ratio=0.75, seed=0)
    sweep = explorer.reconstruct_sweep(model, "chelsea", seed=0)      # 19 ratios, one batched pass
    sweep.at(0.5)                                                     # a Reconstruction
    sweep.baseline_psnr                                               # Telea / mean fill on the same masks, (19,) each

Results are plain dataclasses of numpy arrays plus the metadata needed to reproduce them;
they never hold plotly or widget objects.  A :class:`SweepCache` keeps recent sweeps per
(input, fit, model, seed, strategy) so a slider is served without running the model.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..version import __version__
from ..io import LoadedImage, load_image
from ..masking import SWEEP_RATIOS, MaskSpec, make_mask, manual_indices, manual_mask, mask_from_order, masking_order
from ..metrics import masked_psnr, patch_mse, upsample_mask
from ..preprocess import fit_image
from ..data.samples import SAMPLES, load_sample


@dataclass(frozen=True)
class InputInfo:
    """Where the pixels came from and how they were fitted to the model."""

    name: str
    sha256: str
    fit_policy: str
    fit_description: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reconstruction:
    """One masked reconstruction.

    Attributes:
        image: ``(S, S, 3)`` float32 in [0, 1], the model input.
        mask: ``(gh, gw)`` bool, True = hidden.
        prediction: ``(S, S, 3)`` float32 in [0, 1], the decoder's output for every patch.
        patch_size: ``p`` (``S = gh * p``).
        spec: the mask request (strategy, ratio asked for, seed, manual indices).
        model: :class:`explorer.models.ModelInfo`.
        input: :class:`InputInfo`.
        notes: caveats the views must show (e.g. norm-pix-loss de-normalisation).
    """

    image: np.ndarray
    mask: np.ndarray
    prediction: np.ndarray
    patch_size: int
    spec: MaskSpec
    model: Any
    input: InputInfo
    notes: tuple[str, ...] = ()

    @property
    def hidden_fraction(self) -> float:
        """Fraction of patches actually hidden (exact, from the mask)."""
        return float(self.mask.mean())

    @property
    def pixel_mask(self) -> np.ndarray:
        """``(S, S)`` bool, True on hidden pixels."""
        return upsample_mask(self.mask, self.patch_size)

    @property
    def masked_input(self) -> np.ndarray:
        """``(S, S, 3)``: the visible patches, hidden ones grey (what the encoder sees)."""
        out = self.image.copy()
        out[self.pixel_mask] = 0.5
        return out

    @property
    def pasted(self) -> np.ndarray:
        """``(S, S, 3)``: visible patches from the input, hidden ones from the prediction."""
        out = self.image.copy()
        px = self.pixel_mask
        out[px] = self.prediction[px]
        return out

    @property
    def patch_error(self) -> np.ndarray:
        """``(gh, gw)`` float: mean squared error of the prediction per patch (pixel space)."""
        return patch_mse(self.prediction, self.image, self.patch_size).astype(np.float32)

    @property
    def psnr_masked(self) -> float:
        """PSNR (dB) of the prediction over hidden patches; ``nan`` if nothing is hidden."""
        return masked_psnr(self.prediction, self.image, self.mask, self.patch_size)

    def metadata(self) -> dict:
        """Everything needed to regenerate this result (JSON-serialisable)."""
        m = self.model
        return {
            "explorer": __version__,
            "model_id": m.model_id, "model_type": m.model_type, "weights_sha256": m.weights_sha256,
            "device": m.device, "dtype": m.dtype,
            "input_name": self.input.name, "input_sha256": self.input.sha256, "fit": self.input.fit_policy,
            "strategy": self.spec.strategy, "ratio": self.spec.ratio, "seed": self.spec.seed,
            "manual": list(self.spec.manual), "hidden_fraction": self.hidden_fraction,
            "psnr_masked_db": self.psnr_masked,
        }


@dataclass(frozen=True)
class ReconstructionSweep:
    """Reconstructions of one input under nested masks of one (strategy, seed) at many ratios."""

    ratios: tuple[float, ...]
    results: tuple[Reconstruction, ...]
    seconds: float = 0.0

    def at(self, ratio: float) -> Reconstruction:
        """The reconstruction at the sweep ratio nearest to ``ratio``."""
        i = int(np.argmin(np.abs(np.asarray(self.ratios) - float(ratio))))
        return self.results[i]

    @property
    def psnr_curve(self) -> np.ndarray:
        """``(R,)`` masked PSNR per ratio."""
        return np.array([r.psnr_masked for r in self.results])

    @cached_property
    def baseline_psnr(self) -> dict[str, np.ndarray]:
        """Non-learned fills on this sweep's own masks: name → ``(R,)`` masked-patch PSNR (dB) per ratio
        (:func:`explorer.reconstruction.baselines.sweep_baseline_psnr`: Telea inpainting, mean colour of the visible pixels).

        Computed on first use and kept with the sweep, so a cached sweep (:class:`SweepCache`) never recomputes them.
        """
        from .baselines import sweep_baseline_psnr

        first = self.results[0]
        return sweep_baseline_psnr(first.image, [r.mask for r in self.results], first.patch_size)


# ---------------------------------------------------------------------------- inputs
def load_input(image) -> LoadedImage:
    """A sample name, a :class:`LoadedImage`, or anything :func:`explorer.io.load_image` takes → :class:`LoadedImage`."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, str) and image in SAMPLES:
        return load_sample(image)
    return load_image(image)


def as_input(image, fit: str, size: int) -> tuple[np.ndarray, InputInfo]:
    """Any input :func:`load_input` takes → ``((S, S, 3) float32, InputInfo)`` fitted to the model."""
    loaded = load_input(image)
    f = fit_image(loaded.pixels, size, fit)
    return f.pixels, InputInfo(loaded.name, loaded.sha256, fit, f.description, loaded.notes)


def _notes(adapter) -> tuple[str, ...]:
    if adapter.norm_pix_loss:
        return (
            "This checkpoint predicts per-patch-normalised pixels (norm_pix_loss). Hidden patches are "
            "shown de-normalised with the TRUE patch mean and variance, as in the MAE paper's figures: "
            "their brightness and contrast come from the original, so PSNR is optimistic.",
        )
    return ()


def _resolve_any(model):
    """An adapter from an adapter or a name / id / folder (any family)."""
    from ..models import load_model

    return load_model(model) if isinstance(model, str) else model


def _resolve_model(model):
    from ..models import ModelLoadError

    adapter = _resolve_any(model)
    if getattr(adapter, "reconstructs", None) != "image":
        why = getattr(adapter, "no_reconstruction", None)
        raise ModelLoadError(f"{adapter.model_id!r} is not a masked autoencoder of images ({getattr(adapter, 'family', '?')}"
                             f"{': ' + why if why else ''}); masked reconstruction needs a ViTMAE checkpoint such as "
                             "mini-mae or facebook/vit-mae-base.")
    return adapter


def _result(adapter, pixels, mask, pred, spec, info) -> Reconstruction:
    return Reconstruction(
        image=pixels, mask=mask, prediction=np.clip(pred, 0.0, 1.0).astype(np.float32), patch_size=adapter.patch_size,
        spec=spec, model=adapter.info, input=info, notes=_notes(adapter),
    )


# ---------------------------------------------------------------------------- public calls
def reconstruct(model, image, ratio: float = 0.75, seed: int = 0, strategy: str = "random", *,
                manual: "list[int] | tuple[int, ...] | None" = None, fit: str = "center-crop") -> Reconstruction:
    """Hide patches of ``image`` and let the model reconstruct them.

    Args:
        model: an adapter from :func:`explorer.load_model`, or a name / id / folder.
        image: a path, bytes, ``(H, W, 3)`` array, FileUpload value, :class:`LoadedImage` or sample name.
        ratio: fraction hidden (ignored for ``strategy="manual"``).
        seed: seed of the mask.
        strategy: ``"random"``, ``"block"``, ``"grid"`` or ``"manual"`` (then ``manual`` lists
            the flat indices of hidden patches).
        fit: ``"center-crop"``, ``"resize"`` or ``"pad"`` (see :mod:`explorer.preprocess`).
    """
    adapter = _resolve_model(model)
    pixels, info = as_input(image, fit, adapter.image_size)
    spec = MaskSpec(strategy, ratio, seed, manual_indices(manual))
    mask = make_mask(adapter.grid, spec)
    pred = adapter.forward_masks(pixels, mask[None])[0]
    return _result(adapter, pixels, mask, pred, spec, info)


def reconstruct_sweep(model, image, seed: int = 0, strategy: str = "random", *, ratios=SWEEP_RATIOS,
                      fit: str = "center-crop", batch_size: int | None = None) -> ReconstructionSweep:
    """Reconstructions at every ratio of ``ratios`` with nested masks, in batched forwards.

    The masks of one (strategy, seed) are prefixes of one masking order, so the patch hidden
    at 50% is still hidden at 75%.  Equal, to float tolerance, to one forward per ratio.
    """
    adapter = _resolve_model(model)
    pixels, info = as_input(image, fit, adapter.image_size)
    t0 = time.perf_counter()
    order = masking_order(adapter.grid, strategy, seed)
    masks = np.stack([mask_from_order(order, adapter.grid, r) for r in ratios])
    preds = adapter.forward_masks(pixels, masks, batch_size=batch_size)
    results = tuple(
        _result(adapter, pixels, m, p, MaskSpec(strategy, float(r), seed), info) for r, m, p in zip(ratios, masks, preds)
    )
    return ReconstructionSweep(tuple(float(r) for r in ratios), results, time.perf_counter() - t0)


def reconstruct_manual(model, pixels: np.ndarray, info: InputInfo, hidden, seed: int = 0) -> Reconstruction:
    """One forward for a hand-painted mask on already fitted ``pixels`` ``(S, S, 3)``."""
    adapter = _resolve_model(model)
    mask = manual_mask(adapter.grid, hidden)
    spec = MaskSpec("manual", float(mask.mean()), seed, tuple(int(i) for i in np.flatnonzero(mask)))
    pred = adapter.forward_masks(pixels, mask[None])[0]
    return _result(adapter, pixels, mask, pred, spec, info)


class SweepCache:
    """LRU cache of :class:`ReconstructionSweep` keyed by (input sha, fit, model, weights, seed, strategy)."""

    def __init__(self, max_items: int = 16):
        self.max_items = max_items
        self._items: OrderedDict[tuple, ReconstructionSweep] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(adapter, image_sha: str, fit: str, seed: int, strategy: str) -> tuple:
        return (image_sha, fit, adapter.model_id, id(adapter.model), str(adapter.device), str(adapter.dtype), seed, strategy)

    def get(self, adapter, image, seed: int, strategy: str, fit: str = "center-crop") -> ReconstructionSweep:
        """The sweep for these arguments, computed on a miss.  ``image`` as in :func:`reconstruct_sweep`."""
        image = load_input(image)
        k = self.key(adapter, image.sha256, fit, seed, strategy)
        if k in self._items:
            self.hits += 1
            self._items.move_to_end(k)
            return self._items[k]
        self.misses += 1
        sweep = reconstruct_sweep(adapter, image, seed, strategy, fit=fit)
        self._items[k] = sweep
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return sweep

    def __len__(self) -> int:
        return len(self._items)
