"""Builders for image, attention, image+text and multimodal figures (registered with :func:`.registry.recipe`).

Video recipes live in :mod:`.video_recipes`; importing :mod:`explorer.export` registers both.
"""

from __future__ import annotations

import plotly.graph_objects as go

from ..masking.image import STRATEGIES
from ..preprocess import POLICIES
from ..viz.notes import attach_notes
from .registry import (RECIPES, SEED, SHA256_OR_NONE, AnyOf, Bool, Choice, DictOf, Fields, Int, ListOf,  # noqa: F401
                       Num, Recipe, StoredPath, Text, get_recipe, input_folder, input_path, options_for, recipe)

# ---------------------------------------------------------------------------- option schemas shared by recipes
#: Bounds keep what a sidecar can ask for to the size of a paper figure: a few seconds and a few hundred MB.
RATIO = Num(0.0, 1.0)
RATIOS = ListOf(RATIO, max_len=16, min_len=1)
FIT = Choice(POLICIES)
STRATEGY = Choice(STRATEGIES)
COLORSCALE = Text(40, r"[A-Za-z][A-Za-z0-9]*(_r)?", what="a plotly colour-scale name (e.g. Viridis)")
OPACITY = Num(0.0, 1.0)
LAYER = Int(0, 255)
HEAD = AnyOf((Choice(("mean",)), Int(0, 255)))
#: A query token: a prefix token's name ("cls", "mean" for all tokens), a patch index, or a patch's coordinates.
QUERY = AnyOf((Text(16, r"[A-Za-z_]+", what="a token name"), Int(0, 1_000_000), ListOf(Int(0, 100_000), 3, 2)), none=True)

# ---------------------------------------------------------------------------- MAE recipes
COMPACT_PANELS = ("Original", "Masked", "Reconstruction", "Recon. + visible", "Error (MSE)")


@recipe("reconstruction", defaults=dict(ratio=0.75, seed=0, strategy="random", manual=[], fit="center-crop",
                                        error_max=None, compact=True, min_side=224),
        schema=dict(ratio=RATIO, seed=SEED, strategy=STRATEGY, manual=ListOf(Int(0, 65_535), 16_384), fit=FIT,
                    error_max=Num(0.0, 1000.0, none=True), compact=Bool(), min_side=Int(0, 2048)))
def _reconstruction(adapter, images, o) -> go.Figure:
    """One input: original | masked | reconstruction | reconstruction + visible | error map."""
    from ..reconstruction import reconstruct

    rec = reconstruct(adapter, images[0], ratio=float(o["ratio"]), seed=int(o["seed"]), strategy=o["strategy"],
                      manual=o["manual"], fit=o["fit"])
    return reconstruction_view(rec, o)


def reconstruction_view(rec, o: dict) -> go.Figure:
    """The ``reconstruction`` recipe's figure for an already computed :class:`explorer.Reconstruction`."""
    from ..viz.mae import reconstruction_figure

    fig = reconstruction_figure(rec, error_max=o["error_max"], min_side=int(o["min_side"]))
    if o["compact"]:
        pct = f"{100 * rec.hidden_fraction:.0f}%"
        titles = list(COMPACT_PANELS)
        titles[1] = f"Masked {pct}"
        for ann, t in zip(fig.layout.annotations, titles):
            ann.text = t
    return fig


@recipe("reconstruction_grid", n_inputs="many", letters=False,
        defaults=dict(ratios=[0.5, 0.75, 0.9], seed=0, strategy="random", fit="center-crop", show="pasted", cell=150),
        schema=dict(ratios=RATIOS, seed=SEED, strategy=STRATEGY, fit=FIT, show=Choice(("pasted", "prediction", "masked")),
                    cell=Int(16, 1024)))
def _reconstruction_grid(adapter, images, o) -> go.Figure:
    """MAE-paper style grid: one row per input, columns = original and each masking ratio."""
    from ..reconstruction import reconstruct_sweep
    from ..viz.mae import reconstruction_grid

    rows = []
    for im in images:
        sweep = reconstruct_sweep(adapter, im, seed=int(o["seed"]), strategy=o["strategy"],
                                  ratios=tuple(float(r) for r in o["ratios"]), fit=o["fit"])
        rows.append((im.name, list(sweep.results)))
    return reconstruction_grid(rows, show=o["show"], cell=int(o["cell"]))


