"""Models: the registry (:func:`load_model`) and one adapter per family."""

from .device import DeviceError, available_devices, pick_device
from .mae import MAEAdapter, ModelInfo
from .registry import HUB_MODELS, ModelLoadError, list_models, load_model, shipped_models

__all__ = [
    "DeviceError", "HUB_MODELS", "MAEAdapter", "ModelInfo", "ModelLoadError",
    "available_devices", "list_models", "load_model", "pick_device", "shipped_models",
]
