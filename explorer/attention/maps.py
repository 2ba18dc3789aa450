"""Attention results and the calls that compute them from an image or video model.

    model = explorer.load_model("mini-mae")              # or a ViT / DeiT / DINOv2 / CLIP / VideoMAE, or a folder
    maps = explorer.attention.attention_maps(model, "chelsea")      # every layer and head, cached
    maps.query_map(layer=3, head=1, query="cls")          # (gh, gw); video: (t, gh, gw)
    rel = explorer.attention.explain(model, "chelsea", "relevance")  # Chefer et al. 2021
    rel.map                                               # (gh, gw)
    maps = attention_maps(my_module, x, forward=lambda x: my_module(x))  # your own torch module

Nothing here knows a model family: the adapter says where the patch tokens are (``adapter.layout``, a
:class:`~explorer.models.base.TokenLayout`: prefix tokens, grid, input size), which module to watch
(``attention_module``), what forward to show (``attention_forward``) and what scalar to explain
(``relevance_target``).

Raw attention and rollout come from one forward; relevance from one forward + backward; the captum methods
(:mod:`explorer.attention.registry`) from a few to a few hundred forwards.  Rollout and relevance are accumulated
layer by layer (:mod:`explorer.attention.methods`), so ``streaming=True`` never holds more than
one layer's attention.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..models.base import ModelInfo, model_lock, state_dict_sha256
from ..models.layout import TokenLayout
from .capture import AttentionCapture, AttentionError
from .methods import RolloutAccumulator, attention_entropy, mean_attention_distance
from .registry import METHODS  # noqa: F401 - re-exported: names of the method registry, raw first


@dataclass(frozen=True)
class AttentionMaps:
    """Every layer's and head's attention for one input.

    Attributes:
        probs: ``(L, H, T, T)`` float32 (batch element 0).
        layer_names: module path of each layer.
        layout: :class:`~explorer.models.base.TokenLayout` (prefix tokens, grid, input size).
        image: ``(H, W, 3)`` float32 in [0, 1], the model input (video: ``(T, H, W, 3)`` frames; your own module:
            the input as an array, or ``None``).
        patch_size: ``p``.
        path: how it was captured (``"sdpa-recomputed"``, ``"mha-weights"``).
        model: :class:`explorer.models.ModelInfo`; input: :class:`explorer.reconstruction.InputInfo`.
        notes: caveats (which forward was shown, how the input was made).
    """

    probs: np.ndarray
    layer_names: tuple[str, ...]
    layout: TokenLayout
    image: np.ndarray
    patch_size: int
    path: str
    model: Any
    input: Any
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def num_layers(self) -> int:
        return self.probs.shape[0]

    @property
    def num_heads(self) -> int:
        return self.probs.shape[1]

    def _check(self, layer: int, head) -> None:
        if not 0 <= int(layer) < self.num_layers:
            raise AttentionError(f"Layer {layer} is out of range: this model has layers 0..{self.num_layers - 1}.")
        if head != "mean" and not 0 <= int(head) < self.num_heads:
            raise AttentionError(f"Head {head} is out of range: this model has heads 0..{self.num_heads - 1} (or 'mean').")

    def query_map(self, layer: int, head, query="cls") -> np.ndarray:
        """``layout.grid``-shaped ``(gh, gw)`` / ``(t, gh, gw)``: how much the ``query`` token attends to each patch
        (``head="mean"`` averages heads; prefix tokens are left out)."""
        self._check(layer, head)
        a = self.probs[int(layer)]
        rows = self.layout.row(a, query)  # (H, T)
        return self.layout.patch_map(rows.mean(0) if head == "mean" else rows[int(head)])

    def head_distance(self) -> np.ndarray:
        """``(L, H)`` mean attention distance in pixels (spatial; for video, time is ignored)."""
        if self.layout.image_size is None:
            raise AttentionError("Mean attention distance needs a patch grid over an image: pass layout=TokenLayout(...) "
                                 "with image_size and patch_size.")
        return mean_attention_distance(self.probs, self.layout.grid, self.patch_size, self.layout.n_prefix)

    def head_entropy(self) -> np.ndarray:
        """``(L, H)`` mean attention entropy in nats."""
        return attention_entropy(self.probs)

    def rollout(self, *, fusion: str = "mean", discard: float = 0.0, residual: bool = True) -> np.ndarray:
        """``(T, T)`` rollout over all layers from the kept probabilities."""
        acc = RolloutAccumulator(fusion=fusion, discard=discard, residual=residual)
        for layer in self.probs:
            acc.update(torch.from_numpy(layer))
        return acc.result.numpy()


@dataclass(frozen=True)
class Relevance:
    """A per-patch explanation for one query / target.

    Attributes:
        method: a name of :data:`METHODS` (the registry in :mod:`explorer.attention.registry`).
        map: ``layout.grid``-shaped float32: ``(gh, gw)``, or ``(t, gh, gw)`` for video.
        options: the query, the method's own options (fusion, steps, seed, ...), the class explained (``target``)
            and what the method chose (e.g. ``stdev``).
        matrix: ``(T, T)`` token-to-token matrix where the method has one (rollout, relevance).
        layout, image, patch_size, model, input: as in :class:`AttentionMaps`.
        path: capture path; ``peak_attention_bytes``: attention memory held at once.
    """

    method: str
    map: np.ndarray
    options: dict
    layout: TokenLayout
    image: np.ndarray
    patch_size: int
    model: Any
    input: Any
    matrix: np.ndarray | None = None
    path: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------- models and inputs
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".avif")


def _adapter(model, what: str = "this"):
    """An adapter the attention views can ask (layout, forward, target), from an adapter or a name / id / folder.

    Raises:
        AttentionError: anything else, saying what to pass.
    """
    if isinstance(model, (str, os.PathLike)):
        name = str(model)
        if "\n" in name or len(name) > 1024:
            raise AttentionError(f"{name[:60]!r}… is not a model name, hub id or folder; pass one, or an adapter from "
                                 "explorer.load_model.")
        from ..models import load_model

        model = load_model(name)
    if hasattr(model, "layout") and hasattr(model, "relevance_target"):
        return model
    if isinstance(model, torch.nn.Module):
        raise AttentionError(f"{what} needs a model from explorer.load_model (or its name); for your own "
                             f"{type(model).__name__} use attention_maps(module, x, forward=...) and its .rollout().")
    raise AttentionError(f"The attention views take an image or video model from explorer.load_model (or its name), or "
                         f"your own torch.nn.Module with attention_maps(module, x, forward=...); got {type(model).__name__}.")


def _still_clip(image, fit: str, layout: TokenLayout):
    """An image given to a video model: the fitted image repeated over the clip's frames."""
    from ..reconstruction import as_input

    pixels, info = as_input(image, fit, layout.image_size)
    note = f"A still image given to a video model: the same frame repeated {layout.num_frames} times."
    frames = np.repeat(pixels[None], layout.num_frames, axis=0)
    return frames, type(info)(info.name, info.sha256, info.fit_policy, info.fit_description, (*info.notes, note))


