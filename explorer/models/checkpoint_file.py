"""Authors' own checkpoint files: MultiMAE, Audio-MAE, UniFormer, timm / MAE-authors ViTs.

These systems publish a single ``.pth`` (a pickled dict of tensors) or ``.safetensors`` file for their own
repository, not a transformers folder, so :mod:`explorer.models.hub` cannot open them by ``config.json``.  Here a
file is read as tensors only, recognised by its key layout, and handed to the family that claims it:

    state = read_state_dict("multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth")   # {key: tensor}
    fmt = identify(state)                                      # → the CheckpointFormat that claims these keys
    adapter = fmt.build(state, path=..., model_id=..., device=..., dtype=...)

The loaders (:func:`explorer.load_model`, :func:`explorer.load_multimodal_model`,
:func:`explorer.load_uniformer_model`) do this for any existing file path.

**Adding a format** = a family module in this package that defines ``FORMATS = (CheckpointFormat(...), ...)`` and
its name in :data:`FORMAT_MODULES`.

Safety: nothing is unpickled beyond tensors, plain containers and an ``argparse.Namespace`` of such values (the
authors' training scripts store their arguments in one) — ``torch.load(weights_only=True)`` refuses any other object,
and that refusal is reported by name (re-save the ``model`` dict of such a file).
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .hub import ModelLoadError

#: Family modules (in :mod:`explorer.models`) that define ``FORMATS``; order = the order formats are tried.
FORMAT_MODULES = ("multimae_epfl", "audiomae", "uniformer", "timm_vit")

#: File name endings read as checkpoint files.
SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")

#: Classes the weights-only unpickler may rebuild besides tensors and plain containers.  The authors' training
#: scripts (MAE, Audio-MAE, MultiMAE) save ``{"model": …, "optimizer": …, "args": argparse.Namespace(…)}``; a
#: Namespace is rebuilt by setting attributes whose values are again only weights-only types, so nothing runs.
SAFE_GLOBALS = [argparse.Namespace]

#: Keys under which training scripts nest the weights (tried in order, one level deep).
WRAPPERS = ("model", "state_dict", "module", "model_state", "model_state_dict", "net")


@dataclass(frozen=True)
class CheckpointFormat:
    """One published checkpoint format.

    Attributes:
        tag: unique name (``"multimae"``, ``"audiomae"``, ``"uniformer-image"``, ``"timm-vit"`` …); recorded in sidecars.
        kind: which loader and app open it: ``"image"`` / ``"video"`` (:func:`explorer.load_model`),
            ``"multimodal"`` (:func:`explorer.load_multimodal_model`) or ``"hierarchical"``
            (:func:`explorer.load_uniformer_model`).
        title: the family in words (``"MultiMAE (EPFL-VILAB)"``).
        claims: ``claims(state) → bool``: whether a state dict (``{key: tensor}``) has this format's key layout.
            Cheap: key names and a few shapes.
        build: ``build(state, *, path, model_id, device, dtype) → adapter``: builds the model from the shapes in
            ``state``, loads it with :func:`strict_load` and wraps it.
        source: where the published weights come from (shown in messages and the README table).
        views: what the explorer shows for it, in words.
        unsupported: what it cannot show, and why.
    """

    tag: str
    kind: str
    title: str
    claims: Callable[[dict], bool]
    build: Callable[..., Any]
    source: str = ""
    views: str = ""
    unsupported: str = ""
    extra: dict = field(default_factory=dict)


def formats(kinds: tuple[str, ...] | None = None) -> list[CheckpointFormat]:
    """Every registered format (of these kinds), in :data:`FORMAT_MODULES` order."""
    out = []
    for name in FORMAT_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":  # a family module not written yet
                continue
            raise
        out.extend(f for f in getattr(module, "FORMATS", ()) if kinds is None or f.kind in kinds)
    return out


def is_checkpoint_file(name: str) -> bool:
    """Whether ``name`` is an existing file (not a folder) with a checkpoint suffix."""
    try:
        path = Path(str(name)).expanduser()
        return path.is_file() and path.suffix.lower() in SUFFIXES
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- reading
def _unwrap(obj, path: Path) -> dict:
    """The ``{key: tensor}`` dict inside what ``torch.load`` returned."""
    for _ in range(2):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, dict):
            inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
                continue
        break
    if not isinstance(obj, dict) or not obj:
        raise ModelLoadError(f"{path.name} holds no weights: expected a dict of tensors (or one under "
                             f"{', '.join(repr(w) for w in WRAPPERS[:3])}), found {type(obj).__name__}"
                             + (f" with keys {_sample(obj)}" if isinstance(obj, dict) and obj else "") + ".")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(f"{path.name}: the weights dict also holds non-tensors under {_sample(bad)}; "
                             "only tensors are read.")
    return {str(k): v for k, v in obj.items()}


def _sample(keys, n: int = 6) -> str:
    keys = list(keys)
    return ", ".join(repr(k) for k in keys[:n]) + (f" … ({len(keys)} in all)" if len(keys) > n else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint file's weights as ``{key: tensor}`` (on the CPU), with no arbitrary unpickling.

    ``.safetensors`` files go through safetensors; anything else through ``torch.load(weights_only=True)``.  The
    weights may be nested under one of :data:`WRAPPERS` (``{"model": state_dict, "epoch": 1600, …}``).

    Raises:
        ModelLoadError: missing / unreadable / truncated file, a pickle holding objects other than tensors and
            plain containers (named), or a file with no dict of tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a file.")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"{path.name} is damaged: not a readable safetensors file ({e}).") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as e:
        first = (str(e).splitlines() or [""])[0]
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):
            import re

            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = f"e.g. {found.group(1)}" if found else first[:200]
            raise ModelLoadError(
                f"{path.name} is not a weights-only checkpoint: it pickles Python objects that are not tensors "
                f"({what}). It is refused rather than unpickled (unpickling runs code). Re-save only the weights, "
                "e.g. torch.save(torch.load(f, weights_only=False)['model'], 'weights.pth'), with a file you trust."
            ) from None
        raise ModelLoadError(f"{path.name} is not a readable checkpoint ({first[:200]}).") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise ModelLoadError(f"{path.name} is damaged or not a PyTorch checkpoint "
                             f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}).") from None
    return _unwrap(obj, path)


def strip_prefix(state: dict[str, torch.Tensor], prefixes: tuple[str, ...] = ("module.", "model.")) -> dict[str, torch.Tensor]:
    """``state`` without a prefix that every key shares (DistributedDataParallel's ``module.``)."""
    for p in prefixes:
        if state and all(k.startswith(p) for k in state):
            return {k[len(p):]: v for k, v in state.items()}
    return state


def strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], *, what: str,
                ignore: tuple[str, ...] = ()) -> torch.nn.Module:
    """Fill ``module`` with ``state``, requiring the same keys and shapes, and return it.

    Args:
        module: the model built for this checkpoint.
        state: ``{key: tensor}`` in the authors' layout.
        what: the checkpoint in words, for messages (``"multimae-b.pth (MultiMAE)"``).
        ignore: key prefixes of ``state`` that are not used (e.g. a classifier head the view does not need).
    Raises:
        ModelLoadError: names the missing keys, unexpected keys and keys whose shapes differ (first few of each).
    """
    state = {k: v for k, v in state.items() if not k.startswith(ignore)} if ignore else state
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_sample(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_sample(unexpected)}")
        if shapes:
            parts.append(f"wrong shapes: {'; '.join(shapes[:4])}" + (f" … ({len(shapes)} in all)" if len(shapes) > 4 else ""))
        raise ModelLoadError(f"{what} does not fit the model built from it: " + "; ".join(parts) + ".")
    module.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return module


