"""The model registry: one family-tagged table, and the three loaders over it.

    load_model("mini-mae")                         # image and video models  → MAEAdapter, ViTAdapter, VideoMAE…
    load_fusion_model("mini-fusion")               # image+text models       → a FusionAdapter
    load_multimodal_model("mini-rgbd-mae")         # multimodal MAEs         → MultiMAEAdapter

A name is a shipped mini model (``data/models/<name>/``), a folder written by ``save_pretrained`` or a Hugging
Face id; :mod:`explorer.models.hub` finds it and reads its ``config.json`` (offline, from the local cache, fast).
The checkpoint's ``model_type`` (and, where a family claims some, its ``architectures``) picks one entry of
:data:`FAMILIES`; the loader accepts that entry's *kind* or says which loader opens it.

**Adding a family = one adapter file + one entry in** :data:`FAMILIES`: its tag, kind (``"image"``, ``"video"``,
``"fusion"`` or ``"multimodal"``), the ``model_type`` values and ``config.architectures`` it claims, its adapter
class and how to build it (:func:`_hf_image` / :func:`_hf_fusion` for transformers classes, :func:`_from_folder`
for our own implementations whose adapter has a ``from_folder`` classmethod).  Nothing else changes: the
loaders, ``list_*_models``, the wrong-kind messages and the widgets' choices follow from the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import hub
from .hub import IMAGENET_MEAN, IMAGENET_STD, ModelLoadError  # noqa: F401  (re-exported)
from .blip import BlipITMAdapter
from .clip import CLIPImageAdapter
from .deit import DeiTAdapter
from .dinov2 import Dinov2Adapter, Dinov2RegistersAdapter
from .fusion_clip import CLIPFusionAdapter
from .fusion_mini import MiniFusionAdapter
from .mae import MAEAdapter
from .multimae import MultiMAEAdapter
from .uniformer import UniFormerAdapter
from .videomae import VideoMAEAdapter, VideoMAEPreTrainingAdapter
from .vilt import ViltAdapter
from .vit import ViTAdapter
from .checkpoint_file import is_checkpoint_file, load_checkpoint_file
from ..data.shipped import data_dir, shipped_models  # noqa: F401  (re-exported)

KINDS = ("image", "video", "fusion", "multimodal", "hierarchical")


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        tag: unique name of the family (for image and video families, the adapter's ``family``).
        kind: ``"image"``, ``"video"``, ``"fusion"`` (image+text), ``"multimodal"`` or ``"hierarchical"``
            (UniFormer's local/global stages): which loader opens it.
        model_types: ``config.model_type`` values it claims.
        adapter: the adapter class.
        build: ``build(family, checkpoint, class_name, *, device, dtype, **options) → adapter``.
        architectures: ``config.architectures`` entries it claims.  A family that claims some wins over one
            that claims none for the same ``model_type``; the matched name is the transformers class loaded
            (the first one when a config names none).
        model_class: the transformers class loaded when the family claims no architectures.
        from_hub: whether hub ids load (``False``: only folders, shipped or saved).
    """

    tag: str
    kind: str
    model_types: tuple[str, ...]
    adapter: type
    build: Callable[..., Any]
    architectures: tuple[str, ...] = ()
    model_class: str | None = None
    from_hub: bool = True


# ---------------------------------------------------------------------------------------------- builders
def _hf_image(family: Family, ckpt: hub.Checkpoint, class_name: str, *, device, dtype, shipped=(),
              attn_implementation: str = "sdpa", **_):
    """A transformers image / video model + the checkpoint's normalisation → ``family.adapter``."""
    model = hub.load_weights(ckpt, class_name, device=device, dtype=dtype, shipped=shipped,
                             attn_implementation=attn_implementation)
    mean, std = hub.normalisation(ckpt)
    return family.adapter(model, model_id=ckpt.name, image_mean=mean, image_std=std, device=device, dtype=dtype)


def _hf_fusion(family: Family, ckpt: hub.Checkpoint, class_name: str, *, device, dtype, shipped=(), **_):
    """A transformers image+text model, its own tokenizer and normalisation → ``family.adapter``."""
    tokenizer = hub.load_tokenizer(ckpt, shipped=shipped)
    attn = family.adapter.attn_implementation
    model = hub.load_weights(ckpt, class_name, device=device, dtype=dtype, shipped=shipped,
                             **({"attn_implementation": attn} if attn else {}))
    mean, std = hub.normalisation(ckpt)
    return family.adapter(model, tokenizer, model_id=ckpt.name, image_mean=mean, image_std=std, device=device, dtype=dtype)


