"""Attention results and the calls that compute them from an image model.

    model = explorer.load_model("mini-mae")              # or a ViT classifier, or a folder
    maps = explorer.attention.attention_maps(model, "chelsea")      # every layer and head, cached
    maps.query_map(layer=3, head=1, query="cls")          # (gh, gw)
    rel = explorer.attention.explain(model, "chelsea", "relevance")  # Chefer et al. 2021
    rel.map                                               # (gh, gw)

Raw attention and rollout come from one forward; relevance from one forward + backward;
integrated gradients (captum) from ``steps`` forwards.  Rollout and relevance are accumulated
layer by layer (:mod:`explorer.attention.methods`), so ``streaming=True`` never holds more than
one layer's attention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .capture import AttentionCapture, AttentionError
from .methods import RelevanceAccumulator, RolloutAccumulator, attention_entropy, mean_attention_distance

METHODS = ("raw", "rollout", "relevance", "integrated-gradients")


@dataclass(frozen=True)
class TokenLayout:
    """Where the patch tokens are in the sequence.

    Attributes:
        n_prefix: tokens before the patches (CLS, registers, distillation token...); 0 for VideoMAE.
        grid: ``(gh, gw)`` patch grid, or ``(t, gh, gw)`` for video tubelets.
        prefix_names: names of the prefix tokens (``("CLS",)``).

    A query is a prefix name (``"cls"``), ``"mean"`` (the average over all query tokens, for
    models without a CLS token), a flat patch index, or grid coordinates (``(row, col)`` /
    ``(t, row, col)``).
    """

    n_prefix: int
    grid: tuple
    prefix_names: tuple[str, ...] = ("CLS",)

    @property
    def num_patches(self) -> int:
        return int(np.prod(self.grid))

    @property
    def num_tokens(self) -> int:
        return self.n_prefix + self.num_patches

    def token(self, query) -> int:
        """Token index of ``query`` (not ``"mean"``)."""
        if isinstance(query, str):
            names = [n.lower() for n in self.prefix_names]
            if query.lower() in names:
                return names.index(query.lower())
            hint = " Use query='mean' (all tokens) or a patch." if not self.prefix_names else ""
            raise AttentionError(f"Unknown query token {query!r}; this model's prefix tokens are "
                                 f"{list(self.prefix_names) or 'none'}.{hint}")
        if isinstance(query, (tuple, list)):
            if len(query) != len(self.grid):
                raise AttentionError(f"A patch of this model has {len(self.grid)} coordinates {self.grid}, got {tuple(query)}.")
            coords = tuple(int(v) for v in query)
            if any(not 0 <= c < g for c, g in zip(coords, self.grid)):
                raise AttentionError(f"Patch {coords} is outside the {'x'.join(map(str, self.grid))} patch grid.")
            return self.n_prefix + int(np.ravel_multi_index(coords, self.grid))
        i = int(query)
        if not 0 <= i < self.num_patches:
            raise AttentionError(f"Patch index {i} is outside 0..{self.num_patches - 1}.")
        return self.n_prefix + i

    def row(self, matrix: np.ndarray, query) -> np.ndarray:
        """The ``(T,)`` row of a ``(..., T, T)`` matrix for ``query`` (``"mean"`` averages all rows)."""
        if isinstance(query, str) and query.lower() == "mean":
            return matrix.mean(-2)
        return matrix[..., self.token(query), :]

    def patch_map(self, row: np.ndarray) -> np.ndarray:
        """A ``(T,)`` row over tokens → ``grid``-shaped map over patches."""
        return np.asarray(row[self.n_prefix :], dtype=np.float32).reshape(self.grid)


@dataclass(frozen=True)
class AttentionMaps:
    """Every layer's and head's attention for one input.

    Attributes:
        probs: ``(L, H, T, T)`` float32 (batch element 0).
        layer_names: module name of each layer.
        layout: :class:`TokenLayout`.
        image: ``(S, S, 3)`` float32 in [0, 1], the model input (video: ``(T, S, S, 3)`` frames).
        patch_size: ``p``.
        path: how it was captured (``"sdpa-recomputed"``, ``"mha-weights"``).
        model: :class:`explorer.models.ModelInfo`; input: :class:`explorer.reconstruction.InputInfo`.
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
        """``(gh, gw)``: how much the ``query`` token attends to each patch (``head="mean"`` averages heads)."""
        self._check(layer, head)
        a = self.probs[int(layer)]
        rows = self.layout.row(a, query)  # (H, T)
        return self.layout.patch_map(rows.mean(0) if head == "mean" else rows[int(head)])

    def head_distance(self) -> np.ndarray:
        """``(L, H)`` mean attention distance in pixels (spatial, images only)."""
        if len(self.layout.grid) != 2:
            raise AttentionError("Mean attention distance is defined here for image patch grids, not video tubelets.")
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
        method: one of :data:`METHODS`.
        map: ``(gh, gw)`` float32.
        options: method options (fusion, discard, residual, target, steps, ...).
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


