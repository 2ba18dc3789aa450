"""Which image region each word goes with: one pass of the model, every registered method's per-word maps.

One forward + one backward per (image, text, model) gives every cached view (see
:mod:`explorer.fusion.methods` for the registry):

* ``attention`` — raw cross-modal attention per layer and head, oriented word × patch
  (text→image rows for text-queries models and single-stream models; image→text columns,
  transposed, for image-queries models such as our mini model);
* ``rollout`` / ``relevance`` — attention flow through both streams (:mod:`explorer.fusion.propagation`);
* ``gradcam`` — Grad-CAM on the cross-attention as in ALBEF, per layer;
* ``similarity`` — dual encoders (CLIP): FILIP-style cosine similarity of patch and word embeddings.

On-demand methods (Integrated Gradients per word) run when a map is asked for with the adapter, and the
:class:`Alignment` keeps the answer.

    al = align(adapter, image, "a red circle left of a blue square")
    al.maps["relevance"]                  # (W, gh, gw), one map per clickable word
    al.attention                          # (layers, heads, W, gh, gw)
    al.word_map("ig", 1, adapter=adapter) # computed now, cached in al
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..models.fusion_base import FusionAdapter, FusionInputError
from .capture import capture, prepare
from .methods import REGISTRY, FusionMethod, get_method, methods_for


@dataclass
class Alignment:
    """Everything the cross-modal views show for one (image, text, model); CPU numpy arrays.

    Attributes:
        image: ``(S, S, 3)`` float32, the model input.
        tokens: display tokens of the whole text; ``words``: positions of the clickable ones (``W``).
        score: the model's output scalar; ``answer``: its readable form; ``output_name``.
        grid: ``(gh, gw)``.
        layer_names: names of the cross-modal layers.
        maps: method → ``(W, gh, gw)`` default map (layered methods: their ``default_layer``, mean of heads; a
            ``"last"`` method: the last layer whose map is not zero by construction, see :attr:`zero_layers`).
        layered: method → the full stack of a method that takes a layer: ``(layers, [heads,] W, gh, gw)``.
        matrix: ``(W, L)`` the token × patch alignment matrix; ``matrix_name`` what it holds.
        notes: what happened to the inputs (fit, truncation, unknown words).
        meta: model id, weights' hash, text, kind (for sidecars).
    """

    image: np.ndarray
    tokens: list[str]
    words: list[int]
    score: float
    answer: str
    output_name: str
    grid: tuple[int, int]
    layer_names: list[str]
    maps: dict[str, np.ndarray]
    matrix: np.ndarray
    matrix_name: str
    layered: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    #: layered gradient method → the layers whose map is zero *by construction*: the output's gradient reaches no
    #: word's row of that layer's attention (BLIP ITM and ViLT read only the [CLS] token after their last layer).
    zero_layers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: on-demand maps computed so far: ``(method, word, options…) → (gh, gw)``
    computed: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def word_strings(self) -> list[str]:
        return [self.tokens[p] for p in self.words]

    @property
    def attention(self) -> np.ndarray | None:
        """``(layers, heads, W, gh, gw)`` raw cross-modal attention (``None`` for dual encoders)."""
        return self.layered.get("attention")

    @property
    def gradcam(self) -> np.ndarray | None:
        """``(layers, W, gh, gw)`` per-layer Grad-CAM (``None`` for dual encoders)."""
        return self.layered.get("gradcam")

    @property
    def patch_size(self) -> int:
        return self.image.shape[0] // self.grid[0]

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "cross-attention")

    @property
    def available(self) -> list[str]:
        """Cached methods this alignment holds, in menu order."""
        return [m for m in REGISTRY if m in self.maps]

    @property
    def offered(self) -> list[str]:
        """What a view can show: the cached methods, then the on-demand ones that apply to this model."""
        return self.available + [m.name for m in methods_for(self.kind) if m.on_demand]

    def method(self, name: str) -> FusionMethod:
        """The registry entry of ``name`` (figures read labels through it)."""
        return get_method(name)

    def describe(self, method: str, **settings) -> str:
        """``method``'s label with the settings it reads (see :meth:`FusionMethod.describe`); a default layer moved off
        the last one (see :meth:`default_layer_index`) is named."""
        m = get_method(method)
        k = self.default_layer_index(method) if settings.get("layer") is None else None
        if k is not None and k != self.layered[m.name].shape[0] - 1:
            settings = {**settings, "layer": k}
        return m.describe(**settings)

    def default_layer_index(self, method: str) -> int | None:
        """The layer a layered method shows when none is chosen: ``None`` for methods that average the layers (or take
        none); else the last layer whose map is not zero by construction (see :attr:`zero_layers`), the last one
        when every layer is."""
        m = get_method(method)
        if not m.layer or m.default_layer == "mean" or m.name not in self.layered:
            return None
        return _last_layer_with_a_map(self.layered[m.name].shape[0], self.zero_layers.get(m.name, ()))

    def layer_note(self, method: str, layer: int | None = None) -> str | None:
        """A reader's note when ``method``'s map at ``layer`` (``None``: its default) is, or would have been, zero by
        construction; ``None`` when there is nothing to say."""
        zero = self.zero_layers.get(method, ())
        if not zero:
            return None
        m = get_method(method)
        last = self.layered[m.name].shape[0] - 1
        k = self.default_layer_index(method)
        shown = k if layer is None else int(layer)
        why = ("the score reads no word's row after that layer (only special tokens such as [CLS]), so the words' "
               "attention there gets no gradient")
        if shown in zero:
            where = "the last cross layer" if shown == last else f"cross layer {shown}"
            rest = f"layer {k} is the last layer with a non-zero map" if k not in zero else "no layer has a non-zero map"
            return f"{m.short} at {where} ({shown}) is zero by construction for this model: {why}; {rest}."
        if last in zero and shown == k:
            return f"{m.short} at the last cross layer ({last}) is zero by construction for this model: {why}; showing layer {k}."
        return None

    def word_map(self, method: str, word: int, *, layer: int | None = None, head: int | str = "mean", adapter=None,
                 **options) -> np.ndarray:
        """``(gh, gw)`` map of clickable word ``word`` (0..W-1) for ``method``.

        ``layer`` (default: the method's ``default_layer``) and ``head`` (index or ``"mean"``) are read by the
        methods that take them and ignored by the others.  On-demand methods (``ig``) are computed with
        ``adapter`` (and their ``options``, e.g. ``steps``) and kept; without it only a kept map is returned.
        """
        if not 0 <= word < len(self.words):
            raise IndexError(f"word {word} out of range: the text has {len(self.words)} clickable words")
        m = get_method(method)
        s = m.settings(layer=layer, head=head, **options)
        if m.on_demand:
            key = self._key(m, word, s)
            if key not in self.computed:
                if adapter is None:
                    raise KeyError(f"{m.label} is computed on demand: pass adapter= to compute word {word}'s map.")
                self.computed[key] = np.asarray(m.compute(adapter, self, word, **{k: s[k] for k in m.options}))
            return self.computed[key]
        default = s["layer"] is None and s["head"] == "mean"
        if m.layer and m.name in self.layered and not default:
            stack = self.layered[m.name]
            if s["layer"] is None:
                a = stack.mean(0) if m.default_layer == "mean" else stack[self.default_layer_index(m.name)]
            else:
                a = stack[s["layer"]]
            if m.head:
                a = a.mean(0) if s["head"] == "mean" else a[s["head"]]
            return a[word]
        if m.name not in self.maps:
            hint = " (dual encoder): use 'similarity'" if m.name == "attention" else ""
            raise KeyError(f"Method {method!r} is not available for this model{hint}; available: {', '.join(self.offered)}.")
        return self.maps[m.name][word]

    def patch_words(self, method: str, patch: int | None = None, *, layer: int | None = None, head: int | str = "mean",
                    adapter=None, **options) -> np.ndarray:
        """``(W,)``: how strongly each word goes with patch ``patch`` (row-major index) under ``method`` and its
        settings; ``patch=None``: each word's peak.  On-demand methods without ``adapter``: words not computed
        yet are NaN."""
        out = np.full(len(self.words), np.nan)
        m = get_method(method)
        for w in range(len(self.words)):
            if m.on_demand and adapter is None and not self.has(method, w, **options):
                continue
            mp = self.word_map(method, w, layer=layer, head=head, adapter=adapter, **options)
            out[w] = float(np.nanmax(mp)) if patch is None else float(mp.ravel()[int(patch)])
        return out

    def has(self, method: str, word: int, **options) -> bool:
        """Whether ``word_map(method, word)`` is ready without running the model."""
        m = get_method(method)
        if not m.on_demand:
            return m.name in self.maps
        return self._key(m, word, m.settings(**options)) in self.computed

    @staticmethod
    def _key(m: FusionMethod, word: int, s: dict) -> tuple:
        return (m.name, int(word), *(s[k] for k in m.options))


def _last_layer_with_a_map(n: int, zero) -> int:
    """The last of ``n`` layers not in ``zero`` (the last one when every layer is)."""
    return next((i for i in range(n - 1, -1, -1) if i not in set(zero)), n - 1)


# ---------------------------------------------------------------------------------------------- main entry
def align(adapter: FusionAdapter, image, text: str, *, fit: str = "center-crop") -> Alignment:
    """Run the model once (forward + backward) and build every cached method of the registry that applies to it.

    Args:
        adapter: from :func:`explorer.fusion.load_fusion_model`.
        image: ``(H, W, 3)`` float in [0, 1] or a :class:`~explorer.io.LoadedImage`.
        text: caption or question.
    Raises:
        FusionInputError: empty text, wrong image shape, a model whose attention does not fuse the modalities.
    """
    pixels, t, fitted, notes = prepare(adapter, image, text, fit=fit)
    set_target = getattr(adapter, "set_target", None)
    if set_target is not None:
        set_target(pixels, t)
    W = len(t.words)
    meta = {"model_id": adapter.model_id, "model_type": adapter.model_type, "weights_sha256": adapter.weights_sha256,
            "text": text, "kind": adapter.kind}
    if W == 0:
        raise FusionInputError("The text has no word the model can read (only special tokens): type a caption.")
    cached = [m for m in methods_for(adapter.kind) if not m.on_demand]
    cap = capture(adapter, pixels, t, gradients=any(m.gradients for m in cached))
    maps: dict[str, np.ndarray] = {}
    layered: dict[str, np.ndarray] = {}
    zero_layers: dict[str, tuple[int, ...]] = {}
    # Layers whose attention gets an exactly zero gradient on every word's row: the output never reads those rows
    # (BLIP ITM / ViLT read only [CLS] after their last layer), so a gradient-weighted map there is zero by construction.
    no_gradient = tuple(i for i, (_n, _o, g) in enumerate(cap.cross) if g is not None and not bool(g.any()))
    matrix = matrix_name = None
    for m in cached:
        arr = m.build(cap)
        if arr is None:
            continue
        if m.layer:
            layered[m.name] = arr
            if m.gradients and no_gradient:
                zero_layers[m.name] = no_gradient
            k = _last_layer_with_a_map(arr.shape[0], zero_layers.get(m.name, ()))
            axes = (0, 1) if m.head else 0  # the default layer (the last one with a map), mean of heads
            maps[m.name] = arr.mean(axes) if m.default_layer == "mean" else (arr[k].mean(0) if m.head else arr[k])
        else:
            maps[m.name] = arr
        if m.matrix and matrix is None:
            matrix, matrix_name = maps[m.name].reshape(W, -1), m.matrix
    if matrix is None:
        raise FusionInputError(f"No method of the registry gives a word × patch matrix for {adapter.model_id} ({adapter.kind}).")
    return Alignment(image=fitted, tokens=list(t.tokens), words=list(t.words), score=cap.score, answer=cap.answer,
                     output_name=adapter.output_name, grid=adapter.grid, layer_names=[n for n, _o, _g in cap.cross],
                     maps=maps, layered=layered, matrix=matrix, matrix_name=matrix_name, notes=notes, meta=meta,
                     zero_layers=zero_layers)