def _from_folder(family: Family, ckpt: hub.Checkpoint, class_name: str, *, device, dtype, **_):
    """Our own implementations: ``family.adapter.from_folder(folder)`` (config.json + model.safetensors)."""
    try:
        return family.adapter.from_folder(ckpt.folder, model_id=ckpt.name, device=device, dtype=dtype)
    except ModelLoadError:
        raise
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as e:
        raise ckpt.error(e) from e


# ---------------------------------------------------------------------------------------------- the table
#: Every family the explorer opens: one entry each.
FAMILIES: tuple[Family, ...] = (
    Family("mae", "image", ("vit_mae",), MAEAdapter, _hf_image, model_class="ViTMAEForPreTraining"),
    Family("vit", "image", ("vit",), ViTAdapter, _hf_image, model_class="ViTForImageClassification"),
    Family("clip", "image", ("clip",), CLIPImageAdapter, _hf_image, model_class="CLIPModel"),
    Family("deit", "image", ("deit",), DeiTAdapter, _hf_image,
           architectures=("DeiTForImageClassificationWithTeacher", "DeiTForImageClassification", "DeiTModel")),
    Family("dinov2-registers", "image", ("dinov2_with_registers",), Dinov2RegistersAdapter, _hf_image,
           architectures=("Dinov2WithRegistersModel", "Dinov2WithRegistersForImageClassification")),
    Family("dinov2", "image", ("dinov2",), Dinov2Adapter, _hf_image, architectures=("Dinov2Model", "Dinov2ForImageClassification")),
    Family("videomae", "video", ("videomae",), VideoMAEAdapter, _hf_image, model_class="VideoMAEModel"),
    Family("videomae-pretraining", "video", ("videomae",), VideoMAEPreTrainingAdapter, _hf_image,
           architectures=("VideoMAEForPreTraining",)),
    Family("mini-fusion", "fusion", ("mini_fusion",), MiniFusionAdapter, _from_folder, from_hub=False),
    Family("clip-fusion", "fusion", ("clip",), CLIPFusionAdapter, _hf_fusion, architectures=CLIPFusionAdapter.architectures),
    Family("blip-itm", "fusion", ("blip",), BlipITMAdapter, _hf_fusion, architectures=BlipITMAdapter.architectures),
    Family("vilt", "fusion", ("vilt",), ViltAdapter, _hf_fusion, architectures=ViltAdapter.architectures),
    Family("mini-multimae", "multimodal", ("mini-multimae",), MultiMAEAdapter, _from_folder, from_hub=False),
    Family("uniformer", "hierarchical", ("uniformer",), UniFormerAdapter, _from_folder, from_hub=False),
)

#: Image-only model types no family reads (so the image+text loader can say they have no text input).
OTHER_IMAGE_TYPES = ("beit", "swin")

#: Published checkpoints that no family can load, and why (shown instead of a download that cannot help).
UNSUPPORTED_HUB = {
    "EPFL-VILAB/multimae-b": "MultiMAE (RGB + depth + semantics) is implemented in EPFL-VILAB's own repository, not in transformers",
    "facebook/audiomae": "Audio-MAE is released as a PyTorch checkpoint for its own repository, not in transformers",
    "yuangongnd/cav-mae": "CAV-MAE is released for its own repository, not in transformers",
}

#: Of those, the ones whose authors' checkpoint *file* loads by path: the file to get instead of the id.
AUTHORS_FILES = {
    "EPFL-VILAB/multimae-b": "the authors' multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth (linked from "
                             "github.com/EPFL-VILAB/MultiMAE) and pass its path to explorer.load_multimodal_model",
    "facebook/audiomae": "the authors' ViT-B pretraining checkpoint (pretrained.pth, linked from "
                         "github.com/facebookresearch/AudioMAE) and pass its path to explorer.load_multimodal_model",
}

#: Real checkpoints the widgets offer by name (they need the hub or a local copy).
HUB_MODELS = ("facebook/vit-mae-base", "facebook/vit-mae-large", "facebook/vit-mae-huge")
FUSION_HUB_MODELS = ("openai/clip-vit-base-patch16", "Salesforce/blip-itm-base-coco", "dandelin/vilt-b32-finetuned-vqa")