# ---------------------------------------------------------------------------- model families
def _layout_for(adapter) -> TokenLayout:
    if adapter.family == "videomae":
        return TokenLayout(0, (adapter.time_steps, *adapter.grid), ())
    return TokenLayout(1, tuple(adapter.grid), ("CLS",))


def _forward_fn(adapter):
    """``f(x) -> (B,) scalar target`` and the module to capture, per family."""
    if adapter.family == "mae":
        visible = np.zeros((1, adapter.num_patches), bool)

        def f(x, target=None):
            h, _, _ = adapter.encode(x, np.repeat(visible, x.shape[0], 0))
            cls = h[:, 0].float()
            # No labels in an MAE: the target is the CLS output's length along its own direction.
            return (cls * cls.detach()).sum(-1) / cls.detach().norm(dim=-1).clamp_min(1e-6)

        return f, adapter.model.vit
    if adapter.family == "videomae":

        def f(x, target=None):
            e = adapter.features(x).float()
            # No labels, no CLS: the target is the mean-pooled output's length along its own direction.
            return (e * e.detach()).sum(-1) / e.detach().norm(dim=-1).clamp_min(1e-6)

        return f, adapter.model
    if adapter.family == "clip":

        def f(x, target=None):
            e = adapter.image_features(x).float()
            # No labels: the target is the image embedding's length along its own direction.
            return (e * e.detach()).sum(-1) / e.detach().norm(dim=-1).clamp_min(1e-6)

        return f, adapter.model.vision_model
    if adapter.family == "vit":

        def f(x, target=None):
            logits = adapter.logits(x).float()
            t = logits[0].argmax().item() if target is None else int(target)
            if not 0 <= t < logits.shape[-1]:
                raise AttentionError(f"Class {t} is out of range 0..{logits.shape[-1] - 1}.")
            return logits[:, t]

        return f, adapter.model
    raise AttentionError(f"The attention views do not know the {adapter.family!r} family yet.")


def _prepare(adapter, image, fit):
    from ..reconstruction import InputInfo, as_input

    if adapter.family == "videomae":
        from ..preprocess import fit_image
        from ..video import LoadedVideo, load_video

        video = image if isinstance(image, LoadedVideo) else load_video(image, num_frames=adapter.num_frames)
        if len(video.frames) != adapter.num_frames:
            from ..video import sample_indices

            video = LoadedVideo(video.frames[sample_indices(len(video.frames), adapter.num_frames)], video.fps, video.sha256,
                                video.name, video.decoded, video.indices, video.notes)
        fitted = [fit_image(f, adapter.image_size, fit) for f in video.frames]
        frames = np.stack([f.pixels for f in fitted])
        info = InputInfo(video.name, video.sha256, fit, fitted[0].description, video.notes)
        return frames, info, adapter.normalise_video(frames)
    pixels, info = as_input(image, fit, adapter.image_size)
    return pixels, info, adapter.normalise(pixels)


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


