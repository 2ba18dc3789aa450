"""Interventions: does an attention head matter?  Ablate heads, sweep every head, patch heads between two inputs.

    model = explorer.load_model("mini-mae")
    ab = ablate(model, "chelsea", [(3, 1), (5, 0)])          # heads (layer, head); (layer, None) = the whole layer
    ab.delta, ab.what                                        # e.g. -1.9, "masked-patch PSNR (dB)"
    ab.diff_map                                              # (gh, gw): per-patch error, ablated − intact
    imp = head_importance(model, "chelsea")                  # (L, H) Δ metric, one batched forward per layer
    pt = patch_heads(model, "chelsea", corrupt(pixels, "blur"))  # (L, H) share of the output difference restored

**What is ablated.**  A head's output is its slice of the attention output *before* the output projection: the
``(B, H, Tq, d)`` value SDPA returns inside one attention call.  :class:`HeadHooks` — the one hook mechanism of
every intervention — wraps ``torch.nn.functional.scaled_dot_product_attention`` for the duration of a forward (as
:class:`~explorer.attention.AttentionCapture` does) and knows which layer is running from forward pre / post hooks
on one module per layer (the adapter's :attr:`~explorer.models.base.ImageAdapter.blocks`; image+text adapters name
theirs, see :mod:`explorer.fusion.interventions`).  Inside, an ``edit(layer, out)`` may return a changed ``out``:

* ``"zero"``: the head's output is 0 — the same as zeroing that head's ``d`` input columns of the output projection;
* ``"mean"``: the head's output at every token is replaced by its **mean over the tokens of the same input** (not
  over a reference batch): what the head says about *where* is removed, what it says on average is kept.

transformers' ``head_mask`` is not used: most transformers 5 vision models dropped it, and it scales attention
*probabilities* (which for ``"mean"`` is not the same thing).  Models with ``nn.MultiheadAttention`` are run on the
SDPA path (``need_weights=False``; the MHA fast path is switched off inside the hooks) so their heads are reachable.

**What is measured** (asked of the adapter's capabilities, never of its family):

* masked autoencoders of images (``reconstructs == "image"``): PSNR of the reconstruction over the hidden patches
  of one seeded mask (dB); the map is the per-patch reconstruction error, ablated − intact;
* classifiers: the logit of the target class (default: the class the intact model predicts);
* everything else (CLIP's image tower, DINOv2, VideoMAE): the cosine similarity of the output embedding to the
  intact model's (1 for the intact model).

**Batched sweeps.**  :func:`head_importance` and :func:`patch_heads` run one forward per layer on ``H + 1`` copies
of the input: copy ``i`` has head ``i`` of that layer edited, copy ``H`` the whole layer.  The intact reference is
run inside the same hooks with nothing edited.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models.base import model_lock
from .capture import AttentionError

MODES = ("zero", "mean")
CORRUPTIONS = ("blur", "noise", "grey")


# ---------------------------------------------------------------------------------------------- the hook mechanism
def replacement(out: torch.Tensor, mode: str) -> torch.Tensor:
    """What an ablated head outputs: ``out (..., Tq, d)`` → zeros (``"zero"``) or its mean over the ``Tq`` tokens,
    repeated at every token (``"mean"``)."""
    if mode == "zero":
        return torch.zeros_like(out)
    if mode == "mean":
        return out.mean(dim=-2, keepdim=True).expand_as(out)
    raise AttentionError(f"Unknown ablation mode {mode!r}; choose from {', '.join(MODES)}.")


class HeadHooks:
    """Context manager: per-head attention outputs of ``sites`` can be read and replaced during a forward.

    Args:
        sites: one module per layer (layer ``i`` = ``sites[i]``); every SDPA call made while ``sites[i]`` runs (the
            innermost site when sites nest) belongs to layer ``i``.
        edit: ``edit(layer, out) -> out' | None`` for each such call; ``out`` is SDPA's ``(B, H, Tq, d)`` output (the
            per-head outputs before the output projection); return a tensor of the same shape to replace it, or
            ``None`` to leave it.
        root: a transformers model to switch to SDPA for the duration (when it was loaded with another attention
            implementation), or ``None``.

    Attributes:
        calls: ``(layer, shape)`` of every call seen (a layer with no call was never reached: an error, see
            :meth:`check`).
    """

    def __init__(self, sites: Sequence[torch.nn.Module], edit: Callable[[int, torch.Tensor], "torch.Tensor | None"],
                 *, root: "torch.nn.Module | None" = None):
        self.sites = list(sites)
        self.edit = edit
        self.root = root
        self.calls: list[tuple[int, tuple]] = []
        self._stack: list[int] = []
        self._handles: list = []
        self._orig = None
        self._thread = None
        self._impl_restore = None
        self._fastpath = None

    def _sdpa(self, *args, **kwargs):
        out = self._orig(*args, **kwargs)
        if threading.get_ident() != self._thread or not self._stack:
            return out
        layer = self._stack[-1]
        self.calls.append((layer, tuple(out.shape)))
        new = self.edit(layer, out)
        if new is None:
            return out
        if new.shape != out.shape:
            raise AttentionError(f"An intervention on layer {layer} returned shape {tuple(new.shape)} for an attention "
                                 f"output of shape {tuple(out.shape)}.")
        return new.to(out.dtype)

    def _push(self, i: int):
        def hook(_m, _a):
            self._stack.append(i)

        return hook

    def _pop(self, _m, _a, _o):
        if self._stack:
            self._stack.pop()

    @staticmethod
    def _mha_pre(_m, args, kwargs):
        kwargs = dict(kwargs)
        kwargs["need_weights"] = False  # the SDPA path: the per-head output is reachable
        return args, kwargs

    def __enter__(self) -> "HeadHooks":
        self._lock = model_lock()  # background work never runs a model through these hooks (see model_lock)
        self._lock.acquire()
        try:
            return self._enter()
        except BaseException:
            self._lock.release()
            raise

    def _enter(self) -> "HeadHooks":
        m = self.root
        impl = getattr(getattr(m, "config", None), "_attn_implementation", None) if m is not None else None
        if impl not in (None, "sdpa") and hasattr(m, "set_attn_implementation"):
            try:
                m.set_attn_implementation("sdpa")
                self._impl_restore = impl
            except Exception as e:  # noqa: BLE001
                raise AttentionError(f"This model uses {impl!r} attention and cannot switch to SDPA for an intervention: "
                                     f"{e}") from e
        for i, site in enumerate(self.sites):
            self._handles.append(site.register_forward_pre_hook(self._push(i)))
            self._handles.append(site.register_forward_hook(self._pop))
            for mod in site.modules():
                if isinstance(mod, torch.nn.MultiheadAttention):
                    self._handles.append(mod.register_forward_pre_hook(self._mha_pre, with_kwargs=True))
        self._fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # the native MHA kernel never calls SDPA
        self._thread = threading.get_ident()
        self._orig = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._sdpa
        return self

    def __exit__(self, *exc) -> None:
        F.scaled_dot_product_attention = self._orig
        torch.backends.mha.set_fastpath_enabled(self._fastpath)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()
        if self._impl_restore is not None:
            with contextlib.suppress(Exception):
                self.root.set_attn_implementation(self._impl_restore)
        self._lock.release()

    def check(self) -> None:
        """Raise :class:`AttentionError` if some layer made no SDPA call (its heads were out of reach)."""
        seen = {layer for layer, _ in self.calls}
        missing = [i for i in range(len(self.sites)) if i not in seen]
        if missing:
            raise AttentionError(f"Layer(s) {missing} made no scaled-dot-product attention call: their heads cannot be "
                                 "ablated or patched.")


def heads_by_layer(heads: Iterable, num_layers: int, num_heads: int) -> dict[int, list[int]]:
    """``[(layer, head | None), ...]`` → ``{layer: [heads]}`` (``None`` = every head of the layer), validated."""
    out: dict[int, set] = {}
    for item in heads:
        try:
            layer, head = item
        except (TypeError, ValueError):
            raise AttentionError(f"Heads are (layer, head) pairs (head None = the whole layer); got {item!r}.") from None
        layer = int(layer)
        if not 0 <= layer < num_layers:
            raise AttentionError(f"Layer {layer} is out of range: this model has layers 0..{num_layers - 1}.")
        if head is None or head == "all":
            out.setdefault(layer, set()).update(range(num_heads))
            continue
        head = int(head)
        if not 0 <= head < num_heads:
            raise AttentionError(f"Head {head} is out of range: this model has heads 0..{num_heads - 1}.")
        out.setdefault(layer, set()).add(head)
    return {k: sorted(v) for k, v in sorted(out.items())}


def ablation_edit(spec: dict[int, list[int]], mode: str) -> Callable:
    """The ``edit`` of :class:`HeadHooks` that ablates ``spec`` (``{layer: [heads]}``) in every batch element."""
    replacement(torch.zeros(1, 1), mode)  # validates the mode

    def edit(layer, out):
        heads = spec.get(layer)
        if not heads:
            return None
        out = out.clone()
        out[:, heads] = replacement(out[:, heads], mode)
        return out

    return edit


def sweep_edit(layer: int, num_heads: int, *, mode: str = "zero", source: "torch.Tensor | None" = None) -> Callable:
    """The ``edit`` of one batched sweep over ``layer`` on ``H + 1`` copies of an input: copy ``i < H`` has head ``i``
    replaced, copy ``H`` every head; by :func:`replacement` (``mode``), or, with ``source`` ``(1, H, Tq, d)`` (another
    input's outputs of this layer), by ``source``'s heads (activation patching)."""
    H = num_heads
    idx = torch.arange(H)

    def edit(l, out):
        if l != layer:
            return None
        if out.shape[0] != H + 1:
            raise AttentionError(f"A sweep runs {H + 1} copies of the input; this call has batch {out.shape[0]}.")
        out = out.clone()
        if source is None:
            out[idx, idx] = replacement(out[idx, idx], mode)
            out[H] = replacement(out[H], mode)
        else:
            if tuple(source.shape[1:]) != tuple(out.shape[1:]):
                raise AttentionError(f"Layer {layer}'s attention output has shape {tuple(out.shape[1:])} here and "
                                     f"{tuple(source.shape[1:])} for the other input: patching needs inputs of one length "
                                     "(same number of tokens).")
            src = source[0].to(out.device, out.dtype)
            out[idx, idx] = src
            out[H] = src
        return out

    return edit


def record_edit(store: dict) -> Callable:
    """The ``edit`` that keeps every layer's per-head outputs in ``store`` (``layer → (B, H, Tq, d)``, detached)."""

    def edit(layer, out):
        store[layer] = out.detach().clone()
        return None

    return edit


# ---------------------------------------------------------------------------------------------- probes: what is measured
@dataclass
class Probe:
    """How one input is run and scored (built from the adapter's capabilities; shared with the fusion interventions).

    Attributes:
        what: the number, in words (``"masked-patch PSNR (dB)"``, ``"logit of class 3"``, …).
        run: ``run(B) -> (B, ...)`` numpy outputs of the model on ``B`` copies of the input.
        score: ``(B, ...)`` outputs → ``(B,)`` float64, the number.
        diff_map: ``(intact output, ablated output)`` → a map of the difference (or ``None``).
        sites: one module per layer; root: model to switch to SDPA (or ``None``).
        num_heads: ``H``.
        key: what identifies the input and the scoring (for caches).
    """

    what: str
    run: Callable[[int], np.ndarray]
    score: Callable[[np.ndarray], np.ndarray]
    sites: list
    num_heads: int
    root: Any = None
    diff_map: "Callable[[np.ndarray, np.ndarray], np.ndarray] | None" = None
    key: tuple = ()

    @property
    def num_layers(self) -> int:
        return len(self.sites)

    def hooks(self, edit) -> HeadHooks:
        return HeadHooks(self.sites, edit, root=self.root)


def _run(probe: Probe, edit, batch: int) -> np.ndarray:
    with torch.no_grad(), probe.hooks(edit) as hooks:
        out = probe.run(batch)
    hooks.check()
    return out


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def _expand(x: torch.Tensor, B: int) -> torch.Tensor:
    return x.expand(B, *x.shape[1:])


def image_probe(adapter, pixels: np.ndarray, *, reference: "np.ndarray | None" = None, mask: "np.ndarray | None" = None,
                target: "int | None" = None) -> Probe:
    """The :class:`Probe` of an image / video adapter on ``pixels`` (``(S, S, 3)``; video ``(T, S, S, 3)``).

    ``reference`` (default ``pixels``): the input the score compares with — the clean image when ``pixels`` is a
    corrupted copy (activation patching): the reconstruction's PSNR is measured against it, the target class is the
    one predicted on it, the embedding's cosine is taken to its embedding.  ``mask`` ``(gh, gw)`` bool: the hidden
    patches of a masked autoencoder (required there).
    """
    ref = pixels if reference is None else reference
    x = adapter.normalise_input(pixels)
    sites = list(adapter.blocks)
    common = dict(sites=sites, num_heads=int(adapter.num_heads), root=adapter.model)
    wsha = adapter.weights_sha256
    if adapter.reconstructs == "image":
        from ..metrics import masked_psnr, patch_mse

        if mask is None:
            raise AttentionError("A masked autoencoder is scored on a reconstruction: pass mask= (gh, gw) bool, True = hidden.")
        mask = np.asarray(mask, bool).reshape(adapter.grid)
        if not mask.any():
            raise AttentionError("Hide at least one patch: the reconstruction is scored on the hidden patches.")
        p = adapter.patch_size

        def run(B):
            return np.clip(adapter.forward_masks(pixels, np.repeat(mask[None], B, 0), batch_size=B), 0.0, 1.0)

        def score(out):
            return np.array([masked_psnr(o, ref, mask, p) for o in out], np.float64)

        def diff(intact, ablated):
            return (patch_mse(ablated, ref, p) - patch_mse(intact, ref, p)).astype(np.float32)

        return Probe("masked-patch PSNR (dB)", run, score, diff_map=diff, key=(wsha, _sha(pixels, ref, mask), "psnr"),
                     **common)
    xr = x if reference is None else adapter.normalise_input(ref)
    if adapter.classifier:
        with torch.no_grad():
            t = adapter._class(adapter.logits(xr), target)
        label = getattr(adapter, "labels", {}).get(t)

        def run(B):
            return adapter.logits(_expand(x, B)).float().cpu().numpy()

        return Probe(f"logit of class {t}" + (f" ({label})" if label else ""), run, lambda out: out[:, t].astype(np.float64),
                     diff_map=lambda a, b: (b - a).astype(np.float32), key=(wsha, _sha(pixels, ref), "logit", t), **common)
    with torch.no_grad():
        e_ref = adapter.embedding(xr).float()

    def run(B):
        return adapter.embedding(_expand(x, B)).float().cpu().numpy()

    def score(out):
        e = torch.from_numpy(out)
        return F.cosine_similarity(e, e_ref.cpu().expand_as(e), dim=-1).double().numpy()

    return Probe(f"cosine similarity of the {adapter.embedding_name} to the intact model's", run, score,
                 key=(wsha, _sha(pixels, ref), "cosine"), **common)


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Ablation:
    """One ablation against the intact model.

    Attributes:
        heads: ablated ``(layer, head)`` pairs, sorted.
        mode: ``"zero"`` or ``"mean"`` (see the module docstring).
        what: the number, in words; ``intact`` / ``ablated`` its values; ``delta = ablated - intact``.
        intact_output / ablated_output: the model's output — MAE: ``(S, S, 3)`` reconstruction in [0, 1];
            classifier: ``(C,)`` logits; embedding models: ``(D,)`` embedding.
        diff_map: MAE: ``(gh, gw)`` per-patch squared error, ablated − intact (> 0: worse); classifier: ``(C,)``
            Δ logits; else ``None``.
        image: the model input ``(S, S, 3)`` (video ``(T, S, S, 3)``); mask: ``(gh, gw)`` hidden patches (MAE) or
            ``None``.
        model: :class:`~explorer.models.ModelInfo`; input: :class:`~explorer.reconstruction.InputInfo`.
    """

    heads: tuple
    mode: str
    what: str
    intact: float
    ablated: float
    intact_output: np.ndarray
    ablated_output: np.ndarray
    diff_map: "np.ndarray | None"
    image: np.ndarray
    mask: "np.ndarray | None"
    model: Any
    input: Any
    notes: tuple = ()

    @property
    def delta(self) -> float:
        return self.ablated - self.intact


@dataclass(frozen=True)
class HeadImportance:
    """Every head ablated in turn.

    Attributes:
        delta: ``(L, H)`` float64, the metric with head ``(l, h)`` ablated minus intact (negative: the head helped).
        layer_delta: ``(L,)`` the same with the whole layer ablated.
        intact: the intact model's value; what, mode: as in :class:`Ablation`.
        seconds: wall time of the sweep (0 when served from the cache).
    """

    delta: np.ndarray
    layer_delta: np.ndarray
    intact: float
    what: str
    mode: str
    model: Any = None
    input: Any = None
    seconds: float = 0.0
    notes: tuple = ()

    @property
    def num_layers(self) -> int:
        return self.delta.shape[0]

    @property
    def num_heads(self) -> int:
        return self.delta.shape[1]

    def ranked(self) -> list[tuple[int, int, float]]:
        """``(layer, head, delta)`` by ``|delta|``, largest first."""
        L, H = self.delta.shape
        order = np.argsort(-np.abs(self.delta), axis=None, kind="stable")
        return [(int(i // H), int(i % H), float(self.delta.flat[i])) for i in order]


@dataclass(frozen=True)
class Patching:
    """Activation patching: the corrupted input rerun with clean per-head outputs.

    Attributes:
        restored: ``(L, H)`` share of the output difference restored by patching head ``(l, h)`` with its clean
            output: ``(patched - corrupted) / (clean - corrupted)`` — 1 restores fully, 0 nothing (can leave [0, 1]).
        layer_restored: ``(L,)`` the same with every head of the layer patched.
        clean, corrupted: the metric on the two inputs; patched: ``(L, H)`` its values when patched.
        what: the metric, in words; corruption: how the corrupted input was made.
    """

    restored: np.ndarray
    layer_restored: np.ndarray
    clean: float
    corrupted: float
    patched: np.ndarray
    what: str
    corruption: str
    model: Any = None
    input: Any = None
    seconds: float = 0.0
    notes: tuple = ()

    @property
    def gap(self) -> float:
        return self.clean - self.corrupted


# ---------------------------------------------------------------------------------------------- generic engine
def run_ablation(probe: Probe, heads: Iterable, mode: str = "zero") -> tuple[tuple, float, float, np.ndarray, np.ndarray]:
    """``(heads sorted, intact, ablated, intact output, ablated output)`` of ``probe`` with ``heads`` ablated."""
    spec = heads_by_layer(heads, probe.num_layers, probe.num_heads)
    pairs = tuple((l, h) for l, hs in spec.items() for h in hs)
    intact = _run(probe, ablation_edit({}, mode), 1)
    ablated = intact if not pairs else _run(probe, ablation_edit(spec, mode), 1)
    s0, s1 = probe.score(intact)[0], probe.score(ablated)[0]
    return pairs, float(s0), float(s1), intact[0], ablated[0]


_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
CACHE_SIZE = 32


def _cached(key: tuple, make: Callable):
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key], True
    value = make()
    _CACHE[key] = value
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value, False


def clear_cache() -> None:
    """Forget every cached sweep and patching grid."""
    _CACHE.clear()


def run_importance(probe: Probe, mode: str = "zero", *, batched: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """``(delta (L, H), layer_delta (L,), intact)``: every head of every layer ablated in turn.

    ``batched``: one forward per layer on ``H + 1`` copies (:func:`sweep_edit`); else one forward per head and per
    layer (the reference loop).
    """
    L, H = probe.num_layers, probe.num_heads
    intact = float(probe.score(_run(probe, ablation_edit({}, mode), 1))[0])
    delta = np.zeros((L, H))
    layer_delta = np.zeros(L)
    for l in range(L):
        if batched:
            s = probe.score(_run(probe, sweep_edit(l, H, mode=mode), H + 1))
        else:
            s = np.array([probe.score(_run(probe, ablation_edit({l: [h]}, mode), 1))[0] for h in range(H)]
                         + [probe.score(_run(probe, ablation_edit({l: list(range(H))}, mode), 1))[0]])
        delta[l] = s[:H] - intact
        layer_delta[l] = s[H] - intact
    return delta, layer_delta, intact


def run_patching(clean: Probe, corrupted: Probe, *, batched: bool = True, heads: "Iterable | None" = None
                 ) -> "tuple[np.ndarray, np.ndarray, float, float, np.ndarray] | float":
    """Activation patching of ``corrupted`` with ``clean``'s per-head outputs (both probes score against the clean
    reference).

    Returns ``(restored (L, H), layer_restored (L,), clean value, corrupted value, patched (L, H))``; with ``heads``
    (``[(layer, head | None)]``) only those are patched, all at once, and the restored share is returned.
    """
    L, H = clean.num_layers, clean.num_heads
    store: dict = {}
    m_clean = float(clean.score(_run(clean, record_edit(store), 1))[0])
    m_corr = float(corrupted.score(_run(corrupted, ablation_edit({}, "zero"), 1))[0])
    gap = m_clean - m_corr

    def share(v):
        return (np.asarray(v, np.float64) - m_corr) / gap if abs(gap) > 1e-12 else np.full(np.shape(v), np.nan)

    if heads is not None:
        spec = heads_by_layer(heads, L, H)

        def edit(layer, out):
            hs = spec.get(layer)
            if not hs:
                return None
            src = store[layer].to(out.device, out.dtype)
            if src.shape != out.shape:
                raise AttentionError(f"Layer {layer}'s attention output has shape {tuple(out.shape)} here and "
                                     f"{tuple(src.shape)} for the clean input: patching needs inputs of one length.")
            out = out.clone()
            out[:, hs] = src[:, hs]
            return out

        return float(share(corrupted.score(_run(corrupted, edit, 1))[0]))
    patched = np.zeros((L, H))
    layer_patched = np.zeros(L)
    for l in range(L):
        if batched:
            s = corrupted.score(_run(corrupted, sweep_edit(l, H, source=store[l]), H + 1))
        else:
            s = np.array([run_patching(clean, corrupted, heads=[(l, h)]) for h in range(H)] +
                         [run_patching(clean, corrupted, heads=[(l, None)])]) * gap + m_corr
        patched[l] = s[:H]
        layer_patched[l] = s[H]
    return share(patched), share(layer_patched), m_clean, m_corr, patched


# ---------------------------------------------------------------------------------------------- image models
def corrupt(pixels: np.ndarray, kind: str = "blur", *, seed: int = 0, strength: float = 1.0) -> np.ndarray:
    """A corrupted copy of ``pixels`` (``(H, W, 3)`` or ``(T, H, W, 3)`` float in [0, 1]) for activation patching.

    ``"blur"``: Gaussian blur, sigma ``strength · H / 16`` px; ``"noise"``: Gaussian noise, std ``0.3 · strength``
    (seeded), clipped to [0, 1]; ``"grey"``: the luminance in all three channels (colour removed).
    """
    a = np.asarray(pixels, np.float32)
    if kind == "blur":
        import cv2

        sigma = max(0.5, float(strength) * a.shape[-3] / 16)
        frames = a.reshape(-1, *a.shape[-3:])
        return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]).reshape(a.shape).clip(0, 1)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return (a + rng.normal(0, 0.3 * float(strength), a.shape)).clip(0, 1).astype(np.float32)
    if kind == "grey":
        y = a @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat(y[..., None], 3, -1).astype(np.float32)
    raise AttentionError(f"Unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}.")


def _adapter_and_input(model, image, fit: str):
    from .maps import _adapter, _prepare

    adapter = _adapter(model, "interventions")
    pixels, info, _x = _prepare(adapter, image, fit)
    return adapter, pixels, info


def _mask(adapter, mask, ratio: float, seed: int):
    if adapter.reconstructs != "image":
        return None
    if mask is not None:
        return np.asarray(mask, bool).reshape(adapter.grid)
    from ..masking import MaskSpec, make_mask

    return make_mask(adapter.grid, MaskSpec("random", float(ratio), int(seed)))


def ablate(model, image, heads: Iterable, *, mode: str = "zero", mask=None, ratio: float = 0.75, seed: int = 0,
           target: "int | None" = None, fit: str = "center-crop") -> Ablation:
    """Ablate ``heads`` of an image / video model and compare with the intact model.

    Args:
        model: an adapter from :func:`explorer.load_model` (or its name).
        image: anything :func:`explorer.load_image` takes, a sample name, or a fitted ``(S, S, 3)`` array.
        heads: ``[(layer, head), ...]``; ``(layer, None)`` ablates every head of the layer; ``[]``: nothing.
        mode: ``"zero"`` or ``"mean"`` (see the module docstring).
        mask: MAE: ``(gh, gw)`` bool, True = hidden (default: a random mask of ``ratio`` with ``seed``).
        target: classifiers: the class whose logit is compared (default: the intact model's prediction).
    Returns:
        :class:`Ablation`.
    """
    adapter, pixels, info = _adapter_and_input(model, image, fit)
    m = _mask(adapter, mask, ratio, seed)
    probe = image_probe(adapter, pixels, mask=m, target=target)
    pairs, s0, s1, o0, o1 = run_ablation(probe, heads, mode)
    diff = probe.diff_map(o0, o1) if probe.diff_map is not None else None
    return Ablation(pairs, mode, probe.what, s0, s1, o0, o1, diff, pixels, m, adapter.info, info,
                    tuple(adapter.attention_notes) + tuple(info.notes))


def head_importance(model, image, *, mode: str = "zero", mask=None, ratio: float = 0.75, seed: int = 0,
                    target: "int | None" = None, fit: str = "center-crop", batched: bool = True) -> HeadImportance:
    """Ablate every head of every layer in turn: the ``(L, H)`` grid of Δ metric (cached per weights, input, mask,
    metric and mode).  ``batched=False`` runs the one-at-a-time loop (the reference; not cached)."""
    import time

    adapter, pixels, info = _adapter_and_input(model, image, fit)
    probe = image_probe(adapter, pixels, mask=_mask(adapter, mask, ratio, seed), target=target)
    notes = tuple(adapter.attention_notes) + tuple(info.notes)
    t0 = time.perf_counter()
    if not batched:
        d, ld, s0 = run_importance(probe, mode, batched=False)
        return HeadImportance(d, ld, s0, probe.what, mode, adapter.info, info, time.perf_counter() - t0, notes)
    (d, ld, s0), hit = _cached(("importance", *probe.key, mode), lambda: run_importance(probe, mode))
    return HeadImportance(d, ld, s0, probe.what, mode, adapter.info, info, 0.0 if hit else time.perf_counter() - t0,
                          notes)


def patch_heads(model, clean, corrupted="blur", *, mask=None, ratio: float = 0.75, seed: int = 0,
                target: "int | None" = None, fit: str = "center-crop", batched: bool = True) -> Patching:
    """Activation patching between a clean and a corrupted input of an image / video model.

    Args:
        clean: the clean input (as for :func:`ablate`).
        corrupted: a kind of :func:`corrupt` (``"blur"``, ``"noise"``, ``"grey"``: made from the clean input), or a
            second input of the same size.
    Returns:
        :class:`Patching` (cached per weights, both inputs, mask and target when ``batched``).
    """
    import time

    adapter, pixels, info = _adapter_and_input(model, clean, fit)
    if isinstance(corrupted, str) and corrupted in CORRUPTIONS:
        bad, how = corrupt(pixels, corrupted, seed=seed), f"{corrupted} (seed {seed})" if corrupted == "noise" else corrupted
    else:
        bad, _info = _adapter_and_input(adapter, corrupted, fit)[1:]
        how = f"another input ({_info.name})"
    m = _mask(adapter, mask, ratio, seed)
    p_clean = image_probe(adapter, pixels, mask=m, target=target)
    p_bad = image_probe(adapter, bad, reference=pixels, mask=m, target=target)
    t0 = time.perf_counter()
    if not batched:
        r, lr, c, k, pt = run_patching(p_clean, p_bad, batched=False)
        seconds = time.perf_counter() - t0
    else:
        (r, lr, c, k, pt), hit = _cached(("patching", *p_bad.key), lambda: run_patching(p_clean, p_bad))
        seconds = 0.0 if hit else time.perf_counter() - t0
    notes = ("Patched: each head's output before the output projection; the residual stream still carries the corrupted "
             "input's embedding, so patching every head need not restore everything.",)
    if abs(c - k) < 0.01 * max(abs(c), 1e-12):
        notes += (f"The corruption barely changes {p_clean.what} ({c:.4g} → {k:.4g}): the shares divide by that small "
                  "gap and are unreliable; try a stronger corruption.",)
    return Patching(r, lr, c, k, pt, p_clean.what, how, adapter.info, info, seconds, notes + tuple(info.notes))