def _is_still(image) -> bool:
    from ..io import LoadedImage
    from ..data.samples import SAMPLES

    if isinstance(image, LoadedImage) or (isinstance(image, str) and image in SAMPLES):
        return True
    if isinstance(image, np.ndarray):
        return image.ndim == 3 and image.shape[-1] in (1, 3, 4) or image.ndim == 2
    return isinstance(image, (str, os.PathLike)) and str(image).lower().endswith(_IMAGE_SUFFIXES)


def _video_input(adapter, image, fit: str):
    """``(frames (T, H, W, 3), InputInfo)`` for a video model: a clip sampled to ``T`` frames, or a still image."""
    from ..preprocess import fit_image
    from ..reconstruction import InputInfo
    from ..reconstruction.video import reading_side
    from ..video import LoadedVideo, VideoLoadError, load_video, sample_indices

    layout = adapter.layout
    if _is_still(image):
        return _still_clip(image, fit, layout)
    try:
        video = image if isinstance(image, LoadedVideo) else load_video(image, num_frames=layout.num_frames,
                                                                                  max_side=reading_side(layout.image_size))
    except VideoLoadError:
        try:
            return _still_clip(image, fit, layout)
        except Exception:  # noqa: BLE001 - not an image either: the video's error says more
            pass
        raise
    if len(video.frames) != layout.num_frames:
        video = LoadedVideo(video.frames[sample_indices(len(video.frames), layout.num_frames)], video.fps, video.sha256,
                            video.name, video.decoded, video.indices, video.notes)
    fitted = [fit_image(f, layout.image_size, fit) for f in video.frames]
    frames = np.stack([f.pixels for f in fitted])
    return frames, InputInfo(video.name, video.sha256, fit, fitted[0].description, video.notes)


def _prepare(adapter, image, fit):
    """``(pixels, InputInfo, normalised input)``: the input fitted to ``adapter.layout`` (image or video frames)."""
    from ..reconstruction import as_input

    if adapter.layout.is_video:
        pixels, info = _video_input(adapter, image, fit)
    else:
        pixels, info = as_input(image, fit, adapter.layout.image_size)
    return pixels, info, adapter.normalise_input(pixels)


