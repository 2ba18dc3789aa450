"""The per-patch explanation methods of image and video models, as data: one registry serves
:func:`~explorer.attention.explain`, the attention app's menus, the ``attention_methods`` export recipe and the notebooks.

    from explorer.attention.registry import REGISTRY, get_method
    m = get_method("occlusion")
    m.label, m.signed, m.options          # "occlusion, one patch at a time (captum)", True, {}

A method is a function ``compute(inputs: Inputs, **options) -> Explained`` with its label, short name, own options
(with defaults; recorded in :attr:`Relevance.options <explorer.attention.Relevance>` and export sidecars), reference,
and whether its map is signed.  Adding a method = one :func:`register` call.

Every map has the layout's grid shape: ``(gh, gw)``, video ``(t, gh, gw)`` (one value per tubelet); prefix tokens
(CLS, registers, distillation) are never in it.  Methods that explain a target (``target=True``) are given the class
picked **once on the real input** (:meth:`~explorer.models.base.ImageAdapter.pick_target`), never re-picked on
the other points they run the model on (integrated gradients' path, noisy, occluded or baseline copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .. import attribution as AT
from ..models.layout import TokenLayout
from .capture import AttentionCapture, AttentionError
from .methods import FUSIONS, RelevanceAccumulator, RolloutAccumulator


@dataclass(frozen=True)
class Inputs:
    """What a method function is given.

    Attributes:
        adapter: the image / video adapter (layout, forward, target).
        layout: its :class:`~explorer.models.layout.TokenLayout`.
        x: normalised input ``(1, 3, H, W)``, video ``(1, T, 3, H, W)``.
        target: the class explained, picked once on ``x`` (``None`` for models without labels).
        query: the token whose row rollout / relevance show.
        layers: layer indices rollout / relevance are restricted to (``None``: all).
    """

    adapter: Any
    layout: TokenLayout
    x: torch.Tensor
    target: "int | None"
    query: Any = "cls"
    layers: Any = None

    def score(self, xs: torch.Tensor) -> torch.Tensor:
        """Normalised inputs ``(B, ...)`` → ``(B,)``: the scalar explained, with the class fixed."""
        return self.adapter.relevance_target(xs, self.target).float()

    @property
    def tubelet(self) -> int:
        return self.layout.tubelet if self.layout.is_video else 1


@dataclass(frozen=True)
class Explained:
    """What a method function returns.

    Attributes:
        map: ``layout.grid``-shaped float32.
        matrix: ``(T, T)`` token-to-token matrix where the method has one (rollout, relevance).
        path: how attention was captured (attention methods).
        record: what the method chose besides its options (e.g. the noise's standard deviation), recorded too.
    """

    map: np.ndarray
    matrix: "np.ndarray | None" = None
    path: str = ""
    record: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImageMethod:
    """One way to say which patches an image (or video) model's output depends on.

    Attributes:
        name: key everywhere (``explain(model, image, name)``, dropdown values, recipe option ``methods``).
        label: human label (app panel titles, dropdowns).
        short: a few words (export panel titles, colour bars).
        compute: ``(Inputs, **options) -> Explained``; ``None`` for ``raw`` (per layer and head, from
            :func:`~explorer.attention.attention_maps`).
        options: its own options with their defaults.
        signed: the map has a sign (positive: the patch supports the output); otherwise it is >= 0.
        target: explains a class / output scalar (the class is picked once and recorded).
        query: shows one query token's row (rollout, relevance).
        stochastic: random draws, seeded by its ``seed`` option.
        reference: where it comes from.
    """

    name: str
    label: str
    short: str
    compute: "Callable | None" = None
    options: dict = field(default_factory=dict)
    signed: bool = False
    target: bool = True
    query: bool = False
    stochastic: bool = False
    reference: str = ""

    def settings(self, **options) -> dict:
        """This method's own options from ``options`` (others dropped), defaults filled in, types kept."""
        return {k: type(v)(options[k]) if options.get(k) is not None else v for k, v in self.options.items()}


REGISTRY: dict[str, ImageMethod] = {}


def register(method: ImageMethod) -> ImageMethod:
    """Add ``method`` (order of registration = order in menus)."""
    if method.stochastic and "seed" not in method.options:
        raise ValueError(f"Method {method.name!r} draws random numbers: give it a 'seed' option.")
    REGISTRY[method.name] = method
    return method


def get_method(name: str) -> ImageMethod:
    """The registry entry of ``name``.

    Raises:
        AttentionError: an unknown name, listing the known ones.
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise AttentionError(f"Unknown method {name!r}; choose from {', '.join(REGISTRY)}.") from None


def explainable() -> list[str]:
    """Names :func:`~explorer.attention.explain` computes (all but ``raw``), in menu order."""
    return [n for n, m in REGISTRY.items() if m.compute is not None]


def option_defaults() -> dict:
    """Every method's own options with their defaults (what :func:`~explorer.attention.explain` accepts)."""
    out: dict = {}
    for m in REGISTRY.values():
        out |= m.options
    return out


# ---------------------------------------------------------------------------- attention methods
def _rollout(inp: Inputs, *, fusion: str, discard: float, residual: bool) -> Explained:
    """Rollout over the captured attention, one layer at a time."""
    acc = RolloutAccumulator(fusion=fusion, discard=discard, residual=residual, layers=inp.layers)
    with torch.no_grad(), AttentionCapture(inp.adapter.attention_module, on_forward=lambda c: acc.update(c.probs[0])) as cap:
        inp.adapter.attention_forward(inp.x)
    return _row(inp, acc, cap)


def _relevance(inp: Inputs) -> Explained:
    """Chefer et al. 2021: gradient-weighted attention, accumulated from the last layer down."""
    acc = RelevanceAccumulator(layers=inp.layers)
    with torch.enable_grad(), AttentionCapture(inp.adapter.attention_module, gradients=True,
                                               on_backward=lambda c: acc.update(c.probs[0], c.grad[0], c.index)) as cap:
        inp.score(inp.x.detach().clone()).sum().backward()
    inp.adapter.model.zero_grad(set_to_none=True)
    return _row(inp, acc, cap)


def _row(inp: Inputs, acc, cap) -> Explained:
    if acc.result is None:
        raise AttentionError("No attention was captured from this model.")
    matrix = acc.result.cpu().numpy()
    return Explained(inp.layout.patch_map(inp.layout.row(matrix, inp.query)), matrix, ",".join(sorted(cap.paths)))


# ---------------------------------------------------------------------------- captum methods on the input pixels
def _integrated_gradients(inp: Inputs, *, steps: int) -> Explained:
    return Explained(AT.integrated_gradients_patches(inp.score, inp.x, inp.layout.patch_size, steps=steps,
                                                     tubelet=inp.tubelet))


def _saliency(inp: Inputs) -> Explained:
    return Explained(AT.saliency_patches(inp.score, inp.x, inp.layout.patch_size, tubelet=inp.tubelet))


def _noise_stdev(x: torch.Tensor, noise: float) -> float:
    """SmoothGrad's noise level: ``noise`` × the input's range (max − min), in normalised units."""
    return float(noise) * float(x.max() - x.min())


def _gradient_shap(inp: Inputs, *, samples: int, noise: float, seed: int) -> Explained:
    sd = _noise_stdev(inp.x, noise)
    m = AT.gradient_shap_patches(inp.score, inp.x, inp.layout.patch_size, samples=samples, stdev=sd, seed=seed,
                                 tubelet=inp.tubelet)
    return Explained(m, record={"stdev": sd, "baselines": "zeros (dataset mean colour) and the input's mean colour"})


def _occlusion(inp: Inputs) -> Explained:
    return Explained(AT.occlusion_patches(inp.score, inp.x, inp.layout.patch_size, tubelet=inp.tubelet),
                     record={"baseline": "the input's mean colour", "window": "one patch (video: one tubelet)"})


def _smoothgrad(inp: Inputs, *, base: str, samples: int, noise: float, seed: int, steps: int) -> Explained:
    if base not in SMOOTHGRAD_BASES:
        raise AttentionError(f"SmoothGrad runs over {' or '.join(SMOOTHGRAD_BASES)}, not {base!r}.")
    sd = _noise_stdev(inp.x, noise)
    m = AT.smoothgrad_patches(inp.score, inp.x, inp.layout.patch_size, base=base, samples=samples, stdev=sd, seed=seed,
                              steps=steps, tubelet=inp.tubelet)
    return Explained(m, record={"stdev": sd})


SMOOTHGRAD_BASES = ("saliency", "integrated-gradients")


# ---------------------------------------------------------------------------- Grad-CAM on the last block's input tokens
class _TokenGrid(torch.nn.Module):
    """Identity on ``(B, D, *grid)``: the layer captum's LayerGradCam watches (tokens as channels × grid)."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return g


def gradcam_layer(adapter, layout: TokenLayout):
    """``(grid module, hook handle)``: the tokens entering the adapter's last block, rerouted through a
    :class:`_TokenGrid` as ``(B, D, *layout.grid)`` (prefix tokens passed around it); remove the handle when done."""
    block = adapter.blocks[-1]
    grid = _TokenGrid()
    P = layout.prefix

    def pre(_mod, args, kwargs):
        if args:
            h, rest = args[0], args[1:]
        else:
            key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
            h = kwargs[key]
        B, _T, D = h.shape
        g = grid(h[:, P:].transpose(1, 2).reshape(B, D, *layout.grid))
        h2 = torch.cat([h[:, :P], g.flatten(2).transpose(1, 2)], 1)
        return ((h2, *rest), kwargs) if args else (args, {**kwargs, key: h2})

    return grid, block.register_forward_pre_hook(pre, with_kwargs=True)


def _gradcam(inp: Inputs) -> Explained:
    """captum's LayerGradCam on the tokens entering the last block.

    The last block's *output* patch tokens get no gradient in models that read only the CLS token (ViT, DeiT, CLIP,
    the MAE encoder's CLS): Grad-CAM there would be zero.  The tokens entering the last block (the output of the block
    before, as the usual ViT Grad-CAM uses) do feed the CLS token through the last block's attention.
    """
    from captum.attr import LayerGradCam

    grid, handle = gradcam_layer(inp.adapter, inp.layout)
    try:
        with torch.enable_grad():
            cam = LayerGradCam(inp.score, grid).attribute(inp.x.float().requires_grad_(True), relu_attributions=True)
    finally:
        handle.remove()
        inp.adapter.model.zero_grad(set_to_none=True)
    return Explained(cam.detach()[0, 0].float().cpu().numpy().astype(np.float32),
                     record={"layer": f"input of block {len(inp.adapter.blocks) - 1} (the last)"})


# ---------------------------------------------------------------------------- the registry
register(ImageMethod("raw", "raw attention (layer, head)", "raw", target=False, query=True,
                     reference="one layer's and head's attention row; attention_maps(...).query_map(layer, head, query)"))
register(ImageMethod("rollout", "rollout", "rollout", _rollout,
                     options={"fusion": "mean", "discard": 0.0, "residual": True}, target=False, query=True,
                     reference=f"Abnar & Zuidema 2020; head fusion one of {FUSIONS}"))
register(ImageMethod("relevance", "relevance (Chefer 2021)", "relevance", _relevance, query=True,
                     reference="Chefer, Gur & Wolf, CVPR 2021: R ← R + E_h[(∇A ⊙ A)⁺]·R"))
register(ImageMethod("integrated-gradients", "integrated gradients (captum)", "integrated gradients",
                     _integrated_gradients, options={"steps": 32},
                     reference="Sundararajan et al. 2017, zero baseline (the dataset mean colour); Σ|attribution| per patch"))
register(ImageMethod("saliency", "saliency (captum)", "saliency", _saliency,
                     reference="Simonyan et al. 2014: Σ|∂f/∂x| per patch"))
register(ImageMethod("gradient-shap", "GradientSHAP (captum)", "GradientSHAP", _gradient_shap,
                     options={"samples": 16, "noise": 0.0, "seed": 0}, signed=True, stochastic=True,
                     reference="Lundberg & Lee 2017; baselines: zeros and the input's mean colour; Σ attribution per patch"))
register(ImageMethod("occlusion", "occlusion, one patch at a time (captum)", "occlusion", _occlusion, signed=True,
                     reference="Zeiler & Fergus 2014: f(x) − f(x with the patch in the input's mean colour)"))
register(ImageMethod("smoothgrad", "SmoothGrad (captum NoiseTunnel)", "SmoothGrad", _smoothgrad,
                     options={"base": "saliency", "samples": 16, "noise": 0.15, "seed": 0, "steps": 32}, stochastic=True,
                     reference="Smilkov et al. 2017: saliency or IG averaged over noisy copies (noise × the input's range)"))
register(ImageMethod("gradcam", "Grad-CAM, tokens entering the last block (captum)", "Grad-CAM", _gradcam,
                     reference="Selvaraju et al. 2017 via captum LayerGradCam on the last block's input tokens as a "
                               "(D, grid) map; ReLU"))

#: names in menu order (``raw`` first; kept for ``from explorer.attention import METHODS``)
METHODS = tuple(REGISTRY)
