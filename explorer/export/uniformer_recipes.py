"""Figure recipes of the UniFormer local / global view (registered on import by :mod:`explorer.export`).

* ``uniformer_relations``: an image UniFormer on one image input (a sample, a file, an upload: stored like any image
  input of an export).
* ``uniformer_relations_video``: a video UniFormer; the clip is named in the options as in :mod:`.video_recipes`
  (``clip="generated:<seed>"``, or ``video="inputs/<sha16>.<ext>"`` with ``video_sha256``; pass the clip itself as
  ``attach={"video": clip}``), sampled to the model's frames again with ``sampling`` / ``stride`` / ``short``.

Both draw :func:`explorer.viz.uniformer.relations_figure` of
:func:`explorer.attention.local_global.local_global` with the recorded query point, blocks, heads, rollout options and
class, so ``python -m explorer reproduce`` rebuilds the same bytes; the model loads through
:func:`explorer.load_uniformer_model` (the sidecar's model family is ``"hierarchical"``).

    export_recipe("uniformer_relations", "figs/uf", model="mini-uniformer", inputs=["chelsea"],
                  options=dict(query=[20, 30], heads=["mean", "mean", 0, "mean"]))
"""

from __future__ import annotations

from types import SimpleNamespace

import plotly.graph_objects as go

from .recipes import COLORSCALE, FIT, HEAD, OPACITY
from .registry import Bool, Choice, Int, ListOf, recipe
from .video_recipes import CLIP, CLIP_SCHEMA, video_from_options

VIEW = dict(query=None, blocks=None, heads=None, fusion="mean", residual=True, target=None, fit="center-crop",
            colorscale="Viridis", opacity=0.6)
VIEW_SCHEMA = dict(query=ListOf(Int(0, 100_000), 3, 2, none=True), blocks=ListOf(Int(0, 255), 4, 4, none=True),
                   heads=ListOf(HEAD, 4, 4, none=True), fusion=Choice(("mean", "max", "min")), residual=Bool(),
                   target=Int(0, 1_000_000, none=True), fit=FIT, colorscale=COLORSCALE, opacity=OPACITY)


def _figure(adapter, source, o: dict, frame=None) -> go.Figure:
    from ..attention.local_global import local_global, relation_input
    from ..viz.uniformer import relations_figure

    if getattr(adapter, "kind", None) != "hierarchical":
        raise ValueError(f"The UniFormer recipes need a UniFormer (explorer.load_uniformer_model), not "
                         f"{getattr(adapter, 'model_id', type(adapter).__name__)}.")
    inp = relation_input(adapter, source, fit=o["fit"])
    view = local_global(adapter, inp, o["query"], blocks=o["blocks"], fusion=o["fusion"], residual=bool(o["residual"]),
                        target=o["target"])
    return relations_figure(view, heads=tuple(o["heads"] or ("mean",) * 4), frame=frame, opacity=float(o["opacity"]), compact=True,
                            colorscale=o["colorscale"], wrap=False)


@recipe("uniformer_relations", family="hierarchical", letters=False, defaults=dict(VIEW), schema=dict(VIEW_SCHEMA))
def _uniformer_relations(adapter, images, o) -> go.Figure:
    """UniFormer (image): each stage's relation of one query token — local kernels and receptive fields, global
    attention — with rollout and relevance through the global stages."""
    if adapter.is_video:
        raise ValueError(f"{adapter.model_id} is a video UniFormer: use the uniformer_relations_video recipe.")
    return _figure(adapter, images[0], o)


@recipe("uniformer_relations_video", family="hierarchical", n_inputs="none", letters=False,
        defaults=dict(CLIP, **VIEW, frame=None), schema=dict(CLIP_SCHEMA, **VIEW_SCHEMA, frame=Int(0, 4095, none=True)))
def _uniformer_relations_video(adapter, images, o) -> go.Figure:
    """UniFormer (video): the local / global view of one query point of a clip, drawn on one frame."""
    if not getattr(adapter, "is_video", False):
        raise ValueError(f"{getattr(adapter, 'model_id', '?')} is an image model: use the uniformer_relations recipe.")
    shim = SimpleNamespace(num_frames=int(adapter.config.num_frames), image_size=int(adapter.config.image_size))
    clip = video_from_options(shim, o)
    return _figure(adapter, clip, o, frame=o["frame"])
