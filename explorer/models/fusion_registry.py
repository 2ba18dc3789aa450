"""Image+text models: the names the cross-modal explorer uses, kept where they always were.

Loading lives in :mod:`explorer.models.registry` (one table of families for every kind of model): image+text
families are its entries of kind ``"fusion"``.  To add one, write its adapter and add one entry there.
"""

from __future__ import annotations

from .hub import TOKENIZER_FILES, ModelLoadError  # noqa: F401  (re-exported)
from .registry import FUSION_HUB_MODELS, OTHER_IMAGE_TYPES, families, list_fusion_models, load_fusion_model, model_types

#: ``config.model_type`` → adapter class, for the image+text families.
FUSION_ADAPTERS = {t: f.adapter for f in families(("fusion",)) for t in f.model_types}

#: Image-only model types (they have no text input).
IMAGE_ONLY = tuple(t for t in (*model_types(("image", "video")), *OTHER_IMAGE_TYPES) if t not in FUSION_ADAPTERS)

__all__ = ["FUSION_ADAPTERS", "FUSION_HUB_MODELS", "IMAGE_ONLY", "ModelLoadError", "TOKENIZER_FILES", "list_fusion_models",
           "load_fusion_model"]