def attention_maps(model, image, *, fit: str = "center-crop", max_bytes: int | None = None) -> AttentionMaps:
    """Every layer's and head's attention of ``model`` on ``image`` (one forward, kept on the CPU).

    Args:
        model: an adapter from :func:`explorer.load_model` (MAE encoder on all patches, or ViT).
        image: anything :func:`explorer.load_image` takes, or a sample name.
    Raises:
        AttentionError: the model has no attention the explorer can capture.
    """
    from ..reconstruction.image import _resolve_any

    adapter = _resolve_any(model)
    layout = _layout_for(adapter)
    cfg = adapter.vision_config
    check_capture_memory(cfg.num_hidden_layers, cfg.num_attention_heads, layout.num_tokens, adapter.device, max_bytes)
    pixels, info, x = _prepare(adapter, image, fit)
    f, module = _forward_fn(adapter)
    t0 = time.perf_counter()
    probs, names, path = capture_all(module, lambda: f(x))
    return AttentionMaps(probs, names, layout, pixels, adapter.patch_size, path, adapter.info, info, time.perf_counter() - t0)


def explain(model, image, method: str = "rollout", *, query="cls", fusion: str = "mean", discard: float = 0.0,
            residual: bool = True, target: int | None = None, steps: int = 32, fit: str = "center-crop",
            layers=None) -> Relevance:
    """A per-patch map by ``method`` for ``query`` (rollout) or for the model's target (relevance, IG).

    Args:
        method: ``"rollout"`` (attention only), ``"relevance"`` (Chefer et al. 2021, gradients × attention),
            ``"integrated-gradients"`` (captum, on the input pixels; summed per patch).
        query: the token whose row is shown for rollout / relevance (``"cls"`` or a patch).
        target: class index for classifiers (default: the predicted class); ignored for MAE.
        steps: integration steps for integrated gradients.
        layers: restrict rollout / relevance to these layer indices (default: all).
    """
    from ..reconstruction.image import _resolve_any

    adapter = _resolve_any(model)
    pixels, info, x = _prepare(adapter, image, fit)
    layout = _layout_for(adapter)
    if not (isinstance(query, str) and query.lower() == "mean"):
        layout.token(query)  # validates before any forward
    f, module = _forward_fn(adapter)
    t0 = time.perf_counter()
    opts: dict = {"query": query if isinstance(query, str) else (list(query) if isinstance(query, (tuple, list)) else int(query))}
    matrix = None
    path = ""
    if method in ("rollout", "relevance"):
        if method == "rollout":
            opts.update(fusion=fusion, discard=float(discard), residual=bool(residual))
            acc = RolloutAccumulator(fusion=fusion, discard=discard, residual=residual, layers=layers)
            with torch.no_grad(), AttentionCapture(module, on_forward=lambda c: acc.update(c.probs[0])) as cap:
                f(x)
        else:
            opts.update(target=target)
            acc = RelevanceAccumulator(layers=layers)
            with torch.enable_grad(), AttentionCapture(module, gradients=True,
                                                       on_backward=lambda c: acc.update(c.probs[0], c.grad[0], c.index)) as cap:
                f(x.detach().clone(), target).sum().backward()
        if acc.result is None:
            raise AttentionError("No attention was captured from this model.")
        matrix = acc.result.cpu().numpy()
        path = ",".join(sorted(cap.paths))
        pmap = layout.patch_map(layout.row(matrix, query))
    elif method == "integrated-gradients":
        from ..attribution import integrated_gradients_patches

        opts.update(target=target, steps=int(steps))
        pmap = integrated_gradients_patches(lambda inp: f(inp, target), x, adapter.patch_size, steps=int(steps),
                                            tubelet=getattr(adapter, "tubelet_size", 1))
    elif method == "raw":
        raise AttentionError("Raw attention is per layer and head: use attention_maps(...).query_map(layer, head).")
    else:
        raise AttentionError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    return Relevance(method, np.asarray(pmap, np.float32), opts, layout, pixels, adapter.patch_size, adapter.info, info,
                     matrix, path, time.perf_counter() - t0)