#: kind → (what it is, what opens it): the pointer a loader gives for a model of another kind.
_OPENERS = {
    "image": ("an image model", "explorer.load_model or explorer.MAEApp / explorer.AttentionApp"),
    "video": ("a video model", "explorer.load_model or explorer.VideoMAEApp"),
    "fusion": ("an image+text model", "explorer.fusion.load_fusion_model or explorer.FusionApp"),
    "multimodal": ("a multimodal MAE", "explorer.load_multimodal_model or explorer.MultiMAEApp"),
    "hierarchical": ("a UniFormer (local + global stages)", "explorer.load_uniformer_model or explorer.UniFormerApp"),
}


def families(kinds: tuple[str, ...] = KINDS) -> list[Family]:
    """The entries of :data:`FAMILIES` of these kinds, in table order."""
    return [f for f in FAMILIES if f.kind in kinds]


def model_types(kinds: tuple[str, ...] = KINDS) -> list[str]:
    """``model_type`` values the families of these kinds claim (each once, in table order)."""
    return list(dict.fromkeys(t for f in families(kinds) for t in f.model_types))


def find_family(model_type: str, architectures=(), kinds: tuple[str, ...] = KINDS) -> tuple[Family | None, str | None] | None:
    """The family of these kinds that claims a config, and the transformers class to load.

    A family claiming one of ``architectures`` wins; else one that claims none; else, for a config that names
    no architecture, the first claiming family with its first class.

    Returns:
        ``(family, class name)``; ``None`` when no family of these kinds claims ``model_type``; ``(None, names)``
        when some do but the config names none of their architectures (``names``: the ones they read).
    """
    found = [f for f in families(kinds) if model_type in f.model_types]
    if not found:
        return None
    for arch in architectures:
        for f in found:
            if arch in f.architectures:
                return f, arch
    for f in found:
        if not f.architectures:
            return f, f.model_class
    if not architectures:
        return found[0], found[0].architectures[0]
    return None, " or ".join(a for f in found for a in f.architectures)


def family_of(config: dict, kinds: tuple[str, ...] = KINDS) -> Family | None:
    """The family a ``config.json`` dict belongs to (``None`` if none of these kinds claims it)."""
    hit = find_family(str(config.get("model_type", "?")), list(config.get("architectures") or []), kinds)
    return hit[0] if hit else None


def _shipped(kinds: tuple[str, ...]) -> list[str]:
    """Shipped mini models that a loader of these kinds opens."""
    out = []
    for name, folder in shipped_models().items():
        try:
            config = hub.read_json(folder / "config.json")
        except ModelLoadError:
            continue
        if family_of(config, kinds) is not None:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------- the loaders
@dataclass(frozen=True)
class _Loader:
    """What differs between the three loaders: the kinds they open and a few words of their messages."""

    kinds: tuple[str, ...]
    explorer: str                  # "the explorer", in "… supports these model types"
    example: str                   # a valid name, for the "Unknown model" message
    hub_ids: tuple[str, ...] = ()  # known hub ids, named with the supported types
    heads: str = ""                # which heads it reads, for a checkpoint with another head
    no_hub: str = ""               # why hub ids cannot work (when no family of its kinds loads from the hub)


_IMAGE = _Loader(("image", "video"), "the explorer", "facebook/vit-mae-base")
_FUSION = _Loader(("fusion",), "the image+text explorer", "openai/clip-vit-base-patch16", FUSION_HUB_MODELS,
                  heads=" (e.g. an image-text matching or VQA checkpoint)")
_HIERARCHICAL = _Loader(("hierarchical",), "the UniFormer explorer", "mini-uniformer", no_hub=(
    "UniFormer (Sense-X) is released as checkpoint files for its own repository, not in transformers; supported here: "
    "{shipped}, a folder in their format, or the authors' .pth file."))
_MULTIMODAL = _Loader(("multimodal",), "the multimodal explorer", "mini-rgbd-mae", no_hub=(
    "transformers has no multimodal (RGB-D or audio-visual) MAE class; supported here: {shipped} or a folder in their "
    "format. Video-only MAEs (VideoMAEForPreTraining, e.g. MCG-NJU/videomae-base) open in explorer.VideoMAEApp."))


def _supported(loader: _Loader) -> str:
    types = ", ".join(model_types(loader.kinds))
    return types + (" (e.g. " + ", ".join(loader.hub_ids) + ")" if loader.hub_ids else "")