def identify(state: dict[str, torch.Tensor], *, path: str | Path = "the checkpoint",
             kinds: tuple[str, ...] | None = None) -> CheckpointFormat:
    """The format that claims ``state`` (among those of ``kinds``).

    Raises:
        ModelLoadError: no format claims it (names a few of its keys and the known formats), or one of another kind
            claims it (says which loader opens it).
    """
    name = Path(str(path)).name
    every = formats()
    for f in every:
        try:
            hit = bool(f.claims(state))
        except Exception:  # noqa: BLE001 - a claims() check never decides for another family
            hit = False
        if hit:
            if kinds is not None and f.kind not in kinds:
                raise ModelLoadError(f"{name} is a {f.title} checkpoint ({f.kind}); open it with {OPENERS.get(f.kind, '?')}.")
            return f
    known = ", ".join(f.title for f in every) or "none"
    raise ModelLoadError(f"{name} is not a checkpoint of a family the explorer reads (its keys: {_sample(sorted(state))}). "
                         f"Known checkpoint-file families: {known}; transformers models load from a folder or a hub id.")


#: kind → what opens it (for the wrong-kind message).
OPENERS = {
    "image": "explorer.load_model or explorer.AttentionApp / explorer.MAEApp",
    "video": "explorer.load_model or explorer.VideoMAEApp",
    "multimodal": "explorer.load_multimodal_model or explorer.MultiMAEApp",
    "hierarchical": "explorer.load_uniformer_model or explorer.UniFormerApp",
}


def load_checkpoint_file(path: str | Path, *, kinds: tuple[str, ...] | None, device: torch.device, dtype: torch.dtype,
                         model_id: str | None = None):
    """Read, identify and build: a checkpoint file → its family's adapter (on ``device`` in ``dtype``).

    Raises:
        ModelLoadError: see :func:`read_state_dict`, :func:`identify` and the family's ``build``.
    """
    path = Path(path).expanduser().resolve()
    state = strip_prefix(read_state_dict(path))
    fmt = identify(state, path=path, kinds=kinds)
    try:
        return fmt.build(state, path=path, model_id=model_id or str(path), device=device, dtype=dtype)
    except ModelLoadError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ModelLoadError(f"{path.name} looks like a {fmt.title} checkpoint but could not be built: "
                             f"{type(e).__name__}: {str(e)[:300]}") from e
