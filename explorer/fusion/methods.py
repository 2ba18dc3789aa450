"""The per-word map methods, as data: one registry serves :func:`~explorer.fusion.align`, the app's
Method dropdown, the figures' titles and the ``word_maps`` export recipe.

    from explorer.fusion.methods import REGISTRY, get_method
    m = get_method("gradcam")
    m.label, m.layer, m.gradients        # "Grad-CAM on cross-attention (ALBEF)", True, True

A method is either *cached* (``build`` turns the one forward + backward of :func:`align` into an array kept
in the :class:`~explorer.fusion.Alignment`) or *on demand* (``compute`` runs per word when asked, and the
Alignment caches the answer).  Adding a method = one :func:`register` call with its function.

Cached arrays: ``(W, gh, gw)``; with ``layer``: ``(layers, W, gh, gw)``; with ``layer`` and ``head``:
``(layers, heads, W, gh, gw)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import attribution, capture, propagation
from .word_methods import word_map_of

#: adapter kinds (:attr:`explorer.models.fusion_base.FusionAdapter.kind`)
ATTENTION_KINDS = ("cross-attention", "single-stream")
ALL_KINDS = ("cross-attention", "single-stream", "dual-encoder")


@dataclass(frozen=True)
class FusionMethod:
    """One way to say which image region a word goes with.

    Attributes:
        name: key everywhere (``Alignment.maps``, dropdown value, recipe option ``method``).
        label: human label (dropdown, figure titles, tables).
        short: a few words for colour bars and file names.
        build: cached methods: ``Captured → array | None`` (``None``: not available for this model).
        compute: on-demand methods: ``(adapter, alignment, word, **options) → (gh, gw)``.
        kinds: the adapter kinds it applies to.
        layer: takes a layer (``None`` = ``default_layer``); head: takes a head (index or ``"mean"``).
        default_layer: with ``layer=None``: ``"mean"`` over layers, or the ``"last"`` one.
        gradients: needs the backward pass.
        diverging: shown on a diverging colour scale around 0 (signed attributions; other maps get one
            only when they have negative values).
        options: its own options and their defaults (e.g. IG ``steps``); recorded in export sidecars.
        matrix: the word × patch matrix's title when this method's maps fill it (the first available one does).
        reference: where it comes from.
    """

    name: str
    label: str
    short: str
    build: Callable | None = None
    compute: Callable | None = None
    kinds: tuple[str, ...] = ATTENTION_KINDS
    layer: bool = False
    head: bool = False
    default_layer: str = "last"
    gradients: bool = False
    diverging: bool = False
    options: dict = field(default_factory=dict)
    matrix: str = ""
    reference: str = ""

    @property
    def on_demand(self) -> bool:
        """Computed per word when asked (slow), not by :func:`align`."""
        return self.build is None

    def applies_to(self, kind: str) -> bool:
        return kind in self.kinds

    def settings(self, *, layer=None, head="mean", **options) -> dict:
        """What this method reads of a view's settings, the others dropped: ``{"layer", "head", **options}``.

        ``layer`` is kept only by methods that take one, ``head`` only by methods that take one (else ``"mean"``),
        ``options`` only for the method's own options (defaults filled in).
        """
        out = {"layer": None if not self.layer or layer is None else int(layer),
               "head": (head if head == "mean" else int(head)) if self.head else "mean"}
        return out | {k: type(v)(options.get(k, v)) for k, v in self.options.items()}

    def describe(self, *, layer=None, head="mean", **options) -> str:
        """Label + the settings it reads: ``"cross-attention (layer, head), layer 2, head 1"``."""
        s = self.settings(layer=layer, head=head, **options)
        where = []
        if self.layer:
            where.append(f"layer {s['layer']}" if s["layer"] is not None else f"{self.default_layer} layer" if self.default_layer == "last"
                         else "mean of layers")
        if self.head:
            where.append("mean of heads" if s["head"] == "mean" else f"head {s['head']}")
        where += [f"{k} {s[k]}" for k in self.options]
        return ", ".join([self.label, *where])


REGISTRY: dict[str, FusionMethod] = {}


def register(method: FusionMethod) -> FusionMethod:
    """Add ``method`` (order of registration = order in menus)."""
    if (method.build is None) == (method.compute is None):
        raise ValueError(f"Method {method.name!r} needs exactly one of build (cached) or compute (on demand).")
    REGISTRY[method.name] = method
    return method


def get_method(name: str) -> FusionMethod:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"Unknown method {name!r}; known: {', '.join(REGISTRY)}.") from None


def methods_for(kind: str) -> list[FusionMethod]:
    """The registered methods that apply to adapters of ``kind``, in menu order."""
    return [m for m in REGISTRY.values() if m.applies_to(kind)]


def method_options() -> dict:
    """Every method's own options with their defaults (what the ``word_maps`` recipe accepts besides layer/head)."""
    out: dict = {}
    for m in REGISTRY.values():
        out |= m.options
    return out


