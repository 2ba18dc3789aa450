"""Image+text model registry: a shipped name, a Hugging Face id or a local folder → a fusion adapter.

Adding a family = one adapter class + one line in :data:`FUSION_ADAPTERS` (keyed by the
checkpoint's ``config.model_type``).  Shipped mini models live in ``data/models/`` (the same
folder the image explorer reads); hub checkpoints load through transformers' ``from_pretrained``
with their own tokenizer, and the image normalisation comes from ``preprocessor_config.json``.
"""

from __future__ import annotations

import os

import torch

from .device import pick_device, pick_dtype
from .registry import ADAPTERS as IMAGE_ADAPTERS
from .registry import ModelLoadError, _hub_error, _normalisation, _read_json, resolve_source, shipped_models
from .fusion_base import FusionAdapter
from .blip import BlipITMAdapter
from .fusion_clip import CLIPFusionAdapter
from .fusion_mini import MiniFusionAdapter
from .vilt import ViltAdapter

#: ``config.model_type`` → adapter class.  transformers families list the classes they wrap in ``architectures``.
FUSION_ADAPTERS = {
    "mini_fusion": MiniFusionAdapter,
    "clip": CLIPFusionAdapter,
    "blip": BlipITMAdapter,
    "vilt": ViltAdapter,
}

#: Real checkpoints the explorer offers by name (they need the hub or a local copy).
FUSION_HUB_MODELS = ("openai/clip-vit-base-patch16", "Salesforce/blip-itm-base-coco", "dandelin/vilt-b32-finetuned-vqa")

#: Files of which a local folder must hold at least one for its tokenizer to load.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")

#: Image-only model types (the image explorer's) that have no text input.
IMAGE_ONLY = tuple(t for t in (*IMAGE_ADAPTERS, "vit_mae", "vit", "videomae", "dinov2", "deit", "beit", "swin") if t not in FUSION_ADAPTERS)


def list_fusion_models() -> list[str]:
    """Names the cross-modal explorer offers: shipped image+text mini models first, then known hub ids."""
    shipped = [n for n, p in shipped_models().items() if _read_json(p / "config.json").get("model_type") in FUSION_ADAPTERS]
    return shipped + list(FUSION_HUB_MODELS)


def _supported() -> str:
    return ", ".join(FUSION_ADAPTERS) + " (e.g. " + ", ".join(FUSION_HUB_MODELS) + ")"


def _check_type(name: str, model_type: str) -> None:
    if model_type in FUSION_ADAPTERS:
        return
    if model_type in IMAGE_ONLY:
        raise ModelLoadError(
            f"{name!r}: this is an image-only model (model_type {model_type!r}); it has no text input; the image+text "
            f"explorer supports {_supported()}. Open it in the image explorer (explorer.load_model) instead."
        )
    hint = " It is a multimodal MAE: open it with explorer.load_multimodal_model." if model_type == "mini-multimae" else ""
    raise ModelLoadError(f"{name!r} is a {model_type!r} model; the image+text explorer supports these model types: {_supported()}.{hint}")


def _pick_class(name: str, adapter_cls, config):
    """The transformers class to load: the first of ``config.architectures`` the adapter wraps (else its first)."""
    archs = list(getattr(config, "architectures", None) or [])
    for a in archs:
        if a in adapter_cls.architectures:
            return a
    if archs:
        raise ModelLoadError(
            f"{name!r} is a {config.model_type!r} checkpoint with head {', '.join(archs)}; the image+text explorer reads "
            f"{' or '.join(adapter_cls.architectures)} only (e.g. an image-text matching or VQA checkpoint)."
        )
    return adapter_cls.architectures[0]


def load_fusion_model(name_or_path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32",
                      cache_dir: str | os.PathLike | None = None) -> FusionAdapter:
    """Load an image+text model and wrap it in its family's adapter.

    Args:
        name_or_path: a shipped mini model (``"mini-fusion"``), a Hugging Face id
            (``"openai/clip-vit-base-patch16"``, ``"Salesforce/blip-itm-base-coco"``,
            ``"dandelin/vilt-b32-finetuned-vqa"``) or a folder written by ``save_pretrained`` (model, tokenizer
            and preferably the image processor).
        device: ``"auto"`` (cuda → mps → cpu), ``"cuda"``, ``"mps"`` or ``"cpu"``.
        dtype: ``"float32"`` or ``"bfloat16"`` (``"float16"`` on GPUs only).
        cache_dir: Hugging Face cache folder for hub ids.

    Raises:
        ModelLoadError: unknown name, unreachable hub, image-only or unsupported architecture.
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    name = str(name_or_path)
    folder = resolve_source(name, example="openai/clip-vit-base-patch16")

    if folder is not None:
        model_type = _read_json(folder / "config.json").get("model_type", "?")
        _check_type(name, model_type)
        if model_type == "mini_fusion":
            return MiniFusionAdapter.from_folder(folder, model_id=name, device=dev, dtype=dt)
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder) if folder is not None else name, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - network, 404, auth: all mean "cannot reach it"
        if folder is None:
            raise _hub_error(name, e) from e
        raise ModelLoadError(f"Could not read the config in {folder}: {type(e).__name__}: {e}") from e
    _check_type(name, config.model_type)
    if config.model_type == "mini_fusion":
        raise ModelLoadError(f"{name!r}: mini fusion models are shipped folders, not hub checkpoints.")
    adapter_cls = FUSION_ADAPTERS[config.model_type]
    cls_name = _pick_class(name, adapter_cls, config)

    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    cls = getattr(transformers, cls_name)
    source = str(folder) if folder is not None else name
    kwargs = {"attn_implementation": adapter_cls.attn_implementation} if adapter_cls.attn_implementation else {}
    bars = hf_logging.is_progress_bar_enabled()
    if folder is not None:  # local weights load in a blink: no progress bar in the notebook
        hf_logging.disable_progress_bar()
    try:
        model = cls.from_pretrained(source, dtype=torch.float32, cache_dir=cache_dir, **kwargs)
        no_tok = ("save the checkpoint's tokenizer into the same folder with tokenizer.save_pretrained(folder).")
        if folder is not None and not any((folder / f).is_file() for f in TOKENIZER_FILES):
            # transformers 5 would build an empty tokenizer from the config's class and read every word as unknown
            raise ModelLoadError(f"{folder} has a model but no tokenizer files ({', '.join(TOKENIZER_FILES)}): " + no_tok)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, cache_dir=cache_dir)
        except Exception as e:  # noqa: BLE001
            if folder is None:
                raise
            raise ModelLoadError(f"{folder} has a model but no usable tokenizer ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]}): " + no_tok) from e
        if len(tokenizer) < 10:
            raise ModelLoadError(f"The tokenizer of {name!r} has only {len(tokenizer)} tokens (an empty vocabulary): " + no_tok)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001
        if folder is None:
            raise _hub_error(name, e) from e
        raise ModelLoadError(f"Could not load the model in {folder}: {type(e).__name__}: {e}") from e
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model = model.to(dev, dt)
    mean, std = _normalisation(folder, name, cache_dir)
    return adapter_cls(model, tokenizer, model_id=name, image_mean=mean, image_std=std, device=dev, dtype=dt)