def _wrong_kind(name: str, model_type: str, loader: _Loader, other: Family | None) -> ModelLoadError:
    """A model no family of the loader's kinds claims: say what it is and what opens it."""
    shown = hub.show(name)
    if loader is _MULTIMODAL:
        where = _OPENERS[other.kind][1] if other else \
            "explorer.load_model (images), explorer.VideoMAEApp (video) or explorer.load_fusion_model (image+text)"
        return ModelLoadError(f"{shown} is a {model_type!r} model, not a multimodal MAE; open it with {where}.")
    if loader is _FUSION and ((other and other.kind in ("image", "video")) or model_type in OTHER_IMAGE_TYPES):
        kind = other.kind if other else "image"
        return ModelLoadError(
            f"{shown}: this is {'a video' if kind == 'video' else 'an image'}-only model (model_type {model_type!r}); it "
            f"has no text input; the image+text explorer supports {_supported(loader)}. Open it in the {kind} explorer "
            f"({_OPENERS[kind][1]}) instead.")
    hint = f" It is {_OPENERS[other.kind][0]}: open it with {_OPENERS[other.kind][1]}." if other else ""
    return ModelLoadError(f"{shown} is a {model_type!r} model; {loader.explorer} supports these model types: "
                          f"{_supported(loader)}.{hint}")


def _timm_folder_weights(folder):
    """``folder/model.safetensors`` when ``folder`` is a timm hub folder (its config.json names an ``architecture``
    and no transformers ``model_type``); else ``None``.

    Raises:
        ModelLoadError: a timm folder without safetensors weights, or one normalised other than ImageNet's way.
    """
    if folder is None:
        return None
    config = hub.read_json(folder / "config.json")
    if "model_type" in config or "architecture" not in config:
        return None
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{folder} is a timm model folder ({config['architecture']}) without model.safetensors; only "
                             "safetensors weights are read from a timm folder.")
    pre = config.get("pretrained_cfg") or {}
    mean, std = tuple(pre.get("mean", IMAGENET_MEAN)), tuple(pre.get("std", IMAGENET_STD))
    if not (np.allclose(mean, IMAGENET_MEAN, atol=1e-4) and np.allclose(std, IMAGENET_STD, atol=1e-4)):
        raise ModelLoadError(f"{folder} ({config['architecture']}) normalises its input with mean {mean} / std {std}; the "
                             "explorer reads timm ViTs normalised as ImageNet's (the MAE weights are).")
    return weights


def _load(name_or_path, loader: _Loader, *, device, dtype, cache_dir=None, **options):
    """Shared body of the three loaders: device → name → checkpoint → family → adapter."""
    dev, dt = hub.device_and_dtype(device, dtype)
    name = str(name_or_path)
    if is_checkpoint_file(name):  # an author's checkpoint file (MultiMAE, Audio-MAE, UniFormer, timm…)
        return load_checkpoint_file(name, kinds=loader.kinds, device=dev, dtype=dt)
    shipped = _shipped(loader.kinds)
    if name in UNSUPPORTED_HUB:
        instead = f" Download {AUTHORS_FILES[name]}." if name in AUTHORS_FILES else ""
        raise ModelLoadError(f"{name!r}: {UNSUPPORTED_HUB[name]}, so it cannot be loaded by id.{instead} Supported here: "
                             f"{', '.join(shipped) or 'none shipped'} (or a folder with the same format).")
    folder = hub.locate(name, example=loader.example, shipped=shipped)
    timm_weights = _timm_folder_weights(folder)
    if timm_weights is not None:  # a folder as timm's hub writes it: config.json ("architecture") + model.safetensors
        return load_checkpoint_file(timm_weights, kinds=loader.kinds, device=dev, dtype=dt, model_id=str(folder))
    if folder is None and not any(f.from_hub for f in families(loader.kinds)):
        raise ModelLoadError(f"{name!r} looks like a Hugging Face id, but " + loader.no_hub.format(shipped=", ".join(shipped)))
    ckpt = hub.open_checkpoint(name, folder, cache_dir=cache_dir, shipped=shipped)
    hit = find_family(ckpt.model_type, ckpt.architectures, loader.kinds)
    if hit is None:
        raise _wrong_kind(name, ckpt.model_type, loader, next((f for f in FAMILIES if ckpt.model_type in f.model_types), None))
    family, class_name = hit
    if family is None:
        raise ModelLoadError(f"{name!r} is a {ckpt.model_type!r} checkpoint with head {', '.join(ckpt.architectures)}; "
                             f"{loader.explorer} reads {class_name} only{loader.heads}.")
    if folder is None and not family.from_hub:
        raise ModelLoadError(f"{name!r}: {family.tag} models are read from a folder (a shipped one or one written by "
                             "save_pretrained), not from a hub id.")
    return family.build(family, ckpt, class_name, device=dev, dtype=dt, shipped=shipped, **options)


def list_models() -> list[str]:
    """Names the image and video explorers offer: their shipped mini models first, then known hub ids."""
    return _shipped(_IMAGE.kinds) + list(HUB_MODELS)