register(FusionMethod("attention", "cross-attention (layer, head)", "attention", build=capture.attention_stack,
                      layer=True, head=True, default_layer="mean", matrix="cross-attention, mean over layers and heads",
                      reference="text→image rows, or image→text columns transposed, of each cross-modal call"))
register(FusionMethod("rollout", "attention rollout (bi-modal)", "rollout", build=propagation.rollout,
                      reference="Chefer, Gur & Wolf, ICCV 2021, eqs. 6–11 on head-mean attention"))
register(FusionMethod("relevance", "gradient relevance (Chefer 2021)", "relevance", build=propagation.relevance,
                      gradients=True, reference="Chefer, Gur & Wolf, ICCV 2021"))
register(FusionMethod("gradcam", "Grad-CAM on cross-attention (ALBEF)", "Grad-CAM", build=capture.gradcam_stack,
                      layer=True, gradients=True, reference="Li et al. 2021 (ALBEF): E_h[A ⊙ (∂s/∂A)⁺] per layer"))
register(FusionMethod("similarity", "token-wise similarity (FILIP)", "similarity", build=capture.similarity,
                      kinds=("dual-encoder",), matrix="token-wise cosine similarity (FILIP)",
                      reference="Yao et al. 2021 (FILIP): cosine of projected patch and word embeddings"))
register(FusionMethod("ig", "Integrated Gradients (captum)", "IG", compute=attribution.ig_word_map, kinds=ALL_KINDS,
                      gradients=True, diverging=True, options={"steps": 16},
                      reference="Sundararajan et al. 2017 over pixels, of s(x, text) − s(x, text without the word)"))
#: captum on the same F(x) = s(x, text) − s(x, text without the word), signed, per patch (explorer.fusion.word_methods)
register(FusionMethod("saliency", "saliency (captum)", "saliency", compute=word_map_of("saliency"), kinds=ALL_KINDS,
                      gradients=True, diverging=True,
                      reference="Simonyan et al. 2014: ∂F/∂x summed per patch, F = s(x, text) − s(x, text without the word)"))
register(FusionMethod("gradient-shap", "GradientSHAP (captum)", "GradientSHAP", compute=word_map_of("gradient-shap"),
                      kinds=ALL_KINDS, gradients=True, diverging=True, options={"samples": 16, "noise": 0.0, "seed": 0},
                      reference="Lundberg & Lee 2017 from the blank image, of F; summed per patch; seeded"))
register(FusionMethod("occlusion", "occlusion, one patch at a time (captum)", "occlusion", compute=word_map_of("occlusion"),
                      kinds=ALL_KINDS, diverging=True,
                      reference="Zeiler & Fergus 2014: F(x) − F(x with the patch blanked), F as for IG"))
register(FusionMethod("smoothgrad", "SmoothGrad (captum NoiseTunnel)", "SmoothGrad", compute=word_map_of("smoothgrad"),
                      kinds=ALL_KINDS, gradients=True, diverging=True,
                      options={"base": "saliency", "samples": 16, "noise": 0.15, "seed": 0, "steps": 16},
                      reference="Smilkov et al. 2017: saliency or IG of F averaged over noisy copies; seeded"))

#: names in menu order, and their labels (kept for ``from explorer.fusion import METHODS, METHOD_NAMES``)
METHODS = tuple(REGISTRY)
METHOD_NAMES = {m.name: m.label for m in REGISTRY.values()}
