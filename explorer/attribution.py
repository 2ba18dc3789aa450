"""Thin wrappers over captum's attribution methods, returning per-patch maps.

Every function takes ``fn``, normalised pixels → scores, and the real input ``x``:

* ``fn(xs)`` returns ``(B,)`` (one scalar per input: the target is already fixed), or ``(B, C)`` outputs, of which
  ``target`` is explained; ``target=None`` is the top output **of the real input**, picked once by
  :func:`pick_target` before captum runs (captum's internal batches mix the input, its baseline and the points
  between them: picking the class inside ``fn`` would re-pick it along the way and explain no class at all);
* ``x`` is ``(1, 3, H, W)`` (an image; any ``H``, ``W`` that the patch size divides) or ``(1, T, 3, H, W)`` (a video,
  ``tubelet`` frames per token);
* the map is ``(H / p, W / p)``, video ``(T / tubelet, H / p, W / p)`` float32.

Maps are reduced per patch by :func:`patch_map`: ``"abs"`` sums ``|attribution|`` over a patch's pixels and channels
(and frames), ``"sum"`` keeps the sign, ``"mean"`` is the per-element mean (occlusion spreads one number over a window).
Stochastic methods (GradientSHAP, SmoothGrad) take a ``seed``: torch's and numpy's generators are seeded inside a
local fork, so the same seed gives the same map and the caller's random state is left as it was.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch

#: noisy copies per batch of NoiseTunnel (IG multiplies each by its steps)
NT_BATCH = {"saliency": 4, "integrated-gradients": 1}

#: how :func:`patch_map` reduces a patch: Σ|a|, Σ a, or the mean of a
REDUCTIONS = ("abs", "sum", "mean")


# ---------------------------------------------------------------------------- plumbing
def patch_map(attr: torch.Tensor, patch_size: int, *, tubelet: int = 1, reduce: str = "abs") -> np.ndarray:
    """Per-pixel attributions ``(1, 3, H, W)`` / ``(1, T, 3, H, W)`` → ``(gh, gw)`` / ``(T / tubelet, gh, gw)`` float32.

    ``reduce``: ``"abs"`` Σ|a|, ``"sum"`` Σ a, ``"mean"`` mean of a, over each patch's channels and pixels (and frames).
    Non-square grids are fine (``gh = H / p``, ``gw = W / p``).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}.")
    a = attr.detach().float()[0]
    a = a.abs() if reduce == "abs" else a
    a = a.sum(-3).cpu().numpy()  # channels: (H, W), video (T, H, W)
    p = int(patch_size)
    H, W = a.shape[-2:]
    if H % p or W % p:
        raise ValueError(f"A {H}x{W} input does not split into {p}x{p} patches.")
    gh, gw = H // p, W // p
    if a.ndim == 3:
        T = a.shape[0]
        if T % tubelet:
            raise ValueError(f"{T} frames do not split into tubelets of {tubelet}.")
        out = a.reshape(T // tubelet, tubelet, gh, p, gw, p).sum((1, 3, 5))
        n = tubelet * p * p * attr.shape[-3]
    else:
        out = a.reshape(gh, p, gw, p).sum((1, 3))
        n = p * p * attr.shape[-3]
    return (out / n if reduce == "mean" else out).astype(np.float32)


def pick_target(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: "int | None" = None) -> "int | None":
    """The output explained, picked once on the real input ``x``: ``None`` when ``fn`` gives one scalar per input,
    else ``target`` (checked) or the top output of ``x``.

    Raises:
        ValueError: ``target`` out of range.
    """
    with torch.no_grad():
        out = fn(x)
    if out.dim() == 1:
        return None
    t = int(out[0].argmax()) if target is None else int(target)
    if not 0 <= t < out.shape[-1]:
        raise ValueError(f"Target {t} is out of range 0..{out.shape[-1] - 1}.")
    return t


def _scalar(fn: Callable, x: torch.Tensor, target: "int | None") -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` with its target fixed once (see :func:`pick_target`): inputs ``(B, ...)`` → ``(B,)`` float."""
    t = pick_target(fn, x, target)
    if t is None:
        return lambda inp: fn(inp).float()
    return lambda inp: fn(inp)[:, t].float()


@contextlib.contextmanager
def seeded(seed: int, device=None):
    """Seed torch (CPU, and ``device``'s CUDA generator) and numpy for the block; their states are restored after.

    captum draws GradientSHAP's points with numpy and noise / baselines with torch and numpy.
    """
    devices = [device] if device is not None and str(device).startswith("cuda") else []
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed) % 2**32)
            yield
    finally:
        np.random.set_state(state)


def mean_colour(x: torch.Tensor) -> torch.Tensor:
    """The input's mean colour per channel, broadcast to ``x``'s shape (video: over the whole clip)."""
    dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)
    return x.mean(dim=dims, keepdim=True).expand_as(x).contiguous()


# ---------------------------------------------------------------------------- methods
def integrated_gradients_patches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, patch_size: int, *,
                                 steps: int = 32, baseline: torch.Tensor | None = None, tubelet: int = 1,
                                 target: "int | None" = None, reduce: str = "abs") -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017, captum) summed per patch.

    Args:
        fn: normalised pixels ``(B, 3, H, W)`` (video ``(B, T, 3, H, W)``) → ``(B,)`` or ``(B, C)`` (see the module).
        x: ``(1, 3, H, W)`` normalised input, or a video ``(1, T, 3, H, W)``.
        baseline: same shape as ``x``; default zeros (the dataset mean colour after normalisation).
        tubelet: frames per video token.
        target: output explained when ``fn`` gives ``(B, C)``; default the top output of ``x`` (picked once).
        reduce: ``"abs"`` (default) ``Σ |attribution|`` per patch, or ``"sum"`` (signed; the map then sums to
            ``f(x) − f(baseline)`` up to the integration error).
    Returns:
        ``(gh, gw)`` float32 (video: ``(T / tubelet, gh, gw)``).
    """
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(_scalar(fn, x, target))
    base = torch.zeros_like(x) if baseline is None else baseline
    with torch.enable_grad():
        attr = ig.attribute(x.float().requires_grad_(True), baselines=base.float(), n_steps=int(steps),
                            internal_batch_size=min(int(steps), 16))
    return patch_map(attr, patch_size, tubelet=tubelet, reduce=reduce)


def saliency_patches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, patch_size: int, *, tubelet: int = 1,
                     target: "int | None" = None, absolute: bool = True) -> np.ndarray:
    """Saliency (Simonyan et al. 2014, captum ``Saliency``): ``Σ |∂f/∂x|`` per patch, ``(gh, gw)`` float32
    (``absolute=False``: the signed gradient summed per patch)."""
    from captum.attr import Saliency

    with torch.enable_grad():
        attr = Saliency(_scalar(fn, x, target)).attribute(x.float().requires_grad_(True), abs=bool(absolute))
    return patch_map(attr, patch_size, tubelet=tubelet, reduce="abs" if absolute else "sum")


def gradient_shap_patches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, patch_size: int, *,
                          baselines: torch.Tensor | None = None, samples: int = 16, stdev: float = 0.0, seed: int = 0,
                          tubelet: int = 1, target: "int | None" = None, reduce: str = "sum") -> np.ndarray:
    """GradientSHAP (Lundberg & Lee 2017, captum ``GradientShap``), per patch; signed by default.

    Args:
        baselines: ``(K, ...)`` the reference distribution (default: zeros, the dataset mean colour, and the input's
            own mean colour, ``K = 2``).
        samples: random points (baseline drawn, a point on its path, Gaussian noise of ``stdev``) averaged.
        stdev: noise added to the input, in normalised units.
        seed: torch and numpy are seeded with it in a local fork.
    Returns:
        ``(gh, gw)`` float32, ``Σ attribution`` per patch (positive: the patch raises the output).
    """
    from captum.attr import GradientShap

    base = torch.cat([torch.zeros_like(x), mean_colour(x)]) if baselines is None else baselines
    with torch.enable_grad(), seeded(seed, x.device):
        attr = GradientShap(_scalar(fn, x, target)).attribute(x.float().requires_grad_(True), baselines=base.float(),
                                                                n_samples=int(samples), stdevs=float(stdev))
    return patch_map(attr, patch_size, tubelet=tubelet, reduce=reduce)


def occlusion_patches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, patch_size: int, *,
                      baseline: torch.Tensor | None = None, tubelet: int = 1, target: "int | None" = None,
                      batch: int = 16) -> np.ndarray:
    """Occlusion (Zeiler & Fergus 2014, captum ``Occlusion``): each patch (video: tubelet) in turn is replaced by
    ``baseline`` (default: the input's mean colour); windows and strides are the patch grid, so windows never overlap.

    Returns:
        ``(gh, gw)`` float32: ``f(x) − f(x with that patch occluded)`` (signed: positive = the patch supports the output).
    """
    from captum.attr import Occlusion

    p = int(patch_size)
    window = (3, p, p) if x.dim() == 4 else (int(tubelet), 3, p, p)
    base = mean_colour(x) if baseline is None else baseline
    with torch.no_grad():
        attr = Occlusion(_scalar(fn, x, target)).attribute(x.float(), sliding_window_shapes=window, strides=window,
                                                           baselines=base.float(), perturbations_per_eval=int(batch))
    return patch_map(attr, p, tubelet=tubelet, reduce="mean")


def smoothgrad_patches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, patch_size: int, *,
                       base: str = "saliency", samples: int = 16, stdev: float = 0.15, seed: int = 0, steps: int = 16,
                       tubelet: int = 1, target: "int | None" = None, absolute: bool = True,
                       baseline: torch.Tensor | None = None) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017, captum ``NoiseTunnel(nt_type="smoothgrad")``) over Saliency or Integrated
    Gradients: the attribution averaged over ``samples`` noisy copies of ``x`` (Gaussian, ``stdev`` in normalised
    units; IG from ``baseline``, default zeros, with ``steps``).

    Returns:
        ``(gh, gw)`` float32, ``Σ |mean attribution|`` per patch (``absolute=False``: signed gradients / IG, ``Σ``).
    """
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    f = _scalar(fn, x, target)
    if base == "saliency":
        method, kw = Saliency(f), {"abs": bool(absolute)}
    elif base == "integrated-gradients":
        b = torch.zeros_like(x) if baseline is None else baseline
        method, kw = IntegratedGradients(f), {"n_steps": int(steps), "internal_batch_size": min(int(steps), 16),
                                              "baselines": b.float()}
    else:
        raise ValueError(f"SmoothGrad runs over 'saliency' or 'integrated-gradients', not {base!r}.")
    with torch.enable_grad(), seeded(seed, x.device):
        attr = NoiseTunnel(method).attribute(x.float().requires_grad_(True), nt_type="smoothgrad", nt_samples=int(samples),
                                             nt_samples_batch_size=NT_BATCH[base], stdevs=float(stdev),
                                             **kw)
    return patch_map(attr, patch_size, tubelet=tubelet, reduce="abs" if absolute else "sum")