def list_fusion_models() -> list[str]:
    """Names the cross-modal explorer offers: shipped image+text mini models first, then known hub ids."""
    return _shipped(_FUSION.kinds) + list(FUSION_HUB_MODELS)


def list_uniformer_models() -> list[str]:
    """Shipped UniFormers (what the UniFormer app offers)."""
    return _shipped(_HIERARCHICAL.kinds)


def list_multimodal_models() -> list[str]:
    """Shipped multimodal MAEs (what the widgets offer)."""
    return _shipped(_MULTIMODAL.kinds)


def load_model(name_or_path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32",
               attn_implementation: str = "sdpa", cache_dir: str | os.PathLike | None = None):
    """Load an image or video model and wrap it in its family's adapter.

    Args:
        name_or_path: a shipped mini model (``"mini-mae"``), a Hugging Face id
            (``"facebook/vit-mae-base"``), a folder written by ``save_pretrained``, or a checkpoint file in timm's /
            the MAE authors' layout (``mae_pretrain_vit_base.pth``, timm's ``model.safetensors``).
        device: ``"auto"`` (cuda → mps → cpu), ``"cuda"``, ``"mps"`` or ``"cpu"``.
        dtype: ``"float32"`` or ``"bfloat16"`` (``"float16"`` on GPUs only).
        attn_implementation: ``"sdpa"`` (fast) or ``"eager"``.
        cache_dir: Hugging Face cache folder for hub ids (default: the hub's own, ``$HF_HUB_CACHE``).

    Weights load only from safetensors or through ``torch.load(weights_only=True)``
    (transformers' default); nothing is unpickled.

    Raises:
        ModelLoadError: unknown name, offline / unreachable hub, unsupported architecture, a model of another kind.
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    return _load(name_or_path, _IMAGE, device=device, dtype=dtype, cache_dir=cache_dir,
                 attn_implementation=attn_implementation)


def load_fusion_model(name_or_path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32",
                      cache_dir: str | os.PathLike | None = None):
    """Load an image+text model and wrap it in its family's adapter (a :class:`~.fusion_base.FusionAdapter`).

    Args:
        name_or_path: a shipped mini model (``"mini-fusion"``), a Hugging Face id
            (``"openai/clip-vit-base-patch16"``, ``"Salesforce/blip-itm-base-coco"``,
            ``"dandelin/vilt-b32-finetuned-vqa"``) or a folder written by ``save_pretrained`` (model, tokenizer
            and preferably the image processor).
        device: ``"auto"`` (cuda → mps → cpu), ``"cuda"``, ``"mps"`` or ``"cpu"``.
        dtype: ``"float32"`` or ``"bfloat16"`` (``"float16"`` on GPUs only).
        cache_dir: Hugging Face cache folder for hub ids.

    Raises:
        ModelLoadError: unknown name, offline / unreachable hub, image-only or unsupported architecture.
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    return _load(name_or_path, _FUSION, device=device, dtype=dtype, cache_dir=cache_dir)


def load_multimodal_model(name_or_path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32") -> MultiMAEAdapter:
    """Load a multimodal MAE.

    Args:
        name_or_path: ``"mini-rgbd-mae"``, ``"mini-av-mae"``, a folder holding ``config.json`` (model_type
            ``"mini-multimae"``) and ``model.safetensors``, or an author's checkpoint file (MultiMAE's or
            Audio-MAE's ``.pth``; read with ``weights_only=True``).
        device: ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``; dtype: ``"float32"`` or ``"bfloat16"``.
    Raises:
        ModelLoadError: unknown name, another kind of model, a published checkpoint transformers cannot load,
            missing or mismatched weights.
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    return _load(name_or_path, _MULTIMODAL, device=device, dtype=dtype)


def load_uniformer_model(name_or_path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32"):
    """Load a UniFormer (image or video; local relation aggregation in the shallow stages, global attention in the deep).

    Args:
        name_or_path: ``"mini-uniformer"``, a folder holding ``config.json`` (model_type ``"uniformer"``) and
            ``model.safetensors``, or the authors' checkpoint file (``uniformer_small_in1k.pth``,
            ``uniformer_base_k400_8x8.pth``…; read with ``weights_only=True``).
        device: ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``; dtype: ``"float32"`` or ``"bfloat16"``.
    Raises:
        ModelLoadError: unknown name, another kind of model, missing or mismatched weights (named).
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    return _load(name_or_path, _HIERARCHICAL, device=device, dtype=dtype)