@recipe("error_strip", defaults=dict(ratios=[0.5, 0.75, 0.9], seed=0, strategy="random", fit="center-crop", opacity=0.75),
        schema=dict(ratios=RATIOS, seed=SEED, strategy=STRATEGY, fit=FIT, opacity=OPACITY))
def _error_strip(adapter, images, o) -> go.Figure:
    """One input: the image, then its per-patch reconstruction error at each ratio on one shared colour scale."""
    import numpy as np

    from ..reconstruction import reconstruct_sweep
    from ..viz.maps import map_strip

    sweep = reconstruct_sweep(adapter, images[0], seed=int(o["seed"]), strategy=o["strategy"],
                              ratios=tuple(float(r) for r in o["ratios"]), fit=o["fit"])
    maps = {f"{100 * r.hidden_fraction:.0f}% hidden": np.where(r.mask, r.patch_error, np.nan) for r in sweep.results}
    fig = map_strip(sweep.results[0].image, maps, opacity=float(o["opacity"]), colorbar_title="MSE", zmin=0.0)
    return attach_notes(fig, [n for r in sweep.results for n in (*r.input.notes, *r.notes)])


# ---------------------------------------------------------------------------- attention recipes
def _fusion_methods() -> tuple:
    """Names of the fusion method registry (looked up when a ``word_maps`` sidecar is checked)."""
    from ..fusion.methods import REGISTRY

    return tuple(REGISTRY)


@recipe("attention_grid", defaults=dict(query=None, layers=None, heads=None, fit="center-crop", colorscale="Viridis"),
        schema=dict(query=QUERY, layers=ListOf(LAYER, 64, 1, none=True), heads=ListOf(HEAD, 64, 1, none=True), fit=FIT,
                    colorscale=COLORSCALE),
        letters=False)
def _attention_grid(adapter, images, o) -> go.Figure:
    """One input: layers × heads attention maps of one query token on one shared colour scale."""
    from ..attention import attention_maps
    from ..viz.attention import attention_grid

    maps = attention_maps(adapter, images[0], fit=o["fit"])
    query = maps.layout.default_query if o["query"] is None else o["query"]  # None: "cls", or "mean" without one
    return attention_grid(maps, query, layers=o["layers"], heads=o["heads"], colorscale=o["colorscale"])


def _image_methods() -> tuple:
    """Names of the image / video method registry (looked up when an ``attention_methods`` sidecar is checked)."""
    from ..attention.registry import REGISTRY

    return tuple(REGISTRY)


#: the ``attention_methods`` panels when ``methods`` is not given (the figure before the method registry)
DEFAULT_PANELS = ("raw", "rollout", "relevance", "integrated-gradients")
#: own options of the captum methods a sidecar may set (each method reads its own; see explorer.attention.registry)
CAPTUM_OPTIONS = {"samples": Int(1, 64), "noise": Num(0.0, 1.0), "seed": SEED,
                  "base": Choice(("saliency", "integrated-gradients"))}
IMAGE_METHOD_OPTIONS = Fields(CAPTUM_OPTIONS, none=True)


@recipe("attention_methods", defaults=dict(query=None, layer=0, head="mean", fusion="mean", discard=0.0, residual=True,
                                           steps=16, fit="center-crop", methods=None, target=None, method_options=None),
        schema=dict(query=QUERY, layer=LAYER, head=HEAD, fusion=Choice(("mean", "max", "min")), discard=Num(0.0, 0.99),
                    residual=Bool(), steps=Int(1, 128), fit=FIT, methods=ListOf(Choice(_image_methods), 16, 1, none=True),
                    target=Int(0, 1_000_000, none=True), method_options=IMAGE_METHOD_OPTIONS))
def _attention_methods(adapter, images, o) -> go.Figure:
    """One input: per-patch maps side by side; by default raw attention (one layer / head), rollout, relevance and
    integrated gradients, or the registry's ``methods`` in the order given.

    ``target``: the class explained (default: the class predicted for the input, picked once); ``method_options``: the
    captum methods' own options (``samples``, ``noise``, ``seed``, ``base``; defaults from the registry).
    """
    from ..attention import attention_maps, explain
    from ..attention.registry import get_method
    from ..viz.attention import method_row

    im = images[0]
    maps = attention_maps(adapter, im, fit=o["fit"])
    query = maps.layout.default_query if o["query"] is None else o["query"]
    kw = dict(query=query, fit=o["fit"], fusion=o["fusion"], discard=float(o["discard"]), residual=bool(o["residual"]),
              steps=int(o["steps"]), target=o["target"], **(o["method_options"] or {}))
    row = {}
    for name in o["methods"] or DEFAULT_PANELS:
        if name == "raw":
            row[f"raw L{o['layer']} {o['head']}"] = maps.query_map(int(o["layer"]), o["head"], query)
        else:
            row[get_method(name).short] = explain(adapter, im, name, **kw).map
    return method_row(maps.image, row)


