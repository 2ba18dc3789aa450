"""Model registry: a name, a Hugging Face id or a local folder → an adapter.

Adding a model family = one adapter class + one line in :data:`ADAPTERS` (keyed by the
checkpoint's ``config.model_type``).  Shipped mini models are found in ``data/models/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .device import pick_device, pick_dtype
from .clip import CLIPImageAdapter
from .mae import MAEAdapter
from .videomae import VideoMAEAdapter, VideoMAEPreTrainingAdapter
from .vit import ViTAdapter
from ..data.shipped import data_dir, shipped_models  # noqa: F401  (re-exported)

#: ``config.model_type`` → (transformers class name, adapter class).
ADAPTERS = {
    "vit_mae": ("ViTMAEForPreTraining", MAEAdapter),
    "vit": ("ViTForImageClassification", ViTAdapter),
    "clip": ("CLIPModel", CLIPImageAdapter),
    "videomae": ("VideoMAEModel", VideoMAEAdapter),
}

#: Checkpoints whose ``config.architectures`` names one of these load that class and adapter instead.
ARCHITECTURE_ADAPTERS = {
    "VideoMAEForPreTraining": VideoMAEPreTrainingAdapter,
}

#: Real checkpoints the widgets offer by name (they need the hub or a local copy).
HUB_MODELS = ("facebook/vit-mae-base", "facebook/vit-mae-large", "facebook/vit-mae-huge")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelLoadError(RuntimeError):
    """The model could not be found, reached or understood; the message says what to do."""


def list_models() -> list[str]:
    """Names the widgets offer: shipped mini models first, then known hub ids."""
    return list(shipped_models()) + list(HUB_MODELS)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"Cannot read {path}: {e}") from e


def _normalisation(folder: Path | None, model_id: str, cache_dir=None) -> tuple[tuple, tuple]:
    """Image mean / std from the checkpoint's ``preprocessor_config.json`` (ImageNet if absent)."""
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        pp = _read_json(folder / "preprocessor_config.json")
        return tuple(pp.get("image_mean", IMAGENET_MEAN)), tuple(pp.get("image_std", IMAGENET_STD))
    if folder is None:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(model_id, "preprocessor_config.json", cache_dir=cache_dir)
            pp = _read_json(Path(path))
            return tuple(pp.get("image_mean", IMAGENET_MEAN)), tuple(pp.get("image_std", IMAGENET_STD))
        except Exception:  # noqa: BLE001 - the hub's processor config is optional
            pass
    return IMAGENET_MEAN, IMAGENET_STD


def _hub_error(model_id: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load {model_id!r} from the Hugging Face hub ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
        "If this machine is offline, download the checkpoint where you have internet "
        f"(e.g. `hf download {model_id} --local-dir ./{model_id.split('/')[-1]}`), copy the folder here and "
        "pass its path instead; or pick a shipped mini model: " + ", ".join(shipped_models()) + "."
    )


def resolve_source(name: str, *, example: str) -> Path | None:
    """A shipped model's or an existing folder's path; ``None`` for something shaped like a hub id.

    Raises:
        ModelLoadError: a path that is not a model folder, or a name that is none of the three.
    """
    shipped = shipped_models()
    if name in shipped:
        return shipped[name]
    if Path(name).expanduser().exists():
        folder = Path(name).expanduser().resolve()
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder} is not a model folder (it has no config.json written by save_pretrained).")
        return folder
    if name.count("/") != 1 or name.startswith(("/", ".", "~")) or " " in name:
        raise ModelLoadError(
            f"Unknown model {name!r}: not a shipped model ({', '.join(shipped) or 'none found'}), not an existing "
            f"folder, and not a Hugging Face id of the form 'organisation/name' (e.g. {example})."
        )
    return None


def load_model(name_or_path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32",
               attn_implementation: str = "sdpa", cache_dir: str | os.PathLike | None = None):
    """Load a model and wrap it in its family's adapter.

    Args:
        name_or_path: a shipped mini model (``"mini-mae"``), a Hugging Face id
            (``"facebook/vit-mae-base"``) or a folder written by ``save_pretrained``.
        device: ``"auto"`` (cuda → mps → cpu), ``"cuda"``, ``"mps"`` or ``"cpu"``.
        dtype: ``"float32"`` or ``"bfloat16"`` (``"float16"`` on GPUs only).
        attn_implementation: ``"sdpa"`` (fast) or ``"eager"``.
        cache_dir: Hugging Face cache folder for hub ids (default: the hub's own, ``$HF_HUB_CACHE``).

    Weights load only from safetensors or through ``torch.load(weights_only=True)``
    (transformers' default); nothing is unpickled.

    Raises:
        ModelLoadError: unknown name, unreachable hub, unsupported architecture.
        explorer.models.device.DeviceError: the device / dtype is not available.
    """
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    name = str(name_or_path)
    folder = resolve_source(name, example="facebook/vit-mae-base")

    if folder is not None:
        raw = _read_json(folder / "config.json")
        model_type, archs = raw.get("model_type", "?"), raw.get("architectures") or []
    else:
        try:
            from transformers import AutoConfig

            hub_cfg = AutoConfig.from_pretrained(name, cache_dir=cache_dir)
            model_type, archs = hub_cfg.model_type, list(getattr(hub_cfg, "architectures", None) or [])
        except Exception as e:  # noqa: BLE001 - network, 404, auth: all mean "cannot reach it"
            raise _hub_error(name, e) from e
    if model_type not in ADAPTERS:
        hint = " It is a multimodal MAE: open it with explorer.load_multimodal_model or explorer.MultiMAEApp." \
            if model_type == "mini-multimae" else ""
        raise ModelLoadError(
            f"{name!r} is a {model_type!r} model; the explorer supports these model types: {', '.join(ADAPTERS)}.{hint}"
        )
    cls_name, adapter_cls = ADAPTERS[model_type]
    for arch in archs:
        if arch in ARCHITECTURE_ADAPTERS:
            cls_name, adapter_cls = arch, ARCHITECTURE_ADAPTERS[arch]
            break
    import transformers

    cls = getattr(transformers, cls_name)
    source = str(folder) if folder is not None else name
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if folder is not None:  # local weights load in a blink: no progress bar in the notebook
        hf_logging.disable_progress_bar()
    try:
        model = cls.from_pretrained(source, dtype=torch.float32, attn_implementation=attn_implementation, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        if folder is None:
            raise _hub_error(name, e) from e
        raise ModelLoadError(f"Could not load the model in {folder}: {type(e).__name__}: {e}") from e
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model = model.to(dev, dt)
    mean, std = _normalisation(folder, name, cache_dir)
    return adapter_cls(model, model_id=name, image_mean=mean, image_std=std, device=dev, dtype=dt)
