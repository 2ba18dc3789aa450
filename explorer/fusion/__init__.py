"""Cross-modal fusion explorer, compute layer: image+text adapters, per-word maps, modality attributions.

    from explorer.fusion import load_fusion_model, align
    model = load_fusion_model("mini-fusion")              # or "Salesforce/blip-itm-base-coco", a folder…
    al = align(model, image, "a red circle left of a blue square")
    al.word_map("relevance", 1)                           # (gh, gw) map of word 1 ("red")

Modules: :mod:`.methods` (the registry of per-word map methods), :mod:`.capture` (one pass of the model),
:mod:`.propagation` (rollout, relevance), :mod:`.alignment` (:func:`align`, :class:`Alignment`),
:mod:`.attribution` (Integrated Gradients, modality report), :mod:`.faithfulness` (pointing game, deletion).
"""

from ..models.fusion_base import CallRole, FusionAdapter, FusionInputError, JointLayout, TextInput
from ..models.registry import load_fusion_model
from .alignment import Alignment, align
from .attribution import ModalityReport, modality_report, word_ig
from .faithfulness import deletion_auc, pointing_hits
from .interventions import FusionAblation, ablate_fusion, fusion_head_importance, patch_fusion
from .methods import METHOD_NAMES, METHODS, REGISTRY, FusionMethod, get_method, methods_for, register

__all__ = [
    "Alignment", "CallRole", "FusionAdapter", "FusionInputError", "FusionMethod", "JointLayout", "METHODS", "METHOD_NAMES",
    "ModalityReport", "REGISTRY", "TextInput", "align", "deletion_auc", "get_method", "load_fusion_model", "methods_for",
    "modality_report", "pointing_hits", "register", "word_ig",
    "FusionAblation", "ablate_fusion", "fusion_head_importance", "patch_fusion",
]