@recipe("word_maps", family="fusion", defaults=dict(text="", method="relevance", word=None, patch=None, layer=None, head="mean",
                                                   method_options=None, fit="center-crop", colorscale="Viridis", opacity=0.6),
        schema=dict(text=Text(1000), method=Choice(_fusion_methods), word=Int(0, 4095, none=True),
                    patch=AnyOf((Int(0, 1_000_000), ListOf(Int(0, 100_000), 3, 2)), none=True),
                    layer=Int(0, 255, none=True), head=HEAD, method_options=Fields({"steps": Int(1, 64), **CAPTUM_OPTIONS}, none=True),
                    fit=FIT, colorscale=COLORSCALE, opacity=OPACITY))
def _word_maps(adapter, images, o) -> go.Figure:
    """Image+text models: one word's map over the image as the fusion app shows it, or every word's map (``word=None``).

    ``method`` is a name of the fusion method registry; ``layer`` / ``head`` / ``method_options`` (e.g. IG ``steps``,
    default: the registry's) are read by the methods that take them; ``patch`` outlines a patch.
    """
    from ..fusion import align, get_method
    from ..viz.fusion import word_strip, word_view

    al = align(adapter, images[0], o["text"], fit=o["fit"])
    m = get_method(o["method"])
    s = m.settings(layer=o["layer"], head=o["head"], **(o["method_options"] or {}))
    words = range(len(al.words)) if o["word"] is None else [int(o["word"])]
    for w in words:  # on-demand methods (IG) run here, with the model; the figures only read the maps
        al.word_map(m.name, w, adapter=adapter, **s)
    if o["word"] is None:
        return attach_notes(word_strip(al, m.name, colorscale=o["colorscale"], opacity=o["opacity"], **s), al.notes)
    return attach_notes(word_view(al, int(o["word"]), m.name, patch=o["patch"], colorscale=o["colorscale"],
                                  opacity=o["opacity"], interactive=False, **s), al.notes)


# ---------------------------------------------------------------------------- multimodal MAE recipe
MODALITY = Text(32, r"[a-z][a-z0-9_-]*", what="a modality name (rgb, depth, video, audio…)")


@recipe("multimodal", n_inputs="none", family="multimodal", letters=False,
        defaults=dict(sample=None, arrays=None, arrays_sha256=None, budgets=None, total=None, seed=0, strategy=None, frame=0),
        schema=dict(sample=Text(40, r"[a-z]+:-?[0-9]{1,12}", none=True, what="a generated sample ('room:<seed>')"),
                    arrays=StoredPath(), arrays_sha256=SHA256_OR_NONE,
                    budgets=DictOf(MODALITY, Num(0.0, 1_000_000.0), 8, none=True), total=Int(0, 1_000_000, none=True),
                    seed=SEED, strategy=DictOf(MODALITY, Choice(("random", "tube", "time", "frequency", "time-frequency")), 8, none=True),
                    frame=Int(0, 100_000)))
def _multimodal(adapter, images, o) -> go.Figure:
    """Cross-modal reconstruction (RGB-D / audio-visual): one row per modality, original | seen | reconstruction | error."""
    from ..multimodal import reconstruct_multimodal
    from ..multimodal.inputs import sample_inputs
    from .inputs import load_arrays
    from ..viz.multimodal import multimodal_figure

    if (o["sample"] is None) == (o["arrays"] is None):
        raise ValueError("The multimodal recipe needs either a sample name or stored input arrays.")
    x = sample_inputs(adapter, o["sample"])[0] if o["sample"] else load_arrays(input_path(o["arrays"]), o["arrays_sha256"])
    rec = reconstruct_multimodal(adapter, x, o["budgets"], total=o["total"], seed=o["seed"], strategy=o["strategy"])
    return attach_notes(multimodal_figure(rec, frame=o["frame"]), rec.notes)


# ---------------------------------------------------------------------------- video MAE recipes (own module)