def _available_bytes(device) -> int:
    """Free memory on ``device`` (GPU: what CUDA reports free; CPU: available RAM)."""
    if str(device).startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def check_capture_memory(num_layers: int, num_heads: int, num_tokens: int, device, max_bytes: int | None = None) -> int:
    """Bytes all layers' attention would take (float32); raise if more than ``max_bytes``.

    Default budget: half the free memory of ``device``.

    Raises:
        AttentionError: with the numbers and what to do instead (streaming rollout / relevance, or the CPU).
    """
    need = 4 * num_layers * num_heads * num_tokens * num_tokens
    budget = max_bytes if max_bytes is not None else _available_bytes(device) // 2
    if need > budget:
        cpu = " — or run on the CPU, which usually has more memory" if str(device).startswith("cuda") else ""
        raise AttentionError(
            f"Keeping every layer's attention needs {_size(need)} ({num_layers} layers × {num_heads} heads × "
            f"{num_tokens}² tokens) but only {_size(budget)} is available on {device}. Use the streaming "
            f"aggregates instead: explain(model, image, 'rollout') or 'relevance' keep one layer at a time{cpu}.")
    return need


def capture_all(module: torch.nn.Module, forward, *, batch_index: int = 0) -> tuple[np.ndarray, tuple[str, ...], str]:
    """Every attention call of ``forward()`` on any ``module`` ("bring your own" models).

    Args:
        module: the model (or the part of it) whose attention modules to watch.
        forward: a no-argument callable running the model.
    Returns:
        ``(probs (L, H, T, T) float32, layer names, capture path)``; layers must share ``(H, T, T)``.
    Raises:
        AttentionError: no attention was seen, or layers differ in shape.
    """
    kept, names = [], []
    with torch.no_grad(), AttentionCapture(module, on_forward=lambda c: (kept.append(c.probs[batch_index].cpu().numpy()),
                                                                        names.append(c.name))) as cap:
        forward()
    if not kept:
        raise AttentionError(
            f"No attention was captured from {type(module).__name__}: it has no nn.MultiheadAttention, no call to "
            "torch.nn.functional.scaled_dot_product_attention and no transformers attention module.")
    shapes = {k.shape for k in kept}
    if len(shapes) > 1:
        raise AttentionError(f"Attention layers differ in shape ({sorted(shapes)}); capture a part of the model with one shape.")
    return np.stack(kept), tuple(names), ",".join(sorted(cap.paths))


def _own_module(module: torch.nn.Module, x, forward: "Callable | None", layout: "TokenLayout | None") -> AttentionMaps:
    """:func:`attention_maps` for your own torch module (through :func:`capture_all`)."""
    from ..io import array_sha256
    from ..reconstruction import InputInfo

    if forward is None:
        if not isinstance(x, torch.Tensor):
            raise AttentionError(f"attention_maps(module, x) runs module(x) on a tensor x; for a {type(x).__name__} "
                                 "input pass forward=lambda x: ... that runs your module on it.")
        forward = module
    if not callable(forward):
        raise AttentionError(f"forward must be a callable run as forward(x), got {type(forward).__name__}.")
    t0 = time.perf_counter()
    probs, names, path = capture_all(module, lambda: forward(x))
    seconds = time.perf_counter() - t0
    T = probs.shape[-1]
    if layout is None:
        layout = TokenLayout(0, (T,), ())
    elif layout.num_tokens != T:
        raise AttentionError(f"The layout has {layout.num_tokens} tokens ({layout.prefix} prefix + {layout.num_patches} "
                             f"patches) but the captured attention has {T}.")
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else None
    p = next(module.parameters(), None)
    info = ModelInfo(model_id=type(module).__name__, family="custom", model_type=type(module).__name__,
                     device=str(p.device) if p is not None else "cpu",
                     dtype=str(p.dtype).replace("torch.", "") if p is not None else "",
                     image_size=layout.image_size or 0, patch_size=layout.patch_size, norm_pix_loss=False,
                     weights_sha256=state_dict_sha256(module))
    what = f"a {tuple(arr.shape)} tensor" if arr is not None else f"a {type(x).__name__}"
    inp = InputInfo("<input>", array_sha256(arr) if arr is not None else "", "none", f"given as {what}")
    return AttentionMaps(probs, names, layout, arr, layout.patch_size, path, info, inp, seconds,
                         (f"Your own {type(module).__name__}, run by forward(x); {len(names)} attention calls captured.",))


