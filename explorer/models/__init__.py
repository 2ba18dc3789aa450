"""Models: one family-tagged registry (:mod:`.registry`), one hub loader (:mod:`.hub`), one adapter per family."""

from .device import DeviceError, available_devices, pick_device
from .mae import MAEAdapter, ModelInfo
from .registry import (FAMILIES, HUB_MODELS, Family, ModelLoadError, list_fusion_models, list_models, list_multimodal_models,
                       list_uniformer_models, load_fusion_model, load_model, load_multimodal_model, load_uniformer_model,
                       shipped_models)

__all__ = [
    "DeviceError", "FAMILIES", "Family", "HUB_MODELS", "MAEAdapter", "ModelInfo", "ModelLoadError", "available_devices",
    "list_fusion_models", "list_models", "list_multimodal_models", "load_fusion_model", "load_model", "load_multimodal_model",
    "list_uniformer_models", "load_uniformer_model", "pick_device", "shipped_models",
]