def attention_maps(model, image, *, fit: str = "center-crop", max_bytes: int | None = None,
                   forward: "Callable | None" = None, layout: "TokenLayout | None" = None) -> AttentionMaps:
    """Every layer's and head's attention of ``model`` on ``image`` (one forward, kept on the CPU).

    Args:
        model: an adapter from :func:`explorer.load_model` (or its name): ViT, DeiT, DINOv2, CLIP's image tower,
            the MAE encoder on all patches, VideoMAE (also ``VideoMAEForPreTraining``: its encoder, no mask); or your
            own ``torch.nn.Module`` (then ``image`` is its input ``x`` and ``forward`` says how to run it).
        image: anything :func:`explorer.load_image` takes, or a sample name; for video models a clip
            (:func:`explorer.video.load_video` takes it) or an image (a still clip).
        forward: your own module only: ``forward(x)`` runs it (default ``module(x)``).
        layout: your own module only: its :class:`~explorer.models.base.TokenLayout` (default: no prefix, a
            ``(T,)`` grid over the ``T`` tokens).
    Raises:
        AttentionError: the model has no attention the explorer can capture, or is neither of the above.
    """
    if isinstance(model, torch.nn.Module) and not hasattr(model, "layout"):
        return _own_module(model, image, forward, layout)
    if forward is not None or layout is not None:
        raise AttentionError("forward= and layout= are for your own torch modules; a model from explorer.load_model "
                             "knows its forward and token layout.")
    adapter = _adapter(model, "attention_maps")
    layout = adapter.layout
    check_capture_memory(adapter.num_layers, adapter.num_heads, layout.num_tokens, adapter.device, max_bytes)
    pixels, info, x = _prepare(adapter, image, fit)
    t0 = time.perf_counter()
    probs, names, path = capture_all(adapter.attention_module, lambda: adapter.attention_forward(x))
    return AttentionMaps(probs, names, layout, pixels, adapter.patch_size, path, adapter.info, info,
                         time.perf_counter() - t0, tuple(adapter.attention_notes) + tuple(info.notes))


def explain(model, image, method: str = "rollout", *, query="cls", fusion: str = "mean", discard: float = 0.0,
            residual: bool = True, target: int | None = None, steps: int = 32, fit: str = "center-crop",
            layers=None, **options) -> Relevance:
    """A per-patch map by ``method`` for ``query`` (rollout, relevance) or for the model's target.

    Methods come from :mod:`explorer.attention.registry` (:data:`METHODS`; ``raw`` is per layer and head, from
    :func:`attention_maps`): ``"rollout"`` (attention only), ``"relevance"`` (Chefer et al. 2021), and captum's
    ``"integrated-gradients"``, ``"saliency"``, ``"gradient-shap"``, ``"occlusion"`` (one patch at a time),
    ``"smoothgrad"`` (NoiseTunnel over saliency or IG) and ``"gradcam"`` (LayerGradCam on the tokens entering the
    last block), each summed per patch (video: per tubelet).

    Args:
        query: the token whose row is shown for rollout / relevance (a prefix name such as ``"cls"``, ``"mean"``
            or a patch).
        target: class index for classifiers (default: the class predicted for the input, picked once before any
            method runs the model on other points); ignored for models without labels.
        fusion, discard, residual: rollout's options; ``steps``: integration steps (IG, SmoothGrad over IG).
        layers: restrict rollout / relevance to these layer indices (default: all).
        options: the other methods' own options (``seed``, ``samples``, ``noise``, ``base``; see
            ``registry.get_method(method).options``); options of other methods are ignored, unknown ones refused.
    Returns:
        :class:`Relevance` whose map has the layout's grid shape (prefix tokens left out); its ``options`` hold the
        method's settings and, for methods with a target, the class explained.
    """
    from .registry import Inputs, get_method, option_defaults

    m = get_method(method)
    if m.compute is None:
        raise AttentionError("Raw attention is per layer and head: use attention_maps(...).query_map(layer, head).")
    unknown = sorted(set(options) - set(option_defaults()))
    if unknown:
        raise AttentionError(f"explain() has no option {', '.join(map(repr, unknown))}; {m.name}'s options: "
                             f"{', '.join(m.options) or 'none'}.")
    adapter = _adapter(model, "explain")
    layout = adapter.layout
    if m.query and not (isinstance(query, str) and query.lower() == "mean"):
        layout.token(query)  # validates before any forward
    s = m.settings(**{"fusion": fusion, "discard": discard, "residual": residual, "steps": steps, **options})
    pixels, info, x = _prepare(adapter, image, fit)
    t0 = time.perf_counter()
    t = adapter.pick_target(x, target) if m.target else None
    with model_lock():  # captum's layer methods put hooks on the model: no background forward may pass through them
        out = m.compute(Inputs(adapter, layout, x, t, query, layers), **s)
    opts: dict = {"query": query if isinstance(query, str) else (list(query) if isinstance(query, (tuple, list)) else int(query))}
    opts |= s
    if m.target:
        opts["target"] = t
    opts |= out.record
    return Relevance(method, np.asarray(out.map, np.float32), opts, layout, pixels, adapter.patch_size, adapter.info, info,
                     out.matrix, out.path, time.perf_counter() - t0, tuple(adapter.attention_notes) + tuple(info.notes))
